"""The VM backend through the real CLI, with the sandbox hypervisor: the real
cocoon-init runs on the host in new pid/mount/uts/ipc/net namespaces with a
socket pair in place of vsock, and every command goes through the monitor and
the agent protocol exactly as with a VM (only the VM is missing: this host
cannot boot a Linux guest in useful time; see DESIGN.md)."""
import json
import os
import select
import signal
import stat
import subprocess
import sys
import time

import pytest

from cocoonlib import COCOON, TIMEOUT, cgroup_dirs, needs_root, pid_alive, wait_for
from test_console import console_socket, receive_master  # noqa: F401 (a fixture)

AGENT = os.path.join(os.path.dirname(COCOON), "agent", "cocoon-init")
VM = ("--vm", "--hypervisor", "sandbox")

pytestmark = [
    needs_root,
    pytest.mark.skipif(not os.access(AGENT, os.X_OK), reason=f"{AGENT} not built"),
]


def run_vm(cocoon, bundle, cid, **kw):
    bundle.save()
    return cocoon("run", "--bundle", bundle.path, cid, glob=VM, **kw)


def test_run_output_and_status(cocoon, make_bundle, nothing_left):
    b = make_bundle("sh", "-c", "echo out; echo err >&2; exit 7")
    r = run_vm(cocoon, b, cocoon.id("vmrun"))
    assert r.rc == 7, r
    assert r.out == "out\n"
    assert r.err == "err\n"
    nothing_left()


def test_run_killed_by_signal(cocoon, make_bundle, nothing_left):
    b = make_bundle("sh", "-c", "kill -KILL $$")
    r = run_vm(cocoon, b, cocoon.id("vmsig"))
    assert r.rc == 128 + 9, r
    nothing_left()


def test_stdin_flows_through_with_credit(cocoon, make_bundle, tmp_path, nothing_left):
    data = os.urandom(3 << 20)  # far beyond the 256 KiB window
    src = tmp_path / "in.bin"
    src.write_bytes(data)
    b = make_bundle("cat")
    out = tmp_path / "out.bin"
    with open(src, "rb") as i, open(out, "wb") as o:
        r = run_vm(cocoon, b, cocoon.id("vmcat"), stdin=i, stdout=o, timeout=60)
    assert r.rc == 0, r
    assert out.read_bytes() == data
    nothing_left()


def test_the_guest_is_its_own_world(cocoon, make_bundle, nothing_left):
    b = make_bundle("sh", "-c", "hostname; cat /proc/1/comm; ls /sys/class/net")
    b.config["hostname"] = "guesthost"
    r = run_vm(cocoon, b, cocoon.id("vmworld"))
    assert r.rc == 0, r
    lines = r.out.split()
    assert lines[0] == "guesthost"
    assert lines[1] in ("init", "cocoon-init")  # PID 1 is the agent (/init in a VM)
    assert lines[2:] == ["lo"]  # no host interfaces
    nothing_left()


def test_lifecycle(cocoon, make_bundle, tmp_path, nothing_left):
    cid = cocoon.id("vmlife")
    b = make_bundle("sleep", "1000")
    pidfile = tmp_path / "pid"
    r = cocoon("create", "--bundle", b.path, "--pid-file", pidfile, cid, glob=VM)
    assert r.rc == 0, r
    st = cocoon.state(cid)
    assert st["status"] == "created"
    pid = st["pid"]
    assert pid_alive(pid) and pidfile.read_text() == str(pid)
    with open(os.path.join(cocoon.root, cid, "state.json")) as f:
        assert json.load(f)["backend"] == "vm"
    cocoon.ok("start", cid)
    assert cocoon.status(cid) == "running"
    cocoon.fail("start", cid, expect=[cid, "running"])
    cocoon.fail("delete", cid, expect=[cid, "running"])
    cocoon.ok("kill", cid, "TERM")
    cocoon.wait_status(cid, "stopped")
    assert not pid_alive(pid)
    cocoon.ok("delete", cid)
    nothing_left()


def test_annotation_selects_the_vm(cocoon, make_bundle, nothing_left):
    cid = cocoon.id("vmann")
    b = make_bundle("sleep", "1000")
    b.config.setdefault("annotations", {})["run.oci.handler"] = "vm"
    b.save()
    env = dict(cocoon.env, COCOON_AGENT=AGENT)
    cocoon.ok("create", "--bundle", b.path, cid, glob=("--hypervisor", "sandbox"), env=env)
    with open(os.path.join(cocoon.root, cid, "state.json")) as f:
        assert json.load(f)["backend"] == "vm"
    cocoon.ok("delete", cid)  # a created container may be deleted
    nothing_left()


def test_exec(cocoon, make_bundle, tmp_path, nothing_left):
    cid = cocoon.id("vmexec")
    b = make_bundle("sleep", "1000")
    cocoon.ok("create", "--bundle", b.path, cid, glob=VM)
    cocoon.ok("start", cid)
    r = cocoon("exec", cid, "sh", "-c", "echo hello; echo oops >&2; exit 3")
    assert (r.rc, r.out, r.err) == (3, "hello\n", "oops\n"), r
    with open(__file__, "rb") as i:
        r = cocoon("exec", cid, "wc", "-c", stdin=i)
    assert r.rc == 0 and int(r.out) == os.path.getsize(__file__), r
    r = cocoon("exec", "--env", "X=y", "--cwd", "/tmp", cid, "sh", "-c", "echo $X; pwd")
    assert r.out == "y\n/tmp\n", r
    cocoon.fail("exec", cid, "/no/such/program", expect=["/no/such/program"])
    cocoon.ok("delete", "--force", cid)
    nothing_left()


def test_signal_forwarded_by_the_monitor(cocoon, make_bundle, nothing_left):
    """An engine may signal the container's pid directly: the monitor passes
    the signal into the guest."""
    cid = cocoon.id("vmfwd")
    b = make_bundle("sh", "-c", "trap 'exit 42' TERM; while :; do sleep 0.1; done")
    p = cocoon.popen("run", "--bundle", b.path, cid, glob=VM,
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(lambda: os.path.exists(os.path.join(cocoon.root, cid, "state.json")) and
             cocoon.status(cid) == "running", "the container to run")
    os.kill(cocoon.state(cid)["pid"], signal.SIGTERM)
    out, err = p.communicate(timeout=TIMEOUT)
    assert p.returncode == 42, (out, err)
    nothing_left()


def test_bad_program_is_a_clear_error(cocoon, make_bundle, nothing_left):
    b = make_bundle("/no/such/program")
    r = run_vm(cocoon, b, cocoon.id("vmbad"))
    assert r.rc == 1 and "/no/such/program" in r.err, r
    nothing_left()


def _fake_agent(tmp_path, script):
    p = tmp_path / "fake-agent"
    p.write_text("#!/bin/sh\n" + script + "\n")
    p.chmod(p.stat().st_mode | stat.S_IEXEC)
    return str(p)


def test_agent_that_never_answers(cocoon, make_bundle, tmp_path, nothing_left):
    env = dict(cocoon.env, COCOON_AGENT=_fake_agent(tmp_path, "exec sleep 1000"),
               COCOON_VM_TIMEOUT_MS="1000")
    b = make_bundle("true")
    r = run_vm(cocoon, b, cocoon.id("vmmute"), env=env)
    assert r.rc == 1 and "did not answer within 1000 ms" in r.err, r
    nothing_left()


def test_agent_that_crashes(cocoon, make_bundle, tmp_path, nothing_left):
    env = dict(cocoon.env, COCOON_AGENT=_fake_agent(tmp_path, "exit 3"))
    b = make_bundle("true")
    r = run_vm(cocoon, b, cocoon.id("vmcrash"), env=env)
    assert r.rc == 1 and "stopped before its agent answered" in r.err, r
    nothing_left()


def test_agent_speaking_garbage(cocoon, make_bundle, tmp_path, nothing_left):
    env = dict(cocoon.env,
               COCOON_AGENT=_fake_agent(tmp_path, "head -c 4096 /dev/urandom >&3; sleep 1000"),
               COCOON_VM_TIMEOUT_MS="5000")
    b = make_bundle("true")
    r = run_vm(cocoon, b, cocoon.id("vmjunk"), env=env)
    assert r.rc == 1, r
    nothing_left()


def test_cocoon_hypervisor_needs_native_guest_mode(cocoon, make_bundle, nothing_left):
    """On this host guest kernel mode is emulated: the real VM path says so
    clearly and leaves nothing; where it is native, a kernel must exist."""
    check = subprocess.run([COCOON, "vm", "check", "--quiet"], capture_output=True)
    if check.returncode == 0:
        pytest.skip("guest kernel mode is native here: the full path is tested in test_vm_guest.py")
    b = make_bundle("true")
    b.save()
    r = cocoon("run", "--bundle", b.path, cocoon.id("vmhw"), glob=("--vm",))
    assert r.rc == 1 and "hardware virtualization" in r.err, r
    nothing_left()


# Run `cocoon exec --detach --pid-file` the way conmon and containerd's shim
# do: as a child subreaper, so the detached relay becomes our child and we can
# wait for it and see its exit status.
SUBREAPER = r"""
import ctypes, os, subprocess, sys
ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
pidfile, out = sys.argv[1], open(sys.argv[2], "wb")
rc = subprocess.run(sys.argv[3:], stdin=subprocess.DEVNULL, stdout=out).returncode
if rc:
    sys.exit(100 + rc)
pid = int(open(pidfile).read())
print(pid, flush=True)
_, st = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(st), flush=True)
"""


def test_exec_detach_pid_file_as_engines_do(cocoon, make_bundle, tmp_path, nothing_left):
    """exec --detach --pid-file: the pid written is a host process that
    relays the guest process's output and ends with its exit status."""
    cid = cocoon.id("vmexecd")
    b = make_bundle("sleep", "1000")
    cocoon.ok("create", "--bundle", b.path, cid, glob=VM)
    cocoon.ok("start", cid)
    pidfile = tmp_path / "exec.pid"
    out = tmp_path / "out.txt"
    r = subprocess.run([sys.executable, "-c", SUBREAPER, str(pidfile), str(out),
                        *cocoon.argv(("exec", "--detach", "--pid-file", str(pidfile), cid,
                                      "sh", "-c", "sleep 0.3; echo from-the-guest; exit 5"),
                                     glob=VM)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=TIMEOUT, env=cocoon.env)
    assert r.returncode == 0, r
    pid, status = (int(x) for x in r.stdout.split())
    assert pid > 0 and status == 5, r.stdout
    assert out.read_bytes() == b"from-the-guest\n"
    cocoon.ok("delete", "--force", cid)
    nothing_left()


def test_exec_detach_relay_forwards_signals(cocoon, make_bundle, tmp_path, nothing_left):
    """Signalling the pid from --pid-file signals the guest process."""
    cid = cocoon.id("vmexecs")
    b = make_bundle("sleep", "1000")
    cocoon.ok("create", "--bundle", b.path, cid, glob=VM)
    cocoon.ok("start", cid)
    pidfile = tmp_path / "exec.pid"
    out = tmp_path / "out.txt"
    with open(out, "wb") as o:
        r = cocoon("exec", "--detach", "--pid-file", str(pidfile), cid,
                   "sh", "-c", "trap 'echo got-term; exit 9' TERM; echo ready; "
                   "while :; do sleep 0.05; done", stdout=o)
    assert r.rc == 0, r
    pid = int(pidfile.read_text())
    wait_for(lambda: b"ready" in out.read_bytes(), "the detached process's output")
    assert pid_alive(pid)
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not pid_alive(pid), "the relay to end with the guest process")
    assert out.read_bytes() == b"ready\ngot-term\n"
    cocoon.ok("delete", "--force", cid)
    nothing_left()


def test_exec_relay_leaves_the_container_to_other_commands(cocoon, make_bundle, tmp_path,
                                                          nothing_left):
    """A detached exec's relay does not keep the container locked: state and
    delete go on while it runs, and the relay ends with the VM."""
    cid = cocoon.id("vmexecl")
    b = make_bundle("sleep", "1000")
    cocoon.ok("create", "--bundle", b.path, cid, glob=VM)
    cocoon.ok("start", cid)
    pidfile = tmp_path / "exec.pid"
    r = cocoon("exec", "--detach", "--pid-file", str(pidfile), cid, "sleep", "1000")
    assert r.rc == 0, r
    pid = int(pidfile.read_text())
    assert pid_alive(pid)
    assert json.loads(cocoon.ok("state", cid).out)["status"] == "running"
    cocoon.ok("delete", "--force", cid)
    wait_for(lambda: not pid_alive(pid), "the relay to end with the VM")
    nothing_left()


def test_exec_signal_after_the_process_exited_keeps_its_status(cocoon, make_bundle,
                                                               nothing_left):
    """A signal that reaches an exec'd process after it exited, while its
    output is still open (a background child holds it), is refused by the
    agent; the process's exit status must still come back."""
    cid = cocoon.id("vmexecx")
    b = make_bundle("sleep", "1000")
    cocoon.ok("create", "--bundle", b.path, cid, glob=VM)
    cocoon.ok("start", cid)
    p = subprocess.Popen(cocoon.argv(("exec", cid, "sh", "-c",
                                      "trap '' TERM; echo started; (sleep 1) & exit 3"),
                                     glob=VM),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cocoon.env)
    try:
        assert p.stdout.readline() == b"started\n"
        time.sleep(0.4)  # sh has exited; the background sleep holds stdout
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=TIMEOUT)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 3, (out, err)
    cocoon.ok("delete", "--force", cid)
    nothing_left()


def test_config_mounts_reach_the_guest(cocoon, make_bundle, hostdir, tmp_path, nothing_left):
    """config.json's mounts in the guest: a tmpfs with its options, a
    writable bind whose writes reach the host, a read-only bind of a
    directory and a bind of a single file, all gone from the host after."""
    (hostdir / "from-host").write_text("host data\n")
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "f").write_text("read me\n")
    single = tmp_path / "single.txt"
    single.write_text("one file\n")
    b = make_bundle("sh", "-c",
                    "grep ' /scratch tmpfs ' /proc/mounts | grep -c size=1024k; "
                    "cat /data/from-host; echo guest-wrote > /data/from-guest; "
                    "cat /ro/f; (echo x > /ro/f) 2>/dev/null || echo ro-refused; "
                    "cat /etc/single.txt; ls /run/cocoon/volumes >/dev/null 2>&1 || echo hidden")
    b.add_mount("/scratch", "tmpfs", "tmpfs", ["nosuid", "size=1m"])
    b.bind(str(hostdir), "/data")
    b.bind(str(ro), "/ro", ["rbind", "ro"])
    b.bind(str(single), "/etc/single.txt", ["bind"])
    r = run_vm(cocoon, b, cocoon.id("vmmnt"))
    assert r.rc == 0, r
    assert r.out == ("1\nhost data\nread me\nro-refused\none file\nhidden\n"), r
    assert (hostdir / "from-guest").read_text() == "guest-wrote\n"
    assert (ro / "f").read_text() == "read me\n"
    nothing_left()


def test_bind_source_missing_in_a_vm_is_a_clear_error(cocoon, make_bundle, tmp_path,
                                                      nothing_left):
    b = make_bundle("true")
    b.bind(str(tmp_path / "no-such-dir"), "/data")
    b.bind(str(tmp_path), "/fine")
    r = run_vm(cocoon, b, cocoon.id("vmmntbad"))
    assert r.rc != 0, r
    assert "no-such-dir" in r.err and "/data" in r.err, r.err
    nothing_left()


def test_readonly_root_in_a_vm(cocoon, make_bundle, nothing_left):
    """root.readonly reaches the guest: the root refuses writes, the mounts
    on it (/dev/shm) keep their own flags, and the bundle is unchanged."""
    b = make_bundle("sh", "-c", "touch /ro-probe; echo rc=$?; "
                    "touch /dev/shm/x && echo shm-ok; grep ' / ' /proc/self/mounts",
                    copy_rootfs=True)
    b.config["root"]["readonly"] = True
    r = run_vm(cocoon, b, cocoon.id("vmro"))
    assert r.rc == 0, r
    assert "rc=1" in r.out and "Read-only file system" in r.err, r
    assert "shm-ok" in r.out, r
    assert " ro," in r.out, r
    assert not os.path.exists(os.path.join(b.path, "rootfs", "ro-probe"))
    nothing_left()


def test_writes_to_the_root_reach_the_bundle(cocoon, make_bundle, nothing_left):
    """Without root.readonly the container's writes land in the bundle's
    rootfs, as in a namespace container (cocoon's VMM serves the directory
    over virtio-fs; the sandbox binds it)."""
    b = make_bundle("sh", "-c", "echo from-the-guest > /written", copy_rootfs=True)
    b.config["root"]["readonly"] = False
    r = run_vm(cocoon, b, cocoon.id("vmrw"))
    assert r.rc == 0, r
    with open(os.path.join(b.path, "rootfs", "written")) as f:
        assert f.read() == "from-the-guest\n"
    nothing_left()


@pytest.mark.parametrize("hv", ["sandbox", "qemu"])
def test_rootfs_annotation_errors(cocoon, make_bundle, nothing_left, hv):
    """An unknown root file system mode is refused at create, before any VM
    starts, and leaves nothing behind."""
    value, message = "ext4", "io.cocoon.vm.rootfs=`ext4`: not virtiofs or erofs"
    b = make_bundle("true")
    b.config.setdefault("annotations", {})["io.cocoon.vm.rootfs"] = value
    b.save()
    r = cocoon("run", "--bundle", b.path, cocoon.id("vmrootfs"),
               glob=("--vm", "--hypervisor", hv))
    assert r.rc != 0, r
    assert message in r.err, r.err
    nothing_left()


@pytest.mark.parametrize("hv,value,message", [
    ("sandbox", "64", "io.cocoon.vm.virtiofs-dax: only cocoon's own VMM has a virtio-fs DAX window"),
    ("qemu", "64", "io.cocoon.vm.virtiofs-dax: only cocoon's own VMM has a virtio-fs DAX window"),
    ("sandbox", "3", "io.cocoon.vm.virtiofs-dax=`3`: want the window's size in MiB, even"),
])
def test_virtiofs_dax_annotation_errors(cocoon, make_bundle, nothing_left, hv, value, message):
    """A DAX window for the root where there can be none, or of a wrong
    size, is refused at create with the reason, and leaves nothing behind
    (cocoon's VMM itself cannot boot its guest here: its DAX path is
    checked by tests/unit/test_guest_config.c and tests/guest/)."""
    b = make_bundle("true")
    b.config.setdefault("annotations", {})["io.cocoon.vm.virtiofs-dax"] = value
    b.save()
    r = cocoon("run", "--bundle", b.path, cocoon.id("vmdax"), glob=("--vm", "--hypervisor", hv))
    assert r.rc != 0, r
    assert message in r.err, r.err
    nothing_left()


def test_exec_tty_console_socket(cocoon, make_bundle, console_socket, nothing_left):
    """exec --tty --detach --console-socket: a pty master comes back, the
    guest process has a terminal, and input typed on the master reaches it."""
    srv, path = console_socket
    cid = cocoon.id("vmexect")
    b = make_bundle("sleep", "1000")
    cocoon.ok("create", "--bundle", b.path, cid, glob=VM)
    cocoon.ok("start", cid)
    r = cocoon("exec", "--tty", "--detach", "--console-socket", path, cid,
               "sh", "-c", "[ -t 0 ] && [ -t 1 ] && echo is-a-tty; read x; echo got-$x")
    assert r.rc == 0, r
    _msg, master = receive_master(srv)
    try:
        buf = b""
        deadline = time.monotonic() + TIMEOUT
        while b"is-a-tty" not in buf and time.monotonic() < deadline:
            if select.select([master], [], [], 0.5)[0]:
                buf += os.read(master, 4096)
        assert b"is-a-tty" in buf, buf
        os.write(master, b"hello\r")
        while b"got-hello" not in buf and time.monotonic() < deadline:
            if select.select([master], [], [], 0.5)[0]:
                try:
                    buf += os.read(master, 4096)
                except OSError:
                    break
        assert b"got-hello" in buf, buf
    finally:
        os.close(master)
    cocoon.ok("delete", "--force", cid)
    nothing_left()


def test_exec_tty_detach_needs_console_socket(cocoon, make_bundle, nothing_left):
    cid = cocoon.id("vmexecn")
    b = make_bundle("sleep", "1000")
    cocoon.ok("create", "--bundle", b.path, cid, glob=VM)
    cocoon.ok("start", cid)
    cocoon.fail("exec", "--tty", "--detach", cid, "true", expect=["--console-socket"])
    cocoon.ok("delete", "--force", cid)
    nothing_left()


def _procs(d):
    with open(os.path.join(d, "cgroup.procs")) as f:
        return {int(x) for x in f.read().split()}


def test_the_vm_lives_in_the_container_cgroup(cocoon, make_bundle, nothing_left):
    """The monitor and what it runs (here the sandbox's agent and the
    container's process) are in the container's cgroup, with the limits
    that apply to a whole VM (memory, cpu) and without the guest-side ones
    (pids, devices: a pids limit of 1 would keep the VMM from starting a
    thread, a device rule would forbid its /dev/kvm); ps, pause, resume,
    update and delete of a paused container act on all of it."""
    cid = cocoon.id("vmcg")
    b = make_bundle("sleep", "1000")
    b.linux.setdefault("resources", {}).update({
        "memory": {"limit": 512 << 20},
        "pids": {"limit": 1},
        "devices": [{"allow": False, "access": "rwm"}],
    })
    b.save()
    cocoon.ok("create", "--bundle", b.path, cid, glob=VM)
    pid = cocoon.state(cid)["pid"]
    dirs = cocoon_cgroup_dirs(cocoon, cid)
    assert dirs, "no cgroup for the VM container"
    for d in dirs:
        assert pid in _procs(d), f"the monitor {pid} is not in {d}"
    mem = [d for d in dirs if os.path.exists(os.path.join(d, "memory.limit_in_bytes"))
           or os.path.exists(os.path.join(d, "memory.max"))]
    for d in mem:
        f = "memory.limit_in_bytes" if "memory.limit_in_bytes" in os.listdir(d) else "memory.max"
        assert int(open(os.path.join(d, f)).read()) == 512 << 20
    for d in dirs:
        if os.path.exists(os.path.join(d, "pids.max")):
            assert open(os.path.join(d, "pids.max")).read().strip() == "max"
    cocoon.ok("start", cid)
    ps = json.loads(cocoon.ok("ps", "--format", "json", cid).out)
    assert pid in ps and len(ps) >= 3, ps  # the monitor, the agent, sleep
    cocoon.ok("update", "--memory", str(768 << 20), cid)
    for d in mem:
        f = "memory.limit_in_bytes" if "memory.limit_in_bytes" in os.listdir(d) else "memory.max"
        assert int(open(os.path.join(d, f)).read()) == 768 << 20
    cocoon.ok("pause", cid)
    assert cocoon.status(cid) == "paused"
    cocoon.ok("resume", cid)
    r = cocoon("exec", cid, "echo", "after-resume")
    assert r.rc == 0 and r.out == "after-resume\n", r
    cocoon.ok("pause", cid)
    cocoon.ok("delete", "--force", cid)  # a paused VM is thawed to be shut down
    assert cocoon_cgroup_dirs(cocoon, cid) == []
    nothing_left()


def cocoon_cgroup_dirs(cocoon, cid):
    return cgroup_dirs(cid, roots=(cocoon.root,))


def test_memory_limit_too_small_for_a_vm(cocoon, make_bundle, nothing_left):
    b = make_bundle("true")
    b.linux.setdefault("resources", {})["memory"] = {"limit": 40 << 20}
    b.save()
    r = cocoon("create", "--bundle", b.path, cocoon.id("vmsmall"),
               glob=("--vm", "--hypervisor", "qemu"))
    assert r.rc == 1 and "memory.limit 41943040 bytes is too small for a VM" in r.err, r
    nothing_left()


def test_attach_into_the_vm(cocoon, make_bundle, tmp_path, nothing_left):
    """attach on a VM container: the agent builds the session inside the VM
    (here the sandbox): the tools are `/`, the container's files at
    /var/lib/cntr, /proc is the guest's; the container sees no change and
    no tools mount is left in the guest."""
    tools = tmp_path / "tools"
    cid = cocoon.id("vmatt")
    b = make_bundle("sh", "-c", "echo inside > /tmp/made-by-container; exec sleep 1000",
                    copy_rootfs=True)
    b.config["hostname"] = "attached"
    b.config["root"]["readonly"] = False
    b.save()
    # The tools: a copy of the bundle's busybox (a "fat" image of our own).
    import shutil
    shutil.copytree(b.rootfs, tools, symlinks=True)
    (tools / "TOOLS-MARKER").write_text("fat\n")
    cocoon.ok("create", "--bundle", b.path, cid, glob=VM)
    cocoon.ok("start", cid)
    wait_for(lambda: cocoon("exec", cid, "cat", "/tmp/made-by-container").out == "inside\n",
             "the container's first write")
    before = cocoon("exec", cid, "cat", "/proc/self/mountinfo").out
    r = cocoon("attach", "--tools", str(tools), cid, "--", "sh", "-c",
               "cat /TOOLS-MARKER; cat /var/lib/cntr/tmp/made-by-container; hostname; "
               "ls /proc | grep -c '^[0-9]'; cat /proc/1/comm")
    assert r.rc == 0, r
    lines = r.out.split("\n")
    assert lines[0] == "fat" and lines[1] == "inside" and lines[2] == "attached", r
    assert lines[4] in ("init", "cocoon-init"), r  # the guest's PID 1: the agent
    r = cocoon("attach", "--tools", str(tools), cid, "--", "sh", "-c", "exit 7")
    assert r.rc == 7, r
    after = cocoon("exec", cid, "cat", "/proc/self/mountinfo").out
    assert [l.split()[4] for l in before.splitlines()] == \
           [l.split()[4] for l in after.splitlines()], "the container's mounts changed"
    cocoon.fail("attach", "--tools", str(tmp_path / "nope"), cid, "--", "true",
                expect=["nope"])
    # The guest is not trusted with the host's / by default.
    cocoon.fail("attach", cid, "--", "true", expect=["needs --tools DIR"])
    cocoon.ok("delete", "--force", cid)
    nothing_left()


def test_security_controls_in_a_vm(cocoon, make_bundle, nothing_left):
    """linux.seccomp (compiled on the host, installed by the agent, for
    exec'd processes too), maskedPaths, readonlyPaths and sysctl reach the
    container as they reach a namespace container."""
    def protected(b):
        b.linux["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]}
        b.linux["maskedPaths"] = ["/proc/version", "/sys/firmware", "/no/such/path"]
        b.linux["readonlyPaths"] = ["/proc/sys"]
        b.linux["sysctl"] = {"kernel.shmmni": "1234", "net.ipv4.ip_forward": "1"}
        return b

    b = protected(make_bundle("sh", "-c",
                              "mkdir /tmp/d; echo mk=$?; grep ^Seccomp: /proc/self/status; "
                              "wc -c < /proc/version; ls -A /sys/firmware | wc -l; "
                              "cat /proc/sys/kernel/shmmni /proc/sys/net/ipv4/ip_forward; "
                              "echo 1 > /proc/sys/kernel/shmmax; echo ro=$?"))
    r = run_vm(cocoon, b, cocoon.id("vmsec"))
    assert r.rc == 0, r
    assert r.out.split() == ["mk=1", "Seccomp:", "2", "0", "0", "1234", "1", "ro=1"], r
    assert "Function not implemented" in r.err and "Read-only" in r.err, r
    # The host's own value is untouched.
    with open("/proc/sys/kernel/shmmni") as f:
        assert f.read().strip() != "1234"

    cid = cocoon.id("vmsecx")
    b = protected(make_bundle("sleep", "1000"))
    b.save()
    cocoon.ok("create", "--bundle", b.path, cid, glob=VM)
    cocoon.ok("start", cid)
    r = cocoon("exec", cid, "sh", "-c", "mkdir /tmp/x; echo rc=$?")
    assert r.rc == 0 and r.out == "rc=1\n", r
    assert "Function not implemented" in r.err, r
    cocoon.ok("delete", "--force", cid)
    nothing_left()


@pytest.mark.parametrize("case", ["host-sysctl", "listener", "bad-sysctl"])
def test_security_control_errors_in_a_vm(cocoon, make_bundle, nothing_left, case):
    """What a VM container cannot honour is a clear error at create, and
    nothing is left behind."""
    b = make_bundle()
    if case == "host-sysctl":
        # The sandbox shares the host's kernel: vm.* is not its own.
        b.linux["sysctl"] = {"vm.swappiness": "10"}
        expect = ["vm.swappiness", "host sandbox"]
    elif case == "listener":
        b.linux["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW",
                              "listenerPath": "/run/nowhere.sock"}
        expect = ["listenerPath", "VM container"]
    else:
        b.linux["sysctl"] = {"net.ipv4.ip_forward": "not-a-number"}
        expect = ["net.ipv4.ip_forward", "not-a-number"]
    b.save()
    cocoon.fail("create", "--bundle", b.path, cocoon.id("vmsecerr"), glob=VM, expect=expect)
    nothing_left()

"""`cocoon attach`: the host's (or a tools directory's) programs inside a
running container, in its namespaces, cgroup and identity, with the
container's root at /var/lib/cntr, and no change seen by the container.

The tests of what the session sees run on both mechanisms (the `attach`
fixture): the new mount API (default) and --fuse (the tools served by
cocoon's FUSE server from the host)."""
import os
import signal
import subprocess
import time

import pytest

from cocoonlib import (COCOON, needs_root, proc_status_field, read_file, token_pids,
                       wait_for)
from enginelib import run_in_pty

pytestmark = needs_root

CNTR = "/var/lib/cntr"
MECHANISMS = ["mount-api", "fuse"]


def cocoon_procs(token):
    """This test's cocoon processes (attach, a --fuse server)."""
    exe = os.path.realpath(COCOON)
    found = []
    for p in token_pids(token):
        try:
            if os.readlink(f"/proc/{p}/exe") == exe:
                found.append(p)
        except OSError:
            pass
    return found


def fuse_fd_holders(token):
    """This test's processes that hold /dev/fuse open."""
    found = []
    for p in token_pids(token):
        try:
            fds = os.listdir(f"/proc/{p}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{p}/fd/{fd}") == "/dev/fuse":
                    found.append(p)
                    break
            except OSError:
                pass
    return found


@pytest.fixture(params=MECHANISMS)
def attach(request, cocoon):
    """The `attach` command of one mechanism. After a --fuse test: no FUSE
    server (nor attach) process and no /dev/fuse fd is left."""
    fuse = request.param == "fuse"
    if fuse and not os.path.exists("/dev/fuse"):
        pytest.skip("no /dev/fuse")
    yield ["attach", "--fuse"] if fuse else ["attach"]
    if fuse:
        wait_for(lambda: cocoon_procs(cocoon.token) == [] and
                 fuse_fd_holders(cocoon.token) == [], "no FUSE server left", timeout=10)


@pytest.fixture
def running(cocoon, make_bundle):
    """A running container (`sleep 1000`); returns (id, host pid of its init)."""
    b = make_bundle("sleep", "1000")
    cid = cocoon.id("at")
    cocoon.ok("run", "--bundle", b.path, "--detach", cid)
    return cid, cocoon.state(cid)["pid"]


def tree_snapshot(root):
    """(path, mode, size, mtime) of everything under root, without following symlinks."""
    out = []
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(d, n)
            st = os.lstat(p)
            out.append((os.path.relpath(p, root), st.st_mode, st.st_size, st.st_mtime_ns))
    return sorted(out)


def pidns_pids(init):
    """Host pids of the processes in the pid namespace of init."""
    ref = os.stat(f"/proc/{init}/ns/pid")
    found = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                s = os.stat(f"/proc/{d}/ns/pid")
            except OSError:
                continue
            if (s.st_ino, s.st_dev) == (ref.st_ino, ref.st_dev):
                found.append(int(d))
    return sorted(found)


def host_passwd_shell(uid=0):
    with open("/etc/passwd") as f:
        for line in f:
            p = line.rstrip("\n").split(":")
            if len(p) >= 7 and p[2] == str(uid):
                return p[6]
    return None


# ---------------------------------------------------------------- inside

def test_host_tools_run_inside(cocoon, attach, running):
    """The host's own programs (not in the busybox container) run; the
    container's files are at /var/lib/cntr."""
    cid, _ = running
    assert not os.path.exists(os.path.join(cocoon.state(cid)["rootfs"], "usr/bin/stat"))
    r = cocoon.ok(*attach, cid, "--", "/usr/bin/stat", "-c", "%F", f"{CNTR}/bin/busybox")
    assert r.out == "regular file\n"
    r = cocoon.ok(*attach, cid, "--", "/bin/ls", CNTR)
    assert set(r.out.split()) >= {"bin", "etc", "proc", "tmp"}
    # `/` is the host's
    r = cocoon.ok(*attach, cid, "--", "/bin/ls", "-A", "/")
    assert set(r.out.split()) == set(os.listdir("/"))


def test_only_the_containers_processes(cocoon, attach, running):
    cid, init = running
    r = cocoon.ok(*attach, cid, "--", "sh", "-c", "ls /proc | grep -E '^[0-9]+$'; true")
    pids = sorted(int(p) for p in r.out.split())
    assert 1 in pids and len(pids) <= 4, r.out  # the init, sh, ls, grep
    r = cocoon.ok(*attach, cid, "--", "ps", "-e", "-o", "pid=,comm=")
    procs = [l.split() for l in r.out.splitlines()]
    assert ["1", "sleep"] in procs
    assert len(procs) <= 3, r.out  # the init, ps (and sh if it did not exec)


def test_network_uts_ipc_are_the_containers(cocoon, attach, running):
    cid, init = running
    r = cocoon.ok(*attach, cid, "--", "cat", "/proc/net/dev")
    ifaces = [l.split(":")[0].strip() for l in r.out.splitlines()[2:]]
    assert ifaces == ["lo"], r.out
    if os.path.exists("/usr/sbin/ip") or os.path.exists("/sbin/ip"):
        r = cocoon.ok(*attach, cid, "--", "ip", "-o", "link")
        assert [l.split(":")[1].strip() for l in r.out.splitlines()] == ["lo"], r.out
    assert cocoon.ok(*attach, cid, "--", "hostname").out == "cocoon\n"
    for ns in ("net", "uts", "ipc", "pid", "cgroup"):
        r = cocoon.ok(*attach, cid, "--", "readlink", f"/proc/self/ns/{ns}")
        assert r.out.strip() == os.readlink(f"/proc/{init}/ns/{ns}"), ns
    # a mount namespace of its own: neither the host's nor the container's
    r = cocoon.ok(*attach, cid, "--", "readlink", "/proc/self/ns/mnt")
    assert r.out.strip() not in (os.readlink(f"/proc/{init}/ns/mnt"),
                                 os.readlink("/proc/self/ns/mnt"))


def test_identity_is_the_containers(cocoon, attach, running):
    """uid/gid, capabilities, no_new_privs and the seccomp filter of the
    container (cocoon knows its filter from config.json)."""
    cid, init = running
    r = cocoon.ok(*attach, cid, "--", "cat", "/proc/self/status")
    st = dict(l.split(":", 1) for l in r.out.splitlines() if ":" in l)
    for f in ("CapBnd", "CapEff", "CapPrm", "CapInh", "CapAmb", "NoNewPrivs", "Seccomp",
              "Uid", "Gid"):
        assert st[f].strip() == proc_status_field(init, f), f
    env = cocoon.ok(*attach, cid, "--", "env").out.splitlines()
    assert f"COCOON_TEST_TOKEN={cocoon.token}" in env
    # /etc/passwd is the container's: uid 0 is named from it
    assert cocoon.ok(*attach, cid, "--", "cat", "/etc/passwd").out == \
        "root:x:0:0:root:/root:/bin/sh\n"


def test_cgroup_is_the_containers(cocoon, attach, running, tmp_path):
    cid, init = running
    p = cocoon.popen(*attach, cid, "--", "sh", "-c", "echo ready; exec sleep 30",
                     stdout=subprocess.PIPE)
    try:
        assert p.stdout.readline() == b"ready\n"
        session = [x for x in pidns_pids(init) if x != init]
        assert len(session) == 1
        assert read_file(f"/proc/{session[0]}/cgroup") == read_file(f"/proc/{init}/cgroup")
    finally:
        p.kill()
        p.wait()


def test_user_option(cocoon, attach, running):
    cid, _ = running
    assert cocoon.ok(*attach, "--user", "1000:1001", cid, "--", "id", "-u").out == "1000\n"
    assert cocoon.ok(*attach, "--user", "1000:1001", cid, "--", "id", "-g").out == "1001\n"
    # names come from the container's /etc/passwd
    assert cocoon.ok(*attach, "--user", "root", cid, "--", "id", "-u").out == "0\n"
    cocoon.fail(*attach, "--user", "nosuchuser", cid, "--", "true", expect="nosuchuser")


def test_exit_status_and_signals(cocoon, attach, running):
    cid, _ = running
    assert cocoon(*attach, cid, "--", "sh", "-c", "exit 7").rc == 7
    assert cocoon(*attach, cid, "--", "sh", "-c", "kill -9 $$").rc == 137
    p = cocoon.popen(*attach, cid, "--", "sh", "-c",
                     "trap 'echo got-term; exit 9' TERM; echo ready; "
                     "while :; do sleep 0.05; done", stdout=subprocess.PIPE)
    assert p.stdout.readline() == b"ready\n"
    p.send_signal(signal.SIGTERM)
    out = p.stdout.read()
    assert p.wait(timeout=10) == 9
    assert out == b"got-term\n"


def test_default_shell_from_the_tools(cocoon, attach, running):
    """No command: the user's shell from the tools' /etc/passwd (the host's
    here), reading commands from stdin."""
    cid, _ = running
    shell = host_passwd_shell(0)
    if not shell or not os.path.exists(shell):
        pytest.skip("root has no shell in the host's /etc/passwd")
    p = cocoon.popen(*attach, cid, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    out, _ = p.communicate(b"echo shell=$0; readlink /proc/$$/exe; exit 3\n", timeout=20)
    assert p.returncode == 3
    lines = out.decode().splitlines()
    assert lines[0] in (f"shell={shell}", f"shell={os.path.basename(shell)}"), lines
    assert lines[1] == os.path.realpath(shell)


def test_tty(cocoon, attach, running):
    cid, _ = running
    st, out = run_in_pty(cocoon.argv([*attach, cid, "--", "sh", "-c",
                                      "stty size; test -t 0 && echo is-a-tty; exit 4"]),
                         env=cocoon.env)
    assert st == 4, out
    assert b"33 111" in out and b"is-a-tty" in out
    # stdin not a terminal: no pty unless --tty
    r = cocoon.ok(*attach, cid, "--", "sh", "-c", "test -t 1 || echo no-tty")
    assert r.out == "no-tty\n"
    r = cocoon.ok(*attach, "--tty", cid, "--", "sh", "-c", "test -t 1 && echo tty")
    assert r.out.strip() == "tty"


def test_tools_directory(cocoon, attach, running, tmp_path):
    """--tools DIR: a tool set without /proc, /dev, /sys, /etc or /var: the
    mount points are made in a tmpfs, never in DIR."""
    cid, _ = running
    tools = tmp_path / "tools"
    (tools / "bin").mkdir(parents=True)
    subprocess.run(["cp", "/bin/busybox", str(tools / "bin")], check=True)
    for a in ("sh", "ls", "cat", "ps"):
        os.symlink("busybox", tools / "bin" / a)
    before = tree_snapshot(tools)
    r = cocoon.ok(*attach, "--tools", str(tools), cid, "--", "sh", "-c",
                  f"ls /; echo --; ls {CNTR}/bin/busybox; ps -o pid,comm | tail -n +2")
    top, rest = r.out.split("--\n")
    assert set(top.split()) == {"bin", "dev", "etc", "proc", "sys", "var"}
    assert rest.splitlines()[0] == f"{CNTR}/bin/busybox"
    assert tree_snapshot(tools) == before


def test_pid_of_another_runtimes_container(cocoon, attach, tmp_path):
    """--pid: any process, here one in namespaces made by unshare(1)."""
    p = subprocess.Popen(["unshare", "--fork", "--pid", "--net", "--uts", "--ipc",
                          "--mount", "--mount-proc", "--", "sh", "-c",
                          "hostname other-rt; echo ready; exec sleep 1000"],
                         stdout=subprocess.PIPE, env=cocoon.env)
    try:
        assert p.stdout.readline() == b"ready\n"
        target = wait_for(lambda: [x for x in token_pids(cocoon.token)
                                   if read_file(f"/proc/{x}/comm") == "sleep\n"], "sleep")[0]
        r = cocoon.ok(*attach, "--pid", str(target), "--", "sh", "-c",
                      "hostname; cat /proc/net/dev | tail -n +3 | cut -d: -f1; "
                      f"ls /proc | grep -cE '^[0-9]+$'; test -d {CNTR}/proc && echo root-ok")
        lines = [l.strip() for l in r.out.splitlines()]
        assert lines[0] == "other-rt"
        assert lines[1] == "lo"
        assert int(lines[2]) <= 5  # sleep, sh, grep, ls (and unshare's sh may be 1)
        assert lines[3] == "root-ok"
    finally:
        p.kill()
        p.wait()
        for x in token_pids(cocoon.token):
            os.kill(x, 9)


# ---------------------------------------------------------------- no change

def test_container_sees_no_change(cocoon, attach, running, nothing_left):
    """The container's mount table, files and processes are the same before,
    during and after a session; the host gets no /var/lib/cntr."""
    cid, init = running
    rootfs = cocoon.state(cid)["rootfs"]
    mounts = read_file(f"/proc/{init}/mountinfo")
    files = tree_snapshot(rootfs)
    procs = pidns_pids(init)
    host_cntr = os.path.exists(CNTR)
    p = cocoon.popen(*attach, cid, "--", "sh", "-c",
                     f"ls {CNTR} >/dev/null; echo ready; exec sleep 30", stdout=subprocess.PIPE)
    try:
        assert p.stdout.readline() == b"ready\n"
        assert read_file(f"/proc/{init}/mountinfo") == mounts
        # the container's devpts got no new pty, its /dev is untouched
        assert cocoon.ok("exec", cid, "ls", "/dev/pts").out.split() == ["ptmx"]
    finally:
        p.kill()  # SIGKILL: the session dies with it (PR_SET_PDEATHSIG)
        p.wait()
    st, _ = run_in_pty(cocoon.argv([*attach, cid, "--", "true"]), env=cocoon.env)
    assert st == 0
    assert read_file(f"/proc/{init}/mountinfo") == mounts
    assert tree_snapshot(rootfs) == files
    wait_for(lambda: pidns_pids(init) == procs, "only the container's processes")
    assert os.path.exists(CNTR) == host_cntr
    cocoon.ok("delete", "--force", cid)
    nothing_left()


def test_hostile_symlink_in_the_container(cocoon, attach, make_bundle, tmp_path):
    """Symlinks in the container's rootfs are resolved inside its root: an
    absolute /etc/hosts or a climbing relative /etc/passwd pointing at a host
    file never bring that file over the tools' /etc."""
    secret = tmp_path / "secret"
    secret.write_text("host-secret\n")
    b = make_bundle("sleep", "1000", copy_rootfs=True)
    os.symlink(str(secret), os.path.join(b.rootfs, "etc", "hosts"))
    rel = os.path.relpath(secret, os.path.join(b.rootfs, "etc"))  # climbs out with ..
    os.unlink(os.path.join(b.rootfs, "etc", "passwd"))
    os.symlink(rel, os.path.join(b.rootfs, "etc", "passwd"))
    cid = cocoon.id("hs")
    cocoon.ok("run", "--bundle", b.path, "--detach", cid)
    # Not shown over the tools' files (the tools' own stay). Symlinks under
    # /var/lib/cntr itself resolve against the session's `/` (the tools), as
    # any path there does.
    r = cocoon.ok(*attach, cid, "--", "cat", "/etc/hosts", "/etc/passwd")
    assert "host-secret" not in r.out


def test_root_is_the_mechanisms(cocoon, attach, running):
    """The session's `/`: the tools cloned with the mount API, or the FUSE
    mount of cocoon's server (--fuse), which runs on the host, outside the
    container's pid namespace and cgroup, and holds the only /dev/fuse fd."""
    cid, init = running
    p = cocoon.popen(*attach, cid, "--", "sh", "-c",
                     "grep ' / / ' /proc/self/mountinfo | sed 's/.* - //' | cut -d' ' -f1; "
                     "echo ready; exec sleep 30", stdout=subprocess.PIPE)
    try:
        fstype = p.stdout.readline().decode().strip()
        assert p.stdout.readline() == b"ready\n"
        procs = cocoon_procs(cocoon.token)
        if "--fuse" not in attach:
            assert fstype != "fuse.cocoon"
            assert procs == [p.pid] and fuse_fd_holders(cocoon.token) == []
            return
        assert fstype == "fuse.cocoon"
        server = [x for x in procs if x != p.pid]
        assert len(server) == 1, procs
        assert fuse_fd_holders(cocoon.token) == server
        assert server[0] not in pidns_pids(init)
        assert read_file(f"/proc/{server[0]}/cgroup") != read_file(f"/proc/{init}/cgroup")
    finally:
        p.kill()
        p.wait()


# ---------------------------------------------------------------- bad input

def test_unknown_container(cocoon):
    cocoon.fail("attach", "nope", "--", "true", expect="`nope` does not exist")


def test_created_and_stopped_containers(cocoon, make_bundle, hostdir, nothing_left):
    b = make_bundle("true")
    cid = cocoon.id("cr")
    cocoon.ok("create", "--bundle", b.path, cid)
    cocoon.fail("attach", cid, "--", "true", expect=(cid, "created"))
    cocoon.ok("start", cid)
    cocoon.wait_status(cid, "stopped")
    cocoon.fail("attach", cid, "--", "true", expect=(cid, "stopped"))
    cocoon.ok("delete", cid)
    nothing_left()


def test_paused_container(cocoon, running):
    cid, _ = running
    cocoon.ok("pause", cid)
    cocoon.fail("attach", cid, "--", "true", expect=(cid, "paused"))
    cocoon.ok("resume", cid)


def test_bad_tools_directory(cocoon, running, tmp_path):
    cid, _ = running
    cocoon.fail("attach", "--tools", str(tmp_path / "nope"), cid, "--", "true",
                expect=("tools directory", "nope", "No such file"))
    f = tmp_path / "file"
    f.write_text("")
    cocoon.fail("attach", "--tools", str(f), cid, "--", "true", expect="Not a directory")


def test_dead_pid(cocoon):
    p = subprocess.Popen(["true"])
    p.wait()
    cocoon.fail("attach", "--pid", str(p.pid), "--", "true",
                expect=(f"process {p.pid}", "does not exist"))
    cocoon.fail("attach", "--pid", "abc", "--", "true", expect="abc")


def test_missing_command(cocoon, running):
    cid, _ = running
    cocoon.fail("attach", cid, "--", "no-such-tool-xyz", expect=("no-such-tool-xyz", "not found"))


@pytest.mark.parametrize("hide", ["missing", "not-the-device"])
def test_fuse_unavailable(cocoon, running, hide):
    """--fuse where FUSE is not available: cocoon runs in a mount namespace
    of the test's own where /dev/fuse is missing (an empty /dev, as in a
    container without it) or is not the FUSE device. A clear error; no
    server, no session, the container unchanged."""
    cid, init = running
    mounts = read_file(f"/proc/{init}/mountinfo")
    hide_it = {"missing": "mount -t tmpfs tmpfs /dev",
               "not-the-device": "mount --bind /dev/null /dev/fuse"}[hide]
    argv = cocoon.argv(["attach", "--fuse", cid, "--", "true"])
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                        f'{hide_it} && exec "$@"', "sh", *argv],
                       capture_output=True, text=True, env=cocoon.env, timeout=20)
    assert r.returncode == 1, r
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("cocoon: "), r.stderr
    assert "--fuse: FUSE is not available here" in lines[0] and "/dev/fuse" in lines[0], r.stderr
    assert cocoon_procs(cocoon.token) == []
    assert pidns_pids(init) == [init]
    assert read_file(f"/proc/{init}/mountinfo") == mounts


def test_fuse_refused_for_vm_containers(cocoon, make_bundle):
    """A VM container's tools reach its agent through the VM's share: --fuse
    is refused with the reason (the sandbox hypervisor runs the VM here)."""
    b = make_bundle("sleep", "1000")
    cid = cocoon.id("vmf")
    cocoon.ok("create", "--bundle", b.path, cid, glob=("--vm", "--hypervisor", "sandbox"))
    cocoon.ok("start", cid)
    cocoon.fail("attach", "--fuse", cid, "--", "true", expect=("--fuse", cid, "VM"))
    cocoon.ok("delete", "--force", cid)


def test_no_permission(cocoon, running):
    """As nobody: a clear error, nothing attached."""
    if not os.path.exists("/usr/bin/setpriv"):
        pytest.skip("setpriv missing")
    cid, init = running
    drop = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]
    for args in (["attach", "--pid", str(init), "--", "true"],):
        r = subprocess.run(drop + [COCOON, *args], capture_output=True, text=True, timeout=20)
        assert r.returncode == 1, r
        lines = [l for l in r.stderr.splitlines() if l.strip()]
        assert len(lines) == 1 and lines[0].startswith("cocoon: ") and \
            "no permission" in lines[0], r.stderr
    r = subprocess.run(drop + cocoon.argv(["attach", cid, "--", "true"]), capture_output=True,
                       text=True, timeout=20)
    assert r.returncode == 1 and "Permission denied" in r.stderr, r
    assert pidns_pids(init) == [init]

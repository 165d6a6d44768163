"""The real guest half end to end, on two VMMs.

* qemu: `cocoon --vm --hypervisor qemu` boots cocoon's kernel (make kernel)
  under qemu's software emulation (-accel tcg -M microvm) with cocoon-init as
  PID 1, the bundle's rootfs over virtio-fs (cocoon's FUSE server as a
  vhost-user backend: `cocoon fs vhost-user`) or as an erofs image on
  virtio-blk with a tmpfs overlay, bind mounts through a second virtio-fs
  share, and the agent channel on a virtio-console port; runs everywhere.
* cocoon: the full path, `cocoon --vm run` on cocoon's own VMM (rootfs over
  its virtio-fs device or on virtio-pmem with DAX, the agent on vsock). It
  needs a host that runs guest kernel mode natively (`cocoon vm check`);
  elsewhere it skips and says why.

The VM backend drives the whole lifecycle through the real CLI.""" + "\n"
import os
import shutil
import signal
import subprocess

import pytest

from cocoonlib import COCOON, needs_root, pid_alive, wait_for

BUILD = os.path.dirname(os.path.dirname(COCOON))
AGENT = os.path.join(os.path.dirname(COCOON), "agent", "cocoon-init")
KERNELS = [os.path.join(BUILD, "kernel", k) for k in ("vmlinux", "bzImage")]
KERNEL = next((k for k in KERNELS if os.path.exists(k)), None)
CHANNEL = {"qemu": "/dev/hvc0", "cocoon": "vsock:1024"}
BOOT_TIMEOUT = 120  # TCG on a loaded 2-core machine; never asserted on

pytestmark = [
    needs_root,
    pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None,
                       reason="qemu-system-x86_64 missing (apt-get install qemu-system-x86)"),
    pytest.mark.skipif(shutil.which("mkfs.erofs") is None,
                       reason="mkfs.erofs missing (apt-get install erofs-utils)"),
    pytest.mark.skipif(not os.access(AGENT, os.X_OK), reason=f"{AGENT} not built"),
    pytest.mark.skipif(KERNEL is None, reason="no guest kernel: run `make kernel`"),
]


def native_guest_mode():
    r = subprocess.run([COCOON, "vm", "check"], capture_output=True, text=True, timeout=60)
    if r.returncode == 0:
        return ""
    lines = r.stdout.splitlines()
    return (f"cocoon's VMM needs native guest kernel mode: `cocoon vm check` says "
            f"{lines[1] if len(lines) > 1 else r.stderr.strip()} (see DESIGN.md)")


@pytest.fixture(params=["qemu", "cocoon"])
def hv(request):
    if request.param == "cocoon":
        why = native_guest_mode()
        if why:
            pytest.skip(why)
    return request.param


@pytest.fixture
def vm(hv):
    return ("--vm", "--hypervisor", hv)


@pytest.fixture
def env(cocoon, hv):
    # qemu's KVM would run guest kernel mode emulated here: TCG is faster.
    accel = os.environ.get("COCOON_QEMU_ACCEL", "tcg")
    if hv == "qemu" and not native_guest_mode():
        accel = os.environ.get("COCOON_QEMU_ACCEL", "kvm")
    return dict(cocoon.env, COCOON_QEMU_ACCEL=accel,
                COCOON_VM_TIMEOUT_MS=str(BOOT_TIMEOUT * 1000))


def test_run_in_a_real_guest(cocoon, make_bundle, hv, vm, env, nothing_left):
    b = make_bundle("sh", "-c",
                    "echo out; echo err >&2; uname -s; cat /proc/1/comm; "
                    "grep -o 'cocoon.channel=[^ ]*' /proc/cmdline; "
                    "echo written > /etc/new && cat /etc/new; exit 7", copy_rootfs=True)
    b.config["hostname"] = "guest"
    b.config["root"]["readonly"] = False
    b.save()
    r = cocoon("run", "--bundle", b.path, cocoon.id("grun"), glob=vm, env=env,
               timeout=BOOT_TIMEOUT + 30)
    assert r.rc == 7, r
    assert r.out.split("\n")[:5] == ["out", "Linux", "init", f"cocoon.channel={CHANNEL[hv]}",
                                     "written"], r
    assert r.err == "err\n", r
    nothing_left()
    # The root is the bundle's rootfs over virtio-fs: the write reached it.
    with open(os.path.join(b.rootfs, "etc", "new")) as f:
        assert f.read() == "written\n"


def test_erofs_root_in_a_real_guest(cocoon, make_bundle, hv, vm, env, nothing_left):
    """io.cocoon.vm.rootfs=erofs: the root is an image made at create under
    a tmpfs overlay; the guest may write, the bundle never changes."""
    b = make_bundle("sh", "-c", "grep -c ' / overlay ' /proc/mounts; "
                    "echo written > /etc/new && cat /etc/new", copy_rootfs=True)
    b.config["root"]["readonly"] = False
    b.config.setdefault("annotations", {})["io.cocoon.vm.rootfs"] = "erofs"
    b.save()
    r = cocoon("run", "--bundle", b.path, cocoon.id("gerofs"), glob=vm, env=env,
               timeout=BOOT_TIMEOUT + 30)
    assert r.rc == 0, r
    assert r.out == "1\nwritten\n", r
    assert not os.path.exists(os.path.join(b.rootfs, "etc", "new"))
    nothing_left()


def test_config_mounts_in_a_real_guest(cocoon, make_bundle, hv, vm, env, tmp_path,
                                       nothing_left):
    """Bind mounts reach a real guest through the volume share (virtio-fs):
    a writable bind's writes land on the host, a read-only one refuses
    them; a tmpfs gets its options; the share itself stays out of sight."""
    rw, ro = tmp_path / "rw", tmp_path / "ro"
    rw.mkdir()
    ro.mkdir()
    (rw / "from-host").write_text("host data\n")
    (ro / "f").write_text("read me\n")
    b = make_bundle("sh", "-c",
                    "grep ' /scratch tmpfs ' /proc/mounts | grep -c size=1024k; "
                    "cat /data/from-host; echo guest-wrote > /data/from-guest; "
                    "cat /ro/f; (echo x > /ro/f) 2>/dev/null || echo ro-refused; "
                    "ls /run/cocoon/volumes >/dev/null 2>&1 || echo hidden", copy_rootfs=True)
    b.add_mount("/scratch", "tmpfs", "tmpfs", ["nosuid", "size=1m"])
    b.bind(str(rw), "/data")
    b.bind(str(ro), "/ro", ["rbind", "ro"])
    b.save()
    r = cocoon("run", "--bundle", b.path, cocoon.id("gmnt"), glob=vm, env=env,
               timeout=BOOT_TIMEOUT + 30)
    assert r.rc == 0, r
    assert r.out == "1\nhost data\nread me\nro-refused\nhidden\n", r
    assert (rw / "from-guest").read_text() == "guest-wrote\n"
    assert (ro / "f").read_text() == "read me\n"
    nothing_left()


def test_readonly_root_in_a_real_guest(cocoon, make_bundle, hv, vm, env, nothing_left):
    """root.readonly in a real guest kernel: the agent makes the root's
    mount (the overlay on qemu, the virtio-fs root on cocoon's VMM)
    read-only; /dev/shm on it stays writable."""
    b = make_bundle("sh", "-c", "touch /etc/new; echo rc=$?; touch /dev/shm/x && echo shm-ok",
                    copy_rootfs=True)
    b.config["root"]["readonly"] = True
    b.save()
    r = cocoon("run", "--bundle", b.path, cocoon.id("gro"), glob=vm, env=env,
               timeout=BOOT_TIMEOUT + 30)
    assert r.rc == 0, r
    assert r.out == "rc=1\nshm-ok\n", r
    assert "Read-only file system" in r.err, r
    assert not os.path.exists(os.path.join(b.rootfs, "etc", "new"))
    nothing_left()


def test_security_controls_in_a_real_guest(cocoon, make_bundle, hv, vm, env, nothing_left):
    """The host compiles linux.seccomp, the agent installs it in the guest
    kernel; maskedPaths, readonlyPaths and sysctl (the guest's own kernel:
    any key) apply inside the guest."""
    b = make_bundle("sh", "-c",
                    "mkdir /tmp/d; echo mk=$?; wc -c < /proc/version; "
                    "cat /proc/sys/vm/overcommit_memory; "
                    "echo 1 > /proc/sys/kernel/shmmax; echo ro=$?")
    b.linux["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]}
    b.linux["maskedPaths"] = ["/proc/version"]
    b.linux["readonlyPaths"] = ["/proc/sys"]
    b.linux["sysctl"] = {"vm.overcommit_memory": "2"}
    b.save()
    r = cocoon("run", "--bundle", b.path, cocoon.id("gsec"), glob=vm, env=env,
               timeout=BOOT_TIMEOUT + 30)
    assert r.rc == 0, r
    assert r.out.split() == ["mk=1", "0", "2", "ro=1"], r
    assert "Function not implemented" in r.err and "Read-only" in r.err, r
    nothing_left()


def test_lifecycle_exec_and_signals(cocoon, make_bundle, tmp_path, vm, env, nothing_left):
    cid = cocoon.id("glife")
    b = make_bundle("sh", "-c", "trap 'exit 42' TERM; while :; do sleep 0.2; done")
    p = cocoon.popen("run", "--bundle", b.path, cid, glob=vm, env=env,
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(lambda: os.path.exists(os.path.join(cocoon.root, cid, "state.json")) and
             cocoon.status(cid) == "running", "the guest container to run",
             timeout=BOOT_TIMEOUT)
    pid = cocoon.state(cid)["pid"]
    r = cocoon("exec", cid, "sh", "-c", "echo $((6*7)); hostname; exit 5", env=env,
               timeout=60)
    assert r.rc == 5 and r.out.split()[0] == "42", r
    data = os.urandom(300 << 10)  # beyond one credit window
    src = tmp_path / "in"
    src.write_bytes(data)
    with open(src, "rb") as i:
        r = cocoon("exec", cid, "md5sum", stdin=i, env=env, timeout=120)
    import hashlib
    assert r.rc == 0 and r.out.split()[0] == hashlib.md5(data).hexdigest(), r
    cocoon.ok("kill", cid, "TERM", env=env)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 42, (out, err)
    assert not pid_alive(pid)
    nothing_left()

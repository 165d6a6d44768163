"""The guest kernel boots for real under qemu's software emulation (TCG; guest
kernel mode is not native on the build machines, see DESIGN.md) in a microvm
with cocoon's kind of devices: virtio-mmio announced on the command line, a
virtio-console port on a Unix socket, an erofs image on virtio-blk. Its /init
(busybox) checks the filesystems, namespaces and cgroups the agent will use
and reports on the UART."""
import pytest

import kernelboot
from kernelboot import DONE_MARK, EROFS_TEXT, HVC_TEXT, INIT_MARK, KERNEL_DIR, QEMU

CHECKS = ["hvc0", "vda", "erofs-mount", "tmpfs", "overlay", "overlay-write", "devpts", "ptmx",
          "mqueue", "cgroup2", "cgroup-cpu", "cgroup-cpuset", "cgroup-memory", "cgroup-pids",
          "namespaces", "seccomp", "vsock", "sysctl"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    if QEMU is None:
        pytest.skip("qemu-system-x86_64 is not installed (package qemu-system-x86)")
    return tmp_path_factory.mktemp("kernel-boot")


@pytest.mark.parametrize("image", ["vmlinux", "bzImage"])
def test_kernel_boots_to_init_under_qemu(workdir, image):
    """vmlinux enters through PVH, bzImage through the boot protocol."""
    kernel = KERNEL_DIR / image
    if not kernel.exists():
        pytest.fail(f"no {kernel}: the guest kernel was not built (run `make kernel`)")
    b = kernelboot.boot(kernel, workdir, timeout=120)
    log = f"qemu: {' '.join(b.argv)}\n--- serial ---\n{b.serial[-6000:]}"
    assert not b.timed_out, "the guest did not finish within 120 s\n" + log
    assert "Linux version" in b.serial, log
    assert INIT_MARK in b.serial, "/init did not run\n" + log
    checks = b.checks()
    failed = [c for c in CHECKS if not checks.get(c)]
    assert not failed, f"checks that failed or did not run in the guest: {failed}\n" + log
    assert f"EROFS {EROFS_TEXT}" in b.serial, log
    assert HVC_TEXT in b.hvc, f"hvc0 sent {b.hvc!r}\n" + log
    cmdline = [line for line in b.serial.splitlines() if line.startswith("CMDLINE ")]
    assert cmdline and "virtio_mmio.device=" in cmdline[0], log
    assert DONE_MARK in b.serial, log
    assert b.returncode == 0, f"qemu exited {b.returncode}\n" + log

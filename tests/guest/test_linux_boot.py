"""Full Linux boots in cocoon's VMM. They need a host that runs guest kernel
mode natively (`cocoon vm check`) and a guest kernel: $COCOON_TEST_KERNEL,
or the one `make kernel` builds. Elsewhere they skip and say why."""
import os
import subprocess

import pytest

from test_guests import BUILD, COCOON, ROOT

KERNELS = [os.environ.get("COCOON_TEST_KERNEL", ""),
           os.path.join(ROOT, "build", "kernel", "vmlinux"),
           os.path.join(ROOT, "build", "kernel", "bzImage")]


def host_can_boot_linux():
    if not os.path.exists("/dev/kvm"):
        return False, "no /dev/kvm on this host"
    r = subprocess.run([COCOON, "vm", "check"], capture_output=True, text=True, timeout=60)
    if r.returncode == 2:
        return False, ("guest kernel mode is emulated on this host (`cocoon vm check`: "
                       f"{r.stdout.splitlines()[1] if r.stdout else r.stderr.strip()}); "
                       "a Linux guest cannot boot in useful time")
    if r.returncode != 0:
        return False, f"cocoon vm check failed: {r.stderr.strip()}"
    return True, ""


def guest_kernel():
    for k in KERNELS:
        if k and os.path.isfile(k):
            return k
    return None


@pytest.fixture(scope="module")
def kernel():
    ok, why = host_can_boot_linux()
    if not ok:
        pytest.skip(why)
    k = guest_kernel()
    if k is None:
        pytest.skip("no guest kernel: set COCOON_TEST_KERNEL or run `make kernel`")
    return k


@pytest.mark.parametrize("cpus", [1, 2])
def test_linux_boots_to_panic_and_reboots(kernel, cpus):
    """No root filesystem: Linux boots, prints its banner on the 8250 UART,
    panics for want of a root, and with panic=-1 reboots at once."""
    r = subprocess.run([COCOON, "vm", "run", "--kernel", kernel, "--memory", "128",
                        "--cpus", str(cpus), "--timeout", "30",
                        "--cmdline", "console=ttyS0 panic=-1 reboot=k"],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert "Linux version" in r.stdout, r.stdout[-2000:]
    assert r.returncode == 64, (r.returncode, r.stderr, r.stdout[-2000:])
    if cpus == 2:
        assert "Brought up 1 node, 2 CPUs" in r.stdout, r.stdout[-2000:]

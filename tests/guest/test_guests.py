"""KVM test guests booted by the real `cocoon vm run`, as a user would.

The guests run their checks at CPL3 (native even where guest kernel mode
is emulated) and report through the debug channel; see tests/guest/*.c.
"""
import os
import signal
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COCOON = os.environ.get("COCOON", os.path.join(ROOT, "build", "src", "cocoon"))
BUILD = os.path.dirname(os.path.dirname(COCOON))
PVH_GUEST = os.path.join(BUILD, "tests", "guest", "pvh_guest.elf")
BZ_GUEST = os.path.join(BUILD, "tests", "guest", "bz_guest.bin")
GUESTS = {"pvh": PVH_GUEST, "linux": BZ_GUEST}
TIMEOUT = 60

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0 and not os.access("/dev/kvm", os.R_OK | os.W_OK),
                       reason="needs access to /dev/kvm"),
    pytest.mark.skipif(not os.path.exists("/dev/kvm"), reason="no /dev/kvm on this host"),
]


def vm_run(*args, stdin=subprocess.DEVNULL):
    return subprocess.run([COCOON, "vm", "run", *args], stdin=stdin, capture_output=True,
                          errors="replace",
                          text=True, timeout=TIMEOUT)


def guest(cmdline, *extra, memory=64, kernel=None):
    return vm_run("--kernel", kernel or PVH_GUEST, "--memory", str(memory),
                  "--cmdline", f"mem_mib={memory} {cmdline}".strip(), *extra)


@pytest.mark.parametrize("boot", GUESTS)
def test_exit_status_and_uart(boot):
    r = guest("exit=7", kernel=GUESTS[boot])
    assert r.returncode == 7, r.stderr
    assert "cocoon test guest: hello from the 8250 UART" in r.stdout
    assert "guest: cmdline: mem_mib=64 exit=7" in r.stderr
    assert f"guest: boot: {boot}" in r.stderr


@pytest.mark.parametrize("boot", GUESTS)
@pytest.mark.parametrize("memory", [8, 64, 512])
def test_memory_map_matches_memory(boot, memory):
    r = guest("", memory=memory, kernel=GUESTS[boot])
    assert r.returncode == 0, r.stderr
    assert "memmap[0]: 0 +9fc00 type 1" in r.stderr


@pytest.mark.parametrize("boot", GUESTS)
def test_initrd_bytes_arrive(tmp_path, boot):
    data = os.urandom(300_000)
    p = tmp_path / "initrd"
    p.write_bytes(data)
    r = guest(f"initrd_size={len(data)} initrd_sum={sum(data)}", "--initrd", str(p),
              kernel=GUESTS[boot])
    assert r.returncode == 0, r.stderr
    assert "sum ok" in r.stderr


def test_initrd_checked_byte_for_byte(tmp_path):
    """A wrong expected sum must fail: the check in the guest is real."""
    data = os.urandom(4096)
    p = tmp_path / "initrd"
    p.write_bytes(data)
    r = guest(f"initrd_size={len(data)} initrd_sum={sum(data) + 1}", "--initrd", str(p))
    assert r.returncode == 66, r.stderr
    assert "initrd byte sum" in r.stderr


@pytest.mark.parametrize("cpus", [1, 2, 32])
def test_smp_boots_and_the_mp_table_lists_every_cpu(cpus):
    r = guest(f"exit=3 mptable={cpus}", "--cpus", str(cpus))
    assert r.returncode == 3, r.stderr
    assert f"mptable: {cpus} processors, IOAPIC, 24 IRQs" in r.stderr


@pytest.mark.parametrize("boot", GUESTS)
@pytest.mark.parametrize("cpus", [2, 8])
def test_application_processors_start_with_init_and_startup_ipis(boot, cpus):
    r = guest(f"smp={cpus} exit=4", "--cpus", str(cpus), kernel=GUESTS[boot])
    assert r.returncode == 4, r.stderr
    assert f"smp: {cpus - 1} application processors up" in r.stderr


def test_smp_check_is_real():
    """Asking for more CPUs than the VM has must fail (after a while)."""
    r = guest("smp=3", "--cpus", "2", "--timeout", "20")
    assert r.returncode in (66, 67), r.stderr
    assert "1 of 2 application processors came up" in r.stderr or "timeout" in r.stderr


def test_mp_table_check_is_real():
    r = guest("mptable=3", "--cpus", "2")
    assert r.returncode == 66, r.stderr
    assert "2 processors (1 BSP), expected 3" in r.stderr


def test_console_to_file_and_none(tmp_path):
    out = tmp_path / "console.txt"
    r = guest("", "--console", f"file:{out}")
    assert r.returncode == 0, r.stderr
    assert "hello from the 8250 UART" in out.read_text()
    assert "hello" not in r.stdout
    r = guest("", "--console", "none")
    assert r.returncode == 0 and r.stdout == ""


def test_triple_fault_is_distinguished():
    r = guest("fault=1")
    assert r.returncode == 65, r.stderr
    assert "triple fault" in r.stderr


def test_guest_failure_is_distinguished():
    r = guest("fail=yes")
    assert r.returncode == 66, r.stderr
    assert "asked to fail: yes" in r.stderr


def test_looping_guest_is_stopped_on_timeout():
    r = guest("loop=1", "--timeout", "0.5")
    assert r.returncode == 67, r.stderr
    assert "timeout" in r.stderr


def test_sigterm_stops_the_vm_in_order():
    p = subprocess.Popen([COCOON, "vm", "run", "--kernel", PVH_GUEST, "--memory", "64",
                          "--cmdline", "loop=1"], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # wait until the guest runs its checks (its first ucall)
        line = p.stderr.readline()
        assert "guest: cmdline" in line, line
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=TIMEOUT)
    finally:
        p.kill()
    assert p.returncode == 128 + signal.SIGTERM, err
    assert "stopped by signal 15" in err


@pytest.mark.parametrize("boot", GUESTS)
def test_garbage_to_every_port_does_not_hurt_the_vmm(boot):
    r = guest("garbage_ports=1 exit=5", kernel=GUESTS[boot])
    assert r.returncode == 5, r.stderr
    assert "wrote garbage to every port" in r.stdout


def test_garbage_to_mmio_does_not_hurt_the_vmm():
    r = guest("garbage_mmio=1 exit=6")
    assert r.returncode == 6, r.stderr
    assert "garbage written to" in r.stderr


def test_vm_check_reports_guest_kernel_mode():
    r = subprocess.run([COCOON, "vm", "check"], capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode in (0, 2), r.stderr
    assert "guest kernel mode (CPL0): " in r.stdout
    native = "CPL0): native" in r.stdout
    assert (r.returncode == 0) == native
    q = subprocess.run([COCOON, "vm", "check", "--quiet"], capture_output=True, text=True,
                       timeout=TIMEOUT)
    assert q.stdout == "" and q.returncode in (0, 2)


def test_kernel_not_mapped_boots_too():
    r = guest("exit=5", "--no-map-kernel")
    assert r.returncode == 5, r.stderr


@pytest.mark.parametrize("args,expect", [
    (["--kernel", "/nonexistent"], "/nonexistent"),
    (["--kernel", "/etc/passwd"], "neither an ELF vmlinux nor a bzImage"),
    (["--memory", "3"], "--memory"),
    (["--memory", "65"], "--memory"),
    (["--cpus", "0"], "--cpus"),
    (["--cmdline", "x" * 70000], "--cmdline"),
    (["--console", "tty"], "--console"),
    (["--bogus"], "--bogus"),
    (["--timeout", "0"], "--timeout"),
    (["--timeout", "soon"], "--timeout"),
])
def test_bad_input_is_one_clear_line(args, expect):
    base = {"--kernel": PVH_GUEST, "--memory": "64"}
    argv = []
    for k, v in base.items():
        if k not in args:
            argv += [k, v]
    r = vm_run(*argv, *args)
    assert r.returncode == 1, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cocoon: ") and expect in lines[0], r.stderr


def test_initrd_larger_than_memory(tmp_path):
    p = tmp_path / "big"
    with open(p, "wb") as f:
        f.truncate(16 << 20)
    r = guest("", "--initrd", str(p), memory=8)
    assert r.returncode == 1
    assert "initrd" in r.stderr and "does not fit" in r.stderr

"""The guest kernel's configuration: kernel/cocoon.config documents every
option, holds everything cocoon's guests need, and every option of it is in
the .config of the kernel `make kernel` built (make test builds it first)."""
import subprocess
import time

import pytest

from kernelboot import BUILD_SCRIPT, FRAGMENT, KERNEL_DIR, parse_fragment, read_config

# What the guest needs (docs/kernel.md); the fragment may add more.
REQUIRED = {
    "boot": ["64BIT", "SMP", "X86_MPPARSE", "HYPERVISOR_GUEST", "PVH", "PARAVIRT",
             "KVM_GUEST", "BINFMT_ELF", "BINFMT_SCRIPT", "BLK_DEV_INITRD"],
    "console": ["PRINTK", "TTY", "SERIAL_8250", "SERIAL_8250_CONSOLE", "VIRTIO_CONSOLE",
                "UNIX98_PTYS"],
    "virtio": ["VIRTIO_MMIO", "VIRTIO_MMIO_CMDLINE_DEVICES", "VIRTIO_BLK", "VIRTIO_NET",
               "VIRTIO_VSOCKETS", "VIRTIO_PMEM", "VIRTIO_FS"],
    "pmem and DAX": ["LIBNVDIMM", "BLK_DEV_PMEM", "ZONE_DEVICE", "MEMORY_HOTPLUG",
                     "MEMORY_HOTREMOVE", "SPARSEMEM_VMEMMAP", "DAX", "FS_DAX", "FUSE_DAX"],
    "filesystems": ["EXT4_FS", "EROFS_FS", "OVERLAY_FS", "FUSE_FS", "TMPFS", "DEVTMPFS",
                    "DEVTMPFS_MOUNT", "PROC_FS", "SYSFS"],
    "system calls": ["FUTEX", "EPOLL", "SIGNALFD", "TIMERFD", "EVENTFD", "POSIX_TIMERS",
                     "MULTIUSER", "FILE_LOCKING"],
    "network": ["NET", "UNIX", "INET", "VSOCKETS"],
    "namespaces and cgroups": ["NAMESPACES", "UTS_NS", "IPC_NS", "PID_NS", "NET_NS",
                               "CGROUPS", "MEMCG", "CGROUP_PIDS", "CGROUP_SCHED"],
}
REQUIRED_OFF = ["MODULES", "ACPI", "PCI"]


def built_config():
    cfg = KERNEL_DIR / ".config"
    if not cfg.exists():
        pytest.fail(f"no {cfg}: the guest kernel was not built (run `make kernel`)")
    return read_config(cfg)


def test_fragment_gives_a_reason_for_every_option():
    opts = parse_fragment()
    assert len(opts) > 50
    no_why = [o for o, _, why in opts if not why]
    assert not no_why, f"options without a `# why:` line: {no_why}"
    names = [o for o, _, _ in opts]
    dups = sorted({o for o in names if names.count(o) > 1})
    assert not dups, f"options set twice in {FRAGMENT}: {dups}"


@pytest.mark.parametrize("group", sorted(REQUIRED))
def test_fragment_has_what_the_guest_needs(group):
    vals = {o: v for o, v, _ in parse_fragment()}
    missing = [o for o in REQUIRED[group] if vals.get("CONFIG_" + o) != "y"]
    assert not missing, f"{group}: not set to y in {FRAGMENT}: {missing}"


def test_fragment_keeps_modules_acpi_and_pci_off():
    vals = {o: v for o, v, _ in parse_fragment()}
    wrong = [o for o in REQUIRED_OFF if vals.get("CONFIG_" + o) != "n"]
    assert not wrong, f"should be `# CONFIG_X is not set` in {FRAGMENT}: {wrong}"


def test_every_fragment_option_is_in_the_built_config():
    have = built_config()
    wrong = []
    for opt, want, _ in parse_fragment():
        got = have.get(opt, "n")
        if got != want:
            wrong.append(f"{opt}: fragment {want}, .config {got}")
    assert not wrong, "the built kernel does not match kernel/cocoon.config:\n" + "\n".join(wrong)


def test_every_required_option_is_in_the_built_config():
    have = built_config()
    missing = [o for g in REQUIRED.values() for o in g if have.get("CONFIG_" + o) != "y"]
    on = [o for o in REQUIRED_OFF if "CONFIG_" + o in have]
    assert not missing and not on, f"missing: {missing}; should be off: {on}"


def test_print_config_lists_every_option_with_its_reason():
    r = subprocess.run([str(BUILD_SCRIPT), "--print-config"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    for opt, val, why in parse_fragment():
        entry = f"{opt[len('CONFIG_'):]}={val}"
        hits = [line for line in lines if line.split()[:1] == [entry]]
        assert hits, f"--print-config does not list {entry}"
        assert why[:40] in hits[0], f"--print-config does not give the reason of {entry}"
    assert "NOT IN .config" not in r.stdout, r.stdout


def test_second_build_reuses_the_cache():
    info = KERNEL_DIR / "build-info"
    if not info.exists():
        pytest.fail("no build/kernel/build-info: run `make kernel`")
    key = subprocess.run([str(BUILD_SCRIPT), "--print-key"], capture_output=True, text=True,
                         timeout=60, check=True).stdout.strip()
    built = dict(line.split("=", 1) for line in info.read_text().splitlines() if "=" in line)
    if built.get("key") != key:
        pytest.fail(f"build/kernel is from another tree (key {built.get('key')}, this tree "
                    f"{key}): run `make kernel`")
    t0 = time.monotonic()
    r = subprocess.run([str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=120)
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stdout + r.stderr
    assert "cached build" in r.stdout, r.stdout
    assert took < 10, f"a cached `make kernel` took {took:.1f} s"

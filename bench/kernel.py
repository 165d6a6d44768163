#!/usr/bin/python3
"""`make bench`, guest kernel part: the size of cocoon's guest kernel and how
long it takes to reach its init under qemu's software emulation.

    /usr/bin/python3 bench/kernel.py [--runs 10] [--build-time] [--no-spec]

What is measured (docs/SPEC.md repeats this next to the figures):

* the kernel `make kernel` installs in build/kernel (scripts/build-kernel.sh
  runs first; it reuses the per-machine cache when nothing changed):
  the file sizes of vmlinux (packed by scripts/pack-vmlinux.py, the file
  VMMs load), of the kernel's own vmlinux (cache entry, with symbols and
  the 2 MiB alignment padding) and of bzImage; the memory span of vmlinux's
  loadable segments and the bytes it loads from the file; the number of
  options kernel/cocoon.config sets and of options =y in .config.
* build time: with --build-time, a from-scratch build in a throw-away
  cache directory is timed (minutes and 1.5 GB of disk, so `make bench`
  does not ask for it). Otherwise the last build from scratch in this
  machine's cache (its build-info: time, CPUs, load average). The load average is reported because the machines
  are shared: the same build takes 3.5 minutes on 2 idle CPUs and twice
  that when others are compiling.
* boot to init: `qemu-system-x86_64 -accel tcg -M microvm` (tests/kernel/
  kernelboot.py: the command line of docs/kernel.md) boots vmlinux (PVH)
  and bzImage, interleaved, with an initramfs whose /init is busybox, an
  erofs disk and a virtio-console port. For each: host wall time from
  starting qemu to the first line /init prints on the UART, the guest's
  /proc/uptime at that moment, and wall time to qemu's exit after /init
  has run its checks and rebooted. Medians over --runs runs. TCG emulates
  every instruction, so these are not the times on KVM; they track how
  much work the kernel does to boot.
"""
import argparse
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "kernel"))
import kernelboot  # noqa: E402

from speclib import SPEC_MD  # noqa: E402
import speclib  # noqa: E402
HEADING = """## Guest kernel: size and boot to init

Targets: vmlinux under 8 MiB. Boot to init is measured under qemu's software
emulation (TCG), so it tracks the kernel's own work, not KVM boot times.

"""
MIB = 1 << 20


def log(msg=""):
    print(msg, flush=True)


def build(cache=None):
    env = dict(os.environ)
    if cache:
        env["COCOON_KERNEL_CACHE"] = cache
    t0 = time.monotonic()
    subprocess.run([str(ROOT / "scripts" / "build-kernel.sh")], check=True, env=env)
    return time.monotonic() - t0


def read_info(path):
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def sizes():
    kd = kernelboot.KERNEL_DIR
    info = read_info(kd / "build-info")
    segs = kernelboot.load_segments(kd / "vmlinux")
    lo = min(p for _, p, _, _ in segs)
    hi = max(p + m for _, p, _, m in segs)
    frag = kernelboot.parse_fragment()
    cfg = kernelboot.read_config(kd / ".config")
    return {
        "vmlinux": (kd / "vmlinux").stat().st_size,
        "vmlinux_elf": int(info.get("vmlinux_elf_bytes", 0)),
        "bzImage": (kd / "bzImage").stat().st_size,
        "span": hi - lo,
        "loaded": sum(f for _, _, f, _ in segs),
        "segments": len(segs),
        "frag_on": sum(1 for _, v, _ in frag if v != "n"),
        "frag_off": sum(1 for _, v, _ in frag if v == "n"),
        "config_y": sum(1 for v in cfg.values() if v == "y"),
        "info": info,
    }


def boots(runs):
    if kernelboot.QEMU is None:
        return None
    work = tempfile.mkdtemp(prefix="cocoon-bench-kernel-")
    recs = {"vmlinux": [], "bzImage": []}
    try:
        for rnd in range(runs + 1):
            order = list(recs) if rnd % 2 == 0 else list(reversed(recs))
            for image in order:
                b = kernelboot.boot(kernelboot.KERNEL_DIR / image, work, timeout=120)
                if b.timed_out or b.to_init is None or b.returncode != 0:
                    raise SystemExit(f"bench: kernel: {image} did not boot to init and exit:\n"
                                     + b.serial[-3000:])
                if rnd:  # round 0 warms up (page cache, qemu's binary)
                    recs[image].append((b.to_init, b.guest_uptime, b.total))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {k: {"to_init": statistics.median(r[0] for r in v),
                "uptime": statistics.median(r[1] for r in v),
                "total": statistics.median(r[2] for r in v),
                "n": len(v)} for k, v in recs.items()}


def loadavg():
    return " ".join(open("/proc/loadavg").read().split()[:3])


def report(s, boot, timed_build, qemu_version, loads):
    info = s["info"]
    lines = ["| file | size |", "|---|---:|"]
    lines.append(f"| build/kernel/vmlinux (packed: what VMMs load) | **{s['vmlinux'] / MIB:.2f} "
                 f"MiB** |")
    if s["vmlinux_elf"]:
        lines.append(f"| the kernel's own vmlinux (symbols, 2 MiB alignment padding) | "
                     f"{s['vmlinux_elf'] / MIB:.2f} MiB |")
    lines.append(f"| build/kernel/bzImage (LZ4) | {s['bzImage'] / MIB:.2f} MiB |")
    lines.append("")
    met = "met" if s["vmlinux"] < 8 * MIB else "**missed**"
    lines.append(f"* vmlinux under 8 MiB: {s['vmlinux'] / MIB:.2f} MiB ({met}). Its "
                 f"{s['segments']} loadable segments span {s['span'] / MIB:.2f} MiB of guest "
                 f"memory, {s['loaded'] / MIB:.2f} MiB of it read from the file (the rest is "
                 "zero-filled).")
    lines.append(f"* Configuration: tinyconfig + kernel/cocoon.config ({s['frag_on']} options "
                 f"enabled, {s['frag_off']} deliberately off, each with its reason: "
                 f"`make kernel-config`); {s['config_y']} options =y in .config in all. "
                 f"Linux {info.get('kernel_release', '?')} from Debian's "
                 f"{info.get('linux_source', '?')}, {info.get('cc', '?')}.")
    if timed_build is not None:
        secs, load = timed_build
        lines.append(f"* Build from scratch (`make kernel`, empty cache, -j{os.cpu_count()}): "
                     f"**{secs / 60:.1f} min** on {os.cpu_count()} CPUs, load average {load} "
                     "(timed by this run); a second `make kernel` reuses the cache "
                     f"({s['cached_ms']:.0f} ms).")
    elif "full_build_seconds" in info:
        secs = int(info["full_build_seconds"])
        lines.append(f"* Build from scratch: **{secs / 60:.1f} min** with -j{info['full_build_cpus']}"
                     f" on {info['full_build_cpus']} CPUs, load average "
                     f"{info.get('full_build_load', '?')} ({info.get('full_build_date', '?')}, "
                     "the last one in this machine's cache); a second `make kernel` reuses the "
                     f"cache ({s['cached_ms']:.0f} ms).")
    else:
        lines.append("* Build from scratch: not recorded in this machine's cache "
                     "(`bench/kernel.py --build-time` times one); a second `make kernel` reuses "
                     f"the cache ({s['cached_ms']:.0f} ms).")
    lines.append("")
    if boot:
        n = boot["vmlinux"]["n"]
        lines.append("| qemu TCG, microvm, 128 MiB, 1 vCPU | start -> /init (wall) | guest uptime "
                     "at /init | start -> exit (wall) |")
        lines.append("|---|---:|---:|---:|")
        for k, label in (("vmlinux", "vmlinux (PVH)"), ("bzImage", "bzImage (boot protocol, "
                                                                   "LZ4)")):
            v = boot[k]
            lines.append(f"| {label} | {v['to_init'] * 1e3:.0f} ms | {v['uptime'] * 1e3:.0f} ms "
                         f"| {v['total'] * 1e3:.0f} ms |")
        lines.append("")
        lines.append(f"Medians of {n} interleaved runs after a warm-up round; {qemu_version}. "
                     "/init mounts erofs from virtio-blk, writes to hvc0, checks overlay, "
                     "cgroup2, namespaces, then reboots (start -> exit includes it).")
    else:
        lines.append("qemu-system-x86_64 is not installed: no boot measurement this run.")
    lines.append("")
    lines.append(f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} CPUs, load average "
                 f"{loads[0]} at the start, {loads[1]} at the end; "
                 "`/usr/bin/python3 bench/kernel.py` (part of `make bench`). What is measured: "
                 "see the docstring of bench/kernel.py.")
    return "\n".join(lines)


def write_spec(section):
    speclib.write_section("kernel", HEADING, section)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--build-time", action="store_true",
                    help="time a from-scratch build in a throw-away cache (minutes)")
    ap.add_argument("--no-spec", action="store_true", help="do not write docs/SPEC.md")
    a = ap.parse_args()
    load_start = loadavg()
    timed = None
    if a.build_time:
        cache = tempfile.mkdtemp(prefix="cocoon-bench-kernel-cache-")
        try:
            log("bench: kernel: a build from scratch in an empty cache")
            before = loadavg()
            secs = build(cache)
            timed = (secs, f"{before} at the start, {loadavg()} at the end")
        finally:
            shutil.rmtree(cache, ignore_errors=True)
    log("bench: kernel: make kernel")
    build()
    s = sizes()
    s["cached_ms"] = build() * 1e3   # the second one: served from the cache
    qv = ""
    if kernelboot.QEMU:
        qv = subprocess.run([kernelboot.QEMU, "--version"], capture_output=True,
                            text=True).stdout.split("\n")[0]
    log(f"bench: kernel: boot to init under qemu TCG, {a.runs} interleaved runs each")
    b = boots(a.runs)
    section = report(s, b, timed, qv, (load_start, loadavg()))
    log()
    log(section)
    if not a.no_spec:
        write_spec(section)
        log(f"\nbench: kernel: wrote {SPEC_MD.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

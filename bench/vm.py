#!/usr/bin/python3
"""`make bench`, VM part: cocoon's VMM side by side with qemu's microvm.

    /usr/bin/python3 bench/vm.py --cocoon build/src/cocoon [--runs 30]

What is measured (docs/SPEC.md repeats this next to the figures):

* start -> first guest instruction -> exit: `cocoon vm run` and
  `qemu-system-x86_64 -M microvm -accel kvm` boot the same payload,
  tests/guest/exit_guest.elf (a PVH ELF whose first instructions write to
  the isa-debug-exit port 0xf4), with 64 MiB of guest memory, no console.
  Wall time from before fork to after wait4, and ru_maxrss (peak RSS of
  the VMM: with this payload the guest touches almost none of its memory,
  so it is the VMM's own overhead). Each VMM runs with and without its
  in-kernel PIT (cocoon --no-pit; qemu pit=off,pic=off). Runs interleave
  round-robin after a warm-up round.
* 100 VMs one after another: the wall time of 100 sequential cocoon runs of
  the same payload.
* 100 VMs alive at once: 100 `cocoon vm run --no-pit` of
  tests/guest/idle_guest.elf (it reads one byte of every page of its 8 MiB
  image at CPL0, then sleeps in HLT); when all have read their image, the
  sum of their PSS (/proc/PID/smaps_rollup) and the sum of the PSS of the
  image's file mapping, which is how much of the kernel image the VMs hold.
* 20 VMs from one kernel: the same with 20 VMs, once with the image mapped
  MAP_PRIVATE from its file (the default) and once copied into guest
  memory (--no-map-kernel): copies of the image added to host memory.
"""
import argparse
import os
import pathlib
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
from speclib import SPEC_MD  # noqa: E402
import speclib  # noqa: E402
HEADING = """## VMs: start -> first guest instruction -> exit, and memory

Targets: start -> exit at most 0.1x qemu microvm's wall time; VMM memory
overhead at most 1 MiB per VM; 20 VMs booted from one kernel file add less
than one copy of it to host memory.

"""


def log(msg=""):
    print(msg, flush=True)


SPAWN = None


def build_spawn(tmp):
    """bench/spawn (static C): forked from Python, ru_maxrss would include
    the interpreter's pages (the kernel folds the pre-exec peak into it)."""
    global SPAWN
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    SPAWN = os.path.join(tmp, "spawn")
    subprocess.run([cc, "-O2", "-static", "-o", SPAWN, str(ROOT / "bench" / "spawn.c")],
                   check=True)


def run_once(argv):
    """Wall seconds, exit status and peak RSS (KiB) of one VMM run."""
    out = subprocess.run([SPAWN, "-l", "/dev/null", "--", *argv], stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, check=True).stdout
    f = dict(kv.split("=") for kv in out.split())
    return int(f["wall_ns"]) / 1e9, int(f["status"]), int(f["maxrss_kb"])


def qemu_argv(qemu, kernel, pit):
    machine = "microvm,x-option-roms=off,rtc=off,isa-serial=off"
    if not pit:
        machine += ",pit=off,pic=off"
    return [qemu, "-M", machine, "-accel", "kvm", "-m", "64", "-nodefaults", "-no-user-config",
            "-display", "none", "-serial", "none", "-monitor", "none", "-kernel", kernel,
            "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]


def start_to_exit(cocoon, guests, qemu, runs):
    exit_guest = str(guests / "exit_guest.elf")
    base = [cocoon, "vm", "run", "--kernel", exit_guest, "--memory", "64", "--console", "none"]
    variants = {"cocoon": (base, 0), "cocoon --no-pit": (base + ["--no-pit"], 0)}
    if qemu:
        # qemu's isa-debug-exit reports (0 << 1) | 1
        variants["qemu microvm"] = (qemu_argv(qemu, exit_guest, True), 1)
        variants["qemu microvm pit=off"] = (qemu_argv(qemu, exit_guest, False), 1)
    recs = {k: [] for k in variants}
    names = list(variants)
    for rnd in range(runs + 1):
        order = names[rnd % len(names):] + names[:rnd % len(names)]
        for k in order:
            argv, want = variants[k]
            wall, rc, rss = run_once(argv)
            if rc != want:
                raise SystemExit(f"bench: {k} exited {rc}, expected {want}: {' '.join(argv)}")
            if rnd:  # round 0 warms up
                recs[k].append((wall, rss))
    stats = {}
    for k, r in recs.items():
        stats[k] = {"wall_ms": statistics.median(w for w, _ in r) * 1e3,
                    "rss_kib": statistics.median(s for _, s in r),
                    "rss_max_kib": max(s for _, s in r)}
    return stats


def pss_of(pid, image=None):
    """Total PSS of a process, and the PSS of its mappings of `image`."""
    total = int(next(line.split()[1] for line in open(f"/proc/{pid}/smaps_rollup")
                     if line.startswith("Pss:")))
    img = 0
    if image:
        inside = False
        for line in open(f"/proc/{pid}/smaps"):
            if "-" in line.split()[0] and len(line.split()) >= 5:
                inside = line.rstrip().endswith(image)
            elif inside and line.startswith("Pss:"):
                img += int(line.split()[1])
    return total, img


def alive(cocoon, kernel, n, extra=()):
    """Start n idle VMs, wait until each holds its image, measure, stop."""
    size_kib = os.path.getsize(kernel) // 1024
    procs = []
    try:
        for _ in range(n):
            procs.append(subprocess.Popen(
                [cocoon, "vm", "run", "--kernel", kernel, "--memory", "64", "--no-pit",
                 "--console", "none", *extra], stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.time() + 120
        # a VM is ready when its RSS holds the image it read
        while time.time() < deadline:
            ready = 0
            for p in procs:
                if p.poll() is not None:
                    raise SystemExit(f"bench: an idle VM exited with {p.returncode}")
                rss = int(next(line.split()[1] for line in open(f"/proc/{p.pid}/status")
                               if line.startswith("VmRSS:")))
                ready += rss >= size_kib * 0.95
            if ready == n:
                break
            time.sleep(0.2)
        else:
            raise SystemExit("bench: idle VMs did not all read their image in 120 s")
        time.sleep(0.5)
        tot = img = 0
        for p in procs:
            t, i = pss_of(p.pid, os.path.realpath(kernel))
            tot += t
            img += i
        return {"n": n, "pss_total_kib": tot, "pss_image_kib": img, "image_kib": size_kib}
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


def sequential(cocoon, guests, n):
    argv = [cocoon, "vm", "run", "--kernel", str(guests / "exit_guest.elf"), "--memory", "64",
            "--console", "none"]
    t0 = time.perf_counter()
    peak = 0
    for _ in range(n):
        _, rc, rss = run_once(argv)
        if rc != 0:
            raise SystemExit(f"bench: cocoon vm run exited {rc}")
        peak = max(peak, rss)
    return {"n": n, "wall_s": time.perf_counter() - t0, "rss_max_kib": peak}


def report(s2e, seq, many, shared, copied, qemu_version):
    c, cn = s2e["cocoon"], s2e["cocoon --no-pit"]
    q, qn = s2e.get("qemu microvm"), s2e.get("qemu microvm pit=off")
    lines = ["| VMM | start -> exit (median) | peak RSS (median) |", "|---|---|---|"]
    for k, v in s2e.items():
        lines.append(f"| {k} | {v['wall_ms']:.1f} ms | {v['rss_kib'] / 1024:.1f} MiB |")
    lines.append("")
    if q:
        r1, r2 = c["wall_ms"] / q["wall_ms"], cn["wall_ms"] / qn["wall_ms"]
        lines.append(f"* cocoon / qemu microvm, start -> exit: **{r1:.2f}x** with the PIT, "
                     f"**{r2:.2f}x** without (target 0.1x: "
                     f"{'met' if max(r1, r2) <= 0.1 else 'missed'}).")
        lines.append(f"* peak RSS: cocoon {c['rss_kib'] / 1024:.1f} MiB, qemu "
                     f"{q['rss_kib'] / 1024:.1f} MiB ({c['rss_kib'] / q['rss_kib']:.2f}x).")
    else:
        lines.append("* qemu-system-x86_64 is not installed: no comparison this run.")
    per_vm = many["pss_total_kib"] / many["n"]
    over = per_vm - many["pss_image_kib"] / many["n"]
    lines.append(f"* VMM memory overhead (PSS of an idle VM minus its share of the kernel "
                 f"image): **{over / 1024:.2f} MiB** per VM over {many['n']} VMs alive at once "
                 f"(target 1 MiB: {'met' if over <= 1024 else 'missed'}); total PSS "
                 f"{many['pss_total_kib'] / 1024:.0f} MiB.")
    lines.append(f"* {seq['n']} VMs one after another: {seq['wall_s']:.2f} s "
                 f"({seq['wall_s'] / seq['n'] * 1e3:.1f} ms each), peak RSS "
                 f"{seq['rss_max_kib'] / 1024:.1f} MiB.")
    copies_shared = shared["pss_image_kib"] / shared["image_kib"]
    copies_copied = (copied["pss_total_kib"] - shared["pss_total_kib"] +
                     shared["pss_image_kib"]) / shared["image_kib"]
    lines.append(f"* {shared['n']} VMs from one {shared['image_kib'] // 1024} MiB kernel image: "
                 f"**{copies_shared:.2f} copies** of it in host memory when mapped MAP_PRIVATE "
                 f"(target < 1: {'met' if copies_shared < 1 else 'missed'}), "
                 f"{copies_copied:.1f} copies with --no-map-kernel.")
    lines.append("")
    lines.append(f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} CPUs, "
                 f"{qemu_version or 'no qemu'}; `/usr/bin/python3 bench/vm.py` (part of "
                 "`make bench`). What is measured: see the docstring of bench/vm.py.")
    return "\n".join(lines)


def write_spec(section):
    speclib.write_section("vm", HEADING, section)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cocoon", default=str(ROOT / "build" / "src" / "cocoon"))
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--no-spec", action="store_true", help="do not write docs/SPEC.md")
    a = ap.parse_args()
    cocoon = os.path.abspath(a.cocoon)
    guests = pathlib.Path(cocoon).parent.parent / "tests" / "guest"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        raise SystemExit("bench: vm: /dev/kvm is not usable here")
    qemu = shutil.which("qemu-system-x86_64")
    qv = subprocess.run([qemu, "--version"], capture_output=True, text=True).stdout.split(
        "\n")[0] if qemu else ""
    tmp = tempfile.mkdtemp(prefix="cocoon-bench-vm-")
    try:
        build_spawn(tmp)
        return measure(a, cocoon, guests, qemu, qv)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def measure(a, cocoon, guests, qemu, qv):
    log(f"bench: vm: start -> exit, {a.runs} interleaved runs each")
    s2e = start_to_exit(cocoon, guests, qemu, a.runs)
    log("bench: vm: 100 VMs one after another")
    seq = sequential(cocoon, guests, 100)
    idle = str(guests / "idle_guest.elf")
    log("bench: vm: 100 idle VMs alive at once")
    many = alive(cocoon, idle, 100)
    log("bench: vm: 20 VMs from one kernel image, mapped and copied")
    shared = alive(cocoon, idle, 20)
    copied = alive(cocoon, idle, 20, ["--no-map-kernel"])
    section = report(s2e, seq, many, shared, copied, qv)
    log()
    log(section)
    if not a.no_spec:
        write_spec(section)
        log(f"\nbench: vm: wrote {SPEC_MD.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

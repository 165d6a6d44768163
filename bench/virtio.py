#!/usr/bin/python3
"""`make bench`, virtio part: virtio-blk read throughput against the host's
own, how many copies of a pmem image 20 VMs add to host memory, and vsock
throughput.

    /usr/bin/python3 bench/virtio.py --cocoon build/src/cocoon [--runs 10]

What is measured (docs/SPEC.md repeats the figures and points here):

* virtio-blk sequential read vs the host's read of the same file. The file
  is 256 MiB (--blk-mib) in a fresh directory under /var/tmp (a disk
  filesystem, not tmpfs: what is measured is reading from the page cache,
  kept warm: the file is read once before the first round), with an 8-byte
  stamp at the start of every 4 KiB block. The guest,
  tests/guest/blk_bench_guest.elf, is a CPL3 driver (native even where
  guest kernel mode is emulated) that reads the disk (`--disk FILE,ro`)
  from start to end in 256 KiB requests (--req), 8 in flight (--depth),
  and checks every stamp. It drives the queue as Linux's virtio-blk does
  with VIRTIO_RING_F_EVENT_IDX (it notifies the device only when the device
  asked to be notified) but polls the used ring instead of taking
  interrupts (used_event keeps the device from raising any). Timing: the
  guest writes boot marker 1 just before its first request and marker 2
  just after its last answer; the VMM logs each with its CLOCK_MONOTONIC
  time in microseconds (`cocoon --debug`), so VM boot and exit are not in
  the figure. The guest's polling vCPU thread and the VMM's event thread
  (which serves the requests) each want a CPU: on a 2-CPU host any other
  load shows up as a wide min .. max, so run this on an idle host. The host
  side is a small C reader compiled here: preadv() of the same file in the
  same 256 KiB chunks into as many rotating buffers (written once first, as
  the guest's are), checking the same stamps, timed with CLOCK_MONOTONIC.
  Host and guest runs interleave (the order alternates every round) after a
  warm-up round; the figures are medians. Target: the guest reads at least
  0.7x the host's throughput.
* 20 VMs mapping one 64 MiB pmem image (--pmem-mib), in /var/tmp as well.
  Each VM runs tests/guest/pmem_touch_guest.elf, which touches one byte of
  every page of the region (at CPL0: a CPL3 guest cannot halt, and this one
  must stay alive without using CPU), writes boot marker 1 and halts. Three
  variants: `read` (the guest reads every page: MAP_PRIVATE pages of the
  file, the default `--pmem IMG`), `write` (the guest writes every page:
  copy-on-write makes 20 private copies) and `none` (touches nothing: the
  baseline for the host counters). Before each variant the image is
  dropped from the page cache (posix_fadvise DONTNEED), so the page-cache
  copy is counted too. When all 20 VMs have written their marker: the sum
  of the PSS of their mappings of the image (/proc/PID/smaps) over the
  image's size ("copies by PSS"), and the growth of Cached + AnonPages in
  /proc/meminfo beyond the `none` variant's, over the image's size ("copies
  by meminfo", noisy on a busy host). --pmem-rounds rounds, rotating the
  order; medians. Target: fewer than 1.2 copies with MAP_PRIVATE.
* vsock: bench/vsock.py's two measurements through the userspace device and
  tests/guest/vsock_guest.elf (a CPL3 driver, 8 KiB receive buffers, 4 in
  flight): echo host -> guest -> host, and guest -> host checked byte for
  byte after the host echoes it back; --vsock-mib MiB per run, --runs runs
  each, interleaved after a warm-up round; medians of MiB/s of payload one
  way. No target yet.
"""
import argparse
import os
import pathlib
import re
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
from speclib import SPEC_MD  # noqa: E402
import speclib  # noqa: E402
import vsock  # noqa: E402
from vm import pss_of  # noqa: E402

HEADING = """## virtio: virtio-blk read, pmem sharing, vsock

Targets: a guest reads a file through virtio-blk at least 0.7x as fast as
the host reads it (page cache warm); 20 VMs mapping one pmem image add
fewer than 1.2 copies of it to host memory.

"""
STAMP = 0x5A5A5A5A5A5A5A5A
MARKER = re.compile(r"boot marker (\d+) at ([0-9.]+) ms")

HOST_READER = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
/* hostread FILE CHUNK DEPTH: preadv the file start to end in CHUNK-byte
 * reads into DEPTH rotating buffers, checking the stamp of every 4 KiB. */
int main(int argc, char **argv)
{
    if (argc != 4)
        return 2;
    int fd = open(argv[1], O_RDONLY | O_CLOEXEC);
    size_t chunk = strtoul(argv[2], NULL, 0), depth = strtoul(argv[3], NULL, 0);
    char *buf = aligned_alloc(4096, chunk * depth);
    if (fd < 0 || buf == NULL || chunk % 4096)
        return 2;
    memset(buf, 0, chunk * depth);
    struct timespec a, b;
    off_t off = 0;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (size_t i = 0;; i++) {
        struct iovec v = {buf + (i % depth) * chunk, chunk};
        ssize_t n = preadv(fd, &v, 1, off);
        if (n < 0)
            return 3;
        if (n == 0)
            break;
        for (ssize_t o = 0; o < n; o += 4096) {
            uint64_t s;
            memcpy(&s, (char *)v.iov_base + o, 8);
            if (s != (((uint64_t)(off + o) / 4096) ^ 0x5a5a5a5a5a5a5a5aull))
                return 4;
        }
        off += n;
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("bytes=%lld ns=%lld\n", (long long)off,
           (long long)((b.tv_sec - a.tv_sec) * 1000000000ll + (b.tv_nsec - a.tv_nsec)));
    return 0;
}
"""


def log(msg=""):
    print(msg, flush=True)


def median_range(xs):
    return statistics.median(xs), min(xs), max(xs)


# ---- virtio-blk ----

def make_blk_file(path, mib):
    base = bytearray(os.urandom(1 << 20))
    with open(path, "wb") as f:
        for m in range(mib):
            for k in range(256):
                struct.pack_into("<Q", base, k * 4096, ((m << 8) + k) ^ STAMP)
            f.write(base)
        f.flush()
        os.fsync(f.fileno())


def build_reader(tmp):
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    src, exe = os.path.join(tmp, "hostread.c"), os.path.join(tmp, "hostread")
    with open(src, "w") as f:
        f.write(HOST_READER)
    subprocess.run([cc, "-O2", "-o", exe, src], check=True)
    return exe


def host_read(reader, path, req, depth):
    out = subprocess.run([reader, path, str(req), str(depth)], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"bench: virtio: the host reader failed ({out.returncode})")
    f = dict(kv.split("=") for kv in out.stdout.split())
    return int(f["bytes"]) / (int(f["ns"]) / 1e9) / (1 << 20)


def guest_read(cocoon, guest, path, req, depth):
    argv = [cocoon, "--debug", "vm", "run", "--kernel", guest, "--memory", "64",
            "--console", "none", "--disk", f"{path},ro", "--cmdline", f"req={req} depth={depth}"]
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       errors="replace", timeout=300)
    marks = {int(m[0]): float(m[1]) for m in MARKER.findall(r.stderr)}
    if r.returncode != 0 or 1 not in marks or 2 not in marks or "checked" not in r.stderr:
        raise SystemExit(f"bench: virtio: the blk guest failed ({r.returncode}):\n{r.stderr}")
    return os.path.getsize(path) / ((marks[2] - marks[1]) / 1e3) / (1 << 20)


def blk(cocoon, guests, tmp, runs, mib, req, depth):
    path = os.path.join(tmp, "blk.img")
    make_blk_file(path, mib)
    reader = build_reader(tmp)
    guest = str(guests / "blk_bench_guest.elf")
    host, vm = [], []
    for rnd in range(runs + 1):
        order = [("host", lambda: host_read(reader, path, req, depth)),
                 ("guest", lambda: guest_read(cocoon, guest, path, req, depth))]
        if rnd % 2:
            order.reverse()
        for name, fn in order:
            v = fn()
            if rnd:  # round 0 warms the page cache up
                (host if name == "host" else vm).append(v)
    return {"mib": mib, "req": req, "depth": depth, "host": median_range(host),
            "guest": median_range(vm)}


# ---- pmem ----

def meminfo():
    d = {}
    for line in open("/proc/meminfo"):
        k, v = line.split(":", 1)
        d[k] = int(v.split()[0])
    return d


def pmem_round(cocoon, guest, image, n, mode, tmp):
    """n VMs touch the image (mode read, write or none); memory once all did."""
    fd = os.open(image, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)
    time.sleep(0.2)
    before = meminfo()
    procs, logs = [], []
    try:
        for i in range(n):
            logs.append(os.path.join(tmp, f"pmem{i}.log"))
            with open(logs[-1], "w") as f:
                procs.append(subprocess.Popen(
                    [cocoon, "--debug", "vm", "run", "--kernel", guest, "--memory", "16",
                     "--no-pit", "--console", "none", "--pmem", image, "--cmdline", mode],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=f))
        deadline = time.time() + 120
        while True:
            ready = 0
            for p, lg in zip(procs, logs):
                text = open(lg).read()
                if p.poll() is not None or "boot marker 238" in text:
                    raise SystemExit(f"bench: virtio: a pmem VM failed ({p.returncode}):\n{text}")
                ready += "boot marker 1 " in text
            if ready == n:
                break
            if time.time() > deadline:
                raise SystemExit(f"bench: virtio: {n - ready} pmem VMs not ready in 120 s")
            time.sleep(0.1)
        time.sleep(0.5)
        after = meminfo()
        tot = img = 0
        for p in procs:
            t, i = pss_of(p.pid, os.path.realpath(image))
            tot += t
            img += i
        grown = (after["Cached"] + after["AnonPages"]) - (before["Cached"] + before["AnonPages"])
        return {"pss_image_kib": img, "pss_total_kib": tot, "grown_kib": grown,
                "avail_kib": after["MemAvailable"] - before["MemAvailable"]}
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def pmem(cocoon, guests, tmp, rounds, n, mib):
    image = os.path.join(tmp, "pmem.img")
    with open(image, "wb") as f:
        for _ in range(mib):
            f.write(os.urandom(1 << 20))
        f.flush()
        os.fsync(f.fileno())
    guest = str(guests / "pmem_touch_guest.elf")
    modes = ["read", "write", "none"]
    recs = {m: [] for m in modes}
    for rnd in range(rounds):
        for m in modes[rnd % 3:] + modes[:rnd % 3]:
            recs[m].append(pmem_round(cocoon, guest, image, n, m, tmp))
    size = mib * 1024
    out = {"n": n, "mib": mib}
    for m in ("read", "write"):
        out[m] = {
            "pss_copies": statistics.median(r["pss_image_kib"] / size for r in recs[m]),
            "host_copies": statistics.median(
                (r["grown_kib"] - b["grown_kib"]) / size for r, b in zip(recs[m], recs["none"])),
            "avail_mib": statistics.median(r["avail_kib"] / 1024 for r in recs[m]),
        }
    return out


# ---- vsock ----

def vsock_rates(cocoon, guests, runs, mib, win):
    guest = str(guests / "vsock_guest.elf")
    fns = {"echo": vsock.echo_run, "g2h": vsock.guest_to_host_run}
    recs = {k: [] for k in fns}
    for rnd in range(runs + 1):
        for k in (list(fns) if rnd % 2 == 0 else list(fns)[::-1]):
            v = fns[k](cocoon, guest, mib << 20, win)
            if rnd:  # round 0 warms up
                recs[k].append(v)
    return {"mib": mib, "win": win, **{k: median_range(v) for k, v in recs.items()}}


# ---- report ----

def report(b, pm, vs, argv, load, runs):
    g, h = b["guest"], b["host"]
    ratio = g[0] / h[0]
    lines = ["| measurement | median | min .. max |", "|---|---|---|",
             f"| virtio-blk sequential read in a guest | {g[0]:.0f} MiB/s | "
             f"{g[1]:.0f} .. {g[2]:.0f} |",
             f"| the host's read of the same file | {h[0]:.0f} MiB/s | {h[1]:.0f} .. {h[2]:.0f} |",
             f"| vsock echo, host -> guest -> host | {vs['echo'][0]:.0f} MiB/s | "
             f"{vs['echo'][1]:.0f} .. {vs['echo'][2]:.0f} |",
             f"| vsock guest -> host (echoed back, checked) | {vs['g2h'][0]:.0f} MiB/s | "
             f"{vs['g2h'][1]:.0f} .. {vs['g2h'][2]:.0f} |", ""]
    lines.append(f"* virtio-blk: a guest reads a {b['mib']} MiB file (page cache warm, /var/tmp) "
                 f"at **{ratio:.2f}x** the host's throughput (target 0.7x: "
                 f"{'met' if ratio >= 0.7 else 'missed'}); {b['req'] // 1024} KiB requests, "
                 f"{b['depth']} in flight, timed between the guest's boot markers.")
    r, w = pm["read"], pm["write"]
    lines.append(f"* {pm['n']} VMs mapping one {pm['mib']} MiB pmem image, each touching every "
                 f"page: **{r['pss_copies']:.2f} copies** of it in host memory by PSS with "
                 f"MAP_PRIVATE (target < 1.2: {'met' if r['pss_copies'] < 1.2 else 'missed'}), "
                 f"{r['host_copies']:.2f} by /proc/meminfo (MemAvailable "
                 f"{r['avail_mib']:+.0f} MiB); when each guest writes every page "
                 f"(copy-on-write: private copies) {w['pss_copies']:.1f} copies by PSS, "
                 f"{w['host_copies']:.1f} by /proc/meminfo (MemAvailable "
                 f"{w['avail_mib']:+.0f} MiB).")
    lines.append(f"* vsock through the userspace device, {vs['mib']} MiB per run, guest window "
                 f"{vs['win'] // 1024} KiB (no target yet).")
    lines.append("")
    lines.append(f"Medians of {runs[0]} interleaved runs after a warm-up round (blk, vsock) and "
                 f"of {runs[1]} rounds of the three pmem variants.")
    lines.append("")
    model = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo")
                  if ln.startswith("model name")), "unknown CPU")
    end = os.getloadavg()
    lines.append(f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} CPUs ({model}), "
                 f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the start, "
                 f"{end[0]:.2f} {end[1]:.2f} {end[2]:.2f} at the end; `{' '.join(argv)}` (part "
                 "of `make bench`). What is measured: see the docstring of bench/virtio.py.")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cocoon", default=str(ROOT / "build" / "src" / "cocoon"))
    ap.add_argument("--runs", type=int, default=10, help="interleaved runs per blk/vsock figure")
    ap.add_argument("--blk-mib", type=int, default=256)
    ap.add_argument("--req", type=int, default=256 * 1024, help="bytes per read request")
    ap.add_argument("--depth", type=int, default=8, help="requests in flight (1..16)")
    ap.add_argument("--pmem-mib", type=int, default=64)
    ap.add_argument("--pmem-vms", type=int, default=20)
    ap.add_argument("--pmem-rounds", type=int, default=3)
    ap.add_argument("--vsock-mib", type=int, default=64)
    ap.add_argument("--no-spec", action="store_true", help="do not write docs/SPEC.md")
    a = ap.parse_args()
    cocoon = os.path.abspath(a.cocoon)
    guests = pathlib.Path(cocoon).parent.parent / "tests" / "guest"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        raise SystemExit("bench: virtio: /dev/kvm is not usable here")
    load = os.getloadavg()
    argv = ["/usr/bin/python3", "bench/virtio.py", *sys.argv[1:]]
    tmp = tempfile.mkdtemp(prefix="cocoon-bench-virtio-", dir="/var/tmp")
    try:
        log(f"bench: virtio: blk sequential read, {a.blk_mib} MiB, {a.runs} interleaved runs")
        b = blk(cocoon, guests, tmp, a.runs, a.blk_mib, a.req, a.depth)
        log(f"bench: virtio: {a.pmem_vms} VMs on one {a.pmem_mib} MiB pmem image, "
            f"{a.pmem_rounds} rounds")
        pm = pmem(cocoon, guests, tmp, a.pmem_rounds, a.pmem_vms, a.pmem_mib)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"bench: virtio: vsock, {a.vsock_mib} MiB, {a.runs} runs each")
    vs = vsock_rates(cocoon, guests, a.runs, a.vsock_mib, 262144)
    section = report(b, pm, vs, argv, load, (a.runs, a.pmem_rounds))
    log()
    log(section)
    if not a.no_spec:
        speclib.write_section("virtio", HEADING, section)
        log(f"\nbench: virtio: wrote {SPEC_MD.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

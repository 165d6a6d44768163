#!/usr/bin/python3
"""cocoon's FUSE passthrough server against the native directory (and bindfs,
the libfuse passthrough from Debian, as the reference), side by side.

    /usr/bin/python3 bench/fs.py --cocoon build/src/cocoon [--size-mib 1024]
        [--files 10000] [--runs 3] [--tar-src /usr/lib/python3.11]
        [--targets native,cocoon,cocoon-nouring,cocoon-nopt,bindfs] [--json FILE]

Workloads (each on every target, interleaved round-robin, median of --runs):

* seq-write:  fio, one job, 1 MiB blocks, psync, --size-mib (default 1 GiB),
              no fsync: page-cache throughput (the hard case for FUSE, but
              noisy: it depends on how much dirty data is being written back).
* seq-write-fsync: the same into another file, with fsync at the end (the
              disk's throughput, the same for every target if nothing is lost).
* seq-read:   fio reading that file back, page cache warm (read twice, the
              second one counts).
* rand-read / rand-write: fio, 4 KiB blocks, psync, on a 256 MiB file,
              3 s each (IOPS).
* create-stat: create N empty files in a fresh directory, then lstat each
              (seconds, lower is better).
* tar-x:      `tar xf` of a tarball of --tar-src (seconds).

Then, unless --no-rss: the server's RSS with --rss-files (10,000) inodes known
(empty files stat()ed through a mount with timeout=600, so the kernel keeps
them), once with the server's RLIMIT_NOFILE as it comes (the soft limit raised
to the hard one: every inode keeps its O_PATH fd) and once under 1024:1024
(what engines often set: idle inodes' fds are closed and reopened from file
handles). Printed with the number of fds the server holds.

Targets: `native` (the source directory itself), `cocoon` (`cocoon fs mount`,
defaults: passthrough where the kernel allows it, FUSE over io_uring),
`cocoon-nouring` (`-o nouring`: requests read from /dev/fuse),
`cocoon-nopt` (`-o nopassthrough`: every read/write goes through the
server), `bindfs` (if installed). FUSE over io_uring needs the fuse module's
enable_uring=Y: the bench sets it for its run (where the kernel has it) and
puts the host's setting back after. All sources live in one scratch directory under /var/tmp (ext4
here). The machine is shared: ratios are indicative.

Targets of issue 7: seq read/write >= 0.7x native throughput; metadata work
(create-stat, tar-x) <= 3x native time; server RSS < 4 MiB with 10,000 inodes
known.
"""
import argparse
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

import speclib

HEADING = "## FUSE server: cocoon fs mount against the native directory and bindfs\n\n"
HIGHER = {"seq-write", "seq-write-fsync", "seq-read", "rand-read", "rand-write"}  # throughput metrics


def mounted(path):
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


def wait_mounted(path, proc=None, timeout=10):
    end = time.monotonic() + timeout
    while not mounted(path):
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"mount of {path} failed")
        if time.monotonic() > end:
            raise RuntimeError(f"timed out mounting {path}")
        time.sleep(0.01)


class Target:
    def __init__(self, name, work):
        self.name = name
        self.src = os.path.join(work, name + "-src")
        self.path = self.src
        os.mkdir(self.src)
        self.proc = None

    def start(self, cocoon):
        pass

    def stop(self):
        if self.path != self.src and mounted(self.path):
            subprocess.run(["umount", self.path], check=False)
            if mounted(self.path):
                subprocess.run(["umount", "-l", self.path], check=False)
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Cocoon(Target):
    def __init__(self, name, work, opts):
        super().__init__(name, work)
        self.opts = opts
        self.path = os.path.join(work, name + "-mnt")
        os.mkdir(self.path)

    def start(self, cocoon):
        args = [cocoon, "fs", "mount"] + sum((["-o", o] for o in self.opts), [])
        self.proc = subprocess.Popen(args + [self.src, self.path])
        wait_mounted(self.path, self.proc)


class Bindfs(Target):
    def __init__(self, name, work):
        super().__init__(name, work)
        self.path = os.path.join(work, name + "-mnt")
        os.mkdir(self.path)

    def start(self, cocoon):
        subprocess.run(["bindfs", "-o", "allow_other", self.src, self.path], check=True)
        wait_mounted(self.path)


def fio(path, name, rw, bs, size, runtime=None, fsync=False):
    args = ["fio", f"--name={name}", f"--filename={os.path.join(path, name)}", f"--rw={rw}",
            f"--bs={bs}", f"--size={size}", "--ioengine=psync", "--numjobs=1",
            "--output-format=json", "--invalidate=0", "--fadvise_hint=0"]
    if runtime:
        args += [f"--runtime={runtime}", "--time_based"]
    if fsync:
        args += ["--end_fsync=1"]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    job = json.loads(out[out.index("{"):])["jobs"][0]
    side = job["read"] if "read" in rw else job["write"]
    return side["bw_bytes"], side["iops"]


def create_stat(path, n, run):
    d = os.path.join(path, f"cs{run}")
    os.mkdir(d)
    t0 = time.perf_counter()
    for i in range(n):
        os.close(os.open(os.path.join(d, f"f{i}"), os.O_CREAT | os.O_WRONLY, 0o644))
    for i in range(n):
        os.lstat(os.path.join(d, f"f{i}"))
    return time.perf_counter() - t0


def tar_x(path, tarball, run):
    d = os.path.join(path, f"tx{run}")
    os.mkdir(d)
    t0 = time.perf_counter()
    subprocess.run(["tar", "xf", tarball, "-C", d], check=True)
    return time.perf_counter() - t0


def measure(t, metric, args, tarball, run):
    size = f"{args.size_mib}M"
    os.sync()  # every measurement starts without dirty pages to write back
    if metric == "seq-write":
        return fio(t.path, "seq", "write", "1M", size)[0] / 2**20
    if metric == "seq-write-fsync":
        return fio(t.path, "seqf", "write", "1M", size, fsync=True)[0] / 2**20
    if metric == "seq-read":
        if not os.path.exists(os.path.join(t.src, "seq")):
            fio(t.path, "seq", "write", "1M", size)
        fio(t.path, "seq", "read", "1M", size)
        return fio(t.path, "seq", "read", "1M", size)[0] / 2**20
    if metric == "rand-read":
        return fio(t.path, "rand", "randread", "4k", "256M", runtime=3)[1]
    if metric == "rand-write":
        return fio(t.path, "rand", "randwrite", "4k", "256M", runtime=3)[1]
    # Trees stay until the end: ext4 allocates inodes slowly for a minute
    # after many deletions in a block group (recently_deleted()), which
    # would charge one target for another's cleanup.
    if metric == "create-stat":
        return create_stat(t.path, args.files, run)
    if metric == "tar-x":
        return tar_x(t.path, tarball, run)
    raise ValueError(metric)


def server_rss(cocoon, work, files, nofile=None):
    """RSS (KiB) and fd count of a `cocoon fs mount` server once `files`
    inodes are known to the kernel; nofile: its RLIMIT_NOFILE (soft=hard)."""
    src, mnt = os.path.join(work, "rss-src"), os.path.join(work, "rss-mnt")
    os.mkdir(src)
    os.mkdir(mnt)
    many = os.path.join(src, "many")
    os.mkdir(many)
    for i in range(files):
        os.close(os.open(os.path.join(many, f"f{i}"), os.O_CREAT | os.O_WRONLY, 0o644))
    limit = None
    if nofile:
        def limit():
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
    proc = subprocess.Popen([cocoon, "fs", "mount", "-o", "timeout=600", src, mnt],
                            preexec_fn=limit)
    try:
        wait_mounted(mnt, proc)
        n = sum(1 for e in os.scandir(os.path.join(mnt, "many")) if e.stat(follow_symlinks=False))
        if n != files:
            raise RuntimeError(f"saw {n} of {files} files")
        rss = None
        with open(f"/proc/{proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
        fds = len(os.listdir(f"/proc/{proc.pid}/fd"))
        return rss, fds
    finally:
        if mounted(mnt):
            subprocess.run(["umount", mnt], check=False)
        if mounted(mnt):
            subprocess.run(["umount", "-l", mnt], check=False)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(src, ignore_errors=True)
        os.rmdir(mnt)


UNITS = {"seq-write": "MiB/s", "seq-write-fsync": "MiB/s", "seq-read": "MiB/s", "rand-read": "IOPS",
         "rand-write": "IOPS", "create-stat": "s", "tar-x": "s"}


URING_PARAM = "/sys/module/fuse/parameters/enable_uring"


def uring_allow():
    """Allow FUSE over io_uring for the run; the host's setting, or None."""
    try:
        with open(URING_PARAM) as f:
            old = f.read().strip()
        with open(URING_PARAM, "w") as f:
            f.write("Y")
        return old
    except OSError:
        return None


def uring_restore(old):
    if old is not None:
        with open(URING_PARAM, "w") as f:
            f.write(old)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cocoon", default="build/src/cocoon")
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--files", type=int, default=10000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tar-src", default="/usr/lib/python3.11")
    ap.add_argument("--targets", default="native,cocoon,cocoon-nouring,cocoon-nopt,bindfs")
    ap.add_argument("--metrics", default="seq-write,seq-write-fsync,seq-read,rand-read,rand-write,"
                                         "create-stat,tar-x")
    ap.add_argument("--rss-files", type=int, default=10000,
                    help="inodes known when the server's RSS is measured")
    ap.add_argument("--no-rss", action="store_true", help="skip the RSS measurement")
    ap.add_argument("--json", help="write the results here as JSON")
    ap.add_argument("--no-spec", action="store_true", help="do not write docs/SPEC.md")
    args = ap.parse_args()
    load = os.getloadavg()
    if os.geteuid() != 0:
        sys.exit("bench/fs.py: needs root (mount)")
    if shutil.which("fio") is None:
        sys.exit("bench/fs.py: fio missing (scripts/install-deps.sh bench)")
    cocoon = os.path.abspath(args.cocoon)
    work = tempfile.mkdtemp(prefix="cocoon-fsbench.", dir="/var/tmp")
    targets = []
    for name in args.targets.split(","):
        if name == "native":
            targets.append(Target(name, work))
        elif name == "cocoon":
            targets.append(Cocoon(name, work, []))
        elif name == "cocoon-nouring":
            targets.append(Cocoon(name, work, ["nouring"]))
        elif name == "cocoon-nopt":
            targets.append(Cocoon(name, work, ["nopassthrough"]))
        elif name == "bindfs":
            if shutil.which("bindfs") is None:
                print("bindfs not installed: skipped", file=sys.stderr)
                continue
            targets.append(Bindfs(name, work))
        else:
            sys.exit(f"bench/fs.py: unknown target {name}")
    metrics = args.metrics.split(",")
    tarball = os.path.join(work, "src.tar")
    with tarfile.open(tarball, "w") as tf:
        tf.add(args.tar_src, arcname="root")
    results = {t.name: {m: [] for m in metrics} for t in targets}

    uring_was = uring_allow()

    def stop_all(*_):
        for t in targets:
            t.stop()
        shutil.rmtree(work, ignore_errors=True)
        uring_restore(uring_was)
        sys.exit(1)
    signal.signal(signal.SIGTERM, stop_all)
    try:
        for t in targets:
            t.start(cocoon)
        for run in range(args.runs):
            for m in metrics:
                order = targets[run % len(targets):] + targets[:run % len(targets)]
                for t in order:
                    results[t.name][m].append(measure(t, m, args, tarball, run))
            # A fresh mount per run: the kernel forgets the inodes of the last
            # run, so every run starts from the same server state.
            for t in targets:
                t.stop()
                t.start(cocoon)
        for t in targets:
            t.stop()
        rss = {}
        if not args.no_rss:
            for label, nofile in (("default", None), ("1024", 1024)):
                rss[label] = server_rss(cocoon, work, args.rss_files, nofile)
    except KeyboardInterrupt:
        stop_all()
    finally:
        for t in targets:
            t.stop()
        shutil.rmtree(work, ignore_errors=True)
        uring_restore(uring_was)

    out = []

    def emit(line=""):
        print(line)
        out.append(line)

    med = {t: {m: statistics.median(v) for m, v in ms.items()} for t, ms in results.items()}
    base = med.get("native")
    names = [t.name for t in targets]
    emit()
    emit(f"fs bench: {args.runs} runs, median; seq {args.size_mib} MiB, {args.files} files, "
          f"tar of {args.tar_src}; ratio = target/native, "
          f"throughput ({'/'.join(sorted(HIGHER))}) higher is better, times lower is better")
    emit("FUSE over io_uring: " + (f"allowed for the run (fuse.enable_uring=Y; the host's "
                                   f"setting, {uring_was}, put back after)"
                                   if uring_was is not None else "not in this kernel"))
    head = f"{'metric':<15} {'unit':<6}" + "".join(f" {n:>12}" for n in names)
    if base:
        head += "".join(f" {n + '/nat':>16}" for n in names if n != "native")
    emit(head)
    verdict = []
    for m in metrics:
        line = f"{m:<15} {UNITS[m]:<6}" + "".join(f" {med[n][m]:>12.2f}" for n in names)
        if base:
            for n in names:
                if n == "native":
                    continue
                ratio = med[n][m] / base[m] if base[m] else float("nan")
                line += f" {ratio:>15.2f}x"
                if n == "cocoon":
                    if m in ("seq-read", "seq-write", "seq-write-fsync"):
                        verdict.append((m, ratio, ratio >= 0.7, ">= 0.7x"))
                    elif m in ("create-stat", "tar-x"):
                        verdict.append((m, ratio, ratio <= 3.0, "<= 3x"))
        emit(line)
    for m, ratio, ok, want in verdict:
        emit(f"target {m}: cocoon {ratio:.2f}x native (want {want}): "
              f"{'met' if ok else 'NOT met'}")
    for label, (kib, fds) in rss.items():
        lim = "RLIMIT_NOFILE as given (soft raised to hard)" if label == "default" \
            else f"RLIMIT_NOFILE {label}:{label}"
        emit(f"server RSS with {args.rss_files} inodes known, {lim}: {kib} KiB "
              f"({kib / 1024:.1f} MiB), {fds} fds")
    if "default" in rss:
        kib = max(k for k, _ in rss.values())
        emit(f"target server RSS < 4 MiB with {args.rss_files} inodes: "
              f"{'met' if kib < 4096 else 'NOT met'} ({kib} KiB)")
    if not args.no_spec:
        end = os.getloadavg()
        speclib.write_section("fs", HEADING, "```\n" + "\n".join(out) + "\n```\n\n" + (
            f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} CPUs, load average "
            f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the start, {end[0]:.2f} {end[1]:.2f} "
            f"{end[2]:.2f} at the end; `/usr/bin/python3 bench/fs.py {' '.join(sys.argv[1:])}` "
            "(part of `make bench`). What is measured: see the docstring of bench/fs.py."))
        print("bench: fs: wrote docs/SPEC.md")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"runs": args.runs, "size_mib": args.size_mib, "files": args.files,
                       "tar_src": args.tar_src, "samples": results, "median": med,
                       "rss_files": args.rss_files,
                       "rss_kib": {k: v[0] for k, v in rss.items()},
                       "rss_fds": {k: v[1] for k, v in rss.items()}}, f, indent=1)


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""`make bench`: `run` of /bin/true with cocoon, runc and crun, side by side.

    /usr/bin/python3 bench/run.py --cocoon build/src/cocoon [--runs 200]

What is measured, exactly (docs/SPEC.md repeats this next to the figures):

* One bundle: a busybox-static rootfs and the config.json of `cocoon spec`
  (which follows `runc spec`), with process.args = ["/bin/true"] and
  terminal = false. All runtimes get the same bundle and the same file.
* Every runtime is launched the same way: this script runs bench/spawn (a
  small static C program, compiled into the temp dir), which forks, execs
  `RUNTIME --root STATE run --bundle BUNDLE ID`, and wait4()s for it.
  - wall:  CLOCK_MONOTONIC from before fork() to after wait4() returned.
  - CPU:   ru_utime + ru_stime from wait4(): the runtime process plus every
           descendant that was reaped (the container init and helper
           processes are reaped by the runtime, so they are included; a
           preflight check runs a CPU-burning container to verify this for
           each runtime).
  - peak RSS: ru_maxrss from wait4(): the largest peak RSS of any single
           process of that tree (runtime, its helpers, the container's
           /bin/true, which is busybox here). Separately, a few runs under
           ptrace read the runtime process's own VmHWM at exit ("own HWM").
* crun 1.8.1 refuses this machine's hybrid cgroup layout, so the script
  keeps one process (`sleep infinity`) in a private mount namespace where
  /sys/fs/cgroup/unified is unmounted; bench/spawn setns()es into it before
  it starts the clock. By default every runtime runs there, so all see the
  same cgroup-v1-only layout (--private-ns crun: only crun does). Nothing
  changes outside the namespace, which dies with the script.
* Runs are interleaved round-robin (the starting runtime rotates every
  round), after warm-up rounds. Each run uses a fresh container id; every
  run must exit 0 and leave nothing in its state dir, or the runtime is
  reported and dropped from the comparison.
"""
import argparse
import ctypes
import datetime
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SPEC_MD = REPO / "docs" / "SPEC.md"
PLOT = REPO / "docs" / "bench-run.png"
RESULTS = REPO / "bench" / "results" / "run.json"
BEGIN, END = "<!-- bench:run:begin -->", "<!-- bench:run:end -->"

ALL_RUNTIMES = ("cocoon", "runc", "crun")
FLOOR = "floor"            # busybox true on the host through the same launcher
TARGET_RATIO = 0.5         # cocoon wall and CPU at most this times crun's
TARGET_RSS_KB = 2048       # cocoon peak RSS under 2 MiB
ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
       "HOME": "/root", "LANG": "C"}
SPIN_LOOPS = 40000         # busy loop of the accounting check (~40 ms)

SPEC_SKELETON = """# cocoon — measured promises

Every figure in this file is refreshed by `make bench` (`bench/run.py`).
cocoon, runc and crun are measured in one run, on the same machine, with the
same bundle and the same `config.json`, interleaved run by run. Machines are
noisy and differ from one another, so the promise is the ratios between the
runtimes measured together, not the absolute times.

## `run` of `/bin/true`

Targets: cocoon's wall time and CPU time at most 0.5× crun's; cocoon's peak
RSS during `run` under 2 MiB.

{begin}
Not measured yet: run `make bench`.
{end}
"""


def log(msg=""):
    print(msg, flush=True)


def warn(msg):
    print(f"WARNING: {msg}", flush=True)


# --------------------------------------------------------------------------
# a private mount namespace without /sys/fs/cgroup/unified

UNIFIED = "/sys/fs/cgroup/unified"
PR_SET_PDEATHSIG = 1


def _die_with_parent():
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class NsHolder:
    """One long-lived process (`sleep infinity`) in a new mount namespace
    where every mount is private (nothing propagates back to the host) and
    the cgroup2 mount of the hybrid layout is unmounted. bench/spawn joins it
    with setns() before it starts the clock. The process dies with us
    (PR_SET_PDEATHSIG) and is killed explicitly on cleanup."""

    def __init__(self):
        self.proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c",
             f"if mountpoint -q {UNIFIED}; then umount {UNIFIED} || exit 1; fi; "
             "echo ready; exec sleep infinity"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, preexec_fn=_die_with_parent)
        line = self.proc.stdout.readline().decode().strip()
        if line != "ready":
            self.stop()
            raise SystemExit("bench: could not set up the mount namespace without "
                             f"{UNIFIED} (unshare/umount failed)")
        self.path = f"/proc/{self.proc.pid}/ns/mnt"
        mounts = [l.split()[4] for l in open(f"/proc/{self.proc.pid}/mountinfo")]
        if UNIFIED in mounts:
            self.stop()
            raise SystemExit(f"bench: {UNIFIED} is still mounted in the private namespace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


# --------------------------------------------------------------------------
# setup

def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


def first_line(cmd):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "?"


def version_of(name, binary):
    out = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    lines = out.strip().splitlines()
    v = lines[0] if lines else "?"
    for line in lines[1:]:
        if line.startswith("commit:"):
            v += f" ({line})"
    return v


def build_spawn(tmp):
    src = REPO / "bench" / "spawn.c"
    exe = tmp / "spawn"
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise SystemExit("bench: no C compiler (cc) to build bench/spawn.c")
    r = subprocess.run([cc, "-O2", "-static", "-o", str(exe), str(src)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        warn("static build of bench/spawn.c failed, using a dynamic one "
             "(its pre-exec RSS, the 'floor', is larger):\n" + r.stderr.strip())
        sh([cc, "-O2", "-o", str(exe), str(src)])
    return exe


def build_bundles(tmp, cocoon):
    """The measured bundle, and a 'check' bundle (same rootfs, a CPU-burning
    process that exits 7) for the preflight checks."""
    bundle = tmp / "bundle"
    bundle.mkdir()
    sh([str(REPO / "examples" / "busybox" / "make-bundle.sh"), str(bundle), str(cocoon)])
    cfg_path = bundle / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["process"]["args"] = ["/bin/true"]
    cfg["process"]["terminal"] = False
    cfg_path.write_text(json.dumps(cfg, indent=2) + "\n")
    adjustments = ['process.args = ["/bin/true"]', "process.terminal = false"]

    check = tmp / "bundle-check"
    check.mkdir()
    ccfg = json.loads(json.dumps(cfg))
    ccfg["root"]["path"] = str(bundle / "rootfs")
    ccfg["process"]["args"] = ["/bin/sh", "-c", spin_script()]
    (check / "config.json").write_text(json.dumps(ccfg, indent=2) + "\n")
    return bundle, check, adjustments


def spin_script():
    return f"i=0; while [ $i -lt {SPIN_LOOPS} ]; do i=$((i+1)); done; exit 7"


# --------------------------------------------------------------------------
# one measured run

class Runner:
    def __init__(self, tmp, spawn, bundle, ns_path, in_ns):
        self.tmp, self.spawn, self.bundle = tmp, spawn, bundle
        self.ns_path = ns_path  # the private mount namespace (NsHolder.path)
        self.in_ns = in_ns      # names (runtimes, FLOOR) that run in it
        self.binaries = {}      # runtime name -> binary path
        self.roots = {}         # runtime name -> state dir
        self.token = f"b{os.getpid()}"
        self.seq = 0

    def ns_prefix(self, name):
        """For commands other than the measured ones (cleanup, hyperfine)."""
        return ["nsenter", f"--mount={self.ns_path}"] if name in self.in_ns else []

    def add(self, name, binary):
        self.binaries[name] = binary
        root = self.tmp / "state" / name
        root.mkdir(parents=True)
        self.roots[name] = root

    def new_id(self, name):
        self.seq += 1
        return f"{name}-{self.token}-{self.seq}"

    def argv(self, name, cid, bundle=None):
        if name == FLOOR:
            return ["/bin/busybox", "true"]
        return [self.binaries[name], "--root", str(self.roots[name]), "run",
                "--bundle", str(bundle or self.bundle), cid]

    def run(self, name, bundle=None, trace=False, argv=None):
        """Run once through bench/spawn; returns a dict of the figures."""
        cid = self.new_id(name)
        logf = self.tmp / f"{name}.log"
        cmd = [str(self.spawn), "-l", str(logf)] + (["-x"] if trace else [])
        if name in self.in_ns:
            cmd += ["-n", self.ns_path]
        cmd += ["--"] + (argv or self.argv(name, cid, bundle))
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           env=ENV, cwd=self.tmp)
        if p.returncode != 0:
            raise RuntimeError(f"bench/spawn failed ({p.returncode}): {p.stderr.strip()}")
        r = {k: int(v) for k, v in (f.split("=") for f in p.stdout.split())}
        rec = {"runtime": name, "id": cid, "wall_ms": r["wall_ns"] / 1e6,
               "cpu_ms": (r["utime_us"] + r["stime_us"]) / 1e3,
               "user_ms": r["utime_us"] / 1e3, "sys_ms": r["stime_us"] / 1e3,
               "maxrss_kb": r["maxrss_kb"], "status": r["status"]}
        if "hwm_kb" in r:
            rec["own_hwm_kb"] = r["hwm_kb"]
        try:
            rec["output"] = logf.read_text(errors="replace")[-2000:]
        except OSError:
            rec["output"] = ""
        if name != FLOOR:
            left = sorted(os.listdir(self.roots[name]))
            if left:
                rec["left_state"] = left
                self.delete_all(name)
        return rec

    def delete_all(self, name):
        root = self.roots.get(name)
        if not root or not root.is_dir():
            return
        for cid in os.listdir(root):
            if not (root / cid).is_dir():
                continue
            pre = self.ns_prefix(name) + [self.binaries[name], "--root", str(root)]
            subprocess.run(pre + ["kill", cid, "KILL"], capture_output=True, env=ENV, timeout=30)
            subprocess.run(pre + ["delete", "--force", cid], capture_output=True, env=ENV,
                           timeout=30)

    def leaked_cgroups(self):
        """Cgroup directories named after one of our container ids."""
        found = []
        base = Path("/sys/fs/cgroup")
        if not base.is_dir():
            return found

        def walk(d, depth):
            try:
                entries = list(os.scandir(d))
            except OSError:
                return
            for e in entries:
                if not e.is_dir(follow_symlinks=False):
                    continue
                if self.token in e.name:
                    found.append(e.path)
                if depth < 6:
                    walk(e.path, depth + 1)

        walk(base, 0)
        return found

    def remove_cgroups(self):
        for path in sorted(self.leaked_cgroups(), key=len, reverse=True):
            try:
                os.rmdir(path)
            except OSError:
                pass


def describe_failure(rec):
    out = rec.get("output", "").strip()
    return f"exit status {rec['status']}" + ("; output:\n    " + out.replace("\n", "\n    ") if out else "")


# --------------------------------------------------------------------------
# statistics and reporting

def summarize(recs):
    wall = [r["wall_ms"] for r in recs]
    cpu = [r["cpu_ms"] for r in recs]
    rss = [r["maxrss_kb"] for r in recs]
    sd = statistics.stdev if len(recs) > 1 else (lambda xs: 0.0)
    return {"n": len(recs),
            "wall_median": statistics.median(wall), "wall_mean": statistics.mean(wall),
            "wall_sd": sd(wall), "wall_min": min(wall),
            "cpu_median": statistics.median(cpu), "cpu_mean": statistics.mean(cpu),
            "cpu_sd": sd(cpu), "cpu_min": min(cpu),
            "user_median": statistics.median([r["user_ms"] for r in recs]),
            "sys_median": statistics.median([r["sys_ms"] for r in recs]),
            "rss_median": statistics.median(rss), "rss_max": max(rss)}


def ratio(stats, a, b, key):
    if a in stats and b in stats and stats[b][key] > 0:
        return stats[a][key] / stats[b][key]
    return None


def fmt_ratio(x):
    return "n/a" if x is None else f"{x:.2f}×"


def targets(stats, own_hwm):
    """[(name, measured, met)] for the three promises."""
    out = []
    for key, label in (("wall_median", "wall time"), ("cpu_median", "CPU time")):
        r = ratio(stats, "cocoon", "crun", key)
        out.append((f"cocoon {label} ≤ {TARGET_RATIO}× crun's (medians)",
                    fmt_ratio(r), None if r is None else r <= TARGET_RATIO))
    if "cocoon" in stats:
        peak = stats["cocoon"]["rss_max"]
        hwm = own_hwm.get("cocoon")
        measured = f"{peak} KiB (max over runs, whole process tree)"
        if hwm:
            measured += f"; cocoon process alone {max(hwm)} KiB"
        out.append((f"cocoon peak RSS during run < {TARGET_RSS_KB // 1024} MiB",
                    measured, peak < TARGET_RSS_KB))
    else:
        out.append((f"cocoon peak RSS during run < {TARGET_RSS_KB // 1024} MiB", "n/a", None))
    return out


def yesno(met):
    return "n/a" if met is None else ("yes" if met else "**NO**")


def print_report(stats, order, own_hwm, hf, tgt):
    log()
    hdr = (f"{'':8} {'wall ms':>8} {'mean ± sd':>15} {'min':>7}   {'CPU ms':>7} {'mean ± sd':>15}"
           f" {'user':>6} {'sys':>6}   {'RSS KiB':>8} {'max':>6} {'own HWM':>8}")
    log(hdr)
    log(f"{'':8} {'median':>8} {'':>15} {'':>7}   {'median':>7}")
    for name in order:
        if name not in stats:
            continue
        s = stats[name]
        hwm = own_hwm.get(name)
        hwm_s = f"{int(statistics.median(hwm))}" if hwm else "-"
        log(f"{name:8} {s['wall_median']:8.2f} {s['wall_mean']:7.2f} ± {s['wall_sd']:5.2f} "
            f"{s['wall_min']:7.2f}   {s['cpu_median']:7.2f} {s['cpu_mean']:7.2f} ± {s['cpu_sd']:5.2f}"
            f" {s['user_median']:6.2f} {s['sys_median']:6.2f}   {s['rss_median']:8.0f} "
            f"{s['rss_max']:6d} {hwm_s:>8}")
    log(f"({FLOOR} = host `busybox true` through the same launcher, no runtime: the fork/exec "
        "floor and the RSS of the container's /bin/true itself)")
    log()
    log(f"{'ratio (medians)':16} {'wall':>7} {'CPU':>7} {'peak RSS':>9}")
    for a, b in (("cocoon", "crun"), ("cocoon", "runc"), ("crun", "runc")):
        log(f"{a + ' / ' + b:16} {fmt_ratio(ratio(stats, a, b, 'wall_median')):>7} "
            f"{fmt_ratio(ratio(stats, a, b, 'cpu_median')):>7} "
            f"{fmt_ratio(ratio(stats, a, b, 'rss_median')):>9}")
    if hf:
        log()
        log("hyperfine cross-check (not interleaved; runs each command back to back):")
        for name, h in hf.items():
            log(f"  {name:8} wall median {h['median_ms']:7.2f} ms, mean {h['mean_ms']:7.2f} ± "
                f"{h['stddev_ms']:5.2f} ms, CPU mean {h['cpu_mean_ms']:7.2f} ms  (n={h['n']})")
    log()
    log("targets:")
    for name, measured, met in tgt:
        log(f"  {name:45} {measured:>12}  met: {yesno(met).strip('*')}")


def spec_section(meta, stats, order, own_hwm, hf, tgt, notes, failures):
    L = []
    L.append(f"Measured {meta['date']} on {meta['machine']}; load average "
             f"{meta['loadavg_start']} at the start, {meta['loadavg_end']} at the end.")
    L.append("")
    L.append("| runtime | version |")
    L.append("|---|---|")
    for name in ALL_RUNTIMES:
        if name in meta["versions"]:
            L.append(f"| {name} | {meta['versions'][name]} |")
    L.append("")
    L.append(f"{meta['runs']} interleaved runs per runtime after {meta['warmup']} warm-up rounds; "
             f"times in ms, RSS in KiB.")
    L.append("")
    L.append("| runtime | wall median | wall mean ± sd | CPU median | CPU mean ± sd | "
             "peak RSS median (tree) | peak RSS max (tree) | own HWM median |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in order:
        if name not in stats:
            continue
        s = stats[name]
        hwm = own_hwm.get(name)
        label = f"{name} (no runtime)" if name == FLOOR else name
        L.append(f"| {label} | {s['wall_median']:.2f} | {s['wall_mean']:.2f} ± {s['wall_sd']:.2f} | "
                 f"{s['cpu_median']:.2f} | {s['cpu_mean']:.2f} ± {s['cpu_sd']:.2f} | "
                 f"{s['rss_median']:.0f} | {s['rss_max']} | "
                 f"{int(statistics.median(hwm)) if hwm else '–'} |")
    L.append("")
    L.append("| ratio (of medians) | wall | CPU | peak RSS (tree) |")
    L.append("|---|---:|---:|---:|")
    for a, b in (("cocoon", "crun"), ("cocoon", "runc"), ("crun", "runc")):
        L.append(f"| {a} / {b} | {fmt_ratio(ratio(stats, a, b, 'wall_median'))} | "
                 f"{fmt_ratio(ratio(stats, a, b, 'cpu_median'))} | "
                 f"{fmt_ratio(ratio(stats, a, b, 'rss_median'))} |")
    L.append("")
    L.append("| target | measured | met |")
    L.append("|---|---|---|")
    for name, measured, met in tgt:
        L.append(f"| {name} | {measured} | {yesno(met)} |")
    if hf:
        L.append("")
        L.append("Cross-check with hyperfine (`hyperfine -N`, each command back to back, "
                 "not interleaved):")
        L.append("")
        L.append("| runtime | n | wall median | wall mean ± sd | CPU mean |")
        L.append("|---|---:|---:|---:|---:|")
        for name, h in hf.items():
            L.append(f"| {name} | {h['n']} | {h['median_ms']:.2f} | {h['mean_ms']:.2f} ± "
                     f"{h['stddev_ms']:.2f} | {h['cpu_mean_ms']:.2f} |")
    if failures:
        L.append("")
        L.append("Excluded from the comparison:")
        L.append("")
        for name, why in failures.items():
            L.append(f"- {name}: {why.splitlines()[0]}")
    L.append("")
    L.append("How it is measured:")
    L.append("")
    for n in notes:
        L.append(f"- {n}")
    L.append("")
    L.append("![wall and CPU time per run](bench-run.png)")
    return "\n".join(L)


def write_spec(section):
    SPEC_MD.parent.mkdir(parents=True, exist_ok=True)
    if not SPEC_MD.exists():
        SPEC_MD.write_text(SPEC_SKELETON.format(begin=BEGIN, end=END))
    text = SPEC_MD.read_text()
    if BEGIN not in text or END not in text or text.index(BEGIN) > text.index(END):
        text = text.rstrip("\n") + f"\n\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    SPEC_MD.write_text(f"{head}{BEGIN}\n{section}\n{END}{tail}")


def write_plot(recs, order, meta):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in order if any(r["runtime"] == n for r in recs)]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for ax, key, title in ((axes[0], "wall_ms", "wall time"), (axes[1], "cpu_ms", "CPU time (user+sys)")):
        data = [[r[key] for r in recs if r["runtime"] == n] for n in names]
        ax.boxplot(data, labels=names, showfliers=True, whis=(5, 95),
                   flierprops={"markersize": 2, "alpha": 0.4})
        ax.set_title(title)
        ax.set_ylabel("ms per `run` of /bin/true")
        ax.set_ylim(bottom=0)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"run /bin/true, {meta['runs']} interleaved runs each — {meta['date']}\n"
                 f"{meta['machine']} (boxes: quartiles; whiskers: 5–95 %)", fontsize=9)
    fig.tight_layout()
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(PLOT, dpi=110)
    plt.close(fig)


def run_hyperfine(runner, names, runs, warmup, tmp):
    """One hyperfine invocation per runtime (so each can be started in its
    mount namespace with nsenter; nsenter is not part of what is timed)."""
    exe = shutil.which("hyperfine")
    if not exe:
        log("bench: hyperfine not installed, skipping the cross-check")
        return {}
    res = {}
    for name in names:
        out = tmp / f"hyperfine-{name}.json"
        cid = f"hf-{name}-{runner.token}"   # `run` deletes it, so it can be reused
        cmd = runner.ns_prefix(name) + [
            exe, "-N", "--runs", str(runs), "--warmup", str(warmup), "--export-json", str(out),
            "--style", "none", "-n", name, " ".join(runner.argv(name, cid))]
        p = subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=tmp,
                           stdin=subprocess.DEVNULL)
        if p.returncode != 0:
            warn(f"hyperfine {name} failed ({p.returncode}): "
                 f"{(p.stderr or p.stdout).strip()[-1000:]}")
            runner.delete_all(name)
            continue
        r = json.loads(out.read_text())["results"][0]
        res[name] = {"n": len(r["times"]), "median_ms": r["median"] * 1e3,
                     "mean_ms": r["mean"] * 1e3, "stddev_ms": (r["stddev"] or 0) * 1e3,
                     "cpu_mean_ms": (r["user"] + r["system"]) * 1e3}
    return res


# --------------------------------------------------------------------------

def machine_info():
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{len(os.sched_getaffinity(0))} CPUs ({cpu}), Linux {platform.release()}"


def loadavg():
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "?"


def git_rev():
    try:
        return sh(["git", "-C", str(REPO), "describe", "--always", "--dirty"]).strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cocoon", default=str(REPO / "build" / "src" / "cocoon"),
                    help="cocoon binary (default: build/src/cocoon)")
    ap.add_argument("--runs", type=int, default=200, help="measured runs per runtime (200)")
    ap.add_argument("--warmup", type=int, default=5, help="warm-up rounds, not measured (5)")
    ap.add_argument("--runtimes", default=",".join(ALL_RUNTIMES),
                    help="comma-separated subset of cocoon,runc,crun")
    ap.add_argument("--rss-runs", type=int, default=5,
                    help="extra runs per runtime under ptrace for the runtime's own VmHWM (5; 0: off)")
    ap.add_argument("--hyperfine-runs", type=int, default=None,
                    help="hyperfine cross-check runs per runtime (default max(10, runs/4); 0: off)")
    ap.add_argument("--private-ns", choices=("all", "crun"), default="all",
                    help="who runs in the mount namespace without /sys/fs/cgroup/unified: "
                         "all runtimes (default, same cgroup layout for all) or crun only")
    ap.add_argument("--no-floor", action="store_true",
                    help="do not interleave the host `busybox true` reference")
    ap.add_argument("--no-write", action="store_true",
                    help="do not touch docs/ (results still go to bench/results/run.json)")
    a = ap.parse_args()
    a.runtimes = [r.strip() for r in a.runtimes.split(",") if r.strip()]
    bad = [r for r in a.runtimes if r not in ALL_RUNTIMES]
    if bad:
        ap.error(f"unknown runtime(s): {', '.join(bad)}")
    if "cocoon" not in a.runtimes:
        ap.error("--runtimes must include cocoon")
    if a.runs < 1 or a.warmup < 0:
        ap.error("--runs must be >= 1 and --warmup >= 0")
    if a.hyperfine_runs is None:
        a.hyperfine_runs = max(10, a.runs // 4)
    return a


def main():
    args = parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench: needs root (the runtimes create namespaces and cgroups)")
    cocoon = Path(args.cocoon).resolve()
    if not os.access(cocoon, os.X_OK):
        raise SystemExit(f"bench: {cocoon}: not an executable (build it: ninja -C build)")
    if not os.path.exists("/bin/busybox"):
        raise SystemExit("bench: /bin/busybox missing (apt-get install busybox-static)")

    def on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)

    tmp = Path(tempfile.mkdtemp(prefix="cocoon-bench-"))
    try:
        return measure(args, cocoon, tmp)
    except KeyboardInterrupt:
        log("\ninterrupted; cleaning up")
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        cleanup(tmp)


_CLEAN = {"runner": None, "holder": None}


def cleanup(tmp):
    """Containers left in our state dirs, cgroups named after our ids, the
    namespace holder, the temp dir. Best effort: keep going on errors."""
    runner = _CLEAN["runner"]
    if runner:
        for name in list(runner.binaries):
            try:
                runner.delete_all(name)
            except Exception as e:  # noqa: BLE001
                warn(f"cleanup of {name}: {e}")
        runner.remove_cgroups()
    if _CLEAN["holder"]:
        _CLEAN["holder"].stop()
    if _CLEAN.get("state_mount"):
        subprocess.run(["umount", "-l", str(_CLEAN["state_mount"])], check=False)
    shutil.rmtree(tmp, ignore_errors=True)


def measure(args, cocoon, tmp):
    t_start = time.time()
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": machine_info(), "loadavg_start": loadavg(), "runs": args.runs,
            "warmup": args.warmup, "versions": {}, "git": git_rev(),
            "private_ns": args.private_ns}
    log(f"bench: {meta['machine']}; load average {meta['loadavg_start']}")

    # State dirs (--root) live on a tmpfs for every runtime, as /run is on a
    # normal host (on this build machine /run is on the root ext4, where
    # creating inodes would weigh on every runtime's figure).
    state = tmp / "state"
    state.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,mode=700", "cocoon-bench-state",
                    str(state)], check=True)
    _CLEAN["state_mount"] = state
    log("bench: every runtime's --root is on a tmpfs (as /run is on a normal host)")

    holder = _CLEAN["holder"] = NsHolder()
    if args.private_ns == "all":
        in_ns = set(ALL_RUNTIMES) | {FLOOR}
        notes = [f"every runtime (and the floor) runs in a private mount namespace where {UNIFIED} "
                 "is unmounted (crun 1.8.1 refuses hybrid cgroups), so all see the same "
                 "cgroup-v1-only layout; bench/spawn joins it with setns() before the clock starts"]
    else:
        in_ns = {"crun"}
        notes = [f"only crun runs in a private mount namespace where {UNIFIED} is unmounted "
                 "(crun 1.8.1 refuses hybrid cgroups); cocoon and runc run in the host's hybrid "
                 "layout, where they also manage the cgroup2 hierarchy (--private-ns crun)"]
    for n in notes:
        log(f"bench: {n}")

    spawn = build_spawn(tmp)
    bundle, check_bundle, adjustments = build_bundles(tmp, cocoon)
    runner = _CLEAN["runner"] = Runner(tmp, spawn, bundle, holder.path, in_ns)
    log(f"bench: bundle {bundle}: busybox-static rootfs, config.json from `cocoon spec` with "
        f"{', '.join(adjustments)}; the same file for every runtime")

    failures = {}
    for name in args.runtimes:
        binary = str(cocoon) if name == "cocoon" else shutil.which(name)
        if not binary:
            log(f"bench: {name}: not installed, skipped")
            continue
        runner.add(name, binary)
        meta["versions"][name] = version_of(name, binary)
        if name == "cocoon":
            meta["versions"][name] += f" (tree {meta['git']})"
        log(f"bench: {name}: {binary}: {meta['versions'][name]}")

    # Preflight: each runtime runs a CPU-burning container that exits 7
    # (checks that the exit status is propagated and that the container's
    # CPU time shows up in the runtime's rusage), then /bin/true once.
    host = runner.run(FLOOR, argv=["/bin/busybox", "sh", "-c", spin_script()])
    notes_acct = []
    for name in list(runner.binaries):
        c = runner.run(name, bundle=check_bundle)
        if c["status"] != 7:
            if c["status"] == 0:
                warn(f"{name}: a container exiting 7 gave exit status 0: run does not "
                     "propagate the exit status, so failed runs could pass unnoticed")
            else:
                failures[name] = f"preflight (container exiting 7): {describe_failure(c)}"
        t = runner.run(name)
        if name not in failures and t["status"] != 0:
            failures[name] = f"preflight run of /bin/true: {describe_failure(t)}"
        if name in failures:
            log(f"bench: {name}: FAILED, excluded: {failures[name]}")
            continue
        if c.get("left_state") or t.get("left_state"):
            warn(f"{name}: `run` left state behind in its --root: "
                 f"{c.get('left_state') or t.get('left_state')}")
        included = c["cpu_ms"] >= 0.7 * host["cpu_ms"]
        msg = (f"{name}: for a container running a shell loop that takes {host['cpu_ms']:.0f} ms "
               f"of CPU on the host, the runtime's wait4 rusage showed {c['cpu_ms']:.0f} ms "
               f"(loop + runtime): the container's CPU time is "
               f"{'included' if included else 'NOT included'}")
        log(f"bench: {msg}")
        notes_acct.append(msg)
        if not included:
            warn(f"{name}: its CPU figures miss the container's CPU time")
    names = [n for n in runner.binaries if n not in failures]
    if "cocoon" not in names:
        log("bench: cocoon failed its preflight; nothing to compare")
        if args.private_ns == "all":
            log(f"bench: (with --private-ns crun, cocoon and runc run in the host's cgroup layout, "
                f"with {UNIFIED} mounted)")
        return 1
    if len(names) < 2:
        log("bench: no other runtime to compare cocoon with")

    order = names + ([] if args.no_floor else [FLOOR])
    recs = []
    total = args.warmup + args.runs
    log(f"bench: {args.warmup} warm-up + {args.runs} measured rounds of {', '.join(order)} "
        "(round-robin, starting runtime rotates)")
    for rnd in range(total):
        k = rnd % len(order)
        for name in order[k:] + order[:k]:
            if name in failures:
                continue
            r = runner.run(name)
            r["round"] = rnd - args.warmup
            if r["status"] != 0:
                failures[name] = f"run {r['id']}: {describe_failure(r)}"
                log(f"bench: {name}: FAILED, excluded: {failures[name]}")
                continue
            if r.get("left_state"):
                failures[name] = f"run {r['id']} left state behind: {r['left_state']}"
                log(f"bench: {name}: FAILED, excluded: {failures[name]}")
                continue
            if rnd >= args.warmup:
                r.pop("output", None)
                recs.append(r)
        if (rnd + 1) % 50 == 0 or rnd + 1 == total:
            log(f"bench: round {rnd + 1}/{total}")
    names = [n for n in names if n not in failures]
    order = [n for n in order if n not in failures]

    own_hwm = {}
    if args.rss_runs > 0:
        for name in names:
            vals = []
            for _ in range(args.rss_runs):
                r = runner.run(name, trace=True)
                if r["status"] != 0:
                    warn(f"{name}: a run under ptrace (own HWM) failed: {describe_failure(r)}")
                elif r.get("own_hwm_kb", -1) > 0:
                    vals.append(r["own_hwm_kb"])
            if vals:
                own_hwm[name] = vals
            else:
                warn(f"{name}: could not read its own VmHWM under ptrace")

    hf = {}
    if args.hyperfine_runs > 0 and names:
        log(f"bench: hyperfine cross-check, {args.hyperfine_runs} runs each")
        hf = run_hyperfine(runner, names, args.hyperfine_runs, min(3, args.warmup), tmp)

    leaked = runner.leaked_cgroups()
    if leaked:
        warn(f"cgroup directories left behind: {', '.join(leaked[:10])}"
             + (" ..." if len(leaked) > 10 else ""))

    stats = {n: summarize([r for r in recs if r["runtime"] == n]) for n in order}
    stats = {n: s for n, s in stats.items() if s["n"] > 0}
    tgt = targets(stats, own_hwm)
    meta["loadavg_end"] = loadavg()
    meta["seconds"] = round(time.time() - t_start, 1)
    print_report(stats, order, own_hwm, hf, tgt)

    all_notes = notes + [
        "bundle: busybox-static rootfs; config.json from `cocoon spec` (which follows `runc spec`) "
        f"with {', '.join(adjustments)}; the same file for every runtime; no other change was "
        "needed for runc or crun",
        "each run: a static C launcher (bench/spawn.c) forks, execs "
        "`RUNTIME --root STATE run --bundle BUNDLE ID` (fresh id every run, own state dir per "
        "runtime) and wait4()s; every run must exit 0 and leave its state dir empty",
        "wall: CLOCK_MONOTONIC from before fork() to after wait4() (includes exec of the runtime)",
        "CPU: ru_utime + ru_stime of that wait4(): the runtime process and every descendant "
        "reaped within the tree, including the container's /bin/true",
        "peak RSS (tree): ru_maxrss of that wait4(): the largest peak RSS of any one process in "
        "the tree; the container's /bin/true is busybox, so it is a floor (see the floor row); "
        f"own HWM: VmHWM of the runtime process itself at exit, read under ptrace in "
        f"{args.rss_runs} separate runs",
        f"{FLOOR}: `/bin/busybox true` on the host through the same launcher (no runtime)",
        "runs interleaved round-robin with the starting runtime rotating each round; ratios are "
        "of medians",
    ] + notes_acct
    if leaked:
        all_notes.append(f"cgroup directories left behind by some runtime: {len(leaked)}")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "meta": meta, "notes": all_notes, "failures": failures, "stats": stats,
        "targets": [{"target": t, "measured": m, "met": ok} for t, m, ok in tgt],
        "own_hwm_kb": own_hwm, "hyperfine": hf, "runs": recs}, indent=1) + "\n")
    log(f"\nbench: raw results in {RESULTS.relative_to(REPO)}")

    if not args.no_write:
        write_spec(spec_section(meta, stats, order, own_hwm, hf, tgt, all_notes, failures))
        write_plot(recs, order, meta)
        log(f"bench: wrote {SPEC_MD.relative_to(REPO)} and {PLOT.relative_to(REPO)}")

    if failures:
        for name, why in failures.items():
            log(f"bench: {name} excluded: {why.splitlines()[0]}")
    if "crun" in failures:
        log("bench: crun failed, so the targets (relative to crun) cannot be checked")
    # Any installed runtime that failed leaves a comparison undone.
    if failures or len(stats) - (FLOOR in stats) < 2:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""`make bench`: cocoon, runc and crun side by side, in three scenarios.

    /usr/bin/python3 bench/run.py --cocoon build/src/cocoon [--runs 200]
                                  [--scenarios run,limits,exec]

Scenarios (all measured in one invocation, interleaved; each has its own
table, ratios, targets and section of docs/SPEC.md):

* run:    `RUNTIME --root STATE run --bundle BUNDLE ID` of /bin/true.
* limits: the same, with a config.json that adds linux.resources.memory.limit
          = 64 MiB and linux.resources.pids.limit = 64 (and keeps the default
          seccomp profile of `cocoon spec`). A preflight checks that each
          runtime accepts it and really applies it (cgroup files and
          Seccomp: 2 read from the host for a container of that config).
* exec:   `RUNTIME --root STATE2 exec ID /bin/true` in a container that each
          runtime created and started before the measurement (the run
          config with process.args = ["sleep", "100000"]); it is killed and
          deleted at the end, also on Ctrl-C / SIGTERM.

What is measured, exactly (docs/SPEC.md repeats this next to the figures):

* One bundle: a busybox-static rootfs and the config.json of `cocoon spec`
  (which follows `runc spec`; it includes a default seccomp deny list), with
  process.args = ["/bin/true"] and terminal = false. All runtimes get the
  same bundle and the same file (per scenario).
* Every runtime is launched the same way: this script runs bench/spawn (a
  small static C program, compiled into the temp dir), which forks, execs
  the runtime command (see above), and wait4()s for it.
  - wall:  CLOCK_MONOTONIC from before fork() to after wait4() returned.
  - CPU:   ru_utime + ru_stime from wait4(): the runtime process plus every
           descendant that was reaped (the container init / exec'd process
           and helper processes are reaped by the runtime, so they are
           included; a preflight check runs a CPU-burning container / exec
           to verify this for each runtime and scenario).
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
* Runs are interleaved round-robin (the starting scenario and, within a
  scenario, the starting runtime rotate every round), after warm-up rounds.
  Each `run` uses a fresh container id; every run must exit 0 and leave
  nothing (new) in its state dir, or the runtime is reported and dropped
  from that scenario's comparison.
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

ALL_RUNTIMES = ("cocoon", "runc", "crun")
SCENARIOS = ("run", "limits", "exec")
FLOOR = "floor"            # busybox true on the host through the same launcher
TARGET_RATIO = 0.5         # cocoon wall and CPU at most this times crun's
TARGET_RSS_KB = 2048       # cocoon peak RSS under 2 MiB (run scenario)
MEM_LIMIT = 64 * 1024 * 1024   # limits scenario: linux.resources.memory.limit
PIDS_LIMIT = 64                # limits scenario: linux.resources.pids.limit
HOLD_ARGS = ["sleep", "100000"]  # process of the long-running containers
ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
       "HOME": "/root", "LANG": "C"}
SPIN_LOOPS = 40000         # busy loop of the accounting check (~40 ms)


def markers(scen):
    return f"<!-- bench:{scen}:begin -->", f"<!-- bench:{scen}:end -->"


BEGIN, END = markers("run")

# Per scenario: the SPEC.md heading and target line (outside the markers,
# written only when the section is created), a short label for the console
# and the plot, and what one measured command is.
SCEN_INFO = {
    "run": {
        "heading": "## `run` of `/bin/true`",
        "targets": "Targets: cocoon's wall time and CPU time at most 0.5× crun's; cocoon's peak\n"
                   "RSS during `run` under 2 MiB.",
        "label": "run /bin/true",
        "unit": "ms per `run` of /bin/true",
        "command": "RUNTIME --root STATE run --bundle BUNDLE ID",
    },
    "limits": {
        "heading": "## `run` of `/bin/true` with memory and pids limits and seccomp",
        "targets": "Targets: cocoon's wall time and CPU time at most 0.5× crun's.",
        "label": "run /bin/true, 64 MiB memory + 64 pids limits, seccomp",
        "unit": "ms per `run` (limits)",
        "command": "RUNTIME --root STATE run --bundle BUNDLE-LIMITS ID",
    },
    "exec": {
        "heading": "## `exec` of `/bin/true` in a running container",
        "targets": "Targets: cocoon's wall time and CPU time at most 0.5× crun's.",
        "label": "exec /bin/true in a running container",
        "unit": "ms per `exec` of /bin/true",
        "command": "RUNTIME --root STATE exec ID /bin/true",
    },
}


def spec_block(scen):
    b, e = markers(scen)
    i = SCEN_INFO[scen]
    return f"{i['heading']}\n\n{i['targets']}\n\n{b}\nNot measured yet: run `make bench`.\n{e}\n"


SPEC_SKELETON = """# cocoon — measured promises

Every figure in this file is refreshed by `make bench` (`bench/run.py`).
cocoon, runc and crun are measured in one run, on the same machine, with the
same bundle and the same `config.json`, interleaved run by run. Machines are
noisy and differ from one another, so the promise is the ratios between the
runtimes measured together, not the absolute times.

""" + "\n".join(spec_block(s) for s in SCENARIOS)


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
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, preexec_fn=_die_with_parent,
            # Its own session: a Ctrl-C on the terminal must not kill it
            # before the cleanup has used the namespace.
            start_new_session=True)
        line = self.proc.stdout.readline().decode().strip()
        if line != "ready":
            self.stop()
            raise SystemExit("bench: could not set up the mount namespace without "
                             f"{UNIFIED} (unshare/umount failed)")
        # Hold the namespace by an fd of ours as well, so that the cleanup
        # (kill + delete of containers made in it) works even if the holder
        # process died; children open it as /proc/OURPID/fd/N.
        self.fd = os.open(f"/proc/{self.proc.pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        self.path = f"/proc/{os.getpid()}/fd/{self.fd}"
        mounts = [l.split()[4] for l in open(f"/proc/{self.proc.pid}/mountinfo")]
        if UNIFIED in mounts:
            self.stop()
            raise SystemExit(f"bench: {UNIFIED} is still mounted in the private namespace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        if getattr(self, "fd", None) is not None:
            os.close(self.fd)
            self.fd = None


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
    """The bundles: 'run' (measured by run), 'limits' (measured by limits),
    'exec-hold' (the long-running container of exec) and, for the preflight
    checks, 'run-check' / 'limits-check' (a CPU-burning process that exits 7)
    and 'limits-hold' (the limits config running sleep). All share the
    rootfs of 'run' (root.path is absolute in the others). Returns (bundles,
    adjustments made to the `cocoon spec` config, seccomp description)."""
    bundle = tmp / "bundle"
    bundle.mkdir()
    sh([str(REPO / "examples" / "busybox" / "make-bundle.sh"), str(bundle), str(cocoon)])
    cfg_path = bundle / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["process"]["args"] = ["/bin/true"]
    cfg["process"]["terminal"] = False
    cfg_path.write_text(json.dumps(cfg, indent=2) + "\n")
    adjustments = ['process.args = ["/bin/true"]', "process.terminal = false"]

    def derive(dirname, args=None, limits=False):
        d = tmp / dirname
        d.mkdir()
        c = json.loads(json.dumps(cfg))
        c["root"]["path"] = str(bundle / "rootfs")
        if args:
            c["process"]["args"] = args
        if limits:
            res = c.setdefault("linux", {}).setdefault("resources", {})
            res["memory"] = {"limit": MEM_LIMIT}
            res["pids"] = {"limit": PIDS_LIMIT}
        (d / "config.json").write_text(json.dumps(c, indent=2) + "\n")
        return d

    bundles = {
        "run": bundle,
        "limits": derive("bundle-limits", limits=True),
        "exec-hold": derive("bundle-exec-hold", args=HOLD_ARGS),
        "run-check": derive("bundle-check", args=["/bin/sh", "-c", spin_script()]),
        "limits-check": derive("bundle-limits-check", args=["/bin/sh", "-c", spin_script()],
                               limits=True),
        "limits-hold": derive("bundle-limits-hold", args=HOLD_ARGS, limits=True),
    }
    sc = cfg.get("linux", {}).get("seccomp")
    if sc:
        groups = ", ".join(f"{len(g.get('names', []))} syscalls → {g.get('action')}"
                           + (f" (errno {g['errnoRet']})" if "errnoRet" in g else "")
                           for g in sc.get("syscalls", []))
        seccomp = (f"linux.seccomp as `cocoon spec` writes it: defaultAction "
                   f"{sc.get('defaultAction')}, {groups or 'no rules'}")
    else:
        seccomp = "no linux.seccomp (`cocoon spec` wrote none)"
    return bundles, adjustments, seccomp


def spin_script():
    return f"i=0; while [ $i -lt {SPIN_LOOPS} ]; do i=$((i+1)); done; exit 7"


# --------------------------------------------------------------------------
# one measured run

class Runner:
    def __init__(self, tmp, spawn, bundles, ns_path, in_ns):
        self.tmp, self.spawn, self.bundles = tmp, spawn, bundles
        self.bundle = bundles["run"]
        self.ns_path = ns_path  # the private mount namespace (NsHolder.path)
        self.in_ns = in_ns      # names (runtimes, FLOOR) that run in it
        self.binaries = {}      # runtime name -> binary path
        self.roots = {}         # runtime name -> state dir of run / limits
        self.exec_roots = {}    # runtime name -> state dir of the exec container
        self.holders = {}       # runtime name -> id of its long-running exec container
        self.exec_baseline = {}  # runtime name -> entries of its exec state dir
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
        eroot = self.tmp / "state" / f"{name}-exec"
        eroot.mkdir(parents=True)
        self.exec_roots[name] = eroot

    def new_id(self, name):
        self.seq += 1
        return f"{name}-{self.token}-{self.seq}"

    def rt(self, name, root=None):
        return [self.binaries[name], "--root", str(root or self.roots[name])]

    def argv(self, name, cid, bundle=None, scen="run"):
        if name == FLOOR:
            return ["/bin/busybox", "true"]
        if scen == "exec":
            return self.rt(name, self.exec_roots[name]) + ["exec", self.holders[name], "/bin/true"]
        return self.rt(name) + ["run", "--bundle", str(bundle or self.bundles[scen]), cid]

    def run(self, name, bundle=None, trace=False, argv=None, scen="run"):
        """Run once through bench/spawn; returns a dict of the figures."""
        cid = self.holders.get(name) if scen == "exec" else self.new_id(name)
        logf = self.tmp / f"{name}.log"
        cmd = [str(self.spawn), "-l", str(logf)] + (["-x"] if trace else [])
        if name in self.in_ns:
            cmd += ["-n", self.ns_path]
        cmd += ["--"] + (argv or self.argv(name, cid, bundle, scen))
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
        if name == FLOOR:
            pass
        elif scen == "exec":
            left = sorted(set(state_entries(self.exec_roots[name]))
                          - self.exec_baseline.get(name, set()))
            if left:
                rec["left_state"] = left
        else:
            left = sorted(state_entries(self.roots[name]))
            if left:
                rec["left_state"] = left
                self.delete_all(name, exec_root=False)
        return rec

    # -- long-running containers (exec scenario, limits check) ------------

    def start_hold(self, name, root, bundle, cid):
        """`create` + `start` a container whose process runs for a long time
        (its stdio goes to a log file, not to a pipe we would wait on).
        Returns its pid once the process is the bundle's program."""
        logf = self.tmp / f"{name}-{cid}.log"
        pre = self.ns_prefix(name) + self.rt(name, root)
        with open(logf, "ab") as f:
            for args in (["create", "--bundle", str(bundle), cid], ["start", cid]):
                p = subprocess.run(pre + args, stdin=subprocess.DEVNULL, stdout=f, stderr=f,
                                   env=ENV, cwd=self.tmp, timeout=60)
                if p.returncode != 0:
                    out = logf.read_text(errors="replace").strip()[-1500:]
                    raise RuntimeError(f"`{args[0]}` exited {p.returncode}"
                                       + (f"; output:\n    {out}" if out else ""))
        pid = self.state(name, root, cid).get("pid")
        if not pid:
            raise RuntimeError(f"`state {cid}` shows no pid")
        want = Path(HOLD_ARGS[0]).name
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() == want:
                    return pid
            except OSError:
                raise RuntimeError(f"the container's process {pid} is gone after `start`")
            time.sleep(0.01)
        raise RuntimeError(f"the container's process {pid} did not exec {want} within 3 s")

    def state(self, name, root, cid):
        p = subprocess.run(self.ns_prefix(name) + self.rt(name, root) + ["state", cid],
                           capture_output=True, text=True, env=ENV, cwd=self.tmp, timeout=30)
        if p.returncode != 0:
            raise RuntimeError(f"`state {cid}` exited {p.returncode}: {p.stderr.strip()[-500:]}")
        return json.loads(p.stdout)

    def stop_hold(self, name, root, cid):
        pre = self.ns_prefix(name) + self.rt(name, root)
        subprocess.run(pre + ["kill", cid, "KILL"], capture_output=True, env=ENV, timeout=30)
        p = subprocess.run(pre + ["delete", "--force", cid], capture_output=True, text=True,
                           env=ENV, timeout=30)
        if p.returncode != 0 and (Path(root) / cid).exists():
            warn(f"{name}: `delete --force {cid}` exited {p.returncode}: {p.stderr.strip()[-300:]}")

    def start_exec_holder(self, name):
        cid = f"{name}-{self.token}-exec"
        self.holders[name] = cid
        pid = self.start_hold(name, self.exec_roots[name], self.bundles["exec-hold"], cid)
        self.exec_baseline[name] = set(state_entries(self.exec_roots[name]))
        return pid

    def stop_exec_holders(self):
        for name, cid in list(self.holders.items()):
            try:
                self.stop_hold(name, self.exec_roots[name], cid)
            except Exception as e:  # noqa: BLE001
                warn(f"stopping {name}'s exec container {cid}: {e}")
            left = state_entries(self.exec_roots[name])
            if left:
                warn(f"{name}: its exec state dir still holds {left} after kill + delete --force")
            del self.holders[name]

    def exec_parentage(self, name):
        """Run `RUNTIME exec ID /bin/sleep 1` (not timed), find the sleep
        process and walk its parents up to the exec command. Returns the
        chain of process names from the exec command down to the exec'd
        process, or None if it is not a descendant."""
        root = self.exec_roots[name]
        argv = ["/bin/sleep", "1"]
        want = ("\0".join(argv) + "\0").encode()
        logf = self.tmp / f"{name}-parentage.log"
        with open(logf, "wb") as f:
            # nsenter (mount namespace only) execs the runtime without forking,
            # so p.pid is the runtime's exec process.
            p = subprocess.Popen(self.ns_prefix(name) + self.rt(name, root)
                                 + ["exec", self.holders[name]] + argv,
                                 stdin=subprocess.DEVNULL, stdout=f, stderr=f, env=ENV,
                                 cwd=self.tmp)
        chain = None
        deadline = time.monotonic() + 0.9
        try:
            while chain is None and time.monotonic() < deadline and p.poll() is None:
                for d in os.listdir("/proc"):
                    if not d.isdigit():
                        continue
                    try:
                        if Path(f"/proc/{d}/cmdline").read_bytes() != want:
                            continue
                    except OSError:
                        continue
                    c, cur = [], int(d)
                    for _ in range(16):
                        c.append((cur, proc_comm(cur)))
                        if cur == p.pid:
                            chain = c
                            break
                        cur = proc_ppid(cur)
                        if not cur or cur <= 1:
                            break
                    if chain:
                        break
                time.sleep(0.005)
        finally:
            rc = p.wait(timeout=60)
        return ([f"{comm} ({pid})" for pid, comm in reversed(chain)] if chain else None), rc

    # -- cleanup ------------------------------------------------------------

    def delete_all(self, name, exec_root=True):
        roots = [self.roots.get(name)] + ([self.exec_roots.get(name)] if exec_root else [])
        for root in roots:
            if not root or not root.is_dir():
                continue
            for cid in os.listdir(root):
                if not (root / cid).is_dir():
                    continue
                pre = self.ns_prefix(name) + self.rt(name, root)
                subprocess.run(pre + ["kill", cid, "KILL"], capture_output=True, env=ENV,
                               timeout=30)
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


def proc_comm(pid):
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def proc_ppid(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("PPid:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def applied_limits(pid):
    """What the kernel enforces on a process: memory limit and pids.max of
    its cgroups (v1 files, else cgroup2 ones), and its seccomp mode."""
    mem = pids = None
    v2 = None
    try:
        lines = open(f"/proc/{pid}/cgroup").read().splitlines()
    except OSError:
        lines = []
    for line in lines:
        hid, ctrls, path = line.split(":", 2)
        if hid == "0":
            v2 = path
            continue
        ctrl = ctrls.split(",")
        d = Path("/sys/fs/cgroup") / ctrls / path.lstrip("/")
        if "memory" in ctrl:
            mem = read_first(d / "memory.limit_in_bytes")
        if "pids" in ctrl:
            pids = read_first(d / "pids.max")
    if v2 is not None:
        base = Path("/sys/fs/cgroup") if Path("/sys/fs/cgroup/cgroup.controllers").exists() \
            else Path(UNIFIED)
        d = base / v2.lstrip("/")
        mem = mem or read_first(d / "memory.max")
        pids = pids or read_first(d / "pids.max")
    seccomp = None
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("Seccomp:"):
                seccomp = line.split()[1]
    except OSError:
        pass
    return {"memory_limit": mem, "pids_max": pids, "seccomp_mode": seccomp}


def read_first(path):
    try:
        return path.read_text().split()[0]
    except (OSError, IndexError):
        return None


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


def targets(stats, own_hwm, scen="run"):
    """[(name, measured, met)] for the promises of one scenario."""
    out = []
    what = {"run": "", "limits": " (limits)", "exec": " (exec)"}[scen]
    for key, label in (("wall_median", "wall time"), ("cpu_median", "CPU time")):
        r = ratio(stats, "cocoon", "crun", key)
        out.append((f"cocoon {label}{what} ≤ {TARGET_RATIO}× crun's (medians)",
                    fmt_ratio(r), None if r is None else r <= TARGET_RATIO))
    if scen != "run":
        return out
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


def print_report(stats, order, own_hwm, hf, tgt, scen="run"):
    log()
    log(f"== {scen}: {SCEN_INFO[scen]['label']} ({SCEN_INFO[scen]['command']}) ==")
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
        log(f"  {name:52} {measured:>6}  met: {yesno(met).strip('*')}")


def spec_section(meta, stats, order, own_hwm, hf, tgt, notes, failures, scen="run"):
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
    others = [x for x in meta["scenarios"] if x != scen]
    L.append(f"{meta['runs']} interleaved runs per runtime after {meta['warmup']} warm-up rounds; "
             f"times in ms, RSS in KiB."
             + (f" Measured in the same rounds as {' and '.join(f'`{x}`' for x in others)}."
                if others else ""))
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
    if scen == "run":
        L.append("![wall and CPU time per run](bench-run.png)")
    else:
        L.append(f"Plot: the `{scen}` row of [bench-run.png](bench-run.png).")
    return "\n".join(L)


def write_spec(section, scen="run"):
    begin, end = markers(scen)
    SPEC_MD.parent.mkdir(parents=True, exist_ok=True)
    if not SPEC_MD.exists():
        SPEC_MD.write_text(SPEC_SKELETON)
    text = SPEC_MD.read_text()
    if begin not in text or end not in text or text.index(begin) > text.index(end):
        text = text.rstrip("\n") + "\n\n" + spec_block(scen)
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    SPEC_MD.write_text(f"{head}{begin}\n{section}\n{end}{tail}")


def write_plot(recs, orders, meta):
    """One row per scenario measured (wall, CPU); the floor is drawn in the
    row of the scenario it was interleaved with."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [s for s in meta["scenarios"] if any(r["scenario"] == s for r in recs)]
    if not rows:
        return
    fig, axes = plt.subplots(len(rows), 2, figsize=(10, 3.5 * len(rows) + 0.7), squeeze=False)
    for i, scen in enumerate(rows):
        def sel(n):
            return [r for r in recs if r["runtime"] == n and r["scenario"] == scen]
        names = [n for n in orders.get(scen, []) if sel(n)]
        for ax, key, title in ((axes[i][0], "wall_ms", "wall time"),
                               (axes[i][1], "cpu_ms", "CPU time (user+sys)")):
            data = [[r[key] for r in sel(n)] for n in names]
            ax.boxplot(data, labels=names, showfliers=True, whis=(5, 95),
                       flierprops={"markersize": 2, "alpha": 0.4})
            ax.set_title(f"{scen}: {title}", fontsize=9)
            ax.set_ylabel(SCEN_INFO[scen]["unit"], fontsize=8)
            ax.set_ylim(bottom=0)
            ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"{', '.join(rows)}: {meta['runs']} interleaved runs each — {meta['date']}\n"
                 f"{meta['machine']} (boxes: quartiles; whiskers: 5–95 %)", fontsize=9)
    fig.tight_layout()
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(PLOT, dpi=110)
    plt.close(fig)


def run_hyperfine(runner, names, runs, warmup, tmp, scen="run"):
    """One hyperfine invocation per runtime (so each can be started in its
    mount namespace with nsenter; nsenter is not part of what is timed)."""
    exe = shutil.which("hyperfine")
    if not exe:
        log("bench: hyperfine not installed, skipping the cross-check")
        return {}
    res = {}
    for name in names:
        out = tmp / f"hyperfine-{scen}-{name}.json"
        cid = f"hf-{name}-{runner.token}"   # `run` deletes it, so it can be reused
        cmd = runner.ns_prefix(name) + [
            exe, "-N", "--runs", str(runs), "--warmup", str(warmup), "--export-json", str(out),
            "--style", "none", "-n", name, " ".join(runner.argv(name, cid, scen=scen))]
        p = subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=tmp,
                           stdin=subprocess.DEVNULL)
        if p.returncode != 0:
            warn(f"hyperfine {name} ({scen}) failed ({p.returncode}): "
                 f"{(p.stderr or p.stdout).strip()[-1000:]}")
            runner.delete_all(name, exec_root=False)
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
    ap.add_argument("--scenarios", default=",".join(SCENARIOS),
                    help="comma-separated subset of run,limits,exec (default: all three); only "
                         "their SPEC.md sections are rewritten, and the plot shows only them")
    ap.add_argument("--no-write", action="store_true",
                    help="do not touch docs/ (results still go to bench/results/run.json)")
    a = ap.parse_args()
    wanted = [x.strip() for x in a.scenarios.split(",") if x.strip()]
    bad = [x for x in wanted if x not in SCENARIOS]
    if bad or not wanted:
        ap.error(f"unknown scenario(s): {', '.join(bad)}" if bad else "--scenarios is empty")
    a.scenarios = [x for x in SCENARIOS if x in wanted]
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


def state_entries(root):
    """Containers left in a --root: everything but cocoon's cache of
    compiled seccomp filters (.seccomp), which outlives containers."""
    return [e for e in os.listdir(root) if e != ".seccomp"]


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


def rotate(xs, k):
    if not xs:
        return []
    k %= len(xs)
    return xs[k:] + xs[:k]


def measure(args, cocoon, tmp):
    t_start = time.time()
    scenarios = args.scenarios
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": machine_info(), "loadavg_start": loadavg(), "runs": args.runs,
            "warmup": args.warmup, "versions": {}, "git": git_rev(),
            "private_ns": args.private_ns, "scenarios": scenarios}
    log(f"bench: {meta['machine']}; load average {meta['loadavg_start']}")
    log(f"bench: scenarios: {', '.join(scenarios)}")

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
        ns_note = (f"every runtime (and the floor) runs in a private mount namespace where "
                   f"{UNIFIED} is unmounted (crun 1.8.1 refuses hybrid cgroups), so all see the "
                   "same cgroup-v1-only layout; bench/spawn joins it with setns() before the clock "
                   "starts")
    else:
        in_ns = {"crun"}
        ns_note = (f"only crun runs in a private mount namespace where {UNIFIED} is unmounted "
                   "(crun 1.8.1 refuses hybrid cgroups); cocoon and runc run in the host's hybrid "
                   "layout, where they also manage the cgroup2 hierarchy (--private-ns crun)")
    log(f"bench: {ns_note}")
    notes = [ns_note]  # kept for the run section, as before

    # cocoon runs from a copy taken now: a rebuild of the tree during the
    # bench (make, another checkout's build) cannot break or change it.
    src_cocoon, cocoon = cocoon, tmp / "cocoon"
    shutil.copy2(src_cocoon, cocoon)
    src_stat = os.stat(src_cocoon)
    log(f"bench: cocoon runs from a copy of {src_cocoon} taken at the start ({cocoon})")

    spawn = build_spawn(tmp)
    bundles, adjustments, seccomp = build_bundles(tmp, cocoon)
    runner = _CLEAN["runner"] = Runner(tmp, spawn, bundles, holder.path, in_ns)
    log(f"bench: bundle {bundles['run']}: busybox-static rootfs, config.json from `cocoon spec` "
        f"with {', '.join(adjustments)}; the same file for every runtime")
    log(f"bench: {seccomp}")

    failures = {s: {} for s in scenarios}   # scenario -> runtime -> why

    def fail(scen, name, why):
        failures[scen][name] = why
        log(f"bench: {name}: FAILED in {scen}, excluded from {scen}: {why}")

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

    # ---------------------------------------------------------------- preflight
    # run / limits: each runtime runs a CPU-burning container that exits 7
    # (checks that the exit status is propagated and that the container's
    # CPU time shows up in the runtime's rusage), then /bin/true once.
    # limits also: a container of the limits config, inspected from the host.
    # exec: the long-running container is started; an exec of the CPU-burning
    # shell (exit 7), an exec of `sleep 1` whose parent chain is inspected,
    # then an exec of /bin/true.
    # The loop's CPU on the host: the least of 3 runs (a single one can be
    # slowed down by a cold cache or a busy machine, which would make the
    # check below fail for no reason).
    host = min((runner.run(FLOOR, argv=["/bin/busybox", "sh", "-c", spin_script()])
                for _ in range(3)), key=lambda r: r["cpu_ms"])
    acct = {s: [] for s in scenarios}
    extra = {s: [] for s in scenarios}

    def check_acct(scen, name, c, what):
        included = c["cpu_ms"] >= 0.7 * host["cpu_ms"]
        msg = (f"{name}: for {what} running a shell loop that takes {host['cpu_ms']:.0f} ms of "
               f"CPU on the host, the runtime's wait4 rusage showed {c['cpu_ms']:.0f} ms (loop + "
               f"runtime): the loop's CPU time is {'included' if included else 'NOT included'}")
        log(f"bench: [{scen}] {msg}")
        acct[scen].append(msg)
        if not included:
            warn(f"{name}: its {scen} CPU figures miss the container's CPU time")

    for scen in [s for s in scenarios if s in ("run", "limits")]:
        for name in list(runner.binaries):
            c = runner.run(name, bundle=bundles[f"{scen}-check"])
            if c["status"] != 7:
                if c["status"] == 0:
                    warn(f"{name}: [{scen}] a container exiting 7 gave exit status 0: run does not "
                         "propagate the exit status, so failed runs could pass unnoticed")
                else:
                    fail(scen, name, f"preflight (container exiting 7): {describe_failure(c)}")
                    continue
            t = runner.run(name, scen=scen)
            if t["status"] != 0:
                fail(scen, name, f"preflight run of /bin/true: {describe_failure(t)}")
                continue
            if c.get("left_state") or t.get("left_state"):
                warn(f"{name}: [{scen}] `run` left state behind in its --root: "
                     f"{c.get('left_state') or t.get('left_state')}")
            check_acct(scen, name, c, "a container")
            if scen != "limits":
                continue
            cid = runner.new_id(name) + "-limits-check"
            try:
                pid = runner.start_hold(name, runner.roots[name], bundles["limits-hold"], cid)
                got = applied_limits(pid)
            except (RuntimeError, OSError, subprocess.TimeoutExpired, ValueError) as e:
                fail(scen, name, f"preflight container of the limits config: {e}")
                continue
            finally:
                runner.stop_hold(name, runner.roots[name], cid)
                if state_entries(runner.roots[name]):
                    runner.delete_all(name, exec_root=False)
            ok = (got["memory_limit"] == str(MEM_LIMIT) and got["pids_max"] == str(PIDS_LIMIT)
                  and got["seccomp_mode"] == "2")
            msg = (f"{name}: a container of this config had, read from the host: memory limit "
                   f"{got['memory_limit']}, pids.max {got['pids_max']}, Seccomp mode "
                   f"{got['seccomp_mode']}")
            log(f"bench: [limits] {msg}")
            if not ok:
                fail(scen, name, f"the limits are not applied as configured ({msg}; expected "
                                 f"{MEM_LIMIT}, {PIDS_LIMIT}, 2)")
                continue
            extra[scen].append(msg + " (as configured)")

    if "exec" in scenarios:
        for name in list(runner.binaries):
            try:
                pid = runner.start_exec_holder(name)
            except (RuntimeError, OSError, subprocess.TimeoutExpired, ValueError) as e:
                fail("exec", name, f"could not start the long-running container: {e}")
                continue
            log(f"bench: [exec] {name}: container {runner.holders[name]} running "
                f"`{' '.join(HOLD_ARGS)}` as pid {pid}")
            rt = runner.rt(name, runner.exec_roots[name]) + ["exec", runner.holders[name]]
            c = runner.run(name, scen="exec", argv=rt + ["/bin/sh", "-c", spin_script()])
            if c["status"] != 7:
                if c["status"] == 0:
                    warn(f"{name}: an exec exiting 7 gave exit status 0: exec does not propagate "
                         "the exit status, so failed runs could pass unnoticed")
                else:
                    fail("exec", name, f"preflight (exec exiting 7): {describe_failure(c)}")
                    continue
            check_acct("exec", name, c, "an exec")
            chain, rc = runner.exec_parentage(name)
            if rc != 0:
                fail("exec", name, f"preflight exec of `/bin/sleep 1` exited {rc}")
                continue
            if chain is None:
                msg = (f"{name}: the exec'd process (`/bin/sleep 1`) was NOT found among the "
                       f"descendants of `{name} exec`")
                warn(msg)
            elif len(chain) == 2:
                msg = (f"{name}: the exec'd process is a direct child of the `{name} exec` "
                       f"process (its PPid while it runs): {' → '.join(chain)}")
            else:
                msg = (f"{name}: the exec'd process descends from the `{name} exec` process "
                       f"through helpers: {' → '.join(chain)}")
            log(f"bench: [exec] {msg}")
            extra["exec"].append(msg)
            t = runner.run(name, scen="exec")
            if t["status"] != 0:
                fail("exec", name, f"preflight exec of /bin/true: {describe_failure(t)}")
                continue
            if t.get("left_state"):
                warn(f"{name}: `exec` left new entries in its --root: {t['left_state']}")

    names = {s: [n for n in runner.binaries if n not in failures[s]] for s in scenarios}
    active = [s for s in scenarios if "cocoon" in names[s]]
    for s in scenarios:
        if s not in active:
            log(f"bench: [{s}] cocoon failed its preflight; nothing to compare in {s}")
        elif len(names[s]) < 2:
            log(f"bench: [{s}] no other runtime to compare cocoon with")
    if not active:
        if args.private_ns == "all":
            log(f"bench: (with --private-ns crun, cocoon and runc run in the host's cgroup layout, "
                f"with {UNIFIED} mounted)")
        return 1

    # ---------------------------------------------------------------- rounds
    floor_home = None if args.no_floor else ("run" if "run" in active else active[0])
    orders = {s: names[s] + ([FLOOR] if s == floor_home else []) for s in active}
    recs = []
    total = args.warmup + args.runs
    log(f"bench: {args.warmup} warm-up + {args.runs} measured rounds; each round: "
        + "; ".join(f"{s}: {', '.join(orders[s])}" for s in active)
        + " (round-robin; starting scenario and starting runtime rotate)")
    for rnd in range(total):
        for scen in rotate(active, rnd):
            for name in rotate(orders[scen], rnd):
                if name in failures[scen]:
                    continue
                r = runner.run(name, scen=scen)
                r["round"] = rnd - args.warmup
                r["scenario"] = scen
                if r["status"] != 0:
                    fail(scen, name, f"{'exec in ' if scen == 'exec' else 'run '}{r['id']}: "
                                     f"{describe_failure(r)}")
                    continue
                if r.get("left_state"):
                    fail(scen, name, f"{r['id']} left state behind: {r['left_state']}")
                    continue
                if rnd >= args.warmup:
                    r.pop("output", None)
                    recs.append(r)
        if (rnd + 1) % 50 == 0 or rnd + 1 == total:
            log(f"bench: round {rnd + 1}/{total}")
    for s in active:
        names[s] = [n for n in names[s] if n not in failures[s]]
        orders[s] = [n for n in orders[s] if n not in failures[s]]

    own_hwm = {s: {} for s in active}
    if args.rss_runs > 0:
        for scen in active:
            for name in names[scen]:
                vals = []
                for _ in range(args.rss_runs):
                    r = runner.run(name, trace=True, scen=scen)
                    if r["status"] != 0:
                        warn(f"{name}: [{scen}] a run under ptrace (own HWM) failed: "
                             f"{describe_failure(r)}")
                    elif r.get("own_hwm_kb", -1) > 0:
                        vals.append(r["own_hwm_kb"])
                if vals:
                    own_hwm[scen][name] = vals
                else:
                    warn(f"{name}: [{scen}] could not read its own VmHWM under ptrace")

    hf = {s: {} for s in active}
    if args.hyperfine_runs > 0:
        log(f"bench: hyperfine cross-check, {args.hyperfine_runs} runs each")
        for scen in active:
            if names[scen]:
                hf[scen] = run_hyperfine(runner, names[scen], args.hyperfine_runs,
                                         min(3, args.warmup), tmp, scen=scen)

    # The long-running containers go before the leak check.
    if runner.holders:
        running = {}
        for name, cid in runner.holders.items():
            try:
                running[name] = runner.state(name, runner.exec_roots[name], cid).get("status")
            except (RuntimeError, ValueError, subprocess.TimeoutExpired) as e:
                running[name] = f"? ({e})"
        odd = {n: st for n, st in running.items() if st != "running"}
        if odd:
            warn(f"exec containers not running at the end of the measurement: {odd}")
        runner.stop_exec_holders()
        log("bench: [exec] long-running containers killed and deleted")

    leaked = runner.leaked_cgroups()
    if leaked:
        warn(f"cgroup directories left behind: {', '.join(leaked[:10])}"
             + (" ..." if len(leaked) > 10 else ""))

    try:
        st = os.stat(src_cocoon)
        if (st.st_mtime_ns, st.st_size) != (src_stat.st_mtime_ns, src_stat.st_size):
            warn(f"{src_cocoon} changed during the bench (rebuilt?); the figures are those of "
                 "the copy taken at the start")
    except OSError:
        warn(f"{src_cocoon} disappeared during the bench; the figures are those of the copy "
             "taken at the start")
    meta["loadavg_end"] = loadavg()
    meta["seconds"] = round(time.time() - t_start, 1)
    floor_recs = [r for r in recs if r["runtime"] == FLOOR]
    results = {}
    for scen in active:
        stats = {n: summarize([r for r in recs if r["runtime"] == n and r["scenario"] == scen])
                 for n in names[scen] if n != FLOOR}
        if floor_recs:
            stats[FLOOR] = summarize(floor_recs)
        stats = {n: st for n, st in stats.items() if st["n"] > 0}
        order = names[scen] + ([FLOOR] if floor_recs else [])
        tgt = targets(stats, own_hwm[scen], scen)
        print_report(stats, order, own_hwm[scen], hf[scen], tgt, scen)
        sn = scenario_notes(scen, args, notes, adjustments, seccomp, acct[scen], extra[scen],
                            floor_home)
        if leaked:
            sn.append(f"cgroup directories left behind by some runtime: {len(leaked)}")
        results[scen] = {"order": order, "stats": stats, "targets": tgt, "notes": sn}

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "meta": meta,
        "scenarios": {s: {"notes": r["notes"], "failures": failures[s], "stats": r["stats"],
                          "targets": [{"target": t, "measured": m, "met": ok}
                                      for t, m, ok in r["targets"]],
                          "own_hwm_kb": own_hwm[s], "hyperfine": hf[s]}
                      for s, r in results.items()},
        "failures": failures,
        "runs": recs}, indent=1) + "\n")
    log(f"\nbench: raw results in {RESULTS.relative_to(REPO)}")

    # A section is rewritten only if cocoon has figures in it; otherwise the
    # previous figures stay (and the exit status says something failed).
    written = {s: r for s, r in results.items() if "cocoon" in r["stats"]}
    if not args.no_write and written:
        for scen, r in written.items():
            write_spec(spec_section(meta, r["stats"], r["order"], own_hwm[scen], hf[scen],
                                    r["targets"], r["notes"], failures[scen], scen), scen)
        write_plot([r for r in recs if r["scenario"] in written or r["runtime"] == FLOOR],
                   {s: r["order"] for s, r in written.items()}, meta)
        log(f"bench: wrote the {', '.join(written)} section(s) of {SPEC_MD.relative_to(REPO)} "
            f"and {PLOT.relative_to(REPO)}")
    if not args.no_write:
        for s in scenarios:
            if s not in written:
                log(f"bench: the {s} section of {SPEC_MD.relative_to(REPO)} was left as it was "
                    "(cocoon failed in it)")

    bad = False
    for s in scenarios:
        for name, why in failures[s].items():
            log(f"bench: [{s}] {name} excluded: {why.splitlines()[0]}")
            bad = True
        if "crun" in failures[s]:
            log(f"bench: [{s}] crun failed, so the targets (relative to crun) cannot be checked")
        if s not in results:
            bad = True
        elif len(results[s]["stats"]) - (FLOOR in results[s]["stats"]) < 2:
            bad = True
    # Any installed runtime that failed leaves a comparison undone.
    return 1 if bad else 0


def scenario_notes(scen, args, ns_notes, adjustments, seccomp, acct, extra, floor_home):
    floor_note = (f"{FLOOR}: `/bin/busybox true` on the host through the same launcher (no "
                  f"runtime), interleaved with the {floor_home} scenario"
                  + ("" if floor_home == scen else "; the same row in every section"))
    rss_note = ("peak RSS (tree): ru_maxrss of that wait4(): the largest peak RSS of any one "
                "process in the tree; the container's /bin/true is busybox, so it is a floor (see "
                "the floor row); own HWM: VmHWM of the runtime process itself at exit, read "
                f"under ptrace in {args.rss_runs} separate runs")
    wall = "wall: CLOCK_MONOTONIC from before fork() to after wait4() (includes exec of the runtime)"
    bundle = ("bundle: busybox-static rootfs; config.json from `cocoon spec` (which follows `runc "
              f"spec`) with {', '.join(adjustments)}; {seccomp}; the same file for every runtime; "
              "no other change was needed for runc or crun")
    tmpfs = "every runtime's --root is on a tmpfs (as /run is on a normal host)"
    if scen == "run":
        out = ns_notes + [tmpfs, bundle,
            "each run: a static C launcher (bench/spawn.c) forks, execs "
            "`RUNTIME --root STATE run --bundle BUNDLE ID` (fresh id every run, own state dir per "
            "runtime) and wait4()s; every run must exit 0 and leave its state dir empty",
            wall,
            "CPU: ru_utime + ru_stime of that wait4(): the runtime process and every descendant "
            "reaped within the tree, including the container's /bin/true",
            rss_note]
    elif scen == "limits":
        out = ns_notes + [tmpfs,
            f"bundle: the rootfs and config.json of the `run` section plus "
            f"linux.resources.memory.limit = {MEM_LIMIT} (64 MiB) and linux.resources.pids.limit "
            f"= {PIDS_LIMIT}; {seccomp} (kept); the same file for every runtime",
            "preflight: each runtime started a container of this config running "
            f"`{' '.join(HOLD_ARGS)}`; its memory limit, pids.max and Seccomp mode were read "
            "from the host (cgroup files of /proc/PID/cgroup, /proc/PID/status); a runtime that "
            "rejects the config or does not apply it is excluded",
            "each run: the launcher (bench/spawn.c) forks, execs "
            "`RUNTIME --root STATE run --bundle BUNDLE-LIMITS ID` (fresh id every run) and "
            "wait4()s; every run must exit 0 and leave its state dir empty",
            wall,
            "CPU: ru_utime + ru_stime of that wait4(): the runtime process and every descendant "
            "reaped within the tree, including the container's /bin/true",
            rss_note] + extra
    else:
        out = ns_notes + [tmpfs,
            "before the measurement, each runtime `create`s and `start`s one container in its own "
            "state dir from the `run` section's bundle and config.json with process.args = "
            f"{json.dumps(HOLD_ARGS)} (so also {seccomp}); it keeps running through all rounds "
            "and is killed (SIGKILL) and deleted (`delete --force`) at the end, also on "
            "interrupt",
            "each run: the launcher (bench/spawn.c) forks, execs "
            "`RUNTIME --root STATE exec ID /bin/true` (no other option: the process settings — "
            "capabilities, seccomp, no_new_privs, env — come from the container's config) and "
            "wait4()s; every exec must exit 0",
            "wall: CLOCK_MONOTONIC from before fork() to after wait4() of the exec command: exec "
            "of the runtime, reading the container's state, joining its namespaces and cgroups, "
            "starting /bin/true, waiting for it and reaping it",
            "CPU: ru_utime + ru_stime of that wait4(): the runtime's exec process and every "
            "descendant reaped within the tree — its helper processes and the exec'd /bin/true "
            "wherever that is a descendant of the exec command (the parentage check below says "
            "for which runtimes; the CPU check below confirms it); the container's long-running "
            "process is not part of it",
            rss_note] + extra
    return out + [floor_note,
                  "cocoon runs from a copy of its binary taken at the start of the bench (a "
                  "rebuild during the bench cannot change what is measured)",
                  "runs interleaved round-robin: each round measures every selected scenario "
                  "(the starting scenario rotates) and, within a scenario, every runtime (the "
                  "starting runtime rotates); ratios are of medians"] + acct


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""`cocoon attach` against nsenter, side by side.

    /usr/bin/python3 bench/attach.py --cocoon build/src/cocoon [--runs 60]

One busybox container (a `cocoon spec` bundle running `sleep`) whose rootfs
holds a generated tree under /data (--files files in 50 directories). Then,
round-robin and interleaved, each command timed wall-clock from fork to
wait (medians reported):

* true:   `cocoon attach ID -- true` (the host's /usr/bin/true in the
          container's pid/net/ipc/uts/cgroup namespaces, in a new mount
          namespace built as docs/attach.md says) against
          `nsenter -t PID -p -n -i -u -C -- /usr/bin/true` (the same
          namespaces, nothing else: no cgroup, no identity, no mounts) and
          `nsenter ... -m -- true` (also the mount namespace; the
          container's busybox true).
* ls -lnR / grep -r over /data: the same busybox binary each time, through
          /var/lib/cntr in an attach session, or natively: `cocoon exec`
          (the same seccomp filter and cgroup as the attach session: the
          fair baseline) and `nsenter -m` (neither). Each command walks the
          tree --reps times so that the reading, not the set-up, dominates.
          Each walk runs in the tree's directory (`cd /var/lib/cntr/data`,
          `cd /data`, then `ls -lnR .`), so that both sides resolve the same
          relative names in the same mount; `ls -R abs` walks by absolute
          path instead, where every file's name is three components longer
          through /var/lib/cntr (shown, not a target: that is the path's
          length, not the mount). Every read command runs with TZ=UTC0:
          glibc's localtime() with TZ unset stats /etc/localtime on each
          call, once per file for `ls -l`; that file exists among the host's
          tools (a symlink into /usr/share/zoneinfo) and not in the busybox
          rootfs, so without TZ the attach session would pay for walking the
          tools' zoneinfo path once per file, which is not reading the
          container's files.
* the same three attach commands with --fuse: the tools served by cocoon's
          FUSE server from the host (the busybox of the read commands is the
          container's, at /var/lib/cntr, in both cases; only `/` is FUSE).

Ratios are attach / nsenter. Targets (issue 6): attach+true <= 2x nsenter;
reading through /var/lib/cntr no slower than native. The machine is shared
and small: the figures are indicative.
"""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import speclib

HEADING = "## attach: cocoon attach against nsenter\n\n"

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sh(*args, **kw):
    return subprocess.run(list(args), check=True, capture_output=True, text=True, **kw)


def timed(argv):
    t = time.perf_counter()
    r = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        sys.exit(f"attach.py: {' '.join(argv)} failed ({r.returncode}): {r.stderr.decode()}")
    return dt


def make_tree(root, files):
    for d in range(50):
        dd = os.path.join(root, f"d{d:02}")
        os.makedirs(dd)
        for f in range(files // 50):
            with open(os.path.join(dd, f"f{f:04}.txt"), "w") as fh:
                fh.write(f"line {d} {f}\n" * 20 + ("needle\n" if f % 97 == 0 else ""))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cocoon", default=os.path.join(REPO, "build/src/cocoon"))
    ap.add_argument("--runs", type=int, default=60)
    ap.add_argument("--files", type=int, default=5000)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--no-spec", action="store_true", help="do not write docs/SPEC.md")
    a = ap.parse_args()
    load = os.getloadavg()
    if os.geteuid() != 0:
        sys.exit("attach.py: needs root")
    cocoon = os.path.abspath(a.cocoon)
    tmp = tempfile.mkdtemp(prefix="cocoon-attach-bench-")
    state = os.path.join(tmp, "state")
    bundle = os.path.join(tmp, "bundle")
    cid = "attach-bench"
    started = False

    def cleanup(*_):
        if started:
            subprocess.run([cocoon, "--root", state, "delete", "--force", cid],
                           capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)

    signal.signal(signal.SIGTERM, lambda *_: (cleanup(), sys.exit(1)))
    try:
        sh(os.path.join(REPO, "examples/busybox/make-bundle.sh"), bundle, cocoon)
        with open(os.path.join(bundle, "config.json")) as f:
            cfg = json.load(f)
        cfg["process"]["args"] = ["sleep", "100000"]
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(cfg, f)
        make_tree(os.path.join(bundle, "rootfs", "data"), a.files)
        # not through a pipe: the container would inherit and hold it open
        started = True
        subprocess.run([cocoon, "--root", state, "run", "--detach", "--bundle", bundle, cid],
                       check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        pid = json.loads(sh(cocoon, "--root", state, "state", cid).stdout)["pid"]
        att = [cocoon, "--root", state, "attach", cid, "--"]
        fuse = [cocoon, "--root", state, "attach", "--fuse", cid, "--"]
        ns = ["nsenter", "-t", str(pid), "-p", "-n", "-i", "-u", "-C", "--"]
        nsm = ["nsenter", "-t", str(pid), "-m", "-p", "-n", "-i", "-u", "-C", "--"]
        ex = [cocoon, "--root", state, "exec", cid]
        bb = "/var/lib/cntr/bin/busybox"
        cntr = "/var/lib/cntr/data"

        def walk(busybox, where, cmd, path="."):
            # TZ set: without it, every localtime() of `ls -l` stats /etc/localtime,
            # which the tools have and the busybox rootfs has not (see the docstring)
            return (f"export TZ=UTC0; cd {where} && i=0; while [ $i -lt {a.reps} ]; do "
                    f"{busybox} {cmd} {path} >/dev/null; i=$((i+1)); done")

        ls, grep = "ls -lnR", "grep -rc needle"
        cases = {
            "attach true": att + ["/usr/bin/true"],
            "nsenter true": ns + ["/usr/bin/true"],
            "nsenter -m true": nsm + ["/bin/true"],
            "attach ls -R": att + [bb, "sh", "-c", walk(bb, cntr, ls)],
            "native ls -R": nsm + ["/bin/sh", "-c", walk("/bin/busybox", "/data", ls)],
            "attach grep -r": att + [bb, "sh", "-c", walk(bb, cntr, grep)],
            "native grep -r": nsm + ["/bin/sh", "-c", walk("/bin/busybox", "/data", grep)],
            "exec ls -R": ex + ["/bin/sh", "-c", walk("/bin/busybox", "/data", ls)],
            "exec grep -r": ex + ["/bin/sh", "-c", walk("/bin/busybox", "/data", grep)],
            "attach ls -R abs": att + [bb, "sh", "-c", walk(bb, "/", ls, cntr)],
            "exec ls -R abs": ex + ["/bin/sh", "-c", walk("/bin/busybox", "/", ls, "/data")],
            "fuse true": fuse + ["/usr/bin/true"],
            "fuse ls -R": fuse + [bb, "sh", "-c", walk(bb, cntr, ls)],
            "fuse grep -r": fuse + [bb, "sh", "-c", walk(bb, cntr, grep)],
        }
        for argv in cases.values():  # warm-up (page cache, seccomp cache)
            for _ in range(3):
                timed(argv)
        times = {k: [] for k in cases}
        names = list(cases)
        for r in range(a.runs):
            for k in names[r % len(names):] + names[:r % len(names)]:
                times[k].append(timed(cases[k]))
        out = []

        def emit(line=""):
            print(line)
            out.append(line)

        med = {k: statistics.median(v) * 1000 for k, v in times.items()}
        emit(f"cocoon attach vs nsenter ({a.runs} interleaved runs, medians; "
             f"{a.files} files, {a.reps} walks per read command)")
        emit()
        emit(f"{'command':<18} {'median ms':>10} {'min ms':>8}")
        for k in names:
            emit(f"{k:<18} {med[k]:>10.2f} {min(times[k]) * 1000:>8.2f}")
        r_true = med["attach true"] / med["nsenter true"]
        r_true_m = med["attach true"] / med["nsenter -m true"]
        r_ls = med["attach ls -R"] / med["native ls -R"]
        r_grep = med["attach grep -r"] / med["native grep -r"]
        e_ls = med["attach ls -R"] / med["exec ls -R"]
        e_grep = med["attach grep -r"] / med["exec grep -r"]
        emit()
        emit(f"attach+true / nsenter+true (same namespaces): {r_true:.2f}x  (target <= 2x)")
        emit(f"attach+true / nsenter -m + true:              {r_true_m:.2f}x")
        emit(f"ls -R via /var/lib/cntr / cocoon exec:        {e_ls:.2f}x  (target <= 1x + noise)")
        emit(f"grep -r via /var/lib/cntr / cocoon exec:      {e_grep:.2f}x  (target <= 1x + noise)")
        emit(f"ls -R, absolute paths / cocoon exec:          "
             f"{med['attach ls -R abs'] / med['exec ls -R abs']:.2f}x  (3 more path components)")
        emit(f"ls -R via /var/lib/cntr / nsenter -m:         {r_ls:.2f}x")
        emit(f"grep -r via /var/lib/cntr / nsenter -m:       {r_grep:.2f}x")
        fuse_ratios = (("--fuse attach+true / nsenter+true:", "fuse true", "nsenter true"),
                       ("--fuse ls -R / cocoon exec:", "fuse ls -R", "exec ls -R"),
                       ("--fuse grep -r / cocoon exec:", "fuse grep -r", "exec grep -r"))
        for label, num, den in fuse_ratios:
            emit(f"{label:<46}{med[num] / med[den]:.2f}x")
        emit("(attach and exec run under the container's seccomp filter and in its cgroup;")
        emit(" nsenter under neither)")
        end = os.getloadavg()
        measured = (f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} CPUs, load "
                    f"average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the start, "
                    f"{end[0]:.2f} {end[1]:.2f} {end[2]:.2f} at the end; `/usr/bin/python3 "
                    f"bench/attach.py {' '.join(sys.argv[1:])}` (part of `make bench`). What is "
                    "measured: see the docstring of bench/attach.py.")
        print("\n" + measured)
        if not a.no_spec:
            speclib.write_section("attach", HEADING,
                                  "```\n" + "\n".join(out) + "\n```\n\n" + measured)
            print("bench: attach: wrote docs/SPEC.md")
    finally:
        cleanup()


if __name__ == "__main__":
    main()

"""Helpers shared by the cocoon integration tests.

Every test gets its own state root (``--root``) and bundle under pytest's
tmp_path, and a unique token that is put into the environment of both the
cocoon processes it starts and the container processes (process.env), so that
leftover processes can be found by scanning /proc/*/environ.
"""
import copy
import json
import os
import re
import shutil
import subprocess
import tempfile
import time

import pytest

COCOON = os.environ.get("COCOON", "/work/main/build/src/cocoon")
TIMEOUT = 20  # seconds; only to avoid hangs, never asserted on
TOKEN_VAR = "COCOON_TEST_TOKEN"

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, mounts)")


def wait_for(pred, what, timeout=TIMEOUT, interval=0.02):
    """Poll pred() until it returns something truthy; fail after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def wait_line(path, what=None):
    """Wait until path holds at least one complete line (a shell's `echo x >
    f` creates f before writing to it); return the content."""
    return wait_for(lambda: (read_file(path) or "").endswith("\n") and read_file(path),
                    what or f"a line in {path}")


def read_file(path, default=None):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return default


# ---------------------------------------------------------------- processes

def _proc_state(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rindex(")") + 2]


def token_pids(token, include_zombies=False):
    """Live processes whose environment carries this test's token."""
    needle = f"{TOKEN_VAR}={token}".encode()
    found = []
    me = os.getpid()
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == me:
            continue
        try:
            with open(f"/proc/{d}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        if needle not in env.split(b"\0"):
            continue
        st = _proc_state(d)
        if st is None or (st in "ZX" and not include_zombies):
            continue
        found.append(int(d))
    return sorted(found)


def pid_alive(pid):
    st = _proc_state(pid)
    return st is not None and st not in "ZX"


def proc_status_field(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return line.split(":", 1)[1].strip()
    return None


# ---------------------------------------------------------------- mounts

def _unescape(s):
    return (s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n")
            .replace("\\134", "\\"))


def mount_snapshot(*prefixes):
    """(mountpoint, fstype) of host mounts at or under any of prefixes."""
    res = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            mp = _unescape(fields[4])
            fstype = fields[fields.index("-") + 1]
            for p in prefixes:
                p = str(p).rstrip("/") or "/"
                if mp == p or mp.startswith(p + "/"):
                    res.append((mp, fstype))
                    break
    return sorted(res)


# ---------------------------------------------------------------- cgroups

CGROUP_ROOT = "/sys/fs/cgroup"


DEFAULT_ROOT = "/run/cocoon"


def _hierarchies():
    """Directories of the cgroup hierarchies ("" for a pure v2 host)."""
    try:
        with open("/proc/self/mountinfo") as f:
            kinds = {l.split(" - ")[1].split()[0] for l in f
                     if l.split()[4] == CGROUP_ROOT}
    except OSError:
        return []
    if "cgroup2" in kinds:
        return [CGROUP_ROOT]
    try:
        return [os.path.join(CGROUP_ROOT, h) for h in sorted(os.listdir(CGROUP_ROOT))
                if os.path.isdir(os.path.join(CGROUP_ROOT, h))]
    except OSError:
        return []


HIERARCHIES = _hierarchies()


def default_cgroup(root, cid):
    """cocoon's default cgroup (relative to each hierarchy) of container cid
    in state root `root`: `cocoon@<id>` for the default root, else
    `cocoon-<FNV-1a of the --root string>@<id>` (mirrors
    src/runtime/container.c; ids from different roots must not meet)."""
    root = str(root)
    if root == DEFAULT_ROOT:
        return f"cocoon@{cid}"
    h = 2166136261
    for c in root.encode():
        h = ((h ^ c) * 16777619) & 0xFFFFFFFF
    return f"cocoon-{h:08x}@{cid}"


def cgroup_dirs(cid, roots=()):
    """Existing cgroup directories of container cid at cocoon's default
    cgroup path for the given state roots (and the default root), in every
    hierarchy."""
    if not re.fullmatch(r"[A-Za-z0-9_.+-]{1,1024}", cid) or cid in (".", ".."):
        return []  # not a valid id: cocoon never made a cgroup for it
    rels = {default_cgroup(r, cid) for r in (DEFAULT_ROOT, *roots)}
    return sorted(d for h in HIERARCHIES for rel in rels
                  for d in [os.path.join(h, rel)] if os.path.isdir(d))


# ---------------------------------------------------------------- cocoon

class Result:
    def __init__(self, args, rc, out, err):
        self.args, self.rc, self.out, self.err = args, rc, out, err

    @property
    def err_lines(self):
        return [l for l in self.err.splitlines() if l.strip()]

    def __repr__(self):
        return (f"Result(args={self.args!r}, rc={self.rc}, stdout={self.out!r}, "
                f"stderr={self.err!r})")


class Cocoon:
    """Runs the cocoon binary with a private --root and the test token."""

    def __init__(self, root, token):
        self.root = str(root)
        self.token = token
        self.env = dict(os.environ)
        self.env[TOKEN_VAR] = token
        self.ids = set()  # every id passed to create/run
        self.roots = {self.root}  # every --root used

    def id(self, name):
        """A container id unique to this test (and machine-wide), so that
        suites running at the same time never meet, whatever cocoon derives
        from the id (cgroup names), and leftovers can be attributed."""
        return f"{name}-{self.token[:8]}"

    def argv(self, args, glob=(), with_root=True):
        pre = ["--root", self.root] if with_root else []
        g = [str(x) for x in glob]
        for i, a in enumerate(g[:-1]):
            if a == "--root":
                self.roots.add(g[i + 1])
        if args and args[0] in ("create", "run"):
            self.ids.add(str(args[-1]))
        return [COCOON, *pre, *glob, *[str(a) for a in args]]

    def __call__(self, *args, glob=(), with_root=True, timeout=TIMEOUT, stdin=None,
                 stdout=None, stderr=None, env=None):
        """Run cocoon; stdout/stderr go to temp files (not pipes: a created
        container inherits them and would keep a pipe open)."""
        argv = self.argv(args, glob, with_root)
        with tempfile.TemporaryFile() as o, tempfile.TemporaryFile() as e:
            p = subprocess.run(argv, stdin=stdin if stdin is not None else subprocess.DEVNULL,
                               stdout=stdout or o, stderr=stderr or e, timeout=timeout,
                               env=env or self.env)
            o.seek(0)
            e.seek(0)
            return Result(argv, p.returncode, o.read().decode(errors="replace"),
                          e.read().decode(errors="replace"))

    def popen(self, *args, glob=(), **kw):
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("env", self.env)
        return subprocess.Popen(self.argv(args, glob), **kw)

    def ok(self, *args, **kw):
        r = self(*args, **kw)
        assert r.rc == 0, r
        return r

    def fail(self, *args, expect=(), **kw):
        """Expect a clean failure: exit 1, exactly one `cocoon: ...` line on
        stderr that mentions every string in expect."""
        r = self(*args, **kw)
        assert_one_error(r, expect)
        return r

    # --- lifecycle shortcuts
    def create(self, cid, bundle, *extra, **kw):
        bundle.save()
        return self("create", "--bundle", bundle.path, *extra, cid, **kw)

    def run(self, cid, bundle, *extra, **kw):
        bundle.save()
        return self("run", "--bundle", bundle.path, *extra, cid, **kw)

    def state(self, cid):
        r = self.ok("state", cid)
        return json.loads(r.out)

    def status(self, cid):
        return self.state(cid)["status"]

    def wait_status(self, cid, status):
        return wait_for(lambda: self.status(cid) == status, f"{cid} to be {status}")

    def state_dirs(self):
        """Everything under --root but cocoon's caches (.seccomp: compiled
        filters; .vm: the guest initramfs and host probe), which outlive
        containers on purpose."""
        try:
            return sorted(e for e in os.listdir(self.root) if e not in (".seccomp", ".vm"))
        except FileNotFoundError:
            return []

    def cleanup(self):
        for cid in self.state_dirs():
            try:
                self("delete", "--force", cid)
            except subprocess.TimeoutExpired:
                pass
        for pid in token_pids(self.token):
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        # cgroups of containers a failed test left (e.g. in another --root)
        dirs = [d for cid in self.ids for d in cgroup_dirs(cid, self.roots)]
        for d in dirs:
            try:
                wait_for(lambda: _try_rmdir(d), f"rmdir {d}", timeout=5)
            except AssertionError:
                pass


def _try_rmdir(d):
    try:
        os.rmdir(d)
    except FileNotFoundError:
        pass
    except OSError:
        return False
    return True


def assert_one_error(r, expect=()):
    if isinstance(expect, str):
        expect = (expect,)
    assert r.rc == 1, r
    lines = r.err_lines
    assert len(lines) == 1, f"expected exactly one error line, got {len(lines)}: {r}"
    assert lines[0].startswith("cocoon: "), r
    for s in expect:
        assert s in lines[0], f"error line does not mention {s!r}: {lines[0]!r}"


# ---------------------------------------------------------------- bundles

class Bundle:
    """A bundle dir with a config.json (self.config, written by save())."""

    def __init__(self, path, config, rootfs):
        self.path = str(path)
        self.config = config
        self.rootfs = str(rootfs)  # the real rootfs directory (a copy or the shared one)

    @property
    def process(self):
        return self.config["process"]

    @property
    def linux(self):
        return self.config["linux"]

    def args(self, *args):
        self.process["args"] = list(args)
        return self

    def sh(self, script):
        return self.args("sh", "-c", script)

    def add_mount(self, destination, type_, source, options=None):
        m = {"destination": destination, "type": type_, "source": str(source)}
        if options is not None:
            m["options"] = list(options)
        self.config.setdefault("mounts", []).append(m)
        return m

    def bind(self, source, destination, options=("rbind",)):
        return self.add_mount(destination, "bind", source, list(options))

    def namespaces(self):
        return [n["type"] for n in self.linux.get("namespaces", [])]

    def drop_namespace(self, t):
        self.linux["namespaces"] = [n for n in self.linux["namespaces"] if n["type"] != t]

    def set_namespace(self, t, path=None):
        self.drop_namespace(t)
        n = {"type": t}
        if path:
            n["path"] = path
        self.linux["namespaces"].append(n)

    def save(self):
        with open(os.path.join(self.path, "config.json"), "w") as f:
            json.dump(self.config, f, indent=2)


def new_bundle(path, template, base_rootfs, token, copy_rootfs=False):
    os.makedirs(path, exist_ok=True)
    rootfs = os.path.join(path, "rootfs")
    if copy_rootfs:
        subprocess.run(["cp", "-a", base_rootfs, rootfs], check=True, timeout=TIMEOUT)
        real = rootfs
    else:
        os.symlink(base_rootfs, rootfs)
        real = base_rootfs
    cfg = copy.deepcopy(template)
    cfg["process"]["terminal"] = False
    cfg["process"]["env"] = [e for e in cfg["process"].get("env", [])] + [f"{TOKEN_VAR}={token}"]
    cfg["process"]["args"] = ["true"]
    b = Bundle(path, cfg, real)
    b.save()
    return b


def rmtree(path):
    shutil.rmtree(path, ignore_errors=True)

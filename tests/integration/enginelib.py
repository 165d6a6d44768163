"""Helpers for test_engines, test_security, test_resources and
test_exec_hooks (on top of cocoonlib and the fixtures of conftest).

Nothing here is timed: every wait is a bounded poll (cocoonlib.wait_for) and
every subprocess has a timeout, only to avoid hangs.
"""
import contextlib
import fcntl
import glob
import hashlib
import json
import os
import platform
import pty
import select
import shutil
import signal
import struct
import subprocess
import tempfile
import termios
import time

from cocoonlib import (COCOON, TIMEOUT, Cocoon, new_bundle, read_file, rmtree,
                       wait_for)

ENGINE_TIMEOUT = 60  # seconds, for every podman / ctr call (never asserted on)
CGROUP_ROOT = "/sys/fs/cgroup"
DEFAULT_STATE_ROOT = "/run/cocoon"


# ---------------------------------------------------------------- running things

def run_in(cocoon, bundle, script, name="in", rc=0):
    """`cocoon run` sh -c script in a fresh container; assert its exit status
    and that nothing of it is left in the state root; return the Result."""
    bundle.sh(script)
    r = cocoon.run(cocoon.id(name), bundle)
    assert r.rc == rc, r
    assert cocoon.state_dirs() == [], f"state left behind: {cocoon.state_dirs()}"
    return r


def caps_from_status(text):
    """{'CapEff': int, ...} from the Cap* lines of a /proc/PID/status text."""
    return {l.split()[0].rstrip(":"): int(l.split()[1], 16)
            for l in text.splitlines() if l.startswith("Cap")}


# Capability numbers (linux/capability.h) used by the tests.
CAP = {"CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_FOWNER": 3, "CAP_KILL": 5,
       "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_NET_BIND_SERVICE": 10, "CAP_NET_RAW": 13,
       "CAP_SYS_CHROOT": 18, "CAP_SYS_PTRACE": 19, "CAP_SYS_ADMIN": 21,
       "CAP_SYS_RESOURCE": 24, "CAP_AUDIT_WRITE": 29}


def cap_mask(*names):
    m = 0
    for n in names:
        m |= 1 << CAP[n]
    return m


def have_cap(name):
    """Whether this (test) process has capability `name` in its effective set."""
    with open("/proc/self/status") as f:
        caps = caps_from_status(f.read())
    return bool(caps.get("CapEff", 0) & (1 << CAP[name]))


class CocoonWith(Cocoon):
    """A Cocoon runner that uses another cocoon binary (a copy in tmp, for
    tests that let a container attack the runtime binary)."""

    def __init__(self, binary, root, token):
        super().__init__(root, token)
        self.binary = str(binary)

    def argv(self, args, glob=(), with_root=True):
        a = super().argv(args, glob, with_root)
        a[0] = self.binary
        return a


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


def run_in_pty(argv, env=None, rows=33, cols=111, timeout=TIMEOUT, cwd=None):
    """Run argv with a new pty as its controlling terminal and stdio (window
    size rows x cols, set before exec). Returns (exit status, output bytes)."""
    pid, fd = pty.fork()
    if pid == 0:  # child: stdio is the pty slave
        try:
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
            if cwd:
                os.chdir(cwd)
            os.execve(argv[0], argv, env if env is not None else os.environ)
        finally:
            os._exit(127)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while True:
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise AssertionError(f"{argv} did not finish within {timeout}s: {out!r}")
            if not select.select([fd], [], [], 0.5)[0]:
                continue
            try:
                data = os.read(fd, 4096)
            except OSError:  # EIO: no slave side left
                break
            if not data:
                break
            out += data
    finally:
        os.close(fd)
    _, st = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(st), out


# ---------------------------------------------------------------- public dirs

@contextlib.contextmanager
def public_directory():
    """A directory in /tmp that any uid can traverse (pytest's tmp dirs are
    0700: a user namespace's root, mapped to an unprivileged host uid, could
    not reach a bundle or bind source in them)."""
    d = tempfile.mkdtemp(prefix="cocoon-pub-", dir="/tmp")
    os.chmod(d, 0o755)
    try:
        yield d
    finally:
        rmtree(d)


def public_bundle(public_dir, base, token, name="bundle"):
    """A bundle with its own rootfs copy in public_dir."""
    return new_bundle(os.path.join(public_dir, name), base["config"], base["rootfs"], token,
                      copy_rootfs=True)


# ---------------------------------------------------------------- cgroups

def cgroup_mounts():
    """{name: mount dir} of the cgroup hierarchies mounted under
    /sys/fs/cgroup ("" for a cgroup2 mount at /sys/fs/cgroup itself)."""
    res = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            fstype = fields[fields.index("-") + 1]
            mp = fields[4]
            if fstype not in ("cgroup", "cgroup2"):
                continue
            if mp == CGROUP_ROOT:
                res[""] = mp
            elif os.path.dirname(mp) == CGROUP_ROOT:
                res[os.path.basename(mp)] = mp
    return res


def cgroup_dirs_of(rel):
    """{hierarchy: dir} of cgroup path `rel` in every hierarchy (existing or not)."""
    rel = rel.lstrip("/")
    return {name: os.path.join(mp, rel) for name, mp in cgroup_mounts().items()}


def existing_cgroup_dirs(rel):
    return sorted(d for d in cgroup_dirs_of(rel).values() if os.path.isdir(d))


def controller_dir(ctrl, rel):
    """The directory of cgroup `rel` that holds controller `ctrl` (v1:
    possibly co-mounted as "cpu,cpuacct"; v2: the unified one), or None."""
    mounts = cgroup_mounts()
    for name, mp in mounts.items():
        if ctrl in name.split(","):
            return os.path.join(mp, rel.lstrip("/"))
    for name, mp in mounts.items():
        controllers = read_file(os.path.join(mp, "cgroup.controllers"))
        if controllers is not None and ctrl in controllers.split():
            return os.path.join(mp, rel.lstrip("/"))
    return None


def cgroup_file(ctrl, rel, name):
    d = controller_dir(ctrl, rel)
    if d is None:
        return None
    v = read_file(os.path.join(d, name))
    return v.strip() if v is not None else None


def proc_cgroups(pid):
    """{hierarchy line prefix ("4:memory", "0:"): path} of /proc/PID/cgroup."""
    res = {}
    for line in (read_file(f"/proc/{pid}/cgroup") or "").splitlines():
        hid, ctrls, path = line.split(":", 2)
        res[f"{hid}:{ctrls}"] = path
    return res


def rmdir_quiet(path):
    try:
        os.rmdir(path)
    except OSError:
        pass


def remove_cgroup_tree(rel):
    """Best-effort removal of the empty cgroup `rel` in every hierarchy
    (parents a test made, e.g. machine.slice)."""
    for d in cgroup_dirs_of(rel).values():
        rmdir_quiet(d)


def proc_state(pid):
    """The state letter of /proc/PID/stat (R, S, D, T, Z...), None if gone."""
    data = read_file(f"/proc/{pid}/stat")
    if data is None:
        return None
    return data[data.rindex(")") + 2]


# ---------------------------------------------------------------- hooks

HOOK_SCRIPT = r"""#!/bin/sh
# usage: hook.sh KIND LOG [DELAY]
# Appends "=== KIND COMM" and the state JSON from stdin to LOG, where COMM is
# the command name of the state's pid at the time the hook runs.
input=$(cat)
pid=$(printf '%s\n' "$input" | sed -n 's/.*"pid": *\([0-9][0-9]*\).*/\1/p' | head -n 1)
comm=$(cat "/proc/$pid/comm" 2>/dev/null)
[ -n "$3" ] && sleep "$3"
printf '=== %s %s\n%s\n' "$1" "${comm:--}" "$input" >> "$2"
"""

HOOK_ENV = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]


def write_hook_script(directory, name="hook.sh"):
    path = os.path.join(str(directory), name)
    with open(path, "w") as f:
        f.write(HOOK_SCRIPT)
    os.chmod(path, 0o755)
    return path


def hook_entry(script, kind, log, delay=None, timeout=None):
    args = ["hook.sh", kind, str(log)] + ([str(delay)] if delay is not None else [])
    h = {"path": str(script), "args": args, "env": list(HOOK_ENV)}
    if timeout is not None:
        h["timeout"] = timeout
    return h


def parse_hook_log(text):
    """[(kind, comm, state dict)] in the order the hooks wrote them."""
    entries = []
    for block in ("\n" + (text or "")).split("\n=== ")[1:]:
        head, _, body = block.partition("\n")
        kind, _, comm = head.partition(" ")
        entries.append((kind, comm, json.loads(body)))
    return entries


# ---------------------------------------------------------------- images

def goarch():
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386",
            "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}.get(m, m)


def make_rootfs_tar(rootfs, out):
    subprocess.run(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(out), "."],
                   check=True, timeout=ENGINE_TIMEOUT, capture_output=True)
    return out


def make_oci_archive(rootfs, out, tag="busybox"):
    """An OCI image layout tarball (what `podman save --format oci-archive`
    writes) of one uncompressed layer holding rootfs; `ctr image import
    --base-name NAME` imports it as NAME:tag."""
    with tempfile.TemporaryDirectory() as d:
        blobs = os.path.join(d, "blobs", "sha256")
        os.makedirs(blobs)

        def add_blob(data):
            digest = hashlib.sha256(data).hexdigest()
            with open(os.path.join(blobs, digest), "wb") as f:
                f.write(data)
            return {"digest": f"sha256:{digest}", "size": len(data)}

        layer_path = os.path.join(d, "layer.tar")
        make_rootfs_tar(rootfs, layer_path)
        with open(layer_path, "rb") as f:
            layer = add_blob(f.read())
        os.unlink(layer_path)
        config = add_blob(json.dumps({
            "architecture": goarch(), "os": "linux",
            "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                       "Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]},
        }).encode())
        manifest = add_blob(json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **layer}],
        }).encode())
        with open(os.path.join(d, "index.json"), "w") as f:
            json.dump({"schemaVersion": 2, "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json", **manifest,
                "annotations": {"org.opencontainers.image.ref.name": tag}}]}, f)
        with open(os.path.join(d, "oci-layout"), "w") as f:
            json.dump({"imageLayoutVersion": "1.0.0"}, f)
        subprocess.run(["tar", "-C", d, "-cf", str(out), "oci-layout", "index.json", "blobs"],
                       check=True, timeout=ENGINE_TIMEOUT, capture_output=True)
    return out


# ---------------------------------------------------------------- engines

def unmount_under(prefix):
    """Lazily unmount whatever an engine left mounted under prefix."""
    with open("/proc/self/mountinfo") as f:
        mps = [l.split()[4] for l in f]
    for mp in sorted(mps, key=len, reverse=True):
        if mp == prefix or mp.startswith(prefix.rstrip("/") + "/"):
            subprocess.run(["umount", "-l", mp], timeout=ENGINE_TIMEOUT, capture_output=True)


class Podman:
    """podman with private storage (--root/--runroot/--tmpdir in a short
    directory under /tmp: podman and conmon put unix sockets there), no
    events, cgroupfs, and cocoon as the runtime. Its containers' runtime
    state is in cocoon's default --root (podman passes no --root)."""

    def __init__(self, workdir, runtime=COCOON):
        self.workdir = workdir
        self.runtime = runtime
        self.base = ["podman", "--root", f"{workdir}/root", "--runroot", f"{workdir}/runroot",
                     "--tmpdir", f"{workdir}/tmp", "--storage-driver", "vfs",
                     "--events-backend", "none", "--cgroup-manager", "cgroupfs",
                     "--runtime", runtime]

    def __call__(self, *args, timeout=ENGINE_TIMEOUT, input=None, check=False):
        # cwd: conmon drops an `oom` file into its working directory when
        # a container is OOM-killed
        r = subprocess.run([*self.base, *map(str, args)], input=input, capture_output=True,
                           text=True, timeout=timeout, cwd=self.workdir,
                           stdin=subprocess.DEVNULL if input is None else None)
        if check:
            assert r.returncode == 0, r
        return r

    def rm_all(self):
        try:
            self("rm", "--all", "--force", "--time", "0")
        except subprocess.TimeoutExpired:
            pass


class Containerd:
    """A private containerd (own config, root, state, socket under a tmp
    dir), driven with ctr in a namespace of its own. The runc shim keeps the
    runtime's state in /run/containerd/runc/<namespace> (not configurable
    with ctr): the namespace is unique, and that directory is removed at
    stop() if empty."""

    def __init__(self, workdir, namespace):
        self.workdir = str(workdir)
        self.namespace = namespace
        self.address = os.path.join(self.workdir, "containerd.sock")
        self.config = os.path.join(self.workdir, "config.toml")
        self.log = os.path.join(self.workdir, "containerd.log")
        self.proc = None
        self._log_f = None

    def write_config(self):
        w = self.workdir
        disabled = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
                    "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp",
                    "io.containerd.internal.v1.tracing"]
        with open(self.config, "w") as f:
            f.write(f"""version = 2
root = "{w}/root"
state = "{w}/state"
disabled_plugins = {json.dumps(disabled)}
[grpc]
  address = "{self.address}"
[ttrpc]
  address = "{self.address}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "{w}/opt"
""")

    def start(self):
        self.write_config()
        self._log_f = open(self.log, "w")
        self.proc = subprocess.Popen(["containerd", "--config", self.config],
                                     stdin=subprocess.DEVNULL, stdout=self._log_f,
                                     stderr=subprocess.STDOUT, start_new_session=True)

        def up():
            if self.proc.poll() is not None:
                raise AssertionError(f"containerd exited ({self.proc.returncode}): "
                                     f"{read_file(self.log)[-2000:]}")
            if not os.path.exists(self.address):
                return False
            return self.ctr("version", timeout=10).returncode == 0

        wait_for(up, "containerd to serve its socket", timeout=ENGINE_TIMEOUT)

    def ctr(self, *args, timeout=ENGINE_TIMEOUT):
        return subprocess.run(["ctr", "--address", self.address, "--namespace", self.namespace,
                               *map(str, args)], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=timeout)

    def runtime_root(self):
        return f"/run/containerd/runc/{self.namespace}"

    def remove_task(self, cid):
        """Best effort: no task and no container `cid` left."""
        try:
            self.ctr("task", "kill", "--signal", "SIGKILL", cid, timeout=20)
            self.ctr("task", "delete", "--force", cid, timeout=20)
            self.ctr("task", "delete", cid, timeout=20)
            self.ctr("container", "delete", cid, timeout=20)
        except subprocess.TimeoutExpired:
            pass

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            try:
                for line in self.ctr("task", "list", "--quiet", timeout=20).stdout.split():
                    self.remove_task(line)
                for line in self.ctr("container", "list", "--quiet", timeout=20).stdout.split():
                    self.remove_task(line)
            except subprocess.TimeoutExpired:
                pass
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(20)
        if self._log_f:
            self._log_f.close()
        unmount_under(self.workdir)
        rmdir_quiet(self.runtime_root())
        # ctr puts containers in cgroup /<namespace>/<id>: the parent stays
        remove_cgroup_tree(self.namespace)


def tool_missing(*names):
    return [n for n in names if shutil.which(n) is None]


def glob_cgroups(pattern):
    """Existing cgroup dirs matching pattern (relative to each hierarchy)."""
    return sorted(d for mp in cgroup_mounts().values()
                  for d in glob.glob(os.path.join(mp, pattern)) if os.path.isdir(d))

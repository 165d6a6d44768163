"""cocoon under real container engines, driven as a user would: podman
(`--runtime cocoon`) and containerd (`ctr run --runc-binary cocoon`, through
the runc v2 shim). The image is the busybox rootfs of the suite's bundle.

podman keeps its storage in a private directory (--root/--runroot/--tmpdir);
containerd is a private daemon (own config, root, state, socket). Both are
started once per session. Every podman / ctr call has a 60 s timeout."""
import json
import os
import re
import tempfile
import uuid

import pytest

from cocoonlib import needs_root, pid_alive, read_file, rmtree, wait_for
from enginelib import (DEFAULT_STATE_ROOT, ENGINE_TIMEOUT, Containerd, Podman, glob_cgroups,
                       make_oci_archive, make_rootfs_tar, run_in_pty, tool_missing,
                       unmount_under)

pytestmark = needs_root

IMAGE = "localhost/cocoon-test:busybox"
# This machine has no network for containers and no CAP_SYS_RESOURCE to
# raise hard limits to podman's defaults (docs/engines.md).
RUN_OPTS = ["--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
MiB = 1024 * 1024


# ---------------------------------------------------------------- podman

@pytest.fixture(scope="session")
def podman(base, cocoon_bin, tmp_path_factory):
    missing = tool_missing("podman", "conmon")
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed (apt-get install podman)")
    tar = make_rootfs_tar(base["rootfs"], tmp_path_factory.mktemp("podman-image") / "rootfs.tar")
    # short: podman and conmon make unix sockets below it (108-byte sun_path)
    workdir = tempfile.mkdtemp(prefix="cocoon-podman-", dir="/tmp")
    p = Podman(workdir, cocoon_bin)
    try:
        r = p("import", tar, IMAGE)
        if r.returncode != 0:
            pytest.skip(f"podman cannot import an image here: {r.stderr.strip()[-500:]}")
        yield p
    finally:
        p.rm_all()
        p("rmi", "--all", "--force")
        unmount_under(workdir)
        rmtree(workdir)


@pytest.fixture
def pname(token):
    """Unique podman container names for this test."""
    return lambda what: f"cocoon-{what}-{token[:10]}"


def podman_leftovers(cid):
    """What cocoon could leave of podman container `cid`: its state dir
    (podman passes no --root) and cgroups (libpod_parent/libpod-<id>)."""
    left = [d for d in [os.path.join(DEFAULT_STATE_ROOT, cid)] if os.path.exists(d)]
    return left + glob_cgroups(f"libpod_parent/libpod-{cid}*")


def test_podman_run_output_and_exit_status(podman, tmp_path):
    cidfile = tmp_path / "cid"
    r = podman("run", "--rm", *RUN_OPTS, "--cidfile", cidfile, IMAGE,
               "sh", "-c", "echo to-out; echo to-err >&2; exit 3")
    assert r.returncode == 3, r
    assert r.stdout == "to-out\n"
    assert "to-err" in r.stderr
    cid = cidfile.read_text().strip()
    assert re.fullmatch(r"[0-9a-f]{64}", cid)
    assert podman_leftovers(cid) == []

    r = podman("run", "--rm", *RUN_OPTS, IMAGE, "true")
    assert (r.returncode, r.stdout) == (0, ""), r


def test_podman_run_sees_its_container(podman):
    r = podman("run", "--rm", *RUN_OPTS, "--hostname", "cocoonbox", "-e", "GREETING=hi", "-w",
               "/tmp", "--cgroupns", "private", IMAGE, "sh", "-c",
               "hostname; echo $GREETING; pwd; echo $$; cat /proc/self/cgroup | head -n 1")
    assert r.returncode == 0, r
    lines = r.stdout.splitlines()
    assert lines[:4] == ["cocoonbox", "hi", "/tmp", "1"], r.stdout
    assert lines[4].endswith(":/"), r.stdout  # in its own cgroup namespace


def test_podman_run_stdin(podman):
    r = podman("run", "--rm", "-i", *RUN_OPTS, IMAGE, "tr", "a-z", "A-Z",
               input="hello from stdin\n")
    assert r.returncode == 0, r
    assert r.stdout == "HELLO FROM STDIN\n"


def test_podman_detached_exec_stop_rm(podman, pname):
    name = pname("det")
    r = podman("run", "-d", "--name", name, *RUN_OPTS, IMAGE, "sh", "-c",
               "trap 'exit 0' TERM; while :; do sleep 0.1; done")
    assert r.returncode == 0, r
    cid = r.stdout.strip()
    try:
        assert podman("inspect", "-f", "{{.State.Status}}", name).stdout.strip() == "running"
        st = json.loads(read_file(os.path.join(DEFAULT_STATE_ROOT, cid, "state.json")) or "{}")
        assert st, f"no cocoon state for {cid}"

        r = podman("exec", name, "sh", "-c", "echo in-exec; echo $$; exit 5")
        assert r.returncode == 5, r
        out = r.stdout.splitlines()
        assert out[0] == "in-exec" and out[1] != "1"
        r = podman("exec", "-e", "X=y", "-w", "/tmp", "--user", "1000:1000", name, "sh", "-c",
                   "echo $X $(pwd) $(id -u)")
        assert (r.returncode, r.stdout) == (0, "y /tmp 1000\n"), r

        r = podman("stop", "-t", "2", name)
        assert r.returncode == 0, r
        assert "SIGKILL" not in r.stderr, r  # stopped by the SIGTERM
        assert podman("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}",
                      name).stdout.split() == ["exited", "0"]
        r = podman("rm", name)
        assert r.returncode == 0, r
        assert podman_leftovers(cid) == []
    finally:
        podman("rm", "-f", "-t", "0", name)


def test_podman_tty(podman):
    argv = [*podman.base, "run", "--rm", "-t", *RUN_OPTS, IMAGE, "sh", "-c",
            "tty; [ -t 0 ] && [ -t 1 ] && echo is-a-tty; exit 6"]
    rc, out = run_in_pty(["/usr/bin/env", *argv], timeout=ENGINE_TIMEOUT, cwd=podman.workdir)
    text = out.decode(errors="replace").replace("\r\n", "\n")
    assert rc == 6, text
    lines = [l for l in text.splitlines() if l.strip()]
    assert re.fullmatch(r"/dev/pts/\d+", lines[0]), text
    assert lines[1] == "is-a-tty", text


def test_podman_memory_limit(podman):
    r = podman("run", "--rm", "-m", "32m", *RUN_OPTS, IMAGE, "sh", "-c",
               "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null "
               "|| cat /sys/fs/cgroup/memory.max")
    assert r.returncode == 0, r
    assert r.stdout == f"{32 * MiB}\n"
    r = podman("run", "--rm", "-m", "32m", *RUN_OPTS, IMAGE, "sh", "-c",
               "x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo survived")
    assert r.returncode == 137, r
    assert "survived" not in r.stdout


def test_podman_pause_unpause(podman, pname):
    name = pname("pause")
    r = podman("run", "-d", "--name", name, *RUN_OPTS, IMAGE, "sleep", "1000")
    assert r.returncode == 0, r
    cid = r.stdout.strip()
    try:
        assert podman("pause", name).returncode == 0
        assert podman("inspect", "-f", "{{.State.Status}}", name).stdout.strip() == "paused"
        assert podman("unpause", name).returncode == 0
        assert podman("inspect", "-f", "{{.State.Status}}", name).stdout.strip() == "running"
        assert podman("exec", name, "true").returncode == 0
        r = podman("rm", "-f", "-t", "0", name)
        assert r.returncode == 0, r
        assert podman_leftovers(cid) == []
    finally:
        podman("rm", "-f", "-t", "0", name)


# ---------------------------------------------------------------- containerd

@pytest.fixture(scope="session")
def containerd(base, tmp_path_factory):
    missing = tool_missing("containerd", "ctr", "containerd-shim-runc-v2")
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed (apt-get install containerd)")
    workdir = tempfile.mkdtemp(prefix="cocoon-ctrd-", dir="/tmp")  # short socket paths
    c = Containerd(workdir, f"cocoontest-{uuid.uuid4().hex[:8]}")
    try:
        c.start()
        archive = make_oci_archive(base["rootfs"],
                                   tmp_path_factory.mktemp("ctrd-image") / "image.tar")
        r = c.ctr("image", "import", "--base-name", "localhost/cocoon-test", archive)
        assert r.returncode == 0, r
        assert IMAGE in c.ctr("image", "list", "--quiet").stdout.split()
        yield c
    finally:
        c.stop()
        rmtree(workdir)


@pytest.fixture
def cname(token):
    return lambda what: f"{what}-{token[:10]}"


def task_status(containerd, cid):
    for line in containerd.ctr("task", "list").stdout.splitlines()[1:]:
        f = line.split()
        if f and f[0] == cid:
            return f[2]
    return None


def ctrd_leftovers(containerd, cid):
    left = [d for d in [os.path.join(containerd.runtime_root(), cid)] if os.path.exists(d)]
    return left + glob_cgroups(f"{containerd.namespace}/{cid}")


def test_ctr_run_output_and_exit_status(containerd, cocoon_bin, cname):
    cid = cname("run")
    r = containerd.ctr("run", "--runc-binary", cocoon_bin, "--rm", IMAGE, cid,
                       "sh", "-c", "echo hi; echo to-err >&2; exit 4")
    assert r.returncode == 4, r
    assert r.stdout == "hi\n"
    assert "to-err" in r.stderr
    assert cid not in containerd.ctr("container", "list", "--quiet").stdout.split()
    assert ctrd_leftovers(containerd, cid) == []


def test_ctr_detached_task_exec_pause_kill(containerd, cocoon_bin, cname):
    cid = cname("task")
    try:
        r = containerd.ctr("run", "-d", "--runc-binary", cocoon_bin, IMAGE, cid,
                           "sleep", "1000")
        assert r.returncode == 0, r
        assert task_status(containerd, cid) == "RUNNING"
        r = containerd.ctr("task", "exec", "--exec-id", "e1", cid, "sh", "-c",
                           "echo from-exec; exit 6")
        assert r.returncode == 6, r
        assert r.stdout == "from-exec\n"
        pids = containerd.ctr("task", "ps", cid).stdout.split()[2:]
        assert pids and pid_alive(int(pids[0])), pids

        assert containerd.ctr("task", "pause", cid).returncode == 0
        assert task_status(containerd, cid) == "PAUSED"
        assert containerd.ctr("task", "resume", cid).returncode == 0
        assert task_status(containerd, cid) == "RUNNING"

        r = containerd.ctr("task", "kill", "--signal", "SIGKILL", cid)
        assert r.returncode == 0, r
        wait_for(lambda: task_status(containerd, cid) == "STOPPED", "the task to stop")
        assert containerd.ctr("task", "delete", cid).returncode == 0
        assert containerd.ctr("container", "delete", cid).returncode == 0
        assert ctrd_leftovers(containerd, cid) == []
    finally:
        containerd.remove_task(cid)


def test_ctr_force_remove_exited_task(containerd, cocoon_bin, cname):
    """`ctr task rm -f` of a task whose process has exited: containerd kills
    it first and takes the runtime's "container not running" error (runc's
    wording, matched by containerd's shim) as "already gone". cocoon says
    "cannot kill container `x`: it is stopped", which the shim reports as
    `unknown error after kill`, and the task cannot be force-removed."""
    cid = cname("exited")
    try:
        r = containerd.ctr("run", "-d", "--runc-binary", cocoon_bin, IMAGE, cid, "true")
        assert r.returncode == 0, r
        wait_for(lambda: task_status(containerd, cid) == "STOPPED", "the task to exit")
        r = containerd.ctr("task", "delete", "--force", cid)
        assert r.returncode == 0, r
        assert task_status(containerd, cid) is None
    finally:
        containerd.remove_task(cid)


# ---------------------------------------------------------------- cocoon attach by engine id

def pidns_members(init):
    """Host pids of the processes in the pid namespace of init."""
    ref = os.readlink(f"/proc/{init}/ns/pid")
    found = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.readlink(f"/proc/{d}/ns/pid") == ref:
                    found.append(int(d))
            except OSError:
                pass
    return sorted(found)


def attach_sees(cocoon, engine_id, init, *opts):
    """`cocoon attach [opts] ENGINE_ID` runs the host's ps in the container's
    pid namespace (its init is pid 1 there); nothing is left after."""
    r = cocoon.ok("attach", *opts, engine_id, "--", "sh", "-c",
                  "readlink /proc/self/ns/pid; ps -e -o pid=,comm=")
    lines = r.out.splitlines()
    assert lines[0] == os.readlink(f"/proc/{init}/ns/pid"), r.out
    procs = [l.split() for l in lines[1:]]
    assert ["1", "sleep"] in procs and len(procs) <= 3, r.out  # sleep, sh, ps
    wait_for(lambda: pidns_members(init) == [init], "only the container's init")


@pytest.mark.parametrize("runtime", ["cocoon", "runc"])
def test_attach_to_podman_container(podman, cocoon, pname, runtime):
    """A podman container (its OCI runtime: cocoon, or runc) by its id, by
    its short id (over --fuse), and refused while paused."""
    if runtime == "runc" and tool_missing("runc"):
        pytest.skip("runc not installed")
    p = podman if runtime == "cocoon" else Podman(podman.workdir, "runc")
    name = pname(f"att-{runtime}")
    r = p("run", "-d", "--name", name, *RUN_OPTS, IMAGE, "sleep", "1000")
    assert r.returncode == 0, r
    cid = r.stdout.strip()
    try:
        init = int(p("inspect", "-f", "{{.State.Pid}}", name).stdout)
        attach_sees(cocoon, cid, init)
        attach_sees(cocoon, cid[:12], init, "--fuse")
        assert p("pause", name).returncode == 0
        cocoon.fail("attach", cid, "--", "true", expect=(cid, "paused"))
        assert p("unpause", name).returncode == 0
        attach_sees(cocoon, cid, init)
    finally:
        p("rm", "-f", "-t", "0", name)


@pytest.mark.parametrize("runtime", ["runc", "cocoon"])
def test_attach_to_containerd_task(containerd, cocoon, cocoon_bin, cname, runtime):
    """A containerd task (runc, or cocoon as the shim's runtime binary) by
    its container id."""
    if runtime == "runc" and tool_missing("runc"):
        pytest.skip("runc not installed")
    cid = cname(f"att-{runtime}")
    binary = ["--runc-binary", cocoon_bin] if runtime == "cocoon" else []
    try:
        r = containerd.ctr("run", "-d", *binary, IMAGE, cid, "sleep", "1000")
        assert r.returncode == 0, r
        rows = [l.split() for l in containerd.ctr("task", "list").stdout.splitlines()[1:]]
        init = int([f[1] for f in rows if f and f[0] == cid][0])
        attach_sees(cocoon, cid, init)
        attach_sees(cocoon, cid, init, "--fuse")
    finally:
        containerd.remove_task(cid)


def test_attach_unknown_engine_id(cocoon, token):
    """An id that no runtime knows: the error names it and where it looked."""
    cid = f"nosuch-{token[:10]}"
    cocoon.fail("attach", cid, "--", "true",
                expect=(f"container `{cid}` does not exist", "/run/runc", "/run/crun",
                        "/run/containerd/runc"))
    # a hex prefix too short to be an engine's id is not guessed at
    cocoon.fail("attach", "ab", "--", "true", expect="`ab` does not exist")

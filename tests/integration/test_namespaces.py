"""Namespaces (new and joined by path), user namespaces with id mappings,
time namespace offsets, and the container's cgroup."""
import os
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor

import pytest

from cocoonlib import (TIMEOUT, cgroup_dirs, needs_root, new_bundle, pid_alive,
                       proc_status_field, read_file, rmtree, wait_for)

pytestmark = needs_root


def inside(cocoon, bundle, script, name="ns", rc=0):
    bundle.sh(script)
    r = cocoon.run(cocoon.id(name), bundle)
    assert r.rc == rc, r
    return r.out


def test_pid_namespace(cocoon, bundle):
    out = inside(cocoon, bundle, "echo $$; cat /proc/1/comm; ls /proc | grep -c '^[0-9]'")
    pid, comm, nprocs = out.split()
    assert pid == "1"
    assert comm == "sh"
    assert int(nprocs) <= 3  # sh, and the grep/ls of the pipeline


def test_no_pid_namespace(cocoon, bundle):
    bundle.drop_namespace("pid")
    out = inside(cocoon, bundle, "echo $$; ls /proc | grep -c '^[0-9]'")
    pid, nprocs = out.split()
    assert pid != "1"
    assert int(nprocs) > 10  # the host's processes are visible


def test_own_namespaces_differ_from_host(cocoon, bundle):
    kinds = ["pid", "net", "ipc", "uts", "mnt", "cgroup"]
    out = inside(cocoon, bundle, "; ".join(f"readlink /proc/self/ns/{k}" for k in kinds))
    inner = out.split()
    for k, v in zip(kinds, inner):
        assert v != os.readlink(f"/proc/self/ns/{k}"), k
    # not asked for: shared with the host
    bundle.sh("readlink /proc/self/ns/user")
    r = cocoon.run(cocoon.id("ns2"), bundle)
    assert r.out.strip() == os.readlink("/proc/self/ns/user")


def test_network_namespace_has_only_lo(cocoon, bundle):
    out = inside(cocoon, bundle, "ls /sys/class/net")
    assert out.split() == ["lo"]


def test_no_network_namespace_sees_host_interfaces(cocoon, bundle):
    bundle.drop_namespace("network")
    out = inside(cocoon, bundle, "readlink /proc/self/ns/net")
    assert out.strip() == os.readlink("/proc/self/ns/net")


@pytest.fixture
def ns_helper(tmp_path):
    """A process in its own net+uts namespaces with hostname `joined-host`."""
    ready = tmp_path / "helper-ready"
    p = subprocess.Popen(["unshare", "--net", "--uts", "sh", "-c",
                          f"hostname joined-host && touch {ready} && exec sleep 1000"],
                         stdin=subprocess.DEVNULL)
    try:
        wait_for(lambda: ready.exists() or p.poll() is not None, "the namespace helper")
        if p.poll() is not None:
            pytest.skip("unshare --net --uts failed")
        yield p.pid
    finally:
        p.kill()
        p.wait()


def test_join_namespaces_by_path(cocoon, bundle, ns_helper):
    bundle.config.pop("hostname", None)
    bundle.set_namespace("network", f"/proc/{ns_helper}/ns/net")
    bundle.set_namespace("uts", f"/proc/{ns_helper}/ns/uts")
    out = inside(cocoon, bundle, "hostname; readlink /proc/self/ns/net; readlink /proc/self/ns/uts")
    host, net, uts = out.split()
    assert host == "joined-host"
    assert net == os.readlink(f"/proc/{ns_helper}/ns/net")
    assert uts == os.readlink(f"/proc/{ns_helper}/ns/uts")
    assert pid_alive(ns_helper)  # joining does not harm the owner


def test_join_namespace_bind_mounted(cocoon, bundle, tmp_path):
    """`ip netns add` style: a namespace kept by a bind mount of its file."""
    name = f"cocoon-test-{cocoon.token[:10]}"
    r = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True,
                       timeout=TIMEOUT)
    if r.returncode != 0:
        pytest.skip(f"ip netns add failed: {r.stderr.strip()}")
    try:
        path = f"/run/netns/{name}"
        bundle.set_namespace("network", path)
        out = inside(cocoon, bundle, "readlink /proc/self/ns/net")
        assert out.strip() == "net:[%d]" % os.stat(path).st_ino
    finally:
        subprocess.run(["ip", "netns", "delete", name], timeout=TIMEOUT)


def test_hostname_set_in_joined_uts(cocoon, bundle, ns_helper):
    """hostname with a uts namespace joined by path names that namespace,
    as runc does (runtime-tools' linux_ns_path checks it)."""
    bundle.config["hostname"] = "mine"
    bundle.set_namespace("uts", f"/proc/{ns_helper}/ns/uts")
    out = inside(cocoon, bundle, "hostname; readlink /proc/self/ns/uts")
    host, uts = out.split()
    assert (host, uts) == ("mine", os.readlink(f"/proc/{ns_helper}/ns/uts"))
    r = subprocess.run(["nsenter", "-t", str(ns_helper), "-u", "hostname"],
                       capture_output=True, text=True, timeout=TIMEOUT)
    assert r.stdout.strip() == "mine"


def test_join_mount_namespace_by_path(cocoon, bundle, nothing_left):
    """A mount namespace joined by path: the container is in it, and its
    root is set up there (as with runc: the namespace's owner sees the
    container's root afterwards)."""
    p = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sleep", "1000"],
                         stdin=subprocess.DEVNULL)
    try:
        own = os.readlink("/proc/self/ns/mnt")
        wait_for(lambda: p.poll() is not None or os.readlink(f"/proc/{p.pid}/ns/mnt") != own,
                 "unshare --mount")
        if p.poll() is not None:
            pytest.skip("unshare --mount failed")
        bundle.set_namespace("mount", f"/proc/{p.pid}/ns/mnt")
        out = inside(cocoon, bundle, "readlink /proc/self/ns/mnt")
        assert out.strip() == os.readlink(f"/proc/{p.pid}/ns/mnt")
        assert os.readlink("/proc/self/ns/mnt") == own  # ours untouched
        nothing_left()  # the host's mount table included
    finally:
        p.kill()
        p.wait()


# ---------------------------------------------------------------- user ns

@pytest.fixture
def public_bundle(base, token):
    """A bundle (with its own rootfs copy) on a path that an unprivileged
    uid can traverse: pytest's tmp dirs are mode 0700."""
    d = tempfile.mkdtemp(prefix="cocoon-userns-", dir="/tmp")
    os.chmod(d, 0o755)
    try:
        yield new_bundle(os.path.join(d, "bundle"), base["config"], base["rootfs"], token,
                         copy_rootfs=True)
    finally:
        rmtree(d)


def userns(bundle, host=100000, size=65536):
    bundle.set_namespace("user")
    bundle.linux["uidMappings"] = [{"containerID": 0, "hostID": host, "size": size}]
    bundle.linux["gidMappings"] = [{"containerID": 0, "hostID": host, "size": size}]


def test_user_namespace_mappings(cocoon, public_bundle):
    b = public_bundle
    userns(b)
    out = inside(cocoon, b, "cat /proc/self/uid_map /proc/self/gid_map; id -u; id -g")
    lines = out.splitlines()
    assert lines[0].split() == ["0", "100000", "65536"]
    assert lines[1].split() == ["0", "100000", "65536"]
    assert lines[2:4] == ["0", "0"]


def test_user_namespace_host_view(cocoon, public_bundle):
    """Seen from the host, container root is uid 100000."""
    b = public_bundle
    userns(b)
    b.args("sleep", "1000")
    cid = cocoon.id("uns")
    r = cocoon.create(cid, b)
    assert r.rc == 0, r
    cocoon.ok("start", cid)
    pid = cocoon.state(cid)["pid"]
    wait_for(lambda: read_file(f"/proc/{pid}/comm", "").strip() == "sleep", "sleep to run")
    assert proc_status_field(pid, "Uid").split() == ["100000"] * 4
    assert proc_status_field(pid, "Gid").split() == ["100000"] * 4
    assert os.readlink(f"/proc/{pid}/ns/user") != os.readlink("/proc/self/ns/user")
    cocoon.ok("delete", "--force", cid)


def test_user_namespace_non_root_user(cocoon, public_bundle):
    b = public_bundle
    userns(b)
    b.process["user"] = {"uid": 1000, "gid": 1000}
    b.add_mount("/scratch", "tmpfs", "tmpfs", ["mode=1777"])
    out = inside(cocoon, b, "id -u; touch /scratch/f; stat -c '%u %g' /scratch/f")
    assert out.split() == ["1000", "1000", "1000"]


def test_user_namespace_needs_mappings(cocoon, bundle, nothing_left):
    bundle.set_namespace("user")
    bundle.save()
    cocoon.fail("create", "-b", bundle.path, cocoon.id("nomap"), expect=["uidMappings"])
    nothing_left()


def test_mappings_without_user_namespace(cocoon, bundle, nothing_left):
    bundle.linux["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 10}]
    bundle.linux["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 10}]
    bundle.save()
    cocoon.fail("create", "-b", bundle.path, cocoon.id("nouser"), expect=["user namespace"])
    nothing_left()


# ---------------------------------------------------------------- time ns

needs_timens = pytest.mark.skipif(not os.path.exists("/proc/self/ns/time"),
                                  reason="kernel without time namespaces")


@needs_timens
def test_time_namespace_offsets(cocoon, bundle):
    year = 365 * 86400
    bundle.set_namespace("time")
    bundle.linux["timeOffsets"] = {"boottime": {"secs": year, "nanosecs": 0},
                                   "monotonic": {"secs": 1000, "nanosecs": 500}}
    out = inside(cocoon, bundle, "cat /proc/self/timens_offsets; cut -d' ' -f1 /proc/uptime")
    lines = out.splitlines()
    offsets = {l.split()[0]: l.split()[1:] for l in lines[:2]}
    assert offsets["monotonic"] == ["1000", "500"]
    assert offsets["boottime"] == [str(year), "0"]
    host_uptime = float(read_file("/proc/uptime").split()[0])
    inner_uptime = float(lines[2])
    assert inner_uptime >= year  # uptime is boottime: the offset shows
    assert inner_uptime - host_uptime > year - 3600
    # the runtime itself was not moved to the new time namespace
    assert float(read_file("/proc/uptime").split()[0]) < year


@needs_timens
def test_time_namespace_without_offsets(cocoon, bundle):
    bundle.set_namespace("time")
    out = inside(cocoon, bundle, "readlink /proc/self/ns/time")
    assert out.strip() != os.readlink("/proc/self/ns/time")


def test_time_offsets_need_time_namespace(cocoon, bundle, nothing_left):
    bundle.linux["timeOffsets"] = {"boottime": {"secs": 10, "nanosecs": 0}}
    bundle.save()
    cocoon.fail("create", "-b", bundle.path, cocoon.id("notime"), expect=["timeOffsets"])
    nothing_left()


# ---------------------------------------------------------------- cgroups

def test_container_gets_its_own_cgroup(cocoon, make_bundle):
    b = make_bundle("sleep", "1000")
    cid = cocoon.id("cg")
    assert cocoon.create(cid, b).rc == 0
    pid = cocoon.state(cid)["pid"]
    # seen from the host, the init is in a cgroup of its own in every hierarchy
    with open(f"/proc/{pid}/cgroup") as f:
        paths = [l.rstrip("\n").split(":", 2)[2] for l in f]
    assert paths and all(p.endswith("@" + cid) for p in paths), paths
    dirs = cgroup_dirs(cid, cocoon.roots)
    assert dirs, "no cgroup directory for the container"
    for d in dirs:
        procs = read_file(os.path.join(d, "cgroup.procs")).split()
        assert procs == [str(pid)], d
    cocoon.ok("delete", cid)
    assert cgroup_dirs(cid, cocoon.roots) == []


def test_no_cgroup_left_after_delete(cocoon, make_bundle):
    """delete removes every cgroup directory create made."""
    b = make_bundle("sleep", "1000")
    cid = cocoon.id("cgleft")
    assert cocoon.create(cid, b).rc == 0
    assert cgroup_dirs(cid, cocoon.roots) != []
    cocoon.ok("delete", "--force", cid)
    assert cocoon.state_dirs() == []
    assert cgroup_dirs(cid, cocoon.roots) == []


def test_parallel_creates_in_fresh_root(cocoon, make_bundle, tmp_path):
    """Concurrent first creates under a new state root all succeed (on v1,
    a new cpuset cgroup must get cpus/mems before anyone joins it); and
    any that fail leave nothing behind."""
    b = make_bundle("sleep", "1000")
    failed = []
    for rnd in range(8):
        root = tmp_path / f"fresh{rnd}"
        ids = [cocoon.id(f"f{rnd}-{i}") for i in range(16)]
        with ThreadPoolExecutor(16) as ex:
            results = list(ex.map(lambda cid: cocoon("create", "-b", b.path, cid,
                                                     glob=["--root", root], with_root=False),
                                  ids))
        for cid, r in zip(ids, results):
            if r.rc == 0:
                cocoon.ok("delete", "--force", cid, glob=["--root", root], with_root=False)
            else:
                failed.append(r)
        assert [e for e in os.listdir(root) if e != ".seccomp"] == []
        assert [d for cid in ids for d in cgroup_dirs(cid, (root,))] == []
    assert failed == []


def test_cgroup_namespace_root(cocoon, bundle):
    """With a cgroup namespace the container sees itself at the root."""
    out = inside(cocoon, bundle, "cat /proc/self/cgroup")
    for line in out.splitlines():
        assert line.split(":", 2)[2] == "/", out


def test_cgroup_pids_limit(cocoon, make_bundle):
    b = make_bundle("sleep", "1000")
    b.linux["resources"] = {"pids": {"limit": 7}}
    cid = cocoon.id("pids")
    assert cocoon.create(cid, b).rc == 0
    d = [d for d in cgroup_dirs(cid, cocoon.roots) if os.path.exists(os.path.join(d, "pids.max"))]
    if not d:
        pytest.skip("no pids controller")
    assert read_file(os.path.join(d[0], "pids.max")).strip() == "7"
    cocoon.ok("delete", cid)


def test_cgroup_memory_limit(cocoon, make_bundle):
    b = make_bundle("sleep", "1000")
    b.linux["resources"] = {"memory": {"limit": 64 * 1024 * 1024}}
    cid = cocoon.id("mem")
    assert cocoon.create(cid, b).rc == 0
    vals = []
    for d in cgroup_dirs(cid, cocoon.roots):
        for f in ("memory.limit_in_bytes", "memory.max"):
            v = read_file(os.path.join(d, f))
            if v is not None:
                vals.append(v.strip())
    if not vals:
        pytest.skip("no memory controller")
    assert str(64 * 1024 * 1024) in vals
    cocoon.ok("delete", cid)


def test_sys_fs_cgroup_inside(cocoon, bundle):
    out = inside(cocoon, bundle, "ls /sys/fs/cgroup; touch /sys/fs/cgroup/x 2>&1; true")
    assert "Read-only file system" in out

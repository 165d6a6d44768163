"""cgroups: limits observed from inside the container and in the host's
cgroup files, cgroupsPath forms, removal at delete, update, pause/resume,
ps and events."""
import json
import os

import pytest

from cocoonlib import default_cgroup, needs_root, pid_alive, read_file, wait_for, wait_line
from enginelib import (cgroup_dirs_of, cgroup_file, cgroup_mounts, controller_dir,
                       existing_cgroup_dirs, proc_cgroups, proc_state,
                       remove_cgroup_tree, run_in)

pytestmark = needs_root

MiB = 1024 * 1024


def needs_controller(*ctrls):
    missing = [c for c in ctrls if controller_dir(c, "") is None]
    if missing:
        pytest.skip(f"no {', '.join(missing)} cgroup controller")


def v1_memory():
    """Whether memory is a cgroup v1 controller (memory.limit_in_bytes)."""
    d = controller_dir("memory", "")
    return d is not None and os.path.exists(os.path.join(d, "memory.limit_in_bytes"))


def memory_limit_file():
    return "memory.limit_in_bytes" if v1_memory() else "memory.max"


def inner_memory_limit_path():
    """Where the container sees its own memory limit (cgroup namespace)."""
    return ("/sys/fs/cgroup/memory/memory.limit_in_bytes" if v1_memory()
            else "/sys/fs/cgroup/memory.max")


@pytest.fixture
def cg_parent():
    """Parents for linux.cgroupsPath, removed at the end if empty (cocoon
    removes only the container's own directory from a path it was given)."""
    names = []

    def make(name="cocoontest"):
        names.append(name)
        return name

    yield make
    for n in names:
        remove_cgroup_tree(n)


# ---------------------------------------------------------------- memory

def test_memory_limit_inside_and_oom(cocoon, make_bundle):
    needs_controller("memory")
    b = make_bundle()
    b.linux["resources"] = {"memory": {"limit": 32 * MiB}}
    r = run_in(cocoon, b, f"cat {inner_memory_limit_path()}")
    assert r.out == f"{32 * MiB}\n"
    # The shell itself collects 100 MB: the kernel OOM-kills it, and `run`
    # reports it as killed by SIGKILL.
    r = run_in(cocoon, b, "x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo survived",
               "oom", rc=137)
    assert "survived" not in r.out


def test_memory_swappiness(cocoon, make_bundle, nothing_left):
    """memory.swappiness on v1 (runtime-tools' linux_cgroups_memory checks
    it); out of 0..100 it is an error that names the key."""
    needs_controller("memory")
    if controller_dir("memory", "") is None or \
            not os.path.exists(os.path.join(controller_dir("memory", ""), "memory.swappiness")):
        pytest.skip("no v1 memory.swappiness here (cgroup v2 has none)")
    cid = cocoon.id("swappy")
    b = make_bundle("sleep", "1000")
    b.linux["resources"] = {"memory": {"swappiness": 10}}
    b.save()
    assert cocoon.run(cid, b, "--detach").rc == 0
    assert cgroup_file("memory", default_cgroup(cocoon.root, cid), "memory.swappiness") == "10"
    cocoon.ok("delete", "--force", cid)
    b.linux["resources"] = {"memory": {"swappiness": 101}}
    b.save()
    cocoon.fail("create", "-b", b.path, cocoon.id("swappy"), expect=["swappiness", "0 to 100"])
    nothing_left()


def test_program_under_the_memory_limit_runs(cocoon, make_bundle):
    """A program well under the limit is not disturbed."""
    needs_controller("memory")
    b = make_bundle()
    b.linux["resources"] = {"memory": {"limit": 32 * MiB}}
    r = run_in(cocoon, b, "x=$(head -c 1000000 /dev/zero | tr '\\0' a); echo ${#x}")
    assert r.out == "1000000\n"


# ---------------------------------------------------------------- pids

def test_pids_limit(cocoon, make_bundle):
    """pids.max = 5: the shell and 4 background sleeps, the 5th fork fails."""
    needs_controller("pids")
    b = make_bundle()
    b.linux["resources"] = {"pids": {"limit": 5}}
    r = run_in(cocoon, b, "for i in 1 2 3 4 5 6 7 8; do sleep 100 & echo $i; done; echo all",
               rc=2)
    assert r.out == "1\n2\n3\n4\n", r
    assert "can't fork" in r.err and "Resource temporarily unavailable" in r.err, r


# ---------------------------------------------------------------- cpu, cpuset

def test_cpu_shares_quota_period_and_cpuset(cocoon, make_bundle, cg_parent, nothing_left):
    needs_controller("cpu", "cpuset")
    if not os.path.exists(os.path.join(controller_dir("cpu", ""), "cpu.shares")):
        pytest.skip("cpu controller is not cgroup v1")
    cid = cocoon.id("cpu")
    rel = f"{cg_parent()}/{cid}"
    b = make_bundle("sleep", "1000")
    b.linux["cgroupsPath"] = "/" + rel
    b.linux["resources"] = {"cpu": {"shares": 512, "quota": 50000, "period": 100000,
                                    "cpus": "0", "mems": "0"}}
    assert cocoon.create(cid, b).rc == 0
    assert cgroup_file("cpu", rel, "cpu.shares") == "512"
    assert cgroup_file("cpu", rel, "cpu.cfs_quota_us") == "50000"
    assert cgroup_file("cpu", rel, "cpu.cfs_period_us") == "100000"
    assert cgroup_file("cpuset", rel, "cpuset.cpus") == "0"
    assert cgroup_file("cpuset", rel, "cpuset.mems") == "0"
    # the init really is confined to cpu 0
    pid = cocoon.state(cid)["pid"]
    allowed = [l for l in read_file(f"/proc/{pid}/status").splitlines()
               if l.startswith("Cpus_allowed_list:")]
    assert allowed[0].split()[1] == "0"
    cocoon.ok("delete", cid)
    assert existing_cgroup_dirs(rel) == []
    nothing_left()


# ---------------------------------------------------------------- cgroupsPath

def assert_in_cgroup(pid, rel):
    """Every hierarchy of pid ends in /rel (seen from the host)."""
    cg = proc_cgroups(pid)
    assert cg, f"no /proc/{pid}/cgroup"
    for h, path in cg.items():
        assert path.endswith("/" + rel), (h, path)


def test_cgroups_path_absolute(cocoon, make_bundle, cg_parent, nothing_left):
    cid = cocoon.id("abs")
    rel = f"{cg_parent()}/{cid}"
    b = make_bundle("sleep", "1000")
    b.linux["cgroupsPath"] = "/" + rel
    assert cocoon.create(cid, b).rc == 0
    pid = cocoon.state(cid)["pid"]
    dirs = cgroup_dirs_of(rel)
    assert sorted(existing_cgroup_dirs(rel)) == sorted(dirs.values()), "not in every hierarchy"
    for d in dirs.values():
        assert str(pid) in read_file(os.path.join(d, "cgroup.procs")).split(), d
    assert_in_cgroup(pid, rel)
    cocoon.ok("delete", cid)
    assert existing_cgroup_dirs(rel) == []
    nothing_left()


def test_cgroups_path_relative(cocoon, make_bundle, cg_parent, nothing_left):
    """A relative path: cocoon places it under the hierarchy roots (the spec
    lets the runtime choose); what matters is that it is used as given."""
    cid = cocoon.id("rel")
    rel = f"{cg_parent('cocoontest-rel')}/{cid}"
    b = make_bundle("sleep", "1000")
    b.linux["cgroupsPath"] = rel
    assert cocoon.create(cid, b).rc == 0
    pid = cocoon.state(cid)["pid"]
    assert_in_cgroup(pid, rel)
    cocoon.ok("delete", cid)
    assert existing_cgroup_dirs(rel) == []
    nothing_left()


def test_cgroups_path_systemd_style(cocoon, make_bundle, cg_parent, nothing_left):
    """slice:prefix:name maps to slice/prefix-name.scope (cgroupfs)."""
    cid = cocoon.id("sd")
    if not existing_cgroup_dirs("machine.slice"):
        cg_parent("machine.slice")  # made by this test: remove it at the end
    b = make_bundle("sleep", "1000")
    b.linux["cgroupsPath"] = f"machine.slice:test:{cid}"
    assert cocoon.create(cid, b, glob=["--systemd-cgroup"]).rc == 0
    rel = f"machine.slice/test-{cid}.scope"
    pid = cocoon.state(cid)["pid"]
    assert_in_cgroup(pid, rel)
    assert len(existing_cgroup_dirs(rel)) == len(cgroup_mounts())
    cocoon.ok("delete", cid)
    assert existing_cgroup_dirs(rel) == []
    nothing_left()


@pytest.mark.parametrize("path", ["/cocoontest/../../escape", "cocoontest/./x", "/..",
                                  "..:test:x"])
def test_cgroups_path_with_dot_dot(cocoon, bundle, nothing_left, path):
    bundle.linux["cgroupsPath"] = path
    bundle.save()
    before = {n: sorted(os.listdir(mp)) for n, mp in cgroup_mounts().items()}
    cocoon.fail("create", "-b", bundle.path, cocoon.id("dotdot"), expect=["cgroupsPath"])
    assert {n: sorted(os.listdir(mp)) for n, mp in cgroup_mounts().items()} == before
    nothing_left()


def test_cgroup_removed_in_every_hierarchy(cocoon, make_bundle, nothing_left):
    """At delete, the container's directory goes from every hierarchy,
    also when processes of an exec are still in it."""
    cid = cocoon.id("rm")
    b = make_bundle("sleep", "1000")
    assert cocoon.run(cid, b, "--detach").rc == 0
    rel = default_cgroup(cocoon.root, cid)
    assert len(existing_cgroup_dirs(rel)) == len(cgroup_mounts())
    cocoon.ok("exec", "--detach", cid, "sleep", "1000")
    cocoon.ok("delete", "--force", cid)
    assert existing_cgroup_dirs(rel) == []
    nothing_left()


def test_default_cgroup_is_one_level(cocoon, make_bundle):
    """Without linux.cgroupsPath the container's cgroup is
    cocoon-<hash of --root>@<id>, right under each hierarchy's root, as
    runc's default is one level: no shared parent to create with the first
    container and remove with the last (on v1 that was twice the mkdir and
    rmdir of every hierarchy), and nothing left after delete."""
    cid = cocoon.id("scope")
    rel = default_cgroup(cocoon.root, cid)
    assert rel.startswith("cocoon-") and "/" not in rel
    b = make_bundle("sleep", "1000")
    assert cocoon.run(cid, b, "--detach").rc == 0
    pid = cocoon.state(cid)["pid"]
    assert len(existing_cgroup_dirs(rel)) == len(cgroup_mounts())
    assert set(proc_cgroups(pid).values()) <= {"/" + rel}, proc_cgroups(pid)
    cocoon.ok("delete", "--force", cid)
    assert existing_cgroup_dirs(rel) == []
    assert existing_cgroup_dirs(rel.split("@")[0]) == [], "a parent cgroup was made"


# ---------------------------------------------------------------- update

@pytest.fixture
def sleeper(cocoon, make_bundle):
    b = make_bundle("sleep", "1000")
    b.linux["resources"] = {"memory": {"limit": 128 * MiB}, "pids": {"limit": 100}}
    cid = cocoon.id("upd")
    assert cocoon.run(cid, b, "--detach").rc == 0
    return cid


def test_update_memory_and_pids(cocoon, sleeper):
    needs_controller("memory", "pids")
    rel = default_cgroup(cocoon.root, sleeper)
    assert cgroup_file("memory", rel, memory_limit_file()) == str(128 * MiB)
    cocoon.ok("update", "--memory", "64m", "--pids-limit", "50", sleeper)
    assert cgroup_file("memory", rel, memory_limit_file()) == str(64 * MiB)
    assert cgroup_file("pids", rel, "pids.max") == "50"
    # the container sees it too
    r = cocoon.ok("exec", sleeper, "cat", inner_memory_limit_path(), "/sys/fs/cgroup/pids/pids.max"
                  if v1_memory() else "/sys/fs/cgroup/pids.max")
    assert r.out.split() == [str(64 * MiB), "50"]


def test_update_resources_from_stdin(cocoon, sleeper, tmp_path):
    needs_controller("pids")
    rel = default_cgroup(cocoon.root, sleeper)
    f = tmp_path / "res.json"
    f.write_text(json.dumps({"pids": {"limit": 33}}))
    with open(f) as stdin:
        cocoon.ok("update", "--resources", "-", sleeper, stdin=stdin)
    assert cgroup_file("pids", rel, "pids.max") == "33"
    cocoon.ok("update", "--resources", f, sleeper)
    assert cgroup_file("pids", rel, "pids.max") == "33"


def test_update_errors(cocoon, sleeper, make_bundle):
    cocoon.fail("update", "--memory", "lots", sleeper, expect=["lots"])
    cocoon.fail("update", "--memory", "64m", cocoon.id("nobody"), expect=["does not exist"])
    b = make_bundle("true")
    cid = cocoon.id("updstop")
    assert cocoon.create(cid, b).rc == 0
    cocoon.ok("start", cid)
    cocoon.wait_status(cid, "stopped")
    cocoon.fail("update", "--pids-limit", "10", cid, expect=[cid, "stopped"])


def test_update_raises_memory_and_swap_together(cocoon, make_bundle):
    """cgroup v1 wants memory.limit <= memsw.limit at every moment: raising
    both (as `docker update -m 128m --memory-swap 256m` does) must write the
    swap limit first. runc orders the writes by the current values."""
    needs_controller("memory")
    if not v1_memory():
        pytest.skip("cgroup v1 memory only")
    b = make_bundle("sleep", "1000")
    b.linux["resources"] = {"memory": {"limit": 32 * MiB, "swap": 64 * MiB}}
    cid = cocoon.id("memsw")
    r = cocoon.run(cid, b, "--detach")
    if r.rc != 0 and "swap" in r.err:
        pytest.skip("no swap accounting")
    assert r.rc == 0, r
    rel = default_cgroup(cocoon.root, cid)
    cocoon.ok("update", "--memory", "128m", "--memory-swap", "256m", cid)
    assert cgroup_file("memory", rel, "memory.limit_in_bytes") == str(128 * MiB)
    assert cgroup_file("memory", rel, "memory.memsw.limit_in_bytes") == str(256 * MiB)
    # and back down: memory first
    cocoon.ok("update", "--memory", "16m", "--memory-swap", "32m", cid)
    assert cgroup_file("memory", rel, "memory.limit_in_bytes") == str(16 * MiB)
    assert cgroup_file("memory", rel, "memory.memsw.limit_in_bytes") == str(32 * MiB)


# ---------------------------------------------------------------- pause / resume

def test_pause_resume(cocoon, make_bundle, hostdir):
    needs_controller("freezer")
    b = make_bundle("sh", "-c", "trap 'echo got-usr1 >> /host/log' USR1; "
                                "echo ready > /host/ready; while :; do sleep 0.05; done")
    b.bind(hostdir, "/host")
    cid = cocoon.id("pause")
    assert cocoon.run(cid, b, "--detach").rc == 0
    wait_line(hostdir / "ready")
    pid = cocoon.state(cid)["pid"]
    cocoon.ok("pause", cid)
    assert cocoon.status(cid) == "paused"
    rel = default_cgroup(cocoon.root, cid)
    fs = cgroup_file("freezer", rel, "freezer.state")
    if fs is not None:  # v1 freezer: frozen tasks sleep uninterruptibly (D)
        assert fs == "FROZEN"
        assert proc_state(pid) == "D", proc_state(pid)
    else:  # v2
        assert "frozen 1" in cgroup_file("freezer", rel, "cgroup.events").splitlines()
    listed = {c["id"]: c for c in json.loads(cocoon.ok("list", "--format", "json").out)}
    assert listed[cid]["status"] == "paused"
    cocoon.fail("pause", cid, expect=[cid, "paused"])
    cocoon.fail("start", cid, expect=[cid])

    cocoon.ok("resume", cid)
    assert cocoon.status(cid) == "running"
    wait_for(lambda: proc_state(pid) in ("S", "R"), "the init to run again")
    cocoon.fail("resume", cid, expect=[cid, "running"])
    cocoon.ok("kill", cid, "USR1")
    assert wait_line(hostdir / "log") == "got-usr1\n"
    cocoon.ok("kill", cid, "KILL")
    cocoon.wait_status(cid, "stopped")
    assert not pid_alive(pid)


def test_signal_to_paused_container_is_delivered_at_resume(cocoon, make_bundle):
    needs_controller("freezer")
    b = make_bundle("sleep", "1000")
    cid = cocoon.id("pausekill")
    assert cocoon.run(cid, b, "--detach").rc == 0
    pid = cocoon.state(cid)["pid"]
    cocoon.ok("pause", cid)
    cocoon.ok("kill", cid, "KILL")
    cocoon.ok("resume", cid)
    cocoon.wait_status(cid, "stopped")
    assert not pid_alive(pid)


def test_delete_force_paused_container(cocoon, make_bundle, nothing_left):
    """`delete --force` of a paused container: frozen processes do not die
    of SIGKILL until thawed, so the runtime has to thaw them (runc: freeze,
    signal, thaw). cocoon waits 10 s and fails with `did not exit after
    SIGKILL` (containerd's `ctr task rm -f` on a paused task hangs)."""
    needs_controller("freezer")
    b = make_bundle("sh", "-c", "sleep 1000 & sleep 1000")
    cid = cocoon.id("pausedel")
    assert cocoon.run(cid, b, "--detach").rc == 0
    cocoon.ok("pause", cid)
    r = cocoon("delete", "--force", cid)
    if r.rc != 0:
        cocoon("resume", cid)  # let the cleanup work
    assert r.rc == 0, r
    nothing_left()


def test_pause_needs_running(cocoon, make_bundle):
    b = make_bundle("sleep", "1000")
    cid = cocoon.id("pausecr")
    assert cocoon.create(cid, b).rc == 0
    cocoon.fail("pause", cid, expect=[cid, "created"])
    cocoon.fail("resume", cid, expect=[cid, "created"])


def test_pause_help(cocoon):
    """`pause --help` / `resume --help` print usage like every other command
    (they say ``unknown option `pause` ``: getopt without long options
    reads `--help` as the short options -, h, e, l, p)."""
    for cmd in ("pause", "resume"):
        r = cocoon(cmd, "--help")
        assert r.rc == 0 and r.out.startswith(f"usage: cocoon {cmd}"), r


# ---------------------------------------------------------------- ps, events

def test_ps_lists_the_containers_processes(cocoon, make_bundle, hostdir):
    b = make_bundle("sh", "-c", "sleep 1000 & sleep 1001 & echo ready > /host/ready; wait")
    b.bind(hostdir, "/host")
    cid = cocoon.id("ps")
    assert cocoon.run(cid, b, "--detach").rc == 0
    wait_line(hostdir / "ready")
    init = cocoon.state(cid)["pid"]
    pids = json.loads(cocoon.ok("ps", "--format", "json", cid).out)
    assert isinstance(pids, list) and init in pids and len(pids) == 3, pids
    cmds = sorted(read_file(f"/proc/{p}/cmdline").replace("\0", " ").strip() for p in pids)
    assert cmds == sorted(["sh -c sleep 1000 & sleep 1001 & echo ready > /host/ready; wait",
                           "sleep 1000", "sleep 1001"])
    table = cocoon.ok("ps", cid).out.splitlines()
    assert table[0].split() == ["PID", "CMD"]
    assert sorted(int(l.split()[0]) for l in table[1:]) == sorted(pids)
    cocoon.ok("exec", "--detach", cid, "sleep", "1002")
    assert len(json.loads(cocoon.ok("ps", "--format", "json", cid).out)) == 4
    cocoon.ok("kill", cid, "KILL")
    cocoon.wait_status(cid, "stopped")
    cocoon.fail("ps", cid, expect=[cid, "stopped"])


def test_events_stats(cocoon, make_bundle):
    needs_controller("memory")
    b = make_bundle("sh", "-c", "x=$(head -c 2000000 /dev/zero | tr '\\0' a); exec sleep 1000")
    b.linux["resources"] = {"memory": {"limit": 64 * MiB}, "pids": {"limit": 20}}
    cid = cocoon.id("events")
    assert cocoon.run(cid, b, "--detach").rc == 0
    pid = cocoon.state(cid)["pid"]
    wait_for(lambda: read_file(f"/proc/{pid}/comm", "").strip() == "sleep", "sleep to run")
    r = cocoon.ok("events", "--stats", cid)
    lines = r.out.splitlines()
    assert len(lines) == 1
    ev = json.loads(lines[0])
    assert ev["type"] == "stats" and ev["id"] == cid
    mem = ev["data"]["memory"]["usage"]
    assert mem["usage"] > 0 and mem["limit"] == 64 * MiB
    assert mem["max"] >= mem["usage"]
    assert ev["data"]["pids"] == {"current": 1, "limit": 20}
    assert ev["data"]["cpu"]["usage"]["total"] > 0
    cocoon.ok("delete", "--force", cid)
    cocoon.fail("events", "--stats", cid, expect=[cid, "does not exist"])

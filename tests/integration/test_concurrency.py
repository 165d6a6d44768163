"""Many containers at once, and concurrent commands on one container."""
import subprocess
from concurrent.futures import ThreadPoolExecutor

from cocoonlib import TIMEOUT, needs_root, pid_alive, token_pids, wait_for, wait_line

pytestmark = needs_root

WORKERS = 12


def check_clean_errors(results, allowed):
    """Every failed command exited 1 with one `cocoon:` line mentioning one
    of the allowed phrases (no crash, no signal, no garbage)."""
    for r in results:
        if r.rc == 0:
            continue
        assert r.rc == 1, r
        assert len(r.err_lines) == 1 and r.err_lines[0].startswith("cocoon: "), r
        if allowed is not None:
            assert any(a in r.err for a in allowed), r


def test_fifty_containers_in_parallel(cocoon, make_bundle, nothing_left):
    """50 containers from one bundle (a bundle may back many containers):
    create, start, kill, state, delete, 12 at a time."""
    b = make_bundle("sleep", "1000")
    ids = [cocoon.id(f"c{i:02d}") for i in range(50)]

    def lifecycle(cid):
        steps = [("create", cocoon("create", "-b", b.path, cid))]
        if steps[0][1].rc:
            return steps
        pid = cocoon.state(cid)["pid"]
        steps.append(("start", cocoon("start", cid)))
        steps.append(("kill", cocoon("kill", cid, "KILL")))
        wait_for(lambda: not pid_alive(pid), f"{cid} to die")
        steps.append(("state", cocoon("state", cid)))
        steps.append(("delete", cocoon("delete", cid)))
        return steps

    with ThreadPoolExecutor(WORKERS) as ex:
        all_steps = list(ex.map(lifecycle, ids))
    for cid, steps in zip(ids, all_steps):
        for name, r in steps:
            assert r.rc == 0, (cid, name, r)
        assert [n for n, _ in steps] == ["create", "start", "kill", "state", "delete"]
        assert '"status": "stopped"' in steps[3][1].out
    nothing_left()


def test_fifty_containers_distinct_bundles(cocoon, make_bundle, hostdir, nothing_left):
    """Each container has its own bundle and program; each ran exactly once,
    with its own hostname, and all were cleaned up."""
    ids = [cocoon.id(f"d{i:02d}") for i in range(50)]
    bundles = {}
    for cid in ids:
        b = make_bundle(name=f"b-{cid}")
        b.bind(hostdir, "/host")
        b.config["hostname"] = cid[:60]
        b.sh(f"hostname >> /host/{cid}; exec sleep 1000")
        b.save()
        bundles[cid] = b

    def lifecycle(cid):
        out = []
        out.append(cocoon("create", "-b", bundles[cid].path, cid))
        out.append(cocoon("start", cid))
        wait_line(hostdir / cid)
        out.append(cocoon("kill", cid, "KILL"))
        wait_for(lambda: cocoon.status(cid) == "stopped", f"{cid} to stop")
        out.append(cocoon("delete", cid))
        return out

    with ThreadPoolExecutor(WORKERS) as ex:
        results = list(ex.map(lifecycle, ids))
    for cid, rs in zip(ids, results):
        for r in rs:
            assert r.rc == 0, (cid, r)
        assert (hostdir / cid).read_text() == cid[:60] + "\n"
    nothing_left()


def test_parallel_foreground_runs_keep_their_exit_codes(cocoon, make_bundle, nothing_left):
    ids = [cocoon.id(f"r{i:02d}") for i in range(24)]
    bundles = {}
    for i, cid in enumerate(ids):
        b = make_bundle(name=f"b-{cid}")
        b.sh(f"echo out-{i}; exit {i + 1}")
        b.save()
        bundles[cid] = b

    with ThreadPoolExecutor(WORKERS) as ex:
        results = list(ex.map(lambda cid: cocoon("run", "-b", bundles[cid].path, cid), ids))
    for i, r in enumerate(results):
        assert r.rc == i + 1, r
        assert r.out == f"out-{i}\n", r
    nothing_left()


def test_parallel_force_delete_same_id(cocoon, make_bundle, nothing_left):
    b = make_bundle("sleep", "1000")
    cid = cocoon.id("one")
    assert cocoon.create(cid, b).rc == 0
    cocoon.ok("start", cid)
    pid = cocoon.state(cid)["pid"]
    with ThreadPoolExecutor(10) as ex:
        results = list(ex.map(lambda _: cocoon("delete", "--force", cid), range(10)))
    assert any(r.rc == 0 for r in results), results
    check_clean_errors(results, ["does not exist"])
    assert not pid_alive(pid)
    cocoon.fail("state", cid, expect=["does not exist"])
    nothing_left()


def test_parallel_start_same_id_runs_once(cocoon, make_bundle, hostdir):
    b = make_bundle()
    b.bind(hostdir, "/host")
    b.sh("echo ran >> /host/count; exec sleep 1000")
    cid = cocoon.id("once")
    assert cocoon.create(cid, b).rc == 0
    with ThreadPoolExecutor(10) as ex:
        results = list(ex.map(lambda _: cocoon("start", cid), range(10)))
    assert sum(r.rc == 0 for r in results) == 1, results
    check_clean_errors(results, ["not created"])
    wait_line(hostdir / "count")
    assert cocoon.status(cid) == "running"
    assert (hostdir / "count").read_text() == "ran\n"


def test_parallel_create_same_id(cocoon, make_bundle, nothing_left):
    b = make_bundle("sleep", "1000")
    cid = cocoon.id("race")
    with ThreadPoolExecutor(10) as ex:
        results = list(ex.map(lambda _: cocoon("create", "-b", b.path, cid), range(10)))
    assert sum(r.rc == 0 for r in results) == 1, results
    check_clean_errors(results, ["already exists"])
    assert cocoon.status(cid) == "created"
    wait_for(lambda: len(token_pids(cocoon.token)) == 1, "exactly one container init")
    assert token_pids(cocoon.token) == [cocoon.state(cid)["pid"]]
    cocoon.ok("delete", cid)
    nothing_left()


def test_parallel_mixed_commands_same_id(cocoon, make_bundle, nothing_left):
    b = make_bundle("sleep", "1000")
    cid = cocoon.id("mixed")
    assert cocoon.create(cid, b).rc == 0
    cmds = [["start", cid], ["state", cid], ["kill", cid, "KILL"], ["list"],
            ["delete", "--force", cid], ["state", cid], ["kill", cid]] * 3
    with ThreadPoolExecutor(10) as ex:
        results = list(ex.map(lambda c: cocoon(*c), cmds))
    # many interleavings, many possible refusals: each must be a clean one
    check_clean_errors(results, None)
    # whatever the interleaving, delete --force ran at least once
    cocoon("delete", "--force", cid)
    nothing_left()


def test_create_delete_race(cocoon, make_bundle, nothing_left):
    """create and delete --force of the same id at the same time: either
    order is fine, but afterwards there is a consistent container or none."""
    b = make_bundle("sleep", "1000")
    for i in range(15):
        cid = cocoon.id(f"cd{i}")
        with ThreadPoolExecutor(2) as ex:
            fc = ex.submit(cocoon, "create", "-b", b.path, cid)
            fd = ex.submit(cocoon, "delete", "--force", cid)
            rc, rd = fc.result(), fd.result()
        # create may lose in several places (its state dir vanished under
        # it): any clean one-line error will do
        check_clean_errors([rc], None)
        check_clean_errors([rd], ["does not exist"])
        if cid in cocoon.state_dirs():
            st = cocoon.state(cid)
            assert st["status"] == "created" and pid_alive(st["pid"]), st
            cocoon.ok("delete", cid)
    nothing_left()


def test_external_delete_during_foreground_run(cocoon, bundle, hostdir):
    """A foreground `run` reports its container's exit status even if the
    container was deleted (--force) from elsewhere meanwhile; the cleanup it
    would have done is already done."""
    bundle.bind(hostdir, "/host")
    bundle.sh("echo ready > /host/ready; exec sleep 1000")
    bundle.save()
    cid = cocoon.id("extdel")
    p = cocoon.popen("run", "-b", bundle.path, cid, stdout=subprocess.DEVNULL,
                     stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (hostdir / "ready").exists(), "the container to start")
        cocoon.ok("delete", "--force", cid)
        rc = p.wait(TIMEOUT)
        err = p.stderr.read()
    finally:
        p.kill()
        p.wait()
    assert rc == 137, (rc, err)
    assert err == ""
    assert cocoon.state_dirs() == []

"""create / start / state / kill / delete / list, and `run`."""
import json
import os
import signal
import subprocess


from cocoonlib import (TIMEOUT, assert_one_error, needs_root, pid_alive, token_pids,
                       wait_for, wait_line)

pytestmark = needs_root


def marker_bundle(make_bundle, hostdir, script_tail="exec sleep 1000"):
    """A bundle whose program appends `started` to hostdir/marker."""
    b = make_bundle()
    b.bind(hostdir, "/host")
    b.sh(f"echo started >> /host/marker; {script_tail}")
    return b


def test_full_lifecycle(cocoon, make_bundle, hostdir, tmp_path, nothing_left):
    c_life = cocoon.id("life")
    b = marker_bundle(make_bundle, hostdir)
    pidfile = tmp_path / "init.pid"
    r = cocoon.create(c_life, b, "--pid-file", pidfile)
    assert r.rc == 0, r
    assert r.out == "" and r.err == ""

    st = cocoon.state(c_life)
    assert st["status"] == "created"
    assert st["id"] == c_life
    assert st["ociVersion"].startswith("1.")
    assert st["bundle"] == b.path
    assert st["rootfs"] == b.rootfs
    assert st["created"].endswith("Z")
    assert "owner" in st and st["annotations"] == {}
    pid = st["pid"]
    assert pid > 0 and pid_alive(pid)
    assert pidfile.read_text() == str(pid)  # as runc: the number, no newline
    assert os.path.exists(os.path.join(cocoon.root, c_life, "state.json"))
    assert os.path.exists(os.path.join(cocoon.root, c_life, "exec.fifo"))

    # The program has not run yet: no marker.
    assert not (hostdir / "marker").exists()

    cocoon.ok("start", c_life)
    wait_line(hostdir / "marker")
    assert (hostdir / "marker").read_text() == "started\n"
    st = cocoon.state(c_life)
    assert st["status"] == "running"
    assert st["pid"] == pid  # the init became the program
    assert not os.path.exists(os.path.join(cocoon.root, c_life, "exec.fifo"))

    cocoon.ok("kill", c_life, "KILL")
    cocoon.wait_status(c_life, "stopped")
    assert cocoon.state(c_life)["pid"] == 0

    cocoon.ok("delete", c_life)
    cocoon.fail("state", c_life, expect=[c_life, "does not exist"])
    nothing_left()


def test_annotations_in_state(cocoon, bundle):
    c_ann = cocoon.id("ann")
    bundle.config["annotations"] = {"org.example.key": "value/with/slash", "other": "x"}
    bundle.args("sleep", "1000")
    assert cocoon.create(c_ann, bundle).rc == 0
    assert cocoon.state(c_ann)["annotations"] == {"org.example.key": "value/with/slash",
                                                   "other": "x"}
    cocoon.ok("delete", "--force", c_ann)


def test_relative_bundle_path(cocoon, bundle, monkeypatch, tmp_path):
    c_rel = cocoon.id("rel")
    c_rel2 = cocoon.id("rel2")
    bundle.args("sleep", "1000")
    bundle.save()
    monkeypatch.chdir(bundle.path)
    cocoon.ok("create", c_rel)  # --bundle defaults to "."
    assert cocoon.state(c_rel)["bundle"] == bundle.path
    monkeypatch.chdir(tmp_path)
    cocoon.ok("create", "-b", os.path.basename(bundle.path), c_rel2)
    assert cocoon.state(c_rel2)["bundle"] == bundle.path
    cocoon.ok("delete", c_rel)
    cocoon.ok("delete", c_rel2)
    assert cocoon.state_dirs() == []


def test_list_table_and_json(cocoon, make_bundle):
    c_alpha = cocoon.id("alpha")
    c_beta = cocoon.id("beta")
    b = make_bundle("sleep", "1000")
    assert cocoon.create(c_alpha, b).rc == 0
    assert cocoon.create(c_beta, b).rc == 0
    cocoon.ok("start", c_beta)
    pa, pb = cocoon.state(c_alpha)["pid"], cocoon.state(c_beta)["pid"]

    lines = cocoon.ok("list").out.splitlines()
    assert lines[0].split() == ["ID", "PID", "STATUS", "BUNDLE", "CREATED"]
    rows = {l.split()[0]: l.split() for l in lines[1:]}
    assert set(rows) == {c_alpha, c_beta}
    assert rows[c_alpha][1:4] == [str(pa), "created", b.path]
    assert rows[c_beta][1:4] == [str(pb), "running", b.path]

    j = {c["id"]: c for c in json.loads(cocoon.ok("list", "--format", "json").out)}
    assert set(j) == {c_alpha, c_beta}
    assert j[c_alpha]["status"] == "created" and j[c_alpha]["pid"] == pa
    assert j[c_beta]["status"] == "running" and j[c_beta]["pid"] == pb
    assert j[c_beta]["bundle"] == b.path
    assert j[c_beta]["created"] == cocoon.state(c_beta)["created"]

    assert sorted(cocoon.ok("list", "-q").out.split()) == [c_alpha, c_beta]

    cocoon.ok("kill", c_beta, "KILL")
    cocoon.wait_status(c_beta, "stopped")
    j = {c["id"]: c for c in json.loads(cocoon.ok("list", "--format", "json").out)}
    assert j[c_beta]["status"] == "stopped" and j[c_beta]["pid"] == 0


# ---------------------------------------------------------------- wrong state

def test_start_twice(cocoon, make_bundle, hostdir):
    c_twice = cocoon.id("twice")
    b = marker_bundle(make_bundle, hostdir)
    assert cocoon.create(c_twice, b).rc == 0
    cocoon.ok("start", c_twice)
    cocoon.fail("start", c_twice, expect=[c_twice, "running"])
    wait_line(hostdir / "marker")
    assert cocoon.status(c_twice) == "running"
    assert (hostdir / "marker").read_text() == "started\n"  # ran exactly once


def test_start_stopped(cocoon, make_bundle, hostdir):
    c_st = cocoon.id("st")
    b = marker_bundle(make_bundle, hostdir, script_tail="exit 0")
    assert cocoon.create(c_st, b).rc == 0
    cocoon.ok("start", c_st)
    cocoon.wait_status(c_st, "stopped")
    cocoon.fail("start", c_st, expect=[c_st, "stopped"])
    assert (hostdir / "marker").read_text() == "started\n"
    cocoon.ok("delete", c_st)


def test_start_created_whose_init_died(cocoon, make_bundle, hostdir):
    c_dead = cocoon.id("dead")
    b = marker_bundle(make_bundle, hostdir)
    assert cocoon.create(c_dead, b).rc == 0
    pid = cocoon.state(c_dead)["pid"]
    os.kill(pid, signal.SIGKILL)
    cocoon.wait_status(c_dead, "stopped")
    cocoon.fail("start", c_dead, expect=[c_dead])
    assert not (hostdir / "marker").exists()
    cocoon.ok("delete", c_dead)
    assert cocoon.state_dirs() == []


def test_kill_stopped(cocoon, make_bundle):
    c_ks = cocoon.id("ks")
    b = make_bundle("true")
    assert cocoon.create(c_ks, b).rc == 0
    cocoon.ok("start", c_ks)
    cocoon.wait_status(c_ks, "stopped")
    cocoon.fail("kill", c_ks, "KILL", expect=[c_ks, "stopped"])
    assert cocoon.status(c_ks) == "stopped"


def test_kill_created(cocoon, make_bundle, hostdir):
    """A created container can be killed; its program never runs."""
    c_kc = cocoon.id("kc")
    b = marker_bundle(make_bundle, hostdir)
    assert cocoon.create(c_kc, b).rc == 0
    cocoon.ok("kill", c_kc, "KILL")
    cocoon.wait_status(c_kc, "stopped")
    cocoon.fail("start", c_kc)
    assert not (hostdir / "marker").exists()


def test_delete_running_needs_force(cocoon, make_bundle, nothing_left):
    c_dr = cocoon.id("dr")
    b = make_bundle("sleep", "1000")
    assert cocoon.create(c_dr, b).rc == 0
    cocoon.ok("start", c_dr)
    pid = cocoon.state(c_dr)["pid"]
    cocoon.fail("delete", c_dr, expect=[c_dr, "running", "--force"])
    assert cocoon.status(c_dr) == "running"
    assert pid_alive(pid)
    cocoon.ok("delete", "--force", c_dr)
    assert not pid_alive(pid)
    cocoon.fail("state", c_dr, expect=["does not exist"])
    nothing_left()


def test_delete_created_kills_init(cocoon, make_bundle, hostdir, nothing_left):
    c_dc = cocoon.id("dc")
    b = marker_bundle(make_bundle, hostdir)
    assert cocoon.create(c_dc, b).rc == 0
    pid = cocoon.state(c_dc)["pid"]
    cocoon.ok("delete", c_dc)
    assert not pid_alive(pid)
    assert not (hostdir / "marker").exists()
    nothing_left()


def test_duplicate_id(cocoon, make_bundle, hostdir):
    c_dup = cocoon.id("dup")
    b = marker_bundle(make_bundle, hostdir)
    assert cocoon.create(c_dup, b).rc == 0
    before = cocoon.state(c_dup)
    procs = token_pids(cocoon.token)
    other = make_bundle("sh", "-c", "echo second >> /host/marker")
    other.bind(hostdir, "/host")
    cocoon.fail("create", "-b", other.path, c_dup, expect=[c_dup, "already exists"])
    other.save()
    cocoon.fail("run", "-b", other.path, c_dup, expect=[c_dup, "already exists"])
    assert cocoon.state(c_dup) == before
    assert token_pids(cocoon.token) == procs
    cocoon.ok("start", c_dup)
    wait_line(hostdir / "marker")
    assert (hostdir / "marker").read_text() == "started\n"


def test_same_id_in_different_roots(cocoon, make_bundle, tmp_path):
    """Two state roots are independent: deleting container X in root B must
    not touch container X in root A (nor its cgroup: each root has its own)."""
    c_same = cocoon.id("same")
    b = make_bundle("sleep", "1000")
    assert cocoon.create(c_same, b).rc == 0
    pid_a = cocoon.state(c_same)["pid"]
    other_root = ["--root", tmp_path / "other"]
    r = cocoon("create", "-b", b.path, c_same, glob=other_root, with_root=False)
    assert r.rc == 0, r
    pid_b = json.loads(cocoon.ok("state", c_same, glob=other_root, with_root=False).out)["pid"]
    assert pid_a != pid_b
    cocoon.ok("delete", "--force", c_same, glob=other_root, with_root=False)
    assert pid_alive(pid_a), "deleting X in root B killed X in root A"
    assert cocoon.status(c_same) == "created"


def test_failed_create_leaves_same_id_in_other_root_alone(cocoon, make_bundle, tmp_path):
    """A create that fails must have no effect at all, not even on a running
    container of the same id in another state root."""
    c_same = cocoon.id("victim")
    good = make_bundle("sleep", "1000")
    assert cocoon.run(c_same, good, "--detach").rc == 0
    pid = cocoon.state(c_same)["pid"]
    bad = make_bundle("no-such-program")
    r = cocoon("create", "-b", bad.path, c_same, glob=["--root", tmp_path / "other"],
               with_root=False)
    assert_one_error(r, ["no-such-program"])
    assert pid_alive(pid), "a failed create killed another container"
    assert cocoon.status(c_same) == "running"


def test_pid_file_relative(cocoon, make_bundle, tmp_path, monkeypatch):
    c_pf = cocoon.id("pf")
    b = make_bundle("sleep", "1000")
    monkeypatch.chdir(tmp_path)
    assert cocoon.create(c_pf, b, "--pid-file", "rel.pid").rc == 0
    assert (tmp_path / "rel.pid").read_text() == str(cocoon.state(c_pf)["pid"])


# ---------------------------------------------------------------- run

def test_run_exit_code(cocoon, bundle):
    c_rc3 = cocoon.id("rc3")
    bundle.sh("exit 3")
    r = cocoon.run(c_rc3, bundle)
    assert r.rc == 3, r
    assert r.err == ""
    assert cocoon.state_dirs() == []


def test_run_exit_zero_and_output(cocoon, bundle):
    c_out = cocoon.id("out")
    bundle.sh("echo to-stdout; echo to-stderr >&2")
    r = cocoon.run(c_out, bundle)
    assert r.rc == 0, r
    assert r.out == "to-stdout\n"
    assert r.err == "to-stderr\n"


def test_run_stdin_passthrough(cocoon, bundle, tmp_path):
    c_in = cocoon.id("in")
    bundle.sh("tr a-z A-Z")
    inp = tmp_path / "in.txt"
    inp.write_text("hello stdin\n")
    with open(inp) as f:
        r = cocoon.run(c_in, bundle, stdin=f)
    assert r.rc == 0, r
    assert r.out == "HELLO STDIN\n"


def test_run_killed_by_signal_without_pidns(cocoon, bundle):
    """A program killed by a signal: exit status 128+signal. (In a pid
    namespace sh is pid 1 and cannot SIGKILL itself, so no pid ns here.)"""
    c_k9 = cocoon.id("k9")
    bundle.drop_namespace("pid")
    bundle.sh("kill -9 $$")
    r = cocoon.run(c_k9, bundle)
    assert r.rc == 137, r
    assert cocoon.state_dirs() == []


def test_run_killed_from_outside(cocoon, bundle, hostdir):
    c_ext = cocoon.id("ext")
    bundle.bind(hostdir, "/host")
    bundle.sh("echo ready > /host/ready; exec sleep 1000")
    bundle.save()
    p = cocoon.popen("run", "-b", bundle.path, c_ext, stdout=subprocess.DEVNULL,
                     stderr=subprocess.PIPE)
    try:
        wait_for(lambda: (hostdir / "ready").exists(), "the container to start")
        assert cocoon.status(c_ext) == "running"
        cocoon.ok("kill", c_ext, "KILL")
        assert p.wait(TIMEOUT) == 137
    finally:
        p.kill()
        p.wait()
    assert cocoon.state_dirs() == []


def test_run_forwards_signals(cocoon, bundle, hostdir):
    c_fwd = cocoon.id("fwd")
    bundle.bind(hostdir, "/host")
    bundle.sh("trap 'exit 7' TERM; echo ready > /host/ready; while :; do sleep 0.05; done")
    bundle.save()
    p = cocoon.popen("run", "-b", bundle.path, c_fwd, stdout=subprocess.DEVNULL,
                     stderr=subprocess.PIPE)
    try:
        wait_for(lambda: (hostdir / "ready").exists(), "the container to start")
        p.send_signal(signal.SIGTERM)
        assert p.wait(TIMEOUT) == 7
    finally:
        p.kill()
        p.wait()
    assert cocoon.state_dirs() == []
    wait_for(lambda: token_pids(cocoon.token) == [], "no leftover process")


def test_run_reaps_orphans_and_waits_for_init_only(cocoon, bundle):
    """The init exits while a background child is still alive: run returns
    the init's status, and the container's remaining processes are gone."""
    c_orph = cocoon.id("orph")
    bundle.sh("sleep 1000 & exit 5")
    r = cocoon.run(c_orph, bundle)
    assert r.rc == 5, r
    assert cocoon.state_dirs() == []
    wait_for(lambda: token_pids(cocoon.token) == [], "no leftover process")


def test_run_detach(cocoon, bundle, tmp_path, nothing_left):
    c_det = cocoon.id("det")
    bundle.args("sleep", "1000")
    pidfile = tmp_path / "d.pid"
    r = cocoon.run(c_det, bundle, "--detach", "--pid-file", pidfile)
    assert r.rc == 0, r
    st = cocoon.state(c_det)
    assert st["status"] == "running"
    assert pidfile.read_text() == str(st["pid"])
    cocoon.ok("kill", c_det, "KILL")
    cocoon.wait_status(c_det, "stopped")
    cocoon.ok("delete", c_det)
    nothing_left()


def test_run_detach_short_flag(cocoon, bundle):
    c_det2 = cocoon.id("det2")
    bundle.args("sleep", "1000")
    assert cocoon.run(c_det2, bundle, "-d").rc == 0
    assert cocoon.status(c_det2) == "running"
    cocoon.ok("delete", "-f", c_det2)


def test_run_state_visible_while_running(cocoon, bundle, hostdir):
    """While a foreground run waits, state/list/kill work on it (it must not
    hold the state lock)."""
    c_fg = cocoon.id("fg")
    bundle.bind(hostdir, "/host")
    bundle.sh("echo ready > /host/ready; exec sleep 1000")
    bundle.save()
    p = cocoon.popen("run", "-b", bundle.path, c_fg, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: (hostdir / "ready").exists(), "the container to start")
        assert cocoon.status(c_fg) == "running"
        assert c_fg in cocoon.ok("list", "-q").out.split()
        cocoon.ok("kill", c_fg, "KILL")
        assert p.wait(TIMEOUT) == 137
    finally:
        p.kill()
        p.wait()

"""`cocoon exec` into running and created containers, and the OCI hooks
(prestart, createRuntime, createContainer, startContainer, poststart,
poststop), observed from inside the container and from hook scripts."""
import json
import os
import re

import pytest

from cocoonlib import needs_root, pid_alive, read_file, token_pids, wait_for, wait_line
from enginelib import (hook_entry, parse_hook_log, proc_cgroups, run_in_pty,
                       write_hook_script)

pytestmark = needs_root


@pytest.fixture
def running(cocoon, make_bundle, hostdir):
    """A running container (`sleep 1000`, hostdir at /host); returns its id."""
    b = make_bundle("sleep", "1000")
    b.bind(hostdir, "/host")
    cid = cocoon.id("ex")
    r = cocoon.run(cid, b, "--detach")
    assert r.rc == 0, r
    return cid


# ---------------------------------------------------------------- exec

def test_exec_output_and_exit_status(cocoon, running):
    r = cocoon("exec", running, "sh", "-c", "echo to-out; echo to-err >&2; exit 5")
    assert r.rc == 5, r
    assert r.out == "to-out\n"
    assert r.err == "to-err\n"
    r = cocoon("exec", running, "true")
    assert (r.rc, r.out, r.err) == (0, "", "")
    assert cocoon.status(running) == "running"


def test_exec_killed_by_signal_status(cocoon, running):
    """An exec'd process killed by a signal: 128 + the signal (it is not the
    pid namespace's init, so it can kill itself)."""
    r = cocoon("exec", running, "sh", "-c", "kill -9 $$")
    assert r.rc == 137, r


def test_exec_runs_in_the_container_pid_namespace(cocoon, running):
    init = cocoon.state(running)["pid"]
    # `; true`: otherwise sh execs ps in its own place
    r = cocoon.ok("exec", running, "sh", "-c", "echo $$; ps -o pid,args; true")
    lines = r.out.splitlines()
    assert lines[0] != "1" and int(lines[0]) > 1
    procs = {l.split(None, 1)[0]: l.split(None, 1)[1] for l in lines[2:]}
    assert procs["1"] == "sleep 1000", r.out
    # it sees the container's processes only: the init, its shell, ps
    assert len(procs) == 3, r.out
    assert init != 1  # host pid of the init, which is pid 1 inside


def test_exec_env(cocoon, running):
    r = cocoon.ok("exec", "--env", "FOO=bar", "--env", "EMPTY=", running, "env")
    env = r.out.splitlines()
    assert "FOO=bar" in env and "EMPTY=" in env
    # the container's environment comes along
    assert any(e.startswith("PATH=") for e in env)
    assert f"COCOON_TEST_TOKEN={cocoon.token}" in env


def test_exec_env_overrides_the_containers_value(cocoon, running):
    """`exec --env TERM=dumb` must replace the config's TERM=xterm, not add
    a second TERM: with both in the environment, getenv() in glibc
    programs returns the first one (xterm) and the override is lost. runc
    and crun leave one entry per name."""
    r = cocoon.ok("exec", "--env", "TERM=dumb", running, "env")
    terms = [e for e in r.out.splitlines() if e.startswith("TERM=")]
    assert terms == ["TERM=dumb"], f"environment has {terms}"


def test_exec_cwd(cocoon, running):
    assert cocoon.ok("exec", "--cwd", "/tmp", running, "pwd").out == "/tmp\n"
    assert cocoon.ok("exec", running, "pwd").out == "/\n"
    cocoon.fail("exec", "--cwd", "tmp", running, "pwd", expect=["--cwd", "absolute"])


def test_exec_user(cocoon, running):
    r = cocoon.ok("exec", "--user", "1000:1000", running, "sh", "-c",
                  "id -u; id -g; id -G; grep ^CapEff /proc/self/status")
    lines = r.out.splitlines()
    assert lines[:3] == ["1000", "1000", "1000"]
    assert lines[3].split()[1] == "0000000000000000"  # no capability left
    r = cocoon.ok("exec", "--user", "1234", running, "sh", "-c", "id -u; id -g")
    assert r.out.split() == ["1234", "0"]
    cocoon.fail("exec", "--user", "nobody", running, "true", expect=["--user", "nobody"])


def test_exec_tty(cocoon, running):
    argv = cocoon.argv(["exec", "--tty", running, "sh", "-c",
                        "tty; stty size; [ -t 0 ] && [ -t 1 ] && echo all-tty; exit 7"])
    rc, out = run_in_pty(argv, env=cocoon.env, rows=33, cols=111)
    text = out.decode(errors="replace").replace("\r\n", "\n")
    assert rc == 7, text
    lines = text.splitlines()
    assert re.fullmatch(r"/dev/pts/\d+", lines[0]), text
    assert lines[1:] == ["33 111", "all-tty"], text


def test_exec_detach_pid_file(cocoon, running, tmp_path, nothing_left):
    pidfile = tmp_path / "exec.pid"
    r = cocoon("exec", "--detach", "--pid-file", pidfile, running, "sleep", "1000")
    assert (r.rc, r.out, r.err) == (0, "", ""), r
    pid = int(pidfile.read_text())
    init = cocoon.state(running)["pid"]
    assert pid_alive(pid)
    wait_for(lambda: read_file(f"/proc/{pid}/comm", "").strip() == "sleep", "sleep to run")
    # in the container's namespaces and cgroups
    for ns in ("pid", "mnt", "net", "ipc", "uts", "cgroup"):
        assert os.readlink(f"/proc/{pid}/ns/{ns}") == os.readlink(f"/proc/{init}/ns/{ns}"), ns
    assert proc_cgroups(pid) == proc_cgroups(init)
    assert sorted(json.loads(cocoon.ok("ps", "--format", "json", running).out)) == \
        sorted([init, pid])
    cocoon.ok("delete", "--force", running)
    assert not pid_alive(pid)
    nothing_left()


def test_exec_process_json(cocoon, running, tmp_path):
    proc = {"args": ["sh", "-c", "echo \"$FOO $(pwd) $(id -u):$(id -g)\"; exit 3"],
            "env": ["PATH=/bin", "FOO=from-json"], "cwd": "/tmp",
            "user": {"uid": 5, "gid": 6}, "terminal": False,
            "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"],
                             "permitted": ["CAP_KILL"]}}
    f = tmp_path / "process.json"
    f.write_text(json.dumps(proc))
    r = cocoon("exec", "--process", f, running)
    assert r.rc == 3, r
    assert r.out == "from-json /tmp 5:6\n"


def test_exec_process_json_without_capabilities(cocoon, make_bundle, tmp_path):
    """A process.json without `capabilities` must not run with more than
    the container has (runc falls back to the container's capabilities,
    and with none at all drops every one). cocoon keeps all of its own:
    CAP_SYS_ADMIN and the rest, inside a container that has only
    CAP_KILL."""
    b = make_bundle("sleep", "1000")
    b.process["capabilities"] = {k: ["CAP_KILL"] for k in ("bounding", "effective",
                                                            "permitted")}
    cid = cocoon.id("exnocap")
    assert cocoon.run(cid, b, "--detach").rc == 0
    f = tmp_path / "process.json"
    f.write_text(json.dumps({"args": ["grep", "^Cap", "/proc/self/status"],
                             "env": ["PATH=/bin"], "cwd": "/"}))
    r = cocoon.ok("exec", "--process", f, cid)
    caps = {l.split()[0]: int(l.split()[1], 16) for l in r.out.splitlines()}
    kill_only = 1 << 5
    assert caps["CapBnd:"] & ~kill_only == 0, r.out
    assert caps["CapEff:"] & ~kill_only == 0, r.out


def test_exec_into_stopped_container(cocoon, make_bundle, nothing_left):
    b = make_bundle("true")
    cid = cocoon.id("exstop")
    assert cocoon.create(cid, b).rc == 0
    cocoon.ok("start", cid)
    cocoon.wait_status(cid, "stopped")
    cocoon.fail("exec", cid, "echo", "hi", expect=[cid, "stopped"])
    cocoon.ok("delete", cid)
    nothing_left()


def test_exec_into_missing_container(cocoon):
    cocoon.fail("exec", cocoon.id("nobody"), "true", expect=["does not exist"])


def test_exec_missing_program(cocoon, running):
    procs = token_pids(cocoon.token)
    cocoon.fail("exec", running, "no-such-program", "arg", expect=[running, "no-such-program"])
    cocoon.fail("exec", running, "/bin/no/such", expect=["/bin/no/such"])
    assert cocoon.status(running) == "running"
    assert token_pids(cocoon.token) == procs


def test_exec_into_paused_container(cocoon, running):
    cocoon.ok("pause", running)
    try:
        cocoon.fail("exec", running, "true", expect=[running, "paused"])
    finally:
        cocoon.ok("resume", running)


def test_exec_into_created_container(cocoon, make_bundle, hostdir):
    """exec works before start; the container's own program still waits."""
    b = make_bundle("sh", "-c", "echo started > /host/marker; exec sleep 1000")
    b.bind(hostdir, "/host")
    cid = cocoon.id("excr")
    assert cocoon.create(cid, b).rc == 0
    r = cocoon.ok("exec", cid, "sh", "-c", "echo in-created; cat /proc/1/comm")
    assert r.out == "in-created\ncocoon\n"
    assert cocoon.status(cid) == "created"
    assert not (hostdir / "marker").exists()
    cocoon.ok("start", cid)
    wait_line(hostdir / "marker")
    assert cocoon.status(cid) == "running"


# ---------------------------------------------------------------- hooks

ALL_HOOKS = ["prestart", "createRuntime", "createContainer", "startContainer", "poststart",
             "poststop"]


def hooked_bundle(make_bundle, hostdir, args, delays=None):
    """A bundle whose every hook appends to hostdir/hooks.log. Hooks run in
    the runtime's mount namespace (host paths), but startContainer runs in
    the container: there, the script and log are reached through /host."""
    delays = delays or {}
    script = write_hook_script(hostdir)
    log = hostdir / "hooks.log"
    b = make_bundle(*args)
    b.bind(hostdir, "/host")
    b.config["hooks"] = {
        k: [hook_entry(script, k, log, delays.get(k))] for k in ALL_HOOKS if k != "startContainer"}
    b.config["hooks"]["startContainer"] = [
        hook_entry("/host/hook.sh", "startContainer", "/host/hooks.log",
                   delays.get("startContainer"))]
    b.save()
    return b, log


def kinds(log):
    return [k for k, _c, _s in parse_hook_log(read_file(log, ""))]


def test_hooks_run_once_each_with_state(cocoon, make_bundle, hostdir, nothing_left):
    b, log = hooked_bundle(make_bundle, hostdir, ["sleep", "1000"])
    cid = cocoon.id("hooks")
    r = cocoon.create(cid, b)
    assert r.rc == 0 and r.err == "", r
    assert kinds(log) == ["prestart", "createRuntime", "createContainer"]
    pid = cocoon.state(cid)["pid"]

    cocoon.ok("start", cid)
    wait_for(lambda: len(kinds(log)) == 5, "startContainer and poststart hooks")
    cocoon.ok("kill", cid, "KILL")
    cocoon.wait_status(cid, "stopped")
    assert len(kinds(log)) == 5  # nothing runs at kill or exit
    cocoon.ok("delete", cid)
    entries = parse_hook_log(read_file(log))
    got = [k for k, _c, _s in entries]
    assert sorted(got) == sorted(ALL_HOOKS), got  # each exactly once
    assert got[:3] == ["prestart", "createRuntime", "createContainer"]
    assert got[-1] == "poststop"
    assert got.index("startContainer") < got.index("poststop")

    want_status = {"prestart": "creating", "createRuntime": "creating",
                   "createContainer": "creating", "startContainer": "created",
                   "poststart": "running", "poststop": "stopped"}
    for kind, _comm, st in entries:
        assert st["id"] == cid, (kind, st)
        assert st["status"] == want_status[kind], (kind, st)
        assert st["bundle"] == b.path, (kind, st)
        assert st["ociVersion"].startswith("1."), (kind, st)
        assert st["pid"] == (0 if kind == "poststop" else pid), (kind, st)
    nothing_left()


@pytest.mark.parametrize("how", ["create-start", "run-detach"])
def test_poststart_runs_after_the_program_started(cocoon, make_bundle, hostdir, how):
    """poststart hooks run after the user's program has been executed
    (runtime spec, lifecycle step 9), so after every startContainer hook
    (which runs in the init just before execve). A slow startContainer hook
    makes the order visible: poststart must still come after it, and must
    see the program (comm `sleep`), not the runtime's init (comm `cocoon`).
    runc gets this for free: `start` reads the exec fifo until EOF, which
    comes when the init's write end closes on execve (O_CLOEXEC)."""
    b, log = hooked_bundle(make_bundle, hostdir, ["sleep", "1000"],
                           delays={"startContainer": "0.5"})
    cid = cocoon.id("poststart")
    if how == "create-start":
        assert cocoon.create(cid, b).rc == 0
        cocoon.ok("start", cid)
    else:
        assert cocoon.run(cid, b, "--detach").rc == 0
    wait_for(lambda: len(kinds(log)) == 5, "startContainer and poststart hooks")
    entries = parse_hook_log(read_file(log))
    order = [k for k, _c, _s in entries]
    comm = {k: c for k, c, _s in entries}
    assert order.index("startContainer") < order.index("poststart"), order
    assert comm["poststart"] == "sleep", \
        f"poststart ran while the container's pid was still `{comm['poststart']}`"


def test_hooks_in_run(cocoon, make_bundle, hostdir):
    """Foreground `run` goes through all six hooks, poststop at the end."""
    b, log = hooked_bundle(make_bundle, hostdir, ["sh", "-c", "exit 0"])
    r = cocoon.run(cocoon.id("hookrun"), b)
    assert r.rc == 0 and r.err == "", r
    got = kinds(log)
    assert sorted(got) == sorted(ALL_HOOKS), got
    assert got[:3] == ["prestart", "createRuntime", "createContainer"]
    assert got[-1] == "poststop"


def test_hook_env_and_args(cocoon, make_bundle, hostdir, tmp_path):
    """A hook gets exactly its own env (not the runtime's) and args."""
    out = tmp_path / "env.txt"
    b = make_bundle("true")
    b.config["hooks"] = {"prestart": [{
        "path": "/bin/sh",
        "args": ["my-hook", "-c", f"cat /proc/$$/environ | tr '\\0' '\\n' > {out}; "
                                  f"echo \"$0\" >> {out}"],
        "env": ["HOOKVAR=1", "PATH=/bin:/usr/bin"]}]}
    assert cocoon.run(cocoon.id("hookenv"), b).rc == 0
    assert out.read_text().splitlines() == ["HOOKVAR=1", "PATH=/bin:/usr/bin", "my-hook"]


def test_failing_create_runtime_hook(cocoon, make_bundle, hostdir, nothing_left):
    b, log = hooked_bundle(make_bundle, hostdir, ["sleep", "1000"])
    b.config["hooks"]["createRuntime"] = [{"path": "/bin/sh", "args": ["sh", "-c", "exit 3"]}]
    b.save()
    cid = cocoon.id("hookfail")
    cocoon.fail("create", "-b", b.path, cid, expect=["createRuntime", "/bin/sh", "3"])
    assert kinds(log) == ["prestart"]  # nothing after the failing hook
    nothing_left()


def test_missing_hook_program_is_one_error(cocoon, make_bundle, nothing_left):
    """A hook path that does not exist: one error line naming the hook and
    the path (cocoon also prints the hook child's exec error: two lines)."""
    b = make_bundle("sleep", "1000")
    b.config["hooks"] = {"createContainer": [{"path": "/no/such/hook"}]}
    b.save()
    cocoon.fail("create", "-b", b.path, cocoon.id("hookmiss"),
                expect=["createContainer", "/no/such/hook"])
    nothing_left()


def test_hook_timeout(cocoon, make_bundle, tmp_path, nothing_left):
    pidfile = tmp_path / "hook.pid"
    b = make_bundle("sleep", "1000")
    b.config["hooks"] = {"prestart": [{
        "path": "/bin/sh", "args": ["sh", "-c", f"echo $$ > {pidfile}; exec sleep 1000"],
        "timeout": 1}]}
    b.save()
    cocoon.fail("create", "-b", b.path, cocoon.id("hooktime"),
                expect=["prestart", "timed out"])
    hook_pid = int(wait_line(pidfile))
    assert not pid_alive(hook_pid), "the timed-out hook is still running"
    nothing_left()


def test_failing_poststop_hook_only_warns(cocoon, make_bundle, tmp_path, nothing_left):
    ran = tmp_path / "poststop.ran"
    b = make_bundle("true")
    b.config["hooks"] = {"poststop": [{"path": "/bin/sh",
                                       "args": ["sh", "-c", f"echo x >> {ran}; exit 9"]}]}
    cid = cocoon.id("poststop")
    assert cocoon.create(cid, b).rc == 0
    cocoon.ok("start", cid)
    cocoon.wait_status(cid, "stopped")
    r = cocoon("delete", cid)
    assert r.rc == 0, r
    assert len(r.err_lines) == 1 and "warning" in r.err and "poststop" in r.err, r
    assert ran.read_text() == "x\n"
    nothing_left()
    # the same in a foreground run
    r = cocoon.run(cocoon.id("poststop2"), b)
    assert r.rc == 0 and "poststop" in r.err, r
    assert ran.read_text() == "x\nx\n"
    assert cocoon.state_dirs() == []

"""`cocoon kill`: signal names and numbers, the default TERM, --all."""
import pytest

from cocoonlib import needs_root, pid_alive, token_pids, wait_for, wait_line

pytestmark = needs_root

# sh is pid 1 of the container's pid namespace: signals without a handler
# are dropped by the kernel, so the program traps the ones the tests send.
TRAPPER = (
    "trap 'echo usr1 >> /host/log' USR1; "
    "trap 'echo usr2 >> /host/log' USR2; "
    "trap 'echo hup >> /host/log' HUP; "
    "trap 'echo term >> /host/log; exit 0' TERM; "
    "echo ready > /host/ready; "
    "while :; do sleep 0.05; done"
)


@pytest.fixture
def trapper(cocoon, make_bundle, hostdir):
    b = make_bundle()
    b.bind(hostdir, "/host")
    b.sh(TRAPPER)
    cid = cocoon.id("sig")
    assert cocoon.create(cid, b).rc == 0
    cocoon.ok("start", cid)
    wait_for(lambda: (hostdir / "ready").exists(), "the trapper to be ready")
    return cid


def log_lines(hostdir):
    try:
        return (hostdir / "log").read_text().split()
    except FileNotFoundError:
        return []


def expect_log(hostdir, lines):
    wait_for(lambda: log_lines(hostdir) == lines, f"log to be {lines}")


@pytest.mark.parametrize("name", ["USR1", "SIGUSR1", "sigusr1", "usr1", "10"])
def test_kill_usr1_spellings(cocoon, trapper, hostdir, name):
    cocoon.ok("kill", trapper, name)
    expect_log(hostdir, ["usr1"])
    assert cocoon.status(trapper) == "running"


def test_kill_several_signals_in_order(cocoon, trapper, hostdir):
    cocoon.ok("kill", trapper, "USR2")
    expect_log(hostdir, ["usr2"])
    cocoon.ok("kill", trapper, "1")  # HUP by number
    expect_log(hostdir, ["usr2", "hup"])
    cocoon.ok("kill", trapper, "SIGUSR1")
    expect_log(hostdir, ["usr2", "hup", "usr1"])


def test_kill_default_is_term(cocoon, trapper, hostdir):
    cocoon.ok("kill", trapper)
    expect_log(hostdir, ["term"])
    cocoon.wait_status(trapper, "stopped")


@pytest.mark.parametrize("name", ["TERM", "sigterm", "15"])
def test_kill_term(cocoon, trapper, hostdir, name):
    cocoon.ok("kill", trapper, name)
    expect_log(hostdir, ["term"])
    cocoon.wait_status(trapper, "stopped")
    cocoon.ok("delete", trapper)


@pytest.mark.parametrize("name", ["KILL", "SIGKILL", "9"])
def test_kill_kill(cocoon, trapper, hostdir, name):
    pid = cocoon.state(trapper)["pid"]
    cocoon.ok("kill", trapper, name)
    cocoon.wait_status(trapper, "stopped")
    assert not pid_alive(pid)
    assert log_lines(hostdir) == []  # no trap for KILL


@pytest.mark.parametrize("bad", ["BOGUS", "SIGFOO", "0", "-1", "65", "1x", "", "RTMIN+99"])
def test_kill_unknown_signal(cocoon, trapper, hostdir, bad):
    cocoon.fail("kill", trapper, bad, expect=["signal", f"`{bad}`"])
    assert cocoon.status(trapper) == "running"
    assert log_lines(hostdir) == []


def test_kill_all_reaches_every_process(cocoon, make_bundle, hostdir):
    """--all signals every process of the container, not only the init:
    the init's background children die of TERM, its `wait` returns."""
    b = make_bundle()
    b.bind(hostdir, "/host")
    b.sh("sleep 1001 & sleep 1002 & echo ready > /host/ready; wait; "
         "echo children-gone > /host/done; exec sleep 1003")
    cid = cocoon.id("all")
    assert cocoon.create(cid, b).rc == 0
    cocoon.ok("start", cid)
    wait_for(lambda: (hostdir / "ready").exists(), "the container to start")
    wait_for(lambda: len(token_pids(cocoon.token)) == 3, "three container processes")
    cocoon.ok("kill", "--all", cid, "TERM")
    wait_for(lambda: (hostdir / "done").exists(), "the children to die of TERM")
    assert cocoon.status(cid) == "running"  # pid 1 without a TERM handler
    cocoon.ok("kill", "-a", cid, "KILL")
    cocoon.wait_status(cid, "stopped")
    wait_for(lambda: token_pids(cocoon.token) == [], "every process to be gone")


def test_kill_all_without_pid_namespace(cocoon, make_bundle, hostdir):
    """Without a pid namespace --all must still reach the children."""
    b = make_bundle()
    b.drop_namespace("pid")
    b.bind(hostdir, "/host")
    # A handler (not an ignore, which children would inherit) keeps the
    # init alive; $! is a host pid as there is no pid namespace.
    b.sh("trap 'echo term >> /host/log' TERM; sleep 1001 & echo $! > /host/child; "
         "while :; do sleep 0.05; done")
    cid = cocoon.id("allnp")
    assert cocoon.create(cid, b).rc == 0
    cocoon.ok("start", cid)
    wait_line(hostdir / "child")
    child = int((hostdir / "child").read_text())
    assert pid_alive(child)
    cocoon.ok("kill", "--all", cid, "TERM")
    wait_for(lambda: not pid_alive(child), "the child to die of TERM")
    expect_log(hostdir, ["term"])
    assert cocoon.status(cid) == "running"
    cocoon.ok("delete", "--force", cid)
    wait_for(lambda: token_pids(cocoon.token) == [], "every process to be gone")


def test_delete_force_kills_every_process(cocoon, make_bundle, hostdir, nothing_left):
    b = make_bundle()
    b.bind(hostdir, "/host")
    b.sh("sleep 1001 & sleep 1002 & echo ready > /host/ready; wait")
    cid = cocoon.id("df")
    assert cocoon.create(cid, b).rc == 0
    cocoon.ok("start", cid)
    wait_for(lambda: len(token_pids(cocoon.token)) == 3, "three container processes")
    cocoon.ok("delete", "--force", cid)
    nothing_left()


def test_delete_force_without_pid_namespace(cocoon, make_bundle, hostdir, nothing_left):
    """Without a pid namespace, killing the init does not kill its children:
    delete --force must still take them all down."""
    b = make_bundle()
    b.drop_namespace("pid")
    b.bind(hostdir, "/host")
    b.sh("sleep 1001 & sleep 1002 & echo ready > /host/ready; wait")
    cid = cocoon.id("dfnp")
    assert cocoon.create(cid, b).rc == 0
    cocoon.ok("start", cid)
    wait_for(lambda: len(token_pids(cocoon.token)) == 3, "three container processes")
    cocoon.ok("delete", "--force", cid)
    nothing_left()

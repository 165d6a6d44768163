"""cocoon-init, the guest agent, run on the host: PID 1 of new mount, pid, uts
and ipc namespaces, with a Unix socketpair in place of vsock, serving a
busybox container root. Driven by agentlib's own implementation of the
protocol."""
import errno
import os
import shutil
import signal
import socket
import struct
import subprocess
import time

import pytest

import agentlib as A
from cocoonlib import TOKEN_VAR, mount_snapshot, token_pids, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, mounts)")


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory):
    if not os.access(A.agent_binary(), os.X_OK):
        pytest.skip(f"cocoon-init not built at {A.agent_binary()} (ninja -C build)")
    if not os.path.exists("/bin/busybox"):
        pytest.skip("/bin/busybox missing (apt-get install busybox-static)")
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) missing")
    return A.make_rootfs(str(tmp_path_factory.mktemp("agent") / "rootfs"))


@pytest.fixture
def agent(rootfs, tmp_path, token):
    """A fresh agent with the HELLO read; checks afterwards that no process of
    the test and no mount under the root is left on the host."""
    before = mount_snapshot(rootfs)
    a = A.Agent(rootfs, log=str(tmp_path / "agent.log"))
    a.token = token
    assert a.hello() == A.VERSION
    yield a
    a.close()
    wait_for(lambda: token_pids(token) == [], f"no process left (still {token_pids(token)})",
             timeout=10)
    assert mount_snapshot(rootfs) == before, "mounts left on the host"


def proc(agent, args, **kw):
    p = A.process(args, **kw)
    p["env"] = p["env"] + [f"{TOKEN_VAR}={agent.token}"]
    return p


def sh(agent, script, **kw):
    return proc(agent, ["sh", "-c", script], **kw)


def only_agent_left(agent):
    """The agent's pid namespace holds nothing but the agent."""
    pid = agent.agent_pid()
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return f.read().split() == []


# ---------------------------------------------------------------- basics

def test_hello_and_echo(agent):
    st, out, err = agent.run(proc(agent, ["echo", "hi"]))
    assert (st, out, err) == (0, "hi\n", "")
    assert agent.shutdown() == 0


@pytest.mark.parametrize("script,status", [
    ("exit 0", 0), ("exit 7", 7), ("exit 255", 255),
    ("kill -TERM $$", 128 + signal.SIGTERM), ("kill -KILL $$", 128 + signal.SIGKILL),
])
def test_exit_status(agent, script, status):
    st, _, _ = agent.run(sh(agent, script))
    assert st == status


def test_stderr_is_separate(agent):
    st, out, err = agent.run(sh(agent, "echo out; echo err >&2; echo out2"))
    assert st == 0
    assert out == "out\nout2\n"
    assert err == "err\n"


def test_env_cwd_user_hostname(agent):
    script = 'echo "$FOO"; pwd; id -u; id -g; id -G; hostname; umask'
    p = sh(agent, script, uid=1000, gid=1000, cwd="/home/user")
    p["env"].append("FOO=bar baz")
    p["user"]["additionalGids"] = [5]
    p["user"]["umask"] = 0o27
    st, out, err = agent.run(p, hostname="agentbox")
    assert st == 0, err
    assert out.splitlines() == ["bar baz", "/home/user", "1000", "1000", "1000 5", "agentbox",
                                "0027"]


def test_container_root_mounts(agent):
    script = ("test -c /dev/null && test -c /dev/urandom && test -L /dev/ptmx && "
              "test -d /dev/pts && test -d /dev/shm && test -r /proc/self/status && "
              "test -d /sys/kernel && ! touch /sys/x 2>/dev/null && echo ok; "
              "head -c 4 /dev/zero | wc -c; cat /proc/1/comm")
    st, out, err = agent.run(sh(agent, script))
    assert st == 0, err
    assert out.split() == ["ok", "4", "cocoon-init"]


def test_rlimits_and_no_caps(agent):
    p = sh(agent, "ulimit -n; grep CapEff /proc/self/status")
    p["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200}]
    st, out, err = agent.run(p)
    assert st == 0, err
    lines = out.split("\n")
    assert lines[0] == "100"
    assert lines[1].split() == ["CapEff:", "0000000000000000"]


# ---------------------------------------------------------------- stdio

def test_stdin_cat_large_with_flow_control(agent):
    data = os.urandom(3 << 20)
    err, pid, msg = agent.create(proc(agent, ["cat"]))
    assert err == 0, msg
    assert agent.start()[0] == 0
    agent.stdin(0, data)
    agent.stdin(0, b"")
    assert agent.wait_exit(0, timeout=60) == 0
    assert agent.output(0) == data
    assert 0 < agent.max_unacked <= A.WINDOW
    # Every stdin byte was credited back.
    assert agent.stdin_credit[0] == A.WINDOW


def test_output_stops_at_the_window(agent):
    """Without credit the agent sends exactly one window, then waits."""
    agent.auto_credit = False
    assert agent.create(sh(agent, "head -c 1000000 /dev/zero; echo done >&2"))[0] == 0
    assert agent.start()[0] == 0
    deadline = time.monotonic() + A.TIMEOUT
    while agent.unacked.get((0, A.S_STDOUT), 0) < A.WINDOW and time.monotonic() < deadline:
        agent.recv()
    assert agent.unacked[(0, A.S_STDOUT)] == A.WINDOW
    # Nothing more comes on stdout while the window is used up.
    end = time.monotonic() + 0.5
    while time.monotonic() < end:
        try:
            f = agent.recv(timeout=max(0.01, end - time.monotonic()))
        except TimeoutError:
            break
        assert f.type != A.STDOUT, f"agent sent beyond the window: {f}"
    agent.auto_credit = True
    agent.credit(0, A.S_STDOUT, A.WINDOW)
    assert agent.wait_exit(0) == 0
    assert agent.output(0) == b"\0" * 1000000
    assert agent.output(0, A.S_STDERR) == b"done\n"


def test_terminal_and_resize(agent):
    script = ('[ -t 0 ] && [ -t 1 ] && echo tty-yes; stty size; read x; stty size; '
              'echo "got $x"')
    assert agent.create(sh(agent, script, terminal=True, size=(24, 80)))[0] == 0
    assert agent.start()[0] == 0
    wait_for(lambda: agent.recv() and b"24 80" in agent.output(0), "the first stty size")
    agent.resize(0, 40, 120)
    agent.stdin(0, b"go\n")
    assert agent.wait_exit(0) == 0
    out = agent.output(0).decode().replace("\r", "")
    assert "tty-yes\n" in out
    assert "24 80\n" in out
    assert "40 120\n" in out
    assert "got go\n" in out
    assert agent.output(0, A.S_STDERR) == b""


def test_terminal_stdin_eof(agent):
    assert agent.create(proc(agent, ["cat"], terminal=True))[0] == 0
    assert agent.start()[0] == 0
    agent.stdin(0, b"line\n")
    agent.stdin(0, b"")
    agent.stdin(0, b"")  # ending it again is harmless
    assert agent.wait_exit(0) == 0
    assert b"line" in agent.output(0)


# ---------------------------------------------------------------- exec, signals

def test_exec_while_init_runs(agent):
    assert agent.create(proc(agent, ["sleep", "100"]))[0] == 0
    assert agent.start()[0] == 0
    err, pid, msg = agent.exec_(1, sh(agent, "echo exec-out; echo exec-err >&2; exit 4"))
    assert err == 0, msg
    assert pid > 1
    assert agent.wait_exit(1) == 4
    assert agent.output(1) == b"exec-out\n"
    assert agent.output(1, A.S_STDERR) == b"exec-err\n"
    # stdin of an exec'd process
    assert agent.exec_(2, proc(agent, ["tr", "a-z", "A-Z"]))[0] == 0
    agent.stdin(2, b"hello\n")
    agent.stdin(2, b"")
    assert agent.wait_exit(2) == 0
    assert agent.output(2) == b"HELLO\n"
    # number in use, and a bad one
    assert agent.exec_(0, proc(agent, ["true"]))[0] == errno.EINVAL
    assert agent.signal(0, signal.SIGTERM)[0] == 0
    assert agent.wait_exit(0) == 128 + signal.SIGTERM
    assert agent.shutdown() == 0


def test_signal_all(agent):
    assert agent.create(sh(agent, "sleep 100 & sleep 100 & wait"))[0] == 0
    assert agent.start()[0] == 0
    assert agent.exec_(1, proc(agent, ["sleep", "100"]))[0] == 0
    assert agent.signal(0, signal.SIGKILL, all_=True)[0] == 0
    assert agent.wait_exit(0) == 128 + signal.SIGKILL
    assert agent.wait_exit(1) == 128 + signal.SIGKILL
    wait_for(lambda: only_agent_left(agent), "every process to be gone")
    assert agent.shutdown() == 0


def test_signal_unknown_process(agent):
    assert agent.create(proc(agent, ["sleep", "100"]))[0] == 0
    assert agent.signal(9, signal.SIGTERM)[0] == errno.ESRCH
    assert agent.shutdown() == 0


def test_init_exit_kills_the_rest(agent):
    assert agent.create(sh(agent, "sleep 100 & read x; echo bye; exit 3"))[0] == 0
    assert agent.start()[0] == 0
    assert agent.exec_(1, proc(agent, ["sleep", "100"]))[0] == 0
    agent.stdin(0, b"\n")
    assert agent.wait_exit(0) == 3
    assert agent.wait_exit(1) == 128 + signal.SIGKILL
    assert agent.output(0) == b"bye\n"
    wait_for(lambda: only_agent_left(agent), "the background sleep to be gone")
    # no more processes once init is gone
    assert agent.exec_(2, proc(agent, ["true"]))[0] == errno.ESRCH
    assert agent.shutdown() == 0


def test_agent_exits_when_host_closes(agent):
    assert agent.create(proc(agent, ["sleep", "100"]))[0] == 0
    assert agent.start()[0] == 0
    agent.sock.close()
    assert agent.wait() == 0


def test_agent_powers_off_unattended_after_init(agent):
    """After init's end is reported the agent waits for SHUTDOWN a bounded
    time, then exits by itself."""
    assert agent.run(proc(agent, ["true"]))[0] == 0
    t = time.monotonic()
    agent.expect_closed(timeout=30)
    assert agent.wait() == 0
    assert 5 < time.monotonic() - t < 20


# ---------------------------------------------------------------- errors

def test_bad_program(agent):
    err, pid, msg = agent.create(proc(agent, ["/no/such/program"]))
    assert err == errno.ENOENT
    assert "/no/such/program" in msg
    err, pid, msg = agent.create(proc(agent, ["no-such-program"]))
    assert err != 0 and "not found" in msg
    assert only_agent_left(agent)
    assert agent.start()[0] == errno.ENOENT  # nothing created
    # The container can still be created with a good program.
    assert agent.create(proc(agent, ["sleep", "100"]))[0] == 0
    err, _, msg = agent.exec_(1, proc(agent, ["/etc/passwd"]))
    assert err == errno.EACCES, msg
    assert agent.create(proc(agent, ["true"]))[0] == errno.EEXIST
    assert agent.start()[0] == 0
    assert agent.start()[0] == errno.EALREADY
    assert agent.shutdown() == 0


def test_symlink_mount_point_is_refused(rootfs, tmp_path, token):
    root = A.make_rootfs(str(tmp_path / "root"))
    os.rmdir(os.path.join(root, "proc"))
    os.symlink("/etc", os.path.join(root, "proc"))
    a = A.Agent(root, log=str(tmp_path / "agent.log"))
    try:
        a.token = token
        assert a.hello() == A.VERSION
        err, _, msg = a.create(proc(a, ["true"]))
        assert err != 0
        assert "/proc" in msg and "symlink" in msg, msg
        assert a.shutdown() == 0
    finally:
        a.close()
    assert sorted(os.listdir(os.path.join(root, "etc"))) == ["group", "passwd"]


@pytest.mark.parametrize("payload,what", [
    (b"{", "malformed JSON"),
    (b"[]", "object"),
    (b'{"process": 1}', "process"),
    (b'{"process": {"args": []}}', "args"),
    (b'{"process": {"args": ["true"]}, "hostname": "a/b"}', "hostname"),
    (b'{"process": {"args": ["true"]}, "maskedPaths": ["proc/kcore"]}', "maskedPaths[0]"),
    (b'{"process": {"args": ["true"]}, "readonlyPaths": "/proc"}', "readonlyPaths"),
    (b'{"process": {"args": ["true"]}, "sysctl": {"kernel.sem": 1}}', "sysctl"),
    (b'{"process": {"args": ["true"]}, "seccomp": {"flags": 0, "bpf": "0600"}}', "seccomp.bpf"),
    (b'{"process": {"args": ["true"]}, "seccomp": {"flags": 0, "bpf": "0600000000000g7f"}}',
     "hex"),
    (b'{"process": {"args": ["true"]}, "seccomp": {"flags": 8, "bpf": "0600000000000f7f"}}',
     "seccomp.flags"),
])
def test_bad_request(agent, payload, what):
    err, _, msg = agent.request(A.CREATE, 0, payload)
    assert err == errno.EINVAL
    assert what in msg
    assert agent.run(proc(agent, ["true"]))[0] == 0


BAD_FRAMES = {
    "unknown type": A.frame(99, 0, 1),
    "guest message": A.frame(A.EXIT, 0, 1, b"\0\0\0\0"),
    "oversized": A.frame(A.STDIN, 0, 0, b"", length=A.DATA_MAX + 1),
    "oversized control": A.frame(A.CREATE, 0, 1, b"", length=A.PAYLOAD_MAX + 1),
    "flags": A.frame(A.START, 0, 1, flags=1),
    "short signal": A.frame(A.SIGNAL, 0, 1, b"\x09\0\0"),
    "bad signal": A.frame(A.SIGNAL, 0, 1, struct.pack("<II", 0, 0)),
    "credit abuse": A.frame(A.CREDIT, 0, 0, struct.pack("<II", A.S_STDOUT, 100)),
    "stdin credit": A.frame(A.CREDIT, 0, 0, struct.pack("<II", A.S_STDIN, 1)),
}


@pytest.mark.parametrize("name", sorted(BAD_FRAMES))
def test_malformed_frame_drops_the_channel(agent, name):
    assert agent.create(proc(agent, ["sleep", "100"]))[0] == 0
    assert agent.start()[0] == 0
    agent.send_raw(BAD_FRAMES[name])
    seen = agent.expect_closed()
    assert not [f for f in seen if f.type == A.REPLY and f.seq == 1], seen
    assert agent.wait() == 1
    assert "cocoon-init:" in agent.stderr()


def test_stdin_beyond_credit_drops_the_channel(agent):
    # sleep never reads: the pipe fills, the credit runs out.
    assert agent.create(proc(agent, ["sleep", "100"]))[0] == 0
    assert agent.start()[0] == 0
    agent.stdin(0, b"x" * A.WINDOW)
    # Let the agent fill the pipe and credit what went in, then use up the
    # credit and send one byte more.
    with pytest.raises(TimeoutError):
        while True:
            agent.recv(timeout=0.5)
    room = agent.stdin_credit[0]
    assert room < A.WINDOW
    while room > 0:
        n = min(room, A.DATA_MAX)
        agent.send(A.STDIN, 0, b"y" * n, seq=0)
        room -= n
    agent.send(A.STDIN, 0, b"z", seq=0)
    agent.expect_closed()
    assert agent.wait() == 1
    assert "credit" in agent.stderr()


def test_stdin_after_end_drops_the_channel(agent):
    assert agent.create(proc(agent, ["sleep", "100"]))[0] == 0
    agent.stdin(0, b"")
    agent.send(A.STDIN, 0, b"late", seq=0)
    agent.expect_closed()
    assert agent.wait() == 1


def test_garbage_stream(agent):
    agent.send_raw(os.urandom(4096))
    agent.expect_closed()
    assert agent.wait() == 1


# ---------------------------------------------------------------- footprint

def is_static(path):
    """True if the ELF file has no program interpreter (a static build)."""
    with open(path, "rb") as f:
        elf = f.read(1 << 16)
    phoff, = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    types = [struct.unpack_from("<I", elf, phoff + i * phentsize)[0] for i in range(phnum)]
    return 3 not in types  # PT_INTERP


def vm_rss(agent):
    with open(f"/proc/{agent.agent_pid()}/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))


def test_rss_under_1mib(agent):
    """Idle, and idle again after MiBs went through (the agent gives its
    buffers back once it has been idle for a second)."""
    if not is_static(A.agent_binary()):
        pytest.skip("the RSS promise is for the static build (meson -Dstatic=true, no sanitizer)")
    assert agent.create(proc(agent, ["sleep", "100"], terminal=True))[0] == 0
    assert agent.start()[0] == 0
    assert agent.exec_(1, proc(agent, ["sleep", "100"]))[0] == 0
    time.sleep(0.2)
    idle = vm_rss(agent)
    print(f"cocoon-init VmRSS while serving an idle container: {idle} kB")
    assert idle < 1024
    data = os.urandom(4 << 20)
    assert agent.exec_(2, proc(agent, ["cat"]))[0] == 0
    agent.stdin(2, data)
    agent.stdin(2, b"")
    assert agent.wait_exit(2) == 0
    assert agent.output(2) == data
    time.sleep(1.5)
    after = vm_rss(agent)
    print(f"cocoon-init VmRSS idle after 4 MiB through cat: {after} kB")
    assert after < 1024
    assert agent.shutdown() == 0


def test_refuses_to_run_outside_a_sandbox(rootfs):
    """Not PID 1 of its own namespaces: it must not mount or kill anything."""
    a, b = socket.socketpair()
    r = subprocess.run([A.agent_binary(), "--channel-fd", str(b.fileno()), "--root", rootfs],
                       pass_fds=[b.fileno()], capture_output=True, text=True, timeout=A.TIMEOUT)
    assert r.returncode == 1
    assert "PID 1" in r.stderr
    r = subprocess.run([A.agent_binary()], capture_output=True, text=True, timeout=A.TIMEOUT)
    assert r.returncode == 2
    assert "usage" in r.stderr
    a.close()
    b.close()


"""virtio-console with extra ports (VIRTIO_CONSOLE_F_MULTIPORT), driven at
CPL3 by tests/guest/console_guest.c through the real `cocoon vm run`; the
host side of each port (Unix sockets, files) is played and checked here."""
import os
import socket
import subprocess
import time

import pytest

from test_guests import BUILD, COCOON, TIMEOUT, pytestmark  # noqa: F401

GUEST = os.path.join(BUILD, "tests", "guest", "console_guest.elf")


def run(cmdline, *args, timeout=TIMEOUT):
    return subprocess.run([COCOON, "vm", "run", "--kernel", GUEST, "--memory", "64",
                           "--console", "none", "--cmdline", cmdline, *args],
                          stdin=subprocess.DEVNULL, capture_output=True, errors="replace",
                          timeout=timeout)


def start(cmdline, *args):
    return subprocess.Popen([COCOON, "vm", "run", "--kernel", GUEST, "--memory", "64",
                             "--console", "none", "--cmdline", cmdline, *args],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, errors="replace")


def connect(path, p):
    deadline = time.time() + 20
    while not os.path.exists(path):
        assert p.poll() is None and time.time() < deadline, p.communicate()
        time.sleep(0.01)
    c = socket.socket(socket.AF_UNIX)
    c.connect(path)
    c.settimeout(TIMEOUT)
    return c


def recv_exactly(c, n):
    got = bytearray()
    while len(got) < n:
        chunk = c.recv(min(1 << 20, n - len(got)))
        assert chunk, f"EOF after {len(got)} of {n} bytes"
        got += chunk
    return bytes(got)


def pattern_in(n, seed):
    return bytes((i * 7 + (i >> 8) * 131 + seed) & 255 for i in range(n))


def pattern_out(n, seed):
    return bytes((i * 13 + (i >> 9) + seed + 1) & 255 for i in range(n))


@pytest.mark.parametrize("mode", ["", "indirect=1 event_idx=1", "hostile=1 reset=1"])
def test_extra_ports_move_data_both_ways_while_port0_works(tmp_path, mode):
    s0, s1, log = tmp_path / "port0.sock", tmp_path / "agent.sock", tmp_path / "port2.log"
    n, seed = 300_000, 5
    p = start(f"ports=3 name1=org.cocoon.agent name2=org.cocoon.log open=111 bytes={n} "
              f"seed={seed} console_echo=6 closed=1 {mode}",
              "--virtio-console",
              f"socket:{s0},port=org.cocoon.agent:socket:{s1},port=org.cocoon.log:file:{log}")
    try:
        c0 = connect(str(s0), p)
        c1 = connect(str(s1), p)
        assert recv_exactly(c0, 18) == b"hello from port 0\n"
        assert recv_exactly(c1, 18) == b"hello from port 1\n"
        # host -> guest on port 1 (the guest checks every byte), then back
        c1.sendall(pattern_in(n, seed))
        assert recv_exactly(c1, n) == pattern_out(n, seed)
        # port 0 still answers, with its own bytes
        c0.sendall(b"ping0\n")
        assert recv_exactly(c0, 12) == b"echo0:ping0\n"
        c1.close()  # the guest waits for PORT_OPEN 0 on port 1
        out, err = p.communicate(timeout=TIMEOUT)
    finally:
        p.kill()
        p.wait()
    assert p.returncode == 0, err
    assert "console: 3 ports added, named and open as expected" in err
    assert "console: port 1 host side closed" in err
    assert log.read_bytes() == b"a line on port 2\n"
    assert not s0.exists() and not s1.exists(), "a port socket was left behind"
    if "hostile" in mode:
        assert "malformed control messages ignored" in err
        assert "the handshake again after a reset" in err


def test_output_waits_for_a_client_that_connects_late(tmp_path):
    """Port 1's greeting waits in the ring until a client connects; PORT_OPEN
    follows the client."""
    s1 = tmp_path / "late.sock"
    p = start("ports=2 name1=late open=0- late=1 bytes=0", "--virtio-console",
              f"none,port=late:socket:{s1}")
    try:
        deadline = time.time() + 20
        while not s1.exists() and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(0.5)  # the guest is up and waiting on port 1's output
        c1 = connect(str(s1), p)
        assert recv_exactly(c1, 18) == b"hello from port 1\n"
        out, err = p.communicate(timeout=TIMEOUT)
    finally:
        p.kill()
        p.wait()
    assert p.returncode == 0, err
    assert "console: port 1 host side connected" in err


def test_one_port_offers_no_multiport(tmp_path):
    out = tmp_path / "port0.txt"
    r = run("ports=1", "--virtio-console", f"file:{out}")
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == b"hello from port 0\n"


def test_a_driver_without_multiport_still_has_port0(tmp_path):
    out, other = tmp_path / "port0.txt", tmp_path / "port1.txt"
    r = run("ports=2 nomulti=1", "--virtio-console", f"file:{out},port=p1:file:{other}")
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == b"hello from port 0\n"
    assert other.read_bytes() == b""


def test_port_names_and_files_without_sockets(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    r = run("ports=3 name1=a.b-c_1 name2=x open=111 bytes=0", "--virtio-console",
            f"file:{a},port=a.b-c_1:file:{b},port=x:stdio")
    assert r.returncode == 0, r.stderr
    assert a.read_bytes() == b"hello from port 0\n"
    assert b.read_bytes() == b"hello from port 1\n"
    assert r.stdout == "a line on port 2\n"


@pytest.mark.parametrize("spec,expect", [
    ("stdio,port=agent", "must be NAME:BACKEND"),
    ("stdio,port=:socket:/tmp/x", "must be NAME:BACKEND"),
    ("stdio,port=a:tty", "`tty` is not stdio"),
    ("stdio,port=a:stdio", "`stdio` is not stdio (once per device)"),
    ("none,port=a:socket:", "`socket:` is not"),
    ("none,port=bad/name:none", "the name `bad/name`"),
    ("none,port=" + "n" * 64 + ":none", "is not 1..63"),
    ("none,port=a:none,port=a:none", "`a` is used twice"),
    ("none" + "".join(f",port=p{i}:none" for i in range(7)), "at most 6 extra ports"),
    ("none,port=a:file:/nonexistent/x", "/nonexistent/x"),
    ("tty,port=a:none", "--virtio-console must be stdio, none, file:PATH or socket:PATH"),
])
def test_bad_console_ports(spec, expect):
    r = run("", "--virtio-console", spec)
    assert r.returncode == 1, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and expect in lines[0], r.stderr

"""process.terminal: the pty master is passed over --console-socket."""
import os
import select
import socket
import tempfile
import time

import pytest

from cocoonlib import TIMEOUT, needs_root, rmtree, wait_line

pytestmark = needs_root


@pytest.fixture
def console_socket():
    """A listening AF_UNIX socket in a short path (sun_path is 108 bytes)."""
    d = tempfile.mkdtemp(prefix="cocoon-cs-", dir="/tmp")
    path = os.path.join(d, "console.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(4)
    srv.settimeout(TIMEOUT)
    yield srv, path
    srv.close()
    rmtree(d)


def receive_master(srv):
    conn, _ = srv.accept()
    with conn:
        msg, fds, _flags, _addr = socket.recv_fds(conn, 4096, 4)
    assert len(fds) == 1, f"expected exactly one fd, got {fds}"
    return msg, fds[0]


def read_until_closed(fd, timeout=TIMEOUT):
    """Read the pty master until the slave side is gone (EIO) or EOF."""
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.5)
        if not r:
            continue
        try:
            data = os.read(fd, 4096)
        except OSError:  # EIO: no slave left
            break
        if not data:
            break
        out += data
    return out


def test_console_socket_receives_pty(cocoon, make_bundle, console_socket):
    srv, path = console_socket
    b = make_bundle("sh", "-c", "tty; echo hi; stty size; [ -t 0 ] && [ -t 2 ] && echo all-tty")
    b.process["terminal"] = True
    b.process["consoleSize"] = {"height": 33, "width": 111}
    cid = cocoon.id("tty")
    r = cocoon.create(cid, b, "--console-socket", path)
    assert r.rc == 0, r
    msg, master = receive_master(srv)
    try:
        assert os.isatty(master)
        assert msg.rstrip(b"\0") == b"/dev/pts/0"
        assert cocoon.status(cid) == "created"
        cocoon.ok("start", cid)
        out = read_until_closed(master).decode()
    finally:
        os.close(master)
    assert out.replace("\r\n", "\n") == "/dev/pts/0\nhi\n33 111\nall-tty\n"
    cocoon.wait_status(cid, "stopped")
    cocoon.ok("delete", cid)


def test_console_input_reaches_container(cocoon, make_bundle, console_socket, hostdir):
    srv, path = console_socket
    b = make_bundle("sh", "-c", "read line; echo \"got:$line\" > /host/got")
    b.bind(hostdir, "/host")
    b.process["terminal"] = True
    cid = cocoon.id("ttyin")
    assert cocoon.create(cid, b, "--console-socket", path).rc == 0
    _msg, master = receive_master(srv)
    try:
        cocoon.ok("start", cid)
        os.write(master, b"typed-text\n")
        wait_line(hostdir / "got")
        read_until_closed(master)
    finally:
        os.close(master)
    assert (hostdir / "got").read_text() == "got:typed-text\n"


def test_terminal_requires_console_socket(cocoon, make_bundle, nothing_left):
    b = make_bundle("true")
    b.process["terminal"] = True
    b.save()
    cocoon.fail("create", "-b", b.path, cocoon.id("notty"), expect=["--console-socket"])
    cocoon.fail("run", "-d", "-b", b.path, cocoon.id("notty"), expect=["--console-socket"])
    nothing_left()


def test_console_socket_not_listening(cocoon, make_bundle, tmp_path, nothing_left):
    b = make_bundle("true")
    b.process["terminal"] = True
    b.save()
    missing = tmp_path / "nobody.sock"
    cocoon.fail("create", "-b", b.path, "--console-socket", missing, cocoon.id("nols"),
                expect=["--console-socket", str(missing)])
    nothing_left()


def test_run_foreground_with_terminal(cocoon, make_bundle):
    """`run` without --console-socket makes its own pty and copies it out."""
    b = make_bundle("sh", "-c", "tty; echo via-pty")
    b.process["terminal"] = True
    r = cocoon.run(cocoon.id("fgtty"), b)
    assert r.rc == 0, r
    assert r.out.replace("\r\n", "\n") == "/dev/pts/0\nvia-pty\n"
    assert cocoon.state_dirs() == []


def test_run_foreground_terminal_exit_code(cocoon, make_bundle):
    b = make_bundle("sh", "-c", "exit 42")
    b.process["terminal"] = True
    assert cocoon.run(cocoon.id("fgtty42"), b).rc == 42


def test_without_terminal_stdio_is_not_a_tty(cocoon, make_bundle):
    b = make_bundle("sh", "-c", "[ -t 0 ] || [ -t 1 ] || [ -t 2 ] || echo no-tty")
    r = cocoon.run(cocoon.id("nott"), b)
    assert r.rc == 0, r
    assert r.out == "no-tty\n"


def test_run_detach_with_console_socket(cocoon, make_bundle, console_socket):
    """`run -d --console-socket` (how engines start terminal containers):
    the program starts at once and writes to the pty."""
    srv, path = console_socket
    b = make_bundle("sh", "-c", "echo detached-tty; exec sleep 1000")
    b.process["terminal"] = True
    cid = cocoon.id("dtty")
    r = cocoon.run(cid, b, "--detach", "--console-socket", path)
    assert r.rc == 0, r
    _msg, master = receive_master(srv)
    try:
        assert cocoon.status(cid) == "running"
        buf = b""
        deadline = time.monotonic() + TIMEOUT
        while b"detached-tty" not in buf and time.monotonic() < deadline:
            if select.select([master], [], [], 0.5)[0]:
                buf += os.read(master, 4096)
        assert b"detached-tty\r\n" in buf
        cocoon.ok("delete", "--force", cid)
    finally:
        os.close(master)
    assert cocoon.state_dirs() == []

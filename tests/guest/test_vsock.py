"""virtio-vsock driven at CPL3 by tests/guest/vsock_guest.c through the real
`cocoon vm run --vsock cid=N,uds=PATH`; the host side is played here on the
device's Unix sockets: Firecracker's `CONNECT <port>\\n` / `OK <port>\\n`
handshake on PATH for host-initiated streams, listeners on PATH_<port> for
guest-initiated ones. Every socket has a timeout and every receive loop
stops at EOF, so a broken device fails a test instead of hanging it."""
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time

import pytest

from test_guests import BUILD, COCOON, TIMEOUT, pytestmark  # noqa: F401

GUEST = os.path.join(BUILD, "tests", "guest", "vsock_guest.elf")
SOCK_TIMEOUT = 30


@pytest.fixture
def sockdir():
    # short: a Unix socket path (plus _PORT) must fit in 108 bytes
    d = tempfile.mkdtemp(prefix="cvs", dir="/tmp")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


class VM:
    """`cocoon vm run` with the vsock test guest, in the background."""

    def __init__(self, sockdir, cmdline, cid=3, extra=()):
        self.uds = os.path.join(sockdir, "v.sock")
        self.p = subprocess.Popen(
            [COCOON, "vm", "run", "--kernel", GUEST, "--memory", "64", "--cmdline",
             f"cid={cid} {cmdline}", "--vsock", f"cid={cid},uds={self.uds}", *extra],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            errors="replace")
        deadline = time.time() + 20
        while not os.path.exists(self.uds):
            assert self.p.poll() is None, self.p.communicate()[1]
            assert time.time() < deadline, "the vsock socket never appeared"
            time.sleep(0.01)

    def wait(self):
        _, err = self.p.communicate(timeout=TIMEOUT)
        return self.p.returncode, err

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.p.poll() is None:
            self.p.kill()
            self.p.communicate()


def host_connect(uds, port):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(SOCK_TIMEOUT)
    s.connect(uds)
    s.sendall(f"CONNECT {port}\n".encode())
    return s


def read_line(s, limit=64):
    """Up to a newline, EOF or `limit` bytes, one byte at a time (what follows is stream data)."""
    line = b""
    while not line.endswith(b"\n") and len(line) < limit:
        try:
            c = s.recv(1)
        except ConnectionResetError:
            break
        if not c:
            break
        line += c
    return line


def recv_all(s, n):
    """Up to n bytes, stopping early at EOF or a reset."""
    chunks, got = [], 0
    while got < n:
        try:
            c = s.recv(min(1 << 20, n - got))
        except ConnectionResetError:
            break
        if not c:
            break
        chunks.append(c)
        got += len(c)
    return b"".join(chunks)


def at_eof(s):
    """Whether the peer closed s: drains what is left, EOF or reset ends it."""
    try:
        while True:
            c = s.recv(1 << 16)
            if not c:
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


class Sender(threading.Thread):
    """sendall in the background (the echo comes back while we send)."""

    def __init__(self, s, data):
        super().__init__(daemon=True)
        self.s, self.data, self.error = s, data, None
        self.start()

    def run(self):
        try:
            self.s.sendall(self.data)
        except OSError as e:
            self.error = e


def echo_server(path, accepted, stats):
    """Listen on path; echo the first client until EOF, then close it."""
    ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ls.bind(path)
    ls.listen(4)
    ls.settimeout(SOCK_TIMEOUT)

    def serve():
        try:
            c, _ = ls.accept()
        except OSError:
            return
        accepted.set()
        c.settimeout(SOCK_TIMEOUT)
        with c:
            while True:
                d = c.recv(1 << 16)
                if not d:
                    stats["eof"] = True
                    break
                stats["bytes"] = stats.get("bytes", 0) + len(d)
                c.sendall(d)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return ls, t


@pytest.mark.parametrize("mode", ["", "split=1 indirect=1 event_idx=1"])
def test_host_to_guest_stream_with_flow_control(sockdir, mode):
    """CONNECT, OK, then 4 MiB each way through a 64 KiB guest window and a
    host reader that starts late: credit must stop the device both ways."""
    n, win = 4 << 20, 65536
    with VM(sockdir, f"mode=server port=1234 conns=1 win={win} {mode}") as vm:
        s = host_connect(vm.uds, 1234)
        line = read_line(s)
        m = re.fullmatch(rb"OK (\d+)\n", line)
        assert m, line
        assert int(m.group(1)) >= 1 << 30  # the host side's port
        data = os.urandom(n)
        sender = Sender(s, data)
        time.sleep(0.5)  # nobody reads: the device's buffer and the guest's credit run dry
        got = recv_all(s, n)
        sender.join(SOCK_TIMEOUT)
        assert sender.error is None
        assert len(got) == n and got == data, f"{len(got)} bytes echoed"
        s.shutdown(socket.SHUT_WR)  # the guest closes once it has echoed everything
        assert at_eof(s), "the guest's close did not reach the host client"
        s.close()
        rc, err = vm.wait()
    assert rc == 0, err
    assert f"vsock: connection 0 ended by RST: {n} bytes received, {n} echoed" in err, err
    windows = int(re.search(r"(\d+) full windows", err).group(1))
    assert windows >= n // win - 1, err
    assert not os.path.exists(vm.uds), "the vsock socket was left behind"


def test_guest_to_host_stream_and_refused_port(sockdir):
    """The guest connects to PATH_5000 (after PATH_5001, where nobody
    listens, is refused with RST), sends 3 MiB, the host echoes, the guest
    checks every byte."""
    n = 3 << 20
    accepted, stats = threading.Event(), {}
    ls, t = echo_server(os.path.join(sockdir, "v.sock_5000"), accepted, stats)
    with ls, VM(sockdir, f"mode=client port=5000 bytes={n} seed=7 win=32768 refused=5001") as vm:
        rc, err = vm.wait()
        t.join(SOCK_TIMEOUT)
    assert rc == 0, err
    assert "vsock: connect to host port 5001 refused (RST)" in err, err
    assert f"vsock: client: {n} bytes sent to host port 5000 and echoed back" in err, err
    assert stats.get("bytes") == n and stats.get("eof"), stats


def test_resets_and_bad_handshakes(sockdir):
    with VM(sockdir, "mode=server port=1234 conns=2") as vm:
        # the host closes mid-stream, without reading: the guest sees SHUTDOWN or RST
        s = host_connect(vm.uds, 1234)
        assert read_line(s).startswith(b"OK ")
        s.sendall(os.urandom(200_000))
        s.close()
        # a port the guest does not accept on: it answers RST, the client is closed
        s = host_connect(vm.uds, 4321)
        assert read_line(s) == b""
        s.close()
        # malformed CONNECT lines never reach the guest: closed
        for bad in [b"CONNECT abc\n", b"HELLO\n", b"CONNECT 1234" + b"x" * 40,
                    b"CONNECT 99999999999\n", b"CONNECT  1234\n", b"\n"]:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(SOCK_TIMEOUT)
            s.connect(vm.uds)
            s.sendall(bad)
            assert read_line(s) == b"", bad
            s.close()
        # a client that gives up before sending a whole line
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(vm.uds)
        s.sendall(b"CONN")
        s.close()
        # and the device still carries a stream, with the line and data in one
        # write (the guest refuses it while it still serves connection 0)
        payload = os.urandom(100_000)
        for _ in range(100):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(SOCK_TIMEOUT)
            s.connect(vm.uds)
            s.sendall(b"CONNECT 1234\n" + payload)
            line = read_line(s)
            if line:
                break
            s.close()
            time.sleep(0.1)
        assert line.startswith(b"OK "), line
        assert recv_all(s, len(payload)) == payload
        s.shutdown(socket.SHUT_WR)
        assert at_eof(s)
        s.close()
        rc, err = vm.wait()
    assert rc == 0, err
    assert re.search(r"vsock: connection 0 ended by (RST|SHUTDOWN)", err), err
    assert "vsock: REQUEST for port 4321 refused" in err, err
    assert "vsock: connection 1 ended by RST: 100000 bytes received, 100000 echoed" in err, err
    assert err.count("accepted") == 2, err  # the bad lines never reached the guest


def test_device_reset_closes_host_connections(sockdir):
    with VM(sockdir, "mode=server port=1234 conns=2 reset_after=65536") as vm:
        s = host_connect(vm.uds, 1234)
        assert read_line(s).startswith(b"OK ")
        sender = Sender(s, os.urandom(1 << 20))
        got = recv_all(s, 1 << 20)  # ends at the close the reset causes
        assert len(got) < 1 << 20
        s.close()
        sender.join(SOCK_TIMEOUT)
        # after the reset the driver set the device up again: it works
        s = host_connect(vm.uds, 1234)
        assert read_line(s).startswith(b"OK ")
        s.sendall(b"after the reset")
        assert recv_all(s, 15) == b"after the reset"
        s.shutdown(socket.SHUT_WR)
        assert at_eof(s)
        s.close()
        rc, err = vm.wait()
    assert rc == 0, err
    assert "vsock: connection 0 ended by a device reset" in err, err
    assert "vsock: connection 1 ended by RST: 15 bytes received, 15 echoed" in err, err


def test_connect_before_the_driver_is_up(sockdir):
    """A client that says CONNECT before the guest's driver resets and sets
    up the device is not lost: its REQUEST goes out once the driver is ready."""
    with VM(sockdir, "mode=server port=1234 conns=1 delay=1000000000") as vm:
        s = host_connect(vm.uds, 1234)
        assert read_line(s).startswith(b"OK ")
        s.sendall(b"early")
        assert recv_all(s, 5) == b"early"
        s.shutdown(socket.SHUT_WR)
        assert at_eof(s)
        s.close()
        rc, err = vm.wait()
    assert rc == 0, err
    assert "vsock: connection 0 ended by RST: 5 bytes received, 5 echoed" in err, err


def test_vm_exit_closes_everything(sockdir):
    """A VM that ends (here: its timeout) closes its host connections and
    removes the socket."""
    with VM(sockdir, "mode=server port=1234 conns=2", extra=["--timeout", "3"]) as vm:
        s = host_connect(vm.uds, 1234)
        assert read_line(s).startswith(b"OK ")
        s.sendall(b"ping")
        assert recv_all(s, 4) == b"ping"
        waiting = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        waiting.settimeout(SOCK_TIMEOUT)
        waiting.connect(vm.uds)  # never says CONNECT
        rc, err = vm.wait()
        assert at_eof(s) and at_eof(waiting)
        s.close()
        waiting.close()
    assert rc == 67, err
    assert not os.path.exists(vm.uds)


def test_hostile_packets_and_credit_overrun(sockdir):
    """Malformed packets are dropped or answered with RST; a guest writing
    past its credit to a host that never reads is reset, the host side closed."""
    path = os.path.join(sockdir, "v.sock_5002")
    ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ls.bind(path)
    ls.listen(1)
    ls.settimeout(SOCK_TIMEOUT)
    with ls, VM(sockdir, "mode=hostile overrun=5002 split=1") as vm:
        c, _ = ls.accept()
        c.settimeout(SOCK_TIMEOUT)
        rc, err = vm.wait()
        assert at_eof(c), "the device did not close the host side of the reset connection"
        c.close()
    assert rc == 0, err
    assert "vsock: hostile packets dropped or answered with RST" in err, err
    assert "vsock: sending past the credit got RST" in err, err


@pytest.mark.parametrize("spec,expect", [
    ("cid=2,uds=/tmp/x.sock", "3..4294967294"),
    ("cid=4294967296,uds=/tmp/x.sock", "not a number"),
    ("uds=/tmp/x.sock", "cid=N and uds=PATH"),
    ("cid=3", "cid=N and uds=PATH"),
    ("cid=3,uds=/tmp/x.sock,port=1", "`port=1` is unknown"),
    ("cid=3,uds=/nonexistent/dir/v.sock", "/nonexistent/dir/v.sock"),
    ("cid=3,uds=/tmp/" + "x" * 100, "socket path"),
])
def test_bad_vsock_options(spec, expect):
    r = subprocess.run([COCOON, "vm", "run", "--kernel", GUEST, "--vsock", spec],
                       stdin=subprocess.DEVNULL, capture_output=True, errors="replace",
                       timeout=TIMEOUT)
    assert r.returncode == 1, r.stderr
    assert expect in r.stderr, r.stderr


def test_vsock_socket_in_use_and_one_per_vm(sockdir):
    path = os.path.join(sockdir, "busy.sock")
    ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ls.bind(path)
    with ls:
        r = subprocess.run([COCOON, "vm", "run", "--kernel", GUEST, "--vsock",
                            f"cid=3,uds={path}"], stdin=subprocess.DEVNULL,
                           capture_output=True, errors="replace", timeout=TIMEOUT)
    assert r.returncode == 1 and "in use" in r.stderr, r.stderr
    r = subprocess.run([COCOON, "vm", "run", "--kernel", GUEST, "--vsock", "cid=3,uds=/tmp/a",
                        "--vsock", "cid=4,uds=/tmp/b"], stdin=subprocess.DEVNULL,
                       capture_output=True, errors="replace", timeout=TIMEOUT)
    assert r.returncode == 1 and "one --vsock per VM" in r.stderr, r.stderr


def test_vm_connect_waits_for_the_vm_and_relays_stdio(sockdir):
    """`cocoon vm connect` (the VM backend's way to its agent) started
    before the VM exists: it retries until the socket appears and the guest
    listens, then relays 1 MiB of stdin to the guest and the echo to
    stdout; its stdin's end reaches the guest as a shutdown."""
    data = os.urandom(1 << 20)
    uds = os.path.join(sockdir, "v.sock")
    p = subprocess.Popen([COCOON, "vm", "connect", "--timeout", "20000", uds, "1234"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(0.2)
        assert p.poll() is None, p.communicate()[1]
        with VM(sockdir, "mode=server port=1234 conns=1 win=65536 delay=200000000") as vm:
            out, err = p.communicate(input=data, timeout=TIMEOUT)
            assert p.returncode == 0, err
            assert out == data, f"{len(out)} bytes echoed"
            rc, verr = vm.wait()
        assert rc == 0, verr
        assert f"vsock: connection 0 ended by RST: {len(data)} bytes received" in verr, verr
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()


def test_vm_connect_refused_port_times_out(sockdir):
    """A port nobody listens on: every CONNECT is refused (RST); after its
    timeout `vm connect` says so and fails."""
    with VM(sockdir, "mode=server port=1234 conns=1") as vm:
        t0 = time.monotonic()
        r = subprocess.run([COCOON, "vm", "connect", "--timeout", "500", vm.uds, "4321"],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=TIMEOUT)
        assert r.returncode != 0
        assert time.monotonic() - t0 >= 0.5
        assert "nothing listened on vsock port 4321" in r.stderr, r.stderr
        assert vm.p.poll() is None, "a refused port must not disturb the guest"


@pytest.mark.parametrize("args, expect", [
    (["/tmp/x.sock", "notaport"], "`notaport` is not a vsock port number"),
    (["/tmp/x.sock", "4294967296"], "is not a vsock port number"),
    (["/tmp/x.sock"], "expected SOCKET PORT"),
    (["--timeout", "0", "/tmp/x.sock", "1"], "--timeout `0`"),
    (["/" + "x" * 120, "1"], "socket path longer than"),
])
def test_vm_connect_bad_input(args, expect):
    r = subprocess.run([COCOON, "vm", "connect", *args], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode != 0
    assert expect in r.stderr, r.stderr

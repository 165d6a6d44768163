"""An independent Python side of the agent protocol (src/agent/proto.h), and a
harness that runs the real cocoon-init on the host: PID 1 of new mount, pid,
uts and ipc namespaces (util-linux unshare), its channel one end of a Unix
socketpair, its container root a busybox tree.

Written from the protocol's description, not from the C code, so the two
check each other. Every receive has a deadline and treats EOF as an event.
"""
import json
import os
import select
import shutil
import socket
import struct
import subprocess
import time

from cocoonlib import COCOON

# ---------------------------------------------------------------- protocol

VERSION = 1
MAGIC = 0x636F636F
HDR = struct.Struct("<IHHII")  # len, type, flags, proc, seq
HDR_SIZE = HDR.size
PAYLOAD_MAX = 1 << 20
DATA_MAX = 32 << 10
WINDOW = 256 << 10

HELLO, CREATE, START, EXEC, SIGNAL, RESIZE, STDIN, STDOUT, STDERR, CREDIT, EXIT, REPLY, \
    SHUTDOWN = range(1, 14)
NAMES = {v: k for k, v in dict(HELLO=HELLO, CREATE=CREATE, START=START, EXEC=EXEC,
                                SIGNAL=SIGNAL, RESIZE=RESIZE, STDIN=STDIN, STDOUT=STDOUT,
                                STDERR=STDERR, CREDIT=CREDIT, EXIT=EXIT, REPLY=REPLY,
                                SHUTDOWN=SHUTDOWN).items()}
S_STDIN, S_STDOUT, S_STDERR = 0, 1, 2
STREAM_OF = {STDOUT: S_STDOUT, STDERR: S_STDERR}

TIMEOUT = 20  # seconds: only against hangs


def agent_binary():
    """cocoon-init beside the cocoon binary the tests use (build/src/agent/)."""
    return os.environ.get("COCOON_AGENT") or os.path.join(os.path.dirname(COCOON), "agent",
                                                          "cocoon-init")


class Closed(Exception):
    """The agent closed the channel."""


class Frame:
    def __init__(self, type_, flags, proc, seq, payload):
        self.type, self.flags, self.proc, self.seq, self.payload = \
            type_, flags, proc, seq, payload

    def __repr__(self):
        p = self.payload if len(self.payload) <= 64 else self.payload[:64] + b"..."
        return f"Frame({NAMES.get(self.type, self.type)}, proc={self.proc}, seq={self.seq}, {p!r})"

    @property
    def reply(self):
        """(error, pid, message) of a REPLY."""
        assert self.type == REPLY, self
        err, pid = struct.unpack_from("<iI", self.payload)
        return err, pid, self.payload[8:].decode(errors="replace")

    @property
    def exit_status(self):
        assert self.type == EXIT and len(self.payload) == 4, self
        return struct.unpack("<i", self.payload)[0]


def frame(type_, proc=0, seq=0, payload=b"", flags=0, length=None):
    n = len(payload) if length is None else length
    return HDR.pack(n, type_, flags, proc, seq) + payload


def process(args, env=None, cwd="/", terminal=False, uid=0, gid=0, size=None, **extra):
    p = {"args": list(args), "cwd": cwd, "terminal": terminal,
         "env": env if env is not None else ["PATH=/bin:/sbin:/usr/bin", "HOME=/root"],
         "user": {"uid": uid, "gid": gid}}
    if size:
        p["consoleSize"] = {"height": size[0], "width": size[1]}
    p.update(extra)
    return p


# ---------------------------------------------------------------- rootfs

def make_rootfs(path):
    """A busybox tree: /bin with every applet, /etc/passwd, /tmp."""
    busybox = "/bin/busybox"
    os.makedirs(os.path.join(path, "bin"))
    for d in ("etc", "tmp", "root", "home/user", "proc", "sys", "dev"):
        os.makedirs(os.path.join(path, d), exist_ok=True)
    shutil.copy2(busybox, os.path.join(path, "bin", "busybox"))
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True,
                             check=True, timeout=TIMEOUT).stdout.split()
    for a in applets:
        link = os.path.join(path, "bin", a)
        if not os.path.lexists(link):
            os.symlink("busybox", link)
    with open(os.path.join(path, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n")
    with open(os.path.join(path, "etc", "group"), "w") as f:
        f.write("root:x:0:\nuser:x:1000:\ntty:x:5:\n")
    os.chmod(os.path.join(path, "tmp"), 0o1777)
    os.chown(os.path.join(path, "home", "user"), 1000, 1000)
    return path


# ---------------------------------------------------------------- the agent

class Agent:
    """cocoon-init in a namespace sandbox, driven over a socketpair."""

    def __init__(self, root, hostname=None, log=None):
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        fd = theirs.fileno()
        argv = ["unshare", "--mount", "--pid", "--uts", "--ipc", "--fork", "--",
                agent_binary(), "--channel-fd", str(fd), "--root", str(root)]
        if hostname is not None:
            argv += ["--hostname", hostname]
        self.log_path = log
        self.log = open(log, "w+b") if log else subprocess.DEVNULL
        self.proc = subprocess.Popen(argv, pass_fds=[fd], stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=self.log)
        theirs.close()
        self.buf = b""
        self.seq = 0
        self.pending = []           # frames read but not yet consumed
        self.out = {}               # proc -> {stream: bytes}
        self.eof = {}               # proc -> set of ended streams
        self.exits = {}             # proc -> status
        self.unacked = {}           # (proc, stream) -> bytes the agent sent, not credited
        self.max_unacked = 0
        self.stdin_credit = {}      # proc -> bytes we may still send
        self.auto_credit = True
        self.closed = False

    # --- raw I/O
    def send_raw(self, data):
        self.sock.sendall(data)

    def send(self, type_, proc=0, payload=b"", seq=None):
        if seq is None:
            self.seq += 1
            seq = self.seq
        self.send_raw(frame(type_, proc, seq, payload))
        return seq

    def _read_frame(self, deadline):
        while True:
            if len(self.buf) >= HDR_SIZE:
                n, t, fl, proc, seq = HDR.unpack_from(self.buf)
                assert n <= PAYLOAD_MAX, f"agent sent a {n}-byte frame"
                if len(self.buf) >= HDR_SIZE + n:
                    f = Frame(t, fl, proc, seq, self.buf[HDR_SIZE:HDR_SIZE + n])
                    self.buf = self.buf[HDR_SIZE + n:]
                    return f
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no frame from the agent in time")
            r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                continue
            data = self.sock.recv(1 << 20)
            if not data:
                self.closed = True
                raise Closed()
            self.buf += data

    def _account(self, f):
        """Track streams, credit and exits of a frame from the agent."""
        assert f.flags == 0, f
        if f.type in (STDOUT, STDERR):
            s = STREAM_OF[f.type]
            assert len(f.payload) <= DATA_MAX, f
            if not f.payload:
                self.eof.setdefault(f.proc, set()).add(s)
                return
            assert s not in self.eof.get(f.proc, set()), f"data after EOF: {f}"
            self.out.setdefault(f.proc, {}).setdefault(s, bytearray()).extend(f.payload)
            k = (f.proc, s)
            self.unacked[k] = self.unacked.get(k, 0) + len(f.payload)
            self.max_unacked = max(self.max_unacked, self.unacked[k])
            assert self.unacked[k] <= WINDOW, f"agent exceeded the window: {self.unacked[k]}"
            if self.auto_credit:
                self.credit(f.proc, s, len(f.payload))
        elif f.type == CREDIT:
            s, n = struct.unpack("<II", f.payload)
            assert s == S_STDIN, f
            self.stdin_credit[f.proc] = self.stdin_credit.get(f.proc, WINDOW) + n
            assert self.stdin_credit[f.proc] <= WINDOW, "agent credited more than was sent"
        elif f.type == EXIT:
            assert f.proc not in self.exits, f"two EXITs for {f.proc}"
            ended = self.eof.get(f.proc, set())
            assert S_STDOUT in ended, f"EXIT before the end of stdout: {f}"
            self.exits[f.proc] = f.exit_status

    def recv(self, timeout=TIMEOUT):
        """The next frame (accounted for)."""
        if self.pending:
            return self.pending.pop(0)
        f = self._read_frame(time.monotonic() + timeout)
        self._account(f)
        return f

    def wait_for(self, pred, timeout=TIMEOUT, what="a frame"):
        """Read frames until pred(frame) holds; others are kept for later."""
        deadline = time.monotonic() + timeout
        kept = []
        for i, f in enumerate(self.pending):
            if pred(f):
                del self.pending[i]
                return f
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.pending.extend(kept)
                raise TimeoutError(f"timed out waiting for {what}")
            f = self._read_frame(time.monotonic() + left)
            self._account(f)
            if pred(f):
                self.pending.extend(kept)
                return f
            if f.type not in (STDOUT, STDERR, CREDIT):
                kept.append(f)

    def expect_closed(self, timeout=TIMEOUT):
        """Read until the agent closes the channel; returns the frames seen."""
        seen = []
        deadline = time.monotonic() + timeout
        try:
            while True:
                seen.append(self._read_frame(deadline))
        except Closed:
            return seen

    # --- requests
    def hello(self):
        f = self.recv()
        assert f.type == HELLO and len(f.payload) == 8, f
        magic, version = struct.unpack("<II", f.payload)
        assert magic == MAGIC and f.proc == 0, f
        return version

    def request(self, type_, proc=0, payload=b""):
        seq = self.send(type_, proc, payload)
        f = self.wait_for(lambda f: f.type == REPLY and f.seq == seq, what="a REPLY")
        assert f.proc == proc, f
        return f.reply

    def create(self, proc, hostname=None):
        req = {"process": proc}
        if hostname is not None:
            req["hostname"] = hostname
        return self.request(CREATE, 0, json.dumps(req).encode())

    def start(self):
        return self.request(START, 0)

    def exec_(self, n, proc):
        return self.request(EXEC, n, json.dumps({"process": proc}).encode())

    def signal(self, proc, signo, all_=False):
        return self.request(SIGNAL, proc, struct.pack("<II", signo, 1 if all_ else 0))

    def resize(self, proc, rows, cols):
        self.send(RESIZE, proc, struct.pack("<HH", rows, cols))

    def credit(self, proc, stream, n):
        k = (proc, stream)
        self.unacked[k] -= n
        self.send(CREDIT, proc, struct.pack("<II", stream, n), seq=0)

    def stdin(self, proc, data):
        """Send data as STDIN within the credit (waiting for CREDIT as needed);
        empty data ends stdin."""
        if not data:
            self.send(STDIN, proc, b"", seq=0)
            return
        view = memoryview(data)
        while view:
            room = self.stdin_credit.setdefault(proc, WINDOW)
            if room == 0:
                self.wait_for(lambda f: f.type == CREDIT and f.proc == proc,
                              what="stdin credit")
                continue
            n = min(room, DATA_MAX, len(view))
            self.stdin_credit[proc] -= n
            self.send(STDIN, proc, bytes(view[:n]), seq=0)
            view = view[n:]

    def wait_exit(self, proc, timeout=TIMEOUT):
        if proc not in self.exits:
            self.wait_for(lambda f: f.type == EXIT and f.proc == proc, timeout,
                          what=f"EXIT of process {proc}")
        return self.exits[proc]

    def output(self, proc, stream=S_STDOUT):
        return bytes(self.out.get(proc, {}).get(stream, b""))

    def run(self, proc, hostname=None):
        """CREATE + START proc 0; wait for its EXIT; (status, stdout, stderr)."""
        err, pid, msg = self.create(proc, hostname)
        assert err == 0, msg
        assert pid > 1
        err, _, msg = self.start()
        assert err == 0, msg
        st = self.wait_exit(0)
        return st, self.output(0).decode(), self.output(0, S_STDERR).decode()

    def shutdown(self):
        err, _, _ = self.request(SHUTDOWN)
        assert err == 0
        self.expect_closed()
        return self.wait()

    # --- the process
    def agent_pid(self):
        """The host pid of cocoon-init (unshare's child)."""
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            try:
                with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                    kids = f.read().split()
                if kids:
                    return int(kids[0])
            except FileNotFoundError:
                pass
            time.sleep(0.01)
        raise TimeoutError("cocoon-init did not start")

    def wait(self, timeout=TIMEOUT):
        return self.proc.wait(timeout)

    def stderr(self):
        if not self.log_path:
            return ""
        self.log.flush()
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        if self.log is not subprocess.DEVNULL:
            self.log.close()

"""cocoon's FUSE passthrough server (`cocoon fs mount`), driven as a user would.

The POSIX behaviour tests run the SAME operations on the FUSE mount and on a
native twin directory (same filesystem, same starting content) and compare
results and errno one to one. The escape tests change the source tree behind
the server's back (a directory or the whole source replaced by a symlink
pointing out) and check that nothing outside it is read or written.
"""
import ctypes
import errno
import fcntl
import hashlib
import os
import pathlib
import re
import resource
import signal
import shutil
import stat
import subprocess
import tempfile
import time

import pytest

from cocoonlib import COCOON, mount_snapshot

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mount, /dev/fuse)"),
    pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="no /dev/fuse"),
]

libc = ctypes.CDLL(None, use_errno=True)
RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2
AT_FDCWD = -100
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE = 1, 2


def renameat2(a, b, flags):
    if libc.renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), flags) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), a)


def fallocate(fd, mode, off, length):
    libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
    if libc.fallocate(fd, mode, off, length) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def mounted(path):
    return any(mp == str(path) for mp, _ in mount_snapshot(path))


def wait_for(pred, what, timeout=10):
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


class Mount:
    """A foreground `cocoon fs mount SRC MNT` process; always unmounted.
    With nofile=N the server runs under RLIMIT_NOFILE N:N."""

    def __init__(self, src, mnt, *opts, nofile=None):
        self.src, self.mnt = str(src), str(mnt)
        args = [COCOON, "fs", "mount"]
        for o in opts:
            args += ["-o", o]
        limit = None
        if nofile:
            def limit():
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
        self.proc = subprocess.Popen(args + [self.src, self.mnt], stderr=subprocess.PIPE,
                                     text=True, preexec_fn=limit)
        try:
            wait_for(lambda: mounted(self.mnt) or self.proc.poll() is not None, "the mount")
        except AssertionError:
            self.close()
            raise
        if not mounted(self.mnt):
            err = self.proc.stderr.read()
            raise AssertionError(f"cocoon fs mount failed: {err}")

    def stop(self, sig=signal.SIGTERM, timeout=10):
        """Signal the server; return its exit status."""
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)

    def close(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if mounted(self.mnt):
            subprocess.run(["umount", "-l", self.mnt], check=False)
        if self.proc.stderr:
            self.proc.stderr.close()


@pytest.fixture
def dirs():
    """src (served), mnt (the mount), twin (the native comparison) and
    outside, in a directory other users can reach: pytest's own tmp_path is
    under a 0700 directory, where every as_user() step would just fail with
    EACCES on both sides and compare equal."""
    base = pathlib.Path(tempfile.mkdtemp(prefix="cocoon-fs-test-", dir="/var/tmp"))
    os.chmod(base, 0o755)
    d = {k: base / k for k in ("src", "mnt", "twin", "outside")}
    for p in d.values():
        p.mkdir(mode=0o755)
    yield d
    if not mounted(d["mnt"]):
        shutil.rmtree(base, ignore_errors=True)


URING_PARAM = "/sys/module/fuse/parameters/enable_uring"


@pytest.fixture
def uring():
    """FUSE over io_uring allowed (the fuse module's enable_uring) while the
    test runs; the host's setting is restored after."""
    if not os.path.exists(URING_PARAM):
        pytest.skip("this kernel has no FUSE over io_uring (fuse.enable_uring)")
    with open(URING_PARAM) as f:
        old = f.read().strip()
    with open(URING_PARAM, "w") as f:
        f.write("Y")
    yield
    with open(URING_PARAM, "w") as f:
        f.write(old)


@pytest.fixture(params=["dev-fuse", "io-uring"])
def fs(request, dirs):
    """The server on each transport: /dev/fuse reads, and io_uring queues."""
    if request.param == "io-uring":
        request.getfixturevalue("uring")
        m = Mount(dirs["src"], dirs["mnt"])
    else:
        m = Mount(dirs["src"], dirs["mnt"], "nouring")
    yield m
    m.close()
    assert not mounted(dirs["mnt"])


def outcome(fn, *args, **kw):
    """fn(*args) as a comparable value: its result or ('errno', name)."""
    try:
        return ("ok", fn(*args, **kw))
    except OSError as e:
        return ("errno", errno.errorcode.get(e.errno, e.errno))


def both(dirs, fn):
    """Run fn(base) on the mount and on the twin; assert the same outcome."""
    a = outcome(fn, str(dirs["mnt"]))
    b = outcome(fn, str(dirs["twin"]))
    assert a == b, f"mount {a} != native {b}"
    return a


def st_tuple(st, times=True):
    t = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_nlink, st.st_uid,
         st.st_gid, st.st_size if not stat.S_ISDIR(st.st_mode) else None)
    if times:
        t += (st.st_mtime_ns,)
    return t


# ------------------------------------------------------------------ POSIX

def test_create_read_write_truncate(dirs, fs):
    def ops(b):
        p = os.path.join(b, "f")
        fd = os.open(p, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o640)
        os.write(fd, b"hello world")
        os.pwrite(fd, b"XY", 3)
        os.ftruncate(fd, 20)
        data = os.pread(fd, 100, 0)
        os.close(fd)
        r = [data, st_tuple(os.stat(p), times=False)]
        r.append(outcome(os.open, p, os.O_CREAT | os.O_EXCL | os.O_RDWR))
        os.truncate(p, 4)
        with open(p, "rb") as f:
            r.append(f.read())
        with open(p, "ab") as f:
            f.write(b"-appended")
        with open(p, "rb") as f:
            r.append(f.read())
        with open(p, "r+b") as f:
            f.seek(1000)
            f.write(b"!")
        r.append(os.stat(p).st_size)
        fd = os.open(p, os.O_WRONLY | os.O_TRUNC)
        os.close(fd)
        r.append(os.stat(p).st_size)
        r.append(outcome(os.open, os.path.join(b, "nope"), os.O_RDONLY))
        r.append(outcome(os.open, os.path.join(b, "f", "x"), os.O_RDONLY))
        return r
    both(dirs, ops)


def test_large_sequential_io(dirs, fs):
    blob = os.urandom(3 << 20) + b"tail"

    def ops(b):
        p = os.path.join(b, "big")
        with open(p, "wb") as f:
            f.write(blob)
        with open(p, "rb") as f:
            data = f.read()
        return hashlib.sha256(data).hexdigest(), len(data)
    assert both(dirs, ops)[1][1] == len(blob)
    assert open(dirs["src"] / "big", "rb").read() == blob


def test_errors_one_to_one(dirs, fs):
    def ops(b):
        j = lambda *p: os.path.join(b, *p)  # noqa: E731
        os.mkdir(j("d"))
        open(j("d", "f"), "w").close()
        open(j("file"), "w").close()
        return [
            outcome(os.mkdir, j("d")),
            outcome(os.rmdir, j("d")),
            outcome(os.unlink, j("d")),
            outcome(os.rmdir, j("file")),
            outcome(os.open, j("d"), os.O_WRONLY),
            outcome(os.mkdir, j("file", "x")),
            outcome(os.open, j("x" * 256), os.O_CREAT | os.O_WRONLY),
            outcome(os.rename, j("d"), j("d", "sub")),
            outcome(os.rename, j("file"), j("d")),
            outcome(os.rename, j("d"), j("file")),
            outcome(os.link, j("d"), j("dlink")),
            outcome(os.symlink, "t", j("file")),
            outcome(os.readlink, j("file")),
            outcome(os.listdir, j("file")),
            outcome(os.unlink, j("missing")),
            outcome(os.chdir, j("file")),
        ]
    both(dirs, ops)


def test_rename_variants(dirs, fs):
    def ops(b):
        j = lambda *p: os.path.join(b, *p)  # noqa: E731
        for n, c in (("a", b"A"), ("b", b"B")):
            with open(j(n), "wb") as f:
                f.write(c)
        os.mkdir(j("d1"))
        os.mkdir(j("d2"))
        open(j("d2", "x"), "w").close()
        r = [outcome(renameat2, j("a"), j("b"), RENAME_NOREPLACE)]
        r.append(outcome(renameat2, j("a"), j("b"), RENAME_EXCHANGE))
        r.append((open(j("a"), "rb").read(), open(j("b"), "rb").read()))
        r.append(outcome(renameat2, j("a"), j("c"), RENAME_EXCHANGE))
        r.append(outcome(renameat2, j("a"), j("c"), RENAME_NOREPLACE))
        r.append(outcome(renameat2, j("c"), j("a"), RENAME_NOREPLACE | RENAME_EXCHANGE))
        r.append(outcome(os.rename, j("d1"), j("d2")))   # ENOTEMPTY
        r.append(outcome(renameat2, j("d1"), j("d2"), RENAME_EXCHANGE))
        r.append(sorted(os.listdir(j("d1"))))
        os.rename(j("c"), j("d2", "moved"))
        r.append(sorted(os.listdir(b)))
        r.append(sorted(os.listdir(j("d2"))))
        os.rename(j("d2"), j("d3"))  # d2 was empty after the exchange
        r.append(sorted(os.listdir(b)))
        return r
    both(dirs, ops)


def test_link_symlink_readlink(dirs, fs):
    def ops(b):
        j = lambda *p: os.path.join(b, *p)  # noqa: E731
        with open(j("f"), "w") as f:
            f.write("data")
        os.link(j("f"), j("h"))
        os.symlink("f", j("s"))
        os.symlink("/nonexistent/far/away", j("dangling"))
        r = [os.stat(j("f")).st_nlink, os.readlink(j("s")), open(j("s")).read()]
        r.append(os.readlink(j("dangling")))
        r.append(outcome(os.stat, j("dangling")))
        r.append(st_tuple(os.lstat(j("s")), times=False))
        r.append(outcome(os.open, j("s"), os.O_RDONLY | os.O_NOFOLLOW))
        os.link(j("s"), j("s2"), follow_symlinks=False)  # a link to the symlink itself
        r.append(os.path.islink(j("s2")))
        os.unlink(j("h"))
        r.append(os.stat(j("f")).st_nlink)
        r.append(sorted(os.listdir(b)))
        return r
    both(dirs, ops)


def test_chmod_chown_utimens(dirs, fs):
    def ops(b):
        j = lambda *p: os.path.join(b, *p)  # noqa: E731
        open(j("f"), "w").close()
        os.mkdir(j("d"))
        os.symlink("f", j("s"))
        os.chmod(j("f"), 0o4751)
        os.chown(j("f"), 1234, 5678)
        r = [st_tuple(os.stat(j("f")), times=False)]
        os.chmod(j("f"), 0o6755)
        os.chown(j("f"), 1234, -1)        # a root chown clears set-id bits
        r.append(stat.S_IMODE(os.stat(j("f")).st_mode))
        os.chown(j("s"), 42, 43, follow_symlinks=False)
        r.append((os.lstat(j("s")).st_uid, os.lstat(j("s")).st_gid, os.stat(j("s")).st_uid))
        os.utime(j("f"), ns=(1_000_000_123, 2_000_000_456))
        st = os.stat(j("f"))
        r.append((st.st_atime_ns, st.st_mtime_ns))
        os.utime(j("s"), ns=(5_000_000_000, 6_000_000_000), follow_symlinks=False)
        r.append((os.lstat(j("s")).st_mtime_ns, os.stat(j("f")).st_mtime_ns))
        os.chmod(j("d"), 0o1777)
        r.append(stat.S_IMODE(os.stat(j("d")).st_mode))
        before = time.time_ns()
        os.utime(j("f"))
        r.append(os.stat(j("f")).st_mtime_ns >= before - 10_000_000)
        return r
    both(dirs, ops)


def as_user(uid, gid, fn):
    """Run fn() in a child with uid/gid; return its outcome."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(rfd)
        try:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            res = repr(outcome(fn))
        except BaseException as e:  # noqa: BLE001
            res = repr(("exc", str(e)))
        os.write(wfd, res.encode())
        os._exit(0)
    os.close(wfd)
    data = b""
    while chunk := os.read(rfd, 65536):
        data += chunk
    os.close(rfd)
    os.waitpid(pid, 0)
    return data.decode()


def test_permissions_and_ownership_as_user(dirs, fs):
    def ops(b):
        j = lambda *p: os.path.join(b, *p)  # noqa: E731
        with open(j("secret"), "w") as f:
            f.write("x")
        os.chmod(j("secret"), 0o600)
        os.mkdir(j("tmp"))
        os.chmod(j("tmp"), 0o1777)
        os.mkdir(j("sgid"))
        os.chown(j("sgid"), 0, 777)
        os.chmod(j("sgid"), 0o2777)
        r = [as_user(1000, 1000, lambda: open(j("secret")).read())]
        r.append(as_user(1000, 1000, lambda: open(j("secret"), "w")))

        def mk():
            open(j("tmp", "mine"), "w").close()
            os.mkdir(j("tmp", "mydir"), 0o755)
            os.symlink("x", j("tmp", "mylink"))
            os.mkfifo(j("tmp", "myfifo"))
            open(j("sgid", "f"), "w").close()
            os.mkdir(j("sgid", "sub"))
            return "done"
        r.append(as_user(1000, 1001, mk))
        for n in ("tmp/mine", "tmp/mydir", "tmp/mylink", "tmp/myfifo", "sgid/f", "sgid/sub"):
            st = os.lstat(j(n))
            r.append((n, st.st_uid, st.st_gid, oct(st.st_mode)))
        r.append(as_user(2000, 2000, lambda: os.unlink(j("tmp", "mine"))))  # sticky: EPERM
        r.append(as_user(1000, 1000, lambda: os.chmod(j("secret"), 0o777)))
        r.append(as_user(1000, 1000, lambda: os.utime(j("tmp", "mine"), ns=(1, 1))))
        r.append(as_user(2000, 2000, lambda: os.utime(j("tmp", "mine"), ns=(1, 1))))
        return r
    res = both(dirs, ops)
    assert repr(("ok", "done")) in res[1], "the other users could not even reach the files"


def test_write_by_other_user_clears_setid(dirs, fs):
    def ops(b):
        p = os.path.join(b, "s")
        with open(p, "w") as f:
            f.write("x")
        os.chmod(p, 0o6777)
        keep = os.open(p, os.O_RDONLY)  # open while set-id, and still open after
        r = [as_user(1000, 1000, lambda: open(p, "a").write("y"))]
        r.append(oct(os.stat(p).st_mode))
        fd = os.open(p, os.O_RDWR)
        os.pwrite(fd, b"z", 0)
        os.close(fd)
        os.close(keep)
        r.append(open(p).read())
        os.chmod(p, 0o2755)  # set-gid without group-exec... is kept by writes
        os.chmod(p, 0o2745)
        r.append(as_user(1000, 1000, lambda: open(p, "a").write("w")))
        r.append(oct(os.stat(p).st_mode))
        return r
    both(dirs, ops)


def test_chown_to_the_same_ids(dirs, fs):
    """chown(f, -1, -1), by the owner or by root: set-uid goes, set-gid goes
    with group-exec, ctime moves, as natively. (The kernel sends the server
    a SETATTR that sets nothing; pjdfstest's chown/00.t accepts both
    outcomes, so it did not catch this.)"""
    def ops(b):
        r = []
        for name, mode, who in (("owner", 0o6555, (65534, 65533)),
                                ("nogx", 0o2545, (65534, 65533)),
                                ("root", 0o6755, None)):
            p = os.path.join(b, name)
            open(p, "w").close()
            os.chown(p, 65534, 65533)
            os.chmod(p, mode)
            before = os.stat(p).st_ctime_ns
            time.sleep(0.02)
            if who:
                r.append(as_user(*who, lambda: os.chown(p, -1, -1)))
                assert r[-1] == repr(("ok", None)), r[-1]
            else:
                os.chown(p, -1, -1)
            st = os.stat(p)
            r.append((name, oct(stat.S_IMODE(st.st_mode)), st.st_ctime_ns > before))
        d = os.path.join(b, "d")
        os.mkdir(d, 0o2755)
        before = os.stat(d).st_ctime_ns
        time.sleep(0.02)
        os.chown(d, -1, -1)
        st = os.stat(d)
        r.append(("dir", oct(stat.S_IMODE(st.st_mode)), st.st_ctime_ns > before))
        return r
    both(dirs, ops)


def test_open_access_mode_3(dirs, fs):
    """Linux's access mode 3 (O_WRONLY|O_RDWR, for ioctls): the open needs
    read and write permission and succeeds; read(2) and write(2) on it fail."""
    def ops(b):
        p = os.path.join(b, "f")
        with open(p, "w") as f:
            f.write("x")
        fd = os.open(p, os.O_WRONLY | os.O_RDWR)
        r = [outcome(os.read, fd, 1), outcome(os.write, fd, b"y")]
        os.close(fd)
        os.chmod(p, 0o644)
        r.append(as_user(1000, 1000, lambda: os.close(os.open(p, os.O_WRONLY | os.O_RDWR))))
        r.append(open(p).read())
        return r
    both(dirs, ops)


def test_xattr(dirs, fs):
    def ops(b):
        p = os.path.join(b, "f")
        open(p, "w").close()
        os.setxattr(p, "user.one", b"1")
        os.setxattr(p, "user.big", os.urandom(1) * 3000)
        r = [os.getxattr(p, "user.one"), len(os.getxattr(p, "user.big"))]
        r.append(sorted(x for x in os.listxattr(p) if x.startswith("user.")))
        r.append(outcome(os.setxattr, p, "user.one", b"2", os.XATTR_CREATE))
        r.append(outcome(os.setxattr, p, "user.two", b"2", os.XATTR_REPLACE))
        r.append(outcome(os.getxattr, p, "user.missing"))
        os.removexattr(p, "user.one")
        r.append(outcome(os.removexattr, p, "user.one"))
        r.append(sorted(x for x in os.listxattr(p) if x.startswith("user.")))
        os.mkdir(os.path.join(b, "d"))
        os.setxattr(os.path.join(b, "d"), "trusted.t", b"dir")
        r.append(os.getxattr(os.path.join(b, "d"), "trusted.t"))
        os.symlink("f", os.path.join(b, "s"))
        os.setxattr(os.path.join(b, "s"), "trusted.l", b"link", follow_symlinks=False)
        r.append(os.getxattr(os.path.join(b, "s"), "trusted.l", follow_symlinks=False))
        r.append(outcome(os.getxattr, p, "trusted.l"))  # not on the target
        r.append(outcome(os.setxattr, os.path.join(b, "s"), "user.x", b"1",
                         follow_symlinks=False))
        return r
    both(dirs, ops)


def _locker(path, ready_w, go_r, result_w):
    """Child: lock bytes 0-99 for writing, report, wait, close the file."""
    fd = os.open(path, os.O_RDWR)
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 100, 0)
    os.write(ready_w, b"1")
    os.read(go_r, 1)
    os.close(fd)
    os.write(result_w, b"closed")


def test_posix_locks_two_processes(dirs, fs):
    import struct

    def ops(b):
        p = os.path.join(b, "lockfile")
        with open(p, "wb") as f:
            f.write(b"\0" * 200)
        ready_r, ready_w = os.pipe()
        go_r, go_w = os.pipe()
        res_r, res_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                _locker(p, ready_w, go_r, res_w)
            finally:
                os._exit(0)
        os.read(ready_r, 1)
        fd = os.open(p, os.O_RDWR)
        r = []
        r.append(outcome(fcntl.lockf, fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 50))
        r.append(outcome(fcntl.lockf, fd, fcntl.LOCK_SH | fcntl.LOCK_NB, 10, 50))
        r.append(outcome(fcntl.lockf, fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 100))  # free range
        # F_GETLK: who holds 0-9?
        q = struct.pack("hhqqi", fcntl.F_WRLCK, 0, 0, 10, 0)
        t, _, start, length, lpid = struct.unpack("hhqqi", fcntl.fcntl(fd, fcntl.F_GETLK, q))
        r.append((t, start, length, lpid == pid))
        # our own lock does not conflict with us
        q = struct.pack("hhqqi", fcntl.F_WRLCK, 0, 100, 10, 0)
        r.append(struct.unpack("hhqqi", fcntl.fcntl(fd, fcntl.F_GETLK, q))[0])
        os.write(go_w, b"1")
        os.read(res_r, 6)
        os.waitpid(pid, 0)
        r.append(outcome(fcntl.lockf, fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 100, 0))
        os.close(fd)
        for x in (ready_r, ready_w, go_r, go_w, res_r, res_w):
            os.close(x)
        return r
    res = both(dirs, ops)
    assert res[1][0][0] == "errno" and res[1][3][3] is True


def test_blocking_lock_waits_and_is_woken(dirs, fs):
    p = str(dirs["mnt"] / "lk")
    open(p, "w").close()
    fd = os.open(p, os.O_RDWR)
    fcntl.lockf(fd, fcntl.LOCK_EX)
    pid = os.fork()
    if pid == 0:
        fd2 = os.open(p, os.O_RDWR)
        t0 = time.monotonic()
        fcntl.lockf(fd2, fcntl.LOCK_EX)  # blocks until the parent unlocks
        os._exit(0 if time.monotonic() - t0 >= 0.25 else 1)
    time.sleep(0.4)
    # the mount keeps serving other requests while a lock waits
    assert os.listdir(str(dirs["mnt"])) == ["lk"]
    fcntl.lockf(fd, fcntl.LOCK_UN)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    os.close(fd)


def test_blocking_lock_interrupted_by_signal(dirs, fs):
    """A signal to a process waiting for a lock ends the wait (FUSE_INTERRUPT
    reaches the server, which answers EINTR)."""
    p = str(dirs["mnt"] / "lk")
    open(p, "w").close()
    fd = os.open(p, os.O_RDWR)
    fcntl.lockf(fd, fcntl.LOCK_EX)
    pid = os.fork()
    if pid == 0:
        def alarm(*a):
            raise TimeoutError
        signal.signal(signal.SIGALRM, alarm)
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        fd2 = os.open(p, os.O_RDWR)
        try:
            fcntl.lockf(fd2, fcntl.LOCK_EX)
            os._exit(2)
        except TimeoutError:
            os._exit(0)
        except OSError:
            os._exit(3)
    try:
        wait_for(lambda: os.waitpid(pid, os.WNOHANG) != (0, 0) or None, "the waiter to end", 10)
    except AssertionError:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    os.close(fd)


def test_readdir_10000_entries(dirs, fs):
    def ops(b):
        d = os.path.join(b, "many")
        os.mkdir(d)
        for i in range(10000):
            open(os.path.join(d, f"file-{i:05d}-{'x' * (i % 40)}"), "w").close()
        os.mkdir(os.path.join(d, "sub"))
        names = os.listdir(d)
        kinds = {e.name: (e.is_dir(), e.is_file()) for e in os.scandir(d)}
        return len(names), len(set(names)), sorted(names) == sorted(kinds), \
            hashlib.sha256("\n".join(sorted(names)).encode()).hexdigest(), kinds["sub"]
    res = both(dirs, ops)
    assert res[1][0] == 10001


def test_readdir_with_changes_between_calls(dirs, fs):
    def ops(b):
        d = os.path.join(b, "d")
        os.mkdir(d)
        for i in range(300):
            open(os.path.join(d, f"{i}"), "w").close()
        seen = []
        with os.scandir(d) as it:
            for n, e in enumerate(it):
                seen.append(e.name)
                if n == 10:
                    os.unlink(os.path.join(d, "299")) if e.name != "299" else None
        return len(set(seen)) >= 299, sorted(os.listdir(d)) == sorted(str(i) for i in range(299))
    both(dirs, ops)


def test_concurrent_writers(dirs, fs):
    def ops(b):
        p = os.path.join(b, "shared")
        open(p, "wb").close()
        pids = []
        for w in range(4):
            pid = os.fork()
            if pid == 0:
                fd = os.open(p, os.O_WRONLY)
                own = os.open(os.path.join(b, f"own{w}"), os.O_CREAT | os.O_WRONLY, 0o644)
                for k in range(64):
                    chunk = bytes([w * 64 + k % 64]) * 4096
                    os.pwrite(fd, chunk, (k * 4 + w) * 4096)
                    os.write(own, chunk)
                os._exit(0)
            pids.append(pid)
        for pid in pids:
            os.waitpid(pid, 0)
        h = [hashlib.sha256(open(p, "rb").read()).hexdigest()]
        h += [hashlib.sha256(open(os.path.join(b, f"own{w}"), "rb").read()).hexdigest()
              for w in range(4)]
        return h, os.stat(p).st_size
    both(dirs, ops)


def test_mknod_fifo_and_devices(dirs, fs):
    def ops(b):
        p = os.path.join(b, "fifo")
        os.mkfifo(p, 0o644)
        r = [stat.S_ISFIFO(os.stat(p).st_mode)]
        fd = os.open(p, os.O_RDWR)  # a FIFO on the mount is the kernel's, local
        os.write(fd, b"through the fifo")
        r.append(os.read(fd, 100))
        os.close(fd)
        os.mknod(os.path.join(b, "null"), 0o600 | stat.S_IFCHR, os.makedev(1, 3))
        st = os.lstat(os.path.join(b, "null"))
        r.append((stat.S_ISCHR(st.st_mode), os.major(st.st_rdev), os.minor(st.st_rdev)))
        os.mknod(os.path.join(b, "reg"), 0o600 | stat.S_IFREG)
        r.append(stat.S_ISREG(os.lstat(os.path.join(b, "reg")).st_mode))
        return r
    both(dirs, ops)
    # mounted nodev by default: the device node cannot be used on the mount
    with pytest.raises(PermissionError):
        open(dirs["mnt"] / "null", "rb")


def test_statfs(dirs, fs):
    a, b = os.statvfs(str(dirs["mnt"])), os.statvfs(str(dirs["src"]))
    assert (a.f_bsize, a.f_frsize, a.f_blocks, a.f_files, a.f_namemax) == \
        (b.f_bsize, b.f_frsize, b.f_blocks, b.f_files, b.f_namemax)
    assert abs(a.f_bfree - b.f_bfree) < b.f_blocks // 100 + 1024


def test_seek_holes_fallocate(dirs, fs):
    def ops(b):
        p = os.path.join(b, "sparse")
        fd = os.open(p, os.O_CREAT | os.O_RDWR, 0o644)
        os.pwrite(fd, b"a" * 4096, 0)
        os.pwrite(fd, b"b" * 4096, 1 << 20)
        r = [os.lseek(fd, 0, os.SEEK_DATA), os.lseek(fd, 0, os.SEEK_HOLE),
             os.lseek(fd, 8192, os.SEEK_DATA), outcome(os.lseek, fd, 2 << 20, os.SEEK_DATA)]
        os.posix_fallocate(fd, 0, 4 << 20)
        r.append(os.fstat(fd).st_size)
        fallocate(fd, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, 4096)
        r.append(os.pread(fd, 8, 0))
        r.append(os.lseek(fd, 0, os.SEEK_DATA))
        r.append(outcome(fallocate, fd, 0x40, 0, 4096))  # bad mode
        os.close(fd)
        return r
    both(dirs, ops)


def test_copy_file_range(dirs, fs):
    blob = os.urandom(300000)

    def ops(b):
        a, c = os.path.join(b, "a"), os.path.join(b, "c")
        with open(a, "wb") as f:
            f.write(blob)
        fi, fo = os.open(a, os.O_RDONLY), os.open(c, os.O_CREAT | os.O_WRONLY, 0o644)
        n = 0
        while n < len(blob):
            k = os.copy_file_range(fi, fo, len(blob) - n, n, n)
            assert k > 0
            n += k
        os.close(fi)
        os.close(fo)
        return open(c, "rb").read() == blob, os.stat(c).st_size
    both(dirs, ops)


def test_unlinked_open_file_and_tmpfile(dirs, fs):
    def ops(b):
        p = os.path.join(b, "gone")
        fd = os.open(p, os.O_CREAT | os.O_RDWR, 0o600)
        os.unlink(p)
        os.write(fd, b"still here")
        r = [os.pread(fd, 100, 0), os.fstat(fd).st_nlink, outcome(os.stat, p)]
        os.close(fd)
        fd = os.open(b, os.O_TMPFILE | os.O_RDWR, 0o600)
        os.write(fd, b"tmp")
        r.append((os.pread(fd, 10, 0), os.fstat(fd).st_nlink))
        os.close(fd)
        r.append(os.listdir(b))
        return r
    both(dirs, ops)


def test_mmap_shared_write(dirs, fs):
    import mmap

    def ops(b):
        p = os.path.join(b, "m")
        with open(p, "wb") as f:
            f.write(b"\0" * 8192)
        with open(p, "r+b") as f:
            m = mmap.mmap(f.fileno(), 8192)
            m[100:105] = b"hello"
            m.flush()
            m.close()
        return open(p, "rb").read()[100:105]
    both(dirs, ops)


# ------------------------------------------------------------------ escapes

def test_symlink_ops_never_reach_the_target(dirs, fs):
    """Ops on a symlink that do not follow (lchown, lutimes, O_NOFOLLOW,
    link to it) change the link, never what it points to outside SRC."""
    outside = dirs["outside"] / "target"
    outside.write_text("outside")
    os.chmod(outside, 0o644)
    before = os.stat(outside)
    src, mnt = dirs["src"], dirs["mnt"]
    os.symlink(str(outside), src / "abs")
    os.symlink("../outside/target", src / "rel")
    os.symlink("../..", src / "up")
    for name in ("abs", "rel"):
        p = str(mnt / name)
        os.chown(p, 4321, 4321, follow_symlinks=False)
        os.utime(p, ns=(7, 7), follow_symlinks=False)
        with pytest.raises(OSError) as e:
            os.open(p, os.O_RDONLY | os.O_NOFOLLOW)
        assert e.value.errno == errno.ELOOP
        os.setxattr(p, "trusted.mark", b"1", follow_symlinks=False)
        os.link(p, str(mnt / (name + ".hl")), follow_symlinks=False)
    after = os.stat(outside)
    assert (after.st_uid, after.st_mtime_ns, after.st_nlink) == \
        (before.st_uid, before.st_mtime_ns, before.st_nlink)
    assert "trusted.mark" not in os.listxattr(str(outside))
    assert os.readlink(str(mnt / "up")) == "../.."
    assert sorted(os.listdir(dirs["outside"])) == ["target"]


def test_directory_swapped_for_symlink_while_mounted(dirs):
    """A directory the kernel knows is replaced on the host by a symlink
    pointing outside: creates, writes and renames through the cached
    directory land in the original directory, not outside."""
    src, mnt, outside = dirs["src"], dirs["mnt"], dirs["outside"]
    (src / "d").mkdir()
    (src / "d" / "f").write_text("original")
    m = Mount(src, mnt, "timeout=60")
    try:
        dfd = os.open(str(mnt / "d"), os.O_RDONLY | os.O_DIRECTORY)
        ffd = os.open(str(mnt / "d" / "f"), os.O_RDONLY)
        os.close(ffd)
        os.rename(src / "d", src / "d.moved")
        os.symlink(str(outside), src / "d")
        (outside / "f").write_text("outside")
        # through the cached directory (its nodeid): new files, a write to f
        fd = os.open("new", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=dfd)
        os.write(fd, b"created")
        os.close(fd)
        fd = os.open("f", os.O_WRONLY | os.O_TRUNC, dir_fd=dfd)
        os.write(fd, b"rewritten")
        os.close(fd)
        os.mkdir("sub", dir_fd=dfd)
        os.rename("new", "new2", src_dir_fd=dfd, dst_dir_fd=dfd)
        os.close(dfd)
        assert sorted(os.listdir(outside)) == ["f"]
        assert (outside / "f").read_text() == "outside"
        assert sorted(os.listdir(src / "d.moved")) == ["f", "new2", "sub"]
        assert (src / "d.moved" / "f").read_text() == "rewritten"
    finally:
        m.close()
    assert not mounted(mnt)


def test_file_swapped_for_symlink_while_mounted(dirs):
    src, mnt, outside = dirs["src"], dirs["mnt"], dirs["outside"]
    (src / "f").write_text("inside")
    (outside / "secret").write_text("secret")
    os.chmod(outside / "secret", 0o644)
    m = Mount(src, mnt, "timeout=60")
    try:
        assert (mnt / "f").read_text() == "inside"  # the kernel caches f's nodeid
        os.rename(src / "f", src / "f.old")
        os.symlink(str(outside / "secret"), src / "f")
        with open(mnt / "f", "w") as fh:  # cached entry: served from the old inode
            fh.write("written")
        os.truncate(mnt / "f", 3)
        os.chmod(mnt / "f", 0o600)
        assert (outside / "secret").read_text() == "secret"
        assert stat.S_IMODE(os.stat(outside / "secret").st_mode) == 0o644
        assert stat.S_IMODE(os.stat(src / "f.old").st_mode) == 0o600
        assert (src / "f.old").read_text() == "wri"
    finally:
        m.close()


def test_source_replaced_while_mounted(dirs):
    """The whole source directory renamed away and replaced by a symlink to
    somewhere else: the mount keeps serving the original directory."""
    src, mnt, outside = dirs["src"], dirs["mnt"], dirs["outside"]
    (src / "keep").write_text("k")
    m = Mount(src, mnt)
    try:
        moved = src.parent / "src.moved"
        os.rename(src, moved)
        os.symlink(str(outside), src)
        (mnt / "after").write_text("a")
        os.mkdir(mnt / "newdir")
        assert sorted(os.listdir(mnt)) == ["after", "keep", "newdir"]
        assert sorted(os.listdir(moved)) == ["after", "keep", "newdir"]
        assert os.listdir(outside) == []
        assert not os.path.exists(outside / "after")
    finally:
        m.close()
        if os.path.islink(src):
            os.unlink(src)


def test_dotdot_at_root_stays_at_root(dirs, fs):
    """Through a chroot into the mount, `..` of the root is the root."""
    os.mkdir(dirs["mnt"] / "sub")
    pid = os.fork()
    if pid == 0:
        try:
            os.chroot(str(dirs["mnt"]))
            os.chdir("/")
            ok = sorted(os.listdir("/../../..")) == ["sub"] and \
                os.stat("/..").st_ino == os.stat("/").st_ino
            os._exit(0 if ok else 1)
        except BaseException:  # noqa: BLE001
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


# ------------------------------------------------------------------ lifecycle

def test_sigterm_unmounts_cleanly(dirs):
    m = Mount(dirs["src"], dirs["mnt"])
    try:
        (dirs["mnt"] / "x").write_text("1")
        assert m.stop(signal.SIGTERM) == 0
        assert not mounted(dirs["mnt"])
        assert os.listdir(dirs["mnt"]) == []
        assert (dirs["src"] / "x").read_text() == "1"
    finally:
        m.close()


def test_sigint_unmounts_cleanly(dirs):
    m = Mount(dirs["src"], dirs["mnt"])
    try:
        assert m.stop(signal.SIGINT) == 0
        assert not mounted(dirs["mnt"])
    finally:
        m.close()


def test_external_umount_ends_server(dirs):
    m = Mount(dirs["src"], dirs["mnt"])
    try:
        subprocess.run(["umount", str(dirs["mnt"])], check=True)
        assert m.proc.wait(timeout=10) == 0
    finally:
        m.close()


def test_daemon_and_fs_umount(dirs):
    r = subprocess.run([COCOON, "fs", "mount", "--daemon", str(dirs["src"]), str(dirs["mnt"])],
                       capture_output=True, text=True, timeout=20)
    try:
        assert r.returncode == 0, r.stderr
        assert mounted(dirs["mnt"])
        (dirs["mnt"] / "d").write_text("daemon")
        assert (dirs["src"] / "d").read_text() == "daemon"
        u = subprocess.run([COCOON, "fs", "umount", str(dirs["mnt"])], capture_output=True,
                           text=True, timeout=20)
        assert u.returncode == 0, u.stderr
        assert not mounted(dirs["mnt"])
        # the daemon is gone: no process serves this source any more
        def server_gone():
            for pid in os.listdir("/proc"):
                if pid.isdigit():
                    try:
                        cmd = open(f"/proc/{pid}/cmdline", "rb").read()
                    except OSError:
                        continue
                    if str(dirs["mnt"]).encode() in cmd and b"fs\0mount" in cmd:
                        return False
            return True
        wait_for(server_gone, "the daemon to exit")
    finally:
        if mounted(dirs["mnt"]):
            subprocess.run(["umount", "-l", str(dirs["mnt"])], check=False)


def test_busy_mount_unmounted_lazily_on_sigterm(dirs):
    m = Mount(dirs["src"], dirs["mnt"])
    try:
        fd = os.open(str(dirs["mnt"]), os.O_RDONLY)
        m.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: not mounted(dirs["mnt"]), "the lazy unmount")
        assert len(os.listdir(fd)) == 0  # still served through the open fd
        os.close(fd)
        assert m.proc.wait(timeout=10) == 0
    finally:
        m.close()


@pytest.mark.parametrize("args,needle", [
    (["{missing}", "{mnt}"], "source"),
    (["{file}", "{mnt}"], "source"),
    (["{src}", "{missing}"], "mount point"),
    (["{src}", "{file}"], "mount point"),
    (["-o", "bogus", "{src}", "{mnt}"], "unknown fs option"),
    (["-o", "uidmap=1:2", "{src}", "{mnt}"], "uidmap"),
    (["-o", "threads=0", "{src}", "{mnt}"], "threads"),
    (["-o", "timeout=-1", "{src}", "{mnt}"], "timeout"),
    (["{src}"], "want SRC and DIR"),
    (["--frobnicate", "{src}", "{mnt}"], "unknown or incomplete option"),
])
def test_bad_input(dirs, args, needle):
    f = dirs["src"] / "file"
    f.write_text("")
    sub = {"missing": str(dirs["src"] / "missing"), "mnt": str(dirs["mnt"]),
           "file": str(f), "src": str(dirs["src"])}
    argv = [a.format(**sub) for a in args]
    r = subprocess.run([COCOON, "fs", "mount"] + argv, capture_output=True, text=True,
                       timeout=20)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cocoon: "), r.stderr
    assert needle in lines[0]
    assert not mounted(dirs["mnt"])


@pytest.mark.parametrize("args,needle", [
    (["{src}"], "want SRC and one of --socket PATH or --fd N"),
    (["--fd", "0", "--socket", "{sock}", "{src}"], "want SRC and one of"),
    (["--fd", "99", "{src}"], "--fd `99` is not an open fd"),
    (["--fd", "0", "{missing}"], "shared directory"),
    (["-o", "bogus", "--fd", "0", "{src}"], "unknown fs option"),
    (["--socket", "{longsock}", "{src}"], "is too long"),
])
def test_vhost_user_bad_input(dirs, args, needle):
    """`cocoon fs vhost-user` (the backend qemu's vhost-user-fs-device
    talks to; served end to end in tests/integration/test_vm_guest.py):
    bad input is one clear line and a nonzero exit."""
    sub = {"missing": str(dirs["src"] / "missing"), "src": str(dirs["src"]),
           "sock": str(dirs["mnt"] / "s"), "longsock": "/tmp/" + "x" * 120}
    argv = [a.format(**sub) for a in args]
    r = subprocess.run([COCOON, "fs", "vhost-user"] + argv, capture_output=True, text=True,
                       timeout=20, stdin=subprocess.DEVNULL)
    assert r.returncode == 1, r
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cocoon: "), r.stderr
    assert needle in lines[0]


def test_vhost_user_frontend_hangs_up(dirs):
    """A frontend that connects and hangs up at once ends the backend
    cleanly (exit 0); one that sends a message the backend does not offer
    ends it with an error naming the request."""
    import socket
    import struct
    for payload, rc, needle in [(b"", 0, ""),
                                (struct.pack("<III", 99, 1, 0), 1, "request 99 is not offered")]:
        a, b = socket.socketpair()
        p = subprocess.Popen([COCOON, "fs", "vhost-user", "--fd", str(b.fileno()),
                              str(dirs["src"])], pass_fds=[b.fileno()], stderr=subprocess.PIPE,
                             text=True)
        b.close()
        a.sendall(payload)
        a.close()
        _, err = p.communicate(timeout=20)
        assert p.returncode == rc, err
        assert needle in err


def test_umount_refuses_non_fuse(dirs):
    r = subprocess.run([COCOON, "fs", "umount", str(dirs["mnt"])], capture_output=True,
                       text=True)
    assert r.returncode == 1 and "not a FUSE mount" in r.stderr


# ------------------------------------------------------------------ options

def test_uidmap(dirs):
    src, mnt = dirs["src"], dirs["mnt"]
    (src / "owned").write_text("x")
    os.chown(src / "owned", 100000, 100000)
    (src / "unmapped").write_text("y")
    os.chown(src / "unmapped", 5, 5)
    m = Mount(src, mnt, "uidmap=100000:0:65536,gidmap=100000:0:65536")
    try:
        st = os.stat(mnt / "owned")
        assert (st.st_uid, st.st_gid) == (0, 0)
        st = os.stat(mnt / "unmapped")
        assert (st.st_uid, st.st_gid) == (65534, 65534)
        (mnt / "new").write_text("n")  # created by guest root = host 100000
        st = os.stat(src / "new")
        assert (st.st_uid, st.st_gid) == (100000, 100000)
        os.chown(mnt / "new", 1000, 1000)
        assert os.stat(src / "new").st_uid == 101000
    finally:
        m.close()


@pytest.mark.parametrize("opts", ["nopassthrough", "writeback", "max_pages=1,threads=1",
                                  "timeout=0", "locks=local,spin_us=50"])
def test_io_in_other_modes(dirs, opts):
    m = Mount(dirs["src"], dirs["mnt"], opts)
    try:
        blob = os.urandom(1 << 20)
        p = dirs["mnt"] / "f"
        p.write_bytes(blob)
        assert p.read_bytes() == blob
        with open(p, "ab") as f:
            f.write(b"end")
        assert (dirs["src"] / "f").read_bytes() == blob + b"end"
        with open(p, "r+b") as f:
            f.seek(5)
            f.write(b"Z")
        assert (dirs["src"] / "f").read_bytes()[5:6] == b"Z"
        os.truncate(p, 10)
        assert p.read_bytes() == blob[:5] + b"Z" + blob[6:10]
    finally:
        m.close()


def test_local_locks_still_lock(dirs):
    """locks=local: the kernel keeps POSIX locks for the mount (no FLUSH per
    close); two processes on the mount still exclude each other."""
    m = Mount(dirs["src"], dirs["mnt"], "locks=local")
    try:
        p = str(dirs["mnt"] / "l")
        open(p, "w").close()
        fd = os.open(p, os.O_RDWR)
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        pid = os.fork()
        if pid == 0:
            fd2 = os.open(p, os.O_RDWR)
            try:
                fcntl.lockf(fd2, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os._exit(1)
            except OSError:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        os.close(fd)
    finally:
        m.close()


def test_readonly(dirs):
    (dirs["src"] / "f").write_text("r")
    m = Mount(dirs["src"], dirs["mnt"], "ro")
    try:
        assert (dirs["mnt"] / "f").read_text() == "r"
        for fn in (lambda: (dirs["mnt"] / "g").write_text("x"),
                   lambda: open(dirs["mnt"] / "f", "w"),
                   lambda: os.mkdir(dirs["mnt"] / "d")):
            with pytest.raises(OSError) as e:
                fn()
            assert e.value.errno == errno.EROFS
    finally:
        m.close()


def test_host_changes_visible(dirs):
    m = Mount(dirs["src"], dirs["mnt"], "timeout=0")
    try:
        (dirs["src"] / "h").write_text("v1")
        assert (dirs["mnt"] / "h").read_text() == "v1"
        time.sleep(0.01)
        (dirs["src"] / "h").write_text("version2")
        assert (dirs["mnt"] / "h").read_text() == "version2"
        os.unlink(dirs["src"] / "h")
        assert not (dirs["mnt"] / "h").exists()
    finally:
        m.close()


def server_rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return None


def sanitized(pid):
    with open(f"/proc/{pid}/maps") as f:
        return "libasan" in f.read()


# ------------------------------------------------------------------ inode fds
# The server holds an O_PATH fd per inode only while the inode is in use; idle
# ones are closed past a budget derived from RLIMIT_NOFILE (64 under the 256
# used here) and reopened from their file handles.

LOW_NOFILE = 256


def server_inode_fds(m):
    """Paths of the O_PATH fds (inodes) the server holds."""
    out = []
    base = f"/proc/{m.proc.pid}"
    for n in os.listdir(f"{base}/fd"):
        try:
            info = open(f"{base}/fdinfo/{n}").read()
            flags = int(re.search(r"flags:\s+([0-7]+)", info).group(1), 8)
            if flags & os.O_PATH:
                out.append(os.readlink(f"{base}/fd/{n}"))
        except (OSError, AttributeError):
            pass  # closed meanwhile
    return out


def holds(m, path):
    """Does the server hold an O_PATH fd of path?"""
    return str(path) in server_inode_fds(m)


def look_up_others(b, n=300):
    """Create and stat n other files under b: on a low-limit mount the server
    closes the fds of the idle inodes looked up before them."""
    d = os.path.join(b, "others")
    os.makedirs(d, exist_ok=True)
    for i in range(n):
        p = os.path.join(d, f"o{i}")
        open(p, "w").close()
        os.lstat(p)


def tree_view(base):
    """Everything under base, sorted: (path, stat summary, content)."""
    out = []
    for root, ds, fs in os.walk(base):
        ds.sort()
        for n in sorted(fs + [d for d in ds]):
            p = os.path.join(root, n)
            st = os.lstat(p)
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    data = f.read()
            elif stat.S_ISLNK(st.st_mode):
                data = os.readlink(p)
            else:
                data = sorted(os.listdir(p))
            out.append((os.path.relpath(p, base), st_tuple(st), data))
    return out


@pytest.fixture
def lowfs(dirs):
    m = Mount(dirs["src"], dirs["mnt"], nofile=LOW_NOFILE)
    yield m
    m.close()
    assert not mounted(dirs["mnt"])


def test_walk_tree_larger_than_fd_limit(dirs):
    """3,000 files and 30 directories under a server limited to 256 fds (the
    kernel keeps all of them: timeout=600): walked, stat()ed and read twice
    (the second time every inode is reopened from its file handle) and by
    find(1); the same as the native tree, and the server stays in its limit."""
    src, mnt = dirs["src"], dirs["mnt"]
    for d in range(30):
        sub = src / f"d{d:02}"
        sub.mkdir()
        for f in range(100):
            (sub / f"f{f:03}").write_bytes(f"{d}/{f};".encode() * (f % 7))
        os.symlink("f000", sub / "link")
    want = tree_view(str(src))
    m = Mount(src, mnt, "timeout=600", nofile=LOW_NOFILE)
    try:
        assert tree_view(str(mnt)) == want
        assert len(server_inode_fds(m)) < 100
        assert tree_view(str(mnt)) == want
        def find(base):
            r = subprocess.run(["find", base, "-printf", "%P %y %s %n %m\\n"],
                               capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, r.stderr
            return sorted(r.stdout.splitlines())
        found = find(str(mnt))
        assert found == find(str(src)) and len(found) == 1 + 30 * 102
        assert len(os.listdir(f"/proc/{m.proc.pid}/fd")) < LOW_NOFILE
        assert m.proc.poll() is None
    finally:
        m.close()


def test_rename_file_whose_fd_was_evicted(dirs, lowfs):
    """A file and its directory known to the server but idle (fds closed):
    rename it into another directory and use it by the new name."""
    def ops(b):
        j = lambda *p: os.path.join(b, *p)  # noqa: E731
        os.mkdir(j("d"))
        with open(j("d", "f"), "wb") as f:
            f.write(b"content")
        ino = os.stat(j("d", "f")).st_ino
        look_up_others(b)
        if b == str(dirs["mnt"]):
            assert not holds(lowfs, dirs["src"] / "d" / "f")
            assert not holds(lowfs, dirs["src"] / "d")
        os.mkdir(j("e"))
        os.rename(j("d", "f"), j("e", "g"))
        r = [open(j("e", "g"), "rb").read(), os.listdir(j("d")), os.listdir(j("e"))]
        r.append(os.stat(j("e", "g")).st_ino == ino)
        with open(j("e", "g"), "ab") as f:
            f.write(b"+more")
        os.chmod(j("e", "g"), 0o600)
        r.append(open(j("e", "g"), "rb").read())
        r.append(st_tuple(os.stat(j("e", "g")), times=False))
        r.append(outcome(os.stat, j("d", "f")))
        look_up_others(b)
        os.rename(j("e"), j("d", "e2"))  # a directory whose fd was closed
        r.append(open(j("d", "e2", "g"), "rb").read())
        return r
    both(dirs, ops)


def test_unlinked_file_whose_fd_was_evicted(dirs):
    """A file open on the mount, its inode fd closed as idle, then deleted:
    fstat, fchmod, xattrs, truncate and I/O through the open file behave as
    on the native filesystem (the open file keeps the host inode, so its
    handle still opens). timeout=0: every fstat asks the server."""
    m = Mount(dirs["src"], dirs["mnt"], "timeout=0", nofile=LOW_NOFILE)
    try:
        def ops(b):
            p = os.path.join(b, "f")
            fd = os.open(p, os.O_CREAT | os.O_RDWR, 0o644)
            os.write(fd, b"some data")
            look_up_others(b)
            if b == str(dirs["mnt"]):
                assert not holds(m, dirs["src"] / "f")
            os.unlink(p)
            r = [st_tuple(os.fstat(fd), times=False), outcome(os.stat, p)]
            os.fchmod(fd, 0o600)
            os.setxattr(fd, "user.k", b"v")
            r.append((st_tuple(os.fstat(fd), times=False), os.getxattr(fd, "user.k")))
            os.ftruncate(fd, 4)
            os.pwrite(fd, b"XY", 6)
            r.append((os.pread(fd, 100, 0), os.fstat(fd).st_size, os.fstat(fd).st_nlink))
            os.close(fd)
            r.append(outcome(os.stat, p))
            r.append(sorted(os.listdir(b)))
            return r
        both(dirs, ops)
    finally:
        m.close()


def test_reused_inode_number_is_not_served(dirs):
    """A file the kernel knows (entry cached for 60 s), idle with its fd
    closed, deleted on the host, and its inode number given to a new file:
    the new file is its own inode (own content), and the old name gets
    ESTALE (or ENOENT), never the new file's data."""
    src, mnt = dirs["src"], dirs["mnt"]
    (src / "old").write_bytes(b"old content")
    m = Mount(src, mnt, "timeout=60", nofile=LOW_NOFILE)
    try:
        assert (mnt / "old").read_bytes() == b"old content"
        look_up_others(str(mnt))
        assert not holds(m, src / "old")
        ino = os.stat(src / "old").st_ino
        os.unlink(src / "old")
        for i in range(100):  # ext4 gives a freed inode number out again at once
            (src / f"new{i}").write_bytes(b"new %d" % i)
            if os.stat(src / f"new{i}").st_ino == ino:
                break
        else:
            pytest.skip("the filesystem did not reuse the inode number")
        assert (mnt / f"new{i}").read_bytes() == b"new %d" % i
        assert os.stat(mnt / f"new{i}").st_ino == ino
        with pytest.raises(OSError) as e:
            (mnt / "old").read_bytes()
        assert e.value.errno in (errno.ESTALE, errno.ENOENT)
        assert (mnt / f"new{i}").read_bytes() == b"new %d" % i
    finally:
        m.close()


def test_other_filesystems_under_the_source(dirs, tmp_path):
    """A tmpfs (file handles: opened through a mount fd of its own) and an
    overlayfs (no file handles: its inodes keep their fds, as before) mounted
    inside the source, walked twice under the low fd limit."""
    src, mnt = dirs["src"], dirs["mnt"]
    for i in range(150):
        (src / f"e{i}").write_text(f"ext4 {i}")
    (src / "tmp").mkdir()
    (src / "ovl").mkdir()
    low, up, work = (tmp_path / n for n in ("lower", "upper", "work"))
    for d in (low, up, work):
        d.mkdir()
    for i in range(20):
        (low / f"l{i}").write_text(f"lower {i}")
    mounts = []
    m = None
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(src / "tmp")],
                       check=True)
        mounts.append(src / "tmp")
        for i in range(150):
            (src / "tmp" / f"t{i}").write_text(f"tmpfs {i}")
        r = subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                            f"lowerdir={low},upperdir={up},workdir={work}", str(src / "ovl")],
                           capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"no overlayfs here: {r.stderr.strip()}")
        mounts.append(src / "ovl")
        want = tree_view(str(src))
        m = Mount(src, mnt, "timeout=600", nofile=LOW_NOFILE)
        assert tree_view(str(mnt)) == want
        assert tree_view(str(mnt)) == want
        held = server_inode_fds(m)
        # overlayfs has no handles: every inode of it the kernel knows keeps its fd
        assert all(str(src / "ovl" / f"l{i}") in held for i in range(20))
        assert len([p for p in held if p.startswith(str(src / "tmp") + "/")]) < 100
    finally:
        if m:
            m.close()
        for p in reversed(mounts):
            subprocess.run(["umount", "-l", str(p)], check=False)


def test_memory_with_10000_inodes(dirs):
    """10,000 inodes known to the kernel, the server under RLIMIT_NOFILE
    1024:1024 (what engines often set): it keeps within the limit, and its
    RSS is reported (bench/fs.py prints it too; the target is 4 MiB)."""
    d = dirs["src"] / "many"
    d.mkdir()
    for i in range(10000):
        (d / f"f{i}").write_bytes(b"")
    m = Mount(dirs["src"], dirs["mnt"], "timeout=600", nofile=1024)
    try:
        n = 0
        for e in os.scandir(dirs["mnt"] / "many"):
            e.stat(follow_symlinks=False)
            n += 1
        assert n == 10000
        fds = len(os.listdir(f"/proc/{m.proc.pid}/fd"))
        assert fds < 1024
        rss = server_rss_kib(m.proc.pid)
        print(f"\nserver RSS with 10,000 inodes known: {rss} KiB ({fds} fds)")
        if sanitized(m.proc.pid):
            pytest.skip(f"sanitizer build: its RSS ({rss} KiB) is not the server's")
        assert rss is not None and rss < 4096, f"server RSS {rss} KiB"
    finally:
        m.close()


def _switches(pid):
    """Voluntary context switches of the server's threads: {comm: count}."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                comm = f.read().strip()
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                n = next(int(l.split()[1]) for l in f if l.startswith("voluntary_ctxt"))
        except (OSError, StopIteration):
            continue
        key = "uring" if comm.startswith("fs-uring-") else "dev"
        out[key] = out.get(key, 0) + n
    return out


def test_io_uring_queues_serve_the_requests(dirs, uring):
    """With io_uring allowed, a queue thread per possible CPU serves the
    requests (each wakes for them), not the /dev/fuse readers."""
    m = Mount(dirs["src"], dirs["mnt"], "timeout=0")
    try:
        (dirs["src"] / "f").write_text("x")
        wait_for(lambda: _switches(m.proc.pid).get("uring"), "the io_uring queues")
        with open("/sys/devices/system/cpu/possible") as f:
            last = int(f.read().strip().replace(",", "-").split("-")[-1])
        threads = [t for t in os.listdir(f"/proc/{m.proc.pid}/task")
                   if open(f"/proc/{m.proc.pid}/task/{t}/comm").read().startswith("fs-uring-")]
        assert len(threads) == last + 1
        before = _switches(m.proc.pid)
        for _ in range(500):
            os.stat(dirs["mnt"] / "f")  # timeout=0: a LOOKUP or GETATTR each
        after = _switches(m.proc.pid)
        assert after["uring"] - before["uring"] >= 400, (before, after)
        assert after.get("dev", 0) - before.get("dev", 0) < 100, (before, after)
    finally:
        m.close()

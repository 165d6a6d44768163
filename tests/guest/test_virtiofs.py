"""virtio-fs driven at CPL3 by tests/guest/virtiofs_guest.c through the real
`cocoon vm run --fs tag=TAG,dir=PATH`: the guest sends real FUSE requests
over the device's virtqueues (INIT, LOOKUP, GETATTR, OPEN, READ, CREATE,
WRITE, MKDIR, MKNOD, READDIR, UNLINK, RELEASE, FORGET on hiprio, escapes, hostile
chains, DESTROY, a device reset); the shared directory is prepared and
checked here, byte for byte."""
import os
import stat
import subprocess

import pytest

from test_guests import BUILD, COCOON, TIMEOUT, pytestmark  # noqa: F401

GUEST = os.path.join(BUILD, "tests", "guest", "virtiofs_guest.elf")
SIZE, SEED = 10000, 5
WSIZE, WSEED = 12345, 11


def pattern(n, mul, seed):
    return bytes((i * mul + seed) & 255 for i in range(n))


def run(cmdline, *devices):
    return subprocess.run([COCOON, "vm", "run", "--kernel", GUEST, "--memory", "64",
                           "--cmdline", cmdline, *devices], stdin=subprocess.DEVNULL,
                          capture_output=True, errors="replace", timeout=TIMEOUT)


@pytest.fixture
def share(tmp_path):
    """The shared directory, and a directory outside it that a symlink in
    the share points to."""
    d = tmp_path / "share"
    d.mkdir()
    (d / "hello.bin").write_bytes(pattern(SIZE, 7, SEED))
    (d / "list").mkdir()
    for name in ("alpha", "beta", "gamma"):
        (d / "list" / name).write_text(name)
    (d / "victim").write_text("delete me")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("not for the guest")
    os.symlink(str(outside), d / "out")
    return d


def snapshot(path):
    """Every name under path with its type, mode and contents."""
    out = {}
    for root, dirs, files in os.walk(path):
        for n in dirs + files:
            p = os.path.join(root, n)
            st = os.lstat(p)
            body = open(p, "rb").read() if stat.S_ISREG(st.st_mode) else None
            out[os.path.relpath(p, path)] = (stat.S_IFMT(st.st_mode), st.st_mode & 0o7777, body)
    return out


def guest_args(extra=""):
    return f"tag=share size={SIZE} seed={SEED} wsize={WSIZE} wseed={WSEED} {extra}".strip()


@pytest.mark.parametrize("mode", ["", "indirect=1", "event_idx=1", "indirect=1 event_idx=1"])
def test_fuse_requests_over_virtqueues(share, mode):
    outside_before = snapshot(share.parent / "outside")
    r = run(guest_args(f"pages=248 {mode}"), "--fs", f"tag=share,dir={share}")
    assert r.returncode == 0, r.stderr
    assert "virtio_mmio.device=4K@0xd0000000:5" in r.stderr
    for line in ["tag `share`, 1 request queues", "INIT 7.",
                 "LOOKUP GETATTR OPEN READ hello.bin (10000 bytes) ok",
                 "CREATE WRITE RELEASE new.bin (12345 bytes) ok", "MKDIR made ok",
                 "MKNOD fifo ok, device node refused",
                 "READDIR list: 5 entries ok", "UNLINK victim ok",
                 "FORGET BATCH_FORGET on hiprio ok", "escapes refused",
                 "hostile requests answered", "DESTROY, INIT again ok",
                 "no DAX window, SETUPMAPPING ENOSYS ok",
                 "NEEDS_RESET, reset, INIT again ok", "all checks passed"]:
        assert "virtio-fs: " + line in r.stderr, r.stderr
    if "indirect=1" in mode:
        assert "virtio-fs: READ into 118 segments ok" in r.stderr
    # what the guest wrote reached the host, byte for byte
    new = share / "new.bin"
    assert new.read_bytes() == pattern(WSIZE, 13, WSEED)
    assert stat.S_IMODE(new.stat().st_mode) == 0o640
    assert (share / "made").is_dir() and stat.S_IMODE((share / "made").stat().st_mode) == 0o750
    assert not (share / "victim").exists()
    assert stat.S_ISFIFO((share / "fifo").lstat().st_mode)
    assert not os.path.lexists(share / "null")
    # what it only read did not change; nothing leaked out of the share
    assert (share / "hello.bin").read_bytes() == pattern(SIZE, 7, SEED)
    assert sorted(os.listdir(share / "list")) == ["alpha", "beta", "gamma"]
    assert snapshot(share.parent / "outside") == outside_before
    assert sorted(os.listdir(share.parent)) == ["outside", "share"]
    assert sorted(os.listdir(share)) == ["fifo", "hello.bin", "list", "made", "new.bin", "out"]


def test_read_only_share_refuses_changes(share):
    before = snapshot(share)
    r = run(guest_args("ro=1"), "--fs", f"tag=share,dir={share},ro")
    assert r.returncode == 0, r.stderr
    assert "virtio-fs: read-only share refuses changes" in r.stderr
    assert "virtio-fs: all checks passed" in r.stderr
    assert snapshot(share) == before


def test_dax_window(share):
    """A 4 MiB DAX window at 4 GiB: the guest reads hello.bin straight from
    the host's page cache through it, writes dax.bin through it, and the
    host sees those bytes; mappings outside the window, unaligned ones, a
    writable mapping of a read-only handle, a wrong handle are refused."""
    r = run(guest_args("dax=4 dwseed=9"), "--fs", f"tag=share,dir={share},dax=4")
    assert r.returncode == 0, r.stderr
    assert "virtio-fs: DAX window read, written, refusals ok" in r.stderr, r.stderr
    assert "virtio-fs: all checks passed" in r.stderr
    assert (share / "dax.bin").read_bytes() == pattern(8192, 3, 9)
    assert (share / "hello.bin").read_bytes() == pattern(SIZE, 7, SEED)


def test_dax_window_on_a_read_only_share(share):
    before = snapshot(share)
    r = run(guest_args("ro=1 dax=2"), "--fs", f"tag=share,dir={share},ro,dax=2")
    assert r.returncode == 0, r.stderr
    assert "virtio-fs: DAX window read, refusals ok" in r.stderr, r.stderr
    assert "virtio-fs: all checks passed" in r.stderr
    assert snapshot(share) == before


def test_dax_window_touched_where_nothing_is_mapped(share):
    """A guest reading a part of the window with nothing mapped (PROT_NONE
    behind it) stops its VM with a clear error, as under QEMU."""
    r = run(guest_args("dax=2 touch_unmapped=1"), "--fs", f"tag=share,dir={share},dax=2")
    assert r.returncode == 70, r.stderr
    assert "virtio-fs: reading the window where nothing is mapped" in r.stderr
    assert "the VMM let it through" not in r.stderr
    assert "KVM_RUN: Bad address (the guest touched guest-physical memory" in r.stderr


def test_dax_window_expected_but_absent(share):
    r = run(guest_args("dax=4"), "--fs", f"tag=share,dir={share}")
    assert r.returncode == 66, r.stderr
    assert "INIT with a DAX window" in r.stderr, r.stderr


def test_uid_map_and_max_pages(share):
    # host root shows as 1000 in the guest; READ/WRITE limited to 16 pages
    r = run(guest_args("ro=1 uid=1000 pages=16"),
            "--fs", f"tag=share,dir={share},ro,uidmap=0:1000:1,gidmap=0:1000:1,max_pages=16")
    assert r.returncode == 0, r.stderr
    assert "virtio-fs: INIT 7.38 max_pages 16" in r.stderr, r.stderr
    assert "virtio-fs: all checks passed" in r.stderr


def test_several_request_queues_next_to_another_device(share):
    tag = "t" * 36  # the longest tag: no NUL in config space
    r = run(f"tag={tag} size={SIZE} seed={SEED} queues=3 indirect=1", "--rng",
            "--fs", f"tag={tag},dir={share},queues=3")
    assert r.returncode == 0, r.stderr
    assert "virtio_mmio.device=4K@0xd0001000:6" in r.stderr
    assert "virtio-fs: 3 request queues ok" in r.stderr
    assert "virtio-fs: all checks passed" in r.stderr


def test_wrong_expectation_fails(share):
    r = run(f"tag=share size={SIZE} seed={SEED + 1}", "--fs", f"tag=share,dir={share}")
    assert r.returncode == 66, r.stderr
    assert "READ: byte 0 is 5, expected 6" in r.stderr


@pytest.mark.parametrize("spec,expect", [
    ("dir=/tmp", "--fs needs tag=TAG and dir=PATH"),
    ("tag=x", "--fs needs tag=TAG and dir=PATH"),
    ("tag=x,dir=/nonexistent/share", "`/nonexistent/share`: No such file or directory"),
    ("tag=x,dir=/etc/hostname", "`/etc/hostname`: Not a directory"),
    ("tag=" + "x" * 37 + ",dir=/tmp", "a tag of 1..36 bytes"),
    ("tag=x,dir=/tmp,bogus", "--fs option `bogus` is unknown"),
    ("tag=x,dir=/tmp,threads=4", "--fs option `threads=4` is unknown"),
    ("tag=x,dir=/tmp,locks=host", "--fs option `locks=host` is unknown"),
    ("tag=x,dir=/tmp,queues=0", "queues=`0`"),
    ("tag=x,dir=/tmp,queues=5", "queues=`5`: want 1..4"),
    ("tag=x,dir=/tmp,uidmap=junk", "uidmap=`junk`"),
    ("tag=x,dir=/tmp,max_pages=0", "max_pages=`0`"),
    ("tag=x,dir=/tmp,dax=3", "dax=`3`: want the window's size in MiB, even"),
    ("tag=x,dir=/tmp,dax=0", "dax=`0`"),
    ("tag=x,dir=/tmp,dax=65538", "dax=`65538`"),
])
def test_bad_fs_options(spec, expect):
    r = run("tag=x", "--fs", spec)
    assert r.returncode == 1, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and expect in lines[0], r.stderr

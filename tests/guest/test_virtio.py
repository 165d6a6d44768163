"""virtio-mmio devices driven at CPL3 by tests/guest/virtio_guest.c through
the real `cocoon vm run`: the guest finds them on its command line,
negotiates, sets up queues and moves data; the host side is checked here."""
import os
import socket
import subprocess
import time

import pytest

from test_guests import BUILD, COCOON, TIMEOUT, pytestmark  # noqa: F401

GUEST = os.path.join(BUILD, "tests", "guest", "virtio_guest.elf")


def run(cmdline, *devices, timeout=TIMEOUT):
    return subprocess.run([COCOON, "vm", "run", "--kernel", GUEST, "--memory", "64",
                           "--cmdline", cmdline, *devices], stdin=subprocess.DEVNULL,
                          capture_output=True, errors="replace", timeout=timeout)


def disk(tmp_path, seed, sectors=2048):
    data = bytearray((i * 131 + seed) & 255 for i in range(4096))
    data += os.urandom(sectors * 512 - len(data))
    p = tmp_path / "disk.img"
    p.write_bytes(data)
    return p, data


def test_devices_are_announced_on_the_command_line():
    r = run("devices=3", "--rng", "--rng", "--rng")
    assert r.returncode == 0, r.stderr
    for i, base in enumerate(["d0000000", "d0001000", "d0002000"]):
        assert f"device {i}: id 4 at {base} irq {5 + i}" in r.stderr
    assert "virtio_mmio.device=4K@0xd0002000:7" in r.stderr


@pytest.mark.parametrize("mode", ["", "indirect=1", "event_idx=1", "indirect=1 event_idx=1"])
def test_rng(mode):
    r = run(f"devices=1 {mode}", "--rng")
    assert r.returncode == 0, r.stderr
    assert "virtio-rng: 2 x 64 random bytes" in r.stderr


@pytest.mark.parametrize("mode", ["", "indirect=1 event_idx=1"])
def test_blk_read_after_write_against_the_host_file(tmp_path, mode):
    p, data = disk(tmp_path, seed=9)
    r = run(f"blk_seed=9 blk_sectors=2048 blk_serial=cocoon-disk-1 {mode}",
            "--disk", f"{p},serial=cocoon-disk-1")
    assert r.returncode == 0, r.stderr
    assert "virtio-blk: 2048 sectors, read/write/flush/id/discard ok" in r.stderr
    after = p.read_bytes()
    want = bytes(((4096 + i) * 7 + 9 + 3) & 255 for i in range(4096))
    assert after[4096:8192] == want, "the guest's write did not reach the file"
    assert after[8192:12288] == bytes(4096), "discarded sectors do not read as zeros"
    assert after[12288:] == data[12288:], "bytes the guest did not write changed"


def test_blk_read_only(tmp_path):
    p, data = disk(tmp_path, seed=1)
    r = run("blk_seed=1 blk_ro=1", "--disk", f"{p},ro")
    assert r.returncode == 0, r.stderr
    assert "(read-only)" in r.stderr
    assert p.read_bytes() == bytes(data)


def test_blk_direct_io(tmp_path):
    p, _ = disk(tmp_path, seed=4)
    r = run("blk_seed=4", "--disk", f"{p},direct")
    if r.returncode == 1 and "Invalid argument" in r.stderr:
        pytest.skip("this filesystem does not support O_DIRECT")
    assert r.returncode == 0, r.stderr


def test_blk_wrong_expectation_fails(tmp_path):
    """The guest's byte-for-byte check is real: a wrong seed must fail."""
    p, _ = disk(tmp_path, seed=2)
    r = run("blk_seed=3", "--disk", str(p))
    assert r.returncode == 66, r.stderr
    assert "byte 0 read" in r.stderr


def test_console_echo_over_a_unix_socket(tmp_path):
    sock = str(tmp_path / "console.sock")
    p = subprocess.Popen([COCOON, "vm", "run", "--kernel", GUEST, "--memory", "64",
                          "--cmdline", "console_echo=11", "--virtio-console", f"socket:{sock}"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 20
        while not os.path.exists(sock) and time.time() < deadline:
            time.sleep(0.01)
        c = socket.socket(socket.AF_UNIX)
        c.connect(sock)
        c.settimeout(20)
        got = b""
        while b"\n" not in got:
            chunk = c.recv(100)
            assert chunk, (got, p.poll())
            got += chunk
        assert got == b"hello from virtio-console\n"
        c.sendall(b"ping-pong!\n")
        want = b"echo:ping-pong!\n"
        got = b""
        while len(got) < len(want):
            chunk = c.recv(100)
            assert chunk, got
            got += chunk
        assert got == want
        out, err = p.communicate(timeout=TIMEOUT)
    finally:
        p.kill()
    assert p.returncode == 0, err
    assert not os.path.exists(sock), "the console socket was left behind"


def test_console_to_a_file(tmp_path):
    out = tmp_path / "vcon.txt"
    r = run("", "--virtio-console", f"file:{out}")
    assert r.returncode == 0, r.stderr
    assert out.read_text() == "hello from virtio-console\n"


@pytest.mark.parametrize("bad", ["loop", "range", "wrap", "dir", "head", "next", "indirect"])
def test_malformed_queue_needs_reset_and_recovers(bad):
    r = run(f"bad={bad} indirect=1", "--rng")
    assert r.returncode == 0, r.stderr
    assert f"bad queue ({bad}): device needs reset" in r.stderr
    assert "virtio-rng: 2 x 64 random bytes" in r.stderr  # after the reset


def test_interrupts_reach_the_guest(tmp_path):
    p, _ = disk(tmp_path, seed=0)
    r = run("irq=1 event_idx=1 blk_seed=0", "--rng", "--disk", str(p))
    assert r.returncode == 0, r.stderr
    assert "device 0: interrupt delivered" in r.stderr
    assert "device 1: interrupt delivered" in r.stderr


@pytest.mark.parametrize("args,expect", [
    (["--disk", "/nonexistent.img"], "/nonexistent.img"),
    (["--disk", "/tmp"], "Is a directory"),
    (["--disk", "/dev/null"], "not a regular file"),
    (["--disk", "x.img,bogus"], "bogus"),
    (["--disk", "/etc/hostname,serial=" + "x" * 21], "serial"),
    (["--virtio-console", "tty"], "--virtio-console"),
    (["--rng"] * 12, "at most 11 devices"),
])
def test_bad_device_options(args, expect):
    r = run("", *args)
    assert r.returncode == 1, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and expect in lines[0], r.stderr


def pmem_file(tmp_path, seed, size):
    p = tmp_path / "pmem.img"
    data = bytes((i * 13 + seed) & 255 for i in range(size))
    p.write_bytes(data)
    return p, data


@pytest.mark.parametrize("size", [4096, 3 * 1024 * 1024 + 100])
def test_pmem_private_maps_the_file_and_never_writes_it(tmp_path, size):
    p, data = pmem_file(tmp_path, 7, size)
    r = run(f"pmem_seed=7 pmem_bytes={size}", "--pmem", str(p))
    assert r.returncode == 0, r.stderr
    assert "virtio-pmem: " in r.stderr and "contents ok, flushed" in r.stderr
    assert p.read_bytes() == data, "a MAP_PRIVATE pmem file changed"


def test_pmem_shared_writes_reach_the_file(tmp_path):
    p, data = pmem_file(tmp_path, 3, 1 << 20)
    r = run(f"pmem_seed=3 pmem_bytes={1 << 20}", "--pmem", f"{p},shared")
    assert r.returncode == 0, r.stderr
    after = p.read_bytes()
    assert after[:4096] == b"\xa5" * 4096
    assert after[4096:] == data[4096:]


def test_two_pmem_regions_next_to_other_devices(tmp_path):
    p1, d1 = pmem_file(tmp_path, 1, 1 << 20)
    p2 = tmp_path / "second.img"
    p2.write_bytes(d1)
    r = run(f"pmem_seed=1 pmem_bytes={1 << 20} devices=3", "--pmem", str(p1), "--rng",
            "--pmem", str(p2))
    assert r.returncode == 0, r.stderr
    assert "virtio-pmem: 2097152 bytes at 100000000" in r.stderr
    assert "virtio-pmem: 2097152 bytes at 100200000" in r.stderr


@pytest.mark.parametrize("args,expect", [
    (["--pmem", "/nonexistent.img"], "/nonexistent.img"),
    (["--pmem", "/dev/null"], "not a non-empty regular file"),
    (["--pmem", "/etc/hostname,rw"], "`rw` is unknown"),
])
def test_bad_pmem_options(args, expect):
    r = run("", *args)
    assert r.returncode == 1, r.stderr
    assert expect in r.stderr


@pytest.fixture
def netns():
    name = f"cocoon-test-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def ip(ns, *args):
    return subprocess.run(["ip", "-n", ns, *args], check=True, capture_output=True,
                          text=True).stdout


def test_net_frames_through_a_tap_in_a_network_namespace(netns):
    ip(netns, "tuntap", "add", "mode", "tap", "name", "cctap0")
    ip(netns, "addr", "add", "10.9.0.1/24", "dev", "cctap0")
    ip(netns, "link", "set", "cctap0", "up")
    ip(netns, "neigh", "add", "10.9.0.2", "lladdr", "52:54:00:ab:cd:ef", "dev", "cctap0")
    import json
    peer = json.loads(ip(netns, "-j", "link", "show", "cctap0"))[0]["address"].replace(":", "")
    r = run(f"net_peer={peer}", "--net",
            f"tap=cctap0,mac=52:54:00:ab:cd:ef,netns=/run/netns/{netns}")
    assert r.returncode == 0, r.stderr
    assert "virtio-net: echo reply from 10.9.0.1" in r.stderr
    # the kernel side saw the guest's frames
    stats = json.loads(ip(netns, "-j", "-s", "link", "show", "cctap0"))[0]["stats64"]
    assert stats["rx"]["packets"] >= 1 and stats["tx"]["packets"] >= 1


def test_net_tap_created_by_cocoon_is_gone_after_the_vm(netns):
    r = run("", "--net", f"tap=cctap9,netns=/run/netns/{netns}")
    assert r.returncode == 66, r.stderr  # no net_peer: the guest's check fails
    assert "cctap9" not in ip(netns, "link", "show")


@pytest.mark.parametrize("spec,expect", [
    ("mac=52:54:00:00:00:01", "tap=NAME"),
    ("tap=x,mac=01:00:00:00:00:01", "unicast"),
    ("tap=x,mac=zz", "mac `zz`"),
    ("tap=" + "x" * 16, "tap name"),
    ("tap=x,netns=/nonexistent", "/nonexistent"),
    ("tap=x,speed=1", "`speed=1` is unknown"),
])
def test_bad_net_options(spec, expect):
    r = run("", "--net", spec)
    assert r.returncode == 1, r.stderr
    assert expect in r.stderr, r.stderr

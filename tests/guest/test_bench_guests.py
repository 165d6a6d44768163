"""The guests bench/virtio.py measures with, checked here so that a bench
figure always comes from a guest that really did the work:
tests/guest/blk_bench_guest.c (reads a whole disk, checks every 4 KiB
stamp, boot markers around the transfer) and tests/guest/pmem_touch_guest.S
(touches every page of a pmem region, marker 1, then halts)."""
import os
import re
import signal
import struct
import subprocess
import time

import pytest

from test_guests import BUILD, COCOON, TIMEOUT, pytestmark  # noqa: F401

BLK = os.path.join(BUILD, "tests", "guest", "blk_bench_guest.elf")
PMEM = os.path.join(BUILD, "tests", "guest", "pmem_touch_guest.elf")
STAMP = 0x5A5A5A5A5A5A5A5A


def stamped(path, mib):
    data = bytearray(os.urandom(mib << 20))
    for k in range(len(data) // 4096):
        struct.pack_into("<Q", data, k * 4096, k ^ STAMP)
    path.write_bytes(data)
    return data


def blk_run(disk, cmdline):
    return subprocess.run([COCOON, "--debug", "vm", "run", "--kernel", BLK, "--memory", "64",
                           "--console", "none", "--disk", f"{disk},ro", "--cmdline", cmdline],
                          stdin=subprocess.DEVNULL, capture_output=True, errors="replace",
                          timeout=TIMEOUT)


@pytest.mark.parametrize("cmdline", ["", "req=4096 depth=1", "req=1048576 depth=16"])
def test_blk_bench_guest_reads_and_checks_the_whole_disk(tmp_path, cmdline):
    disk = tmp_path / "disk.img"
    stamped(disk, 4)
    r = blk_run(disk, cmdline)
    assert r.returncode == 0, r.stderr
    marks = [int(m) for m in re.findall(r"boot marker (\d+) at", r.stderr)]
    assert marks == [1, 2], r.stderr
    assert "blk bench: 4194304 bytes in" in r.stderr and "checked" in r.stderr


def test_blk_bench_guest_sees_a_wrong_stamp(tmp_path):
    disk = tmp_path / "disk.img"
    data = stamped(disk, 4)
    struct.pack_into("<Q", data, 3 << 20, 1)
    disk.write_bytes(data)
    r = blk_run(disk, "")
    assert r.returncode == 66, r.stderr
    assert f"block at {3 << 20}: stamp 1" in r.stderr


def pmem_mapping(pid, image):
    """Rss and Anonymous (KiB) of the process's mapping of image."""
    out, inside = {}, False
    for line in open(f"/proc/{pid}/smaps"):
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            inside = line.rstrip().endswith(image)
        elif inside and line.split(":")[0] in ("Rss", "Anonymous"):
            out[line.split(":")[0]] = out.get(line.split(":")[0], 0) + int(line.split()[1])
    return out


@pytest.mark.parametrize("mode,rss,anon", [("read", 4096, 0), ("write", 4096, 4096),
                                           ("none", 0, 0)])
def test_pmem_touch_guest(tmp_path, mode, rss, anon):
    image = tmp_path / "pmem.img"
    data = os.urandom(4 << 20)
    image.write_bytes(data)
    err = tmp_path / "err"
    with open(err, "w") as f:
        p = subprocess.Popen([COCOON, "--debug", "vm", "run", "--kernel", PMEM, "--memory", "16",
                              "--no-pit", "--console", "none", "--pmem", str(image),
                              "--cmdline", mode], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=f)
    try:
        deadline = time.time() + TIMEOUT
        while "boot marker" not in err.read_text():
            assert p.poll() is None and time.time() < deadline, err.read_text()
            time.sleep(0.05)
        assert "boot marker 1 " in err.read_text(), err.read_text()
        m = pmem_mapping(p.pid, str(image))
        assert m.get("Rss") == rss and m.get("Anonymous") == anon, m
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=30)
    assert image.read_bytes() == data, "a MAP_PRIVATE image changed"


def test_pmem_touch_guest_refuses_another_device(tmp_path):
    err = tmp_path / "err"
    with open(err, "w") as f:
        p = subprocess.Popen([COCOON, "--debug", "vm", "run", "--kernel", PMEM, "--memory", "16",
                              "--no-pit", "--console", "none", "--rng"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=f)
    try:
        deadline = time.time() + TIMEOUT
        while "boot marker" not in err.read_text():
            assert p.poll() is None and time.time() < deadline, err.read_text()
            time.sleep(0.05)
        assert "boot marker 238 " in err.read_text()
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=30)

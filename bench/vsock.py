#!/usr/bin/python3
"""virtio-vsock throughput through cocoon's userspace device. Run alone it
prints its figures and writes nothing; `make bench` takes the same two
measurements (echo_run, guest_to_host_run) through bench/virtio.py, which
writes them into docs/SPEC.md's virtio section.

    /usr/bin/python3 bench/vsock.py --cocoon build/src/cocoon [--mib 64] [--runs 3]

The guest is tests/guest/vsock_guest.elf, a CPL3 test driver, so the
figures are the device's and this driver's together (8 KiB receive
buffers, four in flight per queue, polling):

* echo: a host client connects to the device's socket (CONNECT 1234), the
  guest echoes everything back; MiB/s of payload one way, from the first
  byte sent to the last byte back (every byte crosses the device twice).
* guest -> host: the guest connects to PATH_5000 and sends a pattern that
  a host listener echoes back and the guest checks byte for byte; MiB/s of
  payload one way, from the host's accept to its EOF.
"""
import argparse
import os
import pathlib
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
TIMEOUT = 120


def start_vm(cocoon, guest, sockdir, cmdline):
    uds = os.path.join(sockdir, "v.sock")
    p = subprocess.Popen([cocoon, "vm", "run", "--kernel", guest, "--memory", "64",
                          "--console", "none", "--cmdline", f"cid=3 {cmdline}",
                          "--vsock", f"cid=3,uds={uds}"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, errors="replace")
    deadline = time.time() + 20
    while not os.path.exists(uds):
        if p.poll() is not None or time.time() > deadline:
            raise SystemExit(f"the VM did not start: {p.communicate()[1]}")
        time.sleep(0.005)
    return p, uds


def finish(p):
    _, err = p.communicate(timeout=TIMEOUT)
    if p.returncode != 0:
        raise SystemExit(f"the guest failed ({p.returncode}):\n{err}")


def echo_run(cocoon, guest, nbytes, win):
    sockdir = tempfile.mkdtemp(prefix="cvb", dir="/tmp")
    try:
        p, uds = start_vm(cocoon, guest, sockdir, f"mode=server port=1234 conns=1 win={win}")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(TIMEOUT)
        s.connect(uds)
        s.sendall(b"CONNECT 1234\n")
        line = b""
        while not line.endswith(b"\n"):
            c = s.recv(1)
            if not c:
                raise SystemExit("the guest refused the connection")
            line += c
        data = os.urandom(1 << 20)
        t0 = time.perf_counter()

        def send():
            for _ in range(nbytes >> 20):
                s.sendall(data)

        t = threading.Thread(target=send, daemon=True)
        t.start()
        got = 0
        while got < nbytes:
            c = s.recv(1 << 20)
            if not c:
                raise SystemExit(f"EOF after {got} bytes")
            got += len(c)
        dt = time.perf_counter() - t0
        t.join()
        s.shutdown(socket.SHUT_WR)
        while s.recv(1 << 16):
            pass
        s.close()
        finish(p)
        return nbytes / dt / (1 << 20)
    finally:
        shutil.rmtree(sockdir, ignore_errors=True)


def guest_to_host_run(cocoon, guest, nbytes, win):
    sockdir = tempfile.mkdtemp(prefix="cvb", dir="/tmp")
    try:
        ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        ls.bind(os.path.join(sockdir, "v.sock_5000"))
        ls.listen(1)
        ls.settimeout(TIMEOUT)
        p, _ = start_vm(cocoon, guest, sockdir,
                        f"mode=client port=5000 bytes={nbytes} win={win}")
        c, _ = ls.accept()
        t0 = time.perf_counter()
        c.settimeout(TIMEOUT)
        while True:
            d = c.recv(1 << 20)
            if not d:
                break
            c.sendall(d)
        dt = time.perf_counter() - t0
        c.close()
        ls.close()
        finish(p)
        return nbytes / dt / (1 << 20)
    finally:
        shutil.rmtree(sockdir, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cocoon", default=str(ROOT / "build" / "src" / "cocoon"))
    ap.add_argument("--mib", type=int, default=64)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--win", type=int, default=262144, help="the guest's buf_alloc (max 1 MiB)")
    a = ap.parse_args()
    cocoon = os.path.abspath(a.cocoon)
    guest = os.path.join(os.path.dirname(os.path.dirname(cocoon)), "tests", "guest",
                         "vsock_guest.elf")
    n = a.mib << 20
    print(f"virtio-vsock, {a.mib} MiB per run, guest window {a.win} bytes, {a.runs} runs "
          f"(median, min..max MiB/s)")
    for name, fn in [("echo host -> guest -> host", echo_run),
                     ("guest -> host (echoed back, checked)", guest_to_host_run)]:
        r = [fn(cocoon, guest, n, a.win) for _ in range(a.runs)]
        print(f"  {name:40s} {statistics.median(r):8.1f}   {min(r):.1f}..{max(r):.1f}")


if __name__ == "__main__":
    main()

"""Helpers shared by tests/kernel and bench/kernel.py: the fragment, the built
kernel, an initramfs around busybox, an erofs image, and one boot of the
kernel under qemu's software emulation (TCG) with cocoon's device set —
virtio-mmio devices announced on the command line, a virtio-console port on
a Unix socket, a virtio-blk disk. docs/kernel.md shows the command line."""
import os
import pathlib
import selectors
import shutil
import socket
import struct
import subprocess
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
FRAGMENT = ROOT / "kernel" / "cocoon.config"
KERNEL_DIR = ROOT / "build" / "kernel"
BUILD_SCRIPT = ROOT / "scripts" / "build-kernel.sh"
BUSYBOX = "/bin/busybox"
QEMU = shutil.which("qemu-system-x86_64")

# qemu 7.2's microvm as a stand-in for cocoon's VMM: no firmware tables but an
# MP table (qboot), no option ROMs, the 16550 at 0x3f8, no ACPI (so qemu puts
# the virtio-mmio devices on the command line). The CMOS clock stays on:
# without kvm-clock (TCG has none) Linux reads the wall clock from it at boot
# and, with no RTC answering, polls for 1 s before giving up.
MACHINE = "microvm,x-option-roms=off,isa-serial=on,rtc=on,acpi=off"
CMDLINE = "console=ttyS0 reboot=t panic=-1"

INIT_MARK = "COCOON-INIT"
DONE_MARK = "COCOON-DONE"
HVC_TEXT = "hello from the guest over hvc0"
EROFS_TEXT = "read from erofs on virtio-blk"


def parse_fragment(path=FRAGMENT):
    """[(option, value, why)] of kernel/cocoon.config; value "n" for
    "# CONFIG_X is not set". Raises ValueError on a line it cannot read."""
    out, why, collecting = [], None, False
    for n, line in enumerate(pathlib.Path(path).read_text().splitlines(), 1):
        s = line.rstrip()
        if s.startswith("# why:"):
            why, collecting = s[len("# why:"):].strip(), True
            continue
        if collecting and s.startswith("#   "):
            why += " " + s[1:].strip()
            continue
        collecting = False
        if s.startswith("# CONFIG_") and s.endswith(" is not set"):
            out.append((s.split()[1], "n", why))
        elif s.startswith("CONFIG_") and "=" in s:
            opt, val = s.split("=", 1)
            out.append((opt, val, why))
        elif s and not s.startswith("#"):
            raise ValueError(f"{path}:{n}: cannot read {line!r}")
    return out


def read_config(path):
    """{option: value} of a .config; options set to n are absent."""
    vals = {}
    for line in pathlib.Path(path).read_text().splitlines():
        if line.startswith("CONFIG_") and "=" in line:
            k, v = line.split("=", 1)
            vals[k] = v
    return vals


def cpio_newc(entries):
    """An uncompressed newc cpio archive of [(name, mode, data)] (data None for
    a directory)."""
    out = bytearray()
    ino = 1

    def put(name, mode, data):
        nonlocal ino
        nb = name.encode() + b"\0"
        hdr = "070701" + "".join(f"{x:08x}" for x in (
            ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(nb), 0))
        out.extend(hdr.encode() + nb)
        out.extend(b"\0" * (-len(out) % 4))
        out.extend(data)
        out.extend(b"\0" * (-len(out) % 4))
        ino += 1

    for name, mode, data in entries:
        put(name, mode, data if data is not None else b"")
    put("TRAILER!!!", 0, b"")
    return bytes(out)


INIT_SCRIPT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
echo "@INIT@ uptime=$(cut -d' ' -f1 /proc/uptime)"
check() { name=$1; shift; if "$@" >/dev/null 2>&1; then echo "CHECK $name ok"; else echo "CHECK $name FAIL"; fi; }
check hvc0 test -c /dev/hvc0
check vda test -b /dev/vda
check erofs-mount mount -t erofs -o ro /dev/vda /mnt
echo "EROFS $(cat /mnt/hello.txt)"
echo "@HVC@" > /dev/hvc0
check tmpfs mount -t tmpfs tmp /tmp
mkdir -p /tmp/upper /tmp/work /tmp/merged
check overlay mount -t overlay ovl -o lowerdir=/mnt,upperdir=/tmp/upper,workdir=/tmp/work /tmp/merged
check overlay-write sh -c 'echo new > /tmp/merged/new.txt && rm /tmp/merged/hello.txt && test ! -e /tmp/merged/hello.txt'
mkdir -p /dev/pts /dev/mqueue /sys/fs/cgroup
check devpts mount -t devpts devpts /dev/pts
check ptmx test -c /dev/ptmx
check mqueue mount -t mqueue mqueue /dev/mqueue
check cgroup2 mount -t cgroup2 cgroup2 /sys/fs/cgroup
for c in cpu cpuset memory pids; do check cgroup-$c grep -qw $c /sys/fs/cgroup/cgroup.controllers; done
check namespaces unshare -m -u -i -n -p -U -f true
check seccomp grep -q '^Seccomp:' /proc/self/status
check vsock test -c /dev/vsock
check sysctl test -f /proc/sys/kernel/hostname
echo "CMDLINE $(cat /proc/cmdline)"
echo "@DONE@"
reboot -f
"""


def make_initramfs(path):
    """A gzip-free newc initramfs: /init (the script above) and busybox."""
    init = (INIT_SCRIPT.replace("@INIT@", INIT_MARK).replace("@HVC@", HVC_TEXT)
            .replace("@DONE@", DONE_MARK)).encode()
    entries = [(d, 0o40755, None) for d in ("bin", "dev", "proc", "sys", "mnt", "tmp")]
    entries += [("init", 0o100755, init),
                ("bin/busybox", 0o100755, pathlib.Path(BUSYBOX).read_bytes())]
    pathlib.Path(path).write_bytes(cpio_newc(entries))


def make_erofs(path, workdir):
    src = pathlib.Path(workdir) / "erofs-src"
    src.mkdir(exist_ok=True)
    (src / "hello.txt").write_text(EROFS_TEXT + "\n")
    r = subprocess.run(["mkfs.erofs", str(path), str(src)], capture_output=True, text=True,
                       timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"mkfs.erofs failed: {r.stderr}")


def qemu_argv(kernel, initrd, disk, hvc_socket, cmdline=CMDLINE, memory=128):
    """The qemu microvm command line (TCG) of a boot; docs/kernel.md has it."""
    return [QEMU, "-accel", "tcg", "-M", MACHINE, "-m", str(memory), "-smp", "1",
            "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-serial", "stdio",
            "-kernel", str(kernel), "-initrd", str(initrd), "-append", cmdline,
            "-device", "virtio-serial-device",
            "-chardev", f"socket,id=hvc,path={hvc_socket}",
            "-device", "virtconsole,chardev=hvc",
            "-drive", f"if=none,id=disk,format=raw,readonly=on,file={disk}",
            "-device", "virtio-blk-device,drive=disk"]


class Boot:
    """The outcome of one boot: serial log, what came over hvc0, timings (s)."""

    def __init__(self):
        self.serial = ""
        self.hvc = ""
        self.returncode = None
        self.to_init = None      # host wall time from qemu's start to the init marker
        self.guest_uptime = None  # the guest's /proc/uptime when /init started
        self.total = None        # host wall time from qemu's start to its exit
        self.timed_out = False
        self.argv = []

    def checks(self):
        """{name: ok?} of the init script's CHECK lines."""
        out = {}
        for line in self.serial.splitlines():
            p = line.strip().split()
            if len(p) == 3 and p[0] == "CHECK":
                out[p[1]] = p[2] == "ok"
        return out


def boot(kernel, workdir, cmdline=CMDLINE, timeout=120):
    """Boot `kernel` under qemu TCG with the test initramfs, an erofs disk and
    a virtio-console port on a Unix socket (qemu connects to it); return a
    Boot. Never waits longer than `timeout` seconds."""
    workdir = pathlib.Path(workdir)
    initrd, disk = workdir / "initrd.cpio", workdir / "disk.erofs"
    if not initrd.exists():
        make_initramfs(initrd)
    if not disk.exists():
        make_erofs(disk, workdir)
    sock_dir = tempfile.mkdtemp(prefix="cocoon-hvc-")   # short: sun_path is 108 bytes
    sock_path = os.path.join(sock_dir, "hvc.sock")
    lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lsock.bind(sock_path)
    lsock.listen(1)
    b = Boot()
    b.argv = qemu_argv(kernel, initrd, disk, sock_path, cmdline)
    sel = selectors.DefaultSelector()
    conn = None
    serial = bytearray()
    hvc = bytearray()
    t0 = time.monotonic()
    proc = subprocess.Popen(b.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        sel.register(proc.stdout, selectors.EVENT_READ, "serial")
        sel.register(lsock, selectors.EVENT_READ, "listen")
        deadline = t0 + timeout
        open_streams = 1
        while open_streams and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=max(0.0, deadline - time.monotonic())):
                if key.data == "listen":
                    conn, _ = lsock.accept()
                    sel.unregister(lsock)
                    sel.register(conn, selectors.EVENT_READ, "hvc")
                    continue
                if key.data == "hvc":
                    chunk = conn.recv(65536)
                    if chunk:
                        hvc += chunk
                    else:
                        sel.unregister(conn)
                    continue
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    sel.unregister(proc.stdout)
                    open_streams = 0
                    continue
                serial += chunk
                if b.to_init is None and INIT_MARK.encode() in serial:
                    b.to_init = time.monotonic() - t0
        try:
            b.returncode = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            b.total = time.monotonic() - t0
        except subprocess.TimeoutExpired:
            b.timed_out = True
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            b.timed_out = True
        if conn is not None:
            try:
                while True:   # what is still buffered
                    conn.setblocking(False)
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    hvc += chunk
            except OSError:
                pass
            conn.close()
        lsock.close()
        shutil.rmtree(sock_dir, ignore_errors=True)
        sel.close()
    b.serial = serial.decode(errors="replace").replace("\r\n", "\n")
    b.hvc = hvc.decode(errors="replace")
    for line in b.serial.splitlines():
        if line.startswith(INIT_MARK + " uptime="):
            b.guest_uptime = float(line.split("=", 1)[1])
    return b


def elf_notes(path):
    """[(name, type, desc bytes)] of an ELF64 file's PT_NOTE segments."""
    data = pathlib.Path(path).read_bytes()
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    notes = []
    for i in range(phnum):
        typ, _, off, _, _, filesz, _, _ = struct.unpack_from("<IIQQQQQQ", data,
                                                             phoff + i * phentsize)
        if typ != 4:
            continue
        pos, end = off, off + filesz
        while pos + 12 <= end:
            namesz, descsz, ntype = struct.unpack_from("<III", data, pos)
            name = data[pos + 12:pos + 12 + namesz].rstrip(b"\0").decode(errors="replace")
            dpos = pos + 12 + (-(-namesz // 4) * 4)
            notes.append((name, ntype, data[dpos:dpos + descsz]))
            pos = dpos + (-(-descsz // 4) * 4)
    return notes


def load_segments(path):
    """[(offset, paddr, filesz, memsz)] of an ELF64 file's PT_LOAD segments."""
    data = pathlib.Path(path).read_bytes()
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    segs = []
    for i in range(phnum):
        typ, _, off, _, paddr, filesz, memsz, _ = struct.unpack_from("<IIQQQQQQ", data,
                                                                     phoff + i * phentsize)
        if typ == 1:
            segs.append((off, paddr, filesz, memsz))
    return segs

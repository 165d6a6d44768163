"""The built guest kernel's files: vmlinux is an x86-64 ELF entered through
its PVH note, laid out so that a VMM can map it from the page cache, under
8 MiB; bzImage has a valid Linux boot-protocol header. Also the packer that
makes vmlinux (scripts/pack-vmlinux.py) on a made-up ELF."""
import struct
import subprocess
import sys

import pytest

from kernelboot import KERNEL_DIR, ROOT, elf_notes, load_segments

XEN_ELFNOTE_PHYS32_ENTRY = 18
PAGE = 4096


def kernel_file(name):
    path = KERNEL_DIR / name
    if not path.exists():
        pytest.fail(f"no {path}: the guest kernel was not built (run `make kernel`)")
    return path


def test_vmlinux_is_an_x86_64_elf_with_a_pvh_entry():
    path = kernel_file("vmlinux")
    data = path.read_bytes()
    assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1, "not an ELF64 LE file"
    e_type, e_machine = struct.unpack_from("<HH", data, 16)
    assert (e_type, e_machine) == (2, 62), "not an x86-64 executable"
    pvh = [d for name, t, d in elf_notes(path) if name == "Xen" and t == XEN_ELFNOTE_PHYS32_ENTRY]
    assert len(pvh) == 1, f"no XEN_ELFNOTE_PHYS32_ENTRY note: {elf_notes(path)}"
    entry = int.from_bytes(pvh[0][:4], "little")
    segs = load_segments(path)
    assert any(p <= entry < p + f for _, p, f, _ in segs), \
        f"PVH entry {entry:#x} is not in the file's loaded bytes"


def test_vmlinux_segments_can_be_mapped_from_the_page_cache():
    segs = load_segments(kernel_file("vmlinux"))
    assert 0 < len(segs) <= 64, "cocoon's loader takes at most 64 program headers"
    for off, paddr, filesz, memsz in segs:
        assert off % PAGE == 0 and paddr % PAGE == 0, (hex(off), hex(paddr))
        assert filesz <= memsz
        assert paddr >= 1 << 20, "segments load above 1 MiB"


def test_vmlinux_is_under_8_mib():
    size = kernel_file("vmlinux").stat().st_size
    assert size < 8 << 20, f"vmlinux is {size / (1 << 20):.2f} MiB (target: under 8 MiB)"


def test_bzimage_has_a_boot_protocol_header():
    data = kernel_file("bzImage").read_bytes()
    assert data[0x1fe:0x200] == b"\x55\xaa", "no boot sector signature"
    assert data[0x202:0x206] == b"HdrS", "no setup header magic"
    version, = struct.unpack_from("<H", data, 0x206)
    assert version >= 0x020c, f"boot protocol {version:#x} < 2.12 (64-bit entry)"
    setup_sects = data[0x1f1] or 4
    syssize, = struct.unpack_from("<I", data, 0x1f4)
    loadflags = data[0x211]
    xloadflags, = struct.unpack_from("<H", data, 0x236)
    assert loadflags & 1, "not LOADED_HIGH (a bzImage loads at 1 MiB)"
    assert xloadflags & 1, "XLF_KERNEL_64 missing: no 64-bit entry point"
    assert len(data) == (setup_sects + 1) * 512 + syssize * 16, \
        (len(data), setup_sects, syssize)


def elf(segments, notes):
    """A minimal ELF64 x86-64 executable: segments [(paddr, bytes, memsz)] and
    one PT_NOTE over `notes` placed inside the first segment."""
    phnum = len(segments) + 1
    pos = PAGE
    phs, body = [], b""
    for paddr, content, memsz in segments:
        phs.append(struct.pack("<IIQQQQQQ", 1, 5, pos, paddr, paddr, len(content), memsz,
                               0x200000))
        body += content + bytes(-len(content) % PAGE)
        pos += len(content) + (-len(content) % PAGE)
    note_off = PAGE + segments[0][1].index(notes)
    phs.append(struct.pack("<IIQQQQQQ", 4, 4, note_off, segments[0][0] + note_off - PAGE,
                           segments[0][0] + note_off - PAGE, len(notes), len(notes), 4))
    eh = struct.pack("<16sHHIQQQIHHHHHH", b"\x7fELF\x02\x01\x01" + bytes(9), 2, 62, 1,
                     segments[0][0], 64, 0, 0, 64, 56, phnum, 64, 0, 0)
    head = eh + b"".join(phs)
    return head + bytes(PAGE - len(head)) + body


def image(data):
    out = {}
    for off, paddr, filesz, memsz in load_segments_of(data):
        out[paddr] = data[off:off + filesz] + bytes(memsz - filesz)
    return out


def load_segments_of(data):
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phnum, = struct.unpack_from("<H", data, 0x38)
    segs = []
    for i in range(phnum):
        t, _, off, _, paddr, filesz, memsz, _ = struct.unpack_from("<IIQQQQQQ", data,
                                                                   phoff + i * 56)
        if t == 1:
            segs.append((off, paddr, filesz, memsz))
    return segs


def flat(img):
    mem = bytearray()
    base = min(img)
    for paddr in sorted(img):
        need = paddr - base + len(img[paddr])
        mem.extend(bytes(max(0, need - len(mem))))
        mem[paddr - base:need] = img[paddr]
    return base, bytes(mem)


def test_pack_vmlinux_drops_zero_pages_and_keeps_the_image(tmp_path):
    note = struct.pack("<III", 4, 4, 18) + b"Xen\0" + struct.pack("<I", 0x1000000)
    text = b"\x90" * 100 + note + bytes(PAGE * 40) + b"\xcc" * PAGE + bytes(PAGE * 20) + b"tail"
    data = b"D" * 5000 + bytes(PAGE * 3)
    src = elf([(0x1000000, text, len(text)), (0x1200000, data, len(data) + 10000)], note)
    (tmp_path / "in").write_bytes(src)
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "pack-vmlinux.py"),
                        str(tmp_path / "in"), str(tmp_path / "out")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = (tmp_path / "out").read_bytes()
    assert len(out) < len(src) - 50 * PAGE, (len(src), len(out))
    assert flat(image(out)) == flat(image(src))
    for off, paddr, _, _ in load_segments_of(out):
        assert off % PAGE == 0 and paddr % PAGE == 0
    # the note still points at the same bytes
    notes = elf_notes(tmp_path / "out")
    assert notes == [("Xen", 18, struct.pack("<I", 0x1000000))]

#!/usr/bin/python3
"""Pack an x86-64 vmlinux for direct (PVH / ELF) loading: same memory image,
a fraction of the file.

    scripts/pack-vmlinux.py IN OUT

x86-64 aligns the kernel's text, entry text, rodata and data to 2 MiB, so a
small kernel's vmlinux is mostly zero padding inside its PT_LOAD segments
(a 6 MiB kernel makes a 16 MiB file). This rewrites the program headers so
that every run of zero pages (64 KiB or more) inside a segment becomes the
zero-filled tail (p_memsz > p_filesz) of the piece before it, and drops the
section headers and symbols (build/kernel/System.map keeps the symbols).
Every piece starts on a page in memory and in the file (p_align 4 KiB), so a
VMM can still map it MAP_PRIVATE from the page cache; the bytes after a
piece's p_filesz up to the next page are zeros in the file too.

Before writing, it rebuilds the memory image that a loader makes from the
input and from the output and checks that they are identical byte for byte,
and that the notes (the PVH entry) are unchanged. Exit status 1 and a message
on any mismatch or malformed input.
"""
import os
import struct
import sys

PAGE = 4096
PT_LOAD, PT_NOTE = 1, 4
EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
PHDR = struct.Struct("<IIQQQQQQ")


def fail(msg):
    sys.exit(f"pack-vmlinux: {msg}")


def read_elf(data):
    if len(data) < EHDR.size or data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        fail("not a little-endian ELF64 file")
    eh = list(EHDR.unpack_from(data, 0))
    phoff, phentsize, phnum = eh[5], eh[9], eh[10]
    if phentsize != PHDR.size or phoff + phnum * PHDR.size > len(data):
        fail("bad program header table")
    phs = [list(PHDR.unpack_from(data, phoff + i * PHDR.size)) for i in range(phnum)]
    for p in phs:
        _, _, off, _, _, filesz, memsz, _ = p
        if off + filesz > len(data):
            fail("a segment lies outside the file")
        if p[0] == PT_LOAD and filesz > memsz:
            fail("a PT_LOAD segment has p_filesz > p_memsz")
    return eh, phs


def image(data, phs):
    """paddr -> bytes of every PT_LOAD as a loader builds it (zeros to p_memsz)."""
    out = {}
    for typ, _, off, _, paddr, filesz, memsz, _ in phs:
        if typ == PT_LOAD and memsz:
            out[paddr] = data[off:off + filesz] + bytes(memsz - filesz)
    return out


def flatten(img):
    """The image as a sorted list of (start, bytes), adjacent pieces joined."""
    runs = []
    for start in sorted(img):
        b = img[start]
        if runs and runs[-1][0] + len(runs[-1][1]) == start:
            runs[-1] = (runs[-1][0], runs[-1][1] + b)
        elif runs and runs[-1][0] + len(runs[-1][1]) > start:
            fail("segments overlap in memory")
        else:
            runs.append((start, b))
    return runs


def split_segment(seg, min_gap):
    """[offset, length] pieces of one segment's bytes, cut at page-aligned
    runs of zero pages at least min_gap long (never before the first byte)."""
    zero = bytes(PAGE)
    pieces, start, pos, n = [], 0, 0, len(seg)
    while pos + PAGE <= n:
        if seg[pos:pos + PAGE] != zero:
            pos += PAGE
            continue
        run = pos
        while run + PAGE <= n and seg[run:run + PAGE] == zero:
            run += PAGE
        if run - pos >= min_gap and pos > start and run < n:
            pieces.append([start, pos - start])
            start = run
        pos = run
    pieces.append([start, n - start])
    return pieces


def pack(data, min_gap):
    eh, phs = read_elf(data)
    loads, others = [], []
    for p in phs:
        (loads if p[0] == PT_LOAD else others).append(p)
    new_loads = []   # (flags, vaddr, paddr, content bytes, memsz)
    for typ, flags, off, vaddr, paddr, filesz, memsz, align in loads:
        if vaddr % PAGE or paddr % PAGE:
            fail("a PT_LOAD segment does not start on a page")
        seg = data[off:off + filesz]
        pieces = split_segment(seg, min_gap) if filesz else [[0, 0]]
        for i, (start, length) in enumerate(pieces):
            end_mem = pieces[i + 1][0] if i + 1 < len(pieces) else memsz
            content = seg[start:start + length]
            new_loads.append((flags, vaddr + start, paddr + start, content, end_mem - start))
    nph = len(new_loads) + len(others)
    pos = -(-(EHDR.size + nph * PHDR.size) // PAGE) * PAGE
    body = bytearray()
    out_phs = []
    old_to_new = []  # (old file offset, length, new file offset) of each note
    for flags, vaddr, paddr, content, memsz in new_loads:
        out_phs.append([PT_LOAD, flags, pos, vaddr, paddr, len(content), memsz, PAGE])
        body += content + bytes(-len(content) % PAGE)
        pos += -(-len(content) // PAGE) * PAGE
    # notes: place them where their bytes now are (they lie inside a loaded
    # segment in a kernel); otherwise append them
    for p in others:
        typ, flags, off, vaddr, paddr, filesz, memsz, align = p
        note = data[off:off + filesz]
        where = None
        for q in out_phs:
            if q[0] == PT_LOAD and q[4] <= paddr and paddr + filesz <= q[4] + q[5]:
                where = q[2] + (paddr - q[4])
        if where is None or typ != PT_NOTE:
            where = pos
            body += note + bytes(-len(note) % PAGE)
            pos += -(-len(note) // PAGE) * PAGE
        old_to_new.append((off, filesz, where))
        out_phs.append([typ, flags, where, vaddr, paddr, filesz, memsz, align])
    first = -(-(EHDR.size + nph * PHDR.size) // PAGE) * PAGE
    eh[5], eh[6], eh[10] = EHDR.size, 0, nph          # phoff, shoff, phnum
    eh[11], eh[12], eh[13] = 0, 0, 0                  # shentsize, shnum, shstrndx
    head = bytearray(EHDR.pack(*eh))
    for q in out_phs:
        head += PHDR.pack(*q)
    head += bytes(first - len(head))
    out = bytes(head + body)
    # the checks: same memory image, same notes
    if flatten(image(data, phs)) != flatten(image(out, out_phs)):
        fail("the packed file's memory image differs from the input's")
    for off, size, where in old_to_new:
        if data[off:off + size] != out[where:where + size]:
            fail("a note moved or changed")
    return out, len(new_loads)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__.split("\n\n")[1])
    data = open(sys.argv[1], "rb").read()
    min_gap = 64 * 1024
    while True:
        out, n = pack(data, min_gap)
        if n <= 32:   # loaders cap the number of program headers (cocoon: 64)
            break
        min_gap *= 2
    with open(sys.argv[2] + ".tmp", "wb") as f:
        f.write(out)
    os.chmod(sys.argv[2] + ".tmp", 0o755)
    os.replace(sys.argv[2] + ".tmp", sys.argv[2])
    print(f"pack-vmlinux: {len(data)} -> {len(out)} bytes, {n} loadable pieces")


if __name__ == "__main__":
    main()

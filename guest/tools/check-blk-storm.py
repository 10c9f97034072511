#!/usr/bin/env python3
"""Check from the host that a disk written by the guest's `workload=blk-storm`
holds every write a completed flush covered.

usage: check-blk-storm.py DISK --durable P [--seed S] [--bytes N] [--exact] [--quiet]

blk-storm's write number g goes to block mix64(seed ^ mix64(g)) % nblocks, so
the last write to each block up to P is known here without the guest's help.
P is the `durable=` figure of a `guest: blk-storm durable=P ...` line (or of
the result line): every write <= P completed before a flush that completed.

Every 512-byte sector of every block b must then hold
  - write last(b, P), or a later write to b (one that was in flight or done
    after P; a block may be torn between such writes when the VM was killed);
  - zeros only if no write <= P went to b.
With --exact (a run that ended cleanly: P is the final write), every sector
must hold exactly last(b, P). Format: guest/README.md, "blk-storm on-disk
format".

The disk is read with O_DIRECT, so what is checked is what the storage holds,
not what the host page cache might still hold. Exit status 0 = ok,
1 = lost or corrupt data, 2 = usage / I/O error.
"""
import argparse
import mmap
import os
import struct
import sys

from blkfmt import SECTOR, mix64, sector, size_arg

BLOCK = 4096
SECTORS = BLOCK // SECTOR
MAGIC = 0x314D524F54534842           # b"BHSTORM1" as a little-endian u64
GEN_MASK = (1 << 56) - 1
ZERO_SECTOR = bytes(SECTOR)


def storm_block(seed, gen, nblocks):
    return mix64(seed ^ mix64(gen)) % nblocks


def sector_problem(data, block, index, seed, nblocks, required, exact):
    """None if the sector is acceptable, else a description of what is wrong."""
    if data == ZERO_SECTOR:
        return None if required == 0 else "all zero, but write %d is durable" % required
    w = struct.unpack_from("<4Q", data)
    if w[0] != MAGIC:
        return "no magic (first word 0x%016x); write %d is durable" % (w[0], required)
    gen, s = w[3] & GEN_MASK, w[3] >> 56
    if w[1] != block or w[2] != seed or s != index:
        return "holds block=%d seed=%d sector=%d" % (w[1], w[2], s)
    if data != sector(MAGIC, block, seed, gen | (index << 56)):
        return "write %d, but its bytes are corrupt" % gen
    if storm_block(seed, gen, nblocks) != block:
        return "write %d, which never went to this block" % gen
    if gen < required or (exact and gen != required):
        return "write %d, but write %d is durable (lost)" % (gen, required)
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("disk")
    ap.add_argument("--durable", type=int, required=True)
    ap.add_argument("--seed", type=lambda s: int(s, 0), default=1)
    ap.add_argument("--bytes", type=size_arg, default=None)
    ap.add_argument("--exact", action="store_true")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args()
    try:
        fd = os.open(a.disk, os.O_RDONLY | os.O_DIRECT)
    except OSError as e:
        print("check-blk-storm: %s: %s" % (a.disk, e), file=sys.stderr)
        return 2
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
        nbytes = size if a.bytes is None else a.bytes
        nbytes -= nbytes % BLOCK
        if nbytes <= 0 or nbytes > size:
            print("check-blk-storm: bad --bytes %d for a %d-byte disk" % (nbytes, size), file=sys.stderr)
            return 2
        nblocks = nbytes // BLOCK
        required = [0] * nblocks
        for gen in range(1, a.durable + 1):
            required[storm_block(a.seed, gen, nblocks)] = gen
        chunk = 256 * BLOCK
        buf = mmap.mmap(-1, chunk)          # page-aligned, as O_DIRECT needs
        bad_blocks = 0
        block = 0
        while block < nblocks:
            want = min(chunk, nbytes - block * BLOCK)
            got = os.preadv(fd, [memoryview(buf)[:want]], block * BLOCK)
            if got != want:
                print("check-blk-storm: short read at block %d" % block, file=sys.stderr)
                return 2
            data = bytes(buf[:want])
            for off in range(0, want, BLOCK):
                for s in range(SECTORS):
                    got = data[off + s * SECTOR:off + (s + 1) * SECTOR]
                    problem = sector_problem(got, block, s, a.seed, nblocks, required[block], a.exact)
                    if problem:
                        bad_blocks += 1
                        if bad_blocks <= 10 and not a.quiet:
                            print("check-blk-storm: block %d sector %d: %s" % (block, s, problem))
                        break
                block += 1
    except OSError as e:
        print("check-blk-storm: %s: %s" % (a.disk, e), file=sys.stderr)
        return 2
    finally:
        os.close(fd)
    written = sum(1 for r in required if r)
    print("check-blk-storm: %s: %d blocks (%d written by writes <= %d), seed %d%s: %s" % (
        a.disk, nblocks, written, a.durable, a.seed, ", exact" if a.exact else "",
        "ok" if bad_blocks == 0 else "%d blocks lost or corrupt" % bad_blocks))
    return 0 if bad_blocks == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

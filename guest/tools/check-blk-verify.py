#!/usr/bin/env python3
"""Re-verify a disk image written by the guest's `workload=blk-verify`.

usage: check-blk-verify.py DISK [--seed S] [--pass P] [--bytes N] [--quiet]

DISK is the raw disk image (or block device). Every 4 KiB block in
[0, bytes) must hold exactly what blk-verify's pass P with seed S wrote
(format: guest/README.md, "blk-verify on-disk format"). --bytes defaults to
the whole file, rounded down to 4 KiB, like the guest's default. Exit status
0 = all blocks match, 1 = mismatches, 2 = usage / I/O error. Pure Python 3,
no dependencies (~1 s per 64 MiB).
"""
import argparse
import os
import struct
import sys

from blkfmt import SECTOR, mix64, sector, size_arg

BLOCK = 4096
MAGIC = 0x3146564B4C424842          # b"BHBLKVF1" as a little-endian u64


def expected_sector(block, sector_index, seed, pass_):
    return sector(MAGIC, block, seed, (pass_ & 0xFFFFFFFF) | (sector_index << 32))


def expected_block(block, seed, pass_):
    return b"".join(expected_sector(block, s, seed, pass_) for s in range(BLOCK // SECTOR))


def describe(sector_bytes):
    w = struct.unpack_from("<5Q", sector_bytes)
    if w[0] != MAGIC:
        if sector_bytes == bytes(SECTOR):
            return "all zero"
        return "no magic (first word 0x%016x)" % w[0]
    return "holds block=%d seed=%d pass=%d sector=%d" % (w[1], w[2], w[3] & 0xFFFFFFFF, w[3] >> 32)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("disk")
    ap.add_argument("--seed", type=lambda s: int(s, 0), default=1)
    ap.add_argument("--pass", dest="pass_", type=lambda s: int(s, 0), default=1,
                    help="pass number of the content expected (the last pass the guest wrote)")
    ap.add_argument("--bytes", type=size_arg, default=None)
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args()
    try:
        with open(a.disk, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            nbytes = size if a.bytes is None else a.bytes
            nbytes -= nbytes % BLOCK
            if nbytes <= 0 or nbytes > size:
                print("check-blk-verify: bad --bytes %d for a %d-byte disk" % (nbytes, size), file=sys.stderr)
                return 2
            f.seek(0)
            bad = 0
            chunk = 256 * BLOCK
            block = 0
            while block * BLOCK < nbytes:
                data = f.read(min(chunk, nbytes - block * BLOCK))
                if not data or len(data) % BLOCK:
                    print("check-blk-verify: short read at block %d" % block, file=sys.stderr)
                    return 2
                for off in range(0, len(data), BLOCK):
                    got = data[off:off + BLOCK]
                    want = expected_block(block, a.seed, a.pass_)
                    if got != want:
                        bad += 1
                        if bad <= 10 and not a.quiet:
                            for s in range(BLOCK // SECTOR):
                                g = got[s * SECTOR:(s + 1) * SECTOR]
                                if g != want[s * SECTOR:(s + 1) * SECTOR]:
                                    print("mismatch block %d sector %d: %s" % (block, s, describe(g)))
                                    break
                    block += 1
    except OSError as e:
        print("check-blk-verify: %s" % e, file=sys.stderr)
        return 2
    total = nbytes // BLOCK
    print("check-blk-verify: %s: %d blocks, seed %d, pass %d: %s" % (
        a.disk, total, a.seed, a.pass_, "ok" if bad == 0 else "%d mismatched blocks" % bad))
    return 0 if bad == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

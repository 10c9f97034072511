"""The self-describing sector format shared by blk-verify and blk-storm
(guest/include/blkfmt.h; guest/README.md, "blk-verify on-disk format").

A sector is 64 little-endian u64 words: magic, block, seed, w3 (the workload's
tag: pass or write number, and the sector-in-block), a check word, then filler
derived from key = mix64(block ^ mix64(seed ^ mix64(w3))).
"""
import struct

SECTOR = 512
WORDS = SECTOR // 8
GOLDEN = 0x9E3779B97F4A7C15
M64 = (1 << 64) - 1

# Words 5..63 are key ^ (i * GOLDEN): build them as one big integer,
# key * REP puts key in every 64-bit lane (no carries since key < 2**64).
REP = sum(1 << (64 * j) for j in range(WORDS - 5))
CONST = sum(((i * GOLDEN) & M64) << (64 * (i - 5)) for i in range(5, WORDS))
TAIL_BYTES = (WORDS - 5) * 8


def size_arg(s):
    """Number like the guest's command line: decimal or 0x-hex, optional K/M/G."""
    mult = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}.get(s[-1:].lower(), 1)
    return int(s[:-1] if mult > 1 else s, 0) * mult


def mix64(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def sector(magic, block, seed, w3):
    """The 512 bytes blkfmt_fill_sector writes."""
    key = mix64(block ^ mix64(seed ^ mix64(w3)))
    head = struct.pack("<5Q", magic, block, seed, w3, mix64(key ^ magic))
    return head + ((key * REP) ^ CONST).to_bytes(TAIL_BYTES, "little")

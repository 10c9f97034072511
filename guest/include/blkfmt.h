/* The self-describing sector format shared by blk-verify and blk-storm (and
 * by guest/tools/blkfmt.py on the host). Sector = 64 little-endian u64 words:
 * w[0] magic, w[1] block, w[2] seed, w[3] workload tag (pass or write number,
 * and the sector-in-block), w[4] check word, w[5..63] key-derived filler, with
 * key = mix64(block ^ mix64(seed ^ mix64(w[3]))). See guest/README.md. */
#ifndef BULKHEAD_BLKFMT_H
#define BULKHEAD_BLKFMT_H
#include "types.h"

#define BLKFMT_SECTOR_WORDS 64
#define BLKFMT_GOLDEN       0x9e3779b97f4a7c15UL

static inline u64 mix64(u64 z)    /* splitmix64 finalizer */
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9UL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebUL;
    return z ^ (z >> 31);
}

static inline u64 blkfmt_key(u64 block, u64 seed, u64 w3)
{
    return mix64(block ^ mix64(seed ^ mix64(w3)));
}

/* Writes one sector (64 words) at w. */
static inline void blkfmt_fill_sector(u64 *w, u64 magic, u64 block, u64 seed, u64 w3)
{
    u64 key = blkfmt_key(block, seed, w3);
    w[0] = magic;
    w[1] = block;
    w[2] = seed;
    w[3] = w3;
    w[4] = mix64(key ^ magic);
    for (u32 i = 5; i < BLKFMT_SECTOR_WORDS; i++) w[i] = key ^ (i * BLKFMT_GOLDEN);
}

/* Zero iff the sector at w is exactly what blkfmt_fill_sector writes. */
static inline u64 blkfmt_sector_diff(const u64 *w, u64 magic, u64 block, u64 seed, u64 w3)
{
    u64 key = blkfmt_key(block, seed, w3);
    u64 diff = (w[0] ^ magic) | (w[1] ^ block) | (w[2] ^ seed) | (w[3] ^ w3) | (w[4] ^ mix64(key ^ magic));
    for (u32 i = 5; i < BLKFMT_SECTOR_WORDS; i++) diff |= w[i] ^ key ^ (i * BLKFMT_GOLDEN);
    return diff;
}
#endif

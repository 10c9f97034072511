/* blk-storm: a storm of 4 KiB writes and flushes over a region of the first
 * virtio-blk disk, for checking that nothing a completed flush covered is
 * ever lost (issue 6: kill the blk domain, or the whole VM, mid-storm).
 *
 * Write number g (g = 1, 2, ...) goes to block storm_block(seed, g, nblocks),
 * a fixed function of the seed, so the host can recompute which write is the
 * last one to each block up to any g (guest/tools/check-blk-storm.py; the
 * on-disk format is in guest/README.md, keep the three in step). Two writes
 * to one block are never in flight together: write g waits for the block's
 * earlier write to complete.
 *
 * A flush is submitted every `flush_every` completed writes. It covers every
 * write with number <= P, P = (the lowest write still in flight) - 1 at the
 * moment the flush is submitted: all of those completed before it. When the
 * flush completes OK, `durable` = P. Every `report_ms` the workload prints
 *     guest: blk-storm durable=P writes=N flushes=F
 * and the host may check, at any time after seeing that line (even after
 * killing the VM), that each block holds write last(b, P) or a later write to
 * that block. At the end it drains, flushes, reads every block back and checks
 * it holds exactly its last write (never-written blocks: zeros). */
#include "blkfmt.h"
#include "cmdline.h"
#include "lib.h"
#include "mem.h"
#include "timer.h"
#include "virtio_blk.h"
#include "workload.h"
#include "x86.h"

#define BLOCK_SIZE   4096
#define SECTOR_SIZE  512
#define SECTORS      (BLOCK_SIZE / SECTOR_SIZE)
#define WORDS        (SECTOR_SIZE / 8)
#define BS_MAGIC     0x314d524f54534842UL     /* "BHSTORM1" little-endian */
#define MAX_REPORT   8
#define NONE         (~0UL)

static inline u64 storm_block(u64 seed, u64 gen, u64 nblocks)
{
    return mix64(seed ^ mix64(gen)) % nblocks;
}

/* Sector s of write `gen` to `block`: magic, block, seed, gen | s << 56,
 * check word, then key-derived filler. */
static void fill_block(u64 *w, u64 block, u64 seed, u64 gen)
{
    for (u64 s = 0; s < SECTORS; s++, w += WORDS) blkfmt_fill_sector(w, BS_MAGIC, block, seed, gen | (s << 56));
}

/* Number of sectors of `w` that are not exactly write `gen` to `block` (gen
 * 0: never written, all zero); *first = the first such sector. */
static int check_block(const u64 *w, u64 block, u64 seed, u64 gen, int *first)
{
    int bad = 0;
    for (u64 s = 0; s < SECTORS; s++, w += WORDS) {
        u64 diff = 0;
        if (gen) diff = blkfmt_sector_diff(w, BS_MAGIC, block, seed, gen | (s << 56));
        else for (u32 i = 0; i < WORDS; i++) diff |= w[i];
        if (diff) {
            if (!bad) *first = (int)s;
            bad++;
        }
    }
    return bad;
}

struct storm {
    struct blk_dev blk;
    u64 nblocks, seed, flush_every;
    u32 qd;                 /* request slots, one of them for the flush */
    u8 *bufs;
    u64 *slot_gen;          /* write number in this slot; NONE: free or the flush */
    u64 *last_gen;          /* [nblocks]: the last write submitted to each block */
    int *free_slots;
    int nfree;
    int flush_slot;         /* -1: no flush in flight */
    u64 flush_covers;
    struct blk_done *done;
    u64 next_gen;           /* the next write number to submit */
    u64 durable;            /* every write <= durable is covered by a completed flush */
    u64 writes, flushes, failed_flushes, reads, mismatches, reported, since_flush;
};

static u64 lowest_in_flight(struct storm *v)
{
    u64 low = v->next_gen;
    for (u32 i = 0; i < v->qd; i++)
        if (v->slot_gen[i] != NONE && v->slot_gen[i] < low) low = v->slot_gen[i];
    return low;
}

static bool block_busy(struct storm *v, u64 block)
{
    for (u32 i = 0; i < v->qd; i++)
        if (v->slot_gen[i] != NONE && storm_block(v->seed, v->slot_gen[i], v->nblocks) == block) return true;
    return false;
}

static bool submit_flush(struct storm *v)
{
    int slot = v->free_slots[--v->nfree];
    if (!blk_submit(&v->blk, slot, VIRTIO_BLK_T_FLUSH, 0, NULL, 0)) {
        v->blk.fail_reason = "submit-failed";
        return false;
    }
    v->flush_slot = slot;
    v->flush_covers = lowest_in_flight(v) - 1;
    v->since_flush = 0;
    return true;
}

/* Reaps completions (waiting for at least one); false: the device failed. */
static bool reap(struct storm *v)
{
    int n = blk_wait(&v->blk, v->done, (int)v->qd);
    if (n < 0) return false;
    for (int i = 0; i < n; i++) {
        int slot = v->done[i].slot;
        bool ok = v->done[i].status == VIRTIO_BLK_S_OK;
        if (slot == v->flush_slot) {
            v->flush_slot = -1;
            if (ok) {
                v->flushes++;
                if (v->flush_covers > v->durable) v->durable = v->flush_covers;
            } else if (v->failed_flushes++ < MAX_REPORT) {
                printf("guest: blk-storm flush failed, status %u\n", v->done[i].status);
            }
        } else {
            if (ok) {
                v->writes++;
                v->since_flush++;
            } else if (v->reported++ < MAX_REPORT) {
                printf("guest: blk-storm write %lu failed, status %u\n", v->slot_gen[slot], v->done[i].status);
            }
            v->slot_gen[slot] = NONE;
        }
        v->free_slots[v->nfree++] = slot;
    }
    return true;
}

static void report(struct storm *v)
{
    printf("guest: blk-storm durable=%lu writes=%lu flushes=%lu\n", v->durable, v->writes, v->flushes);
}

/* Writes and flushes until `seconds` have passed; false: the device failed. */
static bool storm(struct storm *v, u64 seconds, u64 report_ms)
{
    struct blk_dev *b = &v->blk;
    u64 t0 = rdtsc(), last_report = t0, end_us = seconds * 1000000;
    for (;;) {
        u64 now = rdtsc();
        if (tsc_to_us(now - last_report) >= report_ms * 1000) {
            report(v);
            last_report = now;
        }
        bool stopping = tsc_to_us(now - t0) >= end_us;
        if (stopping && v->nfree == (int)v->qd) return true;
        bool added = false;
        if (!stopping) {
            /* A flush when enough writes completed since the last one; one slot is
             * always left for it. */
            if (v->flush_slot < 0 && v->since_flush >= v->flush_every && v->nfree > 0) {
                if (!submit_flush(v)) return false;
                added = true;
            }
            while (v->nfree > (v->flush_slot < 0 ? 1 : 0)) {
                u64 gen = v->next_gen;
                u64 block = storm_block(v->seed, gen, v->nblocks);
                if (block_busy(v, block)) break;     /* wait for the block's earlier write */
                int slot = v->free_slots[--v->nfree];
                u8 *buf = v->bufs + (u64)slot * BLOCK_SIZE;
                fill_block((u64 *)buf, block, v->seed, gen);
                if (!blk_submit(b, slot, VIRTIO_BLK_T_OUT, block * SECTORS, buf, BLOCK_SIZE)) {
                    b->fail_reason = "submit-failed";
                    return false;
                }
                v->slot_gen[slot] = gen;
                v->last_gen[block] = gen;
                v->next_gen++;
                added = true;
            }
        }
        if (added) blk_kick(b);
        if (v->nfree < (int)v->qd && !reap(v)) return false;
    }
}

/* The closing flush: everything written is covered. */
static bool final_flush(struct storm *v)
{
    if (!submit_flush(v)) return false;
    blk_kick(&v->blk);
    while (v->flush_slot >= 0)
        if (!reap(v)) return false;
    return true;
}

/* Reads every block back and checks it holds its last write. */
static bool verify(struct storm *v)
{
    struct blk_dev *b = &v->blk;
    u64 next = 0, completed = 0;
    while (completed < v->nblocks) {
        bool added = false;
        while (v->nfree > 0 && next < v->nblocks) {
            int slot = v->free_slots[--v->nfree];
            if (!blk_submit(b, slot, VIRTIO_BLK_T_IN, next * SECTORS, v->bufs + (u64)slot * BLOCK_SIZE, BLOCK_SIZE)) {
                b->fail_reason = "submit-failed";
                return false;
            }
            v->slot_gen[slot] = next++;      /* the block number, while verifying */
            added = true;
        }
        if (added) blk_kick(b);
        int n = blk_wait(b, v->done, (int)v->qd);
        if (n < 0) return false;
        for (int i = 0; i < n; i++) {
            int slot = v->done[i].slot;
            u64 block = v->slot_gen[slot];
            if (v->done[i].status == VIRTIO_BLK_S_OK) {
                v->reads++;
                int first = 0;
                const u64 *w = (const u64 *)(v->bufs + (u64)slot * BLOCK_SIZE);
                int bad = check_block(w, block, v->seed, v->last_gen[block], &first);
                if (bad) {
                    v->mismatches++;
                    if (v->reported++ < MAX_REPORT) {
                        const u64 *f = w + first * WORDS;
                        printf("guest: blk-storm mismatch block %lu: %d bad sector(s), expected write %lu, "
                               "sector %d holds magic=0x%lx block=%lu write=%lu\n", block, bad,
                               v->last_gen[block], first, f[0], f[1], f[3] & ((1UL << 56) - 1));
                    }
                }
            } else if (v->reported++ < MAX_REPORT) {
                printf("guest: blk-storm read of block %lu failed, status %u\n", block, v->done[i].status);
            }
            v->slot_gen[slot] = NONE;
            v->free_slots[v->nfree++] = slot;
            completed++;
        }
    }
    return true;
}

static bool run(void)
{
    static struct storm st;
    struct storm *v = &st;
    u64 dev = 0, qd = 32, bytes = 0, seconds = 5, report_ms = 100;
    v->seed = 1;
    v->flush_every = 8;
    cmdline_get_u64("dev", &dev);
    cmdline_get_u64("seed", &v->seed);
    cmdline_get_u64("qd", &qd);
    cmdline_get_u64("seconds", &seconds);
    cmdline_get_u64("flush_every", &v->flush_every);
    cmdline_get_u64("report_ms", &report_ms);
    bool have_bytes = cmdline_get_u64("bytes", &bytes);
    tsc_khz();

    if (!blk_open(&v->blk, (int)dev)) {
        result_kv("writes=0 flushes=0 durable=0 reads=0 mismatches=0 io_errors=0 reason=%s",
                  v->blk.fail_reason ? v->blk.fail_reason : "no-device");
        return false;
    }
    struct blk_dev *b = &v->blk;
    const char *bad = blk_region(b, have_bytes, &bytes);
    if (!bad && b->ro) bad = "read-only";
    if (!bad && !b->can_flush) bad = "no-flush";
    if (bad) {
        result_kv("writes=0 flushes=0 durable=0 reads=0 mismatches=0 io_errors=0 bytes=%lu reason=%s", bytes, bad);
        return false;
    }
    if (qd < 2) qd = 2;
    if (qd > (u64)b->max_slots) qd = (u64)b->max_slots;
    if (v->flush_every < 1) v->flush_every = 1;
    v->qd = (u32)qd;
    v->nblocks = bytes / BLOCK_SIZE;
    v->bufs = mem_alloc(qd * BLOCK_SIZE, 4096);
    v->slot_gen = mem_alloc(qd * sizeof(u64), 16);
    v->free_slots = mem_alloc(qd * sizeof(int), 16);
    v->done = mem_alloc(qd * sizeof(struct blk_done), 16);
    v->last_gen = mem_alloc(v->nblocks * sizeof(u64), 16);
    if (!v->bufs || !v->slot_gen || !v->free_slots || !v->done || !v->last_gen) {
        result_kv("writes=0 flushes=0 durable=0 reads=0 mismatches=0 io_errors=0 bytes=%lu reason=oom", bytes);
        return false;
    }
    for (u64 i = 0; i < v->nblocks; i++) v->last_gen[i] = 0;
    for (u32 i = 0; i < qd; i++) {
        v->slot_gen[i] = NONE;
        v->free_slots[i] = (int)i;
    }
    v->nfree = (int)qd;
    v->flush_slot = -1;
    v->next_gen = 1;
    printf("guest: blk-storm %lu blocks of 4 KiB, seed %lu, qd %lu, a flush every %lu writes, %lu s\n",
           v->nblocks, v->seed, qd, v->flush_every, seconds);

    u64 t0 = rdtsc();
    bool alive = storm(v, seconds, report_ms) && final_flush(v);
    if (alive) report(v);
    if (alive) alive = verify(v);
    u64 us = tsc_to_us(rdtsc() - t0);

    result_kv("writes=%lu flushes=%lu durable=%lu reads=%lu mismatches=%lu io_errors=%lu bytes=%lu seconds=%lu.%03lu",
              v->writes, v->flushes, v->durable, v->reads, v->mismatches, b->io_errors, bytes,
              us / 1000000, (us / 1000) % 1000);
    result_kv("seed=%lu qd=%lu flush_every=%lu", v->seed, qd, v->flush_every);
    if (!alive) result_kv("reason=%s", b->fail_reason ? b->fail_reason : "device");
    else if (v->mismatches) result_kv("reason=mismatch");
    else if (b->io_errors || v->failed_flushes) result_kv("reason=io-error");
    return alive && v->mismatches == 0 && b->io_errors == 0 && v->failed_flushes == 0 && v->writes > 0 &&
           v->durable == v->next_gen - 1;
}

WORKLOAD("blk-storm", run);

/* blk-verify: write self-describing 4 KiB blocks over a region of the first
 * virtio-blk disk, read them back and check them, for a number of passes.
 * The on-disk format is documented in guest/README.md and recomputed by
 * guest/tools/check-blk-verify.py; keep the three in step. */
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
#define BV_MAGIC     0x3146564b4c424842UL     /* "BHBLKVF1" little-endian */
#define MAX_REPORT   8

static void fill_block(u64 *w, u64 block, u64 seed, u32 pass)
{
    for (u32 s = 0; s < SECTORS; s++, w += WORDS)
        blkfmt_fill_sector(w, BV_MAGIC, block, seed, (u64)pass | ((u64)s << 32));
}

/* Returns the number of bad sectors; *first = the first bad one. */
static int check_block(const u64 *w, u64 block, u64 seed, u32 pass, int *first)
{
    int bad = 0;
    for (u32 s = 0; s < SECTORS; s++, w += WORDS) {
        if (blkfmt_sector_diff(w, BV_MAGIC, block, seed, (u64)pass | ((u64)s << 32))) {
            if (!bad) *first = (int)s;
            bad++;
        }
    }
    return bad;
}

struct bv {
    struct blk_dev blk;
    u64 nblocks, seed;
    u32 qd;
    u8 *bufs;
    u64 *slot_block;
    int *free_slots;
    struct blk_done *done;
    u64 writes, reads, mismatches, flushes, reported;
    u64 units_done, units_total;
    u32 decile;
};

static void progress(struct bv *v, u32 pass, const char *what)
{
    v->units_done++;
    u32 dec = (u32)(v->units_done * 10 / v->units_total);
    if (dec > v->decile) {
        v->decile = dec;
        printf("guest: blk-verify %u%% (pass %u %s)\n", dec * 10, pass, what);
    }
}

/* One sweep over all blocks, writing or reading+checking. false: the device
 * failed (blk.fail_reason). */
static bool sweep(struct bv *v, bool write, u32 pass)
{
    struct blk_dev *b = &v->blk;
    u32 type = write ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN;
    u64 next = 0, completed = 0;
    int nfree = (int)v->qd;
    for (int i = 0; i < nfree; i++) v->free_slots[i] = i;

    while (completed < v->nblocks) {
        bool added = false;
        while (nfree > 0 && next < v->nblocks) {
            int slot = v->free_slots[--nfree];
            u8 *buf = v->bufs + (u64)slot * BLOCK_SIZE;
            if (write) fill_block((u64 *)buf, next, v->seed, pass);
            if (!blk_submit(b, slot, type, next * SECTORS, buf, BLOCK_SIZE)) {
                printf("guest: blk-verify: submit failed (ring full?)\n");
                b->fail_reason = "submit-failed";
                return false;
            }
            v->slot_block[slot] = next++;
            added = true;
        }
        if (added) blk_kick(b);
        int n = blk_wait(b, v->done, (int)v->qd);
        if (n < 0) return false;
        for (int i = 0; i < n; i++) {
            int slot = v->done[i].slot;
            u64 block = v->slot_block[slot];
            if (v->done[i].status == VIRTIO_BLK_S_OK) {
                if (write) {
                    v->writes++;
                } else {
                    v->reads++;
                    int first = 0;
                    const u64 *w = (const u64 *)(v->bufs + (u64)slot * BLOCK_SIZE);
                    int bad = check_block(w, block, v->seed, pass, &first);
                    if (bad) {
                        v->mismatches++;
                        if (v->reported++ < MAX_REPORT) {
                            const u64 *f = w + first * WORDS;
                            printf("guest: blk-verify mismatch pass %u block %lu: %d bad sector(s), "
                                   "sector %d holds magic=0x%lx block=%lu seed=%lu pass=%lu sector=%lu\n",
                                   pass, block, bad, first, f[0], f[1], f[2], f[3] & 0xffffffffUL,
                                   f[3] >> 32);
                        }
                    }
                }
            } else if (v->reported++ < MAX_REPORT) {
                printf("guest: blk-verify %s of block %lu failed, status %u\n",
                       write ? "write" : "read", block, v->done[i].status);
            }
            v->free_slots[nfree++] = slot;
            completed++;
            progress(v, pass, write ? "write" : "read");
        }
    }
    return true;
}

static bool do_flush(struct bv *v)
{
    struct blk_dev *b = &v->blk;
    if (!blk_submit(b, 0, VIRTIO_BLK_T_FLUSH, 0, NULL, 0)) {
        b->fail_reason = "submit-failed";
        return false;
    }
    blk_kick(b);
    int n;
    while ((n = blk_wait(b, v->done, (int)v->qd)) == 0) {}
    if (n < 0) return false;
    if (v->done[0].status == VIRTIO_BLK_S_OK) v->flushes++;
    else printf("guest: blk-verify flush failed, status %u\n", v->done[0].status);
    return true;
}

static bool run(void)
{
    static struct bv st;
    struct bv *v = &st;
    u64 dev = 0, passes = 1, start_pass = 1, qd = 16, flush = 0, verify_only = 0, bytes = 0, seconds = 0;
    v->seed = 1;
    cmdline_get_u64("dev", &dev);
    cmdline_get_u64("passes", &passes);
    cmdline_get_u64("start_pass", &start_pass);
    cmdline_get_u64("seed", &v->seed);
    cmdline_get_u64("qd", &qd);
    cmdline_get_u64("flush", &flush);
    cmdline_get_u64("verify_only", &verify_only);
    cmdline_get_u64("seconds", &seconds); /* keep adding passes until this long has passed */
    bool have_bytes = cmdline_get_u64("bytes", &bytes);
    tsc_khz();

    if (!blk_open(&v->blk, (int)dev)) {
        result_kv("writes=0 reads=0 mismatches=0 io_errors=0 bytes=0 seconds=0.000 reason=%s",
                  v->blk.fail_reason ? v->blk.fail_reason : "no-device");
        return false;
    }
    struct blk_dev *b = &v->blk;
    const char *bad = blk_region(b, have_bytes, &bytes);
    if (!bad && passes == 0) bad = "bad-passes";
    if (!bad && b->ro && !verify_only) bad = "read-only";
    if (bad) {
        result_kv("writes=0 reads=0 mismatches=0 io_errors=0 bytes=%lu seconds=0.000 reason=%s", bytes, bad);
        return false;
    }
    if (qd < 1) qd = 1;
    if (qd > (u64)b->max_slots) {
        printf("guest: blk-verify: qd %lu capped to %d (queue size %u / 3)\n", qd, b->max_slots, b->vq.size);
        qd = (u64)b->max_slots;
    }
    if (flush && !b->can_flush) {
        printf("guest: blk-verify: flush=1 but the device does not offer FLUSH; not flushing\n");
        flush = 0;
    }
    v->qd = (u32)qd;
    v->nblocks = bytes / BLOCK_SIZE;
    v->bufs = mem_alloc(qd * BLOCK_SIZE, 4096);
    v->slot_block = mem_alloc(qd * sizeof(u64), 16);
    v->free_slots = mem_alloc(qd * sizeof(int), 16);
    v->done = mem_alloc(qd * sizeof(struct blk_done), 16);
    if (!v->bufs || !v->slot_block || !v->free_slots || !v->done) {
        result_kv("writes=0 reads=0 mismatches=0 io_errors=0 bytes=%lu seconds=0.000 reason=oom", bytes);
        return false;
    }
    v->units_total = passes * v->nblocks * (verify_only ? 1 : 2);
    printf("guest: blk-verify %lu blocks of 4 KiB, passes %lu..%lu, seed %lu, qd %lu%s%s\n",
           v->nblocks, start_pass, start_pass + passes - 1, v->seed, qd, flush ? ", flush" : "",
           verify_only ? ", verify only" : "");

    u64 t0 = rdtsc();
    bool alive = true;
    u64 done_passes = 0;
    for (u64 p = start_pass; alive; p++) {
        if (p >= start_pass + passes && (seconds == 0 || tsc_to_us(rdtsc() - t0) >= seconds * 1000000))
            break;
        if (!verify_only) {
            alive = sweep(v, true, (u32)p);
            if (alive && flush) alive = do_flush(v);
        }
        if (alive) alive = sweep(v, false, (u32)p);
        done_passes++;
    }
    passes = done_passes; /* the last pass on disk is start_pass + passes - 1 */
    u64 us = tsc_to_us(rdtsc() - t0);

    result_kv("writes=%lu reads=%lu mismatches=%lu io_errors=%lu bytes=%lu seconds=%lu.%03lu",
              v->writes, v->reads, v->mismatches, b->io_errors, bytes, us / 1000000,
              (us / 1000) % 1000);
    result_kv("passes=%lu seed=%lu qd=%lu flushes=%lu notifies=%lu notifies_skipped=%lu", passes,
              v->seed, qd, v->flushes, b->vq.notifies, b->vq.notifies_skipped);
    if (!alive) result_kv("reason=%s", b->fail_reason ? b->fail_reason : "device");
    else if (v->mismatches) result_kv("reason=mismatch");
    else if (b->io_errors) result_kv("reason=io-error");
    return alive && v->mismatches == 0 && b->io_errors == 0 &&
           (verify_only ? v->reads > 0 : v->writes > 0);
}

WORKLOAD("blk-verify", run);

/* blk-bench: fio-like load on the first virtio-blk disk for a fixed time.
 * mode=randread|randwrite|read|write bs= qd= seconds= bytes= (region from
 * offset 0) seed=. Latency is submit -> completion (TSC), kept in a
 * log-linear histogram (32 sub-buckets per power of two, <= 3% error). */
#include "cmdline.h"
#include "lib.h"
#include "mem.h"
#include "timer.h"
#include "virtio_blk.h"
#include "workload.h"
#include "x86.h"

#define SUB_BITS 5
#define SUB      (1u << SUB_BITS)
#define NBUCKETS (SUB + (64 - SUB_BITS) * SUB)

static u32 hist[NBUCKETS];

static u32 bucket_of(u64 v)
{
    if (v < SUB) return (u32)v;
    u32 e = 63 - (u32)__builtin_clzl(v);                 /* >= SUB_BITS */
    u32 sub = (u32)(v >> (e - SUB_BITS)) & (SUB - 1);
    return SUB + (e - SUB_BITS) * SUB + sub;
}

static u64 bucket_mid(u32 idx)
{
    if (idx < SUB) return idx;
    u32 e = (idx - SUB) / SUB + SUB_BITS, sub = (idx - SUB) % SUB;
    u64 width = 1UL << (e - SUB_BITS);
    return ((u64)(SUB + sub) << (e - SUB_BITS)) + width / 2;
}

/* Latency (TSC cycles) at quantile num/den. */
static u64 percentile(u64 count, u64 num, u64 den)
{
    if (!count) return 0;
    u64 rank = (count * num + den - 1) / den, seen = 0;
    if (rank == 0) rank = 1;
    for (u32 i = 0; i < NBUCKETS; i++) {
        seen += hist[i];
        if (seen >= rank) return bucket_mid(i);
    }
    return 0;
}

static u64 rng_state;
static u64 rng_next(void)            /* xorshift64* */
{
    u64 x = rng_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng_state = x;
    return x * 0x2545f4914f6cdd1dUL;
}

static bool run(void)
{
    static struct blk_dev blkdev;
    struct blk_dev *b = &blkdev;
    char mode[16] = "randread";
    u64 dev = 0, bs = 4096, qd = 1, seconds = 5, bytes = 0, seed = 1;
    cmdline_get("mode", mode, sizeof(mode));
    cmdline_get_u64("dev", &dev);
    cmdline_get_u64("bs", &bs);
    cmdline_get_u64("qd", &qd);
    cmdline_get_u64("seconds", &seconds);
    cmdline_get_u64("seed", &seed);
    bool have_bytes = cmdline_get_u64("bytes", &bytes);
    tsc_khz();

    bool rnd = false, wr = false;
    if (strcmp(mode, "randread") == 0) rnd = true;
    else if (strcmp(mode, "randwrite") == 0) rnd = wr = true;
    else if (strcmp(mode, "read") == 0) {}
    else if (strcmp(mode, "write") == 0) wr = true;
    else {
        result_kv("mode=%s reason=bad-mode", mode);
        return false;
    }
    if (!blk_open(b, (int)dev)) {
        result_kv("mode=%s reason=%s", mode, b->fail_reason ? b->fail_reason : "no-device");
        return false;
    }
    u64 disk = b->capacity * 512;
    if (!have_bytes) bytes = disk;
    const char *bad = NULL;
    if (bs < 512 || bs % 512 || bs > (1UL << 24)) bad = "bad-bs";
    else if (bytes > disk) bad = "bytes-beyond-disk";
    else if (bytes < bs) bad = "bad-bytes";
    else if (seconds == 0) bad = "bad-seconds";
    else if (wr && b->ro) bad = "read-only";
    if (bad) {
        result_kv("mode=%s bs=%lu qd=%lu reason=%s", mode, bs, qd, bad);
        return false;
    }
    if (qd < 1) qd = 1;
    if (qd > (u64)b->max_slots) {
        printf("guest: blk-bench: qd %lu capped to %d (queue size %u / 3)\n", qd, b->max_slots, b->vq.size);
        qd = (u64)b->max_slots;
    }
    u64 nblk = bytes / bs;
    u8 *bufs = mem_alloc(qd * bs, 4096);
    int *free_slots = mem_alloc(qd * sizeof(int), 16);
    struct blk_done *done = mem_alloc(qd * sizeof(struct blk_done), 16);
    if (!bufs || !free_slots || !done) {
        result_kv("mode=%s bs=%lu qd=%lu reason=oom", mode, bs, qd);
        return false;
    }
    if (wr)
        for (u64 i = 0; i < qd * bs; i += 8) *(u64 *)(bufs + i) = i * 0x9e3779b97f4a7c15UL + seed;
    rng_state = seed ? seed * 0x9e3779b97f4a7c15UL : 1;
    int nfree = (int)qd;
    for (int i = 0; i < nfree; i++) free_slots[i] = i;
    u32 type = wr ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN;
    printf("guest: blk-bench %s bs %lu qd %lu for %lu s over %lu MiB\n", mode, bs, qd, seconds, bytes >> 20);

    u64 pos = 0, ios = 0, lat_sum = 0, lat_max = 0;
    u64 t0 = rdtsc(), end = t0 + us_to_tsc(seconds * 1000000);
    bool alive = true;
    for (;;) {
        bool stopping = (s64)(rdtsc() - end) >= 0;
        if (!stopping && nfree > 0) {
            while (nfree > 0) {
                int slot = free_slots[--nfree];
                u64 blk;
                if (rnd) blk = rng_next() % nblk;
                else {
                    blk = pos++;
                    if (pos == nblk) pos = 0;
                }
                if (!blk_submit(b, slot, type, blk * (bs / 512), bufs + (u64)slot * bs, (u32)bs)) {
                    b->fail_reason = "submit-failed";
                    alive = false;
                    break;
                }
            }
            if (!alive) break;
            blk_kick(b);
        }
        if (stopping && b->inflight == 0) break;
        int n = blk_wait(b, done, (int)qd);
        if (n < 0) {
            alive = false;
            break;
        }
        for (int i = 0; i < n; i++) {
            free_slots[nfree++] = done[i].slot;
            if (done[i].status != VIRTIO_BLK_S_OK) continue;
            ios++;
            u64 l = done[i].lat_tsc;
            hist[bucket_of(l)]++;
            lat_sum += l;
            if (l > lat_max) lat_max = l;
        }
    }
    u64 us = tsc_to_us(rdtsc() - t0);
    if (us == 0) us = 1;
    u64 iops = ios * 1000000 / us;
    u64 mbps10 = ios * bs * 10 / us;                     /* MB/s (10^6 bytes), one decimal */
    result_kv("mode=%s bs=%lu qd=%lu iops=%lu mbps=%lu.%lu p50_us=%lu p99_us=%lu ios=%lu io_errors=%lu",
              mode, bs, qd, iops, mbps10 / 10, mbps10 % 10, tsc_to_us(percentile(ios, 50, 100)),
              tsc_to_us(percentile(ios, 99, 100)), ios, b->io_errors);
    result_kv("seconds=%lu.%03lu avg_us=%lu p999_us=%lu max_us=%lu notifies=%lu notifies_skipped=%lu",
              us / 1000000, (us / 1000) % 1000, ios ? tsc_to_us(lat_sum / ios) : 0,
              tsc_to_us(percentile(ios, 999, 1000)), tsc_to_us(lat_max), b->vq.notifies,
              b->vq.notifies_skipped);
    if (!alive) result_kv("reason=%s", b->fail_reason ? b->fail_reason : "device");
    else if (b->io_errors) result_kv("reason=io-error");
    return alive && b->io_errors == 0 && ios > 0;
}

WORKLOAD("blk-bench", run);

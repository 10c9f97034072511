/* virtio-blk driver: one request queue, polled, up to queue-size/3 requests
 * in flight (header + data + status, or header + status for FLUSH). */
#include "virtio_blk.h"
#include "cmdline.h"
#include "lib.h"
#include "mem.h"
#include "timer.h"
#include "x86.h"

#define MAX_DEVICES 32

bool blk_open(struct blk_dev *b, int which)
{
    memset(b, 0, sizeof(*b));
    struct virtio_dev devs[MAX_DEVICES];
    int n = virtio_mmio_find(devs, MAX_DEVICES), found = -1;
    for (int i = 0, k = 0; i < n; i++) {
        if (devs[i].device_id == VIRTIO_ID_BLOCK && k++ == which) {
            found = i;
            break;
        }
    }
    if (found < 0) {
        printf("guest: no virtio-blk device #%d (%d virtio-mmio device(s) found)\n", which, n);
        b->fail_reason = "no-device";
        return false;
    }
    b->vdev = devs[found];
    struct virtio_dev *d = &b->vdev;

    u64 v;
    u64 wanted = (1UL << VIRTIO_F_VERSION_1) | (1UL << VIRTIO_F_EVENT_IDX) |
                 (1UL << VIRTIO_BLK_F_FLUSH) | (1UL << VIRTIO_BLK_F_RO) |
                 (1UL << VIRTIO_BLK_F_BLK_SIZE) | (1UL << VIRTIO_BLK_F_SEG_MAX);
    if (cmdline_get_u64("virtio_event_idx", &v) && v == 0)
        wanted &= ~(1UL << VIRTIO_F_EVENT_IDX);
    if (!virtio_negotiate(d, wanted)) {
        b->fail_reason = d->version != 2 ? "legacy-virtio-mmio" : "feature-negotiation";
        return false;
    }

    u64 qsize = 256;
    if (cmdline_get_u64("virtio_queue_size", &qsize) && (qsize < 4 || qsize > 32768)) qsize = 256;
    if (!virtq_setup(d, &b->vq, 0, (u16)qsize)) {
        b->fail_reason = "queue-setup";
        virtio_fail(d);
        return false;
    }
    b->capacity = virtio_cfg_read64(d, VIRTIO_BLK_CFG_CAPACITY);
    b->blk_size = virtio_has(d, VIRTIO_BLK_F_BLK_SIZE) ? virtio_cfg_read32(d, VIRTIO_BLK_CFG_BLK_SIZE) : 512;
    b->seg_max = virtio_has(d, VIRTIO_BLK_F_SEG_MAX) ? virtio_cfg_read32(d, VIRTIO_BLK_CFG_SEG_MAX) : 0;
    b->ro = virtio_has(d, VIRTIO_BLK_F_RO);
    b->can_flush = virtio_has(d, VIRTIO_BLK_F_FLUSH);

    b->max_slots = b->vq.size / 3;
    b->dma = mem_alloc(sizeof(struct blk_slot_dma) * b->max_slots, 64);
    b->head_slot = mem_alloc(sizeof(s16) * b->vq.size, 16);
    b->submit_tsc = mem_alloc(sizeof(u64) * b->max_slots, 16);
    if (!b->dma || !b->head_slot || !b->submit_tsc) {
        printf("guest: out of memory for virtio-blk\n");
        b->fail_reason = "oom";
        virtio_fail(d);
        return false;
    }
    for (int i = 0; i < b->vq.size; i++) b->head_slot[i] = -1;
    u64 tmo = 30;
    if (cmdline_get_u64("io_timeout", &v) && v) tmo = v;
    b->timeout_tsc = us_to_tsc(tmo * 1000000);

    virtio_driver_ok(d);
    if (virtio_get_status(d) & (VIRTIO_STATUS_DEVICE_NEEDS_RESET | VIRTIO_STATUS_FAILED)) {
        printf("guest: virtio-blk at 0x%lx failed at DRIVER_OK\n", d->base);
        b->fail_reason = "device-failed";
        return false;
    }
    printf("guest: virtio-blk at 0x%lx irq %u: %lu sectors (%lu MiB), features 0x%lx of 0x%lx, "
           "queue %u, blk_size %u, seg_max %u%s%s%s\n",
           d->base, d->irq, b->capacity, b->capacity >> 11, d->features, d->device_features,
           b->vq.size, b->blk_size, b->seg_max, b->ro ? ", read-only" : "",
           b->can_flush ? ", flush" : "", b->vq.event_idx ? ", event-idx" : "");
    return true;
}

bool blk_submit(struct blk_dev *b, int slot, u32 type, u64 sector, void *buf, u32 len)
{
    if (slot < 0 || slot >= b->max_slots) return false;
    struct blk_slot_dma *s = &b->dma[slot];
    s->hdr.type = type;
    s->hdr.reserved = 0;
    s->hdr.sector = sector;
    s->status = 0xff;                      /* the device must overwrite it */
    struct virtq_buf bufs[3];
    int n = 0;
    bufs[n++] = (struct virtq_buf){ (u64)&s->hdr, sizeof(s->hdr), false };
    if (type != VIRTIO_BLK_T_FLUSH)
        bufs[n++] = (struct virtq_buf){ (u64)buf, len, type == VIRTIO_BLK_T_IN };
    bufs[n++] = (struct virtq_buf){ (u64)&s->status, 1, true };
    int head = virtq_add(&b->vq, bufs, n);
    if (head < 0) return false;
    b->head_slot[head] = (s16)slot;
    b->submit_tsc[slot] = rdtsc();
    b->inflight++;
    return true;
}

int blk_reap(struct blk_dev *b, struct blk_done *out, int max)
{
    int n = 0;
    u16 head;
    u32 len;
    while (n < max && virtq_get_used(&b->vq, &head, &len)) {
        u64 now = rdtsc();
        int slot = head < b->vq.size ? b->head_slot[head] : -1;
        if (slot < 0) {
            printf("guest: virtio-blk: device returned unknown descriptor %u\n", head);
            b->io_errors++;
            continue;
        }
        b->head_slot[head] = -1;
        b->inflight--;
        u8 st = b->dma[slot].status;
        if (st != VIRTIO_BLK_S_OK) b->io_errors++;
        out[n].slot = slot;
        out[n].status = st;
        out[n].lat_tsc = now - b->submit_tsc[slot];
        n++;
    }
    return n;
}

int blk_wait(struct blk_dev *b, struct blk_done *out, int max)
{
    if (b->inflight == 0) return blk_reap(b, out, max);
    u64 start = rdtsc(), last_check = start, second = us_to_tsc(1000000);
    for (;;) {
        int n = blk_reap(b, out, max);
        if (n) return n;
        u64 now = rdtsc();
        if (now - last_check >= second) {
            last_check = now;
            u32 st = virtio_get_status(&b->vdev);
            if (st & (VIRTIO_STATUS_DEVICE_NEEDS_RESET | VIRTIO_STATUS_FAILED)) {
                b->fail_reason = (st & VIRTIO_STATUS_FAILED) ? "device-failed" : "device-needs-reset";
                break;
            }
            if (now - start >= b->timeout_tsc) {
                b->fail_reason = "io-timeout";
                break;
            }
            u64 silent_s = tsc_to_us(now - start) / 1000000;
            if (silent_s == 1 || silent_s % 10 == 0)
                printf("guest: virtio-blk: no completion for %lu s (%d in flight), notifying again\n",
                       silent_s, b->inflight);
            virtq_kick(&b->vq, true);
        }
        cpu_relax();
    }
    printf("guest: virtio-blk: giving up (%s) with %d request(s) in flight\n", b->fail_reason,
           b->inflight);
    b->io_errors += b->inflight;
    b->inflight = 0;
    return -1;
}

const char *blk_region(const struct blk_dev *b, bool have_bytes, u64 *bytes)
{
    u64 disk = b->capacity * 512;
    if (!have_bytes) *bytes = disk;
    *bytes &= ~(u64)4095;
    if (*bytes == 0) return "bad-bytes";
    if (*bytes > disk) return "bytes-beyond-disk";
    return NULL;
}

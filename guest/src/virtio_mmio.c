/* virtio-mmio version 2 transport and split virtqueues (ring 3, polled).
 * Every register access is a VM exit (~75 us under PVM), so registers are
 * only touched during setup and for notifications. */
#include "virtio.h"
#include "cmdline.h"
#include "lib.h"
#include "mem.h"
#include "x86.h"

#define QEMU_MICROVM_MMIO_BASE  0xfeb00000UL
#define QEMU_MICROVM_MMIO_SLOTS 24
#define VIRTIO_MMIO_SLOT_SIZE   0x200

static u32 rd(const struct virtio_dev *d, u32 off) { return mmio_read32(d->base + off); }
static void wr(const struct virtio_dev *d, u32 off, u32 v) { mmio_write32(d->base + off, v); }

static bool probe_one(struct virtio_dev *d, u64 base, u64 size, u32 irq)
{
    d->base = base;
    d->size = size;
    d->irq = irq;
    if (rd(d, VIRTIO_MMIO_MAGIC_VALUE) != VIRTIO_MMIO_MAGIC) return false;
    d->version = rd(d, VIRTIO_MMIO_VERSION);
    d->device_id = rd(d, VIRTIO_MMIO_DEVICE_ID);
    d->features = 0;
    d->device_features = 0;
    return d->device_id != 0;     /* 0: transport slot with no device behind it */
}

int virtio_mmio_find(struct virtio_dev *out, int max)
{
    struct virtio_mmio_desc desc[32];
    int nd = cmdline_virtio_mmio_devices(desc, (int)ARRAY_SIZE(desc));
    int n = 0;
    for (int i = 0; i < nd && n < max; i++) {
        if (probe_one(&out[n], desc[i].base, desc[i].size, desc[i].irq))
            n++;
        else
            printf("guest: virtio-mmio at 0x%lx: no device (magic/id)\n", desc[i].base);
    }
    if (nd == 0) {
        for (int i = 0; i < QEMU_MICROVM_MMIO_SLOTS && n < max; i++) {
            u64 base = QEMU_MICROVM_MMIO_BASE + (u64)i * VIRTIO_MMIO_SLOT_SIZE;
            if (probe_one(&out[n], base, VIRTIO_MMIO_SLOT_SIZE, 0)) n++;
        }
        if (n) printf("guest: no virtio_mmio.device= on the command line; found %d at QEMU microvm slots\n", n);
    }
    return n;
}

u32 virtio_get_status(struct virtio_dev *d) { return rd(d, VIRTIO_MMIO_STATUS); }

void virtio_fail(struct virtio_dev *d)
{
    wr(d, VIRTIO_MMIO_STATUS, rd(d, VIRTIO_MMIO_STATUS) | VIRTIO_STATUS_FAILED);
}

static bool reset(struct virtio_dev *d)
{
    wr(d, VIRTIO_MMIO_STATUS, 0);
    for (int i = 0; i < 100000; i++) {
        if (rd(d, VIRTIO_MMIO_STATUS) == 0) return true;
        cpu_relax();
    }
    return false;
}

bool virtio_negotiate(struct virtio_dev *d, u64 wanted)
{
    if (d->version != 2) {
        printf("guest: virtio-mmio at 0x%lx is version %u; only version 2 (modern) is supported "
               "(QEMU: -global virtio-mmio.force-legacy=false)\n", d->base, d->version);
        return false;
    }
    if (!reset(d)) {
        printf("guest: virtio-mmio at 0x%lx: reset did not complete\n", d->base);
        return false;
    }
    u32 st = VIRTIO_STATUS_ACKNOWLEDGE;
    wr(d, VIRTIO_MMIO_STATUS, st);
    st |= VIRTIO_STATUS_DRIVER;
    wr(d, VIRTIO_MMIO_STATUS, st);

    wr(d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
    u64 offered = rd(d, VIRTIO_MMIO_DEVICE_FEATURES);
    wr(d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
    offered |= (u64)rd(d, VIRTIO_MMIO_DEVICE_FEATURES) << 32;
    d->device_features = offered;
    if (!((offered >> VIRTIO_F_VERSION_1) & 1)) {
        printf("guest: virtio-mmio at 0x%lx does not offer VERSION_1 (features 0x%lx)\n",
               d->base, offered);
        virtio_fail(d);
        return false;
    }
    d->features = offered & (wanted | (1UL << VIRTIO_F_VERSION_1));
    wr(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    wr(d, VIRTIO_MMIO_DRIVER_FEATURES, (u32)d->features);
    wr(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    wr(d, VIRTIO_MMIO_DRIVER_FEATURES, (u32)(d->features >> 32));
    st |= VIRTIO_STATUS_FEATURES_OK;
    wr(d, VIRTIO_MMIO_STATUS, st);
    if (!(rd(d, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_FEATURES_OK)) {
        printf("guest: virtio-mmio at 0x%lx refused features 0x%lx\n", d->base, d->features);
        virtio_fail(d);
        return false;
    }
    return true;
}

void virtio_driver_ok(struct virtio_dev *d)
{
    wr(d, VIRTIO_MMIO_STATUS, rd(d, VIRTIO_MMIO_STATUS) | VIRTIO_STATUS_DRIVER_OK);
}

u32 virtio_cfg_read32(struct virtio_dev *d, u32 off)
{
    return rd(d, VIRTIO_MMIO_CONFIG + off);
}

u64 virtio_cfg_read64(struct virtio_dev *d, u32 off)
{
    for (int tries = 0; tries < 100; tries++) {
        u32 gen = rd(d, VIRTIO_MMIO_CONFIG_GENERATION);
        u64 lo = rd(d, VIRTIO_MMIO_CONFIG + off);
        u64 hi = rd(d, VIRTIO_MMIO_CONFIG + off + 4);
        if (rd(d, VIRTIO_MMIO_CONFIG_GENERATION) == gen) return lo | (hi << 32);
    }
    return 0;
}

static void wr64(struct virtio_dev *d, u32 lo_off, u64 v)
{
    wr(d, lo_off, (u32)v);
    wr(d, lo_off + 4, (u32)(v >> 32));
}

bool virtq_setup(struct virtio_dev *d, struct virtq *q, u16 index, u16 max_size)
{
    memset(q, 0, sizeof(*q));
    wr(d, VIRTIO_MMIO_QUEUE_SEL, index);
    if (rd(d, VIRTIO_MMIO_QUEUE_READY)) {
        printf("guest: virtio queue %u already ready after reset\n", index);
        return false;
    }
    u32 nmax = rd(d, VIRTIO_MMIO_QUEUE_NUM_MAX);
    if (nmax == 0) {
        printf("guest: virtio queue %u not available\n", index);
        return false;
    }
    u32 size = max_size;
    if (size > nmax) size = nmax;
    while (size & (size - 1)) size &= size - 1;   /* power of two */

    q->dev = d;
    q->index = index;
    q->size = (u16)size;
    q->desc = mem_alloc(16UL * size, 4096);
    q->avail = mem_alloc(6 + 2UL * size, 4096);
    q->used = mem_alloc(6 + 8UL * size, 4096);
    q->next_free = mem_alloc(2UL * size, 16);
    if (!q->desc || !q->avail || !q->used || !q->next_free) {
        printf("guest: out of memory for virtqueue\n");
        return false;
    }
    q->used_event = &q->avail->ring[size];
    q->avail_event = (volatile u16 *)&q->used->ring[size];
    for (u32 i = 0; i < size; i++) q->next_free[i] = (u16)(i + 1);
    q->free_head = 0;
    q->num_free = (u16)size;
    q->event_idx = virtio_has(d, VIRTIO_F_EVENT_IDX);
    /* We poll: keep interrupts off. With EVENT_IDX the device only interrupts
     * when used->idx passes used_event, which we keep half a ring-index
     * space ahead; without it, the NO_INTERRUPT hint. */
    if (q->event_idx)
        *q->used_event = (u16)(q->last_used + 0x7fff);
    else
        q->avail->flags = VIRTQ_AVAIL_F_NO_INTERRUPT;

    wr(d, VIRTIO_MMIO_QUEUE_NUM, size);
    wr64(d, VIRTIO_MMIO_QUEUE_DESC_LOW, (u64)q->desc);
    wr64(d, VIRTIO_MMIO_QUEUE_DRIVER_LOW, (u64)q->avail);
    wr64(d, VIRTIO_MMIO_QUEUE_DEVICE_LOW, (u64)q->used);
    wr(d, VIRTIO_MMIO_QUEUE_READY, 1);
    return true;
}

int virtq_add(struct virtq *q, const struct virtq_buf *bufs, int n)
{
    if (n <= 0 || n > q->num_free) return -1;
    u16 head = q->free_head, id = head;
    for (int i = 0; i < n; i++) {
        volatile struct virtq_desc *dsc = &q->desc[id];
        dsc->addr = bufs[i].addr;
        dsc->len = bufs[i].len;
        dsc->flags = (u16)((bufs[i].device_writes ? VIRTQ_DESC_F_WRITE : 0) |
                           (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0));
        id = q->next_free[id];
        if (i + 1 < n) dsc->next = id;
    }
    q->free_head = id;
    q->num_free = (u16)(q->num_free - n);
    q->avail->ring[q->avail_shadow & (q->size - 1)] = head;
    q->avail_shadow++;
    return head;
}

void virtq_kick(struct virtq *q, bool force)
{
    u16 new_idx = q->avail_shadow, old = q->kick_old;
    barrier();                       /* descriptors and ring entries before idx (x86: stores in order) */
    q->avail->idx = new_idx;
    q->kick_old = new_idx;
    virtio_mb();                     /* idx store before reading avail_event / flags */
    bool need;
    if (force)
        need = true;
    else if (new_idx == old)
        need = false;
    else if (q->event_idx) {
        u16 ev = *q->avail_event;
        need = (u16)(new_idx - ev - 1) < (u16)(new_idx - old);
    } else
        need = !(q->used->flags & VIRTQ_USED_F_NO_NOTIFY);
    if (need) {
        mmio_write32(q->dev->base + VIRTIO_MMIO_QUEUE_NOTIFY, q->index);
        q->notifies++;
    } else if (new_idx != old) {
        q->notifies_skipped++;
    }
}

bool virtq_get_used(struct virtq *q, u16 *head, u32 *len)
{
    if (q->last_used == q->used->idx) return false;
    barrier();                       /* idx before the element (x86: loads in order) */
    volatile struct virtq_used_elem *e = &q->used->ring[q->last_used & (q->size - 1)];
    u16 id = (u16)e->id;
    *head = id;
    *len = e->len;
    q->last_used++;
    if (q->event_idx)
        *q->used_event = (u16)(q->last_used + 0x7fff);
    /* Return the chain to the free list. */
    u16 n = 1, tail = id;
    while (q->desc[tail].flags & VIRTQ_DESC_F_NEXT) {
        tail = q->desc[tail].next;
        n++;
    }
    q->next_free[tail] = q->free_head;
    q->free_head = id;
    q->num_free = (u16)(q->num_free + n);
    return true;
}

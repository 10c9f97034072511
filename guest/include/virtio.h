/* virtio-mmio (version 2, "modern") transport and split virtqueues, driven
 * from ring 3 by polling. See guest/README.md ("virtio"). */
#ifndef BULKHEAD_VIRTIO_H
#define BULKHEAD_VIRTIO_H
#include "types.h"

/* virtio-mmio registers (virtio 1.x, 4.2.2) */
#define VIRTIO_MMIO_MAGIC_VALUE        0x000   /* "virt" = 0x74726976 */
#define VIRTIO_MMIO_VERSION            0x004   /* 2 = modern, 1 = legacy */
#define VIRTIO_MMIO_DEVICE_ID          0x008
#define VIRTIO_MMIO_VENDOR_ID          0x00c
#define VIRTIO_MMIO_DEVICE_FEATURES    0x010
#define VIRTIO_MMIO_DEVICE_FEATURES_SEL 0x014
#define VIRTIO_MMIO_DRIVER_FEATURES    0x020
#define VIRTIO_MMIO_DRIVER_FEATURES_SEL 0x024
#define VIRTIO_MMIO_QUEUE_SEL          0x030
#define VIRTIO_MMIO_QUEUE_NUM_MAX      0x034
#define VIRTIO_MMIO_QUEUE_NUM          0x038
#define VIRTIO_MMIO_QUEUE_READY        0x044
#define VIRTIO_MMIO_QUEUE_NOTIFY       0x050
#define VIRTIO_MMIO_INTERRUPT_STATUS   0x060
#define VIRTIO_MMIO_INTERRUPT_ACK      0x064
#define VIRTIO_MMIO_STATUS             0x070
#define VIRTIO_MMIO_QUEUE_DESC_LOW     0x080
#define VIRTIO_MMIO_QUEUE_DESC_HIGH    0x084
#define VIRTIO_MMIO_QUEUE_DRIVER_LOW   0x090
#define VIRTIO_MMIO_QUEUE_DRIVER_HIGH  0x094
#define VIRTIO_MMIO_QUEUE_DEVICE_LOW   0x0a0
#define VIRTIO_MMIO_QUEUE_DEVICE_HIGH  0x0a4
#define VIRTIO_MMIO_CONFIG_GENERATION  0x0fc
#define VIRTIO_MMIO_CONFIG             0x100

#define VIRTIO_MMIO_MAGIC 0x74726976u

/* Device status bits */
#define VIRTIO_STATUS_ACKNOWLEDGE        1
#define VIRTIO_STATUS_DRIVER             2
#define VIRTIO_STATUS_DRIVER_OK          4
#define VIRTIO_STATUS_FEATURES_OK        8
#define VIRTIO_STATUS_DEVICE_NEEDS_RESET 64
#define VIRTIO_STATUS_FAILED             128

/* Device-independent feature bits */
#define VIRTIO_F_INDIRECT_DESC  28
#define VIRTIO_F_EVENT_IDX      29
#define VIRTIO_F_VERSION_1      32

#define VIRTIO_ID_NET   1
#define VIRTIO_ID_BLOCK 2

/* Split virtqueue layout (virtio 1.x, 2.7) */
#define VIRTQ_DESC_F_NEXT     1
#define VIRTQ_DESC_F_WRITE    2
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1
#define VIRTQ_USED_F_NO_NOTIFY     1

struct virtq_desc {
    u64 addr;
    u32 len;
    u16 flags;
    u16 next;
};
struct virtq_avail {
    u16 flags;
    u16 idx;
    u16 ring[];          /* [size], then u16 used_event */
};
struct virtq_used_elem {
    u32 id;
    u32 len;
};
struct virtq_used {
    u16 flags;
    u16 idx;
    struct virtq_used_elem ring[];   /* [size], then u16 avail_event */
};

/* One virtio-mmio device. */
struct virtio_dev {
    u64 base;
    u64 size;
    u32 irq;
    u32 version;         /* MMIO version register */
    u32 device_id;
    u64 device_features; /* offered */
    u64 features;        /* negotiated */
};

/* One split virtqueue. Descriptors come from a free list; a chain's head id
 * is what the device hands back in the used ring. */
struct virtq {
    struct virtio_dev *dev;
    u16 index;
    u16 size;
    volatile struct virtq_desc *desc;
    volatile struct virtq_avail *avail;
    volatile struct virtq_used *used;
    volatile u16 *used_event;        /* &avail->ring[size] */
    volatile u16 *avail_event;       /* (u16 *)&used->ring[size] */
    u16 *next_free;                  /* free-list links, by descriptor id */
    u16 free_head;
    u16 num_free;
    u16 avail_shadow;                /* our next avail index (published on kick) */
    u16 kick_old;                    /* avail index at the last kick decision */
    u16 last_used;                   /* next used index to reap */
    bool event_idx;
    u64 notifies;                    /* QueueNotify writes (each one a VM exit) */
    u64 notifies_skipped;            /* kicks the device said it did not need */
};

/* Devices from `virtio_mmio.device=` on the command line; if there is none,
 * probe QEMU microvm's fixed transport slots (0xfeb00000 + i*0x200, i<24),
 * because QEMU only appends the command-line words when ACPI is off.
 * Only slots with the virtio magic and a non-zero device id are returned. */
int virtio_mmio_find(struct virtio_dev *out, int max);

/* Reset, ACKNOWLEDGE, DRIVER, negotiate features (wanted & offered; VERSION_1
 * must be offered), FEATURES_OK and re-check. Returns false (printing why)
 * on failure, leaving the device FAILED. */
bool virtio_negotiate(struct virtio_dev *d, u64 wanted);
/* Allocate and register queue `index` with min(QueueNumMax, max_size)
 * entries (a power of two). Interrupts are suppressed (used_event kept far
 * ahead with EVENT_IDX, else VIRTQ_AVAIL_F_NO_INTERRUPT). */
bool virtq_setup(struct virtio_dev *d, struct virtq *q, u16 index, u16 max_size);
void virtio_driver_ok(struct virtio_dev *d);
u32 virtio_get_status(struct virtio_dev *d);
void virtio_fail(struct virtio_dev *d);
u32 virtio_cfg_read32(struct virtio_dev *d, u32 off);
u64 virtio_cfg_read64(struct virtio_dev *d, u32 off);
static inline bool virtio_has(const struct virtio_dev *d, int bit) { return (d->features >> bit) & 1; }

/* Buffers of one chain. */
struct virtq_buf {
    u64 addr;
    u32 len;
    bool device_writes;
};
/* Add a chain (not yet visible to the device). Returns the head descriptor
 * id, or -1 if there are not enough free descriptors. */
int virtq_add(struct virtq *q, const struct virtq_buf *bufs, int n);
/* Publish added chains and notify the device unless it said it does not need
 * it (avail_event with EVENT_IDX, else VIRTQ_USED_F_NO_NOTIFY). force: notify
 * regardless (used to re-kick a silent device). */
void virtq_kick(struct virtq *q, bool force);
/* Reap one used element: returns true and the chain's head id and written
 * length; the chain's descriptors go back to the free list. */
bool virtq_get_used(struct virtq *q, u16 *head, u32 *len);
static inline u16 virtq_pending_used(const struct virtq *q) { return (u16)(q->used->idx - q->last_used); }

/* Full fence from ring 3 (orders our stores before later loads). */
static inline void virtio_mb(void) { __asm__ volatile("lock addl $0, (%%rsp)" ::: "memory", "cc"); }
#endif

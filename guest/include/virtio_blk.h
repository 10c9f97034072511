/* virtio-blk driver (ring 3, polled, many requests in flight). */
#ifndef BULKHEAD_VIRTIO_BLK_H
#define BULKHEAD_VIRTIO_BLK_H
#include "types.h"
#include "virtio.h"

#define VIRTIO_BLK_F_SIZE_MAX 1
#define VIRTIO_BLK_F_SEG_MAX  2
#define VIRTIO_BLK_F_RO       5
#define VIRTIO_BLK_F_BLK_SIZE 6
#define VIRTIO_BLK_F_FLUSH    9

#define VIRTIO_BLK_T_IN     0
#define VIRTIO_BLK_T_OUT    1
#define VIRTIO_BLK_T_FLUSH  4

#define VIRTIO_BLK_S_OK     0
#define VIRTIO_BLK_S_IOERR  1
#define VIRTIO_BLK_S_UNSUPP 2

#define VIRTIO_BLK_CFG_CAPACITY 0x00   /* u64, 512-byte sectors */
#define VIRTIO_BLK_CFG_SEG_MAX  0x0c
#define VIRTIO_BLK_CFG_BLK_SIZE 0x14

struct virtio_blk_req_hdr {
    u32 type;
    u32 reserved;
    u64 sector;
};

/* Per-slot DMA memory: request header and the status byte the device writes. */
struct blk_slot_dma {
    struct virtio_blk_req_hdr hdr;
    volatile u8 status;
    u8 pad[15];
};

struct blk_dev {
    struct virtio_dev vdev;
    struct virtq vq;
    u64 capacity;          /* 512-byte sectors */
    u32 blk_size;          /* from config if BLK_SIZE, else 512 */
    u32 seg_max;           /* from config if SEG_MAX, else 0 (unknown) */
    bool ro;               /* RO negotiated */
    bool can_flush;        /* FLUSH negotiated */
    int max_slots;         /* requests that can be in flight (queue size / 3) */
    struct blk_slot_dma *dma;   /* [max_slots] */
    s16 *head_slot;             /* [vq.size]: slot of the chain with this head, -1 */
    u64 *submit_tsc;            /* [max_slots] */
    int inflight;
    u64 io_errors;         /* completed with a non-zero status, or abandoned */
    u64 timeout_tsc;       /* no progress for this long: give up (io_timeout=, default 30 s) */
    const char *fail_reason;    /* set when blk_wait gives up */
};

struct blk_done {
    int slot;
    u8 status;
    u64 lat_tsc;           /* submit -> reaped */
};

/* Find the `which`-th virtio-blk device, negotiate, set up queue 0 and read
 * the config. Prints one `guest: virtio-blk ...` line. Command line:
 * `virtio_event_idx=0` refuses EVENT_IDX (tests the flag-based path),
 * `virtio_queue_size=N` caps the ring (default 256), `io_timeout=S`. */
bool blk_open(struct blk_dev *b, int which);
/* Queue a request in `slot` (0 <= slot < max_slots, not in flight). type is
 * VIRTIO_BLK_T_IN/OUT (buf/len: data, len a multiple of 512) or _FLUSH
 * (buf ignored). Not visible to the device until blk_kick. */
bool blk_submit(struct blk_dev *b, int slot, u32 type, u64 sector, void *buf, u32 len);
static inline void blk_kick(struct blk_dev *b) { virtq_kick(&b->vq, false); }
/* Collect completions without waiting. */
int blk_reap(struct blk_dev *b, struct blk_done *out, int max);
/* Poll until at least one request completes; returns how many (<= max),
 * 0 if nothing is in flight, -1 if the device failed: DEVICE_NEEDS_RESET or
 * FAILED in its status (checked once a second while it is silent), or no
 * completion for timeout_tsc. Then fail_reason is set and every request
 * still in flight is counted in io_errors. A silent device is re-notified
 * once a second. */
int blk_wait(struct blk_dev *b, struct blk_done *out, int max);
/* The region a workload uses: [0, *bytes) rounded down to 4 KiB, the whole
 * disk when !have_bytes. NULL, or the reason it is unusable: bad-bytes,
 * bytes-beyond-disk. */
const char *blk_region(const struct blk_dev *b, bool have_bytes, u64 *bytes);
#endif

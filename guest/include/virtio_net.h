/* virtio-net driver (ring 3, polled): receiveq (queue 0) full of 2 KiB
 * buffers that are re-posted as soon as they are consumed, transmitq
 * (queue 1) with one single-descriptor chain (virtio-net header + frame) per
 * packet. No offloads, no MRG_RXBUF, no control queue. */
#ifndef BULKHEAD_VIRTIO_NET_H
#define BULKHEAD_VIRTIO_NET_H
#include "nic.h"
#include "types.h"
#include "virtio.h"

#define VIRTIO_NET_F_MAC       5
#define VIRTIO_NET_F_STATUS    16

#define VIRTIO_NET_CFG_MAC     0x00     /* u8 mac[6] */
#define VIRTIO_NET_CFG_STATUS  0x06     /* u16 */
#define VIRTIO_NET_S_LINK_UP   1

/* struct virtio_net_hdr with VERSION_1: flags, gso_type, hdr_len, gso_size,
 * csum_start, csum_offset, num_buffers. Always zero on transmit. */
#define VIRTIO_NET_HDR_LEN     12
#define NET_BUF_SIZE           2048
/* The virtio-net header starts 2 bytes into each buffer, so the Ethernet
 * header is at +14, the IP header at +28 (4-aligned) and a UDP payload at
 * +56 (8-aligned). */
#define NET_BUF_OFF            2
#define NET_FRAME_OFF          (NET_BUF_OFF + VIRTIO_NET_HDR_LEN)

struct net_dev {
    struct nic nic;            /* mac, link, fail_reason, frame and register counters */
    struct virtio_dev vdev;
    struct virtq rxq, txq;
    bool has_mac, has_status;
    u16 link_status_raw;

    u8 *rx_bufs;               /* [rx_count][NET_BUF_SIZE] */
    int rx_count;
    s16 *rx_head_buf;          /* [rxq.size]: buffer posted under this head, -1 */
    u8 *tx_bufs;               /* [tx_count][NET_BUF_SIZE] */
    int tx_count;
    u16 *tx_free;              /* stack of free tx buffer indices */
    int tx_nfree;
    s16 *tx_head_buf;          /* [txq.size] */
    int tx_inflight;
    int tx_unkicked;           /* queued since the last kick */

    u64 link_poll_tsc;         /* link-status poll period (link_poll_ms=, default 100) */
    u64 tick_tsc;              /* 100 ms */
    u64 next_link_poll;
    u64 last_tx_progress;      /* TSC of the last tx completion (or first in flight) */
    u64 last_rx_tsc;           /* TSC of the last received frame */
    u64 last_rx_rekick;
    u64 last_status_check;

    /* counters (frames and bytes are in nic) */
    u64 rx_bad_len;            /* used length < header or > buffer */
    u64 tx_rekicks, rx_rekicks;
};

/* Find the `which`-th virtio-net device among all announced virtio-mmio
 * devices (disks may come first), negotiate VERSION_1, MAC, STATUS and
 * EVENT_IDX (if offered; virtio_event_idx=0 refuses it), set up both
 * queues, post the receive buffers (net_rx_bufs=, default: the ring size)
 * and go DRIVER_OK. Prints one `guest: virtio-net ...` line. On failure
 * returns false with nic.fail_reason set. Then use it through n->nic (nic.h):
 *  - rx_poll hands frames up, re-posts their buffers and publishes them;
 *  - tx_commit queues a frame, visible to the device on tx_kick (done
 *    automatically every 32 frames); completions are reaped lazily;
 *  - service polls the link status every link_poll_ms (one exit), re-kicks
 *    a transmit queue that has not completed anything for 100 ms and the
 *    receive queue after 1 s without frames (covers a backend restarted
 *    under the guest), and checks the device status once a second while the
 *    tx queue is stuck; false once it reports DEVICE_NEEDS_RESET or FAILED.
 * Register counters: rx_regs/tx_regs are the QueueNotify writes on the
 * receiveq (including the one that publishes the buffers at start) and the
 * transmitq; other_regs the link-status and Status reads. */
bool net_dev_open(struct net_dev *n, int which);
#endif

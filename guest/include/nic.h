/* The NIC interface the network stack (net.c) sits on. Two drivers are
 * behind it: virtio-net (virtio_net.c) and the RTL8139 (rtl8139.c); the
 * command line picks one with nic=virtio (default) or nic=rtl8139.
 * Everything is polled from ring 3; nothing waits for an interrupt.
 * A driver's state struct starts with a struct nic. */
#ifndef BULKHEAD_NIC_H
#define BULKHEAD_NIC_H
#include "types.h"

#define NET_MAX_FRAME   1514     /* Ethernet header + 1500, no FCS */
#define NET_MIN_FRAME   60       /* shorter frames are zero-padded to this on tx */

struct nic;
typedef void (*nic_rx_fn)(void *ctx, u8 *frame, u32 len);

struct nic_ops {
    /* Hand up to max received frames to fn (a frame is valid only during
     * the call) and give their buffers back to the device. Returns how many. */
    int (*rx_poll)(struct nic *n, nic_rx_fn fn, void *ctx, int max);
    /* A free transmit buffer: where the Ethernet frame goes (NET_MAX_FRAME
     * bytes), or NULL while every buffer is in flight. */
    u8 *(*tx_begin)(struct nic *n);
    /* Send the frame written into the buffer from tx_begin (len <=
     * NET_MAX_FRAME; shorter than NET_MIN_FRAME is zero-padded). virtio-net
     * publishes frames in batches (tx_kick); the RTL8139 starts each at once. */
    void (*tx_commit)(struct nic *n, u8 *frame, u32 len);
    /* Give back a buffer from tx_begin without sending it. */
    void (*tx_cancel)(struct nic *n, u8 *frame);
    /* Make every committed frame visible to the device now. */
    void (*tx_kick)(struct nic *n);
    /* Reap transmit completions that cost no register access; returns how many. */
    int (*tx_reap)(struct nic *n);
    /* Frames committed whose completion has not been seen; may read a
     * register (RTL8139), so call it when waiting for the device, not per frame. */
    int (*tx_pending)(struct nic *n);
    /* Cheap housekeeping (a TSC compare unless something is due): link
     * status every link_poll_ms, stall recovery. false once the device failed. */
    bool (*service)(struct nic *n);
    /* Print one `guest: <driver>: ...` line with the driver's own counters. */
    void (*print_stats)(struct nic *n);
};

struct nic {
    const struct nic_ops *ops;
    const char *model;           /* "virtio" or "rtl8139": the nic= value */
    u8 mac[6];
    bool link_up;
    u64 link_down_seen;          /* up -> down transitions seen (and a link down at start) */
    const char *fail_reason;     /* set when the device failed */
    u64 rx_frames, rx_bytes;     /* frames handed to the stack */
    u64 tx_frames, tx_bytes;     /* frames given to the device */
    /* Register accesses after setup, each one a VM exit (what a driver
     * costs the VMM): on the receive path, on the transmit path, and the
     * rest (link polls, status checks, recovery). */
    u64 rx_regs, tx_regs, other_regs;
    u64 setup_regs;              /* during open */
};

static inline int nic_rx_poll(struct nic *n, nic_rx_fn fn, void *ctx, int max)
{
    return n->ops->rx_poll(n, fn, ctx, max);
}
static inline u8 *nic_tx_begin(struct nic *n) { return n->ops->tx_begin(n); }
static inline void nic_tx_commit(struct nic *n, u8 *frame, u32 len) { n->ops->tx_commit(n, frame, len); }
static inline void nic_tx_cancel(struct nic *n, u8 *frame) { n->ops->tx_cancel(n, frame); }
static inline void nic_tx_kick(struct nic *n) { n->ops->tx_kick(n); }
static inline int nic_tx_reap(struct nic *n) { return n->ops->tx_reap(n); }
static inline int nic_tx_pending(struct nic *n) { return n->ops->tx_pending(n); }
static inline bool nic_service(struct nic *n) { return n->ops->service(n); }
#endif

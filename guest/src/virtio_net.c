/* virtio-net driver: receiveq (0) and transmitq (1), polled from ring 3.
 * Every chain is a single descriptor holding the 12-byte virtio-net header
 * and the frame. Interrupts stay off (see virtq_setup); kicks are written
 * only when the device asks for them (EVENT_IDX / NO_NOTIFY). The stack
 * reaches it through struct nic (nic.h). */
#include "virtio_net.h"
#include "cmdline.h"
#include "lib.h"
#include "mem.h"
#include "timer.h"
#include "x86.h"

#define MAX_DEVICES   32
#define TX_AUTO_KICK  32

static const struct nic_ops virtio_net_ops;

/* The data-path register accesses are the QueueNotify writes. */
static void sync_regs(struct net_dev *n)
{
    n->nic.rx_regs = n->rxq.notifies;
    n->nic.tx_regs = n->txq.notifies;
}

static void post_rx(struct net_dev *n, int buf)
{
    struct virtq_buf b = { (u64)(n->rx_bufs + (u64)buf * NET_BUF_SIZE + NET_BUF_OFF),
                           NET_BUF_SIZE - NET_BUF_OFF, true };
    int head = virtq_add(&n->rxq, &b, 1);
    if (head >= 0) n->rx_head_buf[head] = (s16)buf;
}

/* Read the link status now (one exit); updates link_up/link_down_seen. */
static bool link_poll(struct net_dev *n)
{
    n->next_link_poll = rdtsc() + n->link_poll_tsc;
    if (!n->has_status) {
        n->nic.link_up = true;
        return true;
    }
    /* Aligned 32-bit read of mac[4], mac[5], status (one exit). */
    u32 v = virtio_cfg_read32(&n->vdev, 4);
    n->nic.other_regs++;
    u16 st = (u16)(v >> 16);
    bool up = st & VIRTIO_NET_S_LINK_UP;
    if (!up && n->nic.link_up) {
        n->nic.link_down_seen++;
        printf("guest: virtio-net: link down (status 0x%x)\n", st);
    } else if (up && !n->nic.link_up && n->nic.link_down_seen) {
        printf("guest: virtio-net: link up again\n");
    }
    n->nic.link_up = up;
    n->link_status_raw = st;
    return up;
}

bool net_dev_open(struct net_dev *n, int which)
{
    memset(n, 0, sizeof(*n));
    n->nic.ops = &virtio_net_ops;
    n->nic.model = "virtio";
    struct virtio_dev devs[MAX_DEVICES];
    int nd = virtio_mmio_find(devs, MAX_DEVICES), found = -1;
    for (int i = 0, k = 0; i < nd; i++) {
        if (devs[i].device_id == VIRTIO_ID_NET && k++ == which) {
            found = i;
            break;
        }
    }
    if (found < 0) {
        printf("guest: no virtio-net device #%d (%d virtio-mmio device(s) found)\n", which, nd);
        n->nic.fail_reason = "no-device";
        return false;
    }
    n->vdev = devs[found];
    struct virtio_dev *d = &n->vdev;

    u64 v;
    u64 wanted = (1UL << VIRTIO_F_VERSION_1) | (1UL << VIRTIO_F_EVENT_IDX) |
                 (1UL << VIRTIO_NET_F_MAC) | (1UL << VIRTIO_NET_F_STATUS);
    if (cmdline_get_u64("virtio_event_idx", &v) && v == 0)
        wanted &= ~(1UL << VIRTIO_F_EVENT_IDX);
    if (!virtio_negotiate(d, wanted)) {
        n->nic.fail_reason = d->version != 2 ? "legacy-virtio-mmio" : "feature-negotiation";
        return false;
    }
    u64 qsize = 256;
    if (cmdline_get_u64("virtio_queue_size", &qsize) && (qsize < 4 || qsize > 32768)) qsize = 256;
    if (!virtq_setup(d, &n->rxq, 0, (u16)qsize) || !virtq_setup(d, &n->txq, 1, (u16)qsize)) {
        n->nic.fail_reason = "queue-setup";
        virtio_fail(d);
        return false;
    }
    n->has_mac = virtio_has(d, VIRTIO_NET_F_MAC);
    n->has_status = virtio_has(d, VIRTIO_NET_F_STATUS);
    if (n->has_mac) {
        for (int tries = 0; tries < 100; tries++) {
            u32 gen = mmio_read32(d->base + VIRTIO_MMIO_CONFIG_GENERATION);
            u32 a = virtio_cfg_read32(d, 0), b = virtio_cfg_read32(d, 4);
            if (mmio_read32(d->base + VIRTIO_MMIO_CONFIG_GENERATION) != gen) continue;
            for (int i = 0; i < 4; i++) n->nic.mac[i] = (u8)(a >> (8 * i));
            n->nic.mac[4] = (u8)b;
            n->nic.mac[5] = (u8)(b >> 8);
            break;
        }
    } else {
        static const u8 fallback[6] = { 0x02, 0xb1, 0x4e, 0x00, 0x00, 0x02 };   /* locally administered */
        memcpy(n->nic.mac, fallback, 6);
    }

    n->rx_count = n->rxq.size;
    if (cmdline_get_u64("net_rx_bufs", &v) && v >= 1 && v < (u64)n->rx_count) n->rx_count = (int)v;
    n->tx_count = n->txq.size;
    n->rx_bufs = mem_alloc((u64)n->rx_count * NET_BUF_SIZE, 4096);
    n->tx_bufs = mem_alloc((u64)n->tx_count * NET_BUF_SIZE, 4096);
    n->rx_head_buf = mem_alloc(sizeof(s16) * n->rxq.size, 16);
    n->tx_head_buf = mem_alloc(sizeof(s16) * n->txq.size, 16);
    n->tx_free = mem_alloc(sizeof(u16) * n->tx_count, 16);
    if (!n->rx_bufs || !n->tx_bufs || !n->rx_head_buf || !n->tx_head_buf || !n->tx_free) {
        printf("guest: out of memory for virtio-net\n");
        n->nic.fail_reason = "oom";
        virtio_fail(d);
        return false;
    }
    for (int i = 0; i < n->rxq.size; i++) n->rx_head_buf[i] = -1;
    for (int i = 0; i < n->txq.size; i++) n->tx_head_buf[i] = -1;
    for (int i = 0; i < n->tx_count; i++) n->tx_free[i] = (u16)(n->tx_count - 1 - i);
    n->tx_nfree = n->tx_count;
    for (int i = 0; i < n->rx_count; i++) post_rx(n, i);
    u64 ms = 100;
    if (cmdline_get_u64("link_poll_ms", &v) && v) ms = v;
    n->link_poll_tsc = us_to_tsc(ms * 1000);
    n->tick_tsc = us_to_tsc(100000);

    virtio_driver_ok(d);
    if (virtio_get_status(d) & (VIRTIO_STATUS_DEVICE_NEEDS_RESET | VIRTIO_STATUS_FAILED)) {
        printf("guest: virtio-net at 0x%lx failed at DRIVER_OK\n", d->base);
        n->nic.fail_reason = "device-failed";
        return false;
    }
    /* Publish the receive buffers only after DRIVER_OK (the device may not
     * look at the queue before). */
    virtq_kick(&n->rxq, true);
    n->nic.link_up = true;              /* so that a link down at start counts once */
    link_poll(n);
    sync_regs(n);
    u64 now = rdtsc();
    n->last_rx_tsc = n->last_rx_rekick = n->last_tx_progress = n->last_status_check = now;
    printf("guest: virtio-net at 0x%lx irq %u: mac %02x:%02x:%02x:%02x:%02x:%02x%s, link %s, "
           "features 0x%lx of 0x%lx, queues %u/%u, %d rx buffers%s\n",
           d->base, d->irq, n->nic.mac[0], n->nic.mac[1], n->nic.mac[2], n->nic.mac[3], n->nic.mac[4],
           n->nic.mac[5],
           n->has_mac ? "" : " (own)", n->has_status ? (n->nic.link_up ? "up" : "down") : "up (no status)",
           d->features, d->device_features, n->rxq.size, n->txq.size, n->rx_count,
           n->rxq.event_idx ? ", event-idx" : "");
    return true;
}

static int tx_reap(struct net_dev *n)
{
    int k = 0;
    u16 head;
    u32 len;
    while (virtq_get_used(&n->txq, &head, &len)) {
        int buf = head < n->txq.size ? n->tx_head_buf[head] : -1;
        if (buf < 0) {
            printf("guest: virtio-net: tx returned unknown descriptor %u\n", head);
            continue;
        }
        n->tx_head_buf[head] = -1;
        n->tx_free[n->tx_nfree++] = (u16)buf;
        n->tx_inflight--;
        k++;
    }
    if (k) n->last_tx_progress = rdtsc();
    return k;
}

static void tx_kick(struct net_dev *n)
{
    n->tx_unkicked = 0;
    virtq_kick(&n->txq, false);
    n->nic.tx_regs = n->txq.notifies;
}

static u8 *tx_buf(struct net_dev *n)
{
    if (!n->tx_nfree) {
        tx_reap(n);
        if (!n->tx_nfree && n->tx_unkicked) {
            tx_kick(n);
            tx_reap(n);
        }
        if (!n->tx_nfree) return NULL;
    }
    int buf = n->tx_free[--n->tx_nfree];
    return n->tx_bufs + (u64)buf * NET_BUF_SIZE + NET_FRAME_OFF;
}

static int tx_buf_index(struct net_dev *n, u8 *frame)
{
    return (int)((u64)(frame - NET_FRAME_OFF - n->tx_bufs) / NET_BUF_SIZE);
}

static void tx_cancel(struct net_dev *n, u8 *frame)
{
    n->tx_free[n->tx_nfree++] = (u16)tx_buf_index(n, frame);
}

static void tx_queue(struct net_dev *n, u8 *frame, u32 len)
{
    int buf = tx_buf_index(n, frame);
    if (len > NET_MAX_FRAME) len = NET_MAX_FRAME;
    if (len < NET_MIN_FRAME) {
        memset(frame + len, 0, NET_MIN_FRAME - len);
        len = NET_MIN_FRAME;
    }
    memset(frame - VIRTIO_NET_HDR_LEN, 0, VIRTIO_NET_HDR_LEN);
    struct virtq_buf b = { (u64)(frame - VIRTIO_NET_HDR_LEN), len + VIRTIO_NET_HDR_LEN, false };
    int head = virtq_add(&n->txq, &b, 1);
    if (head < 0) {                     /* cannot happen: one descriptor per buffer */
        n->tx_free[n->tx_nfree++] = (u16)buf;
        return;
    }
    n->tx_head_buf[head] = (s16)buf;
    if (n->tx_inflight++ == 0) n->last_tx_progress = rdtsc();
    n->nic.tx_frames++;
    n->nic.tx_bytes += len;
    if (++n->tx_unkicked >= TX_AUTO_KICK) tx_kick(n);
}

static int rx_poll(struct net_dev *n, nic_rx_fn fn, void *ctx, int max)
{
    int k = 0;
    u16 head;
    u32 len;
    while (k < max && virtq_get_used(&n->rxq, &head, &len)) {
        int buf = head < n->rxq.size ? n->rx_head_buf[head] : -1;
        if (buf < 0) {
            printf("guest: virtio-net: rx returned unknown descriptor %u\n", head);
            continue;
        }
        n->rx_head_buf[head] = -1;
        u8 *p = n->rx_bufs + (u64)buf * NET_BUF_SIZE + NET_BUF_OFF;
        if (len < VIRTIO_NET_HDR_LEN || len > NET_BUF_SIZE - NET_BUF_OFF) {
            n->rx_bad_len++;
        } else {
            n->nic.rx_frames++;
            n->nic.rx_bytes += len - VIRTIO_NET_HDR_LEN;
            fn(ctx, p + VIRTIO_NET_HDR_LEN, len - VIRTIO_NET_HDR_LEN);
        }
        post_rx(n, buf);
        k++;
    }
    if (k) {
        virtq_kick(&n->rxq, false);
        n->nic.rx_regs = n->rxq.notifies;
        n->last_rx_tsc = rdtsc();
    }
    return k;
}

static bool service(struct net_dev *n)
{
    if (n->nic.fail_reason) return false;
    u64 now = rdtsc();
    if (now >= n->next_link_poll) link_poll(n);
    u64 ms100 = n->tick_tsc;
    if (n->tx_inflight && now - n->last_tx_progress > ms100) {
        if (n->tx_unkicked) tx_kick(n);
        if (!tx_reap(n)) {
            virtq_kick(&n->txq, true);
            n->tx_rekicks++;
            n->last_tx_progress = now;
            if (now - n->last_status_check > 10 * ms100) {
                n->last_status_check = now;
                u32 st = virtio_get_status(&n->vdev);
                n->nic.other_regs++;
                if (st & (VIRTIO_STATUS_DEVICE_NEEDS_RESET | VIRTIO_STATUS_FAILED)) {
                    n->nic.fail_reason = (st & VIRTIO_STATUS_FAILED) ? "device-failed" : "device-needs-reset";
                    printf("guest: virtio-net: device status 0x%x, giving up\n", st);
                    sync_regs(n);
                    return false;
                }
            }
        }
    }
    if (now - n->last_rx_tsc > 10 * ms100 && now - n->last_rx_rekick > 10 * ms100) {
        n->last_rx_rekick = now;
        virtq_kick(&n->rxq, true);
        n->rx_rekicks++;
    }
    sync_regs(n);
    return true;
}

/* struct nic operations: n is the nic at the start of a struct net_dev. */
static int op_rx_poll(struct nic *n, nic_rx_fn fn, void *ctx, int max)
{
    return rx_poll((struct net_dev *)n, fn, ctx, max);
}
static u8 *op_tx_begin(struct nic *n) { return tx_buf((struct net_dev *)n); }
static void op_tx_commit(struct nic *n, u8 *frame, u32 len) { tx_queue((struct net_dev *)n, frame, len); }
static void op_tx_cancel(struct nic *n, u8 *frame) { tx_cancel((struct net_dev *)n, frame); }
static void op_tx_kick(struct nic *n)
{
    struct net_dev *d = (struct net_dev *)n;
    if (d->tx_unkicked) tx_kick(d);
}
static int op_tx_reap(struct nic *n) { return tx_reap((struct net_dev *)n); }
static int op_tx_pending(struct nic *n) { return ((struct net_dev *)n)->tx_inflight; }
static bool op_service(struct nic *n) { return service((struct net_dev *)n); }
static void op_print_stats(struct nic *n)
{
    struct net_dev *d = (struct net_dev *)n;
    printf("guest: virtio-net: tx_rekicks=%lu rx_rekicks=%lu tx_notifies=%lu rx_notifies=%lu "
           "tx_notifies_skipped=%lu rx_notifies_skipped=%lu rx_bad_len=%lu\n",
           d->tx_rekicks, d->rx_rekicks, d->txq.notifies, d->rxq.notifies, d->txq.notifies_skipped,
           d->rxq.notifies_skipped, d->rx_bad_len);
}

static const struct nic_ops virtio_net_ops = {
    .rx_poll = op_rx_poll,
    .tx_begin = op_tx_begin,
    .tx_commit = op_tx_commit,
    .tx_cancel = op_tx_cancel,
    .tx_kick = op_tx_kick,
    .tx_reap = op_tx_reap,
    .tx_pending = op_tx_pending,
    .service = op_service,
    .print_stats = op_print_stats,
};

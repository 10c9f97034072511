/* RTL8139 driver, polled from ring 3 (see rtl8139.h and guest/README.md,
 * "RTL8139"). Every register access is a VM exit that Bulkhead forwards to
 * a driver domain, so the data path touches registers as little as it can:
 * receive polls the ring in memory and writes CAPR after batches of frames; transmit
 * writes one TSD per frame and reads the TSAD summary only when the next
 * descriptor is not known to be free. */
#include "rtl8139.h"
#include "cmdline.h"
#include "lib.h"
#include "mem.h"
#include "timer.h"
#include "x86.h"

#define TX_BUF_SIZE       2048
#define RX_MAX_FRAME      1522      /* VLAN-tagged maximum, without the CRC */
#define RX_ERRORS_PRINTED 5
/* How long to watch for a record's CRC word before asking CBR (one exit,
 * 26-75 us under PVM): QEMU writes the CRC a microsecond or so after the
 * header. */
#define RX_CRC_SPIN_US    10

typedef u32 __attribute__((aligned(1), may_alias)) u32_un;

static const struct nic_ops rtl8139_ops;

static u32 rx_buf_bytes(const struct rtl8139 *r) { return r->ring_size + 16 + RTL_RX_PAD; }

static bool link_poll(struct rtl8139 *r)
{
    r->next_link_poll = rdtsc() + r->link_poll_tsc;
    u16 bmsr = inw(r->io + RTL_BMSR);
    r->nic.other_regs++;
    r->link_polls++;
    /* All ones: nobody answers (a forwarded access that was abandoned). */
    bool up = bmsr != 0xffff && (bmsr & RTL_BMSR_LINK);
    if (!up && r->nic.link_up) {
        r->nic.link_down_seen++;
        printf("guest: rtl8139: link down (BMSR 0x%x)\n", bmsr);
    } else if (up && !r->nic.link_up && r->nic.link_down_seen) {
        printf("guest: rtl8139: link up again\n");
    }
    r->nic.link_up = up;
    return up;
}

/* Program the receiver with it stopped, then start it: RBSTART, RCR (QEMU
 * and the datasheet: the next frame goes to ring offset 0), CR.RE. The ring
 * is all zero before the device may write into it. */
static void rx_start(struct rtl8139 *r)
{
    memset(r->rx_buf, 0, rx_buf_bytes(r));
    r->rx_off = 0;
    r->rx_known = 0;
    r->rx_held = 0;
    outl(r->io + RTL_RBSTART, (u32)(u64)r->rx_buf);
    outl(r->io + RTL_RCR, r->rcr);
    outb(r->io + RTL_CR, RTL_CR_RE | RTL_CR_TE);
}

/* A header that cannot be: the ring is out of step. Stop the receiver,
 * clear the ring and start over at offset 0 (what 8139too does too). */
static void rx_restart(struct rtl8139 *r, u32 header)
{
    if (r->rx_ring_errors++ < RX_ERRORS_PRINTED)
        printf("guest: rtl8139: impossible rx header 0x%08x at ring offset 0x%x: restarting the receiver\n",
               header, r->rx_off);
    outb(r->io + RTL_CR, RTL_CR_TE);
    rx_start(r);
    r->nic.other_regs += 4;
}

static int rx_poll(struct rtl8139 *r, nic_rx_fn fn, void *ctx, int max)
{
    const u32 wrap = r->ring_size - 1;
    u32 off = r->rx_off;
    int k = 0;
    while (k < max) {
        /* Records start 4-aligned: the header is one aligned 32-bit load. */
        u32 h = *(volatile u32 *)(r->rx_buf + off);
        if (!h) break;                               /* nothing written here yet */
        u32 status = h & 0xffff, len = h >> 16;      /* len counts the 4-byte CRC */
        if (!(status & RTL_RX_ROK) || (status & RTL_RX_ERRORS) || len < 4 || len > RTL_RX_PAD - 8) {
            r->rx_off = off;
            rx_restart(r, h);
            return k;                                /* CAPR is meaningless now */
        }
        u32 span = (4 + len + 3) & ~3u;              /* header + frame + CRC, 4-aligned */
        if (r->rx_known < span) {
            /* The header alone does not mean the frame is there: QEMU writes
             * the header, then the frame, then the CRC, while this vCPU runs.
             * The CRC is the last word written (the ring is zero where the
             * device has not written), so a non-zero CRC word says the frame
             * is complete. Watch it briefly; a zero one after that (a real
             * CRC of 0, or a device that writes none) is settled by CBR, the
             * device's write offset. */
            volatile u32_un *crc = (volatile u32_un *)(r->rx_buf + off + len);
            if (!*crc) {
                u64 t0 = rdtsc();
                while (!*crc && rdtsc() - t0 < r->crc_spin_tsc) cpu_relax();
                if (*crc) r->rx_crc_waits++;
            }
            if (!*crc) {
                u16 cbr = inw(r->io + RTL_CBR);
                r->nic.rx_regs++;
                r->cbr_reads++;
                r->rx_known = (cbr - off) & wrap;
                if (r->rx_known < span) {            /* still being written */
                    r->rx_incomplete++;
                    break;
                }
            }
        }
        barrier();
        u32 flen = len - 4;
        if (flen > RX_MAX_FRAME) {
            r->rx_oversize++;
        } else {
            r->nic.rx_frames++;
            r->nic.rx_bytes += flen;
            fn(ctx, r->rx_buf + off + 4, flen);
        }
        /* Zero the record (with WRAP=1 it may run past the ring end into
         * the pad) before CAPR lets the device reuse the space. */
        memset(r->rx_buf + off, 0, span);
        r->rx_known = r->rx_known > span ? r->rx_known - span : 0;
        r->rx_held += span;
        off = (off + span) & wrap;
        k++;
    }
    r->rx_off = off;
    /* Give the space back at the end of a batch once a quarter of the ring
     * (rtl8139_capr_batch=) has been consumed since the last time: a CAPR
     * write (an exit) then covers many frames, and a device that has caught
     * up still sees three quarters of the ring free. (Holding back half made
     * QEMU, which stops taking frames with less than 1514 bytes free, stall
     * under a flood.) CAPR trails the read offset by 16 (a quirk 8139too
     * copies); the device takes it modulo the ring size. */
    if (r->rx_held >= r->capr_batch) {
        outw(r->io + RTL_CAPR, (u16)(off - 16));
        r->nic.rx_regs++;
        r->capr_writes++;
        r->rx_held = 0;
    }
    return k;
}

/* Which descriptors has the device finished with? TSAD mode: one read of the
 * summary covers all four; TSD mode: read the TSD of `d` only. */
static void tx_refresh(struct rtl8139 *r, int d)
{
    u8 own, tok;
    if (r->use_tsad) {
        u16 t = inw(r->io + RTL_TSAD);
        r->tsad_reads++;
        own = t & 0xf;
        tok = (t >> 12) & 0xf;
    } else {
        u32 t = inl((u16)(r->io + RTL_TSD0 + 4 * d));
        r->tsd_reads++;
        own = (t & RTL_TSD_OWN) ? (u8)(1 << d) : 0;
        tok = (t & RTL_TSD_TOK) ? (u8)(1 << d) : 0;
    }
    r->nic.tx_regs++;
    u8 done = r->tx_busy & own;
    for (int i = 0; i < 4; i++)
        if ((done >> i) & 1 && !((tok >> i) & 1)) r->tx_errors++;
    r->tx_busy &= (u8)~own;
    r->tx_free |= own;
}

static u8 *tx_begin(struct rtl8139 *r)
{
    /* One frame at a time: the device sends descriptors strictly in order. */
    if (r->tx_begun) return NULL;
    u8 bit = (u8)(1 << r->tx_next);
    if (!(r->tx_free & bit)) {
        tx_refresh(r, r->tx_next);
        if (!(r->tx_free & bit)) {
            r->tx_full++;
            return NULL;
        }
    }
    r->tx_begun = true;
    return r->tx_buf[r->tx_next];
}

static void tx_commit(struct rtl8139 *r, u8 *frame, u32 len)
{
    int d = r->tx_next;
    if (!r->tx_begun || frame != r->tx_buf[d]) return;
    if (len > NET_MAX_FRAME) len = NET_MAX_FRAME;
    if (len < NET_MIN_FRAME) {
        memset(frame + len, 0, NET_MIN_FRAME - len);
        len = NET_MIN_FRAME;
    }
    barrier();                                       /* the frame before the TSD write */
    /* Size with OWN = 0: the device reads the buffer and sends it. */
    outl((u16)(r->io + RTL_TSD0 + 4 * d), RTL_TSD_ERTXTH | len);
    r->nic.tx_regs++;
    r->tsd_writes++;
    u8 bit = (u8)(1 << d);
    r->tx_free &= (u8)~bit;
    r->tx_busy |= bit;
    r->tx_next = (u8)((d + 1) & 3);
    r->tx_begun = false;
    r->nic.tx_frames++;
    r->nic.tx_bytes += len;
}

static int tx_pending(struct rtl8139 *r)
{
    if (r->use_tsad) {
        if (r->tx_busy) tx_refresh(r, 0);
    } else {
        for (int i = 0; i < 4; i++)
            if ((r->tx_busy >> i) & 1) tx_refresh(r, i);
    }
    int n = 0;
    for (int i = 0; i < 4; i++) n += (r->tx_busy >> i) & 1;
    return n;
}

static bool rtl_service(struct rtl8139 *r)
{
    if (r->nic.fail_reason) return false;
    if (rdtsc() >= r->next_link_poll) link_poll(r);
    return true;
}

u16 rtl8139_probe_io(void)
{
    struct pci_dev d;
    if (!pci_find(RTL8139_VENDOR, RTL8139_DEVICE, 0, &d) || !pci_enable_io_bar0(&d, false)) return 0;
    printf("guest: pci %02x:%02x.%x %04x:%04x io=0x%x\n", d.bus, d.dev, d.fn, d.vendor, d.device, d.io_base);
    return d.io_base;
}

bool rtl8139_open(struct rtl8139 *r, int which)
{
    memset(r, 0, sizeof(*r));
    r->nic.ops = &rtl8139_ops;
    r->nic.model = "rtl8139";
    struct pci_dev *p = &r->pci;
    if (!pci_find(RTL8139_VENDOR, RTL8139_DEVICE, which, p)) {
        printf("guest: no RTL8139 #%d on PCI bus 0%s\n", which, pci_present() ? "" : " (no PCI host bridge)");
        r->nic.fail_reason = "no-device";
        return false;
    }
    u64 v;
    bool reassign = cmdline_get_u64("pci_reassign", &v) && v;
    if (!pci_enable_io_bar0(p, reassign)) {
        r->nic.fail_reason = "pci-bar";
        return false;
    }
    printf("guest: pci %02x:%02x.%x %04x:%04x io=0x%x\n", p->bus, p->dev, p->fn, p->vendor, p->device, p->io_base);
    if (p->io_assigned)
        printf("guest: pci %02x:%02x.%x: BAR0 sized %u bytes and assigned by the guest%s\n", p->bus, p->dev,
               p->fn, p->io_size, reassign ? " (pci_reassign=1)" : "");
    u16 io = r->io = p->io_base;
    u64 *setup = &r->nic.setup_regs;

    /* Reset: CR.RST reads 1 until the chip is done (QEMU: at once). After it
     * IMR = 0, TSD0-3 have OWN set, the receiver and transmitter are off. */
    outb(io + RTL_CR, RTL_CR_RST);
    (*setup)++;
    u64 t0 = rdtsc(), lim = us_to_tsc(100000);
    u8 cr;
    do {
        cr = inb(io + RTL_CR);
        (*setup)++;
    } while ((cr & RTL_CR_RST) && rdtsc() - t0 < lim);
    if (cr & RTL_CR_RST) {
        printf("guest: rtl8139 at io 0x%x: still in reset after 100 ms (CR 0x%x)\n", io, cr);
        r->nic.fail_reason = "reset-timeout";
        return false;
    }
    u32 lo = inl(io + RTL_IDR0);
    u16 hi = inw(io + RTL_IDR0 + 4);
    *setup += 2;
    for (int i = 0; i < 4; i++) r->nic.mac[i] = (u8)(lo >> (8 * i));
    r->nic.mac[4] = (u8)hi;
    r->nic.mac[5] = (u8)(hi >> 8);

    u64 ring_kib = 8;
    if (cmdline_get_u64("rtl8139_rx_ring", &v) && (v == 8 || v == 16 || v == 32)) ring_kib = v;
    r->ring_size = (u32)(ring_kib << 10);
    r->rx_buf = mem_alloc(rx_buf_bytes(r), 4096);
    u8 *tx = mem_alloc(4 * TX_BUF_SIZE, 4096);
    if (!r->rx_buf || !tx) {
        printf("guest: out of memory for the rtl8139\n");
        r->nic.fail_reason = "oom";
        return false;
    }
    for (int i = 0; i < 4; i++) r->tx_buf[i] = tx + i * TX_BUF_SIZE;
    r->use_tsad = !(cmdline_get_u64("rtl8139_tsad", &v) && v == 0);
    r->rcr = RTL_RCR_RXFTH_NONE | ((ring_kib == 8 ? 0u : ring_kib == 16 ? 1u : 2u) << RTL_RCR_RBLEN_SHIFT) |
             RTL_RCR_MXDMA_UNLIMITED | RTL_RCR_WRAP | RTL_RCR_AB | RTL_RCR_APM;
    r->tcr = RTL_TCR_IFG96 | RTL_TCR_MXDMA_1024;

    outw(io + RTL_IMR, 0);                           /* polled: no interrupt sources */
    for (int i = 0; i < 4; i++) outl(io + RTL_TSAD0 + 4 * i, (u32)(u64)r->tx_buf[i]);
    outb(io + RTL_CR, RTL_CR_TE);                    /* QEMU ignores TCR while TE is off */
    outl(io + RTL_TCR, r->tcr);
    *setup += 7;
    rx_start(r);                                     /* RBSTART, RCR, CR = RE|TE */
    *setup += 3;
    r->tx_free = 0xf;                                /* reset left OWN set on all four */

    u64 ms = 100;
    if (cmdline_get_u64("link_poll_ms", &v) && v) ms = v;
    r->link_poll_tsc = us_to_tsc(ms * 1000);
    r->crc_spin_tsc = us_to_tsc(RX_CRC_SPIN_US);
    r->capr_batch = r->ring_size / 4;
    if (cmdline_get_u64("rtl8139_capr_batch", &v) && v <= r->ring_size / 2) r->capr_batch = (u32)v;
    r->nic.link_up = true;                           /* so that a link down at start counts once */
    link_poll(r);
    *setup += r->nic.other_regs;
    r->nic.other_regs = 0;
    r->link_polls = 0;
    printf("guest: rtl8139 at io 0x%x irq %u: mac %02x:%02x:%02x:%02x:%02x:%02x, link %s, rx ring %u KiB "
           "(WRAP=1), 4 tx buffers, tx status from %s, %lu register accesses to set up\n",
           io, p->irq_line, r->nic.mac[0], r->nic.mac[1], r->nic.mac[2], r->nic.mac[3], r->nic.mac[4],
           r->nic.mac[5], r->nic.link_up ? "up" : "down", (u32)ring_kib, r->use_tsad ? "TSAD" : "TSD",
           r->nic.setup_regs);
    return true;
}

/* struct nic operations: n is the nic at the start of a struct rtl8139. */
static int op_rx_poll(struct nic *n, nic_rx_fn fn, void *ctx, int max)
{
    return rx_poll((struct rtl8139 *)n, fn, ctx, max);
}
static u8 *op_tx_begin(struct nic *n) { return tx_begin((struct rtl8139 *)n); }
static void op_tx_commit(struct nic *n, u8 *frame, u32 len) { tx_commit((struct rtl8139 *)n, frame, len); }
static void op_tx_cancel(struct nic *n, u8 *frame) { ((struct rtl8139 *)n)->tx_begun = false; }
static void op_tx_kick(struct nic *n) { }            /* each TSD write starts its frame */
static int op_tx_reap(struct nic *n) { return 0; }   /* completions cost a register read: lazily */
static int op_tx_pending(struct nic *n) { return tx_pending((struct rtl8139 *)n); }
static bool op_service(struct nic *n) { return rtl_service((struct rtl8139 *)n); }
static void op_print_stats(struct nic *n)
{
    struct rtl8139 *r = (struct rtl8139 *)n;
    printf("guest: rtl8139: capr_writes=%lu cbr_reads=%lu tsd_writes=%lu tsad_reads=%lu tsd_reads=%lu "
           "link_polls=%lu setup_regs=%lu rx_ring_errors=%lu rx_oversize=%lu rx_crc_waits=%lu "
           "rx_incomplete=%lu tx_errors=%lu tx_full=%lu\n",
           r->capr_writes, r->cbr_reads, r->tsd_writes, r->tsad_reads, r->tsd_reads, r->link_polls,
           r->nic.setup_regs, r->rx_ring_errors, r->rx_oversize, r->rx_crc_waits, r->rx_incomplete,
           r->tx_errors, r->tx_full);
}

static const struct nic_ops rtl8139_ops = {
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

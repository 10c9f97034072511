/* RTL8139 driver (ring 3, polled, no interrupts): the NIC that stock
 * guests drive with Linux's 8139too, found by a PCI scan, registers in its
 * 256-byte I/O BAR. Receive: one ring in guest memory that the device
 * fills with [header][frame][CRC] records; the driver polls the header in
 * memory and writes CAPR after batches of frames. Transmit: four descriptors in
 * round robin, one TSD write per frame. See guest/README.md ("RTL8139"). */
#ifndef BULKHEAD_RTL8139_H
#define BULKHEAD_RTL8139_H
#include "nic.h"
#include "pci.h"
#include "types.h"

#define RTL8139_VENDOR  0x10ec
#define RTL8139_DEVICE  0x8139

/* Registers (offsets in the I/O BAR). */
#define RTL_IDR0     0x00     /* MAC address, IDR0-5 (read as u32 + u16) */
#define RTL_TSD0     0x10     /* Transmit Status of Descriptor 0-3, u32 each */
#define RTL_TSAD0    0x20     /* Transmit Start Address of Descriptor 0-3, u32 each */
#define RTL_RBSTART  0x30     /* Receive Buffer Start Address, u32 */
#define RTL_CR       0x37     /* Command, u8 */
#define RTL_CAPR     0x38     /* Current Address of Packet Read, u16 (read offset - 16) */
#define RTL_CBR      0x3a     /* Current Buffer Address, u16 (device's write offset) */
#define RTL_IMR      0x3c     /* Interrupt Mask, u16 */
#define RTL_ISR      0x3e     /* Interrupt Status, u16 (never read by this driver) */
#define RTL_TCR      0x40     /* Transmit Configuration, u32 */
#define RTL_RCR      0x44     /* Receive Configuration, u32 */
#define RTL_TSAD     0x60     /* Transmit Status of All Descriptors, u16 */
#define RTL_BMSR     0x64     /* Basic Mode Status (MII), u16 */

#define RTL_CR_RST   0x10
#define RTL_CR_RE    0x08
#define RTL_CR_TE    0x04
#define RTL_CR_BUFE  0x01

#define RTL_TSD_OWN    (1u << 13)     /* set by the device: DMA done, buffer free */
#define RTL_TSD_TUN    (1u << 14)
#define RTL_TSD_TOK    (1u << 15)
#define RTL_TSD_ERTXTH (8u << 16)     /* early-tx threshold 8 x 32 = 256 bytes (8139too's) */

/* TSAD summary: OWN0-3 bits 0-3, TABT0-3 bits 4-7, TUN0-3 bits 8-11, TOK0-3 bits 12-15. */
#define RTL_TSAD_OWN(i)  (1u << (i))
#define RTL_TSAD_TOK(i)  (1u << (12 + (i)))

#define RTL_RCR_AAP    0x01     /* all physical (promiscuous): not set */
#define RTL_RCR_APM    0x02     /* physical match */
#define RTL_RCR_AM     0x04     /* multicast: not set */
#define RTL_RCR_AB     0x08     /* broadcast */
#define RTL_RCR_WRAP   0x80     /* write past the ring end instead of wrapping a frame */
#define RTL_RCR_MXDMA_UNLIMITED (7u << 8)
#define RTL_RCR_RBLEN_SHIFT 11  /* 0: 8K, 1: 16K, 2: 32K (+16) */
#define RTL_RCR_RXFTH_NONE (7u << 13)   /* DMA a frame only once it is whole */

#define RTL_TCR_IFG96  (3u << 24)
#define RTL_TCR_MXDMA_1024 (6u << 8)

/* Receive header (u32 at the start of each record): status low, length high. */
#define RTL_RX_ROK     0x0001
#define RTL_RX_ERRORS  0x003e   /* FAE CRC LONG RUNT ISE */

#define RTL_BMSR_LINK  0x0004

/* Beyond the ring (8K + 16 by default) the buffer has this much room, for
 * the part of a frame that WRAP=1 writes past the end. The datasheet asks
 * for 1.5 KiB; QEMU writes a frame of any size (up to ~68 KiB from a tap)
 * linearly there, so the guest reserves enough for the largest. */
#define RTL_RX_PAD     (72u << 10)

struct rtl8139 {
    struct nic nic;
    struct pci_dev pci;
    u16 io;                   /* BAR 0 */
    u32 rcr, tcr;

    u8 *rx_buf;               /* ring_size + 16 + RTL_RX_PAD, zero where not yet written */
    u32 ring_size;            /* 8, 16 or 32 KiB (rtl8139_rx_ring=) */
    u32 rx_off;               /* offset of the next record's header, 4-aligned, < ring_size */
    u32 rx_known;             /* bytes from rx_off known to be completely written (from CBR) */
    u32 rx_held;              /* bytes consumed since the last CAPR write */
    u32 capr_batch;           /* write CAPR once rx_held reaches this (a quarter of the ring) */

    u8 *tx_buf[4];            /* 2 KiB each, TSAD0-3 point at them for good */
    u8 tx_next;               /* descriptor of the next frame: the device sends 0,1,2,3,0,... */
    u8 tx_free;               /* descriptors seen with OWN set and not used since (bit i) */
    u8 tx_busy;               /* given to the device, completion not yet seen */
    bool tx_begun;            /* tx_buf[tx_next] is handed out */
    bool use_tsad;            /* read the TSAD summary (default) or TSD of one descriptor */

    u64 link_poll_tsc, next_link_poll;
    u64 crc_spin_tsc;         /* how long rx_poll watches a record's CRC word before reading CBR */

    /* counters */
    u64 capr_writes, cbr_reads, tsd_writes, tsad_reads, tsd_reads, link_polls;
    u64 rx_ring_errors;       /* impossible headers: receiver restarted */
    u64 rx_oversize;          /* frames longer than 1522 bytes, skipped */
    u64 rx_crc_waits;         /* records whose CRC word appeared while rx_poll watched it */
    u64 rx_incomplete;        /* CBR said the record was still being written */
    u64 tx_errors;            /* completions without TOK */
    u64 tx_full;              /* tx_begin found the next descriptor still owned by the device */
};

/* Find the `which`-th RTL8139 on PCI bus 0 (prints `guest: pci 00:NN.0
 * 10ec:8139 io=0x....`), enable its I/O BAR (assigning it if unassigned),
 * reset it, read the MAC, set up the receive ring and the four transmit
 * buffers, enable rx/tx and read the link. Prints one `guest: rtl8139 ...`
 * line. On failure returns false with nic.fail_reason set. */
bool rtl8139_open(struct rtl8139 *r, int which);
/* Just find it and enable its BAR (for measurements): io base, or 0. */
u16 rtl8139_probe_io(void);
#endif

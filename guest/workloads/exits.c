/* exits: measure the cost of the basic guest -> host transitions from ring 3
 * (informational; always status=ok). Useful to compare VMMs on PVM. With an
 * RTL8139 on PCI bus 0 it also times a read of its IDR0 register: under
 * Bulkhead that is a register access forwarded to the NIC's driver domain
 * and back (rtl8139_pio_ns). */
#include "lib.h"
#include "rtl8139.h"
#include "smp.h"
#include "timer.h"
#include "workload.h"
#include "x86.h"

#define N 2000

static u64 avg_ns(u64 cycles) { return cycles * 1000000 / tsc_khz() / N; }

static bool run(void)
{
    tsc_khz();
    u64 t0 = rdtsc();
    for (int i = 0; i < N; i++) kcall(KCALL_GETCPL, 0, 0);
    u64 kcall_ns = avg_ns(rdtsc() - t0);

    t0 = rdtsc();
    for (int i = 0; i < N; i++) (void)inb(0x3fd);        /* UART LSR: VMM userspace */
    u64 pio_ns = avg_ns(rdtsc() - t0);

    t0 = rdtsc();
    for (int i = 0; i < N; i++) (void)lapic_read(LAPIC_ID); /* in-kernel LAPIC MMIO */
    u64 lapic_ns = avg_ns(rdtsc() - t0);

    t0 = rdtsc();
    for (int i = 0; i < N; i++) outb(0x80, 0);             /* unclaimed port */
    u64 p80_ns = avg_ns(rdtsc() - t0);

    result_kv("kcall_ns=%lu uart_pio_ns=%lu lapic_mmio_ns=%lu port80_ns=%lu", kcall_ns, pio_ns,
              lapic_ns, p80_ns);

    /* After the others, so that the PCI scan (two exits per slot) does not
     * disturb them. */
    u16 io = rtl8139_probe_io();
    if (io) {
        u32 mac_lo = inl(io + RTL_IDR0);
        t0 = rdtsc();
        for (int i = 0; i < N; i++) (void)inl(io + RTL_IDR0);         /* IDR0-3 */
        u64 rtl_ns = avg_ns(rdtsc() - t0);
        printf("guest: exits: %d reads of the RTL8139's IDR0 (0x%x): %lu ns each\n", N, mac_lo, rtl_ns);
        result_kv("rtl8139_pio_ns=%lu", rtl_ns);
    }
    return true;
}

WORKLOAD("exits", run);

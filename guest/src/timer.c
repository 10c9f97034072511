/* TSC timing. rdtsc runs natively in ring 3 under PVM (guest TSC = host TSC). */
#include "timer.h"
#include "cmdline.h"
#include "lib.h"
#include "x86.h"

static u64 khz;
static const char *source = "none";

#define PIT_HZ 1193182UL
#define CALIBRATE_MS 50

/* Calibrate against a PIT channel in mode 2 (rate generator, reload 65536),
 * reading the counter back with the latch command. Port 0x61 (OUT2 status,
 * gate) is not relied on: QEMU microvm does not emulate it. Each port access
 * from ring 3 is a VM exit (~25-75 us); the TSC is sampled on both sides of
 * the latch write, so the error is about 2 exits over 50 ms (~0.2%). */
static void pit_latch(int ch, u16 *count, u64 *tsc)
{
    u64 a = rdtsc();
    outb(0x43, (u8)(ch << 6));                 /* counter latch command */
    u64 b = rdtsc();
    u8 lo = inb(0x40 + ch);
    u8 hi = inb(0x40 + ch);
    *count = (u16)(lo | (hi << 8));
    *tsc = a + (b - a) / 2;
}

static u64 calibrate_channel(int ch)
{
    const u64 want = PIT_HZ * CALIBRATE_MS / 1000;
    u16 prev, cur;
    u64 t0, t, ticks = 0;

    if (ch == 2)
        outb(0x61, (inb(0x61) & ~0x02) | 0x01);   /* gate on, speaker off */
    outb(0x43, (u8)((ch << 6) | 0x34));           /* lo/hi, mode 2, binary */
    outb(0x40 + ch, 0);
    outb(0x40 + ch, 0);                           /* reload 65536 */
    pit_latch(ch, &prev, &t0);
    t = t0;
    for (u32 i = 0; ticks < want; i++) {
        pit_latch(ch, &cur, &t);
        ticks += (u16)(prev - cur);
        prev = cur;
        if (ticks == 0 && i > 1000) return 0;     /* not counting */
        if (t - t0 > 50000000000UL) return 0;     /* absurd: give up */
    }
    return (t - t0) * PIT_HZ / ticks / 1000;
}

static u64 calibrate_pit(void)
{
    u64 k = calibrate_channel(2);
    if (!k) k = calibrate_channel(0);
    if (!k) {
        printf("guest: PIT calibration failed, assuming 2 GHz TSC\n");
        return 2000000;
    }
    return k;
}

u64 tsc_khz(void)
{
    if (!khz) {
        u64 v;
        if (cmdline_get_u64("tsc_khz", &v) && v) {
            khz = v;
            source = "cmdline";
        } else {
            khz = calibrate_pit();
            source = "pit";
        }
    }
    return khz;
}

const char *tsc_source(void) { tsc_khz(); return source; }
u64 tsc_to_us(u64 cycles) { return cycles * 1000 / tsc_khz(); }
u64 us_to_tsc(u64 us) { return us * tsc_khz() / 1000; }

void udelay(u64 us)
{
    u64 end = rdtsc() + us_to_tsc(us);
    while ((s64)(rdtsc() - end) < 0)
        cpu_relax();
}

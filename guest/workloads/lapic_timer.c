/* lapic-timer: arm the LAPIC timer (one-shot) and wait for its interrupt with
 * KCALL_WAIT_IRQ (sti; hlt in CPL0); exercises the interrupt path. */
#include "lib.h"
#include "smp.h"
#include "timer.h"
#include "workload.h"
#include "x86.h"

#define LAPIC_LVT_TIMER 0x320
#define LAPIC_TIMER_INIT 0x380
#define LAPIC_TIMER_DIV 0x3e0
#define TIMER_VECTOR 0x40
#define ROUNDS 5

static bool run(void)
{
    tsc_khz();
    lapic_enable();
    lapic_write(LAPIC_TIMER_DIV, 0xb);                /* divide by 1 */
    u64 total_us = 0;
    int got = 0;
    for (int i = 0; i < ROUNDS; i++) {
        u64 before = irq_count[TIMER_VECTOR];
        lapic_write(LAPIC_LVT_TIMER, TIMER_VECTOR);   /* one-shot, unmasked */
        u64 t0 = rdtsc();
        lapic_write(LAPIC_TIMER_INIT, 100000);
        for (int w = 0; w < 100 && irq_count[TIMER_VECTOR] == before; w++)
            kcall(KCALL_WAIT_IRQ, 0, 0);
        u64 dt = tsc_to_us(rdtsc() - t0);
        if (irq_count[TIMER_VECTOR] != before) { got++; total_us += dt; }
    }
    lapic_write(LAPIC_LVT_TIMER, 0x10000);            /* masked */
    result_kv("irqs=%d avg_us=%lu", got, got ? total_us / got : 0);
    return got == ROUNDS;
}

WORKLOAD("lapic-timer", run);

#ifndef BULKHEAD_SMP_H
#define BULKHEAD_SMP_H
#include "types.h"
#include "layout.h"
#include "kernel.h"

#define LAPIC_DEFAULT_BASE 0xfee00000UL
#define LAPIC_ID     0x020
#define LAPIC_EOI    0x0b0
#define LAPIC_SVR    0x0f0
#define LAPIC_ICR_LO 0x300
#define LAPIC_ICR_HI 0x310

struct percpu {
    u64 kstack_top;        /* PERCPU_KSTACK_TOP: CPL0 stack (also TSS.rsp0) */
    u64 ustack_top;        /* PERCPU_USTACK_TOP */
    u64 user_entry;        /* PERCPU_USER_ENTRY: void fn(struct percpu *) */
    u32 tss_sel;           /* PERCPU_TSS_SEL */
    volatile u32 started;  /* PERCPU_STARTED: set to 1 by ap_start64 (CPL0) */
    /* filled by ring-3 code */
    int index;
    u32 apic_id;           /* expected (from the MADT) */
    volatile u32 seen_apic_id;
    volatile u32 cpl;
    volatile u32 checked_in;
    volatile u64 result;
    volatile u64 checkin_tsc;
    struct tss64 *tss;
    void *arg;
};
_Static_assert(offsetof(struct percpu, kstack_top) == PERCPU_KSTACK_TOP, "percpu");
_Static_assert(offsetof(struct percpu, ustack_top) == PERCPU_USTACK_TOP, "percpu");
_Static_assert(offsetof(struct percpu, user_entry) == PERCPU_USER_ENTRY, "percpu");
_Static_assert(offsetof(struct percpu, tss_sel) == PERCPU_TSS_SEL, "percpu");
_Static_assert(offsetof(struct percpu, started) == PERCPU_STARTED, "percpu");

extern u64 lapic_base;
void lapic_set_base(u64 base);   /* e.g. from the MADT */
u32 lapic_read(u32 reg);
void lapic_write(u32 reg, u32 v);
u32 lapic_id(void);
void lapic_enable(void);

/* Start the AP with this APIC id (INIT-SIPI-SIPI) into ring-3 entry(pc).
 * Waits (bounded) until its CPL0 entry has picked up pc. */
bool smp_start_ap(struct percpu *pc, u32 apic_id, void (*entry)(struct percpu *));
/* Prepare per-CPU stacks/TSS for cpu index i (i >= 1). */
bool smp_prepare_cpu(struct percpu *pc, int index);
/* Broadcast INIT-SIPI-SIPI with a stub that only counts; returns the number
 * of CPUs that answered (not counting the BSP). */
int smp_count_by_sipi(void);
#endif

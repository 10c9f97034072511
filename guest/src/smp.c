/*
 * Local APIC access and AP start-up (ring 3 on the BSP).
 *
 * The BSP writes the ICR through the xAPIC MMIO page from ring 3 (each access
 * is a VM exit). An AP wakes up at AP_TRAMPOLINE_ADDR in real mode, goes to
 * protected mode (trampoline in entry.S), long mode (ap_start32), loads its
 * TSS and the IDT (ap_start64), and irets to ring 3 at percpu->user_entry.
 * APs are started one at a time: ap_boot_percpu tells the waking AP which
 * struct percpu is its own.
 */
#include "smp.h"
#include "lib.h"
#include "mem.h"
#include "timer.h"
#include "x86.h"

u64 lapic_base = LAPIC_DEFAULT_BASE;
u64 lapic_eoi_reg = LAPIC_DEFAULT_BASE + LAPIC_EOI;   /* used by the IRQ stubs */

void lapic_set_base(u64 base)
{
    lapic_base = base;
    lapic_eoi_reg = base + LAPIC_EOI;
}

extern char trampoline_start[], trampoline_end[];
extern char counter_stub_start[], counter_stub_end[], counter_stub_count[];

u32 lapic_read(u32 reg) { return mmio_read32(lapic_base + reg); }
void lapic_write(u32 reg, u32 v) { mmio_write32(lapic_base + reg, v); }
u32 lapic_id(void) { return lapic_read(LAPIC_ID) >> 24; }

void lapic_enable(void)
{
    lapic_write(LAPIC_SVR, 0x100 | 0xff);   /* software enable, spurious vector 0xff */
}

static void icr_wait_idle(void)
{
    for (int i = 0; i < 1000; i++)
        if (!(lapic_read(LAPIC_ICR_LO) & (1 << 12)))   /* delivery status */
            return;
}

static void send_ipi(u32 apic_id, u32 lo)
{
    lapic_write(LAPIC_ICR_HI, apic_id << 24);
    lapic_write(LAPIC_ICR_LO, lo);
    icr_wait_idle();
}

#define ICR_INIT        0x00000500
#define ICR_STARTUP     0x00000600
#define ICR_ASSERT      0x00004000
#define ICR_ALL_BUT_SELF 0x000c0000

bool smp_prepare_cpu(struct percpu *pc, int index)
{
    if (index <= 0 || index >= MAX_CPUS) return false;
    u8 *kstack = mem_alloc(AP_KSTACK_SIZE, 4096);
    u8 *ustack = mem_alloc(AP_USTACK_SIZE, 4096);
    struct tss64 *tss = mem_alloc(sizeof(struct tss64), 128);
    if (!kstack || !ustack || !tss) return false;
    pc->index = index;
    pc->kstack_top = (u64)kstack + AP_KSTACK_SIZE;
    pc->ustack_top = (u64)ustack + AP_USTACK_SIZE - 8;   /* as if called */
    pc->tss = tss;
    tss_setup(tss, index, pc->kstack_top);
    pc->tss_sel = tss_selector(index);
    return true;
}

bool smp_start_ap(struct percpu *pc, u32 apic_id, void (*entry)(struct percpu *))
{
    static bool trampoline_copied;
    if (!trampoline_copied) {
        memcpy((void *)AP_TRAMPOLINE_ADDR, trampoline_start,
               (size_t)(trampoline_end - trampoline_start));
        trampoline_copied = true;
    }
    pc->user_entry = (u64)entry;
    pc->started = 0;
    __atomic_store_n(&ap_boot_percpu, (u64)pc, __ATOMIC_SEQ_CST);

    send_ipi(apic_id, ICR_INIT | ICR_ASSERT);
    udelay(10000);
    for (int i = 0; i < 2 && !pc->started; i++) {
        send_ipi(apic_id, ICR_STARTUP | ICR_ASSERT | (AP_TRAMPOLINE_ADDR >> 12));
        udelay(200);
    }
    u64 deadline = rdtsc() + us_to_tsc(1000000);
    while (!__atomic_load_n(&pc->started, __ATOMIC_ACQUIRE) && (s64)(rdtsc() - deadline) < 0)
        cpu_relax();
    __atomic_store_n(&ap_boot_percpu, 0, __ATOMIC_SEQ_CST);
    return pc->started != 0;
}

int smp_count_by_sipi(void)
{
    size_t off = (size_t)(counter_stub_count - counter_stub_start);
    memcpy((void *)AP_COUNTER_ADDR, counter_stub_start,
           (size_t)(counter_stub_end - counter_stub_start));
    volatile u16 *count = (volatile u16 *)(AP_COUNTER_ADDR + off);
    *count = 0;
    send_ipi(0, ICR_ALL_BUT_SELF | ICR_INIT | ICR_ASSERT);
    udelay(10000);
    send_ipi(0, ICR_ALL_BUT_SELF | ICR_STARTUP | ICR_ASSERT | (AP_COUNTER_ADDR >> 12));
    udelay(200);
    send_ipi(0, ICR_ALL_BUT_SELF | ICR_STARTUP | ICR_ASSERT | (AP_COUNTER_ADDR >> 12));
    udelay(100000);
    return *count;
}

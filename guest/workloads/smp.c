/* smp: start every AP listed in the MADT, have each check in from ring 3. */
#include "acpi.h"
#include "bootinfo.h"
#include "lib.h"
#include "smp.h"
#include "timer.h"
#include "workload.h"
#include "x86.h"

#define PRIME_LIMIT 20000
#define PRIME_COUNT 2262           /* primes below 20000 */
#define CHECKIN_TIMEOUT_US 3000000

static struct percpu cpus[MAX_CPUS];
static volatile u32 checkin_count;

/* Small ring-3 computation: count primes below PRIME_LIMIT by trial division. */
static u64 count_primes(void)
{
    u64 n = 0;
    for (u32 i = 2; i < PRIME_LIMIT; i++) {
        bool prime = true;
        for (u32 d = 2; d * d <= i; d++)
            if (i % d == 0) { prime = false; break; }
        n += prime;
    }
    return n;
}

static void checkin(struct percpu *pc)
{
    pc->seen_apic_id = lapic_id();
    pc->cpl = (u32)kcall(KCALL_GETCPL, 0, 0);
    pc->result = count_primes();
    pc->checkin_tsc = rdtsc();
    __atomic_fetch_add(&checkin_count, 1, __ATOMIC_SEQ_CST);
    __atomic_store_n(&pc->checked_in, 1, __ATOMIC_RELEASE);
}

static void NORETURN ap_main(struct percpu *pc)
{
    checkin(pc);
    for (;;) kcall(KCALL_HALT, 0, 0);
}

static bool run(void)
{
    struct cpu_list list;
    u64 rsdp = acpi_find_rsdp(boot.rsdp_paddr);
    if (!rsdp || !acpi_cpus(rsdp, &list)) {
        result_kv("vcpus=0 checked_in=0 reason=no-madt");
        return false;
    }
    u64 khz = tsc_khz();
    printf("guest: tsc_khz=%lu (%s), lapic at 0x%lx\n", khz, tsc_source(), list.lapic_base);

    lapic_set_base(list.lapic_base);
    lapic_enable();
    u32 bsp_id = lapic_id();
    int n = list.count < MAX_CPUS ? list.count : MAX_CPUS;

    u64 t0 = rdtsc();
    cpus[0].index = 0;
    cpus[0].apic_id = bsp_id;
    checkin(&cpus[0]);

    int ncpu = 1;
    for (int i = 0; i < n; i++) {
        u32 id = list.apic_id[i];
        if (id == bsp_id) continue;
        struct percpu *pc = &cpus[ncpu];
        pc->apic_id = id;
        if (!smp_prepare_cpu(pc, ncpu)) {
            printf("guest: cannot allocate stacks for cpu %d\n", ncpu);
            break;
        }
        if (!smp_start_ap(pc, id, ap_main))
            printf("guest: cpu %d (apic id %u) did not start\n", ncpu, id);
        ncpu++;
    }

    u64 deadline = rdtsc() + us_to_tsc(CHECKIN_TIMEOUT_US);
    while (__atomic_load_n(&checkin_count, __ATOMIC_ACQUIRE) < (u32)list.count &&
           (s64)(rdtsc() - deadline) < 0)
        cpu_relax();

    bool ok = (int)checkin_count == list.count;
    for (int i = 0; i < ncpu; i++) {
        struct percpu *pc = &cpus[i];
        bool good = pc->checked_in && pc->seen_apic_id == pc->apic_id && pc->cpl == 3 &&
                    pc->result == PRIME_COUNT;
        ok = ok && good;
        printf("guest: cpu %d apic_id=%u checked_in=%u seen_apic_id=%u cpl=%u primes=%lu "
               "checkin_us=%lu %s\n",
               i, pc->apic_id, pc->checked_in, pc->seen_apic_id, pc->cpl, pc->result,
               pc->checked_in ? tsc_to_us(pc->checkin_tsc - t0) : 0, good ? "ok" : "BAD");
    }
    result_kv("vcpus=%d", list.count);
    result_kv("checked_in=%u", checkin_count);
    return ok;
}

WORKLOAD("smp", run);

/* hello: report the CPU count (ACPI MADT, else INIT-SIPI-SIPI census) and the
 * memory size (sum of the RAM entries of the PVH memmap, rounded up to MiB: the
 * sub-MiB holes below 1 MiB round away, and a split around the MMIO hole adds up). */
#include "acpi.h"
#include "bootinfo.h"
#include "lib.h"
#include "smp.h"
#include "workload.h"
#include "x86.h"

static bool run(void)
{
    struct cpu_list cpus;
    int n;
    const char *src;
    u64 rsdp = acpi_find_rsdp(boot.rsdp_paddr);

    if (rsdp && acpi_cpus(rsdp, &cpus)) {
        n = cpus.count;
        src = "acpi-madt";
    } else {
        n = 1 + smp_count_by_sipi();
        src = "init-sipi";
    }
    u64 mib = (boot.ram_total + (1UL << 20) - 1) >> 20;
    printf("guest: hello from ring %lu, rsdp=0x%lx cpus-from=%s memmap-entries=%u\n",
           kcall(KCALL_GETCPL, 0, 0), rsdp, src, boot.memmap_entries);
    result_kv("vcpus=%d", n);
    result_kv("mem_mib=%lu", mib);
    return n > 0 && mib > 0;
}

WORKLOAD("hello", run);

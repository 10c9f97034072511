#ifndef BULKHEAD_ACPI_H
#define BULKHEAD_ACPI_H
#include "types.h"
#include "layout.h"

struct cpu_list {
    int count;                 /* enabled LAPIC / x2APIC entries */
    u32 apic_id[MAX_CPUS];     /* first MAX_CPUS of them */
    u64 lapic_base;            /* from the MADT (default 0xfee00000) */
};

/* Find the RSDP: hint (hvm_start_info.rsdp_paddr) first, else scan the BIOS
 * area 0xE0000-0xFFFFF. Returns 0 if there is none. */
u64 acpi_find_rsdp(u64 hint);
/* Find a table by signature through the XSDT (or RSDT). NULL if none. */
const void *acpi_find_table(u64 rsdp, const char sig[4]);
/* Parse the MADT. Returns false if there is no MADT. */
bool acpi_cpus(u64 rsdp, struct cpu_list *out);
#endif

/* PVH start info parsing (ring 3). */
#include "bootinfo.h"
#include "lib.h"

struct boot_info boot;

bool bootinfo_init(u64 start_info_paddr)
{
    const struct hvm_start_info *si = (const struct hvm_start_info *)start_info_paddr;
    boot.cmdline = "";
    if (!si || si->magic != HVM_START_MAGIC) {
        printf("guest: bad hvm_start_info at 0x%lx (magic 0x%x)\n", start_info_paddr,
               si ? si->magic : 0);
        return false;
    }
    boot.si = si;
    if (si->cmdline_paddr) boot.cmdline = (const char *)si->cmdline_paddr;
    boot.rsdp_paddr = si->rsdp_paddr;
    if (si->version >= 1 && si->memmap_paddr && si->memmap_entries) {
        boot.memmap = (const struct hvm_memmap_table_entry *)si->memmap_paddr;
        boot.memmap_entries = si->memmap_entries;
    }
    for (u32 i = 0; i < boot.memmap_entries; i++) {
        const struct hvm_memmap_table_entry *e = &boot.memmap[i];
        if (e->type != HVM_MEMMAP_TYPE_RAM) continue;
        if (e->addr + e->size > boot.ram_end) boot.ram_end = e->addr + e->size;
        boot.ram_total += e->size;
    }
    return true;
}

/* PVH boot information (xen/include/public/arch-x86/hvm/start_info.h). */
#ifndef BULKHEAD_BOOTINFO_H
#define BULKHEAD_BOOTINFO_H
#include "types.h"

#define HVM_START_MAGIC 0x336ec578

struct hvm_start_info {
    u32 magic;
    u32 version;
    u32 flags;
    u32 nr_modules;
    u64 modlist_paddr;
    u64 cmdline_paddr;
    u64 rsdp_paddr;
    /* version >= 1 */
    u64 memmap_paddr;
    u32 memmap_entries;
    u32 reserved;
} PACKED;

#define HVM_MEMMAP_TYPE_RAM 1
struct hvm_memmap_table_entry {
    u64 addr;
    u64 size;
    u32 type;
    u32 reserved;
} PACKED;

/* Filled by bootinfo_init() (ring 3). */
struct boot_info {
    const struct hvm_start_info *si;
    const char *cmdline;                 /* never NULL ("" if none) */
    u64 rsdp_paddr;                      /* 0 if not given */
    const struct hvm_memmap_table_entry *memmap;
    u32 memmap_entries;
    u64 ram_end;                         /* end of the highest RAM entry */
    u64 ram_total;                       /* sum of the RAM entries */
};

extern struct boot_info boot;
/* Returns false (after printing why) if the start info is unusable. */
bool bootinfo_init(u64 start_info_paddr);

/* Linker symbols */
extern char __image_start[], __image_end[], __bss_start[], __bss_end[];
#endif

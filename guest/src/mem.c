/* Bump allocator over RAM above the image (ring 3). */
#include "mem.h"
#include "bootinfo.h"
#include "lib.h"

static u64 next, limit;

static void mem_init(void)
{
    next = ALIGN_UP((u64)__image_end, 4096);
    limit = 0;
    /* The RAM entry that contains the image end; stay below 4 GiB (mapped). */
    for (u32 i = 0; i < boot.memmap_entries; i++) {
        const struct hvm_memmap_table_entry *e = &boot.memmap[i];
        if (e->type == HVM_MEMMAP_TYPE_RAM && e->addr <= next && next < e->addr + e->size)
            limit = e->addr + e->size;
    }
    if (!limit) limit = next + (16UL << 20);   /* no memmap: assume 16 MiB */
    if (limit > (4UL << 30)) limit = 4UL << 30;
}

void *mem_alloc(size_t size, size_t align)
{
    if (!next) mem_init();
    if (align < 16) align = 16;
    u64 p = ALIGN_UP(next, align);
    if (p + size > limit || p + size < p) return NULL;
    next = p + size;
    memset((void *)p, 0, size);
    return (void *)p;
}

u64 mem_free_bytes(void)
{
    if (!next) mem_init();
    return limit - next;
}

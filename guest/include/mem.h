#ifndef BULKHEAD_MEM_H
#define BULKHEAD_MEM_H
#include "types.h"

/* Bump allocator over the RAM above the guest image (identity mapped, user
 * accessible). Memory is returned zeroed; there is no free. Returns NULL when
 * out of memory. Ring 3 only. */
void *mem_alloc(size_t size, size_t align);
u64 mem_free_bytes(void);
#endif

#ifndef BULKHEAD_CMDLINE_H
#define BULKHEAD_CMDLINE_H
#include "types.h"

/* The command line is a list of space-separated key=value (or bare key) words. */
void cmdline_init(const char *cmdline);
/* Copy the value of the first `key` into buf (NUL-terminated); false if absent. */
bool cmdline_get(const char *key, char *buf, size_t size);
/* Value of the first `key` as a number (decimal/0x-hex, K/M/G suffix ok). */
bool cmdline_get_u64(const char *key, u64 *out);
/* Iterate over every occurrence of `key`: pass *pos = 0 first; returns a
 * pointer to the value (not NUL-terminated) and its length, NULL at the end. */
const char *cmdline_next(const char *key, size_t *pos, size_t *len);

/* virtio_mmio.device=<size>@<base>:<irq> (Linux/QEMU microvm convention) */
struct virtio_mmio_desc {
    u64 base;
    u64 size;
    u32 irq;
};
/* Fills up to max descriptors in command-line order; returns how many. */
int cmdline_virtio_mmio_devices(struct virtio_mmio_desc *out, int max);
#endif

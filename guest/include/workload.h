/* Workload registry. A workload is a function run in ring 3 on the BSP.
 * It returns true for status=ok and appends key=value pairs with result_kv().
 * To add one: create workloads/<name>.c containing
 *     static bool run(void) { ...; result_kv("key=%d", v); return true; }
 *     WORKLOAD("name", run);
 * The Makefile picks up every .c file in workloads/ automatically. */
#ifndef BULKHEAD_WORKLOAD_H
#define BULKHEAD_WORKLOAD_H
#include "types.h"

struct workload {
    const char *name;
    bool (*run)(void);
};

#define WORKLOAD(name_, fn_) \
    static const struct workload __workload_##fn_ \
    __attribute__((used, section(".workloads"), aligned(8))) = { name_, fn_ }

/* Append " key=value..." to the result line. */
void result_kv(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
#endif

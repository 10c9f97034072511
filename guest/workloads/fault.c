/* fault: deliberately take a page fault in ring 3 to exercise the trap path
 * (expected: a trap line, a status=fail result line, debug-exit code 3). */
#include "lib.h"
#include "workload.h"

static bool run(void)
{
    printf("guest: reading unmapped address 0x400000000000\n");
    volatile u64 *p = (volatile u64 *)0x0000400000000000UL;
    return *p == 0x1234;
}

WORKLOAD("fault", run);

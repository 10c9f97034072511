/* Ring-3 main on the BSP: boot info, console, command line, run a workload,
 * print the BULKHEAD-RESULT line, exit through the debug-exit port. */
#include "bootinfo.h"
#include "cmdline.h"
#include "kernel.h"
#include "lib.h"
#include "uart.h"
#include "workload.h"
#include "x86.h"

extern const struct workload __workloads_start[], __workloads_end[];

static char result_buf[1024];
static size_t result_len;

void result_kv(const char *fmt, ...)
{
    va_list ap;
    if (result_len + 2 >= sizeof(result_buf)) return;
    result_buf[result_len++] = ' ';
    va_start(ap, fmt);
    int n = vsnprintf(result_buf + result_len, sizeof(result_buf) - result_len, fmt, ap);
    va_end(ap);
    result_len += n;
    if (result_len >= sizeof(result_buf)) result_len = sizeof(result_buf) - 1;
}

static void NORETURN finish(const char *name, bool ok)
{
    printf("BULKHEAD-RESULT %s status=%s%s\n", name, ok ? "ok" : "fail", result_buf);
    guest_exit(ok ? 0 : 1);
}

extern u64 boot_entry_tsc;

void NORETURN user_main(u64 start_info_paddr)
{
    u64 ring3_tsc = rdtsc();
    uart_init();
    bool have_info = bootinfo_init(start_info_paddr);
    cmdline_init(boot.cmdline);

    char name[64] = "hello";
    cmdline_get("workload", name, sizeof(name));
    current_workload = name;
    printf("guest: bulkhead test guest, cmdline \"%s\"\n", boot.cmdline);
    if (have_info && cmdline_get("verbose", NULL, 0)) {
        printf("guest: start_info=0x%lx version=%u rsdp=0x%lx memmap=0x%lx entries=%u\n",
               start_info_paddr, boot.si->version, boot.rsdp_paddr, (u64)boot.memmap,
               boot.memmap_entries);
        for (u32 i = 0; i < boot.memmap_entries; i++)
            printf("guest: memmap[%u] 0x%lx-0x%lx type %u\n", i, boot.memmap[i].addr,
                   boot.memmap[i].addr + boot.memmap[i].size, boot.memmap[i].type);
        printf("guest: image 0x%lx-0x%lx\n", (u64)__image_start, (u64)__image_end);
        printf("guest: CPL0 boot (pvh entry -> ring 3) took %lu TSC cycles\n",
               ring3_tsc - boot_entry_tsc);
    }
    if (!have_info) {
        result_kv("reason=bad-start-info");
        finish(name, false);
    }

    for (const struct workload *w = __workloads_start; w < __workloads_end; w++) {
        if (strcmp(w->name, name) == 0)
            finish(name, w->run());
    }
    result_kv("reason=unknown-workload");
    finish(name, false);
}

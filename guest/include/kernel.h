#ifndef BULKHEAD_KERNEL_H
#define BULKHEAD_KERNEL_H
#include "types.h"
#include "layout.h"

/* Saved state on a trap (built by isr_common in entry.S). */
struct trap_frame {
    u64 r15, r14, r13, r12, r11, r10, r9, r8;
    u64 rbp, rdi, rsi, rdx, rcx, rbx, rax;
    u64 vector, error;
    u64 rip, cs, rflags, rsp, ss;
};

struct tss64 {
    u32 reserved0;
    u64 rsp0, rsp1, rsp2;
    u64 reserved1;
    u64 ist[7];
    u64 reserved2;
    u16 reserved3;
    u16 iomap_base;
    u8 iopb[8192];      /* all zero: every port allowed from ring 3 */
    u8 iopb_end;        /* must be 0xff */
} PACKED;

extern u8 gdt[GDT_BYTES];
extern u64 ap_boot_percpu;     /* read by ap_start64 */

/* Ring 3: initialise a TSS (all ports allowed) and its GDT slot for cpu. */
void tss_setup(struct tss64 *tss, int cpu, u64 rsp0);
u16 tss_selector(int cpu);

/* Interrupt counters: vectors 32..254 are acknowledged (LAPIC EOI, write to
 * *lapic_eoi_reg) by a tiny CPL0 stub and counted here; ring 3 polls them. */
extern volatile u64 irq_count[256];
extern u64 lapic_eoi_reg;

/* Name printed in the fail line if a trap kills the guest. */
extern const char *current_workload;

/* entry.S */
void NORETURN enter_user(u64 rip, u64 rsp, u64 arg);
extern char isr_stubs[];
#endif

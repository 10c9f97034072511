/* Fixed layout constants shared by assembly and C. */
#ifndef BULKHEAD_LAYOUT_H
#define BULKHEAD_LAYOUT_H

/* GDT selectors */
#define KERNEL_CS64   0x08
#define KERNEL_DS     0x10
#define KERNEL_CS32   0x18
#define USER_DS       0x23   /* GDT slot 0x20, RPL 3 */
#define USER_CS64     0x2b   /* GDT slot 0x28, RPL 3 */
#define TSS_SEL_BASE  0x30   /* TSS of cpu i: TSS_SEL_BASE + 16 * i */

#define MAX_CPUS      64
#define GDT_BYTES     (TSS_SEL_BASE + 16 * MAX_CPUS)

/* Trap stubs (32 bytes per vector) at a fixed address: the IDT is static. */
#define ISR_BASE      0x100000

/* Low-memory pages used by the guest (copied there from ring 3 at run time). */
#define AP_TRAMPOLINE_ADDR   0x8000  /* SIPI vector 0x08 */
#define AP_COUNTER_ADDR      0x9000  /* SIPI vector 0x09: "count CPUs" stub */

/* Stack sizes */
#define BSP_KSTACK_SIZE  0x4000
#define BSP_USTACK_SIZE  0x40000
#define AP_KSTACK_SIZE   0x4000
#define AP_USTACK_SIZE   0x10000

/* struct percpu field offsets (checked with _Static_assert in smp.h) */
#define PERCPU_KSTACK_TOP  0
#define PERCPU_USTACK_TOP  8
#define PERCPU_USER_ENTRY  16
#define PERCPU_TSS_SEL     24
#define PERCPU_STARTED     28

/* Ring-3 -> kernel calls: `int3` with the call number in %rax. */
#define KCALL_GETCPL    0   /* returns CPL of the caller, read from the trap frame */
#define KCALL_HALT      1   /* cli; hlt forever */
#define KCALL_WAIT_IRQ  2   /* sti; hlt; cli -- returns after one interrupt */
#define KCALL_RDMSR     3   /* rdi = msr; returns value */
#define KCALL_WRMSR     4   /* rdi = msr, rsi = value */

#endif

/*
 * CPL0 part of the guest: TSS/IDT setup, trap and interrupt handling, the
 * int3 "kcall" interface, then the drop to ring 3.
 *
 * Under PVM every CPL0 instruction is emulated (~1.5M instructions/s) and
 * some are missing (int3 in CPL0, popcnt, xrstor, cmpxchg16b): keep this file
 * small and simple. Real work happens in ring 3 (main.c and the workloads).
 */
#include "kernel.h"
#include "lib.h"
#include "x86.h"

static struct tss64 bsp_tss __attribute__((aligned(64)));
extern char bsp_kstack_top[], bsp_ustack_top[];
extern u8 idt_desc[];

volatile u64 irq_count[256];
const char *current_workload = "boot";

void user_main(u64 start_info_paddr);   /* main.c, ring 3 */

u16 tss_selector(int cpu) { return (u16)(TSS_SEL_BASE + 16 * cpu); }

void tss_setup(struct tss64 *tss, int cpu, u64 rsp0)
{
    u64 base = (u64)tss;
    u64 limit = sizeof(*tss) - 1;
    u64 *d = (u64 *)(gdt + tss_selector(cpu));

    tss->rsp0 = rsp0;
    tss->iomap_base = (u16)offsetof(struct tss64, iopb);
    tss->iopb_end = 0xff;   /* the bitmap itself is zero: all ports allowed */
    d[0] = (limit & 0xffff) | ((base & 0xffffff) << 16) | (0x89UL << 40) |
           (((limit >> 16) & 0xf) << 48) | (((base >> 24) & 0xff) << 56);
    d[1] = base >> 32;
}

/* Called from bsp_start64 on the BSP kernel stack. bss is already zero
 * (the ELF loader zero-fills p_memsz beyond p_filesz). The IDT and the page
 * tables are static data (entry.S), so this is a few dozen instructions. */
void NORETURN kernel_main(u64 start_info_paddr)
{
    tss_setup(&bsp_tss, 0, (u64)bsp_kstack_top);
    __asm__ volatile("ltr %w0" :: "r"(tss_selector(0)));
    __asm__ volatile("lidt (%0)" :: "r"(idt_desc) : "memory");
    enter_user((u64)user_main, (u64)bsp_ustack_top - 8 /* as if called */, start_info_paddr);
}

void cpu_wait_irq(void);
void NORETURN cpu_halt_forever(void);

static const char *const exc_names[32] = {
    "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "CSO", "#TS",
    "#NP", "#SS", "#GP", "#PF", "res15", "#MF", "#AC", "#MC", "#XM", "#VE", "#CP",
};

static void NORETURN fatal_trap(struct trap_frame *f)
{
    u64 cr2;
    const char *name = f->vector < 32 && exc_names[f->vector] ? exc_names[f->vector] : "exception";
    __asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
    console_printf_unlocked("guest: trap %s vector=%lu error=0x%lx rip=0x%lx cs=0x%lx "
                            "rflags=0x%lx rsp=0x%lx cr2=0x%lx rax=0x%lx\n",
                            name, f->vector, f->error, f->rip, f->cs, f->rflags, f->rsp, cr2,
                            f->rax);
    console_printf_unlocked("BULKHEAD-RESULT %s status=fail reason=trap vector=%lu "
                            "error=0x%lx rip=0x%lx cr2=0x%lx\n",
                            current_workload, f->vector, f->error, f->rip, cr2);
    outb(0x501, 3);
    cpu_halt_forever();
}

static void kcall_dispatch(struct trap_frame *f)
{
    switch (f->rax) {
    case KCALL_GETCPL:
        f->rax = f->cs & 3;
        break;
    case KCALL_HALT:
        cpu_halt_forever();
    case KCALL_WAIT_IRQ:
        cpu_wait_irq();
        f->rax = 0;
        break;
    case KCALL_RDMSR: {
        u32 lo, hi;
        __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"((u32)f->rdi));
        f->rax = ((u64)hi << 32) | lo;
        break;
    }
    case KCALL_WRMSR:
        __asm__ volatile("wrmsr" :: "c"((u32)f->rdi), "a"((u32)f->rsi), "d"((u32)(f->rsi >> 32)));
        f->rax = 0;
        break;
    default:
        f->rax = (u64)-1;
        break;
    }
}

void trap_dispatch(struct trap_frame *f)
{
    if (f->vector == 3 && (f->cs & 3) == 3) {
        kcall_dispatch(f);
        return;
    }
    fatal_trap(f);
}

/*
 * PVH entry, 32 -> 64-bit switch, AP trampoline, trap stubs, ring-3 entry.
 *
 * Everything here runs in CPL0, which PVM emulates one instruction at a time:
 * keep it short and loop-free. Page tables are static data (2 MiB pages).
 */
#include "layout.h"

/* ---------------------------------------------------------------- PVH note */
    .section .note.Xen, "a", @note
    .balign 4
    .long 4                     /* namesz: "Xen\0" */
    .long 8                     /* descsz */
    .long 18                    /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .balign 4
    .quad pvh_start32           /* 32-bit entry (physical) */
    .balign 4

/* Switch a CPU in 32-bit protected mode (flat segments) to long mode. */
.macro ENABLE_LONG_MODE
    movl %cr4, %eax
    orl $0x20, %eax             /* CR4.PAE */
    movl %eax, %cr4
    movl $pml4, %eax
    movl %eax, %cr3
    movl $0xc0000080, %ecx      /* EFER */
    rdmsr
    orl $0x100, %eax            /* EFER.LME */
    wrmsr
    movl %cr0, %eax
    orl $0x80000001, %eax       /* CR0.PG | CR0.PE */
    movl %eax, %cr0
.endm

    .section .text.entry, "ax"
    .code32
/* PVH: 32-bit protected mode, paging off, %ebx = struct hvm_start_info. */
    .globl pvh_start32
pvh_start32:
    cli
    cld
    movl %ebx, boot_start_info
    rdtsc
    movl %eax, boot_entry_tsc
    movl %edx, boot_entry_tsc + 4
    lgdtl gdt_desc
    ljmpl $KERNEL_CS32, $1f
1:  movl $KERNEL_DS, %eax
    movl %eax, %ds
    movl %eax, %es
    movl %eax, %ss
    movl %eax, %fs
    movl %eax, %gs
    ENABLE_LONG_MODE
    ljmpl $KERNEL_CS64, $bsp_start64

/* APs arrive here from the real-mode trampoline (protected mode, GDT loaded). */
    .globl ap_start32
ap_start32:
    movl $KERNEL_DS, %eax
    movl %eax, %ds
    movl %eax, %es
    movl %eax, %ss
    movl %eax, %fs
    movl %eax, %gs
    ENABLE_LONG_MODE
    ljmpl $KERNEL_CS64, $ap_start64

    .code64
bsp_start64:
    movl $KERNEL_DS, %eax
    movl %eax, %ds
    movl %eax, %es
    movl %eax, %ss
    xorl %eax, %eax
    movl %eax, %fs
    movl %eax, %gs
    movq $bsp_kstack_top, %rsp
    xorl %ebp, %ebp
    movl boot_start_info(%rip), %edi
    call kernel_main            /* does not return */
1:  cli
    hlt
    jmp 1b

ap_start64:
    movl $KERNEL_DS, %eax
    movl %eax, %ds
    movl %eax, %es
    movl %eax, %ss
    xorl %eax, %eax
    movl %eax, %fs
    movl %eax, %gs
    movq ap_boot_percpu(%rip), %rbx
    testq %rbx, %rbx
    jz 2f
    movq PERCPU_KSTACK_TOP(%rbx), %rsp
    movl PERCPU_TSS_SEL(%rbx), %eax
    ltr %ax
    lidt idt_desc(%rip)
    movq PERCPU_USER_ENTRY(%rbx), %rdi
    movq PERCPU_USTACK_TOP(%rbx), %rsi
    movq %rbx, %rdx
    movl $1, PERCPU_STARTED(%rbx)
    jmp enter_user
2:  cli
    hlt
    jmp 2b

/* void enter_user(u64 rip, u64 rsp, u64 arg): iretq to ring 3, IF=0. */
    .globl enter_user
enter_user:
    pushq $USER_DS
    pushq %rsi
    pushq $0x2
    pushq $USER_CS64
    pushq %rdi
    movq %rdx, %rdi
    movl $USER_DS, %eax
    movl %eax, %ds
    movl %eax, %es
    xorl %eax, %eax
    xorl %ebx, %ebx
    xorl %ecx, %ecx
    xorl %edx, %edx
    xorl %esi, %esi
    xorl %ebp, %ebp
    xorl %r8d, %r8d
    xorl %r9d, %r9d
    xorl %r10d, %r10d
    xorl %r11d, %r11d
    iretq

/* ------------------------------------------------------------- trap stubs */
/* The stubs live at the fixed address ISR_BASE (linker.ld asserts it) so
 * that the IDT can be static data: no CPL0 loop fills it at boot. */
    .section .text.isr, "ax"
/* One 32-byte stub per vector: handler(v) = isr_stubs + 32 * v.
 * Exceptions (0-31) and the int3 kcall gate go through isr_common and C.
 * Interrupts (32-254) take a fast path that stays a handful of instructions
 * (CPL0 is emulated): count the vector in irq_count[v], EOI the LAPIC, iretq.
 * Ring 3 polls irq_count. Vector 255 (LAPIC spurious) needs no EOI. */
    .balign 32
    .globl isr_stubs
isr_stubs:
    vec = 0
    .rept 256
    .balign 32
    .if vec < 32
    .if (vec == 8) || (vec == 10) || (vec == 11) || (vec == 12) || (vec == 13) || (vec == 14) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
    .else
    pushq $0
    .endif
    pushq $vec
    jmp isr_common
    .elseif vec < 255
    lock incq irq_count + 8 * vec(%rip)
    pushq %rax
    movq lapic_eoi_reg(%rip), %rax
    movl $0, (%rax)
    popq %rax
    iretq
    .else
    iretq
    .endif
    vec = vec + 1
    .endr
    .balign 32

    .section .text.entry, "ax"
isr_common:
    pushq %rax
    pushq %rbx
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %rbp
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, %rdi
    call trap_dispatch
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rbp
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rbx
    popq %rax
    addq $16, %rsp
    iretq

/* Used by trap_dispatch for KCALL_WAIT_IRQ: enable interrupts, wait for one. */
    .globl cpu_wait_irq
cpu_wait_irq:
    sti
    hlt
    cli
    ret

    .globl cpu_halt_forever
cpu_halt_forever:
    cli
    hlt
    jmp cpu_halt_forever

/* ------------------------------------------------- AP real-mode trampoline */
/* Position independent 16-bit code, copied to AP_TRAMPOLINE_ADDR by ring 3.
 * CS = AP_TRAMPOLINE_ADDR >> 4, IP = 0. */
    .section .rodata.trampoline, "a"
    .code16
    .globl trampoline_start, trampoline_end
trampoline_start:
    cli
    cld
    movw %cs, %ax
    movw %ax, %ds
    lgdtl (tramp_gdtr - trampoline_start)
    movl %cr0, %eax
    orl $1, %eax
    movl %eax, %cr0
    ljmpl $KERNEL_CS32, $ap_start32
    .balign 8
tramp_gdtr:
    .word GDT_BYTES - 1
    .long gdt
trampoline_end:

/* Counting stub (copied to AP_COUNTER_ADDR): used to count CPUs when the
 * firmware has no ACPI tables. Each AP increments the counter and halts. */
    .globl counter_stub_start, counter_stub_end, counter_stub_count
counter_stub_start:
    cli
    lock incw %cs:(counter_stub_count - counter_stub_start)
1:  hlt
    jmp 1b
    .balign 4
counter_stub_count:
    .word 0
counter_stub_end:
    .code64

/* ------------------------------------------------------------------- data */
    .section .data
    .balign 16
    .globl gdt
gdt:
    .quad 0                         /* 0x00 null */
    .quad 0x00af9a000000ffff        /* 0x08 kernel code, 64-bit */
    .quad 0x00cf92000000ffff        /* 0x10 kernel data */
    .quad 0x00cf9a000000ffff        /* 0x18 kernel code, 32-bit */
    .quad 0x00cff2000000ffff        /* 0x20 user data (DPL 3) */
    .quad 0x00affa000000ffff        /* 0x28 user code, 64-bit (DPL 3) */
    .fill (GDT_BYTES - TSS_SEL_BASE), 1, 0   /* TSS descriptors, 16 bytes each */

    .balign 16
    .globl gdt_desc
gdt_desc:
    .word GDT_BYTES - 1
    .quad gdt

    .balign 16
    .globl idt_desc
idt_desc:
    .word 256 * 16 - 1
    .quad idt

    .balign 8
    .globl boot_start_info
boot_start_info:
    .quad 0
    .globl ap_boot_percpu
ap_boot_percpu:
    .quad 0
    .globl boot_entry_tsc
boot_entry_tsc:                     /* TSC at pvh_start32 (for boot timing) */
    .quad 0

/* Static IDT: interrupt gates (DPL 0) to isr_stubs + 32 * v, except vector 3
 * (int3), which has DPL 3: the ring-3 -> kernel call gate. */
    .section .data
    .balign 4096
    .globl idt
idt:
    vec = 0
    .rept 256
    .word (ISR_BASE + 32 * vec) & 0xffff
    .word KERNEL_CS64
    .byte 0
    .if vec == 3
    .byte 0xee
    .else
    .byte 0x8e
    .endif
    .word ((ISR_BASE + 32 * vec) >> 16) & 0xffff
    .long 0
    .long 0
    vec = vec + 1
    .endr

/* Identity map of the first 4 GiB with 2 MiB pages, user accessible.
 * 0xC0000000-0xFFFFFFFF (MMIO: virtio at 0xd0000000, IOAPIC, LAPIC) is
 * mapped uncached (PCD|PWT). */
    .section .data.pagetables, "aw"
    .balign 4096
    .globl pml4
pml4:
    .quad pdpt + 0x7                /* P | RW | US */
    .fill 511, 8, 0
pdpt:
    .quad pd + 0x0000 + 0x7
    .quad pd + 0x1000 + 0x7
    .quad pd + 0x2000 + 0x7
    .quad pd + 0x3000 + 0x7
    .fill 508, 8, 0
pd:
    i = 0
    .rept 2048
    .if i >= 1536
    .quad (i << 21) | 0x9f          /* P | RW | US | PWT | PCD | PS */
    .else
    .quad (i << 21) | 0x87          /* P | RW | US | PS */
    .endif
    i = i + 1
    .endr

/* ------------------------------------------------------------------- bss */
    .section .bss
    .balign 4096
bsp_kstack:
    .skip BSP_KSTACK_SIZE
    .globl bsp_kstack_top
bsp_kstack_top:
    .balign 16
bsp_ustack:
    .skip BSP_USTACK_SIZE
    .globl bsp_ustack_top
bsp_ustack_top:

/*
 boot.S: the assembly the kernel cannot do without.

 1. A multiboot-1 header, so that QEMU's `-kernel` (or GRUB) loads this ELF at 1 MiB and jumps
    to `_start` in 32-bit protected mode with paging off and interrupts off.
 2. `_start`: installs our own GDT (flat 4 GiB code and data segments; the loader's GDT is not
    ours to keep), zeroes .bss, sets up a 64 KiB stack aligned to 16 bytes, initialises the x87
    unit and calls `kernel_main` (Swift). If that ever returns, the CPU halts.
 3. One entry stub per interrupt vector 0..47. Each stub makes the stack look the same (a dummy
    error code for vectors where the CPU pushes none, then the vector number) and jumps to
    `interrupt_common`, which saves all general registers, calls
    `tide_interrupt(vector, errorCode, eip)` (Swift, cdecl) on a 16-byte-aligned stack,
    restores the registers and returns with `iret`. The Swift handler runs with interrupts off
    (the gates are interrupt gates), so handlers never nest.
*/

.set MULTIBOOT_MAGIC, 0x1BADB002
.set MULTIBOOT_FLAGS, 0x00000003          /* page-align modules, ask for a memory map */

.section .multiboot, "a"
.align 4
.long MULTIBOOT_MAGIC
.long MULTIBOOT_FLAGS
.long -(MULTIBOOT_MAGIC + MULTIBOOT_FLAGS)

.section .bss
.align 16
boot_stack_bottom:
.skip 65536
boot_stack_top:

.section .rodata
.align 8
gdt:
.quad 0                                   /* null descriptor */
.quad 0x00CF9A000000FFFF                  /* 0x08: code, base 0, limit 4 GiB, ring 0 */
.quad 0x00CF92000000FFFF                  /* 0x10: data, base 0, limit 4 GiB, ring 0 */
gdt_end:
gdt_pointer:
.word gdt_end - gdt - 1
.long gdt

.section .text
.global _start
.type _start, @function
_start:
    cli
    lgdt gdt_pointer
    ljmp $0x08, $reload_segments
reload_segments:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %fs
    mov %ax, %gs
    mov %ax, %ss
    mov $boot_stack_top, %esp
    /* The stack lives in .bss, so clear .bss before the first push. */
    cld
    mov $__bss_start, %edi
    mov $__bss_end, %ecx
    sub %edi, %ecx
    xor %eax, %eax
    rep stosb
    fninit
    xor %ebp, %ebp
    call kernel_main
halt_forever:
    cli
    hlt
    jmp halt_forever

/* Vectors for which the CPU pushes an error code itself. */
.macro interrupt_stub vector
interrupt_stub_\vector:
.if (\vector == 8) || (\vector == 10) || (\vector == 11) || (\vector == 12) || (\vector == 13) || (\vector == 14) || (\vector == 17) || (\vector == 21)
.else
    pushl $0
.endif
    pushl $\vector
    jmp interrupt_common
.endm

.irp vector, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47
interrupt_stub \vector
.endr

interrupt_common:
    pusha                                 /* 32 bytes: vector at 32(%esp), error code at 36, eip at 40 */
    cld
    mov %esp, %ebx                        /* ebx is callee-saved, so it survives the call */
    and $-16, %esp
    sub $4, %esp                          /* three pushes below leave esp 16-byte aligned */
    pushl 40(%ebx)
    pushl 36(%ebx)
    pushl 32(%ebx)
    call tide_interrupt
    mov %ebx, %esp
    popa
    add $8, %esp                          /* drop the vector and the error code */
    iret

.section .rodata
.align 4
.global interrupt_stub_table
interrupt_stub_table:
.irp vector, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47
.long interrupt_stub_\vector
.endr
interrupt_stub_table_end:

.global interrupt_stub_table_size
interrupt_stub_table_size:
.long (interrupt_stub_table_end - interrupt_stub_table) / 4

.section .note.GNU-stack, "", @progbits

/*
 The C side of the kernel, as Swift sees it: the few things Swift cannot say itself
 (port I/O, the privileged CPU instructions, the interrupt stubs' addresses). Everything is
 plain C types so that the header needs no system headers.
*/
#ifndef KERNEL_SUPPORT_H
#define KERNEL_SUPPORT_H

/* Port I/O. */
void port_out8(unsigned short port, unsigned char value);
unsigned char port_in8(unsigned short port);

/* Interrupt flag. cpu_enable_interrupts_and_halt runs `sti; hlt` back to back: sti's
   one-instruction interrupt shadow means no interrupt can arrive between them, so an interrupt
   that happens after the caller's last check always ends the hlt. */
void cpu_disable_interrupts(void);
void cpu_enable_interrupts(void);
void cpu_enable_interrupts_and_halt(void);
/* Stops the CPU for good (interrupts off, hlt in a loop). */
_Noreturn void cpu_halt_forever(void);

/* Loads the IDT register with a table of `count` 8-byte gates at `base`. */
void cpu_load_idt(const void *base, unsigned short count);
/* The kernel code segment selector that boot.S installed (for interrupt gates). */
unsigned short cpu_code_selector(void);
/* The address of boot.S's entry stub for interrupt vector `vector` (0..47). */
unsigned int interrupt_stub_address(unsigned int vector);
/* How many vectors boot.S provides stubs for. */
unsigned int interrupt_stub_count(void);

/* Heap statistics (bytes handed out from the arena so far, bytes in the arena). */
unsigned int heap_used_bytes(void);
unsigned int heap_capacity_bytes(void);

#endif

/*
 support.c: the C the kernel needs under Embedded Swift.

 - Port I/O and the privileged instructions (cli, sti, hlt, lidt) that Swift cannot emit.
 - The C library functions the Embedded Swift runtime and compiled code call: memset, memcpy,
   memmove, memcmp, posix_memalign, malloc, free, and the stack protector's guard and failure
   hook.
 - The heap: power-of-two size classes (16 B .. 1 MiB) carved from a static arena with a bump
   pointer; a freed block goes onto its class's free list and is reused by the next allocation
   of that class. No coalescing: a kernel with a steady set of sizes reaches a steady state.
   Every block starts with a 16-byte header (its class and where the block starts), so that a
   payload is 16-byte aligned and larger alignments only shift the payload inside a larger block.
   Interrupt handlers can release the last reference to an object (a waker dropped in an
   interrupt), so every heap operation runs with interrupts off and restores the caller's flag.
*/

#include "KernelSupport.h"

typedef __SIZE_TYPE__ size_t;
typedef __UINT8_TYPE__ uint8_t;
typedef __UINT32_TYPE__ uint32_t;
typedef __UINTPTR_TYPE__ uintptr_t;

/* ---- Port I/O and CPU control ------------------------------------------------------------ */

void port_out8(unsigned short port, unsigned char value) {
    __asm__ volatile("outb %0, %1" : : "a"(value), "Nd"(port));
}

unsigned char port_in8(unsigned short port) {
    unsigned char value;
    __asm__ volatile("inb %1, %0" : "=a"(value) : "Nd"(port));
    return value;
}

void cpu_disable_interrupts(void) { __asm__ volatile("cli" ::: "memory"); }
void cpu_enable_interrupts(void) { __asm__ volatile("sti" ::: "memory"); }
void cpu_enable_interrupts_and_halt(void) { __asm__ volatile("sti; hlt" ::: "memory"); }

_Noreturn void cpu_halt_forever(void) {
    for (;;) __asm__ volatile("cli; hlt");
}

void cpu_load_idt(const void *base, unsigned short count) {
    struct __attribute__((packed)) { unsigned short limit; const void *base; } pointer = {
        (unsigned short)(count * 8 - 1), base};
    __asm__ volatile("lidt %0" : : "m"(pointer) : "memory");
}

unsigned short cpu_code_selector(void) {
    unsigned short selector;
    __asm__ volatile("mov %%cs, %0" : "=r"(selector));
    return selector;
}

extern const uint32_t interrupt_stub_table[];
extern const uint32_t interrupt_stub_table_size;

unsigned int interrupt_stub_address(unsigned int vector) {
    return vector < interrupt_stub_table_size ? interrupt_stub_table[vector] : 0;
}

unsigned int interrupt_stub_count(void) { return interrupt_stub_table_size; }

static uint32_t save_flags_and_disable(void) {
    uint32_t flags;
    __asm__ volatile("pushfl; popl %0; cli" : "=r"(flags) : : "memory");
    return flags;
}

static void restore_flags(uint32_t flags) {
    __asm__ volatile("pushl %0; popfl" : : "r"(flags) : "memory", "cc");
}

/* ---- Memory functions -------------------------------------------------------------------- */

void *memset(void *destination, int value, size_t count) {
    uint8_t *d = destination;
    while (count--) *d++ = (uint8_t)value;
    return destination;
}

void *memcpy(void *restrict destination, const void *restrict source, size_t count) {
    uint8_t *d = destination;
    const uint8_t *s = source;
    while (count--) *d++ = *s++;
    return destination;
}

void *memmove(void *destination, const void *source, size_t count) {
    uint8_t *d = destination;
    const uint8_t *s = source;
    if (d < s) {
        while (count--) *d++ = *s++;
    } else if (d > s) {
        d += count;
        s += count;
        while (count--) *--d = *--s;
    }
    return destination;
}

int memcmp(const void *left, const void *right, size_t count) {
    const uint8_t *a = left, *b = right;
    for (; count; count--, a++, b++) {
        if (*a != *b) return *a < *b ? -1 : 1;
    }
    return 0;
}

/* ---- Heap -------------------------------------------------------------------------------- */

enum { HEADER = 16, MIN_SHIFT = 4, MAX_SHIFT = 20, CLASSES = MAX_SHIFT - MIN_SHIFT + 1 };
#define ARENA_BYTES (16u << 20)

struct header { uint32_t class_index; uint32_t block_start; uint32_t unused[2]; };
struct free_block { struct free_block *next; };

static uint8_t arena[ARENA_BYTES] __attribute__((aligned(16)));
static size_t arena_used;
static struct free_block *free_lists[CLASSES];

static void *allocate(size_t alignment, size_t size) {
    if (alignment < HEADER) alignment = HEADER;
    if (alignment & (alignment - 1)) return 0;
    size_t needed = HEADER + size + (alignment - HEADER);
    unsigned class_index = 0;
    while (class_index < CLASSES && ((size_t)1 << (class_index + MIN_SHIFT)) < needed) class_index++;
    if (class_index == CLASSES) return 0;
    size_t block_size = (size_t)1 << (class_index + MIN_SHIFT);

    uint32_t flags = save_flags_and_disable();
    uint8_t *block;
    if (free_lists[class_index]) {
        block = (uint8_t *)free_lists[class_index];
        free_lists[class_index] = free_lists[class_index]->next;
    } else if (ARENA_BYTES - arena_used >= block_size) {
        block = arena + arena_used;
        arena_used += block_size;
    } else {
        block = 0;
    }
    restore_flags(flags);
    if (!block) return 0;

    uintptr_t payload = ((uintptr_t)block + HEADER + alignment - 1) & ~(uintptr_t)(alignment - 1);
    struct header *header = (struct header *)(payload - HEADER);
    header->class_index = class_index;
    header->block_start = (uint32_t)(uintptr_t)block;
    return (void *)payload;
}

int posix_memalign(void **result, size_t alignment, size_t size) {
    void *memory = allocate(alignment, size);
    if (!memory) return 12; /* ENOMEM */
    *result = memory;
    return 0;
}

void *malloc(size_t size) { return allocate(HEADER, size); }

void *aligned_alloc(size_t alignment, size_t size) { return allocate(alignment, size); }

void free(void *memory) {
    if (!memory) return;
    struct header *header = (struct header *)((uint8_t *)memory - HEADER);
    struct free_block *block = (struct free_block *)(uintptr_t)header->block_start;
    uint32_t flags = save_flags_and_disable();
    block->next = free_lists[header->class_index];
    free_lists[header->class_index] = block;
    restore_flags(flags);
}

unsigned int heap_used_bytes(void) { return (unsigned int)arena_used; }
unsigned int heap_capacity_bytes(void) { return ARENA_BYTES; }

/* ---- Stack protector --------------------------------------------------------------------- */

uintptr_t __stack_chk_guard = 0x5f3c9a17;

_Noreturn void __stack_chk_fail(void) {
    static const char message[] = "\nKERNEL PANIC: stack smashing detected\n";
    for (const char *c = message; *c; c++) {
        while (!(port_in8(0x3F8 + 5) & 0x20)) {}
        port_out8(0x3F8, (unsigned char)*c);
    }
    port_out8(0xF4, 0x7F);
    cpu_halt_forever();
}

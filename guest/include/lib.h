#ifndef BULKHEAD_LIB_H
#define BULKHEAD_LIB_H
#include "types.h"

void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
void *memmove(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);

/* Formatting: %d %i %u %x %X %p %s %c %%, with optional '0', width and
 * 'l'/'ll'/'z' length modifiers. */
int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap);
int snprintf(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Print to the UART (one line at a time is serialized between CPUs). */
int printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Same without taking the console lock (trap handlers). */
int console_printf_unlocked(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Parse an unsigned number (decimal or 0x-hex, optional K/M/G suffix when
 * allow_suffix). Returns the number of characters consumed, 0 on error. */
size_t parse_u64(const char *s, size_t len, u64 *out, bool allow_suffix);

/* Simple spinlock (xchg), usable in ring 3 and CPL0. */
typedef struct { volatile u32 v; } spinlock_t;
static inline void spin_lock(spinlock_t *l)
{
    while (__atomic_exchange_n(&l->v, 1, __ATOMIC_ACQUIRE))
        while (l->v)
            __asm__ volatile("pause");
}
static inline void spin_unlock(spinlock_t *l) { __atomic_store_n(&l->v, 0, __ATOMIC_RELEASE); }

/* Exit through the debug-exit port (0x501). Never returns. */
void NORETURN guest_exit(u8 code);

#endif

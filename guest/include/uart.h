#ifndef BULKHEAD_UART_H
#define BULKHEAD_UART_H
#include "types.h"

#define COM1_BASE 0x3f8
void uart_init(void);
void uart_putc(char c);
void uart_write(const char *s, size_t n);
#endif

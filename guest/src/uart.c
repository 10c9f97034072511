/* 16550 UART on COM1, polled output. From ring 3 every port access is a VM
 * exit (~75 us under PVM), so with the FIFO enabled we poll LSR.THRE (FIFO
 * empty) once and then write up to 16 bytes. */
#include "uart.h"
#include "x86.h"

#define UART_THR 0
#define UART_IER 1
#define UART_FCR 2
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define LSR_THRE 0x20
#define FIFO_DEPTH 16

static int fifo_room;

void uart_init(void)
{
    outb(COM1_BASE + UART_IER, 0x00);   /* no interrupts */
    outb(COM1_BASE + UART_LCR, 0x80);   /* DLAB */
    outb(COM1_BASE + 0, 0x01);          /* 115200 baud */
    outb(COM1_BASE + 1, 0x00);
    outb(COM1_BASE + UART_LCR, 0x03);   /* 8N1 */
    outb(COM1_BASE + UART_FCR, 0x07);   /* enable + clear FIFOs */
    outb(COM1_BASE + UART_MCR, 0x03);   /* DTR | RTS */
    fifo_room = 0;
}

void uart_putc(char c)
{
    if (fifo_room == 0) {
        for (int i = 0; i < 100000; i++)
            if (inb(COM1_BASE + UART_LSR) & LSR_THRE)
                break;
        fifo_room = FIFO_DEPTH;
    }
    outb(COM1_BASE + UART_THR, (u8)c);
    fifo_room--;
}

void uart_write(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        uart_putc(s[i]);
}

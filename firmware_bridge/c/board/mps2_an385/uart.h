/* The CMSDK APB UART0 of the MPS2 AN385, polled: no FIFO (one byte each way), and its RX interrupt
 * used only to wake the core from WFI (interrupts stay masked; no handler runs). */
#ifndef BOARD_UART_H
#define BOARD_UART_H

#include <stddef.h>
#include <stdint.h>

#define UART_CLOCK_HZ 25000000u /* the AN385's peripheral clock */

/* Enable TX and RX at `baud` (QEMU transmits only when the divider is >= 16); masks interrupts. */
void uart_init(uint32_t baud);

/* Sleep (WFI) until a byte arrives, unless one already has. */
void uart_wait(void);

/* Read the bytes already received, up to cap, without waiting: how many were read. */
size_t uart_read(uint8_t *buf, size_t cap);

/* Write n bytes, waiting for the transmitter before each. */
void uart_write(const uint8_t *buf, size_t n);

#endif

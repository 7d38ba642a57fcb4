#include "uart.h"

/* CMSDK APB UART registers (word offsets from 0x40004000) and STATE/CTRL bits. */
#define UART0 ((volatile uint32_t *)0x40004000u)
#define DATA 0
#define STATE 1
#define CTRL 2
#define BAUDDIV 4
#define STATE_TX_FULL 0x1u
#define STATE_RX_FULL 0x2u
#define CTRL_TX_EN 0x1u
#define CTRL_RX_EN 0x2u

void uart_init(uint32_t baud) {
    UART0[BAUDDIV] = UART_CLOCK_HZ / baud;
    UART0[CTRL] = CTRL_TX_EN | CTRL_RX_EN;
}

size_t uart_read(uint8_t *buf, size_t cap) {
    size_t n = 0;
    while (n < cap && (UART0[STATE] & STATE_RX_FULL)) buf[n++] = (uint8_t)UART0[DATA];
    return n;
}

void uart_write(const uint8_t *buf, size_t n) {
    for (size_t i = 0; i < n; ++i) {
        while (UART0[STATE] & STATE_TX_FULL) {
        }
        UART0[DATA] = buf[i];
    }
}

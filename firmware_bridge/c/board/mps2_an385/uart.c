#include "uart.h"

/* CMSDK APB UART registers (word offsets from 0x40004000) and STATE/CTRL bits. */
#define UART0 ((volatile uint32_t *)0x40004000u)
#define DATA 0
#define STATE 1
#define CTRL 2
#define INTCLEAR 3
#define BAUDDIV 4
#define STATE_TX_FULL 0x1u
#define STATE_RX_FULL 0x2u
#define CTRL_TX_EN 0x1u
#define CTRL_RX_EN 0x2u
#define CTRL_RX_INT_EN 0x8u
#define INT_RX 0x2u

/* The NVIC's set-enable and clear-pending registers; UART0 RX is the AN385's IRQ 0. */
#define NVIC_ISER0 (*(volatile uint32_t *)0xE000E100u)
#define NVIC_ICPR0 (*(volatile uint32_t *)0xE000E280u)
#define UART0_RX_IRQ 0x1u

void uart_init(uint32_t baud) {
    __asm__ volatile("cpsid i" ::: "memory"); /* a pending IRQ wakes WFI but is never taken */
    UART0[BAUDDIV] = UART_CLOCK_HZ / baud;
    UART0[CTRL] = CTRL_TX_EN | CTRL_RX_EN | CTRL_RX_INT_EN;
    NVIC_ISER0 = UART0_RX_IRQ;
}

void uart_wait(void) {
    UART0[INTCLEAR] = INT_RX;
    NVIC_ICPR0 = UART0_RX_IRQ;
    if (!(UART0[STATE] & STATE_RX_FULL)) __asm__ volatile("wfi" ::: "memory"); /* a byte since pends: no sleep */
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

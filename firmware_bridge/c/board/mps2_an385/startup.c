/* Reset and the vector table of the Cortex-M3: copy .data from flash to RAM, zero .bss, run main.
 * A fault or a return from main is reported over semihosting and ends QEMU, so a test sees a crash
 * as an exit instead of a silent hang. */
#include <stdint.h>

#include "semihost.h"

extern uint32_t __data_load__, __data_start__, __data_end__, __bss_start__, __bss_end__, __stack_top__;
int main(void);

void reset_handler(void);
void fault_handler(void);

__attribute__((noreturn)) void reset_handler(void) {
    const uint32_t *src = &__data_load__;
    for (uint32_t *dst = &__data_start__; dst < &__data_end__;) *dst++ = *src++;
    for (uint32_t *dst = &__bss_start__; dst < &__bss_end__;) *dst++ = 0;
    main();
    semihost_puts("board: main returned\n");
    semihost_exit(1);
}

__attribute__((noreturn)) void fault_handler(void) {
    semihost_puts("board: fault\n");
    semihost_exit(1);
}

typedef void (*vector)(void);

/* The ARMv7-M exceptions 0..15: initial stack pointer, reset, then the fault and system handlers. */
__attribute__((section(".vectors"), used)) static const vector vectors[16] = {
    (vector)(uintptr_t)&__stack_top__,
    reset_handler,
    fault_handler, /* NMI */
    fault_handler, /* HardFault */
    fault_handler, /* MemManage */
    fault_handler, /* BusFault */
    fault_handler, /* UsageFault */
    0, 0, 0, 0,
    fault_handler, /* SVCall */
    fault_handler, /* DebugMonitor */
    0,
    fault_handler, /* PendSV */
    fault_handler, /* SysTick */
};

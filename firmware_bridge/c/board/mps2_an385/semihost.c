#include "semihost.h"

#include <string.h>

/* Operation numbers of the ARM semihosting specification. */
#define SYS_OPEN 0x01
#define SYS_CLOSE 0x02
#define SYS_WRITE0 0x04
#define SYS_WRITE 0x05
#define SYS_READ 0x06
#define SYS_SEEK 0x0A
#define SYS_FLEN 0x0C
#define SYS_EXIT 0x18
#define ADP_STOPPED_APPLICATION_EXIT 0x20026u
#define ADP_STOPPED_RUNTIME_ERROR 0x20023u

/* One semihosting call: op in r0, a pointer to its argument block in r1, the result in r0. */
static int32_t call(uint32_t op, const void *args) {
    register uint32_t r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = args;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return (int32_t)r0;
}

int32_t semihost_open(const char *path, semihost_mode mode) {
    const uint32_t args[3] = {(uint32_t)(uintptr_t)path, (uint32_t)mode, (uint32_t)strlen(path)};
    return call(SYS_OPEN, args);
}

int32_t semihost_close(int32_t handle) {
    const uint32_t args[1] = {(uint32_t)handle};
    return call(SYS_CLOSE, args);
}

int32_t semihost_write(int32_t handle, const void *buf, size_t n) {
    const uint32_t args[3] = {(uint32_t)handle, (uint32_t)(uintptr_t)buf, (uint32_t)n};
    return call(SYS_WRITE, args);
}

int32_t semihost_read(int32_t handle, void *buf, size_t n) {
    const uint32_t args[3] = {(uint32_t)handle, (uint32_t)(uintptr_t)buf, (uint32_t)n};
    return call(SYS_READ, args);
}

int32_t semihost_seek(int32_t handle, uint32_t pos) {
    const uint32_t args[2] = {(uint32_t)handle, pos};
    return call(SYS_SEEK, args);
}

int32_t semihost_flen(int32_t handle) {
    const uint32_t args[1] = {(uint32_t)handle};
    return call(SYS_FLEN, args);
}

void semihost_puts(const char *s) { (void)call(SYS_WRITE0, s); }

void semihost_exit(int code) {
    /* On 32-bit ARM SYS_EXIT takes the reason itself in r1; QEMU exits with 0 for
     * ApplicationExit, 1 for any other reason. */
    (void)call(SYS_EXIT, (const void *)(uintptr_t)(code == 0 ? ADP_STOPPED_APPLICATION_EXIT : ADP_STOPPED_RUNTIME_ERROR));
    for (;;) {
    }
}

/* ARM semihosting (bkpt 0xAB): the host's console and files, as QEMU's
 * `-semihosting-config enable=on,target=native` provides them. Handles are host file handles;
 * every call returns -1 (or a nonzero count of bytes not transferred) on failure. */
#ifndef BOARD_SEMIHOST_H
#define BOARD_SEMIHOST_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    SEMIHOST_READ_BINARY = 1,  /* "rb": an existing file */
    SEMIHOST_UPDATE_BINARY = 3, /* "r+b": an existing file, read and write */
    SEMIHOST_CREATE_BINARY = 7  /* "w+b": a new, empty file, read and write */
} semihost_mode;

int32_t semihost_open(const char *path, semihost_mode mode);
int32_t semihost_close(int32_t handle);
/* Bytes NOT written or read: 0 is complete. */
int32_t semihost_write(int32_t handle, const void *buf, size_t n);
int32_t semihost_read(int32_t handle, void *buf, size_t n);
/* Move to byte `pos` from the start: 0 on success. */
int32_t semihost_seek(int32_t handle, uint32_t pos);
/* The file's length in bytes, or -1. */
int32_t semihost_flen(int32_t handle);
/* A NUL-terminated line to QEMU's stdout (the board's log). */
void semihost_puts(const char *s);
__attribute__((noreturn)) void semihost_exit(int code);

#endif

/*
 * uplink_core: the portable, host-tested heart of the camera firmware.
 *
 * Plain C11, no ESP-IDF headers, no heap, no clock: time and I/O are passed in.
 * Every function that writes text takes the capacity of its buffer (including the
 * terminating NUL) and returns the number of characters written (>= 0) or a
 * negative UC_E_* code; on error the buffer holds an empty string when cap > 0.
 */
#ifndef UC_COMMON_H
#define UC_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    UC_OK = 0,
    UC_E_ARG = -1,   /* invalid argument (NULL, bad character, out of range) */
    UC_E_SPACE = -2, /* output buffer too small */
    UC_E_RANGE = -3, /* input too large for the format */
    UC_E_STATE = -4, /* call not valid in the current state */
    UC_E_PARSE = -5, /* input does not parse */
};

/* Wrap-safe comparison of 32-bit millisecond timestamps (valid for spans < 24.8 days). */
static inline bool uc_time_reached(uint32_t now, uint32_t t)
{
    return (int32_t)(now - t) >= 0;
}

#ifdef __cplusplus
}
#endif
#endif

/*
 * Parser for Alink replies on /sys/<pk>/<dn>/thing/event/property/post_reply, e.g.
 *   {"code":200,"data":{},"id":"123456000","message":"success","version":"1.0"}
 * Only the top-level "id" (string of digits, or number) and "code" (integer) are
 * read; the rest is checked for JSON shape and skipped. Bounded, no recursion, no
 * allocation: safe on any bytes (it is fuzzed).
 */
#ifndef UC_REPLY_H
#define UC_REPLY_H

#include "uc_common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define UC_REPLY_MAX_DEPTH 16

typedef struct {
    uint32_t id;
    int32_t code;
} uc_reply_t;

/* UC_OK when buf[0..len) is one JSON object with a valid "id" and "code". */
int uc_reply_parse(const char *buf, size_t len, uc_reply_t *out);

/* Codes after which the same message may succeed later (rate limit, busy). */
bool uc_reply_is_throttle(int32_t code);

#ifdef __cplusplus
}
#endif
#endif

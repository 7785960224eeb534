/*
 * Retry pacing for Wi-Fi and MQTT reconnects.
 *
 * uc_backoff: exponential backoff with "equal jitter": attempt k waits a random
 * time in [d/2, d] where d = min(cap, base * 2^k); reset on success. The random
 * number is passed in (esp_random() on the device, a seeded PRNG in tests).
 *
 * uc_rategate: at most n events in any window of w ms (Aliyun allows 5 connection
 * attempts per device per minute); tells when the next one may happen.
 */
#ifndef UC_BACKOFF_H
#define UC_BACKOFF_H

#include "uc_common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    uint32_t base_ms;
    uint32_t cap_ms;
    uint32_t attempt;
} uc_backoff_t;

void uc_backoff_init(uc_backoff_t *b, uint32_t base_ms, uint32_t cap_ms);
uint32_t uc_backoff_next(uc_backoff_t *b, uint32_t rnd);
void uc_backoff_reset(uc_backoff_t *b);

#define UC_RATEGATE_MAX 8

typedef struct {
    uint32_t window_ms;
    uint8_t n;    /* events allowed per window, 1..UC_RATEGATE_MAX */
    uint8_t used; /* timestamps stored */
    uint8_t head; /* oldest */
    uint32_t t[UC_RATEGATE_MAX];
} uc_rategate_t;

int uc_rategate_init(uc_rategate_t *g, uint8_t n, uint32_t window_ms);
/* Earliest time >= now at which an event is allowed. */
uint32_t uc_rategate_next(const uc_rategate_t *g, uint32_t now);
/* Records an event at now (call only when uc_rategate_next(now) == now). */
void uc_rategate_note(uc_rategate_t *g, uint32_t now);

/*
 * uc_link: when to (re)connect a client whose automatic reconnect is off.
 * Attempts follow uc_backoff after each failure, never exceed the rate gate, wait
 * for the network, and an attempt that gets no verdict within attempt_timeout_ms
 * counts as failed.
 */
typedef struct {
    uc_backoff_t backoff;
    uc_rategate_t gate;
    uint32_t attempt_timeout_ms;
    bool up;         /* connected */
    bool attempting; /* an attempt is under way */
    uint32_t attempt_at;
    bool delayed;
    uint32_t next_at; /* when delayed: no attempt before this */
    uint32_t attempts, failures;
} uc_link_t;

int uc_link_init(uc_link_t *l, uint32_t base_ms, uint32_t cap_ms, uint8_t per_window,
                 uint32_t window_ms, uint32_t attempt_timeout_ms);
/* True when the caller should start an attempt now (recorded as started). */
bool uc_link_should_attempt(uc_link_t *l, uint32_t now, bool network_up);
void uc_link_connected(uc_link_t *l, uint32_t now);
/* A connection ended or an attempt failed; returns the delay before the next one. */
uint32_t uc_link_failed(uc_link_t *l, uint32_t now, uint32_t rnd);

#ifdef __cplusplus
}
#endif
#endif

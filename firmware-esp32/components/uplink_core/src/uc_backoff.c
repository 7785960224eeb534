/* Backoff and rate gate (see uc_backoff.h). */
#include "uc_backoff.h"

#include <string.h>

void uc_backoff_init(uc_backoff_t *b, uint32_t base_ms, uint32_t cap_ms)
{
    b->base_ms = base_ms == 0 ? 1 : base_ms;
    b->cap_ms = cap_ms < b->base_ms ? b->base_ms : cap_ms;
    b->attempt = 0;
}

uint32_t uc_backoff_next(uc_backoff_t *b, uint32_t rnd)
{
    uint32_t d = b->base_ms;
    for (uint32_t i = 0; i < b->attempt && d < b->cap_ms; i++) {
        d = d > b->cap_ms / 2 ? b->cap_ms : d * 2;
    }
    if (d > b->cap_ms) {
        d = b->cap_ms;
    }
    if (b->attempt < 64) {
        b->attempt++;
    }
    uint32_t half = d / 2;
    return (d - half) + rnd % (half + 1);
}

void uc_backoff_reset(uc_backoff_t *b)
{
    b->attempt = 0;
}

int uc_rategate_init(uc_rategate_t *g, uint8_t n, uint32_t window_ms)
{
    if (g == NULL || n == 0 || n > UC_RATEGATE_MAX || window_ms > 0x7FFFFFFFu) {
        return UC_E_ARG;
    }
    memset(g, 0, sizeof *g);
    g->n = n;
    g->window_ms = window_ms;
    return UC_OK;
}

uint32_t uc_rategate_next(const uc_rategate_t *g, uint32_t now)
{
    if (g->used < g->n) {
        return now;
    }
    uint32_t t = g->t[g->head] + g->window_ms; /* the oldest of the last n leaves the window */
    return uc_time_reached(now, t) ? now : t;
}

void uc_rategate_note(uc_rategate_t *g, uint32_t now)
{
    if (g->used < g->n) {
        g->t[(g->head + g->used) % g->n] = now;
        g->used++;
    } else {
        g->t[g->head] = now;
        g->head = (uint8_t)((g->head + 1) % g->n);
    }
}

int uc_link_init(uc_link_t *l, uint32_t base_ms, uint32_t cap_ms, uint8_t per_window,
                 uint32_t window_ms, uint32_t attempt_timeout_ms)
{
    if (l == NULL || attempt_timeout_ms == 0 || attempt_timeout_ms > 0x7FFFFFFFu) {
        return UC_E_ARG;
    }
    memset(l, 0, sizeof *l);
    uc_backoff_init(&l->backoff, base_ms, cap_ms);
    l->attempt_timeout_ms = attempt_timeout_ms;
    return uc_rategate_init(&l->gate, per_window, window_ms);
}

bool uc_link_should_attempt(uc_link_t *l, uint32_t now, bool network_up)
{
    if (l->up) {
        return false;
    }
    if (l->attempting) {
        if (!uc_time_reached(now, l->attempt_at + l->attempt_timeout_ms)) {
            return false;
        }
        l->attempting = false; /* no verdict: treat as failed, without extra backoff */
        l->failures++;
    }
    if (l->delayed && !uc_time_reached(now, l->next_at)) {
        return false;
    }
    l->delayed = false;
    if (!network_up) {
        return false;
    }
    uint32_t t = uc_rategate_next(&l->gate, now);
    if (t != now) {
        l->delayed = true;
        l->next_at = t;
        return false;
    }
    uc_rategate_note(&l->gate, now);
    l->attempting = true;
    l->attempt_at = now;
    l->attempts++;
    return true;
}

void uc_link_connected(uc_link_t *l, uint32_t now)
{
    (void)now;
    l->up = true;
    l->attempting = false;
    uc_backoff_reset(&l->backoff);
}

uint32_t uc_link_failed(uc_link_t *l, uint32_t now, uint32_t rnd)
{
    uint32_t d = uc_backoff_next(&l->backoff, rnd);
    l->up = false;
    l->attempting = false;
    l->failures++;
    l->delayed = true;
    l->next_at = now + d;
    return d;
}

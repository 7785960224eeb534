/* Upload state machine (see uc_upload.h). */
#include "uc_upload.h"

#include <string.h>

#include "uc_reply.h"

enum { SLOT_FREE = 0, SLOT_FLIGHT = 1, SLOT_RETRY = 2 };
enum { PH_IDLE = 0, PH_ACTIVE = 1, PH_ACKED = 2 };
#define SLOT_AGAIN 0x80u /* flag on state: resend even if this attempt is acked */

static bool bit_get(const uint8_t *b, uint32_t i)
{
    return (b[i / 8u] >> (i % 8u)) & 1u;
}
static void bit_set(uint8_t *b, uint32_t i)
{
    b[i / 8u] = (uint8_t)(b[i / 8u] | (1u << (i % 8u)));
}
static void bit_clr(uint8_t *b, uint32_t i)
{
    b[i / 8u] = (uint8_t)(b[i / 8u] & ~(1u << (i % 8u)));
}
static uint8_t st(const uc_up_slot_t *s)
{
    return (uint8_t)(s->state & 0x7Fu);
}

void uc_up_cfg_default(uc_up_cfg_t *cfg)
{
    cfg->window = 4;
    cfg->max_per_sec = 5;
    cfg->ack_timeout_ms = 20000;
    cfg->retry_ms = 1000;
    cfg->throttle_hold_ms = 10000;
    cfg->reject_hold_ms = 300000;
    cfg->reply_grace_ms = 0;
}

int uc_up_init(uc_up_t *up, const uc_up_cfg_t *cfg)
{
    if (up == NULL || cfg == NULL || cfg->window < 1 || cfg->window > UC_UP_MAX_WINDOW ||
        cfg->max_per_sec < 1 || cfg->max_per_sec > UC_UP_MAX_RATE || cfg->ack_timeout_ms == 0 ||
        cfg->ack_timeout_ms > 0x7FFFFFFFu / 2 || cfg->retry_ms > 0x7FFFFFFFu / 2 ||
        cfg->throttle_hold_ms > 0x7FFFFFFFu / 2 || cfg->reject_hold_ms > 0x7FFFFFFFu / 2 ||
        cfg->reply_grace_ms > 0x7FFFFFFFu / 2) {
        return UC_E_ARG;
    }
    memset(up, 0, sizeof *up);
    up->cfg = *cfg;
    return UC_OK;
}

bool uc_up_busy(const uc_up_t *up)
{
    return up->phase != PH_IDLE;
}

static void clear_picture(uc_up_t *up)
{
    memset(&up->pic, 0, sizeof up->pic);
    memset(up->acked, 0, sizeof up->acked);
    memset(up->tried, 0, sizeof up->tried);
    memset(up->redo, 0, sizeof up->redo);
    memset(up->slot, 0, sizeof up->slot);
    up->next_seq = 0;
    up->acked_n = 0;
    up->redo_n = 0;
    up->awaiting_sent = false;
    up->phase = PH_IDLE;
}

int uc_up_begin(uc_up_t *up, const uc_pic_t *pic, uint32_t now)
{
    (void)now;
    if (up == NULL || pic == NULL || pic->count == 0 || pic->count > UC_MAX_CHUNKS) {
        return UC_E_ARG;
    }
    if (up->phase != PH_IDLE) {
        return UC_E_STATE;
    }
    clear_picture(up);
    up->pic = *pic;
    up->phase = PH_ACTIVE;
    return UC_OK;
}

void uc_up_abort(uc_up_t *up)
{
    clear_picture(up);
}

uint16_t uc_up_in_flight(const uc_up_t *up)
{
    uint16_t n = 0;
    for (int i = 0; i < UC_UP_MAX_WINDOW; i++) {
        if (st(&up->slot[i]) != SLOT_FREE) {
            n++;
        }
    }
    return n;
}

static void refresh_slow(uc_up_t *up, uint32_t now)
{
    if (up->slow_shift != 0 && uc_time_reached(now, up->slow_until)) {
        up->slow_shift = 0;
    }
}

uint32_t uc_up_interval(const uc_up_t *up, uint32_t now)
{
    uint32_t base = (1000u + up->cfg.max_per_sec - 1u) / up->cfg.max_per_sec;
    if (up->slow_shift != 0 && !uc_time_reached(now, up->slow_until)) {
        base <<= up->slow_shift;
    }
    return base;
}

static uc_act_t act(uc_act_kind_t k, uint32_t wake)
{
    uc_act_t a = {k, 0, 0, wake};
    return a;
}

static void all_acked_check(uc_up_t *up, uint32_t now)
{
    if (up->phase == PH_ACTIVE && up->acked_n == up->pic.count && up->redo_n == 0) {
        up->phase = PH_ACKED;
        up->all_acked_at = now;
    }
}

static void ack_slot(uc_up_t *up, uc_up_slot_t *s, uint32_t now)
{
    if ((s->state & SLOT_AGAIN) != 0) {
        /* A reply said this seq must go again: the PUBACK does not settle it. */
        s->state = SLOT_RETRY;
        s->msg_id = 0;
        s->prev_msg_id = 0;
        s->t = now;
        return;
    }
    if (!bit_get(up->acked, s->seq)) {
        bit_set(up->acked, s->seq);
        up->acked_n++;
    }
    memset(s, 0, sizeof *s);
    all_acked_check(up, now);
}

/* Earliest time anything in the slots needs attention. */
static bool earliest(const uc_up_t *up, uint32_t now, uint32_t *t)
{
    bool any = false;
    for (int i = 0; i < UC_UP_MAX_WINDOW; i++) {
        const uc_up_slot_t *s = &up->slot[i];
        uint8_t k = st(s);
        if (k == SLOT_RETRY || (k == SLOT_FLIGHT && up->connected)) {
            if (!any || (int32_t)(s->t - *t) < 0) {
                *t = s->t;
                any = true;
            }
        }
    }
    if (any && uc_time_reached(now, *t)) {
        *t = now;
    }
    return any;
}

static uc_up_slot_t *find_seq(uc_up_t *up, uint32_t seq)
{
    for (int i = 0; i < UC_UP_MAX_WINDOW; i++) {
        if (st(&up->slot[i]) != SLOT_FREE && up->slot[i].seq == seq) {
            return &up->slot[i];
        }
    }
    return NULL;
}

uc_act_t uc_up_poll(uc_up_t *up, uint32_t now)
{
    if (up->phase == PH_IDLE) {
        return act(UC_ACT_IDLE, now);
    }
    if (up->awaiting_sent) {
        return act(UC_ACT_WAIT, now); /* caller owes uc_up_sent() */
    }
    refresh_slow(up, now);
    if (up->connected) {
        for (int i = 0; i < UC_UP_MAX_WINDOW; i++) {
            uc_up_slot_t *s = &up->slot[i];
            if (st(s) == SLOT_FLIGHT && uc_time_reached(now, s->t)) {
                s->state = SLOT_RETRY;
                s->t = now;
                up->stats.timeouts++;
            }
        }
    }
    if (up->phase == PH_ACKED) {
        uint32_t t = up->all_acked_at + up->cfg.reply_grace_ms;
        if (!uc_time_reached(now, t)) {
            return act(UC_ACT_WAIT, t);
        }
        clear_picture(up);
        up->stats.pictures++;
        return act(UC_ACT_DONE, now);
    }
    if (!up->connected) {
        return act(UC_ACT_WAIT, now + 1000u);
    }
    if (up->hold) {
        if (!uc_time_reached(now, up->hold_until)) {
            return act(UC_ACT_WAIT, up->hold_until);
        }
        up->hold = false;
    }

    /* 1. a message waiting to be resent, lowest seq first */
    uc_up_slot_t *use = NULL;
    for (int i = 0; i < UC_UP_MAX_WINDOW; i++) {
        uc_up_slot_t *s = &up->slot[i];
        if (st(s) == SLOT_RETRY && uc_time_reached(now, s->t) && (use == NULL || s->seq < use->seq)) {
            use = s;
        }
    }
    uint32_t seq = 0;
    bool from_redo = false;
    bool fresh = false;
    if (use != NULL) {
        seq = use->seq;
    } else if (uc_up_in_flight(up) < up->cfg.window) {
        /* 2. an acknowledged message a reply sent back, 3. the next new one */
        if (up->redo_n > 0) {
            for (uint32_t i = 0; i < up->pic.count; i++) {
                if (bit_get(up->redo, i)) {
                    seq = i;
                    from_redo = true;
                    break;
                }
            }
        }
        if (!from_redo && up->next_seq < up->pic.count) {
            seq = up->next_seq;
            fresh = true;
        }
        if (from_redo || fresh) {
            for (int i = 0; i < UC_UP_MAX_WINDOW; i++) {
                if (st(&up->slot[i]) == SLOT_FREE) {
                    use = &up->slot[i];
                    break;
                }
            }
        }
    }
    if (use == NULL) {
        uint32_t t = now + 1000u;
        (void)earliest(up, now, &t);
        return act(UC_ACT_WAIT, t);
    }
    if (up->have_last_pub) {
        uint32_t t = up->last_pub + uc_up_interval(up, now);
        if (!uc_time_reached(now, t)) {
            return act(UC_ACT_WAIT, t);
        }
    }

    /* commit */
    if (st(use) == SLOT_RETRY) {
        if (use->msg_id != 0) {
            use->prev_msg_id = use->msg_id;
        }
    } else {
        memset(use, 0, sizeof *use);
        use->seq = (uint16_t)seq;
    }
    use->state = SLOT_FLIGHT;
    use->msg_id = 0;
    use->t = now + up->cfg.ack_timeout_ms;
    if (from_redo) {
        bit_clr(up->redo, seq);
        up->redo_n--;
    }
    if (fresh) {
        up->next_seq++;
    }
    if (bit_get(up->tried, seq)) {
        up->stats.resent++;
    }
    bit_set(up->tried, seq);
    up->stats.published++;
    up->awaiting_sent = true;
    up->awaiting_seq = (uint16_t)seq;
    up->have_last_pub = true;
    up->last_pub = now;
    uc_act_t a = {UC_ACT_PUBLISH, seq, uc_alink_id(up->pic.pid, seq), now};
    return a;
}

int uc_up_sent(uc_up_t *up, uint32_t seq, int32_t msg_id, uint32_t now)
{
    if (!up->awaiting_sent || seq != up->awaiting_seq) {
        return UC_E_STATE;
    }
    up->awaiting_sent = false;
    uc_up_slot_t *s = find_seq(up, seq);
    if (s == NULL || st(s) != SLOT_FLIGHT || s->msg_id != 0) {
        return UC_OK; /* settled meanwhile by the PUBACK of an earlier attempt */
    }
    if (msg_id > 0) {
        s->msg_id = msg_id;
        s->t = now + up->cfg.ack_timeout_ms;
    } else if (msg_id == 0) {
        ack_slot(up, s, now); /* QoS 0: nothing more will come */
    } else {
        up->stats.failed++;
        s->state = SLOT_RETRY;
        s->t = now + up->cfg.retry_ms;
    }
    return UC_OK;
}

void uc_up_acked(uc_up_t *up, int32_t msg_id, uint32_t now)
{
    if (msg_id > 0 && up->phase != PH_IDLE) {
        for (int i = 0; i < UC_UP_MAX_WINDOW; i++) {
            uc_up_slot_t *s = &up->slot[i];
            if (st(s) != SLOT_FREE && (s->msg_id == msg_id || s->prev_msg_id == msg_id)) {
                ack_slot(up, s, now);
                return;
            }
        }
    }
    up->stats.stale++;
}

void uc_up_lost(uc_up_t *up, int32_t msg_id, uint32_t now)
{
    if (msg_id > 0 && up->phase != PH_IDLE) {
        for (int i = 0; i < UC_UP_MAX_WINDOW; i++) {
            uc_up_slot_t *s = &up->slot[i];
            if (st(s) == SLOT_FLIGHT && s->msg_id == msg_id) {
                s->state = SLOT_RETRY;
                s->prev_msg_id = 0;
                s->msg_id = 0;
                s->t = now;
                up->stats.lost++;
                return;
            }
        }
    }
    up->stats.stale++;
}

void uc_up_reply(uc_up_t *up, uint32_t alink_id, int32_t code, uint32_t now)
{
    uint32_t seq = alink_id % 1000u;
    if (up->phase == PH_IDLE || seq >= up->pic.count || uc_alink_id(up->pic.pid, seq) != alink_id) {
        up->stats.stale++;
        return;
    }
    if (code == 200) {
        return;
    }
    up->stats.last_code = code;
    if (uc_reply_is_throttle(code)) {
        up->stats.throttled++;
        if (up->slow_shift < UC_UP_MAX_SLOW_SHIFT) {
            up->slow_shift++;
        }
        up->slow_until = now + up->cfg.throttle_hold_ms;
    } else {
        up->stats.rejected++;
        up->hold = true;
        up->hold_until = now + up->cfg.reject_hold_ms;
    }
    uc_up_slot_t *s = find_seq(up, seq);
    if (s != NULL) {
        /* Whichever attempt the reply was about, one more must follow it. */
        if (st(s) == SLOT_FLIGHT) {
            s->state |= SLOT_AGAIN; /* its PUBACK must not settle it */
        }
        s->prev_msg_id = 0;
        return;
    }
    if (bit_get(up->acked, seq)) {
        bit_clr(up->acked, seq);
        up->acked_n--;
        if (!bit_get(up->redo, seq)) {
            bit_set(up->redo, seq);
            up->redo_n++;
        }
        if (up->phase == PH_ACKED) {
            up->phase = PH_ACTIVE;
        }
    }
}

void uc_up_connected(uc_up_t *up, uint32_t now)
{
    up->connected = true;
    for (int i = 0; i < UC_UP_MAX_WINDOW; i++) {
        uc_up_slot_t *s = &up->slot[i];
        if (st(s) == SLOT_FLIGHT && s->msg_id != 0) {
            s->t = now + up->cfg.ack_timeout_ms; /* the client resends its outbox now */
        }
    }
}

void uc_up_disconnected(uc_up_t *up, uint32_t now)
{
    (void)now;
    up->connected = false;
}

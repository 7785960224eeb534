/*
 * Upload state machine: sends one picture's messages over QoS 1 with a bounded
 * in-flight window, paced under the per-device publish rate, and reports the
 * picture done only when every message has been acknowledged (PUBACK).
 *
 * It does no I/O and reads no clock. The caller (the firmware's uplink task, the
 * host tests, fw_emit --simulate) feeds it events and asks it what to do:
 *
 *   uc_up_begin(pic)               start a picture (state must be idle)
 *   uc_up_poll(now) -> action      PUBLISH seq | WAIT until t | DONE | IDLE
 *   uc_up_sent(seq, msg_id)        result of that publish: MQTT msg id > 0,
 *                                  0 for a QoS 0 publish (counts as acknowledged),
 *                                  < 0 on failure (-1 error, -2 outbox full)
 *   uc_up_acked(msg_id)            PUBACK (MQTT_EVENT_PUBLISHED)
 *   uc_up_lost(msg_id)             the client dropped it (MQTT_EVENT_DELETED)
 *   uc_up_reply(alink id, code)    a post_reply: throttled/rejected chunks are resent
 *   uc_up_connected / _disconnected
 *
 * A resent message is rebuilt from the same seq, so it carries the same Alink id.
 * After a PUBLISH action the caller must report uc_up_sent() for that seq before
 * polling again. Timestamps are wrapping 32-bit milliseconds.
 */
#ifndef UC_UPLOAD_H
#define UC_UPLOAD_H

#include "uc_common.h"
#include "uc_wire.h"

#ifdef __cplusplus
extern "C" {
#endif

#define UC_UP_MAX_WINDOW 16
#define UC_UP_MAX_RATE 30 /* Aliyun: QoS 1 <= 10/s, QoS 0 <= 30/s per device */
#define UC_UP_MAX_SLOW_SHIFT 3

typedef struct {
    uint16_t window;           /* messages awaiting PUBACK, 1..UC_UP_MAX_WINDOW */
    uint16_t max_per_sec;      /* publishes in any 1000 ms, 1..UC_UP_MAX_RATE */
    uint32_t ack_timeout_ms;   /* no PUBACK within this (while connected): resend */
    uint32_t retry_ms;         /* after a failed publish: wait before retrying it */
    uint32_t throttle_hold_ms; /* a throttle reply halves the rate for this long */
    uint32_t reject_hold_ms;   /* a rejecting reply pauses the picture this long */
    uint32_t reply_grace_ms;   /* after the last PUBACK, wait this long for replies */
} uc_up_cfg_t;

/* Sensible defaults: window 4, 5 msg/s, ack timeout 20 s, retry 1 s, throttle hold
 * 10 s, reject hold 300 s, reply grace 0 (no post_reply subscription). */
void uc_up_cfg_default(uc_up_cfg_t *cfg);

typedef enum {
    UC_ACT_IDLE = 0, /* no picture: begin one */
    UC_ACT_WAIT,     /* nothing to do before wake_at (or an event) */
    UC_ACT_PUBLISH,  /* publish message seq (alink_id for logging) */
    UC_ACT_DONE,     /* every message acknowledged: mark the picture sent */
} uc_act_kind_t;

typedef struct {
    uc_act_kind_t kind;
    uint32_t seq;
    uint32_t alink_id;
    uint32_t wake_at;
} uc_act_t;

typedef struct {
    uint32_t published; /* publish attempts, including resends and failures */
    uint32_t resent;    /* attempts for a seq that had been attempted before */
    uint32_t failed;    /* uc_up_sent() with a negative result */
    uint32_t timeouts;  /* ack timeouts */
    uint32_t lost;      /* uc_up_lost() that hit an in-flight message */
    uint32_t stale;     /* acks/lost/replies that matched nothing current */
    uint32_t throttled; /* throttle replies */
    uint32_t rejected;  /* rejecting replies */
    uint32_t pictures;  /* pictures completed */
    int32_t last_code;  /* last non-200 reply code */
} uc_up_stats_t;

typedef struct {
    uint16_t seq;
    uint8_t state; /* internal */
    int32_t msg_id;
    int32_t prev_msg_id;
    uint32_t t; /* in flight: ack deadline; waiting to resend: not before */
} uc_up_slot_t;

typedef struct {
    uc_up_cfg_t cfg;
    uc_pic_t pic;
    uint8_t phase; /* internal */
    bool connected;
    bool awaiting_sent;
    uint16_t awaiting_seq;
    uint16_t next_seq;  /* lowest seq never attempted */
    uint16_t acked_n;
    uint16_t redo_n;
    uint8_t acked[(UC_MAX_CHUNKS + 7) / 8];
    uint8_t tried[(UC_MAX_CHUNKS + 7) / 8];
    uint8_t redo[(UC_MAX_CHUNKS + 7) / 8]; /* acked, but a reply asked for a resend */
    uc_up_slot_t slot[UC_UP_MAX_WINDOW];
    bool have_last_pub;
    uint32_t last_pub;
    uint8_t slow_shift;
    uint32_t slow_until;
    bool hold;
    uint32_t hold_until;
    uint32_t all_acked_at;
    uc_up_stats_t stats;
} uc_up_t;

/* UC_E_ARG when cfg is out of range (nothing changed). */
int uc_up_init(uc_up_t *up, const uc_up_cfg_t *cfg);
int uc_up_begin(uc_up_t *up, const uc_pic_t *pic, uint32_t now);
void uc_up_abort(uc_up_t *up); /* drop the current picture (e.g. its file vanished) */
bool uc_up_busy(const uc_up_t *up);
uc_act_t uc_up_poll(uc_up_t *up, uint32_t now);
int uc_up_sent(uc_up_t *up, uint32_t seq, int32_t msg_id, uint32_t now);
void uc_up_acked(uc_up_t *up, int32_t msg_id, uint32_t now);
void uc_up_lost(uc_up_t *up, int32_t msg_id, uint32_t now);
void uc_up_reply(uc_up_t *up, uint32_t alink_id, int32_t code, uint32_t now);
void uc_up_connected(uc_up_t *up, uint32_t now);
void uc_up_disconnected(uc_up_t *up, uint32_t now);
/* Messages currently awaiting PUBACK or a resend. */
uint16_t uc_up_in_flight(const uc_up_t *up);
/* Current minimum spacing between publishes, ms. */
uint32_t uc_up_interval(const uc_up_t *up, uint32_t now);

#ifdef __cplusplus
}
#endif
#endif

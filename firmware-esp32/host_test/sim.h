/*
 * Host simulation of the whole upload path, for tests and `fw_emit --simulate`:
 *
 *   device  = the core's upload state machine + pending pictures "on SD"; it
 *             reboots when told (state machine and client lost, pictures kept);
 *   client  = an esp-mqtt-like QoS 1 client: msg ids, outbox, retransmission of
 *             unacknowledged publishes, outbox expiry (MQTT_EVENT_DELETED);
 *   link    = latency with jitter, lost publishes, lost PUBACKs, publish errors,
 *             full outbox, outages (disconnects);
 *   broker  = Aliyun-like: per-device rate limit (drop silently, or PUBACK and a
 *             429 reply, or PUBACK and drop), optional post_reply, and a receiver
 *             that reassembles v1/v2 pictures and checks them against the JPEG.
 *
 * The simulation also checks the state machine's promises on every step: window,
 * publish rate, stable Alink ids and payloads for resent chunks, and "done only
 * when the broker has every chunk" (except where the broker lies, SIM_THR_SILENT).
 */
#ifndef SIM_H
#define SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "uc_upload.h"
#include "uc_wire.h"

enum { SIM_THR_DROP = 0, SIM_THR_REPLY = 1, SIM_THR_SILENT = 2 };

#define SIM_MAX_PICS 16
#define SIM_MAX_OUTAGES 8
#define SIM_MAX_REBOOTS 8

typedef struct {
    uint32_t start_ms; /* initial clock (try values near 2^32 for wrap-around) */
    uint32_t seed;
    uint32_t latency_ms, jitter_ms;
    unsigned loss_pub_pm, loss_ack_pm; /* per mille */
    unsigned fail_pub_pm, full_pub_pm; /* publish() returns -1 / -2, per mille */
    uint32_t retransmit_ms;            /* client resend of unacked; 0 = never */
    uint32_t expiry_ms;                /* outbox expiry; 0 = never */
    bool report_deleted;
    unsigned rate_limit; /* broker: accepted per 1000 ms, 0 = unlimited */
    int throttle_mode;
    bool replies;          /* broker sends post_reply 200 for accepted messages */
    unsigned reject_first; /* broker rejects (code 6310) the first N messages */
    struct {
        uint32_t at, dur; /* offset from start_ms, length */
    } outage[SIM_MAX_OUTAGES];
    int n_outages;
    uint32_t reboot_at[SIM_MAX_REBOOTS]; /* offsets from start_ms */
    int n_reboots;
    uint32_t boot_ms; /* time from reboot to connected */
    FILE *trace;      /* payloads as the broker receives them (fw_emit), or NULL */
} sim_cfg_t;

void sim_cfg_default(sim_cfg_t *c);

typedef struct {
    const uint8_t *jpeg;
    uint32_t size;
    uint32_t pid;
    uc_format_t fmt;
    uint32_t chunk;
} sim_pic_t;

typedef struct {
    /* outcome */
    bool all_done;             /* every picture reported done by the device */
    bool all_complete;         /* the broker reassembled every picture correctly */
    uint32_t elapsed_ms;
    /* violations (must stay 0) */
    unsigned window_violations;
    unsigned rate_violations;
    unsigned id_violations;      /* wrong alink id, or a resend that differs */
    unsigned early_done;         /* done before the broker had every chunk */
    unsigned broker_conflicts;   /* same seq, different data, or bad message */
    unsigned stuck;              /* polls that made no progress in time */
    /* counters */
    unsigned publishes, broker_arrivals, broker_duplicates, throttled, pubacks, reboots;
    unsigned max_in_flight, max_per_sec;
    uc_up_stats_t fsm; /* the last state machine's stats */
} sim_result_t;

/* Runs the device until every picture is done or limit_ms passes. */
int sim_run(const sim_cfg_t *cfg, const uc_up_cfg_t *up_cfg, const sim_pic_t *pics, int n,
            uint32_t limit_ms, sim_result_t *res);



/* Test helpers from sim.c: an independent strict Base64 decoder and the payload splitter. */
uint8_t *sim_b64_decode(const char *s, size_t n, size_t *out_n);
bool sim_split_payload(const char *p, size_t n, uint32_t *alink, const char **val, size_t *vn);
#endif

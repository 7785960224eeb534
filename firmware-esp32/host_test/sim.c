/* Host simulation of the upload path (see sim.h). Test code: uses the heap freely. */
#include "sim.h"

#include <stdlib.h>
#include <string.h>

#include "th.h"
#include "uc_codec.h"

enum { EV_ARRIVE, EV_PUBACK, EV_REPLY };

typedef struct {
    uint32_t t;
    int kind;
    int32_t msg_id;
    uint32_t alink;
    int32_t code;
    uint32_t epoch;
    char *payload;
    size_t len;
} ev_t;

#define OUTBOX_CAP 64

typedef struct {
    bool used;
    int32_t msg_id;
    char *payload;
    size_t len;
    uint32_t created, last_tx;
} obx_t;

typedef struct {
    bool got[UC_MAX_CHUNKS];
    uint8_t *data[UC_MAX_CHUNKS];
    size_t len[UC_MAX_CHUNKS];
    bool complete;
    bool hashed[UC_MAX_CHUNKS];
    uint64_t hash[UC_MAX_CHUNKS];
} rx_t;

typedef struct {
    const sim_cfg_t *c;
    const sim_pic_t *pics;
    int n;
    sim_result_t *r;
    uint32_t now, rng;
    /* link */
    bool connected;
    uint32_t epoch;
    ev_t *ev;
    size_t n_ev, cap_ev;
    /* client */
    obx_t obx[OUTBOX_CAP];
    int32_t next_msg_id;
    /* broker */
    uint32_t acc[64]; /* accepted arrival times, ring */
    unsigned acc_n, acc_head;
    unsigned rejects_left;
    rx_t *rx;
    /* device */
    uc_up_t up;
    uc_up_cfg_t up_cfg;
    bool booting;
    uint32_t boot_until;
    int cur;
    bool done[SIM_MAX_PICS];
    uint32_t pub_times[UC_UP_MAX_RATE + 1];
    unsigned pub_n;
    int reboot_next;
} sim_t;

void sim_cfg_default(sim_cfg_t *c)
{
    memset(c, 0, sizeof *c);
    c->start_ms = 1000;
    c->seed = 12345;
    c->latency_ms = 40;
    c->jitter_ms = 20;
    c->retransmit_ms = 5000;
    c->expiry_ms = 15000;
    c->report_deleted = true;
    c->rate_limit = 10;
    c->throttle_mode = SIM_THR_DROP;
    c->boot_ms = 3000;
}

static bool reached(uint32_t now, uint32_t t)
{
    return (int32_t)(now - t) >= 0;
}

static uint32_t rnd(sim_t *s)
{
    return th_rand(&s->rng);
}

static bool roll(sim_t *s, unsigned pm)
{
    return pm > 0 && rnd(s) % 1000u < pm;
}

static void push_ev(sim_t *s, ev_t e)
{
    if (s->n_ev == s->cap_ev) {
        s->cap_ev = s->cap_ev ? s->cap_ev * 2 : 64;
        s->ev = realloc(s->ev, s->cap_ev * sizeof *s->ev);
        if (s->ev == NULL) {
            abort();
        }
    }
    s->ev[s->n_ev++] = e;
}

/* Index of the earliest event (ties: first scheduled), or -1. */
static long earliest_ev(const sim_t *s)
{
    long best = -1;
    for (size_t i = 0; i < s->n_ev; i++) {
        if (best < 0 || (int32_t)(s->ev[i].t - s->ev[(size_t)best].t) < 0) {
            best = (long)i;
        }
    }
    return best;
}

static uint32_t delay(sim_t *s)
{
    return s->c->latency_ms + (s->c->jitter_ms ? rnd(s) % (s->c->jitter_ms + 1) : 0);
}

static uint64_t fnv(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h = (h ^ (uint8_t)p[i]) * 1099511628211ull;
    }
    return h;
}

/* ---------------------------------------------------------------- receiver -- */

static int b64v(char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Strict RFC 4648 decoder written independently of the encoder under test. */
uint8_t *sim_b64_decode(const char *s, size_t n, size_t *out_n);
uint8_t *sim_b64_decode(const char *s, size_t n, size_t *out_n)
{
    if (n == 0 || n % 4 != 0) {
        return NULL;
    }
    size_t pad = (s[n - 1] == '=') + (n >= 2 && s[n - 2] == '=');
    uint8_t *o = malloc(n / 4 * 3);
    size_t k = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4];
        for (int j = 0; j < 4; j++) {
            bool last = i + 4 == n;
            if (last && s[i + (size_t)j] == '=' && (size_t)j >= 4 - pad) {
                v[j] = 0;
            } else if ((v[j] = b64v(s[i + (size_t)j])) < 0) {
                free(o);
                return NULL;
            }
        }
        uint32_t w = ((uint32_t)v[0] << 18) | ((uint32_t)v[1] << 12) | ((uint32_t)v[2] << 6) | (uint32_t)v[3];
        o[k++] = (uint8_t)(w >> 16);
        o[k++] = (uint8_t)(w >> 8);
        o[k++] = (uint8_t)w;
    }
    *out_n = k - pad;
    return o;
}

static bool parse_u32(const char *s, size_t n, uint32_t *v)
{
    if (n == 0 || n > 10 || (n > 1 && s[0] == '0')) {
        return false;
    }
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        x = x * 10 + (uint64_t)(s[i] - '0');
    }
    if (x > UINT32_MAX) {
        return false;
    }
    *v = (uint32_t)x;
    return true;
}

static const char PRE[] = "{\"id\":\"";
static const char MID[] = "\",\"version\":\"1.0\",\"params\":{\"img\":\"";
static const char SUF[] = "\"},\"method\":\"thing.event.property.post\"}";

/* Splits a payload into its alink id and value; false if it is not exactly the shape. */
bool sim_split_payload(const char *p, size_t n, uint32_t *alink, const char **val, size_t *vn);
bool sim_split_payload(const char *p, size_t n, uint32_t *alink, const char **val, size_t *vn)
{
    size_t a = sizeof PRE - 1, m = sizeof MID - 1, z = sizeof SUF - 1;
    if (n < a + m + z + 1 || memcmp(p, PRE, a) != 0 || memcmp(p + n - z, SUF, z) != 0) {
        return false;
    }
    const char *q = memchr(p + a, '"', n - a);
    if (q == NULL || !parse_u32(p + a, (size_t)(q - (p + a)), alink)) {
        return false;
    }
    size_t off = (size_t)(q - p);
    if (n - off < m + z || memcmp(q, MID, m) != 0) {
        return false;
    }
    *val = q + m;
    *vn = n - off - m - z;
    return memchr(*val, '"', *vn) == NULL;
}

static uint32_t expect_id(uint32_t pid, uint32_t seq)
{
    return (pid % 4294967u) * 1000u + seq % 1000u;
}

static int pic_count(const sim_pic_t *p)
{
    uc_pic_t u;
    if (uc_pic_init(&u, p->fmt, p->pid, p->size, uc_crc32(p->jpeg, p->size), p->chunk) != UC_OK) {
        return -1;
    }
    return u.count;
}

static void rx_check_complete(sim_t *s, int k)
{
    rx_t *rx = &s->rx[k];
    const sim_pic_t *p = &s->pics[k];
    int count = pic_count(p);
    for (int i = 0; i < count; i++) {
        if (!rx->got[i]) {
            return;
        }
    }
    size_t tot = 0;
    for (int i = 0; i < count; i++) {
        tot += rx->len[i];
    }
    uint8_t *all = malloc(tot + 1);
    size_t o = 0;
    for (int i = 0; i < count; i++) {
        if (rx->len[i]) {
            memcpy(all + o, rx->data[i], rx->len[i]);
        }
        o += rx->len[i];
    }
    if (tot == p->size && memcmp(all, p->jpeg, tot) == 0) {
        rx->complete = true;
    } else {
        s->r->broker_conflicts++;
    }
    free(all);
}

static void rx_store(sim_t *s, int k, uint32_t seq, uint8_t *data, size_t len)
{
    rx_t *rx = &s->rx[k];
    if (rx->got[seq]) {
        if (rx->len[seq] == len && (len == 0 || memcmp(rx->data[seq], data, len) == 0)) {
            s->r->broker_duplicates++;
        } else {
            s->r->broker_conflicts++;
        }
        free(data);
        return;
    }
    rx->got[seq] = true;
    rx->data[seq] = data;
    rx->len[seq] = len;
    if (!rx->complete) {
        rx_check_complete(s, k);
    }
}

static void rx_ingest(sim_t *s, const char *p, size_t n)
{
    uint32_t alink;
    const char *v;
    size_t vn;
    if (!sim_split_payload(p, n, &alink, &v, &vn)) {
        s->r->broker_conflicts++;
        return;
    }
    if (vn > UC_MAX_VALUE_CHARS) {
        s->r->broker_conflicts++; /* the thing model would reject it */
        return;
    }
    if (vn >= 3 && memcmp(v, "V2;", 3) == 0) {
        const char *f[6];
        size_t fl[6];
        const char *c = v + 3, *end = v + vn;
        for (int i = 0; i < 6; i++) {
            const char *semi = i < 5 ? memchr(c, ';', (size_t)(end - c)) : end;
            if (semi == NULL) {
                s->r->broker_conflicts++;
                return;
            }
            f[i] = c;
            fl[i] = (size_t)(semi - c);
            c = semi + (i < 5);
        }
        uint32_t pid, seq, count, size;
        if (!parse_u32(f[0], fl[0], &pid) || !parse_u32(f[1], fl[1], &seq) ||
            !parse_u32(f[2], fl[2], &count) || !parse_u32(f[3], fl[3], &size) || fl[4] != 8 ||
            seq >= count || alink != expect_id(pid, seq)) {
            s->r->broker_conflicts++;
            return;
        }
        char crc[9];
        for (int k = 0; k < s->n; k++) {
            const sim_pic_t *pp = &s->pics[k];
            if (pp->fmt != UC_FMT_V2 || pp->pid != pid) {
                continue;
            }
            snprintf(crc, sizeof crc, "%08X", (unsigned)uc_crc32(pp->jpeg, pp->size));
            size_t dn = 0;
            uint8_t *d = sim_b64_decode(f[5], fl[5], &dn);
            if (d == NULL || (int)count != pic_count(pp) || size != pp->size ||
                memcmp(f[4], crc, 8) != 0 || (seq + 1 < count && dn % 3 != 0)) {
                free(d);
                s->r->broker_conflicts++;
                return;
            }
            rx_store(s, k, seq, d, dn);
            return;
        }
        s->r->broker_conflicts++;
        return;
    }
    /* v1 */
    uint32_t seq = alink % 1000u;
    for (int k = 0; k < s->n; k++) {
        const sim_pic_t *pp = &s->pics[k];
        if (pp->fmt != UC_FMT_V1 || alink / 1000u != pp->pid % 4294967u) {
            continue;
        }
        int count = pic_count(pp);
        if ((int)seq >= count) {
            break;
        }
        bool is_end = vn == 3 && memcmp(v, "END", 3) == 0;
        if (is_end != ((int)seq == count - 1) || (!is_end && vn % 2 != 0)) {
            break;
        }
        size_t dn = is_end ? 0 : vn / 2;
        uint8_t *d = malloc(dn + 1);
        for (size_t i = 0; i < dn; i++) {
            unsigned x;
            if (sscanf(v + 2 * i, "%2X", &x) != 1 || !((v[2 * i] >= '0' && v[2 * i] <= '9') || (v[2 * i] >= 'A' && v[2 * i] <= 'F'))) {
                free(d);
                s->r->broker_conflicts++;
                return;
            }
            d[i] = (uint8_t)x;
        }
        rx_store(s, k, seq, d, dn);
        return;
    }
    s->r->broker_conflicts++;
}

/* ------------------------------------------------------------------ broker -- */

static void broker_arrive(sim_t *s, ev_t *e)
{
    if (e->epoch != s->epoch) {
        return; /* the connection died while it was on the wire */
    }
    s->r->broker_arrivals++;
    if (s->c->rate_limit > 0) {
        unsigned recent = 0;
        for (unsigned i = 0; i < s->acc_n; i++) {
            uint32_t t = s->acc[(s->acc_head + i) % 64];
            if (!reached(s->now, t + 1000u)) {
                recent++;
            }
        }
        if (recent >= s->c->rate_limit) {
            s->r->throttled++;
            if (s->c->throttle_mode != SIM_THR_DROP) {
                push_ev(s, (ev_t){s->now + delay(s), EV_PUBACK, e->msg_id, 0, 0, s->epoch, NULL, 0});
            }
            if (s->c->throttle_mode == SIM_THR_REPLY) {
                uint32_t alink;
                const char *v;
                size_t vn;
                if (sim_split_payload(e->payload, e->len, &alink, &v, &vn)) {
                    push_ev(s, (ev_t){s->now + delay(s) + 5, EV_REPLY, 0, alink, 429, s->epoch, NULL, 0});
                }
            }
            return;
        }
        if (s->acc_n == 64) {
            s->acc_head = (s->acc_head + 1) % 64;
            s->acc_n--;
        }
        s->acc[(s->acc_head + s->acc_n) % 64] = s->now;
        s->acc_n++;
    }
    uint32_t alink = 0;
    const char *v;
    size_t vn;
    (void)sim_split_payload(e->payload, e->len, &alink, &v, &vn);
    if (s->rejects_left > 0) {
        s->rejects_left--;
        push_ev(s, (ev_t){s->now + delay(s), EV_PUBACK, e->msg_id, 0, 0, s->epoch, NULL, 0});
        push_ev(s, (ev_t){s->now + delay(s) + 5, EV_REPLY, 0, alink, 6310, s->epoch, NULL, 0});
        return;
    }
    if (s->c->trace != NULL) {
        fwrite(e->payload, 1, e->len, s->c->trace);
        fputc('\n', s->c->trace);
    }
    rx_ingest(s, e->payload, e->len);
    if (!roll(s, s->c->loss_ack_pm)) {
        push_ev(s, (ev_t){s->now + delay(s), EV_PUBACK, e->msg_id, 0, 0, s->epoch, NULL, 0});
    }
    if (s->c->replies) {
        push_ev(s, (ev_t){s->now + delay(s) + 5, EV_REPLY, 0, alink, 200, s->epoch, NULL, 0});
    }
}

/* ------------------------------------------------------------------ client -- */

static void transmit(sim_t *s, obx_t *o)
{
    o->last_tx = s->now;
    if (roll(s, s->c->loss_pub_pm)) {
        return;
    }
    char *copy = malloc(o->len);
    memcpy(copy, o->payload, o->len);
    push_ev(s, (ev_t){s->now + delay(s), EV_ARRIVE, o->msg_id, 0, 0, s->epoch, copy, o->len});
}

static int32_t client_publish(sim_t *s, const char *p, size_t n)
{
    if (roll(s, s->c->fail_pub_pm)) {
        return -1;
    }
    obx_t *o = NULL;
    for (int i = 0; i < OUTBOX_CAP; i++) {
        if (!s->obx[i].used) {
            o = &s->obx[i];
            break;
        }
    }
    if (o == NULL || roll(s, s->c->full_pub_pm)) {
        return -2;
    }
    int32_t id = s->next_msg_id;
    s->next_msg_id = s->next_msg_id == 65535 ? 1 : s->next_msg_id + 1;
    o->used = true;
    o->msg_id = id;
    o->payload = malloc(n);
    memcpy(o->payload, p, n);
    o->len = n;
    o->created = s->now;
    if (s->connected) {
        transmit(s, o);
    } else {
        o->last_tx = s->now - s->c->retransmit_ms; /* goes out on connect */
    }
    return id;
}

static void obx_free(obx_t *o)
{
    free(o->payload);
    memset(o, 0, sizeof *o);
}

static void client_timers(sim_t *s, uint32_t *next)
{
    for (int i = 0; i < OUTBOX_CAP; i++) {
        obx_t *o = &s->obx[i];
        if (!o->used) {
            continue;
        }
        if (s->c->expiry_ms && reached(s->now, o->created + s->c->expiry_ms)) {
            int32_t id = o->msg_id;
            obx_free(o);
            if (s->c->report_deleted) {
                uc_up_lost(&s->up, id, s->now);
            }
            continue;
        }
        if (s->connected && s->c->retransmit_ms && reached(s->now, o->last_tx + s->c->retransmit_ms)) {
            transmit(s, o);
        }
        if (s->c->retransmit_ms && s->connected) {
            uint32_t t = o->last_tx + s->c->retransmit_ms;
            if ((int32_t)(t - *next) < 0) *next = t;
        }
        if (s->c->expiry_ms) {
            uint32_t t = o->created + s->c->expiry_ms;
            if ((int32_t)(t - *next) < 0) *next = t;
        }
    }
}

static void deliver(sim_t *s, ev_t *e)
{
    if (e->kind == EV_ARRIVE) {
        broker_arrive(s, e);
        free(e->payload);
        return;
    }
    if (e->epoch != s->epoch || s->booting) {
        return;
    }
    if (e->kind == EV_PUBACK) {
        for (int i = 0; i < OUTBOX_CAP; i++) {
            if (s->obx[i].used && s->obx[i].msg_id == e->msg_id) {
                obx_free(&s->obx[i]);
                s->r->pubacks++;
                uc_up_acked(&s->up, e->msg_id, s->now); /* MQTT_EVENT_PUBLISHED */
                return;
            }
        }
        return; /* duplicate PUBACK: esp-mqtt reports nothing */
    }
    uc_up_reply(&s->up, e->alink, e->code, s->now);
}

/* ------------------------------------------------------------------ device -- */

static bool want_connected(const sim_t *s)
{
    if (s->booting) {
        return false;
    }
    uint32_t rel = s->now - s->c->start_ms;
    for (int i = 0; i < s->c->n_outages; i++) {
        if (rel >= s->c->outage[i].at && rel - s->c->outage[i].at < s->c->outage[i].dur) {
            return false;
        }
    }
    return true;
}

static void reboot(sim_t *s)
{
    s->r->reboots++;
    s->epoch++;
    s->connected = false;
    for (int i = 0; i < OUTBOX_CAP; i++) {
        if (s->obx[i].used) {
            obx_free(&s->obx[i]);
        }
    }
    s->next_msg_id = 1;
    s->r->fsm = s->up.stats;
    (void)uc_up_init(&s->up, &s->up_cfg);
    s->booting = true;
    s->boot_until = s->now + s->c->boot_ms;
    s->cur = -1;
    s->pub_n = 0;
}

static void check_rate(sim_t *s)
{
    /* publishes in the trailing 1000 ms, this one included */
    unsigned k = s->pub_n < UC_UP_MAX_RATE + 1 ? s->pub_n : UC_UP_MAX_RATE + 1;
    unsigned in = 1;
    for (unsigned i = 0; i < k; i++) {
        if (!reached(s->now, s->pub_times[i] + 1000u)) {
            in++;
        }
    }
    if (in > s->r->max_per_sec) {
        s->r->max_per_sec = in;
    }
    if (in > s->up_cfg.max_per_sec) {
        s->r->rate_violations++;
    }
    memmove(&s->pub_times[1], &s->pub_times[0], UC_UP_MAX_RATE * sizeof s->pub_times[0]);
    s->pub_times[0] = s->now;
    s->pub_n++;
}

static char msgbuf[UC_MSG_MAX];

static void do_publish(sim_t *s, const uc_act_t *a)
{
    const sim_pic_t *p = &s->pics[s->cur];
    uint32_t off, len;
    s->r->publishes++;
    check_rate(s);
    if (uc_pic_piece(&s->up.pic, a->seq, &off, &len) != UC_OK) {
        s->r->id_violations++;
        return;
    }
    int n = uc_msg_build(&s->up.pic, a->seq, p->jpeg + off, len, msgbuf, sizeof msgbuf);
    if (n <= 0 || a->alink_id != expect_id(p->pid, a->seq)) {
        s->r->id_violations++;
    }
    rx_t *rx = &s->rx[s->cur];
    uint64_t h = fnv(msgbuf, (size_t)(n > 0 ? n : 0));
    if (rx->hashed[a->seq] && rx->hash[a->seq] != h) {
        s->r->id_violations++; /* a resend must be byte-identical */
    }
    rx->hashed[a->seq] = true;
    rx->hash[a->seq] = h;
    int32_t id = client_publish(s, msgbuf, (size_t)n);
    if (uc_up_sent(&s->up, a->seq, id, s->now) != UC_OK) {
        s->r->id_violations++;
    }
    unsigned f = uc_up_in_flight(&s->up);
    if (f > s->r->max_in_flight) {
        s->r->max_in_flight = f;
    }
    if (f > s->up_cfg.window) {
        s->r->window_violations++;
    }
}

static bool begin_next(sim_t *s)
{
    for (int k = 0; k < s->n; k++) {
        if (!s->done[k]) {
            const sim_pic_t *p = &s->pics[k];
            uc_pic_t pic;
            if (uc_pic_init(&pic, p->fmt, p->pid, p->size, uc_crc32(p->jpeg, p->size), p->chunk) !=
                    UC_OK ||
                uc_up_begin(&s->up, &pic, s->now) != UC_OK) {
                s->r->id_violations++;
                s->done[k] = true;
                continue;
            }
            s->cur = k;
            return true;
        }
    }
    return false;
}

int sim_run(const sim_cfg_t *cfg, const uc_up_cfg_t *up_cfg, const sim_pic_t *pics, int n,
            uint32_t limit_ms, sim_result_t *res)
{
    static sim_t S;
    sim_t *s = &S;
    memset(s, 0, sizeof *s);
    memset(res, 0, sizeof *res);
    if (n < 1 || n > SIM_MAX_PICS) {
        return -1;
    }
    s->c = cfg;
    s->pics = pics;
    s->n = n;
    s->r = res;
    s->now = cfg->start_ms;
    s->rng = cfg->seed ? cfg->seed : 1;
    s->next_msg_id = 1;
    s->rejects_left = cfg->reject_first;
    s->up_cfg = *up_cfg;
    s->cur = -1;
    s->rx = calloc((size_t)n, sizeof *s->rx);
    if (uc_up_init(&s->up, up_cfg) != UC_OK) {
        free(s->rx);
        return -1;
    }
    unsigned spin = 0;
    bool finished = false;
    while (!finished) {
        uint32_t rel = s->now - cfg->start_ms;
        if (rel >= limit_ms) {
            break;
        }
        if (s->reboot_next < cfg->n_reboots && rel >= cfg->reboot_at[s->reboot_next]) {
            s->reboot_next++;
            reboot(s);
        }
        if (s->booting && reached(s->now, s->boot_until)) {
            s->booting = false;
        }
        bool w = want_connected(s);
        if (w != s->connected) {
            s->connected = w;
            if (w) {
                uc_up_connected(&s->up, s->now);
                for (int i = 0; i < OUTBOX_CAP; i++) { /* resend the outbox on reconnect */
                    if (s->obx[i].used) {
                        transmit(s, &s->obx[i]);
                    }
                }
            } else {
                s->epoch++;
                uc_up_disconnected(&s->up, s->now);
            }
        }
        for (long i; (i = earliest_ev(s)) >= 0 && reached(s->now, s->ev[i].t);) {
            ev_t e = s->ev[i];
            s->ev[i] = s->ev[--s->n_ev];
            deliver(s, &e);
        }
        uint32_t next = s->now + 1000u;
        client_timers(s, &next);
        uint32_t wake = next;
        for (int guard = 0; guard < 10000; guard++) {
            uc_act_t a = uc_up_poll(&s->up, s->now);
            if (a.kind == UC_ACT_PUBLISH) {
                do_publish(s, &a);
                continue;
            }
            if (a.kind == UC_ACT_DONE) {
                s->done[s->cur] = true;
                if (!s->rx[s->cur].complete && cfg->throttle_mode != SIM_THR_SILENT) {
                    res->early_done++;
                }
                s->cur = -1;
                continue;
            }
            if (a.kind == UC_ACT_IDLE) {
                if (s->booting || begin_next(s)) {
                    if (s->booting) {
                        break;
                    }
                    continue;
                }
                finished = true;
                break;
            }
            wake = a.wake_at;
            break;
        }
        if (finished) {
            break;
        }
        long ei = earliest_ev(s);
        if (ei >= 0 && (int32_t)(s->ev[ei].t - wake) < 0) {
            wake = s->ev[ei].t;
        }
        if ((int32_t)(next - wake) < 0) {
            wake = next;
        }
        if (s->booting && (int32_t)(s->boot_until - wake) < 0) {
            wake = s->boot_until;
        }
        if (s->reboot_next < cfg->n_reboots) {
            uint32_t t = cfg->start_ms + cfg->reboot_at[s->reboot_next];
            if ((int32_t)(t - wake) < 0) wake = t;
        }
        for (int i = 0; i < cfg->n_outages; i++) {
            uint32_t a = cfg->start_ms + cfg->outage[i].at, b = a + cfg->outage[i].dur;
            if ((int32_t)(a - s->now) > 0 && (int32_t)(a - wake) < 0) wake = a;
            if ((int32_t)(b - s->now) > 0 && (int32_t)(b - wake) < 0) wake = b;
        }
        if ((int32_t)(wake - s->now) <= 0) {
            if (++spin > 100000) {
                res->stuck++;
                break;
            }
            wake = s->now + 1; /* events due now were handled; nothing may wait on "now" forever */
        } else {
            spin = 0;
        }
        s->now = wake;
    }
    res->elapsed_ms = s->now - cfg->start_ms;
    res->all_done = true;
    res->all_complete = true;
    for (int k = 0; k < n; k++) {
        res->all_done = res->all_done && s->done[k];
        res->all_complete = res->all_complete && s->rx[k].complete;
        for (unsigned i = 0; i < UC_MAX_CHUNKS; i++) {
            free(s->rx[k].data[i]);
        }
    }
    if (res->reboots == 0 || s->up.stats.published > 0) {
        res->fsm = s->up.stats;
    }
    for (size_t i = 0; i < s->n_ev; i++) {
        free(s->ev[i].payload);
    }
    free(s->ev);
    for (int i = 0; i < OUTBOX_CAP; i++) {
        if (s->obx[i].used) {
            obx_free(&s->obx[i]);
        }
    }
    free(s->rx);
    return 0;
}

/* Upload state machine: step-by-step unit tests, then whole-path simulations through
 * lost publishes and acks, disconnects, reboots and throttling. */
#include <stdlib.h>

#include "sim.h"
#include "th.h"
#include "uc_codec.h"
#include "uc_upload.h"

static uc_up_t up;

static uc_up_cfg_t cfg_fast(void)
{
    uc_up_cfg_t c;
    uc_up_cfg_default(&c);
    c.window = 2;
    c.max_per_sec = 10; /* 100 ms spacing */
    c.ack_timeout_ms = 5000;
    c.retry_ms = 700;
    return c;
}

static uc_pic_t pic_n(uint32_t pid, uint32_t messages)
{
    uc_pic_t p;
    (void)uc_pic_init(&p, UC_FMT_V2, pid, messages * 3, 0x1234, 3);
    return p;
}

static void start(uint32_t now, uint32_t pid, uint32_t messages)
{
    uc_up_cfg_t c = cfg_fast();
    CHECK_EQ(uc_up_init(&up, &c), UC_OK);
    uc_pic_t p = pic_n(pid, messages);
    CHECK_EQ(uc_up_begin(&up, &p, now), UC_OK);
    uc_up_connected(&up, now);
}

/* Expects a PUBLISH of seq at now and reports msg_id. */
static void expect_pub(uint32_t now, uint32_t seq, int32_t msg_id)
{
    uc_act_t a = uc_up_poll(&up, now);
    CHECK_EQ(a.kind, UC_ACT_PUBLISH);
    CHECK_EQ(a.seq, seq);
    CHECK_EQ(a.alink_id, uc_alink_id(up.pic.pid, seq));
    CHECK_EQ(uc_up_sent(&up, a.seq, msg_id, now), UC_OK);
}

static void expect_wait(uint32_t now, uint32_t until)
{
    uc_act_t a = uc_up_poll(&up, now);
    CHECK_EQ(a.kind, UC_ACT_WAIT);
    CHECK_EQ(a.wake_at, until);
}

static void t_cfg_checks(void)
{
    uc_up_cfg_t c = cfg_fast();
    c.window = 0;
    CHECK_EQ(uc_up_init(&up, &c), UC_E_ARG);
    c = cfg_fast();
    c.window = UC_UP_MAX_WINDOW + 1;
    CHECK_EQ(uc_up_init(&up, &c), UC_E_ARG);
    c = cfg_fast();
    c.max_per_sec = 0;
    CHECK_EQ(uc_up_init(&up, &c), UC_E_ARG);
    c = cfg_fast();
    c.ack_timeout_ms = 0;
    CHECK_EQ(uc_up_init(&up, &c), UC_E_ARG);
    c = cfg_fast();
    CHECK_EQ(uc_up_init(&up, &c), UC_OK);
    CHECK_EQ(uc_up_poll(&up, 5).kind, UC_ACT_IDLE);
    CHECK(!uc_up_busy(&up));
    uc_pic_t p = pic_n(1, 3);
    CHECK_EQ(uc_up_begin(&up, &p, 0), UC_OK);
    CHECK_EQ(uc_up_begin(&up, &p, 0), UC_E_STATE);
    CHECK(uc_up_busy(&up));
    CHECK_EQ(uc_up_sent(&up, 0, 1, 0), UC_E_STATE); /* nothing was asked */
}

static void t_window_pacing_done(void)
{
    start(1000, 42, 3);
    expect_pub(1000, 0, 11);
    expect_wait(1000, 1100); /* pacing */
    expect_wait(1050, 1100);
    expect_pub(1100, 1, 12);
    expect_wait(1200, 6000); /* window (2) full: wait for the earliest ack deadline */
    uc_up_acked(&up, 11, 1250);
    expect_pub(1250, 2, 13);
    CHECK_EQ(uc_up_in_flight(&up), 2);
    uc_up_acked(&up, 13, 1300);
    uc_up_acked(&up, 13, 1301); /* duplicate: stale */
    CHECK(uc_up_busy(&up));
    uc_up_acked(&up, 12, 1400);
    CHECK_EQ(uc_up_poll(&up, 1400).kind, UC_ACT_DONE);
    CHECK_EQ(uc_up_poll(&up, 1400).kind, UC_ACT_IDLE);
    CHECK_EQ(up.stats.pictures, 1);
    CHECK_EQ(up.stats.published, 3);
    CHECK_EQ(up.stats.resent, 0);
    CHECK_EQ(up.stats.stale, 1);
    /* pacing carries over to the next picture */
    uc_pic_t p = pic_n(43, 1);
    CHECK_EQ(uc_up_begin(&up, &p, 1210), UC_OK);
    expect_wait(1210, 1350);
    expect_pub(1350, 0, 14);
}

static void t_disconnected_no_publish(void)
{
    start(0, 1, 2);
    uc_up_disconnected(&up, 0);
    CHECK_EQ(uc_up_poll(&up, 0).kind, UC_ACT_WAIT);
    CHECK_EQ(up.stats.published, 0);
    uc_up_connected(&up, 500);
    expect_pub(500, 0, 1);
    /* no ack timeout while disconnected; deadlines re-armed on reconnect */
    uc_up_disconnected(&up, 600);
    CHECK_EQ(uc_up_poll(&up, 60000).kind, UC_ACT_WAIT);
    CHECK_EQ(up.stats.timeouts, 0);
    uc_up_connected(&up, 60000);
    expect_pub(60000, 1, 2);
    expect_wait(60100, 65000);
    uc_up_acked(&up, 1, 60200); /* the client's outbox resend got through */
    uc_up_acked(&up, 2, 60200);
    CHECK_EQ(uc_up_poll(&up, 60200).kind, UC_ACT_DONE);
}

static void t_publish_failure_retry(void)
{
    start(0, 9, 2);
    expect_pub(0, 0, -2); /* outbox full */
    CHECK_EQ(up.stats.failed, 1);
    expect_pub(100, 1, -1);
    expect_wait(200, 700); /* both wait retry_ms */
    expect_pub(700, 0, 5);
    expect_pub(800, 1, 6);
    CHECK_EQ(up.stats.resent, 2);
    uc_up_acked(&up, 5, 900);
    uc_up_acked(&up, 6, 900);
    CHECK_EQ(uc_up_poll(&up, 900).kind, UC_ACT_DONE);
}

static void t_ack_timeout_resend_same_id(void)
{
    start(0, 77, 1);
    expect_pub(0, 0, 100);
    expect_wait(10, 5000);
    expect_pub(5000, 0, 101); /* same seq, so same alink id */
    CHECK_EQ(up.stats.timeouts, 1);
    CHECK_EQ(up.stats.resent, 1);
    uc_up_acked(&up, 100, 5100); /* the first attempt's late PUBACK settles it */
    CHECK_EQ(uc_up_poll(&up, 5100).kind, UC_ACT_DONE);
    uc_up_acked(&up, 101, 5200);
    CHECK_EQ(up.stats.stale, 1);
}

static void t_lost_resends_now(void)
{
    start(0, 5, 1);
    expect_pub(0, 0, 7);
    uc_up_lost(&up, 7, 300); /* MQTT_EVENT_DELETED */
    CHECK_EQ(up.stats.lost, 1);
    expect_pub(300, 0, 8);
    uc_up_acked(&up, 7, 310); /* cannot happen for a deleted id; ignored */
    CHECK(uc_up_busy(&up));
    CHECK_EQ(uc_up_poll(&up, 310).kind, UC_ACT_WAIT);
    uc_up_acked(&up, 8, 320);
    CHECK_EQ(uc_up_poll(&up, 320).kind, UC_ACT_DONE);
}

static void t_throttle_reply_resend_slower(void)
{
    uc_up_cfg_t c = cfg_fast();
    c.reply_grace_ms = 500;
    c.throttle_hold_ms = 3000;
    CHECK_EQ(uc_up_init(&up, &c), UC_OK);
    uc_pic_t p = pic_n(12, 2);
    CHECK_EQ(uc_up_begin(&up, &p, 0), UC_OK);
    uc_up_connected(&up, 0);
    expect_pub(0, 0, 1);
    expect_pub(100, 1, 2);
    uc_up_acked(&up, 1, 150);
    uc_up_acked(&up, 2, 160);
    expect_wait(160, 660); /* all acked: grace for replies */
    uc_up_reply(&up, uc_alink_id(12, 0), 200, 170);
    uc_up_reply(&up, uc_alink_id(12, 1), 429, 180); /* dropped by the platform */
    CHECK_EQ(up.stats.throttled, 1);
    CHECK_EQ(uc_up_interval(&up, 180), 200); /* half the rate */
    expect_wait(180, 300);
    expect_pub(300, 1, 3);
    uc_up_acked(&up, 3, 350);
    expect_wait(400, 850);
    CHECK_EQ(uc_up_poll(&up, 850).kind, UC_ACT_DONE);
    CHECK_EQ(uc_up_interval(&up, 3180), 100); /* back to full rate after the hold */
    /* a reply for another picture is stale */
    uc_up_reply(&up, uc_alink_id(13, 0), 429, 900);
    CHECK_EQ(up.stats.stale, 1);
}

static void t_throttle_reply_before_puback(void)
{
    start(0, 3, 1);
    expect_pub(0, 0, 1);
    uc_up_reply(&up, 3000, 429, 50); /* the reply overtakes the PUBACK */
    uc_up_acked(&up, 1, 60);         /* must not settle it */
    CHECK(uc_up_busy(&up));
    uc_act_t a = uc_up_poll(&up, 400);
    CHECK_EQ(a.kind, UC_ACT_PUBLISH);
    CHECK_EQ(a.alink_id, 3000);
    CHECK_EQ(uc_up_sent(&up, 0, 2, 400), UC_OK);
    uc_up_acked(&up, 2, 450);
    CHECK_EQ(uc_up_poll(&up, 450).kind, UC_ACT_DONE);
}

static void t_reject_holds(void)
{
    uc_up_cfg_t c = cfg_fast();
    c.reject_hold_ms = 60000;
    c.reply_grace_ms = 1000;
    CHECK_EQ(uc_up_init(&up, &c), UC_OK);
    uc_pic_t p = pic_n(8, 1);
    CHECK_EQ(uc_up_begin(&up, &p, 0), UC_OK);
    uc_up_connected(&up, 0);
    expect_pub(0, 0, 1);
    uc_up_acked(&up, 1, 100);
    uc_up_reply(&up, 8000, 6310, 120); /* thing model says no: text too long */
    CHECK_EQ(up.stats.rejected, 1);
    CHECK_EQ(up.stats.last_code, 6310);
    expect_wait(200, 60120);
    expect_pub(60120, 0, 2);
    uc_up_acked(&up, 2, 60200);
    CHECK_EQ(uc_up_poll(&up, 61200).kind, UC_ACT_DONE);
}

static void t_qos0_and_abort(void)
{
    start(0, 1, 2);
    expect_pub(0, 0, 0); /* QoS 0 publish: nothing to wait for */
    expect_pub(100, 1, 0);
    CHECK_EQ(uc_up_poll(&up, 100).kind, UC_ACT_DONE);
    start(0, 2, 5);
    expect_pub(0, 0, 1);
    uc_up_abort(&up);
    CHECK(!uc_up_busy(&up));
    CHECK_EQ(uc_up_poll(&up, 10).kind, UC_ACT_IDLE);
    uc_up_acked(&up, 1, 20);
    CHECK_EQ(up.stats.stale, 1);
}

static void t_time_wrap(void)
{
    uint32_t t = 0xFFFFFF00u;
    start(t, 6, 2);
    expect_pub(t, 0, 1);
    expect_wait(t + 10, t + 100);
    expect_pub(t + 100, 1, 2); /* 0xFFFFFF64 */
    expect_wait(t + 300, t + 5000); /* deadline beyond the wrap */
    expect_pub(t + 5000, 0, 3);
    uc_up_acked(&up, 3, t + 5100);
    uc_up_acked(&up, 2, t + 5100);
    CHECK_EQ(uc_up_poll(&up, t + 5100).kind, UC_ACT_DONE);
}

static void t_reply_grace_wait(void)
{
    uc_up_cfg_t c = cfg_fast();
    c.reply_grace_ms = 2000;
    CHECK_EQ(uc_up_init(&up, &c), UC_OK);
    uc_pic_t p = pic_n(4, 1);
    CHECK_EQ(uc_up_begin(&up, &p, 0), UC_OK);
    uc_up_connected(&up, 0);
    expect_pub(0, 0, 1);
    uc_up_acked(&up, 1, 10);
    expect_wait(10, 2010);
    CHECK_EQ(uc_up_poll(&up, 2010).kind, UC_ACT_DONE);
}

/* ---------------------------------------------------------------- simulations -- */

static uint8_t *synth_jpeg(uint32_t size, uint32_t seed)
{
    uint8_t *j = malloc(size);
    uint32_t r = seed;
    for (uint32_t i = 0; i < size; i++) {
        j[i] = (uint8_t)th_rand(&r);
    }
    j[0] = 0xFF;
    j[1] = 0xD8;
    j[size - 2] = 0xFF;
    j[size - 1] = 0xD9;
    return j;
}

static uint8_t *golden[3];
static size_t golden_len[3];

static int load_golden(sim_pic_t *pics)
{
    static const char *names[3] = {"tiny.jpg", "odd.jpg", "qvga.jpg"};
    int n = 0;
    for (int i = 0; i < 3; i++) {
        if (golden[i] == NULL) {
            char path[4096];
            snprintf(path, sizeof path, "%s/images/%s", th_vectors, names[i]);
            golden[i] = th_read_file(path, &golden_len[i]);
        }
        if (golden[i] != NULL) {
            pics[n++] = (sim_pic_t){golden[i], (uint32_t)golden_len[i], 100u + (uint32_t)i,
                                    i == 1 ? UC_FMT_V1 : UC_FMT_V2, i == 1 ? 800u : 3000u};
        }
    }
    CHECK_EQ(n, 3);
    return n;
}

static void expect_clean(const sim_result_t *r, const char *what)
{
    if (!(r->all_done && r->all_complete) || r->window_violations || r->rate_violations ||
        r->id_violations || r->early_done || r->broker_conflicts || r->stuck) {
        th_fail(__FILE__, __LINE__,
                "%s: done=%d complete=%d window=%u rate=%u id=%u early=%u conflicts=%u stuck=%u "
                "(t=%u ms, pubs=%u, throttled=%u)",
                what, r->all_done, r->all_complete, r->window_violations, r->rate_violations,
                r->id_violations, r->early_done, r->broker_conflicts, r->stuck, r->elapsed_ms,
                r->publishes, r->throttled);
    }
}

static void t_sim_clean_link(void)
{
    sim_cfg_t c;
    sim_cfg_default(&c);
    uc_up_cfg_t u;
    uc_up_cfg_default(&u);
    sim_pic_t pics[4];
    int n = load_golden(pics);
    uint8_t *big = synth_jpeg(60000, 5);
    pics[n++] = (sim_pic_t){big, 60000, 4294967295u, UC_FMT_V2, 7200};
    sim_result_t r;
    CHECK_EQ(sim_run(&c, &u, pics, n, 600000, &r), 0);
    expect_clean(&r, "clean");
    CHECK_EQ(r.throttled, 0);
    CHECK_EQ(r.fsm.resent, 0);
    CHECK_EQ(r.broker_duplicates, 0);
    CHECK(r.max_in_flight <= u.window);
    CHECK(r.max_per_sec <= u.max_per_sec);
    CHECK_EQ(r.fsm.pictures, (unsigned)n);
    free(big);
}

static void t_sim_lossy(void)
{
    sim_cfg_t c;
    sim_cfg_default(&c);
    c.loss_pub_pm = 100;
    c.loss_ack_pm = 100;
    c.fail_pub_pm = 20;
    c.full_pub_pm = 20;
    c.jitter_ms = 300; /* reorders */
    uc_up_cfg_t u;
    uc_up_cfg_default(&u);
    sim_pic_t pics[6];
    int n = load_golden(pics);
    uint8_t *a = synth_jpeg(45000, 1), *b = synth_jpeg(30001, 2);
    pics[n++] = (sim_pic_t){a, 45000, 7, UC_FMT_V2, 1500};
    pics[n++] = (sim_pic_t){b, 30001, 8, UC_FMT_V1, 2000};
    sim_result_t r;
    CHECK_EQ(sim_run(&c, &u, pics, n, 3600000, &r), 0);
    expect_clean(&r, "lossy");
    CHECK(r.fsm.resent > 0);
    CHECK(r.fsm.failed > 0);
    CHECK(r.broker_duplicates > 0);
    CHECK_EQ(r.throttled, 0); /* client retransmits included, still under 10/s */
    free(a);
    free(b);
}

static void t_sim_disconnects(void)
{
    sim_cfg_t c;
    sim_cfg_default(&c);
    c.loss_ack_pm = 50;
    c.latency_ms = 400; /* messages are always in flight when the link drops */
    c.outage[0].at = 2000, c.outage[0].dur = 5000;
    c.outage[1].at = 9000, c.outage[1].dur = 40000; /* longer than the outbox expiry */
    c.outage[2].at = 52000, c.outage[2].dur = 700;
    c.n_outages = 3;
    uc_up_cfg_t u;
    uc_up_cfg_default(&u);
    uint8_t *a = synth_jpeg(90000, 3);
    sim_pic_t pics[4];
    int n = load_golden(pics);
    pics[n++] = (sim_pic_t){a, 90000, 55, UC_FMT_V2, 999};
    sim_result_t r;
    CHECK_EQ(sim_run(&c, &u, pics, n, 3600000, &r), 0);
    expect_clean(&r, "disconnects");
    CHECK(r.elapsed_ms > 52700); /* it really went through the outages */
    if (!(r.fsm.lost > 0 || r.fsm.timeouts > 0)) {
        th_fail(__FILE__, __LINE__, "no loss seen: published %u resent %u lost %u timeouts %u stale %u elapsed %u", r.fsm.published, r.fsm.resent, r.fsm.lost, r.fsm.timeouts, r.fsm.stale, r.elapsed_ms);
    }
    free(a);
}

static void t_sim_reboots(void)
{
    sim_cfg_t c;
    sim_cfg_default(&c);
    c.loss_pub_pm = 50;
    c.reboot_at[0] = 4000;
    c.reboot_at[1] = 11000;
    c.reboot_at[2] = 11500; /* during boot */
    c.n_reboots = 3;
    uc_up_cfg_t u;
    uc_up_cfg_default(&u);
    uint8_t *a = synth_jpeg(80000, 4);
    sim_pic_t pics[4];
    int n = load_golden(pics);
    pics[n++] = (sim_pic_t){a, 80000, 56, UC_FMT_V2, 1200};
    sim_result_t r;
    CHECK_EQ(sim_run(&c, &u, pics, n, 3600000, &r), 0);
    expect_clean(&r, "reboots");
    CHECK_EQ(r.reboots, 3);
    CHECK(r.broker_duplicates > 0); /* resumed pictures resend chunks, byte-identical */
    free(a);
}

static void t_sim_throttle_drop(void)
{
    /* Misconfigured: 10/s with a wide window against a platform that allows 4/s and
     * drops the rest without a PUBACK. Ack timeouts and resends still finish it. */
    sim_cfg_t c;
    sim_cfg_default(&c);
    c.rate_limit = 4;
    c.throttle_mode = SIM_THR_DROP;
    uc_up_cfg_t u;
    uc_up_cfg_default(&u);
    u.max_per_sec = 10;
    u.window = 8;
    u.ack_timeout_ms = 4000;
    uint8_t *a = synth_jpeg(40000, 6);
    sim_pic_t pics[1] = {{a, 40000, 90, UC_FMT_V2, 900}};
    sim_result_t r;
    CHECK_EQ(sim_run(&c, &u, pics, 1, 3600000, &r), 0);
    expect_clean(&r, "throttle-drop");
    CHECK(r.throttled > 0);
    CHECK(r.fsm.timeouts > 0 || r.fsm.lost > 0);
    free(a);
}

static void t_sim_throttle_reply(void)
{
    /* The platform acks but answers 429: the machine resends and slows down. */
    sim_cfg_t c;
    sim_cfg_default(&c);
    c.rate_limit = 4;
    c.throttle_mode = SIM_THR_REPLY;
    c.replies = true;
    uc_up_cfg_t u;
    uc_up_cfg_default(&u);
    u.max_per_sec = 10;
    u.window = 8;
    u.reply_grace_ms = 1000;
    uint8_t *a = synth_jpeg(40000, 7);
    sim_pic_t pics[1] = {{a, 40000, 91, UC_FMT_V2, 900}};
    sim_result_t r;
    CHECK_EQ(sim_run(&c, &u, pics, 1, 3600000, &r), 0);
    expect_clean(&r, "throttle-reply");
    CHECK(r.fsm.throttled > 0);
    free(a);
}

static void t_sim_pacing_prevents_silent_loss(void)
{
    /* A platform that acks and silently drops over-rate messages can only be beaten
     * by pacing: at the default 5/s with window 4 nothing is ever throttled. */
    sim_cfg_t c;
    sim_cfg_default(&c);
    c.throttle_mode = SIM_THR_SILENT;
    c.loss_ack_pm = 30;
    c.latency_ms = 5;
    c.jitter_ms = 0;
    uc_up_cfg_t u;
    uc_up_cfg_default(&u);
    uint8_t *a = synth_jpeg(100000, 8);
    sim_pic_t pics[1] = {{a, 100000, 92, UC_FMT_V2, 600}};
    sim_result_t r;
    CHECK_EQ(sim_run(&c, &u, pics, 1, 3600000, &r), 0);
    expect_clean(&r, "silent");
    CHECK_EQ(r.throttled, 0);
    /* and the same platform with pacing off the limit really loses chunks */
    u.max_per_sec = 30;
    u.window = 16;
    CHECK_EQ(sim_run(&c, &u, pics, 1, 3600000, &r), 0);
    CHECK(r.throttled > 0);
    CHECK(!r.all_complete);
    free(a);
}

static void t_sim_rejects(void)
{
    sim_cfg_t c;
    sim_cfg_default(&c);
    c.replies = true;
    c.reject_first = 3;
    uc_up_cfg_t u;
    uc_up_cfg_default(&u);
    u.reply_grace_ms = 1500;
    u.reject_hold_ms = 20000;
    sim_pic_t pics[3];
    int n = load_golden(pics);
    sim_result_t r;
    CHECK_EQ(sim_run(&c, &u, pics, n, 3600000, &r), 0);
    expect_clean(&r, "rejects");
    CHECK(r.fsm.rejected >= 1);
    CHECK(r.elapsed_ms >= 20000);
}

static void t_sim_clock_wrap(void)
{
    sim_cfg_t c;
    sim_cfg_default(&c);
    c.start_ms = 0xFFFF0000u; /* 65 s before the 32-bit millisecond wrap */
    c.loss_ack_pm = 100;
    c.outage[0].at = 5000, c.outage[0].dur = 10000;
    c.n_outages = 1;
    uc_up_cfg_t u;
    uc_up_cfg_default(&u);
    uint8_t *a = synth_jpeg(200000, 9);
    sim_pic_t pics[1] = {{a, 200000, 93, UC_FMT_V2, 3000}};
    sim_result_t r;
    CHECK_EQ(sim_run(&c, &u, pics, 1, 3600000, &r), 0);
    expect_clean(&r, "wrap");
    CHECK(r.elapsed_ms > 15000);
    free(a);
}

static void t_sim_random_seeds(void)
{
    uint32_t rng = 2024;
    for (int it = 0; it < 40; it++) {
        sim_cfg_t c;
        sim_cfg_default(&c);
        c.seed = th_rand(&rng) | 1;
        c.start_ms = th_rand(&rng);
        c.latency_ms = th_rand(&rng) % 300;
        c.jitter_ms = th_rand(&rng) % 500;
        c.loss_pub_pm = th_rand(&rng) % 200;
        c.loss_ack_pm = th_rand(&rng) % 200;
        c.fail_pub_pm = th_rand(&rng) % 50;
        c.full_pub_pm = th_rand(&rng) % 50;
        c.retransmit_ms = (th_rand(&rng) % 2) ? 0 : 1000 + th_rand(&rng) % 9000;
        c.expiry_ms = (th_rand(&rng) % 3) ? 15000 : 0;
        c.report_deleted = th_rand(&rng) % 2;
        c.replies = th_rand(&rng) % 2;
        c.throttle_mode = c.replies ? SIM_THR_REPLY : SIM_THR_DROP;
        c.n_outages = (int)(th_rand(&rng) % 4);
        for (int i = 0; i < c.n_outages; i++) {
            c.outage[i].at = th_rand(&rng) % 60000;
            c.outage[i].dur = th_rand(&rng) % 30000;
        }
        c.n_reboots = (int)(th_rand(&rng) % 3);
        for (int i = 0; i < c.n_reboots; i++) {
            c.reboot_at[i] = (uint32_t)i * 20000u + th_rand(&rng) % 20000;
        }
        uc_up_cfg_t u;
        uc_up_cfg_default(&u);
        u.window = (uint16_t)(1 + th_rand(&rng) % 8);
        u.max_per_sec = (uint16_t)(1 + th_rand(&rng) % 9);
        u.ack_timeout_ms = 2000 + th_rand(&rng) % 20000;
        u.reply_grace_ms = c.replies ? 1200 : 0;
        uint32_t size = 1 + th_rand(&rng) % 60000;
        uint8_t *a = synth_jpeg(size < 4 ? 4 : size, th_rand(&rng));
        uc_format_t f = (th_rand(&rng) % 2) ? UC_FMT_V1 : UC_FMT_V2;
        uint32_t chunk = uc_chunk_sanitize(f, 300 + th_rand(&rng) % 8000);
        uc_pic_t probe;
        while (uc_pic_init(&probe, f, 1, size < 4 ? 4 : size, 0, chunk) == UC_E_RANGE) {
            chunk = uc_chunk_sanitize(f, chunk * 2);
        }
        sim_pic_t pics[2] = {{a, size < 4 ? 4 : size, th_rand(&rng), f, chunk},
                             {golden[0], (uint32_t)golden_len[0], 5, UC_FMT_V2, 48}};
        sim_result_t r;
        CHECK_EQ(sim_run(&c, &u, pics, golden[0] ? 2 : 1, 4u * 3600000u, &r), 0);
        char what[64];
        snprintf(what, sizeof what, "seed iteration %d", it);
        /* the platform itself may throttle (client retransmits are not paced) but
         * with drop/reply modes nothing is lost for good */
        expect_clean(&r, what);
        free(a);
    }
}

void suite_upload(void);
void suite_upload(void)
{
    th_run("upload/config_and_state_checks", t_cfg_checks);
    th_run("upload/window_pacing_done", t_window_pacing_done);
    th_run("upload/no_publish_while_disconnected", t_disconnected_no_publish);
    th_run("upload/publish_failure_retry", t_publish_failure_retry);
    th_run("upload/ack_timeout_resends_same_alink_id", t_ack_timeout_resend_same_id);
    th_run("upload/outbox_deleted_resends", t_lost_resends_now);
    th_run("upload/throttle_reply_resends_slower", t_throttle_reply_resend_slower);
    th_run("upload/throttle_reply_before_puback", t_throttle_reply_before_puback);
    th_run("upload/reject_reply_holds", t_reject_holds);
    th_run("upload/qos0_and_abort", t_qos0_and_abort);
    th_run("upload/clock_wrap", t_time_wrap);
    th_run("upload/reply_grace", t_reply_grace_wait);
    th_run("sim/clean_link", t_sim_clean_link);
    th_run("sim/lossy_link", t_sim_lossy);
    th_run("sim/disconnects", t_sim_disconnects);
    th_run("sim/reboots_resume", t_sim_reboots);
    th_run("sim/throttle_drop", t_sim_throttle_drop);
    th_run("sim/throttle_reply", t_sim_throttle_reply);
    th_run("sim/pacing_prevents_silent_loss", t_sim_pacing_prevents_silent_loss);
    th_run("sim/platform_rejects", t_sim_rejects);
    th_run("sim/clock_wrap", t_sim_clock_wrap);
    th_run("sim/random_seeds", t_sim_random_seeds);
    for (int i = 0; i < 3; i++) {
        free(golden[i]);
        golden[i] = NULL;
    }
}

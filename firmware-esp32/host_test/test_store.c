/* File names, picture counter, pending set, backoff, rate gate. */
#include "th.h"
#include "uc_backoff.h"
#include "uc_store.h"

static void t_names(void)
{
    char n[UC_NAME_MAX];
    uint32_t pid = 0;
    uc_datetime_t dt = {2025, 1, 31, 23, 59, 58};
    CHECK_EQ(uc_name_make(n, sizeof n, 123, &dt), 30);
    CHECK_STR(n, "0000000123_20250131-235958.jpg");
    CHECK_EQ(uc_name_parse(n, &pid), UC_OK);
    CHECK_EQ(pid, 123);
    CHECK_EQ(uc_name_make(n, sizeof n, 4294967295u, NULL), 14);
    CHECK_STR(n, "4294967295.jpg");
    CHECK_EQ(uc_name_parse("4294967295.JPG", &pid), UC_OK);
    CHECK_EQ(pid, 4294967295u);
    CHECK_EQ(uc_name_make(n, 14, 1, NULL), UC_E_SPACE);
    uc_datetime_t bad = {2025, 13, 1, 0, 0, 0};
    CHECK_EQ(uc_name_make(n, sizeof n, 1, &bad), UC_E_ARG);
    const char *rej[] = {"4294967296.jpg", "123.jpg", "000000012a.jpg", "0000000123.jpeg", "0000000123.png",
                         "0000000123_2025013-1235958.jpg", "0000000123x20250131-235958.jpg", "", "0000000123.jpg~",
                         "0000000123_20250131_235958.jpg"};
    for (size_t i = 0; i < sizeof rej / sizeof rej[0]; i++) {
        if (uc_name_parse(rej[i], &pid) != UC_E_PARSE) {
            th_fail(__FILE__, __LINE__, "accepted name %s", rej[i]);
        }
    }
}

static void t_counter(void)
{
    bool w;
    uc_counter_in_t in = {false, 0, false, 0};
    CHECK_EQ(uc_counter_next(&in, &w), 1); /* fresh device */
    CHECK(!w);
    in = (uc_counter_in_t){true, 500, true, 41};
    CHECK_EQ(uc_counter_next(&in, &w), 500); /* NVS ahead of the card */
    in = (uc_counter_in_t){true, 7, true, 41};
    CHECK_EQ(uc_counter_next(&in, &w), 42); /* NVS erased/reflashed or another card */
    in = (uc_counter_in_t){false, 0, true, 0};
    CHECK_EQ(uc_counter_next(&in, &w), 1);
    in = (uc_counter_in_t){true, 4294967295u, false, 0};
    CHECK_EQ(uc_counter_next(&in, &w), 4294967295u);
    CHECK(!w);
    in = (uc_counter_in_t){true, 5, true, 4294967295u};
    CHECK_EQ(uc_counter_next(&in, &w), 0);
    CHECK(w);
}

static void t_pidq(void)
{
    uc_pidq_t q;
    uint32_t v;
    uc_pidq_init(&q);
    CHECK(!uc_pidq_first(&q, &v));
    CHECK(uc_pidq_add(&q, 30));
    CHECK(uc_pidq_add(&q, 10));
    CHECK(uc_pidq_add(&q, 20));
    CHECK(uc_pidq_add(&q, 10));
    CHECK_EQ(q.n, 3);
    CHECK(uc_pidq_first(&q, &v) && v == 10);
    CHECK(uc_pidq_remove(&q, 10));
    CHECK(!uc_pidq_remove(&q, 10));
    CHECK(uc_pidq_first(&q, &v) && v == 20);
    /* overflow keeps the lowest and says so */
    uc_pidq_init(&q);
    for (uint32_t i = 0; i < 200; i++) {
        (void)uc_pidq_add(&q, 1000 - i * 3);
    }
    CHECK_EQ(q.n, UC_PIDQ_CAP);
    CHECK(q.overflow);
    for (uint16_t i = 0; i < q.n; i++) {
        CHECK_EQ(q.v[i], 1000 - 199 * 3 + i * 3);
    }
    CHECK(!uc_pidq_add(&q, 5000));
}

static void t_backoff(void)
{
    uc_backoff_t b;
    uint32_t rng = 77;
    uc_backoff_init(&b, 1000, 60000);
    uint64_t d = 1000;
    for (int i = 0; i < 40; i++) {
        uint64_t dk = d < 60000 ? d : 60000;
        uint32_t got = uc_backoff_next(&b, th_rand(&rng));
        CHECK(got >= dk - dk / 2 && got <= dk);
        d = d >= (1ull << 40) ? d : d * 2;
    }
    uc_backoff_reset(&b);
    CHECK_EQ(uc_backoff_next(&b, 0), 500);   /* lowest of [d/2, d] */
    CHECK_EQ(uc_backoff_next(&b, 1000), 2000); /* highest of attempt 1 */
    CHECK_EQ(uc_backoff_next(&b, 0), 2000);
    uc_backoff_init(&b, 0, 0);
    CHECK(uc_backoff_next(&b, 7) <= 1);
    uc_backoff_init(&b, 3000000000u, 4000000000u); /* no overflow near the top */
    for (int i = 0; i < 5; i++) {
        CHECK(uc_backoff_next(&b, th_rand(&rng)) >= 1500000000u);
    }
}

static void t_rategate(void)
{
    uc_rategate_t g;
    CHECK_EQ(uc_rategate_init(&g, 0, 60000), UC_E_ARG);
    CHECK_EQ(uc_rategate_init(&g, 5, 60000), UC_OK);
    uint32_t t0 = 0xFFFFF000u; /* crosses the 32-bit wrap */
    for (uint32_t i = 0; i < 5; i++) {
        CHECK_EQ(uc_rategate_next(&g, t0 + i * 1000), t0 + i * 1000);
        uc_rategate_note(&g, t0 + i * 1000);
    }
    CHECK_EQ(uc_rategate_next(&g, t0 + 5000), t0 + 60000); /* 6th waits for the 1st to age out */
    uc_rategate_note(&g, t0 + 60000);
    CHECK_EQ(uc_rategate_next(&g, t0 + 60000), t0 + 61000);
    /* sliding: never more than 5 in any 60 s */
    uc_rategate_init(&g, 5, 60000);
    uint32_t now = 0, times[200];
    for (int i = 0; i < 200; i++) {
        now = uc_rategate_next(&g, now + 700);
        uc_rategate_note(&g, now);
        times[i] = now;
        if (i >= 5) {
            CHECK(times[i] - times[i - 5] >= 60000);
        }
    }
}

static void t_link(void)
{
    uc_link_t l;
    uint32_t rng = 5, now = 0xFFFF0000u; /* across the wrap */
    CHECK_EQ(uc_link_init(&l, 3000, 300000, 4, 60000, 60000), UC_OK);
    CHECK_EQ(uc_link_init(&l, 3000, 300000, 0, 60000, 60000), UC_E_ARG);
    CHECK_EQ(uc_link_init(&l, 3000, 300000, 4, 60000, 60000), UC_OK);
    CHECK(!uc_link_should_attempt(&l, now, false)); /* no network, no attempt */
    CHECK(uc_link_should_attempt(&l, now, true));
    CHECK(!uc_link_should_attempt(&l, now + 10, true)); /* one at a time */
    /* every attempt fails at once: backoff grows, never more than 4 per minute */
    uint32_t times[64];
    int n = 0;
    uint32_t prev_delay = 0;
    bool grew = false;
    uint32_t d = uc_link_failed(&l, now + 50, th_rand(&rng));
    for (uint32_t t = now + 51; n < 64 && (uint32_t)(t - now) < 3600000u; t += 250) {
        if (uc_link_should_attempt(&l, t, true)) {
            times[n++] = t;
            if (n >= 5) {
                CHECK((uint32_t)(t - times[n - 5]) >= 60000u);
            }
            d = uc_link_failed(&l, t + 100, th_rand(&rng));
            grew = grew || d > prev_delay;
            CHECK(d <= 300000u);
            prev_delay = d;
        }
    }
    CHECK(grew);
    CHECK(n >= 10);
    CHECK(d >= 150000u); /* at the cap after an hour of failures */
    /* success resets the backoff */
    uint32_t t = l.next_at;
    while (!uc_link_should_attempt(&l, t, true)) {
        t += 1000;
    }
    uc_link_connected(&l, t + 200);
    CHECK(!uc_link_should_attempt(&l, t + 300, true));
    d = uc_link_failed(&l, t + 5000, 0);
    CHECK_EQ(d, 1500); /* first step again: [base/2, base] */
    /* an attempt without verdict expires after attempt_timeout_ms */
    CHECK(uc_link_should_attempt(&l, t + 6500, true) || uc_link_should_attempt(&l, t + 70000, true));
    uint32_t started = l.attempt_at;
    CHECK(!uc_link_should_attempt(&l, started + 59999, true));
    CHECK(uc_link_should_attempt(&l, started + 60000 + 60000, true));
}

void suite_store(void);
void suite_store(void)
{
    th_run("store/file_names", t_names);
    th_run("store/counter_reconcile", t_counter);
    th_run("store/pending_set", t_pidq);
    th_run("backoff/exponential_jitter", t_backoff);
    th_run("backoff/rate_gate", t_rategate);
    th_run("backoff/link_reconnect_schedule", t_link);
}

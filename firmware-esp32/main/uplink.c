/*
 * Uplink: ESP-MQTT (after esp-mqtt's examples/ssl and tcp) with Aliyun's device
 * sign-in, and one task that uploads pictures from storage with uplink_core's
 * state machine: QoS 1, a bounded window of messages awaiting PUBACK, paced under
 * the per-device rate, resends with the same Alink id, "sent" only when every
 * chunk is acknowledged.
 *
 * The MQTT event handler never blocks: it copies what it needs into a fixed-size
 * queue item (or an event-group bit) and returns. All buffers are allocated once
 * at start; nothing is allocated per message.
 *
 * Reconnects are driven here (auto-reconnect off) so they follow uc_backoff and
 * stay within Aliyun's 5 connection attempts per device per minute.
 */
#include "uplink.h"

#include <inttypes.h>
#include <string.h>

#include "app_config.h"
#include "esp_bit_defs.h"
#include "esp_crt_bundle.h"
#include "esp_heap_caps.h"
#include "esp_log.h"
#include "esp_random.h"
#include "esp_task_wdt.h"
#include "freertos/FreeRTOS.h"
#include "freertos/event_groups.h"
#include "freertos/queue.h"
#include "freertos/task.h"
#include "mqtt_client.h"
#include "storage.h"
#include "uc_backoff.h"
#include "uc_reply.h"
#include "uc_sign.h"
#include "uc_upload.h"
#include "uc_wire.h"
#include "wifi.h"

static const char *TAG = "uplink";

#define REPLY_MAX 192 /* a post_reply is ~120 bytes */
#define QUEUE_LEN 24
#define CONNECTED_BIT BIT0
#define DISCONNECTED_BIT BIT1 /* latched: a connection ended or an attempt failed */

enum { EV_PUBLISHED = 1, EV_DELETED, EV_REPLY, EV_WAKE };

typedef struct {
    uint8_t kind;
    int32_t msg_id;
    uint16_t len;
    char data[REPLY_MAX];
} uplink_ev_t;

static QueueHandle_t s_q;
static EventGroupHandle_t s_bits;
static esp_mqtt_client_handle_t s_client;
static uc_auth_t s_auth;
static char s_host[128];
static char s_topic_post[160];
static char s_topic_reply[160];
static size_t s_topic_reply_len;
static char *s_msg;     /* UC_MSG_MAX, PSRAM */
static uint8_t *s_piece; /* UC_PIECE_MAX, PSRAM */
static uc_up_t s_up;
static volatile uint32_t s_dropped_events;

/* ------------------------------------------------------------ MQTT events -- */

static void post(const uplink_ev_t *ev)
{
    if (xQueueSend(s_q, ev, 0) != pdTRUE) {
        s_dropped_events++; /* a lost PUBACK only delays: the ack timeout resends */
    }
}

static void mqtt_event_handler(void *arg, esp_event_base_t base, int32_t id, void *data)
{
    (void)arg;
    (void)base;
    esp_mqtt_event_handle_t e = data;
    uplink_ev_t ev = {0};
    switch ((esp_mqtt_event_id_t)id) {
    case MQTT_EVENT_CONNECTED:
        xEventGroupSetBits(s_bits, CONNECTED_BIT);
        break;
    case MQTT_EVENT_DISCONNECTED:
        xEventGroupClearBits(s_bits, CONNECTED_BIT);
        xEventGroupSetBits(s_bits, DISCONNECTED_BIT);
        break;
    case MQTT_EVENT_PUBLISHED:
        ev.kind = EV_PUBLISHED;
        ev.msg_id = e->msg_id;
        post(&ev);
        break;
    case MQTT_EVENT_DELETED: /* outbox expiry (CONFIG_MQTT_REPORT_DELETED_MESSAGES) */
        ev.kind = EV_DELETED;
        ev.msg_id = e->msg_id;
        post(&ev);
        break;
    case MQTT_EVENT_DATA:
        if (e->topic_len == (int)s_topic_reply_len && e->current_data_offset == 0 &&
            e->data_len == e->total_data_len && e->data_len > 0 && e->data_len <= REPLY_MAX &&
            memcmp(e->topic, s_topic_reply, s_topic_reply_len) == 0) {
            ev.kind = EV_REPLY;
            ev.len = (uint16_t)e->data_len;
            memcpy(ev.data, e->data, (size_t)e->data_len);
            post(&ev);
        }
        break;
    case MQTT_EVENT_ERROR:
        if (e->error_handle != NULL && e->error_handle->error_type == MQTT_ERROR_TYPE_CONNECTION_REFUSED) {
            ESP_LOGE(TAG, "connection refused (code %d): check product key, device name, secret",
                     (int)e->error_handle->connect_return_code);
        }
        break;
    default:
        break;
    }
}

/* ---------------------------------------------------------- uploader task -- */

static uint32_t s_pid;
static uc_link_t s_link;
static bool s_started;
static unsigned s_read_failures;

static void sync_connection(uint32_t now)
{
    EventBits_t b = xEventGroupGetBits(s_bits);
    if ((b & DISCONNECTED_BIT) != 0) {
        xEventGroupClearBits(s_bits, DISCONNECTED_BIT);
        if (s_up.connected) {
            uc_up_disconnected(&s_up, now);
        }
        uint32_t wait = uc_link_failed(&s_link, now, esp_random());
        ESP_LOGW(TAG, "MQTT down; next attempt in %" PRIu32 " ms", wait);
    }
    if ((b & CONNECTED_BIT) != 0 && !s_up.connected) {
        uc_link_connected(&s_link, now);
        uc_up_connected(&s_up, now);
        ESP_LOGI(TAG, "MQTT connected to %s", s_host);
#if CONFIG_APP_UPLOAD_POST_REPLY
        /* here, not in the event handler: subscribing writes to the socket */
        if (esp_mqtt_client_subscribe_single(s_client, s_topic_reply, 0) < 0) {
            ESP_LOGW(TAG, "subscribe %s failed", s_topic_reply);
        }
#endif
    }
    if (uc_link_should_attempt(&s_link, now, wifi_is_up())) {
        esp_err_t err = s_started ? esp_mqtt_client_reconnect(s_client) : esp_mqtt_client_start(s_client);
        if (err != ESP_OK) {
            ESP_LOGD(TAG, "connect request: %s", esp_err_to_name(err));
        }
        s_started = true;
    }
}

static void start_next_picture(uint32_t now)
{
    uint32_t pid, size = 0, crc = 0;
    if (!storage_next_pending(&pid)) {
        return;
    }
    esp_err_t err = storage_open(pid, &size, &crc);
    uc_pic_t pic;
    int e = err == ESP_OK ? uc_pic_init(&pic, APP_WIRE_FORMAT, pid, size, crc,
                                        uc_chunk_sanitize(APP_WIRE_FORMAT, APP_CHUNK_PARAM))
                          : UC_E_ARG;
    if (err != ESP_OK || e != UC_OK) {
        ESP_LOGE(TAG, "picture %" PRIu32 " set aside: %s", pid,
                 err != ESP_OK ? esp_err_to_name(err)
                               : "needs more than 1000 messages: raise the chunk size");
        storage_set_aside(pid);
        return;
    }
    (void)uc_up_begin(&s_up, &pic, now);
    s_pid = pid;
    s_read_failures = 0;
    ESP_LOGI(TAG, "picture %" PRIu32 ": %" PRIu32 " bytes, %u messages", pid, size, (unsigned)pic.count);
}

static void publish(const uc_act_t *a, uint32_t now)
{
    uint32_t off, len;
    int32_t msg_id = -1;
    if (uc_pic_piece(&s_up.pic, a->seq, &off, &len) == UC_OK &&
        (len == 0 || storage_read(s_pid, off, s_piece, len) == ESP_OK)) {
        int n = uc_msg_build(&s_up.pic, a->seq, s_piece, len, s_msg, UC_MSG_MAX);
        if (n > 0) {
            s_read_failures = 0;
            /* may block up to network.timeout_ms; the watchdog is fed around it */
            msg_id = esp_mqtt_client_publish(s_client, s_topic_post, s_msg, n, 1, 0);
            if (msg_id < 0) {
                ESP_LOGW(TAG, "publish %" PRIu32 " failed (%s)", a->alink_id,
                         msg_id == -2 ? "outbox full" : "error");
            }
        }
    } else if (++s_read_failures >= 5) {
        ESP_LOGE(TAG, "picture %" PRIu32 " unreadable: set aside", s_pid);
        uc_up_abort(&s_up);
        storage_set_aside(s_pid);
        return;
    }
    (void)uc_up_sent(&s_up, a->seq, msg_id, now);
}

static void handle(const uplink_ev_t *ev, uint32_t now)
{
    switch (ev->kind) {
    case EV_PUBLISHED:
        uc_up_acked(&s_up, ev->msg_id, now);
        break;
    case EV_DELETED:
        uc_up_lost(&s_up, ev->msg_id, now);
        break;
    case EV_REPLY: {
        uc_reply_t r;
        if (uc_reply_parse(ev->data, ev->len, &r) == UC_OK) {
            if (r.code != 200) {
                ESP_LOGW(TAG, "post_reply id %" PRIu32 " code %" PRId32 "%s", r.id, r.code,
                         uc_reply_is_throttle(r.code) ? " (throttled: resending slower)" : "");
            }
            uc_up_reply(&s_up, r.id, r.code, now);
        }
        break;
    }
    default:
        break;
    }
}

static void wait_events(uint32_t ms)
{
    uplink_ev_t ev;
    TickType_t t = pdMS_TO_TICKS(ms);
    if (xQueueReceive(s_q, &ev, t > 0 ? t : 1) == pdTRUE) {
        handle(&ev, app_ms());
        while (xQueueReceive(s_q, &ev, 0) == pdTRUE) {
            handle(&ev, app_ms());
        }
    }
}

static void log_stats(void)
{
    const uc_up_stats_t *s = &s_up.stats;
    ESP_LOGI(TAG,
             "sent %" PRIu32 " pictures; %" PRIu32 " publishes, %" PRIu32 " resent, %" PRIu32
             " timeouts, %" PRIu32 " throttled, %" PRIu32 " rejected, %" PRIu32
             " dropped events; %" PRIu32 " connection attempts; largest free internal block %u",
             s->pictures, s->published, s->resent, s->timeouts, s->throttled, s->rejected,
             s_dropped_events, s_link.attempts,
             (unsigned)heap_caps_get_largest_free_block(MALLOC_CAP_INTERNAL));
}

static void uplink_task(void *arg)
{
    (void)arg;
    ESP_ERROR_CHECK(esp_task_wdt_add(NULL));
    uint32_t last_stats = app_ms();
    for (;;) {
        esp_task_wdt_reset();
        uint32_t now = app_ms();
        sync_connection(now);
        if (uc_time_reached(now, last_stats + 60000u)) {
            last_stats = now;
            log_stats();
        }
        uc_act_t a = uc_up_poll(&s_up, now);
        switch (a.kind) {
        case UC_ACT_IDLE:
            start_next_picture(now);
            if (!uc_up_busy(&s_up)) {
                wait_events(1000);
            }
            break;
        case UC_ACT_PUBLISH:
            publish(&a, now);
            break;
        case UC_ACT_DONE:
            if (storage_mark_sent(s_pid) == ESP_OK) {
                ESP_LOGI(TAG, "picture %" PRIu32 " sent", s_pid);
            }
            break;
        case UC_ACT_WAIT: {
            int32_t d = (int32_t)(a.wake_at - now);
            wait_events(d <= 0 ? 0 : (d > 1000 ? 1000 : (uint32_t)d));
            break;
        }
        }
    }
}

/* ------------------------------------------------------------------ start -- */

esp_err_t uplink_start(void)
{
    uc_auth_params_t ap = {
        .product_key = CONFIG_APP_ALIYUN_PRODUCT_KEY,
        .device_name = CONFIG_APP_ALIYUN_DEVICE_NAME,
        .device_secret = CONFIG_APP_ALIYUN_DEVICE_SECRET,
        .client_id = CONFIG_APP_ALIYUN_CLIENT_ID,
        .timestamp = NULL, /* fixed: sign-in needs no clock */
#if CONFIG_APP_ALIYUN_TLS
        .tls = true,
#else
        .tls = false,
#endif
    };
    int e = uc_auth_build(&s_auth, &ap);
    if (e != UC_OK) {
        ESP_LOGE(TAG, "Aliyun credentials missing or invalid (%d): set them in menuconfig; "
                      "pictures are kept but not uploaded", e);
        return ESP_ERR_INVALID_ARG;
    }
    if (uc_broker_host(s_host, sizeof s_host, CONFIG_APP_ALIYUN_PRODUCT_KEY, CONFIG_APP_ALIYUN_REGION,
                       CONFIG_APP_ALIYUN_HOST) < 0 ||
        uc_topic_post(s_topic_post, sizeof s_topic_post, CONFIG_APP_ALIYUN_PRODUCT_KEY,
                      CONFIG_APP_ALIYUN_DEVICE_NAME) < 0 ||
        uc_topic_post_reply(s_topic_reply, sizeof s_topic_reply, CONFIG_APP_ALIYUN_PRODUCT_KEY,
                            CONFIG_APP_ALIYUN_DEVICE_NAME) < 0) {
        ESP_LOGE(TAG, "bad MQTT host, region, product key or device name");
        return ESP_ERR_INVALID_ARG;
    }
    s_topic_reply_len = strlen(s_topic_reply);

    uc_up_cfg_t uc;
    uc_up_cfg_default(&uc);
    uc.window = CONFIG_APP_UPLOAD_WINDOW;
    uc.max_per_sec = CONFIG_APP_UPLOAD_MAX_PER_SEC;
    uc.ack_timeout_ms = (uint32_t)CONFIG_APP_UPLOAD_ACK_TIMEOUT_S * 1000u;
#if CONFIG_APP_UPLOAD_POST_REPLY
    uc.reply_grace_ms = 1500;
#endif
    ESP_ERROR_CHECK(uc_up_init(&s_up, &uc) == UC_OK ? ESP_OK : ESP_ERR_INVALID_ARG);
    /* 3 s .. 5 min backoff, at most 4 attempts a minute (Aliyun: 5 per device), an
     * attempt without verdict (no CONNECTED/DISCONNECTED event) for 60 s failed */
    (void)uc_link_init(&s_link, 3000, 300000, 4, 60000, 60000);

    s_msg = heap_caps_malloc(UC_MSG_MAX, MALLOC_CAP_SPIRAM);
    s_piece = heap_caps_malloc(UC_PIECE_MAX, MALLOC_CAP_SPIRAM);
    if (s_msg == NULL || s_piece == NULL) { /* no PSRAM: internal RAM, once */
        heap_caps_free(s_msg);
        heap_caps_free(s_piece);
        s_msg = heap_caps_malloc(UC_MSG_MAX, MALLOC_CAP_8BIT);
        s_piece = heap_caps_malloc(UC_PIECE_MAX, MALLOC_CAP_8BIT);
    }
    s_q = xQueueCreate(QUEUE_LEN, sizeof(uplink_ev_t));
    s_bits = xEventGroupCreate();
    if (s_msg == NULL || s_piece == NULL || s_q == NULL || s_bits == NULL) {
        return ESP_ERR_NO_MEM;
    }

    esp_mqtt_client_config_t mc = {
        .broker.address.hostname = s_host,
        .broker.address.port = CONFIG_APP_ALIYUN_PORT,
#if CONFIG_APP_ALIYUN_TLS
        .broker.address.transport = MQTT_TRANSPORT_OVER_SSL,
        .broker.verification.crt_bundle_attach = esp_crt_bundle_attach,
#else
        .broker.address.transport = MQTT_TRANSPORT_OVER_TCP,
#endif
        .credentials.client_id = s_auth.client_id,
        .credentials.username = s_auth.username,
        .credentials.authentication.password = s_auth.password,
        .session.keepalive = CONFIG_APP_ALIYUN_KEEPALIVE_S,
        /* ESP-MQTT resends unacknowledged publishes itself; not every second */
        .session.message_retransmit_timeout = 5000,
        .network.disable_auto_reconnect = true,
        .network.timeout_ms = 10000,
        .buffer.size = 4096,
        .outbox.limit = (uint64_t)(CONFIG_APP_UPLOAD_WINDOW + 2) * UC_MSG_MAX,
        .task.stack_size = 6144,
    };
    s_client = esp_mqtt_client_init(&mc);
    if (s_client == NULL) {
        return ESP_FAIL;
    }
    ESP_ERROR_CHECK(esp_mqtt_client_register_event(s_client, MQTT_EVENT_ANY, mqtt_event_handler, NULL));
    ESP_LOGI(TAG, "device %s&%s -> %s:%d (%s), %s chunks of %u, window %d, %d msg/s",
             CONFIG_APP_ALIYUN_DEVICE_NAME, CONFIG_APP_ALIYUN_PRODUCT_KEY, s_host, CONFIG_APP_ALIYUN_PORT,
#if CONFIG_APP_ALIYUN_TLS
             "TLS",
#else
             "plain TCP",
#endif
             APP_WIRE_FORMAT == UC_FMT_V2 ? "v2" : "v1",
             (unsigned)uc_chunk_sanitize(APP_WIRE_FORMAT, APP_CHUNK_PARAM), CONFIG_APP_UPLOAD_WINDOW,
             CONFIG_APP_UPLOAD_MAX_PER_SEC);
    BaseType_t ok = xTaskCreate(uplink_task, "uplink", APP_UPLINK_TASK_STACK, NULL, APP_TASK_PRIORITY, NULL);
    return ok == pdPASS ? ESP_OK : ESP_ERR_NO_MEM;
}

void uplink_notify(void)
{
    if (s_q != NULL) {
        uplink_ev_t ev = {.kind = EV_WAKE};
        (void)xQueueSend(s_q, &ev, 0);
    }
}

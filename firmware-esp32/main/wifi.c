/*
 * Wi-Fi station, after ESP-IDF's examples/wifi/getting_started/station, except
 * that it never gives up: each disconnect schedules the next attempt with
 * uc_backoff (1 s .. 60 s, jittered) on an esp_timer, so no event handler blocks.
 */
#include "wifi.h"

#include <string.h>

#include "esp_bit_defs.h"
#include "esp_event.h"
#include "esp_log.h"
#include "esp_netif.h"
#include "esp_random.h"
#include "esp_timer.h"
#include "esp_wifi.h"
#include "freertos/event_groups.h"
#include "sdkconfig.h"
#include "uc_backoff.h"

static const char *TAG = "wifi";

#define WIFI_UP_BIT BIT0

static EventGroupHandle_t s_events;
static esp_timer_handle_t s_retry_timer;
static uc_backoff_t s_backoff;

static void retry_cb(void *arg)
{
    (void)arg;
    esp_err_t err = esp_wifi_connect();
    if (err != ESP_OK) {
        ESP_LOGW(TAG, "esp_wifi_connect: %s", esp_err_to_name(err));
    }
}

static void event_handler(void *arg, esp_event_base_t base, int32_t id, void *data)
{
    (void)arg;
    if (base == WIFI_EVENT && id == WIFI_EVENT_STA_START) {
        esp_wifi_connect();
    } else if (base == WIFI_EVENT && id == WIFI_EVENT_STA_DISCONNECTED) {
        const wifi_event_sta_disconnected_t *d = data;
        xEventGroupClearBits(s_events, WIFI_UP_BIT);
        uint32_t delay_ms = uc_backoff_next(&s_backoff, esp_random());
        ESP_LOGW(TAG, "disconnected (reason %d), retry in %u ms", d->reason, (unsigned)delay_ms);
        esp_timer_stop(s_retry_timer); /* not running is fine */
        esp_timer_start_once(s_retry_timer, (uint64_t)delay_ms * 1000u);
    } else if (base == IP_EVENT && id == IP_EVENT_STA_GOT_IP) {
        const ip_event_got_ip_t *e = data;
        ESP_LOGI(TAG, "got ip " IPSTR, IP2STR(&e->ip_info.ip));
        uc_backoff_reset(&s_backoff);
        xEventGroupSetBits(s_events, WIFI_UP_BIT);
    }
}

esp_err_t wifi_start(void)
{
    s_events = xEventGroupCreate();
    if (s_events == NULL) {
        return ESP_ERR_NO_MEM;
    }
    uc_backoff_init(&s_backoff, 1000, 60000);
    const esp_timer_create_args_t targs = {.callback = retry_cb, .name = "wifi_retry"};
    ESP_ERROR_CHECK(esp_timer_create(&targs, &s_retry_timer));

    ESP_ERROR_CHECK(esp_netif_init());
    esp_err_t err = esp_event_loop_create_default();
    if (err != ESP_OK && err != ESP_ERR_INVALID_STATE) {
        return err;
    }
    esp_netif_create_default_wifi_sta();
    wifi_init_config_t cfg = WIFI_INIT_CONFIG_DEFAULT();
    ESP_ERROR_CHECK(esp_wifi_init(&cfg));
    ESP_ERROR_CHECK(esp_event_handler_instance_register(WIFI_EVENT, ESP_EVENT_ANY_ID, &event_handler,
                                                        NULL, NULL));
    ESP_ERROR_CHECK(esp_event_handler_instance_register(IP_EVENT, IP_EVENT_STA_GOT_IP, &event_handler,
                                                        NULL, NULL));

    wifi_config_t wc = {0};
    strlcpy((char *)wc.sta.ssid, CONFIG_APP_WIFI_SSID, sizeof wc.sta.ssid);
    strlcpy((char *)wc.sta.password, CONFIG_APP_WIFI_PASSWORD, sizeof wc.sta.password);
    wc.sta.threshold.authmode = strlen(CONFIG_APP_WIFI_PASSWORD) ? WIFI_AUTH_WPA2_PSK : WIFI_AUTH_OPEN;
    wc.sta.sae_pwe_h2e = WPA3_SAE_PWE_BOTH;
    ESP_ERROR_CHECK(esp_wifi_set_mode(WIFI_MODE_STA));
    ESP_ERROR_CHECK(esp_wifi_set_config(WIFI_IF_STA, &wc));
    ESP_ERROR_CHECK(esp_wifi_start());
#if CONFIG_APP_WIFI_POWER_SAVE
    esp_wifi_set_ps(WIFI_PS_MIN_MODEM);
#else
    esp_wifi_set_ps(WIFI_PS_NONE); /* PUBACKs without beacon-interval latency */
#endif
    ESP_LOGI(TAG, "connecting to \"%s\"", CONFIG_APP_WIFI_SSID);
    return ESP_OK;
}

bool wifi_is_up(void)
{
    return s_events != NULL && (xEventGroupGetBits(s_events) & WIFI_UP_BIT) != 0;
}

bool wifi_wait_up(TickType_t ticks)
{
    return (xEventGroupWaitBits(s_events, WIFI_UP_BIT, pdFALSE, pdTRUE, ticks) & WIFI_UP_BIT) != 0;
}

/* SNTP after ESP-IDF's examples/protocols/sntp (esp_netif_sntp API). The first
 * sync happens in the background once Wi-Fi is up; nothing waits for it. */
#include "timesync.h"

#include <stdlib.h>
#include <time.h>

#include "esp_log.h"
#include "esp_netif_sntp.h"
#include "sdkconfig.h"

static const char *TAG = "time";

#define VALID_AFTER 1704067200 /* 2024-01-01: anything earlier means "not set" */

void timesync_start(void)
{
    setenv("TZ", CONFIG_APP_TIMEZONE, 1);
    tzset();
    esp_sntp_config_t cfg = ESP_NETIF_SNTP_DEFAULT_CONFIG(CONFIG_APP_SNTP_SERVER);
    esp_err_t err = esp_netif_sntp_init(&cfg);
    if (err != ESP_OK) {
        ESP_LOGW(TAG, "SNTP init: %s (file names will carry no date)", esp_err_to_name(err));
    }
}

bool timesync_now(uc_datetime_t *dt)
{
    time_t now = time(NULL);
    struct tm tm;
    if (now < VALID_AFTER || localtime_r(&now, &tm) == NULL) {
        return false;
    }
    dt->year = (uint16_t)(tm.tm_year + 1900);
    dt->mon = (uint8_t)(tm.tm_mon + 1);
    dt->day = (uint8_t)tm.tm_mday;
    dt->hour = (uint8_t)tm.tm_hour;
    dt->min = (uint8_t)tm.tm_min;
    dt->sec = (uint8_t)tm.tm_sec;
    return true;
}

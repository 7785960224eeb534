/*
 * ESP32-CAM -> Alibaba Cloud IoT picture uplink.
 *
 *   camera task : capture a fresh JPEG every interval -> SD card (new/) -> wake uplink
 *   uplink task : oldest unsent picture -> QoS 1 chunks -> every PUBACK -> sent/
 *   Wi-Fi, SNTP : background, event driven
 *
 * All protocol logic is in components/uplink_core (host-tested); this is glue.
 */
#include <inttypes.h>

#include "camera.h"
#include "esp_log.h"
#include "esp_psram.h"
#include "esp_system.h"
#include "nvs_flash.h"
#include "storage.h"
#include "timesync.h"
#include "uplink.h"
#include "wifi.h"

static const char *TAG = "app";

void app_main(void)
{
    esp_reset_reason_t why = esp_reset_reason();
    if (why == ESP_RST_BROWNOUT) {
        ESP_LOGE(TAG, "reset by the BROWNOUT detector: the 5 V supply sags under Wi-Fi/camera load "
                      "(use a 5 V >= 1 A supply on the 5V pin, short leads, a bulk capacitor)");
    } else {
        ESP_LOGI(TAG, "reset reason %d", (int)why);
    }

    esp_err_t err = nvs_flash_init();
    if (err == ESP_ERR_NVS_NO_FREE_PAGES || err == ESP_ERR_NVS_NEW_VERSION_FOUND) {
        ESP_ERROR_CHECK(nvs_flash_erase());
        err = nvs_flash_init();
    }
    ESP_ERROR_CHECK(err);

    if (esp_psram_is_initialized()) {
        ESP_LOGI(TAG, "PSRAM %u KiB", (unsigned)(esp_psram_get_size() / 1024));
    } else {
        ESP_LOGE(TAG, "no PSRAM: large frames will fail (CONFIG_SPIRAM, a board with PSRAM)");
    }

    ESP_ERROR_CHECK(storage_init());
    /* Wi-Fi before the camera, so their current peaks do not coincide at boot. */
    ESP_ERROR_CHECK(wifi_start());
    timesync_start();
    if (uplink_start() != ESP_OK) {
        ESP_LOGE(TAG, "uplink not started: pictures are only stored");
    }
    ESP_ERROR_CHECK(camera_start());
}

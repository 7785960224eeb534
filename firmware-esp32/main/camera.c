/*
 * Camera after espressif/esp32-camera's examples/camera_example. Fresh frames:
 * two PSRAM frame buffers in CAMERA_GRAB_LATEST mode, and a frame is used only if
 * it started after it was asked for (fb->timestamp is esp_timer time at VSYNC);
 * older frames are handed back. The frame buffer is returned as soon as the
 * picture is on the card.
 */
#include "camera.h"

#include <inttypes.h>

#include "app_config.h"
#include "esp_camera.h"
#include "esp_log.h"
#include "esp_psram.h"
#include "esp_task_wdt.h"
#include "esp_timer.h"
#include "freertos/FreeRTOS.h"
#include "freertos/task.h"
#include "storage.h"
#include "uplink.h"

static const char *TAG = "camera";

/* AI-Thinker ESP32-CAM (CAMERA_MODEL_AI_THINKER) */
#define PIN_PWDN 32
#define PIN_RESET -1
#define PIN_XCLK 0
#define PIN_SIOD 26
#define PIN_SIOC 27
#define PIN_D7 35
#define PIN_D6 34
#define PIN_D5 39
#define PIN_D4 36
#define PIN_D3 21
#define PIN_D2 19
#define PIN_D1 18
#define PIN_D0 5
#define PIN_VSYNC 25
#define PIN_HREF 23
#define PIN_PCLK 22

static framesize_t configured_frame_size(void)
{
#if CONFIG_APP_FRAME_SIZE_QVGA
    return FRAMESIZE_QVGA;
#elif CONFIG_APP_FRAME_SIZE_SVGA
    return FRAMESIZE_SVGA;
#elif CONFIG_APP_FRAME_SIZE_XGA
    return FRAMESIZE_XGA;
#elif CONFIG_APP_FRAME_SIZE_HD
    return FRAMESIZE_HD;
#elif CONFIG_APP_FRAME_SIZE_SXGA
    return FRAMESIZE_SXGA;
#elif CONFIG_APP_FRAME_SIZE_UXGA
    return FRAMESIZE_UXGA;
#else
    return FRAMESIZE_VGA;
#endif
}

static esp_err_t camera_init(void)
{
    bool psram = esp_psram_is_initialized() && esp_psram_get_size() > 0;
    if (!psram) {
        ESP_LOGE(TAG, "no PSRAM: falling back to QVGA with one DRAM frame buffer");
    }
    camera_config_t cfg = {
        .pin_pwdn = PIN_PWDN,
        .pin_reset = PIN_RESET,
        .pin_xclk = PIN_XCLK,
        .pin_sccb_sda = PIN_SIOD,
        .pin_sccb_scl = PIN_SIOC,
        .pin_d7 = PIN_D7,
        .pin_d6 = PIN_D6,
        .pin_d5 = PIN_D5,
        .pin_d4 = PIN_D4,
        .pin_d3 = PIN_D3,
        .pin_d2 = PIN_D2,
        .pin_d1 = PIN_D1,
        .pin_d0 = PIN_D0,
        .pin_vsync = PIN_VSYNC,
        .pin_href = PIN_HREF,
        .pin_pclk = PIN_PCLK,
#if CONFIG_APP_CAMERA_XCLK_10MHZ
        .xclk_freq_hz = 10000000,
#else
        .xclk_freq_hz = 20000000,
#endif
        .ledc_timer = LEDC_TIMER_0,
        .ledc_channel = LEDC_CHANNEL_0,
        .pixel_format = PIXFORMAT_JPEG,
        .frame_size = psram ? configured_frame_size() : FRAMESIZE_QVGA,
        .jpeg_quality = CONFIG_APP_JPEG_QUALITY,
        .fb_count = psram ? 2 : 1,
        .fb_location = psram ? CAMERA_FB_IN_PSRAM : CAMERA_FB_IN_DRAM,
        .grab_mode = psram ? CAMERA_GRAB_LATEST : CAMERA_GRAB_WHEN_EMPTY,
    };
    esp_err_t err = esp_camera_init(&cfg);
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "esp_camera_init: %s (0x%x)", esp_err_to_name(err), (unsigned)err);
    }
    return err;
}

/* A frame whose exposure started after this call, or NULL. */
static camera_fb_t *capture_fresh(void)
{
    int64_t asked = esp_timer_get_time();
    for (int i = 0; i < 4; i++) {
        esp_task_wdt_reset(); /* a failing esp_camera_fb_get() takes seconds */
        camera_fb_t *fb = esp_camera_fb_get();
        if (fb == NULL) {
            ESP_LOGW(TAG, "no frame (timeout)");
            continue;
        }
        int64_t started = (int64_t)fb->timestamp.tv_sec * 1000000 + fb->timestamp.tv_usec;
        if (started >= asked && fb->format == PIXFORMAT_JPEG && fb->len > 4) {
            return fb;
        }
        esp_camera_fb_return(fb); /* stale: captured before we asked */
    }
    return NULL;
}

static void camera_task(void *arg)
{
    (void)arg;
    ESP_ERROR_CHECK(esp_task_wdt_add(NULL));
    const TickType_t period = pdMS_TO_TICKS((uint64_t)CONFIG_APP_CAPTURE_INTERVAL_S * 1000u);
    bool ready = false;
    int failures = 0;
    TickType_t next = xTaskGetTickCount();
    for (;;) {
        esp_task_wdt_reset();
        if (!ready) {
            ready = camera_init() == ESP_OK;
        }
        camera_fb_t *fb = ready ? capture_fresh() : NULL;
        if (fb != NULL) {
            failures = 0;
            uint32_t pid = 0;
            size_t len = fb->len;
            esp_err_t err = storage_save(fb->buf, fb->len, &pid);
            esp_camera_fb_return(fb);
            if (err == ESP_OK) {
                ESP_LOGI(TAG, "picture %" PRIu32 ": %u bytes", pid, (unsigned)len);
                uplink_notify();
            } else {
                ESP_LOGW(TAG, "picture not kept: %s", esp_err_to_name(err));
            }
        } else if (ready && ++failures >= 5) {
            ESP_LOGE(TAG, "camera keeps failing: re-initialising");
            esp_camera_deinit();
            ready = false;
            failures = 0;
        }
        /* sleep until the next capture, feeding the watchdog */
        next += period;
        TickType_t now = xTaskGetTickCount();
        if ((int32_t)(next - now) < 0) {
            next = now; /* fell behind (slow card, re-init): do not burst */
        }
        while ((int32_t)(next - xTaskGetTickCount()) > 0) {
            esp_task_wdt_reset();
            TickType_t left = next - xTaskGetTickCount();
            vTaskDelay(left < pdMS_TO_TICKS(1000) ? left : pdMS_TO_TICKS(1000));
        }
    }
}

esp_err_t camera_start(void)
{
    BaseType_t ok = xTaskCreate(camera_task, "camera", APP_CAMERA_TASK_STACK, NULL, APP_TASK_PRIORITY, NULL);
    return ok == pdPASS ? ESP_OK : ESP_ERR_NO_MEM;
}

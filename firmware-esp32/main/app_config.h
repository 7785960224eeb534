/* Build-time settings from menuconfig (main/Kconfig.projbuild), in one place. */
#pragma once

#include <stdint.h>

#include "esp_timer.h"
#include "sdkconfig.h"
#include "uc_wire.h"

#if defined(CONFIG_APP_WIRE_V1)
#define APP_WIRE_FORMAT UC_FMT_V1
#define APP_CHUNK_PARAM CONFIG_APP_V1_HEX_CHARS
#else
#define APP_WIRE_FORMAT UC_FMT_V2
#define APP_CHUNK_PARAM CONFIG_APP_V2_PIECE_BYTES
#endif

#define APP_MOUNT_POINT "/sdcard"
#define APP_DIR_ROOT APP_MOUNT_POINT "/cam"
#define APP_DIR_NEW APP_DIR_ROOT "/new"   /* waiting to be uploaded */
#define APP_DIR_SENT APP_DIR_ROOT "/sent" /* every chunk acknowledged */
#define APP_DIR_BAD APP_DIR_ROOT "/bad"   /* unreadable or not encodable */

/* Without an SD card the latest picture is kept in PSRAM, up to this size. */
#define APP_RAM_SLOT_BYTES (512 * 1024)

/* FreeRTOS tasks (stack sizes in bytes) */
#define APP_CAMERA_TASK_STACK 6144
#define APP_UPLINK_TASK_STACK 6144
#define APP_TASK_PRIORITY 5

/* Wrapping millisecond clock for the core's state machine. */
static inline uint32_t app_ms(void)
{
    return (uint32_t)(esp_timer_get_time() / 1000);
}

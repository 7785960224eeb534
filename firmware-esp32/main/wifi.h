/* Wi-Fi station that reconnects forever, with exponential backoff. */
#pragma once

#include <stdbool.h>

#include "esp_err.h"
#include "freertos/FreeRTOS.h"

esp_err_t wifi_start(void);
bool wifi_is_up(void);
/* Blocks up to `ticks` for an IP address; true when connected. */
bool wifi_wait_up(TickType_t ticks);

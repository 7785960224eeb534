/* MQTT to Aliyun IoT and the uploader task that drives uplink_core's state machine. */
#pragma once

#include "esp_err.h"

/* Signs in (HMAC-SHA256), creates the MQTT client and the uploader task. Fails
 * without touching the network when credentials are missing. */
esp_err_t uplink_start(void);
/* A new picture is waiting (cheap, never blocks). */
void uplink_notify(void);

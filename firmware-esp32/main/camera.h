/* OV2640 on the AI-Thinker ESP32-CAM: periodic capture of fresh frames to storage. */
#pragma once

#include "esp_err.h"

/* Starts the capture task (camera init happens there, with retries). */
esp_err_t camera_start(void);

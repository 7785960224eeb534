#pragma once
#include <stdbool.h>
#include <stddef.h>
bool esp_psram_is_initialized(void);
size_t esp_psram_get_size(void);

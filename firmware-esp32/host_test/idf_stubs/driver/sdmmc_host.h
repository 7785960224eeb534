#pragma once
#include <stdint.h>
#include "esp_err.h"
typedef struct { uint32_t flags; int slot; int max_freq_khz; } sdmmc_host_t;
typedef struct { int clk, cmd, d0, d1, d2, d3, cd, wp; uint8_t width; uint32_t flags; } sdmmc_slot_config_t;
#define SDMMC_HOST_DEFAULT() { .flags = 0, .slot = 1, .max_freq_khz = 20000 }
#define SDMMC_SLOT_CONFIG_DEFAULT() { .cd = -1, .wp = -1, .width = 0, .flags = 0 }
#define SDMMC_SLOT_FLAG_INTERNAL_PULLUP (1u << 0)

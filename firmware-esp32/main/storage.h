/*
 * Pictures on the SD card (or, without a card, one picture in PSRAM), the
 * picture counter in NVS, and the list of pictures still to upload.
 * storage_save() is called by the camera task, everything else by the uplink task.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "esp_err.h"

esp_err_t storage_init(void); /* after nvs_flash_init() */
bool storage_has_card(void);

/* Gives the picture a new pid (counter in NVS), writes and syncs it, queues it. */
esp_err_t storage_save(const uint8_t *jpeg, size_t len, uint32_t *pid);

/* Oldest picture not yet sent. */
bool storage_next_pending(uint32_t *pid);
/* Opens it for reading: size and CRC-32 of the whole file. */
esp_err_t storage_open(uint32_t pid, uint32_t *size, uint32_t *crc);
esp_err_t storage_read(uint32_t pid, uint32_t off, uint8_t *buf, uint32_t len);
/* Every chunk acknowledged: moved to sent/. */
esp_err_t storage_mark_sent(uint32_t pid);
/* Unreadable or impossible to encode: moved to bad/ so it no longer blocks the queue. */
void storage_set_aside(uint32_t pid);

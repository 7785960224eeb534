/*
 * SD card after ESP-IDF's examples/storage/sd_card/sdmmc (1-bit mode: frees GPIO4,
 * the flash LED, and GPIO12/13), NVS after examples/storage/nvs_rw_value. File
 * names, the counter reconciliation and the pending set come from uplink_core.
 *
 *   /sdcard/cam/new/0000000123_20250131-235958.jpg   waiting for upload
 *   /sdcard/cam/sent/...                              every chunk acknowledged
 *   /sdcard/cam/bad/...                               could not be read or encoded
 */
#include "storage.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app_config.h"
#include "driver/sdmmc_host.h"
#include "esp_heap_caps.h"
#include "esp_log.h"
#include "esp_vfs_fat.h"
#include "freertos/FreeRTOS.h"
#include "freertos/semphr.h"
#include "nvs.h"
#include "sdmmc_cmd.h"
#include "timesync.h"
#include "uc_codec.h"
#include "uc_store.h"

static const char *TAG = "storage";

#define NVS_NAMESPACE "uplink"
#define NVS_KEY_NEXT "next_pid"
#define PATH_MAX_LEN (sizeof(APP_DIR_SENT) + UC_NAME_MAX + 8)

static SemaphoreHandle_t s_lock; /* s_pending, s_next_pid, RAM slot */
static nvs_handle_t s_nvs;
static bool s_nvs_ok;
static uint32_t s_next_pid;
static uc_pidq_t s_pending;
static bool s_card;
static sdmmc_card_t *s_sd;
/* no card: one picture in PSRAM */
static uint8_t *s_ram;
static uint32_t s_ram_len, s_ram_pid;
static bool s_ram_used;
/* the picture being uploaded (uplink task only) */
static FILE *s_rf;
static uint32_t s_rf_pid;
static char s_rf_name[UC_NAME_MAX];
static uint8_t s_io[4096];

/* dir/name into out; false if it does not fit (checked, so no truncation). */
static bool join(char *out, size_t cap, const char *dir, const char *name)
{
    int n = snprintf(out, cap, "%s/%s", dir, name);
    return n > 0 && (size_t)n < cap;
}

static esp_err_t mount_card(void)
{
    esp_vfs_fat_sdmmc_mount_config_t mount = {
#if CONFIG_APP_SD_FORMAT_IF_MOUNT_FAILED
        .format_if_mount_failed = true,
#else
        .format_if_mount_failed = false,
#endif
        .max_files = 4,
        .allocation_unit_size = 16 * 1024,
    };
    sdmmc_host_t host = SDMMC_HOST_DEFAULT();
    sdmmc_slot_config_t slot = SDMMC_SLOT_CONFIG_DEFAULT();
    slot.width = 1; /* ESP32-CAM: DAT1 is the flash LED (GPIO4), DAT2 is strapping GPIO12 */
    slot.flags |= SDMMC_SLOT_FLAG_INTERNAL_PULLUP;
    esp_err_t err = esp_vfs_fat_sdmmc_mount(APP_MOUNT_POINT, &host, &slot, &mount, &s_sd);
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "SD mount failed: %s%s", esp_err_to_name(err),
                 err == ESP_FAIL ? " (no FAT file system?)" : " (card inserted? pull-ups?)");
        return err;
    }
    sdmmc_card_print_info(stdout, s_sd);
    mkdir(APP_DIR_ROOT, 0775);
    mkdir(APP_DIR_NEW, 0775);
    mkdir(APP_DIR_SENT, 0775);
    mkdir(APP_DIR_BAD, 0775);
    return ESP_OK;
}

/* Walks dir: highest pid seen, and (pending) every pid into s_pending. At boot
 * (cleanup) it also removes the ".tmp" leftovers of writes cut short by a power
 * loss; later a ".tmp" may be a picture being written right now. */
static void scan_dir(const char *dir, bool pending, bool cleanup, uint32_t *max, bool *any)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        return;
    }
    struct dirent *e;
    char path[PATH_MAX_LEN];
    while ((e = readdir(d)) != NULL) {
        uint32_t pid;
        size_t n = strlen(e->d_name);
        if (cleanup && n > 4 && strcmp(e->d_name + n - 4, ".tmp") == 0 && n < UC_NAME_MAX + 4) {
            if (join(path, sizeof path, dir, e->d_name)) {
                unlink(path);
            }
            continue;
        }
        if (uc_name_parse(e->d_name, &pid) != UC_OK) {
            continue;
        }
        if (!*any || pid > *max) {
            *max = pid;
        }
        *any = true;
        if (pending) {
            (void)uc_pidq_add(&s_pending, pid);
        }
    }
    closedir(d);
}

/* The file name of pid in dir (names carry a time stamp after the pid). */
static bool find_name(const char *dir, uint32_t pid, char *name)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        return false;
    }
    bool found = false;
    struct dirent *e;
    while (!found && (e = readdir(d)) != NULL) {
        uint32_t p;
        if (uc_name_parse(e->d_name, &p) == UC_OK && p == pid) {
            strlcpy(name, e->d_name, UC_NAME_MAX);
            found = true;
        }
    }
    closedir(d);
    return found;
}

static void counter_store(uint32_t next)
{
    if (!s_nvs_ok) {
        return;
    }
    esp_err_t err = nvs_set_u32(s_nvs, NVS_KEY_NEXT, next);
    if (err == ESP_OK) {
        err = nvs_commit(s_nvs);
    }
    if (err != ESP_OK) {
        ESP_LOGW(TAG, "NVS counter not saved: %s (the card scan covers it)", esp_err_to_name(err));
    }
}

esp_err_t storage_init(void)
{
    s_lock = xSemaphoreCreateMutex();
    if (s_lock == NULL) {
        return ESP_ERR_NO_MEM;
    }
    uc_pidq_init(&s_pending);
    uc_counter_in_t in = {0};
    esp_err_t err = nvs_open(NVS_NAMESPACE, NVS_READWRITE, &s_nvs);
    s_nvs_ok = err == ESP_OK;
    if (s_nvs_ok) {
        err = nvs_get_u32(s_nvs, NVS_KEY_NEXT, &in.nvs_next);
        in.nvs_found = err == ESP_OK;
        if (err != ESP_OK && err != ESP_ERR_NVS_NOT_FOUND) {
            ESP_LOGW(TAG, "NVS read: %s", esp_err_to_name(err));
        }
    } else {
        ESP_LOGE(TAG, "nvs_open: %s", esp_err_to_name(err));
    }
#if CONFIG_APP_SD_ENABLE
    s_card = mount_card() == ESP_OK;
    if (s_card) {
        scan_dir(APP_DIR_NEW, true, true, &in.card_max, &in.card_any);
        scan_dir(APP_DIR_SENT, false, false, &in.card_max, &in.card_any);
        scan_dir(APP_DIR_BAD, false, false, &in.card_max, &in.card_any);
    }
#endif
    if (!s_card) {
        s_ram = heap_caps_malloc(APP_RAM_SLOT_BYTES, MALLOC_CAP_SPIRAM);
        if (s_ram == NULL) {
            ESP_LOGE(TAG, "no SD card and no PSRAM for a picture: nothing will be uploaded");
        } else {
            ESP_LOGW(TAG, "no SD card: keeping only the latest picture, in PSRAM");
        }
    }
    bool wrapped = false;
    s_next_pid = uc_counter_next(&in, &wrapped);
    if (wrapped) {
        ESP_LOGE(TAG, "picture ids exhausted: starting again at 0 (clear the card)");
    }
    if (!in.nvs_found || in.nvs_next != s_next_pid) {
        counter_store(s_next_pid);
    }
    ESP_LOGI(TAG, "next picture id %" PRIu32 " (NVS %s%" PRIu32 ", card max %s%" PRIu32 "), %u to upload%s",
             s_next_pid, in.nvs_found ? "" : "none/", in.nvs_next, in.card_any ? "" : "none/",
             in.card_max, (unsigned)s_pending.n, s_pending.overflow ? "+" : "");
    return ESP_OK;
}

bool storage_has_card(void)
{
    return s_card;
}

/* Below the free-space floor, deletes the oldest sent pictures (never unsent ones). */
static bool make_room(void)
{
#if CONFIG_APP_SD_ENABLE
    for (int i = 0; i < 16; i++) {
        uint64_t total = 0, avail = 0;
        if (esp_vfs_fat_info(APP_MOUNT_POINT, &total, &avail) != ESP_OK) {
            return true; /* unknown: try the write */
        }
        if (avail >= (uint64_t)CONFIG_APP_SD_MIN_FREE_KB * 1024u) {
            return true;
        }
        uint32_t oldest = 0;
        bool any = false;
        DIR *d = opendir(APP_DIR_SENT);
        struct dirent *e;
        while (d != NULL && (e = readdir(d)) != NULL) {
            uint32_t p;
            if (uc_name_parse(e->d_name, &p) == UC_OK && (!any || p < oldest)) {
                oldest = p;
                any = true;
            }
        }
        if (d != NULL) {
            closedir(d);
        }
        char name[UC_NAME_MAX], path[PATH_MAX_LEN];
        if (!any || !find_name(APP_DIR_SENT, oldest, name)) {
            ESP_LOGE(TAG, "SD card full of unsent pictures: skipping this capture");
            return false;
        }
        (void)join(path, sizeof path, APP_DIR_SENT, name);
        unlink(path);
        ESP_LOGI(TAG, "card nearly full: deleted sent picture %s", name);
    }
#endif
    return true;
}

esp_err_t storage_save(const uint8_t *jpeg, size_t len, uint32_t *pid_out)
{
    if (len == 0 || len > UC_V2_MAX_SIZE) {
        return ESP_ERR_INVALID_SIZE;
    }
    if (!s_card) {
        xSemaphoreTake(s_lock, portMAX_DELAY);
        esp_err_t r = ESP_OK;
        if (s_ram == NULL || len > APP_RAM_SLOT_BYTES) {
            r = ESP_ERR_NO_MEM;
        } else if (s_ram_used) {
            r = ESP_ERR_INVALID_STATE; /* previous picture still uploading */
        } else {
            memcpy(s_ram, jpeg, len);
            s_ram_len = (uint32_t)len;
            s_ram_pid = s_next_pid++;
            s_ram_used = true;
            counter_store(s_next_pid);
            (void)uc_pidq_add(&s_pending, s_ram_pid);
            *pid_out = s_ram_pid;
        }
        xSemaphoreGive(s_lock);
        return r;
    }
    if (!make_room()) {
        return ESP_ERR_NO_MEM;
    }
    xSemaphoreTake(s_lock, portMAX_DELAY);
    uint32_t pid = s_next_pid++;
    counter_store(s_next_pid); /* before the file exists: a pid is never reused */
    xSemaphoreGive(s_lock);

    uc_datetime_t dt;
    char name[UC_NAME_MAX], path[PATH_MAX_LEN], tmp[PATH_MAX_LEN + 4];
    (void)uc_name_make(name, sizeof name, pid, timesync_now(&dt) ? &dt : NULL);
    (void)join(path, sizeof path, APP_DIR_NEW, name);
    int tn = snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (tn <= 0 || (size_t)tn >= sizeof tmp) {
        return ESP_ERR_INVALID_SIZE;
    }
    FILE *f = fopen(tmp, "wb");
    if (f == NULL) {
        ESP_LOGE(TAG, "open %s: %s", tmp, strerror(errno));
        return ESP_FAIL;
    }
    bool ok = fwrite(jpeg, 1, len, f) == len;
    ok = fflush(f) == 0 && ok;
    ok = fsync(fileno(f)) == 0 && ok; /* on the card before it counts as saved */
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        ESP_LOGE(TAG, "write %s failed: %s", path, strerror(errno));
        unlink(tmp);
        return ESP_FAIL;
    }
    xSemaphoreTake(s_lock, portMAX_DELAY);
    (void)uc_pidq_add(&s_pending, pid);
    xSemaphoreGive(s_lock);
    *pid_out = pid;
    return ESP_OK;
}

bool storage_next_pending(uint32_t *pid)
{
    xSemaphoreTake(s_lock, portMAX_DELAY);
    if (s_pending.n == 0 && s_pending.overflow && s_card) {
        uint32_t max = 0;
        bool any = false;
        s_pending.overflow = false;
        scan_dir(APP_DIR_NEW, true, false, &max, &any); /* the ones that did not fit */
    }
    bool r = uc_pidq_first(&s_pending, pid);
    xSemaphoreGive(s_lock);
    return r;
}

static void close_read(void)
{
    if (s_rf != NULL) {
        fclose(s_rf);
        s_rf = NULL;
    }
}

esp_err_t storage_open(uint32_t pid, uint32_t *size, uint32_t *crc)
{
    close_read();
    uint32_t c = 0;
    if (!s_card) {
        if (!s_ram_used || s_ram_pid != pid) {
            return ESP_ERR_NOT_FOUND;
        }
        *size = s_ram_len;
        *crc = uc_crc32(s_ram, s_ram_len);
        return ESP_OK;
    }
    char path[PATH_MAX_LEN];
    if (!find_name(APP_DIR_NEW, pid, s_rf_name)) {
        return ESP_ERR_NOT_FOUND;
    }
    (void)join(path, sizeof path, APP_DIR_NEW, s_rf_name);
    s_rf = fopen(path, "rb");
    if (s_rf == NULL) {
        return ESP_FAIL;
    }
    uint64_t total = 0;
    size_t n;
    while ((n = fread(s_io, 1, sizeof s_io, s_rf)) > 0) {
        c = uc_crc32_update(c, s_io, n);
        total += n;
    }
    if (ferror(s_rf) || total == 0 || total > UC_V2_MAX_SIZE) {
        close_read();
        return ESP_ERR_INVALID_SIZE;
    }
    s_rf_pid = pid;
    *size = (uint32_t)total;
    *crc = c;
    return ESP_OK;
}

esp_err_t storage_read(uint32_t pid, uint32_t off, uint8_t *buf, uint32_t len)
{
    if (!s_card) {
        if (!s_ram_used || s_ram_pid != pid || off > s_ram_len || len > s_ram_len - off) {
            return ESP_ERR_INVALID_ARG;
        }
        memcpy(buf, s_ram + off, len);
        return ESP_OK;
    }
    if (s_rf == NULL || s_rf_pid != pid) {
        return ESP_ERR_INVALID_STATE;
    }
    if (fseek(s_rf, (long)off, SEEK_SET) != 0 || fread(buf, 1, len, s_rf) != len) {
        return ESP_FAIL;
    }
    return ESP_OK;
}

static void forget(uint32_t pid)
{
    xSemaphoreTake(s_lock, portMAX_DELAY);
    (void)uc_pidq_remove(&s_pending, pid);
    if (!s_card && s_ram_used && s_ram_pid == pid) {
        s_ram_used = false;
    }
    xSemaphoreGive(s_lock);
}

static esp_err_t move_to(const char *dir, uint32_t pid)
{
    char name[UC_NAME_MAX], from[PATH_MAX_LEN], to[PATH_MAX_LEN];
    if (s_rf_pid == pid) {
        close_read();
    }
    if (!find_name(APP_DIR_NEW, pid, name)) {
        return ESP_ERR_NOT_FOUND;
    }
    (void)join(from, sizeof from, APP_DIR_NEW, name);
    (void)join(to, sizeof to, dir, name);
    if (rename(from, to) != 0) {
        ESP_LOGE(TAG, "rename %s -> %s: %s", from, to, strerror(errno));
        return ESP_FAIL;
    }
    return ESP_OK;
}

esp_err_t storage_mark_sent(uint32_t pid)
{
    esp_err_t err = s_card ? move_to(APP_DIR_SENT, pid) : ESP_OK;
    /* Even if the rename failed: not again in this run (after a reboot it would be
     * sent once more, which the receiver drops as duplicates). */
    forget(pid);
    return err;
}

void storage_set_aside(uint32_t pid)
{
    if (s_card && move_to(APP_DIR_BAD, pid) != ESP_OK) {
        char name[UC_NAME_MAX], path[PATH_MAX_LEN];
        if (find_name(APP_DIR_NEW, pid, name)) { /* must not block the queue after a reboot */
            (void)join(path, sizeof path, APP_DIR_NEW, name);
            unlink(path);
        }
    }
    forget(pid);
}

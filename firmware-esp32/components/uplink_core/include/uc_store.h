/*
 * Picture bookkeeping on the SD card, without touching it:
 *  - file names: "<pid, 10 digits>_<YYYYMMDD-HHMMSS>.jpg" once the clock is set by
 *    SNTP, "<pid, 10 digits>.jpg" before; the pid is read back from the name;
 *  - the picture counter: the next pid is the larger of the NVS value and one past
 *    the highest pid on the card (a reflashed NVS or a swapped card never makes a
 *    pid repeat);
 *  - the pending set: the lowest UC_PIDQ_CAP unsent pids, oldest uploaded first;
 *    when more exist it says so, and the caller rescans the card when it drains.
 */
#ifndef UC_STORE_H
#define UC_STORE_H

#include "uc_common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define UC_NAME_MAX 32 /* "4294967295_20991231-235959.jpg" + NUL = 31 */

typedef struct {
    uint16_t year; /* 1970..9999 */
    uint8_t mon;   /* 1..12 */
    uint8_t day;   /* 1..31 */
    uint8_t hour;
    uint8_t min;
    uint8_t sec;
} uc_datetime_t;

int uc_name_make(char *out, size_t cap, uint32_t pid, const uc_datetime_t *dt);
/* UC_OK and *pid for a name uc_name_make() could have produced (any case of ".jpg"). */
int uc_name_parse(const char *name, uint32_t *pid);

typedef struct {
    bool nvs_found;
    uint32_t nvs_next; /* next pid stored in NVS */
    bool card_any;
    uint32_t card_max; /* highest pid of any picture on the card, sent or not */
} uc_counter_in_t;

/* Next pid to use; sets *wrapped when the 32-bit space is exhausted (starts at 0). */
uint32_t uc_counter_next(const uc_counter_in_t *in, bool *wrapped);

#define UC_PIDQ_CAP 64

typedef struct {
    uint32_t v[UC_PIDQ_CAP]; /* ascending */
    uint16_t n;
    bool overflow; /* pids were left out: rescan when it runs empty */
} uc_pidq_t;

void uc_pidq_init(uc_pidq_t *q);
/* Adds pid (duplicates ignored). When full, keeps the lowest UC_PIDQ_CAP and sets
 * overflow. Returns true when pid is now in the set. */
bool uc_pidq_add(uc_pidq_t *q, uint32_t pid);
bool uc_pidq_first(const uc_pidq_t *q, uint32_t *pid);
bool uc_pidq_remove(uc_pidq_t *q, uint32_t pid);

#ifdef __cplusplus
}
#endif
#endif

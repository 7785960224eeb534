/* Picture bookkeeping (see uc_store.h). */
#include "uc_store.h"

#include <string.h>

static void put_dec(char *p, uint32_t v, int width)
{
    for (int i = width - 1; i >= 0; i--) {
        p[i] = (char)('0' + v % 10u);
        v /= 10u;
    }
}

int uc_name_make(char *out, size_t cap, uint32_t pid, const uc_datetime_t *dt)
{
    char buf[UC_NAME_MAX];
    size_t n = 0;
    if (out == NULL || cap == 0) {
        return UC_E_SPACE;
    }
    out[0] = '\0';
    put_dec(buf, pid, 10);
    n = 10;
    if (dt != NULL) {
        if (dt->year < 1970 || dt->year > 9999 || dt->mon < 1 || dt->mon > 12 || dt->day < 1 ||
            dt->day > 31 || dt->hour > 23 || dt->min > 59 || dt->sec > 60) {
            return UC_E_ARG;
        }
        buf[n++] = '_';
        put_dec(buf + n, dt->year, 4);
        n += 4;
        put_dec(buf + n, dt->mon, 2);
        n += 2;
        put_dec(buf + n, dt->day, 2);
        n += 2;
        buf[n++] = '-';
        put_dec(buf + n, dt->hour, 2);
        n += 2;
        put_dec(buf + n, dt->min, 2);
        n += 2;
        put_dec(buf + n, dt->sec, 2);
        n += 2;
    }
    memcpy(buf + n, ".jpg", 5);
    n += 4;
    if (cap < n + 1) {
        return UC_E_SPACE;
    }
    memcpy(out, buf, n + 1);
    return (int)n;
}

static bool all_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
    }
    return true;
}

static char lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

int uc_name_parse(const char *name, uint32_t *pid)
{
    if (name == NULL || pid == NULL) {
        return UC_E_ARG;
    }
    size_t n = strlen(name);
    /* "dddddddddd.jpg" (14) or "dddddddddd_YYYYMMDD-HHMMSS.jpg" (30) */
    if ((n != 14 && n != 30) || !all_digits(name, 10)) {
        return UC_E_PARSE;
    }
    const char *ext = name + n - 4;
    if (ext[0] != '.' || lower(ext[1]) != 'j' || lower(ext[2]) != 'p' || lower(ext[3]) != 'g') {
        return UC_E_PARSE;
    }
    if (n == 30 && (name[10] != '_' || !all_digits(name + 11, 8) || name[19] != '-' ||
                    !all_digits(name + 20, 6))) {
        return UC_E_PARSE;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < 10; i++) {
        v = v * 10u + (uint64_t)(name[i] - '0');
    }
    if (v > UINT32_MAX) {
        return UC_E_PARSE;
    }
    *pid = (uint32_t)v;
    return UC_OK;
}

uint32_t uc_counter_next(const uc_counter_in_t *in, bool *wrapped)
{
    uint64_t next = in->nvs_found ? in->nvs_next : 1u;
    if (in->card_any && (uint64_t)in->card_max + 1u > next) {
        next = (uint64_t)in->card_max + 1u;
    }
    bool wrap = next > UINT32_MAX; /* 4 294 967 296 pictures: clear the card */
    if (wrapped != NULL) {
        *wrapped = wrap;
    }
    return wrap ? 0u : (uint32_t)next;
}

void uc_pidq_init(uc_pidq_t *q)
{
    memset(q, 0, sizeof *q);
}

bool uc_pidq_add(uc_pidq_t *q, uint32_t pid)
{
    uint16_t i = 0;
    while (i < q->n && q->v[i] < pid) {
        i++;
    }
    if (i < q->n && q->v[i] == pid) {
        return true;
    }
    if (q->n == UC_PIDQ_CAP) {
        q->overflow = true;
        if (i == q->n) {
            return false; /* larger than everything kept */
        }
        q->n--; /* drop the largest */
    }
    memmove(&q->v[i + 1], &q->v[i], (size_t)(q->n - i) * sizeof q->v[0]);
    q->v[i] = pid;
    q->n++;
    return true;
}

bool uc_pidq_first(const uc_pidq_t *q, uint32_t *pid)
{
    if (q->n == 0) {
        return false;
    }
    *pid = q->v[0];
    return true;
}

bool uc_pidq_remove(uc_pidq_t *q, uint32_t pid)
{
    for (uint16_t i = 0; i < q->n; i++) {
        if (q->v[i] == pid) {
            memmove(&q->v[i], &q->v[i + 1], (size_t)(q->n - i - 1) * sizeof q->v[0]);
            q->n--;
            return true;
        }
    }
    return false;
}

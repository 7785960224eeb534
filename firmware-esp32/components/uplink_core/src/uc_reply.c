/* Alink post_reply parser (see uc_reply.h). */
#include "uc_reply.h"

#include <string.h>

typedef struct {
    const char *p;
    size_t n;
    size_t i;
} cur_t;

static void ws(cur_t *c)
{
    while (c->i < c->n && (c->p[c->i] == ' ' || c->p[c->i] == '\t' || c->p[c->i] == '\r' ||
                           c->p[c->i] == '\n')) {
        c->i++;
    }
}

static bool is_hex(char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
}

/* At '"': skips the string, reporting its raw contents (escapes not decoded). */
static bool str(cur_t *c, const char **s, size_t *len)
{
    if (c->i >= c->n || c->p[c->i] != '"') {
        return false;
    }
    size_t start = ++c->i;
    while (c->i < c->n) {
        unsigned char ch = (unsigned char)c->p[c->i];
        if (ch == '"') {
            if (s != NULL) {
                *s = c->p + start;
                *len = c->i - start;
            }
            c->i++;
            return true;
        }
        if (ch < 0x20) {
            return false;
        }
        if (ch == '\\') {
            if (++c->i >= c->n) {
                return false;
            }
            char e = c->p[c->i];
            if (e == 'u') {
                for (int k = 0; k < 4; k++) {
                    if (++c->i >= c->n || !is_hex(c->p[c->i])) {
                        return false;
                    }
                }
            } else if (strchr("\"\\/bfnrt", e) == NULL || e == '\0') {
                return false;
            }
        }
        c->i++;
    }
    return false;
}

/* JSON number; *is_int and *val set when it is an integer fitting in int64 range we use. */
static bool num(cur_t *c, bool *is_int, int64_t *val)
{
    size_t start = c->i;
    bool neg = false;
    int64_t v = 0;
    bool big = false;
    if (c->i < c->n && c->p[c->i] == '-') {
        neg = true;
        c->i++;
    }
    if (c->i >= c->n || c->p[c->i] < '0' || c->p[c->i] > '9') {
        return false;
    }
    if (c->p[c->i] == '0') {
        c->i++;
    } else {
        while (c->i < c->n && c->p[c->i] >= '0' && c->p[c->i] <= '9') {
            if (v > 100000000000LL) {
                big = true;
            } else {
                v = v * 10 + (c->p[c->i] - '0');
            }
            c->i++;
        }
    }
    bool frac = false;
    if (c->i < c->n && c->p[c->i] == '.') {
        frac = true;
        c->i++;
        size_t d = c->i;
        while (c->i < c->n && c->p[c->i] >= '0' && c->p[c->i] <= '9') {
            c->i++;
        }
        if (c->i == d) {
            return false;
        }
    }
    if (c->i < c->n && (c->p[c->i] == 'e' || c->p[c->i] == 'E')) {
        frac = true;
        c->i++;
        if (c->i < c->n && (c->p[c->i] == '+' || c->p[c->i] == '-')) {
            c->i++;
        }
        size_t d = c->i;
        while (c->i < c->n && c->p[c->i] >= '0' && c->p[c->i] <= '9') {
            c->i++;
        }
        if (c->i == d) {
            return false;
        }
    }
    *is_int = !frac && !big && c->i > start;
    *val = neg ? -v : v;
    return true;
}

static bool lit(cur_t *c, const char *w)
{
    size_t k = strlen(w);
    if (c->n - c->i < k || memcmp(c->p + c->i, w, k) != 0) {
        return false;
    }
    c->i += k;
    return true;
}

/* Skips any JSON value, nesting tracked with a bounded explicit stack. */
static bool skip_value(cur_t *c)
{
    char stack[UC_REPLY_MAX_DEPTH];
    int depth = 0;
    for (;;) {
        ws(c);
        if (c->i >= c->n) {
            return false;
        }
        char ch = c->p[c->i];
        bool is_int;
        int64_t v;
        if (ch == '{' || ch == '[') {
            if (depth == UC_REPLY_MAX_DEPTH) {
                return false;
            }
            stack[depth++] = ch;
            c->i++;
            ws(c);
            if (c->i < c->n && c->p[c->i] == (ch == '{' ? '}' : ']')) {
                c->i++;
                depth--;
                goto after_value;
            }
            if (ch == '{') {
                goto object_key;
            }
            continue; /* first array element */
        } else if (ch == '"') {
            if (!str(c, NULL, NULL)) {
                return false;
            }
        } else if (ch == 't') {
            if (!lit(c, "true")) {
                return false;
            }
        } else if (ch == 'f') {
            if (!lit(c, "false")) {
                return false;
            }
        } else if (ch == 'n') {
            if (!lit(c, "null")) {
                return false;
            }
        } else if (!num(c, &is_int, &v)) {
            return false;
        }
    after_value:
        for (;;) {
            if (depth == 0) {
                return true;
            }
            ws(c);
            if (c->i >= c->n) {
                return false;
            }
            char close = stack[depth - 1] == '{' ? '}' : ']';
            if (c->p[c->i] == close) {
                c->i++;
                depth--;
                continue;
            }
            if (c->p[c->i] != ',') {
                return false;
            }
            c->i++;
            if (stack[depth - 1] == '[') {
                break; /* next element */
            }
        object_key:
            ws(c);
            if (!str(c, NULL, NULL)) {
                return false;
            }
            ws(c);
            if (c->i >= c->n || c->p[c->i] != ':') {
                return false;
            }
            c->i++;
            break; /* the member's value */
        }
    }
}

static bool digits_u32(const char *s, size_t n, uint32_t *out)
{
    if (n == 0 || n > 10 || (n > 1 && s[0] == '0')) {
        return false;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        v = v * 10u + (uint64_t)(s[i] - '0');
    }
    if (v > UINT32_MAX) {
        return false;
    }
    *out = (uint32_t)v;
    return true;
}

int uc_reply_parse(const char *buf, size_t len, uc_reply_t *out)
{
    if (buf == NULL || out == NULL) {
        return UC_E_ARG;
    }
    cur_t c = {buf, len, 0};
    bool have_id = false;
    bool have_code = false;
    uc_reply_t r = {0, 0};
    ws(&c);
    if (c.i >= c.n || c.p[c.i] != '{') {
        return UC_E_PARSE;
    }
    c.i++;
    ws(&c);
    if (c.i < c.n && c.p[c.i] == '}') {
        c.i++;
    } else {
        for (;;) {
            const char *k;
            size_t kn;
            ws(&c);
            if (!str(&c, &k, &kn)) {
                return UC_E_PARSE;
            }
            ws(&c);
            if (c.i >= c.n || c.p[c.i] != ':') {
                return UC_E_PARSE;
            }
            c.i++;
            ws(&c);
            if (c.i >= c.n) {
                return UC_E_PARSE;
            }
            if (kn == 2 && memcmp(k, "id", 2) == 0) {
                if (have_id) {
                    return UC_E_PARSE;
                }
                if (c.p[c.i] == '"') {
                    const char *s;
                    size_t sn;
                    if (!str(&c, &s, &sn) || !digits_u32(s, sn, &r.id)) {
                        return UC_E_PARSE;
                    }
                } else {
                    bool is_int;
                    int64_t v;
                    if (!num(&c, &is_int, &v) || !is_int || v < 0 || v > (int64_t)UINT32_MAX) {
                        return UC_E_PARSE;
                    }
                    r.id = (uint32_t)v;
                }
                have_id = true;
            } else if (kn == 4 && memcmp(k, "code", 4) == 0) {
                bool is_int;
                int64_t v;
                if (have_code || !num(&c, &is_int, &v) || !is_int || v < INT32_MIN ||
                    v > INT32_MAX) {
                    return UC_E_PARSE;
                }
                r.code = (int32_t)v;
                have_code = true;
            } else if (!skip_value(&c)) {
                return UC_E_PARSE;
            }
            ws(&c);
            if (c.i < c.n && c.p[c.i] == ',') {
                c.i++;
                continue;
            }
            if (c.i < c.n && c.p[c.i] == '}') {
                c.i++;
                break;
            }
            return UC_E_PARSE;
        }
    }
    ws(&c);
    if (c.i != c.n || !have_id || !have_code) {
        return UC_E_PARSE;
    }
    *out = r;
    return UC_OK;
}

bool uc_reply_is_throttle(int32_t code)
{
    /* 429: too many requests; 6452: rate limited (log service); 6313: thing-model
     * check service unavailable (transient). */
    return code == 429 || code == 6452 || code == 6313;
}

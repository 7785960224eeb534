/* Fuzz target: encoders. Random picture bytes, pid, format and chunk size: every
 * payload must have the exact shape, stay within the limits, and decode back to
 * the picture. Also throws the bytes at the name parser and the sign-in builder. */
#include <stdlib.h>
#include <string.h>

#include "uc_codec.h"
#include "uc_sign.h"
#include "uc_store.h"
#include "uc_wire.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static int b64v(char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

static size_t b64dec(const char *s, size_t n, unsigned char *out)
{
    size_t k = 0;
    if (n % 4 != 0) abort();
    for (size_t i = 0; i < n; i += 4) {
        int v[4];
        int pad = 0;
        for (int j = 0; j < 4; j++) {
            if (s[i + (size_t)j] == '=' && i + 4 == n && j >= 2) {
                v[j] = 0;
                pad++;
            } else if ((v[j] = b64v(s[i + (size_t)j])) < 0 || pad) {
                abort();
            }
        }
        unsigned w = ((unsigned)v[0] << 18) | ((unsigned)v[1] << 12) | ((unsigned)v[2] << 6) | (unsigned)v[3];
        out[k++] = (unsigned char)(w >> 16);
        if (pad < 2) out[k++] = (unsigned char)(w >> 8);
        if (pad < 1) out[k++] = (unsigned char)w;
    }
    return k;
}

static char msg[UC_MSG_MAX];
static unsigned char back[UC_PIECE_MAX + 8];

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    if (size < 7) {
        return 0;
    }
    uc_format_t fmt = (data[0] & 1) ? UC_FMT_V1 : UC_FMT_V2;
    uint32_t pid = (uint32_t)data[1] << 24 | (uint32_t)data[2] << 16 | (uint32_t)data[3] << 8 | data[4];
    uint32_t chunk = ((uint32_t)data[5] << 8 | data[6]) % 10300u;
    const unsigned char *jpeg = data + 7;
    uint32_t len = (uint32_t)(size - 7);
    uc_pic_t pic;
    int e = uc_pic_init(&pic, fmt, pid, len, uc_crc32(jpeg, len), chunk);
    if (e == UC_OK) {
        uint32_t total = 0;
        for (uint32_t seq = 0; seq < pic.count; seq++) {
            uint32_t off, n;
            if (uc_pic_piece(&pic, seq, &off, &n) != UC_OK || off != total) abort();
            int k = uc_msg_build(&pic, seq, jpeg + off, n, msg, sizeof msg);
            if (k <= 0 || (size_t)k != strlen(msg) || (size_t)k > UC_MSG_MAX - 1) abort();
            const char *v = strstr(msg, "\"img\":\"");
            const char *end = strstr(msg, "\"},\"method\":\"thing.event.property.post\"}");
            if (v == NULL || end == NULL || end[40] != '\0' || strncmp(msg, "{\"id\":\"", 7) != 0) abort();
            v += 7;
            size_t vn = (size_t)(end - v);
            if (vn > UC_MAX_VALUE_CHARS) abort();
            if (strtoul(msg + 7, NULL, 10) != uc_alink_id(pid, seq)) abort();
            if (fmt == UC_FMT_V2) {
                const char *d = v;
                for (int f = 0; f < 6; f++) {
                    d = strchr(d, ';');
                    if (d == NULL) abort();
                    d++;
                }
                size_t dn = b64dec(d, (size_t)(end - d), back);
                if (dn != n || memcmp(back, jpeg + off, n) != 0) abort();
                if (seq + 1 < pic.count && n % 3 != 0) abort();
            } else if (n == 0) {
                if (vn != 3 || memcmp(v, "END", 3) != 0) abort();
            } else if (vn != 2 * n) {
                abort();
            }
            total += n;
        }
        if (total != len) abort();
    } else if (e != UC_E_ARG && e != UC_E_RANGE) {
        abort();
    }
    /* NUL-terminated views of the same bytes for the string parsers */
    char s[96];
    size_t sn = size - 7 < sizeof s - 1 ? size - 7 : sizeof s - 1;
    memcpy(s, jpeg, sn);
    s[sn] = '\0';
    uint32_t p2;
    if (uc_name_parse(s, &p2) == UC_OK) {
        char again[UC_NAME_MAX];
        if (uc_name_make(again, sizeof again, p2, NULL) != 14 || memcmp(again, s, 10) != 0) abort();
    }
    char out[256];
    (void)uc_auth_content(out, sizeof out, s, s, s, "1");
    (void)uc_broker_host(out, sizeof out, "pk", "cn-shanghai", s);
    (void)uc_topic_post(out, sizeof out, s, s);
    return 0;
}

/* Hex, Base64, CRC-32 and decimal helpers (uplink_core). */
#include "uc_codec.h"

static const char HEX_UP[] = "0123456789ABCDEF";
static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int fail_space(char *out, size_t cap)
{
    if (out != NULL && cap > 0) {
        out[0] = '\0';
    }
    return UC_E_SPACE;
}

int uc_hex_upper(const uint8_t *in, size_t n, char *out, size_t cap)
{
    if (out == NULL || (in == NULL && n > 0)) {
        return UC_E_ARG;
    }
    if (n > (SIZE_MAX - 1) / 2 || cap < 2 * n + 1 || 2 * n > (size_t)INT32_MAX) {
        return fail_space(out, cap);
    }
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = HEX_UP[in[i] >> 4];
        out[2 * i + 1] = HEX_UP[in[i] & 0x0Fu];
    }
    out[2 * n] = '\0';
    return (int)(2 * n);
}

int uc_b64_encode(const uint8_t *in, size_t n, char *out, size_t cap)
{
    if (out == NULL || (in == NULL && n > 0)) {
        return UC_E_ARG;
    }
    if (n > (SIZE_MAX / 4u) * 3u - 3u) {
        return fail_space(out, cap);
    }
    size_t need = UC_B64_LEN(n);
    if (cap < need + 1 || need > (size_t)INT32_MAX) {
        return fail_space(out, cap);
    }
    size_t o = 0;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = ((uint32_t)in[i] << 16) | ((uint32_t)in[i + 1] << 8) | in[i + 2];
        out[o++] = B64[(v >> 18) & 63u];
        out[o++] = B64[(v >> 12) & 63u];
        out[o++] = B64[(v >> 6) & 63u];
        out[o++] = B64[v & 63u];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = B64[(v >> 18) & 63u];
        out[o++] = B64[(v >> 12) & 63u];
        out[o++] = '=';
        out[o++] = '=';
    } else if (n - i == 2) {
        uint32_t v = ((uint32_t)in[i] << 16) | ((uint32_t)in[i + 1] << 8);
        out[o++] = B64[(v >> 18) & 63u];
        out[o++] = B64[(v >> 12) & 63u];
        out[o++] = B64[(v >> 6) & 63u];
        out[o++] = '=';
    }
    out[o] = '\0';
    return (int)o;
}

/* Table-less, nibble-at-a-time CRC-32: 64 bytes of table, fast enough for a few
 * hundred KB per picture on a 240 MHz core. */
static const uint32_t CRC_NIBBLE[16] = {
    0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu, 0x76DC4190u, 0x6B6B51F4u,
    0x4DB26158u, 0x5005713Cu, 0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu,
    0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu,
};

uint32_t uc_crc32_update(uint32_t crc, const uint8_t *p, size_t n)
{
    crc = ~crc;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        crc = (crc >> 4) ^ CRC_NIBBLE[crc & 0x0Fu];
        crc = (crc >> 4) ^ CRC_NIBBLE[crc & 0x0Fu];
    }
    return ~crc;
}

uint32_t uc_crc32(const uint8_t *p, size_t n)
{
    return uc_crc32_update(0, p, n);
}

int uc_u32_dec(uint32_t v, char *out, size_t cap)
{
    char tmp[10];
    size_t n = 0;
    if (out == NULL) {
        return UC_E_ARG;
    }
    do {
        tmp[n++] = (char)('0' + (v % 10u));
        v /= 10u;
    } while (v != 0);
    if (cap < n + 1) {
        return fail_space(out, cap);
    }
    for (size_t i = 0; i < n; i++) {
        out[i] = tmp[n - 1 - i];
    }
    out[n] = '\0';
    return (int)n;
}

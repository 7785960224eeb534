/* Hex, Base64, CRC-32, decimal. */
#include <stdlib.h>

#include "sim.h"
#include "th.h"
#include "uc_codec.h"

static void t_hex(void)
{
    char out[16];
    const uint8_t in[] = {0x00, 0xFF, 0x10, 0xAB, 0x9c};
    CHECK_EQ(uc_hex_upper(in, 5, out, sizeof out), 10);
    CHECK_STR(out, "00FF10AB9C");
    CHECK_EQ(uc_hex_upper(in, 0, out, 1), 0);
    CHECK_STR(out, "");
    CHECK_EQ(uc_hex_upper(in, 5, out, 11), 10); /* exact fit */
    CHECK_EQ(uc_hex_upper(in, 5, out, 10), UC_E_SPACE);
    CHECK_STR(out, "");
    CHECK_EQ(uc_hex_upper(NULL, 1, out, sizeof out), UC_E_ARG);
}

static void t_b64_rfc4648(void)
{
    static const char *in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *want[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    char out[16];
    for (int i = 0; i < 7; i++) {
        size_t n = strlen(in[i]);
        CHECK_EQ(uc_b64_encode((const uint8_t *)in[i], n, out, sizeof out), (long long)strlen(want[i]));
        CHECK_STR(out, want[i]);
        CHECK_EQ(UC_B64_LEN(n), strlen(want[i]));
    }
    CHECK_EQ(uc_b64_encode((const uint8_t *)"foobar", 6, out, 9), 8);
    CHECK_EQ(uc_b64_encode((const uint8_t *)"foobar", 6, out, 8), UC_E_SPACE);
    CHECK_STR(out, "");
}

static void t_b64_roundtrip(void)
{
    uint32_t rng = 99;
    uint8_t in[700];
    char out[1000];
    for (int it = 0; it < 300; it++) {
        size_t n = th_rand(&rng) % sizeof in;
        for (size_t i = 0; i < n; i++) {
            in[i] = (uint8_t)th_rand(&rng);
        }
        int k = uc_b64_encode(in, n, out, sizeof out);
        CHECK_EQ(k, UC_B64_LEN(n));
        size_t dn = 0;
        uint8_t *d = n ? sim_b64_decode(out, (size_t)k, &dn) : NULL;
        if (n) {
            CHECK(d != NULL && dn == n && memcmp(d, in, n) == 0);
        }
        free(d);
    }
}

static void t_crc32(void)
{
    CHECK_EQ(uc_crc32((const uint8_t *)"123456789", 9), 0xCBF43926u);
    CHECK_EQ(uc_crc32((const uint8_t *)"", 0), 0);
    CHECK_EQ(uc_crc32((const uint8_t *)"a", 1), 0xE8B7BE43u);
    CHECK_EQ(uc_crc32((const uint8_t *)"The quick brown fox jumps over the lazy dog", 43), 0x414FA339u);
    /* streaming in random pieces gives the one-shot value */
    uint32_t rng = 7;
    uint8_t buf[5000];
    for (size_t i = 0; i < sizeof buf; i++) {
        buf[i] = (uint8_t)th_rand(&rng);
    }
    uint32_t whole = uc_crc32(buf, sizeof buf);
    for (int it = 0; it < 50; it++) {
        uint32_t c = 0;
        size_t o = 0;
        while (o < sizeof buf) {
            size_t k = th_rand(&rng) % 700;
            if (k > sizeof buf - o) {
                k = sizeof buf - o;
            }
            c = uc_crc32_update(c, buf + o, k);
            o += k;
        }
        CHECK_EQ(c, whole);
    }
}

static void t_dec(void)
{
    char out[11];
    CHECK_EQ(uc_u32_dec(0, out, sizeof out), 1);
    CHECK_STR(out, "0");
    CHECK_EQ(uc_u32_dec(4294967295u, out, sizeof out), 10);
    CHECK_STR(out, "4294967295");
    CHECK_EQ(uc_u32_dec(1000, out, 5), 4);
    CHECK_STR(out, "1000");
    CHECK_EQ(uc_u32_dec(10000, out, 5), UC_E_SPACE);
}

void suite_codec(void);
void suite_codec(void)
{
    th_run("codec/hex", t_hex);
    th_run("codec/base64_rfc4648", t_b64_rfc4648);
    th_run("codec/base64_roundtrip", t_b64_roundtrip);
    th_run("codec/crc32", t_crc32);
    th_run("codec/decimal", t_dec);
}

/* Aliyun sign-in: the published vector, both HMAC back ends, input validation. */
#include "ref_sha.h"
#include "th.h"
#include "uc_codec.h"
#include "uc_hmac.h"
#include "uc_sign.h"

static const char *PK = "a14Xib5kdYd", *DN = "light1983432", *DS = "oLyaKqVxtRvjH284LdhqVgVUx1UPy6zq",
                  *CID = "SN1928339", *TS = "1539421321846";

static void hexlow(const uint8_t *d, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) {
        snprintf(out + 2 * i, 3, "%02x", d[i]);
    }
}

static void t_published_vector_sha1(void)
{
    char content[256];
    int n = uc_auth_content(content, sizeof content, PK, DN, CID, TS);
    CHECK_STR(content, "clientIdSN1928339deviceNamelight1983432productKeya14Xib5kdYdtimestamp1539421321846");
    CHECK_EQ(n, (long long)strlen(content));
    uint8_t mac[20];
    char hex[41];
    ref_hmac_sha1((const uint8_t *)DS, strlen(DS), (const uint8_t *)content, strlen(content), mac);
    hexlow(mac, 20, hex);
    CHECK_STR(hex, "b2488041f64f425016b467ee1c94959ebd592ad1"); /* Aliyun doc 73742 */
}

static void t_vector_sha256(void)
{
    uc_auth_t a;
    uc_auth_params_t p = {PK, DN, DS, CID, TS, true};
    CHECK_EQ(uc_auth_build(&a, &p), UC_OK);
    CHECK_STR(a.password, "E6AD631B665206C0BF2EFBE1B48AC4D84FF2A61FE89BAC30065E17975A482C40");
    CHECK_STR(a.client_id, "SN1928339|securemode=2,signmethod=hmacsha256,timestamp=1539421321846|");
    CHECK_STR(a.username, "light1983432&a14Xib5kdYd");
    p.tls = false;
    CHECK_EQ(uc_auth_build(&a, &p), UC_OK);
    CHECK_STR(a.client_id, "SN1928339|securemode=3,signmethod=hmacsha256,timestamp=1539421321846|");
    CHECK_STR(a.password, "E6AD631B665206C0BF2EFBE1B48AC4D84FF2A61FE89BAC30065E17975A482C40");
}

static void t_defaults(void)
{
    uc_auth_t a;
    uc_auth_params_t p = {PK, DN, DS, NULL, NULL, true};
    CHECK_EQ(uc_auth_build(&a, &p), UC_OK);
    CHECK_STR(a.client_id, "a14Xib5kdYd.light1983432|securemode=2,signmethod=hmacsha256,timestamp=2524608000000|");
    const char *content = "clientIda14Xib5kdYd.light1983432deviceNamelight1983432productKeya14Xib5kdYdtimestamp2524608000000";
    uint8_t mac[32];
    char want[65];
    ref_hmac_sha256((const uint8_t *)DS, strlen(DS), (const uint8_t *)content, strlen(content), mac);
    uc_hex_upper(mac, 32, want, sizeof want);
    CHECK_STR(a.password, want);
}

static void t_invalid(void)
{
    uc_auth_t a;
    uc_auth_params_t bad[] = {
        {"a14X|b", DN, DS, NULL, NULL, true},
        {PK, "dn,x", DS, NULL, NULL, true},
        {PK, DN, "", NULL, NULL, true},
        {PK, DN, "sec ret", NULL, NULL, true},
        {PK, DN, DS, "c|id", NULL, true},
        {PK, DN, DS, "0123456789012345678901234567890123456789012345678901234567890123456789", NULL, true},
        {PK, DN, DS, NULL, "12a", true},
        {NULL, DN, DS, NULL, NULL, true},
        {PK, NULL, DS, NULL, NULL, true},
        {PK, DN, NULL, NULL, NULL, true},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_EQ(uc_auth_build(&a, &bad[i]), UC_E_ARG);
        CHECK_STR(a.password, "");
    }
    char c[16];
    CHECK_EQ(uc_auth_content(c, sizeof c, PK, DN, CID, TS), UC_E_SPACE);
}

static void t_hmac_rfc(void)
{
    uint8_t mac[32];
    char hex[65];
    const char *k = "Jefe", *m = "what do ya want for nothing?";
    CHECK_EQ(uc_hmac_sha256((const uint8_t *)k, 4, (const uint8_t *)m, strlen(m), mac), 0);
    hexlow(mac, 32, hex);
    CHECK_STR(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"); /* RFC 4231 #2 */
    ref_hmac_sha1((const uint8_t *)k, 4, (const uint8_t *)m, strlen(m), mac);
    hexlow(mac, 20, hex);
    CHECK_STR(hex, "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"); /* RFC 2202 #2 */
    uint8_t key[131];
    memset(key, 0xaa, sizeof key);
    const char *m6 = "Test Using Larger Than Block-Size Key - Hash Key First";
    CHECK_EQ(uc_hmac_sha256(key, sizeof key, (const uint8_t *)m6, strlen(m6), mac), 0);
    hexlow(mac, 32, hex);
    CHECK_STR(hex, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"); /* RFC 4231 #6 */
    CHECK(uc_hmac_sha256(NULL, 0, (const uint8_t *)m, 1, mac) != 0);
}

static void t_backend_matches_reference(void)
{
    uint32_t rng = 4242;
    uint8_t key[200], msg[600], a[32], b[32];
    for (int it = 0; it < 300; it++) {
        size_t kn = 1 + th_rand(&rng) % sizeof key, mn = th_rand(&rng) % sizeof msg;
        for (size_t i = 0; i < kn; i++) key[i] = (uint8_t)th_rand(&rng);
        for (size_t i = 0; i < mn; i++) msg[i] = (uint8_t)th_rand(&rng);
        CHECK_EQ(uc_hmac_sha256(key, kn, msg, mn, a), 0);
        ref_hmac_sha256(key, kn, msg, mn, b);
        CHECK(memcmp(a, b, 32) == 0);
    }
    printf("     (HMAC back end: %s)\n", uc_hmac_backend());
}

static void t_broker_host(void)
{
    char h[128];
    CHECK(uc_broker_host(h, sizeof h, PK, "cn-shanghai", NULL) > 0);
    CHECK_STR(h, "a14Xib5kdYd.iot-as-mqtt.cn-shanghai.aliyuncs.com");
    CHECK(uc_broker_host(h, sizeof h, PK, "cn-shanghai", "iot-06z00abc.mqtt.iothub.aliyuncs.com") > 0);
    CHECK_STR(h, "iot-06z00abc.mqtt.iothub.aliyuncs.com");
    CHECK_EQ(uc_broker_host(h, sizeof h, PK, "cn-shanghai", "evil/host"), UC_E_ARG);
    CHECK_EQ(uc_broker_host(h, sizeof h, PK, "", ""), UC_E_ARG);
    CHECK_EQ(uc_broker_host(h, 10, PK, "cn-shanghai", NULL), UC_E_SPACE);
}

void suite_sign(void);
void suite_sign(void)
{
    th_run("sign/published_vector_hmac_sha1", t_published_vector_sha1);
    th_run("sign/vector_hmac_sha256_upper", t_vector_sha256);
    th_run("sign/default_client_id_and_timestamp", t_defaults);
    th_run("sign/invalid_inputs", t_invalid);
    th_run("sign/hmac_rfc_vectors", t_hmac_rfc);
    th_run("sign/backend_matches_reference", t_backend_matches_reference);
    th_run("sign/broker_host", t_broker_host);
}

/*
 * uc_hmac_sha256() on Mbed TLS: md API on Mbed TLS 2/3 (ESP-IDF 5.x), PSA on
 * Mbed TLS 4 / TF-PSA-Crypto (ESP-IDF 6.x). Define UC_HMAC_FORCE_PSA to take the
 * PSA path on an older library too (the host tests do, to test both paths).
 */
#include "uc_hmac.h"

#include "mbedtls/md.h" /* also pulls in the build info that carries the version */

#if defined(UC_HMAC_FORCE_PSA) || defined(TF_PSA_CRYPTO_VERSION_MAJOR) ||                    \
    (defined(MBEDTLS_VERSION_MAJOR) && MBEDTLS_VERSION_MAJOR >= 4)
#define UC_HMAC_USE_PSA 1
#include "psa/crypto.h"
#endif

#if defined(UC_HMAC_USE_PSA)

int uc_hmac_sha256(const uint8_t *key, size_t key_len, const uint8_t *msg, size_t msg_len,
                   uint8_t out[UC_SHA256_LEN])
{
    if (key == NULL || out == NULL || (msg == NULL && msg_len > 0) || key_len == 0) {
        return -1;
    }
    if (psa_crypto_init() != PSA_SUCCESS) { /* idempotent */
        return -1;
    }
    psa_key_attributes_t attr = PSA_KEY_ATTRIBUTES_INIT;
    psa_set_key_type(&attr, PSA_KEY_TYPE_HMAC);
    psa_set_key_algorithm(&attr, PSA_ALG_HMAC(PSA_ALG_SHA_256));
    psa_set_key_usage_flags(&attr, PSA_KEY_USAGE_SIGN_MESSAGE);
    mbedtls_svc_key_id_t id;
    psa_status_t st = psa_import_key(&attr, key, key_len, &id);
    psa_reset_key_attributes(&attr);
    if (st != PSA_SUCCESS) {
        return -1;
    }
    size_t n = 0;
    st = psa_mac_compute(id, PSA_ALG_HMAC(PSA_ALG_SHA_256), msg, msg_len, out, UC_SHA256_LEN, &n);
    (void)psa_destroy_key(id);
    return (st == PSA_SUCCESS && n == UC_SHA256_LEN) ? 0 : -1;
}

const char *uc_hmac_backend(void)
{
    return "psa";
}

#else

int uc_hmac_sha256(const uint8_t *key, size_t key_len, const uint8_t *msg, size_t msg_len,
                   uint8_t out[UC_SHA256_LEN])
{
    if (key == NULL || out == NULL || (msg == NULL && msg_len > 0) || key_len == 0) {
        return -1;
    }
    const mbedtls_md_info_t *info = mbedtls_md_info_from_type(MBEDTLS_MD_SHA256);
    if (info == NULL) {
        return -1;
    }
    return mbedtls_md_hmac(info, key, key_len, msg, msg_len, out) == 0 ? 0 : -1;
}

const char *uc_hmac_backend(void)
{
    return "mbedtls-md";
}

#endif

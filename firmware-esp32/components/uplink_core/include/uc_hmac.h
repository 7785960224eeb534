/*
 * HMAC-SHA256, the one crypto primitive the core needs.
 *
 * Implemented outside the portable sources, in port/uc_hmac_mbedtls.c: the md API on
 * Mbed TLS 2.x/3.x (ESP-IDF 5.x), PSA Crypto on Mbed TLS 4 / TF-PSA-Crypto 1.x
 * (ESP-IDF 6), which no longer has mbedtls_md_hmac(). Host tests link either that
 * file (against Debian's libmbedcrypto) or a test-only reference implementation.
 */
#ifndef UC_HMAC_H
#define UC_HMAC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define UC_SHA256_LEN 32

/* Returns 0 on success, non-zero on failure (out is then unspecified). */
int uc_hmac_sha256(const uint8_t *key, size_t key_len, const uint8_t *msg, size_t msg_len,
                   uint8_t out[UC_SHA256_LEN]);

/* Which back end was compiled in: "mbedtls-md", "psa" or a test name. */
const char *uc_hmac_backend(void);

#ifdef __cplusplus
}
#endif
#endif

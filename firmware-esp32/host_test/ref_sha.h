/* Small reference SHA-1 / SHA-256 / HMAC, used only by the host tests: it lets the
 * 32-bit build (no 32-bit libmbedcrypto) sign, and cross-checks the mbedtls shim. */
#ifndef REF_SHA_H
#define REF_SHA_H
#include <stddef.h>
#include <stdint.h>

void ref_sha1(const uint8_t *m, size_t n, uint8_t out[20]);
void ref_sha256(const uint8_t *m, size_t n, uint8_t out[32]);
void ref_hmac_sha1(const uint8_t *k, size_t kn, const uint8_t *m, size_t n, uint8_t out[20]);
void ref_hmac_sha256(const uint8_t *k, size_t kn, const uint8_t *m, size_t n, uint8_t out[32]);
#endif

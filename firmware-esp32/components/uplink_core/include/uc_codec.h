/* Hex, Base64, CRC-32 and decimal helpers (uplink_core). */
#ifndef UC_CODEC_H
#define UC_CODEC_H

#include "uc_common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Characters of the Base64 (RFC 4648 section 4, padded) encoding of n bytes. */
#define UC_B64_LEN(n) ((((n) + 2u) / 3u) * 4u)

/* Upper-case hex of in[0..n) into out; needs cap >= 2n+1. */
int uc_hex_upper(const uint8_t *in, size_t n, char *out, size_t cap);

/* Base64 of in[0..n) into out; needs cap >= UC_B64_LEN(n)+1. */
int uc_b64_encode(const uint8_t *in, size_t n, char *out, size_t cap);

/* CRC-32 (IEEE 802.3 / zlib). Start with crc = 0 and feed the data in pieces:
 * crc = uc_crc32_update(crc, p, n); the result is the finished CRC of everything fed. */
uint32_t uc_crc32_update(uint32_t crc, const uint8_t *p, size_t n);
uint32_t uc_crc32(const uint8_t *p, size_t n);

/* Decimal of v without leading zeros; needs cap >= 11 for any value. */
int uc_u32_dec(uint32_t v, char *out, size_t cap);

#ifdef __cplusplus
}
#endif
#endif

/* uc_hmac_sha256() for builds without Mbed TLS (the -m32 tests, fw_emit):
 * the test-only reference implementation. Never part of the firmware. */
#include "ref_sha.h"
#include "uc_hmac.h"

int uc_hmac_sha256(const uint8_t *key, size_t key_len, const uint8_t *msg, size_t msg_len,
                   uint8_t out[UC_SHA256_LEN])
{
    if (key == NULL || out == NULL || (msg == NULL && msg_len > 0) || key_len == 0) {
        return -1;
    }
    ref_hmac_sha256(key, key_len, msg, msg_len, out);
    return 0;
}

const char *uc_hmac_backend(void)
{
    return "reference (test-only)";
}

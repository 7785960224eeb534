/* Fuzz target: the post_reply parser must never crash, read out of bounds or
 * accept something that is not an object with an id and a code. */
#include <stdlib.h>
#include <string.h>

#include "uc_reply.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static bool contains(const char *h, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++) {
        if (memcmp(h + i, needle, k) == 0) {
            return true;
        }
    }
    return false;
}
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    /* exact-size heap copy so ASan sees any read past the end */
    char *buf = calloc(size ? size : 1, 1);
    if (buf == NULL) {
        return 0;
    }
    if (size) {
        memcpy(buf, data, size);
    }
    uc_reply_t r;
    if (uc_reply_parse(buf, size, &r) == UC_OK) {
        size_t i = 0;
        while (i < size && (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\r' || buf[i] == '\n')) {
            i++;
        }
        if (i >= size || buf[i] != '{' || !contains(buf, size, "\"code\"")) {
            abort(); /* accepted something that cannot be a reply */
        }
    }
    free(buf);
    return 0;
}

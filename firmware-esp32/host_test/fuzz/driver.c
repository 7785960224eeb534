/* Stand-alone driver for the fuzz targets when clang/libFuzzer is absent: feeds
 * random and mutated inputs for the given number of seconds. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static unsigned rnd(unsigned *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 5.0;
    unsigned s = 0x9E3779B9u;
    static const char *dict[] = {"{", "}", "[", "]", ",", ":", "\"id\"", "\"code\"", "\"", "200", "429",
                                 "\\u00e9", "\\", "true", "null", " ", "1e5", "-", "\"123000\""};
    unsigned char buf[4096];
    unsigned long n = 0;
    clock_t end = clock() + (clock_t)(seconds * CLOCKS_PER_SEC);
    while (clock() < end) {
        size_t len = rnd(&s) % sizeof buf;
        if (rnd(&s) % 2) { /* token soup: reaches deeper into parsers */
            size_t k = 0;
            while (k < len) {
                const char *t = dict[rnd(&s) % (sizeof dict / sizeof dict[0])];
                size_t tl = strlen(t);
                if (k + tl > len) break;
                memcpy(buf + k, t, tl);
                k += tl;
            }
            len = k;
        } else {
            for (size_t i = 0; i < len; i++) buf[i] = (unsigned char)rnd(&s);
        }
        unsigned char *copy = malloc(len ? len : 1);
        memcpy(copy, buf, len);
        LLVMFuzzerTestOneInput(copy, len);
        free(copy);
        n++;
    }
    printf("fuzz (random inputs): %lu executions in %.0f s, no failure\n", n, seconds);
    return 0;
}

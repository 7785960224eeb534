#include "th.h"

#include <stdarg.h>
#include <stdlib.h>

int th_test_failures;
const char *th_vectors;
static int passed, failed;
static const char *current;

void th_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    th_test_failures++;
    if (th_test_failures > 20) {
        return; /* enough said about this test */
    }
    fprintf(stderr, "  FAIL %s (%s:%d): ", current ? current : "?", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void th_begin(const char *name)
{
    current = name;
    th_test_failures = 0;
}

void th_end(void)
{
    if (th_test_failures == 0) {
        passed++;
        printf("ok   %s\n", current);
    } else {
        failed++;
        printf("FAIL %s (%d failed checks)\n", current, th_test_failures);
    }
    fflush(stdout);
    current = NULL;
}

void th_run(const char *name, void (*fn)(void))
{
    th_begin(name);
    fn();
    th_end();
}

int th_summary(void)
{
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 && passed > 0 ? 0 : 1;
}

unsigned char *th_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }
    size_t cap = 4096, n = 0;
    unsigned char *buf = malloc(cap + 1);
    while (buf != NULL) {
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (n < cap) {
            break;
        }
        cap *= 2;
        unsigned char *nb = realloc(buf, cap + 1);
        if (nb == NULL) {
            free(buf);
            buf = NULL;
        }
        buf = nb;
    }
    fclose(f);
    if (buf != NULL) {
        buf[n] = 0;
        *len = n;
    }
    return buf;
}

uint32_t th_rand(uint32_t *s)
{
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *s = x;
    return x;
}

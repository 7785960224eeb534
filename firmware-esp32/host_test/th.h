/* A dependency-free test harness: CHECK macros, a runner, and the closing line
 * "N passed, N failed". A test passes when none of its checks failed. */
#ifndef TH_H
#define TH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

extern int th_test_failures; /* failed checks in the running test */
extern const char *th_vectors;  /* tests/vectors directory */

void th_fail(const char *file, int line, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
void th_run(const char *name, void (*fn)(void));
/* For data-driven tests: th_begin(name) ... th_end(). */
void th_begin(const char *name);
void th_end(void);
int th_summary(void); /* prints the summary, returns the exit status */

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            th_fail(__FILE__, __LINE__, "%s", #c);                                                 \
        }                                                                                          \
    } while (0)
#define CHECK_EQ(a, b)                                                                             \
    do {                                                                                           \
        long long th_a_ = (long long)(a), th_b_ = (long long)(b);                                  \
        if (th_a_ != th_b_) {                                                                      \
            th_fail(__FILE__, __LINE__, "%s == %s (%lld != %lld)", #a, #b, th_a_, th_b_);          \
        }                                                                                          \
    } while (0)
#define CHECK_STR(a, b)                                                                            \
    do {                                                                                           \
        const char *th_a_ = (a), *th_b_ = (b);                                                     \
        if (th_a_ == NULL || th_b_ == NULL || strcmp(th_a_, th_b_) != 0) {                         \
            th_fail(__FILE__, __LINE__, "%s == %s (\"%.200s\" != \"%.200s\")", #a, #b,            \
                    th_a_ ? th_a_ : "(null)", th_b_ ? th_b_ : "(null)");                          \
        }                                                                                          \
    } while (0)

/* Reads a whole file (malloc'd, NUL-terminated); NULL on error. */
unsigned char *th_read_file(const char *path, size_t *len);
/* Deterministic PRNG for tests (xorshift32, seed != 0). */
uint32_t th_rand(uint32_t *state);

#endif

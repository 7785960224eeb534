/* Reference SHA-1, SHA-256 (FIPS 180-4) and HMAC (RFC 2104), test use only. */
#include "ref_sha.h"

#include <stdlib.h>
#include <string.h>

#define ROL(x, n) (((x) << (n)) | ((x) >> (32 - (n))))
#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static uint32_t be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Pads m into whole 64-byte blocks (malloc'd). */
static uint8_t *pad(const uint8_t *m, size_t n, size_t *blocks)
{
    size_t total = ((n + 8) / 64 + 1) * 64;
    uint8_t *b = calloc(total, 1);
    if (b == NULL) {
        abort();
    }
    if (n > 0) {
        memcpy(b, m, n);
    }
    b[n] = 0x80;
    uint64_t bits = (uint64_t)n * 8u;
    for (int i = 0; i < 8; i++) {
        b[total - 1 - (size_t)i] = (uint8_t)(bits >> (8 * i));
    }
    *blocks = total / 64;
    return b;
}

void ref_sha1(const uint8_t *m, size_t n, uint8_t out[20])
{
    uint32_t h[5] = {0x67452301u, 0xEFCDAB89u, 0x98BADCFEu, 0x10325476u, 0xC3D2E1F0u};
    size_t nb;
    uint8_t *b = pad(m, n, &nb);
    for (size_t k = 0; k < nb; k++) {
        uint32_t w[80];
        for (int t = 0; t < 16; t++) {
            w[t] = be32(b + k * 64 + (size_t)t * 4);
        }
        for (int t = 16; t < 80; t++) {
            w[t] = ROL(w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16], 1);
        }
        uint32_t a = h[0], bb = h[1], c = h[2], d = h[3], e = h[4];
        for (int t = 0; t < 80; t++) {
            uint32_t f, kk;
            if (t < 20) {
                f = (bb & c) | (~bb & d);
                kk = 0x5A827999u;
            } else if (t < 40) {
                f = bb ^ c ^ d;
                kk = 0x6ED9EBA1u;
            } else if (t < 60) {
                f = (bb & c) | (bb & d) | (c & d);
                kk = 0x8F1BBCDCu;
            } else {
                f = bb ^ c ^ d;
                kk = 0xCA62C1D6u;
            }
            uint32_t tmp = ROL(a, 5) + f + e + kk + w[t];
            e = d;
            d = c;
            c = ROL(bb, 30);
            bb = a;
            a = tmp;
        }
        h[0] += a;
        h[1] += bb;
        h[2] += c;
        h[3] += d;
        h[4] += e;
    }
    free(b);
    for (int i = 0; i < 5; i++) {
        put_be32(out + 4 * i, h[i]);
    }
}

static const uint32_t K256[64] = {
    0x428a2f98u, 0x71374491u, 0xb5c0fbcfu, 0xe9b5dba5u, 0x3956c25bu, 0x59f111f1u, 0x923f82a4u,
    0xab1c5ed5u, 0xd807aa98u, 0x12835b01u, 0x243185beu, 0x550c7dc3u, 0x72be5d74u, 0x80deb1feu,
    0x9bdc06a7u, 0xc19bf174u, 0xe49b69c1u, 0xefbe4786u, 0x0fc19dc6u, 0x240ca1ccu, 0x2de92c6fu,
    0x4a7484aau, 0x5cb0a9dcu, 0x76f988dau, 0x983e5152u, 0xa831c66du, 0xb00327c8u, 0xbf597fc7u,
    0xc6e00bf3u, 0xd5a79147u, 0x06ca6351u, 0x14292967u, 0x27b70a85u, 0x2e1b2138u, 0x4d2c6dfcu,
    0x53380d13u, 0x650a7354u, 0x766a0abbu, 0x81c2c92eu, 0x92722c85u, 0xa2bfe8a1u, 0xa81a664bu,
    0xc24b8b70u, 0xc76c51a3u, 0xd192e819u, 0xd6990624u, 0xf40e3585u, 0x106aa070u, 0x19a4c116u,
    0x1e376c08u, 0x2748774cu, 0x34b0bcb5u, 0x391c0cb3u, 0x4ed8aa4au, 0x5b9cca4fu, 0x682e6ff3u,
    0x748f82eeu, 0x78a5636fu, 0x84c87814u, 0x8cc70208u, 0x90befffau, 0xa4506cebu, 0xbef9a3f7u,
    0xc67178f2u,
};

void ref_sha256(const uint8_t *m, size_t n, uint8_t out[32])
{
    uint32_t h[8] = {0x6a09e667u, 0xbb67ae85u, 0x3c6ef372u, 0xa54ff53au,
                     0x510e527fu, 0x9b05688cu, 0x1f83d9abu, 0x5be0cd19u};
    size_t nb;
    uint8_t *b = pad(m, n, &nb);
    for (size_t k = 0; k < nb; k++) {
        uint32_t w[64];
        for (int t = 0; t < 16; t++) {
            w[t] = be32(b + k * 64 + (size_t)t * 4);
        }
        for (int t = 16; t < 64; t++) {
            uint32_t s0 = ROR(w[t - 15], 7) ^ ROR(w[t - 15], 18) ^ (w[t - 15] >> 3);
            uint32_t s1 = ROR(w[t - 2], 17) ^ ROR(w[t - 2], 19) ^ (w[t - 2] >> 10);
            w[t] = w[t - 16] + s0 + w[t - 7] + s1;
        }
        uint32_t a = h[0], bb = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
        for (int t = 0; t < 64; t++) {
            uint32_t S1 = ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25);
            uint32_t ch = (e & f) ^ (~e & g);
            uint32_t t1 = hh + S1 + ch + K256[t] + w[t];
            uint32_t S0 = ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22);
            uint32_t mj = (a & bb) ^ (a & c) ^ (bb & c);
            uint32_t t2 = S0 + mj;
            hh = g;
            g = f;
            f = e;
            e = d + t1;
            d = c;
            c = bb;
            bb = a;
            a = t1 + t2;
        }
        h[0] += a;
        h[1] += bb;
        h[2] += c;
        h[3] += d;
        h[4] += e;
        h[5] += f;
        h[6] += g;
        h[7] += hh;
    }
    free(b);
    for (int i = 0; i < 8; i++) {
        put_be32(out + 4 * i, h[i]);
    }
}

typedef void (*hash_fn)(const uint8_t *, size_t, uint8_t *);

static void hmac(hash_fn H, size_t L, const uint8_t *k, size_t kn, const uint8_t *m, size_t n,
                 uint8_t *out)
{
    uint8_t key[64] = {0};
    if (kn > 64) {
        H(k, kn, key);
    } else if (kn > 0) {
        memcpy(key, k, kn);
    }
    uint8_t *inner = malloc(64 + n);
    uint8_t outer[64 + 32];
    if (inner == NULL) {
        abort();
    }
    for (int i = 0; i < 64; i++) {
        inner[i] = key[i] ^ 0x36u;
        outer[i] = key[i] ^ 0x5Cu;
    }
    if (n > 0) {
        memcpy(inner + 64, m, n);
    }
    H(inner, 64 + n, outer + 64);
    free(inner);
    H(outer, 64 + L, out);
}

void ref_hmac_sha1(const uint8_t *k, size_t kn, const uint8_t *m, size_t n, uint8_t out[20])
{
    hmac(ref_sha1, 20, k, kn, m, n, out);
}

void ref_hmac_sha256(const uint8_t *k, size_t kn, const uint8_t *m, size_t n, uint8_t out[32])
{
    hmac(ref_sha256, 32, k, kn, m, n, out);
}

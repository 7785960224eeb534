/* The wire contract of docs/protocol.md (see uc_wire.h). */
#include "uc_wire.h"

#include <string.h>

#include "uc_codec.h"

/* Bounded string builder; once it overflows every append is a no-op. */
typedef struct {
    char *p;
    size_t cap;
    size_t len;
    bool bad;
} sb_t;

static void sb_init(sb_t *b, char *p, size_t cap)
{
    b->p = p;
    b->cap = cap;
    b->len = 0;
    b->bad = (p == NULL || cap == 0);
    if (!b->bad) {
        p[0] = '\0';
    }
}

static void sb_str(sb_t *b, const char *s)
{
    size_t n = strlen(s);
    if (b->bad || b->cap - b->len <= n) {
        b->bad = true;
        return;
    }
    memcpy(b->p + b->len, s, n + 1);
    b->len += n;
}

static void sb_u32(sb_t *b, uint32_t v)
{
    char d[11];
    (void)uc_u32_dec(v, d, sizeof d);
    sb_str(b, d);
}

static int sb_done(sb_t *b)
{
    if (b->bad) {
        if (b->p != NULL && b->cap > 0) {
            b->p[0] = '\0';
        }
        return UC_E_SPACE;
    }
    return (int)b->len;
}

int uc_pic_init(uc_pic_t *pic, uc_format_t fmt, uint32_t pid, uint32_t size, uint32_t crc,
                uint32_t chunk)
{
    if (pic == NULL || size == 0) {
        return UC_E_ARG;
    }
    memset(pic, 0, sizeof *pic);
    uint32_t piece;
    if (fmt == UC_FMT_V2) {
        if (chunk == 0 || chunk % 3u != 0 || chunk > UC_V2_MAX_PIECE) {
            return UC_E_ARG;
        }
        if (size > UC_V2_MAX_SIZE) {
            return UC_E_RANGE;
        }
        piece = chunk;
    } else if (fmt == UC_FMT_V1) {
        if (chunk == 0 || chunk % 2u != 0 || chunk > UC_MAX_VALUE_CHARS) {
            return UC_E_ARG;
        }
        piece = chunk / 2u;
    } else {
        return UC_E_ARG;
    }
    uint32_t data = size / piece + (size % piece != 0 ? 1u : 0u);
    uint32_t count = data + (fmt == UC_FMT_V1 ? 1u : 0u);
    if (count > UC_MAX_CHUNKS) {
        return UC_E_RANGE;
    }
    pic->fmt = fmt;
    pic->pid = pid;
    pic->size = size;
    pic->crc = crc;
    pic->piece = piece;
    pic->data_chunks = (uint16_t)data;
    pic->count = (uint16_t)count;
    return UC_OK;
}

int uc_pic_piece(const uc_pic_t *pic, uint32_t seq, uint32_t *off, uint32_t *len)
{
    if (pic == NULL || off == NULL || len == NULL || seq >= pic->count) {
        return UC_E_ARG;
    }
    if (seq >= pic->data_chunks) { /* v1 END */
        *off = pic->size;
        *len = 0;
        return UC_OK;
    }
    uint32_t o = seq * pic->piece; /* < size <= UINT32_MAX: no overflow since seq < data */
    uint32_t rest = pic->size - o;
    *off = o;
    *len = rest < pic->piece ? rest : pic->piece;
    return UC_OK;
}

uint32_t uc_chunk_sanitize(uc_format_t fmt, uint32_t want)
{
    if (fmt == UC_FMT_V1) {
        if (want > UC_MAX_VALUE_CHARS) {
            want = UC_MAX_VALUE_CHARS;
        }
        want -= want % 2u;
        return want < 2u ? 2u : want;
    }
    if (want > UC_V2_MAX_PIECE) {
        want = UC_V2_MAX_PIECE;
    }
    want -= want % 3u;
    return want < 3u ? 3u : want;
}

uint32_t uc_alink_id(uint32_t pid, uint32_t seq)
{
    return (pid % 4294967u) * 1000u + (seq % 1000u);
}

int uc_msg_build(const uc_pic_t *pic, uint32_t seq, const uint8_t *piece, size_t len, char *out,
                 size_t cap)
{
    uint32_t off;
    uint32_t want;
    if (out != NULL && cap > 0) {
        out[0] = '\0';
    }
    if (out == NULL || uc_pic_piece(pic, seq, &off, &want) != UC_OK || len != want ||
        (piece == NULL && len > 0)) {
        return UC_E_ARG;
    }
    sb_t b;
    sb_init(&b, out, cap);
    sb_str(&b, "{\"id\":\"");
    sb_u32(&b, uc_alink_id(pic->pid, seq));
    sb_str(&b, "\",\"version\":\"1.0\",\"params\":{\"img\":\"");
    if (pic->fmt == UC_FMT_V2) {
        char crc[9];
        (void)uc_hex_upper((const uint8_t[]){(uint8_t)(pic->crc >> 24), (uint8_t)(pic->crc >> 16),
                                             (uint8_t)(pic->crc >> 8), (uint8_t)pic->crc},
                           4, crc, sizeof crc);
        sb_str(&b, "V2;");
        sb_u32(&b, pic->pid);
        sb_str(&b, ";");
        sb_u32(&b, seq);
        sb_str(&b, ";");
        sb_u32(&b, pic->count);
        sb_str(&b, ";");
        sb_u32(&b, pic->size);
        sb_str(&b, ";");
        sb_str(&b, crc);
        sb_str(&b, ";");
        if (!b.bad) {
            int n = uc_b64_encode(piece, len, b.p + b.len, b.cap - b.len);
            if (n < 0) {
                b.bad = true;
            } else {
                b.len += (size_t)n;
            }
        }
    } else if (len == 0) {
        sb_str(&b, "END");
    } else if (!b.bad) {
        int n = uc_hex_upper(piece, len, b.p + b.len, b.cap - b.len);
        if (n < 0) {
            b.bad = true;
        } else {
            b.len += (size_t)n;
        }
    }
    sb_str(&b, "\"},\"method\":\"thing.event.property.post\"}");
    return sb_done(&b);
}

static int topic(char *out, size_t cap, const char *pk, const char *dn, const char *tail)
{
    if (pk == NULL || dn == NULL || pk[0] == '\0' || dn[0] == '\0' || strpbrk(pk, "/+#") != NULL ||
        strpbrk(dn, "/+#") != NULL) {
        if (out != NULL && cap > 0) {
            out[0] = '\0';
        }
        return UC_E_ARG;
    }
    sb_t b;
    sb_init(&b, out, cap);
    sb_str(&b, "/sys/");
    sb_str(&b, pk);
    sb_str(&b, "/");
    sb_str(&b, dn);
    sb_str(&b, tail);
    return sb_done(&b);
}

int uc_topic_post(char *out, size_t cap, const char *pk, const char *dn)
{
    return topic(out, cap, pk, dn, "/thing/event/property/post");
}

int uc_topic_post_reply(char *out, size_t cap, const char *pk, const char *dn)
{
    return topic(out, cap, pk, dn, "/thing/event/property/post_reply");
}

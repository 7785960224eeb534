/* The wire contract: golden vectors byte for byte, limits, ids, topics. */
#include <stdlib.h>

#include "th.h"
#include "uc_codec.h"
#include "uc_wire.h"

static char msg[UC_MSG_MAX];

/* Encodes the whole picture the way the firmware does: piece by piece. */
static char *encode_all(uc_format_t fmt, const uint8_t *jpeg, uint32_t size, uint32_t pid,
                        uint32_t chunk, size_t *out_len, int *err)
{
    uc_pic_t pic;
    *err = uc_pic_init(&pic, fmt, pid, size, uc_crc32(jpeg, size), chunk);
    if (*err != UC_OK) {
        return NULL;
    }
    size_t cap = (size_t)pic.count * UC_MSG_MAX + 1, n = 0;
    char *all = malloc(cap);
    for (uint32_t seq = 0; seq < pic.count; seq++) {
        uint32_t off, len;
        CHECK_EQ(uc_pic_piece(&pic, seq, &off, &len), UC_OK);
        int k = uc_msg_build(&pic, seq, jpeg + off, len, msg, sizeof msg);
        CHECK(k > 0);
        if (k <= 0) {
            *err = k;
            free(all);
            return NULL;
        }
        CHECK_EQ((size_t)k, strlen(msg));
        memcpy(all + n, msg, (size_t)k);
        n += (size_t)k;
        all[n++] = '\n';
    }
    all[n] = '\0';
    *out_len = n;
    return all;
}

/* One test per line of tests/vectors/index.tsv. */
static void golden_vectors(void)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/index.tsv", th_vectors);
    size_t ilen;
    char *index = (char *)th_read_file(path, &ilen);
    th_begin("vectors/index.tsv readable");
    CHECK(index != NULL);
    th_end();
    if (index == NULL) {
        return;
    }
    int nv1 = 0, nv2 = 0;
    for (char *line = index, *nl; line != NULL && *line != '\0'; line = nl) {
        nl = strchr(line, '\n');
        if (nl != NULL) {
            *nl++ = '\0';
        }
        if (line[0] == '#' || line[0] == '\0') {
            continue;
        }
        char fmt[8], img[128], pk[64], dn[64], file[256];
        unsigned long pid, chunk;
        static char name[512];
        if (sscanf(line, "%7s\t%127s\t%63s\t%63s\t%lu\t%lu\t%255s", fmt, img, pk, dn, &pid, &chunk,
                   file) != 7) {
            snprintf(name, sizeof name, "vectors/unparsable line: %.60s", line);
            th_begin(name);
            CHECK(!"index.tsv line parses");
            th_end();
            continue;
        }
        snprintf(name, sizeof name, "vectors/%s", file);
        th_begin(name);
        uc_format_t f = strcmp(fmt, "v1") == 0 ? UC_FMT_V1 : UC_FMT_V2;
        CHECK(strcmp(fmt, "v1") == 0 || strcmp(fmt, "v2") == 0);
        nv1 += f == UC_FMT_V1;
        nv2 += f == UC_FMT_V2;
        size_t jl = 0, wl = 0;
        snprintf(path, sizeof path, "%s/images/%s", th_vectors, img);
        uint8_t *jpeg = th_read_file(path, &jl);
        snprintf(path, sizeof path, "%s/%s", th_vectors, file);
        char *want = (char *)th_read_file(path, &wl);
        CHECK(jpeg != NULL && want != NULL);
        if (jpeg != NULL && want != NULL) {
            int err;
            size_t gl = 0;
            char *got = encode_all(f, jpeg, (uint32_t)jl, (uint32_t)pid, (uint32_t)chunk, &gl, &err);
            CHECK_EQ(err, UC_OK);
            CHECK(got != NULL && gl == wl && memcmp(got, want, wl) == 0);
            if (got != NULL && (gl != wl || memcmp(got, want, wl) != 0)) {
                size_t i = 0;
                while (i < gl && i < wl && got[i] == want[i]) {
                    i++;
                }
                fprintf(stderr, "    first difference at byte %zu (got %zu bytes, want %zu)\n", i, gl, wl);
            }
            /* every line within the thing-model limit */
            for (char *p = want; p && *p;) {
                char *eol = strchr(p, '\n');
                size_t L = eol ? (size_t)(eol - p) : strlen(p);
                CHECK(L <= UC_MSG_MAX - 1);
                p = eol ? eol + 1 : NULL;
            }
            free(got);
        }
        free(jpeg);
        free(want);
        th_end();
    }
    th_begin("vectors/both formats present");
    CHECK(nv1 >= 1 && nv2 >= 1);
    th_end();
    free(index);
}

static void t_pic_init_limits(void)
{
    uc_pic_t p;
    CHECK_EQ(uc_pic_init(&p, UC_FMT_V2, 1, 0, 0, 7200), UC_E_ARG);
    CHECK_EQ(uc_pic_init(&p, UC_FMT_V2, 1, 10, 0, 0), UC_E_ARG);
    CHECK_EQ(uc_pic_init(&p, UC_FMT_V2, 1, 10, 0, 7201), UC_E_ARG);
    CHECK_EQ(uc_pic_init(&p, UC_FMT_V2, 1, 10, 0, UC_V2_MAX_PIECE + 3), UC_E_ARG);
    CHECK_EQ(uc_pic_init(&p, UC_FMT_V2, 1, 10, 0, UC_V2_MAX_PIECE), UC_OK);
    CHECK_EQ(UC_V2_MAX_PIECE, 7644);
    CHECK_EQ(uc_pic_init(&p, UC_FMT_V2, 1, 3000, 0, 3), UC_OK);
    CHECK_EQ(p.count, 1000);
    CHECK_EQ(uc_pic_init(&p, UC_FMT_V2, 1, 3001, 0, 3), UC_E_RANGE);
    CHECK_EQ(uc_pic_init(&p, UC_FMT_V2, 1, UC_V2_MAX_SIZE + 1, 0, 7644), UC_E_RANGE);
    CHECK_EQ(uc_pic_init(&p, UC_FMT_V1, 1, 10, 0, 801), UC_E_ARG);
    CHECK_EQ(uc_pic_init(&p, UC_FMT_V1, 1, 10, 0, 10242), UC_E_ARG);
    CHECK_EQ(uc_pic_init(&p, UC_FMT_V1, 1, 999, 0, 2), UC_OK); /* 999 data + END */
    CHECK_EQ(p.count, 1000);
    CHECK_EQ(p.data_chunks, 999);
    CHECK_EQ(uc_pic_init(&p, UC_FMT_V1, 1, 1000, 0, 2), UC_E_RANGE);
    CHECK_EQ(uc_pic_init(&p, (uc_format_t)3, 1, 10, 0, 6), UC_E_ARG);
}

static void t_pieces_cover(void)
{
    uint32_t rng = 3;
    for (int it = 0; it < 500; it++) {
        uc_format_t f = (th_rand(&rng) & 1) ? UC_FMT_V1 : UC_FMT_V2;
        uint32_t size = 1 + th_rand(&rng) % 200000;
        uint32_t chunk = f == UC_FMT_V2 ? uc_chunk_sanitize(f, th_rand(&rng) % 8000)
                                        : uc_chunk_sanitize(f, th_rand(&rng) % 11000);
        uc_pic_t p;
        int e = uc_pic_init(&p, f, 5, size, 0, chunk);
        if (e == UC_E_RANGE) {
            continue;
        }
        CHECK_EQ(e, UC_OK);
        uint32_t next = 0;
        for (uint32_t s = 0; s < p.count; s++) {
            uint32_t off, len;
            CHECK_EQ(uc_pic_piece(&p, s, &off, &len), UC_OK);
            CHECK_EQ(off, next);
            if (s + 1 < p.data_chunks && f == UC_FMT_V2) {
                CHECK(len % 3 == 0 && len > 0);
            }
            if (s >= p.data_chunks) {
                CHECK_EQ(len, 0);
            }
            next += len;
        }
        CHECK_EQ(next, size);
        uint32_t off, len;
        CHECK_EQ(uc_pic_piece(&p, p.count, &off, &len), UC_E_ARG);
    }
}

static void t_msg_limits(void)
{
    static uint8_t piece[UC_PIECE_MAX];
    memset(piece, 0xAB, sizeof piece);
    uc_pic_t p;
    /* longest v2 header and longest piece */
    CHECK_EQ(uc_pic_init(&p, UC_FMT_V2, 4294967295u, 1000u * UC_V2_MAX_PIECE, 0xFFFFFFFFu, UC_V2_MAX_PIECE), UC_OK);
    CHECK_EQ(p.count, 1000);
    int n = uc_msg_build(&p, 999, piece, UC_V2_MAX_PIECE, msg, sizeof msg);
    CHECK(n > 0 && (size_t)n <= UC_MSG_MAX - 1);
    const char *v = strstr(msg, "\"img\":\"") + 7;
    CHECK(strlen(v) - 40 <= UC_MAX_VALUE_CHARS); /* 40: the closing JSON */
    /* longest v1 value fits exactly */
    CHECK_EQ(uc_pic_init(&p, UC_FMT_V1, 4294966u, 5120, 0, 10240), UC_OK); /* 10-digit alink id */
    n = uc_msg_build(&p, 0, piece, 5120, msg, UC_MSG_MAX);
    CHECK_EQ(n, UC_MSG_MAX - 1);
    CHECK_EQ(uc_msg_build(&p, 0, piece, 5120, msg, UC_MSG_MAX - 1), UC_E_SPACE);
    CHECK_STR(msg, "");
    /* wrong piece length or seq */
    CHECK_EQ(uc_msg_build(&p, 0, piece, 5119, msg, sizeof msg), UC_E_ARG);
    CHECK_EQ(uc_msg_build(&p, 2, NULL, 0, msg, sizeof msg), UC_E_ARG);
    n = uc_msg_build(&p, 1, NULL, 0, msg, sizeof msg);
    CHECK_STR(msg, "{\"id\":\"4294966001\",\"version\":\"1.0\",\"params\":{\"img\":\"END\"},\"method\":\"thing.event.property.post\"}");
    CHECK_EQ(n, (long long)strlen(msg));
}

static void t_alink_id(void)
{
    CHECK_EQ(uc_alink_id(7, 0), 7000);
    CHECK_EQ(uc_alink_id(123456, 2), 123456002u);
    CHECK_EQ(uc_alink_id(4294967295u, 0), 295000);
    CHECK_EQ(uc_alink_id(4294966u, 999), 4294966999u);
    CHECK_EQ(uc_alink_id(4294967u, 5), 5);
    CHECK_EQ(uc_alink_id(9, 1003), 9003); /* v1: seq mod 1000 */
}

static void t_sanitize(void)
{
    CHECK_EQ(uc_chunk_sanitize(UC_FMT_V2, 7201), 7200);
    CHECK_EQ(uc_chunk_sanitize(UC_FMT_V2, 1), 3);
    CHECK_EQ(uc_chunk_sanitize(UC_FMT_V2, 99999), 7644);
    CHECK_EQ(uc_chunk_sanitize(UC_FMT_V1, 801), 800);
    CHECK_EQ(uc_chunk_sanitize(UC_FMT_V1, 0), 2);
    CHECK_EQ(uc_chunk_sanitize(UC_FMT_V1, 20000), 10240);
}

static void t_topics(void)
{
    char t[128];
    const char *want = "/sys/a1GoldenPK0/cam-golden-01/thing/event/property/post";
    CHECK_EQ(uc_topic_post(t, sizeof t, "a1GoldenPK0", "cam-golden-01"), (long long)strlen(want));
    CHECK_STR(t, want);
    CHECK(uc_topic_post_reply(t, sizeof t, "pk", "dn") > 0);
    CHECK_STR(t, "/sys/pk/dn/thing/event/property/post_reply");
    CHECK_EQ(uc_topic_post(t, sizeof t, "pk", "d/n"), UC_E_ARG);
    CHECK_EQ(uc_topic_post(t, sizeof t, "p#", "dn"), UC_E_ARG);
    CHECK_EQ(uc_topic_post(t, sizeof t, "", "dn"), UC_E_ARG);
    CHECK_EQ(uc_topic_post(t, 10, "pk", "dn"), UC_E_SPACE);
}

void suite_wire(void);
void suite_wire(void)
{
    golden_vectors();
    th_run("wire/pic_init_limits", t_pic_init_limits);
    th_run("wire/pieces_cover_picture", t_pieces_cover);
    th_run("wire/message_limits", t_msg_limits);
    th_run("wire/alink_id", t_alink_id);
    th_run("wire/chunk_sanitize", t_sanitize);
    th_run("wire/topics", t_topics);
}

/*
 * The wire contract of docs/protocol.md: how one picture becomes MQTT payloads.
 *
 *   v2 value: V2;<pid>;<seq>;<count>;<size>;<CRC32 8 upper hex>;<Base64 of piece seq>
 *   v1 value: upper-case hex of the next bytes, then the value END
 *   payload : {"id":"<alink id>","version":"1.0","params":{"img":"<value>"},
 *              "method":"thing.event.property.post"}
 *   alink id: (pid mod 4294967) * 1000 + (seq mod 1000)
 *
 * The firmware streams a picture from the SD card: uc_pic_init() from the file's
 * size and CRC, then for each seq uc_pic_piece() says which bytes to read and
 * uc_msg_build() turns them into the payload, in a caller-owned buffer.
 */
#ifndef UC_WIRE_H
#define UC_WIRE_H

#include "uc_common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define UC_MAX_VALUE_CHARS 10240u /* thing-model text property limit */
#define UC_MAX_CHUNKS 1000u       /* messages per picture (keeps the alink id unique) */
/* Header budget, "V2;" .. the ';' before the data: a safe upper bound (the grammar's
 * longest header is 43 characters, docs/protocol.md 3.1); it sets UC_V2_MAX_PIECE. */
#define UC_V2_MAX_HEADER 48u
#define UC_V2_MAX_PIECE ((UC_MAX_VALUE_CHARS - UC_V2_MAX_HEADER) / 4u * 3u) /* 7644 */
#define UC_V2_DEFAULT_PIECE 7200u
#define UC_V2_MAX_SIZE 999999999u /* size field is at most 9 digits */
#define UC_V1_DEFAULT_HEX 800u    /* the original firmware's chunk */
#define UC_V1_MAX_PIECE (UC_MAX_VALUE_CHARS / 2u)
#define UC_PIECE_MAX UC_V2_MAX_PIECE /* largest piece either format reads */
/* Longest payload: JSON around the longest value (10-digit id). */
#define UC_MSG_OVERHEAD 92u
#define UC_MSG_MAX (UC_MAX_VALUE_CHARS + UC_MSG_OVERHEAD + 1u) /* with NUL */

typedef enum {
    UC_FMT_V1 = 1,
    UC_FMT_V2 = 2,
} uc_format_t;

/* One picture as the encoder sees it. */
typedef struct {
    uc_format_t fmt;
    uint32_t pid;         /* picture id (v1: only feeds the alink id) */
    uint32_t size;        /* JPEG bytes */
    uint32_t crc;         /* CRC-32 of the JPEG (v2 header) */
    uint32_t piece;       /* JPEG bytes per data message */
    uint16_t data_chunks; /* messages carrying data */
    uint16_t count;       /* messages in all (v1: data_chunks + END) */
} uc_pic_t;

/* chunk: v2 piece bytes (multiple of 3, 3..UC_V2_MAX_PIECE);
 *        v1 hex characters per message (even, 2..UC_MAX_VALUE_CHARS).
 * Fails with UC_E_ARG on a bad chunk or empty picture, UC_E_RANGE when the
 * picture needs more than UC_MAX_CHUNKS messages or is too large for v2. */
int uc_pic_init(uc_pic_t *pic, uc_format_t fmt, uint32_t pid, uint32_t size, uint32_t crc,
                uint32_t chunk);

/* Which JPEG bytes message seq carries (v1 END: *len = 0). */
int uc_pic_piece(const uc_pic_t *pic, uint32_t seq, uint32_t *off, uint32_t *len);

/* The nearest valid chunk parameter at or below want (at least the minimum). */
uint32_t uc_chunk_sanitize(uc_format_t fmt, uint32_t want);

uint32_t uc_alink_id(uint32_t pid, uint32_t seq);

/* Payload of message seq; piece/len must be exactly the bytes uc_pic_piece() named.
 * cap >= UC_MSG_MAX always suffices. Returns the payload length. */
int uc_msg_build(const uc_pic_t *pic, uint32_t seq, const uint8_t *piece, size_t len, char *out,
                 size_t cap);

/* /sys/<pk>/<dn>/thing/event/property/post and .../post_reply */
int uc_topic_post(char *out, size_t cap, const char *pk, const char *dn);
int uc_topic_post_reply(char *out, size_t cap, const char *pk, const char *dn);

#ifdef __cplusplus
}
#endif
#endif

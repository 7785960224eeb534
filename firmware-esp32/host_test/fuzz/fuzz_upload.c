/* Fuzz target: the upload state machine under arbitrary event sequences. It must
 * never exceed its window, publish out of range, report done with messages
 * unacknowledged, or break the pacing. */
#include <stdlib.h>
#include <string.h>

#include "uc_upload.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    if (size < 4) {
        return 0;
    }
    uc_up_cfg_t cfg;
    uc_up_cfg_default(&cfg);
    cfg.window = (uint16_t)(1 + data[0] % UC_UP_MAX_WINDOW);
    cfg.max_per_sec = (uint16_t)(1 + data[1] % UC_UP_MAX_RATE);
    cfg.ack_timeout_ms = 100u + data[2] * 50u;
    cfg.reply_grace_ms = (data[3] & 1) ? 300 : 0;
    cfg.reject_hold_ms = 2000;
    static uc_up_t up;
    if (uc_up_init(&up, &cfg) != UC_OK) abort();
    uint32_t now = (uint32_t)data[3] << 24; /* sometimes close to the wrap */
    int32_t next_id = 1;
    uint32_t last_pub = 0;
    bool have_pub = false;
    for (size_t i = 4; i + 1 < size; i += 2) {
        unsigned op = data[i] % 10, arg = data[i + 1];
        switch (op) {
        case 0: { /* begin a picture */
            uc_pic_t pic;
            if (uc_pic_init(&pic, (arg & 1) ? UC_FMT_V1 : UC_FMT_V2, arg * 7919u, 1 + arg * 37u, 0, (arg & 1) ? 64 : 48) == UC_OK) {
                int e = uc_up_begin(&up, &pic, now);
                if (e != UC_OK && e != UC_E_STATE) abort();
            }
            break;
        }
        case 1: now += arg * 10u; break;
        case 2: uc_up_acked(&up, (int32_t)(next_id - 1 - (int32_t)(arg % 8)), now); break;
        case 3: uc_up_lost(&up, (int32_t)(next_id - 1 - (int32_t)(arg % 8)), now); break;
        case 4: uc_up_connected(&up, now); break;
        case 5: uc_up_disconnected(&up, now); break;
        case 6: uc_up_reply(&up, up.pic.pid % 4294967u * 1000u + arg % 40u, (arg & 0x80) ? 429 : ((arg & 0x40) ? 6310 : 200), now); break;
        case 7: if (arg == 0) uc_up_abort(&up); break;
        default: break;
        }
        uc_act_t a = uc_up_poll(&up, now);
        if (a.kind == UC_ACT_PUBLISH) {
            if (a.seq >= up.pic.count || !up.connected) abort();
            uint32_t interval = (1000u + cfg.max_per_sec - 1u) / cfg.max_per_sec;
            if (have_pub && (uint32_t)(now - last_pub) < interval) abort();
            last_pub = now;
            have_pub = true;
            int32_t id = (arg % 16 == 0) ? -2 : ((arg % 16 == 1) ? 0 : next_id++);
            if (uc_up_sent(&up, a.seq, id, now) != UC_OK) abort();
        } else if (a.kind == UC_ACT_DONE) {
            if (up.phase != 0) abort();
        } else if (a.kind == UC_ACT_WAIT && up.phase == 2 && up.acked_n != up.pic.count) {
            abort();
        }
        if (uc_up_in_flight(&up) > cfg.window) abort();
        if (up.phase != 0 && up.acked_n > up.pic.count) abort();
    }
    return 0;
}

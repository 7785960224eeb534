/*
 * fw_emit: prints the MQTT payloads the firmware publishes for one JPEG, one per
 * line, exactly as the firmware builds them (same core code, piece by piece).
 *
 *   fw_emit --format v1|v2 --pid N --chunk N --pk PK --dn DN FILE.jpg
 *
 * --topic prints the publish topic to stderr first. With --simulate the picture
 * goes through the upload state machine over a simulated lossy link and the
 * payloads are printed as the (simulated) platform received them: duplicates and
 * reordering included. Simulation options:
 *   --seed N  --latency MS  --jitter MS  --loss PERMILLE  --ack-loss PERMILLE
 *   --outage AT_MS:DUR_MS (repeatable)  --reboot AT_MS (repeatable)
 *   --window N  --rate MSG_PER_S
 * Exit status: 0 ok, 1 encoding/simulation failure, 2 usage.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"
#include "uc_codec.h"
#include "uc_upload.h"
#include "uc_wire.h"

static int usage(const char *msg)
{
    if (msg != NULL) {
        fprintf(stderr, "fw_emit: %s\n", msg);
    }
    fprintf(stderr,
            "usage: fw_emit --format v1|v2 --pid N --chunk N --pk PK --dn DN [--topic] FILE.jpg\n"
            "       fw_emit --simulate [--seed N] [--latency MS] [--jitter MS] [--loss PM]\n"
            "               [--ack-loss PM] [--outage AT:DUR]... [--reboot AT]... [--window N]\n"
            "               [--rate N] --format v1|v2 --pid N --chunk N --pk PK --dn DN FILE.jpg\n");
    return 2;
}

static int num(const char *s, unsigned long max, unsigned long *out)
{
    char *end;
    if (s == NULL || *s == '\0' || *s == '-' || *s == '+') {
        return -1;
    }
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno != 0 || *end != '\0' || v > max) {
        return -1;
    }
    *out = v;
    return 0;
}

static unsigned char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }
    size_t cap = 65536, n = 0;
    unsigned char *b = malloc(cap);
    for (;;) {
        if (b == NULL) {
            break;
        }
        n += fread(b + n, 1, cap - n, f);
        if (n < cap) {
            break;
        }
        if (cap >= (size_t)UC_V2_MAX_SIZE + 1) {
            free(b);
            b = NULL;
            break;
        }
        cap *= 2;
        unsigned char *nb = realloc(b, cap);
        if (nb == NULL) {
            free(b);
        }
        b = nb;
    }
    if (ferror(f)) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = n;
    return b;
}

int main(int argc, char **argv)
{
    const char *format = NULL, *pk = NULL, *dn = NULL, *file = NULL;
    unsigned long pid = 0, chunk = 0, v;
    bool have_pid = false, have_chunk = false, topic = false, simulate = false;
    sim_cfg_t sc;
    sim_cfg_default(&sc);
    uc_up_cfg_t uc;
    uc_up_cfg_default(&uc);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--topic") == 0) {
            topic = true;
        } else if (strcmp(a, "--simulate") == 0) {
            simulate = true;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(NULL);
            return 0;
        } else if (a[0] == '-' && a[1] == '-') {
            if (val == NULL) {
                return usage("option needs a value");
            }
            i++;
            if (strcmp(a, "--format") == 0) {
                format = val;
            } else if (strcmp(a, "--pk") == 0) {
                pk = val;
            } else if (strcmp(a, "--dn") == 0) {
                dn = val;
            } else if (strcmp(a, "--pid") == 0) {
                if (num(val, 4294967295ul, &pid) != 0) return usage("--pid: 0..4294967295");
                have_pid = true;
            } else if (strcmp(a, "--chunk") == 0) {
                if (num(val, 1000000ul, &chunk) != 0) return usage("--chunk: a number");
                have_chunk = true;
            } else if (strcmp(a, "--seed") == 0) {
                if (num(val, 4294967295ul, &v) != 0) return usage("--seed: a number");
                sc.seed = (uint32_t)v ? (uint32_t)v : 1;
            } else if (strcmp(a, "--latency") == 0) {
                if (num(val, 60000, &v) != 0) return usage("--latency: ms");
                sc.latency_ms = (uint32_t)v;
            } else if (strcmp(a, "--jitter") == 0) {
                if (num(val, 60000, &v) != 0) return usage("--jitter: ms");
                sc.jitter_ms = (uint32_t)v;
            } else if (strcmp(a, "--loss") == 0) {
                if (num(val, 900, &v) != 0) return usage("--loss: per mille, 0..900");
                sc.loss_pub_pm = (unsigned)v;
            } else if (strcmp(a, "--ack-loss") == 0) {
                if (num(val, 900, &v) != 0) return usage("--ack-loss: per mille, 0..900");
                sc.loss_ack_pm = (unsigned)v;
            } else if (strcmp(a, "--window") == 0) {
                if (num(val, UC_UP_MAX_WINDOW, &v) != 0 || v == 0) return usage("--window: 1..16");
                uc.window = (uint16_t)v;
            } else if (strcmp(a, "--rate") == 0) {
                if (num(val, UC_UP_MAX_RATE, &v) != 0 || v == 0) return usage("--rate: 1..30");
                uc.max_per_sec = (uint16_t)v;
            } else if (strcmp(a, "--reboot") == 0) {
                if (sc.n_reboots == SIM_MAX_REBOOTS || num(val, 86400000ul, &v) != 0) return usage("--reboot: ms (at most 8)");
                sc.reboot_at[sc.n_reboots++] = (uint32_t)v;
            } else if (strcmp(a, "--outage") == 0) {
                char buf[64];
                unsigned long at, dur;
                const char *colon = strchr(val, ':');
                if (sc.n_outages == SIM_MAX_OUTAGES || colon == NULL || (size_t)(colon - val) >= sizeof buf) return usage("--outage AT:DUR (at most 8)");
                memcpy(buf, val, (size_t)(colon - val));
                buf[colon - val] = '\0';
                if (num(buf, 86400000ul, &at) != 0 || num(colon + 1, 86400000ul, &dur) != 0) return usage("--outage AT:DUR");
                sc.outage[sc.n_outages].at = (uint32_t)at;
                sc.outage[sc.n_outages].dur = (uint32_t)dur;
                sc.n_outages++;
            } else {
                return usage("unknown option");
            }
        } else if (file == NULL) {
            file = a;
        } else {
            return usage("more than one file");
        }
    }
    if (format == NULL || pk == NULL || dn == NULL || file == NULL || !have_pid || !have_chunk) {
        return usage("--format, --pid, --chunk, --pk, --dn and FILE are required");
    }
    uc_format_t fmt;
    if (strcmp(format, "v1") == 0) {
        fmt = UC_FMT_V1;
    } else if (strcmp(format, "v2") == 0) {
        fmt = UC_FMT_V2;
    } else {
        return usage("--format must be v1 or v2");
    }
    static char topic_buf[256];
    if (uc_topic_post(topic_buf, sizeof topic_buf, pk, dn) < 0) {
        return usage("--pk/--dn: not usable in a topic");
    }
    size_t len = 0;
    unsigned char *jpeg = read_all(file, &len);
    if (jpeg == NULL) {
        fprintf(stderr, "fw_emit: cannot read %s: %s\n", file, strerror(errno));
        return 1;
    }
    uc_pic_t pic;
    int e = len > UC_V2_MAX_SIZE ? UC_E_RANGE
                                 : uc_pic_init(&pic, fmt, (uint32_t)pid, (uint32_t)len,
                                               uc_crc32(jpeg, len), (uint32_t)chunk);
    if (e != UC_OK) {
        fprintf(stderr, "fw_emit: cannot encode %s (%zu bytes) as %s with chunk %lu: %s\n", file,
                len, format, chunk,
                e == UC_E_RANGE ? "too many messages (max 1000) or too large: raise --chunk"
                                : "bad chunk (v2: multiple of 3, 3..7644; v1: even, 2..10240) or empty file");
        free(jpeg);
        return 1;
    }
    if (topic) {
        fprintf(stderr, "%s\n", topic_buf);
    }
    if (simulate) {
        sc.trace = stdout;
        sim_pic_t sp = {jpeg, (uint32_t)len, (uint32_t)pid, fmt, (uint32_t)chunk};
        sim_result_t r;
        int rc = sim_run(&sc, &uc, &sp, 1, 24u * 3600000u, &r);
        fprintf(stderr,
                "fw_emit: simulated %u ms: %u publishes (%u resent, %u failed), %u arrivals, "
                "%u duplicates, %u throttled, %u reboots; %s\n",
                r.elapsed_ms, r.publishes, r.fsm.resent, r.fsm.failed, r.broker_arrivals,
                r.broker_duplicates, r.throttled, r.reboots,
                r.all_complete ? "picture complete" : "picture INCOMPLETE");
        free(jpeg);
        return rc == 0 && r.all_done && r.all_complete ? 0 : 1;
    }
    static char msg[UC_MSG_MAX];
    for (uint32_t seq = 0; seq < pic.count; seq++) {
        uint32_t off, n;
        if (uc_pic_piece(&pic, seq, &off, &n) != UC_OK) {
            free(jpeg);
            return 1;
        }
        int k = uc_msg_build(&pic, seq, jpeg + off, n, msg, sizeof msg);
        if (k < 0) {
            free(jpeg);
            return 1;
        }
        fwrite(msg, 1, (size_t)k, stdout);
        fputc('\n', stdout);
    }
    free(jpeg);
    return fflush(stdout) == 0 ? 0 : 1;
}

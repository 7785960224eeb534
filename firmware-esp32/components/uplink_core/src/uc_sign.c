/* Aliyun IoT device sign-in (see uc_sign.h). */
#include "uc_sign.h"

#include <string.h>

#include "uc_codec.h"
#include "uc_hmac.h"

static bool valid_field(const char *s, size_t max, const char *extra)
{
    if (s == NULL) {
        return false;
    }
    size_t n = strlen(s);
    if (n == 0 || n > max) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  (extra != NULL && strchr(extra, c) != NULL);
        if (!ok) {
            return false;
        }
    }
    return true;
}

static bool valid_digits(const char *s, size_t max)
{
    return valid_field(s, max, NULL) && strspn(s, "0123456789") == strlen(s);
}

/* The secret only keys the HMAC: any printable ASCII without spaces. */
static bool valid_secret(const char *s)
{
    if (s == NULL || s[0] == '\0' || strlen(s) > UC_DS_MAX) {
        return false;
    }
    for (const char *c = s; *c != '\0'; c++) {
        if (*c < 0x21 || *c > 0x7E) {
            return false;
        }
    }
    return true;
}

static int cat(char *out, size_t cap, size_t *len, const char *s)
{
    size_t n = strlen(s);
    if (cap - *len <= n) {
        return UC_E_SPACE;
    }
    memcpy(out + *len, s, n + 1);
    *len += n;
    return UC_OK;
}

static int join(char *out, size_t cap, const char *const *parts, size_t nparts)
{
    size_t len = 0;
    if (out == NULL || cap == 0) {
        return UC_E_SPACE;
    }
    out[0] = '\0';
    for (size_t i = 0; i < nparts; i++) {
        if (cat(out, cap, &len, parts[i]) != UC_OK) {
            out[0] = '\0';
            return UC_E_SPACE;
        }
    }
    return (int)len;
}

/* Aliyun: productKey letters/digits; deviceName letters, digits and -_@.: ;
 * clientId: we allow the same set (no '|' or ',' that would break the suffix). */
#define NAME_EXTRA "-_@.:"

int uc_auth_content(char *out, size_t cap, const char *pk, const char *dn, const char *client_id,
                    const char *ts)
{
    if (!valid_field(pk, UC_PK_MAX, NULL) || !valid_field(dn, UC_DN_MAX, NAME_EXTRA) ||
        !valid_field(client_id, UC_CID_MAX, NAME_EXTRA) || !valid_digits(ts, UC_TS_MAX)) {
        if (out != NULL && cap > 0) {
            out[0] = '\0';
        }
        return UC_E_ARG;
    }
    const char *parts[] = {"clientId", client_id, "deviceName", dn, "productKey", pk, "timestamp", ts};
    return join(out, cap, parts, sizeof parts / sizeof parts[0]);
}

int uc_auth_build(uc_auth_t *out, const uc_auth_params_t *p)
{
    if (out == NULL || p == NULL) {
        return UC_E_ARG;
    }
    memset(out, 0, sizeof *out);
    const char *ts = (p->timestamp != NULL && p->timestamp[0] != '\0') ? p->timestamp
                                                                       : UC_AUTH_TIMESTAMP_DEFAULT;
    char cid[UC_CID_MAX + 1];
    if (p->client_id != NULL && p->client_id[0] != '\0') {
        if (strlen(p->client_id) > UC_CID_MAX) {
            return UC_E_ARG;
        }
        memcpy(cid, p->client_id, strlen(p->client_id) + 1);
    } else {
        const char *parts[] = {p->product_key != NULL ? p->product_key : "", ".",
                               p->device_name != NULL ? p->device_name : ""};
        if (join(cid, sizeof cid, parts, 3) < 0) {
            return UC_E_ARG;
        }
    }
    if (!valid_secret(p->device_secret)) {
        return UC_E_ARG;
    }
    char content[32 + UC_CID_MAX + UC_DN_MAX + UC_PK_MAX + UC_TS_MAX + 8];
    int n = uc_auth_content(content, sizeof content, p->product_key, p->device_name, cid, ts);
    if (n < 0) {
        return UC_E_ARG;
    }
    uint8_t mac[UC_SHA256_LEN];
    if (uc_hmac_sha256((const uint8_t *)p->device_secret, strlen(p->device_secret),
                       (const uint8_t *)content, (size_t)n, mac) != 0) {
        return UC_E_STATE;
    }
    (void)uc_hex_upper(mac, sizeof mac, out->password, sizeof out->password);
    memset(mac, 0, sizeof mac);
    memset(content, 0, sizeof content);

    const char *cparts[] = {cid, "|securemode=", p->tls ? "2" : "3",
                            ",signmethod=hmacsha256,timestamp=", ts, "|"};
    const char *uparts[] = {p->device_name, "&", p->product_key};
    if (join(out->client_id, sizeof out->client_id, cparts, 6) < 0 ||
        join(out->username, sizeof out->username, uparts, 3) < 0) {
        memset(out, 0, sizeof *out);
        return UC_E_SPACE;
    }
    return UC_OK;
}

int uc_broker_host(char *out, size_t cap, const char *pk, const char *region,
                   const char *host_override)
{
    if (out == NULL || cap == 0) {
        return UC_E_SPACE;
    }
    out[0] = '\0';
    if (host_override != NULL && host_override[0] != '\0') {
        if (!valid_field(host_override, 253, "-.")) {
            return UC_E_ARG;
        }
        const char *parts[] = {host_override};
        return join(out, cap, parts, 1);
    }
    if (!valid_field(pk, UC_PK_MAX, NULL) || !valid_field(region, 32, "-")) {
        return UC_E_ARG;
    }
    const char *parts[] = {pk, ".iot-as-mqtt.", region, ".aliyuncs.com"};
    return join(out, cap, parts, 4);
}

/*
 * Aliyun IoT device sign-in ("一机一密", MQTT direct connection):
 *   MQTT clientId = <clientId>|securemode=<2 TLS|3 TCP>,signmethod=hmacsha256,timestamp=<ts>|
 *   username      = <deviceName>&<productKey>
 *   password      = UPPER_HEX(HMAC-SHA256(deviceSecret,
 *                     "clientId<clientId>deviceName<dn>productKey<pk>timestamp<ts>"))
 * The timestamp is not checked for freshness by the platform, so the firmware uses
 * Aliyun's SDK constant (2050-01-01) and needs no clock to sign in.
 */
#ifndef UC_SIGN_H
#define UC_SIGN_H

#include "uc_common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define UC_AUTH_TIMESTAMP_DEFAULT "2524608000000"
#define UC_PK_MAX 32
#define UC_DN_MAX 64
#define UC_DS_MAX 64
#define UC_CID_MAX 64
#define UC_TS_MAX 13

typedef struct {
    char client_id[UC_CID_MAX + 80]; /* MQTT clientId with the |...| suffix */
    char username[UC_DN_MAX + UC_PK_MAX + 2];
    char password[2 * 32 + 1];
} uc_auth_t;

typedef struct {
    const char *product_key;
    const char *device_name;
    const char *device_secret;
    const char *client_id; /* NULL or "": "<pk>.<dn>" as Aliyun's SDK does */
    const char *timestamp; /* NULL or "": UC_AUTH_TIMESTAMP_DEFAULT */
    bool tls;              /* securemode 2 (TLS) or 3 (plain TCP) */
} uc_auth_params_t;

/* The signed content string (exposed for tests). */
int uc_auth_content(char *out, size_t cap, const char *pk, const char *dn, const char *client_id,
                    const char *ts);

/* Fills *out. UC_E_ARG on a missing/invalid field (characters a clientId or
 * username could be corrupted by), UC_E_STATE when the HMAC back end fails. */
int uc_auth_build(uc_auth_t *out, const uc_auth_params_t *p);

/* Broker host: host_override if non-empty, else <pk>.iot-as-mqtt.<region>.aliyuncs.com */
int uc_broker_host(char *out, size_t cap, const char *pk, const char *region,
                   const char *host_override);

#ifdef __cplusplus
}
#endif
#endif

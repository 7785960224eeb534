//! Aliyun IoT device sign-in for MQTT ("一机一密", one secret per device): the CONNECT client id,
//! user name and password a camera sends.
//!
//! Pure: the timestamp is a parameter. The scheme is Aliyun's "MQTT-TCP连接通信" (establish an
//! MQTT connection over TCP); the firmware computes the same in
//! `firmware-esp32/components/uplink_core/src/uc_sign.c`, and both are tested on its published
//! vectors:
//!
//! ```text
//! mqttClientId = clientId + "|securemode=2,signmethod=hmacsha256,timestamp=<ts>|"
//! mqttUsername = deviceName + "&" + productKey
//! mqttPassword = HEX_UPPER(HMAC(key = deviceSecret,
//!                "clientId" + clientId + "deviceName" + deviceName + "productKey" + productKey
//!                + "timestamp" + ts))
//! ```
//!
//! `securemode` is 2 over TLS and 3 over plain TCP. Aliyun does not check the timestamp's
//! freshness (the official C SDK hard-codes `2524608000000`, 2050-01-01), but it must be the same in
//! the client id and in the signed content.

use crate::hmac::SignMethod;
use crate::secret::Secret;

/// The MQTT `securemode` of the client id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecureMode {
    /// `securemode=2`: MQTT over TLS.
    Tls,
    /// `securemode=3`: MQTT over plain TCP.
    Tcp,
}

impl SecureMode {
    /// The value written after `securemode=`.
    pub fn code(self) -> u8 {
        match self {
            SecureMode::Tls => 2,
            SecureMode::Tcp => 3,
        }
    }
}

/// The name Aliyun uses for `method` in the client id (`signmethod=...`).
pub fn sign_method_name(method: SignMethod) -> &'static str {
    match method {
        SignMethod::HmacSha256 => "hmacsha256",
        SignMethod::HmacSha1 => "hmacsha1",
        SignMethod::HmacMd5 => "hmacmd5",
    }
}

/// What a device needs to sign in: its triple (product key, device name, device secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceIdentity {
    /// The product's ProductKey, e.g. `a1B2c3D4e5F`.
    pub product_key: String,
    /// The device's DeviceName.
    pub device_name: String,
    /// The DeviceSecret issued by the console. Never printed.
    pub device_secret: Secret,
}

/// The three CONNECT fields, ready for the MQTT client.
#[derive(Clone, PartialEq, Eq)]
pub struct MqttCredentials {
    /// The full MQTT client id, `<clientId>|securemode=..,signmethod=..,timestamp=..|`.
    pub client_id: String,
    /// `<deviceName>&<productKey>`.
    pub username: String,
    /// Upper-case hex HMAC. A secret: never printed by `Debug`.
    pub password: Secret,
}

impl std::fmt::Debug for MqttCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttCredentials")
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &self.password)
            .finish()
    }
}

/// The string that is signed: the parameters concatenated as name+value, sorted by name.
pub fn sign_content(
    product_key: &str,
    device_name: &str,
    client_id: &str,
    timestamp_ms: u64,
) -> String {
    format!(
        "clientId{client_id}deviceName{device_name}productKey{product_key}timestamp{timestamp_ms}"
    )
}

/// Upper-case hex HMAC of `content` keyed with `key`, using `method`.
pub fn hmac_hex_upper(method: SignMethod, key: &[u8], content: &[u8]) -> String {
    hex::encode_upper(method.mac(key, content))
}

/// Builds the CONNECT client id, user name and password for `device`.
///
/// `client_id` is the device's own id (≤ 64 characters; the SDK uses `<pk>.<dn>`), `timestamp_ms`
/// the time to sign (any value works: Aliyun does not check freshness).
pub fn sign_in(
    device: &DeviceIdentity,
    client_id: &str,
    mode: SecureMode,
    method: SignMethod,
    timestamp_ms: u64,
) -> MqttCredentials {
    let content = sign_content(
        &device.product_key,
        &device.device_name,
        client_id,
        timestamp_ms,
    );
    let password = hmac_hex_upper(
        method,
        device.device_secret.expose().as_bytes(),
        content.as_bytes(),
    );
    MqttCredentials {
        client_id: format!(
            "{client_id}|securemode={},signmethod={},timestamp={timestamp_ms}|",
            mode.code(),
            sign_method_name(method)
        ),
        username: format!("{}&{}", device.device_name, device.product_key),
        password: Secret::new(password),
    }
}

/// The MQTT host of a legacy public instance: `<productKey>.iot-as-mqtt.<region>.aliyuncs.com`.
///
/// New public and Enterprise instances have their own host shown in the console (e.g.
/// `iot-06z00xxxxxxx.mqtt.iothub.aliyuncs.com`): pass it explicitly instead.
pub fn legacy_host(product_key: &str, region: &str) -> String {
    format!("{product_key}.iot-as-mqtt.{region}.aliyuncs.com")
}

#[cfg(test)]
mod tests {
    use super::*;

    // The published vector (doc 73742; firmware-notes §1.3).
    fn vector_device() -> DeviceIdentity {
        DeviceIdentity {
            product_key: "a14Xib5kdYd".into(),
            device_name: "light1983432".into(),
            device_secret: Secret::new("oLyaKqVxtRvjH284LdhqVgVUx1UPy6zq"),
        }
    }
    const TS: u64 = 1_539_421_321_846;

    #[test]
    fn content_is_sorted_name_value_pairs() {
        assert_eq!(
            sign_content("a14Xib5kdYd", "light1983432", "SN1928339", TS),
            "clientIdSN1928339deviceNamelight1983432productKeya14Xib5kdYdtimestamp1539421321846"
        );
    }

    #[test]
    fn published_vector_hmac_sha256() {
        let c = sign_in(
            &vector_device(),
            "SN1928339",
            SecureMode::Tls,
            SignMethod::HmacSha256,
            TS,
        );
        assert_eq!(
            c.password.expose(),
            "e6ad631b665206c0bf2efbe1b48ac4d84ff2a61fe89bac30065e17975a482c40".to_uppercase()
        );
        assert_eq!(
            c.client_id,
            "SN1928339|securemode=2,signmethod=hmacsha256,timestamp=1539421321846|"
        );
        assert_eq!(c.username, "light1983432&a14Xib5kdYd");
    }

    #[test]
    fn published_vector_hmac_sha1() {
        let c = sign_in(
            &vector_device(),
            "SN1928339",
            SecureMode::Tcp,
            SignMethod::HmacSha1,
            TS,
        );
        assert_eq!(
            c.password.expose(),
            "B2488041F64F425016B467EE1C94959EBD592AD1"
        );
        assert_eq!(
            c.client_id,
            "SN1928339|securemode=3,signmethod=hmacsha1,timestamp=1539421321846|"
        );
    }

    #[test]
    fn password_is_upper_hex_and_debug_redacts_it() {
        let c = sign_in(
            &vector_device(),
            "x",
            SecureMode::Tls,
            SignMethod::HmacMd5,
            1,
        );
        assert_eq!(c.password.expose().len(), 32);
        assert!(c
            .password
            .expose()
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)));
        let shown = format!("{c:?} {:?}", vector_device());
        assert!(!shown.contains(c.password.expose()), "{shown}");
        assert!(!shown.contains("oLyaKqVx"), "{shown}");
    }

    #[test]
    fn legacy_host_format() {
        assert_eq!(
            legacy_host("a1B2c3D4e5F", "cn-shanghai"),
            "a1B2c3D4e5F.iot-as-mqtt.cn-shanghai.aliyuncs.com"
        );
    }
}

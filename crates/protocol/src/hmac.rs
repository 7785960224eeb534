//! The one HMAC dispatch: the three methods Aliyun accepts, for both the AMQP aksign password
//! ([`crate::sign`]) and the devices' MQTT password ([`crate::device_sign`]).

use hmac::{Hmac, Mac};

/// HMAC used for a password. In a config file its name, ASCII case ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub enum SignMethod {
    /// `hmacsha1` (the default and what the official demos use).
    HmacSha1,
    /// `hmacsha256`.
    HmacSha256,
    /// `hmacmd5`.
    HmacMd5,
}

/// As the config file writes it: [`SignMethod::as_str`].
impl serde::Serialize for SignMethod {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl SignMethod {
    /// The name used in the config file and in the AMQP user name.
    pub fn as_str(self) -> &'static str {
        match self {
            SignMethod::HmacSha1 => "hmacsha1",
            SignMethod::HmacSha256 => "hmacsha256",
            SignMethod::HmacMd5 => "hmacmd5",
        }
    }

    /// Parses a name, ignoring ASCII case (the Go demo's `Hmacsha1` connects fine).
    pub fn parse(s: &str) -> Option<SignMethod> {
        [
            SignMethod::HmacSha1,
            SignMethod::HmacSha256,
            SignMethod::HmacMd5,
        ]
        .into_iter()
        .find(|m| m.as_str().eq_ignore_ascii_case(s))
    }

    /// `HMAC_method(key, data)`.
    ///
    /// HMAC accepts keys of any length, so keying cannot fail; the empty fallback keeps this
    /// panic-free anyway (an empty tag never verifies).
    pub fn mac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
            <M as Mac>::new_from_slice(key)
                .map(|m| m.chain_update(data).finalize().into_bytes().to_vec())
                .unwrap_or_default()
        }
        match self {
            SignMethod::HmacSha1 => run::<Hmac<sha1::Sha1>>(key, data),
            SignMethod::HmacSha256 => run::<Hmac<sha2::Sha256>>(key, data),
            SignMethod::HmacMd5 => run::<Hmac<md5::Md5>>(key, data),
        }
    }

    /// Whether `tag` is `HMAC_method(key, data)`, compared in constant time.
    pub fn verify(self, key: &[u8], data: &[u8], tag: &[u8]) -> bool {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8], tag: &[u8]) -> bool {
            <M as Mac>::new_from_slice(key)
                .map(|m| m.chain_update(data).verify_slice(tag).is_ok())
                .unwrap_or(false)
        }
        match self {
            SignMethod::HmacSha1 => run::<Hmac<sha1::Sha1>>(key, data, tag),
            SignMethod::HmacSha256 => run::<Hmac<sha2::Sha256>>(key, data, tag),
            SignMethod::HmacMd5 => run::<Hmac<md5::Md5>>(key, data, tag),
        }
    }
}

impl TryFrom<String> for SignMethod {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        SignMethod::parse(&s).ok_or_else(|| {
            format!(
                "{s:?} is not a sign method; expected \"hmacsha1\", \"hmacsha256\" or \"hmacmd5\""
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_accepts_the_mac_and_refuses_any_other_tag() {
        for m in [
            SignMethod::HmacSha1,
            SignMethod::HmacSha256,
            SignMethod::HmacMd5,
        ] {
            let tag = m.mac(b"key", b"data");
            assert!(m.verify(b"key", b"data", &tag), "{m:?}");
            assert!(!m.verify(b"key", b"datA", &tag), "{m:?}");
            assert!(!m.verify(b"key", b"data", &tag[1..]), "{m:?}");
        }
        assert_eq!(SignMethod::HmacSha1.mac(b"k", b"d").len(), 20);
        assert_eq!(SignMethod::HmacSha256.mac(b"k", b"d").len(), 32);
        assert_eq!(SignMethod::HmacMd5.mac(b"k", b"d").len(), 16);
    }

    #[test]
    fn names_parse_ignoring_case() {
        assert_eq!(SignMethod::parse("Hmacsha1"), Some(SignMethod::HmacSha1));
        assert_eq!(
            SignMethod::parse("HMACSHA256"),
            Some(SignMethod::HmacSha256)
        );
        assert_eq!(SignMethod::parse("hmacsha512"), None);
    }
}

//! Aliyun AMQP credentials: the aksign / ststoken SASL PLAIN username and password (pure: the
//! timestamp is a parameter, no clock, no I/O).
//!
//! ```text
//! username     = clientId|authMode=aksign,signMethod=hmacsha1,timestamp=TS,authId=AK,iotInstanceId=IID,consumerGroupId=GROUP|
//! password     = base64(HMAC_signMethod(key = accessKeySecret, data = stringToSign))
//! stringToSign = authId=AK&timestamp=TS                        (aksign)
//!              = authId=AK&securityToken=TOKEN&timestamp=TS    (ststoken)
//! ```
//!
//! The client signs with [`sign`] on every connect (fresh timestamp). The fake endpoint verifies with
//! [`parse_username`] + [`verify_password`], the way Aliyun does: parameters in any order,
//! `signMethod` compared case-insensitively, the signature recomputed from the username's fields.

pub use crate::hmac::SignMethod;
use crate::secret::Secret;
use base64::Engine as _;
use std::collections::BTreeMap;
use std::fmt;

/// Credentials flavour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMode {
    /// An account or RAM user AccessKey.
    AkSign,
    /// A RAM role's STS credentials.
    StsToken {
        /// The STS security token.
        security_token: Secret,
    },
}

impl AuthMode {
    /// `aksign` or `ststoken`.
    pub fn as_str(&self) -> &'static str {
        match self {
            AuthMode::AkSign => "aksign",
            AuthMode::StsToken { .. } => "ststoken",
        }
    }
}

/// Why credentials could not be built or a username could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// A value would break the `k=v,k=v` username syntax (contains `|` or `,`), or is empty
    /// where a value is required.
    #[error("{field} must be non-empty and must not contain '|' or ','")]
    InvalidField {
        /// Which field.
        field: &'static str,
    },
    /// The username is not `clientId|k=v,...|`.
    #[error("malformed username: {0}")]
    MalformedUsername(&'static str),
    /// A required username parameter is missing.
    #[error("username lacks the {0} parameter")]
    MissingParameter(&'static str),
    /// `signMethod` names no supported HMAC.
    #[error("unsupported signMethod {0:?}")]
    UnknownSignMethod(String),
}

/// SASL PLAIN credentials for one connection attempt. `Debug` redacts the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The username (contains no secret; the access key id and instance are not secret).
    pub username: String,
    /// The base64 HMAC password.
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// What goes into a signature.
#[derive(Debug, Clone, Copy)]
pub struct SignParams<'a> {
    /// Client id, as shown in the console (<= 64 chars; checked by the caller).
    pub client_id: &'a str,
    /// AccessKey id (`authId`).
    pub access_key_id: &'a str,
    /// AccessKey secret: the HMAC key.
    pub access_key_secret: &'a str,
    /// `iotInstanceId`, "" for legacy public instances (sent empty, as the demos do).
    pub iot_instance_id: &'a str,
    /// `consumerGroupId`.
    pub consumer_group_id: &'a str,
    /// HMAC.
    pub sign_method: SignMethod,
    /// aksign, or ststoken with its security token.
    pub auth_mode: &'a AuthMode,
    /// Epoch milliseconds, recomputed on every connect.
    pub timestamp_ms: u64,
}

fn check(field: &'static str, value: &str, allow_empty: bool) -> Result<(), SignError> {
    if (!allow_empty && value.is_empty()) || value.contains(['|', ',']) {
        return Err(SignError::InvalidField { field });
    }
    Ok(())
}

/// The string the password signs: `authId=..[&securityToken=..]&timestamp=..` (keys sorted).
pub fn string_to_sign(
    access_key_id: &str,
    security_token: Option<&str>,
    timestamp: &str,
) -> String {
    match security_token {
        Some(token) => {
            format!("authId={access_key_id}&securityToken={token}&timestamp={timestamp}")
        }
        None => format!("authId={access_key_id}&timestamp={timestamp}"),
    }
}

/// `base64(HMAC_method(secret, string_to_sign))`.
pub fn password(method: SignMethod, secret: &str, string_to_sign: &str) -> String {
    base64::engine::general_purpose::STANDARD
        .encode(method.mac(secret.as_bytes(), string_to_sign.as_bytes()))
}

/// Builds the username and password for one connection attempt.
pub fn sign(p: &SignParams<'_>) -> Result<Credentials, SignError> {
    check("client_id", p.client_id, false)?;
    check("access_key_id", p.access_key_id, false)?;
    check("iot_instance_id", p.iot_instance_id, true)?;
    check("consumer_group_id", p.consumer_group_id, false)?;
    let ts = p.timestamp_ms.to_string();
    let method = p.sign_method.as_str();
    let (mode, token) = match p.auth_mode {
        AuthMode::AkSign => ("authMode=aksign".to_string(), None),
        AuthMode::StsToken { security_token } => {
            let token = security_token.expose();
            check("security_token", token, false)?;
            (
                format!("authMode=ststoken,securityToken={token}"),
                Some(token),
            )
        }
    };
    let username = format!(
        "{}|{mode},signMethod={method},timestamp={ts},authId={},iotInstanceId={},consumerGroupId={}|",
        p.client_id, p.access_key_id, p.iot_instance_id, p.consumer_group_id
    );
    let password = password(
        p.sign_method,
        p.access_key_secret,
        &string_to_sign(p.access_key_id, token, &ts),
    );
    Ok(Credentials { username, password })
}

/// A parsed username, as the endpoint sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedUsername {
    /// The part before the first `|`.
    pub client_id: String,
    /// Every `k=v` parameter (keys case-sensitive, as sent).
    pub params: BTreeMap<String, String>,
}

impl ParsedUsername {
    /// A parameter's value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.params.get(key).map(String::as_str)
    }

    /// `authMode` (e.g. `aksign`).
    pub fn auth_mode(&self) -> Option<&str> {
        self.get("authMode")
    }

    /// `signMethod`, parsed case-insensitively.
    pub fn sign_method(&self) -> Result<SignMethod, SignError> {
        let name = self
            .get("signMethod")
            .ok_or(SignError::MissingParameter("signMethod"))?;
        SignMethod::parse(name).ok_or_else(|| SignError::UnknownSignMethod(name.to_string()))
    }

    /// `authId`: the access key id.
    pub fn auth_id(&self) -> Option<&str> {
        self.get("authId")
    }

    /// `timestamp`, verbatim (it is signed as sent).
    pub fn timestamp(&self) -> Option<&str> {
        self.get("timestamp")
    }

    /// `iotInstanceId`; absent and empty are the same thing (legacy instances).
    pub fn iot_instance_id(&self) -> &str {
        self.get("iotInstanceId").unwrap_or("")
    }

    /// `consumerGroupId`.
    pub fn consumer_group_id(&self) -> Option<&str> {
        self.get("consumerGroupId")
    }

    /// `securityToken` (ststoken only).
    pub fn security_token(&self) -> Option<&str> {
        self.get("securityToken")
    }
}

/// Parses `clientId|k=v,k=v,...|` (parameters in any order; the trailing `|` is required).
pub fn parse_username(username: &str) -> Result<ParsedUsername, SignError> {
    let (client_id, rest) = username
        .split_once('|')
        .ok_or(SignError::MalformedUsername("no '|' after the client id"))?;
    let inner = rest
        .strip_suffix('|')
        .ok_or(SignError::MalformedUsername("no trailing '|'"))?;
    if inner.contains('|') {
        return Err(SignError::MalformedUsername("more than two '|'"));
    }
    let mut params = BTreeMap::new();
    for pair in inner.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or(SignError::MalformedUsername("parameter without '='"))?;
        if params.insert(k.to_string(), v.to_string()).is_some() {
            return Err(SignError::MalformedUsername("duplicate parameter"));
        }
    }
    Ok(ParsedUsername {
        client_id: client_id.to_string(),
        params,
    })
}

/// Recomputes the signature from a parsed username and checks `password` against it in constant
/// time. The caller looks the secret up by [`ParsedUsername::auth_id`].
pub fn verify_password(
    parsed: &ParsedUsername,
    password: &str,
    secret: &str,
) -> Result<bool, SignError> {
    let method = parsed.sign_method()?;
    let auth_id = parsed
        .auth_id()
        .ok_or(SignError::MissingParameter("authId"))?;
    let ts = parsed
        .timestamp()
        .ok_or(SignError::MissingParameter("timestamp"))?;
    let token = match parsed.auth_mode() {
        Some("aksign") => None,
        Some("ststoken") => Some(
            parsed
                .security_token()
                .ok_or(SignError::MissingParameter("securityToken"))?,
        ),
        _ => return Err(SignError::MissingParameter("authMode")),
    };
    let Ok(given) = base64::engine::general_purpose::STANDARD.decode(password) else {
        return Ok(false);
    };
    let data = string_to_sign(auth_id, token, ts);
    Ok(method.verify(secret.as_bytes(), data.as_bytes(), &given))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values computed independently with:
    //   python3 -c 'import hmac,hashlib,base64; print(base64.b64encode(hmac.new(KEY,DATA,hashlib.sha1).digest()))'
    // and cross-checked for SHA-1 with `openssl dgst -sha1 -hmac KEY -binary | base64`.
    const AK: &str = "LTAI5tTestKeyId0001";
    const SECRET: &str = "TestSecretKey0123456789abcdefABCD";
    const TS: u64 = 1_700_000_000_123;
    const STS_TOKEN: &str = "CAIStestTOKEN+/xyz==";

    fn params(method: SignMethod, mode: &AuthMode) -> SignParams<'_> {
        SignParams {
            client_id: "receiver-0",
            access_key_id: AK,
            access_key_secret: SECRET,
            iot_instance_id: "iot-06z00test",
            consumer_group_id: "DEFAULT_GROUP",
            sign_method: method,
            auth_mode: mode,
            timestamp_ms: TS,
        }
    }

    #[test]
    fn aksign_known_vectors() {
        let cases = [
            (SignMethod::HmacSha1, "5s0ODBVqBfWrcH9WllZqdgqlfS0="),
            (
                SignMethod::HmacSha256,
                "LCz4KV9J/biDcvGdgD4KBKgpgO7yhvrXPR9Oe6/lWbI=",
            ),
            (SignMethod::HmacMd5, "N26GCAvq8ih/93+qK+U3tQ=="),
        ];
        for (method, want) in cases {
            let c = sign(&params(method, &AuthMode::AkSign)).unwrap();
            assert_eq!(c.password, want, "{method:?}");
            assert_eq!(
                c.username,
                format!(
                    "receiver-0|authMode=aksign,signMethod={},timestamp=1700000000123,\
                     authId=LTAI5tTestKeyId0001,iotInstanceId=iot-06z00test,\
                     consumerGroupId=DEFAULT_GROUP|",
                    method.as_str()
                )
            );
        }
    }

    #[test]
    fn ststoken_known_vector() {
        let mode = AuthMode::StsToken {
            security_token: Secret::new(STS_TOKEN),
        };
        let mut p = params(SignMethod::HmacSha1, &mode);
        p.access_key_id = "STS.NTestKeyId";
        p.access_key_secret = "stsSecret";
        p.timestamp_ms = 1_573_489_088_171;
        let c = sign(&p).unwrap();
        assert_eq!(c.password, "cYvFJUeuHVnZuXxt1l4W0R/fEgk=");
        assert!(c
            .username
            .contains("authMode=ststoken,securityToken=CAIStestTOKEN+/xyz==,"));
        assert_eq!(
            string_to_sign("STS.NTestKeyId", Some(STS_TOKEN), "1573489088171"),
            "authId=STS.NTestKeyId&securityToken=CAIStestTOKEN+/xyz==&timestamp=1573489088171"
        );
        let parsed = parse_username(&c.username).unwrap();
        assert_eq!(parsed.security_token(), Some(STS_TOKEN));
        assert!(verify_password(&parsed, &c.password, "stsSecret").unwrap());
    }

    #[test]
    fn debug_redacts_password() {
        let c = sign(&params(SignMethod::HmacSha1, &AuthMode::AkSign)).unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains(&c.password));
        assert!(!shown.contains(SECRET));
    }

    #[test]
    fn parser_accepts_any_order_and_case() {
        // The Go demo's order and capitalisation.
        let u = "go-client|authMode=aksign,signMethod=Hmacsha1,consumerGroupId=G1,\
                 authId=LTAI5tTestKeyId0001,iotInstanceId=,timestamp=1700000000123|";
        let p = parse_username(u).unwrap();
        assert_eq!(p.client_id, "go-client");
        assert_eq!(p.sign_method().unwrap(), SignMethod::HmacSha1);
        assert_eq!(p.consumer_group_id(), Some("G1"));
        assert_eq!(p.iot_instance_id(), "");
        assert_eq!(p.timestamp(), Some("1700000000123"));
        assert!(verify_password(&p, "5s0ODBVqBfWrcH9WllZqdgqlfS0=", SECRET).unwrap());
        assert!(!verify_password(&p, "5s0ODBVqBfWrcH9WllZqdgqlfS1=", SECRET).unwrap());
        assert!(!verify_password(&p, "not base64!", SECRET).unwrap());
        assert!(!verify_password(&p, "5s0ODBVqBfWrcH9WllZqdgqlfS0=", "wrong").unwrap());
    }

    #[test]
    fn roundtrip_every_method() {
        for method in [
            SignMethod::HmacSha1,
            SignMethod::HmacSha256,
            SignMethod::HmacMd5,
        ] {
            let c = sign(&params(method, &AuthMode::AkSign)).unwrap();
            let p = parse_username(&c.username).unwrap();
            assert_eq!(p.sign_method().unwrap(), method);
            assert!(verify_password(&p, &c.password, SECRET).unwrap());
        }
    }

    #[test]
    fn parser_rejects_garbage() {
        assert!(parse_username("no-bar").is_err());
        assert!(parse_username("c|authMode=aksign").is_err());
        assert!(parse_username("c|a=1|b=2|").is_err());
        assert!(parse_username("c|novalue|").is_err());
        assert!(parse_username("c|a=1,a=2|").is_err());
        let p = parse_username("c|authMode=aksign,signMethod=hmacsha512,authId=a,timestamp=1|")
            .unwrap();
        assert!(matches!(
            verify_password(&p, "x", "y"),
            Err(SignError::UnknownSignMethod(_))
        ));
        let p = parse_username("c|signMethod=hmacsha1,authId=a,timestamp=1|").unwrap();
        assert!(verify_password(&p, "x", "y").is_err());
    }

    #[test]
    fn rejects_values_that_break_the_syntax() {
        let mut p = params(SignMethod::HmacSha1, &AuthMode::AkSign);
        p.client_id = "a|b";
        assert_eq!(
            sign(&p).unwrap_err(),
            SignError::InvalidField { field: "client_id" }
        );
        let mut p = params(SignMethod::HmacSha1, &AuthMode::AkSign);
        p.consumer_group_id = "a,b";
        assert!(sign(&p).is_err());
        let mut p = params(SignMethod::HmacSha1, &AuthMode::AkSign);
        p.iot_instance_id = "";
        assert!(sign(&p).unwrap().username.contains(",iotInstanceId=,"));
    }
}

//! `[aliyun]`: the AMQP endpoint and credentials, as written and as validated.

use super::load::{Cx, Field};
use super::{
    defaults, AliyunConfig, AuthMode, ConfigError, HumanDuration, Secret, SecretSource, SignMethod,
    CREDENTIAL_ACCESS_KEY_SECRET, CREDENTIAL_SECURITY_TOKEN, ENV_ACCESS_KEY_SECRET,
    ENV_CREDENTIALS_DIRECTORY, ENV_SECURITY_TOKEN, MAX_CLIENT_ID_LEN, MAX_CONNECTIONS,
};
use crate::secret_file;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `[aliyun]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawAliyun {
    host: Field<String>,
    port: Field<i64>,
    access_key_id: Field<String>,
    access_key_secret: Field<Secret>,
    access_key_secret_file: Field<String>,
    iot_instance_id: Field<String>,
    consumer_group_id: Field<String>,
    client_id: Field<String>,
    sign_method: Field<SignMethod>,
    auth_mode: Field<AuthModeName>,
    security_token: Field<Secret>,
    security_token_file: Field<String>,
    ca_file: Field<String>,
    connections: Field<i64>,
    source_address: Field<String>,
    credit: Field<i64>,
    idle_timeout: Field<HumanDuration>,
    setup_timeout: Field<HumanDuration>,
    reconnect_max: Field<HumanDuration>,
}

/// `auth_mode` as written: [`AuthMode`] without its token (ASCII case ignored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
enum AuthModeName {
    AkSign,
    StsToken,
}

impl TryFrom<String> for AuthModeName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "aksign" => Ok(AuthModeName::AkSign),
            "ststoken" => Ok(AuthModeName::StsToken),
            _ => Err(format!(
                "{s:?} is not an auth mode; expected \"aksign\" or \"ststoken\""
            )),
        }
    }
}

/// The ways one secret may be given.
#[derive(Clone, Copy)]
pub(super) struct SecretSpec {
    /// The table its keys are in.
    pub(super) table: &'static str,
    /// For messages: `access key secret`, `security token`.
    pub(super) what: &'static str,
    /// `[aliyun]` key holding it inline.
    pub(super) inline_key: &'static str,
    /// `[aliyun]` key naming a file holding it.
    pub(super) file_key: &'static str,
    /// The same as `table.key`.
    pub(super) file_key_dotted: &'static str,
    /// Environment variable holding it.
    pub(super) env_var: &'static str,
    /// systemd credential name (a file in `$CREDENTIALS_DIRECTORY`), used when none of the
    /// others is given.
    pub(super) credential: &'static str,
}

/// `auth_mode`, and `security_token` with `ststoken`: the keys [`AuthMode`] is written as
/// (`#[serde(flatten)]` on [`AliyunConfig`]; the token serializes redacted, as every [`Secret`]).
pub(super) fn auth_mode_keys<S: serde::Serializer>(m: &AuthMode, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = s.serialize_map(None)?;
    map.serialize_entry("auth_mode", m.as_str())?;
    if let AuthMode::StsToken { security_token } = m {
        map.serialize_entry("security_token", security_token)?;
    }
    map.end()
}

/// Characters that would break the `clientId|k=v,k=v|` AMQP user name.
fn username_breaker(c: char) -> bool {
    matches!(c, '|' | ',' | '=') || c.is_whitespace() || c.is_control()
}

/// The value of a setting.
fn get<T: Clone>(f: &Field<T>) -> Option<T> {
    f.as_ref().map(|s| s.get_ref().clone())
}

impl RawAliyun {
    /// Validates `[aliyun]`: required keys, ranges, one source per secret, the CA file.
    pub(super) fn validate(self, cx: &Cx) -> Result<AliyunConfig, ConfigError> {
        const T: &str = "aliyun";
        let r = self;
        let host = get(&r.host).ok_or_else(|| {
            cx.missing(
                T,
                "host",
                "the AMQP endpoint from the console (instance details -> AMQP), e.g. \
                 \"iot-06z00xxxxxxx.amqp.iothub.aliyuncs.com\"",
            )
        })?;
        cx.host(&host, cx.at(&r.host))?;
        let port = cx.int((T, "port"), &r.port, defaults::PORT.into(), (1, 65535), "")?;
        let access_key_id = get(&r.access_key_id)
            .ok_or_else(|| cx.missing(T, "access_key_id", "the AccessKey id (\"LTAI...\")"))?;
        let line = cx.at(&r.access_key_id);
        if access_key_id.is_empty() {
            return Err(cx.invalid(
                T,
                "access_key_id",
                line,
                "is empty; expected the AccessKey id",
            ));
        }
        cx.ident(T, "access_key_id", line, &access_key_id)?;
        let access_key_secret = cx
            .secret(
                &SecretSpec {
                    table: T,
                    what: "access key secret",
                    inline_key: "access_key_secret",
                    file_key: "access_key_secret_file",
                    file_key_dotted: "aliyun.access_key_secret_file",
                    env_var: ENV_ACCESS_KEY_SECRET,
                    credential: CREDENTIAL_ACCESS_KEY_SECRET,
                },
                r.access_key_secret,
                r.access_key_secret_file,
                "it signs the AMQP password",
            )?
            .unwrap_or_default();
        let iot_instance_id = get(&r.iot_instance_id).ok_or_else(|| {
            cx.missing(
                T,
                "iot_instance_id",
                "the instance id from the console, e.g. \"iot-06z00xxxxxxx\"; \"\" for a legacy \
                 public instance without one",
            )
        })?;
        cx.ident(
            T,
            "iot_instance_id",
            cx.at(&r.iot_instance_id),
            &iot_instance_id,
        )?;
        let consumer_group_id = get(&r.consumer_group_id).ok_or_else(|| {
            cx.missing(
                T,
                "consumer_group_id",
                "the consumer group to receive from (every account has \"DEFAULT_GROUP\"); one \
                 receiver per group",
            )
        })?;
        let line = cx.at(&r.consumer_group_id);
        if consumer_group_id.is_empty() {
            return Err(cx.invalid(
                T,
                "consumer_group_id",
                line,
                "is empty; expected a group id",
            ));
        }
        cx.ident(T, "consumer_group_id", line, &consumer_group_id)?;

        let connections = cx.int(
            (T, "connections"),
            &r.connections,
            defaults::CONNECTIONS as i64,
            (1, MAX_CONNECTIONS as i64),
            " (Aliyun allows 128 connections per client)",
        )? as usize;
        let client_id = get(&r.client_id).unwrap_or_else(|| defaults::CLIENT_ID.to_owned());
        let line = cx.at(&r.client_id);
        if client_id.is_empty() {
            return Err(cx.invalid(
                T,
                "client_id",
                line,
                "is empty; expected e.g. \"receiver-01\"",
            ));
        }
        if !client_id.is_ascii() {
            return Err(cx.invalid(
                T,
                "client_id",
                line,
                format!("{client_id:?} is not ASCII; expected e.g. \"receiver-01\""),
            ));
        }
        cx.ident(T, "client_id", line, &client_id)?;
        let suffix = if connections > 1 {
            1 + (connections - 1).to_string().len()
        } else {
            0
        };
        if client_id.len() + suffix > MAX_CLIENT_ID_LEN {
            let msg = if suffix == 0 {
                format!(
                    "is {} characters; expected at most {MAX_CLIENT_ID_LEN}",
                    client_id.len()
                )
            } else {
                format!(
                    "is {} characters, and with connections = {connections} each connection \
                     appends \"-{}\" ({suffix} more); expected at most {} characters",
                    client_id.len(),
                    connections - 1,
                    MAX_CLIENT_ID_LEN - suffix
                )
            };
            return Err(cx.invalid(T, "client_id", line, msg));
        }

        let sign_method = get(&r.sign_method).unwrap_or(SignMethod::HmacSha1);
        let auth_mode = match get(&r.auth_mode).unwrap_or(AuthModeName::AkSign) {
            AuthModeName::AkSign => {
                for (key, set) in [
                    ("security_token", cx.at(&r.security_token)),
                    ("security_token_file", cx.at(&r.security_token_file)),
                ] {
                    if set.is_some() {
                        return Err(cx.invalid(
                            T,
                            key,
                            set,
                            "is set but auth_mode is \"aksign\"; expected auth_mode = \
                             \"ststoken\" to use an STS security token, or remove the key",
                        ));
                    }
                }
                AuthMode::AkSign
            }
            AuthModeName::StsToken => {
                let security_token = cx
                    .secret(
                        &SecretSpec {
                            table: T,
                            what: "security token",
                            inline_key: "security_token",
                            file_key: "security_token_file",
                            file_key_dotted: "aliyun.security_token_file",
                            env_var: ENV_SECURITY_TOKEN,
                            credential: CREDENTIAL_SECURITY_TOKEN,
                        },
                        r.security_token,
                        r.security_token_file,
                        "auth_mode = \"ststoken\" needs one",
                    )?
                    .unwrap_or_default();
                AuthMode::StsToken { security_token }
            }
        };

        let ca_file = match &r.ca_file {
            None => None,
            Some(f) => Some(cx.ca_file(f.get_ref(), cx.at(&r.ca_file))?),
        };
        let source_address =
            get(&r.source_address).unwrap_or_else(|| defaults::SOURCE_ADDRESS.to_owned());
        if source_address.is_empty() {
            return Err(cx.invalid(
                T,
                "source_address",
                cx.at(&r.source_address),
                "is empty; expected a link source address (Aliyun ignores it; \"default\" works)",
            ));
        }
        let credit = cx.int(
            (T, "credit"),
            &r.credit,
            defaults::CREDIT.into(),
            (1, 1000),
            " (every delivered message must be settled within Aliyun's 30 s ACK timeout)",
        )? as u32;
        let idle_timeout = cx.duration(
            (T, "idle_timeout"),
            &r.idle_timeout,
            defaults::IDLE_TIMEOUT,
            (Duration::from_secs(30), Duration::from_secs(300)),
            " (Aliyun requires an idle time-out of 30-300 s)",
        )?;
        let setup_timeout = cx.duration(
            (T, "setup_timeout"),
            &r.setup_timeout,
            defaults::SETUP_TIMEOUT,
            (Duration::from_secs(1), Duration::from_secs(60)),
            " (Aliyun drops a connection not authenticated within 15 s)",
        )?;
        let reconnect_max = cx.duration(
            (T, "reconnect_max"),
            &r.reconnect_max,
            defaults::RECONNECT_MAX,
            (Duration::from_secs(1), Duration::from_secs(3600)),
            "",
        )?;
        Ok(AliyunConfig {
            host,
            port: port as u16,
            access_key_id,
            access_key_secret,
            iot_instance_id,
            consumer_group_id,
            client_id,
            sign_method,
            auth_mode,
            ca_file,
            connections,
            source_address,
            credit,
            idle_timeout,
            setup_timeout,
            reconnect_max,
        })
    }
}

/// The `[aliyun]` checks that need the context: secrets, files, names.
impl Cx<'_> {
    pub(super) fn secret_file(
        &self,
        dotted: &'static str,
        line: Option<usize>,
        file: &Path,
    ) -> Result<String, ConfigError> {
        let (table, key) = dotted.split_once('.').unwrap_or(("", dotted));
        match secret_file::read(file, secret_file::Permissions::Check) {
            Ok(s) => {
                if let Some(w) = s.warning {
                    self.warn(table, key, line, format!("{}: {w}", file.display()));
                }
                Ok(s.value)
            }
            Err(e) => {
                let source = match e {
                    secret_file::SecretFileError::Open(ref io)
                    | secret_file::SecretFileError::Read(ref io) => {
                        Some(std::io::Error::new(io.kind(), io.to_string()))
                    }
                    _ => None,
                };
                Err(ConfigError::File {
                    path: self.path.to_owned(),
                    line,
                    key: dotted,
                    file: file.to_owned(),
                    message: e.to_string(),
                    source,
                })
            }
        }
    }

    /// An inline secret makes the config file itself secret: warn when others may read it.
    fn warn_inline_secret(&self, table: &str, key: &str, line: Option<usize>) {
        let Some(mode) = self.host.as_ref().and_then(|h| h.config_mode) else {
            return;
        };
        if mode & 0o004 != 0 {
            self.warn(
                table,
                key,
                line,
                format!(
                    "the secret is inline and {} is readable by everyone (mode {mode:04o}); run                      `chmod 600 {}`, or move the secret to a file (`{key}_file`) or a systemd                      credential",
                    self.path.display(),
                    self.path.display()
                ),
            );
        }
    }

    /// A string used inside the AMQP user name: no `|`, `,`, `=`, whitespace or control chars.
    fn ident(
        &self,
        table: &str,
        key: &str,
        line: Option<usize>,
        v: &str,
    ) -> Result<(), ConfigError> {
        match v.chars().find(|&c| username_breaker(c)) {
            Some(c) => Err(self.invalid(
                table,
                key,
                line,
                format!(
                    "{v:?} contains {c:?}, which would break the AMQP user name; expected no \
                     '|', ',', '=', whitespace or control characters"
                ),
            )),
            None => Ok(()),
        }
    }

    /// Loads a secret from exactly one of: inline key, file key, environment variable; when
    /// none is given, from the systemd credential `spec.credential` if
    /// `$CREDENTIALS_DIRECTORY` holds it.
    pub(super) fn secret(
        &self,
        spec: &SecretSpec,
        inline: Field<Secret>,
        file: Field<String>,
        required_because: &str,
    ) -> Result<Option<Secret>, ConfigError> {
        let SecretSpec {
            table,
            what,
            inline_key,
            file_key,
            env_var,
            credential,
            ..
        } = *spec;
        // An empty variable counts as unset (systemd `Environment=VAR=` clears it that way).
        let env = (self.env)(env_var).filter(|v| !v.is_empty());
        let mut found = Vec::new();
        if inline.is_some() {
            found.push(format!("`{inline_key}`"));
        }
        if file.is_some() {
            found.push(format!("`{file_key}`"));
        }
        if env.is_some() {
            found.push(format!("environment variable {env_var}"));
        }
        let line = self.at(&inline).or_else(|| self.at(&file));
        let err = |problem: String| ConfigError::SecretSource {
            path: self.path.to_owned(),
            line,
            table,
            what,
            problem,
        };
        if found.len() > 1 {
            return Err(err(format!(
                "given {} ways ({}); expected exactly one of `{inline_key}`, `{file_key}` or \
                 environment variable {env_var}",
                found.len(),
                found.join(", ")
            )));
        }
        let credentials_dir = (self.env)(ENV_CREDENTIALS_DIRECTORY).filter(|d| !d.is_empty());
        let secret = if let Some(v) = inline {
            self.warn_inline_secret(table, inline_key, line);
            v.into_inner()
        } else if let Some(f) = file {
            let file = self.resolve(f.get_ref());
            let value = self.secret_file(spec.file_key_dotted, line, &file)?;
            Secret::with_source(value, SecretSource::File(file))
        } else if let Some(v) = env {
            Secret::with_source(v, SecretSource::Env(env_var.to_owned()))
        } else if let Some(file) = credentials_dir
            .as_deref()
            .map(|d| super::absolute(&Path::new(d).join(credential)))
            // Present, or present but not inspectable (then reading it reports why).
            .filter(|f| !matches!(f.try_exists(), Ok(false)))
        {
            let value = secret_file::read(&file, secret_file::Permissions::Credential)
                .map_err(|e| {
                    err(format!(
                        "systemd credential `{credential}` ({}, from ${ENV_CREDENTIALS_DIRECTORY}): \
                         {e}",
                        file.display()
                    ))
                })?
                .value;
            Secret::with_source(value, SecretSource::File(file))
        } else if required_because.is_empty() {
            return Ok(None);
        } else {
            let looked = match &credentials_dir {
                Some(d) => format!("; ${ENV_CREDENTIALS_DIRECTORY} ({d}) has no `{credential}`"),
                None => String::new(),
            };
            return Err(err(format!(
                "not given; {required_because}: set exactly one of `{inline_key}`, \
                 `{file_key}` (a file holding it) or environment variable {env_var}, or pass \
                 systemd credential `{credential}` (LoadCredential=){looked}"
            )));
        };
        let value = secret.expose();
        if value.is_empty() {
            return Err(err(format!(
                "is empty ({})",
                secret.source().map_or_else(String::new, |s| s.to_string())
            )));
        }
        if value.contains(['|', ',']) || value.chars().any(char::is_control) {
            return Err(err(format!(
                "contains '|', ',' or a control character ({}); expected the value exactly as \
                 the console shows it",
                secret.source().map_or_else(String::new, |s| s.to_string())
            )));
        }
        Ok(Some(secret))
    }

    fn host(&self, host: &str, line: Option<usize>) -> Result<(), ConfigError> {
        const T: &str = "aliyun";
        if host.is_empty() {
            return Err(self.invalid(
                T,
                "host",
                line,
                "is empty; expected the AMQP endpoint, e.g. \
                 \"iot-06z00xxxxxxx.amqp.iothub.aliyuncs.com\"",
            ));
        }
        if host.contains("://") {
            return Err(self.invalid(
                T,
                "host",
                line,
                format!(
                    "{host:?} has a URL scheme; expected a bare host name (port goes in `port`)"
                ),
            ));
        }
        if host.parse::<std::net::IpAddr>().is_err() && host.contains(['/', ':']) {
            return Err(self.invalid(
                T,
                "host",
                line,
                format!(
                    "{host:?} has a port or path; expected a bare host name (port goes in `port`)"
                ),
            ));
        }
        if rustls::pki_types::ServerName::try_from(host).is_err() {
            return Err(self.invalid(
                T,
                "host",
                line,
                format!("{host:?} is not a valid DNS name or IP address"),
            ));
        }
        Ok(())
    }

    fn ca_file(&self, f: &str, line: Option<usize>) -> Result<PathBuf, ConfigError> {
        self.ca_file_for("aliyun.ca_file", f, line)
    }

    /// A PEM file of CA certificates named by `key` (`table.key`).
    pub(super) fn ca_file_for(
        &self,
        key: &'static str,
        f: &str,
        line: Option<usize>,
    ) -> Result<PathBuf, ConfigError> {
        let file = self.resolve(f);
        let err = |message: String, source: Option<std::io::Error>| ConfigError::File {
            path: self.path.to_owned(),
            line,
            key,
            file: file.clone(),
            message,
            source,
        };
        let pem = std::fs::read(&file).map_err(|e| err(format!("cannot read: {e}"), Some(e)))?;
        let mut reader = pem.as_slice();
        let mut certs = 0usize;
        for cert in rustls_pemfile::certs(&mut reader) {
            match cert {
                Ok(_) => certs += 1,
                Err(e) => return Err(err(format!("is not valid PEM: {e}"), Some(e))),
            }
        }
        if certs == 0 {
            return Err(err(
                "holds no PEM certificate; expected one or more \"-----BEGIN CERTIFICATE-----\" \
                 blocks"
                    .into(),
                None,
            ));
        }
        Ok(file)
    }
}

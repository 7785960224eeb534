//! `[web]`: the gallery's listener and password, as written and as validated.

use super::load::{Cx, Field};
use super::{ConfigError, ENV_CREDENTIALS_DIRECTORY};
use crate::secret_file;
use receiver_protocol::secret::{Secret, SecretSource};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::Path;

/// The systemd credential holding the gallery's password (`LoadCredential=web_password:...`),
/// used when `password_file` is not set.
pub const CREDENTIAL_WEB_PASSWORD: &str = "web_password";

/// `[web]` as written in TOML.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWeb {
    /// `ip:port`; unset = no gallery.
    listen: Field<String>,
    /// A file holding the password of user `admin`.
    password_file: Field<String>,
}

impl RawWeb {
    /// Validates into a [`crate::web::WebConfig`]: the address parses, the password file (or the
    /// systemd credential) is readable, and a listener others can reach has a password.
    pub(super) fn validate(self, cx: &Cx) -> Result<crate::web::WebConfig, ConfigError> {
        const T: &str = "web";
        let listen = match &self.listen {
            None => None,
            Some(s) => Some(s.get_ref().trim().parse::<SocketAddr>().map_err(|e| {
                cx.invalid(
                    T,
                    "listen",
                    cx.at(&self.listen),
                    format!(
                        "{:?} is not an ip:port address ({e}); expected e.g. \"127.0.0.1:8080\"",
                        s.get_ref()
                    ),
                )
            })?),
        };
        let file_line = cx.at(&self.password_file);
        let password = if let Some(f) = &self.password_file {
            let file = cx.resolve(f.get_ref());
            let value = cx.secret_file("web.password_file", file_line, &file)?;
            Some(Secret::with_source(value, SecretSource::File(file)))
        } else if let Some(file) = (cx.env)(ENV_CREDENTIALS_DIRECTORY)
            .filter(|d| !d.is_empty())
            .map(|d| super::absolute(&Path::new(&d).join(CREDENTIAL_WEB_PASSWORD)))
            .filter(|f| !matches!(f.try_exists(), Ok(false)))
        {
            let value = secret_file::read(&file, secret_file::Permissions::Credential)
                .map_err(|e| {
                    cx.invalid(
                        T,
                        "password_file",
                        None,
                        format!(
                            "systemd credential `{CREDENTIAL_WEB_PASSWORD}` ({}): {e}",
                            file.display()
                        ),
                    )
                })?
                .value;
            Some(Secret::with_source(value, SecretSource::File(file)))
        } else {
            None
        };
        if password.as_ref().is_some_and(|p| p.expose().is_empty()) {
            return Err(cx.invalid(
                T,
                "password_file",
                file_line,
                "the password is empty; expected a file holding the password alone on one line",
            ));
        }
        if let (Some(addr), None) = (listen, &password) {
            if !addr.ip().is_loopback() {
                return Err(cx.invalid(
                    T,
                    "listen",
                    cx.at(&self.listen),
                    format!(
                        "{addr} is not a loopback address and no password is set, so anyone who \
                         can reach it would see every camera's pictures; set `password_file` (a \
                         file holding the password of user \"admin\") or pass systemd credential \
                         `{CREDENTIAL_WEB_PASSWORD}`, or listen on 127.0.0.1"
                    ),
                ));
            }
        }
        Ok(crate::web::WebConfig { listen, password })
    }
}

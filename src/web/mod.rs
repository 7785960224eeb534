//! The gallery: a read-only web view of the cameras' pictures, served by the daemon on
//! `[web] listen` (see docs/operations.md, "The gallery").
//!
//! - [`WebConfig`]: `[web]` validated (parsing is in `crate::config`);

use receiver_protocol::secret::{Secret, SecretSource};
use serde::Serialize;
use std::net::SocketAddr;

/// `[web]`: the gallery.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebConfig {
    /// Address to listen on; `None` (the default) = no gallery. May equal `[metrics] listen`:
    /// then one listener serves both.
    pub listen: Option<SocketAddr>,
    /// The password of user `admin` (HTTP basic auth); `None` = no authentication (loopback only:
    /// validation refuses another address without one).
    pub password: Option<Secret>,
}

/// As the config file writes it: `listen`, and `password_file` naming where the password came
/// from (never the password).
impl Serialize for WebConfig {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(None)?;
        if let Some(listen) = self.listen {
            map.serialize_entry("listen", &listen.to_string())?;
        }
        if let Some(SecretSource::File(file)) = self.password.as_ref().and_then(Secret::source) {
            map.serialize_entry("password_file", &file.to_string_lossy())?;
        }
        map.end()
    }
}

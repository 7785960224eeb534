//! Secrets that are never printed: `Debug`, `Display` and `Serialize` all give the redaction
//! marker.

use serde::Deserialize;
use std::fmt;
use std::path::PathBuf;

/// Where a secret came from; shown (instead of the value) by `check-config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// Written inline in the config file.
    Inline,
    /// Read from this file (trailing line break removed).
    File(PathBuf),
    /// Read from this environment variable.
    Env(String),
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Inline => f.write_str("inline in the config file"),
            SecretSource::File(p) => write!(f, "from file {}", p.display()),
            SecretSource::Env(v) => write!(f, "from env {v}"),
        }
    }
}

/// A secret string: never printed by `Debug` or `Display`.
///
/// Two secrets are equal when their values are, wherever they came from.
#[derive(Clone, Default)]
pub struct Secret {
    value: String,
    source: Option<SecretSource>,
}

impl Secret {
    /// What is shown instead of a secret.
    pub const REDACTED: &'static str = "<redacted>";

    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret {
            value: s.into(),
            source: None,
        }
    }

    /// Wraps a secret and remembers where it came from.
    pub fn with_source(s: impl Into<String>, source: SecretSource) -> Self {
        Secret {
            value: s.into(),
            source: Some(source),
        }
    }

    /// The secret itself, for signing only.
    pub fn expose(&self) -> &str {
        &self.value
    }

    /// Where it came from, when it was loaded from a config.
    pub fn source(&self) -> Option<&SecretSource> {
        self.source.as_ref()
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", Secret::REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Secret::REDACTED)
    }
}

/// A secret written inline in the config file.
impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| Secret::with_source(s, SecretSource::Inline))
    }
}

/// Serializes as the redaction marker, never as the value.
impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(Secret::REDACTED)
    }
}

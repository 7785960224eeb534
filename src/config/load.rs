//! Parsing: one serde pass into the `Raw*` section structs, errors placed by toml's spans.
//!
//! [`RawConfig`] is `#[derive(Deserialize)]` with `deny_unknown_fields`; each section struct
//! holds typed fields wrapped in [`Spanned`], so the validation beside each section can name the
//! line of the key it rejects. A deserialization error carries its span (the line) and, through
//! `serde_path_to_error`, the table and key it happened at.

use super::aliyun::RawAliyun;
use super::cluster::RawCluster;
use super::sections::{RawAssembly, RawDir, RawLog, RawOutput, RawSpool};
use super::{ConfigError, ConfigWarning};
use crate::ops::health::RawHealthConfig;
use crate::ops::hook::RawHookConfig;
use crate::ops::http::RawMetricsConfig;
use crate::ops::retention::RawRetentionConfig;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::cell::RefCell;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// An optional setting and where it is written.
pub(super) type Field<T> = Option<Spanned<T>>;

/// The whole file as written: every section optional, every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawConfig {
    pub(super) aliyun: RawAliyun,
    pub(super) output: RawOutput,
    pub(super) state: RawDir,
    pub(super) assembly: RawAssembly,
    pub(super) spool: RawSpool,
    pub(super) log: RawLog,
    // The operations sections: their raw structs live in `crate::ops` (each validates itself).
    pub(super) metrics: RawMetricsConfig,
    pub(super) health: RawHealthConfig,
    pub(super) retention: RawRetentionConfig,
    pub(super) hook: RawHookConfig,
    pub(super) web: super::web::RawWeb,
    pub(super) cluster: RawCluster,
}

/// Every table and the keys it accepts, in file order, read from the serde derives of the
/// structs the file is deserialized into, so the list cannot drift from what loading accepts
/// (docs and tests use it to check every key is documented).
pub fn known_keys() -> [(&'static str, &'static [&'static str]); 12] {
    [
        ("aliyun", fields_of::<RawAliyun>()),
        ("output", fields_of::<RawOutput>()),
        ("state", fields_of::<RawDir>()),
        ("assembly", fields_of::<RawAssembly>()),
        ("spool", fields_of::<RawSpool>()),
        ("log", fields_of::<RawLog>()),
        ("metrics", fields_of::<RawMetricsConfig>()),
        ("health", fields_of::<RawHealthConfig>()),
        ("retention", fields_of::<RawRetentionConfig>()),
        ("hook", fields_of::<RawHookConfig>()),
        ("web", fields_of::<super::web::RawWeb>()),
        ("cluster", fields_of::<RawCluster>()),
    ]
}

/// The field names a `#[derive(Deserialize)]` struct accepts.
pub(super) fn fields_of<T: de::DeserializeOwned>() -> &'static [&'static str] {
    struct Grab<'a>(&'a mut &'static [&'static str]);
    impl<'de> Deserializer<'de> for Grab<'_> {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("fields captured"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Grab(&mut fields));
    fields
}

/// Facts about the machine for [`super::Config::from_toml_checked`]: with them, loading also
/// checks that the hook program can be run and warns about an inline secret in a config file
/// others may read. `check-config` and start-up use them; [`super::Config::from_toml`] does not.
#[derive(Debug, Clone, Default)]
pub struct HostChecks {
    /// Permission bits of the config file, when known.
    pub config_mode: Option<u32>,
    /// `PATH` to find a hook program named without a `/` in (the hook gets the same `PATH`).
    pub path_env: Option<std::ffi::OsString>,
}

/// What validation needs besides the raw sections: the file (for messages and relative paths),
/// the environment, the host checks, and the warnings gathered so far.
pub(super) struct Cx<'a> {
    pub(super) path: &'a Path,
    /// Byte offset of the start of each line of the text.
    line_starts: Vec<usize>,
    pub(super) env: &'a dyn Fn(&str) -> Option<String>,
    /// The config file's folder, absolute: relative paths are resolved against it.
    base: PathBuf,
    /// Checks against this machine beyond the files the config names (`None`: skipped).
    pub(super) host: Option<HostChecks>,
    /// Problems worth telling that do not stop the start-up.
    warnings: RefCell<Vec<ConfigWarning>>,
}

impl<'a> Cx<'a> {
    pub(super) fn new(
        text: &str,
        path: &'a Path,
        env: &'a dyn Fn(&str) -> Option<String>,
        host: Option<HostChecks>,
    ) -> Cx<'a> {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        Cx {
            path,
            line_starts,
            env,
            base: super::absolute(base),
            host,
            warnings: RefCell::default(),
        }
    }

    /// The warnings gathered while validating.
    pub(super) fn into_warnings(self) -> Vec<ConfigWarning> {
        self.warnings.into_inner()
    }

    /// 1-based (line, column) of a byte offset.
    fn line_col(&self, offset: usize) -> (usize, usize) {
        let line = self.line_starts.partition_point(|&s| s <= offset).max(1);
        (line, offset - self.line_starts[line - 1] + 1)
    }

    /// The 1-based line a span starts on.
    pub(super) fn line(&self, span: Range<usize>) -> usize {
        self.line_col(span.start).0
    }

    /// The line of a setting, when the file has it.
    pub(super) fn at<T>(&self, f: &Field<T>) -> Option<usize> {
        f.as_ref().map(|s| self.line(s.span()))
    }

    /// Parses `text` into the raw sections.
    pub(super) fn parse(&self, text: &str) -> Result<RawConfig, ConfigError> {
        serde_path_to_error::deserialize(toml::de::Deserializer::new(text))
            .map_err(|e| self.serde_error(e))
    }

    /// Turns a deserialization error into "line N: [table] key: message", or an unknown key.
    fn serde_error(&self, e: serde_path_to_error::Error<toml::de::Error>) -> ConfigError {
        // The table and key the error happened at (toml's `Spanned` and datetime wrappers add
        // private map keys of their own).
        let keys: Vec<String> = e
            .path()
            .iter()
            .filter_map(|s| match s {
                serde_path_to_error::Segment::Map { key } if !key.starts_with("$__") => {
                    Some(key.clone())
                }
                _ => None,
            })
            .collect();
        let e = e.into_inner();
        let message = e.message().trim().to_owned();
        let path = self.path.to_owned();
        let Some(span) = e.span() else {
            return ConfigError::Syntax {
                path,
                line: 1,
                column: 1,
                message,
            };
        };
        let (line, column) = self.line_col(span.start);
        let tables = known_keys();
        let unknown =
            |table: Option<&str>, key: &str, expected: Vec<String>| ConfigError::UnknownKey {
                path: self.path.to_owned(),
                line,
                table: table.map(str::to_owned),
                key: key.to_owned(),
                expected,
            };
        match keys.as_slice() {
            // Not a value's fault: the text is not TOML.
            [] => ConfigError::Syntax {
                path,
                line,
                column,
                message,
            },
            [key] if !tables.iter().any(|(t, _)| t == key) => unknown(
                None,
                key,
                tables.iter().map(|(t, _)| format!("[{t}]")).collect(),
            ),
            [table, key, ..] => match tables.iter().find(|(t, _)| t == table) {
                Some((_, fields)) if !fields.contains(&key.as_str()) => unknown(
                    Some(table),
                    key,
                    fields.iter().map(|f| (*f).to_owned()).collect(),
                ),
                _ => invalid_type(path, line, table, key, &message),
            },
            [key] => invalid_type(path, line, "", key, &message),
        }
    }

    pub(super) fn warn(&self, table: &str, key: &str, line: Option<usize>, message: String) {
        self.warnings.borrow_mut().push(ConfigWarning {
            path: self.path.to_owned(),
            line,
            table: table.to_owned(),
            key: key.to_owned(),
            message,
        });
    }

    pub(super) fn invalid(
        &self,
        table: &str,
        key: &str,
        line: Option<usize>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_owned(),
            line,
            table: table.to_owned(),
            key: key.to_owned(),
            message: message.into(),
        }
    }

    pub(super) fn missing(
        &self,
        table: &'static str,
        key: &'static str,
        hint: &str,
    ) -> ConfigError {
        ConfigError::Missing {
            path: self.path.to_owned(),
            table,
            key,
            hint: hint.to_owned(),
        }
    }

    /// A path from the file, relative to the file's folder.
    pub(super) fn resolve(&self, p: &str) -> PathBuf {
        super::normalize(&self.base.join(p))
    }

    /// An integer key within `lo..=hi`.
    pub(super) fn int(
        &self,
        (table, key): (&str, &str),
        v: &Field<i64>,
        default: i64,
        (lo, hi): (i64, i64),
        why: &str,
    ) -> Result<i64, ConfigError> {
        let n = v.as_ref().map_or(default, |s| *s.get_ref());
        if (lo..=hi).contains(&n) {
            Ok(n)
        } else {
            Err(self.invalid(
                table,
                key,
                self.at(v),
                format!("{n} is out of range; expected {lo}..={hi}{why}"),
            ))
        }
    }

    /// A duration key within `lo..=hi`.
    pub(super) fn duration(
        &self,
        (table, key): (&str, &str),
        v: &Field<super::HumanDuration>,
        default: Duration,
        (lo, hi): (Duration, Duration),
        why: &str,
    ) -> Result<Duration, ConfigError> {
        let d = v.as_ref().map_or(default, |s| s.get_ref().0);
        if (lo..=hi).contains(&d) {
            Ok(d)
        } else {
            Err(self.invalid(
                table,
                key,
                self.at(v),
                format!(
                    "\"{}\" is out of range; expected \"{}\" to \"{}\"{why}",
                    humantime::format_duration(d),
                    humantime::format_duration(lo),
                    humantime::format_duration(hi)
                ),
            ))
        }
    }
}

/// A value of the wrong type, in words a user knows (serde's integer type names mean little).
fn invalid_type(path: PathBuf, line: usize, table: &str, key: &str, message: &str) -> ConfigError {
    let message = message
        .replace("expected i64", "expected an integer")
        .replace("expected u64", "expected an integer")
        .replace("expected usize", "expected a positive integer");
    ConfigError::Invalid {
        path,
        line: Some(line),
        table: table.to_owned(),
        key: key.to_owned(),
        message,
    }
}

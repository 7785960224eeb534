//! The redacted, TOML view of a [`Config`] that `receiver check-config` prints.
//!
//! Derived, not hand-written: the config serializes (serde) to a TOML table per section, with
//! values as the config file writes them and secrets as [`Secret::REDACTED`]; sections and keys
//! are printed in file order ([`known_keys`]). A key is marked `# default` when its value equals
//! the one in the serialized [`defaults_for`] config ([`default_view`]); the other comments come
//! from [`NOTES`].

use super::{
    default_data_dir, defaults, known_keys, AliyunConfig, AssemblyConfig, AuthMode, ClusterConfig,
    Config, Secret, SignMethod, SpoolConfig,
};
use crate::ops::{HookConfig, OpsConfig};
use std::fmt;
use toml::{Table, Value};

/// Where a [`Note`] goes, relative to its key.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    /// A comment line before the key's line (or where the key would be).
    Before,
    /// At the end of the key's line, when the key is set.
    Trailing,
    /// A comment line after the key's line.
    After,
    /// `# {key} not set{text}` in place of the key, when it is not set.
    Unset,
}

/// A comment at `[section] key`; `text` says what it is for this config (`None`: no comment).
struct Note {
    section: &'static str,
    key: &'static str,
    place: Place,
    text: fn(&Config) -> Option<String>,
}

/// Where a secret came from, as a trailing comment: `(from env RECEIVER_ACCESS_KEY_SECRET)`.
fn source(s: &Secret) -> Option<String> {
    s.source().map(|src| format!("({src})"))
}

/// A [`Note`].
const fn note(
    section: &'static str,
    key: &'static str,
    place: Place,
    text: fn(&Config) -> Option<String>,
) -> Note {
    Note {
        section,
        key,
        place,
        text,
    }
}

/// The comments besides `# default`.
const NOTES: &[Note] = &[
    note("aliyun", "access_key_secret", Place::Trailing, |c| {
        source(&c.aliyun.access_key_secret)
    }),
    note("aliyun", "client_id", Place::After, |c| {
        let a = &c.aliyun;
        (a.connections > 1).then(|| {
            let (first, last) = (a.client_id_for(0), a.client_id_for(a.connections - 1));
            format!("connection client ids: {first} .. {last}")
        })
    }),
    note("aliyun", "security_token", Place::Trailing, |c| {
        match &c.aliyun.auth_mode {
            AuthMode::StsToken { security_token } => source(security_token),
            AuthMode::AkSign => None,
        }
    }),
    note("aliyun", "ca_file", Place::Unset, |_| {
        Some(": public root certificates only".into())
    }),
    note("output", "prefix", Place::After, |c| {
        c.output_s3.as_ref().map(|o| {
            let prefix = if o.prefix.is_empty() {
                String::new()
            } else {
                format!("{}/", o.prefix)
            };
            format!("object keys: {prefix}<productKey>/<deviceName>/<time>[-n].jpg")
        })
    }),
    note("output", "secret_access_key", Place::Trailing, |c| {
        c.output_s3
            .as_ref()
            .and_then(|o| source(&o.secret_access_key))
    }),
    note("output", "storage_class", Place::Unset, |c| {
        c.output_s3
            .as_ref()
            .map(|_| ": the bucket's default".into())
    }),
    note("output", "ca_file", Place::Unset, |c| {
        c.output_s3
            .as_ref()
            .map(|_| ": public root certificates only".into())
    }),
    note("log", "format", Place::Unset, |_| {
        Some(": text on a terminal, json otherwise (--log-format overrides)".into())
    }),
    note("log", "level", Place::Unset, |_| {
        Some(format!(
            ": RUST_LOG, else \"{}\"",
            crate::logging::DEFAULT_FILTER
        ))
    }),
    note("metrics", "listen", Place::Unset, |_| {
        Some(" (default): no /healthz or /metrics listener".into())
    }),
    note("web", "listen", Place::Unset, |_| {
        Some(" (default): no gallery".into())
    }),
    note("web", "password_file", Place::Unset, |c| {
        c.web
            .listen
            .map(|_| ": no password (the gallery listens on loopback only)".into())
    }),
    note("health", "max_delivery_age", Place::Unset, |_| {
        Some(" (default): /healthz does not check delivery age".into())
    }),
    note("retention", "max_age", Place::Before, |c| {
        (!c.ops.retention.limits.any())
            .then(|| "no limit set (default): images are kept forever".into())
    }),
    note(
        "retention",
        "max_age",
        Place::Unset,
        |_| Some(String::new()),
    ),
    note("retention", "max_total_bytes", Place::Unset, |_| {
        Some(String::new())
    }),
    note("retention", "max_files_per_device", Place::Unset, |_| {
        Some(String::new())
    }),
    note("cluster", "redis_url", Place::Unset, |_| {
        Some(" (default): single-instance mode, chunks in flight in the local spool".into())
    }),
    note("cluster", "password", Place::Trailing, |c| {
        c.cluster
            .as_ref()
            .and_then(|k| k.password.as_ref())
            .and_then(source)
    }),
    note("cluster", "password", Place::Unset, |c| {
        c.cluster
            .as_ref()
            .map(|_| ": the URL's, if it has one".into())
    }),
    note("cluster", "instance_id", Place::After, |c| {
        c.cluster
            .as_ref()
            .filter(|k| k.instance_id.is_empty())
            .map(|k| {
                format!(
                    "instance id in force: {} (host name and process id)",
                    k.instance()
                )
            })
    }),
    note("hook", "command", Place::Unset, |_| {
        Some(" (default): no hook".into())
    }),
    // Only with a command: without one, `[hook]` has nothing to explain but that.
    note("hook", "env", Place::Unset, |c| {
        c.ops.hook.as_ref().map(|_| {
            " (default): PATH, HOME, locale, TZ and the RECEIVER_* image variables only".into()
        })
    }),
];

/// Keys that have no default (required, or defaulted only by being required elsewhere): never
/// marked `# default`, whatever [`defaults_for`] holds for them.
const NO_DEFAULT: &[(&str, &str)] = &[
    ("output", "endpoint"),
    ("output", "bucket"),
    ("output", "access_key_id"),
    ("output", "secret_access_key"),
    ("aliyun", "host"),
    ("aliyun", "access_key_id"),
    ("aliyun", "access_key_secret"),
    ("aliyun", "iot_instance_id"),
    ("aliyun", "consumer_group_id"),
    ("hook", "command"),
    ("cluster", "redis_url"),
    ("cluster", "password"),
];

/// `c` with every key that has a default at that default, including the defaults that depend on
/// other keys: `[spool] segment_bytes` (at most `max_bytes`), the folders (under the platform
/// data folder; no default without one). The keys of [`NO_DEFAULT`] keep `c`'s values (and
/// [`default_view`] drops them).
fn defaults_for(c: &Config) -> Config {
    let data = default_data_dir();
    let spool = SpoolConfig::default();
    Config {
        aliyun: AliyunConfig {
            port: defaults::PORT,
            client_id: defaults::CLIENT_ID.to_owned(),
            sign_method: SignMethod::HmacSha1,
            auth_mode: AuthMode::AkSign,
            ca_file: None,
            connections: defaults::CONNECTIONS,
            source_address: defaults::SOURCE_ADDRESS.to_owned(),
            credit: defaults::CREDIT,
            idle_timeout: defaults::IDLE_TIMEOUT,
            setup_timeout: defaults::SETUP_TIMEOUT,
            reconnect_max: defaults::RECONNECT_MAX,
            ..c.aliyun.clone()
        },
        // Without a data folder the folders are required: `c`'s own, dropped by `default_view`.
        output_dir: data
            .as_ref()
            .map_or_else(|| c.output_dir.clone(), |d| d.join("images")),
        output_s3: c.output_s3.as_ref().map(|o| crate::s3::S3Options {
            region: defaults::S3_REGION.to_owned(),
            prefix: String::new(),
            virtual_host_style: false,
            timeout: defaults::S3_TIMEOUT,
            concurrency: defaults::S3_CONCURRENCY,
            storage_class: None,
            create_only: true,
            ca_file: None,
            ..o.clone()
        }),
        state_dir: data
            .as_ref()
            .map_or_else(|| c.state_dir.clone(), |d| d.join("state")),
        assembly: AssemblyConfig::default(),
        spool: SpoolConfig {
            segment_bytes: spool.segment_bytes.min(c.spool.max_bytes),
            ..spool
        },
        log: Default::default(),
        ops: OpsConfig {
            hook: c
                .ops
                .hook
                .as_ref()
                .map(|h| HookConfig::new(h.command.clone())),
            ..OpsConfig::default()
        },
        web: Default::default(),
        cluster: c.cluster.as_ref().map(|k| ClusterConfig {
            key_prefix: defaults::CLUSTER_KEY_PREFIX.to_owned(),
            instance_id: String::new(),
            lease: defaults::CLUSTER_LEASE,
            timeout: defaults::CLUSTER_TIMEOUT,
            ..k.clone()
        }),
    }
}

/// [`defaults_for`] serialized, without the keys that have no default: what `# default` is
/// judged against.
fn default_view(c: &Config) -> Result<Table, toml::ser::Error> {
    let mut view = Table::try_from(defaults_for(c))?;
    // The default view keeps an s3 config's bucket keys (to mark their defaults), but the
    // default backend is the folder.
    if let Some(t) = view.get_mut("output").and_then(Value::as_table_mut) {
        t.insert("backend".into(), Value::String("fs".into()));
    }
    let mut no_default = NO_DEFAULT.to_vec();
    if default_data_dir().is_none() {
        no_default.extend([("output", "dir"), ("state", "dir")]);
    }
    for (section, key) in no_default {
        if let Some(t) = view.get_mut(section).and_then(Value::as_table_mut) {
            t.remove(key);
        }
    }
    Ok(view)
}

/// The table `section` of `doc`, if it has one.
fn table_of<'a>(doc: &'a Table, section: &str) -> Option<&'a Table> {
    doc.get(section).and_then(Value::as_table)
}

impl fmt::Display for Config {
    /// The effective configuration with defaults applied and secrets redacted, as TOML with
    /// comments (`# default`, where a secret came from, what an unset key means).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Serializing cannot fail (no non-string keys, no None in arrays, paths lossy, sizes past
        // i64 as strings); if it ever did, `to_string` would panic rather than print half a view.
        let shown = Table::try_from(self).map_err(|_| fmt::Error)?;
        let default = default_view(self).map_err(|_| fmt::Error)?;
        let empty = Table::new();
        let table = |doc, section| table_of(doc, section).unwrap_or(&empty);
        for (i, (section, keys)) in known_keys().into_iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            writeln!(f, "[{section}]")?;
            let (values, default) = (table(&shown, section), table(&default, section));
            // File order; then any key the file does not know (none: the reload tests check).
            let extra = values
                .keys()
                .map(String::as_str)
                .filter(|k| !keys.contains(k));
            for key in keys.iter().copied().chain(extra) {
                let notes = |place: Place| {
                    NOTES
                        .iter()
                        .filter(move |n| n.section == section && n.key == key && n.place == place)
                        .filter_map(|n| (n.text)(self))
                };
                for text in notes(Place::Before) {
                    writeln!(f, "# {text}")?;
                }
                match values.get(key) {
                    Some(value) => {
                        write!(f, "{key} = {value}")?;
                        if default.get(key) == Some(value) {
                            write!(f, "  # default")?;
                        }
                        for text in notes(Place::Trailing) {
                            write!(f, "  # {text}")?;
                        }
                        writeln!(f)?;
                    }
                    None => {
                        for text in notes(Place::Unset) {
                            writeln!(f, "# {key} not set{text}")?;
                        }
                    }
                }
                for text in notes(Place::After) {
                    writeln!(f, "# {text}")?;
                }
            }
        }
        Ok(())
    }
}

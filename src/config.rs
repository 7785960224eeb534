//! `receiver.toml`: loading, validation, defaults, redacted printing.
//!
//! Loading is "parse, then validate into a richer type" (ripgrep's low/high args, Vector's
//! `validate()`):
//!
//! 1. **Scan.** The text is parsed once into a list of `(table, key, span)` entries. Every key is
//!    checked against the fields the raw structs accept, so an unknown or misspelt key is reported
//!    with its line, its table and the keys that table accepts. The same list later turns a
//!    byte offset back into "the key at line N".
//! 2. **Deserialize** into private `Raw*` structs (every field optional, durations as humantime
//!    strings, sizes as integers or `"4 MiB"`). Type errors name the line and key.
//! 3. **Validate** into [`Config`]: defaults applied, ranges checked, relative paths resolved
//!    against the config file's folder, secrets loaded from exactly one source, and the output
//!    and state folders checked to be disjoint.
//!
//! Every failure is a [`ConfigError`] carrying the config file's path. Secrets are held in
//! [`Secret`], which never prints its value; `Display` on [`Config`] is the redacted, TOML-like
//! view that `receiver check-config` prints.

use crate::ops::health::RawHealthConfig;
use crate::ops::hook::RawHookConfig;
use crate::ops::http::RawMetricsConfig;
use crate::ops::retention::RawRetentionConfig;
use crate::ops::{
    HealthConfig, HookConfig, OpsConfig, OpsConfigError, RawOpsConfig, RetentionConfig,
};
use crate::secret_file;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::fmt;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// The commented example configuration, also printed by `receiver print-default-config`.
pub const EXAMPLE_TOML: &str = include_str!("../config/receiver.example.toml");

/// Environment variable holding the AccessKey secret (one of three secret sources).
pub const ENV_ACCESS_KEY_SECRET: &str = "RECEIVER_ACCESS_KEY_SECRET";

/// Environment variable holding the STS security token (`auth_mode = "ststoken"` only).
pub const ENV_SECURITY_TOKEN: &str = "RECEIVER_SECURITY_TOKEN";

/// Environment variable systemd sets to the folder of the service's credentials
/// (`LoadCredential=`, `SetCredential=`). A secret given nowhere else is read from the credential
/// of the same name there: [`CREDENTIAL_ACCESS_KEY_SECRET`], [`CREDENTIAL_SECURITY_TOKEN`].
pub const ENV_CREDENTIALS_DIRECTORY: &str = "CREDENTIALS_DIRECTORY";

/// systemd credential holding the AccessKey secret (`LoadCredential=access_key_secret:...`).
pub const CREDENTIAL_ACCESS_KEY_SECRET: &str = "access_key_secret";

/// systemd credential holding the STS security token (`auth_mode = "ststoken"` only).
pub const CREDENTIAL_SECURITY_TOKEN: &str = "security_token";

/// Longest client id Aliyun accepts, including the per-connection suffix.
pub const MAX_CLIENT_ID_LEN: usize = 64;

/// Most AMQP connections one client may open (Aliyun limit).
pub const MAX_CONNECTIONS: usize = 128;

/// Defaults, in one place (the example file, the docs and `Display` agree with these).
pub mod defaults {
    use std::time::Duration;

    /// `[aliyun] port`.
    pub const PORT: u16 = 5671;
    /// `[aliyun] client_id`.
    pub const CLIENT_ID: &str = "receiver";
    /// `[aliyun] connections`.
    pub const CONNECTIONS: usize = 1;
    /// `[aliyun] source_address` (what the official Java demo uses; Aliyun ignores it).
    pub const SOURCE_ADDRESS: &str = "default";
    /// `[aliyun] credit`. Large enough that a batch's fsyncs (spool commit, image files: a few
    /// ms each) do not starve the link: throughput is at most credit / batch time (BENCHMARKS.md).
    pub const CREDIT: u32 = 256;
    /// `[aliyun] idle_timeout`.
    pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
    /// `[aliyun] setup_timeout` (Aliyun closes a connection not authenticated within 15 s).
    pub const SETUP_TIMEOUT: Duration = Duration::from_secs(15);
    /// `[aliyun] reconnect_max`.
    pub const RECONNECT_MAX: Duration = Duration::from_secs(60);
    /// `[assembly] max_image_bytes`: 4 MiB.
    pub const MAX_IMAGE_BYTES: usize = 4 << 20;
    /// `[assembly] max_open`.
    pub const MAX_OPEN: usize = 10_000;
    /// `[assembly] timeout`: 10 minutes.
    pub const ASSEMBLY_TIMEOUT: Duration = Duration::from_secs(600);
    /// `[assembly] redelivery_grace`: Aliyun's 30 s ACK timeout plus its ~1 minute push retry
    /// interval (at most the assembly timeout).
    pub const REDELIVERY_GRACE: Duration =
        Duration::from_millis(crate::assembler::DEFAULT_REDELIVERY_GRACE_MS);
    /// `[assembly] dedup_window`.
    pub const DEDUP_WINDOW: usize = 65_536;
    /// `[assembly] memory_limit`: 8 MiB of open pictures' bytes in memory.
    pub const ASSEMBLY_MEMORY_LIMIT: u64 = 8 << 20;
    /// `[spool] enabled`.
    pub const SPOOL_ENABLED: bool = true;
    /// `[spool] batch_max`.
    pub const BATCH_MAX: usize = 256;
    /// `[spool] batch_delay`.
    pub const BATCH_DELAY: Duration = Duration::from_millis(5);
    /// `[spool] max_bytes`: 1 GiB.
    pub const SPOOL_MAX_BYTES: u64 = 1 << 30;
    /// `[spool] segment_bytes`: 64 MiB (or `max_bytes`, when that is smaller).
    pub const SPOOL_SEGMENT_BYTES: u64 = 64 << 20;
    /// Smallest `[spool] segment_bytes` accepted: 1 MiB.
    pub const SPOOL_MIN_SEGMENT_BYTES: u64 = 1 << 20;
    /// Largest `[spool] segment_bytes` accepted: 1 GiB (the spool's own upper limit).
    pub const SPOOL_MAX_SEGMENT_BYTES: u64 = 1 << 30;
}

// ---------------------------------------------------------------------------------------------
// The validated configuration (the contract other modules build on).
// ---------------------------------------------------------------------------------------------

pub use receiver_protocol::{AuthMode, Secret, SecretSource, SignMethod};

/// `[aliyun]`: the AMQP endpoint and credentials.
#[derive(Debug, Clone, PartialEq)]
pub struct AliyunConfig {
    /// Endpoint host name (also the TLS server name).
    pub host: String,
    /// Port, 5671.
    pub port: u16,
    /// AccessKey id.
    pub access_key_id: String,
    /// AccessKey secret.
    pub access_key_secret: Secret,
    /// Instance id, "" for old public instances.
    pub iot_instance_id: String,
    /// Consumer group id.
    pub consumer_group_id: String,
    /// Client id (<= 64 chars); connection i uses `{client_id}-{i}` when `connections > 1`.
    pub client_id: String,
    /// HMAC for the password.
    pub sign_method: SignMethod,
    /// aksign or ststoken.
    pub auth_mode: AuthMode,
    /// Extra trusted CA (PEM), added to the public roots.
    pub ca_file: Option<PathBuf>,
    /// Parallel connections, each with one receiver link.
    pub connections: usize,
    /// Receiver link source address.
    pub source_address: String,
    /// Link credit (prefetch) per connection.
    pub credit: u32,
    /// Idle time-out; the Open frame advertises a value within Aliyun's 30-300 s.
    pub idle_timeout: Duration,
    /// Time allowed for TCP+TLS+SASL+open+begin+attach.
    pub setup_timeout: Duration,
    /// Longest reconnect backoff.
    pub reconnect_max: Duration,
}

impl AliyunConfig {
    /// The client id connection `conn` (0-based) presents: `client_id` itself with one
    /// connection, `{client_id}-{conn}` with several. Validation guarantees it fits in
    /// [`MAX_CLIENT_ID_LEN`].
    pub fn client_id_for(&self, conn: usize) -> String {
        if self.connections > 1 {
            format!("{}-{conn}", self.client_id)
        } else {
            self.client_id.clone()
        }
    }
}

/// `[assembly]`: reassembly bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct AssemblyConfig {
    /// Largest image, bytes.
    pub max_image_bytes: usize,
    /// Most open pictures.
    pub max_open: usize,
    /// Idle time after which a partial picture is quarantined.
    pub timeout: Duration,
    /// Remembered message ids for duplicate detection.
    pub dedup_window: usize,
    /// Decode finished v1 pictures fully.
    pub decode_check: bool,
    /// Most bytes of open pictures held in memory; the rest goes to spill files in the state
    /// folder (0: no limit, nothing spilled).
    pub memory_limit: u64,
    /// How long a v1 picture that straddles a lost connection waits for the deliveries that were
    /// in flight (0: not at all).
    pub redelivery_grace: Duration,
}

impl Default for AssemblyConfig {
    fn default() -> Self {
        AssemblyConfig {
            max_image_bytes: defaults::MAX_IMAGE_BYTES,
            max_open: defaults::MAX_OPEN,
            timeout: defaults::ASSEMBLY_TIMEOUT,
            dedup_window: defaults::DEDUP_WINDOW,
            decode_check: false,
            memory_limit: defaults::ASSEMBLY_MEMORY_LIMIT,
            redelivery_grace: defaults::REDELIVERY_GRACE,
        }
    }
}

/// `[spool]`: durability (group commit).
#[derive(Debug, Clone, PartialEq)]
pub struct SpoolConfig {
    /// Persist before accepting (default true). `false` = in-memory mode.
    pub enabled: bool,
    /// Most messages per group commit.
    pub batch_max: usize,
    /// Longest wait to fill a batch.
    pub batch_delay: Duration,
    /// Spool size cap, bytes.
    pub max_bytes: u64,
    /// Size at which the spool starts a new segment file, bytes (at most `max_bytes`).
    pub segment_bytes: u64,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            enabled: defaults::SPOOL_ENABLED,
            batch_max: defaults::BATCH_MAX,
            batch_delay: defaults::BATCH_DELAY,
            max_bytes: defaults::SPOOL_MAX_BYTES,
            segment_bytes: defaults::SPOOL_SEGMENT_BYTES,
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable (default on a terminal).
    Text,
    /// One JSON object per line (journald, collectors).
    Json,
}

impl LogFormat {
    /// `text` or `json`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// `[log]`: logging (added to the skeleton's field set).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogConfig {
    /// Output format; `None` = text when stderr is a terminal, JSON otherwise. The command
    /// line's `--log-format` wins over this.
    pub format: Option<LogFormat>,
    /// Verbosity, as `RUST_LOG` directives (`"receiver=debug"`); wins over `RUST_LOG`.
    /// `None` = `RUST_LOG`, else `receiver=info`. Reloaded on SIGHUP.
    pub level: Option<String>,
}

/// The whole validated configuration.
///
/// `Debug` never shows secrets ([`Secret`] redacts itself); `Display` is the redacted TOML-like
/// view printed by `receiver check-config`.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `[aliyun]`.
    pub aliyun: AliyunConfig,
    /// `[output] dir`: finished images land in `<dir>/<productKey>/<deviceName>/`.
    pub output_dir: PathBuf,
    /// `[state] dir`: quarantine and spool.
    pub state_dir: PathBuf,
    /// `[assembly]`.
    pub assembly: AssemblyConfig,
    /// `[spool]`.
    pub spool: SpoolConfig,
    /// `[log]` (added: the skeleton had the `LogFormat` type but no field).
    pub log: LogConfig,
    /// `[metrics]`, `[health]`, `[retention]`, `[hook]`: the operations side (all optional, off
    /// or at their defaults when absent).
    pub ops: crate::ops::OpsConfig,
}

// ---------------------------------------------------------------------------------------------
// Errors.
// ---------------------------------------------------------------------------------------------

/// Why a config file was rejected. Every variant carries the file's path; `Display` reads like a
/// compiler message: `path:line: what is wrong (what is expected)`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read config file: {source}", path.display())]
    Read {
        /// Config file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Not valid TOML.
    #[error("{}:{line}:{column}: invalid TOML: {message}", path.display())]
    Syntax {
        /// Config file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// A key or table the receiver does not know (a typo, usually).
    #[error(
        "{}:{line}: unknown key `{key}` in {} (expected one of {})",
        path.display(),
        table_name(table.as_deref()),
        expected.join(", ")
    )]
    UnknownKey {
        /// Config file.
        path: PathBuf,
        /// 1-based line of the key.
        line: usize,
        /// The table it is in (`None`: top level).
        table: Option<String>,
        /// The unknown key.
        key: String,
        /// What that table accepts.
        expected: Vec<String>,
    },
    /// A required key is absent.
    #[error(
        "{}: missing required key `{key}` in [{table}]: {hint}",
        path.display()
    )]
    Missing {
        /// Config file.
        path: PathBuf,
        /// Its table.
        table: &'static str,
        /// The key.
        key: &'static str,
        /// What to put there.
        hint: String,
    },
    /// A value has the wrong type or is out of range.
    #[error("{}: {}: {message}", at(path, *line), key_name(table, key))]
    Invalid {
        /// Config file.
        path: PathBuf,
        /// 1-based line of the key, when it is in the file.
        line: Option<usize>,
        /// Its table ("" for a top-level key).
        table: String,
        /// The key.
        key: String,
        /// What is wrong and what is expected.
        message: String,
    },
    /// A secret is given by none or by several of its sources.
    #[error("{}: [{table}] {what}: {problem}", at(path, *line))]
    SecretSource {
        /// Config file.
        path: PathBuf,
        /// Line of the first inline/file key involved, if any.
        line: Option<usize>,
        /// Its table.
        table: &'static str,
        /// Which secret (`access key secret`, `security token`).
        what: &'static str,
        /// Names the keys and variables involved.
        problem: String,
    },
    /// A secret (or CA) file named by the config could not be used.
    #[error("{}: {} = {}: {message}", at(path, *line), dotted_key(key), file.display())]
    File {
        /// Config file.
        path: PathBuf,
        /// 1-based line of the key.
        line: Option<usize>,
        /// The key naming the file, as `table.key` (`aliyun.access_key_secret_file`).
        key: &'static str,
        /// The file.
        file: PathBuf,
        /// What is wrong with it.
        message: String,
        /// The I/O error, if any.
        #[source]
        source: Option<std::io::Error>,
    },
}

impl ConfigError {
    /// The config file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            ConfigError::Read { path, .. }
            | ConfigError::Syntax { path, .. }
            | ConfigError::UnknownKey { path, .. }
            | ConfigError::Missing { path, .. }
            | ConfigError::Invalid { path, .. }
            | ConfigError::SecretSource { path, .. }
            | ConfigError::File { path, .. } => path,
        }
    }

    /// The 1-based line the error points at, if any.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Syntax { line, .. } | ConfigError::UnknownKey { line, .. } => Some(*line),
            ConfigError::Invalid { line, .. }
            | ConfigError::SecretSource { line, .. }
            | ConfigError::File { line, .. } => *line,
            ConfigError::Read { .. } | ConfigError::Missing { .. } => None,
        }
    }
}

/// A problem in a config that does not stop the start-up: logged at start and on reload,
/// printed by `check-config`. `Display` reads like an error: `path:line: [table] key: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// Config file.
    pub path: PathBuf,
    /// 1-based line of the key, when it is in the file.
    pub line: Option<usize>,
    /// Its table.
    pub table: String,
    /// The key.
    pub key: String,
    /// What is wrong and what to do.
    pub message: String,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}: {}",
            at(&self.path, self.line),
            key_name(&self.table, &self.key),
            self.message
        )
    }
}

/// A validated configuration and its warnings.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The configuration.
    pub config: Config,
    /// Problems that do not stop the start-up.
    pub warnings: Vec<ConfigWarning>,
}

fn at(path: &Path, line: Option<usize>) -> String {
    match line {
        Some(l) => format!("{}:{l}", path.display()),
        None => path.display().to_string(),
    }
}

/// `table.key` as `[table] key`.
fn dotted_key(key: &str) -> String {
    match key.split_once('.') {
        Some((table, key)) => key_name(table, key),
        None => key.to_owned(),
    }
}

fn key_name(table: &str, key: &str) -> String {
    if table.is_empty() {
        key.to_owned()
    } else {
        format!("[{table}] {key}")
    }
}

fn table_name(table: Option<&str>) -> String {
    match table {
        Some(t) => format!("[{t}]"),
        None => "the top level".to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// Loading.
// ---------------------------------------------------------------------------------------------

impl Config {
    /// Reads, parses and validates the config file at `path`, taking secrets from the process
    /// environment where the file says so.
    ///
    /// Includes the checks against this machine of [`Config::load_checked`]; its warnings are
    /// dropped (use `load_checked` to show them).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_checked(path).map(|l| l.config)
    }

    /// Parses and validates config `text` as if read from `path` (used in messages and to
    /// resolve relative paths). `env` looks up environment variables (tests pass a closure over
    /// a map instead of touching the process environment).
    pub fn from_toml(
        text: &str,
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        Config::from_toml_with(text, path, env, None).map(|l| l.config)
    }

    /// Reads, parses and validates the config file at `path` like [`Config::load`], and also
    /// checks it against this machine ([`HostChecks`]: the hook program exists and is
    /// executable); returns the warnings too (group-readable secret file, inline secret in a
    /// config file others can read, metrics listener on every interface). `check-config` and
    /// start-up use this.
    pub fn load_checked(path: &Path) -> Result<Loaded, ConfigError> {
        use std::os::unix::fs::PermissionsExt;
        let read_err = |source| ConfigError::Read {
            path: path.to_owned(),
            source,
        };
        let mut file = std::fs::File::open(path).map_err(read_err)?;
        let mode = file.metadata().map_err(read_err)?.permissions().mode();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut file, &mut text).map_err(read_err)?;
        let host = HostChecks {
            config_mode: Some(mode & 0o7777),
            path_env: std::env::var_os("PATH"),
        };
        Config::from_toml_checked(&text, path, &|name| std::env::var(name).ok(), host)
    }

    /// [`Config::from_toml`] plus the [`HostChecks`]; returns the warnings too.
    pub fn from_toml_checked(
        text: &str,
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
        host: HostChecks,
    ) -> Result<Loaded, ConfigError> {
        Config::from_toml_with(text, path, env, Some(host))
    }

    fn from_toml_with(
        text: &str,
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
        host: Option<HostChecks>,
    ) -> Result<Loaded, ConfigError> {
        let index = Index::scan(text, path)?;
        index.check_known_keys(path)?;
        let raw: RawConfig = toml::from_str(text).map_err(|e| index.serde_error(path, &e))?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let ctx = Ctx {
            path,
            index: &index,
            env,
            base: absolute(base),
            host,
            warnings: Default::default(),
        };
        let config = ctx.build(raw)?;
        Ok(Loaded {
            config,
            warnings: ctx.warnings.into_inner(),
        })
    }
}

/// Makes `p` absolute against the current folder and removes `.`/`..` lexically.
fn absolute(p: &Path) -> PathBuf {
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
    normalize(&abs)
}

/// Removes `.` and resolves `..` lexically.
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push(c);
                }
            }
            other => out.push(other),
        }
    }
    out
}

// --- Pass 1: where every key is --------------------------------------------------------------

#[derive(Debug)]
struct Entry {
    table: Option<String>,
    key: String,
    key_span: Range<usize>,
    value_span: Range<usize>,
}

#[derive(Debug)]
struct Index {
    line_starts: Vec<usize>,
    entries: Vec<Entry>,
}

/// A top-level value: a table (its keys and their spans) or anything else.
enum Section {
    /// Each key with the span of its value (`None`: toml gave the value no span).
    Table(Vec<(Spanned<String>, Option<Range<usize>>)>),
    Other,
}

impl<'de> Deserialize<'de> for Section {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Section;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any TOML value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Section, A::Error> {
                let mut keys = Vec::new();
                while let Some(k) = map.next_key::<Spanned<String>>()? {
                    // toml gives implicit tables (dotted keys such as `env.FOO = "x"`) no span
                    // and then fails to deserialize them as `Spanned`. No known key holds a
                    // table, so such a key is reported as unknown: keep it, without a value span.
                    let v = map
                        .next_value::<Spanned<IgnoredAny>>()
                        .ok()
                        .map(|v| v.span());
                    keys.push((k, v));
                }
                // toml hands datetimes over as a one-key private map.
                if keys
                    .iter()
                    .any(|(k, _)| k.get_ref().starts_with("$__toml_private"))
                {
                    return Ok(Section::Other);
                }
                Ok(Section::Table(keys))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Section, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Section::Other)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Section, E> {
                Ok(Section::Other)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Section, E> {
                Ok(Section::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Section, E> {
                Ok(Section::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Section, E> {
                Ok(Section::Other)
            }
            fn visit_str<E>(self, _: &str) -> Result<Section, E> {
                Ok(Section::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// The top level as `(key, value)` pairs in file order.
struct TopLevel(Vec<(Spanned<String>, Section)>);

impl<'de> Deserialize<'de> for TopLevel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TopLevel;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a TOML document")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TopLevel, A::Error> {
                let mut entries = Vec::new();
                while let Some(k) = map.next_key::<Spanned<String>>()? {
                    // (Not `Spanned<Section>`: toml then loses the key spans of dotted tables.)
                    entries.push((k, map.next_value::<Section>()?));
                }
                Ok(TopLevel(entries))
            }
        }
        d.deserialize_map(V)
    }
}

impl Index {
    fn scan(text: &str, path: &Path) -> Result<Index, ConfigError> {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        let mut index = Index {
            line_starts,
            entries: Vec::new(),
        };
        let top: TopLevel = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map(|s| index.line_col(s.start)).unwrap_or((1, 1));
            ConfigError::Syntax {
                path: path.to_owned(),
                line,
                column,
                message: e.message().trim().to_owned(),
            }
        })?;
        for (key, value) in top.0 {
            let key_span = key.span();
            let table = key.into_inner();
            if let Section::Table(keys) = value {
                for (k, v) in keys {
                    let key_span = k.span();
                    index.entries.push(Entry {
                        table: Some(table.clone()),
                        value_span: v.unwrap_or_else(|| key_span.clone()),
                        key_span,
                        key: k.into_inner(),
                    });
                }
            }
            index.entries.push(Entry {
                table: None,
                key: table,
                value_span: key_span.clone(),
                key_span,
            });
        }
        index.entries.sort_by_key(|e| e.key_span.start);
        Ok(index)
    }

    /// 1-based (line, column) of a byte offset.
    fn line_col(&self, offset: usize) -> (usize, usize) {
        let line = self.line_starts.partition_point(|&s| s <= offset).max(1);
        (line, offset - self.line_starts[line - 1] + 1)
    }

    /// The line of `table.key`, if the file has it.
    fn line_of(&self, table: &str, key: &str) -> Option<usize> {
        self.entries
            .iter()
            .find(|e| e.table.as_deref() == Some(table) && e.key == key)
            .map(|e| self.line_col(e.key_span.start).0)
    }

    /// The line where top-level `table` is first named (its `[table]` header, usually).
    fn line_of_table(&self, table: &str) -> Option<usize> {
        self.entries
            .iter()
            .find(|e| e.table.is_none() && e.key == table)
            .map(|e| self.line_col(e.key_span.start).0)
    }

    /// Rejects keys the raw structs do not have.
    fn check_known_keys(&self, path: &Path) -> Result<(), ConfigError> {
        let tables = known_keys();
        for e in &self.entries {
            let allowed: Vec<String> = match &e.table {
                None => tables.iter().map(|(t, _)| format!("[{t}]")).collect(),
                Some(t) => match tables.iter().find(|(name, _)| name == t) {
                    Some((_, fields)) => fields.iter().map(|f| (*f).to_owned()).collect(),
                    None => continue, // reported as an unknown top-level key
                },
            };
            let known = match &e.table {
                None => tables.iter().any(|(t, _)| *t == e.key),
                Some(_) => allowed.contains(&e.key),
            };
            if !known {
                return Err(ConfigError::UnknownKey {
                    path: path.to_owned(),
                    line: self.line_col(e.key_span.start).0,
                    table: e.table.clone(),
                    key: e.key.clone(),
                    expected: allowed,
                });
            }
        }
        Ok(())
    }

    /// Turns a deserialization error into "line N: [table] key: message".
    fn serde_error(&self, path: &Path, e: &toml::de::Error) -> ConfigError {
        let message = e.message().trim().to_owned();
        let Some(span) = e.span() else {
            return ConfigError::Syntax {
                path: path.to_owned(),
                line: 1,
                column: 1,
                message,
            };
        };
        let (line, column) = self.line_col(span.start);
        // The innermost entry whose key or value covers the error, else the last key before it
        // on the same line (`aliyun = 1`: top-level values have no span of their own).
        let hit = self
            .entries
            .iter()
            .filter(|en| {
                en.value_span.contains(&span.start)
                    || en.key_span.contains(&span.start)
                    || en.value_span == span
            })
            .min_by_key(|en| en.value_span.len())
            .or_else(|| {
                self.entries
                    .iter()
                    .filter(|en| {
                        en.key_span.start <= span.start
                            && self.line_col(en.key_span.start).0 == line
                    })
                    .max_by_key(|en| en.key_span.start)
            });
        // serde's names for integer types (and the operations sections' untagged size type)
        // mean little to a user.
        let message = message
            .replace("expected i64", "expected an integer")
            .replace("expected u64", "expected an integer")
            .replace("expected usize", "expected a positive integer")
            .replace(
                "data did not match any variant of untagged enum ByteSize",
                "invalid size; expected an integer number of bytes or a string like \"50 GiB\" \
                 or \"500MB\"",
            );
        match hit {
            Some(en) => ConfigError::Invalid {
                path: path.to_owned(),
                line: Some(line),
                table: en.table.clone().unwrap_or_default(),
                key: en.key.clone(),
                message,
            },
            None => ConfigError::Syntax {
                path: path.to_owned(),
                line,
                column,
                message,
            },
        }
    }
}

/// Every table and the keys it accepts, in file order, read from the serde derives of the
/// structs the file is deserialized into, so the list cannot drift from what loading accepts
/// (docs and tests use it to check every key is documented).
pub fn known_keys() -> [(&'static str, &'static [&'static str]); 10] {
    [
        ("aliyun", fields_of::<RawAliyun>()),
        ("output", fields_of::<RawDir>()),
        ("state", fields_of::<RawDir>()),
        ("assembly", fields_of::<RawAssembly>()),
        ("spool", fields_of::<RawSpool>()),
        ("log", fields_of::<RawLog>()),
        ("metrics", fields_of::<RawMetricsConfig>()),
        ("health", fields_of::<RawHealthConfig>()),
        ("retention", fields_of::<RawRetentionConfig>()),
        ("hook", fields_of::<RawHookConfig>()),
    ]
}

/// The field names a `#[derive(Deserialize)]` struct accepts.
fn fields_of<T: de::DeserializeOwned>() -> &'static [&'static str] {
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

// --- Pass 2: raw structs ---------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    aliyun: RawAliyun,
    #[serde(default)]
    output: RawDir,
    #[serde(default)]
    state: RawDir,
    #[serde(default)]
    assembly: RawAssembly,
    #[serde(default)]
    spool: RawSpool,
    #[serde(default)]
    log: RawLog,
    // The operations sections: their raw structs live in `crate::ops` (each validates itself);
    // they are listed one by one because `deny_unknown_fields` does not work with `flatten`.
    #[serde(default)]
    metrics: RawMetricsConfig,
    #[serde(default)]
    health: RawHealthConfig,
    #[serde(default)]
    retention: RawRetentionConfig,
    #[serde(default)]
    hook: RawHookConfig,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAliyun {
    host: Option<String>,
    port: Option<i64>,
    access_key_id: Option<String>,
    access_key_secret: Option<String>,
    access_key_secret_file: Option<String>,
    iot_instance_id: Option<String>,
    consumer_group_id: Option<String>,
    client_id: Option<String>,
    sign_method: Option<String>,
    auth_mode: Option<String>,
    security_token: Option<String>,
    security_token_file: Option<String>,
    ca_file: Option<String>,
    connections: Option<i64>,
    source_address: Option<String>,
    credit: Option<i64>,
    idle_timeout: Option<HumanDuration>,
    setup_timeout: Option<HumanDuration>,
    reconnect_max: Option<HumanDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDir {
    dir: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAssembly {
    max_image_bytes: Option<ByteSize>,
    max_open: Option<i64>,
    timeout: Option<HumanDuration>,
    dedup_window: Option<i64>,
    decode_check: Option<bool>,
    memory_limit: Option<ByteSize>,
    redelivery_grace: Option<HumanDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpool {
    enabled: Option<bool>,
    batch_max: Option<i64>,
    batch_delay: Option<HumanDuration>,
    max_bytes: Option<ByteSize>,
    segment_bytes: Option<ByteSize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    format: Option<String>,
    level: Option<String>,
}

/// A humantime duration string (`"60s"`, `"10m"`, `"1h 30m"`, `"5ms"`).
#[derive(Debug, Clone, Copy)]
struct HumanDuration(Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string like \"60s\", \"10m\" or \"5ms\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<HumanDuration, E> {
                humantime::parse_duration(s.trim())
                    .map(HumanDuration)
                    .map_err(|e| {
                        E::custom(format!(
                            "invalid duration {s:?} ({e}); expected a duration like \"60s\", \
                             \"10m\" or \"5ms\""
                        ))
                    })
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<HumanDuration, E> {
                Err(E::custom(format!(
                    "a bare number ({n}) has no unit; expected a duration string like \"{n}s\" \
                     or \"{n}ms\""
                )))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<HumanDuration, E> {
                Err(E::custom(format!(
                    "a bare number ({n}) has no unit; expected a duration string like \"60s\""
                )))
            }
        }
        d.deserialize_any(V)
    }
}

/// A byte count: an integer, or a string with a unit (`"4 MiB"`, `"512KiB"`, `"1GB"`).
#[derive(Debug, Clone, Copy)]
struct ByteSize(u64);

impl ByteSize {
    fn parse(s: &str) -> Option<u64> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let num: u64 = num.parse().ok()?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1_000,
            "m" | "mb" => 1_000_000,
            "g" | "gb" => 1_000_000_000,
            "kib" => 1 << 10,
            "mib" => 1 << 20,
            "gib" => 1 << 30,
            "tib" => 1 << 40,
            "tb" => 1_000_000_000_000,
            _ => return None,
        };
        num.checked_mul(mult)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte count like 4194304 or \"4 MiB\"")
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<ByteSize, E> {
                u64::try_from(n).map(ByteSize).map_err(|_| {
                    E::custom(format!(
                        "{n} is negative; expected a byte count like \"4 MiB\""
                    ))
                })
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(n))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<ByteSize, E> {
                ByteSize::parse(s).map(ByteSize).ok_or_else(|| {
                    E::custom(format!(
                        "invalid size {s:?}; expected an integer number of bytes or a string like \
                         \"4 MiB\", \"512 KiB\", \"1 GiB\" (KB/MB/GB are powers of 1000)"
                    ))
                })
            }
        }
        d.deserialize_any(V)
    }
}

// --- Pass 3: validation ----------------------------------------------------------------------

struct Ctx<'a> {
    path: &'a Path,
    index: &'a Index,
    env: &'a dyn Fn(&str) -> Option<String>,
    /// The config file's folder, absolute: relative paths are resolved against it.
    base: PathBuf,
    /// Checks against this machine beyond the files the config names (`None`: skipped).
    host: Option<HostChecks>,
    /// Problems worth telling that do not stop the start-up.
    warnings: std::cell::RefCell<Vec<ConfigWarning>>,
}

/// Facts about the machine for [`Config::from_toml_checked`]: with them, loading also checks
/// that the hook program can be run and warns about an inline secret in a config file others
/// may read. `check-config` and start-up use them; [`Config::from_toml`] does not.
#[derive(Debug, Clone, Default)]
pub struct HostChecks {
    /// Permission bits of the config file, when known.
    pub config_mode: Option<u32>,
    /// `PATH` to find a hook program named without a `/` in (the hook gets the same `PATH`).
    pub path_env: Option<std::ffi::OsString>,
}

/// The ways one secret may be given.
#[derive(Clone, Copy)]
struct SecretSpec {
    /// For messages: `access key secret`, `security token`.
    what: &'static str,
    /// `[aliyun]` key holding it inline.
    inline_key: &'static str,
    /// `[aliyun]` key naming a file holding it.
    file_key: &'static str,
    /// The same as `table.key`.
    file_key_dotted: &'static str,
    /// Environment variable holding it.
    env_var: &'static str,
    /// systemd credential name (a file in `$CREDENTIALS_DIRECTORY`), used when none of the
    /// others is given.
    credential: &'static str,
}

/// Characters that would break the `clientId|k=v,k=v|` AMQP user name.
fn username_breaker(c: char) -> bool {
    matches!(c, '|' | ',' | '=') || c.is_whitespace() || c.is_control()
}

impl Ctx<'_> {
    fn warn(&self, table: &str, key: &str, message: impl Into<String>) {
        self.warnings.borrow_mut().push(ConfigWarning {
            path: self.path.to_owned(),
            line: self.index.line_of(table, key),
            table: table.to_owned(),
            key: key.to_owned(),
            message: message.into(),
        });
    }

    /// Reads the secret in `file`, named by `[table] key`, under the rules of
    /// [`secret_file::read`] (every secret file goes through here).
    fn secret_file(&self, dotted: &'static str, file: &Path) -> Result<String, ConfigError> {
        let (table, key) = dotted.split_once('.').unwrap_or(("", dotted));
        match secret_file::read(file, secret_file::Permissions::Check) {
            Ok(s) => {
                if let Some(w) = s.warning {
                    self.warn(table, key, format!("{}: {w}", file.display()));
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
                    line: self.index.line_of(table, key),
                    key: dotted,
                    file: file.to_owned(),
                    message: e.to_string(),
                    source,
                })
            }
        }
    }

    /// An inline secret makes the config file itself secret: warn when others may read it.
    fn warn_inline_secret(&self, table: &str, key: &str) {
        let Some(mode) = self.host.as_ref().and_then(|h| h.config_mode) else {
            return;
        };
        if mode & 0o004 != 0 {
            self.warn(
                table,
                key,
                format!(
                    "the secret is inline and {} is readable by everyone (mode {mode:04o}); run                      `chmod 600 {}`, or move the secret to a file (`{key}_file`) or a systemd                      credential",
                    self.path.display(),
                    self.path.display()
                ),
            );
        }
    }

    fn invalid(&self, table: &str, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_owned(),
            line: self.index.line_of(table, key),
            table: table.to_owned(),
            key: key.to_owned(),
            message: message.into(),
        }
    }

    fn missing(&self, table: &'static str, key: &'static str, hint: &str) -> ConfigError {
        ConfigError::Missing {
            path: self.path.to_owned(),
            table,
            key,
            hint: hint.to_owned(),
        }
    }

    fn resolve(&self, p: &str) -> PathBuf {
        normalize(&self.base.join(p))
    }

    /// An integer key within `lo..=hi`.
    fn int(
        &self,
        table: &str,
        key: &str,
        v: Option<i64>,
        default: i64,
        (lo, hi): (i64, i64),
        why: &str,
    ) -> Result<i64, ConfigError> {
        let v = v.unwrap_or(default);
        if (lo..=hi).contains(&v) {
            Ok(v)
        } else {
            Err(self.invalid(
                table,
                key,
                format!("{v} is out of range; expected {lo}..={hi}{why}"),
            ))
        }
    }

    /// A duration key within `lo..=hi`.
    fn duration(
        &self,
        table: &str,
        key: &str,
        v: Option<HumanDuration>,
        default: Duration,
        (lo, hi): (Duration, Duration),
        why: &str,
    ) -> Result<Duration, ConfigError> {
        let v = v.map_or(default, |d| d.0);
        if (lo..=hi).contains(&v) {
            Ok(v)
        } else {
            Err(self.invalid(
                table,
                key,
                format!(
                    "\"{}\" is out of range; expected \"{}\" to \"{}\"{why}",
                    humantime::format_duration(v),
                    humantime::format_duration(lo),
                    humantime::format_duration(hi)
                ),
            ))
        }
    }

    /// A string used inside the AMQP user name: no `|`, `,`, `=`, whitespace or control chars.
    fn ident(&self, table: &str, key: &str, v: &str) -> Result<(), ConfigError> {
        match v.chars().find(|&c| username_breaker(c)) {
            Some(c) => Err(self.invalid(
                table,
                key,
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
    fn secret(
        &self,
        spec: &SecretSpec,
        inline: Option<String>,
        file: Option<String>,
        required_because: &str,
    ) -> Result<Option<Secret>, ConfigError> {
        const TABLE: &str = "aliyun";
        let SecretSpec {
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
        let line = self
            .index
            .line_of(TABLE, inline_key)
            .or_else(|| self.index.line_of(TABLE, file_key));
        let err = |problem: String| ConfigError::SecretSource {
            path: self.path.to_owned(),
            line,
            table: TABLE,
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
            self.warn_inline_secret(TABLE, inline_key);
            Secret::with_source(v, SecretSource::Inline)
        } else if let Some(f) = file {
            let file = self.resolve(&f);
            let value = self.secret_file(spec.file_key_dotted, &file)?;
            Secret::with_source(value, SecretSource::File(file))
        } else if let Some(v) = env {
            Secret::with_source(v, SecretSource::Env(env_var.to_owned()))
        } else if let Some(file) = credentials_dir
            .as_deref()
            .map(|d| absolute(&Path::new(d).join(credential)))
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

    fn build(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let aliyun = self.aliyun(raw.aliyun)?;
        let (output_dir, state_dir) = self.dirs(raw.output.dir, raw.state.dir)?;
        let assembly = self.assembly(raw.assembly)?;
        let spool = self.spool(raw.spool, &assembly)?;
        let level = match raw.log.level {
            None => None,
            Some(l) => match crate::logging::parse_filter(&l) {
                Ok(_) => Some(l.trim().to_owned()),
                Err(e) => {
                    return Err(self.invalid(
                        "log",
                        "level",
                        format!(
                            "{l:?} is not a log filter ({e}); expected RUST_LOG directives such \
                             as \"receiver=info\" or \"receiver=debug,fe2o3_amqp=info\""
                        ),
                    ))
                }
            },
        };
        let log = match raw.log.format {
            None => LogConfig {
                format: None,
                level,
            },
            Some(f) => match f.to_ascii_lowercase().as_str() {
                "text" => LogConfig {
                    format: Some(LogFormat::Text),
                    level,
                },
                "json" => LogConfig {
                    format: Some(LogFormat::Json),
                    level,
                },
                _ => {
                    return Err(self.invalid(
                        "log",
                        "format",
                        format!("{f:?} is not a log format; expected \"text\" or \"json\""),
                    ))
                }
            },
        };
        let ops = self.ops(RawOpsConfig {
            metrics: raw.metrics,
            health: raw.health,
            retention: raw.retention,
            hook: raw.hook,
        })?;
        Ok(Config {
            aliyun,
            output_dir,
            state_dir,
            assembly,
            spool,
            log,
            ops,
        })
    }

    /// Validates the operations sections; their errors name `section.key`, which becomes the
    /// usual `path:line: [section] key: message` (the line of the section when the key is absent,
    /// e.g. a `[hook]` with settings but no `command`).
    fn ops(&self, raw: RawOpsConfig) -> Result<OpsConfig, ConfigError> {
        let ops = self.ops_validate(raw)?;
        if let Some(addr) = ops.metrics.listen.filter(|a| a.ip().is_unspecified()) {
            self.warn(
                "metrics",
                "listen",
                format!(
                    "{addr} listens on every network interface and the listener has no \
                     authentication; use a loopback or private address (e.g. \"127.0.0.1:{}\") \
                     or firewall the port",
                    addr.port()
                ),
            );
        }
        if let (Some(hook), Some(host)) = (&ops.hook, &self.host) {
            crate::ops::hook::check_program(&hook.command[0], host.path_env.as_deref())
                .map_err(|why| self.invalid("hook", "command", why))?;
        }
        Ok(ops)
    }

    fn ops_validate(&self, raw: RawOpsConfig) -> Result<OpsConfig, ConfigError> {
        raw.validate().map_err(|e| match e {
            OpsConfigError::Invalid { key, why } => {
                let (table, key) = key.split_once('.').unwrap_or(("", key));
                let mut err = self.invalid(table, key, why);
                if let ConfigError::Invalid {
                    line: line @ None, ..
                } = &mut err
                {
                    *line = self.index.line_of_table(table);
                }
                err
            }
        })
    }

    fn aliyun(&self, r: RawAliyun) -> Result<AliyunConfig, ConfigError> {
        const T: &str = "aliyun";
        let host = r.host.ok_or_else(|| {
            self.missing(
                T,
                "host",
                "the AMQP endpoint from the console (instance details -> AMQP), e.g. \
                 \"iot-06z00xxxxxxx.amqp.iothub.aliyuncs.com\"",
            )
        })?;
        self.host(&host)?;
        let port = self.int(T, "port", r.port, defaults::PORT.into(), (1, 65535), "")?;
        let access_key_id = r
            .access_key_id
            .ok_or_else(|| self.missing(T, "access_key_id", "the AccessKey id (\"LTAI...\")"))?;
        if access_key_id.is_empty() {
            return Err(self.invalid(T, "access_key_id", "is empty; expected the AccessKey id"));
        }
        self.ident(T, "access_key_id", &access_key_id)?;
        let access_key_secret = self
            .secret(
                &SecretSpec {
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
        let iot_instance_id = r.iot_instance_id.ok_or_else(|| {
            self.missing(
                T,
                "iot_instance_id",
                "the instance id from the console, e.g. \"iot-06z00xxxxxxx\"; \"\" for a legacy \
                 public instance without one",
            )
        })?;
        self.ident(T, "iot_instance_id", &iot_instance_id)?;
        let consumer_group_id = r.consumer_group_id.ok_or_else(|| {
            self.missing(
                T,
                "consumer_group_id",
                "the consumer group to receive from (every account has \"DEFAULT_GROUP\"); one \
                 receiver per group",
            )
        })?;
        if consumer_group_id.is_empty() {
            return Err(self.invalid(T, "consumer_group_id", "is empty; expected a group id"));
        }
        self.ident(T, "consumer_group_id", &consumer_group_id)?;

        let connections = self.int(
            T,
            "connections",
            r.connections,
            defaults::CONNECTIONS as i64,
            (1, MAX_CONNECTIONS as i64),
            " (Aliyun allows 128 connections per client)",
        )? as usize;
        let client_id = r
            .client_id
            .unwrap_or_else(|| defaults::CLIENT_ID.to_owned());
        if client_id.is_empty() {
            return Err(self.invalid(T, "client_id", "is empty; expected e.g. \"receiver-01\""));
        }
        if !client_id.is_ascii() {
            return Err(self.invalid(
                T,
                "client_id",
                format!("{client_id:?} is not ASCII; expected e.g. \"receiver-01\""),
            ));
        }
        self.ident(T, "client_id", &client_id)?;
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
            return Err(self.invalid(T, "client_id", msg));
        }

        let sign_method = match r.sign_method {
            None => SignMethod::HmacSha1,
            Some(s) => SignMethod::parse(&s).ok_or_else(|| {
                self.invalid(
                    T,
                    "sign_method",
                    format!(
                        "{s:?} is not a sign method; expected \"hmacsha1\", \"hmacsha256\" or \
                         \"hmacmd5\""
                    ),
                )
            })?,
        };

        let auth_mode = r.auth_mode.unwrap_or_else(|| "aksign".into());
        let auth_mode = match auth_mode.to_ascii_lowercase().as_str() {
            "aksign" => {
                for key in ["security_token", "security_token_file"] {
                    let set = match key {
                        "security_token" => r.security_token.is_some(),
                        _ => r.security_token_file.is_some(),
                    };
                    if set {
                        return Err(self.invalid(
                            T,
                            key,
                            "is set but auth_mode is \"aksign\"; expected auth_mode = \
                             \"ststoken\" to use an STS security token, or remove the key",
                        ));
                    }
                }
                AuthMode::AkSign
            }
            "ststoken" => {
                let security_token = self
                    .secret(
                        &SecretSpec {
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
            _ => {
                return Err(self.invalid(
                    T,
                    "auth_mode",
                    format!(
                        "{auth_mode:?} is not an auth mode; expected \"aksign\" or \"ststoken\""
                    ),
                ))
            }
        };

        let ca_file = match r.ca_file {
            None => None,
            Some(f) => Some(self.ca_file(&f)?),
        };
        let source_address = r
            .source_address
            .unwrap_or_else(|| defaults::SOURCE_ADDRESS.to_owned());
        if source_address.is_empty() {
            return Err(self.invalid(
                T,
                "source_address",
                "is empty; expected a link source address (Aliyun ignores it; \"default\" works)",
            ));
        }
        let credit = self.int(
            T,
            "credit",
            r.credit,
            defaults::CREDIT.into(),
            (1, 1000),
            " (every delivered message must be settled within Aliyun's 30 s ACK timeout)",
        )? as u32;
        let idle_timeout = self.duration(
            T,
            "idle_timeout",
            r.idle_timeout,
            defaults::IDLE_TIMEOUT,
            (Duration::from_secs(30), Duration::from_secs(300)),
            " (Aliyun requires an idle time-out of 30-300 s)",
        )?;
        let setup_timeout = self.duration(
            T,
            "setup_timeout",
            r.setup_timeout,
            defaults::SETUP_TIMEOUT,
            (Duration::from_secs(1), Duration::from_secs(60)),
            " (Aliyun drops a connection not authenticated within 15 s)",
        )?;
        let reconnect_max = self.duration(
            T,
            "reconnect_max",
            r.reconnect_max,
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

    fn host(&self, host: &str) -> Result<(), ConfigError> {
        const T: &str = "aliyun";
        if host.is_empty() {
            return Err(self.invalid(
                T,
                "host",
                "is empty; expected the AMQP endpoint, e.g. \
                 \"iot-06z00xxxxxxx.amqp.iothub.aliyuncs.com\"",
            ));
        }
        if host.contains("://") {
            return Err(self.invalid(
                T,
                "host",
                format!(
                    "{host:?} has a URL scheme; expected a bare host name (port goes in `port`)"
                ),
            ));
        }
        if host.parse::<std::net::IpAddr>().is_err() && host.contains(['/', ':']) {
            return Err(self.invalid(
                T,
                "host",
                format!(
                    "{host:?} has a port or path; expected a bare host name (port goes in `port`)"
                ),
            ));
        }
        if rustls::pki_types::ServerName::try_from(host).is_err() {
            return Err(self.invalid(
                T,
                "host",
                format!("{host:?} is not a valid DNS name or IP address"),
            ));
        }
        Ok(())
    }

    fn ca_file(&self, f: &str) -> Result<PathBuf, ConfigError> {
        let file = self.resolve(f);
        let err = |message: String, source: Option<std::io::Error>| ConfigError::File {
            path: self.path.to_owned(),
            line: self.index.line_of("aliyun", "ca_file"),
            key: "aliyun.ca_file",
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

    fn dirs(
        &self,
        output: Option<String>,
        state: Option<String>,
    ) -> Result<(PathBuf, PathBuf), ConfigError> {
        let data = default_data_dir();
        let pick = |table: &'static str, v: Option<String>, sub: &str| match v {
            Some(d) if d.is_empty() => Err(self.invalid(
                table,
                "dir",
                "is empty; expected a folder path (or remove the key for the default)",
            )),
            Some(d) => Ok(self.resolve(&d)),
            None => data.as_ref().map(|d| d.join(sub)).ok_or_else(|| {
                self.missing(
                    table,
                    "dir",
                    "no home folder to derive a default from; set a folder path",
                )
            }),
        };
        let output_dir = pick("output", output, "images")?;
        let state_dir = pick("state", state, "state")?;
        // Where each folder really is (symlinks followed as creating it would), before anything
        // is created: a folder that is a file or a dangling symlink is named here, not met as
        // "File exists" at run time.
        let real = |table: &str, dir: &Path| {
            crate::paths::resolve_dir(dir).map_err(|e| {
                self.invalid(
                    table,
                    "dir",
                    format!(
                        "{}: {e}; expected a folder or a path where one can be created",
                        dir.display()
                    ),
                )
            })
        };
        let real_output = real("output", &output_dir)?;
        let real_state = real("state", &state_dir)?;
        let clash = crate::paths::nested(&output_dir, &state_dir)
            || crate::paths::nested(&real_output, &real_state);
        if clash {
            let via = if real_state != state_dir || real_output != output_dir {
                format!(
                    " (after following symlinks: {} and {})",
                    real_state.display(),
                    real_output.display()
                )
            } else {
                String::new()
            };
            return Err(self.invalid(
                "state",
                "dir",
                format!(
                    "{} and [output] dir {} are the same folder or one contains the other{via}; \
                     expected two separate folders (the output folder holds only finished images)",
                    state_dir.display(),
                    output_dir.display()
                ),
            ));
        }
        Ok((output_dir, state_dir))
    }

    fn assembly(&self, r: RawAssembly) -> Result<AssemblyConfig, ConfigError> {
        const T: &str = "assembly";
        let max_image_bytes = r
            .max_image_bytes
            .map_or(defaults::MAX_IMAGE_BYTES as u64, |b| b.0);
        if !(1024..=1 << 30).contains(&max_image_bytes) {
            return Err(self.invalid(
                T,
                "max_image_bytes",
                format!("{max_image_bytes} is out of range; expected \"1 KiB\" to \"1 GiB\""),
            ));
        }
        let max_open = self.int(
            T,
            "max_open",
            r.max_open,
            defaults::MAX_OPEN as i64,
            (1, 10_000_000),
            "",
        )? as usize;
        let timeout = self.duration(
            T,
            "timeout",
            r.timeout,
            defaults::ASSEMBLY_TIMEOUT,
            (Duration::from_secs(1), Duration::from_secs(86_400)),
            "",
        )?;
        let dedup_window = self.int(
            T,
            "dedup_window",
            r.dedup_window,
            defaults::DEDUP_WINDOW as i64,
            (1, 100_000_000),
            "",
        )? as usize;
        let memory_limit = r
            .memory_limit
            .map_or(defaults::ASSEMBLY_MEMORY_LIMIT, |b| b.0);
        if memory_limit != 0 && !(1 << 20..=1 << 40).contains(&memory_limit) {
            return Err(self.invalid(
                T,
                "memory_limit",
                format!("{memory_limit} is out of range; expected 0 (no limit) or \"1 MiB\" to \"1 TiB\""),
            ));
        }
        let redelivery_grace = self.duration(
            T,
            "redelivery_grace",
            r.redelivery_grace,
            defaults::REDELIVERY_GRACE.min(timeout),
            (Duration::ZERO, timeout),
            " (at most [assembly] timeout)",
        )?;
        Ok(AssemblyConfig {
            max_image_bytes: max_image_bytes as usize,
            max_open,
            timeout,
            dedup_window,
            decode_check: r.decode_check.unwrap_or(false),
            memory_limit,
            redelivery_grace,
        })
    }

    fn spool(&self, r: RawSpool, assembly: &AssemblyConfig) -> Result<SpoolConfig, ConfigError> {
        const T: &str = "spool";
        let enabled = r.enabled.unwrap_or(defaults::SPOOL_ENABLED);
        let batch_max = self.int(
            T,
            "batch_max",
            r.batch_max,
            defaults::BATCH_MAX as i64,
            (1, 65_536),
            "",
        )? as usize;
        let batch_delay = self.duration(
            T,
            "batch_delay",
            r.batch_delay,
            defaults::BATCH_DELAY,
            (Duration::ZERO, Duration::from_secs(1)),
            " (messages wait this long before they are acknowledged)",
        )?;
        let max_bytes = r.max_bytes.map_or(defaults::SPOOL_MAX_BYTES, |b| b.0);
        let min = 2 * assembly.max_image_bytes as u64;
        if enabled && max_bytes < min {
            return Err(self.invalid(
                T,
                "max_bytes",
                format!(
                    "{max_bytes} is less than twice [assembly] max_image_bytes ({min}); expected \
                     room for at least one picture sent as hex"
                ),
            ));
        }
        let segment_bytes = match r.segment_bytes {
            // The default never exceeds the cap: lowering max_bytes alone is enough.
            None => defaults::SPOOL_SEGMENT_BYTES.min(max_bytes),
            Some(ByteSize(n))
                if !(defaults::SPOOL_MIN_SEGMENT_BYTES..=defaults::SPOOL_MAX_SEGMENT_BYTES)
                    .contains(&n) =>
            {
                return Err(self.invalid(
                    T,
                    "segment_bytes",
                    format!(
                        "{n} is out of range; expected \"1 MiB\" to \"1 GiB\", and at most \
                         max_bytes"
                    ),
                ))
            }
            Some(ByteSize(n)) if enabled && n > max_bytes => {
                return Err(self.invalid(
                    T,
                    "segment_bytes",
                    format!(
                        "{n} is more than max_bytes ({max_bytes}); expected a segment that fits \
                         in the spool, \"1 MiB\" to max_bytes"
                    ),
                ))
            }
            Some(ByteSize(n)) => n,
        };
        Ok(SpoolConfig {
            enabled,
            batch_max,
            batch_delay,
            max_bytes,
            segment_bytes,
        })
    }
}

/// Where images and state go when the config names no folder: the platform data folder
/// (`$XDG_DATA_HOME/receiver`, usually `~/.local/share/receiver`), or `None` without a home.
pub fn default_data_dir() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "receiver").map(|d| d.data_dir().to_owned())
}

// ---------------------------------------------------------------------------------------------
// Redacted, TOML-like view.
// ---------------------------------------------------------------------------------------------

/// A TOML string literal.
fn q(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn qp(p: &Path) -> String {
    q(&p.to_string_lossy())
}

fn dur(d: Duration) -> String {
    q(&humantime::format_duration(d).to_string())
}

fn size(n: u64) -> String {
    for (unit, m) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if n >= m && n % m == 0 {
            return q(&format!("{} {unit}", n / m));
        }
    }
    n.to_string()
}

impl fmt::Display for Config {
    /// The effective configuration with defaults applied and secrets redacted, as TOML with
    /// comments (`# default`, where a secret came from).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn line(
            f: &mut fmt::Formatter<'_>,
            key: &str,
            value: String,
            is_default: bool,
        ) -> fmt::Result {
            if is_default {
                writeln!(f, "{key} = {value}  # default")
            } else {
                writeln!(f, "{key} = {value}")
            }
        }
        fn secret(f: &mut fmt::Formatter<'_>, key: &str, s: &Secret) -> fmt::Result {
            match s.source() {
                Some(src) => writeln!(f, "{key} = \"<redacted>\"  # ({src})"),
                None => writeln!(f, "{key} = \"<redacted>\""),
            }
        }
        let a = &self.aliyun;
        writeln!(f, "[aliyun]")?;
        line(f, "host", q(&a.host), false)?;
        line(f, "port", a.port.to_string(), a.port == defaults::PORT)?;
        line(f, "access_key_id", q(&a.access_key_id), false)?;
        secret(f, "access_key_secret", &a.access_key_secret)?;
        line(f, "iot_instance_id", q(&a.iot_instance_id), false)?;
        line(f, "consumer_group_id", q(&a.consumer_group_id), false)?;
        line(
            f,
            "client_id",
            q(&a.client_id),
            a.client_id == defaults::CLIENT_ID,
        )?;
        if a.connections > 1 {
            writeln!(
                f,
                "# connection client ids: {} .. {}",
                a.client_id_for(0),
                a.client_id_for(a.connections - 1)
            )?;
        }
        line(
            f,
            "sign_method",
            q(a.sign_method.as_str()),
            a.sign_method == SignMethod::HmacSha1,
        )?;
        line(
            f,
            "auth_mode",
            q(a.auth_mode.as_str()),
            a.auth_mode == AuthMode::AkSign,
        )?;
        if let AuthMode::StsToken { security_token } = &a.auth_mode {
            secret(f, "security_token", security_token)?;
        }
        match &a.ca_file {
            Some(p) => line(f, "ca_file", qp(p), false)?,
            None => writeln!(f, "# ca_file not set: public root certificates only")?,
        }
        line(
            f,
            "connections",
            a.connections.to_string(),
            a.connections == defaults::CONNECTIONS,
        )?;
        line(
            f,
            "source_address",
            q(&a.source_address),
            a.source_address == defaults::SOURCE_ADDRESS,
        )?;
        line(
            f,
            "credit",
            a.credit.to_string(),
            a.credit == defaults::CREDIT,
        )?;
        line(
            f,
            "idle_timeout",
            dur(a.idle_timeout),
            a.idle_timeout == defaults::IDLE_TIMEOUT,
        )?;
        line(
            f,
            "setup_timeout",
            dur(a.setup_timeout),
            a.setup_timeout == defaults::SETUP_TIMEOUT,
        )?;
        line(
            f,
            "reconnect_max",
            dur(a.reconnect_max),
            a.reconnect_max == defaults::RECONNECT_MAX,
        )?;

        let data = default_data_dir();
        let is_default_dir = |p: &Path, sub: &str| data.as_ref().is_some_and(|d| d.join(sub) == p);
        writeln!(f, "\n[output]")?;
        line(
            f,
            "dir",
            qp(&self.output_dir),
            is_default_dir(&self.output_dir, "images"),
        )?;
        writeln!(f, "\n[state]")?;
        line(
            f,
            "dir",
            qp(&self.state_dir),
            is_default_dir(&self.state_dir, "state"),
        )?;

        let (s, d) = (&self.assembly, AssemblyConfig::default());
        writeln!(f, "\n[assembly]")?;
        line(
            f,
            "max_image_bytes",
            size(s.max_image_bytes as u64),
            s.max_image_bytes == d.max_image_bytes,
        )?;
        line(
            f,
            "max_open",
            s.max_open.to_string(),
            s.max_open == d.max_open,
        )?;
        line(f, "timeout", dur(s.timeout), s.timeout == d.timeout)?;
        line(
            f,
            "dedup_window",
            s.dedup_window.to_string(),
            s.dedup_window == d.dedup_window,
        )?;
        line(
            f,
            "decode_check",
            s.decode_check.to_string(),
            s.decode_check == d.decode_check,
        )?;
        line(
            f,
            "memory_limit",
            size(s.memory_limit),
            s.memory_limit == d.memory_limit,
        )?;
        line(
            f,
            "redelivery_grace",
            dur(s.redelivery_grace),
            s.redelivery_grace == d.redelivery_grace,
        )?;

        let (s, d) = (&self.spool, SpoolConfig::default());
        writeln!(f, "\n[spool]")?;
        line(f, "enabled", s.enabled.to_string(), s.enabled == d.enabled)?;
        line(
            f,
            "batch_max",
            s.batch_max.to_string(),
            s.batch_max == d.batch_max,
        )?;
        line(
            f,
            "batch_delay",
            dur(s.batch_delay),
            s.batch_delay == d.batch_delay,
        )?;
        line(
            f,
            "max_bytes",
            size(s.max_bytes),
            s.max_bytes == d.max_bytes,
        )?;
        line(
            f,
            "segment_bytes",
            size(s.segment_bytes),
            s.segment_bytes == d.segment_bytes.min(s.max_bytes),
        )?;

        writeln!(f, "\n[log]")?;
        match self.log.format {
            Some(fmt) => line(f, "format", q(fmt.as_str()), false)?,
            None => writeln!(
                f,
                "# format not set: text on a terminal, json otherwise (--log-format overrides)"
            )?,
        }
        match &self.log.level {
            Some(l) => line(f, "level", q(l), false)?,
            None => writeln!(
                f,
                "# level not set: RUST_LOG, else \"{}\"",
                crate::logging::DEFAULT_FILTER
            )?,
        }

        let ops = &self.ops;
        writeln!(f, "\n[metrics]")?;
        match ops.metrics.listen {
            Some(addr) => line(f, "listen", q(&addr.to_string()), false)?,
            None => writeln!(
                f,
                "# listen not set (default): no /healthz or /metrics listener"
            )?,
        }

        let (h, d) = (&ops.health, HealthConfig::default());
        writeln!(f, "\n[health]")?;
        line(
            f,
            "engine_stall",
            dur(h.engine_stall),
            h.engine_stall == d.engine_stall,
        )?;
        line(
            f,
            "link_grace",
            dur(h.link_grace),
            h.link_grace == d.link_grace,
        )?;
        match h.max_delivery_age {
            Some(age) => line(f, "max_delivery_age", dur(age), false)?,
            None => writeln!(
                f,
                "# max_delivery_age not set (default): /healthz does not check delivery age"
            )?,
        }

        let (r, d) = (&ops.retention, RetentionConfig::default());
        writeln!(f, "\n[retention]")?;
        if !r.limits.any() {
            writeln!(f, "# no limit set (default): images are kept forever")?;
        }
        match r.limits.max_age {
            Some(age) => line(f, "max_age", dur(age), false)?,
            None => writeln!(f, "# max_age not set")?,
        }
        match r.limits.max_total_bytes {
            Some(n) => line(f, "max_total_bytes", size(n), false)?,
            None => writeln!(f, "# max_total_bytes not set")?,
        }
        match r.limits.max_files_per_device {
            Some(n) => line(f, "max_files_per_device", n.to_string(), false)?,
            None => writeln!(f, "# max_files_per_device not set")?,
        }
        line(f, "interval", dur(r.interval), r.interval == d.interval)?;

        writeln!(f, "\n[hook]")?;
        match &ops.hook {
            None => writeln!(f, "# command not set (default): no hook")?,
            Some(h) => {
                let d = HookConfig::new(Vec::new());
                let argv: Vec<String> = h.command.iter().map(|a| q(a)).collect();
                line(f, "command", format!("[{}]", argv.join(", ")), false)?;
                line(f, "timeout", dur(h.timeout), h.timeout == d.timeout)?;
                line(
                    f,
                    "max_concurrent",
                    h.max_concurrent.to_string(),
                    h.max_concurrent == d.max_concurrent,
                )?;
                line(f, "queue", h.queue.to_string(), h.queue == d.queue)?;
                if h.env.is_empty() {
                    writeln!(
                        f,
                        "# env not set (default): PATH, HOME, locale, TZ and the RECEIVER_* \
                         image variables only"
                    )?;
                } else {
                    let env: Vec<String> = h.env.iter().map(|e| q(&e.as_config())).collect();
                    line(f, "env", format!("[{}]", env.join(", ")), false)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const MINIMAL: &str = r#"
[aliyun]
host = "iot-06z00xxxxxxx.amqp.iothub.aliyuncs.com"
access_key_id = "LTAI5tExample"
access_key_secret = "inline-secret-value"
iot_instance_id = "iot-06z00xxxxxxx"
consumer_group_id = "DEFAULT_GROUP"

[output]
dir = "/srv/rx/images"

[state]
dir = "/srv/rx/state"
"#;

    fn parse_env(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_toml(text, Path::new("/etc/receiver/receiver.toml"), &|k| {
            env.get(k).cloned()
        })
    }

    fn parse(text: &str) -> Result<Config, ConfigError> {
        parse_env(text, &[])
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn minimal_applies_defaults() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.aliyun.port, 5671);
        assert_eq!(c.aliyun.client_id, "receiver");
        assert_eq!(c.aliyun.sign_method, SignMethod::HmacSha1);
        assert_eq!(c.aliyun.auth_mode, AuthMode::AkSign);
        assert_eq!(c.aliyun.connections, 1);
        assert_eq!(c.aliyun.source_address, "default");
        assert_eq!(c.aliyun.credit, 256);
        assert_eq!(c.aliyun.idle_timeout, Duration::from_secs(60));
        assert_eq!(c.aliyun.setup_timeout, Duration::from_secs(15));
        assert_eq!(c.aliyun.reconnect_max, Duration::from_secs(60));
        assert_eq!(c.aliyun.access_key_secret.expose(), "inline-secret-value");
        assert_eq!(
            c.aliyun.access_key_secret.source(),
            Some(&SecretSource::Inline)
        );
        assert_eq!(c.assembly, AssemblyConfig::default());
        assert_eq!(c.spool, SpoolConfig::default());
        assert_eq!(c.log.format, None);
        assert_eq!(c.output_dir, Path::new("/srv/rx/images"));
    }

    #[test]
    fn fields_of_reads_serde_derive() {
        assert_eq!(fields_of::<RawDir>(), &["dir"]);
        assert!(fields_of::<RawAliyun>().contains(&"access_key_secret_file"));
    }

    #[test]
    fn unknown_key_names_key_table_and_line() {
        let text = MINIMAL.replace("access_key_id =", "hots = \"x\"\naccess_key_id =");
        let e = parse(&text).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with("/etc/receiver/receiver.toml:4: unknown key `hots` in [aliyun]"),
            "{msg}"
        );
        assert!(msg.contains("expected one of host, port,"), "{msg}");
        assert_eq!(e.line(), Some(4));
    }

    #[test]
    fn unknown_key_in_dotted_and_inline_forms() {
        let m = err("x = 1\n");
        assert!(m.contains(":1: unknown key `x` in the top level"), "{m}");
        assert!(m.contains("[aliyun]"), "{m}");
        let m = err("\n\naliyun.hots = 1\n");
        assert!(m.contains(":3: unknown key `hots` in [aliyun]"), "{m}");
        let m = err("assembly = { max_opn = 3 }\n");
        assert!(m.contains(":1: unknown key `max_opn` in [assembly]"), "{m}");
        let m = err("[spool]\n\nenable = true\n");
        assert!(m.contains(":3: unknown key `enable` in [spool]"), "{m}");
    }

    #[test]
    fn unknown_nested_tables_are_unknown_keys() {
        // Dotted keys and sub-tables inside a known table (no known key holds a table).
        let m = err(&format!(
            "{MINIMAL}\n[hook]\ncommand = [\"x\"]\nvars.FOO = \"1\"\n"
        ));
        assert!(m.contains(":17: unknown key `vars` in [hook]"), "{m}");
        let m = err(&MINIMAL.replace("[state]\n", "[state]\nsub.dir = \"x\"\n"));
        assert!(m.contains(":13: unknown key `sub` in [state]"), "{m}");
        let m = err(&format!("{MINIMAL}\n[retention.extra]\nx = 1\n"));
        assert!(m.contains(":15: unknown key `extra` in [retention]"), "{m}");
    }

    #[test]
    fn syntax_error_has_line_and_column() {
        let e = parse("[aliyun]\nhost = \n").unwrap_err();
        assert!(matches!(e, ConfigError::Syntax { line: 2, .. }), "{e}");
    }

    #[test]
    fn type_errors_name_the_key() {
        let m = err(&MINIMAL.replace("[output]", "[output]\n").replace(
            "consumer_group_id = \"DEFAULT_GROUP\"",
            "consumer_group_id = \"DEFAULT_GROUP\"\nport = \"abc\"",
        ));
        assert!(
            m.contains(":8: [aliyun] port: invalid type: string \"abc\", expected an integer"),
            "{m}"
        );
        let m = err("aliyun = 1\n");
        assert!(m.contains(":1: aliyun: invalid type"), "{m}");
    }

    #[test]
    fn missing_required_keys() {
        for key in [
            "host",
            "access_key_id",
            "iot_instance_id",
            "consumer_group_id",
        ] {
            let text: String = MINIMAL
                .lines()
                .filter(|l| !l.starts_with(&format!("{key} =")))
                .collect::<Vec<_>>()
                .join("\n");
            let m = err(&text);
            assert!(
                m.contains(&format!("missing required key `{key}` in [aliyun]")),
                "{m}"
            );
        }
    }

    #[test]
    fn empty_instance_id_is_allowed() {
        let text = MINIMAL.replace("\"iot-06z00xxxxxxx\"\n", "\"\"\n");
        assert_eq!(parse(&text).unwrap().aliyun.iot_instance_id, "");
    }

    #[test]
    fn durations() {
        let set = |k: &str, v: &str| MINIMAL.replace("[output]", &format!("{k} = {v}\n\n[output]"));
        let c = parse(&set("idle_timeout", "\"2m\"")).unwrap();
        assert_eq!(c.aliyun.idle_timeout, Duration::from_secs(120));
        let m = err(&set("idle_timeout", "60"));
        assert!(
            m.contains("[aliyun] idle_timeout: a bare number (60) has no unit"),
            "{m}"
        );
        let m = err(&set("idle_timeout", "\"60 parsecs\""));
        assert!(m.contains("[aliyun] idle_timeout: invalid duration"), "{m}");
        let m = err(&set("idle_timeout", "\"10s\""));
        assert!(
            m.contains("[aliyun] idle_timeout: \"10s\" is out of range"),
            "{m}"
        );
        assert!(m.contains("30-300 s"), "{m}");
        let m = err(&set("idle_timeout", "\"301s\""));
        assert!(m.contains("out of range"), "{m}");
        assert!(parse(&set("idle_timeout", "\"300s\"")).is_ok());
        assert!(parse(&set("idle_timeout", "\"30s\"")).is_ok());
    }

    #[test]
    fn memory_limit_is_zero_or_at_least_a_mebibyte() {
        let set = |v: &str| format!("{MINIMAL}\n[assembly]\nmemory_limit = {v}\n");
        assert_eq!(parse(MINIMAL).unwrap().assembly.memory_limit, 8 << 20);
        assert_eq!(parse(&set("0")).unwrap().assembly.memory_limit, 0);
        assert_eq!(
            parse(&set("\"64 MiB\"")).unwrap().assembly.memory_limit,
            64 << 20
        );
        let m = err(&set("\"512 KiB\""));
        assert!(m.contains("[assembly] memory_limit"), "{m}");
        assert!(m.contains("0 (no limit)"), "{m}");
        let shown = parse(&set("\"64 MiB\"")).unwrap().to_string();
        assert!(shown.contains("memory_limit = \"64 MiB\""), "{shown}");
    }

    #[test]
    fn sizes_accept_integers_and_units() {
        let set = |v: &str| format!("{MINIMAL}\n[assembly]\nmax_image_bytes = {v}\n");
        assert_eq!(
            parse(&set("1048576")).unwrap().assembly.max_image_bytes,
            1 << 20
        );
        assert_eq!(
            parse(&set("\"2 MiB\"")).unwrap().assembly.max_image_bytes,
            2 << 20
        );
        assert_eq!(
            parse(&set("\"500KB\"")).unwrap().assembly.max_image_bytes,
            500_000
        );
        let m = err(&set("\"2 MeB\""));
        assert!(
            m.contains("[assembly] max_image_bytes: invalid size"),
            "{m}"
        );
        let m = err(&set("-1"));
        assert!(m.contains("negative"), "{m}");
    }

    #[test]
    fn ranges() {
        let set = |k: &str, v: &str| MINIMAL.replace("[output]", &format!("{k} = {v}\n\n[output]"));
        for (k, v, want) in [
            (
                "port",
                "0",
                "[aliyun] port: 0 is out of range; expected 1..=65535",
            ),
            ("connections", "0", "expected 1..=128"),
            ("connections", "129", "expected 1..=128"),
            ("credit", "0", "expected 1..=1000"),
            ("credit", "1001", "expected 1..=1000"),
            ("host", "\"\"", "[aliyun] host: is empty"),
            ("host", "\"amqps://x.example\"", "URL scheme"),
            ("host", "\"x.example:5671\"", "has a port"),
            ("sign_method", "\"sha1\"", "expected \"hmacsha1\""),
            (
                "auth_mode",
                "\"token\"",
                "expected \"aksign\" or \"ststoken\"",
            ),
            ("client_id", "\"a|b\"", "would break the AMQP user name"),
        ] {
            let text = set(k, v);
            // `host` is already set in MINIMAL: replace it instead of adding a duplicate.
            let text = if k == "host" {
                MINIMAL.replace(
                    "host = \"iot-06z00xxxxxxx.amqp.iothub.aliyuncs.com\"",
                    &format!("host = {v}"),
                )
            } else {
                text
            };
            let m = err(&text);
            assert!(m.contains(want), "{k}={v}: {m}");
        }
        let c = parse(&set("sign_method", "\"HmacSHA256\"")).unwrap();
        assert_eq!(c.aliyun.sign_method, SignMethod::HmacSha256);
    }

    #[test]
    fn client_id_length_counts_the_suffix() {
        let id = "c".repeat(64);
        let text = MINIMAL.replace("[output]", &format!("client_id = \"{id}\"\n[output]"));
        assert!(parse(&text).is_ok());
        let m = err(&MINIMAL.replace("[output]", &format!("client_id = \"{id}x\"\n[output]")));
        assert!(m.contains("is 65 characters; expected at most 64"), "{m}");
        let m = err(&MINIMAL.replace(
            "[output]",
            &format!("client_id = \"{id}\"\nconnections = 12\n[output]"),
        ));
        assert!(m.contains("appends \"-11\""), "{m}");
        assert!(m.contains("expected at most 61"), "{m}");
        let id61 = "c".repeat(61);
        let c = parse(&MINIMAL.replace(
            "[output]",
            &format!("client_id = \"{id61}\"\nconnections = 12\n[output]"),
        ))
        .unwrap();
        assert_eq!(c.aliyun.client_id_for(11).len(), 64);
        assert_eq!(c.aliyun.client_id_for(0), format!("{id61}-0"));
    }

    #[test]
    fn secret_sources_exactly_one() {
        let no_inline = MINIMAL.replace("access_key_secret = \"inline-secret-value\"\n", "");
        let m = err(&no_inline);
        assert!(m.contains("access key secret: not given"), "{m}");
        assert!(
            m.contains("`access_key_secret`, `access_key_secret_file`"),
            "{m}"
        );
        assert!(m.contains(ENV_ACCESS_KEY_SECRET), "{m}");

        let c = parse_env(&no_inline, &[(ENV_ACCESS_KEY_SECRET, "from-env")]).unwrap();
        assert_eq!(c.aliyun.access_key_secret.expose(), "from-env");
        assert_eq!(
            c.aliyun.access_key_secret.source(),
            Some(&SecretSource::Env(ENV_ACCESS_KEY_SECRET.into()))
        );
        // An empty variable counts as unset.
        assert!(parse_env(&no_inline, &[(ENV_ACCESS_KEY_SECRET, "")]).is_err());

        let e = parse_env(MINIMAL, &[(ENV_ACCESS_KEY_SECRET, "from-env")]).unwrap_err();
        let m = e.to_string();
        assert!(
            m.contains("given 2 ways (`access_key_secret`, environment variable"),
            "{m}"
        );
        assert!(
            !m.contains("from-env") && !m.contains("inline-secret-value"),
            "{m}"
        );

        let both = MINIMAL.replace(
            "access_key_secret = \"inline-secret-value\"",
            "access_key_secret = \"x\"\naccess_key_secret_file = \"secret\"",
        );
        let m = err(&both);
        assert!(
            m.contains("(`access_key_secret`, `access_key_secret_file`)"),
            "{m}"
        );
    }

    #[test]
    fn secret_file_is_read_relative_to_config() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret"), "s3cr3t\n").unwrap();
        std::fs::set_permissions(
            dir.path().join("secret"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        let text = MINIMAL.replace(
            "access_key_secret = \"inline-secret-value\"",
            "access_key_secret_file = \"secret\"",
        );
        let c = Config::from_toml(&text, &dir.path().join("r.toml"), &|_| None).unwrap();
        assert_eq!(c.aliyun.access_key_secret.expose(), "s3cr3t");
        assert_eq!(
            c.aliyun.access_key_secret.source(),
            Some(&SecretSource::File(absolute(&dir.path().join("secret"))))
        );
        let e = Config::from_toml(&text, &dir.path().join("sub/r.toml"), &|_| None).unwrap_err();
        assert!(matches!(e, ConfigError::File { .. }), "{e}");
        assert!(e.to_string().contains("access_key_secret_file"), "{e}");
    }

    /// A `$CREDENTIALS_DIRECTORY` holding `files`.
    fn credentials(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, content) in files {
            std::fs::write(dir.path().join(name), content).unwrap();
        }
        dir
    }

    #[test]
    fn systemd_credential_is_the_last_resort() {
        let no_inline = MINIMAL.replace("access_key_secret = \"inline-secret-value\"\n", "");
        let creds = credentials(&[("access_key_secret", "from-credential\n")]);
        let dir = creds.path().to_str().unwrap();
        let c = parse_env(&no_inline, &[(ENV_CREDENTIALS_DIRECTORY, dir)]).unwrap();
        assert_eq!(c.aliyun.access_key_secret.expose(), "from-credential");
        let file = absolute(&creds.path().join(CREDENTIAL_ACCESS_KEY_SECRET));
        assert_eq!(
            c.aliyun.access_key_secret.source(),
            Some(&SecretSource::File(file.clone()))
        );
        let shown = c.to_string();
        assert!(!shown.contains("from-credential"), "{shown}");
        assert!(
            shown.contains(&format!("# (from file {})", file.display())),
            "{shown}"
        );

        // Any configured source wins, without a "given 2 ways" error.
        let c = parse_env(MINIMAL, &[(ENV_CREDENTIALS_DIRECTORY, dir)]).unwrap();
        assert_eq!(c.aliyun.access_key_secret.expose(), "inline-secret-value");
        let c = parse_env(
            &no_inline,
            &[
                (ENV_CREDENTIALS_DIRECTORY, dir),
                (ENV_ACCESS_KEY_SECRET, "from-env"),
            ],
        )
        .unwrap();
        assert_eq!(c.aliyun.access_key_secret.expose(), "from-env");

        // An empty variable counts as unset.
        let m = parse_env(&no_inline, &[(ENV_CREDENTIALS_DIRECTORY, "")])
            .unwrap_err()
            .to_string();
        assert!(m.contains("access key secret: not given"), "{m}");
    }

    #[test]
    fn systemd_credential_problems_are_reported() {
        let no_inline = MINIMAL.replace("access_key_secret = \"inline-secret-value\"\n", "");
        // No such credential: the "not given" error says where it looked.
        let creds = credentials(&[("other", "x")]);
        let dir = creds.path().to_str().unwrap();
        let m = parse_env(&no_inline, &[(ENV_CREDENTIALS_DIRECTORY, dir)])
            .unwrap_err()
            .to_string();
        assert!(m.contains("access key secret: not given"), "{m}");
        assert!(m.contains("systemd credential `access_key_secret`"), "{m}");
        assert!(
            m.contains(&format!(
                "$CREDENTIALS_DIRECTORY ({dir}) has no `access_key_secret`"
            )),
            "{m}"
        );
        // Without the variable the hint still names the credential.
        let m = err(&no_inline);
        assert!(m.contains("(LoadCredential=)"), "{m}");
        assert!(!m.contains("has no"), "{m}");

        for (content, want) in [
            ("a\nb\n", "has more than one line"),
            ("\n", "is empty (from file "),
            ("a|b", "contains '|'"),
        ] {
            let creds = credentials(&[("access_key_secret", content)]);
            let dir = creds.path().to_str().unwrap();
            let e = parse_env(&no_inline, &[(ENV_CREDENTIALS_DIRECTORY, dir)]).unwrap_err();
            let m = e.to_string();
            assert!(matches!(e, ConfigError::SecretSource { .. }), "{m}");
            assert!(m.contains(want), "{content:?}: {m}");
            assert!(!m.contains("a|b") && !m.contains("a\nb"), "{m}");
        }
        let creds = credentials(&[("access_key_secret", "a\nb\n")]);
        let dir = creds.path().to_str().unwrap();
        let m = parse_env(&no_inline, &[(ENV_CREDENTIALS_DIRECTORY, dir)])
            .unwrap_err()
            .to_string();
        assert!(
            m.contains("[aliyun] access key secret: systemd credential `access_key_secret` ("),
            "{m}"
        );
        assert!(
            m.contains("from $CREDENTIALS_DIRECTORY): has more than one line"),
            "{m}"
        );
    }

    #[test]
    fn systemd_credential_for_the_security_token() {
        let creds = credentials(&[("security_token", "CAIS-cred\n")]);
        let dir = creds.path().to_str().unwrap();
        let sts = MINIMAL.replace("[output]", "auth_mode = \"ststoken\"\n[output]");
        let c = parse_env(&sts, &[(ENV_CREDENTIALS_DIRECTORY, dir)]).unwrap();
        let AuthMode::StsToken { security_token } = &c.aliyun.auth_mode else {
            panic!("{:?}", c.aliyun.auth_mode);
        };
        assert_eq!(security_token.expose(), "CAIS-cred");
        assert_eq!(
            security_token.source(),
            Some(&SecretSource::File(absolute(
                &creds.path().join(CREDENTIAL_SECURITY_TOKEN)
            )))
        );
        // The env variable still wins; with aksign the credential is not consulted.
        let c = parse_env(
            &sts,
            &[
                (ENV_CREDENTIALS_DIRECTORY, dir),
                (ENV_SECURITY_TOKEN, "env"),
            ],
        )
        .unwrap();
        assert!(matches!(&c.aliyun.auth_mode,
            AuthMode::StsToken { security_token } if security_token.expose() == "env"));
        let c = parse_env(MINIMAL, &[(ENV_CREDENTIALS_DIRECTORY, dir)]).unwrap();
        assert_eq!(c.aliyun.auth_mode, AuthMode::AkSign);
    }

    #[test]
    fn ststoken_needs_a_token_and_aksign_refuses_one() {
        let sts = MINIMAL.replace("[output]", "auth_mode = \"ststoken\"\n[output]");
        let m = err(&sts);
        assert!(m.contains("security token: not given"), "{m}");
        let c = parse_env(&sts, &[(ENV_SECURITY_TOKEN, "CAIS-token")]).unwrap();
        match &c.aliyun.auth_mode {
            AuthMode::StsToken { security_token } => {
                assert_eq!(security_token.expose(), "CAIS-token")
            }
            other => panic!("{other:?}"),
        }
        let text = format!("{c}");
        assert!(!text.contains("CAIS-token"), "{text}");
        assert!(!format!("{c:?}").contains("CAIS-token"));
        let m = err(&MINIMAL.replace("[output]", "security_token = \"t\"\n[output]"));
        assert!(
            m.contains("[aliyun] security_token: is set but auth_mode is \"aksign\""),
            "{m}"
        );
    }

    #[test]
    fn dirs_must_be_disjoint() {
        let nested = MINIMAL.replace("/srv/rx/state", "/srv/rx/images/state");
        let m = err(&nested);
        assert!(m.contains("[state] dir:"), "{m}");
        assert!(m.contains("one contains the other"), "{m}");
        let same = MINIMAL.replace("/srv/rx/state", "/srv/rx/images/");
        assert!(err(&same).contains("the same folder"));
        let dotted = MINIMAL.replace("/srv/rx/state", "/srv/rx/images/x/..");
        assert!(parse(&dotted).is_err());
        // Siblings sharing a name prefix are fine.
        let sib = MINIMAL.replace("/srv/rx/state", "/srv/rx/images2");
        assert!(parse(&sib).is_ok());
    }

    #[test]
    fn relative_dirs_resolve_against_the_config_folder() {
        let text = MINIMAL
            .replace("/srv/rx/images", "images")
            .replace("/srv/rx/state", "../state");
        let c = parse(&text).unwrap();
        assert_eq!(c.output_dir, Path::new("/etc/receiver/images"));
        assert_eq!(c.state_dir, Path::new("/etc/state"));
    }

    #[test]
    fn default_dirs_come_from_the_data_dir() {
        let text: String = MINIMAL.split("[output]").next().unwrap().to_owned();
        if let Some(data) = default_data_dir() {
            let c = parse(&text).unwrap();
            assert_eq!(c.output_dir, data.join("images"));
            assert_eq!(c.state_dir, data.join("state"));
            assert!(c.to_string().contains("# default"));
        }
    }

    #[test]
    fn ca_file_must_hold_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("r.toml");
        std::fs::write(dir.path().join("ca.pem"), "not a pem\n").unwrap();
        let text = MINIMAL.replace("[output]", "ca_file = \"ca.pem\"\n[output]");
        let e = Config::from_toml(&text, &cfg, &|_| None).unwrap_err();
        assert!(e.to_string().contains("holds no PEM certificate"), "{e}");
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ck.cert.pem()).unwrap();
        let c = Config::from_toml(&text, &cfg, &|_| None).unwrap();
        assert_eq!(c.aliyun.ca_file, Some(absolute(&dir.path().join("ca.pem"))));
    }

    #[test]
    fn spool_must_hold_a_picture() {
        let text = format!("{MINIMAL}\n[spool]\nmax_bytes = \"4 MiB\"\n");
        assert!(err(&text).contains("[spool] max_bytes"));
        let text = format!("{MINIMAL}\n[spool]\nenabled = false\nmax_bytes = \"4 MiB\"\n");
        assert!(parse(&text).is_ok());
    }

    #[test]
    fn spool_segment_bytes() {
        let spool = |body: &str| format!("{MINIMAL}\n[spool]\n{body}\n");
        assert_eq!(parse(MINIMAL).unwrap().spool.segment_bytes, 64 << 20);
        let c = parse(&spool("segment_bytes = \"8 MiB\"")).unwrap();
        assert_eq!(c.spool.segment_bytes, 8 << 20);
        assert!(c.to_string().contains("segment_bytes = \"8 MiB\"\n"));
        let c = parse(&spool("segment_bytes = 1048576")).unwrap();
        assert_eq!(c.spool.segment_bytes, 1 << 20);
        let c = parse(&spool("segment_bytes = \"1 GiB\"\nmax_bytes = \"2 GiB\"")).unwrap();
        assert_eq!(c.spool.segment_bytes, 1 << 30);
        let c = parse(&spool("segment_bytes = \"16 MiB\"\nmax_bytes = \"16 MiB\"")).unwrap();
        assert_eq!(c.spool.segment_bytes, 16 << 20);
        // Unset, it follows a smaller cap.
        let c = parse(&spool("max_bytes = \"16 MiB\"")).unwrap();
        assert_eq!(c.spool.segment_bytes, 16 << 20);
        assert!(c
            .to_string()
            .contains("segment_bytes = \"16 MiB\"  # default"));

        let m = err(&spool("segment_bytes = \"512 KiB\""));
        assert!(
            m.contains(":16: [spool] segment_bytes: 524288 is out of range; expected \"1 MiB\""),
            "{m}"
        );
        let m = err(&spool("segment_bytes = \"2 GiB\"\nmax_bytes = \"4 GiB\""));
        assert!(
            m.contains("[spool] segment_bytes: 2147483648 is out of range"),
            "{m}"
        );
        let m = err(&spool("max_bytes = \"16 MiB\"\nsegment_bytes = \"32 MiB\""));
        assert!(
            m.contains(":17: [spool] segment_bytes: 33554432 is more than max_bytes (16777216)"),
            "{m}"
        );
        let m = err(&spool("segment_bytes = \"lots\""));
        assert!(m.contains("[spool] segment_bytes: invalid size"), "{m}");
        // A disabled spool only needs a sane value.
        let off = "enabled = false\nmax_bytes = \"4 MiB\"\nsegment_bytes = \"64 MiB\"";
        assert!(parse(&spool(off)).is_ok());
    }

    #[test]
    fn display_redacts_and_marks_defaults() {
        let c = parse(MINIMAL).unwrap();
        let shown = c.to_string();
        assert!(!shown.contains("inline-secret-value"), "{shown}");
        assert!(
            shown.contains("access_key_secret = \"<redacted>\"  # (inline in the config file)"),
            "{shown}"
        );
        assert!(shown.contains("port = 5671  # default"), "{shown}");
        assert!(
            shown.contains("max_image_bytes = \"4 MiB\"  # default"),
            "{shown}"
        );
        assert!(
            shown.contains("idle_timeout = \"1m\"  # default"),
            "{shown}"
        );
        let debug = format!("{c:?}");
        assert!(!debug.contains("inline-secret-value"), "{debug}");
        // The redacted view is itself TOML and reloads to the same settings.
        let again = parse(&shown.replace("\"<redacted>\"", "\"inline-secret-value\"")).unwrap();
        assert_eq!(again, c);
    }

    const OPS_FULL: &str = r#"
[metrics]
listen = "127.0.0.1:9898"

[health]
engine_stall = "2m"
link_grace = "5m"
max_delivery_age = "2h"

[retention]
max_age = "30d"
max_total_bytes = "50 GiB"
max_files_per_device = 10000
interval = "15m"

[hook]
command = ["/usr/local/bin/forward", "--bucket", "cams \"x\""]
timeout = "45s"
max_concurrent = 2
queue = 100
"#;

    #[test]
    fn ops_sections_are_off_by_default() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.ops, OpsConfig::default());
        assert!(c.ops.metrics.listen.is_none());
        assert!(!c.ops.retention.limits.any());
        assert!(c.ops.hook.is_none());
        // Empty sections are the same as absent ones.
        let c = parse(&format!(
            "{MINIMAL}\n[metrics]\n[health]\n[retention]\n[hook]\n"
        ))
        .unwrap();
        assert_eq!(c.ops, OpsConfig::default());
    }

    #[test]
    fn ops_sections_parse() {
        let c = parse(&format!("{MINIMAL}{OPS_FULL}")).unwrap();
        let o = &c.ops;
        assert_eq!(o.metrics.listen, Some("127.0.0.1:9898".parse().unwrap()));
        assert_eq!(o.health.engine_stall, Duration::from_secs(120));
        assert_eq!(o.health.link_grace, Duration::from_secs(300));
        assert_eq!(o.health.max_delivery_age, Some(Duration::from_secs(7200)));
        let l = o.retention.limits;
        assert_eq!(l.max_age, Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(l.max_total_bytes, Some(50 << 30));
        assert_eq!(l.max_files_per_device, Some(10_000));
        assert_eq!(o.retention.interval, Duration::from_secs(900));
        let h = o.hook.as_ref().unwrap();
        assert_eq!(
            h.command,
            ["/usr/local/bin/forward", "--bucket", "cams \"x\""]
        );
        assert_eq!(h.timeout, Duration::from_secs(45));
        assert_eq!((h.max_concurrent, h.queue), (2, 100));
    }

    #[test]
    fn ops_unknown_keys_name_key_table_and_line() {
        let m = err(&format!("{MINIMAL}\n[retention]\nmax_agee = \"30d\"\n"));
        assert!(
            m.starts_with("/etc/receiver/receiver.toml:16: unknown key `max_agee` in [retention]"),
            "{m}"
        );
        assert!(
            m.contains(
                "(expected one of max_age, max_total_bytes, max_files_per_device, interval)"
            ),
            "{m}"
        );
        let m = err(&format!("{MINIMAL}\n[metrics]\nlisten_addr = \"x\"\n"));
        assert!(
            m.contains(":16: unknown key `listen_addr` in [metrics]"),
            "{m}"
        );
        let m = err(&format!("hook.cmd = [\"x\"]\n{MINIMAL}"));
        assert!(m.contains(":1: unknown key `cmd` in [hook]"), "{m}");
        let m = err(&format!("{MINIMAL}\n[health]\n\nlink_grase = \"1m\"\n"));
        assert!(
            m.contains(":17: unknown key `link_grase` in [health]"),
            "{m}"
        );
        // The top level lists the new tables too.
        let m = err("[hooks]\n");
        assert!(
            m.contains("[metrics], [health], [retention], [hook]"),
            "{m}"
        );
    }

    #[test]
    fn ops_invalid_values_name_file_line_and_key() {
        let at = |table: &str, body: &str| format!("{MINIMAL}\n[{table}]\n{body}\n");
        for (table, body, want) in [
            (
                "metrics",
                "listen = \"localhost\"",
                ":16: [metrics] listen: \"localhost\" is not an ip:port address",
            ),
            (
                "health",
                "engine_stall = \"0s\"",
                ":16: [health] engine_stall: must be greater than zero",
            ),
            (
                "health",
                "link_grace = \"soon\"",
                ":16: [health] link_grace: \"soon\" is not a duration",
            ),
            (
                "retention",
                "max_age = \"forever\"",
                ":16: [retention] max_age: \"forever\" is not a duration",
            ),
            (
                "retention",
                "max_age = \"10s\"",
                ":16: [retention] max_age: must be at least 1 minute",
            ),
            (
                "retention",
                "interval = \"1m\"\nmax_total_bytes = \"50 GeB\"",
                ":17: [retention] max_total_bytes: unknown size unit",
            ),
            (
                "retention",
                "max_files_per_device = 0",
                ":16: [retention] max_files_per_device: must be at least 1",
            ),
            (
                "hook",
                "command = [\"\"]",
                ":16: [hook] command: the program name is empty",
            ),
            (
                "hook",
                "command = [\"x\"]\nqueue = 0",
                ":17: [hook] queue: must be at least 1",
            ),
            // A missing key points at its section.
            (
                "hook",
                "timeout = \"5s\"",
                ":15: [hook] command: is required when [hook] has settings",
            ),
            // Type errors, from deserialization.
            (
                "retention",
                "max_files_per_device = \"many\"",
                ":16: [retention] max_files_per_device: invalid type: string \"many\", expected a \
                 positive integer",
            ),
            (
                "retention",
                "max_total_bytes = true",
                ":16: [retention] max_total_bytes: invalid size; expected an integer number of bytes",
            ),
            (
                "hook",
                "command = \"/bin/true\"",
                ":16: [hook] command: invalid type: string \"/bin/true\", expected a sequence",
            ),
        ] {
            let e = parse(&at(table, body)).unwrap_err();
            let m = e.to_string();
            assert!(matches!(e, ConfigError::Invalid { .. }), "{m}");
            assert!(m.starts_with("/etc/receiver/receiver.toml:"), "{m}");
            assert!(m.contains(want), "{table} {body}: {m}");
        }
    }

    #[test]
    fn display_shows_ops_settings_and_reloads() {
        let shown = parse(MINIMAL).unwrap().to_string();
        for want in [
            "[metrics]\n# listen not set (default)",
            "[health]\nengine_stall = \"1m\"  # default\nlink_grace = \"10m\"  # default\n",
            "# max_delivery_age not set (default)",
            "[retention]\n# no limit set (default): images are kept forever",
            "interval = \"10m\"  # default",
            "[hook]\n# command not set (default): no hook",
        ] {
            assert!(shown.contains(want), "{want}\n{shown}");
        }

        let c = parse(&format!("{MINIMAL}{OPS_FULL}")).unwrap();
        let shown = c.to_string();
        for want in [
            "listen = \"127.0.0.1:9898\"\n",
            "engine_stall = \"2m\"\n",
            "max_delivery_age = \"2h\"\n",
            "max_age = \"30days\"\n",
            "max_total_bytes = \"50 GiB\"\n",
            "max_files_per_device = 10000\n",
            "interval = \"15m\"\n",
            "command = [\"/usr/local/bin/forward\", \"--bucket\", 'cams \"x\"']\n",
            "timeout = \"45s\"\n",
            "max_concurrent = 2\n",
            "queue = 100\n",
        ] {
            assert!(shown.contains(want), "{want}\n{shown}");
        }
        let again = parse(&shown.replace("\"<redacted>\"", "\"inline-secret-value\"")).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn example_parses_and_validates() {
        let c = parse_env(EXAMPLE_TOML, &[(ENV_ACCESS_KEY_SECRET, "dummy")]).unwrap();
        assert_eq!(c.aliyun.port, defaults::PORT);
        assert_eq!(c.output_dir, Path::new("/var/lib/receiver/images"));
        assert_eq!(c.state_dir, Path::new("/var/lib/receiver/state"));
        assert_eq!(c.assembly, AssemblyConfig::default());
        assert_eq!(c.spool, SpoolConfig::default());
        assert_eq!(c.ops, OpsConfig::default());
    }
}

//! `receiver.toml`: loading, validation, defaults, redacted printing.
//!
//! Loading is "parse, then validate into a richer type" (ripgrep's low/high args, Vector's
//! `validate()`):
//!
//! 1. **Deserialize** (serde, one pass) into private `Raw*` section structs: every key optional,
//!    typed ([`ByteSize`], [`HumanDuration`], the enums) and [`Spanned`](toml::Spanned), with
//!    `deny_unknown_fields`. A misspelt key is reported with its line, its table and the keys that
//!    table accepts; a value of the wrong type with its line and key (`load.rs`).
//! 2. **Validate** into [`Config`], section by section, each `validate()` beside its struct
//!    (`aliyun.rs`, `sections.rs`, `crate::ops`): defaults applied, ranges checked, relative paths
//!    resolved against the config file's folder, secrets loaded from exactly one source, and the
//!    output and state folders checked to be disjoint. Errors name the key's line from its span.
//!
//! Every failure is a [`ConfigError`] carrying the config file's path. Secrets are held in
//! [`Secret`], which never prints its value; `Display` on [`Config`] is the redacted, TOML view
//! that `receiver check-config` prints, serialized from the config (`print.rs`).

mod aliyun;
mod cluster;
mod load;
mod print;
mod sections;
#[cfg(test)]
mod tests;
mod units;
mod web;

pub use load::{known_keys, HostChecks};
pub use units::{as_toml, ByteSize, HumanDuration};
pub use web::CREDENTIAL_WEB_PASSWORD;

use crate::ops::{OpsConfig, OpsConfigError, RawOpsConfig};
use load::{Cx, RawConfig};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

/// The commented example configuration, also printed by `receiver print-default-config`.
pub const EXAMPLE_TOML: &str = include_str!("../../config/receiver.example.toml");

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

/// Environment variable holding the object store's secret access key (`[output] backend = "s3"`).
pub const ENV_OUTPUT_SECRET_ACCESS_KEY: &str = "RECEIVER_OUTPUT_SECRET_ACCESS_KEY";

/// systemd credential holding the object store's secret access key
/// (`LoadCredential=output_secret_access_key:...`).
pub const CREDENTIAL_OUTPUT_SECRET_ACCESS_KEY: &str = "output_secret_access_key";

/// Environment variable holding the Redis password of `[cluster]`.
pub const ENV_REDIS_PASSWORD: &str = "RECEIVER_REDIS_PASSWORD";

/// systemd credential holding the Redis password of `[cluster]`
/// (`LoadCredential=redis_password:...`).
pub const CREDENTIAL_REDIS_PASSWORD: &str = "redis_password";

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
    /// `[output] region` (S3).
    pub const S3_REGION: &str = "us-east-1";
    /// `[output] timeout` (S3): the longest one request may take.
    pub const S3_TIMEOUT: Duration = Duration::from_secs(30);
    /// `[output] concurrency` (S3): uploads at once (the folder output writes up to 16 files at
    /// once too).
    pub const S3_CONCURRENCY: usize = 16;
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
    /// `[cluster] key_prefix`.
    pub const CLUSTER_KEY_PREFIX: &str = "receiver";
    /// `[cluster] lease`: how long a claim holds.
    pub const CLUSTER_LEASE: Duration = Duration::from_secs(30);
    /// `[cluster] timeout`: one call to Redis.
    pub const CLUSTER_TIMEOUT: Duration = Duration::from_secs(5);
}

// ---------------------------------------------------------------------------------------------
// The validated configuration (the contract other modules build on).
// ---------------------------------------------------------------------------------------------

pub use receiver_protocol::{AuthMode, Secret, SecretSource, SignMethod};

/// `[aliyun]`: the AMQP endpoint and credentials.
///
/// `Serialize` writes the keys as the config file does (secrets as [`Secret::REDACTED`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
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
    #[serde(flatten, serialize_with = "aliyun::auth_mode_keys")]
    pub auth_mode: AuthMode,
    /// Extra trusted CA (PEM), added to the public roots.
    #[serde(
        serialize_with = "as_toml::opt_path",
        skip_serializing_if = "Option::is_none"
    )]
    pub ca_file: Option<PathBuf>,
    /// Parallel connections, each with one receiver link.
    pub connections: usize,
    /// Receiver link source address.
    pub source_address: String,
    /// Link credit (prefetch) per connection.
    pub credit: u32,
    /// Idle time-out; the Open frame advertises a value within Aliyun's 30-300 s.
    #[serde(serialize_with = "as_toml::duration")]
    pub idle_timeout: Duration,
    /// Time allowed for TCP+TLS+SASL+open+begin+attach.
    #[serde(serialize_with = "as_toml::duration")]
    pub setup_timeout: Duration,
    /// Longest reconnect backoff.
    #[serde(serialize_with = "as_toml::duration")]
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
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AssemblyConfig {
    /// Largest image, bytes.
    #[serde(serialize_with = "as_toml::size")]
    pub max_image_bytes: usize,
    /// Most open pictures.
    pub max_open: usize,
    /// Idle time after which a partial picture is quarantined.
    #[serde(serialize_with = "as_toml::duration")]
    pub timeout: Duration,
    /// Remembered message ids for duplicate detection.
    pub dedup_window: usize,
    /// Decode finished v1 pictures fully.
    pub decode_check: bool,
    /// Most bytes of open pictures held in memory; the rest goes to spill files in the state
    /// folder (0: no limit, nothing spilled).
    #[serde(serialize_with = "as_toml::size")]
    pub memory_limit: u64,
    /// How long a v1 picture that straddles a lost connection waits for the deliveries that were
    /// in flight (0: not at all).
    #[serde(serialize_with = "as_toml::duration")]
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
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpoolConfig {
    /// Persist before accepting (default true). `false` = in-memory mode.
    pub enabled: bool,
    /// Most messages per group commit.
    pub batch_max: usize,
    /// Longest wait to fill a batch.
    #[serde(serialize_with = "as_toml::duration")]
    pub batch_delay: Duration,
    /// Spool size cap, bytes.
    #[serde(serialize_with = "as_toml::size")]
    pub max_bytes: u64,
    /// Size at which the spool starts a new segment file, bytes (at most `max_bytes`).
    #[serde(serialize_with = "as_toml::size")]
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

/// `[cluster]`: several instances share one consumer group through Redis/Valkey.
///
/// `Serialize` writes the keys as the config file does: the URL without its password, the
/// password as [`Secret::REDACTED`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterConfig {
    /// `redis://` or `rediss://` URL (may hold user and password: never printed).
    #[serde(serialize_with = "cluster_url")]
    pub redis_url: String,
    /// The password from `password`, `password_file`, `RECEIVER_REDIS_PASSWORD` or the systemd
    /// credential `redis_password` (overrides the URL's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// Prefix of every key, so one Redis can serve several fleets.
    pub key_prefix: String,
    /// This instance in claims, logs and metrics; empty: host name and process id.
    pub instance_id: String,
    /// How long a claim on a picture holds before another instance may take it over.
    #[serde(serialize_with = "as_toml::duration")]
    pub lease: Duration,
    /// Longest call to Redis.
    #[serde(serialize_with = "as_toml::duration")]
    pub timeout: Duration,
    /// Redis Sentinel: their URLs (empty: connect to `redis_url`'s host directly).
    #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "cluster_urls")]
    pub sentinels: Vec<String>,
    /// Redis Sentinel: the master's name as they monitor it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sentinel_master: Option<String>,
}

impl ClusterConfig {
    /// The instance id in force (`instance_id`, else host name and process id).
    pub fn instance(&self) -> String {
        if self.instance_id.is_empty() {
            crate::cluster::default_instance_id()
        } else {
            self.instance_id.clone()
        }
    }

    /// The store's options.
    pub fn options(&self) -> crate::cluster::ClusterOptions {
        let mut o = crate::cluster::ClusterOptions::new(
            &self.redis_url,
            &self.key_prefix,
            &self.instance(),
        );
        o.password = self.password.clone();
        o.lease = self.lease;
        o.timeout = self.timeout;
        o.sentinel = self
            .sentinel_master
            .clone()
            .map(|m| (self.sentinels.clone(), m));
        o
    }
}

/// URLs with their passwords replaced by [`Secret::REDACTED`].
fn cluster_urls<S: serde::Serializer>(urls: &[String], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(urls.len()))?;
    for u in urls {
        seq.serialize_element(&redacted_url(u))?;
    }
    seq.end()
}

/// The URL with a password in it replaced by [`Secret::REDACTED`].
fn cluster_url<S: serde::Serializer>(url: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redacted_url(url))
}

fn redacted_url(url: &str) -> String {
    let shown = match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((user, host)) => {
                let user = user.split_once(':').map_or(user, |(u, _)| u);
                format!("{scheme}://{user}:{}@{host}", Secret::REDACTED)
            }
            None => url.to_owned(),
        },
        None => url.to_owned(),
    };
    shown
}

/// Log output format. In the config file `"text"` or `"json"`, ASCII case ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(try_from = "String")]
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

/// As the config file writes it: `"text"` or `"json"`.
impl Serialize for LogFormat {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl TryFrom<String> for LogFormat {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!(
                "{s:?} is not a log format; expected \"text\" or \"json\""
            )),
        }
    }
}

/// `[log]`: logging (added to the skeleton's field set).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LogConfig {
    /// Output format; `None` = text when stderr is a terminal, JSON otherwise. The command
    /// line's `--log-format` wins over this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<LogFormat>,
    /// Verbosity, as `RUST_LOG` directives (`"receiver=debug"`); wins over `RUST_LOG`.
    /// `None` = `RUST_LOG`, else `receiver=info`. Reloaded on SIGHUP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
}

/// The whole validated configuration.
///
/// `Debug` never shows secrets ([`Secret`] redacts itself); `Display` is the redacted TOML
/// view printed by `receiver check-config`. `Serialize` gives that view's tables and keys (without
/// its comments): one table per config file section, values written as the file writes them.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `[aliyun]`.
    pub aliyun: AliyunConfig,
    /// `[output] dir`: finished images land in `<dir>/<productKey>/<deviceName>/` (backend
    /// `"fs"`; empty with backend `"s3"`).
    pub output_dir: PathBuf,
    /// `[output]` with `backend = "s3"`: the bucket finished images go to instead of `output_dir`.
    /// (Both are serialized together as the `[output]` table.)
    pub output_s3: Option<crate::s3::S3Options>,
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
    /// `[web]`: the gallery (off when `listen` is not set).
    pub web: crate::web::WebConfig,
    /// `[cluster]`: `None` is single-instance mode (the spool).
    pub cluster: Option<ClusterConfig>,
}

/// `Serialize` derived on a view of borrowed sections: the daemon's field names are not the file's
/// (`output_dir` + `output_s3` are one `[output]` table, `state_dir` is `[state] dir`, the ops
/// sections are top-level tables).
impl Serialize for Config {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct View<'a> {
            aliyun: &'a AliyunConfig,
            output: OutputView<'a>,
            #[serde(serialize_with = "as_toml::dir_table")]
            state: &'a std::path::Path,
            assembly: &'a AssemblyConfig,
            spool: &'a SpoolConfig,
            log: &'a LogConfig,
            #[serde(flatten)]
            ops: &'a crate::ops::OpsConfig,
            web: &'a crate::web::WebConfig,
            #[serde(skip_serializing_if = "Option::is_none")]
            cluster: Option<&'a ClusterConfig>,
        }
        View {
            aliyun: &self.aliyun,
            output: OutputView::of(self),
            state: &self.state_dir,
            assembly: &self.assembly,
            spool: &self.spool,
            log: &self.log,
            ops: &self.ops,
            web: &self.web,
            cluster: self.cluster.as_ref(),
        }
        .serialize(s)
    }
}

/// The `[output]` table: `backend`, then `dir` (folder) or the bucket's keys (s3).
#[derive(Serialize)]
struct OutputView<'a> {
    backend: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    dir: Option<String>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    s3: Option<&'a crate::s3::S3Options>,
}

impl<'a> OutputView<'a> {
    fn of(c: &'a Config) -> Self {
        match &c.output_s3 {
            Some(o) => OutputView {
                backend: "s3",
                dir: None,
                s3: Some(o),
            },
            None => OutputView {
                backend: "fs",
                dir: Some(c.output_dir.to_string_lossy().into_owned()),
                s3: None,
            },
        }
    }
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
        let cx = Cx::new(text, path, env, host);
        let config = cx.parse(text)?.validate(&cx)?;
        Ok(Loaded {
            config,
            warnings: cx.into_warnings(),
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

impl RawConfig {
    /// Validates every section into a [`Config`]: each section's `validate()` sits beside it.
    fn validate(self, cx: &Cx) -> Result<Config, ConfigError> {
        let aliyun = self.aliyun.validate(cx)?;
        let (output_dir, output_s3, state_dir) = self.output.validate(self.state, cx)?;
        let assembly = self.assembly.validate(cx)?;
        let spool = self.spool.validate(&assembly, cx)?;
        let log = self.log.validate(cx)?;
        let cluster = self.cluster.validate(cx)?;
        let ops = validate_ops(
            RawOpsConfig {
                metrics: self.metrics,
                health: self.health,
                retention: self.retention,
                hook: self.hook,
            },
            cx,
        )?;
        if output_s3.is_some() && ops.retention.limits.any() {
            return Err(cx.invalid(
                "retention",
                "max_age",
                None,
                "[retention] sweeps the output folder, but [output] backend is \"s3\"; expected \
                 no [retention] limits: set a lifecycle rule on the bucket instead (see \
                 docs/operations.md, \"Write to S3\")",
            ));
        }
        let web = self.web.validate(cx)?;
        Ok(Config {
            aliyun,
            output_dir,
            output_s3,
            state_dir,
            assembly,
            spool,
            log,
            ops,
            web,
            cluster,
        })
    }
}

/// Validates the operations sections (their `validate()` lives in `crate::ops`); their errors
/// name `section.key` and its span, which become the usual `path:line: [section] key: message`.
/// Then the checks that only warn, or that need the host.
fn validate_ops(raw: RawOpsConfig, cx: &Cx) -> Result<OpsConfig, ConfigError> {
    let listen_line = cx.at(&raw.metrics.listen);
    let command_line = cx.at(&raw.hook.command);
    let ops = raw.validate().map_err(|e| match e {
        OpsConfigError::Invalid { key, why, span } => {
            let (table, key) = key.split_once('.').unwrap_or(("", key));
            cx.invalid(table, key, span.map(|s| cx.line(s)), why)
        }
    })?;
    if let Some(addr) = ops.metrics.listen.filter(|a| a.ip().is_unspecified()) {
        cx.warn(
            "metrics",
            "listen",
            listen_line,
            format!(
                "{addr} listens on every network interface and the listener has no \
                 authentication; use a loopback or private address (e.g. \"127.0.0.1:{}\") \
                 or firewall the port",
                addr.port()
            ),
        );
    }
    if let (Some(hook), Some(host)) = (&ops.hook, &cx.host) {
        crate::ops::hook::check_program(&hook.command[0], host.path_env.as_deref())
            .map_err(|why| cx.invalid("hook", "command", command_line, why))?;
    }
    Ok(ops)
}

/// Where images and state go when the config names no folder: the platform data folder
/// (`$XDG_DATA_HOME/receiver`, usually `~/.local/share/receiver`), or `None` without a home.
pub fn default_data_dir() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "receiver").map(|d| d.data_dir().to_owned())
}

//! `receiver.toml`: loading, validation, defaults, redacted printing.
//!
//! (Skeleton: the field set below is the contract other modules build on.)

use std::path::PathBuf;
use std::time::Duration;

/// A secret string: never printed by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself, for signing only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

/// HMAC used for the aksign password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignMethod {
    /// `hmacsha1` (the default and what the official demos use).
    HmacSha1,
    /// `hmacsha256`.
    HmacSha256,
    /// `hmacmd5`.
    HmacMd5,
}

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
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable (default on a terminal).
    Text,
    /// One JSON object per line (journald, collectors).
    Json,
}

/// The whole validated configuration.
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
}

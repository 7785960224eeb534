//! The camera simulator behind `receiver simulate-camera`: publishes JPEG files to a real Aliyun
//! IoT product over MQTT exactly as the ESP32-CAM firmware does, or prints the messages
//! (`--dry-run`).
//!
//! A run signs in as the device (HMAC-SHA256, [`sign`]), encodes every picture with the same
//! encoder as the firmware and the golden vectors ([`receiver_protocol::wire::encode_payloads`]), and posts the
//! chunks as thing-model property posts to `/sys/<pk>/<dn>/thing/event/property/post`, paced and
//! windowed by [`uplink::Uplink`] so it stays under Aliyun's silent per-device limits.
//!
//! # Layout
//!
//! - [`sign`]: device sign-in (client id, user name, password); pure.
//! - [`uplink`]: window, pacing, resend, reconnect policy; a pure state machine.
//! - `publish` (private): the rumqttc link and the async loop driving the uplink.
//! - this module: [`SimulateArgs`] (embedded by the CLI), validation, picture loading,
//!   [`simulate`], the dry run and the report.
//!
//! # Picture ids
//!
//! Pictures get consecutive ids from `--first-pid`. Without it the first id is the current time
//! in tenths of a second modulo 4 294 967 (so it is also its own Alink id prefix and the Alink ids
//! stay unique for about five days): a rerun does not reuse the ids of an earlier run unless that
//! run sent more than ten pictures per second.
//!
//! # v1 and reconnects
//!
//! v1 chunks carry no sequence number: the receiver orders them by arrival. After a reconnect the
//! unacknowledged chunks are sent again, and a chunk the broker had received but not acknowledged
//! arrives twice, which a v1 picture cannot survive. v2 pictures are immune (pid + seq + CRC). This
//! is a property of the v1 format, reproduced faithfully, not something the simulator can fix.

pub use receiver_protocol::device_sign as sign;
pub mod uplink;

mod publish;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;

use receiver_protocol::wire::{self, EncodeError, Format};
use receiver_protocol::{Secret, SignMethod};
use sign::{DeviceIdentity, MqttCredentials, SecureMode};
use uplink::{Picture, PictureReport, Qos, Uplink, UplinkConfig};

/// Region of the legacy public instance host when `--host` is not given.
pub const DEFAULT_REGION: &str = "cn-shanghai";
/// Keepalive range Aliyun accepts, in seconds.
pub const KEEPALIVE_RANGE: std::ops::RangeInclusive<u64> = 30..=1200;
/// Aliyun's per-device limit on QoS 1 publishes per second (excess is dropped silently).
pub const QOS1_RATE_LIMIT: f64 = 10.0;
/// Aliyun's per-device limit on QoS 0 publishes per second.
pub const QOS0_RATE_LIMIT: f64 = 30.0;
/// Aliyun's limit on unacknowledged QoS 1 publishes from one client.
pub const MAX_WINDOW: usize = 100;
/// Largest MQTT publish Aliyun accepts (bytes, whole packet).
pub const MAX_PUBLISH_BYTES: usize = 256 * 1024;
/// Longest topic Aliyun accepts (bytes).
pub const MAX_TOPIC_BYTES: usize = 128;
/// Longest device client id (before the `|...|` sign-in parameters).
pub const MAX_CLIENT_ID: usize = 64;
/// Size of the generated sample frames.
pub const SAMPLE_SIZE: (u32, u32) = (640, 480);
/// A publish not acknowledged within this time resets the connection.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(30);

/// Arguments of `receiver simulate-camera` (clap derive; the CLI embeds it with
/// `#[command(flatten)]` or as a subcommand's args).
#[derive(clap::Args, Debug, Clone)]
pub struct SimulateArgs {
    /// MQTT host. Default: the legacy public instance `<product-key>.iot-as-mqtt.<region>.aliyuncs.com`;
    /// new instances show theirs in the console, e.g. `iot-06z00xxxxxxx.mqtt.iothub.aliyuncs.com`.
    #[arg(long)]
    pub host: Option<String>,
    /// Region of the legacy public instance host (used when --host is not given).
    #[arg(long, default_value = DEFAULT_REGION)]
    pub region: String,
    /// MQTT port. Default: 8883 with TLS (Aliyun's own root CA: pass it with --ca-file; the
    /// GlobalSign-rooted TLS endpoint is port 1883), 1883 without.
    #[arg(long)]
    pub port: Option<u16>,
    /// Use TLS (the default; `securemode=2`).
    #[arg(long, overrides_with = "no_tls")]
    pub tls: bool,
    /// Use plain TCP (`securemode=3`; disabled by default on new Enterprise instances).
    #[arg(long, overrides_with = "tls")]
    pub no_tls: bool,
    /// PEM file with the CA certificate(s) to trust for TLS. Default: the Mozilla roots
    /// (webpki-roots), which include GlobalSign Root R1 but not Aliyun's own root.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// The product's ProductKey.
    #[arg(long)]
    pub product_key: String,
    /// The device's DeviceName.
    #[arg(long)]
    pub device_name: String,
    /// The device's DeviceSecret (required unless --dry-run). Never printed.
    #[arg(long, env = "CAMERA_DEVICE_SECRET", hide_env_values = true, value_parser = parse_secret)]
    pub device_secret: Option<Secret>,
    /// MQTT client id before the sign-in parameters (≤ 64 characters). Default: `<pk>.<dn>`, as
    /// Aliyun's SDK does.
    #[arg(long)]
    pub client_id: Option<String>,
    /// Sign-in timestamp in ms. Default: the current time at every attempt. Aliyun does not check
    /// freshness (its C SDK always signs 2524608000000); fixing it makes the password predictable.
    #[arg(long, value_name = "MS")]
    pub timestamp: Option<u64>,
    /// Wire format of the `img` property.
    #[arg(long, default_value = "v2")]
    pub format: Format,
    /// Chunk size: bytes per piece in v2 (multiple of 3; default 7200), hex characters per message
    /// in v1 (even; default 800).
    #[arg(long)]
    pub chunk: Option<usize>,
    /// Most unacknowledged QoS 1 publishes at once (1..=100).
    #[arg(long, default_value_t = 4)]
    pub window: usize,
    /// Most publishes per second (Aliyun drops more than 10 QoS 1 or 30 QoS 0 per second per device
    /// silently).
    #[arg(long, default_value_t = 8.0)]
    pub rate: f64,
    /// MQTT QoS of the posts: 0 or 1.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub qos: u8,
    /// MQTT keepalive in seconds (Aliyun accepts 30..=1200).
    #[arg(long, default_value_t = 120)]
    pub keepalive: u64,
    /// Picture id of the first picture; the next ones count up (wrapping like the firmware's
    /// counter). Default: the current time in tenths of a second modulo 4294967, so a rerun does
    /// not reuse the ids of an earlier run.
    #[arg(long)]
    pub first_pid: Option<u32>,
    /// Send the pictures again and again (new picture ids) until interrupted.
    #[arg(long = "loop")]
    pub repeat: bool,
    /// Least time between the starts of two pictures, e.g. `10s` (a camera's capture period).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub interval: Option<Duration>,
    /// Without JPEG paths: how many sample frames to generate (640x480).
    #[arg(long, default_value_t = 1)]
    pub frames: u32,
    /// Print the MQTT messages instead of connecting.
    #[arg(long)]
    pub dry_run: bool,
    /// JPEG files, or folders whose `*.jpg`/`*.jpeg` files are sent in name order.
    #[arg(value_name = "JPEG_OR_DIR")]
    pub paths: Vec<PathBuf>,
}

fn parse_secret(s: &str) -> Result<Secret, String> {
    if s.is_empty() {
        return Err("the device secret is empty".into());
    }
    Ok(Secret::new(s))
}

/// Why a simulation could not run or stopped.
#[derive(Debug, thiserror::Error)]
pub enum CameraError {
    /// A flag's value is unusable; `flag` names it.
    #[error("{flag}: {reason}")]
    InvalidArg {
        /// The flag, e.g. `--keepalive`.
        flag: &'static str,
        /// What is wrong and what is accepted.
        reason: String,
    },
    /// A file or folder could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A file is not a JPEG (it must start with FF D8 and end with FF D9).
    #[error("{}: not a JPEG (it must start with FF D8 and end with FF D9)", path.display())]
    NotJpeg {
        /// The path.
        path: PathBuf,
    },
    /// The encoder refused a picture.
    #[error("{name}: {source}")]
    Encode {
        /// The picture's name.
        name: String,
        /// The encoder's reason.
        source: EncodeError,
    },
    /// A sample frame could not be generated.
    #[error("sample frame: {0}")]
    Sample(#[from] crate::sample::SampleError),
    /// The TLS configuration could not be built.
    #[error("TLS: {0}")]
    Tls(String),
    /// The broker refused the sign-in (wrong product key, device name or secret); not retried.
    #[error("the broker refused the sign-in ({0}): check --product-key, --device-name and --device-secret")]
    Refused(String),
    /// The MQTT client stopped unexpectedly.
    #[error("MQTT link: {0}")]
    Link(String),
    /// Writing the dry run or the progress failed.
    #[error("output: {0}")]
    Output(#[source] std::io::Error),
}

impl CameraError {
    fn arg(flag: &'static str, reason: impl Into<String>) -> Self {
        CameraError::InvalidArg {
            flag,
            reason: reason.into(),
        }
    }
}

/// What a simulation did.
#[derive(Debug, Clone, PartialEq)]
pub struct SimReport {
    /// Every picture sent (all its messages acknowledged), in completion order.
    pub pictures: Vec<PictureReport>,
    /// MQTT publishes made, resends included (dry run: messages printed).
    pub messages: u64,
    /// Of those, resends after a reconnect.
    pub resends: u64,
    /// Connection attempts.
    pub connects: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// True when the shutdown token stopped the run before the end.
    pub interrupted: bool,
    /// Pictures started or queued but not completely acknowledged.
    pub unfinished: usize,
    /// True for `--dry-run`.
    pub dry_run: bool,
}

impl SimReport {
    /// One line of totals, e.g. `sent 10 pictures (2.3 MB JPEG) in 50 messages (0 resends) over 1
    /// connection in 6.2 s`.
    pub fn summary(&self) -> String {
        let jpeg: usize = self.pictures.iter().map(|p| p.jpeg_bytes).sum();
        let wire: usize = self.pictures.iter().map(|p| p.wire_bytes).sum();
        let verb = if self.dry_run { "printed" } else { "sent" };
        let mut s = format!(
            "{verb} {} picture{} ({jpeg} B JPEG, {wire} B payload) in {} message{} ({} resend{}) over {} connection{} in {:.2} s",
            self.pictures.len(),
            plural(self.pictures.len() as u64),
            self.messages,
            plural(self.messages),
            self.resends,
            plural(self.resends),
            self.connects,
            plural(self.connects),
            self.elapsed.as_secs_f64()
        );
        if self.interrupted {
            s.push_str(&format!(
                "; interrupted with {} picture{} unfinished",
                self.unfinished,
                plural(self.unfinished as u64)
            ));
        }
        s
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// The validated plan of a run.
struct Plan {
    device: DeviceIdentity,
    has_secret: bool,
    host: String,
    port: u16,
    tls: bool,
    ca_file: Option<PathBuf>,
    client_id: String,
    timestamp: Option<u64>,
    format: Format,
    chunk: usize,
    qos: Qos,
    keepalive: Duration,
    first_pid: u32,
    repeat: bool,
    frames: Frames,
    topic: String,
    uplink: UplinkConfig,
}

#[derive(Debug, Clone)]
enum Frames {
    Files(Vec<PathBuf>),
    Samples(u32),
}

fn valid_name(flag: &'static str, s: &str) -> Result<(), CameraError> {
    if s.is_empty() {
        return Err(CameraError::arg(flag, "must not be empty"));
    }
    if let Some(c) = s
        .chars()
        .find(|c| matches!(c, '/' | '+' | '#' | '&' | '|') || c.is_whitespace() || c.is_control())
    {
        return Err(CameraError::arg(
            flag,
            format!("{s:?} contains {c:?}, which cannot appear in a topic or user name"),
        ));
    }
    Ok(())
}

fn time_based_pid() -> u32 {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    ((ms / 100) % 4_294_967) as u32
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl SimulateArgs {
    fn plan(&self) -> Result<Plan, CameraError> {
        valid_name("--product-key", &self.product_key)?;
        valid_name("--device-name", &self.device_name)?;
        let tls = !self.no_tls;
        if self.device_secret.is_none() && !self.dry_run {
            return Err(CameraError::arg(
                "--device-secret",
                "required (or set CAMERA_DEVICE_SECRET) unless --dry-run",
            ));
        }
        if !KEEPALIVE_RANGE.contains(&self.keepalive) {
            return Err(CameraError::arg(
                "--keepalive",
                format!(
                    "{} s is outside 30..=1200 s, which Aliyun rejects",
                    self.keepalive
                ),
            ));
        }
        if self.window == 0 || self.window > MAX_WINDOW {
            return Err(CameraError::arg(
                "--window",
                format!(
                    "{} is outside 1..={MAX_WINDOW} (Aliyun stops reading a client with more than 100 unacknowledged publishes)",
                    self.window
                ),
            ));
        }
        let qos = if self.qos == 0 {
            Qos::AtMostOnce
        } else {
            Qos::AtLeastOnce
        };
        let limit = match qos {
            Qos::AtMostOnce => QOS0_RATE_LIMIT,
            Qos::AtLeastOnce => QOS1_RATE_LIMIT,
        };
        if !(self.rate.is_finite() && self.rate > 0.0) {
            return Err(CameraError::arg(
                "--rate",
                "must be a positive number of messages per second",
            ));
        }
        if self.rate > limit {
            return Err(CameraError::arg(
                "--rate",
                format!(
                    "{} msgs/s exceeds Aliyun's per-device limit of {limit} QoS {} messages per second; the excess would be dropped silently",
                    self.rate, self.qos
                ),
            ));
        }
        let client_id = self
            .client_id
            .clone()
            .unwrap_or_else(|| format!("{}.{}", self.product_key, self.device_name));
        if client_id.is_empty() || client_id.chars().count() > MAX_CLIENT_ID {
            return Err(CameraError::arg(
                "--client-id",
                format!("must be 1..={MAX_CLIENT_ID} characters (Aliyun's limit)"),
            ));
        }
        if let Some(c) = client_id
            .chars()
            .find(|c| matches!(c, '|' | ',' | '=') || c.is_whitespace() || c.is_control())
        {
            return Err(CameraError::arg(
                "--client-id",
                format!("contains {c:?}, which would break the sign-in parameters"),
            ));
        }
        let host = match &self.host {
            Some(h) if h.trim().is_empty() => return Err(CameraError::arg("--host", "is empty")),
            Some(h) => h.trim().to_string(),
            None => {
                if self.region.is_empty() || self.region.contains(['/', ':', ' ']) {
                    return Err(CameraError::arg(
                        "--region",
                        "is not a region id such as cn-shanghai",
                    ));
                }
                sign::legacy_host(&self.product_key, &self.region)
            }
        };
        let port = self.port.unwrap_or(if tls { 8883 } else { 1883 });
        if port == 0 {
            return Err(CameraError::arg("--port", "must not be 0"));
        }
        if self.ca_file.is_some() && !tls {
            return Err(CameraError::arg(
                "--ca-file",
                "only applies with TLS (drop --no-tls)",
            ));
        }
        let chunk = self.chunk.unwrap_or(self.format.default_chunk());
        // The encoder's own checks, on a minimal JPEG, name the flag.
        if let Err(e) = wire::encode_payloads(self.format, &[0xFF, 0xD8, 0xFF, 0xD9], 0, chunk) {
            return Err(CameraError::arg("--chunk", e.to_string()));
        }
        let topic = wire::device_topic(&self.product_key, &self.device_name);
        if topic.len() > MAX_TOPIC_BYTES {
            return Err(CameraError::arg(
                "--device-name",
                format!(
                    "the topic {topic:?} is {} bytes; Aliyun allows {MAX_TOPIC_BYTES}",
                    topic.len()
                ),
            ));
        }
        let largest = largest_payload(self.format, chunk);
        // PUBLISH: fixed header ≤ 5, topic length 2 + topic, packet id 2, payload.
        if 5 + 2 + topic.len() + 2 + largest > MAX_PUBLISH_BYTES {
            return Err(CameraError::arg(
                "--chunk",
                format!("messages of {largest} B exceed the MQTT publish limit of {MAX_PUBLISH_BYTES} B"),
            ));
        }
        if self.frames == 0 && self.paths.is_empty() {
            return Err(CameraError::arg("--frames", "must be at least 1"));
        }
        let frames = if self.paths.is_empty() {
            Frames::Samples(self.frames)
        } else {
            let files = list_jpegs(&self.paths)?;
            check_chunk_counts(&files, self.format, chunk)?;
            Frames::Files(files)
        };
        let interval = self.interval.unwrap_or(Duration::ZERO);
        Ok(Plan {
            device: DeviceIdentity {
                product_key: self.product_key.clone(),
                device_name: self.device_name.clone(),
                device_secret: self.device_secret.clone().unwrap_or_default(),
            },
            has_secret: self.device_secret.is_some(),
            host,
            port,
            tls,
            ca_file: self.ca_file.clone(),
            client_id,
            timestamp: self.timestamp,
            format: self.format,
            chunk,
            qos,
            keepalive: Duration::from_secs(self.keepalive),
            first_pid: self.first_pid.unwrap_or_else(time_based_pid),
            repeat: self.repeat,
            frames,
            topic,
            uplink: UplinkConfig {
                window: self.window,
                rate: self.rate,
                qos,
                interval,
                ack_timeout: ACK_TIMEOUT,
                seed: unix_ms() | 1,
                ..UplinkConfig::default()
            },
        })
    }
}

/// The longest payload the encoder makes with this chunk setting (upper bound).
fn largest_payload(format: Format, chunk: usize) -> usize {
    let value = match format {
        Format::V1 => chunk,
        Format::V2 => wire::MAX_V2_HEADER + chunk.div_ceil(3) * 4,
    };
    wire::alink_payload(u32::MAX, "").len() + value
}

/// Expands folders into their `*.jpg`/`*.jpeg` files (name order); files are taken as given.
fn list_jpegs(paths: &[PathBuf]) -> Result<Vec<PathBuf>, CameraError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CameraError::Io { path, source }
    };
    let mut out = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(io(p))?;
        if meta.is_dir() {
            let mut found = Vec::new();
            for entry in std::fs::read_dir(p).map_err(io(p))? {
                let entry = entry.map_err(io(p))?;
                let path = entry.path();
                let is_jpeg = path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                    e.eq_ignore_ascii_case("jpg") || e.eq_ignore_ascii_case("jpeg")
                });
                if is_jpeg && entry.file_type().map_err(io(&path))?.is_file() {
                    found.push(path);
                }
            }
            if found.is_empty() {
                return Err(CameraError::arg(
                    "JPEG_OR_DIR",
                    format!("{} holds no *.jpg or *.jpeg file", p.display()),
                ));
            }
            found.sort();
            out.extend(found);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// Rejects, before connecting, files the encoder would refuse (empty, too many v2 chunks).
fn check_chunk_counts(files: &[PathBuf], format: Format, chunk: usize) -> Result<(), CameraError> {
    for f in files {
        let len = std::fs::metadata(f)
            .map_err(|source| CameraError::Io {
                path: f.clone(),
                source,
            })?
            .len() as usize;
        let name = display_name(f);
        if len == 0 {
            return Err(CameraError::Encode {
                name,
                source: EncodeError::EmptyImage,
            });
        }
        if format == Format::V2 {
            let count = len.div_ceil(chunk);
            if count > wire::MAX_V2_CHUNKS as usize {
                return Err(CameraError::arg(
                    "--chunk",
                    format!(
                        "{name} ({len} B) would need {count} chunks of {chunk} B; v2 allows {}: raise --chunk",
                        wire::MAX_V2_CHUNKS
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn display_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// Yields the pictures of a run, encoded, with consecutive picture ids.
struct Source {
    frames: Frames,
    label: String,
    index: u64,
    repeat: bool,
    next_pid: u32,
    format: Format,
    chunk: usize,
}

impl Source {
    fn new(plan: &Plan) -> Self {
        Source {
            frames: plan.frames.clone(),
            label: plan.device.device_name.clone(),
            index: 0,
            repeat: plan.repeat,
            next_pid: plan.first_pid,
            format: plan.format,
            chunk: plan.chunk,
        }
    }

    /// The next picture's name and JPEG, or `None` at the end.
    fn next_jpeg(&mut self) -> Result<Option<(String, Vec<u8>)>, CameraError> {
        let (name, jpeg) = match &self.frames {
            Frames::Files(files) => {
                let n = files.len() as u64;
                if n == 0 || (!self.repeat && self.index >= n) {
                    return Ok(None);
                }
                let path = &files[(self.index % n) as usize];
                let jpeg = std::fs::read(path).map_err(|source| CameraError::Io {
                    path: path.clone(),
                    source,
                })?;
                if !wire::has_jpeg_markers(&jpeg) {
                    return Err(CameraError::NotJpeg { path: path.clone() });
                }
                (display_name(path), jpeg)
            }
            Frames::Samples(count) => {
                if !self.repeat && self.index >= u64::from(*count) {
                    return Ok(None);
                }
                let frame = self.index as u32;
                let (w, h) = SAMPLE_SIZE;
                let jpeg = crate::sample::scene_jpeg(w, h, frame, &self.label, 80)?;
                (format!("sample-{:04}.jpg", self.index + 1), jpeg)
            }
        };
        self.index += 1;
        Ok(Some((name, jpeg)))
    }

    fn next_picture(&mut self) -> Result<Option<Picture>, CameraError> {
        let Some((name, jpeg)) = self.next_jpeg()? else {
            return Ok(None);
        };
        let pid = self.next_pid;
        self.next_pid = self.next_pid.wrapping_add(1);
        let payloads =
            wire::encode_payloads(self.format, &jpeg, pid, self.chunk).map_err(|source| {
                CameraError::Encode {
                    name: name.clone(),
                    source,
                }
            })?;
        Ok(Some(Picture {
            name,
            pid,
            jpeg_bytes: jpeg.len(),
            payloads: payloads.into_iter().map(Arc::from).collect(),
        }))
    }
}

/// The MQTT URL-ish form of the endpoint, for messages.
fn endpoint(plan: &Plan) -> String {
    let scheme = if plan.tls { "mqtts" } else { "mqtt" };
    format!("{scheme}://{}:{}", plan.host, plan.port)
}

fn secure_mode(plan: &Plan) -> SecureMode {
    if plan.tls {
        SecureMode::Tls
    } else {
        SecureMode::Tcp
    }
}

fn credentials(plan: &Plan) -> Result<MqttCredentials, CameraError> {
    let ts = plan.timestamp.unwrap_or_else(unix_ms);
    Ok(sign::sign_in(
        &plan.device,
        &plan.client_id,
        secure_mode(plan),
        SignMethod::HmacSha256,
        ts,
    ))
}

fn tls_config(plan: &Plan) -> Result<Arc<rustls::ClientConfig>, CameraError> {
    let mut roots = rustls::RootCertStore::empty();
    match &plan.ca_file {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|source| CameraError::Io {
                path: path.clone(),
                source,
            })?;
            let certs = rustls_pemfile::certs(&mut pem.as_slice())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| CameraError::arg("--ca-file", format!("{}: {e}", path.display())))?;
            let (added, _ignored) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(CameraError::arg(
                    "--ca-file",
                    format!("{} holds no usable PEM certificate", path.display()),
                ));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| CameraError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn out_err(e: std::io::Error) -> CameraError {
    CameraError::Output(e)
}

/// One progress line for a sent picture.
fn picture_line(r: &PictureReport) -> String {
    format!(
        "sent {} pid={}: {} message{}, {} B JPEG, {} B payload in {:.2} s{}",
        r.name,
        r.pid,
        r.chunks,
        plural(r.chunks as u64),
        r.jpeg_bytes,
        r.wire_bytes,
        r.elapsed.as_secs_f64(),
        if r.resends > 0 {
            format!(" ({} resent)", r.resends)
        } else {
            String::new()
        }
    )
}

/// Runs the simulator: publishes the pictures `args` names (or sample frames) as the camera would,
/// writing one progress line per picture and a summary to `out`; with `--dry-run` writes the MQTT
/// messages to `out` instead of connecting (lines starting with `#` describe, every other line is
/// one payload, exactly as published).
///
/// Returns when every picture is acknowledged (with `--loop`: only when `shutdown` fires), when the
/// broker refuses the sign-in, or on an unusable argument (the error names the flag). Connection
/// losses are retried with backoff, at most 5 attempts a minute.
pub async fn simulate(
    args: SimulateArgs,
    out: &mut dyn Write,
    shutdown: CancellationToken,
) -> Result<SimReport, CameraError> {
    let started = tokio::time::Instant::now();
    let plan = args.plan()?;
    if args.dry_run {
        return dry_run(&plan, out, started);
    }
    let tls = if plan.tls {
        Some(tls_config(&plan)?)
    } else {
        None
    };
    tracing::info!(
        endpoint = %endpoint(&plan),
        client_id = %plan.client_id,
        topic = %plan.topic,
        format = plan.format.as_str(),
        chunk = plan.chunk,
        "simulating camera"
    );
    let mut link = publish::MqttLink::start(publish::LinkSettings {
        host: plan.host.clone(),
        port: plan.port,
        tls,
        keepalive: plan.keepalive,
        topic: plan.topic.clone(),
        qos: plan.qos,
        window: plan.uplink.window,
        max_publish_bytes: MAX_PUBLISH_BYTES,
    });
    let mut uplink = Uplink::new(plan.uplink.clone(), tokio::time::Instant::now().into_std());
    let mut source = Source::new(&plan);
    let mut next = || source.next_picture();
    let sign = || credentials(&plan);
    let mut show = |r: &PictureReport| writeln!(out, "{}", picture_line(r)).map_err(out_err);
    let outcome = publish::drive(
        &mut link,
        &mut uplink,
        &mut next,
        &sign,
        &mut show,
        &shutdown,
    )
    .await?;
    let stats = uplink.stats();
    let report = SimReport {
        pictures: outcome.pictures,
        messages: stats.published,
        resends: stats.resends,
        connects: stats.connects,
        elapsed: started.elapsed(),
        interrupted: outcome.interrupted,
        unfinished: uplink.pending_pictures(),
        dry_run: false,
    };
    writeln!(out, "{}", report.summary()).map_err(out_err)?;
    Ok(report)
}

/// `--dry-run`: prints what would be sent; the secret never appears.
fn dry_run(
    plan: &Plan,
    out: &mut dyn Write,
    started: tokio::time::Instant,
) -> Result<SimReport, CameraError> {
    let ts = plan.timestamp.unwrap_or_else(unix_ms);
    let creds = sign::sign_in(
        &plan.device,
        &plan.client_id,
        secure_mode(plan),
        SignMethod::HmacSha256,
        ts,
    );
    let password = if plan.has_secret {
        "<redacted: 64 upper-case hex digits, HMAC-SHA256 of the sign-in parameters>"
    } else {
        "<needs --device-secret>"
    };
    let qos = match plan.qos {
        Qos::AtMostOnce => 0,
        Qos::AtLeastOnce => 1,
    };
    let w = &mut *out;
    writeln!(
        w,
        "# dry run: nothing is sent. Lines not starting with '#' are MQTT payloads."
    )
    .map_err(out_err)?;
    writeln!(
        w,
        "# CONNECT {} clientId={} username={} password={password} keepalive={}s cleanSession=1",
        endpoint(plan),
        creds.client_id,
        creds.username,
        plan.keepalive.as_secs()
    )
    .map_err(out_err)?;
    writeln!(
        w,
        "# PUBLISH topic={} qos={qos} retain=0 (every payload below)",
        plan.topic
    )
    .map_err(out_err)?;
    if plan.repeat {
        writeln!(w, "# --loop: showing one pass").map_err(out_err)?;
    }
    let mut source = Source {
        repeat: false,
        ..Source::new(plan)
    };
    let mut pictures = Vec::new();
    let mut messages = 0u64;
    while let Some(p) = source.next_picture()? {
        writeln!(
            w,
            "# picture {} pid={} {} B -> {} message{} ({} chunk {})",
            p.name,
            p.pid,
            p.jpeg_bytes,
            p.payloads.len(),
            plural(p.payloads.len() as u64),
            plan.format.as_str(),
            plan.chunk
        )
        .map_err(out_err)?;
        for payload in &p.payloads {
            writeln!(w, "{payload}").map_err(out_err)?;
        }
        messages += p.payloads.len() as u64;
        pictures.push(PictureReport {
            name: p.name,
            pid: p.pid,
            chunks: p.payloads.len(),
            jpeg_bytes: p.jpeg_bytes,
            wire_bytes: p.payloads.iter().map(|s| s.len()).sum(),
            resends: 0,
            elapsed: Duration::ZERO,
        });
    }
    let report = SimReport {
        pictures,
        messages,
        resends: 0,
        connects: 0,
        elapsed: started.elapsed(),
        interrupted: false,
        unfinished: 0,
        dry_run: true,
    };
    let at_rate = messages.saturating_sub(1) as f64 / plan.uplink.rate;
    writeln!(
        w,
        "# {}; at --rate {} sending takes at least {at_rate:.2} s",
        report.summary(),
        plan.uplink.rate
    )
    .map_err(out_err)?;
    Ok(report)
}

//! `receiver bench`: throughput, latency, memory and CPU of the receiver, measured as its own
//! process, against the fake Aliyun endpoint over TLS on loopback; plus a side-by-side baseline
//! against the seed tutorial's Node.js receiver on a third-party (rhea) AMQP server.
//!
//! Method (see BENCHMARKS.md):
//!
//! 1. Generate the stream first: real JPEG frames of 10-25 KB, many devices interleaved, v1 and v2,
//!    every message already laid out as Aliyun forwards it ([`stream`]).
//! 2. Start the fake endpoint in this process and the receiver as a child process
//!    (`receiver --config <generated> run`, production logging, `[metrics] listen` on port 0).
//! 3. Once its links are attached, sample the child's CPU (`/proc/<pid>/stat`), queue the whole
//!    stream at once (or paced, for the latency run) and wait until the fake has seen every
//!    message accepted. Then sample CPU and peak RSS (`VmHWM`) again and scrape `/metrics` for
//!    the images written and the image latency histogram (last chunk received to file durable).
//! 4. Repeat each scenario `--runs` times; report medians.
//!
//! The baseline runs three consumers in turn on the same stream from the same rhea server: the
//! seed's Node.js receiver, this receiver, and this receiver's transport alone ([`floor`]).

pub mod child;
pub mod floor;
pub mod jpegcheck;
pub mod redis;
pub mod seed;
pub mod stream;

use crate::tools::FakeClientConfig as _;
use child::{ProcSample, ReceiverProcess, Scraped};
use receiver_testkit::fake::{FakeAliyun, FakeConfig};
use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use stream::{JpegPool, Stream, StreamSpec};

/// Storage mode of the receiver under test.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// `[spool] enabled = false`: chunks only in memory (images are still fsynced).
    Memory,
    /// `[spool] enabled = true`: every chunk fsynced in the spool before it is accepted.
    Durable,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Memory => "memory",
            Mode::Durable => "durable",
        }
    }
}

/// Where the receiver under test writes its pictures.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputKind {
    /// `[output] backend = "fs"`: a local folder.
    #[default]
    Fs,
    /// `[output] backend = "s3"`: a SeaweedFS S3 gateway on loopback that the bench starts
    /// (`--weed`).
    S3,
}

impl OutputKind {
    fn as_str(self) -> &'static str {
        match self {
            OutputKind::Fs => "fs",
            OutputKind::S3 => "s3",
        }
    }
}

/// Which parts to run.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Full-speed runs: modes x connections x devices.
    Throughput,
    /// Paced run (`--latency-rate`) for the image latency.
    Latency,
    /// The seed's Node.js receiver and this one on a third-party server.
    Baseline,
    /// CPU per picture of the JPEG checks (exact, structural) beside a full decode, in process.
    Jpeg,
}

/// `receiver bench` options.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// A ~30 s smoke run: fewer messages, at most 1 000 devices, one run per scenario.
    #[arg(long)]
    pub quick: bool,
    /// Parts to run.
    #[arg(long, value_enum, value_delimiter = ',', default_values = ["throughput", "latency", "baseline", "jpeg"])]
    pub parts: Vec<Part>,
    /// Storage modes.
    #[arg(long, value_enum, value_delimiter = ',', default_values = ["memory", "durable"])]
    pub modes: Vec<Mode>,
    /// Outputs to measure each throughput and latency scenario with (`s3`: against a SeaweedFS
    /// started on loopback for the bench).
    #[arg(long, value_enum, value_delimiter = ',', default_values = ["fs"])]
    pub outputs: Vec<OutputKind>,
    /// SeaweedFS's `weed` binary for `--outputs s3` (default: `$RECEIVER_WEED`, else what
    /// `scripts/s3-test-server.sh` installs).
    #[arg(long)]
    pub weed: Option<PathBuf>,
    /// Cluster mode: instance counts to measure, e.g. `1,2,3`. For each, that many receivers
    /// with `[cluster]` share one `redis-server` that the bench starts on loopback (`--redis`)
    /// and one consumer group of the fake endpoint (which deals deliveries over every
    /// connection). Default: none (no cluster runs).
    #[arg(long, value_delimiter = ',')]
    pub instances: Vec<u32>,
    /// The `redis-server` binary for `--instances` (default: /usr/bin/redis-server, else the
    /// PATH's).
    #[arg(long)]
    pub redis: Option<PathBuf>,
    /// Give the object store CPUs of its own, as a real store has: the bench (with the fake
    /// endpoint) and the receivers under test on CPU 0, the SeaweedFS of `--outputs s3` on the
    /// others; the fs runs are pinned the same way, so both outputs get one CPU.
    #[arg(long)]
    pub pin_store: bool,
    /// AMQP connection counts to measure.
    #[arg(long, value_delimiter = ',', default_values = ["1", "4"])]
    pub connections: Vec<u32>,
    /// Device counts (uploading at once, interleaved) [default: 1,100,10000; --quick: 1,100,1000].
    #[arg(long, value_delimiter = ',')]
    pub devices: Vec<u32>,
    /// Messages per throughput run (more when the devices need it: one picture each at least)
    /// [default: 40000; --quick: 8000].
    #[arg(long)]
    pub messages: Option<u64>,
    /// Runs per scenario; medians are reported [default: 3; --quick: 1].
    #[arg(long)]
    pub runs: Option<u32>,
    /// Messages per second of the latency run.
    #[arg(long, default_value_t = 1000)]
    pub latency_rate: u32,
    /// Length of the latency run, seconds [default: 6; --quick: 3].
    #[arg(long)]
    pub latency_seconds: Option<u64>,
    /// Devices in the latency run.
    #[arg(long, default_value_t = 100)]
    pub latency_devices: u32,
    /// Messages in the baseline stream (one device, sequential v1 pictures)
    /// [default: 40000; --quick: 6000].
    #[arg(long)]
    pub baseline_messages: Option<u64>,
    /// Link credit per connection (default: the configuration's default).
    #[arg(long)]
    pub credit: Option<u32>,
    /// `[spool] batch_delay` of the receiver under test, e.g. "2ms" (default: the configuration's).
    #[arg(long)]
    pub batch_delay: Option<String>,
    /// `[assembly] memory_limit` of the receiver under test, e.g. "0" (no limit) or "64 MiB"
    /// (default: the configuration's).
    #[arg(long)]
    pub memory_limit: Option<String>,
    /// Where the seed receiver and stream server are (needs `npm ci --prefix bench/seed`).
    #[arg(long, default_value = "bench/seed")]
    pub seed_dir: PathBuf,
    /// Scratch folder (default: `target/bench-<pid>` in a cargo project, else under the system
    /// temp dir; removed at the end).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Also write every figure as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// The receiver binary to measure (default: this executable).
    #[arg(long, hide = true)]
    pub receiver_bin: Option<PathBuf>,
    /// Give up on one run after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub run_timeout: u64,
}

/// Why the bench failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The fake endpoint failed.
    #[error("fake Aliyun endpoint: {0}")]
    Fake(#[from] receiver_testkit::fake::FakeError),
    /// Stream generation failed.
    #[error(transparent)]
    Stream(#[from] stream::StreamError),
    /// The process under test failed.
    #[error(transparent)]
    Child(#[from] child::ChildError),
    /// A file or folder problem.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A run did not complete.
    #[error("{0}")]
    Run(String),
}

fn io_err<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> BenchError + 'a {
    move |source| BenchError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// One run's figures.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RunFigures {
    /// Messages accepted.
    pub messages: u64,
    /// Pictures in the stream.
    pub images: u64,
    /// Images the receiver reported written.
    pub images_written: u64,
    /// Pictures or chunks quarantined.
    pub quarantined: u64,
    /// Quarantined, by reason.
    pub quarantine_reasons: std::collections::BTreeMap<String, u64>,
    /// JPEG bytes in the stream.
    pub image_bytes: u64,
    /// From queueing the stream to the last accept, seconds.
    pub seconds: f64,
    /// Receiver CPU (user + system) over that window, seconds.
    pub cpu_seconds: f64,
    /// Receiver peak RSS (VmHWM), bytes.
    pub peak_rss: u64,
    /// Largest `receiver_assembly_bytes` seen while sampling.
    pub peak_assembly_bytes: u64,
    /// Largest `receiver_open_assemblies` seen while sampling.
    pub peak_open: u64,
    /// Image latency p50, ms.
    pub latency_p50_ms: Option<f64>,
    /// Image latency p99, ms.
    pub latency_p99_ms: Option<f64>,
    /// Images in the latency histogram.
    pub latency_count: u64,
    /// CPU of this process (the fake endpoint) over the window, seconds.
    pub driver_cpu_seconds: f64,
    /// Load average (1 min) when the run started.
    pub load_before: f64,
    /// Context switches of the receiver's threads over the window.
    pub ctx_switches: u64,
    /// CPU of the object store's server process over the window, seconds (s3 output only).
    pub store_cpu_seconds: Option<f64>,
    /// Cluster mode: each instance's CPU over the window, seconds (empty otherwise; then
    /// `cpu_seconds` is their sum).
    pub instance_cpu_seconds: Vec<f64>,
    /// Cluster mode: the deliveries each instance accepted (`receiver_accepted_total`).
    pub instance_messages: Vec<u64>,
    /// Cluster mode: the pictures each instance wrote.
    pub instance_images_written: Vec<u64>,
    /// Cluster mode: CPU of `redis-server` over the window, seconds.
    pub redis_cpu_seconds: Option<f64>,
    /// Cluster mode: the server's client read events over the window (round trips), the
    /// bench's own `INFO` excluded.
    pub redis_round_trips: Option<u64>,
    /// Cluster mode: commands the server processed over the window, the bench's own excluded.
    pub redis_commands: Option<u64>,
}

impl RunFigures {
    /// Messages per second.
    pub fn msgs_per_s(&self) -> f64 {
        self.messages as f64 / self.seconds.max(1e-9)
    }
    /// Image MB (10^6 bytes) per second.
    pub fn mb_per_s(&self) -> f64 {
        self.image_bytes as f64 / 1e6 / self.seconds.max(1e-9)
    }
    /// Receiver CPU microseconds per message.
    pub fn cpu_us_per_msg(&self) -> f64 {
        self.cpu_seconds * 1e6 / self.messages.max(1) as f64
    }
    /// Fake endpoint CPU microseconds per message.
    pub fn driver_us_per_msg(&self) -> f64 {
        self.driver_cpu_seconds * 1e6 / self.messages.max(1) as f64
    }
    /// Cluster mode: `redis-server` CPU microseconds per message.
    pub fn redis_us_per_msg(&self) -> Option<f64> {
        self.redis_cpu_seconds
            .map(|c| c * 1e6 / self.messages.max(1) as f64)
    }
    /// Cluster mode: Redis round trips per message.
    pub fn round_trips_per_msg(&self) -> Option<f64> {
        self.redis_round_trips
            .map(|n| n as f64 / self.messages.max(1) as f64)
    }
    /// Cluster mode: Redis commands per message.
    pub fn commands_per_msg(&self) -> Option<f64> {
        self.redis_commands
            .map(|n| n as f64 / self.messages.max(1) as f64)
    }
    /// Cluster mode: the largest CPU per message of one instance (its CPU over the deliveries
    /// it accepted), microseconds.
    pub fn max_instance_us_per_msg(&self) -> Option<f64> {
        self.instance_cpu_seconds
            .iter()
            .zip(&self.instance_messages)
            .map(|(c, m)| c * 1e6 / (*m).max(1) as f64)
            .reduce(f64::max)
    }
    /// Object store server CPU microseconds per message (s3 output only).
    pub fn store_us_per_msg(&self) -> Option<f64> {
        self.store_cpu_seconds
            .map(|c| c * 1e6 / self.messages.max(1) as f64)
    }
}

/// A scenario and its runs.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScenarioResult {
    /// Short name.
    pub name: String,
    /// Storage mode.
    pub mode: Mode,
    /// Output backend.
    pub output: OutputKind,
    /// Connections.
    pub connections: u32,
    /// Devices uploading at once.
    pub devices: u32,
    /// Paced rate (messages/s), when paced.
    pub rate: Option<u32>,
    /// Cluster mode: receiver instances sharing the consumer group and one Redis.
    pub instances: Option<u32>,
    /// Every run.
    pub runs: Vec<RunFigures>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

impl ScenarioResult {
    /// Median of `f` over the runs.
    pub fn median(&self, f: impl Fn(&RunFigures) -> f64) -> f64 {
        median(self.runs.iter().map(f).collect())
    }
    fn median_opt(&self, f: impl Fn(&RunFigures) -> Option<f64>) -> Option<f64> {
        let v: Vec<f64> = self.runs.iter().filter_map(f).collect();
        (!v.is_empty()).then(|| median(v))
    }
}

/// The baseline's figures.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BaselineResult {
    /// Messages in the stream.
    pub messages: u64,
    /// Runs of the seed receiver: (msg/s, CPU µs/msg, peak RSS bytes, server CPU µs/msg, files).
    pub seed: Vec<(f64, f64, u64, f64, u64)>,
    /// Runs of this receiver (durable) on the same server, same tuple.
    pub receiver: Vec<(f64, f64, u64, f64, u64)>,
    /// Runs of the transport floor (`receiver bench-floor`: the daemon's connection code, every
    /// delivery accepted unread) on the same server, same tuple (files: always 0).
    pub floor: Vec<(f64, f64, u64, f64, u64)>,
    /// Why it was skipped, if it was.
    pub skipped: Option<String>,
}

/// Everything measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchReport {
    /// Machine description.
    pub machine: String,
    /// Scenario results (throughput, then latency).
    pub scenarios: Vec<ScenarioResult>,
    /// The baseline.
    pub baseline: Option<BaselineResult>,
    /// The JPEG checks' CPU per picture (empty when that part was not run).
    pub jpeg_check: Vec<jpegcheck::JpegCheckRow>,
    /// Load average (1, 5, 15 min) at the start and the end.
    pub load: [[f64; 3]; 2],
    /// Wall time of the whole bench, seconds.
    pub seconds: f64,
}

/// Inputs of [`receiver_toml`].
pub struct ReceiverToml<'a> {
    /// AMQP host.
    pub host: &'a str,
    /// AMQP port.
    pub port: u16,
    /// CA to trust.
    pub ca_file: &'a Path,
    /// Credentials.
    pub access_key_id: &'a str,
    /// Credentials.
    pub access_key_secret: &'a str,
    /// Credentials.
    pub iot_instance_id: &'a str,
    /// Credentials.
    pub consumer_group_id: &'a str,
    /// Connections.
    pub connections: u32,
    /// Credit override.
    pub credit: Option<u32>,
    /// Image folder (fs output).
    pub output: &'a Path,
    /// The bucket instead of the folder (s3 output).
    pub s3: Option<S3Toml<'a>>,
    /// State folder.
    pub state: &'a Path,
    /// Spool on.
    pub durable: bool,
    /// `[spool] batch_delay` override.
    pub batch_delay: Option<&'a str>,
    /// `[assembly] memory_limit` override.
    pub memory_limit: Option<&'a str>,
}

/// `[output]` of the s3 backend in [`receiver_toml`].
#[derive(Debug, Clone, Copy)]
pub struct S3Toml<'a> {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: &'a str,
    /// Bucket.
    pub bucket: &'a str,
    /// Key prefix (one per run, so runs do not see each other's objects).
    pub prefix: &'a str,
    /// Access key id.
    pub access_key_id: &'a str,
    /// File holding the secret access key.
    pub secret_access_key_file: &'a Path,
}

/// The configuration file of the receiver under test: defaults everywhere except the endpoint,
/// the folders, the spool switch and a metrics listener on an ephemeral port.
pub fn receiver_toml(t: &ReceiverToml<'_>) -> String {
    let q = |p: &Path| format!("{:?}", p.display().to_string());
    let mut s = String::new();
    let _ = writeln!(s, "[aliyun]");
    let _ = writeln!(s, "host = {:?}", t.host);
    let _ = writeln!(s, "port = {}", t.port);
    let _ = writeln!(s, "ca_file = {}", q(t.ca_file));
    let _ = writeln!(s, "access_key_id = {:?}", t.access_key_id);
    let _ = writeln!(s, "access_key_secret = {:?}", t.access_key_secret);
    let _ = writeln!(s, "iot_instance_id = {:?}", t.iot_instance_id);
    let _ = writeln!(s, "consumer_group_id = {:?}", t.consumer_group_id);
    let _ = writeln!(s, "client_id = \"receiver-bench\"");
    let _ = writeln!(s, "connections = {}", t.connections);
    if let Some(c) = t.credit {
        let _ = writeln!(s, "credit = {c}");
    }
    match &t.s3 {
        None => {
            let _ = writeln!(s, "[output]\ndir = {}", q(t.output));
        }
        Some(o) => {
            let _ = writeln!(s, "[output]\nbackend = \"s3\"");
            let _ = writeln!(s, "endpoint = {:?}", o.endpoint);
            let _ = writeln!(s, "bucket = {:?}", o.bucket);
            let _ = writeln!(s, "prefix = {:?}", o.prefix);
            let _ = writeln!(s, "access_key_id = {:?}", o.access_key_id);
            let _ = writeln!(
                s,
                "secret_access_key_file = {}",
                q(o.secret_access_key_file)
            );
        }
    }
    let _ = writeln!(s, "[state]\ndir = {}", q(t.state));
    if let Some(m) = t.memory_limit {
        let _ = writeln!(s, "[assembly]\nmemory_limit = {m:?}");
    }
    let _ = writeln!(s, "[spool]\nenabled = {}", t.durable);
    if let Some(d) = t.batch_delay {
        let _ = writeln!(s, "batch_delay = {d:?}");
    }
    let _ = writeln!(s, "[metrics]\nlisten = \"127.0.0.1:0\"");
    s
}

fn load_avg() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut it = text
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(f64::NAN));
    [
        it.next().unwrap_or(f64::NAN),
        it.next().unwrap_or(f64::NAN),
        it.next().unwrap_or(f64::NAN),
    ]
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or(String::new(), |kb| {
            format!(", {} GiB RAM", kb / 1024 / 1024)
        });
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cores} x {cpu}{mem}, Linux {}", kernel.trim())
}

struct Settings {
    devices: Vec<u32>,
    messages: u64,
    runs: u32,
    latency_seconds: u64,
    baseline_messages: u64,
}

impl Settings {
    fn from(args: &BenchArgs) -> Settings {
        let q = args.quick;
        Settings {
            devices: if !args.devices.is_empty() {
                args.devices.clone()
            } else if q {
                vec![1, 100, 1000]
            } else {
                vec![1, 100, 10_000]
            },
            messages: args.messages.unwrap_or(if q { 8_000 } else { 40_000 }),
            runs: args.runs.unwrap_or(if q { 1 } else { 3 }).max(1),
            latency_seconds: args.latency_seconds.unwrap_or(if q { 3 } else { 6 }).max(1),
            baseline_messages: args
                .baseline_messages
                .unwrap_or(if q { 6_000 } else { 40_000 }),
        }
    }
}

/// `./target/bench-<pid>` when run from a cargo project, else under the system temp dir.
///
/// Not /tmp by default: on ext4 without a journal the inode allocator skips every inode freed in
/// the last 30 s, looking each one up, and /tmp on a busy build machine is full of them (compilers'
/// temporary files); creating an image file there cost up to ten times more CPU than in a quiet
/// folder and made the receiver's figures depend on what the neighbours were compiling. Run
/// folders are likewise only removed at the very end.
fn default_work_dir() -> PathBuf {
    let name = format!("bench-{}", std::process::id());
    if Path::new("target").is_dir() {
        PathBuf::from("target").join(name)
    } else {
        std::env::temp_dir().join(format!("receiver-{name}"))
    }
}

/// Runs the bench, printing progress and the tables to `out`.
pub async fn run(args: BenchArgs, out: &mut dyn Write) -> Result<BenchReport, BenchError> {
    let started = Instant::now();
    let settings = Settings::from(&args);
    let bin = match &args.receiver_bin {
        Some(b) => b.clone(),
        None => std::env::current_exe().map_err(io_err("locate", Path::new("current exe")))?,
    };
    let (work, remove_work) = match &args.work_dir {
        Some(w) => (w.clone(), false),
        None => (default_work_dir(), true),
    };
    std::fs::create_dir_all(&work).map_err(io_err("create", &work))?;
    // Absolute: the generated configs name files in it.
    let work = work.canonicalize().map_err(io_err("open", &work))?;
    let load0 = load_avg();
    let machine = machine();
    let _ = writeln!(out, "receiver bench: {machine}");
    let _ = writeln!(
        out,
        "load average at start: {:.2} {:.2} {:.2}; receiver under test: {}",
        load0[0],
        load0[1],
        load0[2],
        bin.display()
    );
    if cfg!(debug_assertions) {
        let _ = writeln!(
            out,
            "WARNING: this is a debug build; measure with `cargo run --release -- bench`"
        );
    }
    let pool = JpegPool::new(16)?;
    let (min, max) = pool.size_range();
    let _ = writeln!(
        out,
        "JPEG frames: {} distinct, {:.1}-{:.1} KB",
        pool.frames.len(),
        min as f64 / 1e3,
        max as f64 / 1e3
    );
    let mut jpeg_check = Vec::new();
    if args.parts.contains(&Part::Jpeg) {
        jpeg_check = jpegcheck::measure(args.quick)?;
        let _ = write!(out, "\n{}", jpegcheck::render(&jpeg_check));
    }
    let result = run_parts(&args, &settings, &bin, &work, &pool, out).await;
    if remove_work {
        let _ = std::fs::remove_dir_all(&work);
    }
    let (scenarios, baseline) = result?;
    let load1 = load_avg();
    let report = BenchReport {
        machine,
        scenarios,
        baseline,
        jpeg_check,
        load: [load0, load1],
        seconds: started.elapsed().as_secs_f64(),
    };
    let _ = out.write_all(render(&report).as_bytes());
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| BenchError::Run(format!("cannot render JSON: {e}")))?;
        std::fs::write(path, text).map_err(io_err("write", path))?;
    }
    Ok(report)
}

type Parts = (Vec<ScenarioResult>, Option<BaselineResult>);

async fn run_parts(
    args: &BenchArgs,
    settings: &Settings,
    bin: &Path,
    work: &Path,
    pool: &JpegPool,
    out: &mut dyn Write,
) -> Result<Parts, BenchError> {
    let timeout = Duration::from_secs(args.run_timeout);
    let wants_store = args.outputs.contains(&OutputKind::S3)
        && (args.parts.contains(&Part::Throughput) || args.parts.contains(&Part::Latency));
    let store = if wants_store {
        let s = BenchStore::start(args.weed.clone(), work.join("seaweedfs")).await?;
        if args.pin_store {
            let cpus = std::thread::available_parallelism().map_or(1, usize::from);
            if cpus < 2 {
                return Err(BenchError::Run("--pin-store needs 2 CPUs or more".into()));
            }
            let pid = s.weed.pid().unwrap_or(0);
            // Threads the store starts later inherit its mask; the receivers inherit ours.
            pin_tree(pid, 1..cpus)?;
            pin_tree(std::process::id(), 0..1)?;
            let _ = writeln!(
                out,
                "pinned: the bench and the receivers on CPU 0, the object store on CPUs 1-{}",
                cpus - 1
            );
        }
        let _ = writeln!(
            out,
            "object store: SeaweedFS at {} (bucket {BENCH_BUCKET})",
            s.endpoint
        );
        Some(s)
    } else {
        None
    };
    let wants_redis = !args.instances.is_empty()
        && (args.parts.contains(&Part::Throughput) || args.parts.contains(&Part::Latency));
    let redis = if wants_redis {
        let r = redis::BenchRedis::start(args.redis.clone(), &work.join("redis"))?;
        let _ = writeln!(
            out,
            "shared store: redis-server at {} (appendonly yes, appendfsync always)",
            r.url()
        );
        Some(r)
    } else {
        None
    };
    let mut scenarios = Vec::new();
    let mut run_no = 0u32;
    if args.parts.contains(&Part::Throughput) {
        for &devices in &settings.devices {
            let t = Instant::now();
            let stream = stream::generate(&StreamSpec::mixed(devices, settings.messages), pool)?;
            let _ = writeln!(
                out,
                "\nstream: {devices} device(s), {} messages, {} pictures ({} v1), {:.1} MB of JPEG (generated in {:.1} s)",
                stream.messages.len(),
                stream.images,
                stream.v1_images,
                stream.image_bytes as f64 / 1e6,
                t.elapsed().as_secs_f64()
            );
            for (mode, output) in combinations(args) {
                for &connections in &args.connections {
                    let name = format!(
                        "{}/{connections}c/{devices}d{}",
                        mode.as_str(),
                        suffix(output)
                    );
                    let mut result = ScenarioResult {
                        name: name.clone(),
                        mode,
                        output,
                        connections,
                        devices,
                        rate: None,
                        instances: None,
                        runs: Vec::new(),
                    };
                    for r in 0..settings.runs {
                        run_no += 1;
                        let dir = work.join(format!("run-{run_no}"));
                        let spec = RunSpec {
                            bin,
                            dir: &dir,
                            mode,
                            store: store_for(output, store.as_ref()),
                            connections,
                            credit: args.credit,
                            rate: None,
                            timeout,
                            batch_delay: args.batch_delay.as_deref(),
                            memory_limit: args.memory_limit.as_deref(),
                            cluster: None,
                        };
                        let f = run_one(&spec, &stream).await?;
                        let _ = writeln!(out, "  {name:<22} run {}: {}", r + 1, line(&f));
                        result.runs.push(f);
                    }
                    scenarios.push(result);
                }
            }
            if let Some(redis) = &redis {
                for &instances in &args.instances {
                    for &connections in &args.connections {
                        let name = format!("cluster{instances}i/{connections}c/{devices}d");
                        let mut result = ScenarioResult {
                            name: name.clone(),
                            mode: Mode::Durable,
                            output: OutputKind::Fs,
                            connections,
                            devices,
                            rate: None,
                            instances: Some(instances),
                            runs: Vec::new(),
                        };
                        for r in 0..settings.runs {
                            run_no += 1;
                            let dir = work.join(format!("run-{run_no}"));
                            let spec = RunSpec {
                                bin,
                                dir: &dir,
                                mode: Mode::Durable,
                                store: None,
                                connections,
                                credit: args.credit,
                                rate: None,
                                timeout,
                                batch_delay: args.batch_delay.as_deref(),
                                memory_limit: args.memory_limit.as_deref(),
                                cluster: Some((redis, instances.max(1))),
                            };
                            let f = run_one(&spec, &stream).await?;
                            let _ = writeln!(out, "  {name:<22} run {}: {}", r + 1, line(&f));
                            result.runs.push(f);
                        }
                        scenarios.push(result);
                    }
                }
            }
        }
    }
    if args.parts.contains(&Part::Latency) && args.latency_rate > 0 {
        let total = u64::from(args.latency_rate) * settings.latency_seconds;
        let stream = stream::generate(&StreamSpec::mixed(args.latency_devices, total), pool)?;
        let _ = writeln!(
            out,
            "\nlatency stream: {} device(s), {} messages at {}/s, {} pictures",
            args.latency_devices,
            stream.messages.len(),
            args.latency_rate,
            stream.images
        );
        for (mode, output) in combinations(args) {
            let name = format!(
                "{}/1c/{}d@{}/s{}",
                mode.as_str(),
                args.latency_devices,
                args.latency_rate,
                suffix(output)
            );
            let mut result = ScenarioResult {
                name: name.clone(),
                mode,
                output,
                connections: 1,
                devices: args.latency_devices,
                rate: Some(args.latency_rate),
                instances: None,
                runs: Vec::new(),
            };
            for r in 0..settings.runs {
                run_no += 1;
                let dir = work.join(format!("run-{run_no}"));
                let spec = RunSpec {
                    bin,
                    dir: &dir,
                    mode,
                    store: store_for(output, store.as_ref()),
                    connections: 1,
                    credit: args.credit,
                    rate: Some(args.latency_rate),
                    timeout,
                    batch_delay: args.batch_delay.as_deref(),
                    memory_limit: args.memory_limit.as_deref(),
                    cluster: None,
                };
                let f = run_one(&spec, &stream).await?;
                let _ = writeln!(out, "  {name:<22} run {}: {}", r + 1, line(&f));
                result.runs.push(f);
            }
            scenarios.push(result);
        }
        if let Some(redis) = &redis {
            for &instances in &args.instances {
                let name = format!(
                    "cluster{instances}i/1c/{}d@{}/s",
                    args.latency_devices, args.latency_rate
                );
                let mut result = ScenarioResult {
                    name: name.clone(),
                    mode: Mode::Durable,
                    output: OutputKind::Fs,
                    connections: 1,
                    devices: args.latency_devices,
                    rate: Some(args.latency_rate),
                    instances: Some(instances),
                    runs: Vec::new(),
                };
                for r in 0..settings.runs {
                    run_no += 1;
                    let dir = work.join(format!("run-{run_no}"));
                    let spec = RunSpec {
                        bin,
                        dir: &dir,
                        mode: Mode::Durable,
                        store: None,
                        connections: 1,
                        credit: args.credit,
                        rate: Some(args.latency_rate),
                        timeout,
                        batch_delay: args.batch_delay.as_deref(),
                        memory_limit: args.memory_limit.as_deref(),
                        cluster: Some((redis, instances.max(1))),
                    };
                    let f = run_one(&spec, &stream).await?;
                    let _ = writeln!(out, "  {name:<22} run {}: {}", r + 1, line(&f));
                    result.runs.push(f);
                }
                scenarios.push(result);
            }
        }
    }
    let mut baseline = None;
    if args.parts.contains(&Part::Baseline) {
        baseline = Some(run_baseline(args, settings, bin, work, pool, out).await?);
    }
    Ok((scenarios, baseline))
}

/// Bucket, identity and secret of the bench's object store (a throw-away server on loopback).
const BENCH_BUCKET: &str = "bench";
const BENCH_ACCESS_KEY: &str = "receiver-bench";
const BENCH_SECRET_KEY: &str = "receiver-bench-secret-0123456789";

/// The object store of `--outputs s3`: one SeaweedFS on loopback for the whole bench, its data
/// in the work folder; each run writes under its own prefix.
struct BenchStore {
    weed: receiver_testkit::seaweed::SeaweedFs,
    endpoint: String,
    secret_file: PathBuf,
}

impl BenchStore {
    async fn start(weed: Option<PathBuf>, dir: PathBuf) -> Result<BenchStore, BenchError> {
        use receiver_testkit::seaweed::{weed_binary, SeaweedFs, WarmUp};
        let started = tokio::task::spawn_blocking(move || {
            let bin = match weed {
                Some(b) => b,
                None => weed_binary().map_err(|e| e.to_string())?,
            };
            // The output blocks on its own runtime: probe from a plain thread.
            let warm_up: WarmUp = Box::new(|endpoint: &str| {
                let opts = bench_s3_options(endpoint);
                std::thread::spawn(move || {
                    let out = crate::s3::S3Output::new(opts).map_err(|e| e.to_string())?;
                    out.probe().map(|_| ()).map_err(|e| e.to_string())
                })
                .join()
                .map_err(|_| "the warm-up thread panicked".to_string())?
            });
            SeaweedFs::start(
                &bin,
                &dir,
                BENCH_ACCESS_KEY,
                BENCH_SECRET_KEY,
                BENCH_BUCKET,
                warm_up,
            )
            .map(|w| (w, dir))
            .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| BenchError::Run(format!("the object store's start failed: {e}")))?;
        let (weed, dir) =
            started.map_err(|e| BenchError::Run(format!("cannot start the object store: {e}")))?;
        let secret_file = dir.join("secret_access_key");
        std::fs::write(&secret_file, BENCH_SECRET_KEY).map_err(io_err("write", &secret_file))?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600))
                .map_err(io_err("chmod", &secret_file))?;
        }
        let endpoint = weed.endpoint();
        Ok(BenchStore {
            weed,
            endpoint,
            secret_file,
        })
    }
}

fn bench_s3_options(endpoint: &str) -> crate::s3::S3Options {
    crate::s3::S3Options {
        endpoint: endpoint.to_owned(),
        bucket: BENCH_BUCKET.into(),
        region: "us-east-1".into(),
        prefix: "warm-up".into(),
        access_key_id: BENCH_ACCESS_KEY.into(),
        secret_access_key: crate::config::Secret::new(BENCH_SECRET_KEY),
        virtual_host_style: false,
        timeout: Duration::from_secs(30),
        concurrency: 1,
        storage_class: None,
        create_only: true,
        ca_file: None,
    }
}

/// Sets the CPU affinity of thread `pid` to `cpus`.
fn pin(pid: u32, cpus: std::ops::Range<usize>) -> Result<(), BenchError> {
    // SAFETY: cpu_set_t is plain data; CPU_ZERO/CPU_SET write within it; sched_setaffinity
    // reads it and changes scheduling only.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        for c in cpus {
            libc::CPU_SET(c, &mut set);
        }
        libc::sched_setaffinity(pid as libc::pid_t, std::mem::size_of_val(&set), &set)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(BenchError::Run(format!(
            "cannot pin process {pid}: {}",
            std::io::Error::last_os_error()
        )))
    }
}

/// Pins every thread of process `pid` (they are tasks under `/proc/<pid>/task`).
fn pin_tree(pid: u32, cpus: std::ops::Range<usize>) -> Result<(), BenchError> {
    let dir = PathBuf::from(format!("/proc/{pid}/task"));
    for e in std::fs::read_dir(&dir).map_err(io_err("list", &dir))? {
        let tid = e
            .map_err(io_err("list", &dir))?
            .file_name()
            .to_string_lossy()
            .parse::<u32>()
            .unwrap_or(0);
        if tid != 0 {
            pin(tid, cpus.clone())?;
        }
    }
    Ok(())
}

/// Every (mode, output) pair asked for, modes first.
fn combinations(args: &BenchArgs) -> Vec<(Mode, OutputKind)> {
    let mut v = Vec::new();
    for &m in &args.modes {
        for &o in &args.outputs {
            v.push((m, o));
        }
    }
    v
}

fn suffix(o: OutputKind) -> String {
    match o {
        OutputKind::Fs => String::new(),
        other => format!("/{}", other.as_str()),
    }
}

fn store_for(o: OutputKind, store: Option<&BenchStore>) -> Option<&BenchStore> {
    (o == OutputKind::S3).then_some(store).flatten()
}

fn line(f: &RunFigures) -> String {
    let lat = match (f.latency_p50_ms, f.latency_p99_ms) {
        (Some(a), Some(b)) => format!("p50 {a:.1} ms p99 {b:.1} ms"),
        _ => "no latency".into(),
    };
    let reasons = if f.quarantine_reasons.is_empty() {
        String::new()
    } else {
        let r: Vec<String> = f
            .quarantine_reasons
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!(" ({})", r.join(" "))
    };
    let store = f
        .store_us_per_msg()
        .map_or(String::new(), |s| format!(" store {s:.2}"));
    format!(
        "{:>7.0} msg/s {:>5.1} MB/s  {lat}  RSS {:>5.1} MB  CPU {:>5.2} us/msg (fake {:.2}{store})  cs/msg {:.2}  images {}/{} quarantined {}{reasons}  load {:.2}",
        f.msgs_per_s(),
        f.mb_per_s(),
        f.peak_rss as f64 / 1048576.0,
        f.cpu_us_per_msg(),
        f.driver_us_per_msg(),
        f.ctx_switches as f64 / f.messages.max(1) as f64,
        f.images_written,
        f.images,
        f.quarantined,
        f.load_before
    )
}

struct RunSpec<'a> {
    bin: &'a Path,
    dir: &'a Path,
    mode: Mode,
    store: Option<&'a BenchStore>,
    connections: u32,
    credit: Option<u32>,
    rate: Option<u32>,
    timeout: Duration,
    batch_delay: Option<&'a str>,
    memory_limit: Option<&'a str>,
    /// Cluster mode: the shared store and the number of instances.
    cluster: Option<(&'a redis::BenchRedis, u32)>,
}

/// The fake endpoint on a thread of its own with a single-threaded runtime: its tasks never wake
/// each other across threads, and it can use one core at most, leaving the other to the receiver.
struct FakeThread {
    fake: std::sync::Arc<FakeAliyun>,
    stop: tokio_util::sync::CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeThread {
    async fn start() -> Result<FakeThread, BenchError> {
        let cfg = FakeConfig {
            record_outcomes: false,
            ..FakeConfig::default()
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let stop = tokio_util::sync::CancellationToken::new();
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("fake-aliyun".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = tx.send(Err(receiver_testkit::fake::FakeError::Io(e)));
                        return;
                    }
                };
                rt.block_on(async move {
                    match FakeAliyun::start(cfg).await {
                        Ok(fake) => {
                            let fake = std::sync::Arc::new(fake);
                            if tx.send(Ok(fake.clone())).is_err() {
                                return;
                            }
                            stopped.cancelled().await;
                            fake.shutdown();
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e));
                        }
                    }
                });
            })
            .map_err(|e| BenchError::Run(format!("cannot start the fake's thread: {e}")))?;
        let fake = rx
            .await
            .map_err(|_| BenchError::Run("the fake's thread ended at once".into()))??;
        Ok(FakeThread {
            fake,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for FakeThread {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One run: fresh fake endpoint, fresh receiver process, the whole stream.
async fn run_one(spec: &RunSpec<'_>, stream: &Stream) -> Result<RunFigures, BenchError> {
    std::fs::create_dir_all(spec.dir).map_err(io_err("create", spec.dir))?;
    let load_before = load_avg()[0];
    let fake_thread = FakeThread::start().await?;
    let fake = &*fake_thread.fake;
    let aliyun = fake.client_config(spec.dir, "receiver-bench")?;
    // One key prefix per run: runs never see each other's objects.
    let prefix = spec
        .dir
        .file_name()
        .map_or_else(|| "run".to_string(), |n| n.to_string_lossy().into_owned());
    let ca = aliyun
        .ca_file
        .clone()
        .ok_or_else(|| BenchError::Run("the fake wrote no CA file".into()))?;
    let instances = spec.cluster.map_or(1, |(_, n)| n);
    let mut procs = Vec::new();
    for i in 0..instances {
        let state = if spec.cluster.is_some() {
            spec.dir.join(format!("state-{i}"))
        } else {
            spec.dir.join("state")
        };
        let mut toml = receiver_toml(&ReceiverToml {
            host: &aliyun.host,
            port: aliyun.port,
            ca_file: &ca,
            access_key_id: &aliyun.access_key_id,
            access_key_secret: aliyun.access_key_secret.expose(),
            iot_instance_id: &aliyun.iot_instance_id,
            consumer_group_id: &aliyun.consumer_group_id,
            connections: spec.connections,
            credit: spec.credit,
            output: &spec.dir.join("images"),
            s3: spec.store.map(|st| S3Toml {
                endpoint: &st.endpoint,
                bucket: BENCH_BUCKET,
                prefix: &prefix,
                access_key_id: BENCH_ACCESS_KEY,
                secret_access_key_file: &st.secret_file,
            }),
            state: &state,
            durable: spec.mode == Mode::Durable,
            batch_delay: spec.batch_delay,
            memory_limit: spec.memory_limit,
        });
        let config = if let Some((redis, _)) = spec.cluster {
            toml = toml.replace(
                "client_id = \"receiver-bench\"",
                &format!("client_id = \"receiver-bench-{i}\""),
            );
            toml.push_str(&cluster_toml(&redis.url(), &prefix, &format!("bench-{i}")));
            spec.dir.join(format!("receiver-{i}.toml"))
        } else {
            spec.dir.join("receiver.toml")
        };
        std::fs::write(&config, toml).map_err(io_err("write", &config))?;
        match ReceiverProcess::start(spec.bin, &config).await {
            Ok(p) => procs.push(p),
            Err(e) => {
                for p in procs {
                    p.stop(Duration::from_secs(30)).await;
                }
                return Err(e.into());
            }
        }
    }
    let result = drive(spec, stream, fake, &mut procs, load_before).await;
    let mut recent = String::new();
    for (i, proc) in procs.iter().enumerate() {
        let lines = proc.log.lock().map(|l| l.recent()).unwrap_or_default();
        if instances > 1 {
            let _ = writeln!(recent, "-- instance {i}:");
        }
        recent.push_str(&lines);
    }
    for proc in procs {
        proc.stop(Duration::from_secs(30)).await;
    }
    drop(fake_thread);
    result.map_err(|e| BenchError::Run(format!("{e}; the receiver's last log lines:\n{recent}")))
}

/// The `[cluster]` section of an instance under test: the bench's Redis, the run's key prefix.
pub fn cluster_toml(redis_url: &str, key_prefix: &str, instance_id: &str) -> String {
    format!(
        "[cluster]\nredis_url = {redis_url:?}\nkey_prefix = {key_prefix:?}\ninstance_id = {instance_id:?}\n"
    )
}

/// Sums the scrapes of the instances: counters added, the latency histograms merged bucket by
/// bucket (every instance has the same buckets).
fn merge_scraped(all: &[Scraped]) -> Scraped {
    let mut m = Scraped::default();
    for s in all {
        m.images_written += s.images_written;
        m.quarantined += s.quarantined;
        for (k, v) in &s.quarantine_reasons {
            *m.quarantine_reasons.entry(k.clone()).or_default() += v;
        }
        m.accepted += s.accepted;
        m.open_assemblies += s.open_assemblies;
        m.assembly_bytes += s.assembly_bytes;
        m.spool_commits += s.spool_commits;
        if m.image_latency.is_empty() {
            m.image_latency = s.image_latency.clone();
        } else {
            for (b, (bound, n)) in m.image_latency.iter_mut().zip(&s.image_latency) {
                if b.0.to_bits() == bound.to_bits() {
                    b.1 += n;
                }
            }
        }
    }
    m
}

async fn scrape_all(procs: &[ReceiverProcess]) -> Result<Vec<Scraped>, BenchError> {
    let mut v = Vec::with_capacity(procs.len());
    for p in procs {
        v.push(Scraped::parse(&p.scrape().await?));
    }
    Ok(v)
}

fn sample_all(procs: &[ReceiverProcess]) -> Result<Vec<ProcSample>, BenchError> {
    procs
        .iter()
        .map(|p| {
            p.sample()
                .ok_or_else(|| BenchError::Run("a receiver is gone".into()))
        })
        .collect()
}

async fn drive(
    spec: &RunSpec<'_>,
    stream: &Stream,
    fake: &FakeAliyun,
    procs: &mut [ReceiverProcess],
    load_before: f64,
) -> Result<RunFigures, BenchError> {
    let total = stream.messages.len() as u64;
    let want = u64::from(spec.connections) * procs.len() as u64;
    fake.wait_until("links attached", Duration::from_secs(30), |c, _, _| {
        c.links_attached >= want
    })
    .await?;
    let before = sample_all(procs)?;
    let driver0 = child::self_cpu_seconds();
    let store_pid = spec.store.and_then(|s| s.weed.pid());
    let store0 = store_pid.and_then(child::proc_sample);
    let redis = spec.cluster.map(|(r, _)| r);
    let redis0 = match redis {
        Some(r) => Some((child::proc_sample(r.pid()), r.counters()?)),
        None => None,
    };
    let t0 = Instant::now();
    let deadline = t0 + spec.timeout;
    let mut peak_assembly = 0u64;
    let mut peak_open = 0u64;
    let mut last_sample = Instant::now();
    let mut published = 0usize;
    let mut ticker = tokio::time::interval(Duration::from_millis(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    if spec.rate.is_none() {
        fake.publish_many(stream.messages.iter().cloned());
        published = stream.messages.len();
    }
    loop {
        if let Some(rate) = spec.rate {
            let due = ((t0.elapsed().as_secs_f64() * f64::from(rate)) as usize)
                .min(stream.messages.len());
            if due > published {
                fake.publish_many(stream.messages[published..due].iter().cloned());
                published = due;
            }
        }
        let c = fake.counters();
        if c.accepted + c.rejected >= total && published == stream.messages.len() {
            break;
        }
        if last_sample.elapsed() >= Duration::from_millis(250) {
            last_sample = Instant::now();
            if let Ok(all) = scrape_all(procs).await {
                let s = merge_scraped(&all);
                peak_assembly = peak_assembly.max(s.assembly_bytes);
                peak_open = peak_open.max(s.open_assemblies);
            }
        }
        if procs.iter_mut().any(|p| p.has_exited()) {
            return Err(BenchError::Run("a receiver exited during the run".into()));
        }
        if Instant::now() > deadline {
            return Err(BenchError::Run(format!(
                "timed out after {:?}: {} of {total} messages accepted",
                spec.timeout, c.accepted
            )));
        }
        ticker.tick().await;
    }
    let seconds = t0.elapsed().as_secs_f64();
    let after = sample_all(procs)?;
    let driver1 = child::self_cpu_seconds();
    let store_cpu_seconds = match (store0, store_pid.and_then(child::proc_sample)) {
        (Some(a), Some(b)) => Some(b.cpu_seconds - a.cpu_seconds),
        _ => None,
    };
    let (mut redis_cpu_seconds, mut redis_round_trips, mut redis_commands) = (None, None, None);
    if let (Some(r), Some((cpu0, n0))) = (redis, redis0) {
        let cpu1 = child::proc_sample(r.pid());
        let n1 = r.counters()?;
        if let (Some(a), Some(b)) = (cpu0, cpu1) {
            redis_cpu_seconds = Some(b.cpu_seconds - a.cpu_seconds);
        }
        // The first INFO's reply was counted before it was read; the second's read and
        // command were counted before it answered: one each of ours.
        redis_round_trips = Some(n1.reads.saturating_sub(n0.reads).saturating_sub(1));
        redis_commands = Some(n1.commands.saturating_sub(n0.commands).saturating_sub(1));
    }
    let all = scrape_all(procs).await?;
    let scraped = merge_scraped(&all);
    let c = fake.counters();
    let cpu: Vec<f64> = before
        .iter()
        .zip(&after)
        .map(|(b, a)| a.cpu_seconds - b.cpu_seconds)
        .collect();
    let cluster = spec.cluster.is_some();
    Ok(RunFigures {
        messages: c.accepted,
        images: stream.images,
        images_written: scraped.images_written,
        quarantined: scraped.quarantined,
        quarantine_reasons: scraped.quarantine_reasons.clone(),
        image_bytes: stream.image_bytes,
        seconds,
        cpu_seconds: cpu.iter().sum(),
        peak_rss: after.iter().map(|a| a.peak_rss).max().unwrap_or(0),
        peak_assembly_bytes: peak_assembly.max(scraped.assembly_bytes),
        peak_open: peak_open.max(scraped.open_assemblies),
        latency_p50_ms: scraped.latency_quantile_ms(0.50),
        latency_p99_ms: scraped.latency_quantile_ms(0.99),
        latency_count: scraped.latency_count(),
        driver_cpu_seconds: driver1 - driver0,
        load_before,
        ctx_switches: before
            .iter()
            .zip(&after)
            .map(|(b, a)| a.ctx_switches.saturating_sub(b.ctx_switches))
            .sum(),
        store_cpu_seconds,
        instance_cpu_seconds: if cluster { cpu } else { Vec::new() },
        instance_messages: if cluster {
            all.iter().map(|s| s.accepted).collect()
        } else {
            Vec::new()
        },
        instance_images_written: if cluster {
            all.iter().map(|s| s.images_written).collect()
        } else {
            Vec::new()
        },
        redis_cpu_seconds,
        redis_round_trips,
        redis_commands,
    })
}

async fn run_baseline(
    args: &BenchArgs,
    settings: &Settings,
    bin: &Path,
    work: &Path,
    pool: &JpegPool,
    out: &mut dyn Write,
) -> Result<BaselineResult, BenchError> {
    let mut result = BaselineResult {
        messages: 0,
        seed: Vec::new(),
        receiver: Vec::new(),
        floor: Vec::new(),
        skipped: None,
    };
    let setup = match seed::SeedSetup::find(&args.seed_dir) {
        Ok(s) => s,
        Err(why) => {
            let _ = writeln!(out, "\nbaseline SKIPPED: {why}");
            result.skipped = Some(why);
            return Ok(result);
        }
    };
    let spec = StreamSpec {
        mix: stream::FormatMix::V1Only,
        ..StreamSpec::mixed(1, settings.baseline_messages)
    };
    let stream = stream::generate(&spec, pool)?;
    let file = work.join("baseline-stream.jsonl");
    stream::write_jsonl(&stream, &file)?;
    result.messages = stream.messages.len() as u64;
    let _ = writeln!(
        out,
        "\nbaseline stream: 1 device, {} sequential v1 pictures (800 hex + END), {} messages; third-party server: rhea ({})",
        stream.images,
        stream.messages.len(),
        setup.dir.join("stream-server.js").display()
    );
    let timeout = Duration::from_secs(args.run_timeout);
    for r in 0..settings.runs {
        for (i, (label, consumer)) in [
            ("seed (node+rhea)", seed::Consumer::Seed),
            (
                "receiver (durable)",
                seed::Consumer::Receiver {
                    bin: bin.to_path_buf(),
                    durable: true,
                    credit: args.credit,
                },
            ),
            (
                "transport floor",
                seed::Consumer::Floor {
                    bin: bin.to_path_buf(),
                    credit: args.credit,
                },
            ),
        ]
        .into_iter()
        .enumerate()
        {
            let dir = work.join(format!("baseline-{r}-{i}"));
            let f = seed::run_once(&setup, &consumer, &stream, &file, &dir, timeout)
                .await
                .map_err(|e| BenchError::Run(format!("baseline, {label}: {e}")))?;
            let _ = writeln!(
                out,
                "  {label:<20} run {}: {:>7.0} msg/s  CPU {:>6.2} us/msg  RSS {:>5.1} MB  server CPU {:.2} us/msg  files {}",
                r + 1,
                f.msgs_per_s(),
                f.cpu_us_per_msg(),
                f.peak_rss as f64 / 1048576.0,
                f.server_cpu_seconds * 1e6 / f.messages.max(1) as f64,
                f.files
            );
            let row = (
                f.msgs_per_s(),
                f.cpu_us_per_msg(),
                f.peak_rss,
                f.server_cpu_seconds * 1e6 / f.messages.max(1) as f64,
                f.files,
            );
            match consumer {
                seed::Consumer::Seed => result.seed.push(row),
                seed::Consumer::Receiver { .. } => result.receiver.push(row),
                seed::Consumer::Floor { .. } => result.floor.push(row),
            }
        }
    }
    Ok(result)
}

/// The cluster-mode section of [`render`]: per instance count, the aggregate rate, the receivers'
/// CPU per message (all instances, and the busiest one over the deliveries it accepted),
/// Redis's CPU, round trips and commands per message, the p99 of the paced run; then the two
/// targets of issue 14 against the single-instance durable run of the same stream.
fn render_cluster(r: &BenchReport, s: &mut String) {
    let cluster: Vec<&ScenarioResult> = r
        .scenarios
        .iter()
        .filter(|sc| sc.instances.is_some())
        .collect();
    if cluster.is_empty() {
        return;
    }
    let opt = |v: Option<f64>, p: usize| v.map_or("-".to_string(), |v| format!("{v:.p$}"));
    let _ = writeln!(
        s,
        "\n== Cluster mode: N instances, one redis-server (appendfsync always) on loopback, medians"
    );
    let _ = writeln!(
        s,
        "{:<28} {:>9} {:>9} {:>10} {:>9} {:>8} {:>9} {:>8} {:>14}",
        "scenario",
        "msg/s",
        "us/msg",
        "max inst.",
        "redis us",
        "rt/msg",
        "cmd/msg",
        "p99 ms",
        "images written"
    );
    for sc in &cluster {
        let written = sc
            .runs
            .iter()
            .map(|f| (f.images_written, f.images, f.quarantined))
            .min_by_key(|(w, n, q)| ((*w as i64 - *n as i64).abs(), *q))
            .map_or("-".to_string(), |(w, n, q)| {
                if w == n && q == 0 {
                    "all, once".to_string()
                } else {
                    format!("{w}/{n} q{q}")
                }
            });
        let _ = writeln!(
            s,
            "{:<28} {:>9.0} {:>9.2} {:>10} {:>9} {:>8} {:>9} {:>8} {:>14}",
            sc.name,
            sc.median(RunFigures::msgs_per_s),
            sc.median(RunFigures::cpu_us_per_msg),
            opt(sc.median_opt(RunFigures::max_instance_us_per_msg), 2),
            opt(sc.median_opt(RunFigures::redis_us_per_msg), 2),
            opt(sc.median_opt(RunFigures::round_trips_per_msg), 3),
            opt(sc.median_opt(RunFigures::commands_per_msg), 3),
            opt(sc.median_opt(|f| f.latency_p99_ms), 1),
            written,
        );
    }
    for sc in &cluster {
        let single = r.scenarios.iter().find(|d| {
            d.instances.is_none()
                && d.mode == Mode::Durable
                && d.output == OutputKind::Fs
                && (d.connections, d.devices, d.rate) == (sc.connections, sc.devices, sc.rate)
        });
        let rt = sc.median_opt(RunFigures::round_trips_per_msg);
        let cpu = sc.median(RunFigures::cpu_us_per_msg);
        let rt_text = rt.map_or("round trips unknown".to_string(), |v| {
            format!(
                "{v:.3} round trips/msg ({})",
                if v <= 1.0 {
                    "<= 1: holds"
                } else {
                    "> 1: MISSED"
                }
            )
        });
        let cpu_text = single.map_or(
            "no single-instance durable run to compare".to_string(),
            |d| {
                let base = d.median(RunFigures::cpu_us_per_msg);
                format!(
                    "CPU {cpu:.2} vs durable {base:.2} us/msg = {:.2}x ({})",
                    cpu / base,
                    if cpu <= 2.0 * base {
                        "<= 2x: holds"
                    } else {
                        "> 2x: MISSED"
                    }
                )
            },
        );
        let _ = writeln!(s, "{:<28} {rt_text}; {cpu_text}", sc.name);
    }
}

/// Renders the summary tables (medians) and the targets.
pub fn render(r: &BenchReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n== Summary (medians of the runs; CPU = receiver process user+system over the run window)"
    );
    let _ = writeln!(
        s,
        "{:<24} {:>5} {:>9} {:>7} {:>8} {:>8} {:>8} {:>9} {:>8} {:>9} {:>14}",
        "scenario",
        "runs",
        "msg/s",
        "MB/s",
        "p50 ms",
        "p99 ms",
        "RSS MB",
        "CPU s/1k",
        "us/msg",
        "fake us",
        "images written"
    );
    for sc in &r.scenarios {
        let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
        // The worst run: images written of those in the stream, and quarantined items.
        let images = sc
            .runs
            .iter()
            .map(|f| (f.images_written.min(f.images), f.images, f.quarantined))
            .min_by_key(|(w, n, q)| (*w as i64 - *n as i64, u64::MAX - q))
            .map_or("-".to_string(), |(w, n, q)| {
                if w == n && q == 0 {
                    "all".to_string()
                } else {
                    format!("{w}/{n} q{q}")
                }
            });
        let _ = writeln!(
            s,
            "{:<24} {:>5} {:>9.0} {:>7.1} {:>8} {:>8} {:>8.1} {:>9.4} {:>8.2} {:>9.2} {:>14}",
            sc.name,
            sc.runs.len(),
            sc.median(RunFigures::msgs_per_s),
            sc.median(RunFigures::mb_per_s),
            opt(sc.median_opt(|f| f.latency_p50_ms)),
            opt(sc.median_opt(|f| f.latency_p99_ms)),
            sc.median(|f| f.peak_rss as f64) / 1048576.0,
            sc.median(|f| f.cpu_seconds * 1000.0 / f.messages.max(1) as f64),
            sc.median(RunFigures::cpu_us_per_msg),
            sc.median(RunFigures::driver_us_per_msg),
            images,
        );
    }
    let pairs: Vec<(&ScenarioResult, &ScenarioResult)> = r
        .scenarios
        .iter()
        .filter(|sc| sc.output == OutputKind::S3)
        .filter_map(|s3| {
            r.scenarios
                .iter()
                .find(|fs| {
                    fs.output == OutputKind::Fs
                        && (fs.mode, fs.connections, fs.devices, fs.rate)
                            == (s3.mode, s3.connections, s3.devices, s3.rate)
                })
                .map(|fs| (s3, fs))
        })
        .collect();
    if !pairs.is_empty() {
        let _ = writeln!(
            s,
            "\n== Object store (s3, SeaweedFS on loopback) beside the folder (fs), same stream, medians"
        );
        for (s3, fs) in pairs {
            let (m3, mf) = (
                s3.median(RunFigures::msgs_per_s),
                fs.median(RunFigures::msgs_per_s),
            );
            let (c3, cf) = (
                s3.median(RunFigures::cpu_us_per_msg),
                fs.median(RunFigures::cpu_us_per_msg),
            );
            let p99 = |sc: &ScenarioResult| {
                sc.median_opt(|f| f.latency_p99_ms)
                    .map_or("-".to_string(), |v| format!("{v:.1}"))
            };
            let store = s3
                .median_opt(RunFigures::store_us_per_msg)
                .map_or("-".to_string(), |v| format!("{v:.1}"));
            let _ = writeln!(
                s,
                "{:<24} s3/fs msg/s {:>5.1} % ({m3:.0} vs {mf:.0}), receiver CPU {c3:.2} vs {cf:.2} us/msg ({:.2}x), p99 {} vs {} ms, store server {store} us/msg",
                s3.name,
                100.0 * m3 / mf,
                c3 / cf,
                p99(s3),
                p99(fs),
            );
        }
    }
    render_cluster(r, &mut s);
    if let Some(b) = &r.baseline {
        let _ = writeln!(s, "\n== Baseline: the seed's Node.js receiver vs this receiver, same third-party (rhea) server, same stream");
        match &b.skipped {
            Some(why) => {
                let _ = writeln!(s, "SKIPPED: {why}");
            }
            None => {
                let med = |v: &[(f64, f64, u64, f64, u64)],
                           f: fn(&(f64, f64, u64, f64, u64)) -> f64| {
                    median(v.iter().map(f).collect())
                };
                for (label, rows) in [
                    ("seed (node+rhea)", &b.seed),
                    ("receiver (durable)", &b.receiver),
                    ("transport floor", &b.floor),
                ] {
                    if rows.is_empty() {
                        continue;
                    }
                    let _ = writeln!(
                        s,
                        "{label:<20} {:>8.0} msg/s  {:>7.2} us CPU/msg  RSS {:>6.1} MB  server {:>6.2} us/msg",
                        med(rows, |r| r.0),
                        med(rows, |r| r.1),
                        med(rows, |r| r.2 as f64) / 1048576.0,
                        med(rows, |r| r.3),
                    );
                }
                let (sm, sc) = (med(&b.seed, |r| r.0), med(&b.seed, |r| r.1));
                let (rm, rc) = (med(&b.receiver, |r| r.0), med(&b.receiver, |r| r.1));
                let _ = writeln!(
                    s,
                    "ratio receiver/seed: msgs/s {:.2}x, CPU per message {:.3}x (seed uses {:.1}x the CPU per message)",
                    rm / sm,
                    rc / sc,
                    sc / rc
                );
                if !b.floor.is_empty() {
                    let (fm, fc) = (med(&b.floor, |r| r.0), med(&b.floor, |r| r.1));
                    let _ = writeln!(
                        s,
                        "transport floor (the daemon's connection code, every delivery accepted unread): {fc:.2} us CPU/msg at {fm:.0} msg/s = {:.0}% of this receiver's CPU per message ({:.2} us/msg above the transport)",
                        100.0 * fc / rc,
                        rc - fc
                    );
                    let target = sc / 10.0;
                    // Runs differ by several per cent (more on a busy machine): closer than
                    // 10 % is no verdict.
                    let verdict = if (fc - target).abs() < 0.1 * target {
                        "within 10% of it: too close to call from one bench run"
                    } else if fc < target {
                        "below it: the transport alone does not rule 10x out"
                    } else {
                        "above it: no receiver on this transport can reach 10x"
                    };
                    let _ = writeln!(
                        s,
                        "best CPU ratio on this transport: seed/floor {:.1}x; the 10x target is < {target:.2} us/msg and the floor is {verdict}",
                        sc / fc
                    );
                }
            }
        }
    }
    if !r.jpeg_check.is_empty() {
        let _ = writeln!(
            s,
            "\n== JPEG checks: CPU per picture (this process, sample frames)"
        );
        s.push_str(&jpegcheck::render(&r.jpeg_check));
    }
    let _ = writeln!(
        s,
        "\nload average: start {:.2} {:.2} {:.2}, end {:.2} {:.2} {:.2}; bench took {:.0} s",
        r.load[0][0],
        r.load[0][1],
        r.load[0][2],
        r.load[1][0],
        r.load[1][1],
        r.load[1][2],
        r.seconds
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(floor: Vec<(f64, f64, u64, f64, u64)>) -> BenchReport {
        BenchReport {
            machine: "test".into(),
            scenarios: Vec::new(),
            baseline: Some(BaselineResult {
                messages: 100,
                seed: vec![(10_000.0, 60.0, 1 << 20, 20.0, 3)],
                receiver: vec![(20_000.0, 15.0, 1 << 20, 18.0, 3)],
                floor,
                skipped: None,
            }),
            jpeg_check: Vec::new(),
            load: [[1.0; 3]; 2],
            seconds: 1.0,
        }
    }

    #[test]
    fn render_shows_the_transport_floor_and_its_ratios() {
        let text = render(&report(vec![
            (30_000.0, 9.0, 1 << 20, 15.0, 0),
            (31_000.0, 8.0, 1 << 20, 15.0, 0),
            (29_000.0, 10.0, 1 << 20, 15.0, 0),
        ]));
        assert!(text.contains("ratio receiver/seed"), "{text}");
        let row = text
            .lines()
            .find(|l| l.starts_with("transport floor  "))
            .expect("floor row");
        assert!(row.contains("9.00 us CPU/msg"), "{row}");
        // 9 of 15 us: 60 % of the receiver's; seed/floor 60/9.
        assert!(text.contains("= 60% of this receiver's CPU"), "{text}");
        assert!(text.contains("seed/floor 6.7x"), "{text}");
        assert!(
            text.contains("< 6.00 us/msg and the floor is above it"),
            "{text}"
        );
        let below = render(&report(vec![(30_000.0, 5.0, 1 << 20, 15.0, 0)]));
        assert!(below.contains("the floor is below it"), "{below}");
        let close = render(&report(vec![(30_000.0, 6.3, 1 << 20, 15.0, 0)]));
        assert!(close.contains("the floor is within 10% of it"), "{close}");
    }

    #[test]
    fn render_without_floor_runs_keeps_the_two_rows() {
        let text = render(&report(Vec::new()));
        assert!(text.contains("ratio receiver/seed"), "{text}");
        assert!(!text.contains("transport floor"), "{text}");
    }

    #[test]
    fn baseline_json_has_the_floor() {
        let v = serde_json::to_value(report(vec![(1.0, 2.0, 3, 4.0, 0)])).unwrap();
        assert_eq!(v["baseline"]["floor"][0][1], 2.0);
    }
}

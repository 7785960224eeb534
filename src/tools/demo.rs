//! `receiver demo`: the whole pipeline on one machine, no Aliyun account, no camera.
//!
//! Starts the fake Aliyun endpoint on loopback (TLS, real aksign check), runs the real daemon code
//! against it with a generated configuration, and lets simulated cameras upload real JPEG frames
//! (v1 and v2 interleaved, several pictures per camera) through the same path a real camera's
//! publishes take (device payload → Aliyun's forwarded body → AMQP). Faults can be injected:
//! duplicated deliveries, reordering, a cut connection. At the end every image is looked up on
//! disk and compared byte for byte.

use crate::config::Config;
use crate::daemon::{self, Shared};
use crate::message::DeviceId;
use crate::sink::Sink;
use crate::tools::FakeClientConfig as _;
use crate::wire::{self, Format};
use receiver_testkit::fake::{FakeAliyun, FakeConfig};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Product key the simulated cameras belong to.
pub const DEMO_PRODUCT_KEY: &str = "a1DemoPK001";

/// `receiver demo` options.
#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// Simulated cameras (even-numbered ones speak v2, odd-numbered ones v1).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub cameras: u32,
    /// Pictures each camera uploads.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub pictures: u32,
    /// v2 piece size in bytes (a multiple of 3, at most 7 644).
    #[arg(long, default_value_t = 3_000)]
    pub chunk: usize,
    /// v1 hex characters per message (the original firmware sends 800).
    #[arg(long, default_value_t = wire::V1_HEX_CHARS)]
    pub v1_chunk: usize,
    /// Frame width and height, e.g. 320x240 (QVGA) or 640x480 (VGA).
    #[arg(long, default_value = "320x240", value_parser = parse_size)]
    pub size: (u32, u32),
    /// Messages per second per camera (0 = as fast as possible; v1 cameras need distinct
    /// millisecond timestamps, so they never go faster than 500/s).
    #[arg(long, default_value_t = 200)]
    pub rate: u32,
    /// Where the images go.
    #[arg(long, default_value = "./demo-images")]
    pub out: PathBuf,
    /// AMQP connections the receiver opens.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub connections: u32,
    /// Deliver this many messages twice (same messageId), spread over the run.
    #[arg(long, default_value_t = 8)]
    pub duplicates: u32,
    /// Deliver messages out of order.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub reorder: bool,
    /// Cut the connections once, after this many deliveries (0 = never).
    #[arg(long, default_value_t = 40)]
    pub cut_after: u64,
    /// Keep the spool in memory only (no durability).
    #[arg(long)]
    pub in_memory: bool,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
    /// Keep the receiver and its gallery running after the demo and print the gallery's URL
    /// (Ctrl-C stops it). Without a value: 127.0.0.1 on a free port.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:0")]
    pub web: Option<std::net::SocketAddr>,
}

fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("{s:?}: expected WIDTHxHEIGHT, e.g. 320x240"))?;
    let parse = |v: &str| {
        v.trim()
            .parse::<u32>()
            .ok()
            .filter(|n| (8..=4096).contains(n))
            .ok_or_else(|| format!("{s:?}: width and height must be 8..=4096"))
    };
    Ok((parse(w)?, parse(h)?))
}

/// Why the demo failed.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The fake endpoint failed.
    #[error("fake Aliyun endpoint: {0}")]
    Fake(#[from] receiver_testkit::fake::FakeError),
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
    /// The generated configuration did not validate (a bug).
    #[error("generated configuration is invalid: {0}")]
    Config(#[from] crate::config::ConfigError),
    /// Sample frames could not be made.
    #[error(transparent)]
    Sample(#[from] receiver_testkit::sample::SampleError),
    /// The encoder refused the options.
    #[error("cannot encode the frames: {0}")]
    Encode(#[from] wire::EncodeError),
    /// The daemon failed.
    #[error("the receiver failed: {0}")]
    Daemon(#[from] daemon::DaemonError),
    /// Not every image arrived in time, or one differs.
    #[error("{0}")]
    Verify(String),
}

/// What the demo did.
#[derive(Debug, Clone, Default)]
pub struct DemoReport {
    /// Images uploaded.
    pub images: usize,
    /// Images found on disk byte-identical.
    pub verified: usize,
    /// Messages published.
    pub messages: usize,
    /// Seconds from the first publish to the last image.
    pub seconds: f64,
    /// Duplicate deliveries dropped by the receiver.
    pub duplicates_dropped: u64,
    /// Reconnects the receiver made.
    pub reconnects: u64,
    /// Where the images are.
    pub out: PathBuf,
}

struct Upload {
    device: DeviceId,
    format: Format,
    payloads: Vec<Vec<String>>,
    images: Vec<Vec<u8>>,
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> DemoError + 'a {
    move |source| DemoError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Runs the demo, printing progress to `out` (a live counter when it is a terminal). With
/// `--web`, the gallery stays open until Ctrl-C (SIGINT) or SIGTERM.
pub async fn run(args: DemoArgs, out: &mut dyn Write, tty: bool) -> Result<DemoReport, DemoError> {
    use tokio::signal::unix::{signal, SignalKind};
    // Installed now, before the gallery's URL is printed: a Ctrl-C that comes right after it
    // must stop the demo cleanly, not kill it with the default action.
    let (int, term) = if args.web.is_some() {
        (
            signal(SignalKind::interrupt()).ok(),
            signal(SignalKind::terminate()).ok(),
        )
    } else {
        (None, None)
    };
    run_until(args, out, tty, |_| async move {
        let wait = |s: Option<tokio::signal::unix::Signal>| async move {
            match s {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = wait(int) => {}
            _ = wait(term) => {}
        }
    })
    .await
}

/// [`run`], where `--web`'s gallery stays open until `stop` (called with its address) returns.
pub async fn run_until<F, Fut>(
    args: DemoArgs,
    out: &mut dyn Write,
    tty: bool,
    stop: F,
) -> Result<DemoReport, DemoError>
where
    F: FnOnce(std::net::SocketAddr) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let state = std::env::temp_dir().join(format!("receiver-demo-{}", std::process::id()));
    std::fs::create_dir_all(&state).map_err(io_err("create", &state))?;
    let result = run_in(&args, &state, out, tty, stop).await;
    let _ = std::fs::remove_dir_all(&state);
    result
}

async fn run_in<F, Fut>(
    args: &DemoArgs,
    state: &Path,
    out: &mut dyn Write,
    tty: bool,
    stop: F,
) -> Result<DemoReport, DemoError>
where
    F: FnOnce(std::net::SocketAddr) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    std::fs::create_dir_all(&args.out).map_err(io_err("create", &args.out))?;
    let out_dir = args.out.canonicalize().map_err(io_err("open", &args.out))?;
    let fake = FakeAliyun::start(FakeConfig::default()).await?;
    let mut config = demo_config(&out_dir, &state.join("state"))?;
    config.aliyun = fake.client_config(state, "receiver-demo")?;
    config.aliyun.connections = args.connections as usize;
    config.spool.enabled = !args.in_memory;
    // The fake endpoint pushes what a cut connection had in flight again at once, not after
    // Aliyun's 30 s ACK timeout: a v1 picture straddling a cut waits one second, not 90.
    config.assembly.redelivery_grace = std::time::Duration::from_secs(1);
    config.web.listen = args.web;
    let _ = writeln!(
        out,
        "fake Aliyun endpoint on {} (TLS, aksign); receiver with {} connection(s); {} camera(s) x {} picture(s) of {}x{}",
        fake.addr(),
        args.connections,
        args.cameras,
        args.pictures,
        args.size.0,
        args.size.1
    );

    let uploads = make_uploads(args)?;
    let total_images: usize = uploads.iter().map(|u| u.images.len()).sum();
    let total_messages: usize = uploads
        .iter()
        .map(|u| u.payloads.iter().map(Vec::len).sum::<usize>())
        .sum();

    let shared = Shared::new(config.aliyun.connections);
    let shutdown = CancellationToken::new();
    let daemon = tokio::spawn(daemon::run_with(config, shutdown.clone(), shared.clone()));

    if args.reorder {
        fake.set_reorder(true);
    }
    if args.cut_after > 0 {
        fake.cut_after(args.cut_after);
    }
    let started = Instant::now();
    let fake = std::sync::Arc::new(fake);
    let mut cams = tokio::task::JoinSet::new();
    let per_camera_dups = args.duplicates.div_ceil(args.cameras.max(1));
    let mut dups_left = args.duplicates;
    for upload in &uploads {
        let fake = fake.clone();
        let device = upload.device.clone();
        let payloads = upload.payloads.clone();
        let gap = match (args.rate, upload.format) {
            (0, Format::V2) => Duration::ZERO,
            (0, Format::V1) => Duration::from_millis(2),
            (r, Format::V1) => Duration::from_micros((1_000_000 / u64::from(r)).max(2_000)),
            (r, Format::V2) => Duration::from_micros(1_000_000 / u64::from(r)),
        };
        let dups = per_camera_dups.min(dups_left);
        dups_left -= dups;
        cams.spawn(async move {
            let mut sent = 0usize;
            let every = payloads.iter().map(Vec::len).sum::<usize>() / (dups as usize + 1);
            for picture in payloads {
                for p in picture {
                    if dups > 0 && every > 0 && sent > 0 && sent % every == 0 {
                        fake.duplicate_next(1);
                    }
                    fake.publish_property_post(
                        &device.product_key,
                        &device.device_name,
                        p.as_bytes(),
                    )?;
                    sent += 1;
                    if !gap.is_zero() {
                        tokio::time::sleep(gap).await;
                    }
                }
            }
            Ok::<_, receiver_testkit::fake::FakeError>(())
        });
    }

    let deadline = started + Duration::from_secs(args.timeout);
    let metrics = shared.metrics.clone();
    let mut last_print = Instant::now() - Duration::from_secs(1);
    let mut published_done = false;
    loop {
        while let Some(done) = cams.try_join_next() {
            match done {
                Ok(r) => r?,
                Err(e) => return Err(DemoError::Verify(format!("a camera task failed: {e}"))),
            }
        }
        published_done |= cams.is_empty();
        let written = metrics.images_written() as usize;
        let messages = metrics.accepted.load(Relaxed);
        if last_print.elapsed() >= Duration::from_millis(if tty { 100 } else { 1000 }) {
            let secs = started.elapsed().as_secs_f64().max(1e-3);
            let line = format!(
                "images {written}/{total_images}  messages {messages}/{total_messages}  {:.0} msg/s  open {}  duplicates dropped {}  reconnects {}",
                messages as f64 / secs,
                metrics.open_assemblies.load(Relaxed),
                metrics.messages(crate::metrics::Kind::Duplicate)
                    + metrics.duplicate_chunks.load(Relaxed),
                shared.connections.iter().map(|c| c.reconnects.load(Relaxed)).sum::<u64>()
            );
            if tty {
                let _ = write!(out, "\r\x1b[2K{line}");
            } else {
                let _ = writeln!(out, "{line}");
            }
            let _ = out.flush();
            last_print = Instant::now();
        }
        if published_done && written >= total_images && fake.queued() == 0 && fake.in_flight() == 0
        {
            break;
        }
        if daemon.is_finished() {
            return match daemon.await {
                Ok(Err(e)) => Err(DemoError::Daemon(e)),
                Ok(Ok(())) => Err(DemoError::Verify("the receiver stopped early".into())),
                Err(e) => Err(DemoError::Verify(format!("the receiver task failed: {e}"))),
            };
        }
        if Instant::now() > deadline {
            shutdown.cancel();
            let _ = daemon.await;
            return Err(DemoError::Verify(format!(
                "timed out after {} s with {written} of {total_images} images written",
                args.timeout
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    if tty {
        let _ = writeln!(out);
    }
    let report = |out: &mut dyn Write| -> Result<DemoReport, DemoError> {
        let sink = Sink::new(&out_dir, state.join("state"))
            .map_err(|e| DemoError::Verify(e.to_string()))?;
        let verified = verify(&sink, &uploads)?;
        let report = DemoReport {
            images: total_images,
            verified,
            messages: total_messages,
            seconds,
            duplicates_dropped: metrics.messages(crate::metrics::Kind::Duplicate)
                + metrics.duplicate_chunks.load(Relaxed),
            reconnects: shared
                .connections
                .iter()
                .map(|c| c.reconnects.load(Relaxed))
                .sum(),
            out: out_dir.clone(),
        };
        let _ = writeln!(
            out,
            "verified {verified}/{total_images} images byte for byte ({total_messages} messages in {seconds:.2} s, {} duplicate deliveries dropped, {} reconnects)",
            report.duplicates_dropped, report.reconnects
        );
        let _ = writeln!(out, "images are in {}", out_dir.display());
        Ok(report)
    };
    // With the gallery: verify while the receiver runs, then keep it open until told to stop.
    let early = match shared.web_addr.get().copied() {
        Some(addr) if args.web.is_some() => {
            let r = report(out);
            if r.is_ok() {
                let _ = writeln!(
                    out,
                    "gallery: http://{addr}/  (the receiver keeps running; Ctrl-C stops it)"
                );
                let _ = out.flush();
                stop(addr).await;
            }
            Some(r)
        }
        _ => None,
    };
    shutdown.cancel();
    match daemon.await {
        Ok(r) => r?,
        Err(e) => return Err(DemoError::Verify(format!("the receiver task failed: {e}"))),
    }
    fake.shutdown();
    match early {
        Some(r) => r,
        None => report(out),
    }
}

fn demo_config(out_dir: &Path, state_dir: &Path) -> Result<Config, DemoError> {
    let toml = format!(
        "[aliyun]\nhost = \"127.0.0.1\"\naccess_key_id = \"demo\"\naccess_key_secret = \"demo\"\n\
         iot_instance_id = \"\"\nconsumer_group_id = \"demo\"\nclient_id = \"receiver-demo\"\n\
         [output]\ndir = {:?}\n[state]\ndir = {:?}\n",
        out_dir.display().to_string(),
        state_dir.display().to_string()
    );
    Ok(Config::from_toml(&toml, Path::new("demo.toml"), &|_| None)?)
}

fn make_uploads(args: &DemoArgs) -> Result<Vec<Upload>, DemoError> {
    let base_pid = (receiver_protocol::time::now_ms() / 1000 % 1_000_000) as u32 * 1000;
    let mut uploads = Vec::new();
    for c in 0..args.cameras {
        let device = DeviceId::new(DEMO_PRODUCT_KEY, &format!("cam-{c:02}"));
        let format = if c % 2 == 0 { Format::V2 } else { Format::V1 };
        let mut payloads = Vec::new();
        let mut images = Vec::new();
        for p in 0..args.pictures {
            let label = format!("{} {}", device.device_name, format.as_str());
            let jpeg =
                receiver_testkit::sample::scene_jpeg(args.size.0, args.size.1, p, &label, 80)?;
            let chunk = match format {
                Format::V1 => args.v1_chunk,
                Format::V2 => args.chunk,
            };
            payloads.push(wire::encode_payloads(format, &jpeg, base_pid + p, chunk)?);
            images.push(jpeg);
        }
        uploads.push(Upload {
            device,
            format,
            payloads,
            images,
        });
    }
    Ok(uploads)
}

fn verify(sink: &Sink, uploads: &[Upload]) -> Result<usize, DemoError> {
    let mut verified = 0;
    let mut problems = Vec::new();
    for u in uploads {
        let dir = sink.device_dir(&u.device);
        let mut on_disk: HashMap<Vec<u8>, usize> = HashMap::new();
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "jpg") {
                    if let Ok(b) = std::fs::read(&p) {
                        *on_disk.entry(b).or_default() += 1;
                    }
                }
            }
        }
        for (i, img) in u.images.iter().enumerate() {
            if on_disk.contains_key(img) {
                verified += 1;
            } else {
                problems.push(format!("{} picture {i} ({})", u.device, u.format.as_str()));
            }
        }
    }
    if problems.is_empty() {
        Ok(verified)
    } else {
        Err(DemoError::Verify(format!(
            "{} image(s) missing or different: {}",
            problems.len(),
            problems.join(", ")
        )))
    }
}

//! The side-by-side baseline: the seed tutorial's Node.js receiver (`bench/seed/seed-receiver.js`,
//! rhea), this receiver, and this receiver's transport alone (`receiver bench-floor`, see
//! [`super::floor`]), each consuming the same stream from the same third-party AMQP server
//! (`bench/seed/stream-server.js`, rhea), one after the other.

use super::child::{proc_sample, ChildError, ReceiverProcess};
use super::stream::Stream;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

/// The seed's placeholder credentials, verbatim (the stream server is configured to accept them).
pub const SEED_ACCESS_KEY_ID: &str = "LTAI5tXXXXXXXXXXxLEMGYL2";
/// The seed's placeholder secret.
pub const SEED_ACCESS_KEY_SECRET: &str = "6vi2Txxxw9xxxrwig";
/// The seed's placeholder instance id.
pub const SEED_IOT_INSTANCE_ID: &str = "iot-0600uxtxxsx";
/// The seed's consumer group.
pub const SEED_CONSUMER_GROUP_ID: &str = "DEFAULT_GROUP";

/// Why the baseline could not run.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// A process could not be driven.
    #[error(transparent)]
    Child(#[from] ChildError),
    /// The stream server misbehaved.
    #[error("stream server: {0}")]
    Server(String),
}

/// Where the Node.js side lives and whether it is installed.
#[derive(Debug, Clone)]
pub struct SeedSetup {
    /// `bench/seed`.
    pub dir: PathBuf,
    /// The `node` executable.
    pub node: PathBuf,
}

impl SeedSetup {
    /// Finds `dir` with `node_modules/rhea` and a `node` on `PATH`; `Err` says what is missing and
    /// how to install it.
    pub fn find(dir: &Path) -> Result<SeedSetup, String> {
        let candidates = [
            dir.to_path_buf(),
            Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/seed"),
        ];
        let Some(dir) = candidates
            .iter()
            .find(|d| d.join("seed-receiver.js").is_file())
        else {
            return Err(format!(
                "{} not found (run from the repository root or pass --seed-dir)",
                dir.join("seed-receiver.js").display()
            ));
        };
        if !dir.join("node_modules/rhea").is_dir() {
            return Err(format!(
                "rhea is not installed: run `npm ci --prefix {}`",
                dir.display()
            ));
        }
        let node = std::env::var_os("PATH")
            .into_iter()
            .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .map(|p| p.join("node"))
            .find(|p| p.is_file())
            .ok_or_else(|| "node (Node.js) is not on PATH".to_string())?;
        Ok(SeedSetup {
            dir: dir.canonicalize().unwrap_or_else(|_| dir.clone()),
            node,
        })
    }
}

/// Which receiver consumes the stream.
#[derive(Debug, Clone)]
pub enum Consumer {
    /// `node seed-receiver.js`.
    Seed,
    /// `receiver --config <generated>` (this binary).
    Receiver {
        /// The binary.
        bin: PathBuf,
        /// Spool on (durable) or off.
        durable: bool,
        /// Link credit (default: the configuration's).
        credit: Option<u32>,
    },
    /// `receiver --config <generated> bench-floor` (this binary): the daemon's connection code
    /// with a consumer that accepts every delivery unread.
    Floor {
        /// The binary.
        bin: PathBuf,
        /// Link credit (default: the configuration's).
        credit: Option<u32>,
    },
}

/// What one baseline run measured.
#[derive(Debug, Clone, Default)]
pub struct BaselineFigures {
    /// Messages accepted by the server.
    pub messages: u64,
    /// From "go" to the last accept, seconds.
    pub seconds: f64,
    /// The consumer's CPU over that window, seconds.
    pub cpu_seconds: f64,
    /// The consumer's peak RSS, bytes.
    pub peak_rss: u64,
    /// The server's CPU over that window, seconds.
    pub server_cpu_seconds: f64,
    /// Image files the consumer left in its folder.
    pub files: u64,
}

impl BaselineFigures {
    /// Messages per second.
    pub fn msgs_per_s(&self) -> f64 {
        self.messages as f64 / self.seconds.max(1e-9)
    }

    /// CPU microseconds per message.
    pub fn cpu_us_per_msg(&self) -> f64 {
        self.cpu_seconds * 1e6 / (self.messages.max(1) as f64)
    }
}

struct Server {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    pid: u32,
}

impl Server {
    async fn next_event(
        &mut self,
        want: &str,
        timeout: Duration,
    ) -> Result<serde_json::Value, SeedError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match tokio::time::timeout(left, self.lines.next_line()).await {
                Err(_) => {
                    return Err(SeedError::Server(format!(
                        "no {want:?} event within {timeout:?}"
                    )))
                }
                Ok(Err(e)) => return Err(SeedError::Server(format!("reading its output: {e}"))),
                Ok(Ok(None)) => return Err(SeedError::Server("it exited".into())),
                Ok(Ok(Some(line))) => line,
            };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            match v.get("event").and_then(|e| e.as_str()) {
                Some(e) if e == want => return Ok(v),
                Some("server_error") => return Err(SeedError::Server(line)),
                _ => {}
            }
        }
    }
}

/// Runs one consumer against a fresh stream server fed `stream_file` (`stream.messages.len()`
/// messages). `work` is a scratch folder.
pub async fn run_once(
    setup: &SeedSetup,
    consumer: &Consumer,
    stream: &Stream,
    stream_file: &Path,
    work: &Path,
    timeout: Duration,
) -> Result<BaselineFigures, SeedError> {
    let mk = |p: &Path| {
        std::fs::create_dir_all(p).map_err(|source| ChildError::Io {
            what: format!("create {}", p.display()),
            source,
        })
    };
    mk(work)?;
    let pki = receiver_testkit::pki::generate_test_pki(&[])
        .map_err(|e| SeedError::Server(format!("cannot generate certificates: {e}")))?;
    let write = |name: &str, text: &str| -> Result<PathBuf, SeedError> {
        let p = work.join(name);
        std::fs::write(&p, text).map_err(|source| ChildError::Io {
            what: format!("write {}", p.display()),
            source,
        })?;
        Ok(p)
    };
    let cert = write("server-cert.pem", &pki.cert_pem)?;
    let key = write("server-key.pem", &pki.key_pem)?;
    let ca = write("ca.pem", &pki.ca_pem)?;
    let config = serde_json::json!({
        "cert_file": cert,
        "key_file": key,
        "access_key_id": SEED_ACCESS_KEY_ID,
        "access_key_secret": SEED_ACCESS_KEY_SECRET,
        "iot_instance_id": SEED_IOT_INSTANCE_ID,
        "consumer_group_id": SEED_CONSUMER_GROUP_ID,
        "stream_file": stream_file,
    });
    let mut child = tokio::process::Command::new(&setup.node)
        .arg(setup.dir.join("stream-server.js"))
        .env("STREAM_CONFIG", config.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| ChildError::Io {
            what: "cannot start node stream-server.js".into(),
            source,
        })?;
    let pid = child.id().unwrap_or(0);
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(SeedError::Server("no pipes".into()));
    };
    let mut server = Server {
        child,
        stdin,
        lines: BufReader::new(stdout).lines(),
        pid,
    };
    let listening = server
        .next_event("listening", Duration::from_secs(60))
        .await?;
    let port = listening
        .get("port")
        .and_then(|p| p.as_u64())
        .ok_or_else(|| SeedError::Server("no port".into()))? as u16;

    let img_dir = work.join("images");
    mk(&img_dir)?;
    // The configuration of the receiver row (the floor row reads the same file).
    let receiver_toml = |durable: bool, credit: Option<u32>| {
        super::receiver_toml(&super::ReceiverToml {
            host: "127.0.0.1",
            port,
            ca_file: &ca,
            access_key_id: SEED_ACCESS_KEY_ID,
            access_key_secret: SEED_ACCESS_KEY_SECRET,
            iot_instance_id: SEED_IOT_INSTANCE_ID,
            consumer_group_id: SEED_CONSUMER_GROUP_ID,
            connections: 1,
            credit,
            output: &img_dir,
            s3: None,
            state: &work.join("state"),
            durable,
            batch_delay: None,
            memory_limit: None,
        })
    };
    // Start the consumer: the seed and the floor are plain children (stderr to a file), the
    // receiver is driven like in the other parts of the bench.
    let log = work.join("consumer-stderr.log");
    let mut plain_child = None;
    let mut receiver = None;
    match consumer {
        Consumer::Seed => {
            let mut cmd = tokio::process::Command::new(&setup.node);
            cmd.arg(setup.dir.join("seed-receiver.js"))
                .current_dir(&setup.dir)
                .env("SEED_PORT", port.to_string())
                .env("SEED_CA", &ca)
                .env("SEED_IMG_DIR", &img_dir);
            plain_child = Some(spawn_logged(cmd, &log, "node seed-receiver.js")?);
        }
        Consumer::Receiver {
            bin,
            durable,
            credit,
        } => {
            let path = write("receiver.toml", &receiver_toml(*durable, *credit))?;
            receiver = Some(ReceiverProcess::start(bin, &path).await?);
        }
        Consumer::Floor { bin, credit } => {
            let path = write("receiver.toml", &receiver_toml(true, *credit))?;
            let mut cmd = tokio::process::Command::new(bin);
            cmd.arg("--config")
                .arg(&path)
                .args(["--log-format", "json", "bench-floor"])
                .env_remove("RUST_LOG");
            let what = format!("{} bench-floor", bin.display());
            plain_child = Some(spawn_logged(cmd, &log, &what)?);
        }
    }
    let consumer_pid = match (&plain_child, &receiver) {
        (Some(c), _) => c.id().unwrap_or(0),
        (_, Some(r)) => r.pid(),
        _ => 0,
    };
    let result = async {
        server.next_event("link", timeout).await?;
        let cpu0 = proc_sample(consumer_pid).unwrap_or_default().cpu_seconds;
        let scpu0 = proc_sample(server.pid).unwrap_or_default().cpu_seconds;
        let t0 = Instant::now();
        server
            .stdin
            .write_all(b"go\n")
            .await
            .map_err(|e| SeedError::Server(format!("cannot write go: {e}")))?;
        server.stdin.flush().await.ok();
        let done = server.next_event("done", timeout).await?;
        let seconds = t0.elapsed().as_secs_f64();
        let after = proc_sample(consumer_pid).unwrap_or_default();
        let scpu1 = proc_sample(server.pid).unwrap_or_default().cpu_seconds;
        let accepted = done.get("accepted").and_then(|a| a.as_u64()).unwrap_or(0);
        Ok::<_, SeedError>(BaselineFigures {
            messages: accepted,
            seconds,
            cpu_seconds: after.cpu_seconds - cpu0,
            peak_rss: after.peak_rss,
            server_cpu_seconds: scpu1 - scpu0,
            files: 0,
        })
    }
    .await;
    // Stop everything.
    if let Some(mut c) = plain_child {
        if matches!(consumer, Consumer::Floor { .. }) {
            // A clean stop, like the receiver's (not measured).
            if let Some(pid) = c.id() {
                // SAFETY: kill(2) on our own child's pid.
                unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGTERM);
                }
            }
            let _ = tokio::time::timeout(Duration::from_secs(10), c.wait()).await;
        }
        let _ = c.start_kill();
        let _ = c.wait().await;
    }
    if let Some(r) = receiver {
        r.stop(Duration::from_secs(20)).await;
    }
    drop(server.stdin);
    let _ = tokio::time::timeout(Duration::from_secs(5), server.child.wait()).await;
    let _ = server.child.start_kill();
    let mut figures = result.map_err(|e| match consumer {
        Consumer::Seed | Consumer::Floor { .. } => {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(10).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            SeedError::Server(format!("{e}; the consumer's stderr:\n{}", tail.join("\n")))
        }
        Consumer::Receiver { .. } => e,
    })?;
    figures.files = count_files(&img_dir);
    if figures.messages != stream.messages.len() as u64 {
        return Err(SeedError::Server(format!(
            "{} of {} messages accepted",
            figures.messages,
            stream.messages.len()
        )));
    }
    Ok(figures)
}

/// Starts `cmd` without stdin and stdout, its stderr to `log`, killed when dropped.
fn spawn_logged(
    mut cmd: tokio::process::Command,
    log: &Path,
    what: &str,
) -> Result<Child, ChildError> {
    let stderr = std::fs::File::create(log).map_err(|source| ChildError::Io {
        what: format!("create {}", log.display()),
        source,
    })?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| ChildError::Io {
            what: format!("cannot start {what}"),
            source,
        })
}

fn count_files(dir: &Path) -> u64 {
    walk(dir)
}

fn walk(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                walk(&p)
            } else {
                u64::from(p.extension().is_some_and(|x| x == "jpg"))
            }
        })
        .sum()
}

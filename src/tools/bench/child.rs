//! The process under test: spawning it, reading its CPU time and peak RSS from `/proc`, scraping
//! its `/metrics`, stopping it.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::oneshot;

/// Why the process under test could not be driven.
#[derive(Debug, thiserror::Error)]
pub enum ChildError {
    /// Spawning or talking to it failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// It did not get ready, or died.
    #[error("{0}")]
    Failed(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ChildError {
    let what = what.into();
    move |source| ChildError::Io { what, source }
}

/// CPU time (user + system) and memory of a live process, from `/proc/<pid>`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcSample {
    /// utime + stime of the whole process (all threads, dead ones included), seconds.
    pub cpu_seconds: f64,
    /// VmHWM: peak resident set size so far, bytes.
    pub peak_rss: u64,
    /// VmRSS: resident set size now, bytes.
    pub rss: u64,
    /// Context switches (voluntary + involuntary) of its live threads.
    pub ctx_switches: u64,
}

/// Reads `/proc/<pid>/stat` and `/proc/<pid>/status`.
pub fn proc_sample(pid: u32) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start at field 3 (state).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no memory-safety preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    let mut ctx_switches = 0;
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            let Ok(st) = std::fs::read_to_string(t.path().join("status")) else {
                continue;
            };
            ctx_switches += st
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    Some(ProcSample {
        cpu_seconds: (utime + stime) as f64 / ticks,
        peak_rss: kb("VmHWM:"),
        rss: kb("VmRSS:"),
        ctx_switches,
    })
}

/// CPU seconds (user + system) this process has used so far, all threads.
pub fn self_cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// The last lines a process wrote on stderr (for error messages) and how many there were.
#[derive(Debug, Default)]
pub struct LogTail {
    /// Lines seen.
    pub lines: u64,
    /// The most recent ones.
    pub last: VecDeque<String>,
}

impl LogTail {
    fn push(&mut self, line: String) {
        self.lines += 1;
        if self.last.len() == 12 {
            self.last.pop_front();
        }
        self.last.push_back(line);
    }

    /// The recent lines, joined.
    pub fn recent(&self) -> String {
        self.last.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

/// A running `receiver --config ... run`.
#[derive(Debug)]
pub struct ReceiverProcess {
    child: tokio::process::Child,
    pid: u32,
    /// Where its `/metrics` listens.
    pub metrics_addr: SocketAddr,
    /// Its stderr (JSON logs).
    pub log: Arc<Mutex<LogTail>>,
}

impl ReceiverProcess {
    /// Starts `bin --config config --log-format json run` and waits until it serves `/metrics`
    /// (it announces the bound address in its log).
    pub async fn start(bin: &Path, config: &Path) -> Result<ReceiverProcess, ChildError> {
        let mut child = tokio::process::Command::new(bin)
            .arg("--config")
            .arg(config)
            .args(["--log-format", "json", "run"])
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(io(format!("cannot start {}", bin.display())))?;
        let pid = child
            .id()
            .ok_or_else(|| ChildError::Failed("the receiver exited at once".into()))?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| ChildError::Failed("no stderr pipe".into()))?;
        let log = Arc::new(Mutex::new(LogTail::default()));
        let (addr_tx, addr_rx) = oneshot::channel::<SocketAddr>();
        {
            let log = log.clone();
            tokio::spawn(async move {
                let mut addr_tx = Some(addr_tx);
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if addr_tx.is_some() {
                        if let Some(addr) = metrics_addr_in(&line) {
                            if let Some(tx) = addr_tx.take() {
                                let _ = tx.send(addr);
                            }
                        }
                    }
                    if let Ok(mut l) = log.lock() {
                        l.push(line);
                    }
                }
            });
        }
        let metrics_addr = match tokio::time::timeout(Duration::from_secs(30), addr_rx).await {
            Ok(Ok(addr)) => addr,
            _ => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                let recent = log.lock().map(|l| l.recent()).unwrap_or_default();
                return Err(ChildError::Failed(format!(
                    "the receiver did not start serving /metrics; its last log lines:\n{recent}"
                )));
            }
        };
        Ok(ReceiverProcess {
            child,
            pid,
            metrics_addr,
            log,
        })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// CPU and memory now.
    pub fn sample(&self) -> Option<ProcSample> {
        proc_sample(self.pid)
    }

    /// `true` if it has exited.
    pub fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Its `/metrics` text.
    pub async fn scrape(&self) -> Result<String, ChildError> {
        http_get(self.metrics_addr, "/metrics").await
    }

    /// SIGTERM, then waits (SIGKILL after `grace`). Returns a description of how it ended.
    pub async fn stop(mut self, grace: Duration) -> String {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.pid as libc::pid_t, libc::SIGTERM);
        }
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(Ok(status)) => status.to_string(),
            Ok(Err(e)) => format!("wait failed: {e}"),
            Err(_) => {
                let _ = self.child.start_kill();
                let _ = self.child.wait().await;
                "killed after the grace period".into()
            }
        }
    }
}

/// The address in a JSON log line `{"message":"serving /healthz and /metrics","addr":"..."}`.
fn metrics_addr_in(line: &str) -> Option<SocketAddr> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    if v.get("message")?.as_str()? != "serving /healthz and /metrics" {
        return None;
    }
    v.get("addr")?.as_str()?.parse().ok()
}

/// A minimal HTTP/1.0 GET; returns the body of a 200 response.
pub async fn http_get(addr: SocketAddr, path: &str) -> Result<String, ChildError> {
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(io(format!("connect {addr}")))?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await
            .map_err(io("send the request"))?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf)
            .await
            .map_err(io("read the response"))?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| ChildError::Failed("malformed HTTP response".into()))?;
        if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
            return Err(ChildError::Failed(format!(
                "GET {path}: {}",
                head.lines().next().unwrap_or("")
            )));
        }
        Ok(body.to_string())
    };
    match tokio::time::timeout(Duration::from_secs(10), fut).await {
        Ok(r) => r,
        Err(_) => Err(ChildError::Failed(format!("GET {path} timed out"))),
    }
}

/// Values read from a `/metrics` text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scraped {
    /// `receiver_images_written_total`, all formats.
    pub images_written: u64,
    /// `receiver_quarantined_total`, all reasons.
    pub quarantined: u64,
    /// `receiver_quarantined_total` by reason.
    pub quarantine_reasons: std::collections::BTreeMap<String, u64>,
    /// `receiver_accepted_total`.
    pub accepted: u64,
    /// `receiver_open_assemblies`.
    pub open_assemblies: u64,
    /// `receiver_assembly_bytes`.
    pub assembly_bytes: u64,
    /// `receiver_spool_commits_total`.
    pub spool_commits: u64,
    /// `receiver_image_latency_seconds` buckets: (upper bound in seconds, cumulative count);
    /// the last one is `+Inf`.
    pub image_latency: Vec<(f64, u64)>,
}

impl Scraped {
    /// Parses the Prometheus text.
    pub fn parse(text: &str) -> Scraped {
        let mut s = Scraped::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((key, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let v: f64 = value.parse().unwrap_or(0.0);
            let n = v as u64;
            let name = key.split('{').next().unwrap_or(key);
            match name {
                "receiver_images_written_total" => s.images_written += n,
                "receiver_quarantined_total" => {
                    s.quarantined += n;
                    if let Some(reason) = label(key, "reason") {
                        *s.quarantine_reasons.entry(reason.to_string()).or_default() += n;
                    }
                }
                "receiver_accepted_total" => s.accepted = n,
                "receiver_open_assemblies" => s.open_assemblies = n,
                "receiver_assembly_bytes" => s.assembly_bytes = n,
                "receiver_spool_commits_total" => s.spool_commits = n,
                "receiver_image_latency_seconds_bucket" => {
                    let le = label(key, "le").unwrap_or("+Inf");
                    let bound = if le == "+Inf" {
                        f64::INFINITY
                    } else {
                        le.parse().unwrap_or(f64::INFINITY)
                    };
                    s.image_latency.push((bound, n));
                }
                _ => {}
            }
        }
        s
    }

    /// Observations in the image-latency histogram.
    pub fn latency_count(&self) -> u64 {
        self.image_latency.last().map_or(0, |b| b.1)
    }

    /// The `q` quantile of the image latency, ms, interpolated linearly inside its bucket (as
    /// Prometheus' `histogram_quantile` does). `None` without observations; the largest finite
    /// bound when it falls in `+Inf`.
    pub fn latency_quantile_ms(&self, q: f64) -> Option<f64> {
        histogram_quantile(&self.image_latency, q).map(|s| s * 1000.0)
    }
}

/// The value of label `name` in a sample key `metric{a="x",name="y"}`.
fn label<'a>(key: &'a str, name: &str) -> Option<&'a str> {
    let rest = key.split_once('{')?.1;
    rest.split(',').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k.trim() == name).then(|| v.trim_end_matches('}').trim_matches('"'))
    })
}

/// `histogram_quantile` over cumulative `(upper bound, count)` buckets, seconds.
pub fn histogram_quantile(buckets: &[(f64, u64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut prev_bound = 0.0;
    let mut prev_count = 0u64;
    for &(bound, cum) in buckets {
        if cum as f64 >= rank {
            if bound.is_infinite() {
                return Some(prev_bound);
            }
            let in_bucket = (cum - prev_count) as f64;
            let frac = if in_bucket > 0.0 {
                (rank - prev_count as f64) / in_bucket
            } else {
                1.0
            };
            return Some(prev_bound + (bound - prev_bound) * frac.clamp(0.0, 1.0));
        }
        prev_bound = bound;
        prev_count = cum;
    }
    Some(prev_bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_metrics_and_quantiles() {
        let m = crate::metrics::Metrics::default();
        for us in [1_000, 2_000, 3_000, 9_000] {
            m.image_latency.observe_us(us);
        }
        m.images_v1
            .fetch_add(2, std::sync::atomic::Ordering::Relaxed);
        m.images_v2
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let s = Scraped::parse(&m.render_prometheus());
        assert_eq!(s.images_written, 3);
        assert_eq!(s.latency_count(), 4);
        let p50 = s.latency_quantile_ms(0.5).unwrap();
        assert!((1.5..=2.0).contains(&p50), "{p50}");
        let p99 = s.latency_quantile_ms(0.99).unwrap();
        assert!((8.0..=10.0).contains(&p99), "{p99}");
    }

    #[test]
    fn reads_our_own_proc_entry() {
        let s = proc_sample(std::process::id()).unwrap();
        assert!(s.peak_rss > 0 && s.rss > 0);
    }

    #[test]
    fn finds_the_metrics_address() {
        let line = r#"{"timestamp":"x","level":"INFO","message":"serving /healthz and /metrics","addr":"127.0.0.1:4567","target":"receiver::ops"}"#;
        assert_eq!(
            metrics_addr_in(line),
            Some("127.0.0.1:4567".parse().unwrap())
        );
        assert_eq!(metrics_addr_in("{}"), None);
    }
}

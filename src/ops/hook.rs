//! The optional on-image hook: a command run for each finished image.
//!
//! The command is an argv array (`[hook] command = ["/usr/local/bin/forward", "--flag"]`), run
//! directly, **never through a shell**, with three arguments appended: the image path, the
//! product key and the device name. The same facts are in its environment:
//! `RECEIVER_IMAGE_PATH`, `RECEIVER_PRODUCT_KEY`, `RECEIVER_DEVICE_NAME`, `RECEIVER_IMAGE_BYTES`,
//! `RECEIVER_FORMAT` (`v1`/`v2`). Device-controlled strings therefore arrive verbatim as single
//! arguments and cannot inject commands. (They may start with `-`: a hook whose argument parser
//! cares should end its `command` with `--`, or read the environment instead.)
//!
//! - [`Hook::submit`] never blocks: it hands the job to a bounded queue (`queue`), read by a
//!   dispatcher task that runs at most `max_concurrent` commands at once. When the queue is full
//!   the job is dropped with a (rate-limited) warning and counted; ingest never waits for a hook.
//! - Each run has a `timeout`; on expiry the command's whole process group is killed (`SIGKILL`),
//!   so a script's own children die with it.
//! - Exit codes, signals, time-outs and spawn errors are logged with the device and path, and
//!   counted in `receiver_hook_jobs_total{result}`.
//! - stdin is `/dev/null`; stdout and stderr are inherited (under systemd: the journal, attributed
//!   to the unit). `NOTIFY_SOCKET` and `WATCHDOG_*` are removed from its environment.

use crate::message::DeviceId;
use crate::metrics::Metrics;
use crate::wire::Format;
use serde::Deserialize;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

/// Minimum time between two "queue full" warnings.
const DROP_WARN_EVERY: Duration = Duration::from_secs(10);

/// `[hook]`: the command and its limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookConfig {
    /// Program and leading arguments (non-empty).
    pub command: Vec<String>,
    /// Longest run; the command's process group is killed after it.
    pub timeout: Duration,
    /// Commands running at once.
    pub max_concurrent: usize,
    /// Jobs waiting for a free slot before new ones are dropped.
    pub queue: usize,
}

impl HookConfig {
    /// A config for `command` with the default limits (30 s, 4 at once, 256 queued).
    pub fn new(command: Vec<String>) -> HookConfig {
        HookConfig {
            command,
            timeout: Duration::from_secs(30),
            max_concurrent: 4,
            queue: 256,
        }
    }
}

/// `[hook]` as written in TOML.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHookConfig {
    /// argv array; absent or empty = no hook.
    pub command: Option<Vec<String>>,
    /// Default `"30s"`.
    pub timeout: Option<String>,
    /// Default 4.
    pub max_concurrent: Option<usize>,
    /// Default 256.
    pub queue: Option<usize>,
}

impl RawHookConfig {
    /// Validates; `Ok(None)` when no command is configured.
    pub fn validate(&self) -> Result<Option<HookConfig>, super::OpsConfigError> {
        let invalid = |key, why: &str| super::OpsConfigError::Invalid {
            key,
            why: why.to_string(),
        };
        let Some(command) = self.command.clone().filter(|c| !c.is_empty()) else {
            if self.timeout.is_some() || self.max_concurrent.is_some() || self.queue.is_some() {
                return Err(invalid(
                    "hook.command",
                    "is required when [hook] has settings",
                ));
            }
            return Ok(None);
        };
        if command[0].is_empty() {
            return Err(invalid("hook.command", "the program name is empty"));
        }
        if command.iter().any(|a| a.contains('\0')) {
            return Err(invalid("hook.command", "contains a NUL character"));
        }
        let mut cfg = HookConfig::new(command);
        if let Some(t) = super::opt_duration("hook.timeout", &self.timeout)? {
            if t.is_zero() {
                return Err(invalid("hook.timeout", "must be greater than zero"));
            }
            cfg.timeout = t;
        }
        if let Some(n) = self.max_concurrent {
            if n == 0 {
                return Err(invalid("hook.max_concurrent", "must be at least 1"));
            }
            cfg.max_concurrent = n;
        }
        if let Some(n) = self.queue {
            if n == 0 {
                return Err(invalid("hook.queue", "must be at least 1"));
            }
            cfg.queue = n;
        }
        Ok(Some(cfg))
    }
}

/// One finished image for the hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookJob {
    /// Where the image was written.
    pub path: PathBuf,
    /// Its camera.
    pub device: DeviceId,
    /// Its size.
    pub bytes: u64,
    /// Its wire format.
    pub format: Format,
}

/// How one run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookOutcome {
    /// Exit status 0.
    Ok,
    /// Non-zero exit status.
    Exit(i32),
    /// Killed by a signal (not by us).
    Signal(i32),
    /// Killed at the time-out.
    Timeout,
    /// Could not be started.
    Spawn(String),
}

struct Inner {
    tx: mpsc::Sender<HookJob>,
    metrics: Arc<Metrics>,
    closing: CancellationToken,
    dispatcher: Mutex<Option<JoinHandle<()>>>,
    dropped_unwarned: AtomicU64,
    last_warn: Mutex<Option<Instant>>,
}

/// Handle to the hook runner. Cheap to clone; [`Hook::submit`] may be called from any thread.
#[derive(Clone)]
pub struct Hook {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hook").finish_non_exhaustive()
    }
}

impl Hook {
    /// Starts the dispatcher for `cfg` on the runtime `rt`.
    pub fn new(cfg: HookConfig, metrics: Arc<Metrics>, rt: &tokio::runtime::Handle) -> Hook {
        let (tx, rx) = mpsc::channel(cfg.queue.max(1));
        let closing = CancellationToken::new();
        let dispatcher = rt.spawn(dispatch(cfg, rx, metrics.clone(), closing.clone()));
        Hook {
            inner: Arc::new(Inner {
                tx,
                metrics,
                closing,
                dispatcher: Mutex::new(Some(dispatcher)),
                dropped_unwarned: AtomicU64::new(0),
                last_warn: Mutex::new(None),
            }),
        }
    }

    /// Queues `job` without blocking. `false` (and a counted, rate-limited warning) when the queue
    /// is full or the hook is shutting down.
    pub fn submit(&self, job: HookJob) -> bool {
        let inner = &self.inner;
        if inner.closing.is_cancelled() {
            inner.metrics.hook_dropped.fetch_add(1, Relaxed);
            tracing::debug!(device = %job.device, path = %job.path.display(),
                "hook shutting down; image not handed to it");
            return false;
        }
        match inner.tx.try_send(job) {
            Ok(()) => true,
            Err(e) => {
                let job = match e {
                    mpsc::error::TrySendError::Full(j) | mpsc::error::TrySendError::Closed(j) => j,
                };
                inner.metrics.hook_dropped.fetch_add(1, Relaxed);
                let dropped = inner.dropped_unwarned.fetch_add(1, Relaxed) + 1;
                let due = inner.last_warn.lock().is_ok_and(|mut last| {
                    let due = last.is_none_or(|t| t.elapsed() >= DROP_WARN_EVERY);
                    if due {
                        *last = Some(Instant::now());
                    }
                    due
                });
                if due {
                    inner.dropped_unwarned.fetch_sub(dropped, Relaxed);
                    tracing::warn!(device = %job.device, path = %job.path.display(), dropped,
                        "hook queue full; image(s) not handed to the hook");
                }
                false
            }
        }
    }

    /// Stops taking jobs, lets the queued and running ones finish for up to `grace`, then kills
    /// whatever still runs. Idempotent.
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.closing.cancel();
        let handle = self.inner.dispatcher.lock().ok().and_then(|mut d| d.take());
        let Some(mut handle) = handle else {
            return;
        };
        if tokio::time::timeout(grace, &mut handle).await.is_err() {
            tracing::warn!(
                grace_ms = grace.as_millis() as u64,
                "hooks still running at shutdown; killing them"
            );
            handle.abort();
            let _ = handle.await;
        }
    }
}

async fn dispatch(
    cfg: HookConfig,
    mut rx: mpsc::Receiver<HookJob>,
    metrics: Arc<Metrics>,
    closing: CancellationToken,
) {
    let cfg = Arc::new(cfg);
    let slots = Arc::new(Semaphore::new(cfg.max_concurrent.max(1)));
    let mut running = JoinSet::new();
    let mut closed = false;
    loop {
        let job = tokio::select! {
            j = rx.recv() => j,
            _ = closing.cancelled(), if !closed => {
                // No new jobs; the queued ones still run.
                rx.close();
                closed = true;
                continue;
            }
        };
        let Some(job) = job else { break };
        let Ok(permit) = slots.clone().acquire_owned().await else {
            break;
        };
        while running.try_join_next().is_some() {}
        let (cfg, metrics) = (cfg.clone(), metrics.clone());
        running.spawn(async move {
            let outcome = run(&cfg, &job).await;
            report(&metrics, &job, &outcome);
            drop(permit);
        });
    }
    // Aborting this task drops `running`, which aborts the runs and kills their process groups.
    while running.join_next().await.is_some() {}
}

fn report(metrics: &Metrics, job: &HookJob, outcome: &HookOutcome) {
    let (device, path) = (&job.device, job.path.display());
    match outcome {
        HookOutcome::Ok => {
            metrics.hook_ok.fetch_add(1, Relaxed);
            tracing::debug!(%device, %path, "hook done");
        }
        HookOutcome::Exit(code) => {
            metrics.hook_failed.fetch_add(1, Relaxed);
            tracing::warn!(%device, %path, exit_code = code, "hook failed");
        }
        HookOutcome::Signal(sig) => {
            metrics.hook_failed.fetch_add(1, Relaxed);
            tracing::warn!(%device, %path, signal = sig, "hook killed by a signal");
        }
        HookOutcome::Timeout => {
            metrics.hook_timeouts.fetch_add(1, Relaxed);
            tracing::warn!(%device, %path, "hook timed out; killed");
        }
        HookOutcome::Spawn(e) => {
            metrics.hook_spawn_errors.fetch_add(1, Relaxed);
            tracing::warn!(%device, %path, error = %e, "cannot start the hook");
        }
    }
}

/// Kills a process group when dropped while armed (time-out, or the run task aborted).
struct GroupKill(Option<i32>);

impl GroupKill {
    fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            // SAFETY: kill(2) has no memory-safety preconditions. The group is ours: the child
            // was started as its leader and has not been reaped yet, so its id is not reused.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }
}

impl Drop for GroupKill {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs the hook once for `job` (never through a shell).
pub async fn run(cfg: &HookConfig, job: &HookJob) -> HookOutcome {
    let Some((program, args)) = cfg.command.split_first() else {
        return HookOutcome::Spawn("empty command".into());
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .arg(&job.path)
        .arg(&*job.device.product_key)
        .arg(&*job.device.device_name)
        .env("RECEIVER_IMAGE_PATH", &job.path)
        .env("RECEIVER_PRODUCT_KEY", &*job.device.product_key)
        .env("RECEIVER_DEVICE_NAME", &*job.device.device_name)
        .env("RECEIVER_IMAGE_BYTES", job.bytes.to_string())
        .env("RECEIVER_FORMAT", job.format.as_str())
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .stdin(Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return HookOutcome::Spawn(format!("{program}: {e}")),
    };
    let mut guard = GroupKill(child.id().and_then(|id| i32::try_from(id).ok()));
    let status = match tokio::time::timeout(cfg.timeout, child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            guard.kill();
            let _ = child.wait().await;
            return HookOutcome::Timeout;
        }
    };
    // Reaped: the id may be reused from now on, so never signal the group again.
    guard.0 = None;
    match status {
        Ok(s) if s.success() => HookOutcome::Ok,
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => HookOutcome::Exit(code),
            (None, Some(sig)) => HookOutcome::Signal(sig),
            (None, None) => HookOutcome::Exit(-1),
        },
        Err(e) => HookOutcome::Spawn(format!("waiting for {program}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_config_validates() {
        let raw: RawHookConfig = toml::from_str(
            "command = [\"/usr/local/bin/forward\", \"--flag\"]\ntimeout = \"5s\"\nmax_concurrent = 2",
        )
        .unwrap();
        let cfg = raw.validate().unwrap().unwrap();
        assert_eq!(cfg.command, vec!["/usr/local/bin/forward", "--flag"]);
        assert_eq!(cfg.timeout, Duration::from_secs(5));
        assert_eq!(cfg.max_concurrent, 2);
        assert_eq!(cfg.queue, 256);
        assert_eq!(RawHookConfig::default().validate().unwrap(), None);
        for bad in [
            "command = [\"\"]",
            "command = [\"/x\"]\nmax_concurrent = 0",
            "command = [\"/x\"]\ntimeout = \"0s\"",
            "command = [\"/x\"]\ntimeout = \"soon\"",
            "timeout = \"5s\"",
        ] {
            let raw: RawHookConfig = toml::from_str(bad).unwrap();
            assert!(raw.validate().is_err(), "{bad}");
        }
    }
}

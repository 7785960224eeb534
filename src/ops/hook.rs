//! The optional on-image hook: a command run for each finished image.
//!
//! The command is an argv array (`[hook] command = ["/usr/local/bin/forward", "--flag"]`), run
//! directly, **never through a shell**, with three arguments appended: the image path, the
//! product key and the device name. The same facts are in its environment:
//! `RECEIVER_IMAGE_PATH`, `RECEIVER_PRODUCT_KEY`, `RECEIVER_DEVICE_NAME`, `RECEIVER_IMAGE_BYTES`,
//! `RECEIVER_FORMAT` (`v1`/`v2`). With `[output] backend = "s3"` the first argument is
//! `s3://<bucket>/<key>` and `RECEIVER_BUCKET` and `RECEIVER_OBJECT_KEY` replace
//! `RECEIVER_IMAGE_PATH`. Device-controlled strings therefore arrive verbatim as single
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
//!   to the unit).
//! - **Environment**: cleared, then only [`PASSED_ENV`] (`PATH`, `HOME`, locale, `TZ`, ...) from
//!   the daemon's environment, the `RECEIVER_*` picture variables, and what `[hook] env` asks for
//!   (`"NAME"`: passed through from the daemon's environment; `"NAME=value"`: set). The daemon's
//!   secrets (`RECEIVER_ACCESS_KEY_SECRET`, ...), `NOTIFY_SOCKET`, `WATCHDOG_*` and
//!   `CREDENTIALS_DIRECTORY` never reach the hook unless listed, and the secret variables cannot
//!   be listed.
//! - **Process group**: each run is the leader of a new process group. When the command exits
//!   (or times out, or the daemon stops) the whole group is killed with `SIGKILL`, so nothing a
//!   hook started outlives it. A hook must not daemonize (`setsid`, double fork): what leaves
//!   the group is only stopped with the service.

use crate::config::HumanDuration;
use crate::events::ops::{HookDropCause, HookDropped, HookRan};
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

/// Variables the hook gets from the daemon's environment when they are set (besides the
/// `RECEIVER_*` picture variables and `[hook] env`). Plus every `LC_*`.
pub const PASSED_ENV: &[&str] = &[
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR",
];

/// `PATH` given to the hook when the daemon has none.
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// The variables the daemon sets for each picture; `[hook] env` may not name them.
pub const PICTURE_ENV: &[&str] = &[
    "RECEIVER_IMAGE_PATH",
    "RECEIVER_BUCKET",
    "RECEIVER_OBJECT_KEY",
    "RECEIVER_PRODUCT_KEY",
    "RECEIVER_DEVICE_NAME",
    "RECEIVER_IMAGE_BYTES",
    "RECEIVER_FORMAT",
];

/// Variables `[hook] env` may not pass: the daemon's secrets and systemd's channels to the
/// daemon itself.
pub const REFUSED_ENV: &[&str] = &[
    crate::config::ENV_ACCESS_KEY_SECRET,
    crate::config::ENV_SECURITY_TOKEN,
    crate::config::ENV_OUTPUT_SECRET_ACCESS_KEY,
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
];

/// One `[hook] env` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookEnv {
    /// `"NAME"`: the daemon's value, when it has one.
    Pass(String),
    /// `"NAME=value"`: this value.
    Set(String, String),
}

/// As written in the config ([`HookEnv::as_config`]).
impl serde::Serialize for HookEnv {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.as_config())
    }
}

impl HookEnv {
    /// The variable's name.
    pub fn name(&self) -> &str {
        match self {
            HookEnv::Pass(n) | HookEnv::Set(n, _) => n,
        }
    }

    /// As written in the config.
    pub fn as_config(&self) -> String {
        match self {
            HookEnv::Pass(n) => n.clone(),
            HookEnv::Set(n, v) => format!("{n}={v}"),
        }
    }
}

/// `[hook]`: the command and its limits.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HookConfig {
    /// Program and leading arguments (non-empty).
    pub command: Vec<String>,
    /// Extra environment (`[hook] env`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<HookEnv>,
    /// Longest run; the command's process group is killed after it.
    #[serde(serialize_with = "crate::config::as_toml::duration")]
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
            env: Vec::new(),
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
    pub command: super::Field<Vec<String>>,
    /// Default `"30s"`.
    pub timeout: super::Field<HumanDuration>,
    /// Default 4.
    pub max_concurrent: super::Field<usize>,
    /// Default 256.
    pub queue: super::Field<usize>,
    /// Extra variables: `"NAME"` (passed through) or `"NAME=value"`.
    pub env: super::Field<Vec<String>>,
}

impl RawHookConfig {
    /// Validates; `Ok(None)` when no command is configured.
    pub fn validate(&self) -> Result<Option<HookConfig>, super::OpsConfigError> {
        use super::{value, OpsConfigError};
        let command = self.command.as_ref();
        let Some(argv) = command.map(|c| c.get_ref()).filter(|c| !c.is_empty()) else {
            // Point at the first setting that needs the command.
            let first = [
                self.timeout.as_ref().map(|s| s.span()),
                self.max_concurrent.as_ref().map(|s| s.span()),
                self.queue.as_ref().map(|s| s.span()),
                self.env.as_ref().map(|s| s.span()),
            ]
            .into_iter()
            .flatten()
            .min_by_key(|s| s.start);
            if let Some(span) = first {
                return Err(OpsConfigError::Invalid {
                    key: "hook.command",
                    why: "is required when [hook] has settings".into(),
                    span: Some(span),
                });
            }
            return Ok(None);
        };
        if argv[0].is_empty() {
            return Err(OpsConfigError::invalid(
                "hook.command",
                command,
                "the program name is empty",
            ));
        }
        if argv.iter().any(|a| a.contains('\0')) {
            return Err(OpsConfigError::invalid(
                "hook.command",
                command,
                "contains a NUL character",
            ));
        }
        let mut cfg = HookConfig::new(argv.clone());
        let env = self.env.as_ref();
        for entry in env.map(|e| e.get_ref().as_slice()).unwrap_or_default() {
            let e = parse_env_entry(entry)
                .map_err(|why| OpsConfigError::invalid("hook.env", env, why))?;
            if cfg.env.iter().any(|o| o.name() == e.name()) {
                return Err(OpsConfigError::invalid(
                    "hook.env",
                    env,
                    format!("{:?} is listed twice", e.name()),
                ));
            }
            cfg.env.push(e);
        }
        if let Some(t) = value(&self.timeout) {
            if t.0.is_zero() {
                return Err(OpsConfigError::invalid(
                    "hook.timeout",
                    self.timeout.as_ref(),
                    "must be greater than zero",
                ));
            }
            cfg.timeout = t.0;
        }
        for (key, field, slot) in [
            (
                "hook.max_concurrent",
                &self.max_concurrent,
                &mut cfg.max_concurrent,
            ),
            ("hook.queue", &self.queue, &mut cfg.queue),
        ] {
            if let Some(n) = value(field) {
                if n == 0 {
                    return Err(OpsConfigError::invalid(
                        key,
                        field.as_ref(),
                        "must be at least 1",
                    ));
                }
                *slot = n;
            }
        }
        Ok(Some(cfg))
    }
}

/// Parses one `[hook] env` entry.
fn parse_env_entry(entry: &str) -> Result<HookEnv, String> {
    let (name, value) = match entry.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (entry, None),
    };
    let valid = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!(
            "{entry:?} is not a variable; expected \"NAME\" (passed from the daemon's \
             environment) or \"NAME=value\", NAME of letters, digits and '_'"
        ));
    }
    if REFUSED_ENV.contains(&name) {
        return Err(format!(
            "{name} may not be given to the hook (a secret of the daemon or systemd's channel \
             to it)"
        ));
    }
    if PICTURE_ENV.contains(&name) {
        return Err(format!("{name} is set by the daemon for each image"));
    }
    if value.is_some_and(|v| v.contains('\0')) {
        return Err(format!("{name}: the value contains a NUL character"));
    }
    Ok(match value {
        Some(v) => HookEnv::Set(name.to_owned(), v.to_owned()),
        None => HookEnv::Pass(name.to_owned()),
    })
}

/// The environment of a run: [`PASSED_ENV`] and `LC_*` from `daemon_env`, the `[hook] env`
/// entries, the picture variables; nothing else.
pub fn hook_env(
    cfg: &HookConfig,
    job: &HookJob,
    daemon_env: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
    use std::ffi::OsString;
    let daemon: Vec<(OsString, OsString)> = daemon_env.into_iter().collect();
    let mut out: Vec<(OsString, OsString)> = daemon
        .iter()
        .filter(|(k, _)| {
            k.to_str()
                .is_some_and(|k| PASSED_ENV.contains(&k) || k.starts_with("LC_"))
        })
        .cloned()
        .collect();
    if !out.iter().any(|(k, _)| k == "PATH") {
        out.push(("PATH".into(), DEFAULT_PATH.into()));
    }
    for e in &cfg.env {
        out.retain(|(k, _)| k != e.name());
        match e {
            HookEnv::Pass(n) => {
                if let Some((k, v)) = daemon.iter().find(|(k, _)| k == n.as_str()) {
                    out.push((k.clone(), v.clone()));
                }
            }
            HookEnv::Set(n, v) => out.push((n.into(), v.into())),
        }
    }
    match &job.object {
        // An object store: the bucket and key instead of a path.
        Some(o) => {
            out.push(("RECEIVER_BUCKET".into(), o.bucket.clone().into()));
            out.push(("RECEIVER_OBJECT_KEY".into(), o.key.clone().into()));
        }
        None => out.push(("RECEIVER_IMAGE_PATH".into(), job.path.clone().into())),
    }
    out.push((
        "RECEIVER_PRODUCT_KEY".into(),
        (*job.device.product_key).into(),
    ));
    out.push((
        "RECEIVER_DEVICE_NAME".into(),
        (*job.device.device_name).into(),
    ));
    out.push(("RECEIVER_IMAGE_BYTES".into(), job.bytes.to_string().into()));
    out.push(("RECEIVER_FORMAT".into(), job.format.as_str().into()));
    out
}

/// Checks that the hook program can be run: a path (with a `/`) must be an executable regular
/// file; a bare name must be found in `path_env` (the `PATH` the hook gets). Returns the file,
/// or why not (for `check-config` and start-up).
pub fn check_program(program: &str, path_env: Option<&std::ffi::OsStr>) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let check = |file: &std::path::Path| -> Result<(), String> {
        let meta = std::fs::metadata(file).map_err(|e| format!("{}: {e}", file.display()))?;
        if !meta.is_file() {
            return Err(format!("{} is not a regular file", file.display()));
        }
        let mode = meta.permissions().mode();
        let c = std::ffi::CString::new(file.as_os_str().as_encoded_bytes())
            .map_err(|_| format!("{}: contains a NUL character", file.display()))?;
        // SAFETY: `c` is a valid NUL-terminated path; access(2) only reads it.
        if unsafe { libc::access(c.as_ptr(), libc::X_OK) } != 0 {
            return Err(format!(
                "{} is not executable by this user (mode {:04o}); run `chmod +x {}`",
                file.display(),
                mode & 0o7777,
                file.display()
            ));
        }
        Ok(())
    };
    if program.contains('/') {
        let file = PathBuf::from(program);
        check(&file)?;
        return Ok(file);
    }
    let path = path_env
        .map(|p| p.to_os_string())
        .unwrap_or_else(|| DEFAULT_PATH.into());
    let mut last = None;
    for dir in std::env::split_paths(&path) {
        let file = dir.join(program);
        if file.exists() {
            match check(&file) {
                Ok(()) => return Ok(file),
                Err(e) => last = Some(e),
            }
        }
    }
    Err(last.unwrap_or_else(|| {
        format!(
            "{program:?} is not found in PATH ({}); give the full path of the program",
            path.to_string_lossy()
        )
    }))
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
    /// With `[output] backend = "s3"`: the bucket and key (`path` is then
    /// `s3://<bucket>/<key>`, the first argument the command gets).
    pub object: Option<crate::sink::ObjectLocation>,
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
    config: tokio::sync::watch::Sender<Arc<HookConfig>>,
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
        let (config, config_rx) = tokio::sync::watch::channel(Arc::new(cfg));
        let dispatcher = rt.spawn(dispatch(config_rx, rx, metrics.clone(), closing.clone()));
        Hook {
            inner: Arc::new(Inner {
                tx,
                config,
                metrics,
                closing,
                dispatcher: Mutex::new(Some(dispatcher)),
                dropped_unwarned: AtomicU64::new(0),
                last_warn: Mutex::new(None),
            }),
        }
    }

    /// The configuration runs start with now.
    pub fn config(&self) -> Arc<HookConfig> {
        self.inner.config.borrow().clone()
    }

    /// Uses `cfg`'s command, arguments, time-out and environment for the runs that start from
    /// now on (a configuration reload). `max_concurrent` and `queue` are fixed at start.
    pub fn reconfigure(&self, cfg: HookConfig) {
        self.inner.config.send_replace(Arc::new(cfg));
    }

    /// Queues `job` without blocking. `false` (and a counted, rate-limited warning) when the queue
    /// is full or the hook is shutting down.
    pub fn submit(&self, job: HookJob) -> bool {
        let inner = &self.inner;
        if inner.closing.is_cancelled() {
            HookDropped {
                job: &job,
                cause: HookDropCause::ShuttingDown,
            }
            .emit(&inner.metrics);
            return false;
        }
        match inner.tx.try_send(job) {
            Ok(()) => true,
            Err(e) => {
                let job = match e {
                    mpsc::error::TrySendError::Full(j) | mpsc::error::TrySendError::Closed(j) => j,
                };
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
                }
                HookDropped {
                    job: &job,
                    cause: HookDropCause::QueueFull {
                        warn: due.then_some(dropped),
                    },
                }
                .emit(&inner.metrics);
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
    config: tokio::sync::watch::Receiver<Arc<HookConfig>>,
    mut rx: mpsc::Receiver<HookJob>,
    metrics: Arc<Metrics>,
    closing: CancellationToken,
) {
    let max_concurrent = config.borrow().max_concurrent.max(1);
    let slots = Arc::new(Semaphore::new(max_concurrent));
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
        let (cfg, metrics) = (config.borrow().clone(), metrics.clone());
        running.spawn(async move {
            let outcome = run(&cfg, &job).await;
            HookRan {
                job: &job,
                outcome: &outcome,
            }
            .emit(&metrics);
            drop(permit);
        });
    }
    // Aborting this task drops `running`, which aborts the runs and kills their process groups.
    while running.join_next().await.is_some() {}
}

/// Kills a process group when dropped while armed (the run task aborted), or on [`GroupKill::kill`]
/// (the leader exited or timed out, and is not reaped yet).
struct GroupKill(Option<i32>);

impl GroupKill {
    fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            // SAFETY: kill(2) has no memory-safety preconditions. The group is ours: the child
            // was started as its leader and has not been reaped yet (or, when this runs on drop
            // after tokio reaped it, the group's id stays reserved while any member lives).
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

/// Waits, on a blocking thread, until process `pid` has exited, without reaping it: while it is
/// a zombie its id (and so its process group's id) cannot be reused, so the group can still be
/// killed safely.
async fn exited_unreaped(pid: i32) {
    let waited = tokio::task::spawn_blocking(move || loop {
        // SAFETY: `siginfo_t` is a plain C struct (all-zero is valid) that waitid(2) fills
        // through a pointer to it; WNOWAIT leaves the child waitable, so tokio's `Child::wait`
        // still reaps it afterwards.
        let r = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if r == 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return;
        }
    });
    let _ = waited.await;
}

/// Runs the hook once for `job` (never through a shell), with the environment of [`hook_env`],
/// in its own process group, which is killed when the command exits or times out.
pub async fn run(cfg: &HookConfig, job: &HookJob) -> HookOutcome {
    let Some((program, args)) = cfg.command.split_first() else {
        return HookOutcome::Spawn("empty command".into());
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .arg(&job.path)
        .arg(&*job.device.product_key)
        .arg(&*job.device.device_name)
        .env_clear()
        .envs(hook_env(cfg, job, std::env::vars_os()))
        .stdin(Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return HookOutcome::Spawn(format!("{program}: {e}")),
    };
    let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) else {
        return HookOutcome::Spawn(format!("{program}: no process id"));
    };
    // Armed until the leader is reaped: a time-out, an abort (shutdown) or its exit kills the
    // whole group, so nothing the hook started outlives it.
    let mut guard = GroupKill(Some(pid));
    let timed_out = tokio::time::timeout(cfg.timeout, exited_unreaped(pid))
        .await
        .is_err();
    guard.kill();
    let status = child.wait().await;
    if timed_out {
        return HookOutcome::Timeout;
    }
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
            "timeout = \"5s\"",
        ] {
            let raw: RawHookConfig = toml::from_str(bad).unwrap();
            assert!(raw.validate().is_err(), "{bad}");
        }
        // A value of the wrong kind is refused by the types themselves.
        assert!(toml::from_str::<RawHookConfig>("command = [\"/x\"]\ntimeout = \"soon\"").is_err());
    }
}

//! The operations events: the on-image hook, retention sweeps, readiness.

use crate::metrics::Metrics;
use crate::ops::hook::{HookJob, HookOutcome};
use crate::ops::retention::SweepReport;
use std::fmt::Display;
use std::sync::atomic::Ordering::Relaxed;

/// The hook's log target (where these lines were logged before).
const HOOK: &str = "receiver::ops::hook";
/// The retention task's log target.
const RETENTION: &str = "receiver::ops::retention";
/// The lifecycle's log target.
const OPS: &str = "receiver::ops";

/// The HTTP listeners' log target.
const HTTP: &str = "receiver::ops::http";

/// A connection beyond the HTTP listener's cap. Counts `receiver_http_refused_total`; logs
/// `HTTP listener full` at debug (an overload must not flood the log).
#[derive(Debug)]
pub struct HttpRefused {
    /// Who.
    pub peer: std::net::SocketAddr,
    /// The cap reached.
    pub cap: usize,
    /// Answered `503` (else closed unanswered: too many refusals in flight).
    pub answered: bool,
}

impl HttpRefused {
    /// Counts and logs the event.
    pub fn emit(self, metrics: &Metrics) {
        metrics.http_refused.fetch_add(1, Relaxed);
        tracing::debug!(target: HTTP, peer = %self.peer, cap = self.cap, answered = self.answered,
            "HTTP listener full");
    }
}

/// Why an image was not handed to the hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookDropCause {
    /// The hook is shutting down (logs at debug).
    ShuttingDown,
    /// Its queue is full. `warn`: the drops since the last warning, when a (rate-limited)
    /// warning is due now; `None` when it is not.
    QueueFull {
        /// Drops the warning reports, if one is due.
        warn: Option<u64>,
    },
}

/// An image not handed to the hook. Counts `receiver_hook_jobs_total{result="dropped"}`; logs
/// `hook shutting down; image not handed to it` (debug) or, when due, `hook queue full; image(s)
/// not handed to the hook` (warn).
#[derive(Debug)]
pub struct HookDropped<'a> {
    /// The image.
    pub job: &'a HookJob,
    /// Why.
    pub cause: HookDropCause,
}

impl HookDropped<'_> {
    /// Counts and logs the event.
    pub fn emit(self, metrics: &Metrics) {
        let job = self.job;
        metrics.hook_dropped.fetch_add(1, Relaxed);
        match self.cause {
            HookDropCause::ShuttingDown => {
                tracing::debug!(target: HOOK, device = %job.device, path = %job.path.display(),
                    "hook shutting down; image not handed to it");
            }
            HookDropCause::QueueFull {
                warn: Some(dropped),
            } => {
                tracing::warn!(target: HOOK, device = %job.device, path = %job.path.display(), dropped,
                    "hook queue full; image(s) not handed to the hook");
            }
            HookDropCause::QueueFull { warn: None } => {}
        }
    }
}

/// One hook run ended. Counts `receiver_hook_jobs_total{result}` (`ok`, `failed`, `timeout`,
/// `spawn_error`); logs `hook done` (debug) or why it failed (warn).
#[derive(Debug)]
pub struct HookRan<'a> {
    /// The image.
    pub job: &'a HookJob,
    /// How the run ended.
    pub outcome: &'a HookOutcome,
}

impl HookRan<'_> {
    /// Counts and logs the event.
    pub fn emit(self, metrics: &Metrics) {
        let (device, path) = (&self.job.device, self.job.path.display());
        match self.outcome {
            HookOutcome::Ok => {
                metrics.hook_ok.fetch_add(1, Relaxed);
                tracing::debug!(target: HOOK, %device, %path, "hook done");
            }
            HookOutcome::Exit(code) => {
                metrics.hook_failed.fetch_add(1, Relaxed);
                tracing::warn!(target: HOOK, %device, %path, exit_code = code, "hook failed");
            }
            HookOutcome::Signal(sig) => {
                metrics.hook_failed.fetch_add(1, Relaxed);
                tracing::warn!(target: HOOK, %device, %path, signal = sig, "hook killed by a signal");
            }
            HookOutcome::Timeout => {
                metrics.hook_timeouts.fetch_add(1, Relaxed);
                tracing::warn!(target: HOOK, %device, %path, "hook timed out; killed");
            }
            HookOutcome::Spawn(e) => {
                metrics.hook_spawn_errors.fetch_add(1, Relaxed);
                tracing::warn!(target: HOOK, %device, %path, error = %e, "cannot start the hook");
            }
        }
    }
}

/// A retention sweep finished. Counts `receiver_retention_deleted_files_total`,
/// `receiver_retention_deleted_bytes_total`, `receiver_retention_errors_total` and then
/// `receiver_retention_sweeps_total` (last, so a sweep seen counted has its deletions counted
/// too); logs `retention sweep` (info).
#[derive(Debug)]
pub struct RetentionSwept<'a> {
    /// What the sweep did.
    pub report: &'a SweepReport,
    /// How long it took, ms.
    pub duration_ms: u64,
}

impl RetentionSwept<'_> {
    /// Counts and logs the event.
    pub fn emit(self, metrics: &Metrics) {
        let r = self.report;
        metrics
            .retention_deleted_files
            .fetch_add(r.deleted, Relaxed);
        metrics
            .retention_deleted_bytes
            .fetch_add(r.deleted_bytes, Relaxed);
        metrics.retention_errors.fetch_add(r.errors, Relaxed);
        metrics.retention_sweeps.fetch_add(1, Relaxed);
        tracing::info!(
            target: RETENTION,
            scanned = r.scanned,
            scanned_bytes = r.scanned_bytes,
            deleted = r.deleted,
            deleted_bytes = r.deleted_bytes,
            by_age = r.by_age,
            by_device = r.by_device,
            by_total = r.by_total,
            skipped = r.skipped,
            errors = r.errors,
            duration_ms = self.duration_ms,
            "retention sweep"
        );
    }
}

/// A retention sweep failed as a whole (its folder unreadable) or panicked. Counts
/// `receiver_retention_errors_total` and `receiver_retention_sweeps_total`; logs `retention sweep
/// failed` (warn) or `retention sweep panicked` (error).
pub struct RetentionSweepFailed<'a> {
    /// What failed.
    pub error: &'a dyn Display,
    /// The sweep panicked (its task failed) rather than returned an error.
    pub panicked: bool,
}

impl RetentionSweepFailed<'_> {
    /// Counts and logs the event.
    pub fn emit(self, metrics: &Metrics) {
        metrics.retention_errors.fetch_add(1, Relaxed);
        metrics.retention_sweeps.fetch_add(1, Relaxed);
        let error = self.error;
        if self.panicked {
            tracing::error!(target: RETENTION, error = %error, "retention sweep panicked");
        } else {
            tracing::warn!(target: RETENTION, error = %error, "retention sweep failed");
        }
    }
}

/// The first receiver link is attached: the daemon is ready. Sets the ready time (once, for
/// `/healthz`); logs `first receiver link attached; ready` (info).
#[derive(Debug, Clone, Copy)]
pub struct Ready {
    /// Links attached now.
    pub links: u64,
    /// Now, ms since the epoch.
    pub now_ms: u64,
}

impl Ready {
    /// Records and logs the event.
    pub fn emit(self, metrics: &Metrics) {
        let _ = metrics
            .ready_ms
            .compare_exchange(0, self.now_ms, Relaxed, Relaxed);
        tracing::info!(target: OPS, links = self.links, "first receiver link attached; ready");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::capture;
    use crate::message::DeviceId;
    use crate::wire::Format;

    fn job() -> HookJob {
        HookJob {
            path: "/out/a1PK/cam-01/x.jpg".into(),
            device: DeviceId {
                product_key: "a1PK".into(),
                device_name: "cam-01".into(),
            },
            bytes: 10,
            format: Format::V2,
            object: None,
        }
    }

    #[test]
    fn hook_runs_count_by_result_and_log() {
        let m = Metrics::default();
        let j = job();
        let outcomes = [
            HookOutcome::Ok,
            HookOutcome::Exit(3),
            HookOutcome::Signal(9),
            HookOutcome::Timeout,
            HookOutcome::Spawn("no such file".into()),
        ];
        let lines = capture::logs(|| {
            for outcome in &outcomes {
                HookRan { job: &j, outcome }.emit(&m);
            }
        });
        assert_eq!(m.hook_ok.load(Relaxed), 1);
        assert_eq!(m.hook_failed.load(Relaxed), 2);
        assert_eq!(m.hook_timeouts.load(Relaxed), 1);
        assert_eq!(m.hook_spawn_errors.load(Relaxed), 1);
        assert_eq!(lines.len(), 5);
        assert_eq!(lines[0]["level"], "DEBUG");
        assert_eq!(lines[1]["message"], "hook failed");
        assert_eq!(lines[1]["exit_code"], 3);
        assert_eq!(lines[1]["device"], "a1PK/cam-01");
        assert_eq!(lines[1]["target"], "receiver::ops::hook");
        assert_eq!(lines[4]["error"], "no such file");
        let text = m.render_prometheus();
        assert!(text.contains("receiver_hook_jobs_total{result=\"failed\"} 2"));
    }

    #[test]
    fn dropped_jobs_always_count_and_warn_when_due() {
        let m = Metrics::default();
        let j = job();
        let lines = capture::logs(|| {
            for cause in [
                HookDropCause::ShuttingDown,
                HookDropCause::QueueFull { warn: None },
                HookDropCause::QueueFull { warn: Some(2) },
            ] {
                HookDropped { job: &j, cause }.emit(&m);
            }
        });
        assert_eq!(m.hook_dropped.load(Relaxed), 3);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["level"], "WARN");
        assert_eq!(lines[1]["dropped"], 2);
    }

    #[test]
    fn retention_sweeps_count_what_they_deleted() {
        let m = Metrics::default();
        let r = SweepReport {
            deleted: 2,
            deleted_bytes: 20,
            errors: 1,
            ..SweepReport::default()
        };
        let line = capture::one(|| {
            RetentionSwept {
                report: &r,
                duration_ms: 3,
            }
            .emit(&m)
        });
        assert_eq!(m.retention_sweeps.load(Relaxed), 1);
        assert_eq!(m.retention_deleted_files.load(Relaxed), 2);
        assert_eq!(m.retention_deleted_bytes.load(Relaxed), 20);
        assert_eq!(m.retention_errors.load(Relaxed), 1);
        assert_eq!(line["message"], "retention sweep");
        assert_eq!(line["target"], "receiver::ops::retention");
        assert_eq!(line["deleted_bytes"], 20);
        let lines = capture::logs(|| {
            for panicked in [false, true] {
                RetentionSweepFailed {
                    error: &"unreadable",
                    panicked,
                }
                .emit(&m);
            }
        });
        assert_eq!(m.retention_sweeps.load(Relaxed), 3);
        assert_eq!(m.retention_errors.load(Relaxed), 3);
        assert_eq!(lines[0]["message"], "retention sweep failed");
        assert_eq!(lines[1]["level"], "ERROR");
    }

    #[test]
    fn ready_sets_the_time_once() {
        let m = Metrics::default();
        let line = capture::one(|| {
            Ready {
                links: 2,
                now_ms: 7,
            }
            .emit(&m)
        });
        Ready {
            links: 2,
            now_ms: 9,
        }
        .emit(&m);
        assert_eq!(m.ready_ms.load(Relaxed), 7);
        assert_eq!(line["message"], "first receiver link attached; ready");
        assert_eq!(line["links"], 2);
        assert_eq!(line["target"], "receiver::ops");
    }
}

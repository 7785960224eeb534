//! Operations: everything that lets the daemon run unattended under systemd.
//!
//! - [`notify`]: `sd_notify` (READY, STOPPING, STATUS, the watchdog ping loop);
//! - [`health`]: what healthy means (liveness for the watchdog, readiness for `/healthz`);
//! - [`http`]: the daemon's HTTP server (axum on hyper): the optional `/healthz` + `/metrics`
//!   listener, and the server the gallery ([`crate::web`]) runs on;
//! - [`retention`]: optional age/count/size limits on the output folder;
//! - [`hook`]: the optional command run for each finished image.
//!
//! [`Ops::start`] wires them for the daemon; each is usable (and tested) on its own. Their
//! configuration comes in `Raw*Config` structs (serde, TOML sections `[metrics]`, `[health]`,
//! `[retention]`, `[hook]`) that validate into typed configs; [`RawOpsConfig`] groups them.

pub mod health;
pub mod hook;
pub mod http;
pub mod notify;
pub mod retention;

use crate::metrics::Metrics;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use toml::Spanned;

pub use health::HealthConfig;
pub use hook::{Hook, HookConfig, HookJob};
pub use http::MetricsConfig;
pub use notify::Notifier;
pub use retention::{RetentionConfig, RetentionLimits};

/// A bad value in one of the operations sections.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpsConfigError {
    /// `key` (as `section.key`) has an unusable value.
    #[error("{key}: {why}")]
    Invalid {
        /// `section.key`.
        key: &'static str,
        /// What is wrong.
        why: String,
        /// Where in the config text the offending setting is (`None`: not in the file).
        span: Option<Range<usize>>,
    },
}

impl OpsConfigError {
    /// `key` is wrong because of `why`; `at` is the setting to point at.
    pub(crate) fn invalid<T>(
        key: &'static str,
        at: Option<&Spanned<T>>,
        why: impl Into<String>,
    ) -> OpsConfigError {
        OpsConfigError::Invalid {
            key,
            why: why.into(),
            span: at.map(Spanned::span),
        }
    }
}

/// An optional setting and where it is written.
pub(crate) type Field<T> = Option<Spanned<T>>;

/// The value of an optional setting.
pub(crate) fn value<T: Copy>(f: &Field<T>) -> Option<T> {
    f.as_ref().map(|s| *s.get_ref())
}

/// The operations sections as written in TOML. Every section and key is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOpsConfig {
    /// `[metrics]`.
    #[serde(default)]
    pub metrics: http::RawMetricsConfig,
    /// `[health]`.
    #[serde(default)]
    pub health: health::RawHealthConfig,
    /// `[retention]`.
    #[serde(default)]
    pub retention: retention::RawRetentionConfig,
    /// `[hook]`.
    #[serde(default)]
    pub hook: hook::RawHookConfig,
}

impl RawOpsConfig {
    /// Validates every section.
    pub fn validate(&self) -> Result<OpsConfig, OpsConfigError> {
        Ok(OpsConfig {
            metrics: self.metrics.validate()?,
            health: self.health.validate()?,
            retention: self.retention.validate()?,
            hook: self.hook.validate()?,
        })
    }
}

/// The validated operations configuration (`Serialize`: one table per section, as the config
/// file writes them; no hook, no `[hook]` table).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct OpsConfig {
    /// `[metrics]`.
    pub metrics: MetricsConfig,
    /// `[health]`.
    pub health: HealthConfig,
    /// `[retention]`.
    pub retention: RetentionConfig,
    /// `[hook]`, when a command is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hook: Option<HookConfig>,
}

/// Why the operations side could not start.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// The metrics listener could not bind.
    #[error(transparent)]
    Http(#[from] http::HttpError),
}

/// The running operations tasks. See [`Ops::start`].
#[derive(Debug)]
pub struct Ops {
    notifier: Notifier,
    hook: Option<Hook>,
    retention: tokio::sync::watch::Sender<RetentionConfig>,
    http_addr: Option<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
}

impl Ops {
    /// Starts, on the current tokio runtime:
    ///
    /// - the `/healthz` + `/metrics` listener, when `[metrics] listen` is set (a bind failure is
    ///   an error: the operator asked for it);
    /// - the retention sweeps of `output_dir`, when a limit is set;
    /// - the hook runner, when a command is set (hand [`Ops::hook`] to the engine);
    /// - the watchdog loop, when systemd enabled the watchdog (pings only while
    ///   [`health::Liveness`] passes; without a watchdog the check still runs every 10 s, for the
    ///   log and [`Metrics::live`]);
    /// - the lifecycle task: `READY=1` (and [`Metrics::ready_ms`]) as soon as
    ///   [`Metrics::links_attached`] becomes non-zero, `STOPPING=1` when `shutdown` is cancelled.
    ///
    /// Every task ends when `shutdown` is cancelled; then call [`Ops::stop`].
    pub async fn start(
        cfg: &OpsConfig,
        output_dir: &Path,
        metrics: Arc<Metrics>,
        notifier: Notifier,
        shutdown: CancellationToken,
    ) -> Result<Ops, OpsError> {
        let mut tasks = Vec::new();
        let mut http_addr = None;
        if let Some(addr) = cfg.metrics.listen {
            let listener = http::bind(addr).await?;
            let bound = listener.local_addr().unwrap_or(addr);
            http_addr = Some(bound);
            tracing::info!(addr = %bound, "serving /healthz and /metrics");
            tasks.push(tokio::spawn(http::serve_with(
                listener,
                metrics.clone(),
                cfg.health,
                shutdown.clone(),
            )));
        }
        if cfg.retention.limits.any() {
            let l = cfg.retention.limits;
            tracing::info!(
                max_age_s = l.max_age.map(|d| d.as_secs()),
                max_total_bytes = l.max_total_bytes,
                max_files_per_device = l.max_files_per_device,
                interval_s = cfg.retention.interval.as_secs(),
                "retention enabled"
            );
        }
        // Always running (idle without limits), so a reload can turn retention on.
        let (retention, settings) = tokio::sync::watch::channel(cfg.retention);
        tasks.push(retention::spawn_watched(
            settings,
            output_dir.to_path_buf(),
            metrics.clone(),
            shutdown.clone(),
        ));
        let hook = cfg.hook.as_ref().map(|h| {
            tracing::info!(command = ?h.command, timeout_ms = h.timeout.as_millis() as u64,
                max_concurrent = h.max_concurrent, queue = h.queue, "on-image hook enabled");
            Hook::new(
                h.clone(),
                metrics.clone(),
                &tokio::runtime::Handle::current(),
            )
        });
        let live = health::Liveness::new(
            cfg.health,
            metrics.clone(),
            receiver_protocol::time::now_ms(),
        )
        .into_fn();
        if let Some(timeout) = notifier.watchdog_timeout() {
            tracing::info!(
                watchdog_ms = timeout.as_millis() as u64,
                "systemd watchdog enabled"
            );
            tasks.extend(notifier.spawn_watchdog(metrics.clone(), live, shutdown.clone()));
        } else {
            // No watchdog: still evaluate liveness, for the log and `receiver_live`.
            tasks.push(tokio::spawn(liveness_loop(
                live,
                metrics.clone(),
                shutdown.clone(),
            )));
        }
        tasks.push(tokio::spawn(lifecycle(notifier.clone(), metrics, shutdown)));
        Ok(Ops {
            notifier,
            hook,
            retention,
            http_addr,
            tasks,
        })
    }

    /// The notifier (for `STATUS=` updates).
    pub fn notifier(&self) -> &Notifier {
        &self.notifier
    }

    /// The hook runner, when configured: the engine calls [`Hook::submit`] for each new image.
    pub fn hook(&self) -> Option<Hook> {
        self.hook.clone()
    }

    /// Applies new retention settings (a configuration reload): the next sweep runs now.
    pub fn set_retention(&self, cfg: RetentionConfig) {
        self.retention.send_replace(cfg);
    }

    /// A handle that applies new retention settings, for the reload task.
    pub fn retention_settings(&self) -> tokio::sync::watch::Sender<RetentionConfig> {
        self.retention.clone()
    }

    /// Where the metrics listener is bound (useful with port 0).
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// After `shutdown` was cancelled: lets running hooks finish and the tasks end, each for up
    /// to `grace`.
    pub async fn stop(self, grace: Duration) {
        if let Some(hook) = &self.hook {
            hook.shutdown(grace).await;
        }
        let all = async {
            for t in self.tasks {
                let _ = t.await;
            }
        };
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::warn!("operations tasks did not stop in time");
        }
    }
}

/// Period of the liveness evaluation when systemd's watchdog is off.
const LIVENESS_PERIOD: Duration = Duration::from_secs(10);

async fn liveness_loop(
    mut live: impl FnMut() -> bool,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let mut ticks = tokio::time::interval(LIVENESS_PERIOD);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticks.tick() => metrics.live.store(live(), Relaxed),
        }
    }
}

/// Period of the "first link attached?" poll.
const READY_POLL: Duration = Duration::from_millis(100);

fn log_notify(what: &str, r: Result<bool, notify::NotifyError>) {
    if let Err(e) = r {
        tracing::warn!(error = %e, "cannot notify systemd ({what})");
    }
}

/// Sends READY=1 once a link is attached, STOPPING=1 when `shutdown` is cancelled.
async fn lifecycle(notifier: Notifier, metrics: Arc<Metrics>, shutdown: CancellationToken) {
    log_notify("status", notifier.status("starting: connecting to Aliyun"));
    let attached = async {
        loop {
            let links = metrics.links_attached.load(Relaxed);
            if links > 0 {
                return links;
            }
            tokio::time::sleep(READY_POLL).await;
        }
    };
    tokio::select! {
        _ = shutdown.cancelled() => {}
        links = attached => {
            crate::events::ops::Ready { links, now_ms: receiver_protocol::time::now_ms() }.emit(&metrics);
            log_notify("ready", notifier.ready());
            log_notify("status", notifier.status(&format!("receiving ({links} link(s) attached)")));
            shutdown.cancelled().await;
        }
    }
    log_notify("stopping", notifier.stopping());
    log_notify(
        "status",
        notifier.status("stopping: finishing in-flight deliveries"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_is_all_off() {
        let raw: RawOpsConfig = toml::from_str("").unwrap();
        let cfg = raw.validate().unwrap();
        assert_eq!(cfg, OpsConfig::default());
        assert!(cfg.metrics.listen.is_none());
        assert!(!cfg.retention.limits.any());
        assert!(cfg.hook.is_none());
    }

    #[test]
    fn full_config_parses() {
        let raw: RawOpsConfig = toml::from_str(
            r#"
            [metrics]
            listen = "127.0.0.1:9898"
            [health]
            link_grace = "5m"
            [retention]
            max_age = "30d"
            max_total_bytes = "50GiB"
            max_files_per_device = 10000
            interval = "15m"
            [hook]
            command = ["/usr/local/bin/forward", "--flag"]
            timeout = "30s"
            max_concurrent = 4
            queue = 100
            "#,
        )
        .unwrap();
        let cfg = raw.validate().unwrap();
        assert_eq!(cfg.health.link_grace, Duration::from_secs(300));
        assert_eq!(cfg.retention.interval, Duration::from_secs(900));
        assert_eq!(cfg.hook.unwrap().queue, 100);
    }

    #[test]
    fn errors_name_the_key() {
        let raw: RawOpsConfig = toml::from_str("[retention]\nmax_age = \"10s\"").unwrap();
        let e = raw.validate().unwrap_err();
        assert!(e.to_string().starts_with("retention.max_age: "), "{e}");
        assert!(matches!(e, OpsConfigError::Invalid { span: Some(s), .. } if s == (22..27)));
    }
}

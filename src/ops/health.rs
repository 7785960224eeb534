//! What "healthy" means, in two flavours, computed from [`Metrics`] with the time as a parameter.
//!
//! **Liveness** ([`Liveness`], fed to the systemd watchdog): "restarting the process could help".
//! The watchdog is pinged only while
//!
//! 1. the engine is not stuck: it has not been busy with one batch or tick for longer than
//!    `engine_stall` ([`Metrics::engine_busy_since_ms`], set when the engine starts a batch and
//!    cleared when it goes back to waiting; idle time never counts, so quiet cameras are fine and
//!    the engine needs no periodic wake-ups); and
//! 2. the AMQP side is not stuck: some receiver link has been attached within the last
//!    `link_grace` (the reconnect loop has had that long to get a link back).
//!
//! A paused engine (disk full, I/O errors) is *not* a liveness failure: the engine retries by
//! itself and a restart would not free any disk space.
//!
//! **Readiness** ([`readiness`], served by `/healthz`): "is this instance doing its job right
//! now?". Healthy when the daemon has been ready once, a link is attached now, the engine is not
//! stuck, intake is not paused, and (only if `max_delivery_age` is set) a delivery arrived
//! recently. Cameras may legitimately be silent for hours, so the delivery age is reported but
//! only judged when configured.

use crate::config::HumanDuration;
use crate::metrics::Metrics;
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

/// `[health]`: thresholds for liveness (watchdog) and readiness (`/healthz`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct HealthConfig {
    /// Longest time the engine may spend on one batch or tick before it counts as stuck.
    #[serde(serialize_with = "crate::config::as_toml::duration")]
    pub engine_stall: Duration,
    /// Longest time without any attached receiver link before liveness fails (the watchdog then
    /// lets systemd restart the process).
    #[serde(serialize_with = "crate::config::as_toml::duration")]
    pub link_grace: Duration,
    /// When set, `/healthz` fails if no delivery arrived for this long (since ready).
    #[serde(
        serialize_with = "crate::config::as_toml::opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_delivery_age: Option<Duration>,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            engine_stall: Duration::from_secs(60),
            link_grace: Duration::from_secs(600),
            max_delivery_age: None,
        }
    }
}

/// `[health]` as written in TOML (durations in humantime syntax: `"60s"`, `"10m"`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealthConfig {
    /// Default `"60s"`.
    pub engine_stall: super::Field<HumanDuration>,
    /// Default `"10m"`.
    pub link_grace: super::Field<HumanDuration>,
    /// Default: not checked.
    pub max_delivery_age: super::Field<HumanDuration>,
}

impl RawHealthConfig {
    /// Validates into a [`HealthConfig`].
    pub fn validate(&self) -> Result<HealthConfig, super::OpsConfigError> {
        for (key, v) in [
            ("health.engine_stall", &self.engine_stall),
            ("health.link_grace", &self.link_grace),
            ("health.max_delivery_age", &self.max_delivery_age),
        ] {
            if v.as_ref().is_some_and(|v| v.get_ref().0.is_zero()) {
                return Err(super::OpsConfigError::invalid(
                    key,
                    v.as_ref(),
                    "must be greater than zero",
                ));
            }
        }
        let d = HealthConfig::default();
        let get = |f| super::value(f).map(Duration::from);
        Ok(HealthConfig {
            engine_stall: get(&self.engine_stall).unwrap_or(d.engine_stall),
            link_grace: get(&self.link_grace).unwrap_or(d.link_grace),
            max_delivery_age: get(&self.max_delivery_age),
        })
    }
}

/// One reason for being unhealthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Problem {
    /// No link has been attached yet since start.
    NotReady,
    /// No receiver link is attached (readiness) / none for longer than `link_grace` (liveness).
    NoLink,
    /// The engine has been busy with one batch for longer than `engine_stall`.
    EngineStalled,
    /// Intake is paused (I/O error or full spool).
    Paused,
    /// No delivery for longer than `max_delivery_age`.
    DeliveriesStale,
    /// Cluster mode: the shared store (Redis) is unreachable; intake is paused until it answers.
    ClusterStoreDown,
}

impl Problem {
    /// Stable name (JSON, logs).
    pub fn as_str(self) -> &'static str {
        match self {
            Problem::NotReady => "not_ready",
            Problem::NoLink => "no_link",
            Problem::EngineStalled => "engine_stalled",
            Problem::Paused => "paused",
            Problem::DeliveriesStale => "deliveries_stale",
            Problem::ClusterStoreDown => "cluster_store_down",
        }
    }
}

/// Spool part of a [`Snapshot`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SpoolState {
    /// Bytes on disk.
    pub bytes: u64,
    /// Intake paused (I/O error or spool over its cap).
    pub paused: bool,
}

/// The health-relevant state at one instant (the `/healthz` JSON body, plus `status` and
/// `problems`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    /// Whether a link was attached at least once.
    pub ready: bool,
    /// Receiver links attached now.
    pub links_attached: u64,
    /// Seconds since the last delivery; `None` before the first.
    pub last_delivery_age_seconds: Option<f64>,
    /// Seconds the engine has been busy with its current batch; `None` while it is idle.
    pub engine_busy_seconds: Option<f64>,
    /// Spool size and pause state.
    pub spool: SpoolState,
    /// Pictures being assembled.
    pub open_assemblies: u64,
    /// Age of the oldest picture being assembled, seconds.
    pub oldest_assembly_age_seconds: f64,
    /// Cluster mode: the shared store is unreachable.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cluster_store_down: bool,
    #[serde(skip)]
    ready_ms: u64,
    #[serde(skip)]
    last_delivery_ms: u64,
    #[serde(skip)]
    busy_since_ms: u64,
    #[serde(skip)]
    now_ms: u64,
}

fn age_secs(now_ms: u64, at_ms: u64) -> Option<f64> {
    (at_ms != 0).then(|| now_ms.saturating_sub(at_ms) as f64 / 1000.0)
}

impl Snapshot {
    /// Reads `metrics` at wall-clock time `now_ms`.
    pub fn read(metrics: &Metrics, now_ms: u64) -> Snapshot {
        let ready_ms = metrics.ready_ms.load(Relaxed);
        let last_delivery_ms = metrics.last_delivery_ms.load(Relaxed);
        let busy_since_ms = metrics.engine_busy_since_ms.load(Relaxed);
        Snapshot {
            ready: ready_ms != 0,
            links_attached: metrics.links_attached.load(Relaxed),
            last_delivery_age_seconds: age_secs(now_ms, last_delivery_ms),
            engine_busy_seconds: age_secs(now_ms, busy_since_ms),
            spool: SpoolState {
                bytes: metrics.spool_bytes.load(Relaxed),
                paused: metrics.paused.load(Relaxed),
            },
            open_assemblies: metrics.open_assemblies.load(Relaxed),
            oldest_assembly_age_seconds: metrics.oldest_assembly_ms.load(Relaxed) as f64 / 1000.0,
            cluster_store_down: metrics.cluster_store_down.load(Relaxed),
            ready_ms,
            last_delivery_ms,
            busy_since_ms,
            now_ms,
        }
    }

    fn engine_stalled(&self, cfg: &HealthConfig) -> bool {
        self.busy_since_ms != 0
            && self.now_ms.saturating_sub(self.busy_since_ms) > cfg.engine_stall.as_millis() as u64
    }
}

/// Readiness problems (empty = healthy; `/healthz` answers 200). See the module docs.
pub fn readiness(s: &Snapshot, cfg: &HealthConfig) -> Vec<Problem> {
    let mut problems = Vec::new();
    if !s.ready {
        problems.push(Problem::NotReady);
    }
    if s.links_attached == 0 {
        problems.push(Problem::NoLink);
    }
    if s.engine_stalled(cfg) {
        problems.push(Problem::EngineStalled);
    }
    if s.spool.paused {
        problems.push(Problem::Paused);
    }
    if s.cluster_store_down {
        problems.push(Problem::ClusterStoreDown);
    }
    if let (Some(max), true) = (cfg.max_delivery_age, s.ready) {
        let since = s.last_delivery_ms.max(s.ready_ms);
        if s.now_ms.saturating_sub(since) > max.as_millis() as u64 {
            problems.push(Problem::DeliveriesStale);
        }
    }
    problems
}

/// The liveness check behind the systemd watchdog. It remembers when it last saw a link attached
/// (starting from its creation, so start-up gets `link_grace` too). See the module docs.
#[derive(Debug)]
pub struct Liveness {
    cfg: HealthConfig,
    metrics: Arc<Metrics>,
    last_link_ms: u64,
}

impl Liveness {
    /// A check reading `metrics`, created at wall-clock time `now_ms`.
    pub fn new(cfg: HealthConfig, metrics: Arc<Metrics>, now_ms: u64) -> Liveness {
        Liveness {
            cfg,
            metrics,
            last_link_ms: now_ms,
        }
    }

    /// Checks at `now_ms`: `Ok` when live, else the first problem found.
    pub fn check(&mut self, now_ms: u64) -> Result<(), Problem> {
        let s = Snapshot::read(&self.metrics, now_ms);
        if s.links_attached > 0 {
            self.last_link_ms = self.last_link_ms.max(now_ms);
        }
        if s.engine_stalled(&self.cfg) {
            return Err(Problem::EngineStalled);
        }
        if now_ms.saturating_sub(self.last_link_ms) > self.cfg.link_grace.as_millis() as u64 {
            return Err(Problem::NoLink);
        }
        Ok(())
    }

    /// The check as a closure over the wall clock, for [`super::notify::Notifier::spawn_watchdog`].
    /// Logs each change between live and not live.
    pub fn into_fn(mut self) -> impl FnMut() -> bool + Send + 'static {
        let mut was: Option<Problem> = None;
        move || {
            let result = self.check(receiver_protocol::time::now_ms());
            match (result, was) {
                (Err(p), None) => tracing::warn!(
                    problem = p.as_str(),
                    "liveness check failing; withholding watchdog pings (systemd restarts the service after WatchdogSec)"
                ),
                (Ok(()), Some(p)) => {
                    tracing::info!(previous = p.as_str(), "liveness check passes again")
                }
                _ => {}
            }
            was = result.err();
            result.is_ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> Arc<Metrics> {
        Arc::new(Metrics::default())
    }

    #[test]
    fn readiness_requires_ready_link_and_no_pause() {
        let m = metrics();
        let cfg = HealthConfig::default();
        let s = Snapshot::read(&m, 10_000);
        assert_eq!(
            readiness(&s, &cfg),
            vec![Problem::NotReady, Problem::NoLink]
        );
        m.ready_ms.store(1_000, Relaxed);
        m.links_attached.store(2, Relaxed);
        assert!(readiness(&Snapshot::read(&m, 10_000), &cfg).is_empty());
        m.paused.store(true, Relaxed);
        assert_eq!(
            readiness(&Snapshot::read(&m, 10_000), &cfg),
            vec![Problem::Paused]
        );
    }

    #[test]
    fn engine_is_stuck_only_when_busy_too_long() {
        let m = metrics();
        m.ready_ms.store(1, Relaxed);
        m.links_attached.store(1, Relaxed);
        let cfg = HealthConfig {
            engine_stall: Duration::from_secs(60),
            ..HealthConfig::default()
        };
        // Idle for ages: fine.
        assert!(readiness(&Snapshot::read(&m, 10_000_000), &cfg).is_empty());
        m.engine_busy(1_000_000);
        let s = Snapshot::read(&m, 1_060_000);
        assert!(readiness(&s, &cfg).is_empty());
        assert_eq!(s.engine_busy_seconds, Some(60.0));
        assert_eq!(
            readiness(&Snapshot::read(&m, 1_060_001), &cfg),
            vec![Problem::EngineStalled]
        );
        m.engine_idle();
        let s = Snapshot::read(&m, 2_000_000);
        assert!(readiness(&s, &cfg).is_empty());
        assert_eq!(s.engine_busy_seconds, None);
    }

    #[test]
    fn delivery_age_only_when_configured() {
        let m = metrics();
        m.ready_ms.store(1_000, Relaxed);
        m.links_attached.store(1, Relaxed);
        let mut cfg = HealthConfig::default();
        assert!(readiness(&Snapshot::read(&m, 10_000_000), &cfg).is_empty());
        cfg.max_delivery_age = Some(Duration::from_secs(60));
        // Measured from ready while nothing arrived.
        assert!(readiness(&Snapshot::read(&m, 61_000), &cfg).is_empty());
        assert_eq!(
            readiness(&Snapshot::read(&m, 61_001), &cfg),
            vec![Problem::DeliveriesStale]
        );
        m.last_delivery_ms.store(100_000, Relaxed);
        let s = Snapshot::read(&m, 130_000);
        assert!(readiness(&s, &cfg).is_empty());
        assert_eq!(s.last_delivery_age_seconds, Some(30.0));
    }

    #[test]
    fn liveness_allows_link_grace_then_fails() {
        let m = metrics();
        let cfg = HealthConfig {
            link_grace: Duration::from_secs(600),
            ..HealthConfig::default()
        };
        let mut live = Liveness::new(cfg, m.clone(), 0);
        assert_eq!(live.check(600_000), Ok(()));
        assert_eq!(live.check(600_001), Err(Problem::NoLink));
        m.links_attached.store(1, Relaxed);
        assert_eq!(live.check(700_000), Ok(()));
        m.links_attached.store(0, Relaxed);
        // Lost the link: grace counts from the last time it was seen.
        assert_eq!(live.check(1_300_000), Ok(()));
        assert_eq!(live.check(1_300_001), Err(Problem::NoLink));
    }

    #[test]
    fn liveness_ignores_pause_but_not_a_stalled_engine() {
        let m = metrics();
        m.links_attached.store(1, Relaxed);
        m.paused.store(true, Relaxed);
        let mut live = Liveness::new(HealthConfig::default(), m.clone(), 0);
        assert_eq!(live.check(1_000), Ok(()));
        m.engine_busy(1_000);
        assert_eq!(live.check(61_000), Ok(()));
        assert_eq!(live.check(61_001), Err(Problem::EngineStalled));
    }

    #[test]
    fn raw_config_validates() {
        let raw: RawHealthConfig =
            toml::from_str("engine_stall = \"30s\"\nmax_delivery_age = \"2h\"").unwrap();
        let cfg = raw.validate().unwrap();
        assert_eq!(cfg.engine_stall, Duration::from_secs(30));
        assert_eq!(cfg.link_grace, Duration::from_secs(600));
        assert_eq!(cfg.max_delivery_age, Some(Duration::from_secs(7200)));
        let bad: RawHealthConfig = toml::from_str("link_grace = \"0s\"").unwrap();
        assert!(bad.validate().is_err());
        assert!(toml::from_str::<RawHealthConfig>("nope = 1").is_err());
    }
}

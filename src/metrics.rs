//! Counters and gauges shared by every part of the daemon, rendered as Prometheus text.
//!
//! Counters and histograms are only added to by [`crate::events`]: each outcome is one typed
//! event whose `emit` writes its log line and updates its counters together, so logs and metrics
//! never drift apart. Gauges that mirror a snapshot (open pictures, spool size, links attached,
//! liveness, ...) are stored directly by the code that owns the state. The fields stay public so
//! tests and tools can read them (and set them up); the daemon's code goes through the events.

use crate::message::SkipReason;
use crate::sink::StoreErrorKind;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

/// Upper bounds (seconds) of the settle-latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Upper bounds (seconds) of the image-latency histogram buckets: finer, so that p50/p99 can be
/// read off it to within a millisecond or two where it matters (under 50 ms).
pub const IMAGE_LATENCY_BUCKETS: [f64; 28] = [
    0.0005, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.006, 0.008, 0.01, 0.012, 0.015, 0.02,
    0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0,
];

/// A fixed-bucket histogram (bucket bounds in seconds, ascending).
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::with_bounds(&LATENCY_BUCKETS)
    }
}

impl Histogram {
    /// A histogram with these bucket upper bounds (seconds, ascending).
    pub fn with_bounds(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
        }
    }

    /// Records one observation in microseconds.
    pub fn observe_us(&self, us: u64) {
        let secs = us as f64 / 1e6;
        if let Some(i) = self.bounds.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    /// Appends the Prometheus exposition of this histogram as `name` (seconds).
    fn render(&self, s: &mut String, name: &str, help: &str) {
        let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cum = 0;
        for (b, n) in self.bounds.iter().zip(self.buckets.iter()) {
            cum += n.load(Relaxed);
            let _ = writeln!(s, "{name}_bucket{{le=\"{b}\"}} {cum}");
        }
        let _ = writeln!(
            s,
            "{name}_bucket{{le=\"+Inf\"}} {}\n{name}_sum {}\n{name}_count {}",
            self.count(),
            self.sum_us.load(Relaxed) as f64 / 1e6,
            self.count()
        );
    }
}

/// Wall-clock microseconds since the Unix epoch (the workspace's one clock).
pub use receiver_protocol::time::now_us as wall_us;

/// The image-latency histogram ([`IMAGE_LATENCY_BUCKETS`]).
#[derive(Debug)]
pub struct ImageLatency(pub Histogram);

impl Default for ImageLatency {
    fn default() -> Self {
        ImageLatency(Histogram::with_bounds(&IMAGE_LATENCY_BUCKETS))
    }
}

impl std::ops::Deref for ImageLatency {
    type Target = Histogram;
    fn deref(&self) -> &Histogram {
        &self.0
    }
}

/// Message kinds counted in `receiver_messages_total{kind}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// v1 hex chunk.
    V1Chunk,
    /// v1 `END`.
    V1End,
    /// v2 chunk.
    V2Chunk,
    /// An img value that did not parse.
    BadChunk,
    /// Skipped (see `receiver_skipped_total`).
    Skipped,
    /// Duplicate message id.
    Duplicate,
}

impl Kind {
    const ALL: [Kind; 6] = [
        Kind::V1Chunk,
        Kind::V1End,
        Kind::V2Chunk,
        Kind::BadChunk,
        Kind::Skipped,
        Kind::Duplicate,
    ];
    fn as_str(self) -> &'static str {
        match self {
            Kind::V1Chunk => "v1_chunk",
            Kind::V1End => "v1_end",
            Kind::V2Chunk => "v2_chunk",
            Kind::BadChunk => "bad_chunk",
            Kind::Skipped => "skipped",
            Kind::Duplicate => "duplicate",
        }
    }
}

/// Every counter and gauge of the process. Counters change through [`crate::events`] only.
#[derive(Debug, Default)]
pub struct Metrics {
    messages: [AtomicU64; 6],
    skipped: [AtomicU64; SkipReason::ALL.len()],
    /// Duplicate chunks dropped by the assembler (same seq, same data).
    pub duplicate_chunks: AtomicU64,
    /// v2 chunks dropped because their picture was already quarantined.
    pub chunks_after_quarantine: AtomicU64,
    /// v1 pictures written on the structural check alone: the exact entropy check does not
    /// support their coding (progressive, arithmetic, ...).
    pub v1_structure_only: AtomicU64,
    /// Written v1 pictures later moved to quarantine ([`crate::assembler::Retraction`]).
    pub images_retracted: AtomicU64,
    /// Images written, v1.
    pub images_v1: AtomicU64,
    /// Images written, v2.
    pub images_v2: AtomicU64,
    /// Image bytes written.
    pub bytes_written: AtomicU64,
    quarantined: Mutex<BTreeMap<&'static str, u64>>,
    /// Open pictures (gauge).
    pub open_assemblies: AtomicU64,
    /// Bytes held by open pictures (gauge).
    pub assembly_bytes: AtomicU64,
    /// Of those, bytes in the spill files (gauge).
    pub assembly_spilled_bytes: AtomicU64,
    /// Failed spill writes and reads (counter).
    pub spill_errors: AtomicU64,
    /// Bytes moved to the spill files (counter).
    pub spilled_bytes: AtomicU64,
    /// Age of the oldest open picture, ms (gauge).
    pub oldest_assembly_ms: AtomicU64,
    /// Connection attempts after the first.
    pub reconnects: AtomicU64,
    /// Refused sign-ins.
    pub auth_failures: AtomicU64,
    /// Receiver links attached right now (gauge).
    pub links_attached: AtomicU64,
    /// Wall-clock ms of the last delivery.
    pub last_delivery_ms: AtomicU64,
    /// Delivery-to-settle latency.
    pub settle_latency: Histogram,
    /// Last chunk received to image file durable (written, fsynced, renamed, folder fsynced).
    pub image_latency: ImageLatency,
    /// Deliveries accepted.
    pub accepted: AtomicU64,
    /// Deliveries released (not persisted, shutting down).
    pub released: AtomicU64,
    /// Deliveries rejected.
    pub rejected: AtomicU64,
    /// Spool size, bytes (gauge).
    pub spool_bytes: AtomicU64,
    /// Group commits.
    pub spool_commits: AtomicU64,
    /// Failed writes (spool or images).
    pub io_errors: AtomicU64,
    /// Credit withheld because of an I/O problem or a full spool.
    pub paused: AtomicBool,
    /// Time the engine was ready (first link attached), ms; 0 before.
    pub ready_ms: AtomicU64,
    /// Wall-clock ms when the engine started its current batch or tick; 0 while it waits for
    /// deliveries. Set with [`Metrics::engine_busy`] / [`Metrics::engine_idle`]; a value that stays
    /// old means the engine is stuck (see `ops::health`). Idle time never counts.
    pub engine_busy_since_ms: AtomicU64,
    /// 1 while the liveness check passes (updated by the systemd watchdog loop).
    pub live: AtomicBool,
    /// Retention sweeps run.
    pub retention_sweeps: AtomicU64,
    /// Image files deleted by retention.
    pub retention_deleted_files: AtomicU64,
    /// Bytes freed by retention.
    pub retention_deleted_bytes: AtomicU64,
    /// Files retention wanted to delete but could not (or a folder it could not read).
    pub retention_errors: AtomicU64,
    /// HTTP connections answered `503` (or, past that, closed) because the listener was full.
    pub http_refused: AtomicU64,
    /// Hook runs that exited 0.
    pub hook_ok: AtomicU64,
    /// Hook runs that exited non-zero or were killed by a signal.
    pub hook_failed: AtomicU64,
    /// Hook runs killed at their time-out.
    pub hook_timeouts: AtomicU64,
    /// Hook commands that could not be started.
    pub hook_spawn_errors: AtomicU64,
    /// Images not handed to the hook because its queue was full.
    pub hook_dropped: AtomicU64,
    /// Objects uploaded to the output bucket (`[output] backend = "s3"`).
    pub uploads: AtomicU64,
    /// Bytes of those objects.
    pub upload_bytes: AtomicU64,
    /// Failed object-store requests, by [`StoreErrorKind`] (in [`StoreErrorKind::ALL`] order).
    upload_errors: [AtomicU64; StoreErrorKind::ALL.len()],
    /// Duration of successful uploads (the PUT alone).
    pub upload_latency: Histogram,
    /// Cluster mode: this instance's id (set once at start; none in single-instance mode).
    pub cluster_instance: std::sync::OnceLock<String>,
    /// Cluster mode: chunks this instance stored in the shared store (new ones, not duplicates).
    pub cluster_chunks_stored: AtomicU64,
    /// Cluster mode: pictures this instance claimed (to write or quarantine them).
    pub cluster_pictures_claimed: AtomicU64,
    /// Cluster mode: of those, claims taken over from an instance whose lease ran out.
    pub cluster_takeovers: AtomicU64,
    /// Cluster mode: failed calls to the shared store.
    pub cluster_store_errors: AtomicU64,
    /// Cluster mode: the shared store is unreachable and intake is paused.
    pub cluster_store_down: AtomicBool,
    /// Cluster mode: round trip of one batch's store call (including `WAIT` with replicas).
    pub cluster_store_latency: Histogram,
}

impl Metrics {
    /// Counts one message of `kind` (used by [`crate::events::engine`]).
    pub fn message(&self, kind: Kind) {
        self.messages[kind as usize].fetch_add(1, Relaxed);
    }

    /// Messages of `kind` so far.
    pub fn messages(&self, kind: Kind) -> u64 {
        self.messages[kind as usize].load(Relaxed)
    }

    /// Counts one skipped delivery (used by [`crate::events::engine::DeliverySkipped`]).
    pub fn skipped(&self, reason: SkipReason) {
        self.message(Kind::Skipped);
        if let Some(i) = SkipReason::ALL.iter().position(|r| *r == reason) {
            self.skipped[i].fetch_add(1, Relaxed);
        }
    }

    /// Skipped deliveries for `reason`.
    pub fn skipped_count(&self, reason: SkipReason) -> u64 {
        SkipReason::ALL
            .iter()
            .position(|r| *r == reason)
            .map_or(0, |i| self.skipped[i].load(Relaxed))
    }

    /// Counts one quarantined picture or chunk (used by [`crate::events::engine`]).
    pub fn quarantined(&self, reason: &'static str) {
        if let Ok(mut m) = self.quarantined.lock() {
            *m.entry(reason).or_default() += 1;
        }
    }

    /// Quarantined so far, every reason.
    pub fn quarantined_total(&self) -> u64 {
        self.quarantined
            .lock()
            .map(|m| m.values().sum())
            .unwrap_or(0)
    }

    /// Deliveries so far, every kind.
    pub fn messages_total(&self) -> u64 {
        self.messages.iter().map(|m| m.load(Relaxed)).sum()
    }

    /// Quarantined so far for `reason`.
    pub fn quarantined_count(&self, reason: &str) -> u64 {
        self.quarantined
            .lock()
            .map(|m| m.get(reason).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// The engine starts a batch or tick at `now_ms` (call before `process`/`tick`).
    pub fn engine_busy(&self, now_ms: u64) {
        self.engine_busy_since_ms.store(now_ms.max(1), Relaxed);
    }

    /// The engine goes back to waiting for deliveries (call after `process`/`tick`).
    pub fn engine_idle(&self) {
        self.engine_busy_since_ms.store(0, Relaxed);
    }

    /// Counts one failed object-store request (used by [`crate::events::output`]).
    pub fn upload_error(&self, kind: StoreErrorKind) {
        if let Some(i) = StoreErrorKind::ALL.iter().position(|k| *k == kind) {
            self.upload_errors[i].fetch_add(1, Relaxed);
        }
    }

    /// Failed object-store requests of `kind` so far.
    pub fn upload_errors(&self, kind: StoreErrorKind) -> u64 {
        StoreErrorKind::ALL
            .iter()
            .position(|k| *k == kind)
            .map_or(0, |i| self.upload_errors[i].load(Relaxed))
    }

    /// Images written so far (all formats).
    pub fn images_written(&self) -> u64 {
        self.images_v1.load(Relaxed) + self.images_v2.load(Relaxed)
    }

    /// Renders every metric in the Prometheus text exposition format.
    pub fn render_prometheus(&self) -> String {
        let mut s = String::with_capacity(4096);
        let counter = |s: &mut String, name: &str, help: &str| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter");
        };
        counter(&mut s, "receiver_messages_total", "Deliveries by kind.");
        for k in Kind::ALL {
            let _ = writeln!(
                s,
                "receiver_messages_total{{kind=\"{}\"}} {}",
                k.as_str(),
                self.messages(k)
            );
        }
        counter(
            &mut s,
            "receiver_skipped_total",
            "Skipped deliveries by reason.",
        );
        for r in SkipReason::ALL {
            let _ = writeln!(
                s,
                "receiver_skipped_total{{reason=\"{}\"}} {}",
                r.as_str(),
                self.skipped_count(r)
            );
        }
        counter(
            &mut s,
            "receiver_images_written_total",
            "Images written by format.",
        );
        let _ = writeln!(
            s,
            "receiver_images_written_total{{format=\"v1\"}} {}\nreceiver_images_written_total{{format=\"v2\"}} {}",
            self.images_v1.load(Relaxed),
            self.images_v2.load(Relaxed)
        );
        counter(
            &mut s,
            "receiver_quarantined_total",
            "Quarantined pictures or chunks by reason.",
        );
        if let Ok(m) = self.quarantined.lock() {
            for (r, n) in m.iter() {
                let _ = writeln!(s, "receiver_quarantined_total{{reason=\"{r}\"}} {n}");
            }
        }
        let plain: [(&str, &str, &AtomicU64, &str); 14] = [
            (
                "receiver_images_retracted_total",
                "Written v1 pictures moved to quarantine because a chunk they lacked arrived later.",
                &self.images_retracted,
                "counter",
            ),
            (
                "receiver_v1_structure_only_total",
                "v1 pictures written on the structural check alone (coding the exact check does not support).",
                &self.v1_structure_only,
                "counter",
            ),
            (
                "receiver_duplicate_chunks_total",
                "Duplicate chunks dropped.",
                &self.duplicate_chunks,
                "counter",
            ),
            (
                "receiver_chunks_after_quarantine_total",
                "v2 chunks dropped because their picture was already quarantined.",
                &self.chunks_after_quarantine,
                "counter",
            ),
            (
                "receiver_bytes_written_total",
                "Image bytes written.",
                &self.bytes_written,
                "counter",
            ),
            (
                "receiver_reconnects_total",
                "Reconnect attempts.",
                &self.reconnects,
                "counter",
            ),
            (
                "receiver_auth_failures_total",
                "Refused sign-ins.",
                &self.auth_failures,
                "counter",
            ),
            (
                "receiver_accepted_total",
                "Deliveries accepted.",
                &self.accepted,
                "counter",
            ),
            (
                "receiver_released_total",
                "Deliveries released for redelivery.",
                &self.released,
                "counter",
            ),
            (
                "receiver_rejected_total",
                "Deliveries rejected.",
                &self.rejected,
                "counter",
            ),
            (
                "receiver_spool_commits_total",
                "Group commits.",
                &self.spool_commits,
                "counter",
            ),
            (
                "receiver_io_errors_total",
                "Failed writes.",
                &self.io_errors,
                "counter",
            ),
            (
                "receiver_open_assemblies",
                "Pictures being assembled.",
                &self.open_assemblies,
                "gauge",
            ),
            (
                "receiver_links_attached",
                "Receiver links attached.",
                &self.links_attached,
                "gauge",
            ),
        ];
        for (name, help, v, ty) in plain {
            let _ = writeln!(
                s,
                "# HELP {name} {help}\n# TYPE {name} {ty}\n{name} {}",
                v.load(Relaxed)
            );
        }
        let _ = writeln!(
            s,
            "# HELP receiver_spill_errors_total Failed spill file writes and reads.\n# TYPE receiver_spill_errors_total counter\nreceiver_spill_errors_total {}\n# HELP receiver_spilled_bytes_total Bytes of open pictures moved to the spill files.\n# TYPE receiver_spilled_bytes_total counter\nreceiver_spilled_bytes_total {}",
            self.spill_errors.load(Relaxed),
            self.spilled_bytes.load(Relaxed)
        );
        let gauges: [(&str, &str, u64); 5] = [
            (
                "receiver_assembly_bytes",
                "Bytes held by open pictures (in memory or spilled).",
                self.assembly_bytes.load(Relaxed),
            ),
            (
                "receiver_assembly_spilled_bytes",
                "Bytes of open pictures in the spill files ([assembly] memory_limit).",
                self.assembly_spilled_bytes.load(Relaxed),
            ),
            (
                "receiver_oldest_assembly_age_seconds",
                "Age of the oldest open picture.",
                self.oldest_assembly_ms.load(Relaxed) / 1000,
            ),
            (
                "receiver_spool_bytes",
                "Spool size on disk.",
                self.spool_bytes.load(Relaxed),
            ),
            (
                "receiver_paused",
                "1 while credit is withheld (I/O error or full spool).",
                u64::from(self.paused.load(Relaxed)),
            ),
        ];
        for (name, help, v) in gauges {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        self.settle_latency.render(
            &mut s,
            "receiver_settle_latency_seconds",
            "Receipt to settlement.",
        );
        self.image_latency.render(
            &mut s,
            "receiver_image_latency_seconds",
            "Receipt of an image's last chunk to its file being durable.",
        );
        self.render_ops(&mut s);
        self.render_uploads(&mut s);
        self.render_cluster(&mut s);
        s
    }

    /// The cluster-mode metrics (only with `[cluster]`).
    fn render_cluster(&self, s: &mut String) {
        let Some(id) = self.cluster_instance.get() else {
            return;
        };
        let _ = writeln!(
            s,
            "# HELP receiver_cluster_info This instance in cluster mode.\n# TYPE receiver_cluster_info gauge\nreceiver_cluster_info{{instance_id=\"{}\"}} 1",
            id.replace('\\', "\\\\").replace('"', "\\\"")
        );
        for (name, help, v) in [
            (
                "receiver_cluster_chunks_stored_total",
                "Chunks this instance stored in the shared store.",
                &self.cluster_chunks_stored,
            ),
            (
                "receiver_cluster_pictures_claimed_total",
                "Pictures this instance claimed to write or quarantine.",
                &self.cluster_pictures_claimed,
            ),
            (
                "receiver_cluster_takeovers_total",
                "Claims taken over from an instance whose lease ran out.",
                &self.cluster_takeovers,
            ),
            (
                "receiver_cluster_store_errors_total",
                "Failed calls to the shared store.",
                &self.cluster_store_errors,
            ),
        ] {
            let _ = writeln!(
                s,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Relaxed)
            );
        }
        let _ = writeln!(
            s,
            "# HELP receiver_cluster_store_down 1 while the shared store is unreachable (intake paused).\n# TYPE receiver_cluster_store_down gauge\nreceiver_cluster_store_down {}",
            u8::from(self.cluster_store_down.load(Relaxed))
        );
        self.cluster_store_latency.render(
            s,
            "receiver_cluster_store_latency_seconds",
            "Round trip of one batch's call to the shared store.",
        );
    }

    /// The object-store output's metrics (zero with the folder output).
    fn render_uploads(&self, s: &mut String) {
        for (name, help, v) in [
            (
                "receiver_uploads_total",
                "Objects uploaded to the output bucket.",
                &self.uploads,
            ),
            (
                "receiver_upload_bytes_total",
                "Bytes of the objects uploaded.",
                &self.upload_bytes,
            ),
        ] {
            let _ = writeln!(
                s,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Relaxed)
            );
        }
        let _ = writeln!(
            s,
            "# HELP receiver_upload_errors_total Failed requests to the output bucket, by kind.\n# TYPE receiver_upload_errors_total counter"
        );
        for k in StoreErrorKind::ALL {
            let _ = writeln!(
                s,
                "receiver_upload_errors_total{{kind=\"{}\"}} {}",
                k.as_str(),
                self.upload_errors(k)
            );
        }
        self.upload_latency.render(
            s,
            "receiver_upload_latency_seconds",
            "Duration of an object upload (the PUT, until the store confirmed it).",
        );
    }

    /// The operations metrics (`ops`: health, retention, hook).
    fn render_ops(&self, s: &mut String) {
        let secs = |ms: &AtomicU64| ms.load(Relaxed) as f64 / 1000.0;
        let timestamps: [(&str, &str, f64); 2] = [
            (
                "receiver_last_delivery_timestamp_seconds",
                "Unix time of the last delivery (0: none yet).",
                secs(&self.last_delivery_ms),
            ),
            (
                "receiver_engine_busy_since_timestamp_seconds",
                "Unix time the engine started its current batch (0: idle).",
                secs(&self.engine_busy_since_ms),
            ),
        ];
        for (name, help, v) in timestamps {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        let _ = writeln!(
            s,
            "# HELP receiver_live 1 while the liveness (watchdog) check passes.\n# TYPE receiver_live gauge\nreceiver_live {}",
            u64::from(self.live.load(Relaxed))
        );
        let counters: [(&str, &str, &AtomicU64); 5] = [
            (
                "receiver_retention_sweeps_total",
                "Retention sweeps run.",
                &self.retention_sweeps,
            ),
            (
                "receiver_retention_deleted_files_total",
                "Image files deleted by retention.",
                &self.retention_deleted_files,
            ),
            (
                "receiver_retention_deleted_bytes_total",
                "Bytes freed by retention.",
                &self.retention_deleted_bytes,
            ),
            (
                "receiver_retention_errors_total",
                "Retention deletions or scans that failed.",
                &self.retention_errors,
            ),
            (
                "receiver_http_refused_total",
                "HTTP connections refused (503) because the listener was at its connection cap.",
                &self.http_refused,
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(
                s,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Relaxed)
            );
        }
        let _ = writeln!(
            s,
            "# HELP receiver_hook_jobs_total On-image hook jobs by result.\n# TYPE receiver_hook_jobs_total counter"
        );
        let hooks: [(&str, &AtomicU64); 5] = [
            ("ok", &self.hook_ok),
            ("failed", &self.hook_failed),
            ("timeout", &self.hook_timeouts),
            ("spawn_error", &self.hook_spawn_errors),
            ("dropped", &self.hook_dropped),
        ];
        for (result, v) in hooks {
            let _ = writeln!(
                s,
                "receiver_hook_jobs_total{{result=\"{result}\"}} {}",
                v.load(Relaxed)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts() {
        let m = Metrics::default();
        m.message(Kind::V2Chunk);
        m.skipped(SkipReason::OtherTopic);
        m.quarantined("crc_mismatch");
        m.settle_latency.observe_us(1500);
        let text = m.render_prometheus();
        assert!(text.contains("receiver_messages_total{kind=\"v2_chunk\"} 1"));
        assert!(text.contains("receiver_messages_total{kind=\"skipped\"} 1"));
        assert!(text.contains("receiver_skipped_total{reason=\"other_topic\"} 1"));
        assert!(text.contains("receiver_quarantined_total{reason=\"crc_mismatch\"} 1"));
        assert!(text.contains("receiver_settle_latency_seconds_bucket{le=\"0.002\"} 1"));
        assert!(text.contains("receiver_settle_latency_seconds_bucket{le=\"0.001\"} 0"));
    }

    #[test]
    fn renders_ops_metrics() {
        let m = Metrics::default();
        m.hook_timeouts.fetch_add(2, Relaxed);
        m.retention_deleted_files.fetch_add(3, Relaxed);
        m.last_delivery_ms.store(1_500, Relaxed);
        m.live.store(true, Relaxed);
        let text = m.render_prometheus();
        assert!(text.contains("receiver_hook_jobs_total{result=\"timeout\"} 2"));
        assert!(text.contains("receiver_hook_jobs_total{result=\"dropped\"} 0"));
        assert!(text.contains("receiver_retention_deleted_files_total 3"));
        assert!(text.contains("receiver_last_delivery_timestamp_seconds 1.5"));
        assert!(text.contains("receiver_live 1"));
    }
}

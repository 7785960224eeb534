//! The engine's events: deliveries, the spool commit, pictures and their files.

use crate::amqp::Outcome;
use crate::assembler::{Finished, Quarantined, Retraction};
use crate::message::{DeviceId, SkipReason};
use crate::metrics::{Kind, Metrics};
use crate::sink::{SinkError, Written};
use crate::spool::SpoolError;
use crate::wire::Format;
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;

/// The log target of these events (the engine's module, where they were logged before).
const TARGET: &str = "receiver::engine";

/// A delivery that carries no image chunk (another topic, bad JSON, no `img`, ...): settled and
/// skipped. Counts `receiver_skipped_total{reason}` and `receiver_messages_total{kind="skipped"}`;
/// logs `delivery skipped` (info).
#[derive(Debug)]
pub struct DeliverySkipped<'a> {
    /// Why.
    pub reason: SkipReason,
    /// The device the topic named, if any.
    pub device: Option<&'a DeviceId>,
    /// The delivery's topic.
    pub topic: Option<&'a str>,
    /// The delivery's message id.
    pub message_id: Option<&'a str>,
    /// A short human detail, never the body.
    pub detail: &'a str,
}

impl DeliverySkipped<'_> {
    /// Counts and logs the event.
    pub fn emit(self, metrics: &Metrics) {
        metrics.skipped(self.reason);
        tracing::info!(
            target: TARGET,
            reason = self.reason.as_str(),
            device = self.device.map(|d| d.to_string()).unwrap_or_default(),
            topic = self.topic.unwrap_or(""),
            message_id = self.message_id.unwrap_or(""),
            detail = %self.detail,
            "delivery skipped"
        );
    }
}

/// A delivery whose message id was seen before (AMQP redelivery): settled, not assembled again.
/// Counts `receiver_messages_total{kind="duplicate"}`; logs `duplicate message dropped` (debug).
#[derive(Debug)]
pub struct DuplicateMessageDropped<'a> {
    /// The camera.
    pub device: &'a DeviceId,
    /// The repeated message id.
    pub message_id: &'a str,
}

impl DuplicateMessageDropped<'_> {
    /// Counts and logs the event.
    pub fn emit(self, metrics: &Metrics) {
        metrics.message(Kind::Duplicate);
        tracing::debug!(target: TARGET, device = %self.device, message_id = %self.message_id,
            "duplicate message dropped");
    }
}

/// A new image chunk, classified by its `img` value: v1 hex, v1 `END`, v2, or malformed
/// ([`Kind::BadChunk`], quarantined by the assembler). Counts `receiver_messages_total{kind}`;
/// no log line (one per chunk would drown the rest).
#[derive(Debug, Clone, Copy)]
pub struct ChunkReceived {
    /// What the value is.
    pub kind: Kind,
}

impl ChunkReceived {
    /// Counts the event.
    pub fn emit(self, metrics: &Metrics) {
        metrics.message(self.kind);
    }
}

/// A batch of deliveries made durable in the spool (one write + one fsync). Counts
/// `receiver_spool_commits_total`; no log line.
#[derive(Debug, Clone, Copy)]
pub struct SpoolCommitted;

impl SpoolCommitted {
    /// Counts the event.
    pub fn emit(self, metrics: &Metrics) {
        metrics.spool_commits.fetch_add(1, Relaxed);
    }
}

/// The spool could not persist a batch: its deliveries are released and intake pauses. Counts
/// `receiver_io_errors_total`; logs `cannot persist deliveries; ...` (error).
#[derive(Debug)]
pub struct SpoolCommitFailed<'a> {
    /// What failed.
    pub error: &'a SpoolError,
    /// Deliveries of the batch (all released).
    pub deliveries: usize,
}

impl SpoolCommitFailed<'_> {
    /// Counts and logs the event.
    pub fn emit(self, metrics: &Metrics) {
        metrics.io_errors.fetch_add(1, Relaxed);
        tracing::error!(target: TARGET, error = %self.error, disk_full = self.error.is_disk_full(),
            deliveries = self.deliveries,
            "cannot persist deliveries; releasing them to Aliyun and pausing intake until the spool is writable");
    }
}

/// A chunk the assembler already had (same sequence number, same data): dropped. Counts
/// `receiver_duplicate_chunks_total`; logs `duplicate chunk dropped` (debug).
#[derive(Debug)]
pub struct DuplicateChunkDropped<'a> {
    /// The camera.
    pub device: &'a DeviceId,
    /// The chunk's message id.
    pub message_id: &'a str,
}

impl DuplicateChunkDropped<'_> {
    /// Counts and logs the event.
    pub fn emit(self, metrics: &Metrics) {
        metrics.duplicate_chunks.fetch_add(1, Relaxed);
        tracing::debug!(target: TARGET, device = %self.device, message_id = %self.message_id,
            "duplicate chunk dropped");
    }
}

/// A v2 chunk of a picture that was already quarantined: dropped. Counts
/// `receiver_chunks_after_quarantine_total`; logs `chunk of an already quarantined picture
/// dropped` (debug).
#[derive(Debug)]
pub struct ChunkAfterQuarantineDropped<'a> {
    /// The camera.
    pub device: &'a DeviceId,
    /// The chunk's message id.
    pub message_id: &'a str,
}

impl ChunkAfterQuarantineDropped<'_> {
    /// Counts and logs the event.
    pub fn emit(self, metrics: &Metrics) {
        metrics.chunks_after_quarantine.fetch_add(1, Relaxed);
        tracing::debug!(target: TARGET, device = %self.device, message_id = %self.message_id,
            "chunk of an already quarantined picture dropped");
    }
}

/// A new image file became durable this long after its last chunk was received. Observes
/// `receiver_image_latency_seconds`; no log line (the `image written` line has the details).
#[derive(Debug, Clone, Copy)]
pub struct ImageDurable {
    /// Receipt of the last chunk to the file being durable, µs.
    pub latency_us: u64,
}

impl ImageDurable {
    /// Records the event.
    pub fn emit(self, metrics: &Metrics) {
        metrics.image_latency.observe_us(self.latency_us);
    }
}

/// A v1 picture written on the structural check alone: the exact entropy check does not support
/// its coding. Counts `receiver_v1_structure_only_total`; logs `v1 picture checked for structure
/// only: ...` (warn).
#[derive(Debug)]
pub struct V1StructureOnly<'a> {
    /// The camera.
    pub device: &'a DeviceId,
    /// What the exact check does not support.
    pub reason: &'static str,
    /// The image file.
    pub path: &'a Path,
}

impl V1StructureOnly<'_> {
    /// Counts and logs the event.
    pub fn emit(self, metrics: &Metrics) {
        metrics.v1_structure_only.fetch_add(1, Relaxed);
        tracing::warn!(target: TARGET, device = %self.device, reason = self.reason, path = %self.path.display(),
            "v1 picture checked for structure only: the exact entropy check does not support it");
    }
}

/// A finished picture's image file is in place (newly written, or already there from before a
/// crash). A new file counts `receiver_images_written_total{format}` and
/// `receiver_bytes_written_total`; both log `image written` (info).
#[derive(Debug)]
pub struct ImageWritten<'a> {
    /// The picture.
    pub image: &'a Finished,
    /// Its file.
    pub written: &'a Written,
    /// Time from its first chunk to now, ms.
    pub assembly_ms: u64,
}

impl ImageWritten<'_> {
    /// Counts and logs the event.
    pub fn emit(self, metrics: &Metrics) {
        let (img, w) = (self.image, self.written);
        if !w.already_present {
            match img.format {
                Format::V1 => metrics.images_v1.fetch_add(1, Relaxed),
                Format::V2 => metrics.images_v2.fetch_add(1, Relaxed),
            };
            metrics.bytes_written.fetch_add(w.bytes, Relaxed);
        }
        tracing::info!(
            target: TARGET,
            device = %img.device,
            format = img.format.as_str(),
            pid = img.pid,
            bytes = img.bytes.len(),
            chunks = img.chunks,
            path = %w.path.display(),
            assembly_ms = self.assembly_ms,
            already_present = w.already_present,
            "image written"
        );
    }
}

/// An image file could not be written; the picture stays in the spool and is retried. Counts
/// `receiver_io_errors_total`; logs `cannot write image; ...` (error).
#[derive(Debug)]
pub struct ImageWriteFailed<'a> {
    /// The camera.
    pub device: &'a DeviceId,
    /// What failed.
    pub error: &'a SinkError,
}

impl ImageWriteFailed<'_> {
    /// Counts and logs the event.
    pub fn emit(self, metrics: &Metrics) {
        metrics.io_errors.fetch_add(1, Relaxed);
        tracing::error!(target: TARGET, device = %self.device, error = %self.error, disk_full = self.error.is_disk_full(),
            "cannot write image; it stays in the spool and is retried");
    }
}

/// A picture (or a chunk) was quarantined and its record written. Counts
/// `receiver_quarantined_total{reason}`; logs `quarantined` (warn).
#[derive(Debug)]
pub struct PictureQuarantined<'a> {
    /// What the assembler gave up on, and why.
    pub quarantined: &'a Quarantined,
    /// The quarantine record.
    pub path: &'a Path,
}

impl PictureQuarantined<'_> {
    /// Counts and logs the event.
    pub fn emit(self, metrics: &Metrics) {
        let q = self.quarantined;
        metrics.quarantined(q.reason);
        tracing::warn!(
            target: TARGET,
            device = %q.device,
            reason = q.reason,
            detail = %q.detail,
            format = q.format.map(Format::as_str).unwrap_or("unknown"),
            pid = q.pid,
            bytes = q.bytes.len(),
            missing = q.missing.len(),
            path = %self.path.display(),
            "quarantined"
        );
    }
}

/// A quarantine record could not be written; it is retried. Counts `receiver_io_errors_total`;
/// logs `cannot write quarantine record; retrying` (error).
#[derive(Debug)]
pub struct QuarantineWriteFailed<'a> {
    /// The camera.
    pub device: &'a DeviceId,
    /// The quarantine reason.
    pub reason: &'static str,
    /// What failed.
    pub error: &'a SinkError,
}

impl QuarantineWriteFailed<'_> {
    /// Counts and logs the event.
    pub fn emit(self, metrics: &Metrics) {
        metrics.io_errors.fetch_add(1, Relaxed);
        tracing::error!(target: TARGET, device = %self.device, reason = self.reason, error = %self.error,
            disk_full = self.error.is_disk_full(), "cannot write quarantine record; retrying");
    }
}

/// A written v1 picture turned out wrong and was moved to quarantine. Counts
/// `receiver_images_retracted_total` and `receiver_quarantined_total{reason="retracted"}`; logs
/// `written v1 picture was wrong; moved to quarantine` (error).
#[derive(Debug)]
pub struct PictureRetracted<'a> {
    /// The retraction.
    pub retraction: &'a Retraction,
    /// Where the file was and where it went (`None`: it was not there any more).
    pub moved: Option<&'a (PathBuf, PathBuf)>,
}

impl PictureRetracted<'_> {
    /// Counts and logs the event.
    pub fn emit(self, metrics: &Metrics) {
        let (r, moved) = (self.retraction, self.moved);
        metrics.images_retracted.fetch_add(1, Relaxed);
        metrics.quarantined(crate::assembler::reason::RETRACTED);
        tracing::error!(
            target: TARGET,
            device = %r.device,
            detail = %r.detail,
            from = ?moved.map(|(from, _)| from.display().to_string()),
            to = ?moved.map(|(_, to)| to.display().to_string()),
            "written v1 picture was wrong; moved to quarantine"
        );
    }
}

/// A wrong picture could not be moved to quarantine; it is retried. Counts
/// `receiver_io_errors_total`; logs `cannot move a wrong picture to quarantine; retrying` (error).
#[derive(Debug)]
pub struct RetractFailed<'a> {
    /// The camera.
    pub device: &'a DeviceId,
    /// What failed.
    pub error: &'a SinkError,
}

impl RetractFailed<'_> {
    /// Counts and logs the event.
    pub fn emit(self, metrics: &Metrics) {
        metrics.io_errors.fetch_add(1, Relaxed);
        tracing::error!(target: TARGET, device = %self.device, error = %self.error,
            disk_full = self.error.is_disk_full(), "cannot move a wrong picture to quarantine; retrying");
    }
}

/// The engine decided a delivery's outcome. Counts `receiver_accepted_total`,
/// `receiver_released_total` or `receiver_rejected_total` and observes
/// `receiver_settle_latency_seconds`; no log line.
#[derive(Debug, Clone, Copy)]
pub struct DeliverySettled {
    /// The outcome.
    pub outcome: Outcome,
    /// When the delivery was received, ms since the epoch.
    pub received_ms: u64,
    /// Now, ms since the epoch.
    pub now_ms: u64,
}

impl DeliverySettled {
    /// Counts the event.
    pub fn emit(self, metrics: &Metrics) {
        match self.outcome {
            Outcome::Accept => metrics.accepted.fetch_add(1, Relaxed),
            Outcome::Release => metrics.released.fetch_add(1, Relaxed),
            Outcome::Reject => metrics.rejected.fetch_add(1, Relaxed),
        };
        metrics
            .settle_latency
            .observe_us(self.now_ms.saturating_sub(self.received_ms) * 1000);
    }
}

/// The engine stops taking deliveries (an I/O error, e.g. a full disk): the AMQP side grants no
/// credit. Sets `receiver_paused` to 1; the cause logs its own line.
#[derive(Debug, Clone, Copy)]
pub struct IntakePaused;

impl IntakePaused {
    /// Records the event.
    pub fn emit(self, metrics: &Metrics) {
        metrics.paused.store(true, Relaxed);
    }
}

/// Writes succeed again after an I/O error: intake resumes. Sets `receiver_paused` to 0; logs
/// `writes succeed again; resuming intake` (info).
#[derive(Debug, Clone, Copy)]
pub struct IntakeResumed;

impl IntakeResumed {
    /// Records and logs the event.
    pub fn emit(self, metrics: &Metrics) {
        metrics.paused.store(false, Relaxed);
        tracing::info!(target: TARGET, "writes succeed again; resuming intake");
    }
}

/// The spill files' error count (the assembler keeps it) and the failure since the last report,
/// if any. Sets `receiver_spill_errors_total`; a new failure logs `spill file I/O failed; ...`
/// (warn).
pub struct SpillErrors<'a> {
    /// Failed spill writes and reads so far.
    pub total: u64,
    /// The latest failure not reported yet.
    pub last: Option<&'a dyn Display>,
}

impl SpillErrors<'_> {
    /// Records and logs the event.
    pub fn emit(self, metrics: &Metrics) {
        metrics.spill_errors.store(self.total, Relaxed);
        if let Some(error) = self.last {
            tracing::warn!(target: TARGET, total = self.total, %error,
                "spill file I/O failed; the bytes stay in memory (write) or the picture cannot be written (read; its chunks stay in the spool until it times out)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::capture;

    fn device() -> DeviceId {
        DeviceId {
            product_key: "a1PK".into(),
            device_name: "cam-01".into(),
        }
    }

    #[test]
    fn skipped_counts_the_reason_and_logs_it() {
        let m = Metrics::default();
        let d = device();
        let line = capture::one(|| {
            DeliverySkipped {
                reason: SkipReason::NoImg,
                device: Some(&d),
                topic: Some("/a1PK/cam-01/thing/event/property/post"),
                message_id: None,
                detail: "no items.img",
            }
            .emit(&m)
        });
        assert_eq!(m.skipped_count(SkipReason::NoImg), 1);
        assert_eq!(m.messages(Kind::Skipped), 1);
        assert_eq!(line["message"], "delivery skipped");
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["target"], "receiver::engine");
        assert_eq!(line["reason"], "no_img");
        assert_eq!(line["device"], "a1PK/cam-01");
        assert_eq!(line["message_id"], "");
        assert_eq!(line["detail"], "no items.img");
    }

    #[test]
    fn duplicates_count_and_log_at_debug() {
        let m = Metrics::default();
        let d = device();
        let lines = capture::logs(|| {
            DuplicateMessageDropped {
                device: &d,
                message_id: "m1",
            }
            .emit(&m);
            DuplicateChunkDropped {
                device: &d,
                message_id: "m2",
            }
            .emit(&m);
            ChunkAfterQuarantineDropped {
                device: &d,
                message_id: "m3",
            }
            .emit(&m);
        });
        assert_eq!(m.messages(Kind::Duplicate), 1);
        assert_eq!(m.duplicate_chunks.load(Relaxed), 1);
        assert_eq!(m.chunks_after_quarantine.load(Relaxed), 1);
        let msgs: Vec<_> = lines.iter().map(|l| l["message"].clone()).collect();
        assert_eq!(
            msgs,
            [
                "duplicate message dropped",
                "duplicate chunk dropped",
                "chunk of an already quarantined picture dropped"
            ]
        );
        assert!(lines.iter().all(|l| l["level"] == "DEBUG"));
        assert_eq!(lines[1]["message_id"], "m2");
    }

    #[test]
    fn counter_only_events_count() {
        let m = Metrics::default();
        let lines = capture::logs(|| {
            ChunkReceived {
                kind: Kind::BadChunk,
            }
            .emit(&m);
            SpoolCommitted.emit(&m);
            ImageDurable { latency_us: 1_500 }.emit(&m);
            for outcome in [Outcome::Accept, Outcome::Release, Outcome::Reject] {
                DeliverySettled {
                    outcome,
                    received_ms: 1_000,
                    now_ms: 1_002,
                }
                .emit(&m);
            }
            IntakePaused.emit(&m);
        });
        assert!(lines.is_empty(), "{lines:?}");
        assert_eq!(m.messages(Kind::BadChunk), 1);
        assert_eq!(m.spool_commits.load(Relaxed), 1);
        assert_eq!(m.image_latency.count(), 1);
        assert_eq!(m.accepted.load(Relaxed), 1);
        assert_eq!(m.released.load(Relaxed), 1);
        assert_eq!(m.rejected.load(Relaxed), 1);
        assert_eq!(m.settle_latency.count(), 3);
        assert!(m.paused.load(Relaxed));
        let text = m.render_prometheus();
        assert!(text.contains("receiver_settle_latency_seconds_bucket{le=\"0.002\"} 3"));
        let line = capture::one(|| IntakeResumed.emit(&m));
        assert!(!m.paused.load(Relaxed));
        assert_eq!(line["message"], "writes succeed again; resuming intake");
    }

    fn finished(format: Format) -> Finished {
        Finished {
            device: device(),
            format,
            pid: Some(7),
            bytes: vec![1, 2, 3],
            name_time_ms: 0,
            chunks: 2,
            tags: vec![1, 2],
            opened_ms: 0,
            structure_only: None,
        }
    }

    #[test]
    fn a_new_image_counts_its_format_and_bytes_an_old_one_only_logs() {
        let m = Metrics::default();
        let img = finished(Format::V2);
        let mut w = Written {
            path: "/out/a1PK/cam-01/x.jpg".into(),
            bytes: 3,
            already_present: false,
            object: None,
        };
        let line = capture::one(|| {
            ImageWritten {
                image: &img,
                written: &w,
                assembly_ms: 12,
            }
            .emit(&m)
        });
        assert_eq!(m.images_v2.load(Relaxed), 1);
        assert_eq!(m.bytes_written.load(Relaxed), 3);
        assert_eq!(line["message"], "image written");
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["format"], "v2");
        assert_eq!(line["pid"], 7);
        assert_eq!(line["path"], "/out/a1PK/cam-01/x.jpg");
        assert_eq!(line["assembly_ms"], 12);
        assert_eq!(line["already_present"], false);
        w.already_present = true;
        let line = capture::one(|| {
            ImageWritten {
                image: &img,
                written: &w,
                assembly_ms: 12,
            }
            .emit(&m)
        });
        assert_eq!(m.images_written(), 1, "not counted twice");
        assert_eq!(line["already_present"], true);
        let line = capture::one(|| {
            V1StructureOnly {
                device: &img.device,
                reason: "progressive",
                path: &w.path,
            }
            .emit(&m)
        });
        assert_eq!(m.v1_structure_only.load(Relaxed), 1);
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["reason"], "progressive");
    }

    #[test]
    fn quarantine_and_retraction_count_their_reason() {
        let m = Metrics::default();
        let q = Quarantined {
            device: device(),
            format: None,
            pid: None,
            reason: "expired",
            detail: "timed out".into(),
            bytes: vec![0; 5],
            name_time_ms: 0,
            missing: vec![3, 4],
            tags: vec![],
        };
        let line = capture::one(|| {
            PictureQuarantined {
                quarantined: &q,
                path: Path::new("/q/x.json"),
            }
            .emit(&m)
        });
        assert_eq!(m.quarantined_count("expired"), 1);
        assert_eq!(line["message"], "quarantined");
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["format"], "unknown");
        assert_eq!(line["bytes"], 5);
        assert_eq!(line["missing"], 2);
        let r = Retraction {
            device: device(),
            name_time_ms: 0,
            size: 3,
            crc: 0,
            detail: "foreign chunk".into(),
        };
        let moved = (PathBuf::from("/out/x.jpg"), PathBuf::from("/q/x.jpg"));
        let line = capture::one(|| {
            PictureRetracted {
                retraction: &r,
                moved: Some(&moved),
            }
            .emit(&m)
        });
        assert_eq!(m.images_retracted.load(Relaxed), 1);
        assert_eq!(m.quarantined_count("retracted"), 1);
        assert_eq!(line["level"], "ERROR");
        assert_eq!(line["from"], "Some(\"/out/x.jpg\")");
        assert!(m
            .render_prometheus()
            .contains("receiver_quarantined_total{reason=\"retracted\"} 1"));
    }

    #[test]
    fn write_failures_count_io_errors() {
        let m = Metrics::default();
        let d = device();
        let e = SinkError::Io {
            op: "write",
            path: "/out/x".into(),
            source: std::io::Error::other("boom"),
        };
        let lines = capture::logs(|| {
            ImageWriteFailed {
                device: &d,
                error: &e,
            }
            .emit(&m);
            QuarantineWriteFailed {
                device: &d,
                reason: "expired",
                error: &e,
            }
            .emit(&m);
            RetractFailed {
                device: &d,
                error: &e,
            }
            .emit(&m);
        });
        assert_eq!(m.io_errors.load(Relaxed), 3);
        assert_eq!(lines.len(), 3);
        assert!(lines.iter().all(|l| l["level"] == "ERROR"));
        assert!(lines.iter().all(|l| l["disk_full"] == false));
        assert_eq!(
            lines[0]["message"],
            "cannot write image; it stays in the spool and is retried"
        );
        let full = SpoolError::Io {
            op: "fdatasync",
            path: "/state/spool/0001".into(),
            source: std::io::Error::from_raw_os_error(28),
        };
        let line = capture::one(|| {
            SpoolCommitFailed {
                error: &full,
                deliveries: 4,
            }
            .emit(&m)
        });
        assert_eq!(m.io_errors.load(Relaxed), 4);
        assert_eq!(line["disk_full"], true);
        assert_eq!(line["deliveries"], 4);
        assert!(m.render_prometheus().contains("receiver_io_errors_total 4"));
    }

    #[test]
    fn spill_errors_set_the_total_and_log_a_new_failure() {
        let m = Metrics::default();
        let lines = capture::logs(|| {
            SpillErrors {
                total: 2,
                last: None,
            }
            .emit(&m)
        });
        assert!(lines.is_empty());
        assert_eq!(m.spill_errors.load(Relaxed), 2);
        let error = "disk gone".to_string();
        let line = capture::one(|| {
            SpillErrors {
                total: 3,
                last: Some(&error),
            }
            .emit(&m)
        });
        assert_eq!(m.spill_errors.load(Relaxed), 3);
        assert_eq!(line["error"], "disk gone");
        assert_eq!(line["total"], 3);
    }
}

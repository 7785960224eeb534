//! The object-store output (`[output] backend = "s3"`): uploads and failed requests.

use crate::metrics::Metrics;
use crate::sink::{SinkError, StoreErrorKind};
use std::sync::atomic::Ordering::Relaxed;

const TARGET: &str = "receiver::s3";

/// An object was uploaded and the store confirmed it. Counts `receiver_uploads_total` and
/// `receiver_upload_bytes_total`, observes `receiver_upload_latency_seconds`; logs
/// `object uploaded` (debug: the `image written` line has the details).
#[derive(Debug)]
pub struct ObjectUploaded<'a> {
    /// The bucket.
    pub bucket: &'a str,
    /// The object key.
    pub key: &'a str,
    /// Its size.
    pub bytes: u64,
    /// The PUT's duration, µs.
    pub latency_us: u64,
}

impl ObjectUploaded<'_> {
    /// Counts and logs the event.
    pub fn emit(self, metrics: &Metrics) {
        metrics.uploads.fetch_add(1, Relaxed);
        metrics.upload_bytes.fetch_add(self.bytes, Relaxed);
        metrics.upload_latency.observe_us(self.latency_us);
        tracing::debug!(target: TARGET, bucket = self.bucket, key = self.key, bytes = self.bytes,
            latency_us = self.latency_us, "object uploaded");
    }
}

/// A request to the output bucket failed (the engine logs what it does about it). Counts
/// `receiver_upload_errors_total{kind}`; logs `object store request failed` (warn).
#[derive(Debug)]
pub struct StoreRequestFailed<'a> {
    /// The class of failure.
    pub kind: StoreErrorKind,
    /// The error (names the operation and the object, never a secret).
    pub error: &'a SinkError,
}

impl StoreRequestFailed<'_> {
    /// Counts and logs the event.
    pub fn emit(self, metrics: &Metrics) {
        metrics.upload_error(self.kind);
        tracing::warn!(target: TARGET, kind = self.kind.as_str(), retryable = self.error.is_retryable(),
            error = %self.error, "object store request failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::capture;

    #[test]
    fn upload_events_count_and_log() {
        let m = Metrics::default();
        ObjectUploaded {
            bucket: "b",
            key: "k",
            bytes: 10,
            latency_us: 1500,
        }
        .emit(&m);
        assert_eq!(m.uploads.load(Relaxed), 1);
        assert_eq!(m.upload_bytes.load(Relaxed), 10);
        let e = SinkError::Store {
            op: "upload",
            location: "s3://b/k".into(),
            kind: StoreErrorKind::Timeout,
            message: "no answer".into(),
        };
        let line = capture::one(|| {
            StoreRequestFailed {
                kind: StoreErrorKind::Timeout,
                error: &e,
            }
            .emit(&m)
        });
        assert_eq!(line["kind"], "timeout");
        assert_eq!(line["target"], "receiver::s3");
        assert_eq!(m.upload_errors(StoreErrorKind::Timeout), 1);
        let text = m.render_prometheus();
        assert!(text.contains("receiver_uploads_total 1"), "{text}");
        assert!(text.contains("receiver_upload_errors_total{kind=\"timeout\"} 1"));
        assert!(text.contains("receiver_upload_latency_seconds_bucket"));
    }
}

//! Cluster mode (`[cluster]`, `crate::cluster`): the shared store's batches, claims, failures
//! and recovery. Every line carries the instance's id.

use crate::cluster::{ClusterError, PictureKey};
use crate::metrics::Metrics;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

const TARGET: &str = "receiver::cluster";

/// A batch stored in the shared store. Counts `receiver_cluster_chunks_stored_total` and
/// observes `receiver_cluster_store_latency_seconds`; logs `batch stored in the shared store`
/// (debug).
#[derive(Debug)]
pub struct BatchStored<'a> {
    /// This instance.
    pub instance_id: &'a str,
    /// New chunks stored.
    pub stored: usize,
    /// Chunks sent.
    pub chunks: usize,
    /// The round trip.
    pub latency: Duration,
}

impl BatchStored<'_> {
    /// Counts and logs the event.
    pub fn emit(self, metrics: &Metrics) {
        metrics
            .cluster_chunks_stored
            .fetch_add(self.stored as u64, Relaxed);
        metrics
            .cluster_store_latency
            .observe_us(self.latency.as_micros() as u64);
        tracing::debug!(target: TARGET, instance_id = self.instance_id, stored = self.stored,
            chunks = self.chunks, latency_us = self.latency.as_micros() as u64,
            "batch stored in the shared store");
    }
}

/// A picture claimed. Counts `receiver_cluster_pictures_claimed_total` (and
/// `receiver_cluster_takeovers_total` for a take-over); logs `picture claimed` (debug), or
/// `took over a picture whose claimant's lease ran out` (warn).
#[derive(Debug)]
pub struct PictureClaimed<'a> {
    /// This instance.
    pub instance_id: &'a str,
    /// The picture.
    pub key: &'a PictureKey,
    /// Taken over from another instance.
    pub takeover: bool,
    /// To quarantine it (it expired), not to write it.
    pub expiring: bool,
}

impl PictureClaimed<'_> {
    /// Counts and logs the event.
    pub fn emit(self, metrics: &Metrics) {
        metrics.cluster_pictures_claimed.fetch_add(1, Relaxed);
        let key = self.key.encode();
        if self.takeover {
            metrics.cluster_takeovers.fetch_add(1, Relaxed);
            tracing::warn!(target: TARGET, instance_id = self.instance_id, picture = %key,
                expiring = self.expiring, "took over a picture whose claimant's lease ran out");
        } else {
            tracing::debug!(target: TARGET, instance_id = self.instance_id, picture = %key,
                expiring = self.expiring, "picture claimed");
        }
    }
}

/// A call to the shared store failed: intake pauses (deliveries of the batch are released when
/// it was the batch's store call). Counts `receiver_cluster_store_errors_total`, sets
/// `receiver_cluster_store_down` and `receiver_paused`; logs at error level.
#[derive(Debug)]
pub struct StoreFailed<'a> {
    /// This instance.
    pub instance_id: &'a str,
    /// What failed (never holds the password).
    pub error: &'a ClusterError,
    /// Deliveries released because of it (0: not a batch's store call).
    pub released: usize,
}

impl StoreFailed<'_> {
    /// Counts and logs the event.
    pub fn emit(self, metrics: &Metrics) {
        metrics.cluster_store_errors.fetch_add(1, Relaxed);
        let was_down = metrics.cluster_store_down.swap(true, Relaxed);
        metrics.paused.store(true, Relaxed);
        if was_down {
            tracing::debug!(target: TARGET, instance_id = self.instance_id, error = %self.error,
                "shared store still unreachable");
        } else {
            tracing::error!(target: TARGET, instance_id = self.instance_id, error = %self.error,
                released = self.released,
                "shared store failed; releasing deliveries and pausing intake until it answers");
        }
    }
}

/// The shared store answers again: intake resumes. Clears `receiver_cluster_store_down` and
/// `receiver_paused`; logs `shared store answers again; resuming intake` (info).
#[derive(Debug)]
pub struct StoreRecovered<'a> {
    /// This instance.
    pub instance_id: &'a str,
}

impl StoreRecovered<'_> {
    /// Records and logs the event.
    pub fn emit(self, metrics: &Metrics) {
        metrics.cluster_store_down.store(false, Relaxed);
        metrics.paused.store(false, Relaxed);
        tracing::info!(target: TARGET, instance_id = self.instance_id,
            "shared store answers again; resuming intake");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::capture;

    #[test]
    fn cluster_events_count_and_log_with_the_instance_id() {
        let m = Metrics::default();
        let _ = m.cluster_instance.set("rx-a".into());
        let key = PictureKey::V2 {
            device: "pk|dn".into(),
            pid: 3,
        };
        let line = capture::one(|| {
            PictureClaimed {
                instance_id: "rx-a",
                key: &key,
                takeover: true,
                expiring: false,
            }
            .emit(&m)
        });
        assert_eq!(line["instance_id"], "rx-a", "{line}");
        BatchStored {
            instance_id: "rx-a",
            stored: 3,
            chunks: 4,
            latency: Duration::from_millis(2),
        }
        .emit(&m);
        let e = ClusterError::Redis {
            at: "redis://h:1/0".into(),
            message: "refused".into(),
        };
        let line = capture::one(|| {
            StoreFailed {
                instance_id: "rx-a",
                error: &e,
                released: 2,
            }
            .emit(&m)
        });
        assert_eq!(line["level"], "ERROR", "{line}");
        assert!(m.paused.load(Relaxed));
        let text = m.render_prometheus();
        for want in [
            "receiver_cluster_info{instance_id=\"rx-a\"} 1",
            "receiver_cluster_chunks_stored_total 3",
            "receiver_cluster_pictures_claimed_total 1",
            "receiver_cluster_takeovers_total 1",
            "receiver_cluster_store_errors_total 1",
            "receiver_cluster_store_down 1",
            "receiver_cluster_store_latency_seconds_count 1",
        ] {
            assert!(text.contains(want), "{want}\n{text}");
        }
        StoreRecovered {
            instance_id: "rx-a",
        }
        .emit(&m);
        assert!(!m.paused.load(Relaxed));
        assert!(!Metrics::default()
            .render_prometheus()
            .contains("receiver_cluster"));
    }
}

//! Typed internal events: every outcome the daemon counts is one value whose `emit` writes its log
//! line and updates its counters together, so a log line and its counter cannot drift apart (in
//! the manner of Vector's `internal_events`).
//!
//! An event is a plain struct named after what happened ([`engine::ImageWritten`],
//! [`amqp::LinkAttached`], [`ops::HookRan`], ...), built where it happens and consumed by
//! `emit(self, counters)`, where `counters` is the [`Metrics`](crate::metrics::Metrics) of the
//! process or, for the AMQP client, one connection's [`ConnState`](crate::amqp::client::ConnState)
//! (the daemon sums those into the metrics). Events that have no counter (a reload, a lost
//! connection's log line) take no argument.
//!
//! The log lines keep the level, message, fields and `target` they had before they moved here
//! (each event names its original module as its target: `receiver::engine`,
//! `receiver::amqp::client`, ...), so `RUST_LOG` directives and log queries keep working.
//!
//! Outside this module and [`crate::metrics`] nothing adds to a counter or histogram; gauges set
//! from a snapshot (open pictures, spool size, links attached, ...) are stored directly by their
//! owner.
//!
//! - [`engine`]: deliveries (skipped, duplicate, classified, settled), the spool commit, pictures
//!   (written, quarantined, retracted, structure-only), write failures, spill errors, pausing and
//!   resuming intake.
//! - [`amqp`]: connection attempts, link attached and detached, refused sign-ins, lost
//!   connections, deliveries received and settled on a link.
//! - [`ops`]: the on-image hook, retention sweeps, readiness.
//! - [`output`]: the object-store output: uploads and failed requests.
//! - [`reload`]: configuration reloads.
//! - [`cluster`]: cluster mode: batches stored in the shared store, claims and take-overs, the
//!   store failing and recovering.

pub mod amqp;
pub mod cluster;
pub mod engine;
pub mod ops;
pub mod output;
pub mod reload;

#[cfg(test)]
pub(crate) mod capture {
    //! Runs a closure under a JSON subscriber and returns the log lines it produced.

    use crate::config::LogFormat;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::fmt::MakeWriter;

    /// A log writer that keeps what is written (shared with the logging module's tests).
    #[derive(Clone, Default)]
    pub(crate) struct Buf(pub(crate) Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }

    /// The JSON log lines (at `debug` and above for this crate) that `f` produced.
    pub(crate) fn logs(f: impl FnOnce()) -> Vec<serde_json::Value> {
        let buf = Buf::default();
        let filter = tracing_subscriber::EnvFilter::new("receiver=debug");
        let sub = crate::logging::subscriber(LogFormat::Json, filter, buf.clone(), false);
        tracing::subscriber::with_default(sub, f);
        let out = buf.0.lock().unwrap().clone();
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The one line `f` logged.
    pub(crate) fn one(f: impl FnOnce()) -> serde_json::Value {
        let mut lines = logs(f);
        assert_eq!(lines.len(), 1, "{lines:?}");
        lines.remove(0)
    }
}

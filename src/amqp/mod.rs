//! AMQP 1.0: the daemon's only module that touches fe2o3-amqp (the other user is the test kit's
//! fake endpoint, `receiver_testkit::fake`, which the production build does not link).
//!
//! - [`client`]: connect to Aliyun's server-side subscription (TLS, aksign SASL PLAIN, one
//!   receiver link), hand deliveries to the engine, settle what the engine decides, reconnect.
//! - [`coalesce`]: write coalescing, shared with the fake (`receiver_net`).
//!
//! Wiring (one task per connection, all sharing the engine channel and the rate limiter):
//!
//! ```no_run
//! # async fn wire(cfg: receiver::config::AliyunConfig) {
//! use receiver::amqp::client::{run_connection, ConnState, ConnectLimiter};
//! use std::sync::Arc;
//! let cfg = Arc::new(cfg);
//! let (tx, mut rx) = tokio::sync::mpsc::channel(256);
//! let (_pause, paused) = tokio::sync::watch::channel(false); // true = grant no more credit
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let limiter = ConnectLimiter::aliyun(); // <= 100 connection attempts/min per consumer group
//! for i in 0..cfg.connections {
//!     let state = ConnState::new(); // health: link_attached, last_delivery_ms, counters
//!     tokio::spawn(run_connection(
//!         i, cfg.clone(), tx.clone(), paused.clone(), state, limiter.clone(), shutdown.clone(),
//!     ));
//! }
//! while let Some(inbound) = rx.recv().await {
//!     // ... persist inbound.delivery, then:
//!     inbound.settler.settle(receiver::amqp::Outcome::Accept);
//! }
//! # }
//! ```

pub mod client;
pub use receiver_net::coalesce;

use crate::message::RawDelivery;
use tokio::sync::mpsc;

/// How a delivery is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Done with it: Aliyun forgets it.
    Accept,
    /// Not taken (not persisted, shutting down): Aliyun redelivers it.
    Release,
    /// Undecodable AMQP message: Aliyun drops it.
    Reject,
}

/// Settles one delivery exactly once. Dropping it unsettled releases the delivery.
#[derive(Debug)]
pub struct Settler {
    pub(crate) tag: u64,
    pub(crate) tx: Option<mpsc::UnboundedSender<(u64, Outcome)>>,
}

impl Settler {
    /// A settler that reports to `tx` under `tag` (used by the client and by tests).
    pub fn new(tag: u64, tx: mpsc::UnboundedSender<(u64, Outcome)>) -> Self {
        Settler { tag, tx: Some(tx) }
    }

    /// Settles the delivery. If its connection is gone, nothing happens: Aliyun redelivers.
    pub fn settle(mut self, outcome: Outcome) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send((self.tag, outcome));
        }
    }
}

impl Drop for Settler {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send((self.tag, Outcome::Release));
        }
    }
}

/// One delivery on its way to the engine.
#[derive(Debug)]
pub struct Inbound {
    /// Connection index (0-based).
    pub conn: usize,
    /// The message.
    pub delivery: RawDelivery,
    /// Wall-clock receipt time, ms since the epoch.
    pub received_ms: u64,
    /// Settles it.
    pub settler: Settler,
}

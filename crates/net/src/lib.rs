//! `receiver-net`: socket plumbing that both ends of an AMQP connection use, the daemon's client
//! and the test kit's fake endpoint, so that the benchmarks measure the same I/O on both sides.
//!
//! # Layout
//!
//! - [`coalesce`]: write coalescing for a connection's byte stream (one write per burst of
//!   frames instead of one per frame).

pub mod coalesce;

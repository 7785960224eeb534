//! The receiver's integration tests, in one test binary: each module below was its own
//! `tests/*.rs` binary (each linking the whole library); the shared helpers are in [`support`].
//! Run one module or test with `cargo test --test it <filter>`, e.g. `cargo test --test it
//! daemon_e2e::` or `cargo test --test it sighup`.
//!
//! `tests/ops_hook.rs` stays a binary of its own: one of its tests sets environment variables of
//! the test process (`RECEIVER_ACCESS_KEY_SECRET` among them), which every daemon the tests here
//! spawn would inherit, and `set_var` while other threads read the environment is unsound.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod support;

mod amqp_client;
mod amqp_faults;
mod amqp_interop;
mod assembler_vectors;
mod bench_smoke;
mod camera_dry_run;
mod camera_mosquitto;
mod camera_uplink;
mod cli;
mod cluster;
mod config;
// The kill points exist only in builds with this feature.
#[cfg(feature = "failpoints")]
mod crash;
mod daemon_disk_full;
mod daemon_e2e;
mod daemon_notify;
mod daemon_signals;
mod demo;
mod firmware_replay;
mod golden_vectors;
mod ops_http;
mod ops_notify;
mod ops_retention;
mod ops_systemd;
mod s3_output;
mod sink;
mod spool_corruption;
mod spool_disk_full;
mod spool_roundtrip;
mod web;
mod web_browser;

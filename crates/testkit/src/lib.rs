//! `receiver-testkit`: what the receiver's tests, demo and benchmarks run against, and what the
//! production daemon never links (the `.deb` build has no `tools` feature, so `cargo tree` of it
//! has no rcgen and no AMQP acceptor).
//!
//! # Layout
//!
//! - [`fake`]: a fake Alibaba Cloud IoT AMQP endpoint (TLS, SASL PLAIN with aksign verification,
//!   credit, settlement, redelivery, fault injection), on fe2o3-amqp's acceptor.
//! - [`pki`]: a throw-away CA and server leaf for it and for third-party servers.
//! - [`sample`]: sample JPEG frames (a drawn scene, any size and quality).
//! - [`golden`]: the golden test vectors in `tests/vectors/`, derived from the protocol crate's
//!   encoder and checked by the C and the Rust tests alike.
//! - [`config`]: [`ConfigBuilder`](config::ConfigBuilder), a daemon configuration file for tests.
//! - [`seaweed`]: a real S3-compatible server (SeaweedFS) on loopback, for the object-store tests
//!   and the bench's s3 mode.
//! - [`redis`]: a real `redis-server` on loopback, for the cluster-mode tests and the bench's
//!   `--instances`.
//! - [`camera`]: `simulate-camera`, a device that signs in to an MQTT broker and uploads pictures
//!   the way the firmware does.

pub mod camera;
pub mod config;
pub mod fake;
pub mod golden;
pub mod pki;
pub mod redis;
pub mod sample;
pub mod seaweed;

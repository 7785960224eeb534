//! `receiver`: turns ESP32-CAM JPEG uploads, forwarded by Alibaba Cloud IoT's AMQP server-side
//! subscription, into image files, without losing an accepted chunk, without writing a corrupt
//! image as if it were good, and without letting hostile input escape its folders.
//!
//! This is the daemon, the workspace's root package. The binary (`src/main.rs`) only parses the
//! command line and calls [`cli::main`]; everything else is this library.
//!
//! # Layout
//!
//! The sans-IO core is its own crate, `receiver-protocol` (`crates/protocol`: wire formats,
//! message classification, assembler, dedup, signing, JPEG checks, the one clock and backoff);
//! its modules are re-exported here under the paths the daemon has always used ([`wire`],
//! [`message`], [`assembler`], [`dedup`], [`sign`], [`jpeg`]). This crate is the I/O around it:
//!
//! - [`engine`]: the batch loop on its own thread: classify → chunk store → assemble → output →
//!   settle. [`output`]: the two seams, [`output::Output`] (where a finished picture goes) and
//!   [`output::ChunkStore`] (where an accepted chunk is durable until then); [`sink`]: the folder
//!   output and the local quarantine; [`spool`]: the durable chunk store; [`spill`]: where the
//!   assembler's bytes beyond `[assembly] memory_limit` go.
//! - [`s3`]: the object-store [`output::Output`] (`[output] backend = "s3"`, on Apache OpenDAL).
//! - [`amqp`]: the daemon's only user of fe2o3-amqp ([`amqp::client`]: sign in, receive, settle,
//!   reconnect); [`tls`] builds the rustls client configuration.
//! - [`events`]: each outcome as one typed event that logs and counts together; [`metrics`]: the
//!   counters and gauges they update.
//! - [`daemon`]: wiring and shutdown; [`ops`]: systemd notify/watchdog, `/healthz` + `/metrics`,
//!   retention, the on-image hook; [`reload`]: SIGHUP.
//! - [`config`]: `receiver.toml` → validated [`config::Config`]; [`secret_file`], [`paths`];
//!   [`logging`]; [`cli`]: commands; [`tail`]: print the subscription.
//! - `tools` (feature `tools`, on by default, off in the production build): `demo` and `bench`,
//!   built on the test kit (`crates/testkit`: fake endpoint, test CA, sample frames, camera
//!   simulator).
//!
//! `ARCHITECTURE.md` shows the crates and the data flow; `docs/protocol.md` specifies the wire
//! formats.

pub mod amqp;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod daemon;
pub mod engine;
pub mod events;
pub mod logging;
pub mod metrics;
pub mod ops;
pub mod output;
pub mod paths;
pub mod reload;
pub mod s3;
pub mod secret_file;
pub mod sink;
pub mod spill;
pub mod spool;
pub mod tail;
pub mod tls;
#[cfg(feature = "tools")]
pub mod tools;
pub mod web;

/// The protocol crate's modules, under the paths the daemon has always used.
pub use receiver_protocol::{assembler, dedup, jpeg, message, sign, wire};

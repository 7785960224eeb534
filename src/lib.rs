//! `receiver`: turns ESP32-CAM JPEG uploads, forwarded by Alibaba Cloud IoT's AMQP server-side
//! subscription, into image files, without losing an accepted chunk, without writing a corrupt
//! image as if it were good, and without letting hostile input escape its folders.
//!
//! The binary (`src/main.rs`) only parses the command line and calls [`cli::main`]; everything
//! else is this library, so tests, the demo and the benchmarks drive the same code the daemon runs.
//!
//! # Layout
//!
//! Sans-IO core (pure functions and state machines; time is a parameter):
//!
//! - [`wire`]: the `img` value formats (v1 hex + `END`, v2 framed Base64), the camera-side
//!   encoder, Alink payloads. [`golden`] derives the golden vectors from it.
//! - [`message`]: one AMQP delivery → an [`message::ImgMessage`] or a skip reason.
//! - [`assembler`]: chunks → pictures (ordering, validation, expiry, bounds); [`dedup`]: recent
//!   message ids.
//! - [`sign`]: Aliyun's aksign/STS AMQP credentials.
//!
//! I/O at the edges:
//!
//! - [`engine`]: the batch loop on its own thread: classify → [`spool`] (durable group commit) →
//!   assemble → [`sink`] (atomic files, quarantine) → settle. [`spill`]: where the assembler's
//!   bytes beyond `[assembly] memory_limit` go ([`assembler::cold`]).
//! - [`amqp`]: the only module that uses fe2o3-amqp: [`amqp::client`] (sign in, receive, settle,
//!   reconnect) and [`amqp::fake`] (the fake Aliyun endpoint for tests, demo, benchmarks); [`tls`]
//!   builds the rustls configurations.
//! - [`daemon`]: wiring and shutdown; [`ops`]: systemd notify/watchdog, `/healthz` + `/metrics`,
//!   retention, the on-image hook; [`metrics`]: the counters and gauges; [`events`]: each
//!   outcome as one typed event that logs and counts together.
//! - [`config`]: `receiver.toml` → validated [`config::Config`]; [`logging`]; [`cli`]: commands.
//! - Tools: [`demo`] (the whole pipeline on loopback), [`camera`] (`simulate-camera` over MQTT),
//!   [`tail`] (print the subscription), [`sample`] (sample JPEG frames).
//!
//! `ARCHITECTURE.md` shows the data flow; `docs/protocol.md` specifies the wire formats.

pub mod amqp;
pub mod cli;
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
pub mod secret_file;
pub mod sink;
pub mod spill;
pub mod spool;
pub mod tail;
pub mod tls;
#[cfg(feature = "tools")]
pub mod tools;

/// The protocol crate's modules, under the paths the daemon has always used.
pub use receiver_protocol::{assembler, dedup, jpeg, message, sign, wire};

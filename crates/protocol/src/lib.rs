//! `receiver-protocol`: the pure core of the receiver. Everything here is a function or a state
//! machine over bytes and a time parameter: no clock reads in the logic, no sockets, no files, no
//! async runtime (this crate's manifest has no tokio, and it imports nothing from the daemon).
//!
//! # Layout
//!
//! - [`wire`]: the `img` value formats (v1 hex + `END`, v2 framed Base64), the camera-side
//!   encoder, Alink payloads.
//! - [`message`]: one forwarded AMQP message (topic, properties, body) → an
//!   [`message::ImgMessage`] or a skip reason.
//! - [`assembler`]: chunks → pictures (ordering, validation, expiry, bounds, redelivery grace);
//!   [`dedup`]: recently seen message ids.
//! - [`jpeg`]: the structural walk and the exact entropy-coded scan check of a JPEG.
//! - [`sign`]: Aliyun's aksign/STS AMQP credentials; [`device_sign`]: a device's MQTT sign-in;
//!   [`hmac`]: the one HMAC dispatch both use; [`secret`]: strings that are never printed.
//! - [`time`]: the one wall clock and the one retry backoff (a pure schedule; callers sleep).
//!
//! The daemon (the workspace's root package) adds the I/O around this; the test kit
//! (`crates/testkit`) builds fakes and fixtures on it.

#![warn(missing_docs)]

pub mod assembler;
pub mod dedup;
pub mod device_sign;
pub mod hmac;
pub mod jpeg;
pub mod message;
pub mod secret;
pub mod sign;
pub mod time;
pub mod wire;

pub use hmac::SignMethod;
pub use secret::{Secret, SecretSource};
pub use sign::AuthMode;

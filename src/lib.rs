//! `receiver`: turns ESP32-CAM JPEG uploads, forwarded by Alibaba Cloud IoT's AMQP server-side
//! subscription, into image files.
pub mod amqp;
pub mod assembler;
pub mod camera;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod dedup;
pub mod demo;
pub mod engine;
pub mod golden;
pub mod jpeg;
pub mod logging;
pub mod message;
pub mod metrics;
pub mod ops;
pub mod sample;
pub mod sign;
pub mod sink;
pub mod spool;
pub mod tail;
pub mod tls;
pub mod wire;

//! Helpers shared by the test modules.
//!
//! - [`harness`]: the real daemon in process (`daemon::run_with`) against the fake endpoint,
//!   upload generators and on-disk checks.
//! - [`daemon`]: the real binary as a child process, with a config file in a temp folder.
//! - [`amqp`]: the AMQP client against the fake, a settling "engine", log capture.
//! - [`spool`]: spool fixtures.
//! - [`poll`]: wait until a condition holds, with a deadline.
//! - [`http`]: GET over raw TCP, free ports.
//! - [`redis_server`]: a real `redis-server` for cluster mode.
//!
//! Configuration files are built with `receiver_testkit::config::ConfigBuilder`.

pub mod amqp;
pub mod daemon;
pub mod harness;
pub mod http;
pub mod poll;
pub mod redis_server;
pub mod spool;

//! Helpers shared by the test modules.

pub mod amqp;
pub mod harness;
pub mod spool;

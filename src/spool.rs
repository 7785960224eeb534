//! The durable spool (skeleton).

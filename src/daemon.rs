//! Wires the daemon together: N AMQP connections -> one engine -> files (skeleton).

use crate::config::Config;
use tokio_util::sync::CancellationToken;

/// Why the daemon stopped with a failure.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Placeholder until the daemon lands.
    #[error("not implemented yet")]
    NotImplemented,
}

/// Runs the daemon until `shutdown` is cancelled (SIGTERM/SIGINT) or a fatal error.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), DaemonError> {
    let _ = (config, shutdown);
    Err(DaemonError::NotImplemented)
}

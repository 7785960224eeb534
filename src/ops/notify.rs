//! The systemd notification protocol (`sd_notify(3)`), hand-written: one datagram per message to
//! the `AF_UNIX` socket named by `$NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace).
//!
//! The protocol is a dozen lines, so no crate: this also lets tests give the socket path directly
//! instead of mutating the process environment.
//!
//! - [`Notifier::ready`] (`READY=1`): the daemon sends it once the first receiver link is attached
//!   (systemd then considers the start finished and starts the watchdog clock).
//! - [`Notifier::stopping`] (`STOPPING=1`): at the start of shutdown.
//! - [`Notifier::status`] (`STATUS=...`): shown by `systemctl status`.
//! - [`Notifier::spawn_watchdog`] (`WATCHDOG=1`): every half `WatchdogSec`, only while the health
//!   check passes (see [`super::health::Liveness`]). Withholding pings makes systemd kill and
//!   restart the service after `WatchdogSec`.
//!
//! Outside systemd (`NOTIFY_SOCKET` unset) every call is a no-op that returns `Ok(false)`.

use crate::metrics::Metrics;
use std::ffi::OsString;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Why a notification could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The message itself is malformed (it must be non-empty `KEY=value` lines).
    #[error("invalid notification {0:?}")]
    InvalidMessage(String),
    /// The socket address could not be built (too long, say).
    #[error("cannot use notify socket {addr}: {source}")]
    Address {
        /// `$NOTIFY_SOCKET`.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Sending failed (systemd gone, permissions).
    #[error("cannot send to notify socket {addr}: {source}")]
    Send {
        /// `$NOTIFY_SOCKET`.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// A file-system socket.
    Path(PathBuf),
    /// An abstract-namespace socket (`@name` in `NOTIFY_SOCKET`), without the `@`.
    Abstract(Vec<u8>),
}

/// Sends notifications to systemd (the service manager). Cheap to clone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Notifier {
    target: Option<Target>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// From the environment systemd sets: `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`
    /// (the watchdog is enabled only when `WATCHDOG_PID` is unset or is this process).
    pub fn from_env() -> Notifier {
        Notifier::from_vars(
            std::env::var_os("NOTIFY_SOCKET"),
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
            std::process::id(),
        )
    }

    /// Like [`Notifier::from_env`], with the variables given (tests, or a supervisor that passes
    /// them differently). An unsupported socket (not a path nor `@name`, e.g. `vsock:`) disables
    /// notifications with a warning.
    pub fn from_vars(
        notify_socket: Option<OsString>,
        watchdog_usec: Option<&str>,
        watchdog_pid: Option<&str>,
        my_pid: u32,
    ) -> Notifier {
        let target = notify_socket.and_then(|s| {
            let bytes = s.as_bytes();
            match bytes.first() {
                Some(b'/') => Some(Target::Path(PathBuf::from(s))),
                Some(b'@') => Some(Target::Abstract(bytes[1..].to_vec())),
                _ => {
                    tracing::warn!(notify_socket = %s.to_string_lossy(),
                        "unsupported NOTIFY_SOCKET; systemd notifications disabled");
                    None
                }
            }
        });
        let pid_ok = watchdog_pid.is_none_or(|p| p.trim().parse::<u32>().ok() == Some(my_pid));
        let watchdog = watchdog_usec
            .and_then(|u| u.trim().parse::<u64>().ok())
            .filter(|u| *u > 0 && pid_ok)
            .map(Duration::from_micros);
        Notifier { target, watchdog }
    }

    /// A notifier sending to the socket at `path` (no watchdog unless `watchdog` is set).
    pub fn with_socket(path: impl Into<PathBuf>, watchdog: Option<Duration>) -> Notifier {
        Notifier {
            target: Some(Target::Path(path.into())),
            watchdog,
        }
    }

    /// A notifier that sends nothing.
    pub fn disabled() -> Notifier {
        Notifier::default()
    }

    /// Whether there is a socket to send to.
    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// `WatchdogSec` as told by systemd, if the watchdog is enabled for this process.
    pub fn watchdog_timeout(&self) -> Option<Duration> {
        self.watchdog
    }

    /// `READY=1`: start-up finished.
    pub fn ready(&self) -> Result<bool, NotifyError> {
        self.notify("READY=1")
    }

    /// `STOPPING=1`: shutdown started.
    pub fn stopping(&self) -> Result<bool, NotifyError> {
        self.notify("STOPPING=1")
    }

    /// `STATUS=<status>` (one line; line breaks are replaced by spaces).
    pub fn status(&self, status: &str) -> Result<bool, NotifyError> {
        self.notify(&format!("STATUS={}", status.replace(['\n', '\r'], " ")))
    }

    /// `WATCHDOG=1`: one keep-alive ping.
    pub fn watchdog_ping(&self) -> Result<bool, NotifyError> {
        self.notify("WATCHDOG=1")
    }

    /// Sends `message` (newline-separated `KEY=value` assignments) as one datagram. `Ok(false)`
    /// when notifications are disabled.
    pub fn notify(&self, message: &str) -> Result<bool, NotifyError> {
        let Some(target) = &self.target else {
            return Ok(false);
        };
        if message.is_empty() || message.lines().any(|l| !l.contains('=')) {
            return Err(NotifyError::InvalidMessage(message.to_string()));
        }
        let (addr, shown) = match target {
            Target::Path(p) => (SocketAddr::from_pathname(p), p.display().to_string()),
            Target::Abstract(name) => (
                SocketAddr::from_abstract_name(name),
                format!("@{}", String::from_utf8_lossy(name)),
            ),
        };
        let addr = addr.map_err(|source| NotifyError::Address {
            addr: shown.clone(),
            source,
        })?;
        let send = |source| NotifyError::Send {
            addr: shown.clone(),
            source,
        };
        let socket = UnixDatagram::unbound().map_err(send)?;
        socket
            .send_to_addr(message.as_bytes(), &addr)
            .map_err(send)?;
        Ok(true)
    }

    /// Starts the watchdog loop when systemd enabled the watchdog (`None` otherwise): every half
    /// `WatchdogSec` it calls `health` and sends `WATCHDOG=1` only if it returns `true`. It also
    /// mirrors the result in [`Metrics::live`] and stops when `shutdown` is cancelled.
    pub fn spawn_watchdog<H>(
        &self,
        metrics: Arc<Metrics>,
        health: H,
        shutdown: CancellationToken,
    ) -> Option<JoinHandle<()>>
    where
        H: FnMut() -> bool + Send + 'static,
    {
        let timeout = self.watchdog?;
        let period = (timeout / 2).max(Duration::from_millis(1));
        let notifier = self.clone();
        Some(tokio::spawn(watchdog_loop(
            notifier, period, metrics, health, shutdown,
        )))
    }
}

async fn watchdog_loop<H: FnMut() -> bool>(
    notifier: Notifier,
    period: Duration,
    metrics: Arc<Metrics>,
    mut health: H,
    shutdown: CancellationToken,
) {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut send_failed = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticks.tick() => {}
        }
        let live = health();
        metrics.live.store(live, Relaxed);
        if !live {
            continue;
        }
        match notifier.watchdog_ping() {
            Ok(_) => send_failed = false,
            Err(e) if !send_failed => {
                send_failed = true;
                tracing::warn!(error = %e, "cannot send the watchdog ping");
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_environment() {
        let n = Notifier::from_vars(
            Some("/run/systemd/notify".into()),
            Some("30000000"),
            None,
            7,
        );
        assert_eq!(n.target, Some(Target::Path("/run/systemd/notify".into())));
        assert_eq!(n.watchdog_timeout(), Some(Duration::from_secs(30)));

        let n = Notifier::from_vars(Some("@abc".into()), Some("1000"), Some("7"), 7);
        assert_eq!(n.target, Some(Target::Abstract(b"abc".to_vec())));
        assert_eq!(n.watchdog_timeout(), Some(Duration::from_millis(1)));

        // The watchdog is for another process (we were forked by the main process).
        let n = Notifier::from_vars(Some("/x".into()), Some("1000"), Some("8"), 7);
        assert_eq!(n.watchdog_timeout(), None);

        let n = Notifier::from_vars(Some("vsock:2:1234".into()), None, None, 7);
        assert!(!n.is_enabled());
        let n = Notifier::from_vars(None, Some("0"), None, 7);
        assert!(!n.is_enabled());
        assert_eq!(n.watchdog_timeout(), None);
    }

    #[test]
    fn disabled_is_a_no_op() {
        let n = Notifier::disabled();
        assert!(!n.ready().unwrap());
        assert!(!n.stopping().unwrap());
    }

    #[test]
    fn rejects_malformed_messages() {
        let n = Notifier::with_socket("/nonexistent/socket", None);
        assert!(matches!(
            n.notify("READY"),
            Err(NotifyError::InvalidMessage(_))
        ));
        assert!(matches!(n.ready(), Err(NotifyError::Send { .. })));
    }
}

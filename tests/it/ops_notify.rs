//! sd_notify: the messages the daemon sends to a `NOTIFY_SOCKET` (a unix datagram socket bound in
//! a temp dir and handed to the notifier explicitly, so the process environment is not touched).

use receiver::metrics::Metrics;
use receiver::ops::{notify::Notifier, Ops, OpsConfig};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// A fake systemd notify socket.
struct Systemd {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    socket: UnixDatagram,
}

impl Systemd {
    fn new() -> Systemd {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket.set_nonblocking(true).unwrap();
        Systemd {
            _dir: dir,
            path,
            socket,
        }
    }

    /// Every message received within `within` (stops early once `until` is seen).
    async fn collect(&self, within: Duration, until: Option<&str>) -> Vec<String> {
        let deadline = Instant::now() + within;
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            match self.socket.recv(&mut buf) {
                Ok(n) => {
                    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                    let done = until.is_some_and(|u| msg == u);
                    out.push(msg);
                    if done {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    tokio::time::sleep(Duration::from_millis(5)).await
                }
                Err(e) => panic!("recv: {e}"),
            }
        }
        out
    }

    async fn drain(&self) -> Vec<String> {
        self.collect(Duration::from_millis(20), None).await
    }
}

#[tokio::test]
async fn ready_status_stopping() {
    let sd = Systemd::new();
    let n = Notifier::with_socket(&sd.path, None);
    assert!(n.is_enabled());
    assert!(n.ready().unwrap());
    assert!(n.status("receiving\n2 links").unwrap());
    assert!(n.stopping().unwrap());
    assert_eq!(
        sd.drain().await,
        vec!["READY=1", "STATUS=receiving 2 links", "STOPPING=1"]
    );
}

#[tokio::test]
async fn abstract_socket_from_env_vars() {
    let name = format!("receiver-test-{}-{}", std::process::id(), line!());
    let socket = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(&name).unwrap()).unwrap();
    let n = Notifier::from_vars(
        Some(format!("@{name}").into()),
        Some("4000000"),
        Some(&std::process::id().to_string()),
        std::process::id(),
    );
    assert_eq!(n.watchdog_timeout(), Some(Duration::from_secs(4)));
    n.ready().unwrap();
    let mut buf = [0u8; 64];
    let len = socket.recv(&mut buf).unwrap();
    assert_eq!(&buf[..len], b"READY=1");
}

#[tokio::test]
async fn watchdog_pings_only_while_healthy() {
    let sd = Systemd::new();
    // WatchdogSec=200ms: a ping every 100 ms.
    let n = Notifier::with_socket(&sd.path, Some(Duration::from_millis(200)));
    let healthy = Arc::new(AtomicBool::new(true));
    let metrics = Arc::new(Metrics::default());
    let shutdown = CancellationToken::new();
    let h = healthy.clone();
    let task = n
        .spawn_watchdog(metrics.clone(), move || h.load(Relaxed), shutdown.clone())
        .expect("watchdog enabled");

    let got = sd.collect(Duration::from_secs(2), Some("WATCHDOG=1")).await;
    assert_eq!(got.last().map(String::as_str), Some("WATCHDOG=1"));
    assert!(metrics.live.load(Relaxed));

    healthy.store(false, Relaxed);
    tokio::time::sleep(Duration::from_millis(150)).await;
    sd.drain().await;
    // Three periods without a single ping.
    let got = sd.collect(Duration::from_millis(350), None).await;
    assert!(got.is_empty(), "pinged while unhealthy: {got:?}");
    assert!(!metrics.live.load(Relaxed));

    healthy.store(true, Relaxed);
    let got = sd.collect(Duration::from_secs(2), Some("WATCHDOG=1")).await;
    assert_eq!(got.last().map(String::as_str), Some("WATCHDOG=1"));

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .expect("watchdog loop stops on shutdown")
        .unwrap();
}

#[tokio::test]
async fn no_watchdog_without_watchdog_usec() {
    let sd = Systemd::new();
    let n = Notifier::with_socket(&sd.path, None);
    let task = n.spawn_watchdog(
        Arc::new(Metrics::default()),
        || true,
        CancellationToken::new(),
    );
    assert!(task.is_none());
}

/// The daemon's lifecycle as wired by `Ops::start`: STATUS while connecting, READY=1 once the
/// first link is attached, WATCHDOG=1 while live, STOPPING=1 on shutdown.
#[tokio::test]
async fn ops_lifecycle_messages() {
    let sd = Systemd::new();
    let out = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::default());
    let shutdown = CancellationToken::new();
    let notifier = Notifier::with_socket(&sd.path, Some(Duration::from_millis(200)));
    let ops = Ops::start(
        &OpsConfig::default(),
        out.path(),
        metrics.clone(),
        notifier,
        shutdown.clone(),
    )
    .await
    .unwrap();

    // No link yet: no READY.
    let got = sd.collect(Duration::from_millis(300), None).await;
    assert!(
        got.iter().any(|m| m.starts_with("STATUS=starting")),
        "{got:?}"
    );
    assert!(!got.iter().any(|m| m == "READY=1"), "{got:?}");
    // Still live (within link_grace), so the watchdog is fed.
    assert!(got.iter().any(|m| m == "WATCHDOG=1"), "{got:?}");

    metrics.links_attached.store(1, Relaxed);
    let got = sd.collect(Duration::from_secs(2), Some("READY=1")).await;
    assert_eq!(got.last().map(String::as_str), Some("READY=1"));
    assert_ne!(metrics.ready_ms.load(Relaxed), 0);

    shutdown.cancel();
    let got = sd.collect(Duration::from_secs(2), Some("STOPPING=1")).await;
    assert_eq!(got.last().map(String::as_str), Some("STOPPING=1"));
    tokio::time::timeout(Duration::from_secs(5), ops.stop(Duration::from_secs(2)))
        .await
        .expect("ops stop");
}

#[tokio::test]
async fn stopping_is_sent_even_if_never_ready() {
    let sd = Systemd::new();
    let out = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let ops = Ops::start(
        &OpsConfig::default(),
        out.path(),
        Arc::new(Metrics::default()),
        Notifier::with_socket(&sd.path, None),
        shutdown.clone(),
    )
    .await
    .unwrap();
    shutdown.cancel();
    let got = sd.collect(Duration::from_secs(2), Some("STOPPING=1")).await;
    assert!(!got.iter().any(|m| m == "READY=1"), "{got:?}");
    assert_eq!(got.last().map(String::as_str), Some("STOPPING=1"));
    ops.stop(Duration::from_secs(1)).await;
}

//! The optional health and metrics listener (`[metrics] listen`): `GET /healthz` and
//! `GET /metrics`.
//!
//! A minimal HTTP/1.1 responder on tokio rather than hyper/axum: two read-only endpoints with no
//! request body, one response per connection (`Connection: close`), which Prometheus and every
//! probe handle. That keeps ~40 crates out of the build for what is a few dozen lines. Defences:
//! the request head is capped at 8 KiB and must arrive within 5 s, at most 64 connections are
//! served at once (more are closed immediately), and nothing from the request is echoed back.
//!
//! The listener is meant for loopback or a trusted network: it has no authentication (the data
//! is counters and health only; no device names or secrets are exposed).

use super::health::{readiness, HealthConfig, Snapshot};
use crate::metrics::Metrics;
use receiver_protocol::time::{Backoff, Jitter};
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Longest request head accepted.
const MAX_HEAD: usize = 8 * 1024;
/// Time allowed to receive the request head and to send the response.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for the client to close after the response.
const LINGER: Duration = Duration::from_secs(1);
/// Most unread input discarded after the response.
const MAX_LINGER_BYTES: usize = 64 * 1024;
/// Connections served at once.
const MAX_CONNECTIONS: usize = 64;

/// `[metrics]`: the health and metrics listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct MetricsConfig {
    /// Address to listen on; `None` (the default) = no listener.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
}

/// `[metrics]` as written in TOML: `listen = "127.0.0.1:9898"`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetricsConfig {
    /// `ip:port`; unset = no listener.
    pub listen: super::Field<String>,
}

impl RawMetricsConfig {
    /// Validates into a [`MetricsConfig`].
    pub fn validate(&self) -> Result<MetricsConfig, super::OpsConfigError> {
        let listen = match &self.listen {
            None => None,
            Some(s) => Some(s.get_ref().trim().parse::<SocketAddr>().map_err(|e| {
                super::OpsConfigError::invalid(
                    "metrics.listen",
                    Some(s),
                    format!("{:?} is not an ip:port address ({e})", s.get_ref()),
                )
            })?),
        };
        Ok(MetricsConfig { listen })
    }
}

/// Why the listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Binding the address failed (in use, permission).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

/// Binds `addr` for [`serve`].
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, HttpError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| HttpError::Bind { addr, source })
}

/// Serves `/healthz` and `/metrics` on `listener` with the default [`HealthConfig`] until
/// `shutdown` is cancelled.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, shutdown: CancellationToken) {
    serve_with(listener, metrics, HealthConfig::default(), shutdown).await
}

/// Like [`serve`], judging `/healthz` with `health`.
pub async fn serve_with(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    health: HealthConfig,
    shutdown: CancellationToken,
) {
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let tracker = TaskTracker::new();
    // EMFILE and friends: 200 ms doubling to 6.4 s, instead of spinning.
    let mut accept_backoff = Backoff::new(Duration::from_millis(200), Duration::from_millis(6400))
        .with_jitter(Jitter::None);
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => {
                accept_backoff.reset();
                a
            }
            Err(e) => {
                let delay = accept_backoff.next_delay(0);
                tracing::warn!(error = %e, delay_ms = delay.as_millis() as u64,
                    "metrics listener cannot accept a connection");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(delay) => continue,
                }
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "metrics listener busy; connection closed");
            continue;
        };
        let metrics = metrics.clone();
        tracker.spawn(async move {
            if let Err(e) = handle(stream, &metrics, &health).await {
                tracing::debug!(%peer, error = %e, "metrics connection ended with an error");
            }
            drop(permit);
        });
    }
    tracker.close();
    // Connections are short and bounded by IO_TIMEOUT; don't hold shutdown up longer than that.
    let _ = tokio::time::timeout(IO_TIMEOUT, tracker.wait()).await;
}

/// A parsed request line.
#[derive(Debug, PartialEq, Eq)]
struct Request<'a> {
    method: &'a str,
    path: &'a str,
}

/// Parses the request line of `head` (`METHOD SP target SP HTTP/1.x`).
fn parse_request(head: &[u8]) -> Option<Request<'_>> {
    let end = head.iter().position(|b| *b == b'\r' || *b == b'\n')?;
    let line = std::str::from_utf8(&head[..end]).ok()?;
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !version.starts_with("HTTP/1.") || method.is_empty() {
        return None;
    }
    let path = target.split(['?', '#']).next().unwrap_or(target);
    Some(Request { method, path })
}

/// A response: status line, content type, body.
struct Response {
    status: &'static str,
    content_type: &'static str,
    body: String,
    allow: bool,
}

fn text(status: &'static str, body: &str) -> Response {
    Response {
        status,
        content_type: "text/plain; charset=utf-8",
        body: format!("{body}\n"),
        allow: false,
    }
}

/// Routes one request (pure apart from reading the metrics).
fn route(req: Option<Request<'_>>, metrics: &Metrics, health: &HealthConfig) -> Response {
    let Some(req) = req else {
        return text("400 Bad Request", "bad request");
    };
    if req.method != "GET" && req.method != "HEAD" {
        let mut r = text("405 Method Not Allowed", "only GET and HEAD");
        r.allow = true;
        return r;
    }
    match req.path {
        "/metrics" => Response {
            status: "200 OK",
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: metrics.render_prometheus(),
            allow: false,
        },
        "/healthz" => {
            let snapshot = Snapshot::read(metrics, receiver_protocol::time::now_ms());
            let problems = readiness(&snapshot, health);
            let body = serde_json::json!({
                "status": if problems.is_empty() { "ok" } else { "unhealthy" },
                "problems": problems,
                "ready": snapshot.ready,
                "links_attached": snapshot.links_attached,
                "last_delivery_age_seconds": snapshot.last_delivery_age_seconds,
                "engine_busy_seconds": snapshot.engine_busy_seconds,
                "spool": snapshot.spool,
                "open_assemblies": snapshot.open_assemblies,
                "oldest_assembly_age_seconds": snapshot.oldest_assembly_age_seconds,
            });
            Response {
                status: if problems.is_empty() {
                    "200 OK"
                } else {
                    "503 Service Unavailable"
                },
                content_type: "application/json",
                body: format!("{body}\n"),
                allow: false,
            }
        }
        "/" => text(
            "200 OK",
            "receiver: GET /healthz (JSON health), GET /metrics (Prometheus)",
        ),
        _ => text("404 Not Found", "not found"),
    }
}

async fn handle(
    mut stream: TcpStream,
    metrics: &Metrics,
    health: &HealthConfig,
) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let complete = tokio::time::timeout(IO_TIMEOUT, async {
        let mut buf = [0u8; 1024];
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Ok::<bool, std::io::Error>(false);
            }
            head.extend_from_slice(&buf[..n]);
            if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
                return Ok(true);
            }
            if head.len() > MAX_HEAD {
                return Ok(false);
            }
        }
    })
    .await;
    let response = match complete {
        Err(_) => text("408 Request Timeout", "request timeout"),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(false)) if head.is_empty() => return Ok(()),
        Ok(Ok(false)) if head.len() > MAX_HEAD => text(
            "431 Request Header Fields Too Large",
            "request head too large",
        ),
        Ok(Ok(_)) => route(parse_request(&head), metrics, health),
    };
    let is_head = parse_request(&head).is_some_and(|r| r.method == "HEAD");
    let mut out = format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n",
        response.status,
        response.content_type,
        response.body.len()
    );
    if response.allow {
        out.push_str("Allow: GET, HEAD\r\n");
    }
    out.push_str("\r\n");
    if !is_head {
        out.push_str(&response.body);
    }
    tokio::time::timeout(IO_TIMEOUT, async {
        stream.write_all(out.as_bytes()).await?;
        stream.shutdown().await
    })
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "response write timed out"))??;
    // Lingering close: closing with unread input would send a RST that can destroy the response
    // before the client reads it (e.g. after 431). Discard what is left, briefly and boundedly.
    let _ = tokio::time::timeout(LINGER, async {
        let mut buf = [0u8; 4096];
        let mut left = MAX_LINGER_BYTES;
        while left > 0 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_request_lines() {
        assert_eq!(
            parse_request(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some(Request {
                method: "GET",
                path: "/metrics"
            })
        );
        assert_eq!(
            parse_request(b"HEAD /healthz?verbose=1 HTTP/1.0\r\n\r\n").map(|r| r.path),
            Some("/healthz")
        );
        assert_eq!(parse_request(b"GET /metrics\r\n\r\n"), None);
        assert_eq!(parse_request(b"GET /metrics SPDY/3\r\n\r\n"), None);
        assert_eq!(parse_request(b"\xff\xfe /x HTTP/1.1\r\n\r\n"), None);
        assert_eq!(parse_request(b"GET /a HTTP/1.1"), None);
    }

    #[test]
    fn routes() {
        let m = Metrics::default();
        let h = HealthConfig::default();
        let get = |path| Request {
            method: "GET",
            path,
        };
        assert!(route(Some(get("/metrics")), &m, &h)
            .status
            .starts_with("200"));
        assert!(route(Some(get("/healthz")), &m, &h)
            .status
            .starts_with("503"));
        assert!(route(Some(get("/nope")), &m, &h).status.starts_with("404"));
        assert!(route(None, &m, &h).status.starts_with("400"));
        let post = Request {
            method: "POST",
            path: "/metrics",
        };
        let r = route(Some(post), &m, &h);
        assert!(r.status.starts_with("405") && r.allow);
    }

    #[test]
    fn raw_config_validates() {
        let raw: RawMetricsConfig = toml::from_str("listen = \"127.0.0.1:9898\"").unwrap();
        assert_eq!(
            raw.validate().unwrap().listen,
            Some("127.0.0.1:9898".parse().unwrap())
        );
        assert_eq!(RawMetricsConfig::default().validate().unwrap().listen, None);
        let bad: RawMetricsConfig = toml::from_str("listen = \"localhost\"").unwrap();
        assert!(bad.validate().is_err());
    }
}

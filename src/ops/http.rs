//! Every HTTP endpoint the daemon serves: `GET /healthz` and `GET /metrics` on `[metrics] listen`,
//! and the gallery ([`crate::web`]) on `[web] listen` (the same listener when both are equal).
//!
//! axum routes on hyper's HTTP/1 server, driven by our own accept loop, because the defences
//! are in the loop:
//!
//! - **Overload is answered, never dropped.** At most [`connection_cap`] connections are served
//!   at once (8192, less when the process's file-descriptor limit is lower). A connection beyond
//!   that gets a fixed `503 Service Unavailable` with `Retry-After: 1` and is closed; only when
//!   hundreds of such answers are themselves in flight is a connection closed without one.
//! - **Slow clients cannot hold a slot.** The request head (at most 8 KiB, else `431`) must arrive
//!   within 5 s of the connection or of the previous response (hyper's `header_read_timeout`),
//!   so idle and slowloris connections are closed after 5 s whatever they send.
//! - **Read-only.** Methods other than GET and HEAD get `405` with `Allow: GET, HEAD`; nothing
//!   from the request is echoed into a response header.
//!
//! The metrics-only listener closes each connection after its response (`Connection: close`,
//! what Prometheus and probes expect); a listener that serves the gallery keeps connections
//! alive (a page loads dozens of thumbnails).
//!
//! `/healthz` and `/metrics` have no authentication (counters and health only; no device names
//! or secrets): put the listener on loopback or a trusted network. The gallery has its own
//! password ([`crate::web`]).

use super::health::{readiness, HealthConfig, Snapshot};
use crate::metrics::Metrics;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use receiver_protocol::time::{Backoff, Jitter};
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Longest request head accepted (hyper's read buffer; more is `431`).
const MAX_HEAD: usize = 8 * 1024;
/// Time allowed to receive a request head, counted from the connection or the last response.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed for a refusal to be written, and for connections to finish at shutdown.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for the client to close after the last response.
const LINGER: Duration = Duration::from_secs(1);
/// Most unread input discarded after the last response.
const MAX_LINGER_BYTES: usize = 64 * 1024;
/// Most connections served at once, whatever the file-descriptor limit.
const MAX_CONNECTIONS: usize = 8192;
/// File descriptors left for the rest of the daemon (spool, AMQP, image writes, hook).
const FD_RESERVE: u64 = 256;
/// Most `503` refusals being written at once; beyond, a connection is closed unanswered.
const MAX_REFUSING: usize = 512;

/// What a connection over the cap is told, byte for byte.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 32\r\nRetry-After: 1\r\nCache-Control: no-store\r\nConnection: close\r\n\r\ntoo many connections; try again\n";

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

/// Binds `addr` for [`serve`] or [`serve_router`].
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
    let app = ops_routes(metrics.clone(), health).route("/", get(index));
    serve_router(listener, app, ServeOptions::metrics_only(metrics), shutdown).await
}

/// How [`serve_router`] treats connections.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Serve more than one request per connection.
    pub keep_alive: bool,
    /// Connections served at once; more are answered `503`.
    pub max_connections: usize,
    /// Where refusals are counted (`receiver_http_refused_total`).
    pub metrics: Option<Arc<Metrics>>,
}

impl ServeOptions {
    /// `/healthz` and `/metrics` alone: one request per connection, [`connection_cap`].
    pub fn metrics_only(metrics: Arc<Metrics>) -> ServeOptions {
        ServeOptions {
            keep_alive: false,
            max_connections: connection_cap(),
            metrics: Some(metrics),
        }
    }

    /// A listener with the gallery: keep-alive, [`connection_cap`].
    pub fn gallery(metrics: Arc<Metrics>) -> ServeOptions {
        ServeOptions {
            keep_alive: true,
            max_connections: connection_cap(),
            metrics: Some(metrics),
        }
    }
}

/// The `/healthz` and `/metrics` routes, to serve alone or merged with the gallery's.
pub fn ops_routes(metrics: Arc<Metrics>, health: HealthConfig) -> Router {
    let m = metrics.clone();
    Router::new()
        .route("/metrics", get(move || metrics_page(m.clone())))
        .route("/healthz", get(move || healthz(metrics.clone(), health)))
}

/// How many connections [`serve_router`] serves at once: [`MAX_CONNECTIONS`], or fewer when the
/// soft `RLIMIT_NOFILE` (raised to the hard limit first, see [`raise_fd_limit`]) leaves less room.
pub fn connection_cap() -> usize {
    let soft = raise_fd_limit();
    let room = soft.saturating_sub(FD_RESERVE).max(16);
    usize::try_from(room).map_or(MAX_CONNECTIONS, |r| r.min(MAX_CONNECTIONS))
}

/// Raises the process's soft file-descriptor limit to its hard limit (systemd's default soft
/// limit is 1024, its hard limit far higher) and returns the soft limit now in force.
pub fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    lim.rlim_cur
}

/// Serves `app` on `listener` until `shutdown` is cancelled, with the defences of this module.
pub async fn serve_router(
    listener: TcpListener,
    app: Router,
    options: ServeOptions,
    shutdown: CancellationToken,
) {
    let app = app.layer(axum::middleware::from_fn(read_only));
    let ServeOptions {
        keep_alive,
        max_connections: cap,
        metrics,
    } = options;
    let refused = |peer, answered| {
        if let Some(m) = &metrics {
            crate::events::ops::HttpRefused {
                peer,
                cap,
                answered,
            }
            .emit(m);
        }
    };
    let limit = Arc::new(Semaphore::new(cap));
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
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
                    "HTTP listener cannot accept a connection");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(delay) => continue,
                }
            }
        };
        match limit.clone().try_acquire_owned() {
            Ok(permit) => {
                tracker.spawn(connection(
                    stream,
                    app.clone(),
                    keep_alive,
                    shutdown.clone(),
                    permit,
                ));
            }
            Err(_) => match refusing.clone().try_acquire_owned() {
                Ok(permit) => {
                    refused(peer, true);
                    tracker.spawn(refuse(stream, permit));
                }
                Err(_) => refused(peer, false),
            },
        }
    }
    tracker.close();
    // Connections are told to finish; don't hold shutdown up longer than IO_TIMEOUT.
    let _ = tokio::time::timeout(IO_TIMEOUT + LINGER, tracker.wait()).await;
}

/// Serves one connection with hyper, then closes it gently.
async fn connection(
    mut stream: TcpStream,
    app: Router,
    keep_alive: bool,
    shutdown: CancellationToken,
    _permit: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    {
        let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
            tower::ServiceExt::oneshot(app.clone(), req.map(Body::new))
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .max_buf_size(MAX_HEAD)
            .title_case_headers(true)
            .keep_alive(keep_alive);
        let conn = builder.serve_connection(TokioIo::new(&mut stream), service);
        tokio::pin!(conn);
        let result = tokio::select! {
            r = conn.as_mut() => r,
            _ = shutdown.cancelled() => {
                conn.as_mut().graceful_shutdown();
                tokio::time::timeout(IO_TIMEOUT, conn.as_mut())
                    .await
                    .unwrap_or(Ok(()))
            }
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "HTTP connection ended with an error");
        }
    }
    linger(&mut stream).await;
}

/// Answers a connection over the cap with [`REFUSAL`] and closes it.
async fn refuse(mut stream: TcpStream, _permit: OwnedSemaphorePermit) {
    let sent = tokio::time::timeout(IO_TIMEOUT, async {
        stream.write_all(REFUSAL).await?;
        stream.shutdown().await
    })
    .await;
    if matches!(sent, Ok(Ok(()))) {
        linger(&mut stream).await;
    }
}

/// Lingering close: closing with unread input sends a RST that can destroy the response before
/// the client reads it (e.g. after 431). Discards what is left, briefly and boundedly.
async fn linger(stream: &mut TcpStream) {
    let _ = stream.shutdown().await;
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
}

/// GET and HEAD only: anything else is `405` before any route sees it.
async fn read_only(req: Request, next: axum::middleware::Next) -> Response {
    if req.method() == Method::GET || req.method() == Method::HEAD {
        return next.run(req).await;
    }
    let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD");
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    r
}

/// A plain-text response that is not cached.
pub(crate) fn text(status: StatusCode, body: &str) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        format!("{body}\n"),
    )
        .into_response()
}

async fn index() -> Response {
    text(
        StatusCode::OK,
        "receiver: GET /healthz (JSON health), GET /metrics (Prometheus)",
    )
}

async fn metrics_page(metrics: Arc<Metrics>) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        metrics.render_prometheus(),
    )
        .into_response()
}

async fn healthz(metrics: Arc<Metrics>, health: HealthConfig) -> Response {
    let snapshot = Snapshot::read(&metrics, receiver_protocol::time::now_ms());
    let problems = readiness(&snapshot, &health);
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
    let status = if problems.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        format!("{body}\n"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    async fn call(app: Router, method: Method, path: &str) -> Response {
        let app = app.layer(axum::middleware::from_fn(read_only));
        let req = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .unwrap();
        app.oneshot(req).await.unwrap()
    }

    #[tokio::test]
    async fn routes() {
        let m = Arc::new(Metrics::default());
        let app = || ops_routes(m.clone(), HealthConfig::default());
        assert_eq!(
            call(app(), Method::GET, "/metrics").await.status(),
            StatusCode::OK
        );
        assert_eq!(
            call(app(), Method::GET, "/healthz").await.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            call(app(), Method::GET, "/nope").await.status(),
            StatusCode::NOT_FOUND
        );
        let r = call(app(), Method::POST, "/metrics").await;
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()[header::ALLOW], "GET, HEAD");
    }

    #[test]
    fn cap_fits_the_fd_limit() {
        let cap = connection_cap();
        assert!((16..=MAX_CONNECTIONS).contains(&cap), "{cap}");
    }

    #[test]
    fn refusal_is_well_formed() {
        let text = std::str::from_utf8(REFUSAL).unwrap();
        let (_, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(text.contains(&format!("Content-Length: {}\r\n", body.len())));
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

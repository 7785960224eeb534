//! The `/healthz` + `/metrics` listener, scraped over real TCP on 127.0.0.1:0 with a raw client.

use crate::support::http::{get, raw};
use crate::support::poll;
use receiver::metrics::{Kind, Metrics};
use receiver::ops::http::{ops_routes, serve, serve_router, serve_with, ServeOptions};
use receiver::ops::{notify::Notifier, HealthConfig, MetricsConfig, Ops, OpsConfig};
use receiver_protocol::time::now_ms;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

async fn start(
    metrics: Arc<Metrics>,
) -> (SocketAddr, CancellationToken, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(serve(listener, metrics, shutdown.clone()));
    (addr, shutdown, task)
}

#[tokio::test]
async fn metrics_are_scraped() {
    let metrics = Arc::new(Metrics::default());
    metrics.message(Kind::V2Chunk);
    metrics.message(Kind::V2Chunk);
    metrics.images_v2.fetch_add(1, Relaxed);
    metrics.bytes_written.fetch_add(12_345, Relaxed);
    metrics.quarantined("crc_mismatch");
    metrics.reconnects.fetch_add(3, Relaxed);
    metrics.settle_latency.observe_us(2_000);
    let (addr, shutdown, task) = start(metrics.clone()).await;

    let (status, head, body) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert!(
        head.contains(&format!("Content-Length: {}", body.len())),
        "{head}"
    );
    for line in [
        "receiver_messages_total{kind=\"v2_chunk\"} 2",
        "receiver_images_written_total{format=\"v2\"} 1",
        "receiver_bytes_written_total 12345",
        "receiver_quarantined_total{reason=\"crc_mismatch\"} 1",
        "receiver_reconnects_total 3",
        "receiver_open_assemblies 0",
        "receiver_settle_latency_seconds_count 1",
        "receiver_hook_jobs_total{result=\"ok\"} 0",
    ] {
        assert!(
            body.lines().any(|l| l == line),
            "missing {line:?} in\n{body}"
        );
    }
    // Every sample line is `name{labels} value` with a numeric value.
    for l in body.lines().filter(|l| !l.starts_with('#')) {
        let value = l.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "bad sample line {l:?}");
    }

    // Scrapes see live values.
    metrics.images_v2.fetch_add(1, Relaxed);
    let (_, _, body) = get(addr, "/metrics?x=1").await;
    assert!(body.contains("receiver_images_written_total{format=\"v2\"} 2"));

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("server stops on shutdown")
        .unwrap();
    assert!(TcpStream::connect(addr).await.is_err(), "listener closed");
}

#[tokio::test]
async fn healthz_reflects_state() {
    let metrics = Arc::new(Metrics::default());
    let (addr, shutdown, _task) = start(metrics.clone()).await;

    let (status, head, body) = get(addr, "/healthz").await;
    assert_eq!(status, 503);
    assert!(head.contains("Content-Type: application/json"));
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "unhealthy");
    assert_eq!(v["problems"], serde_json::json!(["not_ready", "no_link"]));
    assert_eq!(v["last_delivery_age_seconds"], serde_json::Value::Null);

    let now = now_ms();
    metrics.ready_ms.store(now - 60_000, Relaxed);
    metrics.links_attached.store(2, Relaxed);
    metrics.last_delivery_ms.store(now - 5_000, Relaxed);
    metrics.spool_bytes.store(4096, Relaxed);
    metrics.engine_busy(now - 100);
    let (status, _, body) = get(addr, "/healthz").await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["problems"], serde_json::json!([]));
    assert_eq!(v["links_attached"], 2);
    assert_eq!(v["spool"]["bytes"], 4096);
    assert_eq!(v["spool"]["paused"], false);
    let age = v["last_delivery_age_seconds"].as_f64().unwrap();
    assert!((5.0..60.0).contains(&age), "{age}");
    let busy = v["engine_busy_seconds"].as_f64().unwrap();
    assert!((0.1..60.0).contains(&busy), "{busy}");

    metrics.paused.store(true, Relaxed);
    let (status, _, body) = get(addr, "/healthz").await;
    assert_eq!(status, 503);
    assert!(body.contains("\"paused\""), "{body}");

    metrics.paused.store(false, Relaxed);
    metrics.engine_busy(now - 3_600_000);
    let (status, _, body) = get(addr, "/healthz").await;
    assert_eq!(status, 503);
    assert!(body.contains("engine_stalled"), "{body}");

    metrics.engine_idle();
    let (status, _, body) = get(addr, "/healthz").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"engine_busy_seconds\":null"), "{body}");
    shutdown.cancel();
}

#[tokio::test]
async fn healthz_delivery_age_when_configured() {
    let metrics = Arc::new(Metrics::default());
    let now = now_ms();
    metrics.ready_ms.store(now - 7_200_000, Relaxed);
    metrics.links_attached.store(1, Relaxed);
    metrics.last_delivery_ms.store(now - 3_600_000, Relaxed);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let health = HealthConfig {
        max_delivery_age: Some(Duration::from_secs(600)),
        ..HealthConfig::default()
    };
    tokio::spawn(serve_with(listener, metrics, health, shutdown.clone()));
    let (status, _, body) = get(addr, "/healthz").await;
    assert_eq!(status, 503);
    assert!(body.contains("deliveries_stale"), "{body}");
    shutdown.cancel();
}

#[tokio::test]
async fn odd_requests() {
    let (addr, shutdown, _task) = start(Arc::new(Metrics::default())).await;
    assert_eq!(get(addr, "/nope").await.0, 404);
    let (status, head, _) = raw(addr, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n").await;
    assert_eq!(status, 405);
    assert!(head.contains("Allow: GET, HEAD"));
    assert_eq!(raw(addr, b"hello\r\n\r\n").await.0, 400);
    let (status, head, body) = raw(addr, b"HEAD /metrics HTTP/1.0\r\n\r\n").await;
    assert_eq!(status, 200);
    assert!(body.is_empty());
    assert!(!head.contains("Content-Length: 0"));
    let huge = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000));
    assert_eq!(raw(addr, huge.as_bytes()).await.0, 431);
    // A client that connects and says nothing does not block others.
    let _idle = TcpStream::connect(addr).await.unwrap();
    assert_eq!(get(addr, "/metrics").await.0, 200);
    shutdown.cancel();
}

#[tokio::test]
async fn ops_start_serves_when_configured() {
    let out = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let cfg = OpsConfig {
        metrics: MetricsConfig {
            listen: Some("127.0.0.1:0".parse().unwrap()),
        },
        ..OpsConfig::default()
    };
    let metrics = Arc::new(Metrics::default());
    let ops = Ops::start(
        &cfg,
        out.path(),
        metrics.clone(),
        Notifier::disabled(),
        shutdown.clone(),
    )
    .await
    .unwrap();
    let addr = ops.http_addr().expect("bound");
    assert_ne!(addr.port(), 0);
    // Without a systemd watchdog, liveness is still evaluated (at once, then every 10 s).
    assert!(
        poll::until(Duration::from_secs(5), Duration::from_millis(10), || {
            metrics.live.load(Relaxed)
        })
        .await,
        "receiver_live never set"
    );
    let (status, _, body) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(body.lines().any(|l| l == "receiver_live 1"), "{body}");

    // A second listener on the same port is a start-up error.
    let again = OpsConfig {
        metrics: MetricsConfig { listen: Some(addr) },
        ..OpsConfig::default()
    };
    let err = Ops::start(
        &again,
        out.path(),
        Arc::new(Metrics::default()),
        Notifier::disabled(),
        shutdown.clone(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains(&addr.to_string()), "{err}");

    shutdown.cancel();
    ops.stop(Duration::from_secs(5)).await;
}

/// Raises this process's soft file-descriptor limit to at least `want` (within the hard limit).
fn raise_fd_limit(want: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a struct we own.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        if lim.rlim_cur < want {
            lim.rlim_cur = lim.rlim_max.min(want);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
        }
    }
    assert!(
        lim.rlim_cur >= want,
        "the hard fd limit {} is below the {want} this test needs",
        lim.rlim_max
    );
}

/// The outside probe's finding (issue 15): idle connections used to fill the listener and keep
/// `/healthz` down. 2 000 idle connections plus a slowloris client, and a normal request is
/// still answered, each time, within 1 s; the server then closes the idle and slow ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_healthz_still_answers() {
    const IDLE: usize = 2_000;
    // Both ends of every connection live in this process.
    raise_fd_limit(2 * IDLE as u64 + 512);
    let metrics = Arc::new(Metrics::default());
    let now = now_ms();
    metrics.ready_ms.store(now - 60_000, Relaxed);
    metrics.links_attached.store(1, Relaxed);
    metrics.last_delivery_ms.store(now, Relaxed);
    let (addr, shutdown, _task) = start(metrics).await;

    let opened = Instant::now();
    let mut idle = Vec::with_capacity(IDLE);
    while idle.len() < IDLE {
        let batch: Vec<_> = (0..50)
            .map(|_| tokio::spawn(TcpStream::connect(addr)))
            .collect();
        for c in batch {
            idle.push(c.await.unwrap().expect("idle connection"));
        }
    }
    // A slowloris client: a request head that never ends, one byte every 100 ms.
    let slowloris = tokio::spawn(async move {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .unwrap();
        let started = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if s.write_all(b"a").await.is_err() {
                return started.elapsed();
            }
            if started.elapsed() > Duration::from_secs(30) {
                return started.elapsed();
            }
        }
    });
    eprintln!("{IDLE} idle connections open in {:?}", opened.elapsed());

    let mut latencies = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        let (status, _, body) = tokio::time::timeout(Duration::from_secs(5), get(addr, "/healthz"))
            .await
            .expect("/healthz answered at all");
        latencies.push(t.elapsed());
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("\"status\":\"ok\""), "{body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let worst = latencies.iter().max().copied().unwrap();
    eprintln!("/healthz under {IDLE} idle connections + slowloris: {latencies:?}, worst {worst:?}");
    assert!(worst < Duration::from_secs(1), "{latencies:?}");

    // The server cuts the slowloris client at the header timeout (5 s), not when it stops.
    let cut = tokio::time::timeout(Duration::from_secs(20), slowloris)
        .await
        .expect("slowloris cut")
        .unwrap();
    assert!(
        cut < Duration::from_secs(10),
        "slowloris held its connection for {cut:?}"
    );
    // And the idle connections are closed too (EOF or a 408, then EOF).
    let mut first = idle.swap_remove(0);
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), first.read_to_end(&mut buf))
        .await
        .expect("idle connection closed by the server")
        .ok();
    drop(idle);
    shutdown.cancel();
}

/// Past the connection cap a client is told so (503 + Retry-After), not dropped.
#[tokio::test]
async fn over_the_cap_is_503() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let metrics = Arc::new(Metrics::default());
    let app = ops_routes(metrics.clone(), HealthConfig::default());
    let options = ServeOptions {
        keep_alive: false,
        max_connections: 4,
        metrics: Some(metrics.clone()),
    };
    tokio::spawn(serve_router(listener, app, options, shutdown.clone()));
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    // Let the server accept the four before the fifth arrives.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, head, body) = get(addr, "/metrics").await;
    assert_eq!(status, 503, "{head}");
    assert!(head.contains("Retry-After: 1"), "{head}");
    assert!(body.contains("too many connections"), "{body}");
    assert_eq!(metrics.http_refused.load(Relaxed), 1);
    assert!(metrics
        .render_prometheus()
        .contains("receiver_http_refused_total 1"));
    drop(held);
    // Slots free again once the held connections are gone.
    let mut ok = false;
    for _ in 0..50 {
        if get(addr, "/metrics").await.0 == 200 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "slots never freed");
    shutdown.cancel();
}

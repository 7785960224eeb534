//! Protocol rules and failure handling: auth refusal, timers, idle-time-out, one link per
//! connection. Time-dependent tests run on tokio's paused clock (real loopback sockets).

use crate::support::amqp::*;
use fe2o3_amqp::link::{Receiver, Sender};
use fe2o3_amqp::Session;
use receiver::amqp::Outcome;
use receiver::tools::FakeClientConfig as _;
use receiver_testkit::fake::{FakeConfig, RefuseAuth, FAKE_ACCESS_KEY_SECRET};
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::time::Instant;

const T: Duration = Duration::from_secs(20);

#[tokio::test(start_paused = true)]
async fn auth_refusal_is_reported_once_and_retried_slowly() {
    let (logs, _guard) = capture_logs();
    let fake = fake(FakeConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = fake.client_config(dir.path(), "rx").unwrap();
    fake.refuse_auth(RefuseAuth::Next(3));
    let id = fake
        .publish_property_post("a1PK", "cam-01", &alink(1, "AB"))
        .unwrap();
    let started = Instant::now();
    let (clients, rx) = start_clients(cfg, 1);
    let _log = engine(rx, Duration::ZERO, |_| Some(Outcome::Accept));
    fake.wait_drained(Duration::from_secs(600)).await.unwrap();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(180),
        "3 refusals => 3 waits of >= 60 s, got {waited:?}"
    );
    assert!(fake.outcomes().contains_key(&id));
    let c = fake.counters();
    assert_eq!(c.auth_failures, 3);
    assert_eq!(c.auth_ok, 1);
    assert_eq!(clients[0].state.auth_failures.load(Ordering::Relaxed), 3);
    let text = logs.text();
    let reported = text
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("the endpoint refused the credentials"))
        .count();
    assert_eq!(reported, 1, "reported once:\n{text}");
    assert!(text.contains("check access_key_id/secret, iot_instance_id, consumer_group_id"));
    // Secrets never logged: neither the secret nor anything password-like.
    assert!(!text.contains(FAKE_ACCESS_KEY_SECRET));
    assert!(
        !text.contains("authMode="),
        "the username (may hold an STS token) is not logged"
    );
    clients[0].shutdown.cancel();
}

#[tokio::test]
async fn wrong_credentials_are_refused_by_the_fake() {
    let fake = fake(FakeConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let good = fake.client_config(dir.path(), "rx").unwrap();
    let mut cases = Vec::new();
    let mut c = good.clone();
    c.access_key_secret = receiver::config::Secret::new("wrong");
    cases.push((c, "signature mismatch"));
    let mut c = good.clone();
    c.consumer_group_id = "other-group".into();
    cases.push((c, "consumerGroupId mismatch"));
    let mut c = good.clone();
    c.iot_instance_id = "iot-other".into();
    cases.push((c, "iotInstanceId mismatch"));
    let mut c = good.clone();
    c.access_key_id = "LTAIunknown".into();
    cases.push((c, "unknown access key id"));
    for (cfg, why) in &cases {
        let err = raw_connect(cfg, Some(120_000)).await.unwrap_err();
        assert!(err.to_string().contains("Auth"), "{why}: {err}");
        assert_eq!(fake.auth_log().last().unwrap().reason, *why);
    }
    for method in [
        receiver::config::SignMethod::HmacSha256,
        receiver::config::SignMethod::HmacMd5,
    ] {
        let mut c = good.clone();
        c.sign_method = method;
        raw_connect(&c, Some(120_000)).await.unwrap();
    }
    let mut c = good.clone();
    c.auth_mode = receiver::config::AuthMode::StsToken {
        security_token: receiver::config::Secret::new("CAIS+token/=="),
    };
    raw_connect(&c, Some(120_000)).await.unwrap();
    let c = fake.counters();
    assert_eq!((c.auth_failures, c.auth_ok), (4, 3));
}

#[tokio::test(start_paused = true)]
async fn setup_timeout_when_the_server_never_answers() {
    // Accepts TCP and then says nothing: the TLS handshake never completes.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let a = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            a.fetch_add(1, Ordering::SeqCst);
            held.push(s);
        }
    });
    let fake_cfg = FakeConfig::default();
    let mut cfg = receiver::tools::client_config_for(&fake_cfg, addr, "rx");
    cfg.setup_timeout = Duration::from_secs(15);
    let started = Instant::now();
    let (clients, _rx) = start_clients(cfg, 1);
    eventually("two attempts", Duration::from_secs(120), || {
        accepted.load(Ordering::SeqCst) >= 2
    })
    .await;
    assert!(started.elapsed() >= Duration::from_secs(15));
    let st = &clients[0].state;
    assert!(!st.link_attached.load(Ordering::Relaxed));
    assert_eq!(st.connects.load(Ordering::Relaxed), 0);
    assert!(st.attempts.load(Ordering::Relaxed) >= 2);
    clients[0].shutdown.cancel();
}

#[tokio::test]
async fn advertised_idle_time_out_is_within_aliyun_range() {
    let fake = fake(FakeConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    for (configured, advertised) in [(60, 60_000u32), (5, 30_000), (3600, 300_000)] {
        let mut cfg = fake.client_config(dir.path(), "rx").unwrap();
        cfg.idle_timeout = Duration::from_secs(configured);
        let before = fake.counters().links_attached;
        let (clients, _rx) = start_clients(cfg, 1);
        eventually("link", T, || fake.counters().links_attached == before + 1).await;
        let open = fake.open_log().last().cloned().unwrap();
        assert_eq!(open.idle_time_out_ms, Some(advertised));
        assert_eq!(open.container_id, "rx");
        assert_eq!(open.hostname.as_deref(), Some("127.0.0.1"));
        clients[0].shutdown.cancel();
        let _ = clients.into_iter().next().unwrap().task.await;
    }
    assert_eq!(fake.counters().bad_idle_time_outs, 0);
    // The fake enforces the range: 20 s given to fe2o3 advertises 10 s.
    let cfg = fake.client_config(dir.path(), "raw").unwrap();
    let mut conn = raw_connect(&cfg, Some(20_000)).await.unwrap();
    let r = conn.on_close().await;
    assert!(format!("{r:?}").contains("idle-time-out"), "{r:?}");
    let mut conn = raw_connect(&cfg, None).await.unwrap();
    let _ = conn.on_close().await;
    assert_eq!(fake.counters().bad_idle_time_outs, 2);
}

#[tokio::test(start_paused = true)]
async fn keepalive_keeps_an_idle_connection_up() {
    // The fake advertises no idle-time-out of its own (so fe2o3 sends no heartbeats on its own)
    // and closes connections silent for longer than the client's advertised 30 s.
    let fake = fake(FakeConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = fake.client_config(dir.path(), "rx").unwrap();
    cfg.idle_timeout = Duration::from_secs(30);
    let (clients, rx) = start_clients(cfg.clone(), 1);
    let _log = engine(rx, Duration::ZERO, |_| Some(Outcome::Accept));
    eventually("link", T, || fake.counters().links_attached == 1).await;
    tokio::time::sleep(Duration::from_secs(600)).await;
    let c = fake.counters();
    assert_eq!((c.idle_closes, c.connections), (0, 1), "{c:?}");
    fake.publish_property_post("a1PK", "cam-01", &alink(1, "AB"))
        .unwrap();
    fake.wait_drained(T).await.unwrap();
    clients[0].shutdown.cancel();

    // Without keep-alives a silent raw connection is closed after its advertised idle-time-out.
    let mut conn = raw_connect(&cfg, Some(60_000)).await.unwrap();
    let mut session = Session::begin(&mut conn).await.unwrap();
    let _rx = Receiver::attach(&mut session, "raw-rx", "default")
        .await
        .unwrap();
    let t0 = Instant::now();
    let _ = conn.on_close().await;
    assert!(t0.elapsed() >= Duration::from_secs(30));
    assert_eq!(fake.counters().idle_closes, 1);
}

#[tokio::test]
async fn one_receiver_link_per_connection() {
    let fake = fake(FakeConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = fake.client_config(dir.path(), "raw").unwrap();
    let mut conn = raw_connect(&cfg, Some(120_000)).await.unwrap();
    let mut session = Session::begin(&mut conn).await.unwrap();
    let mut first = Receiver::attach(&mut session, "rx-1", "default")
        .await
        .unwrap();
    // A second receiver link on the same connection is detached with an error...
    let second = Receiver::attach(&mut session, "rx-2", "default").await;
    if let Ok(mut second) = second {
        let err = tokio::time::timeout(T, second.recv::<fe2o3_amqp::types::primitives::Value>())
            .await
            .unwrap()
            .unwrap_err();
        assert!(
            err.to_string().contains("not-allowed") || format!("{err:?}").contains("NotAllowed"),
            "{err:?}"
        );
    }
    // ... and so is a sender link (Aliyun supports none).
    let sender = Sender::attach(&mut session, "tx-1", "default").await;
    if let Ok(mut sender) = sender {
        let err = tokio::time::timeout(T, sender.on_detach()).await.unwrap();
        assert!(format!("{err:?}").contains("NotAllowed"), "{err:?}");
    }
    eventually("2 refusals", T, || fake.counters().links_refused == 2).await;
    // The first link still works.
    fake.publish_property_post("a1PK", "cam-01", &alink(1, "AB"))
        .unwrap();
    first.set_credit(1).await.unwrap();
    let d = tokio::time::timeout(
        T,
        first.recv::<fe2o3_amqp::types::messaging::Body<fe2o3_amqp::types::primitives::Value>>(),
    )
    .await
    .unwrap()
    .unwrap();
    first.accept(&d).await.unwrap();
    fake.wait_drained(T).await.unwrap();
    assert_eq!(fake.counters().links_attached, 1);
}

#[tokio::test(start_paused = true)]
async fn fake_enforces_login_and_link_timers() {
    let fake = fake(FakeConfig {
        auth_timeout: Duration::from_secs(15),
        link_timeout: Duration::from_secs(15),
        ..FakeConfig::default()
    })
    .await;
    // TCP only, no TLS/SASL: closed after 15 s.
    let mut tcp = tokio::net::TcpStream::connect(fake.addr()).await.unwrap();
    let t0 = Instant::now();
    let mut buf = [0u8; 16];
    let n = tokio::io::AsyncReadExt::read(&mut tcp, &mut buf)
        .await
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(t0.elapsed() >= Duration::from_secs(15));
    assert_eq!(fake.counters().auth_timeouts, 1);

    // Logged in but no receiver link: closed 15 s after the Open.
    let dir = tempfile::tempdir().unwrap();
    let cfg = fake.client_config(dir.path(), "raw").unwrap();
    let mut conn = raw_connect(&cfg, Some(120_000)).await.unwrap();
    let _session = Session::begin(&mut conn).await.unwrap();
    let t0 = Instant::now();
    let r = conn.on_close().await;
    assert!(t0.elapsed() >= Duration::from_secs(15));
    assert!(format!("{r:?}").contains("no receiver link"), "{r:?}");
    assert_eq!(fake.counters().link_timeouts, 1);
}

#[tokio::test]
async fn remote_detach_triggers_a_full_reconnect() {
    let fake = fake(FakeConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = fake.client_config(dir.path(), "rx").unwrap();
    let (clients, rx) = start_clients(cfg, 1);
    let _log = engine(rx, Duration::ZERO, |_| Some(Outcome::Accept));
    eventually("link", T, || fake.counters().links_attached == 1).await;
    fake.detach_all();
    eventually("re-attached", T, || fake.counters().links_attached == 2).await;
    let c = fake.counters();
    assert_eq!(
        c.connections, 2,
        "a new connection, not just a new link: {c:?}"
    );
    eventually("old connection closed", T, || fake.live_connections() == 1).await;
    fake.publish_property_post("a1PK", "cam-01", &alink(1, "AB"))
        .unwrap();
    fake.wait_drained(T).await.unwrap();
    clients[0].shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn half_open_connection_is_detected_by_idle_timeout() {
    let fake = fake(FakeConfig {
        enforce_idle: false,
        ..FakeConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = fake.client_config(dir.path(), "rx").unwrap();
    cfg.idle_timeout = Duration::from_secs(30);
    let (clients, rx) = start_clients(cfg, 1);
    let _log = engine(rx, Duration::ZERO, |_| Some(Outcome::Accept));
    eventually("link", T, || fake.counters().links_attached == 1).await;
    fake.freeze_all();
    let t0 = Instant::now();
    eventually("reconnected", Duration::from_secs(300), || {
        fake.counters().links_attached == 2
    })
    .await;
    let took = t0.elapsed();
    // Detected after twice the advertised 30 s, plus the reconnect backoff.
    assert!(
        took >= Duration::from_secs(60) && took <= Duration::from_secs(75),
        "{took:?}"
    );
    let st = &clients[0].state;
    assert_eq!(st.connects.load(Ordering::Relaxed), 2);
    assert!(st.link_attached.load(Ordering::Relaxed));
    clients[0].shutdown.cancel();
}

#[tokio::test]
async fn unusable_messages_are_rejected_and_the_rest_flows() {
    let fake = fake(FakeConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = fake.client_config(dir.path(), "rx").unwrap();
    fake.publish_undecodable("/a1PK/cam-01/thing/event/property/post", "bad-1");
    let good = fake
        .publish_property_post("a1PK", "cam-01", &alink(1, "AB"))
        .unwrap();
    let (clients, rx) = start_clients(cfg, 1);
    let log = engine(rx, Duration::ZERO, |_| Some(Outcome::Accept));
    fake.wait_drained(T).await.unwrap();
    let o = fake.outcomes();
    assert_eq!(
        o["bad-1"],
        vec![receiver_testkit::fake::FakeOutcome::Rejected]
    );
    assert_eq!(
        o[&good],
        vec![receiver_testkit::fake::FakeOutcome::Accepted]
    );
    assert_eq!(
        log.lock().unwrap().len(),
        1,
        "the engine never saw the bad one"
    );
    assert_eq!(clients[0].state.rejected.load(Ordering::Relaxed), 1);
    clients[0].shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn connection_attempts_share_one_rate_limit() {
    let fake = fake(FakeConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = fake.client_config(dir.path(), "rx").unwrap();
    // Two attempts per minute for the whole consumer group.
    let limiter = std::sync::Arc::new(receiver::amqp::client::ConnectLimiter::new(
        2,
        Duration::from_secs(60),
    ));
    let t0 = Instant::now();
    let (clients, _rx) = start_clients_with(cfg, 3, limiter);
    eventually("two links", T, || fake.counters().links_attached == 2).await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(
        fake.counters().tcp_accepts,
        2,
        "the third waits for the window"
    );
    eventually("third link", Duration::from_secs(120), || {
        fake.counters().links_attached == 3
    })
    .await;
    assert!(t0.elapsed() >= Duration::from_secs(60));
    for c in &clients {
        c.shutdown.cancel();
    }
}

#[tokio::test]
async fn engine_gone_is_fatal() {
    let fake = fake(FakeConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = fake.client_config(dir.path(), "rx").unwrap();
    let (mut clients, rx) = start_clients(cfg, 1);
    drop(rx);
    fake.publish_property_post("a1PK", "cam-01", &alink(1, "AB"))
        .unwrap();
    let r = tokio::time::timeout(T, clients.remove(0).task)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(r, Err(receiver::amqp::client::ClientError::EngineGone)),
        "{r:?}"
    );
    // Its delivery was never settled by anyone: redelivered to whoever connects next.
    eventually("released by the close", T, || fake.in_flight() == 0).await;
    assert_eq!(fake.queued(), 1);
}

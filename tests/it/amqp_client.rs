//! The AMQP client against the fake Aliyun endpoint, over real TLS sockets on 127.0.0.1.

use crate::support::amqp::*;
use receiver::amqp::Outcome;
use receiver::tools::FakeClientConfig as _;
use receiver_testkit::fake::{FakeConfig, FakeOutcome};
use std::sync::atomic::Ordering;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

#[tokio::test]
async fn receives_and_settles() {
    init_tracing();
    let fake = fake(FakeConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = fake.client_config(dir.path(), "rx").unwrap();
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(
            fake.publish_property_post("a1PK", "cam-01", &alink(i, "FFD8"))
                .unwrap(),
        );
    }
    let (clients, rx) = start_clients(cfg, 1);
    let log = engine(rx, Duration::ZERO, |s| {
        Some(
            if s.message_id.as_deref().is_some_and(|m| m.ends_with('7')) {
                Outcome::Reject
            } else {
                Outcome::Accept
            },
        )
    });
    fake.wait_drained(T).await.unwrap();
    let c = fake.counters();
    assert_eq!(c.accepted + c.rejected, 20, "{c:?}");
    assert_eq!(c.connections, 1);
    let seen = log.lock().unwrap().clone();
    assert_eq!(seen.len(), 20);
    for s in &seen {
        assert_eq!(
            s.topic.as_deref(),
            Some("/a1PK/cam-01/thing/event/property/post")
        );
        assert!(s.generate_time.is_some());
        assert!(ids.contains(s.message_id.as_ref().unwrap()));
        let body: serde_json::Value = serde_json::from_slice(&s.body).unwrap();
        assert_eq!(body["items"]["img"]["value"], "FFD8");
    }
    let outcomes = fake.outcomes();
    for id in &ids {
        let want = if id.ends_with('7') {
            FakeOutcome::Rejected
        } else {
            FakeOutcome::Accepted
        };
        assert_eq!(outcomes[id], vec![want], "{id}");
    }
    let st = &clients[0].state;
    assert!(st.link_attached.load(Ordering::Relaxed));
    assert_eq!(st.deliveries.load(Ordering::Relaxed), 20);
    assert!(st.last_delivery_ms.load(Ordering::Relaxed) > 0);
    clients[0].shutdown.cancel();
}

#[tokio::test]
async fn several_connections_share_the_queue() {
    let fake = fake(FakeConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = fake.client_config(dir.path(), "rx").unwrap();
    let (clients, rx) = start_clients(cfg, 3);
    eventually("3 links", T, || fake.counters().links_attached == 3).await;
    for i in 0..60 {
        fake.publish_property_post("a1PK", "cam-01", &alink(i, "AA"))
            .unwrap();
    }
    let log = engine(rx, Duration::from_millis(2), |_| Some(Outcome::Accept));
    fake.wait_drained(T).await.unwrap();
    assert_eq!(fake.counters().accepted, 60);
    let mut ids: Vec<String> = fake.auth_log().into_iter().map(|a| a.client_id).collect();
    ids.sort();
    assert_eq!(ids, ["rx-0", "rx-1", "rx-2"]);
    let conns: std::collections::HashSet<usize> =
        log.lock().unwrap().iter().map(|s| s.conn).collect();
    assert!(conns.len() >= 2, "deliveries spread over links: {conns:?}");
    for c in &clients {
        c.shutdown.cancel();
    }
}

#[tokio::test]
async fn credentials_are_recomputed_on_reconnect() {
    let fake = fake(FakeConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = fake.client_config(dir.path(), "rx").unwrap();
    let (clients, _rx) = start_clients(cfg, 1);
    eventually("first link", T, || fake.counters().links_attached == 1).await;
    fake.cut_all();
    eventually("second link", T, || fake.counters().links_attached == 2).await;
    let log = fake.auth_log();
    assert_eq!(log.len(), 2);
    assert!(log.iter().all(|a| a.ok));
    assert_ne!(
        log[0].timestamp, log[1].timestamp,
        "a fresh timestamp per connect"
    );
    let st = &clients[0].state;
    // The fake sees the attach before the client's attach call returns and counts it.
    eventually("client counted the connect", T, || {
        st.connects.load(Ordering::Relaxed) == 2
    })
    .await;
    assert_eq!(st.reconnects.load(Ordering::Relaxed), 1);
    clients[0].shutdown.cancel();
}

#[tokio::test]
async fn cut_mid_stream_redelivers_unsettled() {
    let fake = fake(FakeConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = fake.client_config(dir.path(), "rx").unwrap();
    let mut ids = Vec::new();
    for i in 0..30 {
        ids.push(
            fake.publish_property_post("a1PK", "cam-01", &alink(i, "FFD8AA"))
                .unwrap(),
        );
    }
    // The socket dies right after the 10th delivery; the engine settles after 1 s, so the
    // deliveries are still unsettled then.
    fake.cut_after(10);
    let (clients, rx) = start_clients(cfg, 1);
    let log = engine(rx, Duration::from_secs(1), |_| Some(Outcome::Accept));
    fake.wait_drained(T).await.unwrap();
    let c = fake.counters();
    assert_eq!(c.cuts, 1);
    assert!(c.connections >= 2, "{c:?}");
    assert!(c.lost >= 1 && c.redeliveries >= 1, "{c:?}");
    let outcomes = fake.outcomes();
    for id in &ids {
        let o = &outcomes[id];
        assert_eq!(o.last(), Some(&FakeOutcome::Accepted), "{id}: {o:?}");
        assert_eq!(
            o.iter().filter(|x| **x == FakeOutcome::Accepted).count(),
            1,
            "{id}: {o:?}"
        );
    }
    // Some message was seen twice by the engine (received, lost, redelivered).
    let seen = log.lock().unwrap().clone();
    assert!(seen.len() > 30, "{} deliveries", seen.len());
    assert_eq!(clients[0].state.connects.load(Ordering::Relaxed), 2);
    clients[0].shutdown.cancel();
}

#[tokio::test]
async fn duplicates_are_delivered_with_the_same_message_id() {
    let fake = fake(FakeConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = fake.client_config(dir.path(), "rx").unwrap();
    fake.duplicate_next(2);
    fake.set_reorder(true);
    for i in 0..5 {
        fake.publish_property_post("a1PK", "cam-01", &alink(i, "AB"))
            .unwrap();
    }
    let (clients, rx) = start_clients(cfg, 1);
    let log = engine(rx, Duration::ZERO, |_| Some(Outcome::Accept));
    fake.wait_drained(T).await.unwrap();
    assert_eq!(fake.counters().accepted, 7);
    let seen = log.lock().unwrap().clone();
    let mut ids: Vec<_> = seen.iter().map(|s| s.message_id.clone().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 5);
    clients[0].shutdown.cancel();
}

#[tokio::test]
async fn released_messages_come_back() {
    let fake = fake(FakeConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = fake.client_config(dir.path(), "rx").unwrap();
    let id = fake
        .publish_property_post("a1PK", "cam-01", &alink(1, "AB"))
        .unwrap();
    let (clients, rx) = start_clients(cfg, 1);
    // Release the first time, accept after; a dropped settler also releases.
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c2 = count.clone();
    let _log = engine(rx, Duration::ZERO, move |_| {
        match c2.fetch_add(1, Ordering::SeqCst) {
            0 => Some(Outcome::Release),
            _ => Some(Outcome::Accept),
        }
    });
    fake.wait_drained(T).await.unwrap();
    assert_eq!(
        fake.outcomes()[&id],
        vec![FakeOutcome::Released, FakeOutcome::Accepted]
    );
    clients[0].shutdown.cancel();
}

#[tokio::test]
async fn pause_stops_credit() {
    let fake = fake(FakeConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = fake.client_config(dir.path(), "rx").unwrap();
    cfg.credit = 4;
    let (clients, rx) = start_clients(cfg, 1);
    let c = &clients[0];
    c.paused.send(true).unwrap();
    let log = engine(rx, Duration::ZERO, |_| Some(Outcome::Accept));
    eventually("link", T, || fake.counters().links_attached == 1).await;
    for i in 0..10 {
        fake.publish_property_post("a1PK", "cam-01", &alink(i, "AB"))
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fake.counters().delivered, 0, "no credit while paused");
    c.paused.send(false).unwrap();
    fake.wait_drained(T).await.unwrap();
    assert_eq!(log.lock().unwrap().len(), 10);

    // Pause mid-stream: at most the credit already granted (<= 4) still arrives.
    c.paused.send(true).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    for i in 10..30 {
        fake.publish_property_post("a1PK", "cam-01", &alink(i, "AB"))
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let delivered = fake.counters().delivered;
    assert!((10..=14).contains(&delivered), "delivered {delivered}");
    // (One message may be held by the fake's link while it waits for credit.)
    assert!(fake.queued() >= 15, "queued {}", fake.queued());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fake.counters().delivered, delivered, "still paused");
    c.paused.send(false).unwrap();
    fake.wait_drained(T).await.unwrap();
    assert_eq!(fake.counters().accepted, 30);
    c.shutdown.cancel();
}

#[tokio::test]
async fn graceful_shutdown_releases_in_hand_and_closes() {
    let fake = fake(FakeConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = fake.client_config(dir.path(), "rx").unwrap();
    for i in 0..5 {
        fake.publish_property_post("a1PK", "cam-01", &alink(i, "AB"))
            .unwrap();
    }
    let (mut clients, mut rx) = start_clients(cfg, 1);
    // An engine that holds everything and never settles.
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let h = held.clone();
    tokio::spawn(async move {
        while let Some(inbound) = rx.recv().await {
            h.lock().unwrap().push(inbound);
        }
    });
    eventually("5 in hand", T, || held.lock().unwrap().len() == 5).await;
    let c = clients.remove(0);
    let started = tokio::time::Instant::now();
    c.shutdown.cancel();
    let r = tokio::time::timeout(Duration::from_secs(10), c.task)
        .await
        .unwrap()
        .unwrap();
    assert!(r.is_ok());
    assert!(started.elapsed() < Duration::from_secs(8));
    fake.wait_settled(5, T).await.unwrap();
    let counters = fake.counters();
    assert_eq!(counters.released, 5, "{counters:?}");
    eventually("connection closed", T, || fake.live_connections() == 0).await;
    assert!(!c.state.link_attached.load(Ordering::Relaxed));
}

#[tokio::test]
async fn shutdown_grace_lets_the_engine_settle() {
    let fake = fake(FakeConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = fake.client_config(dir.path(), "rx").unwrap();
    for i in 0..3 {
        fake.publish_property_post("a1PK", "cam-01", &alink(i, "AB"))
            .unwrap();
    }
    let (mut clients, rx) = start_clients(cfg, 1);
    // Settles 500 ms after receipt: inside the shutdown grace.
    let log = engine(rx, Duration::from_millis(500), |_| Some(Outcome::Accept));
    eventually("3 in hand", T, || log.lock().unwrap().len() == 3).await;
    let c = clients.remove(0);
    c.shutdown.cancel();
    c.task.await.unwrap().unwrap();
    let counters = fake.counters();
    assert_eq!(counters.accepted, 3, "{counters:?}");
    assert_eq!(counters.released, 0, "{counters:?}");
}

/// Rough throughput of client + fake over TLS on loopback (debug build; run with
/// `cargo test --test it -- --ignored --nocapture throughput`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn throughput() {
    let fake = fake(FakeConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = fake.client_config(dir.path(), "rx").unwrap();
    cfg.credit = 64;
    let n = 20_000u64;
    let body = vec![b'x'; 1024];
    for i in 0..n {
        fake.publish(receiver_testkit::fake::FakeMessage {
            topic: "/a1PK/cam-01/thing/event/property/post".into(),
            message_id: format!("m{i}"),
            generate_time: 0,
            body: body.clone(),
        });
    }
    let t0 = std::time::Instant::now();
    let (clients, rx) = start_clients(cfg, 1);
    let _log = engine(rx, Duration::ZERO, |_| Some(Outcome::Accept));
    fake.wait_accepted(n, Duration::from_secs(300))
        .await
        .unwrap();
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "throughput: {n} x 1 KiB accepted in {secs:.2} s = {:.0} msg/s (credit 64)",
        n as f64 / secs
    );
    clients[0].shutdown.cancel();
}

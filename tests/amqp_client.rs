//! The AMQP client against the fake Aliyun endpoint, over real TLS sockets on 127.0.0.1.

mod amqp_common;

use amqp_common::*;
use receiver::amqp::fake::{FakeConfig, FakeOutcome};
use receiver::amqp::Outcome;
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

//! Interop: our client against a third-party AMQP 1.0 server (rhea, Node.js) acting like Aliyun:
//! pure TLS with a certificate from our generated CA, SASL PLAIN checked with the aksign scheme,
//! messages with a Data body and topic/messageId/generateTime application properties.
//!
//! Needs Node.js and `npm ci --prefix tests/interop` (CI runs it before the tests).

use crate::support::amqp::*;
use receiver::amqp::Outcome;
use receiver::tools::client_config_for;
use receiver_testkit::fake::{FakeConfig, FAKE_ACCESS_KEY_ID};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

fn interop_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

fn require_rhea() {
    let rhea = interop_dir().join("node_modules/rhea/package.json");
    assert!(
        rhea.exists(),
        "the rhea interop server is not installed ({} is missing): run `npm ci --prefix tests/interop`",
        rhea.display()
    );
    let node = std::process::Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "Node.js (`node`) is required for the interop test"
    );
}

#[tokio::test]
async fn client_against_rhea_server() {
    require_rhea();
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let pki = receiver_testkit::pki::generate_test_pki(&[]).unwrap();
    let (ca, cert, key) = (
        dir.path().join("ca.pem"),
        dir.path().join("cert.pem"),
        dir.path().join("key.pem"),
    );
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    std::fs::write(&cert, &pki.cert_pem).unwrap();
    std::fs::write(&key, &pki.key_pem).unwrap();

    let fake_cfg = FakeConfig::default();
    let mut messages = Vec::new();
    for i in 0..5u32 {
        let alink = receiver::wire::alink_payload(7000 + i, &format!("V2;7;{i};5;4;00000000;AAAA"));
        let body = receiver::message::forward_property_post(
            "a1PK",
            "cam-01",
            alink.as_bytes(),
            1_700_000_000_000,
        )
        .unwrap();
        messages.push(json!({
            "topic": "/a1PK/cam-01/thing/event/property/post",
            "message_id": format!("17000000000000{i:05}"),
            "generate_time": 1_700_000_000_000i64 + i64::from(i),
            "body_b64": base64_encode(&body),
        }));
    }
    let config = json!({
        "cert_file": cert,
        "key_file": key,
        "access_key_id": FAKE_ACCESS_KEY_ID,
        "access_key_secret": fake_cfg.access_keys[FAKE_ACCESS_KEY_ID],
        "iot_instance_id": fake_cfg.iot_instance_id,
        "consumer_group_id": fake_cfg.consumer_group_id,
        "messages": messages,
    });
    let mut child = tokio::process::Command::new("node")
        .arg(interop_dir().join("rhea_server.js"))
        .env("INTEROP_CONFIG", config.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn node");
    let stdout = child.stdout.take().unwrap();
    let events: Arc<Mutex<Vec<Value>>> = Arc::default();
    let (port_tx, port_rx) = tokio::sync::oneshot::channel();
    let ev = events.clone();
    tokio::spawn(async move {
        let mut port_tx = Some(port_tx);
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if v["event"] == "listening" {
                if let Some(tx) = port_tx.take() {
                    let _ = tx.send(v["port"].as_u64().unwrap() as u16);
                }
            }
            ev.lock().unwrap().push(v);
        }
    });
    let port = tokio::time::timeout(Duration::from_secs(30), port_rx)
        .await
        .expect("rhea server did not start listening")
        .unwrap();

    let mut cfg = client_config_for(
        &fake_cfg,
        std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        "rx-interop",
    );
    cfg.ca_file = Some(ca);
    let (clients, rx) = start_clients(cfg, 1);
    let log = engine(rx, Duration::ZERO, |_| Some(Outcome::Accept));
    let accepted = |events: &[Value]| {
        events
            .iter()
            .filter(|e| e["event"] == "outcome" && e["outcome"] == "accepted")
            .count()
    };
    eventually("5 accepted by rhea", Duration::from_secs(30), || {
        accepted(&events.lock().unwrap()) == 5
    })
    .await;
    clients[0].shutdown.cancel();

    let events = events.lock().unwrap().clone();
    let auth: Vec<_> = events.iter().filter(|e| e["event"] == "auth").collect();
    assert_eq!(auth.len(), 1, "{events:?}");
    assert_eq!(auth[0]["ok"], true, "{events:?}");
    assert_eq!(auth[0]["client_id"], "rx-interop");
    let open = events.iter().find(|e| e["event"] == "open").unwrap();
    let idle = open["idle_time_out"].as_u64().unwrap();
    assert!((30_000..=300_000).contains(&idle), "{open}");
    let link = events.iter().find(|e| e["event"] == "link").unwrap();
    assert_eq!(link["source"], "default");

    let seen = log.lock().unwrap().clone();
    assert_eq!(seen.len(), 5);
    for (i, m) in messages.iter().enumerate() {
        let id = m["message_id"].as_str().unwrap();
        let s = seen
            .iter()
            .find(|s| s.message_id.as_deref() == Some(id))
            .unwrap_or_else(|| panic!("{id} not received"));
        assert_eq!(s.topic.as_deref(), m["topic"].as_str());
        assert_eq!(s.generate_time, m["generate_time"].as_i64());
        assert_eq!(base64_encode(&s.body), m["body_b64"].as_str().unwrap());
        let body: Value = serde_json::from_slice(&s.body).unwrap();
        assert_eq!(body["requestId"], (7000 + i).to_string());
        let outcomes: Vec<_> = events
            .iter()
            .filter(|e| e["event"] == "outcome" && e["message_id"] == id)
            .map(|e| e["outcome"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(outcomes, ["accepted"], "{id}");
    }
    drop(child.stdin.take());
    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

//! Shared harness for the AMQP integration tests: a fake endpoint, a client task and a tiny
//! "engine" that settles deliveries.
#![allow(dead_code)]

use receiver::amqp::client::{run_connection, ClientError, ConnState, ConnectLimiter};
use receiver::amqp::fake::{FakeAliyun, FakeConfig};
use receiver::amqp::{Inbound, Outcome};
use receiver::config::AliyunConfig;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub struct Client {
    pub state: Arc<ConnState>,
    pub paused: watch::Sender<bool>,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<Result<(), ClientError>>,
}

/// Starts `connections` client tasks sharing one limiter; returns them and the engine's receiver.
pub fn start_clients(
    cfg: AliyunConfig,
    connections: usize,
) -> (Vec<Client>, mpsc::Receiver<Inbound>) {
    let mut cfg = cfg;
    cfg.connections = connections;
    let cfg = Arc::new(cfg);
    let (tx, rx) = mpsc::channel(256);
    let limiter = ConnectLimiter::aliyun();
    let clients = (0..connections)
        .map(|i| {
            let state = ConnState::new();
            let (paused, paused_rx) = watch::channel(false);
            let shutdown = CancellationToken::new();
            let task = tokio::spawn(run_connection(
                i,
                cfg.clone(),
                tx.clone(),
                paused_rx,
                state.clone(),
                limiter.clone(),
                shutdown.clone(),
            ));
            Client {
                state,
                paused,
                shutdown,
                task,
            }
        })
        .collect();
    (clients, rx)
}

/// One received delivery, as the test engine saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub conn: usize,
    pub topic: Option<String>,
    pub message_id: Option<String>,
    pub generate_time: Option<i64>,
    pub body: Vec<u8>,
}

pub type Log = Arc<Mutex<Vec<Seen>>>;

/// An engine that settles every delivery with `decide(seen)` after `delay`.
pub fn engine(
    mut rx: mpsc::Receiver<Inbound>,
    delay: Duration,
    decide: impl Fn(&Seen) -> Option<Outcome> + Send + 'static,
) -> Log {
    let log: Log = Arc::default();
    let l = log.clone();
    tokio::spawn(async move {
        while let Some(inbound) = rx.recv().await {
            let seen = Seen {
                conn: inbound.conn,
                topic: inbound.delivery.topic.clone(),
                message_id: inbound.delivery.message_id.clone(),
                generate_time: inbound.delivery.generate_time,
                body: inbound.delivery.body.clone(),
            };
            l.lock().unwrap().push(seen.clone());
            let outcome = decide(&seen);
            let settler = inbound.settler;
            if let Some(outcome) = outcome {
                if delay.is_zero() {
                    settler.settle(outcome);
                } else {
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        settler.settle(outcome);
                    });
                }
            } else {
                // Hold it forever (never settled by the engine).
                std::mem::forget(settler);
            }
        }
    });
    log
}

pub async fn fake(cfg: FakeConfig) -> FakeAliyun {
    FakeAliyun::start(cfg).await.unwrap()
}

pub fn alink(id: u32, img: &str) -> Vec<u8> {
    receiver::wire::alink_payload(id, img).into_bytes()
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "receiver=debug".into()),
        )
        .with_test_writer()
        .try_init();
}

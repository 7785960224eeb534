//! Shared harness for the AMQP integration tests: a fake endpoint, a client task and a tiny
//! "engine" that settles deliveries.
#![allow(dead_code)]

pub use super::poll::eventually;
use receiver::amqp::client::{run_connection, ClientError, ConnState, ConnectLimiter};
use receiver::amqp::{Inbound, Outcome};
use receiver::config::AliyunConfig;
use receiver_testkit::fake::{FakeAliyun, FakeConfig};
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
    start_clients_with(cfg, connections, ConnectLimiter::aliyun())
}

/// Like [`start_clients`] with a given connection-attempt limiter.
pub fn start_clients_with(
    cfg: AliyunConfig,
    connections: usize,
    limiter: Arc<ConnectLimiter>,
) -> (Vec<Client>, mpsc::Receiver<Inbound>) {
    let mut cfg = cfg;
    cfg.connections = connections;
    let cfg = Arc::new(cfg);
    let (tx, rx) = mpsc::channel(256);
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

/// Captures log output (for "reported once" and "no secrets in logs" checks).
#[derive(Clone, Default)]
pub struct Capture(pub Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Installs a capturing subscriber for the current thread (use with a current-thread runtime).
pub fn capture_logs() -> (Capture, tracing::subscriber::DefaultGuard) {
    let cap = Capture::default();
    let c = cap.clone();
    let sub = tracing_subscriber::fmt()
        .with_env_filter("receiver=debug")
        .with_ansi(false)
        .with_writer(move || c.clone())
        .finish();
    (cap, tracing::subscriber::set_default(sub))
}

/// Opens a raw fe2o3 connection to the fake with valid credentials (for protocol-rule tests).
pub async fn raw_connect(
    cfg: &AliyunConfig,
    idle_time_out_ms: Option<u32>,
) -> Result<fe2o3_amqp::connection::ConnectionHandle<()>, fe2o3_amqp::connection::OpenError> {
    let tls = receiver::tls::client_config(cfg.ca_file.as_deref()).unwrap();
    let tcp = tokio::net::TcpStream::connect((cfg.host.as_str(), cfg.port))
        .await
        .unwrap();
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(receiver::tls::server_name(&cfg.host).unwrap(), tcp)
        .await
        .unwrap();
    let creds = receiver::sign::sign(&receiver::sign::SignParams {
        client_id: &cfg.client_id,
        access_key_id: &cfg.access_key_id,
        access_key_secret: cfg.access_key_secret.expose(),
        iot_instance_id: &cfg.iot_instance_id,
        consumer_group_id: &cfg.consumer_group_id,
        sign_method: cfg.sign_method,
        auth_mode: &cfg.auth_mode,
        timestamp_ms: 1_700_000_000_000,
    })
    .unwrap();
    let mut b = fe2o3_amqp::Connection::builder()
        .container_id("raw")
        .scheme("amqp")
        .sasl_profile(fe2o3_amqp::sasl_profile::SaslProfile::Plain {
            username: creds.username,
            password: creds.password,
        });
    if let Some(ms) = idle_time_out_ms {
        b = b.idle_time_out(ms);
    }
    b.open_with_stream(stream).await
}

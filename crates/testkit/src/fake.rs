//! A fake Aliyun AMQP endpoint, in-process, for tests, the demo and benchmarks.
//!
//! It behaves like the server-side subscription as documented (and as far as it can be observed):
//!
//! - **Pure TLS** on a TCP port (127.0.0.1:0 by default) with a generated CA ([`FakeAliyun::ca_pem`]);
//!   the TLS handshake is done here and the stream is handed to fe2o3's acceptor as plain AMQP.
//! - **SASL PLAIN with aksign/ststoken**: the username is parsed (parameters in any order,
//!   `signMethod` case-insensitive), the access key id must be known, `iotInstanceId` and
//!   `consumerGroupId` must match, and the HMAC is recomputed. Every attempt is logged
//!   ([`FakeAliyun::auth_log`]) with its timestamp.
//! - **Timers**: login (TLS + SASL + Open) within `auth_timeout`; a receiver link within
//!   `link_timeout` of the Open; the client's Open must advertise an idle-time-out within
//!   30 000–300 000 ms ([`FakeAliyun::open_log`]), and a connection silent for longer than that is
//!   closed.
//! - **One receiver link per connection**; a second link, or a sender link, is closed with
//!   `amqp:not-allowed`.
//! - **Messages laid out as Aliyun does**: a Data body plus application properties `topic`,
//!   `messageId` (string) and `generateTime` (long, ms).
//! - **Queue semantics**: one queue shared by every connection (attached links take turns,
//!   respecting credit); accepted messages are removed, released/modified ones and those left
//!   unsettled on a connection that dies are redelivered, rejected ones are dropped.
//! - **Fault injection**: cut the socket after N more deliveries, duplicate the next message(s),
//!   delay deliveries, refuse logins (all or the next K), reorder.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use receiver_testkit::fake::{FakeAliyun, FakeConfig};
//! let fake = FakeAliyun::start(FakeConfig::default()).await?;
//! let dir = tempfile::tempdir()?;
//! let ca_file = fake.write_ca(dir.path())?; // the daemon's `ca_file`: trusts the fake's CA
//! fake.publish_property_post("a1PK", "cam-01", br#"{"id":"1","params":{"img":"FFD8"}}"#)?;
//! // ... run the client with `cfg` ...
//! fake.wait_drained(std::time::Duration::from_secs(5)).await?;
//! # Ok(()) }
//! ```

use crate::pki::{self, PkiError, TestPki};
use fe2o3_amqp::acceptor::sasl_acceptor::SaslServerFrame;
use fe2o3_amqp::acceptor::{
    ConnectionAcceptor, LinkAcceptor, LinkEndpoint, ListenerConnectionHandle,
    ListenerSessionHandle, SaslAcceptor, SessionAcceptor,
};
use fe2o3_amqp::link::Sender;
use fe2o3_amqp::types::definitions::{self, AmqpError};
use fe2o3_amqp::types::messaging::{ApplicationProperties, Message, Outcome as AmqpOutcome};
use fe2o3_amqp::types::performatives::Open;
use fe2o3_amqp::types::primitives::{Array, Binary, Symbol};
use fe2o3_amqp::types::sasl::{SaslCode, SaslInit, SaslOutcome, SaslResponse};
use receiver_protocol::{message, sign, wire};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tracing::debug;

/// Aliyun's accepted range for the client's advertised idle-time-out, ms.
pub const IDLE_TIME_OUT_RANGE_MS: (u32, u32) = (30_000, 300_000);
/// How long a link waits for credit before giving its message back to the queue.
const CREDIT_POLL: Duration = Duration::from_millis(25);

/// Errors of the fake endpoint.
#[derive(Debug, thiserror::Error)]
pub enum FakeError {
    /// Binding or writing the CA file failed.
    #[error("fake endpoint I/O: {0}")]
    Io(#[from] std::io::Error),
    /// Certificate generation failed.
    #[error(transparent)]
    Tls(#[from] PkiError),
    /// The Alink payload is not JSON.
    #[error("alink payload is not JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A wait did not finish in time; carries the counters at that moment.
    #[error("timed out after {after:?} waiting for {what}; counters: {counters:?}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        after: Duration,
        /// The counters when giving up.
        counters: Box<FakeCounters>,
    },
}

/// Configuration of the fake endpoint.
#[derive(Debug, Clone)]
pub struct FakeConfig {
    /// Where to listen (default `127.0.0.1:0`).
    pub addr: SocketAddr,
    /// Known access keys: id -> secret.
    pub access_keys: HashMap<String, String>,
    /// The instance id a username must carry ("" = legacy instance: absent or empty).
    pub iot_instance_id: String,
    /// The consumer group a username must name.
    pub consumer_group_id: String,
    /// TCP accept to Open done (TLS + SASL + Open). Aliyun: 15 s.
    pub auth_timeout: Duration,
    /// Open to receiver link attached. Aliyun: 15 s.
    pub link_timeout: Duration,
    /// Close connections silent for longer than their advertised idle-time-out.
    pub enforce_idle: bool,
    /// Refuse Opens whose idle-time-out is absent or outside 30 000–300 000 ms.
    pub require_idle_range: bool,
    /// Idle-time-out the fake advertises in its own Open (`None`: none, which makes fe2o3 clients
    /// send no heartbeats of their own accord).
    pub advertise_idle_timeout: Option<Duration>,
    /// Keep every outcome by `messageId` ([`FakeAliyun::outcomes`]). Benchmarks turn it off: with
    /// hundreds of thousands of messages the map costs more than the rest of the fake.
    pub record_outcomes: bool,
}

/// The access key id [`FakeConfig::default`] knows.
pub const FAKE_ACCESS_KEY_ID: &str = "LTAIfakeAccessKeyId";
/// Its secret.
pub const FAKE_ACCESS_KEY_SECRET: &str = "fakeAccessKeySecret0123456789";

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            access_keys: HashMap::from([(
                FAKE_ACCESS_KEY_ID.to_string(),
                FAKE_ACCESS_KEY_SECRET.to_string(),
            )]),
            iot_instance_id: "iot-fake-instance".into(),
            consumer_group_id: "fake-group".into(),
            auth_timeout: Duration::from_secs(15),
            link_timeout: Duration::from_secs(15),
            enforce_idle: true,
            require_idle_range: true,
            advertise_idle_timeout: None,
            record_outcomes: true,
        }
    }
}

/// One message as Aliyun pushes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeMessage {
    /// `topic` application property.
    pub topic: String,
    /// `messageId` application property (identical on redelivery).
    pub message_id: String,
    /// `generateTime` application property, ms.
    pub generate_time: i64,
    /// Data body.
    pub body: Vec<u8>,
}

/// What happened to one delivery of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FakeOutcome {
    /// Accepted: removed from the queue.
    Accepted,
    /// Released: redelivered.
    Released,
    /// Modified: redelivered.
    Modified,
    /// Rejected: dropped.
    Rejected,
    /// Unsettled when its connection died: redelivered.
    Lost,
}

/// Login refusal fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefuseAuth {
    /// Check credentials normally.
    No,
    /// Refuse every login.
    All,
    /// Refuse the next K logins.
    Next(u32),
}

/// Counters (a snapshot).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FakeCounters {
    /// TCP connections accepted.
    pub tcp_accepts: u64,
    /// Connections that completed TLS + SASL + Open.
    pub connections: u64,
    /// Logins accepted.
    pub auth_ok: u64,
    /// Logins refused.
    pub auth_failures: u64,
    /// Connections closed for not finishing login within `auth_timeout`.
    pub auth_timeouts: u64,
    /// Connections closed for having no receiver link within `link_timeout`.
    pub link_timeouts: u64,
    /// Opens refused for their idle-time-out.
    pub bad_idle_time_outs: u64,
    /// Connections closed as idle.
    pub idle_closes: u64,
    /// Receiver links attached.
    pub links_attached: u64,
    /// Links refused (second link, sender link).
    pub links_refused: u64,
    /// Transfers sent.
    pub delivered: u64,
    /// Accepted outcomes.
    pub accepted: u64,
    /// Released outcomes.
    pub released: u64,
    /// Modified outcomes.
    pub modified: u64,
    /// Rejected outcomes.
    pub rejected: u64,
    /// Deliveries left unsettled by a dying connection.
    pub lost: u64,
    /// Messages put back into the queue (released, modified, lost).
    pub redeliveries: u64,
    /// Duplicates injected.
    pub duplicates_injected: u64,
    /// Connections cut by fault injection.
    pub cuts: u64,
}

/// One login attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthRecord {
    /// Client id from the username ("" if unparsable).
    pub client_id: String,
    /// `timestamp` parameter, verbatim.
    pub timestamp: Option<String>,
    /// `signMethod` parameter, verbatim.
    pub sign_method: Option<String>,
    /// `authMode` parameter.
    pub auth_mode: Option<String>,
    /// Accepted?
    pub ok: bool,
    /// Why refused (or "ok").
    pub reason: &'static str,
}

/// One client Open frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenRecord {
    /// The Open's container id.
    pub container_id: String,
    /// The advertised idle-time-out, ms.
    pub idle_time_out_ms: Option<u32>,
    /// The Open's hostname.
    pub hostname: Option<String>,
}

#[derive(Debug)]
struct Faults {
    cut_after: Option<u64>,
    duplicate_next: u32,
    delay: Duration,
    refuse_auth: RefuseAuth,
    reorder: bool,
}

/// A queued message and how to put it on the wire.
#[derive(Debug, Clone)]
struct Queued {
    msg: FakeMessage,
    /// Send an AmqpValue(int) body instead of Data: nothing a client can use.
    undecodable: bool,
    /// A copy made by [`FakeAliyun::duplicate_next`]: never duplicated again.
    copy: bool,
}

/// Handles on one live connection.
#[derive(Debug, Clone)]
struct ConnCtl {
    /// Kills the socket.
    kill: CancellationToken,
    /// Detaches the link (with an error) but keeps the connection.
    detach: CancellationToken,
    /// Stops all traffic without closing the socket (a half-open connection).
    frozen: Arc<AtomicBool>,
}

#[derive(Debug)]
struct State {
    queue: VecDeque<Queued>,
    in_flight: usize,
    counters: FakeCounters,
    outcomes: HashMap<String, Vec<FakeOutcome>>,
    auth_log: Vec<AuthRecord>,
    open_log: Vec<OpenRecord>,
    faults: Faults,
    conns: HashMap<u64, ConnCtl>,
    next_conn: u64,
    next_message: u64,
}

#[derive(Debug)]
struct Shared {
    cfg: FakeConfig,
    state: Mutex<State>,
    /// Wakes link pumps when the queue gains a message.
    queued: Notify,
    /// Wakes waiters when counters change.
    changed: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let r = f(&mut self.lock());
        self.changed.notify_waiters();
        r
    }

    fn push_back(&self, m: Queued) {
        self.update(|s| s.queue.push_back(m));
        self.queued.notify_waiters();
        self.queued.notify_one();
    }

    /// Gives a message taken by [`Shared::next_message`] back, unsent.
    fn give_back(&self, m: Queued) {
        self.update(|s| {
            s.in_flight -= 1;
            s.queue.push_front(m);
        });
        self.queued.notify_one();
    }

    async fn next_message(&self) -> Queued {
        loop {
            let notified = self.queued.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut s = self.lock();
                let n = s.queue.len();
                let picked = if s.faults.reorder && n > 1 {
                    s.queue.remove(rand::random_range(0..n))
                } else {
                    s.queue.pop_front()
                };
                if let Some(m) = picked {
                    // Counted as in flight from now on, so waiters never see it nowhere.
                    s.in_flight += 1;
                    return m;
                }
            }
            notified.await;
        }
    }

    fn check_login(&self, username: &str, password: &str) -> AuthRecord {
        let parsed = sign::parse_username(username);
        let mut rec = AuthRecord {
            client_id: String::new(),
            timestamp: None,
            sign_method: None,
            auth_mode: None,
            ok: false,
            reason: "ok",
        };
        let verdict: Result<(), &'static str> = (|| {
            let p = parsed.as_ref().map_err(|_| "malformed username")?;
            rec.client_id = p.client_id.clone();
            rec.timestamp = p.timestamp().map(str::to_string);
            rec.sign_method = p.get("signMethod").map(str::to_string);
            rec.auth_mode = p.auth_mode().map(str::to_string);
            {
                let mut s = self.lock();
                match s.faults.refuse_auth {
                    RefuseAuth::All => return Err("refused by fault injection"),
                    RefuseAuth::Next(k) if k > 0 => {
                        s.faults.refuse_auth = if k > 1 {
                            RefuseAuth::Next(k - 1)
                        } else {
                            RefuseAuth::No
                        };
                        return Err("refused by fault injection");
                    }
                    _ => {}
                }
            }
            if p.client_id.is_empty() || p.client_id.chars().count() > 64 {
                return Err("client id empty or longer than 64");
            }
            let secret = p
                .auth_id()
                .and_then(|ak| self.cfg.access_keys.get(ak))
                .ok_or("unknown access key id")?;
            if p.iot_instance_id() != self.cfg.iot_instance_id {
                return Err("iotInstanceId mismatch");
            }
            if p.consumer_group_id() != Some(self.cfg.consumer_group_id.as_str()) {
                return Err("consumerGroupId mismatch");
            }
            match sign::verify_password(p, password, secret) {
                Ok(true) => Ok(()),
                Ok(false) => Err("signature mismatch"),
                Err(_) => Err("bad username parameters"),
            }
        })();
        match verdict {
            Ok(()) => rec.ok = true,
            Err(why) => rec.reason = why,
        }
        self.update(|s| {
            if rec.ok {
                s.counters.auth_ok += 1;
            } else {
                s.counters.auth_failures += 1;
            }
            s.auth_log.push(rec.clone());
        });
        rec
    }
}

/// The running fake endpoint. Dropping it stops it and cuts every connection.
#[derive(Debug)]
pub struct FakeAliyun {
    addr: SocketAddr,
    pki: TestPki,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl Drop for FakeAliyun {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn now_ms() -> i64 {
    receiver_protocol::time::now_ms() as i64
}

impl FakeAliyun {
    /// Binds, generates the CA and starts accepting.
    pub async fn start(cfg: FakeConfig) -> Result<FakeAliyun, FakeError> {
        let pki = pki::generate_test_pki(&[])?;
        let listener = TcpListener::bind(cfg.addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            cfg,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                in_flight: 0,
                counters: FakeCounters::default(),
                outcomes: HashMap::new(),
                auth_log: Vec::new(),
                open_log: Vec::new(),
                faults: Faults {
                    cut_after: None,
                    duplicate_next: 0,
                    delay: Duration::ZERO,
                    refuse_auth: RefuseAuth::No,
                    reorder: false,
                },
                conns: HashMap::new(),
                next_conn: 0,
                next_message: 0,
            }),
            queued: Notify::new(),
            changed: Notify::new(),
        });
        let stop = CancellationToken::new();
        let tls_acceptor = tokio_rustls::TlsAcceptor::from(pki.server_config.clone());
        tokio::spawn(accept_loop(
            listener,
            tls_acceptor,
            shared.clone(),
            stop.clone(),
        ));
        Ok(FakeAliyun {
            addr,
            pki,
            shared,
            stop,
        })
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The CA certificate (PEM) clients must trust.
    pub fn ca_pem(&self) -> &str {
        &self.pki.ca_pem
    }

    /// The generated CA and leaf (for third-party servers in interop tests).
    pub fn pki(&self) -> &TestPki {
        &self.pki
    }

    /// Writes the CA to `dir/fake-aliyun-ca.pem` (for a client's `ca_file`) and returns its path.
    pub fn write_ca(&self, dir: &Path) -> Result<PathBuf, FakeError> {
        let ca_file = dir.join("fake-aliyun-ca.pem");
        std::fs::write(&ca_file, self.ca_pem())?;
        Ok(ca_file)
    }

    /// The configuration it runs with (credentials, instance, group).
    pub fn config(&self) -> &FakeConfig {
        &self.shared.cfg
    }

    /// Queues a message (round robin over attached links).
    pub fn publish(&self, msg: FakeMessage) {
        self.shared.push_back(Queued {
            msg,
            undecodable: false,
            copy: false,
        });
    }

    /// Queues many messages at once, under one lock and with one wake-up (benchmarks queue a
    /// whole pre-generated stream this way).
    pub fn publish_many(&self, msgs: impl IntoIterator<Item = FakeMessage>) {
        self.shared.update(|s| {
            s.queue.extend(msgs.into_iter().map(|msg| Queued {
                msg,
                undecodable: false,
                copy: false,
            }))
        });
        self.shared.queued.notify_waiters();
        self.shared.queued.notify_one();
    }

    /// Queues a message whose body is an AmqpValue holding an int: a client cannot turn it into
    /// bytes and should reject it.
    pub fn publish_undecodable(&self, topic: &str, message_id: &str) {
        self.shared.push_back(Queued {
            msg: FakeMessage {
                topic: topic.to_string(),
                message_id: message_id.to_string(),
                generate_time: now_ms(),
                body: Vec::new(),
            },
            undecodable: true,
            copy: false,
        });
    }

    /// Queues the message Aliyun forwards for a device's property post: topic
    /// `/{pk}/{dn}/thing/event/property/post`, body from [`message::forward_property_post`],
    /// a fresh numeric `messageId` (returned) and `generateTime` = now.
    pub fn publish_property_post(
        &self,
        product_key: &str,
        device_name: &str,
        alink: &[u8],
    ) -> Result<String, FakeError> {
        let now = now_ms();
        let body = message::forward_property_post(product_key, device_name, alink, now)?;
        let seq = self.shared.update(|s| {
            s.next_message += 1;
            s.next_message
        });
        let message_id = format!("{}{:06}", now, seq % 1_000_000);
        self.publish(FakeMessage {
            topic: wire::forwarded_topic(product_key, device_name),
            message_id: message_id.clone(),
            generate_time: now,
            body,
        });
        Ok(message_id)
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> FakeCounters {
        self.shared.lock().counters.clone()
    }

    /// Every outcome so far, by `messageId`, in order.
    pub fn outcomes(&self) -> HashMap<String, Vec<FakeOutcome>> {
        self.shared.lock().outcomes.clone()
    }

    /// Every login attempt so far.
    pub fn auth_log(&self) -> Vec<AuthRecord> {
        self.shared.lock().auth_log.clone()
    }

    /// Every client Open frame so far.
    pub fn open_log(&self) -> Vec<OpenRecord> {
        self.shared.lock().open_log.clone()
    }

    /// Messages waiting in the queue (not in flight).
    pub fn queued(&self) -> usize {
        self.shared.lock().queue.len()
    }

    /// Deliveries sent and not yet settled.
    pub fn in_flight(&self) -> usize {
        self.shared.lock().in_flight
    }

    /// Connections currently open.
    pub fn live_connections(&self) -> usize {
        self.shared.lock().conns.len()
    }

    /// Cuts the socket of the connection that makes the `n`-th next delivery, right after it.
    pub fn cut_after(&self, n: u64) {
        self.shared.update(|s| s.faults.cut_after = Some(n.max(1)));
    }

    /// Cuts every open connection now (no Close frame: the socket just dies).
    pub fn cut_all(&self) {
        self.shared.update(|s| {
            for c in s.conns.values() {
                c.kill.cancel();
            }
            s.counters.cuts += s.conns.len() as u64;
        });
    }

    /// Detaches every attached link with `amqp:not-allowed`, keeping the connections open.
    pub fn detach_all(&self) {
        self.shared
            .update(|s| s.conns.values().for_each(|c| c.detach.cancel()));
    }

    /// Freezes every open connection: the socket stays open but no byte moves either way (a
    /// half-open connection, as seen after a silent network failure).
    pub fn freeze_all(&self) {
        self.shared.update(|s| {
            s.conns
                .values()
                .for_each(|c| c.frozen.store(true, Ordering::SeqCst))
        });
    }

    /// Delivers each of the next `n` messages twice (same `messageId`).
    pub fn duplicate_next(&self, n: u32) {
        self.shared.update(|s| s.faults.duplicate_next = n);
    }

    /// Waits this long before each delivery.
    pub fn set_delay(&self, delay: Duration) {
        self.shared.update(|s| s.faults.delay = delay);
    }

    /// Refuses logins.
    pub fn refuse_auth(&self, mode: RefuseAuth) {
        self.shared.update(|s| s.faults.refuse_auth = mode);
    }

    /// Delivers queued messages in random order.
    pub fn set_reorder(&self, on: bool) {
        self.shared.update(|s| s.faults.reorder = on);
    }

    /// Waits until `pred(counters)` holds.
    pub async fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&FakeCounters, usize, usize) -> bool,
    ) -> Result<(), FakeError> {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.shared.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let s = self.shared.lock();
                if pred(&s.counters, s.queue.len(), s.in_flight) {
                    return Ok(());
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(FakeError::Timeout {
                    what: what.to_string(),
                    after: timeout,
                    counters: Box::new(self.counters()),
                });
            }
        }
    }

    /// Waits until at least `n` outcomes (accepted + released + modified + rejected) arrived.
    pub async fn wait_settled(&self, n: u64, timeout: Duration) -> Result<(), FakeError> {
        self.wait_until(&format!("{n} settlements"), timeout, |c, _, _| {
            c.accepted + c.released + c.modified + c.rejected >= n
        })
        .await
    }

    /// Waits until at least `n` deliveries were accepted.
    pub async fn wait_accepted(&self, n: u64, timeout: Duration) -> Result<(), FakeError> {
        self.wait_until(&format!("{n} accepted"), timeout, |c, _, _| c.accepted >= n)
            .await
    }

    /// Waits until the queue is empty and nothing is in flight (every message accepted or
    /// rejected).
    pub async fn wait_drained(&self, timeout: Duration) -> Result<(), FakeError> {
        self.wait_until("an empty queue", timeout, |_, q, f| q == 0 && f == 0)
            .await
    }

    /// Stops accepting and cuts every connection.
    pub fn shutdown(&self) {
        self.stop.cancel();
        self.cut_all();
    }
}

/// The credentials a client signs in with: the smallest access key id of `fake` and its secret.
pub fn credentials(fake: &FakeConfig) -> (String, String) {
    fake.access_keys
        .iter()
        .min()
        .map(|(a, s)| (a.clone(), s.clone()))
        .unwrap_or_default()
}

async fn accept_loop(
    listener: TcpListener,
    tls: tokio_rustls::TlsAcceptor,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    loop {
        let (tcp, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    debug!(error = %e, "fake: accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let id = shared.update(|s| {
            s.counters.tcp_accepts += 1;
            s.next_conn += 1;
            s.next_conn
        });
        debug!(%peer, id, "fake: TCP accepted");
        let kill = stop.child_token();
        tokio::spawn(handle_connection(
            shared.clone(),
            tls.clone(),
            tcp,
            id,
            kill,
        ));
    }
    // Stopping: cut every connection.
    shared.update(|s| s.conns.values().for_each(|c| c.kill.cancel()));
}

fn amqp_error(condition: AmqpError, text: &str) -> definitions::Error {
    definitions::Error::new(condition, Some(text.to_string()), None)
}

async fn handle_connection(
    shared: Arc<Shared>,
    tls: tokio_rustls::TlsAcceptor,
    tcp: TcpStream,
    id: u64,
    kill: CancellationToken,
) {
    let sniff = Arc::new(Mutex::new(Sniff::default()));
    let ctl = ConnCtl {
        kill: kill.clone(),
        detach: CancellationToken::new(),
        frozen: Arc::new(AtomicBool::new(false)),
    };
    let (switch_tx, switch_rx) = std::sync::mpsc::channel();
    let login = async {
        let stream = tls.accept(tcp).await.map_err(|e| e.to_string())?;
        let stream = SniffStream::new(stream, sniff.clone(), kill.clone(), ctl.frozen.clone());
        // Transfers produced back to back leave in one TLS write, once the connection is open.
        let (stream, switch) = receiver_net::coalesce::Coalesce::new(stream);
        let _ = switch_tx.send(switch);
        let mut builder = ConnectionAcceptor::builder()
            .container_id("fake-aliyun")
            .sasl_acceptor(AliyunSasl {
                shared: shared.clone(),
            });
        if let Some(idle) = shared.cfg.advertise_idle_timeout {
            builder = builder.idle_time_out(idle.as_millis() as u32);
        }
        builder
            .build()
            .accept(stream)
            .await
            .map_err(|e| e.to_string())
    };
    let mut conn = tokio::select! {
        _ = kill.cancelled() => return,
        r = tokio::time::timeout(shared.cfg.auth_timeout, login) => match r {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                debug!(id, error = %e, "fake: login failed");
                return;
            }
            Err(_) => {
                debug!(id, "fake: login timeout");
                shared.update(|s| s.counters.auth_timeouts += 1);
                return;
            }
        },
    };
    if let Ok(switch) = switch_rx.try_recv() {
        switch.enable();
    }
    let open = lock(&sniff).open.clone();
    let idle_ms = open.as_ref().and_then(|o| o.idle_time_out);
    shared.update(|s| {
        s.open_log.push(OpenRecord {
            container_id: open
                .as_ref()
                .map(|o| o.container_id.clone())
                .unwrap_or_default(),
            idle_time_out_ms: idle_ms,
            hostname: open.as_ref().and_then(|o| o.hostname.clone()),
        })
    });
    let idle_ok = idle_ms
        .is_some_and(|ms| (IDLE_TIME_OUT_RANGE_MS.0..=IDLE_TIME_OUT_RANGE_MS.1).contains(&ms));
    if shared.cfg.require_idle_range && !idle_ok {
        shared.update(|s| s.counters.bad_idle_time_outs += 1);
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            conn.close_with_error(amqp_error(
                AmqpError::InvalidField,
                "idle-time-out must be within 30000-300000 ms",
            )),
        )
        .await;
        return;
    }
    shared.update(|s| {
        s.counters.connections += 1;
        s.conns.insert(id, ctl.clone());
    });
    serve_connection(&shared, &mut conn, id, &ctl, &sniff, idle_ms).await;
    shared.update(|s| {
        s.conns.remove(&id);
    });
    kill.cancel();
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn serve_connection(
    shared: &Arc<Shared>,
    conn: &mut ListenerConnectionHandle,
    id: u64,
    ctl: &ConnCtl,
    sniff: &Arc<Mutex<Sniff>>,
    idle_ms: Option<u32>,
) {
    let kill = &ctl.kill;
    let links = Arc::new(AtomicUsize::new(0));
    let attached = Arc::new(Notify::new());
    let link_deadline = tokio::time::sleep(shared.cfg.link_timeout);
    tokio::pin!(link_deadline);
    let idle = idle_ms
        .filter(|_| shared.cfg.enforce_idle)
        .map(|ms| Duration::from_millis(u64::from(ms)));
    let tick = idle.map(|d| (d / 10).max(Duration::from_millis(10)));
    let mut ticker = tokio::time::interval(tick.unwrap_or(Duration::from_secs(3600)));
    let mut have_link = false;
    loop {
        tokio::select! {
            _ = kill.cancelled() => break,
            _ = attached.notified(), if !have_link => have_link = true,
            _ = &mut link_deadline, if !have_link => {
                if links.load(Ordering::SeqCst) > 0 {
                    have_link = true;
                    continue;
                }
                shared.update(|s| s.counters.link_timeouts += 1);
                debug!(id, "fake: no receiver link in time; closing");
                let _ = tokio::time::timeout(
                    Duration::from_secs(2),
                    conn.close_with_error(amqp_error(
                        AmqpError::ResourceLimitExceeded,
                        "no receiver link within the link timeout",
                    )),
                )
                .await;
                break;
            }
            _ = ticker.tick(), if idle.is_some() => {
                let silent = lock(sniff).last_read.elapsed();
                if idle.is_some_and(|d| silent > d) {
                    debug!(id, silent_ms = silent.as_millis() as u64, "fake: idle; closing");
                    shared.update(|s| s.counters.idle_closes += 1);
                    break;
                }
            }
            incoming = conn.next_incoming_session() => {
                let Some(incoming) = incoming else { break };
                match SessionAcceptor::new().accept_incoming_session(incoming, conn).await {
                    Ok(session) => {
                        tokio::spawn(serve_session(
                            shared.clone(),
                            session,
                            links.clone(),
                            attached.clone(),
                            ctl.clone(),
                        ));
                    }
                    Err(e) => {
                        debug!(id, error = %e, "fake: session begin failed");
                        break;
                    }
                }
            }
        }
    }
}

async fn serve_session(
    shared: Arc<Shared>,
    mut session: ListenerSessionHandle,
    links: Arc<AtomicUsize>,
    attached: Arc<Notify>,
    ctl: ConnCtl,
) {
    let kill = ctl.kill.clone();
    let acceptor = LinkAcceptor::builder()
        .verify_incoming_source(false)
        .verify_incoming_target(false)
        .build();
    loop {
        let attach = tokio::select! {
            _ = kill.cancelled() => break,
            a = session.next_incoming_attach() => match a {
                Some(a) => a,
                None => break,
            },
        };
        let endpoint = match acceptor.accept_incoming_attach(attach, &mut session).await {
            Ok(e) => e,
            Err(e) => {
                debug!(error = %e, "fake: attach failed");
                continue;
            }
        };
        match endpoint {
            LinkEndpoint::Sender(sender) if links.fetch_add(1, Ordering::SeqCst) == 0 => {
                shared.update(|s| s.counters.links_attached += 1);
                attached.notify_one();
                tokio::spawn(pump(shared.clone(), sender, ctl.clone()));
            }
            LinkEndpoint::Sender(sender) => {
                shared.update(|s| s.counters.links_refused += 1);
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(
                        Duration::from_secs(2),
                        sender.close_with_error(amqp_error(
                            AmqpError::NotAllowed,
                            "only one receiver link per connection",
                        )),
                    )
                    .await;
                });
            }
            LinkEndpoint::Receiver(receiver) => {
                shared.update(|s| s.counters.links_refused += 1);
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(
                        Duration::from_secs(2),
                        receiver.close_with_error(amqp_error(
                            AmqpError::NotAllowed,
                            "sender links are not supported",
                        )),
                    )
                    .await;
                });
            }
        }
    }
    // Keep the session's links alive until the connection goes.
    kill.cancelled().await;
    drop(session);
}

fn properties(m: &FakeMessage) -> ApplicationProperties {
    ApplicationProperties::builder()
        .insert("topic", m.topic.clone())
        .insert("messageId", m.message_id.clone())
        .insert("generateTime", m.generate_time)
        .build()
}

type SendResult = Result<
    fe2o3_amqp::link::delivery::DeliveryFut<Result<AmqpOutcome, fe2o3_amqp::link::SendError>>,
    fe2o3_amqp::link::SendError,
>;

/// Sends one message (waiting for credit; cancel-safe).
async fn send(sender: &mut Sender, q: &Queued) -> SendResult {
    let builder = Message::builder().application_properties(properties(&q.msg));
    if q.undecodable {
        sender.send_batchable(builder.value(5i32).build()).await
    } else {
        sender
            .send_batchable(builder.data(Binary::from(q.msg.body.clone())).build())
            .await
    }
}

/// Pushes queued messages over one link until it or its connection ends.
async fn pump(shared: Arc<Shared>, mut sender: Sender, ctl: ConnCtl) {
    let kill = ctl.kill.clone();
    loop {
        let msg = tokio::select! {
            _ = kill.cancelled() => break,
            _ = ctl.detach.cancelled() => {
                let _ = tokio::time::timeout(
                    Duration::from_secs(2),
                    sender.close_with_error(amqp_error(
                        AmqpError::NotAllowed,
                        "link detached by fault injection",
                    )),
                )
                .await;
                return;
            }
            _ = sender.on_detach() => break,
            m = shared.next_message() => m,
        };
        let delay = shared.lock().faults.delay;
        if !delay.is_zero() {
            tokio::select! {
                _ = kill.cancelled() => { shared.give_back(msg); break; }
                _ = tokio::time::sleep(delay) => {}
            }
        }
        let sent = tokio::select! {
            _ = kill.cancelled() => { shared.give_back(msg); break; }
            r = tokio::time::timeout(CREDIT_POLL, send(&mut sender, &msg)) => r,
        };
        let fut = match sent {
            Err(_) => {
                // No credit: give the message back so another link may take it.
                shared.give_back(msg);
                tokio::time::sleep(CREDIT_POLL).await;
                continue;
            }
            Ok(Err(e)) => {
                debug!(error = %e, "fake: send failed");
                shared.give_back(msg);
                break;
            }
            Ok(Ok(fut)) => fut,
        };
        let (cut, dup) = shared.update(|s| {
            s.counters.delivered += 1;
            let cut = match s.faults.cut_after {
                Some(1) => {
                    s.faults.cut_after = None;
                    s.counters.cuts += 1;
                    true
                }
                Some(n) => {
                    s.faults.cut_after = Some(n - 1);
                    false
                }
                None => false,
            };
            let dup = s.faults.duplicate_next > 0 && !msg.copy;
            if dup {
                s.faults.duplicate_next -= 1;
                s.counters.duplicates_injected += 1;
            }
            (cut, dup)
        });
        if dup {
            shared.push_back(Queued {
                copy: true,
                ..msg.clone()
            });
        }
        // Let other links take the next message (round robin among links with credit).
        tokio::task::yield_now().await;
        let watcher = shared.clone();
        tokio::spawn(async move {
            let outcome = match fut.await {
                Ok(AmqpOutcome::Accepted(_)) => FakeOutcome::Accepted,
                Ok(AmqpOutcome::Released(_)) => FakeOutcome::Released,
                Ok(AmqpOutcome::Modified(_)) => FakeOutcome::Modified,
                Ok(AmqpOutcome::Rejected(_)) => FakeOutcome::Rejected,
                Err(_) => FakeOutcome::Lost,
            };
            let record = watcher.cfg.record_outcomes;
            let redeliver = matches!(
                outcome,
                FakeOutcome::Released | FakeOutcome::Modified | FakeOutcome::Lost
            );
            watcher.update(|s| {
                s.in_flight -= 1;
                let c = &mut s.counters;
                match outcome {
                    FakeOutcome::Accepted => c.accepted += 1,
                    FakeOutcome::Released => c.released += 1,
                    FakeOutcome::Modified => c.modified += 1,
                    FakeOutcome::Rejected => c.rejected += 1,
                    FakeOutcome::Lost => c.lost += 1,
                }
                if redeliver {
                    c.redeliveries += 1;
                }
                if record {
                    s.outcomes
                        .entry(msg.msg.message_id.clone())
                        .or_default()
                        .push(outcome);
                }
                if redeliver {
                    // In the same critical section: never "nothing queued, nothing in flight".
                    s.queue.push_back(msg);
                }
            });
            if redeliver {
                watcher.queued.notify_one();
            }
        });
        if cut {
            // Let the transfer reach the socket, then kill it.
            let kill = kill.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                kill.cancel();
            });
        }
    }
}

/// SASL PLAIN, verified the way Aliyun does.
#[derive(Debug, Clone)]
struct AliyunSasl {
    shared: Arc<Shared>,
}

fn sasl_outcome(code: SaslCode) -> SaslServerFrame {
    SaslServerFrame::Outcome(SaslOutcome {
        code,
        additional_data: None,
    })
}

impl SaslAcceptor for AliyunSasl {
    fn mechanisms(&self) -> Array<Symbol> {
        Array::from(vec![Symbol::from("PLAIN")])
    }

    fn on_init(&mut self, init: SaslInit) -> SaslServerFrame {
        if init.mechanism.0 != "PLAIN" {
            return sasl_outcome(SaslCode::Auth);
        }
        let Some(response) = init.initial_response else {
            return sasl_outcome(SaslCode::Auth);
        };
        let mut parts = response.split(|b| *b == 0);
        let (_authzid, user, pass) = (parts.next(), parts.next(), parts.next());
        let (Some(user), Some(pass)) = (user, pass) else {
            return sasl_outcome(SaslCode::Auth);
        };
        let user = String::from_utf8_lossy(user);
        let pass = String::from_utf8_lossy(pass);
        if self.shared.check_login(&user, &pass).ok {
            sasl_outcome(SaslCode::Ok)
        } else {
            sasl_outcome(SaslCode::Auth)
        }
    }

    fn on_response(&mut self, _response: SaslResponse) -> SaslServerFrame {
        sasl_outcome(SaslCode::Sys)
    }
}

/// What the sniffer learnt from the client's bytes.
#[derive(Debug)]
struct Sniff {
    buf: Vec<u8>,
    amqp: bool,
    done: bool,
    open: Option<Open>,
    last_read: Instant,
}

impl Default for Sniff {
    fn default() -> Self {
        Sniff {
            buf: Vec::new(),
            amqp: false,
            done: false,
            open: None,
            last_read: Instant::now(),
        }
    }
}

impl Sniff {
    /// Feeds client bytes until the Open frame is found (SASL header, SASL frames, AMQP header,
    /// then the first non-empty AMQP frame).
    fn feed(&mut self, bytes: &[u8]) {
        self.last_read = Instant::now();
        if self.done {
            return;
        }
        self.buf.extend_from_slice(bytes);
        loop {
            if self.buf.len() < 8 {
                return;
            }
            if self.buf.starts_with(b"AMQP") {
                self.amqp = self.buf[4] == 0;
                self.buf.drain(..8);
                continue;
            }
            let size =
                u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
            if !(8..=1 << 20).contains(&size) {
                self.finish();
                return;
            }
            if self.buf.len() < size {
                return;
            }
            let doff = usize::from(self.buf[4]) * 4;
            let frame_type = self.buf[5];
            if self.amqp && frame_type == 0 && size > doff && doff >= 8 {
                self.open = serde_amqp::from_slice::<Open>(&self.buf[doff..size]).ok();
                self.finish();
                return;
            }
            self.buf.drain(..size);
        }
    }

    fn finish(&mut self) {
        self.done = true;
        self.buf = Vec::new();
    }
}

/// A server-side stream that records what the client sends (Open frame, last activity) and can
/// be cut by fault injection.
struct SniffStream<S> {
    inner: S,
    sniff: Arc<Mutex<Sniff>>,
    frozen: Arc<AtomicBool>,
    cut: Pin<Box<WaitForCancellationFutureOwned>>,
    is_cut: bool,
}

impl<S> std::fmt::Debug for SniffStream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SniffStream")
            .field("is_cut", &self.is_cut)
            .finish()
    }
}

impl<S> SniffStream<S> {
    fn new(
        inner: S,
        sniff: Arc<Mutex<Sniff>>,
        kill: CancellationToken,
        frozen: Arc<AtomicBool>,
    ) -> Self {
        SniffStream {
            inner,
            sniff,
            frozen,
            cut: Box::pin(kill.cancelled_owned()),
            is_cut: false,
        }
    }

    fn poll_cut(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.is_cut && self.cut.as_mut().poll(cx).is_ready() {
            self.is_cut = true;
        }
        self.is_cut
    }
}

fn cut_error() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "cut by the fake")
}

use std::future::Future as _;

impl<S: AsyncRead + Unpin> AsyncRead for SniffStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.poll_cut(cx) {
            return Poll::Ready(Err(cut_error()));
        }
        if this.frozen.load(Ordering::SeqCst) {
            // Half-open: nothing arrives any more (woken only by a cut).
            return Poll::Pending;
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &r {
            let new = &buf.filled()[before..];
            if !new.is_empty() {
                lock(&this.sniff).feed(new);
            }
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SniffStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if this.poll_cut(cx) {
            return Poll::Ready(Err(cut_error()));
        }
        if this.frozen.load(Ordering::SeqCst) {
            // Half-open: what is written is lost.
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.poll_cut(cx) {
            return Poll::Ready(Err(cut_error()));
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffer_finds_the_open_frame() {
        use serde_amqp::to_vec;
        let open = Open {
            container_id: "c-1".into(),
            hostname: Some("h".into()),
            max_frame_size: Default::default(),
            channel_max: Default::default(),
            idle_time_out: Some(60_000),
            outgoing_locales: None,
            incoming_locales: None,
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        };
        let body = to_vec(&open).unwrap();
        let mut bytes = b"AMQP\x03\x01\x00\x00".to_vec();
        // A SASL init frame (content irrelevant here).
        let sasl = [0u8, 0, 0, 12, 2, 1, 0, 0, 0xde, 0xad, 0xbe, 0xef];
        bytes.extend_from_slice(&sasl);
        bytes.extend_from_slice(b"AMQP\x00\x01\x00\x00");
        bytes.extend_from_slice(&((8 + body.len()) as u32).to_be_bytes());
        bytes.extend_from_slice(&[2, 0, 0, 0]);
        bytes.extend_from_slice(&body);
        let mut s = Sniff::default();
        for chunk in bytes.chunks(5) {
            s.feed(chunk);
        }
        let got = s.open.unwrap();
        assert_eq!(got.idle_time_out, Some(60_000));
        assert_eq!(got.container_id, "c-1");
    }
}

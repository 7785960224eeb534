//! The Aliyun AMQP 1.0 consumer: one task per connection, each with exactly one receiver link.
//!
//! [`run_connection`] loops until shutdown:
//!
//! 1. waits for a slot in the shared [`ConnectLimiter`] (Aliyun allows at most 100 connection
//!    attempts per minute per consumer group);
//! 2. TCP connect (`TCP_NODELAY`), pure TLS (SNI = host), SASL PLAIN with a username and password
//!    signed with a fresh timestamp, Open advertising an idle-time-out inside Aliyun's 30–300 s,
//!    Begin, and one receiver link (explicit settlement, manual credit), all within
//!    `setup_timeout`;
//! 3. hands every delivery to the engine as an [`Inbound`] and settles it with whatever
//!    [`Outcome`] comes back through its [`Settler`]; grants credit in batches, never while
//!    `paused` is true;
//! 4. on any close, detach, error or idle time-out: reconnects with capped exponential backoff and
//!    jitter (reset only after a stable period). A refused login is reported once and retried no
//!    faster than every [`AUTH_RETRY`].
//!
//! Every delivery gets exactly one outcome: the engine's, `reject` when the message cannot be
//! decoded, or `release` when the engine drops the settler or the daemon shuts down. Deliveries
//! still unsettled when a connection dies are redelivered by Aliyun.
//!
//! Secrets never reach a log line or an error: the password is not logged and neither is the
//! username (an STS username embeds the security token).

use super::{Inbound, Outcome, Settler};
use crate::config::AliyunConfig;
use crate::events::amqp as events;
use crate::message::RawDelivery;
use crate::sign::{self, SignError, SignParams};
use crate::tls::{self, TlsError};
use fe2o3_amqp::connection::{ConnectionHandle, OpenError};
use fe2o3_amqp::link::delivery::DeliveryInfo;
use fe2o3_amqp::link::{Receiver, RecvError};
use fe2o3_amqp::sasl_profile::SaslProfile;
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::types::messaging::{Body, Message, Source};
use fe2o3_amqp::types::primitives::{SimpleValue, Value};
use fe2o3_amqp::types::sasl::SaslCode;
use fe2o3_amqp::{Connection, Session};
use receiver_protocol::time::{now_ms, Backoff};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::{timeout, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn, Instrument};

/// First reconnect delay (before jitter).
pub const BACKOFF_INITIAL: Duration = Duration::from_secs(1);
/// A connection that stayed up this long resets the backoff.
pub const STABLE_AFTER: Duration = Duration::from_secs(60);
/// Retry period after the endpoint refused the credentials.
pub const AUTH_RETRY: Duration = Duration::from_secs(60);
/// Aliyun's range for the advertised idle-time-out.
pub const IDLE_RANGE: (Duration, Duration) = (Duration::from_secs(30), Duration::from_secs(300));
/// On shutdown: how long the engine may still settle what it holds.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// On shutdown: deadline for closing link, session and connection.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);
/// After a failure: how long to try closing the dead connection cleanly before reconnecting.
const LOST_CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// On shutdown: a link that delivered nothing for this long after the drain request is empty.
const DRAIN_QUIET: Duration = Duration::from_millis(100);
/// Aliyun's limit on the client id.
pub const MAX_CLIENT_ID: usize = 64;

/// Fatal errors: `run_connection` returns only on these (or `Ok` on shutdown).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The configuration cannot work (retrying would not help).
    #[error("invalid AMQP configuration: {0}")]
    Config(String),
    /// The TLS configuration (extra CA file, host name) is unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The credentials cannot be expressed in a username.
    #[error("credentials: {0}")]
    Sign(#[from] SignError),
    /// The engine dropped its receiving end: nobody is left to process deliveries.
    #[error("the engine stopped taking deliveries")]
    EngineGone,
}

/// Why one connection attempt ended (logged, then retried).
#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error("TCP connect to {addr} failed: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("TLS handshake failed: {0}")]
    Tls(std::io::Error),
    #[error("the endpoint refused the credentials: check access_key_id/secret, iot_instance_id, consumer_group_id")]
    Auth,
    #[error("SASL failed with code {0:?}")]
    Sasl(SaslCode),
    #[error("AMQP open failed: {0}")]
    Open(OpenError),
    #[error("session begin failed: {0}")]
    Begin(String),
    #[error("receiver link attach failed: {0}")]
    Attach(String),
    #[error("setup did not finish within {0:?} (stuck in {1})")]
    SetupTimeout(Duration, &'static str),
    #[error("link lost: {0}")]
    Lost(String),
    #[error("the engine stopped taking deliveries")]
    EngineGone,
    #[error(transparent)]
    Sign(#[from] SignError),
}

/// Health and counters of one connection, shared with the daemon's health/metrics.
#[derive(Debug, Default)]
pub struct ConnState {
    /// True while the receiver link is attached.
    pub link_attached: AtomicBool,
    /// Wall clock of the last delivery, ms since the epoch (0 = none yet).
    pub last_delivery_ms: AtomicU64,
    /// Connection attempts (including the first).
    pub attempts: AtomicU64,
    /// Attempts that reached an attached link.
    pub connects: AtomicU64,
    /// Attempts after the first one.
    pub reconnects: AtomicU64,
    /// Logins refused by the endpoint.
    pub auth_failures: AtomicU64,
    /// Deliveries received.
    pub deliveries: AtomicU64,
    /// Deliveries accepted.
    pub accepted: AtomicU64,
    /// Deliveries released.
    pub released: AtomicU64,
    /// Deliveries rejected (engine verdict or undecodable).
    pub rejected: AtomicU64,
    /// Wall clock when the current link was attached, ms since the epoch (0 = not attached).
    pub connected_since_ms: AtomicU64,
    /// Wall clock when an attached link was last lost, ms since the epoch (0 = never): the
    /// deliveries it had in flight come back later, after newer ones.
    pub lost_at_ms: AtomicU64,
}

impl ConnState {
    /// A fresh, shareable state.
    pub fn new() -> Arc<Self> {
        Arc::new(ConnState::default())
    }
}

/// Limits connection attempts across all connections of a consumer group (Aliyun: at most 100
/// per minute). Share one `Arc<ConnectLimiter>` between every `run_connection` of the process.
#[derive(Debug)]
pub struct ConnectLimiter {
    max: usize,
    window: Duration,
    recent: Mutex<VecDeque<Instant>>,
}

impl ConnectLimiter {
    /// At most `max` attempts in any `window`.
    pub fn new(max: usize, window: Duration) -> Self {
        ConnectLimiter {
            max: max.max(1),
            window,
            recent: Mutex::new(VecDeque::new()),
        }
    }

    /// Aliyun's limit: 100 attempts per minute per consumer group.
    pub fn aliyun() -> Arc<Self> {
        Arc::new(ConnectLimiter::new(100, Duration::from_secs(60)))
    }

    /// Waits until an attempt is allowed and records it.
    pub async fn acquire(&self) {
        loop {
            let wait_until = {
                let now = Instant::now();
                let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
                while recent
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= self.window)
                {
                    recent.pop_front();
                }
                if recent.len() < self.max {
                    recent.push_back(now);
                    return;
                }
                match recent.front() {
                    Some(oldest) => *oldest + self.window,
                    None => now,
                }
            };
            debug!(
                wait_ms = wait_until
                    .saturating_duration_since(Instant::now())
                    .as_millis() as u64,
                "connection attempt rate limit reached; waiting"
            );
            tokio::time::sleep_until(wait_until).await;
        }
    }
}

/// The client id of connection `index`: `{client_id}-{index}` when there are several connections.
pub fn connection_client_id(cfg: &AliyunConfig, index: usize) -> Result<String, ClientError> {
    let id = if cfg.connections > 1 {
        format!("{}-{index}", cfg.client_id)
    } else {
        cfg.client_id.clone()
    };
    if id.is_empty() || id.chars().count() > MAX_CLIENT_ID {
        return Err(ClientError::Config(format!(
            "client id {id:?} must be 1..={MAX_CLIENT_ID} characters"
        )));
    }
    Ok(id)
}

/// The idle-time-out advertised in the Open frame: `cfg.idle_timeout` clamped to Aliyun's
/// 30–300 s. (fe2o3 advertises half of what it is given and enforces the full value locally, so
/// the client passes twice this value: a silent peer is detected after 2x.)
pub fn advertised_idle_timeout(cfg: &AliyunConfig) -> Duration {
    cfg.idle_timeout.clamp(IDLE_RANGE.0, IDLE_RANGE.1)
}

/// Opens the TCP connection with `TCP_NODELAY`: small dispositions and flow frames must not wait
/// for Nagle's algorithm (with it, throughput falls to a few thousand messages a second).
pub async fn connect_tcp(host: &str, port: u16) -> std::io::Result<TcpStream> {
    let tcp = TcpStream::connect((host, port)).await?;
    if let Err(e) = tcp.set_nodelay(true) {
        debug!(error = %e, "TCP_NODELAY not set");
    }
    Ok(tcp)
}

/// Runs connection `index` until `shutdown` is cancelled. Returns `Ok` on shutdown and an error
/// only when retrying cannot help (bad configuration, engine gone).
pub async fn run_connection(
    index: usize,
    cfg: Arc<AliyunConfig>,
    tx: mpsc::Sender<Inbound>,
    paused: watch::Receiver<bool>,
    state: Arc<ConnState>,
    limiter: Arc<ConnectLimiter>,
    shutdown: CancellationToken,
) -> Result<(), ClientError> {
    let span = tracing::info_span!("amqp", conn = index);
    run_inner(index, cfg, tx, paused, state, limiter, shutdown)
        .instrument(span)
        .await
}

async fn run_inner(
    index: usize,
    cfg: Arc<AliyunConfig>,
    tx: mpsc::Sender<Inbound>,
    mut paused: watch::Receiver<bool>,
    state: Arc<ConnState>,
    limiter: Arc<ConnectLimiter>,
    shutdown: CancellationToken,
) -> Result<(), ClientError> {
    let client_id = connection_client_id(&cfg, index)?;
    let tls_config = tls::client_config(cfg.ca_file.as_deref())?;
    let server_name = tls::server_name(&cfg.host)?;
    if cfg.idle_timeout != advertised_idle_timeout(&cfg) {
        warn!(
            configured_ms = cfg.idle_timeout.as_millis() as u64,
            advertised_ms = advertised_idle_timeout(&cfg).as_millis() as u64,
            "idle_timeout outside Aliyun's 30-300 s; clamped"
        );
    }
    // Fail fast on credentials that cannot be expressed (e.g. a ',' in the group id).
    sign_now(&cfg, &client_id)?;

    let ctx = Attempt {
        index,
        cfg: cfg.clone(),
        client_id,
        connector: tokio_rustls::TlsConnector::from(tls_config),
        server_name,
        state: state.clone(),
    };
    let mut backoff = Backoff::new(BACKOFF_INITIAL, cfg.reconnect_max);
    let mut auth_reported = false;
    let mut attempt: u64 = 0;
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Ok(()),
            _ = limiter.acquire() => {}
        }
        attempt += 1;
        events::ConnectAttempt { attempt }.emit(&state);
        let result = ctx.run(&tx, &mut paused, &shutdown).await;
        // A lost link's time is stored before the next attempt can deliver anything (the engine
        // reads it first).
        let lost = matches!(result, Err((_, Some(_))));
        events::LinkDetached {
            lost_at_ms: lost.then(now_ms),
        }
        .emit(&state);
        let (error, up_for) = match result {
            Ok(()) => return Ok(()),
            Err((error, up_for)) => (error, up_for),
        };
        if up_for.is_some() {
            auth_reported = false;
        }
        if up_for.is_some_and(|d| d >= STABLE_AFTER) {
            backoff.reset();
        }
        let delay = match &error {
            AttemptError::EngineGone => return Err(ClientError::EngineGone),
            AttemptError::Sign(e) => return Err(ClientError::Sign(e.clone())),
            AttemptError::Auth => {
                let delay = backoff.next_delay(rand::random()).max(AUTH_RETRY);
                events::LoginRefused {
                    attempt,
                    delay,
                    error: &error,
                    first: !auth_reported,
                }
                .emit(&state);
                auth_reported = true;
                delay
            }
            _ => {
                let delay = backoff.next_delay(rand::random());
                events::ConnectionLost {
                    attempt,
                    delay,
                    up_for,
                    error: &error,
                }
                .emit();
                delay
            }
        };
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

fn sign_now(cfg: &AliyunConfig, client_id: &str) -> Result<sign::Credentials, SignError> {
    sign::sign(&SignParams {
        client_id,
        access_key_id: &cfg.access_key_id,
        access_key_secret: cfg.access_key_secret.expose(),
        iot_instance_id: &cfg.iot_instance_id,
        consumer_group_id: &cfg.consumer_group_id,
        sign_method: cfg.sign_method,
        auth_mode: &cfg.auth_mode,
        timestamp_ms: now_ms(),
    })
}

/// Everything one connection attempt needs.
struct Attempt {
    index: usize,
    cfg: Arc<AliyunConfig>,
    client_id: String,
    connector: tokio_rustls::TlsConnector,
    server_name: rustls::pki_types::ServerName<'static>,
    state: Arc<ConnState>,
}

type Live = (ConnectionHandle<()>, SessionHandle<()>, Receiver);

impl Attempt {
    /// One attempt: `Ok` on shutdown; otherwise the error and how long the link was up (`None`
    /// when setup failed).
    async fn run(
        &self,
        tx: &mpsc::Sender<Inbound>,
        paused: &mut watch::Receiver<bool>,
        shutdown: &CancellationToken,
    ) -> Result<(), (AttemptError, Option<Duration>)> {
        let stage = Arc::new(Mutex::new("tcp connect"));
        let setup = self.setup(stage.clone());
        let (mut conn, mut session, receiver) = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Ok(()),
            r = timeout(self.cfg.setup_timeout, setup) => match r {
                Ok(Ok(live)) => live,
                Ok(Err(e)) => return Err((e, None)),
                Err(_) => {
                    let stage = *stage.lock().unwrap_or_else(|p| p.into_inner());
                    return Err((AttemptError::SetupTimeout(self.cfg.setup_timeout, stage), None));
                }
            },
        };
        let since = Instant::now();
        events::LinkAttached {
            client_id: &self.client_id,
            advertised_idle_ms: advertised_idle_timeout(&self.cfg).as_millis() as u64,
            credit: self.cfg.credit,
            now_ms: now_ms(),
        }
        .emit(&self.state);
        let (otx, orx) = mpsc::unbounded_channel();
        let mut link = Link {
            index: self.index,
            receiver,
            window: self.cfg.credit.max(1),
            inflight: HashMap::new(),
            pending: VecDeque::new(),
            next_tag: 0,
            state: self.state.clone(),
            otx,
            orx,
        };
        let result = link.pump(tx, paused, shutdown, &self.cfg).await;
        match result {
            Ok(()) => {
                link.shutdown().await;
                close_best_effort(&mut conn, &mut session, Some(link.receiver), CLOSE_TIMEOUT)
                    .await;
                events::ConnectionClosed.emit();
                Ok(())
            }
            Err(e) => {
                // The peer is gone or misbehaving: drop everything, Aliyun redelivers.
                link.pending.clear();
                close_best_effort(&mut conn, &mut session, None, LOST_CLOSE_TIMEOUT).await;
                Err((e, Some(since.elapsed())))
            }
        }
    }

    async fn setup(&self, stage: Arc<Mutex<&'static str>>) -> Result<Live, AttemptError> {
        let set = |s: &'static str| {
            *stage.lock().unwrap_or_else(|p| p.into_inner()) = s;
        };
        let cfg = &self.cfg;
        let addr = format!("{}:{}", cfg.host, cfg.port);
        let tcp =
            connect_tcp(&cfg.host, cfg.port)
                .await
                .map_err(|source| AttemptError::Connect {
                    addr: addr.clone(),
                    source,
                })?;
        set("TLS handshake");
        let tls = self
            .connector
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(AttemptError::Tls)?;
        set("SASL/open");
        // Fresh timestamp on every attempt.
        let creds = sign_now(cfg, &self.client_id)?;
        let idle_ms = advertised_idle_timeout(cfg).as_millis() as u32;
        // Frames produced back to back (dispositions, flow) leave in one TLS write, once open.
        let (stream, coalesce) = receiver_net::coalesce::Coalesce::new(tls);
        let conn = Connection::builder()
            .container_id(self.client_id.clone())
            .hostname(cfg.host.as_str())
            .sasl_hostname(cfg.host.as_str())
            .scheme("amqp")
            // fe2o3 advertises half of this and enforces all of it locally.
            .idle_time_out(idle_ms.saturating_mul(2))
            .sasl_profile(SaslProfile::Plain {
                username: creds.username,
                password: creds.password,
            })
            .open_with_stream(stream)
            .await;
        let mut conn = match conn {
            Ok(c) => c,
            Err(OpenError::SaslError {
                code: SaslCode::Auth,
                ..
            }) => return Err(AttemptError::Auth),
            Err(OpenError::SaslError { code, .. }) => return Err(AttemptError::Sasl(code)),
            Err(e) => return Err(AttemptError::Open(e)),
        };
        coalesce.enable();
        set("session begin");
        let mut session = Session::begin(&mut conn)
            .await
            .map_err(|e| AttemptError::Begin(e.to_string()))?;
        set("receiver attach");
        // An empty address means "no address" (what the Node/Python demos send); Aliyun binds
        // the link to the consumer group from the username either way.
        let source = if cfg.source_address.is_empty() {
            Source::builder().build()
        } else {
            Source::builder()
                .address(cfg.source_address.as_str())
                .build()
        };
        let receiver = Receiver::builder()
            .name(format!("{}-receiver", self.client_id))
            .source(source)
            .credit_mode(fe2o3_amqp::link::receiver::CreditMode::Manual)
            .auto_accept(false)
            .attach(&mut session)
            .await
            .map_err(|e| AttemptError::Attach(e.to_string()))?;
        Ok((conn, session, receiver))
    }
}

async fn close_best_effort(
    conn: &mut ConnectionHandle<()>,
    session: &mut SessionHandle<()>,
    receiver: Option<Receiver>,
    limit: Duration,
) {
    let deadline = Instant::now() + limit;
    if let Some(receiver) = receiver {
        match tokio::time::timeout_at(deadline, receiver.close()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => debug!(error = %e, "link close"),
            Err(_) => debug!("link close timed out"),
        }
    }
    match tokio::time::timeout_at(deadline, session.end()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => debug!(error = %e, "session end"),
        Err(_) => debug!("session end timed out"),
    }
    match tokio::time::timeout_at(deadline, conn.close()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => debug!(error = %e, "connection close"),
        Err(_) => debug!("connection close timed out"),
    }
}

/// The receiving side of one attached link.
struct Link {
    index: usize,
    receiver: Receiver,
    window: u32,
    /// Deliveries received and not yet settled, by our tag.
    inflight: HashMap<u64, DeliveryInfo>,
    /// Received but not yet handed to the engine (its channel was full).
    pending: VecDeque<Inbound>,
    next_tag: u64,
    state: Arc<ConnState>,
    /// Where the engine's settlers report (one channel per attempt: settlers of a dead
    /// connection report into the void, and Aliyun redelivers those deliveries).
    otx: mpsc::UnboundedSender<(u64, Outcome)>,
    orx: mpsc::UnboundedReceiver<(u64, Outcome)>,
}

impl Link {
    /// Receives and settles until shutdown (`Ok`) or the link/connection fails.
    async fn pump(
        &mut self,
        tx: &mpsc::Sender<Inbound>,
        paused: &mut watch::Receiver<bool>,
        shutdown: &CancellationToken,
        cfg: &AliyunConfig,
    ) -> Result<(), AttemptError> {
        let mut is_paused = *paused.borrow_and_update();
        let mut watch_open = true;
        self.refill(is_paused).await?;
        // Keep-alive: a Flow frame restating the credit, well inside our advertised idle-time-out
        // (fe2o3 only sends empty frames at the *peer's* advertised period, if any).
        let period = advertised_idle_timeout(cfg) / 3;
        let mut keepalive = tokio::time::interval_at(Instant::now() + period, period);
        keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(()),
                Some(first) = self.orx.recv() => {
                    // Everything the engine has decided so far, in as few disposition frames
                    // as possible (contiguous deliveries with one outcome share a range).
                    let mut batch = vec![first];
                    while let Ok(next) = self.orx.try_recv() {
                        batch.push(next);
                    }
                    self.settle_all(batch).await?;
                    self.refill(is_paused).await?;
                }
                changed = paused.changed(), if watch_open => {
                    match changed {
                        Ok(()) => {
                            is_paused = *paused.borrow_and_update();
                            debug!(paused = is_paused, "engine pause state changed");
                            self.refill(is_paused).await?;
                        }
                        Err(_) => watch_open = false,
                    }
                }
                permit = tx.reserve(), if !self.pending.is_empty() => {
                    let permit = permit.map_err(|_| AttemptError::EngineGone)?;
                    if let Some(inbound) = self.pending.pop_front() {
                        permit.send(inbound);
                    }
                }
                _ = keepalive.tick() => {
                    self.receiver
                        .send_properties()
                        .await
                        .map_err(|e| AttemptError::Lost(e.to_string()))?;
                }
                r = self.receiver.recv::<Body<Value>>(), if self.pending.is_empty() => {
                    match r {
                        Ok(delivery) => {
                            let (info, message) = delivery.into_parts();
                            self.on_delivery(info, message).await?;
                        }
                        Err(RecvError::MessageDecode(e)) => {
                            events::MessageUnusable::Undecodable(&e.source).emit();
                            self.reject_now(e.info).await?;
                        }
                        Err(e) => return Err(AttemptError::Lost(e.to_string())),
                    }
                    self.refill(is_paused).await?;
                }
            }
        }
    }

    async fn on_delivery(
        &mut self,
        info: DeliveryInfo,
        message: Message<Body<Value>>,
    ) -> Result<(), AttemptError> {
        let now = now_ms();
        events::DeliveryReceived { now_ms: now }.emit(&self.state);
        let delivery = match raw_delivery(message) {
            Ok(d) => d,
            Err(why) => {
                events::MessageUnusable::Body(why).emit();
                return self.reject_now(info).await;
            }
        };
        let tag = self.next_tag;
        self.next_tag += 1;
        self.inflight.insert(tag, info);
        self.pending.push_back(Inbound {
            conn: self.index,
            delivery,
            received_ms: now,
            settler: Settler::new(tag, self.otx.clone()),
        });
        Ok(())
    }

    async fn reject_now(&mut self, info: DeliveryInfo) -> Result<(), AttemptError> {
        events::Settled {
            outcome: Outcome::Reject,
            count: 1,
        }
        .emit(&self.state);
        self.receiver
            .reject(info, None)
            .await
            .map_err(|e| AttemptError::Lost(e.to_string()))
    }

    /// Settles many deliveries: one `dispose_all` per outcome.
    async fn settle_all(&mut self, outcomes: Vec<(u64, Outcome)>) -> Result<(), AttemptError> {
        let (mut accept, mut release, mut reject) = (Vec::new(), Vec::new(), Vec::new());
        for (tag, outcome) in outcomes {
            let Some(info) = self.inflight.remove(&tag) else {
                debug!(tag, "outcome for an unknown delivery ignored");
                continue;
            };
            match outcome {
                Outcome::Accept => accept.push(info),
                Outcome::Release => release.push(info),
                Outcome::Reject => reject.push(info),
            }
        }
        let settled = |outcome, count| events::Settled { outcome, count };
        let lost = |e: fe2o3_amqp::link::DispositionError| AttemptError::Lost(e.to_string());
        if !accept.is_empty() {
            settled(Outcome::Accept, accept.len()).emit(&self.state);
            self.receiver.accept_all(accept).await.map_err(lost)?;
        }
        if !release.is_empty() {
            settled(Outcome::Release, release.len()).emit(&self.state);
            self.receiver.release_all(release).await.map_err(lost)?;
        }
        if !reject.is_empty() {
            settled(Outcome::Reject, reject.len()).emit(&self.state);
            self.receiver.reject_all(reject, None).await.map_err(lost)?;
        }
        Ok(())
    }

    async fn settle(&mut self, tag: u64, outcome: Outcome) -> Result<(), AttemptError> {
        let Some(info) = self.inflight.remove(&tag) else {
            debug!(tag, "outcome for an unknown delivery ignored");
            return Ok(());
        };
        events::Settled { outcome, count: 1 }.emit(&self.state);
        let r = match outcome {
            Outcome::Accept => self.receiver.accept(info).await,
            Outcome::Release => self.receiver.release(info).await,
            Outcome::Reject => self.receiver.reject(info, None).await,
        };
        r.map_err(|e| AttemptError::Lost(e.to_string()))
    }

    /// Tops the link credit up to `window - unsettled`, in batches of at least half the window,
    /// and never while paused. Credit is never revoked (in-flight transfers would then exceed it).
    async fn refill(&mut self, paused: bool) -> Result<(), AttemptError> {
        if paused {
            return Ok(());
        }
        let outstanding = u32::try_from(self.inflight.len()).unwrap_or(u32::MAX);
        let want = self.window.saturating_sub(outstanding);
        let have = self.receiver.credit();
        if want > have && (want - have >= (self.window / 2).max(1) || have == 0) {
            self.receiver
                .set_credit(want)
                .await
                .map_err(|e| AttemptError::Lost(e.to_string()))?;
        }
        Ok(())
    }

    /// Transfers the peer sent within the credit granted but not received yet would otherwise
    /// die unsettled with the link: ask the peer to stop (drain: it zeroes the credit), then take
    /// what is still on its way until the link stays quiet for [`DRAIN_QUIET`], and release it.
    async fn release_arrivals(&mut self, deadline: Instant) {
        if let Err(e) = self.receiver.drain().await {
            debug!(error = %e, "drain during shutdown failed");
            return;
        }
        let mut released = 0u64;
        loop {
            let quiet = (Instant::now() + DRAIN_QUIET).min(deadline);
            let info =
                match tokio::time::timeout_at(quiet, self.receiver.recv::<Body<Value>>()).await {
                    Ok(Ok(delivery)) => delivery.into_parts().0,
                    Ok(Err(RecvError::MessageDecode(e))) => {
                        if self.reject_now(e.info).await.is_err() {
                            break;
                        }
                        continue;
                    }
                    Ok(Err(e)) => {
                        debug!(error = %e, "receiving during shutdown failed");
                        break;
                    }
                    Err(_) => break,
                };
            events::ArrivedDuringShutdown.emit(&self.state);
            released += 1;
            if let Err(e) = self.receiver.release(info).await {
                debug!(error = %e, "release during shutdown failed");
                break;
            }
        }
        if released > 0 {
            events::ReleasedOnShutdown {
                count: released,
                unsettled: false,
            }
            .emit();
        }
    }

    /// Graceful end: hand nothing more to the engine, give it [`SHUTDOWN_GRACE`] to settle what it
    /// holds, release the rest.
    async fn shutdown(&mut self) {
        // Not yet handed over: dropping the Inbound releases it through its settler.
        self.pending.clear();
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        self.release_arrivals(deadline).await;
        while !self.inflight.is_empty() {
            match tokio::time::timeout_at(deadline, self.orx.recv()).await {
                Ok(Some((tag, outcome))) => {
                    if let Err(e) = self.settle(tag, outcome).await {
                        debug!(error = %e, "settling during shutdown failed");
                        return;
                    }
                }
                Ok(None) | Err(_) => break,
            }
        }
        let left: Vec<DeliveryInfo> = self.inflight.drain().map(|(_, info)| info).collect();
        if !left.is_empty() {
            events::ReleasedOnShutdown {
                count: left.len() as u64,
                unsettled: true,
            }
            .emit();
            for info in left {
                events::Settled {
                    outcome: Outcome::Release,
                    count: 1,
                }
                .emit(&self.state);
                if let Err(e) = self.receiver.release(info).await {
                    debug!(error = %e, "release during shutdown failed");
                    return;
                }
            }
        }
    }
}

/// Converts an AMQP message into what the engine reads. `Err` names why the body is unusable.
pub fn raw_delivery(message: Message<Body<Value>>) -> Result<RawDelivery, &'static str> {
    let props = message.application_properties.as_ref().map(|p| &p.0);
    let get = |k: &str| props.and_then(|p| p.get(k));
    let topic = get("topic").and_then(simple_to_string);
    let message_id = get("messageId").and_then(simple_to_string).or_else(|| {
        use fe2o3_amqp::types::messaging::MessageId;
        message
            .properties
            .as_ref()
            .and_then(|p| p.message_id.as_ref())
            .map(|id| match id {
                MessageId::String(s) => s.clone(),
                MessageId::Ulong(n) => n.to_string(),
                MessageId::Uuid(u) => hex::encode(u.as_inner()),
                MessageId::Binary(b) => hex::encode(b.as_slice()),
            })
    });
    let generate_time = get("generateTime").and_then(simple_to_i64);
    let body = match message.body {
        Body::Data(batch) => {
            let mut sections = batch.into_inner();
            if sections.len() == 1 {
                // The usual case: take the bytes, no copy.
                sections.pop().map(|d| d.0.into_vec()).unwrap_or_default()
            } else {
                let mut out = Vec::with_capacity(sections.iter().map(|d| d.0.len()).sum());
                for d in &sections {
                    out.extend_from_slice(&d.0);
                }
                out
            }
        }
        Body::Value(v) => match v.0 {
            Value::Binary(b) => b.into_vec(),
            Value::String(s) => s.into_bytes(),
            Value::Null => Vec::new(),
            _ => return Err("AmqpValue body that is neither binary nor string"),
        },
        Body::Empty => Vec::new(),
        Body::Sequence(_) => return Err("AmqpSequence body"),
    };
    Ok(RawDelivery {
        topic,
        message_id,
        generate_time,
        body,
    })
}

fn simple_to_string(v: &SimpleValue) -> Option<String> {
    Some(match v {
        SimpleValue::String(s) => s.clone(),
        SimpleValue::Ulong(n) => n.to_string(),
        SimpleValue::Long(n) => n.to_string(),
        SimpleValue::Uint(n) => n.to_string(),
        SimpleValue::Int(n) => n.to_string(),
        SimpleValue::Ushort(n) => n.to_string(),
        SimpleValue::Short(n) => n.to_string(),
        SimpleValue::Ubyte(n) => n.to_string(),
        SimpleValue::Byte(n) => n.to_string(),
        SimpleValue::Binary(b) => String::from_utf8(b.to_vec()).ok()?,
        _ => return None,
    })
}

fn simple_to_i64(v: &SimpleValue) -> Option<i64> {
    match v {
        SimpleValue::Long(n) => Some(*n),
        SimpleValue::Ulong(n) => i64::try_from(*n).ok(),
        SimpleValue::Int(n) => Some(i64::from(*n)),
        SimpleValue::Uint(n) => Some(i64::from(*n)),
        SimpleValue::Short(n) => Some(i64::from(*n)),
        SimpleValue::Ushort(n) => Some(i64::from(*n)),
        SimpleValue::Timestamp(t) => Some(t.milliseconds()),
        SimpleValue::Double(f) => Some(f.into_inner() as i64),
        SimpleValue::Float(f) => Some(f.into_inner() as i64),
        SimpleValue::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fe2o3_amqp::types::messaging::{ApplicationProperties, Data, Properties};
    use fe2o3_amqp::types::primitives::Binary;

    #[tokio::test]
    async fn connections_are_opened_with_tcp_nodelay() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let tcp = connect_tcp("127.0.0.1", port).await.unwrap();
        assert!(tcp.nodelay().unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn limiter_allows_max_per_window() {
        let l = ConnectLimiter::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        for _ in 0..3 {
            l.acquire().await;
        }
        assert_eq!(t0.elapsed(), Duration::ZERO);
        l.acquire().await;
        assert!(t0.elapsed() >= Duration::from_secs(60));
    }

    fn message(props: Vec<(&str, SimpleValue)>, body: Body<Value>) -> Message<Body<Value>> {
        let mut ap = ApplicationProperties::builder();
        for (k, v) in props {
            ap = ap.insert(k, v);
        }
        Message::builder()
            .application_properties(ap.build())
            .body(body)
            .build()
    }

    #[test]
    fn raw_delivery_reads_data_and_properties() {
        let m = message(
            vec![
                (
                    "topic",
                    SimpleValue::String("/pk/dn/thing/event/property/post".into()),
                ),
                ("messageId", SimpleValue::Ulong(1234567890123)),
                ("generateTime", SimpleValue::String("1700000000000".into())),
            ],
            Body::Data(vec![Data(Binary::from(b"{\"a\":1}".to_vec()))].into()),
        );
        let raw = raw_delivery(m).unwrap();
        assert_eq!(
            raw.topic.as_deref(),
            Some("/pk/dn/thing/event/property/post")
        );
        assert_eq!(raw.message_id.as_deref(), Some("1234567890123"));
        assert_eq!(raw.generate_time, Some(1_700_000_000_000));
        assert_eq!(raw.body, b"{\"a\":1}");
    }

    #[test]
    fn raw_delivery_value_bodies_and_message_id_fallback() {
        use fe2o3_amqp::types::messaging::AmqpValue;
        let mut m = message(
            vec![("generateTime", SimpleValue::Long(42))],
            Body::Value(AmqpValue(Value::String("hello".into()))),
        );
        m.properties = Some(
            Properties::builder()
                .message_id("mid-7".to_string())
                .build(),
        );
        let raw = raw_delivery(m).unwrap();
        assert_eq!(raw.message_id.as_deref(), Some("mid-7"));
        assert_eq!(raw.generate_time, Some(42));
        assert_eq!(raw.body, b"hello");

        let m = message(
            vec![],
            Body::Value(AmqpValue(Value::Binary(vec![1u8, 2].into()))),
        );
        assert_eq!(raw_delivery(m).unwrap().body, vec![1, 2]);

        let m = message(vec![], Body::Value(AmqpValue(Value::Int(5))));
        assert!(raw_delivery(m).is_err());
    }

    fn cfg(connections: usize, client_id: &str) -> AliyunConfig {
        {
            let mut c = crate::tools::client_config_for(
                &receiver_testkit::fake::FakeConfig::default(),
                std::net::SocketAddr::from(([127, 0, 0, 1], 5671)),
                client_id,
            );
            c.connections = connections;
            c
        }
    }

    #[test]
    fn client_ids_and_idle_clamp() {
        assert_eq!(connection_client_id(&cfg(1, "rx"), 0).unwrap(), "rx");
        assert_eq!(connection_client_id(&cfg(3, "rx"), 2).unwrap(), "rx-2");
        let long = "x".repeat(63);
        assert!(connection_client_id(&cfg(1, &long), 0).is_ok());
        assert!(connection_client_id(&cfg(2, &long), 1).is_err());
        let mut c = cfg(1, "rx");
        c.idle_timeout = Duration::from_secs(5);
        assert_eq!(advertised_idle_timeout(&c), Duration::from_secs(30));
        c.idle_timeout = Duration::from_secs(3600);
        assert_eq!(advertised_idle_timeout(&c), Duration::from_secs(300));
        c.idle_timeout = Duration::from_secs(60);
        assert_eq!(advertised_idle_timeout(&c), Duration::from_secs(60));
    }
}

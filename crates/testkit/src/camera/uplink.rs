//! The camera's upload discipline as a pure state machine: time in, actions out.
//!
//! [`Uplink`] decides *when* to connect and *what* to publish; the MQTT client only carries it out
//! and reports back (connected, written with packet id, acknowledged, disconnected). No I/O, no
//! tokio, no clock: every method takes `now`, so the pacing is tested exactly with synthetic time.
//!
//! What it enforces:
//!
//! - **QoS 1 window.** At most `window` publishes are unacknowledged at once. A publish is matched
//!   to its `PUBACK` by the packet id the client reports when it writes the publish (the client
//!   writes publishes in the order they were handed to it).
//! - **Pacing.** A token bucket of capacity 1 refilled at `rate` per second: consecutive publishes
//!   (first sends and resends alike) are at least `1/rate` apart, so any one-second span holds at
//!   most `rate + 1` publishes. At the default 8/s that is 9, under Aliyun's silent limit of 10
//!   QoS 1 messages per second per device.
//! - **Resend.** After a disconnect every unacknowledged publish is queued again, oldest first,
//!   with the same payload (so the same Alink id): the receiver drops the duplicates.
//! - **Ack timeout.** A publish unacknowledged for `ack_timeout` (or a packet-id collision in the
//!   client) means the broker lost it: the uplink asks for the connection to be reset, which
//!   resends.
//! - **Reconnect.** Capped exponential backoff with jitter, reset only after a connection stayed
//!   up for `healthy_after`; and never more than `connects_per_minute` connection attempts in any
//!   60 s (Aliyun allows 5 per device per minute).
//! - **Pictures.** A picture counts as sent only when all its publishes are acknowledged (QoS 0:
//!   written to the socket); then [`Action::PictureDone`] reports it. `interval` spaces the starts
//!   of consecutive pictures, like a camera taking a picture every few seconds.

use receiver_protocol::time::Backoff;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Aliyun's sliding window for connection attempts.
const CONNECT_WINDOW: Duration = Duration::from_secs(60);

/// MQTT quality of service of the posts (Aliyun supports 0 and 1 only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qos {
    /// Fire and forget: a publish is done when written to the socket.
    AtMostOnce,
    /// Acknowledged: a publish is done when its `PUBACK` arrives.
    AtLeastOnce,
}

/// Tuning of an [`Uplink`].
#[derive(Debug, Clone, PartialEq)]
pub struct UplinkConfig {
    /// Most unacknowledged publishes at once (≥ 1).
    pub window: usize,
    /// Most publishes per second (> 0).
    pub rate: f64,
    /// QoS of every publish.
    pub qos: Qos,
    /// Least time between the first publishes of two consecutive pictures.
    pub interval: Duration,
    /// A publish not acknowledged within this time resets the connection.
    pub ack_timeout: Duration,
    /// First reconnect delay.
    pub backoff_min: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// A connection that stayed up this long resets the backoff.
    pub healthy_after: Duration,
    /// Most connection attempts in any 60 s.
    pub connects_per_minute: usize,
    /// Seed of the backoff jitter (fixed in tests).
    pub seed: u64,
}

impl Default for UplinkConfig {
    fn default() -> Self {
        UplinkConfig {
            window: 4,
            rate: 8.0,
            qos: Qos::AtLeastOnce,
            interval: Duration::ZERO,
            ack_timeout: Duration::from_secs(30),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            healthy_after: Duration::from_secs(30),
            connects_per_minute: 5,
            seed: 0x9E37_79B9_7F4A_7C15,
        }
    }
}

/// One picture, already encoded into its MQTT payloads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Picture {
    /// Where it came from (file name or `sample-0001.jpg`), for reports.
    pub name: String,
    /// Its picture id.
    pub pid: u32,
    /// Size of the JPEG.
    pub jpeg_bytes: usize,
    /// The payloads, in sending order (from `wire::encode_payloads`).
    pub payloads: Vec<Arc<str>>,
}

/// How one picture went.
#[derive(Debug, Clone, PartialEq)]
pub struct PictureReport {
    /// Its name (see [`Picture::name`]).
    pub name: String,
    /// Its picture id.
    pub pid: u32,
    /// Number of MQTT messages (chunks, plus `END` in v1).
    pub chunks: usize,
    /// Size of the JPEG.
    pub jpeg_bytes: usize,
    /// Sum of the payload sizes (first sends only).
    pub wire_bytes: usize,
    /// Publishes sent again after a reconnect.
    pub resends: usize,
    /// From its first publish to its last acknowledgement.
    pub elapsed: Duration,
}

/// One publish the client must make now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// Picture id.
    pub pid: u32,
    /// Index of the message within its picture.
    pub seq: u32,
    /// The payload (identical on every resend).
    pub payload: Arc<str>,
    /// True when this message was sent before (on an earlier connection).
    pub resend: bool,
}

/// What the uplink asks the I/O side to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Sign in again (fresh signature) and open a connection.
    Connect,
    /// Hand this publish to the client, after any publish handed over before.
    Publish(Publish),
    /// Drop the connection now (ack timeout); report the disconnect as usual.
    Reset,
    /// Every message of this picture is acknowledged.
    PictureDone(PictureReport),
}

/// Counters over the uplink's lifetime.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UplinkStats {
    /// Publishes handed to the client (first sends and resends).
    pub published: u64,
    /// Of those, resends.
    pub resends: u64,
    /// Connection attempts.
    pub connects: u64,
    /// Disconnects and failed attempts.
    pub disconnects: u64,
    /// Acknowledgements for a packet id nobody waits for (ignored).
    pub stray_acks: u64,
    /// Connection resets asked for (ack timeout or packet-id collision).
    pub resets: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MsgState {
    /// Waiting to be (re)sent.
    Queued,
    /// Handed to the client; the client has not reported its packet id yet.
    Sent { at: Instant },
    /// Written with this packet id; waiting for the `PUBACK`.
    Written { at: Instant },
    /// Done.
    Acked,
}

#[derive(Debug)]
struct Msg {
    pic: u64,
    seq: u32,
    payload: Arc<str>,
    state: MsgState,
    attempts: u32,
}

#[derive(Debug)]
struct Pic {
    name: String,
    pid: u32,
    jpeg_bytes: usize,
    wire_bytes: usize,
    chunks: usize,
    acked: usize,
    resends: usize,
    first_sent: Option<Instant>,
    done: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conn {
    /// Not connected; the next attempt may start at `retry_at`.
    Down { retry_at: Instant },
    /// Attempt under way.
    Connecting,
    /// Connected since.
    Up { since: Instant },
    /// Reset asked for; waiting for the disconnect report.
    Resetting { since: Instant },
}

/// The upload state machine. See the module docs.
#[derive(Debug)]
pub struct Uplink {
    cfg: UplinkConfig,
    period: Duration,
    /// Messages not yet trimmed; `msgs[i]` is message number `base + i`.
    msgs: VecDeque<Msg>,
    base: u64,
    /// Pictures not yet trimmed; `pics[i]` is picture number `pic_base + i`.
    pics: VecDeque<Pic>,
    pic_base: u64,
    /// Next message never sent.
    next_fresh: u64,
    /// Messages to send again, ascending.
    resend: VecDeque<u64>,
    /// Handed to the client, packet id not yet known, in hand-over order.
    unbound: VecDeque<u64>,
    /// Packet id → message, for written QoS 1 publishes.
    by_pkid: HashMap<u16, u64>,
    /// Handed over and not acknowledged (≤ window).
    inflight: Vec<u64>,
    next_token: Instant,
    last_pic_start: Option<Instant>,
    conn: Conn,
    backoff: Backoff,
    attempts: VecDeque<Instant>,
    rng: u64,
    input_done: bool,
    outbox: VecDeque<Action>,
    stats: UplinkStats,
}

impl Uplink {
    /// A new uplink, disconnected, which will connect at `now`.
    pub fn new(cfg: UplinkConfig, now: Instant) -> Self {
        let rate = if cfg.rate.is_finite() && cfg.rate > 0.0 {
            cfg.rate
        } else {
            1.0
        };
        let period = Duration::from_secs_f64(1.0 / rate);
        let rng = cfg.seed | 1;
        Uplink {
            period,
            msgs: VecDeque::new(),
            base: 0,
            pics: VecDeque::new(),
            pic_base: 0,
            next_fresh: 0,
            resend: VecDeque::new(),
            unbound: VecDeque::new(),
            by_pkid: HashMap::new(),
            inflight: Vec::new(),
            next_token: now,
            last_pic_start: None,
            conn: Conn::Down { retry_at: now },
            backoff: Backoff::new(cfg.backoff_min, cfg.backoff_max),
            attempts: VecDeque::new(),
            rng,
            input_done: false,
            outbox: VecDeque::new(),
            stats: UplinkStats::default(),
            cfg: UplinkConfig {
                window: cfg.window.max(1),
                connects_per_minute: cfg.connects_per_minute.max(1),
                ..cfg
            },
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> UplinkStats {
        self.stats
    }

    /// True while the uplink has a connection (not while connecting or resetting).
    pub fn is_connected(&self) -> bool {
        matches!(self.conn, Conn::Up { .. })
    }

    /// Queues a picture after the ones already queued.
    pub fn push_picture(&mut self, picture: Picture) {
        let number = self.pic_base + self.pics.len() as u64;
        let wire_bytes = picture.payloads.iter().map(|p| p.len()).sum();
        let chunks = picture.payloads.len();
        self.pics.push_back(Pic {
            name: picture.name,
            pid: picture.pid,
            jpeg_bytes: picture.jpeg_bytes,
            wire_bytes,
            chunks,
            acked: 0,
            resends: 0,
            first_sent: None,
            done: false,
        });
        for (seq, payload) in picture.payloads.into_iter().enumerate() {
            self.msgs.push_back(Msg {
                pic: number,
                seq: seq as u32,
                payload,
                state: MsgState::Queued,
                attempts: 0,
            });
        }
        if chunks == 0 {
            self.finish_picture(number, None);
        }
    }

    /// True when the uplink has sent every queued message at least once and more input is
    /// welcome (so the next picture is loaded just in time).
    pub fn wants_picture(&self) -> bool {
        !self.input_done && self.next_fresh == self.base + self.msgs.len() as u64
    }

    /// No more pictures will come.
    pub fn finish_input(&mut self) {
        self.input_done = true;
    }

    /// True when input is finished and every picture is done.
    pub fn is_done(&self) -> bool {
        self.input_done && self.pics.is_empty() && self.outbox.is_empty()
    }

    /// Pictures queued and not yet done.
    pub fn pending_pictures(&self) -> usize {
        self.pics.iter().filter(|p| !p.done).count()
    }

    /// The connection is up (CONNACK accepted).
    pub fn on_connected(&mut self, now: Instant) {
        self.conn = Conn::Up { since: now };
    }

    /// The connection attempt failed or the connection dropped (for any reason, including a
    /// [`Action::Reset`]). Unacknowledged publishes are queued again.
    pub fn on_disconnected(&mut self, now: Instant) {
        let healthy = match self.conn {
            Conn::Down { .. } => return,
            Conn::Up { since } | Conn::Resetting { since } => {
                now.saturating_duration_since(since) >= self.cfg.healthy_after
            }
            Conn::Connecting => false,
        };
        self.stats.disconnects += 1;
        if healthy {
            self.backoff.reset();
        }
        let mut back: Vec<u64> = std::mem::take(&mut self.inflight);
        back.extend(self.resend.drain(..));
        back.sort_unstable();
        back.dedup();
        for &n in &back {
            if let Some(m) = self.msg_mut(n) {
                m.state = MsgState::Queued;
            }
        }
        self.resend = back.into();
        self.unbound.clear();
        self.by_pkid.clear();
        let delay = self.backoff();
        self.conn = Conn::Down {
            retry_at: now + delay,
        };
    }

    /// The client wrote the oldest publish it was handed and gave it packet id `pkid` (0 for
    /// QoS 0).
    pub fn on_written(&mut self, pkid: u16, now: Instant) {
        let Some(n) = self.unbound.pop_front() else {
            return;
        };
        if self.cfg.qos == Qos::AtMostOnce {
            self.complete(n, now);
            return;
        }
        if let Some(m) = self.msg_mut(n) {
            if let MsgState::Sent { at } = m.state {
                m.state = MsgState::Written { at };
            }
        }
        self.by_pkid.insert(pkid, n);
    }

    /// The client could not write the oldest publish it was handed because packet id `pkid` is
    /// still unacknowledged (the broker skipped an ack). Asks for a reset.
    pub fn on_pkid_collision(&mut self, pkid: u16, now: Instant) {
        self.on_written(pkid, now);
        self.ask_reset();
    }

    /// `PUBACK` for packet id `pkid`.
    pub fn on_acked(&mut self, pkid: u16, now: Instant) {
        match self.by_pkid.remove(&pkid) {
            Some(n) => self.complete(n, now),
            None => self.stats.stray_acks += 1,
        }
    }

    /// The next action to carry out now, if any. Call until it returns `None`, then sleep until
    /// [`Uplink::next_wake`] or the next report.
    pub fn poll(&mut self, now: Instant) -> Option<Action> {
        if let Some(a) = self.outbox.pop_front() {
            return Some(a);
        }
        if self.is_done() {
            return None;
        }
        match self.conn {
            Conn::Down { retry_at } => {
                if now < self.connect_allowed_at(retry_at) {
                    return None;
                }
                self.attempts.push_back(now);
                while self.attempts.len() > self.cfg.connects_per_minute {
                    self.attempts.pop_front();
                }
                self.conn = Conn::Connecting;
                self.stats.connects += 1;
                Some(Action::Connect)
            }
            Conn::Connecting | Conn::Resetting { .. } => None,
            Conn::Up { .. } => {
                if let Some(deadline) = self.ack_deadline() {
                    if now >= deadline {
                        self.ask_reset();
                        return self.outbox.pop_front();
                    }
                }
                let n = self.sendable(now)?;
                Some(self.send(n, now))
            }
        }
    }

    /// When [`Uplink::poll`] may have something to do next without a report arriving; `None`
    /// when only a report can move things on.
    pub fn next_wake(&self, now: Instant) -> Option<Instant> {
        if !self.outbox.is_empty() {
            return Some(now);
        }
        if self.is_done() {
            return None;
        }
        match self.conn {
            Conn::Down { retry_at } => Some(self.connect_allowed_at(retry_at)),
            Conn::Connecting | Conn::Resetting { .. } => None,
            Conn::Up { .. } => {
                let ack = self.ack_deadline();
                let send = if self.inflight.len() < self.cfg.window {
                    self.next_candidate().map(|n| {
                        let gate = self.picture_gate(n).unwrap_or(self.next_token);
                        gate.max(self.next_token)
                    })
                } else {
                    None
                };
                match (ack, send) {
                    (Some(a), Some(s)) => Some(a.min(s)),
                    (a, s) => a.or(s),
                }
            }
        }
    }

    fn connect_allowed_at(&self, retry_at: Instant) -> Instant {
        let limit = self.cfg.connects_per_minute;
        if self.attempts.len() >= limit {
            let oldest = self.attempts[self.attempts.len() - limit];
            retry_at.max(oldest + CONNECT_WINDOW)
        } else {
            retry_at
        }
    }

    fn ask_reset(&mut self) {
        if let Conn::Up { since } = self.conn {
            self.conn = Conn::Resetting { since };
            self.stats.resets += 1;
            self.outbox.push_back(Action::Reset);
        }
    }

    fn ack_deadline(&self) -> Option<Instant> {
        if self.cfg.qos == Qos::AtMostOnce {
            return None;
        }
        self.inflight
            .iter()
            .filter_map(|&n| match self.msg(n)?.state {
                MsgState::Sent { at } | MsgState::Written { at } => Some(at),
                _ => None,
            })
            .min()
            .map(|at| at + self.cfg.ack_timeout)
    }

    /// The next message to send, ignoring the window, the bucket and the picture gate.
    fn next_candidate(&self) -> Option<u64> {
        if let Some(&n) = self.resend.front() {
            return Some(n);
        }
        (self.next_fresh < self.base + self.msgs.len() as u64).then_some(self.next_fresh)
    }

    /// When the picture of message `n` may start, if `n` would start it.
    fn picture_gate(&self, n: u64) -> Option<Instant> {
        let m = self.msg(n)?;
        let pic = self.pic(m.pic)?;
        if pic.first_sent.is_some() || self.cfg.interval.is_zero() {
            return None;
        }
        self.last_pic_start.map(|t| t + self.cfg.interval)
    }

    fn sendable(&self, now: Instant) -> Option<u64> {
        if self.inflight.len() >= self.cfg.window || now < self.next_token {
            return None;
        }
        let n = self.next_candidate()?;
        match self.picture_gate(n) {
            Some(gate) if now < gate => None,
            _ => Some(n),
        }
    }

    fn send(&mut self, n: u64, now: Instant) -> Action {
        if self.resend.front() == Some(&n) {
            self.resend.pop_front();
        } else {
            self.next_fresh = n + 1;
        }
        self.next_token = now + self.period;
        self.inflight.push(n);
        self.unbound.push_back(n);
        self.stats.published += 1;
        let (pic, seq, payload, resend) = match self.msg_mut(n) {
            Some(m) => {
                m.state = MsgState::Sent { at: now };
                m.attempts += 1;
                (m.pic, m.seq, m.payload.clone(), m.attempts > 1)
            }
            None => (0, 0, Arc::from(""), false),
        };
        if resend {
            self.stats.resends += 1;
        }
        let mut started = false;
        let mut pid = 0;
        if let Some(p) = self.pic_mut(pic) {
            pid = p.pid;
            if resend {
                p.resends += 1;
            }
            if p.first_sent.is_none() {
                p.first_sent = Some(now);
                started = true;
            }
        }
        if started {
            self.last_pic_start = Some(now);
        }
        Action::Publish(Publish {
            pid,
            seq,
            payload,
            resend,
        })
    }

    fn complete(&mut self, n: u64, now: Instant) {
        self.inflight.retain(|&x| x != n);
        let pic = match self.msg_mut(n) {
            Some(m) if m.state != MsgState::Acked => {
                m.state = MsgState::Acked;
                m.pic
            }
            _ => return,
        };
        let finished = match self.pic_mut(pic) {
            Some(p) => {
                p.acked += 1;
                p.acked == p.chunks
            }
            None => false,
        };
        if finished {
            self.finish_picture(pic, Some(now));
        }
        while self
            .msgs
            .front()
            .is_some_and(|m| m.state == MsgState::Acked)
        {
            self.msgs.pop_front();
            self.base += 1;
        }
        self.next_fresh = self.next_fresh.max(self.base);
    }

    fn finish_picture(&mut self, number: u64, now: Option<Instant>) {
        if let Some(p) = self.pic_mut(number) {
            p.done = true;
            let elapsed = match (p.first_sent, now) {
                (Some(t), Some(now)) => now.saturating_duration_since(t),
                _ => Duration::ZERO,
            };
            let report = PictureReport {
                name: p.name.clone(),
                pid: p.pid,
                chunks: p.chunks,
                jpeg_bytes: p.jpeg_bytes,
                wire_bytes: p.wire_bytes,
                resends: p.resends,
                elapsed,
            };
            self.outbox.push_back(Action::PictureDone(report));
        }
        while self.pics.front().is_some_and(|p| p.done) {
            self.pics.pop_front();
            self.pic_base += 1;
        }
    }

    fn backoff(&mut self) -> Duration {
        // Equal jitter: half fixed, half random, so retries of many cameras spread out.
        let random = self.next_random();
        self.backoff.next_delay(random)
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn msg(&self, n: u64) -> Option<&Msg> {
        self.msgs
            .get(usize::try_from(n.checked_sub(self.base)?).ok()?)
    }

    fn msg_mut(&mut self, n: u64) -> Option<&mut Msg> {
        self.msgs
            .get_mut(usize::try_from(n.checked_sub(self.base)?).ok()?)
    }

    fn pic(&self, n: u64) -> Option<&Pic> {
        self.pics
            .get(usize::try_from(n.checked_sub(self.pic_base)?).ok()?)
    }

    fn pic_mut(&mut self, n: u64) -> Option<&mut Pic> {
        self.pics
            .get_mut(usize::try_from(n.checked_sub(self.pic_base)?).ok()?)
    }
}

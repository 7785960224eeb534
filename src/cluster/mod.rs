//! Cluster mode's shared store (`[cluster]`): several instances of the daemon share one consumer
//! group, and the pictures in flight live in Redis (or Valkey), not in one process's spool.
//!
//! [`ClusterStore`] is both the chunk store and the shared assembly state. Every operation that
//! must be atomic across instances is one Lua script, run by the server as a unit:
//!
//! - `store.lua`: a whole batch of accepted chunks in one round trip. It deduplicates by
//!   `messageId` (`SET NX PX`), by v2 `(device, pid, seq)` (`HSETNX`) and by v1 fingerprint
//!   (time + SHA-1 of the bytes), files v1 chunks by `items.img.time` (ties by arrival, a
//!   server-side counter) and answers which pictures the batch completed (v2: every seq
//!   present) or may have completed (v1: a segment between two `END`s whose data or cut
//!   changed; the caller runs the JPEG checks, [`v1_verdict`]).
//! - `claim.lua`: a lease (`SET NX PX`) on one picture; `takeover` when the last claimant was
//!   another instance whose lease ran out. An expiry claim also needs the picture open longer
//!   than the assembly time-out.
//! - `fetch.lua`: a picture's chunks (a v1 segment: the data chunks timed in
//!   `(previous END, END]`).
//! - `unclaim.lua`: gives a claim back (a v1 segment that fails its check waits for more
//!   chunks); the picture leaves the ready list only if no chunk marked it ready meanwhile
//!   (`:touch`, a version per picture), else the caller checks again.
//! - `loss.lua`, `heartbeat.lua`: losses of deliveries in flight (a connection lost,
//!   deliveries released, a start, an instance whose heartbeat ran out) for the v1
//!   redelivery grace.
//! - `finish.lua`: after the output (or quarantine) write succeeded, deletes the chunks, sets
//!   the done marker (`SET NX`: only the first finisher counts) and drops the claim.
//!
//! Keys, all under `{<key_prefix>}` (a hash tag: every script's keys would share one slot; Redis
//! Cluster is not supported yet, since the scripts build their keys instead of declaring them):
//! `:mid:<messageId>` (dedup, TTL), `:pic:2|<dev>|<pid>` (a v2 picture: header
//! fields `c s k t n`, pieces `d<seq>`), `:v1t:<dev>` / `:v1a:<dev>` / `:v1c:<dev>` (v1 data
//! chunks by position, by arrival, their bytes; a position is `<time>:<arrival counter>`,
//! zero-padded, compared as text, so chunks and `END`s of one millisecond are cut by arrival),
//! `:v1e:<dev>` / `:v1E:<dev>` (`END` positions; `END` time → position), `:v1x:<dev>` (`END`s
//! whose segment is finished), `:v1d:<dev>` (their first chunk's position), `:v1f:<dev>` (fingerprints), `:open` (picture or v1 device →
//! when it opened), `:ready` (pictures complete or to check → when), `:claim:<pk>` (the lease),
//! `:claimed` (pk → last claimant), `:touch` (pk → how often it was marked ready), `:loss` (the latest loss),
//! `:instances` / `:alive:<id>` (heartbeats), `:done:<pk>`
//! (finished, TTL), `:ctr`.
//!
//! The client is the `redis` crate's blocking connection: the engine is one OS thread and calls
//! its seams blocking. Every call has a time-out; a failed call drops the connection and the
//! next call connects again.

use crate::message::DeviceId;
use crate::wire::V2Header;
use redis::{Client, Connection, IntoConnectionInfo, Script, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

/// What can go wrong talking to the shared store. Messages never hold the password.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The URL does not parse (the URL is not repeated: it may hold a password).
    #[error("redis_url is not a Redis URL: {0}")]
    Url(String),
    /// Connecting, or a command, failed.
    #[error("Redis at {at}: {message}")]
    Redis {
        /// The server, without credentials.
        at: String,
        /// What failed.
        message: String,
    },
    /// A reply of an unexpected shape (a script and the code disagree).
    #[error("Redis at {at}: unexpected reply to {what}")]
    Reply {
        /// The server, without credentials.
        at: String,
        /// Which call.
        what: &'static str,
    },
    /// Fewer replicas than needed acknowledged a write (`WAIT`).
    #[error("Redis at {at}: {acked} of {wanted} replica(s) acknowledged the batch")]
    Replicas {
        /// The server, without credentials.
        at: String,
        /// Replicas that acknowledged.
        acked: i64,
        /// Replicas waited for.
        wanted: i64,
    },
}

impl ClusterError {
    /// Whether the error is the store being unreachable or failing (retry later), as opposed to
    /// a bad configuration.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, ClusterError::Url(_))
    }
}

/// How to reach the store and the cluster's timings.
#[derive(Clone)]
pub struct ClusterOptions {
    /// `redis://` or `rediss://` URL (may hold user and password).
    pub url: String,
    /// Password from a file, the environment or a systemd credential (overrides the URL's).
    pub password: Option<crate::config::Secret>,
    /// Prefix of every key (one hash tag: `{prefix}`).
    pub key_prefix: String,
    /// This instance, in claims and logs.
    pub instance_id: String,
    /// How long a claim holds before another instance may take the picture over.
    pub lease: Duration,
    /// How long a `messageId` is remembered.
    pub message_ttl: Duration,
    /// How long a finished picture is remembered (late duplicates are recognised).
    pub done_ttl: Duration,
    /// Connect and command time-out.
    pub timeout: Duration,
    /// Redis Sentinel: the sentinels' URLs and the monitored master's name. The master is asked
    /// of them at every (re)connect, so a failover is followed; `url` then gives only the
    /// database, user and password.
    pub sentinel: Option<(Vec<String>, String)>,
}

impl fmt::Debug for ClusterOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterOptions")
            .field("url", &redact_url(&self.url))
            .field("key_prefix", &self.key_prefix)
            .field("instance_id", &self.instance_id)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl ClusterOptions {
    /// Options with the defaults for `url`.
    pub fn new(url: &str, key_prefix: &str, instance_id: &str) -> ClusterOptions {
        ClusterOptions {
            url: url.to_owned(),
            password: None,
            key_prefix: key_prefix.to_owned(),
            instance_id: instance_id.to_owned(),
            lease: Duration::from_secs(30),
            message_ttl: Duration::from_secs(3600),
            done_ttl: Duration::from_secs(3600),
            timeout: Duration::from_secs(5),
            sentinel: None,
        }
    }
}

/// A URL with its user and password left out (for logs and errors).
pub fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
            format!("{scheme}://{rest}")
        }
        None => "(not a URL)".to_owned(),
    }
}

/// The default instance id: host name and process id.
pub fn default_instance_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".to_owned());
    format!("{host}-{}", std::process::id())
}

/// One accepted chunk, as the store files it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk {
    /// A v2 chunk: its header and decoded piece.
    V2 {
        /// Aliyun's `messageId` (empty: no message-level dedup).
        message_id: String,
        /// The camera.
        device: DeviceId,
        /// The parsed header.
        header: V2Header,
        /// Its time (names the file: the earliest of the picture's).
        time_ms: i64,
        /// The decoded piece.
        bytes: Vec<u8>,
    },
    /// A v1 data chunk: its decoded bytes.
    V1Data {
        /// Aliyun's `messageId`.
        message_id: String,
        /// The camera.
        device: DeviceId,
        /// `items.img.time` (else `gmtCreate`, else arrival).
        time_ms: i64,
        /// The decoded bytes.
        bytes: Vec<u8>,
    },
    /// A v1 `END`.
    V1End {
        /// Aliyun's `messageId`.
        message_id: String,
        /// The camera.
        device: DeviceId,
        /// Its time.
        time_ms: i64,
    },
}

/// What the store did with one chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Stored: durable once the batch returned.
    New,
    /// Its `messageId` was seen before (by any instance).
    DuplicateMessage,
    /// The same chunk is stored already (v2 seq, v1 fingerprint, v1 `END` time).
    DuplicateChunk,
    /// A chunk of a picture that is finished.
    Finished,
    /// A v2 header disagreeing with the picture's first (quarantine the chunk).
    Conflict,
    /// A v1 data chunk inside a finished segment (quarantine it: `late_chunk`).
    Late,
}

/// One picture in the shared store.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PictureKey {
    /// A v2 picture.
    V2 {
        /// The camera.
        device: String,
        /// Its picture id.
        pid: u32,
    },
    /// A v1 segment, named by its `END`'s position (time, then arrival:
    /// `<ms, 16 digits>:<arrival counter, 16 hex digits>`).
    V1 {
        /// The camera.
        device: String,
        /// The `END`'s position.
        end: String,
    },
    /// Everything of a v1 camera (what expires).
    V1Device {
        /// The camera.
        device: String,
    },
}

impl PictureKey {
    /// The key as the scripts write it.
    pub fn encode(&self) -> String {
        match self {
            PictureKey::V2 { device, pid } => format!("2|{device}|{pid}"),
            PictureKey::V1 { device, end } => format!("1|{device}|{end}"),
            PictureKey::V1Device { device } => format!("1|{device}"),
        }
    }

    /// Parses what [`encode`](Self::encode) wrote.
    pub fn decode(s: &str) -> Option<PictureKey> {
        let mut it = s.split('|');
        let kind = it.next()?;
        let device = format!("{}|{}", it.next()?, it.next()?);
        let id = it.next();
        if it.next().is_some() {
            return None;
        }
        match (kind, id) {
            ("2", Some(id)) => Some(PictureKey::V2 {
                device,
                pid: id.parse().ok()?,
            }),
            ("1", Some(id)) => Some(PictureKey::V1 {
                device,
                end: id.to_owned(),
            }),
            ("1", None) => Some(PictureKey::V1Device { device }),
            _ => None,
        }
    }

    /// The camera, as stored (`<productKey>|<deviceName>`, each escaped).
    pub fn device(&self) -> &str {
        match self {
            PictureKey::V2 { device, .. }
            | PictureKey::V1 { device, .. }
            | PictureKey::V1Device { device } => device,
        }
    }

    /// The script's kind argument and id.
    fn kind_id(&self) -> (&'static str, String) {
        match self {
            PictureKey::V2 { pid, .. } => ("2", pid.to_string()),
            PictureKey::V1 { end, .. } => ("1", end.clone()),
            PictureKey::V1Device { .. } => ("D", String::new()),
        }
    }
}

/// `%`-escapes `|` and `%` so that a device is one `|`-free field.
fn escape(s: &str) -> String {
    s.replace('%', "%25").replace('|', "%7C")
}

fn unescape(s: &str) -> String {
    s.replace("%7C", "|").replace("%25", "%")
}

/// A device as keys hold it.
pub fn device_key(d: &DeviceId) -> String {
    format!("{}|{}", escape(&d.product_key), escape(&d.device_name))
}

/// The device a [`device_key`] names.
pub fn device_of(key: &str) -> Option<DeviceId> {
    let (pk, dn) = key.split_once('|')?;
    Some(DeviceId::new(&unescape(pk), &unescape(dn)))
}

/// What a batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreOutcome {
    /// One per chunk, in order.
    pub statuses: Vec<Stored>,
    /// Pictures the batch completed (v2) or may have completed (v1 segments to check).
    pub ready: Vec<PictureKey>,
    /// The round trip.
    pub latency: Duration,
}

/// The answer to a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// This instance holds the lease now.
    Won,
    /// Won from another instance whose lease ran out.
    TakeOver,
    /// This instance held it already; renewed.
    Renewed,
    /// Another instance holds a live lease.
    Held,
    /// Finished already.
    Done,
    /// Nothing to claim (finished and forgotten, or never there).
    Gone,
    /// An expiry claim on a picture not open long enough.
    Fresh,
}

impl Claim {
    /// Whether this instance now holds the lease.
    pub fn won(self) -> bool {
        matches!(self, Claim::Won | Claim::TakeOver | Claim::Renewed)
    }
}

/// How often a picture had been marked ready when it was claimed (see
/// [`ClusterStore::unclaim`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Version(pub u64);

/// A picture's chunks as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// A v2 picture: its header fields, earliest time and pieces by seq.
    V2 {
        /// Number of chunks.
        count: u32,
        /// Size of the whole JPEG.
        size: u32,
        /// Its CRC-32.
        crc: u32,
        /// Earliest chunk time.
        time_ms: i64,
        /// The pieces present, by seq.
        pieces: BTreeMap<u32, Vec<u8>>,
    },
    /// A v1 segment (or all of a device): data chunks in time order.
    V1 {
        /// Store members (to finish exactly these).
        members: Vec<String>,
        /// Their times.
        times: Vec<i64>,
        /// Their bytes.
        bytes: Vec<Vec<u8>>,
        /// A segment: when its first chunk arrived (ms; 0 for a device).
        first_arrival_ms: u64,
        /// A segment: the latest loss of deliveries in flight any instance reported (ms).
        loss_ms: u64,
    },
}

impl Fetched {
    /// A v2 picture with every piece, concatenated; `None` when pieces are missing.
    pub fn v2_bytes(&self) -> Option<Vec<u8>> {
        match self {
            Fetched::V2 { count, pieces, .. } if pieces.len() == *count as usize => {
                Some(pieces.values().flatten().copied().collect())
            }
            _ => None,
        }
    }

    /// Every byte, in order (v2: the pieces present).
    pub fn concat(&self) -> Vec<u8> {
        match self {
            Fetched::V2 { pieces, .. } => pieces.values().flatten().copied().collect(),
            Fetched::V1 { bytes, .. } => bytes.iter().flatten().copied().collect(),
        }
    }

    /// The time that names the file (the earliest chunk's).
    pub fn name_time_ms(&self) -> Option<i64> {
        match self {
            Fetched::V2 { time_ms, .. } => Some(*time_ms),
            Fetched::V1 { times, .. } => times.iter().copied().min(),
        }
    }

    /// Number of data chunks.
    pub fn chunks(&self) -> usize {
        match self {
            Fetched::V2 { pieces, .. } => pieces.len(),
            Fetched::V1 { members, .. } => members.len(),
        }
    }
}

/// The v1 checks on a candidate segment's bytes: `Ok(None)` exact, `Ok(Some(why))` only the
/// structural check could judge it, `Err(why)` not a picture (yet).
pub fn v1_verdict(bytes: &[u8]) -> Result<Option<&'static str>, String> {
    use crate::jpeg::EntropyVerdict;
    if !crate::wire::has_jpeg_markers(bytes) {
        return Err(format!(
            "{} byte(s) do not start FF D8 and end FF D9",
            bytes.len()
        ));
    }
    crate::wire::jpeg_structure_ok(bytes)
        .map_err(|e| format!("{} byte(s) are not a well-formed JPEG: {e}", bytes.len()))?;
    match crate::jpeg::entropy_check(bytes) {
        Ok(EntropyVerdict::Exact { .. }) => Ok(None),
        Ok(EntropyVerdict::Unsupported(why)) => Ok(Some(why)),
        Err(e) => Err(format!(
            "{} byte(s) fail the exact check of the scan data: {e}",
            bytes.len()
        )),
    }
}

/// v2: whether the concatenated pieces are the picture the header announced; else the
/// quarantine reason and detail.
pub fn v2_verdict(bytes: &[u8], size: u32, crc: u32) -> Result<(), (&'static str, String)> {
    if bytes.len() != size as usize {
        return Err((
            "size_mismatch",
            format!("{} byte(s), header says {size}", bytes.len()),
        ));
    }
    let got = crate::wire::crc32(bytes);
    if got != crc {
        return Err((
            "crc_mismatch",
            format!("CRC-32 {got:08X}, header says {crc:08X}"),
        ));
    }
    crate::wire::jpeg_structure_ok(bytes)
        .map_err(|e| ("invalid_jpeg", format!("not a well-formed JPEG: {e}")))
}

/// What `check-config --probe-cluster` found about durability.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// Server version.
    pub version: String,
    /// Replicas connected (`WAIT` waits for them).
    pub replicas: i64,
    /// Ways an accepted chunk could be lost with this server's settings.
    pub warnings: Vec<String>,
}

/// Where connections come from.
enum Source {
    /// One server.
    Direct(Box<Client>),
    /// The master that Redis Sentinel names at each connect.
    Sentinel(Box<redis::sentinel::SentinelClient>),
}

/// The shared chunk store and assembly state (see the module docs).
pub struct ClusterStore {
    source: Source,
    conn: Option<Connection>,
    opts: ClusterOptions,
    prefix: String,
    at: String,
    replicas: i64,
    store: Script,
    claim: Script,
    fetch: Script,
    finish: Script,
    unclaim: Script,
    loss: Script,
    heartbeat: Script,
    /// Round trips made (for the benchmark's "round trips per message").
    pub round_trips: u64,
}

impl fmt::Debug for ClusterStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterStore")
            .field("at", &self.at)
            .field("prefix", &self.prefix)
            .field("instance_id", &self.opts.instance_id)
            .finish_non_exhaustive()
    }
}

fn bulk(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b.clone()),
        Value::SimpleString(s) => Some(s.clone().into_bytes()),
        Value::Int(i) => Some(i.to_string().into_bytes()),
        _ => None,
    }
}

fn text(v: &Value) -> Option<String> {
    bulk(v).and_then(|b| String::from_utf8(b).ok())
}

fn array(v: &Value) -> Option<&[Value]> {
    match v {
        Value::Array(a) => Some(a),
        _ => None,
    }
}

impl ClusterStore {
    /// A store for `opts`; connects on first use (so a daemon starts while Redis is down).
    pub fn new(opts: ClusterOptions) -> Result<ClusterStore, ClusterError> {
        // rediss:// uses rustls with the process's default provider: ours is ring.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let at = redact_url(&opts.url);
        let mut info = opts
            .url
            .as_str()
            .into_connection_info()
            .map_err(|e| ClusterError::Url(format!("{:?}", e.kind())))?;
        if let Some(p) = &opts.password {
            let settings = info.redis_settings().clone().set_password(p.expose());
            info = info.set_redis_settings(settings);
        }
        let url_error = |e: redis::RedisError| ClusterError::Url(format!("{:?}", e.kind()));
        let (source, at) = match &opts.sentinel {
            None => (
                Source::Direct(Box::new(Client::open(info).map_err(url_error)?)),
                at,
            ),
            Some((sentinels, master)) => {
                let node = redis::sentinel::SentinelNodeConnectionInfo::default()
                    .set_redis_connection_info(info.redis_settings().clone());
                let client = redis::sentinel::SentinelClient::build(
                    sentinels.iter().map(String::as_str).collect(),
                    master.as_str(),
                    Some(node),
                    redis::sentinel::SentinelServerType::Master,
                )
                .map_err(url_error)?;
                let shown: Vec<String> = sentinels.iter().map(|u| redact_url(u)).collect();
                (
                    Source::Sentinel(Box::new(client)),
                    format!("master {master} of sentinels {}", shown.join(", ")),
                )
            }
        };
        Ok(ClusterStore {
            source,
            conn: None,
            prefix: format!("{{{}}}", opts.key_prefix),
            at,
            replicas: 0,
            store: Script::new(include_str!("store.lua")),
            claim: Script::new(include_str!("claim.lua")),
            fetch: Script::new(include_str!("fetch.lua")),
            finish: Script::new(include_str!("finish.lua")),
            unclaim: Script::new(include_str!("unclaim.lua")),
            loss: Script::new(include_str!("loss.lua")),
            heartbeat: Script::new(include_str!("heartbeat.lua")),
            opts,
            round_trips: 0,
        })
    }

    /// This instance's id.
    pub fn instance_id(&self) -> &str {
        &self.opts.instance_id
    }

    /// How long a claim holds.
    pub fn lease(&self) -> Duration {
        self.opts.lease
    }

    /// The server, without credentials.
    pub fn describe(&self) -> &str {
        &self.at
    }

    fn error(&self, e: &redis::RedisError) -> ClusterError {
        // The redis crate's messages name neither the URL nor the password.
        ClusterError::Redis {
            at: self.at.clone(),
            message: e.to_string(),
        }
    }

    fn connection(&mut self) -> Result<&mut Connection, ClusterError> {
        if self.conn.is_none() {
            let t = self.opts.timeout;
            let client = match &mut self.source {
                Source::Direct(c) => Ok((**c).clone()),
                Source::Sentinel(s) => s.get_client(),
            };
            let conn = client
                .and_then(|c| c.get_connection_with_timeout(t))
                .map_err(|e| self.error(&e))?;
            conn.set_read_timeout(Some(t))
                .and_then(|()| conn.set_write_timeout(Some(t)))
                .map_err(|e| self.error(&e))?;
            self.conn = Some(conn);
            // Replicas that WAIT should wait for.
            let info: String = self.cmd(redis::cmd("INFO").arg("replication"))?;
            self.replicas = info_field(&info, "connected_slaves")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
        }
        self.conn.as_mut().ok_or_else(|| ClusterError::Redis {
            at: self.at.clone(),
            message: "not connected".to_owned(),
        })
    }

    /// Runs one command; a failure drops the connection.
    fn cmd<T: redis::FromRedisValue>(&mut self, c: &redis::Cmd) -> Result<T, ClusterError> {
        let conn = self.connection()?;
        let r = c.query(conn);
        self.round_trips += 1;
        r.map_err(|e| {
            self.conn = None;
            self.error(&e)
        })
    }

    fn invoke(&mut self, which: &Script, args: &[Vec<u8>]) -> Result<Value, ClusterError> {
        let mut inv = which.prepare_invoke();
        for a in args {
            inv.arg(a.as_slice());
        }
        let conn = self.connection()?;
        let r = inv.invoke::<Value>(conn);
        self.round_trips += 1;
        r.map_err(|e| {
            self.conn = None;
            self.error(&e)
        })
    }

    /// Checks the connection (and reconnects): for `/healthz` and resuming after an outage.
    pub fn ping(&mut self) -> Result<(), ClusterError> {
        let _: String = self.cmd(&redis::cmd("PING"))?;
        Ok(())
    }

    /// Stores a batch atomically; with replicas connected, waits for one to acknowledge it.
    /// Only after `Ok` may the deliveries be accepted.
    pub fn store(&mut self, chunks: &[Chunk], now_ms: u64) -> Result<StoreOutcome, ClusterError> {
        let started = Instant::now();
        let mut args: Vec<Vec<u8>> = Vec::with_capacity(4 + chunks.len() * 10);
        args.push(self.prefix.clone().into_bytes());
        args.push(now_ms.to_string().into_bytes());
        args.push(ms(self.opts.message_ttl).into_bytes());
        args.push(ms(self.opts.done_ttl).into_bytes());
        for c in chunks {
            let (kind, mid, dev, time, data): (&str, &str, String, i64, &[u8]) = match c {
                Chunk::V2 {
                    message_id,
                    device,
                    time_ms,
                    bytes,
                    ..
                } => ("2", message_id, device_key(device), *time_ms, bytes),
                Chunk::V1Data {
                    message_id,
                    device,
                    time_ms,
                    bytes,
                } => ("1", message_id, device_key(device), *time_ms, bytes),
                Chunk::V1End {
                    message_id,
                    device,
                    time_ms,
                } => ("E", message_id, device_key(device), *time_ms, &[]),
            };
            let h = match c {
                Chunk::V2 { header, .. } => [
                    header.pid.to_string(),
                    header.seq.to_string(),
                    header.count.to_string(),
                    header.size.to_string(),
                    format!("{:08X}", header.crc),
                ],
                _ => Default::default(),
            };
            args.push(kind.as_bytes().to_vec());
            args.push(mid.as_bytes().to_vec());
            args.push(dev.into_bytes());
            args.extend(h.into_iter().map(String::into_bytes));
            // v1 positions are zero-padded times: no negative ones (1970 is long past).
            args.push(time.max(0).to_string().into_bytes());
            args.push(data.to_vec());
        }
        let store = self.store.clone();
        let v = self.invoke(&store, &args)?;
        let bad = || ClusterError::Reply {
            at: self.at.clone(),
            what: "store",
        };
        let parts = array(&v).ok_or_else(bad)?;
        let (Some(st), Some(rd)) = (parts.first().and_then(array), parts.get(1).and_then(array))
        else {
            return Err(bad());
        };
        let statuses = st
            .iter()
            .map(|s| match s {
                Value::Int(0) => Some(Stored::New),
                Value::Int(1) => Some(Stored::DuplicateMessage),
                Value::Int(2) => Some(Stored::DuplicateChunk),
                Value::Int(3) => Some(Stored::Finished),
                Value::Int(4) => Some(Stored::Conflict),
                Value::Int(5) => Some(Stored::Late),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()
            .filter(|s| s.len() == chunks.len())
            .ok_or_else(bad)?;
        let ready = rd
            .iter()
            .map(|r| text(r).and_then(|s| PictureKey::decode(&s)))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(bad)?;
        if self.replicas > 0 && statuses.contains(&Stored::New) {
            let acked: i64 = self.cmd(
                redis::cmd("WAIT")
                    .arg(1)
                    .arg(self.opts.timeout.as_millis() as u64),
            )?;
            if acked < 1 {
                return Err(ClusterError::Replicas {
                    at: self.at.clone(),
                    acked,
                    wanted: 1,
                });
            }
        }
        Ok(StoreOutcome {
            statuses,
            ready,
            latency: started.elapsed(),
        })
    }

    fn claim_as(
        &mut self,
        key: &PictureKey,
        now_ms: u64,
        age: Duration,
    ) -> Result<(Claim, Version), ClusterError> {
        let args = [
            self.prefix.clone().into_bytes(),
            key.encode().into_bytes(),
            self.opts.instance_id.clone().into_bytes(),
            ms(self.opts.lease).into_bytes(),
            now_ms.to_string().into_bytes(),
            age.as_millis().to_string().into_bytes(),
        ];
        let claim = self.claim.clone();
        let v = self.invoke(&claim, &args)?;
        let parts = array(&v).unwrap_or_default();
        let version = match parts.get(1) {
            Some(Value::Int(n)) => Some(Version(u64::try_from(*n).unwrap_or(0))),
            _ => None,
        };
        let status = match parts.first().and_then(text).as_deref() {
            Some("won") => Some(Claim::Won),
            Some("takeover") => Some(Claim::TakeOver),
            Some("mine") => Some(Claim::Renewed),
            Some("held") => Some(Claim::Held),
            Some("done") => Some(Claim::Done),
            Some("gone") => Some(Claim::Gone),
            Some("fresh") => Some(Claim::Fresh),
            _ => None,
        };
        match (status, version) {
            (Some(c), Some(v)) => Ok((c, v)),
            _ => Err(ClusterError::Reply {
                at: self.at.clone(),
                what: "claim",
            }),
        }
    }

    /// Claims a picture to write it; the version is for [`unclaim`](Self::unclaim).
    pub fn claim(
        &mut self,
        key: &PictureKey,
        now_ms: u64,
    ) -> Result<(Claim, Version), ClusterError> {
        self.claim_as(key, now_ms, Duration::ZERO)
    }

    /// Claims a picture (or a v1 device) open longer than `timeout`, to quarantine it.
    pub fn claim_expired(
        &mut self,
        key: &PictureKey,
        now_ms: u64,
        timeout: Duration,
    ) -> Result<(Claim, Version), ClusterError> {
        self.claim_as(key, now_ms, timeout.max(Duration::from_millis(1)))
    }

    /// Reads a picture's chunks; `None` when nothing is there. For a
    /// [`PictureKey::V1Device`], every chunk of the device (see
    /// [`fetch_arrived_by`](Self::fetch_arrived_by)).
    pub fn fetch(&mut self, key: &PictureKey) -> Result<Option<Fetched>, ClusterError> {
        self.fetch_as(key, u64::MAX / 2)
    }

    /// A v1 device's chunks that arrived at or before `arrived_ms` (what expires; a picture
    /// the camera is sending now stays).
    pub fn fetch_arrived_by(
        &mut self,
        key: &PictureKey,
        arrived_ms: u64,
    ) -> Result<Option<Fetched>, ClusterError> {
        self.fetch_as(key, arrived_ms)
    }

    fn fetch_as(
        &mut self,
        key: &PictureKey,
        arrived_ms: u64,
    ) -> Result<Option<Fetched>, ClusterError> {
        let (kind, id) = key.kind_id();
        let id = if kind == "D" {
            arrived_ms.to_string()
        } else {
            id
        };
        let args = [
            self.prefix.clone().into_bytes(),
            kind.as_bytes().to_vec(),
            key.device().as_bytes().to_vec(),
            id.into_bytes(),
        ];
        let fetch = self.fetch.clone();
        let v = self.invoke(&fetch, &args)?;
        let bad = || ClusterError::Reply {
            at: self.at.clone(),
            what: "fetch",
        };
        if matches!(v, Value::Nil) {
            return Ok(None);
        }
        let parts = array(&v).ok_or_else(bad)?;
        if kind == "2" {
            if parts.is_empty() {
                return Ok(None);
            }
            let mut fields = BTreeMap::new();
            let mut pieces = BTreeMap::new();
            for pair in parts.chunks(2) {
                let [k, val] = pair else { return Err(bad()) };
                let k = text(k).ok_or_else(bad)?;
                let val = bulk(val).ok_or_else(bad)?;
                match k.strip_prefix('d') {
                    Some(seq) => {
                        pieces.insert(seq.parse::<u32>().map_err(|_| bad())?, val);
                    }
                    None => {
                        fields.insert(k, String::from_utf8(val).map_err(|_| bad())?);
                    }
                }
            }
            let field = |f: &str| fields.get(f).ok_or_else(bad);
            return Ok(Some(Fetched::V2 {
                count: field("c")?.parse().map_err(|_| bad())?,
                size: field("s")?.parse().map_err(|_| bad())?,
                crc: u32::from_str_radix(field("k")?, 16).map_err(|_| bad())?,
                time_ms: field("t")?.parse().map_err(|_| bad())?,
                pieces,
            }));
        }
        let (Some(m), Some(t), Some(d)) = (
            parts.first().and_then(array),
            parts.get(1).and_then(array),
            parts.get(2).and_then(array),
        ) else {
            return Err(bad());
        };
        let members = m
            .iter()
            .map(text)
            .collect::<Option<Vec<_>>>()
            .ok_or_else(bad)?;
        let times = t
            .iter()
            .map(|v| {
                text(v)
                    .and_then(|s| s.parse::<f64>().ok())
                    .map(|f| f as i64)
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(bad)?;
        let bytes = d
            .iter()
            .map(bulk)
            .collect::<Option<Vec<_>>>()
            .ok_or_else(bad)?;
        if members.len() != times.len() || members.len() != bytes.len() {
            return Err(bad());
        }
        let number = |i: usize| {
            parts
                .get(i)
                .and_then(text)
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Ok(Some(Fetched::V1 {
            members,
            times,
            bytes,
            first_arrival_ms: number(3),
            loss_ms: number(4),
        }))
    }

    /// After the picture was written (or quarantined): deletes its chunks (for v1, exactly
    /// those `fetched` holds), marks it done, drops the claim. `false`: another instance had
    /// finished it already.
    pub fn finish(
        &mut self,
        key: &PictureKey,
        fetched: Option<&Fetched>,
    ) -> Result<bool, ClusterError> {
        let (kind, id) = key.kind_id();
        let mut args = vec![
            self.prefix.clone().into_bytes(),
            key.encode().into_bytes(),
            kind.as_bytes().to_vec(),
            key.device().as_bytes().to_vec(),
            id.into_bytes(),
            ms(self.opts.done_ttl).into_bytes(),
            ms(self.opts.done_ttl).into_bytes(),
            fetched
                .and_then(Fetched::name_time_ms)
                .unwrap_or(i64::MIN)
                .to_string()
                .into_bytes(),
        ];
        if let Some(Fetched::V1 { members, .. }) = fetched {
            args.extend(members.iter().map(|m| m.clone().into_bytes()));
        }
        let finish = self.finish.clone();
        match self.invoke(&finish, &args)? {
            Value::Int(1) => Ok(true),
            Value::Int(0) => Ok(false),
            _ => Err(ClusterError::Reply {
                at: self.at.clone(),
                what: "finish",
            }),
        }
    }

    /// Gives a claim back (the segment failed its check: wait for more chunks). The picture
    /// leaves the ready list unless a chunk marked it ready since `version` was read: then
    /// `true`, and the caller should check it again.
    pub fn unclaim(&mut self, key: &PictureKey, version: Version) -> Result<bool, ClusterError> {
        let args = [
            self.prefix.clone().into_bytes(),
            key.encode().into_bytes(),
            version.0.to_string().into_bytes(),
        ];
        let unclaim = self.unclaim.clone();
        match self.invoke(&unclaim, &args)? {
            Value::Int(0) => Ok(false),
            Value::Int(1) => Ok(true),
            _ => Err(ClusterError::Reply {
                at: self.at.clone(),
                what: "unclaim",
            }),
        }
    }

    /// Gives a claim back but leaves the picture on the ready list: a v1 picture held for the
    /// redelivery grace, which a sweep checks again once a lease has passed.
    pub fn release_claim(&mut self, key: &PictureKey) -> Result<(), ClusterError> {
        let pk = key.encode();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("DEL")
            .arg(format!("{}:claim:{pk}", self.prefix))
            .ignore()
            .cmd("HDEL")
            .arg(format!("{}:claimed", self.prefix))
            .arg(&pk)
            .ignore();
        let conn = self.connection()?;
        let r: redis::RedisResult<()> = pipe.query(conn);
        self.round_trips += 1;
        r.map_err(|e| {
            self.conn = None;
            self.error(&e)
        })
    }

    /// Reports a loss of deliveries in flight at `at_ms` (a connection lost, deliveries
    /// released, a restart): every instance holds v1 pictures that straddle it for the grace.
    pub fn report_loss(&mut self, at_ms: u64) -> Result<(), ClusterError> {
        let args = [
            self.prefix.clone().into_bytes(),
            at_ms.to_string().into_bytes(),
        ];
        let loss = self.loss.clone();
        self.invoke(&loss, &args).map(|_| ())
    }

    /// This instance is alive (for `ttl`); returns how many other instances were found dead
    /// (their heartbeat ran out), whose death is then recorded as a loss (see
    /// [`report_loss`](Self::report_loss)).
    pub fn heartbeat(&mut self, now_ms: u64, ttl: Duration) -> Result<u64, ClusterError> {
        let args = [
            self.prefix.clone().into_bytes(),
            self.opts.instance_id.clone().into_bytes(),
            now_ms.to_string().into_bytes(),
            ms(ttl).into_bytes(),
        ];
        let heartbeat = self.heartbeat.clone();
        match self.invoke(&heartbeat, &args)? {
            Value::Int(n) => Ok(u64::try_from(n).unwrap_or(0)),
            _ => Err(ClusterError::Reply {
                at: self.at.clone(),
                what: "heartbeat",
            }),
        }
    }

    /// Pictures on the ready list longer than a lease: their completer may have died.
    pub fn stale_ready(
        &mut self,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<PictureKey>, ClusterError> {
        let upto = now_ms.saturating_sub(self.opts.lease.as_millis() as u64);
        self.list(":ready", upto, limit)
    }

    /// Pictures (and v1 devices) open longer than `timeout`.
    pub fn expired(
        &mut self,
        now_ms: u64,
        timeout: Duration,
        limit: usize,
    ) -> Result<Vec<PictureKey>, ClusterError> {
        let upto = now_ms.saturating_sub(timeout.as_millis() as u64);
        self.list(":open", upto, limit)
    }

    fn list(
        &mut self,
        set: &str,
        upto: u64,
        limit: usize,
    ) -> Result<Vec<PictureKey>, ClusterError> {
        let got: Vec<String> = self.cmd(
            redis::cmd("ZRANGEBYSCORE")
                .arg(format!("{}{set}", self.prefix))
                .arg("-inf")
                .arg(upto)
                .arg("LIMIT")
                .arg(0)
                .arg(limit),
        )?;
        Ok(got.iter().filter_map(|s| PictureKey::decode(s)).collect())
    }

    /// Reads the server's durability settings: what could lose an accepted chunk.
    pub fn probe(&mut self) -> Result<Probe, ClusterError> {
        let server: String = self.cmd(redis::cmd("INFO").arg("server"))?;
        let version = info_field(&server, "redis_version")
            .or_else(|| info_field(&server, "valkey_version"))
            .unwrap_or("unknown")
            .to_owned();
        let repl: String = self.cmd(redis::cmd("INFO").arg("replication"))?;
        let replicas = info_field(&repl, "connected_slaves")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut warnings = Vec::new();
        let get = |s: &mut Self, k: &str| -> Option<String> {
            let v: Result<Vec<String>, _> = s.cmd(redis::cmd("CONFIG").arg("GET").arg(k));
            v.ok().and_then(|v| v.get(1).cloned())
        };
        match get(self, "appendonly").as_deref() {
            Some("yes") => {}
            Some(v) => warnings.push(format!(
                "appendonly is {v:?}: a restart of Redis loses every chunk accepted since its \
                 last snapshot; set appendonly yes"
            )),
            None => warnings.push(
                "CONFIG GET is not allowed: cannot tell whether appendonly is on (a managed \
                 Redis: check that persistence is on)"
                    .to_owned(),
            ),
        }
        if let Some(v) = get(self, "appendfsync") {
            if v != "always" && replicas == 0 {
                warnings.push(format!(
                    "appendfsync is {v:?} and no replica is connected: a crash of the Redis host \
                     loses up to a second of accepted chunks; set appendfsync always, or run a \
                     replica (the receiver then WAITs for it)"
                ));
            }
        }
        Ok(Probe {
            version,
            replicas,
            warnings,
        })
    }
}

fn ms(d: Duration) -> String {
    d.as_millis().max(1).to_string()
}

/// A `key:value` line of `INFO`.
fn info_field<'a>(info: &'a str, key: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(str::trim)
}

#[cfg(test)]
mod tests;

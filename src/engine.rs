//! The engine: one thread that owns the assembler, the spool and the sink, and decides every
//! delivery's outcome.
//!
//! Per batch (group commit):
//!
//! 1. classify each delivery ([`crate::message::classify`]), drop duplicate message ids, and append
//!    one spool record per delivery (the chunk, or just the fact that it was seen);
//! 2. commit the spool: one write + one fsync for the whole batch. If that fails, nothing of the
//!    batch is used: every delivery is **released** (Aliyun keeps it) and the engine pauses;
//! 3. feed the chunks to the assembler (pure) and sweep expired pictures;
//! 4. write finished images (fsync + rename) and quarantine records; a failed write keeps the
//!    picture pending (it is still in the spool) and releases the deliveries that finished it;
//! 5. settle: accept everything that is durable.
//!
//! While paused (an I/O error, or the spool over its cap) the AMQP side grants no credit and the
//! engine releases anything that still arrives; it retries with backoff and resumes by itself.
//!
//! With [`EngineOptions::write_behind`] (the object store, whose writes wait on the network)
//! step 4 hands each finished picture to a pool of writer threads and the engine goes on with the
//! next batch; the deliveries that finished a picture are settled when its write is confirmed
//! (accepted) or has failed (released; the picture is pending as above). See `behind.rs`.
//!
//! The thread loop ([`run`]) is the only part that waits; [`Engine::process`] and
//! [`Engine::tick`] take the time as a parameter so tests drive them directly.

mod cluster;

use crate::amqp::client::ConnState;
use crate::amqp::{Inbound, Outcome, Settler};
use crate::assembler::{Action, Assembler, Disposition, Finished, Limits, Tag};
use crate::dedup::Dedup;
use crate::events::engine as events;
use crate::message::{classify, Classified, ImgMessage};
use crate::metrics::{Kind, Metrics};
use crate::output::{ChunkStore, Output};
use crate::sink::{DynSink, Sink, SinkError, Written};
use crate::spool::{Record, Spool, SpoolOptions};
use crate::wire::{self, Format, ImgValue};
use receiver_protocol::time::{now_ms, Backoff, Jitter};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

mod behind;

/// Crash injection for the crash-recovery tests (only with the `failpoints` feature, which the
/// tests enable; the production build has none): with `RECEIVER_FAILPOINT=<name>:<n>` in the
/// environment the process kills itself with SIGKILL the `n`-th time it passes `<name>`
/// (`after_commit`: chunks fsynced but not settled; `after_write`: an image renamed into place but
/// its last chunk not settled; `before_settle`: a batch fully done but not settled;
/// `before_upload`: an object store PUT about to be sent; `mid_upload`: the PUT
/// started and waiting, not answered). Unset, it
/// costs one relaxed load.
#[cfg(feature = "failpoints")]
pub(crate) fn failpoint(name: &str) {
    use std::sync::atomic::AtomicU64;
    use std::sync::OnceLock;
    static SPEC: OnceLock<Option<(String, u64, AtomicU64)>> = OnceLock::new();
    let spec = SPEC.get_or_init(|| {
        let v = std::env::var("RECEIVER_FAILPOINT").ok()?;
        let (n, count) = v.split_once(':')?;
        Some((n.to_string(), count.parse().ok()?, AtomicU64::new(0)))
    });
    if let Some((point, at, seen)) = spec {
        if point == name && seen.fetch_add(1, Relaxed) + 1 == *at {
            tracing::warn!(
                failpoint = name,
                "RECEIVER_FAILPOINT reached: killing the process"
            );
            // SAFETY: kill(2) with our own pid has no memory-safety preconditions.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
    }
}

/// Without the `failpoints` feature there is nothing to reach.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub(crate) fn failpoint(_name: &str) {}

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Assembler bounds.
    pub limits: Limits,
    /// Remembered message ids.
    pub dedup_window: usize,
    /// Most deliveries per group commit.
    pub batch_max: usize,
    /// Longest wait to fill a batch.
    pub batch_delay: Duration,
    /// First retry delay after an I/O error.
    pub retry_min: Duration,
    /// Longest retry delay after an I/O error.
    pub retry_max: Duration,
    /// How long spool records are kept after their delivery was settled. A settlement travels
    /// to Aliyun after the commit; if the process dies before it arrives, the delivery comes
    /// again and the kept record (its message id, or the finished picture's chunks) makes the
    /// redelivery harmless. Far longer than a settlement takes, far shorter than the spool cap.
    pub release_delay: Duration,
    /// Most deliveries that can be outstanding at once (connections x credit). A batch that
    /// holds this many is processed at once: waiting `batch_delay` could not add to it, since
    /// no credit is left until it is settled.
    pub max_in_flight: usize,
    /// Where the assembler spills bytes beyond [`Limits::memory_budget`] (`None`: no spilling).
    pub spill_dir: Option<std::path::PathBuf>,
    /// Most images written at once ([`PARALLEL_WRITES`] for the folder; `[output] concurrency`
    /// for an object store, where each write waits on the network).
    pub parallel_writes: usize,
    /// Write pictures behind the batch loop (on `parallel_writes` threads) instead of waiting
    /// for them in it: for an output whose writes wait on the network.
    pub write_behind: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            limits: Limits::default(),
            dedup_window: 65_536,
            batch_max: 256,
            batch_delay: Duration::from_millis(5),
            retry_min: Duration::from_millis(500),
            retry_max: Duration::from_secs(30),
            release_delay: Duration::from_secs(10),
            max_in_flight: usize::MAX,
            spill_dir: None,
            parallel_writes: PARALLEL_WRITES,
            write_behind: false,
        }
    }
}

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The spool could not be opened or replayed.
    #[error("cannot open the spool: {0}")]
    Spool(#[from] crate::spool::SpoolError),
    /// The output or state folder cannot be used.
    #[error("cannot prepare the output folders: {0}")]
    Sink(#[from] crate::sink::SinkError),
    /// The spill folder cannot be used.
    #[error("{0}")]
    Spill(#[from] crate::spill::SpillError),
    /// The writer threads could not be started.
    #[error("cannot start the writer threads: {0}")]
    Writers(std::io::Error),
}

/// What start-up recovered from the spool.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Records replayed.
    pub records: usize,
    /// Corrupt or torn records skipped.
    pub corrupt: usize,
    /// Pictures open after the replay.
    pub open: usize,
    /// Images completed by the replay that were not on disk yet.
    pub written: usize,
}

/// An I/O problem the engine is waiting out.
#[derive(Debug)]
struct Degraded {
    /// Retry not before this time, ms.
    next_retry_ms: u64,
    /// The spool itself failed (probe it before resuming).
    spool_failed: bool,
}

/// Most image files the engine writes at once. Each write ends in two fsyncs (file, folder) that
/// take milliseconds on real (and virtual) disks; concurrent ones overlap, so a batch that
/// completes many pictures costs about one write's time instead of one per picture. The default
/// of [`EngineOptions::parallel_writes`].
pub const PARALLEL_WRITES: usize = 16;

/// An image write's result and when it completed (µs since the epoch).
type WriteDone = (Result<Written, SinkError>, u64);

/// A picture handed to the writer threads, and the deliveries that wait for its write.
struct InFlight {
    img: Arc<Finished>,
    /// Deliveries of the batch that finished the picture: settled when its write is done.
    held: Vec<(Settler, u64)>,
    /// The latest receipt time (ms) among them, for the image-latency histogram.
    last_received_ms: Option<u64>,
}

struct Staged {
    settler: Settler,
    received_ms: u64,
    tag: Tag,
    /// The chunk to assemble, when there is one.
    msg: Option<ImgMessage>,
}

/// The engine's state. See the module docs.
pub struct Engine {
    opts: EngineOptions,
    assembler: Assembler,
    dedup: Dedup,
    spool: Option<Box<dyn ChunkStore>>,
    sink: DynSink,
    metrics: Arc<Metrics>,
    degraded: Option<Degraded>,
    /// The retry schedule while degraded (`retry_min` doubling to `retry_max`, no jitter: one
    /// local disk, nothing to spread); reset when writes succeed again.
    retry_backoff: Backoff,
    pending: Vec<Action>,
    next_tag: Tag,
    actions: Vec<Action>,
    hook: Option<crate::ops::hook::Hook>,
    /// Spool tags to release once their time comes (see [`EngineOptions::release_delay`]).
    releases: std::collections::VecDeque<(u64, Vec<Tag>)>,
    /// `cold_total` and time of the last heap trim (see [`Engine::trim_heap`]).
    trimmed: (u64, u64),
    /// The connections whose losses the assembler must hear of ([`Engine::watch_connections`]).
    connections: Option<Arc<Vec<Arc<ConnState>>>>,
    /// The latest connection loss passed on to the assembler, ms.
    seen_loss: u64,
    /// When the engine restarted from a spool that held pictures (a loss of everything the
    /// previous process had in flight), until the first link is up.
    startup_loss: Option<u64>,
    /// The writer threads ([`EngineOptions::write_behind`]).
    writers: Option<behind::Writers>,
    /// Writes handed to them, by id.
    in_flight: HashMap<u64, InFlight>,
    /// Results received while a batch was being worked through, applied at its end.
    completed: Vec<behind::Completion>,
    next_write: u64,
    /// Cluster mode: the shared store replaces the spool and the assembler.
    cluster: Option<cluster::ClusterState>,
}

impl Engine {
    /// Opens the engine; with `spool` set, replays it first (recovered pictures are rebuilt, those
    /// that complete are written, idempotently). `now_ms` is the current wall-clock time.
    pub fn open(
        opts: EngineOptions,
        spool: Option<SpoolOptions>,
        sink: Sink<impl Output + 'static>,
        metrics: Arc<Metrics>,
        now_ms: u64,
    ) -> Result<(Engine, RecoveryReport), EngineError> {
        let mut report = RecoveryReport::default();
        let assembler = match &opts.spill_dir {
            Some(dir) if opts.limits.memory_budget > 0 => Assembler::with_cold_store(
                opts.limits.clone(),
                Box::new(crate::spill::SpillStore::open(dir)?),
            ),
            _ => Assembler::new(opts.limits.clone()),
        };
        let dedup = Dedup::new(opts.dedup_window);
        let mut engine = Engine::with_parts(opts, assembler, dedup, sink.into_dyn(), metrics, None);
        if let Some(spool_opts) = spool {
            let (spool, recovery) = Spool::open(spool_opts)?;
            report.records = recovery.records.len();
            report.corrupt = recovery.corrupt.len();
            for c in &recovery.corrupt {
                tracing::warn!(segment = %c.segment.display(), offset = c.offset, kind = ?c.kind, what = %c.what,
                    "spool record is corrupt or torn; skipped");
            }
            engine.spool = Some(Box::new(spool));
            // Whatever the previous process had in flight comes back later: the pictures rebuilt
            // from the spool wait for it like those that straddle a lost connection.
            engine.assembler.connection_lost(now_ms);
            engine.startup_loss = Some(now_ms);
            let mut done_tags = Vec::new();
            for (tag, record) in recovery.records {
                match record {
                    Record::Img { msg, .. } => {
                        if !msg.message_id.is_empty() {
                            engine.dedup.check_and_insert(&msg.message_id);
                        }
                        // Replayed at the recovery time: downtime does not count towards expiry.
                        let mut out = std::mem::take(&mut engine.actions);
                        let disp = engine.assembler.push(&msg, tag, now_ms, &mut out);
                        engine.actions = out;
                        if let Disposition::Duplicate { attached: false }
                        | Disposition::AfterQuarantine = disp
                        {
                            done_tags.push(tag);
                        }
                    }
                    Record::Seen { message_id, .. } => {
                        if !message_id.is_empty() {
                            engine.dedup.check_and_insert(&message_id);
                        }
                        done_tags.push(tag);
                    }
                    Record::Done { .. } => done_tags.push(tag),
                }
            }
            engine.release_later(done_tags, now_ms);
            let actions = std::mem::take(&mut engine.actions);
            let failed = engine.execute(actions, now_ms, &mut report.written, &[]);
            if !failed.is_empty() {
                tracing::warn!(
                    pictures = engine.pending.len(),
                    "recovered pictures could not be written yet; will retry"
                );
            }
            report.open = engine.assembler.open_count();
            engine.update_gauges(now_ms);
        }
        if engine.opts.write_behind {
            engine.writers = Some(
                behind::Writers::start(&engine.sink, engine.opts.parallel_writes)
                    .map_err(EngineError::Writers)?,
            );
        }
        Ok((engine, report))
    }

    /// Opens the engine in cluster mode: chunks go to the shared `store` (no spool, no local
    /// assembly; see `engine/cluster.rs`). Connecting waits for the first batch, so the daemon
    /// starts while the store is down (intake then pauses).
    pub fn open_cluster(
        opts: EngineOptions,
        store: crate::cluster::ClusterStore,
        sink: Sink<impl Output + 'static>,
        metrics: Arc<Metrics>,
    ) -> Engine {
        let _ = metrics.cluster_instance.set(store.instance_id().to_owned());
        let timeout = Duration::from_millis(opts.limits.timeout_ms);
        let max_image_bytes = opts.limits.max_image_bytes;
        let grace_ms = opts.limits.redelivery_grace_ms;
        let assembler = Assembler::new(opts.limits.clone());
        let cluster = cluster::ClusterState::new(store, timeout, max_image_bytes, grace_ms);
        // Cluster mode writes the pictures it claims itself (engine/cluster.rs): no write-behind.
        Engine::with_parts(
            opts,
            assembler,
            Dedup::new(1),
            sink.into_dyn(),
            metrics,
            Some(cluster),
        )
    }

    /// The engine's state before any spool or store is opened.
    fn with_parts(
        opts: EngineOptions,
        assembler: Assembler,
        dedup: Dedup,
        sink: DynSink,
        metrics: Arc<Metrics>,
        cluster: Option<cluster::ClusterState>,
    ) -> Engine {
        let retry_backoff = Backoff::new(opts.retry_min, opts.retry_max).with_jitter(Jitter::None);
        Engine {
            assembler,
            dedup,
            opts,
            spool: None,
            sink,
            metrics,
            degraded: None,
            retry_backoff,
            pending: Vec::new(),
            next_tag: 0,
            actions: Vec::new(),
            hook: None,
            releases: std::collections::VecDeque::new(),
            trimmed: (0, 0),
            connections: None,
            seen_loss: 0,
            startup_loss: None,
            writers: None,
            in_flight: HashMap::new(),
            completed: Vec::new(),
            next_write: 0,
            cluster,
        }
    }

    /// Makes the assembler hear of every loss of these connections (see
    /// [`Assembler::connection_lost`]): deliveries in flight on a lost connection come back later.
    pub fn watch_connections(&mut self, connections: Arc<Vec<Arc<ConnState>>>) {
        self.connections = Some(connections);
    }

    /// Passes connection losses on to the assembler. A loss lasts while its connection is down
    /// (what it had in flight can only come back once a link is up again), but counts at most
    /// one grace beyond the moment it happened: a connection that stays down for long does not
    /// hold pictures for ever (other connections, if any, get the redeliveries). After a restart
    /// from the spool, the restart is such a loss until the first link is up.
    fn note_losses(&mut self, now_ms: u64) {
        use std::sync::atomic::Ordering::Acquire;
        let grace = self.opts.limits.redelivery_grace_ms;
        let ongoing = |lost: u64, up: bool| if up { lost } else { now_ms.min(lost + grace) };
        let mut latest = 0;
        let mut any_up = false;
        if let Some(conns) = &self.connections {
            for c in conns.iter() {
                let up = c.link_attached.load(Acquire);
                any_up |= up;
                let lost = c.lost_at_ms.load(Acquire);
                if lost > 0 {
                    latest = latest.max(ongoing(lost, up));
                }
            }
            if let Some(start) = self.startup_loss {
                latest = latest.max(ongoing(start, any_up));
                if any_up {
                    self.startup_loss = None;
                }
            }
        }
        if latest > self.seen_loss {
            self.seen_loss = latest;
            self.assembler.connection_lost(latest);
        }
    }

    /// Runs `hook` for every newly written image (never blocks: see [`crate::ops::hook::Hook`]).
    pub fn set_hook(&mut self, hook: Option<crate::ops::hook::Hook>) {
        self.hook = hook;
    }

    /// Whether credit should be withheld (I/O trouble or a full spool).
    pub fn is_paused(&self) -> bool {
        self.degraded.is_some()
            || self.spool.as_ref().is_some_and(|s| s.is_full())
            || self.cluster.as_ref().is_some_and(|c| c.is_down())
    }

    /// The earliest time [`Engine::tick`] has work to do.
    pub fn next_wakeup(&self) -> Option<u64> {
        let expiry = self.assembler.next_deadline();
        let retry = self.degraded.as_ref().map(|d| d.next_retry_ms);
        let release = self.releases.front().map(|(due, _)| *due);
        let cluster = self.cluster.as_ref().map(|c| c.next_wakeup());
        [expiry, retry, release, cluster]
            .into_iter()
            .flatten()
            .min()
    }

    /// Open pictures.
    pub fn open_pictures(&self) -> usize {
        self.assembler.open_count()
    }

    /// Decides and settles every delivery of `batch`, received by `now_ms`.
    pub fn process(&mut self, batch: Vec<Inbound>, now_ms: u64) {
        if batch.is_empty() {
            return;
        }
        if self.cluster.is_some() {
            self.process_cluster(batch, now_ms);
            return;
        }
        self.note_losses(now_ms);
        self.collect_writes(now_ms);
        if self.degraded.is_some() {
            for inbound in batch {
                self.settle(
                    inbound.settler,
                    inbound.received_ms,
                    Outcome::Release,
                    now_ms,
                );
            }
            return;
        }
        let mut staged = Vec::with_capacity(batch.len());
        let mut batch_ids: HashSet<String> = HashSet::new();
        let mut append_error = None;
        for inbound in batch {
            self.metrics
                .last_delivery_ms
                .store(inbound.received_ms, Relaxed);
            let record = self.stage(&inbound, &mut batch_ids);
            let tag = match self.spool.as_mut() {
                Some(spool) if append_error.is_none() => match spool.append(&record) {
                    Ok(tag) => tag,
                    Err(e) => {
                        append_error = Some(e);
                        0
                    }
                },
                Some(_) => 0,
                None => {
                    self.next_tag += 1;
                    self.next_tag
                }
            };
            // The record is the chunk: no copy for the spool.
            let msg = match record {
                Record::Img { msg, .. } => Some(msg),
                _ => None,
            };
            staged.push(Staged {
                settler: inbound.settler,
                received_ms: inbound.received_ms,
                tag,
                msg,
            });
        }
        // 2. Group commit.
        if let Some(spool) = self.spool.as_mut() {
            let result = match append_error {
                Some(e) => Err(e),
                None => spool.commit().map(|_| ()),
            };
            if let Err(e) = result {
                spool.abort();
                events::SpoolCommitFailed {
                    error: &e,
                    deliveries: staged.len(),
                }
                .emit(&self.metrics);
                self.degrade(now_ms, true);
                for s in staged {
                    self.settle(s.settler, s.received_ms, Outcome::Release, now_ms);
                }
                return;
            }
            events::SpoolCommitted.emit(&self.metrics);
            failpoint("after_commit");
        }
        // Remembered only once durable (a failed commit releases them; the redelivery is new).
        for msg in staged.iter().filter_map(|s| s.msg.as_ref()) {
            self.dedup.check_and_insert(&msg.message_id);
        }
        // 3. Assemble.
        let mut actions = std::mem::take(&mut self.actions);
        let mut done = Vec::new();
        for s in &staged {
            match &s.msg {
                None => done.push(s.tag),
                Some(msg) => {
                    let disp = self.assembler.push(msg, s.tag, now_ms, &mut actions);
                    match disp {
                        Disposition::Duplicate { attached } => {
                            events::DuplicateChunkDropped {
                                device: &msg.device,
                                message_id: &msg.message_id,
                            }
                            .emit(&self.metrics);
                            if !attached {
                                done.push(s.tag);
                            }
                        }
                        Disposition::AfterQuarantine => {
                            events::ChunkAfterQuarantineDropped {
                                device: &msg.device,
                                message_id: &msg.message_id,
                            }
                            .emit(&self.metrics);
                            done.push(s.tag);
                        }
                        Disposition::Stored | Disposition::Completed | Disposition::Quarantined => {
                        }
                    }
                }
            }
        }
        self.assembler.expire(now_ms, &mut actions);
        self.release_later(done, now_ms);
        // 4. Files. (Receipt times by tag, for the image-latency histogram.)
        let mut received: Vec<(Tag, u64)> = staged.iter().map(|s| (s.tag, s.received_ms)).collect();
        received.sort_unstable();
        let mut written = 0;
        let list = std::mem::take(&mut actions);
        let (failed, held) = if self.writers.is_some() {
            self.execute_behind(list, now_ms, &received)
        } else {
            (
                self.execute(list, now_ms, &mut written, &received),
                HashMap::new(),
            )
        };
        self.actions = actions;
        // 5. Settle (what waits for a write behind: when it is done).
        failpoint("before_settle");
        for s in staged {
            if failed.contains(&s.tag) {
                self.settle(s.settler, s.received_ms, Outcome::Release, now_ms);
            } else if let Some(f) = held.get(&s.tag).and_then(|id| self.in_flight.get_mut(id)) {
                f.held.push((s.settler, s.received_ms));
            } else {
                self.settle(s.settler, s.received_ms, Outcome::Accept, now_ms);
            }
        }
        self.apply_completed(now_ms);
        self.update_gauges(now_ms);
    }

    /// Expires idle pictures and retries pending writes after an I/O error.
    pub fn tick(&mut self, now_ms: u64) {
        if self.cluster.is_some() {
            self.tick_cluster(now_ms);
            self.metrics.paused.store(self.is_paused(), Relaxed);
            return;
        }
        self.note_losses(now_ms);
        self.collect_writes(now_ms);
        if let Some(d) = &self.degraded {
            if now_ms >= d.next_retry_ms {
                self.retry(now_ms);
            }
        }
        self.release_due(now_ms);
        let mut actions = std::mem::take(&mut self.actions);
        self.assembler.expire(now_ms, &mut actions);
        let mut written = 0;
        self.execute_into(&mut actions, now_ms, &mut written);
        self.actions = actions;
        self.update_gauges(now_ms);
    }

    /// Classifies one delivery: the spool record to write (the chunk itself, or just the fact
    /// that the message id was seen).
    fn stage(&self, inbound: &Inbound, batch_ids: &mut HashSet<String>) -> Record {
        let received_ms = inbound.received_ms;
        let seen = || Record::Seen {
            received_ms,
            message_id: inbound.delivery.message_id.clone().unwrap_or_default(),
        };
        match classify(&inbound.delivery) {
            Classified::Skip {
                reason,
                device,
                detail,
            } => {
                events::DeliverySkipped {
                    reason,
                    device: device.as_ref(),
                    topic: inbound.delivery.topic.as_deref(),
                    message_id: inbound.delivery.message_id.as_deref(),
                    detail: &detail,
                }
                .emit(&self.metrics);
                seen()
            }
            Classified::Img(msg) => {
                let id = msg.message_id.as_str();
                if !id.is_empty() && (self.dedup.contains(id) || batch_ids.contains(id)) {
                    events::DuplicateMessageDropped {
                        device: &msg.device,
                        message_id: id,
                    }
                    .emit(&self.metrics);
                    return seen();
                }
                if !id.is_empty() {
                    batch_ids.insert(id.to_string());
                }
                let kind = match wire::parse_value(&msg.value) {
                    Ok(ImgValue::V1Hex(_)) => Kind::V1Chunk,
                    Ok(ImgValue::V1End) => Kind::V1End,
                    Ok(ImgValue::V2 { .. }) => Kind::V2Chunk,
                    Err(_) => Kind::BadChunk,
                };
                events::ChunkReceived { kind }.emit(&self.metrics);
                Record::Img { received_ms, msg }
            }
        }
    }

    /// Executes `actions` (emptying it) and returns the tags of those that failed.
    fn execute_into(
        &mut self,
        actions: &mut Vec<Action>,
        now_ms: u64,
        written: &mut usize,
    ) -> HashSet<Tag> {
        let list = std::mem::take(actions);
        self.execute(list, now_ms, written, &[])
    }

    /// Executes `actions`; `received` (sorted by tag) holds the receipt times of the current
    /// batch's deliveries: a new image whose latest chunk is among them is observed in
    /// [`Metrics::image_latency`].
    fn execute(
        &mut self,
        actions: Vec<Action>,
        now_ms: u64,
        written: &mut usize,
        received: &[(Tag, u64)],
    ) -> HashSet<Tag> {
        let mut failed = HashSet::new();
        // Image files first, concurrently: each ends in two fsyncs.
        let mut done = if self.degraded.is_none() {
            self.write_images(&actions)
        } else {
            Vec::new()
        };
        for (i, action) in actions.into_iter().enumerate() {
            let result = match (done.get_mut(i).and_then(Option::take), &action) {
                // Already written: a success stands even if an earlier action failed.
                (Some((r, at_us)), Action::Write(img)) => {
                    self.apply_write(img, r, now_ms).map(|n| (n, at_us))
                }
                _ if self.degraded.is_some() => {
                    failed.extend(action_tags(&action).iter().copied());
                    self.pending.push(action);
                    continue;
                }
                _ => self
                    .perform(&action, now_ms)
                    .map(|n| (n, crate::metrics::wall_us())),
            };
            match result {
                Ok((new_file, at_us)) => {
                    if new_file {
                        self.observe_image_latency(&action, received, at_us);
                        failpoint("after_write");
                    }
                    *written += usize::from(new_file);
                    self.finish(action, now_ms);
                }
                Err(()) => {
                    failed.extend(action_tags(&action).iter().copied());
                    self.pending.push(action);
                    self.degrade(now_ms, false);
                }
            }
        }
        failed
    }

    /// Writes the image files of `actions` (up to [`EngineOptions::parallel_writes`] at once) and
    /// returns, at
    /// each image's index, the result and when it completed (µs since the epoch).
    fn write_images(&self, actions: &[Action]) -> Vec<Option<WriteDone>> {
        let mut done: Vec<Option<WriteDone>> = actions.iter().map(|_| None).collect();
        let jobs: Vec<(usize, &Finished)> = actions
            .iter()
            .enumerate()
            .filter_map(|(i, a)| match a {
                Action::Write(img) => Some((i, img)),
                Action::Quarantine(_) | Action::Retract(_) => None,
            })
            .collect();
        if jobs.len() <= 1 {
            for (i, img) in jobs {
                done[i] = Some((self.sink.write_image(img), crate::metrics::wall_us()));
            }
            return done;
        }
        // Folders first, one by one, so no image relies on another's folder sync.
        let mut prepared: HashSet<&crate::message::DeviceId> = HashSet::new();
        let mut ready = Vec::with_capacity(jobs.len());
        for (i, img) in jobs {
            if prepared.insert(&img.device) {
                if let Err(e) = self.sink.prepare_device_dir(&img.device) {
                    done[i] = Some((Err(e), crate::metrics::wall_us()));
                    continue;
                }
            }
            ready.push((i, img));
        }
        let next = std::sync::atomic::AtomicUsize::new(0);
        let (sink, ready) = (&self.sink, &ready);
        let work = || {
            let mut out = Vec::new();
            loop {
                let k = next.fetch_add(1, Relaxed);
                let Some(&(i, img)) = ready.get(k) else {
                    return out;
                };
                out.push((i, sink.write_image(img), crate::metrics::wall_us()));
            }
        };
        let results: Vec<(usize, Result<Written, SinkError>, u64)> = std::thread::scope(|s| {
            let helpers: Vec<_> = (1..ready.len().min(self.opts.parallel_writes.max(1)))
                .filter_map(|_| {
                    std::thread::Builder::new()
                        .name("engine-write".into())
                        .spawn_scoped(s, work)
                        .ok()
                })
                .collect();
            let mut all = work();
            for h in helpers {
                // A panicked helper leaves its images unwritten; they are retried below.
                if let Ok(mut r) = h.join() {
                    all.append(&mut r);
                }
            }
            all
        });
        for (i, r, at_us) in results {
            done[i] = Some((r, at_us));
        }
        done
    }

    /// Step 4 with write-behind: pictures go to the writer threads (waiting only while all of
    /// them are busy); a quarantine or retraction first lets every write in flight land (it may
    /// concern one of those pictures), then runs here. Returns the tags to release and, for the
    /// tags that finished a picture now being written, that write's id.
    fn execute_behind(
        &mut self,
        actions: Vec<Action>,
        now_ms: u64,
        received: &[(Tag, u64)],
    ) -> (HashSet<Tag>, HashMap<Tag, u64>) {
        let mut failed = HashSet::new();
        let mut held = HashMap::new();
        for action in actions {
            if self.degraded.is_some() {
                failed.extend(action_tags(&action).iter().copied());
                self.pending.push(action);
                continue;
            }
            let img = match action {
                Action::Write(img) => img,
                other => {
                    self.wait_writes(true);
                    match self.perform(&other, now_ms) {
                        Ok(_) => self.finish(other, now_ms),
                        Err(()) => {
                            failed.extend(action_tags(&other).iter().copied());
                            self.pending.push(other);
                            self.degrade(now_ms, false);
                        }
                    }
                    continue;
                }
            };
            self.wait_writes(false);
            self.next_write += 1;
            let id = self.next_write;
            let ours: Vec<(Tag, u64)> = img
                .tags
                .iter()
                .filter_map(|t| received.binary_search_by_key(t, |r| r.0).ok())
                .map(|i| received[i])
                .collect();
            let img = Arc::new(img);
            let submitted = self
                .writers
                .as_mut()
                .is_some_and(|w| w.submit(id, img.clone()));
            if !submitted {
                // No writer threads (cannot happen while the engine runs): write it here.
                let r = self.sink.write_image(&img);
                self.completed.push((id, r, crate::metrics::wall_us()));
            }
            held.extend(ours.iter().map(|&(t, _)| (t, id)));
            self.in_flight.insert(
                id,
                InFlight {
                    img,
                    held: Vec::new(),
                    last_received_ms: ours.iter().map(|&(_, ms)| ms).max(),
                },
            );
        }
        (failed, held)
    }

    /// Receives results (into [`Engine::completed`]) until a writer is free, or with `all`
    /// until nothing is in flight.
    fn wait_writes(&mut self, all: bool) {
        let Some(w) = self.writers.as_mut() else {
            return;
        };
        while w.in_flight() > 0 && (all || w.is_full()) {
            match w.recv_blocking() {
                Some(c) => self.completed.push(c),
                None => return,
            }
        }
    }

    /// Applies every result already received back.
    fn collect_writes(&mut self, now_ms: u64) {
        if let Some(w) = self.writers.as_mut() {
            while let Some(c) = w.try_recv() {
                self.completed.push(c);
            }
        }
        self.apply_completed(now_ms);
    }

    /// Applies one result from the writer threads ([`run`] waits for them beside deliveries).
    fn complete_write(&mut self, c: behind::Completion, now_ms: u64) {
        self.completed.push(c);
        self.apply_completed(now_ms);
        self.update_gauges(now_ms);
    }

    /// A finished write: like the synchronous path's, then its held deliveries are settled.
    fn apply_completed(&mut self, now_ms: u64) {
        for (id, result, at_us) in std::mem::take(&mut self.completed) {
            let Some(f) = self.in_flight.remove(&id) else {
                continue;
            };
            let img = Arc::unwrap_or_clone(f.img);
            match self.apply_write(&img, result, now_ms) {
                Ok(new_file) => {
                    if new_file {
                        if let Some(ms) = f.last_received_ms {
                            let us = at_us.saturating_sub(ms.saturating_mul(1000));
                            events::ImageDurable { latency_us: us }.emit(&self.metrics);
                        }
                        failpoint("after_write");
                    }
                    self.finish(Action::Write(img), now_ms);
                    for (settler, received_ms) in f.held {
                        self.settle(settler, received_ms, Outcome::Accept, now_ms);
                    }
                }
                Err(()) => {
                    for (settler, received_ms) in f.held {
                        self.settle(settler, received_ms, Outcome::Release, now_ms);
                    }
                    self.pending.push(Action::Write(img));
                    self.degrade(now_ms, false);
                }
            }
        }
    }

    /// Lets every write in flight land and applies the results (at shutdown).
    fn drain_writes(&mut self, now_ms: u64) {
        self.wait_writes(true);
        self.apply_completed(now_ms);
        self.update_gauges(now_ms);
    }

    /// Records receipt-of-the-last-chunk to durable for a freshly written image. Receipt times
    /// are whole milliseconds, so this over-states by up to 1 ms.
    fn observe_image_latency(&self, action: &Action, received: &[(Tag, u64)], at_us: u64) {
        let Action::Write(img) = action else { return };
        let last = img
            .tags
            .iter()
            .filter_map(|t| received.binary_search_by_key(t, |r| r.0).ok())
            .map(|i| received[i].1)
            .max();
        if let Some(ms) = last {
            let us = at_us.saturating_sub(ms.saturating_mul(1000));
            events::ImageDurable { latency_us: us }.emit(&self.metrics);
        }
    }

    /// Counts, logs and hands to the hook the outcome of writing `img`. `Ok(true)` when a new
    /// image file was created.
    fn apply_write(
        &self,
        img: &Finished,
        result: Result<Written, SinkError>,
        now_ms: u64,
    ) -> Result<bool, ()> {
        match result {
            Ok(w) => {
                if let Some(why) = img.structure_only {
                    events::V1StructureOnly {
                        device: &img.device,
                        reason: why,
                        path: &w.path,
                    }
                    .emit(&self.metrics);
                }
                events::ImageWritten {
                    image: img,
                    written: &w,
                    assembly_ms: now_ms.saturating_sub(img.opened_ms),
                }
                .emit(&self.metrics);
                if !w.already_present {
                    if let Some(hook) = &self.hook {
                        hook.submit(crate::ops::hook::HookJob {
                            path: w.path.clone(),
                            device: img.device.clone(),
                            bytes: w.bytes,
                            format: img.format,
                            object: w.object.clone(),
                        });
                    }
                }
                Ok(!w.already_present)
            }
            Err(e) => {
                events::ImageWriteFailed {
                    device: &img.device,
                    error: &e,
                }
                .emit(&self.metrics);
                Err(())
            }
        }
    }

    /// Writes one action's file. `Ok(true)` when a new image file was created.
    fn perform(&self, action: &Action, now_ms: u64) -> Result<bool, ()> {
        match action {
            Action::Write(img) => self.apply_write(img, self.sink.write_image(img), now_ms),
            Action::Quarantine(q) => match self.sink.quarantine(q) {
                Ok(w) => {
                    events::PictureQuarantined {
                        quarantined: q,
                        path: &w.path,
                    }
                    .emit(&self.metrics);
                    Ok(false)
                }
                Err(e) => {
                    events::QuarantineWriteFailed {
                        device: &q.device,
                        reason: q.reason,
                        error: &e,
                    }
                    .emit(&self.metrics);
                    Err(())
                }
            },
            Action::Retract(r) => match self.sink.retract(r) {
                Ok(moved) => {
                    events::PictureRetracted {
                        retraction: r,
                        moved: moved.as_ref(),
                    }
                    .emit(&self.metrics);
                    Ok(false)
                }
                Err(e) => {
                    events::RetractFailed {
                        device: &r.device,
                        error: &e,
                    }
                    .emit(&self.metrics);
                    Err(())
                }
            },
        }
    }

    /// After a successful write: free the spool space, remember finished v2 pictures.
    fn finish(&mut self, action: Action, now_ms: u64) {
        let Some(spool) = self.spool.as_mut() else {
            return;
        };
        if let Action::Write(img) = &action {
            if let (Some(pid), Format::V2) = (img.pid, img.format) {
                let done = Record::Done {
                    device: img.device.clone(),
                    pid,
                    size: img.bytes.len() as u32,
                    crc: wire::crc32(&img.bytes),
                    at_ms: now_ms,
                };
                // Not committed on its own: it rides with the next batch. Losing it in a crash
                // only means a late duplicate chunk may open (and later expire) a stray picture.
                let _ = spool.append(&done);
            }
        }
        self.release_later(action_tags(&action).iter().copied(), now_ms);
    }

    /// Queues `tags` for release after [`EngineOptions::release_delay`].
    fn release_later(&mut self, tags: impl IntoIterator<Item = Tag>, now_ms: u64) {
        if self.spool.is_none() {
            return;
        }
        let tags: Vec<Tag> = tags.into_iter().collect();
        if tags.is_empty() {
            return;
        }
        let due = now_ms + self.opts.release_delay.as_millis() as u64;
        match self.releases.back_mut() {
            Some((d, list)) if *d == due => list.extend(tags),
            _ => self.releases.push_back((due, tags)),
        }
    }

    /// Releases what is due and makes the releases durable (an otherwise empty commit).
    fn release_due(&mut self, now_ms: u64) {
        let Some(spool) = self.spool.as_mut() else {
            return;
        };
        let mut any = false;
        while self.releases.front().is_some_and(|(due, _)| *due <= now_ms) {
            if let Some((_, tags)) = self.releases.pop_front() {
                spool.release(&mut tags.into_iter());
                any = true;
            }
        }
        if any && self.degraded.is_none() {
            if let Err(e) = spool.commit() {
                spool.abort();
                tracing::debug!(error = %e, "release record not written yet; it rides with the next commit");
            }
        }
    }

    fn degrade(&mut self, now_ms: u64, spool_failed: bool) {
        if self.degraded.is_none() {
            self.retry_backoff.reset();
        }
        let backoff = self.retry_backoff.next_delay(0);
        let spool_failed = spool_failed || self.degraded.as_ref().is_some_and(|d| d.spool_failed);
        self.degraded = Some(Degraded {
            next_retry_ms: now_ms + backoff.as_millis() as u64,
            spool_failed,
        });
        events::IntakePaused.emit(&self.metrics);
    }

    fn retry(&mut self, now_ms: u64) {
        let spool_failed = self.degraded.as_ref().is_some_and(|d| d.spool_failed);
        if spool_failed {
            if let Some(spool) = self.spool.as_mut() {
                let probe = Record::Seen {
                    received_ms: now_ms,
                    message_id: String::new(),
                };
                let ok = spool
                    .append(&probe)
                    .and_then(|tag| spool.commit().map(|_| tag));
                match ok {
                    Ok(tag) => spool.release(&mut std::iter::once(tag)),
                    Err(e) => {
                        spool.abort();
                        tracing::debug!(error = %e, "spool still not writable");
                        self.degrade(now_ms, true);
                        return;
                    }
                }
            }
        }
        let pending = std::mem::take(&mut self.pending);
        let mut still = Vec::new();
        for action in pending {
            if !still.is_empty() {
                still.push(action);
                continue;
            }
            match self.perform(&action, now_ms) {
                Ok(_) => self.finish(action, now_ms),
                Err(()) => still.push(action),
            }
        }
        if still.is_empty() {
            self.degraded = None;
            events::IntakeResumed.emit(&self.metrics);
        } else {
            self.pending = still;
            self.degrade(now_ms, false);
        }
    }

    fn settle(&mut self, settler: Settler, received_ms: u64, outcome: Outcome, now_ms: u64) {
        if outcome == Outcome::Release {
            // Aliyun pushes it again later, after newer deliveries.
            self.assembler.connection_lost(now_ms);
        }
        events::DeliverySettled {
            outcome,
            received_ms,
            now_ms,
        }
        .emit(&self.metrics);
        settler.settle(outcome);
    }

    /// While the assembler spills (it is over its memory limit), hands the allocator's free
    /// pages back to the system at most once a second: picture buffers freed by spilling are
    /// scattered through the heap, and glibc's malloc would otherwise keep them resident.
    /// Measured (10 000 devices mid-upload, 8 MiB limit, one run each): peak RSS 60.4 -> 57.8 MB.
    fn trim_heap(&mut self, now_ms: u64) {
        let total = self.assembler.cold_total();
        let (at_total, at_ms) = self.trimmed;
        if total == at_total || now_ms.saturating_sub(at_ms) < 1000 {
            return;
        }
        self.trimmed = (total, now_ms);
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim only releases free memory; it has no preconditions.
        unsafe {
            libc::malloc_trim(0);
        }
    }

    fn update_gauges(&mut self, now_ms: u64) {
        let m = &self.metrics;
        m.open_assemblies
            .store(self.assembler.open_count() as u64, Relaxed);
        m.assembly_bytes
            .store(self.assembler.buffered_bytes() as u64, Relaxed);
        m.assembly_spilled_bytes
            .store(self.assembler.cold_bytes() as u64, Relaxed);
        m.spilled_bytes.store(self.assembler.cold_total(), Relaxed);
        let (errors, last) = self.assembler.cold_errors();
        events::SpillErrors {
            total: errors,
            last: last.as_ref().map(|e| e as &dyn std::fmt::Display),
        }
        .emit(m);
        m.oldest_assembly_ms.store(
            self.assembler
                .oldest_open_ms()
                .map_or(0, |t| now_ms.saturating_sub(t)),
            Relaxed,
        );
        if let Some(spool) = &self.spool {
            m.spool_bytes.store(spool.bytes(), Relaxed);
        }
        m.paused.store(self.is_paused(), Relaxed);
        self.trim_heap(now_ms);
    }

    /// Flushes at shutdown: nothing is buffered between batches, so this only reports what stays
    /// open (durable in the spool, or lost in in-memory mode).
    pub fn shutdown(self) {
        let open = self.assembler.open_count();
        if open > 0 {
            if self.spool.is_some() {
                tracing::info!(open, "stopping with pictures open; they are in the spool and resume on the next start");
            } else {
                tracing::warn!(
                    open,
                    "stopping with pictures open; in-memory mode: their chunks are lost"
                );
            }
        }
        if !self.pending.is_empty() {
            tracing::warn!(
                pending = self.pending.len(),
                "stopping with images not yet written; they are in the spool and are written on the next start"
            );
        }
    }
}

fn action_tags(action: &Action) -> &[Tag] {
    action.tags()
}

/// Runs the engine on the current (dedicated) thread until every sender of `rx` is gone and the
/// channel is drained. `paused` mirrors [`Engine::is_paused`] for the AMQP side.
pub fn run(mut engine: Engine, mut rx: mpsc::Receiver<Inbound>, paused: watch::Sender<bool>) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the engine's timer runtime");
            return;
        }
    };
    let batch_max = engine.opts.batch_max.max(1);
    let batch_delay = engine.opts.batch_delay;
    // Cluster mode: every line the engine logs names this instance.
    let _instance = engine
        .cluster
        .as_ref()
        .map(|c| tracing::info_span!("cluster", instance_id = %c.instance_id()).entered());
    loop {
        let wake = engine.next_wakeup();
        let writers = engine.writers.as_mut();
        let first = rt.block_on(async {
            let delivery = async {
                match wake {
                    Some(at) => {
                        let wait = Duration::from_millis(at.saturating_sub(now_ms()));
                        tokio::time::timeout(wait, rx.recv()).await.ok()
                    }
                    None => Some(rx.recv().await),
                }
            };
            let written = async {
                match writers {
                    Some(w) => w.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                d = delivery => Ok(d),
                Some(c) = written => Err(c),
            }
        });
        let first = match first {
            Err(c) => {
                let now = now_ms();
                engine.metrics.engine_busy(now);
                engine.complete_write(c, now);
                engine.metrics.engine_idle();
                let is_paused = engine.is_paused();
                paused.send_if_modified(|p| std::mem::replace(p, is_paused) != is_paused);
                continue;
            }
            Ok(first) => first,
        };
        let first = match first {
            None => {
                engine.metrics.engine_busy(now_ms());
                engine.tick(now_ms());
                engine.metrics.engine_idle();
                let is_paused = engine.is_paused();
                paused.send_if_modified(|p| std::mem::replace(p, is_paused) != is_paused);
                continue;
            }
            Some(None) => break,
            Some(Some(inbound)) => inbound,
        };
        let mut batch = Vec::with_capacity(batch_max.min(1024));
        batch.push(first);
        while batch.len() < batch_max {
            match rx.try_recv() {
                Ok(i) => batch.push(i),
                Err(_) => break,
            }
        }
        let full = batch_max.min(engine.opts.max_in_flight.max(1));
        // The delay lets a batch share one spool commit (or one round trip to the cluster's
        // store); without either it is only latency.
        let shared = engine.spool.is_some() || engine.cluster.is_some();
        if batch.len() < full && !batch_delay.is_zero() && shared {
            rt.block_on(async {
                let deadline = tokio::time::Instant::now() + batch_delay;
                while batch.len() < full {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(i)) => batch.push(i),
                        _ => break,
                    }
                }
            });
        }
        let now = now_ms();
        engine.metrics.engine_busy(now);
        engine.process(batch, now);
        engine.tick(now);
        engine.metrics.engine_idle();
        let is_paused = engine.is_paused();
        paused.send_if_modified(|p| std::mem::replace(p, is_paused) != is_paused);
    }
    // Writes behind the loop land (or fail) before the engine stops; their deliveries are
    // settled accordingly.
    engine.drain_writes(now_ms());
    engine.shutdown();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::RawDelivery;
    use std::path::Path;

    const PK: &str = "a1PK";

    struct Harness {
        engine: Engine,
        metrics: Arc<Metrics>,
        tx: mpsc::UnboundedSender<(u64, Outcome)>,
        rx: mpsc::UnboundedReceiver<(u64, Outcome)>,
        next: u64,
    }

    impl Harness {
        fn new(dir: &Path) -> Harness {
            Harness::with(dir, EngineOptions::default())
        }

        fn with(dir: &Path, opts: EngineOptions) -> Harness {
            let metrics = Arc::new(Metrics::default());
            let sink = Sink::new(dir.join("out"), dir.join("state")).unwrap();
            let (engine, _) = Engine::open(opts, None, sink, metrics.clone(), 1_000).unwrap();
            let (tx, rx) = mpsc::unbounded_channel();
            Harness {
                engine,
                metrics,
                tx,
                rx,
                next: 0,
            }
        }

        fn inbound(&mut self, dn: &str, value: &str, message_id: &str) -> Inbound {
            self.next += 1;
            let alink = wire::alink_payload(self.next as u32, value);
            let body = crate::message::forward_property_post(
                PK,
                dn,
                alink.as_bytes(),
                1_000_000 + self.next as i64,
            )
            .unwrap();
            Inbound {
                conn: 0,
                delivery: RawDelivery {
                    topic: Some(wire::forwarded_topic(PK, dn)),
                    message_id: Some(message_id.to_string()),
                    generate_time: None,
                    body,
                },
                received_ms: 1_000,
                settler: Settler::new(self.next, self.tx.clone()),
            }
        }

        fn outcomes(&mut self) -> Vec<(u64, Outcome)> {
            let mut v = Vec::new();
            while let Ok(o) = self.rx.try_recv() {
                v.push(o);
            }
            v
        }
    }

    fn jpeg() -> Vec<u8> {
        receiver_testkit::sample::scene_jpeg(32, 24, 3, "T", 70).unwrap()
    }

    #[test]
    fn every_delivery_is_settled_once_and_the_image_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = Harness::new(dir.path());
        let img = jpeg();
        let values = wire::encode_v2(&img, 5, 99).unwrap();
        let mut batch = Vec::new();
        for (i, v) in values.iter().enumerate().rev() {
            batch.push(h.inbound("cam-01", v, &format!("m{i}")));
        }
        // The same messageId twice, a noise topic, and bad JSON.
        batch.push(h.inbound("cam-01", &values[0], "m0"));
        let mut noise = h.inbound("cam-01", "END", "n1");
        noise.delivery.topic = Some("/as/mqtt/status/a1PK/cam-01".into());
        batch.push(noise);
        let mut bad = h.inbound("cam-01", "END", "n2");
        bad.delivery.body = b"{not json".to_vec();
        batch.push(bad);
        let n = batch.len();
        h.engine.process(batch, 2_000);
        let outcomes = h.outcomes();
        assert_eq!(outcomes.len(), n, "one outcome per delivery");
        assert!(outcomes.iter().all(|(_, o)| *o == Outcome::Accept));
        let mut tags: Vec<u64> = outcomes.iter().map(|(t, _)| *t).collect();
        tags.dedup();
        assert_eq!(tags.len(), n);
        assert_eq!(h.metrics.images_v2.load(Relaxed), 1);
        assert_eq!(h.metrics.messages(Kind::Duplicate), 1);
        assert_eq!(h.metrics.messages(Kind::Skipped), 2);
        let files: Vec<_> = std::fs::read_dir(dir.path().join("out/a1PK/cam-01"))
            .unwrap()
            .map(|e| std::fs::read(e.unwrap().path()).unwrap())
            .collect();
        assert_eq!(files, vec![img]);
    }

    /// A v1 picture with a chunk before a connection loss is held while that connection is
    /// down and for the grace after (at most one grace beyond the loss); one that starts after
    /// the loss is written at once.
    #[test]
    fn a_lost_connection_holds_straddling_v1_pictures_for_the_grace() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = Harness::new(dir.path());
        let conn = ConnState::new();
        conn.link_attached.store(true, Relaxed);
        h.engine.watch_connections(Arc::new(vec![conn.clone()]));
        let grace = h.engine.opts.limits.redelivery_grace_ms;
        let img = jpeg();
        let values = wire::encode_v1(&img, 200).unwrap();
        let first = h.inbound("cam-03", &values[0], "s0");
        h.engine.process(vec![first], 2_000);
        // The link drops at 3 000 and is down until 50 000.
        conn.link_attached.store(false, Relaxed);
        conn.lost_at_ms.store(3_000, Relaxed);
        let rest: Vec<_> = values[1..]
            .iter()
            .enumerate()
            .map(|(i, v)| h.inbound("cam-03", v, &format!("s{}", i + 1)))
            .collect();
        h.engine.process(rest, 4_000);
        assert!(
            h.outcomes().iter().all(|(_, o)| *o == Outcome::Accept),
            "held, yet every chunk accepted"
        );
        assert_eq!(h.metrics.images_v1.load(Relaxed), 0, "held");
        assert_eq!(h.engine.next_wakeup(), Some(4_000 + grace));
        // Still down when the grace is over: the loss goes on (what was in flight cannot come
        // back yet), but counts at most one grace beyond the moment it happened.
        h.engine.tick(50_000);
        h.engine.tick(4_000 + grace);
        assert_eq!(h.metrics.images_v1.load(Relaxed), 0, "still down: held");
        let until = 3_000 + 2 * grace;
        assert_eq!(h.engine.next_wakeup(), Some(until));
        conn.link_attached.store(true, Relaxed);
        h.engine.tick(5_000 + grace);
        assert_eq!(h.engine.next_wakeup(), Some(until));
        h.engine.tick(until - 1);
        assert_eq!(h.metrics.images_v1.load(Relaxed), 0);
        h.engine.tick(until);
        assert_eq!(
            h.metrics.images_v1.load(Relaxed),
            1,
            "written after the grace"
        );
        // A picture that starts after the loss is not held.
        let img2 = receiver_testkit::sample::scene_jpeg(32, 24, 9, "T", 70).unwrap();
        let batch: Vec<_> = wire::encode_v1(&img2, 200)
            .unwrap()
            .iter()
            .enumerate()
            .map(|(i, v)| h.inbound("cam-04", v, &format!("t{i}")))
            .collect();
        h.engine.process(batch, until + 1);
        assert_eq!(h.metrics.images_v1.load(Relaxed), 2);
    }

    #[test]
    fn a_failed_write_releases_the_last_chunk_pauses_and_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = Harness::new(dir.path());
        // A file where the device folder should be makes the image write fail.
        std::fs::create_dir_all(dir.path().join("out/a1PK")).unwrap();
        let blocker = dir.path().join("out/a1PK/cam-02");
        std::fs::write(&blocker, b"x").unwrap();
        let img = jpeg();
        let values = wire::encode_v2(&img, 6, 300).unwrap();
        let (last, first) = values.split_last().unwrap();
        let batch: Vec<_> = first
            .iter()
            .enumerate()
            .map(|(i, v)| h.inbound("cam-02", v, &format!("a{i}")))
            .collect();
        h.engine.process(batch, 2_000);
        assert!(h.outcomes().iter().all(|(_, o)| *o == Outcome::Accept));
        let end = h.inbound("cam-02", last, "alast");
        let end_tag = end.settler.tag;
        h.engine.process(vec![end], 2_100);
        assert_eq!(h.outcomes(), vec![(end_tag, Outcome::Release)]);
        assert!(h.engine.is_paused());
        // While paused, new deliveries are released, not accepted.
        let other = h.inbound("cam-03", "FFD8", "b1");
        h.engine.process(vec![other], 2_200);
        assert!(h.outcomes().iter().all(|(_, o)| *o == Outcome::Release));
        // Space comes back: the retry writes the pending image and resumes intake.
        std::fs::remove_file(&blocker).unwrap();
        let wake = h.engine.next_wakeup().unwrap();
        h.engine.tick(wake);
        assert!(!h.engine.is_paused());
        assert_eq!(h.metrics.images_v2.load(Relaxed), 1);
        // Aliyun redelivers the released last chunk: a duplicate now, accepted.
        let again = h.inbound("cam-02", last, "alast");
        h.engine.process(vec![again], wake + 1);
        assert!(h.outcomes().iter().all(|(_, o)| *o == Outcome::Accept));
        assert_eq!(h.metrics.images_v2.load(Relaxed), 1);
    }

    fn behind() -> EngineOptions {
        EngineOptions {
            write_behind: true,
            parallel_writes: 2,
            ..EngineOptions::default()
        }
    }

    /// Write-behind: the batch is settled at once except the delivery that finished the
    /// picture, which waits for its write; then it is accepted.
    #[test]
    fn write_behind_holds_the_finishing_delivery_until_the_picture_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = Harness::with(dir.path(), behind());
        let img = jpeg();
        let values = wire::encode_v2(&img, 5, 99).unwrap();
        let (last, first) = values.split_last().unwrap();
        let batch: Vec<_> = first
            .iter()
            .enumerate()
            .map(|(i, v)| h.inbound("cam-05", v, &format!("w{i}")))
            .collect();
        let n = batch.len();
        h.engine.process(batch, 2_000);
        assert_eq!(h.outcomes().len(), n);
        let end = h.inbound("cam-05", last, "wlast");
        let end_tag = end.settler.tag;
        let extra = h.inbound("cam-06", &wire::encode_v2(&jpeg(), 6, 99).unwrap()[0], "x0");
        let extra_tag = extra.settler.tag;
        h.engine.process(vec![end, extra], 2_100);
        // The other picture's chunk is accepted at once; the finishing one waits.
        assert_eq!(h.outcomes(), vec![(extra_tag, Outcome::Accept)]);
        h.engine.drain_writes(2_200);
        assert_eq!(h.outcomes(), vec![(end_tag, Outcome::Accept)]);
        assert_eq!(h.metrics.images_v2.load(Relaxed), 1);
        let files: Vec<_> = std::fs::read_dir(dir.path().join("out/a1PK/cam-05"))
            .unwrap()
            .map(|e| std::fs::read(e.unwrap().path()).unwrap())
            .collect();
        assert_eq!(files, vec![img]);
    }

    /// Write-behind, failed write: the finishing delivery is released, intake pauses, the retry
    /// writes the picture and resumes intake; pictures complete in one batch are all written.
    #[test]
    fn write_behind_failed_write_releases_pauses_and_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = Harness::with(dir.path(), behind());
        std::fs::create_dir_all(dir.path().join("out/a1PK")).unwrap();
        let blocker = dir.path().join("out/a1PK/cam-07");
        std::fs::write(&blocker, b"x").unwrap();
        let img = jpeg();
        let values = wire::encode_v2(&img, 6, 300).unwrap();
        let batch: Vec<_> = values
            .iter()
            .enumerate()
            .map(|(i, v)| h.inbound("cam-07", v, &format!("f{i}")))
            .collect();
        let n = batch.len() as u64;
        h.engine.process(batch, 2_000);
        h.engine.drain_writes(2_050);
        let outcomes = h.outcomes();
        assert_eq!(outcomes.len() as u64, n);
        let released: Vec<_> = outcomes
            .iter()
            .filter(|(_, o)| *o == Outcome::Release)
            .collect();
        assert!(!released.is_empty(), "{outcomes:?}");
        assert!(h.engine.is_paused());
        std::fs::remove_file(&blocker).unwrap();
        let wake = h.engine.next_wakeup().unwrap();
        h.engine.tick(wake);
        assert!(!h.engine.is_paused());
        assert_eq!(h.metrics.images_v2.load(Relaxed), 1);
        // Many pictures finished in one batch: more than the writer threads, all written once.
        let mut batch = Vec::new();
        let mut want = Vec::new();
        for d in 0..7u32 {
            let img = receiver_testkit::sample::scene_jpeg(32, 24, d + 20, "T", 70).unwrap();
            for (i, v) in wire::encode_v2(&img, 10 + d, 300)
                .unwrap()
                .iter()
                .enumerate()
            {
                batch.push(h.inbound(&format!("many-{d}"), v, &format!("m{d}-{i}")));
            }
            want.push(img);
        }
        let n = batch.len();
        h.engine.process(batch, wake + 10);
        h.engine.drain_writes(wake + 20);
        let outcomes = h.outcomes();
        assert_eq!(outcomes.len(), n);
        assert!(outcomes.iter().all(|(_, o)| *o == Outcome::Accept));
        assert_eq!(h.metrics.images_v2.load(Relaxed), 8);
        for (d, img) in want.iter().enumerate() {
            let files: Vec<_> = std::fs::read_dir(dir.path().join(format!("out/a1PK/many-{d}")))
                .unwrap()
                .map(|e| std::fs::read(e.unwrap().path()).unwrap())
                .collect();
            assert_eq!(&files, &vec![img.clone()]);
        }
    }

    #[test]
    fn expired_pictures_are_quarantined_on_tick() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = Harness::new(dir.path());
        let values = wire::encode_v2(&jpeg(), 7, 30).unwrap();
        let batch = vec![h.inbound("cam-04", &values[0], "c0")];
        h.engine.process(batch, 2_000);
        assert_eq!(h.engine.open_pictures(), 1);
        let wake = h.engine.next_wakeup().unwrap();
        h.engine.tick(wake);
        assert_eq!(h.engine.open_pictures(), 0);
        assert_eq!(h.metrics.quarantined_count("expired"), 1);
        assert!(dir.path().join("state/quarantine/a1PK/cam-04").is_dir());
    }
}

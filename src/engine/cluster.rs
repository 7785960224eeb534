//! The engine in cluster mode (`[cluster]`): the shared store ([`ClusterStore`]) is the chunk
//! store and the assembly state; this instance's part of the batch loop is
//!
//! 1. classify each delivery and turn each picture chunk into a [`Chunk`] (bad chunks are
//!    quarantined on their own, here);
//! 2. store the batch in one call (deduplicated across instances by the store). If the call
//!    fails, every delivery of the batch is **released** and intake pauses until the store
//!    answers again;
//! 3. for each picture the batch completed: claim it (lease), read it back, check it (v2 size
//!    and CRC-32, v1 the JPEG checks), write it through the output (create-only), then finish it
//!    in the store (chunks deleted, done marker). A v1 segment that fails its check is handed
//!    back to wait for more chunks;
//! 4. accept every delivery: its chunk is durable in the shared store since step 2.
//!
//! A periodic sweep ([`Engine::tick`]) takes over pictures whose claimant died (ready longer
//! than a lease) and quarantines pictures open longer than `[assembly] timeout` (each exactly
//! once across the instances: the claim decides).

use super::{events, failpoint, Engine};
use crate::amqp::{Inbound, Outcome};
use crate::assembler::{Finished, Quarantined};
use crate::cluster::{
    device_key, device_of, v1_verdict, v2_verdict, Chunk, ClusterError, ClusterStore, Fetched,
    PictureKey, Stored,
};
use crate::events::cluster as cevents;
use crate::message::{classify, Classified, DeviceId, ImgMessage};
use crate::metrics::Kind;
use crate::wire::{self, Format, ImgValue};
use receiver_protocol::time::{Backoff, Jitter};
use std::time::Duration;

/// Most pictures one sweep looks at (each list: stale claims, expired pictures).
const SWEEP_LIMIT: usize = 64;

/// How often the sweep runs.
const SWEEP_EVERY_MS: u64 = 1000;

/// How often temporary files a crashed instance left in the shared output are looked for.
const CLEAN_EVERY_MS: u64 = 10 * 60 * 1000;

/// The engine's cluster-mode state.
pub(super) struct ClusterState {
    pub(super) store: ClusterStore,
    /// `[assembly] timeout`: an open picture older than this expires.
    timeout: Duration,
    /// Largest picture accepted.
    max_image_bytes: usize,
    next_sweep_ms: u64,
    /// Next look for temporary files left in the shared output (start-up did the first).
    next_clean_ms: u64,
    /// While the store is unreachable: when to try again.
    down_until: Option<u64>,
    backoff: Backoff,
    instance_id: String,
    /// `[assembly] redelivery_grace`, ms.
    grace_ms: u64,
    /// The latest loss of deliveries in flight seen here (connection lost, release, start).
    local_loss_ms: u64,
    /// The latest loss reported to the store.
    reported_loss_ms: u64,
    /// v1 pictures this instance holds for the redelivery grace, with when it ends (if this
    /// instance dies, the sweep of another finds them on the ready list after a lease).
    held: Vec<(u64, PictureKey)>,
}

impl ClusterState {
    pub(super) fn new(
        store: ClusterStore,
        timeout: Duration,
        max_image_bytes: usize,
        grace_ms: u64,
    ) -> Self {
        let now = receiver_protocol::time::now_ms();
        ClusterState {
            grace_ms,
            // A start is a loss: what a previous process of this instance had in flight comes
            // back later.
            local_loss_ms: now,
            reported_loss_ms: 0,
            held: Vec::new(),
            instance_id: store.instance_id().to_owned(),
            store,
            timeout,
            max_image_bytes,
            next_sweep_ms: 0,
            next_clean_ms: receiver_protocol::time::now_ms() + CLEAN_EVERY_MS,
            down_until: None,
            backoff: Backoff::new(Duration::from_millis(250), Duration::from_secs(10))
                .with_jitter(Jitter::None),
        }
    }

    pub(super) fn instance_id(&self) -> &str {
        &self.instance_id
    }

    pub(super) fn is_down(&self) -> bool {
        self.down_until.is_some()
    }

    pub(super) fn next_wakeup(&self) -> u64 {
        let held = self.held.iter().map(|(due, _)| *due).min();
        self.down_until
            .unwrap_or(self.next_sweep_ms)
            .min(held.unwrap_or(u64::MAX))
    }
}

/// What one delivery became.
enum Staged {
    /// Nothing to store (skipped, or quarantined on its own here).
    Settled,
    /// The i-th chunk of the batch.
    Chunk(usize),
    /// Quarantining it failed: release it (it comes back).
    Failed,
}

/// A chunk, or why it goes to quarantine on its own.
fn to_chunk(msg: &ImgMessage, received_ms: u64, max: usize) -> Result<Chunk, Box<Quarantined>> {
    let time_ms = msg
        .item_time
        .or(msg.gmt_create)
        .unwrap_or(received_ms as i64);
    let lone = |format, pid, reason: &'static str, detail: String| {
        Box::new(Quarantined {
            device: msg.device.clone(),
            format,
            pid,
            reason,
            detail,
            bytes: msg.value.as_bytes().to_vec(),
            name_time_ms: time_ms,
            missing: Vec::new(),
            tags: Vec::new(),
        })
    };
    let message_id = msg.message_id.clone();
    let device = msg.device.clone();
    match wire::parse_value(&msg.value) {
        Ok(ImgValue::V2 { header, data }) => {
            if header.size as usize > max {
                return Err(lone(
                    Some(Format::V2),
                    Some(header.pid),
                    "too_large",
                    format!("header says {} bytes; the limit is {max}", header.size),
                ));
            }
            match wire::decode_base64(data) {
                Ok(bytes) => Ok(Chunk::V2 {
                    message_id,
                    device,
                    header,
                    time_ms,
                    bytes,
                }),
                Err(e) => Err(lone(
                    Some(Format::V2),
                    Some(header.pid),
                    e.reason(),
                    format!("chunk {} of {}: {e}", header.seq, header.count),
                )),
            }
        }
        Ok(ImgValue::V1Hex(hex)) => {
            let mut bytes = Vec::with_capacity(hex.len() / 2);
            match wire::decode_hex_into(hex, &mut bytes) {
                Ok(()) => Ok(Chunk::V1Data {
                    message_id,
                    device,
                    time_ms,
                    bytes,
                }),
                Err(e) => Err(lone(Some(Format::V1), None, e.reason(), e.to_string())),
            }
        }
        Ok(ImgValue::V1End) => Ok(Chunk::V1End {
            message_id,
            device,
            time_ms,
        }),
        Err(e) => Err(lone(None, None, e.reason(), e.to_string())),
    }
}

fn kind_of(c: &Chunk) -> Kind {
    match c {
        Chunk::V2 { .. } => Kind::V2Chunk,
        Chunk::V1Data { .. } => Kind::V1Chunk,
        Chunk::V1End { .. } => Kind::V1End,
    }
}

fn chunk_device(c: &Chunk) -> (&DeviceId, &str) {
    match c {
        Chunk::V2 {
            device, message_id, ..
        }
        | Chunk::V1Data {
            device, message_id, ..
        }
        | Chunk::V1End {
            device, message_id, ..
        } => (device, message_id),
    }
}

/// What to do with a claimed picture.
enum Verdict {
    Write(Finished),
    /// A whole v1 picture that straddles a loss: wait out the redelivery grace, until this
    /// time (ms), then check it again.
    Hold(u64),
    Quarantine(Quarantined),
    /// Not (yet) a picture: give the claim back.
    Wait,
}

impl Engine {
    /// The cluster-mode batch (see the module docs).
    pub(super) fn process_cluster(&mut self, batch: Vec<Inbound>, now_ms: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let Some(cl) = self.cluster.as_ref() else {
            return;
        };
        if cl.is_down() || self.degraded.is_some() {
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
        let max = cl.max_image_bytes;
        let mut staged = Vec::with_capacity(batch.len());
        let mut chunks = Vec::with_capacity(batch.len());
        for inbound in &batch {
            self.metrics
                .last_delivery_ms
                .store(inbound.received_ms, Relaxed);
            let st = match classify(&inbound.delivery) {
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
                    Staged::Settled
                }
                Classified::Img(msg) => match to_chunk(&msg, inbound.received_ms, max) {
                    Ok(c) => {
                        chunks.push(c);
                        Staged::Chunk(chunks.len() - 1)
                    }
                    Err(q) => {
                        events::ChunkReceived {
                            kind: Kind::BadChunk,
                        }
                        .emit(&self.metrics);
                        if self.quarantine_lone(&q) {
                            Staged::Settled
                        } else {
                            Staged::Failed
                        }
                    }
                },
            };
            staged.push(st);
        }
        let mut failed = vec![false; chunks.len()];
        if !chunks.is_empty() {
            if let Err(e) = self.report_losses(now_ms) {
                self.cluster_failed(&e, batch.len(), now_ms);
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
            let result = match self.cluster.as_mut() {
                Some(cl) => cl.store.store(&chunks, now_ms),
                None => return,
            };
            let out = match result {
                Ok(out) => out,
                Err(e) => {
                    self.cluster_failed(&e, batch.len(), now_ms);
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
            };
            let id = self.instance_id();
            cevents::BatchStored {
                instance_id: &id,
                stored: out.statuses.iter().filter(|s| **s == Stored::New).count(),
                chunks: chunks.len(),
                latency: out.latency,
            }
            .emit(&self.metrics);
            failpoint("cluster_after_store");
            for (i, (c, status)) in chunks.iter().zip(&out.statuses).enumerate() {
                let (device, message_id) = chunk_device(c);
                match status {
                    Stored::New => events::ChunkReceived { kind: kind_of(c) }.emit(&self.metrics),
                    Stored::DuplicateMessage => {
                        events::DuplicateMessageDropped { device, message_id }.emit(&self.metrics)
                    }
                    Stored::DuplicateChunk | Stored::Finished => {
                        events::DuplicateChunkDropped { device, message_id }.emit(&self.metrics)
                    }
                    Stored::Conflict | Stored::Late => {
                        let (reason, detail) = match status {
                            Stored::Conflict => (
                                "header_mismatch",
                                "its header disagrees with the picture's first chunk".to_owned(),
                            ),
                            _ => (
                                "late_chunk",
                                "timed inside a picture already written".to_owned(),
                            ),
                        };
                        let (format, pid, bytes, time) = match c {
                            Chunk::V2 {
                                header,
                                bytes,
                                time_ms,
                                ..
                            } => (Format::V2, Some(header.pid), bytes.clone(), *time_ms),
                            Chunk::V1Data { bytes, time_ms, .. } => {
                                (Format::V1, None, bytes.clone(), *time_ms)
                            }
                            Chunk::V1End { time_ms, .. } => {
                                (Format::V1, None, Vec::new(), *time_ms)
                            }
                        };
                        let q = Quarantined {
                            device: device.clone(),
                            format: Some(format),
                            pid,
                            reason,
                            detail,
                            bytes,
                            name_time_ms: time,
                            missing: Vec::new(),
                            tags: Vec::new(),
                        };
                        failed[i] = !self.quarantine_lone(&q);
                    }
                }
            }
            // When this batch received each camera's latest chunk.
            let mut received: std::collections::HashMap<String, u64> =
                std::collections::HashMap::new();
            for (inbound, st) in batch.iter().zip(&staged) {
                if let Staged::Chunk(i) = st {
                    let at = received
                        .entry(device_key(chunk_device(&chunks[*i]).0))
                        .or_default();
                    *at = (*at).max(inbound.received_ms);
                }
            }
            for key in out.ready {
                let at = received.get(key.device()).copied();
                if let Err(e) = self.complete_after(&key, now_ms, false, at) {
                    // The batch is stored (accepted below); the sweep finishes the picture.
                    self.cluster_failed(&e, 0, now_ms);
                    break;
                }
            }
        }
        failpoint("before_settle");
        for (inbound, st) in batch.into_iter().zip(staged) {
            let ok = match st {
                Staged::Settled => true,
                Staged::Chunk(i) => !failed[i],
                Staged::Failed => false,
            };
            let outcome = if ok {
                Outcome::Accept
            } else {
                Outcome::Release
            };
            self.settle(inbound.settler, inbound.received_ms, outcome, now_ms);
        }
        self.metrics
            .paused
            .store(self.is_paused(), std::sync::atomic::Ordering::Relaxed);
    }

    /// The cluster-mode tick: probe a store that was down; sweep stale claims and expired
    /// pictures.
    pub(super) fn tick_cluster(&mut self, now_ms: u64) {
        let Some(cl) = self.cluster.as_mut() else {
            return;
        };
        if let Some(until) = cl.down_until {
            if now_ms < until {
                return;
            }
            match cl.store.ping() {
                Ok(()) => {
                    cl.down_until = None;
                    cl.backoff.reset();
                    cevents::StoreRecovered {
                        instance_id: &cl.instance_id,
                    }
                    .emit(&self.metrics);
                }
                Err(e) => {
                    self.cluster_failed(&e, 0, now_ms);
                    return;
                }
            }
        }
        let Some(cl) = self.cluster.as_mut() else {
            return;
        };
        let held_due = cl.held.iter().any(|(at, _)| *at <= now_ms);
        if now_ms < cl.next_sweep_ms && !held_due {
            return;
        }
        cl.next_sweep_ms = now_ms + SWEEP_EVERY_MS;
        if let Err(e) = self.report_losses(now_ms) {
            self.cluster_failed(&e, 0, now_ms);
            return;
        }
        let Some(cl) = self.cluster.as_mut() else {
            return;
        };
        // Alive for a lease; another instance whose heartbeat ran out died: a loss.
        let ttl = cl.store.lease();
        match cl.store.heartbeat(now_ms, ttl) {
            Ok(0) => {}
            Ok(n) => tracing::warn!(instance_id = %cl.instance_id, instances = n,
                "another instance stopped sending heartbeats; its deliveries in flight come back to the group"),
            Err(e) => {
                self.cluster_failed(&e, 0, now_ms);
                return;
            }
        }
        let Some(cl) = self.cluster.as_mut() else {
            return;
        };
        if now_ms >= cl.next_clean_ms {
            cl.next_clean_ms = now_ms + CLEAN_EVERY_MS;
            // Another instance's write in progress is younger than a lease.
            match self
                .sink
                .remove_stale_temp_files_shared(cl.store.lease() * 2)
            {
                Ok(0) => {}
                Ok(n) => tracing::info!(files = n, "removed temporary files left by a crash"),
                Err(e) => tracing::warn!(error = %e, "cannot clean temporary files"),
            }
        }
        if let Err(e) = self.sweep(now_ms) {
            self.cluster_failed(&e, 0, now_ms);
        }
    }

    fn sweep(&mut self, now_ms: u64) -> Result<(), ClusterError> {
        let Some(cl) = self.cluster.as_mut() else {
            return Ok(());
        };
        let due: Vec<PictureKey> = {
            let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut cl.held)
                .into_iter()
                .partition(|(at, _)| *at <= now_ms);
            cl.held = later;
            due.into_iter().map(|(_, k)| k).collect()
        };
        for key in due {
            self.complete(&key, now_ms, false)?;
        }
        let Some(cl) = self.cluster.as_mut() else {
            return Ok(());
        };
        let timeout = cl.timeout;
        let stale = cl.store.stale_ready(now_ms, SWEEP_LIMIT)?;
        let expired = cl.store.expired(now_ms, timeout, SWEEP_LIMIT)?;
        for key in stale {
            self.complete(&key, now_ms, false)?;
        }
        for key in expired {
            self.complete(&key, now_ms, true)?;
        }
        Ok(())
    }

    fn instance_id(&self) -> String {
        self.cluster
            .as_ref()
            .map_or_else(String::new, |c| c.instance_id.clone())
    }

    /// Moving from single-instance mode: stores what a spool left by a previous run holds (the
    /// accepted chunks of pictures not yet written) in the shared store, then sets the spool
    /// folder aside as `spool.imported-<ms>`. Returns the chunks imported. Idempotent: a chunk
    /// imported twice (a crash before the folder was set aside) is a duplicate by its
    /// `messageId`; a picture that was written already is found in the output (create-only).
    pub fn import_spool(
        &mut self,
        opts: crate::spool::SpoolOptions,
        now_ms: u64,
    ) -> Result<usize, String> {
        let dir = opts.dir.clone();
        let (spool, recovery) = crate::spool::Spool::open(opts).map_err(|e| e.to_string())?;
        drop(spool);
        let max = self
            .cluster
            .as_ref()
            .map_or(usize::MAX, |c| c.max_image_bytes);
        let mut chunks = Vec::new();
        for (_, record) in recovery.records {
            if let crate::spool::Record::Img { msg, received_ms } = record {
                if let Ok(c) = to_chunk(&msg, received_ms, max) {
                    chunks.push(c);
                }
            }
        }
        let Some(cl) = self.cluster.as_mut() else {
            return Ok(0);
        };
        let mut ready = Vec::new();
        for batch in chunks.chunks(256) {
            let out = cl.store.store(batch, now_ms).map_err(|e| e.to_string())?;
            ready.extend(out.ready);
        }
        for key in ready {
            self.complete(&key, now_ms, false)
                .map_err(|e| e.to_string())?;
        }
        let aside = dir.with_file_name(format!("spool.imported-{now_ms}"));
        std::fs::rename(&dir, &aside).map_err(|e| {
            format!(
                "cannot rename {} to {}: {e}",
                dir.display(),
                aside.display()
            )
        })?;
        Ok(chunks.len())
    }

    /// Tells the store of this instance's latest loss of deliveries in flight, when it is new:
    /// a connection lost (counted until its link is up again, at most one grace), deliveries
    /// released, this start. One round trip, only when something was lost.
    fn report_losses(&mut self, now_ms: u64) -> Result<(), ClusterError> {
        use std::sync::atomic::Ordering::Acquire;
        let Some(cl) = self.cluster.as_mut() else {
            return Ok(());
        };
        let grace = cl.grace_ms;
        let mut latest = cl.local_loss_ms;
        if let Some(conns) = &self.connections {
            for c in conns.iter() {
                let lost = c.lost_at_ms.load(Acquire);
                if lost > 0 {
                    let until = if c.link_attached.load(Acquire) {
                        lost
                    } else {
                        now_ms.min(lost + grace)
                    };
                    latest = latest.max(until);
                }
            }
        }
        cl.local_loss_ms = latest;
        if latest > cl.reported_loss_ms {
            cl.store.report_loss(latest)?;
            cl.reported_loss_ms = latest;
        }
        Ok(())
    }

    /// The store failed: pause intake and try again with backoff.
    fn cluster_failed(&mut self, e: &ClusterError, released: usize, now_ms: u64) {
        let Some(cl) = self.cluster.as_mut() else {
            return;
        };
        if released > 0 {
            // Released deliveries come back later, after newer ones.
            cl.local_loss_ms = cl.local_loss_ms.max(now_ms);
        }
        let delay = cl.backoff.next_delay(0);
        cl.down_until = Some(now_ms + delay.as_millis() as u64);
        cevents::StoreFailed {
            instance_id: &cl.instance_id,
            error: e,
            released,
        }
        .emit(&self.metrics);
    }

    /// Quarantines a lone chunk here; `false` when that failed (release the delivery).
    fn quarantine_lone(&self, q: &Quarantined) -> bool {
        self.record_quarantine(q).is_ok()
    }

    fn record_quarantine(&self, q: &Quarantined) -> Result<(), ()> {
        match self.sink.quarantine(q) {
            Ok(w) => {
                events::PictureQuarantined {
                    quarantined: q,
                    path: &w.path,
                }
                .emit(&self.metrics);
                Ok(())
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
        }
    }

    /// Claims, reads, checks and writes (or, `expiring`, quarantines) one picture, then
    /// finishes it in the store. A picture this instance does not win, or cannot write now, is
    /// left to its claimant or to a later sweep. A v1 segment that is not a picture yet is given
    /// back, and checked again at once if a chunk came meanwhile. Errors are the store's only.
    fn complete(
        &mut self,
        key: &PictureKey,
        now_ms: u64,
        expiring: bool,
    ) -> Result<(), ClusterError> {
        self.complete_after(key, now_ms, expiring, None)
    }

    /// [`Engine::complete`]; `received_ms`: when this batch received the picture's latest
    /// chunk (for `receiver_image_latency_seconds`).
    fn complete_after(
        &mut self,
        key: &PictureKey,
        now_ms: u64,
        expiring: bool,
        received_ms: Option<u64>,
    ) -> Result<(), ClusterError> {
        for _ in 0..4 {
            if !self.complete_once(key, now_ms, expiring, received_ms)? {
                break;
            }
        }
        Ok(())
    }

    /// One attempt of [`Engine::complete`]; `true`: check again.
    fn complete_once(
        &mut self,
        key: &PictureKey,
        now_ms: u64,
        expiring: bool,
        received_ms: Option<u64>,
    ) -> Result<bool, ClusterError> {
        let Some(cl) = self.cluster.as_mut() else {
            return Ok(false);
        };
        let (claim, version) = if expiring {
            cl.store.claim_expired(key, now_ms, cl.timeout)?
        } else {
            cl.store.claim(key, now_ms)?
        };
        if !claim.won() {
            return Ok(false);
        }
        cevents::PictureClaimed {
            instance_id: &cl.instance_id,
            key,
            takeover: claim == crate::cluster::Claim::TakeOver,
            expiring,
        }
        .emit(&self.metrics);
        failpoint("cluster_after_claim");
        let fetched = match key {
            // Only what is old enough: a picture the camera is sending now stays.
            PictureKey::V1Device { .. } => {
                let cutoff = now_ms.saturating_sub(cl.timeout.as_millis() as u64);
                cl.store.fetch_arrived_by(key, cutoff)?
            }
            _ => cl.store.fetch(key)?,
        };
        let device = device_of(key.device());
        let (Some(fetched), Some(device)) = (fetched, device) else {
            // Nothing there (an END whose segment is empty, a device emptied meanwhile).
            if expiring {
                cl.store.finish(key, None)?;
                return Ok(false);
            }
            return cl.store.unclaim(key, version);
        };
        let grace = cl.grace_ms;
        let local_loss = cl.local_loss_ms;
        let verdict = judge(key, &fetched, device, now_ms, expiring, (grace, local_loss));
        let done = match &verdict {
            Verdict::Hold(until) => {
                if let Some(cl) = self.cluster.as_mut() {
                    cl.store.release_claim(key)?;
                    if !cl.held.iter().any(|(_, k)| k == key) {
                        cl.held.push((*until, key.clone()));
                    }
                }
                return Ok(false);
            }
            Verdict::Wait => {
                return match self.cluster.as_mut() {
                    Some(cl) => cl.store.unclaim(key, version),
                    None => Ok(false),
                };
            }
            Verdict::Write(img) => {
                let r = self.sink.write_image(img);
                let ok = self.apply_write(img, r, now_ms);
                if let Ok(true) = ok {
                    if let Some(ms) = received_ms {
                        let us = crate::metrics::wall_us().saturating_sub(ms.saturating_mul(1000));
                        events::ImageDurable { latency_us: us }.emit(&self.metrics);
                    }
                    failpoint("cluster_after_write");
                }
                ok.is_ok()
            }
            Verdict::Quarantine(q) => self.record_quarantine(q).is_ok(),
        };
        // A failed write keeps the claim: the lease runs out and a sweep (of this instance or
        // another) tries again.
        if done {
            if let Some(cl) = self.cluster.as_mut() {
                cl.store.finish(key, Some(&fetched))?;
            }
        }
        Ok(false)
    }
}

/// What a claimed picture's chunks make.
fn judge(
    key: &PictureKey,
    f: &Fetched,
    device: DeviceId,
    now_ms: u64,
    expiring: bool,
    (grace_ms, local_loss_ms): (u64, u64),
) -> Verdict {
    let name_time_ms = f.name_time_ms().unwrap_or(now_ms as i64);
    let quarantine = |format, pid, reason: &'static str, detail: String, missing: Vec<u32>| {
        Verdict::Quarantine(Quarantined {
            device: device.clone(),
            format: Some(format),
            pid,
            reason,
            detail,
            bytes: f.concat(),
            name_time_ms,
            missing,
            tags: Vec::new(),
        })
    };
    match (key, f) {
        (
            PictureKey::V2 { pid, .. },
            Fetched::V2 {
                count,
                size,
                crc,
                pieces,
                ..
            },
        ) => match f.v2_bytes() {
            Some(bytes) => match v2_verdict(&bytes, *size, *crc) {
                Ok(()) => Verdict::Write(Finished {
                    device,
                    format: Format::V2,
                    pid: Some(*pid),
                    chunks: pieces.len(),
                    bytes,
                    name_time_ms,
                    tags: Vec::new(),
                    opened_ms: now_ms,
                    structure_only: None,
                }),
                Err((reason, detail)) => {
                    quarantine(Format::V2, Some(*pid), reason, detail, Vec::new())
                }
            },
            None if expiring => {
                let missing: Vec<u32> = (0..*count).filter(|s| !pieces.contains_key(s)).collect();
                quarantine(
                    Format::V2,
                    Some(*pid),
                    "expired",
                    format!("{} of {count} chunk(s) received", pieces.len()),
                    missing,
                )
            }
            None => Verdict::Wait,
        },
        (
            PictureKey::V1 { .. },
            Fetched::V1 {
                first_arrival_ms,
                loss_ms,
                ..
            },
        ) => {
            let bytes = f.concat();
            // Redelivery grace (docs/protocol.md section 2): chunks in flight when a delivery was
            // lost (on any instance) come back later and may belong here.
            let loss = (*loss_ms).max(local_loss_ms);
            let straddles = *first_arrival_ms > 0 && *first_arrival_ms <= loss;
            if straddles && now_ms < loss.saturating_add(grace_ms) && !expiring {
                return match v1_verdict(&bytes) {
                    Ok(_) => Verdict::Hold(loss.saturating_add(grace_ms)),
                    Err(_) => Verdict::Wait,
                };
            }
            match v1_verdict(&bytes) {
                Ok(structure_only) => Verdict::Write(Finished {
                    device,
                    format: Format::V1,
                    pid: None,
                    chunks: f.chunks(),
                    bytes,
                    name_time_ms,
                    tags: Vec::new(),
                    opened_ms: now_ms,
                    structure_only,
                }),
                Err(_) => Verdict::Wait,
            }
        }
        (PictureKey::V1Device { .. }, Fetched::V1 { .. }) => quarantine(
            Format::V1,
            None,
            "expired",
            format!(
                "{} chunk(s) of {} open longer than [assembly] timeout",
                f.chunks(),
                device_key(&device)
            ),
            Vec::new(),
        ),
        _ => Verdict::Wait,
    }
}

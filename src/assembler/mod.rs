//! Reassembles image chunks into pictures (pure: no I/O, no clock; time is a parameter).
//!
//! v1 (bare hex + `END`) and v2 (framed) live side by side and are told apart per message by
//! [`wire::parse_value`]. `docs/protocol.md` sections 2 and 3.2 are normative; this module
//! implements them as follows.
//!
//! # Contract with the engine
//!
//! * [`Assembler::push`] takes one message, an opaque [`Tag`] and the arrival time `now_ms`, appends
//!   zero or more [`Action`]s to `out` and returns a [`Disposition`]. Every tag ever pushed comes
//!   back **exactly once**: either in the `tags` of one `Action` (now or later: `Stored`,
//!   `Completed`, `Quarantined`, `Duplicate { attached: true }`) or it is done at once
//!   (`Duplicate { attached: false }`).
//! * [`Assembler::expire`] quarantines whatever has been idle (no new chunk) for longer than
//!   [`Limits::timeout_ms`]; [`Assembler::next_deadline`] says when to call it next.
//! * Message-id deduplication is **not** done here: the engine drops repeated `messageId`s with
//!   [`crate::dedup::Dedup`] first. The assembler then catches redeliveries that fell out of that
//!   window by content (below).
//!
//! # v1 (`docs/protocol.md` 2)
//!
//! * One open v1 picture per device `(productKey, deviceName)`. A chunk's time is
//!   `items.img.time`, else `gmtCreate`, else `now_ms`; chunks are kept sorted by `(time, arrival)`,
//!   so a redelivered chunk lands in its place. Bytes are decoded into one buffer as they arrive;
//!   the picture is concatenated only when it is validated (at `END`).
//! * `END` at time `t` closes the chunks with time `<= t`; chunks with a later time (the next
//!   picture's, delivered before this `END`) stay open as the next picture. The closed bytes must
//!   start `FF D8`, end `FF D9` and, with [`Limits::decode_check`], decode as a JPEG. If not, the
//!   picture stays open, closed-but-invalid: a data chunk with time `<= t` is a late chunk of it
//!   (re-validated on arrival); a data chunk with a later time starts a new picture and sends the
//!   old one to quarantine (`invalid_jpeg`), as does the timeout.
//! * `END` with nothing open is `empty_end`. An `END` at or before the closed picture's `END` time
//!   is a duplicate `END`.
//! * `bad_hex` / `odd_hex_length` quarantine the device's open picture together with the chunk
//!   (or the chunk alone). `too_large`: the data would exceed [`Limits::max_image_bytes`] (or the
//!   picture has more than `max(1024, max_image_bytes / 64)` chunks, which bounds the index).
//! * After any of those three, the rest of that picture is useless, so the device enters a
//!   **discarding** state until its next `END`: further data chunks are absorbed without their
//!   bytes, and the `END` (or the timeout) emits **one** follow-up quarantine with the same reason
//!   carrying their tags. This avoids a flood of tiny pictures and keeps memory flat. (A bad chunk
//!   inside the span of the last settled picture is quarantined alone: it is a late stray, not
//!   the start of the next picture.)
//! * v1 carries no length or checksum: if an `END` overtakes a *middle* chunk, the markers still
//!   check out and the picture is written without it (only [`Limits::decode_check`] may notice);
//!   the chunk then arrives as a `late_chunk`. Nothing better is possible with this format.
//! * A data chunk identical (same time, same bytes) to a stored one is a duplicate.
//! * After a picture is settled at `END`, its time span and a fingerprint (time, CRC-32) of each
//!   chunk are remembered (see *Memory*): a later chunk inside that span is a `Duplicate` if its
//!   fingerprint matches, else it is quarantined alone as `late_chunk` (a chunk the written picture
//!   lacked) instead of poisoning the device's next picture.
//!
//! # v2 (`docs/protocol.md` 3.2)
//!
//! * Keyed by `(productKey, deviceName, pid)`; pieces are stored decoded, by `seq`. A picture
//!   completes when all `count` pieces are present, their total is `size`, the CRC-32 matches and
//!   the bytes carry the JPEG markers (`invalid_jpeg` otherwise).
//! * Same `seq`, same data: `Duplicate` (tag attached). Different data: `chunk_conflict`.
//!   `count`/`size`/`crc` unlike the picture's first chunk: `header_mismatch` (both in the
//!   detail). Pieces whose total already exceeds `size`: `length_mismatch` at once (bounds memory);
//!   all present but short: `length_mismatch`; wrong CRC: `crc_mismatch`.
//! * `bad_header`, `bad_base64`, `bad_boundary` (a piece other than the last whose length is not a
//!   multiple of 3; the last piece may have any length, its correctness is covered by `size` and
//!   the CRC), `unsupported_version`: the chunk is quarantined, together with its picture when
//!   one is open under the pid that can still be read from the header.
//! * `too_large` (`size` over the limit) is decided from the header of the first chunk seen,
//!   before anything is decoded or buffered. The picture's chunks are then absorbed without their
//!   bytes and settled in **one** quarantine as soon as every `seq` was seen (or at the timeout).
//! * Expiry: `expired`, with the missing sequence numbers in `missing` and in the detail.
//! * A settled picture (written, or `too_large`) is remembered with its `size`/`crc`: a later
//!   chunk with the same pid, size and CRC is a `Duplicate { attached: false }`; a different
//!   size/CRC is a new picture (the camera's counter was reset). Pictures quarantined for other
//!   reasons are *not* remembered, so a camera that resends the picture can still deliver it.
//!
//! # Bounds
//!
//! * [`Limits::max_open`] pictures (v1, v2 and discarding states, all devices): opening one more
//!   first quarantines the least recently touched one (`evicted`; a discarding state is flushed
//!   with its own reason). "Touched" and "idle" count new chunks only: duplicates neither extend
//!   a picture's life nor make it recent.
//! * Per picture at most `max_image_bytes` of data, and at most 1024 attached duplicate tags
//!   (further duplicates come back as `Duplicate { attached: false }`). A discarding state flushes
//!   a partial quarantine every 4096 tags.
//! * *Memory* of settled pictures: kept for at least `timeout_ms`, but at most
//!   `max(4 * max_open, 4096)` pictures and 2^20 v1 chunk fingerprints, oldest first.
//!
//! # Quarantine records
//!
//! A picture's record carries its decoded bytes in order (v2: present pieces in `seq` order, with
//! `missing` listed). A lone chunk's record carries the chunk's raw `<value>` text (up to 16 KiB),
//! since it may not decode at all.

mod v1;
mod v2;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::hash::Hash;

use crate::message::{DeviceId, ImgMessage};
use crate::wire::{self, Format, ImgValue, WireError};

use v1::{V1Done, V1State};
use v2::{V2Done, V2State};

/// An opaque handle the engine attaches to every pushed message (its spool position), handed back
/// in the [`Action`] that finishes with it so the engine can release the storage.
pub type Tag = u64;

/// Bounds on what the assembler holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest image accepted, bytes.
    pub max_image_bytes: usize,
    /// Most pictures open at once (all devices); the oldest is evicted past this.
    pub max_open: usize,
    /// A picture with no new chunk for this long is quarantined (`expired`), ms.
    pub timeout_ms: u64,
    /// Fully decode a finished v1 picture as a JPEG, not only check its markers.
    pub decode_check: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_image_bytes: 4 << 20,
            max_open: 10_000,
            timeout_ms: 10 * 60 * 1000,
            decode_check: false,
        }
    }
}

/// A picture that validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// The camera.
    pub device: DeviceId,
    /// Wire format.
    pub format: Format,
    /// v2 picture id.
    pub pid: Option<u32>,
    /// The JPEG.
    pub bytes: Vec<u8>,
    /// Time that names the file: the earliest `items.img.time`, else the first chunk's receipt time.
    pub name_time_ms: i64,
    /// Number of data chunks (v1: excluding `END`).
    pub chunks: usize,
    /// Tags of every message that went into it (data chunks, `END`, duplicates of its chunks that
    /// arrived while it was open).
    pub tags: Vec<Tag>,
    /// When its first chunk arrived (`now_ms` of that push).
    pub opened_ms: u64,
}

/// A picture, or a lone chunk, that goes to quarantine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    /// The camera.
    pub device: DeviceId,
    /// Wire format, when known.
    pub format: Option<Format>,
    /// v2 picture id, when known.
    pub pid: Option<u32>,
    /// Stable snake_case reason (see docs/protocol.md).
    pub reason: &'static str,
    /// Human detail: what disagreed, which sequence numbers are missing, ...
    pub detail: String,
    /// What was received, concatenated in order (may be empty).
    pub bytes: Vec<u8>,
    /// Earliest `items.img.time`, else first receipt time.
    pub name_time_ms: i64,
    /// v2: sequence numbers never received.
    pub missing: Vec<u32>,
    /// Tags of every message involved.
    pub tags: Vec<Tag>,
}

/// What the engine must do after a push or an expiry sweep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write this image.
    Write(Finished),
    /// Quarantine this.
    Quarantine(Quarantined),
}

impl Action {
    /// The tags this action settles.
    pub fn tags(&self) -> &[Tag] {
        match self {
            Action::Write(f) => &f.tags,
            Action::Quarantine(q) => &q.tags,
        }
    }
}

/// What became of one pushed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Stored in an open picture (its tag comes back later in an [`Action`]).
    Stored,
    /// Its picture completed with it (its tag is in the `Write` action).
    Completed,
    /// A duplicate of a stored or finished chunk; nothing stored. Its tag is done now unless it
    /// was attached to an open picture (then `attached` is true and it comes back in an action).
    Duplicate {
        /// Whether the tag was kept with an open picture.
        attached: bool,
    },
    /// The message itself was bad and went to quarantine (its tag is in a `Quarantine` action).
    Quarantined,
}

/// Quarantine reasons this module emits beyond the wire errors ([`WireError::reason`]).
pub mod reason {
    /// v1: the closed picture is not a JPEG (markers, or the decode check).
    pub const INVALID_JPEG: &str = "invalid_jpeg";
    /// v1: `END` with no data before it.
    pub const EMPTY_END: &str = "empty_end";
    /// v1: a data chunk inside the time span of a picture already settled, not one of its chunks.
    pub const LATE_CHUNK: &str = "late_chunk";
    /// Over `max_image_bytes`.
    pub const TOO_LARGE: &str = "too_large";
    /// v2: a non-last piece that is not a multiple of 3 bytes.
    pub const BAD_BOUNDARY: &str = "bad_boundary";
    /// v2: the same `seq` twice with different data.
    pub const CHUNK_CONFLICT: &str = "chunk_conflict";
    /// v2: `count`/`size`/`crc` unlike the picture's first chunk.
    pub const HEADER_MISMATCH: &str = "header_mismatch";
    /// v2: the pieces do not add up to `size`.
    pub const LENGTH_MISMATCH: &str = "length_mismatch";
    /// v2: the CRC-32 of the whole differs from the header's.
    pub const CRC_MISMATCH: &str = "crc_mismatch";
    /// No new chunk for `timeout_ms`.
    pub const EXPIRED: &str = "expired";
    /// Pushed out by `max_open`.
    pub const EVICTED: &str = "evicted";
}

/// Most duplicate tags kept with one open picture.
const MAX_ATTACHED_DUPLICATES: usize = 1024;
/// A discarding state emits a partial quarantine when it holds this many tags.
const MAX_DISCARD_TAGS: usize = 4096;
/// Lower bound on the number of settled pictures remembered.
const RECENT_MIN: usize = 4096;
/// Most v1 chunk fingerprints remembered over all settled pictures.
const MAX_RECENT_PRINTS: usize = 1 << 20;
/// Longest raw value kept in a lone chunk's quarantine record.
const LONE_BYTES_MAX: usize = 16 * 1024;
/// Characters of a bad value quoted in a detail.
const EXCERPT_CHARS: usize = 48;
/// Allocation cap for the optional full JPEG decode.
const DECODE_MAX_ALLOC: u64 = 256 << 20;

/// What the LRU index points at.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    V1(DeviceId),
    V2(DeviceId, u32),
}

/// Bookkeeping of one open entry.
#[derive(Debug, Clone, Copy)]
struct Meta {
    /// `now_ms` of the first chunk.
    opened_ms: u64,
    /// Unique id (for the `opened` index).
    id: u64,
    /// `now_ms` of the last new chunk (never decreases).
    last_ms: u64,
    /// Touch serial: LRU tie-break.
    touch: u64,
    /// Whether `(opened_ms, id)` is in `Index::opened`.
    registered: bool,
}

/// An open entry: bookkeeping plus the format-specific state.
#[derive(Debug)]
struct Slot<S> {
    meta: Meta,
    state: S,
}

/// Bytes an open state holds.
trait Held {
    fn held(&self) -> usize;
}

/// Order of open entries by idleness, plus counters.
#[derive(Debug, Default)]
struct Index {
    /// `(last_ms, touch)` -> entry: the first is the least recently touched, the next to expire.
    lru: BTreeMap<(u64, u64), Key>,
    /// `(opened_ms, id)` of every open entry.
    opened: BTreeSet<(u64, u64)>,
    /// Serial for `touch` and `id`.
    serial: u64,
    /// Sum of `held()` over open entries.
    buffered: usize,
}

impl Index {
    fn next_serial(&mut self) -> u64 {
        self.serial += 1;
        self.serial
    }

    /// A new, not yet attached entry opened at `now`.
    fn slot<S>(&mut self, state: S, now: u64) -> Slot<S> {
        let id = self.next_serial();
        Slot {
            meta: Meta {
                opened_ms: now,
                id,
                last_ms: now,
                touch: id,
                registered: false,
            },
            state,
        }
    }

    /// Takes an entry out of `map` and the idleness order (it stays counted as opened).
    fn detach<K: Hash + Eq, S: Held>(
        &mut self,
        map: &mut HashMap<K, Slot<S>>,
        k: &K,
    ) -> Option<Slot<S>> {
        let slot = map.remove(k)?;
        self.lru.remove(&(slot.meta.last_ms, slot.meta.touch));
        self.buffered = self.buffered.saturating_sub(slot.state.held());
        Some(slot)
    }

    /// Puts an entry (back) into `map`; `touched` marks it as just received a new chunk.
    fn attach<K: Hash + Eq, S: Held>(
        &mut self,
        map: &mut HashMap<K, Slot<S>>,
        k: K,
        key: Key,
        mut slot: Slot<S>,
        now: u64,
        touched: bool,
    ) {
        if touched {
            slot.meta.last_ms = slot.meta.last_ms.max(now);
            slot.meta.touch = self.next_serial();
        }
        if !slot.meta.registered {
            slot.meta.registered = true;
            self.opened.insert((slot.meta.opened_ms, slot.meta.id));
        }
        self.lru.insert((slot.meta.last_ms, slot.meta.touch), key);
        self.buffered += slot.state.held();
        map.insert(k, slot);
    }

    /// Forgets a detached entry for good.
    fn close(&mut self, meta: &Meta) {
        if meta.registered {
            self.opened.remove(&(meta.opened_ms, meta.id));
        }
    }
}

/// Pictures settled recently, so late duplicates are recognised (see module docs, *Memory*).
#[derive(Debug, Default)]
struct Recent {
    v1: HashMap<DeviceId, (u64, V1Done)>,
    v2: HashMap<(DeviceId, u32), (u64, V2Done)>,
    /// `(key, generation, settled at)`, oldest first. A generation that no longer matches the
    /// map's entry is stale (the key was settled again later).
    ring: VecDeque<(Key, u64, u64)>,
    generation: u64,
    /// Fingerprints held by `v1` records.
    prints: usize,
}

impl Recent {
    fn insert_v1(&mut self, device: DeviceId, done: V1Done, now: u64) {
        self.generation += 1;
        self.prints += done.prints.len();
        let key = Key::V1(device.clone());
        if let Some((_, old)) = self.v1.insert(device, (self.generation, done)) {
            self.prints = self.prints.saturating_sub(old.prints.len());
        }
        self.ring.push_back((key, self.generation, now));
    }

    fn insert_v2(&mut self, device: DeviceId, pid: u32, done: V2Done, now: u64) {
        self.generation += 1;
        let key = Key::V2(device.clone(), pid);
        self.v2.insert((device, pid), (self.generation, done));
        self.ring.push_back((key, self.generation, now));
    }

    fn v1(&self, device: &DeviceId) -> Option<&V1Done> {
        self.v1.get(device).map(|(_, d)| d)
    }

    fn v2(&self, device: &DeviceId, pid: u32) -> Option<&V2Done> {
        // The tuple key costs two reference-count increments; no allocation.
        self.v2.get(&(device.clone(), pid)).map(|(_, d)| d)
    }

    /// Forgets records older than `timeout` and the oldest beyond the caps.
    fn prune(&mut self, now: u64, timeout: u64, cap: usize) {
        while let Some((_, _, at)) = self.ring.front() {
            let old = at.saturating_add(timeout) < now;
            if !(old || self.ring.len() > cap || self.prints > MAX_RECENT_PRINTS) {
                break;
            }
            let Some((key, generation, _)) = self.ring.pop_front() else {
                break;
            };
            match key {
                Key::V1(d) => {
                    if self.v1.get(&d).is_some_and(|(g, _)| *g == generation) {
                        if let Some((_, old)) = self.v1.remove(&d) {
                            self.prints = self.prints.saturating_sub(old.prints.len());
                        }
                    }
                }
                Key::V2(d, pid) => {
                    let k = (d, pid);
                    if self.v2.get(&k).is_some_and(|(g, _)| *g == generation) {
                        self.v2.remove(&k);
                    }
                }
            }
        }
    }

    fn len(&self) -> usize {
        self.v1.len() + self.v2.len()
    }
}

/// The per-process reassembly state.
#[derive(Debug)]
pub struct Assembler {
    limits: Limits,
    /// Open v1 pictures (or discarding states), by device.
    open1: HashMap<DeviceId, Slot<V1State>>,
    /// Open v2 pictures (or too-large discarding states), by device and pid.
    open2: HashMap<(DeviceId, u32), Slot<V2State>>,
    index: Index,
    recent: Recent,
}

impl Assembler {
    /// A new, empty assembler.
    pub fn new(limits: Limits) -> Self {
        Assembler {
            limits,
            open1: HashMap::new(),
            open2: HashMap::new(),
            index: Index::default(),
            recent: Recent::default(),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Feeds one message that arrived at `now_ms`. Actions are appended to `out`.
    pub fn push(
        &mut self,
        msg: &ImgMessage,
        tag: Tag,
        now_ms: u64,
        out: &mut Vec<Action>,
    ) -> Disposition {
        match wire::parse_value(&msg.value) {
            Ok(ImgValue::V1Hex(hex)) => self.v1_data(msg, hex, tag, now_ms, out),
            Ok(ImgValue::V1End) => self.v1_end(msg, tag, now_ms, out),
            Ok(ImgValue::V2 { header, data }) => self.v2_chunk(msg, header, data, tag, now_ms, out),
            Err(e @ (WireError::BadHex { .. } | WireError::OddHexLength { .. })) => {
                self.v1_bad(msg, &e, tag, now_ms, out)
            }
            Err(e @ (WireError::BadHeader(_) | WireError::BadBase64)) => {
                let framed_v2 = msg.value.starts_with("V2;");
                let detail = format!("{e}: {}", excerpt(&msg.value));
                let pid = if framed_v2 {
                    salvage_pid(&msg.value)
                } else {
                    None
                };
                if framed_v2 {
                    self.v2_bad(msg, pid, e.reason(), detail, tag, now_ms, out)
                } else {
                    out.push(lone(msg, tag, None, None, e.reason(), detail, now_ms));
                    Disposition::Quarantined
                }
            }
            Err(e @ (WireError::UnsupportedVersion(_) | WireError::Empty)) => {
                let detail = format!("{e}: {}", excerpt(&msg.value));
                out.push(lone(msg, tag, None, None, e.reason(), detail, now_ms));
                Disposition::Quarantined
            }
        }
    }

    /// Quarantines every picture idle for longer than the timeout at `now_ms`.
    pub fn expire(&mut self, now_ms: u64, out: &mut Vec<Action>) {
        while let Some((&(last, _), _)) = self.index.lru.first_key_value() {
            if now_ms.saturating_sub(last) <= self.limits.timeout_ms {
                break;
            }
            self.settle_first(now_ms, None, out);
        }
        self.prune_recent(now_ms);
    }

    /// When the next picture would expire, if any are open: the first `now_ms` at which
    /// [`Assembler::expire`] quarantines something (idle strictly longer than the timeout).
    pub fn next_deadline(&self) -> Option<u64> {
        self.index.lru.first_key_value().map(|(&(last, _), _)| {
            last.saturating_add(self.limits.timeout_ms)
                .saturating_add(1)
        })
    }

    /// Open pictures (including discarding states that still hold tags).
    pub fn open_count(&self) -> usize {
        self.open1.len() + self.open2.len()
    }

    /// Bytes held by open pictures.
    pub fn buffered_bytes(&self) -> usize {
        self.index.buffered
    }

    /// Arrival time of the oldest open picture's first chunk.
    pub fn oldest_open_ms(&self) -> Option<u64> {
        self.index.opened.first().map(|&(ms, _)| ms)
    }

    /// Settled pictures currently remembered for late-duplicate detection.
    pub fn remembered_count(&self) -> usize {
        self.recent.len()
    }

    /// Quarantines every open picture now (reason `expired`, or the discarding state's own
    /// reason), e.g. at shutdown; afterwards nothing is open.
    pub fn drain(&mut self, now_ms: u64, out: &mut Vec<Action>) {
        while !self.index.lru.is_empty() {
            self.settle_first(now_ms, None, out);
        }
    }

    /// Removes the least recently touched entry and emits its quarantine; `evicted` overrides the
    /// natural reason (`expired`, `invalid_jpeg`, ...).
    fn settle_first(&mut self, now: u64, evicted: Option<&'static str>, out: &mut Vec<Action>) {
        let Some((_, key)) = self.index.lru.pop_first() else {
            return;
        };
        // `detach` removes the LRU entry again; harmless since it is gone already.
        match key {
            Key::V1(device) => {
                if let Some(slot) = self.index.detach(&mut self.open1, &device) {
                    self.index.close(&slot.meta);
                    out.push(Action::Quarantine(v1::settle(device, slot, now, evicted)));
                }
            }
            Key::V2(device, pid) => {
                let k = (device, pid);
                if let Some(slot) = self.index.detach(&mut self.open2, &k) {
                    self.index.close(&slot.meta);
                    let (device, pid) = k;
                    if let Some(done) = v2::settled_as(&slot.state) {
                        self.recent.insert_v2(device.clone(), pid, done, now);
                    }
                    out.push(Action::Quarantine(v2::settle(device, pid, slot, evicted)));
                }
            }
        }
    }

    /// Makes room for one more open entry.
    fn make_room(&mut self, now: u64, out: &mut Vec<Action>) {
        let max = self.limits.max_open.max(1);
        while self.open_count() >= max && !self.index.lru.is_empty() {
            self.settle_first(now, Some(reason::EVICTED), out);
        }
    }

    fn recent_cap(&self) -> usize {
        self.limits.max_open.saturating_mul(4).max(RECENT_MIN)
    }

    fn prune_recent(&mut self, now: u64) {
        let cap = self.recent_cap();
        self.recent.prune(now, self.limits.timeout_ms, cap);
    }
}

/// The time a chunk is ordered by: `items.img.time`, else `gmtCreate`, else arrival.
fn chunk_time(msg: &ImgMessage, now: u64) -> i64 {
    msg.item_time
        .or(msg.gmt_create)
        .unwrap_or_else(|| ms_i64(now))
}

fn ms_i64(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// The start of a value, for details (never the whole 10 KB).
fn excerpt(value: &str) -> String {
    match value.char_indices().nth(EXCERPT_CHARS) {
        Some((i, _)) => format!("{:?}...", &value[..i]),
        None => format!("{value:?}"),
    }
}

/// A quarantine record for one chunk on its own: its raw value is what was received.
fn lone(
    msg: &ImgMessage,
    tag: Tag,
    format: Option<Format>,
    pid: Option<u32>,
    reason: &'static str,
    detail: String,
    now: u64,
) -> Action {
    let raw = msg.value.as_bytes();
    Action::Quarantine(Quarantined {
        device: msg.device.clone(),
        format,
        pid,
        reason,
        detail,
        bytes: raw[..raw.len().min(LONE_BYTES_MAX)].to_vec(),
        name_time_ms: msg.item_time.unwrap_or_else(|| ms_i64(now)),
        missing: Vec::new(),
        tags: vec![tag],
    })
}

/// The pid of a framed v2 value whose header is otherwise broken, if it can still be read.
fn salvage_pid(value: &str) -> Option<u32> {
    let rest = value.strip_prefix("V2;")?;
    let field = rest.split(';').next()?;
    let canonical = !field.is_empty()
        && field.len() <= 10
        && field.bytes().all(|b| b.is_ascii_digit())
        && !(field.len() > 1 && field.starts_with('0'));
    if canonical {
        field.parse().ok()
    } else {
        None
    }
}

/// Whether `bytes` fully decodes as a JPEG (bounded allocation; a decoder panic counts as no).
fn decodes_as_jpeg(bytes: &[u8]) -> bool {
    std::panic::catch_unwind(|| {
        let mut reader =
            image::ImageReader::with_format(std::io::Cursor::new(bytes), image::ImageFormat::Jpeg);
        let mut limits = image::Limits::default();
        limits.max_alloc = Some(DECODE_MAX_ALLOC);
        reader.limits(limits);
        reader.decode().is_ok()
    })
    .unwrap_or(false)
}

/// `2, 5-7, 9` (sequence numbers, ascending).
fn ranges(seqs: &[u32]) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let mut i = 0;
    while let Some(&start) = seqs.get(i) {
        let mut end = start;
        while seqs
            .get(i + 1)
            .is_some_and(|&n| Some(n) == end.checked_add(1))
        {
            end += 1;
            i += 1;
        }
        if !s.is_empty() {
            s.push_str(", ");
        }
        let _ = if end == start {
            write!(s, "{start}")
        } else {
            write!(s, "{start}-{end}")
        };
        i += 1;
    }
    s
}

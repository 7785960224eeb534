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
//! * A chunk's time is `items.img.time`, else `gmtCreate`, else `now_ms`. Per device
//!   `(productKey, deviceName)` the `END`s cut the time line into **segments**: a picture is the
//!   data chunks timed in `(previous END, its END]`; chunks after the last known `END` are the
//!   next, still open picture. An `END` timed before one already seen splits that segment (it is
//!   a duplicate only at an equal time); an `END` with no data before it in its segment waits for
//!   its chunks (arrival order is not time order). Chunks within a segment are kept sorted by
//!   `(time, arrival)`; bytes are decoded into one buffer as they arrive and concatenated only
//!   when the picture is written.
//! * A segment whose `END` is known is checked whenever its data changes: start `FF D8`, end
//!   `FF D9`, a well-formed JPEG stream ([`crate::jpeg`]: segment lengths, entropy-coded data,
//!   one EOI at the end), then the exact check of the scan ([`crate::jpeg::entropy_check`]:
//!   exactly the frame's MCUs, every code valid; a coding it does not support falls back to the
//!   structure and is flagged in [`Finished::structure_only`]) and, with
//!   [`Limits::decode_check`], a full decode. The first passing check writes it. One that fails
//!   stays open for late chunks until the timeout, then goes to quarantine (`invalid_jpeg`); a
//!   check that failed inside the bytes is not repeated for a chunk added after that point (the
//!   verdict cannot change), which keeps late chunks cheap.
//! * **Redelivery grace.** [`Assembler::connection_lost`] reports that deliveries may have been
//!   lost in flight (they come back later, after newer ones). A segment that passes but was
//!   opened at or before the latest loss is *held* (its completing chunk is `Stored`) until
//!   [`Limits::redelivery_grace_ms`] after the loss, so that late chunks and `END`s can still
//!   slot in and re-cut it; [`Assembler::expire`] then checks it again and writes it.
//! * **Retraction.** A chunk that is not one of a *written* picture's but is timed inside its
//!   span proves the file wrong: [`Action::Retract`] (once per picture) besides the chunk's own
//!   `late_chunk` record.
//! * **Alink ids.** When every data chunk and the `END` carry a numeric `requestId` and the data
//!   chunks' ids are distinct (our firmware: `pid * 1000 + seq`; not the original firmware,
//!   which repeats one id), the ids must also be consecutive in time order and end just before
//!   the `END`'s: otherwise chunks are missing, or belong to another picture, and the segment is
//!   *held*. That catches what the structure cannot (a lost run of entropy-coded data, or one
//!   picture's head joined to the next one's tail, both cut inside scan data). A held segment
//!   that is a well-formed JPEG is still written when it has to settle (timeout, bounds, drain),
//!   so a camera with other ids is only delayed.
//! * An `END` may settle with a picture that validated below it before the picture's own `END`
//!   came (then it really was the next picture's `END`). It stays a **boundary**: a chunk timed
//!   above the settled picture and below the `END` starts a segment under it (with that `END`
//!   already settled), and the picture's own `END`, arriving later with a settled picture before
//!   it and no open data, is a `Duplicate`. A chunk timed *below* a settled picture that lies
//!   inside its segment belongs to a picture that ends before it: it opens a segment bounded by
//!   that picture, with no `END` yet.
//! * A settled picture's data span (first to last chunk) and a fingerprint (time, CRC-32) of each
//!   chunk are remembered (see *Memory*), for written and for quarantined pictures with an `END`:
//!   a later chunk inside a span is a `Duplicate` if its fingerprint matches, else it is
//!   quarantined alone as `late_chunk` (a chunk the picture lacked) instead of poisoning another
//!   picture. An `END` strictly inside a span is quarantined alone (`empty_end`).
//! * A data chunk identical (same time, same bytes) to a stored one is a duplicate; so is a
//!   repeated `END` (its tag is kept with the open segment, up to a bound).
//! * `bad_hex` / `odd_hex_length` quarantine the chunk's open picture together with the chunk
//!   (or the chunk alone). `too_large`: the data would exceed [`Limits::max_image_bytes`] (or the
//!   picture has more than `max(1024, max_image_bytes / 64)` chunks, which bounds the index). A
//!   picture whose `END` is known then settles; one without enters a **discarding** state until
//!   its `END`: further data chunks are absorbed without their bytes, and the `END` (or the
//!   timeout) emits **one** follow-up quarantine with the same reason carrying their tags. This
//!   avoids a flood of tiny pictures and keeps memory flat. (A bad chunk inside a settled span, or
//!   under a settled `END`, is quarantined alone.)
//! * At most 32 (`v1::MAX_V1_SEGMENTS`) open segments per device: one more quarantines the device's
//!   oldest (`evicted`; a settled `END` stays a boundary). A segment with no `END` that times out
//!   is `expired`; an `END` that never got data is `empty_end`.
//! * What remains without usable ids (the original firmware): a join of two pictures whose bit
//!   streams fall back into step on exactly the right MCU passes the exact check; it can only
//!   form from chunks lost in flight, which the redelivery grace covers (docs/protocol.md 2).
//!
//! # v2 (`docs/protocol.md` 3.2)
//!
//! * Keyed by `(productKey, deviceName, pid)`; pieces are stored decoded, by `seq`. A picture
//!   completes when all `count` pieces are present, their total is `size`, the CRC-32 matches and
//!   the bytes are a well-formed JPEG stream (markers and [`crate::jpeg`] structure, as v1 without
//!   `decode_check`; `invalid_jpeg` otherwise).
//! * Same `seq`, same data: `Duplicate` (tag attached). Different data: `chunk_conflict`.
//!   `count`/`size`/`crc` unlike the picture's first chunk: `header_mismatch` (both in the
//!   detail). Pieces whose total already exceeds `size`: `length_mismatch` at once (bounds memory);
//!   all present but short: `length_mismatch`; wrong CRC: `crc_mismatch`. No other early
//!   inference (e.g. from the least size of the missing pieces).
//! * `bad_header`, `bad_base64`, `bad_boundary` (a piece other than the last whose length is not a
//!   multiple of 3; the last piece may have any length, its correctness is covered by `size` and
//!   the CRC), `unsupported_version`: the chunk is quarantined, together with its picture when
//!   one is open under the pid that can still be read from the header.
//! * `too_large` (`size` over the limit) is decided from the header of the first chunk seen,
//!   before anything is decoded or buffered. The picture's chunks are then absorbed without their
//!   bytes and settled in **one** quarantine as soon as every `seq` was seen (or at the timeout).
//! * Expiry: `expired`, with the missing sequence numbers in `missing` and in the detail.
//! * A settled picture is remembered with its `size`/`crc`: a later chunk with the same pid, size
//!   and CRC is a `Duplicate { attached: false }` when the picture was written, and
//!   `AfterQuarantine` (no second record) when it was quarantined for what it holds (every reason
//!   but `expired`/`evicted`, including a lone bad-data chunk whose header parsed); a different
//!   size/CRC is a new picture (the camera's counter was reset). Expired and evicted pictures
//!   are *not* remembered: they were incomplete, not wrong, so late chunks or a resend can still
//!   deliver them. A chunk whose header does not parse is never attributed to a settled picture.
//!
//! # Bounds
//!
//! * [`Limits::max_open`] open entries (v1 segments, v2 pictures, discarding states; all
//!   devices): one more quarantines the least recently touched (`evicted`; a discarding state is
//!   flushed with its own reason; a held v1 picture that is a well-formed JPEG is written). "Touched" and "idle" count new chunks only: duplicates neither extend
//!   a picture's life nor make it recent.
//! * Per picture at most `max_image_bytes` of data, and at most 1024 attached duplicate tags
//!   (further duplicates come back as `Duplicate { attached: false }`). A discarding state flushes
//!   a partial quarantine every 4096 tags.
//! * *Memory* of settled pictures (and of settled v1 `END`s, as boundaries): kept for at least
//!   `timeout_ms`, but at most `max(4 * max_open, 4096)` records and 2^20 v1 chunk fingerprints,
//!   oldest first.
//!
//! # Quarantine records
//!
//! A picture's record carries its decoded bytes in order (v2: present pieces in `seq` order, with
//! `missing` listed). A lone chunk's record carries the chunk's raw `<value>` text (up to 16 KiB),
//! since it may not decode at all.

pub mod cold;
mod v1;
mod v2;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::hash::Hash;

use crate::message::{DeviceId, ImgMessage};
use crate::wire::{self, Format, ImgValue, WireError};

use cold::{Cold, ColdStore};
use v1::{Bound, V1};
use v2::V2;

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
    /// Most bytes of open pictures kept in memory when a cold store is given (0: no limit);
    /// beyond it the least recently touched pictures' bytes go to the store ([`cold`]).
    pub memory_budget: usize,
    /// v1: how long after a lost connection (or released deliveries) a picture that had chunks
    /// before the loss is held before it is written, so the deliveries that were in flight can
    /// come back and slot in (see the module docs, *Redelivery grace*), ms. 0: no hold.
    pub redelivery_grace_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_image_bytes: 4 << 20,
            max_open: 10_000,
            timeout_ms: 10 * 60 * 1000,
            decode_check: false,
            memory_budget: 0,
            redelivery_grace_ms: DEFAULT_REDELIVERY_GRACE_MS,
        }
    }
}

/// Default [`Limits::redelivery_grace_ms`]: Aliyun pushes a delivery again when it was not
/// settled within 30 s (its ACK timeout), and retries a blocked push about once a minute
/// (`../shared/reference/aliyun-protocol.md` 1.6): 30 s + 60 s.
pub const DEFAULT_REDELIVERY_GRACE_MS: u64 = 90_000;

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
    /// v1: why the exact entropy check could not judge it (progressive, arithmetic-coded, ...),
    /// so that only the structural check passed it; `None` when the exact check passed it (and
    /// for v2, whose size and CRC-32 are exact).
    pub structure_only: Option<&'static str>,
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

/// A v1 picture already written that turned out to be wrong: a chunk that is not one of its
/// own arrived inside its time span. The exact check makes this all but impossible; if it ever
/// happens, the file is moved from the output to quarantine (reason `retracted`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retraction {
    /// The camera.
    pub device: DeviceId,
    /// The written picture's [`Finished::name_time_ms`].
    pub name_time_ms: i64,
    /// Its length and CRC-32, to find the very file among same-named ones.
    pub size: u64,
    /// CRC-32 of its bytes.
    pub crc: u32,
    /// Why.
    pub detail: String,
}

/// What the engine must do after a push or an expiry sweep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write this image.
    Write(Finished),
    /// Quarantine this.
    Quarantine(Quarantined),
    /// Move a written image to quarantine.
    Retract(Retraction),
}

impl Action {
    /// The tags this action settles.
    pub fn tags(&self) -> &[Tag] {
        match self {
            Action::Write(f) => &f.tags,
            Action::Quarantine(q) => &q.tags,
            Action::Retract(_) => &[],
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
    /// v2: a chunk of a picture already settled in quarantine (same device, pid, size and CRC,
    /// still remembered): nothing stored and no second record; its tag is done now.
    AfterQuarantine,
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
    /// v1: a picture already written, moved to quarantine because a chunk of its time span
    /// that it lacked arrived later ([`super::Retraction`]).
    pub const RETRACTED: &str = "retracted";
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
    /// A v1 segment: the device and the segment's bound.
    V1(DeviceId, Bound),
    /// A settled v1 picture's data span: the device and its last chunk's time (only in the
    /// `Recent` ring).
    V1Span(DeviceId, i64),
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
    /// Logical bytes (in memory or cold).
    fn held(&self) -> usize;
    /// Bytes in memory.
    fn hot(&self) -> usize;
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
    /// Sum of `hot()` over open entries.
    hot: usize,
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
        self.unlink(&slot.meta, &slot.state);
        Some(slot)
    }

    /// Removes an entry from the idleness order and the byte counts (it stays counted as opened).
    fn unlink(&mut self, meta: &Meta, state: &impl Held) {
        self.lru.remove(&(meta.last_ms, meta.touch));
        self.buffered = self.buffered.saturating_sub(state.held());
        self.hot = self.hot.saturating_sub(state.hot());
    }

    /// Enters an entry into the idleness order under `key`; `touched` marks it as just received
    /// a new chunk.
    fn link(&mut self, meta: &mut Meta, key: Key, state: &impl Held, now: u64, touched: bool) {
        if touched {
            meta.last_ms = meta.last_ms.max(now);
            meta.touch = self.next_serial();
        }
        if !meta.registered {
            meta.registered = true;
            self.opened.insert((meta.opened_ms, meta.id));
        }
        self.lru.insert((meta.last_ms, meta.touch), key);
        self.buffered += state.held();
        self.hot += state.hot();
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
        self.link(&mut slot.meta, key, &slot.state, now, touched);
        map.insert(k, slot);
    }

    /// Forgets a detached entry for good.
    fn close(&mut self, meta: &Meta) {
        if meta.registered {
            self.opened.remove(&(meta.opened_ms, meta.id));
        }
    }
}

/// Pictures settled recently, so late duplicates are recognised (see module docs, *Memory*):
/// the order of settlement of both formats' records and the caps on them. The records live with
/// their format: v1's in their device's segment map ([`v1::V1Dev`]), among the open segments,
/// since they are boundaries too; v2's in [`V2`].
#[derive(Debug, Default)]
struct Recent {
    /// `(key, generation, settled at)`, oldest first. A generation that no longer matches the
    /// record's is stale (the key was settled again later).
    ring: VecDeque<(Key, u64, u64)>,
    generation: u64,
    /// v1 records held in the device maps.
    v1: usize,
    /// Fingerprints held by v1 records.
    prints: usize,
}

impl Recent {
    fn next_generation(&mut self) -> u64 {
        self.generation += 1;
        self.generation
    }

    /// The oldest record's key and generation, if it is older than `timeout` or beyond the caps.
    fn pop_stale(&mut self, now: u64, timeout: u64, cap: usize) -> Option<(Key, u64)> {
        let &(_, _, at) = self.ring.front()?;
        let old = at.saturating_add(timeout) < now;
        if !(old || self.ring.len() > cap || self.prints > MAX_RECENT_PRINTS) {
            return None;
        }
        self.ring
            .pop_front()
            .map(|(key, generation, _)| (key, generation))
    }
}

/// One wire format's state ([`V1`], [`V2`]) as the bookkeeping both formats share reaches it:
/// eviction (`max_open` counts the open entries of both, the least recently touched goes first)
/// and pruning the memory (one ring for both) settle or forget entries of either format.
trait FormatState {
    /// Whether `key` names one of this format's entries or records.
    fn owns(&self, key: &Key) -> bool;
    /// Open entries (including discarding states).
    fn open_count(&self) -> usize;
    /// Settles the open entry `key`, just taken off the idleness order: its quarantine record
    /// (a held v1 picture that is a well-formed JPEG is written); `evicted` overrides the
    /// natural reason (`expired`, `invalid_jpeg`, ...).
    fn settle(&mut self, cx: &mut Ctx<'_>, key: Key, evicted: Option<&'static str>);
    /// Forgets the settled record `key` of `generation`, pruned from the memory (unless it was
    /// settled again since).
    fn forget(&mut self, recent: &mut Recent, key: Key, generation: u64);
}

/// Either format's state, as [`Ctx`] holds it.
type AnyFormat = dyn FormatState + 'static;

/// What the format-specific code ([`V1`], [`V2`]) works with besides its own state, in one
/// value: the time, the limits, the bookkeeping both formats share, where actions go, and the
/// other format (eviction and pruning the memory reach entries of either, see [`FormatState`]).
struct Ctx<'a> {
    /// Arrival time of the message being handled, or the time of the sweep, ms.
    now: u64,
    /// The limits in force.
    limits: &'a Limits,
    /// Idleness order and byte counts of both formats' open entries.
    index: &'a mut Index,
    /// Order and caps of both formats' settled records.
    recent: &'a mut Recent,
    /// Where bytes go beyond [`Limits::memory_budget`].
    cold: &'a mut Cold,
    /// Actions for the engine, appended in order.
    out: &'a mut Vec<Action>,
    /// The state of the format not being worked on.
    other: &'a mut AnyFormat,
}

impl Ctx<'_> {
    /// Open entries of both formats; `me` is the one being worked on.
    fn open_count(&self, me: &dyn FormatState) -> usize {
        me.open_count() + self.other.open_count()
    }

    /// The format that owns `key` (`me` or the other one) and a context for working on it.
    fn owner<'s>(&'s mut self, me: &'s mut AnyFormat, key: &Key) -> (&'s mut AnyFormat, Ctx<'s>) {
        let (owner, other) = if me.owns(key) {
            (me, &mut *self.other)
        } else {
            (&mut *self.other, me)
        };
        let cx = Ctx {
            now: self.now,
            limits: self.limits,
            index: &mut *self.index,
            recent: &mut *self.recent,
            cold: &mut *self.cold,
            out: &mut *self.out,
            other,
        };
        (owner, cx)
    }

    /// Removes the least recently touched entry (of either format) and emits its quarantine;
    /// `evicted` overrides the natural reason (`expired`, `invalid_jpeg`, ...).
    fn settle_first(&mut self, me: &mut AnyFormat, evicted: Option<&'static str>) {
        let Some((_, key)) = self.index.lru.pop_first() else {
            return;
        };
        let (owner, mut cx) = self.owner(me, &key);
        owner.settle(&mut cx, key, evicted);
    }

    /// Makes room for one more open entry.
    fn make_room(&mut self, me: &mut AnyFormat) {
        let max = self.limits.max_open.max(1);
        while self.open_count(me) >= max && !self.index.lru.is_empty() {
            self.settle_first(me, Some(reason::EVICTED));
        }
    }

    /// Forgets settled pictures older than the timeout and the oldest beyond the caps.
    fn prune_recent(&mut self, me: &mut AnyFormat) {
        let cap = recent_cap(self.limits);
        while let Some((key, generation)) =
            self.recent.pop_stale(self.now, self.limits.timeout_ms, cap)
        {
            let (owner, cx) = self.owner(me, &key);
            owner.forget(cx.recent, key, generation);
        }
    }
}

/// Most settled pictures remembered (see the module docs, *Memory*).
fn recent_cap(limits: &Limits) -> usize {
    limits.max_open.saturating_mul(4).max(RECENT_MIN)
}

/// The per-process reassembly state: each format's own (`V1`, `V2`) and what they share.
#[derive(Debug)]
pub struct Assembler {
    limits: Limits,
    /// v1: segments by device, the redelivery grace's holds.
    v1: V1,
    /// v2: open pictures and the memory of settled ones.
    v2: V2,
    index: Index,
    recent: Recent,
    /// Where bytes go beyond [`Limits::memory_budget`].
    cold: Cold,
}

impl Assembler {
    /// A new, empty assembler that keeps every byte in memory.
    pub fn new(limits: Limits) -> Self {
        Assembler {
            limits,
            v1: V1::default(),
            v2: V2::default(),
            index: Index::default(),
            recent: Recent::default(),
            cold: Cold::new(None),
        }
    }

    /// A new, empty assembler that moves bytes beyond [`Limits::memory_budget`] to `store`.
    pub fn with_cold_store(limits: Limits, store: Box<dyn ColdStore>) -> Self {
        Assembler {
            cold: Cold::new(Some(store)),
            ..Assembler::new(limits)
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The v1 state, and a context at `now` for working on it.
    fn v1_cx<'a>(&'a mut self, now: u64, out: &'a mut Vec<Action>) -> (&'a mut V1, Ctx<'a>) {
        let Assembler {
            limits,
            v1,
            v2,
            index,
            recent,
            cold,
        } = self;
        let cx = Ctx {
            now,
            limits,
            index,
            recent,
            cold,
            out,
            other: v2,
        };
        (v1, cx)
    }

    /// The v2 state, and a context at `now` for working on it.
    fn v2_cx<'a>(&'a mut self, now: u64, out: &'a mut Vec<Action>) -> (&'a mut V2, Ctx<'a>) {
        let Assembler {
            limits,
            v1,
            v2,
            index,
            recent,
            cold,
        } = self;
        let cx = Ctx {
            now,
            limits,
            index,
            recent,
            cold,
            out,
            other: v1,
        };
        (v2, cx)
    }

    /// Feeds one message that arrived at `now_ms`. Actions are appended to `out`.
    pub fn push(
        &mut self,
        msg: &ImgMessage,
        tag: Tag,
        now_ms: u64,
        out: &mut Vec<Action>,
    ) -> Disposition {
        let disposition = match wire::parse_value(&msg.value) {
            Ok(ImgValue::V1Hex(hex)) => {
                let (v1, mut cx) = self.v1_cx(now_ms, out);
                v1.data(&mut cx, msg, hex, tag)
            }
            Ok(ImgValue::V1End) => {
                let (v1, mut cx) = self.v1_cx(now_ms, out);
                v1.end(&mut cx, msg, tag)
            }
            Ok(ImgValue::V2 { header, data }) => {
                let (v2, mut cx) = self.v2_cx(now_ms, out);
                v2.chunk(&mut cx, msg, header, data, tag)
            }
            Err(e @ (WireError::BadHex { .. } | WireError::OddHexLength { .. })) => {
                let (v1, mut cx) = self.v1_cx(now_ms, out);
                v1.bad(&mut cx, msg, &e, tag)
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
                    let (v2, mut cx) = self.v2_cx(now_ms, out);
                    v2.bad(&mut cx, msg, tag, (pid, None), e.reason(), detail)
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
        };
        self.enforce_budget();
        disposition
    }

    /// Moves the bytes of the least recently touched pictures to the cold store until at most
    /// half the budget stays in memory (hysteresis: stores happen in bursts, and the pictures
    /// frozen have gathered more than a chunk each, so fewer, larger extents).
    fn enforce_budget(&mut self) {
        let budget = self.limits.memory_budget;
        if budget == 0 || self.index.hot <= budget || !self.cold.enabled() {
            return;
        }
        let goal = budget / 2;
        let errors = self.cold.errors;
        let mut after: Option<(u64, u64)> = None;
        while self.index.hot > goal && self.cold.errors == errors {
            use std::ops::Bound::{Excluded, Unbounded};
            let next = match after {
                None => self.index.lru.iter().next(),
                Some(a) => self.index.lru.range((Excluded(a), Unbounded)).next(),
            };
            let Some((&at, key)) = next else {
                break;
            };
            after = Some(at);
            let freed = match key.clone() {
                Key::V1(device, b) => self.v1.freeze(&mut self.cold, &device, b),
                Key::V2(device, pid) => self.v2.freeze(&mut self.cold, device, pid),
                Key::V1Span(..) => 0,
            };
            self.index.hot = self.index.hot.saturating_sub(freed);
        }
    }

    /// Reports that deliveries may have been lost in flight at `at_ms`: a connection died with
    /// deliveries unsettled, deliveries were released, or the process restarted. Aliyun pushes
    /// them again later, after newer ones. Until `at_ms +` [`Limits::redelivery_grace_ms`], a v1
    /// picture that had chunks before `at_ms` and validates is held, not written, so a late chunk
    /// can still slot into it (or a wrong cut be corrected by a late `END`).
    pub fn connection_lost(&mut self, at_ms: u64) {
        self.v1.connection_lost(at_ms);
    }

    /// Quarantines every picture idle for longer than the timeout at `now_ms`, and writes the
    /// held pictures whose redelivery grace is over.
    pub fn expire(&mut self, now_ms: u64, out: &mut Vec<Action>) {
        let (v1, mut cx) = self.v1_cx(now_ms, out);
        v1.release_holds(&mut cx);
        while let Some((&(last, _), _)) = cx.index.lru.first_key_value() {
            if now_ms.saturating_sub(last) <= cx.limits.timeout_ms {
                break;
            }
            cx.settle_first(v1, None);
        }
        cx.prune_recent(v1);
        self.enforce_budget();
    }

    /// When the next picture would expire, if any are open: the first `now_ms` at which
    /// [`Assembler::expire`] quarantines something (idle strictly longer than the timeout).
    pub fn next_deadline(&self) -> Option<u64> {
        let idle = self.index.lru.first_key_value().map(|(&(last, _), _)| {
            last.saturating_add(self.limits.timeout_ms)
                .saturating_add(1)
        });
        let held = self.v1.next_release();
        idle.into_iter().chain(held).min()
    }

    /// Open pictures (including discarding states that still hold tags).
    pub fn open_count(&self) -> usize {
        self.v1.open_count() + self.v2.open_count()
    }

    /// Bytes held by open pictures (in memory or cold).
    pub fn buffered_bytes(&self) -> usize {
        self.index.buffered
    }

    /// Bytes of open pictures in memory (their allocations).
    pub fn hot_bytes(&self) -> usize {
        self.index.hot
    }

    /// Bytes of open pictures in the cold store.
    pub fn cold_bytes(&self) -> usize {
        self.cold.bytes
    }

    /// Bytes ever moved to the cold store.
    pub fn cold_total(&self) -> u64 {
        self.cold.total
    }

    /// Failed cold-store writes and reads so far, and the last failure (taken: report it once).
    pub fn cold_errors(&mut self) -> (u64, Option<String>) {
        (self.cold.errors, self.cold.last_error.take())
    }

    /// Arrival time of the oldest open picture's first chunk.
    pub fn oldest_open_ms(&self) -> Option<u64> {
        self.index.opened.first().map(|&(ms, _)| ms)
    }

    /// Settled pictures currently remembered for late-duplicate detection.
    pub fn remembered_count(&self) -> usize {
        self.recent.v1 + self.v2.remembered_count()
    }

    /// Quarantines every open picture now (reason `expired`, or the discarding state's own
    /// reason), e.g. at shutdown; afterwards nothing is open.
    pub fn drain(&mut self, now_ms: u64, out: &mut Vec<Action>) {
        let (v1, mut cx) = self.v1_cx(now_ms, out);
        while !cx.index.lru.is_empty() {
            cx.settle_first(v1, None);
        }
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

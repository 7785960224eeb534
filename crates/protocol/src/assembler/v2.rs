//! v2: framed chunks keyed by `(productKey, deviceName, pid)`, stored decoded by `seq`
//! (docs/protocol.md section 3.2; the rules are summarised in the parent module's docs).

use super::cold::{Cold, Piece};
use std::collections::HashMap;

use super::{
    lone, ms_i64, ranges, reason, Action, Ctx, Disposition, Finished, FormatState, Held, Key, Meta,
    Quarantined, Recent, Slot, Tag, MAX_ATTACHED_DUPLICATES,
};
use crate::message::{DeviceId, ImgMessage};
use crate::wire::{self, Format, V2Header};

/// An open v2 picture.
#[derive(Debug)]
pub(super) struct V2Pic {
    /// Header of the first chunk seen: every later chunk must agree on count, size and crc.
    first: V2Header,
    /// Decoded pieces by `seq` (in memory or cold).
    pieces: Vec<Option<Piece>>,
    present: usize,
    /// Sum of the present pieces' lengths.
    bytes: usize,
    tags: Vec<Tag>,
    dups: usize,
    /// Earliest `items.img.time`.
    name_time: Option<i64>,
    /// Why some bytes could not be read back from cold storage (they read as zeros).
    lost: Option<String>,
}

/// Result of adding a piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Added {
    Stored,
    Complete,
    Duplicate {
        attached: bool,
    },
    Conflict,
    /// The present pieces would exceed `size`.
    Overflow,
}

impl V2Pic {
    fn new(first: V2Header) -> Self {
        V2Pic {
            first,
            pieces: vec![None; first.count as usize],
            present: 0,
            bytes: 0,
            tags: Vec::new(),
            dups: 0,
            name_time: None,
            lost: None,
        }
    }

    /// Memory its pieces hold now.
    pub(super) fn hot_bytes(&self) -> usize {
        self.pieces.iter().flatten().map(Piece::hot_bytes).sum()
    }

    /// Moves its pieces to cold storage; returns the memory freed.
    pub(super) fn freeze(&mut self, cold: &mut Cold) -> usize {
        self.pieces
            .iter_mut()
            .flatten()
            .map(|p| p.freeze(cold))
            .sum()
    }

    fn thaw_piece(piece: &mut Piece, lost: &mut Option<String>, cold: &mut Cold) {
        if !piece.thaw(cold) && lost.is_none() {
            *lost = Some(
                cold.last_error
                    .clone()
                    .unwrap_or_else(|| "cold store read failed".into()),
            );
        }
    }

    fn same_header(&self, h: &V2Header) -> bool {
        (self.first.count, self.first.size, self.first.crc) == (h.count, h.size, h.crc)
    }

    fn add(
        &mut self,
        cold: &mut Cold,
        seq: u32,
        piece: Vec<u8>,
        tag: Tag,
        item_time: Option<i64>,
    ) -> Added {
        let size = self.first.size as usize;
        let Some(slot) = self.pieces.get_mut(seq as usize) else {
            return Added::Conflict;
        };
        if let Some(stored) = slot.as_mut() {
            if stored.len() == piece.len() {
                V2Pic::thaw_piece(stored, &mut self.lost, cold);
            }
        }
        match slot {
            Some(stored) if stored.hot() == Some(&piece[..]) => {
                if self.dups >= MAX_ATTACHED_DUPLICATES {
                    return Added::Duplicate { attached: false };
                }
                self.dups += 1;
                self.tags.push(tag);
                Added::Duplicate { attached: true }
            }
            Some(_) => Added::Conflict,
            None => {
                if self.bytes.saturating_add(piece.len()) > size {
                    return Added::Overflow;
                }
                self.bytes += piece.len();
                *slot = Some(Piece::Hot(piece.into_boxed_slice()));
                self.present += 1;
                self.tags.push(tag);
                if let Some(it) = item_time {
                    self.name_time = Some(self.name_time.map_or(it, |n| n.min(it)));
                }
                if self.present == self.pieces.len() {
                    Added::Complete
                } else {
                    Added::Stored
                }
            }
        }
    }

    fn missing(&self) -> Vec<u32> {
        (0u32..)
            .zip(&self.pieces)
            .filter(|(_, p)| p.is_none())
            .map(|(seq, _)| seq)
            .collect()
    }

    /// The present pieces in `seq` order (read back from cold storage, which frees them there).
    fn concat(&mut self, cold: &mut Cold) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.bytes);
        for p in self.pieces.iter_mut().flatten() {
            V2Pic::thaw_piece(p, &mut self.lost, cold);
            out.extend_from_slice(p.hot().unwrap_or_default());
        }
        out
    }

    /// Frees whatever is still cold (the bytes are not needed).
    fn discard_cold(&mut self, cold: &mut Cold) {
        for p in self.pieces.iter_mut().flatten() {
            p.discard(cold);
        }
    }

    /// Its quarantine record, with the present pieces in `seq` order; `extra`: the tag of the
    /// chunk that settled it, when that chunk is not one of its pieces.
    fn quarantine(
        mut self,
        cold: &mut Cold,
        device: DeviceId,
        opened_ms: u64,
        reason: &'static str,
        detail: String,
        extra: Option<Tag>,
    ) -> Quarantined {
        let bytes = self.concat(cold);
        self.record(device, opened_ms, reason, detail, extra, bytes)
    }

    /// Its quarantine record with `bytes` (its pieces, already read: nothing may stay cold).
    fn record(
        self,
        device: DeviceId,
        opened_ms: u64,
        reason: &'static str,
        detail: String,
        extra: Option<Tag>,
        bytes: Vec<u8>,
    ) -> Quarantined {
        let mut tags = self.tags;
        tags.extend(extra);
        Quarantined {
            device,
            format: Some(Format::V2),
            pid: Some(self.first.pid),
            reason,
            detail,
            missing: (0u32..)
                .zip(&self.pieces)
                .filter(|(_, p)| p.is_none())
                .map(|(seq, _)| seq)
                .collect(),
            bytes,
            name_time_ms: self.name_time.unwrap_or_else(|| ms_i64(opened_ms)),
            tags,
        }
    }

    fn progress(&self) -> String {
        let missing = self.missing();
        let mut s = format!(
            "{} of {} chunk(s) received ({} of {} byte(s))",
            self.present, self.first.count, self.bytes, self.first.size
        );
        if !missing.is_empty() {
            s.push_str("; missing seq ");
            s.push_str(&ranges(&missing));
        }
        s
    }
}

/// `count=3 size=1000 crc=5A0B2C1D`.
fn header_text(h: &V2Header) -> String {
    format!("count={} size={} crc={:08X}", h.count, h.size, h.crc)
}

/// The chunks of a picture whose `size` is over the limit: absorbed without their bytes until
/// every `seq` was seen (or the timeout), then settled in one `too_large` quarantine.
#[derive(Debug)]
pub(super) struct V2Discard {
    first: V2Header,
    seen: Vec<bool>,
    seen_count: usize,
    dups: usize,
    tags: Vec<Tag>,
    name_time: Option<i64>,
}

impl V2Discard {
    fn new(first: V2Header) -> Self {
        V2Discard {
            first,
            seen: vec![false; first.count as usize],
            seen_count: 0,
            dups: 0,
            tags: Vec::new(),
            name_time: None,
        }
    }

    fn same_header(&self, h: &V2Header) -> bool {
        (self.first.count, self.first.size, self.first.crc) == (h.count, h.size, h.crc)
    }

    /// Absorbs chunk `seq`: `Stored` when new, `Complete` when it was the last unseen one,
    /// `Duplicate` otherwise.
    fn absorb(&mut self, seq: u32, tag: Tag, item_time: Option<i64>) -> Added {
        match self.seen.get_mut(seq as usize) {
            Some(seen) if !*seen => {
                *seen = true;
                self.seen_count += 1;
                self.tags.push(tag);
                if let Some(it) = item_time {
                    self.name_time = Some(self.name_time.map_or(it, |n| n.min(it)));
                }
                if self.seen_count == self.seen.len() {
                    Added::Complete
                } else {
                    Added::Stored
                }
            }
            _ if self.dups < MAX_ATTACHED_DUPLICATES => {
                self.dups += 1;
                self.tags.push(tag);
                Added::Duplicate { attached: true }
            }
            _ => Added::Duplicate { attached: false },
        }
    }

    fn quarantine(self, device: DeviceId, opened_ms: u64, note: &str) -> Quarantined {
        let missing: Vec<u32> = (0u32..)
            .zip(&self.seen)
            .filter(|(_, s)| !**s)
            .map(|(seq, _)| seq)
            .collect();
        let mut detail = format!(
            "size {} exceeds max_image_bytes; {} of {} chunk(s) discarded unread{note}",
            self.first.size, self.seen_count, self.first.count
        );
        if !missing.is_empty() {
            detail.push_str("; never seen seq ");
            detail.push_str(&ranges(&missing));
        }
        Quarantined {
            device,
            format: Some(Format::V2),
            pid: Some(self.first.pid),
            reason: reason::TOO_LARGE,
            detail,
            bytes: Vec::new(),
            name_time_ms: self.name_time.unwrap_or_else(|| ms_i64(opened_ms)),
            missing,
            tags: self.tags,
        }
    }
}

/// Open v2 state of one `(device, pid)`.
#[derive(Debug)]
pub(super) enum V2State {
    Pic(V2Pic),
    Discard(V2Discard),
}

impl Held for V2State {
    fn held(&self) -> usize {
        match self {
            V2State::Pic(p) => p.bytes,
            V2State::Discard(_) => 0,
        }
    }

    fn hot(&self) -> usize {
        match self {
            V2State::Pic(p) => p.hot_bytes(),
            V2State::Discard(_) => 0,
        }
    }
}

/// A settled v2 picture: a later chunk with this size and CRC is one of its duplicates (written)
/// or comes after its quarantine record (quarantined).
#[derive(Debug, Clone, Copy)]
pub(super) struct V2Done {
    pub(super) size: u32,
    pub(super) crc: u32,
    /// Settled in quarantine rather than written.
    pub(super) quarantined: bool,
    /// `header_mismatch`: the other header's size and CRC (its chunks belong to the record too).
    pub(super) other: Option<(u32, u32)>,
}

impl V2Done {
    fn quarantined(h: &V2Header) -> Self {
        V2Done {
            size: h.size,
            crc: h.crc,
            quarantined: true,
            other: None,
        }
    }

    /// Whether a chunk with header `h` belongs to this settled picture.
    fn matches(&self, h: &V2Header) -> bool {
        let key = (h.size, h.crc);
        key == (self.size, self.crc) || self.other == Some(key)
    }
}

/// What to remember when this open state times out or is evicted: too-large discards only. A
/// picture that expired (or was evicted) was incomplete, not wrong: its late chunks, or the
/// camera resending it, open a new assembly that can still deliver it.
fn settled_as(state: &V2State) -> Option<V2Done> {
    match state {
        V2State::Discard(d) => Some(V2Done::quarantined(&d.first)),
        V2State::Pic(_) => None,
    }
}

/// The quarantine record of an open entry that times out or is evicted (`evicted` set).
fn settle(
    cold: &mut Cold,
    device: DeviceId,
    slot: Slot<V2State>,
    evicted: Option<&'static str>,
) -> Quarantined {
    let opened = slot.meta.opened_ms;
    match slot.state {
        V2State::Discard(d) => {
            let note = if evicted.is_some() {
                " (flushed early: max_open reached)"
            } else {
                " (the rest never arrived)"
            };
            d.quarantine(device, opened, note)
        }
        V2State::Pic(p) => {
            let progress = p.progress();
            let (reason, detail) = match evicted {
                Some(r) => (r, format!("evicted to respect max_open; {progress}")),
                None => (
                    reason::EXPIRED,
                    format!("no new chunk within the timeout; {progress}"),
                ),
            };
            p.quarantine(cold, device, opened, reason, detail, None)
        }
    }
}

/// The v2 state: open pictures (or too-large discarding states) and the memory of settled ones,
/// both by device and pid.
#[derive(Debug, Default)]
pub(super) struct V2 {
    /// Open pictures (or too-large discarding states).
    open: HashMap<(DeviceId, u32), Slot<V2State>>,
    /// Settled pictures remembered (see the module docs, *Memory*), with the generation of their
    /// `Recent` record.
    done: HashMap<(DeviceId, u32), (u64, V2Done)>,
}

impl FormatState for V2 {
    fn owns(&self, key: &Key) -> bool {
        matches!(key, Key::V2(..))
    }

    fn open_count(&self) -> usize {
        self.open.len()
    }

    fn settle(&mut self, cx: &mut Ctx<'_>, key: Key, evicted: Option<&'static str>) {
        let Key::V2(device, pid) = key else {
            return;
        };
        let k = (device, pid);
        // `detach` removes the LRU entry again; harmless since it is gone already.
        if let Some(slot) = cx.index.detach(&mut self.open, &k) {
            cx.index.close(&slot.meta);
            let (device, pid) = k;
            if let Some(done) = settled_as(&slot.state) {
                self.insert_done(cx, device.clone(), pid, done);
            }
            cx.out
                .push(Action::Quarantine(settle(cx.cold, device, slot, evicted)));
        }
    }

    fn forget(&mut self, _recent: &mut Recent, key: Key, generation: u64) {
        let Key::V2(device, pid) = key else {
            return;
        };
        let k = (device, pid);
        if self.done.get(&k).is_some_and(|(g, _)| *g == generation) {
            self.done.remove(&k);
        }
    }
}

impl V2 {
    /// Settled pictures remembered.
    pub(super) fn remembered_count(&self) -> usize {
        self.done.len()
    }

    /// Moves the bytes of the open picture `(device, pid)` to cold storage; returns the memory
    /// freed.
    pub(super) fn freeze(&mut self, cold: &mut Cold, device: DeviceId, pid: u32) -> usize {
        match self.open.get_mut(&(device, pid)) {
            Some(Slot {
                state: V2State::Pic(pic),
                ..
            }) => pic.freeze(cold),
            _ => 0,
        }
    }

    /// The settled picture remembered under `(device, pid)`.
    fn recalled(&self, device: &DeviceId, pid: u32) -> Option<&V2Done> {
        // The tuple key costs two reference-count increments; no allocation.
        self.done.get(&(device.clone(), pid)).map(|(_, d)| d)
    }

    /// Records a settled picture in the memory (without pruning it).
    fn insert_done(&mut self, cx: &mut Ctx<'_>, device: DeviceId, pid: u32, done: V2Done) {
        let generation = cx.recent.next_generation();
        let key = Key::V2(device.clone(), pid);
        self.done.insert((device, pid), (generation, done));
        cx.recent.ring.push_back((key, generation, cx.now));
    }

    /// Puts an entry (back) under `k`; `touched` marks it as just received a new chunk.
    fn attach(
        &mut self,
        cx: &mut Ctx<'_>,
        k: (DeviceId, u32),
        meta: Meta,
        state: V2State,
        touched: bool,
    ) {
        let key = Key::V2(k.0.clone(), k.1);
        let slot = Slot { meta, state };
        cx.index
            .attach(&mut self.open, k, key, slot, cx.now, touched);
    }

    /// Opens a new entry (making room first).
    fn open_new(&mut self, cx: &mut Ctx<'_>, k: (DeviceId, u32), state: V2State) {
        cx.make_room(self);
        let slot = cx.index.slot(state, cx.now);
        self.attach(cx, k, slot.meta, slot.state, true);
    }

    /// A well-formed v2 chunk.
    pub(super) fn chunk(
        &mut self,
        cx: &mut Ctx<'_>,
        msg: &ImgMessage,
        h: V2Header,
        data: &str,
        tag: Tag,
    ) -> Disposition {
        let device = &msg.device;
        if let Some(done) = self.recalled(device, h.pid).filter(|d| d.matches(&h)) {
            return if done.quarantined {
                Disposition::AfterQuarantine
            } else {
                Disposition::Duplicate { attached: false }
            };
        }
        let k = (device.clone(), h.pid);
        if h.size as usize > cx.limits.max_image_bytes {
            return self.too_large(cx, msg, k, h, tag);
        }
        let piece = match wire::decode_base64(data) {
            Ok(p) => p,
            Err(e) => {
                let detail = format!("{e} (seq {})", h.seq);
                return self.bad(cx, msg, tag, (Some(h.pid), Some(h)), e.reason(), detail);
            }
        };
        if h.seq.saturating_add(1) < h.count && piece.len() % 3 != 0 {
            let detail = format!(
                "piece {} of {} is {} byte(s): only the last piece may be other than a multiple of 3",
                h.seq,
                h.count,
                piece.len()
            );
            return self.bad(
                cx,
                msg,
                tag,
                (Some(h.pid), Some(h)),
                reason::BAD_BOUNDARY,
                detail,
            );
        }
        let (meta, mut pic) = match cx.index.detach(&mut self.open, &k) {
            Some(Slot {
                meta,
                state: V2State::Pic(p),
            }) => (Some(meta), p),
            Some(Slot {
                meta,
                state: V2State::Discard(d),
            }) => {
                // A too-large picture under this pid, and now a normal-sized one: settle the old.
                cx.index.close(&meta);
                self.settle_discard(cx, device, meta.opened_ms, d);
                (None, V2Pic::new(h))
            }
            None => (None, V2Pic::new(h)),
        };
        let opened_ms = meta.map_or(cx.now, |m| m.opened_ms);
        if !pic.same_header(&h) {
            if let Some(m) = &meta {
                cx.index.close(m);
            }
            let detail = format!(
                "the picture's first chunk (seq {}) has {}; chunk seq {} has {}",
                pic.first.seq,
                header_text(&pic.first),
                h.seq,
                header_text(&h)
            );
            let first = pic.first;
            let q = pic.quarantine(
                cx.cold,
                device.clone(),
                opened_ms,
                reason::HEADER_MISMATCH,
                detail,
                Some(tag),
            );
            cx.out.push(Action::Quarantine(q));
            let done = V2Done {
                other: Some((h.size, h.crc)),
                ..V2Done::quarantined(&first)
            };
            self.remember(cx, device, &first, done);
            return Disposition::Quarantined;
        }
        let piece_len = piece.len();
        let added = pic.add(cx.cold, h.seq, piece, tag, msg.item_time);
        match (added, meta) {
            (Added::Stored | Added::Duplicate { .. }, m) => {
                let touched = added == Added::Stored;
                match m {
                    Some(m) => self.attach(cx, k, m, V2State::Pic(pic), touched),
                    None => self.open_new(cx, k, V2State::Pic(pic)),
                }
                match added {
                    Added::Duplicate { attached } => Disposition::Duplicate { attached },
                    _ => Disposition::Stored,
                }
            }
            (Added::Complete, m) => {
                if let Some(m) = &m {
                    cx.index.close(m);
                }
                self.finish(cx, device, opened_ms, pic)
            }
            (Added::Conflict, m) => {
                if let Some(m) = &m {
                    cx.index.close(m);
                }
                let detail = format!(
                    "seq {} arrived twice with different data ({piece_len} byte(s) this time); {}",
                    h.seq,
                    pic.progress()
                );
                let first = pic.first;
                let q = pic.quarantine(
                    cx.cold,
                    device.clone(),
                    opened_ms,
                    reason::CHUNK_CONFLICT,
                    detail,
                    Some(tag),
                );
                cx.out.push(Action::Quarantine(q));
                self.remember(cx, device, &first, V2Done::quarantined(&first));
                Disposition::Quarantined
            }
            (Added::Overflow, m) => {
                if let Some(m) = &m {
                    cx.index.close(m);
                }
                let detail = format!(
                    "seq {} adds {piece_len} byte(s) to {} already present, over the header's size {} \
                     (reported at once; this chunk's bytes are not kept); {}",
                    h.seq,
                    pic.bytes,
                    h.size,
                    pic.progress()
                );
                let first = pic.first;
                let q = pic.quarantine(
                    cx.cold,
                    device.clone(),
                    opened_ms,
                    reason::LENGTH_MISMATCH,
                    detail,
                    Some(tag),
                );
                cx.out.push(Action::Quarantine(q));
                self.remember(cx, device, &first, V2Done::quarantined(&first));
                Disposition::Quarantined
            }
        }
    }

    /// Every piece is present: check length, CRC and markers, then write or quarantine.
    fn finish(
        &mut self,
        cx: &mut Ctx<'_>,
        device: &DeviceId,
        opened_ms: u64,
        mut pic: V2Pic,
    ) -> Disposition {
        let first = pic.first;
        if pic.bytes != first.size as usize {
            let detail = format!(
                "all {} chunk(s) present but they hold {} byte(s); the header says size {}",
                first.count, pic.bytes, first.size
            );
            let q = pic.quarantine(
                cx.cold,
                device.clone(),
                opened_ms,
                reason::LENGTH_MISMATCH,
                detail,
                None,
            );
            cx.out.push(Action::Quarantine(q));
            self.remember(cx, device, &first, V2Done::quarantined(&first));
            return Disposition::Quarantined;
        }
        let bytes = pic.concat(cx.cold);
        let crc = wire::crc32(&bytes);
        let bad = if let Some(lost) = &pic.lost {
            Some((
                reason::CRC_MISMATCH,
                format!(
                    "{} byte(s) could not be read back from cold storage: {lost}",
                    bytes.len()
                ),
            ))
        } else if crc != first.crc {
            Some((
                reason::CRC_MISMATCH,
                format!(
                    "CRC-32 of the {} byte(s) is {crc:08X}; the header says {:08X}",
                    bytes.len(),
                    first.crc
                ),
            ))
        } else if !wire::has_jpeg_markers(&bytes) {
            Some((
                reason::INVALID_JPEG,
                format!(
                    "the {} byte(s) match size and CRC but do not start FF D8 and end FF D9",
                    bytes.len()
                ),
            ))
        } else if let Err(e) = wire::jpeg_structure_ok(&bytes) {
            Some((
                reason::INVALID_JPEG,
                format!(
                    "the {} byte(s) match size and CRC but are not a well-formed JPEG stream: {e}",
                    bytes.len()
                ),
            ))
        } else {
            None
        };
        if let Some((reason, detail)) = bad {
            pic.discard_cold(cx.cold);
            let q = pic.record(device.clone(), opened_ms, reason, detail, None, bytes);
            cx.out.push(Action::Quarantine(q));
            self.remember(cx, device, &first, V2Done::quarantined(&first));
            return Disposition::Quarantined;
        }
        cx.out.push(Action::Write(Finished {
            device: device.clone(),
            format: Format::V2,
            pid: Some(first.pid),
            bytes,
            name_time_ms: pic.name_time.unwrap_or_else(|| ms_i64(opened_ms)),
            chunks: pic.pieces.len(),
            tags: pic.tags,
            opened_ms,
            structure_only: None,
        }));
        let done = V2Done {
            size: first.size,
            crc: first.crc,
            quarantined: false,
            other: None,
        };
        self.remember(cx, device, &first, done);
        Disposition::Completed
    }

    /// Remembers a settled picture under `(device, pid)` (see the module docs, *Memory*).
    fn remember(&mut self, cx: &mut Ctx<'_>, device: &DeviceId, h: &V2Header, done: V2Done) {
        self.insert_done(cx, device.clone(), h.pid, done);
        cx.prune_recent(self);
    }

    /// A chunk whose header's `size` is over the limit (nothing is decoded or buffered).
    fn too_large(
        &mut self,
        cx: &mut Ctx<'_>,
        msg: &ImgMessage,
        k: (DeviceId, u32),
        h: V2Header,
        tag: Tag,
    ) -> Disposition {
        let device = &msg.device;
        let mut discard = match cx.index.detach(&mut self.open, &k) {
            Some(Slot {
                meta,
                state: V2State::Discard(mut d),
            }) if d.same_header(&h) => {
                return match d.absorb(h.seq, tag, msg.item_time) {
                    Added::Complete => {
                        cx.index.close(&meta);
                        self.settle_discard(cx, device, meta.opened_ms, d);
                        Disposition::Quarantined
                    }
                    Added::Duplicate { attached } => {
                        self.attach(cx, k, meta, V2State::Discard(d), false);
                        Disposition::Duplicate { attached }
                    }
                    _ => {
                        self.attach(cx, k, meta, V2State::Discard(d), true);
                        Disposition::Stored
                    }
                };
            }
            Some(Slot {
                meta,
                state: V2State::Pic(p),
            }) => {
                // A picture is open under this pid with a small size: settle it with this chunk.
                cx.index.close(&meta);
                let detail = format!(
                    "chunk seq {} has {} (over max_image_bytes {}) while the open picture has {}",
                    h.seq,
                    header_text(&h),
                    cx.limits.max_image_bytes,
                    header_text(&p.first)
                );
                let first = p.first;
                let q = p.quarantine(
                    cx.cold,
                    device.clone(),
                    meta.opened_ms,
                    reason::TOO_LARGE,
                    detail,
                    Some(tag),
                );
                cx.out.push(Action::Quarantine(q));
                self.remember(cx, device, &first, V2Done::quarantined(&first));
                return Disposition::Quarantined;
            }
            Some(Slot {
                meta,
                state: V2State::Discard(d),
            }) => {
                // Another too-large header under this pid: settle the old one, start anew.
                cx.index.close(&meta);
                self.settle_discard(cx, device, meta.opened_ms, d);
                V2Discard::new(h)
            }
            None => V2Discard::new(h),
        };
        match discard.absorb(h.seq, tag, msg.item_time) {
            Added::Complete => {
                self.settle_discard(cx, device, cx.now, discard);
                Disposition::Quarantined
            }
            _ => {
                self.open_new(cx, k, V2State::Discard(discard));
                Disposition::Stored
            }
        }
    }

    /// Emits a too-large picture's quarantine and remembers it (its late chunks are duplicates).
    fn settle_discard(
        &mut self,
        cx: &mut Ctx<'_>,
        device: &DeviceId,
        opened_ms: u64,
        d: V2Discard,
    ) {
        let first = d.first;
        cx.out.push(Action::Quarantine(d.quarantine(
            device.clone(),
            opened_ms,
            "",
        )));
        self.remember(cx, device, &first, V2Done::quarantined(&first));
    }

    /// A v2 chunk that is bad in itself: quarantined alone, or with its open picture. `(pid,
    /// header)`: what its header gives away, the pid if it can be read, and the whole header
    /// when it parsed (bad data): the picture quarantined with it (the open one, else the one
    /// that header names) is remembered, so its later chunks are
    /// [`Disposition::AfterQuarantine`] instead of a second, misleading record.
    pub(super) fn bad(
        &mut self,
        cx: &mut Ctx<'_>,
        msg: &ImgMessage,
        tag: Tag,
        (pid, header): (Option<u32>, Option<V2Header>),
        why: &'static str,
        detail: String,
    ) -> Disposition {
        let device = &msg.device;
        if let Some(pid) = pid {
            let k = (device.clone(), pid);
            match cx.index.detach(&mut self.open, &k) {
                Some(Slot {
                    meta,
                    state: V2State::Pic(p),
                }) => {
                    cx.index.close(&meta);
                    let detail = format!("{detail}; with the open picture: {}", p.progress());
                    let first = p.first;
                    let q = p.quarantine(
                        cx.cold,
                        device.clone(),
                        meta.opened_ms,
                        why,
                        detail,
                        Some(tag),
                    );
                    cx.out.push(Action::Quarantine(q));
                    self.remember(cx, device, &first, V2Done::quarantined(&first));
                    return Disposition::Quarantined;
                }
                Some(slot) => {
                    // A too-large picture's entry stays; the bad chunk goes alone.
                    let Slot { meta, state } = slot;
                    self.attach(cx, k, meta, state, false);
                    cx.out.push(lone(
                        msg,
                        tag,
                        Some(Format::V2),
                        Some(pid),
                        why,
                        detail,
                        cx.now,
                    ));
                    return Disposition::Quarantined;
                }
                None => {}
            }
        }
        cx.out
            .push(lone(msg, tag, Some(Format::V2), pid, why, detail, cx.now));
        if let Some(h) = header {
            // Nothing was open: the chunk's own picture ends here.
            self.remember(cx, device, &h, V2Done::quarantined(&h));
        }
        Disposition::Quarantined
    }
}

//! v1: bare hex chunks of one picture per device, ordered by time, closed by `END`
//! (docs/protocol.md section 2; the rules are summarised in the parent module's docs).

use super::{
    chunk_time, decodes_as_jpeg, excerpt, lone, ms_i64, reason, Action, Assembler, Disposition,
    Finished, Held, Key, Meta, Quarantined, Slot, Tag, MAX_ATTACHED_DUPLICATES, MAX_DISCARD_TAGS,
};
use crate::message::{DeviceId, ImgMessage};
use crate::wire::{self, Format, WireError};

/// One data chunk (or, with `len == 0`, a duplicate of one that only carries its tag) in `buf`.
#[derive(Debug, Clone, Copy)]
struct Chunk {
    /// Ordering time (see [`chunk_time`]).
    time: i64,
    /// Offset of its bytes in `V1Pic::buf`.
    start: usize,
    /// Its byte count; 0 for a duplicate.
    len: usize,
    tag: Tag,
    /// Whether `time` is an `items.img.time` (names the file).
    item_time: bool,
}

/// The `END` that closed a picture, plus duplicate `END`s.
#[derive(Debug)]
struct End {
    time: i64,
    tags: Vec<Tag>,
}

/// An open v1 picture. `buf` holds exactly the data chunks' bytes (in arrival order); `idx` is
/// sorted by `(time, arrival)`.
#[derive(Debug)]
pub(super) struct V1Pic {
    buf: Vec<u8>,
    idx: Vec<Chunk>,
    /// Whether `buf` is already in `idx` order (the usual case: then no copy at the end).
    in_order: bool,
    data_chunks: usize,
    dups: usize,
    /// Set once closed by `END` (and found invalid, or it would be gone).
    end: Option<End>,
    /// Why the last validation failed.
    invalid: String,
}

/// Result of adding a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Added {
    Stored,
    Duplicate { attached: bool },
}

impl V1Pic {
    fn new() -> Self {
        V1Pic {
            buf: Vec::new(),
            idx: Vec::new(),
            in_order: true,
            data_chunks: 0,
            dups: 0,
            end: None,
            invalid: String::new(),
        }
    }

    /// A compact copy of `chunks` (whose bytes are in `buf`).
    fn rebuild(chunks: &[Chunk], buf: &[u8]) -> Self {
        let mut pic = V1Pic::new();
        pic.buf.reserve(chunks.iter().map(|c| c.len).sum());
        for c in chunks {
            let start = pic.buf.len();
            if let Some(bytes) = buf.get(c.start..c.start + c.len) {
                pic.buf.extend_from_slice(bytes);
            }
            let len = pic.buf.len() - start;
            if len > 0 {
                pic.data_chunks += 1;
            } else {
                pic.dups += 1;
            }
            pic.idx.push(Chunk { start, len, ..*c });
        }
        pic
    }

    fn data_len(&self) -> usize {
        self.buf.len()
    }

    fn end_time(&self) -> Option<i64> {
        self.end.as_ref().map(|e| e.time)
    }

    /// Decodes `hex` and files it by `(time, arrival)`; an equal-time chunk with the same bytes
    /// makes it a duplicate.
    fn add(&mut self, time: i64, item_time: bool, hex: &str, tag: Tag) -> Result<Added, WireError> {
        let start = self.buf.len();
        // Grow by a quarter rather than double: thousands of pictures can be open at once, and
        // doubling leaves a third of their memory unused on average.
        let need = hex.len() / 2;
        if self.buf.capacity() - start < need {
            let grow = need.max(self.buf.capacity() / 4).max(1024);
            self.buf.reserve_exact(grow);
        }
        wire::decode_hex_into(hex, &mut self.buf)?;
        let len = self.buf.len() - start;
        let pos = self.idx.partition_point(|c| c.time <= time);
        let same_time = self.idx[..pos].partition_point(|c| c.time < time);
        let new = &self.buf[start..];
        let dup = self.idx[same_time..pos]
            .iter()
            .any(|c| c.len == len && self.buf.get(c.start..c.start + c.len) == Some(new));
        if dup {
            self.buf.truncate(start);
            if self.dups >= MAX_ATTACHED_DUPLICATES {
                return Ok(Added::Duplicate { attached: false });
            }
            self.dups += 1;
            let chunk = Chunk {
                time,
                start,
                len: 0,
                tag,
                item_time,
            };
            self.idx.insert(pos, chunk);
            return Ok(Added::Duplicate { attached: true });
        }
        if pos != self.idx.len() {
            self.in_order = false;
        }
        let chunk = Chunk {
            time,
            start,
            len,
            tag,
            item_time,
        };
        self.idx.insert(pos, chunk);
        self.data_chunks += 1;
        Ok(Added::Stored)
    }

    /// Number of entries with time `<= t`.
    fn prefix_len(&self, t: i64) -> usize {
        self.idx.partition_point(|c| c.time <= t)
    }

    /// Splits into the first `n` entries and the rest (if any).
    fn split(self, n: usize) -> (V1Pic, Option<V1Pic>) {
        if n >= self.idx.len() {
            return (self, None);
        }
        let (head, tail) = self.idx.split_at(n);
        (
            V1Pic::rebuild(head, &self.buf),
            Some(V1Pic::rebuild(tail, &self.buf)),
        )
    }

    /// The data slices in picture order.
    fn slices(&self) -> impl DoubleEndedIterator<Item = &[u8]> + '_ {
        self.idx
            .iter()
            .filter(|c| c.len > 0)
            .filter_map(|c| self.buf.get(c.start..c.start + c.len))
    }

    /// Whether the bytes in order start `FF D8` and end `FF D9`, without concatenating them.
    fn has_markers(&self) -> bool {
        if self.buf.len() < 4 {
            return false;
        }
        let mut head = [0u8; 2];
        let mut h = 0;
        'head: for s in self.slices() {
            for &b in s {
                head[h] = b;
                h += 1;
                if h == 2 {
                    break 'head;
                }
            }
        }
        let mut tail = [0u8; 2];
        let mut t = 2;
        'tail: for s in self.slices().rev() {
            for &b in s.iter().rev() {
                t -= 1;
                tail[t] = b;
                if t == 0 {
                    break 'tail;
                }
            }
        }
        head == [0xFF, 0xD8] && tail == [0xFF, 0xD9]
    }

    fn concat(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.buf.len());
        for s in self.slices() {
            out.extend_from_slice(s);
        }
        out
    }

    fn into_bytes(self) -> Vec<u8> {
        if self.in_order {
            self.buf
        } else {
            self.concat()
        }
    }

    /// Validates the closed picture: `Ok(Some(bytes))` when a copy was already made for the
    /// decode check, `Ok(None)` when valid without one, `Err(why)` when invalid.
    fn check(&self, decode: bool) -> Result<Option<Vec<u8>>, String> {
        if !self.has_markers() {
            return Err(format!(
                "{} byte(s) in {} chunk(s) do not start FF D8 and end FF D9",
                self.buf.len(),
                self.data_chunks
            ));
        }
        if !decode {
            return Ok(None);
        }
        let bytes = self.concat();
        if decodes_as_jpeg(&bytes) {
            Ok(Some(bytes))
        } else {
            Err(format!(
                "{} byte(s) in {} chunk(s) carry the JPEG markers but do not decode",
                bytes.len(),
                self.data_chunks
            ))
        }
    }

    fn tags(&self) -> Vec<Tag> {
        let end = self.end.as_ref().map_or(0, |e| e.tags.len());
        let mut tags = Vec::with_capacity(self.idx.len() + end);
        tags.extend(self.idx.iter().map(|c| c.tag));
        if let Some(e) = &self.end {
            tags.extend_from_slice(&e.tags);
        }
        tags
    }

    /// The earliest `items.img.time` (chunks are sorted by time).
    fn name_time(&self) -> Option<i64> {
        self.idx.iter().find(|c| c.item_time).map(|c| c.time)
    }

    fn start_time(&self) -> Option<i64> {
        self.idx.first().map(|c| c.time)
    }

    /// Sorted fingerprints of the data chunks.
    fn prints(&self) -> Box<[u64]> {
        let mut p: Vec<u64> = self
            .idx
            .iter()
            .filter(|c| c.len > 0)
            .filter_map(|c| Some(print(c.time, self.buf.get(c.start..c.start + c.len)?)))
            .collect();
        p.sort_unstable();
        p.dedup();
        p.into_boxed_slice()
    }

    fn quarantine(
        self,
        device: DeviceId,
        opened_ms: u64,
        reason: &'static str,
        detail: String,
        extra: Option<Tag>,
    ) -> Quarantined {
        let mut tags = self.tags();
        tags.extend(extra);
        let name_time_ms = self.name_time().unwrap_or_else(|| ms_i64(opened_ms));
        Quarantined {
            device,
            format: Some(Format::V1),
            pid: None,
            reason,
            detail,
            bytes: self.into_bytes(),
            name_time_ms,
            missing: Vec::new(),
            tags,
        }
    }
}

/// A chunk's fingerprint: CRC-32 of its bytes and the low 32 bits of its time.
fn print(time: i64, bytes: &[u8]) -> u64 {
    (u64::from(wire::crc32(bytes)) << 32) | (time as u64 & 0xFFFF_FFFF)
}

/// The rest of a v1 picture that was quarantined by a bad or oversized chunk, discarded up to the
/// next `END`: no bytes, only tags and counts.
#[derive(Debug)]
pub(super) struct V1Discard {
    reason: &'static str,
    cause: String,
    /// Earliest chunk time seen (the start of the span remembered at `END`).
    start: i64,
    chunks: usize,
    bytes: usize,
    tags: Vec<Tag>,
    name_time: Option<i64>,
}

impl V1Discard {
    fn new(reason: &'static str, cause: String, start: i64) -> Self {
        V1Discard {
            reason,
            cause,
            start,
            chunks: 0,
            bytes: 0,
            tags: Vec::new(),
            name_time: None,
        }
    }

    fn absorb(&mut self, msg: &ImgMessage, t: i64, tag: Tag) {
        self.start = self.start.min(t);
        self.chunks += 1;
        self.bytes += msg.value.len() / 2;
        self.tags.push(tag);
        if let Some(it) = msg.item_time {
            self.name_time = Some(self.name_time.map_or(it, |n| n.min(it)));
        }
    }

    fn quarantine(&mut self, device: DeviceId, opened_ms: u64, note: &str) -> Quarantined {
        let q = Quarantined {
            device,
            format: Some(Format::V1),
            pid: None,
            reason: self.reason,
            detail: format!(
                "{} further chunk(s) ({} byte(s)) of the picture discarded{note}; it was quarantined: {}",
                self.chunks, self.bytes, self.cause
            ),
            bytes: Vec::new(),
            name_time_ms: self.name_time.unwrap_or_else(|| ms_i64(opened_ms)),
            missing: Vec::new(),
            tags: std::mem::take(&mut self.tags),
        };
        self.chunks = 0;
        self.bytes = 0;
        q
    }
}

/// Open v1 state of a device.
#[derive(Debug)]
pub(super) enum V1State {
    Pic(V1Pic),
    Discard(V1Discard),
}

impl Held for V1State {
    fn held(&self) -> usize {
        match self {
            V1State::Pic(p) => p.data_len(),
            V1State::Discard(_) => 0,
        }
    }
}

/// A settled v1 picture's span and chunk fingerprints.
#[derive(Debug)]
pub(super) struct V1Done {
    pub(super) start: i64,
    pub(super) end: i64,
    pub(super) prints: Box<[u64]>,
}

/// The quarantine record of an open entry that times out or is evicted (`evicted` set).
pub(super) fn settle(
    device: DeviceId,
    slot: Slot<V1State>,
    _now: u64,
    evicted: Option<&'static str>,
) -> Quarantined {
    let opened = slot.meta.opened_ms;
    match slot.state {
        V1State::Discard(mut d) => {
            let note = if evicted.is_some() {
                " (flushed early: max_open reached)"
            } else {
                " (no END before the timeout)"
            };
            d.quarantine(device, opened, note)
        }
        V1State::Pic(pic) => {
            let (natural, why) = match pic.end.is_some() {
                true => (reason::INVALID_JPEG, pic.invalid.clone()),
                false => (
                    reason::EXPIRED,
                    format!(
                        "no END within the timeout after {} chunk(s), {} byte(s)",
                        pic.data_chunks,
                        pic.data_len()
                    ),
                ),
            };
            let (reason, detail) = match evicted {
                Some(r) => (r, format!("evicted to respect max_open; {why}")),
                None => (natural, why),
            };
            pic.quarantine(device, opened, reason, detail, None)
        }
    }
}

impl Assembler {
    /// Largest number of chunks of one v1 picture (bounds the index: 40 bytes per chunk).
    fn v1_max_chunks(&self) -> usize {
        (self.limits.max_image_bytes / 64).max(1024)
    }

    /// Whether `t` lies in the span of the device's last settled picture.
    fn v1_recent_covers(&self, device: &DeviceId, t: i64) -> bool {
        self.recent
            .v1(device)
            .is_some_and(|d| d.start <= t && t <= d.end)
    }

    fn v1_attach(
        &mut self,
        device: &DeviceId,
        meta: Meta,
        state: V1State,
        now: u64,
        touched: bool,
    ) {
        let slot = Slot { meta, state };
        self.index.attach(
            &mut self.open1,
            device.clone(),
            Key::V1(device.clone()),
            slot,
            now,
            touched,
        );
    }

    /// Opens a new entry for `device` (making room first).
    fn v1_open(&mut self, device: &DeviceId, state: V1State, now: u64, out: &mut Vec<Action>) {
        self.make_room(now, out);
        let slot = self.index.slot(state, now);
        self.v1_attach(device, slot.meta, slot.state, now, true);
    }

    /// A v1 data chunk.
    pub(super) fn v1_data(
        &mut self,
        msg: &ImgMessage,
        hex: &str,
        tag: Tag,
        now: u64,
        out: &mut Vec<Action>,
    ) -> Disposition {
        let t = chunk_time(msg, now);
        let device = &msg.device;
        let Some(Slot { meta, state }) = self.index.detach(&mut self.open1, device) else {
            return self.v1_fresh(msg, hex, t, tag, now, out);
        };
        let mut pic = match state {
            V1State::Discard(mut d) => {
                d.absorb(msg, t, tag);
                if d.tags.len() >= MAX_DISCARD_TAGS {
                    let q = d.quarantine(device.clone(), meta.opened_ms, " (partial: many chunks)");
                    out.push(Action::Quarantine(q));
                }
                self.v1_attach(device, meta, V1State::Discard(d), now, true);
                return Disposition::Stored;
            }
            V1State::Pic(pic) => pic,
        };
        match pic.end_time() {
            Some(end) if t > end => {
                // A newer picture begins: the closed one will never become valid.
                self.index.close(&meta);
                let old = Slot {
                    meta,
                    state: V1State::Pic(pic),
                };
                out.push(Action::Quarantine(settle(device.clone(), old, now, None)));
                return self.v1_fresh(msg, hex, t, tag, now, out);
            }
            Some(_) => {}
            None => {
                if self.v1_recent_covers(device, t) {
                    self.v1_attach(device, meta, V1State::Pic(pic), now, false);
                    return self.v1_late(msg, hex, t, tag, now, out);
                }
            }
        }
        let add = hex.len() / 2;
        if pic.data_len().saturating_add(add) > self.limits.max_image_bytes
            || pic.data_chunks >= self.v1_max_chunks()
        {
            let detail = format!(
                "{} byte(s) in {} chunk(s) plus a chunk of {add} exceed max_image_bytes {} (or the chunk limit {})",
                pic.data_len(),
                pic.data_chunks,
                self.limits.max_image_bytes,
                self.v1_max_chunks()
            );
            let discard = V1Discard::new(reason::TOO_LARGE, detail.clone(), t);
            let q = pic.quarantine(
                device.clone(),
                meta.opened_ms,
                reason::TOO_LARGE,
                detail,
                Some(tag),
            );
            out.push(Action::Quarantine(q));
            self.v1_attach(device, meta, V1State::Discard(discard), now, true);
            return Disposition::Quarantined;
        }
        match pic.add(t, msg.item_time.is_some(), hex, tag) {
            Err(e) => {
                let detail = format!("{e}: {}", excerpt(&msg.value));
                let discard = V1Discard::new(e.reason(), detail.clone(), t);
                let q = pic.quarantine(
                    device.clone(),
                    meta.opened_ms,
                    e.reason(),
                    detail,
                    Some(tag),
                );
                out.push(Action::Quarantine(q));
                self.v1_attach(device, meta, V1State::Discard(discard), now, true);
                Disposition::Quarantined
            }
            Ok(Added::Duplicate { attached }) => {
                self.v1_attach(device, meta, V1State::Pic(pic), now, false);
                Disposition::Duplicate { attached }
            }
            Ok(Added::Stored) if pic.end.is_some() => {
                // A late chunk of a closed, invalid picture: validate again.
                match pic.check(self.limits.decode_check) {
                    Ok(copy) => {
                        self.index.close(&meta);
                        self.v1_finish(device, meta.opened_ms, pic, copy, now, out);
                        Disposition::Completed
                    }
                    Err(why) => {
                        pic.invalid = why;
                        self.v1_attach(device, meta, V1State::Pic(pic), now, true);
                        Disposition::Stored
                    }
                }
            }
            Ok(Added::Stored) => {
                self.v1_attach(device, meta, V1State::Pic(pic), now, true);
                Disposition::Stored
            }
        }
    }

    /// A data chunk for a device with nothing open.
    fn v1_fresh(
        &mut self,
        msg: &ImgMessage,
        hex: &str,
        t: i64,
        tag: Tag,
        now: u64,
        out: &mut Vec<Action>,
    ) -> Disposition {
        let device = &msg.device;
        if self.v1_recent_covers(device, t) {
            return self.v1_late(msg, hex, t, tag, now, out);
        }
        let add = hex.len() / 2;
        if add > self.limits.max_image_bytes {
            let detail = format!(
                "a single chunk of {add} byte(s) exceeds max_image_bytes {}",
                self.limits.max_image_bytes
            );
            let discard = V1Discard::new(reason::TOO_LARGE, detail.clone(), t);
            let q = lone(
                msg,
                tag,
                Some(Format::V1),
                None,
                reason::TOO_LARGE,
                detail,
                now,
            );
            out.push(q);
            self.v1_open(device, V1State::Discard(discard), now, out);
            return Disposition::Quarantined;
        }
        let mut pic = V1Pic::new();
        if let Err(e) = pic.add(t, msg.item_time.is_some(), hex, tag) {
            let detail = format!("{e}: {}", excerpt(&msg.value));
            out.push(lone(
                msg,
                tag,
                Some(Format::V1),
                None,
                e.reason(),
                detail,
                now,
            ));
            return Disposition::Quarantined;
        }
        self.v1_open(device, V1State::Pic(pic), now, out);
        Disposition::Stored
    }

    /// A data chunk inside the span of the device's last settled picture.
    fn v1_late(
        &mut self,
        msg: &ImgMessage,
        hex: &str,
        t: i64,
        tag: Tag,
        now: u64,
        out: &mut Vec<Action>,
    ) -> Disposition {
        let mut bytes = Vec::with_capacity(hex.len() / 2);
        let known = wire::decode_hex_into(hex, &mut bytes).is_ok()
            && self
                .recent
                .v1(&msg.device)
                .is_some_and(|d| d.prints.binary_search(&print(t, &bytes)).is_ok());
        if known {
            return Disposition::Duplicate { attached: false };
        }
        let span = self
            .recent
            .v1(&msg.device)
            .map_or((0, 0), |d| (d.start, d.end));
        let detail = format!(
            "chunk at time {t} lies within the already settled picture {}..={} but is not one of its chunks",
            span.0, span.1
        );
        out.push(lone(
            msg,
            tag,
            Some(Format::V1),
            None,
            reason::LATE_CHUNK,
            detail,
            now,
        ));
        Disposition::Quarantined
    }

    /// Emits a validated picture and remembers it.
    fn v1_finish(
        &mut self,
        device: &DeviceId,
        opened_ms: u64,
        pic: V1Pic,
        copy: Option<Vec<u8>>,
        now: u64,
        out: &mut Vec<Action>,
    ) {
        let done = V1Done {
            start: pic.start_time().unwrap_or(i64::MIN),
            end: pic.end_time().unwrap_or(i64::MAX),
            prints: pic.prints(),
        };
        let name_time_ms = pic.name_time().unwrap_or_else(|| ms_i64(opened_ms));
        let chunks = pic.data_chunks;
        let tags = pic.tags();
        let bytes = match copy {
            Some(b) => b,
            None => pic.into_bytes(),
        };
        out.push(Action::Write(Finished {
            device: device.clone(),
            format: Format::V1,
            pid: None,
            bytes,
            name_time_ms,
            chunks,
            tags,
            opened_ms,
        }));
        self.recent.insert_v1(device.clone(), done, now);
        self.prune_recent(now);
    }

    /// A v1 `END`.
    pub(super) fn v1_end(
        &mut self,
        msg: &ImgMessage,
        tag: Tag,
        now: u64,
        out: &mut Vec<Action>,
    ) -> Disposition {
        let t = chunk_time(msg, now);
        let device = &msg.device;
        let Some(Slot { meta, state }) = self.index.detach(&mut self.open1, device) else {
            return self.v1_stray_end(msg, t, tag, now, out);
        };
        let pic = match state {
            V1State::Discard(mut d) => {
                d.tags.push(tag);
                self.index.close(&meta);
                let start = d.start;
                let q = d.quarantine(device.clone(), meta.opened_ms, " (up to its END)");
                out.push(Action::Quarantine(q));
                let done = V1Done {
                    start,
                    end: t,
                    prints: Box::default(),
                };
                self.recent.insert_v1(device.clone(), done, now);
                self.prune_recent(now);
                return Disposition::Quarantined;
            }
            V1State::Pic(pic) => pic,
        };
        if let Some(end) = pic.end_time() {
            if t <= end {
                // A duplicate END of the closed picture.
                let mut pic = pic;
                let attached = match pic.end.as_mut() {
                    Some(e) if e.tags.len() < MAX_ATTACHED_DUPLICATES => {
                        e.tags.push(tag);
                        true
                    }
                    _ => false,
                };
                self.v1_attach(device, meta, V1State::Pic(pic), now, false);
                return Disposition::Duplicate { attached };
            }
            // A later END with nothing between: the closed picture is over, this END is empty.
            self.index.close(&meta);
            let old = Slot {
                meta,
                state: V1State::Pic(pic),
            };
            out.push(Action::Quarantine(settle(device.clone(), old, now, None)));
            let detail = "END with no data chunk after the previous (invalid) picture".to_string();
            out.push(lone(
                msg,
                tag,
                Some(Format::V1),
                None,
                reason::EMPTY_END,
                detail,
                now,
            ));
            return Disposition::Quarantined;
        }
        let n = pic.prefix_len(t);
        if n == 0 {
            // Every open chunk is newer than this END: it closes nothing.
            self.v1_attach(device, meta, V1State::Pic(pic), now, false);
            return self.v1_stray_end(msg, t, tag, now, out);
        }
        let (mut closed, rest) = pic.split(n);
        closed.end = Some(End {
            time: t,
            tags: vec![tag],
        });
        match (closed.check(self.limits.decode_check), rest) {
            (Ok(copy), None) => {
                self.index.close(&meta);
                self.v1_finish(device, meta.opened_ms, closed, copy, now, out);
                Disposition::Completed
            }
            (Ok(copy), Some(rest)) => {
                self.v1_finish(device, meta.opened_ms, closed, copy, now, out);
                self.v1_attach(device, meta, V1State::Pic(rest), now, true);
                Disposition::Completed
            }
            (Err(why), None) => {
                // Stay open for late chunks until the timeout.
                closed.invalid = why;
                self.v1_attach(device, meta, V1State::Pic(closed), now, true);
                Disposition::Stored
            }
            (Err(why), Some(rest)) => {
                // Chunks newer than this END exist: the next picture has begun.
                let q = closed.quarantine(
                    device.clone(),
                    meta.opened_ms,
                    reason::INVALID_JPEG,
                    why,
                    None,
                );
                out.push(Action::Quarantine(q));
                self.v1_attach(device, meta, V1State::Pic(rest), now, true);
                Disposition::Quarantined
            }
        }
    }

    /// An `END` that closes nothing: a duplicate of the last settled picture's, or `empty_end`.
    fn v1_stray_end(
        &mut self,
        msg: &ImgMessage,
        t: i64,
        tag: Tag,
        now: u64,
        out: &mut Vec<Action>,
    ) -> Disposition {
        if self.recent.v1(&msg.device).is_some_and(|d| d.end == t) {
            return Disposition::Duplicate { attached: false };
        }
        let detail = "END with no data chunk before it".to_string();
        out.push(lone(
            msg,
            tag,
            Some(Format::V1),
            None,
            reason::EMPTY_END,
            detail,
            now,
        ));
        Disposition::Quarantined
    }

    /// A v1 chunk with bad hex or an odd length.
    pub(super) fn v1_bad(
        &mut self,
        msg: &ImgMessage,
        err: &WireError,
        tag: Tag,
        now: u64,
        out: &mut Vec<Action>,
    ) -> Disposition {
        let t = chunk_time(msg, now);
        let device = &msg.device;
        let why = err.reason();
        let detail = format!("{err}: {}", excerpt(&msg.value));
        match self.index.detach(&mut self.open1, device) {
            Some(Slot {
                meta,
                state: V1State::Discard(mut d),
            }) => {
                d.absorb(msg, t, tag);
                self.v1_attach(device, meta, V1State::Discard(d), now, true);
                Disposition::Stored
            }
            Some(Slot {
                meta,
                state: V1State::Pic(pic),
            }) if pic.end_time().is_none_or(|end| t <= end) => {
                let q = pic.quarantine(
                    device.clone(),
                    meta.opened_ms,
                    why,
                    detail.clone(),
                    Some(tag),
                );
                out.push(Action::Quarantine(q));
                let discard = V1Discard::new(why, detail, t);
                self.v1_attach(device, meta, V1State::Discard(discard), now, true);
                Disposition::Quarantined
            }
            other => {
                if let Some(slot) = other {
                    // A closed, invalid picture and a bad chunk of the next one.
                    self.index.close(&slot.meta);
                    out.push(Action::Quarantine(settle(device.clone(), slot, now, None)));
                }
                out.push(lone(
                    msg,
                    tag,
                    Some(Format::V1),
                    None,
                    why,
                    detail.clone(),
                    now,
                ));
                if !self.v1_recent_covers(device, t) {
                    let discard = V1Discard::new(why, detail, t);
                    self.v1_open(device, V1State::Discard(discard), now, out);
                }
                Disposition::Quarantined
            }
        }
    }
}

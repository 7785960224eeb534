//! v1: bare hex chunks ordered by time, cut into pictures by `END`s (docs/protocol.md section 2;
//! the rules are summarised in the parent module's docs).
//!
//! Per device ([`V1Dev`]): **segments** keyed by their upper [`Bound`] (an `END`'s time, or the
//! open tail), each either open (data and `END` tags not settled yet) or a settled **boundary**;
//! and the **data spans** of settled pictures (first to last chunk time, with fingerprints). A
//! data chunk timed `t` inside a settled span is a duplicate or a late chunk; otherwise it
//! belongs to the first segment whose bound is `>= t`. A segment whose `END` is known is checked
//! whenever its data changes and settles as soon as it is a well-formed JPEG.
//!
//! An `END` settles with the picture that validated under it, but stays a boundary: when it was
//! really the *next* picture's `END` (the picture's own `END` was still on its way), that
//! picture's chunks land above the settled span, in the same segment, and validate on their own;
//! the late own `END` then finds its span settled below it and is dropped as redundant.

use std::collections::{BTreeMap, HashMap};

use super::cold::{Cold, PicBuf};
use super::{
    chunk_time, decodes_as_jpeg, excerpt, lone, ms_i64, reason, Action, Ctx, Disposition, Finished,
    FormatState, Held, Key, Limits, Quarantined, Recent, Retraction, Slot, Tag,
    MAX_ATTACHED_DUPLICATES, MAX_DISCARD_TAGS,
};
use crate::jpeg::{entropy_check, EntropyVerdict, Walker};
use crate::message::{DeviceId, ImgMessage};
use crate::wire::{self, Format, WireError};

/// Most open v1 segments per device; one more quarantines the oldest (`evicted`). A device's
/// messages can be spread over every delivery in flight (`connections x credit`, 1 024 with 4
/// connections at the default credit): about 24 pictures of 43 messages (the seed firmware's
/// 17 KB VGA frame) out of order at once. 4 evicted pictures under that reordering (measured:
/// 0.1-1.2 % of pictures of one device at 40 000 msg/s over 4 connections); 32 covers it.
pub(super) const MAX_V1_SEGMENTS: usize = 32;

/// The upper end of a v1 segment's time range, the key of a device's segment map: `(t, 1)` for
/// the `END` at `t` (covers times `<= t` above the previous bound); `(t, 0)` for a picture whose
/// `END` is not known yet but lies below the settled picture starting at `t` (covers times
/// `< t`); [`Bound::TAIL`] for the device's newest picture, whose `END` is not known yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct Bound(i64, u8);

impl Bound {
    const TAIL: Bound = Bound(i64::MAX, 2);

    /// The `END` at `t`; also the probe: a message timed `t` belongs to the first segment whose
    /// bound is `>= Bound::end(t)`.
    fn end(t: i64) -> Bound {
        Bound(t, 1)
    }

    /// Open, below a settled span starting at `t`.
    fn below(t: i64) -> Bound {
        Bound(t, 0)
    }

    /// The `END` time, if the bound is an `END`.
    fn end_time(self) -> Option<i64> {
        (self.1 == 1).then_some(self.0)
    }
}

/// One data chunk (or, with `len == 0`, a duplicate of one that only carries its tag) in `buf`.
/// 40 bytes: 10 000 pictures of 43 chunks open at once hold 430 000 of these. Offsets fit `u32`
/// since a picture is at most `max_image_bytes` (at most 1 GiB).
#[derive(Debug, Clone, Copy)]
struct Chunk {
    /// Ordering time (see [`chunk_time`]).
    time: i64,
    tag: Tag,
    /// Its Alink id (`requestId`), when it is a number below `u64::MAX` (else `NO_RID`).
    rid: u64,
    /// Offset of its bytes in `V1Pic::buf`.
    start: u32,
    /// Its byte count; 0 for a duplicate.
    len: u32,
    /// CRC-32 of its bytes (its fingerprint, without reading cold bytes back).
    crc: u32,
    /// Whether `time` is an `items.img.time` (names the file).
    item_time: bool,
}

/// Bytes past a scan error's offset that the exact check may have looked at (a Huffman code
/// and its magnitude bits, with stuffing, fit in 8).
const SCAN_LOOKAHEAD: u64 = 8;

/// [`Chunk::rid`] of a chunk without a numeric Alink id.
const NO_RID: u64 = u64::MAX;

impl Chunk {
    fn rid(&self) -> Option<u64> {
        (self.rid != NO_RID).then_some(self.rid)
    }

    fn span(&self) -> (usize, usize) {
        (self.start as usize, self.len as usize)
    }
}

/// Appends to a vector that thousands of pictures hold at once: grows by a quarter (at least 4)
/// rather than doubling, which would leave a third of their memory unused on average.
fn insert_lean<T>(v: &mut Vec<T>, at: usize, item: T) {
    if v.len() == v.capacity() {
        v.reserve_exact((v.capacity() / 4).max(4));
    }
    v.insert(at, item);
}

/// The `END` that closes a segment, with the tags of its copies.
#[derive(Debug)]
struct End {
    time: i64,
    tags: Vec<Tag>,
    /// Its Alink id.
    rid: Option<u64>,
    /// It already settled, with a picture below it (see the module docs): no tags, and copies
    /// arriving now are settled duplicates.
    settled: bool,
}

/// An open v1 picture. `buf` holds exactly the data chunks' bytes (in arrival order; part of them
/// may be cold, see [`super::cold`]); `idx` is sorted by `(time, arrival)`.
#[derive(Debug)]
pub(super) struct V1Pic {
    buf: PicBuf,
    idx: Vec<Chunk>,
    /// Whether `buf` is already in `idx` order (the usual case: then no copy at the end).
    in_order: bool,
    data_chunks: usize,
    dups: usize,
    /// The `END` of its segment, when known (the segment is open only while its data does not
    /// validate, or it has none yet).
    end: Option<End>,
    /// Why the last validation failed.
    invalid: String,
    /// The last validation stopped at the Alink ids (see [`V1Pic::ids_hold`]), not at the bytes.
    held: bool,
    /// The last validation failed inside the chunk at this time: a chunk added at or after it
    /// leaves the bytes up to the failure as they were, so the verdict stands.
    fail_at: Option<i64>,
    /// It validated, but is held until this time for the redelivery grace (see
    /// [`super::Assembler::connection_lost`]).
    grace: Option<u64>,
    /// The last validation passed on the structural check alone: the exact check does not
    /// support this coding (the reason).
    structure_only: Option<&'static str>,
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
            buf: PicBuf::default(),
            idx: Vec::new(),
            in_order: true,
            data_chunks: 0,
            dups: 0,
            end: None,
            invalid: String::new(),
            held: false,
            fail_at: None,
            grace: None,
            structure_only: None,
        }
    }

    /// A compact copy of `chunks` (whose bytes are in `buf`, hot).
    fn rebuild(chunks: &[Chunk], buf: &PicBuf) -> Self {
        let mut pic = V1Pic::new();
        pic.buf
            .tail()
            .reserve(chunks.iter().map(|c| c.len as usize).sum());
        for c in chunks {
            let start = pic.buf.len();
            let (s, l) = c.span();
            if let Some(bytes) = buf.get(s, l) {
                pic.buf.tail().extend_from_slice(bytes);
            }
            let len = pic.buf.len() - start;
            if len > 0 {
                pic.data_chunks += 1;
            } else {
                pic.dups += 1;
            }
            pic.idx.push(Chunk {
                start: start as u32,
                len: len as u32,
                ..*c
            });
        }
        pic
    }

    fn data_len(&self) -> usize {
        self.buf.len()
    }

    /// The `too_large` detail, if a chunk of `add` bytes does not fit.
    fn too_large(&self, limits: &Limits, add: usize) -> Option<String> {
        let fits = self.data_len().saturating_add(add) <= limits.max_image_bytes
            && self.data_chunks < max_chunks(limits);
        (!fits).then(|| {
            format!(
                "{} byte(s) in {} chunk(s) plus a chunk of {add} exceed max_image_bytes {} (or the chunk limit {})",
                self.data_len(),
                self.data_chunks,
                limits.max_image_bytes,
                max_chunks(limits)
            )
        })
    }

    /// Memory its bytes hold now.
    pub(super) fn hot_bytes(&self) -> usize {
        self.buf.hot_bytes()
    }

    /// Moves its bytes to cold storage; returns the memory freed.
    pub(super) fn freeze(&mut self, cold: &mut Cold) -> usize {
        self.buf.freeze(cold)
    }

    /// Decodes `hex` and files it by `(time, arrival)`; an equal-time chunk with the same bytes
    /// makes it a duplicate.
    fn add(
        &mut self,
        cold: &mut Cold,
        m: &ImgMessage,
        time: i64,
        hex: &str,
        tag: Tag,
    ) -> Result<Added, WireError> {
        let (item_time, rid) = (m.item_time.is_some(), alink_id(m).unwrap_or(NO_RID));
        let start = self.buf.len();
        // Grow by a quarter rather than double: thousands of pictures can be open at once, and
        // doubling leaves a third of their memory unused on average.
        let need = hex.len() / 2;
        // A picture whose bytes went cold is being spilled chunk by chunk: no slack then.
        let least = if self.buf.is_hot() { 1024 } else { 0 };
        let tail = self.buf.tail();
        if tail.capacity() - tail.len() < need {
            let grow = need.max(tail.capacity() / 4).max(least);
            tail.reserve_exact(grow);
        }
        let hot_start = tail.len();
        wire::decode_hex_into(hex, tail)?;
        let crc = wire::crc32(&tail[hot_start..]);
        let len = self.buf.len() - start;
        let pos = self.idx.partition_point(|c| c.time <= time);
        let same_time = self.idx[..pos].partition_point(|c| c.time < time);
        // Candidates by length and CRC first; only a match reads cold bytes back.
        let maybe = self.idx[same_time..pos]
            .iter()
            .any(|c| c.len as usize == len && c.crc == crc);
        if maybe && !self.buf.is_hot() {
            self.buf.thaw(cold);
        }
        let new = self.buf.get(start, len);
        let dup = maybe
            && self.idx[same_time..pos].iter().any(|c| {
                c.len as usize == len && c.crc == crc && {
                    let (s, l) = c.span();
                    self.buf.get(s, l) == new
                }
            });
        if dup {
            self.buf.truncate(start);
            if self.dups >= MAX_ATTACHED_DUPLICATES {
                return Ok(Added::Duplicate { attached: false });
            }
            self.dups += 1;
            let chunk = Chunk {
                time,
                start: start as u32,
                len: 0,
                crc: 0,
                tag,
                item_time,
                rid,
            };
            insert_lean(&mut self.idx, pos, chunk);
            return Ok(Added::Duplicate { attached: true });
        }
        if pos != self.idx.len() {
            self.in_order = false;
        }
        let chunk = Chunk {
            time,
            start: start as u32,
            len: len as u32,
            crc,
            tag,
            item_time,
            rid,
        };
        insert_lean(&mut self.idx, pos, chunk);
        self.data_chunks += 1;
        Ok(Added::Stored)
    }

    /// Number of entries with time `<= t`.
    fn prefix_len(&self, t: i64) -> usize {
        self.idx.partition_point(|c| c.time <= t)
    }

    /// Splits into the first `n` entries (without an `END`) and the rest, which keeps the `END`.
    fn split(mut self, cold: &mut Cold, n: usize) -> (V1Pic, V1Pic) {
        self.buf.thaw(cold);
        let end = self.end.take();
        let (lower, mut upper) = if n == 0 {
            (V1Pic::new(), self)
        } else if n >= self.idx.len() {
            self.invalid.clear();
            self.held = false;
            self.fail_at = None;
            self.grace = None;
            (self, V1Pic::new())
        } else {
            let (head, tail) = self.idx.split_at(n);
            (
                V1Pic::rebuild(head, &self.buf),
                V1Pic::rebuild(tail, &self.buf),
            )
        };
        upper.end = end;
        (lower, upper)
    }

    /// The data slices in picture order, with their chunk's time.
    fn slices(&self) -> impl DoubleEndedIterator<Item = (i64, &[u8])> + '_ {
        self.idx.iter().filter(|c| c.len > 0).filter_map(|c| {
            let (s, l) = c.span();
            Some((c.time, self.buf.get(s, l)?))
        })
    }

    /// Whether the bytes in order start `FF D8` and end `FF D9`, without concatenating them.
    fn has_markers(&self) -> bool {
        if self.buf.len() < 4 {
            return false;
        }
        let mut head = [0u8; 2];
        let mut h = 0;
        'head: for (_, s) in self.slices() {
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
        'tail: for (_, s) in self.slices().rev() {
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
        for (_, s) in self.slices() {
            out.extend_from_slice(s);
        }
        out
    }

    fn into_bytes(mut self, cold: &mut Cold) -> Vec<u8> {
        self.buf.thaw(cold);
        if self.in_order {
            std::mem::take(&mut self.buf).into_vec()
        } else {
            self.concat()
        }
    }

    /// Validates the closed picture: `Ok(Some(bytes))` when a copy was already made for the
    /// decode check, `Ok(None)` when valid without one, `Err(why)` when invalid. `added`: the time
    /// of the one chunk added since the last (failed) validation, if that is all that changed.
    /// With `ids`, a picture that [`V1Pic::ids_hold`]s is not checked further (`held` is set).
    fn check(
        &mut self,
        cold: &mut Cold,
        decode: bool,
        ids: bool,
        added: Option<i64>,
    ) -> Result<Option<Vec<u8>>, String> {
        if let (Some(t), Some(at)) = (added, self.fail_at) {
            if t >= at {
                self.held = false;
                return Err(self.invalid.clone());
            }
        }
        self.fail_at = None;
        self.held = false;
        if ids {
            if let Some(why) = self.ids_hold() {
                self.held = true;
                return Err(why);
            }
        }
        self.buf.thaw(cold);
        if let Some(lost) = self.buf.lost() {
            return Err(format!(
                "{} byte(s) in {} chunk(s) could not be read back from cold storage: {lost}",
                self.buf.len(),
                self.data_chunks
            ));
        }
        let size = |what: &str| {
            format!(
                "{} byte(s) in {} chunk(s) {what}",
                self.buf.len(),
                self.data_chunks
            )
        };
        if !self.has_markers() {
            return Err(size("do not start FF D8 and end FF D9"));
        }
        let mut walk = Walker::new();
        let mut failed = None;
        for (time, s) in self.slices() {
            if let Err(e) = walk.feed(s) {
                failed = Some((time, e));
                break;
            }
        }
        let verdict = match failed {
            Some((time, e)) => Err((Some(time), e)),
            None => walk.finish().map_err(|e| (None, e)),
        };
        if let Err((at, e)) = verdict {
            let why = size(&format!("are not a well-formed JPEG: {e}"));
            self.fail_at = at;
            return Err(why);
        }
        // The exact check: the scan must decode to exactly the frame's MCUs.
        let copy = (!self.in_order).then(|| self.concat());
        let whole = match &copy {
            Some(c) => c.as_slice(),
            None => self.buf.get(0, self.buf.len()).unwrap_or_default(),
        };
        self.structure_only = None;
        match entropy_check(whole) {
            Ok(EntropyVerdict::Exact { .. }) => {}
            Ok(EntropyVerdict::Unsupported(why)) => self.structure_only = Some(why),
            Err(e) => {
                // The verdict rests on the bytes up to the error and a few after it (the bit
                // reader's look-ahead): a chunk filed after those cannot change it.
                let upto = e.offset.saturating_add(SCAN_LOOKAHEAD);
                self.fail_at = self.time_at(upto);
                return Err(size(&format!("fail the exact check of the scan data: {e}")));
            }
        }
        if !decode {
            return Ok(None);
        }
        let bytes = match copy {
            Some(c) => c,
            None => self.concat(),
        };
        if decodes_as_jpeg(&bytes) {
            Ok(Some(bytes))
        } else {
            Err(size("are a well-formed JPEG stream but do not decode"))
        }
    }

    /// The time of the data chunk holding byte `offset` of the picture (the last chunk's when
    /// `offset` is past the end).
    fn time_at(&self, offset: u64) -> Option<i64> {
        let mut end = 0u64;
        let mut last = None;
        for (time, s) in self.slices() {
            end += s.len() as u64;
            last = Some(time);
            if offset < end {
                break;
            }
        }
        last
    }

    /// Why the Alink ids say the picture is not whole yet, if they do. They have a say only when
    /// every data chunk and the `END` carry one and the data chunks' ids are distinct (the
    /// original firmware repeats one id: no say). Then they must be consecutive, in time order,
    /// ending just before the `END`'s: our firmware's `pid * 1000 + seq`, or any message counter.
    fn ids_hold(&self) -> Option<String> {
        let e = self.end.as_ref()?.rid?;
        let mut ids = Vec::with_capacity(self.data_chunks);
        for c in self.idx.iter().filter(|c| c.len > 0) {
            ids.push(c.rid()?);
        }
        let n = ids.len() as u64;
        let consecutive = e >= n && ids.iter().zip(e - n..).all(|(&id, want)| id == want);
        if consecutive {
            return None;
        }
        ids.sort_unstable();
        ids.dedup();
        if ids.len() as u64 != n {
            return None;
        }
        Some(format!(
            "the Alink ids of its {n} chunk(s) are not the {n} consecutive ones before the END's ({e}): chunks missing, or of another picture"
        ))
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

    /// First and last chunk time (`None` without chunks).
    fn span(&self) -> Option<(i64, i64)> {
        Some((self.idx.first()?.time, self.idx.last()?.time))
    }

    /// Neither data nor tags: nothing to keep open.
    fn is_void(&self) -> bool {
        self.idx.is_empty() && self.end.as_ref().is_none_or(|e| e.settled)
    }

    /// Sorted fingerprints of the data chunks.
    fn prints(&self) -> Box<[u64]> {
        let mut p: Vec<u64> = self
            .idx
            .iter()
            .filter(|c| c.len > 0)
            .map(|c| print(c.time, c.crc))
            .collect();
        p.sort_unstable();
        p.dedup();
        p.into_boxed_slice()
    }

    fn quarantine(
        self,
        cold: &mut Cold,
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
            bytes: self.into_bytes(cold),
            name_time_ms,
            missing: Vec::new(),
            tags,
        }
    }
}

/// Largest number of chunks of one v1 picture (bounds the index: 40 bytes per chunk).
fn max_chunks(limits: &Limits) -> usize {
    (limits.max_image_bytes / 64).max(1024)
}

/// A message's Alink id (`requestId`) as a number.
fn alink_id(m: &ImgMessage) -> Option<u64> {
    m.request_id.as_deref()?.parse().ok()
}

/// A chunk's fingerprint: CRC-32 of its bytes and the low 32 bits of its time.
fn print(time: i64, crc: u32) -> u64 {
    (u64::from(crc) << 32) | (time as u64 & 0xFFFF_FFFF)
}

/// A chunk absorbed by a discarding state: no bytes, only what its record needs.
#[derive(Debug, Clone, Copy)]
struct Absorbed {
    time: i64,
    tag: Tag,
    bytes: usize,
    item_time: Option<i64>,
}

/// The rest of a v1 picture that was quarantined by a bad or oversized chunk, discarded up to the
/// next `END`.
#[derive(Debug)]
pub(super) struct V1Discard {
    reason: &'static str,
    cause: String,
    /// Earliest time of the spoiled picture: an `END` before it closes an earlier picture.
    start: i64,
    absorbed: Vec<Absorbed>,
}

impl V1Discard {
    fn new(reason: &'static str, cause: String, start: i64) -> Self {
        V1Discard {
            reason,
            cause,
            start,
            absorbed: Vec::new(),
        }
    }

    fn absorb(&mut self, msg: &ImgMessage, t: i64, tag: Tag) {
        self.absorbed.push(Absorbed {
            time: t,
            tag,
            bytes: msg.value.len() / 2,
            item_time: msg.item_time,
        });
    }

    /// One record of the absorbed chunks timed `<= upto` (all of them with `None`) plus `extra`.
    fn flush(
        &mut self,
        device: DeviceId,
        opened_ms: u64,
        upto: Option<i64>,
        extra: Option<Tag>,
        note: &str,
    ) -> Quarantined {
        let (gone, kept): (Vec<Absorbed>, Vec<Absorbed>) = std::mem::take(&mut self.absorbed)
            .into_iter()
            .partition(|a| upto.is_none_or(|u| a.time <= u));
        self.absorbed = kept;
        let bytes: usize = gone.iter().map(|a| a.bytes).sum();
        let name_time = gone.iter().filter_map(|a| a.item_time).min();
        let mut tags: Vec<Tag> = gone.iter().map(|a| a.tag).collect();
        tags.extend(extra);
        Quarantined {
            device,
            format: Some(Format::V1),
            pid: None,
            reason: self.reason,
            detail: format!(
                "{} further chunk(s) ({bytes} byte(s)) of the picture discarded{note}; it was quarantined: {}",
                gone.len(),
                self.cause
            ),
            bytes: Vec::new(),
            name_time_ms: name_time.unwrap_or_else(|| ms_i64(opened_ms)),
            missing: Vec::new(),
            tags,
        }
    }
}

/// Open v1 state of a segment.
#[derive(Debug)]
pub(super) enum V1State {
    Pic(V1Pic),
    /// Only ever without an `END`: a segment whose `END` is known settles at once when spoiled.
    Discard(V1Discard),
}

impl Held for V1State {
    fn held(&self) -> usize {
        match self {
            V1State::Pic(p) => p.data_len(),
            V1State::Discard(_) => 0,
        }
    }

    fn hot(&self) -> usize {
        match self {
            V1State::Pic(p) => p.hot_bytes(),
            V1State::Discard(_) => 0,
        }
    }
}

/// The data span of a settled picture (written or quarantined), keyed by its last chunk's time.
#[derive(Debug)]
struct V1Done {
    /// Its first chunk's time.
    first: i64,
    /// Sorted fingerprints of its chunks (none for a discarded picture).
    prints: Box<[u64]>,
    /// A written picture's name time, size and CRC-32 (to retract it, see [`super::Retraction`]).
    written: Option<(i64, u64, u32)>,
}

/// A segment map entry. `Open` is boxed: settled boundaries (thousands, kept for the timeout)
/// would otherwise each take the size of an open picture's state.
#[derive(Debug)]
enum Entry {
    Open(Box<Slot<V1State>>),
    /// A settled `END`: still a boundary between pictures. `generation`: its `Recent` record.
    Boundary {
        generation: u64,
    },
}

/// The v1 state: every device's segments and settled spans, and the redelivery grace's
/// bookkeeping.
#[derive(Debug, Default)]
pub(super) struct V1 {
    /// Segments by device: open pictures (or discarding states) and settled ones.
    devices: HashMap<DeviceId, V1Dev>,
    /// Open segments (all devices).
    open: usize,
    /// The latest connection loss (or release of deliveries) reported, ms.
    last_loss: Option<u64>,
    /// Pictures that validated but are held for the redelivery grace: `(until, serial)` ->
    /// segment. An entry whose segment changed since is stale and skipped.
    holds: BTreeMap<(u64, u64), (DeviceId, Bound)>,
}

/// A v1 message being handled: the message, its ordering time (see [`chunk_time`]) and its tag.
#[derive(Debug, Clone, Copy)]
struct Arrival<'m> {
    msg: &'m ImgMessage,
    t: i64,
    tag: Tag,
}

impl FormatState for V1 {
    fn owns(&self, key: &Key) -> bool {
        matches!(key, Key::V1(..) | Key::V1Span(..))
    }

    fn open_count(&self) -> usize {
        self.open
    }

    fn settle(&mut self, cx: &mut Ctx<'_>, key: Key, evicted: Option<&'static str>) {
        if let Key::V1(device, bound) = key {
            if let Some(slot) = self.take(cx, &device, bound) {
                cx.index.close(&slot.meta);
                let note = evicted.map(|_| "evicted to respect max_open");
                self.settle_segment(cx, &device, bound, slot, note);
            }
        }
    }

    fn forget(&mut self, recent: &mut Recent, key: Key, generation: u64) {
        match key {
            Key::V1(device, bound) => self.forget_boundary(&device, bound, generation),
            Key::V1Span(device, last) => self.forget_span(recent, &device, last, generation),
            Key::V2(..) => {}
        }
    }
}

impl V1 {
    /// Moves the bytes of the open v1 segment `b` of `device` to cold storage; returns the memory
    /// freed.
    pub(super) fn freeze(&mut self, cold: &mut Cold, device: &DeviceId, b: Bound) -> usize {
        let Some(dev) = self.devices.get_mut(device) else {
            return 0;
        };
        match dev.segs.get_mut(&b) {
            Some(Entry::Open(slot)) => match &mut slot.state {
                V1State::Pic(pic) => pic.freeze(cold),
                V1State::Discard(_) => 0,
            },
            _ => 0,
        }
    }

    /// See [`super::Assembler::connection_lost`].
    pub(super) fn connection_lost(&mut self, at_ms: u64) {
        self.last_loss = Some(self.last_loss.map_or(at_ms, |l| l.max(at_ms)));
    }

    /// Until when a v1 picture opened at `opened_ms` must be held now, if it must: it had a
    /// chunk at or before the latest loss, and the grace after that loss is not over. (Only the
    /// latest loss matters: a picture opened before an earlier loss was opened before it too, and
    /// its grace ends later.)
    fn grace_until(&self, cx: &Ctx<'_>, opened_ms: u64) -> Option<u64> {
        let loss = self.last_loss.filter(|&l| opened_ms <= l)?;
        let until = loss.saturating_add(cx.limits.redelivery_grace_ms);
        (until > cx.now).then_some(until)
    }

    /// When the first held picture's redelivery grace is over, if any is held.
    pub(super) fn next_release(&self) -> Option<u64> {
        self.holds.first_key_value().map(|(&(until, _), _)| until)
    }
}

/// A device's v1 segments and settled spans.
#[derive(Debug, Default)]
pub(super) struct V1Dev {
    segs: BTreeMap<Bound, Entry>,
    /// Settled data spans by `(last chunk time, generation)`.
    done: BTreeMap<(i64, u64), V1Done>,
    /// Open entries among `segs`.
    open: usize,
}

impl V1Dev {
    /// The settled span holding time `t`: `(first, last, generation)`.
    fn done_at(&self, t: i64) -> Option<(i64, i64, u64)> {
        let (&(last, g), d) = self.done.range((t, 0)..).next()?;
        (d.first <= t).then_some((d.first, last, g))
    }

    /// Whether a settled span ends in `(after, upto]` (`after` `None`: unbounded).
    fn done_ends_in(&self, after: Option<i64>, upto: i64) -> bool {
        let from = after.map_or(i64::MIN, |a| a.saturating_add(1));
        from <= upto
            && self
                .done
                .range((from, 0)..=(upto, u64::MAX))
                .next()
                .is_some()
    }

    /// The last time below the range of the segment bound `b` (that of the bound below it).
    fn bound_below(&self, b: Bound) -> Option<i64> {
        let (&below, _) = self.segs.range(..b).next_back()?;
        // An `END` covers its own time; a segment below a settled span stops short of it.
        Some(below.end_time().unwrap_or(below.0.saturating_sub(1)))
    }

    fn is_empty(&self) -> bool {
        self.segs.is_empty() && self.done.is_empty()
    }
}

/// The segment of a message timed `t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seg {
    Open(Bound),
    Boundary(Bound),
    /// None yet: it would be this one (the tail, or below a settled span).
    New(Bound),
}

impl V1 {
    fn seg(&self, device: &DeviceId, t: i64) -> Seg {
        let Some(dev) = self.devices.get(device) else {
            return Seg::New(Bound::TAIL);
        };
        let found = dev.segs.range(Bound::end(t)..).next();
        let limit = found.map_or(Bound::TAIL, |(b, _)| *b);
        // A settled span above `t`, below that bound: `t`'s picture ends before it.
        if let Some((&(last, _), d)) = dev.done.range((t, 0)..).next() {
            if d.first > t && Bound::end(last) <= limit {
                return Seg::New(Bound::below(d.first));
            }
        }
        match found {
            None => Seg::New(Bound::TAIL),
            Some((&b, Entry::Open(_))) => Seg::Open(b),
            Some((&b, Entry::Boundary { .. })) => Seg::Boundary(b),
        }
    }

    fn done_at(&self, device: &DeviceId, t: i64) -> Option<(i64, i64, u64)> {
        self.devices.get(device)?.done_at(t)
    }

    /// Takes an open segment out of its map and the idleness order, to work on it.
    fn take(&mut self, cx: &mut Ctx<'_>, device: &DeviceId, b: Bound) -> Option<Slot<V1State>> {
        let dev = self.devices.get_mut(device)?;
        if !matches!(dev.segs.get(&b), Some(Entry::Open(_))) {
            return None;
        }
        let Some(Entry::Open(slot)) = dev.segs.remove(&b) else {
            return None;
        };
        dev.open -= 1;
        if dev.is_empty() {
            self.devices.remove(device);
        }
        self.open -= 1;
        cx.index.unlink(&slot.meta, &slot.state);
        Some(*slot)
    }

    /// Puts an open segment (back) under `b`; `touched`: it just received a new message. One
    /// left with neither data nor tags is not kept: a known `END` stays as a boundary.
    fn put(
        &mut self,
        cx: &mut Ctx<'_>,
        device: &DeviceId,
        b: Bound,
        mut slot: Slot<V1State>,
        touched: bool,
    ) {
        if let V1State::Pic(pic) = &slot.state {
            if pic.is_void() {
                cx.index.close(&slot.meta);
                self.boundary(cx, device, b);
                return;
            }
        }
        let key = Key::V1(device.clone(), b);
        cx.index
            .link(&mut slot.meta, key, &slot.state, cx.now, touched);
        let dev = self.devices.entry(device.clone()).or_default();
        dev.open += 1;
        self.open += 1;
        let old = dev.segs.insert(b, Entry::Open(Box::new(slot)));
        debug_assert!(
            matches!(old, None | Some(Entry::Boundary { .. })),
            "open v1 segment {b:?} of {device} replaced"
        );
    }

    /// Opens a new segment under `b` now.
    fn open_new(&mut self, cx: &mut Ctx<'_>, device: &DeviceId, b: Bound, state: V1State) {
        let slot = cx.index.slot(state, cx.now);
        self.put(cx, device, b, slot, true);
    }

    /// Records the settled `END` at `b` as a boundary (nothing for the tail).
    fn boundary(&mut self, cx: &mut Ctx<'_>, device: &DeviceId, b: Bound) {
        if b.end_time().is_none() {
            return;
        }
        let generation = cx.recent.next_generation();
        let dev = self.devices.entry(device.clone()).or_default();
        dev.segs.insert(b, Entry::Boundary { generation });
        cx.recent
            .ring
            .push_back((Key::V1(device.clone(), b), generation, cx.now));
        cx.prune_recent(self);
    }

    /// Remembers the data span `first..=last` of a settled picture.
    fn remember(
        &mut self,
        cx: &mut Ctx<'_>,
        device: &DeviceId,
        (first, last): (i64, i64),
        prints: Box<[u64]>,
    ) {
        self.remember_written(cx, device, (first, last), prints, None);
    }

    /// [`V1::remember`] for a written picture (`written`: its name time, size, CRC).
    fn remember_written(
        &mut self,
        cx: &mut Ctx<'_>,
        device: &DeviceId,
        (first, last): (i64, i64),
        prints: Box<[u64]>,
        written: Option<(i64, u64, u32)>,
    ) {
        let generation = cx.recent.next_generation();
        cx.recent.v1 += 1;
        cx.recent.prints += prints.len();
        let dev = self.devices.entry(device.clone()).or_default();
        let done = V1Done {
            first,
            prints,
            written,
        };
        dev.done.insert((last, generation), done);
        cx.recent
            .ring
            .push_back((Key::V1Span(device.clone(), last), generation, cx.now));
        cx.prune_recent(self);
    }

    /// Forgets a boundary whose `Recent` record is pruned (unless it was reopened since).
    fn forget_boundary(&mut self, device: &DeviceId, b: Bound, generation: u64) {
        let Some(dev) = self.devices.get_mut(device) else {
            return;
        };
        if matches!(dev.segs.get(&b), Some(Entry::Boundary { generation: g }) if *g == generation) {
            dev.segs.remove(&b);
            if dev.is_empty() {
                self.devices.remove(device);
            }
        }
    }

    /// Forgets a settled span whose `Recent` record is pruned.
    fn forget_span(&mut self, recent: &mut Recent, device: &DeviceId, last: i64, generation: u64) {
        let Some(dev) = self.devices.get_mut(device) else {
            return;
        };
        let Some(d) = dev.done.remove(&(last, generation)) else {
            return;
        };
        if dev.is_empty() {
            self.devices.remove(device);
        }
        recent.v1 -= 1;
        recent.prints = recent.prints.saturating_sub(d.prints.len());
    }

    /// Quarantines a segment taken out for good: at the timeout, on eviction (`evicted` says
    /// why), or at drain. What settles after its `END` is remembered.
    fn settle_segment(
        &mut self,
        cx: &mut Ctx<'_>,
        device: &DeviceId,
        b: Bound,
        slot: Slot<V1State>,
        evicted: Option<&str>,
    ) {
        let opened = slot.meta.opened_ms;
        match slot.state {
            V1State::Discard(mut d) => {
                if !d.absorbed.is_empty() {
                    let note = match evicted {
                        Some(_) => " (flushed early: bounds reached)",
                        None => " (no END before the timeout)",
                    };
                    let q = d.flush(device.clone(), opened, None, None, note);
                    cx.out.push(Action::Quarantine(q));
                }
            }
            V1State::Pic(mut pic) => {
                if pic.held || pic.grace.is_some() {
                    // Only the Alink ids or the redelivery grace held it back: settle it on its
                    // bytes alone.
                    match pic.check(cx.cold, cx.limits.decode_check, false, None) {
                        Ok(copy) => {
                            self.finish(cx, device, b, opened, pic, copy);
                            return;
                        }
                        Err(why) => pic.invalid = why,
                    }
                }
                let (natural, why) = match &pic.end {
                    None => (
                        reason::EXPIRED,
                        format!(
                            "no END within the timeout after {} chunk(s), {} byte(s)",
                            pic.data_chunks,
                            pic.data_len()
                        ),
                    ),
                    Some(e) if pic.data_chunks == 0 => (
                        reason::EMPTY_END,
                        format!("no data chunk arrived for the END at time {}", e.time),
                    ),
                    Some(_) => (reason::INVALID_JPEG, pic.invalid.clone()),
                };
                let (reason, detail) = match evicted {
                    Some(note) => (reason::EVICTED, format!("{note}; {why}")),
                    None => (natural, why),
                };
                let (span, prints) = (pic.span(), pic.prints());
                let q = pic.quarantine(cx.cold, device.clone(), opened, reason, detail, None);
                cx.out.push(Action::Quarantine(q));
                if b.end_time().is_some() {
                    if let Some(span) = span {
                        self.remember(cx, device, span, prints);
                    }
                    self.boundary(cx, device, b);
                }
            }
        }
    }

    /// Enforces the bounds on open segments: per device (its oldest segment goes first), then
    /// overall (`max_open`, the least recently touched first).
    fn bound(&mut self, cx: &mut Ctx<'_>, device: &DeviceId) {
        while let Some(dev) = self.devices.get(device) {
            if dev.open <= MAX_V1_SEGMENTS {
                break;
            }
            let oldest = dev.segs.iter().find_map(|(b, e)| match e {
                Entry::Open(_) => Some(*b),
                Entry::Boundary { .. } => None,
            });
            let Some((b, slot)) = oldest.and_then(|b| Some((b, self.take(cx, device, b)?))) else {
                break;
            };
            cx.index.close(&slot.meta);
            let note = format!("more than {MAX_V1_SEGMENTS} open v1 pictures on the device");
            self.settle_segment(cx, device, b, slot, Some(&note));
        }
        let max = cx.limits.max_open.max(1);
        while cx.open_count(self) > max && !cx.index.lru.is_empty() {
            cx.settle_first(self, Some(reason::EVICTED));
        }
    }

    /// Checks a segment taken out whose data changed: with a known `END` and valid data it is
    /// written and settles; otherwise it is put back. True when written. `added`: the time of
    /// the one chunk added since the last check, if that is all that changed.
    fn close(
        &mut self,
        cx: &mut Ctx<'_>,
        device: &DeviceId,
        b: Bound,
        slot: Slot<V1State>,
        added: Option<i64>,
        touched: bool,
    ) -> bool {
        let Slot { meta, mut state } = slot;
        let verdict = match &mut state {
            V1State::Pic(pic) if pic.data_chunks > 0 && pic.end.is_some() => {
                Some(pic.check(cx.cold, cx.limits.decode_check, true, added))
            }
            _ => None,
        };
        match (verdict, state) {
            (Some(Ok(copy)), V1State::Pic(mut pic)) => {
                if let Some(until) = self.grace_until(cx, meta.opened_ms) {
                    // Whole and valid, but deliveries lost in flight may still belong in it.
                    pic.grace = Some(until);
                    let serial = cx.index.next_serial();
                    self.holds.insert((until, serial), (device.clone(), b));
                    let state = V1State::Pic(pic);
                    self.put(cx, device, b, Slot { meta, state }, touched);
                    return false;
                }
                cx.index.close(&meta);
                self.finish(cx, device, b, meta.opened_ms, pic, copy);
                true
            }
            (verdict, mut state) => {
                if let V1State::Pic(pic) = &mut state {
                    pic.grace = None;
                }
                if let (Some(Err(why)), V1State::Pic(pic)) = (verdict, &mut state) {
                    pic.invalid = why;
                }
                self.put(cx, device, b, Slot { meta, state }, touched);
                false
            }
        }
    }

    /// Writes the held pictures whose redelivery grace is over now (each is checked again
    /// first; one held again by a newer loss gets a new entry).
    pub(super) fn release_holds(&mut self, cx: &mut Ctx<'_>) {
        while let Some((&(until, serial), _)) = self.holds.first_key_value() {
            if until > cx.now {
                break;
            }
            let Some((device, b)) = self.holds.remove(&(until, serial)) else {
                break;
            };
            let current = self
                .devices
                .get(&device)
                .and_then(|dev| dev.segs.get(&b))
                .is_some_and(|e| match e {
                    Entry::Open(slot) => {
                        matches!(&slot.state, V1State::Pic(p) if p.grace == Some(until))
                    }
                    Entry::Boundary { .. } => false,
                });
            if !current {
                continue;
            }
            if let Some(slot) = self.take(cx, &device, b) {
                self.close(cx, &device, b, slot, None, false);
            }
        }
    }

    /// Emits a validated picture and remembers it.
    fn finish(
        &mut self,
        cx: &mut Ctx<'_>,
        device: &DeviceId,
        b: Bound,
        opened_ms: u64,
        pic: V1Pic,
        copy: Option<Vec<u8>>,
    ) {
        let (span, prints) = (pic.span(), pic.prints());
        let name_time_ms = pic.name_time().unwrap_or_else(|| ms_i64(opened_ms));
        let chunks = pic.data_chunks;
        let tags = pic.tags();
        let structure_only = pic.structure_only;
        let bytes = match copy {
            Some(b) => b,
            None => pic.into_bytes(cx.cold),
        };
        let written = (name_time_ms, bytes.len() as u64, wire::crc32(&bytes));
        cx.out.push(Action::Write(Finished {
            device: device.clone(),
            format: Format::V1,
            pid: None,
            bytes,
            name_time_ms,
            chunks,
            tags,
            opened_ms,
            structure_only,
        }));
        if let Some(span) = span {
            self.remember_written(cx, device, span, prints, Some(written));
        }
        self.boundary(cx, device, b);
    }

    /// Quarantines an open picture `slot` spoiled by the chunk `a` (bad, or too large): a
    /// segment with a known `END` settles; one without becomes a discarding state up to its `END`.
    fn spoil(
        &mut self,
        cx: &mut Ctx<'_>,
        a: Arrival<'_>,
        b: Bound,
        slot: Slot<V1Pic>,
        why: &'static str,
        detail: String,
    ) -> Disposition {
        let (device, t) = (&a.msg.device, a.t);
        let Slot { meta, state: pic } = slot;
        let span = pic.span().map_or((t, t), |(f, l)| (f.min(t), l.max(t)));
        let prints = pic.prints();
        let q = pic.quarantine(
            cx.cold,
            device.clone(),
            meta.opened_ms,
            why,
            detail.clone(),
            Some(a.tag),
        );
        cx.out.push(Action::Quarantine(q));
        if b.end_time().is_some() {
            cx.index.close(&meta);
            self.remember(cx, device, span, prints);
            self.boundary(cx, device, b);
        } else {
            let state = V1State::Discard(V1Discard::new(why, detail, span.0));
            self.put(cx, device, b, Slot { meta, state }, true);
        }
        Disposition::Quarantined
    }

    /// A v1 data chunk.
    pub(super) fn data(
        &mut self,
        cx: &mut Ctx<'_>,
        msg: &ImgMessage,
        hex: &str,
        tag: Tag,
    ) -> Disposition {
        let t = chunk_time(msg, cx.now);
        let a = Arrival { msg, t, tag };
        let device = &msg.device;
        if let Some((first, last, generation)) = self.done_at(device, t) {
            return self.late(cx, a, hex, (first, last, generation));
        }
        let disp = match self.seg(device, t) {
            Seg::Open(b) => self.add(cx, a, hex, b),
            Seg::Boundary(b) => self.reopen(cx, a, hex, b),
            Seg::New(b) => self.fresh(cx, a, hex, b),
        };
        self.bound(cx, device);
        disp
    }

    /// A chunk absorbed (without its bytes) by the discarding state of segment `b` (`slot`),
    /// which is put back; a partial quarantine every `MAX_DISCARD_TAGS` tags.
    fn absorb(
        &mut self,
        cx: &mut Ctx<'_>,
        a: Arrival<'_>,
        b: Bound,
        slot: Slot<V1Discard>,
    ) -> Disposition {
        let device = &a.msg.device;
        let Slot { meta, state: mut d } = slot;
        d.absorb(a.msg, a.t, a.tag);
        if d.absorbed.len() >= MAX_DISCARD_TAGS {
            let q = d.flush(
                device.clone(),
                meta.opened_ms,
                None,
                None,
                " (partial: many chunks)",
            );
            cx.out.push(Action::Quarantine(q));
        }
        let state = V1State::Discard(d);
        self.put(cx, device, b, Slot { meta, state }, true);
        Disposition::Stored
    }

    /// A data chunk for the open segment `b`.
    fn add(&mut self, cx: &mut Ctx<'_>, a: Arrival<'_>, hex: &str, b: Bound) -> Disposition {
        let Arrival { msg, t, tag } = a;
        let device = &msg.device;
        let Some(Slot { meta, state }) = self.take(cx, device, b) else {
            cx.out.push(lone(
                msg,
                tag,
                Some(Format::V1),
                None,
                reason::EVICTED,
                "internal: open segment vanished".to_string(),
                cx.now,
            ));
            return Disposition::Quarantined;
        };
        let mut pic = match state {
            V1State::Discard(d) => {
                return self.absorb(cx, a, b, Slot { meta, state: d });
            }
            V1State::Pic(pic) => pic,
        };
        if let Some(detail) = pic.too_large(cx.limits, hex.len() / 2) {
            let why = reason::TOO_LARGE;
            return self.spoil(cx, a, b, Slot { meta, state: pic }, why, detail);
        }
        match pic.add(cx.cold, msg, t, hex, tag) {
            Err(e) => {
                let detail = format!("{e}: {}", excerpt(&msg.value));
                self.spoil(cx, a, b, Slot { meta, state: pic }, e.reason(), detail)
            }
            Ok(Added::Duplicate { attached }) => {
                let state = V1State::Pic(pic);
                self.put(cx, device, b, Slot { meta, state }, false);
                Disposition::Duplicate { attached }
            }
            Ok(Added::Stored) => {
                let slot = Slot {
                    meta,
                    state: V1State::Pic(pic),
                };
                match self.close(cx, device, b, slot, Some(t), true) {
                    true => Disposition::Completed,
                    false => Disposition::Stored,
                }
            }
        }
    }

    /// A data chunk under a settled `END` (above any settled span): a picture whose own `END`
    /// is still to come, or is this one (it settled with the picture below).
    fn reopen(&mut self, cx: &mut Ctx<'_>, a: Arrival<'_>, hex: &str, b: Bound) -> Disposition {
        let Arrival { msg, t, tag } = a;
        let mut pic = V1Pic::new();
        pic.end = Some(End {
            time: b.0,
            tags: Vec::new(),
            rid: None,
            settled: true,
        });
        let failed = match pic.too_large(cx.limits, hex.len() / 2) {
            Some(detail) => Some((reason::TOO_LARGE, detail)),
            None => pic
                .add(cx.cold, msg, t, hex, tag)
                .err()
                .map(|e| (e.reason(), format!("{e}: {}", excerpt(&msg.value)))),
        };
        if let Some((why, detail)) = failed {
            cx.out
                .push(lone(msg, tag, Some(Format::V1), None, why, detail, cx.now));
            return Disposition::Quarantined;
        }
        let slot = cx.index.slot(V1State::Pic(pic), cx.now);
        match self.close(cx, &msg.device, b, slot, None, true) {
            true => Disposition::Completed,
            false => Disposition::Stored,
        }
    }

    /// A data chunk that opens a segment with no `END` yet under `b`.
    fn fresh(&mut self, cx: &mut Ctx<'_>, a: Arrival<'_>, hex: &str, b: Bound) -> Disposition {
        let Arrival { msg, t, tag } = a;
        let device = &msg.device;
        let add = hex.len() / 2;
        if add > cx.limits.max_image_bytes {
            let detail = format!(
                "a single chunk of {add} byte(s) exceeds max_image_bytes {}",
                cx.limits.max_image_bytes
            );
            let discard = V1Discard::new(reason::TOO_LARGE, detail.clone(), t);
            cx.out.push(lone(
                msg,
                tag,
                Some(Format::V1),
                None,
                reason::TOO_LARGE,
                detail,
                cx.now,
            ));
            self.open_new(cx, device, b, V1State::Discard(discard));
            return Disposition::Quarantined;
        }
        let mut pic = V1Pic::new();
        if let Err(e) = pic.add(cx.cold, msg, t, hex, tag) {
            let detail = format!("{e}: {}", excerpt(&msg.value));
            cx.out.push(lone(
                msg,
                tag,
                Some(Format::V1),
                None,
                e.reason(),
                detail,
                cx.now,
            ));
            return Disposition::Quarantined;
        }
        self.open_new(cx, device, b, V1State::Pic(pic));
        Disposition::Stored
    }

    /// A data chunk inside the span `first..=last` of a settled picture.
    fn late(
        &mut self,
        cx: &mut Ctx<'_>,
        a: Arrival<'_>,
        hex: &str,
        (first, last, generation): (i64, i64, u64),
    ) -> Disposition {
        let Arrival { msg, t, tag } = a;
        let mut bytes = Vec::with_capacity(hex.len() / 2);
        let known = wire::decode_hex_into(hex, &mut bytes).is_ok()
            && self
                .devices
                .get(&msg.device)
                .and_then(|d| d.done.get(&(last, generation)))
                .is_some_and(|d| {
                    d.prints
                        .binary_search(&print(t, wire::crc32(&bytes)))
                        .is_ok()
                });
        if known {
            return Disposition::Duplicate { attached: false };
        }
        let detail = format!(
            "chunk at time {t} lies within the already settled picture {first}..={last} but is not one of its chunks"
        );
        // A written picture lacked it: the file is wrong, take it back (once).
        let written = self
            .devices
            .get_mut(&msg.device)
            .and_then(|d| d.done.get_mut(&(last, generation)))
            .and_then(|d| d.written.take());
        if let Some((name_time_ms, size, crc)) = written {
            cx.out.push(Action::Retract(Retraction {
                device: msg.device.clone(),
                name_time_ms,
                size,
                crc,
                detail: format!("written, then a {detail}"),
            }));
        }
        cx.out.push(lone(
            msg,
            tag,
            Some(Format::V1),
            None,
            reason::LATE_CHUNK,
            detail,
            cx.now,
        ));
        Disposition::Quarantined
    }

    /// A v1 `END`.
    pub(super) fn end(&mut self, cx: &mut Ctx<'_>, msg: &ImgMessage, tag: Tag) -> Disposition {
        let (e, rid) = (chunk_time(msg, cx.now), alink_id(msg));
        let device = &msg.device;
        let at = Bound::end(e);
        let seg = self.seg(device, e);
        if seg == Seg::Open(at) {
            return self.duplicate_end(cx, device, at, tag);
        }
        if seg == Seg::Boundary(at) {
            return Disposition::Duplicate { attached: false };
        }
        if let Some((first, last, _)) = self.done_at(device, e).filter(|d| e < d.1) {
            let detail =
                format!("END at time {e} lies within the already settled picture {first}..={last}");
            cx.out.push(lone(
                msg,
                tag,
                Some(Format::V1),
                None,
                reason::EMPTY_END,
                detail,
                cx.now,
            ));
            return Disposition::Quarantined;
        }
        let disp = match seg {
            Seg::Open(b) => self.split(cx, device, (e, rid), tag, b),
            Seg::Boundary(_) | Seg::New(_) => self.bare_end(cx, device, (e, rid), tag),
        };
        self.bound(cx, device);
        disp
    }

    /// A repeated `END` of an open segment: its tag is kept with it (up to a bound).
    fn duplicate_end(
        &mut self,
        cx: &mut Ctx<'_>,
        device: &DeviceId,
        b: Bound,
        tag: Tag,
    ) -> Disposition {
        let Some(mut slot) = self.take(cx, device, b) else {
            return Disposition::Duplicate { attached: false };
        };
        let attached = match &mut slot.state {
            V1State::Pic(V1Pic { end: Some(e), .. })
                if !e.settled && e.tags.len() < MAX_ATTACHED_DUPLICATES =>
            {
                e.tags.push(tag);
                true
            }
            _ => false,
        };
        self.put(cx, device, b, slot, false);
        Disposition::Duplicate { attached }
    }

    /// A new `END` at `e` with no open data at or before it in its segment. When a settled span
    /// ends in its range, it is that picture's own `END`, late (the picture settled under the
    /// next `END`): redundant, kept only as a boundary. Otherwise its chunks are still to come: it
    /// opens an empty segment that waits for them (until the timeout: `empty_end`).
    fn bare_end(
        &mut self,
        cx: &mut Ctx<'_>,
        device: &DeviceId,
        (e, rid): (i64, Option<u64>),
        tag: Tag,
    ) -> Disposition {
        let at = Bound::end(e);
        let settled_below = self
            .devices
            .get(device)
            .is_some_and(|dev| dev.done_ends_in(dev.bound_below(at), e));
        if settled_below {
            self.boundary(cx, device, at);
            return Disposition::Duplicate { attached: false };
        }
        let mut pic = V1Pic::new();
        pic.end = Some(End {
            time: e,
            tags: vec![tag],
            rid,
            settled: false,
        });
        self.open_new(cx, device, at, V1State::Pic(pic));
        Disposition::Stored
    }

    /// An `END` at `e` inside the open segment `b`: the chunks at or before `e` are its picture;
    /// the rest stay under `b`.
    fn split(
        &mut self,
        cx: &mut Ctx<'_>,
        device: &DeviceId,
        (e, rid): (i64, Option<u64>),
        tag: Tag,
        b: Bound,
    ) -> Disposition {
        let Some(Slot { meta, state }) = self.take(cx, device, b) else {
            return self.bare_end(cx, device, (e, rid), tag);
        };
        let pic = match state {
            V1State::Discard(mut d) => {
                if e < d.start && d.absorbed.iter().all(|a| a.time > e) {
                    // The END of an earlier picture.
                    let state = V1State::Discard(d);
                    self.put(cx, device, b, Slot { meta, state }, false);
                    return self.bare_end(cx, device, (e, rid), tag);
                }
                let lo = d.absorbed.iter().map(|a| a.time).fold(d.start, i64::min);
                // The END of the spoiled picture: with no chunk discarded since, its record says
                // all there is; the END alone makes no second one.
                let nothing_since = d.absorbed.iter().all(|a| a.time > e);
                let disposition = if nothing_since {
                    Disposition::AfterQuarantine
                } else {
                    let q = d.flush(
                        device.clone(),
                        meta.opened_ms,
                        Some(e),
                        Some(tag),
                        " (up to its END)",
                    );
                    cx.out.push(Action::Quarantine(q));
                    Disposition::Quarantined
                };
                match d.absorbed.iter().map(|a| a.time).min() {
                    Some(rest) => {
                        d.start = rest;
                        let state = V1State::Discard(d);
                        self.put(cx, device, b, Slot { meta, state }, true);
                    }
                    None => cx.index.close(&meta),
                }
                self.remember(cx, device, (lo.min(e), e), Box::default());
                self.boundary(cx, device, Bound::end(e));
                return disposition;
            }
            V1State::Pic(pic) => pic,
        };
        let n = pic.prefix_len(e);
        if n == 0 {
            let state = V1State::Pic(pic);
            self.put(cx, device, b, Slot { meta, state }, false);
            return self.bare_end(cx, device, (e, rid), tag);
        }
        let (mut lower, upper) = pic.split(cx.cold, n);
        lower.end = Some(End {
            time: e,
            tags: vec![tag],
            rid,
            settled: false,
        });
        // The lower part keeps the segment's bookkeeping when nothing stays above it.
        let upper_stays = !upper.is_void();
        let lower = if upper_stays {
            let mut slot = cx.index.slot(V1State::Pic(lower), cx.now);
            slot.meta.opened_ms = meta.opened_ms;
            slot
        } else {
            Slot {
                meta,
                state: V1State::Pic(lower),
            }
        };
        let done = self.close(cx, device, Bound::end(e), lower, None, true);
        let upper = Slot {
            meta,
            state: V1State::Pic(upper),
        };
        if upper_stays {
            // It lost its first chunks to the new END: maybe valid now.
            self.close(cx, device, b, upper, None, false);
        } else if b.end_time().is_some() {
            self.boundary(cx, device, b);
        }
        match done {
            true => Disposition::Completed,
            false => Disposition::Stored,
        }
    }

    /// A v1 chunk with bad hex or an odd length.
    pub(super) fn bad(
        &mut self,
        cx: &mut Ctx<'_>,
        msg: &ImgMessage,
        err: &WireError,
        tag: Tag,
    ) -> Disposition {
        let t = chunk_time(msg, cx.now);
        let a = Arrival { msg, t, tag };
        let device = &msg.device;
        let why = err.reason();
        let detail = format!("{err}: {}", excerpt(&msg.value));
        let seg = match self.done_at(device, t) {
            // A late stray inside a settled picture: alone.
            Some(_) => Seg::Boundary(Bound::end(t)),
            None => self.seg(device, t),
        };
        let slot = match seg {
            Seg::Open(b) => self.take(cx, device, b).map(|s| (b, s)),
            _ => None,
        };
        let disp = match slot {
            Some((b, Slot { meta, state })) => match state {
                V1State::Discard(d) => self.absorb(cx, a, b, Slot { meta, state: d }),
                V1State::Pic(pic) => self.spoil(cx, a, b, Slot { meta, state: pic }, why, detail),
            },
            None => {
                cx.out.push(lone(
                    msg,
                    tag,
                    Some(Format::V1),
                    None,
                    why,
                    detail.clone(),
                    cx.now,
                ));
                if let Seg::New(b) = seg {
                    // The rest of its picture is useless: discard it up to its END.
                    let discard = V1Discard::new(why, detail, t);
                    self.open_new(cx, device, b, V1State::Discard(discard));
                }
                Disposition::Quarantined
            }
        };
        self.bound(cx, device);
        disp
    }
}

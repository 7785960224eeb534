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

use std::collections::BTreeMap;

use super::cold::{Cold, PicBuf};
use super::{
    chunk_time, decodes_as_jpeg, excerpt, lone, ms_i64, reason, Action, Assembler, Disposition,
    Finished, Held, Key, Meta, Quarantined, Retraction, Slot, Tag, MAX_ATTACHED_DUPLICATES,
    MAX_DISCARD_TAGS,
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
    /// [`Assembler::connection_lost`]).
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

impl Assembler {
    /// Moves the bytes of the open v1 segment `b` of `device` to cold storage; returns the memory
    /// freed.
    pub(super) fn v1_freeze(&mut self, device: &DeviceId, b: Bound) -> usize {
        let Some(dev) = self.open1.get_mut(device) else {
            return 0;
        };
        match dev.segs.get_mut(&b) {
            Some(Entry::Open(slot)) => match &mut slot.state {
                V1State::Pic(pic) => pic.freeze(&mut self.cold),
                V1State::Discard(_) => 0,
            },
            _ => 0,
        }
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

impl Assembler {
    /// Largest number of chunks of one v1 picture (bounds the index: 40 bytes per chunk).
    fn v1_max_chunks(&self) -> usize {
        (self.limits.max_image_bytes / 64).max(1024)
    }

    fn v1_seg(&self, device: &DeviceId, t: i64) -> Seg {
        let Some(dev) = self.open1.get(device) else {
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

    fn v1_done_at(&self, device: &DeviceId, t: i64) -> Option<(i64, i64, u64)> {
        self.open1.get(device)?.done_at(t)
    }

    /// Takes an open segment out of its map and the idleness order, to work on it.
    pub(super) fn v1_take(&mut self, device: &DeviceId, b: Bound) -> Option<Slot<V1State>> {
        let dev = self.open1.get_mut(device)?;
        if !matches!(dev.segs.get(&b), Some(Entry::Open(_))) {
            return None;
        }
        let Some(Entry::Open(slot)) = dev.segs.remove(&b) else {
            return None;
        };
        dev.open -= 1;
        if dev.is_empty() {
            self.open1.remove(device);
        }
        self.open1_count -= 1;
        self.index.unlink(&slot.meta, &slot.state);
        Some(*slot)
    }

    /// Puts an open segment (back) under `b`; `touched`: it just received a new message. One
    /// left with neither data nor tags is not kept: a known `END` stays as a boundary.
    fn v1_put(
        &mut self,
        device: &DeviceId,
        b: Bound,
        mut slot: Slot<V1State>,
        now: u64,
        touched: bool,
    ) {
        if let V1State::Pic(pic) = &slot.state {
            if pic.is_void() {
                self.index.close(&slot.meta);
                self.v1_boundary(device, b, now);
                return;
            }
        }
        let key = Key::V1(device.clone(), b);
        self.index
            .link(&mut slot.meta, key, &slot.state, now, touched);
        let dev = self.open1.entry(device.clone()).or_default();
        dev.open += 1;
        self.open1_count += 1;
        let old = dev.segs.insert(b, Entry::Open(Box::new(slot)));
        debug_assert!(
            matches!(old, None | Some(Entry::Boundary { .. })),
            "open v1 segment {b:?} of {device} replaced"
        );
    }

    /// Opens a new segment under `b` at `now`.
    fn v1_new(&mut self, device: &DeviceId, b: Bound, state: V1State, now: u64) {
        let slot = self.index.slot(state, now);
        self.v1_put(device, b, slot, now, true);
    }

    /// Records the settled `END` at `b` as a boundary (nothing for the tail).
    fn v1_boundary(&mut self, device: &DeviceId, b: Bound, now: u64) {
        if b.end_time().is_none() {
            return;
        }
        let generation = self.recent.next_generation();
        let dev = self.open1.entry(device.clone()).or_default();
        dev.segs.insert(b, Entry::Boundary { generation });
        self.recent
            .ring
            .push_back((Key::V1(device.clone(), b), generation, now));
        self.prune_recent(now);
    }

    /// Remembers the data span `first..=last` of a settled picture.
    fn v1_remember(
        &mut self,
        device: &DeviceId,
        (first, last): (i64, i64),
        prints: Box<[u64]>,
        now: u64,
    ) {
        self.v1_remember_written(device, (first, last), prints, None, now);
    }

    /// [`Assembler::v1_remember`] for a written picture (`written`: its name time, size, CRC).
    fn v1_remember_written(
        &mut self,
        device: &DeviceId,
        (first, last): (i64, i64),
        prints: Box<[u64]>,
        written: Option<(i64, u64, u32)>,
        now: u64,
    ) {
        let generation = self.recent.next_generation();
        self.recent.v1 += 1;
        self.recent.prints += prints.len();
        let dev = self.open1.entry(device.clone()).or_default();
        let done = V1Done {
            first,
            prints,
            written,
        };
        dev.done.insert((last, generation), done);
        self.recent
            .ring
            .push_back((Key::V1Span(device.clone(), last), generation, now));
        self.prune_recent(now);
    }

    /// Forgets a boundary whose `Recent` record is pruned (unless it was reopened since).
    pub(super) fn v1_forget_boundary(&mut self, device: &DeviceId, b: Bound, generation: u64) {
        let Some(dev) = self.open1.get_mut(device) else {
            return;
        };
        if matches!(dev.segs.get(&b), Some(Entry::Boundary { generation: g }) if *g == generation) {
            dev.segs.remove(&b);
            if dev.is_empty() {
                self.open1.remove(device);
            }
        }
    }

    /// Forgets a settled span whose `Recent` record is pruned.
    pub(super) fn v1_forget_span(&mut self, device: &DeviceId, last: i64, generation: u64) {
        let Some(dev) = self.open1.get_mut(device) else {
            return;
        };
        let Some(d) = dev.done.remove(&(last, generation)) else {
            return;
        };
        if dev.is_empty() {
            self.open1.remove(device);
        }
        self.recent.v1 -= 1;
        self.recent.prints = self.recent.prints.saturating_sub(d.prints.len());
    }

    /// Quarantines a segment taken out for good: at the timeout, on eviction (`evicted` says
    /// why), or at drain. What settles after its `END` is remembered.
    pub(super) fn v1_settle(
        &mut self,
        device: &DeviceId,
        b: Bound,
        slot: Slot<V1State>,
        evicted: Option<&str>,
        now: u64,
        out: &mut Vec<Action>,
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
                    out.push(Action::Quarantine(q));
                }
            }
            V1State::Pic(mut pic) => {
                if pic.held || pic.grace.is_some() {
                    // Only the Alink ids or the redelivery grace held it back: settle it on its
                    // bytes alone.
                    match pic.check(&mut self.cold, self.limits.decode_check, false, None) {
                        Ok(copy) => {
                            self.v1_finish(device, b, opened, pic, copy, now, out);
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
                let q =
                    pic.quarantine(&mut self.cold, device.clone(), opened, reason, detail, None);
                out.push(Action::Quarantine(q));
                if b.end_time().is_some() {
                    if let Some(span) = span {
                        self.v1_remember(device, span, prints, now);
                    }
                    self.v1_boundary(device, b, now);
                }
            }
        }
    }

    /// Enforces the bounds on open segments: per device (its oldest segment goes first), then
    /// overall (`max_open`, the least recently touched first).
    fn v1_bound(&mut self, device: &DeviceId, now: u64, out: &mut Vec<Action>) {
        while let Some(dev) = self.open1.get(device) {
            if dev.open <= MAX_V1_SEGMENTS {
                break;
            }
            let oldest = dev.segs.iter().find_map(|(b, e)| match e {
                Entry::Open(_) => Some(*b),
                Entry::Boundary { .. } => None,
            });
            let Some((b, slot)) = oldest.and_then(|b| Some((b, self.v1_take(device, b)?))) else {
                break;
            };
            self.index.close(&slot.meta);
            let note = format!("more than {MAX_V1_SEGMENTS} open v1 pictures on the device");
            self.v1_settle(device, b, slot, Some(&note), now, out);
        }
        let max = self.limits.max_open.max(1);
        while self.open_count() > max && !self.index.lru.is_empty() {
            self.settle_first(now, Some(reason::EVICTED), out);
        }
    }

    /// Checks a segment taken out whose data changed: with a known `END` and valid data it is
    /// written and settles; otherwise it is put back. True when written. `added`: the time of
    /// the one chunk added since the last check, if that is all that changed.
    #[allow(clippy::too_many_arguments)]
    fn v1_close(
        &mut self,
        device: &DeviceId,
        b: Bound,
        slot: Slot<V1State>,
        added: Option<i64>,
        now: u64,
        touched: bool,
        out: &mut Vec<Action>,
    ) -> bool {
        let Slot { meta, mut state } = slot;
        let verdict = match &mut state {
            V1State::Pic(pic) if pic.data_chunks > 0 && pic.end.is_some() => {
                Some(pic.check(&mut self.cold, self.limits.decode_check, true, added))
            }
            _ => None,
        };
        match (verdict, state) {
            (Some(Ok(copy)), V1State::Pic(mut pic)) => {
                if let Some(until) = self.grace_until(meta.opened_ms, now) {
                    // Whole and valid, but deliveries lost in flight may still belong in it.
                    pic.grace = Some(until);
                    let serial = self.index.next_serial();
                    self.holds.insert((until, serial), (device.clone(), b));
                    let state = V1State::Pic(pic);
                    self.v1_put(device, b, Slot { meta, state }, now, touched);
                    return false;
                }
                self.index.close(&meta);
                self.v1_finish(device, b, meta.opened_ms, pic, copy, now, out);
                true
            }
            (verdict, mut state) => {
                if let V1State::Pic(pic) = &mut state {
                    pic.grace = None;
                }
                if let (Some(Err(why)), V1State::Pic(pic)) = (verdict, &mut state) {
                    pic.invalid = why;
                }
                self.v1_put(device, b, Slot { meta, state }, now, touched);
                false
            }
        }
    }

    /// Writes the held pictures whose redelivery grace is over at `now` (each is checked again
    /// first; one held again by a newer loss gets a new entry).
    pub(super) fn v1_release_holds(&mut self, now: u64, out: &mut Vec<Action>) {
        while let Some((&(until, serial), _)) = self.holds.first_key_value() {
            if until > now {
                break;
            }
            let Some((device, b)) = self.holds.remove(&(until, serial)) else {
                break;
            };
            let current = self
                .open1
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
            if let Some(slot) = self.v1_take(&device, b) {
                self.v1_close(&device, b, slot, None, now, false, out);
            }
        }
    }

    /// Emits a validated picture and remembers it.
    #[allow(clippy::too_many_arguments)]
    fn v1_finish(
        &mut self,
        device: &DeviceId,
        b: Bound,
        opened_ms: u64,
        pic: V1Pic,
        copy: Option<Vec<u8>>,
        now: u64,
        out: &mut Vec<Action>,
    ) {
        let (span, prints) = (pic.span(), pic.prints());
        let name_time_ms = pic.name_time().unwrap_or_else(|| ms_i64(opened_ms));
        let chunks = pic.data_chunks;
        let tags = pic.tags();
        let structure_only = pic.structure_only;
        let bytes = match copy {
            Some(b) => b,
            None => pic.into_bytes(&mut self.cold),
        };
        let written = (name_time_ms, bytes.len() as u64, wire::crc32(&bytes));
        out.push(Action::Write(Finished {
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
            self.v1_remember_written(device, span, prints, Some(written), now);
        }
        self.v1_boundary(device, b, now);
    }

    /// Quarantines an open picture spoiled by the chunk `tag` at `t` (bad, or too large): a
    /// segment with a known `END` settles; one without becomes a discarding state up to its `END`.
    #[allow(clippy::too_many_arguments)]
    fn v1_spoil(
        &mut self,
        device: &DeviceId,
        b: Bound,
        meta: Meta,
        pic: V1Pic,
        why: &'static str,
        detail: String,
        t: i64,
        tag: Tag,
        now: u64,
        out: &mut Vec<Action>,
    ) -> Disposition {
        let span = pic.span().map_or((t, t), |(f, l)| (f.min(t), l.max(t)));
        let prints = pic.prints();
        let q = pic.quarantine(
            &mut self.cold,
            device.clone(),
            meta.opened_ms,
            why,
            detail.clone(),
            Some(tag),
        );
        out.push(Action::Quarantine(q));
        if b.end_time().is_some() {
            self.index.close(&meta);
            self.v1_remember(device, span, prints, now);
            self.v1_boundary(device, b, now);
        } else {
            let state = V1State::Discard(V1Discard::new(why, detail, span.0));
            self.v1_put(device, b, Slot { meta, state }, now, true);
        }
        Disposition::Quarantined
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
        if let Some((first, last, generation)) = self.v1_done_at(device, t) {
            return self.v1_late(msg, hex, t, tag, (first, last, generation), now, out);
        }
        let disp = match self.v1_seg(device, t) {
            Seg::Open(b) => self.v1_add(msg, hex, t, tag, b, now, out),
            Seg::Boundary(b) => self.v1_reopen(msg, hex, t, tag, b, now, out),
            Seg::New(b) => self.v1_fresh(msg, hex, t, tag, b, now, out),
        };
        self.v1_bound(device, now, out);
        disp
    }

    /// The `too_large` detail, if a chunk of `add` bytes does not fit `pic`.
    fn v1_too_large(&self, pic: &V1Pic, add: usize) -> Option<String> {
        let fits = pic.data_len().saturating_add(add) <= self.limits.max_image_bytes
            && pic.data_chunks < self.v1_max_chunks();
        (!fits).then(|| {
            format!(
                "{} byte(s) in {} chunk(s) plus a chunk of {add} exceed max_image_bytes {} (or the chunk limit {})",
                pic.data_len(),
                pic.data_chunks,
                self.limits.max_image_bytes,
                self.v1_max_chunks()
            )
        })
    }

    /// A chunk absorbed (without its bytes) by the discarding state `d` of segment `b`, which is
    /// put back; a partial quarantine every `MAX_DISCARD_TAGS` tags.
    #[allow(clippy::too_many_arguments)]
    fn v1_absorb(
        &mut self,
        msg: &ImgMessage,
        t: i64,
        tag: Tag,
        b: Bound,
        meta: Meta,
        mut d: V1Discard,
        now: u64,
        out: &mut Vec<Action>,
    ) -> Disposition {
        let device = &msg.device;
        d.absorb(msg, t, tag);
        if d.absorbed.len() >= MAX_DISCARD_TAGS {
            let q = d.flush(
                device.clone(),
                meta.opened_ms,
                None,
                None,
                " (partial: many chunks)",
            );
            out.push(Action::Quarantine(q));
        }
        let state = V1State::Discard(d);
        self.v1_put(device, b, Slot { meta, state }, now, true);
        Disposition::Stored
    }

    /// A data chunk for the open segment `b`.
    #[allow(clippy::too_many_arguments)]
    fn v1_add(
        &mut self,
        msg: &ImgMessage,
        hex: &str,
        t: i64,
        tag: Tag,
        b: Bound,
        now: u64,
        out: &mut Vec<Action>,
    ) -> Disposition {
        let device = &msg.device;
        let Some(Slot { meta, state }) = self.v1_take(device, b) else {
            out.push(lone(
                msg,
                tag,
                Some(Format::V1),
                None,
                reason::EVICTED,
                "internal: open segment vanished".to_string(),
                now,
            ));
            return Disposition::Quarantined;
        };
        let mut pic = match state {
            V1State::Discard(d) => {
                return self.v1_absorb(msg, t, tag, b, meta, d, now, out);
            }
            V1State::Pic(pic) => pic,
        };
        if let Some(detail) = self.v1_too_large(&pic, hex.len() / 2) {
            let why = reason::TOO_LARGE;
            return self.v1_spoil(device, b, meta, pic, why, detail, t, tag, now, out);
        }
        match pic.add(&mut self.cold, msg, t, hex, tag) {
            Err(e) => {
                let detail = format!("{e}: {}", excerpt(&msg.value));
                self.v1_spoil(device, b, meta, pic, e.reason(), detail, t, tag, now, out)
            }
            Ok(Added::Duplicate { attached }) => {
                let state = V1State::Pic(pic);
                self.v1_put(device, b, Slot { meta, state }, now, false);
                Disposition::Duplicate { attached }
            }
            Ok(Added::Stored) => {
                let slot = Slot {
                    meta,
                    state: V1State::Pic(pic),
                };
                match self.v1_close(device, b, slot, Some(t), now, true, out) {
                    true => Disposition::Completed,
                    false => Disposition::Stored,
                }
            }
        }
    }

    /// A data chunk under a settled `END` (above any settled span): a picture whose own `END`
    /// is still to come, or is this one (it settled with the picture below).
    #[allow(clippy::too_many_arguments)]
    fn v1_reopen(
        &mut self,
        msg: &ImgMessage,
        hex: &str,
        t: i64,
        tag: Tag,
        b: Bound,
        now: u64,
        out: &mut Vec<Action>,
    ) -> Disposition {
        let mut pic = V1Pic::new();
        pic.end = Some(End {
            time: b.0,
            tags: Vec::new(),
            rid: None,
            settled: true,
        });
        let failed = match self.v1_too_large(&pic, hex.len() / 2) {
            Some(detail) => Some((reason::TOO_LARGE, detail)),
            None => pic
                .add(&mut self.cold, msg, t, hex, tag)
                .err()
                .map(|e| (e.reason(), format!("{e}: {}", excerpt(&msg.value)))),
        };
        if let Some((why, detail)) = failed {
            out.push(lone(msg, tag, Some(Format::V1), None, why, detail, now));
            return Disposition::Quarantined;
        }
        let slot = self.index.slot(V1State::Pic(pic), now);
        match self.v1_close(&msg.device, b, slot, None, now, true, out) {
            true => Disposition::Completed,
            false => Disposition::Stored,
        }
    }

    /// A data chunk that opens a segment with no `END` yet under `b`.
    #[allow(clippy::too_many_arguments)]
    fn v1_fresh(
        &mut self,
        msg: &ImgMessage,
        hex: &str,
        t: i64,
        tag: Tag,
        b: Bound,
        now: u64,
        out: &mut Vec<Action>,
    ) -> Disposition {
        let device = &msg.device;
        let add = hex.len() / 2;
        if add > self.limits.max_image_bytes {
            let detail = format!(
                "a single chunk of {add} byte(s) exceeds max_image_bytes {}",
                self.limits.max_image_bytes
            );
            let discard = V1Discard::new(reason::TOO_LARGE, detail.clone(), t);
            out.push(lone(
                msg,
                tag,
                Some(Format::V1),
                None,
                reason::TOO_LARGE,
                detail,
                now,
            ));
            self.v1_new(device, b, V1State::Discard(discard), now);
            return Disposition::Quarantined;
        }
        let mut pic = V1Pic::new();
        if let Err(e) = pic.add(&mut self.cold, msg, t, hex, tag) {
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
        self.v1_new(device, b, V1State::Pic(pic), now);
        Disposition::Stored
    }

    /// A data chunk inside the span `first..=last` of a settled picture.
    #[allow(clippy::too_many_arguments)]
    fn v1_late(
        &mut self,
        msg: &ImgMessage,
        hex: &str,
        t: i64,
        tag: Tag,
        (first, last, generation): (i64, i64, u64),
        now: u64,
        out: &mut Vec<Action>,
    ) -> Disposition {
        let mut bytes = Vec::with_capacity(hex.len() / 2);
        let known = wire::decode_hex_into(hex, &mut bytes).is_ok()
            && self
                .open1
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
            .open1
            .get_mut(&msg.device)
            .and_then(|d| d.done.get_mut(&(last, generation)))
            .and_then(|d| d.written.take());
        if let Some((name_time_ms, size, crc)) = written {
            out.push(Action::Retract(Retraction {
                device: msg.device.clone(),
                name_time_ms,
                size,
                crc,
                detail: format!("written, then a {detail}"),
            }));
        }
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

    /// A v1 `END`.
    pub(super) fn v1_end(
        &mut self,
        msg: &ImgMessage,
        tag: Tag,
        now: u64,
        out: &mut Vec<Action>,
    ) -> Disposition {
        let (e, rid) = (chunk_time(msg, now), alink_id(msg));
        let device = &msg.device;
        let at = Bound::end(e);
        let seg = self.v1_seg(device, e);
        if seg == Seg::Open(at) {
            return self.v1_duplicate_end(device, at, tag, now);
        }
        if seg == Seg::Boundary(at) {
            return Disposition::Duplicate { attached: false };
        }
        if let Some((first, last, _)) = self.v1_done_at(device, e).filter(|d| e < d.1) {
            let detail =
                format!("END at time {e} lies within the already settled picture {first}..={last}");
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
        let disp = match seg {
            Seg::Open(b) => self.v1_split(device, (e, rid), tag, b, now, out),
            Seg::Boundary(_) | Seg::New(_) => self.v1_bare_end(device, (e, rid), tag, now),
        };
        self.v1_bound(device, now, out);
        disp
    }

    /// A repeated `END` of an open segment: its tag is kept with it (up to a bound).
    fn v1_duplicate_end(&mut self, device: &DeviceId, b: Bound, tag: Tag, now: u64) -> Disposition {
        let Some(mut slot) = self.v1_take(device, b) else {
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
        self.v1_put(device, b, slot, now, false);
        Disposition::Duplicate { attached }
    }

    /// A new `END` at `e` with no open data at or before it in its segment. When a settled span
    /// ends in its range, it is that picture's own `END`, late (the picture settled under the
    /// next `END`): redundant, kept only as a boundary. Otherwise its chunks are still to come: it
    /// opens an empty segment that waits for them (until the timeout: `empty_end`).
    fn v1_bare_end(
        &mut self,
        device: &DeviceId,
        (e, rid): (i64, Option<u64>),
        tag: Tag,
        now: u64,
    ) -> Disposition {
        let at = Bound::end(e);
        let settled_below = self
            .open1
            .get(device)
            .is_some_and(|dev| dev.done_ends_in(dev.bound_below(at), e));
        if settled_below {
            self.v1_boundary(device, at, now);
            return Disposition::Duplicate { attached: false };
        }
        let mut pic = V1Pic::new();
        pic.end = Some(End {
            time: e,
            tags: vec![tag],
            rid,
            settled: false,
        });
        self.v1_new(device, at, V1State::Pic(pic), now);
        Disposition::Stored
    }

    /// An `END` at `e` inside the open segment `b`: the chunks at or before `e` are its picture;
    /// the rest stay under `b`.
    fn v1_split(
        &mut self,
        device: &DeviceId,
        (e, rid): (i64, Option<u64>),
        tag: Tag,
        b: Bound,
        now: u64,
        out: &mut Vec<Action>,
    ) -> Disposition {
        let Some(Slot { meta, state }) = self.v1_take(device, b) else {
            return self.v1_bare_end(device, (e, rid), tag, now);
        };
        let pic = match state {
            V1State::Discard(mut d) => {
                if e < d.start && d.absorbed.iter().all(|a| a.time > e) {
                    // The END of an earlier picture.
                    let state = V1State::Discard(d);
                    self.v1_put(device, b, Slot { meta, state }, now, false);
                    return self.v1_bare_end(device, (e, rid), tag, now);
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
                    out.push(Action::Quarantine(q));
                    Disposition::Quarantined
                };
                match d.absorbed.iter().map(|a| a.time).min() {
                    Some(rest) => {
                        d.start = rest;
                        let state = V1State::Discard(d);
                        self.v1_put(device, b, Slot { meta, state }, now, true);
                    }
                    None => self.index.close(&meta),
                }
                self.v1_remember(device, (lo.min(e), e), Box::default(), now);
                self.v1_boundary(device, Bound::end(e), now);
                return disposition;
            }
            V1State::Pic(pic) => pic,
        };
        let n = pic.prefix_len(e);
        if n == 0 {
            let state = V1State::Pic(pic);
            self.v1_put(device, b, Slot { meta, state }, now, false);
            return self.v1_bare_end(device, (e, rid), tag, now);
        }
        let (mut lower, upper) = pic.split(&mut self.cold, n);
        lower.end = Some(End {
            time: e,
            tags: vec![tag],
            rid,
            settled: false,
        });
        // The lower part keeps the segment's bookkeeping when nothing stays above it.
        let upper_stays = !upper.is_void();
        let lower = if upper_stays {
            let mut slot = self.index.slot(V1State::Pic(lower), now);
            slot.meta.opened_ms = meta.opened_ms;
            slot
        } else {
            Slot {
                meta,
                state: V1State::Pic(lower),
            }
        };
        let done = self.v1_close(device, Bound::end(e), lower, None, now, true, out);
        let upper = Slot {
            meta,
            state: V1State::Pic(upper),
        };
        if upper_stays {
            // It lost its first chunks to the new END: maybe valid now.
            self.v1_close(device, b, upper, None, now, false, out);
        } else if b.end_time().is_some() {
            self.v1_boundary(device, b, now);
        }
        match done {
            true => Disposition::Completed,
            false => Disposition::Stored,
        }
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
        let seg = match self.v1_done_at(device, t) {
            // A late stray inside a settled picture: alone.
            Some(_) => Seg::Boundary(Bound::end(t)),
            None => self.v1_seg(device, t),
        };
        let slot = match seg {
            Seg::Open(b) => self.v1_take(device, b).map(|s| (b, s)),
            _ => None,
        };
        let disp = match slot {
            Some((b, Slot { meta, state })) => match state {
                V1State::Discard(d) => self.v1_absorb(msg, t, tag, b, meta, d, now, out),
                V1State::Pic(pic) => {
                    self.v1_spoil(device, b, meta, pic, why, detail, t, tag, now, out)
                }
            },
            None => {
                out.push(lone(
                    msg,
                    tag,
                    Some(Format::V1),
                    None,
                    why,
                    detail.clone(),
                    now,
                ));
                if let Seg::New(b) = seg {
                    // The rest of its picture is useless: discard it up to its END.
                    let discard = V1Discard::new(why, detail, t);
                    self.v1_new(device, b, V1State::Discard(discard), now);
                }
                Disposition::Quarantined
            }
        };
        self.v1_bound(device, now, out);
        disp
    }
}

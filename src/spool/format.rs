//! The on-disk encoding of segments and records (pure: no I/O). The layout is documented in the
//! parent module; the constants here are the single source of truth for it.

use super::Record;
use crate::message::{DeviceId, ImgMessage};
use std::collections::HashSet;
use std::sync::Arc;

/// First 8 bytes of every segment file.
pub(super) const SEGMENT_MAGIC: [u8; 8] = *b"RXSPOOL\0";
/// Segment format version written by this code.
pub(super) const VERSION: u32 = 1;
/// Bytes in a segment header.
pub(super) const SEGMENT_HEADER_LEN: usize = 32;
/// First two bytes of every record frame. Neither byte can occur in UTF-8 text, so the marker
/// never shows up inside the strings that make up most of a record; recovery uses it to find the
/// next frame after a damaged one.
pub(super) const FRAME_SYNC: [u8; 2] = [0xF9, 0xFE];
/// Bytes in a frame header.
pub(super) const FRAME_HEADER_LEN: usize = 16;
/// Largest record body accepted (an AMQP message from Aliyun is at most 256 KiB).
pub const MAX_BODY_LEN: usize = 16 << 20;

/// Record type byte: [`Record::Img`].
pub(super) const TYPE_IMG: u8 = 1;
/// Record type byte: [`Record::Seen`].
pub(super) const TYPE_SEEN: u8 = 2;
/// Record type byte: [`Record::Done`].
pub(super) const TYPE_DONE: u8 = 3;
/// Record type byte: a release (tombstone) record.
pub(super) const TYPE_RELEASE: u8 = 4;

const IMG_ITEM_TIME: u8 = 1;
const IMG_GMT_CREATE: u8 = 2;
const IMG_REQUEST_ID: u8 = 4;

/// A run of released record indices `first..first + count` in `segment`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ReleaseRun {
    pub segment: u32,
    pub first: u32,
    pub count: u32,
}

/// The header of segment `no`.
pub(super) fn segment_header(no: u32) -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    h[0..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&(SEGMENT_HEADER_LEN as u32).to_le_bytes());
    h[16..24].copy_from_slice(&u64::from(no).to_le_bytes());
    let crc = crc32fast::hash(&h[0..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

/// What a segment's first bytes say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum HeaderCheck {
    /// A valid v1 header for the expected segment.
    Ok,
    /// Fewer bytes than a header.
    Short,
    /// Bad magic or checksum, or a header naming another segment: records are still scanned.
    Corrupt(String),
    /// A valid header of a version this code does not read: the segment is left alone.
    Unsupported(u32),
}

/// Checks the header of segment `expect_no`.
pub(super) fn check_segment_header(data: &[u8], expect_no: u64) -> HeaderCheck {
    let Some(h) = data.get(..SEGMENT_HEADER_LEN) else {
        return HeaderCheck::Short;
    };
    if h[0..8] != SEGMENT_MAGIC {
        return HeaderCheck::Corrupt("bad magic".into());
    }
    let stored = le_u32(&h[28..32]);
    if crc32fast::hash(&h[0..28]) != stored {
        return HeaderCheck::Corrupt("header checksum mismatch".into());
    }
    let version = le_u32(&h[8..12]);
    if version != VERSION || le_u32(&h[12..16]) as usize != SEGMENT_HEADER_LEN {
        return HeaderCheck::Unsupported(version);
    }
    let no = le_u64(&h[16..24]);
    if no != expect_no {
        return HeaderCheck::Corrupt(format!("header names segment {no}"));
    }
    HeaderCheck::Ok
}

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// Encoded length of a string field.
fn str_len(s: &str) -> usize {
    4 + s.len()
}

/// Body length of `rec`, computed before encoding so oversized records are refused up front.
pub(super) fn body_len(rec: &Record) -> usize {
    match rec {
        Record::Img { msg, .. } => {
            8 + 1
                + msg.item_time.map_or(0, |_| 8)
                + msg.gmt_create.map_or(0, |_| 8)
                + str_len(&msg.device.product_key)
                + str_len(&msg.device.device_name)
                + str_len(&msg.message_id)
                + msg.request_id.as_deref().map_or(0, str_len)
                + str_len(&msg.value)
        }
        Record::Seen { message_id, .. } => 8 + str_len(message_id),
        Record::Done { device, .. } => {
            8 + 4 + 4 + 4 + str_len(&device.product_key) + str_len(&device.device_name)
        }
    }
}

fn type_of(rec: &Record) -> u8 {
    match rec {
        Record::Img { .. } => TYPE_IMG,
        Record::Seen { .. } => TYPE_SEEN,
        Record::Done { .. } => TYPE_DONE,
    }
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    // Callers checked the whole body against MAX_BODY_LEN, so the length fits in u32.
    buf.extend_from_slice(&(s.len() as u32).to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
}

/// Appends one framed record to `buf`. `body_len` is [`body_len`]`(rec)` and must be at most
/// [`MAX_BODY_LEN`].
pub(super) fn encode_record(buf: &mut Vec<u8>, index: u32, rec: &Record, body_len: usize) {
    let start = begin_frame(buf, type_of(rec), index, body_len);
    match rec {
        Record::Img { received_ms, msg } => {
            buf.extend_from_slice(&received_ms.to_le_bytes());
            let mut flags = 0u8;
            if msg.item_time.is_some() {
                flags |= IMG_ITEM_TIME;
            }
            if msg.gmt_create.is_some() {
                flags |= IMG_GMT_CREATE;
            }
            if msg.request_id.is_some() {
                flags |= IMG_REQUEST_ID;
            }
            buf.push(flags);
            if let Some(t) = msg.item_time {
                buf.extend_from_slice(&t.to_le_bytes());
            }
            if let Some(t) = msg.gmt_create {
                buf.extend_from_slice(&t.to_le_bytes());
            }
            put_str(buf, &msg.device.product_key);
            put_str(buf, &msg.device.device_name);
            put_str(buf, &msg.message_id);
            if let Some(r) = &msg.request_id {
                put_str(buf, r);
            }
            put_str(buf, &msg.value);
        }
        Record::Seen {
            received_ms,
            message_id,
        } => {
            buf.extend_from_slice(&received_ms.to_le_bytes());
            put_str(buf, message_id);
        }
        Record::Done {
            device,
            pid,
            size,
            crc,
            at_ms,
        } => {
            buf.extend_from_slice(&at_ms.to_le_bytes());
            buf.extend_from_slice(&pid.to_le_bytes());
            buf.extend_from_slice(&size.to_le_bytes());
            buf.extend_from_slice(&crc.to_le_bytes());
            put_str(buf, &device.product_key);
            put_str(buf, &device.device_name);
        }
    }
    end_frame(buf, start);
}

/// Appends one framed release record listing `runs` (at most `MAX_BODY_LEN / 12` of them).
pub(super) fn encode_release(buf: &mut Vec<u8>, index: u32, runs: &[ReleaseRun]) {
    let body_len = 4 + 12 * runs.len();
    let start = begin_frame(buf, TYPE_RELEASE, index, body_len);
    buf.extend_from_slice(&(runs.len() as u32).to_le_bytes());
    for r in runs {
        buf.extend_from_slice(&r.segment.to_le_bytes());
        buf.extend_from_slice(&r.first.to_le_bytes());
        buf.extend_from_slice(&r.count.to_le_bytes());
    }
    end_frame(buf, start);
}

fn begin_frame(buf: &mut Vec<u8>, kind: u8, index: u32, body_len: usize) -> usize {
    buf.reserve(FRAME_HEADER_LEN + body_len);
    let start = buf.len();
    buf.extend_from_slice(&FRAME_SYNC);
    buf.push(kind);
    buf.push(0); // flags, reserved
    buf.extend_from_slice(&(body_len as u32).to_le_bytes());
    buf.extend_from_slice(&index.to_le_bytes());
    buf.extend_from_slice(&[0u8; 4]); // CRC, filled by end_frame
    start
}

fn end_frame(buf: &mut [u8], start: usize) {
    let mut h = crc32fast::Hasher::new();
    h.update(&buf[start + 2..start + 12]);
    h.update(&buf[start + FRAME_HEADER_LEN..]);
    let crc = h.finalize();
    buf[start + 12..start + 16].copy_from_slice(&crc.to_le_bytes());
}

/// A frame whose header and checksum are valid.
#[derive(Debug, Clone, Copy)]
pub(super) struct Frame<'a> {
    pub kind: u8,
    pub flags: u8,
    pub index: u32,
    pub body: &'a [u8],
}

impl Frame<'_> {
    /// Bytes the frame occupies.
    pub fn total_len(&self) -> usize {
        FRAME_HEADER_LEN + self.body.len()
    }
}

/// Why no valid frame starts at an offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum FrameError {
    /// The frame (header or body) runs past the end of the data.
    Incomplete { need: usize, have: usize },
    /// No sync marker.
    BadSync,
    /// A body length above [`MAX_BODY_LEN`].
    BadLength(u32),
    /// Checksum mismatch.
    BadCrc,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Incomplete { need, have } => {
                write!(f, "incomplete record ({have} of {need} bytes present)")
            }
            FrameError::BadSync => f.write_str("no record marker"),
            FrameError::BadLength(n) => write!(f, "implausible record length {n}"),
            FrameError::BadCrc => f.write_str("record checksum mismatch"),
        }
    }
}

/// Parses the frame at `data[pos..]`, checking its marker, length and checksum (not its body).
pub(super) fn parse_frame(data: &[u8], pos: usize) -> Result<Frame<'_>, FrameError> {
    let rest = data.get(pos..).unwrap_or_default();
    if rest.len() >= 2 && rest[..2] != FRAME_SYNC {
        return Err(FrameError::BadSync);
    }
    if rest.len() < FRAME_HEADER_LEN {
        return Err(FrameError::Incomplete {
            need: FRAME_HEADER_LEN,
            have: rest.len(),
        });
    }
    let len = le_u32(&rest[4..8]);
    if len as usize > MAX_BODY_LEN {
        return Err(FrameError::BadLength(len));
    }
    let total = FRAME_HEADER_LEN + len as usize;
    if rest.len() < total {
        return Err(FrameError::Incomplete {
            need: total,
            have: rest.len(),
        });
    }
    let mut h = crc32fast::Hasher::new();
    h.update(&rest[2..12]);
    h.update(&rest[FRAME_HEADER_LEN..total]);
    if h.finalize() != le_u32(&rest[12..16]) {
        return Err(FrameError::BadCrc);
    }
    Ok(Frame {
        kind: rest[2],
        flags: rest[3],
        index: le_u32(&rest[8..12]),
        body: &rest[FRAME_HEADER_LEN..total],
    })
}

/// A decoded frame body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Decoded {
    Record(Record),
    Release(Vec<ReleaseRun>),
}

/// Shares the `Arc<str>`s of device ids across recovered records.
#[derive(Debug, Default)]
pub(super) struct Interner(HashSet<Arc<str>>);

impl Interner {
    fn get(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.0.get(s) {
            return a.clone();
        }
        let a: Arc<str> = s.into();
        self.0.insert(a.clone());
        a
    }

    fn device(&mut self, pk: &str, dn: &str) -> DeviceId {
        DeviceId {
            product_key: self.get(pk),
            device_name: self.get(dn),
        }
    }
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.b.len());
        let Some(end) = end else {
            return Err(format!("body ends inside a field at byte {}", self.pos));
        };
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(le_u32(self.take(4)?))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(le_u64(self.take(8)?))
    }
    fn i64(&mut self) -> Result<i64, String> {
        Ok(self.u64()? as i64)
    }
    fn str(&mut self) -> Result<&'a str, String> {
        let n = self.u32()? as usize;
        let at = self.pos;
        std::str::from_utf8(self.take(n)?).map_err(|_| format!("string at byte {at} is not UTF-8"))
    }
    fn finish(self) -> Result<(), String> {
        if self.pos == self.b.len() {
            Ok(())
        } else {
            Err(format!("{} trailing bytes", self.b.len() - self.pos))
        }
    }
}

/// Decodes a checksummed frame. An error means the frame is well delimited but not something
/// this version writes (unknown type, reserved flags set, malformed fields).
pub(super) fn decode(frame: &Frame<'_>, interner: &mut Interner) -> Result<Decoded, String> {
    if frame.flags != 0 {
        return Err(format!("reserved flags {:#04x} set", frame.flags));
    }
    let mut r = Reader {
        b: frame.body,
        pos: 0,
    };
    let out = match frame.kind {
        TYPE_IMG => {
            let received_ms = r.u64()?;
            let flags = r.u8()?;
            if flags & !(IMG_ITEM_TIME | IMG_GMT_CREATE | IMG_REQUEST_ID) != 0 {
                return Err(format!("unknown image flags {flags:#04x}"));
            }
            let item_time = if flags & IMG_ITEM_TIME != 0 {
                Some(r.i64()?)
            } else {
                None
            };
            let gmt_create = if flags & IMG_GMT_CREATE != 0 {
                Some(r.i64()?)
            } else {
                None
            };
            let (pk, dn) = (r.str()?, r.str()?);
            let device = interner.device(pk, dn);
            let message_id = r.str()?.to_owned();
            let request_id = if flags & IMG_REQUEST_ID != 0 {
                Some(r.str()?.to_owned())
            } else {
                None
            };
            let value = r.str()?.to_owned();
            Decoded::Record(Record::Img {
                received_ms,
                msg: ImgMessage {
                    device,
                    message_id,
                    value,
                    item_time,
                    gmt_create,
                    request_id,
                },
            })
        }
        TYPE_SEEN => Decoded::Record(Record::Seen {
            received_ms: r.u64()?,
            message_id: r.str()?.to_owned(),
        }),
        TYPE_DONE => {
            let at_ms = r.u64()?;
            let (pid, size, crc) = (r.u32()?, r.u32()?, r.u32()?);
            let (pk, dn) = (r.str()?, r.str()?);
            Decoded::Record(Record::Done {
                device: interner.device(pk, dn),
                pid,
                size,
                crc,
                at_ms,
            })
        }
        TYPE_RELEASE => {
            let n = r.u32()? as usize;
            if n > frame.body.len() / 12 {
                return Err(format!("release record claims {n} runs"));
            }
            let mut runs = Vec::with_capacity(n);
            for _ in 0..n {
                runs.push(ReleaseRun {
                    segment: r.u32()?,
                    first: r.u32()?,
                    count: r.u32()?,
                });
            }
            Decoded::Release(runs)
        }
        other => return Err(format!("unknown record type {other}")),
    };
    r.finish()?;
    Ok(out)
}

/// One decoded frame found by [`scan`].
#[derive(Debug)]
pub(super) struct Item {
    pub offset: u64,
    pub index: u32,
    pub decoded: Decoded,
}

/// Damage found by [`scan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Damage {
    pub offset: u64,
    pub len: u64,
    /// Nothing valid follows: the segment should be cut at `offset`.
    pub tail: bool,
    /// Checksummed but not decodable (as opposed to damaged bytes).
    pub undecodable: bool,
    pub what: String,
}

/// The result of scanning one segment's records.
#[derive(Debug, Default)]
pub(super) struct Scan {
    pub items: Vec<Item>,
    pub damage: Vec<Damage>,
    /// Length of the segment up to the end of its last valid frame (or undecodable but
    /// checksummed frame), i.e. where a torn tail is cut off.
    pub valid_len: u64,
}

/// The first offset at or after `from` where a checksummed frame starts.
fn resync(data: &[u8], from: usize) -> Option<usize> {
    let mut pos = from;
    while pos + FRAME_HEADER_LEN <= data.len() {
        let rest = &data[pos..data.len() - (FRAME_HEADER_LEN - 2)];
        let hit = rest.windows(2).position(|w| w == FRAME_SYNC)?;
        let at = pos + hit;
        if parse_frame(data, at).is_ok() {
            return Some(at);
        }
        pos = at + 1;
    }
    None
}

/// Scans the frames of a segment from `start` (just after the header). Never fails: damaged
/// stretches are skipped up to the next checksummed frame and reported; damage with nothing valid
/// after it is reported as the tail.
pub(super) fn scan(data: &[u8], start: usize, interner: &mut Interner) -> Scan {
    let mut out = Scan {
        valid_len: start.min(data.len()) as u64,
        ..Scan::default()
    };
    let mut pos = start;
    while pos < data.len() {
        match parse_frame(data, pos) {
            Ok(frame) => {
                let next = pos + frame.total_len();
                match decode(&frame, interner) {
                    Ok(decoded) => out.items.push(Item {
                        offset: pos as u64,
                        index: frame.index,
                        decoded,
                    }),
                    Err(what) => out.damage.push(Damage {
                        offset: pos as u64,
                        len: frame.total_len() as u64,
                        tail: false,
                        undecodable: true,
                        what: format!("{what} (type {}, index {})", frame.kind, frame.index),
                    }),
                }
                pos = next;
                out.valid_len = next as u64;
            }
            Err(err) => {
                let next = resync(data, pos + 1);
                let end = next.unwrap_or(data.len());
                out.damage.push(Damage {
                    offset: pos as u64,
                    len: (end - pos) as u64,
                    tail: next.is_none(),
                    undecodable: false,
                    what: err.to_string(),
                });
                pos = end;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(value: &str) -> Record {
        Record::Img {
            received_ms: 1_700_000_000_000,
            msg: ImgMessage {
                device: DeviceId::new("a1PK", "cam-é"),
                message_id: "1234567890123456789".into(),
                value: value.into(),
                item_time: Some(-5),
                gmt_create: None,
                request_id: Some("7001".into()),
            },
        }
    }

    fn samples() -> Vec<Record> {
        vec![
            img("FFD8FFE0"),
            img(""),
            Record::Img {
                received_ms: 0,
                msg: ImgMessage {
                    device: DeviceId::new("p", "d"),
                    message_id: String::new(),
                    value: "V2;1;2;3".into(),
                    item_time: None,
                    gmt_create: Some(i64::MAX),
                    request_id: None,
                },
            },
            Record::Seen {
                received_ms: u64::MAX,
                message_id: "m".into(),
            },
            Record::Done {
                device: DeviceId::new("a1PK", "cam-01"),
                pid: 7,
                size: 12345,
                crc: 0xDEAD_BEEF,
                at_ms: 42,
            },
        ]
    }

    fn frames(buf: &[u8]) -> Vec<(u32, Decoded)> {
        let mut i = Interner::default();
        let s = scan(buf, 0, &mut i);
        assert!(s.damage.is_empty(), "{:?}", s.damage);
        assert_eq!(s.valid_len as usize, buf.len());
        s.items
            .into_iter()
            .map(|it| (it.index, it.decoded))
            .collect()
    }

    #[test]
    fn records_roundtrip() {
        let mut buf = Vec::new();
        for (i, r) in samples().iter().enumerate() {
            let before = buf.len();
            encode_record(&mut buf, i as u32 + 10, r, body_len(r));
            assert_eq!(buf.len() - before, FRAME_HEADER_LEN + body_len(r));
        }
        let runs = vec![
            ReleaseRun {
                segment: 3,
                first: 0,
                count: 5,
            },
            ReleaseRun {
                segment: 4,
                first: 9,
                count: 1,
            },
        ];
        encode_release(&mut buf, 99, &runs);
        let got = frames(&buf);
        let mut want: Vec<(u32, Decoded)> = samples()
            .into_iter()
            .enumerate()
            .map(|(i, r)| (i as u32 + 10, Decoded::Record(r)))
            .collect();
        want.push((99, Decoded::Release(runs)));
        assert_eq!(got, want);
    }

    #[test]
    fn header_roundtrip_and_checks() {
        let h = segment_header(7);
        assert_eq!(check_segment_header(&h, 7), HeaderCheck::Ok);
        assert!(matches!(
            check_segment_header(&h, 8),
            HeaderCheck::Corrupt(_)
        ));
        assert_eq!(check_segment_header(&h[..31], 7), HeaderCheck::Short);
        let mut bad = h;
        bad[20] ^= 1;
        assert!(matches!(
            check_segment_header(&bad, 7),
            HeaderCheck::Corrupt(_)
        ));
        let mut v2 = h;
        v2[8] = 2;
        let crc = crc32fast::hash(&v2[0..28]);
        v2[28..32].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(check_segment_header(&v2, 7), HeaderCheck::Unsupported(2));
    }

    #[test]
    fn checksummed_but_undecodable_frames_are_reported_not_cut() {
        // A well-formed frame of an unknown type, then a valid record.
        let mut buf = Vec::new();
        let start = begin_frame(&mut buf, 77, 0, 3);
        buf.extend_from_slice(b"abc");
        end_frame(&mut buf, start);
        let r = img("AA");
        encode_record(&mut buf, 1, &r, body_len(&r));
        let mut i = Interner::default();
        let s = scan(&buf, 0, &mut i);
        assert_eq!(s.items.len(), 1);
        assert_eq!(s.damage.len(), 1);
        assert!(s.damage[0].undecodable && !s.damage[0].tail);
        assert_eq!(s.valid_len as usize, buf.len());

        // Trailing bytes inside a checksummed body.
        let mut buf = Vec::new();
        let start = begin_frame(&mut buf, TYPE_SEEN, 0, 8 + 4 + 1 + 1);
        buf.extend_from_slice(&0u64.to_le_bytes());
        buf.extend_from_slice(&1u32.to_le_bytes());
        buf.extend_from_slice(b"xy");
        end_frame(&mut buf, start);
        let s = scan(&buf, 0, &mut i);
        assert!(s.items.is_empty());
        assert!(s.damage[0].what.contains("trailing"), "{:?}", s.damage);
    }

    #[test]
    fn invalid_utf8_and_oversized_counts_are_rejected() {
        let mut buf = Vec::new();
        let start = begin_frame(&mut buf, TYPE_SEEN, 0, 8 + 4 + 2);
        buf.extend_from_slice(&0u64.to_le_bytes());
        buf.extend_from_slice(&2u32.to_le_bytes());
        buf.extend_from_slice(&[0xC3, 0x28]);
        end_frame(&mut buf, start);
        let start = begin_frame(&mut buf, TYPE_RELEASE, 1, 4);
        buf.extend_from_slice(&u32::MAX.to_le_bytes());
        end_frame(&mut buf, start);
        let mut i = Interner::default();
        let s = scan(&buf, 0, &mut i);
        assert!(s.items.is_empty());
        assert_eq!(s.damage.len(), 2);
        assert!(s.damage.iter().all(|d| d.undecodable));
    }

    #[test]
    fn garbage_only_is_a_tail() {
        let mut i = Interner::default();
        for garbage in [
            vec![0u8; 100],
            vec![
                0xF9, 0xFE, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0, 1,
            ],
            vec![0xF9],
            b"hello world, not a record".to_vec(),
        ] {
            let s = scan(&garbage, 0, &mut i);
            assert!(s.items.is_empty());
            assert_eq!(s.damage.len(), 1);
            assert!(s.damage[0].tail);
            assert_eq!(s.valid_len, 0);
        }
    }

    #[test]
    fn interner_shares_device_strings() {
        let mut buf = Vec::new();
        for i in 0..3 {
            let r = img("AB");
            encode_record(&mut buf, i, &r, body_len(&r));
        }
        let mut interner = Interner::default();
        let s = scan(&buf, 0, &mut interner);
        let pks: Vec<_> = s
            .items
            .iter()
            .filter_map(|it| match &it.decoded {
                Decoded::Record(Record::Img { msg, .. }) => Some(msg.device.product_key.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(pks.len(), 3);
        assert!(Arc::ptr_eq(&pks[0], &pks[2]));
    }
}

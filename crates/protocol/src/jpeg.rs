//! A cheap structural check of a JPEG byte stream (the syntax of ITU-T T.81 annex B), pure and
//! streaming: no decode, no allocation beyond one small segment's payload.
//!
//! What is checked:
//!
//! * SOI (`FF D8`) at offset 0; EOI (`FF D9`) exactly at the end, after at least one scan.
//! * Between segments, only markers (optionally preceded by `FF` fill bytes). Marker segments
//!   are walked by their length fields; a length below 2 is an error. Reserved markers
//!   (`FF 02`..`FF BF`), `FF 00` and RST outside a scan, and `FF D8` anywhere after the start
//!   are errors.
//! * The payloads whose layout is fixed by the standard are checked against their length: SOFn
//!   (`6 + 3 * Nf`, at least one component, sampling factors 1..=4, table ids 0..=3), SOS
//!   (`4 + 2 * Ns`, Ns 1..=4, after a SOF), DQT and DHT (whole tables exactly filling the segment,
//!   valid class and id), DRI (2 bytes).
//! * After an SOS, entropy-coded data: `FF` may only be followed by `00` (stuffing), `D0`..`D7`
//!   (restart markers, which must cycle `D0, D1, .., D7, D0, ..` from `D0` in every scan), more
//!   `FF` fill, `D9` (EOI), or a marker that starts the next segment (progressive and multi-scan
//!   JPEGs: DHT, SOS, ...); the walk then continues.
//!
//! It cannot see a lost run of entropy-coded bytes that leaves the syntax intact: only a full
//! decode (and not always that) notices those.

use std::fmt;

mod scan;
pub use scan::{entropy_check, EntropyVerdict, ScanError, ScanErrorKind};

/// Where and why a stream is not a well-formed JPEG.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JpegError {
    /// Offset of the byte that gave it away (the stream length when it ended too early).
    pub offset: u64,
    /// What is wrong.
    pub what: &'static str,
    /// True when the stream was fine so far but ended too early: more bytes could still fix it.
    pub at_end: bool,
}

impl fmt::Display for JpegError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (byte {})", self.what, self.offset)
    }
}

impl std::error::Error for JpegError {}

/// Checks the structure of a whole JPEG (see the module docs).
pub fn structure_ok(bytes: &[u8]) -> Result<(), JpegError> {
    let mut w = Walker::new();
    w.feed(bytes)?;
    w.finish()
}

/// Longest segment payload kept for a content check (the length field's maximum).
const MAX_PAYLOAD: usize = 65_535;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting the `FF` of SOI.
    Soi0,
    /// Expecting the `D8` of SOI.
    Soi1,
    /// Between segments: expecting `FF`.
    Marker,
    /// After `FF` between segments: the marker code (or more `FF` fill).
    Code,
    /// High byte of the length of the segment of marker `.0`.
    LenHi(u8),
    /// Low byte of the length; `.1` is the high byte.
    LenLo(u8, u8),
    /// Payload of the segment of `marker`, `left` bytes to go.
    Payload { marker: u8, left: u16 },
    /// Entropy-coded data.
    Entropy,
    /// Entropy-coded data, after an `FF`.
    EntropyFf,
    /// After EOI: nothing more may come.
    Eoi,
}

/// Incremental form of [`structure_ok`]: feed the stream in pieces, then call
/// [`Walker::finish`]. A piece's error names the offset (in the whole stream) of the offending
/// byte; the verdict on the bytes up to that offset never depends on what follows.
#[derive(Debug, Clone)]
pub struct Walker {
    state: State,
    /// Bytes fed so far.
    pos: u64,
    /// Frame headers (SOFn) seen.
    frames: u32,
    /// Scans (SOS) seen.
    scans: u32,
    /// Next restart marker expected in the current scan (0..=7).
    next_rst: u8,
    /// Component ids of the last frame header (up to 255).
    components: Vec<u8>,
    /// The last frame header's process: sequential DCT, progressive DCT, or lossless.
    process: Process,
    /// Payload of the current checked segment.
    payload: Vec<u8>,
    failed: Option<JpegError>,
}

impl Default for Walker {
    fn default() -> Self {
        Walker::new()
    }
}

impl Walker {
    /// A walker at the start of a stream.
    pub fn new() -> Self {
        Walker {
            state: State::Soi0,
            pos: 0,
            frames: 0,
            scans: 0,
            next_rst: 0,
            components: Vec::new(),
            process: Process::Sequential,
            payload: Vec::new(),
            failed: None,
        }
    }

    /// Bytes fed so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Walks the next piece of the stream. Once an error is returned, every later call returns it.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), JpegError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let result = self.walk(bytes);
        if let Err(e) = result {
            self.failed = Some(e);
        }
        result
    }

    /// The verdict on the whole stream fed so far.
    pub fn finish(&self) -> Result<(), JpegError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let what = match self.state {
            State::Eoi => return Ok(()),
            State::Soi0 | State::Soi1 => "too short for SOI (FF D8)",
            State::Marker | State::Code => "ends between segments without EOI (FF D9)",
            State::LenHi(_) | State::LenLo(..) | State::Payload { .. } => {
                "ends inside a marker segment"
            }
            State::Entropy | State::EntropyFf => {
                "ends inside entropy-coded data without EOI (FF D9)"
            }
        };
        Err(JpegError {
            offset: self.pos,
            what,
            at_end: true,
        })
    }

    fn walk(&mut self, bytes: &[u8]) -> Result<(), JpegError> {
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            let at = self.pos + i as u64;
            let fail = |what: &'static str| JpegError {
                offset: at,
                what,
                at_end: false,
            };
            match self.state {
                State::Soi0 | State::Soi1 => {
                    let want = if self.state == State::Soi0 {
                        0xFF
                    } else {
                        0xD8
                    };
                    if b != want {
                        return Err(fail("does not start with SOI (FF D8)"));
                    }
                    self.state = if self.state == State::Soi0 {
                        State::Soi1
                    } else {
                        State::Marker
                    };
                }
                State::Marker => {
                    if b != 0xFF {
                        return Err(fail("expected a marker between segments"));
                    }
                    self.state = State::Code;
                }
                State::Code => self.marker(b).map_err(fail)?,
                State::LenHi(m) => self.state = State::LenLo(m, b),
                State::LenLo(m, hi) => {
                    let len = u16::from_be_bytes([hi, b]);
                    if len < 2 {
                        return Err(fail("segment length below 2"));
                    }
                    self.payload.clear();
                    self.state = State::Payload {
                        marker: m,
                        left: len - 2,
                    };
                    if len == 2 {
                        self.segment_done(m).map_err(fail)?;
                    }
                }
                State::Payload { marker, left } => {
                    let take = (left as usize).min(bytes.len() - i);
                    if checked(marker) && self.payload.len() + take <= MAX_PAYLOAD {
                        self.payload.extend_from_slice(&bytes[i..i + take]);
                    }
                    let left = left - take as u16;
                    i += take;
                    self.state = State::Payload { marker, left };
                    if left == 0 {
                        let at = self.pos + i as u64 - 1;
                        self.segment_done(marker).map_err(|what| JpegError {
                            offset: at,
                            what,
                            at_end: false,
                        })?;
                    }
                    continue;
                }
                State::Entropy => match bytes[i..].iter().position(|&x| x == 0xFF) {
                    Some(k) => {
                        i += k;
                        self.state = State::EntropyFf;
                    }
                    None => i = bytes.len(),
                },
                State::EntropyFf => match b {
                    0x00 => self.state = State::Entropy,
                    0xD0..=0xD7 => {
                        if b - 0xD0 != self.next_rst {
                            return Err(fail("restart marker out of order"));
                        }
                        self.next_rst = (self.next_rst + 1) & 7;
                        self.state = State::Entropy;
                    }
                    _ => self.marker(b).map_err(fail)?,
                },
                State::Eoi => return Err(fail("data after EOI (FF D9)")),
            }
            i += 1;
        }
        self.pos += bytes.len() as u64;
        Ok(())
    }

    /// A marker code after `FF` (between segments, or ending a scan).
    fn marker(&mut self, code: u8) -> Result<(), &'static str> {
        self.state = match code {
            0xFF => self.state, // fill byte: stay
            0xD8 => return Err("SOI (FF D8) after the start"),
            0xD9 if self.scans == 0 => return Err("EOI (FF D9) before any scan"),
            0xD9 => State::Eoi,
            0xD0..=0xD7 => return Err("restart marker outside a scan"),
            0x00 => return Err("FF 00 outside entropy-coded data"),
            0x01 => State::Marker, // TEM: no length
            0x02..=0xBF => return Err("reserved marker"),
            m => State::LenHi(m),
        };
        Ok(())
    }

    /// A segment's payload is complete: check it, and enter a scan after SOS.
    fn segment_done(&mut self, marker: u8) -> Result<(), &'static str> {
        let p = &self.payload;
        match marker {
            0xDA => {
                if self.frames == 0 {
                    return Err("SOS before any frame header (SOFn)");
                }
                if !sos_ok(p, &self.components, self.process) {
                    return Err("SOS segment malformed");
                }
                self.scans += 1;
                self.next_rst = 0;
                self.state = State::Entropy;
                return Ok(());
            }
            0xC4 => dht_ok(p).then_some(()).ok_or("DHT segment malformed")?,
            0xDB => dqt_ok(p).then_some(()).ok_or("DQT segment malformed")?,
            0xDD => (p.len() == 2)
                .then_some(())
                .ok_or("DRI segment malformed")?,
            m if is_sof(m) => {
                if self.frames > 0 {
                    return Err("a second frame header (SOFn)");
                }
                sof_ok(p).then_some(()).ok_or("SOF segment malformed")?;
                self.frames += 1;
                self.components = p[6..].chunks_exact(3).map(|c| c[0]).collect();
                self.process = match m & 3 {
                    2 => Process::Progressive,
                    3 => Process::Lossless,
                    _ => Process::Sequential,
                };
            }
            _ => {}
        }
        self.state = State::Marker;
        Ok(())
    }
}

/// The coding process of a frame (from its SOF marker).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Process {
    Sequential,
    Progressive,
    Lossless,
}

/// SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC).
fn is_sof(m: u8) -> bool {
    matches!(m, 0xC0..=0xCF) && !matches!(m, 0xC4 | 0xC8 | 0xCC)
}

/// Markers whose payload is kept and checked.
fn checked(m: u8) -> bool {
    matches!(m, 0xC4 | 0xDA | 0xDB | 0xDD) || is_sof(m)
}

fn sof_ok(p: &[u8]) -> bool {
    let Some(&nf) = p.get(5) else {
        return false;
    };
    let nf = nf as usize;
    let width = u16::from_be_bytes([p[3], p[4]]);
    nf >= 1
        && p.len() == 6 + 3 * nf
        && width > 0
        && p[6..].chunks_exact(3).all(|c| {
            let (h, v) = (c[1] >> 4, c[1] & 15);
            (1..=4).contains(&h) && (1..=4).contains(&v) && c[2] <= 3
        })
}

/// Ns 1..=4 components of the frame with table ids 0..=3, and the spectral selection and
/// successive approximation fields allowed for the frame's process (T.81 B.2.3).
fn sos_ok(p: &[u8], frame: &[u8], process: Process) -> bool {
    let ns = p.first().copied().unwrap_or(0) as usize;
    if !(1..=4).contains(&ns) || p.len() != 4 + 2 * ns {
        return false;
    }
    let comps_ok = p[1..1 + 2 * ns]
        .chunks_exact(2)
        .all(|c| frame.contains(&c[0]) && c[1] >> 4 <= 3 && c[1] & 15 <= 3);
    let (ss, se, ah, al) = (
        p[1 + 2 * ns],
        p[2 + 2 * ns],
        p[3 + 2 * ns] >> 4,
        p[3 + 2 * ns] & 15,
    );
    let fields_ok = match process {
        Process::Sequential => ss == 0 && se == 63 && ah == 0 && al == 0,
        Process::Progressive => ss <= se && se <= 63 && ah <= 13 && al <= 13,
        Process::Lossless => (1..=7).contains(&ss) && se == 0 && ah == 0 && al <= 15,
    };
    comps_ok && fields_ok
}

/// Whole tables (Pq 0 or 1, Tq 0..=3) of non-zero elements exactly filling the segment.
fn dqt_ok(p: &[u8]) -> bool {
    let mut i = 0;
    while i < p.len() {
        let (pq, tq) = (p[i] >> 4, p[i] & 15);
        let size = 64 * (usize::from(pq) + 1);
        let Some(q) = p.get(i + 1..i + 1 + size) else {
            return false;
        };
        let zero = if pq == 0 {
            q.contains(&0)
        } else {
            q.chunks_exact(2).any(|e| e == [0, 0])
        };
        if pq > 1 || tq > 3 || zero {
            return false;
        }
        i += 1 + size;
    }
    i == p.len() && !p.is_empty()
}

/// Whole tables (Tc 0 or 1, Th 0..=3, at most 256 codes) exactly filling the segment, with
/// symbols a decoder can use: DC categories up to 16; AC run/size pairs with a size up to 14,
/// size 0 only for EOB (`00`) and ZRL (`F0`). (So no symbol is `FF`.)
fn dht_ok(p: &[u8]) -> bool {
    let mut i = 0;
    while i < p.len() {
        let (tc, th) = (p[i] >> 4, p[i] & 15);
        let Some(counts) = p.get(i + 1..i + 17) else {
            return false;
        };
        let n: usize = counts.iter().map(|&c| usize::from(c)).sum();
        if tc > 1 || th > 3 || n > 256 {
            return false;
        }
        let Some(symbols) = p.get(i + 17..i + 17 + n) else {
            return false;
        };
        let usable = |&s: &u8| match tc {
            0 => s <= 16,
            _ => matches!(s & 15, 1..=14) || s == 0x00 || s == 0xF0,
        };
        if !symbols.iter().all(usable) {
            return false;
        }
        i += 17 + n;
    }
    i == p.len() && !p.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TINY: &[u8] = include_bytes!("../../../tests/vectors/images/tiny.jpg");
    const ODD: &[u8] = include_bytes!("../../../tests/vectors/images/odd.jpg");
    const QVGA: &[u8] = include_bytes!("../../../tests/vectors/images/qvga.jpg");

    fn goldens() -> Vec<Vec<u8>> {
        let mut v = vec![TINY.to_vec(), ODD.to_vec(), QVGA.to_vec()];
        for (w, h, frame, q) in [(96, 72, 1, 70), (32, 24, 3, 70), (160, 120, 7, 90)] {
            v.push(receiver_testkit::sample::scene_jpeg(w, h, frame, "T", q).unwrap());
        }
        v.push(receiver_testkit::sample::scene_jpeg(96, 72, 205, "CRASH", 70).unwrap());
        v
    }

    /// Offset just past the first SOS segment (where the entropy-coded data starts).
    fn scan_start(img: &[u8]) -> usize {
        let mut i = 2;
        loop {
            let len = usize::from(u16::from_be_bytes([img[i + 2], img[i + 3]]));
            if img[i + 1] == 0xDA {
                return i + 2 + len;
            }
            i += 2 + len;
        }
    }

    #[test]
    fn golden_images_are_well_formed_whole_and_in_pieces() {
        for img in goldens() {
            assert_eq!(structure_ok(&img), Ok(()));
            for piece in [1, 7, 400] {
                let mut w = Walker::new();
                for c in img.chunks(piece) {
                    w.feed(c).unwrap();
                }
                assert_eq!(w.finish(), Ok(()));
            }
        }
    }

    #[test]
    fn truncations_fail_at_the_end() {
        for img in goldens() {
            for cut in (0..img.len()).step_by(13).chain([img.len() - 1]) {
                // A prefix of a valid stream is only wrong in that it ends too early.
                assert!(structure_ok(&img[..cut]).unwrap_err().at_end);
            }
            // The tail alone, without SOI.
            assert!(!structure_ok(&img[1..]).unwrap_err().at_end);
        }
    }

    #[test]
    fn a_prefix_of_one_picture_followed_by_another_fails() {
        let g = goldens();
        for a in &g {
            // Past A's first segment (APP0), every cut is caught: in entropy data B's SOI is
            // illegal; in a header segment the length walk lands inside B, where a marker, a
            // second SOF, a DHT symbol or DQT element (B's SOI and APP0 bytes) gives it away.
            // (A cut inside APP0 can land on B's own segments: that mix is well-formed.)
            let first = 4 + usize::from(u16::from_be_bytes([a[4], a[5]]));
            for b in &g {
                for cut in first..a.len() {
                    let mixed = [&a[..cut], &b[..]].concat();
                    assert!(structure_ok(&mixed).is_err(), "cut {cut}");
                }
                let both = [&a[..], &b[..]].concat();
                assert_eq!(
                    structure_ok(&both).unwrap_err().what,
                    "data after EOI (FF D9)"
                );
            }
        }
    }

    #[test]
    fn a_missing_chunk_in_the_headers_fails() {
        for img in goldens() {
            let sos_end = scan_start(&img);
            for start in (2..sos_end).step_by(5) {
                for len in [1, 2, 3, 64, 400] {
                    let end = (start + len).min(img.len() - 2);
                    let cut = [&img[..start], &img[end..]].concat();
                    assert!(structure_ok(&cut).is_err(), "removed {start}..{end}");
                }
            }
        }
    }

    #[test]
    fn a_lost_chunk_of_entropy_coded_data_can_go_unnoticed() {
        // The known limit: most 400-byte holes in the scan data leave the syntax intact.
        let img = QVGA;
        let holes = (scan_start(img)..img.len() - 402)
            .step_by(400)
            .filter(|&s| structure_ok(&[&img[..s], &img[s + 400..]].concat()).is_ok())
            .count();
        assert!(holes > 10, "{holes}");
    }

    #[test]
    fn hand_made_streams() {
        let ok: &[u8] = &[
            0xFF, 0xD8, // SOI
            0xFF, 0xDD, 0, 4, 0, 1, // DRI: interval 1
            0xFF, 0xC0, 0, 11, 8, 0, 1, 0, 1, 1, 1, 0x11, 0, // SOF0 1x1, one component
            0xFF, 0xDA, 0, 8, 1, 1, 0, 0, 63, 0, // SOS
            0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD0, 0x56, 0xFF, 0xFF, 0xD1,
            0x78, // data + RST0, RST1
            0xFF, 0xFE, 0, 3, b'x', // COM between scans
            0xFF, 0xDA, 0, 8, 1, 1, 0, 0, 63, 0, 0x9A, // second scan
            0xFF, 0xD9, // EOI
        ];
        assert_eq!(structure_ok(ok), Ok(()));
        let at = |needle: &[u8]| ok.windows(needle.len()).position(|w| w == needle).unwrap();
        let with = |i: usize, b: u8| {
            let mut v = ok.to_vec();
            v[i] = b;
            v
        };
        let what = |v: &[u8]| structure_ok(v).unwrap_err().what;
        let rst1 = at(&[0xFF, 0xD1]) + 1;
        assert_eq!(what(&with(rst1, 0xD2)), "restart marker out of order");
        assert_eq!(what(&with(rst1, 0xD8)), "SOI (FF D8) after the start");
        assert_eq!(what(&with(rst1, 0x05)), "reserved marker");
        let com = at(&[0xFF, 0xFE]);
        assert_eq!(what(&with(com + 1, 0xD0)), "restart marker out of order");
        assert_eq!(what(&with(9, 0xD0)), "restart marker outside a scan");
        assert_eq!(
            what(&ok[..ok.len() - 2]),
            "ends inside entropy-coded data without EOI (FF D9)"
        );
        assert_eq!(what(&with(3, 0xDA)), "SOS before any frame header (SOFn)");
        assert_eq!(what(&with(5, 3)), "DRI segment malformed");
        assert_eq!(what(&with(5, 1)), "segment length below 2");
        assert_eq!(
            what(&[0xFF, 0xD8, 0xFF, 0xD9]),
            "EOI (FF D9) before any scan"
        );
        assert_eq!(what(&[0xFF, 0xD9]), "does not start with SOI (FF D8)");
        let mut tail = ok.to_vec();
        tail.push(0);
        assert_eq!(what(&tail), "data after EOI (FF D9)");
        // A failure's verdict holds whatever follows; an early end can still be completed.
        let mut w = Walker::new();
        assert!(w.feed(&with(rst1, 0xD2)[..rst1 + 1]).is_err());
        assert!(w.feed(&ok[rst1 + 1..]).is_err());
        let mut w = Walker::new();
        w.feed(&ok[..20]).unwrap();
        assert!(w.finish().unwrap_err().at_end);
        w.feed(&ok[20..]).unwrap();
        assert_eq!(w.finish(), Ok(()));
    }
}

//! An exact check of a JPEG's entropy-coded data: the scan is Huffman-decoded (no
//! dequantisation, no IDCT) and must hold exactly the MCUs the frame header asks for, each made of
//! valid codes, with the restart markers where they belong and nothing but padding after the
//! last MCU. Pure and sans-IO: a whole picture in, a verdict out.
//!
//! What is checked (ITU-T T.81):
//!
//! * The headers: SOI at offset 0; between segments only markers (optionally after `FF` fill
//!   bytes), walked by their length fields; SOFn, SOS, DHT, DQT and DRI payloads as in
//!   [`structure_ok`](super::structure_ok); one frame header before the scan.
//! * The frame is sequential DCT with Huffman coding and 8-bit samples (SOF0 or SOF1) and its
//!   first scan codes every component (Ns = Nf; one component, or up to 4 interleaved).
//!   Anything else is [`EntropyVerdict::Unsupported`] with the reason (progressive, lossless,
//!   hierarchical, arithmetic, 12-bit, height set by DNL, a frame coded in several scans): not an
//!   error, the caller falls back to the structural check.
//! * The Huffman tables the scan names were defined (by DHT segments before the SOS; a later
//!   DHT of the same class and id replaces an earlier one) and are well formed (no code of all
//!   1-bits, which T.81 C forbids and libjpeg rejects).
//! * The MCU count is the one fixed by the frame header: `ceil(X / (8 Hmax)) * ceil(Y / (8 Vmax))`
//!   for an interleaved scan, `ceil(X / 8) * ceil(Y / 8)` blocks for a one-component frame
//!   (T.81 A.2). Every code read matches a symbol of its table; a DC magnitude category is at
//!   most 11 and an AC one at most 10 (8-bit samples, T.81 F.1.2); a run never carries the
//!   coefficient index past 63 (a ZRL may end exactly at 63); EOB ends a block. The DC
//!   coefficients (running sums of the differences, per component) stay within what 8-bit
//!   samples give at the table's DC step: `|DC| <= 1152 / Q + 1` (the exact bound is
//!   `1024 / Q`; 1/8 headroom for encoders whose DCT is approximate).
//! * With a restart interval `Ri > 0` (DRI), after every `Ri` MCUs except after the last one:
//!   fewer than 8 padding bits, all 1-bits, then the restart marker `RSTn` with `n` cycling
//!   `0..=7` from 0; the bit reader starts afresh after it and the DC predictors are reset.
//! * After the last MCU: fewer than 8 padding bits, all 1-bits (T.81 F.1.2.3), then EOI `FF D9`
//!   ending the bytes. Inside the entropy-coded data `FF 00` is a stuffed `FF`; any other marker
//!   is an error unless it is the restart marker due there. `FF` fill bytes may precede a marker.
//!
//! Encoders, checked: the `image` crate's encoder and the `jpeg-encoder` crate pad with
//! 1-bits (`write_bits(0x7F, 7)`), and so does libjpeg(-turbo) (`jchuff.c`, `flush_bits`: "fill
//! any partial byte with ones"; `cjpeg` output checked by hand). None of them writes a restart
//! marker after the last MCU: all three emit `RSTn` before an MCU when the interval has run out.
//! libjpeg's decoder would nonetheless skip a stray RST between the scan and EOI
//! (`jdmarker.c`, `read_markers`: RST0..RST7 and TEM are skipped as "parameterless"), so one RST of the number due is
//! tolerated right after the last MCU (when the MCU count is a multiple of `Ri`) before EOI.
//!
//! What it cannot see: a splice of two pictures whose bit streams line up at the cut decodes
//! like a real picture. Measured on sample frames (QVGA and VGA, qualities 30 to 90, the same
//! scene a few frames apart; `scan_tests.rs`): the first `k` 400-byte chunks of one picture with
//! the other from chunk `k` on passed in 27 of 970 cases (2.8 %: the decoder resynchronised on
//! the right MCU, leaving a decodable picture with a glitch); from chunk `k + 1` on (a chunk lost
//! as well), 1 of 1005. One lost 400-byte chunk inside a picture: 0 of 1153. Neither the 1-padding
//! nor the DC range rule decides these: without both, 29 of 970 and 1 of 1005 passed.
//!
//! Not decoded, [`EntropyVerdict::Unsupported`]: besides progressive, lossless and arithmetic
//! coding, the sequential frames coded one component per scan, which is how the `jpeg-encoder`
//! crate writes 4:1:1 (`F_4_1`) and `*_4` samplings and any frame with optimised Huffman tables
//! (libjpeg writes its 4:1:1 interleaved, which is checked).
//!
//! Cost: one pass over the bytes with a 10-bit lookup table per Huffman table (for AC tables a
//! second one that also takes the value bits; a slow path for longer codes); a few KB of tables
//! on the stack, no allocation per MCU. `receiver bench --parts jpeg` measures it: on sample
//! frames (4:4:4, 10-20 KB) about a quarter of a full decode by the `image` crate (zune-jpeg,
//! SIMD IDCT), i.e. about 3 µs per 400-byte chunk; the structural check is about a tenth of it.

use super::{dht_ok, dqt_ok, is_sof, sof_ok};
use std::fmt;

/// The outcome of [`entropy_check`] on a picture that is not malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntropyVerdict {
    /// The scan decodes to exactly the frame's MCUs and ends on EOI. `restarts` counts the
    /// restart markers crossed inside the scan.
    Exact {
        /// MCUs decoded.
        mcus: u32,
        /// Restart markers crossed.
        restarts: u32,
    },
    /// A valid-looking picture of a kind this check does not decode (the reason says which); the
    /// caller should fall back to [`structure_ok`](super::structure_ok).
    Unsupported(&'static str),
}

/// What is wrong, in [`ScanError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanErrorKind {
    /// The marker syntax or a header segment is malformed (the same kind of finding as
    /// [`structure_ok`](super::structure_ok)'s).
    Syntax(&'static str),
    /// The scan names a Huffman table no DHT defined.
    MissingTable {
        /// An AC table (else DC).
        ac: bool,
        /// The table id.
        id: u8,
    },
    /// A Huffman table has more codes than its code lengths allow.
    BadTable {
        /// An AC table (else DC).
        ac: bool,
        /// The table id.
        id: u8,
    },
    /// The entropy-coded data ran out (EOI, or the end of the bytes) before the last MCU.
    Truncated {
        /// MCUs decoded before the end.
        decoded: u32,
        /// MCUs the frame header fixes.
        expected: u32,
    },
    /// A marker other than the restart marker due inside the entropy-coded data.
    UnexpectedMarker {
        /// The marker code.
        code: u8,
    },
    /// Bits that match no code of the table.
    InvalidCode {
        /// An AC table (else DC).
        ac: bool,
    },
    /// A DC magnitude category above 11.
    DcCategory(u8),
    /// An AC magnitude category above 10.
    AcCategory(u8),
    /// A run that carries the coefficient index past 63.
    CoefficientOverrun,
    /// A DC coefficient (the running sum of the DC differences) beyond what 8-bit samples
    /// quantised by the table's DC step can give.
    DcRange {
        /// The value found.
        value: i32,
        /// The largest possible.
        max: i32,
    },
    /// A restart marker with the wrong number.
    RestartOrder {
        /// The number found.
        found: u8,
        /// The number due.
        expected: u8,
    },
    /// Whole bytes of entropy-coded data after the last MCU (or after the last MCU of a restart
    /// interval, where the restart marker is due).
    ExtraData {
        /// How many bytes.
        bytes: u64,
    },
    /// Padding bits before a marker that are not all 1-bits.
    Padding {
        /// How many padding bits.
        bits: u8,
    },
    /// No EOI after the scan.
    MissingEoi,
    /// Bytes after EOI.
    AfterEoi {
        /// How many bytes.
        bytes: u64,
    },
}

/// Where and why a picture failed [`entropy_check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanError {
    /// Offset of the byte where the decode stood (for a bad code: the byte holding its first
    /// bit); for a header error, the offending byte.
    pub offset: u64,
    /// Index (from 0) of the MCU being decoded, or that a restart marker or EOI followed; `None`
    /// for header errors.
    pub mcu: Option<u32>,
    /// What is wrong.
    pub kind: ScanErrorKind,
}

fn class(ac: bool) -> &'static str {
    if ac {
        "AC"
    } else {
        "DC"
    }
}

impl fmt::Display for ScanErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ScanErrorKind::Syntax(what) => f.write_str(what),
            ScanErrorKind::MissingTable { ac, id } => {
                write!(
                    f,
                    "the scan uses {} Huffman table {id}, which no DHT defines",
                    class(ac)
                )
            }
            ScanErrorKind::BadTable { ac, id } => {
                write!(
                    f,
                    "{} Huffman table {id} has more codes than its lengths allow",
                    class(ac)
                )
            }
            ScanErrorKind::Truncated { decoded, expected } => {
                write!(f, "scan ended after {decoded} of {expected} MCUs")
            }
            ScanErrorKind::UnexpectedMarker { code } => {
                write!(f, "marker {} inside entropy-coded data", marker_name(code))
            }
            ScanErrorKind::InvalidCode { ac } => write!(f, "invalid {} Huffman code", class(ac)),
            ScanErrorKind::DcCategory(s) => write!(f, "DC magnitude category {s} (above 11)"),
            ScanErrorKind::AcCategory(s) => write!(f, "AC magnitude category {s} (above 10)"),
            ScanErrorKind::CoefficientOverrun => f.write_str("AC run past coefficient 63"),
            ScanErrorKind::DcRange { value, max } => {
                write!(
                    f,
                    "DC coefficient {value} out of range (at most {max} in magnitude)"
                )
            }
            ScanErrorKind::RestartOrder { found, expected } => {
                write!(f, "restart marker RST{found} where RST{expected} expected")
            }
            ScanErrorKind::ExtraData { bytes } => {
                write!(f, "{bytes} bytes of entropy data too many")
            }
            ScanErrorKind::Padding { bits } => {
                write!(f, "{bits} padding bits before a marker are not all 1-bits")
            }
            ScanErrorKind::MissingEoi => f.write_str("no EOI (FF D9) after the scan"),
            ScanErrorKind::AfterEoi { bytes } => write!(f, "{bytes} bytes after EOI (FF D9)"),
        }
    }
}

impl fmt::Display for ScanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.kind, self.mcu) {
            (ScanErrorKind::ExtraData { bytes }, Some(m)) => {
                write!(f, "{bytes} bytes of entropy data after {m} MCUs")?
            }
            (ScanErrorKind::Truncated { .. }, _) | (_, None) => write!(f, "{}", self.kind)?,
            (kind, Some(m)) => write!(f, "{kind} in MCU {m}")?,
        }
        write!(f, " (byte {})", self.offset)
    }
}

impl std::error::Error for ScanError {}

fn marker_name(code: u8) -> String {
    match code {
        0xD0..=0xD7 => format!("RST{}", code - 0xD0),
        0xD9 => "EOI (FF D9)".into(),
        c => format!("FF {c:02X}"),
    }
}

/// Checks a whole JPEG by decoding its entropy-coded data (see the module docs).
pub fn entropy_check(bytes: &[u8]) -> Result<EntropyVerdict, ScanError> {
    let header = match parse_header(bytes)? {
        Parsed::Scan(h) => h,
        Parsed::Unsupported(why) => return Ok(EntropyVerdict::Unsupported(why)),
    };
    let mut tables = [Table::EMPTY, Table::EMPTY, Table::EMPTY, Table::EMPTY];
    let mut units = [Unit::default(); 4];
    let mut built = [None::<(bool, u8)>; 4];
    let mut n_tables = 0;
    for (k, c) in header.comps[..header.ns].iter().enumerate() {
        for (ac, id) in [(false, c.td), (true, c.ta)] {
            let slot = match built[..n_tables].iter().position(|&b| b == Some((ac, id))) {
                Some(slot) => slot,
                None => {
                    let Some(def) = &header.dht[usize::from(ac)][usize::from(id)] else {
                        return Err(header_err(
                            header.sos_at,
                            ScanErrorKind::MissingTable { ac, id },
                        ));
                    };
                    if !tables[n_tables].build(def) {
                        return Err(header_err(def.at, ScanErrorKind::BadTable { ac, id }));
                    }
                    built[n_tables] = Some((ac, id));
                    n_tables += 1;
                    n_tables - 1
                }
            };
            if ac {
                units[k].ac = slot as u8;
            } else {
                units[k].dc = slot as u8;
            }
        }
        units[k].blocks = c.blocks;
        units[k].dc_max = dc_bound(c.qdc);
    }
    let mut s = Scan {
        bits: Bits::new(bytes, header.data_at),
        pred: [0; 4],
        tables: &tables,
        units: &units[..header.ns],
        mcu: 0,
    };
    s.run(header.mcus, header.restart_interval)
}

fn header_err(at: usize, kind: ScanErrorKind) -> ScanError {
    ScanError {
        offset: at as u64,
        mcu: None,
        kind,
    }
}

/// A DHT table as defined: code counts per length and the symbols.
#[derive(Clone)]
struct TableDef {
    counts: [u8; 16],
    symbols: [u8; 256],
    /// Offset of its DHT segment's marker.
    at: usize,
}

#[derive(Clone, Copy)]
struct ScanComp {
    /// Blocks of this component in one MCU.
    blocks: u8,
    /// DC step of its quantisation table.
    qdc: u16,
    td: u8,
    ta: u8,
}

struct Header {
    /// `[class][id]`: the tables in force at the SOS.
    dht: [[Option<Box<TableDef>>; 4]; 2],
    comps: [ScanComp; 4],
    ns: usize,
    mcus: u32,
    restart_interval: u16,
    /// Offset of the SOS marker and of the first entropy-coded byte.
    sos_at: usize,
    data_at: usize,
}

enum Parsed {
    Scan(Header),
    Unsupported(&'static str),
}

/// Walks the segments from SOI to the first SOS (included).
fn parse_header(b: &[u8]) -> Result<Parsed, ScanError> {
    let syntax = |at: usize, what: &'static str| header_err(at, ScanErrorKind::Syntax(what));
    if b.len() < 2 || b[0] != 0xFF || b[1] != 0xD8 {
        return Err(syntax(0, "does not start with SOI (FF D8)"));
    }
    let mut dht: [[Option<Box<TableDef>>; 4]; 2] = Default::default();
    let mut frame: Option<(u8, &[u8])> = None;
    let mut restart_interval = 0u16;
    // By table id: the DC step of the quantisation table.
    let mut qdc = [None::<u16>; 4];
    let mut i = 2;
    loop {
        // A marker, after optional fill bytes.
        match b.get(i) {
            Some(0xFF) => {}
            Some(_) => return Err(syntax(i, "expected a marker between segments")),
            None => return Err(syntax(i, "ends before the scan")),
        }
        let at = i;
        while b.get(i) == Some(&0xFF) {
            i += 1;
        }
        let Some(&code) = b.get(i) else {
            return Err(syntax(i, "ends before the scan"));
        };
        i += 1;
        match code {
            0xD8 => return Err(syntax(i - 1, "SOI (FF D8) after the start")),
            0xD9 => return Err(syntax(i - 1, "EOI (FF D9) before any scan")),
            0xD0..=0xD7 => return Err(syntax(i - 1, "restart marker outside a scan")),
            0x00 => return Err(syntax(i - 1, "FF 00 outside entropy-coded data")),
            0x01 => continue, // TEM: no length
            0x02..=0xBF => return Err(syntax(i - 1, "reserved marker")),
            _ => {}
        }
        let Some(len) = b.get(i..i + 2) else {
            return Err(syntax(b.len(), "ends inside a marker segment"));
        };
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        if len < 2 {
            return Err(syntax(i, "segment length below 2"));
        }
        let Some(p) = b.get(i + 2..i + len) else {
            return Err(syntax(b.len(), "ends inside a marker segment"));
        };
        i += len;
        match code {
            0xC4 => {
                if !dht_ok(p) {
                    return Err(syntax(at, "DHT segment malformed"));
                }
                let mut j = 0;
                while j < p.len() {
                    let (tc, th) = (usize::from(p[j] >> 4), usize::from(p[j] & 15));
                    let mut def = TableDef {
                        counts: [0; 16],
                        symbols: [0; 256],
                        at,
                    };
                    def.counts.copy_from_slice(&p[j + 1..j + 17]);
                    let n: usize = def.counts.iter().map(|&c| usize::from(c)).sum();
                    def.symbols[..n].copy_from_slice(&p[j + 17..j + 17 + n]);
                    dht[tc][th] = Some(Box::new(def));
                    j += 17 + n;
                }
            }
            0xDB => {
                if !dqt_ok(p) {
                    return Err(syntax(at, "DQT segment malformed"));
                }
                let mut j = 0;
                while j < p.len() {
                    let (pq, tq) = (p[j] >> 4, usize::from(p[j] & 3));
                    qdc[tq] = Some(if pq == 0 {
                        u16::from(p[j + 1])
                    } else {
                        u16::from_be_bytes([p[j + 1], p[j + 2]])
                    });
                    j += 1 + 64 * (usize::from(pq) + 1);
                }
            }
            0xDD => {
                if p.len() != 2 {
                    return Err(syntax(at, "DRI segment malformed"));
                }
                restart_interval = u16::from_be_bytes([p[0], p[1]]);
            }
            0xDE | 0xDF => return Ok(Parsed::Unsupported("hierarchical process (DHP/EXP)")),
            m if is_sof(m) => {
                if frame.is_some() {
                    return Err(syntax(at, "a second frame header (SOFn)"));
                }
                if let Some(why) = unsupported_process(m) {
                    return Ok(Parsed::Unsupported(why));
                }
                if !sof_ok(p) {
                    return Err(syntax(at, "SOF segment malformed"));
                }
                match p[0] {
                    8 => {}
                    12 if m == 0xC1 => return Ok(Parsed::Unsupported("12-bit samples (SOF1)")),
                    _ => return Err(syntax(at + 4, "sample precision not 8 bits")),
                }
                if p[1] == 0 && p[2] == 0 {
                    return Ok(Parsed::Unsupported("number of lines defined by DNL"));
                }
                frame = Some((m, p));
            }
            0xDA => {
                let Some((_, f)) = frame else {
                    return Err(syntax(at, "SOS before any frame header (SOFn)"));
                };
                return scan_header(f, p, at, i, dht, qdc, restart_interval);
            }
            _ => {} // APPn, COM, DAC, DNL, JPGn: skipped
        }
    }
}

/// Why a frame of SOF marker `m` is not checked, if it is not.
fn unsupported_process(m: u8) -> Option<&'static str> {
    match m {
        0xC0 | 0xC1 => None,
        0xC2 => Some("progressive DCT (SOF2)"),
        0xC3 => Some("lossless (SOF3)"),
        0xC5..=0xC7 => Some("hierarchical (differential SOF5..SOF7)"),
        _ => Some("arithmetic coding (SOF9..SOF15)"),
    }
}

/// The first scan's header `p` (SOS at `at`, data from `data_at`) against frame header `f`.
fn scan_header(
    f: &[u8],
    p: &[u8],
    at: usize,
    data_at: usize,
    dht: [[Option<Box<TableDef>>; 4]; 2],
    qdc: [Option<u16>; 4],
    restart_interval: u16,
) -> Result<Parsed, ScanError> {
    let syntax = |what: &'static str| header_err(at, ScanErrorKind::Syntax(what));
    let height = u32::from(u16::from_be_bytes([f[1], f[2]]));
    let width = u32::from(u16::from_be_bytes([f[3], f[4]]));
    let frame: Vec<&[u8]> = f[6..].chunks_exact(3).collect();
    let ns = usize::from(p.first().copied().unwrap_or(0));
    if !(1..=4).contains(&ns) || p.len() != 4 + 2 * ns {
        return Err(syntax("SOS segment malformed"));
    }
    let (ss, se, a) = (p[1 + 2 * ns], p[2 + 2 * ns], p[3 + 2 * ns]);
    if ss != 0 || se != 63 || a != 0 {
        return Err(syntax("SOS segment malformed"));
    }
    if ns != frame.len() {
        return Ok(Parsed::Unsupported(
            "the first scan does not code every component (several scans)",
        ));
    }
    let hmax = frame
        .iter()
        .map(|c| u32::from(c[1] >> 4))
        .max()
        .unwrap_or(1);
    let vmax = frame
        .iter()
        .map(|c| u32::from(c[1] & 15))
        .max()
        .unwrap_or(1);
    let mut comps = [ScanComp {
        blocks: 1,
        qdc: 1,
        td: 0,
        ta: 0,
    }; 4];
    let mut used = [false; 4];
    for (k, s) in p[1..1 + 2 * ns].chunks_exact(2).enumerate() {
        let Some(fi) = frame.iter().position(|c| c[0] == s[0]) else {
            return Err(syntax("SOS names a component not in the frame"));
        };
        if used[fi] {
            return Err(syntax("SOS names a component twice"));
        }
        used[fi] = true;
        let (td, ta) = (s[1] >> 4, s[1] & 15);
        if td > 3 || ta > 3 {
            return Err(syntax("SOS segment malformed"));
        }
        let blocks = if ns == 1 {
            1
        } else {
            (frame[fi][1] >> 4) * (frame[fi][1] & 15)
        };
        let Some(qdc) = qdc[usize::from(frame[fi][2] & 3)] else {
            return Err(syntax(
                "a component's quantisation table was not defined (DQT)",
            ));
        };
        comps[k] = ScanComp {
            blocks,
            qdc,
            td,
            ta,
        };
    }
    let (mx, my) = if ns == 1 {
        (width.div_ceil(8), height.div_ceil(8))
    } else {
        if comps[..ns].iter().map(|c| u32::from(c.blocks)).sum::<u32>() > 10 {
            return Err(syntax("more than 10 blocks in an MCU"));
        }
        (width.div_ceil(8 * hmax), height.div_ceil(8 * vmax))
    };
    Ok(Parsed::Scan(Header {
        dht,
        comps,
        ns,
        mcus: mx * my,
        restart_interval,
        sos_at: at,
        data_at,
    }))
}

/// Bits of a code looked up at once.
const FAST: u32 = 10;

/// A Huffman decoding table (T.81 C and F.2.2.3) with a lookup table for short codes.
struct Table {
    /// By the next `FAST` bits: `length << 8 | symbol`, or 0 for a longer (or invalid) code.
    fast: [u16; 1 << FAST],
    /// For an AC table, by the next `FAST` bits when they hold a whole code and its value bits:
    /// the bits to consume (bits 0..5) and how far the coefficient index moves (bits 5..10:
    /// run + 1 for a coefficient, 16 for ZRL, 0 for EOB); 0 when they do not.
    ac_fast: [u16; 1 << FAST],
    /// By length 1..=16: the largest code of that length, -1 when none.
    maxcode: [i32; 17],
    /// By length: index in `symbols` of the first code of that length minus that code.
    delta: [i32; 17],
    symbols: [u8; 256],
}

impl Table {
    const EMPTY: Table = Table {
        fast: [0; 1 << FAST],
        ac_fast: [0; 1 << FAST],
        maxcode: [-1; 17],
        delta: [0; 17],
        symbols: [0; 256],
    };

    /// Builds the table from its definition; false when the counts overflow the code space (or
    /// would make a code of all 1-bits).
    fn build(&mut self, def: &TableDef) -> bool {
        self.fast = [0; 1 << FAST];
        self.symbols = def.symbols;
        let mut code: u32 = 0;
        let mut k: usize = 0;
        for len in 1..=16u32 {
            let n = u32::from(def.counts[len as usize - 1]);
            if n == 0 {
                self.maxcode[len as usize] = -1;
            } else {
                self.delta[len as usize] = k as i32 - code as i32;
                for _ in 0..n {
                    // Past the code space, or the all-1s code.
                    if code + 1 >= 1 << len {
                        return false;
                    }
                    if len <= FAST {
                        let shift = FAST - len;
                        let entry = (len as u16) << 8 | u16::from(def.symbols[k]);
                        let first = (code << shift) as usize;
                        self.fast[first..first + (1 << shift)].fill(entry);
                    }
                    code += 1;
                    k += 1;
                }
                self.maxcode[len as usize] = code as i32 - 1;
            }
            code <<= 1;
        }
        for (fused, &e) in self.ac_fast.iter_mut().zip(self.fast.iter()) {
            let (len, r, size) = (e >> 8, (e >> 4) & 15, e & 15);
            *fused = match (r, size) {
                _ if e == 0 => 0,
                (0, 0) => len,
                (15, 0) => len | 16 << 5,
                (_, 0) => 0, // not a symbol of a valid table (dht_ok)
                _ if size <= 10 && u32::from(len + size) <= FAST => (len + size) | (r + 1) << 5,
                _ => 0,
            };
        }
        true
    }
}

#[derive(Clone, Copy, Default)]
struct Unit {
    blocks: u8,
    /// Indexes in the scan's tables.
    dc: u8,
    ac: u8,
    /// Largest magnitude of a quantised DC coefficient (see [`dc_bound`]).
    dc_max: i32,
}

/// The largest magnitude of a DC coefficient quantised by `q` that an encoder of 8-bit samples
/// can produce, with headroom. The DC coefficient of a level-shifted block is `sum / 8`, within
/// -1024..=1016 (T.81 A.3.3); an encoder's DCT may be a little off (integer approximations, an
/// encoder in silicon), so 1/8 more is allowed, plus one step of rounding.
fn dc_bound(q: u16) -> i32 {
    1152 / i32::from(q.max(1)) + 1
}

/// Where the reader stopped loading bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// A marker (its first `FF`) at this offset.
    Marker(usize),
    /// The end of the bytes.
    End,
}

/// An MSB-first bit reader over entropy-coded data that unstuffs `FF 00` and stops at a
/// marker, after which it supplies zero bits that it counts as fake.
struct Bits<'a> {
    src: &'a [u8],
    /// Next byte to load.
    pos: usize,
    /// Loaded bits, left-aligned.
    buf: u64,
    nbits: u32,
    /// Of the `nbits`, how many (the last ones) are fake zeros past a stop.
    fake: u32,
    stop: Option<Stop>,
}

impl<'a> Bits<'a> {
    fn new(src: &'a [u8], pos: usize) -> Self {
        Bits {
            src,
            pos,
            buf: 0,
            nbits: 0,
            fake: 0,
            stop: None,
        }
    }

    /// Loads bytes until more than 56 bits are held.
    #[inline]
    fn refill(&mut self) {
        while self.nbits <= 56 {
            if self.stop.is_none() {
                // Eight bytes at once when none is FF.
                if let Some(w) = self.src.get(self.pos..self.pos + 8) {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(w);
                    let x = u64::from_be_bytes(a);
                    let has_ff =
                        (!x).wrapping_sub(0x0101_0101_0101_0101) & x & 0x8080_8080_8080_8080;
                    if has_ff == 0 {
                        let k = (64 - self.nbits) / 8;
                        self.buf |= (x >> (64 - 8 * k)) << (64 - 8 * k - self.nbits);
                        self.nbits += 8 * k;
                        self.pos += k as usize;
                        continue;
                    }
                }
            }
            let byte = match self.stop {
                Some(_) => {
                    self.fake += 8;
                    0
                }
                None => match self.src.get(self.pos) {
                    None => {
                        self.stop = Some(Stop::End);
                        self.fake += 8;
                        0
                    }
                    Some(0xFF) => {
                        if self.src.get(self.pos + 1) == Some(&0) {
                            self.pos += 2;
                            0xFF
                        } else {
                            self.stop = Some(Stop::Marker(self.pos));
                            self.fake += 8;
                            0
                        }
                    }
                    Some(&b) => {
                        self.pos += 1;
                        b
                    }
                },
            };
            self.buf |= u64::from(byte) << (56 - self.nbits);
            self.nbits += 8;
        }
    }

    /// Consumed a fake bit: the data ended (at a marker or the end) inside the last unit read.
    #[inline]
    fn overran(&self) -> bool {
        self.nbits < self.fake
    }

    /// Real bits loaded and not consumed.
    fn real_left(&self) -> u32 {
        self.nbits.saturating_sub(self.fake)
    }

    #[inline]
    fn consume(&mut self, n: u32) {
        self.buf <<= n;
        self.nbits -= n;
    }

    /// Reads `s` (0..=16) bits as a value of magnitude category `s` (T.81 F.2.2.1, EXTEND).
    #[inline]
    fn receive(&mut self, s: u32) -> i32 {
        if s == 0 {
            return 0;
        }
        let v = (self.buf >> (64 - s)) as i32;
        self.consume(s);
        if v < 1 << (s - 1) {
            v - (1 << s) + 1
        } else {
            v
        }
    }

    /// Decodes one symbol; `None` for bits that match no code. Needs 16 bits held.
    #[inline]
    fn decode(&mut self, t: &Table) -> Option<u8> {
        let e = t.fast[(self.buf >> (64 - FAST)) as usize];
        if e != 0 {
            self.consume(u32::from(e >> 8));
            return Some(e as u8);
        }
        self.decode_long(t)
    }

    /// [`Bits::decode`] for a code longer than `FAST` bits (or an invalid one).
    #[cold]
    #[inline(never)]
    fn decode_long(&mut self, t: &Table) -> Option<u8> {
        let bits = (self.buf >> 48) as i32;
        for len in FAST + 1..=16 {
            let code = bits >> (16 - len);
            if code <= t.maxcode[len as usize] {
                self.consume(len);
                return t
                    .symbols
                    .get((code + t.delta[len as usize]) as usize)
                    .copied();
            }
        }
        None
    }

    /// Offset of the byte holding the next bit to consume.
    fn offset(&self) -> usize {
        let end = match self.stop {
            Some(Stop::Marker(at)) => at,
            _ => self.pos.min(self.src.len()),
        };
        let mut i = end;
        for _ in 0..self.real_left().div_ceil(8) {
            i = i.saturating_sub(1);
            if i > 0 && self.src[i] == 0 && self.src[i - 1] == 0xFF {
                i -= 1;
            }
        }
        i
    }

    /// Bytes of entropy-coded data (unstuffed) from the next bit on to the next marker, and that
    /// marker's offset (or `None`: the data ends without one).
    fn data_to_marker(&mut self) -> (u64, Option<usize>) {
        let mut n = u64::from(self.real_left() / 8);
        let mut i = match self.stop {
            Some(Stop::Marker(at)) => return (n, Some(at)),
            Some(Stop::End) => return (n, None),
            None => self.pos,
        };
        while i < self.src.len() {
            if self.src[i] == 0xFF {
                if self.src.get(i + 1) == Some(&0) {
                    i += 1;
                } else {
                    return (n, Some(i));
                }
            }
            n += 1;
            i += 1;
        }
        (n, None)
    }
}

struct Scan<'a, 't> {
    bits: Bits<'a>,
    /// DC predictors, by scan component.
    pred: [i32; 4],
    tables: &'t [Table; 4],
    units: &'t [Unit],
    /// MCUs decoded.
    mcu: u32,
}

impl Scan<'_, '_> {
    fn err(&self, kind: ScanErrorKind) -> ScanError {
        ScanError {
            offset: self.bits.offset() as u64,
            mcu: Some(self.mcu),
            kind,
        }
    }

    fn run(&mut self, mcus: u32, ri: u16) -> Result<EntropyVerdict, ScanError> {
        let ri = u32::from(ri);
        let mut restarts = 0u32;
        let mut to_go = if ri > 0 { ri } else { u32::MAX };
        while self.mcu < mcus {
            if to_go == 0 {
                self.restart(restarts, mcus)?;
                restarts += 1;
                to_go = ri;
            }
            if let Err(kind) = self.decode_mcu() {
                return Err(self.stopped_or(kind, mcus));
            }
            if self.bits.overran() {
                return Err(self.stopped_or(
                    ScanErrorKind::Truncated {
                        decoded: 0,
                        expected: 0,
                    },
                    mcus,
                ));
            }
            self.mcu += 1;
            to_go -= 1;
        }
        self.finish(restarts, ri > 0 && to_go == 0)?;
        Ok(EntropyVerdict::Exact { mcus, restarts })
    }

    /// The error for a failed MCU: if the reader had run past the data, the reason is where the
    /// data stopped; else `kind`.
    fn stopped_or(&self, kind: ScanErrorKind, mcus: u32) -> ScanError {
        if !self.bits.overran() {
            return self.err(kind);
        }
        let (offset, kind) = match self.bits.stop {
            Some(Stop::Marker(at)) => {
                let code = self.marker_code(at).map_or(0xD9, |(c, _)| c);
                let kind = match code {
                    0xD9 => ScanErrorKind::Truncated {
                        decoded: self.mcu,
                        expected: mcus,
                    },
                    code => ScanErrorKind::UnexpectedMarker { code },
                };
                (at, kind)
            }
            _ => (
                self.bits.src.len(),
                ScanErrorKind::Truncated {
                    decoded: self.mcu,
                    expected: mcus,
                },
            ),
        };
        ScanError {
            offset: offset as u64,
            mcu: Some(self.mcu),
            kind,
        }
    }

    /// The code of the marker whose first `FF` is at `at` (after fill bytes) and the offset just
    /// past it; `None` when the bytes end first.
    fn marker_code(&self, mut at: usize) -> Option<(u8, usize)> {
        let src = self.bits.src;
        while src.get(at) == Some(&0xFF) {
            at += 1;
        }
        src.get(at).map(|&c| (c, at + 1))
    }

    #[inline]
    fn decode_mcu(&mut self) -> Result<(), ScanErrorKind> {
        for (u, pred) in self.units.iter().zip(self.pred.iter_mut()) {
            let dc = &self.tables[usize::from(u.dc)];
            let ac = &self.tables[usize::from(u.ac)];
            for _ in 0..u.blocks {
                *pred += Self::decode_block(&mut self.bits, dc, ac)?;
                if pred.abs() > u.dc_max {
                    return Err(ScanErrorKind::DcRange {
                        value: *pred,
                        max: u.dc_max,
                    });
                }
            }
        }
        Ok(())
    }

    #[inline]
    /// Decodes one block; returns its DC difference.
    fn decode_block(b: &mut Bits<'_>, dc: &Table, ac: &Table) -> Result<i32, ScanErrorKind> {
        if b.nbits < 32 {
            b.refill();
        }
        let s = b
            .decode(dc)
            .ok_or(ScanErrorKind::InvalidCode { ac: false })?;
        if s > 11 {
            return Err(ScanErrorKind::DcCategory(s));
        }
        let diff = b.receive(u32::from(s));
        let mut k = 1u32;
        while k < 64 {
            if b.nbits < 32 {
                b.refill();
            }
            let e = ac.ac_fast[(b.buf >> (64 - FAST)) as usize];
            if e != 0 {
                b.consume(u32::from(e & 31));
                let adv = u32::from(e >> 5);
                if adv == 0 {
                    return Ok(diff); // EOB
                }
                // A run of zeros and a coefficient, or 16 zeros (ZRL).
                k += adv;
                if k > 64 {
                    return Err(ScanErrorKind::CoefficientOverrun);
                }
                continue;
            }
            let rs = b
                .decode(ac)
                .ok_or(ScanErrorKind::InvalidCode { ac: true })?;
            let (r, s) = (u32::from(rs >> 4), rs & 15);
            if s == 0 {
                if r != 15 {
                    // EOB (dht_ok allows no other run with size 0).
                    return Ok(diff);
                }
                k += 16;
                if k > 64 {
                    return Err(ScanErrorKind::CoefficientOverrun);
                }
            } else {
                if s > 10 {
                    return Err(ScanErrorKind::AcCategory(s));
                }
                k += r;
                if k > 63 {
                    return Err(ScanErrorKind::CoefficientOverrun);
                }
                b.consume(u32::from(s));
                k += 1;
            }
        }
        Ok(diff)
    }

    fn err_at(&self, at: usize, kind: ScanErrorKind) -> ScanError {
        ScanError {
            offset: at as u64,
            mcu: Some(self.mcu),
            kind,
        }
    }

    /// After the MCUs of a restart interval: padding, then the restart marker `restarts % 8`.
    fn restart(&mut self, restarts: u32, mcus: u32) -> Result<(), ScanError> {
        let expected = (restarts % 8) as u8;
        let (code, at, next) = self.seek_marker()?;
        let kind = match code {
            Some(c) if c == 0xD0 + expected => {
                self.bits = Bits::new(self.bits.src, next);
                self.pred = [0; 4];
                return Ok(());
            }
            Some(c @ 0xD0..=0xD7) => ScanErrorKind::RestartOrder {
                found: c - 0xD0,
                expected,
            },
            Some(0xD9) | None => ScanErrorKind::Truncated {
                decoded: self.mcu,
                expected: mcus,
            },
            Some(code) => ScanErrorKind::UnexpectedMarker { code },
        };
        Err(self.err_at(at, kind))
    }

    /// After the last MCU: padding, then EOI at the end (after one restart marker, when one was
    /// due and `rst_due`).
    fn finish(&mut self, restarts: u32, rst_due: bool) -> Result<(), ScanError> {
        let (mut code, mut at, mut next) = self.seek_marker()?;
        if rst_due && code == Some(0xD0 + (restarts % 8) as u8) {
            self.bits = Bits::new(self.bits.src, next);
            (code, at, next) = self.seek_marker()?;
        }
        let len = self.bits.src.len();
        match code {
            Some(0xD9) if next == len => Ok(()),
            Some(0xD9) => Err(self.err_at(
                next,
                ScanErrorKind::AfterEoi {
                    bytes: (len - next) as u64,
                },
            )),
            None => Err(self.err_at(at, ScanErrorKind::MissingEoi)),
            Some(code) => Err(self.err_at(at, ScanErrorKind::UnexpectedMarker { code })),
        }
    }

    /// At the end of a restart interval or of the scan: checks that fewer than 8 bits, all 1s,
    /// are left before a marker, and returns that marker's code (`None` when the bytes end
    /// first), its offset and the offset after it.
    fn seek_marker(&mut self) -> Result<(Option<u8>, usize, usize), ScanError> {
        let b = &mut self.bits;
        b.refill();
        let (extra, at) = b.data_to_marker();
        if extra > 0 {
            return Err(self.err(ScanErrorKind::ExtraData { bytes: extra }));
        }
        let left = b.real_left();
        if left > 0 && (b.buf >> (64 - left)) != (1 << left) - 1 {
            return Err(self.err(ScanErrorKind::Padding { bits: left as u8 }));
        }
        let len = self.bits.src.len();
        let Some(at) = at else {
            return Ok((None, len, len));
        };
        Ok(match self.marker_code(at) {
            Some((c, next)) => (Some(c), at, next),
            None => (None, len, len),
        })
    }
}

#[cfg(test)]
#[path = "scan_tests.rs"]
mod tests;

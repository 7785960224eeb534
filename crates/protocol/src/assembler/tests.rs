//! Unit and property tests of the assembler. Every scenario runs through [`H`], which checks each
//! push's promise (a `Completed` tag is in a new `Write`, ...) and, at the end, that every tag came
//! back exactly once.

use super::*;
use proptest::prelude::*;
use std::collections::BTreeMap;

const TINY: &[u8] = include_bytes!("../../../../tests/vectors/images/tiny.jpg");
const MAX_V1_SEGMENTS_TEST: usize = v1::MAX_V1_SEGMENTS;
const T0: i64 = 1_700_000_000_000;

fn dev(name: &str) -> DeviceId {
    DeviceId::new("a1PK", name)
}

/// Bytes before the scan data of a [`jpeg_from`] picture: SOI, a quantisation table, a frame
/// header (one component, 8 pixels high, 8 per scan byte wide), one DC and one AC Huffman
/// table, a scan header.
const JPEG_HEAD_LEN: usize = 135;

/// A baseline JPEG whose entropy-coded data is exactly one byte per 8x8 block and decodes
/// exactly: each block is a DC difference of 0 (code `0`), one AC coefficient of category 4
/// (code `0`, then four bits taken from a data byte) and end-of-block (code `10`), so a byte
/// `00mmmm10`. [`JPEG_HEAD_LEN`] bytes, one byte per `data` byte (at least one), then EOI. Any
/// such picture passes the exact entropy check; a missing or foreign run of bytes inside it
/// changes its block count.
fn jpeg_from(data: impl IntoIterator<Item = u8>) -> Vec<u8> {
    let mut scan: Vec<u8> = data.into_iter().map(|b| ((b & 0x0F) << 2) | 0x02).collect();
    if scan.is_empty() {
        scan.push(0x02);
    }
    let width = u16::try_from(scan.len() * 8).expect("at most 8191 blocks");
    let [wh, wl] = width.to_be_bytes();
    let mut v = vec![0xFF, 0xD8, 0xFF, 0xDB, 0, 67, 0x00]; // SOI, DQT: table 0, all steps 1
    v.extend([1u8; 64]);
    v.extend([
        0xFF, 0xC0, 0, 11, 8, 0, 8, wh, wl, 1, 1, 0x11, 0, // SOF0: 8 high, 1 component
        0xFF, 0xC4, 0, 39, // DHT: DC 0 (`0`: category 0), AC 0 (`0`: 0x04, `10`: EOB)
        0x00, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x10, 1, 1, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0x04, 0x00, 0xFF, 0xDA, 0, 8, 1, 1, 0x00, 0, 63, 0, // SOS
    ]);
    debug_assert_eq!(v.len(), JPEG_HEAD_LEN);
    v.extend(scan);
    v.extend([0xFF, 0xD9]);
    v
}

/// [`jpeg_from`] `n` pseudo-random bytes.
fn jpeg(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    jpeg_from((0..n).map(|_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as u8
    }))
}

fn v2(img: &[u8], pid: u32, piece: usize) -> Vec<String> {
    wire::encode_v2(img, pid, piece).unwrap()
}

fn v1(img: &[u8], hex: usize) -> Vec<String> {
    wire::encode_v1(img, hex).unwrap()
}

/// Rewrites field `i` (0 = "V2", 1 = pid, ..., 6 = data) of a v2 value.
fn with_field(value: &str, i: usize, new: &str) -> String {
    let mut parts: Vec<String> = value.splitn(7, ';').map(str::to_string).collect();
    parts[i] = new.to_string();
    parts.join(";")
}

/// Harness: an assembler plus tag bookkeeping, and a shadow assembler with the same limits
/// but a 1-byte memory budget and a [`cold::MemStore`], so every picture's bytes go cold after
/// every push: whatever a scenario does, the shadow must do exactly the same (same dispositions,
/// same actions, same bytes), and end with nothing left in its store.
struct H {
    asm: Assembler,
    out: Vec<Action>,
    shadow: Assembler,
    shadow_out: Vec<Action>,
    done_now: Vec<Tag>,
    next_tag: Tag,
    now: u64,
}

impl H {
    fn new(limits: Limits) -> Self {
        let cold_limits = Limits {
            memory_budget: 1,
            ..limits.clone()
        };
        H {
            asm: Assembler::new(limits),
            out: Vec::new(),
            shadow: Assembler::with_cold_store(cold_limits, Box::<cold::MemStore>::default()),
            shadow_out: Vec::new(),
            done_now: Vec::new(),
            next_tag: 1,
            now: 1_000_000,
        }
    }

    /// Checks the shadow against the main assembler after an operation.
    fn compare_shadow(&mut self) {
        let n = self.shadow_out.len();
        assert!(n <= self.out.len(), "the spilling assembler emitted more");
        // Actions appended to `out` by a test directly are appended to the shadow's too.
        self.shadow_out.extend_from_slice(&self.out[n..]);
        assert_eq!(
            self.asm.buffered_bytes(),
            self.shadow.buffered_bytes(),
            "buffered bytes differ with spilling"
        );
        assert_eq!(self.asm.open_count(), self.shadow.open_count());
        assert_eq!(self.asm.next_deadline(), self.shadow.next_deadline());
        assert!(
            self.shadow.hot_bytes() <= 1,
            "the shadow keeps {} byte(s) in memory",
            self.shadow.hot_bytes()
        );
        assert_eq!(self.asm.cold_bytes(), 0);
        assert_eq!(self.shadow.cold_errors(), (0, None));
    }

    /// Runs `f` on both assemblers (with their own action lists) and compares what they emit.
    fn both(&mut self, f: impl Fn(&mut Assembler, &mut Vec<Action>)) {
        let (before, shadow_before) = (self.out.len(), self.shadow_out.len());
        f(&mut self.asm, &mut self.out);
        f(&mut self.shadow, &mut self.shadow_out);
        assert_eq!(
            self.out[before..],
            self.shadow_out[shadow_before..],
            "the spilling assembler disagrees"
        );
        self.compare_shadow();
    }

    fn expire(&mut self, now: u64) {
        self.both(|a, out| a.expire(now, out));
    }

    /// A connection loss now.
    fn lost(&mut self) {
        let now = self.now;
        self.both(|a, _| a.connection_lost(now));
    }

    fn drain(&mut self, now: u64) {
        self.both(|a, out| a.drain(now, out));
    }

    fn default() -> Self {
        H::new(Limits::default())
    }

    /// Pushes with an explicit `items.img.time` (or none).
    fn push_t(&mut self, d: &DeviceId, value: &str, item_time: Option<i64>) -> Disposition {
        let m = ImgMessage {
            device: d.clone(),
            message_id: format!("m{}", self.next_tag),
            value: value.to_string(),
            item_time,
            gmt_create: None,
            request_id: None,
        };
        self.push_msg(&m)
    }

    fn push(&mut self, d: &DeviceId, value: &str, t: i64) -> Disposition {
        self.push_t(d, value, Some(t))
    }

    /// Pushes with an `items.img.time` and an Alink id (`requestId`).
    fn push_id(&mut self, d: &DeviceId, value: &str, t: i64, id: u32) -> Disposition {
        let m = ImgMessage {
            device: d.clone(),
            message_id: format!("m{}", self.next_tag),
            value: value.to_string(),
            item_time: Some(t),
            gmt_create: None,
            request_id: Some(id.to_string()),
        };
        self.push_msg(&m)
    }

    fn push_msg(&mut self, m: &ImgMessage) -> Disposition {
        let tag = self.next_tag;
        self.next_tag += 1;
        self.now += 1;
        let before = self.out.len();
        let shadow_before = self.shadow_out.len();
        let d = self.asm.push(m, tag, self.now, &mut self.out);
        let shadow_d = self.shadow.push(m, tag, self.now, &mut self.shadow_out);
        assert_eq!(d, shadow_d, "the spilling assembler disagrees on {m:?}");
        assert_eq!(
            self.out[before..],
            self.shadow_out[shadow_before..],
            "the spilling assembler disagrees on {m:?}"
        );
        self.compare_shadow();
        let new = &self.out[before..];
        match d {
            Disposition::Completed => assert!(
                new.iter()
                    .any(|a| matches!(a, Action::Write(f) if f.tags.contains(&tag))),
                "Completed, but no new Write holds tag {tag}: {new:?}"
            ),
            Disposition::Quarantined => assert!(
                new.iter()
                    .any(|a| matches!(a, Action::Quarantine(q) if q.tags.contains(&tag))),
                "Quarantined, but no new Quarantine holds tag {tag}: {new:?}"
            ),
            Disposition::Duplicate { attached: false } | Disposition::AfterQuarantine => {
                assert!(new.iter().all(|a| !a.tags().contains(&tag)));
                self.done_now.push(tag)
            }
            Disposition::Stored | Disposition::Duplicate { attached: true } => {}
        }
        assert!(self.asm.open_count() <= self.asm.limits().max_open.max(1));
        assert!(
            self.asm.buffered_bytes() <= self.asm.open_count() * self.asm.limits().max_image_bytes
        );
        d
    }

    fn expire_all(&mut self) {
        self.now += self.asm.limits().timeout_ms + 1;
        self.expire(self.now);
    }

    /// Expires everything and checks tag conservation.
    fn finish(&mut self) {
        self.expire_all();
        assert_eq!(self.asm.open_count(), 0);
        assert_eq!(self.asm.buffered_bytes(), 0);
        assert_eq!(self.asm.oldest_open_ms(), None);
        assert_eq!(self.asm.next_deadline(), None);
        assert_eq!(self.shadow.open_count(), 0);
        assert_eq!(
            self.shadow.cold_bytes(),
            0,
            "cold bytes left behind after everything settled"
        );
        let mut seen: BTreeMap<Tag, usize> = BTreeMap::new();
        for t in self
            .out
            .iter()
            .flat_map(|a| a.tags().iter())
            .chain(&self.done_now)
        {
            *seen.entry(*t).or_default() += 1;
        }
        for tag in 1..self.next_tag {
            assert_eq!(seen.get(&tag), Some(&1), "tag {tag} in {seen:?}");
        }
        assert_eq!(
            seen.len() as u64,
            self.next_tag - 1,
            "unknown tags: {seen:?}"
        );
    }

    fn writes(&self) -> Vec<&Finished> {
        self.out
            .iter()
            .filter_map(|a| match a {
                Action::Write(f) => Some(f),
                _ => None,
            })
            .collect()
    }

    fn quarantines(&self) -> Vec<&Quarantined> {
        self.out
            .iter()
            .filter_map(|a| match a {
                Action::Quarantine(q) => Some(q),
                _ => None,
            })
            .collect()
    }

    fn reasons(&self) -> Vec<&'static str> {
        self.quarantines().iter().map(|q| q.reason).collect()
    }
}

// ---------------------------------------------------------------------------------------------
// v2

#[test]
fn v2_any_order_completes_and_late_duplicates_are_dropped() {
    let img = jpeg(1000, 1);
    let values = v2(&img, 17, 99);
    let d = dev("cam");
    let mut h = H::default();
    let n = values.len();
    for (i, v) in values.iter().enumerate().rev().skip(1) {
        assert_eq!(h.push(&d, v, T0 + i as i64), Disposition::Stored);
    }
    assert_eq!(
        h.push(&d, &values[n - 2], T0),
        Disposition::Duplicate { attached: true }
    );
    assert_eq!(h.asm.open_count(), 1);
    assert_eq!(h.push(&d, &values[n - 1], T0 + 50), Disposition::Completed);
    assert_eq!(h.asm.open_count(), 0);
    // Late duplicates of the finished picture: done at once, no new picture.
    assert_eq!(
        h.push(&d, &values[0], T0),
        Disposition::Duplicate { attached: false }
    );
    assert_eq!(h.asm.open_count(), 0);
    h.finish();
    let w = h.writes();
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].bytes, img);
    assert_eq!(w[0].pid, Some(17));
    assert_eq!(w[0].chunks, n);
    assert_eq!(w[0].format, Format::V2);
    assert_eq!(w[0].name_time_ms, T0);
    assert_eq!(w[0].tags.len(), n + 1);
    assert!(h.quarantines().is_empty());
}

#[test]
fn v2_interleaves_pictures_of_one_device_with_a_v1_picture() {
    let (a, b, c) = (jpeg(500, 2), jpeg(700, 3), jpeg(300, 4));
    let (va, vb, vc) = (v2(&a, 1, 60), v2(&b, 2, 90), v1(&c, 40));
    let d = dev("cam");
    let mut h = H::default();
    let longest = va.len().max(vb.len()).max(vc.len());
    for i in 0..longest {
        if let Some(v) = va.get(i) {
            h.push(&d, v, T0 + i as i64);
        }
        if let Some(v) = vb.get(vb.len().saturating_sub(1 + i)) {
            if i < vb.len() {
                h.push(&d, v, T0 + i as i64);
            }
        }
        if let Some(v) = vc.get(i) {
            h.push(&d, v, T0 + 10 * i as i64);
        }
    }
    h.finish();
    let mut got: Vec<Vec<u8>> = h.writes().iter().map(|w| w.bytes.clone()).collect();
    got.sort();
    let mut want = vec![a, b, c];
    want.sort();
    assert_eq!(got, want);
    assert!(h.quarantines().is_empty(), "{:?}", h.reasons());
}

#[test]
fn v2_pid_reuse_with_another_crc_starts_a_new_picture() {
    let (a, b) = (jpeg(100, 5), jpeg(130, 6));
    let d = dev("cam");
    let mut h = H::default();
    for v in v2(&a, 9, 30) {
        h.push(&d, &v, T0);
    }
    for v in v2(&b, 9, 30) {
        h.push(&d, &v, T0 + 1000);
    }
    h.finish();
    let w = h.writes();
    assert_eq!(w.len(), 2);
    assert_eq!((&w[0].bytes, &w[1].bytes), (&a, &b));
}

#[test]
fn v2_header_mismatch_names_both_headers() {
    let img = jpeg(100, 7);
    let values = v2(&img, 3, 30);
    let d = dev("cam");
    let mut h = H::default();
    h.push(&d, &values[0], T0);
    let bad = with_field(&values[1], 5, "0BADC0DE");
    assert_eq!(h.push(&d, &bad, T0 + 1), Disposition::Quarantined);
    let q = h.quarantines()[0].clone();
    assert_eq!(q.reason, "header_mismatch");
    assert!(q.detail.contains("crc=0BADC0DE"), "{}", q.detail);
    assert!(
        q.detail.contains(&format!("crc={:08X}", wire::crc32(&img))),
        "{}",
        q.detail
    );
    assert_eq!(q.tags, vec![1, 2]);
    assert_eq!(q.pid, Some(3));
    h.finish();
    assert!(h.writes().is_empty());
}

#[test]
fn v2_chunk_conflict_and_identical_duplicate() {
    let img = jpeg(100, 8);
    let values = v2(&img, 3, 30);
    let d = dev("cam");
    let mut h = H::default();
    h.push(&d, &values[0], T0);
    assert_eq!(
        h.push(&d, &values[0], T0),
        Disposition::Duplicate { attached: true }
    );
    let other = with_field(&values[0], 6, &"AAAA".repeat(10));
    assert_eq!(h.push(&d, &other, T0), Disposition::Quarantined);
    assert_eq!(h.reasons(), vec!["chunk_conflict"]);
    assert_eq!(h.quarantines()[0].tags, vec![1, 2, 3]);
    h.finish();
}

#[test]
fn v2_pieces_over_size_are_a_length_mismatch_at_once() {
    let img = jpeg(100, 9);
    let values = v2(&img, 3, 30);
    let d = dev("cam");
    let mut h = H::default();
    // Every chunk claims 40 bytes: the second 30-byte piece already overflows.
    let small: Vec<String> = values.iter().map(|v| with_field(v, 4, "40")).collect();
    assert_eq!(h.push(&d, &small[0], T0), Disposition::Stored);
    assert_eq!(h.push(&d, &small[1], T0), Disposition::Quarantined);
    assert_eq!(h.reasons(), vec!["length_mismatch"]);
    assert_eq!(h.asm.buffered_bytes(), 0);
    h.finish();
}

#[test]
fn v2_boundary_rule_spares_the_last_piece() {
    // 190 bytes in pieces of 30: the last is 10 bytes (not a multiple of 3) and is fine.
    let img = jpeg(190 - JPEG_HEAD_LEN - 2, 10);
    let values = v2(&img, 4, 30);
    assert_eq!(img.len() % 30, 10);
    let d = dev("cam");
    let mut h = H::default();
    for v in &values {
        h.push(&d, v, T0);
    }
    assert_eq!(h.writes().len(), 1);
    // A first piece of 4 bytes is a boundary error, alone since nothing is open.
    let bad = with_field(&values[0], 1, "5");
    let bad = with_field(&bad, 6, "AAAAAA==");
    assert_eq!(h.push(&d, &bad, T0), Disposition::Quarantined);
    assert_eq!(h.reasons(), vec!["bad_boundary"]);
    assert_eq!(h.quarantines()[0].bytes, bad.as_bytes());
    h.finish();
}

#[test]
fn v2_too_large_is_settled_once_without_buffering() {
    let img = jpeg(2000, 11);
    let values = v2(&img, 5, 300);
    let d = dev("cam");
    let mut h = H::new(Limits {
        max_image_bytes: 1000,
        ..Limits::default()
    });
    let n = values.len();
    for v in &values[..n - 1] {
        assert_eq!(h.push(&d, v, T0), Disposition::Stored);
        assert_eq!(h.asm.buffered_bytes(), 0);
    }
    assert_eq!(
        h.push(&d, &values[0], T0),
        Disposition::Duplicate { attached: true }
    );
    assert!(h.quarantines().is_empty());
    assert_eq!(h.push(&d, &values[n - 1], T0), Disposition::Quarantined);
    assert_eq!(h.reasons(), vec!["too_large"]);
    assert_eq!(h.quarantines()[0].tags.len(), n + 1);
    // A late chunk of it: dropped after the quarantine, not a new picture.
    assert_eq!(h.push(&d, &values[2], T0), Disposition::AfterQuarantine);
    assert_eq!(h.asm.open_count(), 0);
    h.finish();
    assert_eq!(h.reasons(), vec!["too_large"]);
}

#[test]
fn v2_expiry_lists_missing_seqs() {
    let img = jpeg(300, 12);
    let values = v2(&img, 6, 30);
    let d = dev("cam");
    let mut h = H::default();
    for (i, v) in values.iter().enumerate() {
        if ![2, 5, 6, 7].contains(&i) {
            h.push(&d, v, T0);
        }
    }
    let last = h.now;
    let timeout = h.asm.limits().timeout_ms;
    assert_eq!(h.asm.next_deadline(), Some(last + timeout + 1));
    h.expire(last + timeout);
    assert_eq!(h.asm.open_count(), 1, "idle == timeout is not yet expired");
    h.expire(last + timeout + 1);
    assert_eq!(h.asm.open_count(), 0);
    let q = h.quarantines()[0].clone();
    assert_eq!(q.reason, "expired");
    assert_eq!(q.missing, vec![2, 5, 6, 7]);
    assert!(q.detail.contains("missing seq 2, 5-7"), "{}", q.detail);
    h.finish();
}

#[test]
fn v2_bad_chunk_takes_its_open_picture_along() {
    let img = jpeg(300, 13);
    let values = v2(&img, 8, 30);
    let d = dev("cam");
    let mut h = H::default();
    h.push(&d, &values[0], T0);
    h.push(&d, &values[1], T0);
    // Broken Base64 in a chunk of pid 8.
    let bad = with_field(&values[2], 6, "!!!!");
    assert_eq!(h.push(&d, &bad, T0), Disposition::Quarantined);
    let q = h.quarantines()[0].clone();
    assert_eq!((q.reason, q.tags.len(), q.pid), ("bad_base64", 3, Some(8)));
    assert_eq!(q.missing.len(), values.len() - 2);
    // The rest of pid 8 comes after its quarantine: no second record.
    assert_eq!(h.push(&d, &values[3], T0), Disposition::AfterQuarantine);
    assert_eq!(h.quarantines().len(), 1);
    // A header that does not parse (seq >= count), but whose pid still reads as 9: it takes
    // pid 9's open picture along.
    let other = v2(&img, 9, 30);
    h.push(&d, &other[0], T0);
    let bad = with_field(&other[1], 2, "999");
    assert_eq!(h.push(&d, &bad, T0), Disposition::Quarantined);
    let q = h.quarantines()[1].clone();
    assert_eq!((q.reason, q.tags.len(), q.pid), ("bad_header", 2, Some(9)));
    // A broken header is never attributed to a settled picture: alone, even under pid 8.
    let bad = with_field(&values[4], 2, "999");
    assert_eq!(h.push(&d, &bad, T0), Disposition::Quarantined);
    assert_eq!(h.quarantines()[2].reason, "bad_header");
    assert_eq!(h.quarantines()[2].tags.len(), 1);
    // Unreadable pid: alone.
    assert_eq!(
        h.push(&d, "V2;x;0;1;4;00000000;AAAA", T0),
        Disposition::Quarantined
    );
    assert_eq!(h.quarantines()[3].tags.len(), 1);
    h.finish();
    assert_eq!(h.quarantines().len(), 4);
}

#[test]
fn v2_size_and_crc_right_but_not_a_jpeg() {
    let d = dev("cam");
    let mut h = H::default();
    // No JPEG markers.
    let img = b"not a jpeg at all".to_vec();
    for v in v2(&img, 1, 6) {
        h.push(&d, &v, T0);
    }
    assert_eq!(h.reasons(), vec!["invalid_jpeg"]);
    let q = h.quarantines()[0].clone();
    assert_eq!((q.bytes, q.pid), (img, Some(1)));
    assert!(
        q.detail
            .contains("match size and CRC but do not start FF D8 and end FF D9"),
        "{}",
        q.detail
    );
    // The markers are right but the stream is not well-formed (the frame header's length is
    // one too many): the same check as v1 (without decode_check), the same reason.
    let mut bad = jpeg(100, 14);
    bad[5] += 1;
    assert!(wire::has_jpeg_markers(&bad));
    assert!(crate::jpeg::structure_ok(&bad).is_err());
    let values = v2(&bad, 2, 30);
    for v in &values[..values.len() - 1] {
        assert_eq!(h.push(&d, v, T0), Disposition::Stored);
    }
    assert_eq!(
        h.push(&d, &values[values.len() - 1], T0),
        Disposition::Quarantined
    );
    let q = h.quarantines()[1].clone();
    assert_eq!((q.reason, &q.bytes, q.pid), ("invalid_jpeg", &bad, Some(2)));
    assert!(q.missing.is_empty());
    assert!(
        q.detail
            .contains("match size and CRC but are not a well-formed JPEG stream: "),
        "{}",
        q.detail
    );
    // A late copy of one of its chunks: no second record.
    assert_eq!(h.push(&d, &values[0], T0), Disposition::AfterQuarantine);
    h.finish();
    assert_eq!(h.reasons(), vec!["invalid_jpeg", "invalid_jpeg"]);
}

/// One record per picture: once a picture is quarantined for what it holds, its later chunks
/// (same pid, size and CRC) are `AfterQuarantine`, whatever the reason, whether the bad chunk
/// came first (a lone record) or joined an open picture.
#[test]
fn v2_later_chunks_of_a_quarantined_picture_give_no_second_record() {
    let img = jpeg(300, 15);
    let values = v2(&img, 8, 30);
    let n = values.len();
    assert!(n >= 6);
    let field = |i: usize, f: usize, new: &str| with_field(&values[i], f, new);
    let size = img.len();
    let mut cases: Vec<(&str, Vec<String>, usize)> = Vec::new();
    // (reason, arrivals, index of the arrival that emits the record)
    let mut with = |reason, i: usize, bad: String, at_front: bool| {
        let mut a = values.clone();
        if at_front {
            a.remove(i);
            a.insert(0, bad);
            cases.push((reason, a, 0));
        } else {
            a[i] = bad;
            cases.push((reason, a, i));
        }
    };
    with("bad_base64", 0, field(0, 6, "!!!!"), true);
    with("bad_base64", 3, field(3, 6, "!!!!"), false);
    with("bad_base64", 2, field(2, 6, ""), true);
    with("bad_base64", 2, field(2, 6, "AAA"), false);
    with("bad_boundary", 1, field(1, 6, "AAAAAA=="), false);
    with("bad_boundary", 1, field(1, 6, "AAAAAA=="), true);
    with(
        "header_mismatch",
        2,
        field(2, 4, &(size + 3).to_string()),
        false,
    );
    // The odd header first (opens the picture), the record at the next chunk: the rest, with
    // the other header, belongs to the record too.
    let mut odd_first = values.clone();
    odd_first.remove(2);
    odd_first.insert(0, field(2, 4, &(size + 3).to_string()));
    cases.push(("header_mismatch", odd_first, 1));
    let mut conflict = values.clone();
    conflict.insert(2, field(1, 6, &"AAAA".repeat(10)));
    cases.push(("chunk_conflict", conflict, 2));
    let small: Vec<String> = (0..n).map(|i| field(i, 4, "40")).collect();
    cases.push(("length_mismatch", small, 1));
    let wrong: Vec<String> = (0..n).map(|i| field(i, 5, "DEADBEEF")).collect();
    let mut wrong_then_dup = wrong.clone();
    wrong_then_dup.push(wrong[0].clone());
    cases.push(("crc_mismatch", wrong_then_dup, n - 1));
    for (want, arrivals, at) in cases {
        let d = dev("cam");
        let mut h = H::default();
        let disp: Vec<Disposition> = arrivals.iter().map(|v| h.push(&d, v, T0)).collect();
        assert_eq!(disp[at], Disposition::Quarantined, "{want}: {disp:?}");
        assert!(
            disp[at + 1..]
                .iter()
                .all(|d| *d == Disposition::AfterQuarantine),
            "{want}: {disp:?}"
        );
        assert_eq!(h.asm.open_count(), 0, "{want}");
        h.finish();
        assert_eq!(h.reasons(), vec![want], "{want}");
        assert_eq!(h.quarantines()[0].pid, Some(8), "{want}");
        assert!(h.writes().is_empty());
    }
}

/// The memory of a quarantined picture lasts at least the timeout; afterwards a resend of the
/// picture (same pid, size and CRC) is assembled again and can be written.
#[test]
fn v2_quarantine_memory_lapses_after_the_timeout_and_a_resend_delivers() {
    let img = jpeg(300, 16);
    let values = v2(&img, 4, 30);
    let d = dev("cam");
    let mut h = H::new(Limits {
        timeout_ms: 1000,
        ..Limits::default()
    });
    let bad = with_field(&values[0], 6, "!!!!");
    assert_eq!(h.push(&d, &bad, T0), Disposition::Quarantined);
    assert_eq!(h.push(&d, &values[1], T0), Disposition::AfterQuarantine);
    assert_eq!(h.asm.remembered_count(), 1);
    // Still remembered when the timeout has passed since the record.
    h.now += 998;
    assert_eq!(h.push(&d, &values[2], T0), Disposition::AfterQuarantine);
    h.now += 1001;
    h.expire(h.now);
    assert_eq!(h.asm.remembered_count(), 0);
    for v in &values {
        h.push(&d, v, T0);
    }
    h.finish();
    assert_eq!(h.reasons(), vec!["bad_base64"]);
    assert_eq!(h.writes().len(), 1);
    assert_eq!(h.writes()[0].bytes, img);
}

/// An expired picture was incomplete, not wrong: it is not remembered, so its late chunks and a
/// resend open a new assembly that can still deliver the picture.
#[test]
fn v2_expired_picture_is_not_remembered() {
    let img = jpeg(300, 17);
    let values = v2(&img, 5, 30);
    let n = values.len();
    let d = dev("cam");
    let mut h = H::default();
    for v in &values[..n - 1] {
        h.push(&d, v, T0);
    }
    h.expire_all();
    assert_eq!(h.reasons(), vec!["expired"]);
    assert_eq!(h.push(&d, &values[n - 1], T0), Disposition::Stored);
    for v in &values[..n - 2] {
        assert_eq!(h.push(&d, v, T0), Disposition::Stored);
    }
    assert_eq!(h.push(&d, &values[n - 2], T0), Disposition::Completed);
    h.finish();
    assert_eq!(h.reasons(), vec!["expired"]);
    assert_eq!(h.writes()[0].bytes, img);
}

/// `length_mismatch` is reported at exactly two moments: when a new piece would bring the
/// stored bytes over `size` (at once, chunks may still be missing), or when the last missing
/// piece arrives and the total is short. Nothing is inferred from the least size the missing
/// pieces could have.
#[test]
fn v2_length_mismatch_moments() {
    let d = dev("cam");
    let mut h = H::default();
    // count 3, size 7: piece 0 has 6 bytes and piece 2 has 1, so piece 1 (at least 3 bytes)
    // cannot fit; no record yet.
    let v = |seq: u32, data: &str| format!("V2;5;{seq};3;7;0000ABCD;{data}");
    assert_eq!(h.push(&d, &v(0, "AAAAAAAA"), T0), Disposition::Stored);
    assert_eq!(h.push(&d, &v(2, "AA=="), T0), Disposition::Stored);
    assert!(h.quarantines().is_empty());
    assert_eq!(h.asm.buffered_bytes(), 7);
    // Piece 1 overflows: the record holds the stored pieces, not the overflowing one.
    assert_eq!(h.push(&d, &v(1, "AAAA"), T0), Disposition::Quarantined);
    let q = h.quarantines()[0].clone();
    assert_eq!(q.reason, "length_mismatch");
    assert_eq!(q.bytes.len(), 7);
    assert_eq!(q.tags, vec![1, 2, 3]);
    assert_eq!(q.missing, vec![1]);
    assert!(
        q.detail
            .contains("seq 1 adds 3 byte(s) to 7 already present"),
        "{}",
        q.detail
    );
    // Over size while chunks are missing: at once.
    let img = jpeg(100, 9);
    let values = v2(&img, 6, 30);
    let claim40: Vec<String> = values.iter().map(|v| with_field(v, 4, "40")).collect();
    assert_eq!(h.push(&d, &claim40[2], T0), Disposition::Stored);
    assert_eq!(h.push(&d, &claim40[0], T0), Disposition::Quarantined);
    let q = h.quarantines()[1].clone();
    assert_eq!(
        (q.reason, q.missing.len()),
        ("length_mismatch", values.len() - 1)
    );
    // Short: only when the last piece arrives.
    let claim_more: Vec<String> = values
        .iter()
        .map(|v| with_field(v, 4, &(img.len() + 1).to_string()))
        .collect();
    let m = claim_more.len();
    for v in &claim_more[..m - 1] {
        assert_eq!(h.push(&d, v, T0), Disposition::Stored);
    }
    assert_eq!(h.quarantines().len(), 2);
    assert_eq!(h.push(&d, &claim_more[m - 1], T0), Disposition::Quarantined);
    let q = h.quarantines()[2].clone();
    assert_eq!(q.reason, "length_mismatch");
    assert!(q.detail.contains("all "), "{}", q.detail);
    h.finish();
    assert_eq!(h.quarantines().len(), 3);
}

/// A too-large picture gives one record however its chunks arrive, also when some never come
/// (at the timeout); its later chunks come after the quarantine.
#[test]
fn v2_too_large_gives_one_record_per_picture() {
    let img = jpeg(2000, 18);
    let values = v2(&img, 5, 300);
    let n = values.len();
    let d = dev("cam");
    let mut h = H::new(Limits {
        max_image_bytes: 1000,
        ..Limits::default()
    });
    for v in values[..n - 2].iter().rev() {
        assert_eq!(h.push(&d, v, T0), Disposition::Stored);
    }
    h.expire_all();
    assert_eq!(h.reasons(), vec!["too_large"]);
    let q = h.quarantines()[0].clone();
    assert_eq!(q.tags.len(), n - 2);
    assert_eq!(q.missing, vec![n as u32 - 2, n as u32 - 1]);
    assert!(q.bytes.is_empty());
    for v in &values {
        assert_eq!(h.push(&d, v, T0), Disposition::AfterQuarantine);
    }
    h.finish();
    assert_eq!(h.reasons(), vec!["too_large"]);
}

/// `V02;`, `V;`, `V2` are broken headers (alone, no pid); `V3;` is an unknown version.
#[test]
fn v2_version_edge_cases_are_lone_records() {
    let d = dev("cam");
    let mut h = H::default();
    let ok = v2(&jpeg(100, 19), 7, 30);
    h.push(&d, &ok[0], T0);
    let rest = &ok[0][2..];
    for (value, want) in [
        (format!("V02{rest}"), "bad_header"),
        (format!("V{rest}"), "bad_header"),
        ("V2".to_string(), "bad_header"),
        (format!("V3{rest}"), "unsupported_version"),
        (format!("V99999999999{rest}"), "unsupported_version"),
    ] {
        assert_eq!(h.push(&d, &value, T0), Disposition::Quarantined, "{value}");
        let q = h.quarantines().last().cloned().unwrap();
        assert_eq!((q.reason, q.pid, q.tags.len()), (want, None, 1), "{value}");
    }
    // The open picture of pid 7 was not touched.
    assert_eq!(h.asm.open_count(), 1);
    for v in &ok[1..] {
        h.push(&d, v, T0);
    }
    h.finish();
    assert_eq!(h.writes().len(), 1);
}

// ---------------------------------------------------------------------------------------------
// v1

#[test]
fn v1_end_before_a_chunk_then_the_late_chunk_completes() {
    let img = jpeg(300, 20);
    let values = v1(&img, 100);
    let n = values.len();
    let d = dev("cam");
    let mut h = H::default();
    for (i, v) in values.iter().enumerate() {
        if i != n - 2 {
            h.push(&d, v, T0 + 10 * i as i64);
        }
    }
    // END arrived without the last data chunk: invalid, kept open.
    assert!(h.out.is_empty());
    assert_eq!(h.asm.open_count(), 1);
    assert_eq!(
        h.push(&d, &values[n - 2], T0 + 10 * (n as i64 - 2)),
        Disposition::Completed
    );
    h.finish();
    assert_eq!(h.writes()[0].bytes, img);
    assert_eq!(h.writes()[0].chunks, n - 1);
    assert_eq!(h.writes()[0].tags.len(), n);
    assert!(h.quarantines().is_empty());
}

#[test]
fn v1_invalid_picture_waits_for_its_late_chunk_while_the_next_completes() {
    let (a, b) = (jpeg(300, 21), jpeg(200, 22));
    let (va, vb) = (v1(&a, 100), v1(&b, 100));
    let d = dev("cam");
    let mut h = H::default();
    // Picture a without its first chunk.
    for (i, v) in va.iter().enumerate().skip(1) {
        h.push(&d, v, T0 + 10 * i as i64);
    }
    assert!(h.out.is_empty());
    // Picture b, later, completes; a stays open for its missing chunk until the timeout.
    for (i, v) in vb.iter().enumerate() {
        h.push(&d, v, T0 + 1000 + 10 * i as i64);
    }
    assert_eq!(h.writes().len(), 1);
    assert_eq!(h.writes()[0].bytes, b);
    assert!(h.reasons().is_empty());
    assert_eq!(h.asm.open_count(), 1);
    h.finish();
    assert_eq!(h.reasons(), vec!["invalid_jpeg"]);
    assert_eq!(h.quarantines()[0].tags.len(), va.len() - 1);
    assert!(h.quarantines()[0].detail.contains("FF D8"));
}

#[test]
fn v1_end_leaves_newer_chunks_as_the_next_picture() {
    let (a, b) = (jpeg(300, 23), jpeg(200, 24));
    let (va, vb) = (v1(&a, 100), v1(&b, 100));
    let d = dev("cam");
    let mut h = H::default();
    let (a_end, a_data) = va.split_last().unwrap();
    for (i, v) in a_data.iter().enumerate() {
        h.push(&d, v, T0 + 10 * i as i64);
    }
    // b's first chunk is delivered before a's END.
    h.push(&d, &vb[0], T0 + 1000);
    assert_eq!(h.push(&d, a_end, T0 + 500), Disposition::Completed);
    assert_eq!(h.asm.open_count(), 1);
    for (i, v) in vb.iter().enumerate().skip(1) {
        h.push(&d, v, T0 + 1000 + 10 * i as i64);
    }
    h.finish();
    let w = h.writes();
    assert_eq!(w.len(), 2);
    assert_eq!((&w[0].bytes, &w[1].bytes), (&a, &b));
    assert!(h.quarantines().is_empty());
}

/// One v1 message: value, item time, Alink id.
type Msg1 = (String, i64, u32);

/// Consecutive pictures of one device as our firmware sends them in v1: times strictly increasing
/// by 7 ms per message, Alink ids `pid * 1000 + seq` (pids from 1000), `END` last.
fn pictures(imgs: &[&[u8]], hex: usize) -> Vec<Vec<Msg1>> {
    let mut t = T0;
    (0u32..)
        .zip(imgs)
        .map(|(p, img)| {
            (0u32..)
                .zip(v1(img, hex))
                .map(|(seq, v)| {
                    t += 7;
                    (v, t, wire::alink_id(1000 + p, seq))
                })
                .collect()
        })
        .collect()
}

/// Pushes `pics`' messages in `order` (indices into their concatenation), with or without ids.
fn push_order(
    h: &mut H,
    d: &DeviceId,
    pics: &[Vec<Msg1>],
    order: &[usize],
    ids: bool,
) -> Vec<Disposition> {
    let all: Vec<&Msg1> = pics.iter().flatten().collect();
    order
        .iter()
        .map(|&i| match ids {
            true => h.push_id(d, &all[i].0, all[i].1, all[i].2),
            false => h.push(d, &all[i].0, all[i].1),
        })
        .collect()
}

/// Two small real JPEGs (96x72) in the firmware's 400-byte chunks: 5 messages each plus `END`.
fn two_real() -> (Vec<u8>, Vec<u8>, Vec<Vec<Msg1>>) {
    let a = receiver_testkit::sample::scene_jpeg(96, 72, 1, "CRASH", 70).unwrap();
    let b = receiver_testkit::sample::scene_jpeg(96, 72, 2, "CRASH", 70).unwrap();
    let pics = pictures(&[&a, &b], 800);
    assert_eq!((pics[0].len(), pics[1].len()), (6, 6));
    (a, b, pics)
}

/// Real pictures for the v1 integrity tests: the golden images and sample frames at several
/// sizes and qualities.
fn real_pictures() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = ["tiny.jpg", "qvga.jpg", "odd.jpg"]
        .iter()
        .map(|n| {
            let path = format!(
                "{}/../../tests/vectors/images/{n}",
                env!("CARGO_MANIFEST_DIR")
            );
            std::fs::read(path).unwrap()
        })
        .collect();
    for (w, hgt, q) in [(96, 72, 70), (160, 120, 30), (320, 240, 85)] {
        v.push(receiver_testkit::sample::scene_jpeg(w, hgt, w, "V1", q).unwrap());
    }
    v
}

/// Every 400-byte chunk (first, middle, last) removed in turn from every real picture: the
/// rest plus its `END` is never written, and goes to quarantine (`invalid_jpeg`) at the
/// timeout with the reason in the detail.
#[test]
fn v1_any_single_chunk_missing_is_never_written() {
    let d = dev("cam");
    let mut cases = 0;
    for img in real_pictures() {
        let values = v1(&img, 800);
        let data = values.len() - 1;
        for gone in 0..data {
            let mut h = H::default();
            for (i, v) in values.iter().enumerate().filter(|(i, _)| *i != gone) {
                h.push(&d, v, T0 + i as i64);
            }
            h.finish();
            assert!(
                h.writes().is_empty(),
                "chunk {gone} of {data} missing, yet written"
            );
            assert_eq!(h.reasons(), vec!["invalid_jpeg"], "chunk {gone} of {data}");
            let detail = &h.quarantines()[0].detail;
            let why = ["FF D8", "exact check", "well-formed"];
            assert!(why.iter().any(|w| detail.contains(w)), "{detail}");
            cases += 1;
        }
    }
    assert!(cases > 50, "{cases}");
}

/// The head of one picture joined to the tail of another of a different scene from the same
/// camera (same headers), cut at every chunk boundary inside the scan data: never written.
/// (A cut inside the headers gives the second picture itself: its headers are the same.)
#[test]
fn v1_pictures_joined_from_two_are_never_written() {
    let d = dev("cam");
    let a = receiver_testkit::sample::scene_jpeg(320, 240, 3, "HEAD", 60).unwrap();
    let b = receiver_testkit::sample::scene_jpeg(320, 240, 40, "TAIL", 60).unwrap();
    let (va, vb) = (v1(&a, 800), v1(&b, 800));
    let n = (va.len() - 1).min(vb.len() - 1);
    // The scan data starts after the SOS segment.
    let sos = a.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
    let first_scan_chunk = (sos + 14).div_ceil(400);
    assert!(n > first_scan_chunk + 8);
    let (mut rejected, mut passed) = (0, Vec::new());
    for k in first_scan_chunk..n {
        let mut h = H::default();
        let head = va[..k].iter();
        let tail = vb[k..].iter();
        for (i, v) in head.chain(tail).enumerate() {
            h.push(&d, v, T0 + i as i64);
        }
        h.finish();
        let joined = [&a[..400 * k], &b[400 * k..]].concat();
        if joined == b {
            // Both scenes start alike (sky): the join is the second picture, byte for byte.
            assert_eq!(h.writes().len(), 1);
            continue;
        }
        if h.writes().is_empty() {
            assert_eq!(h.reasons(), vec!["invalid_jpeg"], "joined at {k}");
            rejected += 1;
        } else {
            passed.push(k);
        }
    }
    // The exact check alone: a join whose bit streams fall back into step on the right MCU
    // decodes like a picture (docs/protocol.md 2, the probability argument). Measured here:
    // 1 of 19 joins. Where a join can happen at all (chunks lost in flight on a cut connection),
    // the redelivery grace keeps it from being written: the test below.
    assert!(
        rejected >= 8 && passed.len() * 5 <= rejected,
        "{rejected} rejected, passed at {passed:?}"
    );
}

/// The same joins as above, but as a cut connection makes them: A's head arrived before the
/// loss, B's tail after it, and the rest (A's tail, its `END`, B's head) comes back later. With
/// the redelivery grace, no join is ever written, and both pictures come out whole.
#[test]
fn v1_pictures_joined_across_a_loss_are_never_written() {
    let d = dev("cam");
    let a = receiver_testkit::sample::scene_jpeg(320, 240, 3, "HEAD", 60).unwrap();
    let b = receiver_testkit::sample::scene_jpeg(320, 240, 40, "TAIL", 60).unwrap();
    let (va, vb) = (v1(&a, 800), v1(&b, 800));
    let ta = |i: usize| T0 + i as i64;
    let tb = |i: usize| T0 + 1000 + i as i64;
    for k in 1..va.len().min(vb.len()) - 1 {
        let mut h = with_grace(5_000);
        for (i, v) in va.iter().enumerate().take(k) {
            h.push(&d, v, ta(i));
        }
        h.lost();
        for (i, v) in vb.iter().enumerate().skip(k) {
            h.push(&d, v, tb(i));
        }
        assert!(
            h.writes().is_empty(),
            "joined at {k}: written before the redelivery"
        );
        for (i, v) in va.iter().enumerate().skip(k) {
            h.push(&d, v, ta(i));
        }
        for (i, v) in vb.iter().enumerate().take(k) {
            h.push(&d, v, tb(i));
        }
        h.finish();
        assert!(h.reasons().is_empty(), "joined at {k}: {:?}", h.reasons());
        let mut got: Vec<&Vec<u8>> = h.writes().iter().map(|w| &w.bytes).collect();
        got.sort();
        let mut want = vec![&a, &b];
        want.sort();
        assert!(got == want, "joined at {k}: not both pictures whole");
    }
}

#[test]
fn v1_next_picture_overtaking_an_end_is_split_off_when_the_end_comes() {
    // The crash-test order: c1 c2 c3 | picture 2 with its END | c4 c5 END1 (redelivered late).
    // The merged prefix is rejected by the JPEG structure alone (no ids needed).
    let (a, b, pics) = two_real();
    let order = [0, 1, 2, 6, 7, 8, 9, 10, 11, 3, 4, 5];
    let d = dev("cam");
    let mut h = H::default();
    push_order(&mut h, &d, &pics, &order, false);
    h.finish();
    let w = h.writes();
    assert!(h.reasons().is_empty(), "{:?}", h.quarantines());
    assert_eq!(w.len(), 2);
    assert_eq!((&w[0].bytes, &w[1].bytes), (&a, &b));
    assert_eq!((w[0].tags.len(), w[1].tags.len()), (6, 6));
    assert_eq!(w[1].name_time_ms, pics[1][0].1);
}

#[test]
fn v1_picture_settled_under_the_next_end_leaves_room_for_the_next_picture() {
    // c1 c2 c3 | END2 | c4 c5 END1 | picture 2's data: picture 1 is whole before END1 and settles
    // under END2; END1 is then redundant, and picture 2 settles under END2 too.
    // (Without Alink ids: with them, picture 1 would wait for END1.)
    let (a, b, pics) = two_real();
    let order = [0, 1, 2, 11, 3, 4, 5, 6, 7, 8, 9, 10];
    let d = dev("cam");
    let mut h = H::default();
    let disp = push_order(&mut h, &d, &pics, &order, false);
    // Picture 1 completes with its last data chunk; END1 is redundant.
    assert_eq!(disp[5], Disposition::Completed);
    assert_eq!(disp[6], Disposition::Duplicate { attached: false });
    assert_eq!(disp[11], Disposition::Completed);
    // A late copy of each END, and of a chunk of each picture: duplicates.
    let dup = Disposition::Duplicate { attached: false };
    for i in [5, 11, 1, 7] {
        assert_eq!(push_order(&mut h, &d, &pics, &[i], false), vec![dup], "{i}");
    }
    h.finish();
    let w = h.writes();
    assert!(h.reasons().is_empty(), "{:?}", h.quarantines());
    assert_eq!(w.len(), 2);
    assert_eq!((&w[0].bytes, &w[1].bytes), (&a, &b));
}

#[test]
fn v1_alink_ids_keep_apart_what_the_jpeg_structure_cannot() {
    // c1..c4 | c5, END1, picture 2's c1, c2 are late | picture 2's c3..c5, END2 | the late ones.
    // Cut at 1600 and resumed at 800, both inside scan data: the mix is a well-formed JPEG.
    let (a, b, pics) = two_real();
    let order = [0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7];
    let d = dev("cam");
    // Without ids (the original firmware), the exact check of the scan rejects the mix (it used
    // to be written: the old known limit); the late chunks then complete both pictures.
    let mixed = [&a[..1600], &b[800..]].concat();
    assert!(
        crate::jpeg::structure_ok(&mixed).is_ok(),
        "the mix is well-formed"
    );
    assert!(crate::jpeg::entropy_check(&mixed).is_err());
    let mut h = H::default();
    let disp = push_order(&mut h, &d, &pics, &order, false);
    assert_eq!(disp[7], Disposition::Stored, "the mix is not written");
    h.finish();
    assert!(h.reasons().is_empty(), "{:?}", h.quarantines());
    let mut got: Vec<&Vec<u8>> = h.writes().iter().map(|w| &w.bytes).collect();
    got.sort();
    let mut want = vec![&a, &b];
    want.sort();
    assert!(got == want, "both pictures whole");
    // With our firmware's ids, both pictures come out whole.
    let mut h = H::default();
    let disp = push_order(&mut h, &d, &pics, &order, true);
    assert_eq!(disp[7], Disposition::Stored, "held by the ids");
    h.finish();
    assert!(h.reasons().is_empty(), "{:?}", h.quarantines());
    let w = h.writes();
    assert_eq!((&w[0].bytes, &w[1].bytes), (&a, &b));
    // A lost middle chunk of scan data: held by the ids until it comes.
    let mut h = H::default();
    let disp = push_order(&mut h, &d, &pics, &[0, 1, 3, 4, 5, 2], true);
    assert_eq!(disp[4], Disposition::Stored);
    assert_eq!(disp[5], Disposition::Completed);
    h.finish();
    assert_eq!(h.writes()[0].bytes, a);
}

#[test]
fn v1_ids_of_another_scheme_only_delay_a_picture() {
    let img = receiver_testkit::sample::scene_jpeg(96, 72, 5, "C", 70).unwrap();
    let values = v1(&img, 800);
    let d = dev("cam");
    // Millisecond timestamps as ids: distinct, not consecutive. Held, then written at the
    // timeout on its bytes alone.
    let mut h = H::default();
    for (i, v) in values.iter().enumerate() {
        h.push_id(&d, v, T0 + i as i64, 5_000 + 37 * i as u32);
    }
    assert!(h.out.is_empty());
    h.finish();
    assert_eq!(h.writes()[0].bytes, img);
    // The original firmware's constant id: no say, written at the END.
    let mut h = H::default();
    for (i, v) in values.iter().enumerate() {
        h.push_id(&d, v, T0 + i as i64, 1_189_401_707);
    }
    assert_eq!(h.writes().len(), 1);
    // A message counter (consecutive ids across a multiple of 1000): written at the END.
    let mut h = H::default();
    for (i, v) in values.iter().enumerate() {
        h.push_id(&d, v, T0 + i as i64, 6_998 + i as u32);
    }
    assert_eq!(h.writes().len(), 1);
    h.finish();
}

#[test]
fn v1_end_before_all_of_its_chunks_waits_for_them() {
    let img = jpeg(300, 33);
    let values = v1(&img, 100);
    let n = values.len();
    let d = dev("cam");
    let mut h = H::default();
    // Reverse order: END first.
    for (i, v) in values.iter().enumerate().rev() {
        let disp = h.push(&d, v, T0 + 10 * i as i64);
        assert_eq!(disp == Disposition::Completed, i == 0, "{i}: {disp:?}");
    }
    h.finish();
    assert_eq!(h.writes()[0].bytes, img);
    assert_eq!(h.writes()[0].tags.len(), n);
    assert!(h.quarantines().is_empty());
}

#[test]
fn v1_open_segments_per_device_are_bounded() {
    let d = dev("cam");
    let other = dev("other");
    let mut h = H::default();
    h.push(&other, "FFD8", T0);
    // MAX + 2 ENDs with no data, then one data chunk above them: at most MAX stay open per
    // device, the oldest (earliest) go first.
    for i in 0..MAX_V1_SEGMENTS_TEST as i64 + 2 {
        assert_eq!(h.push(&d, "END", T0 + 100 * i), Disposition::Stored);
    }
    h.push(&d, "FFD8", T0 + 10_000);
    assert_eq!(h.asm.open_count(), 1 + MAX_V1_SEGMENTS_TEST);
    let q = h.quarantines();
    assert_eq!(q.len(), 3);
    assert!(q.iter().all(|q| q.reason == "evicted"), "{q:?}");
    assert_eq!(q[0].tags, vec![2]);
    assert!(
        q[0].detail.contains(&format!(
            "more than {MAX_V1_SEGMENTS_TEST} open v1 pictures"
        )),
        "{}",
        q[0].detail
    );
    // An evicted END still divides: a chunk under it is not mixed into a later picture.
    let img = jpeg(50, 34);
    let values = v1(&img, 1000);
    assert_eq!(values.len(), 2);
    h.push(&d, &values[0], T0 + 50);
    h.finish();
    assert!(h.writes().len() == 1 && h.writes()[0].bytes == img);
}

#[test]
fn v1_duplicate_chunks_and_ends() {
    let img = jpeg(300, 25);
    let values = v1(&img, 100);
    let n = values.len();
    let d = dev("cam");
    let mut h = H::default();
    h.push(&d, &values[0], T0);
    assert_eq!(
        h.push(&d, &values[0], T0),
        Disposition::Duplicate { attached: true }
    );
    // Same bytes at another time is not a duplicate (v1 has no seq): it is data.
    for (i, v) in values.iter().enumerate().skip(1) {
        h.push(&d, v, T0 + 10 * i as i64);
    }
    assert_eq!(h.writes().len(), 1);
    assert_eq!(h.writes()[0].bytes, img);
    // A redelivered chunk and END of the finished picture: dropped.
    let end_t = T0 + 10 * (n as i64 - 1);
    assert_eq!(
        h.push(&d, &values[1], T0 + 10),
        Disposition::Duplicate { attached: false }
    );
    assert_eq!(
        h.push(&d, "END", end_t),
        Disposition::Duplicate { attached: false }
    );
    // A chunk in its span that it never had: late_chunk, and the next picture is unharmed.
    assert_eq!(h.push(&d, "ABCD", T0 + 15), Disposition::Quarantined);
    assert_eq!(h.reasons(), vec!["late_chunk"]);
    let next = jpeg(50, 26);
    for (i, v) in v1(&next, 100).iter().enumerate() {
        h.push(&d, v, end_t + 100 + i as i64);
    }
    assert_eq!(h.writes().len(), 2);
    assert_eq!(h.writes()[1].bytes, next);
    h.finish();
}

#[test]
fn v1_duplicate_end_of_an_invalid_picture_is_attached() {
    let d = dev("cam");
    let mut h = H::default();
    h.push(&d, "0102", T0);
    assert_eq!(h.push(&d, "END", T0 + 10), Disposition::Stored);
    assert_eq!(
        h.push(&d, "END", T0 + 10),
        Disposition::Duplicate { attached: true }
    );
    // A later END with nothing new: it waits for its own chunks; both go at the timeout.
    assert_eq!(h.push(&d, "END", T0 + 20), Disposition::Stored);
    assert!(h.out.is_empty());
    h.finish();
    assert_eq!(h.reasons(), vec!["invalid_jpeg", "empty_end"]);
    assert_eq!(h.quarantines()[0].tags, vec![1, 2, 3]);
    assert_eq!(h.quarantines()[1].tags, vec![4]);
}

#[test]
fn v1_too_large_discards_the_rest_until_end_in_one_record() {
    let img = jpeg(2000, 27);
    let values = v1(&img, 200); // 100 bytes per chunk
    let d = dev("cam");
    let mut h = H::new(Limits {
        max_image_bytes: 1000,
        ..Limits::default()
    });
    let mut disp = Vec::new();
    for (i, v) in values.iter().enumerate() {
        disp.push(h.push(&d, v, T0 + i as i64));
    }
    assert_eq!(disp[10], Disposition::Quarantined);
    assert_eq!(*disp.last().unwrap(), Disposition::Quarantined);
    assert_eq!(h.reasons(), vec!["too_large", "too_large"]);
    let q = h.quarantines();
    assert_eq!(q[0].bytes, img[..1000]);
    assert_eq!(q[0].tags.len(), 11);
    assert_eq!(q[1].tags.len(), values.len() - 11);
    assert!(q[1].bytes.is_empty());
    assert_eq!(h.asm.open_count(), 0);
    // The next picture is fine.
    let small = jpeg(100, 28);
    for v in v1(&small, 200) {
        h.push(&d, &v, T0 + 10_000);
    }
    assert_eq!(h.writes().len(), 1);
    h.finish();
}

#[test]
fn v1_chunk_inside_a_written_picture_retracts_it_once() {
    let img = jpeg(900, 57);
    let d = dev("cam");
    let mut h = H::default();
    for (i, v) in v1(&img, 400).iter().enumerate() {
        h.push(&d, v, T0 + 10 * i as i64);
    }
    assert_eq!(h.writes().len(), 1);
    // A chunk the written picture did not have, timed inside it: the file was wrong.
    let stray = "AB".repeat(200);
    assert_eq!(h.push(&d, &stray, T0 + 5), Disposition::Quarantined);
    assert_eq!(
        h.push(&d, &"CD".repeat(200), T0 + 15),
        Disposition::Quarantined
    );
    let retractions: Vec<&Retraction> = h
        .out
        .iter()
        .filter_map(|a| match a {
            Action::Retract(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(retractions.len(), 1, "retracted once, not per stray chunk");
    let r = retractions[0];
    assert_eq!((r.device.clone(), r.name_time_ms), (d.clone(), T0));
    assert_eq!((r.size, r.crc), (img.len() as u64, wire::crc32(&img)));
    assert!(r.detail.contains("not one of its chunks"), "{}", r.detail);
    assert_eq!(h.reasons(), vec!["late_chunk", "late_chunk"]);
    // A redelivered copy of one of its own chunks is still a plain duplicate.
    assert_eq!(
        h.push(&d, &v1(&img, 400)[1], T0 + 10),
        Disposition::Duplicate { attached: false }
    );
    h.finish();
}

#[test]
fn v1_bad_last_chunk_gives_one_record_and_its_end_none() {
    let img = jpeg(400, 30);
    let mut values = v1(&img, 100);
    let last = values.len() - 2;
    values[last] = "ZZ".repeat(50);
    let d = dev("cam");
    let mut h = H::default();
    let mut disps = Vec::new();
    for (i, v) in values.iter().enumerate() {
        disps.push(h.push(&d, v, T0 + i as i64));
    }
    assert_eq!(h.reasons(), vec!["bad_hex"], "no second, empty record");
    assert_eq!(h.quarantines()[0].tags.len(), values.len() - 1);
    assert_eq!(disps.last(), Some(&Disposition::AfterQuarantine));
    h.finish();
}

#[test]
fn v1_bad_hex_takes_the_open_picture_and_discards_the_rest() {
    let img = jpeg(400, 29);
    let mut values = v1(&img, 100);
    values[2] = "ZZ".repeat(50);
    let d = dev("cam");
    let mut h = H::default();
    for (i, v) in values.iter().enumerate() {
        h.push(&d, v, T0 + i as i64);
    }
    assert_eq!(h.reasons(), vec!["bad_hex", "bad_hex"]);
    let q = h.quarantines();
    assert_eq!(q[0].tags, vec![1, 2, 3]);
    assert_eq!(q[0].bytes, img[..100]);
    assert_eq!(q[1].tags.len(), values.len() - 3);
    h.finish();
}

#[test]
fn v1_decode_check_rejects_marker_shaped_garbage() {
    let d = dev("cam");
    // Progressive: the exact check does not decode it, so only its structure is checked (and
    // the picture flagged); random scan bytes do not survive a full decode.
    let mut garbage = vec![
        0xFF, 0xD8, 0xFF, 0xC2, 0, 11, 8, 0, 1, 0, 1, 1, 1, 0x11, 0, 0xFF, 0xDA, 0, 8, 1, 1, 0, 0,
        63, 0,
    ];
    let mut x = 30u64 | 1;
    garbage.extend((0..500).map(|_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x as u8).min(0xFE)
    }));
    garbage.extend([0xFF, 0xD9]);
    for decode_check in [false, true] {
        let mut h = H::new(Limits {
            decode_check,
            ..Limits::default()
        });
        for v in v1(&garbage, 200) {
            h.push(&d, &v, T0);
        }
        for v in v1(TINY, 200) {
            h.push(&d, &v, T0 + 1000);
        }
        h.finish();
        let writes: Vec<Vec<u8>> = h.writes().iter().map(|w| w.bytes.clone()).collect();
        if decode_check {
            assert_eq!(writes, vec![TINY.to_vec()]);
            assert_eq!(h.reasons(), vec!["invalid_jpeg"]);
            assert!(h.quarantines()[0].detail.contains("do not decode"));
        } else {
            assert_eq!(writes, vec![garbage.clone(), TINY.to_vec()]);
        }
    }
}

#[test]
fn v1_time_falls_back_to_gmt_create_then_arrival() {
    let img = jpeg(300, 31);
    let values = v1(&img, 100);
    let d = dev("cam");
    let mut h = H::default();
    // gmtCreate orders chunks delivered in reverse.
    let n = values.len() as i64;
    let (end, data) = values.split_last().unwrap();
    for (i, v) in data.iter().enumerate().rev() {
        h.push_msg(&ImgMessage {
            device: d.clone(),
            message_id: String::new(),
            value: v.clone(),
            item_time: None,
            gmt_create: Some(T0 + i as i64),
            request_id: None,
        });
    }
    h.push_msg(&ImgMessage {
        device: d.clone(),
        message_id: String::new(),
        value: end.clone(),
        item_time: None,
        gmt_create: Some(T0 + n),
        request_id: None,
    });
    // No time at all: arrival order (now_ms) orders them.
    let img2 = jpeg(300, 32);
    for v in v1(&img2, 100) {
        h.push_t(&d, &v, None);
    }
    h.finish();
    let w = h.writes();
    assert_eq!(w.len(), 2);
    assert_eq!(w[0].bytes, img);
    assert_eq!(w[0].name_time_ms, w[0].opened_ms as i64, "no item time");
    assert_eq!(w[1].bytes, img2);
}

// ---------------------------------------------------------------------------------------------
// Redelivery grace (v1 pictures that straddle a lost connection)

fn with_grace(grace_ms: u64) -> H {
    H::new(Limits {
        redelivery_grace_ms: grace_ms,
        ..Limits::default()
    })
}

/// The worked case of the v1 integrity issue: the head of A arrived before the loss; A's
/// tail, its `END` and B's head were in flight and come back after B's tail and `END`. Without
/// the grace, A's head + B's tail would be judged alone (and a splice cut inside scan data can
/// pass any check by chance); with it, nothing is written until the redelivery came, then both
/// pictures are written whole.
#[test]
fn v1_picture_straddling_a_loss_waits_for_the_redelivery() {
    let (a, b) = (jpeg(2000, 51), jpeg(2000, 52));
    let (va, vb) = (v1(&a, 400), v1(&b, 400));
    let d = dev("cam");
    let mut h = with_grace(5_000);
    let (na, nb) = (va.len() as i64, vb.len() as i64);
    let ta = |i: usize| T0 + i as i64;
    let tb = |i: usize| T0 + 100 + i as i64;
    for (i, v) in va.iter().enumerate().take(3) {
        assert_eq!(h.push(&d, v, ta(i)), Disposition::Stored);
    }
    h.lost();
    let lost_at = h.now;
    // Newer messages first: B's tail and END.
    for (i, v) in vb.iter().enumerate().skip(6) {
        h.push(&d, v, tb(i));
    }
    assert!(h.writes().is_empty(), "written before the redelivery");
    // The redelivery: A's tail and END, B's head.
    for (i, v) in va.iter().enumerate().skip(3) {
        h.push(&d, v, ta(i));
    }
    for (i, v) in vb.iter().enumerate().take(6) {
        h.push(&d, v, tb(i));
    }
    assert!(h.writes().is_empty(), "held pictures were written early");
    assert_eq!(h.asm.next_deadline(), Some(lost_at + 5_000));
    h.expire(lost_at + 4_999);
    assert!(h.writes().is_empty());
    h.expire(lost_at + 5_000);
    let mut got: Vec<(usize, bool)> = h
        .writes()
        .iter()
        .map(|w| (w.chunks, w.bytes == a || w.bytes == b))
        .collect();
    got.sort_unstable();
    assert_eq!(
        got,
        vec![((na - 1) as usize, true), ((nb - 1) as usize, true)]
    );
    assert_ne!(h.writes()[0].bytes, h.writes()[1].bytes);
    h.finish();
    assert!(h.quarantines().is_empty(), "{:?}", h.reasons());
}

#[test]
fn v1_pictures_after_a_loss_are_not_delayed() {
    let (a, b) = (jpeg(900, 53), jpeg(900, 54));
    let d = dev("cam");
    let mut h = with_grace(60_000);
    let va = v1(&a, 400);
    for (i, v) in va.iter().enumerate() {
        h.push(&d, v, T0 + i as i64);
    }
    assert_eq!(
        h.writes().len(),
        1,
        "a picture before any loss is written at once"
    );
    h.lost();
    let vb = v1(&b, 400);
    let last = vb.len() - 1;
    for (i, v) in vb.iter().enumerate() {
        let disp = h.push(&d, v, T0 + 100 + i as i64);
        if i == last {
            assert_eq!(
                disp,
                Disposition::Completed,
                "opened after the loss: not held"
            );
        }
    }
    h.finish();
    assert_eq!(h.writes().len(), 2);
}

#[test]
fn v1_a_newer_loss_extends_the_hold_and_bounds_write_a_held_picture() {
    let a = jpeg(900, 55);
    let d = dev("cam");
    let mut h = with_grace(1_000);
    let va = v1(&a, 400);
    h.push(&d, &va[0], T0);
    h.lost();
    let first = h.now;
    for (i, v) in va.iter().enumerate().skip(1) {
        assert_eq!(h.push(&d, v, T0 + i as i64), Disposition::Stored);
    }
    h.now = first + 600;
    h.lost();
    h.expire(first + 1_000);
    assert!(h.writes().is_empty(), "the newer loss extends the hold");
    assert_eq!(h.asm.next_deadline(), Some(first + 1_600));
    h.expire(first + 1_600);
    assert_eq!(h.writes().len(), 1);
    assert_eq!(h.writes()[0].bytes, a);

    // A held picture that has to settle (drain, eviction) is written: it is whole and valid.
    let b = jpeg(900, 56);
    let vb = v1(&b, 400);
    h.push(&d, &vb[0], T0 + 500);
    h.lost();
    for (i, v) in vb.iter().enumerate().skip(1) {
        h.push(&d, v, T0 + 500 + i as i64);
    }
    assert_eq!(h.writes().len(), 1);
    let now = h.now;
    h.drain(now);
    assert_eq!(h.writes().len(), 2);
    assert_eq!(h.writes()[1].bytes, b);
    h.finish();
    assert!(h.quarantines().is_empty(), "{:?}", h.reasons());
}

// ---------------------------------------------------------------------------------------------
// Bounds, gauges, lone values

#[test]
fn max_open_evicts_the_least_recently_touched() {
    let d = dev("cam");
    let mut h = H::new(Limits {
        max_open: 2,
        ..Limits::default()
    });
    let pics: Vec<Vec<String>> = (0..3).map(|p| v2(&jpeg(60, p), p as u32, 30)).collect();
    h.push(&d, &pics[0][0], T0);
    h.push(&d, &pics[1][0], T0);
    h.push(&d, &pics[0][1], T0); // picture 1 is now the least recently touched
    assert!(h.out.is_empty());
    h.push(&d, &pics[2][0], T0);
    let q = h.quarantines();
    assert_eq!(q.len(), 1);
    assert_eq!((q[0].reason, q[0].pid), ("evicted", Some(1)));
    assert_eq!(h.asm.open_count(), 2);
    h.finish();
}

#[test]
fn gauges_follow_the_open_pictures() {
    let d = dev("cam");
    let mut h = H::default();
    assert_eq!(h.asm.next_deadline(), None);
    let a = v2(&jpeg(100, 40), 1, 30);
    h.push(&d, &a[0], T0);
    let opened = h.now;
    assert_eq!(h.asm.oldest_open_ms(), Some(opened));
    assert_eq!(h.asm.buffered_bytes(), 30);
    h.push(&d, "FFD8FF", T0);
    assert_eq!(h.asm.buffered_bytes(), 33);
    assert_eq!(h.asm.open_count(), 2);
    h.now += 500;
    h.push(&d, &a[1], T0);
    let timeout = h.asm.limits().timeout_ms;
    // The v1 picture is idle the longest; a's deadline moved with its new chunk.
    assert_eq!(h.asm.next_deadline(), Some(opened + 1 + timeout + 1));
    assert_eq!(h.asm.oldest_open_ms(), Some(opened));
    // Duplicates neither buffer nor touch.
    let before = h.asm.next_deadline();
    h.push(&d, &a[1], T0);
    assert_eq!(h.asm.buffered_bytes(), 63);
    assert_eq!(h.asm.next_deadline(), before);
    let before = h.out.len();
    h.expire(opened + 1 + timeout + 1);
    assert_eq!(h.out.len() - before, 1);
    assert_eq!(h.asm.buffered_bytes(), 60);
    h.finish();
}

#[test]
fn lone_values_are_quarantined_alone() {
    let d = dev("cam");
    let mut h = H::default();
    h.push(&d, &v2(&jpeg(100, 41), 1, 30)[0], T0);
    for (v, r) in [
        ("", "empty_value"),
        ("V3;1;2;3", "unsupported_version"),
        ("Vx;1", "bad_header"),
        ("V2;1;0;1;5;0000000A;AAA", "bad_base64"),
    ] {
        assert_eq!(h.push(&d, v, T0), Disposition::Quarantined, "{v}");
        assert_eq!(*h.reasons().last().unwrap(), r, "{v}");
    }
    // The bad Base64 chunk named pid 1, whose open picture went with it.
    assert_eq!(h.asm.open_count(), 0);
    // A lone END waits for chunks that may still come (arrival order is not time order); at the
    // timeout it is `empty_end`.
    assert_eq!(h.push(&d, "END", T0), Disposition::Stored);
    assert_eq!(h.asm.open_count(), 1);
    h.finish();
    assert_eq!(*h.reasons().last().unwrap(), "empty_end");
}

#[test]
fn drain_settles_everything() {
    let d = dev("cam");
    let mut h = H::default();
    h.push(&d, &v2(&jpeg(100, 42), 1, 30)[0], T0);
    h.push(&d, "FFD8", T0);
    let now = h.now;
    h.drain(now);
    assert_eq!(h.reasons(), vec!["expired", "expired"]);
    h.finish();
}

#[test]
fn settled_pictures_are_forgotten_after_the_timeout() {
    let d = dev("cam");
    let mut h = H::default();
    let values = v2(&jpeg(60, 43), 1, 30);
    for v in &values {
        h.push(&d, v, T0);
    }
    assert_eq!(h.asm.remembered_count(), 1);
    h.expire_all();
    assert_eq!(h.asm.remembered_count(), 0);
    // Now a resend is a new picture again (and completes again).
    for v in &values {
        h.push(&d, v, T0);
    }
    assert_eq!(h.writes().len(), 2);
    h.finish();
}

// ---------------------------------------------------------------------------------------------
// Properties

/// A well-formed JPEG stream with 0..max bytes of scan data ([`jpeg_from`]).
fn payload(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max).prop_map(jpeg_from)
}

/// `base` plus copies of random elements, shuffled.
fn with_dups_shuffled<T: Clone + std::fmt::Debug>(base: Vec<T>) -> impl Strategy<Value = Vec<T>> {
    let n = base.len();
    proptest::collection::vec(0..n, 0..=n.min(8)).prop_flat_map(move |picks| {
        let mut v = base.clone();
        v.extend(picks.iter().map(|&i| base[i].clone()));
        Just(v).prop_shuffle()
    })
}

/// A v2 chunk set, shuffled with duplicates.
fn v2_arrivals() -> impl Strategy<Value = (Vec<u8>, Vec<String>)> {
    (payload(2800), 1usize..120, any::<u32>()).prop_flat_map(|(img, k, pid)| {
        let values = v2(&img, pid, 3 * k);
        (Just(img), with_dups_shuffled(values))
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn prop_v2_any_permutation_with_duplicates_yields_the_original((img, arrivals) in v2_arrivals()) {
        let d = dev("cam");
        let mut h = H::default();
        for v in &arrivals {
            h.push(&d, v, T0);
        }
        h.finish();
        let w = h.writes();
        prop_assert_eq!(w.len(), 1);
        prop_assert_eq!(&w[0].bytes, &img);
        prop_assert!(h.quarantines().is_empty());
    }

    #[test]
    fn prop_v2_single_corruption_never_writes_wrong_bytes(
        (img, values) in (payload(1500), 1usize..60, any::<u32>())
            .prop_map(|(img, k, pid)| { let v = v2(&img, pid, 3 * k); (img, v) }),
        which in any::<prop::sample::Index>(),
        kind in 0u8..6,
        r in 1u32..1000,
        order in any::<u64>(),
    ) {
        let n = values.len();
        let i = which.index(n);
        let h0 = match wire::parse_value(&values[i]) {
            Ok(ImgValue::V2 { header, data }) => (header, data.to_string()),
            other => panic!("{other:?}"),
        };
        let (hd, data) = h0;
        let corrupt = match kind {
            0 => {
                let mut bytes = wire::decode_base64(&data).unwrap();
                let at = r as usize % bytes.len();
                bytes[at] ^= 1 << (r % 8);
                use base64::Engine as _;
                with_field(&values[i], 6, &base64::engine::general_purpose::STANDARD.encode(bytes))
            }
            1 => with_field(&values[i], 3, &(hd.count + 1).to_string()),
            2 => with_field(&values[i], 4, &(hd.size + r).to_string()),
            3 => with_field(&values[i], 5, &format!("{:08X}", hd.crc ^ r)),
            4 if n > 1 => with_field(&values[i], 2, &((hd.seq + r % (n as u32 - 1) + 1) % n as u32).to_string()),
            _ => with_field(&values[i], 1, &hd.pid.wrapping_add(r).to_string()),
        };
        let mut arrivals = values.clone();
        arrivals[i] = corrupt;
        // Duplicates of a few others (never of the original of chunk i), then a shuffle.
        if n > 1 {
            for j in 0..(order % 4) as usize {
                arrivals.push(values[(i + 1 + (j * 7) % (n - 1)) % n].clone());
            }
        }
        let mut x = order | 1;
        for k in (1..arrivals.len()).rev() {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            arrivals.swap(k, (x % (k as u64 + 1)) as usize);
        }
        let d = dev("cam");
        let mut h = H::default();
        for v in &arrivals {
            h.push(&d, v, T0);
        }
        h.finish();
        for w in h.writes() {
            prop_assert_eq!(&w.bytes, &img, "kind {}", kind);
        }
        // Only a pid change of a one-chunk picture can still write (the right bytes).
        if !(kind >= 4 && n == 1) {
            prop_assert!(h.writes().is_empty(), "kind {} wrote", kind);
            prop_assert!(!h.quarantines().is_empty());
        }
    }

    #[test]
    fn prop_v1_shuffled_arrival_with_item_times_yields_the_original(
        (img, data) in (payload(3000), 1usize..200).prop_flat_map(|(img, k)| {
            let values = v1(&img, 2 * k);
            let (_, data) = values.split_last().unwrap();
            let timed: Vec<(String, i64)> = data
                .iter()
                .enumerate()
                .map(|(i, v)| (v.clone(), T0 + 10 * i as i64))
                .collect();
            (Just(img), with_dups_shuffled(timed))
        })
    ) {
        let d = dev("cam");
        let mut h = H::default();
        let last = data.iter().map(|(_, t)| *t).max().unwrap_or(T0);
        for (v, t) in &data {
            h.push(&d, v, *t);
        }
        h.push(&d, "END", last + 10);
        h.finish();
        let w = h.writes();
        prop_assert_eq!(w.len(), 1, "{:?}", h.reasons());
        prop_assert_eq!(&w[0].bytes, &img);
        prop_assert!(h.quarantines().is_empty());
    }

    /// 2 or 3 consecutive pictures of one device as our firmware sends them (item times, Alink
    /// ids), every message (ENDs included) in any order, some repeated: each picture is written
    /// byte-identical, nothing is quarantined. (Without ids, a lost run of scan data can go
    /// unnoticed: see `v1_alink_ids_keep_apart_what_the_jpeg_structure_cannot`.)
    #[test]
    fn prop_v1_consecutive_pictures_in_any_order_yield_the_originals(
        // At least 2 bytes a chunk: fewer than 1000 messages a picture, as the ids require.
        (imgs, arrivals) in (proptest::collection::vec(payload(1500), 2..=3), 2usize..120)
            .prop_flat_map(|(imgs, k)| {
                let refs: Vec<&[u8]> = imgs.iter().map(Vec::as_slice).collect();
                let all: Vec<Msg1> = pictures(&refs, 2 * k).into_iter().flatten().collect();
                (Just(imgs), with_dups_shuffled(all))
            }),
    ) {
        let d = dev("cam");
        let mut h = H::default();
        for (v, t, id) in &arrivals {
            h.push_id(&d, v, *t, *id);
        }
        h.finish();
        prop_assert!(h.quarantines().is_empty(), "{:?}", h.quarantines());
        let mut got: Vec<Vec<u8>> = h.writes().iter().map(|w| w.bytes.clone()).collect();
        let mut want = imgs.clone();
        got.sort();
        want.sort();
        prop_assert_eq!(got, want);
    }

    /// Without ids (the original firmware): 2 or 3 pictures interleaved at random, each one's
    /// data shuffled and repeated, its END after its own data but possibly before the other
    /// pictures' data and ENDs (so an END may arrive before an earlier picture's END): each
    /// picture is written byte-identical. (Chunks hold at least the whole JPEG header, so a head
    /// of one picture followed by another always puts the second SOI inside scan data.)
    #[test]
    fn prop_v1_interleaved_pictures_without_ids_yield_the_originals(
        imgs in proptest::collection::vec(payload(1500), 2..=3),
        k in 26usize..200,
        seed in any::<u64>(),
    ) {
        let mut x = seed | 1;
        let mut rnd = move |n: usize| {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            (x % n.max(1) as u64) as usize
        };
        let refs: Vec<&[u8]> = imgs.iter().map(Vec::as_slice).collect();
        let mut queues: Vec<Vec<Msg1>> = pictures(&refs, 2 * k)
            .into_iter()
            .map(|mut msgs| {
                let end = msgs.pop().unwrap();
                for _ in 0..rnd(3) {
                    let i = rnd(msgs.len());
                    msgs.push(msgs[i].clone());
                }
                for i in (1..msgs.len()).rev() {
                    let j = rnd(i + 1);
                    msgs.swap(i, j);
                }
                msgs.push(end);
                msgs
            })
            .collect();
        let d = dev("cam");
        let mut h = H::default();
        while queues.iter().any(|q| !q.is_empty()) {
            let live: Vec<usize> = (0..queues.len()).filter(|&i| !queues[i].is_empty()).collect();
            let q = &mut queues[live[rnd(live.len())]];
            let (v, t, _) = q.remove(0);
            h.push(&d, &v, t);
        }
        h.finish();
        prop_assert!(h.quarantines().is_empty(), "{:?}", h.reasons());
        let mut got: Vec<Vec<u8>> = h.writes().iter().map(|w| w.bytes.clone()).collect();
        let mut want = imgs.clone();
        got.sort();
        want.sort();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn prop_arbitrary_values_never_panic(
        values in proptest::collection::vec(
            (
                prop_oneof![
                    Just(""), Just("V2;"), Just("V2;1;0;2;10;0000000A;"), Just("V3;"),
                    Just("END"), Just("FFD8"), Just("V"), Just("V2;4294967295;999;1000;999999999;FFFFFFFF;"),
                ],
                any::<String>(),
                prop_oneof![Just(None), Just(Some(i64::MIN)), Just(Some(i64::MAX)), any::<Option<i64>>()],
                0u8..3,
            ),
            1..40,
        ),
    ) {
        let mut h = H::new(Limits { max_open: 3, max_image_bytes: 64, timeout_ms: 10, decode_check: true, memory_budget: 0, redelivery_grace_ms: 0 });
        for (prefix, rest, t, dn) in values {
            let d = dev(&dn.to_string());
            h.push_t(&d, &format!("{prefix}{rest}"), t);
            h.push_t(&d, prefix, t);
        }
        h.finish();
    }
}

/// One step of random traffic.
#[derive(Debug, Clone)]
enum Op {
    /// v2 chunk `seq` of picture `pic` of device `dev`; `corrupt` damages its data.
    V2 {
        dev: usize,
        pic: usize,
        seq: usize,
        corrupt: bool,
    },
    /// v1 data chunk `i` of device `dev`'s picture, with a time jitter.
    V1 { dev: usize, i: usize, jitter: i64 },
    /// v1 `END` of device `dev`'s picture.
    End { dev: usize, jitter: i64 },
    /// Any text.
    Junk { dev: usize, text: String },
    /// Let time pass.
    Wait(u64),
    /// Expiry sweep.
    Expire,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0usize..3, 0usize..3, 0usize..64, proptest::bool::weighted(0.05))
            .prop_map(|(dev, pic, seq, corrupt)| Op::V2 { dev, pic, seq, corrupt }),
        3 => (0usize..3, 0usize..64, -1i64..2).prop_map(|(dev, i, jitter)| Op::V1 { dev, i, jitter }),
        1 => (0usize..3, -15i64..2).prop_map(|(dev, jitter)| Op::End { dev, jitter }),
        1 => (0usize..3, ".{0,12}").prop_map(|(dev, text)| Op::Junk { dev, text }),
        1 => (0u64..400).prop_map(Op::Wait),
        1 => Just(Op::Expire),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Every pushed tag comes back exactly once, whatever the traffic (duplicates, corruption,
    /// too-large pictures, evictions, expiry), and nothing is held after the final sweep.
    #[test]
    fn prop_tags_are_conserved(ops in proptest::collection::vec(op(), 1..200), seed in any::<u64>()) {
        let limits = Limits { max_image_bytes: 400, max_open: 4, timeout_ms: 1000, decode_check: false, memory_budget: 0, redelivery_grace_ms: 0 };
        let mut h = H::new(limits);
        // Per device: three v2 pictures (one too large) and one v1 picture.
        let sizes = [100usize, 300, 600];
        let v2s: Vec<Vec<Vec<String>>> = (0..3)
            .map(|d| {
                (0..3)
                    .map(|p| v2(&jpeg(sizes[p], seed ^ (d * 3 + p) as u64), p as u32, 30))
                    .collect()
            })
            .collect();
        let v1s: Vec<Vec<String>> = (0..3)
            .map(|d| v1(&jpeg(sizes[d], seed ^ (100 + d) as u64), 60))
            .collect();
        let devs: Vec<DeviceId> = (0..3).map(|d| dev(&format!("cam-{d}"))).collect();
        for op in ops {
            match op {
                Op::V2 { dev, pic, seq, corrupt } => {
                    let values = &v2s[dev][pic];
                    let mut v = values[seq % values.len()].clone();
                    if corrupt {
                        v = with_field(&v, 6, &"AAAA".repeat(10));
                    }
                    h.push(&devs[dev], &v, T0 + seq as i64);
                }
                Op::V1 { dev, i, jitter } => {
                    let data = &v1s[dev][..v1s[dev].len() - 1];
                    let i = i % data.len();
                    h.push(&devs[dev], &data[i], T0 + 10 * i as i64 + jitter);
                }
                Op::End { dev, jitter } => {
                    let t = T0 + 10 * v1s[dev].len() as i64 + jitter;
                    h.push(&devs[dev], "END", t);
                }
                Op::Junk { dev, text } => {
                    h.push(&devs[dev], &text, T0);
                }
                Op::Wait(ms) => h.now += ms,
                Op::Expire => {
                    let now = h.now;
                    h.expire(now);
                    if let Some(deadline) = h.asm.next_deadline() {
                        prop_assert!(deadline > now);
                    }
                }
            }
        }
        h.finish();
        for w in h.writes() {
            prop_assert!(wire::has_jpeg_markers(&w.bytes));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    /// Hundreds of devices, each with a v1 or a v2 picture (sometimes both), interleaved at
    /// random: every picture completes byte-identical.
    #[test]
    fn prop_hundreds_of_devices_interleaved_all_complete(
        devices in 100usize..400,
        seed in any::<u64>(),
    ) {
        let mut x = seed | 1;
        let mut rnd = move |n: usize| {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            (x % n.max(1) as u64) as usize
        };
        // Per device: a queue of (value, item time); v1 data shuffled, END last.
        let mut queues: Vec<Vec<(String, i64)>> = Vec::new();
        let mut expect: Vec<Vec<Vec<u8>>> = Vec::new();
        for d in 0..devices {
            let mut q = Vec::new();
            let mut imgs = Vec::new();
            let kind = rnd(3);
            if kind != 1 {
                let img = jpeg(50 + rnd(2000), seed ^ d as u64);
                let mut vals: Vec<(String, i64)> = v2(&img, d as u32, 3 * (1 + rnd(300)))
                    .into_iter().map(|v| (v, T0)).collect();
                for k in (1..vals.len()).rev() { let j = rnd(k + 1); vals.swap(k, j); }
                q.extend(vals);
                imgs.push(img);
            }
            if kind != 0 {
                let img = jpeg(50 + rnd(2000), !seed ^ d as u64);
                let values = v1(&img, 2 * (1 + rnd(300)));
                let (end, data) = values.split_last().unwrap();
                let mut timed: Vec<(String, i64)> = data.iter().enumerate()
                    .map(|(i, v)| (v.clone(), T0 + 10 * i as i64)).collect();
                for k in (1..timed.len()).rev() { let j = rnd(k + 1); timed.swap(k, j); }
                let end_t = T0 + 10 * timed.len() as i64;
                timed.push((end.clone(), end_t));
                // Merge with the v2 queue keeping each one's order.
                let mut merged = Vec::new();
                let (mut a, mut b) = (q.into_iter().peekable(), timed.into_iter().peekable());
                while a.peek().is_some() || b.peek().is_some() {
                    let take_a = b.peek().is_none() || (a.peek().is_some() && rnd(2) == 0);
                    merged.extend(if take_a { a.next() } else { b.next() });
                }
                q = merged;
                imgs.push(img);
            }
            queues.push(q);
            expect.push(imgs);
        }
        let devs: Vec<DeviceId> = (0..devices).map(|d| dev(&format!("cam-{d:04}"))).collect();
        let mut h = H::default();
        let mut cursor = vec![0usize; devices];
        let mut live: Vec<usize> = (0..devices).collect();
        while !live.is_empty() {
            let p = rnd(live.len());
            let d = live[p];
            let (v, t) = &queues[d][cursor[d]];
            h.push(&devs[d], v, *t);
            cursor[d] += 1;
            if cursor[d] == queues[d].len() {
                live.swap_remove(p);
            }
        }
        h.finish();
        prop_assert!(h.quarantines().is_empty(), "{:?}", h.reasons());
        let mut got: BTreeMap<DeviceId, Vec<Vec<u8>>> = BTreeMap::new();
        for w in h.writes() {
            got.entry(w.device.clone()).or_default().push(w.bytes.clone());
        }
        for (d, mut want) in expect.into_iter().enumerate() {
            let mut have = got.remove(&devs[d]).unwrap_or_default();
            have.sort();
            want.sort();
            prop_assert_eq!(have, want, "device {}", d);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Cold storage failures (the harness's shadow covers the working store in every test above).

/// A [`cold::MemStore`] whose reads and writes can be made to fail from outside.
#[derive(Debug, Default)]
struct Flaky {
    inner: cold::MemStore,
    fail_reads: std::sync::Arc<std::sync::atomic::AtomicBool>,
    fail_puts: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl cold::ColdStore for Flaky {
    fn put(&mut self, bytes: &[u8]) -> std::io::Result<cold::Extent> {
        if self.fail_puts.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(std::io::Error::other("disk on fire"));
        }
        self.inner.put(bytes)
    }
    fn read(&mut self, e: cold::Extent, out: &mut Vec<u8>) -> std::io::Result<()> {
        if self.fail_reads.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(std::io::Error::other("disk on fire"));
        }
        self.inner.read(e, out)
    }
    fn free(&mut self, e: cold::Extent) {
        self.inner.free(e)
    }
}

fn flaky_assembler() -> (
    Assembler,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    let store = Flaky::default();
    let (reads, puts) = (store.fail_reads.clone(), store.fail_puts.clone());
    let limits = Limits {
        memory_budget: 1,
        ..Limits::default()
    };
    (
        Assembler::with_cold_store(limits, Box::new(store)),
        reads,
        puts,
    )
}

fn msg(d: &DeviceId, value: &str, t: i64) -> ImgMessage {
    ImgMessage {
        device: d.clone(),
        message_id: String::new(),
        value: value.to_string(),
        item_time: Some(t),
        gmt_create: None,
        request_id: None,
    }
}

#[test]
fn unreadable_cold_bytes_never_make_a_good_picture() {
    use std::sync::atomic::Ordering::Relaxed;
    let d = dev("cam");
    // v2: the CRC cannot match; quarantined at once, saying why.
    let (mut asm, fail_reads, _) = flaky_assembler();
    let mut out = Vec::new();
    let values = v2(&jpeg(100, 7), 5, 30);
    let (last, rest) = values.split_last().unwrap();
    for (i, v) in rest.iter().enumerate() {
        asm.push(&msg(&d, v, T0), i as Tag, 1, &mut out);
    }
    assert!(asm.cold_bytes() > 0);
    fail_reads.store(true, Relaxed);
    let disp = asm.push(&msg(&d, last, T0), 99, 2, &mut out);
    assert_eq!(disp, Disposition::Quarantined);
    let [Action::Quarantine(q)] = &out[..] else {
        panic!("{out:?}")
    };
    assert!(q.detail.contains("cold storage"), "{}", q.detail);
    assert!(asm.cold_errors().0 > 0);
    assert_eq!(asm.cold_bytes(), 0);

    // v1: the picture is refused and stays open; at the timeout it goes to quarantine.
    let (mut asm, fail_reads, _) = flaky_assembler();
    let mut out = Vec::new();
    for (i, v) in v1(&jpeg(300, 8), 100).iter().enumerate() {
        if v == "END" {
            fail_reads.store(true, Relaxed);
        }
        asm.push(&msg(&d, v, T0 + i as i64), i as Tag, 1, &mut out);
    }
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(asm.open_count(), 1);
    asm.expire(u64::MAX / 2, &mut out);
    let [Action::Quarantine(q)] = &out[..] else {
        panic!("{out:?}")
    };
    assert_eq!(q.reason, reason::INVALID_JPEG);
    assert!(q.detail.contains("cold storage"), "{}", q.detail);
    assert!(asm
        .cold_errors()
        .1
        .is_some_and(|e| e.contains("disk on fire")));
}

#[test]
fn a_failing_cold_store_keeps_bytes_in_memory() {
    use std::sync::atomic::Ordering::Relaxed;
    let d = dev("cam");
    let (mut asm, _, fail_puts) = flaky_assembler();
    fail_puts.store(true, Relaxed);
    let mut out = Vec::new();
    let img = jpeg(200, 9);
    let values = v2(&img, 1, 60);
    for (i, v) in values.iter().enumerate() {
        asm.push(&msg(&d, v, T0), i as Tag, 1, &mut out);
        if i + 1 < values.len() {
            assert_eq!(asm.hot_bytes(), asm.buffered_bytes());
        }
    }
    let [Action::Write(f)] = &out[..] else {
        panic!("{out:?}")
    };
    assert_eq!(f.bytes, img);
    let (errors, last) = asm.cold_errors();
    assert!(errors > 0 && last.is_some());
}

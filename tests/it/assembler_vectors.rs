//! The assembler against the golden vectors: `malformed.tsv` verdicts, and every encoded picture of
//! `index.tsv` reassembled byte for byte (v2 shuffled, all with duplicates), one by one and all
//! interleaved. Every run also checks tag conservation: each pushed tag comes back exactly once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use receiver::assembler::{Action, Assembler, Disposition, Limits, Tag};
use receiver::message::{DeviceId, ImgMessage};
use receiver_testkit::golden::{DEVICE_NAME, PRODUCT_KEY};

const ITEM_TIME0: i64 = 1_700_000_000_000;
const NOW0: u64 = 5_000_000;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("tests/vectors/{rel}: {e}"))
}

fn image(name: &str) -> Vec<u8> {
    std::fs::read(root().join("images").join(name)).unwrap()
}

/// Non-comment, non-empty lines split on tabs.
fn table(rel: &str) -> Vec<Vec<String>> {
    read(rel)
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

/// Deterministic xorshift64*, enough for shuffles.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }
}

/// An assembler plus the bookkeeping to check where every tag went.
struct Run {
    asm: Assembler,
    actions: Vec<Action>,
    /// Tags whose push said "done now" (`Duplicate { attached: false }`).
    done_now: Vec<Tag>,
    next_tag: Tag,
    now: u64,
}

impl Run {
    fn new(limits: Limits) -> Self {
        Run {
            asm: Assembler::new(limits),
            actions: Vec::new(),
            done_now: Vec::new(),
            next_tag: 1,
            now: NOW0,
        }
    }

    /// Pushes `value` from `device` with a fresh message id, and checks the disposition's promise.
    fn push(&mut self, device: &DeviceId, value: &str, item_time: i64) -> Disposition {
        let tag = self.next_tag;
        self.next_tag += 1;
        self.now += 1;
        let msg = ImgMessage {
            device: device.clone(),
            message_id: format!("msg-{tag}"),
            value: value.to_string(),
            item_time: Some(item_time),
            gmt_create: Some(item_time + 7),
            request_id: None,
        };
        let before = self.actions.len();
        let d = self.asm.push(&msg, tag, self.now, &mut self.actions);
        let new = &self.actions[before..];
        match d {
            Disposition::Completed => assert!(
                new.iter()
                    .any(|a| matches!(a, Action::Write(f) if f.tags.contains(&tag))),
                "Completed without a Write carrying the tag"
            ),
            Disposition::Quarantined => assert!(
                new.iter()
                    .any(|a| matches!(a, Action::Quarantine(q) if q.tags.contains(&tag))),
                "Quarantined without a Quarantine carrying the tag"
            ),
            Disposition::Duplicate { attached: false } | Disposition::AfterQuarantine => {
                self.done_now.push(tag)
            }
            Disposition::Stored | Disposition::Duplicate { attached: true } => {}
        }
        d
    }

    /// Expires everything, then checks that every tag came back exactly once.
    fn finish(&mut self) {
        let at = self.now + self.asm.limits().timeout_ms + 1;
        self.asm.expire(at, &mut self.actions);
        assert_eq!(self.asm.open_count(), 0);
        assert_eq!(self.asm.buffered_bytes(), 0);
        assert_eq!(self.asm.next_deadline(), None);
        assert_eq!(self.asm.oldest_open_ms(), None);
        let mut seen: BTreeMap<Tag, usize> = BTreeMap::new();
        for t in self
            .actions
            .iter()
            .flat_map(|a| a.tags().iter())
            .chain(&self.done_now)
        {
            *seen.entry(*t).or_default() += 1;
        }
        for tag in 1..self.next_tag {
            assert_eq!(seen.get(&tag), Some(&1), "tag {tag}: {seen:?}");
        }
        assert_eq!(seen.len() as u64, self.next_tag - 1);
    }

    fn writes(&self) -> Vec<&receiver::assembler::Finished> {
        self.actions
            .iter()
            .filter_map(|a| match a {
                Action::Write(f) => Some(f),
                _ => None,
            })
            .collect()
    }

    fn reasons(&self) -> Vec<&'static str> {
        self.actions
            .iter()
            .filter_map(|a| match a {
                Action::Quarantine(q) => Some(q.reason),
                _ => None,
            })
            .collect()
    }
}

fn golden_device() -> DeviceId {
    DeviceId::new(PRODUCT_KEY, DEVICE_NAME)
}

#[test]
fn malformed_cases_reach_their_verdicts() {
    let tiny = image("tiny.jpg");
    let cases = table("malformed.tsv");
    assert!(cases.len() >= 15, "{} cases", cases.len());
    for decode_check in [false, true] {
        for case in &cases {
            let (name, expected, file) = (&case[0], &case[1], &case[2]);
            let records = case.get(3).map(String::as_str).unwrap_or("-");
            let limits = Limits {
                decode_check,
                ..Limits::default()
            };
            let mut run = Run::new(limits);
            let device = golden_device();
            for (i, value) in read(file).lines().enumerate() {
                run.push(&device, value, ITEM_TIME0 + 100 * i as i64);
            }
            run.finish();
            let writes = run.writes();
            let reasons = run.reasons();
            if expected == "complete" {
                assert_eq!(writes.len(), 1, "{name}: {reasons:?}");
                assert!(writes[0].bytes == tiny, "{name}: wrong bytes");
                assert!(reasons.is_empty(), "{name}: {reasons:?}");
            } else {
                let want = expected
                    .strip_prefix("quarantine:")
                    .unwrap_or_else(|| panic!("{name}: verdict {expected}"));
                assert!(writes.is_empty(), "{name}: wrote a picture");
                assert!(
                    reasons.contains(&want),
                    "{name}: want {want}, got {reasons:?}"
                );
            }
            if records != "-" {
                let n: usize = records
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}: records {records:?}"));
                assert_eq!(reasons.len(), n, "{name}: {reasons:?}");
            }
        }
    }
}

/// The `img` values of one vector file, in sending order.
fn vector_values(file: &str) -> Vec<String> {
    read(file)
        .lines()
        .map(|p| {
            let v: serde_json::Value = serde_json::from_str(p).unwrap();
            v["params"]["img"].as_str().unwrap().to_string()
        })
        .collect()
}

/// One vector's arrivals: `(value, item_time)`. v2 is shuffled; v1 data chunks are shuffled too
/// (their item times order them) with `END` last. A few chunks are repeated.
fn arrivals(format: &str, values: &[String], rng: &mut Rng) -> Vec<(String, i64)> {
    let timed: Vec<(String, i64)> = values
        .iter()
        .enumerate()
        .map(|(i, v)| (v.clone(), ITEM_TIME0 + 100 * i as i64))
        .collect();
    let (mut body, tail) = match format {
        "v1" => {
            let (end, data) = timed.split_last().unwrap();
            (data.to_vec(), vec![end.clone()])
        }
        _ => (timed, Vec::new()),
    };
    let dups = 1 + body.len() / 3;
    for _ in 0..dups {
        let pick = body[rng.below(body.len())].clone();
        body.push(pick);
    }
    rng.shuffle(&mut body);
    body.extend(tail);
    body
}

#[test]
fn every_vector_reassembles_byte_identical() {
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let vectors = table("index.tsv");
    assert_eq!(vectors.len(), receiver_testkit::golden::specs().len());
    for decode_check in [false, true] {
        for round in 0..4 {
            for v in &vectors {
                let (format, img, file) = (&v[0], &v[1], &v[6]);
                let expect = image(img);
                let values = vector_values(file);
                let mut run = Run::new(Limits {
                    decode_check,
                    ..Limits::default()
                });
                let device = DeviceId::new(&v[2], &v[3]);
                for (value, t) in arrivals(format, &values, &mut rng) {
                    run.push(&device, &value, t);
                }
                run.finish();
                let writes = run.writes();
                assert_eq!(writes.len(), 1, "{file} round {round}: {:?}", run.reasons());
                assert!(writes[0].bytes == expect, "{file}: wrong bytes");
                assert!(run.reasons().is_empty(), "{file}: {:?}", run.reasons());
                assert_eq!(writes[0].name_time_ms, ITEM_TIME0, "{file}");
                if format == "v2" {
                    assert_eq!(writes[0].pid, Some(v[4].parse().unwrap()));
                }
            }
        }
    }
}

/// One device's arrivals and the image they must produce.
type Queue = (DeviceId, Vec<(String, i64)>, Vec<u8>);

#[test]
fn all_vectors_interleaved_on_many_devices() {
    let mut rng = Rng(0xD15C_0B0B_0000_0042);
    let vectors = table("index.tsv");
    let mut run = Run::new(Limits::default());
    // Each vector goes to 25 devices; every device's messages keep their own relative order
    // constraints (v1 END last), but the devices are interleaved at random.
    let mut queues: Vec<Queue> = Vec::new();
    for copy in 0..25 {
        for (i, v) in vectors.iter().enumerate() {
            let device = DeviceId::new(PRODUCT_KEY, &format!("cam-{copy:02}-{i}"));
            let values = vector_values(&v[6]);
            queues.push((device, arrivals(&v[0], &values, &mut rng), image(&v[1])));
        }
    }
    let mut cursors = vec![0usize; queues.len()];
    let mut live: Vec<usize> = (0..queues.len()).collect();
    while !live.is_empty() {
        let pick = rng.below(live.len());
        let q = live[pick];
        let (device, items, _) = &queues[q];
        let (value, t) = &items[cursors[q]];
        run.push(device, value, *t);
        cursors[q] += 1;
        if cursors[q] == items.len() {
            live.swap_remove(pick);
        }
    }
    run.finish();
    assert!(run.reasons().is_empty(), "{:?}", run.reasons());
    let writes = run.writes();
    assert_eq!(writes.len(), queues.len());
    for (device, _, expect) in &queues {
        let w: Vec<_> = writes.iter().filter(|w| &w.device == device).collect();
        assert_eq!(w.len(), 1, "{device}");
        assert!(w[0].bytes == *expect, "{device}: wrong bytes");
    }
}

//! Unit tests that need the injected-fault storage layer: failures a real file system will not
//! produce on demand (EIO from fdatasync, a short write followed by a failing truncate, a failing
//! directory sync or unlink). Disk-full on a real (tmpfs) file system is in
//! `tests/it/spool_disk_full.rs`.

use super::io::{RealStorage, SegmentFile, Storage};
use super::*;
use crate::message::{DeviceId, ImgMessage};
use std::io;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Create,
    Write,
    Sync,
    SetLen,
    Remove,
    SyncDir,
}

#[derive(Debug)]
struct Rule {
    op: Op,
    errno: i32,
    times: usize,
    /// For `Write`: write this many bytes before failing (a short write).
    partial: Option<usize>,
}

/// Shared fault plan: the next `times` calls of `op` fail with `errno`.
#[derive(Debug, Clone, Default)]
struct Faults(Arc<Mutex<Vec<Rule>>>);

impl Faults {
    fn arm(&self, op: Op, errno: i32, times: usize) {
        self.arm_partial(op, errno, times, None);
    }
    fn arm_partial(&self, op: Op, errno: i32, times: usize, partial: Option<usize>) {
        self.0.lock().unwrap().push(Rule {
            op,
            errno,
            times,
            partial,
        });
    }
    /// `Some((errno, partial))` when this call must fail.
    fn hit(&self, op: Op) -> Option<(i32, Option<usize>)> {
        let mut rules = self.0.lock().unwrap();
        let rule = rules.iter_mut().find(|r| r.op == op && r.times > 0)?;
        rule.times -= 1;
        Some((rule.errno, rule.partial))
    }
}

struct FaultyStorage {
    real: RealStorage,
    faults: Faults,
}

struct FaultyFile {
    real: Box<dyn SegmentFile>,
    faults: Faults,
}

impl Storage for FaultyStorage {
    fn create(&mut self, path: &Path) -> io::Result<Box<dyn SegmentFile>> {
        if let Some((errno, _)) = self.faults.hit(Op::Create) {
            return Err(io::Error::from_raw_os_error(errno));
        }
        Ok(Box::new(FaultyFile {
            real: self.real.create(path)?,
            faults: self.faults.clone(),
        }))
    }
    fn remove(&mut self, path: &Path) -> io::Result<()> {
        if let Some((errno, _)) = self.faults.hit(Op::Remove) {
            return Err(io::Error::from_raw_os_error(errno));
        }
        self.real.remove(path)
    }
    fn sync_dir(&mut self, dir: &Path) -> io::Result<()> {
        if let Some((errno, _)) = self.faults.hit(Op::SyncDir) {
            return Err(io::Error::from_raw_os_error(errno));
        }
        self.real.sync_dir(dir)
    }
}

impl SegmentFile for FaultyFile {
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        if let Some((errno, partial)) = self.faults.hit(Op::Write) {
            if let Some(n) = partial {
                self.real.write_all_at(&buf[..n.min(buf.len())], offset)?;
            }
            return Err(io::Error::from_raw_os_error(errno));
        }
        self.real.write_all_at(buf, offset)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        if let Some((errno, _)) = self.faults.hit(Op::Sync) {
            return Err(io::Error::from_raw_os_error(errno));
        }
        self.real.sync_data()
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        if let Some((errno, _)) = self.faults.hit(Op::SetLen) {
            return Err(io::Error::from_raw_os_error(errno));
        }
        self.real.set_len(len)
    }
}

fn opts(dir: &Path, segment_bytes: u64) -> SpoolOptions {
    SpoolOptions {
        dir: dir.to_path_buf(),
        segment_bytes,
        max_bytes: 1 << 30,
    }
}

fn open_faulty(dir: &Path, segment_bytes: u64) -> (Spool, Recovery, Faults) {
    let faults = Faults::default();
    let storage = FaultyStorage {
        real: RealStorage,
        faults: faults.clone(),
    };
    let (spool, rec) = Spool::open_with(opts(dir, segment_bytes), Box::new(storage)).unwrap();
    (spool, rec, faults)
}

fn reopen(dir: &Path) -> (Spool, Recovery) {
    Spool::open(opts(dir, 1 << 20)).unwrap()
}

fn img(n: usize) -> Record {
    Record::Img {
        received_ms: 1_000 + n as u64,
        msg: ImgMessage {
            device: DeviceId::new("pk", "cam"),
            message_id: format!("msg-{n}"),
            value: format!("{n:0800x}"),
            item_time: Some(n as i64),
            gmt_create: None,
            request_id: None,
        },
    }
}

fn append_n(spool: &mut Spool, range: std::ops::Range<usize>) -> Vec<(Tag, Record)> {
    range
        .map(|n| {
            let r = img(n);
            (spool.append(&r).unwrap(), r)
        })
        .collect()
}

fn seg_files(dir: &Path) -> Vec<(String, u64)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            name.starts_with("seg-")
                .then(|| (name, e.metadata().unwrap().len()))
        })
        .collect();
    v.sort();
    v
}

#[test]
fn enospc_on_write_cuts_the_batch_and_a_later_commit_works() {
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, _, faults) = open_faulty(dir.path(), 1 << 20);
    let mut want = append_n(&mut spool, 0..3);
    spool.commit().unwrap();
    let committed = spool.bytes();
    let files = seg_files(dir.path());
    assert_eq!(files.len(), 1);

    faults.arm_partial(Op::Write, libc::ENOSPC, 1, Some(1000));
    let lost = append_n(&mut spool, 3..6);
    let err = spool.commit().unwrap_err();
    assert!(err.is_disk_full(), "{err}");
    assert!(err.is_retryable());
    assert_eq!(err.kind(), Some(io::ErrorKind::StorageFull));
    assert_eq!(
        err.path().unwrap(),
        dir.path().join(&files[0].0),
        "the error names the segment"
    );
    assert!(err.to_string().contains(&files[0].0), "{err}");
    // Cut back to the committed length; nothing of the batch counts.
    assert_eq!(seg_files(dir.path()), files);
    assert_eq!(spool.bytes(), committed);
    assert_eq!(spool.uncommitted(), 0);
    // Releasing the failed batch's tags is harmless.
    spool.release(lost.iter().map(|(t, _)| *t));
    assert_eq!(spool.live_records(), 3);

    // Space is back: the next commit starts a new segment (the failed one is sealed).
    want.extend(append_n(&mut spool, 6..8));
    let stats = spool.commit().unwrap();
    assert!(stats.new_segment);
    assert_eq!(stats.records, 2);
    assert_eq!(spool.segments(), 2);
    drop(spool);

    let (_, rec) = reopen(dir.path());
    assert!(rec.corrupt.is_empty(), "{:?}", rec.corrupt);
    assert_eq!(rec.records, want);
}

#[test]
fn eio_on_fdatasync_drops_the_batch_and_seals_the_segment() {
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, _, faults) = open_faulty(dir.path(), 1 << 20);
    let mut want = append_n(&mut spool, 0..2);
    spool.commit().unwrap();

    faults.arm(Op::Sync, libc::EIO, 1);
    append_n(&mut spool, 2..4);
    let err = spool.commit().unwrap_err();
    assert!(!err.is_disk_full());
    assert!(err.is_retryable());
    assert!(
        matches!(
            err,
            SpoolError::Io {
                op: "fdatasync",
                ..
            }
        ),
        "{err}"
    );

    want.extend(append_n(&mut spool, 4..5));
    assert!(spool.commit().unwrap().new_segment);
    drop(spool);
    let (_, rec) = reopen(dir.path());
    assert!(rec.corrupt.is_empty(), "{:?}", rec.corrupt);
    assert_eq!(rec.records, want);
}

#[test]
fn erofs_is_reported_and_recovered_from() {
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, _, faults) = open_faulty(dir.path(), 1 << 20);
    faults.arm(Op::Create, libc::EROFS, 2);
    append_n(&mut spool, 0..2);
    let err = spool.commit().unwrap_err();
    assert_eq!(err.kind(), Some(io::ErrorKind::ReadOnlyFilesystem));
    assert!(matches!(err, SpoolError::Io { op: "create", .. }), "{err}");
    append_n(&mut spool, 2..3);
    assert!(spool.commit().is_err());
    assert!(seg_files(dir.path()).is_empty());
    assert_eq!(spool.bytes(), 0);
    let want = append_n(&mut spool, 3..4);
    spool.commit().unwrap();
    drop(spool);
    let (_, rec) = reopen(dir.path());
    assert_eq!(rec.records, want);
}

#[test]
fn a_failed_truncate_leaves_only_whole_records_or_a_reported_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, _, faults) = open_faulty(dir.path(), 1 << 20);
    let mut want = append_n(&mut spool, 0..2);
    spool.commit().unwrap();
    // One and a half records reach the file, then the write fails and so does the cut.
    let frame = 16 + format::body_len(&img(0));
    faults.arm_partial(Op::Write, libc::EIO, 1, Some(frame + frame / 2));
    faults.arm(Op::SetLen, libc::EIO, 1);
    let unaccepted = append_n(&mut spool, 2..4);
    assert!(spool.commit().is_err());
    let later = append_n(&mut spool, 4..6);
    spool.commit().unwrap();
    drop(spool);

    let (_, rec) = reopen(dir.path());
    // The whole record of the failed batch comes back (never accepted: a redelivery duplicates
    // it, which the engine deduplicates); the half one is a torn tail, cut and reported.
    want.push(unaccepted[0].clone());
    want.extend(later);
    assert_eq!(rec.records, want);
    assert_eq!(rec.corrupt.len(), 1, "{:?}", rec.corrupt);
    assert_eq!(rec.corrupt[0].kind, CorruptKind::TornTail);
    drop(rec);
    let (_, again) = reopen(dir.path());
    assert!(
        again.corrupt.is_empty(),
        "the tail was cut: {:?}",
        again.corrupt
    );
}

#[test]
fn a_failed_directory_sync_fails_the_commit_that_creates_a_segment() {
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, _, faults) = open_faulty(dir.path(), 1 << 20);
    faults.arm(Op::SyncDir, libc::EIO, 1);
    append_n(&mut spool, 0..2);
    let err = spool.commit().unwrap_err();
    assert!(
        matches!(
            err,
            SpoolError::Io {
                op: "fsync directory",
                ..
            }
        ),
        "{err}"
    );
    assert!(
        seg_files(dir.path()).is_empty(),
        "the unsynced file is removed"
    );
    let want = append_n(&mut spool, 2..3);
    spool.commit().unwrap();
    drop(spool);
    assert_eq!(reopen(dir.path()).1.records, want);
}

#[test]
fn a_failed_unlink_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, _, faults) = open_faulty(dir.path(), 1024);
    let first = append_n(&mut spool, 0..2); // > 1 KiB: the next batch rolls over
    spool.commit().unwrap();
    append_n(&mut spool, 2..3);
    spool.commit().unwrap();
    assert_eq!(spool.segments(), 2);
    faults.arm(Op::Remove, libc::EBUSY, 1);
    spool.release(first.iter().map(|(t, _)| *t));
    assert_eq!(spool.segments(), 2, "removal failed");
    std::thread::sleep(GC_RETRY * 2);
    spool.release(std::iter::empty());
    assert_eq!(spool.segments(), 1, "retried");
    assert_eq!(seg_files(dir.path()).len(), 1);
}

#[test]
fn releases_are_durable_after_the_next_commit_only() {
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, _, _) = open_faulty(dir.path(), 1 << 20);
    let recs = append_n(&mut spool, 0..4);
    spool.commit().unwrap();
    spool.release([recs[0].0, recs[2].0]);
    assert_eq!(spool.pending_releases(), 2);
    drop(spool); // crash before a commit: the releases are lost, the records come back
    let (mut spool, rec) = reopen(dir.path());
    assert_eq!(rec.records, recs);
    spool.release([recs[0].0, recs[2].0]);
    let stats = spool.commit().unwrap();
    assert_eq!((stats.records, stats.releases), (0, 2));
    drop(spool);
    let (_, rec) = reopen(dir.path());
    assert_eq!(rec.records, vec![recs[1].clone(), recs[3].clone()]);
    assert_eq!(rec.released, 2);
}

#[test]
fn a_record_released_before_its_commit_is_written_with_its_release() {
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, _, _) = open_faulty(dir.path(), 1 << 20);
    let recs = append_n(&mut spool, 0..3);
    spool.release([recs[1].0]);
    let stats = spool.commit().unwrap();
    assert_eq!((stats.records, stats.releases), (3, 1));
    assert_eq!(spool.live_records(), 2);
    drop(spool);
    let (_, rec) = reopen(dir.path());
    assert_eq!(rec.records, vec![recs[0].clone(), recs[2].clone()]);
}

#[test]
fn abort_burns_indices_and_invalidates_tags() {
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, _, _) = open_faulty(dir.path(), 1 << 20);
    let kept = append_n(&mut spool, 0..1);
    spool.commit().unwrap();
    let aborted = append_n(&mut spool, 1..3);
    spool.abort();
    assert_eq!(spool.uncommitted(), 0);
    let after = append_n(&mut spool, 3..4);
    assert!(aborted.iter().all(|(t, _)| *t != after[0].0));
    spool.release(aborted.iter().map(|(t, _)| *t));
    spool.commit().unwrap();
    assert_eq!(spool.live_records(), 2);
    drop(spool);
    let (_, rec) = reopen(dir.path());
    assert_eq!(rec.records, [kept, after].concat(), "tags are stable too");
}

#[test]
fn a_segment_hiding_older_records_outlives_them() {
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, _, _) = open_faulty(dir.path(), 1024);
    // Segment A: two records, > 1 KiB so it rolls.
    let a = append_n(&mut spool, 0..2);
    spool.commit().unwrap();
    // Release a[0]: the release record lands in segment B, together with B's own record.
    spool.release([a[0].0]);
    let b = append_n(&mut spool, 2..4);
    spool.commit().unwrap();
    assert_eq!(spool.segments(), 2);
    // Segment C; B is sealed. B's records die, but B hides a[0] and A is still there.
    let c = append_n(&mut spool, 4..5);
    spool.commit().unwrap();
    spool.release(b.iter().map(|(t, _)| *t));
    assert_eq!(spool.segments(), 3, "B is pinned by A");
    spool.commit().unwrap(); // releases of B's records land in C
    drop(spool);
    let (mut spool, rec) = reopen(dir.path());
    assert_eq!(rec.records, vec![a[1].clone(), c[0].clone()]);
    // A's last record goes: A, then B (no longer needed) go.
    spool.release([a[1].0]);
    assert_eq!(spool.segments(), 1);
    assert_eq!(seg_files(dir.path()).len(), 1);
}

#[test]
fn seen_records_are_live_until_released_and_done_records_never() {
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, _, _) = open_faulty(dir.path(), 1024);
    let seen = Record::Seen {
        received_ms: 5,
        message_id: "dup".into(),
    };
    let done = Record::Done {
        device: DeviceId::new("pk", "cam"),
        pid: 3,
        size: 100,
        crc: 7,
        at_ms: 9,
    };
    let t1 = spool.append(&seen).unwrap();
    let t2 = spool.append(&done).unwrap();
    spool.commit().unwrap();
    assert_eq!(spool.live_records(), 1, "the Seen record pins its segment");
    drop(spool);
    // Unreleased, the Seen fact survives a restart (it recognises a redelivery).
    let (mut spool, rec) = reopen(dir.path());
    assert_eq!(rec.records, vec![(t1, seen.clone()), (t2, done.clone())]);
    assert_eq!(spool.live_records(), 1);
    spool.release([t1, t2]);
    spool.commit().unwrap();
    drop(spool);
    let (spool, rec) = reopen(dir.path());
    assert!(
        rec.records.iter().all(|(t, _)| *t != t1),
        "a released Seen record does not come back"
    );
    assert_eq!(spool.live_records(), 0);
}

#[test]
fn one_process_per_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = reopen(dir.path());
    let err = Spool::open(opts(dir.path(), 1 << 20)).unwrap_err();
    assert!(matches!(err, SpoolError::Locked { .. }), "{err}");
    assert!(!err.is_retryable());
    drop(spool);
    reopen(dir.path());
}

#[test]
fn release_runs_are_sorted_and_merged() {
    let mut pending = vec![
        make_tag(2, 5),
        make_tag(1, 3),
        make_tag(2, 4),
        make_tag(1, 3),
        make_tag(1, 4),
        make_tag(9, 0),
        make_tag(2, 7),
    ];
    let runs = release_runs(&mut pending, |s| s != 9);
    let runs: Vec<_> = runs.iter().map(|r| (r.segment, r.first, r.count)).collect();
    assert_eq!(runs, vec![(1, 3, 2), (2, 4, 2), (2, 7, 1)]);
}

#[test]
fn segment_names() {
    assert_eq!(segment_file_name(0x2a), "seg-000000000000002a.log");
    assert_eq!(parse_segment_name("seg-000000000000002a.log"), Some(42));
    assert_eq!(parse_segment_name("seg-2a.log"), None);
    assert_eq!(parse_segment_name("seg-000000000000002g.log"), None);
    assert_eq!(parse_segment_name("seg-000000000000002a.log.tmp"), None);
}

#[test]
fn recovered_release_intervals_merge() {
    let mut r = Released::default();
    for (first, count) in [(10, 5), (0, 2), (12, 10), (30, 1), (2, 1)] {
        r.add(&ReleaseRun {
            segment: 4,
            first,
            count,
        });
    }
    r.finish();
    let covered: Vec<u32> = (0..40).filter(|&i| r.covers(4, i)).collect();
    let want: Vec<u32> = (0..3).chain(10..22).chain(30..31).collect();
    assert_eq!(covered, want);
    assert!(!r.covers(5, 0));
}

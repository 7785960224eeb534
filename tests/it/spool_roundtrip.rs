//! Spool lifecycle through the public API: append/commit/reopen, tags, roll-over, release and
//! deletion, the size cap.

use crate::support::spool::*;
use receiver::assembler::Tag;
use receiver::spool::{Record, Spool, SpoolError, SpoolOptions, MAX_BODY_LEN};
use std::collections::HashSet;

#[test]
fn committed_records_come_back_in_log_order_with_their_tags() {
    let dir = tempfile::tempdir().unwrap();
    let mut want: Vec<(Tag, Record)> = Vec::new();
    {
        let (mut spool, rec) = Spool::open(opts(dir.path(), 64 << 20)).unwrap();
        assert!(rec.records.is_empty() && rec.corrupt.is_empty());
        for batch in 0..5 {
            for n in batch * 7..batch * 7 + 7 {
                let r = mixed(n);
                want.push((spool.append(&r).unwrap(), r));
            }
            let d = done(batch as u32);
            want.push((spool.append(&d).unwrap(), d));
            let stats = spool.commit().unwrap();
            assert_eq!(stats.records, 8);
            assert_eq!(stats.new_segment, batch == 0);
        }
        // Not committed: never seen again.
        spool.append(&img(999)).unwrap();
    }
    let (spool, rec) = Spool::open(opts(dir.path(), 64 << 20)).unwrap();
    assert!(rec.corrupt.is_empty(), "{:?}", rec.corrupt);
    assert_eq!(rec.records, want);
    assert_eq!(rec.bytes, disk_bytes(dir.path()));
    assert_eq!(rec.bytes, spool.bytes());
    let live = want.iter().filter(|(_, r)| r.is_live_kind()).count();
    assert_eq!(spool.live_records(), live);
}

#[test]
fn tags_are_unique_nonzero_and_stable_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut all = HashSet::new();
    let mut kept: Vec<(Tag, Record)> = Vec::new();
    for round in 0..4 {
        let (mut spool, rec) = Spool::open(opts(dir.path(), 4096)).unwrap();
        assert_eq!(rec.records, kept, "round {round}");
        for n in 0..12 {
            let r = img(round * 100 + n);
            let tag = spool.append(&r).unwrap();
            assert!(tag != 0 && all.insert(tag), "tag {tag:#x} reused");
            kept.push((tag, r));
            if n % 4 == 3 {
                spool.commit().unwrap();
            }
        }
    }
}

#[test]
fn segments_roll_over_and_go_when_their_records_are_released() {
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, _) = Spool::open(opts(dir.path(), 8 << 10)).unwrap();
    let mut tags = Vec::new();
    for n in 0..100 {
        tags.push(spool.append(&img(n)).unwrap());
        if n % 10 == 9 {
            spool.commit().unwrap();
            assert_eq!(spool.bytes(), disk_bytes(dir.path()));
        }
    }
    let before = spool.segments();
    assert!(before >= 9, "{before} segments");
    assert_eq!(segment_files(dir.path()).len(), before);
    // Each batch (~9 KiB) overshoots 8 KiB: one batch per segment; segments are never split.
    spool.release(tags[..90].iter().copied());
    assert_eq!(spool.segments(), 1, "only the active segment is left");
    assert_eq!(segment_files(dir.path()).len(), 1);
    assert_eq!(spool.bytes(), disk_bytes(dir.path()));
    spool.commit().unwrap(); // the releases of the active segment's peers: nothing left to hide
    drop(spool);
    let (_, rec) = Spool::open(opts(dir.path(), 8 << 10)).unwrap();
    let tags_back: Vec<Tag> = rec.records.iter().map(|(t, _)| *t).collect();
    assert_eq!(tags_back, tags[90..]);
}

#[test]
fn releasing_everything_then_restarting_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, _) = Spool::open(opts(dir.path(), 4096)).unwrap();
    let tags: Vec<Tag> = (0..20).map(|n| spool.append(&img(n)).unwrap()).collect();
    spool.commit().unwrap();
    spool.release(tags.iter().copied());
    assert_eq!(spool.live_records(), 0);
    assert_eq!(spool.segments(), 1, "the active segment stays until sealed");
    // The releases go into a new segment (the first one is past 4 KiB), which seals the first
    // one: dead, it is deleted right away.
    let stats = spool.commit().unwrap();
    assert_eq!((stats.releases, stats.new_segment), (20, true));
    assert_eq!(segment_files(dir.path()).len(), 1);
    drop(spool);
    let (spool, rec) = Spool::open(opts(dir.path(), 4096)).unwrap();
    assert!(rec.records.is_empty());
    assert_eq!(rec.released, 0, "nothing left to hide");
    assert_eq!(
        spool.segments(),
        0,
        "a dead sealed segment is removed at open"
    );
    assert_eq!(spool.bytes(), 0);
}

#[test]
fn is_full_follows_bytes_and_append_never_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let options = SpoolOptions {
        max_bytes: 10_000,
        ..opts(dir.path(), 4096)
    };
    let (mut spool, _) = Spool::open(options).unwrap();
    let mut tags = Vec::new();
    while !spool.is_full() {
        tags.push(spool.append(&img(tags.len())).unwrap());
    }
    assert!(spool.bytes() >= 10_000, "uncommitted bytes count");
    tags.push(spool.append(&img(tags.len())).unwrap());
    spool.commit().unwrap();
    assert!(spool.is_full());
    // Another batch in a new segment; releasing the first frees it.
    let more: Vec<Tag> = (0..3)
        .map(|n| spool.append(&img(500 + n)).unwrap())
        .collect();
    spool.commit().unwrap();
    spool.release(tags);
    assert!(!spool.is_full(), "{} bytes", spool.bytes());
    spool.release(more);
}

#[test]
fn an_oversized_record_is_refused_without_side_effects() {
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, _) = Spool::open(opts(dir.path(), 4096)).unwrap();
    let Record::Img {
        received_ms,
        mut msg,
    } = img(1)
    else {
        unreachable!()
    };
    msg.value = "A".repeat(MAX_BODY_LEN + 1);
    let err = spool.append(&Record::Img { received_ms, msg }).unwrap_err();
    assert!(matches!(err, SpoolError::RecordTooLarge { .. }), "{err}");
    assert!(!err.is_retryable());
    assert_eq!((spool.uncommitted(), spool.bytes()), (0, 0));
    let tag = spool.append(&img(2)).unwrap();
    spool.commit().unwrap();
    drop(spool);
    let (_, rec) = Spool::open(opts(dir.path(), 4096)).unwrap();
    assert_eq!(rec.records, vec![(tag, img(2))]);
}

#[test]
fn an_empty_commit_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, _) = Spool::open(opts(dir.path(), 4096)).unwrap();
    let stats = spool.commit().unwrap();
    assert_eq!((stats.records, stats.bytes), (0, 0));
    assert!(segment_files(dir.path()).is_empty());
    spool.release([12345]); // unknown tag: ignored
    assert_eq!(spool.commit().unwrap().bytes, 0);
}

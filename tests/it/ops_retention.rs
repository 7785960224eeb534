//! Retention on a real folder: oldest first, temp/recent files kept, symlinks neither followed nor
//! deleted, nothing outside `<output>/<pk>/<dn>/*.jpg` touched.

use crate::support::poll;
use receiver::metrics::Metrics;
use receiver::ops::retention::{self, sweep, RetentionConfig, RetentionLimits};
use std::fs::{self, File};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

/// Writes `bytes` bytes at `path` with mtime `age` ago.
fn put(path: &Path, bytes: usize, age: Duration) -> PathBuf {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, vec![0xAB; bytes]).unwrap();
    let f = File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() - age).unwrap();
    path.to_path_buf()
}

/// Our file name for a time `age` ago (UTC, `YYYYMMDDTHHMMSS.mmmZ`).
fn name(age: Duration, suffix: &str) -> String {
    let secs = (SystemTime::now() - age)
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // civil_from_days (Howard Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}.000Z{suffix}.jpg",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

struct Tree {
    _tmp: tempfile::TempDir,
    out: PathBuf,
    outside: PathBuf,
}

fn tree() -> Tree {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let outside = tmp.path().join("outside");
    fs::create_dir_all(&out).unwrap();
    fs::create_dir_all(&outside).unwrap();
    Tree {
        _tmp: tmp,
        out,
        outside,
    }
}

fn exists(p: &Path) -> bool {
    fs::symlink_metadata(p).is_ok()
}

#[test]
fn per_device_limit_deletes_oldest_and_respects_safety_rules() {
    let t = tree();
    let dev = t.out.join("pk1").join("cam-a");
    let old: Vec<PathBuf> = (0..4)
        .map(|i| put(&dev.join(name(DAY * (10 - i), "")), 100, DAY * (10 - i)))
        .collect();
    let collision = put(&dev.join(name(DAY * 10, "-2")), 100, DAY * 10);
    // Being written / just written: never deleted, even though they are the oldest by name.
    let tmp = put(
        &dev.join(format!(".{}.tmp", name(DAY * 20, ""))),
        100,
        DAY * 20,
    );
    let recent = put(&dev.join(name(DAY * 30, "")), 100, Duration::from_secs(5));
    // Not ours: other extensions, wrong depth.
    let notes = put(&dev.join("notes.txt"), 100, DAY * 40);
    let deep = put(&dev.join("sub").join(name(DAY * 40, "")), 100, DAY * 40);
    let shallow = put(&t.out.join("pk1").join(name(DAY * 40, "")), 100, DAY * 40);
    // Symlinks: to a file outside, a device folder outside, a product folder outside.
    let victim = put(&t.outside.join(name(DAY * 50, "")), 100, DAY * 50);
    symlink(&victim, dev.join(name(DAY * 50, "-9"))).unwrap();
    let outside_dev = t.outside.join("dev");
    let outside_file = put(&outside_dev.join(name(DAY * 50, "")), 100, DAY * 50);
    symlink(&outside_dev, t.out.join("pk1").join("evil")).unwrap();
    let outside_pk = t.outside.join("pk");
    let outside_pk_file = put(
        &outside_pk.join("d").join(name(DAY * 50, "")),
        100,
        DAY * 50,
    );
    symlink(&outside_pk, t.out.join("evilpk")).unwrap();

    let limits = RetentionLimits {
        max_files_per_device: Some(3),
        ..Default::default()
    };
    let report = sweep(&t.out, &limits, SystemTime::now(), &|| false).unwrap();
    // cam-a holds 7 candidates-or-protected files (4 old + collision + tmp + recent): down to 3,
    // the protected two included, so 4 deletions, oldest first (collision and old[0] tie on time).
    assert_eq!(report.deleted, 4, "{report:?}");
    assert_eq!(report.by_device, 4);
    assert_eq!(report.deleted_bytes, 400);
    assert!(!exists(&old[0]) && !exists(&collision) && !exists(&old[1]) && !exists(&old[2]));
    assert!(exists(&old[3]));
    for kept in [&tmp, &recent, &notes, &deep, &shallow] {
        assert!(exists(kept), "{} was deleted", kept.display());
    }
    for kept in [&victim, &outside_file, &outside_pk_file] {
        assert!(exists(kept), "followed a symlink to {}", kept.display());
    }
    assert!(
        exists(&dev.join(name(DAY * 50, "-9"))),
        "symlink itself deleted"
    );
}

#[test]
fn max_age_and_total_bytes() {
    let t = tree();
    let a = t.out.join("pk").join("a");
    let b = t.out.join("pk").join("b");
    let a_old = put(&a.join(name(DAY * 40, "")), 1000, DAY * 40);
    let a_mid = put(&a.join(name(DAY * 5, "")), 1000, DAY * 5);
    let b_mid = put(&b.join(name(DAY * 4, "")), 1000, DAY * 4);
    let b_new = put(&b.join(name(HOUR, "")), 1000, HOUR);
    // Named by a camera whose clock is years behind, but written an hour ago: not "old".
    let wrong_clock = put(&b.join("20000101T000000.000Z.jpg"), 10, HOUR);

    let by_age = RetentionLimits {
        max_age: Some(30 * DAY),
        ..Default::default()
    };
    let r = sweep(&t.out, &by_age, SystemTime::now(), &|| false).unwrap();
    assert_eq!((r.deleted, r.by_age, r.scanned), (1, 1, 5), "{r:?}");
    assert!(!exists(&a_old));

    let by_size = RetentionLimits {
        max_total_bytes: Some(2010),
        ..Default::default()
    };
    let r = sweep(&t.out, &by_size, SystemTime::now(), &|| false).unwrap();
    // Oldest first globally: the wrong-clock file sorts first by name (10 bytes), then a_mid.
    assert_eq!(
        (r.deleted, r.by_total, r.deleted_bytes),
        (2, 2, 1010),
        "{r:?}"
    );
    assert!(!exists(&wrong_clock) && !exists(&a_mid));
    assert!(exists(&b_mid) && exists(&b_new));
}

#[test]
fn missing_output_folder_is_empty() {
    let t = tree();
    let limits = RetentionLimits {
        max_total_bytes: Some(0),
        ..Default::default()
    };
    let r = sweep(&t.out.join("not-yet"), &limits, SystemTime::now(), &|| {
        false
    })
    .unwrap();
    assert_eq!(r.scanned, 0);
}

#[test]
fn cancel_stops_between_files() {
    let t = tree();
    for i in 0..5 {
        put(
            &t.out.join("p").join("d").join(name(DAY * (i + 2), "")),
            10,
            DAY * (i + 2),
        );
    }
    let limits = RetentionLimits {
        max_total_bytes: Some(0),
        ..Default::default()
    };
    let r = sweep(&t.out, &limits, SystemTime::now(), &|| true).unwrap();
    assert_eq!(r.deleted, 0);
}

#[tokio::test]
async fn periodic_sweeps_update_metrics_and_stop() {
    let t = tree();
    let dev = t.out.join("pk").join("d");
    for i in 0..3 {
        put(&dev.join(name(DAY * (i + 1), "")), 10, DAY * (i + 1));
    }
    let metrics = Arc::new(Metrics::default());
    let shutdown = CancellationToken::new();
    let cfg = RetentionConfig {
        limits: RetentionLimits {
            max_files_per_device: Some(1),
            ..Default::default()
        },
        interval: HOUR,
    };
    let task = retention::spawn(cfg, t.out.clone(), metrics.clone(), shutdown.clone());
    assert!(
        poll::until(Duration::from_secs(10), Duration::from_millis(10), || {
            metrics.retention_sweeps.load(Relaxed) != 0
        })
        .await,
        "no sweep"
    );
    assert_eq!(metrics.retention_deleted_files.load(Relaxed), 2);
    assert_eq!(metrics.retention_deleted_bytes.load(Relaxed), 20);
    assert_eq!(fs::read_dir(&dev).unwrap().count(), 1);
    let text = metrics.render_prometheus();
    assert!(text.contains("receiver_retention_deleted_files_total 2"));
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("stops on shutdown")
        .unwrap();
}

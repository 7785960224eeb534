//! Retention: optional limits on the output folder, applied oldest first.
//!
//! Limits (each optional, all off by default): `max_age`, `max_files_per_device` and
//! `max_total_bytes`. A sweep scans `<output>/<productKey>/<deviceName>/*.jpg` (exactly that
//! depth), [`plan`]s which files go, and deletes them. A file's time is the UTC timestamp in its
//! name (`20261126T122710.123Z.jpg`, `…Z-2.jpg` after a collision), or its mtime when the name is
//! not one of ours.
//!
//! Safety rules, enforced both by the planner and again just before each deletion:
//!
//! - files being written are never touched: dot-prefixed names (the sink's `.*.tmp`) and anything
//!   modified within the last minute ([`RECENT`]) are skipped;
//! - symlinks are never followed (not for folders, not for files) and never deleted, and a
//!   file whose parent folder does not resolve inside the output folder is left alone;
//! - `max_age` deletes a file only when *both* its name time and its mtime are older than the
//!   limit, so a camera with a wrong clock cannot get fresh pictures deleted;
//! - folders are never removed (the sink may be creating a file in one at that moment).
//!
//! Each sweep logs one `info` line with its counts, and one `debug` line per deleted file. Sweeps
//! run on a blocking thread ([`spawn`]), every `interval`.

use crate::config::{ByteSize, HumanDuration};
use crate::events::ops::{RetentionSweepFailed, RetentionSwept};
use crate::metrics::Metrics;
use serde::Deserialize;
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Files modified more recently than this are never deleted.
pub const RECENT: Duration = Duration::from_secs(60);

/// The limits. A limit that is `None` is not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct RetentionLimits {
    /// Delete files older than this.
    #[serde(
        serialize_with = "crate::config::as_toml::opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_age: Option<Duration>,
    /// Keep at most this many bytes of images in the whole output folder.
    #[serde(
        serialize_with = "crate::config::as_toml::opt_size",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_total_bytes: Option<u64>,
    /// Keep at most this many images per device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_files_per_device: Option<usize>,
}

impl RetentionLimits {
    /// Whether any limit is set.
    pub fn any(&self) -> bool {
        self.max_age.is_some()
            || self.max_total_bytes.is_some()
            || self.max_files_per_device.is_some()
    }
}

/// `[retention]`: limits and how often to apply them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct RetentionConfig {
    /// The limits (in the config file, keys of `[retention]` itself).
    #[serde(flatten)]
    pub limits: RetentionLimits,
    /// Time between sweeps (the first runs at start).
    #[serde(serialize_with = "crate::config::as_toml::duration")]
    pub interval: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            limits: RetentionLimits::default(),
            interval: Duration::from_secs(600),
        }
    }
}

/// `[retention]` as written in TOML.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetentionConfig {
    /// `"30d"` (humantime).
    pub max_age: super::Field<HumanDuration>,
    /// Bytes or `"50GiB"`.
    pub max_total_bytes: super::Field<ByteSize>,
    /// Images per device.
    pub max_files_per_device: super::Field<usize>,
    /// Time between sweeps, default `"10m"`.
    pub interval: super::Field<HumanDuration>,
}

impl RawRetentionConfig {
    /// Validates into a [`RetentionConfig`].
    pub fn validate(&self) -> Result<RetentionConfig, super::OpsConfigError> {
        use super::{value, OpsConfigError};
        let max_age = value(&self.max_age).map(Duration::from);
        if max_age.is_some_and(|a| a < RECENT) {
            return Err(OpsConfigError::invalid(
                "retention.max_age",
                self.max_age.as_ref(),
                "must be at least 1 minute",
            ));
        }
        let max_files_per_device = value(&self.max_files_per_device);
        if max_files_per_device == Some(0) {
            return Err(OpsConfigError::invalid(
                "retention.max_files_per_device",
                self.max_files_per_device.as_ref(),
                "must be at least 1",
            ));
        }
        let interval =
            value(&self.interval).map_or(RetentionConfig::default().interval, Duration::from);
        if interval < Duration::from_secs(1) {
            return Err(OpsConfigError::invalid(
                "retention.interval",
                self.interval.as_ref(),
                "must be at least 1 second",
            ));
        }
        Ok(RetentionConfig {
            limits: RetentionLimits {
                max_age,
                max_total_bytes: value(&self.max_total_bytes).map(u64::from),
                max_files_per_device,
            },
            interval,
        })
    }
}

/// Why a sweep failed as a whole (single files that cannot be deleted are only counted).
#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    /// The output folder cannot be read.
    #[error("cannot read the output folder {path}: {source}")]
    ReadRoot {
        /// The folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// One image file as seen by a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    /// Full path.
    pub path: PathBuf,
    /// The device folder, relative to the output folder (`<productKey>/<deviceName>`).
    pub device: PathBuf,
    /// Size.
    pub bytes: u64,
    /// Last modification.
    pub mtime: SystemTime,
    /// Time parsed from the name, if it is one of ours.
    pub name_time: Option<SystemTime>,
}

impl FileInfo {
    /// The time that orders files: the name's, else the mtime.
    pub fn time(&self) -> SystemTime {
        self.name_time.unwrap_or(self.mtime)
    }

    fn is_temporary(&self) -> bool {
        self.path.file_name().is_none_or(|n| {
            let n = n.as_encoded_bytes();
            n.starts_with(b".") || n.ends_with(b".tmp")
        })
    }

    fn is_recent(&self, now: SystemTime) -> bool {
        // An mtime in the future (clock stepped back) counts as recent.
        now.duration_since(self.mtime)
            .map_or(true, |age| age < RECENT)
    }
}

/// Which limit a planned deletion enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// `max_age`.
    Age,
    /// `max_files_per_device`.
    PerDevice,
    /// `max_total_bytes`.
    TotalBytes,
}

impl Reason {
    /// Stable name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Age => "max_age",
            Reason::PerDevice => "max_files_per_device",
            Reason::TotalBytes => "max_total_bytes",
        }
    }
}

/// One planned deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// The file.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// The limit it enforces.
    pub reason: Reason,
}

/// The files to delete to meet `limits` at `now`, oldest first. Pure.
pub fn plan(files: &[FileInfo], limits: &RetentionLimits, now: SystemTime) -> Vec<PathBuf> {
    plan_detailed(files, limits, now)
        .into_iter()
        .map(|p| p.path)
        .collect()
}

/// Like [`plan`], with each file's size and reason.
///
/// Order of application: `max_age`, then `max_files_per_device` (per device, oldest first), then
/// `max_total_bytes` (globally, oldest first). Protected files (temporary, recent) are never
/// planned but still count towards the per-device and total limits.
pub fn plan_detailed(
    files: &[FileInfo],
    limits: &RetentionLimits,
    now: SystemTime,
) -> Vec<Planned> {
    let mut order: Vec<usize> = (0..files.len()).collect();
    order.sort_by(|&a, &b| {
        files[a]
            .time()
            .cmp(&files[b].time())
            .then_with(|| files[a].path.cmp(&files[b].path))
    });
    let deletable: Vec<bool> = files
        .iter()
        .map(|f| !f.is_temporary() && !f.is_recent(now))
        .collect();
    let mut reason: Vec<Option<Reason>> = vec![None; files.len()];

    if let Some(max_age) = limits.max_age {
        let older = |t: SystemTime| now.duration_since(t).is_ok_and(|age| age > max_age);
        for &i in &order {
            let f = &files[i];
            if deletable[i] && older(f.mtime) && f.name_time.is_none_or(older) {
                reason[i] = Some(Reason::Age);
            }
        }
    }

    if let Some(max_files) = limits.max_files_per_device {
        let mut count: HashMap<&Path, usize> = HashMap::new();
        for (i, f) in files.iter().enumerate() {
            if reason[i].is_none() {
                *count.entry(f.device.as_path()).or_default() += 1;
            }
        }
        for &i in &order {
            let f = &files[i];
            let Some(n) = count.get_mut(f.device.as_path()) else {
                continue;
            };
            if *n > max_files && deletable[i] && reason[i].is_none() {
                reason[i] = Some(Reason::PerDevice);
                *n -= 1;
            }
        }
    }

    if let Some(max_bytes) = limits.max_total_bytes {
        let mut total: u64 = files
            .iter()
            .zip(&reason)
            .filter(|(_, r)| r.is_none())
            .map(|(f, _)| f.bytes)
            .sum();
        for &i in &order {
            if total <= max_bytes {
                break;
            }
            if deletable[i] && reason[i].is_none() {
                reason[i] = Some(Reason::TotalBytes);
                total -= files[i].bytes;
            }
        }
    }

    order
        .into_iter()
        .filter_map(|i| {
            reason[i].map(|reason| Planned {
                path: files[i].path.clone(),
                bytes: files[i].bytes,
                reason,
            })
        })
        .collect()
}

/// Parses our image file names: `YYYYMMDDTHHMMSS.mmmZ[-N].jpg` (UTC).
pub fn parse_name_time(name: &str) -> Option<SystemTime> {
    let stem = name.strip_suffix(".jpg")?;
    let b = stem.as_bytes();
    if b.len() < 20 || b[8] != b'T' || b[15] != b'.' || b[19] != b'Z' {
        return None;
    }
    match &stem[20..] {
        "" => {}
        rest => {
            let n = rest.strip_prefix('-')?;
            if n.is_empty() || !n.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
        }
    }
    let num = |r: std::ops::Range<usize>| -> Option<u64> {
        let s = stem.get(r)?;
        if s.bytes().all(|c| c.is_ascii_digit()) {
            s.parse().ok()
        } else {
            None
        }
    };
    let (year, month, day) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hour, min, sec, ms) = (num(9..11)?, num(11..13)?, num(13..15)?, num(16..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let days = days_from_civil(year as i64, month as i64, day as i64);
    let secs = days * 86_400 + (hour * 3600 + min * 60 + sec) as i64;
    let secs = u64::try_from(secs).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(ms))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// What a scan found, besides the files.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ScanStats {
    /// Folders or entries that could not be read.
    pub errors: u64,
    /// Symlinks seen (and ignored).
    pub symlinks: u64,
}

/// Lists `<root>/<productKey>/<deviceName>/*.jpg` without following symlinks. Dot-prefixed
/// (temporary) files are listed too, so the planner counts them, but it never deletes them.
pub fn scan(root: &Path) -> Result<(Vec<FileInfo>, ScanStats), RetentionError> {
    let mut files = Vec::new();
    let mut stats = ScanStats::default();
    let products = match fs::read_dir(root) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((files, stats)),
        Err(source) => {
            return Err(RetentionError::ReadRoot {
                path: root.to_path_buf(),
                source,
            })
        }
    };
    for product in subdirs(products, &mut stats) {
        let Ok(devices) = fs::read_dir(&product) else {
            stats.errors += 1;
            continue;
        };
        for device in subdirs(devices, &mut stats) {
            let Ok(entries) = fs::read_dir(&device) else {
                stats.errors += 1;
                continue;
            };
            let rel = device.strip_prefix(root).unwrap_or(&device).to_path_buf();
            for entry in entries {
                let Ok(entry) = entry else {
                    stats.errors += 1;
                    continue;
                };
                // DirEntry::metadata does not follow symlinks.
                let Ok(meta) = entry.metadata() else {
                    stats.errors += 1;
                    continue;
                };
                if meta.file_type().is_symlink() {
                    stats.symlinks += 1;
                    continue;
                }
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                if !meta.is_file() || (!name.ends_with(".jpg") && !name.ends_with(".tmp")) {
                    continue;
                }
                files.push(FileInfo {
                    path: entry.path(),
                    device: rel.clone(),
                    bytes: meta.len(),
                    mtime: meta.modified().unwrap_or(SystemTime::now()),
                    name_time: parse_name_time(name),
                });
            }
        }
    }
    Ok((files, stats))
}

fn subdirs(rd: fs::ReadDir, stats: &mut ScanStats) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in rd {
        let Ok(entry) = entry else {
            stats.errors += 1;
            continue;
        };
        match entry.file_type() {
            Ok(t) if t.is_symlink() => stats.symlinks += 1,
            Ok(t) if t.is_dir() => out.push(entry.path()),
            Ok(_) => {}
            Err(_) => stats.errors += 1,
        }
    }
    out
}

/// The result of one sweep.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SweepReport {
    /// Image files seen.
    pub scanned: u64,
    /// Their total size.
    pub scanned_bytes: u64,
    /// Files deleted.
    pub deleted: u64,
    /// Bytes freed.
    pub deleted_bytes: u64,
    /// Deleted for `max_age`.
    pub by_age: u64,
    /// Deleted for `max_files_per_device`.
    pub by_device: u64,
    /// Deleted for `max_total_bytes`.
    pub by_total: u64,
    /// Planned files skipped at deletion time (changed, vanished, outside the folder).
    pub skipped: u64,
    /// Folders or files that could not be read or deleted.
    pub errors: u64,
}

/// One sweep of `root` at `now`: scan, plan, delete. Stops early (between files) when `cancel`
/// returns `true`.
pub fn sweep(
    root: &Path,
    limits: &RetentionLimits,
    now: SystemTime,
    cancel: &dyn Fn() -> bool,
) -> Result<SweepReport, RetentionError> {
    let (files, stats) = scan(root)?;
    let mut report = SweepReport {
        scanned: files.len() as u64,
        scanned_bytes: files.iter().map(|f| f.bytes).sum(),
        errors: stats.errors,
        ..SweepReport::default()
    };
    let planned = plan_detailed(&files, limits, now);
    if planned.is_empty() {
        return Ok(report);
    }
    let canonical_root = fs::canonicalize(root).map_err(|source| RetentionError::ReadRoot {
        path: root.to_path_buf(),
        source,
    })?;
    for p in planned {
        if cancel() {
            break;
        }
        match delete_one(&canonical_root, &p.path) {
            Ok(true) => {
                tracing::debug!(path = %p.path.display(), bytes = p.bytes, reason = p.reason.as_str(),
                    "retention: deleted");
                report.deleted += 1;
                report.deleted_bytes += p.bytes;
                match p.reason {
                    Reason::Age => report.by_age += 1,
                    Reason::PerDevice => report.by_device += 1,
                    Reason::TotalBytes => report.by_total += 1,
                }
            }
            Ok(false) => report.skipped += 1,
            Err(e) => {
                tracing::warn!(path = %p.path.display(), error = %e, "retention: cannot delete");
                report.errors += 1;
            }
        }
    }
    Ok(report)
}

/// Deletes `path` if it is still a regular, not recently modified file inside `root`.
/// `Ok(false)` when it was skipped.
fn delete_one(root: &Path, path: &Path) -> std::io::Result<bool> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_file() {
        return Ok(false);
    }
    let recent = meta.modified().map_or(true, |m| {
        SystemTime::now()
            .duration_since(m)
            .map_or(true, |a| a < RECENT)
    });
    if recent {
        return Ok(false);
    }
    // The parent must still resolve inside the output folder (no symlinked folder swapped in).
    let Some(parent) = path.parent() else {
        return Ok(false);
    };
    let inside = fs::canonicalize(parent).is_ok_and(|p| p.starts_with(root) && p != root);
    if !inside {
        return Ok(false);
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Runs a sweep of `output_dir` now and then every `cfg.interval` on a blocking thread, until
/// `shutdown` is cancelled. Logs one line per sweep and updates the retention metrics.
pub fn spawn(
    cfg: RetentionConfig,
    output_dir: PathBuf,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let (tx, rx) = tokio::sync::watch::channel(cfg);
    let task = spawn_watched(rx, output_dir, metrics, shutdown);
    // Nothing will change the settings: the task ignores a closed channel.
    drop(tx);
    task
}

/// [`spawn`] with settings that may change while it runs (a configuration reload): a change
/// sweeps at once with the new limits and interval; with no limit set the task only waits for a
/// change.
pub fn spawn_watched(
    mut settings: tokio::sync::watch::Receiver<RetentionConfig>,
    output_dir: PathBuf,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let cfg = *settings.borrow_and_update();
            if !cfg.limits.any() {
                let changed = async {
                    if settings.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                };
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = changed => continue,
                }
            }
            let root = output_dir.clone();
            let token = shutdown.clone();
            let started = Instant::now();
            let result = tokio::task::spawn_blocking(move || {
                sweep(&root, &cfg.limits, SystemTime::now(), &|| {
                    token.is_cancelled()
                })
            })
            .await;
            match result {
                Ok(Ok(r)) => RetentionSwept {
                    report: &r,
                    duration_ms: started.elapsed().as_millis() as u64,
                }
                .emit(&metrics),
                Ok(Err(e)) => RetentionSweepFailed {
                    error: &e,
                    panicked: false,
                }
                .emit(&metrics),
                Err(e) => RetentionSweepFailed {
                    error: &e,
                    panicked: true,
                }
                .emit(&metrics),
            }
            let changed = async {
                if settings.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(cfg.interval) => {}
                _ = changed => {}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn t(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    /// A file of `dev`, named at `secs`, written at `secs` (unless `mtime` differs).
    fn file(dev: &str, secs: u64, bytes: u64) -> FileInfo {
        FileInfo {
            path: PathBuf::from(format!("/out/{dev}/{secs}.jpg")),
            device: PathBuf::from(dev),
            bytes,
            mtime: t(secs),
            name_time: Some(t(secs)),
        }
    }

    fn names(p: Vec<PathBuf>) -> Vec<String> {
        p.into_iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect()
    }

    const NOW: u64 = 100 * 86_400;

    #[test]
    fn no_limits_no_deletions() {
        let files = vec![file("p/a", 1, 10), file("p/a", 2, 10)];
        assert!(plan(&files, &RetentionLimits::default(), t(NOW)).is_empty());
    }

    #[test]
    fn max_age_deletes_old_files_only() {
        let files = vec![
            file("p/a", NOW - 40 * 86_400, 10),
            file("p/a", NOW - 20 * 86_400, 10),
            file("p/b", NOW - 31 * 86_400, 10),
        ];
        let limits = RetentionLimits {
            max_age: Some(30 * DAY),
            ..Default::default()
        };
        assert_eq!(
            names(plan(&files, &limits, t(NOW))),
            vec![
                format!("/out/p/a/{}.jpg", NOW - 40 * 86_400),
                format!("/out/p/b/{}.jpg", NOW - 31 * 86_400)
            ]
        );
    }

    #[test]
    fn max_age_needs_both_clocks() {
        // Camera clock far in the past, but written a minute and a half ago: kept.
        let mut f = file("p/a", 10, 10);
        f.mtime = t(NOW - 90);
        let limits = RetentionLimits {
            max_age: Some(DAY),
            ..Default::default()
        };
        assert!(plan(&[f.clone()], &limits, t(NOW)).is_empty());
        // Not one of our names: mtime alone decides.
        f.name_time = None;
        f.mtime = t(NOW - 2 * 86_400);
        assert_eq!(plan(&[f], &limits, t(NOW)).len(), 1);
    }

    #[test]
    fn per_device_keeps_newest() {
        let files = vec![
            file("p/a", 5, 1),
            file("p/a", 3, 1),
            file("p/a", 4, 1),
            file("p/a", 1, 1),
            file("p/b", 2, 1),
        ];
        let limits = RetentionLimits {
            max_files_per_device: Some(2),
            ..Default::default()
        };
        assert_eq!(
            names(plan(&files, &limits, t(NOW))),
            vec!["/out/p/a/1.jpg", "/out/p/a/3.jpg"]
        );
    }

    #[test]
    fn total_bytes_deletes_oldest_globally() {
        let files = vec![
            file("p/a", 10, 100),
            file("p/b", 20, 100),
            file("p/a", 30, 100),
            file("q/c", 5, 100),
        ];
        let limits = RetentionLimits {
            max_total_bytes: Some(250),
            ..Default::default()
        };
        assert_eq!(
            names(plan(&files, &limits, t(NOW))),
            vec!["/out/q/c/5.jpg", "/out/p/a/10.jpg"]
        );
    }

    #[test]
    fn limits_combine_without_double_counting() {
        let files = vec![
            file("p/a", 1, 100),
            file("p/a", 2, 100),
            file("p/a", 3, 100),
            file("p/b", NOW - 1000, 100),
        ];
        let limits = RetentionLimits {
            max_age: Some(Duration::from_secs(NOW - 2)),
            max_files_per_device: Some(1),
            max_total_bytes: Some(100),
        };
        let planned = plan_detailed(&files, &limits, t(NOW));
        let reasons: Vec<(u64, Reason)> = planned.iter().map(|p| (p.bytes, p.reason)).collect();
        assert_eq!(
            names(planned.iter().map(|p| p.path.clone()).collect()),
            vec!["/out/p/a/1.jpg", "/out/p/a/2.jpg", "/out/p/a/3.jpg"]
        );
        assert_eq!(
            reasons,
            vec![
                (100, Reason::Age),
                (100, Reason::PerDevice),
                (100, Reason::TotalBytes)
            ]
        );
    }

    #[test]
    fn protected_files_count_but_are_never_planned() {
        let mut tmp = file("p/a", 1, 1000);
        tmp.path = PathBuf::from("/out/p/a/.20261126T122710.123Z.jpg.tmp");
        let mut recent = file("p/a", 2, 1000);
        recent.mtime = t(NOW - 30);
        let old = file("p/a", 3, 10);
        let limits = RetentionLimits {
            max_age: Some(DAY),
            max_files_per_device: Some(1),
            max_total_bytes: Some(1),
        };
        assert_eq!(
            names(plan(&[tmp, recent, old], &limits, t(NOW))),
            vec!["/out/p/a/3.jpg"]
        );
    }

    #[test]
    fn future_mtime_is_recent() {
        let mut f = file("p/a", 1, 10);
        f.mtime = t(NOW + 3600);
        let limits = RetentionLimits {
            max_total_bytes: Some(0),
            ..Default::default()
        };
        assert!(plan(&[f], &limits, t(NOW)).is_empty());
    }

    #[test]
    fn parses_our_names() {
        let base = parse_name_time("20261126T122710.123Z.jpg").unwrap();
        assert_eq!(
            base.duration_since(UNIX_EPOCH).unwrap(),
            Duration::from_millis(1_795_696_030_123)
        );
        assert_eq!(parse_name_time("20261126T122710.123Z-2.jpg"), Some(base));
        assert_eq!(
            parse_name_time("19700101T000000.000Z.jpg"),
            Some(UNIX_EPOCH)
        );
        for bad in [
            "20261126T122710.123Z.png",
            "20261126T122710.123Z-.jpg",
            "20261126T122710.123Z-x.jpg",
            "20261326T122710.123Z.jpg",
            "20261126T242710.123Z.jpg",
            "2026112xT122710.123Z.jpg",
            "20261126T122710,123Z.jpg",
            "holiday.jpg",
            "",
        ] {
            assert_eq!(parse_name_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn raw_config_validates() {
        let raw: RawRetentionConfig = toml::from_str(
            "max_age = \"30d\"\nmax_total_bytes = \"50GiB\"\nmax_files_per_device = 1000",
        )
        .unwrap();
        let cfg = raw.validate().unwrap();
        assert_eq!(cfg.limits.max_age, Some(30 * DAY));
        assert_eq!(cfg.limits.max_total_bytes, Some(50 << 30));
        assert_eq!(cfg.limits.max_files_per_device, Some(1000));
        assert_eq!(cfg.interval, Duration::from_secs(600));
        assert!(cfg.limits.any());
        let raw: RawRetentionConfig = toml::from_str("max_total_bytes = 1000").unwrap();
        assert_eq!(raw.validate().unwrap().limits.max_total_bytes, Some(1000));
        assert!(!RawRetentionConfig::default()
            .validate()
            .unwrap()
            .limits
            .any());
        let zero: RawRetentionConfig = toml::from_str("max_files_per_device = 0").unwrap();
        assert!(zero.validate().is_err());
        let short: RawRetentionConfig = toml::from_str("max_age = \"10s\"").unwrap();
        assert!(short.validate().is_err());
    }
}

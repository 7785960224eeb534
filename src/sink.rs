//! Finished images and quarantine on disk.
//!
//! # Layout
//!
//! ```text
//! <output>/<pk>/<dn>/20261126T122710.123Z.jpg            a finished image
//! <output>/<pk>/<dn>/20261126T122710.123Z-1.jpg          another image named for the same ms
//! <state>/quarantine/<pk>/<dn>/20261126T122710.123Z-expired.bin   what was received
//! <state>/quarantine/<pk>/<dn>/20261126T122710.123Z-expired.json  why (sidecar)
//! ```
//!
//! The name is [`Finished::name_time_ms`] as UTC, fixed width, so names sort chronologically
//! (years are clamped to 0000..=9999). Nothing but validated JPEGs is ever written under the
//! output folder.
//!
//! # Path components
//!
//! `<pk>` and `<dn>` are [`encode_component`] of the product key and device name: bytes in
//! `[A-Za-z0-9_-]` are kept, every other byte of the UTF-8 is written `%XX` (upper-case hex), and
//! the empty string is `%`. So `cam-01` stays `cam-01`, `....` becomes `%2E%2E%2E%2E`, `a:b`
//! becomes `a%3Ab` and `/` or NUL cannot survive. The result is always exactly one normal path
//! component, never hidden (no leading `.`), and [`decode_component`] inverts it; different
//! names never share a folder. Names that differ only in case do share one on a
//! case-insensitive file system (accepted: Aliyun names are unique per product anyway).
//! Every final path is checked to lie inside its base folder before anything is written.
//!
//! # Durability and idempotence
//!
//! A file is written as `.<name>.<pid>-<n>.tmp` in its final folder, fsync'd, then hard-linked
//! to its final name (which fails rather than replace an existing file) and the folder fsync'd;
//! folders the sink creates are fsync'd into their parents. Where hard links are not supported
//! it falls back to `rename` after checking the name is free. A name that already holds
//! *identical* content is reported as [`Written::already_present`], so replaying a picture after
//! a crash never creates a second file; a name holding other content is skipped for `-1`, `-2`,
//! .... A crash can leave `.*.tmp` files behind; [`Sink::remove_stale_temp_files`] clears them.
//!
//! All methods do blocking file I/O: call them from `spawn_blocking` or a dedicated thread.

use crate::assembler::{Finished, Quarantined, Retraction};
use crate::message::DeviceId;
pub use crate::output::{Found, Output};
use serde::Serialize;
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Folder under the state folder that holds quarantined pictures.
pub const QUARANTINE_DIR: &str = "quarantine";

/// Highest collision suffix tried before giving up.
pub const MAX_SUFFIX: u32 = 9_999;

/// Most missing sequence numbers listed in a sidecar (the count is always complete).
pub const MAX_MISSING_LISTED: usize = 1_000;

/// Why a write failed. Every variant names the path involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// A file-system call failed.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What was being done (`"write"`, `"sync"`, `"create folder"`, ...).
        op: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The error; its `kind()` tells a full disk from a permission problem.
        #[source]
        source: io::Error,
    },
    /// A computed path left its base folder (a bug; nothing was written).
    #[error("refusing to write {}: not a file directly under {}", path.display(), base.display())]
    OutsideBase {
        /// The refused path.
        path: PathBuf,
        /// The folder it had to stay in.
        base: PathBuf,
    },
    /// Every name up to [`MAX_SUFFIX`] holds different content.
    #[error("{}: every name up to suffix -{tried} holds a different file", path.display())]
    NoFreeName {
        /// The first name tried.
        path: PathBuf,
        /// The last suffix tried.
        tried: u32,
    },
    /// The output and state folders are the same or nested.
    #[error("output folder {} and state folder {} overlap", output.display(), state.display())]
    Overlap {
        /// Output folder.
        output: PathBuf,
        /// State folder.
        state: PathBuf,
    },
    /// An object store (`[output] backend = "s3"`) refused or did not answer a request.
    #[error("cannot {op} {}: {kind}: {message}", location.display())]
    Store {
        /// What was being done (`"upload"`, `"inspect"`, `"check bucket"`, ...).
        op: &'static str,
        /// `s3://<bucket>/<key>`.
        location: PathBuf,
        /// The class of failure: what the engine and start-up act on.
        kind: StoreErrorKind,
        /// The store's (or the client's) words, one line, never a secret.
        message: String,
    },
}

/// Why an object-store request failed, in the classes that decide what happens next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// No answer within `[output] timeout`. Retryable.
    Timeout,
    /// Connection refused or reset, `5xx`, throttling (`429`, `SlowDown`). Retryable.
    Unavailable,
    /// `403`: wrong credentials, a clock far off, or a policy that does not allow the request.
    Denied,
    /// The bucket does not exist.
    NoSuchBucket,
    /// The object does not exist (`404`).
    NotFound,
    /// The key already exists (`412` to a create-only write).
    Exists,
    /// Any other refusal (`400`, a bad endpoint, ...).
    Rejected,
}

impl StoreErrorKind {
    /// The label used in logs and in `receiver_upload_errors_total{kind}`.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreErrorKind::Timeout => "timeout",
            StoreErrorKind::Unavailable => "unavailable",
            StoreErrorKind::Denied => "denied",
            StoreErrorKind::NoSuchBucket => "no_such_bucket",
            StoreErrorKind::NotFound => "not_found",
            StoreErrorKind::Exists => "exists",
            StoreErrorKind::Rejected => "rejected",
        }
    }

    /// Every kind, for the metrics.
    pub const ALL: [StoreErrorKind; 7] = [
        StoreErrorKind::Timeout,
        StoreErrorKind::Unavailable,
        StoreErrorKind::Denied,
        StoreErrorKind::NoSuchBucket,
        StoreErrorKind::NotFound,
        StoreErrorKind::Exists,
        StoreErrorKind::Rejected,
    ];
}

impl std::fmt::Display for StoreErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StoreErrorKind::Timeout => "timed out",
            StoreErrorKind::Unavailable => "store unavailable",
            StoreErrorKind::Denied => {
                "access denied (check the access key, the secret and the bucket policy)"
            }
            StoreErrorKind::NoSuchBucket => "no such bucket",
            StoreErrorKind::NotFound => "not found",
            StoreErrorKind::Exists => "already exists",
            StoreErrorKind::Rejected => "rejected",
        })
    }
}

/// Linux errno values without a stable `io::ErrorKind` at the crate's minimum Rust version.
const ENOSPC: i32 = 28;
const EIO: i32 = 5;
const EDQUOT: i32 = 122;

impl SinkError {
    /// The path the error is about.
    pub fn path(&self) -> &Path {
        match self {
            SinkError::Io { path, .. }
            | SinkError::OutsideBase { path, .. }
            | SinkError::NoFreeName { path, .. } => path,
            SinkError::Overlap { output, .. } => output,
            SinkError::Store { location, .. } => location,
        }
    }

    /// The object-store failure class, for [`SinkError::Store`].
    pub fn store_kind(&self) -> Option<StoreErrorKind> {
        match self {
            SinkError::Store { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// The I/O error kind, for [`SinkError::Io`].
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            SinkError::Io { source, .. } => Some(source.kind()),
            _ => None,
        }
    }

    fn raw_os_error(&self) -> Option<i32> {
        match self {
            SinkError::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// The disk (or the user's quota) is full: ENOSPC or EDQUOT.
    pub fn is_disk_full(&self) -> bool {
        self.io_kind() == Some(io::ErrorKind::StorageFull)
            || matches!(self.raw_os_error(), Some(ENOSPC | EDQUOT))
    }

    /// Retrying the same write later may succeed without anyone changing the configuration:
    /// a full disk, an interrupted or timed-out call, a busy resource, EIO. Permission errors,
    /// read-only file systems, bad names and [`SinkError::NoFreeName`] are not retryable.
    /// For an object store: time-outs, refused connections, `5xx` and throttling are; wrong
    /// credentials, a missing bucket and other refusals are not.
    pub fn is_retryable(&self) -> bool {
        use io::ErrorKind as K;
        if let Some(kind) = self.store_kind() {
            return matches!(kind, StoreErrorKind::Timeout | StoreErrorKind::Unavailable);
        }
        self.is_disk_full()
            || matches!(
                self.io_kind(),
                Some(
                    K::Interrupted
                        | K::TimedOut
                        | K::WouldBlock
                        | K::ResourceBusy
                        | K::StaleNetworkFileHandle
                )
            )
            || self.raw_os_error() == Some(EIO)
    }
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SinkError + 'a {
    move |source| SinkError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// What a write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The file (for quarantine: the `.bin`; its sidecar is the same path with `.json`).
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// The file already held exactly these bytes (a replay); nothing new was created.
    pub already_present: bool,
    /// For an object store: the bucket and key (then `path` is `s3://<bucket>/<key>`).
    pub object: Option<ObjectLocation>,
}

/// Where an object-store output put a picture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectLocation {
    /// The bucket.
    pub bucket: String,
    /// The object key.
    pub key: String,
}

/// The folder output (`[output] dir`): the first [`Output`]. Finished images become
/// `<dir>/<pk>/<dn>/<time>[-n].jpg`, written durably and never over other content.
#[derive(Debug, Clone)]
pub struct FolderOutput {
    dir: PathBuf,
}

impl FolderOutput {
    /// An output into `dir` (created by [`Sink::new`]).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FolderOutput { dir: dir.into() }
    }

    /// The output folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `<output>/<pk>/<dn>`: where a device's images go.
    pub fn device_dir(&self, device: &DeviceId) -> PathBuf {
        device_path(&self.dir, device)
    }
}

impl Output for FolderOutput {
    fn describe(&self) -> String {
        format!("folder {}", self.dir.display())
    }

    /// Creates `<output>/<pk>/<dn>/` (each new folder fsynced into its parent).
    fn prepare(&self, device: &DeviceId) -> Result<(), SinkError> {
        ensure_dirs(&self.dir, &self.device_dir(device))
    }

    fn write(&self, img: &Finished) -> Result<Written, SinkError> {
        let dir = self.device_dir(&img.device);
        ensure_dirs(&self.dir, &dir)?;
        let stem = file_time(img.name_time_ms);
        for n in 0..=MAX_SUFFIX {
            let path = dir.join(suffixed(&stem, n, "jpg"));
            confined(&self.dir, &path, 3)?;
            match place(&path, &img.bytes, Some(img.format.as_str()))? {
                Placed::New => return Ok(written(path, &img.bytes, false)),
                Placed::Same => return Ok(written(path, &img.bytes, true)),
                Placed::Other => {}
            }
        }
        Err(SinkError::NoFreeName {
            path: dir.join(suffixed(&stem, 0, "jpg")),
            tried: MAX_SUFFIX,
        })
    }

    fn find(&self, r: &Retraction) -> Result<Option<Found>, SinkError> {
        let dir = self.device_dir(&r.device);
        let stem = file_time(r.name_time_ms);
        for n in 0..=MAX_SUFFIX {
            let path = dir.join(suffixed(&stem, n, "jpg"));
            confined(&self.dir, &path, 3)?;
            let bytes = match fs::read(&path) {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(io_err("read", &path)(e)),
            };
            if bytes.len() as u64 != r.size || crate::wire::crc32(&bytes) != r.crc {
                continue;
            }
            return Ok(Some(Found { path, bytes }));
        }
        Ok(None)
    }

    fn remove(&self, found: &Found) -> Result<(), SinkError> {
        confined(&self.dir, &found.path, 3)?;
        fs::remove_file(&found.path).map_err(io_err("remove", &found.path))?;
        match found.path.parent() {
            Some(dir) => sync_dir(dir),
            None => Ok(()),
        }
    }

    fn remove_stale_temp_files(&self) -> Result<usize, SinkError> {
        remove_temp_files_under(&self.dir, None)
    }

    fn remove_temp_files_older_than(&self, age: std::time::Duration) -> Result<usize, SinkError> {
        remove_temp_files_under(&self.dir, Some(age))
    }

    /// Walks `<dir>/<pk>/<dn>/*.jpg`; folders that are not [`encode_component`] names (not the
    /// daemon's) and files that are not picture names (temporary files) are skipped.
    fn list_pictures(&self) -> Result<Vec<crate::output::StoredPicture>, SinkError> {
        let mut out = Vec::new();
        let entries = |dir: &Path| -> Result<Vec<fs::DirEntry>, SinkError> {
            match fs::read_dir(dir) {
                Ok(rd) => Ok(rd.filter_map(Result::ok).collect()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
                Err(e) => Err(io_err("list", dir)(e)),
            }
        };
        for pk in entries(&self.dir)? {
            if !pk.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let pk_name = pk.file_name().to_string_lossy().into_owned();
            for dn in entries(&pk.path())? {
                if !dn.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let dn_name = dn.file_name().to_string_lossy().into_owned();
                let Some(device) = device_from_components(&pk_name, &dn_name) else {
                    continue;
                };
                for f in entries(&dn.path())? {
                    let name = f.file_name().to_string_lossy().into_owned();
                    if !crate::output::is_picture_name(&name) {
                        continue;
                    }
                    let Ok(meta) = f.metadata() else { continue };
                    if meta.is_file() {
                        out.push(crate::output::StoredPicture {
                            device: device.clone(),
                            format: format_xattr(&f.path()),
                            name,
                            bytes: meta.len(),
                        });
                    }
                }
            }
        }
        Ok(out)
    }

    fn read_picture(&self, device: &DeviceId, name: &str) -> Result<Option<Vec<u8>>, SinkError> {
        if !crate::output::is_picture_name(name) {
            return Ok(None);
        }
        let path = self.device_dir(device).join(name);
        confined(&self.dir, &path, 3)?;
        match fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("read", &path)(e)),
        }
    }
}

/// Writes finished images to an [`Output`] (by default the folder, [`FolderOutput`]) and
/// quarantined pictures to the state folder, which stays local whatever the output is.
#[derive(Debug, Clone)]
pub struct Sink<O: Output = FolderOutput> {
    output: O,
    state_dir: PathBuf,
}

/// The engine's sink: any output behind one pointer.
pub type DynSink = Sink<Arc<dyn Output>>;

impl Sink<FolderOutput> {
    /// A sink over `output_dir` and `state_dir`, creating both if needed. They must not be the
    /// same folder or nested (the config validation already guarantees it).
    pub fn new(
        output_dir: impl Into<PathBuf>,
        state_dir: impl Into<PathBuf>,
    ) -> Result<Sink, SinkError> {
        let (output_dir, state_dir) = (output_dir.into(), state_dir.into());
        // Checked before anything is created (symlinks followed as creating would), so a
        // refused pair leaves no stray folder behind.
        let clash = crate::paths::nested(&output_dir, &state_dir)
            || match (
                crate::paths::resolve_dir(&output_dir),
                crate::paths::resolve_dir(&state_dir),
            ) {
                (Ok(a), Ok(b)) => crate::paths::nested(&a, &b),
                _ => false,
            };
        if clash {
            return Err(SinkError::Overlap {
                output: output_dir,
                state: state_dir,
            });
        }
        fs::create_dir_all(&output_dir).map_err(io_err("create folder", &output_dir))?;
        Sink::with_output(FolderOutput::new(output_dir), state_dir)
    }

    /// The output folder.
    pub fn output_dir(&self) -> &Path {
        self.output.dir()
    }

    /// `<output>/<pk>/<dn>`: where a device's images go.
    pub fn device_dir(&self, device: &DeviceId) -> PathBuf {
        self.output.device_dir(device)
    }
}

impl<O: Output + 'static> Sink<O> {
    /// The same sink with its output wrapped (the gallery's index watches what is written).
    pub fn map_output<P: Output + 'static>(self, wrap: impl FnOnce(O) -> P) -> Sink<P> {
        Sink {
            output: wrap(self.output),
            state_dir: self.state_dir,
        }
    }

    /// A sink writing images to `output` and quarantine under `state_dir` (created if needed).
    pub fn with_output(output: O, state_dir: impl Into<PathBuf>) -> Result<Sink<O>, SinkError> {
        let state_dir = state_dir.into();
        fs::create_dir_all(&state_dir).map_err(io_err("create folder", &state_dir))?;
        Ok(Sink { output, state_dir })
    }

    /// The same sink with its output behind a pointer (what the engine holds).
    pub fn into_dyn(self) -> DynSink {
        Sink {
            output: Arc::new(self.output),
            state_dir: self.state_dir,
        }
    }
}

impl<O: Output> Sink<O> {
    /// Where finished images go.
    pub fn output(&self) -> &O {
        &self.output
    }

    /// The state folder.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// `<state>/quarantine`.
    pub fn quarantine_dir(&self) -> PathBuf {
        self.state_dir.join(QUARANTINE_DIR)
    }

    /// `<state>/quarantine/<pk>/<dn>`: where a device's quarantined pictures go.
    pub fn quarantine_device_dir(&self, device: &DeviceId) -> PathBuf {
        device_path(&self.quarantine_dir(), device)
    }

    /// Makes the output ready for `device`'s images ([`Output::prepare`]). [`Sink::write_image`]
    /// does this too; calling it first lets several images of a device be written concurrently
    /// without one of them relying on another's folder sync.
    pub fn prepare_device_dir(&self, device: &DeviceId) -> Result<(), SinkError> {
        self.output.prepare(device)
    }

    /// Writes a finished image durably ([`Output::write`]).
    pub fn write_image(&self, img: &Finished) -> Result<Written, SinkError> {
        self.output.write(img)
    }

    /// Records a quarantined picture as `<state>/quarantine/<pk>/<dn>/<time>-<reason>[-n].bin`
    /// plus a `.json` sidecar saying why. Identical content (bytes and sidecar) is reported as
    /// already present; a sidecar lost to a crash after its `.bin` is written again.
    pub fn quarantine(&self, q: &Quarantined) -> Result<Written, SinkError> {
        let base = self.quarantine_dir();
        let dir = self.quarantine_device_dir(&q.device);
        ensure_dirs(&self.state_dir, &dir)?;
        let stem = format!(
            "{}-{}",
            file_time(q.name_time_ms),
            encode_component(q.reason)
        );
        for n in 0..=MAX_SUFFIX {
            let bin = dir.join(suffixed(&stem, n, "bin"));
            let json = bin.with_extension("json");
            confined(&base, &bin, 3)?;
            confined(&base, &json, 3)?;
            let sidecar = sidecar(q, &bin)?;
            match (content_is(&bin, &q.bytes)?, content_is(&json, &sidecar)?) {
                (Some(true), Some(true)) => return Ok(written(bin, &q.bytes, true)),
                (Some(true), None) => {
                    // The .bin of an earlier attempt survived a crash; finish the job.
                    return match place(&json, &sidecar, None)? {
                        Placed::New | Placed::Same => Ok(written(bin, &q.bytes, true)),
                        Placed::Other => continue,
                    };
                }
                (None, None) => {}
                _ => continue,
            }
            match place(&bin, &q.bytes, None)? {
                Placed::Other => continue,
                Placed::New | Placed::Same => {}
            }
            match place(&json, &sidecar, None)? {
                Placed::New => return Ok(written(bin, &q.bytes, false)),
                Placed::Same => return Ok(written(bin, &q.bytes, true)),
                Placed::Other => continue,
            }
        }
        Err(SinkError::NoFreeName {
            path: dir.join(suffixed(&stem, 0, "bin")),
            tried: MAX_SUFFIX,
        })
    }

    /// Moves the written image that `r` names (same name time, size and CRC-32) to quarantine
    /// (reason `retracted`, `r.detail` in the sidecar), then removes it from the output.
    /// `Ok(None)` when no such image is there any more (retention, an operator).
    pub fn retract(&self, r: &Retraction) -> Result<Option<(PathBuf, PathBuf)>, SinkError> {
        let Some(found) = self.output.find(r)? else {
            return Ok(None);
        };
        let q = Quarantined {
            device: r.device.clone(),
            format: Some(crate::wire::Format::V1),
            pid: None,
            reason: crate::assembler::reason::RETRACTED,
            detail: format!("{}; was {}", r.detail, found.path.display()),
            bytes: found.bytes.clone(),
            name_time_ms: r.name_time_ms,
            missing: Vec::new(),
            tags: Vec::new(),
        };
        let to = self.quarantine(&q)?.path;
        self.output.remove(&found)?;
        Ok(Some((found.path, to)))
    }

    /// Removes `.*.tmp` files a crash left behind (output and quarantine). Returns how many were
    /// removed. Call it at start-up, before writing.
    pub fn remove_stale_temp_files(&self) -> Result<usize, SinkError> {
        Ok(self.output.remove_stale_temp_files()?
            + remove_temp_files_under(&self.quarantine_dir(), None)?)
    }

    /// Cluster mode: the output is shared with other instances, so only its leftovers older
    /// than `age` go (a younger one may be another instance's write in progress); the local
    /// quarantine's all go.
    pub fn remove_stale_temp_files_shared(
        &self,
        age: std::time::Duration,
    ) -> Result<usize, SinkError> {
        Ok(self.output.remove_temp_files_older_than(age)?
            + remove_temp_files_under(&self.quarantine_dir(), None)?)
    }
}

/// Removes `<base>/<pk>/<dn>/.*.tmp` (with `min_age`, only those modified longer ago).
fn remove_temp_files_under(
    base: &Path,
    min_age: Option<std::time::Duration>,
) -> Result<usize, SinkError> {
    let mut removed = 0;
    for pk in read_dirs(base)? {
        for dn in read_dirs(&pk)? {
            let entries = match fs::read_dir(&dn) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err("list", &dn)(e)),
            };
            for entry in entries {
                let entry = entry.map_err(io_err("list", &dn))?;
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if name.starts_with('.') && name.ends_with(".tmp") {
                    let path = entry.path();
                    if let Some(age) = min_age {
                        let young = entry
                            .metadata()
                            .and_then(|m| m.modified())
                            .ok()
                            .and_then(|t| t.elapsed().ok())
                            .is_none_or(|e| e < age);
                        if young {
                            continue;
                        }
                    }
                    fs::remove_file(&path).map_err(io_err("remove", &path))?;
                    removed += 1;
                }
            }
        }
    }
    Ok(removed)
}

/// The sub-folders of `dir` (none if it does not exist).
fn read_dirs(dir: &Path) -> Result<Vec<PathBuf>, SinkError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("list", dir)(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err("list", dir))?;
        if entry.file_type().map_err(io_err("inspect", dir))?.is_dir() {
            out.push(entry.path());
        }
    }
    Ok(out)
}

fn written(path: PathBuf, bytes: &[u8], already_present: bool) -> Written {
    Written {
        path,
        bytes: bytes.len() as u64,
        already_present,
        object: None,
    }
}

fn suffixed(stem: &str, n: u32, ext: &str) -> String {
    if n == 0 {
        format!("{stem}.{ext}")
    } else {
        format!("{stem}-{n}.{ext}")
    }
}

fn device_path(base: &Path, device: &DeviceId) -> PathBuf {
    base.join(encode_component(&device.product_key))
        .join(encode_component(&device.device_name))
}

/// Checks that `path` is `base` plus exactly `depth` normal components.
fn confined(base: &Path, path: &Path, depth: usize) -> Result<(), SinkError> {
    let ok = path.strip_prefix(base).is_ok_and(|rest| {
        let parts: Vec<_> = rest.components().collect();
        parts.len() == depth && parts.iter().all(|c| matches!(c, Component::Normal(_)))
    });
    if ok {
        Ok(())
    } else {
        Err(SinkError::OutsideBase {
            path: path.to_owned(),
            base: base.to_owned(),
        })
    }
}

/// Creates the folders between `base` (which exists) and `dir`, fsyncing each new one into its
/// parent.
fn ensure_dirs(base: &Path, dir: &Path) -> Result<(), SinkError> {
    let rest = dir.strip_prefix(base).map_err(|_| SinkError::OutsideBase {
        path: dir.to_owned(),
        base: base.to_owned(),
    })?;
    let mut cur = base.to_owned();
    for part in rest.components() {
        let parent = cur.clone();
        cur.push(part);
        match fs::create_dir(&cur) {
            Ok(()) => sync_dir(&parent)?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err("create folder", &cur)(e)),
        }
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), SinkError> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io_err("sync folder", dir))
}

/// Whether `path` holds exactly `bytes` (`None`: there is no such file).
fn content_is(path: &Path, bytes: &[u8]) -> Result<Option<bool>, SinkError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("inspect", path)(e)),
    };
    if !meta.is_file() || meta.len() != bytes.len() as u64 {
        return Ok(Some(false));
    }
    let mut file = File::open(path).map_err(io_err("read", path))?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut rest = bytes;
    loop {
        let n = file.read(&mut buf).map_err(io_err("read", path))?;
        if n == 0 {
            return Ok(Some(rest.is_empty()));
        }
        if n > rest.len() || buf[..n] != rest[..n] {
            return Ok(Some(false));
        }
        rest = &rest[n..];
    }
}

enum Placed {
    /// Written under this name.
    New,
    /// The name already held these bytes.
    Same,
    /// The name holds something else.
    Other,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Puts `bytes` at `path` durably unless the name is taken.
fn place(path: &Path, bytes: &[u8], format: Option<&str>) -> Result<Placed, SinkError> {
    match content_is(path, bytes)? {
        Some(true) => return Ok(Placed::Same),
        Some(false) => return Ok(Placed::Other),
        None => {}
    }
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(SinkError::OutsideBase {
            path: path.to_owned(),
            base: PathBuf::new(),
        });
    };
    let tmp = dir.join(format!(
        ".{}.{}-{}.tmp",
        name.to_string_lossy(),
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = write_tmp(&tmp, bytes, format).and_then(|()| publish(&tmp, path, dir));
    if !matches!(result, Ok(Placed::New)) {
        let _ = fs::remove_file(&tmp);
    }
    match result? {
        // Someone else took the name meanwhile: same bytes or not?
        Placed::Other => Ok(match content_is(path, bytes)? {
            Some(true) => Placed::Same,
            _ => Placed::Other,
        }),
        other => Ok(other),
    }
}

fn write_tmp(tmp: &Path, bytes: &[u8], format: Option<&str>) -> Result<(), SinkError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(tmp)
        .map_err(io_err("create", tmp))?;
    f.write_all(bytes).map_err(io_err("write", tmp))?;
    if let Some(format) = format {
        set_format_xattr(&f, format);
    }
    f.sync_all().map_err(io_err("sync", tmp))
}

/// The extended attribute that keeps a picture's wire format (`v1`/`v2`) with its file, so the
/// gallery can show it for pictures written before a restart.
const FORMAT_XATTR: &[u8] = b"user.receiver.format\0";

/// Records `format` on the file, best effort: a file system without user extended attributes
/// only means the gallery shows "format not recorded" for it after a restart.
fn set_format_xattr(f: &fs::File, format: &str) {
    use std::os::fd::AsRawFd;
    // SAFETY: the name is NUL-terminated, the value pointer and length describe `format`'s
    // bytes, and the descriptor is open for as long as `f` lives.
    let rc = unsafe {
        libc::fsetxattr(
            f.as_raw_fd(),
            FORMAT_XATTR.as_ptr().cast(),
            format.as_ptr().cast(),
            format.len(),
            0,
        )
    };
    if rc != 0 {
        tracing::trace!(error = %io::Error::last_os_error(), "no format attribute on the picture file");
    }
}

/// The wire format [`set_format_xattr`] recorded on the file at `path`, if any.
pub(crate) fn format_xattr(path: &Path) -> Option<&'static str> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut buf = [0u8; 8];
    // SAFETY: both names are NUL-terminated; the buffer pointer and length describe `buf`.
    let n = unsafe {
        libc::getxattr(
            c.as_ptr(),
            FORMAT_XATTR.as_ptr().cast(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    match buf.get(..usize::try_from(n).ok()?)? {
        b"v1" => Some("v1"),
        b"v2" => Some("v2"),
        _ => None,
    }
}

/// Moves the fsync'd `tmp` to `path` without replacing an existing file.
fn publish(tmp: &Path, path: &Path, dir: &Path) -> Result<Placed, SinkError> {
    match fs::hard_link(tmp, path) {
        Ok(()) => {
            fs::remove_file(tmp).map_err(io_err("remove", tmp))?;
            sync_dir(dir)?;
            Ok(Placed::New)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(Placed::Other),
        Err(_) => {
            // No hard links here (FAT, some network file systems): check, then rename.
            if content_is(path, &[])?.is_some() {
                return Ok(Placed::Other);
            }
            fs::rename(tmp, path).map_err(io_err("rename", path))?;
            sync_dir(dir)?;
            Ok(Placed::New)
        }
    }
}

/// The JSON sidecar of a quarantined picture. Deterministic (no write time), so a replay
/// produces identical bytes.
fn sidecar(q: &Quarantined, bin: &Path) -> Result<Vec<u8>, SinkError> {
    #[derive(Serialize)]
    struct Sidecar<'a> {
        reason: &'a str,
        detail: &'a str,
        product_key: &'a str,
        device_name: &'a str,
        format: Option<&'static str>,
        pid: Option<u32>,
        missing_count: usize,
        missing: &'a [u32],
        missing_truncated: bool,
        bytes: usize,
        time: String,
        time_ms: i64,
        messages: usize,
        data_file: String,
    }
    let listed = q.missing.len().min(MAX_MISSING_LISTED);
    let s = Sidecar {
        reason: q.reason,
        detail: &q.detail,
        product_key: &q.device.product_key,
        device_name: &q.device.device_name,
        format: q.format.map(|f| f.as_str()),
        pid: q.pid,
        missing_count: q.missing.len(),
        missing: &q.missing[..listed],
        missing_truncated: listed < q.missing.len(),
        bytes: q.bytes.len(),
        time: iso_time(q.name_time_ms),
        time_ms: q.name_time_ms,
        messages: q.tags.len(),
        data_file: bin
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    let mut out = serde_json::to_vec_pretty(&s).map_err(|e| SinkError::Io {
        op: "serialize sidecar for",
        path: bin.with_extension("json"),
        source: io::Error::other(e),
    })?;
    out.push(b'\n');
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Names.
// ---------------------------------------------------------------------------------------------

fn kept(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// Maps any string to one safe, reversible path component (see the module docs): bytes in
/// `[A-Za-z0-9_-]` are kept, others become `%XX`, and `""` becomes `%`.
pub fn encode_component(s: &str) -> String {
    if s.is_empty() {
        return "%".to_owned();
    }
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if kept(b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The inverse of [`encode_component`]; `None` for anything it cannot have produced.
pub fn decode_component(c: &str) -> Option<String> {
    if c == "%" {
        return Some(String::new());
    }
    if c.is_empty() {
        return None;
    }
    let hex = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    };
    let bytes = c.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let v = hex(*bytes.get(i + 1)?)? << 4 | hex(*bytes.get(i + 2)?)?;
            if kept(v) {
                return None; // not canonical: encode never escapes a kept byte
            }
            out.push(v);
            i += 3;
        } else if kept(b) {
            out.push(b);
            i += 1;
        } else {
            return None;
        }
    }
    String::from_utf8(out).ok()
}

/// The device a `<pk>/<dn>` folder pair belongs to (the inverse of [`Sink::device_dir`]).
pub fn device_from_components(pk: &str, dn: &str) -> Option<DeviceId> {
    Some(DeviceId::new(
        &decode_component(pk)?,
        &decode_component(dn)?,
    ))
}

/// UTC broken down: (year, month, day, hour, minute, second, millisecond); years clamped to
/// 0000..=9999 so the text stays fixed-width.
fn utc(ms: i64) -> (i64, u32, u32, u32, u32, u32, u32) {
    const MIN: i64 = -62_167_219_200_000; // 0000-01-01T00:00:00.000Z
    const MAX: i64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z
    let ms = ms.clamp(MIN, MAX);
    let (secs, milli) = (ms.div_euclid(1000), ms.rem_euclid(1000) as u32);
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400) as u32);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, sod / 3600, sod / 60 % 60, sod % 60, milli)
}

/// The file-name time: `20261126T122710.123Z` (UTC, sorts chronologically).
pub fn file_time(ms: i64) -> String {
    let (y, mo, d, h, mi, s, milli) = utc(ms);
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}.{milli:03}Z")
}

/// RFC 3339 UTC with milliseconds: `2026-11-26T12:27:10.123Z`.
pub fn iso_time(ms: i64) -> String {
    let (y, mo, d, h, mi, s, milli) = utc(ms);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_time_examples() {
        assert_eq!(file_time(0), "19700101T000000.000Z");
        assert_eq!(file_time(1_795_696_030_123), "20261126T122710.123Z");
        assert_eq!(iso_time(1_795_696_030_123), "2026-11-26T12:27:10.123Z");
        assert_eq!(file_time(-1), "19691231T235959.999Z");
        assert_eq!(file_time(951_782_400_000), "20000229T000000.000Z");
        assert_eq!(file_time(i64::MIN), "00000101T000000.000Z");
        assert_eq!(file_time(i64::MAX), "99991231T235959.999Z");
    }

    #[test]
    fn file_time_agrees_with_humantime() {
        for ms in [
            0i64,
            1,
            999,
            86_399_999,
            951_868_800_123,
            1_700_000_000_123,
            4_102_444_800_000,
        ] {
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms as u64);
            assert_eq!(
                iso_time(ms),
                humantime::format_rfc3339_millis(t).to_string(),
                "{ms}"
            );
        }
    }

    #[test]
    fn encode_examples() {
        assert_eq!(encode_component("cam-01"), "cam-01");
        assert_eq!(encode_component("a1B2c3D4e5F"), "a1B2c3D4e5F");
        assert_eq!(encode_component("...."), "%2E%2E%2E%2E");
        assert_eq!(encode_component(".."), "%2E%2E");
        assert_eq!(encode_component("a:b@c.d"), "a%3Ab%40c%2Ed");
        assert_eq!(encode_component("50%"), "50%25");
        assert_eq!(encode_component(""), "%");
        assert_eq!(encode_component("é"), "%C3%A9");
        assert_eq!(decode_component("%2e"), None);
        assert_eq!(decode_component("%41"), None);
        assert_eq!(decode_component("a%2"), None);
        assert_eq!(decode_component("a.b"), None);
        assert_eq!(decode_component("%FF"), None);
    }

    #[test]
    fn sink_error_classification() {
        let e = |kind_or_raw: io::Error| SinkError::Io {
            op: "write",
            path: "/x".into(),
            source: kind_or_raw,
        };
        let full = e(io::Error::from_raw_os_error(ENOSPC));
        assert!(full.is_disk_full() && full.is_retryable());
        assert!(e(io::Error::from_raw_os_error(EDQUOT)).is_disk_full());
        let denied = e(io::Error::from(io::ErrorKind::PermissionDenied));
        assert!(!denied.is_disk_full() && !denied.is_retryable());
        assert!(e(io::Error::from(io::ErrorKind::Interrupted)).is_retryable());
        assert!(e(io::Error::from_raw_os_error(EIO)).is_retryable());
        assert_eq!(full.path(), Path::new("/x"));
        assert!(full.to_string().starts_with("cannot write /x: "), "{full}");
    }
}

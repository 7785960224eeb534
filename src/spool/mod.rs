//! The durable spool: a segmented, append-only write-ahead log of received chunks, so that a
//! delivery is accepted (and forgotten by Aliyun) only once what it carried is on disk.
//!
//! # Use
//!
//! The engine [`append`](Spool::append)s one [`Record`] per delivery (a chunk, or the fact that a
//! delivery was a duplicate, skipped or bad), then [`commit`](Spool::commit)s the batch: one
//! `pwrite` and one `fdatasync` for everything appended since the last commit (group commit).
//! Only after `commit` returns `Ok` may the batch's deliveries be accepted. Each record gets a
//! [`Tag`]; the assembler hands tags back when a picture is written or quarantined and the engine
//! [`release`](Spool::release)s them. When every record of a sealed segment is released, the
//! segment file is deleted. On start, [`Spool::open`] returns what a previous run left: the
//! unreleased chunks (to rebuild open pictures), the `Seen`/`Done` facts still on disk, and every
//! damaged stretch found.
//!
//! `commit` blocks on `fdatasync`: call it from a blocking-capable thread
//! (`tokio::task::spawn_blocking` or a dedicated thread), not from an async task directly.
//!
//! When a commit fails, the batch's tags become invalid. A chunk of that batch must not stay in
//! the assembler as if stored: its redelivery would then be taken for a duplicate, accepted, and
//! the chunk would exist only in memory. Push chunks into the assembler after their commit, or
//! roll the assembler back on failure.
//!
//! # Guarantees (durability order)
//!
//! 1. `append` only encodes into memory. Nothing appended is durable, or visible to a later
//!    `open`, before `commit` returns `Ok`.
//! 2. `commit` writes the batch at the segment's committed length with one positional write, then
//!    `fdatasync`s the file. When the batch starts a new segment, the file is created with
//!    `O_EXCL`, header and batch are written together, the file is `fdatasync`ed and then the
//!    directory is `fsync`ed, all before `commit` returns `Ok`.
//! 3. A failed `commit` (`ENOSPC`, `EIO`, `EROFS`, ...) returns [`SpoolError::Io`] with the path
//!    and `io::ErrorKind`, and leaves the spool consistent: the whole batch is dropped (as by
//!    [`abort`](Spool::abort)), the segment is truncated back to its last committed length, and
//!    that segment is sealed, so the next commit starts a new segment file (after a failed
//!    `fdatasync` the kernel's page cache for that file cannot be trusted). A batch that was
//!    creating a new segment has its file removed. A later `commit` works once the cause is gone.
//!    The caller must not accept the deliveries of a failed batch.
//! 4. Releases take effect in memory at once and are made durable by the *next* commit (as a
//!    release record, see below; a commit with no new records but pending releases writes just
//!    that). A crash before that commit brings the released chunks back on the next start, so a
//!    picture finished in that window can be assembled again; `Done` records let the engine
//!    recognise v2 pictures it already wrote.
//! 5. Segment files are removed only when sealed, with no live record, and not needed to hide
//!    released records of an older segment (see the release record under *On-disk format*);
//!    removals are followed by a directory `fsync` before any segment that depended on them is
//!    removed.
//! 6. `open` never fails because of damaged content: a torn tail is cut off (and reported), a
//!    damaged record in the middle is skipped up to the next valid frame (and reported), and no
//!    record that fails its checksum or does not decode exactly is ever returned.
//!
//! Shutdown: the engine must `commit` the current batch before dropping the spool; dropping it
//! discards anything uncommitted (which was, by rule 1, never accepted).
//!
//! # Liveness
//!
//! * `Img` and `Seen` records are live from their commit until released (the engine releases
//!   them a while after their deliveries were settled, so a redelivery that crosses a crash is
//!   still recognised).
//! * `Done` records are never live: they are facts for the next start (duplicate
//!   detection) and live exactly as long as the segment that holds them. Their tags may be
//!   released; it is a no-op. Consequence: these facts cover roughly the last segment or two,
//!   plus whatever older segments are still pinned by live chunks.
//! * The active segment rolls over when it reaches `segment_bytes` (checked when a batch starts,
//!   so a segment exceeds it by at most one batch).
//! * Space cap: [`is_full`](Spool::is_full) once [`bytes`](Spool::bytes) (on disk plus the
//!   uncommitted batch) reaches `max_bytes`. `append` never refuses for space; the engine stops
//!   granting credit.
//! * Pinning: one live chunk keeps its whole segment on disk, and release records that hide
//!   records of an older segment keep their own segment until that older one is gone. Nothing
//!   is compacted: every live chunk belongs to an open picture, and open pictures are expired
//!   by the assembler within its timeout, so the pinned span is bounded by
//!   `timeout x ingest rate` (+ one segment). `max_bytes` should be above that, or the engine
//!   will pause ingest until the expiry sweep frees space. (A tag the engine never releases, a
//!   leak, would pin its segment forever; [`live_records`](Spool::live_records) and
//!   [`segments`](Spool::segments) make that visible.)
//!
//! # On-disk format (version 1)
//!
//! The directory holds `LOCK` (an `flock`ed empty file: one process per spool) and segment
//! files `seg-<16 lowercase hex digits>.log`, numbered upwards from one past the highest number
//! present at start (at least 1, so no tag is 0; at most `u32::MAX`). Other files are ignored.
//! All integers are little-endian.
//!
//! Segment header, 32 bytes:
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0  | 8 | magic `b"RXSPOOL\0"` |
//! | 8  | 4 | version, `1` |
//! | 12 | 4 | header length, `32` |
//! | 16 | 8 | segment number (same as in the file name) |
//! | 24 | 4 | reserved, `0` |
//! | 28 | 4 | CRC-32 (IEEE, `crc32fast`) of bytes 0..28 |
//!
//! Then frames, back to back. Frame header, 16 bytes, followed by `length` body bytes:
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0  | 2 | sync marker `F9 FE` (bytes that cannot occur in UTF-8: recovery resynchronises on it) |
//! | 2  | 1 | type: 1 `Img`, 2 `Seen`, 3 `Done`, 4 release |
//! | 3  | 1 | flags, `0` (reserved) |
//! | 4  | 4 | body length, at most 16 MiB |
//! | 8  | 4 | record index within the segment (the low half of the [`Tag`]) |
//! | 12 | 4 | CRC-32 of frame bytes 2..12 followed by the body |
//!
//! Bodies (`str` = u32 byte length + UTF-8 bytes; a body must be consumed exactly):
//!
//! * `Img`: `received_ms` u64, `present` u8 (bit 0 `item_time`, bit 1 `gmt_create`,
//!   bit 2 `request_id`), [`item_time` i64], [`gmt_create` i64], `product_key` str,
//!   `device_name` str, `message_id` str, [`request_id` str], `value` str.
//! * `Seen`: `received_ms` u64, `message_id` str.
//! * `Done`: `at_ms` u64, `pid` u32, `size` u32, `crc` u32, `product_key` str, `device_name` str.
//! * release: `n` u32, then `n` runs of (`segment` u32, `first_index` u32, `count` u32): the
//!   records `first_index..first_index + count` of that segment are released and must not be
//!   recovered. A segment holding a release run for an older segment is kept until that older
//!   segment is deleted.
//!
//! An 800-hex-character chunk costs about 890 bytes on disk (16 frame header, 25 fixed fields and
//! length prefixes, ~45 of ids, 800 of value). Tags are `segment_number << 32 | record_index`;
//! indices are never reused within a segment (an aborted or failed batch burns its indices) and
//! segment numbers only grow within a process, so a tag is unique for the process lifetime, and
//! a recovered record keeps the tag it was written with.
//!
//! # Recovery
//!
//! Each segment is read whole (memory: one segment at a time plus the decoded records). A frame is accepted when its marker, length, checksum and body
//! decoding all check. After a bad frame the scan resumes at the next offset holding a marker and
//! a checksummed frame; the skipped stretch is reported ([`CorruptKind::BadFrame`]). If nothing
//! valid follows, the stretch is a torn tail ([`CorruptKind::TornTail`]): the file is truncated
//! to the end of the last valid frame. A checksummed frame that does not decode (unknown type,
//! reserved bits) is skipped and reported ([`CorruptKind::Undecodable`]) but not cut. A segment
//! with a damaged header is reported and its frames are still scanned; one with a valid header
//! of another version is left untouched and unused; one shorter than a header is removed.

mod format;
mod io;
#[cfg(test)]
mod tests;

use crate::assembler::Tag;
use crate::message::{DeviceId, ImgMessage};
use format::{Decoded, HeaderCheck, ReleaseRun, SEGMENT_HEADER_LEN};
use io::{RealStorage, SegmentFile, Storage};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use format::MAX_BODY_LEN;

/// Decodes the bytes of a segment file exactly as recovery does (header check, then every frame
/// up to the end, resynchronising after damage), without files. The entry point of the spool
/// fuzz target (`fuzz/`); returns the number of records decoded and of damaged stretches.
#[doc(hidden)]
pub fn decode_segment_bytes(data: &[u8]) -> (usize, usize) {
    let _ = format::check_segment_header(data, 0);
    let mut interner = format::Interner::default();
    let scan = format::scan(
        data,
        format::SEGMENT_HEADER_LEN.min(data.len()),
        &mut interner,
    );
    (scan.items.len(), scan.damage.len())
}

/// Name of the lock file in the spool directory.
pub const LOCK_FILE: &str = "LOCK";
/// Smallest accepted `segment_bytes` (smaller values are raised to it).
pub const MIN_SEGMENT_BYTES: u64 = 1024;
/// Largest accepted `segment_bytes` (larger values are lowered to it).
pub const MAX_SEGMENT_BYTES: u64 = 1 << 30;
/// A segment whose next record index reaches this rolls over (unreachable with sane sizes).
const INDEX_ROLL: u32 = 1 << 31;
/// Most runs in one release record (keeps it far below [`MAX_BODY_LEN`]).
const MAX_RUNS_PER_RECORD: usize = 65_536;
/// Wait before retrying a failed segment removal.
const GC_RETRY: Duration = if cfg!(test) {
    Duration::from_millis(20)
} else {
    Duration::from_secs(1)
};

/// Where and how big.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolOptions {
    /// The spool directory, `<state>/spool` (created if missing).
    pub dir: PathBuf,
    /// Roll over to a new segment file at this size (clamped to
    /// [`MIN_SEGMENT_BYTES`]..=[`MAX_SEGMENT_BYTES`]). Smaller segments free space sooner;
    /// larger ones mean fewer files and directory syncs.
    pub segment_bytes: u64,
    /// [`Spool::is_full`] at or above this many bytes.
    pub max_bytes: u64,
}

impl SpoolOptions {
    /// Default segment size.
    pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;

    /// Options with the default segment size.
    pub fn new(dir: impl Into<PathBuf>, max_bytes: u64) -> Self {
        SpoolOptions {
            dir: dir.into(),
            segment_bytes: Self::DEFAULT_SEGMENT_BYTES,
            max_bytes,
        }
    }
}

/// What is persisted per delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A chunk as received (enough to rebuild `ImgMessage` + receipt time).
    Img {
        /// When it was received, ms since the epoch (the assembler's `now_ms`).
        received_ms: u64,
        /// The chunk.
        msg: ImgMessage,
    },
    /// A delivery whose fact is recorded but which carries nothing to assemble (duplicate,
    /// skipped topic, bad input).
    Seen {
        /// When it was received, ms.
        received_ms: u64,
        /// Aliyun's `messageId`.
        message_id: String,
    },
    /// A finished v2 picture (so a late duplicate after a restart is recognised).
    Done {
        /// The camera.
        device: DeviceId,
        /// v2 picture id.
        pid: u32,
        /// JPEG size, bytes.
        size: u32,
        /// JPEG CRC-32.
        crc: u32,
        /// When it was written, ms.
        at_ms: u64,
    },
}

impl Record {
    /// Whether the record stays live (pins its segment) until released: `Img` and `Seen`.
    ///
    /// `Seen` records are live too: they are what recognises a redelivery after a restart, and a
    /// delivery may be redelivered until its settlement has reached Aliyun, which is after the
    /// commit. The engine releases them (and finished pictures' chunks) only after a delay.
    pub fn is_live_kind(&self) -> bool {
        matches!(self, Record::Img { .. } | Record::Seen { .. })
    }
}

/// What kind of damage recovery found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CorruptKind {
    /// Damaged or partial bytes at the end of a segment (power loss mid-write); cut off.
    TornTail,
    /// Damaged bytes followed by valid records; skipped.
    BadFrame,
    /// A frame with a valid checksum that does not decode (unknown type, reserved bits,
    /// duplicate index); skipped.
    Undecodable,
    /// A damaged segment header; the segment's frames were still scanned.
    BadHeader,
    /// A segment of another format version, or a file name out of range; left untouched.
    Unsupported,
    /// A file shorter than a segment header (crash during creation); removed.
    ShortSegment,
}

impl CorruptKind {
    /// Stable snake_case name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            CorruptKind::TornTail => "torn_tail",
            CorruptKind::BadFrame => "bad_frame",
            CorruptKind::Undecodable => "undecodable",
            CorruptKind::BadHeader => "bad_header",
            CorruptKind::Unsupported => "unsupported",
            CorruptKind::ShortSegment => "short_segment",
        }
    }
}

/// One damaged stretch found by [`Spool::open`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptRecord {
    /// The segment file.
    pub segment: PathBuf,
    /// Byte offset of the damage in the file.
    pub offset: u64,
    /// Bytes skipped or cut.
    pub len: u64,
    /// Category.
    pub kind: CorruptKind,
    /// Human detail.
    pub what: String,
}

impl fmt::Display for CorruptRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at {}+{} in {}: {}",
            self.kind.as_str(),
            self.offset,
            self.len,
            self.segment.display(),
            self.what
        )
    }
}

/// What a previous run left behind.
#[derive(Debug, Default)]
pub struct Recovery {
    /// In log order: every unreleased `Img` record (live, to be pushed into the assembler; its
    /// tag must be released like any other) and every `Seen`/`Done` record still on disk
    /// (informational; never live).
    pub records: Vec<(Tag, Record)>,
    /// Damage found (and repaired where possible); empty after a clean shutdown.
    pub corrupt: Vec<CorruptRecord>,
    /// [`Spool::bytes`] after recovery.
    pub bytes: u64,
    /// Segment files after recovery.
    pub segments: usize,
    /// `Img` records found but not returned because a release record covered them.
    pub released: usize,
}

/// What one [`Spool::commit`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Records made durable (excluding release records).
    pub records: usize,
    /// Releases made durable.
    pub releases: usize,
    /// Bytes written (records, release records and, for a new segment, its header).
    pub bytes: u64,
    /// Whether the commit started a new segment file.
    pub new_segment: bool,
    /// Time spent writing and syncing.
    pub elapsed: Duration,
}

/// Spool failures. Every variant that involves a file names it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpoolError {
    /// A file-system operation failed. After a failed [`Spool::commit`] the spool is consistent
    /// and the batch is dropped; the caller must not accept its deliveries, and may retry later.
    #[error("spool: {op} {} failed: {source}", .path.display())]
    Io {
        /// What was being done (`write`, `fdatasync`, `create`, ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Another process (or another `Spool` in this one) uses the directory.
    #[error(
        "spool: {} is locked by another process (one receiver per state directory)",
        .path.display()
    )]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// A record whose body exceeds [`MAX_BODY_LEN`]. Nothing was appended.
    #[error("spool: record body of {len} bytes exceeds the limit of {max} bytes")]
    RecordTooLarge {
        /// Body length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Segment numbers or record indices ran out (not reachable with sane configurations).
    #[error("spool: {0} exhausted")]
    Exhausted(&'static str),
}

impl SpoolError {
    /// The OS error kind, for I/O failures.
    pub fn kind(&self) -> Option<std::io::ErrorKind> {
        match self {
            SpoolError::Io { source, .. } => Some(source.kind()),
            _ => None,
        }
    }

    /// The file or directory involved, if any.
    pub fn path(&self) -> Option<&Path> {
        match self {
            SpoolError::Io { path, .. } | SpoolError::Locked { path } => Some(path),
            _ => None,
        }
    }

    /// `ENOSPC` or `EDQUOT`: stop granting credit and retry once space is freed.
    pub fn is_disk_full(&self) -> bool {
        let SpoolError::Io { source, .. } = self else {
            return false;
        };
        matches!(
            source.kind(),
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
        ) || matches!(source.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
    }

    /// Whether backing off and retrying is the right reaction: true for every I/O error (the
    /// spool stays consistent; `EIO`, `EROFS` or `EACCES` usually need an operator, but the
    /// daemon should resume by itself once they are fixed), false for a held lock, an oversized
    /// record (retrying the same record cannot work) or exhaustion.
    pub fn is_retryable(&self) -> bool {
        matches!(self, SpoolError::Io { .. })
    }
}

fn io_err(op: &'static str, path: &Path, source: std::io::Error) -> SpoolError {
    SpoolError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn make_tag(segment: u32, index: u32) -> Tag {
    (u64::from(segment) << 32) | u64::from(index)
}

fn split_tag(tag: Tag) -> (u32, u32) {
    ((tag >> 32) as u32, tag as u32)
}

fn segment_file_name(no: u32) -> String {
    format!("seg-{:016x}.log", u64::from(no))
}

/// `seg-<16 hex>.log` -> its number.
fn parse_segment_name(name: &str) -> Option<u64> {
    let hex = name.strip_prefix("seg-")?.strip_suffix(".log")?;
    if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// One bit per record index.
#[derive(Debug, Default)]
struct LiveSet {
    words: Vec<u64>,
    count: usize,
}

impl LiveSet {
    fn insert(&mut self, i: u32) -> bool {
        let (w, b) = (i as usize / 64, i % 64);
        if w >= self.words.len() {
            self.words.resize(w + 1, 0);
        }
        let fresh = self.words[w] & (1 << b) == 0;
        self.words[w] |= 1 << b;
        self.count += usize::from(fresh);
        fresh
    }

    fn remove(&mut self, i: u32) -> bool {
        let (w, b) = (i as usize / 64, i % 64);
        match self.words.get_mut(w) {
            Some(word) if *word & (1 << b) != 0 => {
                *word &= !(1 << b);
                self.count -= 1;
                true
            }
            _ => false,
        }
    }

    fn is_empty(&self) -> bool {
        self.count == 0
    }
}

#[derive(Debug)]
struct Segment {
    path: PathBuf,
    /// Committed length: everything below it is durable.
    len: u64,
    /// Next record index to hand out.
    next_index: u32,
    live: LiveSet,
    /// No longer appended to.
    sealed: bool,
    /// Another format version: never written, never removed.
    foreign: bool,
    /// Older segments that this segment's release records hide records of.
    pins: Vec<u32>,
}

impl Segment {
    fn new(path: PathBuf) -> Self {
        Segment {
            path,
            len: 0,
            next_index: 0,
            live: LiveSet::default(),
            sealed: false,
            foreign: false,
            pins: Vec::new(),
        }
    }

    fn removable(&self) -> bool {
        self.sealed && !self.foreign && self.live.is_empty()
    }
}

struct Active {
    no: u32,
    file: Box<dyn SegmentFile>,
}

/// The uncommitted batch.
#[derive(Debug)]
struct Batch {
    segment: u32,
    /// The batch creates its segment (the buffer starts with the header).
    new_segment: bool,
    /// File offset the buffer goes to.
    base: u64,
    first_index: u32,
    next_index: u32,
    records: usize,
    /// Indices of `Img` records not released yet.
    live: Vec<u32>,
}

impl Batch {
    fn owns(&self, segment: u32, index: u32) -> bool {
        segment == self.segment && index >= self.first_index
    }
}

#[derive(Debug, Default)]
struct Gc {
    /// Some segment may be removable.
    needed: bool,
    /// A removal was not followed by a successful directory sync.
    dir_unsynced: bool,
    /// Do not retry before.
    retry_at: Option<Instant>,
}

/// The spool. See the module docs.
pub struct Spool {
    dir: PathBuf,
    segment_bytes: u64,
    max_bytes: u64,
    storage: Box<dyn Storage>,
    _lock: File,
    segments: BTreeMap<u32, Segment>,
    active: Option<Active>,
    next_segment: u64,
    batch: Option<Batch>,
    buf: Vec<u8>,
    pending_release: Vec<Tag>,
    disk_bytes: u64,
    gc: Gc,
}

impl fmt::Debug for Spool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Spool")
            .field("dir", &self.dir)
            .field("segments", &self.segments.len())
            .field("active", &self.active.as_ref().map(|a| a.no))
            .field("bytes", &self.bytes())
            .field("uncommitted", &self.uncommitted())
            .field("pending_releases", &self.pending_release.len())
            .finish_non_exhaustive()
    }
}

impl Spool {
    /// Opens (creating if needed) the spool in `opts.dir`, recovers what is there and takes the
    /// directory lock. Damage is repaired and reported, never an error; errors are I/O failures
    /// (unreadable directory or segment) and [`SpoolError::Locked`].
    pub fn open(opts: SpoolOptions) -> Result<(Spool, Recovery), SpoolError> {
        Self::open_with(opts, Box::new(RealStorage))
    }

    pub(crate) fn open_with(
        opts: SpoolOptions,
        storage: Box<dyn Storage>,
    ) -> Result<(Spool, Recovery), SpoolError> {
        let dir = opts.dir;
        if !dir.is_dir() {
            std::fs::create_dir_all(&dir).map_err(|e| io_err("create directory", &dir, e))?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                io::sync_dir(parent).map_err(|e| io_err("fsync directory", parent, e))?;
            }
        }
        let lock_path = dir.join(LOCK_FILE);
        let lock = io::lock_file(&lock_path)
            .map_err(|e| io_err("lock", &lock_path, e))?
            .ok_or_else(|| SpoolError::Locked {
                path: lock_path.clone(),
            })?;

        let mut names = Vec::new();
        let entries = std::fs::read_dir(&dir).map_err(|e| io_err("read directory", &dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io_err("read directory", &dir, e))?;
            if let Some(no) = entry.file_name().to_str().and_then(parse_segment_name) {
                names.push((no, entry.path()));
            }
        }
        names.sort();

        let mut st = Recovering::default();
        for (no, path) in names {
            st.segment(no, path)?;
        }
        let Recovering {
            mut rec,
            mut segments,
            items,
            mut released,
            dir_dirty,
            next_segment,
            ..
        } = st;
        released.finish();
        for (no, item) in items {
            let Decoded::Record(record) = item.decoded else {
                continue;
            };
            if record.is_live_kind() {
                if released.covers(no, item.index) {
                    rec.released += 1;
                    continue;
                }
                if let Some(seg) = segments.get_mut(&no) {
                    seg.live.insert(item.index);
                }
            }
            rec.records.push((make_tag(no, item.index), record));
        }

        let disk_bytes = segments.values().map(|s| s.len).sum();
        let mut spool = Spool {
            dir,
            segment_bytes: opts
                .segment_bytes
                .clamp(MIN_SEGMENT_BYTES, MAX_SEGMENT_BYTES),
            max_bytes: opts.max_bytes,
            storage,
            _lock: lock,
            segments,
            active: None,
            next_segment: next_segment.max(1), // no tag is 0
            batch: None,
            buf: Vec::new(),
            pending_release: Vec::new(),
            disk_bytes,
            gc: Gc {
                needed: true,
                dir_unsynced: dir_dirty,
                retry_at: None,
            },
        };
        spool.collect_garbage();
        rec.bytes = spool.bytes();
        rec.segments = spool.segments();
        Ok((spool, rec))
    }

    /// Encodes `rec` into the current batch and returns its tag. Nothing is durable until
    /// [`commit`](Self::commit) returns `Ok`. Never refuses for space (see [`is_full`](Self::is_full)).
    pub fn append(&mut self, rec: &Record) -> Result<Tag, SpoolError> {
        let body_len = format::body_len(rec);
        if body_len > MAX_BODY_LEN {
            return Err(SpoolError::RecordTooLarge {
                len: body_len,
                max: MAX_BODY_LEN,
            });
        }
        let mut batch = self.take_batch()?;
        let index = batch.next_index;
        let Some(next) = index.checked_add(1) else {
            self.batch = Some(batch);
            return Err(SpoolError::Exhausted("record indices"));
        };
        batch.next_index = next;
        format::encode_record(&mut self.buf, index, rec, body_len);
        batch.records += 1;
        if rec.is_live_kind() {
            batch.live.push(index);
        }
        let tag = make_tag(batch.segment, index);
        self.batch = Some(batch);
        Ok(tag)
    }

    /// Makes everything appended since the last commit, and every release since then, durable
    /// with one write and one `fdatasync` (plus file creation and a directory `fsync` when a new
    /// segment starts). On error the batch is dropped and the spool stays consistent (see the
    /// module docs); the caller must not accept the batch's deliveries.
    pub fn commit(&mut self) -> Result<CommitStats, SpoolError> {
        if self.gc.needed {
            self.collect_garbage();
        }
        let batch_segment = self.batch.as_ref().map(|b| b.segment);
        let segments = &self.segments;
        let runs = release_runs(&mut self.pending_release, |s| {
            segments.contains_key(&s) || Some(s) == batch_segment
        });
        if self.batch.is_none() && runs.is_empty() {
            self.pending_release.clear();
            return Ok(CommitStats::default());
        }
        let releases = runs.iter().map(|r| r.count as usize).sum();
        let mut batch = self.take_batch()?;
        for chunk in runs.chunks(MAX_RUNS_PER_RECORD) {
            let index = batch.next_index;
            let Some(next) = index.checked_add(1) else {
                self.batch = Some(batch);
                self.fail_batch();
                return Err(SpoolError::Exhausted("record indices"));
            };
            batch.next_index = next;
            format::encode_release(&mut self.buf, index, chunk);
        }
        self.batch = Some(batch);

        let started = Instant::now();
        match self.write_batch() {
            Ok(new_file) => {
                let stats = CommitStats {
                    records: self.batch.as_ref().map_or(0, |b| b.records),
                    releases,
                    bytes: self.buf.len() as u64,
                    new_segment: new_file.is_some(),
                    elapsed: started.elapsed(),
                };
                self.finish_batch(new_file, &runs);
                Ok(stats)
            }
            Err(e) => {
                self.fail_batch();
                Err(e)
            }
        }
    }

    /// Drops the uncommitted batch; its tags become invalid (releasing them is a no-op) and its
    /// record indices are not reused.
    pub fn abort(&mut self) {
        if let Some(b) = self.batch.take() {
            if let Some(seg) = self.segments.get_mut(&b.segment) {
                seg.next_index = seg.next_index.max(b.next_index);
            }
            self.pending_release.retain(|&t| {
                let (s, i) = split_tag(t);
                !b.owns(s, i)
            });
        }
        self.buf.clear();
    }

    /// Marks these records as no longer needed. Unknown, already released and non-live tags
    /// are ignored. A sealed segment left without live records is deleted here (its directory is
    /// synced); releases become durable with the next [`commit`](Self::commit).
    pub fn release<I: IntoIterator<Item = Tag>>(&mut self, tags: I) {
        for tag in tags {
            let (no, index) = split_tag(tag);
            if let Some(b) = self.batch.as_mut().filter(|b| b.owns(no, index)) {
                // Released before its commit: still written, with its release record after it.
                if let Some(p) = b.live.iter().position(|&i| i == index) {
                    b.live.swap_remove(p);
                    self.pending_release.push(tag);
                }
                continue;
            }
            if let Some(seg) = self.segments.get_mut(&no) {
                if seg.live.remove(index) {
                    self.pending_release.push(tag);
                    if seg.live.is_empty() && seg.sealed {
                        self.gc.needed = true;
                    }
                }
            }
        }
        if self.gc.needed {
            self.collect_garbage();
        }
    }

    /// Bytes on disk (segment files) plus the uncommitted batch.
    pub fn bytes(&self) -> u64 {
        self.disk_bytes + self.buf.len() as u64
    }

    /// Whether [`bytes`](Self::bytes) reached `max_bytes`: the engine should stop granting credit.
    pub fn is_full(&self) -> bool {
        self.bytes() >= self.max_bytes
    }

    /// Segment files on disk (including the active one).
    pub fn segments(&self) -> usize {
        self.segments.len()
    }

    /// Records appended since the last commit.
    pub fn uncommitted(&self) -> usize {
        self.batch.as_ref().map_or(0, |b| b.records)
    }

    /// Releases not yet made durable by a commit.
    pub fn pending_releases(&self) -> usize {
        self.pending_release.len()
    }

    /// Committed `Img` records not released yet.
    pub fn live_records(&self) -> usize {
        self.segments.values().map(|s| s.live.count).sum()
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn segment_path(&self, no: u32) -> PathBuf {
        self.dir.join(segment_file_name(no))
    }

    /// The current batch, starting one (and deciding its segment) if there is none.
    /// (Taken out of `self` so the buffer can be written meanwhile; the caller puts it back.)
    fn take_batch(&mut self) -> Result<Batch, SpoolError> {
        match self.batch.take() {
            Some(b) => Ok(b),
            None => self.new_batch(),
        }
    }

    fn new_batch(&mut self) -> Result<Batch, SpoolError> {
        self.buf.clear();
        let current = self.active.as_ref().and_then(|a| {
            let seg = self.segments.get(&a.no)?;
            let fits = seg.len < self.segment_bytes && seg.next_index < INDEX_ROLL;
            fits.then_some((a.no, seg.len, seg.next_index))
        });
        if let Some((segment, base, next_index)) = current {
            return Ok(Batch {
                segment,
                new_segment: false,
                base,
                first_index: next_index,
                next_index,
                records: 0,
                live: Vec::new(),
            });
        }
        let no = u32::try_from(self.next_segment)
            .map_err(|_| SpoolError::Exhausted("segment numbers"))?;
        self.next_segment += 1;
        self.buf.extend_from_slice(&format::segment_header(no));
        Ok(Batch {
            segment: no,
            new_segment: true,
            base: 0,
            first_index: 0,
            next_index: 0,
            records: 0,
            live: Vec::new(),
        })
    }

    /// Writes and syncs the buffer. Returns the new file when the batch created its segment.
    fn write_batch(&mut self) -> Result<Option<Box<dyn SegmentFile>>, SpoolError> {
        let Some(batch) = self.batch.as_ref() else {
            return Ok(None);
        };
        let path = self.segment_path(batch.segment);
        if batch.new_segment {
            let mut file = self
                .storage
                .create(&path)
                .map_err(|e| io_err("create", &path, e))?;
            file.write_all_at(&self.buf, 0)
                .map_err(|e| io_err("write", &path, e))?;
            file.sync_data()
                .map_err(|e| io_err("fdatasync", &path, e))?;
            self.storage
                .sync_dir(&self.dir)
                .map_err(|e| io_err("fsync directory", &self.dir, e))?;
            return Ok(Some(file));
        }
        let base = batch.base;
        match self.active.as_mut() {
            Some(active) if active.no == batch.segment => {
                active
                    .file
                    .write_all_at(&self.buf, base)
                    .map_err(|e| io_err("write", &path, e))?;
                active
                    .file
                    .sync_data()
                    .map_err(|e| io_err("fdatasync", &path, e))?;
                Ok(None)
            }
            _ => Err(io_err(
                "write",
                &path,
                std::io::Error::other("segment is not open for appending"),
            )),
        }
    }

    /// Applies a successful write.
    fn finish_batch(&mut self, new_file: Option<Box<dyn SegmentFile>>, runs: &[ReleaseRun]) {
        let Some(batch) = self.batch.take() else {
            return;
        };
        let written = self.buf.len() as u64;
        if let Some(file) = new_file {
            if let Some(prev) = self.active.take() {
                self.seal(prev.no);
            }
            let path = self.segment_path(batch.segment);
            self.segments.insert(batch.segment, Segment::new(path));
            self.active = Some(Active {
                no: batch.segment,
                file,
            });
        }
        if let Some(seg) = self.segments.get_mut(&batch.segment) {
            seg.len = batch.base + written;
            seg.next_index = batch.next_index;
            for &i in &batch.live {
                seg.live.insert(i);
            }
            for r in runs {
                if r.segment != batch.segment && !seg.pins.contains(&r.segment) {
                    seg.pins.push(r.segment);
                }
            }
        }
        self.disk_bytes += written;
        self.pending_release.clear();
        self.buf.clear();
        if self.buf.capacity() > 8 << 20 {
            self.buf.shrink_to(1 << 20);
        }
        if self.gc.needed {
            self.collect_garbage();
        }
    }

    /// Undoes a failed write: drops the batch, cuts the file back, seals it.
    fn fail_batch(&mut self) {
        let Some(batch) = self.batch.take() else {
            self.buf.clear();
            return;
        };
        self.buf.clear();
        self.pending_release.retain(|&t| {
            let (s, i) = split_tag(t);
            !batch.owns(s, i)
        });
        let path = self.segment_path(batch.segment);
        if batch.new_segment {
            match self.storage.remove(&path) {
                Ok(()) => {
                    // Best effort: a leftover file would only hold records never accepted.
                    let _ = self.storage.sync_dir(&self.dir);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e,
                        "spool: cannot remove a segment whose creation failed; will retry");
                    let mut seg = Segment::new(path);
                    seg.sealed = true;
                    self.segments.insert(batch.segment, seg);
                    self.gc.needed = true;
                }
            }
            return;
        }
        if let Some(mut active) = self.active.take() {
            // Never append to this file again: after a failed fdatasync its page cache state is
            // unknown. Cut the uncommitted bytes so a restart does not see them.
            let cut = active
                .file
                .set_len(batch.base)
                .and_then(|()| active.file.sync_data());
            if let Err(e) = cut {
                tracing::warn!(path = %path.display(), error = %e, len = batch.base,
                    "spool: cannot truncate a failed batch; a restart may replay its records");
            }
            if let Some(seg) = self.segments.get_mut(&active.no) {
                seg.next_index = seg.next_index.max(batch.next_index);
            }
            self.seal(active.no);
        }
    }

    fn seal(&mut self, no: u32) {
        if let Some(seg) = self.segments.get_mut(&no) {
            seg.sealed = true;
            if seg.live.is_empty() {
                self.gc.needed = true;
            }
        }
    }

    /// Deletes removable segments, syncing the directory after each round: a segment whose release
    /// records hide records of an older segment is removed only once that older segment's removal
    /// is durable (otherwise a crash could bring the older records back without their releases).
    fn collect_garbage(&mut self) {
        if self.gc.retry_at.is_some_and(|at| Instant::now() < at) {
            return;
        }
        self.gc.retry_at = None;
        self.gc.needed = false;
        if self.gc.dir_unsynced {
            if let Err(e) = self.storage.sync_dir(&self.dir) {
                self.gc_failed("fsync directory", &self.dir.clone(), &e);
                return;
            }
            self.gc.dir_unsynced = false;
        }
        let mut failed: Vec<u32> = Vec::new();
        loop {
            let segments = &self.segments;
            let doomed: Vec<u32> = segments
                .iter()
                .filter(|(no, s)| {
                    s.removable()
                        && !failed.contains(no)
                        && s.pins.iter().all(|p| !segments.contains_key(p))
                })
                .map(|(no, _)| *no)
                .collect();
            if doomed.is_empty() {
                break;
            }
            let mut removed = false;
            for no in doomed {
                let Some(path) = self.segments.get(&no).map(|s| s.path.clone()) else {
                    continue;
                };
                match self.storage.remove(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        self.gc_failed("remove", &path, &e);
                        failed.push(no);
                        continue;
                    }
                }
                if let Some(seg) = self.segments.remove(&no) {
                    self.disk_bytes = self.disk_bytes.saturating_sub(seg.len);
                }
                removed = true;
            }
            if !removed {
                break;
            }
            if let Err(e) = self.storage.sync_dir(&self.dir) {
                self.gc.dir_unsynced = true;
                self.gc_failed("fsync directory", &self.dir.clone(), &e);
                return;
            }
        }
    }

    fn gc_failed(&mut self, op: &str, path: &Path, e: &std::io::Error) {
        tracing::warn!(path = %path.display(), error = %e, op,
            "spool: cannot free a segment; will retry");
        self.gc.needed = true;
        self.gc.retry_at = Some(Instant::now() + GC_RETRY);
    }
}

/// Sorts and dedups the pending releases and turns those that `keep` into runs.
fn release_runs(pending: &mut Vec<Tag>, keep: impl Fn(u32) -> bool) -> Vec<ReleaseRun> {
    pending.sort_unstable();
    pending.dedup();
    let mut runs: Vec<ReleaseRun> = Vec::new();
    for &tag in pending.iter() {
        let (segment, index) = split_tag(tag);
        if !keep(segment) {
            continue;
        }
        match runs.last_mut() {
            Some(r) if r.segment == segment && r.first.checked_add(r.count) == Some(index) => {
                r.count += 1;
            }
            _ => runs.push(ReleaseRun {
                segment,
                first: index,
                count: 1,
            }),
        }
    }
    runs
}

/// State while [`Spool::open`] reads the segments, oldest first.
#[derive(Debug, Default)]
struct Recovering {
    rec: Recovery,
    segments: BTreeMap<u32, Segment>,
    /// Decoded frames of every segment, in log order.
    items: Vec<(u32, format::Item)>,
    released: Released,
    interner: format::Interner,
    /// A file was removed: sync the directory.
    dir_dirty: bool,
    next_segment: u64,
}

impl Recovering {
    fn corrupt(&mut self, path: &Path, kind: CorruptKind, offset: u64, len: u64, what: String) {
        self.rec.corrupt.push(CorruptRecord {
            segment: path.to_path_buf(),
            offset,
            len,
            kind,
            what,
        });
    }

    /// Reads, checks and repairs one segment file.
    fn segment(&mut self, no64: u64, path: PathBuf) -> Result<(), SpoolError> {
        let Ok(no) = u32::try_from(no64) else {
            let what = "segment number out of range; file ignored".to_string();
            self.corrupt(&path, CorruptKind::Unsupported, 0, 0, what);
            return Ok(());
        };
        self.next_segment = self.next_segment.max(no64 + 1);
        let data = std::fs::read(&path).map_err(|e| io_err("read", &path, e))?;
        let mut seg = Segment::new(path.clone());
        seg.sealed = true;
        seg.len = data.len() as u64;
        match format::check_segment_header(&data, no64) {
            HeaderCheck::Ok => {}
            HeaderCheck::Short => {
                // Created but never committed to (the header is synced with the first batch).
                let what = match std::fs::remove_file(&path) {
                    Ok(()) => {
                        self.dir_dirty = true;
                        "shorter than a segment header; removed".to_string()
                    }
                    Err(e) => {
                        self.segments.insert(no, seg);
                        format!("shorter than a segment header; removal failed: {e}")
                    }
                };
                self.corrupt(&path, CorruptKind::ShortSegment, 0, data.len() as u64, what);
                return Ok(());
            }
            HeaderCheck::Unsupported(v) => {
                let what = format!("format version {v}; segment left untouched");
                self.corrupt(&path, CorruptKind::Unsupported, 0, 0, what);
                seg.foreign = true;
                self.segments.insert(no, seg);
                return Ok(());
            }
            HeaderCheck::Corrupt(what) => {
                let what = format!("{what}; scanning records anyway");
                let len = SEGMENT_HEADER_LEN as u64;
                self.corrupt(&path, CorruptKind::BadHeader, 0, len, what);
            }
        }
        let scan = format::scan(&data, SEGMENT_HEADER_LEN, &mut self.interner);
        for d in scan.damage {
            let kind = match (d.tail, d.undecodable) {
                (true, _) => CorruptKind::TornTail,
                (false, true) => CorruptKind::Undecodable,
                (false, false) => CorruptKind::BadFrame,
            };
            self.corrupt(&path, kind, d.offset, d.len, d.what);
        }
        if scan.valid_len < seg.len {
            match truncate(&path, scan.valid_len) {
                Ok(()) => seg.len = scan.valid_len,
                Err(e) => {
                    if let Some(last) = self.rec.corrupt.last_mut() {
                        last.what.push_str(&format!("; truncation failed: {e}"));
                    }
                }
            }
        }
        let mut seen = LiveSet::default();
        for item in scan.items {
            if !seen.insert(item.index) {
                let what = format!("duplicate record index {}", item.index);
                self.corrupt(&path, CorruptKind::Undecodable, item.offset, 0, what);
                continue;
            }
            seg.next_index = seg.next_index.max(item.index.saturating_add(1));
            if let Decoded::Release(runs) = &item.decoded {
                for r in runs {
                    if r.segment != no && !seg.pins.contains(&r.segment) {
                        seg.pins.push(r.segment);
                    }
                    self.released.add(r);
                }
            }
            self.items.push((no, item));
        }
        self.segments.insert(no, seg);
        Ok(())
    }
}

/// Release runs found by recovery, per segment, as sorted intervals.
#[derive(Debug, Default)]
struct Released(HashMap<u32, Vec<(u32, u32)>>);

impl Released {
    fn add(&mut self, r: &ReleaseRun) {
        let end = r.first.saturating_add(r.count);
        self.0.entry(r.segment).or_default().push((r.first, end));
    }

    /// Sorts and merges each segment's intervals.
    fn finish(&mut self) {
        for runs in self.0.values_mut() {
            runs.sort_unstable();
            let mut merged: Vec<(u32, u32)> = Vec::with_capacity(runs.len());
            for &(first, end) in runs.iter() {
                match merged.last_mut() {
                    Some(last) if first <= last.1 => last.1 = last.1.max(end),
                    _ => merged.push((first, end)),
                }
            }
            *runs = merged;
        }
    }

    /// Whether a run covers `index` of `segment` (after [`finish`](Self::finish)).
    fn covers(&self, segment: u32, index: u32) -> bool {
        let Some(runs) = self.0.get(&segment) else {
            return false;
        };
        let upto = runs.partition_point(|&(first, _)| first <= index);
        upto > 0 && index < runs[upto - 1].1
    }
}

/// Cuts a recovered segment's torn tail.
fn truncate(path: &Path, len: u64) -> std::io::Result<()> {
    let f = OpenOptions::new().write(true).open(path)?;
    f.set_len(len)?;
    f.sync_data()
}

//! The assembler's cold store on disk ([`crate::assembler::cold::ColdStore`]): spill files in
//! `<state dir>/spill/`, so memory stays within `[assembly] memory_limit` however many cameras
//! are mid-upload.
//!
//! * **Segments.** Bytes are appended to the current segment file; at [`SEGMENT_BYTES`] a new one
//!   starts. Each segment counts its live bytes; one whose bytes are all freed is closed (the
//!   current one is rewound instead), so disk use follows what is open, not what passed through.
//! * **Unlinked.** A segment is removed from the folder right after it is created (only the open
//!   descriptor keeps it), so there is nothing to clean up after a crash, nothing another process
//!   can read, and no name a hostile device could influence. Leftovers of a crash in the window
//!   between create and unlink are removed at start.
//! * **Buffered.** Puts gather in a 256 KiB buffer written with one `pwrite` (a spilled chunk is
//!   typically one v1 chunk of 400 bytes); reads of bytes still in the buffer are served from it.
//!   A failed write keeps the buffer (and later puts fail) until a write succeeds: nothing put is
//!   ever lost to a write error.
//! * **Not durable.** No fsync: the spool is what makes accepted chunks durable; after a restart
//!   the pictures are rebuilt from it. The page cache absorbs most reads (a picture is usually
//!   read back within seconds of being spilled).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::assembler::cold::{ColdStore, Extent};

/// Size at which a new segment starts.
pub const SEGMENT_BYTES: u64 = 32 << 20;
/// Write buffer of the current segment.
const BUFFER_BYTES: usize = 256 << 10;

/// Why the spill folder could not be prepared.
#[derive(Debug, thiserror::Error)]
#[error("cannot prepare the spill folder {}: {source}", dir.display())]
pub struct SpillError {
    dir: PathBuf,
    source: io::Error,
}

#[derive(Debug)]
struct Segment {
    file: File,
    /// Bytes put (the next offset), including those still in `buf`.
    len: u64,
    /// Bytes put and not freed.
    live: u64,
    /// Bytes put but not yet written; they belong at `len - buf.len()`.
    buf: Vec<u8>,
}

impl Segment {
    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let at = self.len - self.buf.len() as u64;
        self.file.write_all_at(&self.buf, at)?;
        self.buf.clear();
        Ok(())
    }
}

/// Spill files in one folder (one process per state folder: the spool's lock).
#[derive(Debug)]
pub struct SpillStore {
    dir: PathBuf,
    segment_bytes: u64,
    /// Segments by number; `None` once closed (numbers are reused).
    segments: Vec<Option<Segment>>,
    current: Option<usize>,
    serial: u64,
}

impl SpillStore {
    /// Prepares `dir` (created if missing; leftover spill files removed).
    pub fn open(dir: &Path) -> Result<SpillStore, SpillError> {
        SpillStore::with_segment_bytes(dir, SEGMENT_BYTES)
    }

    /// As [`SpillStore::open`], with another segment size (tests).
    pub fn with_segment_bytes(dir: &Path, segment_bytes: u64) -> Result<SpillStore, SpillError> {
        let err = |source| SpillError {
            dir: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(err)?;
        for entry in std::fs::read_dir(dir).map_err(err)? {
            let entry = entry.map_err(err)?;
            let name = entry.file_name();
            if name.to_string_lossy().starts_with("spill-") {
                std::fs::remove_file(entry.path()).map_err(err)?;
            }
        }
        Ok(SpillStore {
            dir: dir.to_path_buf(),
            segment_bytes: segment_bytes.max(1),
            segments: Vec::new(),
            current: None,
            serial: 0,
        })
    }

    /// Open segment files (for tests and metrics).
    pub fn segment_count(&self) -> usize {
        self.segments.iter().flatten().count()
    }

    /// Bytes written to open segments (disk use, including freed holes not yet reclaimed).
    pub fn disk_bytes(&self) -> u64 {
        self.segments.iter().flatten().map(|s| s.len).sum()
    }

    fn new_segment(&mut self) -> io::Result<usize> {
        self.serial += 1;
        let path = self
            .dir
            .join(format!("spill-{}-{}", std::process::id(), self.serial));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        std::fs::remove_file(&path)?;
        let seg = Segment {
            file,
            len: 0,
            live: 0,
            buf: Vec::new(),
        };
        let n = match self.segments.iter().position(Option::is_none) {
            Some(n) => {
                self.segments[n] = Some(seg);
                n
            }
            None => {
                self.segments.push(Some(seg));
                self.segments.len() - 1
            }
        };
        Ok(n)
    }

    /// The segment to append `len` bytes to.
    fn writable(&mut self, len: u64) -> io::Result<usize> {
        if let Some(n) = self.current {
            if let Some(seg) = self.segments.get(n).and_then(Option::as_ref) {
                if seg.len == 0 || seg.len + len <= self.segment_bytes {
                    return Ok(n);
                }
            }
        }
        // The current one is full: it closes when its last extent is freed.
        if let Some(n) = self.current {
            if let Some(seg) = self.segments.get_mut(n).and_then(Option::as_mut) {
                seg.flush()?;
                seg.buf = Vec::new();
            }
            self.current = None;
            self.close_if_dead(n);
        }
        let n = self.new_segment()?;
        self.current = Some(n);
        Ok(n)
    }

    fn close_if_dead(&mut self, n: usize) {
        let dead = self
            .segments
            .get(n)
            .and_then(Option::as_ref)
            .is_some_and(|s| s.live == 0);
        if !dead {
            return;
        }
        if self.current == Some(n) {
            // Rewind: the space is reused from the start (the file keeps its size).
            if let Some(seg) = self.segments[n].as_mut() {
                seg.len = 0;
                seg.buf.clear();
            }
        } else {
            self.segments[n] = None;
        }
    }
}

impl ColdStore for SpillStore {
    fn put(&mut self, bytes: &[u8]) -> io::Result<Extent> {
        let len = u32::try_from(bytes.len()).map_err(io::Error::other)?;
        let n = self.writable(u64::from(len))?;
        let segment = u32::try_from(n).map_err(io::Error::other)?;
        let seg = self.segments[n]
            .as_mut()
            .ok_or_else(|| io::Error::other("spill segment vanished"))?;
        if seg.buf.len() + bytes.len() > BUFFER_BYTES {
            seg.flush()?;
        }
        let offset = seg.len;
        if bytes.len() >= BUFFER_BYTES {
            seg.file.write_all_at(bytes, offset)?;
        } else {
            if seg.buf.capacity() == 0 {
                seg.buf.reserve_exact(BUFFER_BYTES);
            }
            seg.buf.extend_from_slice(bytes);
        }
        seg.len += u64::from(len);
        seg.live += u64::from(len);
        Ok(Extent {
            segment,
            offset,
            len,
        })
    }

    fn read(&mut self, extent: Extent, out: &mut Vec<u8>) -> io::Result<()> {
        let seg = self
            .segments
            .get(extent.segment as usize)
            .and_then(Option::as_ref)
            .ok_or_else(|| io::Error::other(format!("no spill segment {}", extent.segment)))?;
        let buffered = seg.len - seg.buf.len() as u64;
        if extent.offset >= buffered {
            let from = (extent.offset - buffered) as usize;
            let bytes = seg
                .buf
                .get(from..from + extent.len as usize)
                .ok_or_else(|| io::Error::other("spill extent beyond its segment"))?;
            out.extend_from_slice(bytes);
            return Ok(());
        }
        let start = out.len();
        out.resize(start + extent.len as usize, 0);
        if let Err(e) = seg.file.read_exact_at(&mut out[start..], extent.offset) {
            out.truncate(start);
            return Err(e);
        }
        Ok(())
    }

    fn free(&mut self, extent: Extent) {
        let n = extent.segment as usize;
        if let Some(seg) = self.segments.get_mut(n).and_then(Option::as_mut) {
            seg.live = seg.live.saturating_sub(u64::from(extent.len));
            self.close_if_dead(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_come_back_and_segments_are_reclaimed() {
        let dir = tempfile::tempdir().unwrap();
        let spill_dir = dir.path().join("spill");
        let mut s = SpillStore::with_segment_bytes(&spill_dir, 100).unwrap();
        let a = s.put(&[1u8; 60]).unwrap();
        let b = s.put(&[2u8; 60]).unwrap();
        assert_ne!(a.segment, b.segment, "a full segment starts another");
        assert_eq!(s.segment_count(), 2);
        assert_eq!(
            std::fs::read_dir(&spill_dir).unwrap().count(),
            0,
            "segments are unlinked"
        );
        let mut out = vec![9u8];
        s.read(a, &mut out).unwrap();
        s.read(b, &mut out).unwrap();
        assert_eq!(out.len(), 121);
        assert!(out[1..61].iter().all(|&x| x == 1) && out[61..].iter().all(|&x| x == 2));
        s.free(a);
        assert_eq!(s.segment_count(), 1, "a dead full segment is closed");
        s.free(b);
        assert_eq!(s.segment_count(), 1, "the current one is kept, rewound");
        assert_eq!(s.disk_bytes(), 0);
        let c = s.put(&[3u8; 10]).unwrap();
        assert_eq!((c.segment, c.offset), (b.segment, 0));
    }

    #[test]
    fn buffered_and_written_bytes_both_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = SpillStore::open(dir.path()).unwrap();
        let pattern = |n: usize, k: u8| {
            (0..n)
                .map(|i| (i as u8).wrapping_mul(k))
                .collect::<Vec<_>>()
        };
        let parts = [
            pattern(200_000, 3),
            pattern(100_000, 5),
            pattern(400_000, 7),
            pattern(10, 11),
        ];
        let extents: Vec<_> = parts.iter().map(|p| s.put(p).unwrap()).collect();
        assert!(s.segments[0].as_ref().unwrap().buf.len() < BUFFER_BYTES);
        for (p, e) in parts.iter().zip(&extents) {
            let mut out = Vec::new();
            s.read(*e, &mut out).unwrap();
            assert_eq!(&out, p);
        }
        assert_eq!(s.disk_bytes(), 700_010);
        for e in extents {
            s.free(e);
        }
        assert_eq!(s.disk_bytes(), 0);
    }

    #[test]
    fn a_missing_segment_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = SpillStore::open(dir.path()).unwrap();
        let bogus = Extent {
            segment: 7,
            offset: 0,
            len: 4,
        };
        let mut out = Vec::new();
        assert!(s.read(bogus, &mut out).is_err());
        assert!(out.is_empty());
        s.free(bogus);
    }

    #[test]
    fn leftovers_are_removed_at_start() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("spill-1-1"), b"old").unwrap();
        std::fs::write(dir.path().join("keep.txt"), b"x").unwrap();
        SpillStore::open(dir.path()).unwrap();
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["keep.txt".to_string()]);
    }
}

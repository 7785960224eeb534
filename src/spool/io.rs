//! The few file-system operations the commit path needs, behind a small trait so tests can inject
//! faults (EIO on fdatasync, short writes, failing truncation) that a real file system will not
//! produce on demand. Recovery reads files directly with `std::fs`.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;

/// Creates, removes and syncs segment files.
pub(crate) trait Storage: Send {
    /// Creates a new segment file (it must not exist) for writing.
    fn create(&mut self, path: &Path) -> io::Result<Box<dyn SegmentFile>>;
    /// Removes a segment file.
    fn remove(&mut self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries (creations, removals) durable.
    fn sync_dir(&mut self, dir: &Path) -> io::Result<()>;
}

/// An open segment file.
pub(crate) trait SegmentFile: Send {
    /// Writes all of `buf` at `offset` (one `pwrite`, repeated only on a short write).
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// `fdatasync`.
    fn sync_data(&mut self) -> io::Result<()>;
    /// `ftruncate`.
    fn set_len(&mut self, len: u64) -> io::Result<()>;
}

/// The real file system.
#[derive(Debug, Default)]
pub(crate) struct RealStorage;

impl Storage for RealStorage {
    fn create(&mut self, path: &Path) -> io::Result<Box<dyn SegmentFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        Ok(Box::new(RealFile(file)))
    }

    fn remove(&mut self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&mut self, dir: &Path) -> io::Result<()> {
        sync_dir(dir)
    }
}

struct RealFile(File);

impl SegmentFile for RealFile {
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
}

/// `fsync` on a directory.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Takes an exclusive, non-blocking `flock` on `path` (created if missing). The lock lives as long
/// as the returned file. `Ok(None)` means another process (or another `Spool` in this process)
/// holds it.
pub(crate) fn lock_file(path: &Path) -> io::Result<Option<File>> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    // SAFETY: `flock` only reads its integer arguments; the descriptor is valid for the duration
    // of the call because `file` owns it.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(Some(file));
    }
    let err = io::Error::last_os_error();
    if err.kind() == io::ErrorKind::WouldBlock {
        Ok(None)
    } else {
        Err(err)
    }
}

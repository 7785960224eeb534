//! The two seams where a picture's bytes leave the process, as traits with today's behaviour as
//! their first implementation:
//!
//! - [`Output`]: where a finished picture goes. First implementation: the local folder
//!   ([`crate::sink::FolderOutput`]: tmp file, fsync, link/rename, folder fsync); the second, an
//!   S3-compatible bucket ([`crate::s3::S3Output`]).
//! - [`ChunkStore`]: where an accepted chunk is made durable until its picture is finished.
//!   First implementation: the local spool ([`crate::spool::Spool`]: group commit, one fdatasync
//!   per batch). A store shared by several instances is the next.
//!
//! Both are blocking: the engine calls them from its own thread (and its write helpers), never
//! from the async runtime. Quarantine is not a seam: it always stays in the local state folder
//! ([`crate::sink::Sink::quarantine`]).

use crate::assembler::Tag;
use crate::assembler::{Finished, Retraction};
use crate::message::DeviceId;
use crate::sink::{SinkError, Written};
use crate::spool::{CommitStats, Record, SpoolError};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// A written picture found again (for a retraction): where it is and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Its location (for the folder output, the file).
    pub path: PathBuf,
    /// Its content.
    pub bytes: Vec<u8>,
}

/// A picture as the output holds it, for readers (the gallery's index).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPicture {
    /// Its camera.
    pub device: DeviceId,
    /// Its name within the camera's pictures, e.g. `20261126T122710.123Z.jpg` (a
    /// [`is_picture_name`] name).
    pub name: String,
    /// Its size.
    pub bytes: u64,
    /// Its wire format (`v1`/`v2`) when the output recorded it (the folder: an extended
    /// attribute of the file, where the file system has them).
    pub format: Option<&'static str>,
}

/// Whether `name` can be a picture's name as the outputs write it (`<time>[-n].jpg`): ASCII
/// letters, digits, `.` and `-` only, not starting with `.`, ending in `.jpg`. Readers check
/// this before asking an output for a name, so no name can reach outside a camera's pictures.
pub fn is_picture_name(name: &str) -> bool {
    name.len() <= 64
        && name.len() > 4
        && name.ends_with(".jpg")
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

/// Where finished pictures go.
///
/// The contract every implementation keeps (the engine's guarantees rest on it):
/// - [`write`](Output::write) returns `Ok` only once the complete picture is durable; a picture
///   is complete or absent, never partial;
/// - writing the same picture again (a replay after a crash or a redelivery) creates nothing new
///   and reports [`Written::already_present`];
/// - different content is never overwritten;
/// - errors say whether they are worth retrying ([`SinkError::is_retryable`]): the engine then
///   pauses intake and retries, and the picture's chunks stay in the [`ChunkStore`].
pub trait Output: Send + Sync + fmt::Debug {
    /// For logs and `check-config`, e.g. `folder /var/lib/receiver/images`.
    fn describe(&self) -> String;

    /// Makes the output ready for `device`'s pictures (e.g. its folder), so that several of its
    /// pictures can then be written concurrently.
    fn prepare(&self, device: &DeviceId) -> Result<(), SinkError>;

    /// Writes a finished picture durably.
    fn write(&self, img: &Finished) -> Result<Written, SinkError>;

    /// The written picture that `r` names (same name time, size and CRC-32), if it is there.
    fn find(&self, r: &Retraction) -> Result<Option<Found>, SinkError>;

    /// Removes a picture [`find`](Output::find) returned (after it was quarantined).
    fn remove(&self, found: &Found) -> Result<(), SinkError>;

    /// Removes what a crash left half-written. Returns how many leftovers were removed.
    fn remove_stale_temp_files(&self) -> Result<usize, SinkError>;

    /// Every finished picture there is (for the gallery's index, built once at start-up), in no
    /// particular order. Names that are not [`is_picture_name`] are left out.
    fn list_pictures(&self) -> Result<Vec<StoredPicture>, SinkError>;

    /// The bytes of `device`'s picture `name` (an [`is_picture_name`] name, else `Ok(None)`),
    /// `Ok(None)` when it is not there (any more).
    fn read_picture(&self, device: &DeviceId, name: &str) -> Result<Option<Vec<u8>>, SinkError>;
    /// Like [`remove_stale_temp_files`](Output::remove_stale_temp_files), but only leftovers
    /// older than `age`: for an output shared by several instances (cluster mode), where a
    /// younger one may be another instance's write in progress. Default: nothing to remove.
    fn remove_temp_files_older_than(&self, age: std::time::Duration) -> Result<usize, SinkError> {
        let _ = age;
        Ok(0)
    }
}

impl<O: Output + ?Sized> Output for Arc<O> {
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn prepare(&self, device: &DeviceId) -> Result<(), SinkError> {
        (**self).prepare(device)
    }
    fn write(&self, img: &Finished) -> Result<Written, SinkError> {
        (**self).write(img)
    }
    fn find(&self, r: &Retraction) -> Result<Option<Found>, SinkError> {
        (**self).find(r)
    }
    fn remove(&self, found: &Found) -> Result<(), SinkError> {
        (**self).remove(found)
    }
    fn remove_stale_temp_files(&self) -> Result<usize, SinkError> {
        (**self).remove_stale_temp_files()
    }
    fn list_pictures(&self) -> Result<Vec<StoredPicture>, SinkError> {
        (**self).list_pictures()
    }
    fn read_picture(&self, device: &DeviceId, name: &str) -> Result<Option<Vec<u8>>, SinkError> {
        (**self).read_picture(device, name)
    }
    fn remove_temp_files_older_than(&self, age: std::time::Duration) -> Result<usize, SinkError> {
        (**self).remove_temp_files_older_than(age)
    }
}

/// Where accepted chunks are made durable until their picture is finished.
///
/// The contract: nothing appended is durable until [`commit`](ChunkStore::commit) returns `Ok`,
/// and only then may the engine accept the deliveries; a failed commit drops the batch and
/// leaves the store consistent (the engine releases those deliveries instead); releases become
/// durable with a later commit; after a crash, opening the store again yields every committed
/// record not released (how a store is opened and recovered is its own: see
/// [`crate::spool::Spool::open`]).
pub trait ChunkStore: Send + fmt::Debug {
    /// Adds `rec` to the current batch and returns its tag.
    fn append(&mut self, rec: &Record) -> Result<Tag, SpoolError>;

    /// Makes the batch and the releases since the last commit durable.
    fn commit(&mut self) -> Result<CommitStats, SpoolError>;

    /// Drops the uncommitted batch.
    fn abort(&mut self);

    /// Marks records as no longer needed (their picture is written or quarantined).
    fn release(&mut self, tags: &mut dyn Iterator<Item = Tag>);

    /// Bytes held.
    fn bytes(&self) -> u64;

    /// Whether the store reached its limit: the engine stops granting credit.
    fn is_full(&self) -> bool;
}

impl ChunkStore for crate::spool::Spool {
    fn append(&mut self, rec: &Record) -> Result<Tag, SpoolError> {
        crate::spool::Spool::append(self, rec)
    }
    fn commit(&mut self) -> Result<CommitStats, SpoolError> {
        crate::spool::Spool::commit(self)
    }
    fn abort(&mut self) {
        crate::spool::Spool::abort(self)
    }
    fn release(&mut self, tags: &mut dyn Iterator<Item = Tag>) {
        crate::spool::Spool::release(self, tags)
    }
    fn bytes(&self) -> u64 {
        crate::spool::Spool::bytes(self)
    }
    fn is_full(&self) -> bool {
        crate::spool::Spool::is_full(self)
    }
}

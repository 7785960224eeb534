//! Reassembles image chunks into pictures (pure: no I/O; time is a parameter).
//!
//! v1 (bare hex + `END`) and v2 (framed) side by side, detected per message; see
//! `docs/protocol.md` sections 2 and 3 for every rule implemented here.

use crate::message::{DeviceId, ImgMessage};
use crate::wire::Format;

/// An opaque handle the engine attaches to every pushed message (its spool position), handed back
/// in the [`Action`] that finishes with it so the engine can release the storage.
pub type Tag = u64;

/// Bounds on what the assembler holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest image accepted, bytes.
    pub max_image_bytes: usize,
    /// Most pictures open at once (all devices); the oldest is evicted past this.
    pub max_open: usize,
    /// A picture with no new chunk for this long is quarantined (`expired`), ms.
    pub timeout_ms: u64,
    /// Fully decode a finished v1 picture as a JPEG, not only check its markers.
    pub decode_check: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_image_bytes: 4 << 20,
            max_open: 10_000,
            timeout_ms: 10 * 60 * 1000,
            decode_check: false,
        }
    }
}

/// A picture that validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// The camera.
    pub device: DeviceId,
    /// Wire format.
    pub format: Format,
    /// v2 picture id.
    pub pid: Option<u32>,
    /// The JPEG.
    pub bytes: Vec<u8>,
    /// Time that names the file: the earliest `items.img.time`, else the first chunk's receipt time.
    pub name_time_ms: i64,
    /// Number of data chunks (v1: excluding `END`).
    pub chunks: usize,
    /// Tags of every message that went into it (data chunks, `END`, duplicates of its chunks that
    /// arrived while it was open).
    pub tags: Vec<Tag>,
    /// When its first chunk arrived (`now_ms` of that push).
    pub opened_ms: u64,
}

/// A picture, or a lone chunk, that goes to quarantine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    /// The camera.
    pub device: DeviceId,
    /// Wire format, when known.
    pub format: Option<Format>,
    /// v2 picture id, when known.
    pub pid: Option<u32>,
    /// Stable snake_case reason (see docs/protocol.md).
    pub reason: &'static str,
    /// Human detail: what disagreed, which sequence numbers are missing, ...
    pub detail: String,
    /// What was received, concatenated in order (may be empty).
    pub bytes: Vec<u8>,
    /// Earliest `items.img.time`, else first receipt time.
    pub name_time_ms: i64,
    /// v2: sequence numbers never received.
    pub missing: Vec<u32>,
    /// Tags of every message involved.
    pub tags: Vec<Tag>,
}

/// What the engine must do after a push or an expiry sweep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write this image.
    Write(Finished),
    /// Quarantine this.
    Quarantine(Quarantined),
}

/// What became of one pushed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Stored in an open picture (its tag comes back later in an [`Action`]).
    Stored,
    /// Its picture completed with it (its tag is in the `Write` action).
    Completed,
    /// A duplicate of a stored or finished chunk; nothing stored. Its tag is done now unless it
    /// was attached to an open picture (then `attached` is true and it comes back in an action).
    Duplicate {
        /// Whether the tag was kept with an open picture.
        attached: bool,
    },
    /// The message itself was bad and went to quarantine (its tag is in a `Quarantine` action).
    Quarantined,
}

/// The per-process reassembly state.
#[derive(Debug)]
pub struct Assembler {
    limits: Limits,
}

impl Assembler {
    /// A new, empty assembler.
    pub fn new(limits: Limits) -> Self {
        Assembler { limits }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Feeds one message that arrived at `now_ms`. Actions are appended to `out`.
    pub fn push(
        &mut self,
        _msg: &ImgMessage,
        _tag: Tag,
        _now_ms: u64,
        _out: &mut Vec<Action>,
    ) -> Disposition {
        unimplemented!("assembler::push")
    }

    /// Quarantines every picture idle for longer than the timeout at `now_ms`.
    pub fn expire(&mut self, _now_ms: u64, _out: &mut Vec<Action>) {
        unimplemented!("assembler::expire")
    }

    /// When the next picture would expire, if any are open.
    pub fn next_deadline(&self) -> Option<u64> {
        None
    }

    /// Open pictures.
    pub fn open_count(&self) -> usize {
        0
    }

    /// Bytes held by open pictures.
    pub fn buffered_bytes(&self) -> usize {
        0
    }

    /// Arrival time of the oldest open picture's first chunk.
    pub fn oldest_open_ms(&self) -> Option<u64> {
        None
    }
}

//! Cold storage for the bytes of open pictures: where the assembler moves them when it holds more
//! than [`Limits::memory_budget`](super::Limits::memory_budget) in memory, and where it reads them
//! back when it needs them (to check, write or quarantine a picture, or to compare a possible
//! duplicate).
//!
//! The assembler stays free of I/O: the store is a parameter ([`ColdStore`], given to
//! [`Assembler::with_cold_store`](super::Assembler::with_cold_store)). The daemon's store is a set
//! of unlinked files in the state folder (the daemon's `spill` module); tests use [`MemStore`].
//!
//! Each byte goes cold at most once: a picture's buffer is a cold prefix (extents in the store)
//! plus a hot tail in memory, and new chunks go to the tail. Reading a picture back (a *thaw*)
//! happens once per picture in the usual case, when its last chunk arrives.
//!
//! A store that fails to write leaves the bytes in memory (the budget is exceeded, nothing is
//! lost, the failure is counted). A store that fails to read back makes the picture's bytes
//! unusable: the affected range reads as zeros and the picture is marked *lost*, so it can never
//! be written as good (v1 refuses it, v2's CRC-32 fails); it goes to quarantine at its timeout,
//! while every chunk is still in the durable spool until then.

use std::collections::HashMap;
use std::fmt;

/// A region of a [`ColdStore`] (meaning defined by the store).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// Store-defined location (the file store: the segment).
    pub segment: u32,
    /// Store-defined offset.
    pub offset: u64,
    /// Length in bytes.
    pub len: u32,
}

/// Where cold bytes go. Single-threaded use by the assembler.
pub trait ColdStore: Send + fmt::Debug {
    /// Stores `bytes`, returning where.
    fn put(&mut self, bytes: &[u8]) -> std::io::Result<Extent>;
    /// Appends the bytes of `extent` to `out`.
    fn read(&mut self, extent: Extent, out: &mut Vec<u8>) -> std::io::Result<()>;
    /// Forgets `extent` (it is never read again).
    fn free(&mut self, extent: Extent);
}

/// An in-memory [`ColdStore`] for tests, with failure injection.
#[derive(Debug, Default)]
pub struct MemStore {
    next: u64,
    data: HashMap<u64, Vec<u8>>,
    /// Make every `put` fail.
    pub fail_puts: bool,
    /// Make every `read` fail.
    pub fail_reads: bool,
}

impl MemStore {
    /// Extents stored and not yet freed.
    pub fn live(&self) -> usize {
        self.data.len()
    }
}

impl ColdStore for MemStore {
    fn put(&mut self, bytes: &[u8]) -> std::io::Result<Extent> {
        if self.fail_puts {
            return Err(std::io::Error::other("injected put failure"));
        }
        let len = u32::try_from(bytes.len()).map_err(std::io::Error::other)?;
        self.next += 1;
        self.data.insert(self.next, bytes.to_vec());
        Ok(Extent {
            segment: 0,
            offset: self.next,
            len,
        })
    }

    fn read(&mut self, extent: Extent, out: &mut Vec<u8>) -> std::io::Result<()> {
        if self.fail_reads {
            return Err(std::io::Error::other("injected read failure"));
        }
        let bytes = self
            .data
            .get(&extent.offset)
            .ok_or_else(|| std::io::Error::other("no such extent"))?;
        out.extend_from_slice(bytes);
        Ok(())
    }

    fn free(&mut self, extent: Extent) {
        self.data.remove(&extent.offset);
    }
}

/// The assembler's handle on its store, with counters.
#[derive(Debug, Default)]
pub(super) struct Cold {
    store: Option<Box<dyn ColdStore>>,
    /// Bytes currently cold.
    pub(super) bytes: usize,
    /// Bytes ever moved to the store.
    pub(super) total: u64,
    /// Failed puts and reads so far.
    pub(super) errors: u64,
    /// The last failure, for the engine to log once.
    pub(super) last_error: Option<String>,
}

impl Cold {
    pub(super) fn new(store: Option<Box<dyn ColdStore>>) -> Self {
        Cold {
            store,
            ..Cold::default()
        }
    }

    pub(super) fn enabled(&self) -> bool {
        self.store.is_some()
    }

    fn put(&mut self, bytes: &[u8]) -> Option<Extent> {
        let store = self.store.as_mut()?;
        match store.put(bytes) {
            Ok(e) => {
                self.bytes += e.len as usize;
                self.total += u64::from(e.len);
                Some(e)
            }
            Err(err) => {
                self.errors += 1;
                self.last_error = Some(format!("writing {} byte(s): {err}", bytes.len()));
                None
            }
        }
    }

    /// Appends `extent` to `out` (zeros on failure) and frees it; false on failure.
    fn take(&mut self, extent: Extent, out: &mut Vec<u8>) -> bool {
        self.bytes = self.bytes.saturating_sub(extent.len as usize);
        let start = out.len();
        let ok = match self.store.as_mut() {
            Some(store) => {
                let r = store.read(extent, out);
                store.free(extent);
                match r {
                    Ok(()) if out.len() - start == extent.len as usize => true,
                    Ok(()) => {
                        self.last_error = Some(format!(
                            "reading {} byte(s): got {}",
                            extent.len,
                            out.len() - start
                        ));
                        false
                    }
                    Err(err) => {
                        self.last_error = Some(format!("reading {} byte(s): {err}", extent.len));
                        false
                    }
                }
            }
            None => {
                self.last_error = Some("no cold store".into());
                false
            }
        };
        if !ok {
            self.errors += 1;
            out.truncate(start);
            out.resize(start + extent.len as usize, 0);
        }
        ok
    }

    fn free(&mut self, extent: Extent) {
        self.bytes = self.bytes.saturating_sub(extent.len as usize);
        if let Some(store) = self.store.as_mut() {
            store.free(extent);
        }
    }
}

/// The bytes of an open v1 picture: a cold prefix plus a hot tail. Offsets are logical (over
/// both); only the hot part can be borrowed, so readers [`PicBuf::thaw`] first.
#[derive(Debug, Default)]
pub(super) struct PicBuf {
    hot: Vec<u8>,
    /// Only for pictures that went cold (boxed: most never do, and thousands can be open).
    cold: Option<Box<ColdPart>>,
}

#[derive(Debug, Default)]
struct ColdPart {
    extents: Vec<Extent>,
    /// Bytes in `extents`.
    len: usize,
    /// Why some bytes could not be read back (they read as zeros).
    lost: Option<String>,
}

impl PicBuf {
    fn cold_len(&self) -> usize {
        self.cold.as_ref().map_or(0, |c| c.len)
    }

    /// Logical length.
    pub(super) fn len(&self) -> usize {
        self.cold_len() + self.hot.len()
    }

    /// Memory held (the hot tail's allocation).
    pub(super) fn hot_bytes(&self) -> usize {
        self.hot.capacity()
    }

    /// No byte is cold.
    pub(super) fn is_hot(&self) -> bool {
        self.cold.as_ref().is_none_or(|c| c.extents.is_empty())
    }

    pub(super) fn lost(&self) -> Option<&str> {
        self.cold.as_ref()?.lost.as_deref()
    }

    /// The hot tail, to append to.
    pub(super) fn tail(&mut self) -> &mut Vec<u8> {
        &mut self.hot
    }

    /// Cuts back to logical length `len` (never into the cold part).
    pub(super) fn truncate(&mut self, len: usize) {
        let cold = self.cold_len();
        self.hot.truncate(len.saturating_sub(cold));
    }

    /// Logical range `start..start + len`, if hot.
    pub(super) fn get(&self, start: usize, len: usize) -> Option<&[u8]> {
        let s = start.checked_sub(self.cold_len())?;
        self.hot.get(s..s.checked_add(len)?)
    }

    /// Moves the hot tail to the store; returns the memory freed (0 when the store failed).
    pub(super) fn freeze(&mut self, cold: &mut Cold) -> usize {
        if self.hot.is_empty() {
            return 0;
        }
        let Some(e) = cold.put(&self.hot) else {
            return 0;
        };
        let freed = self.hot.capacity();
        let part = self.cold.get_or_insert_with(Box::default);
        if part.extents.len() == part.extents.capacity() {
            // Lean growth: thousands of pictures can be cold at once.
            let more = (part.extents.capacity() / 4).max(4);
            part.extents.reserve_exact(more);
        }
        part.extents.push(e);
        part.len += self.hot.len();
        self.hot = Vec::new();
        freed
    }

    /// Reads the cold part back into memory (frees it in the store).
    pub(super) fn thaw(&mut self, cold: &mut Cold) {
        let Some(part) = self.cold.as_mut() else {
            return;
        };
        if part.extents.is_empty() {
            return;
        }
        let mut all = Vec::with_capacity(part.len + self.hot.len());
        for e in std::mem::take(&mut part.extents) {
            if !cold.take(e, &mut all) && part.lost.is_none() {
                part.lost = Some(
                    cold.last_error
                        .clone()
                        .unwrap_or_else(|| "cold store read failed".into()),
                );
            }
        }
        all.extend_from_slice(&self.hot);
        self.hot = all;
        part.len = 0;
        if part.lost.is_none() {
            self.cold = None;
        }
    }

    /// The whole buffer (must be hot).
    pub(super) fn into_vec(mut self) -> Vec<u8> {
        debug_assert!(self.is_hot(), "cold picture bytes taken without a thaw");
        std::mem::take(&mut self.hot)
    }
}

/// A v2 piece: in memory, or in the store.
#[derive(Debug, Clone)]
pub(super) enum Piece {
    Hot(Box<[u8]>),
    Cold(Extent),
}

impl Piece {
    pub(super) fn len(&self) -> usize {
        match self {
            Piece::Hot(b) => b.len(),
            Piece::Cold(e) => e.len as usize,
        }
    }

    pub(super) fn hot_bytes(&self) -> usize {
        match self {
            Piece::Hot(b) => b.len(),
            Piece::Cold(_) => 0,
        }
    }

    /// Moves the piece to the store; returns the memory freed.
    pub(super) fn freeze(&mut self, cold: &mut Cold) -> usize {
        let Piece::Hot(b) = self else { return 0 };
        match cold.put(b) {
            Some(e) => {
                let freed = b.len();
                *self = Piece::Cold(e);
                freed
            }
            None => 0,
        }
    }

    /// Brings the piece back into memory; false when its bytes could not be read (then zeros).
    pub(super) fn thaw(&mut self, cold: &mut Cold) -> bool {
        let Piece::Cold(e) = *self else { return true };
        let mut v = Vec::with_capacity(e.len as usize);
        let ok = cold.take(e, &mut v);
        *self = Piece::Hot(v.into_boxed_slice());
        ok
    }

    /// Frees the store's copy, if any.
    pub(super) fn discard(&mut self, cold: &mut Cold) {
        if let Piece::Cold(e) = *self {
            cold.free(e);
            *self = Piece::Hot(Box::default());
        }
    }

    /// The bytes, if hot.
    pub(super) fn hot(&self) -> Option<&[u8]> {
        match self {
            Piece::Hot(b) => Some(b),
            Piece::Cold(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cold() -> Cold {
        Cold::new(Some(Box::new(MemStore::default())))
    }

    #[test]
    fn a_buffer_freezes_and_thaws_to_the_same_bytes() {
        let mut c = cold();
        let mut b = PicBuf::default();
        b.tail().extend_from_slice(b"hello ");
        let held = b.hot_bytes();
        assert!(held >= 6);
        assert_eq!(b.freeze(&mut c), held);
        assert_eq!(b.hot_bytes(), 0);
        b.tail().extend_from_slice(b"cold ");
        assert!(b.freeze(&mut c) > 0);
        b.tail().extend_from_slice(b"world");
        assert_eq!(b.len(), 16);
        assert_eq!(c.bytes, 11);
        assert!(b.get(0, 5).is_none(), "cold bytes cannot be borrowed");
        assert_eq!(b.get(11, 5), Some(&b"world"[..]));
        b.thaw(&mut c);
        assert_eq!(c.bytes, 0);
        assert!(b.lost().is_none());
        assert_eq!(b.get(0, 16), Some(&b"hello cold world"[..]));
        assert_eq!(b.into_vec(), b"hello cold world");
    }

    #[test]
    fn a_failed_put_keeps_the_bytes_in_memory() {
        let mut c = Cold::new(Some(Box::new(MemStore {
            fail_puts: true,
            ..MemStore::default()
        })));
        let mut b = PicBuf::default();
        b.tail().extend_from_slice(b"abc");
        assert_eq!(b.freeze(&mut c), 0);
        assert!(b.is_hot());
        assert_eq!(c.errors, 1);
        assert!(c
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("3 byte")));
        assert_eq!(b.into_vec(), b"abc");
    }

    #[test]
    fn a_failed_read_marks_the_buffer_lost_and_keeps_offsets() {
        let mut store = MemStore::default();
        let e = store.put(b"xyz").unwrap();
        store.fail_reads = true;
        let mut c = Cold::new(Some(Box::new(store)));
        c.bytes = 3;
        let mut b = PicBuf {
            hot: b"!".to_vec(),
            cold: Some(Box::new(ColdPart {
                extents: vec![e],
                len: 3,
                lost: None,
            })),
        };
        b.thaw(&mut c);
        assert!(b.lost().is_some_and(|w| w.contains("injected")));
        assert_eq!(b.len(), 4);
        assert_eq!(b.get(0, 4), Some(&[0, 0, 0, b'!'][..]));
        assert_eq!(c.errors, 1);
        drop(b);
    }

    #[test]
    fn pieces_round_trip_and_discard_frees() {
        let mut c = cold();
        let mut p = Piece::Hot(b"piece".to_vec().into_boxed_slice());
        assert_eq!(p.freeze(&mut c), 5);
        assert_eq!((p.len(), p.hot_bytes(), c.bytes), (5, 0, 5));
        assert!(p.hot().is_none());
        assert!(p.thaw(&mut c));
        assert_eq!(p.hot(), Some(&b"piece"[..]));
        p.freeze(&mut c);
        p.discard(&mut c);
        assert_eq!(c.bytes, 0);
    }
}

//! The gallery's camera index: every camera and its pictures, in memory.
//!
//! Built once at start-up from [`Output::list_pictures`] and kept current by
//! [`IndexedOutput`], the wrapper the engine writes through: each picture written is added (and
//! announced to the live pages), each picture removed (a retraction) is taken out. Pages read
//! the index, never the output's folder.

use crate::assembler::{Finished, Retraction};
use crate::message::DeviceId;
use crate::output::{is_picture_name, Found, Output, StoredPicture};
use crate::sink::{file_time, SinkError, Written};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, RwLock};
use tokio::sync::broadcast;

/// One stored picture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Picture {
    /// Its name (an [`is_picture_name`] name).
    pub name: String,
    /// The time in its name, ms since the epoch (UTC).
    pub time_ms: i64,
    /// Its size.
    pub bytes: u64,
    /// `v1`/`v2`, when known: for pictures written since the start, and for those listed at
    /// start-up whose output recorded it (the folder: an extended attribute of the file).
    pub format: Option<&'static str>,
}

/// One camera: its pictures, oldest first.
#[derive(Debug, Clone)]
pub struct Camera {
    /// Who it is.
    pub device: DeviceId,
    /// Its pictures, by time then name.
    pub pictures: Vec<Picture>,
}

/// A picture that was just written, as announced to live pages.
#[derive(Debug, Clone)]
pub struct Arrival {
    /// Its camera.
    pub device: DeviceId,
    /// The picture.
    pub picture: Picture,
}

/// A camera's key in the index: (product key, device name).
type CameraKey = (Arc<str>, Arc<str>);

/// Every camera and its pictures, shared between the writer and the pages.
pub struct Index {
    cameras: RwLock<BTreeMap<CameraKey, Camera>>,
    arrivals: broadcast::Sender<Arrival>,
}

impl fmt::Debug for Index {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Index")
            .field("cameras", &self.camera_count())
            .finish()
    }
}

impl Default for Index {
    fn default() -> Self {
        Index {
            cameras: RwLock::new(BTreeMap::new()),
            arrivals: broadcast::channel(256).0,
        }
    }
}

/// The time a picture's name says (`20261126T122710.123Z[-n].jpg`), ms since the epoch.
pub fn name_time_ms(name: &str) -> Option<i64> {
    let b = name.as_bytes();
    if b.len() < 20 || b[8] != b'T' || b[15] != b'.' || b[19] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = name.get(r)?;
        if !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, s, ms) = (num(9..11)?, num(11..13)?, num(13..15)?, num(16..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let t = ((days * 24 + h) * 60 + mi) * 60 + s;
    let t = t * 1000 + ms;
    (file_time(t) == name[..20]).then_some(t)
}

fn key(d: &DeviceId) -> CameraKey {
    (d.product_key.clone(), d.device_name.clone())
}

impl Index {
    /// An empty index.
    pub fn new() -> Arc<Index> {
        Arc::new(Index::default())
    }

    /// Adds pictures (the start-up listing); known ones are ignored.
    pub fn extend(&self, pictures: Vec<StoredPicture>) {
        let Ok(mut cams) = self.cameras.write() else {
            return;
        };
        for p in pictures {
            let Some(time_ms) = name_time_ms(&p.name) else {
                continue;
            };
            let cam = cams.entry(key(&p.device)).or_insert_with(|| Camera {
                device: p.device.clone(),
                pictures: Vec::new(),
            });
            cam.pictures.push(Picture {
                name: p.name,
                time_ms,
                bytes: p.bytes,
                format: p.format,
            });
        }
        for cam in cams.values_mut() {
            cam.pictures
                .sort_by(|a, b| (a.time_ms, &a.name).cmp(&(b.time_ms, &b.name)));
            cam.pictures.dedup_by(|a, b| a.name == b.name);
        }
    }

    /// Adds one picture (written just now); returns whether it was new. New pictures are
    /// announced to [`Index::subscribe`]rs.
    pub fn add(&self, device: &DeviceId, name: &str, bytes: u64) -> bool {
        self.add_with_format(device, name, bytes, None)
    }

    /// [`Index::add`], knowing the picture's wire format.
    pub fn add_with_format(
        &self,
        device: &DeviceId,
        name: &str,
        bytes: u64,
        format: Option<&'static str>,
    ) -> bool {
        let Some(time_ms) = name_time_ms(name).filter(|_| is_picture_name(name)) else {
            return false;
        };
        let picture = Picture {
            name: name.to_owned(),
            time_ms,
            bytes,
            format,
        };
        {
            let Ok(mut cams) = self.cameras.write() else {
                return false;
            };
            let cam = cams.entry(key(device)).or_insert_with(|| Camera {
                device: device.clone(),
                pictures: Vec::new(),
            });
            let at = cam
                .pictures
                .partition_point(|p| (p.time_ms, p.name.as_str()) < (time_ms, name));
            if cam.pictures.get(at).is_some_and(|p| p.name == name) {
                return false;
            }
            cam.pictures.insert(at, picture.clone());
        }
        let _ = self.arrivals.send(Arrival {
            device: device.clone(),
            picture,
        });
        true
    }

    /// Takes a picture out (retracted, or gone from the output).
    pub fn remove(&self, device: &DeviceId, name: &str) {
        if let Ok(mut cams) = self.cameras.write() {
            if let Some(cam) = cams.get_mut(&key(device)) {
                cam.pictures.retain(|p| p.name != name);
            }
        }
    }

    /// How many cameras there are.
    pub fn camera_count(&self) -> usize {
        self.cameras.read().map(|c| c.len()).unwrap_or(0)
    }

    /// Runs `f` over the cameras, in (product key, device name) order.
    pub fn with_cameras<T>(&self, f: impl FnOnce(&mut dyn Iterator<Item = &Camera>) -> T) -> T {
        match self.cameras.read() {
            Ok(c) => f(&mut c.values()),
            Err(_) => f(&mut std::iter::empty()),
        }
    }

    /// A copy of one camera, when it is known.
    pub fn camera(&self, device: &DeviceId) -> Option<Camera> {
        self.cameras.read().ok()?.get(&key(device)).cloned()
    }

    /// Whether `device` has a picture `name` (a binary search: pictures are in (time, name)
    /// order and the name says the time).
    pub fn has(&self, device: &DeviceId, name: &str) -> bool {
        let Some(time_ms) = name_time_ms(name) else {
            return false;
        };
        self.cameras.read().is_ok_and(|c| {
            c.get(&key(device)).is_some_and(|cam| {
                let at = cam
                    .pictures
                    .partition_point(|p| (p.time_ms, p.name.as_str()) < (time_ms, name));
                cam.pictures.get(at).is_some_and(|p| p.name == name)
            })
        })
    }

    /// New pictures as they are written.
    pub fn subscribe(&self) -> broadcast::Receiver<Arrival> {
        self.arrivals.subscribe()
    }
}

/// An [`Output`] that keeps an [`Index`] current: what it writes is added, what it removes is
/// taken out. Everything else is the wrapped output's.
#[derive(Debug)]
pub struct IndexedOutput<O> {
    inner: O,
    index: Arc<Index>,
}

impl<O> IndexedOutput<O> {
    /// Wraps `inner`.
    pub fn new(inner: O, index: Arc<Index>) -> Self {
        IndexedOutput { inner, index }
    }
}

/// The picture name in a written location (a file path or `s3://bucket/key`).
fn written_name(path: &std::path::Path) -> Option<String> {
    path.file_name().map(|n| n.to_string_lossy().into_owned())
}

impl<O: Output> Output for IndexedOutput<O> {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn prepare(&self, device: &DeviceId) -> Result<(), SinkError> {
        self.inner.prepare(device)
    }
    fn write(&self, img: &Finished) -> Result<Written, SinkError> {
        let w = self.inner.write(img)?;
        if let Some(name) = written_name(&w.path) {
            self.index
                .add_with_format(&img.device, &name, w.bytes, Some(img.format.as_str()));
        }
        Ok(w)
    }
    fn find(&self, r: &Retraction) -> Result<Option<Found>, SinkError> {
        self.inner.find(r)
    }
    fn remove(&self, found: &Found) -> Result<(), SinkError> {
        self.inner.remove(found)?;
        // The device is not in `Found`: take the name out wherever it is (names are times, so
        // this is the one picture in practice).
        if let Some(name) = written_name(&found.path) {
            if let Ok(mut cams) = self.index.cameras.write() {
                for cam in cams.values_mut() {
                    cam.pictures.retain(|p| p.name != name);
                }
            }
        }
        Ok(())
    }
    fn remove_stale_temp_files(&self) -> Result<usize, SinkError> {
        self.inner.remove_stale_temp_files()
    }
    fn remove_temp_files_older_than(&self, age: std::time::Duration) -> Result<usize, SinkError> {
        self.inner.remove_temp_files_older_than(age)
    }
    fn list_pictures(&self) -> Result<Vec<StoredPicture>, SinkError> {
        self.inner.list_pictures()
    }
    fn read_picture(&self, device: &DeviceId, name: &str) -> Result<Option<Vec<u8>>, SinkError> {
        self.inner.read_picture(device, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_times_round_trip() {
        for ms in [0, 1_764_160_030_123, 1_000, 951_782_400_000] {
            let name = format!("{}.jpg", file_time(ms));
            assert_eq!(name_time_ms(&name), Some(ms), "{name}");
            assert_eq!(name_time_ms(&format!("{}-2.jpg", file_time(ms))), Some(ms));
        }
        assert_eq!(name_time_ms("x.jpg"), None);
        assert_eq!(name_time_ms("20261340T000000.000Z.jpg"), None);
    }

    #[test]
    fn add_keeps_time_order_and_announces() {
        let index = Index::new();
        let mut rx = index.subscribe();
        let d = DeviceId::new("pk", "<img src=x onerror=alert(1)>");
        let n = |ms| format!("{}.jpg", file_time(ms));
        assert!(index.add(&d, &n(2_000), 10));
        assert!(index.add(&d, &n(1_000), 10));
        assert!(!index.add(&d, &n(1_000), 10), "known");
        assert!(!index.add(&d, "../../etc/passwd", 1), "not a picture name");
        let cam = index.camera(&d).unwrap();
        let times: Vec<_> = cam.pictures.iter().map(|p| p.time_ms).collect();
        assert_eq!(times, [1_000, 2_000]);
        assert_eq!(rx.try_recv().unwrap().picture.time_ms, 2_000);
        index.remove(&d, &n(1_000));
        assert!(!index.has(&d, &n(1_000)) && index.has(&d, &n(2_000)));
    }
}

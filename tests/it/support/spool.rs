//! Helpers shared by the `spool_*` integration tests.
#![allow(dead_code)]

use receiver::message::{DeviceId, ImgMessage};
use receiver::spool::{Record, SpoolOptions};
use std::path::{Path, PathBuf};

/// Segment header length, per the documented format.
pub const SEGMENT_HEADER: usize = 32;
/// Frame header length, per the documented format.
pub const FRAME_HEADER: usize = 16;

pub fn opts(dir: &Path, segment_bytes: u64) -> SpoolOptions {
    SpoolOptions {
        dir: dir.to_path_buf(),
        segment_bytes,
        max_bytes: 1 << 40,
    }
}

/// A chunk of 800 hex characters, distinct per `n`.
pub fn img(n: usize) -> Record {
    Record::Img {
        received_ms: 1_700_000_000_000 + n as u64,
        msg: ImgMessage {
            device: DeviceId::new("a1PK", &format!("cam-{}", n % 3)),
            message_id: format!("{}", 1_000_000_000_000_000_000u64 + n as u64),
            value: format!("{n:0800X}"),
            item_time: Some(1_700_000_000_000 + n as i64),
            gmt_create: (n % 2 == 0).then_some(1_700_000_000_001),
            request_id: (n % 3 == 0).then(|| n.to_string()),
        },
    }
}

/// Img, Seen and Done records in turn.
pub fn mixed(n: usize) -> Record {
    match n % 3 {
        0 | 1 => img(n),
        _ => Record::Seen {
            received_ms: n as u64,
            message_id: format!("seen-{n}"),
        },
    }
}

pub fn done(pid: u32) -> Record {
    Record::Done {
        device: DeviceId::new("a1PK", "cam-0"),
        pid,
        size: 1234,
        crc: 0xCAFE_F00D,
        at_ms: 42,
    }
}

/// Segment files, in order.
pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("seg-") && n.ends_with(".log"))
        })
        .collect();
    v.sort();
    v
}

/// `(offset, length)` of every frame of an undamaged segment, from the documented framing.
pub fn frames(data: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut pos = SEGMENT_HEADER;
    while pos < data.len() {
        let len = u32::from_le_bytes(data[pos + 4..pos + 8].try_into().unwrap()) as usize;
        out.push((pos, FRAME_HEADER + len));
        pos += FRAME_HEADER + len;
    }
    assert_eq!(pos, data.len());
    out
}

/// Sum of the segment files' sizes.
pub fn disk_bytes(dir: &Path) -> u64 {
    segment_files(dir)
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum()
}

//! The durable spool (interface stub; the implementation lands from the spool branch).
#![allow(missing_docs, unused_variables)]

use crate::assembler::Tag;
use crate::message::{DeviceId, ImgMessage};
use std::path::PathBuf;

pub struct SpoolOptions {
    pub dir: PathBuf,
    pub segment_bytes: u64,
    pub max_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Img {
        received_ms: u64,
        msg: ImgMessage,
    },
    Seen {
        received_ms: u64,
        message_id: String,
    },
    Done {
        device: DeviceId,
        pid: u32,
        size: u32,
        crc: u32,
        at_ms: u64,
    },
}

#[derive(Debug)]
pub struct CorruptRecord {
    pub path: PathBuf,
    pub offset: u64,
    pub what: String,
}

pub struct Recovery {
    pub records: Vec<(Tag, Record)>,
    pub corrupt: Vec<CorruptRecord>,
    pub bytes: u64,
}

#[derive(Debug, Default)]
pub struct CommitStats {
    pub records: usize,
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("spool error at {path}: {source}")]
pub struct SpoolError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

impl SpoolError {
    pub fn is_disk_full(&self) -> bool {
        false
    }
}

pub struct Spool;

impl Spool {
    pub fn open(opts: SpoolOptions) -> Result<(Spool, Recovery), SpoolError> {
        unimplemented!()
    }
    pub fn append(&mut self, rec: &Record) -> Result<Tag, SpoolError> {
        unimplemented!()
    }
    pub fn commit(&mut self) -> Result<CommitStats, SpoolError> {
        unimplemented!()
    }
    pub fn abort(&mut self) {}
    pub fn release<I: IntoIterator<Item = Tag>>(&mut self, tags: I) {}
    pub fn bytes(&self) -> u64 {
        0
    }
    pub fn is_full(&self) -> bool {
        false
    }
    pub fn segments(&self) -> usize {
        0
    }
}

//! Finished images and quarantine on disk (interface stub; implementation from the config branch).
#![allow(missing_docs, unused_variables)]

use crate::assembler::{Finished, Quarantined};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("sink error at {path}: {source}")]
pub struct SinkError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

impl SinkError {
    pub fn is_disk_full(&self) -> bool {
        false
    }
    pub fn is_retryable(&self) -> bool {
        true
    }
}

#[derive(Debug)]
pub struct Written {
    pub path: PathBuf,
    pub bytes: u64,
    pub already_present: bool,
}

pub struct Sink;

impl Sink {
    pub fn new(output_dir: &Path, state_dir: &Path) -> Result<Sink, SinkError> {
        unimplemented!()
    }
    pub fn write_image(&self, img: &Finished) -> Result<Written, SinkError> {
        unimplemented!()
    }
    pub fn quarantine(&self, q: &Quarantined) -> Result<PathBuf, SinkError> {
        unimplemented!()
    }
}

//! Finished images and quarantine on disk (skeleton).

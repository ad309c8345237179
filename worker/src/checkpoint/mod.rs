//! Checkpoints and savepoints (DESIGN.md §4): where their files live and how every file
//! proves it is whole.
//!
//! - [`storage`]: one API over `file://`, `s3://` and `memory://` (the `object_store`
//!   crate), with the layout `<root>/<job>/chk-<n>/…` and `_metadata` written last.
//! - [`sealed`]: the container every file is written in, with a magic header and a
//!   checksum, so a truncated or altered file is found before it is read.
//! - [`metadata`]: what `_metadata` says of a checkpoint.
//! - [`coordinator`]: triggers checkpoints, collects what every subtask snapshotted at
//!   the barrier, and writes it out.
//! - [`uploader`]: writes what the subtasks of a process snapshotted, off their threads.
//! - [`restore`]: reads a checkpoint back, by the key groups a subtask owns.

pub(crate) mod coordinator;
pub mod metadata;
pub mod restore;
pub(crate) mod sealed;
pub mod storage;
#[cfg(test)]
mod tests;
pub(crate) mod uploader;

pub use coordinator::{CheckpointConfig, CheckpointRetention, CheckpointingMode};

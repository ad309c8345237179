//! Checkpoints and savepoints (DESIGN.md §4): where their files live and how every file
//! proves it is whole.
//!
//! - [`storage`]: one API over `file://`, `s3://` and `memory://` (the `object_store`
//!   crate), with the layout `<root>/<job>/chk-<n>/…` and `_metadata` written last.
//! - [`sealed`]: the container every file is written in, with a magic header and a
//!   checksum, so a truncated or altered file is found before it is read.

pub(crate) mod sealed;
pub mod storage;

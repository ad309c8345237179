//! What crosses process boundaries: records and control elements on the data plane
//! (`proto/strom/v1/data.proto`), and the channels that carry them between workers.
//!
//! The distributed runtime (master, worker roles) is built on this in steps; until the
//! worker role opens these channels, only the tests here use them.
#![cfg_attr(not(test), allow(dead_code))]

pub(crate) mod codec;
pub(crate) mod exchange;
pub(crate) mod frame;

#[cfg(test)]
mod split_tests;

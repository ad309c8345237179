//! What crosses process boundaries: records and control elements on the data plane
//! (`proto/strom/v1/data.proto`), and the channels that carry them between workers.

pub(crate) mod codec;
pub(crate) mod exchange;
pub(crate) mod frame;

#[cfg(test)]
mod split_tests;

//! The in-process runtime: channels, task loops, partitioned writers, watermark valves,
//! metrics, and the executor that runs a planned job on threads.

pub(crate) mod alignment;
pub(crate) mod barrier;
pub(crate) mod consumer;
pub(crate) mod context;
pub(crate) mod envelope;
pub mod executor;
pub(crate) mod input;
pub mod metrics;
pub(crate) mod output;
pub(crate) mod task;
pub(crate) mod valve;
pub(crate) mod writer;

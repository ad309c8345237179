//! What travels through a channel between two tasks.
//!
//! Records travel as type-erased batches: the channel and the task loop are not generic,
//! and the one downcast per batch at the receiving operator is the only cost of erasure
//! (DESIGN.md §4: "type erasure only at task boundaries, per batch").

use crate::record::{Batch, Data, WatermarkStatus};
use std::any::Any;

/// One element of a channel.
pub(crate) enum Envelope {
    Records(Box<dyn ErasedBatch>),
    Watermark(i64),
    Status(WatermarkStatus),
    /// The simulated processing-time clock of the producer (only in
    /// `ProcessingTimeMode::Simulated`).
    ProcessingTime(i64),
    /// A checkpoint barrier: what came before belongs to its checkpoint.
    Barrier(crate::runtime::barrier::Barrier),
    /// The producer will send nothing more on this channel.
    EndOfInput,
}

/// A batch of records of some type.
pub(crate) trait ErasedBatch: Send {
    fn into_any(self: Box<Self>) -> Box<dyn Any>;
}

impl<T: Data> ErasedBatch for Batch<T> {
    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

/// Recovers the typed batch. A mismatch is a planner bug (edges connect equal types by
/// construction), so it is reported as an internal error, not a panic.
pub(crate) fn downcast_batch<T: Data>(batch: Box<dyn ErasedBatch>) -> Result<Batch<T>, String> {
    batch
        .into_any()
        .downcast::<Batch<T>>()
        .map(|b| *b)
        .map_err(|_| {
            format!(
                "internal error: a batch of another type arrived where {} was expected",
                std::any::type_name::<T>()
            )
        })
}

//! The values that flow through a job: records with optional event timestamps, and the
//! trait bounds every record and key type must meet.
//!
//! Records are plain Rust values. They need `serde` so that the distributed runtime can
//! move them between processes and the state backends can snapshot them; `Clone` because
//! broadcast and fan-out hand the same record to several consumers.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::hash::Hash;

/// "This record carries no event timestamp" (Flink's `Long.MIN_VALUE`).
pub const NO_TIMESTAMP: i64 = i64::MIN;

/// The watermark that ends event time: every event-time timer fires when it arrives.
/// Bounded sources emit it when they finish.
pub const MAX_WATERMARK: i64 = i64::MAX;

/// The watermark before any was seen.
pub const MIN_WATERMARK: i64 = i64::MIN;

/// What every record type must be: cloneable, sendable to another thread, serialisable.
///
/// Implemented automatically; derive `Clone, Serialize, Deserialize` on your types.
pub trait Data: Clone + Send + Serialize + DeserializeOwned + 'static {}
impl<T: Clone + Send + Serialize + DeserializeOwned + 'static> Data for T {}

/// What every key type must be: a [`Data`] value with a deterministic `Hash` and `Eq`.
///
/// The key decides the key group (`hash(key) % max_parallelism`), so `Hash` must give the
/// same result in every process that runs the job: derive it, don't hash pointers or
/// random state.
pub trait Key: Data + Hash + Eq {}
impl<T: Data + Hash + Eq> Key for T {}

/// A record and its event timestamp ([`NO_TIMESTAMP`] when it has none).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamRecord<T> {
    pub value: T,
    pub timestamp: i64,
}

impl<T> StreamRecord<T> {
    pub fn new(value: T, timestamp: i64) -> Self {
        StreamRecord { value, timestamp }
    }

    pub fn untimed(value: T) -> Self {
        StreamRecord {
            value,
            timestamp: NO_TIMESTAMP,
        }
    }

    /// The event timestamp, if the record has one.
    pub fn timestamp(&self) -> Option<i64> {
        (self.timestamp != NO_TIMESTAMP).then_some(self.timestamp)
    }
}

/// A batch of records: the unit in which records move between operators and tasks.
pub type Batch<T> = Vec<StreamRecord<T>>;

/// Whether a stream currently promises watermarks (Flink's `WatermarkStatus`).
///
/// An idle input is left out of the minimum that forms an operator's watermark, so one
/// quiet partition does not hold back event time for everyone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatermarkStatus {
    Active,
    Idle,
}

/// Which clock a timer or window uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
pub enum TimeDomain {
    EventTime,
    ProcessingTime,
}

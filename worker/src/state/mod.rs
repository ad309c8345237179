//! State: keyed state (value, list, map, reducing, aggregating, with TTL) in a heap or a
//! RocksDB backend, organised by key group; timers; operator list and union list state;
//! broadcast state.

pub(crate) mod backend;
pub mod broadcast;
pub mod descriptors;
pub(crate) mod handles;
pub(crate) mod heap;
pub mod operator;
pub mod rocks;
pub(crate) mod snapshot;
pub(crate) mod timers;
pub mod ttl;

pub use broadcast::{BroadcastState, ReadOnlyBroadcastState};
pub use descriptors::{
    AggregatingStateDescriptor, ListStateDescriptor, MapStateDescriptor, ReducingStateDescriptor,
    ValueStateDescriptor,
};
pub use handles::{AggregatingState, ListState, MapState, ReducingState, ValueState};
pub use operator::{
    OperatorListState, OperatorStateDescriptor, OperatorStateStore, Redistribution, redistribute,
};
pub use rocks::RocksDbConfig;
pub use ttl::{StateTtlConfig, TtlUpdateType, TtlVisibility};

/// Where keyed state lives (Flink's `state.backend.type`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum StateBackend {
    /// In memory: fastest, bounded by the heap.
    #[default]
    Heap,
    /// In RocksDB on local disk: as large as the disk, within a memory budget.
    RocksDb(RocksDbConfig),
}

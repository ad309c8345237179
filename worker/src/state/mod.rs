//! State: keyed state (value, list, map, reducing, aggregating, with TTL) in a heap
//! backend organised by key group; timers; operator list and union list state; broadcast
//! state.

pub(crate) mod backend;
pub mod broadcast;
pub mod descriptors;
pub(crate) mod handles;
pub(crate) mod heap;
pub mod operator;
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
pub use ttl::{StateTtlConfig, TtlUpdateType, TtlVisibility};

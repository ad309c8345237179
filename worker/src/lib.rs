//! Strom: a Flink-class stream processor.
//!
//! Jobs are typed dataflows: sources, transformations (map, filter, key_by, windows,
//! process functions, joins) and sinks, with event time, keyed state and timers. This
//! crate is the engine and the `strom` binary; see `README.md` for how to write a job.
//!
//! ```
//! use strom::prelude::*;
//! let env = StreamEnv::new();
//! let doubled = env.from_collection(vec![1, 2, 3]).map(|x: i32| x * 2).collect();
//! env.execute("doubling").unwrap();
//! assert_eq!(doubled.values(), vec![2, 4, 6]);
//! ```

pub mod api;
pub mod checkpoint;
pub mod cli;
pub mod cluster;
pub mod config;
pub(crate) mod config_file;
pub mod connectors;
pub mod error;
pub mod functions;
pub(crate) mod graph;
pub mod hash;
pub mod jobs;
pub mod keygroup;
pub(crate) mod net;
pub mod operators;
pub mod record;
pub mod runtime;
pub mod sink;
pub mod source;
pub mod state;
pub mod time;
pub mod windows;

pub use cli::main;
pub use jobs::{ArgSpec, JobArgs, JobRegistry, JobSpec};
/// The allocator Strom's binaries use (and a job's own binary should): records are
/// allocated by one task thread and dropped by another, which mimalloc's thread-local free
/// lists handle several times faster than glibc's malloc. Install it with
/// `#[global_allocator] static ALLOCATOR: strom::MiMalloc = strom::MiMalloc;`.
pub use mimalloc::MiMalloc;

/// Everything a job needs, in one import.
pub mod prelude {
    pub use crate::api::{
        AllWindowedStream, BroadcastConnectedStream, BroadcastStream, ConnectedKeyedStreams,
        ConnectedStreams, DataStream, KeyedBroadcastConnectedStream, KeyedStream, SinkHandle,
        StreamEnv, WindowedStream,
    };
    pub use crate::config::{ExecutionConfig, ProcessingTimeMode, RuntimeMode};
    pub use crate::connectors::{
        ChannelSource, CollectHandle, CollectionSource, Feed, FileSink, FileSource,
        GeneratorSource, SocketTextSource,
    };
    pub use crate::error::{JobError, TaskError};
    pub use crate::functions::{
        AggregateFn, AggregateFunction, BroadcastContext, BroadcastProcessFunction,
        CoProcessFunction, Collector, Context, KeyedBroadcastContext,
        KeyedBroadcastProcessFunction, KeyedCoProcessFunction, KeyedContext, KeyedProcessFunction,
        ProcessFunction, RichFilterFunction, RichFlatMapFunction, RichMapFunction,
    };
    pub use crate::operators::interval_join::{JoinContext, ProcessJoinFunction};
    pub use crate::record::{Data, Key, MAX_WATERMARK, NO_TIMESTAMP, StreamRecord, TimeDomain};
    pub use crate::runtime::context::RuntimeContext;
    pub use crate::runtime::executor::{JobHandle, JobResult};
    pub use crate::runtime::output::OutputTag;
    pub use crate::sink::{
        Sink, SinkContext, SinkWriter, TransactionalWriter, TwoPhaseCommit, TwoPhaseCommitSink,
    };
    pub use crate::source::{
        BoxError, DeadLetter, Source, SourceContext, SourceOutput, SourcePoll, SourceReader,
        dead_letter_tag,
    };
    pub use crate::state::{
        AggregatingStateDescriptor, ListStateDescriptor, MapStateDescriptor,
        OperatorStateDescriptor, ReducingStateDescriptor, StateTtlConfig, ValueStateDescriptor,
    };
    pub use crate::time::{WatermarkGenerator, WatermarkOutput, WatermarkStrategy};
    pub use crate::windows::{
        ContinuousEventTimeTrigger, ContinuousProcessingTimeTrigger, CountEvictor, CountTrigger,
        DeltaEvictor, EventTimeSessionWindows, EventTimeTrigger, Evictor, GlobalWindow,
        GlobalWindows, NeverTrigger, ProcessAllWindowFunction, ProcessWindowFunction,
        ProcessingTimeSessionWindows, ProcessingTimeTrigger, PurgingTrigger,
        SlidingEventTimeWindows, SlidingProcessingTimeWindows, TimeEvictor, TimeWindow, Trigger,
        TriggerContext, TriggerResult, TumblingEventTimeWindows, TumblingProcessingTimeWindows,
        Window, WindowAssigner, WindowContext,
    };
}

/// The code in README.md compiles and runs.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

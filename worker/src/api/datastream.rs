//! `DataStream<T>`: a stream of records of type `T` and the transformations on it.

use crate::api::connected::{BroadcastConnectedStream, BroadcastStream, ConnectedStreams};
use crate::api::env::{FnFactory, StreamEnv};
use crate::api::keyed::KeyedStream;
use crate::connectors::collect::{CollectHandle, CollectSink};
use crate::connectors::print::{DebugFormat, DisplayFormat, PrintSink, PrintTarget};
use crate::error::TaskResult;
use crate::functions::{ProcessFunction, RichFilterFunction, RichFlatMapFunction, RichMapFunction};
use crate::graph::{
    BuildContext, Built, Chaining, Edge, ErasedOutputs, NodeId, NodeKind, TypedEdge,
};
use crate::hash::stable_hash;
use crate::operators::OpBase;
use crate::operators::basic::{FilterFn, FilterOp, FlatMapFn, FlatMapOp, MapFn, MapOp, ProcessOp};
use crate::operators::keyed_process::operator_state;
use crate::operators::sink::{SinkOp, WRITER_STATE};
use crate::operators::timestamps::TimestampsOp;
use crate::record::{Data, Key};
use crate::runtime::output::OutputTag;
use crate::runtime::writer::Partitioning;
use crate::sink::{FnSink, Sink, SinkContext};
use crate::time::emitter::WatermarkEmitter;
use crate::time::watermark::WatermarkStrategy;
use std::fmt::{Debug, Display};
use std::marker::PhantomData;
use std::sync::Arc;

/// Where a stream's records come from: an operator's main or side output, and how they
/// are partitioned on the way to the next operator.
pub(crate) struct Origin<T> {
    pub node: NodeId,
    pub side: Option<Arc<str>>,
    pub partitioning: Partitioning,
    pub explicit: bool,
    pub ops: Arc<TypedEdge<T>>,
}

impl<T> Clone for Origin<T> {
    fn clone(&self) -> Self {
        Origin {
            node: self.node,
            side: self.side.clone(),
            partitioning: self.partitioning,
            explicit: self.explicit,
            ops: self.ops.clone(),
        }
    }
}

/// A stream of `T` (Flink's `DataStream`). Cheap to clone; every method adds to the job.
pub struct DataStream<T> {
    pub(crate) env: StreamEnv,
    pub(crate) origins: Vec<Origin<T>>,
}

impl<T> Clone for DataStream<T> {
    fn clone(&self) -> Self {
        DataStream {
            env: self.env.clone(),
            origins: self.origins.clone(),
        }
    }
}

/// The base every operator instance needs, from its build context.
pub(crate) fn op_base<O: Data>(
    ctx: &BuildContext<'_>,
    outputs: ErasedOutputs,
) -> TaskResult<OpBase<O>> {
    Ok(OpBase::new(
        ctx.info.clone(),
        ctx.services.clone(),
        outputs.into_output::<O>(&ctx.info)?,
    ))
}

impl<T: Data> DataStream<T> {
    pub(crate) fn from_node(env: StreamEnv, node: NodeId) -> Self {
        DataStream {
            env,
            origins: vec![Origin {
                node,
                side: None,
                partitioning: Partitioning::Forward,
                explicit: false,
                ops: TypedEdge::plain(),
            }],
        }
    }

    /// The environment this stream belongs to.
    pub fn env(&self) -> &StreamEnv {
        &self.env
    }

    /// Connects this stream to input `input` of `target`.
    pub(crate) fn connect_to(&self, target: NodeId, input: u8) {
        for o in &self.origins {
            self.env.add_edge(Edge {
                source: o.node,
                target,
                side: o.side.clone(),
                partitioning: o.partitioning,
                explicit: o.explicit,
                input,
                ops: o.ops.clone(),
            });
        }
    }

    /// Adds a one-input operator reading this stream.
    pub(crate) fn one_input<O: Data>(
        &self,
        name: &str,
        keyed: bool,
        build: impl Fn(&BuildContext<'_>, ErasedOutputs) -> TaskResult<Built> + Send + Sync + 'static,
    ) -> DataStream<O> {
        let id = self.env.add_node(
            name.to_string(),
            NodeKind::OneInput(Arc::new(FnFactory(build))),
            keyed,
        );
        self.connect_to(id, 0);
        DataStream::from_node(self.env.clone(), id)
    }

    pub(crate) fn partitioned(
        &self,
        partitioning: Partitioning,
        ops: Option<Arc<TypedEdge<T>>>,
    ) -> Self {
        DataStream {
            env: self.env.clone(),
            origins: self
                .origins
                .iter()
                .map(|o| Origin {
                    partitioning,
                    explicit: true,
                    ops: ops.clone().unwrap_or_else(|| o.ops.clone()),
                    ..o.clone()
                })
                .collect(),
        }
    }

    /// The producing operator, for settings that only make sense on one.
    fn single_node(&self, what: &str) -> Option<NodeId> {
        match self.origins.as_slice() {
            [o] if o.side.is_none() => Some(o.node),
            _ => {
                self.env.defer_error(format!(
                    "{what}() was called on a union or side-output stream; call it on the operator that produces the stream"
                ));
                None
            }
        }
    }

    // ---- Transformations ----

    /// Applies `f` to every record.
    pub fn map<O: Data, F>(&self, f: F) -> DataStream<O>
    where
        F: FnMut(T) -> O + Clone + Send + Sync + 'static,
    {
        self.map_rich(MapFn(f))
    }

    /// Like `map`, with a function that has `open`/`close`.
    pub fn map_rich<O: Data, F: RichMapFunction<T, O>>(&self, f: F) -> DataStream<O> {
        self.one_input::<O>("Map", false, move |ctx, outputs| {
            let base = op_base::<O>(ctx, outputs)?;
            let mut f = f.clone();
            base.open_with(|rc| f.open(rc))?;
            Ok(Built::one_input::<T>(
                Box::new(MapOp {
                    base,
                    f,
                    _in: PhantomData,
                }),
                ctx.info.name.clone(),
            ))
        })
    }

    /// Keeps the records for which `f` is true.
    pub fn filter<F>(&self, f: F) -> DataStream<T>
    where
        F: FnMut(&T) -> bool + Clone + Send + Sync + 'static,
    {
        self.filter_rich(FilterFn(f))
    }

    /// Like `filter`, with a function that has `open`/`close`.
    pub fn filter_rich<F: RichFilterFunction<T>>(&self, f: F) -> DataStream<T> {
        self.one_input::<T>("Filter", false, move |ctx, outputs| {
            let base = op_base::<T>(ctx, outputs)?;
            let mut f = f.clone();
            base.open_with(|rc| f.open(rc))?;
            Ok(Built::one_input::<T>(
                Box::new(FilterOp { base, f }),
                ctx.info.name.clone(),
            ))
        })
    }

    /// Replaces every record by the records `f` returns (any `IntoIterator`).
    pub fn flat_map<O: Data, It, F>(&self, f: F) -> DataStream<O>
    where
        F: FnMut(T) -> It + Clone + Send + Sync + 'static,
        It: IntoIterator<Item = O>,
    {
        self.flat_map_rich(FlatMapFn(f))
    }

    /// Like `flat_map`, with a function that emits through a collector and has `open`/`close`.
    pub fn flat_map_rich<O: Data, F: RichFlatMapFunction<T, O>>(&self, f: F) -> DataStream<O> {
        self.one_input::<O>("Flat Map", false, move |ctx, outputs| {
            let base = op_base::<O>(ctx, outputs)?;
            let mut f = f.clone();
            base.open_with(|rc| f.open(rc))?;
            Ok(Built::one_input::<T>(
                Box::new(FlatMapOp {
                    base,
                    f,
                    _in: PhantomData,
                }),
                ctx.info.name.clone(),
            ))
        })
    }

    /// Applies a [`ProcessFunction`] (side outputs, timestamps, operator state).
    pub fn process<O: Data, F: ProcessFunction<T, O>>(&self, f: F) -> DataStream<O> {
        self.one_input::<O>("Process", false, move |ctx, outputs| {
            let base = op_base::<O>(ctx, outputs)?;
            let mut f = f.clone();
            base.open_with(|rc| f.open(rc))?;
            Ok(Built::one_input::<T>(
                Box::new(ProcessOp {
                    base,
                    f,
                    operator_state: operator_state(ctx)?,
                    _in: PhantomData,
                }),
                ctx.info.name.clone(),
            ))
        })
    }

    /// Partitions by key: records with equal keys go to the same subtask (through key
    /// groups), and keyed state and timers become available.
    pub fn key_by<K: Key, F>(&self, key: F) -> KeyedStream<K, T>
    where
        F: Fn(&T) -> K + Clone + Send + Sync + 'static,
    {
        // The partitioner gets its own copy of the concrete function, so that hashing a
        // record's key is one indirect call, not two.
        let hash_key = key.clone();
        let key: Arc<dyn Fn(&T) -> K + Send + Sync> = Arc::new(key);
        let ops = Arc::new(TypedEdge {
            key_hash: Some(Arc::new(move |v: &T| stable_hash(&hash_key(v)))),
            custom: None,
        });
        KeyedStream {
            stream: self.partitioned(Partitioning::Hash, Some(ops)),
            key,
        }
    }

    /// This stream and `other` as one stream (no operator; the next one reads both).
    pub fn union(&self, other: &DataStream<T>) -> DataStream<T> {
        let mut origins = self.origins.clone();
        origins.extend(other.origins.iter().cloned());
        DataStream {
            env: self.env.clone(),
            origins,
        }
    }

    /// Connects with a stream of another type, for a two-input function.
    pub fn connect<B: Data>(&self, other: &DataStream<B>) -> ConnectedStreams<T, B> {
        ConnectedStreams {
            first: self.clone(),
            second: other.clone(),
        }
    }

    /// Connects with a broadcast stream (the broadcast state pattern).
    pub fn connect_broadcast<B: Data>(
        &self,
        other: &BroadcastStream<B>,
    ) -> BroadcastConnectedStream<T, B> {
        BroadcastConnectedStream {
            data: self.clone(),
            broadcast: other.clone(),
        }
    }

    /// This stream as a broadcast stream: every record goes to every instance of the
    /// operator it is connected to, which keeps it in broadcast state.
    pub fn broadcast_stream(&self) -> BroadcastStream<T> {
        BroadcastStream {
            stream: self.broadcast(),
        }
    }

    // ---- Partitioning ----

    /// To the subtask with the same index (requires equal parallelism).
    pub fn forward(&self) -> DataStream<T> {
        self.partitioned(Partitioning::Forward, None)
    }
    /// Round-robin over all subtasks of the next operator.
    pub fn rebalance(&self) -> DataStream<T> {
        self.partitioned(Partitioning::Rebalance, None)
    }
    /// Round-robin over a local subset of the next operator's subtasks.
    pub fn rescale(&self) -> DataStream<T> {
        self.partitioned(Partitioning::Rescale, None)
    }
    /// Uniformly at random.
    pub fn shuffle(&self) -> DataStream<T> {
        self.partitioned(Partitioning::Shuffle, None)
    }
    /// Every record to every subtask of the next operator.
    pub fn broadcast(&self) -> DataStream<T> {
        self.partitioned(Partitioning::Broadcast, None)
    }
    /// Everything to the first subtask of the next operator.
    pub fn global(&self) -> DataStream<T> {
        self.partitioned(Partitioning::Global, None)
    }
    /// By `partitioner(key, number_of_partitions)`, with the key from `key`.
    pub fn partition_custom<K: 'static, P, F>(&self, partitioner: P, key: F) -> DataStream<T>
    where
        P: Fn(&K, usize) -> usize + Send + Sync + 'static,
        F: Fn(&T) -> K + Send + Sync + 'static,
    {
        let ops = Arc::new(TypedEdge {
            key_hash: None,
            custom: Some(Arc::new(move |v: &T, n| partitioner(&key(v), n))),
        });
        self.partitioned(Partitioning::Custom, Some(ops))
    }

    // ---- Time ----

    /// Replaces timestamps and watermarks by those of `strategy`.
    pub fn assign_timestamps_and_watermarks(
        &self,
        strategy: WatermarkStrategy<T>,
    ) -> DataStream<T> {
        let mode = self.env.runtime_mode();
        self.one_input::<T>("Timestamps/Watermarks", false, move |ctx, outputs| {
            let base = op_base::<T>(ctx, outputs)?;
            let interval_ms = ctx.config.auto_watermark_interval.as_millis().max(1) as i64;
            // Ask for periodic emission from the start (Flink's operator does so in open()):
            // a quiet input must still be able to report idleness or advance its watermark.
            let now = ctx.services.clock.now();
            ctx.services.wakeup.request(now.saturating_add(interval_ms));
            Ok(Built::one_input::<T>(
                Box::new(TimestampsOp {
                    base,
                    emitter: WatermarkEmitter::new(&strategy, mode),
                    interval_ms,
                }),
                ctx.info.name.clone(),
            ))
        })
    }

    // ---- Side outputs ----

    /// The records the producing operator sent to `tag`.
    pub fn side_output<X: Data>(&self, tag: &OutputTag<X>) -> DataStream<X> {
        let name = tag.name_arc();
        self.env.register_side_type::<X>(&name);
        DataStream {
            env: self.env.clone(),
            origins: self
                .origins
                .iter()
                .map(|o| Origin {
                    node: o.node,
                    side: Some(name.clone()),
                    partitioning: Partitioning::Forward,
                    explicit: false,
                    ops: TypedEdge::plain(),
                })
                .collect(),
        }
    }

    // ---- Settings of the producing operator ----

    /// Names the operator (shown in the summary, metrics and errors).
    pub fn name(self, name: &str) -> Self {
        if let Some(id) = self.single_node("name") {
            let prefixed = self.env.inner.borrow().graph.nodes[id]
                .name
                .starts_with("Source: ");
            let name = if prefixed {
                format!("Source: {name}")
            } else {
                name.to_string()
            };
            self.env.with_node(id, |n| n.name = name);
        }
        self
    }

    /// A stable id for the operator; state is matched to operators by uid on restore.
    pub fn uid(self, uid: &str) -> Self {
        if let Some(id) = self.single_node("uid") {
            self.env.with_node(id, |n| n.uid = Some(uid.to_string()));
        }
        self
    }

    /// Parallel instances of the operator.
    pub fn set_parallelism(self, parallelism: usize) -> Self {
        if let Some(id) = self.single_node("set_parallelism") {
            self.env
                .with_node(id, |n| n.parallelism = Some(parallelism));
        }
        self
    }

    /// Key groups of the operator (defaults to the job's max parallelism).
    pub fn set_max_parallelism(self, max_parallelism: usize) -> Self {
        if let Some(id) = self.single_node("set_max_parallelism") {
            self.env
                .with_node(id, |n| n.max_parallelism = Some(max_parallelism));
        }
        self
    }

    /// Runs the operator in its own task.
    pub fn disable_chaining(self) -> Self {
        if let Some(id) = self.single_node("disable_chaining") {
            self.env.with_node(id, |n| n.chaining = Chaining::Never);
        }
        self
    }

    /// Starts a new chain at this operator (successors may still chain to it).
    pub fn start_new_chain(self) -> Self {
        if let Some(id) = self.single_node("start_new_chain") {
            self.env.with_node(id, |n| n.chaining = Chaining::Head);
        }
        self
    }

    // ---- Sinks ----

    /// Writes the stream to `sink`.
    pub fn sink_to<S: Sink<T>>(&self, sink: S) -> SinkHandle {
        self.sink_named(sink, "Sink")
    }

    pub(crate) fn sink_named<S: Sink<T>>(&self, sink: S, name: &str) -> SinkHandle {
        let fixed = sink.fixed_parallelism();
        let sink = Arc::new(sink);
        let s = self.one_input::<T>(name, false, move |ctx, outputs| {
            let base = op_base::<T>(ctx, outputs)?;
            let restored = ctx.config.restore.as_deref();
            let restored_states = match restored {
                Some(r) => r
                    .operator_lists(&ctx.info.uid, ctx.info.subtask, ctx.info.parallelism)
                    .map_err(|e| ctx.info.error(format!("restoring the sink's state: {e}")))?
                    .into_iter()
                    .filter(|l| l.name == WRITER_STATE)
                    .flat_map(|l| l.elements)
                    .collect(),
                None => Vec::new(),
            };
            let sctx = SinkContext {
                operator_name: ctx.info.name.to_string(),
                subtask_index: ctx.info.subtask,
                parallelism: ctx.info.parallelism,
                restored_checkpoint: restored.map(|r| r.metadata.id),
                restored_from: restored.map(|r| r.location().to_string()),
                restored_states,
            };
            let info = ctx.info.clone();
            let writer = crate::runtime::context::guard!(
                info,
                crate::error::Position::Lifecycle("opening the sink"),
                {
                    sink.create_writer(&sctx)
                        .map_err(|e| info.error(format!("could not open the sink: {e}")))
                }
            )?;
            Ok(Built::one_input::<T>(
                Box::new(SinkOp { base, writer }),
                ctx.info.name.clone(),
            ))
        });
        let node = s.origins[0].node;
        if fixed.is_some() {
            self.env.with_node(node, |n| n.fixed_parallelism = fixed);
        }
        SinkHandle {
            env: self.env.clone(),
            node,
        }
    }

    /// Calls `f` with every record (Flink's `SinkFunction`).
    pub fn add_sink<F: FnMut(T) + Clone + Send + Sync + 'static>(&self, f: F) -> SinkHandle {
        self.sink_named(FnSink(f), "Sink")
    }

    /// Prints every record (`Display`) to standard output.
    pub fn print(&self) -> SinkHandle
    where
        T: Display,
    {
        self.sink_named(
            PrintSink::new(DisplayFormat, None, PrintTarget::Stdout),
            "Print to Std. Out",
        )
    }

    /// Prints every record with a prefix (`prefix> record`).
    pub fn print_with_prefix(&self, prefix: &str) -> SinkHandle
    where
        T: Display,
    {
        self.sink_named(
            PrintSink::new(DisplayFormat, Some(prefix.to_string()), PrintTarget::Stdout),
            "Print to Std. Out",
        )
    }

    /// Prints every record (`Debug`) to standard output.
    pub fn print_debug(&self) -> SinkHandle
    where
        T: Debug,
    {
        self.sink_named(
            PrintSink::new(DebugFormat, None, PrintTarget::Stdout),
            "Print to Std. Out",
        )
    }

    /// Prints every record (`Display`) to standard error.
    pub fn print_to_err(&self) -> SinkHandle
    where
        T: Display,
    {
        self.sink_named(
            PrintSink::new(DisplayFormat, None, PrintTarget::Stderr),
            "Print to Std. Err",
        )
    }

    /// Writes every record (`Display`) as a line to `part-*` files under `dir`.
    pub fn write_as_text(&self, dir: impl Into<std::path::PathBuf>) -> SinkHandle
    where
        T: Display,
    {
        self.sink_named(crate::connectors::FileSink::text(dir), "File Sink")
    }

    /// Writes every record as a JSON line to `part-*` files under `dir`.
    pub fn write_as_json_lines(&self, dir: impl Into<std::path::PathBuf>) -> SinkHandle {
        self.sink_named(crate::connectors::FileSink::json_lines(dir), "File Sink")
    }

    /// Keeps every record in memory; read them from the handle during or after the run.
    pub fn collect(&self) -> CollectHandle<T> {
        let handle = CollectHandle::new();
        self.sink_named(
            CollectSink {
                handle: handle.clone(),
            },
            "Collect",
        );
        handle
    }
}

/// The sink operator a stream was written to, for its settings.
pub struct SinkHandle {
    env: StreamEnv,
    node: NodeId,
}

impl SinkHandle {
    pub fn name(self, name: &str) -> Self {
        self.env.with_node(self.node, |n| n.name = name.to_string());
        self
    }
    pub fn uid(self, uid: &str) -> Self {
        self.env
            .with_node(self.node, |n| n.uid = Some(uid.to_string()));
        self
    }
    pub fn set_parallelism(self, parallelism: usize) -> Self {
        self.env
            .with_node(self.node, |n| n.parallelism = Some(parallelism));
        self
    }
    pub fn disable_chaining(self) -> Self {
        self.env
            .with_node(self.node, |n| n.chaining = Chaining::Never);
        self
    }
}

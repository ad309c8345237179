//! The logical job graph the typed API builds: operators (nodes) connected by edges that
//! say how records are partitioned. Types are erased here; each node and edge carries
//! factories, written where the types were known, that build the typed runtime pieces.

pub(crate) mod build;
pub(crate) mod plan;

use crate::config::ExecutionConfig;
use crate::error::TaskResult;
use crate::net::codec::{CodecError, RecordCodec};
use crate::record::Data;
use crate::runtime::consumer::{Consumer, combine};
use crate::runtime::context::{OperatorInfo, TaskServices};
use crate::runtime::envelope::ErasedBatch;
use crate::runtime::output::{ErasedSideOutput, Output, SideOutput, SideOutputs};
use crate::runtime::task::{OneInputHead, SourceDriver, TaskHead};
use crate::runtime::writer::{
    CustomPartitionFn, KeyHashFn, NetworkWriter, OutChannel, Partitioning, Router,
};
use std::any::{Any, TypeId};
use std::sync::Arc;

pub(crate) type NodeId = usize;

/// Whether an operator may share a task with its neighbours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Chaining {
    /// Chain with predecessor and successors where possible (default).
    Always,
    /// Start a new chain here, but successors may chain to this one.
    Head,
    /// Never chain.
    Never,
}

pub(crate) struct Node {
    pub id: NodeId,
    pub name: String,
    pub uid: Option<String>,
    /// Set by the user (`set_parallelism`).
    pub parallelism: Option<usize>,
    /// Imposed by the operator (non-parallel sources, `window_all`, ...).
    pub fixed_parallelism: Option<usize>,
    pub max_parallelism: Option<usize>,
    pub chaining: Chaining,
    /// Whether the operator has keyed state (parallelism limited by key groups).
    pub keyed: bool,
    pub kind: NodeKind,
}

pub(crate) enum NodeKind {
    Source(Arc<dyn SourceFactory>),
    OneInput(Arc<dyn OperatorFactory>),
    TwoInput(Arc<dyn OperatorFactory>),
}

impl NodeKind {
    pub(crate) fn inputs(&self) -> usize {
        match self {
            NodeKind::Source(_) => 0,
            NodeKind::OneInput(_) => 1,
            NodeKind::TwoInput(_) => 2,
        }
    }
}

pub(crate) struct Edge {
    pub source: NodeId,
    pub target: NodeId,
    /// The side output this edge reads; `None` for the main output.
    pub side: Option<Arc<str>>,
    pub partitioning: Partitioning,
    /// Whether the user asked for this partitioning (an implicit forward becomes a
    /// rebalance when parallelisms differ, as in Flink).
    pub explicit: bool,
    /// Input index at the target: 0, or 1 for the second input of a two-input operator.
    pub input: u8,
    pub ops: Arc<dyn EdgeOps>,
}

/// The graph a `StreamEnv` builds.
pub(crate) struct StreamGraph {
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
    /// Side-output tag names and the type their records have.
    pub side_types: Vec<(Arc<str>, TypeId, &'static str)>,
}

impl StreamGraph {
    pub(crate) fn new() -> Self {
        StreamGraph {
            nodes: Vec::new(),
            edges: Vec::new(),
            side_types: Vec::new(),
        }
    }
}

/// What a factory needs to build one operator instance.
pub(crate) struct BuildContext<'a> {
    pub info: OperatorInfo,
    pub services: &'a TaskServices,
    pub config: &'a ExecutionConfig,
    /// Key-group range of this subtask (for keyed operators).
    pub key_groups: crate::keygroup::KeyGroupRange,
}

/// The outputs of a node, built before the node (successors first).
pub(crate) struct ErasedOutputs {
    /// Each holds a `Box<dyn Consumer<O>>` for the node's output type `O`.
    pub main: Vec<Box<dyn Any>>,
    pub sides: Vec<Box<dyn ErasedSideOutput>>,
}

impl ErasedOutputs {
    /// The typed output of an operator whose main output is `O`.
    pub(crate) fn into_output<O: Data>(self, info: &OperatorInfo) -> TaskResult<Output<O>> {
        let mut targets: Vec<Box<dyn Consumer<O>>> = Vec::with_capacity(self.main.len());
        for any in self.main {
            let c = any.downcast::<Box<dyn Consumer<O>>>().map_err(|_| {
                info.error(format!(
                    "internal error: successor does not consume {}",
                    std::any::type_name::<O>()
                ))
            })?;
            targets.push(*c);
        }
        let sides = SideOutputs::new(self.sides, info.metrics.clone());
        Ok(Output::new(combine(targets), sides, info.metrics.clone()))
    }
}

/// An operator instance, ready to be chained or to head a task.
pub(crate) enum Built {
    OneInput(Box<dyn ErasedOneInput>),
    TwoInput(Box<dyn TaskHead>),
    Source(Box<dyn SourceDriver>),
}

impl Built {
    pub(crate) fn one_input<I: Data>(consumer: Box<dyn Consumer<I>>, name: Arc<str>) -> Built {
        Built::OneInput(Box::new(OneInputBuilt { consumer, name }))
    }
}

/// A one-input operator without its input type.
pub(crate) trait ErasedOneInput {
    /// As a `Box<dyn Consumer<I>>` in a `Box<dyn Any>`, for its chained predecessor.
    fn into_consumer(self: Box<Self>) -> Box<dyn Any>;
    fn into_head(self: Box<Self>) -> Box<dyn TaskHead>;
}

struct OneInputBuilt<I> {
    consumer: Box<dyn Consumer<I>>,
    name: Arc<str>,
}

impl<I: Data> ErasedOneInput for OneInputBuilt<I> {
    fn into_consumer(self: Box<Self>) -> Box<dyn Any> {
        Box::new(self.consumer)
    }
    fn into_head(self: Box<Self>) -> Box<dyn TaskHead> {
        Box::new(OneInputHead::new(self.consumer, self.name))
    }
}

/// Builds operator instances (one per subtask) of a one- or two-input node.
pub(crate) trait OperatorFactory: Send + Sync {
    fn build(&self, ctx: &BuildContext<'_>, outputs: ErasedOutputs) -> TaskResult<Built>;
}

/// Builds the reader and driver of a source node for one subtask.
pub(crate) trait SourceFactory: Send + Sync {
    fn build(&self, ctx: &BuildContext<'_>, outputs: ErasedOutputs) -> TaskResult<Built>;
}

/// Typed operations for the element type `X` that travels on an edge.
pub(crate) trait EdgeOps: Send + Sync {
    /// A `Box<dyn Consumer<X>>` (in a `Box<dyn Any>`) sending to other tasks.
    fn network_writer(
        &self,
        partitioning: Partitioning,
        senders: Vec<OutChannel>,
        ctx: &BuildContext<'_>,
    ) -> Box<dyn Any>;
    /// A side output named `name` feeding these consumers (each a `Box<dyn Consumer<X>>`).
    fn side_output(
        &self,
        name: Arc<str>,
        consumers: Vec<Box<dyn Any>>,
    ) -> TaskResult<Box<dyn ErasedSideOutput>>;
    /// Appends a batch of this edge's records to `out`, for a consumer in another process.
    fn encode_batch(
        &self,
        batch: Box<dyn ErasedBatch>,
        out: &mut Vec<u8>,
    ) -> Result<(), CodecError>;
    /// Reads a batch that [`EdgeOps::encode_batch`] wrote in another process.
    fn decode_batch(&self, bytes: &[u8]) -> Result<Box<dyn ErasedBatch>, CodecError>;
}

/// [`EdgeOps`] for records of type `X`.
pub(crate) struct TypedEdge<X> {
    pub key_hash: Option<KeyHashFn<X>>,
    pub custom: Option<CustomPartitionFn<X>>,
}

impl<X> TypedEdge<X> {
    pub(crate) fn plain() -> Arc<Self> {
        Arc::new(TypedEdge {
            key_hash: None,
            custom: None,
        })
    }
}

impl<X: Data> EdgeOps for TypedEdge<X> {
    fn network_writer(
        &self,
        partitioning: Partitioning,
        senders: Vec<OutChannel>,
        ctx: &BuildContext<'_>,
    ) -> Box<dyn Any> {
        let router = match partitioning {
            Partitioning::Forward => Router::Single,
            Partitioning::Global => Router::Global,
            Partitioning::Broadcast => Router::Broadcast,
            Partitioning::Rebalance | Partitioning::Rescale => {
                if senders.len() == 1 {
                    Router::Single
                } else {
                    // Flink starts round-robin at a random channel; starting after the
                    // subtask index spreads load the same way and stays reproducible.
                    Router::RoundRobin {
                        next: ctx.info.subtask % senders.len(),
                    }
                }
            }
            Partitioning::Shuffle => Router::Random {
                state: 0x9e37_79b9_7f4a_7c15
                    ^ (ctx.info.subtask as u64 + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9),
            },
            Partitioning::Hash => match &self.key_hash {
                Some(h) => Router::hash(h.clone(), ctx.info.max_parallelism, senders.len()),
                None => Router::Global,
            },
            Partitioning::Custom => match &self.custom {
                Some(f) => Router::Custom {
                    partition: f.clone(),
                },
                None => Router::Global,
            },
        };
        let writer: Box<dyn Consumer<X>> = Box::new(NetworkWriter::<X>::new(
            router,
            senders,
            ctx.config.batch_size,
            ctx.services.clock.is_simulated(),
            ctx.info.name.clone(),
            ctx.services.times.clone(),
        ));
        Box::new(writer)
    }

    fn side_output(
        &self,
        name: Arc<str>,
        consumers: Vec<Box<dyn Any>>,
    ) -> TaskResult<Box<dyn ErasedSideOutput>> {
        let mut targets: Vec<Box<dyn Consumer<X>>> = Vec::with_capacity(consumers.len());
        for any in consumers {
            match any.downcast::<Box<dyn Consumer<X>>>() {
                Ok(c) => targets.push(*c),
                Err(_) => {
                    return Err(crate::error::TaskError::Operator {
                        operator: name.to_string(),
                        subtask: 0,
                        parallelism: 0,
                        message: "internal error: side output consumer of another type".into(),
                    });
                }
            }
        }
        Ok(Box::new(SideOutput::<X>::new(name, combine(targets))))
    }

    fn encode_batch(
        &self,
        batch: Box<dyn ErasedBatch>,
        out: &mut Vec<u8>,
    ) -> Result<(), CodecError> {
        let batch =
            crate::runtime::envelope::downcast_batch::<X>(batch).map_err(CodecError::WrongType)?;
        RecordCodec::<X>::encode(&batch, out)
    }

    fn decode_batch(&self, bytes: &[u8]) -> Result<Box<dyn ErasedBatch>, CodecError> {
        Ok(Box::new(RecordCodec::<X>::decode(bytes)?))
    }
}

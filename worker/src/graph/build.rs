//! Instantiates the chain of one subtask: operators are built from the last to the first,
//! so each gets its already-built successors (chained operators or channel writers).

use crate::error::{TaskError, TaskResult};
use crate::graph::plan::Plan;
use crate::graph::{BuildContext, Built, EdgeOps, ErasedOutputs, NodeId, NodeKind, StreamGraph};
use crate::keygroup::KeyGroupRange;
use crate::runtime::context::{OperatorInfo, TaskServices};
use crate::runtime::metrics::JobMetrics;
use crate::runtime::writer::OutChannel;
use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

/// The consumers of one side output: tag, edge type, consumers.
type SideTargets = (Arc<str>, Arc<dyn EdgeOps>, Vec<Box<dyn Any>>);

pub(crate) struct ChainBuilder<'a> {
    pub graph: &'a StreamGraph,
    pub plan: &'a Plan,
    pub metrics: &'a JobMetrics,
    pub services: &'a TaskServices,
    pub subtask: usize,
    /// Senders of this subtask per outgoing edge index.
    pub senders: HashMap<usize, Vec<OutChannel>>,
}

impl ChainBuilder<'_> {
    fn context(&self, id: NodeId) -> BuildContext<'_> {
        let node = &self.graph.nodes[id];
        let p = self.plan.parallelism[id];
        let max_p = self.plan.max_parallelism[id];
        BuildContext {
            info: OperatorInfo {
                name: Arc::from(node.name.as_str()),
                uid: Arc::from(node.uid.clone().unwrap_or_default().as_str()),
                subtask: self.subtask,
                parallelism: p,
                max_parallelism: max_p,
                metrics: self.metrics.operators[id].subtasks[self.subtask].clone(),
            },
            services: self.services,
            config: &self.services.config,
            key_groups: KeyGroupRange::for_subtask(max_p, p, self.subtask),
        }
    }

    /// Builds node `id` and everything chained after it.
    pub(crate) fn build(&mut self, id: NodeId) -> TaskResult<Built> {
        let mut main: Vec<Box<dyn Any>> = Vec::new();
        let mut sides: Vec<SideTargets> = Vec::new();
        for (ei, e) in self.graph.edges.iter().enumerate() {
            if e.source != id {
                continue;
            }
            let consumer: Box<dyn Any> = if self.plan.chained[ei] {
                match self.build(e.target)? {
                    Built::OneInput(op) => op.into_consumer(),
                    _ => {
                        return Err(internal(
                            &self.graph.nodes[e.target].name,
                            "only one-input operators can be chained",
                        ));
                    }
                }
            } else {
                let senders = self.senders.remove(&ei).unwrap_or_default();
                let mut ctx = self.context(id);
                // Key groups are the target's.
                ctx.info.max_parallelism = self.plan.max_parallelism[e.target];
                e.ops
                    .network_writer(self.plan.partitioning[ei], senders, &ctx)
            };
            match &e.side {
                None => main.push(consumer),
                Some(tag) => match sides.iter_mut().find(|(t, _, _)| t == tag) {
                    Some((_, _, list)) => list.push(consumer),
                    None => sides.push((tag.clone(), e.ops.clone(), vec![consumer])),
                },
            }
        }
        let sides = sides
            .into_iter()
            .map(|(tag, ops, consumers)| ops.side_output(tag, consumers))
            .collect::<TaskResult<Vec<_>>>()?;
        let outputs = ErasedOutputs { main, sides };
        let ctx = self.context(id);
        match &self.graph.nodes[id].kind {
            NodeKind::Source(f) => f.build(&ctx, outputs),
            NodeKind::OneInput(f) | NodeKind::TwoInput(f) => f.build(&ctx, outputs),
        }
    }
}

fn internal(operator: &str, message: &str) -> TaskError {
    TaskError::Operator {
        operator: operator.to_string(),
        subtask: 0,
        parallelism: 0,
        message: format!("internal error: {message}"),
    }
}

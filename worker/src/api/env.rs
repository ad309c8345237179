//! `StreamEnv`: where a job is assembled and executed (Flink's
//! `StreamExecutionEnvironment`).

use crate::api::datastream::DataStream;
use crate::config::{ExecutionConfig, ProcessingTimeMode, RuntimeMode};
use crate::connectors::{CollectionSource, GeneratorSource};
use crate::error::{JobError, TaskResult};
use crate::graph::{
    BuildContext, Built, Chaining, Edge, ErasedOutputs, Node, NodeId, NodeKind, OperatorFactory,
    SourceFactory, StreamGraph,
};
use crate::record::Data;
use crate::runtime::executor::{JobHandle, JobResult, launch};
use crate::runtime::task::SourceHead;
use crate::source::{Source, SourceContext, SourceState};
use crate::time::emitter::WatermarkEmitter;
use crate::time::watermark::WatermarkStrategy;
use std::any::TypeId;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

pub(crate) struct EnvInner {
    pub graph: StreamGraph,
    pub config: ExecutionConfig,
    /// Mistakes found while the job was assembled; reported by `execute`.
    pub errors: Vec<String>,
}

/// Assembles a job from sources, transformations and sinks, then runs it.
///
/// ```
/// use strom::prelude::*;
/// let env = StreamEnv::new();
/// let out = env
///     .from_collection(vec!["to be or not to be".to_string()])
///     .flat_map(|line: String| line.split(' ').map(str::to_string).collect::<Vec<_>>())
///     .map(|w| (w, 1u64))
///     .key_by(|(w, _): &(String, u64)| w.clone())
///     .sum(|t: &mut (String, u64)| &mut t.1)
///     .collect();
/// env.execute("word count").unwrap();
/// assert!(out.values().contains(&("be".to_string(), 2)));
/// ```
#[derive(Clone)]
pub struct StreamEnv {
    pub(crate) inner: Rc<RefCell<EnvInner>>,
}

impl Default for StreamEnv {
    fn default() -> Self {
        Self::new()
    }
}

/// A closure as an [`OperatorFactory`].
pub(crate) struct FnFactory<F>(pub F);

impl<F> OperatorFactory for FnFactory<F>
where
    F: Fn(&BuildContext<'_>, ErasedOutputs) -> TaskResult<Built> + Send + Sync,
{
    fn build(&self, ctx: &BuildContext<'_>, outputs: ErasedOutputs) -> TaskResult<Built> {
        (self.0)(ctx, outputs)
    }
}

struct SourceNode<T: Data, S> {
    source: S,
    strategy: Option<WatermarkStrategy<T>>,
}

impl<T: Data, S: Source<T>> SourceFactory for SourceNode<T, S> {
    fn build(&self, ctx: &BuildContext<'_>, outputs: ErasedOutputs) -> TaskResult<Built> {
        let out = outputs.into_output::<T>(&ctx.info)?;
        let sctx = SourceContext {
            subtask_index: ctx.info.subtask,
            parallelism: ctx.info.parallelism,
            batch_size: ctx.config.batch_size,
            simulated_time: ctx.services.clock.is_simulated(),
        };
        let info = ctx.info.clone();
        let mut reader = crate::runtime::context::guard!(
            info,
            crate::error::Position::Lifecycle("opening the source"),
            {
                self.source
                    .create_reader(&sctx)
                    .map_err(|e| info.error(format!("could not open the source: {e}")))
            }
        )?;
        if let Some(old) = ctx
            .config
            .restore
            .as_ref()
            .and_then(|r| r.source_positions(&info.uid))
        {
            let mut positions = if old.len() == info.parallelism {
                old
            } else {
                let from = old.len();
                self.source
                    .rescale_positions(old, info.parallelism)
                    .map_err(|e| {
                        info.error(format!(
                            "could not spread the positions of {from} readers over {}: {e}",
                            info.parallelism
                        ))
                    })?
            };
            let position = positions.get_mut(info.subtask).and_then(Option::take);
            if let Some(position) = position {
                reader
                    .restore_position(&position)
                    .map_err(|e| info.error(format!("could not resume the source: {e}")))?;
            }
        }
        let emitter = self
            .strategy
            .as_ref()
            .map(|s| WatermarkEmitter::new(s, ctx.config.runtime_mode));
        let state = SourceState::new(
            out,
            emitter,
            ctx.services.clock.clone(),
            ctx.config.batch_size,
            ctx.info.clone(),
        );
        Ok(Built::Source(Box::new(SourceHead::new(reader, state))))
    }
}

impl StreamEnv {
    /// An environment with default settings (parallelism 1, 128 key groups).
    pub fn new() -> Self {
        Self::with_config(ExecutionConfig::default())
    }

    pub fn with_config(config: ExecutionConfig) -> Self {
        StreamEnv {
            inner: Rc::new(RefCell::new(EnvInner {
                graph: StreamGraph::new(),
                config,
                errors: Vec::new(),
            })),
        }
    }

    /// A copy of the current settings.
    pub fn config(&self) -> ExecutionConfig {
        self.inner.borrow().config.clone()
    }

    /// Changes settings in place.
    pub fn configure(&self, f: impl FnOnce(&mut ExecutionConfig)) -> &Self {
        f(&mut self.inner.borrow_mut().config);
        self
    }

    /// Default parallelism of operators.
    pub fn set_parallelism(&self, parallelism: usize) -> &Self {
        self.configure(|c| c.parallelism = parallelism)
    }

    /// Number of key groups (upper bound of keyed parallelism, fixed for a job's life).
    pub fn set_max_parallelism(&self, max_parallelism: usize) -> &Self {
        self.configure(|c| c.max_parallelism = max_parallelism)
    }

    pub fn set_runtime_mode(&self, mode: RuntimeMode) -> &Self {
        self.configure(|c| c.runtime_mode = mode)
    }

    pub fn set_processing_time(&self, mode: ProcessingTimeMode) -> &Self {
        self.configure(|c| c.processing_time = mode)
    }

    pub fn set_auto_watermark_interval(&self, interval: Duration) -> &Self {
        self.configure(|c| c.auto_watermark_interval = interval)
    }

    /// Runs every operator in its own task (Flink's `disableOperatorChaining`).
    pub fn disable_operator_chaining(&self) -> &Self {
        self.configure(|c| c.chaining = false)
    }

    /// Adds a source. The strategy assigns timestamps and watermarks inside the source.
    pub fn from_source<T: Data, S: Source<T>>(
        &self,
        source: S,
        strategy: WatermarkStrategy<T>,
        name: &str,
    ) -> DataStream<T> {
        self.add_source(source, Some(strategy), name)
    }

    /// Adds a source without timestamps or watermarks (but the final one).
    pub fn add_source<T: Data, S: Source<T>>(
        &self,
        source: S,
        strategy: Option<WatermarkStrategy<T>>,
        name: &str,
    ) -> DataStream<T> {
        let fixed = source.fixed_parallelism();
        let id = self.add_node(
            format!("Source: {name}"),
            NodeKind::Source(Arc::new(SourceNode { source, strategy })),
            false,
        );
        self.with_node(id, |n| {
            n.fixed_parallelism = fixed;
            n.chaining = Chaining::Head;
        });
        DataStream::from_node(self.clone(), id)
    }

    /// The given records, in order, from one source instance.
    pub fn from_collection<T: Data + Sync>(&self, items: Vec<T>) -> DataStream<T> {
        self.add_source(CollectionSource::new(items), None, "Collection Source")
    }

    /// The given records with event timestamps (ms), in order, from one source instance.
    pub fn from_timed_collection<T: Data + Sync>(&self, items: Vec<(i64, T)>) -> DataStream<T> {
        self.add_source(CollectionSource::timed(items), None, "Collection Source")
    }

    /// The numbers `from..=to` (Flink's `fromSequence`), split over the source instances.
    pub fn from_sequence(&self, from: u64, to: u64) -> DataStream<u64> {
        let count = to.saturating_sub(from).saturating_add(1);
        self.add_source(
            GeneratorSource::new(move |i| from + i).count(if to < from { 0 } else { count }),
            None,
            "Sequence Source",
        )
    }

    /// The lines of a file, or of the files in a directory (bounded).
    pub fn read_text_file(&self, path: impl Into<std::path::PathBuf>) -> DataStream<String> {
        self.add_source(
            crate::connectors::FileSource::lines(path),
            None,
            "File Source",
        )
    }

    /// JSON lines parsed into `T`; unparsable lines go to the `dead_letter_tag()` side
    /// output of the returned stream, counted.
    pub fn read_json_lines<T: Data + serde::de::DeserializeOwned>(
        &self,
        path: impl Into<std::path::PathBuf>,
    ) -> DataStream<T> {
        self.add_source(
            crate::connectors::FileSource::<T>::json_lines(path),
            None,
            "File Source",
        )
    }

    /// Lines read from a TCP socket; ends when the peer closes it.
    pub fn socket_text_stream(&self, host: &str, port: u16) -> DataStream<String> {
        self.add_source(
            crate::connectors::SocketTextSource::new(host, port),
            None,
            "Socket Stream",
        )
    }

    /// Runs the job to its end (bounded input) or until cancelled.
    pub fn execute(&self, job_name: &str) -> Result<JobResult, JobError> {
        self.execute_async(job_name)?.join()
    }

    /// Starts the job and returns at once.
    pub fn execute_async(&self, job_name: &str) -> Result<JobHandle, JobError> {
        let (graph, plan, config) = self.plan_job()?;
        launch(job_name, graph, plan, config)
    }

    /// Takes the graph built so far and plans it (the same in every process that builds
    /// the job from the same code and arguments).
    pub(crate) fn plan_job(
        &self,
    ) -> Result<(StreamGraph, crate::graph::plan::Plan, ExecutionConfig), JobError> {
        let (mut graph, config, errors) = {
            let mut inner = self.inner.borrow_mut();
            let graph = std::mem::replace(&mut inner.graph, StreamGraph::new());
            (
                graph,
                inner.config.clone(),
                std::mem::take(&mut inner.errors),
            )
        };
        if !errors.is_empty() {
            return Err(JobError::InvalidGraph(errors.join("; ")));
        }
        assign_uids(&mut graph)?;
        let plan = crate::graph::plan::plan(&graph, &config)?;
        Ok((graph, plan, config))
    }

    // Graph building, for the stream types.

    pub(crate) fn add_node(&self, name: String, kind: NodeKind, keyed: bool) -> NodeId {
        let mut inner = self.inner.borrow_mut();
        let id = inner.graph.nodes.len();
        inner.graph.nodes.push(Node {
            id,
            name,
            uid: None,
            parallelism: None,
            fixed_parallelism: None,
            max_parallelism: None,
            chaining: Chaining::Always,
            keyed,
            kind,
        });
        id
    }

    pub(crate) fn add_edge(&self, edge: Edge) {
        self.inner.borrow_mut().graph.edges.push(edge);
    }

    pub(crate) fn with_node(&self, id: NodeId, f: impl FnOnce(&mut Node)) {
        f(&mut self.inner.borrow_mut().graph.nodes[id]);
    }

    pub(crate) fn defer_error(&self, message: String) {
        self.inner.borrow_mut().errors.push(message);
    }

    pub(crate) fn register_side_type<X: 'static>(&self, name: &Arc<str>) {
        let mut inner = self.inner.borrow_mut();
        let entry = (name.clone(), TypeId::of::<X>(), std::any::type_name::<X>());
        if !inner
            .graph
            .side_types
            .iter()
            .any(|(n, t, _)| n == name && *t == entry.1)
        {
            inner.graph.side_types.push(entry);
        }
    }

    pub(crate) fn runtime_mode(&self) -> RuntimeMode {
        self.inner.borrow().config.runtime_mode
    }
}

/// Gives every operator a uid: the one set by the user, or one derived from its name and
/// position. Operators with state should set their own, so state survives job changes.
fn assign_uids(graph: &mut StreamGraph) -> Result<(), JobError> {
    let mut seen: Vec<String> = Vec::new();
    for node in &mut graph.nodes {
        let uid = match &node.uid {
            Some(u) => u.clone(),
            None => {
                let slug: String = node
                    .name
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() {
                            c.to_ascii_lowercase()
                        } else {
                            '-'
                        }
                    })
                    .collect();
                let derived = format!("{}-{}", slug.trim_matches('-'), node.id);
                if node.keyed {
                    tracing::warn!(
                        operator = %node.name,
                        uid = %derived,
                        "stateful operator has no uid; derived one from its name and position. \
                         Set .uid(..) so its state survives changes to the job"
                    );
                }
                node.uid = Some(derived.clone());
                derived
            }
        };
        if seen.contains(&uid) {
            return Err(JobError::InvalidGraph(format!(
                "uid '{uid}' is used by two operators; uids must be unique within a job"
            )));
        }
        seen.push(uid);
    }
    Ok(())
}

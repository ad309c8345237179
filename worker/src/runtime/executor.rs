//! Runs a planned job in this process: one thread per subtask, bounded channels between
//! them. The first task that fails cancels the others, and the job reports that failure
//! (not the secondary ones it caused).

use crate::checkpoint::coordinator::Coordinator;
use crate::checkpoint::uploader::Upload;
use crate::config::ExecutionConfig;
use crate::error::{JobError, TaskError, TaskResult};
use crate::graph::build::ChainBuilder;
use crate::graph::plan::{Plan, targets_of};
use crate::graph::{Built, NodeKind, StreamGraph};
use crate::net::exchange::{ChannelKey, Exchange, RemoteSender};
use crate::runtime::barrier::{Barrier, TaskCheckpointing};
use crate::runtime::context::{Clock, TaskServices, TimerWakeup};
use crate::runtime::input::{InputChannel, InputGate};
use crate::runtime::metrics::{JobMetrics, OperatorEntry};
use crate::runtime::task::{run_input_task, run_source_task};
use crate::runtime::writer::OutChannel;
use crossbeam_channel::{Receiver, Sender, bounded, unbounded};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How a job ended.
#[derive(Debug, Clone)]
pub struct JobResult {
    pub name: String,
    pub duration: Duration,
    pub metrics: JobMetrics,
    /// Whether it was cancelled (Ctrl-C or [`JobHandle::cancel`]) rather than finished.
    pub cancelled: bool,
}

/// Stops a running job from anywhere (a signal handler, another thread).
#[derive(Clone, Debug)]
pub struct CancelToken {
    cancel: Arc<AtomicBool>,
    by_user: Arc<AtomicBool>,
}

impl CancelToken {
    pub fn cancel(&self) {
        self.by_user.store(true, Ordering::SeqCst);
        self.cancel.store(true, Ordering::SeqCst);
    }
}

struct Done {
    task: String,
    result: TaskResult,
}

/// A job running in this process.
pub struct JobHandle {
    name: String,
    started: Instant,
    metrics: JobMetrics,
    token: CancelToken,
    done: Receiver<Done>,
    threads: Vec<JoinHandle<()>>,
    /// The checkpoint coordinator's stop flag and thread, when the job checkpoints here.
    coordinator: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
    /// The port to the master's coordinator, when the job checkpoints across workers.
    checkpoint_port: Option<CheckpointPort>,
}

impl JobHandle {
    /// The job's counters, updated while it runs.
    pub fn metrics(&self) -> &JobMetrics {
        &self.metrics
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Stops the job: sources stop, tasks exit; `join` then reports it as cancelled.
    pub fn cancel(&self) {
        self.token.cancel();
    }

    pub fn cancel_token(&self) -> CancelToken {
        self.token.clone()
    }

    /// The port to the master's checkpoint coordinator (once), for a job across workers
    /// that checkpoints.
    pub(crate) fn take_checkpoint_port(&mut self) -> Option<CheckpointPort> {
        self.checkpoint_port.take()
    }

    /// Waits until `condition` holds for the job's counters, or `timeout` passes; returns
    /// whether it held. For programs that feed a job and must know it has caught up.
    pub fn wait_for(&self, timeout: Duration, condition: impl Fn(&JobMetrics) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if condition(&self.metrics) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Waits until every task has ended.
    pub fn join(self) -> Result<JobResult, JobError> {
        let mut remaining = self.threads.len();
        let mut root: Option<TaskError> = None;
        let mut secondary: Option<TaskError> = None;
        while remaining > 0 {
            let Ok(done) = self.done.recv() else { break };
            remaining -= 1;
            if let Err(e) = done.result {
                if e.is_secondary() {
                    secondary.get_or_insert(e);
                } else if root.is_none() {
                    tracing::error!(task = %done.task, error = %e, "task failed; cancelling the job");
                    root = Some(e);
                }
                self.token.cancel.store(true, Ordering::SeqCst);
            }
        }
        for t in self.threads {
            let _ = t.join();
        }
        // A checkpoint being written is finished first; one being collected is given up.
        if let Some((stop, thread)) = self.coordinator {
            stop.store(true, Ordering::SeqCst);
            let _ = thread.join();
        }
        let by_user = self.token.by_user.load(Ordering::SeqCst);
        let result = JobResult {
            name: self.name,
            duration: self.started.elapsed(),
            metrics: self.metrics,
            cancelled: by_user,
        };
        match (root, secondary) {
            (Some(e), _) => Err(JobError::TaskFailed(e)),
            (None, Some(_)) if by_user => Ok(result),
            (None, Some(e)) => Err(JobError::TaskFailed(e)),
            (None, None) => Ok(result),
        }
    }
}

/// Which subtasks run in this process, and how to reach the others.
pub(crate) struct Deployment {
    /// The worker that runs each subtask: `workers[vertex][subtask]`.
    pub workers: Vec<Vec<usize>>,
    /// This process's worker.
    pub this_worker: usize,
    /// Channels to and from other workers; `None` when every subtask runs here.
    pub network: Option<Network>,
}

/// This process's ends of the data plane for one job attempt.
pub(crate) struct Network {
    pub job_id: String,
    pub attempt: u32,
    /// Where channels from other workers arrive (served on this worker's data address).
    pub exchange: Exchange,
    /// The runtime that drives outgoing streams.
    pub runtime: tokio::runtime::Handle,
    /// A connection to each worker's data address, by worker index (this worker's own
    /// entry is never used).
    pub connections: Vec<tonic::transport::Channel>,
}

impl Deployment {
    /// Every subtask in this process.
    pub(crate) fn local(plan: &Plan) -> Self {
        Deployment {
            workers: plan
                .vertices
                .iter()
                .map(|v| vec![0; v.parallelism])
                .collect(),
            this_worker: 0,
            network: None,
        }
    }

    fn runs_here(&self, vertex: usize, subtask: usize) -> bool {
        self.workers[vertex][subtask] == self.this_worker
    }
}

/// Starts every subtask of a planned job in this process.
pub(crate) fn launch(
    name: &str,
    graph: StreamGraph,
    plan: Plan,
    config: ExecutionConfig,
) -> Result<JobHandle, JobError> {
    let deployment = Deployment::local(&plan);
    launch_deployment(name, graph, plan, config, deployment)
}

/// Starts the subtasks of a planned job that `deployment` places in this process; the
/// channels between them and subtasks elsewhere go over the data plane.
pub(crate) fn launch_deployment(
    name: &str,
    graph: StreamGraph,
    plan: Plan,
    config: ExecutionConfig,
    deployment: Deployment,
) -> Result<JobHandle, JobError> {
    let metrics = JobMetrics {
        operators: graph
            .nodes
            .iter()
            .map(|n| OperatorEntry {
                name: n.name.clone(),
                uid: n.uid.clone().unwrap_or_default(),
                parallelism: plan.parallelism[n.id],
                subtasks: (0..plan.parallelism[n.id])
                    .map(|_| Arc::default())
                    .collect(),
            })
            .collect(),
        tasks: plan
            .vertices
            .iter()
            .map(|v| (0..v.parallelism).map(|_| Arc::default()).collect())
            .collect(),
    };

    // Channels for every edge that crosses tasks, where one end or both run here.
    let mut inputs: Vec<Vec<Vec<InputChannel>>> = plan
        .vertices
        .iter()
        .map(|v| (0..v.parallelism).map(|_| Vec::new()).collect())
        .collect();
    let mut senders: Vec<Vec<HashMap<usize, Vec<OutChannel>>>> = plan
        .vertices
        .iter()
        .map(|v| (0..v.parallelism).map(|_| HashMap::new()).collect())
        .collect();
    for (ei, e) in graph.edges.iter().enumerate() {
        if plan.chained[ei] {
            continue;
        }
        let (vu, vd) = (plan.vertex_of[e.source], plan.vertex_of[e.target]);
        let (pu, pd) = (plan.parallelism[e.source], plan.parallelism[e.target]);
        for (u, upstream) in senders[vu].iter_mut().enumerate().take(pu) {
            for d in targets_of(plan.partitioning[ei], pu, pd, u) {
                let (produces_here, consumes_here) =
                    (deployment.runs_here(vu, u), deployment.runs_here(vd, d));
                let remote = |net: &Network| ChannelKey {
                    job_id: net.job_id.clone(),
                    attempt: net.attempt,
                    edge: ei as u32,
                    producer: u as u32,
                    consumer: d as u32,
                };
                match (produces_here, consumes_here, &deployment.network) {
                    (true, true, _) => {
                        let (tx, rx) = bounded(config.channel_capacity);
                        upstream.entry(ei).or_default().push(OutChannel::Local(tx));
                        inputs[vd][d].push(InputChannel {
                            rx,
                            input: e.input,
                            finished: false,
                            credit: None,
                        });
                    }
                    (true, false, Some(net)) => {
                        let to = deployment.workers[vd][d];
                        upstream.entry(ei).or_default().push(OutChannel::Remote(
                            RemoteSender::open(
                                &net.runtime,
                                net.connections[to].clone(),
                                remote(net),
                                e.ops.clone(),
                            ),
                        ));
                    }
                    (false, true, Some(net)) => inputs[vd][d].push(net.exchange.expect(
                        remote(net),
                        e.ops.clone(),
                        e.input,
                        config.remote_channel_capacity,
                    )),
                    (false, false, _) => {}
                    (_, _, None) => {
                        return Err(JobError::InvalidGraph(
                            "internal error: subtasks placed on other workers without a \
                             network to reach them"
                                .into(),
                        ));
                    }
                }
            }
        }
    }

    if let Some(restored) = &config.restore {
        let uids: Vec<&str> = graph
            .nodes
            .iter()
            .filter_map(|n| n.uid.as_deref())
            .collect();
        restored
            .check_operators(&uids, config.allow_non_restored_state)
            .map_err(JobError::InvalidGraph)?;
    }
    let (mut links, setup) = start_checkpointing(name, &graph, &plan, &config, &deployment)?;
    let (coordinator, checkpoint_port) = match setup {
        CheckpointSetup::None => (None, None),
        CheckpointSetup::Local(stop, thread) => (Some((stop, thread)), None),
        CheckpointSetup::Remote(port) => (None, Some(port)),
    };
    let graph = Arc::new(graph);
    let plan = Arc::new(plan);
    let config = Arc::new(config);
    let cancel = Arc::new(AtomicBool::new(false));
    let token = CancelToken {
        cancel: cancel.clone(),
        by_user: Arc::new(AtomicBool::new(false)),
    };
    let (done_tx, done_rx) = unbounded();
    let mut threads = Vec::new();
    for (vi, vertex) in plan.vertices.iter().enumerate() {
        for s in (0..vertex.parallelism).rev() {
            let task_name = format!("{} ({}/{})", vertex.name, s + 1, vertex.parallelism);
            let my_inputs = inputs[vi].pop().unwrap_or_default();
            let my_senders = senders[vi].pop().unwrap_or_default();
            if !deployment.runs_here(vi, s) {
                continue;
            }
            let my_checkpoints = links.remove(&(vi, s));
            let (graph, plan, config, metrics, task_cancel, done_tx) = (
                graph.clone(),
                plan.clone(),
                config.clone(),
                metrics.clone(),
                cancel.clone(),
                done_tx.clone(),
            );
            let thread_name = task_name.clone();
            let spawned = std::thread::Builder::new()
                .name(thread_name)
                .spawn(move || {
                    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        run_subtask(
                            &graph,
                            &plan,
                            &config,
                            &metrics,
                            vi,
                            s,
                            my_inputs,
                            my_senders,
                            my_checkpoints,
                            &task_cancel,
                        )
                    }))
                    .unwrap_or_else(|p| {
                        Err(TaskError::Operator {
                            operator: graph.nodes[plan.vertices[vi].head].name.clone(),
                            subtask: s + 1,
                            parallelism: plan.vertices[vi].parallelism,
                            message: format!(
                                "internal error: {}",
                                crate::error::panic_message(p.as_ref())
                            ),
                        })
                    });
                    let _ = done_tx.send(Done {
                        task: task_name,
                        result,
                    });
                });
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    cancel.store(true, Ordering::SeqCst);
                    for t in threads {
                        let _ = t.join();
                    }
                    return Err(JobError::Spawn(e.to_string()));
                }
            }
        }
    }
    tracing::info!(job = name, tasks = threads.len(), "job started");
    Ok(JobHandle {
        name: name.to_string(),
        started: Instant::now(),
        metrics,
        token,
        done: done_rx,
        threads,
        coordinator,
        checkpoint_port,
    })
}

/// How the subtasks of a job in this process take part in checkpoints.
enum CheckpointSetup {
    None,
    /// Every subtask is here: so is the coordinator (its stop flag and thread).
    Local(Arc<AtomicBool>, JoinHandle<()>),
    /// The master coordinates: see [`CheckpointPort`].
    Remote(CheckpointPort),
}

/// A worker's side of the master's checkpoints for one job attempt: barriers to inject
/// go into `triggers` (one per source subtask here), and what this process's uploader
/// wrote of each subtask's snapshot comes out of `uploads`, for the master.
pub(crate) struct CheckpointPort {
    pub triggers: Vec<Sender<Barrier>>,
    pub uploads: Receiver<Upload>,
    /// Raise to the id of a checkpoint the master completed: the subtasks here hear of it.
    pub completed: Arc<AtomicU64>,
}

/// Each local subtask's link to the checkpoint coordinator, by (vertex, subtask).
type CheckpointLinks = HashMap<(usize, usize), TaskCheckpointing>;

/// Each local subtask's link to the checkpoint coordinator, and the coordinator or the
/// port to the master's, when the job checkpoints.
fn start_checkpointing(
    name: &str,
    graph: &StreamGraph,
    plan: &Plan,
    config: &ExecutionConfig,
    deployment: &Deployment,
) -> Result<(CheckpointLinks, CheckpointSetup), JobError> {
    let mut links = HashMap::new();
    let mut names = std::collections::BTreeMap::new();
    let Some(checkpointing) = &config.checkpointing else {
        return Ok((links, CheckpointSetup::None));
    };
    let (acks_tx, acks) = unbounded();
    let completed = Arc::new(AtomicU64::new(0));
    let mut triggers = std::collections::BTreeMap::new();
    for (vi, vertex) in plan.vertices.iter().enumerate() {
        let is_source = matches!(graph.nodes[vertex.head].kind, NodeKind::Source(_));
        for s in (0..vertex.parallelism).filter(|&s| deployment.runs_here(vi, s)) {
            let trigger = is_source.then(|| {
                let (tx, rx) = bounded(16);
                triggers.insert((vi, s), tx);
                rx
            });
            names.insert(
                (vi, s),
                format!("{} ({}/{})", vertex.name, s + 1, vertex.parallelism),
            );
            links.insert(
                (vi, s),
                TaskCheckpointing {
                    vertex: vi,
                    subtask: s,
                    triggers: trigger,
                    acks: acks_tx.clone(),
                    completed: completed.clone(),
                },
            );
        }
    }
    let (uploads_tx, uploads) = unbounded();
    let uploader = crate::checkpoint::uploader::spawn(checkpointing.clone(), acks, uploads_tx)
        .map_err(|e| JobError::Spawn(e.to_string()))?;
    if deployment.network.is_some() {
        // The uploader ends by itself once every subtask here has ended.
        drop(uploader);
        let triggers = triggers.into_values().collect();
        return Ok((
            links,
            CheckpointSetup::Remote(CheckpointPort {
                triggers,
                uploads,
                completed,
            }),
        ));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let coordinator = Coordinator {
        config: checkpointing.clone(),
        job: name.to_string(),
        max_parallelism: config.max_parallelism,
        triggers,
        acks: uploads,
        subtasks: names,
        stop: stop.clone(),
        completed,
        uploader: Some(uploader),
    };
    let thread = std::thread::Builder::new()
        .name("checkpoint coordinator".into())
        .spawn(move || coordinator.run())
        .map_err(|e| JobError::Spawn(e.to_string()))?;
    Ok((links, CheckpointSetup::Local(stop, thread)))
}

#[allow(clippy::too_many_arguments)]
fn run_subtask(
    graph: &StreamGraph,
    plan: &Plan,
    config: &Arc<ExecutionConfig>,
    metrics: &JobMetrics,
    vertex: usize,
    subtask: usize,
    inputs: Vec<InputChannel>,
    senders: HashMap<usize, Vec<OutChannel>>,
    checkpoints: Option<TaskCheckpointing>,
    cancel: &AtomicBool,
) -> TaskResult {
    let services = TaskServices {
        clock: Rc::new(Clock::new(config.processing_time)),
        wakeup: Rc::new(TimerWakeup::new()),
        config: config.clone(),
        times: metrics.tasks[vertex][subtask].clone(),
        checkpoints,
    };
    let mut builder = ChainBuilder {
        graph,
        plan,
        metrics,
        services: &services,
        subtask,
        senders,
    };
    match builder.build(plan.vertices[vertex].head)? {
        Built::Source(mut driver) => run_source_task(driver.as_mut(), &services, cancel),
        Built::OneInput(op) => {
            let mut head = op.into_head();
            run_input_task(head.as_mut(), InputGate::new(inputs), &services, cancel)
        }
        Built::TwoInput(mut head) => {
            run_input_task(head.as_mut(), InputGate::new(inputs), &services, cancel)
        }
    }
}

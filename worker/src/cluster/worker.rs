//! `strom worker` (Flink's TaskManager): serves the data plane, attaches to the master
//! and offers its slots, runs the subtasks the master deploys (building the job from its
//! name and arguments, as every process of a job does), and reports their states. When
//! the master's stream ends the worker attaches again, until it is stopped.

use crate::checkpoint::uploader::Upload;
use crate::cluster::job::JobSubmission;
use crate::jobs::JobRegistry;
use crate::net::exchange::{Exchange, connect};
use crate::runtime::barrier::Barrier;
use crate::runtime::executor::{CancelToken, Deployment, Network, launch_deployment};
use crate::runtime::metrics::JobMetrics;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use strom_proto::control::master_client::MasterClient;
use strom_proto::control::{
    CheckpointAck, CheckpointDeclined, DeployTasks, Heartbeat, MasterMessage, OperatorMetrics,
    RegisterWorker, StateHandle, TaskId, TaskMetrics, TaskState, TaskStateReport, WorkerMessage,
    master_message, worker_message,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// Settings of `strom worker`.
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// The master's address, e.g. `http://strom-master:6123`.
    pub master: String,
    /// Unique among the job's workers (the pod name in Kubernetes).
    pub id: String,
    pub slots: u32,
    /// Where the data-plane server listens (port 0: any free port).
    pub data_bind: SocketAddr,
    /// The host other workers use to reach this one (the pod IP in Kubernetes).
    pub advertise_host: String,
    /// Pause between attempts to reach the master.
    pub reconnect_interval: Duration,
    /// How long a channel from another worker waits for its consuming subtask to be
    /// deployed here before it is refused.
    pub channel_wait: Duration,
}

/// A job attempt running here: how to cancel it, and its counters with the subtasks this
/// worker runs (each with the graph nodes chained in it) for heartbeats.
#[derive(Clone)]
struct RunningAttempt {
    cancel: CancelToken,
    metrics: JobMetrics,
    subtasks: Vec<(TaskId, Vec<u32>)>,
    /// Where barriers for this worker's source subtasks go, when the job checkpoints.
    checkpoint_triggers: Vec<crossbeam_channel::Sender<Barrier>>,
    /// The newest checkpoint the master completed, as this worker's subtasks see it.
    checkpoint_completed: Arc<AtomicU64>,
}

/// Job attempts running here, by (job id, attempt).
type Running = Arc<Mutex<HashMap<(String, u32), RunningAttempt>>>;

/// A subtask's busy and backpressured time and watermark.
fn task_times(metrics: &JobMetrics, task: &TaskId) -> TaskMetrics {
    let times = metrics
        .tasks
        .get(task.vertex as usize)
        .and_then(|v| v.get(task.subtask as usize));
    TaskMetrics {
        busy_ms: times.map_or(0, |t| t.busy().as_millis() as u64),
        backpressured_ms: times.map_or(0, |t| t.backpressured().as_millis() as u64),
        watermark: times.and_then(|t| t.watermark()),
        ..TaskMetrics::default()
    }
}

/// The counters of every subtask running here, for a heartbeat.
fn task_metrics(running: &Running) -> Vec<TaskMetrics> {
    let running = running.lock().unwrap_or_else(|p| p.into_inner());
    running
        .values()
        .flat_map(|attempt| {
            attempt.subtasks.iter().map(|(task, nodes)| TaskMetrics {
                task: Some(task.clone()),
                operators: nodes
                    .iter()
                    .filter_map(|&node| {
                        let m = attempt
                            .metrics
                            .operators
                            .get(node as usize)?
                            .subtasks
                            .get(task.subtask as usize)?;
                        Some(OperatorMetrics {
                            node,
                            records_in: m.records_in(),
                            records_out: m.records_out(),
                            records_side: m.side_records_out(),
                            records_late: m.late_records(),
                            dead_letters: m.dead_letters(),
                        })
                    })
                    .collect(),
                ..task_times(&attempt.metrics, task)
            })
        })
        .collect()
}

/// Runs the worker until the process is stopped.
pub fn run_worker(registry: JobRegistry, options: WorkerOptions) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let handle = runtime.handle().clone();
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(options.data_bind)
            .await
            .map_err(|e| anyhow::anyhow!("--data-bind {}: {e}", options.data_bind))?;
        let data_address = format!(
            "{}:{}",
            options.advertise_host,
            listener.local_addr()?.port()
        );
        let exchange = Exchange::new(options.channel_wait);
        tokio::spawn(exchange.serve(listener));
        tracing::info!(worker = %options.id, data = %data_address, "worker data plane listening");
        let registry = Arc::new(registry);
        let running: Running = Arc::default();
        loop {
            match attach(&registry, &options, &data_address, &exchange, &handle, &running).await
            {
                Ok(()) => tracing::warn!(master = %options.master, "the master closed the connection; attaching again"),
                Err(e) => tracing::warn!(master = %options.master, error = %e, "cannot reach the master; retrying"),
            }
            cancel_orphans(&running);
            tokio::time::sleep(options.reconnect_interval).await;
        }
    })
}

/// Cancels the subtasks of a master that is gone: nobody follows their states any more,
/// and the master that comes back deploys its jobs anew (as a Flink TaskManager fails the
/// tasks of a JobManager it lost).
fn cancel_orphans(running: &Running) {
    let orphans: Vec<((String, u32), CancelToken)> = running
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(k, a)| (k.clone(), a.cancel.clone()))
        .collect();
    for ((job, attempt), token) in orphans {
        tracing::warn!(job = %job, attempt, "the master is gone; cancelling its subtasks");
        token.cancel();
    }
}

/// One attachment to the master, until its stream ends.
async fn attach(
    registry: &Arc<JobRegistry>,
    options: &WorkerOptions,
    data_address: &str,
    exchange: &Exchange,
    handle: &tokio::runtime::Handle,
    running: &Running,
) -> anyhow::Result<()> {
    let mut client = MasterClient::connect(options.master.clone()).await?;
    let (to_master, outgoing) = mpsc::channel(256);
    to_master
        .send(WorkerMessage {
            kind: Some(worker_message::Kind::Register(RegisterWorker {
                worker_id: options.id.clone(),
                data_address: data_address.to_string(),
                slots: options.slots,
                version: env!("CARGO_PKG_VERSION").to_string(),
                running: Vec::new(),
            })),
        })
        .await?;
    let mut incoming = client
        .attach(ReceiverStream::new(outgoing))
        .await?
        .into_inner();
    let interval = match incoming.message().await? {
        Some(MasterMessage {
            kind: Some(master_message::Kind::Registered(r)),
        }) => Duration::from_millis(r.heartbeat_interval_ms.max(10)),
        _ => anyhow::bail!("the master did not answer the registration"),
    };
    tracing::info!(master = %options.master, "attached to the master");
    let beats = to_master.clone();
    let counters = running.clone();
    let heartbeat = tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        for sequence in 0.. {
            tick.tick().await;
            let beat = WorkerMessage {
                kind: Some(worker_message::Kind::Heartbeat(Heartbeat {
                    sequence,
                    tasks: task_metrics(&counters),
                })),
            };
            if beats.send(beat).await.is_err() {
                break;
            }
        }
    });
    let result = async {
        while let Some(message) = incoming.message().await? {
            match message.kind {
                Some(master_message::Kind::Deploy(deploy)) => {
                    let (registry, exchange, handle, running, to_master, id) = (
                        registry.clone(),
                        exchange.clone(),
                        handle.clone(),
                        running.clone(),
                        to_master.clone(),
                        options.id.clone(),
                    );
                    // Building and starting a job is blocking work.
                    std::thread::spawn(move || {
                        deploy_tasks(
                            &registry, deploy, &id, exchange, handle, &running, to_master,
                        )
                    });
                }
                Some(master_message::Kind::TriggerCheckpoint(trigger)) => {
                    let triggers = running
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get(&(trigger.job_id.clone(), trigger.attempt))
                        .map(|a| a.checkpoint_triggers.clone())
                        .unwrap_or_default();
                    let barrier = Barrier {
                        id: trigger.checkpoint_id,
                        timestamp: trigger.timestamp_ms,
                        savepoint: (!trigger.target.is_empty()).then(|| trigger.target.as_str().into()),
                    };
                    for t in triggers {
                        // A source that has ended takes no more barriers; the master
                        // finds out when the checkpoint expires.
                        let _ = t.send(barrier.clone());
                    }
                }
                Some(master_message::Kind::CheckpointComplete(done)) => {
                    tracing::debug!(job = %done.job_id, checkpoint = done.checkpoint_id, "checkpoint complete");
                    let completed = running
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get(&(done.job_id.clone(), done.attempt))
                        .map(|a| a.checkpoint_completed.clone());
                    if let Some(completed) = completed {
                        completed.fetch_max(done.checkpoint_id, Ordering::AcqRel);
                    }
                    // Said even for an attempt not running here: the master waits for
                    // it before it cancels a job stopped with a savepoint.
                    let received = WorkerMessage {
                        kind: Some(worker_message::Kind::CheckpointCompleteReceived(done)),
                    };
                    let _ = to_master.send(received).await;
                }
                Some(master_message::Kind::Cancel(cancel)) => {
                    let token = running
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get(&(cancel.job_id, cancel.attempt))
                        .map(|a| a.cancel.clone());
                    if let Some(token) = token {
                        token.cancel();
                    }
                }
                other => tracing::debug!(message = ?other, "ignored"),
            }
        }
        anyhow::Ok(())
    }
    .await;
    heartbeat.abort();
    result
}

/// Starts this worker's subtasks of a job attempt and reports their states until they end.
fn deploy_tasks(
    registry: &JobRegistry,
    deploy: DeployTasks,
    this_worker: &str,
    exchange: Exchange,
    runtime: tokio::runtime::Handle,
    running: &Running,
    to_master: mpsc::Sender<WorkerMessage>,
) {
    let report = |state: TaskState, failure: &str| {
        for task in &deploy.tasks {
            let message = WorkerMessage {
                kind: Some(worker_message::Kind::TaskState(TaskStateReport {
                    task: Some(task.clone()),
                    state: state.into(),
                    failure: failure.to_string(),
                })),
            };
            if to_master.blocking_send(message).is_err() {
                tracing::warn!("the master's connection is gone; a task state was not reported");
                return;
            }
        }
    };
    let started = (|| -> Result<_, String> {
        let mut job: JobSubmission = serde_json::from_str(&deploy.config_json)
            .map_err(|e| format!("the master sent unreadable job settings: {e}"))?;
        if !deploy.restore_from.is_empty() {
            job.from_checkpoint = Some(deploy.restore_from.clone());
        }
        if job.name != deploy.job_name {
            return Err(format!(
                "the master's job settings are for '{}', its deployment for '{}'",
                job.name, deploy.job_name
            ));
        }
        let (graph, plan, config) = job.plan(registry)?;
        // Workers by first appearance; subtasks by (vertex, subtask).
        let mut workers: Vec<&str> = Vec::new();
        let mut addresses: Vec<&str> = Vec::new();
        let mut placed = plan
            .vertices
            .iter()
            .map(|v| vec![None; v.parallelism])
            .collect::<Vec<Vec<Option<usize>>>>();
        for p in &deploy.placements {
            let index = match workers.iter().position(|w| *w == p.worker_id) {
                Some(i) => i,
                None => {
                    workers.push(&p.worker_id);
                    addresses.push(&p.data_address);
                    workers.len() - 1
                }
            };
            let slot = placed
                .get_mut(p.vertex as usize)
                .and_then(|v| v.get_mut(p.subtask as usize))
                .ok_or_else(|| {
                    format!(
                        "the master placed subtask {} of vertex {}, which this job's plan \
                         does not have (do master and worker run the same binary?)",
                        p.subtask, p.vertex
                    )
                })?;
            *slot = Some(index);
        }
        let placement = placed
            .into_iter()
            .map(|v| v.into_iter().collect::<Option<Vec<usize>>>())
            .collect::<Option<Vec<_>>>()
            .ok_or("the master left subtasks of the job unplaced")?;
        let this = workers
            .iter()
            .position(|w| *w == this_worker)
            .ok_or("the master deployed to this worker without placing anything on it")?;
        let connections = {
            addresses
                .iter()
                .map(|a| connect(&runtime, a))
                .collect::<Result<Vec<_>, String>>()?
        };
        let deployment = Deployment {
            workers: placement,
            this_worker: this,
            network: Some(Network {
                job_id: deploy.job_id.clone(),
                attempt: deploy.attempt,
                exchange: exchange.clone(),
                runtime: runtime.clone(),
                connections,
            }),
        };
        // The graph nodes chained in each of this worker's subtasks, for heartbeats.
        let subtasks = deploy
            .tasks
            .iter()
            .map(|t| {
                let nodes = (0..plan.vertex_of.len())
                    .filter(|&n| plan.vertex_of[n] == t.vertex as usize)
                    .map(|n| n as u32)
                    .collect();
                (t.clone(), nodes)
            })
            .collect::<Vec<_>>();
        launch_deployment(&deploy.job_name, graph, plan, config, deployment)
            .map(|job| (job, subtasks))
            .map_err(|e| e.to_string())
    })();
    let (mut job, subtasks) = match started {
        Ok(started) => started,
        Err(why) => {
            tracing::error!(job = %deploy.job_id, error = %why, "could not start the subtasks");
            exchange.forget_attempt(&deploy.job_id, deploy.attempt);
            return report(TaskState::Failed, &why);
        }
    };
    let key = (deploy.job_id.clone(), deploy.attempt);
    let mut checkpoint_triggers = Vec::new();
    let mut checkpoint_completed = Arc::default();
    if let Some(port) = job.take_checkpoint_port() {
        checkpoint_triggers = port.triggers;
        checkpoint_completed = port.completed;
        let (to_master, job_id, attempt) =
            (to_master.clone(), deploy.job_id.clone(), deploy.attempt);
        // Until every subtask here has ended: what the uploader wrote, to the master.
        std::thread::spawn(move || {
            for upload in port.uploads.iter() {
                if to_master
                    .blocking_send(checkpoint_answer(&job_id, attempt, upload))
                    .is_err()
                {
                    return;
                }
            }
        });
    }
    running.lock().unwrap_or_else(|p| p.into_inner()).insert(
        key.clone(),
        RunningAttempt {
            cancel: job.cancel_token(),
            metrics: job.metrics().clone(),
            subtasks,
            checkpoint_triggers,
            checkpoint_completed,
        },
    );
    tracing::info!(job = %deploy.job_id, tasks = deploy.tasks.len(), "subtasks running");
    report(TaskState::Running, "");
    let result = job.join();
    running
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&key);
    exchange.forget_attempt(&deploy.job_id, deploy.attempt);
    match result {
        Ok(r) if r.cancelled => report(TaskState::Canceled, ""),
        Ok(_) => report(TaskState::Finished, ""),
        Err(e) => report(TaskState::Failed, &e.to_string()),
    }
}

/// The master's message for what the uploader wrote of a subtask's snapshot.
fn checkpoint_answer(job_id: &str, attempt: u32, upload: Upload) -> WorkerMessage {
    let task = |vertex: usize, subtask: usize| TaskId {
        job_id: job_id.to_string(),
        attempt,
        vertex: vertex as u32,
        subtask: subtask as u32,
    };
    let kind = match upload {
        Ok(handles) => worker_message::Kind::CheckpointAck(CheckpointAck {
            task: Some(task(handles.vertex, handles.subtask)),
            checkpoint_id: handles.checkpoint,
            state: handles
                .operators
                .into_iter()
                .map(|op| StateHandle {
                    operator_uid: op.uid,
                    parallelism: op.parallelism as u32,
                    metadata_json: serde_json::to_vec(&op.state).unwrap_or_default(),
                })
                .collect(),
        }),
        Err(failure) => worker_message::Kind::CheckpointDeclined(CheckpointDeclined {
            task: Some(task(failure.vertex, failure.subtask)),
            checkpoint_id: failure.checkpoint,
            reason: failure.error,
        }),
    };
    WorkerMessage { kind: Some(kind) }
}

//! `strom master` (Flink's JobManager): takes jobs — the one it was started with
//! (application mode: it exits when that job ends) or any number submitted through the
//! REST API (`POST /v1/jobs`, `strom submit`; session mode) — plans each, waits until the
//! registered workers offer enough free slots, deploys every subtask (slot sharing), and
//! follows their states until the job finishes or fails. Workers are tracked by their
//! attach stream and heartbeats; a worker that goes silent for the heartbeat timeout, or
//! whose stream breaks, is lost.
//!
//! A failed subtask or a lost worker (with unfinished subtasks) is a failure of the job:
//! the master cancels what still runs of that attempt and, as its restart strategy says,
//! deploys the job again after a delay (a new attempt, from the newest completed
//! checkpoint), or fails it. Checkpoints and savepoints are triggered and completed by
//! each job's loop in `checkpoint_loop`.
//!
//! The REST API (`cluster::rest`) reads the jobs, the workers and the counters the
//! workers' heartbeats carry from here, and submits and cancels jobs through here.

mod checkpoint_loop;
mod checkpoints;
mod job_run;
mod prometheus;
mod state;
mod views;

use crate::checkpoint::CheckpointConfig;
use crate::checkpoint::CheckpointRetention;
use crate::checkpoint::coordinator::{checkpoint_location, delete_checkpoints};
use crate::checkpoint::restore::newest_valid_checkpoint;
use crate::cluster::job::JobSubmission;
use crate::cluster::restart::RestartStrategy;
use crate::graph::NodeKind;
use crate::jobs::JobRegistry;
use checkpoints::JobCheckpoints;
pub use checkpoints::SavepointStatus;
use job_run::PlannedJob;
use state::{State, WorkerEntry};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use strom_proto::control::master_server::{Master, MasterServer};
use strom_proto::control::{
    MasterMessage, RegisterWorker, Registered, WorkerMessage, master_message, worker_message,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};
pub use views::{JobView, SubtaskView, VertexView, WorkerView};

/// Settings of `strom master`.
#[derive(Clone, Debug)]
pub struct MasterOptions {
    /// Where workers reach the master.
    pub bind: SocketAddr,
    /// The job to run and exit after (application mode); `None`: run until stopped and
    /// take jobs through the REST API (session mode).
    pub job: Option<JobSubmission>,
    /// How often workers send a heartbeat.
    pub heartbeat_interval: Duration,
    /// Silence after which a worker is lost.
    pub heartbeat_timeout: Duration,
    /// What to do when a job fails.
    pub restart: RestartStrategy,
    /// Where the REST API listens (`None`: no REST API).
    pub rest_bind: Option<SocketAddr>,
}

/// How a job ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobOutcome {
    /// Finished; `ran_for` is the time from the last deployment to the end.
    Finished {
        ran_for: Duration,
    },
    Failed(String),
    /// Cancelled through the REST API.
    Cancelled,
}

/// Why `run_master` returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MasterExit {
    /// The job the master was started with ended.
    JobEnded(JobOutcome),
    /// A signal (`SIGINT`, `SIGTERM`) stopped the master.
    Stopped(&'static str),
}

/// A job's state, named as Flink names them (DESIGN.md §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum JobStatus {
    /// Waiting for workers to offer enough free slots.
    Created,
    Running,
    /// Failed; waiting for the restart strategy's delay.
    Restarting,
    Cancelling,
    Cancelled,
    Failed,
    Finished,
}

/// Builds and plans a job as the master keeps it, with its checkpoint settings.
fn plan_job(
    registry: &JobRegistry,
    submission: JobSubmission,
) -> Result<(PlannedJob, Option<CheckpointConfig>), String> {
    let (graph, plan, config) = submission.plan(registry)?;
    let source_vertices = plan
        .vertices
        .iter()
        .enumerate()
        .filter(|(_, v)| matches!(graph.nodes[v.head].kind, NodeKind::Source(_)))
        .map(|(i, _)| i as u32)
        .collect();
    Ok((
        PlannedJob {
            parallelisms: plan.vertices.iter().map(|v| v.parallelism).collect(),
            vertex_names: plan.vertices.iter().map(|v| v.name.clone()).collect(),
            operator_names: graph.nodes.iter().map(|n| n.name.clone()).collect(),
            source_vertices,
            max_parallelism: config.max_parallelism,
            submission,
        },
        config.checkpointing,
    ))
}

/// How long the REST API outlives the job of an application-mode master.
const REST_GRACE: Duration = Duration::from_millis(500);

/// Resolves when the process gets `SIGINT` or `SIGTERM`, with the signal's name.
async fn stop_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let terminate = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => s.recv().await,
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = terminate => "SIGTERM",
    }
}

/// Runs the master: until its job ends (application mode) or until it is stopped.
pub fn run_master(registry: &JobRegistry, options: MasterOptions) -> anyhow::Result<MasterExit> {
    // A job that cannot be planned is an error before anything listens.
    let first_job = match options.job.clone() {
        Some(job) => {
            let name = job.name.clone();
            Some(plan_job(registry, job).map_err(|e| anyhow::anyhow!("job '{name}': {e}"))?)
        }
        None => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(options.bind)
            .await
            .map_err(|e| anyhow::anyhow!("--bind {}: {e}", options.bind))?;
        let session = format!(
            "master-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis())
        );
        tracing::info!(address = %listener.local_addr()?, session = %session, "master listening");
        let (restarts_tx, mut restarts) = mpsc::unbounded_channel::<(String, Duration)>();
        let master = MasterService {
            state: Arc::new(Mutex::new(State::new(options.restart.clone(), restarts_tx))),
            registry: Arc::new(registry.clone()),
            heartbeat_interval: options.heartbeat_interval,
            heartbeat_timeout: options.heartbeat_timeout,
            session,
        };
        // Restarts wait for their delay here, outside the state's lock.
        let restarter = master.clone();
        tokio::spawn(async move {
            while let Some((job, delay)) = restarts.recv().await {
                let restarter = restarter.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    restarter.state().restart_due(&job);
                });
            }
        });
        let watchdog = master.clone();
        let timeout = options.heartbeat_timeout;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval((timeout / 4).min(Duration::from_millis(250)));
            loop {
                tick.tick().await;
                watchdog.lose_silent_workers(timeout);
                watchdog.state().fail_unexplained();
            }
        });
        if let Some(rest_bind) = options.rest_bind {
            let rest = tokio::net::TcpListener::bind(rest_bind)
                .await
                .map_err(|e| anyhow::anyhow!("--rest-bind {rest_bind}: {e}"))?;
            tracing::info!(address = %rest.local_addr()?, "REST API listening");
            let app = crate::cluster::rest::router(master.clone());
            tokio::spawn(async move { axum::serve(rest, app).await });
        }
        let mut app_job = None;
        let mut job_outcome = match first_job {
            // The job this master exists for resumes from its newest checkpoint, as a
            // Flink JobManager recovers its job after a failover.
            Some((plan, checkpointing)) => {
                let view = master
                    .submit_planned(plan, checkpointing, true)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                app_job = Some(view.id.clone());
                Some(master.state().job_mut(&view.id).map(|j| j.outcome()))
            }
            None => None,
        };
        let after_job = master.clone();
        let serving = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(MasterServer::new(master))
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        let job_ended = async {
            match job_outcome.as_mut() {
                Some(Some(outcome)) => outcome
                    .wait_for(Option::is_some)
                    .await
                    .ok()
                    .and_then(|o| o.clone()),
                // Session mode: no job ends the master.
                _ => std::future::pending().await,
            }
        };
        let exit = tokio::select! {
            outcome = job_ended => MasterExit::JobEnded(outcome.unwrap_or_else(|| {
                JobOutcome::Failed("the master lost track of its job".into())
            })),
            signal = stop_signal() => {
                tracing::info!(signal, "master stopping");
                MasterExit::Stopped(signal)
            }
        };
        if let (MasterExit::JobEnded(_), Some(id)) = (&exit, &app_job) {
            // Before the process ends with the job (the checkpoint task may not get to it).
            after_job.apply_retention(id).await;
        }
        if matches!(exit, MasterExit::JobEnded(_)) && options.rest_bind.is_some() {
            // The REST API stays up a moment, so a client that ended the job (`strom
            // stop`, `strom cancel`) can read how it ended.
            tokio::time::sleep(REST_GRACE).await;
        }
        serving.abort();
        Ok(exit)
    })
}

#[derive(Clone)]
pub(crate) struct MasterService {
    state: Arc<Mutex<State>>,
    registry: Arc<JobRegistry>,
    heartbeat_interval: Duration,
    heartbeat_timeout: Duration,
    /// This master's run: tells workers that a master restarted.
    session: String,
}

impl MasterService {
    /// Job `id`, if the master has it.
    pub(crate) fn job(&self, id: &str) -> Option<JobView> {
        let state = self.state();
        state.jobs.iter().find(|j| j.id == id).map(|j| j.view())
    }

    /// Every job, in submission order.
    pub(crate) fn jobs(&self) -> Vec<JobView> {
        self.state().jobs.iter().map(|j| j.view()).collect()
    }

    pub(crate) fn workers(&self) -> Vec<WorkerView> {
        self.state().worker_views()
    }

    pub(crate) fn operator_metrics_text(&self) -> String {
        self.state().operator_metrics_text()
    }

    /// Plans and adds a job (the REST API's `POST /v1/jobs`): its view, or why it cannot
    /// run. With `resume_latest`, a job that checkpoints starts from the newest completed
    /// checkpoint in its checkpoint directory, if there is one.
    pub(crate) async fn submit(
        &self,
        submission: JobSubmission,
        resume_latest: bool,
    ) -> Result<JobView, String> {
        // Building the job runs user code and may read a checkpoint from storage: off the
        // runtime's threads, not under the state's lock; a panic in it is the job's error.
        let registry = self.registry.clone();
        let (plan, checkpointing) =
            tokio::task::spawn_blocking(move || plan_job(&registry, submission))
                .await
                .map_err(|e| format!("building the job failed: {e}"))??;
        self.submit_planned(plan, checkpointing, resume_latest)
            .await
    }

    /// Adds a job planned already (see `submit`).
    async fn submit_planned(
        &self,
        plan: PlannedJob,
        checkpointing: Option<CheckpointConfig>,
        resume_latest: bool,
    ) -> Result<JobView, String> {
        let (checkpoints, initial_restore) = match checkpointing {
            Some(config) => {
                let storage = &config.storage;
                let done = storage
                    .completed_checkpoints(&config.job_dir)
                    .await
                    .map_err(|e| e.to_string())?;
                let initial = if resume_latest {
                    newest_valid_checkpoint(storage, &config.job_dir)
                        .await
                        .map_err(|e| e.to_string())?
                        .map(|id| checkpoint_location(&config, id))
                } else {
                    None
                };
                let next_id = done.last().map_or(1, |last| last + 1);
                let max_parallelism = plan.max_parallelism;
                (
                    Some(JobCheckpoints::new(config, max_parallelism, next_id)),
                    initial,
                )
            }
            None => (None, None),
        };
        let checkpointed = checkpoints.is_some();
        let (id, view) = {
            let mut state = self.state();
            let id = state.submit(plan, checkpoints, initial_restore);
            let view = state.job_mut(&id).map(|j| j.view());
            (id, view)
        };
        if checkpointed {
            tokio::spawn(self.clone().coordinate_checkpoints(id));
        }
        view.ok_or_else(|| "the job was forgotten at once".to_string())
    }

    /// Triggers and completes job `id`'s checkpoints, and the savepoints asked for, until
    /// it ends; then keeps or deletes its checkpoints as its retention says.
    async fn coordinate_checkpoints(self, id: String) {
        self.clone().checkpoint_until_ended(id.clone()).await;
        self.apply_retention(&id).await;
    }

    /// Once job `id` has ended: a cancelled job whose checkpoints go on cancellation
    /// loses them (a failed or finished one keeps them).
    async fn apply_retention(&self, id: &str) {
        let config = loop {
            {
                let mut state = self.state();
                let Some(job) = state.job_mut(id) else {
                    return;
                };
                if job.ended() {
                    let cancelled = job.status == JobStatus::Cancelled;
                    match job.checkpoints.as_ref() {
                        Some(c)
                            if cancelled
                                && c.config.retention
                                    == CheckpointRetention::DeleteOnCancellation =>
                        {
                            break c.config.clone();
                        }
                        _ => return,
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        match delete_checkpoints(&config).await {
            Ok(()) => {
                tracing::info!(job = %id, "deleted the cancelled job's checkpoints (delete-on-cancellation)")
            }
            Err(e) => {
                tracing::warn!(job = %id, error = %e, "could not delete the cancelled job's checkpoints")
            }
        }
    }

    /// Records how savepoint request `request` of job `id` ended; with `stop` (the
    /// savepoint's checkpoint id), a completed savepoint ends the job.
    fn savepoint_done(
        &self,
        id: &str,
        request: u64,
        done: Result<String, String>,
        stop: Option<u64>,
    ) {
        let mut state = self.state();
        let completed = done.is_ok();
        if let Some(c) = state.job_mut(id).and_then(|j| j.checkpoints.as_mut()) {
            let status = match done {
                Ok(location) => SavepointStatus::Completed { location },
                Err(failure) => {
                    tracing::warn!(job = %id, request, error = %failure, "savepoint failed");
                    SavepointStatus::Failed { failure }
                }
            };
            c.savepoints.insert(request, status);
        }
        if let Some(savepoint) = stop.filter(|_| completed) {
            state.stop(id, savepoint);
        }
    }

    /// Asks for a savepoint of job `id` under `directory` (default: `savepoints` in the
    /// job's checkpoint directory); with `stop`, the job ends after it. The request id,
    /// or why not.
    pub(crate) fn request_savepoint(
        &self,
        id: &str,
        directory: Option<String>,
        stop: bool,
    ) -> Option<Result<u64, String>> {
        let mut state = self.state();
        let job = state.job_mut(id)?;
        if job.ended() {
            return Some(Err(format!("job '{id}' is {:?} already", job.status)));
        }
        let Some(c) = job.checkpoints.as_mut() else {
            return Some(Err(format!(
                "job '{id}' takes no checkpoints, and savepoints are taken the same way; \
                 submit it with --checkpoint-interval-ms"
            )));
        };
        let directory = directory.unwrap_or_else(|| {
            format!(
                "{}/savepoints",
                c.config.storage.url().trim_end_matches('/')
            )
        });
        Some(Ok(c.request_savepoint(directory, stop)))
    }

    /// Job `id`'s checkpoints as `GET /v1/jobs/{id}/checkpoints` shows them.
    pub(crate) fn checkpoints(&self, id: &str) -> Option<serde_json::Value> {
        let mut state = self.state();
        let job = state.job_mut(id)?;
        Some(match &job.checkpoints {
            None => serde_json::json!({ "enabled": false }),
            Some(c) => serde_json::json!({
                "enabled": true,
                "interval_ms": c.config.interval.as_millis() as u64,
                "completed": c.completed,
                "failed": c.failed,
                "in_progress": c.pending.keys().next(),
                "latest": c.latest,
                "last_completed": c.last_completed,
                "savepoints": c.savepoints.iter()
                    .map(|(request, status)| (request.to_string(), status))
                    .collect::<std::collections::BTreeMap<_, _>>(),
            }),
        })
    }

    /// How savepoint request `request` of job `id` stands.
    pub(crate) fn savepoint_status(&self, id: &str, request: u64) -> Option<SavepointStatus> {
        let mut state = self.state();
        state
            .job_mut(id)?
            .checkpoints
            .as_ref()?
            .savepoints
            .get(&request)
            .cloned()
    }

    /// Cancels job `id`: `None` if there is no such job, else its state after the call or
    /// the final state that prevents cancelling.
    pub(crate) fn cancel(&self, id: &str) -> Option<Result<JobStatus, JobStatus>> {
        self.state().cancel(id)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every change to the state is complete before the lock is released.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lose_silent_workers(&self, timeout: Duration) {
        let mut state = self.state();
        let silent: Vec<String> = state
            .workers
            .iter()
            .filter(|w| w.last_heard.elapsed() > timeout)
            .map(|w| w.id.clone())
            .collect();
        for id in silent {
            state.lose(&id, &format!("no heartbeat for {timeout:?}"));
        }
    }

    /// Follows one worker's stream until it ends.
    async fn follow(self, id: String, connection: u64, mut incoming: Streaming<WorkerMessage>) {
        let why = loop {
            match incoming.message().await {
                Ok(Some(message)) => {
                    let mut state = self.state();
                    if let Some(w) = state.workers.iter_mut().find(|w| w.id == id) {
                        w.last_heard = Instant::now();
                    }
                    match message.kind {
                        Some(worker_message::Kind::TaskState(report)) => {
                            state.on_task_state(report)
                        }
                        Some(worker_message::Kind::Heartbeat(beat)) => state.on_heartbeat(beat),
                        Some(worker_message::Kind::CheckpointAck(ack)) => {
                            state.on_checkpoint_ack(ack)
                        }
                        Some(worker_message::Kind::CheckpointDeclined(declined)) => {
                            state.on_checkpoint_declined(declined)
                        }
                        Some(worker_message::Kind::CheckpointCompleteReceived(heard)) => {
                            state.on_checkpoint_complete_received(&id, heard)
                        }
                        None => {}
                        Some(other) => {
                            tracing::debug!(worker = %id, message = ?other, "ignored");
                        }
                    }
                }
                Ok(None) => break "it closed its connection".to_string(),
                Err(status) => break format!("its connection broke: {}", status.message()),
            }
        };
        let mut state = self.state();
        if state
            .workers
            .iter()
            .any(|w| w.id == id && w.connection == connection)
        {
            state.lose(&id, &why);
        }
    }
}

fn check_registration(r: &RegisterWorker) -> Result<(), Status> {
    if r.worker_id.is_empty() {
        return Err(Status::invalid_argument(
            "register.worker_id is empty: give every worker a unique id (--id)",
        ));
    }
    if r.slots == 0 {
        return Err(Status::invalid_argument(
            "register.slots is 0: a worker needs at least one slot (--slots)",
        ));
    }
    if r.data_address.is_empty() {
        return Err(Status::invalid_argument(
            "register.data_address is empty: workers must say where others reach them",
        ));
    }
    Ok(())
}

type ToWorker = Pin<Box<dyn futures::Stream<Item = Result<MasterMessage, Status>> + Send>>;

#[tonic::async_trait]
impl Master for MasterService {
    type AttachStream = ToWorker;

    async fn attach(
        &self,
        request: Request<Streaming<WorkerMessage>>,
    ) -> Result<Response<ToWorker>, Status> {
        let mut incoming = request.into_inner();
        let register = match incoming.message().await? {
            Some(WorkerMessage {
                kind: Some(worker_message::Kind::Register(r)),
            }) => r,
            _ => {
                return Err(Status::invalid_argument(
                    "a worker's first message must be 'register'",
                ));
            }
        };
        check_registration(&register)?;
        let (to_worker, outgoing) = mpsc::channel(64);
        let _ = to_worker.try_send(Ok(MasterMessage {
            kind: Some(master_message::Kind::Registered(Registered {
                heartbeat_interval_ms: self.heartbeat_interval.as_millis() as u64,
                heartbeat_timeout_ms: self.heartbeat_timeout.as_millis() as u64,
                master_session: self.session.clone(),
            })),
        }));
        let connection = {
            let mut state = self.state();
            if let Some(taken) = state.workers.iter().find(|w| w.id == register.worker_id) {
                // Two processes cannot listen on one address: another address is another
                // worker with the same id, and letting both in would have them replace each
                // other forever.
                if taken.data_address != register.data_address {
                    return Err(Status::already_exists(format!(
                        "worker id '{}' is taken by the worker at {}, which is attached; give \
                         every worker its own --id (if that worker is gone, the master forgets \
                         it after the heartbeat timeout, {:?})",
                        register.worker_id, taken.data_address, self.heartbeat_timeout
                    )));
                }
                // The same worker, attached again: it cancelled what it ran for its old
                // connection, so that is a loss of those subtasks.
                state.lose(&register.worker_id, "it attached again");
            }
            let connection = state.next_connection;
            state.next_connection += 1;
            tracing::info!(
                worker = %register.worker_id,
                slots = register.slots,
                data = %register.data_address,
                "worker registered"
            );
            state.workers.push(WorkerEntry {
                id: register.worker_id.clone(),
                data_address: register.data_address.clone(),
                slots: register.slots,
                connection,
                to_worker,
                last_heard: Instant::now(),
            });
            state.settle();
            connection
        };
        tokio::spawn(
            self.clone()
                .follow(register.worker_id, connection, incoming),
        );
        Ok(Response::new(Box::pin(ReceiverStream::new(outgoing))))
    }
}

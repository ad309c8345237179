//! `strom master` (Flink's JobManager, application mode): plans the job it was started
//! with, waits until the registered workers offer enough slots, deploys every subtask
//! (slot sharing), and follows their states until the job finishes or fails. Workers are
//! tracked by their attach stream and heartbeats; a worker that goes silent for the
//! heartbeat timeout, or whose stream breaks, is lost.
//!
//! A failed subtask or a lost worker (with unfinished subtasks) is a failure of the job:
//! the master cancels what still runs of that attempt and, as its restart strategy says,
//! deploys the job again from scratch after a delay (a new attempt; checkpoints come with
//! the next issue), or fails it.
//!
//! The REST API (`cluster::rest`) reads the job, its workers and the counters the workers'
//! heartbeats carry from here, and cancels the job through here.

mod prometheus;
mod views;

use crate::cluster::job::JobSubmission;
use crate::cluster::placement::{place, slots_needed};
use crate::cluster::restart::{RestartStrategy, RestartTracker};
use crate::jobs::JobRegistry;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use strom_proto::control::master_server::{Master, MasterServer};
use strom_proto::control::{
    CancelJob, DeployTasks, Heartbeat, JobArg, MasterMessage, OperatorMetrics, Placement,
    RegisterWorker, Registered, TaskId, TaskState, TaskStateReport, WorkerMessage, master_message,
    worker_message,
};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};
pub use views::{JobView, SubtaskView, VertexView, WorkerView};

/// Settings of `strom master`.
#[derive(Clone, Debug)]
pub struct MasterOptions {
    /// Where workers reach the master.
    pub bind: SocketAddr,
    pub job: JobSubmission,
    /// How often workers send a heartbeat.
    pub heartbeat_interval: Duration,
    /// Silence after which a worker is lost.
    pub heartbeat_timeout: Duration,
    /// What to do when the job fails.
    pub restart: RestartStrategy,
    /// Where the REST API listens (`None`: no REST API).
    pub rest_bind: Option<SocketAddr>,
}

/// How the job ended.
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

/// A job's state, named as Flink names them (DESIGN.md §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum JobStatus {
    /// Waiting for workers to offer enough slots.
    Created,
    Running,
    /// Failed; waiting for the restart strategy's delay.
    Restarting,
    Cancelling,
    Cancelled,
    Failed,
    Finished,
}

/// Runs the master until its job ends.
pub fn run_master(registry: &JobRegistry, options: MasterOptions) -> anyhow::Result<JobOutcome> {
    let (graph, plan, _) = options
        .job
        .plan(registry)
        .map_err(|e| anyhow::anyhow!("job '{}': {e}", options.job.name))?;
    let parallelisms = plan.vertices.iter().map(|v| v.parallelism).collect();
    let vertex_names = plan.vertices.iter().map(|v| v.name.clone()).collect();
    let operator_names = graph.nodes.iter().map(|n| n.name.clone()).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(options.bind)
            .await
            .map_err(|e| anyhow::anyhow!("--bind {}: {e}", options.bind))?;
        let job_id = format!(
            "{}-{}",
            options.job.name,
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis())
        );
        tracing::info!(address = %listener.local_addr()?, job = %job_id, "master listening");
        let (outcome_tx, mut outcome) = watch::channel(None);
        let (restarts_tx, mut restarts) = mpsc::unbounded_channel::<Duration>();
        let master = MasterService {
            state: Arc::new(Mutex::new(State {
                workers: Vec::new(),
                next_connection: 0,
                job: options.job.clone(),
                job_id: job_id.clone(),
                attempt: 0,
                parallelisms,
                tasks: HashMap::new(),
                outcome: outcome_tx,
                restart: RestartTracker::new(options.restart.clone()),
                restart_pending: false,
                deployed_at: None,
                status: JobStatus::Created,
                started: std::time::SystemTime::now(),
                started_at: Instant::now(),
                ended_at: None,
                vertex_names,
                operator_names,
                operator_metrics: HashMap::new(),
                task_times: HashMap::new(),
                failure: None,
                schedule_restart: restarts_tx,
            })),
            heartbeat_interval: options.heartbeat_interval,
            heartbeat_timeout: options.heartbeat_timeout,
            session: job_id,
        };
        // Restarts wait for their delay here, outside the state's lock.
        let restarter = master.clone();
        tokio::spawn(async move {
            while let Some(delay) = restarts.recv().await {
                tokio::time::sleep(delay).await;
                let mut state = restarter.state();
                state.restart_pending = false;
                state.try_deploy();
            }
        });
        let watchdog = master.clone();
        let timeout = options.heartbeat_timeout;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(timeout / 4);
            loop {
                tick.tick().await;
                watchdog.lose_silent_workers(timeout);
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
        let mut ended = outcome.clone();
        let server = tonic::transport::Server::builder()
            .add_service(MasterServer::new(master))
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
                let _ = ended.wait_for(Option::is_some).await;
            });
        let serving = tokio::spawn(server);
        let result = outcome
            .wait_for(Option::is_some)
            .await
            .map(|o| o.clone())
            .ok()
            .flatten()
            .unwrap_or_else(|| JobOutcome::Failed("the master stopped".into()));
        serving.abort();
        Ok(result)
    })
}

#[derive(Clone)]
pub(crate) struct MasterService {
    state: Arc<Mutex<State>>,
    heartbeat_interval: Duration,
    heartbeat_timeout: Duration,
    /// This master's run (its job id): tells workers that a master restarted.
    session: String,
}

struct WorkerEntry {
    id: String,
    data_address: String,
    slots: u32,
    /// Tells a reattached worker's old stream from its new one.
    connection: u64,
    to_worker: mpsc::Sender<Result<MasterMessage, Status>>,
    last_heard: Instant,
}

pub(crate) struct State {
    /// In registration order, which is the order slots are filled in.
    workers: Vec<WorkerEntry>,
    next_connection: u64,
    job: JobSubmission,
    job_id: String,
    attempt: u32,
    parallelisms: Vec<usize>,
    /// Every subtask of the deployed attempt, by (vertex, subtask): its worker and state.
    tasks: HashMap<(u32, u32), (String, TaskState)>,
    outcome: watch::Sender<Option<JobOutcome>>,
    restart: RestartTracker,
    /// When the current attempt was deployed.
    deployed_at: Option<Instant>,
    status: JobStatus,
    started: std::time::SystemTime,
    started_at: Instant,
    ended_at: Option<Instant>,
    vertex_names: Vec<String>,
    /// Names of the job graph's operators, by node index.
    operator_names: Vec<String>,
    /// The latest counters of the current attempt, by (node, subtask), from heartbeats.
    operator_metrics: HashMap<(u32, u32), OperatorMetrics>,
    /// The latest busy and backpressured ms and watermark, by (vertex, subtask).
    task_times: HashMap<(u32, u32), (u64, u64, Option<i64>)>,
    /// Why the last attempt failed.
    failure: Option<String>,
    /// A restart is waiting for its delay: deploy nothing until then.
    restart_pending: bool,
    schedule_restart: mpsc::UnboundedSender<Duration>,
}

impl State {
    fn ended(&self) -> bool {
        self.outcome.borrow().is_some()
    }

    fn end(&mut self, outcome: JobOutcome) {
        if self.ended() {
            return;
        }
        self.ended_at = Some(Instant::now());
        self.status = match &outcome {
            JobOutcome::Finished { .. } => JobStatus::Finished,
            JobOutcome::Failed(_) => JobStatus::Failed,
            JobOutcome::Cancelled => JobStatus::Cancelled,
        };
        if let JobOutcome::Failed(why) = &outcome {
            self.failure = Some(why.clone());
        }
        match &outcome {
            JobOutcome::Cancelled => tracing::info!(job = %self.job_id, "job cancelled"),
            JobOutcome::Finished { ran_for } => tracing::info!(
                job = %self.job_id,
                ran_ms = ran_for.as_millis() as u64,
                "job finished"
            ),
            JobOutcome::Failed(why) => {
                tracing::error!(job = %self.job_id, error = %why, "job failed")
            }
        }
        let _ = self.outcome.send(Some(outcome));
    }

    /// Tells every worker with subtasks of the current attempt to cancel them.
    fn cancel_attempt(&self) {
        let cancel = CancelJob {
            job_id: self.job_id.clone(),
            attempt: self.attempt,
        };
        for worker in &self.workers {
            if self.tasks.values().any(|(w, _)| *w == worker.id) {
                let _ = worker.to_worker.try_send(Ok(MasterMessage {
                    kind: Some(master_message::Kind::Cancel(cancel.clone())),
                }));
            }
        }
    }

    /// The current attempt failed: cancel what still runs of it, then restart or give up
    /// as the restart strategy says.
    fn fail(&mut self, why: String) {
        if self.ended() || self.tasks.is_empty() {
            return;
        }
        self.cancel_attempt();
        self.tasks.clear();
        self.failure = Some(why.clone());
        match self.restart.on_failure(Instant::now()) {
            Some(delay) => {
                self.attempt += 1;
                self.restart_pending = true;
                self.status = JobStatus::Restarting;
                tracing::warn!(
                    job = %self.job_id,
                    error = %why,
                    restart = self.restart.restarts(),
                    delay_ms = delay.as_millis() as u64,
                    "job failed; restarting it from scratch"
                );
                let _ = self.schedule_restart.send(delay);
            }
            None => {
                let restarts = self.restart.restarts();
                self.end(JobOutcome::Failed(if restarts == 0 {
                    why
                } else {
                    format!("{why} (the restart strategy gave up after {restarts} restarts)")
                }));
            }
        }
    }

    /// Deploys the job once the workers offer enough slots.
    fn try_deploy(&mut self) {
        if !self.tasks.is_empty()
            || self.ended()
            || self.restart_pending
            || self.status == JobStatus::Cancelling
        {
            return;
        }
        let slots: Vec<u32> = self.workers.iter().map(|w| w.slots).collect();
        let placement = match place(&self.parallelisms, &slots) {
            Ok(p) => p,
            Err(e) => {
                tracing::info!(
                    needed = slots_needed(&self.parallelisms),
                    available = e.available,
                    "waiting for workers to offer enough slots"
                );
                return;
            }
        };
        self.deployed_at = Some(Instant::now());
        self.operator_metrics.clear();
        self.task_times.clear();
        self.status = JobStatus::Running;
        let placements: Vec<Placement> = placement
            .iter()
            .enumerate()
            .flat_map(|(vertex, subtasks)| {
                subtasks
                    .iter()
                    .enumerate()
                    .map(move |(subtask, &w)| (vertex, subtask, w))
            })
            .map(|(vertex, subtask, w)| Placement {
                vertex: vertex as u32,
                subtask: subtask as u32,
                worker_id: self.workers[w].id.clone(),
                data_address: self.workers[w].data_address.clone(),
            })
            .collect();
        let config_json = match serde_json::to_string(&self.job) {
            Ok(json) => json,
            Err(e) => return self.end(JobOutcome::Failed(format!("job settings: {e}"))),
        };
        let args = self
            .job
            .args
            .iter()
            .map(|a| {
                let (key, value) = a.split_once('=').unwrap_or((a.as_str(), ""));
                JobArg {
                    key: key.to_string(),
                    value: value.to_string(),
                }
            })
            .collect::<Vec<_>>();
        for (w, worker) in self.workers.iter().enumerate() {
            let tasks: Vec<TaskId> = placements
                .iter()
                .filter(|p| p.worker_id == worker.id)
                .map(|p| TaskId {
                    job_id: self.job_id.clone(),
                    attempt: self.attempt,
                    vertex: p.vertex,
                    subtask: p.subtask,
                })
                .collect();
            if tasks.is_empty() {
                continue;
            }
            for t in &tasks {
                self.tasks.insert(
                    (t.vertex, t.subtask),
                    (worker.id.clone(), TaskState::Deploying),
                );
            }
            let deploy = DeployTasks {
                job_id: self.job_id.clone(),
                attempt: self.attempt,
                job_name: self.job.name.clone(),
                args: args.clone(),
                config_json: config_json.clone(),
                placements: placements.clone(),
                tasks,
                restore_from: String::new(),
            };
            tracing::info!(worker = %worker.id, tasks = deploy.tasks.len(), "deploying subtasks");
            if worker
                .to_worker
                .try_send(Ok(MasterMessage {
                    kind: Some(master_message::Kind::Deploy(deploy)),
                }))
                .is_err()
            {
                let id = self.workers[w].id.clone();
                return self.fail(format!(
                    "could not deploy to worker {id}: its connection is gone"
                ));
            }
        }
    }

    fn on_task_state(&mut self, report: TaskStateReport) {
        let Some(task) = report.task else { return };
        if task.job_id != self.job_id || task.attempt != self.attempt {
            return;
        }
        let state = TaskState::try_from(report.state).unwrap_or(TaskState::Unspecified);
        if let Some(entry) = self.tasks.get_mut(&(task.vertex, task.subtask)) {
            entry.1 = state;
        }
        if self.status == JobStatus::Cancelling {
            return self.end_cancel_when_stopped();
        }
        if state == TaskState::Failed {
            return self.fail(report.failure);
        }
        if !self.tasks.is_empty() && self.tasks.values().all(|(_, s)| *s == TaskState::Finished) {
            let ran_for = self.deployed_at.map_or(Duration::ZERO, |t| t.elapsed());
            self.end(JobOutcome::Finished { ran_for });
        }
    }

    fn on_heartbeat(&mut self, beat: Heartbeat) {
        for task in beat.tasks {
            let Some(id) = task.task else { continue };
            if id.job_id != self.job_id || id.attempt != self.attempt {
                continue;
            }
            self.task_times.insert(
                (id.vertex, id.subtask),
                (task.busy_ms, task.backpressured_ms, task.watermark),
            );
            for op in task.operators {
                self.operator_metrics.insert((op.node, id.subtask), op);
            }
        }
    }

    /// Cancels the job (the REST API's `PATCH /v1/jobs/{id}`): stops its subtasks; the
    /// job is Cancelled once every one has stopped.
    fn cancel(&mut self) -> Result<JobStatus, JobStatus> {
        match self.status {
            JobStatus::Cancelled | JobStatus::Failed | JobStatus::Finished => Err(self.status),
            JobStatus::Cancelling => Ok(self.status),
            JobStatus::Created | JobStatus::Restarting | JobStatus::Running => {
                tracing::info!(job = %self.job_id, "cancelling the job");
                self.status = JobStatus::Cancelling;
                self.restart_pending = true;
                self.cancel_attempt();
                self.end_cancel_when_stopped();
                Ok(self.status)
            }
        }
    }

    /// While cancelling: ends the job once no subtask runs any more.
    fn end_cancel_when_stopped(&mut self) {
        let stopped = |s: &TaskState| {
            matches!(
                s,
                TaskState::Canceled | TaskState::Finished | TaskState::Failed
            )
        };
        if self.tasks.values().all(|(_, s)| stopped(s)) {
            self.end(JobOutcome::Cancelled);
        }
    }

    /// Forgets a worker; the job fails if the worker had unfinished subtasks.
    fn lose(&mut self, id: &str, why: &str) {
        self.workers.retain(|w| w.id != id);
        tracing::warn!(worker = %id, reason = why, "worker lost");
        if self.status == JobStatus::Cancelling {
            for (w, s) in self.tasks.values_mut() {
                if w == id {
                    *s = TaskState::Canceled;
                }
            }
            return self.end_cancel_when_stopped();
        }
        let unfinished = self
            .tasks
            .values()
            .any(|(w, s)| w == id && *s != TaskState::Finished);
        if unfinished {
            self.fail(format!(
                "worker {id} was lost ({why}) while running subtasks of the job"
            ));
        }
    }
}

impl MasterService {
    /// The job, if `id` is its id.
    pub(crate) fn job(&self, id: &str) -> Option<JobView> {
        let state = self.state();
        (state.job_id == id).then(|| state.job_view())
    }

    pub(crate) fn jobs(&self) -> Vec<JobView> {
        vec![self.state().job_view()]
    }

    pub(crate) fn workers(&self) -> Vec<WorkerView> {
        self.state().worker_views()
    }

    pub(crate) fn operator_metrics_text(&self) -> String {
        self.state().operator_metrics_text()
    }

    /// Cancels job `id`: `None` if there is no such job, else its state after the call or
    /// the final state that prevents cancelling.
    pub(crate) fn cancel(&self, id: &str) -> Option<Result<JobStatus, JobStatus>> {
        let mut state = self.state();
        (state.job_id == id).then(|| state.cancel())
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
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
            let connection = state.next_connection;
            state.next_connection += 1;
            state.workers.retain(|w| w.id != register.worker_id);
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
            state.try_deploy();
            connection
        };
        tokio::spawn(
            self.clone()
                .follow(register.worker_id, connection, incoming),
        );
        Ok(Response::new(Box::pin(ReceiverStream::new(outgoing))))
    }
}

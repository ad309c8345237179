//! One job on the master, from submission to its end: its attempts (each a deployment of
//! every subtask), their subtasks' states, the restart strategy's decisions, cancelling,
//! and the counters the workers' heartbeats bring. The master's `State` owns the workers
//! and hands them in; placing subtasks on free slots is its job too.

use super::checkpoints::{CompletedCheckpoint, JobCheckpoints, SavepointStatus};
use super::results::{JobResult, RESULT_FORMAT};
use super::state::WorkerEntry;
use super::{JobOutcome, JobStatus};
use crate::cluster::job::JobSubmission;
use crate::cluster::restart::{RestartStrategy, RestartTracker};
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant, SystemTime};
use strom_proto::control::{
    CancelJob, CheckpointKind, DeployTasks, JobArg, MasterMessage, NotifyCheckpointComplete,
    OperatorMetrics, Placement, TaskId, TaskMetrics, TaskState, TaskStateReport, TriggerCheckpoint,
    master_message,
};
use tokio::sync::{mpsc, watch};

/// What the master knows of a job's plan, built once when the job is submitted.
pub(crate) struct PlannedJob {
    pub submission: JobSubmission,
    /// Parallelism of each task vertex.
    pub parallelisms: Vec<usize>,
    pub vertex_names: Vec<String>,
    /// Names of the job graph's operators, by node index.
    pub operator_names: Vec<String>,
    /// Vertices whose head is a source: where checkpoints are triggered.
    pub source_vertices: Vec<u32>,
    pub max_parallelism: usize,
}

/// Asks for a restart of job `.0` after delay `.1`.
pub(crate) type RestartRequests = mpsc::UnboundedSender<(String, Duration)>;

pub(crate) struct JobRun {
    pub(crate) id: String,
    pub(crate) plan: PlannedJob,
    pub(crate) attempt: u32,
    /// Every subtask of the deployed attempt, by (vertex, subtask): its worker and state.
    pub(crate) tasks: HashMap<(u32, u32), (String, TaskState)>,
    outcome: watch::Sender<Option<JobOutcome>>,
    pub(crate) restart: RestartTracker,
    /// A restart is waiting for its delay: deploy nothing until then.
    restart_pending: bool,
    schedule_restart: RestartRequests,
    /// When the current attempt was deployed.
    deployed_at: Option<Instant>,
    pub(crate) status: JobStatus,
    pub(crate) started: SystemTime,
    pub(crate) started_at: Instant,
    pub(crate) ended_at: Option<Instant>,
    /// When it ended, by the wall clock (for its result).
    pub(crate) ended: Option<SystemTime>,
    /// The run (`strom master --run-id`) this job is.
    pub(crate) run_id: Option<String>,
    /// The stop-with-savepoint that ends (or ended) the job: its request id and where its
    /// savepoint went.
    pub(crate) stopped_with: Option<(u64, String)>,
    /// The checkpoint of the job's directory the job was started from, if it was: the
    /// newest completed one until one completes here.
    pub(crate) restored_checkpoint: Option<String>,
    /// How the job ended in an earlier process of its run: shown as it was, never
    /// deployed.
    pub(crate) recorded: Option<JobResult>,
    /// The latest counters of the current attempt, by (node, subtask), from heartbeats.
    pub(crate) operator_metrics: HashMap<(u32, u32), OperatorMetrics>,
    /// The latest busy and backpressured ms and watermark, by (vertex, subtask).
    pub(crate) task_times: HashMap<(u32, u32), (u64, u64, Option<i64>)>,
    /// Why the last attempt failed.
    pub(crate) failure: Option<String>,
    /// The free slots last logged while the job waited for more.
    pub(crate) waiting_for: Option<usize>,
    /// Checkpoints, when the job takes them.
    pub(crate) checkpoints: Option<JobCheckpoints>,
    /// What the first attempt restores from when no checkpoint completed since (the
    /// newest checkpoint a restarted master found).
    pub(crate) initial_restore: Option<String>,
    /// Stopping after a savepoint: the job ends Finished, not Cancelled.
    pub(crate) stopping: bool,
    /// A stop-with-savepoint waiting for its workers to pass the savepoint's completion
    /// on to their subtasks before it cancels them.
    stop_after: Option<StopAfterSavepoint>,
    /// A subtask failed because a channel between workers broke, and when: the job fails
    /// with that unless a worker loss explains it within `SUSPECT_GRACE`.
    suspected: Option<(String, Instant)>,
    /// The failed attempt's subtasks still running on live workers (by (vertex,
    /// subtask): their worker), and since when they are being cancelled.
    failed_attempt: FailedAttempt,
}

/// A failed attempt's subtasks that were told to cancel and have not said they stopped.
/// The next attempt waits for them (as Flink waits for its tasks to reach a terminal
/// state before it restarts a region): a subtask of the failed attempt must not act —
/// e.g. commit a transaction as a checkpoint completes — once its successor restored.
#[derive(Default)]
struct FailedAttempt {
    attempt: u32,
    running: HashMap<(u32, u32), String>,
    since: Option<Instant>,
}

/// Whether a subtask in state `s` runs no more.
fn has_stopped(s: &TaskState) -> bool {
    matches!(
        s,
        TaskState::Canceled | TaskState::Finished | TaskState::Failed
    )
}

/// How long a restart waits for the failed attempt's subtasks to stop before it deploys
/// anyway (a worker that never answers is lost after its heartbeat timeout).
const FAILED_ATTEMPT_STOP_WAIT: Duration = Duration::from_secs(10);

/// A stop-with-savepoint between the savepoint's completion and the cancel.
struct StopAfterSavepoint {
    savepoint: u64,
    /// Workers with subtasks of the attempt that have not said they heard of it yet.
    waiting: BTreeSet<String>,
    since: Instant,
}

/// How long a stop waits for workers to hear of its savepoint before it cancels anyway
/// (a worker that does not answer is lost or about to be).
const STOP_GRACE: Duration = Duration::from_secs(5);

/// How long a channel failure waits for the worker loss that may explain it.
pub(crate) const SUSPECT_GRACE: Duration = Duration::from_millis(1500);

/// Whether a subtask's failure is a broken channel between workers.
fn is_network_failure(failure: &str) -> bool {
    failure.contains("sending to another worker failed")
        || failure.contains("receiving from another worker failed")
        || failure.contains("a connected task stopped")
}

impl JobRun {
    pub(crate) fn new(
        id: String,
        plan: PlannedJob,
        restart: RestartStrategy,
        schedule_restart: RestartRequests,
    ) -> Self {
        JobRun {
            id,
            plan,
            attempt: 0,
            tasks: HashMap::new(),
            outcome: watch::channel(None).0,
            restart: RestartTracker::new(restart),
            restart_pending: false,
            schedule_restart,
            deployed_at: None,
            status: JobStatus::Created,
            started: SystemTime::now(),
            started_at: Instant::now(),
            ended_at: None,
            ended: None,
            run_id: None,
            stopped_with: None,
            restored_checkpoint: None,
            recorded: None,
            operator_metrics: HashMap::new(),
            task_times: HashMap::new(),
            failure: None,
            waiting_for: None,
            checkpoints: None,
            initial_restore: None,
            stopping: false,
            stop_after: None,
            suspected: None,
            failed_attempt: FailedAttempt::default(),
        }
    }

    /// The job's outcome once it has one.
    pub(crate) fn outcome(&self) -> watch::Receiver<Option<JobOutcome>> {
        self.outcome.subscribe()
    }

    pub(crate) fn ended(&self) -> bool {
        self.outcome.borrow().is_some()
    }

    /// Makes this the job of run `result.run_id` that ended in an earlier process of the
    /// run: it shows as it ended (with the stop's savepoint status, if a stop ended it)
    /// and is never deployed.
    pub(crate) fn ended_before(&mut self, result: JobResult) {
        self.run_id = Some(result.run_id.clone());
        self.status = result.state;
        self.failure = result.failure.clone();
        self.started = SystemTime::UNIX_EPOCH + Duration::from_millis(result.start_time_ms);
        self.ended = Some(SystemTime::UNIX_EPOCH + Duration::from_millis(result.end_time_ms));
        self.ended_at = Some(Instant::now());
        self.restored_checkpoint = result.last_checkpoint.clone();
        if let Some(location) = &result.savepoint {
            let request = result.savepoint_request.unwrap_or(0);
            self.stopped_with = Some((request, location.clone()));
            if let Some(c) = &mut self.checkpoints {
                c.savepoints.insert(
                    request,
                    SavepointStatus::Completed {
                        location: location.clone(),
                    },
                );
            }
        }
        let outcome = result.outcome();
        self.recorded = Some(result);
        self.outcome.send_replace(Some(outcome));
    }

    /// The newest completed checkpoint of the job (or the one it started from).
    pub(crate) fn last_checkpoint(&self) -> Option<String> {
        self.checkpoints
            .as_ref()
            .and_then(|c| c.latest.clone())
            .or_else(|| self.restored_checkpoint.clone())
    }

    /// Where the savepoint went of the stop-with-savepoint that ended the job, once it
    /// ended so.
    pub(crate) fn stop_savepoint(&self) -> Option<&str> {
        match (&self.stopped_with, self.status) {
            (Some((_, location)), JobStatus::Finished) => Some(location),
            _ => None,
        }
    }

    /// How the job ended, for the result store; `None` while it runs or without a run id.
    pub(crate) fn result(&self) -> Option<JobResult> {
        if !self.ended() {
            return None;
        }
        if let Some(recorded) = &self.recorded {
            return Some(recorded.clone());
        }
        let ms = |t: SystemTime| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64)
        };
        let stopped = self
            .stopped_with
            .as_ref()
            .filter(|_| self.stop_savepoint().is_some());
        Some(JobResult {
            format: RESULT_FORMAT,
            run_id: self.run_id.clone()?,
            job_id: self.id.clone(),
            job: self.plan.submission.name.clone(),
            state: self.status,
            savepoint: stopped.map(|(_, location)| location.clone()),
            savepoint_request: stopped.map(|(request, _)| *request),
            failure: self.failure.clone(),
            last_checkpoint: self.last_checkpoint(),
            restarts: self.restart.restarts(),
            start_time_ms: ms(self.started),
            end_time_ms: ms(self.ended.unwrap_or_else(SystemTime::now)),
        })
    }

    /// Waiting for slots: neither deployed, nor ended, nor waiting for a restart's delay
    /// or for the failed attempt's subtasks to stop.
    pub(crate) fn wants_slots(&self) -> bool {
        self.tasks.is_empty()
            && !self.ended()
            && !self.restart_pending
            && self.failed_attempt.running.is_empty()
            && self.status != JobStatus::Cancelling
    }

    /// Stops waiting for failed subtasks that did not say they stopped in
    /// `FAILED_ATTEMPT_STOP_WAIT`, saying which.
    pub(crate) fn give_up_on_failed_attempt(&mut self) {
        let failed = &mut self.failed_attempt;
        if failed.running.is_empty()
            || failed
                .since
                .is_none_or(|t| t.elapsed() < FAILED_ATTEMPT_STOP_WAIT)
        {
            return;
        }
        let workers: BTreeSet<&String> = failed.running.values().collect();
        tracing::warn!(
            job = %self.id,
            attempt = failed.attempt,
            subtasks = failed.running.len(),
            ?workers,
            "the failed attempt's subtasks did not stop in time; restarting anyway"
        );
        failed.running.clear();
    }

    /// The restart's delay is over: the job may be deployed again.
    pub(crate) fn restart_due(&mut self) {
        self.restart_pending = false;
    }

    /// Slots this job's current attempt holds on worker `id`: with slot sharing, one per
    /// subtask index placed there. An ended job holds none (its subtasks stay listed).
    pub(crate) fn slots_on(&self, id: &str) -> u32 {
        if self.ended() {
            return 0;
        }
        self.tasks
            .iter()
            .filter(|(_, (w, _))| w == id)
            .map(|((_, subtask), _)| *subtask)
            .collect::<BTreeSet<u32>>()
            .len() as u32
    }

    fn end(&mut self, outcome: JobOutcome) {
        if self.ended() {
            return;
        }
        self.ended_at = Some(Instant::now());
        self.ended = Some(SystemTime::now());
        self.status = match &outcome {
            JobOutcome::Finished { .. } => JobStatus::Finished,
            JobOutcome::Failed(_) => JobStatus::Failed,
            JobOutcome::Cancelled => JobStatus::Cancelled,
        };
        match &outcome {
            JobOutcome::Cancelled => tracing::info!(job = %self.id, "job cancelled"),
            JobOutcome::Finished { ran_for } => tracing::info!(
                job = %self.id,
                ran_ms = ran_for.as_millis() as u64,
                "job finished"
            ),
            JobOutcome::Failed(why) => {
                self.failure = Some(why.clone());
                tracing::error!(job = %self.id, error = %why, "job failed")
            }
        }
        // `send_replace`: `send` keeps nothing when no one watches (session mode).
        self.outcome.send_replace(Some(outcome));
    }

    /// Tells every worker with subtasks of the current attempt to cancel them.
    fn cancel_attempt(&self, workers: &[WorkerEntry]) {
        let cancel = CancelJob {
            job_id: self.id.clone(),
            attempt: self.attempt,
        };
        for worker in workers {
            if self.tasks.values().any(|(w, _)| *w == worker.id) {
                let _ = worker.to_worker.try_send(Ok(MasterMessage {
                    kind: Some(master_message::Kind::Cancel(cancel.clone())),
                }));
            }
        }
    }

    /// The current attempt failed: cancel what still runs of it, then restart or give up
    /// as the restart strategy says.
    fn fail(&mut self, workers: &[WorkerEntry], why: String) {
        self.suspected = None;
        if self.ended() || self.tasks.is_empty() {
            return;
        }
        self.cancel_attempt(workers);
        self.failed_attempt = FailedAttempt {
            attempt: self.attempt,
            running: self
                .tasks
                .drain()
                .filter(|(_, (w, s))| !has_stopped(s) && workers.iter().any(|x| x.id == *w))
                .map(|(key, (w, _))| (key, w))
                .collect(),
            since: Some(Instant::now()),
        };
        self.failure = Some(why.clone());
        if let Some(c) = &mut self.checkpoints {
            c.pending.clear();
            c.finished.clear();
        }
        match self.restart.on_failure(Instant::now()) {
            Some(delay) => {
                self.attempt += 1;
                self.restart_pending = true;
                self.status = JobStatus::Restarting;
                let from = self
                    .checkpoints
                    .as_ref()
                    .and_then(|c| c.latest.clone())
                    .or_else(|| self.initial_restore.clone());
                tracing::warn!(
                    job = %self.id,
                    error = %why,
                    restart = self.restart.restarts(),
                    delay_ms = delay.as_millis() as u64,
                    from = from.as_deref().unwrap_or("scratch"),
                    "{}",
                    if from.is_some() || self.checkpoints.is_some() {
                        // A checkpoint in flight may still complete before the restart.
                        "job failed; restarting it from its latest checkpoint, if it has one"
                    } else {
                        "job failed; restarting it from scratch"
                    }
                );
                let _ = self.schedule_restart.send((self.id.clone(), delay));
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

    /// Deploys an attempt: subtask `s` of vertex `v` to `workers[placement[v][s]]`.
    pub(crate) fn deploy(&mut self, workers: &[WorkerEntry], placement: &[Vec<usize>]) {
        self.deployed_at = Some(Instant::now());
        self.waiting_for = None;
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
                worker_id: workers[w].id.clone(),
                data_address: workers[w].data_address.clone(),
            })
            .collect();
        let submission = &self.plan.submission;
        let config_json = match serde_json::to_string(submission) {
            Ok(json) => json,
            Err(e) => return self.end(JobOutcome::Failed(format!("job settings: {e}"))),
        };
        // The newest completed checkpoint, else what a restarted master found.
        let restore_from = self
            .checkpoints
            .as_ref()
            .and_then(|c| c.latest.clone())
            .or_else(|| self.initial_restore.clone())
            .unwrap_or_default();
        if !restore_from.is_empty() {
            tracing::info!(job = %self.id, checkpoint = %restore_from, "deploying from a checkpoint");
        }
        let args = submission
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
        for worker in workers {
            let tasks: Vec<TaskId> = placements
                .iter()
                .filter(|p| p.worker_id == worker.id)
                .map(|p| TaskId {
                    job_id: self.id.clone(),
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
                job_id: self.id.clone(),
                attempt: self.attempt,
                job_name: submission.name.clone(),
                args: args.clone(),
                config_json: config_json.clone(),
                placements: placements.clone(),
                tasks,
                restore_from: restore_from.clone(),
            };
            tracing::info!(
                job = %self.id,
                worker = %worker.id,
                tasks = deploy.tasks.len(),
                "deploying subtasks"
            );
            if worker
                .to_worker
                .try_send(Ok(MasterMessage {
                    kind: Some(master_message::Kind::Deploy(deploy)),
                }))
                .is_err()
            {
                let id = worker.id.clone();
                return self.fail(
                    workers,
                    format!("could not deploy to worker {id}: its connection is gone"),
                );
            }
        }
    }

    /// A subtask of this job changed state.
    pub(crate) fn on_task_state(&mut self, workers: &[WorkerEntry], report: TaskStateReport) {
        let Some(task) = report.task else { return };
        let state = TaskState::try_from(report.state).unwrap_or(TaskState::Unspecified);
        if task.attempt == self.failed_attempt.attempt && has_stopped(&state) {
            self.failed_attempt
                .running
                .remove(&(task.vertex, task.subtask));
        }
        if task.attempt != self.attempt {
            return;
        }
        if let Some(entry) = self.tasks.get_mut(&(task.vertex, task.subtask)) {
            entry.1 = state;
        }
        if self.status == JobStatus::Cancelling {
            return self.end_cancel_when_stopped();
        }
        if state == TaskState::Failed {
            // A channel to or from another worker broke: most likely that worker died, and
            // its loss (reported a moment later) is the cause worth telling. Wait for it
            // a little before failing with the channel's error.
            if is_network_failure(&report.failure) {
                self.suspected
                    .get_or_insert((report.failure, Instant::now()));
                return;
            }
            return self.fail(workers, report.failure);
        }
        if !self.tasks.is_empty() && self.tasks.values().all(|(_, s)| *s == TaskState::Finished) {
            let ran_for = self.deployed_at.map_or(Duration::ZERO, |t| t.elapsed());
            self.end(JobOutcome::Finished { ran_for });
        }
    }

    /// Starts a checkpoint if the job checkpoints, runs every subtask, and has none in
    /// flight: tells the workers of its source subtasks to inject the barrier. Its id.
    pub(crate) fn trigger_checkpoint(
        &mut self,
        workers: &[WorkerEntry],
        savepoint: Option<std::sync::Arc<str>>,
    ) -> Option<u64> {
        let checkpoints = self.checkpoints.as_mut()?;
        // Every subtask runs, or has ended and left its final state.
        let ready = self.status == JobStatus::Running
            && !self.tasks.is_empty()
            && self.tasks.iter().all(|(key, (_, s))| {
                *s == TaskState::Running
                    || (*s == TaskState::Finished && checkpoints.finished.contains_key(key))
            });
        let sources_left = self.tasks.iter().any(|((v, _), (_, s))| {
            self.plan.source_vertices.contains(v) && *s == TaskState::Running
        });
        if !ready || !sources_left || !checkpoints.may_start(savepoint.is_some()) {
            return None;
        }
        let now_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let barrier = checkpoints.start(self.attempt, self.tasks.len(), now_ms, savepoint.clone());
        let trigger = TriggerCheckpoint {
            job_id: self.id.clone(),
            attempt: self.attempt,
            checkpoint_id: barrier.id,
            timestamp_ms: barrier.timestamp,
            kind: if savepoint.is_some() {
                CheckpointKind::Savepoint
            } else {
                CheckpointKind::Checkpoint
            }
            .into(),
            target: savepoint.as_deref().unwrap_or_default().to_string(),
            drain: false,
        };
        for worker in workers {
            let runs_a_source = self
                .tasks
                .iter()
                .any(|((v, _), (w, _))| *w == worker.id && self.plan.source_vertices.contains(v));
            if runs_a_source {
                let _ = worker.to_worker.try_send(Ok(MasterMessage {
                    kind: Some(master_message::Kind::TriggerCheckpoint(trigger.clone())),
                }));
            }
        }
        Some(barrier.id)
    }

    /// Checkpoint `id` completed at `location`: restarts deploy from it, and every worker
    /// of the attempt hears of it.
    pub(crate) fn checkpoint_completed(
        &mut self,
        workers: &[WorkerEntry],
        checkpoint: CompletedCheckpoint,
        location: String,
    ) {
        let Some(checkpoints) = &mut self.checkpoints else {
            return;
        };
        let id = checkpoint.id;
        checkpoints.latest = Some(location);
        checkpoints.last_completed = Some(checkpoint);
        checkpoints.completed += 1;
        self.notify_checkpoint_complete(workers, id);
    }

    /// Every worker of the attempt hears that checkpoint (or savepoint) `id` completed.
    pub(crate) fn notify_checkpoint_complete(&self, workers: &[WorkerEntry], id: u64) {
        let done = NotifyCheckpointComplete {
            job_id: self.id.clone(),
            attempt: self.attempt,
            checkpoint_id: id,
        };
        for worker in workers {
            if self.tasks.values().any(|(w, _)| *w == worker.id) {
                let _ = worker.to_worker.try_send(Ok(MasterMessage {
                    kind: Some(master_message::Kind::CheckpointComplete(done.clone())),
                }));
            }
        }
    }

    /// Ends the job after its stop-with-savepoint `savepoint` completed. Every worker
    /// hears of the savepoint first; the subtasks are cancelled once each worker said
    /// it passed that on (or after `STOP_GRACE`). Cancelling at once would let one
    /// worker's cancelled subtasks close their channels into another worker's sink
    /// before that worker even heard of the savepoint, and the sink would end with the
    /// savepoint's output still pending.
    pub(crate) fn stop_after_savepoint(&mut self, workers: &[WorkerEntry], savepoint: u64) {
        self.notify_checkpoint_complete(workers, savepoint);
        self.stopping = true;
        let waiting = workers
            .iter()
            .filter(|w| self.tasks.values().any(|(t, _)| *t == w.id))
            .map(|w| w.id.clone())
            .collect();
        self.stop_after = Some(StopAfterSavepoint {
            savepoint,
            waiting,
            since: Instant::now(),
        });
        self.cancel_when_stop_heard(workers);
    }

    /// Worker `worker` passed the completion of checkpoint `heard` on to its subtasks.
    pub(crate) fn on_checkpoint_complete_received(
        &mut self,
        workers: &[WorkerEntry],
        worker: &str,
        heard: &NotifyCheckpointComplete,
    ) {
        if let Some(stop) = &mut self.stop_after
            && heard.attempt == self.attempt
            && heard.checkpoint_id >= stop.savepoint
        {
            stop.waiting.remove(worker);
        }
        self.cancel_when_stop_heard(workers);
    }

    /// Cancels a stopping job once every worker heard of its savepoint, or the grace
    /// is over.
    pub(crate) fn cancel_when_stop_heard(&mut self, workers: &[WorkerEntry]) {
        let Some(stop) = &self.stop_after else {
            return;
        };
        let overdue = stop.since.elapsed() >= STOP_GRACE;
        if !stop.waiting.is_empty() && !overdue {
            return;
        }
        if overdue && !stop.waiting.is_empty() {
            tracing::warn!(job = %self.id, workers = ?stop.waiting, "not every worker said it heard of the stop's savepoint; cancelling anyway");
        }
        self.stop_after = None;
        let _ = self.cancel(workers);
    }

    /// Fails the attempt with a channel failure no worker loss has explained in time.
    pub(crate) fn fail_if_unexplained(&mut self, workers: &[WorkerEntry]) {
        if let Some((why, since)) = &self.suspected
            && since.elapsed() >= SUSPECT_GRACE
        {
            let why = why.clone();
            self.fail(workers, why);
        }
    }

    /// A heartbeat's counters of one of this job's subtasks.
    pub(crate) fn on_task_metrics(&mut self, id: &TaskId, metrics: TaskMetrics) {
        if id.attempt != self.attempt {
            return;
        }
        self.task_times.insert(
            (id.vertex, id.subtask),
            (metrics.busy_ms, metrics.backpressured_ms, metrics.watermark),
        );
        for op in metrics.operators {
            self.operator_metrics.insert((op.node, id.subtask), op);
        }
    }

    /// Cancels the job (the REST API's `PATCH /v1/jobs/{id}`): stops its subtasks; the
    /// job is Cancelled once every one has stopped. Its final state if it has one.
    pub(crate) fn cancel(&mut self, workers: &[WorkerEntry]) -> Result<JobStatus, JobStatus> {
        match self.status {
            JobStatus::Cancelled | JobStatus::Failed | JobStatus::Finished => Err(self.status),
            JobStatus::Cancelling => Ok(self.status),
            JobStatus::Created | JobStatus::Restarting | JobStatus::Running => {
                tracing::info!(job = %self.id, "cancelling the job");
                self.status = JobStatus::Cancelling;
                self.restart_pending = true;
                self.cancel_attempt(workers);
                self.end_cancel_when_stopped();
                Ok(self.status)
            }
        }
    }

    /// While cancelling: ends the job once no subtask runs any more.
    fn end_cancel_when_stopped(&mut self) {
        if self.tasks.values().all(|(_, s)| has_stopped(s)) {
            if self.stopping {
                let ran_for = self.deployed_at.map_or(Duration::ZERO, |t| t.elapsed());
                self.end(JobOutcome::Finished { ran_for });
            } else {
                self.end(JobOutcome::Cancelled);
            }
        }
    }

    /// Worker `id` is gone (already out of `workers`): the attempt fails if it had
    /// unfinished subtasks there.
    pub(crate) fn on_worker_lost(&mut self, workers: &[WorkerEntry], id: &str, why: &str) {
        self.failed_attempt.running.retain(|_, w| w != id);
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
            self.fail(
                workers,
                format!("worker {id} was lost ({why}) while running subtasks of the job"),
            );
        }
    }
}

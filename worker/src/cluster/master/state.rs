//! The master's state: the workers attached to it, and the jobs it was given (in
//! submission order). It places a waiting job's subtasks on the slots the other jobs leave
//! free, and routes what workers report to the job it concerns.

use super::JobStatus;
use super::checkpoints::{CompletedCheckpoint, JobCheckpoints};
use super::job_run::{JobRun, PlannedJob, RestartRequests};
use super::results::JobResult;
use crate::cluster::placement::{place, slots_needed};
use crate::cluster::restart::RestartStrategy;
use std::time::{Instant, SystemTime};
use strom_proto::control::{
    CheckpointAck, CheckpointDeclined, Heartbeat, MasterMessage, NotifyCheckpointComplete,
    TaskStateReport,
};
use tokio::sync::mpsc;
use tonic::Status;

/// Ended jobs the master remembers for the REST API; older ones are forgotten.
const ENDED_JOBS_KEPT: usize = 100;

pub(crate) struct WorkerEntry {
    pub(crate) id: String,
    pub(crate) data_address: String,
    pub(crate) slots: u32,
    /// Tells a reattached worker's old stream from its new one.
    pub(crate) connection: u64,
    pub(crate) to_worker: mpsc::Sender<Result<MasterMessage, Status>>,
    pub(crate) last_heard: Instant,
}

pub(crate) struct State {
    /// In registration order, which is the order slots are filled in.
    pub(crate) workers: Vec<WorkerEntry>,
    pub(crate) next_connection: u64,
    /// In submission order, which is the order waiting jobs get slots in.
    pub(crate) jobs: Vec<JobRun>,
    restart: RestartStrategy,
    schedule_restart: RestartRequests,
}

impl State {
    pub(crate) fn new(restart: RestartStrategy, schedule_restart: RestartRequests) -> Self {
        State {
            workers: Vec::new(),
            next_connection: 0,
            jobs: Vec::new(),
            restart,
            schedule_restart,
        }
    }

    pub(crate) fn job_mut(&mut self, id: &str) -> Option<&mut JobRun> {
        self.jobs.iter_mut().find(|j| j.id == id)
    }

    /// Adds a planned job under a new id (its name and the submission time), with its
    /// checkpointing, and deploys it if slots are free.
    pub(crate) fn submit(
        &mut self,
        plan: PlannedJob,
        checkpoints: Option<JobCheckpoints>,
        initial_restore: Option<String>,
    ) -> String {
        let millis = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let base = format!("{}-{millis}", plan.submission.name);
        let mut id = base.clone();
        for n in 2.. {
            if self.jobs.iter().all(|j| j.id != id) {
                break;
            }
            id = format!("{base}-{n}");
        }
        tracing::info!(job = %id, parallelism = plan.submission.parallelism, "job submitted");
        let mut job = JobRun::new(
            id.clone(),
            plan,
            self.restart.clone(),
            self.schedule_restart.clone(),
        );
        job.checkpoints = checkpoints;
        job.initial_restore = initial_restore;
        self.jobs.push(job);
        self.settle();
        id
    }

    /// Adds the job of a run that ended in an earlier process of the run, under the id it
    /// had there: it shows as it ended and is never deployed.
    pub(crate) fn add_ended(
        &mut self,
        plan: PlannedJob,
        checkpoints: Option<JobCheckpoints>,
        result: JobResult,
    ) -> String {
        let id = result.job_id.clone();
        let mut job = JobRun::new(
            id.clone(),
            plan,
            self.restart.clone(),
            self.schedule_restart.clone(),
        );
        job.checkpoints = checkpoints;
        job.ended_before(result);
        self.jobs.push(job);
        self.settle();
        id
    }

    /// Slots of each worker (in `workers` order) that no job holds.
    fn free_slots(&self) -> Vec<u32> {
        self.workers
            .iter()
            .map(|w| {
                let held: u32 = self.jobs.iter().map(|j| j.slots_on(&w.id)).sum();
                w.slots.saturating_sub(held)
            })
            .collect()
    }

    /// After any change: deploys every job waiting for slots that the free slots can
    /// take, in submission order, and forgets the oldest ended jobs beyond
    /// `ENDED_JOBS_KEPT`.
    pub(crate) fn settle(&mut self) {
        self.deploy_waiting();
        let ended = self.jobs.iter().filter(|j| j.ended()).count();
        let mut forget = ended.saturating_sub(ENDED_JOBS_KEPT);
        self.jobs.retain(|j| {
            let keep = forget == 0 || !j.ended();
            forget -= usize::from(!keep);
            keep
        });
    }

    fn deploy_waiting(&mut self) {
        for j in 0..self.jobs.len() {
            if !self.jobs[j].wants_slots() {
                continue;
            }
            let free = self.free_slots();
            let job = &mut self.jobs[j];
            match place(&job.plan.parallelisms, &free) {
                Ok(placement) => job.deploy(&self.workers, &placement),
                // Said once per count of free slots, not at every report that frees none.
                Err(e) if job.waiting_for != Some(e.available) => {
                    job.waiting_for = Some(e.available);
                    tracing::info!(
                        job = %job.id,
                        needed = slots_needed(&job.plan.parallelisms),
                        free = e.available,
                        "waiting for workers to offer enough free slots"
                    );
                }
                Err(_) => {}
            }
        }
    }

    pub(crate) fn on_task_state(&mut self, report: TaskStateReport) {
        let Some(job_id) = report.task.as_ref().map(|t| t.job_id.clone()) else {
            return;
        };
        let State { workers, jobs, .. } = self;
        if let Some(job) = jobs.iter_mut().find(|j| j.id == job_id) {
            job.on_task_state(workers, report);
        }
        // A job that ended or failed freed its slots.
        self.settle();
    }

    pub(crate) fn on_checkpoint_ack(&mut self, ack: CheckpointAck) {
        let Some(job_id) = ack.task.as_ref().map(|t| t.job_id.clone()) else {
            return;
        };
        if let Some(job) = self.job_mut(&job_id) {
            let attempt = job.attempt;
            if let Some(c) = job.checkpoints.as_mut() {
                c.on_ack(attempt, ack);
            }
        }
    }

    pub(crate) fn on_checkpoint_declined(&mut self, declined: CheckpointDeclined) {
        let Some(job_id) = declined.task.as_ref().map(|t| t.job_id.clone()) else {
            return;
        };
        if let Some(c) = self.job_mut(&job_id).and_then(|j| j.checkpoints.as_mut()) {
            c.on_declined(declined);
        }
    }

    /// Starts a checkpoint (or, with a directory, a savepoint) of job `id` if it can take
    /// one now.
    pub(crate) fn trigger_checkpoint(
        &mut self,
        id: &str,
        savepoint: Option<std::sync::Arc<str>>,
    ) -> Option<u64> {
        let State { workers, jobs, .. } = self;
        jobs.iter_mut()
            .find(|j| j.id == id)?
            .trigger_checkpoint(workers, savepoint)
    }

    /// Checkpoint `checkpoint` of job `id` completed at `location`.
    pub(crate) fn checkpoint_completed(
        &mut self,
        id: &str,
        checkpoint: CompletedCheckpoint,
        location: String,
    ) {
        let State { workers, jobs, .. } = self;
        if let Some(job) = jobs.iter_mut().find(|j| j.id == id) {
            job.checkpoint_completed(workers, checkpoint, location);
        }
    }

    pub(crate) fn on_heartbeat(&mut self, beat: Heartbeat) {
        for task in beat.tasks {
            let Some(id) = task.task.clone() else {
                continue;
            };
            if let Some(job) = self.job_mut(&id.job_id) {
                job.on_task_metrics(&id, task);
            }
        }
    }

    /// Cancels job `id`: `None` if there is no such job, else its state after the call or
    /// the final state that prevents cancelling.
    pub(crate) fn cancel(&mut self, id: &str) -> Option<Result<JobStatus, JobStatus>> {
        let State { workers, jobs, .. } = self;
        let result = jobs.iter_mut().find(|j| j.id == id)?.cancel(workers);
        self.settle();
        Some(result)
    }

    /// Ends job `id` after its stop-with-savepoint `savepoint` completed: its subtasks
    /// hear of the savepoint, are cancelled, and the job is Finished once they stopped.
    pub(crate) fn stop(&mut self, id: &str, savepoint: u64) {
        let State { workers, jobs, .. } = self;
        if let Some(job) = jobs.iter_mut().find(|j| j.id == id) {
            job.stop_after_savepoint(workers, savepoint);
        }
        self.settle();
    }

    /// Worker `worker` passed the completion of a checkpoint on to its subtasks.
    pub(crate) fn on_checkpoint_complete_received(
        &mut self,
        worker: &str,
        heard: NotifyCheckpointComplete,
    ) {
        let State { workers, jobs, .. } = self;
        if let Some(job) = jobs.iter_mut().find(|j| j.id == heard.job_id) {
            job.on_checkpoint_complete_received(workers, worker, &heard);
        }
        self.settle();
    }

    /// Fails jobs whose channel failures no worker loss has explained in time, and
    /// cancels stopping jobs whose workers did not all answer in time.
    pub(crate) fn fail_unexplained(&mut self) {
        let State { workers, jobs, .. } = self;
        for job in jobs.iter_mut() {
            job.fail_if_unexplained(workers);
            job.cancel_when_stop_heard(workers);
            job.give_up_on_failed_attempt();
        }
        self.settle();
    }

    /// A waiting restart's delay is over.
    pub(crate) fn restart_due(&mut self, id: &str) {
        if let Some(job) = self.job_mut(id) {
            job.restart_due();
        }
        self.settle();
    }

    /// Forgets a worker; every job with unfinished subtasks on it fails.
    pub(crate) fn lose(&mut self, id: &str, why: &str) {
        self.workers.retain(|w| w.id != id);
        tracing::warn!(worker = %id, reason = why, "worker lost");
        let State { workers, jobs, .. } = self;
        for job in jobs.iter_mut() {
            job.on_worker_lost(workers, id, why);
        }
        self.settle();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::job::JobSubmission;
    use strom_proto::control::{TaskId, TaskState, master_message};

    type Inbox = mpsc::Receiver<Result<MasterMessage, Status>>;

    fn state_with_workers(slots: &[(&str, u32)]) -> (State, Vec<Inbox>) {
        let (restarts, _) = mpsc::unbounded_channel();
        let mut state = State::new(RestartStrategy::None, restarts);
        let mut inboxes = Vec::new();
        for (n, (id, slots)) in slots.iter().enumerate() {
            let (to_worker, inbox) = mpsc::channel(16);
            state.workers.push(WorkerEntry {
                id: id.to_string(),
                data_address: format!("127.0.0.1:{}", 7000 + n),
                slots: *slots,
                connection: n as u64,
                to_worker,
                last_heard: Instant::now(),
            });
            inboxes.push(inbox);
        }
        (state, inboxes)
    }

    fn job(name: &str, parallelisms: &[usize]) -> PlannedJob {
        PlannedJob {
            submission: JobSubmission {
                name: name.into(),
                args: Vec::new(),
                parallelism: parallelisms.iter().copied().max().unwrap_or(1),
                max_parallelism: 128,
                batch_size: 1024,
                batch_mode: false,
                checkpoints: None,
                from_checkpoint: None,
                allow_non_restored_state: false,
                state: None,
            },
            parallelisms: parallelisms.to_vec(),
            vertex_names: parallelisms.iter().map(|p| format!("v{p}")).collect(),
            operator_names: Vec::new(),
            source_vertices: vec![0],
            max_parallelism: 128,
        }
    }

    /// The job ids deployed to a worker since the last look.
    fn deployed(inbox: &mut Inbox) -> Vec<String> {
        std::iter::from_fn(|| inbox.try_recv().ok())
            .filter_map(|m| match m.ok()?.kind? {
                master_message::Kind::Deploy(d) => Some(d.job_id),
                _ => None,
            })
            .collect()
    }

    fn slots_free(state: &State) -> Vec<u32> {
        state.worker_views().iter().map(|w| w.slots_free).collect()
    }

    fn status(state: &State, id: &str) -> JobStatus {
        state.jobs.iter().find(|j| j.id == id).unwrap().status
    }

    fn report_all(state: &mut State, id: &str, to: TaskState) {
        let job = state.jobs.iter().find(|j| j.id == id).unwrap();
        let attempt = job.attempt;
        let tasks: Vec<(u32, u32)> = job.tasks.keys().copied().collect();
        for (vertex, subtask) in tasks {
            state.on_task_state(TaskStateReport {
                task: Some(TaskId {
                    job_id: id.into(),
                    attempt,
                    vertex,
                    subtask,
                }),
                state: to.into(),
                failure: "it broke".into(),
            });
        }
    }

    #[test]
    fn jobs_take_free_slots_and_a_waiting_job_runs_when_one_ends() {
        let (mut state, mut inboxes) = state_with_workers(&[("w1", 2), ("w2", 1)]);
        // A fills w1's two slots (slots are filled worker by worker), B takes w2's.
        let a = state.submit(job("a", &[2, 2]), None, None);
        let b = state.submit(job("b", &[1]), None, None);
        let c = state.submit(job("c", &[1]), None, None);
        assert_eq!(deployed(&mut inboxes[0]), [a.as_str()]);
        assert_eq!(deployed(&mut inboxes[1]), [b.as_str()]);
        assert_eq!(status(&state, &c), JobStatus::Created);
        assert_eq!(slots_free(&state), [0, 0]);

        report_all(&mut state, &a, TaskState::Running);
        report_all(&mut state, &a, TaskState::Finished);
        assert_eq!(status(&state, &a), JobStatus::Finished);
        // A's slots are free again: C runs on w1.
        assert_eq!(deployed(&mut inboxes[0]), [c.as_str()]);
        assert_eq!(status(&state, &c), JobStatus::Running);
        assert_eq!(slots_free(&state), [1, 0]);
    }

    /// What a worker was sent since the last look, as short words.
    fn sent(inbox: &mut Inbox) -> Vec<String> {
        std::iter::from_fn(|| inbox.try_recv().ok())
            .filter_map(|m| match m.ok()?.kind? {
                master_message::Kind::Deploy(_) => Some("deploy".to_string()),
                master_message::Kind::CheckpointComplete(c) => {
                    Some(format!("complete {}", c.checkpoint_id))
                }
                master_message::Kind::Cancel(_) => Some("cancel".to_string()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_stop_cancels_no_subtask_before_every_worker_heard_of_its_savepoint() {
        // A cancelled subtask on one worker closes its channels into the other's sink:
        // had that worker not heard of the savepoint yet, its sink would end with the
        // savepoint's output pending (seen as a flaky stop-with-savepoint test).
        let (mut state, mut inboxes) = state_with_workers(&[("w1", 1), ("w2", 1)]);
        let a = state.submit(job("a", &[2]), None, None);
        report_all(&mut state, &a, TaskState::Running);
        for inbox in &mut inboxes {
            assert_eq!(sent(inbox), ["deploy"]);
        }
        state.stop(&a, 7);
        for inbox in &mut inboxes {
            assert_eq!(sent(inbox), ["complete 7"]);
        }
        let heard = |w: &str, id: u64, state: &mut State| {
            state.on_checkpoint_complete_received(
                w,
                NotifyCheckpointComplete {
                    job_id: a.clone(),
                    attempt: 0,
                    checkpoint_id: id,
                },
            )
        };
        // An older checkpoint's word does not count.
        heard("w1", 6, &mut state);
        heard("w2", 7, &mut state);
        assert!(sent(&mut inboxes[0]).is_empty());
        assert!(sent(&mut inboxes[1]).is_empty());
        assert_eq!(status(&state, &a), JobStatus::Running);
        heard("w1", 7, &mut state);
        for inbox in &mut inboxes {
            assert_eq!(sent(inbox), ["cancel"]);
        }
        report_all(&mut state, &a, TaskState::Canceled);
        assert_eq!(status(&state, &a), JobStatus::Finished);
    }

    #[test]
    fn a_lost_worker_fails_only_the_jobs_that_ran_on_it() {
        let (mut state, _inboxes) = state_with_workers(&[("w1", 1), ("w2", 1)]);
        let a = state.submit(job("a", &[1]), None, None);
        let b = state.submit(job("b", &[1]), None, None);
        state.lose("w2", "no heartbeat");
        assert_eq!(status(&state, &a), JobStatus::Running);
        assert_eq!(status(&state, &b), JobStatus::Failed);
        let failure = state.jobs[1].failure.clone().unwrap();
        assert!(failure.contains("worker w2 was lost"), "{failure}");
    }

    #[test]
    fn a_failed_subtask_fails_its_job_and_frees_its_slots() {
        let (mut state, mut inboxes) = state_with_workers(&[("w1", 1)]);
        let a = state.submit(job("a", &[1]), None, None);
        let b = state.submit(job("b", &[1]), None, None);
        assert_eq!(status(&state, &b), JobStatus::Created);
        report_all(&mut state, &a, TaskState::Failed);
        assert_eq!(status(&state, &a), JobStatus::Failed);
        assert_eq!(deployed(&mut inboxes[0]), [a, b.clone()]);
        assert_eq!(status(&state, &b), JobStatus::Running);
    }

    #[test]
    fn a_restart_waits_until_the_failed_attempts_subtasks_stopped() {
        let (mut state, mut inboxes) = state_with_workers(&[("w1", 1), ("w2", 1), ("w3", 1)]);
        state.restart = RestartStrategy::FixedDelay {
            attempts: 3,
            delay: std::time::Duration::ZERO,
        };
        let a = state.submit(job("a", &[2]), None, None);
        report_all(&mut state, &a, TaskState::Running);
        let on_w1 = state.jobs[0]
            .tasks
            .iter()
            .find(|(_, (w, _))| w == "w1")
            .map(|(key, _)| *key)
            .unwrap();
        for inbox in &mut inboxes {
            deployed(inbox);
        }
        state.lose("w2", "no heartbeat");
        state.restart_due(&a);
        // w1's subtask of the failed attempt was told to cancel and has not stopped: it
        // could still act (commit a transaction…) after its successor restored.
        assert_eq!(status(&state, &a), JobStatus::Restarting);
        assert!(deployed(&mut inboxes[2]).is_empty());
        state.on_task_state(TaskStateReport {
            task: Some(TaskId {
                job_id: a.clone(),
                attempt: 0,
                vertex: on_w1.0,
                subtask: on_w1.1,
            }),
            state: TaskState::Canceled.into(),
            failure: String::new(),
        });
        assert_eq!(status(&state, &a), JobStatus::Running);
        assert_eq!(deployed(&mut inboxes[0]), std::slice::from_ref(&a));
        assert_eq!(deployed(&mut inboxes[2]), [a]);
    }

    #[test]
    fn a_broken_channel_waits_for_the_worker_loss_that_explains_it() {
        let (mut state, _inboxes) = state_with_workers(&[("w1", 1), ("w2", 1)]);
        let a = state.submit(job("a", &[2]), None, None);
        report_all(&mut state, &a, TaskState::Running);
        // w1's subtask fails first: its channel to w2 broke.
        state.on_task_state(TaskStateReport {
            task: Some(TaskId {
                job_id: a.clone(),
                attempt: 0,
                vertex: 0,
                subtask: 0,
            }),
            state: TaskState::Failed.into(),
            failure: "job failed: sending to another worker failed: h2 protocol error".into(),
        });
        assert_eq!(status(&state, &a), JobStatus::Running);
        state.lose("w2", "its connection broke");
        assert_eq!(status(&state, &a), JobStatus::Failed);
        let failure = state.jobs[0].failure.clone().unwrap_or_default();
        assert!(failure.contains("worker w2 was lost"), "{failure}");
    }

    #[test]
    fn only_the_newest_ended_jobs_are_kept() {
        let (mut state, mut inboxes) = state_with_workers(&[("w1", 1)]);
        let first = state.submit(job("first", &[1]), None, None);
        assert_eq!(deployed(&mut inboxes[0]), [first.as_str()]);
        report_all(&mut state, &first, TaskState::Finished);
        for n in 0..ENDED_JOBS_KEPT {
            let id = state.submit(job(&format!("j{n}"), &[1]), None, None);
            assert_eq!(deployed(&mut inboxes[0]), [id.as_str()]);
            report_all(&mut state, &id, TaskState::Finished);
        }
        assert_eq!(state.jobs.len(), ENDED_JOBS_KEPT);
        assert!(state.jobs.iter().all(|j| j.id != first));
    }
}

//! The master's checkpoint loop for one job (Flink's `CheckpointCoordinator` in the
//! JobManager): it triggers a checkpoint every interval, up to `max_concurrent` in
//! flight, and each one is followed by its own task until every subtask acknowledged
//! it, and then written (`_metadata`, `latest`, retention) in id order. Savepoints asked
//! for through the REST API go first, alone: one waits for the checkpoints in flight,
//! and none starts while it is taken, so a stop-with-savepoint is the job's last
//! barrier.

use super::checkpoints::{CompletedCheckpoint, Progress, SavepointRequest};
use super::{JobStatus, MasterService};
use crate::checkpoint::coordinator::{checkpoint_location, complete, complete_savepoint, now_ms};
use std::time::{Duration, Instant};

/// How often the loop looks at the job.
const TICK: Duration = Duration::from_millis(20);

impl MasterService {
    /// Triggers job `id`'s checkpoints and savepoints; returns once the job ended, or
    /// stops after a savepoint.
    pub(super) async fn checkpoint_until_ended(self, id: String) {
        let mut last_start = Instant::now();
        loop {
            tokio::time::sleep(TICK).await;
            // The interval passed (and a checkpoint may start), or a savepoint is asked for.
            let savepoint = {
                let mut state = self.state();
                // A job stopping after its savepoint takes no checkpoint more: its sinks
                // would pre-commit output that no checkpoint ever completes.
                let Some(job) = state.job_mut(&id).filter(|j| !j.ended() && !j.stopping) else {
                    return;
                };
                let name = job.plan.submission.name.clone();
                let Some(c) = job.checkpoints.as_mut() else {
                    return;
                };
                if let Some(request) = c.requests.front() {
                    if !c.may_start(true) {
                        continue;
                    }
                    Some(format!(
                        "{}/savepoint-{name}-{}",
                        request.directory.trim_end_matches('/'),
                        c.next_id
                    ))
                } else if last_start.elapsed() >= c.config.interval && c.may_start(false) {
                    None
                } else {
                    continue;
                }
            };
            let triggered = self
                .state()
                .trigger_checkpoint(&id, savepoint.as_deref().map(Into::into));
            let Some(checkpoint) = triggered else {
                // Not every subtask runs yet: try again shortly; a savepoint gives up after
                // the checkpoint timeout.
                if let Some(r) = self.expired_savepoint_request(&id) {
                    self.savepoint_done(
                        &id,
                        r.request,
                        Err(
                            "the job could not take it in time: not every subtask was running"
                                .into(),
                        ),
                        None,
                    );
                }
                continue;
            };
            last_start = Instant::now();
            let request = match savepoint {
                Some(_) => self
                    .state()
                    .job_mut(&id)
                    .and_then(|j| j.checkpoints.as_mut())
                    .and_then(|c| c.requests.pop_front()),
                None => None,
            };
            tokio::spawn(
                self.clone()
                    .finish_checkpoint(id.clone(), checkpoint, request),
            );
        }
    }

    /// The savepoint request at the front of job `id`'s queue, taken off it, if it has
    /// waited longer than the checkpoint timeout.
    fn expired_savepoint_request(&self, id: &str) -> Option<SavepointRequest> {
        let mut state = self.state();
        let c = state.job_mut(id)?.checkpoints.as_mut()?;
        let old = c.requests.front()?.asked.elapsed() > c.config.timeout;
        if old { c.requests.pop_front() } else { None }
    }

    /// Follows checkpoint `checkpoint` of job `id` (a savepoint, with `request`) until
    /// every subtask acknowledged it or it failed, and completes it after every older one.
    async fn finish_checkpoint(
        self,
        id: String,
        checkpoint: u64,
        request: Option<SavepointRequest>,
    ) {
        let progress = loop {
            tokio::time::sleep(TICK).await;
            let mut state = self.state();
            let Some(job) = state.job_mut(&id) else {
                return;
            };
            // A cancelled job's checkpoints may be deleted by now (delete-on-cancellation):
            // one completed after that would be left behind.
            let cancelled = job.status == JobStatus::Cancelled;
            let Some(c) = job.checkpoints.as_mut() else {
                return;
            };
            if cancelled {
                drop(state);
                tracing::debug!(job = %id, checkpoint, "the job was cancelled before its checkpoint completed");
                if let Some(r) = request {
                    self.savepoint_done(&id, r.request, Err("the job was cancelled".into()), None);
                }
                return;
            }
            match c.progress(checkpoint) {
                Progress::Waiting => continue,
                done => break done,
            }
        };
        let (barrier, handles) = match progress {
            Progress::Acknowledged(barrier, handles) => (barrier, handles),
            Progress::Failed(why) => {
                tracing::warn!(job = %id, checkpoint, reason = %why, "checkpoint failed; the next one will be tried");
                if let Some(r) = request {
                    self.savepoint_done(&id, r.request, Err(why), None);
                }
                return;
            }
            Progress::Waiting => return,
        };
        // In id order: `latest` never goes back to an older checkpoint.
        let settings = loop {
            {
                let mut state = self.state();
                let Some(job) = state.job_mut(&id) else {
                    return;
                };
                let name = job.plan.submission.name.clone();
                let cancelled = job.status == JobStatus::Cancelled;
                let Some(c) = job.checkpoints.as_mut() else {
                    return;
                };
                if cancelled {
                    // As above; retention waits until this one is off the books.
                    c.written(checkpoint);
                    drop(state);
                    if let Some(r) = request {
                        self.savepoint_done(
                            &id,
                            r.request,
                            Err("the job was cancelled".into()),
                            None,
                        );
                    }
                    return;
                }
                if c.oldest_in_flight() == Some(checkpoint) {
                    break (c.config.clone(), c.max_parallelism, name, c.run_id.clone());
                }
            }
            tokio::time::sleep(TICK).await;
        };
        let (config, max_parallelism, name, run_id) = settings;
        let run_id = run_id.as_deref();
        let started = Instant::now();
        if let Some(r) = request {
            let done =
                complete_savepoint(&config, &name, max_parallelism, barrier, handles, run_id)
                    .await
                    .map_err(|e| e.to_string());
            if let Ok((location, bytes)) = &done {
                tracing::info!(job = %id, savepoint = %location, bytes, write_ms = started.elapsed().as_millis() as u64, "savepoint completed");
            }
            self.written(&id, checkpoint);
            self.savepoint_done(
                &id,
                r.request,
                done.map(|(l, _)| l),
                r.stop.then_some(checkpoint),
            );
            return;
        }
        let triggered_at = barrier.timestamp;
        let done = complete(&config, &name, max_parallelism, barrier, handles, run_id).await;
        self.written(&id, checkpoint);
        match done {
            Ok(size) => {
                let stats = CompletedCheckpoint {
                    id: checkpoint,
                    duration_ms: (now_ms() - triggered_at).max(0) as u64,
                    state_bytes: size.state_bytes,
                    uploaded_bytes: size.uploaded_bytes,
                };
                tracing::info!(job = %id, checkpoint, bytes = size.state_bytes, uploaded_bytes = size.uploaded_bytes, duration_ms = stats.duration_ms, write_ms = started.elapsed().as_millis() as u64, "checkpoint completed");
                self.state().checkpoint_completed(
                    &id,
                    stats,
                    checkpoint_location(&config, checkpoint),
                );
            }
            Err(e) => {
                tracing::warn!(job = %id, checkpoint, error = %e, "checkpoint could not be completed; the next one will be tried");
            }
        }
    }

    /// Checkpoint `checkpoint` of job `id` is no longer in flight.
    fn written(&self, id: &str, checkpoint: u64) {
        let mut state = self.state();
        if let Some(c) = state.job_mut(id).and_then(|j| j.checkpoints.as_mut()) {
            c.written(checkpoint);
        }
    }
}

//! Checkpoints of a job across workers, as the master coordinates them: it triggers a
//! checkpoint at the workers that run source subtasks, counts the acknowledgements every
//! subtask's worker sends once it has written that subtask's state, and completes the
//! checkpoint (`checkpoint::coordinator::complete`: `_metadata`, `latest`, retention).
//! A restart of the job deploys it from the newest completed checkpoint.

use crate::checkpoint::CheckpointConfig;
use crate::checkpoint::metadata::SubtaskMetadata;
use crate::checkpoint::uploader::{OperatorHandle, SubtaskHandles};
use crate::runtime::barrier::Barrier;
use std::collections::BTreeMap;
use std::time::Instant;
use strom_proto::control::{CheckpointAck, CheckpointDeclined};

/// A savepoint asked for through the REST API, by request id.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "status", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SavepointStatus {
    InProgress,
    Completed { location: String },
    Failed { failure: String },
}

/// A savepoint waiting to be taken: its request id, the directory it goes under, and
/// whether the job stops after it.
pub(crate) struct SavepointRequest {
    pub request: u64,
    pub directory: String,
    pub stop: bool,
    pub asked: Instant,
}

/// One checkpoint in flight.
pub(crate) struct Pending {
    pub barrier: Barrier,
    pub attempt: u32,
    pub deadline: Instant,
    /// Subtasks of the attempt that must acknowledge.
    pub expected: usize,
    pub acks: BTreeMap<(u32, u32), SubtaskHandles>,
    /// Why it failed, when a subtask declined it.
    pub declined: Option<String>,
}

/// A completed checkpoint, as the REST API shows the newest one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub(crate) struct CompletedCheckpoint {
    pub id: u64,
    /// From the trigger to `_metadata` written.
    pub duration_ms: u64,
    /// Bytes of state it holds.
    pub state_bytes: u64,
    /// Bytes it wrote (less with incremental RocksDB checkpoints).
    pub uploaded_bytes: u64,
}

/// Where a checkpoint in flight stands.
pub(crate) enum Progress {
    Waiting,
    /// Every subtask acknowledged: the handles to complete it with.
    Acknowledged(Barrier, Vec<SubtaskHandles>),
    Failed(String),
}

/// A job's checkpointing on the master.
pub(crate) struct JobCheckpoints {
    pub config: CheckpointConfig,
    pub max_parallelism: usize,
    /// The run (`strom master --run-id`) whose checkpoints these are: each one's
    /// `_metadata` names it, so a master restarted within the run finds them.
    pub run_id: Option<String>,
    pub next_id: u64,
    /// Checkpoints waiting for acknowledgements, by id.
    pub pending: BTreeMap<u64, Pending>,
    /// Checkpoints every subtask acknowledged, being written, with whether each is a
    /// savepoint.
    writing: BTreeMap<u64, bool>,
    /// When the last checkpoint ended (written, failed or expired): the minimum pause
    /// counts from there.
    last_end: Option<Instant>,
    /// The newest completed checkpoint (its directory, as `--from-checkpoint` takes it).
    pub latest: Option<String>,
    /// How long the newest completed checkpoint took and how big it is.
    pub last_completed: Option<CompletedCheckpoint>,
    pub completed: u64,
    pub failed: u64,
    /// Subtasks of the current attempt that have ended, with the final state that stands
    /// for them in every later checkpoint.
    pub finished: BTreeMap<(u32, u32), SubtaskHandles>,
    /// Savepoints asked for and not started yet, oldest first.
    pub requests: std::collections::VecDeque<SavepointRequest>,
    /// Every savepoint asked for, by request id.
    pub savepoints: BTreeMap<u64, SavepointStatus>,
    next_request: u64,
}

impl JobCheckpoints {
    pub(crate) fn new(config: CheckpointConfig, max_parallelism: usize, next_id: u64) -> Self {
        JobCheckpoints {
            config,
            max_parallelism,
            run_id: None,
            next_id,
            pending: BTreeMap::new(),
            writing: BTreeMap::new(),
            last_end: None,
            latest: None,
            last_completed: None,
            completed: 0,
            failed: 0,
            finished: BTreeMap::new(),
            requests: Default::default(),
            savepoints: BTreeMap::new(),
            next_request: 1,
        }
    }

    /// Starts checkpoint `next_id` of `attempt`, which has `expected` subtasks.
    pub(crate) fn start(
        &mut self,
        attempt: u32,
        expected: usize,
        now_ms: i64,
        savepoint: Option<std::sync::Arc<str>>,
    ) -> Barrier {
        let barrier = Barrier {
            id: self.next_id,
            timestamp: now_ms,
            savepoint: savepoint.clone(),
        };
        self.next_id += 1;
        self.pending.insert(
            barrier.id,
            Pending {
                barrier: barrier.clone(),
                attempt,
                deadline: Instant::now() + self.config.timeout,
                expected,
                acks: self.finished.clone(),
                declined: None,
            },
        );
        barrier
    }

    /// Whether a checkpoint (or, with `savepoint`, a savepoint) may start now: a savepoint
    /// waits until nothing is in flight and has the job to itself; checkpoints start while
    /// fewer than the maximum are in flight and the minimum pause since the last one
    /// ended has passed.
    pub(crate) fn may_start(&self, savepoint: bool) -> bool {
        let paused = self
            .last_end
            .is_some_and(|end| end.elapsed() < self.config.min_pause);
        let savepoint_in_flight = self.pending.values().any(|p| p.barrier.savepoint.is_some())
            || self.writing.values().any(|&savepoint| savepoint);
        let in_flight = self.pending.len() + self.writing.len();
        if savepoint_in_flight {
            false
        } else if savepoint {
            in_flight == 0
        } else {
            !paused && in_flight < self.config.effective_max_concurrent()
        }
    }

    /// The oldest checkpoint in flight (waiting or being written).
    pub(crate) fn oldest_in_flight(&self) -> Option<u64> {
        let waiting = self.pending.keys().next().copied();
        let writing = self.writing.keys().next().copied();
        waiting.into_iter().chain(writing).min()
    }

    /// Whether a checkpoint every subtask acknowledged is being written.
    pub(crate) fn writing_any(&self) -> bool {
        !self.writing.is_empty()
    }

    /// Checkpoint `id` has been written, or failed to be.
    pub(crate) fn written(&mut self, id: u64) {
        self.writing.remove(&id);
        self.last_end = Some(Instant::now());
    }

    /// A subtask's acknowledgement, or (checkpoint 0) its final state once it ended.
    pub(crate) fn on_ack(&mut self, attempt: u32, ack: CheckpointAck) {
        let Some(task) = ack.task else { return };
        if task.attempt != attempt {
            return;
        }
        let finished = ack.checkpoint_id == 0;
        let operators: Result<Vec<OperatorHandle>, String> = ack
            .state
            .into_iter()
            .map(|h| {
                let state: SubtaskMetadata = serde_json::from_slice(&h.metadata_json)
                    .map_err(|e| format!("unreadable state handle of {}: {e}", h.operator_uid))?;
                Ok(OperatorHandle {
                    uid: h.operator_uid,
                    parallelism: h.parallelism as usize,
                    state,
                })
            })
            .collect();
        let key = (task.vertex, task.subtask);
        let handles = match operators {
            Ok(operators) => SubtaskHandles {
                checkpoint: ack.checkpoint_id,
                vertex: task.vertex as usize,
                subtask: task.subtask as usize,
                operators,
                finished,
            },
            Err(e) => {
                // A subtask that ended stands in every checkpoint in flight.
                for (_, p) in self
                    .pending
                    .iter_mut()
                    .filter(|(id, _)| finished || **id == ack.checkpoint_id)
                {
                    p.declined = Some(e.clone());
                }
                return;
            }
        };
        if finished {
            // A final state stands for a subtask only in checkpoints whose barrier it
            // ended before.
            for p in self.pending.values_mut() {
                p.acks.entry(key).or_insert_with(|| handles.clone());
            }
            self.finished.insert(key, handles);
        } else if let Some(p) = self.pending.get_mut(&ack.checkpoint_id) {
            p.acks.insert(key, handles);
        }
    }

    pub(crate) fn on_declined(&mut self, declined: CheckpointDeclined) {
        let attempt = declined.task.as_ref().map(|t| t.attempt);
        if let Some(pending) = self
            .pending
            .get_mut(&declined.checkpoint_id)
            .filter(|p| Some(p.attempt) == attempt)
        {
            pending.declined = Some(declined.reason);
        }
    }

    /// Where checkpoint `id` stands; one every subtask acknowledged is being written
    /// from then on (until `written`), a failed or expired one is no longer in flight.
    pub(crate) fn progress(&mut self, id: u64) -> Progress {
        let Some(pending) = self.pending.get(&id) else {
            return Progress::Failed("the job restarted or ended".into());
        };
        let failure = if let Some(why) = &pending.declined {
            why.clone()
        } else if pending.acks.len() == pending.expected {
            let Some(pending) = self.pending.remove(&id) else {
                return Progress::Waiting;
            };
            self.writing.insert(id, pending.barrier.savepoint.is_some());
            return Progress::Acknowledged(pending.barrier, pending.acks.into_values().collect());
        } else if Instant::now() > pending.deadline {
            format!(
                "expired after {:?} with {} of {} subtasks acknowledged",
                self.config.timeout,
                pending.acks.len(),
                pending.expected
            )
        } else {
            return Progress::Waiting;
        };
        self.pending.remove(&id);
        self.failed += 1;
        self.last_end = Some(Instant::now());
        Progress::Failed(failure)
    }

    /// Asks for a savepoint under `directory` (and, with `stop`, for the job to stop after
    /// it); its request id.
    pub(crate) fn request_savepoint(&mut self, directory: String, stop: bool) -> u64 {
        let request = self.next_request;
        self.next_request += 1;
        self.requests.push_back(SavepointRequest {
            request,
            directory,
            stop,
            asked: Instant::now(),
        });
        self.savepoints.insert(request, SavepointStatus::InProgress);
        request
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::storage::{CheckpointStorage, StorageOptions};
    use std::time::Duration;
    use strom_proto::control::TaskId;

    fn checkpoints(max_concurrent: usize, min_pause: Duration) -> JobCheckpoints {
        let options = StorageOptions::default();
        let storage = CheckpointStorage::open("memory://master-checkpoints", &options).unwrap();
        let config = CheckpointConfig {
            interval: Duration::from_millis(10),
            timeout: Duration::from_secs(60),
            min_pause,
            max_concurrent,
            retained: 1,
            storage,
            options,
            job_dir: "job".into(),
            mode: Default::default(),
            retention: Default::default(),
        };
        JobCheckpoints::new(config, 128, 1)
    }

    fn ack(c: &mut JobCheckpoints, subtask: u32, checkpoint: u64) {
        c.on_ack(
            0,
            CheckpointAck {
                task: Some(TaskId {
                    job_id: "job".into(),
                    attempt: 0,
                    vertex: 0,
                    subtask,
                }),
                checkpoint_id: checkpoint,
                state: Vec::new(),
            },
        );
    }

    #[test]
    fn up_to_max_concurrent_checkpoints_are_in_flight_and_they_complete_in_order() {
        let mut c = checkpoints(2, Duration::ZERO);
        assert!(c.may_start(false));
        let first = c.start(0, 2, 0, None).id;
        assert!(c.may_start(false));
        let second = c.start(0, 2, 0, None).id;
        assert!(!c.may_start(false), "two are in flight");
        // A savepoint waits until nothing is in flight.
        assert!(!c.may_start(true));
        ack(&mut c, 0, second);
        ack(&mut c, 1, second);
        assert!(matches!(c.progress(second), Progress::Acknowledged(..)));
        // The second is acknowledged first but is written only after the first.
        assert_eq!(c.oldest_in_flight(), Some(first));
        assert!(!c.may_start(false), "one waits, one is being written");
        ack(&mut c, 0, first);
        ack(&mut c, 1, first);
        assert!(matches!(c.progress(first), Progress::Acknowledged(..)));
        c.written(first);
        assert_eq!(c.oldest_in_flight(), Some(second));
        assert!(c.may_start(false));
        c.written(second);
        assert_eq!(c.oldest_in_flight(), None);
        assert!(c.may_start(true));
    }

    #[test]
    fn a_savepoint_has_the_job_to_itself_and_a_min_pause_keeps_one_in_flight() {
        let mut c = checkpoints(3, Duration::ZERO);
        let savepoint = c.start(0, 1, 0, Some("file:///savepoints/s".into())).id;
        assert!(
            !c.may_start(false),
            "no checkpoint while a savepoint is taken"
        );
        ack(&mut c, 0, savepoint);
        assert!(matches!(c.progress(savepoint), Progress::Acknowledged(..)));
        assert!(!c.may_start(false), "nor while it is written");
        c.written(savepoint);
        assert!(c.may_start(false));

        let mut c = checkpoints(3, Duration::from_millis(1));
        c.start(0, 1, 0, None);
        assert!(
            !c.may_start(false),
            "a minimum pause leaves room for one only"
        );
    }

    #[test]
    fn a_subtask_that_ended_stands_in_every_checkpoint_in_flight() {
        let mut c = checkpoints(2, Duration::ZERO);
        let first = c.start(0, 2, 0, None).id;
        let second = c.start(0, 2, 0, None).id;
        // Subtask 1 ended before either barrier reached it: its final state.
        ack(&mut c, 1, 0);
        ack(&mut c, 0, first);
        ack(&mut c, 0, second);
        assert!(matches!(c.progress(first), Progress::Acknowledged(..)));
        assert!(matches!(c.progress(second), Progress::Acknowledged(..)));
    }
}

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
use std::time::{Duration, Instant};
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
    pub next_id: u64,
    pub pending: Option<Pending>,
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
            next_id,
            pending: None,
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
        self.pending = Some(Pending {
            barrier: barrier.clone(),
            attempt,
            deadline: Instant::now() + self.config.timeout,
            expected,
            acks: self.finished.clone(),
            declined: None,
        });
        barrier
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
        let pending = self
            .pending
            .as_mut()
            .filter(|p| finished || p.barrier.id == ack.checkpoint_id);
        let handles = match operators {
            Ok(operators) => SubtaskHandles {
                checkpoint: ack.checkpoint_id,
                vertex: task.vertex as usize,
                subtask: task.subtask as usize,
                operators,
                finished,
            },
            Err(e) => {
                if let Some(p) = pending {
                    p.declined = Some(e);
                }
                return;
            }
        };
        let key = (task.vertex, task.subtask);
        if let Some(p) = pending {
            // A final state stands for a subtask only if it ended before the barrier.
            if finished {
                p.acks.entry(key).or_insert_with(|| handles.clone());
            } else {
                p.acks.insert(key, handles.clone());
            }
        }
        if finished {
            self.finished.insert(key, handles);
        }
    }

    pub(crate) fn on_declined(&mut self, declined: CheckpointDeclined) {
        let attempt = declined.task.as_ref().map(|t| t.attempt);
        if let Some(pending) = self
            .pending
            .as_mut()
            .filter(|p| p.barrier.id == declined.checkpoint_id && Some(p.attempt) == attempt)
        {
            pending.declined = Some(declined.reason);
        }
    }

    /// Where checkpoint `id` stands; a finished one (acknowledged, failed, expired) is no
    /// longer pending.
    pub(crate) fn progress(&mut self, id: u64) -> Progress {
        let Some(pending) = self.pending.as_ref().filter(|p| p.barrier.id == id) else {
            return Progress::Failed("the job restarted or ended".into());
        };
        let outcome = if let Some(why) = &pending.declined {
            Progress::Failed(why.clone())
        } else if pending.acks.len() == pending.expected {
            Progress::Acknowledged(pending.barrier.clone(), Vec::new())
        } else if Instant::now() > pending.deadline {
            Progress::Failed(format!(
                "expired after {:?} with {} of {} subtasks acknowledged",
                self.config.timeout,
                pending.acks.len(),
                pending.expected
            ))
        } else {
            return Progress::Waiting;
        };
        let pending = self.pending.take();
        match outcome {
            Progress::Acknowledged(barrier, _) => Progress::Acknowledged(
                barrier,
                pending
                    .map(|p| p.acks.into_values().collect())
                    .unwrap_or_default(),
            ),
            other => {
                self.failed += 1;
                other
            }
        }
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

    /// The pause before the next trigger.
    pub(crate) fn interval(&self) -> Duration {
        self.config.interval.max(self.config.min_pause)
    }
}

//! The checkpoint coordinator (Flink's `CheckpointCoordinator`): every interval it sends a
//! barrier into each source subtask, waits until every subtask of the job has
//! acknowledged it (its state written by its uploader), and completes the checkpoint:
//! `_metadata`, then the `latest` pointer, and finally drops checkpoints beyond the number
//! retained, with the shared files of incremental RocksDB checkpoints that no retained
//! checkpoint refers to.
//!
//! Tasks hand their snapshot to their process's uploader (`checkpoint::uploader`) and go
//! on; the uploader writes the state files (the asynchronous part of a checkpoint) and
//! sends the coordinator their handles, from which it writes `_metadata`. Up to
//! `max_concurrent` checkpoints are in flight (Flink's `max-concurrent-checkpoints`,
//! default 1); they complete in order. A checkpoint that is not acknowledged within the
//! timeout, or cannot be written (storage down), is given up with a log line and the
//! next one is tried at the next interval; the job goes on either way.

use crate::checkpoint::metadata::{CheckpointMetadata, FORMAT_VERSION, OperatorMetadata};
use crate::checkpoint::restore::read_metadata;
use crate::checkpoint::storage::{
    CheckpointStorage, METADATA, StorageError, StorageOptions, checkpoint_dir, join,
};
use crate::checkpoint::uploader::{SubtaskHandles, Upload};
use crate::hash::stable_hash;
use crate::runtime::barrier::Barrier;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How a job checkpoints (Flink's `execution.checkpointing.*`).
#[derive(Clone, Debug)]
pub struct CheckpointConfig {
    /// Time between the start of one checkpoint and the next.
    pub interval: Duration,
    /// A checkpoint not complete after this long is given up.
    pub timeout: Duration,
    /// The least time between the end of one checkpoint and the start of the next
    /// (more than zero keeps one checkpoint in flight, as in Flink).
    pub min_pause: Duration,
    /// Checkpoints in flight at once, at least 1.
    pub max_concurrent: usize,
    /// Completed checkpoints kept; older ones are deleted.
    pub retained: usize,
    pub storage: CheckpointStorage,
    /// How `storage` was opened; savepoint directories are opened the same way.
    pub options: StorageOptions,
    /// The job's directory under the storage root (`<job>` in `<job>/chk-<n>`).
    pub job_dir: String,
    pub mode: CheckpointingMode,
    /// What becomes of the job's checkpoints when it is cancelled.
    pub retention: CheckpointRetention,
}

impl CheckpointConfig {
    /// How many checkpoints may be in flight at once: a minimum pause between the end
    /// of one and the start of the next leaves room for one only.
    pub(crate) fn effective_max_concurrent(&self) -> usize {
        if self.min_pause.is_zero() {
            self.max_concurrent.max(1)
        } else {
            1
        }
    }
}

/// Whether a cancelled job's checkpoints are kept (Flink's
/// `execution.checkpointing.externalized-checkpoint-retention`). A job that fails keeps
/// them either way, to be resumed from; savepoints are never deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckpointRetention {
    #[default]
    RetainOnCancellation,
    DeleteOnCancellation,
}

/// Deletes every checkpoint of `config`'s job: the `chk-<n>` directories, the shared
/// files, the `latest` pointer; nothing else a user may keep in the job's directory,
/// and never the runs' results (`results/`), which keep a restarted master from running
/// an ended run again.
pub(crate) async fn delete_checkpoints(config: &CheckpointConfig) -> Result<(), StorageError> {
    let storage = &config.storage;
    let job_dir = config.job_dir.trim_end_matches('/');
    for path in storage.list(job_dir).await? {
        let Some(rest) = path
            .strip_prefix(job_dir)
            .map(|r| r.trim_start_matches('/'))
        else {
            continue;
        };
        if rest.starts_with("chk-") || rest.starts_with("shared/") || rest == "latest" {
            storage.delete(&path).await?;
        }
    }
    Ok(())
}

/// Whether barriers are aligned (Flink's `execution.checkpointing.mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckpointingMode {
    /// A task with several inputs holds back each input that delivered the barrier until
    /// all have: a snapshot holds exactly the records before the barrier.
    #[default]
    ExactlyOnce,
    /// Inputs are read on: no waiting at barriers, but a snapshot may hold records after
    /// the barrier, which a restore then replays a second time.
    AtLeastOnce,
}

/// How long the coordinator sleeps at most before it looks at the stop flag again.
const STOP_CHECK: Duration = Duration::from_millis(20);

pub(crate) struct Coordinator {
    pub config: CheckpointConfig,
    pub job: String,
    pub max_parallelism: usize,
    /// One per source subtask, by (vertex, subtask).
    pub triggers: BTreeMap<(usize, usize), Sender<Barrier>>,
    /// What the uploaders wrote of each subtask's snapshot.
    pub acks: Receiver<Upload>,
    /// Subtasks that must acknowledge each checkpoint, by (vertex, subtask), with their
    /// task names for log lines.
    pub subtasks: BTreeMap<(usize, usize), String>,
    pub stop: Arc<AtomicBool>,
    /// Raised to each checkpoint that completes: the subtasks hear of it from there.
    pub completed: Arc<AtomicU64>,
    /// This process's uploader: it ends once every subtask has ended, and what it wrote
    /// of checkpoints that never completed is deleted after it.
    pub uploader: Option<std::thread::JoinHandle<()>>,
}

/// What checkpoints of this run that have not completed (yet) wrote.
#[derive(Default)]
struct Incomplete {
    /// Triggered, not completed.
    ids: BTreeSet<u64>,
    /// The shared files (relative to the job's directory) their acknowledgements name.
    shared: BTreeMap<u64, BTreeSet<String>>,
}

impl Incomplete {
    fn triggered(&mut self, id: u64) {
        self.ids.insert(id);
    }

    fn acknowledged(&mut self, ack: &SubtaskHandles) {
        if !self.ids.contains(&ack.checkpoint) {
            return;
        }
        let files = ack
            .operators
            .iter()
            .filter_map(|o| o.state.rocksdb.as_ref())
            .flat_map(|r| &r.files)
            .filter(|f| f.path.starts_with("shared/"))
            .map(|f| f.path.clone());
        self.shared.entry(ack.checkpoint).or_default().extend(files);
    }

    fn completed(&mut self, id: u64) {
        self.ids.remove(&id);
        self.shared.remove(&id);
    }
}

/// A checkpoint triggered and not yet complete.
struct InFlight {
    barrier: Barrier,
    started: Instant,
    deadline: Instant,
    /// Subtasks that acknowledged it (with ended subtasks' final state), by (vertex,
    /// subtask).
    acks: BTreeMap<(usize, usize), SubtaskHandles>,
}

impl Coordinator {
    /// Triggers and writes checkpoints until the job ends (its sources are gone) or
    /// `stop` is set. Up to `max_concurrent` are in flight; they complete in order, and
    /// one that is given up takes the older ones still in flight with it (they could not
    /// complete before it).
    pub(crate) fn run(mut self) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot start the checkpoint coordinator; the job runs without checkpoints");
                if let Some(uploader) = self.uploader.take() {
                    let _ = uploader.join();
                }
                return;
            }
        };
        let mut incomplete = Incomplete::default();
        self.checkpoint_until_stopped(&runtime, &mut incomplete);
        // Nothing uploads any more once the uploader ended: what it wrote for checkpoints
        // that never completed (given up, or in flight when the job ended) goes.
        if let Some(uploader) = self.uploader.take() {
            let _ = uploader.join();
        }
        for ack in self.acks.try_iter().flatten() {
            incomplete.acknowledged(&ack);
        }
        runtime.block_on(discard_incomplete(&self.config, incomplete));
    }

    fn checkpoint_until_stopped(
        &mut self,
        runtime: &tokio::runtime::Runtime,
        incomplete: &mut Incomplete,
    ) {
        let storage = &self.config.storage;
        // Ids go on from the checkpoints already there, which are never overwritten.
        let mut next_id =
            match runtime.block_on(storage.completed_checkpoints(&self.config.job_dir)) {
                Ok(done) => done.last().map_or(1, |last| last + 1),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list earlier checkpoints; numbering from 1");
                    1
                }
            };
        let max_concurrent = self.config.effective_max_concurrent();
        let mut last_start = Instant::now();
        let mut last_end = Instant::now();
        // Subtasks that have ended, with the state that stands for them from then on.
        let mut finished: BTreeMap<(usize, usize), SubtaskHandles> = BTreeMap::new();
        let mut in_flight: BTreeMap<u64, InFlight> = BTreeMap::new();
        let mut sources_left = true;
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            let due = (last_start + self.config.interval).max(last_end + self.config.min_pause);
            if sources_left && in_flight.len() < max_concurrent && Instant::now() >= due {
                last_start = Instant::now();
                let barrier = Barrier {
                    id: next_id,
                    timestamp: now_ms(),
                    savepoint: None,
                };
                next_id += 1;
                // A source that has ended takes no barrier; its final state (on its way,
                // if not here yet) stands for it.
                self.triggers.retain(|key, t| {
                    !finished.contains_key(key) && t.send(barrier.clone()).is_ok()
                });
                if self.triggers.is_empty() {
                    tracing::debug!(
                        checkpoint = barrier.id,
                        "every source has ended; no more checkpoints"
                    );
                    sources_left = false;
                } else {
                    incomplete.triggered(barrier.id);
                    in_flight.insert(
                        barrier.id,
                        InFlight {
                            barrier,
                            started: last_start,
                            deadline: last_start + self.config.timeout,
                            acks: finished.clone(),
                        },
                    );
                }
            }
            if !sources_left && in_flight.is_empty() {
                return;
            }
            let wait = if sources_left && in_flight.len() < max_concurrent {
                due.saturating_duration_since(Instant::now())
                    .min(STOP_CHECK)
            } else {
                STOP_CHECK
            };
            match self.acks.recv_timeout(wait) {
                // A subtask's final state stands for it in a checkpoint only if it ended
                // before taking the barrier; if it took it, its answer counts.
                Ok(Ok(ack)) if ack.finished => {
                    let key = (ack.vertex, ack.subtask);
                    for c in in_flight.values_mut() {
                        c.acks.entry(key).or_insert_with(|| ack.clone());
                    }
                    finished.insert(key, ack);
                }
                Ok(Ok(ack)) => {
                    incomplete.acknowledged(&ack);
                    // Late answers about a checkpoint already given up are dropped.
                    if let Some(c) = in_flight.get_mut(&ack.checkpoint) {
                        c.acks.insert((ack.vertex, ack.subtask), ack);
                    }
                }
                Ok(Err(failure)) => {
                    if in_flight.contains_key(&failure.checkpoint) {
                        let task = self
                            .subtasks
                            .get(&(failure.vertex, failure.subtask))
                            .map_or("?", String::as_str);
                        tracing::warn!(
                            checkpoint = failure.checkpoint,
                            task,
                            error = %failure.error,
                            "checkpoint failed: a subtask could not write its state; the next one will be tried"
                        );
                        give_up_through(&mut in_flight, failure.checkpoint);
                        last_end = Instant::now();
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            if let Some(expired) = in_flight
                .values()
                .filter(|c| Instant::now() >= c.deadline)
                .map(|c| c.barrier.id)
                .next_back()
            {
                let c = &in_flight[&expired];
                let missing: Vec<&str> = self
                    .subtasks
                    .iter()
                    .filter(|(k, _)| !c.acks.contains_key(k))
                    .map(|(_, name)| name.as_str())
                    .take(5)
                    .collect();
                tracing::warn!(
                    checkpoint = expired,
                    acknowledged = c.acks.len(),
                    subtasks = self.subtasks.len(),
                    timeout_ms = self.config.timeout.as_millis() as u64,
                    waiting_for = ?missing,
                    "checkpoint expired before every subtask acknowledged it"
                );
                give_up_through(&mut in_flight, expired);
                last_end = Instant::now();
            }
            // Complete the oldest while every subtask acknowledged it.
            while let Some(entry) = in_flight.first_entry() {
                if entry.get().acks.len() < self.subtasks.len() {
                    break;
                }
                let c = entry.remove();
                let id = c.barrier.id;
                let acks: Vec<SubtaskHandles> = c.acks.into_values().collect();
                let started = Instant::now();
                match runtime.block_on(self.write(c.barrier, acks)) {
                    Ok(size) => {
                        tracing::info!(
                            checkpoint = id,
                            bytes = size.state_bytes,
                            uploaded_bytes = size.uploaded_bytes,
                            took_ms = c.started.elapsed().as_millis() as u64,
                            write_ms = started.elapsed().as_millis() as u64,
                            "checkpoint completed"
                        );
                        self.completed.fetch_max(id, Ordering::AcqRel);
                        incomplete.completed(id);
                    }
                    Err(e) => tracing::warn!(
                        checkpoint = id,
                        error = %e,
                        "checkpoint could not be written; the next one will be tried"
                    ),
                }
                last_end = Instant::now();
            }
        }
    }

    async fn write(
        &self,
        barrier: Barrier,
        acks: Vec<SubtaskHandles>,
    ) -> Result<CheckpointSize, StorageError> {
        // `strom run` has no runs: its checkpoints name none.
        complete(
            &self.config,
            &self.job,
            self.max_parallelism,
            barrier,
            acks,
            None,
        )
        .await
    }
}

/// Gives up checkpoint `id` and every older one still in flight: checkpoints complete
/// in order, so none of them could complete before `id` does.
fn give_up_through(in_flight: &mut BTreeMap<u64, InFlight>, id: u64) {
    *in_flight = in_flight.split_off(&(id + 1));
}

/// How big a completed checkpoint is (Flink's "full" and "checkpointed" data size).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub(crate) struct CheckpointSize {
    /// Bytes of state it holds.
    pub state_bytes: u64,
    /// Bytes it wrote: less than `state_bytes` when it refers to files of earlier
    /// (incremental) checkpoints.
    pub uploaded_bytes: u64,
}

/// Completes checkpoint `barrier.id` of job `job` from every subtask's handles:
/// `_metadata` (naming `run_id`, the run that took it, if any), then the `latest`
/// pointer, then checkpoints beyond the number retained go. How big it is.
pub(crate) async fn complete(
    config: &CheckpointConfig,
    job: &str,
    max_parallelism: usize,
    barrier: Barrier,
    acks: Vec<SubtaskHandles>,
    run_id: Option<&str>,
) -> Result<CheckpointSize, StorageError> {
    let storage = &config.storage;
    let dir = checkpoint_dir(&config.job_dir, barrier.id);
    let (metadata, size) = metadata_of(job, max_parallelism, &barrier, acks, run_id);
    let json = serde_json::to_vec_pretty(&metadata).unwrap_or_default();
    storage.put(&format!("{dir}/{METADATA}"), &json).await?;
    storage.set_latest(&config.job_dir, barrier.id).await?;
    drop_old_checkpoints(config).await;
    Ok(size)
}

/// Completes savepoint `barrier.id` in its directory (`barrier.savepoint`): its
/// `_metadata`, naming `run_id` as `complete` does. Savepoints are never counted among
/// the retained checkpoints nor deleted.
pub(crate) async fn complete_savepoint(
    config: &CheckpointConfig,
    job: &str,
    max_parallelism: usize,
    barrier: Barrier,
    acks: Vec<SubtaskHandles>,
    run_id: Option<&str>,
) -> Result<(String, u64), StorageError> {
    let location = barrier.savepoint.as_deref().unwrap_or_default().to_string();
    let storage = CheckpointStorage::open(&location, &config.options)?;
    let (metadata, size) = metadata_of(job, max_parallelism, &barrier, acks, run_id);
    let json = serde_json::to_vec_pretty(&metadata).unwrap_or_default();
    storage.put(METADATA, &json).await?;
    Ok((location, size.state_bytes))
}

/// The `_metadata` of a checkpoint from every subtask's handles, and its size.
fn metadata_of(
    job: &str,
    max_parallelism: usize,
    barrier: &Barrier,
    acks: Vec<SubtaskHandles>,
    run_id: Option<&str>,
) -> (CheckpointMetadata, CheckpointSize) {
    let mut size = CheckpointSize::default();
    let mut operators: BTreeMap<String, OperatorMetadata> = BTreeMap::new();
    for op in acks.into_iter().flat_map(|a| a.operators) {
        size.state_bytes += op.state.keyed_bytes;
        let shared = op.state.rocksdb.as_ref().map_or(0, |r| {
            r.files.iter().map(|f| f.size).sum::<u64>() - r.uploaded_bytes
        });
        size.uploaded_bytes += op.state.keyed_bytes.saturating_sub(shared);
        operators
            .entry(op.uid.clone())
            .or_insert_with(|| OperatorMetadata {
                uid: op.uid,
                parallelism: op.parallelism,
                subtasks: Vec::new(),
            })
            .subtasks
            .push(op.state);
    }
    let mut operators: Vec<OperatorMetadata> = operators.into_values().collect();
    for op in &mut operators {
        op.subtasks.sort_by_key(|s| s.subtask);
    }
    let metadata = CheckpointMetadata {
        format: FORMAT_VERSION,
        id: barrier.id,
        job: job.to_string(),
        timestamp_ms: barrier.timestamp,
        max_parallelism,
        run_id: run_id.map(String::from),
        operators,
    };
    (metadata, size)
}

/// Deletes completed checkpoints beyond the number retained (oldest first), and the
/// shared files of incremental checkpoints that no retained checkpoint refers to any
/// more. A failure only leaves files behind.
async fn drop_old_checkpoints(config: &CheckpointConfig) {
    let storage = &config.storage;
    let job_dir = &config.job_dir;
    let Ok(done) = storage.completed_checkpoints(job_dir).await else {
        return;
    };
    let excess = done.len().saturating_sub(config.retained.max(1));
    if excess == 0 {
        return;
    }
    let (old, kept) = done.split_at(excess);
    // Read before anything goes; when a retained checkpoint's metadata cannot be read,
    // no shared file is deleted (one left behind costs space, one deleted costs state).
    let dropped_shared = shared_files(storage, job_dir, old).await;
    let kept_shared = shared_files(storage, job_dir, kept).await;
    for id in old {
        if let Err(e) = storage.delete_all(&checkpoint_dir(job_dir, *id)).await {
            tracing::warn!(checkpoint = id, error = %e, "could not delete an old checkpoint");
        }
    }
    if let (Some(dropped), Some(kept)) = (dropped_shared, kept_shared) {
        for path in dropped.difference(&kept) {
            if let Err(e) = storage.delete(&join(job_dir, path)).await {
                tracing::warn!(file = %path, error = %e, "could not delete a shared state file");
            }
        }
    }
}

/// Deletes what checkpoints that never completed wrote: their `chk-<n>` directories and
/// the shared files they uploaded that no completed checkpoint refers to (a later one
/// may have reused a file a given-up one uploaded). A failure only leaves files behind.
async fn discard_incomplete(config: &CheckpointConfig, incomplete: Incomplete) {
    if incomplete.ids.is_empty() {
        return;
    }
    let storage = &config.storage;
    let job_dir = &config.job_dir;
    let Ok(done) = storage.completed_checkpoints(job_dir).await else {
        return;
    };
    // A checkpoint whose `_metadata` went out but whose `latest` did not is complete.
    let ids: Vec<u64> = incomplete
        .ids
        .iter()
        .copied()
        .filter(|id| !done.contains(id))
        .collect();
    for id in &ids {
        if let Err(e) = storage.delete_all(&checkpoint_dir(job_dir, *id)).await {
            tracing::debug!(checkpoint = id, error = %e, "could not delete an incomplete checkpoint");
        }
    }
    let Some(kept) = shared_files(storage, job_dir, &done).await else {
        return;
    };
    let uploaded: BTreeSet<&String> = ids
        .iter()
        .filter_map(|id| incomplete.shared.get(id))
        .flatten()
        .collect();
    for path in uploaded.into_iter().filter(|p| !kept.contains(*p)) {
        if let Err(e) = storage.delete(&join(job_dir, path)).await {
            tracing::debug!(file = %path, error = %e, "could not delete a shared file of an incomplete checkpoint");
        }
    }
    tracing::debug!(checkpoints = ?ids, "deleted what incomplete checkpoints wrote");
}

/// The shared files (relative to the job's directory) that checkpoints `ids` refer to;
/// none when a `_metadata` cannot be read.
async fn shared_files(
    storage: &CheckpointStorage,
    job_dir: &str,
    ids: &[u64],
) -> Option<BTreeSet<String>> {
    let mut files = BTreeSet::new();
    for id in ids {
        let metadata = match read_metadata(storage, &checkpoint_dir(job_dir, *id)).await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(checkpoint = id, error = %e, "cannot tell which shared state files an old checkpoint used; keeping them all");
                return None;
            }
        };
        let subtasks = metadata.operators.iter().flat_map(|o| &o.subtasks);
        for rocks in subtasks.filter_map(|s| s.rocksdb.as_ref()) {
            files.extend(
                rocks
                    .files
                    .iter()
                    .filter(|f| f.path.starts_with("shared/"))
                    .map(|f| f.path.clone()),
            );
        }
    }
    Some(files)
}

/// Where checkpoint `id` of `config`'s job is, as `--from-checkpoint` takes it.
pub(crate) fn checkpoint_location(config: &CheckpointConfig, id: u64) -> String {
    format!(
        "{}/{}",
        config.storage.url().trim_end_matches('/'),
        checkpoint_dir(&config.job_dir, id)
    )
}

/// An operator's directory in a checkpoint: its uid made safe for any store, and a hash
/// of the uid so two uids that read alike do not share it.
pub(crate) fn operator_dir(uid: &str) -> String {
    let safe: String = uid
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    format!("{safe}-{:08x}", stable_hash(&uid) as u32)
}

/// Wall-clock time, ms since the Unix epoch (what barriers carry).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

//! Reading a completed checkpoint or savepoint back: its `_metadata`, and the keyed state
//! a subtask owns now, read by key-group sections so that a subtask at a new parallelism
//! reads only the ranges it owns.
//!
//! A job that starts from a checkpoint holds a [`RestoredCheckpoint`] in its settings;
//! every operator instance takes its share from it while the job is built.

use crate::checkpoint::metadata::{CheckpointMetadata, FORMAT_VERSION, OperatorMetadata};
use crate::checkpoint::storage::{
    CheckpointStorage, METADATA, StorageError, StorageOptions, checkpoint_dir, join,
};
use crate::keygroup::KeyGroupRange;
use crate::state::broadcast::RawMap;
use crate::state::operator::{ListSnapshot, restore_share};
use crate::state::snapshot::{
    INDEX_LENGTH_BYTES, KeyGroupSnapshot, decode, index_length, read_index, read_section,
    sections_in,
};

fn corrupt(storage: &CheckpointStorage, path: &str, why: String) -> StorageError {
    StorageError::Corrupt {
        url: storage.url().to_string(),
        path: path.to_string(),
        why,
    }
}

/// The `_metadata` of the checkpoint in directory `dir` (relative to the storage root).
pub(crate) async fn read_metadata(
    storage: &CheckpointStorage,
    dir: &str,
) -> Result<CheckpointMetadata, StorageError> {
    let path = join(dir, METADATA);
    let bytes = storage.get(&path).await?;
    let metadata: CheckpointMetadata =
        serde_json::from_slice(&bytes).map_err(|e| corrupt(storage, &path, e.to_string()))?;
    if metadata.format != FORMAT_VERSION {
        return Err(corrupt(
            storage,
            &path,
            format!(
                "format {} is not the one this binary reads ({FORMAT_VERSION})",
                metadata.format
            ),
        ));
    }
    Ok(metadata)
}

/// The keyed state of `operator` in key groups `wanted`, from every subtask file of the
/// checkpoint in `dir` whose key groups overlap them.
pub(crate) async fn read_keyed_state(
    storage: &CheckpointStorage,
    dir: &str,
    operator: &OperatorMetadata,
    wanted: KeyGroupRange,
) -> Result<Vec<KeyGroupSnapshot>, StorageError> {
    let mut groups = Vec::new();
    for subtask in &operator.subtasks {
        let (Some((start, end)), Some(file)) = (subtask.key_groups, &subtask.keyed_file) else {
            continue;
        };
        if end < wanted.start || start > wanted.end {
            continue;
        }
        let path = join(dir, file);
        let size = storage.size(&path).await?;
        let broken = |why: String| corrupt(storage, &path, why);
        let tail_start = size
            .checked_sub(INDEX_LENGTH_BYTES)
            .ok_or_else(|| broken("shorter than its index".into()))?;
        let tail = storage
            .get_ranges(&path, std::slice::from_ref(&(tail_start..size)))
            .await?;
        let index_len = index_length(&tail[0]).map_err(broken)?;
        let index_start = tail_start
            .checked_sub(index_len)
            .ok_or_else(|| broken("the index length points before the start".into()))?;
        let index = storage
            .get_ranges(&path, std::slice::from_ref(&(index_start..tail_start)))
            .await?;
        let index = read_index(&index[0]).map_err(broken)?;
        let ranges: Vec<std::ops::Range<u64>> = sections_in(&index, wanted)
            .into_iter()
            .map(|(offset, len)| offset..offset + len)
            .collect();
        if ranges.iter().any(|r| r.end > index_start) {
            return Err(broken("a section lies outside the file".into()));
        }
        for section in storage.get_ranges(&path, &ranges).await? {
            groups.push(read_section(&section).map_err(broken)?);
        }
    }
    groups.sort_by_key(|g| g.group);
    Ok(groups)
}

/// A completed checkpoint or savepoint a job starts from.
#[derive(Debug)]
pub struct RestoredCheckpoint {
    /// Opened at the checkpoint's directory.
    storage: CheckpointStorage,
    pub metadata: CheckpointMetadata,
}

/// Runs storage I/O to completion from blocking code. Called where a runtime is already
/// running (a master planning a submitted job), it runs on a thread of its own: a runtime
/// cannot be started inside another.
fn block_on<F: std::future::Future + Send>(f: F) -> Result<F::Output, String>
where
    F::Output: Send,
{
    let run = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map(|rt| rt.block_on(f))
            .map_err(|e| format!("cannot start an I/O runtime: {e}"))
    };
    if tokio::runtime::Handle::try_current().is_err() {
        return run();
    }
    std::thread::scope(|s| {
        s.spawn(run)
            .join()
            .unwrap_or_else(|_| Err("reading the checkpoint panicked".into()))
    })
}

impl RestoredCheckpoint {
    /// Reads the `_metadata` of the checkpoint or savepoint directory `location`
    /// (`…/chk-<n>`, in any form `CheckpointStorage::open` takes).
    pub fn open(location: &str, options: &StorageOptions) -> Result<Self, String> {
        let storage = CheckpointStorage::open(location, options).map_err(|e| e.to_string())?;
        let metadata = block_on(read_metadata(&storage, ""))?.map_err(|e| {
            format!("{e} (is '{location}' the directory of a completed checkpoint, chk-<n>?)")
        })?;
        Ok(RestoredCheckpoint { storage, metadata })
    }

    /// Where it is (its directory's URL).
    pub fn location(&self) -> &str {
        self.storage.url()
    }

    fn operator(&self, uid: &str) -> Option<&OperatorMetadata> {
        self.metadata.operators.iter().find(|o| o.uid == uid)
    }

    /// The keyed state and timers of operator `uid` in key groups `range`.
    pub(crate) fn keyed(
        &self,
        uid: &str,
        range: KeyGroupRange,
    ) -> Result<Vec<KeyGroupSnapshot>, String> {
        let Some(operator) = self.operator(uid) else {
            return Ok(Vec::new());
        };
        block_on(read_keyed_state(&self.storage, "", operator, range))?.map_err(|e| e.to_string())
    }

    /// The broadcast states of operator `uid` for subtask `subtask`: every subtask held
    /// the same, so subtask `s` takes the copy of old subtask `s mod` the old parallelism.
    pub(crate) fn broadcast(
        &self,
        uid: &str,
        subtask: usize,
    ) -> Result<Vec<(String, RawMap)>, String> {
        let Some(operator) = self.operator(uid) else {
            return Ok(Vec::new());
        };
        let copies: Vec<&String> = operator
            .subtasks
            .iter()
            .filter_map(|s| s.broadcast_file.as_ref())
            .collect();
        if copies.is_empty() {
            return Ok(Vec::new());
        }
        let file = copies[subtask % copies.len()];
        read_state_file(&self.storage, "", file).map_err(|e| e.to_string())
    }

    /// The operator state lists of operator `uid` that subtask `subtask` of `parallelism`
    /// restores: lists split evenly over the new subtasks, union lists whole to each.
    pub(crate) fn operator_lists(
        &self,
        uid: &str,
        subtask: usize,
        parallelism: usize,
    ) -> Result<Vec<ListSnapshot>, String> {
        let Some(operator) = self.operator(uid) else {
            return Ok(Vec::new());
        };
        if operator.subtasks.iter().all(|s| s.operator_file.is_none()) {
            return Ok(Vec::new());
        }
        let mut old = vec![Vec::new(); operator.parallelism];
        for s in &operator.subtasks {
            if let (Some(file), Some(slot)) = (&s.operator_file, old.get_mut(s.subtask)) {
                *slot = read_state_file(&self.storage, "", file).map_err(|e| e.to_string())?;
            }
        }
        Ok(restore_share(old, subtask, parallelism))
    }

    /// The positions source `uid`'s subtasks recorded, by old subtask (the old
    /// parallelism is the length), if it recorded any.
    pub(crate) fn source_positions(&self, uid: &str) -> Option<Vec<Option<Vec<u8>>>> {
        let operator = self.operator(uid)?;
        if operator
            .subtasks
            .iter()
            .all(|s| s.source_position.is_none())
        {
            return None;
        }
        let mut positions = vec![None; operator.parallelism];
        for s in &operator.subtasks {
            if let Some(slot) = positions.get_mut(s.subtask) {
                *slot = s.source_position.clone();
            }
        }
        Some(positions)
    }

    /// Fails when the checkpoint holds state of an operator the job does not have
    /// (`uids`), unless that state may be dropped.
    pub(crate) fn check_operators(
        &self,
        uids: &[&str],
        allow_non_restored_state: bool,
    ) -> Result<(), String> {
        let missing: Vec<&str> = self
            .metadata
            .operators
            .iter()
            .filter(|o| !uids.contains(&o.uid.as_str()))
            .map(|o| o.uid.as_str())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if allow_non_restored_state {
            tracing::warn!(operators = ?missing, "dropping the state of operators this job does not have");
            return Ok(());
        }
        Err(format!(
            "the checkpoint holds state of operators this job does not have: {}; give them \
             their uids back (`.uid(\"…\")`), or pass --allow-non-restored-state to drop it",
            missing.join(", ")
        ))
    }
}

/// The sealed MessagePack file `file` of the checkpoint in `dir` (broadcast states,
/// operator state lists).
async fn load_state_file<T: serde::de::DeserializeOwned>(
    storage: &CheckpointStorage,
    dir: &str,
    file: &str,
) -> Result<T, StorageError> {
    let path = join(dir, file);
    let bytes = storage.get(&path).await?;
    decode(&bytes).map_err(|e| corrupt(storage, &path, e))
}

/// [`load_state_file`] from blocking code.
fn read_state_file<T: serde::de::DeserializeOwned + Send>(
    storage: &CheckpointStorage,
    dir: &str,
    file: &str,
) -> Result<T, StorageError> {
    block_on(load_state_file(storage, dir, file))
        .map_err(|e| corrupt(storage, &join(dir, file), e))?
}

/// Reads every file of the checkpoint in `dir` and checks every checksum.
pub(crate) async fn verify_checkpoint(
    storage: &CheckpointStorage,
    dir: &str,
) -> Result<(), StorageError> {
    let metadata = read_metadata(storage, dir).await?;
    let everything = KeyGroupRange {
        start: 0,
        end: metadata.max_parallelism.saturating_sub(1),
    };
    for operator in &metadata.operators {
        read_keyed_state(storage, dir, operator, everything).await?;
        for s in &operator.subtasks {
            if let Some(file) = &s.broadcast_file {
                load_state_file::<Vec<(String, RawMap)>>(storage, dir, file).await?;
            }
            if let Some(file) = &s.operator_file {
                load_state_file::<Vec<ListSnapshot>>(storage, dir, file).await?;
            }
        }
    }
    Ok(())
}

/// The newest completed checkpoint of job directory `job_dir` whose files are all there
/// and whole. Damaged ones are skipped, each with a log line that says why.
pub(crate) async fn newest_valid_checkpoint(
    storage: &CheckpointStorage,
    job_dir: &str,
) -> Result<Option<u64>, StorageError> {
    for id in storage
        .completed_checkpoints(job_dir)
        .await?
        .into_iter()
        .rev()
    {
        match verify_checkpoint(storage, &checkpoint_dir(job_dir, id)).await {
            Ok(()) => return Ok(Some(id)),
            Err(e @ (StorageError::Corrupt { .. } | StorageError::NotFound { .. })) => {
                tracing::warn!(
                    checkpoint = id,
                    error = %e,
                    "skipping a damaged checkpoint; trying the one before it"
                );
            }
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

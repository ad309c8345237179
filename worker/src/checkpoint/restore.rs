//! Reading a completed checkpoint or savepoint back: its `_metadata`, and the keyed state
//! a subtask owns now, read by key-group sections so that a subtask at a new parallelism
//! reads only the ranges it owns.
//!
//! A job that starts from a checkpoint holds a [`RestoredCheckpoint`] in its settings;
//! every operator instance takes its share from it while the job is built.

use crate::checkpoint::metadata::{
    CheckpointMetadata, FORMAT_VERSION, OperatorMetadata, RocksDbFiles,
};
use crate::checkpoint::storage::{
    CheckpointStorage, METADATA, StorageError, StorageOptions, checkpoint_dir, join, parent_dir,
};
use crate::keygroup::KeyGroupRange;
use crate::state::broadcast::RawMap;
use crate::state::operator::{ListSnapshot, restore_share};
use crate::state::rocks::for_each_group_in;
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

/// The keyed state of `operator` in key groups `wanted`, from every subtask of the
/// checkpoint in `dir` whose key groups overlap them: its keyed-state file, and the
/// RocksDB files of an incremental checkpoint.
pub(crate) async fn read_keyed_state(
    storage: &CheckpointStorage,
    dir: &str,
    operator: &OperatorMetadata,
    wanted: KeyGroupRange,
) -> Result<Vec<KeyGroupSnapshot>, StorageError> {
    let mut groups = read_keyed_files(storage, dir, operator, wanted).await?;
    for subtask in &operator.subtasks {
        let (Some((start, end)), Some(rocks)) = (subtask.key_groups, &subtask.rocksdb) else {
            continue;
        };
        let range = KeyGroupRange {
            start: start.max(wanted.start),
            end: end.min(wanted.end),
        };
        if range.start > range.end {
            continue;
        }
        groups.extend(read_rocks_state(storage, parent_dir(dir), rocks, range).await?);
    }
    Ok(merge_groups(groups))
}

/// One snapshot per key group, in order: the parts of a key group that came from
/// different files (timers from the keyed file, entries from RocksDB) put together.
fn merge_groups(mut groups: Vec<KeyGroupSnapshot>) -> Vec<KeyGroupSnapshot> {
    groups.sort_by_key(|g| g.group);
    let mut merged: Vec<KeyGroupSnapshot> = Vec::with_capacity(groups.len());
    for group in groups {
        match merged.last_mut() {
            Some(last) if last.group == group.group => {
                last.tables.extend(group.tables);
                last.event_timers.extend(group.event_timers);
                last.processing_timers.extend(group.processing_timers);
            }
            _ => merged.push(group),
        }
    }
    merged
}

/// Key groups `range` of an incremental RocksDB checkpoint whose files are under
/// `job_dir`: its files are downloaded to a scratch directory (deleted afterwards) and
/// read there.
async fn read_rocks_state(
    storage: &CheckpointStorage,
    job_dir: &str,
    rocks: &RocksDbFiles,
    range: KeyGroupRange,
) -> Result<Vec<KeyGroupSnapshot>, StorageError> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let scratch = ScratchDir(std::env::temp_dir().join(format!(
        "strom-restore-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )));
    let local = |e: std::io::Error| StorageError::Io {
        op: "writing",
        url: "local disk".into(),
        path: scratch.0.display().to_string(),
        message: e.to_string(),
    };
    std::fs::create_dir_all(&scratch.0).map_err(local)?;
    download_rocks_files(storage, job_dir, rocks, Some(&scratch.0)).await?;
    let mut groups = Vec::new();
    // Entries are kept whatever their expiry: reads check it, as they would have.
    for_each_group_in(&scratch.0, &rocks.tables, range, i64::MIN, |g| {
        if !g.is_empty() {
            groups.push(g);
        }
        Ok(())
    })
    .map_err(|why| corrupt(storage, job_dir, why))?;
    Ok(groups)
}

/// A local directory deleted when dropped.
struct ScratchDir(std::path::PathBuf);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Downloads every file of an incremental RocksDB checkpoint (under `job_dir`) into
/// `into` (or, with none, only reads them), checking each one's size and checksum.
async fn download_rocks_files(
    storage: &CheckpointStorage,
    job_dir: &str,
    rocks: &RocksDbFiles,
    into: Option<&std::path::Path>,
) -> Result<(), StorageError> {
    for file in &rocks.files {
        let path = join(job_dir, &file.path);
        let local = into.map(|dir| dir.join(&file.name));
        let sum = storage.get_file(&path, local.as_deref()).await?;
        if (sum.size, sum.crc32) != (file.size, file.crc32) {
            return Err(corrupt(
                storage,
                &path,
                format!(
                    "{} bytes with CRC-32 {:08x}, but the checkpoint wrote {} bytes with \
                     CRC-32 {:08x}",
                    sum.size, sum.crc32, file.size, file.crc32
                ),
            ));
        }
    }
    Ok(())
}

/// The keyed state of `operator` in key groups `wanted`, from every keyed-state file of
/// the checkpoint in `dir` whose key groups overlap them.
async fn read_keyed_files(
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
    /// Opened at the directory that holds the checkpoint's directory (the job's), where
    /// incremental checkpoints' shared files are too.
    storage: CheckpointStorage,
    /// The checkpoint's directory in `storage`.
    dir: String,
    /// The checkpoint's directory, as it was given.
    location: String,
    pub metadata: CheckpointMetadata,
}

/// A location split into the location of its parent directory and its own name; the
/// location itself and "" when it has no parent (a bucket's root).
fn split_location(location: &str) -> (String, String) {
    let trimmed = location.trim_end_matches('/');
    match trimmed.split_once("://") {
        Some((scheme, rest)) if scheme != "file" => match rest.rsplit_once('/') {
            Some((parent, name)) => (format!("{scheme}://{parent}"), name.to_string()),
            None => (location.to_string(), String::new()),
        },
        _ => {
            let path = trimmed.strip_prefix("file://").unwrap_or(trimmed);
            let path = std::path::absolute(path).unwrap_or_else(|_| path.into());
            match (path.parent(), path.file_name()) {
                (Some(parent), Some(name)) => (
                    parent.display().to_string(),
                    name.to_string_lossy().into_owned(),
                ),
                _ => (location.to_string(), String::new()),
            }
        }
    }
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
        let (parent, dir) = split_location(location);
        let storage = CheckpointStorage::open(&parent, options).map_err(|e| e.to_string())?;
        let metadata = block_on(read_metadata(&storage, &dir))?.map_err(|e| {
            format!("{e} (is '{location}' the directory of a completed checkpoint, chk-<n>?)")
        })?;
        Ok(RestoredCheckpoint {
            storage,
            dir,
            location: location.to_string(),
            metadata,
        })
    }

    /// Where it is (its directory's URL).
    pub fn location(&self) -> &str {
        &self.location
    }

    fn operator(&self, uid: &str) -> Option<&OperatorMetadata> {
        self.metadata.operators.iter().find(|o| o.uid == uid)
    }

    /// The keyed state and timers of operator `uid` in key groups `range`; only the
    /// timers when `rocks_taken`, the rest having come with [`Self::download_rocks`].
    pub(crate) fn keyed(
        &self,
        uid: &str,
        range: KeyGroupRange,
        rocks_taken: bool,
    ) -> Result<Vec<KeyGroupSnapshot>, String> {
        let Some(operator) = self.operator(uid) else {
            return Ok(Vec::new());
        };
        let read = if rocks_taken {
            block_on(read_keyed_files(&self.storage, &self.dir, operator, range))
        } else {
            block_on(read_keyed_state(&self.storage, &self.dir, operator, range))
        };
        read?.map_err(|e| e.to_string())
    }

    /// The RocksDB files of operator `uid`'s old subtask of exactly key groups `range`,
    /// when that subtask checkpointed incrementally: a RocksDB instance of the same key
    /// groups can start from them as they are, without reading them entry by entry.
    pub(crate) fn rocks_files(&self, uid: &str, range: KeyGroupRange) -> Option<&RocksDbFiles> {
        let operator = self.operator(uid)?;
        let [subtask] = operator
            .subtasks
            .iter()
            .filter(|s| {
                s.key_groups
                    .is_some_and(|(start, end)| start <= range.end && end >= range.start)
            })
            .collect::<Vec<_>>()[..]
        else {
            return None;
        };
        subtask
            .rocksdb
            .as_ref()
            .filter(|_| subtask.key_groups == Some((range.start, range.end)))
    }

    /// Downloads `files` (from [`Self::rocks_files`]) into the directory `into`.
    pub(crate) fn download_rocks(
        &self,
        files: &RocksDbFiles,
        into: &std::path::Path,
    ) -> Result<(), String> {
        let job_dir = parent_dir(&self.dir);
        block_on(download_rocks_files(
            &self.storage,
            job_dir,
            files,
            Some(into),
        ))?
        .map_err(|e| e.to_string())
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
        read_state_file(&self.storage, &self.dir, file).map_err(|e| e.to_string())
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
                *slot =
                    read_state_file(&self.storage, &self.dir, file).map_err(|e| e.to_string())?;
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
        read_keyed_files(storage, dir, operator, everything).await?;
        for s in &operator.subtasks {
            if let Some(rocks) = &s.rocksdb {
                download_rocks_files(storage, parent_dir(dir), rocks, None).await?;
            }
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

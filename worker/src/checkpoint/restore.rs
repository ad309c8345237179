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

/// Calls `f` with each non-empty key group of `range` of the RocksDB files `rocks`,
/// downloaded into `dir`, one at a time.
fn read_rocks_groups(
    dir: &std::path::Path,
    rocks: &RocksDbFiles,
    range: KeyGroupRange,
    mut f: impl FnMut(KeyGroupSnapshot) -> Result<(), String>,
) -> Result<(), String> {
    // Entries are kept whatever their expiry: reads check it, as they would have.
    for_each_group_in(dir, &rocks.tables, range, i64::MIN, |g| {
        if g.is_empty() { Ok(()) } else { f(g) }
    })
}

/// A local directory deleted when dropped.
struct ScratchDir(std::path::PathBuf);

impl ScratchDir {
    /// A new empty directory in the temp directory.
    fn new() -> Result<Self, StorageError> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let dir = ScratchDir(std::env::temp_dir().join(format!(
            "strom-restore-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        )));
        std::fs::create_dir_all(&dir.0).map_err(|e| StorageError::Io {
            op: "writing",
            url: "local disk".into(),
            path: dir.0.display().to_string(),
            message: e.to_string(),
        })?;
        Ok(dir)
    }
}

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

/// Reads every section of `operator`'s keyed-state files in the checkpoint in `dir`
/// and checks it, a batch at a time (none is kept).
async fn verify_keyed_files(
    storage: &CheckpointStorage,
    dir: &str,
    operator: &OperatorMetadata,
    everything: KeyGroupRange,
) -> Result<(), StorageError> {
    for path in keyed_files(dir, operator, everything) {
        let sections = keyed_file_sections(storage, &path, everything).await?;
        for batch in in_batches(sections, SECTION_BATCH_BYTES) {
            for section in storage.get_ranges(&path, &batch).await? {
                read_section(&section).map_err(|why| corrupt(storage, &path, why))?;
            }
        }
    }
    Ok(())
}

/// Sections read at a time when a restore or a check reads a keyed-state file.
const SECTION_BATCH_BYTES: u64 = 16 << 20;

/// The keyed-state files of `operator`'s subtasks in the checkpoint in `dir` that hold
/// key groups of `wanted`.
fn keyed_files(dir: &str, operator: &OperatorMetadata, wanted: KeyGroupRange) -> Vec<String> {
    operator
        .subtasks
        .iter()
        .filter(|s| {
            s.key_groups
                .is_some_and(|(start, end)| end >= wanted.start && start <= wanted.end)
        })
        .filter_map(|s| Some(join(dir, s.keyed_file.as_ref()?)))
        .collect()
}

/// The byte ranges of the sections of key groups `wanted` in the keyed-state file at
/// `path`, from its index.
async fn keyed_file_sections(
    storage: &CheckpointStorage,
    path: &str,
    wanted: KeyGroupRange,
) -> Result<Vec<std::ops::Range<u64>>, StorageError> {
    let size = storage.size(path).await?;
    let broken = |why: String| corrupt(storage, path, why);
    let tail_start = size
        .checked_sub(INDEX_LENGTH_BYTES)
        .ok_or_else(|| broken("shorter than its index".into()))?;
    let tail = storage
        .get_ranges(path, std::slice::from_ref(&(tail_start..size)))
        .await?;
    let index_len = index_length(&tail[0]).map_err(broken)?;
    let index_start = tail_start
        .checked_sub(index_len)
        .ok_or_else(|| broken("the index length points before the start".into()))?;
    let index = storage
        .get_ranges(path, std::slice::from_ref(&(index_start..tail_start)))
        .await?;
    let index = read_index(&index[0]).map_err(broken)?;
    let ranges: Vec<std::ops::Range<u64>> = sections_in(&index, wanted)
        .into_iter()
        .map(|(offset, len)| offset..offset + len)
        .collect();
    if ranges.iter().any(|r| r.end > index_start) {
        return Err(broken("a section lies outside the file".into()));
    }
    Ok(ranges)
}

/// `ranges` in runs of consecutive ones of at most `bytes` together (a larger one alone),
/// so a restore asks storage for a few sections at a time and holds no more in memory.
fn in_batches(ranges: Vec<std::ops::Range<u64>>, bytes: u64) -> Vec<Vec<std::ops::Range<u64>>> {
    let mut batches: Vec<Vec<std::ops::Range<u64>>> = Vec::new();
    let mut size = 0;
    for r in ranges {
        let len = r.end - r.start;
        match batches.last_mut() {
            Some(batch) if size + len <= bytes => batch.push(r),
            _ => {
                size = 0;
                batches.push(vec![r]);
            }
        }
        size += len;
    }
    batches
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

    /// Calls `f` with the keyed state and timers of operator `uid` in key groups `range`,
    /// a key group at a time (one may come in parts, e.g. its timers apart from its
    /// entries), so state larger than memory can be restored into RocksDB. Without the
    /// RocksDB files of an incremental checkpoint when `rocks_taken`: they came whole with
    /// [`Self::download_rocks`].
    pub(crate) fn for_each_keyed_group(
        &self,
        uid: &str,
        range: KeyGroupRange,
        rocks_taken: bool,
        mut f: impl FnMut(KeyGroupSnapshot) -> Result<(), String>,
    ) -> Result<(), String> {
        let Some(operator) = self.operator(uid) else {
            return Ok(());
        };
        let storage = &self.storage;
        for path in keyed_files(&self.dir, operator, range) {
            let sections =
                block_on(keyed_file_sections(storage, &path, range))?.map_err(|e| e.to_string())?;
            for batch in in_batches(sections, SECTION_BATCH_BYTES) {
                let bytes =
                    block_on(storage.get_ranges(&path, &batch))?.map_err(|e| e.to_string())?;
                for section in bytes {
                    f(read_section(&section)
                        .map_err(|why| corrupt(storage, &path, why).to_string())?)?;
                }
            }
        }
        if rocks_taken {
            return Ok(());
        }
        for subtask in &operator.subtasks {
            let (Some((start, end)), Some(rocks)) = (subtask.key_groups, &subtask.rocksdb) else {
                continue;
            };
            let overlap = KeyGroupRange {
                start: start.max(range.start),
                end: end.min(range.end),
            };
            if overlap.start > overlap.end {
                continue;
            }
            let scratch = ScratchDir::new().map_err(|e| e.to_string())?;
            let job_dir = parent_dir(&self.dir);
            block_on(download_rocks_files(
                storage,
                job_dir,
                rocks,
                Some(&scratch.0),
            ))?
            .map_err(|e| e.to_string())?;
            read_rocks_groups(&scratch.0, rocks, overlap, &mut f)?;
        }
        Ok(())
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
        verify_keyed_files(storage, dir, operator, everything).await?;
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

//! Writes what subtasks snapshotted at a barrier to checkpoint storage, off the task
//! threads, and tells the coordinator where it went. Each process that runs subtasks has
//! one: the coordinator, in this process or in the master, only ever sees these small
//! handles and writes `_metadata` from them.

use crate::checkpoint::CheckpointConfig;
use crate::checkpoint::coordinator::operator_dir;
use crate::checkpoint::metadata::{RocksDbFiles, StateFile, SubtaskMetadata};
use crate::checkpoint::storage::{
    CheckpointStorage, FileSum, StorageError, checkpoint_dir, join, parent_dir,
};
use crate::runtime::barrier::{OperatorSnapshot, SubtaskAck};
use crate::state::rocks::RocksCheckpoint;
use crate::state::snapshot::{KeyGroupSnapshot, KeyedFileWriter, encode, write_keyed_file};
use crossbeam_channel::{Receiver, Sender};
use std::thread::JoinHandle;

/// Where one operator subtask's state of a checkpoint went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OperatorHandle {
    pub uid: String,
    pub parallelism: usize,
    pub state: SubtaskMetadata,
}

/// A subtask's part of checkpoint `checkpoint`, written; with `finished`, the final
/// state of a subtask that has ended (checkpoint 0), for every later checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SubtaskHandles {
    pub checkpoint: u64,
    pub vertex: usize,
    pub subtask: usize,
    pub operators: Vec<OperatorHandle>,
    pub finished: bool,
}

/// A subtask whose part of a checkpoint could not be written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct UploadFailure {
    pub checkpoint: u64,
    pub vertex: usize,
    pub subtask: usize,
    pub error: String,
}

pub(crate) type Upload = Result<SubtaskHandles, UploadFailure>;

/// Writes one operator subtask's keyed state (if it has any) and describes it, into
/// checkpoint directory `dir`. `incremental`: a RocksDB instance that checkpoints
/// incrementally may upload only new files (not for savepoints, which are canonical).
async fn upload_operator(
    storage: &CheckpointStorage,
    dir: &str,
    incremental: bool,
    mut op: OperatorSnapshot,
) -> Result<OperatorHandle, StorageError> {
    let uid = op.uid.to_string();
    let mut state = SubtaskMetadata {
        subtask: op.subtask,
        source_position: op.source_position,
        ..SubtaskMetadata::default()
    };
    let incremental = op.rocks.clone().filter(|r| incremental && r.incremental);
    // Whole, in the canonical format: savepoints, and instances that are not incremental
    // (an incremental one's keyed file holds only its timers).
    let rocks = op.rocks.clone().filter(|_| incremental.is_none());
    if let Some(rocks) = &incremental {
        let uploaded = upload_rocks_files(storage, dir, &uid, op.subtask, rocks).await?;
        state.keyed_bytes += uploaded.files.iter().map(|f| f.size).sum::<u64>();
        state.rocksdb = Some(uploaded);
    }
    if let (Some(range), Some(rocks)) = (op.key_groups, rocks) {
        state.key_groups = Some((range.start, range.end));
        let name = format!("{}/keyed-{}", operator_dir(&uid), op.subtask);
        let path = join(dir, &name);
        // Read out of RocksDB and written to a local file a key group at a time (this
        // thread is the uploader's own), then uploaded in parts.
        let local = rocks.staging_file();
        let keyed = std::mem::take(&mut op.keyed);
        let written = write_rocks_keyed_file(&rocks, keyed, &local, &mut state);
        let result = match written {
            Ok(0) => Ok(FileSum::default()),
            Ok(bytes) => {
                state.keyed_bytes = bytes;
                state.keyed_file = Some(name);
                storage.put_file(&path, &local).await
            }
            Err(why) => Err(StorageError::Corrupt {
                url: storage.url().to_string(),
                path: path.clone(),
                why,
            }),
        };
        let _ = std::fs::remove_file(&local);
        result?;
    } else if let Some(range) = op.key_groups {
        state.key_groups = Some((range.start, range.end));
        for group in &op.keyed {
            for (name, entries) in &group.tables {
                *state.states.entry(name.clone()).or_default() += entries.len() as u64;
            }
            state.event_timers += group.event_timers.len() as u64;
            state.processing_timers += group.processing_timers.len() as u64;
        }
        if op.keyed.iter().any(|g| !g.is_empty()) {
            let file = write_keyed_file(&op.keyed).map_err(|why| StorageError::Corrupt {
                url: storage.url().to_string(),
                path: dir.to_string(),
                why,
            })?;
            let name = format!("{}/keyed-{}", operator_dir(&uid), op.subtask);
            state.keyed_bytes += file.len() as u64;
            storage.put_raw(&join(dir, &name), file).await?;
            state.keyed_file = Some(name);
        }
    }
    if !op.broadcast.is_empty() {
        for (name, entries) in &op.broadcast {
            state
                .broadcast_states
                .insert(name.clone(), entries.len() as u64);
        }
        let name = format!("{}/broadcast-{}", operator_dir(&uid), op.subtask);
        state.keyed_bytes += put_state_file(storage, dir, &name, &op.broadcast).await?;
        state.broadcast_file = Some(name);
    }
    if !op.lists.is_empty() {
        for list in &op.lists {
            state
                .operator_states
                .insert(list.name.clone(), list.elements.len() as u64);
        }
        let name = format!("{}/operator-{}", operator_dir(&uid), op.subtask);
        state.keyed_bytes += put_state_file(storage, dir, &name, &op.lists).await?;
        state.operator_file = Some(name);
    }
    Ok(OperatorHandle {
        uid,
        parallelism: op.parallelism,
        state,
    })
}

/// Uploads the files of an incremental RocksDB checkpoint: SST files that an earlier
/// checkpoint of the instance did not upload go to `shared/<instance>/` beside the
/// checkpoint's directory `dir` (later checkpoints refer to them), the rest (manifest,
/// options) into `dir`.
async fn upload_rocks_files(
    storage: &CheckpointStorage,
    dir: &str,
    uid: &str,
    subtask: usize,
    rocks: &RocksCheckpoint,
) -> Result<RocksDbFiles, StorageError> {
    let job_dir = parent_dir(dir);
    let checkpoint = dir[job_dir.len()..].trim_start_matches('/');
    let files = rocks.files().map_err(|why| StorageError::Corrupt {
        url: storage.url().to_string(),
        path: dir.to_string(),
        why,
    })?;
    let known = rocks
        .uploaded
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let mut out = RocksDbFiles {
        tables: rocks.tables().to_vec(),
        ..RocksDbFiles::default()
    };
    let mut new_shared = Vec::new();
    for (name, local) in files {
        let shared = name.ends_with(".sst");
        if let Some(file) = known.get(&name).filter(|_| shared) {
            out.files.push(file.clone());
            continue;
        }
        let path = if shared {
            format!("shared/{}/{name}", rocks.instance)
        } else {
            format!(
                "{checkpoint}/{}/rocksdb-{subtask}/{name}",
                operator_dir(uid)
            )
        };
        let sum = storage.put_file(&join(job_dir, &path), &local).await?;
        let file = StateFile {
            name,
            path,
            size: sum.size,
            crc32: sum.crc32,
        };
        out.uploaded_bytes += sum.size;
        if shared {
            new_shared.push(file.clone());
        }
        out.files.push(file);
    }
    // Known only once they are all up: a failed upload leaves nothing to refer to.
    rocks
        .uploaded
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .extend(new_shared.into_iter().map(|f| (f.name.clone(), f)));
    Ok(out)
}

/// Writes `value` as the sealed MessagePack file `name` of the checkpoint in `dir`
/// (broadcast states, operator state lists); its bytes.
async fn put_state_file<T: serde::Serialize>(
    storage: &CheckpointStorage,
    dir: &str,
    name: &str,
    value: &T,
) -> Result<u64, StorageError> {
    let bytes = encode(value).map_err(|why| StorageError::Corrupt {
        url: storage.url().to_string(),
        path: join(dir, name),
        why,
    })?;
    storage.put(&join(dir, name), &bytes).await?;
    Ok(bytes.len() as u64)
}

/// Writes the keyed-state file of a RocksDB checkpoint to `local`, with the timers of
/// `timers` (one snapshot per key group, in order), counting what it holds into `state`.
/// The file's length; 0 (and no file) when there is no state.
fn write_rocks_keyed_file(
    rocks: &RocksCheckpoint,
    mut timers: Vec<KeyGroupSnapshot>,
    local: &std::path::Path,
    state: &mut SubtaskMetadata,
) -> Result<u64, String> {
    let file = std::fs::File::create(local)
        .map_err(|e| format!("cannot create {}: {e}", local.display()))?;
    let mut writer = KeyedFileWriter::new(std::io::BufWriter::with_capacity(1 << 20, file));
    let mut timers = timers.iter_mut();
    let mut any = false;
    rocks.for_each_group(|mut group| {
        if let Some(t) = timers.next() {
            group.event_timers = std::mem::take(&mut t.event_timers);
            group.processing_timers = std::mem::take(&mut t.processing_timers);
        }
        for (name, entries) in &group.tables {
            *state.states.entry(name.clone()).or_default() += entries.len() as u64;
        }
        state.event_timers += group.event_timers.len() as u64;
        state.processing_timers += group.processing_timers.len() as u64;
        any |= !group.is_empty();
        writer.add(&group)
    })?;
    let sections = writer.written();
    writer.finish()?;
    let length = std::fs::metadata(local).map_or(sections, |m| m.len());
    Ok(if any { length } else { 0 })
}

/// Writes a subtask's snapshots of a checkpoint of `config`'s job (into its checkpoint
/// directory), or of a savepoint (into the savepoint's directory).
pub(crate) async fn upload(config: &CheckpointConfig, ack: SubtaskAck) -> Upload {
    let fail = |ack: &SubtaskAck, error: String| UploadFailure {
        checkpoint: ack.checkpoint,
        vertex: ack.vertex,
        subtask: ack.subtask,
        error,
    };
    let (storage, dir) = match &ack.savepoint {
        Some(location) => match CheckpointStorage::open(location, &config.options) {
            Ok(storage) => (storage, String::new()),
            Err(e) => return Err(fail(&ack, e.to_string())),
        },
        // A finished subtask's final state has no files (a source's position is in the
        // metadata); should it have any, they go with it under `chk-0`.
        None => (
            config.storage.clone(),
            checkpoint_dir(&config.job_dir, ack.checkpoint),
        ),
    };
    let storage = &storage;
    let incremental = ack.savepoint.is_none();
    let writes = ack
        .operators
        .into_iter()
        .map(|op| upload_operator(storage, &dir, incremental, op));
    match futures::future::try_join_all(writes).await {
        Ok(operators) => Ok(SubtaskHandles {
            checkpoint: ack.checkpoint,
            vertex: ack.vertex,
            subtask: ack.subtask,
            operators,
            finished: ack.finished,
        }),
        Err(e) => Err(UploadFailure {
            checkpoint: ack.checkpoint,
            vertex: ack.vertex,
            subtask: ack.subtask,
            error: e.to_string(),
        }),
    }
}

/// Starts the uploader of this process: it writes every acknowledgement from `acks` and
/// sends the result to `done`, until every subtask has dropped its sender.
pub(crate) fn spawn(
    config: CheckpointConfig,
    acks: Receiver<SubtaskAck>,
    done: Sender<Upload>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("checkpoint uploader".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the checkpoint uploader");
                    return;
                }
            };
            for ack in acks.iter() {
                let result = runtime.block_on(upload(&config, ack));
                if done.send(result).is_err() {
                    return;
                }
            }
        })
}

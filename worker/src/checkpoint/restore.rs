//! Reading a completed checkpoint or savepoint back: its `_metadata`, and the keyed state
//! a subtask owns now, read by key-group sections so that a subtask at a new parallelism
//! reads only the ranges it owns.

#![cfg_attr(
    not(test),
    expect(
        dead_code,
        reason = "restoring jobs from it is the next step of issue 5"
    )
)]

use crate::checkpoint::metadata::{CheckpointMetadata, FORMAT_VERSION, OperatorMetadata};
use crate::checkpoint::storage::{CheckpointStorage, METADATA, StorageError};
use crate::keygroup::KeyGroupRange;
use crate::state::snapshot::{
    INDEX_LENGTH_BYTES, KeyGroupSnapshot, index_length, read_index, read_section, sections_in,
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
    let path = format!("{dir}/{METADATA}");
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
        let path = format!("{dir}/{file}");
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

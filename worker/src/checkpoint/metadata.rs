//! The `_metadata` file of a checkpoint or savepoint: which operators it holds state for,
//! at which parallelism, where each subtask's keyed state is, what states it has and how
//! big they are, and each source subtask's position. JSON in a sealed file, so people can
//! read it (`strom savepoint inspect`) and no byte of it goes unchecked.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The version of this layout; a reader refuses others with a clear message.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointMetadata {
    pub format: u32,
    pub id: u64,
    pub job: String,
    /// When the checkpoint was triggered (ms since the Unix epoch).
    pub timestamp_ms: i64,
    pub max_parallelism: usize,
    /// The run (`strom master --run-id`) that took it; none for checkpoints of a job
    /// without a run id, and for those written before runs were recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// By uid.
    pub operators: Vec<OperatorMetadata>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorMetadata {
    pub uid: String,
    pub parallelism: usize,
    /// By subtask index.
    pub subtasks: Vec<SubtaskMetadata>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubtaskMetadata {
    pub subtask: usize,
    /// First and last key group of the subtask, for keyed operators.
    pub key_groups: Option<(usize, usize)>,
    /// The keyed-state file, relative to the checkpoint's directory.
    pub keyed_file: Option<String>,
    pub keyed_bytes: u64,
    /// Entries per named state.
    pub states: BTreeMap<String, u64>,
    pub event_timers: u64,
    pub processing_timers: u64,
    /// Broadcast states: the file (relative to the checkpoint's directory) and entries per
    /// state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broadcast_file: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub broadcast_states: BTreeMap<String, u64>,
    /// Operator state lists (also a sink's pending transactions): the file (relative to
    /// the checkpoint's directory) and elements per list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_file: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub operator_states: BTreeMap<String, u64>,
    /// An incremental RocksDB checkpoint of the subtask's keyed state (its timers are in
    /// `keyed_file`); none when the keyed state is in `keyed_file` in the canonical format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rocksdb: Option<RocksDbFiles>,
    /// A source subtask's position (the reader's own bytes).
    #[serde(default, with = "serde_bytes", skip_serializing_if = "Option::is_none")]
    pub source_position: Option<Vec<u8>>,
}

/// The files of a RocksDB instance as a checkpoint took them: enough to open it again as
/// it was, or to read its key groups into another backend or parallelism.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RocksDbFiles {
    /// State names, in the order of their table ids in the instance's keys.
    pub tables: Vec<String>,
    pub files: Vec<StateFile>,
    /// Bytes this checkpoint uploaded (the rest were uploaded by earlier checkpoints).
    pub uploaded_bytes: u64,
}

/// One file of a RocksDB checkpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateFile {
    /// Its name in the instance's directory.
    pub name: String,
    /// Where it is stored, relative to the directory that holds the checkpoint's
    /// directory (the job's): `shared/…` for SST files that later checkpoints may share,
    /// `chk-<n>/…` for the rest.
    pub path: String,
    pub size: u64,
    /// CRC-32 of its bytes (RocksDB files are stored as they are, not sealed).
    pub crc32: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_without_a_run_still_reads_and_a_run_is_written_only_when_there_is_one() {
        // A checkpoint written before runs were recorded.
        let old = r#"{"format": 1, "id": 3, "job": "word-count", "timestamp_ms": 7,
                      "max_parallelism": 128, "operators": []}"#;
        let mut metadata: CheckpointMetadata = serde_json::from_str(old).expect("reads");
        assert_eq!(metadata.run_id, None);
        let json = serde_json::to_string(&metadata).expect("writes");
        assert!(!json.contains("run_id"), "{json}");
        metadata.run_id = Some("r2".into());
        let json = serde_json::to_string(&metadata).expect("writes");
        let back: CheckpointMetadata = serde_json::from_str(&json).expect("reads");
        assert_eq!(back.run_id.as_deref(), Some("r2"));
    }
}

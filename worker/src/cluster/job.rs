//! A job as the master sends it to workers: its name, arguments and settings, from which
//! every process builds and plans the same graph.

use crate::api::StreamEnv;
use crate::checkpoint::restore::RestoredCheckpoint;
use crate::checkpoint::storage::{CheckpointStorage, StorageOptions};
use crate::checkpoint::{CheckpointConfig, CheckpointRetention, CheckpointingMode};
use crate::config::{ExecutionConfig, RuntimeMode};
use crate::graph::StreamGraph;
use crate::graph::plan::Plan;
use crate::jobs::{JobArgs, JobRegistry};
use crate::state::{RocksDbConfig, StateBackend};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What to run: a job of the binary's registry, its `--arg key=value` arguments, and the
/// settings `strom run` also takes. As JSON (the body of `POST /v1/jobs`) only `name` is
/// required; the rest default as `strom run`'s flags do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSubmission {
    pub name: String,
    /// `key=value` each.
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default = "default_parallelism")]
    pub parallelism: usize,
    #[serde(default = "default_max_parallelism")]
    pub max_parallelism: usize,
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Batch runtime mode (final results of bounded input) instead of streaming.
    #[serde(default)]
    pub batch_mode: bool,
    /// Periodic checkpoints; none: the job takes none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoints: Option<CheckpointSettings>,
    /// The directory of a completed checkpoint or savepoint to start from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_checkpoint: Option<String>,
    /// Drop the state of operators the job no longer has, instead of failing.
    #[serde(default)]
    pub allow_non_restored_state: bool,
    /// Where keyed state lives; none: on the heap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<StateSettings>,
}

/// The state backend, as flags and JSON give it (Flink's `state.backend.type`,
/// `state.backend.rocksdb.localdir`, `state.backend.rocksdb.memory.fixed-per-tm`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSettings {
    /// `heap` or `rocksdb`.
    pub backend: String,
    /// RocksDB: where the instances' directories go [default: the temp directory].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    /// RocksDB: block cache and memtables of a process together, in MiB.
    #[serde(default = "default_rocksdb_memory_mb")]
    pub memory_mb: u64,
    /// RocksDB: checkpoints upload only the files earlier ones did not (Flink's
    /// `execution.checkpointing.incremental`); savepoints are always whole.
    #[serde(default = "default_incremental")]
    pub incremental: bool,
}

fn default_incremental() -> bool {
    true
}

fn default_rocksdb_memory_mb() -> u64 {
    256
}

impl StateSettings {
    pub(crate) fn backend(&self) -> Result<StateBackend, String> {
        match self.backend.as_str() {
            "heap" => Ok(StateBackend::Heap),
            "rocksdb" => {
                let mut config = RocksDbConfig {
                    incremental: self.incremental,
                    ..RocksDbConfig::default()
                };
                if let Some(dir) = &self.dir {
                    config.dir = dir.into();
                }
                if self.memory_mb == 0 {
                    return Err("the RocksDB memory budget is 0 MiB: give it some".into());
                }
                config.memory_budget = usize::try_from(self.memory_mb << 20).map_err(|_| {
                    format!(
                        "a RocksDB memory budget of {} MiB is too large",
                        self.memory_mb
                    )
                })?;
                Ok(StateBackend::RocksDb(config))
            }
            other => Err(format!(
                "unknown state backend '{other}': use heap or rocksdb"
            )),
        }
    }
}

/// How a job checkpoints, as flags and JSON give it (Flink's `execution.checkpointing.*`
/// and `state.checkpoints.dir`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointSettings {
    pub interval_ms: u64,
    /// `s3://bucket/prefix`, `file:///dir`, a directory, or `memory://name`.
    #[serde(default = "default_checkpoint_dir")]
    pub dir: String,
    #[serde(default = "default_checkpoint_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default)]
    pub min_pause_ms: u64,
    /// Checkpoints in flight at once (Flink's `max-concurrent-checkpoints`).
    #[serde(default = "default_max_concurrent")]
    pub max_concurrent: usize,
    #[serde(default = "default_retained")]
    pub retained: usize,
    /// For `s3://` directories.
    #[serde(default)]
    pub s3: S3Settings,
    /// `exactly-once` (aligned barriers) or `at-least-once`.
    #[serde(default)]
    pub mode: CheckpointingMode,
    /// `retain-on-cancellation` or `delete-on-cancellation`.
    #[serde(default)]
    pub retention: CheckpointRetention,
}

/// How to reach an S3-compatible store; unset fields come from the AWS environment
/// variables.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Settings {
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub path_style: Option<bool>,
    #[serde(default)]
    pub access_key_id: Option<String>,
    #[serde(default)]
    pub secret_access_key: Option<String>,
    #[serde(default)]
    pub credentials_file: Option<String>,
    /// How long one request may take, retries included, in milliseconds [default:
    /// 30000]: a checkpoint write to an unreachable store fails after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_timeout_ms: Option<u64>,
}

impl S3Settings {
    pub(crate) fn options(&self) -> StorageOptions {
        StorageOptions {
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            path_style: self.path_style,
            access_key_id: self.access_key_id.clone(),
            secret_access_key: self.secret_access_key.clone(),
            credentials_file: self.credentials_file.clone().map(Into::into),
            request_timeout: self
                .request_timeout_ms
                .map_or(StorageOptions::default().request_timeout, |ms| {
                    Duration::from_millis(ms.max(1))
                }),
            ..StorageOptions::default()
        }
    }
}

fn default_checkpoint_dir() -> String {
    crate::checkpoint::storage::DEFAULT_LOCATION.to_string()
}

fn default_checkpoint_timeout_ms() -> u64 {
    60_000
}

fn default_retained() -> usize {
    1
}

fn default_max_concurrent() -> usize {
    1
}

impl CheckpointSettings {
    /// The coordinator's settings for job `job`; opens the storage (which checks its
    /// address but contacts nothing).
    pub(crate) fn config(&self, job: &str) -> Result<CheckpointConfig, String> {
        if self.interval_ms == 0 {
            return Err("checkpoint interval is 0: give a positive number of milliseconds".into());
        }
        if self.max_concurrent == 0 {
            return Err(
                "max concurrent checkpoints is 0: give 1 or more (--max-concurrent-checkpoints, \
                 checkpoints.max_concurrent)"
                    .into(),
            );
        }
        let options = self.s3.options();
        let storage = CheckpointStorage::open(&self.dir, &options).map_err(|e| e.to_string())?;
        Ok(CheckpointConfig {
            interval: Duration::from_millis(self.interval_ms),
            timeout: Duration::from_millis(self.timeout_ms.max(1)),
            min_pause: Duration::from_millis(self.min_pause_ms),
            max_concurrent: self.max_concurrent,
            retained: self.retained.max(1),
            storage,
            options,
            job_dir: job.to_string(),
            mode: self.mode,
            retention: self.retention,
        })
    }
}

fn default_parallelism() -> usize {
    1
}

fn default_max_parallelism() -> usize {
    crate::keygroup::DEFAULT_MAX_PARALLELISM
}

fn default_batch_size() -> usize {
    ExecutionConfig::default().batch_size
}

impl JobSubmission {
    pub(crate) fn config(&self) -> Result<ExecutionConfig, String> {
        let checkpointing = match &self.checkpoints {
            Some(c) => Some(c.config(&self.name)?),
            None => None,
        };
        let restore = match &self.from_checkpoint {
            Some(location) => {
                let s3 = self.checkpoints.as_ref().map(|c| &c.s3);
                let options = s3.map(S3Settings::options).unwrap_or_default();
                Some(std::sync::Arc::new(RestoredCheckpoint::open(
                    location, &options,
                )?))
            }
            None => None,
        };
        Ok(ExecutionConfig {
            parallelism: self.parallelism,
            max_parallelism: self.max_parallelism,
            batch_size: self.batch_size.max(1),
            runtime_mode: if self.batch_mode {
                RuntimeMode::Batch
            } else {
                RuntimeMode::Streaming
            },
            checkpointing,
            restore,
            allow_non_restored_state: self.allow_non_restored_state,
            state_backend: match &self.state {
                Some(s) => s.backend()?,
                None => StateBackend::Heap,
            },
            ..ExecutionConfig::default()
        })
    }

    /// Builds and plans the job, as every process of it does.
    pub(crate) fn plan(
        &self,
        registry: &JobRegistry,
    ) -> Result<(StreamGraph, Plan, ExecutionConfig), String> {
        if self.parallelism == 0 {
            return Err("parallelism is 0: a job needs at least 1".into());
        }
        let spec = registry.find(&self.name).ok_or_else(|| {
            format!(
                "unknown job '{}'; this binary's jobs are: {}",
                self.name,
                registry.names().join(", ")
            )
        })?;
        let args = JobArgs::parse(spec.name, spec.args, &self.args).map_err(|e| e.to_string())?;
        let env = StreamEnv::with_config(self.config()?);
        (spec.build)(&env, &args).map_err(|e| format!("{e:#}"))?;
        env.plan_job().map_err(|e| e.to_string())
    }
}

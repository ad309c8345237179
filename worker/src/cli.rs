//! The `strom` command line: `strom run <job>` and `strom jobs` in one process; `strom
//! master` and `strom worker` for jobs across processes; `strom submit | list | status |
//! savepoint | stop | cancel` against a master's REST API.
//!
//! `strom master <job>` takes `--run-id` (which deployment of the job this is: where it
//! starts, and its recorded result), `--from-latest-checkpoint` and `--after-job-end
//! exit|serve`, for an operator that restarts and upgrades masters (see
//! `cluster::master`). With `--leader-lease <name>` several masters of a job elect their
//! leader with a Kubernetes Lease (client from KUBECONFIG or the pod's service account):
//! followers serve `/healthz` but are not ready and act on nothing until they lead; a
//! leader that loses the lease exits with code 1; `--ha-configmap` names the ConfigMap
//! the leader keeps up to date (see `cluster::master::ha`).
//!
//! `strom savepoint dispose <dir>` asks the master to delete a savepoint
//! (`POST /v1/savepoint-disposal`).
//!
//! `strom produce <kind> --brokers host:port --topic T` feeds a Kafka topic with a seed
//! job's generated data for demos (see `jobs::produce`).
//!
//! Users with their own jobs build their own binary around the same command line:
//! `fn main() -> ExitCode { strom::main(my_registry()) }`.

use crate::api::StreamEnv;
use crate::checkpoint::{CheckpointRetention, CheckpointingMode};
use crate::cluster::client::{RestClient, job_text, jobs_text};
use crate::cluster::job::{CheckpointSettings, JobSubmission, S3Settings, StateSettings};
use crate::cluster::master::{
    AfterJobEnd, HaOptions, JobOutcome, JobStatus, JobView, LostLeadership, MasterExit,
    MasterOptions, RunId, RunOptions, run_master, run_master_with,
};
use crate::cluster::restart::RestartStrategy;
use crate::cluster::worker::{WorkerOptions, run_worker};
use crate::error::JobError;
use crate::jobs::{JobArgs, JobRegistry, JobSpec};
use crate::runtime::metrics::format_summary;
use clap::{Parser, Subcommand, ValueEnum};
use http::Method;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(name = "strom", version, about = "Strom: a Flink-class stream processor", long_about = None)]
// Options from the config file come first; one typed again on the command line wins.
#[command(args_override_self = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log level (error, warn, info, debug, trace) or a tracing filter like `strom=debug`.
    #[arg(long, global = true, default_value = "info", env = "STROM_LOG")]
    log_level: String,
    /// Log line format (json: one JSON object per line, for log collectors; pods the
    /// operator makes set it).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "STROM_LOG_FORMAT")]
    log_format: LogFormat,
    /// A TOML file with options per command: `[master]`, `[worker]`, `[run]`, …, keys
    /// named as the long flags (`rest-bind = "0.0.0.0:8081"`). Flags typed on the command
    /// line win over it; it wins over environment variables.
    #[arg(long, global = true, env = "STROM_CONFIG")]
    config: Option<std::path::PathBuf>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a job in this process, with every parallel instance on its own thread.
    Run(RunArgs),
    /// List the jobs this binary can run, or show the arguments of one.
    Jobs {
        /// A job name: show its arguments.
        job: Option<String>,
    },
    /// Run a master. With a job: plan it, wait for workers' slots, deploy it, follow it
    /// to its end (exit 0 when it finished, 1 when it failed). Without: take jobs from
    /// `strom submit` until stopped.
    ///
    /// Where the job starts: without --run-id, from the newest checkpoint in the job's
    /// checkpoint directory, else from --from-checkpoint, else fresh. With --run-id, in
    /// this order: not at all if the run already ended (its result is in
    /// <checkpoint-dir>/<job>/results/<run-id>.json; the master only shows how it ended);
    /// from the newest checkpoint this run took (the master restarted within its run);
    /// from --from-checkpoint; with --from-latest-checkpoint, from the newest checkpoint
    /// of any run; else fresh, even when other runs left checkpoints.
    ///
    /// With --leader-lease, several masters of the job elect a leader (Kubernetes Lease):
    /// only the leader is ready (/readyz), runs the job and takes checkpoints; the others
    /// wait and take over when it is gone. A leader that loses the lease exits with 1.
    // Boxed: its many flags would make every command as large.
    Master(Box<MasterArgs>),
    /// Run a worker: offer slots to a master and run the subtasks it deploys.
    Worker(WorkerArgs),
    /// Submit a job to a running master (REST API); it runs once the workers offer
    /// enough free slots. Prints the job's id.
    Submit(SubmitArgs),
    /// List the master's jobs (REST API).
    List(ApiArgs),
    /// Show a job: its state, restarts, and where its subtasks run (REST API).
    Status {
        /// The job's id (see `strom list`).
        job: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Take a savepoint of a running job and print where it went (REST API); or
    /// `strom savepoint inspect <dir>`, or `strom savepoint dispose <dir>`.
    Savepoint(SavepointArgs),
    /// Stop a job with a savepoint: take it, then end the job (REST API).
    Stop {
        /// The job's id (see `strom list`).
        job: String,
        /// Where the savepoint goes [default: `savepoints` in the job's checkpoint dir].
        target: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Cancel a job (REST API).
    Cancel {
        /// The job's id (see `strom list`).
        job: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Feed a Kafka topic with a seed job's generated data, in the form the job's topic
    /// option reads (`strom produce transactions --brokers localhost:9092 --topic tx`,
    /// then `strom run fraud-detection --arg kafka-brokers=localhost:9092 --arg
    /// transactions-topic=tx`). Prints the records written per partition.
    Produce(crate::jobs::produce::ProduceArgs),
}

#[derive(clap::Args, Debug)]
struct ApiArgs {
    /// The master's REST API.
    #[arg(long, default_value = "http://127.0.0.1:8081", env = "STROM_REST_URL")]
    rest_url: String,
    /// Readable text, or the API's JSON for scripts.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
struct SavepointArgs {
    #[command(subcommand)]
    inspect: Option<SavepointCommand>,
    /// The job's id (see `strom list`).
    job: Option<String>,
    /// Where the savepoint goes [default: `savepoints` in the job's checkpoint dir].
    target: Option<String>,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(Subcommand, Debug)]
enum SavepointCommand {
    /// List a checkpoint's or savepoint's operators, key groups, states and sizes.
    Inspect {
        /// Its directory (`…/chk-<n>` or `…/savepoint-…`), in any form --checkpoint-dir
        /// takes.
        path: String,
        /// Readable text, or its `_metadata` as JSON.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Delete a savepoint (or checkpoint) through the master, with the storage settings
    /// of its checkpoints (REST API: POST /v1/savepoint-disposal). Only a directory that
    /// holds a `_metadata` Strom wrote; anything else is refused.
    Dispose {
        /// Its directory (`…/savepoint-…` or `…/chk-<n>`), as the master reaches it.
        location: String,
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(clap::Args, Debug)]
struct SubmitArgs {
    #[command(flatten)]
    job: JobOptions,
    #[command(flatten)]
    api: ApiArgs,
    /// Follow the job to its end: exit 0 when it finished, 1 when it failed or was
    /// cancelled.
    #[arg(long)]
    wait: bool,
}

#[derive(clap::Args, Debug)]
struct MasterArgs {
    /// The job to run (see `strom jobs`), with the same options as `strom run`; none:
    /// a session master that takes jobs from `strom submit`.
    job: Option<String>,
    #[command(flatten)]
    settings: JobSettings,
    /// Address workers attach to.
    #[arg(long, default_value = "0.0.0.0:6123", env = "STROM_MASTER_BIND")]
    bind: std::net::SocketAddr,
    /// Address of the REST API (`strom list|status|cancel` use it).
    #[arg(long, default_value = "0.0.0.0:8081", env = "STROM_REST_BIND")]
    rest_bind: std::net::SocketAddr,
    /// How often workers send a heartbeat, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    heartbeat_interval_ms: u64,
    /// Silence after which a worker is lost, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    heartbeat_timeout_ms: u64,
    #[command(flatten)]
    restart: RestartArgs,
    /// Names this deployment of the job (letters, digits, '.', '_', '-'), e.g. one per
    /// upgrade. Every checkpoint and savepoint records the run that took it; a master
    /// restarted with the same run id resumes from that run's newest checkpoint (before
    /// --from-checkpoint); once the job ended (finished, failed, cancelled, stopped with
    /// a savepoint) the master records how in <checkpoint-dir>/<job>/results/<run-id>.json
    /// and a master started again with this run id does not run the job again.
    #[arg(long, env = "STROM_RUN_ID")]
    run_id: Option<String>,
    /// With --run-id: a run with no checkpoint of its own and no --from-checkpoint starts
    /// from the newest valid checkpoint of any run in the job's checkpoint directory (a
    /// last-state upgrade; --allow-non-restored-state applies) instead of fresh.
    #[arg(long, requires = "run_id")]
    from_latest_checkpoint: bool,
    /// Once the job ended: exit (0 when it finished, was stopped with a savepoint or was
    /// cancelled, 1 when it failed), or serve: keep the REST API up, showing how the job
    /// ended, until SIGTERM or SIGINT, then exit 0.
    #[arg(long, value_enum, default_value_t = AfterJobEndArg::Exit, env = "STROM_AFTER_JOB_END")]
    after_job_end: AfterJobEndArg,
    #[command(flatten)]
    leader: LeaderArgs,
}

/// Leader election among a job's masters (high availability on Kubernetes, no
/// ZooKeeper); see `cluster::master::ha`.
#[derive(clap::Args, Debug)]
struct LeaderArgs {
    /// Elect the leader among the job's masters with this coordination.k8s.io/v1 Lease
    /// (the operator sets <job>-master). A follower serves /healthz, answers /readyz with
    /// 503 and acts on nothing (binds no --bind port, runs no job, takes no checkpoint)
    /// until it leads; then it starts as a master without a lease would (with --run-id:
    /// from the run's newest checkpoint). A leader that loses the lease exits with code 1;
    /// on SIGTERM it hands the lease back so a follower takes over at once. The
    /// Kubernetes client comes from KUBECONFIG or the pod's service account.
    #[arg(long, env = "STROM_LEADER_LEASE")]
    leader_lease: Option<String>,
    /// With --leader-lease: the Lease's (and the HA ConfigMap's) namespace [default:
    /// the kubeconfig's, or the pod's].
    // No `requires`: POD_NAMESPACE is set in every pod, also for masters without a lease.
    #[arg(long, env = "POD_NAMESPACE")]
    leader_lease_namespace: Option<String>,
    /// With --leader-lease: this master's identity in the election, unique among the
    /// job's masters [default: the host name, which is the pod's name].
    #[arg(long, env = "POD_NAME")]
    leader_identity: Option<String>,
    /// How long the lease holds without renewal: followers take over this long after
    /// the leader's last renewal. Milliseconds.
    #[arg(long, default_value_t = 15_000, requires = "leader_lease")]
    leader_lease_duration_ms: u64,
    /// How long the leader keeps trying to renew before it gives up (and exits);
    /// shorter than the lease duration. Milliseconds.
    #[arg(long, default_value_t = 10_000, requires = "leader_lease")]
    leader_renew_deadline_ms: u64,
    /// Time between attempts to take or renew the lease. Milliseconds.
    #[arg(long, default_value_t = 2_000, requires = "leader_lease")]
    leader_retry_period_ms: u64,
    /// While leading, keep this ConfigMap (in the Lease's namespace) up to date: leader,
    /// restAddress, runId, latestCheckpoint, jobState (created when missing; a failed
    /// write is a warning). The operator sets <job>-ha.
    #[arg(long, env = "STROM_HA_CONFIGMAP", requires = "leader_lease")]
    ha_configmap: Option<String>,
}

impl LeaderArgs {
    /// The election's settings, if the master has a lease; errors name the flag.
    fn options(&self) -> Result<Option<HaOptions>, String> {
        let Some(lease) = self.leader_lease.clone() else {
            return Ok(None);
        };
        let identity = match self.leader_identity.clone().filter(|i| !i.is_empty()) {
            Some(identity) => identity,
            None => crate::cluster::master::ha::host_name().ok_or_else(|| {
                "--leader-identity: no host name to default to; give each master of the job                  its own identity (--leader-identity, or POD_NAME)"
                    .to_string()
            })?,
        };
        let ms = Duration::from_millis;
        Ok(Some(HaOptions {
            lease,
            namespace: self.leader_lease_namespace.clone(),
            identity,
            lease_duration: ms(self.leader_lease_duration_ms),
            renew_deadline: ms(self.leader_renew_deadline_ms),
            retry_period: ms(self.leader_retry_period_ms),
            configmap: self.ha_configmap.clone().filter(|c| !c.is_empty()),
        }))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum AfterJobEndArg {
    Exit,
    Serve,
}

/// Flink's restart strategies and their options (`restart-strategy.*`), with its defaults.
#[derive(clap::Args, Debug)]
struct RestartArgs {
    /// What to do when a subtask fails or a worker is lost: fail the job (none), or
    /// restart it from scratch.
    #[arg(long, value_enum, default_value_t = Restart::None)]
    restart_strategy: Restart,
    /// fixed-delay: restarts before the job fails.
    #[arg(long, default_value_t = 1)]
    restart_attempts: u32,
    /// fixed-delay and failure-rate: pause before a restart; exponential-delay: the first
    /// pause. Milliseconds.
    #[arg(long, default_value_t = 1000)]
    restart_delay_ms: u64,
    /// exponential-delay: the longest pause, in milliseconds.
    #[arg(long, default_value_t = 60_000)]
    restart_max_delay_ms: u64,
    /// exponential-delay: growth of the pause per failure.
    #[arg(long, default_value_t = 1.5)]
    restart_multiplier: f64,
    /// exponential-delay: a run this long without failure resets the pause, in milliseconds.
    #[arg(long, default_value_t = 3_600_000)]
    restart_reset_after_ms: u64,
    /// failure-rate: most failures within the interval before the job fails.
    #[arg(long, default_value_t = 1)]
    restart_max_failures: u32,
    /// failure-rate: the interval, in milliseconds.
    #[arg(long, default_value_t = 60_000)]
    restart_failure_interval_ms: u64,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Restart {
    None,
    FixedDelay,
    ExponentialDelay,
    FailureRate,
}

impl RestartArgs {
    fn strategy(&self) -> RestartStrategy {
        let ms = Duration::from_millis;
        match self.restart_strategy {
            Restart::None => RestartStrategy::None,
            Restart::FixedDelay => RestartStrategy::FixedDelay {
                attempts: self.restart_attempts,
                delay: ms(self.restart_delay_ms),
            },
            Restart::ExponentialDelay => RestartStrategy::ExponentialDelay {
                initial: ms(self.restart_delay_ms),
                max: ms(self.restart_max_delay_ms),
                multiplier: self.restart_multiplier,
                reset_after: ms(self.restart_reset_after_ms),
            },
            Restart::FailureRate => RestartStrategy::FailureRate {
                max_failures: self.restart_max_failures,
                interval: ms(self.restart_failure_interval_ms),
                delay: ms(self.restart_delay_ms),
            },
        }
    }
}

#[derive(clap::Args, Debug)]
struct WorkerArgs {
    /// The master's address.
    #[arg(long, env = "STROM_MASTER", default_value = "http://127.0.0.1:6123")]
    master: String,
    /// Subtask slots this worker offers (slot s runs subtask s of every operator).
    #[arg(long, default_value_t = 1)]
    slots: u32,
    /// Unique id among the job's workers [default: worker-<process id>].
    #[arg(long, env = "STROM_WORKER_ID")]
    id: Option<String>,
    /// Address of this worker's data-plane server (port 0: any free port).
    #[arg(long, default_value = "0.0.0.0:6124", env = "STROM_DATA_BIND")]
    data_bind: std::net::SocketAddr,
    /// Host other workers use to reach this one.
    #[arg(long, default_value = "127.0.0.1", env = "STROM_ADVERTISE_HOST")]
    advertise_host: String,
    /// Pause between attempts to reach the master, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    reconnect_interval_ms: u64,
    /// How long a channel from another worker waits for its consuming subtask to be
    /// deployed here before it is refused, in milliseconds.
    #[arg(long, default_value_t = 60_000)]
    channel_wait_ms: u64,
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    #[command(flatten)]
    job: JobOptions,
    /// Do not print the per-operator summary when the job ends.
    #[arg(long)]
    no_summary: bool,
    /// Serve the REST API here, so `strom status|savepoint|stop|cancel` reach the job
    /// (Flink's local environment with its web UI): the job then runs under an
    /// in-process master with one local worker, as `strom master` runs it, and the
    /// counters are in `strom status` instead of a summary.
    #[arg(long)]
    rest_bind: Option<std::net::SocketAddr>,
}

/// A job and its settings, for `strom run` and `strom submit`.
#[derive(clap::Args, Debug)]
struct JobOptions {
    /// The job to run (see `strom jobs`).
    job: String,
    #[command(flatten)]
    settings: JobSettings,
}

impl JobOptions {
    fn submission(&self) -> JobSubmission {
        self.settings.submission(&self.job)
    }
}

/// How to run a job: `strom run`'s, `strom submit`'s and `strom master`'s options.
#[derive(clap::Args, Debug)]
struct JobSettings {
    /// Default parallelism of the job's operators.
    #[arg(short, long, default_value_t = 1)]
    parallelism: usize,
    /// Number of key groups: the most a keyed operator can ever be scaled to.
    #[arg(long, default_value_t = crate::keygroup::DEFAULT_MAX_PARALLELISM)]
    max_parallelism: usize,
    /// A job argument, `key=value`; repeat for more (see `strom jobs <job>`).
    #[arg(long = "arg", value_name = "KEY=VALUE")]
    args: Vec<String>,
    /// Streaming (results as they happen) or batch (final results of bounded input).
    #[arg(long, value_enum, default_value_t = Mode::Streaming)]
    runtime_mode: Mode,
    /// Records per batch between tasks.
    #[arg(long, default_value_t = 1024)]
    batch_size: usize,
    #[command(flatten)]
    checkpoints: CheckpointArgs,
    /// Start from this completed checkpoint or savepoint (its chk-<n> directory, in any
    /// form --checkpoint-dir takes).
    #[arg(long)]
    from_checkpoint: Option<String>,
    /// With --from-checkpoint: drop the state of operators the job no longer has instead
    /// of failing.
    #[arg(long)]
    allow_non_restored_state: bool,
    /// Where keyed state lives: on the heap, or in RocksDB on local disk (state larger
    /// than memory).
    #[arg(long, value_enum, default_value_t = Backend::Heap, env = "STROM_STATE_BACKEND")]
    state_backend: Backend,
    /// RocksDB: where each subtask's instance directory goes [default: the temp
    /// directory].
    #[arg(long, env = "STROM_STATE_DIR")]
    state_dir: Option<String>,
    /// RocksDB: block cache and memtables of all instances of a process, in MiB.
    #[arg(long, default_value_t = 256)]
    rocksdb_memory_mb: u64,
    /// RocksDB: checkpoints upload only the SST files earlier checkpoints did not
    /// (savepoints are always whole, in the canonical format).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    incremental_checkpoints: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum RetentionArg {
    RetainOnCancellation,
    DeleteOnCancellation,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum CheckpointModeArg {
    ExactlyOnce,
    AtLeastOnce,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Backend {
    Heap,
    Rocksdb,
}

/// Checkpoint options (Flink's `execution.checkpointing.*`, `state.checkpoints.dir`).
#[derive(clap::Args, Debug)]
struct CheckpointArgs {
    /// Take a checkpoint this often, in milliseconds; none: no checkpoints.
    #[arg(long)]
    checkpoint_interval_ms: Option<u64>,
    /// Where checkpoints go: s3://bucket/prefix, file:///dir, a directory, or memory://name.
    #[arg(long, default_value = crate::checkpoint::storage::DEFAULT_LOCATION, env = "STROM_CHECKPOINT_DIR")]
    checkpoint_dir: String,
    /// A checkpoint not complete after this long is given up, in milliseconds.
    #[arg(long, default_value_t = 60_000)]
    checkpoint_timeout_ms: u64,
    /// The least pause between the end of a checkpoint and the start of the next, in
    /// milliseconds.
    #[arg(long, default_value_t = 0)]
    checkpoint_min_pause_ms: u64,
    /// Checkpoints in flight at once; with a minimum pause, one.
    #[arg(long, default_value_t = 1)]
    max_concurrent_checkpoints: usize,
    /// Completed checkpoints kept; older ones are deleted.
    #[arg(long, default_value_t = 1)]
    checkpoints_retained: usize,
    /// exactly-once: tasks align barriers (hold back inputs that delivered one);
    /// at-least-once: no waiting, a restore may replay some records twice.
    #[arg(long, value_enum, default_value_t = CheckpointModeArg::ExactlyOnce)]
    checkpoint_mode: CheckpointModeArg,
    /// What becomes of the job's checkpoints when it is cancelled (a failed job keeps
    /// them either way; savepoints are never deleted).
    #[arg(long, value_enum, default_value_t = RetentionArg::RetainOnCancellation)]
    checkpoint_retention: RetentionArg,
    /// An S3-compatible server for s3:// directories, e.g. http://127.0.0.1:9000
    /// [default: AWS, or AWS_ENDPOINT].
    #[arg(long, env = "STROM_S3_ENDPOINT")]
    s3_endpoint: Option<String>,
    /// The S3 region [default: AWS_REGION, or us-east-1].
    #[arg(long)]
    s3_region: Option<String>,
    /// Path-style S3 requests (true/false) [default: true exactly when --s3-endpoint is set].
    #[arg(long)]
    s3_path_style: Option<bool>,
    /// S3 access key id [default: AWS_ACCESS_KEY_ID].
    #[arg(long)]
    s3_access_key_id: Option<String>,
    /// S3 secret access key [default: AWS_SECRET_ACCESS_KEY].
    #[arg(long)]
    s3_secret_access_key: Option<String>,
    /// An AWS shared-credentials file (its [default] profile), e.g. a mounted Secret.
    #[arg(long)]
    s3_credentials_file: Option<String>,
    /// How long one S3 request may take, retries included, in milliseconds [default:
    /// 30000]; a checkpoint write to an unreachable store fails after it.
    #[arg(long)]
    s3_request_timeout_ms: Option<u64>,
}

impl CheckpointArgs {
    fn s3(&self) -> S3Settings {
        S3Settings {
            endpoint: self.s3_endpoint.clone(),
            region: self.s3_region.clone(),
            path_style: self.s3_path_style,
            access_key_id: self.s3_access_key_id.clone(),
            secret_access_key: self.s3_secret_access_key.clone(),
            credentials_file: self.s3_credentials_file.clone(),
            request_timeout_ms: self.s3_request_timeout_ms,
        }
    }

    /// The checkpoint directory's storage, also when the job takes no checkpoints (a
    /// run's result goes there).
    fn storage(&self) -> Result<crate::checkpoint::storage::CheckpointStorage, String> {
        crate::checkpoint::storage::CheckpointStorage::open(
            &self.checkpoint_dir,
            &self.s3().options(),
        )
        .map_err(|e| format!("--checkpoint-dir: {e}"))
    }

    fn settings(&self) -> Option<CheckpointSettings> {
        Some(CheckpointSettings {
            interval_ms: self.checkpoint_interval_ms?,
            dir: self.checkpoint_dir.clone(),
            timeout_ms: self.checkpoint_timeout_ms,
            min_pause_ms: self.checkpoint_min_pause_ms,
            max_concurrent: self.max_concurrent_checkpoints,
            retained: self.checkpoints_retained,
            mode: match self.checkpoint_mode {
                CheckpointModeArg::ExactlyOnce => CheckpointingMode::ExactlyOnce,
                CheckpointModeArg::AtLeastOnce => CheckpointingMode::AtLeastOnce,
            },
            retention: match self.checkpoint_retention {
                RetentionArg::RetainOnCancellation => CheckpointRetention::RetainOnCancellation,
                RetentionArg::DeleteOnCancellation => CheckpointRetention::DeleteOnCancellation,
            },
            s3: self.s3(),
        })
    }
}

impl JobSettings {
    fn submission(&self, name: &str) -> JobSubmission {
        JobSubmission {
            name: name.to_string(),
            args: self.args.clone(),
            parallelism: self.parallelism,
            max_parallelism: self.max_parallelism,
            batch_size: self.batch_size,
            batch_mode: matches!(self.runtime_mode, Mode::Batch),
            checkpoints: self.checkpoints.settings(),
            from_checkpoint: self.from_checkpoint.clone(),
            allow_non_restored_state: self.allow_non_restored_state,
            state: (self.state_backend == Backend::Rocksdb).then(|| StateSettings {
                backend: "rocksdb".into(),
                dir: self.state_dir.clone(),
                memory_mb: self.rocksdb_memory_mb,
                incremental: self.incremental_checkpoints,
            }),
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Mode {
    Streaming,
    Batch,
}

fn init_logging(level: &str, format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Runs the command line with the jobs of `registry`.
pub fn main(registry: JobRegistry) -> ExitCode {
    let args = match crate::config_file::expand(std::env::args_os().collect()) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let cli = Cli::parse_from(args);
    init_logging(&cli.log_level, cli.log_format);
    match cli.command {
        Command::Jobs { job: None } => {
            print!("{}", list_jobs(&registry));
            ExitCode::SUCCESS
        }
        Command::Jobs { job: Some(name) } => match registry.find(&name) {
            Some(spec) => {
                print!("{}", describe_job(spec));
                ExitCode::SUCCESS
            }
            None => {
                eprintln!("error: {}", unknown_job(&registry, &name));
                ExitCode::from(2)
            }
        },
        Command::Run(args) => run(&registry, args),
        Command::Master(args) => master(&registry, *args),
        Command::Worker(args) => worker(registry, args),
        Command::Submit(args) => submit(args),
        Command::List(api) => api_call(&api, Method::GET, "/v1/jobs", |v| {
            let jobs: Vec<JobView> = serde_json::from_value(v["jobs"].clone())
                .map_err(|e| format!("unexpected answer: {e}"))?;
            Ok(jobs_text(&jobs))
        }),
        Command::Status { job, api } => {
            api_call(&api, Method::GET, &format!("/v1/jobs/{job}"), |v| {
                let job: JobView =
                    serde_json::from_value(v).map_err(|e| format!("unexpected answer: {e}"))?;
                Ok(job_text(&job))
            })
        }
        Command::Savepoint(SavepointArgs {
            inspect: Some(SavepointCommand::Inspect { path, output }),
            ..
        }) => inspect(&path, output),
        Command::Savepoint(SavepointArgs {
            inspect: Some(SavepointCommand::Dispose { location, api }),
            ..
        }) => {
            let body = serde_json::json!({ "location": location });
            let answer = RestClient::new(&api.rest_url)
                .and_then(|c| c.call_with(Method::POST, "/v1/savepoint-disposal", Some(&body)));
            match answer.and_then(|v| {
                print_answer(api.output, v, |v| {
                    Ok(format!(
                        "deleted {} ({} files)\n",
                        v["location"].as_str().unwrap_or("?"),
                        v["deleted_files"]
                    ))
                })
            }) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Savepoint(SavepointArgs {
            job: Some(job),
            target,
            api,
            ..
        }) => savepoint(&job, target, &api, false),
        Command::Savepoint(_) => {
            eprintln!(
                "error: name the job (`strom savepoint <job-id> [dir]`), or `strom savepoint \
                 inspect <dir>`, or `strom savepoint dispose <dir>`"
            );
            ExitCode::from(2)
        }
        Command::Stop { job, target, api } => savepoint(&job, target, &api, true),
        Command::Cancel { job, api } => {
            api_call(&api, Method::PATCH, &format!("/v1/jobs/{job}"), |v| {
                Ok(format!(
                    "job {job}: {}\n",
                    v["state"].as_str().unwrap_or("?")
                ))
            })
        }
        Command::Produce(args) => crate::jobs::produce::main(args),
    }
}

/// Calls the REST API and prints the answer as text (by `text`) or as JSON.
fn api_call(
    api: &ApiArgs,
    method: Method,
    path: &str,
    text: impl FnOnce(serde_json::Value) -> Result<String, String>,
) -> ExitCode {
    let answer = RestClient::new(&api.rest_url).and_then(|c| c.call(method, path));
    match answer.and_then(|v| print_answer(api.output, v, text)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Prints an answer of the REST API as text (by `text`) or as JSON.
fn print_answer(
    output: Output,
    answer: serde_json::Value,
    text: impl FnOnce(serde_json::Value) -> Result<String, String>,
) -> Result<(), String> {
    let out = match output {
        Output::Json => serde_json::to_string_pretty(&answer)
            .map(|s| s + "\n")
            .map_err(|e| e.to_string())?,
        Output::Text => text(answer)?,
    };
    print!("{out}");
    Ok(())
}

/// `strom savepoint` and `strom stop`: asks for the savepoint, waits for it, prints where
/// it went.
fn savepoint(job: &str, target: Option<String>, api: &ApiArgs, stop: bool) -> ExitCode {
    let result = (|| -> Result<serde_json::Value, String> {
        let client = RestClient::new(&api.rest_url)?;
        let body = serde_json::json!({ "target_directory": target });
        let action = if stop { "stop" } else { "savepoints" };
        let answer = client.call_with(
            Method::POST,
            &format!("/v1/jobs/{job}/{action}"),
            Some(&body),
        )?;
        let request = answer["request_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        loop {
            let status =
                client.call(Method::GET, &format!("/v1/jobs/{job}/savepoints/{request}"))?;
            match status["status"].as_str() {
                Some("IN_PROGRESS") => std::thread::sleep(Duration::from_millis(50)),
                Some("FAILED") => {
                    return Err(format!(
                        "the savepoint failed: {}",
                        status["failure"].as_str().unwrap_or("?")
                    ));
                }
                _ => return Ok(status),
            }
        }
    })();
    match result.and_then(|status| {
        print_answer(api.output, status, |s| {
            Ok(format!("{}\n", s["location"].as_str().unwrap_or("?")))
        })
    }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `strom savepoint inspect`: what a checkpoint or savepoint holds.
fn inspect(path: &str, output: Output) -> ExitCode {
    let restored = match crate::checkpoint::restore::RestoredCheckpoint::open(
        path,
        &crate::checkpoint::storage::StorageOptions::default(),
    ) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let m = &restored.metadata;
    let text = match output {
        Output::Json => serde_json::to_string_pretty(m).unwrap_or_default() + "\n",
        Output::Text => {
            let mut out = format!(
                "checkpoint {} of job {} (max parallelism {}), taken at {} ms{}\n",
                m.id,
                m.job,
                m.max_parallelism,
                m.timestamp_ms,
                m.run_id
                    .as_deref()
                    .map_or(String::new(), |r| format!(" by run {r}"))
            );
            for op in &m.operators {
                out.push_str(&format!("\n{} (parallelism {})\n", op.uid, op.parallelism));
                for s in &op.subtasks {
                    let groups = s
                        .key_groups
                        .map_or(String::new(), |(a, b)| format!(" key groups {a}..={b}"));
                    out.push_str(&format!(
                        "  subtask {}{groups}: {} bytes",
                        s.subtask, s.keyed_bytes
                    ));
                    if s.event_timers + s.processing_timers > 0 {
                        out.push_str(&format!(
                            ", timers {} event / {} processing",
                            s.event_timers, s.processing_timers
                        ));
                    }
                    if s.source_position.is_some() {
                        out.push_str(", source position");
                    }
                    out.push('\n');
                    for (name, entries) in s.states.iter().chain(&s.broadcast_states) {
                        out.push_str(&format!("    {name}: {entries} entries\n"));
                    }
                    for (name, elements) in &s.operator_states {
                        out.push_str(&format!("    {name}: {elements} list elements\n"));
                    }
                    if let Some(rocks) = &s.rocksdb {
                        out.push_str(&format!(
                            "    incremental RocksDB checkpoint: {} files, {} bytes uploaded \
                             by this checkpoint; states {}\n",
                            rocks.files.len(),
                            rocks.uploaded_bytes,
                            rocks.tables.join(", ")
                        ));
                    }
                }
            }
            out
        }
    };
    print!("{text}");
    ExitCode::SUCCESS
}

/// `strom submit`: posts the job; with `--wait`, polls it until it ends.
fn submit(args: SubmitArgs) -> ExitCode {
    let SubmitArgs { job, api, wait } = args;
    let body = match serde_json::to_value(job.submission()) {
        Ok(body) => body,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = (|| -> Result<ExitCode, String> {
        let client = RestClient::new(&api.rest_url)?;
        let answer = client.call_with(Method::POST, "/v1/jobs", Some(&body))?;
        let submitted: JobView = serde_json::from_value(answer.clone())
            .map_err(|e| format!("unexpected answer: {e}"))?;
        if !wait {
            print_answer(api.output, answer, |_| Ok(format!("{}\n", submitted.id)))?;
            return Ok(ExitCode::SUCCESS);
        }
        eprintln!("submitted job {}; waiting for it to end", submitted.id);
        let path = format!("/v1/jobs/{}", submitted.id);
        loop {
            let answer = client.call(Method::GET, &path)?;
            let job: JobView = serde_json::from_value(answer.clone())
                .map_err(|e| format!("unexpected answer: {e}"))?;
            let code = match job.state {
                JobStatus::Finished => ExitCode::SUCCESS,
                JobStatus::Failed | JobStatus::Cancelled => ExitCode::FAILURE,
                _ => {
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                }
            };
            print_answer(api.output, answer, |_| Ok(job_text(&job)))?;
            return Ok(code);
        }
    })();
    result.unwrap_or_else(|e| {
        eprintln!("error: {e}");
        ExitCode::FAILURE
    })
}

fn master(registry: &JobRegistry, args: MasterArgs) -> ExitCode {
    if args.job.is_none() && !args.settings.args.is_empty() {
        eprintln!(
            "error: --arg without a job: name the job (`strom master <job> --arg …`), or give \
             a session master's jobs their arguments with `strom submit <job> --arg …`"
        );
        return ExitCode::from(2);
    }
    let options = MasterOptions {
        bind: args.bind,
        job: args
            .job
            .as_deref()
            .map(|name| args.settings.submission(name)),
        heartbeat_interval: Duration::from_millis(args.heartbeat_interval_ms.max(1)),
        heartbeat_timeout: Duration::from_millis(args.heartbeat_timeout_ms.max(1)),
        restart: args.restart.strategy(),
        rest_bind: Some(args.rest_bind),
    };
    let run = match &args.run_id {
        Some(id) => {
            if args.job.is_none() {
                eprintln!(
                    "error: --run-id names a run of the master's job: give the job (`strom \
                     master <job> --run-id {id}`); a session master takes none"
                );
                return ExitCode::from(2);
            }
            if let Err(e) = crate::cluster::master::check_run_id(id) {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
            match args.settings.checkpoints.storage() {
                Ok(storage) => Some(RunId {
                    id: id.clone(),
                    storage,
                }),
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            }
        }
        None => None,
    };
    let ha = match args.leader.options() {
        Ok(ha) => ha,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let run = RunOptions {
        run,
        from_latest_checkpoint: args.from_latest_checkpoint,
        after_job_end: match args.after_job_end {
            AfterJobEndArg::Exit => AfterJobEnd::Exit,
            AfterJobEndArg::Serve => AfterJobEnd::Serve,
        },
        ha,
        storage_options: args.settings.checkpoints.s3().options(),
    };
    master_exit(run_master_with(registry, options, run))
}

/// The exit code of a master (in application mode) from how it ended.
fn master_exit(exit: anyhow::Result<MasterExit>) -> ExitCode {
    match exit {
        Ok(MasterExit::JobEnded(JobOutcome::Finished { .. })) => ExitCode::SUCCESS,
        Ok(MasterExit::JobEnded(JobOutcome::Cancelled)) => {
            eprintln!("the job was cancelled");
            ExitCode::SUCCESS
        }
        Ok(MasterExit::JobEnded(JobOutcome::Failed(why))) => {
            eprintln!("error: the job failed: {why}");
            ExitCode::FAILURE
        }
        Ok(MasterExit::Stopped(signal)) => {
            eprintln!("the master was stopped ({signal})");
            ExitCode::SUCCESS
        }
        // Not a mistake of the command line: Kubernetes starts it again, as a follower.
        Err(e) if e.downcast_ref::<LostLeadership>().is_some() => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn worker(registry: JobRegistry, args: WorkerArgs) -> ExitCode {
    if args.slots == 0 {
        eprintln!("error: --slots must be at least 1");
        return ExitCode::from(2);
    }
    let options = WorkerOptions {
        master: args.master,
        id: args
            .id
            .unwrap_or_else(|| format!("worker-{}", std::process::id())),
        slots: args.slots,
        data_bind: args.data_bind,
        advertise_host: args.advertise_host,
        reconnect_interval: Duration::from_millis(args.reconnect_interval_ms.max(1)),
        channel_wait: Duration::from_millis(args.channel_wait_ms.max(1)),
    };
    match run_worker(registry, options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The `strom` binary: the built-in jobs.
pub fn main_with_builtin_jobs() -> ExitCode {
    main(JobRegistry::builtin())
}

fn unknown_job(registry: &JobRegistry, name: &str) -> String {
    format!(
        "unknown job '{name}'; the jobs are: {} (see `strom jobs`)",
        registry.names().join(", ")
    )
}

/// One line per job.
pub fn list_jobs(registry: &JobRegistry) -> String {
    let width = registry
        .jobs()
        .iter()
        .map(|j| j.name.len())
        .max()
        .unwrap_or(0);
    let mut s = String::new();
    for j in registry.jobs() {
        s.push_str(&format!("{:<width$}  {}\n", j.name, j.summary));
    }
    s
}

/// A job's summary and arguments.
pub fn describe_job(spec: &JobSpec) -> String {
    let mut s = format!("{}: {}\n", spec.name, spec.summary);
    if spec.args.is_empty() {
        s.push_str("\nno arguments\n");
        return s;
    }
    s.push_str("\narguments (--arg key=value):\n");
    let width = spec.args.iter().map(|a| a.name.len()).max().unwrap_or(0);
    for a in spec.args {
        let default = if a.default.is_empty() {
            String::new()
        } else {
            format!(" [default: {}]", a.default)
        };
        s.push_str(&format!("  {:<width$}  {}{default}\n", a.name, a.help));
    }
    s
}

fn run(registry: &JobRegistry, args: RunArgs) -> ExitCode {
    let RunArgs {
        job,
        no_summary,
        rest_bind,
    } = args;
    let Some(spec) = registry.find(&job.job) else {
        eprintln!("error: {}", unknown_job(registry, &job.job));
        return ExitCode::from(2);
    };
    let job_args = match JobArgs::parse(spec.name, spec.args, &job.settings.args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if job.settings.parallelism == 0 {
        eprintln!("error: --parallelism must be at least 1");
        return ExitCode::from(2);
    }
    // The same settings a master sends its workers.
    let config = match job.submission().config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(rest_bind) = rest_bind {
        return run_with_rest(registry, job.submission(), rest_bind);
    }
    let env = StreamEnv::with_config(config);
    if let Err(e) = (spec.build)(&env, &job_args) {
        eprintln!("error: {e:#}");
        return ExitCode::from(2);
    }
    let handle = match env.execute_async(spec.name) {
        Ok(h) => h,
        Err(e @ JobError::InvalidGraph(_)) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    install_ctrl_c(handle.cancel_token());
    let metrics = handle.metrics().clone();
    let started = std::time::Instant::now();
    match handle.join() {
        Ok(result) => {
            if !no_summary {
                let outcome = if result.cancelled {
                    "cancelled"
                } else {
                    "finished"
                };
                eprint!(
                    "{}",
                    format_summary(spec.name, outcome, result.duration, &result.metrics)
                );
            }
            if result.cancelled {
                ExitCode::from(130)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            if !no_summary {
                eprint!(
                    "{}",
                    format_summary(spec.name, "failed", started.elapsed(), &metrics)
                );
            }
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `strom run --rest-bind`: the job under a master in this process, with one worker in
/// this process that offers the slots the job needs, attached over loopback.
fn run_with_rest(
    registry: &JobRegistry,
    submission: JobSubmission,
    rest_bind: std::net::SocketAddr,
) -> ExitCode {
    let slots = match submission.plan(registry) {
        Ok((_, plan, _)) => {
            let parallelisms: Vec<usize> = plan.vertices.iter().map(|v| v.parallelism).collect();
            crate::cluster::placement::slots_needed(&parallelisms).max(1)
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    // A free loopback port for the workers' attach stream; the worker retries until the
    // master listens.
    let bind = match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("error: no free loopback port for the local master: {e}");
            return ExitCode::FAILURE;
        }
    };
    let worker = WorkerOptions {
        master: format!("http://{bind}"),
        id: format!("local-{}", std::process::id()),
        slots: slots as u32,
        data_bind: "127.0.0.1:0".parse().expect("a socket address"),
        advertise_host: "127.0.0.1".into(),
        reconnect_interval: Duration::from_millis(50),
        channel_wait: Duration::from_secs(60),
    };
    let worker_registry = registry.clone();
    std::thread::spawn(move || {
        if let Err(e) = run_worker(worker_registry, worker) {
            tracing::error!(error = %e, "the local worker stopped");
        }
    });
    let master = MasterOptions {
        bind,
        job: Some(submission),
        heartbeat_interval: Duration::from_millis(1000),
        heartbeat_timeout: Duration::from_millis(10_000),
        restart: RestartStrategy::None,
        rest_bind: Some(rest_bind),
    };
    master_exit(run_master(registry, master))
}

/// First Ctrl-C cancels the job (it stops and prints its summary); a second exits at once.
fn install_ctrl_c(token: crate::runtime::executor::CancelToken) {
    static PRESSED: AtomicUsize = AtomicUsize::new(0);
    let result = ctrlc::set_handler(move || {
        if PRESSED.fetch_add(1, Ordering::SeqCst) == 0 {
            eprintln!("\ncancelling the job (Ctrl-C again to exit at once)");
            token.cancel();
        } else {
            std::process::exit(130);
        }
    });
    if let Err(e) = result {
        tracing::warn!(error = %e, "could not install the Ctrl-C handler");
    }
}

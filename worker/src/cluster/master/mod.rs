//! `strom master` (Flink's JobManager): takes jobs — the one it was started with
//! (application mode: it exits when that job ends) or any number submitted through the
//! REST API (`POST /v1/jobs`, `strom submit`; session mode) — plans each, waits until the
//! registered workers offer enough free slots, deploys every subtask (slot sharing), and
//! follows their states until the job finishes or fails. Workers are tracked by their
//! attach stream and heartbeats; a worker that goes silent for the heartbeat timeout, or
//! whose stream breaks, is lost.
//!
//! A failed subtask or a lost worker (with unfinished subtasks) is a failure of the job:
//! the master cancels what still runs of that attempt and, as its restart strategy says,
//! deploys the job again after a delay (a new attempt, from the newest completed
//! checkpoint), or fails it. Checkpoints and savepoints are triggered and completed by
//! each job's loop in `checkpoint_loop`.
//!
//! The REST API (`cluster::rest`) reads the jobs, the workers and the counters the
//! workers' heartbeats carry from here, and submits and cancels jobs through here.
//!
//! Runs (application mode, `strom master <job> --run-id <id>`): Kubernetes restarts a
//! master whose process exits, and an operator upgrades a job by stop-with-savepoint and
//! a new master started `--from-checkpoint` that savepoint, sharing the job's checkpoint
//! directory with the old one. A run id names one such deployment of the job: every
//! checkpoint and savepoint records the run that took it (`_metadata`), and when the job
//! ends the master records how in the job result store (`results`:
//! `<job dir>/results/<run-id>.json`). A master started with a run id picks where its
//! job starts as `start` says: not at all when the run has a result, else from the
//! run's own newest checkpoint, else `--from-checkpoint`, else (with
//! `--from-latest-checkpoint`) the newest checkpoint of any run, else fresh. Without a
//! run id the master resumes its job from the newest checkpoint of the job's directory,
//! whichever run took it, and records nothing. With `--after-job-end serve` the master
//! does not exit when its job ends: its REST API shows how the job ended until SIGTERM or
//! SIGINT.
//!
//! High availability (`--leader-lease <name>`, see `ha`): the job's masters elect their
//! leader with a Kubernetes Lease. A follower serves its REST API (`/healthz` 200,
//! `/readyz` 503) and does nothing else until it leads; then it does all of the above,
//! so a new leader of the same run resumes from the run's newest checkpoint. A leader
//! that loses the lease stops at once (`LostLeadership`, exit code 1); on a signal it
//! hands the lease back after all its tasks stopped. With `--ha-configmap` the leader
//! keeps a ConfigMap that names it, its REST address, the run, the newest checkpoint and
//! the job's state. `POST /v1/savepoint-disposal` deletes a savepoint (`disposal`).

mod checkpoint_loop;
mod checkpoints;
pub(crate) mod disposal;
pub mod ha;
mod job_run;
mod prometheus;
pub mod results;
mod start;
mod state;
mod views;

use crate::checkpoint::CheckpointConfig;
use crate::checkpoint::CheckpointRetention;
use crate::checkpoint::coordinator::{checkpoint_location, delete_checkpoints};
use crate::checkpoint::restore::{newest_valid_checkpoint, read_metadata, verify_checkpoint};
use crate::checkpoint::storage::{CheckpointStorage, StorageError, StorageOptions, checkpoint_dir};
use crate::cluster::job::JobSubmission;
use crate::cluster::restart::RestartStrategy;
use crate::graph::NodeKind;
use crate::jobs::JobRegistry;
use checkpoints::JobCheckpoints;
pub use checkpoints::SavepointStatus;
use ha::{Ha, HaRecord};
pub use ha::{HaOptions, LostLeadership};
use job_run::PlannedJob;
pub use results::{JobResult, check_run_id};
use start::{StartInput, StartPoint, choose_start};
use state::{State, WorkerEntry};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use strom_proto::control::master_server::{Master, MasterServer};
use strom_proto::control::{
    MasterMessage, RegisterWorker, Registered, WorkerMessage, master_message, worker_message,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};
pub use views::{JobView, SubtaskView, VertexView, WorkerView};

/// Settings of `strom master`.
#[derive(Clone, Debug)]
pub struct MasterOptions {
    /// Where workers reach the master.
    pub bind: SocketAddr,
    /// The job to run and exit after (application mode); `None`: run until stopped and
    /// take jobs through the REST API (session mode).
    pub job: Option<JobSubmission>,
    /// How often workers send a heartbeat.
    pub heartbeat_interval: Duration,
    /// Silence after which a worker is lost.
    pub heartbeat_timeout: Duration,
    /// What to do when a job fails.
    pub restart: RestartStrategy,
    /// Where the REST API listens (`None`: no REST API).
    pub rest_bind: Option<SocketAddr>,
}

/// How a master survives its own failure: how an application-mode master treats its job
/// across restarts of its process, and whether it first waits to lead (see the module
/// docs). The default: no run, no lease, exit when the job ends.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// This deployment of the job (`--run-id`); none: the job resumes from the newest
    /// checkpoint of its directory, whichever run took it, and no result is recorded.
    pub run: Option<RunId>,
    /// `--from-latest-checkpoint`: a run with no checkpoint of its own and no
    /// `--from-checkpoint` starts from the newest checkpoint of any run (needs `run`).
    pub from_latest_checkpoint: bool,
    /// `--after-job-end`.
    pub after_job_end: AfterJobEnd,
    /// `--leader-lease` and its flags: wait to lead before acting (see `ha`); none: act
    /// at once, the only master of its job.
    pub ha: Option<HaOptions>,
    /// How the master reaches storage outside its jobs (`POST /v1/savepoint-disposal`):
    /// the S3 settings of its flags.
    pub storage_options: StorageOptions,
}

/// One run of a job: its id, and the storage its result goes to.
#[derive(Clone, Debug)]
pub struct RunId {
    pub id: String,
    /// The job's checkpoint storage (`--checkpoint-dir`): the result goes to
    /// `<job>/results/<run-id>.json` there, also when the job takes no checkpoints.
    pub storage: CheckpointStorage,
}

/// What an application-mode master does once its job ended (`--after-job-end`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AfterJobEnd {
    /// Exit, with the job's outcome in the exit code.
    #[default]
    Exit,
    /// Keep serving the REST API, which shows how the job ended, until SIGTERM or
    /// SIGINT; then exit 0.
    Serve,
}

/// Where a job starts when the master adds it.
pub(crate) enum InitialRestore {
    /// The newest valid completed checkpoint of its directory, if there is one: a master
    /// without a run id resumes its job so, as a Flink JobManager recovers its job.
    NewestInDirectory,
    /// What its submission says (`--from-checkpoint`, or nothing).
    Submission,
    /// This completed checkpoint of its directory.
    Checkpoint(String),
}

/// The job an application-mode master starts with, planned, and where it starts.
struct FirstJob {
    plan: PlannedJob,
    checkpointing: Option<CheckpointConfig>,
    start: FirstStart,
}

enum FirstStart {
    /// Its run ended in an earlier process of the master: shown, not run.
    Ended(JobResult),
    Run {
        initial: InitialRestore,
        run_id: Option<String>,
    },
}

/// Plans the master's first job; with a run, it first chooses where the job starts
/// (see `start`) and logs why.
async fn prepare_first_job(
    registry: &JobRegistry,
    mut job: JobSubmission,
    run: &RunOptions,
) -> anyhow::Result<FirstJob> {
    let name = job.name.clone();
    let start = match &run.run {
        None => FirstStart::Run {
            initial: InitialRestore::NewestInDirectory,
            run_id: None,
        },
        Some(r) => {
            let start = choose_run_start(r, &job, run.from_latest_checkpoint)
                .await
                .map_err(|e| anyhow::anyhow!("job '{name}', run '{}': {e}", r.id))?;
            let location = |id: u64| {
                format!(
                    "{}/{}",
                    r.storage.url().trim_end_matches('/'),
                    checkpoint_dir(&name, id)
                )
            };
            tracing::info!(job = %name, run = %r.id, "{}", start.explain(&r.id, location));
            let run_id = Some(r.id.clone());
            match start {
                StartPoint::Ended(result) => {
                    // Nothing is restored: the savepoint it started from may be gone.
                    job.from_checkpoint = None;
                    FirstStart::Ended(result)
                }
                StartPoint::OwnCheckpoint(id) | StartPoint::Latest { id, .. } => {
                    // Planned with what it restores, as the workers build it.
                    let at = location(id);
                    job.from_checkpoint = Some(at.clone());
                    FirstStart::Run {
                        initial: InitialRestore::Checkpoint(at),
                        run_id,
                    }
                }
                StartPoint::Given(_) | StartPoint::Fresh { .. } => FirstStart::Run {
                    initial: InitialRestore::Submission,
                    run_id,
                },
            }
        }
    };
    // Building the job runs user code and may read a checkpoint: off the runtime's threads.
    let registry = registry.clone();
    let (plan, checkpointing) = tokio::task::spawn_blocking(move || plan_job(&registry, job))
        .await
        .map_err(|e| anyhow::anyhow!("job '{name}': building it failed: {e}"))?
        .map_err(|e| anyhow::anyhow!("job '{name}': {e}"))?;
    Ok(FirstJob {
        plan,
        checkpointing,
        start,
    })
}

/// Where run `run` of `job` starts: reads the run's result, and which run took each of
/// the job's completed checkpoints, for `start::choose_start`.
async fn choose_run_start(
    run: &RunId,
    job: &JobSubmission,
    from_latest: bool,
) -> Result<StartPoint, String> {
    let storage = &run.storage;
    let job_dir = job.name.as_str();
    let result = results::read_result(storage, job_dir, &run.id).await?;
    let mut checkpoints = Vec::new();
    if result.is_none() {
        let ids = storage
            .completed_checkpoints(job_dir)
            .await
            .map_err(|e| e.to_string())?;
        for id in ids.into_iter().rev() {
            let taken_by = match read_metadata(storage, &checkpoint_dir(job_dir, id)).await {
                Ok(metadata) => metadata.run_id,
                Err(e @ (StorageError::Corrupt { .. } | StorageError::NotFound { .. })) => {
                    tracing::warn!(checkpoint = id, error = %e, "cannot tell which run took a checkpoint; it counts as no run's");
                    None
                }
                Err(e) => return Err(e.to_string()),
            };
            checkpoints.push((id, taken_by));
        }
    }
    let input = StartInput {
        run_id: &run.id,
        result,
        checkpoints: &checkpoints,
        from_checkpoint: job.from_checkpoint.as_deref(),
        from_latest,
    };
    choose_start(input, async |id| {
        match verify_checkpoint(storage, &checkpoint_dir(job_dir, id)).await {
            Ok(()) => Ok(true),
            Err(e @ (StorageError::Corrupt { .. } | StorageError::NotFound { .. })) => {
                tracing::warn!(checkpoint = id, error = %e, "skipping a damaged checkpoint");
                Ok(false)
            }
            Err(e) => Err(e.to_string()),
        }
    })
    .await
}

/// How a job ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobOutcome {
    /// Finished; `ran_for` is the time from the last deployment to the end.
    Finished {
        ran_for: Duration,
    },
    Failed(String),
    /// Cancelled through the REST API.
    Cancelled,
}

/// Why `run_master` returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MasterExit {
    /// The job the master was started with ended.
    JobEnded(JobOutcome),
    /// A signal (`SIGINT`, `SIGTERM`) stopped the master.
    Stopped(&'static str),
}

/// A job's state, named as Flink names them (DESIGN.md §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum JobStatus {
    /// Waiting for workers to offer enough free slots.
    Created,
    Running,
    /// Failed; waiting for the restart strategy's delay.
    Restarting,
    Cancelling,
    Cancelled,
    Failed,
    Finished,
}

/// Builds and plans a job as the master keeps it, with its checkpoint settings.
fn plan_job(
    registry: &JobRegistry,
    submission: JobSubmission,
) -> Result<(PlannedJob, Option<CheckpointConfig>), String> {
    let (graph, plan, config) = submission.plan(registry)?;
    let source_vertices = plan
        .vertices
        .iter()
        .enumerate()
        .filter(|(_, v)| matches!(graph.nodes[v.head].kind, NodeKind::Source(_)))
        .map(|(i, _)| i as u32)
        .collect();
    Ok((
        PlannedJob {
            parallelisms: plan.vertices.iter().map(|v| v.parallelism).collect(),
            vertex_names: plan.vertices.iter().map(|v| v.name.clone()).collect(),
            operator_names: graph.nodes.iter().map(|n| n.name.clone()).collect(),
            source_vertices,
            max_parallelism: config.max_parallelism,
            submission,
        },
        config.checkpointing,
    ))
}

/// How long the REST API outlives the job of an application-mode master.
const REST_GRACE: Duration = Duration::from_millis(500);

/// Resolves when the process gets `SIGINT` or `SIGTERM`, with the signal's name.
async fn stop_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let terminate = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => s.recv().await,
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = terminate => "SIGTERM",
    }
}

/// Runs the master: until its job ends (application mode) or until it is stopped.
pub fn run_master(registry: &JobRegistry, options: MasterOptions) -> anyhow::Result<MasterExit> {
    run_master_with(registry, options, RunOptions::default())
}

/// Runs the master with its job as `run` says (see the module docs): until the job ends
/// (or, with `AfterJobEnd::Serve`, until a signal after that), or until it is stopped.
/// With `run.ha`, it first waits to lead (see `ha`); a leader that loses its lease
/// returns [`LostLeadership`] as its error.
pub fn run_master_with(
    registry: &JobRegistry,
    options: MasterOptions,
    run: RunOptions,
) -> anyhow::Result<MasterExit> {
    if let Some(r) = &run.run {
        check_run_id(&r.id).map_err(anyhow::Error::msg)?;
        if options.job.is_none() {
            anyhow::bail!(
                "--run-id names a run of the master's job: give the job (`strom master <job> \
                 --run-id {}`); a session master takes none",
                r.id
            );
        }
    } else if run.from_latest_checkpoint {
        anyhow::bail!(
            "--from-latest-checkpoint needs --run-id: without a run id the master resumes its \
             job from the newest checkpoint of the job's directory anyway"
        );
    }
    if run.ha.as_ref().is_some_and(|h| h.lease.is_empty()) {
        anyhow::bail!(
            "--leader-lease is empty: name the Lease the job's masters elect their leader with \
             (the operator sets STROM_LEADER_LEASE=<job>-master), or leave it out"
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let rest_address = options
        .rest_bind
        .map_or_else(String::new, |a| a.to_string());
    let ha = match run.ha.clone() {
        Some(h) => Some(Ha::start(h, rest_address)?),
        None => None,
    };
    let exit = runtime.block_on(serve(registry, options, run, ha.as_ref()));
    // Every task of this master stops before the lease is handed back: none may act once
    // another master took over.
    runtime.shutdown_timeout(Duration::from_secs(1));
    if let Some(ha) = ha {
        ha.stop();
    }
    exit
}

/// The master's life in its runtime: waits to lead (with a lease), then leads until the
/// job ends, a signal comes, or the lease is lost.
async fn serve(
    registry: &JobRegistry,
    options: MasterOptions,
    run: RunOptions,
    ha: Option<&Ha>,
) -> anyhow::Result<MasterExit> {
    // Without a lease, a job that cannot be planned is an error before anything listens;
    // with one, its start is chosen once this master leads (another may have run it
    // meanwhile).
    let first_job = match (&options.job, ha) {
        (Some(job), None) => Some(prepare_first_job(registry, job.clone(), &run).await?),
        _ => None,
    };
    let session = format!(
        "master-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    );
    let (restarts_tx, mut restarts) = mpsc::unbounded_channel::<(String, Duration)>();
    let master = MasterService {
        state: Arc::new(Mutex::new(State::new(options.restart.clone(), restarts_tx))),
        registry: Arc::new(registry.clone()),
        heartbeat_interval: options.heartbeat_interval,
        heartbeat_timeout: options.heartbeat_timeout,
        session,
        ready: Arc::new(Readiness::new(
            ha.map(|h| h.lease().to_string()),
            options.job.is_some(),
        )),
        storage_options: Arc::new(run.storage_options.clone()),
    };
    // Restarts wait for their delay here, outside the state's lock.
    let restarter = master.clone();
    tokio::spawn(async move {
        while let Some((job, delay)) = restarts.recv().await {
            let restarter = restarter.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                restarter.state().restart_due(&job);
            });
        }
    });
    let watchdog = master.clone();
    let timeout = options.heartbeat_timeout;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval((timeout / 4).min(Duration::from_millis(250)));
        loop {
            tick.tick().await;
            watchdog.lose_silent_workers(timeout);
            watchdog.state().fail_unexplained();
        }
    });
    // A follower serves its REST API too: /healthz answers, /readyz says why it is not
    // ready, and a probe does not restart it.
    if let Some(rest_bind) = options.rest_bind {
        let rest = tokio::net::TcpListener::bind(rest_bind)
            .await
            .map_err(|e| anyhow::anyhow!("--rest-bind {rest_bind}: {e}"))?;
        tracing::info!(address = %rest.local_addr()?, "REST API listening");
        let app = crate::cluster::rest::router(master.clone());
        tokio::spawn(async move { axum::serve(rest, app).await });
    }
    // One signal handler for the whole life of the master: a signal between two waits
    // is not lost.
    let mut stop = Box::pin(stop_signal());
    let Some(ha) = ha else {
        return lead(&master, registry, options, &run, first_job, &mut stop).await;
    };
    let mut leader = ha.leader();
    tokio::select! {
        led = leader.wait_for(|l| *l) => {
            if led.is_err() {
                anyhow::bail!("--leader-lease {}: the leader election stopped", ha.lease());
            }
        }
        signal = &mut stop => {
            tracing::info!(signal, "master stopping (it was a follower)");
            return Ok(MasterExit::Stopped(signal));
        }
    }
    tracing::info!(lease = %ha.lease(), identity = %ha.identity(), "leading: this master holds the leader lease");
    master.ready.leading.store(true, Ordering::SeqCst);
    let records = ha.records();
    let publisher = tokio::spawn(master.clone().publish_ha_record(records.clone()));
    let lost = async move {
        // A closed channel (the election ended) counts as lost too.
        let _ = leader.wait_for(|l| !*l).await;
    };
    let exit = tokio::select! {
        exit = lead(&master, registry, options, &run, None, &mut stop) => exit,
        () = lost => {
            master.ready.leading.store(false, Ordering::SeqCst);
            tracing::error!(lease = %ha.lease(), identity = %ha.identity(), "lost the leader lease: stopping at once");
            return Err(LostLeadership { lease: ha.lease().to_string() }.into());
        }
    };
    // How the job ended reaches the ConfigMap before the lease is handed back.
    publisher.abort();
    records.send_if_modified(|r| master.update_ha_record(r));
    exit
}

/// What a master does while it leads (without a lease: from the start): plans its job
/// (unless `first_job` was planned already), listens for workers, runs the job, and
/// returns when it ended (see `AfterJobEnd`) or a signal came.
async fn lead(
    master: &MasterService,
    registry: &JobRegistry,
    options: MasterOptions,
    run: &RunOptions,
    first_job: Option<FirstJob>,
    stop: &mut Pin<Box<impl Future<Output = &'static str>>>,
) -> anyhow::Result<MasterExit> {
    let first_job = match (first_job, options.job.clone()) {
        (Some(planned), _) => Some(planned),
        (None, Some(job)) => Some(prepare_first_job(registry, job, run).await?),
        (None, None) => None,
    };
    let listener = tokio::net::TcpListener::bind(options.bind)
        .await
        .map_err(|e| anyhow::anyhow!("--bind {}: {e}", options.bind))?;
    tracing::info!(address = %listener.local_addr()?, session = %master.session, "master listening");
    let mut app_job = None;
    // The job's run ended in an earlier process: its result is recorded already.
    let mut recorded_before = false;
    let mut job_outcome = match first_job {
        Some(first) => {
            let id = match first.start {
                FirstStart::Ended(result) => {
                    recorded_before = true;
                    master.add_ended(first.plan, first.checkpointing, result)
                }
                FirstStart::Run { initial, run_id } => {
                    master
                        .submit_planned(first.plan, first.checkpointing, initial, run_id)
                        .await
                        .map_err(|e| anyhow::anyhow!("{e}"))?
                        .id
                }
            };
            app_job = Some(id.clone());
            Some(master.state().job_mut(&id).map(|j| j.outcome()))
        }
        None => None,
    };
    master.ready.job_added.store(true, Ordering::SeqCst);
    let after_job = master.clone();
    let serving = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(MasterServer::new(master.clone()))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let job_ended = async {
        match job_outcome.as_mut() {
            Some(Some(outcome)) => outcome
                .wait_for(Option::is_some)
                .await
                .ok()
                .and_then(|o| o.clone()),
            // Session mode: no job ends the master.
            _ => std::future::pending().await,
        }
    };
    let exit = tokio::select! {
        outcome = job_ended => MasterExit::JobEnded(outcome.unwrap_or_else(|| {
            JobOutcome::Failed("the master lost track of its job".into())
        })),
        signal = &mut *stop => {
            tracing::info!(signal, "master stopping");
            MasterExit::Stopped(signal)
        }
    };
    if let (MasterExit::JobEnded(_), Some(id)) = (&exit, &app_job)
        && !recorded_before
    {
        if let Some(r) = &run.run {
            // Before anything else: a master restarted from here on must not run the
            // job again.
            tokio::select! {
                () = after_job.record_result(id, r) => {}
                signal = &mut *stop => {
                    tracing::warn!(signal, job = %id, run = %r.id, "stopped before the run's result was recorded: a master started again with this run id runs the job again from the run's newest checkpoint");
                    serving.abort();
                    return Ok(MasterExit::Stopped(signal));
                }
            }
        }
        // Before the process ends with the job (the checkpoint task may not get to it).
        // Not for a run that ended in an earlier process: other runs may have written
        // checkpoints since.
        after_job.apply_retention(id).await;
    }
    if let MasterExit::JobEnded(outcome) = &exit
        && run.after_job_end == AfterJobEnd::Serve
    {
        tracing::info!(outcome = ?outcome, "the job ended; serving the REST API until SIGTERM or SIGINT (--after-job-end serve)");
        let signal = (&mut *stop).await;
        tracing::info!(signal, "master stopping");
        serving.abort();
        return Ok(MasterExit::Stopped(signal));
    }
    if matches!(exit, MasterExit::JobEnded(_)) && options.rest_bind.is_some() {
        // The REST API stays up a moment, so a client that ended the job (`strom
        // stop`, `strom cancel`) can read how it ended.
        tokio::time::sleep(REST_GRACE).await;
    }
    serving.abort();
    Ok(exit)
}

/// Whether the master should get traffic (`/readyz`): it leads (or has no lease) and, in
/// application mode, its job was added.
pub(crate) struct Readiness {
    /// The leader lease (`--leader-lease`), if the master has one.
    lease: Option<String>,
    leading: AtomicBool,
    /// Application mode: the master was started with a job.
    application: bool,
    job_added: AtomicBool,
}

impl Readiness {
    fn new(lease: Option<String>, application: bool) -> Self {
        Readiness {
            leading: AtomicBool::new(lease.is_none()),
            lease,
            application,
            job_added: AtomicBool::new(false),
        }
    }

    /// Whether this master leads (always, without a lease).
    pub(crate) fn leading(&self) -> bool {
        self.leading.load(Ordering::SeqCst)
    }

    /// Why the master is not ready; `None`: it is.
    pub(crate) fn not_ready(&self) -> Option<String> {
        if !self.leading() {
            let lease = self.lease.as_deref().unwrap_or_default();
            return Some(format!(
                "this master follows: another master holds the leader lease '{lease}' (or \
                 this one is about to take it); only the leader runs the job and gets traffic"
            ));
        }
        if self.application && !self.job_added.load(Ordering::SeqCst) {
            return Some(
                "this master leads and is planning its job (choosing where it starts); ready \
                 once the job is submitted"
                    .into(),
            );
        }
        None
    }
}

/// How often the leader looks for changes to put into the HA ConfigMap.
const HA_RECORD_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Clone)]
pub(crate) struct MasterService {
    state: Arc<Mutex<State>>,
    registry: Arc<JobRegistry>,
    heartbeat_interval: Duration,
    heartbeat_timeout: Duration,
    /// This master's run: tells workers that a master restarted.
    session: String,
    /// What `/readyz` says.
    pub(crate) ready: Arc<Readiness>,
    /// How the master reaches storage outside its jobs (savepoint disposal).
    storage_options: Arc<StorageOptions>,
}

impl MasterService {
    /// While this master leads: puts what the HA ConfigMap should say into `records`
    /// whenever it changes (a completed checkpoint, a change of the job's state). Polled,
    /// since the job's state changes in many places under the state's lock.
    async fn publish_ha_record(self, records: Arc<tokio::sync::watch::Sender<HaRecord>>) {
        let mut tick = tokio::time::interval(HA_RECORD_INTERVAL);
        loop {
            tick.tick().await;
            records.send_if_modified(|r| self.update_ha_record(r));
        }
    }

    /// Brings `record` up to date with the master's job (application mode: its only
    /// one); whether it changed.
    fn update_ha_record(&self, record: &mut HaRecord) -> bool {
        let now = match self
            .jobs()
            .into_iter()
            .next()
            .filter(|_| self.ready.application)
        {
            Some(job) => HaRecord {
                run_id: job.run_id,
                latest_checkpoint: job.last_checkpoint,
                job_state: Some(format!("{:?}", job.state)),
            },
            None => HaRecord::default(),
        };
        if *record == now {
            return false;
        }
        *record = now;
        true
    }

    /// Deletes the savepoint (or checkpoint) in directory `location` (see `disposal`):
    /// how many files went.
    pub(crate) async fn dispose_savepoint(
        &self,
        location: &str,
    ) -> Result<usize, disposal::DisposalError> {
        disposal::dispose(location, &self.storage_options).await
    }

    /// Job `id`, if the master has it.
    pub(crate) fn job(&self, id: &str) -> Option<JobView> {
        let state = self.state();
        state.jobs.iter().find(|j| j.id == id).map(|j| j.view())
    }

    /// Every job, in submission order.
    pub(crate) fn jobs(&self) -> Vec<JobView> {
        self.state().jobs.iter().map(|j| j.view()).collect()
    }

    pub(crate) fn workers(&self) -> Vec<WorkerView> {
        self.state().worker_views()
    }

    pub(crate) fn operator_metrics_text(&self) -> String {
        self.state().operator_metrics_text()
    }

    /// Plans and adds a job (the REST API's `POST /v1/jobs`): its view, or why it cannot
    /// run. With `resume_latest`, a job that checkpoints starts from the newest completed
    /// checkpoint in its checkpoint directory, if there is one.
    pub(crate) async fn submit(
        &self,
        submission: JobSubmission,
        resume_latest: bool,
    ) -> Result<JobView, String> {
        // Building the job runs user code and may read a checkpoint from storage: off the
        // runtime's threads, not under the state's lock; a panic in it is the job's error.
        let registry = self.registry.clone();
        let (plan, checkpointing) =
            tokio::task::spawn_blocking(move || plan_job(&registry, submission))
                .await
                .map_err(|e| format!("building the job failed: {e}"))??;
        let initial = if resume_latest {
            InitialRestore::NewestInDirectory
        } else {
            InitialRestore::Submission
        };
        self.submit_planned(plan, checkpointing, initial, None)
            .await
    }

    /// Adds a job planned already, starting from `initial`, as run `run_id` if it is one
    /// (see `submit`).
    async fn submit_planned(
        &self,
        plan: PlannedJob,
        checkpointing: Option<CheckpointConfig>,
        initial: InitialRestore,
        run_id: Option<String>,
    ) -> Result<JobView, String> {
        let (checkpoints, initial_restore) = match checkpointing {
            Some(config) => {
                let storage = &config.storage;
                let done = storage
                    .completed_checkpoints(&config.job_dir)
                    .await
                    .map_err(|e| e.to_string())?;
                let initial = match initial {
                    InitialRestore::NewestInDirectory => {
                        newest_valid_checkpoint(storage, &config.job_dir)
                            .await
                            .map_err(|e| e.to_string())?
                            .map(|id| checkpoint_location(&config, id))
                    }
                    InitialRestore::Submission => None,
                    InitialRestore::Checkpoint(at) => Some(at),
                };
                let next_id = done.last().map_or(1, |last| last + 1);
                let max_parallelism = plan.max_parallelism;
                let mut checkpoints = JobCheckpoints::new(config, max_parallelism, next_id);
                checkpoints.run_id = run_id.clone();
                (Some(checkpoints), initial)
            }
            // A job without checkpoints of its own may still start from one.
            None => match initial {
                InitialRestore::Checkpoint(at) => (None, Some(at)),
                _ => (None, None),
            },
        };
        let checkpointed = checkpoints.is_some();
        let (id, view) = {
            let mut state = self.state();
            let id = state.submit(plan, checkpoints, initial_restore.clone());
            let view = state.job_mut(&id).map(|j| {
                j.run_id = run_id;
                // Every start the master picks itself is a checkpoint of the job's
                // directory; a --from-checkpoint may be a savepoint.
                j.restored_checkpoint = initial_restore;
                j.view()
            });
            (id, view)
        };
        if checkpointed {
            tokio::spawn(self.clone().coordinate_checkpoints(id));
        }
        view.ok_or_else(|| "the job was forgotten at once".to_string())
    }

    /// Adds the job of a run that ended in an earlier process of the master (its
    /// result): shown as it ended, never deployed, its checkpoints left alone. Its id.
    fn add_ended(
        &self,
        plan: PlannedJob,
        checkpointing: Option<CheckpointConfig>,
        result: JobResult,
    ) -> String {
        let checkpoints = checkpointing.map(|config| {
            let mut c = JobCheckpoints::new(config, plan.max_parallelism, 1);
            c.run_id = Some(result.run_id.clone());
            c
        });
        self.state().add_ended(plan, checkpoints, result)
    }

    /// Writes how job `id` ended as the result of its run `run`, retrying until the
    /// storage takes it: a master restarted before it is written runs the job again.
    async fn record_result(&self, id: &str, run: &RunId) {
        let Some(result) = self.state().job_mut(id).and_then(|j| j.result()) else {
            return;
        };
        let path = results::result_path(&result.job, &run.id);
        let mut delay = Duration::from_millis(200);
        loop {
            match results::write_result(&run.storage, &result.job, &result).await {
                Ok(()) => {
                    tracing::info!(job = %id, run = %run.id, state = ?result.state, savepoint = result.savepoint.as_deref().unwrap_or(""), result = %path, "recorded how the run ended");
                    return;
                }
                Err(e) => {
                    tracing::warn!(job = %id, run = %run.id, error = %e, retry_ms = delay.as_millis() as u64, "could not record how the run ended; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// Triggers and completes job `id`'s checkpoints, and the savepoints asked for, until
    /// it ends; then keeps or deletes its checkpoints as its retention says.
    async fn coordinate_checkpoints(self, id: String) {
        self.clone().checkpoint_until_ended(id.clone()).await;
        self.apply_retention(&id).await;
    }

    /// Once job `id` has ended: a cancelled job whose checkpoints go on cancellation
    /// loses them (a failed or finished one keeps them), once no checkpoint of it is
    /// being written any more (one written after would be left behind).
    async fn apply_retention(&self, id: &str) {
        let config = loop {
            {
                let mut state = self.state();
                let Some(job) = state.job_mut(id) else {
                    return;
                };
                if job.ended() {
                    let cancelled = job.status == JobStatus::Cancelled;
                    match job.checkpoints.as_ref() {
                        Some(c)
                            if cancelled
                                && c.config.retention
                                    == CheckpointRetention::DeleteOnCancellation =>
                        {
                            if !c.writing_any() {
                                break c.config.clone();
                            }
                        }
                        _ => return,
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        match delete_checkpoints(&config).await {
            Ok(()) => {
                tracing::info!(job = %id, "deleted the cancelled job's checkpoints (delete-on-cancellation)")
            }
            Err(e) => {
                tracing::warn!(job = %id, error = %e, "could not delete the cancelled job's checkpoints")
            }
        }
    }

    /// Records how savepoint request `request` of job `id` ended; with `stop` (the
    /// savepoint's checkpoint id), a completed savepoint ends the job.
    fn savepoint_done(
        &self,
        id: &str,
        request: u64,
        done: Result<String, String>,
        stop: Option<u64>,
    ) {
        let mut state = self.state();
        let completed = done.is_ok();
        if let (Some(job), Some(location), Some(_)) = (state.job_mut(id), done.as_ref().ok(), stop)
        {
            job.stopped_with = Some((request, location.clone()));
        }
        if let Some(c) = state.job_mut(id).and_then(|j| j.checkpoints.as_mut()) {
            let status = match done {
                Ok(location) => SavepointStatus::Completed { location },
                Err(failure) => {
                    tracing::warn!(job = %id, request, error = %failure, "savepoint failed");
                    SavepointStatus::Failed { failure }
                }
            };
            c.savepoints.insert(request, status);
        }
        if let Some(savepoint) = stop.filter(|_| completed) {
            state.stop(id, savepoint);
        }
    }

    /// Asks for a savepoint of job `id` under `directory` (default: `savepoints` in the
    /// job's checkpoint directory); with `stop`, the job ends after it. The request id,
    /// or why not.
    pub(crate) fn request_savepoint(
        &self,
        id: &str,
        directory: Option<String>,
        stop: bool,
    ) -> Option<Result<u64, String>> {
        let mut state = self.state();
        let job = state.job_mut(id)?;
        if job.ended() {
            return Some(Err(format!("job '{id}' is {:?} already", job.status)));
        }
        let Some(c) = job.checkpoints.as_mut() else {
            return Some(Err(format!(
                "job '{id}' takes no checkpoints, and savepoints are taken the same way; \
                 submit it with --checkpoint-interval-ms"
            )));
        };
        let directory = directory.unwrap_or_else(|| {
            format!(
                "{}/savepoints",
                c.config.storage.url().trim_end_matches('/')
            )
        });
        Some(Ok(c.request_savepoint(directory, stop)))
    }

    /// Job `id`'s checkpoints as `GET /v1/jobs/{id}/checkpoints` shows them.
    pub(crate) fn checkpoints(&self, id: &str) -> Option<serde_json::Value> {
        let mut state = self.state();
        let job = state.job_mut(id)?;
        Some(match &job.checkpoints {
            None => serde_json::json!({ "enabled": false }),
            Some(c) => serde_json::json!({
                "enabled": true,
                "interval_ms": c.config.interval.as_millis() as u64,
                "completed": c.completed,
                "failed": c.failed,
                "in_progress": c.pending.keys().next(),
                "latest": c.latest,
                "last_completed": c.last_completed,
                "savepoints": c.savepoints.iter()
                    .map(|(request, status)| (request.to_string(), status))
                    .collect::<std::collections::BTreeMap<_, _>>(),
            }),
        })
    }

    /// How savepoint request `request` of job `id` stands.
    pub(crate) fn savepoint_status(&self, id: &str, request: u64) -> Option<SavepointStatus> {
        let mut state = self.state();
        state
            .job_mut(id)?
            .checkpoints
            .as_ref()?
            .savepoints
            .get(&request)
            .cloned()
    }

    /// Cancels job `id`: `None` if there is no such job, else its state after the call or
    /// the final state that prevents cancelling.
    pub(crate) fn cancel(&self, id: &str) -> Option<Result<JobStatus, JobStatus>> {
        self.state().cancel(id)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every change to the state is complete before the lock is released.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lose_silent_workers(&self, timeout: Duration) {
        let mut state = self.state();
        let silent: Vec<String> = state
            .workers
            .iter()
            .filter(|w| w.last_heard.elapsed() > timeout)
            .map(|w| w.id.clone())
            .collect();
        for id in silent {
            state.lose(&id, &format!("no heartbeat for {timeout:?}"));
        }
    }

    /// Follows one worker's stream until it ends.
    async fn follow(self, id: String, connection: u64, mut incoming: Streaming<WorkerMessage>) {
        let why = loop {
            match incoming.message().await {
                Ok(Some(message)) => {
                    let mut state = self.state();
                    if let Some(w) = state.workers.iter_mut().find(|w| w.id == id) {
                        w.last_heard = Instant::now();
                    }
                    match message.kind {
                        Some(worker_message::Kind::TaskState(report)) => {
                            state.on_task_state(report)
                        }
                        Some(worker_message::Kind::Heartbeat(beat)) => state.on_heartbeat(beat),
                        Some(worker_message::Kind::CheckpointAck(ack)) => {
                            state.on_checkpoint_ack(ack)
                        }
                        Some(worker_message::Kind::CheckpointDeclined(declined)) => {
                            state.on_checkpoint_declined(declined)
                        }
                        Some(worker_message::Kind::CheckpointCompleteReceived(heard)) => {
                            state.on_checkpoint_complete_received(&id, heard)
                        }
                        None => {}
                        Some(other) => {
                            tracing::debug!(worker = %id, message = ?other, "ignored");
                        }
                    }
                }
                Ok(None) => break "it closed its connection".to_string(),
                Err(status) => break format!("its connection broke: {}", status.message()),
            }
        };
        let mut state = self.state();
        if state
            .workers
            .iter()
            .any(|w| w.id == id && w.connection == connection)
        {
            state.lose(&id, &why);
        }
    }
}

fn check_registration(r: &RegisterWorker) -> Result<(), Status> {
    if r.worker_id.is_empty() {
        return Err(Status::invalid_argument(
            "register.worker_id is empty: give every worker a unique id (--id)",
        ));
    }
    if r.slots == 0 {
        return Err(Status::invalid_argument(
            "register.slots is 0: a worker needs at least one slot (--slots)",
        ));
    }
    if r.data_address.is_empty() {
        return Err(Status::invalid_argument(
            "register.data_address is empty: workers must say where others reach them",
        ));
    }
    Ok(())
}

type ToWorker = Pin<Box<dyn futures::Stream<Item = Result<MasterMessage, Status>> + Send>>;

#[tonic::async_trait]
impl Master for MasterService {
    type AttachStream = ToWorker;

    async fn attach(
        &self,
        request: Request<Streaming<WorkerMessage>>,
    ) -> Result<Response<ToWorker>, Status> {
        let mut incoming = request.into_inner();
        let register = match incoming.message().await? {
            Some(WorkerMessage {
                kind: Some(worker_message::Kind::Register(r)),
            }) => r,
            _ => {
                return Err(Status::invalid_argument(
                    "a worker's first message must be 'register'",
                ));
            }
        };
        check_registration(&register)?;
        let (to_worker, outgoing) = mpsc::channel(64);
        let _ = to_worker.try_send(Ok(MasterMessage {
            kind: Some(master_message::Kind::Registered(Registered {
                heartbeat_interval_ms: self.heartbeat_interval.as_millis() as u64,
                heartbeat_timeout_ms: self.heartbeat_timeout.as_millis() as u64,
                master_session: self.session.clone(),
            })),
        }));
        let connection = {
            let mut state = self.state();
            if let Some(taken) = state.workers.iter().find(|w| w.id == register.worker_id) {
                // Two processes cannot listen on one address: another address is another
                // worker with the same id, and letting both in would have them replace each
                // other forever.
                if taken.data_address != register.data_address {
                    return Err(Status::already_exists(format!(
                        "worker id '{}' is taken by the worker at {}, which is attached; give \
                         every worker its own --id (if that worker is gone, the master forgets \
                         it after the heartbeat timeout, {:?})",
                        register.worker_id, taken.data_address, self.heartbeat_timeout
                    )));
                }
                // The same worker, attached again: it cancelled what it ran for its old
                // connection, so that is a loss of those subtasks.
                state.lose(&register.worker_id, "it attached again");
            }
            let connection = state.next_connection;
            state.next_connection += 1;
            tracing::info!(
                worker = %register.worker_id,
                slots = register.slots,
                data = %register.data_address,
                "worker registered"
            );
            state.workers.push(WorkerEntry {
                id: register.worker_id.clone(),
                data_address: register.data_address.clone(),
                slots: register.slots,
                connection,
                to_worker,
                last_heard: Instant::now(),
            });
            state.settle();
            connection
        };
        tokio::spawn(
            self.clone()
                .follow(register.worker_id, connection, incoming),
        );
        Ok(Response::new(Box::pin(ReceiverStream::new(outgoing))))
    }
}

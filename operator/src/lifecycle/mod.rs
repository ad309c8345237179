//! The lifecycle of a StreamJob as a pure function: from the StreamJob (its spec and its
//! status) and what the operator just saw of its master, `decide` gives the next status,
//! the actions to take, and the Events to record. No API, no clock, no I/O: every
//! transition is unit-tested, and so is resuming after a restart at every step.
//!
//! Status is the write-ahead log: the reconciler writes the decided status first and
//! takes the actions after, and every action is safe to take again. An operator that
//! dies between the two finds the step in status and takes it again; one that dies after
//! sending a stop-with-savepoint but before recording its request id finds the job
//! stopped and reads the savepoint from the job itself.
//!
//! The changes (`status.upgrade.kind`), after the Flink Kubernetes operator:
//! - Deploy: the first run, from `initialSavepoint` if given.
//! - Upgrade / Rescale / Restart (spec, parallelism, `restartNonce` changed): by
//!   `upgradeMode` — Savepoint stops the job with a savepoint and starts a new run from
//!   it; LastState starts a new run from the newest checkpoint (also what Savepoint falls
//!   back to when the job does not run, as Flink's last-state fallback); Stateless starts
//!   fresh. A new run that fails or does not reach Running within `rollback.deadline` is
//!   rolled back to `lastStableSpec`, from the state the change started with.
//! - Suspend / Resume (`state`): a savepoint, zero pods; then a new run from it.
//! - Delete: a final savepoint when `savepointOnDeletion`, then the masters go, then
//!   the HA data (owner references take the rest once the finalizer is gone).
//!
//! A spec that breaks a rule changes nothing that runs: it is reported in the Degraded
//! condition and an Event.

mod conditions;
pub mod observed;
#[cfg(test)]
mod tests;

pub use observed::{JobState, MasterState, Observed, ObservedJob, PodTrouble, RequestState};

use crate::build::savepoint_directory;
use crate::crd::{
    ChangeKind, DeployedRun, DesiredState, JobStatus, Phase, SavepointRecord, SavepointTrigger,
    StreamJob, StreamJobSpec, StreamJobStatus, UpgradeMode, UpgradeStatus, UpgradeStep,
};
use crate::validate::{Invalid, validate};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;
use std::time::Duration;

/// The finalizer that lets the operator take the final savepoint and clean the HA data.
pub const FINALIZER: &str = "strom.dev/finalizer";
/// How long a failed savepoint waits before it is asked for again.
pub const SAVEPOINT_RETRY: Duration = Duration::from_secs(30);
/// How long an unreachable master may stay so before a change stops waiting for it.
pub const UNREACHABLE_GRACE: Duration = Duration::from_secs(60);
/// How often a change in progress is looked at.
pub const STEP_POLL: Duration = Duration::from_secs(1);
/// How often a steady job is looked at (watches bring changes sooner).
pub const STEADY_POLL: Duration = Duration::from_secs(30);

/// What to do after a look at a StreamJob.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// Written before any action is taken.
    pub status: StreamJobStatus,
    pub actions: Vec<Action>,
    pub events: Vec<Event>,
    pub requeue_after: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    AddFinalizer,
    /// Server-side apply the children of `status.deployed`.
    ApplyChildren,
    /// `POST /v1/jobs/{job_id}/stop`; its request id goes to `status.upgrade.requestId`.
    StopWithSavepoint {
        job_id: String,
        directory: String,
    },
    /// `POST /v1/jobs/{job_id}/savepoints`; its request id goes to `status.savepoints.trigger`.
    TriggerSavepoint {
        job_id: String,
        directory: String,
        reason: String,
        nonce: Option<i64>,
    },
    /// A savepoint beyond `savepoints.keep` is deleted (by the master, which has the
    /// storage credentials).
    DisposeSavepoint {
        location: String,
    },
    /// The master Deployment, deleted ahead of the rest on deletion (see `DeleteHaData`).
    DeleteMasters,
    /// The masters' HA ConfigMap, which no owner reference deletes; only once no master
    /// pod is left to write it again.
    DeleteHaData,
    RemoveFinalizer,
}

/// A Kubernetes Event on the StreamJob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub warning: bool,
    /// CamelCase, e.g. `UpgradeStarted`.
    pub reason: &'static str,
    pub note: String,
}

/// The next status, actions and Events for `job`, given what was `seen`.
pub fn decide(job: &StreamJob, seen: &Observed) -> Decision {
    let mut d = Decider {
        job,
        seen,
        now: seen.now,
        status: job.status.clone().unwrap_or_default(),
        actions: Vec::new(),
        events: Vec::new(),
        requeue_after: STEADY_POLL,
        invalid: Vec::new(),
    };
    if job.metadata.deletion_timestamp.is_some() {
        d.deleting();
    } else {
        if !job.finalizers().iter().any(|f| f == FINALIZER) {
            d.actions.push(Action::AddFinalizer);
        }
        match d.status.upgrade.clone() {
            Some(change) => d.continue_change(change),
            None => d.steady(),
        }
    }
    d.finish()
}

/// What taking `action` gave, written into `status` (the second write of a reconcile).
pub fn record(
    status: &mut StreamJobStatus,
    action: &Action,
    outcome: Result<String, String>,
    now: Timestamp,
) {
    match (action, outcome) {
        (Action::StopWithSavepoint { .. }, Ok(request)) => {
            if let Some(u) = status.upgrade.as_mut() {
                u.request_id = Some(request);
            }
        }
        (Action::StopWithSavepoint { .. }, Err(why)) => {
            if let Some(u) = status.upgrade.as_mut() {
                u.retry_at = Some(rfc3339(now + SAVEPOINT_RETRY));
            }
            savepoints(status).last_failure = Some(why);
        }
        (
            Action::TriggerSavepoint {
                job_id,
                reason,
                nonce,
                ..
            },
            Ok(request),
        ) => {
            let s = savepoints(status);
            s.trigger = Some(SavepointTrigger {
                request_id: request,
                job_id: job_id.clone(),
                reason: reason.clone(),
                nonce: *nonce,
                started_at: rfc3339(now),
            });
            if nonce.is_some() {
                s.handled_nonce = *nonce;
            }
        }
        (Action::TriggerSavepoint { nonce, .. }, Err(why)) => {
            let s = savepoints(status);
            s.last_failure = Some(why);
            // A manual savepoint that cannot be taken is not asked for again and again;
            // a new nonce asks again.
            if nonce.is_some() {
                s.handled_nonce = *nonce;
            }
        }
        _ => {}
    }
}

struct Decider<'a> {
    job: &'a StreamJob,
    seen: &'a Observed,
    now: Timestamp,
    status: StreamJobStatus,
    actions: Vec<Action>,
    events: Vec<Event>,
    requeue_after: Duration,
    /// The rules the current spec breaks, when it was checked.
    invalid: Vec<Invalid>,
}

impl Decider<'_> {
    fn spec(&self) -> &StreamJobSpec {
        &self.job.spec
    }

    fn generation(&self) -> i64 {
        self.job.metadata.generation.unwrap_or(0)
    }

    fn name(&self) -> String {
        self.job.name_any()
    }

    fn namespace(&self) -> String {
        self.job.namespace().unwrap_or_default()
    }

    fn event(&mut self, warning: bool, reason: &'static str, note: String) {
        self.events.push(Event {
            warning,
            reason,
            note,
        });
    }

    fn poll(&mut self, after: Duration) {
        self.requeue_after = self.requeue_after.min(after);
    }

    fn deployed(&self) -> Option<&DeployedRun> {
        self.status.deployed.as_ref()
    }

    fn deployed_spec(&self) -> Option<StreamJobSpec> {
        self.deployed()
            .and_then(|d| serde_json::from_str(&d.spec).ok())
    }

    fn stable_spec(&self) -> Option<StreamJobSpec> {
        self.status
            .last_stable_spec
            .as_deref()
            .and_then(|s| serde_json::from_str(s).ok())
    }

    /// The deployed run's job, if the master reports it.
    fn run_job(&self) -> Option<&ObservedJob> {
        self.deployed().and_then(|d| self.seen.job_of(&d.run_id))
    }

    fn run_is_running(&self) -> bool {
        self.deployed()
            .is_some_and(|d| !d.suspended && self.seen.runs(&d.run_id))
    }

    /// The job of the deployed run can take a savepoint now.
    fn can_savepoint(&self) -> bool {
        self.run_job().is_some_and(|j| j.state == JobState::Running)
    }

    fn savepoint_directory(&self) -> Option<String> {
        savepoint_directory(self.spec(), &self.namespace(), &self.name())
    }

    /// `status.job` from what the master reports.
    fn observe_job(&mut self) {
        let suspended = self.deployed().is_some_and(|d| d.suspended);
        let previous = self.status.job.clone().unwrap_or_default();
        self.status.job = Some(match &self.seen.master {
            _ if suspended => JobStatus {
                state: Some("Suspended".into()),
                ..Default::default()
            },
            MasterState::Job(j) => JobStatus {
                id: Some(j.id.clone()),
                run_id: j.run_id.clone(),
                state: Some(j.state.name().to_string()),
                start_time: j.start_time.clone(),
                last_checkpoint: j.last_checkpoint.clone().or(previous.last_checkpoint),
            },
            MasterState::NoJob => JobStatus {
                state: Some("Starting".into()),
                ..previous
            },
            MasterState::Unreachable(_) => JobStatus {
                state: Some("Unreachable".into()),
                ..previous
            },
        });
    }

    // ---- no change in progress -------------------------------------------------------

    fn steady(&mut self) {
        let Some(deployed) = self.deployed().cloned() else {
            return self.first_deploy();
        };
        self.actions.push(Action::ApplyChildren);
        self.follow_run(&deployed);
        if self.resolve_trigger() {
            return;
        }
        let spec = self.spec().clone();
        let generation = self.generation();
        match (spec.state, deployed.suspended) {
            (DesiredState::Suspended, false) => return self.start_suspend(),
            (DesiredState::Running, true) => return self.start_resume(&deployed),
            (DesiredState::Suspended, true) => {
                self.status.observed_generation = Some(generation);
                return;
            }
            (DesiredState::Running, false) => {}
        }
        let deployed_spec = self.deployed_spec();
        let kind = deployed_spec
            .as_ref()
            .map_or(Some(ChangeKind::Upgrade), |d| change_kind(d, &spec));
        match kind {
            Some(_) if self.status.rolled_back_generation == Some(generation) => {
                // Rolled back already; the next change of the spec is tried.
            }
            Some(kind) => {
                self.invalid = validate(&spec, self.stable_spec().as_ref());
                if self.invalid.is_empty() {
                    return self.start_change(kind);
                }
                self.report_invalid();
            }
            None => {
                self.status.observed_generation = Some(generation);
                self.savepoints_due();
            }
        }
    }

    fn first_deploy(&mut self) {
        let spec = self.spec().clone();
        self.invalid = validate(&spec, None);
        if !self.invalid.is_empty() {
            self.status.phase = Some(Phase::Failed);
            return self.report_invalid();
        }
        if spec.state == DesiredState::Suspended {
            self.status.phase = Some(Phase::Suspended);
            self.status.observed_generation = Some(self.generation());
            return;
        }
        self.status.upgrade = Some(UpgradeStatus {
            kind: ChangeKind::Deploy,
            step: UpgradeStep::Deploying,
            started_at: Some(rfc3339(self.now)),
            target_generation: Some(self.generation()),
            ..Default::default()
        });
        let from = spec.initial_savepoint.clone();
        self.new_run(&spec, from, false);
    }

    /// Phase and `lastStableSpec` from how the deployed run is doing.
    fn follow_run(&mut self, deployed: &DeployedRun) {
        if deployed.suspended {
            self.status.phase = Some(Phase::Suspended);
            return;
        }
        let previous = self.status.phase;
        if self.run_is_running() {
            self.status.phase = Some(Phase::Running);
            self.status.last_stable_spec = Some(deployed.spec.clone());
        } else if let Some(job) = self.run_job().cloned() {
            match job.state {
                JobState::Failed => {
                    self.status.phase = Some(Phase::Failed);
                    if previous != Some(Phase::Failed) {
                        let why = job.failure.unwrap_or_else(|| "no reason given".into());
                        self.event(true, "JobFailed", format!("job {} failed: {why}", job.id));
                    }
                }
                JobState::Finished if job.savepoint.is_none() => {
                    self.status.phase = Some(Phase::Finished);
                }
                _ => {}
            }
        }
    }

    // ---- savepoints on request and on schedule -----------------------------------------

    /// Follows `status.savepoints.trigger`; true while one is in flight.
    fn resolve_trigger(&mut self) -> bool {
        let Some(trigger) = self
            .status
            .savepoints
            .as_ref()
            .and_then(|s| s.trigger.clone())
        else {
            return false;
        };
        match self.seen.request.clone().unwrap_or(RequestState::Unknown) {
            RequestState::InProgress => {
                self.poll(STEP_POLL);
                return true;
            }
            RequestState::Completed { location } => {
                savepoints(&mut self.status).trigger = None;
                self.savepoint_taken(&location, &trigger.reason);
            }
            RequestState::Failed { failure } => {
                let s = savepoints(&mut self.status);
                s.trigger = None;
                s.last_failure = Some(failure.clone());
                self.event(
                    true,
                    "SavepointFailed",
                    format!(
                        "the {} savepoint failed: {failure}",
                        trigger.reason.to_lowercase()
                    ),
                );
            }
            RequestState::Unknown => {
                // The master restarted and forgot it; a new one is asked for if still due.
                savepoints(&mut self.status).trigger = None;
            }
        }
        false
    }

    /// A savepoint was taken: into the history, and what is beyond `keep` is disposed of.
    fn savepoint_taken(&mut self, location: &str, reason: &str) {
        let keep = self
            .spec()
            .savepoints
            .as_ref()
            .and_then(|s| s.keep)
            .unwrap_or(5)
            .max(1) as usize;
        let record = SavepointRecord {
            location: location.to_string(),
            time: rfc3339(self.now),
            reason: reason.to_string(),
        };
        let s = savepoints(&mut self.status);
        s.last_failure = None;
        s.last = Some(record.clone());
        s.history.push(record);
        let excess = s.history.len().saturating_sub(keep);
        let disposed: Vec<SavepointRecord> = s.history.drain(..excess).collect();
        for old in disposed {
            self.actions.push(Action::DisposeSavepoint {
                location: old.location,
            });
        }
        self.event(
            false,
            "SavepointTaken",
            format!("{reason} savepoint at {location}"),
        );
    }

    /// Asks for a manual (`savepointNonce`) or periodic savepoint when one is due.
    fn savepoints_due(&mut self) {
        let (Some(job), Some(directory)) = (self.run_job().cloned(), self.savepoint_directory())
        else {
            return;
        };
        if !self.can_savepoint() {
            return;
        }
        let history = self.status.savepoints.clone().unwrap_or_default();
        if let Some(nonce) = self.spec().savepoint_nonce
            && history.handled_nonce != Some(nonce)
        {
            self.actions.push(Action::TriggerSavepoint {
                job_id: job.id,
                directory,
                reason: "Manual".into(),
                nonce: Some(nonce),
            });
            return;
        }
        let Some(every) = self
            .spec()
            .savepoints
            .as_ref()
            .and_then(|s| s.periodic.as_deref())
            .and_then(|p| crate::duration::parse(p).ok())
        else {
            return;
        };
        // Counted from the newest savepoint, attempt, or the run's start.
        let since = [
            history.last.as_ref().map(|l| l.time.clone()),
            history.last_periodic_attempt.clone(),
            self.deployed().and_then(|d| d.deployed_at.clone()),
        ]
        .into_iter()
        .flatten()
        .filter_map(|t| t.parse::<Timestamp>().ok())
        .max();
        let due = since.map_or(self.now, |t| t + every);
        if due <= self.now {
            savepoints(&mut self.status).last_periodic_attempt = Some(rfc3339(self.now));
            self.actions.push(Action::TriggerSavepoint {
                job_id: job.id,
                directory,
                reason: "Periodic".into(),
                nonce: None,
            });
        } else {
            self.poll(
                self.now
                    .duration_until(due)
                    .try_into()
                    .unwrap_or(STEADY_POLL),
            );
        }
    }

    // ---- starting changes --------------------------------------------------------------

    fn start_change(&mut self, kind: ChangeKind) {
        let spec = self.spec().clone();
        self.status.observed_generation = Some(self.generation());
        self.status.upgrade = Some(UpgradeStatus {
            kind,
            step: UpgradeStep::Savepointing,
            started_at: Some(rfc3339(self.now)),
            step_started_at: Some(rfc3339(self.now)),
            target_generation: Some(self.generation()),
            ..Default::default()
        });
        self.status.phase = Some(Phase::Upgrading);
        let what = match kind {
            ChangeKind::Rescale => format!("rescaling to parallelism {}", spec.parallelism),
            ChangeKind::Restart => "restarting (restartNonce changed)".to_string(),
            _ => format!("upgrading to generation {}", self.generation()),
        };
        match spec.upgrade_mode {
            UpgradeMode::Savepoint if self.can_savepoint() => {
                self.event(
                    false,
                    "UpgradeStarted",
                    format!("{what}: stopping the job with a savepoint"),
                );
                self.stop_with_savepoint();
            }
            UpgradeMode::Savepoint => {
                self.event(
                    true,
                    "UpgradeStarted",
                    format!("{what}: the job does not run, so no savepoint; from the latest checkpoint (last-state fallback)"),
                );
                self.fall_back(kind);
            }
            UpgradeMode::LastState => {
                self.event(
                    false,
                    "UpgradeStarted",
                    format!("{what} from the latest checkpoint"),
                );
                self.new_run(&spec, None, true);
            }
            UpgradeMode::Stateless => {
                self.event(
                    false,
                    "UpgradeStarted",
                    format!("{what} without state (Stateless)"),
                );
                self.new_run(&spec, None, false);
            }
        }
    }

    fn start_suspend(&mut self) {
        self.status.observed_generation = Some(self.generation());
        self.status.upgrade = Some(UpgradeStatus {
            kind: ChangeKind::Suspend,
            step: UpgradeStep::Savepointing,
            started_at: Some(rfc3339(self.now)),
            step_started_at: Some(rfc3339(self.now)),
            target_generation: Some(self.generation()),
            ..Default::default()
        });
        self.status.phase = Some(Phase::Suspending);
        if self.spec().upgrade_mode == UpgradeMode::Savepoint && self.can_savepoint() {
            self.event(
                false,
                "Suspending",
                "stopping the job with a savepoint".into(),
            );
            self.stop_with_savepoint();
        } else {
            self.event(
                false,
                "Suspending",
                "scaling to zero; resuming restores the latest checkpoint".into(),
            );
            self.suspend(None);
        }
    }

    fn start_resume(&mut self, deployed: &DeployedRun) {
        let spec = self.spec().clone();
        self.invalid = validate(&spec, self.stable_spec().as_ref());
        if !self.invalid.is_empty() {
            return self.report_invalid();
        }
        self.status.observed_generation = Some(self.generation());
        self.status.upgrade = Some(UpgradeStatus {
            kind: ChangeKind::Resume,
            step: UpgradeStep::Deploying,
            started_at: Some(rfc3339(self.now)),
            savepoint: deployed.suspend_savepoint.clone(),
            target_generation: Some(self.generation()),
            ..Default::default()
        });
        let (from, latest) = match (&deployed.suspend_savepoint, spec.upgrade_mode) {
            (Some(savepoint), _) => (Some(savepoint.clone()), false),
            (None, UpgradeMode::Stateless) => (None, false),
            (None, _) => (None, spec.checkpoints.is_some()),
        };
        self.event(
            false,
            "Resuming",
            match &from {
                Some(s) => format!("resuming from savepoint {s}"),
                None if latest => "resuming from the latest checkpoint".into(),
                None => "resuming without state".into(),
            },
        );
        self.new_run(&spec, from, latest);
    }

    /// Asks the master to stop the deployed run's job with a savepoint (`Savepointing`).
    fn stop_with_savepoint(&mut self) {
        let (Some(job), Some(directory)) = (self.run_job().cloned(), self.savepoint_directory())
        else {
            return;
        };
        self.actions.push(Action::StopWithSavepoint {
            job_id: job.id,
            directory,
        });
        self.poll(STEP_POLL);
    }

    /// A new run of `spec`, Deploying; `status.upgrade` says what for.
    fn new_run(&mut self, spec: &StreamJobSpec, from_savepoint: Option<String>, from_latest: bool) {
        let run = self.deployed().map_or(1, |d| d.run + 1);
        let uid = self.job.metadata.uid.clone().unwrap_or_default();
        let prefix: String = uid.chars().filter(|c| *c != '-').take(8).collect();
        let spec_json = serde_json::to_string(&operational(spec)).unwrap_or_default();
        self.status.deployed = Some(DeployedRun {
            run_id: format!("{prefix}-{run}"),
            run,
            spec: spec_json,
            generation: self.generation(),
            from_savepoint,
            from_latest_checkpoint: from_latest,
            suspended: false,
            suspend_savepoint: None,
            deployed_at: Some(rfc3339(self.now)),
        });
        let kind = match self.status.upgrade.as_mut() {
            Some(u) => {
                u.step = UpgradeStep::Deploying;
                u.step_started_at = Some(rfc3339(self.now));
                u.request_id = None;
                u.kind
            }
            None => ChangeKind::Deploy,
        };
        self.status.phase = Some(match kind {
            ChangeKind::Deploy | ChangeKind::Resume => Phase::Deploying,
            ChangeKind::Rollback => Phase::RollingBack,
            _ => Phase::Upgrading,
        });
        if kind == ChangeKind::Deploy {
            self.event(
                false,
                "Deploying",
                format!(
                    "run {} of job {} at parallelism {}",
                    run, spec.job.name, spec.parallelism
                ),
            );
        }
        self.actions.push(Action::ApplyChildren);
        self.poll(STEP_POLL);
    }

    /// Zero pods; `savepoint` is what resuming starts from.
    fn suspend(&mut self, savepoint: Option<String>) {
        if let Some(d) = self.status.deployed.as_mut() {
            d.suspended = true;
            d.suspend_savepoint = savepoint;
        }
        self.status.upgrade = None;
        self.status.phase = Some(Phase::Suspended);
        self.actions.push(Action::ApplyChildren);
        self.event(
            false,
            "Suspended",
            "no pods run; `state: Running` resumes the job".into(),
        );
    }

    /// The job cannot take a savepoint: carry on from the newest checkpoint if there are
    /// checkpoints, else without state.
    fn fall_back(&mut self, kind: ChangeKind) {
        let spec = self.spec().clone();
        match kind {
            ChangeKind::Suspend => self.suspend(None),
            ChangeKind::Delete => self.delete_now(),
            _ => {
                let latest =
                    spec.checkpoints.is_some() && spec.upgrade_mode != UpgradeMode::Stateless;
                self.new_run(&spec, None, latest);
            }
        }
    }

    // ---- a change in progress ----------------------------------------------------------

    fn continue_change(&mut self, change: UpgradeStatus) {
        if self.deployed().is_some() {
            self.actions.push(Action::ApplyChildren);
        }
        match change.step {
            UpgradeStep::Savepointing => self.savepointing(change),
            UpgradeStep::Deploying => self.deploying(change),
        }
        self.actions.dedup();
    }

    fn savepointing(&mut self, change: UpgradeStatus) {
        self.poll(STEP_POLL);
        let job = self.run_job().cloned();
        // Stopped already: the savepoint the job ended with (also when the request id
        // never made it into status).
        if let Some(job) = &job
            && let Some(savepoint) = &job.savepoint
        {
            return self.stopped(change.kind, savepoint.clone());
        }
        if let Some(request) = &change.request_id {
            match self.seen.request.clone().unwrap_or(RequestState::Unknown) {
                RequestState::InProgress => return,
                RequestState::Completed { location } => {
                    return self.stopped(change.kind, location);
                }
                RequestState::Failed { failure } => {
                    savepoints(&mut self.status).last_failure = Some(failure.clone());
                    self.event(
                        true,
                        "SavepointFailed",
                        format!(
                            "the savepoint before the {} failed (request {request}): {failure}",
                            kind_name(change.kind)
                        ),
                    );
                    if let Some(u) = self.status.upgrade.as_mut() {
                        u.request_id = None;
                        u.retry_at = Some(rfc3339(self.now + SAVEPOINT_RETRY));
                    }
                    return;
                }
                RequestState::Unknown => {
                    if let Some(u) = self.status.upgrade.as_mut() {
                        u.request_id = None;
                    }
                }
            }
        }
        if self.can_savepoint() {
            let waiting = change
                .retry_at
                .as_deref()
                .and_then(|t| t.parse::<Timestamp>().ok())
                .is_some_and(|t| t > self.now);
            if !waiting {
                self.stop_with_savepoint();
            }
            return;
        }
        // No savepoint can be taken: the job failed, ended, or its master is gone.
        let failed = job.as_ref().is_some_and(|j| j.state.is_terminal());
        let gone_for = since(change.step_started_at.as_deref(), self.now);
        if failed || gone_for >= UNREACHABLE_GRACE {
            self.event(
                true,
                "SavepointSkipped",
                format!("the job cannot take a savepoint ({}); the {} goes on from the latest checkpoint", self.job_state_text(), kind_name(change.kind)),
            );
            self.fall_back(change.kind);
        }
    }

    fn job_state_text(&self) -> String {
        match &self.seen.master {
            MasterState::Unreachable(why) => format!("master unreachable: {why}"),
            MasterState::NoJob => "the master has no job".into(),
            MasterState::Job(j) => format!("job {}", j.state.name()),
        }
    }

    /// The stop-with-savepoint completed at `savepoint`.
    fn stopped(&mut self, kind: ChangeKind, savepoint: String) {
        let reason = match kind {
            ChangeKind::Suspend => "Suspend",
            ChangeKind::Delete => "Deletion",
            _ => "Upgrade",
        };
        self.savepoint_taken(&savepoint, reason);
        if let Some(u) = self.status.upgrade.as_mut() {
            u.savepoint = Some(savepoint.clone());
            u.request_id = None;
        }
        match kind {
            ChangeKind::Suspend => self.suspend(Some(savepoint)),
            ChangeKind::Delete => self.delete_now(),
            _ => {
                let spec = self.spec().clone();
                self.new_run(&spec, Some(savepoint), false);
            }
        }
    }

    fn deploying(&mut self, change: UpgradeStatus) {
        self.poll(STEP_POLL);
        let Some(deployed) = self.deployed().cloned() else {
            self.status.upgrade = None;
            return;
        };
        if self.seen.runs(&deployed.run_id) {
            return self.reached_running(change, &deployed);
        }
        let deadline = self.rollback_deadline();
        let waited = since(change.step_started_at.as_deref(), self.now);
        let failed = self
            .seen
            .job_of(&deployed.run_id)
            .filter(|j| j.state == JobState::Failed)
            .map(|j| {
                j.failure
                    .clone()
                    .unwrap_or_else(|| "no reason given".into())
            });
        let why = match failed {
            Some(failure) => format!("run {} failed: {failure}", deployed.run_id),
            None if waited >= deadline => format!(
                "run {} did not reach Running within {} ({})",
                deployed.run_id,
                humantime(deadline),
                self.job_state_text()
            ),
            None => return,
        };
        self.run_failed(change, &deployed, why);
    }

    fn rollback_deadline(&self) -> Duration {
        self.spec()
            .rollback
            .as_ref()
            .and_then(|r| r.deadline.as_deref())
            .and_then(|d| crate::duration::parse(d).ok())
            .unwrap_or(Duration::from_secs(300))
    }

    fn reached_running(&mut self, change: UpgradeStatus, deployed: &DeployedRun) {
        let took = since(change.started_at.as_deref(), self.now);
        self.status.upgrade = None;
        self.status.phase = Some(Phase::Running);
        self.status.observed_generation = Some(self.generation());
        self.status.last_stable_spec = Some(deployed.spec.clone());
        let took = humantime(took);
        let (warning, reason, note) = match change.kind {
            ChangeKind::Deploy => (
                false,
                "Running",
                format!("run {} runs (after {took})", deployed.run_id),
            ),
            ChangeKind::Upgrade => (
                false,
                "Upgraded",
                format!(
                    "generation {} runs as run {} (upgraded in {took})",
                    deployed.generation, deployed.run_id
                ),
            ),
            ChangeKind::Rescale => (
                false,
                "Rescaled",
                format!(
                    "parallelism {} runs as run {} (rescaled in {took})",
                    self.deployed_spec().map_or(0, |s| s.parallelism),
                    deployed.run_id
                ),
            ),
            ChangeKind::Restart => (
                false,
                "Restarted",
                format!("run {} runs (restarted in {took})", deployed.run_id),
            ),
            ChangeKind::Resume => (
                false,
                "Resumed",
                format!("run {} runs (resumed in {took})", deployed.run_id),
            ),
            ChangeKind::Rollback => (
                true,
                "RolledBack",
                format!(
                    "the last stable spec runs again as run {} (rolled back in {took}); generation {} stays rolled back until the spec changes",
                    deployed.run_id,
                    self.status.rolled_back_generation.unwrap_or(0)
                ),
            ),
            ChangeKind::Suspend | ChangeKind::Delete => (false, "Running", String::new()),
        };
        self.event(warning, reason, note);
    }

    fn run_failed(&mut self, change: UpgradeStatus, deployed: &DeployedRun, why: String) {
        let rollback_enabled = self
            .spec()
            .rollback
            .as_ref()
            .and_then(|r| r.enabled)
            .unwrap_or(true);
        let stable = self.status.last_stable_spec.clone();
        let can_roll_back = rollback_enabled
            && matches!(
                change.kind,
                ChangeKind::Upgrade | ChangeKind::Rescale | ChangeKind::Restart
            )
            && stable.as_ref().is_some_and(|s| *s != deployed.spec);
        let Some(stable) = stable.filter(|_| can_roll_back) else {
            self.status.upgrade = None;
            self.status.phase = Some(Phase::Failed);
            self.event(true, "RunFailed", why);
            return;
        };
        // From the newest state the failed run kept, else where the change started.
        let failed_run_checkpoint = self
            .seen
            .job_of(&deployed.run_id)
            .and_then(|j| j.last_checkpoint.clone());
        let from = failed_run_checkpoint.or_else(|| change.savepoint.clone());
        let mode = self.spec().upgrade_mode;
        let latest =
            from.is_none() && mode != UpgradeMode::Stateless && self.spec().checkpoints.is_some();
        self.status.rolled_back_generation = Some(deployed.generation);
        self.status.upgrade = Some(UpgradeStatus {
            kind: ChangeKind::Rollback,
            step: UpgradeStep::Deploying,
            savepoint: change.savepoint.clone(),
            started_at: Some(rfc3339(self.now)),
            step_started_at: Some(rfc3339(self.now)),
            target_generation: change.target_generation,
            ..Default::default()
        });
        self.event(
            true,
            "RollingBack",
            format!(
                "{why}; rolling back to the last stable spec from {}",
                from.clone().unwrap_or_else(|| if latest {
                    "the latest checkpoint".into()
                } else {
                    "no state".into()
                })
            ),
        );
        match serde_json::from_str::<StreamJobSpec>(&stable) {
            Ok(spec) => self.new_run(&spec, from, latest),
            Err(e) => {
                self.status.upgrade = None;
                self.status.phase = Some(Phase::Failed);
                self.event(
                    true,
                    "RunFailed",
                    format!("{why}; status.lastStableSpec cannot be read back ({e})"),
                );
            }
        }
    }

    // ---- deletion ----------------------------------------------------------------------

    fn deleting(&mut self) {
        if !self.job.finalizers().iter().any(|f| f == FINALIZER) {
            return;
        }
        self.status.phase = Some(Phase::Deleting);
        let change = self
            .status
            .upgrade
            .clone()
            .filter(|u| u.kind == ChangeKind::Delete);
        match change {
            Some(change) => self.savepointing(change),
            None if self.spec().savepoint_on_deletion && self.can_savepoint() => {
                self.status.upgrade = Some(UpgradeStatus {
                    kind: ChangeKind::Delete,
                    step: UpgradeStep::Savepointing,
                    started_at: Some(rfc3339(self.now)),
                    step_started_at: Some(rfc3339(self.now)),
                    ..Default::default()
                });
                self.event(
                    false,
                    "Deleting",
                    "taking a final savepoint before the pods go".into(),
                );
                self.stop_with_savepoint();
            }
            None => self.delete_now(),
        }
    }

    fn delete_now(&mut self) {
        self.status.upgrade = None;
        if self.seen.master_pods > 0 {
            // The masters go first and the HA data after them: a standby master that
            // took the lease while the pods were going would write it back.
            self.actions.push(Action::DeleteMasters);
            self.poll(Duration::from_secs(1));
            return;
        }
        self.actions.push(Action::DeleteHaData);
        self.actions.push(Action::RemoveFinalizer);
    }

    fn report_invalid(&mut self) {
        let generation = self.generation();
        self.status.observed_generation = Some(generation);
        let message = self
            .invalid
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        let already = self.status.conditions.iter().any(|c| {
            c.type_ == "Degraded"
                && c.reason == "InvalidSpec"
                && c.observed_generation == Some(generation)
        });
        if !already {
            let running = if self.deployed().is_some() {
                "; the running job is left as it is"
            } else {
                ""
            };
            self.event(true, "InvalidSpec", format!("{message}{running}"));
        }
    }

    fn finish(mut self) -> Decision {
        self.observe_job();
        self.actions.dedup();
        if self.status.selector.is_none() || self.status.parallelism.is_none() {
            self.status.selector = Some(crate::build::worker_selector(&self.name()));
        }
        if let Some(spec) = self.deployed_spec() {
            let suspended = self.deployed().is_some_and(|d| d.suspended);
            self.status.parallelism = Some(if suspended { 0 } else { spec.parallelism });
        }
        conditions::update(&mut self);
        Decision {
            status: self.status,
            actions: self.actions,
            events: self.events,
            requeue_after: self.requeue_after,
        }
    }
}

/// What kind of change turns `from` into `to`, or none when nothing that runs differs.
fn change_kind(from: &StreamJobSpec, to: &StreamJobSpec) -> Option<ChangeKind> {
    let (from, to) = (operational(from), operational(to));
    if from == to {
        return None;
    }
    let mut scaled = from.clone();
    scaled.parallelism = to.parallelism;
    scaled.workers = to.workers.clone();
    if scaled == to {
        return Some(ChangeKind::Rescale);
    }
    let mut restarted = from;
    restarted.restart_nonce = to.restart_nonce;
    if restarted == to {
        return Some(ChangeKind::Restart);
    }
    Some(ChangeKind::Upgrade)
}

/// `spec` without what only the operator reads (how to upgrade, savepoint schedule,
/// rollback, nonces for savepoints, desired state): changing those restarts nothing.
fn operational(spec: &StreamJobSpec) -> StreamJobSpec {
    let mut s = spec.clone();
    s.upgrade_mode = UpgradeMode::default();
    s.state = DesiredState::Running;
    s.savepoint_nonce = None;
    s.savepoints = None;
    s.rollback = None;
    s.savepoint_on_deletion = false;
    s.initial_savepoint = None;
    s
}

fn kind_name(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::Deploy => "deployment",
        ChangeKind::Upgrade => "upgrade",
        ChangeKind::Rescale => "rescale",
        ChangeKind::Restart => "restart",
        ChangeKind::Suspend => "suspend",
        ChangeKind::Resume => "resume",
        ChangeKind::Rollback => "rollback",
        ChangeKind::Delete => "deletion",
    }
}

fn savepoints(status: &mut StreamJobStatus) -> &mut crate::crd::SavepointHistory {
    status.savepoints.get_or_insert_with(Default::default)
}

pub(crate) fn rfc3339(t: Timestamp) -> String {
    t.round(k8s_openapi::jiff::Unit::Millisecond)
        .unwrap_or(t)
        .to_string()
}

/// Time from `start` (RFC 3339) to `now`; zero when unknown.
fn since(start: Option<&str>, now: Timestamp) -> Duration {
    start
        .and_then(|s| s.parse::<Timestamp>().ok())
        .map(|s| now.duration_since(s))
        .and_then(|d: SignedDuration| Duration::try_from(d).ok())
        .unwrap_or(Duration::ZERO)
}

fn humantime(d: Duration) -> String {
    if d < Duration::from_secs(120) {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        format!("{} min", d.as_secs() / 60)
    }
}

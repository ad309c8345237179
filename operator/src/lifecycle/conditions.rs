//! The three conditions a StreamJob reports, as `kubectl wait --for=condition=…` and
//! dashboards read them:
//! - `Ready`: the deployed run's job runs (reason `Running`), or why not;
//! - `Progressing`: a change is under way (reason `<Kind><Step>`, e.g. `UpgradeSavepointing`);
//! - `Degraded`: something needs a person — `InvalidSpec`, `RolledBack`, `JobFailed`,
//!   `SavepointFailed` — or `AsExpected`.
//!
//! A condition's `lastTransitionTime` changes only when its status does.

use super::{Decider, MasterState};
use crate::crd::{ChangeKind, Phase, UpgradeStep};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

pub(super) fn update(d: &mut Decider<'_>) {
    let generation = d.generation();
    let ready = ready(d);
    let progressing = progressing(d);
    let degraded = degraded(d);
    for (type_, (status, reason, message)) in [
        ("Ready", ready),
        ("Progressing", progressing),
        ("Degraded", degraded),
    ] {
        let status = if status { "True" } else { "False" };
        let previous = d.status.conditions.iter().find(|c| c.type_ == type_);
        let since = match previous {
            Some(p) if p.status == status => p.last_transition_time.clone(),
            _ => Time(d.now),
        };
        let condition = Condition {
            type_: type_.to_string(),
            status: status.to_string(),
            reason: reason.to_string(),
            message,
            observed_generation: Some(generation),
            last_transition_time: since,
        };
        match d.status.conditions.iter_mut().find(|c| c.type_ == type_) {
            Some(c) => *c = condition,
            None => d.status.conditions.push(condition),
        }
    }
}

fn ready(d: &Decider<'_>) -> (bool, &'static str, String) {
    if d.run_is_running() {
        let run = d.deployed().map(|r| r.run_id.clone()).unwrap_or_default();
        return (true, "Running", format!("the job runs (run {run})"));
    }
    let reason = match d.status.phase {
        Some(Phase::Suspended) => "Suspended",
        Some(Phase::Failed) => "JobFailed",
        Some(Phase::Finished) => "Finished",
        Some(Phase::Deleting) => "Deleting",
        Some(Phase::Upgrading) => "Upgrading",
        Some(Phase::RollingBack) => "RollingBack",
        Some(Phase::Suspending) => "Suspending",
        _ if d.status.deployed.is_none() => "NotDeployed",
        _ => "Deploying",
    };
    let message = match &d.seen.master {
        _ if d.status.deployed.as_ref().is_some_and(|r| r.suspended) => {
            "suspended: no pods run".to_string()
        }
        MasterState::Unreachable(why) => format!("the master does not answer yet: {why}"),
        MasterState::NoJob => "the master has no job yet".to_string(),
        MasterState::Job(j) => format!("job {} is {}", j.id, j.state.name()),
    };
    (false, reason, message)
}

fn progressing(d: &Decider<'_>) -> (bool, &'static str, String) {
    let Some(change) = &d.status.upgrade else {
        return (false, "Stable", "no change under way".to_string());
    };
    let reason = match (change.kind, change.step) {
        (ChangeKind::Deploy, _) => "Deploying",
        (ChangeKind::Upgrade, UpgradeStep::Savepointing) => "UpgradeSavepointing",
        (ChangeKind::Upgrade, UpgradeStep::Deploying) => "UpgradeDeploying",
        (ChangeKind::Rescale, UpgradeStep::Savepointing) => "RescaleSavepointing",
        (ChangeKind::Rescale, UpgradeStep::Deploying) => "RescaleDeploying",
        (ChangeKind::Restart, UpgradeStep::Savepointing) => "RestartSavepointing",
        (ChangeKind::Restart, UpgradeStep::Deploying) => "RestartDeploying",
        (ChangeKind::Suspend, _) => "Suspending",
        (ChangeKind::Resume, _) => "Resuming",
        (ChangeKind::Rollback, _) => "RollingBack",
        (ChangeKind::Delete, _) => "FinalSavepoint",
    };
    let message = match change.step {
        UpgradeStep::Savepointing => match &change.request_id {
            Some(r) => format!("stopping the job with a savepoint (request {r})"),
            None => "stopping the job with a savepoint".to_string(),
        },
        UpgradeStep::Deploying => format!(
            "waiting for run {} to run",
            d.status
                .deployed
                .as_ref()
                .map(|r| r.run_id.as_str())
                .unwrap_or("?")
        ),
    };
    (true, reason, message)
}

fn degraded(d: &Decider<'_>) -> (bool, &'static str, String) {
    let generation = d.generation();
    if !d.invalid.is_empty() {
        let message = d
            .invalid
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        return (true, "InvalidSpec", message);
    }
    if d.status.phase == Some(Phase::Failed) {
        let why = match &d.seen.master {
            MasterState::Job(j) => j
                .failure
                .clone()
                .unwrap_or_else(|| format!("job {} failed", j.id)),
            MasterState::Unreachable(why) => format!("the master does not answer: {why}"),
            MasterState::NoJob => "the master has no job".to_string(),
        };
        return (true, "JobFailed", why);
    }
    if let Some(g) = d.status.rolled_back_generation
        && g == generation
    {
        return (
            true,
            "RolledBack",
            format!(
                "generation {g} did not reach Running and was rolled back to the last stable spec; change the spec to try again"
            ),
        );
    }
    if let Some(first) = d.seen.pods.first() {
        let message = d
            .seen
            .pods
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        return (true, first.condition_reason(), message);
    }
    if let Some(why) = d
        .status
        .savepoints
        .as_ref()
        .and_then(|s| s.last_failure.clone())
    {
        return (true, "SavepointFailed", why);
    }
    (false, "AsExpected", "nothing needs attention".to_string())
}

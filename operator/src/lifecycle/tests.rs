//! Every transition of the lifecycle, and resuming after an operator restart at each
//! step (a decision is taken from the status alone, so "restart" = deciding again from
//! the status written before the crash, with what the master shows now).

use super::*;
use crate::crd::Phase;
use serde_json::{Value, json};

const UID: &str = "0d5e2c1a-1111-2222-3333-444455556666";
const SAVEPOINTS: &str = "s3://bucket/strom/savepoints/payments/fraud";

fn t(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + seconds).expect("a time")
}

fn base() -> Value {
    json!({
        "image": "strom:1",
        "job": {"name": "fraud-detection", "args": {"rate": "1000"}},
        "parallelism": 2,
        "checkpoints": {"interval": "10s", "storage": "s3://bucket/strom"},
    })
}

fn streamjob(spec: Value, generation: i64) -> StreamJob {
    let mut job = StreamJob::new("fraud", serde_json::from_value(spec).expect("a spec"));
    job.metadata.namespace = Some("payments".into());
    job.metadata.uid = Some(UID.into());
    job.metadata.generation = Some(generation);
    job.metadata.finalizers = Some(vec![FINALIZER.into()]);
    job
}

/// The master reports run `run` of the job in `state`.
fn master(run: i64, state: JobState) -> MasterState {
    MasterState::Job(ObservedJob {
        id: format!("job-{run}"),
        all_running: state == JobState::Running,
        state,
        run_id: Some(format!("0d5e2c1a-{run}")),
        ..Default::default()
    })
}

fn seen(master: MasterState, at: i64) -> Observed {
    Observed {
        master,
        request: None,
        pods: Vec::new(),
        master_pods: 0,
        now: t(at),
    }
}

fn unreachable(at: i64) -> Observed {
    seen(MasterState::Unreachable("connection refused".into()), at)
}

/// Decides, and keeps the decided status on the job (as the reconciler writes it).
fn step(job: &mut StreamJob, seen: &Observed) -> Decision {
    let d = decide(job, seen);
    job.status = Some(d.status.clone());
    d
}

fn status(job: &StreamJob) -> &StreamJobStatus {
    job.status.as_ref().expect("a status")
}

fn condition<'a>(job: &'a StreamJob, type_: &str) -> (&'a str, &'a str) {
    let c = status(job)
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .expect("the condition");
    (c.status.as_str(), c.reason.as_str())
}

fn reasons(d: &Decision) -> Vec<&'static str> {
    d.events.iter().map(|e| e.reason).collect()
}

fn stop_action(d: &Decision) -> Option<&Action> {
    d.actions
        .iter()
        .find(|a| matches!(a, Action::StopWithSavepoint { .. }))
}

/// A StreamJob whose run 1 runs (deployed and reported Running).
fn running_job() -> StreamJob {
    let mut job = streamjob(base(), 1);
    step(&mut job, &unreachable(0));
    step(&mut job, &seen(master(1, JobState::Running), 5));
    assert_eq!(status(&job).phase, Some(Phase::Running));
    job
}

/// `running_job` with its spec changed to `spec` (a new generation).
fn changed(spec: Value) -> StreamJob {
    let mut job = running_job();
    job.spec = serde_json::from_value(spec).expect("a spec");
    job.metadata.generation = Some(2);
    job
}

fn with_args(rate: &str) -> Value {
    let mut spec = base();
    spec["job"]["args"]["rate"] = json!(rate);
    spec
}

// ---- first deployment ----------------------------------------------------------------

#[test]
fn a_new_streamjob_gets_run_1_its_children_and_a_finalizer() {
    let mut job = streamjob(base(), 1);
    job.metadata.finalizers = None;
    let d = step(&mut job, &unreachable(0));
    assert_eq!(d.actions, [Action::AddFinalizer, Action::ApplyChildren]);
    let s = status(&job);
    assert_eq!(s.phase, Some(Phase::Deploying));
    let run = s.deployed.as_ref().expect("a run");
    assert_eq!((run.run_id.as_str(), run.run), ("0d5e2c1a-1", 1));
    assert_eq!(run.from_savepoint, None);
    assert_eq!(s.upgrade.as_ref().map(|u| u.kind), Some(ChangeKind::Deploy));
    assert_eq!(
        s.selector.as_deref(),
        Some("app.kubernetes.io/instance=fraud,app.kubernetes.io/component=worker")
    );
    assert_eq!(s.parallelism, Some(2));
    assert_eq!(reasons(&d), ["Deploying"]);
    assert_eq!(condition(&job, "Ready"), ("False", "Deploying"));
    assert_eq!(condition(&job, "Progressing"), ("True", "Deploying"));
}

#[test]
fn an_initial_savepoint_is_where_run_1_starts() {
    let mut spec = base();
    spec["initialSavepoint"] = json!("s3://old/chk-9");
    let mut job = streamjob(spec, 1);
    step(&mut job, &unreachable(0));
    let run = status(&job).deployed.clone().expect("a run");
    assert_eq!(run.from_savepoint.as_deref(), Some("s3://old/chk-9"));
}

#[test]
fn deploying_waits_for_the_run_to_run_then_it_is_running_and_stable() {
    let mut job = streamjob(base(), 1);
    step(&mut job, &unreachable(0));
    // Restarted operator, master not up yet: the children are applied again, no new run.
    let d = step(&mut job, &unreachable(3));
    assert_eq!(d.actions, [Action::ApplyChildren]);
    assert_eq!(d.requeue_after, STEP_POLL);
    assert_eq!(status(&job).deployed.as_ref().map(|r| r.run), Some(1));
    // Deployed but not every subtask runs yet.
    let mut starting = master(1, JobState::Running);
    if let MasterState::Job(j) = &mut starting {
        j.all_running = false;
    }
    step(&mut job, &seen(starting, 4));
    assert_eq!(status(&job).phase, Some(Phase::Deploying));
    let d = step(&mut job, &seen(master(1, JobState::Running), 5));
    assert_eq!(reasons(&d), ["Running"]);
    let s = status(&job);
    assert_eq!(s.phase, Some(Phase::Running));
    assert_eq!(s.upgrade, None);
    assert_eq!(s.observed_generation, Some(1));
    assert!(s.last_stable_spec.is_some());
    assert_eq!(
        s.job.as_ref().and_then(|j| j.state.as_deref()),
        Some("Running")
    );
    assert_eq!(condition(&job, "Ready"), ("True", "Running"));
    assert_eq!(condition(&job, "Progressing"), ("False", "Stable"));
    assert_eq!(condition(&job, "Degraded"), ("False", "AsExpected"));
}

#[test]
fn a_steady_job_only_gets_its_children_applied_and_no_events() {
    let mut job = running_job();
    let d = step(&mut job, &seen(master(1, JobState::Running), 100));
    assert_eq!(d.actions, [Action::ApplyChildren]);
    assert!(d.events.is_empty());
    assert_eq!(d.requeue_after, STEADY_POLL);
}

#[test]
fn conditions_keep_their_transition_time_while_their_status_holds() {
    let mut job = running_job();
    let before = status(&job).conditions.clone();
    step(&mut job, &seen(master(1, JobState::Running), 500));
    assert_eq!(status(&job).conditions, before);
}

// ---- invalid specs -------------------------------------------------------------------

#[test]
fn an_invalid_new_streamjob_deploys_nothing_and_says_which_field() {
    let mut spec = base();
    spec["maxParallelism"] = json!(1);
    let mut job = streamjob(spec, 1);
    let d = step(&mut job, &unreachable(0));
    assert!(!d.actions.contains(&Action::ApplyChildren));
    assert_eq!(status(&job).phase, Some(Phase::Failed));
    assert_eq!(status(&job).deployed, None);
    assert_eq!(reasons(&d), ["InvalidSpec"]);
    assert!(
        d.events[0].note.starts_with("spec.maxParallelism: is 1"),
        "{}",
        d.events[0].note
    );
    assert_eq!(condition(&job, "Degraded"), ("True", "InvalidSpec"));
}

#[test]
fn an_invalid_change_leaves_the_running_job_alone_and_is_reported_once() {
    let mut spec = with_args("5");
    spec["checkpoints"]["storage"] = json!("/tmp/local");
    let mut job = changed(spec);
    let before = status(&job).deployed.clone();
    let d = step(&mut job, &seen(master(1, JobState::Running), 10));
    assert_eq!(d.actions, [Action::ApplyChildren]);
    assert_eq!(status(&job).deployed, before);
    assert_eq!(status(&job).phase, Some(Phase::Running));
    assert_eq!(reasons(&d), ["InvalidSpec"]);
    assert!(d.events[0].note.contains("spec.checkpoints.storage"));
    assert!(
        d.events[0]
            .note
            .ends_with("the running job is left as it is")
    );
    assert_eq!(condition(&job, "Degraded"), ("True", "InvalidSpec"));
    assert_eq!(condition(&job, "Ready"), ("True", "Running"));
    let again = step(&mut job, &seen(master(1, JobState::Running), 20));
    assert!(again.events.is_empty());
}

// ---- savepoint upgrades ----------------------------------------------------------------

#[test]
fn a_savepoint_upgrade_stops_with_a_savepoint_then_runs_the_new_spec_from_it() {
    let mut job = changed(with_args("5000"));
    let d = step(&mut job, &seen(master(1, JobState::Running), 10));
    assert_eq!(
        stop_action(&d),
        Some(&Action::StopWithSavepoint {
            job_id: "job-1".into(),
            directory: SAVEPOINTS.into()
        })
    );
    assert_eq!(reasons(&d), ["UpgradeStarted"]);
    let s = status(&job);
    assert_eq!(s.phase, Some(Phase::Upgrading));
    let u = s.upgrade.clone().expect("an upgrade");
    assert_eq!(
        (u.kind, u.step, u.target_generation),
        (ChangeKind::Upgrade, UpgradeStep::Savepointing, Some(2))
    );
    assert_eq!(
        condition(&job, "Progressing"),
        ("True", "UpgradeSavepointing")
    );
    // The request id is recorded after the POST.
    let mut st = status(&job).clone();
    record(
        &mut st,
        stop_action(&d).expect("stop"),
        Ok("7".into()),
        t(10),
    );
    job.status = Some(st);
    assert_eq!(
        status(&job)
            .upgrade
            .as_ref()
            .and_then(|u| u.request_id.as_deref()),
        Some("7")
    );

    let mut waiting = seen(master(1, JobState::Running), 11);
    waiting.request = Some(RequestState::InProgress);
    let d = step(&mut job, &waiting);
    assert_eq!(stop_action(&d), None);
    assert_eq!(status(&job).deployed.as_ref().map(|r| r.run), Some(1));

    let mut done = seen(master(1, JobState::Finished), 12);
    done.request = Some(RequestState::Completed {
        location: format!("{SAVEPOINTS}/chk-4"),
    });
    let d = step(&mut job, &done);
    assert_eq!(reasons(&d), ["SavepointTaken"]);
    let s = status(&job);
    let run = s.deployed.clone().expect("run 2");
    assert_eq!((run.run, run.generation), (2, 2));
    assert_eq!(run.from_savepoint, Some(format!("{SAVEPOINTS}/chk-4")));
    assert!(run.spec.contains("5000"));
    assert_eq!(
        s.upgrade.as_ref().map(|u| u.step),
        Some(UpgradeStep::Deploying)
    );
    let last = s
        .savepoints
        .as_ref()
        .and_then(|h| h.last.clone())
        .expect("recorded");
    assert_eq!(
        (last.reason.as_str(), last.time.as_str()),
        ("Upgrade", "2027-01-15T08:00:12Z")
    );
    assert!(d.actions.contains(&Action::ApplyChildren));

    let d = step(&mut job, &seen(master(2, JobState::Running), 20));
    assert_eq!(reasons(&d), ["Upgraded"]);
    assert!(
        d.events[0].note.contains("upgraded in 10.0 s"),
        "{}",
        d.events[0].note
    );
    let s = status(&job);
    assert_eq!(s.phase, Some(Phase::Running));
    assert_eq!(s.upgrade, None);
    assert!(
        s.last_stable_spec
            .as_deref()
            .is_some_and(|j| j.contains("5000"))
    );
    assert_eq!(
        s.job.as_ref().and_then(|j| j.run_id.as_deref()),
        Some("0d5e2c1a-2")
    );
}

#[test]
fn an_operator_that_died_before_recording_the_stop_reads_the_savepoint_from_the_stopped_job() {
    let mut job = changed(with_args("5000"));
    step(&mut job, &seen(master(1, JobState::Running), 10));
    // No request id in status; the master shows the job stopped with its savepoint.
    let mut stopped = master(1, JobState::Finished);
    if let MasterState::Job(j) = &mut stopped {
        j.savepoint = Some(format!("{SAVEPOINTS}/chk-4"));
    }
    let d = step(&mut job, &seen(stopped, 15));
    assert_eq!(stop_action(&d), None);
    let run = status(&job).deployed.clone().expect("run 2");
    assert_eq!(run.from_savepoint, Some(format!("{SAVEPOINTS}/chk-4")));
}

#[test]
fn a_stop_the_master_forgot_is_sent_again_while_the_job_runs() {
    let mut job = changed(with_args("5000"));
    let d = step(&mut job, &seen(master(1, JobState::Running), 10));
    let mut st = status(&job).clone();
    record(
        &mut st,
        stop_action(&d).expect("stop"),
        Ok("7".into()),
        t(10),
    );
    job.status = Some(st);
    let mut restarted = seen(master(1, JobState::Running), 30);
    restarted.request = Some(RequestState::Unknown);
    let d = step(&mut job, &restarted);
    assert!(stop_action(&d).is_some());
}

#[test]
fn a_failed_savepoint_is_retried_after_a_pause_and_the_job_keeps_running_meanwhile() {
    let mut job = changed(with_args("5000"));
    let d = step(&mut job, &seen(master(1, JobState::Running), 10));
    let mut st = status(&job).clone();
    record(
        &mut st,
        stop_action(&d).expect("stop"),
        Ok("7".into()),
        t(10),
    );
    job.status = Some(st);
    let mut failed = seen(master(1, JobState::Running), 12);
    failed.request = Some(RequestState::Failed {
        failure: "storage unreachable".into(),
    });
    let d = step(&mut job, &failed);
    assert_eq!(reasons(&d), ["SavepointFailed"]);
    assert_eq!(stop_action(&d), None);
    assert_eq!(condition(&job, "Degraded"), ("True", "SavepointFailed"));
    let d = step(&mut job, &seen(master(1, JobState::Running), 20));
    assert_eq!(stop_action(&d), None);
    let d = step(&mut job, &seen(master(1, JobState::Running), 43));
    assert!(stop_action(&d).is_some());
}

#[test]
fn a_savepoint_upgrade_of_a_job_that_does_not_run_falls_back_to_the_latest_checkpoint() {
    let mut job = changed(with_args("5000"));
    let d = step(&mut job, &seen(master(1, JobState::Failed), 10));
    assert_eq!(stop_action(&d), None);
    let run = status(&job).deployed.clone().expect("run 2");
    assert_eq!(
        (run.run, run.from_savepoint, run.from_latest_checkpoint),
        (2, None, true)
    );
    assert_eq!(reasons(&d), ["JobFailed", "UpgradeStarted"]);
    assert!(d.events[1].note.contains("last-state fallback"));
}

#[test]
fn a_master_gone_during_savepointing_is_waited_for_then_the_change_falls_back() {
    let mut job = changed(with_args("5000"));
    step(&mut job, &seen(master(1, JobState::Running), 10));
    step(&mut job, &unreachable(30));
    assert_eq!(
        status(&job).upgrade.as_ref().map(|u| u.step),
        Some(UpgradeStep::Savepointing)
    );
    let d = step(&mut job, &unreachable(71));
    assert_eq!(reasons(&d), ["SavepointSkipped"]);
    assert_eq!(
        status(&job)
            .deployed
            .as_ref()
            .map(|r| r.from_latest_checkpoint),
        Some(true)
    );
}

// ---- kinds of change -----------------------------------------------------------------

#[test]
fn a_parallelism_change_is_a_rescale_through_a_savepoint() {
    let mut spec = base();
    spec["parallelism"] = json!(4);
    let mut job = changed(spec);
    let d = step(&mut job, &seen(master(1, JobState::Running), 10));
    assert!(stop_action(&d).is_some());
    assert!(d.events[0].note.starts_with("rescaling to parallelism 4"));
    assert_eq!(
        condition(&job, "Progressing"),
        ("True", "RescaleSavepointing")
    );
    assert_eq!(
        status(&job).parallelism,
        Some(2),
        "the running parallelism until the new run"
    );
}

#[test]
fn a_restart_nonce_restarts_and_operator_only_fields_restart_nothing() {
    let mut spec = base();
    spec["restartNonce"] = json!(1);
    let mut job = changed(spec);
    step(&mut job, &seen(master(1, JobState::Running), 10));
    assert_eq!(
        status(&job).upgrade.as_ref().map(|u| u.kind),
        Some(ChangeKind::Restart)
    );

    let mut spec = base();
    spec["upgradeMode"] = json!("LastState");
    spec["savepoints"] = json!({"periodic": "1h", "keep": 3});
    spec["rollback"] = json!({"deadline": "1m"});
    spec["savepointOnDeletion"] = json!(true);
    let mut job = changed(spec);
    let d = step(&mut job, &seen(master(1, JobState::Running), 10));
    assert_eq!(d.actions, [Action::ApplyChildren]);
    assert_eq!(status(&job).upgrade, None);
    assert_eq!(status(&job).observed_generation, Some(2));
}

#[test]
fn last_state_and_stateless_upgrades_redeploy_without_a_savepoint() {
    let mut spec = with_args("5000");
    spec["upgradeMode"] = json!("LastState");
    let mut job = changed(spec);
    let d = step(&mut job, &seen(master(1, JobState::Running), 10));
    assert_eq!(stop_action(&d), None);
    let run = status(&job).deployed.clone().expect("run 2");
    assert_eq!(
        (run.run, run.from_latest_checkpoint, run.from_savepoint),
        (2, true, None)
    );

    let mut spec = with_args("5000");
    spec["upgradeMode"] = json!("Stateless");
    let mut job = changed(spec);
    step(&mut job, &seen(master(1, JobState::Running), 10));
    let run = status(&job).deployed.clone().expect("run 2");
    assert_eq!(
        (run.run, run.from_latest_checkpoint, run.from_savepoint),
        (2, false, None)
    );
}

// ---- rollback ------------------------------------------------------------------------

/// `job` (changed at generation 2, run 1 running) stopped with a savepoint at t=12: the
/// stop asked at t=10 as request 7, completed at `chk-4`, run 2 deployed from it.
fn stopped_with_savepoint(mut job: StreamJob) -> StreamJob {
    let d = step(&mut job, &seen(master(1, JobState::Running), 10));
    let mut st = status(&job).clone();
    record(
        &mut st,
        stop_action(&d).expect("stop"),
        Ok("7".into()),
        t(10),
    );
    job.status = Some(st);
    let mut done = seen(master(1, JobState::Finished), 12);
    done.request = Some(RequestState::Completed {
        location: format!("{SAVEPOINTS}/chk-4"),
    });
    step(&mut job, &done);
    job
}

/// `changed(with_args("bad"))` stopped with a savepoint, run 2 deployed at t=12.
fn upgraded_to_bad() -> StreamJob {
    stopped_with_savepoint(changed(with_args("bad")))
}

#[test]
fn a_new_run_that_fails_is_rolled_back_to_the_last_stable_spec_from_the_upgrade_savepoint() {
    let mut job = upgraded_to_bad();
    let mut failed = master(2, JobState::Failed);
    if let MasterState::Job(j) = &mut failed {
        j.failure = Some("no such argument 'rate=bad'".into());
    }
    let d = step(&mut job, &seen(failed, 20));
    assert_eq!(reasons(&d), ["RollingBack"]);
    assert!(d.events[0].note.contains("no such argument"));
    let s = status(&job);
    assert_eq!(s.phase, Some(Phase::RollingBack));
    assert_eq!(s.rolled_back_generation, Some(2));
    let run = s.deployed.clone().expect("run 3");
    assert_eq!(run.run, 3);
    assert!(
        run.spec.contains("\"1000\""),
        "the stable spec: {}",
        run.spec
    );
    assert_eq!(run.from_savepoint, Some(format!("{SAVEPOINTS}/chk-4")));
    assert_eq!(condition(&job, "Progressing"), ("True", "RollingBack"));

    let d = step(&mut job, &seen(master(3, JobState::Running), 25));
    assert_eq!(reasons(&d), ["RolledBack"]);
    assert!(d.events[0].warning);
    assert_eq!(status(&job).phase, Some(Phase::Running));
    assert_eq!(condition(&job, "Degraded"), ("True", "RolledBack"));
    assert_eq!(condition(&job, "Ready"), ("True", "Running"));
    // The rolled-back generation is not tried again...
    let d = step(&mut job, &seen(master(3, JobState::Running), 60));
    assert_eq!(d.actions, [Action::ApplyChildren]);
    // ...the next change is.
    job.spec = serde_json::from_value(with_args("2000")).expect("a spec");
    job.metadata.generation = Some(3);
    let d = step(&mut job, &seen(master(3, JobState::Running), 70));
    assert!(stop_action(&d).is_some());
    assert_eq!(condition(&job, "Degraded"), ("False", "AsExpected"));
}

#[test]
fn a_new_run_that_checkpointed_before_failing_is_rolled_back_from_its_own_checkpoint() {
    let mut job = upgraded_to_bad();
    let mut failed = master(2, JobState::Failed);
    if let MasterState::Job(j) = &mut failed {
        j.last_checkpoint = Some("s3://bucket/strom/payments/fraud/fraud-detection/chk-9".into());
    }
    step(&mut job, &seen(failed, 20));
    let run = status(&job).deployed.clone().expect("run 3");
    assert_eq!(
        run.from_savepoint.as_deref(),
        Some("s3://bucket/strom/payments/fraud/fraud-detection/chk-9")
    );
}

#[test]
fn a_new_run_that_never_runs_is_rolled_back_at_the_deadline_even_after_an_operator_restart() {
    let mut job = upgraded_to_bad();
    step(&mut job, &unreachable(100));
    assert_eq!(status(&job).deployed.as_ref().map(|r| r.run), Some(2));
    // 5 minutes after Deploying started (t=12).
    let d = step(&mut job, &unreachable(313));
    assert_eq!(reasons(&d), ["RollingBack"]);
    assert!(
        d.events[0]
            .note
            .contains("did not reach Running within 5.0 min")
            || d.events[0].note.contains("within 5 min"),
        "{}",
        d.events[0].note
    );
}

fn pod(name: &str, container_status: Value) -> k8s_openapi::api::core::v1::Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "status": {"containerStatuses": [container_status]},
    }))
    .expect("a pod")
}

#[test]
fn pods_that_cannot_pull_or_keep_crashing_are_troubles_and_healthy_ones_are_not() {
    let crashing = pod(
        "fraud-worker-1",
        json!({"name": "strom", "image": "strom:2", "imageID": "", "ready": false,
               "restartCount": 3,
               "state": {"waiting": {"reason": "CrashLoopBackOff"}},
               "lastState": {"terminated": {"exitCode": 1, "message": "--arg rate: not a number"}}}),
    );
    let trouble = PodTrouble::of(&crashing).expect("a crash loop");
    assert_eq!(trouble.condition_reason(), "PodsCrashLooping");
    assert_eq!(
        trouble.to_string(),
        "pod fraud-worker-1: CrashLoopBackOff after 3 restarts (last exit code 1: --arg rate: not a number)"
    );
    let pulling = pod(
        "fraud-master-1",
        json!({"name": "strom", "image": "strom:typo", "imageID": "", "ready": false,
               "restartCount": 0,
               "state": {"waiting": {"reason": "ErrImagePull", "message": "strom:typo: not found"}}}),
    );
    let trouble = PodTrouble::of(&pulling).expect("a pull error");
    assert_eq!(trouble.condition_reason(), "ImagePullFailed");
    assert_eq!(
        trouble.to_string(),
        "pod fraud-master-1: ErrImagePull (strom:typo: not found)"
    );
    let once = pod(
        "fraud-worker-2",
        json!({"name": "strom", "image": "strom:2", "imageID": "", "ready": false,
               "restartCount": 1, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}),
    );
    assert_eq!(PodTrouble::of(&once), None);
    let running = pod(
        "fraud-worker-3",
        json!({"name": "strom", "image": "strom:2", "imageID": "", "ready": true,
               "restartCount": 5, "state": {"running": {}}}),
    );
    assert_eq!(PodTrouble::of(&running), None);
}

#[test]
fn crash_looping_pods_make_the_job_degraded_and_say_why_without_stopping_it() {
    let mut job = running_job();
    let mut seen = seen(master(1, JobState::Running), 20);
    seen.pods = vec![PodTrouble {
        pod: "fraud-worker-7c9d-x2".into(),
        reason: "CrashLoopBackOff".into(),
        restarts: 4,
        detail: Some("last exit code 137".into()),
    }];
    let d = step(&mut job, &seen);
    // Reported, not acted on: the children are kept as they are, nothing stops.
    assert_eq!(d.actions, [Action::ApplyChildren]);
    assert_eq!(status(&job).deployed.as_ref().map(|r| r.run), Some(1));
    assert_eq!(condition(&job, "Degraded"), ("True", "PodsCrashLooping"));
    let message = status(&job)
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert_eq!(
        message,
        "pod fraud-worker-7c9d-x2: CrashLoopBackOff after 4 restarts (last exit code 137)"
    );
    assert_eq!(condition(&job, "Ready"), ("True", "Running"));
    // Once the pods run again, so does the condition.
    step(&mut job, &seen_running(25));
    assert_eq!(condition(&job, "Degraded"), ("False", "AsExpected"));
}

fn seen_running(at: i64) -> Observed {
    seen(master(1, JobState::Running), at)
}

#[test]
fn without_rollback_a_failed_upgrade_leaves_the_job_failed() {
    let mut spec = with_args("bad");
    spec["rollback"] = json!({"enabled": false});
    let mut job = stopped_with_savepoint(changed(spec));
    let d = step(&mut job, &seen(master(2, JobState::Failed), 20));
    assert_eq!(reasons(&d), ["RunFailed"]);
    assert_eq!(status(&job).phase, Some(Phase::Failed));
    assert_eq!(condition(&job, "Degraded"), ("True", "JobFailed"));
}

// ---- suspend and resume --------------------------------------------------------------

#[test]
fn suspend_takes_a_savepoint_and_scales_to_zero_and_resume_starts_from_it() {
    let mut spec = base();
    spec["state"] = json!("Suspended");
    let mut job = changed(spec);
    let d = step(&mut job, &seen(master(1, JobState::Running), 10));
    assert!(stop_action(&d).is_some());
    assert_eq!(status(&job).phase, Some(Phase::Suspending));
    let mut st = status(&job).clone();
    record(
        &mut st,
        stop_action(&d).expect("stop"),
        Ok("3".into()),
        t(10),
    );
    job.status = Some(st);
    let mut done = seen(master(1, JobState::Finished), 12);
    done.request = Some(RequestState::Completed {
        location: format!("{SAVEPOINTS}/chk-5"),
    });
    let d = step(&mut job, &done);
    assert_eq!(reasons(&d), ["SavepointTaken", "Suspended"]);
    assert!(d.actions.contains(&Action::ApplyChildren));
    let s = status(&job);
    assert_eq!(s.phase, Some(Phase::Suspended));
    assert_eq!(s.parallelism, Some(0));
    let run = s.deployed.clone().expect("run 1");
    assert!(run.suspended);
    assert_eq!(run.suspend_savepoint, Some(format!("{SAVEPOINTS}/chk-5")));
    assert_eq!(condition(&job, "Ready"), ("False", "Suspended"));
    assert_eq!(
        s.job.as_ref().and_then(|j| j.state.as_deref()),
        Some("Suspended")
    );
    // Stays suspended.
    let d = step(&mut job, &unreachable(100));
    assert!(d.events.is_empty());

    job.spec.state = DesiredState::Running;
    job.metadata.generation = Some(3);
    let d = step(&mut job, &unreachable(200));
    assert_eq!(reasons(&d), ["Resuming"]);
    let run = status(&job).deployed.clone().expect("run 2");
    assert_eq!((run.run, run.suspended), (2, false));
    assert_eq!(run.from_savepoint, Some(format!("{SAVEPOINTS}/chk-5")));
    let d = step(&mut job, &seen(master(2, JobState::Running), 205));
    assert_eq!(reasons(&d), ["Resumed"]);
    assert_eq!(status(&job).phase, Some(Phase::Running));
}

#[test]
fn a_last_state_suspend_scales_to_zero_at_once_and_resumes_from_the_latest_checkpoint() {
    let mut spec = base();
    spec["state"] = json!("Suspended");
    spec["upgradeMode"] = json!("LastState");
    let mut job = changed(spec);
    let d = step(&mut job, &seen(master(1, JobState::Running), 10));
    assert_eq!(stop_action(&d), None);
    assert_eq!(status(&job).phase, Some(Phase::Suspended));
    job.spec.state = DesiredState::Running;
    job.metadata.generation = Some(3);
    step(&mut job, &unreachable(20));
    let run = status(&job).deployed.clone().expect("run 2");
    assert!(run.from_latest_checkpoint);
}

// ---- savepoints on request and on schedule ---------------------------------------------

#[test]
fn a_savepoint_nonce_asks_for_one_savepoint_and_the_history_keeps_the_newest() {
    let mut spec = base();
    spec["savepoints"] = json!({"keep": 1});
    spec["savepointNonce"] = json!(1);
    let mut job = changed(spec);
    for (nonce, at) in [(1, 10), (2, 30)] {
        job.spec.savepoint_nonce = Some(nonce);
        let d = step(&mut job, &seen(master(1, JobState::Running), at));
        let trigger = d
            .actions
            .iter()
            .find(|a| matches!(a, Action::TriggerSavepoint { .. }))
            .expect("a savepoint is asked for")
            .clone();
        assert_eq!(
            trigger,
            Action::TriggerSavepoint {
                job_id: "job-1".into(),
                directory: SAVEPOINTS.into(),
                reason: "Manual".into(),
                nonce: Some(nonce)
            }
        );
        let mut st = status(&job).clone();
        record(&mut st, &trigger, Ok(format!("{nonce}")), t(at));
        job.status = Some(st);
        let mut done = seen(master(1, JobState::Running), at + 2);
        done.request = Some(RequestState::Completed {
            location: format!("{SAVEPOINTS}/sp-{nonce}"),
        });
        let d = step(&mut job, &done);
        assert_eq!(reasons(&d), ["SavepointTaken"]);
        if nonce == 2 {
            assert!(d.actions.contains(&Action::DisposeSavepoint {
                location: format!("{SAVEPOINTS}/sp-1")
            }));
        }
        // Answered: not asked again.
        let d = step(&mut job, &seen(master(1, JobState::Running), at + 3));
        assert!(
            !d.actions
                .iter()
                .any(|a| matches!(a, Action::TriggerSavepoint { .. }))
        );
    }
    let history = status(&job).savepoints.clone().expect("history");
    assert_eq!(history.history.len(), 1);
    assert_eq!(history.last.map(|l| l.reason), Some("Manual".into()));
}

#[test]
fn periodic_savepoints_are_asked_for_when_due_and_waited_for_otherwise() {
    let mut spec = base();
    spec["savepoints"] = json!({"periodic": "60s"});
    let mut job = changed(spec);
    // Run 1 was deployed at t=0.
    let d = step(&mut job, &seen(master(1, JobState::Running), 30));
    assert!(
        !d.actions
            .iter()
            .any(|a| matches!(a, Action::TriggerSavepoint { .. }))
    );
    assert_eq!(d.requeue_after, Duration::from_secs(30));
    let d = step(&mut job, &seen(master(1, JobState::Running), 61));
    assert!(
        d.actions
            .iter()
            .any(|a| matches!(a, Action::TriggerSavepoint { reason, .. } if reason == "Periodic"))
    );
    // An attempt that could not even be sent waits for the next period.
    let trigger = d
        .actions
        .iter()
        .find(|a| matches!(a, Action::TriggerSavepoint { .. }))
        .cloned()
        .expect("trigger");
    let mut st = status(&job).clone();
    record(&mut st, &trigger, Err("job busy".into()), t(61));
    job.status = Some(st);
    let d = step(&mut job, &seen(master(1, JobState::Running), 70));
    assert!(
        !d.actions
            .iter()
            .any(|a| matches!(a, Action::TriggerSavepoint { .. }))
    );
}

// ---- deletion ------------------------------------------------------------------------

#[test]
fn deletion_takes_a_final_savepoint_when_asked_then_cleans_up_and_lets_go() {
    let mut spec = base();
    spec["savepointOnDeletion"] = json!(true);
    let mut job = changed(spec);
    step(&mut job, &seen(master(1, JobState::Running), 10));
    job.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(t(20)));
    let d = step(&mut job, &seen(master(1, JobState::Running), 20));
    assert!(stop_action(&d).is_some());
    assert!(!d.actions.contains(&Action::RemoveFinalizer));
    assert_eq!(status(&job).phase, Some(Phase::Deleting));
    // Operator restarted; the stop went through before it died.
    let mut stopped = master(1, JobState::Finished);
    if let MasterState::Job(j) = &mut stopped {
        j.savepoint = Some(format!("{SAVEPOINTS}/final"));
    }
    let d = step(&mut job, &seen(stopped, 25));
    assert_eq!(d.actions, [Action::DeleteHaData, Action::RemoveFinalizer]);
    assert_eq!(
        status(&job)
            .savepoints
            .as_ref()
            .and_then(|s| s.last.clone())
            .map(|l| l.reason),
        Some("Deletion".into())
    );
}

#[test]
fn deletion_without_a_final_savepoint_cleans_up_at_once() {
    let mut job = running_job();
    job.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(t(20)));
    let d = step(&mut job, &seen(master(1, JobState::Running), 20));
    assert_eq!(d.actions, [Action::DeleteHaData, Action::RemoveFinalizer]);
}

#[test]
fn deletion_waits_for_the_masters_to_go_before_deleting_the_ha_data() {
    let mut job = running_job();
    job.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(t(20)));
    let mut masters_left = seen(master(1, JobState::Running), 20);
    masters_left.master_pods = 2;
    let d = step(&mut job, &masters_left);
    assert_eq!(d.actions, [Action::DeleteMasters]);
    assert!(d.requeue_after <= std::time::Duration::from_secs(1));
    assert_eq!(status(&job).phase, Some(Phase::Deleting));
    // One is still terminating.
    masters_left.master_pods = 1;
    let d = step(&mut job, &masters_left);
    assert_eq!(d.actions, [Action::DeleteMasters]);
    let d = step(&mut job, &unreachable(23));
    assert_eq!(d.actions, [Action::DeleteHaData, Action::RemoveFinalizer]);
}

#[test]
fn a_failed_job_is_degraded_and_reported_once() {
    let mut job = running_job();
    let mut failed = master(1, JobState::Failed);
    if let MasterState::Job(j) = &mut failed {
        j.failure = Some("division by zero".into());
    }
    let d = step(&mut job, &seen(failed.clone(), 30));
    assert_eq!(reasons(&d), ["JobFailed"]);
    assert_eq!(status(&job).phase, Some(Phase::Failed));
    assert_eq!(condition(&job, "Degraded"), ("True", "JobFailed"));
    let d = step(&mut job, &seen(failed, 40));
    assert!(d.events.is_empty());
}

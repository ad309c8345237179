//! The journeys themselves: what a platform team does with a StreamJob and what it must
//! see happen, each ending with the exact-output check.

use super::output::exact_counts;
use super::{Cluster, Driver, condition, condition_message, deployed};
use anyhow::{Context as _, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;
use std::time::{Duration, Instant};
use strom_operator::crd::Phase;

const SECOND: Duration = Duration::from_secs(1);

/// Create → Running; upgrade (a job argument) through a savepoint; `kubectl scale` 2 → 4;
/// suspend (nothing runs) and resume; delete (children and HA data gone). The output
/// stays exact throughout.
pub async fn lifecycle<C: Cluster + Send + Sync>(cluster: &mut C) -> anyhow::Result<()> {
    let name = "lifecycle";
    let d = Driver { cluster };
    let dir = d.cluster.job_dir(name);

    // Create → Running.
    let t = Instant::now();
    d.apply(name, d.word_count(&dir, 200, 2)).await?;
    d.wait_ready_run(name, 1, 60 * SECOND).await?;
    eprintln!(
        "{name}: created → Running in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    tokio::time::sleep(2 * SECOND).await;

    // Upgrade (a job argument changes) through a savepoint.
    let t = Instant::now();
    d.apply(name, d.word_count(&dir, 300, 2)).await?;
    let job = d.wait_ready_run(name, 2, 60 * SECOND).await?;
    eprintln!(
        "{name}: upgrade applied → new run Running in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let s = job.status.clone().unwrap_or_default();
    let from = deployed(&job)
        .and_then(|d| d.from_savepoint)
        .context("the upgraded run did not start from a savepoint")?;
    let last = s
        .savepoints
        .as_ref()
        .and_then(|h| h.last.as_ref())
        .map(|l| l.location.clone());
    ensure!(
        last.as_ref() == Some(&from),
        "started from {from}, the last savepoint is {last:?}"
    );
    ensure_degraded(&job, "AsExpected")?;
    tokio::time::sleep(2 * SECOND).await;
    ensure!(exact_counts(&dir.here)? > 0, "no output after the upgrade");

    // Rescale 2 → 4 as `kubectl scale sj lifecycle --replicas 4` does.
    let scale = json!({"spec": {"replicas": 4}});
    d.jobs()
        .patch_scale(name, &PatchParams::default(), &Patch::Merge(&scale))
        .await
        .context("scaling")?;
    let job = d.wait_ready_run(name, 3, 60 * SECOND).await?;
    ensure!(
        job.status.as_ref().and_then(|s| s.parallelism) == Some(4),
        "status.parallelism is not 4"
    );
    let deployments: Api<Deployment> = d.api();
    let workers = deployments.get(&format!("{name}-worker")).await?;
    ensure!(workers.spec.replicas == Some(4), "not 4 workers");
    tokio::time::sleep(2 * SECOND).await;
    let before_suspend = exact_counts(&dir.here)?;

    // Suspend: a savepoint, no pods; resume from it.
    let mut spec = d.word_count(&dir, 300, 4);
    spec["state"] = json!("Suspended");
    d.apply(name, spec).await?;
    d.wait(name, "Suspended", 60 * SECOND, |j| {
        j.status.as_ref().and_then(|s| s.phase) == Some(Phase::Suspended)
    })
    .await?;
    let suspended = exact_counts(&dir.here)?;
    ensure!(suspended >= before_suspend, "output went away");
    tokio::time::sleep(2 * SECOND).await;
    ensure!(
        exact_counts(&dir.here)? == suspended,
        "output grew while suspended"
    );
    d.apply(name, d.word_count(&dir, 300, 4)).await?;
    d.wait_ready_run(name, 4, 60 * SECOND).await?;
    d.eventually("output after resuming", 30 * SECOND, name, || async {
        Ok(exact_counts(&dir.here)? > suspended)
    })
    .await?;

    // Delete: the children and the HA data go.
    d.jobs()
        .delete(name, &DeleteParams::default())
        .await
        .context("deleting")?;
    let maps: Api<ConfigMap> = d.api();
    d.eventually(
        "the StreamJob and its children gone",
        30 * SECOND,
        name,
        || async {
            Ok(d.jobs().get_opt(name).await?.is_none()
                && deployments
                    .get_opt(&format!("{name}-worker"))
                    .await?
                    .is_none()
                && deployments
                    .get_opt(&format!("{name}-master"))
                    .await?
                    .is_none()
                && maps.get_opt(&format!("{name}-config")).await?.is_none())
        },
    )
    .await?;
    ensure!(
        maps.get_opt(&format!("{name}-ha")).await?.is_none(),
        "the HA ConfigMap outlived its StreamJob"
    );
    Ok(())
}

/// A spec the API server refuses; a spec only the operator can judge (reported, job
/// untouched); a bad image (reported as such, rolled back at the deadline); the leading operator killed
/// mid-upgrade (the other finishes it). The output stays exact throughout.
pub async fn failures<C: Cluster + Send + Sync>(cluster: &mut C) -> anyhow::Result<()> {
    let name = "failures";
    let d = Driver { cluster };
    let dir = d.cluster.job_dir(name);
    let mut spec = d.word_count(&dir, 200, 2);
    spec["rollback"] = json!({"deadline": format!("{}s", (15.0 * d.cluster.patience()).ceil())});
    d.apply(name, spec.clone()).await?;
    d.wait_ready_run(name, 1, 60 * SECOND).await?;

    // A spec the API server's CEL rules refuse never reaches the operator.
    let mut refused = spec.clone();
    refused["maxParallelism"] = json!(1);
    let e = d
        .apply(name, refused)
        .await
        .err()
        .context("maxParallelism 1 < parallelism 2 was accepted")?;
    ensure!(
        e.to_string()
            .contains("maxParallelism must be at least parallelism"),
        "refused for another reason: {e}"
    );

    // A spec only the operator can judge is reported; the job runs on.
    let mut local = spec.clone();
    local["checkpoints"]["storage"] = json!("/tmp/not-shared");
    d.apply(name, local).await?;
    let job = d
        .wait(name, "Degraded InvalidSpec", 20 * SECOND, |j| {
            condition(j, "Degraded") == Some(("True".into(), "InvalidSpec".into()))
        })
        .await?;
    let run = deployed(&job).map(|d| d.run);
    ensure!(run == Some(1), "an invalid spec redeployed: run {run:?}");
    ensure!(
        condition(&job, "Ready").is_some_and(|c| c.0 == "True"),
        "an invalid spec made the job not Ready"
    );

    // A bad image never runs: rolled back from the upgrade's savepoint at the deadline.
    let mut bad = spec.clone();
    bad["image"] = json!("strom:typo");
    d.apply(name, bad).await?;
    // Until then the StreamJob says why the new run does not start.
    let job = d
        .wait(name, "Degraded ImagePullFailed", 30 * SECOND, |j| {
            condition(j, "Degraded") == Some(("True".into(), "ImagePullFailed".into()))
        })
        .await?;
    let message = condition_message(&job, "Degraded");
    ensure!(
        message.contains(&format!("pod {name}-")) && message.contains("ImagePull"),
        "Degraded says: {message}"
    );
    let job = d
        .wait(name, "rolled back", 90 * SECOND, |j| {
            condition(j, "Degraded") == Some(("True".into(), "RolledBack".into()))
                && condition(j, "Ready").is_some_and(|c| c.0 == "True")
        })
        .await?;
    let run = deployed(&job).context("no run deployed")?;
    ensure!(
        run.run == 3,
        "run {} deployed; run 2 was the bad image, run 3 the rollback",
        run.run
    );
    ensure!(
        run.spec.contains(d.cluster.image()),
        "the rollback runs {}",
        run.spec
    );
    tokio::time::sleep(2 * SECOND).await;
    exact_counts(&dir.here)?;

    // The leading operator is killed mid-upgrade; another replica finishes it.
    let mut good = spec.clone();
    good["job"]["args"]["rate"] = json!("300");
    d.apply(name, good).await?;
    d.wait(name, "upgrading", 20 * SECOND, |j| {
        j.status.as_ref().and_then(|s| s.upgrade.as_ref()).is_some()
    })
    .await?;
    let (lease_ns, lease) = d.cluster.operator_lease();
    let leader = d.lease_holder(&lease_ns, &lease).await?;
    d.cluster.kill_operator(&leader).await?;
    let job = d.wait_ready_run(name, 4, 90 * SECOND).await?;
    ensure_degraded(&job, "AsExpected")?;
    let now = d.lease_holder(&lease_ns, &lease).await?;
    ensure!(now != leader, "{leader} still leads after it was killed");
    tokio::time::sleep(2 * SECOND).await;
    exact_counts(&dir.here)?;
    d.jobs().delete(name, &DeleteParams::default()).await?;
    Ok(())
}

/// Two master replicas; the leader's pod is lost; a standby leads once the Lease runs
/// out, the workers reattach, and the same run resumes from its newest checkpoint.
pub async fn failover<C: Cluster + Send + Sync>(cluster: &mut C) -> anyhow::Result<()> {
    let name = "failover";
    let d = Driver { cluster };
    let dir = d.cluster.job_dir(name);
    let mut spec = d.word_count(&dir, 200, 2);
    spec["master"] = json!({"replicas": 2});
    d.apply(name, spec).await?;
    d.wait_ready_run(name, 1, 90 * SECOND).await?;
    tokio::time::sleep(2 * SECOND).await;
    let ns = d.cluster.namespace().to_string();
    let lease = format!("{name}-master");
    let leader = d.lease_holder(&ns, &lease).await?;
    let masters = d.pods(&lease).await?;
    ensure!(masters.len() == 2, "masters running: {masters:?}");
    ensure!(
        masters.contains(&leader),
        "the Lease holder {leader} is none of {masters:?}"
    );
    let before = exact_counts(&dir.here)?;

    // The leader's pod is lost (no graceful stop); a standby — the other master, or the
    // pod its Deployment starts in place of the lost one — leads once the Lease runs out.
    d.cluster.lose_pod(&leader).await?;
    let start = Instant::now();
    d.eventually("a new master leader", 40 * SECOND, name, || async {
        Ok(d.lease_holder(&ns, &lease).await.is_ok_and(|h| h != leader))
    })
    .await?;
    eprintln!(
        "{name}: a standby master leads {:.1} s after the leader was lost",
        start.elapsed().as_secs_f64()
    );

    // The same run, resumed from its newest checkpoint: more output, still exact.
    let job = d.wait_ready_run(name, 1, 60 * SECOND).await?;
    let maps: Api<ConfigMap> = d.api();
    let ha = maps
        .get(&format!("{name}-ha"))
        .await
        .context("the HA ConfigMap")?
        .data
        .unwrap_or_default();
    ensure!(
        ha.get("leader") != Some(&leader),
        "the HA ConfigMap still names the lost leader"
    );
    ensure!(
        ha.get("latestCheckpoint").is_some_and(|c| !c.is_empty()),
        "no latest checkpoint in the HA ConfigMap: {ha:?}"
    );
    ensure_degraded(&job, "AsExpected")?;
    d.eventually("output after the failover", 30 * SECOND, name, || async {
        Ok(exact_counts(&dir.here)? > before)
    })
    .await?;
    d.jobs().delete(name, &DeleteParams::default()).await?;
    Ok(())
}

/// The other ways a spec reaches a job: a manual savepoint (`savepointNonce`), a restart
/// (`restartNonce`), a LastState upgrade (from the latest checkpoint, no savepoint), a
/// Stateless one (a fresh start), periodic savepoints kept to `keep` with the older ones
/// disposed of on disk, and a final savepoint on deletion (`savepointOnDeletion`).
pub async fn modes<C: Cluster + Send + Sync>(cluster: &mut C) -> anyhow::Result<()> {
    let name = "modes";
    let d = Driver { cluster };
    let dir = d.cluster.job_dir(name);
    let mut spec = d.word_count(&dir, 200, 2);
    let savepoints = dir.in_pods.join("savepoints").display().to_string();
    spec["savepoints"] = json!({"storage": format!("file://{savepoints}"), "keep": 2});
    spec["savepointOnDeletion"] = json!(true);
    d.apply(name, spec.clone()).await?;
    d.wait_ready_run(name, 1, 60 * SECOND).await?;

    // A manual savepoint: the job runs on in the same run.
    spec["savepointNonce"] = json!(1);
    d.apply(name, spec.clone()).await?;
    let job = d
        .wait(name, "a manual savepoint", 30 * SECOND, |j| {
            j.status
                .as_ref()
                .and_then(|s| s.savepoints.as_ref())
                .is_some_and(|h| {
                    h.handled_nonce == Some(1) && h.history.iter().any(|r| r.reason == "Manual")
                })
        })
        .await?;
    let manual = savepoint_history(&job);
    ensure!(manual.len() == 1, "savepoints: {manual:?}");
    ensure!(
        on_disk(&dir, &manual[0]),
        "the manual savepoint {} is not on disk",
        manual[0]
    );
    let run = deployed(&job).map(|d| d.run);
    ensure!(run == Some(1), "a manual savepoint redeployed: run {run:?}");

    // restartNonce: a new run from a savepoint, the same job.
    spec["restartNonce"] = json!(1);
    d.apply(name, spec.clone()).await?;
    let job = d.wait_ready_run(name, 2, 60 * SECOND).await?;
    let run = deployed(&job).context("no run deployed")?;
    ensure!(
        run.from_savepoint.is_some(),
        "the restart did not take a savepoint"
    );
    tokio::time::sleep(2 * SECOND).await;
    ensure!(exact_counts(&dir.here)? > 0, "no output after the restart");

    // LastState: from the latest checkpoint, without a savepoint.
    let taken = savepoint_history(&job);
    spec["upgradeMode"] = json!("LastState");
    spec["job"]["args"]["rate"] = json!("300");
    d.apply(name, spec.clone()).await?;
    let job = d.wait_ready_run(name, 3, 60 * SECOND).await?;
    let run = deployed(&job).context("no run deployed")?;
    ensure!(
        run.from_latest_checkpoint && run.from_savepoint.is_none(),
        "a LastState upgrade deployed {run:?}"
    );
    ensure!(
        savepoint_history(&job) == taken,
        "a LastState upgrade took a savepoint"
    );
    tokio::time::sleep(2 * SECOND).await;
    ensure!(
        exact_counts(&dir.here)? > 0,
        "no output after the LastState upgrade"
    );

    // Stateless: a fresh start (into a new output directory, where counts begin again).
    spec["upgradeMode"] = json!("Stateless");
    spec["job"]["args"]["output"] = json!(
        dir.in_pods
            .join("stateless")
            .join("out")
            .display()
            .to_string()
    );
    d.apply(name, spec.clone()).await?;
    let job = d.wait_ready_run(name, 4, 60 * SECOND).await?;
    let run = deployed(&job).context("no run deployed")?;
    ensure!(
        !run.from_latest_checkpoint && run.from_savepoint.is_none(),
        "a Stateless upgrade deployed {run:?}"
    );
    let stateless = dir.here.join("stateless");
    d.eventually("output of the stateless run", 30 * SECOND, name, || async {
        Ok(exact_counts(&stateless)? > 0)
    })
    .await?;
    // The old run is gone: its output, still exact, grows no more.
    let old_output = exact_counts(&dir.here)?;
    tokio::time::sleep(2 * SECOND).await;
    ensure!(
        exact_counts(&dir.here)? == old_output,
        "the run before the stateless upgrade still writes"
    );

    // Periodic savepoints, kept to 2: the older ones are disposed of on disk.
    spec["savepoints"]["periodic"] = json!("2s");
    d.apply(name, spec.clone()).await?;
    let first = d
        .wait(name, "a periodic savepoint", 30 * SECOND, |j| {
            j.status
                .as_ref()
                .and_then(|s| s.savepoints.as_ref())
                .is_some_and(|h| h.history.iter().any(|r| r.reason == "Periodic"))
        })
        .await?;
    let old = savepoint_history(&first);
    d.eventually(
        "the savepoints before the periodic ones disposed of",
        60 * SECOND,
        name,
        || async {
            let job = d.jobs().get(name).await?;
            let now = savepoint_history(&job);
            Ok(now.len() == 2
                && old.iter().all(|o| !now.contains(o) && !on_disk(&dir, o))
                && now.iter().all(|n| on_disk(&dir, n)))
        },
    )
    .await?;
    let run = deployed(&d.jobs().get(name).await?).map(|d| d.run);
    ensure!(
        run == Some(4),
        "periodic savepoints redeployed: run {run:?}"
    );

    // Deletion takes a final savepoint, announced by an Event, kept on disk.
    d.jobs()
        .delete(name, &DeleteParams::default())
        .await
        .context("deleting")?;
    d.eventually("the StreamJob gone", 60 * SECOND, name, || async {
        Ok(d.jobs().get_opt(name).await?.is_none())
    })
    .await?;
    let events: Api<k8s_openapi::api::events::v1::Event> = d.api();
    let notes: Vec<(String, String)> = events
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect();
    let last = notes
        .iter()
        .filter(|(reason, _)| reason == "SavepointTaken")
        .filter_map(|(_, note)| note.strip_prefix("Deletion savepoint at "))
        .next_back()
        .with_context(|| format!("no Event of a final savepoint among {notes:#?}"))?;
    ensure!(
        on_disk(&dir, last),
        "the final savepoint {last} is not on disk"
    );
    Ok(())
}

/// The locations in a StreamJob's savepoint history, oldest first.
fn savepoint_history(job: &strom_operator::crd::StreamJob) -> Vec<String> {
    job.status
        .as_ref()
        .and_then(|s| s.savepoints.as_ref())
        .map(|h| h.history.iter().map(|r| r.location.clone()).collect())
        .unwrap_or_default()
}

/// Whether a savepoint (`file://` + the path the pods see) is on disk, seen from here.
fn on_disk(dir: &super::JobDir, location: &str) -> bool {
    let path = location.strip_prefix("file://").unwrap_or(location);
    let Ok(relative) = std::path::Path::new(path).strip_prefix(&dir.in_pods) else {
        return false;
    };
    dir.here.join(relative).join("_metadata").is_file()
}

fn ensure_degraded(job: &strom_operator::crd::StreamJob, reason: &str) -> anyhow::Result<()> {
    let degraded = condition(job, "Degraded");
    ensure!(
        degraded.as_ref().map(|c| c.1.as_str()) == Some(reason),
        "Degraded is {degraded:?}, not reason {reason}"
    );
    Ok(())
}

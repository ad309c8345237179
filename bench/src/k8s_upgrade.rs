//! What an upgrade costs on Kubernetes: from `kubectl apply` of a changed StreamJob to the
//! new version running with its state restored, on the simulated cluster of `strom-e2e`
//! (the real operator and its lifecycle against the in-memory API server; real master
//! and worker processes, started by the pod runner for the Deployments the operator
//! makes, running `strom-bench-jobs`).
//!
//! The job is `large-state` (`strom_bench::jobs`): `keys × value-bytes` of keyed state at
//! p = 2 (two worker pods), checkpointing every 5 s. Once a checkpoint holds every key,
//! the harness applies an upgrade (the `rate` argument changes, upgradeMode Savepoint)
//! and times, from the apply:
//!
//! - *savepoint taken*: the operator's status moves to the Deploying step (the stop-with-
//!   savepoint completed and its path is recorded);
//! - *Ready*: the StreamJob's `Ready` condition is True for the new run;
//! - *running with state restored*: the last of the new worker pods prints its first
//!   record out (`first-output`), which a task does only after restoring its state.
//!
//! It then checks that the new run's first checkpoint holds the whole state again, and
//! upgrades again; each row is the median of `runs` upgrades.

use anyhow::{Context as _, bail, ensure};
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use strom_bench::jobs::now_ms;
use strom_bench::measure::median;
use strom_e2e::journeys::Cluster as _;
use strom_e2e::journeys::sim::{SimCluster, SimOptions};
use strom_operator::crd::{StreamJob, UpgradeStep};

const NS: &str = "default";
const NAME: &str = "big";
const IMAGE: &str = "strom-bench:dev";
const RATE: u64 = 100_000;

/// One upgrade's times, in milliseconds from the apply.
#[derive(Debug, Default)]
struct Upgrade {
    savepoint_ms: f64,
    ready_ms: f64,
    restored_ms: f64,
    /// The savepoint's state (the state the new run restored), in bytes.
    state_bytes: f64,
}

/// The table: for each state size and backend, medians of `runs` upgrades.
pub fn run(
    sizes: &[u64],
    value_bytes: u64,
    runs: usize,
    output: Option<PathBuf>,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let jobs_binary = sibling("strom-bench-jobs")?;
    let mut table = format!(
        "Upgrade (a job argument changes, upgradeMode Savepoint) of a StreamJob on the \
         simulated cluster, p = 2 (a master and two worker pods), checkpoint every 5 s, \
         {value_bytes}-byte values; times from the apply, median of {runs} upgrades\n\n\
         | state | backend | savepoint taken | Ready | running with state restored |\n\
         |---|---|---:|---:|---:|\n"
    );
    for &keys in sizes {
        for backend in ["Heap", "RocksDb"] {
            let upgrades = runtime
                .block_on(measure(&jobs_binary, keys, value_bytes, backend, runs))
                .with_context(|| format!("{keys} keys, {backend}"))?;
            let med = |f: fn(&Upgrade) -> f64| median(upgrades.iter().map(f).collect());
            let secs = |ms: f64| format!("{:.1} s", ms / 1e3);
            let row = format!(
                "| {} | {backend} | {} | {} | {} |\n",
                size(med(|u| u.state_bytes)),
                secs(med(|u| u.savepoint_ms)),
                secs(med(|u| u.ready_ms)),
                secs(med(|u| u.restored_ms)),
            );
            eprint!("{row}");
            table.push_str(&row);
        }
    }
    strom_bench::measure::publish_table(&table, output.as_deref())
}

fn size(bytes: f64) -> String {
    if bytes >= 1e9 {
        format!("{:.2} GB", bytes / 1e9)
    } else {
        format!("{:.1} MB", bytes / 1e6)
    }
}

/// A binary next to this one (cargo builds a package's binaries into one directory).
fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.with_file_name(name);
    ensure!(
        path.is_file(),
        "{} is missing: build it with `cargo build --profile bench -p strom-bench`",
        path.display()
    );
    Ok(path)
}

async fn measure(
    jobs_binary: &Path,
    keys: u64,
    value_bytes: u64,
    backend: &str,
    runs: usize,
) -> anyhow::Result<Vec<Upgrade>> {
    // Not under /tmp: the pod runner maps /tmp to each pod's own emptyDir.
    let dir = std::env::current_dir()?.join(format!("strom-k8s-upgrade-{}", std::process::id()));
    let cluster = SimCluster::start(SimOptions {
        dir: dir.clone(),
        operators: 1,
        images: [(IMAGE.to_string(), jobs_binary.to_path_buf())].into(),
        patience: 1.0,
    })
    .await?;
    let result = upgrades(&cluster, &dir, keys, value_bytes, backend, runs).await;
    if result.is_err() {
        eprintln!("{}", cluster.runner().logs(NAME));
    }
    cluster.shutdown().await;
    result
}

async fn upgrades(
    cluster: &SimCluster,
    dir: &Path,
    keys: u64,
    value_bytes: u64,
    backend: &str,
    runs: usize,
) -> anyhow::Result<Vec<Upgrade>> {
    let client = cluster.client();
    let jobs: Api<StreamJob> = Api::namespaced(client.clone(), NS);
    let spec = |rate: u64| {
        json!({
            "image": IMAGE,
            "job": {"name": "large-state", "args": {
                "keys": keys.to_string(),
                "value-bytes": value_bytes.to_string(),
                "rate": rate.to_string(),
            }},
            "parallelism": 2,
            "checkpoints": {
                "interval": "5s",
                "storage": format!("file://{}", dir.join("checkpoints").display()),
                "retain": 1,
            },
            "savepoints": {
                "storage": format!("file://{}", dir.join("savepoints").display()),
                "keep": 1,
            },
            "stateBackend": {"type": backend},
            "rollback": {"deadline": "600s"},
        })
    };
    let full = keys * value_bytes;
    apply(&jobs, spec(RATE)).await?;
    wait_ready(&jobs, 1, Duration::from_secs(120)).await?;
    let master = master_url(&client).await?;
    let fill = Duration::from_secs(60 + 2 * full / (value_bytes * RATE).max(1));
    full_checkpoint(&master, full, fill).await?;

    let mut results = Vec::new();
    for i in 1..=runs as u64 {
        let before: BTreeSet<String> = worker_pods(cluster).into_iter().map(|p| p.0).collect();
        let applied = now_ms();
        let start = Instant::now();
        apply(&jobs, spec(RATE + i)).await?;
        let mut upgrade = Upgrade::default();
        // The savepoint, then Ready, polled at 50 ms.
        loop {
            let job = jobs.get(NAME).await?;
            let status = job.status.unwrap_or_default();
            let step = status.upgrade.as_ref().map(|u| u.step);
            if upgrade.savepoint_ms == 0.0 && step == Some(UpgradeStep::Deploying) {
                upgrade.savepoint_ms = start.elapsed().as_secs_f64() * 1e3;
            }
            let ready = status
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            if status
                .deployed
                .as_ref()
                .is_some_and(|d| d.run == 1 + i as i64)
                && status.upgrade.is_none()
                && ready
            {
                upgrade.ready_ms = start.elapsed().as_secs_f64() * 1e3;
                break;
            }
            if start.elapsed() > Duration::from_secs(600) {
                bail!("upgrade {i}: not Ready after 10 minutes: {status:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The last new worker's first record out.
        let deadline = Instant::now() + Duration::from_secs(300);
        upgrade.restored_ms = loop {
            let firsts: Vec<u64> = worker_pods(cluster)
                .into_iter()
                .filter(|(name, _)| !before.contains(name))
                .filter_map(|(_, log)| first_output(&log))
                .collect();
            if firsts.len() == 2 {
                break (firsts.into_iter().max().unwrap_or(applied) - applied) as f64;
            }
            ensure!(
                Instant::now() < deadline,
                "upgrade {i}: the new workers printed no first output"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        // The state came along: the new run's checkpoint holds every key again.
        let master = master_url(&client).await?;
        upgrade.state_bytes = full_checkpoint(&master, full, fill).await? as f64;
        eprintln!("  {keys} keys, {backend}, upgrade {i}: {upgrade:?}");
        results.push(upgrade);
    }
    Ok(results)
}

async fn apply(jobs: &Api<StreamJob>, spec: Value) -> anyhow::Result<()> {
    let manifest = json!({
        "apiVersion": "strom.dev/v1alpha1", "kind": "StreamJob",
        "metadata": {"name": NAME, "namespace": NS},
        "spec": spec,
    });
    jobs.patch(
        NAME,
        &PatchParams::apply("kubectl").force(),
        &Patch::Apply(&manifest),
    )
    .await
    .context("applying the StreamJob")?;
    Ok(())
}

async fn wait_ready(jobs: &Api<StreamJob>, run: i64, timeout: Duration) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let status = jobs.get(NAME).await?.status.unwrap_or_default();
        if status.deployed.as_ref().is_some_and(|d| d.run == run)
            && status
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        {
            return Ok(());
        }
        ensure!(
            start.elapsed() < timeout,
            "run {run} not Ready after {timeout:?}: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The master's REST API, at its Service's cluster IP (the pod runner proxies it).
async fn master_url(client: &kube::Client) -> anyhow::Result<String> {
    let services: Api<Service> = Api::namespaced(client.clone(), NS);
    let ip = services
        .get(&format!("{NAME}-master"))
        .await?
        .spec
        .and_then(|s| s.cluster_ip)
        .context("the master Service has no cluster IP")?;
    Ok(format!("http://{ip}:8081"))
}

/// Waits for a completed checkpoint of the current job holding at least `full` bytes;
/// returns its size.
async fn full_checkpoint(master: &str, full: u64, timeout: Duration) -> anyhow::Result<u64> {
    let start = Instant::now();
    loop {
        if let Ok(jobs) = curl(&format!("{master}/v1/jobs")).await
            && let Some(id) = jobs["jobs"]
                .as_array()
                .and_then(|j| j.last())
                .and_then(|j| j["id"].as_str())
            && let Ok(c) = curl(&format!("{master}/v1/jobs/{id}/checkpoints")).await
            && let Some(bytes) = c["last_completed"]["state_bytes"].as_u64()
            && bytes >= full
        {
            return Ok(bytes);
        }
        ensure!(
            start.elapsed() < timeout,
            "no checkpoint with {full} bytes of state after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The JSON a URL answers, through `curl` (the benchmarks have no HTTP client of their own).
async fn curl(url: &str) -> anyhow::Result<Value> {
    let out = tokio::process::Command::new("curl")
        .args(["-sf", "--max-time", "5", url])
        .output()
        .await?;
    ensure!(out.status.success(), "curl {url} failed");
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// The worker pods (name, log file) the pod runner has started so far.
fn worker_pods(cluster: &SimCluster) -> Vec<(String, PathBuf)> {
    cluster
        .runner()
        .pods()
        .into_iter()
        // The runner names a pod's Deployment `namespace/name`.
        .filter(|p| p.deployment == format!("{NS}/{NAME}-worker"))
        .map(|p| (p.name, p.log))
        .collect()
}

/// The `first-output <ms>` a pod printed, if it has.
fn first_output(log: &Path) -> Option<u64> {
    std::fs::read_to_string(log)
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("first-output ")?.trim().parse().ok())
}

//! The user journeys of DESIGN.md §8 layer 4, written once against [`Cluster`]: the
//! simulated cluster of CI ([`sim::SimCluster`]: in-memory API server, pod runner, the
//! operator in process) and any real cluster reached through a kubeconfig context
//! ([`kube_cluster::KubeCluster`]: kind, with the operator installed by the Helm chart).
//!
//! Each journey checks what a user would: the StreamJob's conditions and phases, and the
//! job's committed output ([`output::exact_counts`]) — every word's running count goes
//! 1, 2, 3… with no number missing (a record lost) or repeated (a record counted twice),
//! across upgrades, rescales, failovers and rollbacks.

pub mod kube_cluster;
pub mod output;
pub mod scenarios;
pub mod sim;

use anyhow::{Context as _, bail};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use strom_operator::crd::StreamJob;

/// What the journeys need from a cluster beyond its API.
pub trait Cluster {
    /// A client for the cluster's API server.
    fn client(&self) -> kube::Client;
    /// The namespace the journeys' StreamJobs live in.
    fn namespace(&self) -> &str;
    /// The Strom image the operator's pods run.
    fn image(&self) -> &str;
    /// Where the job of `journey` keeps its checkpoints and output.
    fn job_dir(&self, journey: &str) -> JobDir;
    /// How much longer than on an idle simulated cluster things may take (real clusters
    /// pull images and schedule pods; CI runs journeys side by side).
    fn patience(&self) -> f64;
    /// The operator's Lease: (namespace, name).
    fn operator_lease(&self) -> (String, String);
    /// Ends an operator replica as kill -9 would: no Lease released, nothing finished.
    fn kill_operator(&mut self, identity: &str) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Loses a pod at once (no graceful stop); its Deployment replaces it.
    fn lose_pod(&self, name: &str) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// The logs of the pods whose names start with `prefix`, for a failure report.
    fn logs(&self, prefix: &str) -> impl Future<Output = String> + Send;
}

/// A job's directory as its pods see it (what goes into the spec) and as this process
/// reads it (for the output check); the same path on the simulated cluster.
#[derive(Clone, Debug)]
pub struct JobDir {
    pub in_pods: PathBuf,
    pub here: PathBuf,
    /// What the job's `podTemplate` needs for its pods to see `in_pods` (a hostPath
    /// volume on kind), merged into every spec the journeys apply.
    pub pod_template: Option<Value>,
}

/// The journeys by name, in the order `strom-e2e journeys` runs them.
pub const JOURNEYS: [&str; 4] = ["lifecycle", "failures", "failover", "modes"];

/// Operator replicas a simulated cluster needs for the journey `name` (the failures
/// journey kills the leading one).
pub fn operators_needed(name: &str) -> usize {
    if name == "failures" { 2 } else { 1 }
}

/// Runs the journey `name` on `cluster`.
pub async fn run<C: Cluster + Send + Sync>(cluster: &mut C, name: &str) -> anyhow::Result<()> {
    match name {
        "lifecycle" => scenarios::lifecycle(cluster).await,
        "failures" => scenarios::failures(cluster).await,
        "failover" => scenarios::failover(cluster).await,
        "modes" => scenarios::modes(cluster).await,
        other => bail!(
            "no journey named {other}: the journeys are {}",
            JOURNEYS.join(", ")
        ),
    }
}

/// Helpers every journey uses, over any [`Cluster`].
pub(crate) struct Driver<'a, C> {
    pub cluster: &'a mut C,
}

impl<C: Cluster + Send + Sync> Driver<'_, C> {
    pub fn jobs(&self) -> Api<StreamJob> {
        Api::namespaced(self.cluster.client(), self.cluster.namespace())
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.cluster.client(), self.cluster.namespace())
    }

    pub fn scaled(&self, d: Duration) -> Duration {
        d.mul_f64(self.cluster.patience())
    }

    /// `kubectl apply --server-side --force-conflicts` of a StreamJob.
    pub async fn apply(&self, name: &str, spec: Value) -> Result<StreamJob, kube::Error> {
        let manifest = json!({
            "apiVersion": "strom.dev/v1alpha1", "kind": "StreamJob",
            "metadata": {"name": name, "namespace": self.cluster.namespace()},
            "spec": spec,
        });
        self.jobs()
            .patch(
                name,
                &PatchParams::apply("kubectl").force(),
                &Patch::Apply(&manifest),
            )
            .await
    }

    /// Waits until the StreamJob satisfies `ok`; fails with its status and its pods' logs.
    pub async fn wait(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        ok: impl Fn(&StreamJob) -> bool,
    ) -> anyhow::Result<StreamJob> {
        let timeout = self.scaled(timeout);
        let start = Instant::now();
        loop {
            if let Ok(job) = self.jobs().get(name).await
                && ok(&job)
            {
                return Ok(job);
            }
            if start.elapsed() > timeout {
                let job = self.jobs().get(name).await.ok();
                bail!(
                    "{name}: not {what} after {timeout:?}\nstatus: {}\n{}",
                    serde_json::to_string_pretty(&job.and_then(|j| j.status)).unwrap_or_default(),
                    self.cluster.logs(name).await
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until run `run` is deployed, no upgrade is under way and the job is Ready.
    pub async fn wait_ready_run(
        &self,
        name: &str,
        run: i64,
        timeout: Duration,
    ) -> anyhow::Result<StreamJob> {
        self.wait(name, &format!("Ready with run {run}"), timeout, |j| {
            let s = j.status.clone().unwrap_or_default();
            s.deployed.as_ref().is_some_and(|d| d.run == run)
                && s.upgrade.is_none()
                && condition(j, "Ready").is_some_and(|c| c.0 == "True")
        })
        .await
    }

    /// Polls `check` until it holds; fails with `what` and the pods' logs.
    pub async fn eventually<F, Fut>(
        &self,
        what: &str,
        timeout: Duration,
        logs_of: &str,
        check: F,
    ) -> anyhow::Result<()>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = anyhow::Result<bool>>,
    {
        let timeout = self.scaled(timeout);
        let start = Instant::now();
        loop {
            let last = check().await;
            if matches!(last, Ok(true)) {
                return Ok(());
            }
            if start.elapsed() > timeout {
                let why = last.err().map(|e| format!(" ({e:#})")).unwrap_or_default();
                bail!(
                    "{what}: not after {timeout:?}{why}\n{}",
                    self.cluster.logs(logs_of).await
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The holder of a Lease in the journeys' namespace or another.
    pub async fn lease_holder(&self, namespace: &str, name: &str) -> anyhow::Result<String> {
        let leases: Api<Lease> = Api::namespaced(self.cluster.client(), namespace);
        leases
            .get(name)
            .await
            .with_context(|| format!("reading Lease {namespace}/{name}"))?
            .spec
            .and_then(|s| s.holder_identity)
            .with_context(|| format!("Lease {namespace}/{name} has no holder"))
    }

    /// The names of the running pods whose names start with `prefix`.
    pub async fn pods(&self, prefix: &str) -> anyhow::Result<Vec<String>> {
        let pods: Api<Pod> = self.api();
        Ok(pods
            .list(&ListParams::default())
            .await
            .context("listing pods")?
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .filter_map(|p| p.metadata.name)
            .filter(|n| n.starts_with(prefix))
            .collect())
    }

    /// A word-count StreamJob: generated lines at `rate`/s, exactly-once output under
    /// `dir`, checkpoints every 500 ms next to it.
    pub fn word_count(&self, dir: &JobDir, rate: u32, parallelism: i32) -> Value {
        let mut spec = json!({
            "image": self.cluster.image(),
            "job": {"name": "word-count", "args": {
                "rate": rate.to_string(),
                "events": "0",
                "exactly-once": "true",
                "output": dir.in_pods.join("out").display().to_string(),
            }},
            "parallelism": parallelism,
            "checkpoints": {
                "interval": "500ms",
                "storage": format!("file://{}", dir.in_pods.join("checkpoints").display()),
            },
            "rollback": {"deadline": format!("{}s", (40.0 * self.cluster.patience()).ceil())},
        });
        if let Some(template) = &dir.pod_template {
            spec["podTemplate"] = template.clone();
        }
        spec
    }
}

/// A condition's (status, reason).
pub fn condition(job: &StreamJob, type_: &str) -> Option<(String, String)> {
    job.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

/// A condition's message ("" without the condition).
pub fn condition_message(job: &StreamJob, type_: &str) -> String {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

/// The run the StreamJob's status says is deployed.
pub fn deployed(job: &StreamJob) -> Option<strom_operator::crd::DeployedRun> {
    job.status.as_ref()?.deployed.clone()
}

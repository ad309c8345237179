//! The simulated cluster the journeys run on in CI: the in-memory API server with the
//! StreamJob CRD and its CEL rules, the pod runner starting real `strom` processes for
//! the operator's Deployments, and operator replicas in this process (leader election
//! included, with short Lease timings so a killed leader is replaced in seconds).

use super::{Cluster, JobDir};
use crate::kube_sim::ApiServer;
use crate::pods::{PodRunner, RunnerOptions};
use anyhow::Context as _;
use kube::CustomResourceExt;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use strom_lease::ElectionConfig;
use strom_operator::crd::{StreamJob, StreamJobSpec};

const NAMESPACE: &str = "default";
const OPERATOR_LEASE: &str = "strom-operator";
/// The image the journeys' StreamJobs name; the pod runner runs `strom` for it. Any
/// other image name fails to pull, as a typo would.
pub const IMAGE: &str = "strom:dev";

/// What a simulated cluster is made of.
pub struct SimOptions {
    /// Its work directory (pods' directories, job output, kubeconfig). Not under /tmp:
    /// pods mount an emptyDir at /tmp, and the runner maps that path into the pod.
    pub dir: PathBuf,
    /// Operator replicas to start.
    pub operators: usize,
    /// Image name → binary the pod runner runs for it; [`IMAGE`] must be there.
    pub images: BTreeMap<String, PathBuf>,
    /// Timeout multiplier (see [`Cluster::patience`]).
    pub patience: f64,
}

type OperatorTask = (
    String,
    tokio::task::JoinHandle<()>,
    Option<tokio::sync::oneshot::Sender<()>>,
);

/// The API server, pod runner and operator replicas of one simulated cluster.
pub struct SimCluster {
    api: ApiServer,
    client: kube::Client,
    runner: Option<PodRunner>,
    operators: Vec<OperatorTask>,
    dir: PathBuf,
    patience: f64,
}

impl SimCluster {
    pub async fn start(options: SimOptions) -> anyhow::Result<SimCluster> {
        let dir = options.dir;
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let api = ApiServer::start().await?;
        let validate = Arc::new(|new: &Value, old: Option<&Value>| {
            StreamJobSpec::validate_cel(new, old).map_err(|e| e.to_string())
        });
        api.register_crd(StreamJob::crd(), Some(validate))?;
        let kubeconfig = dir.join("kubeconfig");
        api.write_kubeconfig(&kubeconfig)?;
        let client = api.client();
        let runner = PodRunner::start(
            client.clone(),
            RunnerOptions {
                images: options.images,
                work_dir: dir.join("pods"),
                kubeconfig,
                grace: Duration::from_secs(5),
            },
        );
        let mut cluster = SimCluster {
            api,
            client,
            runner: Some(runner),
            operators: Vec::new(),
            dir,
            patience: options.patience,
        };
        for i in 0..options.operators {
            cluster.start_operator(&format!("operator-{i}"));
        }
        Ok(cluster)
    }

    fn start_operator(&mut self, identity: &str) {
        let client = self.client.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let options = strom_operator::run::Options {
            namespace: None,
            identity: identity.to_string(),
            lease: Some((NAMESPACE.to_string(), OPERATOR_LEASE.to_string())),
            election: ElectionConfig {
                lease_duration: Duration::from_secs(3),
                renew_deadline: Duration::from_secs(2),
                retry_period: Duration::from_millis(300),
            },
            metrics_bind: None,
        };
        let task = tokio::spawn(async move {
            let _ = strom_operator::run::serve(client, options, async {
                let _ = stopped.await;
            })
            .await;
        });
        self.operators
            .push((identity.to_string(), task, Some(stop)));
    }

    /// The cluster's work directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The pod runner (for what only a simulated kubelet can tell, e.g. restarts).
    pub fn runner(&self) -> &PodRunner {
        self.runner
            .as_ref()
            .expect("the runner runs until shutdown")
    }

    /// Stops the operators (gracefully), every pod and the API server; removes the
    /// work directory.
    pub async fn shutdown(mut self) {
        for (_, task, stop) in self.operators.drain(..) {
            if let Some(stop) = stop {
                let _ = stop.send(());
            }
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
        if let Some(runner) = self.runner.take() {
            runner.shutdown().await;
        }
        self.api.shutdown();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Cluster for SimCluster {
    fn client(&self) -> kube::Client {
        self.client.clone()
    }

    fn namespace(&self) -> &str {
        NAMESPACE
    }

    fn image(&self) -> &str {
        IMAGE
    }

    fn job_dir(&self, journey: &str) -> JobDir {
        // Pods are processes on this machine: they see the same path.
        let dir = self.dir.join("jobs").join(journey);
        JobDir {
            in_pods: dir.clone(),
            here: dir,
            pod_template: None,
        }
    }

    fn patience(&self) -> f64 {
        self.patience
    }

    fn operator_lease(&self) -> (String, String) {
        (NAMESPACE.to_string(), OPERATOR_LEASE.to_string())
    }

    async fn kill_operator(&mut self, identity: &str) -> anyhow::Result<()> {
        let (_, task, stop) = self
            .operators
            .iter_mut()
            .find(|(id, ..)| id == identity)
            .with_context(|| format!("no operator {identity}"))?;
        // Aborting drops the election and reconcile tasks mid-step; the stop signal is
        // dropped unsent, so the Lease is not released.
        task.abort();
        stop.take();
        Ok(())
    }

    async fn lose_pod(&self, name: &str) -> anyhow::Result<()> {
        self.runner().delete(name);
        Ok(())
    }

    async fn logs(&self, prefix: &str) -> String {
        self.runner
            .as_ref()
            .map(|r| r.logs(prefix))
            .unwrap_or_default()
    }
}

/// The `strom` binary next to the running executable (cargo puts test and binary
/// targets of one profile in one directory), built first when `build` is set and it is
/// run under cargo; STROM_BIN names another.
pub fn strom_binary(build: bool) -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os("STROM_BIN") {
        return Ok(bin.into());
    }
    if build {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args(["build", "-q", "-p", "strom", "--bin", "strom"])
            .status()
            .context("running cargo build -p strom")?;
        anyhow::ensure!(status.success(), "cargo build -p strom failed");
    }
    let exe = std::env::current_exe().context("the executable's path")?;
    // target/<profile>/deps/journeys-… (a test) or target/<profile>/strom-e2e (a binary).
    exe.ancestors()
        .skip(1)
        .take(2)
        .map(|d| d.join("strom"))
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "no strom binary next to {}: build it (cargo build -p strom) or set STROM_BIN",
                exe.display()
            )
        })
}

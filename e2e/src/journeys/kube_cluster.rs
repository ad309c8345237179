//! A real cluster for the journeys, reached through a kubeconfig context (kind in
//! `e2e/kind/run.sh`), with the operator installed by the Helm chart.
//!
//! The exact-output check reads the job's files from this machine, so the jobs write to
//! a directory every node shares with it: kind's `extraMounts` put the host's directory
//! at the same path on every node (`e2e/kind/cluster.yaml`), and each job mounts it with
//! a hostPath volume through its `podTemplate`. Checkpoints go there too: a `file://`
//! store all pods share, as a network file system would be.

use super::{Cluster, JobDir};
use anyhow::Context as _;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, LogParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;
use std::path::PathBuf;

/// How to reach and use the cluster.
#[derive(Clone, Debug)]
pub struct KubeOptions {
    /// The kubeconfig context; the current one when unset.
    pub context: Option<String>,
    /// Where the journeys' StreamJobs go.
    pub namespace: String,
    /// The image the jobs run (loaded on the nodes).
    pub image: String,
    /// The shared directory on this machine …
    pub shared_here: PathBuf,
    /// … and where the nodes (and so hostPath volumes) have it.
    pub shared_on_nodes: PathBuf,
    /// The operator's Lease: namespace and name (the chart's release namespace and full
    /// name).
    pub operator_lease: (String, String),
    /// Timeout multiplier.
    pub patience: f64,
}

/// A cluster behind a kubeconfig context.
pub struct KubeCluster {
    client: kube::Client,
    options: KubeOptions,
    /// This run's directory under the shared one: pods write files as their own user,
    /// which this process may not delete, so every run starts in a new directory.
    run_dir: String,
}

impl KubeCluster {
    pub async fn connect(options: KubeOptions) -> anyhow::Result<KubeCluster> {
        let kubeconfig = Kubeconfig::read().context("reading the kubeconfig")?;
        let config = kube::Config::from_custom_kubeconfig(
            kubeconfig,
            &KubeConfigOptions {
                context: options.context.clone(),
                ..KubeConfigOptions::default()
            },
        )
        .await
        .with_context(|| format!("kubeconfig context {:?}", options.context))?;
        let client = kube::Client::try_from(config).context("a client for the cluster")?;
        let run_dir = format!(
            "run-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs()
        );
        Ok(KubeCluster {
            client,
            options,
            run_dir,
        })
    }
}

impl Cluster for KubeCluster {
    fn client(&self) -> kube::Client {
        self.client.clone()
    }

    fn namespace(&self) -> &str {
        &self.options.namespace
    }

    fn image(&self) -> &str {
        &self.options.image
    }

    fn job_dir(&self, journey: &str) -> JobDir {
        let here = self.options.shared_here.join(&self.run_dir).join(journey);
        // The pods run as a non-root user of their own: the directory is everyone's.
        if std::fs::create_dir_all(&here).is_ok() {
            use std::os::unix::fs::PermissionsExt as _;
            let _ = std::fs::set_permissions(&here, std::fs::Permissions::from_mode(0o777));
        }
        let nodes = self.options.shared_on_nodes.display().to_string();
        JobDir {
            in_pods: self
                .options
                .shared_on_nodes
                .join(&self.run_dir)
                .join(journey),
            here,
            pod_template: Some(json!({"spec": {
                "volumes": [{"name": "e2e-shared", "hostPath": {"path": nodes, "type": "Directory"}}],
                "containers": [{"name": "strom", "volumeMounts": [{"name": "e2e-shared", "mountPath": nodes}]}],
            }})),
        }
    }

    fn patience(&self) -> f64 {
        self.options.patience
    }

    fn operator_lease(&self) -> (String, String) {
        self.options.operator_lease.clone()
    }

    async fn kill_operator(&mut self, identity: &str) -> anyhow::Result<()> {
        // The operator's identity is its pod's name (HOSTNAME).
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.options.operator_lease.0);
        pods.delete(identity, &DeleteParams::default().grace_period(0))
            .await
            .with_context(|| format!("deleting the operator pod {identity}"))?;
        Ok(())
    }

    async fn lose_pod(&self, name: &str) -> anyhow::Result<()> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.options.namespace);
        pods.delete(name, &DeleteParams::default().grace_period(0))
            .await
            .with_context(|| format!("deleting pod {name}"))?;
        Ok(())
    }

    async fn logs(&self, prefix: &str) -> String {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.options.namespace);
        let Ok(list) = pods.list(&ListParams::default()).await else {
            return "(the pods cannot be listed)".into();
        };
        let mut out = String::new();
        for name in list.items.into_iter().filter_map(|p| p.metadata.name) {
            if !name.starts_with(prefix) {
                continue;
            }
            let params = LogParams {
                tail_lines: Some(200),
                ..LogParams::default()
            };
            let text = pods
                .logs(&name, &params)
                .await
                .unwrap_or_else(|e| format!("(no logs: {e})"));
            out.push_str(&format!("---- {name}\n{text}\n"));
        }
        out
    }
}

//! The pure half of a reconcile: every Kubernetes object a StreamJob's run needs, built
//! from the StreamJob and the run its status records (`status.deployed`), with no API at
//! hand. The same inputs always give the same objects, so applying them again changes
//! nothing (GitOps tools and the operator's own watches see no churn).
//!
//! Children, all owned by the StreamJob (deleted with it):
//! - ConfigMap `<name>-config`: `strom.toml`, the run's settings (`config`);
//! - ServiceAccount `<name>`, Role and RoleBinding `<name>-master`: what the master may do
//!   with the API — its leader Lease and its HA ConfigMap `<name>-ha`, nothing else;
//! - Service `<name>-master`: the control plane (6123) the workers attach to and the REST
//!   API (8081) the operator drives; only a ready master (the leader) is behind it;
//! - Deployments `<name>-master` and `<name>-worker`, `Recreate` so two runs never share
//!   workers, scaled to zero while suspended.
//!
//! The HA ConfigMap is written by the masters and owned by no one, so a redeploy never
//! takes it away (LastState upgrades read it); the operator deletes it with the job.

mod config;
pub mod pod_template;

pub use config::{
    CONTROL_PORT, DATA_PORT, REST_PORT, checkpoint_root, master_address, savepoint_directory,
    strom_toml,
};

use crate::crd::{DeployedRun, StreamJob, StreamJobSpec};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Where `strom.toml` is mounted.
pub const CONFIG_DIR: &str = "/etc/strom";
/// A writable directory for RocksDB instances (the root filesystem is read-only).
pub const STATE_DIR: &str = "/var/lib/strom/state";
/// The container running `strom` in both pods; a `podTemplate` container of this name
/// patches it.
pub const CONTAINER: &str = "strom";
/// The label every child and pod carries with the StreamJob's name.
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
/// On the pods of a run: its run id (`status.deployed.runId`).
pub const RUN_ID_LABEL: &str = "strom.dev/run-id";
/// The field manager of every apply, and the `managed-by` label.
pub const MANAGER: &str = "strom-operator";

/// Names of a StreamJob's children.
pub mod names {
    pub fn config(job: &str) -> String {
        format!("{job}-config")
    }
    pub fn master(job: &str) -> String {
        format!("{job}-master")
    }
    pub fn workers(job: &str) -> String {
        format!("{job}-worker")
    }
    pub fn service_account(job: &str) -> String {
        job.to_string()
    }
    /// The master's Role and RoleBinding.
    pub fn master_role(job: &str) -> String {
        format!("{job}-master")
    }
    /// The Lease the masters elect their leader with.
    pub fn leader_lease(job: &str) -> String {
        format!("{job}-master")
    }
    /// The HA ConfigMap the masters keep the leader and the latest checkpoint in.
    pub fn ha_config(job: &str) -> String {
        format!("{job}-ha")
    }
}

/// Every child of one run, ready to apply.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    pub config_map: ConfigMap,
    pub service_account: ServiceAccount,
    pub role: Role,
    pub role_binding: RoleBinding,
    pub master_service: Service,
    pub master: Deployment,
    pub workers: Deployment,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("the StreamJob has no {0} yet (it was not read from the API)")]
    Metadata(&'static str),
    #[error("status.deployed.spec is not a StreamJob spec: {0}")]
    DeployedSpec(serde_json::Error),
    #[error("spec.podTemplate does not fit the {component} pod: {source}")]
    PodTemplate {
        component: &'static str,
        source: serde_json::Error,
    },
    #[error("building {0}: {1}")]
    Object(&'static str, serde_json::Error),
}

/// The children of `job` running `run`.
pub fn build(job: &StreamJob, run: &DeployedRun) -> Result<Desired, BuildError> {
    let name = job
        .metadata
        .name
        .clone()
        .ok_or(BuildError::Metadata("name"))?;
    let namespace = job.namespace().ok_or(BuildError::Metadata("namespace"))?;
    let owner = job
        .controller_owner_ref(&())
        .ok_or(BuildError::Metadata("uid"))?;
    let spec: StreamJobSpec = serde_json::from_str(&run.spec).map_err(BuildError::DeployedSpec)?;
    let ctx = Context {
        name: &name,
        namespace: &namespace,
        owner,
        spec: &spec,
        run,
    };
    Ok(Desired {
        config_map: ctx.object(
            "ConfigMap",
            json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": ctx.metadata(&names::config(&name), None),
                "data": {"strom.toml": strom_toml(&spec, &namespace, &name)},
            }),
        )?,
        service_account: ctx.object(
            "ServiceAccount",
            json!({
                "apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": ctx.metadata(&names::service_account(&name), None),
            }),
        )?,
        role: ctx.object("Role", ctx.role())?,
        role_binding: ctx.object(
            "RoleBinding",
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": ctx.metadata(&names::master_role(&name), Some("master")),
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                            "name": names::master_role(&name)},
                "subjects": [{"kind": "ServiceAccount", "name": names::service_account(&name),
                              "namespace": namespace}],
            }),
        )?,
        master_service: ctx.object(
            "Service",
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": ctx.metadata(&names::master(&name), Some("master")),
                "spec": {
                    "selector": ctx.selector("master"),
                    "ports": [
                        {"name": "control", "port": CONTROL_PORT, "targetPort": "control"},
                        {"name": "rest", "port": REST_PORT, "targetPort": "rest"},
                    ],
                },
            }),
        )?,
        master: ctx.object("master Deployment", ctx.master()?)?,
        workers: ctx.object("worker Deployment", ctx.workers()?)?,
    })
}

/// The label selector of a StreamJob's worker pods (the scale subresource's selector).
pub fn worker_selector(name: &str) -> String {
    format!("{INSTANCE_LABEL}={name},{COMPONENT_LABEL}=worker")
}

/// Worker pods a spec needs: as given, or enough slots for its parallelism.
pub fn worker_replicas(spec: &StreamJobSpec) -> i32 {
    let workers = spec.workers.as_ref();
    let slots = workers.and_then(|w| w.slots).unwrap_or(1).max(1);
    workers
        .and_then(|w| w.replicas)
        .unwrap_or_else(|| (spec.parallelism.max(1) + slots - 1) / slots)
}

struct Context<'a> {
    name: &'a str,
    namespace: &'a str,
    owner: OwnerReference,
    spec: &'a StreamJobSpec,
    run: &'a DeployedRun,
}

impl Context<'_> {
    fn object<T: serde::de::DeserializeOwned>(
        &self,
        what: &'static str,
        value: Value,
    ) -> Result<T, BuildError> {
        serde_json::from_value(value).map_err(|e| BuildError::Object(what, e))
    }

    fn labels(&self, component: Option<&str>) -> BTreeMap<String, String> {
        let mut labels: BTreeMap<String, String> = [
            ("app.kubernetes.io/name", "strom"),
            (INSTANCE_LABEL, self.name),
            ("app.kubernetes.io/managed-by", MANAGER),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        if let Some(c) = component {
            labels.insert(COMPONENT_LABEL.into(), c.into());
        }
        labels
    }

    fn selector(&self, component: &str) -> Value {
        json!({INSTANCE_LABEL: self.name, COMPONENT_LABEL: component})
    }

    fn metadata(&self, name: &str, component: Option<&str>) -> Value {
        json!({
            "name": name,
            "namespace": self.namespace,
            "labels": self.labels(component),
            "ownerReferences": [self.owner],
        })
    }

    /// What a master may do: elect its leader and keep the HA ConfigMap. `create` cannot
    /// be limited to names, so it has rules of its own.
    fn role(&self) -> Value {
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": self.metadata(&names::master_role(self.name), Some("master")),
            "rules": [
                {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                 "resourceNames": [names::leader_lease(self.name)],
                 "verbs": ["get", "watch", "update", "patch"]},
                {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                 "verbs": ["create"]},
                {"apiGroups": [""], "resources": ["configmaps"],
                 "resourceNames": [names::ha_config(self.name)],
                 "verbs": ["get", "watch", "update", "patch"]},
                {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]},
            ],
        })
    }

    fn master(&self) -> Result<Value, BuildError> {
        let spec = self.spec;
        let mut command = vec![
            "strom".to_string(),
            "master".into(),
            spec.job.name.clone(),
            "--parallelism".into(),
            spec.parallelism.to_string(),
        ];
        for (key, value) in &spec.job.args {
            command.extend(["--arg".into(), format!("{key}={value}")]);
        }
        command.extend(["--run-id".into(), self.run.run_id.clone()]);
        if let Some(savepoint) = &self.run.from_savepoint {
            command.extend(["--from-checkpoint".into(), savepoint.clone()]);
        } else if self.run.from_latest_checkpoint {
            command.push("--from-latest-checkpoint".into());
        }
        if spec.allow_non_restored_state
            && (self.run.from_savepoint.is_some() || self.run.from_latest_checkpoint)
        {
            command.push("--allow-non-restored-state".into());
        }
        let replicas = if self.run.suspended {
            0
        } else {
            spec.master.as_ref().and_then(|m| m.replicas).unwrap_or(1)
        };
        let env = json!([
            {"name": "STROM_MASTER_BIND", "value": format!("$(POD_IP):{CONTROL_PORT}")},
            {"name": "STROM_REST_BIND", "value": format!("$(POD_IP):{REST_PORT}")},
            {"name": "STROM_LEADER_LEASE", "value": names::leader_lease(self.name)},
            {"name": "STROM_HA_CONFIGMAP", "value": names::ha_config(self.name)},
        ]);
        let container = json!({
            "name": CONTAINER,
            "command": command,
            "ports": [
                {"name": "control", "containerPort": CONTROL_PORT},
                {"name": "rest", "containerPort": REST_PORT},
            ],
            // Ready = leading and serving: the Service sends workers and the operator to
            // the leader only.
            "readinessProbe": {"httpGet": {"path": "/readyz", "port": "rest"},
                               "periodSeconds": 2, "failureThreshold": 1},
            "livenessProbe": {"httpGet": {"path": "/healthz", "port": "rest"},
                              "initialDelaySeconds": 10, "periodSeconds": 10, "failureThreshold": 6},
            "resources": spec.master.as_ref().and_then(|m| m.resources.clone()),
        });
        self.deployment("master", replicas, container, env, true)
    }

    fn workers(&self) -> Result<Value, BuildError> {
        let replicas = if self.run.suspended {
            0
        } else {
            worker_replicas(self.spec)
        };
        let env = json!([
            {"name": "STROM_DATA_BIND", "value": format!("$(POD_IP):{DATA_PORT}")},
            {"name": "STROM_ADVERTISE_HOST", "value": "$(POD_IP)"},
            {"name": "STROM_WORKER_ID", "value": "$(POD_NAME)"},
        ]);
        let container = json!({
            "name": CONTAINER,
            "command": ["strom", "worker"],
            "ports": [{"name": "data", "containerPort": DATA_PORT}],
            "resources": self.spec.workers.as_ref().and_then(|w| w.resources.clone()),
        });
        self.deployment("worker", replicas, container, env, false)
    }

    /// A Deployment of `component` pods running `container`, with what both pods share:
    /// the config, the downward API, the storage Secret, writable scratch volumes, the
    /// restricted security context, and the user's pod template on top.
    fn deployment(
        &self,
        component: &'static str,
        replicas: i32,
        mut container: Value,
        own_env: Value,
        uses_api: bool,
    ) -> Result<Value, BuildError> {
        let field = |path: &str| json!({"valueFrom": {"fieldRef": {"fieldPath": path}}});
        let mut env = vec![
            json!({"name": "POD_NAME"}),
            json!({"name": "POD_NAMESPACE"}),
            json!({"name": "POD_IP"}),
        ];
        for (e, path) in env
            .iter_mut()
            .zip(["metadata.name", "metadata.namespace", "status.podIP"])
        {
            pod_template::merge(e, &field(path));
        }
        env.push(json!({"name": "STROM_CONFIG", "value": format!("{CONFIG_DIR}/strom.toml")}));
        env.push(json!({"name": "STROM_LOG_FORMAT", "value": "json"}));
        env.push(json!({"name": "TMPDIR", "value": "/tmp"}));
        if let Value::Array(own) = own_env {
            env.extend(own);
        }
        container["image"] = json!(self.spec.image);
        container["env"] = json!(env);
        if let Some(secret) = &self.spec.storage_secret_ref {
            container["envFrom"] = json!([{"secretRef": {"name": secret}}]);
        }
        container["volumeMounts"] = json!([
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": true},
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "state", "mountPath": STATE_DIR},
        ]);
        container["securityContext"] = json!({
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "capabilities": {"drop": ["ALL"]},
        });
        if container["resources"].is_null()
            && let Some(c) = container.as_object_mut()
        {
            c.remove("resources");
        }
        let mut labels = self.labels(Some(component));
        labels.insert(RUN_ID_LABEL.into(), self.run.run_id.clone());
        let mut template = json!({
            "metadata": {"labels": labels},
            "spec": {
                "serviceAccountName": if uses_api { names::service_account(self.name) } else { "default".to_string() },
                // Workers never talk to the API; without a token they cannot.
                "automountServiceAccountToken": uses_api,
                "securityContext": {
                    "runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containers": [container],
                "volumes": [
                    {"name": "config", "configMap": {"name": names::config(self.name)}},
                    {"name": "tmp", "emptyDir": {}},
                    {"name": "state", "emptyDir": {}},
                ],
            },
        });
        if let Some(user) = &self.spec.pod_template {
            pod_template::merge(&mut template, user);
            // The selector's labels stay the operator's.
            template["metadata"]["labels"][INSTANCE_LABEL] = json!(self.name);
            template["metadata"]["labels"][COMPONENT_LABEL] = json!(component);
            serde_json::from_value::<k8s_openapi::api::core::v1::PodTemplateSpec>(template.clone())
                .map_err(|source| BuildError::PodTemplate { component, source })?;
        }
        let name = match component {
            "master" => names::master(self.name),
            _ => names::workers(self.name),
        };
        Ok(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": self.metadata(&name, Some(component)),
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": self.selector(component)},
                // Old and new runs never overlap: the old pods are gone before new ones start.
                "strategy": {"type": "Recreate"},
                "template": template,
            },
        }))
    }
}

#[cfg(test)]
mod tests;

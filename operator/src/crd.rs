//! The `StreamJob` custom resource (`strom.dev/v1alpha1`, short name `sj`): what a
//! product team writes (`spec`) and what the operator reports (`status`). The CRD YAML
//! under `crds/` is generated from these types (`strom-operator crd`); a test fails when
//! they drift apart.
//!
//! What the OpenAPI schema cannot say is written as CEL rules (`x-kubernetes-validations`)
//! so the API server rejects it, and checked again by the operator (`validate`), which
//! reports it in status for clusters without CEL.

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A Strom job on Kubernetes: a master Deployment and a worker Deployment running the job
/// `job.name` of the image, checkpointing to `checkpoints.storage`, upgraded and rescaled
/// through savepoints.
#[derive(CustomResource, KubeSchema, Clone, Debug, Deserialize, Serialize, PartialEq)]
#[kube(
    doc = "A Strom job: `kubectl get sj` lists them, `kubectl scale sj <name> --replicas N` rescales one.",
    group = "strom.dev",
    version = "v1alpha1",
    kind = "StreamJob",
    plural = "streamjobs",
    shortname = "sj",
    namespaced,
    status = "StreamJobStatus",
    scale(
        spec_replicas_path = ".spec.parallelism",
        status_replicas_path = ".status.parallelism",
        label_selector_path = ".status.selector"
    ),
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Parallelism","type":"integer","jsonPath":".spec.parallelism"}"#,
    printcolumn = r#"{"name":"Job","type":"string","jsonPath":".status.job.state"}"#,
    printcolumn = r#"{"name":"Last Savepoint","type":"date","jsonPath":".status.savepoints.last.time"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(
    cel,
    validation = Rule::new("!has(self.maxParallelism) || self.maxParallelism >= self.parallelism")
        .message("maxParallelism must be at least parallelism: it is the most the job can ever be scaled to"),
    validation = Rule::new("(has(self.maxParallelism) ? self.maxParallelism : 128) == (has(oldSelf.maxParallelism) ? oldSelf.maxParallelism : 128)")
        .message("maxParallelism cannot change (unset means 128): state is split into that many key groups; start a new StreamJob from a savepoint to change it"),
    validation = Rule::new("!has(self.workers) || !has(self.workers.replicas) || self.workers.replicas * (has(self.workers.slots) ? self.workers.slots : 1) >= self.parallelism")
        .message("workers.replicas × workers.slots must be at least parallelism; leave workers.replicas out to have it computed")
)]
#[serde(rename_all = "camelCase")]
pub struct StreamJobSpec {
    /// The container image with the `strom` binary (or your own binary built on the
    /// `strom` crate), for the master and the workers.
    #[x_kube(validation = Rule::new("self != ''").message("image must name a container image"))]
    pub image: String,
    /// The job to run and its arguments (`strom jobs <name>` lists them).
    pub job: JobSpec,
    /// Subtasks per operator. `kubectl scale sj <name> --replicas N` changes it; a change
    /// rescales the job through a savepoint.
    #[serde(default = "one")]
    #[schemars(range(min = 1))]
    pub parallelism: i32,
    /// Key groups: the most any keyed operator can ever be scaled to. It cannot change
    /// [default: 128].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 32768))]
    pub max_parallelism: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master: Option<MasterSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<WorkersSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoints: Option<CheckpointSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub savepoints: Option<SavepointSpec>,
    /// Where keyed state lives on the workers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_backend: Option<StateBackendSpec>,
    /// A Secret in the job's namespace whose keys become environment variables of the
    /// master and the workers (e.g. `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_secret_ref: Option<String>,
    /// How a change of the spec reaches the running job.
    #[serde(default)]
    pub upgrade_mode: UpgradeMode,
    /// Running, or Suspended (stopped with a savepoint and scaled to zero; back to Running
    /// resumes from it).
    #[serde(default)]
    pub state: DesiredState,
    /// Change it to restart the job (as its upgrade mode says) without other changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_nonce: Option<i64>,
    /// Change it to take a savepoint now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub savepoint_nonce: Option<i64>,
    /// A savepoint or checkpoint directory the first deployment starts from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_savepoint: Option<String>,
    /// Start even when the savepoint has state of operators the job no longer has.
    #[serde(default)]
    pub allow_non_restored_state: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_strategy: Option<RestartStrategySpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackSpec>,
    /// Take a savepoint before the StreamJob's pods are deleted with it.
    #[serde(default)]
    pub savepoint_on_deletion: bool,
    /// Merged into the master's and the workers' pod template (labels, annotations,
    /// tolerations, node selectors, volumes, sidecars…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserve_unknown_fields")]
    pub pod_template: Option<serde_json::Value>,
}

fn one() -> i32 {
    1
}

/// Key groups when `maxParallelism` is not given (the engine's default).
pub const DEFAULT_MAX_PARALLELISM: i32 = 128;

/// Which job of the image to run.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct JobSpec {
    /// A job the image's binary has (`strom jobs`), e.g. `fraud-detection`.
    #[schemars(length(min = 1))]
    pub name: String,
    /// The job's arguments: each becomes `--arg key=value`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub args: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MasterSpec {
    /// More than one: the leader is chosen by a Lease, followers stand by and take over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WorkersSpec {
    /// Worker pods [default: enough for parallelism, parallelism ÷ slots rounded up].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub replicas: Option<i32>,
    /// Subtask slots per worker [default: 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub slots: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

/// Periodic checkpoints (Flink's `execution.checkpointing.*`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointSpec {
    /// Time between checkpoints, e.g. `10s`, `500ms`, `2m` [default: 10s].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h)$"))]
    pub interval: Option<String>,
    #[serde(default)]
    pub mode: CheckpointMode,
    /// Where checkpoints go: `s3://bucket/prefix` (or `file:///dir` on a shared volume).
    #[schemars(length(min = 1))]
    pub storage: String,
    /// Completed checkpoints kept [default: 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub retain: Option<i32>,
    /// An S3-compatible store other than AWS (MinIO, Ceph…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Spec>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct S3Spec {
    /// e.g. `http://minio.storage:9000`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Path-style requests [default: true when an endpoint is set].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_style: Option<bool>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum CheckpointMode {
    /// Aligned barriers: state and output as if nothing failed.
    #[default]
    ExactlyOnce,
    /// No alignment: a restore may replay some records twice.
    AtLeastOnce,
}

/// Savepoints the operator takes (before upgrades, on a schedule, on request).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SavepointSpec {
    /// Where savepoints go [default: `<checkpoints.storage>/savepoints`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
    /// Take one this often, e.g. `1h` [default: never].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h)$"))]
    pub periodic: Option<String>,
    /// Savepoints the operator took that it keeps; older ones are deleted [default: 5].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub keep: Option<i32>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StateBackendSpec {
    #[serde(default, rename = "type")]
    pub kind: StateBackendKind,
    /// RocksDB: block cache and memtables per worker, in MiB [default: 256].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 16))]
    pub rocksdb_memory_mb: Option<i32>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum StateBackendKind {
    #[default]
    Heap,
    RocksDb,
}

/// How a spec change reaches the job (Flink operator's `upgradeMode`).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum UpgradeMode {
    /// Redeploy without state.
    Stateless,
    /// Stop with a savepoint, redeploy from it.
    #[default]
    Savepoint,
    /// Redeploy and let the new master restore the latest checkpoint; works when the job
    /// is unhealthy.
    LastState,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum DesiredState {
    #[default]
    Running,
    Suspended,
}

/// The master's restart strategy (Flink's `restart-strategy.*`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RestartStrategySpec {
    #[serde(rename = "type")]
    pub kind: RestartKind,
    /// FixedDelay: restarts before the job fails; FailureRate: failures per interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub attempts: Option<i32>,
    /// Pause before a restart, e.g. `1s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h)$"))]
    pub delay: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum RestartKind {
    None,
    #[default]
    FixedDelay,
    ExponentialDelay,
    FailureRate,
}

/// Going back to the last stable spec when an upgrade does not reach Running.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RollbackSpec {
    /// [default: true]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// How long an upgraded job has to reach Running, e.g. `5m` [default: 5m].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h)$"))]
    pub deadline: Option<String>,
}

/// What the operator observed and did. Every upgrade step is written here before it is
/// taken, so a restarted operator resumes where it stopped.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StreamJobStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The running job's parallelism (the scale subresource's replicas).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<i32>,
    /// The worker pods' label selector (the scale subresource's selector).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<JobStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub savepoints: Option<SavepointHistory>,
    /// The run of the job the master and worker Deployments are for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployed: Option<DeployedRun>,
    /// The change in progress (upgrade, rescale, suspend…), step by step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<UpgradeStatus>,
    /// A generation whose upgrade did not reach Running and was rolled back: it is not
    /// tried again; the next change of the spec is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back_generation: Option<i64>,
    /// The last spec that reached Running (JSON): what a rollback goes back to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_stable_spec: Option<String>,
    /// Ready, Progressing, Degraded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum Phase {
    Deploying,
    Running,
    Upgrading,
    RollingBack,
    Suspending,
    Suspended,
    Failed,
    /// Deleted; taking the final savepoint before the pods go.
    Deleting,
    /// A bounded job that ended.
    Finished,
}

/// The job as the master reports it.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct JobStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The run the master reports (see `deployed.runId`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// Created, Running, Restarting, Cancelling, Cancelled, Failed, Finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// The newest completed checkpoint's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checkpoint: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SavepointHistory {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<SavepointRecord>,
    /// Savepoints the operator took and keeps, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<SavepointRecord>,
    /// A savepoint asked of the master and not answered yet (manual or periodic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<SavepointTrigger>,
    /// The `savepointNonce` last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handled_nonce: Option<i64>,
    /// When the operator last asked for a periodic savepoint (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_periodic_attempt: Option<String>,
    /// Why the last savepoint asked for failed; cleared by the next one taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
}

/// A savepoint the master is taking for the operator.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SavepointTrigger {
    /// The master's request id (`GET /v1/jobs/{job}/savepoints/{requestId}`).
    pub request_id: String,
    pub job_id: String,
    /// Manual or Periodic.
    pub reason: String,
    /// The `savepointNonce` it answers, for a manual one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<i64>,
    /// RFC 3339.
    pub started_at: String,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SavepointRecord {
    pub location: String,
    /// RFC 3339.
    pub time: String,
    /// Upgrade, Periodic, Manual, Suspend, Deletion.
    pub reason: String,
}

/// What the master and worker Deployments run: one run of the job. Every redeploy is a
/// new run with a new id; the master keeps the checkpoints and the end of each run apart
/// by it, so a restarted pod resumes its own run and never one that ended.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeployedRun {
    /// `<uid prefix>-<run>`: the master's `--run-id`.
    pub run_id: String,
    /// Runs deployed so far, this one included.
    pub run: i64,
    /// The spec it runs (JSON).
    pub spec: String,
    /// The generation of that spec.
    pub generation: i64,
    /// The savepoint or checkpoint it started from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_savepoint: Option<String>,
    /// It started from the newest checkpoint of the runs before it (LastState).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub from_latest_checkpoint: bool,
    /// Scaled to zero (Suspended).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspended: bool,
    /// Suspended with this savepoint: the run after it resumes from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend_savepoint: Option<String>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployed_at: Option<String>,
}

/// A change in progress. Each step is written here before it is taken.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeStatus {
    /// What the change is for.
    pub kind: ChangeKind,
    pub step: UpgradeStep,
    /// The stop-with-savepoint request sent to the master, once sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The savepoint the change took (the new run starts from it; a rollback too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub savepoint: Option<String>,
    /// When the change started (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// When the current step started (RFC 3339): the rollback deadline counts from the
    /// start of Deploying.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_started_at: Option<String>,
    /// The generation being rolled out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_generation: Option<i64>,
    /// A failed savepoint is tried again after this time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum ChangeKind {
    /// The first run.
    #[default]
    Deploy,
    /// A changed spec (image, job, settings).
    Upgrade,
    /// Only parallelism or workers changed.
    Rescale,
    /// Only `restartNonce` changed.
    Restart,
    /// `state: Suspended`.
    Suspend,
    /// `state: Running` after Suspended.
    Resume,
    /// Back to the last stable spec after an upgrade that did not reach Running.
    Rollback,
    /// The StreamJob was deleted; a final savepoint first.
    Delete,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum UpgradeStep {
    /// Stopping the job with a savepoint.
    #[default]
    Savepointing,
    /// The new run's Deployments are applied; waiting for the job to run.
    Deploying,
}

/// Any JSON object, kept as written (the API server prunes nothing in it).
fn preserve_unknown_fields(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// The CustomResourceDefinition of `StreamJob`, as YAML.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    use kube::CustomResourceExt;
    serde_yaml::to_string(&StreamJob::crd())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(changes: serde_json::Value) -> serde_json::Value {
        let mut spec = json!({
            "image": "strom:dev",
            "job": {"name": "word-count"},
            "parallelism": 4,
            "checkpoints": {"storage": "s3://bucket/strom"},
        });
        if let (Some(s), Some(c)) = (spec.as_object_mut(), changes.as_object()) {
            s.extend(c.clone());
        }
        spec
    }

    /// The CEL rules the API server runs, evaluated here as it would.
    fn refused(new: &serde_json::Value, old: Option<&serde_json::Value>) -> bool {
        StreamJobSpec::validate_cel(new, old).is_err()
    }

    #[test]
    fn the_api_servers_cel_rules_refuse_what_the_operator_refuses() {
        let good = spec(json!({}));
        assert!(!refused(&good, None));
        assert!(!refused(&good, Some(&good)));
        assert!(refused(&spec(json!({"image": ""})), None));
        assert!(refused(&spec(json!({"maxParallelism": 2})), None));
        assert!(!refused(&spec(json!({"maxParallelism": 4})), None));
        // maxParallelism never changes; unset is 128.
        let set = spec(json!({"maxParallelism": 256}));
        assert!(refused(&set, Some(&good)));
        assert!(refused(&good, Some(&set)));
        assert!(!refused(&spec(json!({"maxParallelism": 128})), Some(&good)));
        assert!(!refused(&spec(json!({"parallelism": 8})), Some(&good)));
        // Workers must have the slots.
        assert!(refused(&spec(json!({"workers": {"replicas": 3}})), None));
        assert!(!refused(
            &spec(json!({"workers": {"replicas": 2, "slots": 2}})),
            None
        ));
        assert!(!refused(&spec(json!({"workers": {"slots": 2}})), None));
        // The operator's own check agrees on each.
        for (new, old) in [
            (spec(json!({"maxParallelism": 2})), None),
            (set.clone(), Some(&good)),
            (spec(json!({"workers": {"replicas": 3}})), None),
        ] {
            let new: StreamJobSpec = serde_json::from_value(new).expect("a spec");
            let old: Option<StreamJobSpec> =
                old.map(|o| serde_json::from_value(o.clone()).expect("a spec"));
            assert!(!crate::validate::validate(&new, old.as_ref()).is_empty());
        }
    }
}

//! The rules of a `StreamJob` the schema alone cannot say, checked by the operator: the
//! CRD's CEL rules (for API servers that run them) and more that need parsing. A spec that
//! breaks one is reported in status and an Event; the running job is left alone.

use crate::crd::{DEFAULT_MAX_PARALLELISM, StreamJobSpec, UpgradeMode};
use crate::duration;

/// One broken rule: the field, and what is wrong with it and how to fix it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "spec.{}: {}", self.field, self.message)
    }
}

/// Every rule `spec` breaks; `stable` is the last spec that ran (for what may not change).
pub fn validate(spec: &StreamJobSpec, stable: Option<&StreamJobSpec>) -> Vec<Invalid> {
    let mut broken = Vec::new();
    let mut fail = |field: &str, message: String| {
        broken.push(Invalid {
            field: field.to_string(),
            message,
        })
    };
    if spec.image.trim().is_empty() {
        fail(
            "image",
            "must name a container image, e.g. ghcr.io/strom-dev/strom:0.1.0".into(),
        );
    }
    if spec.job.name.trim().is_empty() {
        fail(
            "job.name",
            "must name a job of the image (`strom jobs` lists them)".into(),
        );
    }
    if spec.parallelism < 1 {
        fail(
            "parallelism",
            format!("is {}: it must be at least 1", spec.parallelism),
        );
    }
    let max_parallelism = spec.max_parallelism.unwrap_or(DEFAULT_MAX_PARALLELISM);
    if !(1..=32768).contains(&max_parallelism) {
        fail(
            "maxParallelism",
            format!("is {max_parallelism}: it must be between 1 and 32768"),
        );
    } else if max_parallelism < spec.parallelism {
        fail(
            "maxParallelism",
            format!(
                "is {max_parallelism}, less than parallelism {}: it is the most the job can ever be scaled to; raise it (only before the first run) or lower parallelism",
                spec.parallelism
            ),
        );
    }
    if let Some(stable) = stable {
        let before = stable.max_parallelism.unwrap_or(DEFAULT_MAX_PARALLELISM);
        if before != max_parallelism {
            fail(
                "maxParallelism",
                format!(
                    "changed from {before} to {max_parallelism}: state is split into that many key groups, so it cannot change; put back {before}, or start a new StreamJob from a savepoint"
                ),
            );
        }
    }
    if let Some(workers) = &spec.workers {
        let slots = workers.slots.unwrap_or(1);
        if slots < 1 {
            fail(
                "workers.slots",
                format!("is {slots}: it must be at least 1"),
            );
        }
        if let Some(replicas) = workers.replicas
            && i64::from(replicas) * i64::from(slots.max(1)) < i64::from(spec.parallelism)
        {
            fail(
                "workers.replicas",
                format!(
                    "{replicas} workers × {slots} slots cannot run parallelism {}: raise it, or leave it out to have it computed",
                    spec.parallelism
                ),
            );
        }
    }
    if let Some(c) = &spec.checkpoints {
        if let Some(interval) = &c.interval {
            check_duration(&mut fail, "checkpoints.interval", interval);
        }
        check_storage(&mut fail, "checkpoints.storage", &c.storage);
    }
    if let Some(s) = &spec.savepoints {
        if let Some(periodic) = &s.periodic {
            check_duration(&mut fail, "savepoints.periodic", periodic);
        }
        if let Some(storage) = &s.storage {
            check_storage(&mut fail, "savepoints.storage", storage);
        }
    }
    let savepoint_storage = spec
        .savepoints
        .as_ref()
        .and_then(|s| s.storage.as_ref())
        .is_some()
        || spec.checkpoints.is_some();
    match spec.upgrade_mode {
        UpgradeMode::Savepoint if !savepoint_storage => fail(
            "upgradeMode",
            "Savepoint needs somewhere to put savepoints: set checkpoints.storage or savepoints.storage, or use Stateless".into(),
        ),
        UpgradeMode::LastState if spec.checkpoints.is_none() => fail(
            "upgradeMode",
            "LastState restores the latest checkpoint: set checkpoints (interval, storage), or use Savepoint".into(),
        ),
        _ => {}
    }
    if let Some(r) = &spec.restart_strategy
        && let Some(delay) = &r.delay
    {
        check_duration(&mut fail, "restartStrategy.delay", delay);
    }
    if let Some(r) = &spec.rollback
        && let Some(deadline) = &r.deadline
    {
        check_duration(&mut fail, "rollback.deadline", deadline);
    }
    if let Some(template) = &spec.pod_template
        && let Err(e) =
            serde_json::from_value::<k8s_openapi::api::core::v1::PodTemplateSpec>(template.clone())
    {
        fail("podTemplate", format!("is not a pod template: {e}"));
    }
    broken
}

fn check_duration(fail: &mut impl FnMut(&str, String), field: &str, text: &str) {
    if let Err(e) = duration::parse(text) {
        fail(field, e);
    }
}

/// Pods share nothing but remote storage: `memory://` or a relative directory would be
/// lost with the pod.
fn check_storage(fail: &mut impl FnMut(&str, String), field: &str, location: &str) {
    if !(location.starts_with("s3://") || location.starts_with("file:///")) {
        fail(
            field,
            format!(
                "'{location}' is not storage every pod shares: use s3://bucket/prefix (or file:///dir on a shared volume)"
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{CheckpointSpec, JobSpec, WorkersSpec};

    fn spec() -> StreamJobSpec {
        serde_json::from_value(serde_json::json!({
            "image": "strom:dev",
            "job": {"name": "fraud-detection", "args": {"rate": "1000"}},
            "parallelism": 2,
            "checkpoints": {"interval": "10s", "storage": "s3://bucket/strom"},
        }))
        .expect("a spec")
    }

    fn fields(broken: &[Invalid]) -> Vec<&str> {
        broken.iter().map(|b| b.field.as_str()).collect()
    }

    #[test]
    fn a_good_spec_breaks_no_rule_and_defaults_fill_in() {
        let s = spec();
        assert_eq!(validate(&s, Some(&s)), []);
        assert_eq!(s.upgrade_mode, UpgradeMode::Savepoint);
        assert_eq!(
            s.job,
            JobSpec {
                name: "fraud-detection".into(),
                args: [("rate".to_string(), "1000".to_string())].into()
            }
        );
    }

    #[test]
    fn max_parallelism_below_parallelism_or_changed_is_refused_with_the_fix() {
        let mut s = spec();
        s.max_parallelism = Some(1);
        let broken = validate(&s, None);
        assert_eq!(fields(&broken), ["maxParallelism"]);
        assert!(
            broken[0].message.contains("less than parallelism 2"),
            "{}",
            broken[0]
        );

        // Unset means 128: setting 256 later changes the key groups.
        let stable = spec();
        s.max_parallelism = Some(256);
        let broken = validate(&s, Some(&stable));
        assert_eq!(fields(&broken), ["maxParallelism"]);
        assert!(
            broken[0].message.contains("changed from 128 to 256"),
            "{}",
            broken[0]
        );
        s.max_parallelism = Some(128);
        assert_eq!(validate(&s, Some(&stable)), []);
    }

    #[test]
    fn too_few_worker_slots_bad_durations_and_local_storage_name_their_field() {
        let mut s = spec();
        s.parallelism = 5;
        s.workers = Some(WorkersSpec {
            replicas: Some(2),
            slots: Some(2),
            resources: None,
        });
        s.checkpoints = Some(CheckpointSpec {
            interval: Some("10 seconds".into()),
            storage: "memory://x".into(),
            ..CheckpointSpec::default()
        });
        let broken = validate(&s, None);
        assert_eq!(
            fields(&broken),
            [
                "workers.replicas",
                "checkpoints.interval",
                "checkpoints.storage"
            ]
        );
        assert_eq!(
            broken[0].to_string(),
            "spec.workers.replicas: 2 workers × 2 slots cannot run parallelism 5: raise it, or leave it out to have it computed"
        );
    }

    #[test]
    fn upgrade_modes_need_their_storage() {
        let mut s = spec();
        s.checkpoints = None;
        assert_eq!(fields(&validate(&s, None)), ["upgradeMode"]);
        s.upgrade_mode = UpgradeMode::LastState;
        assert_eq!(fields(&validate(&s, None)), ["upgradeMode"]);
        s.upgrade_mode = UpgradeMode::Stateless;
        assert_eq!(validate(&s, None), []);
    }

    #[test]
    fn a_pod_template_must_be_one() {
        let mut s = spec();
        s.pod_template = Some(serde_json::json!({"spec": {"containers": "not a list"}}));
        assert_eq!(fields(&validate(&s, None)), ["podTemplate"]);
        s.pod_template = Some(serde_json::json!({"metadata": {"labels": {"team": "fraud"}}}));
        assert_eq!(validate(&s, None), []);
    }
}

//! The job's `strom.toml` (the ConfigMap `<name>-config`, mounted at `/etc/strom`): the
//! settings of a StreamJob that stay the same for the whole run — checkpointing, storage,
//! state backend, restart strategy — as `[master]` and `[worker]` sections whose keys are
//! the long flags of `strom master` and `strom worker`. What names the run (job, args,
//! parallelism, run id, where to start from) is on the command line instead, so a pod
//! never mixes one run's identity with another's settings.

use crate::crd::{
    CheckpointMode, DEFAULT_MAX_PARALLELISM, RestartKind, StateBackendKind, StreamJobSpec,
};
use crate::duration;
use std::fmt::Write;

/// Where the master's REST API and control plane listen inside the pod.
pub const CONTROL_PORT: i32 = 6123;
pub const REST_PORT: i32 = 8081;
/// Where a worker's data plane listens.
pub const DATA_PORT: i32 = 6124;

/// The checkpoint root of one StreamJob: its own directory under `checkpoints.storage`,
/// so jobs sharing a bucket never see each other's checkpoints.
pub fn checkpoint_root(storage: &str, namespace: &str, name: &str) -> String {
    format!("{}/{namespace}/{name}", storage.trim_end_matches('/'))
}

/// Where the operator asks for savepoints of this StreamJob to go.
pub fn savepoint_directory(spec: &StreamJobSpec, namespace: &str, name: &str) -> Option<String> {
    let base = match spec.savepoints.as_ref().and_then(|s| s.storage.clone()) {
        Some(storage) => storage,
        None => format!(
            "{}/savepoints",
            spec.checkpoints.as_ref()?.storage.trim_end_matches('/')
        ),
    };
    Some(format!("{}/{namespace}/{name}", base.trim_end_matches('/')))
}

/// The master's address as the workers reach it: the master Service.
pub fn master_address(namespace: &str, name: &str) -> String {
    format!(
        "http://{}.{namespace}.svc:{CONTROL_PORT}",
        super::names::master(name)
    )
}

/// `strom.toml` for a run of `spec`.
pub fn strom_toml(spec: &StreamJobSpec, namespace: &str, name: &str) -> String {
    let mut master: Vec<(&str, String)> = vec![
        // The operator reads the end of a run from the master; a master that exited
        // would be restarted by its Deployment.
        ("after-job-end", quoted("serve")),
        (
            "max-parallelism",
            spec.max_parallelism
                .unwrap_or(DEFAULT_MAX_PARALLELISM)
                .to_string(),
        ),
    ];
    if let Some(c) = &spec.checkpoints {
        master.push((
            "checkpoint-dir",
            quoted(&checkpoint_root(&c.storage, namespace, name)),
        ));
        let interval = c
            .interval
            .as_deref()
            .and_then(|i| duration::parse(i).ok())
            .unwrap_or(std::time::Duration::from_secs(10));
        master.push(("checkpoint-interval-ms", interval.as_millis().to_string()));
        master.push((
            "checkpoint-mode",
            quoted(match c.mode {
                CheckpointMode::ExactlyOnce => "exactly-once",
                CheckpointMode::AtLeastOnce => "at-least-once",
            }),
        ));
        master.push(("checkpoints-retained", c.retain.unwrap_or(1).to_string()));
        if let Some(s3) = &c.s3 {
            if let Some(endpoint) = &s3.endpoint {
                master.push(("s3-endpoint", quoted(endpoint)));
            }
            if let Some(region) = &s3.region {
                master.push(("s3-region", quoted(region)));
            }
            if let Some(path_style) = s3.path_style {
                master.push(("s3-path-style", quoted(&path_style.to_string())));
            }
        }
    }
    if let Some(backend) = &spec.state_backend {
        master.push((
            "state-backend",
            quoted(match backend.kind {
                StateBackendKind::Heap => "heap",
                StateBackendKind::RocksDb => "rocksdb",
            }),
        ));
        if let Some(mb) = backend.rocksdb_memory_mb {
            master.push(("rocksdb-memory-mb", mb.to_string()));
        }
        // The root filesystem is read-only; the pod's `state` volume is not.
        master.push(("state-dir", quoted(super::STATE_DIR)));
    }
    let restart = spec.restart_strategy.clone().unwrap_or_default();
    let delay_ms = restart
        .delay
        .as_deref()
        .and_then(|d| duration::parse(d).ok())
        .map(|d| d.as_millis().to_string());
    let attempts = restart.attempts.map(|a| a.to_string());
    match spec.restart_strategy.as_ref().map(|r| r.kind) {
        // Flink's default with checkpointing: restart for ever, backing off.
        None | Some(RestartKind::ExponentialDelay) => {
            master.push(("restart-strategy", quoted("exponential-delay")));
        }
        Some(RestartKind::None) => master.push(("restart-strategy", quoted("none"))),
        Some(RestartKind::FixedDelay) => {
            master.push(("restart-strategy", quoted("fixed-delay")));
            if let Some(a) = attempts {
                master.push(("restart-attempts", a));
            }
        }
        Some(RestartKind::FailureRate) => {
            master.push(("restart-strategy", quoted("failure-rate")));
            if let Some(a) = attempts {
                master.push(("restart-max-failures", a));
            }
        }
    }
    if let Some(d) = delay_ms {
        master.push(("restart-delay-ms", d));
    }
    let slots = spec.workers.as_ref().and_then(|w| w.slots).unwrap_or(1);
    let worker: Vec<(&str, String)> = vec![
        ("master", quoted(&master_address(namespace, name))),
        ("slots", slots.to_string()),
    ];
    let mut text = format!(
        "# Written by strom-operator for StreamJob {namespace}/{name}; changes here are overwritten.\n"
    );
    for (section, entries) in [("master", master), ("worker", worker)] {
        let _ = writeln!(text, "\n[{section}]");
        for (key, value) in entries {
            let _ = writeln!(text, "{key} = {value}");
        }
    }
    text
}

/// A TOML basic string.
fn quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_holds_the_runs_settings_as_the_flags_of_master_and_worker() {
        let spec: StreamJobSpec = serde_json::from_value(serde_json::json!({
            "image": "strom:dev",
            "job": {"name": "fraud-detection"},
            "parallelism": 4,
            "workers": {"slots": 2},
            "checkpoints": {"interval": "5s", "storage": "s3://bucket/strom/",
                            "s3": {"endpoint": "http://minio:9000", "pathStyle": true}},
            "stateBackend": {"type": "RocksDb", "rocksdbMemoryMb": 128},
            "restartStrategy": {"type": "FixedDelay", "attempts": 3, "delay": "2s"},
        }))
        .expect("a spec");
        assert_eq!(
            strom_toml(&spec, "prod", "fraud"),
            r#"# Written by strom-operator for StreamJob prod/fraud; changes here are overwritten.

[master]
after-job-end = "serve"
max-parallelism = 128
checkpoint-dir = "s3://bucket/strom/prod/fraud"
checkpoint-interval-ms = 5000
checkpoint-mode = "exactly-once"
checkpoints-retained = 1
s3-endpoint = "http://minio:9000"
s3-path-style = "true"
state-backend = "rocksdb"
rocksdb-memory-mb = 128
state-dir = "/var/lib/strom/state"
restart-strategy = "fixed-delay"
restart-attempts = 3
restart-delay-ms = 2000

[worker]
master = "http://fraud-master.prod.svc:6123"
slots = 2
"#
        );
        assert_eq!(
            savepoint_directory(&spec, "prod", "fraud").as_deref(),
            Some("s3://bucket/strom/savepoints/prod/fraud")
        );
    }

    #[test]
    fn values_are_quoted_so_no_spec_text_can_add_a_key() {
        assert_eq!(quoted("a\"b\\c\nd"), r#""a\"b\\c\nd""#);
    }
}

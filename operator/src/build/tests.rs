use super::*;
use serde_json::json;

fn job(spec: Value) -> StreamJob {
    let mut job = StreamJob::new("fraud", serde_json::from_value(spec).expect("a spec"));
    job.metadata.namespace = Some("payments".into());
    job.metadata.uid = Some("0d5e2c1a-1111-2222-3333-444455556666".into());
    job
}

fn base_spec() -> Value {
    json!({
        "image": "ghcr.io/strom-dev/strom:0.1.0",
        "job": {"name": "fraud-detection", "args": {"rules": "rules", "rate": "1000"}},
        "parallelism": 3,
        "workers": {"slots": 2},
        "checkpoints": {"interval": "10s", "storage": "s3://bucket/strom"},
        "storageSecretRef": "strom-s3",
    })
}

fn run(job: &StreamJob) -> DeployedRun {
    DeployedRun {
        run_id: "0d5e2c1a-2".into(),
        run: 2,
        spec: serde_json::to_string(&job.spec).expect("json"),
        generation: 1,
        from_savepoint: Some("s3://bucket/strom/savepoints/payments/fraud/chk-7".into()),
        ..Default::default()
    }
}

fn container(d: &Deployment) -> Value {
    let d = serde_json::to_value(d).expect("json");
    d["spec"]["template"]["spec"]["containers"][0].clone()
}

#[test]
fn the_master_runs_the_job_of_the_run_from_its_savepoint_behind_its_service() {
    let job = job(base_spec());
    let desired = build(&job, &run(&job)).expect("builds");
    let master = container(&desired.master);
    assert_eq!(
        master["command"],
        json!([
            "strom",
            "master",
            "fraud-detection",
            "--parallelism",
            "3",
            "--arg",
            "rate=1000",
            "--arg",
            "rules=rules",
            "--run-id",
            "0d5e2c1a-2",
            "--from-checkpoint",
            "s3://bucket/strom/savepoints/payments/fraud/chk-7"
        ])
    );
    assert_eq!(master["image"], json!("ghcr.io/strom-dev/strom:0.1.0"));
    assert_eq!(
        master["envFrom"],
        json!([{"secretRef": {"name": "strom-s3"}}])
    );
    let env: BTreeMap<String, Value> = master["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| (e["name"].as_str().unwrap_or("").to_string(), e.clone()))
        .collect();
    assert_eq!(env["STROM_CONFIG"]["value"], json!("/etc/strom/strom.toml"));
    assert_eq!(env["STROM_REST_BIND"]["value"], json!("$(POD_IP):8081"));
    assert_eq!(
        env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"],
        json!("status.podIP")
    );
    let d = serde_json::to_value(&desired.master).expect("json");
    assert_eq!(d["metadata"]["name"], json!("fraud-master"));
    assert_eq!(d["spec"]["replicas"], json!(1));
    assert_eq!(d["spec"]["strategy"]["type"], json!("Recreate"));
    assert_eq!(
        d["spec"]["template"]["metadata"]["labels"]["strom.dev/run-id"],
        json!("0d5e2c1a-2")
    );
    let service = serde_json::to_value(&desired.master_service).expect("json");
    assert_eq!(
        service["spec"]["selector"],
        d["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(
        service["spec"]["ports"],
        json!([
            {"name": "control", "port": 6123, "targetPort": "control"},
            {"name": "rest", "port": 8081, "targetPort": "rest"},
        ])
    );
}

#[test]
fn workers_get_enough_slots_reach_the_master_service_and_no_api_token() {
    let job = job(base_spec());
    let desired = build(&job, &run(&job)).expect("builds");
    let workers = serde_json::to_value(&desired.workers).expect("json");
    // 3 subtasks, 2 slots each: 2 workers.
    assert_eq!(workers["spec"]["replicas"], json!(2));
    let pod = &workers["spec"]["template"]["spec"];
    assert_eq!(pod["automountServiceAccountToken"], json!(false));
    assert_eq!(pod["containers"][0]["command"], json!(["strom", "worker"]));
    let toml = desired
        .config_map
        .data
        .as_ref()
        .and_then(|d| d.get("strom.toml"))
        .expect("strom.toml");
    assert!(toml.contains("master = \"http://fraud-master.payments.svc:6123\""));
    assert!(toml.contains("slots = 2"));
    assert!(toml.contains("checkpoint-dir = \"s3://bucket/strom/payments/fraud\""));
}

#[test]
fn every_child_is_owned_by_the_streamjob_and_building_twice_gives_the_same_objects() {
    let job = job(base_spec());
    let first = build(&job, &run(&job)).expect("builds");
    assert_eq!(first, build(&job, &run(&job)).expect("builds"));
    let owners = [
        &first.config_map.metadata,
        &first.service_account.metadata,
        &first.role.metadata,
        &first.role_binding.metadata,
        &first.master_service.metadata,
        &first.master.metadata,
        &first.workers.metadata,
    ]
    .map(|m| m.owner_references.clone().unwrap_or_default());
    for refs in owners {
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0].kind, "StreamJob");
        assert_eq!(refs[0].name, "fraud");
        assert_eq!(refs[0].controller, Some(true));
    }
}

#[test]
fn the_master_may_touch_only_its_lease_and_ha_configmap() {
    let job = job(base_spec());
    let role = serde_json::to_value(build(&job, &run(&job)).expect("builds").role).expect("json");
    assert_eq!(
        role["rules"],
        json!([
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
             "resourceNames": ["fraud-master"], "verbs": ["get", "watch", "update", "patch"]},
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
            {"apiGroups": [""], "resources": ["configmaps"],
             "resourceNames": ["fraud-ha"], "verbs": ["get", "watch", "update", "patch"]},
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]},
        ])
    );
}

#[test]
fn a_suspended_run_has_no_pods_and_a_last_state_run_restores_the_latest_checkpoint() {
    let job = job(base_spec());
    let mut suspended = run(&job);
    suspended.suspended = true;
    let desired = build(&job, &suspended).expect("builds");
    assert_eq!(desired.master.spec.replicas, Some(0));
    assert_eq!(desired.workers.spec.replicas, Some(0));

    let mut last_state = run(&job);
    last_state.from_savepoint = None;
    last_state.from_latest_checkpoint = true;
    let command = container(&build(&job, &last_state).expect("builds").master)["command"].clone();
    assert_eq!(
        command[command.as_array().map_or(0, Vec::len) - 1],
        json!("--from-latest-checkpoint")
    );
}

#[test]
fn the_pod_template_adds_to_both_pods_but_cannot_take_their_selector_labels() {
    let mut spec = base_spec();
    spec["podTemplate"] = json!({
        "metadata": {"labels": {"team": "risk", "app.kubernetes.io/component": "mine"}},
        "spec": {
            "containers": [{"name": "strom", "env": [{"name": "RUST_BACKTRACE", "value": "1"}]}],
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "streaming"}],
        }
    });
    let job = job(spec);
    let desired = build(&job, &run(&job)).expect("builds");
    for (d, component) in [(&desired.master, "master"), (&desired.workers, "worker")] {
        let d = serde_json::to_value(d).expect("json");
        let template = &d["spec"]["template"];
        assert_eq!(template["metadata"]["labels"]["team"], json!("risk"));
        assert_eq!(
            template["metadata"]["labels"]["app.kubernetes.io/component"],
            json!(component)
        );
        assert_eq!(
            template["spec"]["tolerations"][0]["value"],
            json!("streaming")
        );
        let env = template["spec"]["containers"][0]["env"]
            .as_array()
            .expect("env");
        assert!(env.iter().any(|e| e["name"] == "RUST_BACKTRACE"));
        assert!(env.iter().any(|e| e["name"] == "STROM_CONFIG"));
    }
}

#[test]
fn a_pod_template_that_is_no_pod_template_is_an_error_naming_it() {
    let mut spec = base_spec();
    spec["podTemplate"] = json!({"spec": {"containers": "not a list"}});
    let job = job(spec);
    let e = build(&job, &run(&job)).expect_err("refused");
    assert!(
        e.to_string()
            .starts_with("spec.podTemplate does not fit the master pod"),
        "{e}"
    );
}

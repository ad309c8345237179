//! The user journeys of DESIGN.md §8 layer 4 on the simulated cluster: the real
//! operator (leader election included) against the in-memory API server, and real
//! `strom` masters and workers started by the pod runner for the Deployments the
//! operator makes. Each journey checks what a user would: conditions and phases of the
//! StreamJob, and the job's committed output — every word's running count goes 1, 2, 3…
//! with no number missing (a record lost) or repeated (a record counted twice), across
//! upgrades and rescales.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::CustomResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use strom_e2e::kube_sim::ApiServer;
use strom_e2e::pods::{PodRunner, RunnerOptions};
use strom_lease::ElectionConfig;
use strom_operator::crd::{StreamJob, StreamJobSpec};

const NS: &str = "default";
const IMAGE: &str = "strom:dev";

/// The `strom` binary, built fresh unless STROM_BIN names one.
fn strom_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("STROM_BIN") {
        return bin.into();
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args(["build", "-q", "-p", "strom", "--bin", "strom"])
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building strom failed");
    let exe = std::env::current_exe().expect("the test's path");
    // target/debug/deps/journeys-… → target/debug/strom
    exe.parent()
        .and_then(Path::parent)
        .map(|d| d.join("strom"))
        .expect("a target directory")
}

struct Cluster {
    api: ApiServer,
    client: kube::Client,
    runner: Option<PodRunner>,
    operators: Vec<(
        String,
        tokio::task::JoinHandle<()>,
        Option<tokio::sync::oneshot::Sender<()>>,
    )>,
    dir: PathBuf,
}

impl Cluster {
    async fn start(name: &str, operators: usize) -> Cluster {
        // Not under /tmp: pods mount an emptyDir at /tmp, and the runner maps that path.
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("e2e-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a work dir");
        let api = ApiServer::start().await.expect("the API server starts");
        let validate = Arc::new(|new: &Value, old: Option<&Value>| {
            StreamJobSpec::validate_cel(new, old).map_err(|e| e.to_string())
        });
        api.register_crd(StreamJob::crd(), Some(validate))
            .expect("the CRD registers");
        let kubeconfig = dir.join("kubeconfig");
        api.write_kubeconfig(&kubeconfig).expect("a kubeconfig");
        let client = api.client();
        let runner = PodRunner::start(
            client.clone(),
            RunnerOptions {
                images: [(IMAGE.to_string(), strom_binary())].into(),
                work_dir: dir.join("pods"),
                kubeconfig,
                grace: Duration::from_secs(5),
            },
        );
        let mut cluster = Cluster {
            api,
            client,
            runner: Some(runner),
            operators: Vec::new(),
            dir,
        };
        for i in 0..operators {
            cluster.start_operator(&format!("operator-{i}"));
        }
        cluster
    }

    fn start_operator(&mut self, identity: &str) {
        let client = self.client.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let options = strom_operator::run::Options {
            namespace: None,
            identity: identity.to_string(),
            lease: Some((NS.to_string(), "strom-operator".to_string())),
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

    /// The operator holding the Lease.
    async fn leader(&self) -> String {
        let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
            Api::namespaced(self.client.clone(), NS);
        leases
            .get("strom-operator")
            .await
            .ok()
            .and_then(|l| l.spec?.holder_identity)
            .unwrap_or_default()
    }

    /// Ends an operator as kill -9 would: no Lease released, nothing finished.
    fn kill_operator(&mut self, identity: &str) {
        for (id, task, stop) in &mut self.operators {
            if id == identity {
                task.abort();
                stop.take();
            }
        }
    }

    fn jobs(&self) -> Api<StreamJob> {
        Api::namespaced(self.client.clone(), NS)
    }

    /// `kubectl apply --server-side` of a StreamJob.
    async fn apply(&self, name: &str, spec: Value) -> Result<StreamJob, kube::Error> {
        let manifest = json!({
            "apiVersion": "strom.dev/v1alpha1", "kind": "StreamJob",
            "metadata": {"name": name, "namespace": NS},
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

    /// Waits until the StreamJob satisfies `ok`; panics with its status and the pods' logs.
    async fn wait(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        ok: impl Fn(&StreamJob) -> bool,
    ) -> StreamJob {
        let start = Instant::now();
        loop {
            if let Ok(job) = self.jobs().get(name).await
                && ok(&job)
            {
                return job;
            }
            if start.elapsed() > timeout {
                let job = self.jobs().get(name).await.ok();
                let logs = self
                    .runner
                    .as_ref()
                    .map(|r| r.logs(name))
                    .unwrap_or_default();
                panic!(
                    "{name}: not {what} after {timeout:?}\nstatus: {}\n{logs}",
                    serde_json::to_string_pretty(&job.and_then(|j| j.status)).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn wait_ready_run(&self, name: &str, run: i64, timeout: Duration) -> StreamJob {
        self.wait(name, &format!("Ready with run {run}"), timeout, |j| {
            let s = j.status.clone().unwrap_or_default();
            s.deployed.as_ref().is_some_and(|d| d.run == run)
                && s.upgrade.is_none()
                && s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
        })
        .await
    }

    async fn shutdown(mut self) {
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

fn condition(job: &StreamJob, type_: &str) -> Option<(String, String)> {
    job.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

/// A word-count StreamJob: generated lines at `rate`/s, exactly-once output under `dir`.
fn word_count(dir: &Path, rate: u32, parallelism: i32) -> Value {
    json!({
        "image": IMAGE,
        "job": {"name": "word-count", "args": {
            "rate": rate.to_string(),
            "events": "0",
            "exactly-once": "true",
            "output": dir.join("out").display().to_string(),
        }},
        "parallelism": parallelism,
        "checkpoints": {"interval": "500ms", "storage": format!("file://{}", dir.join("checkpoints").display())},
        "rollback": {"deadline": "40s"},
    })
}

/// Every committed output line, and a check that each word's counts are 1, 2, … n:
/// none missing, none twice. Returns the number of lines.
fn exact_counts(dir: &Path) -> usize {
    let mut counts: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut lines = 0;
    let out = dir.join("out");
    let mut files = Vec::new();
    collect_parts(&out, &mut files);
    for file in files {
        for line in std::fs::read_to_string(&file).unwrap_or_default().lines() {
            lines += 1;
            let (word, count) = parse_count(line).unwrap_or_else(|| panic!("not a count: {line}"));
            counts.entry(word).or_default().push(count);
        }
    }
    for (word, mut seen) in counts {
        seen.sort_unstable();
        let expected: Vec<u64> = (1..=seen.len() as u64).collect();
        assert_eq!(
            seen, expected,
            "the counts of '{word}' (lost or repeated records)"
        );
    }
    lines
}

fn collect_parts(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            collect_parts(&path, out);
        } else if name.starts_with("part-") {
            out.push(path);
        }
    }
}

/// `word,count` or `(word,count)` or `word count`.
fn parse_count(line: &str) -> Option<(String, u64)> {
    let line = line.trim().trim_start_matches('(').trim_end_matches(')');
    let (word, count) = line.rsplit_once([',', ' ', '\t'])?;
    Some((word.trim().to_string(), count.trim().parse().ok()?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn create_upgrade_rescale_suspend_resume_and_delete_keep_the_output_exact() {
    let cluster = Cluster::start("lifecycle", 1).await;
    let dir = cluster.dir.join("job");
    let name = "counts";

    // Create → Running.
    let t = Instant::now();
    cluster
        .apply(name, word_count(&dir, 200, 2))
        .await
        .expect("applied");
    cluster
        .wait_ready_run(name, 1, Duration::from_secs(60))
        .await;
    eprintln!("created → Running in {:.1} s", t.elapsed().as_secs_f64());
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Upgrade (a job argument changes) through a savepoint.
    let t = Instant::now();
    cluster
        .apply(name, word_count(&dir, 300, 2))
        .await
        .expect("applied");
    let job = cluster
        .wait_ready_run(name, 2, Duration::from_secs(60))
        .await;
    eprintln!(
        "upgrade applied → new run Running in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let s = job.status.clone().unwrap_or_default();
    let from = s
        .deployed
        .as_ref()
        .and_then(|d| d.from_savepoint.clone())
        .expect("started from a savepoint");
    assert_eq!(
        s.savepoints
            .as_ref()
            .and_then(|h| h.last.as_ref())
            .map(|l| l.location.clone()),
        Some(from)
    );
    assert_eq!(
        condition(&job, "Degraded").map(|c| c.1),
        Some("AsExpected".into())
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(exact_counts(&dir) > 0);

    // Rescale 2 → 4 as `kubectl scale sj counts --replicas 4` does.
    let scale = json!({"spec": {"replicas": 4}});
    cluster
        .jobs()
        .patch_scale(name, &PatchParams::default(), &Patch::Merge(&scale))
        .await
        .expect("scaled");
    let job = cluster
        .wait_ready_run(name, 3, Duration::from_secs(60))
        .await;
    assert_eq!(job.status.as_ref().and_then(|s| s.parallelism), Some(4));
    let workers: Api<Deployment> = Api::namespaced(cluster.client.clone(), NS);
    let w = workers
        .get(&format!("{name}-worker"))
        .await
        .expect("workers");
    assert_eq!(w.spec.replicas, Some(4));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before_suspend = exact_counts(&dir);

    // Suspend: savepoint, no pods; resume from it.
    let mut spec = word_count(&dir, 300, 4);
    spec["state"] = json!("Suspended");
    cluster.apply(name, spec).await.expect("applied");
    cluster
        .wait(name, "Suspended", Duration::from_secs(60), |j| {
            j.status.as_ref().and_then(|s| s.phase) == Some(strom_operator::crd::Phase::Suspended)
        })
        .await;
    let suspended = exact_counts(&dir);
    assert!(suspended >= before_suspend);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        exact_counts(&dir),
        suspended,
        "nothing runs while suspended"
    );
    cluster
        .apply(name, word_count(&dir, 300, 4))
        .await
        .expect("applied");
    cluster
        .wait_ready_run(name, 4, Duration::from_secs(60))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(exact_counts(&dir) > suspended);

    // Delete: children and HA data go.
    cluster
        .jobs()
        .delete(name, &DeleteParams::default())
        .await
        .expect("deleted");
    let start = Instant::now();
    loop {
        let gone = cluster.jobs().get_opt(name).await.expect("reads").is_none()
            && workers
                .list(&ListParams::default())
                .await
                .expect("lists")
                .items
                .is_empty();
        if gone {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "children still there"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let maps: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), NS);
    assert!(
        maps.get_opt(&format!("{name}-ha"))
            .await
            .expect("reads")
            .is_none()
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_specs_and_bad_upgrades_never_stop_the_running_job_and_a_new_leader_finishes_an_upgrade()
 {
    let mut cluster = Cluster::start("failures", 2).await;
    let dir = cluster.dir.join("job");
    let name = "counts";
    let mut spec = word_count(&dir, 200, 2);
    spec["rollback"] = json!({"deadline": "15s"});
    cluster.apply(name, spec.clone()).await.expect("applied");
    cluster
        .wait_ready_run(name, 1, Duration::from_secs(60))
        .await;

    // A spec the API server's CEL rules refuse never reaches the operator.
    let mut refused = spec.clone();
    refused["maxParallelism"] = json!(1);
    let e = cluster.apply(name, refused).await.expect_err("refused");
    assert!(
        e.to_string()
            .contains("maxParallelism must be at least parallelism"),
        "{e}"
    );

    // A spec only the operator can judge is reported; the job runs on.
    let mut local = spec.clone();
    local["checkpoints"]["storage"] = json!("/tmp/not-shared");
    cluster.apply(name, local).await.expect("applied");
    let job = cluster
        .wait(name, "Degraded InvalidSpec", Duration::from_secs(20), |j| {
            condition(j, "Degraded") == Some(("True".into(), "InvalidSpec".into()))
        })
        .await;
    assert_eq!(
        job.status
            .as_ref()
            .and_then(|s| s.deployed.as_ref())
            .map(|d| d.run),
        Some(1)
    );
    assert_eq!(condition(&job, "Ready").map(|c| c.0), Some("True".into()));

    // A bad image never runs: rolled back from the upgrade's savepoint at the deadline.
    let mut bad = spec.clone();
    bad["image"] = json!("strom:typo");
    cluster.apply(name, bad).await.expect("applied");
    let job = cluster
        .wait(name, "rolled back", Duration::from_secs(90), |j| {
            condition(j, "Degraded") == Some(("True".into(), "RolledBack".into()))
                && condition(j, "Ready").map(|c| c.0) == Some("True".into())
        })
        .await;
    let run = job
        .status
        .as_ref()
        .and_then(|s| s.deployed.clone())
        .expect("a run");
    assert_eq!(run.run, 3, "run 2 was the bad image, run 3 the rollback");
    assert!(run.spec.contains("strom:dev"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    exact_counts(&dir);

    // The operator leading is killed mid-upgrade; the other one finishes it.
    let mut good = spec.clone();
    good["job"]["args"]["rate"] = json!("300");
    cluster.apply(name, good).await.expect("applied");
    cluster
        .wait(name, "upgrading", Duration::from_secs(20), |j| {
            j.status.as_ref().and_then(|s| s.upgrade.as_ref()).is_some()
        })
        .await;
    let leader = cluster.leader().await;
    cluster.kill_operator(&leader);
    let job = cluster
        .wait_ready_run(name, 4, Duration::from_secs(90))
        .await;
    assert_eq!(
        condition(&job, "Degraded").map(|c| c.1),
        Some("AsExpected".into())
    );
    assert_ne!(cluster.leader().await, leader);
    tokio::time::sleep(Duration::from_secs(2)).await;
    exact_counts(&dir);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_standby_master_takes_over_from_a_lost_leader_and_the_job_goes_on_exactly() {
    let cluster = Cluster::start("failover", 1).await;
    let dir = cluster.dir.join("job");
    let name = "counts";
    let mut spec = word_count(&dir, 200, 2);
    spec["master"] = json!({"replicas": 2});
    cluster.apply(name, spec).await.expect("applied");
    cluster
        .wait_ready_run(name, 1, Duration::from_secs(90))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(cluster.client.clone(), NS);
    let holder =
        |l: k8s_openapi::api::coordination::v1::Lease| l.spec.and_then(|s| s.holder_identity);
    let leader = holder(
        leases
            .get(&format!("{name}-master"))
            .await
            .expect("the masters' Lease"),
    )
    .expect("a leading master");
    let runner = cluster.runner.as_ref().expect("the pod runner");
    let masters: Vec<String> = runner
        .pods()
        .into_iter()
        .filter(|p| p.name.starts_with(&format!("{name}-master")))
        .map(|p| p.name)
        .collect();
    assert_eq!(masters.len(), 2, "{masters:?}");
    assert!(masters.contains(&leader));
    let before = exact_counts(&dir);

    // The leader's pod is lost (kill -9, gone); a standby — the other master, or the pod
    // its Deployment starts in place of the lost one — leads once the Lease runs out.
    runner.delete(&leader);
    let start = Instant::now();
    loop {
        let now = leases
            .get(&format!("{name}-master"))
            .await
            .ok()
            .and_then(holder);
        if now.as_ref().is_some_and(|h| *h != leader) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "no new leader: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "standby master leads {:.1} s after the leader was lost",
        start.elapsed().as_secs_f64()
    );
    // Same run, resumed from its newest checkpoint: more output, still exact.
    let job = cluster
        .wait_ready_run(name, 1, Duration::from_secs(60))
        .await;
    let maps: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), NS);
    let ha = maps
        .get(&format!("{name}-ha"))
        .await
        .expect("the HA ConfigMap")
        .data
        .unwrap_or_default();
    assert_ne!(ha.get("leader"), Some(&leader));
    assert!(
        ha.get("latestCheckpoint").is_some_and(|c| !c.is_empty()),
        "{ha:?}"
    );
    assert_eq!(
        condition(&job, "Degraded").map(|c| c.1),
        Some("AsExpected".into())
    );
    let start = Instant::now();
    while exact_counts(&dir) <= before {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no output after the failover"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    cluster.shutdown().await;
}

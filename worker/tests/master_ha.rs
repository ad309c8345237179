//! High availability of masters (`strom master --leader-lease`), with real processes on
//! loopback and the simulated Kubernetes API (`strom_e2e::kube_sim`, in this process;
//! the masters reach it through a kubeconfig in `KUBECONFIG`):
//! - of two masters of the same run only the leader is ready and acts; killed with -9,
//!   the follower takes over within the lease duration, the workers attach to it, the
//!   job resumes from the run's newest checkpoint and its committed output is exactly an
//!   undisturbed run's; the HA ConfigMap names the new leader;
//! - a leader stopped with SIGTERM hands the Lease back, so the follower takes over long
//!   before the lease would expire; a leader whose Lease is taken exits with code 1;
//! - `POST /v1/savepoint-disposal` deletes a savepoint and refuses what is not one.
//!
//! Workers reach one master address; as the master Service does in Kubernetes, a small
//! TCP forwarder here sends each of their connections to the master whose `/readyz`
//! answers 200.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::cluster::{
    STROM, completed, eventually, job, run_alone, running_job_id, sigterm, wait_for_exit,
    worker_of as worker,
};
use common::{Processes, TempDir, free_port, read_parts};
use http::{Method, StatusCode};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, PostParams};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use strom::cluster::client::RestClient;
use strom_e2e::kube_sim::ApiServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The simulated Kubernetes API, on a runtime of its own, and its kubeconfig.
struct Kube {
    server: ApiServer,
    kubeconfig: PathBuf,
    runtime: tokio::runtime::Runtime,
}

impl Kube {
    fn start(dir: &Path) -> Kube {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let server = runtime.block_on(ApiServer::start()).unwrap();
        let kubeconfig = dir.join("kubeconfig");
        server.write_kubeconfig(&kubeconfig).unwrap();
        Kube {
            server,
            kubeconfig,
            runtime,
        }
    }

    /// Who holds Lease `name` (in `default`), if anyone.
    fn holder(&self, name: &str) -> Option<String> {
        let lease =
            self.server
                .object("coordination.k8s.io", "v1", "leases", Some("default"), name)?;
        lease["spec"]["holderIdentity"]
            .as_str()
            .filter(|h| !h.is_empty())
            .map(String::from)
    }

    /// The data of ConfigMap `name` (in `default`).
    fn config_map(&self, name: &str) -> Option<serde_json::Value> {
        self.server
            .object("", "v1", "configmaps", Some("default"), name)
            .map(|c| c["data"].clone())
    }

    /// Another candidate takes Lease `name`, as if the holder had not renewed it in time.
    fn steal(&self, name: &str, thief: &str) {
        let api: Api<Lease> = Api::default_namespaced(self.server.client());
        self.runtime.block_on(async {
            let mut lease = api.get(name).await.unwrap();
            let spec = lease.spec.as_mut().unwrap();
            spec.holder_identity = Some(thief.into());
            spec.renew_time = Some(MicroTime(k8s_openapi::jiff::Timestamp::now()));
            spec.lease_duration_seconds = Some(60);
            api.replace(name, &PostParams::default(), &lease)
                .await
                .unwrap();
        });
    }

    /// A TCP forwarder for the masters' control ports: each connection goes to the
    /// first master whose `/readyz` answers 200 (as the master Service sends traffic to
    /// ready masters only); with none ready, it is closed. Its address.
    fn forward_to_ready(&self, masters: Vec<Ports>) -> String {
        let listener = self
            .runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let address = listener.local_addr().unwrap();
        self.runtime.spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                let masters = masters.clone();
                tokio::spawn(async move {
                    for m in masters {
                        if !ready_async(m.rest).await {
                            continue;
                        }
                        if let Ok(mut outbound) =
                            tokio::net::TcpStream::connect(("127.0.0.1", m.control)).await
                        {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                        return;
                    }
                });
            }
        });
        format!("http://{address}")
    }
}

/// Whether the REST API on `port` answers `/readyz` with 200 (one plain HTTP/1.1 GET).
async fn ready_async(port: u16) -> bool {
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    let request = "GET /readyz HTTP/1.1\r\nHost: master\r\nConnection: close\r\n\r\n";
    if s.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer).await;
    answer.starts_with(b"HTTP/1.1 200")
}

/// A master's control (`--bind`) and REST ports.
#[derive(Clone, Copy, Debug)]
struct Ports {
    control: u16,
    rest: u16,
}

impl Ports {
    fn new() -> Ports {
        Ports {
            control: free_port(),
            rest: free_port(),
        }
    }

    fn api(&self) -> RestClient {
        RestClient::new(&format!("http://127.0.0.1:{}", self.rest)).unwrap()
    }
}

/// A master that elects its leader with Lease `lease` as `identity` (timings `timing`),
/// its log to `log`.
fn ha_master(
    kube: &Kube,
    identity: &str,
    ports: Ports,
    lease: &str,
    timing: [u64; 3],
    args: &[String],
    log: &Path,
) -> Child {
    Command::new(STROM)
        .args(["master", "--bind", &format!("127.0.0.1:{}", ports.control)])
        .args(["--rest-bind", &format!("127.0.0.1:{}", ports.rest)])
        .args([
            "--heartbeat-interval-ms",
            "200",
            "--heartbeat-timeout-ms",
            "2000",
        ])
        .args(["--leader-lease", lease, "--leader-identity", identity])
        .args(["--leader-lease-duration-ms", &timing[0].to_string()])
        .args(["--leader-renew-deadline-ms", &timing[1].to_string()])
        .args(["--leader-retry-period-ms", &timing[2].to_string()])
        .args(args)
        .env("KUBECONFIG", &kube.kubeconfig)
        .env_remove("POD_NAME")
        .env_remove("POD_NAMESPACE")
        .env_remove("STROM_LEADER_LEASE")
        .env_remove("STROM_HA_CONFIGMAP")
        .current_dir(log.parent().unwrap())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// `/readyz`: its status and JSON body (none for `ready`).
fn readyz(api: &RestClient) -> Option<(StatusCode, Option<serde_json::Value>)> {
    let (status, body) = api.raw(Method::GET, "/readyz").ok()?;
    Some((status, serde_json::from_slice(&body).ok()))
}

fn is_ready(api: &RestClient) -> bool {
    readyz(api).is_some_and(|(status, _)| status == StatusCode::OK)
}

/// Asserts that the master behind `api` follows: healthy, not ready, no job, no worker.
fn assert_follows(api: &RestClient, ports: Ports, log: &Path) {
    let (status, _) = api.raw(Method::GET, "/healthz").unwrap();
    assert_eq!(status, StatusCode::OK);
    let (status, body) = readyz(api).unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let body = body.unwrap();
    assert_eq!(body["error"], "not_ready", "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("follows"),
        "{body}"
    );
    assert_eq!(
        api.call(Method::GET, "/v1/jobs").unwrap()["jobs"],
        serde_json::json!([])
    );
    assert_eq!(
        api.call(Method::GET, "/v1/workers").unwrap()["workers"],
        serde_json::json!([])
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", ports.control)).is_err(),
        "a follower listens for workers"
    );
    let text = std::fs::read_to_string(log).unwrap();
    assert!(
        !text.contains("job submitted") && !text.contains("master listening"),
        "{text}"
    );
}

#[test]
fn a_follower_takes_over_from_a_killed_leader_and_the_job_resumes_exactly() {
    let tmp = TempDir::new("master-ha-failover");
    let dir = tmp.path();
    let kube = Kube::start(dir);
    let expected = run_alone(&job(dir, "alone", &[]), &dir.join("alone"));
    let args = job(
        dir,
        "out",
        &[
            "--arg",
            "exactly-once=true",
            "--arg",
            "rate=1500",
            "--checkpoint-interval-ms",
            "300",
            "--run-id",
            "r1",
            "--after-job-end",
            "serve",
            "--ha-configmap",
            "wc-ha",
        ],
    );
    // A 3 s lease, renewed every 200 ms.
    let timing = [3000, 2000, 200];
    let lease_duration = Duration::from_millis(timing[0]);
    let (a, b) = (Ports::new(), Ports::new());
    let (api_a, api_b) = (a.api(), b.api());
    let (log_a, log_b) = (dir.join("master-a.log"), dir.join("master-b.log"));
    let master_address = kube.forward_to_ready(vec![a, b]);

    let mut processes = Processes(vec![ha_master(
        &kube,
        "master-a",
        a,
        "wc-master",
        timing,
        &args,
        &log_a,
    )]);
    eventually(30, "master-a did not become ready", || {
        is_ready(&api_a).then_some(())
    });
    assert_eq!(kube.holder("wc-master").as_deref(), Some("master-a"));
    processes.0.push(ha_master(
        &kube,
        "master-b",
        b,
        "wc-master",
        timing,
        &args,
        &log_b,
    ));
    eventually(30, "master-b did not serve its REST API", || {
        api_b.raw(Method::GET, "/healthz").ok()
    });
    processes.0.push(worker(&master_address, "w1"));
    processes.0.push(worker(&master_address, "w2"));
    let id = running_job_id(&api_a, 30);
    eventually(30, "master-a completed no checkpoints", || {
        (completed(&api_a, &id) >= 2).then_some(())
    });

    // Only the leader acts; the follower ran nothing and listens for no worker.
    assert_follows(&api_b, b, &log_b);
    let data = eventually(10, "the HA ConfigMap does not show a checkpoint", || {
        kube.config_map("wc-ha")
            .filter(|d| d["latestCheckpoint"].as_str().is_some())
    });
    assert_eq!(data["leader"], "master-a", "{data}");
    assert_eq!(data["runId"], "r1", "{data}");
    assert_eq!(data["jobState"], "Running", "{data}");
    assert_eq!(
        data["restAddress"],
        format!("127.0.0.1:{}", a.rest).as_str(),
        "{data}"
    );
    let job_a = api_a.call(Method::GET, &format!("/v1/jobs/{id}")).unwrap();
    assert_eq!(
        job_a["state"], "Running",
        "the job ended before the kill: {job_a}"
    );

    // The leader dies: the follower takes the lease within its duration, and leads.
    processes.0[0].kill().unwrap();
    let _ = processes.0[0].wait();
    let killed = Instant::now();
    eventually(15, "master-b did not take the lease", || {
        (kube.holder("wc-master").as_deref() == Some("master-b")).then_some(())
    });
    let took = killed.elapsed();
    assert!(
        took <= lease_duration + Duration::from_millis(1500),
        "master-b took the lease {took:?} after the leader died"
    );
    eventually(30, "master-b did not become ready", || {
        is_ready(&api_b).then_some(())
    });
    // (It may run so briefly that it is seen only once it finished.)
    let id_b: String = eventually(30, "master-b has no job", || {
        let v = api_b.call(Method::GET, "/v1/jobs").ok()?;
        v["jobs"][0]["id"].as_str().map(String::from)
    });
    let view = eventually(120, "the job did not finish under master-b", || {
        let view = api_b.call(Method::GET, &format!("/v1/jobs/{id_b}")).ok()?;
        (view["state"] != "Running" && view["state"] != "Created").then_some(view)
    });
    assert_eq!(view["state"], "Finished", "{view}");
    assert_eq!(view["run_id"], "r1", "{view}");
    let text = std::fs::read_to_string(&log_b).unwrap();
    assert!(
        text.contains("run 'r1' resumes from its own newest checkpoint"),
        "{text}"
    );
    assert!(text.contains("leading"), "{text}");
    // Nothing lost, nothing twice.
    assert_eq!(read_parts(&dir.join("out")), expected);

    let data = eventually(10, "the HA ConfigMap does not show the end", || {
        kube.config_map("wc-ha")
            .filter(|d| d["leader"] == "master-b" && d["jobState"] == "Finished")
    });
    assert_eq!(data["runId"], "r1", "{data}");
    assert!(
        data["latestCheckpoint"]
            .as_str()
            .unwrap()
            .contains("word-count/chk-"),
        "{data}"
    );
    assert_eq!(
        data["restAddress"],
        format!("127.0.0.1:{}", b.rest).as_str(),
        "{data}"
    );

    // SIGTERM: the lease is handed back.
    sigterm(&processes.0[1]);
    let (status, text) = wait_for_exit(&mut processes.0[1], &log_b, Duration::from_secs(15));
    assert!(status.success(), "{text}");
    assert_eq!(kube.holder("wc-master"), None, "{text}");
}

#[test]
fn a_leader_stopped_with_sigterm_hands_over_at_once_and_one_whose_lease_is_taken_exits() {
    let tmp = TempDir::new("master-ha-handover");
    let dir = tmp.path();
    let kube = Kube::start(dir);
    // Session masters with a 30 s lease: waiting for it to expire would take 30 s.
    let timing = [30_000, 20_000, 200];
    let (a, b) = (Ports::new(), Ports::new());
    let (api_a, api_b) = (a.api(), b.api());
    let (log_a, log_b) = (dir.join("master-a.log"), dir.join("master-b.log"));
    let mut processes = Processes(vec![ha_master(
        &kube,
        "master-a",
        a,
        "session-master",
        timing,
        &[],
        &log_a,
    )]);
    eventually(30, "master-a did not become ready", || {
        is_ready(&api_a).then_some(())
    });
    processes.0.push(ha_master(
        &kube,
        "master-b",
        b,
        "session-master",
        timing,
        &[],
        &log_b,
    ));
    eventually(30, "master-b did not serve its REST API", || {
        api_b.raw(Method::GET, "/healthz").ok()
    });
    std::thread::sleep(Duration::from_millis(600));
    assert_follows(&api_b, b, &log_b);
    // A follower takes no change: it would act beside the leader.
    let (status, body) = api_b
        .send(
            Method::POST,
            "/v1/savepoint-disposal",
            Some(&serde_json::json!({ "location": dir.display().to_string() })),
        )
        .unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"], "not_leader", "{body}");

    sigterm(&processes.0[0]);
    let stopped = Instant::now();
    let (status, text) = wait_for_exit(&mut processes.0[0], &log_a, Duration::from_secs(15));
    assert!(status.success(), "{text}");
    assert!(text.contains("released the lease"), "{text}");
    eventually(10, "master-b did not become ready", || {
        is_ready(&api_b).then_some(())
    });
    let took = stopped.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "master-b took over {took:?} after the leader stopped (the lease lasts 30 s)"
    );
    assert_eq!(kube.holder("session-master").as_deref(), Some("master-b"));

    // Another candidate takes the lease: master-b stops at once, with code 1.
    kube.steal("session-master", "intruder");
    let (status, text) = wait_for_exit(&mut processes.0[1], &log_b, Duration::from_secs(10));
    assert_eq!(status.code(), Some(1), "{text}");
    assert!(
        text.contains("error: lost the leader lease 'session-master'"),
        "{text}"
    );
    assert_eq!(kube.holder("session-master").as_deref(), Some("intruder"));
}

#[test]
fn a_master_without_kubernetes_says_what_is_missing() {
    let tmp = TempDir::new("master-ha-no-kube");
    let out = Command::new(STROM)
        .args([
            "master",
            "--leader-lease",
            "x-master",
            "--leader-identity",
            "m",
        ])
        .args(["--rest-bind", "127.0.0.1:0", "--bind", "127.0.0.1:0"])
        .env("KUBECONFIG", tmp.path().join("missing"))
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("HOME", tmp.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--leader-lease x-master: no Kubernetes client") && err.contains("KUBECONFIG"),
        "{err}"
    );
    let out = Command::new(STROM)
        .args(["master", "--leader-lease", "x", "--leader-identity", "m"])
        .args(["--leader-lease-duration-ms", "1000"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--leader-lease-duration-ms (1000)"), "{err}");
}

/// Every file under `dir`, relative to it.
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

fn copy_dir(from: &Path, to: &Path) {
    for f in files(from) {
        let target = to.join(&f);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(from.join(&f), target).unwrap();
    }
}

#[test]
fn savepoint_disposal_deletes_a_savepoint_and_refuses_what_is_not_one() {
    let tmp = TempDir::new("master-ha-disposal");
    let dir = tmp.path();
    // A job that leaves a completed checkpoint behind.
    let args = job(
        dir,
        "out",
        &["--arg", "rate=4000", "--checkpoint-interval-ms", "100"],
    );
    run_alone(&args, &dir.join("out"));
    let job_dir = dir.join("checkpoints/word-count");
    let checkpoint = std::fs::read_dir(&job_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("_metadata").exists())
        .expect("a completed checkpoint");
    // Two savepoints made of it.
    let savepoint = dir.join("savepoints/savepoint-word-count-7");
    let other = dir.join("savepoints/savepoint-word-count-8");
    copy_dir(&checkpoint, &savepoint);
    copy_dir(&checkpoint, &other);
    let in_savepoint = files(&savepoint);
    assert!(in_savepoint.len() > 1, "{in_savepoint:?}");
    // Not a savepoint: a _metadata Strom did not write.
    let fake = dir.join("fake");
    std::fs::create_dir_all(&fake).unwrap();
    std::fs::write(fake.join("_metadata"), b"{\"format\": 1}").unwrap();
    std::fs::write(fake.join("data"), b"keep me").unwrap();

    let ports = Ports::new();
    let log = dir.join("master.log");
    let mut processes = Processes(vec![
        Command::new(STROM)
            .args(["master", "--bind", &format!("127.0.0.1:{}", ports.control)])
            .args(["--rest-bind", &format!("127.0.0.1:{}", ports.rest)])
            .env_remove("STROM_LEADER_LEASE")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    ]);
    let api = ports.api();
    eventually(30, "the master did not become ready", || {
        is_ready(&api).then_some(())
    });
    let dispose = |location: serde_json::Value| {
        let (status, body) = api
            .send(
                Method::POST,
                "/v1/savepoint-disposal",
                Some(&serde_json::json!({ "location": location })),
            )
            .unwrap();
        (
            status,
            serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
        )
    };

    let path = |p: &Path| serde_json::Value::from(p.display().to_string());
    // Refused, and nothing deleted: a job's directory, a directory of savepoints, a
    // foreign _metadata, nothing at all, a body without a location.
    for (location, code, says) in [
        (path(&job_dir), StatusCode::NOT_FOUND, "holds no _metadata"),
        (
            path(&dir.join("savepoints")),
            StatusCode::NOT_FOUND,
            "holds no _metadata",
        ),
        (path(&fake), StatusCode::BAD_REQUEST, "not one Strom wrote"),
        (
            path(&dir.join("nothing/here")),
            StatusCode::NOT_FOUND,
            "not a directory",
        ),
    ] {
        let (status, body) = dispose(location.clone());
        assert_eq!(status, code, "{location}: {body}");
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains(says)
                && message.contains(&format!("location '{}'", location.as_str().unwrap())),
            "{location}: {body}"
        );
    }
    assert!(!dir.join("nothing").exists());
    assert_eq!(files(&fake), ["_metadata", "data"]);
    let (status, body) = api
        .send(
            Method::POST,
            "/v1/savepoint-disposal",
            Some(&serde_json::json!({ "path": "x" })),
        )
        .unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("location"),
        "{body}"
    );
    assert_eq!(files(&savepoint), in_savepoint);

    // A savepoint: every file of it goes, and its directory; the other one stays.
    let (status, body) = dispose(path(&savepoint));
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["location"], path(&savepoint));
    assert_eq!(body["deleted_files"], in_savepoint.len());
    assert!(!savepoint.exists());
    assert_eq!(files(&other), in_savepoint);
    assert!(checkpoint.join("_metadata").exists());

    // The same through the command line.
    let out = Command::new(STROM)
        .args(["savepoint", "dispose", &other.display().to_string()])
        .args(["--rest-url", &format!("http://127.0.0.1:{}", ports.rest)])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&format!("deleted {}", other.display())),
        "{said}"
    );
    assert!(!other.exists());
    let out = Command::new(STROM)
        .args(["savepoint", "dispose", &other.display().to_string()])
        .args(["--rest-url", &format!("http://127.0.0.1:{}", ports.rest)])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a directory"), "{err}");
    sigterm(&processes.0[0]);
    let (status, text) = wait_for_exit(&mut processes.0[0], &log, Duration::from_secs(10));
    assert!(status.success(), "{text}");
}

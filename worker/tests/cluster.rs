//! The distributed runtime with real processes on loopback: a `strom master` and
//! `strom worker`s run a seed job with exactly the output of `strom run`; a job whose
//! worker dies fails, or restarts by its strategy; workers outlive their master; the REST
//! API and the CLI show and cancel a job; a session master runs the jobs `strom submit`
//! gives it, one after the other when slots are short.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::cluster::{
    STROM, cli, master_command, run_alone, sigterm, wait_for_free_slots, worker,
};
use common::{Processes, TempDir, free_port, read_parts};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

fn master(port: u16, job_args: &[String]) -> Child {
    master_with_rest(port, free_port(), job_args)
}

/// The logs of the masters started here, by process id: a thread reads each master's
/// stderr while it runs (a pipe nobody reads stalls a master once it is full), and
/// `wait_for_master` takes the whole log when the master has exited.
static MASTER_LOGS: std::sync::Mutex<BTreeMap<u32, std::thread::JoinHandle<String>>> =
    std::sync::Mutex::new(BTreeMap::new());

fn master_with_rest(port: u16, rest_port: u16, job_args: &[String]) -> Child {
    drained(
        master_command(port, rest_port, job_args)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

/// `child`, whose piped stderr a thread now reads into its log for `wait_for_master`.
fn drained(mut child: Child) -> Child {
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::Read;
        let mut log = Vec::new();
        let _ = stderr.read_to_end(&mut log);
        String::from_utf8_lossy(&log).into_owned()
    });
    MASTER_LOGS.lock().unwrap().insert(child.id(), reader);
    child
}

/// Waits for the master (the first process) to exit; returns its status and stderr.
fn wait_for_master(processes: &mut Processes, timeout: Duration) -> (ExitStatus, String) {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = processes.0[0].try_wait().unwrap() {
            let reader = MASTER_LOGS.lock().unwrap().remove(&processes.0[0].id());
            let log = reader.map(|r| r.join().unwrap()).unwrap_or_default();
            return (status, log);
        }
        assert!(
            Instant::now() < deadline,
            "the master did not end in {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn word_count_args(input: &Path, output: &Path) -> Vec<String> {
    [
        "word-count",
        "--parallelism",
        "2",
        "--arg",
        &format!("input={}", input.display()),
        "--arg",
        &format!("output={}", output.display()),
    ]
    .map(String::from)
    .to_vec()
}

#[test]
fn a_master_and_two_workers_give_the_output_of_strom_run() {
    let tmp = TempDir::new("cluster-word-count");
    let dir = tmp.path();
    let input = dir.join("input.txt");
    let text: String = (0..200)
        .map(|i| format!("to be or not to be {} that is question {}\n", i % 7, i % 13))
        .collect();
    std::fs::write(&input, text).unwrap();

    let alone = dir.join("alone");
    let status = Command::new(STROM)
        .arg("run")
        .args(word_count_args(&input, &alone))
        .arg("--no-summary")
        .status()
        .unwrap();
    assert!(status.success());
    let expected = read_parts(&alone);
    assert!(expected.len() > 100, "{}", expected.len());

    let split = dir.join("split");
    let port = free_port();
    let mut processes = Processes(vec![
        master(port, &word_count_args(&input, &split)),
        worker(port, "w1"),
        worker(port, "w2"),
    ]);
    let (status, stderr) = wait_for_master(&mut processes, Duration::from_secs(60));
    assert!(status.success(), "the master failed:\n{stderr}");
    assert_eq!(read_parts(&split), expected);
    // Both workers wrote part files: subtask 1 of the sink ran on w1, subtask 2 on w2.
    let parts: Vec<String> = std::fs::read_dir(&split)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(parts.iter().any(|p| p.starts_with("part-0-")), "{parts:?}");
    assert!(parts.iter().any(|p| p.starts_with("part-1-")), "{parts:?}");
}

#[test]
fn a_job_whose_worker_is_killed_fails_and_says_which_worker() {
    let tmp = TempDir::new("cluster-killed");
    let dir = tmp.path();
    let port = free_port();
    // Unbounded: runs until something stops it.
    let args: Vec<String> = [
        "word-count",
        "--parallelism",
        "2",
        "--arg",
        "events=0",
        "--arg",
        "rate=1000",
        "--arg",
    ]
    .map(String::from)
    .into_iter()
    .chain([format!("output={}", dir.join("out").display())])
    .collect();
    let mut processes = Processes(vec![
        master(port, &args),
        worker(port, "w1"),
        worker(port, "w2"),
    ]);
    std::thread::sleep(Duration::from_secs(2));
    if processes.0[0].try_wait().unwrap().is_some() {
        // Say why: a port taken between `free_port` and the master's bind shows here.
        let (status, stderr) = wait_for_master(&mut processes, Duration::from_secs(1));
        panic!("the master ended before its worker was killed ({status}):\n{stderr}");
    }
    processes.0[2].kill().unwrap();
    let (status, stderr) = wait_for_master(&mut processes, Duration::from_secs(30));
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("worker w2 was lost"), "{stderr}");
}

#[test]
fn a_job_restarts_on_the_remaining_workers_and_its_output_is_complete() {
    let tmp = TempDir::new("cluster-failover");
    let dir = tmp.path();
    let job = |output: &Path| -> Vec<String> {
        // 3,000 generated lines at 1,000 a second: long enough to kill a worker mid-run.
        [
            "word-count",
            "--parallelism",
            "2",
            "--arg",
            "events=3000",
            "--arg",
            "rate=1000",
            "--arg",
            &format!("output={}", output.display()),
        ]
        .map(String::from)
        .to_vec()
    };
    let alone = dir.join("alone");
    let status = Command::new(STROM)
        .arg("run")
        .args(job(&alone))
        .arg("--no-summary")
        .status()
        .unwrap();
    assert!(status.success());
    let expected = read_parts(&alone);

    let split = dir.join("split");
    let port = free_port();
    let mut master_args = job(&split);
    master_args.extend(
        [
            "--restart-strategy",
            "fixed-delay",
            "--restart-attempts",
            "2",
            "--restart-delay-ms",
            "200",
        ]
        .map(String::from),
    );
    let mut processes = Processes(vec![
        master(port, &master_args),
        worker(port, "w1"),
        worker(port, "w2"),
    ]);
    // The job needs both workers' slots, so both run subtasks once it is deployed.
    std::thread::sleep(Duration::from_millis(1200));
    assert!(processes.0[0].try_wait().unwrap().is_none(), "the job runs");
    // A spare worker, as Kubernetes would start in place of the one that dies.
    processes.0.push(worker(port, "w3"));
    processes.0[2].kill().unwrap();
    let (status, stderr) = wait_for_master(&mut processes, Duration::from_secs(60));
    assert!(status.success(), "the master failed:\n{stderr}");
    assert!(stderr.contains("restarting it from scratch"), "{stderr}");
    assert!(stderr.contains("worker w2 was lost"), "{stderr}");
    // Restarted from scratch, the second attempt rewrote every part file.
    assert_eq!(read_parts(&split), expected);
}

#[test]
fn workers_keep_retrying_and_attach_to_a_master_that_returns() {
    let tmp = TempDir::new("cluster-master-returns");
    let dir = tmp.path();
    let input = dir.join("input.txt");
    let text: String = (0..100)
        .map(|i| format!("all the world is a stage {}\n", i % 11))
        .collect();
    std::fs::write(&input, text).unwrap();
    let alone = dir.join("alone");
    let status = Command::new(STROM)
        .arg("run")
        .args(word_count_args(&input, &alone))
        .arg("--no-summary")
        .status()
        .unwrap();
    assert!(status.success());

    let port = free_port();
    // Workers first: no master yet, they retry.
    let mut processes = Processes(vec![worker(port, "w1"), worker(port, "w2")]);
    std::thread::sleep(Duration::from_millis(500));
    // A master with an endless job; then it dies.
    let endless: Vec<String> = [
        "word-count",
        "--parallelism",
        "2",
        "--arg",
        "events=0",
        "--arg",
        "rate=100",
        "--arg",
    ]
    .map(String::from)
    .into_iter()
    .chain([format!("output={}", dir.join("endless").display())])
    .collect();
    processes.0.insert(0, master(port, &endless));
    std::thread::sleep(Duration::from_millis(1500));
    assert!(processes.0[0].try_wait().unwrap().is_none(), "the job runs");
    processes.0[0].kill().unwrap();
    let _ = processes.0[0].wait();
    // A new master on the same address: the workers attach to it and run its job.
    let returned = dir.join("returned");
    processes.0[0] = master(port, &word_count_args(&input, &returned));
    let (status, stderr) = wait_for_master(&mut processes, Duration::from_secs(60));
    assert!(status.success(), "the master failed:\n{stderr}");
    assert_eq!(read_parts(&returned), read_parts(&alone));
    // The dead master's endless job was cancelled when the workers lost it.
    let size = |d: &Path| -> u64 {
        std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum()
    };
    let before = size(&dir.join("endless"));
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        size(&dir.join("endless")),
        before,
        "the orphaned job still writes"
    );
}

/// `strom <args>` against the REST API on `rest_port`: exit code, stdout, stderr.
/// The id of the first job the REST API lists, once it runs (30 s at most).
fn running_job_id(api: &strom::cluster::client::RestClient) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(v) = api.call(http::Method::GET, "/v1/jobs")
            && v["jobs"][0]["state"] == "Running"
        {
            return v["jobs"][0]["id"].as_str().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "the job did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_rest_api_and_the_cli_show_and_cancel_a_running_job() {
    use http::Method;
    use strom::cluster::client::RestClient;
    let tmp = TempDir::new("cluster-rest");
    let dir = tmp.path();
    let (port, rest_port) = (free_port(), free_port());
    let endless: Vec<String> = [
        "word-count",
        "--parallelism",
        "2",
        "--arg",
        "events=0",
        "--arg",
        "rate=200",
        "--checkpoint-interval-ms",
        "100",
        "--checkpoint-retention",
        "delete-on-cancellation",
        "--arg",
    ]
    .map(String::from)
    .into_iter()
    .chain([format!("output={}", dir.join("out").display())])
    .chain([
        "--checkpoint-dir".to_string(),
        dir.join("checkpoints").display().to_string(),
    ])
    .collect();
    let mut processes = Processes(vec![
        master_with_rest(port, rest_port, &endless),
        worker(port, "w1"),
        worker(port, "w2"),
    ]);
    let api = RestClient::new(&format!("http://127.0.0.1:{rest_port}")).unwrap();
    let id = running_job_id(&api);
    assert!(id.starts_with("word-count-"), "{id}");

    let (status, body) = api.raw(Method::GET, "/healthz").unwrap();
    assert_eq!((status.as_u16(), &body[..]), (200, &b"ok"[..]));
    let (status, body) = api.raw(Method::GET, "/readyz").unwrap();
    assert_eq!((status.as_u16(), &body[..]), (200, &b"ready"[..]));

    let overview = api.call(Method::GET, "/v1/overview").unwrap();
    assert_eq!(overview["workers"], 2);
    assert_eq!(overview["slots_total"], 2);
    assert_eq!(overview["jobs_running"], 1);

    let workers = api.call(Method::GET, "/v1/workers").unwrap();
    let mut ids: Vec<&str> = workers["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, ["w1", "w2"]);

    // A Running job's subtasks may still be deploying (as in Flink): they report
    // RUNNING shortly after.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (job, subtasks) = loop {
        let job = api.call(Method::GET, &format!("/v1/jobs/{id}")).unwrap();
        let subtasks: Vec<(String, String)> = job["vertices"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|v| v["subtasks"].as_array().unwrap().clone())
            .map(|s| {
                (
                    s["worker"].as_str().unwrap().to_string(),
                    s["state"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        if subtasks.iter().all(|(_, s)| s == "RUNNING") || Instant::now() > deadline {
            break (job, subtasks);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(job["name"], "word-count");
    assert_eq!(job["restarts"], 0);
    assert!(subtasks.iter().any(|(w, _)| w == "w1"), "{subtasks:?}");
    assert!(subtasks.iter().any(|(w, _)| w == "w2"), "{subtasks:?}");
    assert!(subtasks.iter().all(|(_, s)| s == "RUNNING"), "{subtasks:?}");

    let (status, body) = api.raw(Method::GET, "/metrics").unwrap();
    let metrics = String::from_utf8_lossy(&body);
    assert_eq!(status.as_u16(), 200);
    assert!(metrics.contains("strom_workers 2\n"), "{metrics}");
    assert!(
        metrics.contains(&format!(
            "strom_job_state{{job=\"{id}\",state=\"Running\"}} 1"
        )),
        "{metrics}"
    );

    // Operator counters arrive with the workers' heartbeats.
    let deadline = Instant::now() + Duration::from_secs(10);
    let counted =
        format!("strom_records_in_total{{job=\"{id}\",operator=\"Word Counts\",subtask=\"0\"}} ");
    loop {
        let (_, body) = api.raw(Method::GET, "/metrics").unwrap();
        let metrics = String::from_utf8_lossy(&body).into_owned();
        let count = metrics
            .lines()
            .find_map(|l| l.strip_prefix(&counted))
            .and_then(|n| n.parse::<u64>().ok());
        if count.is_some_and(|n| n > 0) {
            break;
        }
        assert!(Instant::now() < deadline, "no record counts in:\n{metrics}");
        std::thread::sleep(Duration::from_millis(100));
    }

    let (_, body) = api.raw(Method::GET, "/metrics").unwrap();
    let metrics = String::from_utf8_lossy(&body).into_owned();
    for series in [
        "strom_task_busy_seconds_total{",
        "strom_task_backpressured_seconds_total{",
    ] {
        assert!(metrics.contains(series), "no {series} in:\n{metrics}");
    }

    // Errors: JSON bodies that name the problem.
    for (method, path, code) in [
        (Method::GET, "/v1/jobs/nope", "job_not_found"),
        (Method::PATCH, "/v1/jobs/nope", "job_not_found"),
        (Method::GET, "/v1/nothing-here", "not_found"),
    ] {
        let (status, body) = api.raw(method.clone(), path).unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(status.as_u16(), 404, "{method} {path}");
        assert_eq!(body["error"], code, "{method} {path}");
        assert!(body["message"].as_str().unwrap().len() > 10, "{body}");
    }
    let (status, body) = api.raw(Method::GET, "/v1/jobs/nope").unwrap();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status.as_u16(), 404);
    assert!(body["message"].as_str().unwrap().contains(&id), "{body}");

    // The CLI: text, JSON, errors.
    let (code, out, _) = cli(rest_port, &["list"]);
    assert_eq!(code, 0);
    assert!(out.contains(&id) && out.contains("Running"), "{out}");
    let (code, out, _) = cli(rest_port, &["list", "--output", "json"]);
    assert_eq!(code, 0);
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed["jobs"][0]["id"], id.as_str());
    let (code, out, _) = cli(rest_port, &["status", &id]);
    assert_eq!(code, 0);
    assert!(out.contains("state     Running"), "{out}");
    let (code, _, err) = cli(rest_port, &["status", "nope"]);
    assert_eq!(code, 1);
    assert!(err.contains("no job 'nope'"), "{err}");

    // Cancel: the workers stop the subtasks, the master ends, and the job's checkpoints
    // go with it (--checkpoint-retention delete-on-cancellation).
    let deadline = Instant::now() + Duration::from_secs(30);
    while api
        .call(Method::GET, &format!("/v1/jobs/{id}/checkpoints"))
        .map_or(true, |c| c["completed"].as_u64() < Some(1))
    {
        assert!(Instant::now() < deadline, "no checkpoint completed");
        std::thread::sleep(Duration::from_millis(50));
    }
    let job_checkpoints = dir.join("checkpoints").join("word-count");
    assert!(job_checkpoints.join("latest").exists());
    // What else someone keeps there is not the job's to delete.
    let kept = job_checkpoints.join("README.txt");
    std::fs::write(&kept, "ours").unwrap();
    let (code, out, err) = cli(rest_port, &["cancel", &id]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Cancel"), "{out}");
    let (status, stderr) = wait_for_master(&mut processes, Duration::from_secs(30));
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("the job was cancelled"), "{stderr}");
    let left = files_under(&job_checkpoints);
    assert_eq!(left, [kept], "only the checkpoints go");
}

/// Every file under `dir` (none if it is gone).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|e| {
            let path = e.path();
            if path.is_dir() {
                files_under(&path)
            } else {
                vec![path]
            }
        })
        .collect()
}

#[test]
fn masters_and_workers_take_their_options_from_a_config_file() {
    let tmp = TempDir::new("cluster-config-file");
    let dir = tmp.path();
    let input = dir.join("input.txt");
    std::fs::write(
        &input,
        "the rest is silence\nthe readiness is all\n".repeat(20),
    )
    .unwrap();
    let alone = dir.join("alone");
    let status = Command::new(STROM)
        .arg("run")
        .args(word_count_args(&input, &alone))
        .arg("--no-summary")
        .status()
        .unwrap();
    assert!(status.success());

    let (port, rest_port) = (free_port(), free_port());
    let from_file = dir.join("from-file");
    let config = dir.join("strom.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[master]
bind = "127.0.0.1:{port}"
rest-bind = "127.0.0.1:{rest_port}"
parallelism = 2
arg = ["input={}", "output={}"]

[worker]
master = "http://127.0.0.1:{port}"
data-bind = "127.0.0.1:0"
reconnect-interval-ms = 100
"#,
            input.display(),
            from_file.display()
        ),
    )
    .unwrap();
    let spawn = |args: &[&str], env_config: bool| {
        let mut c = Command::new(STROM);
        if env_config {
            c.env("STROM_CONFIG", &config);
        } else {
            c.arg("--config").arg(&config);
        }
        // Only the master's log is read (by `wait_for_master`).
        let stderr = if args[0] == "master" {
            Stdio::piped()
        } else {
            Stdio::null()
        };
        let child = c
            .args(args)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        if args[0] == "master" {
            drained(child)
        } else {
            child
        }
    };
    let mut processes = Processes(vec![
        spawn(&["master", "word-count"], false),
        spawn(&["worker", "--id", "w1"], false),
        // The file named by the environment.
        spawn(&["worker", "--id", "w2"], true),
    ]);
    let (status, stderr) = wait_for_master(&mut processes, Duration::from_secs(60));
    assert!(status.success(), "the master failed:\n{stderr}");
    assert_eq!(read_parts(&from_file), read_parts(&alone));

    // A mistake in the file is an error that names the file and the section.
    std::fs::write(&config, "[mastr]\nbind = \"x\"\n").unwrap();
    let out = Command::new(STROM)
        .args(["--config", config.to_str().unwrap(), "master", "word-count"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("strom.toml") && err.contains("unknown section [mastr]"),
        "{err}"
    );
}

#[test]
fn seed_jobs_across_processes_give_the_output_of_strom_run() {
    let tmp = TempDir::new("cluster-seed-jobs");
    let dir = tmp.path();
    let port = free_port();
    // The same two workers serve one master after the other.
    let mut workers = Processes(vec![worker(port, "w1"), worker(port, "w2")]);
    for job in [
        "sensor-average",
        "sensor-min-max",
        "user-behavior",
        "fraud-detection",
    ] {
        let args = |output: &Path| -> Vec<String> {
            [job, "--parallelism", "2", "--arg"]
                .map(String::from)
                .into_iter()
                .chain([format!("output={}", output.display())])
                .collect()
        };
        let alone = dir.join(format!("{job}-alone"));
        let status = Command::new(STROM)
            .arg("run")
            .args(args(&alone))
            .arg("--no-summary")
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "{job} in one process");
        let expected = read_parts(&alone);
        assert!(!expected.is_empty(), "{job} wrote nothing");

        let split = dir.join(format!("{job}-split"));
        workers.0.insert(0, master(port, &args(&split)));
        let (status, stderr) = wait_for_master(&mut workers, Duration::from_secs(60));
        assert!(status.success(), "{job}: the master failed:\n{stderr}");
        workers.0.remove(0).wait().unwrap();
        assert_eq!(read_parts(&split), expected, "{job}");
    }
}

#[test]
fn a_session_master_runs_submitted_jobs_as_slots_come_free() {
    use http::Method;
    use strom::cluster::client::RestClient;
    let tmp = TempDir::new("cluster-session");
    let dir = tmp.path();
    let input = dir.join("input.txt");
    let text: String = (0..150)
        .map(|i| format!("what a piece of work is man {}\n", i % 9))
        .collect();
    std::fs::write(&input, text).unwrap();
    // A: generated lines, paced to hold both slots for about 2 s. B and C: the file.
    let slow = |output: &Path| -> Vec<String> {
        ["word-count", "--parallelism", "2", "--arg", "events=300"]
            .into_iter()
            .chain(["--arg", "rate=150", "--arg"])
            .map(String::from)
            .chain([format!("output={}", output.display())])
            .collect()
    };
    let expected_a = run_alone(&slow(&dir.join("a-alone")), &dir.join("a-alone"));
    let expected_b = run_alone(
        &word_count_args(&input, &dir.join("b-alone")),
        &dir.join("b-alone"),
    );

    let (port, rest_port) = (free_port(), free_port());
    // No job: a session master.
    let mut processes = Processes(vec![
        master_with_rest(port, rest_port, &[]),
        worker(port, "w1"),
        worker(port, "w2"),
    ]);
    let api = RestClient::new(&format!("http://127.0.0.1:{rest_port}")).unwrap();
    wait_for_free_slots(&api, 2);
    let submit = |args: Vec<String>| -> String {
        let mut all = vec!["submit".to_string()];
        all.extend(args);
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let (code, out, err) = cli(rest_port, &all);
        assert_eq!(code, 0, "{err}");
        out.trim().to_string()
    };
    let a = submit(slow(&dir.join("a")));
    let b = submit(word_count_args(&input, &dir.join("b")));
    assert_ne!(a, b);
    // A holds both slots: B waits.
    let state =
        |id: &str| api.call(Method::GET, &format!("/v1/jobs/{id}")).unwrap()["state"].clone();
    assert_eq!(state(&b), "Created");
    // A's end frees the slots B waits for.
    let deadline = Instant::now() + Duration::from_secs(30);
    while [&a, &b].iter().any(|id| state(id) != "Finished") {
        assert!(
            Instant::now() < deadline,
            "{a}: {}, {b}: {}",
            state(&a),
            state(&b)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // C follows its job to the end.
    let mut c_args = word_count_args(&input, &dir.join("c"));
    c_args[2] = "1".into();
    c_args.push("--wait".into());
    let c_args: Vec<&str> = ["submit"]
        .into_iter()
        .chain(c_args.iter().map(String::as_str))
        .collect();
    let (code, out, err) = cli(rest_port, &c_args);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("state     Finished"), "{out}");
    assert_eq!(read_parts(&dir.join("a")), expected_a);
    assert_eq!(read_parts(&dir.join("b")), expected_b);
    assert_eq!(read_parts(&dir.join("c")), expected_b);
    let (code, out, _) = cli(rest_port, &["list"]);
    assert_eq!(code, 0);
    assert_eq!(out.matches("Finished").count(), 3, "{out}");

    // Submissions that cannot run: 400 with a JSON body that names the problem.
    for (body, code, says) in [
        (r#"{"name": "nope"}"#, "invalid_job", "unknown job 'nope'"),
        (
            r#"{"name": "word-count", "paralelism": 2}"#,
            "invalid_request",
            "unknown field `paralelism`",
        ),
        (
            r#"{"name": "word-count", "args": ["colour=red"]}"#,
            "invalid_job",
            "no argument 'colour'",
        ),
    ] {
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        let (status, answer) = api.send(Method::POST, "/v1/jobs", Some(&body)).unwrap();
        let answer: serde_json::Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(status.as_u16(), 400, "{body}");
        assert_eq!(answer["error"], code, "{body}");
        assert!(
            answer["message"].as_str().unwrap().contains(says),
            "{answer}"
        );
    }
    let (code, _, err) = cli(rest_port, &["submit", "nope"]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown job 'nope'"), "{err}");

    // A second worker under a taken id is turned away, and says why.
    let log = dir.join("w1-again.log");
    let mut again = Command::new(STROM)
        .args(["worker", "--master", &format!("http://127.0.0.1:{port}")])
        .args(["--id", "w1", "--data-bind", "127.0.0.1:0"])
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&log)
        .unwrap()
        .contains("worker id 'w1' is taken")
    {
        assert!(
            Instant::now() < deadline,
            "{}",
            std::fs::read_to_string(&log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    again.kill().unwrap();
    let _ = again.wait();
    assert_eq!(api.call(Method::GET, "/v1/overview").unwrap()["workers"], 2);

    // SIGTERM stops a session master cleanly.
    sigterm(&processes.0[0]);
    let (status, stderr) = wait_for_master(&mut processes, Duration::from_secs(10));
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("the master was stopped (SIGTERM)"),
        "{stderr}"
    );
}

#[test]
fn a_master_killed_mid_run_comes_back_and_resumes_from_the_latest_checkpoint() {
    let tmp = TempDir::new("cluster-master-checkpoint");
    let dir = tmp.path();
    let checkpoints = dir.join("checkpoints");
    let lines = 3000u64;
    let args = |output: &str| -> Vec<String> {
        [
            "word-count",
            "--parallelism",
            "2",
            "--arg",
            &format!("events={lines}"),
            "--arg",
            "rate=1000",
            "--arg",
            &format!("output={}", dir.join(output).display()),
            "--checkpoint-interval-ms",
            "200",
            "--checkpoint-dir",
            &checkpoints.display().to_string(),
        ]
        .map(String::from)
        .to_vec()
    };
    let port = free_port();
    let mut processes = Processes(vec![
        master(port, &args("first")),
        worker(port, "w1"),
        worker(port, "w2"),
    ]);
    let latest = checkpoints.join("word-count/latest");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !latest.exists() {
        assert!(Instant::now() < deadline, "no checkpoint completed");
        std::thread::sleep(Duration::from_millis(20));
    }
    processes.0[0].kill().unwrap();
    let _ = processes.0[0].wait();

    // The same master again: it finds the checkpoint and the job goes on from there.
    processes.0[0] = master(port, &args("second"));
    let (status, stderr) = wait_for_master(&mut processes, Duration::from_secs(60));
    assert!(status.success(), "the master failed:\n{stderr}");
    assert!(stderr.contains("deploying from a checkpoint"), "{stderr}");

    assert_counts_go_on_from_a_checkpoint(&dir.join("second"), lines);
}

/// The word counts in `output` (written after a restart from a checkpoint) go on from
/// where the checkpoint had them, not from 1, and reach the counts of all `lines`.
fn assert_counts_go_on_from_a_checkpoint(output: &Path, lines: u64) {
    use strom::jobs::wordcount::{generated_line, tokenize};
    let mut totals: std::collections::BTreeMap<String, u64> = Default::default();
    for i in 0..lines {
        for w in tokenize(&generated_line(i)) {
            *totals.entry(w).or_default() += 1;
        }
    }
    let mut seen: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    for line in read_parts(output) {
        let (word, count) = line
            .trim_start_matches('(')
            .trim_end_matches(')')
            .rsplit_once(',')
            .unwrap();
        let count: u64 = count.parse().unwrap();
        let e = seen.entry(word.to_string()).or_insert((u64::MAX, 0));
        e.0 = e.0.min(count);
        e.1 = e.1.max(count);
    }
    for (word, total) in &totals {
        let (first, last) = seen[word];
        assert_eq!(last, *total, "{word}");
        if word == "the" {
            assert!(first > 1, "'the' counted from scratch after the restart");
        }
    }
}

#[test]
fn a_job_whose_worker_is_killed_restarts_from_its_latest_checkpoint() {
    let tmp = TempDir::new("cluster-worker-checkpoint");
    let dir = tmp.path();
    let checkpoints = dir.join("checkpoints");
    let lines = 3000u64;
    let args: Vec<String> = [
        "word-count",
        "--parallelism",
        "2",
        "--arg",
        &format!("events={lines}"),
        "--arg",
        "rate=1000",
        "--arg",
        &format!("output={}", dir.join("out").display()),
        "--checkpoint-interval-ms",
        "200",
        "--checkpoint-dir",
        &checkpoints.display().to_string(),
        "--restart-strategy",
        "fixed-delay",
        "--restart-attempts",
        "2",
        "--restart-delay-ms",
        "200",
    ]
    .map(String::from)
    .to_vec();
    let port = free_port();
    let mut processes = Processes(vec![
        master(port, &args),
        worker(port, "w1"),
        worker(port, "w2"),
    ]);
    let latest = checkpoints.join("word-count/latest");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !latest.exists() {
        assert!(Instant::now() < deadline, "no checkpoint completed");
        std::thread::sleep(Duration::from_millis(20));
    }
    processes.0.push(worker(port, "w3"));
    processes.0[2].kill().unwrap();
    let (status, stderr) = wait_for_master(&mut processes, Duration::from_secs(60));
    assert!(status.success(), "the master failed:\n{stderr}");
    assert!(
        stderr.contains("restarting it from its latest checkpoint"),
        "{stderr}"
    );
    assert!(stderr.contains("deploying from a checkpoint"), "{stderr}");
    assert_counts_go_on_from_a_checkpoint(&dir.join("out"), lines);
}

#[test]
fn a_savepoint_and_a_stop_with_savepoint_restore_into_strom_run() {
    let tmp = TempDir::new("cluster-savepoint");
    let dir = tmp.path();
    let lines = 50_000u64;
    let job = |output: &str, rate: &str| -> Vec<String> {
        [
            "word-count",
            "--parallelism",
            "2",
            "--arg",
            &format!("events={lines}"),
            "--arg",
            &format!("rate={rate}"),
            "--arg",
            &format!("output={}", dir.join(output).display()),
            "--checkpoint-interval-ms",
            "300",
            "--checkpoint-dir",
            &dir.join("checkpoints").display().to_string(),
        ]
        .map(String::from)
        .to_vec()
    };
    let (port, rest_port) = (free_port(), free_port());
    let mut processes = Processes(vec![
        master_with_rest(port, rest_port, &job("cluster", "1000")),
        worker(port, "w1"),
        worker(port, "w2"),
    ]);
    let api =
        strom::cluster::client::RestClient::new(&format!("http://127.0.0.1:{rest_port}")).unwrap();
    let id = running_job_id(&api);
    let savepoints = dir.join("savepoints").display().to_string();
    let (code, out, err) = cli(rest_port, &["savepoint", &id, &savepoints]);
    assert_eq!(code, 0, "{err}");
    let first = out.trim().to_string();
    assert!(
        first.starts_with(&format!("{savepoints}/savepoint-word-count-")),
        "{first}"
    );
    assert!(Path::new(&first).join("_metadata").exists(), "{first}");
    let checkpoints = api
        .call(http::Method::GET, &format!("/v1/jobs/{id}/checkpoints"))
        .unwrap();
    assert_eq!(checkpoints["enabled"], true);
    assert_eq!(checkpoints["savepoints"]["1"]["status"], "COMPLETED");
    assert_eq!(checkpoints["savepoints"]["1"]["location"], first.as_str());
    // What it holds, readable.
    let out = Command::new(STROM)
        .args(["savepoint", "inspect", &first])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("word-counts (parallelism 2)"), "{text}");
    assert!(text.contains("key groups 0..=63"), "{text}");
    assert!(text.contains("rolling-aggregate: "), "{text}");
    assert!(text.contains("source position"), "{text}");
    // Unknown request ids and jobs are errors that say so.
    let (status, body) = api
        .raw(http::Method::GET, &format!("/v1/jobs/{id}/savepoints/999"))
        .unwrap();
    assert_eq!(status.as_u16(), 404);
    assert!(String::from_utf8_lossy(&body).contains("savepoint_not_found"));
    let (code, _, err) = cli(rest_port, &["stop", "nope"]);
    assert_eq!(code, 1);
    assert!(err.contains("no job 'nope'"), "{err}");

    // Stop with a savepoint: the master's job ends Finished and the master exits 0.
    let (code, out, err) = cli(rest_port, &["stop", &id, &savepoints]);
    assert_eq!(code, 0, "{err}");
    let stopped = out.trim().to_string();
    assert_ne!(stopped, first);
    let (status, stderr) = wait_for_master(&mut processes, Duration::from_secs(30));
    assert!(status.success(), "{stderr}");

    // The job goes on in one process from where it stopped.
    let status = Command::new(STROM)
        .arg("run")
        .args(job("resumed", "0"))
        .args(["--from-checkpoint", &stopped, "--no-summary"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    assert_counts_go_on_from_a_checkpoint(&dir.join("resumed"), lines);
}

#[test]
fn workers_killed_again_and_again_leave_exactly_the_output_of_an_undisturbed_run() {
    killed_workers_leave_exact_output("heap", &["--checkpoint-interval-ms", "300"]);
}

#[test]
fn workers_killed_with_rocksdb_state_leave_exactly_the_output_of_an_undisturbed_run() {
    // Checkpoints every 100 ms, up to 3 in flight: they overlap, and still complete in
    // order with exactly what came before their barriers.
    killed_workers_leave_exact_output(
        "rocksdb",
        &[
            "--checkpoint-interval-ms",
            "100",
            "--max-concurrent-checkpoints",
            "3",
        ],
    );
}

/// Kills a worker three times while a word count with exactly-once files runs with its
/// keyed state in `backend`, checkpointing as `checkpointing` says; the committed files
/// are exactly an undisturbed run's.
fn killed_workers_leave_exact_output(backend: &str, checkpointing: &[&str]) {
    let tmp = TempDir::new(&format!("cluster-exactly-once-{backend}"));
    let dir = tmp.path();
    let lines = 10_000u64;
    let job = |output: &Path| -> Vec<String> {
        [
            "word-count",
            "--parallelism",
            "2",
            "--arg",
            &format!("events={lines}"),
            "--arg",
            &format!("output={}", output.display()),
        ]
        .map(String::from)
        .to_vec()
    };
    let alone = dir.join("alone");
    let status = Command::new(STROM)
        .arg("run")
        .args(job(&alone))
        .arg("--no-summary")
        .status()
        .unwrap();
    assert!(status.success());
    let expected = read_parts(&alone);

    let split = dir.join("split");
    let mut args = job(&split);
    args.extend(
        [
            "--arg",
            "exactly-once=true",
            "--arg",
            "rate=1000",
            "--checkpoint-dir",
            &dir.join("checkpoints").display().to_string(),
            "--restart-strategy",
            "fixed-delay",
            "--restart-attempts",
            "5",
            "--restart-delay-ms",
            "200",
            "--state-backend",
            backend,
            "--state-dir",
            &dir.join("state").display().to_string(),
            "--rocksdb-memory-mb",
            "32",
        ]
        .map(String::from),
    );
    args.extend(checkpointing.iter().map(|s| s.to_string()));
    let (port, rest_port) = (free_port(), free_port());
    let mut processes = Processes(vec![
        master_with_rest(port, rest_port, &args),
        worker(port, "w1"),
        worker(port, "w2"),
    ]);
    let api =
        strom::cluster::client::RestClient::new(&format!("http://127.0.0.1:{rest_port}")).unwrap();
    let completed = || -> u64 {
        let Ok(jobs) = api.call(http::Method::GET, "/v1/jobs") else {
            return 0;
        };
        let Some(id) = jobs["jobs"][0]["id"].as_str() else {
            return 0;
        };
        api.call(http::Method::GET, &format!("/v1/jobs/{id}/checkpoints"))
            .ok()
            .and_then(|c| c["completed"].as_u64())
            .unwrap_or(0)
    };
    // Each kill comes once the attempt before it has completed two more checkpoints, so
    // every attempt commits some output and dies with more written but not committed.
    let mut seen = 0;
    for (victim, spare) in [(2, "w3"), (1, "w4"), (3, "w5")] {
        let deadline = Instant::now() + Duration::from_secs(30);
        while completed() < seen + 2 {
            assert!(Instant::now() < deadline, "no new checkpoint completed");
            std::thread::sleep(Duration::from_millis(20));
        }
        seen = completed();
        processes.0.push(worker(port, spare));
        processes.0[victim].kill().unwrap();
    }
    let (status, stderr) = wait_for_master(&mut processes, Duration::from_secs(90));
    assert!(status.success(), "the master failed:\n{stderr}");
    assert_eq!(
        stderr
            .matches("restarting it from its latest checkpoint")
            .count(),
        3,
        "{stderr}"
    );
    // Nothing lost, nothing twice: the committed files hold exactly the undisturbed
    // run's lines, and no uncommitted file is left behind.
    assert_eq!(read_parts(&split), expected);
    let leftovers: Vec<String> = std::fs::read_dir(&split)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_job_stopped_with_savepoints_and_resubmitted_at_2_4_1_writes_exactly_its_output() {
    use http::Method;
    use strom::cluster::client::RestClient;
    let tmp = TempDir::new("cluster-rescale");
    let dir = tmp.path();
    let lines = 20_000u64;
    let expected = run_alone(
        &[
            "word-count",
            "--parallelism",
            "2",
            "--arg",
            &format!("events={lines}"),
            "--arg",
            &format!("output={}", dir.join("alone").display()),
        ]
        .map(String::from),
        &dir.join("alone"),
    );
    let (port, rest_port) = (free_port(), free_port());
    let mut processes = Processes(vec![master_with_rest(port, rest_port, &[])]);
    for id in ["w1", "w2", "w3", "w4"] {
        processes.0.push(worker(port, id));
    }
    let api = RestClient::new(&format!("http://127.0.0.1:{rest_port}")).unwrap();
    wait_for_free_slots(&api, 4);
    let output = dir.join("out");
    let submit = |parallelism: &str, from: Option<&str>, extra: &[&str]| -> String {
        let mut args = vec![
            "submit".to_string(),
            "word-count".into(),
            "--parallelism".into(),
            parallelism.into(),
            "--arg".into(),
            format!("events={lines}"),
            "--arg".into(),
            format!("output={}", output.display()),
            "--arg".into(),
            "exactly-once=true".into(),
            "--checkpoint-interval-ms".into(),
            "300".into(),
            "--checkpoint-dir".into(),
            dir.join("checkpoints").display().to_string(),
        ];
        if let Some(from) = from {
            args.extend(["--from-checkpoint".into(), from.to_string()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, out, err) = cli(rest_port, &args);
        assert_eq!(code, 0, "{err}");
        out.trim().to_string()
    };
    let completed = |id: &str| -> u64 {
        api.call(Method::GET, &format!("/v1/jobs/{id}/checkpoints"))
            .ok()
            .and_then(|c| c["completed"].as_u64())
            .unwrap_or(0)
    };
    let savepoints = dir.join("savepoints").display().to_string();
    // Runs at 2, then 4, each stopped with a savepoint once it has committed some
    // output; the last at 1 runs to the end.
    let mut from: Option<String> = None;
    for parallelism in ["2", "4"] {
        let id = submit(parallelism, from.as_deref(), &["--arg", "rate=2000"]);
        let deadline = Instant::now() + Duration::from_secs(30);
        while completed(&id) < 2 {
            assert!(Instant::now() < deadline, "{id} took no checkpoint");
            std::thread::sleep(Duration::from_millis(20));
        }
        // The newest checkpoint's duration and size, as the REST API shows them: on the
        // heap, everything it holds is written anew.
        let view = api
            .call(Method::GET, &format!("/v1/jobs/{id}/checkpoints"))
            .unwrap();
        let last = &view["last_completed"];
        assert!(last["id"].as_u64().unwrap() >= 2, "{view}");
        assert!(last["duration_ms"].as_u64().is_some(), "{view}");
        assert!(last["state_bytes"].as_u64().unwrap() > 0, "{view}");
        assert_eq!(last["uploaded_bytes"], last["state_bytes"], "{view}");
        let (code, out, err) = cli(rest_port, &["stop", &id, &savepoints]);
        assert_eq!(code, 0, "{err}");
        from = Some(out.trim().to_string());
        // Once stopped, what the savepoint holds is committed and what came after it is
        // gone: no pending or in-progress file is left.
        let deadline = Instant::now() + Duration::from_secs(10);
        while api.call(Method::GET, &format!("/v1/jobs/{id}")).unwrap()["state"] != "Finished" {
            assert!(Instant::now() < deadline, "{id} did not finish");
            std::thread::sleep(Duration::from_millis(20));
        }
        let hidden: Vec<String> = std::fs::read_dir(&output)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(hidden.is_empty(), "{hidden:?}");
    }
    let last = [
        "submit",
        "word-count",
        "--parallelism",
        "1",
        "--arg",
        &format!("events={lines}"),
        "--arg",
        &format!("output={}", output.display()),
        "--arg",
        "exactly-once=true",
        "--checkpoint-interval-ms",
        "300",
        "--checkpoint-dir",
        &dir.join("checkpoints").display().to_string(),
        "--from-checkpoint",
        from.as_deref().unwrap(),
        "--wait",
    ];
    let (code, out, err) = cli(rest_port, &last);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("state     Finished"), "{out}");
    // The three runs' committed files: every word's counts 1..=n, once each.
    assert_eq!(read_parts(&output), expected);
}

#[test]
fn strom_run_with_a_rest_api_takes_savepoints_and_stops_with_one() {
    let tmp = TempDir::new("run-rest");
    let dir = tmp.path();
    let lines = 20_000u64;
    let job = |output: &Path| -> Vec<String> {
        [
            "word-count",
            "--parallelism",
            "2",
            "--arg",
            &format!("events={lines}"),
            "--arg",
            &format!("output={}", output.display()),
        ]
        .map(String::from)
        .to_vec()
    };
    let expected = run_alone(&job(&dir.join("alone")), &dir.join("alone"));
    let output = dir.join("out");
    let checkpointed = |extra: &[&str]| -> Vec<String> {
        let mut args = job(&output);
        args.extend(
            [
                "--arg",
                "exactly-once=true",
                "--checkpoint-interval-ms",
                "300",
                "--checkpoint-dir",
                &dir.join("checkpoints").display().to_string(),
            ]
            .iter()
            .chain(extra)
            .map(|s| s.to_string()),
        );
        args
    };
    let rest_port = free_port();
    let rest = format!("127.0.0.1:{rest_port}");
    let mut run = Processes(vec![drained(
        Command::new(STROM)
            .arg("run")
            .args(checkpointed(&["--arg", "rate=2000", "--rest-bind", &rest]))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )]);
    let api = strom::cluster::client::RestClient::new(&format!("http://{rest}")).unwrap();
    let id = running_job_id(&api);
    let savepoints = dir.join("savepoints").display().to_string();
    let (code, out, err) = cli(rest_port, &["savepoint", &id, &savepoints]);
    assert_eq!(code, 0, "{err}");
    assert!(Path::new(out.trim()).join("_metadata").exists(), "{out}");
    let (code, out, err) = cli(rest_port, &["stop", &id, &savepoints]);
    assert_eq!(code, 0, "{err}");
    let stopped = out.trim().to_string();
    // `strom run` ends once its job is stopped, with success.
    let (status, stderr) = wait_for_master(&mut run, Duration::from_secs(30));
    assert!(status.success(), "{stderr}");
    // Resumed from the stop's savepoint (without a REST API), the job's committed output
    // is exactly an undisturbed run's.
    let resumed = Command::new(STROM)
        .arg("run")
        .args(checkpointed(&[
            "--from-checkpoint",
            &stopped,
            "--no-summary",
        ]))
        .output()
        .unwrap();
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    assert_eq!(read_parts(&output), expected);
}

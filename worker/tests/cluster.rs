//! The distributed runtime with real processes on loopback: a `strom master` and
//! `strom worker`s run a seed job with exactly the output of `strom run`, and a job whose
//! worker dies fails with a message that says so.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const STROM: &str = env!("CARGO_BIN_EXE_strom");

/// Kills its processes when dropped, so a failing test leaves none behind.
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for p in &mut self.0 {
            let _ = p.kill();
            let _ = p.wait();
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("strom-cluster-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Every line of the `part-*` files under `dir`, sorted.
fn read_parts(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("part-")
        {
            lines.extend(
                std::fs::read_to_string(&path)
                    .unwrap()
                    .lines()
                    .map(String::from),
            );
        }
    }
    lines.sort();
    lines
}

fn master(port: u16, job_args: &[String]) -> Child {
    Command::new(STROM)
        .args(["master", "--bind", &format!("127.0.0.1:{port}")])
        .args([
            "--heartbeat-interval-ms",
            "200",
            "--heartbeat-timeout-ms",
            "2000",
        ])
        .args(job_args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn worker(port: u16, id: &str) -> Child {
    Command::new(STROM)
        .args(["worker", "--master", &format!("http://127.0.0.1:{port}")])
        .args(["--id", id, "--slots", "1", "--data-bind", "127.0.0.1:0"])
        .args(["--reconnect-interval-ms", "100"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits for the master (the first process) to exit; returns its status and stderr.
fn wait_for_master(processes: &mut Processes, timeout: Duration) -> (ExitStatus, String) {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = processes.0[0].try_wait().unwrap() {
            let mut stderr = String::new();
            use std::io::Read;
            processes.0[0]
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut stderr)
                .unwrap();
            return (status, stderr);
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
    let dir = temp_dir("word-count");
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
    let dir = temp_dir("killed");
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
    assert!(processes.0[0].try_wait().unwrap().is_none(), "the job runs");
    processes.0[2].kill().unwrap();
    let (status, stderr) = wait_for_master(&mut processes, Duration::from_secs(30));
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("worker w2 was lost"), "{stderr}");
}

#[test]
fn a_job_restarts_on_the_remaining_workers_and_its_output_is_complete() {
    let dir = temp_dir("failover");
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
    let dir = temp_dir("master-returns");
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

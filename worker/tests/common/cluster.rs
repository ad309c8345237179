//! Strom masters and workers as processes on loopback, for the tests that run jobs
//! across processes: starting them with short heartbeats, waiting for them, asking the
//! master's REST API how its job is doing, and the word count they run most.

use super::read_parts;
use http::Method;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use strom::cluster::client::RestClient;

pub const STROM: &str = env!("CARGO_BIN_EXE_strom");

/// `strom master` on loopback ports `port` (workers) and `rest_port`, with short
/// heartbeats and the job options `args`; stdout discarded, stderr for the caller.
pub fn master_command(port: u16, rest_port: u16, args: &[String]) -> Command {
    let mut command = Command::new(STROM);
    command
        .args(["master", "--bind", &format!("127.0.0.1:{port}")])
        .args(["--rest-bind", &format!("127.0.0.1:{rest_port}")])
        .args([
            "--heartbeat-interval-ms",
            "200",
            "--heartbeat-timeout-ms",
            "2000",
        ])
        .args(args)
        .stdout(Stdio::null());
    command
}

/// A master whose log goes to `log` (read while it runs, and after it was killed: a
/// piped log nobody reads would stall it once the pipe is full).
pub fn logged_master(port: u16, rest_port: u16, args: &[String], log: &Path) -> Child {
    master_command(port, rest_port, args)
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// A worker with one slot that attaches to the master(s) at `master` (a URL list).
pub fn worker_of(master: &str, id: &str) -> Child {
    Command::new(STROM)
        .args(["worker", "--master", master])
        .args(["--id", id, "--slots", "1", "--data-bind", "127.0.0.1:0"])
        .args(["--reconnect-interval-ms", "100"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// A worker with one slot that attaches to the master on loopback port `port`.
pub fn worker(port: u16, id: &str) -> Child {
    worker_of(&format!("http://127.0.0.1:{port}"), id)
}

/// Waits for `child` to exit; its status and its log.
pub fn wait_for_exit(child: &mut Child, log: &Path, timeout: Duration) -> (ExitStatus, String) {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status, std::fs::read_to_string(log).unwrap());
        }
        assert!(
            Instant::now() < deadline,
            "the process did not end in {timeout:?}:\n{}",
            std::fs::read_to_string(log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `f` every 20 ms until it gives a value (`what` did not happen within `secs`).
pub fn eventually<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what} (waited {secs} s)");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn sigterm(child: &Child) {
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
}

/// The master's job once it runs: its id.
pub fn running_job_id(api: &RestClient, secs: u64) -> String {
    eventually(secs, "the job did not start", || {
        let v = api.call(Method::GET, "/v1/jobs").ok()?;
        (v["jobs"][0]["state"] == "Running").then(|| v["jobs"][0]["id"].as_str().unwrap().into())
    })
}

/// Waits (30 s at most) until the master's workers offer `slots` free slots.
pub fn wait_for_free_slots(api: &RestClient, slots: u64) {
    eventually(30, "the workers did not attach", || {
        let overview = api.call(Method::GET, "/v1/overview").ok()?;
        (overview["slots_free"] == slots).then_some(())
    });
}

/// `strom <args> --rest-url` of the master on `rest_port`: exit code, stdout, stderr.
pub fn cli(rest_port: u16, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(STROM)
        .args(args)
        .args(["--rest-url", &format!("http://127.0.0.1:{rest_port}")])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Checkpoints job `id` completed in this master.
pub fn completed(api: &RestClient, id: &str) -> u64 {
    api.call(Method::GET, &format!("/v1/jobs/{id}/checkpoints"))
        .ok()
        .and_then(|c| c["completed"].as_u64())
        .unwrap_or(0)
}

pub const LINES: u64 = 12_000;

/// The word count of `LINES` generated lines into `dir/<output>`, its checkpoints under
/// `dir/checkpoints`, with `extra` options.
pub fn job(dir: &Path, output: &str, extra: &[&str]) -> Vec<String> {
    [
        "word-count",
        "--parallelism",
        "2",
        "--arg",
        &format!("events={LINES}"),
        "--arg",
        &format!("output={}", dir.join(output).display()),
        "--checkpoint-dir",
        &dir.join("checkpoints").display().to_string(),
    ]
    .iter()
    .chain(extra)
    .map(|s| s.to_string())
    .collect()
}

/// `strom run <args> --no-summary` in one process; the part files it wrote to `output`.
pub fn run_alone(args: &[String], output: &Path) -> Vec<String> {
    let status = Command::new(STROM)
        .arg("run")
        .args(args)
        .arg("--no-summary")
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "strom run {args:?}");
    read_parts(output)
}

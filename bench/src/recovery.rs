//! What large state costs a job across processes: a master and two worker processes run
//! a keyed job that holds `keys × value-bytes` of state (1 GB by default), rewriting
//! 100,000 keys a second, and checkpoints every second; the harness measures, in this
//! order:
//!
//! - checkpoint duration (trigger → `_metadata`), state size and bytes uploaded, from
//!   the master's REST API once every key has its value;
//! - a savepoint's duration (REST request → completed);
//! - kill -9 of one worker → the first record out of the restarted job: the harness
//!   starts the worker process again at once, as a pod restart would (Kubernetes adds
//!   its own restart delay), and the job restores its latest checkpoint;
//! - a new master and workers started from the savepoint → the first record out, against
//!   the same job started without state.
//!
//! The job (`strom_bench::jobs`, `large-state`) prints from its sink `first-output <ms since the epoch>` when a sink subtask emits its
//! first record; the harness reads the workers' output for it.

use anyhow::{Context, bail};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use strom::cluster::master::{MasterOptions, run_master};
use strom::cluster::restart::RestartStrategy;
use strom_bench::jobs::now_ms;
use strom_bench::measure::{median, peak_rss_kib_of};

/// `strom-bench recovery-master` (internal): the master of the large-state job, with
/// checkpoints every second and restarts without delay; runs until killed.
pub fn master(
    args: Vec<String>,
    port: u16,
    rest_port: u16,
    checkpoint_dir: String,
    backend: crate::child::Backend,
    from_checkpoint: Option<String>,
) -> anyhow::Result<()> {
    use strom::cluster::job::{CheckpointSettings, JobSubmission, StateSettings};
    let checkpoints: CheckpointSettings = serde_json::from_value(serde_json::json!({
        "interval_ms": 1000,
        "dir": checkpoint_dir,
        "timeout_ms": 600_000,
        "retained": 2,
    }))?;
    let options = MasterOptions {
        bind: ([127, 0, 0, 1], port).into(),
        job: Some(JobSubmission {
            name: "large-state".into(),
            args,
            parallelism: 2,
            max_parallelism: strom::keygroup::DEFAULT_MAX_PARALLELISM,
            batch_size: strom::config::ExecutionConfig::default().batch_size,
            batch_mode: false,
            checkpoints: Some(checkpoints),
            from_checkpoint,
            allow_non_restored_state: false,
            state: (backend == crate::child::Backend::Rocksdb).then(|| StateSettings {
                backend: "rocksdb".into(),
                dir: None,
                memory_mb: 256,
                incremental: true,
            }),
        }),
        heartbeat_interval: Duration::from_millis(200),
        heartbeat_timeout: Duration::from_secs(10),
        restart: RestartStrategy::FixedDelay {
            attempts: 10,
            delay: Duration::ZERO,
        },
        rest_bind: Some(([127, 0, 0, 1], rest_port).into()),
    };
    run_master(&crate::network::registry(), options)?;
    Ok(())
}

/// Processes killed (-9) when dropped.
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for p in &mut self.0 {
            let _ = p.kill();
            let _ = p.wait();
        }
    }
}

/// The log of process `name`, appended to under `strom-recovery-logs` in the temp
/// directory (emptied when a benchmark starts), for when a number looks wrong.
fn log_file(name: &str) -> anyhow::Result<std::fs::File> {
    let dir = std::env::temp_dir().join("strom-recovery-logs");
    std::fs::create_dir_all(&dir)?;
    Ok(std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{name}.log")))?)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A master and two workers of the large-state job; the workers' `first-output` times
/// arrive on `outputs`.
struct Cluster {
    exe: std::path::PathBuf,
    port: u16,
    rest: String,
    _master: Processes,
    workers: Vec<Option<Child>>,
    outputs: mpsc::Sender<u64>,
}

impl Cluster {
    fn start(
        keys: u64,
        value_bytes: u64,
        backend: crate::child::Backend,
        checkpoints: &std::path::Path,
        from: Option<&str>,
        outputs: mpsc::Sender<u64>,
    ) -> anyhow::Result<Cluster> {
        let exe = std::env::current_exe()?;
        let port = free_port()?;
        let rest_port = free_port()?;
        let backend_name = match backend {
            crate::child::Backend::Heap => "heap",
            crate::child::Backend::Rocksdb => "rocksdb",
        };
        let mut master = Command::new(&exe);
        master
            .args(["recovery-master", "--port", &port.to_string()])
            .args(["--rest-port", &rest_port.to_string()])
            .args(["--arg", &format!("keys={keys}")])
            .args(["--arg", &format!("value-bytes={value_bytes}")])
            .args(["--checkpoint-dir", &checkpoints.display().to_string()])
            .args(["--backend", backend_name])
            .stdout(Stdio::null())
            .stderr(log_file("master")?);
        if let Some(from) = from {
            master.args(["--from-checkpoint", from]);
        }
        let master = Processes(vec![master.spawn()?]);
        let mut cluster = Cluster {
            exe,
            port,
            rest: format!("http://127.0.0.1:{rest_port}"),
            _master: master,
            workers: vec![None, None],
            outputs,
        };
        for i in 0..2 {
            cluster.start_worker(i)?;
        }
        Ok(cluster)
    }

    /// Starts worker `i` (again), forwarding its `first-output` lines.
    fn start_worker(&mut self, i: usize) -> anyhow::Result<()> {
        let mut child = Command::new(&self.exe)
            .args(["cluster-worker", "--port", &self.port.to_string()])
            .args(["--id", &format!("w{i}")])
            .stdout(Stdio::piped())
            .stderr(log_file(&format!("w{i}"))?)
            .spawn()?;
        let stdout = child.stdout.take().context("a worker's output")?;
        let outputs = self.outputs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(ms) = line
                    .strip_prefix("first-output ")
                    .and_then(|t| t.trim().parse().ok())
                {
                    let _ = outputs.send(ms);
                }
            }
        });
        self.workers[i] = Some(child);
        Ok(())
    }

    /// The largest peak resident memory of the workers, in bytes.
    fn worker_peak_rss(&self) -> f64 {
        self.workers
            .iter()
            .flatten()
            .map(|w| peak_rss_kib_of(w.id()) as f64 * 1024.0)
            .fold(0.0, f64::max)
    }

    /// Kills worker `i` with SIGKILL.
    fn kill_worker(&mut self, i: usize) {
        if let Some(mut w) = self.workers[i].take() {
            let _ = w.kill();
            let _ = w.wait();
        }
    }

    fn get(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        curl(&["-sf", &format!("{}{path}", self.rest)])
    }

    fn post(&self, path: &str, body: &str) -> anyhow::Result<serde_json::Value> {
        curl(&[
            "-sf",
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
            "-d",
            body,
            &format!("{}{path}", self.rest),
        ])
    }

    /// The job's id, once the master has one.
    fn job_id(&self, deadline: Instant) -> anyhow::Result<String> {
        loop {
            if let Ok(jobs) = self.get("/v1/jobs")
                && let Some(id) = jobs["jobs"]
                    .as_array()
                    .and_then(|j| j.first())
                    .and_then(|j| j["id"].as_str())
            {
                return Ok(id.to_string());
            }
            if Instant::now() > deadline {
                bail!("the master did not take the job");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // The master (in its own field) goes after the workers.
        for i in 0..self.workers.len() {
            self.kill_worker(i);
        }
    }
}

/// The JSON a URL answers, through `curl` (the benchmark has no HTTP client of its own).
fn curl(args: &[&str]) -> anyhow::Result<serde_json::Value> {
    let out = Command::new("curl").args(args).output()?;
    if !out.status.success() {
        bail!("curl {args:?} failed");
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Waits for the next `first-output` at or after `since` (ms since the epoch).
fn first_output_after(
    outputs: &mpsc::Receiver<u64>,
    since: u64,
    timeout: Duration,
) -> anyhow::Result<u64> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match outputs.recv_timeout(left) {
            Ok(ms) if ms >= since => return Ok(ms),
            Ok(_) => continue,
            Err(_) => bail!("no output within {timeout:?}"),
        }
    }
}

/// One run's measurements, in ms and bytes.
#[derive(Debug, Default)]
struct Run {
    fresh_start_ms: f64,
    checkpoint_ms: f64,
    state_bytes: f64,
    uploaded_bytes: f64,
    savepoint_ms: f64,
    kill_to_output_ms: f64,
    restore_ms: f64,
    /// The largest worker's peak memory, at the first output after the restore.
    restored_worker_rss: f64,
}

fn run_once(keys: u64, value_bytes: u64, backend: crate::child::Backend) -> anyhow::Result<Run> {
    let dir = std::env::temp_dir().join(format!("strom-recovery-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let result = (|| {
        let mut run = Run::default();
        let (tx, outputs) = mpsc::channel();
        let started = now_ms();
        let mut cluster = Cluster::start(
            keys,
            value_bytes,
            backend,
            &dir.join("checkpoints"),
            None,
            tx.clone(),
        )?;
        run.fresh_start_ms =
            (first_output_after(&outputs, started, Duration::from_secs(60))? - started) as f64;
        let id = cluster.job_id(Instant::now() + Duration::from_secs(30))?;

        // Checkpoints once every key has its value: the last three completed.
        let full = keys * value_bytes;
        let deadline = Instant::now() + Duration::from_secs(900);
        let mut seen: Vec<serde_json::Value> = Vec::new();
        while seen.len() < 3 {
            if Instant::now() > deadline {
                bail!("no checkpoint of the full state within 15 minutes: {seen:?}");
            }
            std::thread::sleep(Duration::from_millis(200));
            let c = cluster.get(&format!("/v1/jobs/{id}/checkpoints"))?;
            let last = &c["last_completed"];
            if last["state_bytes"].as_u64().unwrap_or(0) < full
                || seen.last().is_some_and(|s| s["id"] == last["id"])
            {
                continue;
            }
            seen.push(last.clone());
        }
        let stat = |field: &str| {
            median(
                seen.iter()
                    .map(|s| s[field].as_f64().unwrap_or(0.0))
                    .collect(),
            )
        };
        run.checkpoint_ms = stat("duration_ms");
        run.state_bytes = stat("state_bytes");
        run.uploaded_bytes = stat("uploaded_bytes");

        // A savepoint.
        let asked = Instant::now();
        let target = dir.join("savepoints").display().to_string();
        let request = cluster.post(
            &format!("/v1/jobs/{id}/savepoints"),
            &serde_json::json!({ "target_directory": target }).to_string(),
        )?;
        let request = request["request_id"]
            .as_str()
            .context("a request id")?
            .to_string();
        let location = loop {
            std::thread::sleep(Duration::from_millis(50));
            let status = cluster.get(&format!("/v1/jobs/{id}/savepoints/{request}"))?;
            if let Some(location) = status["location"].as_str() {
                break location.to_string();
            }
            if status["status"] == "FAILED" {
                bail!("the savepoint failed: {status}");
            }
            if asked.elapsed() > Duration::from_secs(900) {
                bail!("the savepoint took over 15 minutes");
            }
        };
        run.savepoint_ms = asked.elapsed().as_secs_f64() * 1e3;

        // kill -9 of a worker, started again at once.
        let killed = now_ms();
        cluster.kill_worker(0);
        cluster.start_worker(0)?;
        run.kill_to_output_ms =
            (first_output_after(&outputs, killed, Duration::from_secs(900))? - killed) as f64;
        let restarts = cluster.get(&format!("/v1/jobs/{id}"))?["restarts"].as_u64();
        if restarts != Some(1) {
            bail!("the job restarted {restarts:?} times after the kill, not once");
        }
        drop(cluster);

        // A new cluster from the savepoint.
        let started = now_ms();
        let restored = Cluster::start(
            keys,
            value_bytes,
            backend,
            &dir.join("checkpoints-restored"),
            Some(&location),
            tx,
        )?;
        run.restore_ms =
            (first_output_after(&outputs, started, Duration::from_secs(900))? - started) as f64;
        run.restored_worker_rss = restored.worker_peak_rss();
        Ok(run)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// The table: each backend, medians of `runs` runs.
pub fn run(
    keys: u64,
    value_bytes: u64,
    runs: usize,
    output: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    use crate::child::Backend;
    let _ = std::fs::remove_dir_all(std::env::temp_dir().join("strom-recovery-logs"));
    let mut table = format!(
        "{keys} keys × {value_bytes} bytes of state, p = 2 (a master and two worker \
         processes), checkpoint every 1 s, median of {runs} runs\n\n\
         | backend | checkpoint duration | checkpoint state size | uploaded per checkpoint | savepoint | kill -9 → first output | start from savepoint → first output | start without state → first output | restored worker peak RSS |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    );
    for backend in [Backend::Heap, Backend::Rocksdb] {
        let mut all = Vec::new();
        for r in 0..runs {
            let m = run_once(keys, value_bytes, backend)
                .with_context(|| format!("{backend:?}, run {}", r + 1))?;
            eprintln!("  {backend:?} run {}: {m:?}", r + 1);
            all.push(m);
        }
        let med = |f: fn(&Run) -> f64| median(all.iter().map(f).collect());
        let secs = |ms: f64| format!("{:.2} s", ms / 1e3);
        let row = format!(
            "| {backend:?} | {} | {:.0} MB | {:.0} MB | {} | {} | {} | {} | {:.0} MB |\n",
            secs(med(|r| r.checkpoint_ms)),
            med(|r| r.state_bytes) / 1e6,
            med(|r| r.uploaded_bytes) / 1e6,
            secs(med(|r| r.savepoint_ms)),
            secs(med(|r| r.kill_to_output_ms)),
            secs(med(|r| r.restore_ms)),
            secs(med(|r| r.fresh_start_ms)),
            med(|r| r.restored_worker_rss) / 1e6,
        );
        eprint!("{row}");
        table.push_str(&row);
    }
    strom_bench::measure::publish_table(&table, output.as_deref())
}

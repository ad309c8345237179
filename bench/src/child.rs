//! One run of one case, in this process (the harness starts a fresh process per run, so
//! that peak memory is the run's own): `strom-bench case NAME --engine strom|loop …`.

use anyhow::{Context, bail};
use std::process::Command;
use std::time::Instant;
use strom::prelude::*;
use strom_bench::cases::{Case, build_job, build_latency_job, hand_written};
use strom_bench::latency;
use strom_bench::measure::{Measurement, cpu_seconds, peak_rss_kib};
use strom_bench::nexmark::{self, queries::Query};

/// Engine settings of the Strom runs (defaults: the engine's own).
#[derive(clap::Args, Clone, Copy, Debug)]
pub struct Tuning {
    /// Records per batch between tasks.
    #[arg(long, global = true, default_value_t = ExecutionConfig::default().batch_size)]
    pub batch_size: usize,
    /// Batches a channel holds before its producer waits.
    #[arg(long, global = true, default_value_t = ExecutionConfig::default().channel_capacity)]
    pub channel_capacity: usize,
    /// Where keyed state lives.
    #[arg(long, global = true, value_enum, default_value_t = Backend::Heap)]
    pub backend: Backend,
    /// Take a checkpoint this often (to a local directory, deleted afterwards), in ms.
    #[arg(long, global = true)]
    pub checkpoint_ms: Option<u64>,
}

/// A state backend, as the benchmarks name it (Flink's harness takes the same names).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Heap,
    Rocksdb,
}

/// What a child run does.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Work {
    Pipeline(Case),
    /// The keyed pipeline at a fixed rate (events per second), measuring latency.
    Latency,
    Nexmark(Query),
}

impl Work {
    pub fn parse(name: &str) -> anyhow::Result<Work> {
        if name == "keyed-latency" {
            return Ok(Work::Latency);
        }
        if let Some(q) = Query::parse(name) {
            return Ok(Work::Nexmark(q));
        }
        Case::parse(name).map(Work::Pipeline).with_context(|| {
            format!(
                "unknown case '{name}'; cases are {}, keyed-latency, and Nexmark's q0-q5, q7, q8",
                Case::ALL.map(Case::name).join(", ")
            )
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Work::Pipeline(c) => c.name(),
            Work::Latency => "keyed-latency",
            Work::Nexmark(q) => q.name(),
        }
    }
}

/// Runs `work` once on `engine` (`strom`, or `loop` for the hand-written pipelines).
pub fn run(
    work: Work,
    engine: &str,
    parallelism: usize,
    events: u64,
    rate: Option<f64>,
    tuning: Tuning,
) -> anyhow::Result<Measurement> {
    let env = StreamEnv::new();
    env.set_parallelism(parallelism);
    // Checkpoints and RocksDB instances of this run, deleted when it ends.
    let scratch = std::env::temp_dir().join(format!("strom-bench-{}", std::process::id()));
    let _scratch = Scratch(scratch.clone());
    let checkpointing = match tuning.checkpoint_ms {
        Some(ms) => {
            let dir = scratch.join("checkpoints").display().to_string();
            let storage =
                strom::checkpoint::storage::CheckpointStorage::open(&dir, &Default::default())?;
            Some(strom::checkpoint::CheckpointConfig {
                interval: std::time::Duration::from_millis(ms),
                timeout: std::time::Duration::from_secs(60),
                min_pause: std::time::Duration::ZERO,
                max_concurrent: 1,
                retained: 1,
                storage,
                options: Default::default(),
                job_dir: work.name().to_string(),
                mode: Default::default(),
                retention: Default::default(),
            })
        }
        None => None,
    };
    let backend = match tuning.backend {
        Backend::Heap => strom::state::StateBackend::Heap,
        Backend::Rocksdb => strom::state::StateBackend::RocksDb(strom::state::RocksDbConfig {
            dir: scratch.join("rocksdb"),
            ..Default::default()
        }),
    };
    env.configure(|c| {
        c.batch_size = tuning.batch_size;
        c.channel_capacity = tuning.channel_capacity;
        c.checkpointing = checkpointing;
        c.state_backend = backend;
    });
    latency::now_micros();
    let (started, cpu_before) = (Instant::now(), cpu_seconds());
    match (engine, work) {
        ("strom", Work::Pipeline(case)) => {
            build_job(&env, case, events);
            env.execute(case.name())?;
        }
        ("strom", Work::Latency) => {
            let rate = rate.context("keyed-latency needs --rate (events per second)")?;
            build_latency_job(&env, events, rate);
            env.execute("keyed-latency")?;
        }
        ("strom", Work::Nexmark(q)) => nexmark::strom_run(&env, q, events)?,
        ("loop", Work::Pipeline(case)) => {
            let threads: Vec<_> = (0..parallelism as u64)
                .map(|t| {
                    let p = parallelism as u64;
                    std::thread::spawn(move || {
                        hand_written(case, t * events / p..(t + 1) * events / p)
                    })
                })
                .collect();
            for t in threads {
                std::hint::black_box(
                    t.join()
                        .map_err(|_| anyhow::anyhow!("loop thread panicked"))?,
                );
            }
        }
        (other, work) => bail!(
            "no engine '{other}' for {}: use strom (or loop, for the pipelines)",
            work.name()
        ),
    }
    Ok(Measurement {
        events,
        seconds: started.elapsed().as_secs_f64(),
        cpu_seconds: cpu_seconds() - cpu_before,
        peak_rss_kib: peak_rss_kib(),
        latency_us: (work == Work::Latency).then(latency::percentiles),
    })
}

/// Deletes a run's scratch directory when dropped.
struct Scratch(std::path::PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `work` once in a fresh `strom-bench case …` process.
pub fn measure_in_child(
    work: Work,
    engine: &str,
    parallelism: usize,
    events: u64,
    rate: Option<f64>,
    tuning: Tuning,
) -> anyhow::Result<Measurement> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.args(["case", work.name(), "--engine", engine])
        .args(["--parallelism", &parallelism.to_string()])
        .args(["--events", &events.to_string()])
        .args(["--batch-size", &tuning.batch_size.to_string()])
        .args(["--channel-capacity", &tuning.channel_capacity.to_string()]);
    if tuning.backend == Backend::Rocksdb {
        cmd.args(["--backend", "rocksdb"]);
    }
    if let Some(ms) = tuning.checkpoint_ms {
        cmd.args(["--checkpoint-ms", &ms.to_string()]);
    }
    if let Some(rate) = rate {
        cmd.args(["--rate", &rate.to_string()]);
    }
    let out = cmd
        .output()
        .context("could not start the benchmark child process")?;
    if !out.status.success() {
        bail!(
            "{} on {engine} failed: {}",
            work.name(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let line = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(line.trim()).with_context(|| format!("bad output from child: {line}"))
}

//! `strom-bench`: runs each benchmark case in a fresh child process (so peak memory is
//! the case's own), several times, and prints a table of medians.
//!
//! `strom-bench` runs everything; `strom-bench --help` lists the options.

mod cases;
mod event;

use anyhow::{Context, bail};
use cases::{Case, build_job, hand_written};
use clap::{Parser, Subcommand};
use serde::{Deserialize, Serialize};
use std::process::Command;
use std::time::Instant;
use strom::prelude::*;

#[derive(Parser)]
#[command(
    about = "Strom benchmarks: events/s and peak memory per pipeline, against a hand-written loop"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// Events per run.
    #[arg(long, default_value_t = 20_000_000)]
    events: u64,
    /// Runs of each case (the table shows medians).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Parallelisms to run, comma-separated.
    #[arg(long, default_value = "1,2", value_delimiter = ',')]
    parallelism: Vec<usize>,
    /// Cases to run, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    cases: Vec<String>,
    /// Also write the table to this file.
    #[arg(long)]
    output: Option<std::path::PathBuf>,
    #[command(flatten)]
    tuning: Tuning,
}

/// Engine settings of the Strom runs (defaults: the engine's own).
#[derive(clap::Args, Clone, Copy, Debug)]
struct Tuning {
    /// Records per batch between tasks.
    #[arg(long, global = true, default_value_t = ExecutionConfig::default().batch_size)]
    batch_size: usize,
    /// Batches a channel holds before its producer waits.
    #[arg(long, global = true, default_value_t = ExecutionConfig::default().channel_capacity)]
    channel_capacity: usize,
}

#[derive(Subcommand)]
enum Cmd {
    /// Runs one case once in this process and prints a JSON line (used by the harness).
    Case {
        case: String,
        #[arg(long)]
        engine: String,
        #[arg(long)]
        parallelism: usize,
        #[arg(long)]
        events: u64,
    },
}

#[derive(Serialize, Deserialize, Debug)]
struct Measurement {
    events: u64,
    seconds: f64,
    peak_rss_kib: u64,
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn run_case(
    case: Case,
    engine: &str,
    parallelism: usize,
    events: u64,
    tuning: Tuning,
) -> anyhow::Result<Measurement> {
    let started = Instant::now();
    match engine {
        "strom" => {
            let env = StreamEnv::new();
            env.set_parallelism(parallelism);
            env.configure(|c| {
                c.batch_size = tuning.batch_size;
                c.channel_capacity = tuning.channel_capacity;
            });
            build_job(&env, case, events);
            env.execute(case.name())?;
        }
        "loop" => {
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
        other => bail!("unknown engine '{other}'; use strom or loop"),
    }
    Ok(Measurement {
        events,
        seconds: started.elapsed().as_secs_f64(),
        peak_rss_kib: peak_rss_kib(),
    })
}

fn measure_in_child(
    case: Case,
    engine: &str,
    parallelism: usize,
    events: u64,
    tuning: Tuning,
) -> anyhow::Result<Measurement> {
    let exe = std::env::current_exe()?;
    let out = Command::new(exe)
        .args(["case", case.name(), "--engine", engine])
        .args([
            "--parallelism",
            &parallelism.to_string(),
            "--events",
            &events.to_string(),
            "--batch-size",
            &tuning.batch_size.to_string(),
            "--channel-capacity",
            &tuning.channel_capacity.to_string(),
        ])
        .output()
        .context("could not start the benchmark child process")?;
    if !out.status.success() {
        bail!(
            "{} on {engine} failed: {}",
            case.name(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let line = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(line.trim()).with_context(|| format!("bad output from child: {line}"))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return 0.0;
    }
    v[v.len() / 2]
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Cmd::Case {
        case,
        engine,
        parallelism,
        events,
    }) = cli.command
    {
        let case = Case::parse(&case).with_context(|| format!("unknown case '{case}'"))?;
        let m = run_case(case, &engine, parallelism, events, cli.tuning)?;
        println!("{}", serde_json::to_string(&m)?);
        return Ok(());
    }

    let cases: Vec<Case> = if cli.cases.is_empty() {
        Case::ALL.to_vec()
    } else {
        cli.cases
            .iter()
            .map(|c| {
                Case::parse(c).with_context(|| {
                    format!(
                        "unknown case '{c}'; cases are {}",
                        Case::ALL.map(Case::name).join(", ")
                    )
                })
            })
            .collect::<anyhow::Result<_>>()?
    };

    let mut table = String::new();
    table.push_str(&format!(
        "{} events per run, median of {} runs, load average before: {}\n\n",
        cli.events,
        cli.runs,
        load_average()
    ));
    table.push_str("| case | p | Strom events/s | loop events/s | Strom / loop | Strom peak RSS | loop peak RSS |\n");
    table.push_str("|---|---:|---:|---:|---:|---:|---:|\n");
    for case in cases {
        for &p in &cli.parallelism {
            let (mut strom_rates, mut loop_rates, mut strom_rss, mut loop_rss) =
                (vec![], vec![], vec![], vec![]);
            // Alternate the engines so drift in machine load hits both alike.
            for _ in 0..cli.runs {
                let s = measure_in_child(case, "strom", p, cli.events, cli.tuning)?;
                strom_rates.push(s.events as f64 / s.seconds);
                strom_rss.push(s.peak_rss_kib as f64);
                let l = measure_in_child(case, "loop", p, cli.events, cli.tuning)?;
                loop_rates.push(l.events as f64 / l.seconds);
                loop_rss.push(l.peak_rss_kib as f64);
            }
            let (s, l) = (median(strom_rates), median(loop_rates));
            let row = format!(
                "| {} | {p} | {:.1}M | {:.1}M | {:.0}% | {:.1} MB | {:.1} MB |\n",
                case.name(),
                s / 1e6,
                l / 1e6,
                100.0 * s / l,
                median(strom_rss) / 1024.0,
                median(loop_rss) / 1024.0
            );
            eprint!("{row}");
            table.push_str(&row);
        }
    }
    table.push('\n');
    for case in Case::ALL {
        table.push_str(&format!("- `{}`: {}\n", case.name(), case.describe()));
    }
    println!("\n{table}");
    if let Some(path) = cli.output {
        std::fs::write(&path, &table)
            .with_context(|| format!("could not write {}", path.display()))?;
    }
    Ok(())
}

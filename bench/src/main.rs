//! `strom-bench`: Strom's benchmarks, each run in a fresh child process (so peak memory is
//! the run's own), several times, printing a Markdown table of medians.
//!
//! - `strom-bench` (no command): each pipeline on Strom against a hand-written loop;
//! - `strom-bench compare`: Strom against Apache Flink 2.3 (pipelines, Nexmark, latency);
//! - `strom-bench network`: a pipeline in one process against two worker processes;
//! - `strom-bench --help` lists the rest.

mod child;
mod compare;
mod k8s_upgrade;
mod kafka;
mod network;
mod recovery;
mod versus_loop;

use anyhow::Context;

// The allocator of Strom's own binaries (see `strom::MiMalloc`).
#[global_allocator]
static ALLOCATOR: strom::MiMalloc = strom::MiMalloc;
use child::{Tuning, Work};
use clap::{Parser, Subcommand};
use strom_bench::cases::Case;
use strom_bench::nexmark;

#[derive(Parser)]
#[command(
    about = "Strom benchmarks: events/s and peak memory per pipeline, against a hand-written loop or Apache Flink"
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

#[derive(Subcommand)]
enum Cmd {
    /// Strom against Apache Flink 2.3 on this machine (prepares Flink first, once).
    Compare(compare::Options),
    /// A pipeline at p = 2 in one process against a master and two worker processes: the
    /// cost of the network path.
    Network {
        /// Cases to run, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "keyed-sum")]
        cases: Vec<String>,
        /// Events per run.
        #[arg(long, default_value_t = 20_000_000)]
        events: u64,
        /// Runs of each case on each setup.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Also write the table to this file.
        #[arg(long)]
        output: Option<std::path::PathBuf>,
    },
    /// A master for `network` runs (internal): runs the case and prints a JSON line.
    #[command(hide = true)]
    ClusterMaster {
        /// A pipeline case or `slow-sink`.
        job: String,
        /// A job argument, `key=value`.
        #[arg(long = "arg")]
        args: Vec<String>,
        #[arg(long, default_value_t = 2)]
        parallelism: usize,
        #[arg(long)]
        port: u16,
        /// Serve the master's REST API on this port.
        #[arg(long)]
        rest_port: Option<u16>,
    },
    /// Large state across processes: checkpoint duration and size, savepoint time, kill -9
    /// of a worker → first output, start from a savepoint → first output (heap and
    /// RocksDB).
    Recovery {
        /// Distinct keys of the job's state.
        #[arg(long, default_value_t = 1_000_000)]
        keys: u64,
        /// Bytes of state per key.
        #[arg(long, default_value_t = 1000)]
        value_bytes: u64,
        /// Runs per backend (the table shows medians).
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Also write the table to this file.
        #[arg(long)]
        output: Option<std::path::PathBuf>,
    },
    /// Apply → the new version running with its state restored, for an upgrade of a
    /// StreamJob on the simulated Kubernetes cluster (the real operator; master and
    /// worker processes running `strom-bench-jobs`), small and large state, heap and RocksDB.
    K8sUpgrade {
        /// Distinct keys of the job's state, one row per value (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "1000,1000000")]
        keys: Vec<u64>,
        /// Bytes of state per key.
        #[arg(long, default_value_t = 1000)]
        value_bytes: u64,
        /// Upgrades per row (the table shows medians).
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Also write the table to this file.
        #[arg(long)]
        output: Option<std::path::PathBuf>,
    },
    /// Kafka → keyed count → Kafka: word count between topics of a tansu broker on
    /// loopback, at least once and exactly once, at each parallelism.
    Kafka {
        /// Input records (one-word lines).
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// Distinct words.
        #[arg(long, default_value_t = 10_000)]
        keys: u64,
        /// Runs of each setup (the table shows medians).
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Parallelisms to run, comma-separated.
        #[arg(long, default_value = "1,2", value_delimiter = ',')]
        parallelism: Vec<usize>,
        /// Also write the table to this file.
        #[arg(long)]
        output: Option<std::path::PathBuf>,
    },
    /// One run of `kafka` (internal): prints a JSON line.
    #[command(hide = true)]
    KafkaJob {
        #[arg(long)]
        brokers: String,
        #[arg(long)]
        output_topic: String,
        #[arg(long, default_value_t = 1)]
        parallelism: usize,
        #[arg(long)]
        exactly_once: bool,
        #[arg(long)]
        events: u64,
    },
    /// The master of `recovery` runs (internal): runs until killed.
    #[command(hide = true)]
    RecoveryMaster {
        #[arg(long = "arg")]
        args: Vec<String>,
        #[arg(long)]
        port: u16,
        #[arg(long)]
        rest_port: u16,
        #[arg(long)]
        checkpoint_dir: String,
        #[arg(long)]
        from_checkpoint: Option<String>,
    },
    /// A worker for `network` runs (internal): runs until killed.
    #[command(hide = true)]
    ClusterWorker {
        #[arg(long)]
        port: u16,
        #[arg(long)]
        id: String,
    },
    /// Runs one case once in this process and prints a JSON line (used by the harness).
    Case {
        /// A pipeline, keyed-latency, or a Nexmark query (q0-q5, q7, q8).
        case: String,
        #[arg(long, default_value = "strom")]
        engine: String,
        #[arg(long, default_value_t = 1)]
        parallelism: usize,
        #[arg(long, default_value_t = 20_000_000)]
        events: u64,
        /// Events per second (keyed-latency).
        #[arg(long)]
        rate: Option<f64>,
    },
    /// Prints the checksum of the first Nexmark events (Flink's port prints the same).
    NexmarkChecksum {
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        #[arg(long, default_value_t = nexmark::DEFAULT_EVENTS_PER_SECOND)]
        events_per_second: u64,
    },
    /// Prints a Nexmark query's result rows on Strom, canonical text, one per line, sorted.
    NexmarkRows {
        query: String,
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        #[arg(long, default_value_t = nexmark::DEFAULT_EVENTS_PER_SECOND)]
        events_per_second: u64,
        #[arg(long, default_value_t = 1)]
        parallelism: usize,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        None => {
            let cases = if cli.cases.is_empty() {
                Case::ALL.to_vec()
            } else {
                cli.cases
                    .iter()
                    .map(|c| match Work::parse(c)? {
                        Work::Pipeline(case) => Ok(case),
                        _ => anyhow::bail!(
                            "'{c}' has no hand-written loop; cases are {}",
                            Case::ALL.map(Case::name).join(", ")
                        ),
                    })
                    .collect::<anyhow::Result<_>>()?
            };
            versus_loop::run(versus_loop::Options {
                events: cli.events,
                runs: cli.runs,
                parallelism: cli.parallelism,
                cases,
                output: cli.output,
                tuning: cli.tuning,
            })
        }
        Some(Cmd::Compare(options)) => compare::run(options, cli.tuning),
        Some(Cmd::Network {
            cases,
            events,
            runs,
            output,
        }) => {
            let cases = cases
                .iter()
                .map(|c| {
                    Case::parse(c).with_context(|| {
                        format!(
                            "unknown case '{c}'; cases are {}",
                            Case::ALL.map(Case::name).join(", ")
                        )
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            network::run(&cases, events, runs, cli.tuning, output)
        }
        Some(Cmd::ClusterMaster {
            job,
            args,
            parallelism,
            port,
            rest_port,
        }) => network::master(&job, args, parallelism, port, rest_port),
        Some(Cmd::ClusterWorker { port, id }) => network::worker(port, id),
        Some(Cmd::Recovery {
            keys,
            value_bytes,
            runs,
            output,
        }) => recovery::run(keys, value_bytes, runs, output),
        Some(Cmd::K8sUpgrade {
            keys,
            value_bytes,
            runs,
            output,
        }) => k8s_upgrade::run(&keys, value_bytes, runs, output),
        Some(Cmd::Kafka {
            events,
            keys,
            runs,
            parallelism,
            output,
        }) => kafka::run(kafka::Options {
            events,
            keys,
            runs,
            parallelism,
            output,
        }),
        Some(Cmd::KafkaJob {
            brokers,
            output_topic,
            parallelism,
            exactly_once,
            events,
        }) => kafka::job(&brokers, &output_topic, parallelism, exactly_once, events),
        Some(Cmd::RecoveryMaster {
            args,
            port,
            rest_port,
            checkpoint_dir,
            from_checkpoint,
        }) => recovery::master(
            args,
            port,
            rest_port,
            checkpoint_dir,
            cli.tuning.backend,
            from_checkpoint,
        ),
        Some(Cmd::Case {
            case,
            engine,
            parallelism,
            events,
            rate,
        }) => {
            let m = child::run(
                Work::parse(&case)?,
                &engine,
                parallelism,
                events,
                rate,
                cli.tuning,
            )?;
            println!("{}", serde_json::to_string(&m)?);
            Ok(())
        }
        Some(Cmd::NexmarkChecksum {
            events,
            events_per_second,
        }) => {
            let checksum = nexmark::events_checksum(events, events_per_second);
            println!("{{\"events\":{events},\"checksum\":\"{checksum:016x}\"}}");
            Ok(())
        }
        Some(Cmd::NexmarkRows {
            query,
            events,
            events_per_second,
            parallelism,
        }) => {
            let q = nexmark::queries::Query::parse(&query)
                .with_context(|| format!("unknown query '{query}'; queries are q0-q5, q7, q8"))?;
            let mut rows = nexmark::strom_rows(q, events, events_per_second, parallelism)?;
            rows.sort_unstable();
            let mut out = String::new();
            for r in rows {
                out.push_str(&r);
                out.push('\n');
            }
            print!("{out}");
            Ok(())
        }
    }
}

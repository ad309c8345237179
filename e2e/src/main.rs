//! `strom-e2e journeys`: the user journeys of `strom_e2e::journeys` against a real
//! cluster (the operator installed by the Helm chart; `e2e/kind/run.sh` calls this), or
//! with `--sim` against fresh simulated clusters, one per journey, as CI runs them.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::time::Instant;
use strom_e2e::journeys::kube_cluster::{KubeCluster, KubeOptions};
use strom_e2e::journeys::sim::{IMAGE, SimCluster, SimOptions, strom_binary};
use strom_e2e::journeys::{self, JOURNEYS};

#[derive(Parser)]
#[command(name = "strom-e2e", version, about = "Strom's end-to-end journeys")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the journeys (lifecycle, failures, failover, modes) one after another.
    Journeys(JourneyArgs),
}

#[derive(clap::Args)]
struct JourneyArgs {
    /// Only these journeys (repeatable); all when unset.
    #[arg(long = "only", value_parser = clap::builder::PossibleValuesParser::new(JOURNEYS))]
    only: Vec<String>,
    /// Run on simulated clusters in this process instead of a real cluster.
    #[arg(long, conflicts_with = "context")]
    sim: bool,
    /// The kubeconfig context of the real cluster; the current context when unset.
    #[arg(long)]
    context: Option<String>,
    /// The namespace the journeys' StreamJobs go to.
    #[arg(long, default_value = "default")]
    namespace: String,
    /// The Strom image the jobs run (already on the nodes).
    #[arg(long, default_value = "strom:e2e")]
    image: String,
    /// The directory this machine shares with every node (kind: an extraMount).
    #[arg(long, default_value = "/tmp/strom-e2e")]
    shared_dir: PathBuf,
    /// Where the nodes have that directory.
    #[arg(long, default_value = "/strom-e2e")]
    shared_dir_on_nodes: PathBuf,
    /// The operator's namespace (the Helm release's).
    #[arg(long, default_value = "strom-system")]
    operator_namespace: String,
    /// The operator's Lease (the Helm release's full name unless leaderElection.leaseName).
    #[arg(long, default_value = "strom")]
    operator_lease: String,
    /// Timeouts are multiplied by this (real clusters schedule and pull; default 3 on a
    /// real cluster, 1 on the simulated one).
    #[arg(long)]
    patience: Option<f64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let Command::Journeys(args) = Cli::parse().command;
    let chosen: Vec<String> = if args.only.is_empty() {
        JOURNEYS.iter().map(|s| s.to_string()).collect()
    } else {
        args.only.clone()
    };
    let mut real = if args.sim {
        None
    } else {
        Some(
            KubeCluster::connect(KubeOptions {
                context: args.context.clone(),
                namespace: args.namespace.clone(),
                image: args.image.clone(),
                shared_here: args.shared_dir.clone(),
                shared_on_nodes: args.shared_dir_on_nodes.clone(),
                operator_lease: (args.operator_namespace.clone(), args.operator_lease.clone()),
                patience: args.patience.unwrap_or(3.0),
            })
            .await?,
        )
    };
    let mut failed = Vec::new();
    for name in &chosen {
        eprintln!("==> journey {name}");
        let start = Instant::now();
        let result = match real.as_mut() {
            Some(cluster) => journeys::run(cluster, name).await,
            None => on_simulated_cluster(name, args.patience.unwrap_or(1.0)).await,
        };
        match result {
            Ok(()) => eprintln!(
                "<== {name}: passed in {:.0} s",
                start.elapsed().as_secs_f64()
            ),
            Err(e) => {
                eprintln!("<== {name}: FAILED: {e:#}");
                failed.push(name.clone());
            }
        }
    }
    anyhow::ensure!(failed.is_empty(), "journeys failed: {}", failed.join(", "));
    eprintln!("all {} journeys passed", chosen.len());
    Ok(())
}

async fn on_simulated_cluster(name: &str, patience: f64) -> anyhow::Result<()> {
    // Not under /tmp, which the pod runner maps to each pod's own emptyDir.
    let dir = std::env::current_dir()
        .context("the working directory")?
        .join(format!("strom-e2e-{}-{name}", std::process::id()));
    let mut cluster = SimCluster::start(SimOptions {
        dir,
        operators: journeys::operators_needed(name),
        images: [(IMAGE.to_string(), strom_binary(false)?)].into(),
        patience,
    })
    .await?;
    let result = journeys::run(&mut cluster, name).await;
    cluster.shutdown().await;
    result
}

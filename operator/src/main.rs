//! The `strom-operator` binary: `crd` prints the CustomResourceDefinitions, `run` runs
//! the operator (in a pod from the Helm chart, or anywhere with a kubeconfig).

use clap::{ArgAction, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;
use strom_lease::ElectionConfig;

#[derive(Parser)]
#[command(
    name = "strom-operator",
    version,
    about = "The Kubernetes operator of Strom"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the CustomResourceDefinitions as YAML (`strom-operator crd | kubectl apply -f -`).
    Crd,
    /// Run the operator: reconcile StreamJobs into masters and workers. The cluster is
    /// the pod's service account, or KUBECONFIG.
    Run(RunArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// Watch StreamJobs in this namespace only [default: every namespace].
    #[arg(long, env = "STROM_OPERATOR_NAMESPACE")]
    namespace: Option<String>,
    /// Elect a leader among the replicas on a Lease; only the leader reconciles.
    #[arg(long, default_value_t = true, action = ArgAction::Set)]
    leader_election: bool,
    /// The Lease's name.
    #[arg(long, default_value = "strom-operator")]
    lease_name: String,
    /// The Lease's namespace [default: the operator pod's, POD_NAMESPACE].
    #[arg(long, env = "POD_NAMESPACE")]
    lease_namespace: Option<String>,
    /// This replica's name in the Lease [default: POD_NAME, else the host name].
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Seconds a Lease holds without renewal (followers take over after it).
    #[arg(long, default_value_t = 15)]
    lease_duration_secs: u64,
    /// Seconds a leader keeps trying to renew before it stops reconciling.
    #[arg(long, default_value_t = 10)]
    renew_deadline_secs: u64,
    /// Seconds between election attempts.
    #[arg(long, default_value_t = 2)]
    retry_period_secs: u64,
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    #[arg(long, default_value = "0.0.0.0:8080")]
    metrics_bind: SocketAddr,
    /// Log level or a tracing filter (`strom_operator=debug,kube=info`).
    #[arg(long, env = "STROM_LOG", default_value = "info")]
    log_level: String,
    #[arg(long, env = "STROM_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Crd => match strom_operator::crd::crd_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Run(args) => match run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_level)
        .map_err(|e| anyhow::anyhow!("--log-level {}: {e}", args.log_level))?;
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    match args.log_format {
        LogFormat::Json => logs.json().init(),
        LogFormat::Text => logs.init(),
    }
    let identity = args
        .identity
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("strom-operator-{}", std::process::id()));
    let election = ElectionConfig {
        lease_duration: Duration::from_secs(args.lease_duration_secs),
        renew_deadline: Duration::from_secs(args.renew_deadline_secs),
        retry_period: Duration::from_secs(args.retry_period_secs),
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let client = kube::Client::try_default().await.map_err(|e| {
            anyhow::anyhow!("no cluster to talk to (in-cluster service account or KUBECONFIG): {e}")
        })?;
        let lease = if args.leader_election {
            let namespace = match args.lease_namespace.clone() {
                Some(ns) => ns,
                None => client.default_namespace().to_string(),
            };
            Some((namespace, args.lease_name.clone()))
        } else {
            None
        };
        let options = strom_operator::run::Options {
            namespace: args.namespace.clone().filter(|n| !n.is_empty()),
            identity,
            lease,
            election,
            metrics_bind: Some(args.metrics_bind),
        };
        strom_operator::run::serve(client, options, async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("stopping");
        })
        .await
    })
}

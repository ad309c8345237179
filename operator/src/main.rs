//! The `strom-operator` binary.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

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
    }
}

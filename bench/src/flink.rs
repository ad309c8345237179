//! Running Apache Flink's side of the comparison: `bench/flink/prepare.sh` fetches Flink
//! 2.3's jars (from PyPI, once, outside the repository) and compiles the Java jobs of
//! `bench/flink/src`; the jobs then run in a local MiniCluster, one JVM per run, and print
//! the same JSON line as Strom's child processes.

use crate::measure::Measurement;
use anyhow::{Context, bail};
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Flink's pipeline jobs (`FlinkBench.java`).
pub const PIPELINES: &str = "strom.bench.FlinkBench";
/// Flink's Nexmark driver (`NexmarkBench.java`).
pub const NEXMARK: &str = "strom.bench.nexmark.NexmarkBench";

/// A prepared Flink: the classpath of its jars and of the compiled jobs.
#[derive(Clone, Debug)]
pub struct Flink {
    classpath: String,
}

/// `bench/flink/prepare.sh` of this checkout.
pub fn prepare_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("flink/prepare.sh")
}

impl Flink {
    /// Runs `prepare.sh` (a no-op once done) and takes the classpath it prints.
    pub fn prepare() -> anyhow::Result<Flink> {
        let script = prepare_script();
        let out = Command::new("bash")
            .arg(&script)
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("could not run {}", script.display()))?;
        if !out.status.success() {
            bail!(
                "{} failed ({}); it needs Java 17 (java, javac) and python3 with pip",
                script.display(),
                out.status
            );
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let classpath = stdout
            .lines()
            .last()
            .filter(|l| !l.is_empty())
            .with_context(|| format!("{} printed no classpath", script.display()))?
            .to_string();
        Ok(Flink { classpath })
    }

    /// Runs `main_class` with `args` and returns its standard output.
    pub fn output(&self, main_class: &str, args: &[String]) -> anyhow::Result<String> {
        let out = Command::new("java")
            .args(["-cp", &self.classpath, main_class])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("could not start java")?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            // The useful part of a JVM failure is its first exception and the last lines.
            let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
            bail!(
                "Flink's {main_class} {} failed ({}):\n{}",
                args.join(" "),
                out.status,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs a Flink job that prints a [`Measurement`] as its last line.
    pub fn measure(&self, main_class: &str, args: &[String]) -> anyhow::Result<Measurement> {
        let stdout = self.output(main_class, args)?;
        let line = stdout.lines().last().unwrap_or("");
        serde_json::from_str(line).with_context(|| format!("bad output from Flink: {stdout}"))
    }
}

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
        // Flink unpacks a 24 MB RPC jar into the JVM's temp directory on every start and
        // leaves it there: each run gets a directory of its own, deleted afterwards.
        static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let tmp = std::env::temp_dir().join(format!(
            "strom-flink-{}-{}",
            std::process::id(),
            RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        let out = Command::new("java")
            .arg(format!("-Djava.io.tmpdir={}", tmp.display()))
            .args(["-cp", &self.classpath, main_class])
            .args(args)
            .stdin(Stdio::null())
            .output();
        let _ = std::fs::remove_dir_all(&tmp);
        let out = out.context("could not start java")?;
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

//! What one benchmark run measured, and how a process measures itself: wall time, CPU time
//! and peak memory, from `/proc` (Flink's jobs read the same files the same way).

use serde::{Deserialize, Serialize};

/// One run of one case on one system, as the child process reports it (one JSON line).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Measurement {
    pub events: u64,
    /// Wall time of the job (for Flink: from submission to completion, so without the JVM's
    /// start and SQL planning).
    pub seconds: f64,
    /// CPU time (user + system, all threads) over the same span.
    #[serde(default)]
    pub cpu_seconds: f64,
    /// Peak resident memory of the whole process (`VmHWM`).
    pub peak_rss_kib: u64,
    /// End-to-end latency of the latency case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_us: Option<Percentiles>,
}

impl Measurement {
    pub fn events_per_second(&self) -> f64 {
        self.events as f64 / self.seconds.max(1e-9)
    }

    /// Events per second of CPU time: throughput per core actually used.
    pub fn events_per_cpu_second(&self) -> f64 {
        self.events as f64 / self.cpu_seconds.max(1e-9)
    }
}

/// Latency percentiles in microseconds (lower bounds of histogram buckets, ≤ 1.6% low).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct Percentiles {
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
    pub count: u64,
}

fn proc_status_kib(process: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{process}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// Peak resident memory of this process so far.
pub fn peak_rss_kib() -> u64 {
    proc_status_kib("self", "VmHWM:")
}

/// Peak resident memory of process `pid` so far.
pub fn peak_rss_kib_of(pid: u32) -> u64 {
    proc_status_kib(&pid.to_string(), "VmHWM:")
}

/// User + system CPU time of this process so far, in seconds.
pub fn cpu_seconds() -> f64 {
    cpu_seconds_of_process("self")
}

/// User + system CPU time of process `pid` so far, in seconds.
pub fn cpu_seconds_of(pid: u32) -> f64 {
    cpu_seconds_of_process(&pid.to_string())
}

fn cpu_seconds_of_process(process: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{process}/stat")) else {
        return 0.0;
    };
    // Fields after the command name, which is in parentheses and may hold spaces.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of stat, in clock ticks (100 per second on Linux).
    (ticks(11) + ticks(12)) as f64 / 100.0
}

/// Prints a finished results table to stdout and, with `output`, writes it there too.
pub fn publish_table(table: &str, output: Option<&std::path::Path>) -> anyhow::Result<()> {
    use anyhow::Context;
    println!("\n{table}");
    if let Some(path) = output {
        std::fs::write(path, table)
            .with_context(|| format!("could not write {}", path.display()))?;
    }
    Ok(())
}

/// The median (the upper one of an even count); 0 for none.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// The 1, 5 and 15 minute load averages.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

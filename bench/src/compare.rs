//! Strom against Apache Flink 2.3, side by side on this machine: every case runs on both
//! systems in turn (Strom, Flink, Strom, Flink, …), each run in a fresh process, and the
//! table reports medians. See `bench/README.md` for what each case is.

use crate::child::{Backend, Tuning, Work, measure_in_child};
use anyhow::Context;
use std::fmt::Write;
use std::path::PathBuf;
use strom_bench::cases::Case;
use strom_bench::flink::{self, Flink};
use strom_bench::measure::{Measurement, load_average, median};
use strom_bench::nexmark::queries::Query;

/// The groups of cases `--only` can select.
pub const GROUPS: [&str; 4] = ["pipelines", "state", "nexmark", "latency"];

/// `strom-bench compare`'s options.
#[derive(clap::Args, Debug)]
pub struct Options {
    /// Runs of each case on each system.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Parallelisms to run, comma-separated.
    #[arg(long, default_value = "1,2", value_delimiter = ',')]
    pub parallelism: Vec<usize>,
    /// Events per run of the heap pipelines.
    #[arg(long, default_value_t = 20_000_000)]
    pub events: u64,
    /// Events per run of the RocksDB cases (Flink's RocksDB is ~10× slower than its heap).
    #[arg(long, default_value_t = 1_000_000)]
    pub rocksdb_events: u64,
    /// Events per run of the Nexmark queries.
    #[arg(long, default_value_t = 4_000_000)]
    pub nexmark_events: u64,
    /// Seconds per latency run.
    #[arg(long, default_value_t = 10)]
    pub latency_seconds: u64,
    /// Events per second of the latency runs (default: half of Flink's keyed-sum rate at
    /// p = 1, as measured in this comparison).
    #[arg(long)]
    pub latency_rate: Option<f64>,
    /// Only these groups, comma-separated: pipelines, state, nexmark, latency.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Also write the report to this file (bench/RESULTS.md by convention).
    #[arg(long)]
    pub output: Option<PathBuf>,
}

/// One row of the table: a case at a parallelism, on both systems.
struct Spec {
    case: String,
    group: &'static str,
    parallelism: usize,
    events: u64,
    /// Strom's side, or why Strom cannot run it yet.
    strom: Result<Work, &'static str>,
    /// Strom's state backend and checkpoint interval for it.
    backend: Backend,
    checkpoint_ms: Option<u64>,
    flink_class: &'static str,
    flink_args: Vec<String>,
    /// The throughput goal (Strom ÷ Flink) of this case.
    goal: f64,
}

struct Outcome {
    spec: Spec,
    strom: Vec<Measurement>,
    flink: Vec<Measurement>,
    load: String,
}

impl Outcome {
    fn strom_median(&self, f: impl Fn(&Measurement) -> f64) -> Option<f64> {
        (!self.strom.is_empty()).then(|| median(self.strom.iter().map(&f).collect()))
    }

    fn flink_median(&self, f: impl Fn(&Measurement) -> f64) -> f64 {
        median(self.flink.iter().map(f).collect())
    }
}

fn specs(o: &Options) -> Vec<Spec> {
    let flink_case = |name: &str, p: usize, events: u64, extra: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = ["case", name, "--parallelism", &p.to_string()]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(["--events".to_string(), events.to_string()]);
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let mut specs = Vec::new();
    for case in Case::ALL {
        for &p in &o.parallelism {
            specs.push(Spec {
                case: case.name().to_string(),
                group: "pipelines",
                parallelism: p,
                events: o.events,
                strom: Ok(Work::Pipeline(case)),
                backend: Backend::Heap,
                checkpoint_ms: None,
                flink_class: flink::PIPELINES,
                flink_args: flink_case(case.name(), p, o.events, &[]),
                goal: 5.0,
            });
        }
    }
    type StateCase<'a> = (&'a str, u64, &'a [&'a str], Backend, Option<u64>, f64);
    let state_cases: [StateCase; 3] = [
        (
            "keyed-sum, RocksDB",
            o.rocksdb_events,
            &["--backend", "rocksdb"],
            Backend::Rocksdb,
            None,
            3.0,
        ),
        (
            "keyed-sum, heap, checkpoint every 1 s",
            // Half the pipelines' events: Flink is slower here, and the run stays short.
            o.events / 2,
            &["--checkpoint-ms", "1000"],
            Backend::Heap,
            Some(1000),
            5.0,
        ),
        (
            "keyed-sum, RocksDB, checkpoint every 1 s",
            o.rocksdb_events,
            &["--backend", "rocksdb", "--checkpoint-ms", "1000"],
            Backend::Rocksdb,
            Some(1000),
            3.0,
        ),
    ];
    for (label, events, extra, backend, checkpoint_ms, goal) in state_cases {
        for &p in &o.parallelism {
            specs.push(Spec {
                case: label.to_string(),
                group: "state",
                parallelism: p,
                events,
                strom: Ok(Work::Pipeline(Case::KeyedSum)),
                backend,
                checkpoint_ms,
                flink_class: flink::PIPELINES,
                flink_args: flink_case("keyed-sum", p, events, extra),
                goal,
            });
        }
    }
    for q in Query::ALL {
        for &p in &o.parallelism {
            let args = [
                "run",
                q.name(),
                "--events",
                &o.nexmark_events.to_string(),
                "--parallelism",
                &p.to_string(),
            ];
            specs.push(Spec {
                case: format!("Nexmark {}", q.name()),
                group: "nexmark",
                parallelism: p,
                events: o.nexmark_events,
                strom: Ok(Work::Nexmark(q)),
                backend: Backend::Heap,
                checkpoint_ms: None,
                flink_class: flink::NEXMARK,
                flink_args: args.iter().map(|s| s.to_string()).collect(),
                goal: 5.0,
            });
        }
    }
    specs
        .into_iter()
        .filter(|s| o.only.is_empty() || o.only.iter().any(|g| g == s.group))
        .collect()
}

/// Runs `spec` on both systems, alternating.
fn measure(spec: Spec, o: &Options, tuning: Tuning, flink: &Flink) -> anyhow::Result<Outcome> {
    let load = load_average();
    let (mut strom, mut flinks) = (Vec::new(), Vec::new());
    for run in 0..o.runs {
        if let Ok(work) = spec.strom {
            let tuning = Tuning {
                backend: spec.backend,
                checkpoint_ms: spec.checkpoint_ms,
                ..tuning
            };
            let m = measure_in_child(work, "strom", spec.parallelism, spec.events, None, tuning)
                .with_context(|| format!("Strom, {} p={}", spec.case, spec.parallelism))?;
            strom.push(m);
        }
        let m = flink.measure(spec.flink_class, &spec.flink_args)?;
        flinks.push(m);
        eprintln!(
            "  {} p={} run {}: Strom {}, Flink {:.2}M/s",
            spec.case,
            spec.parallelism,
            run + 1,
            strom
                .last()
                .map(|m| format!("{:.2}M/s", m.events_per_second() / 1e6))
                .unwrap_or_else(|| "—".into()),
            flinks
                .last()
                .map(|m| m.events_per_second() / 1e6)
                .unwrap_or(0.0)
        );
    }
    Ok(Outcome {
        spec,
        strom,
        flink: flinks,
        load,
    })
}

/// Latency of the keyed pipeline at `rate`, both systems alternating.
struct LatencyOutcome {
    rate: f64,
    strom: Vec<Measurement>,
    flink: Vec<Measurement>,
}

fn measure_latency(
    o: &Options,
    tuning: Tuning,
    rate: f64,
    flink: &Flink,
) -> anyhow::Result<LatencyOutcome> {
    let events = (rate * o.latency_seconds as f64) as u64;
    let (mut strom, mut flinks) = (Vec::new(), Vec::new());
    for run in 0..o.runs {
        strom.push(measure_in_child(
            Work::Latency,
            "strom",
            1,
            events,
            Some(rate),
            tuning,
        )?);
        let args: Vec<String> = [
            "case",
            "keyed-latency",
            "--parallelism",
            "1",
            "--events",
            &events.to_string(),
            "--rate",
            &rate.to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        flinks.push(flink.measure(flink::PIPELINES, &args)?);
        let p99 = |m: Option<&Measurement>| m.and_then(|m| m.latency_us).map_or(0, |l| l.p99);
        eprintln!(
            "  keyed-latency run {}: p99 Strom {} µs, Flink {} µs",
            run + 1,
            p99(strom.last()),
            p99(flinks.last())
        );
    }
    Ok(LatencyOutcome {
        rate,
        strom,
        flink: flinks,
    })
}

pub fn run(o: Options, tuning: Tuning) -> anyhow::Result<()> {
    for g in &o.only {
        anyhow::ensure!(
            GROUPS.contains(&g.as_str()),
            "unknown group '{g}' in --only; groups are {}",
            GROUPS.join(", ")
        );
    }
    let flink = Flink::prepare()?;
    let started = std::time::Instant::now();
    let mut outcomes = Vec::new();
    for spec in specs(&o) {
        eprintln!("{} at p={}:", spec.case, spec.parallelism);
        outcomes.push(measure(spec, &o, tuning, &flink)?);
    }
    let latency = if o.only.is_empty() || o.only.iter().any(|g| g == "latency") {
        let rate = match o.latency_rate {
            Some(r) => r,
            None => half_flink_keyed_rate(&outcomes, &flink, &o)?,
        };
        eprintln!("keyed-latency at {:.0} events/s:", rate);
        Some(measure_latency(&o, tuning, rate, &flink)?)
    } else {
        None
    };
    let report = report(&o, &outcomes, latency.as_ref(), started.elapsed());
    println!("{report}");
    if let Some(path) = &o.output {
        std::fs::write(path, &report)
            .with_context(|| format!("could not write {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// Half of Flink's keyed-sum throughput at p = 1: from this comparison's runs if it made
/// them, else from three runs now.
fn half_flink_keyed_rate(outcomes: &[Outcome], flink: &Flink, o: &Options) -> anyhow::Result<f64> {
    if let Some(out) = outcomes
        .iter()
        .find(|x| x.spec.case == "keyed-sum" && x.spec.parallelism == 1)
    {
        return Ok(out.flink_median(Measurement::events_per_second) / 2.0);
    }
    let args: Vec<String> = [
        "case",
        "keyed-sum",
        "--parallelism",
        "1",
        "--events",
        &o.events.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut rates = Vec::new();
    for _ in 0..3 {
        rates.push(flink.measure(flink::PIPELINES, &args)?.events_per_second());
    }
    Ok(median(rates) / 2.0)
}

fn rate(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else {
        format!("{:.0}k", v / 1e3)
    }
}

/// `20000000` as `20,000,000`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn mib(kib: f64) -> String {
    if kib >= 1024.0 * 1024.0 {
        format!("{:.2} GB", kib / 1024.0 / 1024.0)
    } else {
        format!("{:.0} MB", kib / 1024.0)
    }
}

fn report(
    o: &Options,
    outcomes: &[Outcome],
    latency: Option<&LatencyOutcome>,
    took: std::time::Duration,
) -> String {
    let mut r = String::new();
    let _ = writeln!(r, "# Strom vs Apache Flink 2.3, side by side\n");
    let _ = writeln!(
        r,
        "Measured {} by `bench/compare.sh` ({} min) at Strom commit {}.\n",
        utc_now(),
        took.as_secs().div_ceil(60),
        git_commit()
    );
    let _ = writeln!(r, "Machine: {}.\n", machine());
    let _ = writeln!(
        r,
        "Each case ran {} times on each system, alternating (Strom, Flink, Strom, …), each run \
         in a fresh process; the table shows medians. Events per run: {} (pipelines), {} \
         (heap with checkpoints), {} (RocksDB cases), {} (Nexmark). Flink runs in a local \
         MiniCluster; its time is from job submission to completion (no JVM start, no SQL \
         planning). Events per CPU-second is throughput per core actually used (user + \
         system time of all threads).\n",
        o.runs,
        thousands(o.events),
        thousands(o.events / 2),
        thousands(o.rocksdb_events),
        thousands(o.nexmark_events)
    );
    let _ = writeln!(
        r,
        "| case | p | Strom events/s | Flink events/s | Strom ÷ Flink | Strom events/CPU-s | \
         Flink events/CPU-s | Strom peak RSS | Flink peak RSS | load average before |"
    );
    let _ = writeln!(r, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    let mut shortfalls = Vec::new();
    for out in outcomes {
        let s = &out.spec;
        let flink_rate = out.flink_median(Measurement::events_per_second);
        let flink_cpu = out.flink_median(Measurement::events_per_cpu_second);
        let flink_rss = out.flink_median(|m| m.peak_rss_kib as f64);
        let strom_rate = out.strom_median(Measurement::events_per_second);
        let (strom_cols, ratio) = match (strom_rate, &s.strom) {
            (Some(sr), _) => {
                let cpu = out
                    .strom_median(Measurement::events_per_cpu_second)
                    .unwrap_or(0.0);
                let rss = out.strom_median(|m| m.peak_rss_kib as f64).unwrap_or(0.0);
                let ratio = sr / flink_rate;
                if ratio < s.goal {
                    shortfalls.push(format!(
                        "{} p={}: {:.1}× (goal {}×)",
                        s.case, s.parallelism, ratio, s.goal
                    ));
                }
                if rss * 10.0 > flink_rss {
                    shortfalls.push(format!(
                        "{} p={}: peak RSS {} vs Flink {} (goal ≤ 1/10)",
                        s.case,
                        s.parallelism,
                        mib(rss),
                        mib(flink_rss)
                    ));
                }
                ((rate(sr), rate(cpu), mib(rss)), format!("**{ratio:.1}×**"))
            }
            // Why is said once, under the table.
            (None, Err(_)) => (("—".into(), "—".into(), "—".into()), "—".into()),
            (None, Ok(_)) => (("?".into(), "?".into(), "?".into()), "?".into()),
        };
        let _ = writeln!(
            r,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            s.case,
            s.parallelism,
            strom_cols.0,
            rate(flink_rate),
            ratio,
            strom_cols.1,
            rate(flink_cpu),
            strom_cols.2,
            mib(flink_rss),
            out.load
        );
    }
    if let Some(l) = latency {
        let _ = writeln!(
            r,
            "\nEnd-to-end latency of the keyed pipeline (creation in the source → sink, through a \
             hash exchange and a keyed reduce) at {} events/s, half of Flink's keyed-sum \
             throughput, p = 1, {} s per run; medians of {} runs:\n",
            rate(l.rate),
            o.latency_seconds,
            o.runs
        );
        let _ = writeln!(r, "| system | p50 | p99 | p99.9 | peak RSS |");
        let _ = writeln!(r, "|---|---:|---:|---:|---:|");
        for (name, runs) in [("Strom", &l.strom), ("Flink", &l.flink)] {
            let pct = |f: fn(&strom_bench::measure::Percentiles) -> u64| {
                median(
                    runs.iter()
                        .map(|m| m.latency_us.as_ref().map_or(0.0, |p| f(p) as f64))
                        .collect(),
                )
            };
            let ms = |us: f64| format!("{:.2} ms", us / 1000.0);
            let p99 = pct(|p| p.p99);
            if name == "Strom" && p99 > 10_000.0 {
                shortfalls.push(format!("Strom p99 latency {} (goal ≤ 10 ms)", ms(p99)));
            }
            let _ = writeln!(
                r,
                "| {name} | {} | {} | {} | {} |",
                ms(pct(|p| p.p50)),
                ms(p99),
                ms(pct(|p| p.p999)),
                mib(median(runs.iter().map(|m| m.peak_rss_kib as f64).collect()))
            );
        }
    }
    let _ = writeln!(
        r,
        "\nGoals: Strom ≥ 5× Flink's throughput at the same parallelism (≥ 3× for RocksDB), \
         peak RSS ≤ 1/10 of Flink's, p99 latency ≤ 10 ms."
    );
    let not_run: Vec<&str> = outcomes
        .iter()
        .filter_map(|o| o.spec.strom.as_ref().err().copied())
        .collect();
    let waiting = if not_run.is_empty() {
        String::new()
    } else {
        format!(
            " The {} rows without Strom figures wait: {}.",
            not_run.len(),
            not_run[0]
        )
    };
    if shortfalls.is_empty() {
        let _ = writeln!(r, "Every case Strom ran meets them.{waiting}");
    } else {
        let _ = writeln!(r, "Short of them:\n");
        for s in shortfalls {
            let _ = writeln!(r, "- {s}");
        }
        let _ = writeln!(r, "\n{}", waiting.trim_start());
    }
    r
}

fn git_commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "?".into())
}

/// CPU model, cores, memory, kernel, Java.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let java = std::process::Command::new("java")
        .arg("-version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .next()
                .map(|l| l.to_string())
        })
        .unwrap_or_default();
    format!("{cores} × {model}, {mem_gib:.0} GiB, Linux {kernel}, {java}")
}

/// The current time, `YYYY-MM-DD HH:MM UTC`.
fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    use super::thousands;

    #[test]
    fn event_counts_are_grouped_by_thousands() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(20_000_000), "20,000,000");
    }
}

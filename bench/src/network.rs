//! The cost of the network path: a pipeline at p = 2 in one process, against the same job
//! run by a `strom master` and two `strom worker` processes (one slot each), so half of
//! every hash exchange crosses between processes over gRPC. Alternating, in fresh
//! processes; the cluster's time runs from deployment to the job's end.
//!
//! The same roles run `slow-sink`, a job whose sink is slower than its source, for the
//! backpressure test across processes (`tests/backpressure.rs`).

use crate::child::{Tuning, Work, measure_in_child};
use anyhow::Context;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use strom::cluster::master::{JobOutcome, MasterExit, MasterOptions, run_master};
use strom::cluster::restart::RestartStrategy;
use strom::cluster::worker::{WorkerOptions, run_worker};
use strom::{ArgSpec, JobArgs, JobRegistry, JobSpec};
use strom_bench::cases::{Case, build_job};
use strom_bench::measure::{Measurement, cpu_seconds_of, load_average, median, peak_rss_kib_of};

const ARGS: &[ArgSpec] = &[ArgSpec::new("events", "20000000", "events to generate")];

const SLOW_SINK_ARGS: &[ArgSpec] = &[
    ArgSpec::new("events", "0", "events to generate; 0 = never stop"),
    ArgSpec::new(
        "sink-rate",
        "1000",
        "records per second the sink takes, over all subtasks",
    ),
];

/// Holds a sink subtask to `per_second` records per second on average.
#[derive(Clone)]
struct Pacer {
    per_second: f64,
    started: Option<std::time::Instant>,
    taken: u64,
}

impl Pacer {
    fn take(&mut self) {
        let started = *self.started.get_or_insert_with(std::time::Instant::now);
        self.taken += 1;
        let due = started + Duration::from_secs_f64(self.taken as f64 / self.per_second);
        let now = std::time::Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
    }
}

/// Generated events, keyed, into a sink slower than the source: a backpressure test.
fn slow_sink(env: &strom::prelude::StreamEnv, args: &JobArgs) -> anyhow::Result<()> {
    use strom::prelude::*;
    let events = args.u64("events")?;
    let rate = args.u64("sink-rate")?.max(1) as f64;
    let source = GeneratorSource::new(|i| strom_bench::event::event(i, 10_000));
    let source = if events == 0 {
        source
    } else {
        source.count(events)
    };
    let mut pacer = Pacer {
        per_second: rate / env.config().parallelism.max(1) as f64,
        started: None,
        taken: 0,
    };
    env.add_source(source, None, "Events")
        .key_by(|e: &strom_bench::event::BenchEvent| e.key)
        .add_sink(move |_e: strom_bench::event::BenchEvent| pacer.take());
    Ok(())
}

fn build(case: Case) -> strom::jobs::BuildFn {
    match case {
        Case::Stateless => |env, args: &JobArgs| {
            build_job(env, Case::Stateless, args.u64("events")?);
            Ok(())
        },
        Case::KeyedSum => |env, args: &JobArgs| {
            build_job(env, Case::KeyedSum, args.u64("events")?);
            Ok(())
        },
        Case::TumblingWindow => |env, args: &JobArgs| {
            build_job(env, Case::TumblingWindow, args.u64("events")?);
            Ok(())
        },
    }
}

/// The pipelines as jobs a master and its workers can build by name.
pub(crate) fn registry() -> JobRegistry {
    let mut registry = JobRegistry::new();
    for case in Case::ALL {
        registry.register(JobSpec {
            name: case.name(),
            summary: case.describe(),
            args: ARGS,
            build: build(case),
        });
    }
    registry.register(JobSpec {
        name: "slow-sink",
        summary: "generated events, keyed, into a sink that takes sink-rate records/s",
        args: SLOW_SINK_ARGS,
        build: slow_sink,
    });
    strom_bench::jobs::register(&mut registry);
    registry
}

/// `strom-bench cluster-master`: runs the master and prints its measurement (events from
/// the job's `events` argument).
pub fn master(
    job: &str,
    args: Vec<String>,
    parallelism: usize,
    port: u16,
    rest_port: Option<u16>,
) -> anyhow::Result<()> {
    let events = args
        .iter()
        .find_map(|a| a.strip_prefix("events="))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let options = MasterOptions {
        bind: ([127, 0, 0, 1], port).into(),
        job: Some(strom::cluster::job::JobSubmission {
            name: job.to_string(),
            args,
            parallelism,
            max_parallelism: strom::keygroup::DEFAULT_MAX_PARALLELISM,
            batch_size: strom::config::ExecutionConfig::default().batch_size,
            batch_mode: false,
            checkpoints: None,
            from_checkpoint: None,
            allow_non_restored_state: false,
            state: None,
        }),
        heartbeat_interval: Duration::from_millis(200),
        heartbeat_timeout: Duration::from_secs(10),
        restart: RestartStrategy::None,
        rest_bind: rest_port.map(|p| ([127, 0, 0, 1], p).into()),
    };
    match run_master(&registry(), options)? {
        MasterExit::JobEnded(JobOutcome::Finished { ran_for }) => {
            let m = Measurement {
                events,
                seconds: ran_for.as_secs_f64(),
                cpu_seconds: 0.0,
                peak_rss_kib: 0,
                latency_us: None,
            };
            println!("{}", serde_json::to_string(&m)?);
            Ok(())
        }
        MasterExit::JobEnded(JobOutcome::Failed(why)) => anyhow::bail!("the job failed: {why}"),
        MasterExit::JobEnded(JobOutcome::Cancelled) => anyhow::bail!("the job was cancelled"),
        MasterExit::Stopped(signal) => anyhow::bail!("the master was stopped ({signal})"),
    }
}

/// `strom-bench cluster-worker`: runs a worker until killed.
pub fn worker(master_port: u16, id: String) -> anyhow::Result<()> {
    run_worker(
        registry(),
        WorkerOptions {
            master: format!("http://127.0.0.1:{master_port}"),
            id,
            slots: 1,
            data_bind: ([127, 0, 0, 1], 0).into(),
            advertise_host: "127.0.0.1".into(),
            reconnect_interval: Duration::from_millis(50),
            channel_wait: Duration::from_secs(60),
        },
    )
}

/// Kills the workers when dropped.
struct Workers(Vec<Child>);

impl Drop for Workers {
    fn drop(&mut self) {
        for w in &mut self.0 {
            let _ = w.kill();
            let _ = w.wait();
        }
    }
}

/// One run across a master and two worker processes: events/s, and the workers' summed
/// CPU time and largest peak RSS.
fn cluster_once(case: Case, events: u64) -> anyhow::Result<Measurement> {
    let exe = std::env::current_exe()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut master = Command::new(&exe)
        .args([
            "cluster-master",
            case.name(),
            "--arg",
            &format!("events={events}"),
        ])
        .args(["--port", &port.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let workers = Workers(
        (1..=2)
            .map(|i| {
                Command::new(&exe)
                    .args(["cluster-worker", "--port", &port.to_string(), "--id"])
                    .arg(format!("w{i}"))
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
            })
            .collect::<Result<_, _>>()?,
    );
    let stdout = master.stdout.take().context("the master's output")?;
    let line = BufReader::new(stdout)
        .lines()
        .next()
        .context("the master printed nothing: the job failed")??;
    master.wait()?;
    let mut m: Measurement =
        serde_json::from_str(&line).with_context(|| format!("unreadable master output: {line}"))?;
    m.cpu_seconds = workers.0.iter().map(|w| cpu_seconds_of(w.id())).sum();
    m.peak_rss_kib = workers
        .0
        .iter()
        .map(|w| peak_rss_kib_of(w.id()))
        .max()
        .unwrap_or(0);
    Ok(m)
}

/// The table: each case at p = 2, in one process and across two workers.
pub fn run(
    cases: &[Case],
    events: u64,
    runs: usize,
    tuning: Tuning,
    output: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    let mut table = format!(
        "{events} events per run, p = 2, median of {runs} runs, load average before: {}\n\n\
         | case | one process events/s | 2 worker processes events/s | across ÷ one | one-process peak RSS | largest worker peak RSS |\n\
         |---|---:|---:|---:|---:|---:|\n",
        load_average()
    );
    for &case in cases {
        let (mut one, mut across, mut one_rss, mut worker_rss) = (vec![], vec![], vec![], vec![]);
        for _ in 0..runs {
            let m = measure_in_child(Work::Pipeline(case), "strom", 2, events, None, tuning)?;
            one.push(m.events_per_second());
            one_rss.push(m.peak_rss_kib as f64);
            let c = cluster_once(case, events)?;
            across.push(c.events_per_second());
            worker_rss.push(c.peak_rss_kib as f64);
        }
        let (o, a) = (median(one), median(across));
        let row = format!(
            "| {} | {:.1}M | {:.1}M | {:.0}% | {:.1} MB | {:.1} MB |\n",
            case.name(),
            o / 1e6,
            a / 1e6,
            100.0 * a / o,
            median(one_rss) / 1024.0,
            median(worker_rss) / 1024.0
        );
        eprint!("{row}");
        table.push_str(&row);
    }
    strom_bench::measure::publish_table(&table, output.as_deref())
}

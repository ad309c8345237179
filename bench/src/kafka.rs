//! Kafka → keyed count → Kafka: the built-in `word-count` job reading a topic of one-word
//! lines (`keys` distinct words) and writing every running count to another topic, at
//! least once and exactly once (Kafka transactions), at each parallelism, with a
//! checkpoint every second in both modes.
//!
//! The broker is `tansu` (the Kafka-protocol broker the tests use, from
//! `scripts/kafka-broker` or `STROM_TANSU`) on loopback with in-memory storage, on the
//! same cores as the job: its CPU time is reported next to Strom's. The input topic (4
//! partitions) is filled once; each run is a fresh `strom-bench kafka-job` process whose
//! job reads it from the start into a fresh output topic (2 partitions). The time runs
//! from the job's start until its sink has taken one count per input record — and, for
//! exactly once, until every writer committed the transaction holding its last records
//! (its commit marker, a consumer-group offset, moved). Then the job is cancelled and
//! must have written exactly one count per input record.
//!
//! The job does not use `kafka-bounded`: tansu 0.6 gives the last *batch's* base offset
//! + 1 as a partition's end, so a bounded read of a topic filled in batches ends early.

use anyhow::{Context, bail};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use strom::prelude::*;
use strom_bench::measure::{
    Measurement, cpu_seconds, cpu_seconds_of, median, peak_rss_kib, publish_table,
};

/// The harness's settings (`strom-bench kafka`).
pub struct Options {
    pub events: u64,
    pub keys: u64,
    pub runs: usize,
    pub parallelism: Vec<usize>,
    pub output: Option<std::path::PathBuf>,
}

const INPUT: &str = "lines";
const INPUT_PARTITIONS: i32 = 4;
const OUTPUT_PARTITIONS: i32 = 2;
/// The sink's operator name in the word-count job, whose records in are checked.
const SINK: &str = "Word Counts to Kafka";

/// A tansu broker on a free loopback port, killed when dropped.
struct Broker {
    child: Child,
    address: String,
}

impl Broker {
    fn start() -> anyhow::Result<Broker> {
        let tansu = tansu()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let address = format!("127.0.0.1:{port}");
        let url = format!("tcp://{address}");
        let child = Command::new(&tansu)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/", "--silent"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("could not start {tansu}"))?;
        let broker = Broker { child, address };
        let started = Instant::now();
        while std::net::TcpStream::connect(&broker.address).is_err() {
            if started.elapsed() > Duration::from_secs(20) {
                bail!("tansu does not listen on {}", broker.address);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(broker)
    }

    fn create_topic(&self, name: &str, partitions: i32) -> anyhow::Result<()> {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.address)
            .create()?;
        let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        for result in
            futures::executor::block_on(admin.create_topics([&topic], &AdminOptions::new()))?
        {
            result.map_err(|(topic, e)| anyhow::anyhow!("creating topic {topic}: {e}"))?;
        }
        Ok(())
    }

    /// `events` one-word lines, word `k<i % keys>`, round-robin over the partitions.
    fn fill(&self, events: u64, keys: u64) -> anyhow::Result<()> {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &self.address)
            .set("linger.ms", "20")
            .set("batch.num.messages", "10000")
            .set("queue.buffering.max.messages", "1000000")
            .create()?;
        for i in 0..events {
            let line = format!("k{}", i % keys);
            let mut record = BaseRecord::<(), String>::to(INPUT)
                .payload(&line)
                .partition((i % INPUT_PARTITIONS as u64) as i32);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((
                        rdkafka::error::KafkaError::MessageProduction(
                            rdkafka::types::RDKafkaErrorCode::QueueFull,
                        ),
                        back,
                    )) => {
                        record = back;
                        producer.poll(Duration::from_millis(10));
                    }
                    Err((e, _)) => return Err(e.into()),
                }
            }
            producer.poll(Duration::ZERO);
        }
        producer.flush(Duration::from_secs(300))?;
        Ok(())
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The tansu binary: `STROM_TANSU`, else what `scripts/kafka-broker` installs.
fn tansu() -> anyhow::Result<String> {
    if let Ok(path) = std::env::var("STROM_TANSU") {
        return Ok(path);
    }
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/kafka-broker");
    let out = Command::new(&script)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("could not run {}", script.display()))?;
    if !out.status.success() {
        bail!("{} failed", script.display());
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

/// One row of the table: the sink's mode and the parallelism.
#[derive(Clone, Copy)]
struct Setup {
    exactly_once: bool,
    parallelism: usize,
}

impl Setup {
    fn sink(self) -> &'static str {
        if self.exactly_once {
            "exactly once"
        } else {
            "at least once"
        }
    }
}

/// `strom-bench kafka`: fills the input topic, runs every setup `runs` times (setups
/// alternating), prints the table of medians.
pub fn run(options: Options) -> anyhow::Result<()> {
    let broker = Broker::start()?;
    broker.create_topic(INPUT, INPUT_PARTITIONS)?;
    let filling = Instant::now();
    broker.fill(options.events, options.keys)?;
    eprintln!(
        "filled {INPUT} with {} records in {:.1} s",
        options.events,
        filling.elapsed().as_secs_f64()
    );
    let setups: Vec<Setup> = [false, true]
        .into_iter()
        .flat_map(|exactly_once| {
            options.parallelism.iter().map(move |&parallelism| Setup {
                exactly_once,
                parallelism,
            })
        })
        .collect();
    let mut results: Vec<Vec<(Measurement, f64)>> = vec![Vec::new(); setups.len()];
    let mut topic = 0;
    for run in 0..options.runs {
        for (i, setup) in setups.iter().enumerate() {
            topic += 1;
            let output = format!("counts-{topic}");
            broker.create_topic(&output, OUTPUT_PARTITIONS)?;
            let broker_cpu = cpu_seconds_of(broker.child.id());
            let m = run_job(&broker.address, &output, *setup, options.events)?;
            let broker_cpu = cpu_seconds_of(broker.child.id()) - broker_cpu;
            eprintln!(
                "run {}: {}, p = {}: {:.0} events/s, Strom {:.2} CPU-s, broker {:.2} CPU-s",
                run + 1,
                setup.sink(),
                setup.parallelism,
                m.events_per_second(),
                m.cpu_seconds,
                broker_cpu
            );
            results[i].push((m, broker_cpu));
        }
    }
    let mut table = format!(
        "Kafka → keyed count → Kafka (`word-count`, {} one-word lines, {} keys, input 4 partitions, output 2; tansu on loopback; checkpoint every 1 s); medians of {} runs\n\n\
         | sink | p | events/s | Strom CPU-s | Strom events/CPU-s | broker CPU-s | Strom peak RSS |\n\
         |---|---:|---:|---:|---:|---:|---:|\n",
        options.events, options.keys, options.runs
    );
    for (setup, runs) in setups.iter().zip(&results) {
        let pick = |f: &dyn Fn(&(Measurement, f64)) -> f64| median(runs.iter().map(f).collect());
        table.push_str(&format!(
            "| {} | {} | {} | {:.2} | {} | {:.2} | {} MB |\n",
            setup.sink(),
            setup.parallelism,
            si(pick(&|(m, _)| m.events_per_second())),
            pick(&|(m, _)| m.cpu_seconds),
            si(pick(&|(m, _)| m.events_per_cpu_second())),
            pick(&|(_, b)| *b),
            (pick(&|(m, _)| m.peak_rss_kib as f64) / 1024.0).round(),
        ));
    }
    publish_table(&table, options.output.as_deref())
}

/// The consumer group of the commit marker of word count's exactly-once writer
/// `subtask`: named after its transactional id.
fn marker_group(
    brokers: &str,
    topic: &str,
    subtask: usize,
) -> anyhow::Result<rdkafka::consumer::BaseConsumer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("strom-word-count-{topic}-{subtask}"))
        .create()?)
}

/// A writer's commit marker: the offset its group committed on partition 0 of `topic`.
fn commit_marker(
    group: &rdkafka::consumer::BaseConsumer,
    topic: &str,
) -> anyhow::Result<Option<i64>> {
    use rdkafka::consumer::Consumer;
    let mut list = rdkafka::TopicPartitionList::new();
    list.add_partition(topic, 0);
    let committed = group.committed_offsets(list, Duration::from_secs(10))?;
    Ok(committed
        .elements()
        .first()
        .and_then(|e| e.offset().to_raw()))
}

/// 1.23M, 456k.
fn si(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else {
        format!("{:.0}k", v / 1e3)
    }
}

fn run_job(brokers: &str, output: &str, setup: Setup, events: u64) -> anyhow::Result<Measurement> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.args(["kafka-job", "--brokers", brokers, "--output-topic", output])
        .args(["--parallelism", &setup.parallelism.to_string()])
        .args(["--events", &events.to_string()]);
    if setup.exactly_once {
        cmd.arg("--exactly-once");
    }
    let out = cmd
        .output()
        .context("could not start the kafka-job process")?;
    if !out.status.success() {
        bail!("kafka-job failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let line = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(line.trim()).with_context(|| format!("bad output from kafka-job: {line}"))
}

/// `strom-bench kafka-job` (internal): one run of word count from the input topic to
/// `output_topic`; prints its measurement as a JSON line.
pub fn job(
    brokers: &str,
    output_topic: &str,
    parallelism: usize,
    exactly_once: bool,
    events: u64,
) -> anyhow::Result<()> {
    let scratch = std::env::temp_dir().join(format!("strom-bench-kafka-{}", std::process::id()));
    let storage = strom::checkpoint::storage::CheckpointStorage::open(
        &scratch.display().to_string(),
        &Default::default(),
    )?;
    let env = StreamEnv::with_config(ExecutionConfig {
        parallelism,
        checkpointing: Some(strom::checkpoint::CheckpointConfig {
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(60),
            min_pause: Duration::ZERO,
            max_concurrent: 1,
            retained: 1,
            storage,
            options: Default::default(),
            job_dir: "kafka-word-count".into(),
            mode: Default::default(),
            retention: Default::default(),
        }),
        ..ExecutionConfig::default()
    });
    let registry = strom::JobRegistry::builtin();
    let spec = registry.find("word-count").context("no word-count job")?;
    let args: Vec<String> = [
        format!("kafka-brokers={brokers}"),
        format!("input-topic={INPUT}"),
        format!("output-topic={output_topic}"),
        format!("exactly-once={exactly_once}"),
    ]
    .into();
    let args = strom::JobArgs::parse(spec.name, spec.args, &args)?;
    (spec.build)(&env, &args)?;
    // Made before the clock starts: a client per writer's marker group.
    let marker_groups = (0..parallelism)
        .map(|subtask| marker_group(brokers, output_topic, subtask))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let markers = || -> anyhow::Result<Vec<Option<i64>>> {
        marker_groups
            .iter()
            .map(|group| commit_marker(group, output_topic))
            .collect()
    };
    let (started, cpu_before) = (Instant::now(), cpu_seconds());
    let job = env.execute_async(spec.name)?;
    let sink_took = |m: &strom::runtime::metrics::JobMetrics| {
        m.operator(SINK).map_or(0, |o| o.totals().records_in)
    };
    if !job.wait_for(Duration::from_secs(600), |m| sink_took(m) >= events) {
        bail!(
            "the sink took {} of {events} counts in 10 minutes",
            sink_took(job.metrics())
        );
    }
    if exactly_once {
        let before = markers()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while markers()?
            .iter()
            .zip(&before)
            .any(|(now, then)| now == then)
        {
            if Instant::now() > deadline {
                bail!("the writers did not commit their last transactions within 60 s");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_before;
    job.cancel();
    let result = job.join();
    let _ = std::fs::remove_dir_all(&scratch);
    let written = sink_took(&result?.metrics);
    if written != events {
        bail!("the sink took {written} counts, not one per input record ({events})");
    }
    let m = Measurement {
        events,
        seconds,
        cpu_seconds: cpu,
        peak_rss_kib: peak_rss_kib(),
        latency_us: None,
    };
    println!("{}", serde_json::to_string(&m)?);
    Ok(())
}

//! The Kafka source and sink against a real Kafka-protocol broker (`tansu`, from
//! `scripts/kafka-broker`), started on loopback per test: topic in → job → topic out with
//! exact output at parallelism 2; unreadable records to the dead-letter output; a missing
//! topic named in the job's error.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::free_port;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use strom::connectors::kafka::{
    KafkaConfig, KafkaSink, KafkaSource, KeyValueText, StartingOffsets, TextValue,
};
use strom::prelude::*;

/// The broker binary: STROM_TANSU (scripts/test sets it), else what
/// `scripts/kafka-broker` installs — once per test process, as tests run side by side.
fn tansu() -> String {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        if let Ok(path) = std::env::var("STROM_TANSU") {
            return path;
        }
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/kafka-broker");
        let out = Command::new(&script)
            .stderr(Stdio::inherit())
            .output()
            .expect("scripts/kafka-broker runs");
        assert!(out.status.success(), "scripts/kafka-broker failed");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    })
    .clone()
}

/// A tansu broker on a free loopback port, killed when dropped.
struct Broker {
    child: Child,
    address: String,
}

impl Broker {
    fn start() -> Broker {
        let tansu = tansu();
        let port = free_port();
        let address = format!("127.0.0.1:{port}");
        let url = format!("tcp://{address}");
        let child = Command::new(tansu)
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
            .expect("tansu starts");
        let start = Instant::now();
        while std::net::TcpStream::connect(&address).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "tansu does not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Broker { child, address }
    }

    fn config(&self) -> KafkaConfig {
        KafkaConfig::new(&self.address)
            // Short group timeouts: joins otherwise wait out the broker's defaults.
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "1000")
    }

    fn create_topic(&self, name: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.address)
            .create()
            .unwrap();
        let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        let results =
            futures::executor::block_on(admin.create_topics([&topic], &AdminOptions::new()))
                .unwrap();
        for r in results {
            r.unwrap();
        }
    }

    /// A producer that sends every record in a batch of its own: tansu 0.6 answers a
    /// "latest offset" request with one past the last *batch's base offset*, so with
    /// batches of many records a bounded read would stop after the first of each.
    fn producer(&self) -> BaseProducer {
        ClientConfig::new()
            .set("bootstrap.servers", &self.address)
            .set("batch.num.messages", "1")
            .create()
            .unwrap()
    }

    /// Writes `lines` round-robin over `partitions` partitions of `topic`.
    fn produce(&self, topic: &str, partitions: i32, lines: &[String]) {
        let producer = self.producer();
        for (i, line) in lines.iter().enumerate() {
            let record: BaseRecord<'_, (), String> = BaseRecord::to(topic)
                .payload(line)
                .partition(i as i32 % partitions);
            producer.send(record).map_err(|(e, _)| e).unwrap();
            producer.poll(Duration::ZERO);
        }
        producer.flush(Duration::from_secs(30)).unwrap();
    }

    /// Every (key, value) of `topic`: until `expected` records arrived, then for another
    /// second, so that records beyond those are seen too.
    fn consume(&self, topic: &str, partitions: i32, expected: usize) -> Vec<(String, String)> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.address)
            .set("group.id", "test-reader")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let mut list = TopicPartitionList::new();
        for p in 0..partitions {
            list.add_partition_offset(topic, p, Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&list).unwrap();
        let mut out = Vec::new();
        let start = Instant::now();
        let mut complete: Option<Instant> = None;
        while complete.is_none_or(|at| at.elapsed() < Duration::from_secs(1))
            && start.elapsed() < Duration::from_secs(60)
        {
            if complete.is_none() && out.len() >= expected {
                complete = Some(Instant::now());
            }
            if let Some(m) = consumer.poll(Duration::from_millis(100)) {
                let m = m.unwrap();
                let text =
                    |b: Option<&[u8]>| String::from_utf8_lossy(b.unwrap_or_default()).into_owned();
                out.push((text(m.key()), text(m.payload())));
            }
        }
        out
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lines(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("w{} w{} common", i % 7, i % 3))
        .collect()
}

/// Each word's expected running counts 1..=n, from the lines.
fn expected_counts(lines: &[String]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for line in lines {
        for word in line.split_whitespace() {
            *counts.entry(word.to_string()).or_insert(0) += 1;
        }
    }
    counts
}

/// Each word's counts as written are exactly 1, 2, … n: none lost, none twice.
fn assert_exact(written: &[(String, String)], expected: &BTreeMap<String, u64>) {
    let mut seen: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (word, count) in written {
        seen.entry(word.clone())
            .or_default()
            .push(count.parse().unwrap());
    }
    assert_eq!(seen.len(), expected.len(), "words: {:?}", seen.keys());
    for (word, mut counts) in seen {
        counts.sort_unstable();
        let n = expected[&word];
        assert_eq!(counts, (1..=n).collect::<Vec<_>>(), "the counts of {word}");
    }
}

fn word_count_job(env: &StreamEnv, config: &KafkaConfig, source: KafkaSource<String>) {
    let lines = env.add_source(source, None, "lines");
    strom::jobs::wordcount::word_counts(&lines)
        .map(|wc: strom::jobs::wordcount::WordCount| (wc.word, wc.count))
        .sink_to(KafkaSink::new(config.clone(), "counts", KeyValueText));
}

#[test]
fn a_topic_is_counted_into_another_exactly_at_parallelism_two() {
    let broker = Broker::start();
    broker.create_topic("lines", 3);
    broker.create_topic("counts", 2);
    let input = lines(3000);
    broker.produce("lines", 3, &input);

    let env = StreamEnv::new();
    env.set_parallelism(2);
    let config = broker.config();
    word_count_job(
        &env,
        &config,
        KafkaSource::new(config.clone(), ["lines"], TextValue).bounded(),
    );
    env.execute("kafka word count").unwrap();

    let expected = expected_counts(&input);
    let total: u64 = expected.values().sum();
    let written = broker.consume("counts", 2, total as usize);
    assert_eq!(written.len() as u64, total, "one count per word read");
    assert_exact(&written, &expected);
}

#[test]
fn unreadable_records_go_to_the_dead_letter_output_and_the_rest_is_read() {
    let broker = Broker::start();
    broker.create_topic("raw", 1);
    let producer = broker.producer();
    for payload in [b"fine".to_vec(), vec![0xff, 0xfe], b"also fine".to_vec()] {
        producer
            .send(BaseRecord::<(), Vec<u8>>::to("raw").payload(&payload))
            .map_err(|(e, _)| e)
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();

    let env = StreamEnv::new();
    let stream = env.add_source(
        KafkaSource::new(broker.config(), ["raw"], TextValue).bounded(),
        None,
        "raw",
    );
    let good = stream.collect();
    let bad = stream.side_output(&dead_letter_tag()).collect();
    env.execute("dead letters").unwrap();
    let values: Vec<String> = good.records().into_iter().map(|r| r.0).collect();
    assert_eq!(values, ["fine", "also fine"]);
    let letters: Vec<DeadLetter> = bad.records().into_iter().map(|r| r.0).collect();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].position, "raw/0@1");
    assert!(
        letters[0].error.contains("not UTF-8"),
        "{}",
        letters[0].error
    );
}

#[test]
fn a_missing_topic_is_an_error_that_names_it() {
    let broker = Broker::start();
    let env = StreamEnv::new();
    env.add_source(
        KafkaSource::new(broker.config(), ["nope"], TextValue).bounded(),
        None,
        "nope",
    )
    .collect();
    let e = env.execute("missing topic").unwrap_err().to_string();
    assert!(e.contains("topic nope"), "{e}");
}

#[test]
fn bounded_reads_start_at_the_earliest_or_latest_offsets_and_keep_record_times() {
    let broker = Broker::start();
    broker.create_topic("timed", 1);
    let producer = broker.producer();
    for (i, ts) in [1_000i64, 2_000, 3_000].into_iter().enumerate() {
        let payload = format!("r{i}");
        producer
            .send(
                BaseRecord::<(), String>::to("timed")
                    .payload(&payload)
                    .timestamp(ts),
            )
            .map_err(|(e, _)| e)
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    let read = |starting: StartingOffsets| {
        let env = StreamEnv::new();
        let out = env
            .add_source(
                KafkaSource::new(broker.config(), ["timed"], TextValue)
                    .starting_offsets(starting)
                    .bounded(),
                None,
                "timed",
            )
            .collect();
        env.execute("starting offsets").unwrap();
        out.records()
    };
    assert_eq!(
        read(StartingOffsets::Earliest),
        vec![
            ("r0".to_string(), Some(1_000)),
            ("r1".to_string(), Some(2_000)),
            ("r2".to_string(), Some(3_000))
        ]
    );
    assert_eq!(read(StartingOffsets::Latest), vec![]);
    // StartingOffsets::Timestamp is not checked here: tansu 0.6 answers a lookup by
    // timestamp with the earliest offset whatever the time.
}

/// The built-in `word-count` job with `--arg` options, as `strom run` builds it.
fn run_word_count(args: &[String], parallelism: usize) -> Result<(), String> {
    let registry = strom::JobRegistry::builtin();
    let spec = registry.find("word-count").unwrap();
    let args = strom::JobArgs::parse(spec.name, spec.args, args).map_err(|e| e.to_string())?;
    let env = StreamEnv::new();
    env.set_parallelism(parallelism);
    (spec.build)(&env, &args).map_err(|e| format!("{e:#}"))?;
    env.execute(spec.name)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[test]
fn the_word_count_job_reads_and_writes_kafka_topics_given_as_args() {
    let broker = Broker::start();
    broker.create_topic("hamlet", 2);
    broker.create_topic("hamlet-counts", 1);
    let input: Vec<String> = (0..70)
        .map(strom::jobs::wordcount::generated_line)
        .collect();
    broker.produce("hamlet", 2, &input);
    let args = |extra: &[&str]| -> Vec<String> {
        [
            format!("kafka-brokers={}", broker.address),
            "input-topic=hamlet".into(),
            "output-topic=hamlet-counts".into(),
            "kafka-bounded=true".into(),
        ]
        .into_iter()
        .chain(extra.iter().map(|s| s.to_string()))
        .collect()
    };
    run_word_count(&args(&[]), 2).unwrap();
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for line in &input {
        for word in strom::jobs::wordcount::tokenize(line) {
            *expected.entry(word).or_insert(0) += 1;
        }
    }
    let total: u64 = expected.values().sum();
    let written = broker.consume("hamlet-counts", 1, total as usize);
    assert_eq!(written.len() as u64, total);
    assert_exact(&written, &expected);

    // Options that contradict each other are refused, naming them.
    let e = run_word_count(&args(&["output=/tmp/x"]), 1).unwrap_err();
    assert!(e.contains("--arg output-topic"), "{e}");
    let e = run_word_count(&["input-topic=hamlet".to_string()], 1).unwrap_err();
    assert!(e.contains("--arg kafka-brokers=host:port"), "{e}");
}

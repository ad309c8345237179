//! The Kafka source and sink against a real Kafka-protocol broker (`tansu`, from
//! `scripts/kafka-broker`), started on loopback per test: topic in → job → topic out with
//! exact output at parallelism 2; unreadable records to the dead-letter output; a missing
//! topic named in the job's error; exactly-once output through Kafka transactions, also
//! when workers are killed (-9) and when the job is rescaled through savepoints.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod kafka_log;

use common::cluster::{
    cli, completed, eventually, logged_master, running_job_id, wait_for_free_slots, worker,
};
use common::kafka::Broker;
use common::{Processes, TempDir, checkpointed_env, free_port};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use strom::cluster::client::RestClient;
use strom::connectors::kafka::{
    KafkaConfig, KafkaSink, KafkaSource, KeyValueText, StartingOffsets, TextValue,
};
use strom::prelude::*;
use strom::sink::{Sink, SinkContext, SinkWriter};

fn lines(n: usize) -> Vec<String> {
    (0..n).map(line).collect()
}

/// The `i`th line of the input: words that come back at different rates.
fn line(i: usize) -> String {
    format!("w{} w{} common", i % 7, i % 3)
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

/// Each word's counts as written are exactly 1, 2, … n: none lost, none twice. A failure
/// names the counts missing and those written more than once (the first few of each).
fn assert_exact(written: &[(String, String)], expected: &BTreeMap<String, u64>) {
    let mut seen: BTreeMap<String, BTreeMap<u64, usize>> = BTreeMap::new();
    for (word, count) in written {
        *seen
            .entry(word.clone())
            .or_default()
            .entry(count.parse().unwrap())
            .or_default() += 1;
    }
    assert_eq!(
        seen.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "words"
    );
    let mut missing = Vec::new();
    let mut twice = Vec::new();
    for (word, n) in expected {
        let counts = &seen[word];
        missing.extend(
            (1..=*n)
                .filter(|c| !counts.contains_key(c))
                .map(|c| (word, c)),
        );
        twice.extend(
            counts
                .iter()
                .filter(|(c, times)| **times > 1 || **c > *n || **c == 0)
                .map(|(c, times)| (word, *c, *times)),
        );
    }
    assert!(
        missing.is_empty() && twice.is_empty(),
        "{} counts missing, first {:?}; {} written more than once or unexpected, first (word, count, times) {:?}",
        missing.len(),
        &missing[..missing.len().min(10)],
        twice.len(),
        &twice[..twice.len().min(10)]
    );
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
    let from =
        |offset: i64| StartingOffsets::Specific([("timed".into(), [(0, offset)].into())].into());
    assert_eq!(
        read(from(1)),
        vec![
            ("r1".to_string(), Some(2_000)),
            ("r2".to_string(), Some(3_000))
        ]
    );
    // Offsets past the end start at the end; before the start, at the start.
    assert_eq!(read(from(7)), vec![]);
    assert_eq!(read(from(-5)).len(), 3);
    // StartingOffsets::Timestamp is not checked here: tansu 0.6 answers a lookup by
    // timestamp with the earliest offset whatever the time.
}

/// Sends `(value, timestamp)` records to one partition of `topic`.
fn produce_timed(broker: &Broker, topic: &str, partition: i32, records: &[(&str, i64)]) {
    let producer = broker.producer();
    for (value, ts) in records {
        producer
            .send(
                BaseRecord::<(), str>::to(topic)
                    .payload(*value)
                    .partition(partition)
                    .timestamp(*ts),
            )
            .map_err(|(e, _)| e)
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

/// Waits (30 s at most) until a running job has collected exactly `expected` (sorted);
/// a failure shows what it collected.
fn collected<T, E>(handle: &CollectHandle<T>, expected: &[E])
where
    T: Data + Ord + std::fmt::Debug + PartialEq<E>,
    E: std::fmt::Debug,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while handle.sorted() != expected {
        assert!(
            Instant::now() < deadline,
            "collected {:?}, expected {expected:?}",
            handle.sorted()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Ten-second event-time windows over a Kafka topic read by one reader: the job, and
/// (window start, records in it) as they fire. Watermarks follow the record times; a
/// batch is one record, so the reader's watermark moves on after each.
fn windows_of(
    broker: &Broker,
    topic: &str,
    strategy: WatermarkStrategy<String>,
) -> (JobHandle, CollectHandle<(i64, usize)>) {
    let env = StreamEnv::with_config(ExecutionConfig {
        parallelism: 1,
        batch_size: 1,
        ..ExecutionConfig::default()
    });
    let source = KafkaSource::new(broker.config(), [topic], TextValue);
    let windows = env
        .add_source(source, Some(strategy), "events")
        .window_all(TumblingEventTimeWindows::of(Duration::from_secs(10)))
        .apply(
            |w: &TimeWindow, records: &[String], out: &mut Collector<'_, (i64, usize)>| {
                out.collect((w.start, records.len()))
            },
        )
        .collect();
    (env.execute_async("windows").unwrap(), windows)
}

/// Per-partition watermarks: one reader reads a partition whose records are ten seconds
/// and more ahead of the other's, and none of the other's is late — event time is the
/// least of the two partitions'. A partition without records holds event time back
/// only until it is idle (the strategy's idleness timeout), so windows fire while the
/// job runs.
#[test]
fn each_partition_has_its_own_watermark_and_an_idle_one_stops_holding_event_time_back() {
    let broker = Broker::start();
    broker.create_topic("events", 2);
    broker.create_topic("sparse", 2);
    produce_timed(
        &broker,
        "events",
        0,
        &[("a", 10_000), ("b", 20_000), ("c", 30_000)],
    );
    produce_timed(
        &broker,
        "events",
        1,
        &[("d", 1_000), ("e", 2_000), ("f", 3_000)],
    );
    produce_timed(
        &broker,
        "sparse",
        0,
        &[("a", 1_000), ("b", 2_000), ("c", 15_000)],
    );
    let strategy =
        || WatermarkStrategy::for_monotonous_timestamps().with_idleness(Duration::from_secs(1));
    // Both partitions are read out, then idle: every window before 30 s has fired (the
    // one from 30 s waits for later records), none short of a record.
    let (job, windows) = windows_of(&broker, "events", strategy());
    collected(&windows, &[(0, 3), (10_000, 1), (20_000, 1)]);
    job.cancel();
    // Partition 1 of "sparse" never gets a record: once it is idle, the windows of
    // partition 0 fire.
    let (job, windows) = windows_of(&broker, "sparse", strategy());
    collected(&windows, &[(0, 2)]);
    job.cancel();
}

/// A topic pattern with partition discovery: the topics matching it are read, others
/// not; a matching topic created while the job runs is found within the discovery
/// interval and read from its start. (Partitions added to a topic go the same way, but
/// tansu 0.6 cannot add partitions: CreatePartitions is unsupported.)
#[test]
fn a_topic_pattern_reads_matching_topics_and_finds_new_topics_and_partitions() {
    let broker = Broker::start();
    for topic in ["orders-eu", "orders-us", "payments"] {
        broker.create_topic(topic, 1);
    }
    let env = StreamEnv::new();
    env.set_parallelism(2);
    let source = KafkaSource::with_topic_pattern(broker.config(), "orders-.*", TextValue)
        .unwrap()
        .partition_discovery(Some(Duration::from_millis(200)));
    let read = env.add_source(source, None, "orders").collect();
    let job = env.execute_async("pattern").unwrap();
    broker.produce("orders-eu", 1, &["eu-1".to_string()]);
    broker.produce("orders-us", 1, &["us-1".to_string()]);
    broker.produce("payments", 1, &["pay-1".to_string()]);
    collected(&read, &["eu-1", "us-1"]);
    // A topic created while the job runs, with records from before it was found.
    broker.create_topic("orders-asia", 2);
    broker.produce(
        "orders-asia",
        2,
        &["asia-1".to_string(), "asia-2".to_string()],
    );
    collected(&read, &["asia-1", "asia-2", "eu-1", "us-1"]);
    job.cancel();
    assert!(
        KafkaSource::with_topic_pattern(broker.config(), "orders-(", TextValue)
            .err()
            .unwrap()
            .to_string()
            .contains("topic pattern \"orders-(\""),
    );
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
    let e = run_word_count(&args(&["exactly-once=true"]), 1).unwrap_err();
    assert!(e.contains("give --checkpoint-interval-ms"), "{e}");
    let e = run_word_count(&["input-topic=hamlet".to_string()], 1).unwrap_err();
    assert!(e.contains("--arg kafka-brokers=host:port"), "{e}");
}

/// The offset the consumer group `group` committed on partition 0 of `topic`.
fn group_offset(broker: &Broker, group: &str, topic: &str) -> Offset {
    group_offsets(broker, group, topic, 1)[0]
}

/// The offsets the consumer group `group` committed on partitions 0..`partitions` of
/// `topic`.
fn group_offsets(broker: &Broker, group: &str, topic: &str, partitions: i32) -> Vec<Offset> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.address)
        .set("group.id", group)
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    for partition in 0..partitions {
        list.add_partition(topic, partition);
    }
    let committed = consumer
        .committed_offsets(list, Duration::from_secs(10))
        .unwrap();
    committed.elements().iter().map(|e| e.offset()).collect()
}

/// The (key, value) of every committed record of `topic`, as `read_committed` readers
/// should see them (see `kafka_log`).
fn committed_pairs(broker: &Broker, topic: &str, partitions: i32) -> Vec<(String, String)> {
    kafka_log::committed(&broker.address, topic, partitions)
        .iter()
        .map(|r| (r.key_text(), r.value_text()))
        .collect()
}

#[test]
fn exactly_once_output_is_committed_in_transactions_with_the_checkpoints() {
    let broker = Broker::start();
    broker.create_topic("lines", 3);
    broker.create_topic("counts", 2);
    let input = lines(3000);
    broker.produce("lines", 3, &input);

    let env = checkpointed_env(2, "kafka-exactly-once");
    let config = broker.config();
    let lines = env.add_source(
        KafkaSource::new(config.clone(), ["lines"], TextValue).bounded(),
        None,
        "lines",
    );
    strom::jobs::wordcount::word_counts(&lines)
        .map(|wc: strom::jobs::wordcount::WordCount| (wc.word, wc.count))
        .sink_to(KafkaSink::new(config, "counts", KeyValueText).exactly_once("eo"));
    env.execute("kafka word count, exactly once").unwrap();

    let expected = expected_counts(&input);
    let committed = committed_pairs(&broker, "counts", 2);
    assert_eq!(committed.len() as u64, expected.values().sum::<u64>());
    assert_exact(&committed, &expected);
    for p in 0..2 {
        let log = kafka_log::read_partition(&broker.address, "counts", p);
        assert!(log.open.is_empty() && log.aborted.is_empty(), "{log:?}");
    }
    // Each writer's last transaction left its number as its group's marker.
    for writer in ["eo-0", "eo-1"] {
        assert!(
            matches!(group_offset(&broker, writer, "counts"), Offset::Offset(n) if n >= 1),
            "{writer}"
        );
    }
}

#[test]
fn restored_writers_commit_what_failed_ones_pre_committed_exactly_once() {
    let broker = Broker::start();
    broker.create_topic("out", 2);
    let sink = KafkaSink::new(broker.config(), "out", TextValue).exactly_once("restore");
    let open = |subtask: usize, parallelism: usize, states: Vec<Vec<u8>>| {
        let ctx = SinkContext {
            operator_name: "out".into(),
            subtask_index: subtask,
            parallelism,
            restored_states: states,
            ..SinkContext::default()
        };
        Sink::<String>::create_writer(&sink, &ctx).unwrap()
    };
    let write = |writer: &mut Box<dyn SinkWriter<String>>, values: &[&str]| {
        for v in values {
            writer.write(v.to_string(), None).unwrap();
        }
    };
    // "Killed": the writer and its producer are never run, closed or dropped again.
    let kill = |writer: Box<dyn SinkWriter<String>>| std::mem::forget(writer);
    let committed = || {
        let mut values: Vec<String> = kafka_log::committed(&broker.address, "out", 2)
            .iter()
            .map(|r| r.value_text())
            .collect();
        values.sort();
        values
    };

    // Checkpoint 1 holds a and b and completes. Checkpoint 2 holds c, sent in a Kafka
    // transaction at its barrier; the writer dies before it hears that checkpoint 2
    // completed, with d written after the barrier.
    let mut first = open(0, 1, vec![]);
    write(&mut first, &["a", "b"]);
    first.snapshot_state(1).unwrap();
    assert_eq!(
        committed(),
        Vec::<String>::new(),
        "visible before completion"
    );
    first.notify_checkpoint_complete(1).unwrap();
    assert_eq!(committed(), ["a", "b"]);
    write(&mut first, &["c"]);
    let checkpoint_2 = first.snapshot_state(2).unwrap().unwrap();
    write(&mut first, &["d"]);
    first.flush().unwrap();
    kill(first);
    assert_eq!(committed(), ["a", "b"]);

    // Restored from checkpoint 2: c is committed, once; d is the sources' to replay.
    let second = open(0, 1, vec![checkpoint_2.clone()]);
    assert_eq!(committed(), ["a", "b", "c"]);
    kill(second);
    // Restored from checkpoint 2 again (the restored run died too): c is not sent again.
    let mut third = open(0, 1, vec![checkpoint_2]);
    assert_eq!(committed(), ["a", "b", "c"]);

    // A rescale: the run at parallelism 2 (third is its writer 0) pre-commits f and e in
    // checkpoint 3 and dies; the run restored at parallelism 1 commits both, e under
    // the id of writer 1, which is gone.
    let mut other = open(1, 2, vec![]);
    write(&mut third, &["f"]);
    write(&mut other, &["e"]);
    let state_0 = third.snapshot_state(3).unwrap().unwrap();
    let state_1 = other.snapshot_state(3).unwrap().unwrap();
    kill(third);
    kill(other);
    let mut rescaled = open(0, 1, vec![state_0, state_1]);
    assert_eq!(committed(), ["a", "b", "c", "e", "f"]);
    write(&mut rescaled, &["g"]);
    rescaled.finish().unwrap();
    assert_eq!(committed(), ["a", "b", "c", "e", "f", "g"]);

    // The copies the dead writers sent were aborted when their successors took over
    // their transactional ids: nothing is left open to hold up read_committed readers.
    let logs: Vec<_> = (0..2)
        .map(|p| kafka_log::read_partition(&broker.address, "out", p))
        .collect();
    let mut aborted: Vec<String> = logs
        .iter()
        .flat_map(|l| l.aborted.iter().map(|r| r.value_text()))
        .collect();
    aborted.sort();
    assert_eq!(aborted, ["c", "e", "f"]);
    assert!(logs.iter().all(|l| l.open.is_empty()), "{logs:?}");
}

/// Lines for a topic at about 1,000 a second, spread over its partitions, until stopped.
struct Feeder {
    feeding: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<usize>,
}

impl Feeder {
    fn start(address: &str, topic: &str, partitions: usize) -> Feeder {
        let feeding = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (address, topic, still) = (address.to_string(), topic.to_string(), feeding.clone());
        let thread = std::thread::spawn(move || {
            let producer: BaseProducer = ClientConfig::new()
                .set("bootstrap.servers", &address)
                .set("batch.num.messages", "1")
                .create()
                .unwrap();
            let mut fed = 0;
            while still.load(std::sync::atomic::Ordering::SeqCst) {
                for i in fed..fed + 50 {
                    let line = line(i);
                    let record: BaseRecord<'_, (), String> = BaseRecord::to(&topic)
                        .payload(&line)
                        .partition((i % partitions) as i32);
                    producer.send(record).map_err(|(e, _)| e).unwrap();
                }
                producer.flush(Duration::from_secs(30)).unwrap();
                fed += 50;
                std::thread::sleep(Duration::from_millis(50));
            }
            fed
        });
        Feeder { feeding, thread }
    }

    /// Stops feeding; how many lines were fed: `lines(n)`.
    fn stop(self) -> usize {
        self.feeding
            .store(false, std::sync::atomic::Ordering::SeqCst);
        self.thread.join().unwrap()
    }
}

/// kill -9 of workers during a Kafka → word count → Kafka run with the exactly-once sink.
///
/// When the kills land: each comes once its attempt completed two checkpoints and both
/// writers committed (their markers moved) and then stayed quiet for a moment — between
/// two commits, never inside one. tansu 0.6 does not end a transaction atomically when
/// its producer dies in the middle of `EndTxn` (the records end up committed, the offset
/// commit in the same transaction — the sink's marker — is lost, so the restored writer
/// sends them again); Kafka's transaction coordinator completes a prepared commit
/// whatever happens to the producer. So this test covers what the sink has to get right
/// (open transactions left by dead writers, output after the checkpoint replayed, restored
/// checkpoints whose transaction was committed) and leaves out the broker's own part.
/// Committing a pre-committed transaction a failed writer did not is covered by
/// `restored_writers_commit_what_failed_ones_pre_committed_exactly_once`.
#[test]
fn workers_killed_during_an_exactly_once_kafka_run_leave_each_count_committed_once() {
    let tmp = TempDir::new("kafka-killed-workers");
    let broker = Broker::start();
    broker.create_topic("lines", 2);
    broker.create_topic("counts", 2);
    let (port, rest_port) = (free_port(), free_port());
    let args: Vec<String> = [
        "word-count",
        "--parallelism",
        "2",
        "--arg",
        &format!("kafka-brokers={}", broker.address),
        "--arg",
        "input-topic=lines",
        "--arg",
        "output-topic=counts",
        "--arg",
        "exactly-once=true",
        "--checkpoint-dir",
        &tmp.join("checkpoints").display().to_string(),
        "--checkpoint-interval-ms",
        "1500",
        "--restart-strategy",
        "fixed-delay",
        "--restart-attempts",
        "5",
        "--restart-delay-ms",
        "200",
    ]
    .map(String::from)
    .to_vec();
    let log = tmp.join("master.log");
    let mut processes = Processes(vec![
        logged_master(port, rest_port, &args, &log),
        worker(port, "w1"),
        worker(port, "w2"),
    ]);
    let api = RestClient::new(&format!("http://127.0.0.1:{rest_port}")).unwrap();
    let id = running_job_id(&api, 30);

    let feeder = Feeder::start(&broker.address, "lines", 2);
    let markers = || {
        ["strom-word-count-counts-0", "strom-word-count-counts-1"]
            .map(|group| group_offset(&broker, group, "counts"))
    };
    let mut seen = 0;
    for (victim, spare) in [(2, "w3"), (1, "w4"), (3, "w5")] {
        seen = eventually(60, "no new checkpoint completed", || {
            let now = completed(&api, &id);
            (now >= seen + 2).then_some(now)
        });
        let before = markers();
        let mut last = before;
        let mut quiet_since = Instant::now();
        eventually(60, "the writers did not commit", || {
            let now = markers();
            if now != last {
                (last, quiet_since) = (now, Instant::now());
            }
            let both_moved = now[0] != before[0] && now[1] != before[1];
            (both_moved && quiet_since.elapsed() >= Duration::from_millis(300)).then_some(())
        });
        processes.0.push(worker(port, spare));
        processes.0[victim].kill().unwrap();
    }
    let input = lines(feeder.stop());

    let expected = expected_counts(&input);
    let total = expected.values().sum::<u64>() as usize;
    let mut committed = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while committed.len() < total && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        committed = committed_pairs(&broker, "counts", 2);
    }
    // Two more checkpoints: nothing beyond the expected output may show up.
    std::thread::sleep(Duration::from_secs(3));
    let committed = committed_pairs(&broker, "counts", 2);
    let log_text = std::fs::read_to_string(&log).unwrap();
    // Names the first word with a count missing or twice.
    assert_exact(&committed, &expected);
    assert_eq!(committed.len(), total);
    assert_eq!(
        log_text
            .matches("restarting it from its latest checkpoint")
            .count(),
        3,
        "{log_text}"
    );
}

/// Rescale through savepoints with Kafka in and out: word count over a 4-partition topic
/// at parallelism 2, stopped with a savepoint and resubmitted at 3, then at 1, while
/// lines keep arriving. Each run reads every partition on from where the savepoint left
/// it (the offsets it commits back to Kafka move on all four), and the counts committed
/// in the output topic are exactly the running counts of every line fed: no offset read
/// twice, none skipped.
#[test]
fn a_kafka_job_stopped_with_savepoints_and_resubmitted_at_3_then_1_reads_each_offset_once() {
    let tmp = TempDir::new("kafka-rescale");
    let broker = Broker::start();
    broker.create_topic("lines", 4);
    broker.create_topic("counts", 2);
    let (port, rest_port) = (free_port(), free_port());
    let mut processes = Processes(vec![logged_master(
        port,
        rest_port,
        &[],
        &tmp.join("master.log"),
    )]);
    for id in ["w1", "w2", "w3"] {
        processes.0.push(worker(port, id));
    }
    let api = RestClient::new(&format!("http://127.0.0.1:{rest_port}")).unwrap();
    wait_for_free_slots(&api, 3);
    let brokers = format!("kafka-brokers={}", broker.address);
    let checkpoints = tmp.join("checkpoints").display().to_string();
    let savepoints = tmp.join("savepoints").display().to_string();
    let submit = |parallelism: &str, from: Option<&str>| -> String {
        let mut args = vec![
            "submit",
            "word-count",
            "--parallelism",
            parallelism,
            "--arg",
            &brokers,
            "--arg",
            "input-topic=lines",
            "--arg",
            "output-topic=counts",
            "--arg",
            "exactly-once=true",
            "--checkpoint-interval-ms",
            "300",
            "--checkpoint-dir",
            &checkpoints,
        ];
        args.extend(
            from.map(|from| ["--from-checkpoint", from])
                .into_iter()
                .flatten(),
        );
        let (code, out, err) = cli(rest_port, &args);
        assert_eq!(code, 0, "{err}");
        out.trim().to_string()
    };
    let read_offsets = || group_offsets(&broker, "strom-word-count", "lines", 4);
    let stop_with_savepoint = |id: &str| -> String {
        let (code, out, err) = cli(rest_port, &["stop", id, &savepoints]);
        assert_eq!(code, 0, "{err}");
        eventually(30, "the job did not finish", || {
            let job = api
                .call(http::Method::GET, &format!("/v1/jobs/{id}"))
                .ok()?;
            (job["state"] == "Finished").then_some(())
        });
        out.trim().to_string()
    };

    let feeder = Feeder::start(&broker.address, "lines", 4);
    let mut feeder = Some(feeder);
    let mut fed = 0;
    let mut from: Option<String> = None;
    let mut offsets = read_offsets();
    for parallelism in ["2", "3", "1"] {
        let id = submit(parallelism, from.as_deref());
        eventually(60, "no checkpoint completed", || {
            (completed(&api, &id) >= 3).then_some(())
        });
        if parallelism == "1" {
            // The last run reads what is left, then stops.
            fed = feeder.take().unwrap().stop();
            let total = expected_counts(&lines(fed)).values().sum::<u64>() as usize;
            eventually(90, "the output did not catch up with the input", || {
                (committed_pairs(&broker, "counts", 2).len() >= total).then_some(())
            });
        }
        from = Some(stop_with_savepoint(&id));
        let now = read_offsets();
        for (partition, (before, after)) in offsets.iter().zip(&now).enumerate() {
            assert!(
                after.to_raw() > before.to_raw(),
                "run at parallelism {parallelism} did not read partition {partition} on: {before:?} → {after:?}"
            );
        }
        offsets = now;
    }
    assert_exact(
        &committed_pairs(&broker, "counts", 2),
        &expected_counts(&lines(fed)),
    );
    // The offsets committed back are the ends of the partitions: every line was read.
    let ends: Vec<Option<i64>> = (0..4).map(|p| Some((fed - p).div_ceil(4) as i64)).collect();
    assert_eq!(offsets.iter().map(|o| o.to_raw()).collect::<Vec<_>>(), ends);
}

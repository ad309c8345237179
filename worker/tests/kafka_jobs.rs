//! The seed jobs on Kafka, against a real Kafka-protocol broker (`tansu`, from
//! `scripts/kafka-broker`) started on loopback per test: for fraud detection, model
//! serving (keyed and broadcast), the six sensor jobs and user behaviour, input topics →
//! the job as `strom run` builds it from its `--arg` options → an output topic, with the
//! results compared with the same job run on the same data from its input files (or its
//! generator); `strom produce` (the binary) feeding a topic the job then reads; malformed
//! records counted as dead letters while the rest is processed; exactly-once alerts; and
//! contradicting options refused by name.
//!
//! Topics hold one partition where the job's results depend on the order of its input
//! (as they depend on the order of lines in a file).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod kafka_log;

use common::kafka::Broker;
use common::{TempDir, checkpointed_env, read_parts};
use serde::de::DeserializeOwned;
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::process::Command;
use strom::jobs::fraud::{self, Alert};
use strom::jobs::model_serving::{ServingResult, WineRecord};
use strom::jobs::sensors::late::WindowCount;
use strom::jobs::sensors::{self, MinMaxTemp, SensorReading};
use strom::jobs::user_behavior::UserBehavior;
use strom::jobs::user_behavior::{CategoryBuys, CumulativeUv, HourlyBuys, TopCategories};
use strom::prelude::*;
use strom::runtime::metrics::OperatorTotals;

const STROM: &str = env!("CARGO_BIN_EXE_strom");

fn data(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/data")
        .join(path)
}

fn lines_of(path: &str) -> Vec<String> {
    std::fs::read_to_string(data(path))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// `--arg` options from pairs.
fn args(pairs: &[(&str, &str)]) -> Vec<String> {
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// The options that put a job on `broker`, reading its topics to their current end.
fn on_kafka(broker: &Broker, pairs: &[(&str, &str)]) -> Vec<String> {
    let mut all = args(&[
        ("kafka-brokers", broker.address.as_str()),
        ("kafka-bounded", "true"),
    ]);
    all.extend(args(pairs));
    all
}

/// Builds the registered job `name` from `args` into `env`, as `strom run` does, and
/// runs it.
fn try_run_in(env: &StreamEnv, name: &str, args: &[String]) -> Result<JobResult, String> {
    let registry = strom::JobRegistry::builtin();
    let spec = registry.find(name).unwrap();
    let args = strom::JobArgs::parse(spec.name, spec.args, args).map_err(|e| e.to_string())?;
    (spec.build)(env, &args).map_err(|e| format!("{e:#}"))?;
    env.execute(spec.name).map_err(|e| e.to_string())
}

fn run(name: &str, args: &[String], parallelism: usize) -> JobResult {
    let env = StreamEnv::new();
    env.set_parallelism(parallelism);
    try_run_in(&env, name, args).unwrap()
}

/// The error that building job `name` from `args` gives.
fn build_error(name: &str, args: &[String]) -> String {
    try_run_in(&StreamEnv::new(), name, args).unwrap_err()
}

/// Every (key, value) of `topic` once a job has finished writing it (its sink flushed):
/// the partitions' logs up to their ends, read directly, so no reader waits for more.
fn written(broker: &Broker, topic: &str, partitions: i32) -> Vec<(String, String)> {
    kafka_log::committed(&broker.address, topic, partitions)
        .iter()
        .map(|r| (r.key_text(), r.value_text()))
        .collect()
}

fn source_totals(result: &JobResult, source: &str) -> OperatorTotals {
    result
        .metrics
        .operator(&format!("Source: {source}"))
        .unwrap_or_else(|| panic!("no source {source}"))
        .totals()
}

/// The values of `records` read as JSON of `T` and displayed as the job prints them,
/// sorted; each key checked against `key` of its value.
fn displayed<T: DeserializeOwned + Display>(
    records: &[(String, String)],
    key: impl Fn(&T) -> String,
) -> Vec<String> {
    let mut out: Vec<String> = records
        .iter()
        .map(|(k, v)| {
            let value: T = serde_json::from_str(v).unwrap_or_else(|e| panic!("{v}: {e}"));
            assert_eq!(*k, key(&value), "the key of {v}");
            value.to_string()
        })
        .collect();
    out.sort();
    out
}

// ---- fraud detection ----

#[test]
fn fraud_detection_reads_transactions_and_rule_changes_from_topics_and_writes_alerts() {
    let dir = TempDir::new("kafka-fraud");
    let rules = data("fraud/rules.jsonl");
    let transactions = data("fraud/transactions.jsonl");
    run(
        "fraud-detection",
        &args(&[
            ("transactions", transactions.to_str().unwrap()),
            ("rules", rules.to_str().unwrap()),
            ("output", dir.join("files").to_str().unwrap()),
        ]),
        2,
    );
    let expected = read_parts(&dir.join("files/alerts"));
    assert_eq!(expected.len(), 5, "{expected:?}");

    let broker = Broker::start();
    broker.create_topic("tx", 1);
    broker.create_topic("rule-changes", 1);
    broker.create_topic("alerts", 2);
    // The file's nine lines, the last of which is no transaction.
    broker.produce("tx", 1, &lines_of("fraud/transactions.jsonl"));
    // A rule that never fires, whenever it arrives, and one that is no rule.
    let quiet = r#"{"ruleId":9,"ruleState":"ACTIVE","groupingKeyNames":["payeeId"],"aggregateFieldName":"paymentAmount","aggregatorFunctionType":"SUM","limitOperatorType":"GREATER","limit":1e12,"windowMinutes":1}"#;
    broker.produce(
        "rule-changes",
        1,
        &[quiet.to_string(), r#"{"ruleId":10,"#.to_string()],
    );
    let out = dir.join("kafka");
    let result = run(
        "fraud-detection",
        &on_kafka(
            &broker,
            &[
                ("transactions-topic", "tx"),
                ("rules-topic", "rule-changes"),
                ("rules", rules.to_str().unwrap()),
                ("output-topic", "alerts"),
                ("output", out.to_str().unwrap()),
            ],
        ),
        2,
    );
    let alerts = written(&broker, "alerts", 2);
    assert_eq!(displayed(&alerts, |a: &Alert| a.key.clone()), expected);
    assert!(
        !out.join("alerts").exists(),
        "the alerts went to Kafka only"
    );

    let source = source_totals(&result, "Transactions");
    assert_eq!((source.records_out, source.dead_letters), (8, 1));
    let dead = read_parts(&out.join("dead-letters"));
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(
        dead[0].contains("tx/0@8") && dead[0].contains("not a JSON transaction"),
        "{}",
        dead[0]
    );
    let rejected = read_parts(&out.join("rejected-rules"));
    assert_eq!(rejected.len(), 2, "{rejected:?}");
    assert!(
        rejected
            .iter()
            .any(|r| r.contains("unknown grouping key 'payee'"))
    );
    assert!(rejected.iter().any(|r| r.contains("not a rule")));
    let current = read_parts(&out.join("current-rules"));
    assert!(
        current.iter().any(|r| r.starts_with("rule 9 ACTIVE")),
        "{current:?}"
    );
}

#[test]
fn fraud_alerts_are_committed_exactly_once_with_the_checkpoints() {
    let dir = TempDir::new("kafka-fraud-eo");
    let generated = dir.join("generated");
    run(
        "fraud-detection",
        &args(&[("events", "1200"), ("output", generated.to_str().unwrap())]),
        2,
    );
    let expected = read_parts(&generated.join("alerts"));
    assert!(expected.len() >= 5, "{expected:?}");

    let broker = Broker::start();
    broker.create_topic("tx", 1);
    broker.create_topic("alerts", 2);
    let input: Vec<String> = (0..1200)
        .map(|i| serde_json::to_string(&fraud::generated_transaction(i)).unwrap())
        .collect();
    broker.produce("tx", 1, &input);
    let env = checkpointed_env(2, "kafka-jobs-fraud");
    try_run_in(
        &env,
        "fraud-detection",
        &on_kafka(
            &broker,
            &[
                ("transactions-topic", "tx"),
                ("output-topic", "alerts"),
                ("exactly-once", "true"),
                ("output", dir.join("rest").to_str().unwrap()),
            ],
        ),
    )
    .unwrap();
    // Only what the transactions committed (see kafka_log).
    let committed = written(&broker, "alerts", 2);
    assert_eq!(displayed(&committed, |a: &Alert| a.key.clone()), expected);
    for p in 0..2 {
        let log = kafka_log::read_partition(&broker.address, "alerts", p);
        assert!(log.open.is_empty() && log.aborted.is_empty(), "{log:?}");
    }
}

// ---- model serving ----

#[test]
fn model_serving_scores_samples_from_a_topic_with_models_from_a_topic_both_ways() {
    let dir = TempDir::new("kafka-models");
    let csv = data("model-serving/winequality-red-sample.csv");
    let models = data("model-serving/models.jsonl");
    let broker = Broker::start();
    broker.create_topic("wine", 1);
    broker.create_topic("models", 1);
    // The sample's rows as JSON objects (numbered in order by the job, as the file's
    // rows are); its header dropped, its bad row kept as it is.
    let rows: Vec<String> = lines_of("model-serving/winequality-red-sample.csv")
        .iter()
        .filter_map(|line| match WineRecord::parse_line(line) {
            Ok(Some(r)) => Some(serde_json::to_string(&r).unwrap()),
            Ok(None) => None,
            Err(_) => Some(line.clone()),
        })
        .collect();
    assert_eq!(rows.len(), 11);
    broker.produce("wine", 1, &rows);
    // One model that loads, two that do not, and a line that is no model.
    broker.produce("models", 1, &lines_of("model-serving/models.jsonl"));
    for job in ["model-serving-keyed", "model-serving-broadcast"] {
        let files = dir.join(&format!("{job}-files"));
        run(
            job,
            &args(&[
                ("data", csv.to_str().unwrap()),
                ("models", models.to_str().unwrap()),
                ("output", files.to_str().unwrap()),
            ]),
            2,
        );
        let expected = read_parts(&files.join("scores"));
        assert_eq!(expected.len(), 10, "{job}: {expected:?}");

        let topic = format!("{job}-scores");
        broker.create_topic(&topic, 2);
        let out = dir.join(job);
        let result = run(
            job,
            &on_kafka(
                &broker,
                &[
                    ("data-topic", "wine"),
                    ("models-topic", "models"),
                    ("output-topic", &topic),
                    ("output", out.to_str().unwrap()),
                ],
            ),
            2,
        );
        let scores = written(&broker, &topic, 2);
        assert_eq!(
            displayed(&scores, |s: &ServingResult| s.record_id.to_string()),
            expected,
            "{job}"
        );
        assert_eq!(read_parts(&out.join("rejected-models")).len(), 2, "{job}");
        assert_eq!(read_parts(&out.join("dead-letters/models")).len(), 1);
        let dead = read_parts(&out.join("dead-letters/data"));
        assert!(
            dead.len() == 1 && dead[0].contains("wine/0@"),
            "{job}: {dead:?}"
        );
        assert_eq!(source_totals(&result, "Wine Samples").dead_letters, 1);
        assert_eq!(source_totals(&result, "Models").dead_letters, 1);
    }
}

// ---- sensors ----

/// A sensor job, the sample file it reads, its other options, and how its results from
/// Kafka show as the job prints them (keys checked).
struct SensorCase<'a> {
    job: &'a str,
    file: &'a str,
    extra: Vec<(&'a str, &'a str)>,
    shown: fn(&[(String, String)]) -> Vec<String>,
}

#[test]
fn every_sensor_job_reads_a_readings_topic_and_writes_results_keyed_by_sensor() {
    let dir = TempDir::new("kafka-sensors");
    let broker = Broker::start();
    let as_json = |file: &str| -> Vec<String> {
        lines_of(file)
            .iter()
            .map(|l| serde_json::to_string(&sensors::parse_reading(l).unwrap()).unwrap())
            .collect()
    };
    broker.create_topic("readings", 1);
    broker.produce("readings", 1, &as_json("sensors/readings.csv"));
    broker.create_topic("late-readings", 1);
    broker.produce("late-readings", 1, &as_json("sensors/late-readings.csv"));
    let smoke = data("sensors/smoke.csv");
    let case = |job, file, shown| SensorCase {
        job,
        file,
        extra: Vec::new(),
        shown,
    };
    // The samples' averages are short decimals, which JSON round-trips exactly (see
    // the dead-letter test).
    let cases = [
        case("sensor-average", "readings.csv", |r| {
            displayed(r, |s: &SensorReading| s.id.clone())
        }),
        case("sensor-temp-rise", "readings.csv", |r| {
            displayed(r, |a: &String| {
                sensors::temp_rise::rising_sensor(a).to_string()
            })
        }),
        case("sensor-freezing", "readings.csv", |r| {
            displayed(r, |a: &String| {
                sensors::freezing::alarmed_sensor(a).to_string()
            })
        }),
        SensorCase {
            extra: vec![("smoke", smoke.to_str().unwrap())],
            ..case("sensor-smoke-alert", "readings.csv", |r| {
                displayed(r, |a: &sensors::Alert| {
                    sensors::smoke::burning_sensor(a).to_string()
                })
            })
        },
        case("sensor-min-max", "readings.csv", |r| {
            displayed(r, |m: &MinMaxTemp| m.id.clone())
        }),
        case("sensor-late", "late-readings.csv", |r| {
            displayed(r, |c: &WindowCount| c.id.clone())
        }),
    ];
    for SensorCase {
        job,
        file,
        extra,
        shown,
    } in cases
    {
        // What sensor-late finds late depends on how parallel readers' watermarks
        // interleave (one of them has no file or partition and ends when it will), so
        // it reads with one; the others give the same results at any parallelism.
        let p = if job == "sensor-late" { 1 } else { 2 };
        let files = dir.join(&format!("{job}-files"));
        let input = data(&format!("sensors/{file}"));
        let mut given = args(&[
            ("input", input.to_str().unwrap()),
            ("output", files.to_str().unwrap()),
        ]);
        given.extend(args(&extra));
        run(job, &given, p);
        let results = if job == "sensor-late" {
            files.join("counts")
        } else {
            files
        };
        let expected = read_parts(&results);
        assert!(!expected.is_empty(), "{job} gives results");

        let topic = format!("{job}-results");
        broker.create_topic(&topic, 2);
        let readings_topic = file.trim_end_matches(".csv");
        let mut given = on_kafka(
            &broker,
            &[("readings-topic", readings_topic), ("output-topic", &topic)],
        );
        given.extend(args(&extra));
        run(job, &given, p);
        assert_eq!(shown(&written(&broker, &topic, 2)), expected, "{job}");
    }
}

#[test]
fn malformed_json_records_are_counted_as_dead_letters_and_the_rest_is_processed() {
    let dir = TempDir::new("kafka-dead-letters");
    // Generated readings on a grid of 9 °F, so that their averages in °C are short
    // decimals: the test reads the results back from JSON, and serde_json (without its
    // float_roundtrip feature) may read a 17-digit float one ulp off.
    let readings: Vec<SensorReading> = (0..200)
        .map(|i| {
            let r = sensors::generated_reading(i, 10);
            SensorReading {
                temperature: 32.0 + 9.0 * ((r.temperature - 32.0) / 9.0).round(),
                ..r
            }
        })
        .collect();
    let csv: String = readings
        .iter()
        .map(|r| format!("{},{},{}\n", r.id, r.timestamp, r.temperature))
        .collect();
    let file = dir.join("readings.csv");
    std::fs::write(&file, csv).unwrap();
    let files = dir.join("files");
    run(
        "sensor-average",
        &args(&[
            ("input", file.to_str().unwrap()),
            ("output", files.to_str().unwrap()),
        ]),
        2,
    );
    let expected = read_parts(&files);
    assert_eq!(expected.len(), 20);

    let broker = Broker::start();
    broker.create_topic("readings", 1);
    let mut records: Vec<String> = readings
        .iter()
        .map(|r| serde_json::to_string(r).unwrap())
        .collect();
    let bad = [
        "{",
        r#"{"id":"sensor_1","timestamp":"soon","temperature":1.0}"#,
        r#"{"id":"","timestamp":100,"temperature":1.0}"#,
    ];
    for (n, b) in bad.iter().enumerate() {
        records.insert(50 * (n + 1), b.to_string());
    }
    broker.produce("readings", 1, &records);
    broker.create_topic("averages", 1);
    let result = run(
        "sensor-average",
        &on_kafka(
            &broker,
            &[("readings-topic", "readings"), ("output-topic", "averages")],
        ),
        2,
    );
    let source = source_totals(&result, "Sensor Readings");
    assert_eq!((source.records_out, source.dead_letters), (200, 3));
    assert_eq!(
        displayed(&written(&broker, "averages", 1), |r: &SensorReading| r
            .id
            .clone()),
        expected
    );
}

// ---- user behaviour ----

/// A user-behavior result from Kafka as the job prints it, under its query: the key
/// names the query, then what the result is about.
fn user_behavior_result(key: &str, value: &str) -> String {
    let (query, about) = key.split_once('/').unwrap();
    fn show<T: DeserializeOwned + Display>(value: &str) -> (String, T) {
        let v: T = serde_json::from_str(value).unwrap();
        (v.to_string(), v)
    }
    let (shown, expected_about) = match query {
        "buys-per-hour" => {
            let (s, b) = show::<HourlyBuys>(value);
            (s, format!("{}T{:02}", b.date, b.hour_of_day))
        }
        "cumulative-uv" => {
            let (s, u) = show::<CumulativeUv>(value);
            (s, u.date)
        }
        "category-buys" => {
            let (s, c) = show::<CategoryBuys>(value);
            (s, c.category_name)
        }
        "top-categories" => {
            let (s, t) = show::<TopCategories>(value);
            (s, format!("{}T{:02}", t.date, t.hour_of_day))
        }
        other => panic!("unknown query {other} in key {key}"),
    };
    assert_eq!(about, expected_about, "{key}");
    format!("{query}/{shown}")
}

#[test]
fn user_behavior_reads_an_events_topic_and_writes_every_query_to_one_topic() {
    let dir = TempDir::new("kafka-user-behavior");
    let sample = data("user-behavior/user_behavior.csv");
    let files = dir.join("files");
    run(
        "user-behavior",
        &args(&[
            ("input", sample.to_str().unwrap()),
            ("output", files.to_str().unwrap()),
        ]),
        2,
    );
    let expected: Vec<String> = read_parts(&files)
        .into_iter()
        .filter(|l| !l.starts_with("dead-letters/"))
        .collect();

    let broker = Broker::start();
    broker.create_topic("events", 1);
    // The sample's rows as JSON (ts in ms); its bad row as it is.
    let events: Vec<String> = lines_of("user-behavior/user_behavior.csv")
        .iter()
        .map(|line| match UserBehavior::parse(line) {
            Ok(e) => serde_json::to_string(&e).unwrap(),
            Err(_) => line.clone(),
        })
        .collect();
    broker.produce("events", 1, &events);
    broker.create_topic("analytics", 2);
    let out = dir.join("kafka");
    let result = run(
        "user-behavior",
        &on_kafka(
            &broker,
            &[
                ("events-topic", "events"),
                ("output-topic", "analytics"),
                ("output", out.to_str().unwrap()),
            ],
        ),
        2,
    );
    let mut shown: Vec<String> = written(&broker, "analytics", 2)
        .iter()
        .map(|(k, v)| user_behavior_result(k, v))
        .collect();
    shown.sort();
    assert_eq!(shown, expected);
    assert_eq!(source_totals(&result, "User Behavior").dead_letters, 1);
    let dead = read_parts(&out.join("dead-letters"));
    assert!(
        dead.len() == 1 && dead[0].contains("unknown behavior 'look'"),
        "{dead:?}"
    );
}

// ---- strom produce ----

/// Runs `strom produce` with `args`: exit code, stdout, stderr.
fn strom_produce(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(STROM)
        .arg("produce")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn strom_produce_feeds_topics_that_the_jobs_read() {
    let dir = TempDir::new("kafka-produce");
    let broker = Broker::start();
    // tansu 0.6 needs a batch per record for bounded reads (see common::kafka).
    let one_per_batch = ["--property", "batch.num.messages=1"];
    let produce = |kind: &str, topic: &str, extra: &[&str]| -> String {
        let mut all = vec![kind, "--brokers", &broker.address, "--topic", topic];
        all.extend_from_slice(extra);
        all.extend_from_slice(&one_per_batch);
        let (code, stdout, stderr) = strom_produce(&all);
        assert_eq!(code, 0, "strom produce {kind}: {stderr}");
        stdout.trim().to_string()
    };

    // Transactions, then the fraud job over them: the alerts of the generated run.
    let summary = produce(
        "transactions",
        "tx",
        &["--count", "1200", "--partitions", "1"],
    );
    assert_eq!(
        summary,
        "wrote 1200 transactions to topic tx (partition 0: 1200)"
    );
    let generated = dir.join("generated");
    run(
        "fraud-detection",
        &args(&[("events", "1200"), ("output", generated.to_str().unwrap())]),
        1,
    );
    let out = dir.join("from-kafka");
    let result = run(
        "fraud-detection",
        &on_kafka(
            &broker,
            &[
                ("transactions-topic", "tx"),
                ("output", out.to_str().unwrap()),
            ],
        ),
        1,
    );
    assert_eq!(source_totals(&result, "Transactions").records_out, 1200);
    let alerts = read_parts(&out.join("alerts"));
    assert!(!alerts.is_empty());
    assert_eq!(alerts, read_parts(&generated.join("alerts")));

    // Readings over two partitions, keyed by sensor: each sensor in one of them.
    let summary = produce(
        "sensor-readings",
        "readings",
        &["--count", "300", "--partitions", "2", "--sensors", "6"],
    );
    let counts: u64 = summary
        .split(['(', ')', ','])
        .filter_map(|part| part.trim().strip_prefix("partition "))
        .map(|p| p.split(": ").nth(1).unwrap().parse::<u64>().unwrap())
        .sum();
    assert!(
        summary.starts_with("wrote 300 sensor readings to topic readings (partition 0: "),
        "{summary}"
    );
    assert_eq!(counts, 300, "{summary}");
    let readings = written(&broker, "readings", 2);
    assert_eq!(readings.len(), 300);
    for (key, value) in &readings {
        let reading: SensorReading = serde_json::from_str(value).unwrap();
        assert_eq!(*key, reading.id);
    }
    let result = run(
        "sensor-min-max",
        &on_kafka(&broker, &[("readings-topic", "readings")]),
        2,
    );
    assert_eq!(source_totals(&result, "Sensor Readings").records_out, 300);

    // The other kinds write what their jobs read.
    for (kind, topic, job, input) in [
        ("user-events", "events", "user-behavior", "events-topic"),
        ("wine-samples", "wine", "model-serving-keyed", "data-topic"),
    ] {
        produce(kind, topic, &["--count", "40", "--partitions", "1"]);
        let mut given = on_kafka(&broker, &[(input, topic)]);
        if job.starts_with("model-serving") {
            produce("models", "models", &["--count", "1", "--partitions", "1"]);
            given.extend(args(&[("models-topic", "models")]));
        }
        let result = run(job, &given, 1);
        let source = if job == "user-behavior" {
            "User Behavior"
        } else {
            "Wine Samples"
        };
        let totals = source_totals(&result, source);
        assert_eq!((totals.records_out, totals.dead_letters), (40, 0), "{kind}");
    }
    let rules = produce("rules", "rules", &["--partitions", "1"]);
    assert_eq!(rules, "wrote 3 rules to topic rules (partition 0: 3)");
    let lines = produce("lines", "lines", &["--count", "35", "--partitions", "1"]);
    assert_eq!(lines, "wrote 35 lines to topic lines (partition 0: 35)");
    let first = &written(&broker, "lines", 1)[0];
    assert_eq!(first.1, strom::jobs::wordcount::HAMLET[0]);
}

#[test]
fn strom_produce_names_the_flag_that_is_wrong() {
    let (code, _, stderr) = strom_produce(&["transactions", "--topic", "t"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--brokers"), "{stderr}");
    let (code, _, stderr) = strom_produce(&["trades", "--brokers", "x:1", "--topic", "t"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("invalid value 'trades'") && stderr.contains("transactions"),
        "{stderr}"
    );
    let (code, _, stderr) =
        strom_produce(&["rules", "--brokers", "x:1", "--topic", "t", "--rate", "0"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("--rate") && stderr.contains("above 0"),
        "{stderr}"
    );
    let (code, _, stderr) = strom_produce(&[
        "rules",
        "--brokers",
        "x:1",
        "--topic",
        "t",
        "--partitions",
        "0",
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--partitions"), "{stderr}");
    let (code, _, stderr) =
        strom_produce(&["rules", "--brokers", "x:1", "--topic", "t", "--count", "0"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("give --rate too"), "{stderr}");
}

// ---- options ----

#[test]
fn contradicting_options_are_refused_by_name() {
    let given = |pairs: &[(&str, &str)]| -> Vec<String> {
        let mut all = args(&[("kafka-brokers", "127.0.0.1:9")]);
        all.extend(args(pairs));
        all
    };
    let e = build_error(
        "fraud-detection",
        &given(&[("transactions", "t.jsonl"), ("transactions-topic", "tx")]),
    );
    assert_eq!(
        e,
        "--arg transactions and --arg transactions-topic both give the input: keep one"
    );
    let e = build_error(
        "fraud-detection",
        &given(&[("rules-port", "9999"), ("rules-topic", "rules")]),
    );
    assert!(e.contains("--arg rules-port and --arg rules-topic"), "{e}");
    let e = build_error("sensor-average", &args(&[("readings-topic", "readings")]));
    assert!(e.contains("--arg kafka-brokers=host:port"), "{e}");
    let e = build_error(
        "sensor-average",
        &given(&[("output-topic", "out"), ("output", "/tmp/x")]),
    );
    assert_eq!(
        e,
        "--arg output-topic and --arg output both take the Averages: keep one"
    );
    let e = build_error(
        "sensor-smoke-alert",
        &given(&[("readings-topic", "readings")]),
    );
    assert!(
        e.contains("--arg readings-topic=... needs smoke levels") && e.contains("--arg smoke="),
        "{e}"
    );
    let e = build_error("model-serving-keyed", &given(&[("exactly-once", "true")]));
    assert!(e.contains("give --arg output-topic=<topic>"), "{e}");
    let e = build_error(
        "user-behavior",
        &given(&[("output-topic", "out"), ("exactly-once", "true")]),
    );
    assert!(e.contains("give --checkpoint-interval-ms"), "{e}");
    let e = build_error(
        "model-serving-broadcast",
        &given(&[("data", "x.csv"), ("data-topic", "wine")]),
    );
    assert!(e.contains("--arg data and --arg data-topic"), "{e}");
    let e = build_error("user-behavior", &given(&[("events-topic", " , ")]));
    assert!(e.contains("expected one or more topic names"), "{e}");
}

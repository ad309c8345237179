//! The `--arg` options that put a seed job on Kafka: where the brokers are, which topics
//! it reads and writes, and whether it stops at the end of what the topics hold.
//!
//! - Reading: [`source`] is a Kafka source of the topics a job's `--arg <input>-topic`
//!   names. Each record's value is parsed by the same function the job applies to the
//!   lines of its input files (JSON objects, and CSV where the files are CSV), so a record
//!   that does not parse goes to the dead-letter output and is counted, like a bad line.
//! - Writing: [`output_sink`] turns `--arg output-topic` (and `exactly-once`) into a sink
//!   of `(key, JSON value)` records ([`keyed_json`]); every job picks its key (the
//!   sensor, the scored record, the alert's grouping key) so that one key's results stay
//!   in order in one partition.

use crate::api::StreamEnv;
use crate::connectors::kafka::{
    KafkaConfig, KafkaDeserializer, KafkaRecord, KafkaSerializer, KafkaSink, KafkaSource,
    KeyValueText, StartingOffsets, TextValue,
};
use crate::jobs::{ArgSpec, JobArgs};
use crate::record::Data;
use anyhow::bail;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// `kafka-brokers`, `kafka-start`, `kafka-bounded` and `kafka-transactional-id-prefix`,
/// shared by every job on Kafka.
pub const BROKER_ARGS: [ArgSpec; 4] = [
    ArgSpec::new(
        "kafka-brokers",
        "",
        "Kafka bootstrap servers, host:port[,host:port]; needed by the *-topic options",
    ),
    ArgSpec::new(
        "kafka-start",
        "earliest",
        "where input topics are read from on a fresh start: earliest, latest or committed (the group's offsets)",
    ),
    ArgSpec::new(
        "kafka-bounded",
        "false",
        "true = read the input topics up to the offsets that are the latest at the start, then finish",
    ),
    ArgSpec::new(
        "kafka-transactional-id-prefix",
        "",
        "exactly-once output topics: prefix of the writers' transactional ids, the same across restarts and unique per job on the Kafka cluster; empty = strom-<job>-<topic>",
    ),
];

/// The brokers, if a topic option (`topic_arg`) is set; an error naming both options
/// when the topic is given without brokers.
pub fn config_for(args: &JobArgs, topic_arg: &str) -> anyhow::Result<Option<KafkaConfig>> {
    if args.opt_str(topic_arg).is_none() {
        return Ok(None);
    }
    let Some(brokers) = args.opt_str("kafka-brokers") else {
        bail!("--arg {topic_arg} needs the brokers too: --arg kafka-brokers=host:port");
    };
    Ok(Some(KafkaConfig::new(brokers)))
}

/// A source of the lines of the topics in `topic_arg` (comma-separated), or `None`.
pub fn text_source(
    args: &JobArgs,
    topic_arg: &str,
    group: &str,
) -> anyhow::Result<Option<KafkaSource<String>>> {
    source(args, topic_arg, group, |line: &str| Ok(line.to_string()))
}

/// A sink to the topic in `topic_arg`, or `None`: exactly once (Kafka transactions that
/// commit with the job's checkpoints, which it then needs) or at least once.
pub fn sink<T: Data>(
    env: &StreamEnv,
    args: &JobArgs,
    topic_arg: &str,
    serializer: impl KafkaSerializer<T>,
    job: &str,
    exactly_once: bool,
) -> anyhow::Result<Option<KafkaSink<T>>> {
    let Some(config) = config_for(args, topic_arg)? else {
        return Ok(None);
    };
    let topic = args.str(topic_arg);
    let sink = KafkaSink::new(config, topic, serializer);
    if !exactly_once {
        return Ok(Some(sink));
    }
    if env.config().checkpointing.is_none() {
        bail!(
            "exactly-once output to --arg {topic_arg} commits at checkpoints: give --checkpoint-interval-ms too"
        );
    }
    let prefix = match args.opt_str("kafka-transactional-id-prefix") {
        Some(prefix) => prefix.to_string(),
        None => format!("strom-{job}-{topic}"),
    };
    Ok(Some(sink.exactly_once(prefix)))
}

// ---- Reading topics ----

type ParseFn<T> = Arc<dyn Fn(&str) -> Result<T, String> + Send + Sync>;

/// A record's value as UTF-8 text, parsed by a job's line parser.
pub struct ParsedText<T> {
    parse: ParseFn<T>,
}

impl<T: 'static> KafkaDeserializer<T> for ParsedText<T> {
    fn deserialize(&self, record: &KafkaRecord<'_>) -> Result<T, String> {
        let text = TextValue.deserialize(record)?;
        (self.parse)(&text)
    }
}

/// Parses a JSON object into `T`; the error names `what` was expected, like a JSON-lines
/// file's.
pub fn json<T: DeserializeOwned>(what: &'static str) -> impl Fn(&str) -> Result<T, String> {
    move |text| {
        serde_json::from_str(text)
            .map_err(|e| format!("not a JSON {what}: {e}; fix the record or route it elsewhere"))
    }
}

/// A source of the topics in `topic_arg` (comma-separated) whose values `parse` reads, or
/// `None` when the option is not given. `kafka-start` and `kafka-bounded` apply; the
/// consumer group `group` only hears of offsets (they live in the job's checkpoints).
pub fn source<T: Data>(
    args: &JobArgs,
    topic_arg: &str,
    group: &str,
    parse: impl Fn(&str) -> Result<T, String> + Send + Sync + 'static,
) -> anyhow::Result<Option<KafkaSource<T>>> {
    let Some(config) = config_for(args, topic_arg)? else {
        return Ok(None);
    };
    let topics: Vec<String> = args
        .str(topic_arg)
        .split(',')
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    if topics.is_empty() {
        bail!(
            "--arg {topic_arg}={}: expected one or more topic names, comma-separated",
            args.str(topic_arg)
        );
    }
    let starting = match args.choice("kafka-start", &["earliest", "latest", "committed"])? {
        "latest" => StartingOffsets::Latest,
        "committed" => StartingOffsets::Committed,
        _ => StartingOffsets::Earliest,
    };
    let deserializer = ParsedText {
        parse: Arc::new(parse),
    };
    let mut source = KafkaSource::new(config, topics, deserializer)
        .group_id(group)
        .starting_offsets(starting);
    if args.bool("kafka-bounded")? {
        source = source.bounded();
    }
    Ok(Some(source))
}

/// An error when both a file option and a topic option give the same input.
pub fn one_input(args: &JobArgs, file_arg: &str, topic_arg: &str) -> anyhow::Result<()> {
    if args.opt_str(file_arg).is_some() && args.opt_str(topic_arg).is_some() {
        bail!("--arg {file_arg} and --arg {topic_arg} both give the input: keep one");
    }
    Ok(())
}

// ---- Writing topics ----

/// `exactly-once`, for jobs whose only transactional output is `output-topic`.
pub const EXACTLY_ONCE: ArgSpec = ArgSpec::new(
    "exactly-once",
    "false",
    "true = write output-topic in Kafka transactions that commit with the checkpoints (needs --checkpoint-interval-ms; read it with isolation.level=read_committed)",
);

/// A value as JSON.
pub fn to_json<T: Serialize>(value: &T) -> String {
    // Plain data always serializes; a map with non-string keys would not, and then the
    // record says so rather than vanishing.
    serde_json::to_string(value)
        .unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }).to_string())
}

/// A result as a Kafka record: `key`, and the result as JSON.
pub fn keyed_json<T: Serialize>(key: String, value: &T) -> (String, String) {
    (key, to_json(value))
}

/// The sink of `--arg output-topic` (records made by [`keyed_json`]), or `None`;
/// exactly once with `--arg exactly-once=true`, which needs the topic.
pub fn output_sink(
    env: &StreamEnv,
    args: &JobArgs,
) -> anyhow::Result<Option<KafkaSink<(String, String)>>> {
    let exactly_once = args.bool("exactly-once")?;
    let sink = sink(
        env,
        args,
        "output-topic",
        KeyValueText,
        args.job(),
        exactly_once,
    )?;
    if sink.is_none() && exactly_once {
        bail!(
            "--arg exactly-once=true is for Kafka output: give --arg output-topic=<topic> and --arg kafka-brokers=host:port"
        );
    }
    Ok(sink)
}

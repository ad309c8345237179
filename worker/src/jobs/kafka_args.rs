//! The `--arg` options that put a seed job on Kafka: where the brokers are, which topics
//! it reads and writes, and whether it stops at the end of what the topics hold.

use crate::api::StreamEnv;
use crate::connectors::kafka::{
    KafkaConfig, KafkaSerializer, KafkaSink, KafkaSource, StartingOffsets, TextValue,
};
use crate::jobs::{ArgSpec, JobArgs};
use crate::record::Data;
use anyhow::bail;

/// `kafka-brokers`, `kafka-start`, `kafka-bounded` and `kafka-transactional-id-prefix`,
/// shared by every job on Kafka.
pub const BROKER_ARGS: [ArgSpec; 4] = [
    ArgSpec::new(
        "kafka-brokers",
        "",
        "Kafka bootstrap servers, host:port[,host:port]; needed by input-topic and output-topic",
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
    let Some(config) = config_for(args, topic_arg)? else {
        return Ok(None);
    };
    let topics: Vec<String> = args
        .str(topic_arg)
        .split(',')
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    let starting = match args.choice("kafka-start", &["earliest", "latest", "committed"])? {
        "latest" => StartingOffsets::Latest,
        "committed" => StartingOffsets::Committed,
        _ => StartingOffsets::Earliest,
    };
    let mut source = KafkaSource::new(config, topics, TextValue)
        .group_id(group)
        .starting_offsets(starting);
    if args.bool("kafka-bounded")? {
        source = source.bounded();
    }
    Ok(Some(source))
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

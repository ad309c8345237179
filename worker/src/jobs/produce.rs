//! `strom produce <kind> --brokers host:port --topic T`: fills a topic with the records a
//! seed job generates when it has no input, in the form its topic option reads (see
//! [`kafka_args`]), for demos: `strom produce transactions --brokers localhost:9092 --topic
//! tx --partitions 1`, then `strom run fraud-detection --arg
//! kafka-brokers=localhost:9092 --arg transactions-topic=tx`. It prints how many records
//! each partition got.

use crate::connectors::kafka::KafkaConfig;
use crate::jobs::wordcount::generated_line;
use crate::jobs::{fraud, kafka_args, model_serving, sensors, user_behavior};
use anyhow::{Context as _, bail};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What `strom produce` writes: the generated input of a seed job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// word-count's lines (Hamlet's soliloquy, cycled), as text.
    Lines,
    /// fraud-detection's transactions, JSON, keyed by payee.
    Transactions,
    /// fraud-detection's three built-in rules (cycled), JSON, keyed by rule id.
    Rules,
    /// The sensor jobs' readings, JSON, keyed by sensor.
    #[value(alias = "readings")]
    SensorReadings,
    /// user-behavior's events, JSON (`ts` in ms), keyed by user.
    #[value(alias = "events")]
    UserEvents,
    /// model serving's wine samples, JSON, keyed by sample id.
    #[value(alias = "wine", alias = "model-data")]
    WineSamples,
    /// model serving's models (linear, tree, logistic, cycled), JSON, keyed by data type.
    Models,
}

impl Kind {
    /// The job's own default number of generated records.
    fn default_count(self) -> u64 {
        match self {
            Kind::Lines => 105,
            Kind::Transactions => 10_000,
            Kind::Rules | Kind::Models => 3,
            Kind::SensorReadings => 10_000,
            Kind::UserEvents => 20_000,
            Kind::WineSamples => 300,
        }
    }

    fn plural(self) -> &'static str {
        match self {
            Kind::Lines => "lines",
            Kind::Transactions => "transactions",
            Kind::Rules => "rules",
            Kind::SensorReadings => "sensor readings",
            Kind::UserEvents => "user events",
            Kind::WineSamples => "wine samples",
            Kind::Models => "models",
        }
    }

    /// Record `i`: its key and value, in the form the job's topic option reads.
    pub fn record(self, i: u64, sensors: u64) -> (Option<String>, String) {
        match self {
            Kind::Lines => (None, generated_line(i)),
            Kind::Transactions => {
                let t = fraud::generated_transaction(i);
                (Some(t.payee_id.to_string()), kafka_args::to_json(&t))
            }
            Kind::Rules => {
                let rules = fraud::DEFAULT_RULES;
                let rule = rules[(i % rules.len() as u64) as usize];
                let id = fraud::Rule::parse(rule).map_or(0, |r| r.rule_id);
                (Some(id.to_string()), rule.to_string())
            }
            Kind::SensorReadings => {
                let r = sensors::generated_reading(i, sensors);
                (Some(r.id.clone()), kafka_args::to_json(&r))
            }
            Kind::UserEvents => {
                let e = user_behavior::generated_behavior(i);
                (Some(e.user_id.to_string()), kafka_args::to_json(&e))
            }
            Kind::WineSamples => {
                let w = model_serving::generated_wine(i);
                (Some(w.id.to_string()), kafka_args::to_json(&w))
            }
            Kind::Models => {
                let m = model_serving::generated_model(i);
                (Some(m.data_type.clone()), kafka_args::to_json(&m))
            }
        }
    }
}

/// `strom produce`: see the module docs.
#[derive(clap::Args, Debug)]
pub struct ProduceArgs {
    /// What to write: the generated input of a seed job.
    #[arg(value_enum)]
    pub kind: Kind,
    /// Kafka bootstrap servers, host:port[,host:port].
    #[arg(long)]
    pub brokers: String,
    /// The topic to write to.
    #[arg(long)]
    pub topic: String,
    /// Records to write, the first N the job would generate; 0 = until Ctrl-C (give
    /// --rate) [default: the job's own: lines 105, transactions 10000, rules 3,
    /// sensor-readings 10000, user-events 20000, wine-samples 300, models 3].
    #[arg(long)]
    pub count: Option<u64>,
    /// Records per second [default: as fast as the brokers take them].
    #[arg(long, value_parser = positive_rate)]
    pub rate: Option<f64>,
    /// Create the topic with this many partitions if it does not exist (one partition
    /// keeps the records in the order the job would generate them).
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..))]
    pub partitions: Option<i32>,
    /// Replication factor of a topic --partitions creates.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..))]
    pub replication_factor: i32,
    /// sensor-readings: the number of sensors (as the jobs' --arg sensors).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub sensors: u64,
    /// A librdkafka producer property (security.protocol, sasl.*, batch.num.messages,
    /// …), repeatable.
    #[arg(long = "property", value_name = "KEY=VALUE", value_parser = property)]
    pub properties: Vec<(String, String)>,
}

fn positive_rate(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!(
            "expected records per second, a number above 0 (leave --rate out for no limit), got '{s}'"
        )),
    }
}

fn property(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!(
            "expected KEY=VALUE, a librdkafka property like batch.num.messages=1, got '{s}'"
        )),
    }
}

/// Runs `strom produce`: exit 0 when every record was acknowledged, 1 on the first error.
pub fn main(args: ProduceArgs) -> ExitCode {
    match produce(&args, &ctrl_c_flag()) {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Set by the first Ctrl-C: writing stops and what was sent is flushed and summed up.
fn ctrl_c_flag() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    if let Err(e) = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)) {
        tracing::warn!(error = %e, "could not install the Ctrl-C handler");
    }
    stop
}

/// Writes the records `args` ask for until done or `stop`; the one-line summary.
pub fn produce(args: &ProduceArgs, stop: &AtomicBool) -> anyhow::Result<String> {
    let count = args.count.unwrap_or_else(|| args.kind.default_count());
    if count == 0 && args.rate.is_none() {
        bail!("--count 0 writes until Ctrl-C: give --rate too, or a --count above 0");
    }
    let mut config = KafkaConfig::new(&args.brokers);
    for (key, value) in &args.properties {
        config = config.set(key, value);
    }
    if let Some(partitions) = args.partitions {
        create_topic(&config, &args.topic, partitions, args.replication_factor)?;
    }
    let tally = Tally::default();
    let producer: BaseProducer<Tally> = config
        .client_config(&[("linger.ms", "5")])
        .create_with_context(tally.clone())
        .with_context(|| format!("--brokers {}: cannot make a producer", args.brokers))?;
    let started = Instant::now();
    let mut sent = 0u64;
    while (count == 0 || sent < count) && !stop.load(Ordering::SeqCst) {
        if let Some(rate) = args.rate {
            pace(&producer, started, sent, rate);
        }
        let (key, value) = args.kind.record(sent, args.sensors);
        send(&producer, &args.topic, key.as_deref(), &value)?;
        sent += 1;
        producer.poll(Duration::ZERO);
        tally.check(&args.topic)?;
    }
    producer
        .flush(Duration::from_secs(60))
        .with_context(|| format!("topic {}: waiting for the brokers", args.topic))?;
    tally.check(&args.topic)?;
    Ok(tally.summary(sent, args.kind.plural(), &args.topic))
}

/// Waits until record `sent` is due at `rate` per second, serving deliveries meanwhile.
fn pace(producer: &BaseProducer<Tally>, started: Instant, sent: u64, rate: f64) {
    let due = started + Duration::from_secs_f64(sent as f64 / rate);
    while let Some(left) = due.checked_duration_since(Instant::now()) {
        producer.poll(left.min(Duration::from_millis(100)));
    }
}

/// Hands a record to the producer; while its queue is full, serves deliveries to make room.
fn send(
    producer: &BaseProducer<Tally>,
    topic: &str,
    key: Option<&str>,
    value: &str,
) -> anyhow::Result<()> {
    loop {
        let mut record: BaseRecord<'_, str, str> = BaseRecord::to(topic).payload(value);
        if let Some(key) = key {
            record = record.key(key);
        }
        // No timestamp of the record's own: event times of generated data lie in the
        // past (2017, 2024), and brokers delete records by timestamp after their
        // retention time, so the producer's clock stamps them.
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                producer.poll(Duration::from_millis(10));
            }
            Err((e, _)) => bail!("topic {topic}: {e}"),
        }
    }
}

/// Creates `topic` unless it exists.
fn create_topic(
    config: &KafkaConfig,
    topic: &str,
    partitions: i32,
    replication: i32,
) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = config
        .client_config(&[])
        .create()
        .with_context(|| format!("--brokers {}: cannot connect", config.brokers))?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(replication));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let results = runtime
        .block_on(admin.create_topics([&new], &options))
        .with_context(|| format!("--partitions {partitions}: creating topic {topic}"))?;
    for result in results {
        match result {
            Ok(_) => tracing::info!(topic, partitions, "topic created"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {
                tracing::info!(topic, "topic exists; --partitions leaves it as it is");
            }
            Err((_, code)) => {
                bail!("--partitions {partitions}: creating topic {topic}: {code}")
            }
        }
    }
    Ok(())
}

/// Acknowledged records per partition, and the first record the brokers refused.
#[derive(Clone, Default)]
struct Tally {
    state: Arc<Mutex<TallyState>>,
}

#[derive(Default)]
struct TallyState {
    per_partition: BTreeMap<i32, u64>,
    first_failure: Option<String>,
}

impl ClientContext for Tally {}

impl ProducerContext for Tally {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        match result {
            Ok(message) => *state.per_partition.entry(message.partition()).or_default() += 1,
            Err((e, _)) => {
                state.first_failure.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

impl Tally {
    /// The first delivery failure so far, as an error.
    fn check(&self, topic: &str) -> anyhow::Result<()> {
        let state = self
            .state
            .lock()
            .map_err(|_| anyhow::anyhow!("delivery state poisoned"))?;
        match &state.first_failure {
            Some(e) => bail!("topic {topic}: a record was not written: {e}"),
            None => Ok(()),
        }
    }

    /// `wrote 300 wine samples to topic wine (partition 0: 160, partition 1: 140)`.
    fn summary(&self, sent: u64, what: &str, topic: &str) -> String {
        let parts = match self.state.lock() {
            Ok(state) => state
                .per_partition
                .iter()
                .map(|(p, n)| format!("partition {p}: {n}"))
                .collect::<Vec<_>>()
                .join(", "),
            Err(_) => "partitions unknown".to_string(),
        };
        format!("wrote {sent} {what} to topic {topic} ({parts})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_the_generators_in_the_form_the_topics_are_read() {
        let (key, value) = Kind::Transactions.record(3, 10);
        let t: fraud::Transaction = kafka_args::json("transaction")(&value).unwrap();
        assert_eq!(t, fraud::generated_transaction(3));
        assert_eq!(key, Some(t.payee_id.to_string()));
        let (key, value) = Kind::Rules.record(4, 10);
        assert_eq!(key.as_deref(), Some("2"));
        assert!(fraud::Rule::parse(&value).is_ok());
        let (key, value) = Kind::SensorReadings.record(13, 10);
        assert_eq!(key.as_deref(), Some("sensor_3"));
        let (read, generated) = (
            sensors::parse_reading_record(&value).unwrap(),
            sensors::generated_reading(13, 10),
        );
        assert_eq!(
            (&read.id, read.timestamp),
            (&generated.id, generated.timestamp)
        );
        // serde_json without its float_roundtrip feature may read a 17-digit float one
        // ulp off (ryu writes it exactly).
        assert!((read.temperature - generated.temperature).abs() < 1e-12);
        let (_, value) = Kind::UserEvents.record(5, 10);
        assert_eq!(
            user_behavior::UserBehavior::parse(&value).unwrap(),
            user_behavior::generated_behavior(5)
        );
        let (_, value) = Kind::WineSamples.record(7, 10);
        assert_eq!(
            model_serving::WineRecord::parse_line(&value).unwrap(),
            Some(model_serving::generated_wine(7))
        );
        assert_eq!(Kind::Lines.record(0, 10), (None, generated_line(0)));
    }

    #[test]
    fn bad_flags_say_what_is_expected() {
        assert!(positive_rate("0").unwrap_err().contains("above 0"));
        assert_eq!(positive_rate("2.5"), Ok(2.5));
        assert!(property("linger.ms").unwrap_err().contains("KEY=VALUE"));
        assert_eq!(
            property("linger.ms=5"),
            Ok(("linger.ms".to_string(), "5".to_string()))
        );
    }
}

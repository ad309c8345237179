//! Seed example: fraud detection with dynamic rules, after Alexander Fedulov's
//! "Advanced Flink Application Patterns" (Ververica), the job `fraud-detection`.
//!
//! Transactions are checked against rules that change while the job runs. A rule says:
//! group transactions by some of their fields (payee, beneficiary, payment type, ...),
//! aggregate a field (sum/avg/min/max of the amount, or a count) over the last N minutes
//! of event time, and alert when the result crosses a limit. Rules arrive as JSON lines;
//! they are added, changed, paused and deleted without restarting the job.
//!
//! The dataflow is the demo's:
//! ```text
//! transactions ──> DynamicKeyFunction ──key_by(key)──> DynamicAlertFunction ──> alerts
//!                  (a copy per active rule,             (window state per key,  └─> current rules
//!                   keyed by its grouping fields)        evaluate, clean up)
//!                        ^                                     ^
//! rule lines ──> parse ──┴──────────── broadcast ──────────────┘
//!                  └─> rejected rules
//! ```
//! Rules that do not parse or validate go to a rejected-rules output with the reason; the
//! job goes on. Rule ids are the demo's `u32`; `CONTROL` rules clear all window state
//! (`CLEAR_STATE_ALL`), delete all rules (`DELETE_RULES_ALL`) or export the rules in force
//! (`EXPORT_RULES_CURRENT`).
//!
//! The rules the job starts with (three built-in ones, or the `rules` file) are in force
//! from the first transaction on, so a run over files gives the same alerts every time;
//! rule changes while it runs come as JSON lines from a socket (`rules-port`) or Kafka
//! topics (`rules-topic`). Without a `transactions` file, transactions are generated
//! deterministically (see [`generator`]), and the default run prints a few hundred alerts
//! in about a second.
//!
//! On Kafka: `transactions-topic` reads transactions as JSON records (what `strom produce
//! transactions` writes; records that do not parse are dead letters), and `output-topic`
//! takes the alerts, as JSON keyed by the alert's grouping key, exactly once with
//! `exactly-once=true`. The other outputs (current and rejected rules, dead letters)
//! still follow `output`.

pub mod functions;
pub mod generator;
pub mod model;

pub use functions::{
    DynamicAlertFunction, DynamicKeyFunction, InitialRules, RULES, RuleParser, WINDOW_STATE,
    current_rules_tag, rejected_rules_tag,
};
pub use generator::{DEFAULT_RULES, generated_transaction};
pub use model::{
    AggregatorFunctionType, Alert, ControlType, Keyed, LimitOperatorType, PaymentType,
    RejectedRule, Rule, RuleState, Transaction,
};

use crate::api::{DataStream, StreamEnv};
use crate::config::RuntimeMode;
use crate::connectors::{FileSource, GeneratorSource, SocketTextSource};
use crate::jobs::{ArgSpec, JobArgs, JobSpec, kafka_args, write_dead_letters};
use crate::record::MAX_WATERMARK;
use crate::time::{WatermarkGenerator, WatermarkOutput, WatermarkStrategy};
use anyhow::{Context as _, bail};
use std::path::Path;
use std::time::Duration;

/// How far transactions may arrive out of event-time order (the demo's 500 ms).
pub const OUT_OF_ORDERNESS: Duration = Duration::from_millis(500);

/// The watermark strategy of transactions: event time from `eventTime`, bounded
/// out-of-orderness.
pub fn transaction_watermarks() -> WatermarkStrategy<Transaction> {
    WatermarkStrategy::for_bounded_out_of_orderness(OUT_OF_ORDERNESS)
        .with_timestamp_assigner(|t: &Transaction| t.event_time)
}

/// Rules carry no event time; their stream must not hold back the event time of the
/// functions they are connected to (the demo gives rules the maximum watermark).
struct RulesHoldNothingBack;

impl<T> WatermarkGenerator<T> for RulesHoldNothingBack {
    fn on_event(&mut self, _: &T, _: i64, _: &mut WatermarkOutput) {}
    fn on_periodic_emit(&mut self, output: &mut WatermarkOutput) {
        output.emit_watermark(MAX_WATERMARK);
    }
}

/// The watermark strategy for a rule source: the maximum watermark from the start, so
/// window cleanup timers follow the transactions' event time alone.
pub fn rule_watermarks<T: crate::record::Data>() -> WatermarkStrategy<T> {
    WatermarkStrategy::for_generator(|| RulesHoldNothingBack)
}

/// Parses rule lines into rules, in order (at parallelism 1: the order of rule changes
/// matters). Rejected lines are on `.side_output(&rejected_rules_tag())` of the result.
pub fn parse_rules(lines: &DataStream<String>) -> DataStream<Rule> {
    lines
        .process(RuleParser)
        .name("Rule Parser")
        .uid("rule-parser")
        .set_parallelism(1)
}

/// What the pipeline produces.
pub struct FraudDetection {
    pub alerts: DataStream<Alert>,
    /// Every rule change as applied (and exported rules), once per job.
    pub current_rules: DataStream<Rule>,
}

/// The demo's pipeline: `transactions` (with event timestamps) checked against
/// `initial` rules and the rule changes of `rules`.
///
/// Give the rule source [`rule_watermarks`] (`env.from_source(source, rule_watermarks(),
/// ..)`): rules carry no event time and must not hold back the cleanup timers. The
/// strategy applied here again covers rule streams built without it once their first
/// rule arrives (a mid-pipeline strategy emits nothing before its first record).
pub fn detect_fraud(
    transactions: &DataStream<Transaction>,
    rules: &DataStream<Rule>,
    initial: &InitialRules,
) -> FraudDetection {
    detect_fraud_with(transactions, rules, initial, None)
}

/// [`detect_fraud`] with the parallelism of the dynamic key function set. As in the demo,
/// an alert is decided when its transaction arrives, so the alerts depend on the order in
/// which each key's transactions arrive; a key function at the parallelism of its source
/// keeps that order (the edge stays one-to-one), whatever the parallelism of the rest.
pub fn detect_fraud_with(
    transactions: &DataStream<Transaction>,
    rules: &DataStream<Rule>,
    initial: &InitialRules,
    key_parallelism: Option<usize>,
) -> FraudDetection {
    let rules = rules
        .assign_timestamps_and_watermarks(rule_watermarks())
        .name("Rules Hold No Event Time")
        .uid("rules-watermarks")
        .set_parallelism(1)
        .broadcast_stream();
    let keyed = transactions
        .connect_broadcast(&rules)
        .process(DynamicKeyFunction {
            initial: initial.clone(),
        })
        .name("Dynamic Key Function")
        .uid("dynamic-key-function");
    let keyed = match key_parallelism {
        Some(p) => keyed.set_parallelism(p),
        None => keyed,
    };
    let alerts = keyed
        .key_by(|k: &Keyed| k.key.clone())
        .connect_broadcast(&rules)
        .process(DynamicAlertFunction::new(initial.clone()))
        .name("Dynamic Alert Function")
        .uid("dynamic-alert-function");
    FraudDetection {
        current_rules: alerts.side_output(&current_rules_tag()),
        alerts,
    }
}

/// The built-in rules.
pub fn default_rules() -> Vec<Rule> {
    DEFAULT_RULES
        .iter()
        .filter_map(|r| Rule::parse(r).ok())
        .collect()
}

/// Reads a JSON-lines rules file: the rules, and the lines that were rejected.
pub fn read_rules_file(path: &Path) -> anyhow::Result<(Vec<Rule>, Vec<RejectedRule>)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--arg rules={}: cannot read the rules file", path.display()))?;
    let (mut rules, mut rejected) = (Vec::new(), Vec::new());
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match Rule::parse(line) {
            Ok(r) => rules.push(r),
            Err(e) => rejected.push(RejectedRule {
                payload: line.to_string(),
                error: format!("{}:{}: {e}", path.display(), n + 1),
            }),
        }
    }
    Ok((rules, rejected))
}

const ARGS: &[ArgSpec] = &[
    ArgSpec::new(
        "transactions",
        "",
        "JSON-lines file or directory of transactions ({\"transactionId\":1,\"eventTime\":<ms>,\"payeeId\":..,\"beneficiaryId\":..,\"paymentAmount\":..,\"paymentType\":\"CSH\"|\"CRD\"}); empty = generated",
    ),
    ArgSpec::new(
        "transactions-topic",
        "",
        "Kafka topics (comma-separated) of transactions, JSON as in transactions (what `strom produce transactions` writes), instead of transactions; read by one reader, so one partition gives the alerts of the same file",
    ),
    ArgSpec::new(
        "rules",
        "",
        "JSON-lines file of the rules to start with (the demo's format); empty = the three built-in rules",
    ),
    ArgSpec::new(
        "rules-port",
        "",
        "also read rule changes as JSON lines from localhost:PORT while the job runs (start `nc -lk PORT` first)",
    ),
    ArgSpec::new(
        "rules-topic",
        "",
        "also read rule changes from Kafka topics (comma-separated), one rule as JSON per record, applied as they arrive (like rules-port, which it replaces)",
    ),
    ArgSpec::new(
        "events",
        "10000",
        "number of generated transactions; 0 or unbounded = never stop",
    ),
    ArgSpec::new(
        "rate",
        "",
        "generated transactions per second; empty or 0 = as fast as possible",
    ),
    ArgSpec::new(
        "output",
        "",
        "directory for the results (alerts/, current-rules/, rejected-rules/, dead-letters/, and dead-letters-rules/ with rules-topic, with part-* files); empty = print",
    ),
    ArgSpec::new(
        "output-topic",
        "",
        "Kafka topic for the alerts (key: the alert's grouping key, like {payeeId=3;beneficiaryId=8}; value: the alert as JSON) instead of alerts/ or stdout; current and rejected rules and dead letters still follow output",
    ),
    kafka_args::BROKER_ARGS[0],
    kafka_args::BROKER_ARGS[1],
    kafka_args::BROKER_ARGS[2],
    kafka_args::BROKER_ARGS[3],
    kafka_args::EXACTLY_ONCE,
];

fn build(env: &StreamEnv, args: &JobArgs) -> anyhow::Result<()> {
    let (initial, rejected_at_start) = match args.path("rules") {
        Some(path) => read_rules_file(&path)?,
        None => (default_rules(), Vec::new()),
    };
    let output = args.path("output");
    let transactions = transactions(env, args, output.as_deref())?;
    let rules = parse_rules(&rule_changes(env, args, output.as_deref())?);
    // One reader and one key function keep transactions in order, so the alerts are the
    // same at every parallelism of the alert function (see `detect_fraud_with`).
    let result = detect_fraud_with(&transactions, &rules, &InitialRules::new(&initial), Some(1));
    let rejected = rules.side_output(&rejected_rules_tag()).union(
        &env.from_collection(rejected_at_start)
            .name("Rejected Initial Rules"),
    );
    let alerts_to_kafka = alerts_to_topic(env, args, &result.alerts)?;
    match output {
        Some(dir) => {
            if !alerts_to_kafka {
                result
                    .alerts
                    .write_as_text(dir.join("alerts"))
                    .name("Alerts to Files");
            }
            result
                .current_rules
                .write_as_text(dir.join("current-rules"))
                .name("Current Rules to Files");
            rejected
                .write_as_text(dir.join("rejected-rules"))
                .name("Rejected Rules to Files");
        }
        None => {
            if !alerts_to_kafka {
                result.alerts.print().name("Print Alerts");
            }
            result
                .current_rules
                .print_with_prefix("rule")
                .name("Print Rule Changes");
            rejected.print_to_err().name("Print Rejected Rules");
        }
    }
    Ok(())
}

/// The transactions, with event time: from the `transactions` file, the
/// `transactions-topic` topics, or generated.
fn transactions(
    env: &StreamEnv,
    args: &JobArgs,
    output: Option<&Path>,
) -> anyhow::Result<DataStream<Transaction>> {
    kafka_args::one_input(args, "transactions", "transactions-topic")?;
    let group = "strom-fraud-detection-transactions";
    let txs = if let Some(source) = kafka_args::source(
        args,
        "transactions-topic",
        group,
        kafka_args::json::<Transaction>("transaction"),
    )? {
        env.from_source(source, transaction_watermarks(), "Transactions")
    } else if let Some(path) = args.path("transactions") {
        env.from_source(
            FileSource::<Transaction>::json_lines(path),
            transaction_watermarks(),
            "Transactions",
        )
    } else {
        return generated_transactions(env, args);
    };
    // One reader: alerts are decided in arrival order (see `detect_fraud_with`).
    let txs = txs.set_parallelism(1);
    write_dead_letters(&txs, output, "dead-letters");
    Ok(txs)
}

fn generated_transactions(
    env: &StreamEnv,
    args: &JobArgs,
) -> anyhow::Result<DataStream<Transaction>> {
    let events = args.count("events")?;
    if events.is_none() && env.config().runtime_mode == RuntimeMode::Batch {
        bail!(
            "--runtime-mode batch needs bounded input: give --arg events=<n> (n > 0) or --arg transactions=<file>"
        );
    }
    Ok(env
        .from_source(
            GeneratorSource::new(generated_transaction)
                .maybe_count(events)
                .maybe_rate(args.rate("rate")?),
            transaction_watermarks(),
            "Generated Transactions",
        )
        .set_parallelism(1))
}

/// Rule changes as JSON lines, while the job runs: from a socket (`rules-port`), Kafka
/// topics (`rules-topic`), or none.
fn rule_changes(
    env: &StreamEnv,
    args: &JobArgs,
    output: Option<&Path>,
) -> anyhow::Result<DataStream<String>> {
    if args.opt_str("rules-port").is_some() && args.opt_str("rules-topic").is_some() {
        bail!("--arg rules-port and --arg rules-topic both give the rule changes: keep one");
    }
    if let Some(source) =
        kafka_args::text_source(args, "rules-topic", "strom-fraud-detection-rules")?
    {
        let lines = env
            .from_source(source, rule_watermarks(), "Rule Changes")
            .set_parallelism(1);
        // Rules that are no JSON are rejected rules; a record that is no text at all is
        // a dead letter.
        write_dead_letters(&lines, output, "dead-letters-rules");
        return Ok(lines);
    }
    let Some(port) = args.opt_str("rules-port") else {
        return Ok(env
            .from_collection(Vec::<String>::new())
            .name("No Rule Changes"));
    };
    let port: u16 = port.trim().parse().map_err(|_| {
        anyhow::anyhow!("--arg rules-port={port}: expected a TCP port number (1-65535) where `nc -lk PORT` listens")
    })?;
    Ok(env.from_source(
        SocketTextSource::new("localhost", port),
        rule_watermarks(),
        "Rule Changes",
    ))
}

/// Sends the alerts to `output-topic` when given (keyed by their grouping key, as JSON);
/// whether it did.
fn alerts_to_topic(
    env: &StreamEnv,
    args: &JobArgs,
    alerts: &DataStream<Alert>,
) -> anyhow::Result<bool> {
    let Some(sink) = kafka_args::output_sink(env, args)? else {
        return Ok(false);
    };
    alerts
        .map(|a: Alert| kafka_args::keyed_json(a.key.clone(), &a))
        .name("Alerts as JSON")
        .sink_to(sink)
        .name("Alerts to Kafka")
        .uid("fraud-detection-kafka-output");
    Ok(true)
}

/// The jobs of this module.
pub fn jobs() -> Vec<JobSpec> {
    vec![JobSpec {
        name: "fraud-detection",
        summary: "Fraud detection with dynamic rules (Ververica demo): alerts when a rule's windowed aggregate crosses its limit",
        args: ARGS,
        build,
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_rules_parse() {
        assert_eq!(default_rules().len(), DEFAULT_RULES.len());
    }

    #[test]
    fn rule_validation_names_the_field_and_what_is_accepted() {
        let e = Rule::parse(r#"{"ruleId":4,"ruleState":"ACTIVE","groupingKeyNames":["payee"],"aggregateFieldName":"paymentAmount","aggregatorFunctionType":"SUM","limitOperatorType":"GREATER","limit":5,"windowMinutes":1}"#).unwrap_err();
        assert_eq!(
            e,
            "rule 4: unknown grouping key 'payee' in groupingKeyNames; accepted: transactionId, payeeId, beneficiaryId, paymentType, paymentAmount"
        );
        let e = Rule::parse(r#"{"ruleId":4,"ruleState":"ACTIVE","groupingKeyNames":[],"aggregateFieldName":"amount","aggregatorFunctionType":"SUM","limitOperatorType":"GREATER","limit":5,"windowMinutes":1}"#).unwrap_err();
        assert_eq!(
            e,
            "rule 4: unknown aggregateFieldName 'amount'; accepted: paymentAmount, COUNT_FLINK, COUNT_WITH_RESET_FLINK"
        );
        let e = Rule::parse(r#"{"ruleId":4,"ruleState":"ACTIVE","groupingKeyNames":[],"aggregateFieldName":"paymentAmount","aggregatorFunctionType":"MEDIAN","limitOperatorType":"GREATER","limit":5,"windowMinutes":1}"#).unwrap_err();
        assert_eq!(
            e,
            "rule 4: unknown aggregatorFunctionType 'MEDIAN'; accepted: SUM, AVG, MIN, MAX"
        );
        let e = Rule::parse(r#"{"ruleId":4,"ruleState":"CONTROL"}"#).unwrap_err();
        assert!(e.contains("CONTROL rule without controlType"), "{e}");
        let e = Rule::parse("{\"ruleId\":4,").unwrap_err();
        assert!(e.starts_with("not a rule: "), "{e}");
        let d = Rule::parse(r#"{"ruleId":4,"ruleState":"DELETE"}"#).unwrap();
        assert_eq!(d.rule_state, RuleState::Delete);
    }

    #[test]
    fn keys_and_aggregates_follow_the_demo() {
        let rule = Rule::parse(DEFAULT_RULES[0]).unwrap();
        let tx = generated_transaction(3);
        assert_eq!(
            rule.key_of(&tx),
            format!(
                "{{payeeId={};beneficiaryId={}}}",
                tx.payee_id, tx.beneficiary_id
            )
        );
        let mut avg = rule.clone();
        avg.aggregator_function_type = AggregatorFunctionType::Avg;
        let (a, b) = (generated_transaction(1), generated_transaction(2));
        let expected = (a.payment_amount + b.payment_amount) / 2.0;
        assert_eq!(avg.aggregate([&a, &b]), Some(expected));
        assert_eq!(avg.aggregate(Vec::<&Transaction>::new()), None);
    }

    #[test]
    fn generated_transactions_are_deterministic() {
        assert_eq!(generated_transaction(42), generated_transaction(42));
        assert_ne!(generated_transaction(42), generated_transaction(43));
        let burst: Vec<u64> = (500..512)
            .map(|i| generated_transaction(i).beneficiary_id)
            .collect();
        assert!(burst.iter().all(|b| *b == burst[0]));
    }
}

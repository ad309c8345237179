//! The fraud-detection job: exact alerts for fixed transactions while rules are added,
//! changed, paused, deleted and cleared mid-stream (the order between the transaction and
//! rule streams is made deterministic by feeding both from the test and waiting on the
//! operators' input counters), rejected rules, state cleanup, and end-to-end runs through
//! the job registry.

// Helpers outside #[test] functions unwrap too: a failure is the test's failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crossbeam_channel::Sender;
use std::path::{Path, PathBuf};
use std::time::Duration;
use strom::jobs::fraud::{
    Alert, InitialRules, PaymentType, RejectedRule, Rule, RuleState, Transaction, detect_fraud,
    parse_rules, rejected_rules_tag, rule_watermarks,
};
use strom::prelude::*;
use strom::runtime::metrics::JobMetrics;
use strom::{JobArgs, JobRegistry};

const T0: i64 = 1_704_067_200_000;
const MIN: i64 = 60_000;
const WAIT: Duration = Duration::from_secs(10);

fn tx(id: u64, at: i64, payee: u64, beneficiary: u64, amount: f64) -> Transaction {
    Transaction {
        transaction_id: id,
        event_time: T0 + at,
        payee_id: payee,
        beneficiary_id: beneficiary,
        payment_amount: amount,
        payment_type: if id.is_multiple_of(2) {
            PaymentType::Crd
        } else {
            PaymentType::Csh
        },
        ingestion_timestamp: T0 + at,
    }
}

/// A rule's JSON, one argument per field of the demo's format.
#[allow(clippy::too_many_arguments)]
fn rule_json(
    id: u32,
    state: &str,
    keys: &[&str],
    field: &str,
    agg: &str,
    op: &str,
    limit: f64,
    minutes: u32,
) -> String {
    format!(
        r#"{{"ruleId":{id},"ruleState":"{state}","groupingKeyNames":{},"aggregateFieldName":"{field}","aggregatorFunctionType":"{agg}","limitOperatorType":"{op}","limit":{limit},"windowMinutes":{minutes}}}"#,
        serde_json::to_string(keys).unwrap()
    )
}

/// A fraud-detection pipeline fed from the test, one input at a time.
struct Harness {
    txs: Option<Sender<Feed<Transaction>>>,
    rules: Option<Sender<Feed<String>>>,
    handle: Option<JobHandle>,
    alerts: CollectHandle<Alert>,
    current: CollectHandle<Rule>,
    rejected: CollectHandle<RejectedRule>,
    p: u64,
    sent_txs: u64,
    sent_lines: u64,
    valid_rules: u64,
    keyed: u64,
}

fn totals(m: &JobMetrics, op: &str, input: usize) -> u64 {
    m.operator(op)
        .unwrap_or_else(|| panic!("no operator {op}"))
        .subtasks
        .iter()
        .map(|s| s.records_in_of(input))
        .sum()
}

impl Harness {
    fn start(p: usize) -> Harness {
        let env = StreamEnv::new();
        env.set_parallelism(p);
        let (tx_in, tx_src) = ChannelSource::<Transaction>::new();
        let (rule_in, rule_src) = ChannelSource::<String>::new();
        // No watermarks from transactions: cleanup timers fire only at the end, so they
        // cannot race with the phases of a test.
        let txs = env.add_source(tx_src, None, "Transactions");
        let lines = env.from_source(rule_src, rule_watermarks(), "Rules");
        let rules = parse_rules(&lines);
        let out = detect_fraud(&txs, &rules, &InitialRules::default());
        let alerts = out.alerts.collect();
        let current = out.current_rules.collect();
        let rejected = rules.side_output(&rejected_rules_tag()).collect();
        let handle = env.execute_async("fraud test").unwrap();
        Harness {
            txs: Some(tx_in),
            rules: Some(rule_in),
            handle: Some(handle),
            alerts,
            current,
            rejected,
            p: p as u64,
            sent_txs: 0,
            sent_lines: 0,
            valid_rules: 0,
            keyed: 0,
        }
    }

    fn handle(&self) -> &JobHandle {
        self.handle.as_ref().unwrap()
    }

    /// Sends a rule line and waits until it was parsed and, if valid, applied by every
    /// instance of both functions.
    fn rule(&mut self, line: &str, valid: bool) {
        self.rules
            .as_ref()
            .unwrap()
            .send(Feed::Record(line.to_string()))
            .unwrap();
        self.sent_lines += 1;
        self.valid_rules += u64::from(valid);
        let (lines, n) = (self.sent_lines, self.valid_rules * self.p);
        let ok = self.handle().wait_for(WAIT, |m| {
            totals(m, "rule-parser", 0) == lines
                && totals(m, "dynamic-key-function", 1) == n
                && totals(m, "dynamic-alert-function", 1) == n
        });
        assert!(ok, "rule {line} was not applied everywhere in time");
    }

    /// Sends a transaction that `active_rules` rules will key, and waits until all its
    /// keyed copies reached the alert function.
    fn tx(&mut self, t: Transaction, active_rules: u64) {
        let at = t.event_time;
        self.txs.as_ref().unwrap().send(Feed::Timed(t, at)).unwrap();
        self.sent_txs += 1;
        self.keyed += active_rules;
        let (sent, keyed) = (self.sent_txs, self.keyed);
        let ok = self.handle().wait_for(WAIT, |m| {
            totals(m, "dynamic-key-function", 0) == sent
                && totals(m, "dynamic-alert-function", 0) == keyed
        });
        assert!(
            ok,
            "transaction {sent} was not processed in time (expected {keyed} keyed copies)"
        );
    }

    fn watermark(&mut self, w: i64) {
        self.txs.as_ref().unwrap().send(Feed::Watermark(w)).unwrap();
    }

    fn finish(mut self) -> (Vec<Alert>, Vec<Rule>, Vec<RejectedRule>) {
        self.txs.take();
        self.rules.take();
        self.handle.take().unwrap().join().unwrap();
        let mut alerts = self.alerts.values();
        alerts.sort_by_key(|a| (a.triggering_event.transaction_id, a.rule_id));
        (alerts, self.current.values(), self.rejected.values())
    }
}

fn alert(rule: &str, key: &str, t: &Transaction, value: f64) -> Alert {
    let rule = Rule::parse(rule).unwrap();
    Alert {
        rule_id: rule.rule_id,
        rule_payload: rule,
        key: key.to_string(),
        triggering_event: t.clone(),
        triggering_value: value,
    }
}

fn dynamic_rules_run(p: usize) -> (Vec<Alert>, Vec<Rule>) {
    let by_payee_100 = rule_json(
        1,
        "ACTIVE",
        &["payeeId"],
        "paymentAmount",
        "SUM",
        "GREATER",
        100.0,
        10,
    );
    let by_payee_25 = rule_json(
        1,
        "ACTIVE",
        &["payeeId"],
        "paymentAmount",
        "SUM",
        "GREATER",
        25.0,
        10,
    );
    let count_by_beneficiary = rule_json(
        2,
        "ACTIVE",
        &["beneficiaryId"],
        "COUNT_FLINK",
        "SUM",
        "GREATER_EQUAL",
        2.0,
        60,
    );
    let paused = rule_json(
        2,
        "PAUSE",
        &["beneficiaryId"],
        "COUNT_FLINK",
        "SUM",
        "GREATER_EQUAL",
        2.0,
        60,
    );
    let t = [
        tx(1, 0, 1, 10, 60.0),
        tx(2, MIN, 1, 11, 50.0),
        tx(3, 2 * MIN, 2, 10, 150.0),
        tx(4, 12 * MIN, 1, 12, 30.0),
        tx(5, 13 * MIN, 1, 12, 5.0),
        tx(6, 14 * MIN, 3, 13, 20.0),
        tx(7, 15 * MIN, 3, 10, 10.0),
        tx(8, 16 * MIN, 4, 10, 1.0),
        tx(9, 17 * MIN, 3, 10, 100.0),
        tx(10, 18 * MIN, 5, 10, 2.0),
        tx(11, 19 * MIN, 5, 10, 3.0),
        tx(12, 19 * MIN + 1_000, 6, 10, 4.0),
        tx(13, 20 * MIN, 6, 10, 500.0),
    ];
    let mut h = Harness::start(p);
    // Phase 1: rule 1 alone.
    h.rule(&by_payee_100, true);
    for t in &t[0..4] {
        h.tx(t.clone(), 1);
    }
    // Phase 2: rule 1's limit drops to 25, then rule 2 joins.
    h.rule(&by_payee_25, true);
    h.tx(t[4].clone(), 1);
    h.tx(t[5].clone(), 1);
    h.rule(&count_by_beneficiary, true);
    h.tx(t[6].clone(), 2);
    h.tx(t[7].clone(), 2);
    // Phase 3: rule 2 paused, rule 1 deleted: nothing is evaluated.
    h.rule(&paused, true);
    h.rule(r#"{"ruleId":1,"ruleState":"DELETE"}"#, true);
    h.tx(t[8].clone(), 0);
    // Phase 4: rule 2 active again; it kept its window (tx 9 was never keyed for it).
    h.rule(&count_by_beneficiary, true);
    h.tx(t[9].clone(), 1);
    // Phase 5: all window state cleared: counting starts again.
    h.rule(
        r#"{"ruleId":100,"ruleState":"CONTROL","controlType":"CLEAR_STATE_ALL"}"#,
        true,
    );
    h.tx(t[10].clone(), 1);
    h.tx(t[11].clone(), 1);
    // Phase 6: all rules deleted.
    h.rule(
        r#"{"ruleId":101,"ruleState":"CONTROL","controlType":"DELETE_RULES_ALL"}"#,
        true,
    );
    h.tx(t[12].clone(), 0);
    let (alerts, current, rejected) = h.finish();
    assert!(rejected.is_empty(), "{rejected:?}");

    let expected = vec![
        alert(&by_payee_100, "{payeeId=1}", &t[1], 110.0),
        alert(&by_payee_100, "{payeeId=2}", &t[2], 150.0),
        alert(&by_payee_25, "{payeeId=1}", &t[4], 35.0),
        alert(&by_payee_25, "{payeeId=3}", &t[6], 30.0),
        alert(&count_by_beneficiary, "{beneficiaryId=10}", &t[7], 2.0),
        alert(&count_by_beneficiary, "{beneficiaryId=10}", &t[9], 3.0),
        alert(&count_by_beneficiary, "{beneficiaryId=10}", &t[11], 2.0),
    ];
    assert_eq!(alerts, expected, "parallelism {p}");
    (alerts, current)
}

#[test]
fn rules_added_changed_paused_deleted_and_cleared_mid_stream_give_exact_alerts_at_parallelism_1_2_4()
 {
    let (one, current) = dynamic_rules_run(1);
    let states: Vec<(u32, RuleState)> = current.iter().map(|r| (r.rule_id, r.rule_state)).collect();
    assert_eq!(
        states,
        vec![
            (1, RuleState::Active),
            (1, RuleState::Active),
            (2, RuleState::Active),
            (2, RuleState::Pause),
            (1, RuleState::Delete),
            (2, RuleState::Active),
            (100, RuleState::Control),
            (101, RuleState::Control),
        ]
    );
    assert_eq!(current[1].limit, 25.0);
    for p in [2, 4] {
        let (alerts, current_p) = dynamic_rules_run(p);
        assert_eq!(alerts, one, "parallelism {p}");
        assert_eq!(current_p, current, "parallelism {p}");
    }
}

#[test]
fn malformed_rules_are_rejected_with_the_reason_and_the_job_goes_on() {
    let good = rule_json(
        1,
        "ACTIVE",
        &["paymentType"],
        "paymentAmount",
        "MAX",
        "GREATER_EQUAL",
        40.0,
        5,
    );
    let unknown_key = rule_json(
        2,
        "ACTIVE",
        &["payee"],
        "paymentAmount",
        "SUM",
        "GREATER",
        1.0,
        5,
    );
    let unknown_field = rule_json(
        3,
        "ACTIVE",
        &["payeeId"],
        "amount",
        "SUM",
        "GREATER",
        1.0,
        5,
    );
    let mut h = Harness::start(2);
    h.rule(&good, true);
    h.rule(&unknown_key, false);
    h.rule("this is not json", false);
    h.rule(&unknown_field, false);
    let t = [
        tx(1, 0, 1, 1, 30.0),
        tx(2, MIN, 1, 1, 45.0),
        tx(3, 2 * MIN, 2, 2, 10.0),
    ];
    for t in &t {
        h.tx(t.clone(), 1);
    }
    let (alerts, current, rejected) = h.finish();
    // Transactions 1 and 3 are CSH (odd ids), 2 is CRD: each type has its own key.
    assert_eq!(alerts, vec![alert(&good, "{paymentType=CRD}", &t[1], 45.0)]);
    assert_eq!(current.len(), 1);
    let errors: Vec<&str> = rejected.iter().map(|r| r.error.as_str()).collect();
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert_eq!(
        errors[0],
        "rule 2: unknown grouping key 'payee' in groupingKeyNames; accepted: transactionId, payeeId, beneficiaryId, paymentType, paymentAmount"
    );
    assert!(
        errors[1].starts_with("not a rule: expected ident at line 1 column 2; a rule looks like {"),
        "{}",
        errors[1]
    );
    assert_eq!(
        errors[2],
        "rule 3: unknown aggregateFieldName 'amount'; accepted: paymentAmount, COUNT_FLINK, COUNT_WITH_RESET_FLINK"
    );
    assert_eq!(rejected[1].payload, "this is not json");
}

/// Averages, minimums and counting with reset, and a rule whose key groups two fields.
#[test]
fn aggregators_and_count_with_reset() {
    let avg = rule_json(
        1,
        "ACTIVE",
        &["payeeId", "beneficiaryId"],
        "paymentAmount",
        "AVG",
        "GREATER",
        20.0,
        30,
    );
    let min = rule_json(
        2,
        "ACTIVE",
        &["payeeId"],
        "paymentAmount",
        "MIN",
        "LESS",
        2.0,
        30,
    );
    let reset = rule_json(
        3,
        "ACTIVE",
        &["beneficiaryId"],
        "COUNT_WITH_RESET_FLINK",
        "SUM",
        "GREATER_EQUAL",
        2.0,
        30,
    );
    let mut h = Harness::start(2);
    for r in [&avg, &min, &reset] {
        h.rule(r, true);
    }
    let t = [
        tx(1, 0, 1, 5, 10.0),
        tx(2, MIN, 1, 5, 40.0),
        tx(3, 2 * MIN, 1, 6, 1.5),
        tx(4, 3 * MIN, 2, 5, 8.0),
        tx(5, 4 * MIN, 2, 5, 9.0),
    ];
    for t in &t {
        h.tx(t.clone(), 3);
    }
    let (alerts, _, _) = h.finish();
    assert_eq!(
        alerts,
        vec![
            // (10 + 40) / 2 = 25 > 20 for payee 1 -> beneficiary 5.
            alert(&avg, "{payeeId=1;beneficiaryId=5}", &t[1], 25.0),
            // Two payments to beneficiary 5: alert, and its window starts over.
            alert(&reset, "{beneficiaryId=5}", &t[1], 2.0),
            alert(&min, "{payeeId=1}", &t[2], 1.5),
            // After the reset: transactions 4 and 5 are the next two.
            alert(&reset, "{beneficiaryId=5}", &t[4], 2.0),
        ]
    );
}

/// Event-time timers evict transactions older than the widest window: after the
/// watermark passed, widening the rule does not bring old transactions back.
#[test]
fn cleanup_timers_evict_transactions_outside_the_widest_window() {
    let narrow = rule_json(
        1,
        "ACTIVE",
        &["payeeId"],
        "paymentAmount",
        "SUM",
        "GREATER",
        100.0,
        1,
    );
    let wide = rule_json(
        1,
        "ACTIVE",
        &["payeeId"],
        "paymentAmount",
        "SUM",
        "GREATER",
        100.0,
        10,
    );
    let run = |advance_watermark: bool| {
        let mut h = Harness::start(1);
        h.rule(&narrow, true);
        h.tx(tx(1, 0, 1, 1, 80.0), 1);
        h.tx(tx(2, 2 * MIN, 1, 1, 10.0), 1);
        if advance_watermark {
            // The timer at 2 min fires: everything before 2 min - 1 min goes.
            h.watermark(T0 + 3 * MIN);
        }
        // At parallelism 1 the watermark reaches the alert function before this probe.
        h.tx(tx(3, 2 * MIN + 500, 9, 9, 1.0), 1);
        h.rule(&wide, true);
        h.tx(tx(4, 3 * MIN + 1_000, 1, 1, 15.0), 1);
        h.finish().0
    };
    let kept = run(false);
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].triggering_value, 105.0);
    assert_eq!(kept[0].triggering_event.transaction_id, 4);
    assert!(
        run(true).is_empty(),
        "transaction 1 should have been evicted"
    );
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("strom-jobs-fraud-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn read_lines(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries {
            let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
            lines.extend(text.lines().map(str::to_string));
        }
    }
    lines.sort();
    lines
}

fn run_registered(args: &[(&str, &str)], p: usize) -> JobResult {
    let registry = JobRegistry::builtin();
    let spec = registry
        .find("fraud-detection")
        .expect("fraud-detection is registered");
    let args = JobArgs::from_pairs(spec.name, spec.args, args).unwrap();
    let env = StreamEnv::new();
    env.set_parallelism(p);
    (spec.build)(&env, &args).unwrap();
    env.execute(spec.name).unwrap()
}

#[test]
fn end_to_end_with_transaction_and_rule_files() {
    let dir = temp_dir("files");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let data = repo.join("examples/data/fraud");
    for p in [1, 2] {
        let out = dir.join(format!("out-{p}"));
        let result = run_registered(
            &[
                (
                    "transactions",
                    data.join("transactions.jsonl").to_str().unwrap(),
                ),
                ("rules", data.join("rules.jsonl").to_str().unwrap()),
                ("output", out.to_str().unwrap()),
            ],
            p,
        );
        assert_eq!(
            read_lines(&out.join("alerts")),
            vec![
                "ALERT rule 1 {payeeId=3;beneficiaryId=8}: SUM(paymentAmount) = 600 > 500 over 20 min; triggered by tx 5 at 2024-01-01 00:10:00: payee 3 -> beneficiary 8, 450.00 CRD",
                "ALERT rule 1 {payeeId=6;beneficiaryId=9}: SUM(paymentAmount) = 999.99 > 500 over 20 min; triggered by tx 7 at 2024-01-01 00:14:00: payee 6 -> beneficiary 9, 999.99 CSH",
                "ALERT rule 2 {beneficiaryId=4}: SUM(COUNT_FLINK) = 3 >= 3 over 60 min; triggered by tx 4 at 2024-01-01 00:08:00: payee 2 -> beneficiary 4, 20.00 CSH",
                "ALERT rule 2 {beneficiaryId=4}: SUM(COUNT_FLINK) = 4 >= 3 over 60 min; triggered by tx 6 at 2024-01-01 00:12:00: payee 5 -> beneficiary 4, 5.00 CSH",
                "ALERT rule 3 {paymentType=CSH}: MAX(paymentAmount) = 999.99 >= 999 over 5 min; triggered by tx 7 at 2024-01-01 00:14:00: payee 6 -> beneficiary 9, 999.99 CSH",
            ],
            "parallelism {p}"
        );
        let rejected = read_lines(&out.join("rejected-rules"));
        assert_eq!(rejected.len(), 1, "{rejected:?}");
        assert!(
            rejected[0].contains("unknown grouping key 'payee'"),
            "{}",
            rejected[0]
        );
        let dead = read_lines(&out.join("dead-letters"));
        assert_eq!(dead.len(), 1, "{dead:?}");
        assert!(dead[0].contains("transactions.jsonl:9"), "{}", dead[0]);
        let source = result
            .metrics
            .operator("Source: Transactions")
            .unwrap()
            .totals();
        assert_eq!((source.records_out, source.dead_letters), (8, 1));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_default_run_on_generated_data_prints_a_moderate_number_of_alerts() {
    let dir = temp_dir("default");
    let result = run_registered(&[("output", dir.to_str().unwrap())], 2);
    let alerts = read_lines(&dir.join("alerts"));
    assert!(
        (30..=600).contains(&alerts.len()),
        "{} alerts",
        alerts.len()
    );
    for rule in 1..=3 {
        assert!(
            alerts
                .iter()
                .any(|a| a.starts_with(&format!("ALERT rule {rule} "))),
            "rule {rule} never fired"
        );
    }
    let source = result
        .metrics
        .operator("Source: Generated Transactions")
        .unwrap()
        .totals();
    assert_eq!(source.records_out, 10_000);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Regression test: a strategy applied in the middle of a pipeline used to emit no
/// periodic watermark before its first record, so a quiet input (a rule stream that has
/// not changed yet) held back event time downstream for ever. The job also gives rule
/// sources their strategy at the source (`rule_watermarks()` in `from_source`).
#[test]
fn a_mid_pipeline_watermark_strategy_emits_before_its_first_record() {
    #[derive(Clone)]
    struct FireAt;
    impl KeyedProcessFunction<u8, i64, i64> for FireAt {
        fn process_element(
            &mut self,
            t: i64,
            ctx: &mut KeyedContext<'_, u8>,
            _: &mut Collector<'_, i64>,
        ) {
            ctx.timer_service().register_event_time_timer(t);
        }
        fn on_timer(&mut self, t: i64, _: &mut KeyedContext<'_, u8>, out: &mut Collector<'_, i64>) {
            out.collect(t);
        }
    }
    let env = StreamEnv::new();
    let (data_in, data_src) = ChannelSource::<i64>::new();
    let (quiet_in, quiet_src) = ChannelSource::<i64>::new();
    let data = env.add_source(data_src, None, "data");
    let quiet = env
        .add_source(quiet_src, None, "quiet")
        .assign_timestamps_and_watermarks(rule_watermarks());
    data.union(&quiet)
        .key_by(|_: &i64| 0u8)
        .process(FireAt)
        .uid("fire-at")
        .collect();
    let handle = env.execute_async("quiet input").unwrap();
    data_in.send(Feed::Timed(1_000, 1_000)).unwrap();
    data_in.send(Feed::Watermark(5_000)).unwrap();
    let fired = handle.wait_for(Duration::from_secs(1), |m| {
        m.operator("fire-at").unwrap().totals().records_out == 1
    });
    drop((data_in, quiet_in));
    handle.join().unwrap();
    assert!(
        fired,
        "the timer at 1000 did not fire at watermark 5000 while the other input was quiet"
    );
}

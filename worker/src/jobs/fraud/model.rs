//! The records of the fraud-detection job, in the JSON forms of the Ververica demo:
//! transactions, rules (with validation that names the bad field and what is accepted),
//! transactions keyed for a rule, alerts, and rejected rules.

use crate::jobs::user_behavior::format_utc;
use serde::{Deserialize, Serialize};
use std::fmt;

/// How a payment was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PaymentType {
    /// Cash.
    #[serde(rename = "CSH")]
    Csh,
    /// Card.
    #[serde(rename = "CRD")]
    Crd,
}

impl fmt::Display for PaymentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PaymentType::Csh => "CSH",
            PaymentType::Crd => "CRD",
        })
    }
}

/// A payment from a payee to a beneficiary (the demo's `Transaction`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Transaction {
    pub transaction_id: u64,
    /// Event time, milliseconds since the Unix epoch.
    pub event_time: i64,
    pub payee_id: u64,
    pub beneficiary_id: u64,
    pub payment_amount: f64,
    pub payment_type: PaymentType,
    /// When the transaction entered the system (the demo measures latency from it).
    #[serde(default)]
    pub ingestion_timestamp: i64,
}

impl fmt::Display for Transaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "tx {} at {}: payee {} -> beneficiary {}, {:.2} {}",
            self.transaction_id,
            format_utc(self.event_time),
            self.payee_id,
            self.beneficiary_id,
            self.payment_amount,
            self.payment_type
        )
    }
}

/// The fields of a transaction a rule can group by, as rules name them.
pub const GROUPING_KEYS: &[&str] = &[
    "transactionId",
    "payeeId",
    "beneficiaryId",
    "paymentType",
    "paymentAmount",
];

/// `aggregateFieldName`: the payment amount, or a count of transactions.
pub const AGGREGATE_FIELDS: &[&str] = &["paymentAmount", COUNT, COUNT_WITH_RESET];

/// Counts transactions (each counts 1).
pub const COUNT: &str = "COUNT_FLINK";
/// Counts transactions, and forgets the key's window after each alert (the demo's
/// "count with reset").
pub const COUNT_WITH_RESET: &str = "COUNT_WITH_RESET_FLINK";

/// What a rule record does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RuleState {
    /// Evaluate the rule.
    Active,
    /// Keep the rule (and the window data it needs) but raise no alerts.
    Pause,
    /// Remove the rule.
    Delete,
    /// A command for all rules or state (see [`ControlType`]).
    Control,
}

/// How a rule aggregates the field over its window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AggregatorFunctionType {
    #[default]
    Sum,
    Avg,
    Min,
    Max,
}

/// How the aggregate is compared with the rule's limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LimitOperatorType {
    Equal,
    NotEqual,
    #[default]
    Greater,
    Less,
    GreaterEqual,
    LessEqual,
}

/// Commands of `CONTROL` rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ControlType {
    /// Forget the window data of every key.
    ClearStateAll,
    /// Remove every rule.
    DeleteRulesAll,
    /// Send every current rule to the current-rules output.
    ExportRulesCurrent,
}

/// A fraud rule (the demo's `Rule`): "aggregate `aggregate_field_name` with
/// `aggregator_function_type` over the last `window_minutes` of transactions with the same
/// `grouping_key_names`, and alert when the result `limit_operator_type` `limit`".
///
/// `DELETE` rules need only `ruleId`; `CONTROL` rules only `controlType`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    pub rule_id: u32,
    pub rule_state: RuleState,
    #[serde(default)]
    pub grouping_key_names: Vec<String>,
    #[serde(default)]
    pub aggregate_field_name: String,
    #[serde(default)]
    pub aggregator_function_type: AggregatorFunctionType,
    #[serde(default)]
    pub limit_operator_type: LimitOperatorType,
    #[serde(default)]
    pub limit: f64,
    #[serde(default)]
    pub window_minutes: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_type: Option<ControlType>,
}

/// A rule as written, every field optional, so that validation can say exactly what is
/// missing or wrong instead of a generic parse error.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawRule {
    rule_id: Option<u32>,
    rule_state: Option<String>,
    grouping_key_names: Option<Vec<String>>,
    aggregate_field_name: Option<String>,
    aggregator_function_type: Option<String>,
    limit_operator_type: Option<String>,
    limit: Option<f64>,
    window_minutes: Option<u32>,
    control_type: Option<String>,
}

const RULE_STATES: &[(&str, RuleState)] = &[
    ("ACTIVE", RuleState::Active),
    ("PAUSE", RuleState::Pause),
    ("DELETE", RuleState::Delete),
    ("CONTROL", RuleState::Control),
];
const AGGREGATORS: &[(&str, AggregatorFunctionType)] = &[
    ("SUM", AggregatorFunctionType::Sum),
    ("AVG", AggregatorFunctionType::Avg),
    ("MIN", AggregatorFunctionType::Min),
    ("MAX", AggregatorFunctionType::Max),
];
const OPERATORS: &[(&str, LimitOperatorType)] = &[
    ("EQUAL", LimitOperatorType::Equal),
    ("NOT_EQUAL", LimitOperatorType::NotEqual),
    ("GREATER", LimitOperatorType::Greater),
    ("LESS", LimitOperatorType::Less),
    ("GREATER_EQUAL", LimitOperatorType::GreaterEqual),
    ("LESS_EQUAL", LimitOperatorType::LessEqual),
];
const CONTROLS: &[(&str, ControlType)] = &[
    ("CLEAR_STATE_ALL", ControlType::ClearStateAll),
    ("DELETE_RULES_ALL", ControlType::DeleteRulesAll),
    ("EXPORT_RULES_CURRENT", ControlType::ExportRulesCurrent),
];

fn names<T>(table: &[(&str, T)]) -> String {
    table.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
}

fn lookup<T: Copy>(table: &[(&str, T)], field: &str, value: &str, rule: &str) -> Result<T, String> {
    table
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(value.trim()))
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            format!(
                "{rule}: unknown {field} '{value}'; accepted: {}",
                names(table)
            )
        })
}

/// An example of a complete rule, quoted in parse errors.
pub const RULE_EXAMPLE: &str = r#"{"ruleId":1,"ruleState":"ACTIVE","groupingKeyNames":["paymentType"],"aggregateFieldName":"paymentAmount","aggregatorFunctionType":"SUM","limitOperatorType":"GREATER","limit":500,"windowMinutes":20}"#;

impl Rule {
    /// Parses a rule from the demo's JSON form and validates it. The error names the
    /// field that is wrong and what it accepts.
    pub fn parse(json: &str) -> Result<Rule, String> {
        let raw: RawRule = serde_json::from_str(json.trim())
            .map_err(|e| format!("not a rule: {e}; a rule looks like {RULE_EXAMPLE}"))?;
        let rule_id = raw.rule_id.ok_or_else(|| {
            "rule without ruleId; give a whole number, e.g. \"ruleId\": 1".to_string()
        })?;
        let who = format!("rule {rule_id}");
        let state_name = raw
            .rule_state
            .as_deref()
            .ok_or_else(|| format!("{who}: no ruleState; accepted: {}", names(RULE_STATES)))?;
        let rule_state = lookup(RULE_STATES, "ruleState", state_name, &who)?;
        let mut rule = Rule {
            rule_id,
            rule_state,
            grouping_key_names: raw.grouping_key_names.unwrap_or_default(),
            aggregate_field_name: raw.aggregate_field_name.unwrap_or_default(),
            aggregator_function_type: AggregatorFunctionType::default(),
            limit_operator_type: LimitOperatorType::default(),
            limit: raw.limit.unwrap_or_default(),
            window_minutes: raw.window_minutes.unwrap_or_default(),
            control_type: None,
        };
        match rule_state {
            RuleState::Active | RuleState::Pause => {
                let missing = |field: &str| {
                    format!(
                        "{who}: {state_name} rule without {field}; a rule looks like {RULE_EXAMPLE}"
                    )
                };
                if rule.aggregate_field_name.is_empty() {
                    return Err(missing("aggregateFieldName"));
                }
                let aggregator = raw
                    .aggregator_function_type
                    .ok_or_else(|| missing("aggregatorFunctionType"))?;
                rule.aggregator_function_type =
                    lookup(AGGREGATORS, "aggregatorFunctionType", &aggregator, &who)?;
                let operator = raw
                    .limit_operator_type
                    .ok_or_else(|| missing("limitOperatorType"))?;
                rule.limit_operator_type = lookup(OPERATORS, "limitOperatorType", &operator, &who)?;
                if raw.limit.is_none() {
                    return Err(missing("limit"));
                }
                if raw.window_minutes.is_none() {
                    return Err(missing("windowMinutes"));
                }
            }
            RuleState::Control => {
                let control = raw.control_type.ok_or_else(|| {
                    format!(
                        "{who}: CONTROL rule without controlType; accepted: {}",
                        names(CONTROLS)
                    )
                })?;
                rule.control_type = Some(lookup(CONTROLS, "controlType", &control, &who)?);
            }
            RuleState::Delete => {}
        }
        rule.validate()?;
        Ok(rule)
    }

    /// Checks what a rule that evaluates transactions needs: known grouping keys, a known
    /// aggregate field, a finite limit and a window of at least a minute.
    pub fn validate(&self) -> Result<(), String> {
        if !matches!(self.rule_state, RuleState::Active | RuleState::Pause) {
            if self.rule_state == RuleState::Control && self.control_type.is_none() {
                return Err(format!(
                    "rule {}: CONTROL rule without controlType; accepted: {}",
                    self.rule_id,
                    names(CONTROLS)
                ));
            }
            return Ok(());
        }
        let who = format!("rule {}", self.rule_id);
        for k in &self.grouping_key_names {
            if !GROUPING_KEYS.contains(&k.as_str()) {
                return Err(format!(
                    "{who}: unknown grouping key '{k}' in groupingKeyNames; accepted: {}",
                    GROUPING_KEYS.join(", ")
                ));
            }
        }
        if !AGGREGATE_FIELDS.contains(&self.aggregate_field_name.as_str()) {
            return Err(format!(
                "{who}: unknown aggregateFieldName '{}'; accepted: {}",
                self.aggregate_field_name,
                AGGREGATE_FIELDS.join(", ")
            ));
        }
        if !self.limit.is_finite() {
            return Err(format!("{who}: limit must be a finite number"));
        }
        if self.window_minutes == 0 {
            return Err(format!("{who}: windowMinutes must be at least 1"));
        }
        Ok(())
    }

    /// The rule's window in milliseconds.
    pub fn window_millis(&self) -> i64 {
        i64::from(self.window_minutes) * 60_000
    }

    /// The earliest event time inside the window that ends at `event_time` (inclusive).
    pub fn window_start_for(&self, event_time: i64) -> i64 {
        event_time.saturating_sub(self.window_millis())
    }

    /// Whether `value` breaks the limit: `value <operator> limit`.
    pub fn apply(&self, value: f64) -> bool {
        match self.limit_operator_type {
            LimitOperatorType::Equal => value == self.limit,
            LimitOperatorType::NotEqual => value != self.limit,
            LimitOperatorType::Greater => value > self.limit,
            LimitOperatorType::Less => value < self.limit,
            LimitOperatorType::GreaterEqual => value >= self.limit,
            LimitOperatorType::LessEqual => value <= self.limit,
        }
    }

    /// What a transaction contributes to the aggregate: its amount, or 1 for counts.
    pub fn value_of(&self, tx: &Transaction) -> f64 {
        match self.aggregate_field_name.as_str() {
            "paymentAmount" => tx.payment_amount,
            _ => 1.0,
        }
    }

    /// The aggregate of the rule's field over `txs` (`None` when there are none).
    pub fn aggregate<'a>(&self, txs: impl IntoIterator<Item = &'a Transaction>) -> Option<f64> {
        let mut n = 0u64;
        let mut acc = 0.0f64;
        for tx in txs {
            let v = self.value_of(tx);
            acc = match (n, self.aggregator_function_type) {
                (0, _) => v,
                (_, AggregatorFunctionType::Sum | AggregatorFunctionType::Avg) => acc + v,
                (_, AggregatorFunctionType::Min) => acc.min(v),
                (_, AggregatorFunctionType::Max) => acc.max(v),
            };
            n += 1;
        }
        match (n, self.aggregator_function_type) {
            (0, _) => None,
            (_, AggregatorFunctionType::Avg) => Some(acc / n as f64),
            _ => Some(acc),
        }
    }

    /// Whether the aggregate field counts and forgets the window after an alert.
    pub fn resets_after_alert(&self) -> bool {
        self.aggregate_field_name == COUNT_WITH_RESET
    }

    /// The key of `tx` for this rule: `{payeeId=7;beneficiaryId=3}` (the demo's format).
    pub fn key_of(&self, tx: &Transaction) -> String {
        let mut key = String::from("{");
        for (i, name) in self.grouping_key_names.iter().enumerate() {
            if i > 0 {
                key.push(';');
            }
            key.push_str(name);
            key.push('=');
            key.push_str(&field_as_string(tx, name));
        }
        key.push('}');
        key
    }
}

/// A field of a transaction as text, by its rule name (unknown names give `?`; rules
/// are validated before they are used, so that does not happen in a job).
pub fn field_as_string(tx: &Transaction, name: &str) -> String {
    match name {
        "transactionId" => tx.transaction_id.to_string(),
        "payeeId" => tx.payee_id.to_string(),
        "beneficiaryId" => tx.beneficiary_id.to_string(),
        "paymentType" => tx.payment_type.to_string(),
        "paymentAmount" => tx.payment_amount.to_string(),
        _ => "?".to_string(),
    }
}

fn operator_symbol(op: LimitOperatorType) -> &'static str {
    match op {
        LimitOperatorType::Equal => "==",
        LimitOperatorType::NotEqual => "!=",
        LimitOperatorType::Greater => ">",
        LimitOperatorType::Less => "<",
        LimitOperatorType::GreaterEqual => ">=",
        LimitOperatorType::LessEqual => "<=",
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.rule_state {
            RuleState::Delete => write!(f, "rule {} DELETE", self.rule_id),
            RuleState::Control => match self.control_type {
                Some(c) => write!(f, "rule {} CONTROL {}", self.rule_id, names_of(CONTROLS, c)),
                None => write!(f, "rule {} CONTROL", self.rule_id),
            },
            state => write!(
                f,
                "rule {} {}: {}({}) by {{{}}} {} {} over {} min",
                self.rule_id,
                if state == RuleState::Active {
                    "ACTIVE"
                } else {
                    "PAUSE"
                },
                names_of(AGGREGATORS, self.aggregator_function_type),
                self.aggregate_field_name,
                self.grouping_key_names.join(";"),
                operator_symbol(self.limit_operator_type),
                self.limit,
                self.window_minutes
            ),
        }
    }
}

fn names_of<T: PartialEq + Copy>(table: &[(&'static str, T)], v: T) -> &'static str {
    table.iter().find(|(_, x)| *x == v).map_or("?", |(n, _)| *n)
}

/// A transaction on its way to the evaluation of one rule, with the rule's key (the
/// demo's `Keyed<Transaction, String, Integer>`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Keyed {
    pub wrapped: Transaction,
    pub key: String,
    pub rule_id: u32,
}

/// A rule fired: the aggregate over the window ending at `triggering_event` broke the
/// limit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub rule_id: u32,
    pub rule_payload: Rule,
    pub key: String,
    pub triggering_event: Transaction,
    pub triggering_value: f64,
}

impl fmt::Display for Alert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.rule_payload;
        write!(
            f,
            "ALERT rule {} {}: {}({}) = {} {} {} over {} min; triggered by {}",
            self.rule_id,
            self.key,
            names_of(AGGREGATORS, r.aggregator_function_type),
            r.aggregate_field_name,
            round2(self.triggering_value),
            operator_symbol(r.limit_operator_type),
            r.limit,
            r.window_minutes,
            self.triggering_event
        )
    }
}

/// Rounds to cents for display, so sums print as `523.5`, not `523.4999999999999`.
fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// A rule that could not be used, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedRule {
    /// The rule as it was received.
    pub payload: String,
    /// What is wrong and what is accepted.
    pub error: String,
}

impl fmt::Display for RejectedRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "REJECTED rule: {} (input: {})", self.error, self.payload)
    }
}

//! The demo's two functions and the rule parser: `DynamicKeyFunction` fans every
//! transaction out to the keys of the active rules, `DynamicAlertFunction` keeps a window
//! of transactions per key and evaluates the rules on each new one.
//!
//! Rules live in broadcast state (`MapStateDescriptor<u32, Rule>`), so every parallel
//! instance of both functions holds all of them, and a rule change takes effect for the
//! next transaction each instance sees.
//!
//! Rules known when the job is built (the built-in ones, or the `rules` file) are given to
//! the functions as *initial rules* rather than sent through the rule stream: a rule
//! stream races with the transaction stream, so the first transactions would otherwise be
//! evaluated against no rules, differently on every run. Broadcast state then holds what
//! the rule stream changed: updates, and deletions of initial rules as `DELETE` entries.

use crate::functions::{
    BroadcastContext, BroadcastProcessFunction, Collector, Context, KeyedBroadcastContext,
    KeyedBroadcastProcessFunction, KeyedContext, ProcessFunction,
};
use crate::jobs::fraud::model::{
    Alert, ControlType, Keyed, RejectedRule, Rule, RuleState, Transaction,
};
use crate::runtime::context::RuntimeContext;
use crate::runtime::output::OutputTag;
use crate::state::MapStateDescriptor;
use crate::state::broadcast::BroadcastState;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The rules, in broadcast state, by rule id.
pub const RULES: MapStateDescriptor<u32, Rule> = MapStateDescriptor::new("rules");

/// Per key: the transactions of the widest rule window, by event time.
pub const WINDOW_STATE: MapStateDescriptor<i64, Vec<Transaction>> =
    MapStateDescriptor::new("window-state");

/// Where the alert function reports every rule change it applied (and the rules it
/// exports on `EXPORT_RULES_CURRENT`), once per job (from its first instance).
pub fn current_rules_tag() -> OutputTag<Rule> {
    OutputTag::new("current-rules")
}

/// Where rules that fail to parse or validate go, with the reason.
pub fn rejected_rules_tag() -> OutputTag<RejectedRule> {
    OutputTag::new("rejected-rules")
}

/// Rules known when the job is built, applied in order (later lines update or delete
/// earlier ones), by rule id.
#[derive(Clone, Debug, Default)]
pub struct InitialRules(Arc<BTreeMap<u32, Rule>>);

impl InitialRules {
    /// Folds `rules` as a rule stream would apply them; rules that fail validation are
    /// skipped (the job builder rejects them before, with the reason).
    pub fn new(rules: &[Rule]) -> Self {
        let mut map = BTreeMap::new();
        for rule in rules {
            if let Err(e) = rule.validate() {
                tracing::warn!(error = %e, "initial rule skipped");
                continue;
            }
            match (rule.rule_state, rule.control_type) {
                (RuleState::Active | RuleState::Pause, _) => {
                    map.insert(rule.rule_id, rule.clone());
                }
                (RuleState::Delete, _) => {
                    map.remove(&rule.rule_id);
                }
                (RuleState::Control, Some(ControlType::DeleteRulesAll)) => map.clear(),
                (RuleState::Control, _) => {}
            }
        }
        InitialRules(Arc::new(map))
    }

    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.0.values()
    }

    /// The rule in force for `id`: broadcast state overrides the initial rules, and a
    /// `DELETE` entry there hides an initial rule.
    fn effective<'a>(&'a self, id: u32, state: Option<&'a Rule>) -> Option<&'a Rule> {
        state
            .or_else(|| self.0.get(&id))
            .filter(|r| matches!(r.rule_state, RuleState::Active | RuleState::Pause))
    }

    /// Every rule in force, by id.
    fn all_effective<'a>(
        &'a self,
        state: impl Iterator<Item = (&'a u32, &'a Rule)>,
    ) -> Vec<&'a Rule> {
        if self.0.is_empty() {
            return state.map(|(_, r)| r).filter(|r| is_in_force(r)).collect();
        }
        let mut merged: BTreeMap<u32, &Rule> = self.0.iter().map(|(k, v)| (*k, v)).collect();
        for (k, v) in state {
            merged.insert(*k, v);
        }
        merged.into_values().filter(|r| is_in_force(r)).collect()
    }

    /// Applies a rule record to broadcast state (the demo's `handleRuleBroadcast` and
    /// `DELETE_RULES_ALL`); other control commands are left to the caller.
    fn apply(&self, rule: &Rule, state: &mut BroadcastState<'_, u32, Rule>) {
        match rule.rule_state {
            RuleState::Active | RuleState::Pause => state.put(rule.rule_id, rule.clone()),
            RuleState::Delete => {
                if self.0.contains_key(&rule.rule_id) {
                    state.put(rule.rule_id, rule.clone());
                } else {
                    state.remove(&rule.rule_id);
                }
            }
            RuleState::Control => {
                if rule.control_type == Some(ControlType::DeleteRulesAll) {
                    state.clear();
                    for id in self.0.keys() {
                        state.put(*id, deleted(*id));
                    }
                }
            }
        }
    }
}

fn is_in_force(rule: &Rule) -> bool {
    matches!(rule.rule_state, RuleState::Active | RuleState::Pause)
}

fn deleted(rule_id: u32) -> Rule {
    Rule {
        rule_id,
        rule_state: RuleState::Delete,
        grouping_key_names: Vec::new(),
        aggregate_field_name: String::new(),
        aggregator_function_type: Default::default(),
        limit_operator_type: Default::default(),
        limit: 0.0,
        window_minutes: 0,
        control_type: None,
    }
}

/// Parses rule lines (JSON); bad ones go to [`rejected_rules_tag`] with the reason.
#[derive(Clone, Default)]
pub struct RuleParser;

impl ProcessFunction<String, Rule> for RuleParser {
    fn process_element(
        &mut self,
        line: String,
        ctx: &mut Context<'_>,
        out: &mut Collector<'_, Rule>,
    ) {
        if line.trim().is_empty() {
            return;
        }
        match Rule::parse(&line) {
            Ok(rule) => out.collect(rule),
            Err(error) => {
                tracing::warn!(%error, "rule rejected");
                ctx.output(
                    &rejected_rules_tag(),
                    RejectedRule {
                        payload: line,
                        error,
                    },
                );
            }
        }
    }
}

/// Emits a [`Keyed`] copy of each transaction for every active rule, keyed by the rule's
/// grouping fields (the demo's `DynamicKeyFunction`).
#[derive(Clone, Default)]
pub struct DynamicKeyFunction {
    pub initial: InitialRules,
}

impl BroadcastProcessFunction<Transaction, Rule, Keyed> for DynamicKeyFunction {
    fn process_element(
        &mut self,
        tx: Transaction,
        ctx: &mut Context<'_>,
        out: &mut Collector<'_, Keyed>,
    ) {
        let state = ctx.broadcast_state(&RULES);
        for rule in self.initial.all_effective(state.iter()) {
            if rule.rule_state == RuleState::Active {
                out.collect(Keyed {
                    key: rule.key_of(&tx),
                    rule_id: rule.rule_id,
                    wrapped: tx.clone(),
                });
            }
        }
    }

    fn process_broadcast_element(
        &mut self,
        rule: Rule,
        ctx: &mut BroadcastContext<'_>,
        _: &mut Collector<'_, Keyed>,
    ) {
        self.initial.apply(&rule, &mut ctx.broadcast_state(&RULES));
    }
}

/// Keeps the transactions of each key and evaluates the key's rule on every new one (the
/// demo's `DynamicAlertFunction`).
#[derive(Clone, Default)]
pub struct DynamicAlertFunction {
    pub initial: InitialRules,
    /// Only the first instance reports rule changes, so each is reported once.
    report_rules: bool,
}

impl DynamicAlertFunction {
    pub fn new(initial: InitialRules) -> Self {
        DynamicAlertFunction {
            initial,
            report_rules: false,
        }
    }
}

impl KeyedBroadcastProcessFunction<String, Keyed, Rule, Alert> for DynamicAlertFunction {
    fn open(&mut self, ctx: &RuntimeContext<'_>) {
        self.report_rules = ctx.subtask_index() == 0;
    }

    fn process_element(
        &mut self,
        value: Keyed,
        ctx: &mut KeyedContext<'_, String>,
        out: &mut Collector<'_, Alert>,
    ) {
        let Keyed {
            wrapped: tx,
            key,
            rule_id,
        } = value;
        let event_time = tx.event_time;
        let window = ctx.map_state(&WINDOW_STATE);
        // Every rule with this key sends the transaction; keep it once.
        let mut at_time = window.get(&event_time).unwrap_or_default();
        if !at_time
            .iter()
            .any(|t| t.transaction_id == tx.transaction_id)
        {
            at_time.push(tx.clone());
            window.put(event_time, at_time);
        }
        // Cleanup at the second, as the demo does, so one timer serves many transactions;
        // also while the rule is paused, so that state stays bounded.
        ctx.timer_service()
            .register_event_time_timer(event_time.div_euclid(1000) * 1000);

        let rule = {
            let state = ctx.broadcast_state(&RULES);
            self.initial
                .effective(rule_id, state.get(&rule_id))
                .cloned()
        };
        let Some(rule) = rule else {
            // The rule was deleted between the key function and here; nothing to do.
            tracing::debug!(rule_id, "no rule for a keyed transaction");
            return;
        };
        if rule.rule_state != RuleState::Active {
            return;
        }
        let start = rule.window_start_for(event_time);
        let mut in_window: Vec<(i64, Vec<Transaction>)> = window
            .entries()
            .into_iter()
            .filter(|(t, _)| *t >= start && *t <= event_time)
            .collect();
        // Aggregate in event-time order, so float sums are the same on every run.
        in_window.sort_by_key(|(t, _)| *t);
        let Some(value) = rule.aggregate(in_window.iter().flat_map(|(_, txs)| txs.iter())) else {
            return;
        };
        if rule.apply(value) {
            if rule.resets_after_alert() {
                window.clear();
            }
            out.collect(Alert {
                rule_id,
                rule_payload: rule,
                key,
                triggering_event: tx,
                triggering_value: value,
            });
        }
    }

    fn process_broadcast_element(
        &mut self,
        rule: Rule,
        ctx: &mut KeyedBroadcastContext<'_, String>,
        _: &mut Collector<'_, Alert>,
    ) {
        self.initial.apply(&rule, &mut ctx.broadcast_state(&RULES));
        match rule
            .control_type
            .filter(|_| rule.rule_state == RuleState::Control)
        {
            Some(ControlType::ClearStateAll) => {
                ctx.apply_to_keyed_state(WINDOW_STATE.name(), |_, state| {
                    state.map_state(&WINDOW_STATE).clear()
                });
            }
            Some(ControlType::ExportRulesCurrent) if self.report_rules => {
                let rules: Vec<Rule> = {
                    let state = ctx.broadcast_state(&RULES);
                    self.initial
                        .all_effective(state.iter())
                        .into_iter()
                        .cloned()
                        .collect()
                };
                for r in rules {
                    ctx.output(&current_rules_tag(), r);
                }
                return;
            }
            _ => {}
        }
        if self.report_rules {
            ctx.output(&current_rules_tag(), rule);
        }
    }

    /// Forgets transactions older than the widest window of the rules in force: no rule
    /// can look at them any more. Without any rule, everything before `timestamp` goes.
    fn on_timer(
        &mut self,
        timestamp: i64,
        ctx: &mut KeyedContext<'_, String>,
        _: &mut Collector<'_, Alert>,
    ) {
        let widest = {
            let state = ctx.broadcast_state(&RULES);
            self.initial
                .all_effective(state.iter())
                .iter()
                .map(|r| r.window_millis())
                .max()
                .unwrap_or(0)
        };
        let threshold = timestamp.saturating_sub(widest);
        let window = ctx.map_state(&WINDOW_STATE);
        for t in window.keys() {
            if t < threshold {
                window.remove(&t);
            }
        }
    }
}

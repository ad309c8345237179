//! Conformance: the DataStream operators (map, filter, flat_map and their rich variants,
//! process functions, rolling aggregations, union, connect, keyed connect, broadcast
//! state), operator settings (parallelism, max parallelism, names, uids, chaining) and the
//! batch runtime mode. Every result is exact and the same at parallelism 1, 2 and 4.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use std::time::Duration;
use strom::prelude::*;

type Row = (String, i64, i64);

fn row(k: &str, a: i64, b: i64) -> Row {
    (k.to_string(), a, b)
}

#[test]
fn map_filter_flat_map_keep_timestamps() {
    for p in PARALLELISMS {
        let env = env(p);
        let out = env
            .from_timed_collection(vec![(10, 1), (20, 2), (30, 3), (40, 4), (50, 5)])
            .map(|x: i32| x * 10)
            .filter(|x: &i32| *x != 30)
            .flat_map(|x: i32| vec![x, x + 1])
            .collect();
        env.execute("map filter flat_map").unwrap();
        assert_eq!(
            sorted(out.records()),
            vec![
                (10, Some(10)),
                (11, Some(10)),
                (20, Some(20)),
                (21, Some(20)),
                (40, Some(40)),
                (41, Some(40)),
                (50, Some(50)),
                (51, Some(50)),
            ],
            "p={p}"
        );
    }
}

/// One function type for the three rich kinds, recording its lifecycle.
#[derive(Clone)]
struct Traced {
    op: &'static str,
    log: Log<(&'static str, &'static str, usize, usize)>,
    subtask: usize,
    seen: usize,
}

impl Traced {
    fn new(op: &'static str, log: &Log<(&'static str, &'static str, usize, usize)>) -> Self {
        Traced {
            op,
            log: log.clone(),
            subtask: usize::MAX,
            seen: 0,
        }
    }
    fn opened(&mut self, ctx: &RuntimeContext<'_>) {
        self.subtask = ctx.subtask_index();
        self.log
            .push((self.op, "open", ctx.subtask_index(), ctx.parallelism()));
    }
    fn closed(&mut self) {
        self.log.push((self.op, "close", self.subtask, self.seen));
    }
}

impl RichMapFunction<i32, i32> for Traced {
    fn open(&mut self, ctx: &RuntimeContext<'_>) {
        self.opened(ctx)
    }
    fn map(&mut self, v: i32) -> i32 {
        self.seen += 1;
        v + 100
    }
    fn close(&mut self) {
        self.closed()
    }
}

impl RichFilterFunction<i32> for Traced {
    fn open(&mut self, ctx: &RuntimeContext<'_>) {
        self.opened(ctx)
    }
    fn filter(&mut self, v: &i32) -> bool {
        self.seen += 1;
        v % 2 == 0
    }
    fn close(&mut self) {
        self.closed()
    }
}

impl RichFlatMapFunction<i32, String> for Traced {
    fn open(&mut self, ctx: &RuntimeContext<'_>) {
        self.opened(ctx)
    }
    fn flat_map(&mut self, v: i32, out: &mut Collector<'_, String>) {
        self.seen += 1;
        out.collect(format!("{v}"));
        out.collect(format!("{v}!"));
    }
    fn close(&mut self) {
        self.closed()
    }
}

#[test]
fn rich_functions_open_and_close_once_per_subtask() {
    for p in PARALLELISMS {
        let log = Log::default();
        let env = env(p);
        let out = env
            .from_collection((1..=12).collect::<Vec<i32>>())
            .map_rich(Traced::new("map", &log))
            .filter_rich(Traced::new("filter", &log))
            .flat_map_rich(Traced::new("flat_map", &log))
            .collect();
        env.execute("rich").unwrap();
        let mut expected: Vec<String> = (101..=112)
            .filter(|v| v % 2 == 0)
            .flat_map(|v| [format!("{v}"), format!("{v}!")])
            .collect();
        expected.sort();
        assert_eq!(out.sorted(), expected, "p={p}");

        let events = log.snapshot();
        for (op, records) in [("map", 12), ("filter", 12), ("flat_map", 6)] {
            let opens: Vec<_> = sorted(
                events
                    .iter()
                    .filter(|e| e.0 == op && e.1 == "open")
                    .map(|e| (e.2, e.3))
                    .collect(),
            );
            assert_eq!(
                opens,
                (0..p).map(|s| (s, p)).collect::<Vec<_>>(),
                "{op} opens, p={p}"
            );
            let closes: Vec<_> = sorted(
                events
                    .iter()
                    .filter(|e| e.0 == op && e.1 == "close")
                    .map(|e| e.2)
                    .collect(),
            );
            assert_eq!(closes, (0..p).collect::<Vec<_>>(), "{op} closes, p={p}");
            let seen: usize = events
                .iter()
                .filter(|e| e.0 == op && e.1 == "close")
                .map(|e| e.3)
                .sum();
            assert_eq!(seen, records, "{op} records seen before close, p={p}");
        }
    }
}

const SEEN: OperatorStateDescriptor<i32> = OperatorStateDescriptor::list("seen");

/// Drops duplicates using operator list state (duplicates are routed to the same
/// instance by a custom partitioner), sends negatives and duplicates to two side outputs
/// of different types, and re-timestamps what it keeps.
#[derive(Clone)]
struct Dedup {
    negative: OutputTag<i32>,
    duplicate: OutputTag<String>,
}

impl ProcessFunction<i32, i32> for Dedup {
    fn process_element(&mut self, v: i32, ctx: &mut Context<'_>, out: &mut Collector<'_, i32>) {
        let ts = ctx.timestamp().expect("timed input");
        if v < 0 {
            ctx.output(&self.negative, v);
            return;
        }
        let seen = ctx.operator_state().list_state(&SEEN);
        if seen.get().contains(&v) {
            ctx.output(&self.duplicate, format!("{v}@{ts}"));
            return;
        }
        seen.add(v);
        out.collect_with_timestamp(v * 10, ts + 1);
    }
}

#[test]
fn process_function_side_outputs_timestamps_and_operator_state() {
    for p in PARALLELISMS {
        let env = env(p);
        let f = Dedup {
            negative: OutputTag::new("negative"),
            duplicate: OutputTag::new("duplicate"),
        };
        let processed = env
            .from_timed_collection(vec![
                (10, 3),
                (20, 1),
                (30, -5),
                (40, 3),
                (50, 7),
                (60, 1),
                (70, -2),
                (80, 7),
                (90, 7),
            ])
            .partition_custom(
                |v: &i32, n: usize| v.rem_euclid(n as i32) as usize,
                |v: &i32| *v,
            )
            .process(f.clone());
        let main = processed.collect();
        let negative = processed.side_output(&f.negative).collect();
        let duplicate = processed.side_output(&f.duplicate).collect();
        let result = env.execute("process").unwrap();
        assert_eq!(
            sorted(main.records()),
            vec![(10, Some(21)), (30, Some(11)), (70, Some(51))],
            "p={p}"
        );
        assert_eq!(
            sorted(negative.records()),
            vec![(-5, Some(30)), (-2, Some(70))],
            "p={p}"
        );
        assert_eq!(
            sorted(duplicate.records()),
            vec![
                ("1@60".to_string(), Some(60)),
                ("3@40".to_string(), Some(40)),
                ("7@80".to_string(), Some(80)),
                ("7@90".to_string(), Some(90)),
            ],
            "p={p}"
        );
        let t = totals(&result.metrics, "Process");
        assert_eq!(
            (t.records_in, t.records_out, t.side_records_out),
            (9, 3, 6),
            "p={p}"
        );
    }
}

#[test]
fn keyed_reduce_emits_every_intermediate_result_in_order() {
    for p in PARALLELISMS {
        let env = env(p);
        let out = env
            .from_collection(vec![
                row("a", 1, 0),
                row("b", 10, 0),
                row("a", 2, 0),
                row("c", 5, 0),
                row("a", 3, 0),
                row("b", 20, 0),
            ])
            .key_by(|r: &Row| r.0.clone())
            .reduce(|acc: Row, r: Row| (acc.0, acc.1 + r.1, acc.2.max(r.1)))
            .collect();
        env.execute("reduce").unwrap();
        let got = per_key(out.values().into_iter().map(|r| (r.0.clone(), (r.1, r.2))));
        assert_eq!(got["a"], vec![(1, 0), (3, 2), (6, 3)], "p={p}");
        assert_eq!(got["b"], vec![(10, 0), (30, 20)], "p={p}");
        assert_eq!(got["c"], vec![(5, 0)], "p={p}");
    }
}

#[test]
fn rolling_aggregations_follow_flink_field_semantics() {
    let input = vec![
        row("a", 5, 100),
        row("b", 2, 10),
        row("a", 3, 200),
        row("a", 3, 300),
        row("b", 2, 20),
        row("a", 7, 400),
        row("a", 1, 500),
    ];
    for p in PARALLELISMS {
        let env = env(p);
        let src = env.from_collection(input.clone());
        let keyed = src.key_by(|r: &Row| r.0.clone());
        let sum = keyed.sum(|r: &mut Row| &mut r.1).collect();
        let min = keyed.min(|r: &mut Row| &mut r.1).collect();
        let max = keyed.max(|r: &mut Row| &mut r.1).collect();
        let min_by = keyed.min_by(|r: &mut Row| &mut r.1).collect();
        let max_by = keyed.max_by(|r: &mut Row| &mut r.1).collect();
        env.execute("rolling").unwrap();
        let by_key = |h: &CollectHandle<Row>| {
            per_key(h.values().into_iter().map(|r| (r.0.clone(), (r.1, r.2))))
        };

        // sum/min/max: the aggregated field; every other field from the key's first record.
        let s = by_key(&sum);
        assert_eq!(
            s["a"],
            vec![(5, 100), (8, 100), (11, 100), (18, 100), (19, 100)],
            "sum p={p}"
        );
        assert_eq!(s["b"], vec![(2, 10), (4, 10)], "sum p={p}");
        let m = by_key(&min);
        assert_eq!(
            m["a"],
            vec![(5, 100), (3, 100), (3, 100), (3, 100), (1, 100)],
            "min p={p}"
        );
        assert_eq!(m["b"], vec![(2, 10), (2, 10)], "min p={p}");
        let m = by_key(&max);
        assert_eq!(
            m["a"],
            vec![(5, 100), (5, 100), (5, 100), (7, 100), (7, 100)],
            "max p={p}"
        );
        // min_by/max_by: the whole record holding the extreme, the earlier one on ties.
        let m = by_key(&min_by);
        assert_eq!(
            m["a"],
            vec![(5, 100), (3, 200), (3, 200), (3, 200), (1, 500)],
            "min_by p={p}"
        );
        assert_eq!(m["b"], vec![(2, 10), (2, 10)], "min_by p={p}");
        let m = by_key(&max_by);
        assert_eq!(
            m["a"],
            vec![(5, 100), (5, 100), (5, 100), (7, 400), (7, 400)],
            "max_by p={p}"
        );
        assert_eq!(m["b"], vec![(2, 10), (2, 10)], "max_by p={p}");
    }
}

#[test]
fn union_of_three_streams() {
    for p in PARALLELISMS {
        let env = env(p);
        let a = env.from_collection(vec![1, 2, 3]);
        let b = env.from_collection(vec![10, 20]);
        let c = env.from_sequence(100, 103).map(|x: u64| x as i32);
        let out = a.union(&b).union(&c).map(|x: i32| x * 2).collect();
        env.execute("union").unwrap();
        assert_eq!(
            out.sorted(),
            vec![2, 4, 6, 20, 40, 200, 202, 204, 206],
            "p={p}"
        );
    }
}

#[derive(Clone)]
struct Describe {
    empty: OutputTag<u8>,
}

impl CoProcessFunction<i32, String, String> for Describe {
    fn process_element1(&mut self, v: i32, ctx: &mut Context<'_>, out: &mut Collector<'_, String>) {
        out.collect(format!("int {v} @{}", ctx.timestamp().unwrap()));
    }
    fn process_element2(
        &mut self,
        v: String,
        ctx: &mut Context<'_>,
        out: &mut Collector<'_, String>,
    ) {
        if v.is_empty() {
            ctx.output(&self.empty, 1);
        } else {
            out.collect_with_timestamp(format!("str {v} @{}", ctx.timestamp().unwrap()), 0);
        }
    }
}

#[test]
fn connect_with_co_map_co_flat_map_and_co_process() {
    for p in PARALLELISMS {
        let env = env(p);
        let ints = env.from_timed_collection(vec![(1, 1), (2, 2), (3, 3)]);
        let strs = env.from_timed_collection(vec![
            (5, "x".to_string()),
            (6, String::new()),
            (7, "yy".to_string()),
        ]);
        let co_map = ints
            .connect(&strs)
            .map(|i: i32| format!("i{i}"), |s: String| format!("s{s}"))
            .collect();
        let co_flat = ints
            .connect(&strs)
            .flat_map(
                |i: i32| vec![i; i as usize],
                |s: String| vec![s.len() as i32 * 100],
            )
            .collect();
        let f = Describe {
            empty: OutputTag::new("empty"),
        };
        let processed = ints.connect(&strs).process(f.clone());
        let co_process = processed.collect();
        let empties = processed.side_output(&f.empty).collect();
        env.execute("connect").unwrap();
        assert_eq!(
            co_map.sorted(),
            vec!["i1", "i2", "i3", "s", "sx", "syy"],
            "p={p}"
        );
        assert_eq!(
            co_flat.sorted(),
            vec![0, 1, 2, 2, 3, 3, 3, 100, 200],
            "p={p}"
        );
        assert_eq!(
            sorted(co_process.records()),
            vec![
                ("int 1 @1".to_string(), Some(1)),
                ("int 2 @2".to_string(), Some(2)),
                ("int 3 @3".to_string(), Some(3)),
                ("str x @5".to_string(), Some(0)),
                ("str yy @7".to_string(), Some(0)),
            ],
            "p={p}"
        );
        assert_eq!(empties.records(), vec![(1u8, Some(6))], "p={p}");
    }
}

type Order = (String, u32);
type Payment = (String, i64);

const PENDING_ORDER: ValueStateDescriptor<(u32, i64)> = ValueStateDescriptor::new("pending-order");
const PENDING_PAYMENT: ValueStateDescriptor<(i64, i64)> =
    ValueStateDescriptor::new("pending-payment");

/// Matches orders with payments of the same key in either order; what stays unmatched for
/// 1 s of event time is reported by a timer. State and timers are shared by both inputs.
#[derive(Clone)]
struct MatchPayments;

impl KeyedCoProcessFunction<String, Order, Payment, String> for MatchPayments {
    fn process_element1(
        &mut self,
        o: Order,
        ctx: &mut KeyedContext<'_, String>,
        out: &mut Collector<'_, String>,
    ) {
        let ts = ctx.timestamp().unwrap();
        let payment = ctx.value_state(&PENDING_PAYMENT);
        match payment.value() {
            Some((amount, pts)) => {
                payment.clear();
                ctx.timer_service().delete_event_time_timer(pts + 1_000);
                out.collect(format!(
                    "{}: order {} paid {amount}",
                    ctx.current_key(),
                    o.1
                ));
            }
            None => {
                ctx.value_state(&PENDING_ORDER).update((o.1, ts));
                ctx.timer_service().register_event_time_timer(ts + 1_000);
            }
        }
    }
    fn process_element2(
        &mut self,
        p: Payment,
        ctx: &mut KeyedContext<'_, String>,
        out: &mut Collector<'_, String>,
    ) {
        let ts = ctx.timestamp().unwrap();
        let order = ctx.value_state(&PENDING_ORDER);
        match order.value() {
            Some((id, ots)) => {
                order.clear();
                ctx.timer_service().delete_event_time_timer(ots + 1_000);
                out.collect(format!("{}: order {id} paid {}", ctx.current_key(), p.1));
            }
            None => {
                ctx.value_state(&PENDING_PAYMENT).update((p.1, ts));
                ctx.timer_service().register_event_time_timer(ts + 1_000);
            }
        }
    }
    fn on_timer(
        &mut self,
        t: i64,
        ctx: &mut KeyedContext<'_, String>,
        out: &mut Collector<'_, String>,
    ) {
        assert_eq!(ctx.time_domain(), Some(TimeDomain::EventTime));
        assert_eq!(ctx.timestamp(), Some(t));
        let key = ctx.current_key();
        if let Some((id, _)) = ctx.value_state(&PENDING_ORDER).value() {
            out.collect(format!("{key}: order {id} unpaid at {t}"));
        }
        if let Some((amount, _)) = ctx.value_state(&PENDING_PAYMENT).value() {
            out.collect(format!("{key}: payment {amount} unmatched at {t}"));
        }
        ctx.value_state(&PENDING_ORDER).clear();
        ctx.value_state(&PENDING_PAYMENT).clear();
    }
}

#[test]
fn keyed_connect_shares_state_and_timers_between_inputs() {
    for p in PARALLELISMS {
        let env = per_record_env(p);
        let orders = env.from_source(
            CollectionSource::timed(vec![
                (100, ("a".to_string(), 1)),
                (200, ("b".to_string(), 2)),
                (300, ("c".to_string(), 3)),
                (5_000, ("d".to_string(), 4)),
            ]),
            WatermarkStrategy::for_monotonous_timestamps(),
            "orders",
        );
        let payments = env.from_source(
            CollectionSource::timed(vec![
                (250, ("b".to_string(), 20)),
                (900, ("a".to_string(), 10)),
                (2_000, ("c".to_string(), 30)),
                (3_000, ("e".to_string(), 50)),
            ]),
            WatermarkStrategy::for_monotonous_timestamps(),
            "payments",
        );
        let by_api_1 = orders
            .key_by(|o: &Order| o.0.clone())
            .connect_keyed(&payments.key_by(|p: &Payment| p.0.clone()))
            .process(MatchPayments)
            .collect();
        let by_api_2 = orders
            .connect(&payments)
            .key_by(|o: &Order| o.0.clone(), |p: &Payment| p.0.clone())
            .process(MatchPayments)
            .collect();
        env.execute("keyed connect").unwrap();
        // c's payment comes after c's timer time (1300), but cannot be late: the
        // payments input holds event time below 2000 until it has arrived.
        let expected = vec![
            "a: order 1 paid 10".to_string(),
            "b: order 2 paid 20".into(),
            "c: order 3 paid 30".into(),
            "d: order 4 unpaid at 6000".into(),
            "e: payment 50 unmatched at 4000".into(),
        ];
        assert_eq!(by_api_1.sorted(), expected, "p={p}");
        assert_eq!(by_api_2.sorted(), expected, "p={p}");
    }
}

const RULES: MapStateDescriptor<String, i64> = MapStateDescriptor::new("rules");

/// Applies multipliers that arrive on the broadcast side; tags results with the subtask.
#[derive(Clone, Default)]
struct ApplyRules {
    subtask: usize,
}

impl BroadcastProcessFunction<(String, i64), (String, i64), (usize, String)> for ApplyRules {
    fn open(&mut self, ctx: &RuntimeContext<'_>) {
        self.subtask = ctx.subtask_index();
    }
    fn process_element(
        &mut self,
        v: (String, i64),
        ctx: &mut Context<'_>,
        out: &mut Collector<'_, (usize, String)>,
    ) {
        let rules = ctx.broadcast_state(&RULES);
        let text = match rules.get(&v.0) {
            Some(m) => format!("{} -> {}", v.0, v.1 * m),
            None => format!("{} has no rule ({} rules)", v.0, rules.len()),
        };
        out.collect((self.subtask, text));
    }
    fn process_broadcast_element(
        &mut self,
        r: (String, i64),
        ctx: &mut BroadcastContext<'_>,
        _: &mut Collector<'_, (usize, String)>,
    ) {
        ctx.broadcast_state(&RULES).put(r.0, r.1);
    }
}

#[test]
fn broadcast_state_reaches_every_subtask() {
    for p in PARALLELISMS {
        let env = env(p);
        let rules = env
            .from_collection(vec![("x".to_string(), 10i64), ("y".to_string(), 100)])
            .broadcast_stream();
        let (tx, data) = ChannelSource::new();
        let out = env
            .add_source(data, None, "data")
            .rebalance()
            .connect_broadcast(&rules)
            .process(ApplyRules::default())
            .name("apply rules")
            .collect();
        let job = env.execute_async("broadcast").unwrap();
        // Flink does not order the two inputs; the test sends data once every instance
        // holds both rules.
        assert!(job.wait_for(
            Duration::from_secs(5),
            |m| totals(m, "apply rules").records_in_second == 2 * p as u64
        ));
        let data: Vec<(String, i64)> = (0..4 * p as i64)
            .map(|i| (["x", "y", "z"][i as usize % 3].to_string(), i))
            .collect();
        for d in &data {
            tx.send(Feed::Record(d.clone())).unwrap();
        }
        drop(tx);
        job.join().unwrap();
        let results = out.values();
        let subtasks: std::collections::BTreeSet<usize> = results.iter().map(|r| r.0).collect();
        assert_eq!(
            subtasks,
            (0..p).collect(),
            "every instance processed data, p={p}"
        );
        let expected: Vec<String> = data
            .iter()
            .map(|(k, v)| match k.as_str() {
                "x" => format!("x -> {}", v * 10),
                "y" => format!("y -> {}", v * 100),
                _ => "z has no rule (2 rules)".to_string(),
            })
            .collect();
        assert_eq!(
            sorted(results.into_iter().map(|r| r.1).collect()),
            sorted(expected),
            "p={p}"
        );
    }
}

const THRESHOLD: MapStateDescriptor<String, i64> = MapStateDescriptor::new("threshold");
const SUM: ValueStateDescriptor<i64> = ValueStateDescriptor::new("sum");

/// Sums per key; alerts above a broadcast threshold; broadcast commands read and change
/// the keyed state of every key (`apply_to_keyed_state`).
#[derive(Clone)]
struct Sums;

impl KeyedBroadcastProcessFunction<String, (String, i64), (String, i64), (String, i64)> for Sums {
    fn process_element(
        &mut self,
        v: (String, i64),
        ctx: &mut KeyedContext<'_, String>,
        out: &mut Collector<'_, (String, i64)>,
    ) {
        let sum = ctx.value_state(&SUM);
        sum.update(sum.value().unwrap_or(0) + v.1);
        let limit = ctx
            .broadcast_state(&THRESHOLD)
            .get(&"limit".to_string())
            .copied();
        if limit.is_some_and(|l| v.1 > l) {
            out.collect((format!("alert {}", v.0), v.1));
        }
    }
    fn process_broadcast_element(
        &mut self,
        cmd: (String, i64),
        ctx: &mut KeyedBroadcastContext<'_, String>,
        out: &mut Collector<'_, (String, i64)>,
    ) {
        match cmd.0.as_str() {
            "limit" => ctx.broadcast_state(&THRESHOLD).put(cmd.0, cmd.1),
            "report" => ctx.apply_to_keyed_state("sum", |k, state| {
                out.collect((
                    format!("report{} {k}", cmd.1),
                    state.value_state(&SUM).value().unwrap_or(-1),
                ));
            }),
            "scale" => ctx.apply_to_keyed_state("sum", |_, state| {
                let s = state.value_state(&SUM);
                s.update(s.value().unwrap_or(0) * cmd.1);
            }),
            other => panic!("unknown command {other}"),
        }
    }
}

#[test]
fn keyed_broadcast_process_reads_and_updates_all_keys() {
    for p in PARALLELISMS {
        let env = env(p);
        let (data_tx, data) = ChannelSource::new();
        let (cmd_tx, commands) = ChannelSource::new();
        let out = env
            .add_source(data, None, "data")
            .key_by(|v: &(String, i64)| v.0.clone())
            .connect_broadcast(
                &env.add_source(commands, None, "commands")
                    .broadcast_stream(),
            )
            .process(Sums)
            .name("sums")
            .collect();
        let job = env.execute_async("keyed broadcast").unwrap();
        let wait = |what: &str, cond: &dyn Fn(&strom::runtime::executor::JobHandle) -> bool| {
            assert!(cond(&job), "timed out waiting for {what}");
        };
        cmd_tx
            .send(Feed::Record(("limit".to_string(), 10)))
            .unwrap();
        wait("limit", &|j| {
            j.wait_for(Duration::from_secs(5), |m| {
                totals(m, "sums").records_in_second == p as u64
            })
        });
        for d in [("a", 5), ("b", 20), ("a", 7), ("c", 1), ("b", 3)] {
            data_tx.send(Feed::Record((d.0.to_string(), d.1))).unwrap();
        }
        wait("data", &|j| {
            j.wait_for(Duration::from_secs(5), |m| {
                totals(m, "sums").records_in == p as u64 + 5
            })
        });
        for c in [("report", 1), ("scale", 10), ("report", 2)] {
            cmd_tx.send(Feed::Record((c.0.to_string(), c.1))).unwrap();
        }
        drop(data_tx);
        drop(cmd_tx);
        job.join().unwrap();
        let expected: Vec<(String, i64)> = vec![
            ("alert b".into(), 20),
            ("report1 a".into(), 12),
            ("report1 b".into(), 23),
            ("report1 c".into(), 1),
            ("report2 a".into(), 120),
            ("report2 b".into(), 230),
            ("report2 c".into(), 10),
        ];
        assert_eq!(out.sorted(), expected, "p={p}");
    }
}

#[test]
fn operator_parallelism_names_and_uids_show_in_metrics() {
    for p in PARALLELISMS {
        let env = env(p);
        let out = env
            .from_collection((1..=20).collect::<Vec<i32>>())
            .map(|x: i32| x + 1)
            .set_parallelism(3)
            .name("plus one")
            .uid("plus-one")
            .filter(|x: &i32| x % 2 == 0)
            .name("evens")
            .key_by(|x: &i32| x % 3)
            .reduce(|a: i32, b: i32| a + b)
            .set_parallelism(2)
            .name("sum by rest")
            .collect();
        let result = env.execute("names").unwrap();
        assert_eq!(out.len(), 10, "p={p}");
        let plus = result.metrics.operator("plus one").unwrap();
        assert_eq!((plus.parallelism, plus.uid.as_str()), (3, "plus-one"));
        assert_eq!(
            result.metrics.operator("plus-one").unwrap().name,
            "plus one",
            "found by uid"
        );
        let t = totals(&result.metrics, "plus one");
        assert_eq!(
            (t.parallelism, t.records_in, t.records_out),
            (3, 20, 20),
            "p={p}"
        );
        let t = totals(&result.metrics, "evens");
        assert_eq!(
            (t.parallelism, t.records_in, t.records_out),
            (p, 20, 10),
            "p={p}"
        );
        let t = totals(&result.metrics, "sum by rest");
        assert_eq!(
            (t.parallelism, t.records_in, t.records_out),
            (2, 10, 10),
            "p={p}"
        );
    }
}

#[test]
fn duplicate_uid_is_rejected() {
    let env = StreamEnv::new();
    let s = env.from_collection(vec![1]).map(|x: i32| x).uid("same");
    s.filter(|_: &i32| true).uid("same").collect();
    match env.execute("dup uid") {
        Err(JobError::InvalidGraph(msg)) => {
            assert!(msg.contains("uid 'same' is used by two operators"), "{msg}")
        }
        other => panic!("expected an invalid graph, got {other:?}"),
    }
}

#[test]
fn keyed_parallelism_above_max_parallelism_is_rejected() {
    let env = StreamEnv::new();
    env.from_collection(vec![1])
        .key_by(|x: &i32| *x)
        .reduce(|a: i32, b: i32| a + b)
        .set_parallelism(8)
        .set_max_parallelism(4)
        .name("too wide")
        .collect();
    match env.execute("too wide") {
        Err(JobError::InvalidGraph(msg)) => {
            assert!(
                msg.contains("'too wide' has parallelism 8 but only 4 key groups"),
                "{msg}"
            );
        }
        other => panic!("expected an invalid graph, got {other:?}"),
    }
    // A job-wide max parallelism is the limit too.
    let env = StreamEnv::new();
    env.set_parallelism(4).set_max_parallelism(2);
    env.from_collection(vec![1])
        .key_by(|x: &i32| *x)
        .reduce(|a: i32, b: i32| a + b)
        .collect();
    assert!(matches!(
        env.execute("too wide 2"),
        Err(JobError::InvalidGraph(_))
    ));
}

fn chained_pipeline(env: &StreamEnv, variant: u8) -> CollectHandle<(i32, i32)> {
    let src = env.from_collection((1..=30).collect::<Vec<i32>>());
    let mapped = match variant {
        1 => src.map(|x: i32| x * 3).disable_chaining(),
        2 => src.map(|x: i32| x * 3).start_new_chain(),
        _ => src.map(|x: i32| x * 3),
    };
    let filtered = mapped.filter(|x: &i32| x % 2 == 1);
    let filtered = if variant == 2 {
        filtered.start_new_chain()
    } else {
        filtered
    };
    filtered
        .key_by(|x: &i32| x % 4)
        .reduce(|a: i32, b: i32| a + b)
        .map(|x: i32| (x % 4, x))
        .collect()
}

#[test]
fn chaining_settings_do_not_change_results() {
    for p in PARALLELISMS {
        let mut results = Vec::new();
        for variant in 0..4u8 {
            let env = env(p);
            if variant == 3 {
                env.disable_operator_chaining();
            }
            let out = chained_pipeline(&env, variant);
            env.execute("chaining").unwrap();
            results.push(out.sorted());
        }
        assert_eq!(results[0].len(), 15);
        for (i, r) in results.iter().enumerate() {
            assert_eq!(r, &results[0], "variant {i}, p={p}");
        }
    }
}

#[test]
fn batch_mode_emits_only_final_rolling_results() {
    for p in PARALLELISMS {
        let env = env(p);
        env.set_runtime_mode(RuntimeMode::Batch);
        let src = env.from_collection(vec![
            row("a", 1, 0),
            row("b", 5, 0),
            row("a", 2, 0),
            row("a", 3, 0),
            row("b", 1, 0),
        ]);
        let sums = src
            .key_by(|r: &Row| r.0.clone())
            .sum(|r: &mut Row| &mut r.1)
            .collect();
        let reduced = src
            .key_by(|r: &Row| r.0.clone())
            .reduce(|a: Row, b: Row| (a.0, a.1.max(b.1), a.2 + 1))
            .collect();
        env.execute("batch").unwrap();
        assert_eq!(sums.sorted(), vec![row("a", 6, 0), row("b", 6, 0)], "p={p}");
        assert_eq!(
            reduced.sorted(),
            vec![row("a", 3, 2), row("b", 5, 1)],
            "p={p}"
        );
    }
}

#[test]
fn batch_mode_has_no_late_data() {
    // Streaming: with a watermark after every record, the record at 500 comes after the
    // watermark passed its window and is dropped. Batch: sources emit only the final
    // watermark, so it counts (Flink's BATCH execution gives the same result).
    let input = vec![
        (100, ("k".to_string(), 1)),
        (2_000, ("k".to_string(), 10)),
        (500, ("k".to_string(), 100)),
    ];
    for p in PARALLELISMS {
        for (mode, expected) in [
            (RuntimeMode::Streaming, vec![1, 10]),
            (RuntimeMode::Batch, vec![10, 101]),
        ] {
            let env = per_record_env(p);
            env.set_runtime_mode(mode);
            let out = env
                .from_source(
                    CollectionSource::timed(input.clone()),
                    WatermarkStrategy::for_monotonous_timestamps(),
                    "in",
                )
                .key_by(|r: &(String, i64)| r.0.clone())
                .window(TumblingEventTimeWindows::of(Duration::from_secs(1)))
                .sum(|r: &mut (String, i64)| &mut r.1)
                .map(|r: (String, i64)| r.1)
                .collect();
            env.execute("batch windows").unwrap();
            assert_eq!(out.sorted(), expected, "{mode:?} p={p}");
        }
    }
}

#[test]
fn union_of_a_stream_with_itself_sees_every_record_twice() {
    for p in PARALLELISMS {
        let env = env(p);
        let s = env.from_collection(vec![1, 2, 3]);
        let out = s.union(&s).map(|x: i32| x * 10).collect();
        env.execute("self union").unwrap();
        assert_eq!(out.sorted(), vec![10, 10, 20, 20, 30, 30], "p={p}");
    }
}

/// Splits a keyed stream: even sums on the main output, odd ones to a side output.
#[derive(Clone)]
struct SplitSums {
    odd: OutputTag<(String, i64)>,
}

impl KeyedProcessFunction<String, (String, i64), (String, i64)> for SplitSums {
    fn process_element(
        &mut self,
        v: (String, i64),
        ctx: &mut KeyedContext<'_, String>,
        out: &mut Collector<'_, (String, i64)>,
    ) {
        let sum = ctx.value_state(&SUM);
        let s = sum.value().unwrap_or(0) + v.1;
        sum.update(s);
        if s % 2 == 0 {
            out.collect((ctx.current_key(), s));
        } else {
            ctx.output(&self.odd, (ctx.current_key(), s));
        }
    }
}

#[test]
fn keyed_side_outputs_can_be_processed_and_unioned_back() {
    for p in PARALLELISMS {
        let env = env(p);
        let f = SplitSums {
            odd: OutputTag::new("odd"),
        };
        let split = env
            .from_collection(vec![
                ("a".to_string(), 1i64),
                ("b".to_string(), 2),
                ("a".to_string(), 1),
                ("b".to_string(), 3),
                ("a".to_string(), 5),
            ])
            .key_by(|v: &(String, i64)| v.0.clone())
            .process(f.clone());
        let odd = split
            .side_output(&f.odd)
            .map(|(k, s): (String, i64)| (format!("odd {k}"), s))
            .disable_chaining();
        let all = split.union(&odd).collect();
        env.execute("keyed side outputs").unwrap();
        assert_eq!(
            all.sorted(),
            vec![
                ("a".to_string(), 2),
                ("b".to_string(), 2),
                ("odd a".to_string(), 1),
                ("odd a".to_string(), 7),
                ("odd b".to_string(), 5),
            ],
            "p={p}"
        );
    }
}

#[test]
fn close_is_called_when_the_job_fails() {
    for p in [1, 2] {
        let log = Log::default();
        let env = env(p);
        env.from_collection((1..=12).collect::<Vec<i32>>())
            .map_rich(Traced::new("map", &log))
            .map(|v: i32| if v == 105 { panic!("no 105") } else { v })
            .collect();
        let err = env.execute("failing").unwrap_err().to_string();
        assert!(err.ends_with("no 105"), "{err}");
        // Flink calls close() on failure too, so functions can release what they hold.
        let closes: Vec<usize> = sorted(
            log.snapshot()
                .iter()
                .filter(|e| e.1 == "close")
                .map(|e| e.2)
                .collect(),
        );
        assert_eq!(closes, (0..p).collect::<Vec<_>>(), "p={p}");
    }
}

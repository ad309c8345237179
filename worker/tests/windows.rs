//! Conformance: windows (keyed and `window_all`): tumbling, sliding, session (merging),
//! global and count windows; reduce, aggregate, process and apply, alone and combined;
//! triggers (event time, processing time, count, purging, continuous, custom); evictors
//! (count, time, delta; before and after); allowed lateness and late-data output.
//! Results are exact and the same at parallelism 1, 2 and 4.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use std::time::Duration;
use strom::prelude::*;

/// (key, event timestamp, value)
type Rec = (String, i64, i64);

fn rec(k: &str, ts: i64, v: i64) -> Rec {
    (k.to_string(), ts, v)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A source of `input` with timestamps from the records and bounded out-of-orderness.
fn events(env: &StreamEnv, input: &[Rec], bound_ms: u64) -> DataStream<Rec> {
    env.from_source(
        CollectionSource::new(input.to_vec()),
        WatermarkStrategy::for_bounded_out_of_orderness(ms(bound_ms))
            .with_timestamp_assigner(|r: &Rec| r.1),
        "events",
    )
}

fn by_key(s: &DataStream<Rec>) -> KeyedStream<String, Rec> {
    s.key_by(|r: &Rec| r.0.clone())
}

/// (key, window start, window end, number of records, sum of values)
type Summary = (String, i64, i64, usize, i64);

fn summarize(k: &str, w: &TimeWindow, es: &[Rec], out: &mut Collector<'_, Summary>) {
    out.collect((
        k.to_string(),
        w.start,
        w.end,
        es.len(),
        es.iter().map(|r| r.2).sum(),
    ));
}

fn summary(k: &str, start: i64, end: i64, n: usize, sum: i64) -> Summary {
    (k.to_string(), start, end, n, sum)
}

const INPUT: [(&str, i64, i64); 8] = [
    ("a", 1_000, 1),
    ("b", 1_200, 10),
    ("a", 1_900, 2),
    ("a", 3_500, 4),
    ("b", 4_100, 20),
    ("a", 2_050, 8),
    ("b", 9_000, 40),
    ("a", 9_999, 16),
];

fn input() -> Vec<Rec> {
    INPUT.iter().map(|(k, t, v)| rec(k, *t, *v)).collect()
}

#[test]
fn tumbling_windows_keyed_and_all_with_end_minus_one_timestamps() {
    for p in PARALLELISMS {
        let env = env(p);
        let src = events(&env, &input(), 2_000);
        let keyed = by_key(&src)
            .window(TumblingEventTimeWindows::of(ms(2_000)))
            .apply(
                |k: &String, w: &TimeWindow, es: &[Rec], out: &mut Collector<'_, Summary>| {
                    summarize(k, w, es, out)
                },
            )
            .collect();
        let all = src
            .window_all(TumblingEventTimeWindows::of(ms(5_000)))
            .apply(
                |w: &TimeWindow, es: &[Rec], out: &mut Collector<'_, (i64, usize, i64)>| {
                    out.collect((w.start, es.len(), es.iter().map(|r| r.2).sum()))
                },
            )
            .collect();
        let offset = by_key(&src)
            .window(TumblingEventTimeWindows::of(ms(2_000)).with_offset(ms(500)))
            .apply(
                |k: &String, w: &TimeWindow, es: &[Rec], out: &mut Collector<'_, Summary>| {
                    summarize(k, w, es, out)
                },
            )
            .collect();
        env.execute("tumbling").unwrap();
        assert_eq!(
            sorted(keyed.records()),
            vec![
                (summary("a", 0, 2_000, 2, 3), Some(1_999)),
                (summary("a", 2_000, 4_000, 2, 12), Some(3_999)),
                (summary("a", 8_000, 10_000, 1, 16), Some(9_999)),
                (summary("b", 0, 2_000, 1, 10), Some(1_999)),
                (summary("b", 4_000, 6_000, 1, 20), Some(5_999)),
                (summary("b", 8_000, 10_000, 1, 40), Some(9_999)),
            ],
            "p={p}"
        );
        assert_eq!(
            sorted(all.records()),
            vec![((0, 6, 45), Some(4_999)), ((5_000, 2, 56), Some(9_999))],
            "p={p}"
        );
        assert_eq!(
            offset.sorted(),
            vec![
                summary("a", 500, 2_500, 3, 11),
                summary("a", 2_500, 4_500, 1, 4),
                summary("a", 8_500, 10_500, 1, 16),
                summary("b", 500, 2_500, 1, 10),
                summary("b", 2_500, 4_500, 1, 20),
                summary("b", 8_500, 10_500, 1, 40),
            ],
            "p={p}"
        );
    }
}

#[test]
fn sliding_windows() {
    for p in PARALLELISMS {
        let env = env(p);
        let src = events(&env, &input(), 2_000);
        let out = by_key(&src)
            .window(SlidingEventTimeWindows::of(ms(4_000), ms(2_000)))
            .apply(
                |k: &String, w: &TimeWindow, es: &[Rec], out: &mut Collector<'_, Summary>| {
                    summarize(k, w, es, out)
                },
            )
            .collect();
        let all = src
            .window_all(SlidingEventTimeWindows::of(ms(4_000), ms(2_000)))
            .sum(|r: &mut Rec| &mut r.2)
            .map(|r: Rec| r.2)
            .collect();
        env.execute("sliding").unwrap();
        assert_eq!(
            out.sorted(),
            vec![
                summary("a", -2_000, 2_000, 2, 3),
                summary("a", 0, 4_000, 4, 15),
                summary("a", 2_000, 6_000, 2, 12),
                summary("a", 6_000, 10_000, 1, 16),
                summary("a", 8_000, 12_000, 1, 16),
                summary("b", -2_000, 2_000, 1, 10),
                summary("b", 0, 4_000, 1, 10),
                summary("b", 2_000, 6_000, 1, 20),
                summary("b", 4_000, 8_000, 1, 20),
                summary("b", 6_000, 10_000, 1, 40),
                summary("b", 8_000, 12_000, 1, 40),
            ],
            "p={p}"
        );
        // [-2000,2000) 13, [0,4000) 25, [2000,6000) 32, [4000,8000) 20, [6000,10000) 56, [8000,12000) 56
        assert_eq!(all.sorted(), vec![13, 20, 25, 32, 56, 56], "p={p}");
    }
}

#[test]
fn session_windows_merge_and_a_record_can_bridge_two_sessions() {
    let input = vec![
        rec("a", 1_000, 1),
        rec("a", 3_000, 2),
        rec("b", 1_000, 10),
        rec("b", 5_000, 20),
        // Bridges a's sessions [1000,2000) and [3000,4000): [2000,3000) touches both.
        rec("a", 2_000, 4),
        // Extends b's second session.
        rec("b", 5_900, 40),
        rec("a", 9_000, 8),
    ];
    for p in PARALLELISMS {
        let env = env(p);
        let src = events(&env, &input, 3_000);
        let listed = by_key(&src)
            .window(EventTimeSessionWindows::with_gap(ms(1_000)))
            .apply(
                |k: &String, w: &TimeWindow, es: &[Rec], out: &mut Collector<'_, Summary>| {
                    summarize(k, w, es, out)
                },
            )
            .collect();
        // Incremental functions merge their accumulators when sessions merge.
        let reduced = by_key(&src)
            .window(EventTimeSessionWindows::with_gap(ms(1_000)))
            .reduce(|a: Rec, b: Rec| (a.0, a.1.min(b.1), a.2 + b.2))
            .collect();
        let aggregated = by_key(&src)
            .window(EventTimeSessionWindows::with_gap(ms(1_000)))
            .aggregate(AggregateFn {
                create: || (0usize, 0i64),
                add: |acc: &mut (usize, i64), r: Rec| {
                    acc.0 += 1;
                    acc.1 += r.2;
                },
                result: |acc: &(usize, i64)| *acc,
                merge: |acc: &mut (usize, i64), other: (usize, i64)| {
                    acc.0 += other.0;
                    acc.1 += other.1;
                },
            })
            .collect();
        let all = src
            .window_all(EventTimeSessionWindows::with_gap(ms(1_000)))
            .apply(
                |w: &TimeWindow, es: &[Rec], out: &mut Collector<'_, (i64, i64, usize)>| {
                    out.collect((w.start, w.end, es.len()))
                },
            )
            .collect();
        let dynamic = by_key(&src)
            .window(EventTimeSessionWindows::with_dynamic_gap(|r: &Rec| {
                if r.0 == "a" { 5_000 } else { 100 }
            }))
            .apply(
                |k: &String, w: &TimeWindow, es: &[Rec], out: &mut Collector<'_, Summary>| {
                    summarize(k, w, es, out)
                },
            )
            .collect();
        env.execute("sessions").unwrap();
        assert_eq!(
            sorted(listed.records()),
            vec![
                (summary("a", 1_000, 4_000, 3, 7), Some(3_999)),
                (summary("a", 9_000, 10_000, 1, 8), Some(9_999)),
                (summary("b", 1_000, 2_000, 1, 10), Some(1_999)),
                (summary("b", 5_000, 6_900, 2, 60), Some(6_899)),
            ],
            "p={p}"
        );
        assert_eq!(
            reduced.sorted(),
            vec![
                rec("a", 1_000, 7),
                rec("a", 9_000, 8),
                rec("b", 1_000, 10),
                rec("b", 5_000, 60)
            ],
            "p={p}"
        );
        assert_eq!(
            aggregated.sorted(),
            vec![(1, 8), (1, 10), (2, 60), (3, 7)],
            "p={p}"
        );
        // Over all keys: [1000,4000) holds a's three and b's first; [5000,6900); [9000,10000).
        assert_eq!(
            all.sorted(),
            vec![(1_000, 4_000, 4), (5_000, 6_900, 2), (9_000, 10_000, 1)],
            "p={p}"
        );
        assert_eq!(
            dynamic.sorted(),
            vec![
                summary("a", 1_000, 8_000, 3, 7),
                summary("a", 9_000, 14_000, 1, 8),
                summary("b", 1_000, 1_100, 1, 10),
                summary("b", 5_000, 5_100, 1, 20),
                summary("b", 5_900, 6_000, 1, 40),
            ],
            "p={p}"
        );
    }
}

/// Fires (and purges) a global window once the values it holds reach `limit`; its state
/// is the running sum.
#[derive(Clone)]
struct SumReaches {
    limit: i64,
}

impl Trigger<Rec, GlobalWindow> for SumReaches {
    type State = i64;
    fn on_element(
        &self,
        r: &Rec,
        _: i64,
        _: &GlobalWindow,
        ctx: &mut TriggerContext<'_, GlobalWindow, i64>,
    ) -> TriggerResult {
        let sum = ctx.state() + r.2;
        if sum >= self.limit {
            ctx.clear_state();
            TriggerResult::FireAndPurge
        } else {
            ctx.set_state(sum);
            TriggerResult::Continue
        }
    }
    fn on_event_time(
        &self,
        _: i64,
        _: &GlobalWindow,
        _: &mut TriggerContext<'_, GlobalWindow, i64>,
    ) -> TriggerResult {
        TriggerResult::Continue
    }
    fn on_processing_time(
        &self,
        _: i64,
        _: &GlobalWindow,
        _: &mut TriggerContext<'_, GlobalWindow, i64>,
    ) -> TriggerResult {
        TriggerResult::Continue
    }
    fn clear(&self, _: &GlobalWindow, ctx: &mut TriggerContext<'_, GlobalWindow, i64>) {
        ctx.clear_state();
    }
    fn describe(&self) -> String {
        format!("SumReaches({})", self.limit)
    }
}

#[test]
fn global_windows_with_a_custom_trigger_that_keeps_state() {
    for p in PARALLELISMS {
        let env = env(p);
        let values = [
            ("a", 3),
            ("b", 9),
            ("a", 4),
            ("a", 5),
            ("b", 1),
            ("a", 1),
            ("a", 2),
            ("b", 7),
            ("a", 20),
        ];
        let src = env.from_collection(
            values
                .iter()
                .map(|(k, v)| rec(k, 0, *v))
                .collect::<Vec<_>>(),
        );
        let out = by_key(&src)
            .window(GlobalWindows::create())
            .trigger(SumReaches { limit: 10 })
            .apply(
                |k: &String,
                 _: &GlobalWindow,
                 es: &[Rec],
                 out: &mut Collector<'_, (String, Vec<i64>)>| {
                    out.collect((k.clone(), es.iter().map(|r| r.2).collect()))
                },
            )
            .collect();
        // Without a trigger, global windows never fire.
        let never = by_key(&src)
            .window(GlobalWindows::create())
            .reduce(|a: Rec, _: Rec| a)
            .collect();
        env.execute("global").unwrap();
        let got = per_key(out.values());
        assert_eq!(got["a"], vec![vec![3, 4, 5], vec![1, 2, 20]], "p={p}");
        assert_eq!(got["b"], vec![vec![9, 1]], "p={p}");
        assert!(never.is_empty());
    }
}

#[test]
fn count_windows_tumbling_sliding_and_all() {
    for p in PARALLELISMS {
        let env = env(p);
        let mut input = Vec::new();
        for i in 1..=7 {
            input.push(rec("a", 0, i));
            if i <= 4 {
                input.push(rec("b", 0, i * 10));
            }
        }
        let src = env.from_collection(input);
        let list = |k: &String,
                    _: &GlobalWindow,
                    es: &[Rec],
                    out: &mut Collector<'_, (String, Vec<i64>)>| {
            out.collect((k.clone(), es.iter().map(|r| r.2).collect()))
        };
        let tumbling = by_key(&src).count_window(3).apply(list).collect();
        let sliding = by_key(&src).count_window_slide(3, 2).apply(list).collect();
        let all = src
            .count_window_all(4)
            .apply(
                |_: &GlobalWindow, es: &[Rec], out: &mut Collector<'_, usize>| {
                    out.collect(es.len())
                },
            )
            .collect();
        let all_sliding = src
            .map(|r: Rec| r.2)
            .count_window_all_slide(3, 5)
            .apply(
                |_: &GlobalWindow, es: &[i64], out: &mut Collector<'_, usize>| {
                    out.collect(es.len())
                },
            )
            .collect();
        env.execute("count windows").unwrap();
        let t = per_key(tumbling.values());
        assert_eq!(t["a"], vec![vec![1, 2, 3], vec![4, 5, 6]], "p={p}");
        assert_eq!(t["b"], vec![vec![10, 20, 30]], "p={p}");
        // Sliding: every 2 records, the last 3 (Flink's countWindow(3, 2)).
        let s = per_key(sliding.values());
        assert_eq!(
            s["a"],
            vec![vec![1, 2], vec![2, 3, 4], vec![4, 5, 6]],
            "p={p}"
        );
        assert_eq!(s["b"], vec![vec![10, 20], vec![20, 30, 40]], "p={p}");
        // 11 records: two full windows of 4; the last 3 never fire.
        assert_eq!(all.values(), vec![4, 4], "p={p}");
        assert_eq!(all_sliding.values(), vec![3, 3], "p={p}");
    }
}

/// Reports each firing with its window, the watermark and per-window/per-key state.
#[derive(Clone)]
struct Firings {
    cleared: Log<(String, i64)>,
}

/// (key, window start, firings of the window, firings of the key, records)
type Firing = (String, i64, u32, u32, usize);

const FIRED: ValueStateDescriptor<u32> = ValueStateDescriptor::new("fired-in-window");
const WINDOWS_OF_KEY: ValueStateDescriptor<u32> = ValueStateDescriptor::new("firings-of-key");

impl ProcessWindowFunction<String, Rec, Firing, TimeWindow> for Firings {
    fn process(
        &mut self,
        key: &String,
        ctx: &mut WindowContext<'_, String, TimeWindow>,
        es: &[Rec],
        out: &mut Collector<'_, Firing>,
    ) {
        let fired = ctx.window_state(&FIRED);
        let n = fired.value().unwrap_or(0) + 1;
        fired.update(n);
        let of_key = ctx.value_state(&WINDOWS_OF_KEY);
        let k = of_key.value().unwrap_or(0) + 1;
        of_key.update(k);
        out.collect((key.clone(), ctx.window().start, n, k, es.len()));
    }
    fn clear(&mut self, ctx: &mut WindowContext<'_, String, TimeWindow>) {
        let w = *ctx.window();
        assert!(
            ctx.window_state(&FIRED).value().is_some(),
            "window state is there until cleared"
        );
        ctx.window_state(&FIRED).clear();
        self.cleared.push((String::new(), w.start));
    }
}

#[test]
fn process_window_function_with_window_and_global_state() {
    for p in PARALLELISMS {
        let env = env(p);
        let cleared = Log::default();
        let src = events(&env, &input(), 2_000);
        let out = by_key(&src)
            .window(TumblingEventTimeWindows::of(ms(2_000)))
            .trigger(CountTrigger::of(1))
            .process(Firings {
                cleared: cleared.clone(),
            })
            .collect();
        env.execute("process window").unwrap();
        let got = per_key(
            out.values()
                .into_iter()
                .map(|(k, s, n, of_key, len)| (k, (s, n, of_key, len))),
        );
        // Count trigger of 1: a firing per record; window state counts firings of the
        // window, global state those of the key.
        assert_eq!(
            got["a"],
            vec![
                (0, 1, 1, 1),
                (0, 2, 2, 2),
                (2_000, 1, 3, 1),
                (2_000, 2, 4, 2),
                (8_000, 1, 5, 1)
            ],
            "p={p}"
        );
        assert_eq!(
            got["b"],
            vec![(0, 1, 1, 1), (4_000, 1, 2, 1), (8_000, 1, 3, 1)],
            "p={p}"
        );
        // Every window was cleared at its end (when the watermark passed it).
        assert_eq!(cleared.sorted().len(), 6, "p={p}");
    }
}

type Stats = (i64, usize);

/// Sum and count of the values (an `AggregateFunction` written as a type).
#[derive(Clone, Copy)]
struct SumCount;

impl AggregateFunction<Rec, Stats, Stats> for SumCount {
    fn create_accumulator(&self) -> Stats {
        (0, 0)
    }
    fn add(&self, acc: &mut Stats, r: Rec) {
        acc.0 += r.2;
        acc.1 += 1;
    }
    fn get_result(&self, acc: &Stats) -> Stats {
        *acc
    }
    fn merge(&self, acc: &mut Stats, o: Stats) {
        acc.0 += o.0;
        acc.1 += o.1;
    }
}

fn sum_count() -> SumCount {
    SumCount
}

/// Adds the key and window start to an incrementally aggregated result.
#[derive(Clone)]
struct WithWindow;

impl<V: Clone + Send + Sync + 'static>
    ProcessWindowFunction<String, V, (String, i64, V), TimeWindow> for WithWindow
{
    fn process(
        &mut self,
        key: &String,
        ctx: &mut WindowContext<'_, String, TimeWindow>,
        es: &[V],
        out: &mut Collector<'_, (String, i64, V)>,
    ) {
        assert_eq!(es.len(), 1, "incremental aggregation hands over one value");
        out.collect((key.clone(), ctx.window().start, es[0].clone()));
    }
}

#[derive(Clone)]
struct AllWithWindow;

impl<V: Clone + Send + Sync + 'static> ProcessAllWindowFunction<V, (i64, V), TimeWindow>
    for AllWithWindow
{
    fn process(
        &mut self,
        ctx: &mut WindowContext<'_, (), TimeWindow>,
        es: &[V],
        out: &mut Collector<'_, (i64, V)>,
    ) {
        for e in es {
            out.collect((ctx.window().start, e.clone()));
        }
    }
}

#[test]
fn window_functions_reduce_aggregate_process_and_combinations() {
    for p in PARALLELISMS {
        let env = env(p);
        let src = events(&env, &input(), 2_000);
        let win = || by_key(&src).window(TumblingEventTimeWindows::of(ms(2_000)));
        let reduce = win()
            .reduce(|a: Rec, b: Rec| (a.0, a.1.max(b.1), a.2 + b.2))
            .collect();
        let aggregate = win().aggregate(sum_count()).collect();
        let reduce_with = win()
            .reduce_with(|a: Rec, b: Rec| if b.2 > a.2 { b } else { a }, WithWindow)
            .map(|(k, s, r): (String, i64, Rec)| (k, s, r.2))
            .collect();
        let aggregate_with = win().aggregate_with(sum_count(), WithWindow).collect();
        let fields = win().max(|r: &mut Rec| &mut r.2).collect();
        let min_by = win().min_by(|r: &mut Rec| &mut r.2).collect();
        let all = src.window_all(TumblingEventTimeWindows::of(ms(5_000)));
        let all_reduce_with = src
            .window_all(TumblingEventTimeWindows::of(ms(5_000)))
            .reduce_with(|a: Rec, b: Rec| (a.0, a.1, a.2 + b.2), AllWithWindow)
            .map(|(s, r): (i64, Rec)| (s, r.2))
            .collect();
        let all_aggregate_with = all.aggregate_with(sum_count(), AllWithWindow).collect();
        let all_process = src
            .window_all(TumblingEventTimeWindows::of(ms(5_000)))
            .process(AllWithWindow)
            .map(|(s, r): (i64, Rec)| (s, r.2))
            .collect();
        let all_aggregate = src
            .window_all(TumblingEventTimeWindows::of(ms(5_000)))
            .aggregate(sum_count())
            .collect();
        env.execute("window functions").unwrap();
        assert_eq!(
            reduce.sorted(),
            vec![
                rec("a", 1_900, 3),
                rec("a", 3_500, 12),
                rec("a", 9_999, 16),
                rec("b", 1_200, 10),
                rec("b", 4_100, 20),
                rec("b", 9_000, 40)
            ],
            "p={p}"
        );
        assert_eq!(
            aggregate.sorted(),
            vec![(3, 2), (10, 1), (12, 2), (16, 1), (20, 1), (40, 1)],
            "p={p}"
        );
        let kv = |rows: &[(&str, i64, i64)]| {
            rows.iter()
                .map(|(k, s, v)| (k.to_string(), *s, *v))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            reduce_with.sorted(),
            kv(&[
                ("a", 0, 2),
                ("a", 2_000, 8),
                ("a", 8_000, 16),
                ("b", 0, 10),
                ("b", 4_000, 20),
                ("b", 8_000, 40)
            ]),
            "p={p}"
        );
        assert_eq!(
            aggregate_with.sorted(),
            vec![
                ("a".to_string(), 0, (3, 2)),
                ("a".to_string(), 2_000, (12, 2)),
                ("a".to_string(), 8_000, (16, 1)),
                ("b".to_string(), 0, (10, 1)),
                ("b".to_string(), 4_000, (20, 1)),
                ("b".to_string(), 8_000, (40, 1)),
            ],
            "p={p}"
        );
        // max: the field's maximum, other fields from the window's first record.
        assert_eq!(
            fields.sorted(),
            vec![
                rec("a", 1_000, 2),
                rec("a", 3_500, 8),
                rec("a", 9_999, 16),
                rec("b", 1_200, 10),
                rec("b", 4_100, 20),
                rec("b", 9_000, 40)
            ],
            "p={p}"
        );
        assert_eq!(
            min_by.sorted(),
            vec![
                rec("a", 1_000, 1),
                rec("a", 3_500, 4),
                rec("a", 9_999, 16),
                rec("b", 1_200, 10),
                rec("b", 4_100, 20),
                rec("b", 9_000, 40)
            ],
            "p={p}"
        );
        assert_eq!(
            all_reduce_with.sorted(),
            vec![(0, 45), (5_000, 56)],
            "p={p}"
        );
        assert_eq!(
            all_aggregate_with.sorted(),
            vec![(0, (45, 6)), (5_000, (56, 2))],
            "p={p}"
        );
        assert_eq!(
            all_process.sorted(),
            vec![
                (0, 1),
                (0, 2),
                (0, 4),
                (0, 8),
                (0, 10),
                (0, 20),
                (5_000, 16),
                (5_000, 40)
            ],
            "p={p}"
        );
        assert_eq!(all_aggregate.sorted(), vec![(45, 6), (56, 2)], "p={p}");
    }
}

#[test]
fn processing_time_windows_on_the_replayed_clock() {
    for p in PARALLELISMS {
        let env = sim_env(p);
        let timed: Vec<(i64, Rec)> = [
            ("a", 100, 1),
            ("a", 900, 2),
            ("b", 1_000, 4),
            ("a", 1_500, 8),
            ("a", 2_600, 16),
            ("b", 2_700, 32),
        ]
        .iter()
        .map(|(k, t, v)| (*t, rec(k, 0, *v)))
        .collect();
        let src = env.from_timed_collection(timed);
        let tumbling = by_key(&src)
            .window(TumblingProcessingTimeWindows::of(ms(1_000)))
            .apply(
                |k: &String, w: &TimeWindow, es: &[Rec], out: &mut Collector<'_, Summary>| {
                    summarize(k, w, es, out)
                },
            )
            .collect();
        let sliding = by_key(&src)
            .window(SlidingProcessingTimeWindows::of(ms(2_000), ms(1_000)))
            .apply(
                |k: &String, w: &TimeWindow, es: &[Rec], out: &mut Collector<'_, Summary>| {
                    summarize(k, w, es, out)
                },
            )
            .collect();
        let sessions = by_key(&src)
            .window(ProcessingTimeSessionWindows::with_gap(ms(700)))
            .apply(
                |k: &String, w: &TimeWindow, es: &[Rec], out: &mut Collector<'_, Summary>| {
                    summarize(k, w, es, out)
                },
            )
            .collect();
        env.execute("processing time windows").unwrap();
        // A window fires when the replayed clock passes its end; windows still open when
        // the input ends do not fire (processing time stops with the input, as in Flink).
        assert_eq!(
            sorted(tumbling.records()),
            vec![
                (summary("a", 0, 1_000, 2, 3), Some(999)),
                (summary("a", 1_000, 2_000, 1, 8), Some(1_999)),
                (summary("b", 1_000, 2_000, 1, 4), Some(1_999)),
            ],
            "p={p}"
        );
        assert_eq!(
            sliding.sorted(),
            vec![
                summary("a", -1_000, 1_000, 2, 3),
                summary("a", 0, 2_000, 3, 11),
                summary("b", 0, 2_000, 1, 4),
            ],
            "p={p}"
        );
        assert_eq!(
            sessions.sorted(),
            vec![
                summary("a", 100, 800, 1, 1),
                summary("a", 900, 2_200, 2, 10),
                summary("b", 1_000, 1_700, 1, 4)
            ],
            "p={p}"
        );
    }
}

#[test]
fn count_and_purging_triggers_on_time_windows() {
    for p in PARALLELISMS {
        let env = env(p);
        let input: Vec<Rec> = (1..=5)
            .map(|i| rec("k", i * 100, i))
            .chain([rec("k", 1_500, 100)])
            .collect();
        let src = events(&env, &input, 0);
        let win = || by_key(&src).window(TumblingEventTimeWindows::of(ms(1_000)));
        // CountTrigger fires without purging (and never at the window's end).
        let counting = win()
            .trigger(CountTrigger::of(2))
            .sum(|r: &mut Rec| &mut r.2)
            .map(|r: Rec| r.2)
            .collect();
        let purging = win()
            .trigger(PurgingTrigger::of(CountTrigger::of(2)))
            .sum(|r: &mut Rec| &mut r.2)
            .map(|r: Rec| r.2)
            .collect();
        // PurgingTrigger of the event-time trigger: one result per window, contents dropped.
        let purging_event_time = win()
            .trigger(PurgingTrigger::of(EventTimeTrigger))
            .sum(|r: &mut Rec| &mut r.2)
            .map(|r: Rec| r.2)
            .collect();
        env.execute("count triggers").unwrap();
        assert_eq!(counting.values(), vec![3, 10], "p={p}");
        assert_eq!(purging.values(), vec![3, 7], "p={p}");
        assert_eq!(purging_event_time.sorted(), vec![15, 100], "p={p}");
    }
}

/// (window start, sum, watermark when it fired)
type Early = (i64, i64, i64);

#[derive(Clone)]
struct SumAndWatermark;

impl ProcessWindowFunction<String, Rec, Early, TimeWindow> for SumAndWatermark {
    fn process(
        &mut self,
        _: &String,
        ctx: &mut WindowContext<'_, String, TimeWindow>,
        es: &[Rec],
        out: &mut Collector<'_, Early>,
    ) {
        out.collect((
            ctx.window().start,
            es.iter().map(|r| r.2).sum(),
            ctx.current_watermark(),
        ));
    }
}

#[test]
fn continuous_event_time_trigger_fires_early() {
    for p in PARALLELISMS {
        // A watermark (timestamp − 1) after every record.
        let env = per_record_env(p);
        let input = vec![
            rec("k", 500, 1),
            rec("k", 2_500, 2),
            rec("k", 4_100, 3),
            rec("k", 9_000, 4),
            rec("k", 12_000, 5),
        ];
        let out = by_key(&events(&env, &input, 0))
            .window(TumblingEventTimeWindows::of(ms(10_000)))
            .trigger(ContinuousEventTimeTrigger::of(ms(2_000)))
            .process(SumAndWatermark)
            .collect();
        env.execute("continuous event time").unwrap();
        let max = i64::MAX;
        // Every 2 s of event time while the window is open, then at its end; the second
        // window is still open when the input ends, so the final watermark fires all of
        // its early timers (14000, 16000, 18000), then its end (Flink's
        // ContinuousEventTimeTrigger).
        assert_eq!(
            out.values(),
            vec![
                (0, 3, 2_499),
                (0, 6, 4_099),
                (0, 10, 8_999),
                (0, 10, 8_999),
                (0, 10, 11_999),
                (10_000, 5, max),
                (10_000, 5, max),
                (10_000, 5, max),
                (10_000, 5, max),
            ],
            "p={p}"
        );
        assert!(
            out.records()
                .iter()
                .all(|((start, _, _), ts)| *ts == Some(start + 9_999))
        );
    }
}

#[derive(Clone)]
struct SumAndClock;

impl ProcessWindowFunction<String, Rec, Early, TimeWindow> for SumAndClock {
    fn process(
        &mut self,
        _: &String,
        ctx: &mut WindowContext<'_, String, TimeWindow>,
        es: &[Rec],
        out: &mut Collector<'_, Early>,
    ) {
        out.collect((
            ctx.window().start,
            es.iter().map(|r| r.2).sum(),
            ctx.current_processing_time(),
        ));
    }
}

#[test]
fn continuous_processing_time_trigger_fires_early() {
    for p in PARALLELISMS {
        let env = sim_env(p);
        let timed: Vec<(i64, Rec)> = [(500, 1), (2_500, 2), (4_100, 3), (9_000, 4), (12_000, 5)]
            .iter()
            .map(|(t, v)| (*t, rec("k", 0, *v)))
            .collect();
        let out = by_key(&env.from_timed_collection(timed))
            .window(TumblingProcessingTimeWindows::of(ms(10_000)))
            .trigger(ContinuousProcessingTimeTrigger::of(ms(2_000)))
            .process(SumAndClock)
            .collect();
        env.execute("continuous processing time").unwrap();
        // Firings at 2000, 4000, 6000, 8000 and at the window's last millisecond (9999),
        // each when the replayed clock passes them; the second window never fires before
        // the input ends.
        assert_eq!(
            out.values(),
            vec![
                (0, 1, 2_500),
                (0, 3, 4_100),
                (0, 6, 9_000),
                (0, 6, 9_000),
                (0, 10, 12_000)
            ],
            "p={p}"
        );
    }
}

fn list_values(_: &String, _: &GlobalWindow, es: &[Rec], out: &mut Collector<'_, Vec<i64>>) {
    out.collect(es.iter().map(|r| r.2).collect());
}

#[test]
fn evictors_before_and_after_the_function() {
    for p in PARALLELISMS {
        let env = env(p);
        // Values 1, 8, 9, 10, 2, 3 at 1000, 1500, 2600, 3000, 3100, 5000.
        let input = vec![
            rec("k", 1_000, 1),
            rec("k", 1_500, 8),
            rec("k", 2_600, 9),
            rec("k", 3_000, 10),
            rec("k", 3_100, 2),
            rec("k", 5_000, 3),
        ];
        let src = events(&env, &input, 0);
        let global = || {
            by_key(&src)
                .window(GlobalWindows::create())
                .trigger(CountTrigger::of(2))
        };
        let count_before = global()
            .evictor(CountEvictor::of(3))
            .apply(list_values)
            .collect();
        let count_after = global()
            .evictor(CountEvictor::of_after(1))
            .apply(list_values)
            .collect();
        let time_before = global()
            .evictor(TimeEvictor::of(ms(1_000)))
            .apply(list_values)
            .collect();
        let time_after = global()
            .evictor(TimeEvictor::of_after(ms(1_000)))
            .apply(list_values)
            .collect();
        let delta = |a: &Rec, b: &Rec| (a.2 - b.2).abs() as f64;
        let delta_before = global()
            .evictor(DeltaEvictor::of(3.0, delta))
            .apply(list_values)
            .collect();
        let delta_after = global()
            .evictor(DeltaEvictor::of_after(3.0, delta))
            .apply(list_values)
            .collect();
        // With an evictor, reduce and aggregate run over what the evictor leaves.
        let reduced = by_key(&src)
            .window(TumblingEventTimeWindows::of(ms(10_000)))
            .evictor(CountEvictor::of(2))
            .reduce(|a: Rec, b: Rec| (a.0, a.1, a.2 + b.2))
            .map(|r: Rec| r.2)
            .collect();
        let aggregated = by_key(&src)
            .window(TumblingEventTimeWindows::of(ms(10_000)))
            .evictor(TimeEvictor::of(ms(2_000)))
            .aggregate(sum_count())
            .collect();
        env.execute("evictors").unwrap();
        assert_eq!(
            count_before.values(),
            vec![vec![1, 8], vec![8, 9, 10], vec![10, 2, 3]],
            "p={p}"
        );
        // After: the function sees everything, then only the newest record stays.
        assert_eq!(
            count_after.values(),
            vec![vec![1, 8], vec![8, 9, 10], vec![10, 2, 3]],
            "p={p}"
        );
        // Time: keeps records within 1 s of the newest (newest − 1000 exclusive).
        assert_eq!(
            time_before.values(),
            vec![vec![1, 8], vec![9, 10], vec![3]],
            "p={p}"
        );
        assert_eq!(
            time_after.values(),
            vec![vec![1, 8], vec![1, 8, 9, 10], vec![9, 10, 2, 3]],
            "p={p}"
        );
        // Delta: drops records whose distance to the newest is at least 3.
        assert_eq!(
            delta_before.values(),
            vec![vec![8], vec![8, 9, 10], vec![2, 3]],
            "p={p}"
        );
        assert_eq!(
            delta_after.values(),
            vec![vec![1, 8], vec![8, 9, 10], vec![8, 9, 10, 2, 3]],
            "p={p}"
        );
        assert_eq!(reduced.values(), vec![5], "p={p}");
        // The newest is at 5000: only 3100 and 5000 are within 2 s.
        assert_eq!(aggregated.values(), vec![(5, 2)], "p={p}");
    }
}

#[test]
fn allowed_lateness_refires_and_later_records_go_to_the_late_output() {
    let input = vec![
        rec("k", 100, 1),
        rec("k", 1_200, 2),
        // Late for [0,1000) (watermark 1199) but within 500 ms of lateness: updates it.
        rec("k", 300, 10),
        rec("j", 150, 7),
        rec("k", 1_600, 100),
        // [0,1000) was cleaned up at 1499: too late.
        rec("k", 400, 1_000),
        rec("k", 2_500, 3),
        // [1000,2000) is cleaned up at 2499, the watermark exactly: too late (Flink's
        // cleanup time <= watermark).
        rec("k", 1_700, 5),
    ];
    for p in PARALLELISMS {
        let env = per_record_env(p);
        let late = OutputTag::<Rec>::new("late");
        let src = events(&env, &input, 0);
        let windowed = by_key(&src)
            .window(TumblingEventTimeWindows::of(ms(1_000)))
            .allowed_lateness(ms(500))
            .side_output_late_data(&late)
            .apply(
                |k: &String, w: &TimeWindow, es: &[Rec], out: &mut Collector<'_, Summary>| {
                    summarize(k, w, es, out)
                },
            )
            .name("late windows");
        let main = windowed.collect();
        let late_out = windowed.side_output(&late).collect();
        // Without a late tag, too-late records are dropped, and counted all the same.
        let dropped = by_key(&src)
            .window(TumblingEventTimeWindows::of(ms(1_000)))
            .sum(|r: &mut Rec| &mut r.2)
            .name("no lateness")
            .map(|r: Rec| (r.0, r.2))
            .collect();
        let result = env.execute("lateness").unwrap();
        // k's results in order: [0,1000) at the watermark, again with the allowed-late
        // record, then the next windows.
        let k_results: Vec<_> = main
            .records()
            .into_iter()
            .filter(|r| r.0.0 == "k")
            .collect();
        assert_eq!(
            k_results,
            vec![
                (summary("k", 0, 1_000, 1, 1), Some(999)),
                (summary("k", 0, 1_000, 2, 11), Some(999)),
                (summary("k", 1_000, 2_000, 2, 102), Some(1_999)),
                (summary("k", 2_000, 3_000, 1, 3), Some(2_999)),
            ],
            "p={p}"
        );
        // j's window [0,1000) was late when its record came (watermark 1199): with lateness
        // it fires at once.
        assert!(
            main.values().contains(&summary("j", 0, 1_000, 1, 7)),
            "p={p}"
        );
        assert_eq!(
            sorted(late_out.records()),
            vec![
                (rec("k", 400, 1_000), Some(400)),
                (rec("k", 1_700, 5), Some(1_700))
            ],
            "p={p}"
        );
        assert_eq!(
            totals(&result.metrics, "late windows").late_records,
            2,
            "p={p}"
        );
        // No lateness: 300 (k), 150 (j), 400 and 1700 are dropped.
        assert_eq!(
            totals(&result.metrics, "no lateness").late_records,
            4,
            "p={p}"
        );
        assert_eq!(
            dropped.sorted(),
            vec![
                ("k".to_string(), 1),
                ("k".to_string(), 3),
                ("k".to_string(), 102)
            ],
            "p={p}"
        );
    }
}

#[test]
fn late_data_of_window_all() {
    for p in PARALLELISMS {
        let env = per_record_env(p);
        let late = OutputTag::<Rec>::new("late-all");
        let input = vec![
            rec("x", 100, 1),
            rec("y", 2_000, 2),
            rec("z", 500, 3),
            rec("x", 2_100, 4),
        ];
        // Straight from the one source reader, so the late record and the watermark before
        // it travel in order.
        let windowed = events(&env, &input, 0)
            .window_all(TumblingEventTimeWindows::of(ms(1_000)))
            .side_output_late_data(&late)
            .reduce(|a: Rec, b: Rec| (a.0, a.1, a.2 + b.2))
            .name("all windows");
        let main = windowed.collect();
        let late_out = windowed.side_output(&late).collect();
        let result = env.execute("late all").unwrap();
        assert_eq!(
            sorted(main.records()),
            vec![
                (rec("x", 100, 1), Some(999)),
                (rec("y", 2_000, 6), Some(2_999))
            ],
            "p={p}"
        );
        assert_eq!(
            late_out.records(),
            vec![(rec("z", 500, 3), Some(500))],
            "p={p}"
        );
        assert_eq!(
            totals(&result.metrics, "all windows").late_records,
            1,
            "p={p}"
        );
    }
}

#[test]
fn sessions_with_allowed_lateness_merge_late_records_and_refire() {
    let input = vec![
        rec("k", 1_000, 1),
        rec("k", 5_000, 10),
        // Behind the watermark (4999) but its session is allowed: fires at once.
        rec("k", 2_500, 100),
        // Bridges the two fired sessions [1000,2000) and [2500,3500): they merge and fire
        // again with everything.
        rec("k", 1_800, 1_000),
        rec("k", 9_000, 10_000),
        // [1200,2200) ends 5000 ms of lateness before the watermark 8999: too late.
        rec("k", 1_200, 100_000),
    ];
    for p in PARALLELISMS {
        let env = per_record_env(p);
        let late = OutputTag::<Rec>::new("late sessions");
        let windowed = by_key(&events(&env, &input, 0))
            .window(EventTimeSessionWindows::with_gap(ms(1_000)))
            .allowed_lateness(ms(5_000))
            .side_output_late_data(&late)
            .apply(
                |k: &String, w: &TimeWindow, es: &[Rec], out: &mut Collector<'_, Summary>| {
                    summarize(k, w, es, out)
                },
            )
            .name("sessions");
        let main = windowed.collect();
        let late_out = windowed.side_output(&late).collect();
        let result = env.execute("late sessions").unwrap();
        assert_eq!(
            main.values(),
            vec![
                summary("k", 1_000, 2_000, 1, 1),
                summary("k", 2_500, 3_500, 1, 100),
                summary("k", 1_000, 3_500, 3, 1_101),
                summary("k", 5_000, 6_000, 1, 10),
                summary("k", 9_000, 10_000, 1, 10_000),
            ],
            "p={p}"
        );
        assert_eq!(late_out.values(), vec![rec("k", 1_200, 100_000)], "p={p}");
        assert_eq!(totals(&result.metrics, "sessions").late_records, 1, "p={p}");
    }
}

#[test]
fn count_trigger_state_merges_with_sessions() {
    for p in PARALLELISMS {
        let env = env(p);
        let input = vec![
            rec("k", 1_000, 1),
            rec("k", 1_500, 2),
            rec("k", 3_000, 4),
            rec("k", 2_200, 8),
            rec("k", 3_500, 16),
        ];
        let out = by_key(&events(&env, &input, 5_000))
            .window(EventTimeSessionWindows::with_gap(ms(1_000)))
            .trigger(CountTrigger::of(3))
            .apply(
                |k: &String, w: &TimeWindow, es: &[Rec], out: &mut Collector<'_, Summary>| {
                    summarize(k, w, es, out)
                },
            )
            .collect();
        env.execute("count sessions").unwrap();
        // Counts 2 and 1 of the merged sessions add up; the bridging record makes 4.
        assert_eq!(
            out.values(),
            vec![summary("k", 1_000, 4_000, 4, 15)],
            "p={p}"
        );
    }
}

#[test]
fn a_trigger_that_cannot_merge_is_rejected_for_sessions() {
    let env = StreamEnv::new();
    by_key(&events(&env, &input(), 0))
        .window(EventTimeSessionWindows::with_gap(ms(1_000)))
        .trigger(ContinuousProcessingTimeTrigger::of(ms(100)))
        .reduce(|a: Rec, _: Rec| a)
        .collect();
    match env.execute("bad trigger") {
        Err(JobError::InvalidGraph(msg)) => {
            assert!(
                msg.contains("trigger ContinuousProcessingTimeTrigger(100ms) cannot merge windows"),
                "{msg}"
            )
        }
        other => panic!("expected an invalid graph, got {other:?}"),
    }
}

#[derive(Clone)]
struct Outliers {
    tag: OutputTag<(String, i64)>,
}

impl ProcessWindowFunction<String, Rec, i64, TimeWindow> for Outliers {
    fn process(
        &mut self,
        key: &String,
        ctx: &mut WindowContext<'_, String, TimeWindow>,
        es: &[Rec],
        out: &mut Collector<'_, i64>,
    ) {
        for r in es {
            if r.2 >= 10 {
                ctx.output(&self.tag, (key.clone(), r.2));
            } else {
                out.collect(r.2);
            }
        }
    }
}

#[test]
fn window_functions_emit_to_side_outputs_at_the_window_end() {
    for p in PARALLELISMS {
        let env = env(p);
        let f = Outliers {
            tag: OutputTag::new("outliers"),
        };
        let windowed = by_key(&events(&env, &input(), 2_000))
            .window(TumblingEventTimeWindows::of(ms(5_000)))
            .process(f.clone());
        let main = windowed.collect();
        let side = windowed.side_output(&f.tag).collect();
        env.execute("window side output").unwrap();
        assert_eq!(
            sorted(main.records()),
            vec![
                (1, Some(4_999)),
                (2, Some(4_999)),
                (4, Some(4_999)),
                (8, Some(4_999))
            ],
            "p={p}"
        );
        assert_eq!(
            sorted(side.records()),
            vec![
                (("a".to_string(), 16), Some(9_999)),
                (("b".to_string(), 10), Some(4_999)),
                (("b".to_string(), 20), Some(4_999)),
                (("b".to_string(), 40), Some(9_999)),
            ],
            "p={p}"
        );
    }
}

#[test]
fn event_time_windows_need_timestamps() {
    let env = StreamEnv::new();
    env.from_collection(input())
        .key_by(|r: &Rec| r.0.clone())
        .window(TumblingEventTimeWindows::of(ms(1_000)))
        .reduce(|a: Rec, _: Rec| a)
        .name("untimed")
        .collect();
    let err = env.execute("no timestamps").unwrap_err().to_string();
    assert!(err.contains("operator 'untimed'"), "{err}");
    assert!(
        err.contains("an event-time window got a record without a timestamp"),
        "{err}"
    );
}

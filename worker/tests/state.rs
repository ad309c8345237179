//! Conformance: keyed state (value, list, map, reducing, aggregating; isolated per key),
//! time-to-live on the replayed processing-time clock, type conflicts, timers as keyed
//! state, operator list state, and broadcast state.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use std::collections::BTreeMap;
use std::time::Duration;
use strom::prelude::*;
use strom::state::{RocksDbConfig, StateBackend, TtlUpdateType, TtlVisibility};

/// Keyed state behaves the same on both backends: every keyed test runs on each, at
/// every parallelism.
fn keyed_cases() -> Vec<(usize, StateBackend)> {
    let rocksdb = StateBackend::RocksDb(RocksDbConfig {
        memory_budget: 32 << 20,
        ..RocksDbConfig::default()
    });
    PARALLELISMS
        .into_iter()
        .flat_map(|p| [(p, StateBackend::Heap), (p, rocksdb.clone())])
        .collect()
}

fn on(env: StreamEnv, backend: &StateBackend) -> StreamEnv {
    let backend = backend.clone();
    env.configure(move |c| c.state_backend = backend);
    env
}

/// (key, command, value)
type Cmd = (String, String, i64);

fn cmd(k: &str, c: &str, v: i64) -> Cmd {
    (k.to_string(), c.to_string(), v)
}

/// What the function reports after each command: value, list, map (sorted), reducing
/// (max), aggregating (sum/count).
type Snapshot = (
    Option<i64>,
    Vec<i64>,
    Vec<(String, i64)>,
    Option<i64>,
    Option<String>,
);

const VALUE: ValueStateDescriptor<i64> = ValueStateDescriptor::new("value");
const LIST: ListStateDescriptor<i64> = ListStateDescriptor::new("list");
const MAP: MapStateDescriptor<String, i64> = MapStateDescriptor::new("map");

#[derive(Clone)]
struct AllKinds {
    max: ReducingStateDescriptor<i64>,
    avg: AggregatingStateDescriptor<i64, (i64, i64), String>,
}

impl AllKinds {
    fn new() -> Self {
        AllKinds {
            max: ReducingStateDescriptor::new("max", |a: i64, b: i64| a.max(b)),
            avg: AggregatingStateDescriptor::new(
                "avg",
                AggregateFn {
                    create: || (0i64, 0i64),
                    add: |acc: &mut (i64, i64), v: i64| {
                        acc.0 += v;
                        acc.1 += 1;
                    },
                    result: |acc: &(i64, i64)| format!("{}/{}", acc.0, acc.1),
                    merge: |acc: &mut (i64, i64), o: (i64, i64)| {
                        acc.0 += o.0;
                        acc.1 += o.1;
                    },
                },
            ),
        }
    }
}

impl KeyedProcessFunction<String, Cmd, (String, Snapshot)> for AllKinds {
    fn process_element(
        &mut self,
        c: Cmd,
        ctx: &mut KeyedContext<'_, String>,
        out: &mut Collector<'_, (String, Snapshot)>,
    ) {
        let (value, list, map) = (
            ctx.value_state(&VALUE),
            ctx.list_state(&LIST),
            ctx.map_state(&MAP),
        );
        let (max, avg) = (
            ctx.reducing_state(&self.max),
            ctx.aggregating_state(&self.avg),
        );
        let v = c.2;
        match c.1.as_str() {
            "add" => {
                value.update(value.value().unwrap_or(0) + v);
                list.add(v);
                map.put(format!("m{}", v % 3), v);
                max.add(v);
                avg.add(v);
            }
            "add_all" => list.add_all(vec![v, v + 1]),
            "replace_list" => list.update(vec![v]),
            "remove" => {
                map.remove(&format!("m{}", v % 3));
            }
            "clear" => {
                value.clear();
                list.clear();
                map.clear();
                max.clear();
                avg.clear();
            }
            other => panic!("unknown command {other}"),
        }
        assert_eq!(list.is_empty(), list.get().is_empty());
        assert_eq!(map.is_empty(), map.entries().is_empty());
        assert_eq!(
            map.contains(&"m1".to_string()),
            map.get(&"m1".to_string()).is_some()
        );
        let mut entries = map.entries();
        entries.sort();
        assert_eq!(map.keys().len(), entries.len());
        assert_eq!(map.values().len(), entries.len());
        out.collect((
            ctx.current_key(),
            (value.value(), list.get(), entries, max.get(), avg.get()),
        ));
    }
}

/// The same semantics, written plainly.
fn model(input: &[Cmd]) -> BTreeMap<String, Vec<Snapshot>> {
    #[derive(Default)]
    struct S {
        value: Option<i64>,
        list: Vec<i64>,
        map: BTreeMap<String, i64>,
        max: Option<i64>,
        avg: Option<(i64, i64)>,
    }
    let mut states: BTreeMap<String, S> = BTreeMap::new();
    let mut out: BTreeMap<String, Vec<Snapshot>> = BTreeMap::new();
    for (k, c, v) in input {
        let s = states.entry(k.clone()).or_default();
        match c.as_str() {
            "add" => {
                s.value = Some(s.value.unwrap_or(0) + v);
                s.list.push(*v);
                s.map.insert(format!("m{}", v % 3), *v);
                s.max = Some(s.max.map_or(*v, |m| m.max(*v)));
                let a = s.avg.unwrap_or((0, 0));
                s.avg = Some((a.0 + v, a.1 + 1));
            }
            "add_all" => s.list.extend([*v, v + 1]),
            "replace_list" => s.list = vec![*v],
            "remove" => {
                s.map.remove(&format!("m{}", v % 3));
            }
            "clear" => *s = S::default(),
            _ => unreachable!(),
        }
        out.entry(k.clone()).or_default().push((
            s.value,
            s.list.clone(),
            s.map.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            s.max,
            s.avg.map(|(sum, n)| format!("{sum}/{n}")),
        ));
    }
    out
}

#[test]
fn keyed_state_kinds_are_isolated_per_key() {
    let mut input = Vec::new();
    for round in 0..4i64 {
        for k in 0..25 {
            let key = format!("key{k}");
            input.push(cmd(&key, "add", round * 10 + k));
            if (k + round) % 7 == 0 {
                input.push(cmd(&key, "remove", round * 10 + k));
            }
            if k % 5 == round {
                input.push(cmd(&key, "add_all", k));
            }
            if k % 11 == 3 && round == 2 {
                input.push(cmd(&key, "clear", 0));
            }
            if k % 6 == 1 && round == 3 {
                input.push(cmd(&key, "replace_list", -k));
            }
        }
    }
    let expected = model(&input);
    for (p, backend) in keyed_cases() {
        let env = on(env(p), &backend);
        let out = env
            .from_collection(input.clone())
            .key_by(|c: &Cmd| c.0.clone())
            .process(AllKinds::new())
            .collect();
        env.execute("state kinds").unwrap();
        assert_eq!(per_key(out.values()), expected, "p={p} {backend:?}");
    }
}

#[derive(Clone)]
struct TtlProbe {
    state: ValueStateDescriptor<i64>,
}

impl KeyedProcessFunction<String, Cmd, (String, i64, Option<i64>)> for TtlProbe {
    fn process_element(
        &mut self,
        c: Cmd,
        ctx: &mut KeyedContext<'_, String>,
        out: &mut Collector<'_, (String, i64, Option<i64>)>,
    ) {
        let now = ctx.current_processing_time();
        let state = ctx.value_state(&self.state);
        match c.1.as_str() {
            "write" => state.update(now),
            _ => out.collect((c.0, now, state.value())),
        }
    }
}

#[test]
fn state_ttl_on_the_replayed_clock() {
    let input: Vec<(i64, Cmd)> = [
        (1_000, "a", "write"),
        (1_000, "b", "write"),
        (1_000, "c", "write"),
        (1_050, "a", "read"),
        (1_080, "b", "read"),
        (1_099, "a", "read"),
        (1_100, "a", "read"),
        (1_170, "b", "read"),
        (1_200, "a", "write"),
        (1_299, "a", "read"),
        (1_400, "b", "read"),
        (1_500, "c", "read"),
    ]
    .iter()
    .map(|(t, k, c)| (*t, cmd(k, c, 0)))
    .collect();
    let ttl = StateTtlConfig::new(Duration::from_millis(100));
    let configs = [
        // Flink's defaults: expires 100 ms after the last write, never returned after.
        (
            ttl,
            vec![
                ("a", 1_050, Some(1_000)),
                ("a", 1_099, Some(1_000)),
                ("a", 1_100, None),
                ("a", 1_299, Some(1_200)),
                ("b", 1_080, Some(1_000)),
                ("b", 1_170, None),
                ("b", 1_400, None),
                ("c", 1_500, None),
            ],
        ),
        // Reads restart the time to live.
        (
            ttl.update_type(TtlUpdateType::OnReadAndWrite),
            vec![
                ("a", 1_050, Some(1_000)),
                ("a", 1_099, Some(1_000)),
                ("a", 1_100, Some(1_000)),
                ("a", 1_299, Some(1_200)),
                ("b", 1_080, Some(1_000)),
                ("b", 1_170, Some(1_000)),
                ("b", 1_400, None),
                ("c", 1_500, None),
            ],
        ),
        // Expired but not yet cleaned up: the read that finds it still returns it, and
        // cleans it up (Flink removes expired values on read), so the next read does not.
        (
            ttl.visibility(TtlVisibility::ReturnExpiredIfNotCleanedUp),
            vec![
                ("a", 1_050, Some(1_000)),
                ("a", 1_099, Some(1_000)),
                ("a", 1_100, Some(1_000)),
                ("a", 1_299, Some(1_200)),
                ("b", 1_080, Some(1_000)),
                ("b", 1_170, Some(1_000)),
                ("b", 1_400, None),
                ("c", 1_500, Some(1_000)),
            ],
        ),
    ];
    for (p, backend) in keyed_cases() {
        for (config, expected) in &configs {
            let env = on(sim_env(p), &backend);
            let out = env
                .from_timed_collection(input.clone())
                .key_by(|c: &Cmd| c.0.clone())
                .process(TtlProbe {
                    state: ValueStateDescriptor::new("written-at").with_ttl(*config),
                })
                .collect();
            env.execute("ttl").unwrap();
            let expected: Vec<(String, i64, Option<i64>)> = expected
                .iter()
                .map(|(k, t, v)| (k.to_string(), *t, *v))
                .collect();
            assert_eq!(out.sorted(), expected, "{config:?} p={p} {backend:?}");
        }
    }
}

/// (time, list, map keys, one map entry)
type TtlRead = (i64, Vec<i64>, Vec<i64>, Option<i64>);

#[derive(Clone)]
struct CollectionTtl {
    list: ListStateDescriptor<i64>,
    map: MapStateDescriptor<i64, i64>,
}

impl KeyedProcessFunction<String, Cmd, TtlRead> for CollectionTtl {
    fn process_element(
        &mut self,
        c: Cmd,
        ctx: &mut KeyedContext<'_, String>,
        out: &mut Collector<'_, TtlRead>,
    ) {
        let now = ctx.current_processing_time();
        let (list, map) = (ctx.list_state(&self.list), ctx.map_state(&self.map));
        match c.1.as_str() {
            "write" => {
                list.add(now);
                map.put(now, now);
            }
            // A map read of one entry (the first write's).
            "get" => out.collect((now, vec![], vec![], map.get(&1_000))),
            _ => out.collect((now, list.get(), sorted(map.keys()), None)),
        }
    }
}

fn collection_ttl(
    p: usize,
    backend: &StateBackend,
    config: StateTtlConfig,
    input: &[(i64, &str)],
) -> Vec<TtlRead> {
    let env = on(sim_env(p), backend);
    let out = env
        .from_timed_collection(input.iter().map(|(t, c)| (*t, cmd("k", c, 0))).collect())
        .key_by(|c: &Cmd| c.0.clone())
        .process(CollectionTtl {
            list: ListStateDescriptor::new("list").with_ttl(config),
            map: MapStateDescriptor::new("map").with_ttl(config),
        })
        .collect();
    env.execute("collection ttl").unwrap();
    out.values()
}

#[test]
fn state_ttl_of_lists_and_maps_applies_per_entry() {
    // Flink's TTL for list and map state applies to each element / entry by itself.
    let ttl = StateTtlConfig::new(Duration::from_millis(100));
    let input = [
        (1_000, "write"),
        (1_060, "write"),
        (1_099, "read"),
        (1_100, "read"),
        (1_160, "read"),
    ];
    for (p, backend) in keyed_cases() {
        assert_eq!(
            collection_ttl(p, &backend, ttl, &input),
            vec![
                (1_099, vec![1_000, 1_060], vec![1_000, 1_060], None),
                (1_100, vec![1_060], vec![1_060], None),
                (1_160, vec![], vec![], None),
            ],
            "p={p} {backend:?}"
        );
        // Reads restart each element's time to live.
        let input = [
            (1_000, "write"),
            (1_060, "write"),
            (1_099, "read"),
            (1_180, "read"),
            (1_250, "get"),
            (1_300, "read"),
        ];
        assert_eq!(
            collection_ttl(
                p,
                &backend,
                ttl.update_type(TtlUpdateType::OnReadAndWrite),
                &input
            ),
            vec![
                (1_099, vec![1_000, 1_060], vec![1_000, 1_060], None),
                (1_180, vec![1_000, 1_060], vec![1_000, 1_060], None),
                (1_250, vec![], vec![], Some(1_000)),
                (1_300, vec![], vec![1_000], None),
            ],
            "p={p} {backend:?}"
        );
        // Expired entries are returned by the read that cleans them up, once.
        let input = [
            (1_000, "write"),
            (1_060, "write"),
            (1_120, "get"),
            (1_130, "read"),
            (1_170, "read"),
            (1_180, "read"),
        ];
        assert_eq!(
            collection_ttl(
                p,
                &backend,
                ttl.visibility(TtlVisibility::ReturnExpiredIfNotCleanedUp),
                &input
            ),
            vec![
                (1_120, vec![], vec![], Some(1_000)),
                (1_130, vec![1_000, 1_060], vec![1_060], None),
                (1_170, vec![1_060], vec![1_060], None),
                (1_180, vec![], vec![], None),
            ],
            "p={p} {backend:?}"
        );
    }
}

#[derive(Clone)]
struct TwoTypes;

impl KeyedProcessFunction<String, Cmd, i64> for TwoTypes {
    fn process_element(
        &mut self,
        c: Cmd,
        ctx: &mut KeyedContext<'_, String>,
        out: &mut Collector<'_, i64>,
    ) {
        if c.1 == "number" {
            ctx.value_state(&ValueStateDescriptor::<i64>::new("shared-name"))
                .update(c.2);
            out.collect(c.2);
        } else {
            ctx.value_state(&ValueStateDescriptor::<String>::new("shared-name"))
                .update(c.1);
        }
    }
}

#[test]
fn one_state_name_with_two_types_fails_the_job_naming_the_state() {
    for p in PARALLELISMS {
        let env = env(p);
        env.from_collection(vec![cmd("a", "number", 1), cmd("a", "text", 0)])
            .key_by(|c: &Cmd| c.0.clone())
            .process(TwoTypes)
            .name("confused")
            .collect();
        let err = env.execute("two types").unwrap_err().to_string();
        assert!(err.contains("operator 'confused'"), "{err}");
        assert!(err.contains("processing input record #2"), "{err}");
        assert!(
            err.contains("state 'shared-name' is used with two different types"),
            "{err}"
        );
    }
}

#[derive(Clone)]
struct TimerTwice;

impl KeyedProcessFunction<String, Cmd, (String, i64)> for TimerTwice {
    fn process_element(
        &mut self,
        c: Cmd,
        ctx: &mut KeyedContext<'_, String>,
        _: &mut Collector<'_, (String, i64)>,
    ) {
        // The same timer of the same key twice is one timer; keys have their own.
        ctx.timer_service().register_event_time_timer(c.2);
        ctx.timer_service().register_event_time_timer(c.2);
        if c.1 == "cancel" {
            ctx.timer_service().delete_event_time_timer(c.2);
        }
    }
    fn on_timer(
        &mut self,
        t: i64,
        ctx: &mut KeyedContext<'_, String>,
        out: &mut Collector<'_, (String, i64)>,
    ) {
        out.collect((ctx.current_key(), t));
    }
}

#[test]
fn timers_are_keyed_state() {
    for (p, backend) in keyed_cases() {
        let env = on(env(p), &backend);
        let input: Vec<(i64, Cmd)> = vec![
            (1, cmd("a", "set", 100)),
            (2, cmd("b", "set", 100)),
            (3, cmd("a", "set", 100)),
            (4, cmd("a", "set", 50)),
            (5, cmd("c", "set", 70)),
            (6, cmd("c", "cancel", 70)),
        ];
        let out = env
            .from_source(
                CollectionSource::timed(input),
                WatermarkStrategy::for_monotonous_timestamps(),
                "cmds",
            )
            .key_by(|c: &Cmd| c.0.clone())
            .process(TimerTwice)
            .collect();
        env.execute("timers").unwrap();
        assert_eq!(
            out.sorted(),
            vec![
                ("a".to_string(), 50),
                ("a".to_string(), 100),
                ("b".to_string(), 100)
            ],
            "p={p} {backend:?}"
        );
    }
}

const COUNT: OperatorStateDescriptor<u64> = OperatorStateDescriptor::list("count");
const EVERYTHING: OperatorStateDescriptor<u64> = OperatorStateDescriptor::union_list("everything");

/// Counts the records of its instance in operator list state.
#[derive(Clone, Default)]
struct CountPerInstance {
    subtask: usize,
}

impl ProcessFunction<u64, (usize, u64, usize)> for CountPerInstance {
    fn open(&mut self, ctx: &RuntimeContext<'_>) {
        self.subtask = ctx.subtask_index();
    }
    fn process_element(
        &mut self,
        v: u64,
        ctx: &mut Context<'_>,
        out: &mut Collector<'_, (usize, u64, usize)>,
    ) {
        let count = ctx.operator_state().list_state(&COUNT);
        let n = count.get().first().copied().unwrap_or(0) + 1;
        count.update(vec![n]);
        let all = ctx.operator_state().list_state(&EVERYTHING);
        all.add(v);
        out.collect((self.subtask, n, all.get().len()));
    }
}

#[test]
fn operator_list_state_belongs_to_one_instance() {
    let n = 40u64;
    for p in PARALLELISMS {
        let env = env(p);
        let out = env
            .add_source(GeneratorSource::new(|i| i).count(n), None, "gen")
            .process(CountPerInstance::default())
            .collect();
        env.execute("operator state").unwrap();
        let by_instance = per_key(
            out.values()
                .into_iter()
                .map(|(s, c, len)| (s, (c, len as u64))),
        );
        assert_eq!(by_instance.len(), p);
        for (s, counts) in by_instance {
            // The generator gives subtask s of p a contiguous share of the records.
            let share = (s as u64 + 1) * n / p as u64 - s as u64 * n / p as u64;
            assert_eq!(
                counts,
                (1..=share).map(|c| (c, c)).collect::<Vec<_>>(),
                "subtask {s}, p={p}"
            );
        }
    }
}

const LIMITS: MapStateDescriptor<String, i64> = MapStateDescriptor::new("limits");
const LIMITS_AS_TEXT: MapStateDescriptor<String, String> = MapStateDescriptor::new("limits");

#[derive(Clone)]
struct Limits {
    misuse: bool,
}

impl BroadcastProcessFunction<i64, (String, i64), String> for Limits {
    fn process_element(&mut self, v: i64, ctx: &mut Context<'_>, out: &mut Collector<'_, String>) {
        let limits = ctx.broadcast_state(&LIMITS);
        let all: Vec<String> = limits
            .iter()
            .map(|(k, l)| format!("{k}:{}", v > *l))
            .collect();
        out.collect(all.join(","));
    }
    fn process_broadcast_element(
        &mut self,
        l: (String, i64),
        ctx: &mut BroadcastContext<'_>,
        _: &mut Collector<'_, String>,
    ) {
        ctx.broadcast_state(&LIMITS).put(l.0.clone(), l.1);
        if self.misuse {
            ctx.broadcast_state(&LIMITS_AS_TEXT).put(l.0, String::new());
        }
    }
}

#[test]
fn broadcast_state_is_the_same_on_every_instance_and_typed() {
    for p in PARALLELISMS {
        for misuse in [false, true] {
            let env = env(p);
            let limits = env
                .from_collection(vec![("low".to_string(), 5i64), ("high".to_string(), 50)])
                .broadcast_stream();
            let (tx, data) = ChannelSource::new();
            let out = env
                .add_source(data, None, "values")
                .rebalance()
                .connect_broadcast(&limits)
                .process(Limits { misuse })
                .name("limits")
                .collect();
            let job = env.execute_async("broadcast state").unwrap();
            if misuse {
                let err = job.join().unwrap_err().to_string();
                assert!(
                    err.contains("broadcast state 'limits' is used with two different types"),
                    "{err}"
                );
                assert!(err.contains("processing record #1 of input 2"), "{err}");
                continue;
            }
            assert!(job.wait_for(
                Duration::from_secs(5),
                |m| totals(m, "limits").records_in_second == 2 * p as u64
            ));
            for v in [1i64, 10, 100, 3, 30, 300, 7, 70] {
                tx.send(Feed::Record(v)).unwrap();
            }
            drop(tx);
            job.join().unwrap();
            // Iteration is in key order on every instance.
            assert_eq!(
                out.sorted(),
                sorted(
                    [1i64, 10, 100, 3, 30, 300, 7, 70]
                        .iter()
                        .map(|v| format!("high:{},low:{}", *v > 50, *v > 5))
                        .collect()
                ),
                "p={p}"
            );
        }
    }
}

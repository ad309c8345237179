//! Conformance: window joins and co-groups (records of equal key in the same window) and
//! interval joins (records of equal key whose timestamps are close), Flink's semantics:
//! inclusive bounds unless made exclusive, results stamped with the larger timestamp,
//! records behind the watermark dropped and counted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use std::time::Duration;
use strom::api::{IntervalJoin, IntervalJoined};
use strom::prelude::*;

/// Sends a timed record into a channel source.
macro_rules! send {
    ($tx:expr, $k:expr, $ts:expr, $id:expr) => {
        $tx.send(Feed::Timed(($k.to_string(), $id.to_string()), $ts))
            .unwrap()
    };
}

/// (key, id)
type Ev = (String, String);

fn timed(rows: &[(&str, i64, &str)]) -> Vec<(i64, Ev)> {
    rows.iter()
        .map(|(k, t, id)| (*t, (k.to_string(), id.to_string())))
        .collect()
}

fn stream(env: &StreamEnv, rows: &[(&str, i64, &str)], name: &str) -> DataStream<Ev> {
    env.from_source(
        CollectionSource::timed(timed(rows)),
        WatermarkStrategy::for_bounded_out_of_orderness(Duration::from_millis(1_000)),
        name,
    )
}

const ORDERS: [(&str, i64, &str); 5] = [
    ("a", 100, "o1"),
    ("a", 900, "o2"),
    ("b", 500, "o3"),
    ("a", 1_500, "o4"),
    ("c", 200, "o5"),
];
const PAYMENTS: [(&str, i64, &str); 5] = [
    ("a", 300, "p1"),
    ("b", 1_200, "p2"),
    ("a", 1_100, "p3"),
    ("a", 1_999, "p4"),
    ("c", 999, "p5"),
];

#[test]
fn window_join_pairs_records_of_a_key_in_the_same_window() {
    for p in PARALLELISMS {
        let env = env(p);
        let orders = stream(&env, &ORDERS, "orders");
        let payments = stream(&env, &PAYMENTS, "payments");
        let joined = orders
            .join(&payments)
            .where_key(|o: &Ev| o.0.clone())
            .equal_to(|p: &Ev| p.0.clone())
            .window(TumblingEventTimeWindows::of(Duration::from_secs(1)))
            .apply(|o: &Ev, p: &Ev| (o.1.clone(), p.1.clone()))
            .collect();
        let flat = orders
            .join(&payments)
            .where_key(|o: &Ev| o.0.clone())
            .equal_to(|p: &Ev| p.0.clone())
            .window(TumblingEventTimeWindows::of(Duration::from_secs(1)))
            .flat_apply(|o: &Ev, p: &Ev, out: &mut Collector<'_, String>| {
                if o.0 == "a" {
                    out.collect(format!("{}+{}", o.1, p.1));
                }
            })
            .collect();
        env.execute("window join").unwrap();
        let pair = |a: &str, b: &str, ts: i64| ((a.to_string(), b.to_string()), Some(ts));
        assert_eq!(
            sorted(joined.records()),
            vec![
                pair("o1", "p1", 999),
                pair("o2", "p1", 999),
                pair("o4", "p3", 1_999),
                pair("o4", "p4", 1_999),
                pair("o5", "p5", 999),
            ],
            "p={p}"
        );
        assert_eq!(
            flat.sorted(),
            vec!["o1+p1", "o2+p1", "o4+p3", "o4+p4"],
            "p={p}"
        );
    }
}

#[test]
fn co_group_sees_both_sides_even_when_one_is_empty() {
    for p in PARALLELISMS {
        let env = env(p);
        let orders = stream(&env, &ORDERS, "orders");
        let payments = stream(&env, &PAYMENTS, "payments");
        let groups = orders
            .co_group(&payments)
            .where_key(|o: &Ev| o.0.clone())
            .equal_to(|p: &Ev| p.0.clone())
            .window(TumblingEventTimeWindows::of(Duration::from_secs(1)))
            .co_group_apply(
                |os: &[Ev], ps: &[Ev], out: &mut Collector<'_, (Vec<String>, Vec<String>)>| {
                    // The two inputs arrive in any order relative to each other.
                    out.collect((
                        sorted(os.iter().map(|o| o.1.clone()).collect()),
                        sorted(ps.iter().map(|p| p.1.clone()).collect()),
                    ))
                },
            )
            .collect();
        env.execute("co-group").unwrap();
        let g = |os: &[&str], ps: &[&str]| {
            (
                os.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                ps.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            )
        };
        assert_eq!(
            sorted(groups.records()),
            sorted(vec![
                (g(&["o1", "o2"], &["p1"]), Some(999)),
                (g(&["o3"], &[]), Some(999)),
                (g(&["o5"], &["p5"]), Some(999)),
                (g(&["o4"], &["p3", "p4"]), Some(1_999)),
                (g(&[], &["p2"]), Some(1_999)),
            ]),
            "p={p}"
        );
    }
}

/// (left id, right id, left ts, right ts, result ts)
type Joined = (String, String, i64, i64, i64);

#[derive(Clone)]
struct Describe;

impl ProcessJoinFunction<Ev, Ev, Joined> for Describe {
    fn process_element(
        &mut self,
        l: &Ev,
        r: &Ev,
        ctx: &mut JoinContext<'_>,
        out: &mut Collector<'_, Joined>,
    ) {
        out.collect((
            l.1.clone(),
            r.1.clone(),
            ctx.left_timestamp(),
            ctx.right_timestamp(),
            ctx.timestamp(),
        ));
    }
}

const LEFT: [(&str, i64, &str); 3] = [("k", 10, "L10"), ("k", 20, "L20"), ("j", 30, "L30")];
const RIGHT: [(&str, i64, &str); 9] = [
    ("k", 7, "R7"),
    ("k", 8, "R8"),
    ("k", 9, "R9"),
    ("k", 11, "R11"),
    ("k", 12, "R12"),
    ("k", 19, "R19"),
    ("k", 21, "R21"),
    ("j", 29, "R29"),
    ("j", 32, "R32"),
];

fn interval_pairs(
    p: usize,
    bounds: impl Fn(IntervalJoin<String, Ev, Ev>) -> IntervalJoined<String, Ev, Ev>,
) -> Vec<(String, String)> {
    let env = env(p);
    let left = env.from_source(
        CollectionSource::timed(timed(&LEFT)),
        WatermarkStrategy::for_monotonous_timestamps(),
        "left",
    );
    let right = env.from_source(
        CollectionSource::timed(timed(&RIGHT)),
        WatermarkStrategy::for_monotonous_timestamps(),
        "right",
    );
    let out = bounds(
        left.key_by(|e: &Ev| e.0.clone())
            .interval_join(&right.key_by(|e: &Ev| e.0.clone())),
    )
    .join(|l: &Ev, r: &Ev| (l.1.clone(), r.1.clone()))
    .collect();
    env.execute("interval join").unwrap();
    out.sorted()
}

fn pairs(rows: &[(&str, &str)]) -> Vec<(String, String)> {
    sorted(
        rows.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
    )
}

#[test]
fn interval_join_with_negative_lower_bound_and_exclusive_bounds() {
    for p in PARALLELISMS {
        // right.ts in [left.ts - 2, left.ts + 1]
        assert_eq!(
            interval_pairs(p, |j| j.between(-2, 1)),
            pairs(&[
                ("L10", "R8"),
                ("L10", "R9"),
                ("L10", "R11"),
                ("L20", "R19"),
                ("L20", "R21"),
                ("L30", "R29")
            ]),
            "p={p}"
        );
        assert_eq!(
            interval_pairs(p, |j| j.between(-2, 1).lower_bound_exclusive()),
            pairs(&[
                ("L10", "R9"),
                ("L10", "R11"),
                ("L20", "R19"),
                ("L20", "R21"),
                ("L30", "R29")
            ]),
            "p={p}"
        );
        assert_eq!(
            interval_pairs(p, |j| j.between(-2, 1).upper_bound_exclusive()),
            pairs(&[("L10", "R8"), ("L10", "R9"), ("L20", "R19"), ("L30", "R29")]),
            "p={p}"
        );
        assert_eq!(
            interval_pairs(p, |j| j
                .between(-2, 1)
                .lower_bound_exclusive()
                .upper_bound_exclusive()),
            pairs(&[("L10", "R9"), ("L20", "R19"), ("L30", "R29")]),
            "p={p}"
        );
        // Both bounds above the left record.
        assert_eq!(
            interval_pairs(p, |j| j.between(1, 2)),
            pairs(&[
                ("L10", "R11"),
                ("L10", "R12"),
                ("L20", "R21"),
                ("L30", "R32")
            ]),
            "p={p}"
        );
    }
}

#[test]
fn interval_join_timestamps_and_process_function() {
    for p in PARALLELISMS {
        let env = env(p);
        let left = env.from_source(
            CollectionSource::timed(timed(&LEFT)),
            WatermarkStrategy::for_monotonous_timestamps(),
            "left",
        );
        let right = env.from_source(
            CollectionSource::timed(timed(&RIGHT)),
            WatermarkStrategy::for_monotonous_timestamps(),
            "right",
        );
        let out = left
            .key_by(|e: &Ev| e.0.clone())
            .interval_join(&right.key_by(|e: &Ev| e.0.clone()))
            .between(-1, 1)
            .process(Describe)
            .collect();
        env.execute("interval join process").unwrap();
        let j = |l: &str, r: &str, lt: i64, rt: i64| {
            (
                (l.to_string(), r.to_string(), lt, rt, lt.max(rt)),
                Some(lt.max(rt)),
            )
        };
        assert_eq!(
            sorted(out.records()),
            vec![
                j("L10", "R11", 10, 11),
                j("L10", "R9", 10, 9),
                j("L20", "R19", 20, 19),
                j("L20", "R21", 20, 21),
                j("L30", "R29", 30, 29)
            ],
            "p={p}"
        );
    }
}

#[test]
fn interval_join_with_empty_bounds_is_rejected() {
    let env = StreamEnv::new();
    let a = env
        .from_collection(vec![("k".to_string(), String::new())])
        .key_by(|e: &Ev| e.0.clone());
    a.interval_join(&a)
        .between(5, 1)
        .join(|l: &Ev, _: &Ev| l.clone())
        .collect();
    match env.execute("bad bounds") {
        Err(JobError::InvalidGraph(msg)) => assert!(
            msg.contains("lower bound 5 ms is above upper bound 1 ms"),
            "{msg}"
        ),
        other => panic!("expected an invalid graph, got {other:?}"),
    }
}

#[test]
fn interval_join_drops_records_behind_the_watermark() {
    for p in PARALLELISMS {
        let env = env(p);
        let (ltx, left) = ChannelSource::new();
        let (rtx, right) = ChannelSource::new();
        let probe = WatermarkProbe::new(5_000);
        let out = env
            .add_source(left, None, "left")
            .key_by(|e: &Ev| e.0.clone())
            .interval_join(
                &env.add_source(right, None, "right")
                    .key_by(|e: &Ev| e.0.clone()),
            )
            .between(-2, 1)
            .join(|l: &Ev, r: &Ev| (l.1.clone(), r.1.clone()))
            .name("join")
            .key_by(|_: &(String, String)| 0u8)
            .process(probe.clone())
            .collect();
        let job = env.execute_async("late interval join").unwrap();
        send!(ltx, "k", 1_000, "L1000");
        send!(rtx, "k", 1_001, "R1001");
        ltx.send(Feed::Watermark(6_000)).unwrap();
        rtx.send(Feed::Watermark(6_000)).unwrap();
        // Once the probe behind the join sees event time 5000, the join has the
        // watermark 6000 from both inputs.
        assert!(
            eventually(Duration::from_secs(5), || probe.is_reached()),
            "p={p}"
        );
        send!(ltx, "k", 5_500, "L5500"); // late
        send!(rtx, "k", 5_501, "R5501"); // late
        send!(ltx, "k", 6_001, "L6001");
        send!(rtx, "k", 6_000, "R6000"); // at the watermark: not late
        send!(rtx, "k", 5_999, "R5999"); // late
        drop(ltx);
        drop(rtx);
        let result = job.join().unwrap();
        assert_eq!(
            out.sorted(),
            pairs(&[("L1000", "R1001"), ("L6001", "R6000")]),
            "p={p}"
        );
        assert_eq!(totals(&result.metrics, "join").late_records, 3, "p={p}");
    }
}

//! Properties of event time, checked on random input against a plain-Rust oracle:
//!
//! 1. Input shuffled only within the bounded out-of-orderness bound B (each record comes
//!    after records at most B − 1 ms newer), run with `for_bounded_out_of_orderness(B)`,
//!    gives exactly the window results of the same input sorted by timestamp (tumbling,
//!    sliding and session windows), and both equal the oracle.
//! 2. Records later than watermark + allowed lateness (watermarks after every record, from
//!    a punctuated generator and one source reader, so they are known) go to the late side
//!    output, all of them and nothing else, and are counted; the other results are
//!    unchanged.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::time::Duration;
use strom::prelude::*;

/// (key, timestamp, value)
type Rec = (u8, i64, i64);
/// (key, window start, window end, records, sum of values)
type Row = (u8, i64, i64, usize, i64);

#[derive(Clone, Copy, Debug)]
enum Kind {
    Tumbling { size: i64 },
    Sliding { size: i64, slide: i64 },
    Session { gap: i64 },
}

fn kinds() -> impl Strategy<Value = Kind> {
    prop_oneof![
        (100i64..2_000).prop_map(|size| Kind::Tumbling { size }),
        (100i64..1_000, 1i64..4).prop_map(|(slide, n)| Kind::Sliding {
            size: slide * n + slide / 3,
            slide
        }),
        (50i64..1_000).prop_map(|gap| Kind::Session { gap }),
    ]
}

/// The windows' results, computed directly from the definitions.
fn oracle(kind: Kind, input: &[Rec]) -> Vec<Row> {
    let mut acc: BTreeMap<(u8, i64, i64), (usize, i64)> = BTreeMap::new();
    let mut add = |k: u8, s: i64, e: i64, v: i64| {
        let a = acc.entry((k, s, e)).or_default();
        a.0 += 1;
        a.1 += v;
    };
    match kind {
        Kind::Tumbling { size } => {
            for &(k, ts, v) in input {
                let s = ts - ts.rem_euclid(size);
                add(k, s, s + size, v);
            }
        }
        Kind::Sliding { size, slide } => {
            for &(k, ts, v) in input {
                let mut s = ts - ts.rem_euclid(slide);
                while s > ts - size {
                    add(k, s, s + size, v);
                    s -= slide;
                }
            }
        }
        Kind::Session { gap } => {
            let mut by_key: BTreeMap<u8, Vec<(i64, i64)>> = BTreeMap::new();
            for &(k, ts, v) in input {
                by_key.entry(k).or_default().push((ts, v));
            }
            for (k, mut recs) in by_key {
                recs.sort();
                let mut session: Option<(i64, i64, usize, i64)> = None;
                for (ts, v) in recs {
                    session = match session {
                        // Sessions that touch merge (Flink's TimeWindow.intersects).
                        Some((s, e, n, sum)) if ts <= e => {
                            Some((s, e.max(ts + gap), n + 1, sum + v))
                        }
                        Some((s, e, n, sum)) => {
                            acc.insert((k, s, e), (n, sum));
                            Some((ts, ts + gap, 1, v))
                        }
                        None => Some((ts, ts + gap, 1, v)),
                    };
                }
                if let Some((s, e, n, sum)) = session {
                    acc.insert((k, s, e), (n, sum));
                }
            }
        }
    }
    acc.into_iter()
        .map(|((k, s, e), (n, sum))| (k, s, e, n, sum))
        .collect()
}

fn summarize(k: &u8, w: &TimeWindow, es: &[Rec], out: &mut Collector<'_, Row>) {
    out.collect((*k, w.start, w.end, es.len(), es.iter().map(|r| r.2).sum()));
}

struct Run {
    rows: Vec<Row>,
    late: Vec<Rec>,
    late_count: u64,
}

fn run_with<A: WindowAssigner<Rec, W = TimeWindow>>(
    assigner: A,
    input: Vec<Rec>,
    strategy: WatermarkStrategy<Rec>,
    p: usize,
    batch: usize,
    lateness: i64,
) -> Run {
    let env = env(p);
    env.configure(|c| c.batch_size = batch);
    let late = OutputTag::<Rec>::new("late");
    let windowed = env
        .from_source(
            CollectionSource::new(input),
            strategy.with_timestamp_assigner(|r: &Rec| r.1),
            "events",
        )
        .key_by(|r: &Rec| r.0)
        .window(assigner)
        .allowed_lateness(Duration::from_millis(lateness as u64))
        .side_output_late_data(&late)
        .apply(summarize)
        .name("windows");
    let rows = windowed.collect();
    let late_out = windowed.side_output(&late).collect();
    let result = env.execute("property").unwrap();
    Run {
        rows: rows.sorted(),
        late: late_out.sorted(),
        late_count: totals(&result.metrics, "windows").late_records,
    }
}

fn run(
    kind: Kind,
    input: Vec<Rec>,
    strategy: WatermarkStrategy<Rec>,
    p: usize,
    batch: usize,
    lateness: i64,
) -> Run {
    let ms = |n: i64| Duration::from_millis(n as u64);
    match kind {
        Kind::Tumbling { size } => run_with(
            TumblingEventTimeWindows::of(ms(size)),
            input,
            strategy,
            p,
            batch,
            lateness,
        ),
        Kind::Sliding { size, slide } => run_with(
            SlidingEventTimeWindows::of(ms(size), ms(slide)),
            input,
            strategy,
            p,
            batch,
            lateness,
        ),
        Kind::Session { gap } => run_with(
            EventTimeSessionWindows::with_gap(ms(gap)),
            input,
            strategy,
            p,
            batch,
            lateness,
        ),
    }
}

/// Arrival order: each record moved later by a jitter below `bound`, so a record comes
/// after records at most `bound − 1` ms newer than itself.
fn shuffle_within(input: &[(Rec, i64)], bound: i64) -> Vec<Rec> {
    let mut order: Vec<(i64, usize)> = input
        .iter()
        .enumerate()
        .map(|(i, (r, j))| (r.1 + j % bound, i))
        .collect();
    order.sort();
    order.into_iter().map(|(_, i)| input[i].0).collect()
}

fn records(ts: std::ops::Range<i64>) -> impl Strategy<Value = Vec<(Rec, i64)>> {
    prop::collection::vec(((0u8..3, ts, 1i64..100), 0i64..10_000), 1..40)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn bounded_disorder_gives_the_results_of_sorted_input(
        input in records(0..5_000),
        kind in kinds(),
        bound in 1i64..500,
        p in prop::sample::select(vec![1usize, 2, 4]),
        batch in 1usize..4,
    ) {
        let plain: Vec<Rec> = input.iter().map(|(r, _)| *r).collect();
        let expected = oracle(kind, &plain);
        let strategy = || WatermarkStrategy::for_bounded_out_of_orderness(Duration::from_millis(bound as u64));

        let shuffled = run(kind, shuffle_within(&input, bound), strategy(), p, batch, 0);
        prop_assert_eq!(&shuffled.rows, &expected);
        prop_assert_eq!(shuffled.late_count, 0);

        let mut in_order = plain.clone();
        in_order.sort_by_key(|r| r.1);
        let sorted_run = run(kind, in_order, strategy(), p, batch, 0);
        prop_assert_eq!(&sorted_run.rows, &expected);
        prop_assert!(sorted_run.late.is_empty());
    }

    #[test]
    fn records_behind_watermark_and_lateness_go_to_the_late_output(
        input in records(10_000..20_000),
        late in prop::collection::vec(((0u8..3, 0i64..1_000, 100i64..200), any::<prop::sample::Index>()), 0..8),
        kind in kinds(),
        bound in 1i64..500,
        lateness in 0i64..2_000,
        p in prop::sample::select(vec![1usize, 2, 4]),
    ) {
        let normal: Vec<Rec> = input.iter().map(|(r, _)| *r).collect();
        let mut arrival = shuffle_within(&input, bound);
        // Late records come after the first record, whose watermark (at least
        // 10000 − bound − 1) is past the cleanup time of every window they belong to.
        for (r, at) in &late {
            let pos = 1 + at.index(arrival.len());
            arrival.insert(pos, *r);
        }
        let strategy = WatermarkStrategy::for_punctuated(move |_: &Rec, ts: i64| Some(ts - bound - 1));
        let got = run(kind, arrival, strategy, p, 1_024, lateness);
        prop_assert_eq!(&got.rows, &oracle(kind, &normal));
        let late_records: Vec<Rec> = sorted(late.iter().map(|(r, _)| *r).collect());
        prop_assert_eq!(&got.late, &late_records);
        prop_assert_eq!(got.late_count, late.len() as u64);
    }
}

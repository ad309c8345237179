//! The benchmark pipelines, each written twice: as a Strom job, and as a hand-written
//! Rust loop doing the same work on the same records (the ceiling an engine can reach).

use crate::event::{BenchEvent, event, keep, scramble};
use std::collections::HashMap;
use std::hint::black_box;
use strom::prelude::*;

/// Keys of the keyed rolling-sum case.
pub const SUM_KEYS: u64 = 10_000;
/// Keys of the tumbling-window case.
pub const WINDOW_KEYS: u64 = 100;
/// Window size of the tumbling-window case (ms).
pub const WINDOW_MS: i64 = 1_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Case {
    /// generator → map → filter → discard
    Stateless,
    /// generator → key_by → rolling sum → discard (10,000 keys)
    KeyedSum,
    /// generator → key_by → 1 s event-time tumbling window count → discard (100 keys)
    TumblingWindow,
}

impl Case {
    pub const ALL: [Case; 3] = [Case::Stateless, Case::KeyedSum, Case::TumblingWindow];

    pub fn name(self) -> &'static str {
        match self {
            Case::Stateless => "map-filter",
            Case::KeyedSum => "keyed-sum",
            Case::TumblingWindow => "tumbling-window",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Case::Stateless => "generator → map → filter → discard",
            Case::KeyedSum => "key_by → rolling sum, 10,000 keys",
            Case::TumblingWindow => "event-time tumbling window count, 1 s, 100 keys",
        }
    }

    pub fn parse(s: &str) -> Option<Case> {
        Case::ALL.into_iter().find(|c| c.name() == s)
    }
}

/// Builds the Strom job of `case` for `events` records.
pub fn build_job(env: &StreamEnv, case: Case, events: u64) {
    match case {
        Case::Stateless => {
            env.add_source(
                GeneratorSource::new(|i| event(i, SUM_KEYS)).count(events),
                None,
                "Events",
            )
            .map(scramble)
            .filter(keep)
            .add_sink(|e: BenchEvent| {
                black_box(e);
            });
        }
        Case::KeyedSum => {
            env.add_source(
                GeneratorSource::new(|i| event(i, SUM_KEYS)).count(events),
                None,
                "Events",
            )
            .key_by(|e: &BenchEvent| e.key)
            .sum(|e: &mut BenchEvent| &mut e.value)
            .uid("sum")
            .add_sink(|e: BenchEvent| {
                black_box(e);
            });
        }
        Case::TumblingWindow => {
            env.from_source(
                GeneratorSource::new(|i| event(i, WINDOW_KEYS)).count(events),
                WatermarkStrategy::for_monotonous_timestamps()
                    .with_timestamp_assigner(|e: &BenchEvent| e.timestamp),
                "Events",
            )
            .key_by(|e: &BenchEvent| e.key)
            .window(TumblingEventTimeWindows::of(
                std::time::Duration::from_millis(WINDOW_MS as u64),
            ))
            .aggregate(AggregateFn {
                create: || (0u64, 0u64),
                add: |acc: &mut (u64, u64), e: BenchEvent| {
                    acc.0 = e.key;
                    acc.1 += 1;
                },
                result: |acc: &(u64, u64)| *acc,
                merge: |a: &mut (u64, u64), b: (u64, u64)| a.1 += b.1,
            })
            .uid("window-count")
            .add_sink(|c: (u64, u64)| {
                black_box(c);
            });
        }
    }
}

/// The same work as [`build_job`] in a plain loop over `range`; returns a checksum.
pub fn hand_written(case: Case, range: std::ops::Range<u64>) -> u64 {
    match case {
        Case::Stateless => {
            let mut kept = 0u64;
            for i in range {
                let e = scramble(event(i, SUM_KEYS));
                if keep(&e) {
                    black_box(e);
                    kept += 1;
                }
            }
            kept
        }
        Case::KeyedSum => {
            let mut sums: HashMap<u64, BenchEvent> = HashMap::with_capacity(SUM_KEYS as usize);
            for i in range {
                let e = event(i, SUM_KEYS);
                let acc = sums
                    .entry(e.key)
                    .and_modify(|acc| acc.value += e.value)
                    .or_insert(e);
                black_box(*acc);
            }
            sums.len() as u64
        }
        Case::TumblingWindow => {
            // Counts per (key, window); a window fires when the watermark passes its end.
            let mut counts: HashMap<(u64, i64), u64> = HashMap::new();
            let mut fired = 0u64;
            let mut watermark = i64::MIN;
            for i in range {
                let e = event(i, WINDOW_KEYS);
                let start = e.timestamp - e.timestamp.rem_euclid(WINDOW_MS);
                *counts.entry((e.key, start)).or_insert(0) += 1;
                let wm = e.timestamp - 1;
                if wm > watermark {
                    watermark = wm;
                    if (watermark + 1) % WINDOW_MS == 0 {
                        counts.retain(|&(_, s), c| {
                            if s + WINDOW_MS - 1 <= watermark {
                                black_box(*c);
                                fired += 1;
                                false
                            } else {
                                true
                            }
                        });
                    }
                }
            }
            fired + counts.len() as u64
        }
    }
}

/// The latency pipeline: `rate` events per second (shared by the sources), each stamped
/// with its creation time in `timestamp` (µs), `key_by` → reduce that sums values and keeps
/// the newest creation time → a sink that records `now - created`.
pub fn build_latency_job(env: &StreamEnv, events: u64, rate: f64) {
    env.add_source(
        GeneratorSource::new(|i| BenchEvent {
            timestamp: crate::latency::now_micros(),
            ..event(i, SUM_KEYS)
        })
        .count(events)
        .rate(rate),
        None,
        "Events",
    )
    .key_by(|e: &BenchEvent| e.key)
    .reduce(|acc: BenchEvent, e: BenchEvent| BenchEvent {
        key: e.key,
        value: acc.value + e.value,
        timestamp: e.timestamp,
    })
    .uid("sum")
    .add_sink(|e: BenchEvent| crate::latency::record(crate::latency::now_micros() - e.timestamp));
}

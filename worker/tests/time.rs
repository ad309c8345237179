//! Conformance: event time (timestamp assigners, watermark strategies, idleness, the
//! minimum over inputs), processing-time timers and ingestion time. Processing time is
//! always the replayed (simulated) clock, so every result is exact.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use strom::prelude::*;

type Ev = (String, i64);

fn ev(name: &str, ts: i64) -> Ev {
    (name.to_string(), ts)
}

/// Reports, for every record, its timestamp and the operator's watermark when it arrived.
#[derive(Clone)]
struct ReportWatermark;

impl KeyedProcessFunction<String, Ev, (String, i64, i64)> for ReportWatermark {
    fn process_element(
        &mut self,
        v: Ev,
        ctx: &mut KeyedContext<'_, String>,
        out: &mut Collector<'_, (String, i64, i64)>,
    ) {
        out.collect((v.0, ctx.timestamp().unwrap(), ctx.current_watermark()));
    }
}

/// Runs `input` (names in order a, b, c, ...) through a source with `strategy` and reports
/// the watermark each record saw.
fn watermarks_seen(
    p: usize,
    per_record: bool,
    input: Vec<Ev>,
    strategy: WatermarkStrategy<Ev>,
) -> Vec<(String, i64, i64)> {
    let env = if per_record {
        per_record_env(p)
    } else {
        env(p)
    };
    let out = env
        .from_source(
            CollectionSource::new(input),
            strategy.with_timestamp_assigner(|e: &Ev| e.1),
            "events",
        )
        .key_by(|e: &Ev| e.0.clone())
        .process(ReportWatermark)
        .collect();
    env.execute("watermarks").unwrap();
    out.sorted()
}

fn report(rows: &[(&str, i64, i64)]) -> Vec<(String, i64, i64)> {
    rows.iter()
        .map(|(n, t, w)| (n.to_string(), *t, *w))
        .collect()
}

const MIN: i64 = i64::MIN;

#[test]
fn timestamp_assigners_in_the_source_and_mid_stream() {
    for p in PARALLELISMS {
        let env = env(p);
        let at_source = env
            .from_source(
                CollectionSource::new(vec![ev("a", 5), ev("b", 7)]),
                WatermarkStrategy::for_monotonous_timestamps()
                    .with_timestamp_assigner(|e: &Ev| e.1 * 1_000),
                "events",
            )
            .collect();
        let mid_stream = env
            .from_collection(vec![ev("x", 1), ev("y", 2), ev("z", 3)])
            .map(|e: Ev| (e.0, e.1 + 10))
            .assign_timestamps_and_watermarks(
                WatermarkStrategy::for_bounded_out_of_orderness(Duration::from_millis(5))
                    .with_timestamp_assigner(|e: &Ev| e.1),
            );
        let stamped = mid_stream.collect();
        // The new timestamps drive event-time windows downstream.
        let windowed = mid_stream
            .key_by(|_: &Ev| 0u8)
            .window(TumblingEventTimeWindows::of(Duration::from_millis(2)))
            .apply(
                |_: &u8, w: &TimeWindow, es: &[Ev], out: &mut Collector<'_, (i64, usize)>| {
                    out.collect((w.start, es.len()))
                },
            )
            .collect();
        env.execute("assigners").unwrap();
        assert_eq!(at_source.sorted().len(), 2);
        assert_eq!(
            sorted(at_source.records()),
            vec![(ev("a", 5), Some(5_000)), (ev("b", 7), Some(7_000))],
            "p={p}"
        );
        assert_eq!(
            sorted(stamped.records()),
            vec![
                (ev("x", 11), Some(11)),
                (ev("y", 12), Some(12)),
                (ev("z", 13), Some(13))
            ],
            "p={p}"
        );
        assert_eq!(windowed.sorted(), vec![(10, 1), (12, 2)], "p={p}");
    }
}

#[test]
fn monotonous_watermark_lags_one_millisecond() {
    for p in PARALLELISMS {
        let got = watermarks_seen(
            p,
            true,
            vec![
                ev("a", 1_000),
                ev("b", 2_000),
                ev("c", 2_500),
                ev("d", 4_000),
            ],
            WatermarkStrategy::for_monotonous_timestamps(),
        );
        assert_eq!(
            got,
            report(&[
                ("a", 1_000, MIN),
                ("b", 2_000, 999),
                ("c", 2_500, 1_999),
                ("d", 4_000, 2_499)
            ]),
            "p={p}"
        );
    }
}

#[test]
fn bounded_out_of_orderness_lags_bound_plus_one() {
    for p in PARALLELISMS {
        let got = watermarks_seen(
            p,
            true,
            vec![
                ev("a", 1_000),
                ev("b", 800),
                ev("c", 2_000),
                ev("d", 1_700),
                ev("e", 1_600),
            ],
            WatermarkStrategy::for_bounded_out_of_orderness(Duration::from_millis(500)),
        );
        assert_eq!(
            got,
            report(&[
                ("a", 1_000, MIN),
                ("b", 800, 499),
                ("c", 2_000, 499),
                ("d", 1_700, 1_499),
                ("e", 1_600, 1_499)
            ]),
            "p={p}"
        );
    }
}

#[test]
fn punctuated_watermarks_follow_marker_records() {
    for p in PARALLELISMS {
        // Whole input in one batch: only the punctuation emits watermarks.
        let got = watermarks_seen(
            p,
            false,
            vec![
                ev("a", 1_000),
                ev("b!", 2_000),
                ev("c", 3_000),
                ev("d!", 4_000),
                ev("e", 5_000),
            ],
            WatermarkStrategy::for_punctuated(|e: &Ev, ts: i64| e.0.ends_with('!').then_some(ts)),
        );
        assert_eq!(
            got,
            report(&[
                ("a", 1_000, MIN),
                ("b!", 2_000, MIN),
                ("c", 3_000, 2_000),
                ("d!", 4_000, 2_000),
                ("e", 5_000, 4_000)
            ]),
            "p={p}"
        );
    }
}

/// A custom periodic generator: event time advances in whole seconds.
struct WholeSeconds {
    max: i64,
}

impl WatermarkGenerator<Ev> for WholeSeconds {
    fn on_event(&mut self, _: &Ev, timestamp: i64, _: &mut WatermarkOutput) {
        self.max = self.max.max(timestamp);
    }
    fn on_periodic_emit(&mut self, output: &mut WatermarkOutput) {
        if self.max >= 0 {
            output.emit_watermark(self.max / 1_000 * 1_000 - 1);
        }
    }
}

#[test]
fn custom_watermark_generator() {
    for p in PARALLELISMS {
        let got = watermarks_seen(
            p,
            true,
            vec![
                ev("a", 1_500),
                ev("b", 1_800),
                ev("c", 2_100),
                ev("d", 3_900),
                ev("e", 4_000),
            ],
            WatermarkStrategy::for_generator(|| WholeSeconds { max: -1 }),
        );
        assert_eq!(
            got,
            report(&[
                ("a", 1_500, MIN),
                ("b", 1_800, 999),
                ("c", 2_100, 999),
                ("d", 3_900, 1_999),
                ("e", 4_000, 2_999)
            ]),
            "p={p}"
        );
    }
}

/// Two readers: subtask 0 emits at 1000 and 5000; subtask 1 emits once at 500, then its
/// (simulated) clock moves on a minute without records. Both end when released.
struct TwoSpeeds {
    release: Arc<AtomicBool>,
}

struct TwoSpeedsReader {
    subtask: usize,
    step: u8,
    release: Arc<AtomicBool>,
    started: Instant,
}

impl Source<Ev> for TwoSpeeds {
    fn is_bounded(&self) -> bool {
        true
    }
    fn create_reader(&self, ctx: &SourceContext) -> Result<Box<dyn SourceReader<Ev>>, BoxError> {
        assert_eq!(ctx.parallelism, 2);
        Ok(Box::new(TwoSpeedsReader {
            subtask: ctx.subtask_index,
            step: 0,
            release: self.release.clone(),
            started: Instant::now(),
        }))
    }
}

impl SourceReader<Ev> for TwoSpeedsReader {
    fn poll(&mut self, out: &mut SourceOutput<'_, Ev>) -> Result<SourcePoll, BoxError> {
        let step = self.step;
        self.step = self.step.saturating_add(1);
        match (self.subtask, step) {
            (0, 0) => {
                out.collect_with_timestamp(ev("busy", 1_000), 1_000);
                out.collect_with_timestamp(ev("busy", 5_000), 5_000);
                Ok(SourcePoll::More)
            }
            (1, 0) => {
                out.collect_with_timestamp(ev("quiet", 500), 500);
                Ok(SourcePoll::More)
            }
            (1, 1) => {
                // A minute passes without records.
                out.advance_processing_time(60_500);
                Ok(SourcePoll::Wait(Duration::from_millis(1)))
            }
            _ if self.release.load(Ordering::SeqCst)
                || self.started.elapsed() > Duration::from_secs(5) =>
            {
                Ok(SourcePoll::Finished)
            }
            _ => Ok(SourcePoll::Wait(Duration::from_millis(2))),
        }
    }
}

/// Reports event-time timers with the watermark that fired them.
#[derive(Clone)]
struct TimerAtEachRecord;

impl KeyedProcessFunction<String, Ev, (String, i64, i64)> for TimerAtEachRecord {
    fn process_element(
        &mut self,
        _: Ev,
        ctx: &mut KeyedContext<'_, String>,
        _: &mut Collector<'_, (String, i64, i64)>,
    ) {
        let ts = ctx.timestamp().unwrap();
        ctx.timer_service().register_event_time_timer(ts);
    }
    fn on_timer(
        &mut self,
        t: i64,
        ctx: &mut KeyedContext<'_, String>,
        out: &mut Collector<'_, (String, i64, i64)>,
    ) {
        out.collect((ctx.current_key(), t, ctx.current_watermark()));
    }
}

#[test]
fn idle_source_subtask_does_not_hold_back_event_time() {
    for p in PARALLELISMS {
        for idleness in [true, false] {
            let env = sim_env(p);
            let release = Arc::new(AtomicBool::new(false));
            let strategy = WatermarkStrategy::for_monotonous_timestamps();
            let strategy = if idleness {
                strategy.with_idleness(Duration::from_secs(10))
            } else {
                strategy
            };
            let out = env
                .from_source(
                    TwoSpeeds {
                        release: release.clone(),
                    },
                    strategy,
                    "two speeds",
                )
                .set_parallelism(2)
                .key_by(|e: &Ev| e.0.clone())
                .process(TimerAtEachRecord)
                .name("timers")
                .collect();
            let job = env.execute_async("idleness").unwrap();
            if idleness {
                // The quiet reader is idle after 10 s of its clock: event time follows the
                // busy reader alone (4999) while both are still running.
                assert!(
                    eventually(Duration::from_secs(5), || out.len() >= 2),
                    "p={p}"
                );
                assert_eq!(
                    out.sorted(),
                    report(&[("busy", 1_000, 4_999), ("quiet", 500, 4_999)]),
                    "p={p}"
                );
            } else {
                // Held back at the quiet reader's 499: nothing fires while it runs.
                assert!(
                    job.wait_for(Duration::from_secs(5), |m| totals(m, "timers").records_in
                        == 3),
                    "p={p}"
                );
                std::thread::sleep(Duration::from_millis(50));
                assert_eq!(out.sorted(), vec![], "p={p}");
            }
            release.store(true, Ordering::SeqCst);
            job.join().unwrap();
            let fired: Vec<(String, i64)> =
                out.sorted().into_iter().map(|(k, t, _)| (k, t)).collect();
            assert_eq!(
                fired,
                vec![ev("busy", 1_000), ev("busy", 5_000), ev("quiet", 500)],
                "idleness={idleness} p={p}"
            );
            if idleness {
                assert!(
                    out.sorted()
                        .contains(&("busy".to_string(), 5_000, i64::MAX))
                );
            }
        }
    }
}

#[test]
fn watermark_is_the_minimum_over_inputs() {
    for p in PARALLELISMS {
        let env = env(p);
        let fast = env.from_source(
            CollectionSource::timed(vec![(2_000, ev("fast", 2_000)), (9_000, ev("fast", 9_000))]),
            WatermarkStrategy::for_monotonous_timestamps(),
            "fast",
        );
        let (tx, slow) = ChannelSource::new();
        let slow = env.add_source(slow, None, "slow");
        let out = fast
            .union(&slow)
            .key_by(|e: &Ev| e.0.clone())
            .process(TimerAtEachRecord)
            .collect();
        let job = env.execute_async("min over inputs").unwrap();
        tx.send(Feed::Timed(ev("slow", 1_000), 1_000)).unwrap();
        tx.send(Feed::Watermark(3_000)).unwrap();
        // Event time is min(8999, 3000): timers up to 3000 fire, the one at 9000 waits.
        assert!(
            eventually(Duration::from_secs(5), || out.len() >= 2),
            "p={p}"
        );
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(
            out.sorted(),
            report(&[("fast", 2_000, 3_000), ("slow", 1_000, 3_000)]),
            "p={p}"
        );
        drop(tx);
        job.join().unwrap();
        assert_eq!(
            out.sorted(),
            report(&[
                ("fast", 2_000, 3_000),
                ("fast", 9_000, i64::MAX),
                ("slow", 1_000, 3_000)
            ]),
            "p={p}"
        );
    }
}

/// Fires 1 s of processing time after a key's last record (a timeout that restarts).
#[derive(Clone)]
struct Timeout;

const DEADLINE: ValueStateDescriptor<i64> = ValueStateDescriptor::new("deadline");

impl KeyedProcessFunction<String, Ev, (String, i64, i64)> for Timeout {
    fn process_element(
        &mut self,
        _: Ev,
        ctx: &mut KeyedContext<'_, String>,
        _: &mut Collector<'_, (String, i64, i64)>,
    ) {
        let now = ctx.current_processing_time();
        assert_eq!(
            Some(now),
            ctx.timestamp(),
            "the replayed clock follows the records"
        );
        let deadline = ctx.value_state(&DEADLINE);
        if let Some(old) = deadline.value() {
            ctx.timer_service().delete_processing_time_timer(old);
        }
        deadline.update(now + 1_000);
        ctx.timer_service()
            .register_processing_time_timer(now + 1_000);
    }
    fn on_timer(
        &mut self,
        t: i64,
        ctx: &mut KeyedContext<'_, String>,
        out: &mut Collector<'_, (String, i64, i64)>,
    ) {
        assert_eq!(ctx.time_domain(), Some(TimeDomain::ProcessingTime));
        // Processing-time results carry no timestamp (Flink erases it).
        assert_eq!(ctx.timestamp(), None);
        ctx.value_state(&DEADLINE).clear();
        out.collect((ctx.current_key(), t, ctx.current_processing_time()));
    }
}

#[test]
fn processing_time_timers_on_the_replayed_clock() {
    for p in PARALLELISMS {
        let env = sim_env(p);
        let out = env
            .from_timed_collection(vec![
                (1_000, ev("a", 1_000)),
                (1_500, ev("b", 1_500)),
                (1_800, ev("a", 1_800)),
                (4_000, ev("c", 4_000)),
                (6_000, ev("a", 6_000)),
            ])
            .key_by(|e: &Ev| e.0.clone())
            .process(Timeout)
            .collect();
        env.execute("processing time").unwrap();
        // a's first timer (2000) was deleted; b and a fire when the clock reaches 4000, c
        // at 6000. a's last timer (7000) is after the end of input: like Flink, pending
        // processing-time timers do not fire when the input ends.
        assert_eq!(
            out.sorted(),
            report(&[
                ("a", 2_800, 4_000),
                ("b", 2_500, 4_000),
                ("c", 5_000, 6_000)
            ]),
            "p={p}"
        );
        assert!(out.records().iter().all(|(_, ts)| ts.is_none()));
    }
}

#[test]
fn ingestion_time_from_the_replayed_clock() {
    for p in PARALLELISMS {
        let env = sim_env(p);
        let (tx, source) = ChannelSource::new();
        let stamped = env.from_source(source, WatermarkStrategy::for_ingestion_time(), "ingest");
        let raw = stamped.collect();
        let windows = stamped
            .key_by(|s: &String| s.clone())
            .window(TumblingEventTimeWindows::of(Duration::from_secs(1)))
            .apply(
                |k: &String,
                 w: &TimeWindow,
                 es: &[String],
                 out: &mut Collector<'_, (String, i64, usize)>| {
                    out.collect((k.clone(), w.start, es.len()))
                },
            )
            .collect();
        for (t, v) in [(1_000, "a"), (1_500, "a"), (1_700, "b"), (2_500, "a")] {
            tx.send(Feed::ProcessingTime(t)).unwrap();
            tx.send(Feed::Record(v.to_string())).unwrap();
        }
        drop(tx);
        env.execute("ingestion").unwrap();
        assert_eq!(
            sorted(raw.records()),
            vec![
                ("a".to_string(), Some(1_000)),
                ("a".to_string(), Some(1_500)),
                ("a".to_string(), Some(2_500)),
                ("b".to_string(), Some(1_700)),
            ],
            "p={p}"
        );
        assert_eq!(
            sorted(windows.records()),
            vec![
                (("a".to_string(), 1_000, 2), Some(1_999)),
                (("a".to_string(), 2_000, 1), Some(2_999)),
                (("b".to_string(), 1_000, 1), Some(1_999)),
            ],
            "p={p}"
        );
    }
}

#[test]
fn ingestion_time_of_a_replayed_collection_is_its_replay_time() {
    // A timed collection replays its records at their timestamps; with ingestion time
    // each record is stamped with the (replayed) processing time at which it enters.
    for p in PARALLELISMS {
        let env = sim_env(p);
        let out = env
            .from_source(
                CollectionSource::timed(vec![(1_000, 1), (1_400, 2), (2_200, 3)]),
                WatermarkStrategy::for_ingestion_time(),
                "replay",
            )
            .window_all(TumblingEventTimeWindows::of(Duration::from_secs(1)))
            .reduce(|a: i32, b: i32| a + b)
            .collect();
        env.execute("replayed ingestion").unwrap();
        assert_eq!(
            sorted(out.records()),
            vec![(3, Some(1_999)), (3, Some(2_999))],
            "p={p}"
        );
    }
}

#[derive(Clone)]
struct LateTimer;

impl KeyedProcessFunction<String, Ev, (String, i64, i64)> for LateTimer {
    fn process_element(
        &mut self,
        v: Ev,
        ctx: &mut KeyedContext<'_, String>,
        _: &mut Collector<'_, (String, i64, i64)>,
    ) {
        if v.0 == "past" {
            assert_eq!(ctx.current_watermark(), 4_999);
            ctx.timer_service().register_event_time_timer(1_000);
        }
    }
    fn on_timer(
        &mut self,
        t: i64,
        ctx: &mut KeyedContext<'_, String>,
        out: &mut Collector<'_, (String, i64, i64)>,
    ) {
        out.collect((ctx.current_key(), t, ctx.current_watermark()));
    }
}

#[test]
fn a_timer_behind_the_watermark_fires_at_the_next_watermark() {
    for p in PARALLELISMS {
        // A watermark (timestamp − 1) after each record.
        let got = {
            let env = per_record_env(p);
            let out = env
                .from_source(
                    CollectionSource::timed(vec![
                        (5_000, ev("first", 5_000)),
                        (5_000, ev("past", 5_000)),
                        (6_000, ev("next", 6_000)),
                    ]),
                    WatermarkStrategy::for_monotonous_timestamps(),
                    "events",
                )
                .key_by(|e: &Ev| e.0.clone())
                .process(LateTimer)
                .collect();
            env.execute("timer in the past").unwrap();
            out.sorted()
        };
        assert_eq!(got, report(&[("past", 1_000, 5_999)]), "p={p}");
    }
}

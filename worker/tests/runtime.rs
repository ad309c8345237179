//! Conformance: how jobs run and end. Bounded input ends the job (the final watermark
//! fires event-time timers); cancellation; failures in user code name the operator,
//! subtask and input position and never hang the job; backpressure bounds what is in
//! flight; the end-of-job summary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use std::time::{Duration, Instant};
use strom::prelude::*;
use strom::runtime::metrics::format_summary;

#[derive(Clone)]
struct FarFuture;

impl KeyedProcessFunction<u64, u64, (u64, i64, i64)> for FarFuture {
    fn process_element(
        &mut self,
        v: u64,
        ctx: &mut KeyedContext<'_, u64>,
        _: &mut Collector<'_, (u64, i64, i64)>,
    ) {
        let ts = ctx.timestamp().unwrap();
        ctx.timer_service()
            .register_event_time_timer(ts + 1_000_000_000);
        let _ = v;
    }
    fn on_timer(
        &mut self,
        t: i64,
        ctx: &mut KeyedContext<'_, u64>,
        out: &mut Collector<'_, (u64, i64, i64)>,
    ) {
        out.collect((ctx.current_key(), t, ctx.current_watermark()));
    }
}

#[test]
fn end_of_input_fires_pending_event_time_timers_and_windows() {
    for p in PARALLELISMS {
        let env = env(p);
        let src = env.from_source(
            CollectionSource::timed(vec![(1, 1u64), (2, 2), (3, 3)]),
            WatermarkStrategy::for_monotonous_timestamps(),
            "numbers",
        );
        let timers = src.key_by(|v: &u64| *v).process(FarFuture).collect();
        let windows = src
            .window_all(TumblingEventTimeWindows::of(Duration::from_secs(3_600)))
            .reduce(|a: u64, b: u64| a + b)
            .collect();
        let result = env.execute("end of input").unwrap();
        assert!(!result.cancelled);
        assert_eq!(
            timers.sorted(),
            vec![
                (1, 1_000_000_001, i64::MAX),
                (2, 1_000_000_002, i64::MAX),
                (3, 1_000_000_003, i64::MAX)
            ],
            "p={p}"
        );
        assert_eq!(windows.records(), vec![(6, Some(3_599_999))], "p={p}");
    }
}

#[test]
fn cancelling_an_unbounded_job() {
    for p in PARALLELISMS {
        let env = env(p);
        let seen = env
            .add_source(GeneratorSource::new(|i| i), None, "forever")
            .map(|i: u64| i * 2)
            .key_by(|i: &u64| i % 16)
            .reduce(|a: u64, b: u64| a.max(b))
            .collect();
        cancel_once_running(&env, &seen, &format!("p={p}"));
    }
}

/// Starts the job, waits until it has produced 1,000 records, cancels it, and checks that
/// it ends as cancelled within two seconds.
fn cancel_once_running(env: &StreamEnv, seen: &CollectHandle<u64>, what: &str) {
    let job = env.execute_async("to cancel").unwrap();
    assert!(
        eventually(Duration::from_secs(5), || seen.len() > 1_000),
        "{what}"
    );
    let asked = Instant::now();
    job.cancel();
    let result = job.join().unwrap();
    assert!(result.cancelled, "{what}");
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "cancel took {:?}, {what}",
        asked.elapsed()
    );
}

/// A reader that emits until the output says it is full, as readers should.
struct UntilFull;

impl Source<u64> for UntilFull {
    fn is_bounded(&self) -> bool {
        false
    }
    fn create_reader(&self, _: &SourceContext) -> Result<Box<dyn SourceReader<u64>>, BoxError> {
        struct Reader(u64);
        impl SourceReader<u64> for Reader {
            fn poll(&mut self, out: &mut SourceOutput<'_, u64>) -> Result<SourcePoll, BoxError> {
                while !out.is_full() {
                    self.0 += 1;
                    out.collect_with_timestamp(self.0, self.0 as i64);
                }
                Ok(SourcePoll::More)
            }
        }
        Ok(Box::new(Reader(0)))
    }
}

/// Regression: once the tasks downstream of a source were gone, a reader looping until
/// `is_full()` never saw it become true and spun for ever, so cancelling hung.
#[test]
fn cancelling_stops_a_reader_that_emits_until_full() {
    for simulated in [false, true] {
        for p in PARALLELISMS {
            let env = env(p);
            if simulated {
                env.set_processing_time(ProcessingTimeMode::Simulated);
            }
            let seen = env
                .from_source(
                    UntilFull,
                    WatermarkStrategy::for_monotonous_timestamps(),
                    "until full",
                )
                .key_by(|i: &u64| i % 16)
                .reduce(|a: u64, b: u64| a.max(b))
                .collect();
            cancel_once_running(&env, &seen, &format!("p={p}, simulated={simulated}"));
        }
    }
}

#[test]
fn a_panic_in_one_subtask_fails_the_job_naming_operator_subtask_and_record() {
    for p in PARALLELISMS {
        let env = env(p);
        // The generator gives subtask s of p the contiguous range [40s/p, 40(s+1)/p).
        env.add_source(GeneratorSource::new(|i| i).count(40), None, "numbers")
            .forward()
            .map(|i: u64| if i == 27 { panic!("27 is bad") } else { i })
            .name("picky")
            .collect();
        let err = env.execute("panics").unwrap_err();
        let s = (0..p)
            .find(|s| s * 40 / p <= 27 && 27 < (s + 1) * 40 / p)
            .unwrap();
        let n = 27 - s * 40 / p + 1;
        assert_eq!(
            err.to_string(),
            format!(
                "job failed: operator 'picky' (subtask {}/{p}) panicked while processing input record #{n}: 27 is bad",
                s + 1
            )
        );
        assert!(matches!(
            err,
            JobError::TaskFailed(TaskError::UserCodePanic { .. })
        ));
    }
}

#[test]
fn a_panic_with_an_unbounded_source_fails_the_job_without_hanging() {
    for p in PARALLELISMS {
        let env = env(p);
        env.add_source(GeneratorSource::new(|i| i), None, "forever")
            .rebalance()
            .map(|i: u64| if i == 5_000 { panic!("boom at {i}") } else { i })
            .name("fragile")
            .key_by(|i: &u64| i % 8)
            .reduce(|a: u64, b: u64| a + b)
            .collect();
        let started = Instant::now();
        let err = env.execute("fragile").unwrap_err().to_string();
        assert!(
            err.starts_with("job failed: operator 'fragile' (subtask "),
            "{err}"
        );
        assert!(
            err.contains("panicked while processing input record #"),
            "{err}"
        );
        assert!(err.ends_with(": boom at 5000"), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
    }
}

#[derive(Clone)]
struct BadTimer;

impl KeyedProcessFunction<u64, u64, u64> for BadTimer {
    fn process_element(
        &mut self,
        v: u64,
        ctx: &mut KeyedContext<'_, u64>,
        _: &mut Collector<'_, u64>,
    ) {
        ctx.timer_service()
            .register_event_time_timer(v as i64 * 1_000);
    }
    fn on_timer(&mut self, t: i64, _: &mut KeyedContext<'_, u64>, _: &mut Collector<'_, u64>) {
        if t == 2_000 {
            panic!("timer trouble");
        }
    }
}

#[test]
fn panics_in_timers_and_open_name_where_they_happened() {
    let env = StreamEnv::new();
    env.from_source(
        CollectionSource::timed(vec![(1, 1u64), (2, 2), (3, 3)]),
        WatermarkStrategy::for_monotonous_timestamps(),
        "numbers",
    )
    .key_by(|v: &u64| *v)
    .process(BadTimer)
    .name("timers")
    .collect();
    assert_eq!(
        env.execute("timer panic").unwrap_err().to_string(),
        "job failed: operator 'timers' (subtask 1/1) panicked while firing the EventTime timer for 2000: timer trouble"
    );

    #[derive(Clone)]
    struct BadOpen;
    impl RichMapFunction<u64, u64> for BadOpen {
        fn open(&mut self, ctx: &RuntimeContext<'_>) {
            if ctx.subtask_index() == 1 {
                panic!("cannot connect");
            }
        }
        fn map(&mut self, v: u64) -> u64 {
            v
        }
    }
    let env = common::env(2);
    env.from_sequence(1, 10)
        .map_rich(BadOpen)
        .name("opener")
        .collect();
    assert_eq!(
        env.execute("open panic").unwrap_err().to_string(),
        "job failed: operator 'opener' (subtask 2/2) panicked while opening the operator: cannot connect"
    );
}

struct FailingSink;

impl Sink<u64> for FailingSink {
    fn create_writer(&self, _: &SinkContext) -> Result<Box<dyn SinkWriter<u64>>, BoxError> {
        Ok(Box::new(FailingWriter))
    }
}

struct FailingWriter;

impl SinkWriter<u64> for FailingWriter {
    fn write(&mut self, v: u64, _: Option<i64>) -> Result<(), BoxError> {
        if v == 3 {
            Err("disk full".into())
        } else {
            Ok(())
        }
    }
}

struct FailingSource;

impl Source<u64> for FailingSource {
    fn is_bounded(&self) -> bool {
        true
    }
    fn create_reader(&self, _: &SourceContext) -> Result<Box<dyn SourceReader<u64>>, BoxError> {
        Ok(Box::new(FailingReader { polls: 0 }))
    }
}

struct FailingReader {
    polls: u64,
}

impl SourceReader<u64> for FailingReader {
    fn poll(&mut self, out: &mut SourceOutput<'_, u64>) -> Result<SourcePoll, BoxError> {
        self.polls += 1;
        if self.polls > 2 {
            return Err("connection reset".into());
        }
        out.collect(self.polls);
        Ok(SourcePoll::More)
    }
}

#[test]
fn failing_sinks_and_sources_fail_the_job_with_their_error() {
    let env = StreamEnv::new();
    env.from_sequence(1, 5).sink_to(FailingSink).name("writer");
    let err = env.execute("sink").unwrap_err().to_string();
    assert!(
        err.starts_with("job failed: operator 'writer' (subtask 1/1) failed: sink failed writing"),
        "{err}"
    );
    assert!(err.ends_with("record #3: disk full"), "{err}");
    let env = StreamEnv::new();
    env.add_source(FailingSource, None, "flaky").collect();
    assert_eq!(
        env.execute("source").unwrap_err().to_string(),
        "job failed: operator 'Source: flaky' (subtask 1/1) failed: source failed: connection reset"
    );
}

#[test]
fn backpressure_bounds_what_is_in_flight() {
    let env = StreamEnv::new();
    let (batch, capacity) = (16usize, 2usize);
    env.configure(|c| {
        c.batch_size = batch;
        c.channel_capacity = capacity;
    });
    env.add_source(GeneratorSource::new(|i| i), None, "fast")
        .add_sink(|_: u64| std::thread::sleep(Duration::from_millis(1)))
        .name("slow")
        .disable_chaining();
    let job = env.execute_async("backpressure").unwrap();
    // Buffers of the writer, the channel, and a batch being handed over: a few batches.
    let bound = (capacity * batch * 4) as u64;
    let started = Instant::now();
    let mut max_in_flight = 0;
    while started.elapsed() < Duration::from_millis(400) {
        let m = job.metrics();
        // Read the consumer first: what the producer sent can only have grown since.
        let consumed = totals(m, "slow").records_in;
        let produced = totals(m, "Source: fast").records_out;
        max_in_flight = max_in_flight.max(produced.saturating_sub(consumed));
        std::thread::sleep(Duration::from_millis(10));
    }
    let consumed = totals(job.metrics(), "slow").records_in;
    job.cancel();
    let result = job.join().unwrap();
    assert!(result.cancelled);
    assert!(consumed > 50, "the sink made progress ({consumed})");
    assert!(
        max_in_flight <= bound,
        "{max_in_flight} records in flight, more than {bound}"
    );
    let produced = totals(&result.metrics, "Source: fast").records_out;
    assert!(
        produced <= consumed + 2 * bound,
        "the generator ran ahead: {produced} produced, {consumed} consumed"
    );
}

#[test]
fn summary_lists_every_operator_with_its_counts() {
    let env = env(2);
    env.from_collection((1..=10).collect::<Vec<u64>>())
        .filter(|v: &u64| v.is_multiple_of(2))
        .name("evens")
        .map(|v: u64| v * 10)
        .name("times ten")
        .collect();
    let result = env.execute("summary").unwrap();
    let text = format_summary("summary", "finished", result.duration, &result.metrics);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("job 'summary' finished after "),
        "{text}"
    );
    assert!(lines[0].ends_with(" s"), "{text}");
    let header: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        header,
        vec![
            "operator",
            "p",
            "records",
            "in",
            "records",
            "out",
            "side/late/dlq"
        ],
        "{text}"
    );
    let row = |name: &str| -> Vec<String> {
        let line = lines
            .iter()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in {text}"));
        line.trim_start()[name.len()..]
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        row("Source: Collection Source"),
        vec!["1", "0", "10"],
        "{text}"
    );
    assert_eq!(row("evens"), vec!["2", "10", "5"], "{text}");
    assert_eq!(row("times ten"), vec!["2", "5", "5"], "{text}");
    assert_eq!(row("Collect"), vec!["2", "5", "0"], "{text}");
    assert_eq!(lines.len(), 6, "{text}");
}

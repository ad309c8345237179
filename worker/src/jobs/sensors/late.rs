//! Seed example: `LateDataHandling` (book chapter 6). Counts readings per sensor per
//! 10 s tumbling event-time window, while some readings arrive out of order:
//! - readings within the allowed lateness of a window that already fired update it: the
//!   window fires again, and the book's `UpdatingWindowCountFunction` marks the result
//!   `update` instead of `first`, with a flag in per-window state;
//! - readings later than that go to the side output `late-readings` instead of being
//!   dropped.
//!
//! Generated readings are shuffled like the book's `TimestampShuffler`: a fraction of them
//! is moved back in time, by up to 15 s, so the demo shows both updates and late data.

use super::{
    OUT_OF_ORDERNESS, SensorReading, SensorSource, emit, emit_results, positive_duration, readings,
    sensor_args,
};
use crate::api::{DataStream, StreamEnv};
use crate::functions::Collector;
use crate::jobs::{ArgSpec, JobArgs, JobSpec};
use crate::runtime::output::OutputTag;
use crate::state::ValueStateDescriptor;
use crate::time::{WatermarkGenerator, WatermarkOutput, WatermarkStrategy};
use crate::windows::{ProcessWindowFunction, TimeWindow, TumblingEventTimeWindows, WindowContext};
use anyhow::bail;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// The side output of readings too late for their window.
pub const LATE_READINGS: &str = "late-readings";

/// The tag of [`LATE_READINGS`].
pub fn late_readings_tag() -> OutputTag<SensorReading> {
    OutputTag::new(LATE_READINGS)
}

/// How many readings of a sensor a window holds, and whether this is the window's first
/// result or an update for late readings: `(sensor_1,10000,97,first)`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WindowCount {
    pub id: String,
    pub window_end: i64,
    pub count: u64,
    pub update: bool,
}

impl fmt::Display for WindowCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.update { "update" } else { "first" };
        write!(f, "({},{},{},{kind})", self.id, self.window_end, self.count)
    }
}

/// Whether the window has fired before (state of the key and window).
const IS_UPDATE: ValueStateDescriptor<bool> = ValueStateDescriptor::new("is-update");

/// Counts the readings of a window; results after the first are updates.
#[derive(Clone, Copy, Debug, Default)]
pub struct UpdatingWindowCountFunction;

impl ProcessWindowFunction<String, SensorReading, WindowCount, TimeWindow>
    for UpdatingWindowCountFunction
{
    fn process(
        &mut self,
        id: &String,
        ctx: &mut WindowContext<'_, String, TimeWindow>,
        readings: &[SensorReading],
        out: &mut Collector<'_, WindowCount>,
    ) {
        let is_update = ctx.window_state(&IS_UPDATE);
        let update = is_update.value().unwrap_or(false);
        if !update {
            is_update.update(true);
        }
        out.collect(WindowCount {
            id: id.clone(),
            window_end: ctx.window().end,
            count: readings.len() as u64,
            update,
        });
    }

    fn clear(&mut self, ctx: &mut WindowContext<'_, String, TimeWindow>) {
        // The window is gone for good (past its allowed lateness): so is its flag.
        ctx.window_state(&IS_UPDATE).clear();
    }
}

/// Readings counted per sensor per tumbling event-time `window`, updated for readings up
/// to `lateness` late; and the readings later than that.
pub fn count_readings_with_late_data(
    readings: &DataStream<SensorReading>,
    window: Duration,
    lateness: Duration,
) -> (DataStream<WindowCount>, DataStream<SensorReading>) {
    let tag = late_readings_tag();
    let counts = readings
        .key_by(|r: &SensorReading| r.id.clone())
        .window(TumblingEventTimeWindows::of(window))
        .allowed_lateness(lateness)
        .side_output_late_data(&tag)
        .process(UpdatingWindowCountFunction)
        .name("Count Readings per Window")
        .uid("count-readings-per-window");
    let late = counts.side_output(&tag);
    (counts, late)
}

/// Bounded out-of-orderness watermarks, emitted on every reading that raises the highest
/// timestamp rather than periodically. A source that runs ahead of real time (generated
/// data, a file) would otherwise move the watermark in jumps of a whole batch, skipping
/// the span in which a window has fired but still accepts late readings; here the
/// watermark advances as smoothly as the book's 100 ms sensor source makes it.
#[derive(Clone, Copy, Debug)]
pub struct EagerBoundedOutOfOrderness {
    bound: i64,
    max_timestamp: Option<i64>,
}

impl EagerBoundedOutOfOrderness {
    pub fn new(bound: Duration) -> Self {
        EagerBoundedOutOfOrderness {
            bound: bound.as_millis().min(i64::MAX as u128 / 2) as i64,
            max_timestamp: None,
        }
    }
}

impl WatermarkGenerator<SensorReading> for EagerBoundedOutOfOrderness {
    fn on_event(&mut self, _: &SensorReading, timestamp: i64, output: &mut WatermarkOutput) {
        if self.max_timestamp.is_none_or(|m| timestamp > m) {
            self.max_timestamp = Some(timestamp);
            output.emit_watermark(timestamp.saturating_sub(self.bound).saturating_sub(1));
        }
    }
    fn on_periodic_emit(&mut self, _: &mut WatermarkOutput) {}
}

/// Timestamps from the readings, [`EagerBoundedOutOfOrderness`] watermarks.
pub fn eager_watermarks(bound: Duration) -> WatermarkStrategy<SensorReading> {
    WatermarkStrategy::for_generator(move || EagerBoundedOutOfOrderness::new(bound))
        .with_timestamp_assigner(|r: &SensorReading| r.timestamp)
}

const ARGS: &[ArgSpec] = sensor_args![
    ArgSpec::new("window", "10s", "length of the tumbling event-time windows"),
    ArgSpec::new(
        "lateness",
        "5s",
        "allowed lateness: windows fire again (update) for readings up to this late; later ones are late readings",
    ),
    OUT_OF_ORDERNESS,
    ArgSpec::new(
        "delay",
        "15s",
        "generated readings only: the most a shuffled reading is moved back in time",
    ),
    ArgSpec::new(
        "delayed",
        "0.1",
        "generated readings only: the fraction of readings moved back in time (0 to 1)",
    ),
];

fn build(env: &StreamEnv, args: &JobArgs) -> anyhow::Result<()> {
    let window = positive_duration(args, "window")?;
    let lateness = args.duration("lateness")?;
    let delay = args.duration("delay")?;
    let delayed = args.f64("delayed")?;
    if !(0.0..=1.0).contains(&delayed) {
        bail!(
            "--arg delayed={delayed}: expected a fraction from 0 to 1 (delayed: the fraction of readings moved back in time)"
        );
    }
    let mut generated = SensorSource::from_args(env, args)?;
    generated.shuffle = Some((delayed, delay.as_millis().min(i64::MAX as u128) as i64));
    let bound = args.duration("out-of-orderness")?;
    let readings = readings(env, args, generated, eager_watermarks(bound))?;
    let (counts, late) = count_readings_with_late_data(&readings, window, lateness);
    let output = args.path("output");
    emit_results(
        env,
        args,
        &counts,
        Some("counts"),
        "Window Counts",
        |c: &WindowCount| c.id.clone(),
    )?;
    emit(
        &late,
        output.as_deref(),
        Some(LATE_READINGS),
        "Late Readings",
    );
    Ok(())
}

pub(super) fn job() -> JobSpec {
    JobSpec {
        name: "sensor-late",
        summary: "LateDataHandling (book ch. 6): counts per 10 s window, updated for late readings; later ones to a side output",
        args: ARGS,
        build,
    }
}

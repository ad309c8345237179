//! Seed example: `WindowFunctions` (book chapter 6). Per sensor and per 5 s tumbling
//! event-time window, the lowest and highest temperature as
//! `MinMaxTemp(id, min, max, window end)`:
//! - [`min_max_temperatures`]: a `ProcessWindowFunction` over all readings of the window
//!   (the book's `HighAndLowTempProcessFunction`);
//! - [`min_max_temperatures_incremental`]: a reduce that keeps only `(id, min, max)` per
//!   window, finished by a window function that adds the window's end (the book's
//!   incremental variant with `AssignWindowEndProcessFunction`). Same results, constant
//!   state per window.

use super::{
    MinMaxTemp, OUT_OF_ORDERNESS, SensorReading, SensorSource, emit_results, positive_duration,
    reading_watermarks, readings, sensor_args,
};
use crate::api::{DataStream, StreamEnv};
use crate::functions::Collector;
use crate::jobs::{ArgSpec, JobArgs, JobSpec};
use crate::windows::{ProcessWindowFunction, TimeWindow, TumblingEventTimeWindows, WindowContext};
use std::time::Duration;

/// Lowest and highest temperature of all readings of a window.
#[derive(Clone, Copy, Debug, Default)]
pub struct HighAndLowTempProcessFunction;

impl ProcessWindowFunction<String, SensorReading, MinMaxTemp, TimeWindow>
    for HighAndLowTempProcessFunction
{
    fn process(
        &mut self,
        id: &String,
        ctx: &mut WindowContext<'_, String, TimeWindow>,
        readings: &[SensorReading],
        out: &mut Collector<'_, MinMaxTemp>,
    ) {
        if readings.is_empty() {
            return;
        }
        let (min, max) = readings
            .iter()
            .map(|r| r.temperature)
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), t| {
                (lo.min(t), hi.max(t))
            });
        out.collect(MinMaxTemp {
            id: id.clone(),
            min,
            max,
            end_ts: ctx.window().end,
        });
    }
}

/// Turns the reduced `(id, min, max)` of a window into a `MinMaxTemp` with its end.
#[derive(Clone, Copy, Debug, Default)]
pub struct AssignWindowEndProcessFunction;

impl ProcessWindowFunction<String, (String, f64, f64), MinMaxTemp, TimeWindow>
    for AssignWindowEndProcessFunction
{
    fn process(
        &mut self,
        _: &String,
        ctx: &mut WindowContext<'_, String, TimeWindow>,
        reduced: &[(String, f64, f64)],
        out: &mut Collector<'_, MinMaxTemp>,
    ) {
        for (id, min, max) in reduced {
            out.collect(MinMaxTemp {
                id: id.clone(),
                min: *min,
                max: *max,
                end_ts: ctx.window().end,
            });
        }
    }
}

/// Min and max temperature per sensor per tumbling event-time `window`, from all the
/// window's readings.
pub fn min_max_temperatures(
    readings: &DataStream<SensorReading>,
    window: Duration,
) -> DataStream<MinMaxTemp> {
    readings
        .key_by(|r: &SensorReading| r.id.clone())
        .window(TumblingEventTimeWindows::of(window))
        .process(HighAndLowTempProcessFunction)
        .name("Min/Max Temperature")
        .uid("min-max-temperature")
}

/// The same, aggregated incrementally: each window keeps one `(id, min, max)`.
pub fn min_max_temperatures_incremental(
    readings: &DataStream<SensorReading>,
    window: Duration,
) -> DataStream<MinMaxTemp> {
    readings
        .map(|r: SensorReading| (r.id, r.temperature, r.temperature))
        .name("To (id, min, max)")
        .key_by(|t: &(String, f64, f64)| t.0.clone())
        .window(TumblingEventTimeWindows::of(window))
        .reduce_with(
            |a: (String, f64, f64), b: (String, f64, f64)| (a.0, a.1.min(b.1), a.2.max(b.2)),
            AssignWindowEndProcessFunction,
        )
        .name("Min/Max Temperature (incremental)")
        .uid("min-max-temperature-incremental")
}

const ARGS: &[ArgSpec] = sensor_args![
    ArgSpec::new("window", "5s", "length of the tumbling event-time windows"),
    ArgSpec::new(
        "incremental",
        "false",
        "true = reduce each window incrementally to (id, min, max); false = a window function over all its readings",
    ),
    OUT_OF_ORDERNESS,
];

fn build(env: &StreamEnv, args: &JobArgs) -> anyhow::Result<()> {
    let window = positive_duration(args, "window")?;
    let incremental = args.bool("incremental")?;
    let generated = SensorSource::from_args(env, args)?;
    let readings = readings(
        env,
        args,
        generated,
        reading_watermarks(args.duration("out-of-orderness")?),
    )?;
    let min_max = if incremental {
        min_max_temperatures_incremental(&readings, window)
    } else {
        min_max_temperatures(&readings, window)
    };
    emit_results(
        env,
        args,
        &min_max,
        None,
        "Min/Max Temperatures",
        |m: &MinMaxTemp| m.id.clone(),
    )
}

pub(super) fn job() -> JobSpec {
    JobSpec {
        name: "sensor-min-max",
        summary: "HighAndLowTempProcessFunction (book ch. 6): min and max temperature per sensor per 5 s window",
        args: ARGS,
        build,
    }
}

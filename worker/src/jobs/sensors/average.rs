//! Seed example: `AverageSensorReadings` (book chapter 1). Converts readings from
//! Fahrenheit to Celsius and emits, per sensor and per 1 s tumbling event-time window,
//! the average temperature as `SensorReading(id, window end, average)`, computed by a
//! window function over the window's readings (the book's `TemperatureAverager`).

use super::{
    OUT_OF_ORDERNESS, SensorReading, SensorSource, emit_results, positive_duration,
    reading_watermarks, readings, sensor_args,
};
use crate::api::{DataStream, StreamEnv};
use crate::functions::Collector;
use crate::jobs::{ArgSpec, JobArgs, JobSpec};
use crate::windows::{ProcessWindowFunction, TimeWindow, TumblingEventTimeWindows, WindowContext};
use std::time::Duration;

/// °F to °C.
pub fn fahrenheit_to_celsius(fahrenheit: f64) -> f64 {
    // Multiplying before dividing keeps whole results whole: 50 °F is exactly 10 °C.
    (fahrenheit - 32.0) * 5.0 / 9.0
}

/// The average temperature of a window, as a reading at the window's end.
#[derive(Clone, Copy, Debug, Default)]
pub struct TemperatureAverager;

impl ProcessWindowFunction<String, SensorReading, SensorReading, TimeWindow>
    for TemperatureAverager
{
    fn process(
        &mut self,
        id: &String,
        ctx: &mut WindowContext<'_, String, TimeWindow>,
        readings: &[SensorReading],
        out: &mut Collector<'_, SensorReading>,
    ) {
        if readings.is_empty() {
            return;
        }
        let sum: f64 = readings.iter().map(|r| r.temperature).sum();
        out.collect(SensorReading::new(
            id.clone(),
            ctx.window().end,
            sum / readings.len() as f64,
        ));
    }
}

/// Average temperature in °C per sensor per tumbling event-time `window`. The readings
/// (°F) must carry timestamps and watermarks.
pub fn average_temperatures(
    readings: &DataStream<SensorReading>,
    window: Duration,
) -> DataStream<SensorReading> {
    readings
        .map(|r: SensorReading| SensorReading {
            temperature: fahrenheit_to_celsius(r.temperature),
            ..r
        })
        .name("Fahrenheit to Celsius")
        .key_by(|r: &SensorReading| r.id.clone())
        .window(TumblingEventTimeWindows::of(window))
        .process(TemperatureAverager)
        .name("Average Temperature")
        .uid("average-temperature")
}

const ARGS: &[ArgSpec] = sensor_args![
    ArgSpec::new(
        "window",
        "1s",
        "length of the tumbling event-time windows to average over"
    ),
    OUT_OF_ORDERNESS,
];

fn build(env: &StreamEnv, args: &JobArgs) -> anyhow::Result<()> {
    let window = positive_duration(args, "window")?;
    let generated = SensorSource::from_args(env, args)?;
    let readings = readings(
        env,
        args,
        generated,
        reading_watermarks(args.duration("out-of-orderness")?),
    )?;
    let averages = average_temperatures(&readings, window);
    emit_results(
        env,
        args,
        &averages,
        None,
        "Averages",
        |r: &SensorReading| r.id.clone(),
    )
}

pub(super) fn job() -> JobSpec {
    JobSpec {
        name: "sensor-average",
        summary: "AverageSensorReadings (book ch. 1): average °C per sensor per 1 s event-time window",
        args: ARGS,
        build,
    }
}

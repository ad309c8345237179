//! Seed example: `ProcessFunctionTimers` (book chapter 6), the `TempIncreaseAlertFunction`.
//! A keyed process function remembers each sensor's last temperature and, on the first
//! rise, registers a processing-time timer 1 s ahead; a fall deletes the timer. When the
//! timer fires, the temperature has risen (never fallen) for 1 s of processing time and
//! the job emits `Temperature of sensor_X monotonically increased for 1 second.`
//!
//! By default the job runs on simulated processing time, which follows the readings'
//! timestamps, so generated or recorded readings give the same alerts on every run; with
//! `processing-time=wall` it uses the system clock (then give a `rate`, e.g. 100).

use super::{
    SensorReading, SensorSource, emit_results, positive_duration, reading_watermarks, readings,
    sensor_args,
};
use crate::api::{DataStream, StreamEnv};
use crate::config::ProcessingTimeMode;
use crate::functions::{Collector, KeyedContext, KeyedProcessFunction};
use crate::jobs::{ArgSpec, JobArgs, JobSpec};
use crate::state::ValueStateDescriptor;
use std::time::Duration;

/// The last temperature of the sensor.
const LAST_TEMP: ValueStateDescriptor<f64> = ValueStateDescriptor::new("last-temp");
/// The processing time of the pending timer, if one is registered.
const CURRENT_TIMER: ValueStateDescriptor<i64> = ValueStateDescriptor::new("current-timer");

/// Alerts when a sensor's temperature has risen for `interval_ms` of processing time.
#[derive(Clone, Debug)]
pub struct TempIncreaseAlertFunction {
    pub interval_ms: i64,
}

impl TempIncreaseAlertFunction {
    pub fn new(interval: Duration) -> Self {
        TempIncreaseAlertFunction {
            interval_ms: interval.as_millis().min(i64::MAX as u128 / 2) as i64,
        }
    }

    /// "1 second", "5 seconds", "500 ms".
    fn interval_text(&self) -> String {
        match self.interval_ms {
            1_000 => "1 second".to_string(),
            ms if ms % 1_000 == 0 => format!("{} seconds", ms / 1_000),
            ms => format!("{ms} ms"),
        }
    }
}

impl KeyedProcessFunction<String, SensorReading, String> for TempIncreaseAlertFunction {
    fn process_element(
        &mut self,
        r: SensorReading,
        ctx: &mut KeyedContext<'_, String>,
        _: &mut Collector<'_, String>,
    ) {
        let last_temp = ctx.value_state(&LAST_TEMP);
        let current_timer = ctx.value_state(&CURRENT_TIMER);
        let previous = last_temp.value();
        last_temp.update(r.temperature);
        let timer = current_timer.value();
        match previous {
            // The first reading of a sensor has nothing to compare with.
            None => {}
            Some(prev) if r.temperature < prev => {
                if let Some(t) = timer {
                    ctx.timer_service().delete_processing_time_timer(t);
                }
                current_timer.clear();
            }
            Some(prev) if r.temperature > prev && timer.is_none() => {
                let t = ctx
                    .current_processing_time()
                    .saturating_add(self.interval_ms);
                ctx.timer_service().register_processing_time_timer(t);
                current_timer.update(t);
            }
            // Unchanged, or still rising with a timer pending.
            Some(_) => {}
        }
    }

    fn on_timer(
        &mut self,
        _: i64,
        ctx: &mut KeyedContext<'_, String>,
        out: &mut Collector<'_, String>,
    ) {
        out.collect(format!(
            "{ALERT_PREFIX}{}{ALERT_MIDDLE}{}.",
            ctx.current_key(),
            self.interval_text()
        ));
        // A further rise starts a new interval.
        ctx.value_state(&CURRENT_TIMER).clear();
    }
}

const ALERT_PREFIX: &str = "Temperature of ";
const ALERT_MIDDLE: &str = " monotonically increased for ";

/// The sensor an alert is for (the key of its Kafka record): the alert is the book's
/// plain text, so the id is read back from it.
pub fn rising_sensor(alert: &str) -> &str {
    alert
        .strip_prefix(ALERT_PREFIX)
        .and_then(|rest| rest.rsplit_once(ALERT_MIDDLE))
        .map_or(alert, |(id, _)| id)
}

/// Alerts for sensors whose temperature rose for `interval` of processing time.
pub fn temperature_rise_alerts(
    readings: &DataStream<SensorReading>,
    interval: Duration,
) -> DataStream<String> {
    readings
        .key_by(|r: &SensorReading| r.id.clone())
        .process(TempIncreaseAlertFunction::new(interval))
        .name("Temperature Increase Alerts")
        .uid("temperature-increase-alerts")
}

const ARGS: &[ArgSpec] = sensor_args![
    ArgSpec::new(
        "interval",
        "1s",
        "how long a temperature must rise (processing time) before an alert"
    ),
    ArgSpec::new(
        "processing-time",
        "simulated",
        "simulated = processing time follows the readings' timestamps (same alerts every run); wall = the system clock",
    ),
];

fn build(env: &StreamEnv, args: &JobArgs) -> anyhow::Result<()> {
    let interval = positive_duration(args, "interval")?;
    let mode = match args.choice("processing-time", &["simulated", "wall"])? {
        "wall" => ProcessingTimeMode::Wall,
        _ => ProcessingTimeMode::Simulated,
    };
    env.set_processing_time(mode);
    let generated = SensorSource::from_args(env, args)?;
    let mut readings = readings(env, args, generated, reading_watermarks(Duration::ZERO))?;
    if mode == ProcessingTimeMode::Simulated {
        // A replayed clock needs one sequence of timestamps: downstream, simulated time is
        // the minimum over the input channels, so parallel readers (or one without data,
        // still starting) would hold it back and alerts would depend on thread timing.
        readings = readings.set_parallelism(1);
    }
    let alerts = temperature_rise_alerts(&readings, interval);
    emit_results(env, args, &alerts, None, "Alerts", |alert: &String| {
        rising_sensor(alert).to_string()
    })
}

pub(super) fn job() -> JobSpec {
    JobSpec {
        name: "sensor-temp-rise",
        summary: "TempIncreaseAlertFunction (book ch. 6): alert when a sensor's temperature rises for 1 s (timers)",
        args: ARGS,
        build,
    }
}

//! Seed example: `MultiStreamTransformations` (book chapter 5). Temperature readings,
//! keyed by sensor, are connected with the broadcast stream of the smoke detector's
//! levels; a reading above a threshold (100 °F) while the smoke level is `High` raises
//! `Alert(Risk of fire! <reading>, <timestamp>)`.
//!
//! The book's `RaiseAlertFlatMap` applies whichever smoke level arrived last, so its
//! alerts depend on how the two streams happen to interleave. Here each reading is
//! judged by the smoke level in force at the reading's event time: the broadcast side
//! keeps the levels by timestamp in broadcast state, and the keyed side holds hot
//! readings until the watermark (of both inputs) passes them, with an event-time timer.
//! The alerts are then the same on every run and at any parallelism.

use super::{
    Alert, OUT_OF_ORDERNESS, READING_INTERVAL_MS, SensorReading, SensorSource, SmokeLevel,
    emit_results, generated_smoke_level, parse_smoke_level, reading_watermarks, readings,
    reads_input, sensor_args,
};
use crate::api::{DataStream, StreamEnv};
use crate::connectors::{FileSource, GeneratorSource};
use crate::functions::{
    Collector, KeyedBroadcastContext, KeyedBroadcastProcessFunction, KeyedContext,
};
use crate::jobs::wordcount::print_dead_letters;
use crate::jobs::{ArgSpec, JobArgs, JobSpec};
use crate::state::{ListStateDescriptor, MapStateDescriptor};
use crate::time::WatermarkStrategy;
use anyhow::bail;

/// Smoke levels by the event time from which they hold (broadcast state).
const SMOKE_LEVELS: MapStateDescriptor<i64, SmokeLevel> = MapStateDescriptor::new("smoke-levels");
/// Readings above the threshold, waiting for the watermark to reach them.
const HOT_READINGS: ListStateDescriptor<SensorReading> = ListStateDescriptor::new("hot-readings");

/// The smoke level at `timestamp`: the latest one set at or before it (`Low` before any).
fn level_at<'a>(
    levels: impl Iterator<Item = (&'a i64, &'a SmokeLevel)>,
    timestamp: i64,
) -> SmokeLevel {
    levels
        .take_while(|(t, _)| **t <= timestamp)
        .last()
        .map_or(SmokeLevel::Low, |(_, l)| *l)
}

/// Raises an alert for a reading above `threshold` °F while the smoke level is `High`.
#[derive(Clone, Debug)]
pub struct RaiseAlertFunction {
    pub threshold: f64,
}

impl KeyedBroadcastProcessFunction<String, SensorReading, SmokeLevel, Alert>
    for RaiseAlertFunction
{
    fn process_element(
        &mut self,
        r: SensorReading,
        ctx: &mut KeyedContext<'_, String>,
        _: &mut Collector<'_, Alert>,
    ) {
        // Only hot readings can raise an alert; the rest need no state.
        if r.temperature <= self.threshold {
            return;
        }
        ctx.timer_service().register_event_time_timer(r.timestamp);
        ctx.list_state(&HOT_READINGS).add(r);
    }

    fn process_broadcast_element(
        &mut self,
        level: SmokeLevel,
        ctx: &mut KeyedBroadcastContext<'_, String>,
        _: &mut Collector<'_, Alert>,
    ) {
        // A level without a timestamp holds from the beginning of time.
        let from = ctx.timestamp().unwrap_or(i64::MIN);
        let watermark = ctx.current_watermark();
        let mut levels = ctx.broadcast_state(&SMOKE_LEVELS);
        levels.put(from, level);
        // Levels replaced before the watermark can no longer decide an on-time reading.
        let in_force = levels
            .iter()
            .map(|(t, _)| *t)
            .take_while(|t| *t <= watermark)
            .last();
        if let Some(in_force) = in_force {
            let stale: Vec<i64> = levels
                .iter()
                .map(|(t, _)| *t)
                .take_while(|t| *t < in_force)
                .collect();
            for t in stale {
                levels.remove(&t);
            }
        }
    }

    fn on_timer(
        &mut self,
        timestamp: i64,
        ctx: &mut KeyedContext<'_, String>,
        out: &mut Collector<'_, Alert>,
    ) {
        let hot = ctx.list_state(&HOT_READINGS);
        let (due, later): (Vec<SensorReading>, Vec<SensorReading>) = hot
            .get()
            .into_iter()
            .partition(|r| r.timestamp <= timestamp);
        hot.update(later);
        let levels = ctx.broadcast_state(&SMOKE_LEVELS);
        for r in due {
            if level_at(levels.iter(), r.timestamp) == SmokeLevel::High {
                let ts = r.timestamp;
                out.collect_with_timestamp(
                    Alert {
                        message: format!("{ALERT_PREFIX}{r}"),
                        timestamp: ts,
                    },
                    ts,
                );
            }
        }
    }
}

const ALERT_PREFIX: &str = "Risk of fire! ";

/// The sensor an alert is for (the key of its Kafka record), read back from the book's
/// message `Risk of fire! SensorReading(id,timestamp,temperature)`; ids may hold commas,
/// so the last two fields are split off from the right.
pub fn burning_sensor(alert: &Alert) -> &str {
    alert
        .message
        .strip_prefix(ALERT_PREFIX)
        .and_then(|m| m.strip_prefix("SensorReading("))
        .and_then(|m| m.rsplitn(3, ',').nth(2))
        .unwrap_or(&alert.message)
}

/// Fire alerts: readings above `threshold` °F while the smoke level is `High`. Both
/// streams must carry timestamps and watermarks.
pub fn fire_alerts(
    readings: &DataStream<SensorReading>,
    smoke: &DataStream<SmokeLevel>,
    threshold: f64,
) -> DataStream<Alert> {
    readings
        .key_by(|r: &SensorReading| r.id.clone())
        .connect_broadcast(&smoke.broadcast_stream())
        .process(RaiseAlertFunction { threshold })
        .name("Raise Fire Alerts")
        .uid("raise-fire-alerts")
}

const ARGS: &[ArgSpec] = sensor_args![
    ArgSpec::new(
        "smoke",
        "",
        "CSV file of smoke levels `timestamp,High|Low` (ms), e.g. examples/data/sensors/smoke.csv; empty = generated: one per second of event time, High with 10% probability (needs generated readings; with events=0 and no rate, both are paced like the book's sources: 10 readings per sensor per second)",
    ),
    ArgSpec::new(
        "threshold",
        "100.0",
        "temperature (°F) above which a reading is a risk while smoke is High"
    ),
    OUT_OF_ORDERNESS,
];

fn build(env: &StreamEnv, args: &JobArgs) -> anyhow::Result<()> {
    let threshold = args.f64("threshold")?;
    let bound = args.duration("out-of-orderness")?;
    let mut generated = SensorSource::from_args(env, args)?;
    let smoke = match args.path("smoke") {
        Some(path) => {
            let levels = env.from_source(
                FileSource::parsed(path, parse_smoke_level),
                WatermarkStrategy::for_bounded_out_of_orderness(bound)
                    .with_timestamp_assigner(|l: &(i64, SmokeLevel)| l.0),
                "Smoke Levels",
            );
            print_dead_letters(&levels);
            levels
                .map(|(_, level): (i64, SmokeLevel)| level)
                .name("Smoke Level")
        }
        None => {
            if reads_input(args) {
                let given = if args.opt_str("input").is_some() {
                    "input"
                } else {
                    "readings-topic"
                };
                bail!(
                    "--arg {given}=... needs smoke levels from a file too: give --arg smoke=<file> \
                     (CSV lines timestamp,High|Low, e.g. examples/data/sensors/smoke.csv)"
                );
            }
            // One level per second, until the last generated reading.
            let seconds = generated.last_timestamp().map(|t| t as u64 / 1_000 + 1);
            if seconds.is_none() && generated.rate.is_none() {
                // Unpaced, the smoke levels would run ever further ahead of the readings
                // in event time, and the broadcast state would grow without end: pace
                // both like the book's sources, 10 readings per sensor per second.
                generated.rate = Some(
                    generated
                        .sensors
                        .saturating_mul(1_000 / READING_INTERVAL_MS as u64)
                        as f64,
                );
            }
            // One level per second of event time: paced with the readings.
            let smoke_rate = generated
                .rate
                .map(|r| r / (generated.sensors as f64 * (1_000 / READING_INTERVAL_MS) as f64));
            env.from_source(
                GeneratorSource::new(generated_smoke_level)
                    .with_timestamps(|k| k as i64 * 1_000)
                    .maybe_count(seconds)
                    .maybe_rate(smoke_rate),
                WatermarkStrategy::for_monotonous_timestamps(),
                "Smoke Levels",
            )
            .set_parallelism(1)
        }
    };
    let readings = readings(env, args, generated, reading_watermarks(bound))?;
    let alerts = fire_alerts(&readings, &smoke, threshold);
    emit_results(env, args, &alerts, None, "Fire Alerts", |a: &Alert| {
        burning_sensor(a).to_string()
    })
}

pub(super) fn job() -> JobSpec {
    JobSpec {
        name: "sensor-smoke-alert",
        summary: "MultiStreamTransformations (book ch. 5): fire alerts from readings and broadcast smoke levels",
        args: ARGS,
        build,
    }
}

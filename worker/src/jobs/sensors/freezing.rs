//! Seed example: `SideOutputs` (book chapter 6), the `FreezingMonitor`. A process
//! function forwards every reading and, for readings below 32 °F, also emits
//! `Freezing Alarm for sensor_X` to the side output `freezing-alarms`. The job prints
//! (or writes) the alarms.

use super::{SensorReading, SensorSource, emit_results, reading_watermarks, readings, sensor_args};
use crate::api::{DataStream, StreamEnv};
use crate::functions::{Collector, Context, ProcessFunction};
use crate::jobs::{ArgSpec, JobArgs, JobSpec};
use crate::runtime::output::OutputTag;
use std::time::Duration;

/// The side output of the freezing alarms.
pub const FREEZING_ALARMS: &str = "freezing-alarms";

/// Below this temperature (°F) a reading raises an alarm.
pub const FREEZING_POINT: f64 = 32.0;

/// The tag of [`FREEZING_ALARMS`].
pub fn freezing_alarms_tag() -> OutputTag<String> {
    OutputTag::new(FREEZING_ALARMS)
}

/// What a freezing alarm says about sensor `id`.
fn alarm_text(id: &str) -> String {
    format!("{ALARM_PREFIX}{id}")
}

const ALARM_PREFIX: &str = "Freezing Alarm for ";

/// The sensor an alarm is for (the key of its Kafka record): the alarm is the book's
/// plain text, so the id is read back from it.
pub fn alarmed_sensor(alarm: &str) -> &str {
    alarm.strip_prefix(ALARM_PREFIX).unwrap_or(alarm)
}

/// Forwards readings; alarms for freezing ones go to the side output.
#[derive(Clone, Debug)]
pub struct FreezingMonitor {
    tag: OutputTag<String>,
}

impl Default for FreezingMonitor {
    fn default() -> Self {
        FreezingMonitor {
            tag: freezing_alarms_tag(),
        }
    }
}

impl ProcessFunction<SensorReading, SensorReading> for FreezingMonitor {
    fn process_element(
        &mut self,
        r: SensorReading,
        ctx: &mut Context<'_>,
        out: &mut Collector<'_, SensorReading>,
    ) {
        if r.temperature < FREEZING_POINT {
            ctx.output(&self.tag, alarm_text(&r.id));
        }
        out.collect(r);
    }
}

/// The monitored readings (all of them) and the freezing alarms.
pub fn monitor_freezing(
    readings: &DataStream<SensorReading>,
) -> (DataStream<SensorReading>, DataStream<String>) {
    let monitored = readings
        .process(FreezingMonitor::default())
        .name("Freezing Monitor");
    let alarms = monitored.side_output(&freezing_alarms_tag());
    (monitored, alarms)
}

const ARGS: &[ArgSpec] = sensor_args![];

fn build(env: &StreamEnv, args: &JobArgs) -> anyhow::Result<()> {
    let generated = SensorSource::from_args(env, args)?;
    // Event time plays no part here.
    let readings = readings(env, args, generated, reading_watermarks(Duration::ZERO))?;
    // The forwarded readings are not printed: the alarms are the point of the demo.
    let (_, alarms) = monitor_freezing(&readings);
    emit_results(
        env,
        args,
        &alarms,
        None,
        "Freezing Alarms",
        |alarm: &String| alarmed_sensor(alarm).to_string(),
    )
}

pub(super) fn job() -> JobSpec {
    JobSpec {
        name: "sensor-freezing",
        summary: "FreezingMonitor (book ch. 6): alarms for readings below 32 °F, through a side output",
        args: ARGS,
        build,
    }
}

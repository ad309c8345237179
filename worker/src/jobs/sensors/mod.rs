//! Seed examples: the sensor jobs of "Stream Processing with Apache Flink" (Hueske &
//! Kalavri), chapters 1, 5 and 6, on temperature readings in degrees Fahrenheit.
//!
//! | job                  | book example                                  | module         |
//! |----------------------|-----------------------------------------------|----------------|
//! | `sensor-average`     | `AverageSensorReadings` (ch. 1)               | [`average`]    |
//! | `sensor-smoke-alert` | `MultiStreamTransformations` (ch. 5)          | [`smoke`]      |
//! | `sensor-temp-rise`   | `ProcessFunctionTimers` (ch. 6)               | [`temp_rise`]  |
//! | `sensor-freezing`    | `SideOutputs` (ch. 6)                         | [`freezing`]   |
//! | `sensor-min-max`     | `WindowFunctions` (ch. 6)                     | [`min_max`]    |
//! | `sensor-late`        | `LateDataHandling` (ch. 6)                    | [`late`]       |
//!
//! This module holds what they share: the record types, the generated readings (the
//! book's `SensorSource`, made deterministic), the CSV formats of input files, and the
//! wiring of sources and sinks from job arguments. Each submodule has the pipeline as a
//! pub function from input streams to output streams, so tests can feed any source.
//!
//! On Kafka, every sensor job reads its readings from `readings-topic` (JSON objects, as
//! `strom produce sensor-readings` writes them, or the files' CSV lines; records that do
//! not parse are dead letters) and writes its results to `output-topic`, keyed by sensor
//! id, as JSON; `exactly-once=true` makes that output transactional. `sensor-late` sends
//! only its window counts there; its late readings still follow `output`.

pub mod average;
pub mod freezing;
pub mod late;
pub mod min_max;
pub mod smoke;
pub mod temp_rise;

use crate::api::{DataStream, StreamEnv};
use crate::config::RuntimeMode;
use crate::connectors::FileSource;
use crate::jobs::wordcount::print_dead_letters;
use crate::jobs::{ArgSpec, JobArgs, JobSpec, kafka_args};
use crate::record::Data;
use crate::source::{BoxError, Source, SourceContext, SourceOutput, SourcePoll, SourceReader};
use crate::time::WatermarkStrategy;
use anyhow::bail;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

// ---- Records ----

/// A temperature reading: sensor id, event time (ms), degrees Fahrenheit (the book's
/// `SensorReading`; the averaging job emits Celsius in the same type).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SensorReading {
    pub id: String,
    pub timestamp: i64,
    pub temperature: f64,
}

impl SensorReading {
    pub fn new(id: impl Into<String>, timestamp: i64, temperature: f64) -> Self {
        SensorReading {
            id: id.into(),
            timestamp,
            temperature,
        }
    }
}

/// Like the book's Scala case class: `SensorReading(sensor_1,1000,65.0)`. Floats use
/// `Debug` so whole numbers keep their `.0`, as on the JVM.
impl fmt::Display for SensorReading {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SensorReading({},{},{:?})",
            self.id, self.timestamp, self.temperature
        )
    }
}

/// The smoke level of the one smoke detector (ch. 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SmokeLevel {
    Low,
    High,
}

impl fmt::Display for SmokeLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SmokeLevel::Low => "Low",
            SmokeLevel::High => "High",
        })
    }
}

/// An alert with the event time it refers to: `Alert(Risk of fire! ...,1000)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    pub message: String,
    pub timestamp: i64,
}

impl fmt::Display for Alert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Alert({},{})", self.message, self.timestamp)
    }
}

/// The lowest and highest temperature of a sensor in the window ending at `end_ts`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MinMaxTemp {
    pub id: String,
    pub min: f64,
    pub max: f64,
    pub end_ts: i64,
}

impl fmt::Display for MinMaxTemp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "MinMaxTemp({},{:?},{:?},{})",
            self.id, self.min, self.max, self.end_ts
        )
    }
}

// ---- Input files ----

/// Parses a CSV line `id,timestamp,temperature` (timestamp in ms, temperature in °F).
pub fn parse_reading(line: &str) -> Result<SensorReading, String> {
    let fields: Vec<&str> = line.split(',').map(str::trim).collect();
    let [id, timestamp, temperature] = fields.as_slice() else {
        return Err(format!(
            "expected 3 comma-separated fields id,timestamp,temperature (e.g. sensor_1,1000,65.3); got {}",
            fields.len()
        ));
    };
    if id.is_empty() {
        return Err("the sensor id (first field) is empty".into());
    }
    let timestamp: i64 = timestamp
        .parse()
        .map_err(|_| format!("timestamp '{timestamp}' is not a whole number of milliseconds"))?;
    let temperature: f64 = match temperature.parse::<f64>() {
        Ok(t) if t.is_finite() => t,
        _ => return Err(format!("temperature '{temperature}' is not a number")),
    };
    Ok(SensorReading::new(*id, timestamp, temperature))
}

/// Parses a reading as a Kafka topic holds it: a JSON object
/// (`{"id":"sensor_1","timestamp":1000,"temperature":65.3}`, what `strom produce
/// sensor-readings` writes) or a CSV line like the input files'.
pub fn parse_reading_record(text: &str) -> Result<SensorReading, String> {
    let text = text.trim();
    if !text.starts_with('{') {
        return parse_reading(text);
    }
    let r: SensorReading = serde_json::from_str(text).map_err(|e| {
        format!(
            "not a JSON sensor reading: {e}; expected {{\"id\":\"sensor_1\",\"timestamp\":<ms>,\"temperature\":<°F>}}"
        )
    })?;
    if r.id.is_empty() {
        return Err("the sensor id (\"id\") is empty".into());
    }
    if !r.temperature.is_finite() {
        return Err(format!("temperature {} is not a number", r.temperature));
    }
    Ok(r)
}

/// Parses a CSV line `timestamp,level` with level `High` or `Low` (any case).
pub fn parse_smoke_level(line: &str) -> Result<(i64, SmokeLevel), String> {
    let fields: Vec<&str> = line.split(',').map(str::trim).collect();
    let [timestamp, level] = fields.as_slice() else {
        return Err(format!(
            "expected 2 comma-separated fields timestamp,level (e.g. 1000,High); got {}",
            fields.len()
        ));
    };
    let timestamp: i64 = timestamp
        .parse()
        .map_err(|_| format!("timestamp '{timestamp}' is not a whole number of milliseconds"))?;
    let level = if level.eq_ignore_ascii_case("high") {
        SmokeLevel::High
    } else if level.eq_ignore_ascii_case("low") {
        SmokeLevel::Low
    } else {
        return Err(format!("smoke level '{level}' is neither High nor Low"));
    };
    Ok((timestamp, level))
}

// ---- Generated readings ----

/// Time between two readings of one sensor, as in the book's `SensorSource`.
pub const READING_INTERVAL_MS: i64 = 100;

const SEED_INITIAL: u64 = 0x5EED_0001;
const SEED_WALK: u64 = 0x5EED_0002;
const SEED_SHUFFLE: u64 = 0x5EED_0003;
const SEED_SMOKE: u64 = 0x5EED_0004;

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A hash of several numbers: the seed of one random draw.
fn seed(parts: &[u64]) -> u64 {
    parts.iter().fold(0, |h, p| splitmix64(h ^ splitmix64(*p)))
}

/// Uniform in (0, 1].
fn uniform(seed: u64) -> f64 {
    ((splitmix64(seed) >> 11) as f64 + 1.0) / (1u64 << 53) as f64
}

/// Standard normal (Box-Muller).
fn gaussian(seed: u64) -> f64 {
    let u1 = uniform(seed);
    let u2 = uniform(seed ^ 0xA5A5_A5A5_A5A5_A5A5);
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Steps after which a sensor's random walk starts over (13 years of readings).
const WALK_LEVELS: u32 = 32;

/// Position after `step` steps of a Gaussian random walk with unit steps, without
/// visiting the steps before: a Brownian bridge, halving the interval around `step`
/// (32 draws per reading). So record `i` depends only on `i`, whichever parallel reader
/// generates it and in whatever order.
fn random_walk(sensor: u64, step: u64) -> f64 {
    let span = 1u64 << WALK_LEVELS;
    let step = step % span;
    let (mut lo, mut hi) = (0u64, span);
    let (mut w_lo, mut w_hi) = (
        0.0,
        gaussian(seed(&[SEED_WALK, sensor, span])) * (span as f64).sqrt(),
    );
    while step != lo && step != hi {
        let mid = lo + (hi - lo) / 2;
        // Given both ends, the midpoint of a Brownian path is normal around their mean
        // with variance (mid-lo)(hi-mid)/(hi-lo). Each dyadic midpoint has its own draw.
        let sd = (((mid - lo) as f64) * ((hi - mid) as f64) / ((hi - lo) as f64)).sqrt();
        let w_mid = (w_lo + w_hi) / 2.0 + sd * gaussian(seed(&[SEED_WALK, sensor, mid]));
        if step < mid {
            (hi, w_hi) = (mid, w_mid);
        } else {
            (lo, w_lo) = (mid, w_mid);
        }
    }
    if step == lo { w_lo } else { w_hi }
}

/// Generated reading number `i` (the book's `SensorSource`, deterministic): reading `i`
/// is of sensor `sensor_{i % sensors}` at `(i / sensors) * 100` ms. Each sensor starts at
/// 65 + N(0,1)·20 °F and walks by N(0,1)·0.5 °F per reading.
///
/// The book gives every parallel source instance its own 10 sensors; here the number of
/// sensors is a job argument, so the data (and the results) are the same at any
/// parallelism.
pub fn generated_reading(i: u64, sensors: u64) -> SensorReading {
    let sensors = sensors.max(1);
    let (sensor, step) = (i % sensors, i / sensors);
    let initial = 65.0 + gaussian(seed(&[SEED_INITIAL, sensor])) * 20.0;
    let temperature = initial + 0.5 * random_walk(sensor, step);
    SensorReading::new(
        format!("sensor_{sensor}"),
        step as i64 * READING_INTERVAL_MS,
        temperature,
    )
}

/// The book's `TimestampShuffler`, deterministic and for a fraction of the readings:
/// reading `i` is moved back in time by up to `max_delay_ms` with probability
/// `fraction`, so that it arrives out of order (and, by more than the watermark bound,
/// late).
pub fn shuffle_timestamp(
    i: u64,
    mut reading: SensorReading,
    fraction: f64,
    max_delay_ms: i64,
) -> SensorReading {
    if max_delay_ms > 0 && uniform(seed(&[SEED_SHUFFLE, i])) <= fraction {
        let delay = (uniform(seed(&[SEED_SHUFFLE, i, 1])) * max_delay_ms as f64) as i64;
        reading.timestamp = (reading.timestamp - delay).max(0);
    }
    reading
}

/// Generated smoke level number `k`, for second `k` of event time: `High` with a
/// probability of 10%.
pub fn generated_smoke_level(k: u64) -> SmokeLevel {
    if uniform(seed(&[SEED_SMOKE, k])) <= 0.1 {
        SmokeLevel::High
    } else {
        SmokeLevel::Low
    }
}

/// The generated readings as a source (the book's `SensorSource`): `events` readings in
/// total ([`generated_reading`] `0..events`, or forever), optionally shuffled in time
/// ([`shuffle_timestamp`]) and limited to `rate` readings per second.
///
/// The sensors are spread over the parallel readers (sensor `s` to reader `s % p`), and
/// each reader emits its sensors' readings step by step, so every sensor's readings stay
/// in order, as when each of the book's source instances owns its sensors. Which
/// readings exist does not depend on the parallelism.
#[derive(Clone, Debug)]
pub struct SensorSource {
    pub events: Option<u64>,
    pub sensors: u64,
    pub rate: Option<f64>,
    /// Fraction of readings moved back in time, and by at most how much (ms).
    pub shuffle: Option<(f64, i64)>,
}

impl SensorSource {
    /// `events` readings (forever with `None`) of `sensors` sensors, as fast as possible.
    pub fn new(events: Option<u64>, sensors: u64) -> Self {
        SensorSource {
            events,
            sensors: sensors.max(1),
            rate: None,
            shuffle: None,
        }
    }
}

impl Source<SensorReading> for SensorSource {
    fn is_bounded(&self) -> bool {
        self.events.is_some()
    }

    fn create_reader(
        &self,
        ctx: &SourceContext,
    ) -> Result<Box<dyn SourceReader<SensorReading>>, BoxError> {
        let p = ctx.parallelism.max(1) as u64;
        let owned: Vec<u64> = (0..self.sensors)
            .filter(|s| s % p == ctx.subtask_index as u64)
            .collect();
        let share = owned.len() as f64 / self.sensors as f64;
        Ok(Box::new(SensorReader {
            source: self.clone(),
            rate: self.rate.map(|r| r * share).filter(|r| *r > 0.0),
            owned,
            step: 0,
            next: 0,
            started: None,
            emitted: 0,
        }))
    }
}

struct SensorReader {
    source: SensorSource,
    owned: Vec<u64>,
    /// Readings per second of this reader.
    rate: Option<f64>,
    /// The step (time) and the position in `owned` of the next reading.
    step: u64,
    next: usize,
    started: Option<Instant>,
    emitted: u64,
}

impl SensorReader {
    /// Index of the next reading, or `None` when there are no more.
    fn next_index(&mut self) -> Option<u64> {
        let sensor = *self.owned.get(self.next)?;
        let i = self
            .step
            .checked_mul(self.source.sensors)?
            .checked_add(sensor)?;
        if self.source.events.is_some_and(|n| i >= n) {
            // The last, partial step may end before this reader's next sensor.
            return None;
        }
        self.next += 1;
        if self.next == self.owned.len() {
            self.next = 0;
            self.step += 1;
        }
        Some(i)
    }
}

impl SourceReader<SensorReading> for SensorReader {
    fn poll(&mut self, out: &mut SourceOutput<'_, SensorReading>) -> Result<SourcePoll, BoxError> {
        let mut budget = u64::MAX;
        if let Some(rate) = self.rate {
            let started = *self.started.get_or_insert_with(Instant::now);
            let due = (started.elapsed().as_secs_f64() * rate) as u64 + 1;
            budget = due.saturating_sub(self.emitted);
            if budget == 0 {
                let next_at = (self.emitted + 1) as f64 / rate - started.elapsed().as_secs_f64();
                return Ok(SourcePoll::Wait(
                    Duration::from_secs_f64(next_at.max(0.0)).max(Duration::from_micros(100)),
                ));
            }
        }
        while budget > 0 && !out.is_full() {
            let Some(i) = self.next_index() else {
                return Ok(SourcePoll::Finished);
            };
            let mut reading = generated_reading(i, self.source.sensors);
            if let Some((fraction, max_delay)) = self.source.shuffle {
                reading = shuffle_timestamp(i, reading, fraction, max_delay);
            }
            let ts = reading.timestamp;
            out.collect_with_timestamp(reading, ts);
            self.emitted += 1;
            budget -= 1;
        }
        Ok(if self.rate.is_some() {
            SourcePoll::Wait(Duration::ZERO)
        } else {
            SourcePoll::More
        })
    }
}

// ---- Sources and sinks from job arguments ----

/// Timestamps from the readings, watermarks `bound` behind the highest one (the book's
/// `SensorTimeAssigner`, a `BoundedOutOfOrdernessTimestampExtractor`).
pub fn reading_watermarks(bound: Duration) -> WatermarkStrategy<SensorReading> {
    WatermarkStrategy::for_bounded_out_of_orderness(bound)
        .with_timestamp_assigner(|r: &SensorReading| r.timestamp)
}

/// The arguments every sensor job takes.
macro_rules! sensor_args {
    ($($extra:expr),* $(,)?) => {
        &[
            $crate::jobs::ArgSpec::new(
                "input",
                "",
                "CSV file or directory of readings `id,timestamp,temperature` (ms, °F), e.g. examples/data/sensors/readings.csv; empty = generated readings",
            ),
            $crate::jobs::ArgSpec::new(
                "readings-topic",
                "",
                "Kafka topics (comma-separated) of readings, instead of input: JSON {\"id\":\"sensor_1\",\"timestamp\":<ms>,\"temperature\":<°F>} (what `strom produce sensor-readings` writes) or CSV lines as in input",
            ),
            $crate::jobs::ArgSpec::new(
                "output",
                "",
                "directory for the part-* result files; empty = print to stdout",
            ),
            $crate::jobs::ArgSpec::new(
                "output-topic",
                "",
                "Kafka topic for the results, instead of output: key = the sensor id, value = the result as JSON",
            ),
            $crate::jobs::kafka_args::BROKER_ARGS[0],
            $crate::jobs::kafka_args::BROKER_ARGS[1],
            $crate::jobs::kafka_args::BROKER_ARGS[2],
            $crate::jobs::kafka_args::BROKER_ARGS[3],
            $crate::jobs::kafka_args::EXACTLY_ONCE,
            $crate::jobs::ArgSpec::new(
                "events",
                "10000",
                "number of generated readings (10000 = 100 s of event time for 10 sensors); 0 or unbounded = never stop",
            ),
            $crate::jobs::ArgSpec::new(
                "rate",
                "",
                "generated readings per second; empty or 0 = as fast as possible (the book's source: 100 per 10 sensors)",
            ),
            $crate::jobs::ArgSpec::new(
                "sensors",
                "10",
                "number of generated sensors, sensor_0 .. sensor_<n-1>, each with a reading every 100 ms of event time",
            ),
            $($extra),*
        ]
    };
}
pub(crate) use sensor_args;

/// The `out-of-orderness` argument.
pub(crate) const OUT_OF_ORDERNESS: ArgSpec = ArgSpec::new(
    "out-of-orderness",
    "5s",
    "how far readings may be out of order: watermarks lag the highest timestamp by this much (the book: 5 s)",
);

/// A duration argument that must be more than zero (window lengths, intervals).
pub(crate) fn positive_duration(args: &JobArgs, name: &str) -> anyhow::Result<Duration> {
    let d = args.duration(name)?;
    if d.is_zero() {
        bail!(
            "--arg {name}={}: expected a duration above zero, like 500ms, 5s or 1m",
            args.str(name)
        );
    }
    Ok(d)
}

impl SensorSource {
    /// The generated readings the job arguments `events`, `rate` and `sensors` ask for.
    pub(crate) fn from_args(env: &StreamEnv, args: &JobArgs) -> anyhow::Result<Self> {
        let events = args.count("events")?;
        if events.is_none() && env.config().runtime_mode == RuntimeMode::Batch {
            bail!(
                "--runtime-mode batch needs bounded input: give --arg events=<n> (n > 0) or --arg input=<file>"
            );
        }
        let sensors = args.u64("sensors")?;
        if sensors == 0 {
            bail!("--arg sensors=0: expected at least 1 sensor");
        }
        Ok(SensorSource {
            rate: args.rate("rate")?,
            ..SensorSource::new(events, sensors)
        })
    }

    /// Event time of the last reading, when bounded.
    pub fn last_timestamp(&self) -> Option<i64> {
        self.events
            .map(|n| (n.saturating_sub(1) / self.sensors) as i64 * READING_INTERVAL_MS)
    }
}

/// The readings of a job: from the `input` file(s), the `readings-topic` topics, or
/// `generated`. Timestamps and watermarks are assigned at the source, by `strategy`.
/// Unreadable lines and records go to standard error (and are counted).
pub(crate) fn readings(
    env: &StreamEnv,
    args: &JobArgs,
    generated: SensorSource,
    strategy: WatermarkStrategy<SensorReading>,
) -> anyhow::Result<DataStream<SensorReading>> {
    kafka_args::one_input(args, "input", "readings-topic")?;
    let group = format!("strom-{}-readings", args.job());
    let readings = if let Some(source) =
        kafka_args::source(args, "readings-topic", &group, parse_reading_record)?
    {
        env.from_source(source, strategy, "Sensor Readings")
    } else if let Some(path) = args.path("input") {
        env.from_source(
            FileSource::parsed(path, parse_reading),
            strategy,
            "Sensor Readings",
        )
    } else {
        return Ok(env.from_source(generated, strategy, "Sensor Readings"));
    };
    print_dead_letters(&readings);
    Ok(readings)
}

/// Whether the readings come from outside (a file or a topic) rather than the generator.
pub(crate) fn reads_input(args: &JobArgs) -> bool {
    args.opt_str("input").is_some() || args.opt_str("readings-topic").is_some()
}

/// A job's results: to `output-topic` as JSON keyed by `sensor` when given, else as
/// [`emit`] does. With `subdir` the job has other results, which still follow `output`;
/// without, `output` and `output-topic` together are refused.
pub(crate) fn emit_results<T: Data + fmt::Display + Serialize>(
    env: &StreamEnv,
    args: &JobArgs,
    stream: &DataStream<T>,
    subdir: Option<&str>,
    what: &str,
    sensor: fn(&T) -> String,
) -> anyhow::Result<()> {
    let Some(sink) = kafka_args::output_sink(env, args)? else {
        emit(stream, args.path("output").as_deref(), subdir, what);
        return Ok(());
    };
    if subdir.is_none() && args.opt_str("output").is_some() {
        bail!("--arg output-topic and --arg output both take the {what}: keep one");
    }
    stream
        .map(move |r: T| kafka_args::keyed_json(sensor(&r), &r))
        .name(&format!("{what} as JSON"))
        .sink_to(sink)
        .name(&format!("{what} to Kafka"))
        .uid(&format!("{}-kafka-output", args.job()));
    Ok(())
}

/// Where results go: `part-*` files under `output` (joined with `subdir` when a job has
/// more than one result stream), or standard output (with `prefix`).
pub(crate) fn emit<T: Data + fmt::Display>(
    stream: &DataStream<T>,
    output: Option<&Path>,
    subdir: Option<&str>,
    what: &str,
) {
    match output {
        Some(dir) => {
            let dir: PathBuf = match subdir {
                Some(s) => dir.join(s),
                None => dir.to_path_buf(),
            };
            stream.write_as_text(dir).name(&format!("{what} to Files"));
        }
        None => {
            match subdir {
                Some(prefix) => stream.print_with_prefix(prefix),
                None => stream.print(),
            }
            .name(&format!("Print {what}"));
        }
    }
}

/// The jobs of this module.
pub fn jobs() -> Vec<JobSpec> {
    vec![
        average::job(),
        temp_rise::job(),
        freezing::job(),
        smoke::job(),
        min_max::job(),
        late::job(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_readings_are_a_deterministic_random_walk() {
        let a: Vec<SensorReading> = (0..50).map(|i| generated_reading(i, 10)).collect();
        let b: Vec<SensorReading> = (0..50)
            .rev()
            .map(|i| generated_reading(i, 10))
            .rev()
            .collect();
        assert_eq!(a, b, "reading i depends only on i");
        assert_eq!(a[13].id, "sensor_3");
        assert_eq!(a[13].timestamp, 100);
        // Neighbouring readings of a sensor differ by one step of the walk, not by a
        // new draw of the initial temperature.
        for s in 0..10 {
            let steps: Vec<f64> = (0..4).map(|k| a[k * 10 + s].temperature).collect();
            for w in steps.windows(2) {
                assert!((w[1] - w[0]).abs() < 3.0, "sensor {s}: {steps:?}");
            }
        }
        // A walk: step variance grows linearly.
        let n = 4_000u64;
        let var: f64 = (0..n).map(|s| random_walk(s, 100).powi(2)).sum::<f64>() / n as f64;
        assert!(
            (var - 100.0).abs() < 10.0,
            "variance after 100 steps: {var}"
        );
        let inc: f64 = (0..n)
            .map(|s| (random_walk(s, 101) - random_walk(s, 100)).powi(2))
            .sum::<f64>()
            / n as f64;
        assert!((inc - 1.0).abs() < 0.1, "variance of one step: {inc}");
    }

    #[test]
    fn csv_lines_parse_or_say_what_is_wrong() {
        assert_eq!(
            parse_reading("sensor_1, 1000, 65.5"),
            Ok(SensorReading::new("sensor_1", 1000, 65.5))
        );
        assert!(
            parse_reading("sensor_1,1000")
                .unwrap_err()
                .contains("expected 3")
        );
        assert!(
            parse_reading("sensor_1,soon,1")
                .unwrap_err()
                .contains("timestamp 'soon'")
        );
        assert!(
            parse_reading("sensor_1,1,NaN")
                .unwrap_err()
                .contains("temperature 'NaN'")
        );
        assert_eq!(parse_smoke_level("2000,high"), Ok((2000, SmokeLevel::High)));
        assert!(
            parse_smoke_level("2000,smoky")
                .unwrap_err()
                .contains("neither High nor Low")
        );
    }

    #[test]
    fn topic_records_are_json_or_csv() {
        let r = SensorReading::new("sensor_1", 1000, 65.5);
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(parse_reading_record(&json), Ok(r.clone()));
        assert_eq!(parse_reading_record("sensor_1,1000,65.5"), Ok(r));
        assert!(
            parse_reading_record(r#"{"id":"sensor_1","timestamp":"soon","temperature":1}"#)
                .unwrap_err()
                .starts_with("not a JSON sensor reading")
        );
        assert!(
            parse_reading_record(r#"{"id":"","timestamp":1,"temperature":1}"#)
                .unwrap_err()
                .contains("sensor id")
        );
    }

    #[test]
    fn text_alerts_give_their_sensor_as_the_kafka_key() {
        let alert = "Temperature of sensor_7 monotonically increased for 1 second.";
        assert_eq!(temp_rise::rising_sensor(alert), "sensor_7");
        assert_eq!(
            freezing::alarmed_sensor("Freezing Alarm for sensor_2"),
            "sensor_2"
        );
        let fire = Alert {
            message: format!(
                "Risk of fire! {}",
                SensorReading::new("hall, east", 3500, 120.0)
            ),
            timestamp: 3500,
        };
        assert_eq!(smoke::burning_sensor(&fire), "hall, east");
    }

    #[test]
    fn display_is_like_the_books_case_classes() {
        assert_eq!(
            SensorReading::new("sensor_1", 1000, 65.0).to_string(),
            "SensorReading(sensor_1,1000,65.0)"
        );
        assert_eq!(
            MinMaxTemp {
                id: "sensor_2".into(),
                min: 1.5,
                max: 2.0,
                end_ts: 5000
            }
            .to_string(),
            "MinMaxTemp(sensor_2,1.5,2.0,5000)"
        );
    }
}

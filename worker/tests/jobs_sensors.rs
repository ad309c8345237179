//! The sensor jobs of "Stream Processing with Apache Flink": each pipeline on fixed input
//! (the sample files under examples/data/sensors, and small cases) with exact results at
//! parallelism 1, 2 and 4, and each job through the registry with input files and an
//! output directory.

// Test helpers fail the test on unexpected errors, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::time::Duration;
use strom::jobs::sensors::average::average_temperatures;
use strom::jobs::sensors::freezing::monitor_freezing;
use strom::jobs::sensors::late::count_readings_with_late_data;
use strom::jobs::sensors::min_max::{min_max_temperatures, min_max_temperatures_incremental};
use strom::jobs::sensors::smoke::fire_alerts;
use strom::jobs::sensors::temp_rise::temperature_rise_alerts;
use strom::jobs::sensors::{
    SensorReading, SensorSource, SmokeLevel, parse_reading, parse_smoke_level, reading_watermarks,
};
use strom::prelude::*;

const PARALLELISMS: [usize; 3] = [1, 2, 4];

fn sample_path(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/data/sensors")
        .join(file)
}

fn sample_lines(file: &str) -> Vec<String> {
    std::fs::read_to_string(sample_path(file))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// examples/data/sensors/readings.csv: 3 sensors, a reading every 500 ms from 0 to 5.5 s.
fn sample_readings() -> Vec<SensorReading> {
    sample_lines("readings.csv")
        .iter()
        .map(|l| parse_reading(l).unwrap())
        .collect()
}

fn sample_smoke() -> Vec<(i64, SmokeLevel)> {
    sample_lines("smoke.csv")
        .iter()
        .map(|l| parse_smoke_level(l).unwrap())
        .collect()
}

/// examples/data/sensors/late-readings.csv, in arrival order.
fn late_sample() -> Vec<SensorReading> {
    sample_lines("late-readings.csv")
        .iter()
        .map(|l| parse_reading(l).unwrap())
        .collect()
}

fn r(id: &str, timestamp: i64, temperature: f64) -> SensorReading {
    SensorReading::new(id, timestamp, temperature)
}

/// An environment that emits a watermark after every record (batches of one), so that
/// what is late is decided by the order of the input alone.
fn env(parallelism: usize) -> StreamEnv {
    let env = StreamEnv::new();
    env.set_parallelism(parallelism);
    env.configure(|c| c.batch_size = 1);
    env
}

/// Readings in the given order, with watermarks `bound` behind the highest timestamp.
fn readings(
    env: &StreamEnv,
    readings: Vec<SensorReading>,
    bound: Duration,
) -> DataStream<SensorReading> {
    env.from_source(
        CollectionSource::new(readings),
        reading_watermarks(bound),
        "readings",
    )
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

/// What a user sees: the printed lines, sorted.
fn lines<T: Display + Clone>(h: &CollectHandle<T>) -> Vec<String> {
    sorted(h.values().iter().map(|v| v.to_string()).collect())
}

/// The printed lines with their event timestamps, sorted.
fn timed_lines<T: Display + Clone>(h: &CollectHandle<T>) -> Vec<(String, Option<i64>)> {
    sorted(
        h.records()
            .iter()
            .map(|(v, t)| (v.to_string(), *t))
            .collect(),
    )
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// A fresh directory; tests run in parallel, so every call gets its own.
fn temp_dir(name: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "strom-jobs-sensors-{}-{n}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The lines of all `part-*` files under `dir`, by sub-directory ("" for `dir` itself),
/// sorted.
fn read_parts(dir: &Path) -> BTreeMap<String, Vec<String>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<String>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else if path
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("part-")
            {
                let sub = dir
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .to_string();
                let lines = std::fs::read_to_string(&path).unwrap();
                out.entry(sub)
                    .or_default()
                    .extend(lines.lines().map(str::to_string));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out.values_mut().for_each(|v| v.sort());
    out
}

/// Runs job `name` from the registry with `args` and an output directory; returns what it
/// wrote, by sub-directory.
fn run_job(
    name: &str,
    args: &[String],
    configure: impl FnOnce(&StreamEnv),
) -> BTreeMap<String, Vec<String>> {
    let dir = temp_dir(name);
    let output = dir.join("out");
    let mut all: Vec<String> = args.to_vec();
    all.push(format!("output={}", output.display()));
    let registry = strom::JobRegistry::builtin();
    let spec = registry.find(name).unwrap();
    let args = strom::JobArgs::parse(spec.name, spec.args, &all).unwrap();
    let env = StreamEnv::new();
    configure(&env);
    (spec.build)(&env, &args).unwrap();
    env.execute(spec.name).unwrap();
    let parts = if output.exists() {
        read_parts(&output)
    } else {
        BTreeMap::new()
    };
    std::fs::remove_dir_all(&dir).unwrap();
    parts
}

fn input_arg(file: &str) -> String {
    format!("input={}", sample_path(file).display())
}

fn only(parts: BTreeMap<String, Vec<String>>) -> Vec<String> {
    assert!(parts.keys().all(|k| k.is_empty()), "{parts:?}");
    parts.into_values().next().unwrap_or_default()
}

// ---- sensor-average ----

fn expected_averages() -> Vec<(String, Option<i64>)> {
    let mut v = Vec::new();
    let averages = [
        ("sensor_1", ["12.5", "22.5", "32.5", "42.5", "42.5", "37.5"]),
        ("sensor_2", ["22.5", "22.5", "22.5", "22.5", "22.5", "22.5"]),
        ("sensor_3", ["10.0", "5.0", "0.0", "0.0", "-5.0", "-10.0"]),
    ];
    for (id, avgs) in averages {
        for (i, avg) in avgs.iter().enumerate() {
            let end = (i as i64 + 1) * 1000;
            // A window's result carries the window's last timestamp.
            v.push((format!("SensorReading({id},{end},{avg})"), Some(end - 1)));
        }
    }
    sorted(v)
}

#[test]
fn average_is_celsius_per_sensor_per_second() {
    for p in PARALLELISMS {
        let env = env(p);
        let out = average_temperatures(
            &readings(&env, sample_readings(), Duration::from_secs(5)),
            Duration::from_secs(1),
        )
        .collect();
        env.execute("average").unwrap();
        assert_eq!(timed_lines(&out), expected_averages(), "parallelism {p}");
    }
}

#[test]
fn average_job_with_files() {
    let out = only(run_job(
        "sensor-average",
        &[input_arg("readings.csv")],
        |_| {},
    ));
    let expected: Vec<String> = expected_averages().into_iter().map(|(l, _)| l).collect();
    assert_eq!(out, expected);
}

// ---- sensor-temp-rise ----

const RISE_ALERT: &str = "Temperature of sensor_1 monotonically increased for 1 second.";

/// Runs the alert function on readings replayed on simulated processing time.
fn temp_rise(parallelism: usize, input: Vec<SensorReading>) -> Vec<String> {
    let env = env(parallelism);
    env.set_processing_time(ProcessingTimeMode::Simulated);
    let timed = input.into_iter().map(|r| (r.timestamp, r)).collect();
    let out = temperature_rise_alerts(&env.from_timed_collection(timed), Duration::from_secs(1))
        .collect();
    env.execute("temp rise").unwrap();
    lines(&out)
}

#[test]
fn temp_rise_alerts_once_per_second_of_rising() {
    // sensor_1 rises from 0.5 s to 3.5 s, then goes up and down; sensor_2 rises and falls
    // every 500 ms; sensor_3 only falls.
    for p in PARALLELISMS {
        assert_eq!(
            temp_rise(p, sample_readings()),
            vec![RISE_ALERT; 3],
            "parallelism {p}"
        );
    }
}

#[test]
fn temp_rise_alerts_after_a_second_of_rising() {
    let input = vec![
        r("sensor_1", 0, 50.0),
        r("sensor_1", 100, 51.0),
        r("sensor_1", 1_200, 52.0),
    ];
    assert_eq!(temp_rise(1, input), vec![RISE_ALERT]);
}

#[test]
fn temp_rise_then_fall_within_a_second_deletes_the_timer() {
    // The timer set at 100 ms for 1.1 s is deleted at 600 ms; time then passes 1.1 s.
    let input = vec![
        r("sensor_1", 0, 50.0),
        r("sensor_1", 100, 51.0),
        r("sensor_1", 600, 50.5),
        r("sensor_1", 2_000, 50.5),
        r("sensor_2", 3_000, 50.0),
    ];
    assert_eq!(temp_rise(1, input), Vec::<String>::new());
}

#[test]
fn temp_rise_never_alerts_on_a_first_reading() {
    // No previous temperature (not 0 °F, as the book's sentinel would have it).
    let input = vec![
        r("sensor_1", 0, 50.0),
        r("sensor_2", 0, 10.0),
        r("sensor_2", 2_000, 10.0),
    ];
    assert_eq!(temp_rise(2, input), Vec::<String>::new());
}

#[test]
fn temp_rise_job_with_files() {
    let out = only(run_job(
        "sensor-temp-rise",
        &[input_arg("readings.csv")],
        |_| {},
    ));
    assert_eq!(out, vec![RISE_ALERT; 3]);
    let out = only(run_job(
        "sensor-temp-rise",
        &[input_arg("readings.csv"), "interval=2s".into()],
        |env| {
            env.set_parallelism(2);
        },
    ));
    assert_eq!(
        out,
        vec!["Temperature of sensor_1 monotonically increased for 2 seconds."; 1]
    );
}

// ---- sensor-freezing ----

#[test]
fn freezing_monitor_forwards_readings_and_alarms_below_32() {
    for p in PARALLELISMS {
        let env = env(p);
        let (monitored, alarms) =
            monitor_freezing(&readings(&env, sample_readings(), Duration::ZERO));
        let (monitored, alarms) = (monitored.collect(), alarms.collect());
        env.execute("freezing").unwrap();
        assert_eq!(
            timed_lines(&alarms),
            [4_000, 4_500, 5_000, 5_500]
                .into_iter()
                .map(|t| ("Freezing Alarm for sensor_3".to_string(), Some(t)))
                .collect::<Vec<_>>(),
            "parallelism {p}"
        );
        let all: Vec<String> = sorted(sample_readings().iter().map(|r| r.to_string()).collect());
        assert_eq!(lines(&monitored), all, "parallelism {p}");
    }
}

#[test]
fn freezing_job_with_files() {
    let out = only(run_job(
        "sensor-freezing",
        &[input_arg("readings.csv")],
        |env| {
            env.set_parallelism(2);
        },
    ));
    assert_eq!(out, vec!["Freezing Alarm for sensor_3"; 4]);
}

// ---- sensor-smoke-alert ----

fn expected_fire_alerts(timestamps: &[(i64, &str)]) -> Vec<(String, Option<i64>)> {
    timestamps
        .iter()
        .map(|(t, temp)| {
            (
                format!("Alert(Risk of fire! SensorReading(sensor_1,{t},{temp}),{t})"),
                Some(*t),
            )
        })
        .collect()
}

#[test]
fn smoke_alerts_for_hot_readings_while_smoke_is_high() {
    // Smoke is High from 3.2 s to 4.7 s; sensor_1 is above 100 °F from 3 s to 5 s.
    for p in PARALLELISMS {
        let env = env(p);
        let smoke = env.from_source(
            CollectionSource::timed(sample_smoke()),
            WatermarkStrategy::for_monotonous_timestamps(),
            "smoke",
        );
        let out = fire_alerts(
            &readings(&env, sample_readings(), Duration::ZERO),
            &smoke,
            100.0,
        )
        .collect();
        env.execute("smoke").unwrap();
        assert_eq!(
            timed_lines(&out),
            expected_fire_alerts(&[(3_500, "113.0"), (4_000, "104.0"), (4_500, "113.0")]),
            "parallelism {p}"
        );
    }
}

#[test]
fn smoke_level_applies_by_event_time_not_by_arrival() {
    // The smoke stream runs far ahead of the readings (it ends first); each reading is
    // still judged by the level at its own time.
    let env = env(2);
    let smoke = env.from_source(
        CollectionSource::timed(vec![
            (0, SmokeLevel::High),
            (1_000, SmokeLevel::Low),
            (5_000, SmokeLevel::High),
        ]),
        WatermarkStrategy::for_monotonous_timestamps(),
        "smoke",
    );
    let input = vec![
        r("sensor_1", 500, 120.0),
        r("sensor_2", 1_500, 120.0),
        r("sensor_1", 4_999, 99.0),
        r("sensor_2", 5_000, 101.0),
        r("sensor_1", 6_000, 100.0),
    ];
    let out = fire_alerts(&readings(&env, input, Duration::ZERO), &smoke, 100.0).collect();
    env.execute("smoke").unwrap();
    assert_eq!(
        lines(&out),
        strings(&[
            "Alert(Risk of fire! SensorReading(sensor_1,500,120.0),500)",
            "Alert(Risk of fire! SensorReading(sensor_2,5000,101.0),5000)",
        ])
    );
}

#[test]
fn smoke_alert_job_with_files() {
    let smoke = format!("smoke={}", sample_path("smoke.csv").display());
    let out = only(run_job(
        "sensor-smoke-alert",
        &[input_arg("readings.csv"), smoke.clone()],
        |env| {
            env.set_parallelism(2);
        },
    ));
    let expected: Vec<String> =
        expected_fire_alerts(&[(3_500, "113.0"), (4_000, "104.0"), (4_500, "113.0")])
            .into_iter()
            .map(|(l, _)| l)
            .collect();
    assert_eq!(out, expected);
    let out = only(run_job(
        "sensor-smoke-alert",
        &[input_arg("readings.csv"), smoke, "threshold=110".into()],
        |_| {},
    ));
    let expected: Vec<String> = expected_fire_alerts(&[(3_500, "113.0"), (4_500, "113.0")])
        .into_iter()
        .map(|(l, _)| l)
        .collect();
    assert_eq!(out, expected);
}

// ---- sensor-min-max ----

fn expected_min_max() -> Vec<(String, Option<i64>)> {
    sorted(
        [
            ("MinMaxTemp(sensor_1,50.0,113.0,5000)", 4_999),
            ("MinMaxTemp(sensor_1,95.0,104.0,10000)", 9_999),
            ("MinMaxTemp(sensor_2,68.0,77.0,5000)", 4_999),
            ("MinMaxTemp(sensor_2,68.0,77.0,10000)", 9_999),
            ("MinMaxTemp(sensor_3,14.0,14.0,10000)", 9_999),
            ("MinMaxTemp(sensor_3,23.0,50.0,5000)", 4_999),
        ]
        .into_iter()
        .map(|(l, t)| (l.to_string(), Some(t)))
        .collect(),
    )
}

#[test]
fn min_max_per_sensor_per_five_seconds_full_and_incremental() {
    for p in PARALLELISMS {
        let env = env(p);
        let input = readings(&env, sample_readings(), Duration::from_secs(5));
        let full = min_max_temperatures(&input, Duration::from_secs(5)).collect();
        let incremental =
            min_max_temperatures_incremental(&input, Duration::from_secs(5)).collect();
        env.execute("min max").unwrap();
        assert_eq!(timed_lines(&full), expected_min_max(), "parallelism {p}");
        assert_eq!(
            timed_lines(&incremental),
            expected_min_max(),
            "incremental, parallelism {p}"
        );
    }
}

#[test]
fn min_max_job_with_files() {
    let expected: Vec<String> = expected_min_max().into_iter().map(|(l, _)| l).collect();
    for incremental in ["false", "true"] {
        let out = only(run_job(
            "sensor-min-max",
            &[
                input_arg("readings.csv"),
                format!("incremental={incremental}"),
            ],
            |env| {
                env.set_parallelism(2);
            },
        ));
        assert_eq!(out, expected, "incremental={incremental}");
    }
}

// ---- sensor-late ----

/// Counts and late readings of the late sample, 10 s windows, watermarks 5 s behind.
fn late(parallelism: usize, lateness: Duration) -> (Vec<(String, Option<i64>)>, Vec<String>) {
    let env = env(parallelism);
    let (counts, late) = count_readings_with_late_data(
        &readings(&env, late_sample(), Duration::from_secs(5)),
        Duration::from_secs(10),
        lateness,
    );
    let (counts, late) = (counts.collect(), late.collect());
    env.execute("late").unwrap();
    (timed_lines(&counts), lines(&late))
}

fn timed(v: &[(&str, i64)]) -> Vec<(String, Option<i64>)> {
    sorted(v.iter().map(|(l, t)| (l.to_string(), Some(*t))).collect())
}

const LATE_COUNTS_WITH_LATENESS: &[&str] = &[
    "(sensor_1,10000,3,first)",
    "(sensor_1,10000,4,update)",
    "(sensor_1,20000,1,first)",
    "(sensor_1,30000,2,first)",
    "(sensor_2,10000,1,first)",
    "(sensor_2,20000,2,first)",
    "(sensor_2,20000,3,update)",
    "(sensor_2,30000,1,first)",
];

#[test]
fn late_readings_update_windows_within_the_allowed_lateness() {
    // sensor_1@9000 arrives after its window fired (watermark 10999) but within 5 s of
    // lateness: an update. sensor_1@5000 arrives after the window was discarded
    // (watermark 15999 >= 9999 + 5000): a late reading.
    for p in PARALLELISMS {
        let (counts, late) = late(p, Duration::from_secs(5));
        assert_eq!(
            counts,
            timed(&[
                ("(sensor_1,10000,3,first)", 9_999),
                ("(sensor_1,10000,4,update)", 9_999),
                ("(sensor_1,20000,1,first)", 19_999),
                ("(sensor_1,30000,2,first)", 29_999),
                ("(sensor_2,10000,1,first)", 9_999),
                ("(sensor_2,20000,2,first)", 19_999),
                ("(sensor_2,20000,3,update)", 19_999),
                ("(sensor_2,30000,1,first)", 29_999),
            ]),
            "parallelism {p}"
        );
        assert_eq!(
            late,
            strings(&["SensorReading(sensor_1,5000,65.0)"]),
            "parallelism {p}"
        );
    }
}

#[test]
fn without_lateness_late_readings_go_to_the_side_output() {
    for p in PARALLELISMS {
        let (counts, late) = late(p, Duration::ZERO);
        let counts: Vec<String> = counts.into_iter().map(|(l, _)| l).collect();
        assert_eq!(
            counts,
            strings(&[
                "(sensor_1,10000,3,first)",
                "(sensor_1,20000,1,first)",
                "(sensor_1,30000,2,first)",
                "(sensor_2,10000,1,first)",
                "(sensor_2,20000,2,first)",
                "(sensor_2,30000,1,first)",
            ]),
            "parallelism {p}"
        );
        assert_eq!(
            late,
            strings(&[
                "SensorReading(sensor_1,5000,65.0)",
                "SensorReading(sensor_1,9000,65.0)",
                "SensorReading(sensor_2,14000,65.0)",
            ]),
            "parallelism {p}"
        );
    }
}

#[test]
fn late_job_with_files() {
    // The job emits a watermark after every reading, so with one reader the file's order
    // alone decides what is late, whatever the batch size.
    let out = run_job("sensor-late", &[input_arg("late-readings.csv")], |_| {});
    let expected: BTreeMap<String, Vec<String>> = [
        ("counts".to_string(), strings(LATE_COUNTS_WITH_LATENESS)),
        (
            "late-readings".to_string(),
            strings(&["SensorReading(sensor_1,5000,65.0)"]),
        ),
    ]
    .into();
    assert_eq!(out, expected);
}

#[test]
fn late_job_demo_data_shows_updates_and_late_readings() {
    let out = run_job("sensor-late", &["events=5000".into()], |_| {});
    let counts = &out["counts"];
    assert!(counts.iter().any(|l| l.ends_with(",first)")), "{counts:?}");
    assert!(counts.iter().any(|l| l.ends_with(",update)")), "{counts:?}");
    assert!(!out["late-readings"].is_empty());
    // Every reading is counted once in its window's last result, or is late.
    let mut last: BTreeMap<(String, String), u64> = BTreeMap::new();
    for l in counts {
        let f: Vec<&str> = l
            .trim_matches(|c| c == '(' || c == ')')
            .split(',')
            .collect();
        let n: u64 = f[2].parse().unwrap();
        let e = last
            .entry((f[0].to_string(), f[1].to_string()))
            .or_default();
        *e = (*e).max(n);
    }
    assert_eq!(
        last.values().sum::<u64>() + out["late-readings"].len() as u64,
        5000
    );
}

// ---- All jobs ----

#[test]
fn every_sensor_job_runs_on_generated_data_with_its_defaults() {
    let registry = strom::JobRegistry::builtin();
    let names = [
        "sensor-average",
        "sensor-temp-rise",
        "sensor-freezing",
        "sensor-smoke-alert",
        "sensor-min-max",
        "sensor-late",
    ];
    for name in names {
        let spec = registry.find(name).unwrap();
        assert!(!spec.summary.is_empty());
        let out = run_job(name, &[], |_| {});
        let total: usize = out.values().map(Vec::len).sum();
        assert!(total > 0, "{name} wrote nothing: {out:?}");
        // With several source readers the interleaving of their readings (and, for
        // processing time, of their clocks) varies; the jobs still run.
        run_job(name, &["events=2000".into()], |env| {
            env.set_parallelism(3);
        });
    }
}

#[test]
fn generated_readings_are_the_same_at_any_parallelism_and_in_order_per_sensor() {
    let mut first: Option<Vec<String>> = None;
    for p in PARALLELISMS {
        let env = StreamEnv::new();
        env.set_parallelism(p);
        let out = env
            .from_source(
                SensorSource::new(Some(95), 10),
                reading_watermarks(Duration::ZERO),
                "sensors",
            )
            .collect();
        env.execute("generated").unwrap();
        let values = out.values();
        let mut last: BTreeMap<String, i64> = BTreeMap::new();
        for r in &values {
            let previous = last.insert(r.id.clone(), r.timestamp);
            assert!(
                previous.is_none_or(|t| t < r.timestamp),
                "{r} after {previous:?} at parallelism {p}"
            );
        }
        assert_eq!(values.len(), 95);
        assert_eq!(
            last["sensor_4"], 900,
            "the last, partial step has sensor_0 .. sensor_4"
        );
        assert_eq!(last["sensor_5"], 800);
        let all = sorted(values.iter().map(|r| r.to_string()).collect::<Vec<_>>());
        match &first {
            None => first = Some(all),
            Some(f) => assert_eq!(&all, f, "parallelism {p}"),
        }
    }
}

#[test]
fn bad_input_lines_go_to_dead_letters_and_the_job_goes_on() {
    let dir = temp_dir("dead-letters");
    let input = dir.join("readings.csv");
    std::fs::write(
        &input,
        "sensor_1,0,20.0\nsensor_1,soon,20.0\nnot a reading\nsensor_1,100,40.0\n",
    )
    .unwrap();
    let registry = strom::JobRegistry::builtin();
    let spec = registry.find("sensor-min-max").unwrap();
    let output = dir.join("out");
    let args = strom::JobArgs::parse(
        spec.name,
        spec.args,
        &[
            format!("input={}", input.display()),
            format!("output={}", output.display()),
        ],
    )
    .unwrap();
    let env = StreamEnv::new();
    (spec.build)(&env, &args).unwrap();
    let result = env.execute(spec.name).unwrap();
    assert_eq!(
        only(read_parts(&output)),
        vec!["MinMaxTemp(sensor_1,20.0,40.0,5000)"]
    );
    assert_eq!(
        result
            .metrics
            .operator("Source: Sensor Readings")
            .unwrap()
            .totals()
            .dead_letters,
        2
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_arguments_are_reported_by_name() {
    let registry = strom::JobRegistry::builtin();
    let build = |name: &str, args: &[&str]| -> String {
        let spec = registry.find(name).unwrap();
        let given: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let args = strom::JobArgs::parse(spec.name, spec.args, &given).unwrap();
        let env = StreamEnv::new();
        format!("{:#}", (spec.build)(&env, &args).unwrap_err())
    };
    assert!(build("sensor-average", &["window=0s"]).contains("expected a duration above zero"));
    assert!(build("sensor-min-max", &["incremental=maybe"]).contains("expected true or false"));
    assert!(
        build("sensor-temp-rise", &["processing-time=sundial"]).contains("one of simulated, wall")
    );
    assert!(build("sensor-late", &["delayed=2"]).contains("expected a fraction from 0 to 1"));
    assert!(build("sensor-smoke-alert", &["input=x.csv"]).contains("give --arg smoke=<file>"));
    assert!(build("sensor-average", &["sensors=0"]).contains("at least 1 sensor"));
}

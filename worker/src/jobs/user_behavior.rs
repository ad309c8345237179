//! Seed example: user-behaviour analytics, the job `user-behavior`, after Jark Wu's Flink
//! SQL demo "Building an End-to-End Streaming Application" on the Taobao `UserBehavior`
//! dataset, written with the DataStream API.
//!
//! Every event is a user's action on an item of a category (`pv` page view, `cart`,
//! `fav`, `buy`) with an event time; watermarks allow 5 s of disorder. The demo's three
//! results:
//! - **buys per hour** (`buys-per-hour`): buys in each hour of event time (a tumbling
//!   one-hour window over the whole stream), as `(hour_of_day, buy_cnt)`;
//! - **cumulative unique visitors** (`cumulative-uv`): for each day, every ten minutes,
//!   the number of distinct users seen so far that day (the demo's
//!   `COUNT(DISTINCT user_id) … GROUP BY date_str` with `MAX(time_str)`), as
//!   `(date, "HH:M0", uv)`; per-date keyed state with event-time timers at each boundary;
//! - **top categories** (`top-categories`): buys per parent category (the demo joins a
//!   MySQL dimension table `category(sub_category_id, parent_category_name)`; here a
//!   small embedded table) as a rolling count per category, plus every hour of event time
//!   the hour's top three categories.
//!
//! Dates and times are UTC. Input is the dataset's CSV (`user_id,item_id,category_id,
//! behavior,ts_seconds`) or JSON lines with `ts` in milliseconds; generated data starts on
//! 2017-11-27T00:00:00Z, the dataset's week.
//!
//! On Kafka: `events-topic` reads events in the same forms (what `strom produce
//! user-events` writes; records that do not parse are dead letters), and `output-topic`
//! takes the results of every query as JSON, keyed `<query>/<what it is about>` (so a
//! compacted topic keeps the latest count of each category and day), exactly once with
//! `exactly-once=true`.

use crate::api::{DataStream, StreamEnv};
use crate::config::RuntimeMode;
use crate::connectors::{FileSource, GeneratorSource};
use crate::functions::{
    AggregateFn, AggregateFunction, Collector, KeyedContext, KeyedProcessFunction,
};
use crate::jobs::fraud::generator::splitmix64;
use crate::jobs::{ArgSpec, JobArgs, JobSpec, kafka_args, write_dead_letters};
use crate::state::MapStateDescriptor;
use crate::time::WatermarkStrategy;
use crate::windows::{
    ProcessAllWindowFunction, TimeWindow, TumblingEventTimeWindows, WindowContext,
};
use anyhow::bail;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

// ---- UTC calendar ----

const MS_PER_DAY: i64 = 86_400_000;
const MS_PER_HOUR: i64 = 3_600_000;
const TEN_MINUTES: i64 = 600_000;

/// The civil date `(year, month, day)` of a day number (days since 1970-01-01), by Howard
/// Hinnant's `civil_from_days`, valid for every representable day.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `yyyy-mm-dd` of a timestamp in milliseconds (UTC).
pub fn format_date(ms: i64) -> String {
    let (y, m, d) = civil_from_days(ms.div_euclid(MS_PER_DAY));
    format!("{y:04}-{m:02}-{d:02}")
}

/// Hour of the day (0-23, UTC).
pub fn hour_of_day(ms: i64) -> u32 {
    (ms.rem_euclid(MS_PER_DAY) / MS_PER_HOUR) as u32
}

/// `HH:M0`: the start of the ten minutes a timestamp falls in (the demo's
/// `SUBSTR(DATE_FORMAT(ts, 'HH:mm'), 1, 4) || '0'`).
pub fn ten_minute_label(ms: i64) -> String {
    let in_day = ms.rem_euclid(MS_PER_DAY);
    format!(
        "{:02}:{}0",
        in_day / MS_PER_HOUR,
        in_day % MS_PER_HOUR / TEN_MINUTES
    )
}

/// `yyyy-mm-dd HH:MM:SS` (UTC).
pub fn format_utc(ms: i64) -> String {
    let in_day = ms.rem_euclid(MS_PER_DAY) / 1000;
    format!(
        "{} {:02}:{:02}:{:02}",
        format_date(ms),
        in_day / 3600,
        in_day % 3600 / 60,
        in_day % 60
    )
}

// ---- Records ----

/// What a user did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Behavior {
    /// Page view.
    Pv,
    Buy,
    Cart,
    Fav,
}

impl Behavior {
    fn parse(s: &str) -> Option<Behavior> {
        match s.trim() {
            "pv" => Some(Behavior::Pv),
            "buy" => Some(Behavior::Buy),
            "cart" => Some(Behavior::Cart),
            "fav" => Some(Behavior::Fav),
            _ => None,
        }
    }
}

impl fmt::Display for Behavior {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Behavior::Pv => "pv",
            Behavior::Buy => "buy",
            Behavior::Cart => "cart",
            Behavior::Fav => "fav",
        })
    }
}

/// One row of the Taobao `UserBehavior` dataset; `ts` in milliseconds.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct UserBehavior {
    pub user_id: u64,
    pub item_id: u64,
    pub category_id: u64,
    pub behavior: Behavior,
    pub ts: i64,
}

impl fmt::Display for UserBehavior {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} user {} {} item {} (category {})",
            format_utc(self.ts),
            self.user_id,
            self.behavior,
            self.item_id,
            self.category_id
        )
    }
}

const CSV_FORM: &str =
    "user_id,item_id,category_id,behavior,ts_seconds (behavior: pv, buy, cart or fav)";

impl UserBehavior {
    /// Parses a CSV row of the dataset (`1,2268318,2520377,pv,1511544070`, time in
    /// seconds) or a JSON object (`ts` in milliseconds).
    pub fn parse(line: &str) -> Result<UserBehavior, String> {
        let line = line.trim();
        if line.starts_with('{') {
            return serde_json::from_str(line).map_err(|e| {
                format!(
                    "not a JSON user behaviour: {e}; expected {{\"user_id\":1,\"item_id\":2,\"category_id\":3,\"behavior\":\"pv\",\"ts\":<ms>}}"
                )
            });
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != 5 {
            return Err(format!(
                "expected 5 comma-separated fields, got {}: {CSV_FORM}",
                fields.len()
            ));
        }
        let number = |i: usize, name: &str| -> Result<u64, String> {
            fields[i].parse::<u64>().map_err(|_| {
                format!(
                    "{name} '{}' is not a whole number; expected {CSV_FORM}",
                    fields[i]
                )
            })
        };
        let behavior = Behavior::parse(fields[3]).ok_or_else(|| {
            format!(
                "unknown behavior '{}'; accepted: pv, buy, cart, fav",
                fields[3]
            )
        })?;
        let seconds = fields[4].parse::<i64>().map_err(|_| {
            format!(
                "timestamp '{}' is not a whole number of seconds; expected {CSV_FORM}",
                fields[4]
            )
        })?;
        Ok(UserBehavior {
            user_id: number(0, "user_id")?,
            item_id: number(1, "item_id")?,
            category_id: number(2, "category_id")?,
            behavior,
            ts: seconds.saturating_mul(1000),
        })
    }
}

/// Buys in one hour of event time (the demo's `buy_cnt_per_hour`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct HourlyBuys {
    pub date: String,
    pub hour_of_day: u32,
    pub buy_cnt: u64,
}

impl fmt::Display for HourlyBuys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} hour {:02}: {} buys",
            self.date, self.hour_of_day, self.buy_cnt
        )
    }
}

/// Distinct users of `date` up to the end of the ten minutes starting at `time` (the
/// demo's `cumulative_uv`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CumulativeUv {
    pub date: String,
    pub time: String,
    pub uv: u64,
}

impl fmt::Display for CumulativeUv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {} unique visitors",
            self.date, self.time, self.uv
        )
    }
}

/// Buys of a parent category so far (the demo's `top_category`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CategoryBuys {
    pub category_name: String,
    pub buy_cnt: u64,
}

impl fmt::Display for CategoryBuys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} buys", self.category_name, self.buy_cnt)
    }
}

/// The categories with the most buys in one hour of event time, most first (ties by
/// name).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TopCategories {
    pub date: String,
    pub hour_of_day: u32,
    pub top: Vec<CategoryBuys>,
}

impl fmt::Display for TopCategories {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} hour {:02} top categories:",
            self.date, self.hour_of_day
        )?;
        for (i, c) in self.top.iter().enumerate() {
            write!(
                f,
                "{} {}. {} ({})",
                if i == 0 { "" } else { "," },
                i + 1,
                c.category_name,
                c.buy_cnt
            )?;
        }
        Ok(())
    }
}

// ---- The dimension table ----

/// Parent categories, as in the demo's `category` table (translated).
pub const PARENT_CATEGORIES: [&str; 8] = [
    "clothing & bags",
    "home decor",
    "appliances",
    "beauty",
    "mother & baby",
    "electronics",
    "sports & outdoors",
    "food",
];

/// The parent category of a sub-category: the embedded dimension table maps
/// `category_id mod 8` to a parent, so that every id of the dataset has one.
pub fn parent_category(category_id: u64) -> &'static str {
    PARENT_CATEGORIES[(category_id % PARENT_CATEGORIES.len() as u64) as usize]
}

// ---- Pipelines ----

/// How far events may arrive out of event-time order.
pub const OUT_OF_ORDERNESS: Duration = Duration::from_secs(5);

/// Event time from `ts`, watermarks 5 s behind the highest seen.
pub fn behavior_watermarks() -> WatermarkStrategy<UserBehavior> {
    WatermarkStrategy::for_bounded_out_of_orderness(OUT_OF_ORDERNESS)
        .with_timestamp_assigner(|e: &UserBehavior| e.ts)
}

/// Counts records (Flink's `COUNT(*)` as an incremental aggregate).
struct CountAll;

impl<T> AggregateFunction<T, u64, u64> for CountAll {
    fn create_accumulator(&self) -> u64 {
        0
    }
    fn add(&self, acc: &mut u64, _: T) {
        *acc += 1;
    }
    fn get_result(&self, acc: &u64) -> u64 {
        *acc
    }
    fn merge(&self, acc: &mut u64, other: u64) {
        *acc += other;
    }
}

#[derive(Clone)]
struct LabelHour;

impl ProcessAllWindowFunction<u64, HourlyBuys, TimeWindow> for LabelHour {
    fn process(
        &mut self,
        ctx: &mut WindowContext<'_, (), TimeWindow>,
        counts: &[u64],
        out: &mut Collector<'_, HourlyBuys>,
    ) {
        let start = ctx.window().start;
        for &buy_cnt in counts {
            out.collect(HourlyBuys {
                date: format_date(start),
                hour_of_day: hour_of_day(start),
                buy_cnt,
            });
        }
    }
}

/// Query (a): buys per hour of event time.
pub fn buys_per_hour(events: &DataStream<UserBehavior>) -> DataStream<HourlyBuys> {
    events
        .filter(|e: &UserBehavior| e.behavior == Behavior::Buy)
        .name("Buys")
        .window_all(TumblingEventTimeWindows::of(Duration::from_secs(3600)))
        .aggregate_with(CountAll, LabelHour)
        .name("Buys per Hour")
        .uid("buys-per-hour")
}

/// Users seen per date, with the earliest event time each was seen at.
const SEEN_USERS: MapStateDescriptor<u64, i64> = MapStateDescriptor::new("seen-users");

/// Per date: the distinct users so far, reported at the end of every ten minutes that had
/// events. Counting users first seen before the boundary (not all users received so far)
/// makes each report independent of how far ahead out-of-order input has arrived.
#[derive(Clone)]
pub struct CumulativeUvFunction;

impl KeyedProcessFunction<String, UserBehavior, CumulativeUv> for CumulativeUvFunction {
    fn process_element(
        &mut self,
        e: UserBehavior,
        ctx: &mut KeyedContext<'_, String>,
        _: &mut Collector<'_, CumulativeUv>,
    ) {
        let seen = ctx.map_state(&SEEN_USERS);
        if seen.get(&e.user_id).is_none_or(|first| e.ts < first) {
            seen.put(e.user_id, e.ts);
        }
        let slot_end = (e.ts.div_euclid(TEN_MINUTES) + 1) * TEN_MINUTES;
        ctx.timer_service().register_event_time_timer(slot_end - 1);
    }

    fn on_timer(
        &mut self,
        timestamp: i64,
        ctx: &mut KeyedContext<'_, String>,
        out: &mut Collector<'_, CumulativeUv>,
    ) {
        let slot_end = timestamp + 1;
        let seen = ctx.map_state(&SEEN_USERS);
        let uv = seen
            .values()
            .into_iter()
            .filter(|first| *first < slot_end)
            .count() as u64;
        out.collect(CumulativeUv {
            date: ctx.current_key(),
            time: ten_minute_label(slot_end - TEN_MINUTES),
            uv,
        });
        if slot_end.rem_euclid(MS_PER_DAY) == 0 {
            // The day is over: nothing will count towards it any more.
            seen.clear();
        }
    }
}

/// Query (b): cumulative unique visitors of each day, every ten minutes.
pub fn cumulative_uv(events: &DataStream<UserBehavior>) -> DataStream<CumulativeUv> {
    events
        .key_by(|e: &UserBehavior| format_date(e.ts))
        .process(CumulativeUvFunction)
        .name("Cumulative Unique Visitors")
        .uid("cumulative-uv")
}

fn category_of_buys(events: &DataStream<UserBehavior>) -> DataStream<String> {
    events
        .flat_map(|e: UserBehavior| {
            (e.behavior == Behavior::Buy).then(|| parent_category(e.category_id).to_string())
        })
        .name("Buys by Parent Category")
}

/// Query (c), first part: the rolling number of buys of each parent category, emitted on
/// every change.
pub fn category_buys(events: &DataStream<UserBehavior>) -> DataStream<CategoryBuys> {
    category_of_buys(events)
        .map(|category_name: String| CategoryBuys {
            category_name,
            buy_cnt: 1,
        })
        .name("One Buy")
        .key_by(|c: &CategoryBuys| c.category_name.clone())
        .sum(|c: &mut CategoryBuys| &mut c.buy_cnt)
        .name("Buys per Category")
        .uid("category-buys")
}

/// How many categories the hourly ranking shows.
pub const TOP_N: usize = 3;

#[derive(Clone)]
struct RankHour;

impl ProcessAllWindowFunction<BTreeMap<String, u64>, TopCategories, TimeWindow> for RankHour {
    fn process(
        &mut self,
        ctx: &mut WindowContext<'_, (), TimeWindow>,
        counts: &[BTreeMap<String, u64>],
        out: &mut Collector<'_, TopCategories>,
    ) {
        let start = ctx.window().start;
        for per_category in counts {
            let mut ranked: Vec<CategoryBuys> = per_category
                .iter()
                .map(|(name, n)| CategoryBuys {
                    category_name: name.clone(),
                    buy_cnt: *n,
                })
                .collect();
            ranked.sort_by(|a, b| {
                b.buy_cnt
                    .cmp(&a.buy_cnt)
                    .then_with(|| a.category_name.cmp(&b.category_name))
            });
            ranked.truncate(TOP_N);
            out.collect(TopCategories {
                date: format_date(start),
                hour_of_day: hour_of_day(start),
                top: ranked,
            });
        }
    }
}

/// Query (c), second part: every hour of event time, the hour's top three categories by
/// buys.
pub fn top_categories(events: &DataStream<UserBehavior>) -> DataStream<TopCategories> {
    category_of_buys(events)
        .window_all(TumblingEventTimeWindows::of(Duration::from_secs(3600)))
        .aggregate_with(
            AggregateFn {
                create: BTreeMap::<String, u64>::new,
                add: |acc: &mut BTreeMap<String, u64>, name: String| {
                    *acc.entry(name).or_default() += 1
                },
                result: |acc: &BTreeMap<String, u64>| acc.clone(),
                merge: |acc: &mut BTreeMap<String, u64>, other: BTreeMap<String, u64>| {
                    for (k, v) in other {
                        *acc.entry(k).or_default() += v;
                    }
                },
            },
            RankHour,
        )
        .name("Top Categories per Hour")
        .uid("top-categories")
}

// ---- Generated data ----

/// Event time of generated event 0: 2017-11-27T00:00:00Z.
pub const START_MS: i64 = 1_511_740_800_000;
/// Event time between generated events on average (20,000 events make a day).
pub const SPACING_MS: i64 = 4_320;
/// Generated events are up to this late (less than the watermarks' 5 s).
pub const MAX_JITTER_MS: u64 = 4_000;

/// Category ids of the Taobao dataset; lower ones are picked more often.
const CATEGORIES: [u64; 16] = [
    2_520_377, 4_145_813, 2_355_072, 149_192, 2_920_476, 4_181_361, 2_735_466, 1_080_785,
    2_465_336, 411_153, 2_891_509, 2_520_771, 982_926, 4_756_105, 1_320_293, 3_607_361,
];

const SEED: u64 = 0x7A0B_A0BE_4A71_0125;

fn draw(i: u64, n: u64) -> u64 {
    splitmix64(SEED ^ i.wrapping_mul(8).wrapping_add(n))
}

/// Event `i` of the generated stream: 3,000 users, pv 89%, cart 5%, fav 3%, buy 3%.
pub fn generated_behavior(i: u64) -> UserBehavior {
    let behavior = match draw(i, 0) % 100 {
        0..89 => Behavior::Pv,
        89..94 => Behavior::Cart,
        94..97 => Behavior::Fav,
        _ => Behavior::Buy,
    };
    let n = CATEGORIES.len() as u64;
    let category = (draw(i, 1) % n).min(draw(i, 2) % n);
    UserBehavior {
        user_id: 1 + draw(i, 3) % 3_000,
        item_id: 1 + draw(i, 4) % 5_000_000,
        category_id: CATEGORIES[category as usize],
        behavior,
        ts: START_MS + i as i64 * SPACING_MS + (draw(i, 5) % MAX_JITTER_MS) as i64,
    }
}

// ---- The job ----

const QUERIES: &[&str] = &["all", "buys-per-hour", "cumulative-uv", "top-categories"];

const ARGS: &[ArgSpec] = &[
    ArgSpec::new(
        "input",
        "",
        "CSV file or directory in the dataset's format (user_id,item_id,category_id,behavior,ts_seconds) or JSON lines (ts in ms); empty = generated",
    ),
    ArgSpec::new(
        "events-topic",
        "",
        "Kafka topics (comma-separated) of events, JSON objects with ts in ms (what `strom produce user-events` writes) or CSV rows as in input, instead of input",
    ),
    ArgSpec::new(
        "query",
        "all",
        "buys-per-hour, cumulative-uv, top-categories, or all",
    ),
    ArgSpec::new(
        "events",
        "20000",
        "number of generated events (20,000 make one day); 0 or unbounded = never stop",
    ),
    ArgSpec::new(
        "rate",
        "",
        "generated events per second; empty or 0 = as fast as possible",
    ),
    ArgSpec::new(
        "output",
        "",
        "directory for the results, a subdirectory of part-* files per query; empty = print with the query as prefix",
    ),
    ArgSpec::new(
        "output-topic",
        "",
        "Kafka topic for the results of every query, as JSON, instead of output or stdout; the key names the query and what the result is about: buys-per-hour/2017-11-27T05, cumulative-uv/2017-11-27, category-buys/<category>, top-categories/2017-11-27T05 (dead letters still follow output)",
    ),
    kafka_args::BROKER_ARGS[0],
    kafka_args::BROKER_ARGS[1],
    kafka_args::BROKER_ARGS[2],
    kafka_args::BROKER_ARGS[3],
    kafka_args::EXACTLY_ONCE,
];

/// Where the results go: one Kafka topic for all queries, or files or stdout per query.
enum Results {
    /// Every query's results as `(key, JSON)`, written to the topic at the end.
    Topic(Vec<DataStream<(String, String)>>),
    Print(Option<PathBuf>),
}

impl Results {
    /// The results of `query`; `key` says what each one is about.
    fn emit<T: crate::record::Data + fmt::Display + Serialize>(
        &mut self,
        stream: &DataStream<T>,
        query: &str,
        key: fn(&T) -> String,
    ) {
        match self {
            Results::Topic(all) => {
                let q = query.to_string();
                all.push(
                    stream
                        .map(move |r: T| kafka_args::keyed_json(format!("{q}/{}", key(&r)), &r))
                        .name(&format!("{query} as JSON")),
                );
            }
            Results::Print(Some(dir)) => {
                stream
                    .write_as_text(dir.join(query))
                    .name(&format!("{query} to Files"));
            }
            Results::Print(None) => {
                stream
                    .print_with_prefix(query)
                    .name(&format!("Print {query}"));
            }
        }
    }
}

/// `2017-11-27T05`: the hour a result is about.
fn date_hour(date: &str, hour: u32) -> String {
    format!("{date}T{hour:02}")
}

fn build(env: &StreamEnv, args: &JobArgs) -> anyhow::Result<()> {
    let query = args.choice("query", QUERIES)?;
    let output: Option<PathBuf> = args.path("output");
    let events = events(env, args, output.as_deref())?;
    let sink = kafka_args::output_sink(env, args)?;
    let mut results = match sink {
        Some(_) => Results::Topic(Vec::new()),
        None => Results::Print(output),
    };
    if matches!(query, "all" | "buys-per-hour") {
        results.emit(&buys_per_hour(&events), "buys-per-hour", |b| {
            date_hour(&b.date, b.hour_of_day)
        });
    }
    if matches!(query, "all" | "cumulative-uv") {
        results.emit(&cumulative_uv(&events), "cumulative-uv", |u| u.date.clone());
    }
    if matches!(query, "all" | "top-categories") {
        results.emit(&category_buys(&events), "category-buys", |c| {
            c.category_name.clone()
        });
        results.emit(&top_categories(&events), "top-categories", |t| {
            date_hour(&t.date, t.hour_of_day)
        });
    }
    if let (Results::Topic(all), Some(sink)) = (results, sink) {
        // One sink for all queries: one writer (and transactional id) per subtask.
        let Some((first, rest)) = all.split_first() else {
            return Ok(());
        };
        rest.iter()
            .fold(first.clone(), |union, s| union.union(s))
            .sink_to(sink)
            .name("Results to Kafka")
            .uid("user-behavior-kafka-output");
    }
    Ok(())
}

/// The events, with event time: from the `input` file(s), the `events-topic` topics, or
/// generated. Unreadable lines and records go to `<output>/dead-letters` or standard
/// error.
fn events(
    env: &StreamEnv,
    args: &JobArgs,
    output: Option<&Path>,
) -> anyhow::Result<DataStream<UserBehavior>> {
    kafka_args::one_input(args, "input", "events-topic")?;
    let group = "strom-user-behavior-events";
    let events = if let Some(source) =
        kafka_args::source(args, "events-topic", group, UserBehavior::parse)?
    {
        env.from_source(source, behavior_watermarks(), "User Behavior")
    } else if let Some(path) = args.path("input") {
        env.from_source(
            FileSource::parsed(path, UserBehavior::parse),
            behavior_watermarks(),
            "User Behavior",
        )
    } else {
        return generated_events(env, args);
    };
    write_dead_letters(&events, output, "dead-letters");
    Ok(events)
}

fn generated_events(env: &StreamEnv, args: &JobArgs) -> anyhow::Result<DataStream<UserBehavior>> {
    let count = args.count("events")?;
    if count.is_none() && env.config().runtime_mode == RuntimeMode::Batch {
        bail!(
            "--runtime-mode batch needs bounded input: give --arg events=<n> (n > 0) or --arg input=<file>"
        );
    }
    Ok(env.from_source(
        GeneratorSource::new(generated_behavior)
            .maybe_count(count)
            .maybe_rate(args.rate("rate")?),
        behavior_watermarks(),
        "Generated User Behavior",
    ))
}

/// The jobs of this module.
pub fn jobs() -> Vec<JobSpec> {
    vec![JobSpec {
        name: "user-behavior",
        summary: "User-behaviour analytics (Flink SQL demo, Taobao data): buys per hour, cumulative UV, top categories",
        args: ARGS,
        build,
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(format_date(START_MS), "2017-11-27");
        assert_eq!(format_utc(START_MS + 3_723_000), "2017-11-27 01:02:03");
        assert_eq!(
            ten_minute_label(START_MS + 23 * MS_PER_HOUR + 59 * 60_000),
            "23:50"
        );
        assert_eq!(format_utc(1_511_544_070_000), "2017-11-24 17:21:10");
    }

    #[test]
    fn csv_and_json_rows() {
        let e = UserBehavior::parse("1,2268318,2520377,pv,1511544070").unwrap();
        assert_eq!(
            e,
            UserBehavior {
                user_id: 1,
                item_id: 2268318,
                category_id: 2520377,
                behavior: Behavior::Pv,
                ts: 1_511_544_070_000
            }
        );
        let j = UserBehavior::parse(
            r#"{"user_id":1,"item_id":2268318,"category_id":2520377,"behavior":"pv","ts":1511544070000}"#,
        );
        assert_eq!(j.unwrap(), e);
        assert_eq!(
            UserBehavior::parse("1,2,3,look,4").unwrap_err(),
            "unknown behavior 'look'; accepted: pv, buy, cart, fav"
        );
        assert!(
            UserBehavior::parse("1,2,3")
                .unwrap_err()
                .starts_with("expected 5 comma-separated fields, got 3")
        );
    }

    #[test]
    fn generated_mix_is_realistic() {
        let n = 20_000;
        let buys = (0..n)
            .filter(|i| generated_behavior(*i).behavior == Behavior::Buy)
            .count();
        let pvs = (0..n)
            .filter(|i| generated_behavior(*i).behavior == Behavior::Pv)
            .count();
        assert!((400..800).contains(&buys), "{buys}");
        assert!((17_000..18_600).contains(&pvs), "{pvs}");
        assert_eq!(generated_behavior(7), generated_behavior(7));
    }
}

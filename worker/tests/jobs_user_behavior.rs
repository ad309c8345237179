//! User-behaviour analytics: exact results of each query for the sample of the Taobao
//! format in `examples/data/user-behavior/` (two days, out-of-order rows, a bad row), the
//! same at parallelism 1, 2 and 4, and end-to-end runs through the job registry.

// Helpers outside #[test] functions unwrap too: a failure is the test's failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use strom::jobs::user_behavior::{
    CategoryBuys, CumulativeUv, HourlyBuys, TopCategories, UserBehavior, behavior_watermarks,
    buys_per_hour, category_buys, cumulative_uv, top_categories,
};
use strom::prelude::*;
use strom::{JobArgs, JobRegistry};

fn sample_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/data/user-behavior/user_behavior.csv")
}

fn sample() -> Vec<UserBehavior> {
    let text = std::fs::read_to_string(sample_path()).unwrap();
    text.lines()
        .filter_map(|l| UserBehavior::parse(l).ok())
        .collect()
}

fn hourly(date: &str, hour_of_day: u32, buy_cnt: u64) -> HourlyBuys {
    HourlyBuys {
        date: date.into(),
        hour_of_day,
        buy_cnt,
    }
}

fn uv(date: &str, time: &str, uv: u64) -> CumulativeUv {
    CumulativeUv {
        date: date.into(),
        time: time.into(),
        uv,
    }
}

fn cat(name: &str, n: u64) -> CategoryBuys {
    CategoryBuys {
        category_name: name.into(),
        buy_cnt: n,
    }
}

fn top(date: &str, hour_of_day: u32, top: &[(&str, u64)]) -> TopCategories {
    TopCategories {
        date: date.into(),
        hour_of_day,
        top: top.iter().map(|(n, c)| cat(n, *c)).collect(),
    }
}

const DAY1: &str = "2017-11-27";
const DAY2: &str = "2017-11-28";

fn expected_buys_per_hour() -> Vec<HourlyBuys> {
    vec![
        hourly(DAY1, 0, 4),
        hourly(DAY1, 1, 3),
        hourly(DAY1, 23, 1),
        hourly(DAY2, 0, 2),
    ]
}

/// Distinct users by the end of each ten minutes that had events. User 6 (00:09:59)
/// arrives after user 5 (00:10:02) but counts for 00:00; user 9 (00:59:58) arrives after
/// 01:00:03 but counts for 00:50; day 2 starts from zero.
fn expected_cumulative_uv() -> Vec<CumulativeUv> {
    vec![
        uv(DAY1, "00:00", 5),
        uv(DAY1, "00:10", 6),
        uv(DAY1, "00:20", 6),
        uv(DAY1, "00:50", 8),
        uv(DAY1, "01:00", 9),
        uv(DAY1, "01:30", 9),
        uv(DAY1, "01:40", 10),
        uv(DAY1, "23:50", 12),
        uv(DAY2, "00:00", 3),
        uv(DAY2, "00:20", 4),
    ]
}

fn expected_category_buys() -> Vec<CategoryBuys> {
    let mut v = vec![
        cat("home decor", 1),
        cat("clothing & bags", 1),
        cat("electronics", 1),
        cat("clothing & bags", 2),
        cat("clothing & bags", 3),
        cat("mother & baby", 1),
        cat("mother & baby", 2),
        cat("home decor", 2),
        cat("appliances", 1),
        cat("home decor", 3),
    ];
    v.sort();
    v
}

fn expected_top_categories() -> Vec<TopCategories> {
    vec![
        top(
            DAY1,
            0,
            &[
                ("clothing & bags", 2),
                ("electronics", 1),
                ("home decor", 1),
            ],
        ),
        top(DAY1, 1, &[("mother & baby", 2), ("clothing & bags", 1)]),
        top(DAY1, 23, &[("home decor", 1)]),
        top(DAY2, 0, &[("appliances", 1), ("home decor", 1)]),
    ]
}

struct Results {
    buys: Vec<HourlyBuys>,
    uv: Vec<CumulativeUv>,
    categories: Vec<CategoryBuys>,
    top: Vec<TopCategories>,
}

fn run(p: usize) -> Results {
    let env = StreamEnv::new();
    // One record per batch: a watermark follows every record, as with a live source.
    env.set_parallelism(p).configure(|c| c.batch_size = 1);
    let events = env.from_source(
        CollectionSource::new(sample()),
        behavior_watermarks(),
        "Sample",
    );
    let buys = buys_per_hour(&events).collect();
    let uv = cumulative_uv(&events).collect();
    let categories = category_buys(&events).collect();
    let top = top_categories(&events).collect();
    env.execute("user behavior test").unwrap();
    Results {
        buys: buys.sorted(),
        uv: uv.sorted(),
        categories: categories.sorted(),
        top: top.sorted(),
    }
}

#[test]
fn each_query_gives_exact_results_at_parallelism_1_2_4() {
    assert_eq!(sample().len(), 20);
    for p in [1, 2, 4] {
        let r = run(p);
        assert_eq!(
            r.buys,
            expected_buys_per_hour(),
            "buys per hour, parallelism {p}"
        );
        assert_eq!(
            r.uv,
            expected_cumulative_uv(),
            "cumulative uv, parallelism {p}"
        );
        assert_eq!(
            r.categories,
            expected_category_buys(),
            "category buys, parallelism {p}"
        );
        assert_eq!(
            r.top,
            expected_top_categories(),
            "top categories, parallelism {p}"
        );
    }
}

#[test]
fn cumulative_uv_reports_in_order_for_each_day() {
    let env = StreamEnv::new();
    env.set_parallelism(2).configure(|c| c.batch_size = 1);
    let events = env.from_source(
        CollectionSource::new(sample()),
        behavior_watermarks(),
        "Sample",
    );
    let uv = cumulative_uv(&events).collect();
    env.execute("uv order").unwrap();
    let day1: Vec<CumulativeUv> = uv.values().into_iter().filter(|u| u.date == DAY1).collect();
    assert_eq!(day1, expected_cumulative_uv()[..8].to_vec());
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "strom-jobs-user-behavior-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn read_lines(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries {
            lines.extend(
                std::fs::read_to_string(e.unwrap().path())
                    .unwrap()
                    .lines()
                    .map(str::to_string),
            );
        }
    }
    lines.sort();
    lines
}

fn run_registered(args: &[(&str, &str)], p: usize) -> JobResult {
    let registry = JobRegistry::builtin();
    let spec = registry
        .find("user-behavior")
        .expect("user-behavior is registered");
    let args = JobArgs::from_pairs(spec.name, spec.args, args).unwrap();
    let env = StreamEnv::new();
    env.set_parallelism(p);
    (spec.build)(&env, &args).unwrap();
    env.execute(spec.name).unwrap()
}

fn displayed<T: std::fmt::Display>(v: Vec<T>) -> Vec<String> {
    let mut s: Vec<String> = v.iter().map(T::to_string).collect();
    s.sort();
    s
}

#[test]
fn end_to_end_with_the_sample_csv() {
    let dir = temp_dir("sample");
    for p in [1, 2] {
        let out = dir.join(format!("all-{p}"));
        let result = run_registered(
            &[
                ("input", sample_path().to_str().unwrap()),
                ("output", out.to_str().unwrap()),
            ],
            p,
        );
        assert_eq!(
            read_lines(&out.join("buys-per-hour")),
            displayed(expected_buys_per_hour())
        );
        assert_eq!(
            read_lines(&out.join("cumulative-uv")),
            displayed(expected_cumulative_uv())
        );
        assert_eq!(
            read_lines(&out.join("category-buys")),
            displayed(expected_category_buys())
        );
        assert_eq!(
            read_lines(&out.join("top-categories")),
            displayed(expected_top_categories())
        );
        let dead = read_lines(&out.join("dead-letters"));
        assert_eq!(dead.len(), 1);
        assert!(
            dead[0].contains(
                "user_behavior.csv:10: unknown behavior 'look'; accepted: pv, buy, cart, fav"
            ),
            "{}",
            dead[0]
        );
        assert_eq!(
            result
                .metrics
                .operator("Source: User Behavior")
                .unwrap()
                .totals()
                .dead_letters,
            1
        );
    }
    assert_eq!(
        read_lines(&dir.join("all-1").join("top-categories"))[0],
        "2017-11-27 hour 00 top categories: 1. clothing & bags (2), 2. electronics (1), 3. home decor (1)"
    );
    // One query only.
    let out = dir.join("uv");
    run_registered(
        &[
            ("input", sample_path().to_str().unwrap()),
            ("query", "cumulative-uv"),
            ("output", out.to_str().unwrap()),
        ],
        1,
    );
    assert!(out.join("cumulative-uv").exists());
    assert!(!out.join("buys-per-hour").exists() && !out.join("top-categories").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_default_run_covers_one_day_of_generated_events() {
    let dir = temp_dir("default");
    run_registered(&[("output", dir.to_str().unwrap())], 2);
    let buys = read_lines(&dir.join("buys-per-hour"));
    assert_eq!(buys.len(), 24, "{buys:?}");
    assert!(
        buys.iter().all(|l| l.starts_with("2017-11-27 hour ")),
        "{buys:?}"
    );
    let uv = read_lines(&dir.join("cumulative-uv"));
    assert_eq!(uv.len(), 144);
    let last = uv
        .iter()
        .find(|l| l.starts_with("2017-11-27 23:50:"))
        .unwrap();
    let n: u64 = last
        .split(": ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((2_500..=3_000).contains(&n), "{last}");
    assert_eq!(read_lines(&dir.join("top-categories")).len(), 24);
    let total_buys: u64 = buys
        .iter()
        .map(|l| {
            l.split(": ")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    assert_eq!(
        read_lines(&dir.join("category-buys")).len() as u64,
        total_buys
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_bad_query_names_the_accepted_ones() {
    let registry = JobRegistry::builtin();
    let spec = registry.find("user-behavior").unwrap();
    let args = JobArgs::from_pairs(spec.name, spec.args, &[("query", "top-users")]).unwrap();
    let err = (spec.build)(&StreamEnv::new(), &args).unwrap_err();
    assert_eq!(
        err.to_string(),
        "--arg query=top-users: expected one of all, buys-per-hour, cumulative-uv, top-categories (query: buys-per-hour, cumulative-uv, top-categories, or all)"
    );
}

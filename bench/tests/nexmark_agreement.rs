//! Strom and Apache Flink agree on Nexmark: both generate the same events (a checksum of
//! the first 1,000,000), and every query gives the same rows on both (Strom at parallelism
//! 1 and 2, Flink SQL at 2), compared as sorted canonical text.
//!
//! Needs Java 17 and Python's pip: `bench/flink/prepare.sh` fetches Flink's jars once
//! (≈330 MB, into `~/.cache/strom`) and compiles the Flink side.

use std::collections::BTreeMap;
use strom_bench::flink::{self, Flink};
use strom_bench::nexmark::{self, queries::Query};

/// Small enough for a debug build, long enough in event time (30 s at 10,000 events/s)
/// for several tumbling (10 s) and many sliding (2 s) windows to close.
const EVENTS: u64 = 300_000;
const EVENTS_PER_SECOND: u64 = 10_000;

fn flink() -> Flink {
    Flink::prepare().unwrap_or_else(|e| panic!("Flink could not be prepared: {e:#}"))
}

#[test]
fn both_systems_generate_the_same_events() {
    let flink = flink();
    let out = flink
        .output(
            flink::NEXMARK,
            &["checksum", "--events", "1000000"].map(String::from),
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
    let strom = format!(
        "{{\"events\":1000000,\"checksum\":\"{:016x}\"}}",
        nexmark::events_checksum(1_000_000, nexmark::DEFAULT_EVENTS_PER_SECOND)
    );
    assert_eq!(out.trim(), strom);
}

/// Flink's rows of every query, by query name.
fn flink_rows(flink: &Flink) -> BTreeMap<String, Vec<String>> {
    let queries: Vec<&str> = Query::ALL.iter().map(|q| q.name()).collect();
    let out = flink
        .output(
            flink::NEXMARK,
            &[
                "rows".to_string(),
                queries.join(","),
                "--events".into(),
                EVENTS.to_string(),
                "--events-per-second".into(),
                EVENTS_PER_SECOND.to_string(),
                "--parallelism".into(),
                "2".into(),
            ],
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
    let mut rows: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current = None;
    for line in out.lines() {
        if let Some(q) = line.strip_prefix("# ") {
            current = Some(q.to_string());
            rows.entry(q.to_string()).or_default();
        } else if let Some(q) = &current {
            rows.entry(q.clone()).or_default().push(line.to_string());
        }
    }
    rows
}

/// Where two sorted row lists first differ, for the failure message.
fn first_difference(strom: &[String], flink: &[String]) -> String {
    let i = strom
        .iter()
        .zip(flink)
        .position(|(a, b)| a != b)
        .unwrap_or(strom.len().min(flink.len()));
    format!(
        "first difference at sorted row {i}: Strom {:?}, Flink {:?}",
        strom.get(i),
        flink.get(i)
    )
}

#[test]
fn every_query_gives_the_same_rows_on_strom_and_flink() {
    let flink = flink();
    let expected = flink_rows(&flink);
    let mut failures = Vec::new();
    for q in Query::ALL {
        let mut theirs = expected
            .get(q.name())
            .cloned()
            .unwrap_or_else(|| panic!("Flink printed no rows section for {}", q.name()));
        let flink_sum = nexmark::rows_checksum(&mut theirs);
        // Every query finds something on this input, so an empty result is a failure too.
        assert!(!theirs.is_empty(), "{}: Flink returned no rows", q.name());
        for parallelism in [1, 2] {
            let mut ours = nexmark::strom_rows(q, EVENTS, EVENTS_PER_SECOND, parallelism)
                .unwrap_or_else(|e| panic!("{} on Strom: {e}", q.name()));
            let strom_sum = nexmark::rows_checksum(&mut ours);
            eprintln!(
                "{} p={parallelism}: Strom {} rows {strom_sum:016x}, Flink {} rows {flink_sum:016x}",
                q.name(),
                ours.len(),
                theirs.len()
            );
            if ours != theirs {
                failures.push(format!(
                    "{} at p={parallelism}: Strom {} rows (checksum {strom_sum:016x}), Flink {} \
                     rows ({flink_sum:016x}); {}",
                    q.name(),
                    ours.len(),
                    theirs.len(),
                    first_difference(&ours, &theirs)
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

//! Nexmark: an online auction's stream of people, auctions and bids, and the standard
//! queries over it, on Strom. Flink runs the same queries in SQL over the same events
//! (`bench/flink/src/strom/bench/nexmark/`); `tests/nexmark_agreement.rs` checks that both
//! give the same rows.

pub mod generator;
pub mod model;
pub mod queries;
pub mod random;
pub mod source;

pub use generator::{BASE_TIME_MS, DEFAULT_EVENTS_PER_SECOND, Timeline, event};
pub use model::{Auction, Bid, Event, Person};
pub use source::NexmarkSource;

/// FNV-1a, 64 bits: the checksum both systems print over canonical text.
#[derive(Clone, Copy, Debug)]
pub struct Fnv64(u64);

impl Default for Fnv64 {
    fn default() -> Self {
        Fnv64(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv64 {
    pub fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    pub fn finish(&self) -> u64 {
        self.0
    }
}

/// The checksum of the first `count` events: FNV-1a over each event's canonical text
/// followed by a newline. Flink's port prints the same number for the same arguments.
pub fn events_checksum(count: u64, events_per_second: u64) -> u64 {
    let timeline = Timeline::new(events_per_second);
    let mut hash = Fnv64::default();
    let mut line = String::new();
    for n in 0..count {
        use std::fmt::Write;
        line.clear();
        let _ = writeln!(line, "{}", event(n, &timeline));
        hash.write(line.as_bytes());
    }
    hash.finish()
}

/// The checksum of a multiset of rows: FNV-1a over the sorted rows, each followed by a
/// newline.
pub fn rows_checksum(rows: &mut [String]) -> u64 {
    rows.sort_unstable();
    let mut hash = Fnv64::default();
    for row in rows.iter() {
        hash.write(row.as_bytes());
        hash.write(b"\n");
    }
    hash.finish()
}

/// Runs query `q` on Strom over `events` events and returns its result as canonical rows
/// (for an updating result, the latest row per key), unsorted.
pub fn strom_rows(
    q: queries::Query,
    events: u64,
    events_per_second: u64,
    parallelism: usize,
) -> Result<Vec<String>, strom::prelude::JobError> {
    let env = strom::prelude::StreamEnv::new();
    env.set_parallelism(parallelism);
    let sink = CollectRows::default();
    let source = NexmarkSource {
        events,
        timeline: Timeline::new(events_per_second),
    };
    queries::build(&env, q, source, &sink);
    env.execute(q.name())?;
    Ok(sink.rows())
}

/// Runs query `q` on Strom and discards its rows (the benchmark).
pub fn strom_run(
    env: &strom::prelude::StreamEnv,
    q: queries::Query,
    events: u64,
) -> Result<(), strom::prelude::JobError> {
    let source = NexmarkSource {
        events,
        timeline: Timeline::new(DEFAULT_EVENTS_PER_SECOND),
    };
    queries::build(env, q, source, &Discard);
    env.execute(q.name()).map(|_| ())
}

/// Drops every row (after the engine has delivered it to a sink, as Flink's blackhole).
pub struct Discard;

impl queries::QuerySink for Discard {
    fn attach<R: queries::Row>(&self, rows: &strom::prelude::DataStream<R>) {
        rows.add_sink(|r: R| {
            std::hint::black_box(r);
        })
        .name("discard");
    }
}

type RowsReader = Box<dyn Fn() -> Vec<(Option<i64>, String)>>;

/// Collects rows as canonical text, with their upsert keys.
#[derive(Default)]
struct CollectRows {
    reader: std::cell::RefCell<Option<RowsReader>>,
}

impl queries::QuerySink for CollectRows {
    fn attach<R: queries::Row>(&self, rows: &strom::prelude::DataStream<R>) {
        let handle = rows
            .map(|r: R| {
                let mut text = String::new();
                r.write_row(&mut text);
                (r.upsert_key(), text)
            })
            .name("canonical rows")
            .collect();
        *self.reader.borrow_mut() = Some(Box::new(move || handle.values()));
    }
}

impl CollectRows {
    fn rows(&self) -> Vec<String> {
        let Some(read) = self.reader.borrow_mut().take() else {
            return Vec::new();
        };
        let mut latest = std::collections::HashMap::new();
        let mut rows = Vec::new();
        for (key, row) in read() {
            match key {
                Some(k) => {
                    latest.insert(k, row);
                }
                None => rows.push(row),
            }
        }
        rows.extend(latest.into_values());
        rows
    }
}

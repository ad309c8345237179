//! Windows: assigners (tumbling, sliding, session, global), triggers, evictors, window
//! functions, and the window operator that puts them together (Flink's semantics,
//! including allowed lateness, late-data side output and merging session windows).

pub mod assigners;
pub mod evictors;
pub mod functions;
pub(crate) mod merging;
pub(crate) mod operator;
pub mod triggers;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt::Debug;
use std::hash::Hash;

pub use assigners::{
    EventTime, EventTimeSessionWindows, GlobalWindows, ProcessingTime,
    ProcessingTimeSessionWindows, SessionWindows, SlidingEventTimeWindows,
    SlidingProcessingTimeWindows, SlidingWindows, TumblingEventTimeWindows,
    TumblingProcessingTimeWindows, TumblingWindows, WindowAssigner, WindowTime,
};
pub use evictors::{CountEvictor, DeltaEvictor, Evictor, TimeEvictor};
pub use functions::{
    ProcessAllWindowFunction, ProcessWindowFunction, WindowContext, WindowValueState,
};
pub use triggers::{
    ContinuousEventTimeTrigger, ContinuousProcessingTimeTrigger, CountTrigger, EventTimeTrigger,
    NeverTrigger, ProcessingTimeTrigger, PurgingTrigger, Trigger, TriggerContext, TriggerResult,
};

/// A window: a bucket of records of one key, closed at `max_timestamp`.
pub trait Window:
    Clone + Debug + Hash + Eq + Send + Serialize + DeserializeOwned + 'static
{
    /// The largest timestamp that belongs to the window.
    fn max_timestamp(&self) -> i64;
}

/// A time interval `[start, end)` in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TimeWindow {
    pub start: i64,
    pub end: i64,
}

impl TimeWindow {
    pub fn new(start: i64, end: i64) -> Self {
        TimeWindow { start, end }
    }

    /// Whether the two windows overlap or touch (session windows then merge).
    pub fn intersects(&self, other: &TimeWindow) -> bool {
        self.start <= other.end && self.end >= other.start
    }

    /// The smallest window covering both.
    pub fn cover(&self, other: &TimeWindow) -> TimeWindow {
        TimeWindow::new(self.start.min(other.start), self.end.max(other.end))
    }

    /// The start of the window of `size` (shifted by `offset`) that contains `timestamp`.
    pub fn window_start(timestamp: i64, offset: i64, size: i64) -> i64 {
        timestamp - (timestamp - offset).rem_euclid(size)
    }
}

impl Window for TimeWindow {
    fn max_timestamp(&self) -> i64 {
        self.end - 1
    }
}

/// `n mod d` for a fixed positive `d` without a division instruction (a 64-bit division
/// costs tens of cycles, paid for every record a time window assigner sees).
#[derive(Clone, Copy, Debug)]
pub(crate) struct FastModulus {
    d: u64,
    /// `floor(2^64 / d)`, capped at `u64::MAX` for `d = 1`.
    m: u64,
}

impl FastModulus {
    pub(crate) fn new(d: i64) -> Self {
        let d = d.max(1) as u64;
        let m = ((1u128 << 64) / d as u128).min(u64::MAX as u128) as u64;
        FastModulus { d, m }
    }

    /// `n.rem_euclid(d)`.
    #[inline]
    pub(crate) fn rem_euclid(&self, n: i64) -> i64 {
        if n < 0 {
            return n.rem_euclid(self.d as i64);
        }
        let n = n as u64;
        // The estimate is the quotient or one less; one correction makes it exact.
        let q = ((n as u128 * self.m as u128) >> 64) as u64;
        let mut r = n - q * self.d;
        if r >= self.d {
            r -= self.d;
        }
        r as i64
    }
}

/// The one window that holds every record of a key (count windows, custom triggers).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
pub struct GlobalWindow;

impl Window for GlobalWindow {
    fn max_timestamp(&self) -> i64 {
        i64::MAX
    }
}

/// Merges overlapping time windows into covering windows: each returned pair is a
/// covering window and the windows it replaces (only groups of two or more).
pub(crate) fn merge_time_windows(windows: &[TimeWindow]) -> Vec<(TimeWindow, Vec<TimeWindow>)> {
    let mut sorted: Vec<TimeWindow> = windows.to_vec();
    sorted.sort_by_key(|w| w.start);
    let mut groups: Vec<(TimeWindow, Vec<TimeWindow>)> = Vec::new();
    for w in sorted {
        match groups.last_mut() {
            Some((cover, members)) if cover.intersects(&w) => {
                *cover = cover.cover(&w);
                members.push(w);
            }
            _ => groups.push((w, vec![w])),
        }
    }
    groups.into_iter().filter(|(_, m)| m.len() > 1).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_start_handles_offsets_and_negative_timestamps() {
        assert_eq!(TimeWindow::window_start(1_234, 0, 1_000), 1_000);
        assert_eq!(TimeWindow::window_start(-1, 0, 1_000), -1_000);
        assert_eq!(TimeWindow::window_start(1_234, 300, 1_000), 300);
        assert_eq!(TimeWindow::window_start(1_400, 300, 1_000), 1_300);
    }

    #[test]
    fn fast_modulus_equals_rem_euclid() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for d in [1i64, 2, 3, 7, 1_000, 60_000, 86_400_000, 1 << 40, i64::MAX] {
            let f = FastModulus::new(d);
            for _ in 0..10_000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                for n in [
                    x as i64,
                    (x >> 1) as i64,
                    (x >> 20) as i64,
                    -((x >> 30) as i64),
                ] {
                    assert_eq!(f.rem_euclid(n), n.rem_euclid(d), "{n} mod {d}");
                }
            }
            for n in [0, 1, d - 1, d, d.saturating_add(1), i64::MAX, i64::MIN, -1] {
                assert_eq!(f.rem_euclid(n), n.rem_euclid(d), "{n} mod {d}");
            }
        }
    }

    #[test]
    fn merging_joins_touching_and_overlapping_windows() {
        let w = |s, e| TimeWindow::new(s, e);
        let merged = merge_time_windows(&[w(0, 10), w(20, 30), w(5, 15), w(30, 40), w(50, 60)]);
        assert_eq!(
            merged,
            vec![
                (w(0, 15), vec![w(0, 10), w(5, 15)]),
                (w(20, 40), vec![w(20, 30), w(30, 40)])
            ]
        );
    }
}

//! The benchmark record and its deterministic generator. Flink's counterpart jobs
//! (`bench/flink/`) generate exactly the same sequence.

use serde::{Deserialize, Serialize};

/// One benchmark event: a key, a value and an event timestamp in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BenchEvent {
    pub key: u64,
    pub value: i64,
    pub timestamp: i64,
}

/// Events per millisecond of event time: 20M events span 20 s.
pub const EVENTS_PER_MS: u64 = 1_000;

/// splitmix64: a cheap, well-mixed function of the sequence number.
#[inline]
pub fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Event number `i` with keys in `0..keys`.
#[inline]
pub fn event(i: u64, keys: u64) -> BenchEvent {
    let r = splitmix64(i);
    BenchEvent {
        key: r % keys,
        value: (r >> 40) as i64 % 1_000,
        timestamp: (i / EVENTS_PER_MS) as i64,
    }
}

/// The map of the stateless pipeline.
#[inline]
pub fn scramble(mut e: BenchEvent) -> BenchEvent {
    e.value = e.value.wrapping_mul(31) ^ e.key as i64;
    e
}

/// The filter of the stateless pipeline (keeps about half).
#[inline]
pub fn keep(e: &BenchEvent) -> bool {
    e.value & 1 == 0
}

//! End-to-end latency: events carry their creation time (µs since the process started) and
//! the sink records `now - created` in a log-linear histogram, exact below 128 µs, then 64
//! buckets per power of two (≤ 1.6% error). Flink's `Latency.java` uses the same buckets
//! and the same percentile rule, so the two systems' figures compare directly.

use crate::measure::Percentiles;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

// Exponents 7 ..= 62 (the largest i64) above the exact range: 56 groups of 64.
const BUCKETS: usize = 128 + 56 * 64;

static START: OnceLock<Instant> = OnceLock::new();
static HISTOGRAM: [AtomicU64; BUCKETS] = [const { AtomicU64::new(0) }; BUCKETS];

/// Microseconds since the first call in this process.
#[inline]
pub fn now_micros() -> i64 {
    START.get_or_init(Instant::now).elapsed().as_micros() as i64
}

fn bucket(v: i64) -> usize {
    if v < 128 {
        return v.max(0) as usize;
    }
    let e = 63 - v.leading_zeros() as usize;
    let sub = ((v >> (e - 6)) & 63) as usize;
    128 + (e - 7) * 64 + sub
}

fn lower_bound(b: usize) -> u64 {
    if b < 128 {
        return b as u64;
    }
    let e = (b - 128) / 64 + 7;
    let sub = ((b - 128) % 64) as u64;
    (64 + sub) << (e - 6)
}

/// Records one latency.
#[inline]
pub fn record(micros: i64) {
    HISTOGRAM[bucket(micros)].fetch_add(1, Ordering::Relaxed);
}

/// p50, p99 and p99.9 of everything recorded: the lower bound of the bucket holding the
/// `ceil(q × count)`-th value.
pub fn percentiles() -> Percentiles {
    let counts: Vec<u64> = HISTOGRAM
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .collect();
    let total: u64 = counts.iter().sum();
    let at = |q: f64| {
        let rank = (q * total as f64).ceil() as u64;
        let mut seen = 0;
        for (b, c) in counts.iter().enumerate() {
            seen += c;
            if rank > 0 && seen >= rank {
                return lower_bound(b);
            }
        }
        0
    };
    Percentiles {
        p50: at(0.5),
        p99: at(0.99),
        p999: at(0.999),
        count: total,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_exact_below_128_and_within_two_percent_above() {
        for v in [0i64, 1, 127, 128, 129, 1_000, 65_432, 10_000_000, 1 << 40] {
            let lb = lower_bound(bucket(v)) as i64;
            assert!(lb <= v, "{v}: {lb}");
            if v < 128 {
                assert_eq!(lb, v);
            } else {
                assert!((v - lb) as f64 / v as f64 <= 1.0 / 64.0, "{v}: {lb}");
            }
        }
        assert_eq!(bucket(i64::MAX), BUCKETS - 1);
    }
}

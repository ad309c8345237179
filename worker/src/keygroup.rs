//! Key groups: the unit in which keyed state is partitioned, stored and rescaled.
//!
//! `key_group = hash(key) % max_parallelism`; subtask `i` of `p` owns a contiguous range
//! of key groups. The formulas are Flink's `KeyGroupRangeAssignment`, so a job keeps the
//! same key→subtask mapping a Flink user would reason about, and a restore at another
//! parallelism reads only the ranges it now owns.

use crate::hash::stable_hash;
use std::hash::Hash;

/// The default number of key groups (DESIGN.md §4).
pub const DEFAULT_MAX_PARALLELISM: usize = 128;

/// The largest supported number of key groups (Flink's limit too).
pub const UPPER_BOUND_MAX_PARALLELISM: usize = 1 << 15;

/// The key group of a key hash.
#[inline]
pub fn key_group_for_hash(hash: u64, max_parallelism: usize) -> usize {
    (hash % max_parallelism as u64) as usize
}

/// The key group of a key.
#[inline]
pub fn key_group_of<K: Hash + ?Sized>(key: &K, max_parallelism: usize) -> usize {
    key_group_for_hash(stable_hash(key), max_parallelism)
}

/// Which subtask owns a key group.
#[inline]
pub fn operator_index_for_key_group(
    max_parallelism: usize,
    parallelism: usize,
    key_group: usize,
) -> usize {
    key_group * parallelism / max_parallelism
}

/// An inclusive range of key groups `[start, end]`; empty when `end < start`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct KeyGroupRange {
    pub start: usize,
    pub end: usize,
}

impl KeyGroupRange {
    /// The range owned by subtask `index` of `parallelism` with `max_parallelism` groups.
    pub fn for_subtask(max_parallelism: usize, parallelism: usize, index: usize) -> Self {
        assert!(
            parallelism > 0 && parallelism <= max_parallelism,
            "parallelism {parallelism} must be in 1..={max_parallelism}"
        );
        let start = (index * max_parallelism).div_ceil(parallelism);
        let end = ((index + 1) * max_parallelism - 1) / parallelism;
        KeyGroupRange { start, end }
    }

    pub fn len(&self) -> usize {
        if self.end < self.start {
            0
        } else {
            self.end - self.start + 1
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn contains(&self, key_group: usize) -> bool {
        key_group >= self.start && key_group <= self.end
    }

    pub fn iter(&self) -> std::ops::RangeInclusive<usize> {
        self.start..=self.end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_partition_all_key_groups_in_order() {
        for max in [1, 7, 128, 1000] {
            for p in 1..=max.min(17) {
                let mut next = 0;
                for i in 0..p {
                    let r = KeyGroupRange::for_subtask(max, p, i);
                    assert_eq!(r.start, next, "max {max} p {p} subtask {i}");
                    for kg in r.iter() {
                        assert_eq!(operator_index_for_key_group(max, p, kg), i);
                    }
                    next = r.end + 1;
                }
                assert_eq!(next, max);
            }
        }
    }

    #[test]
    fn matches_flink_for_known_values() {
        // Flink: computeKeyGroupRangeForOperatorIndex(128, 3, i)
        assert_eq!(
            KeyGroupRange::for_subtask(128, 3, 0),
            KeyGroupRange { start: 0, end: 42 }
        );
        assert_eq!(
            KeyGroupRange::for_subtask(128, 3, 1),
            KeyGroupRange { start: 43, end: 85 }
        );
        assert_eq!(
            KeyGroupRange::for_subtask(128, 3, 2),
            KeyGroupRange {
                start: 86,
                end: 127
            }
        );
    }
}

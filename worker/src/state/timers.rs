//! Per-key timers in event time and processing time (Flink's `InternalTimerService`).
//!
//! A timer is (key, namespace, timestamp); registering the same one twice keeps one.
//! Timers fire in timestamp order, and in registration order for equal timestamps, so
//! results do not depend on hashing. Timers are keyed state: they belong to key groups.
//!
//! Triggers register the same timer for every record of a window (as in Flink). Each
//! queue keeps a small cache, indexed by key hash and time, of timers registered more than
//! once, so those repeats are answered by one comparison instead of a hash lookup. The
//! time is part of the index because one key has a timer per window: with sliding windows
//! every record registers several, which would evict each other from a per-key slot.

use crate::hash::{StableHashMap, stable_hash};
use crate::keygroup::{KeyGroupRange, key_group_for_hash};
use crate::record::Data;
use crate::runtime::context::TimerWakeup;
use crate::state::snapshot::{KeyGroupSnapshot, RawTimer, decode, encode};
use hashbrown::Equivalent;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::rc::Rc;

/// A borrowed (key, namespace, timestamp), looked up without cloning the key.
struct TimerRef<'a, K, N>(&'a K, &'a N, i64);

impl<K: Hash, N: Hash> Hash for TimerRef<'_, K, N> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Same as the tuple (K, N, i64) hashes itself.
        self.0.hash(state);
        self.1.hash(state);
        self.2.hash(state);
    }
}

impl<K: Eq, N: Eq> Equivalent<(K, N, i64)> for TimerRef<'_, K, N> {
    fn equivalent(&self, key: &(K, N, i64)) -> bool {
        *self.0 == key.0 && *self.1 == key.1 && self.2 == key.2
    }
}

/// The timers of one time domain.
/// Slots of the repeat cache (a power of two).
const RECENT_SLOTS: usize = 1024;

#[inline]
fn slot_of(key_hash: u64, time: i64) -> usize {
    let mixed = key_hash ^ (time as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (mixed >> 40) as usize & (RECENT_SLOTS - 1)
}

pub(crate) struct TimerQueue<K, N> {
    /// (time, registration order) → (key, namespace, key hash)
    by_time: BTreeMap<(i64, u64), (K, N, u64)>,
    index: StableHashMap<(K, N, i64), u64>,
    seq: u64,
    /// Timers known to be registered, by key hash and time (see the module docs).
    recent: Vec<Option<(K, N, i64)>>,
}

impl<K: Hash + Eq + Clone, N: Hash + Eq + Clone> TimerQueue<K, N> {
    pub(crate) fn new() -> Self {
        TimerQueue {
            by_time: BTreeMap::new(),
            index: StableHashMap::default(),
            seq: 0,
            recent: (0..RECENT_SLOTS).map(|_| None).collect(),
        }
    }

    /// Registers a timer of a key whose stable hash is `key_hash`; returns whether it is
    /// new.
    #[inline]
    pub(crate) fn register(&mut self, key_hash: u64, key: &K, ns: &N, time: i64) -> bool {
        let slot = slot_of(key_hash, time);
        if let Some((k, n, t)) = &self.recent[slot]
            && *t == time
            && k == key
            && n == ns
        {
            return false;
        }
        if self.index.contains_key(&TimerRef(key, ns, time)) {
            // A repeat: remember it (only repeats, so keys are cloned for repeats only).
            self.recent[slot] = Some((key.clone(), ns.clone(), time));
            return false;
        }
        let seq = self.seq;
        self.seq += 1;
        self.index.insert((key.clone(), ns.clone(), time), seq);
        self.by_time
            .insert((time, seq), (key.clone(), ns.clone(), key_hash));
        true
    }

    pub(crate) fn delete(&mut self, key_hash: u64, key: &K, ns: &N, time: i64) {
        self.recent[slot_of(key_hash, time)] = None;
        if let Some(seq) = self.index.remove(&TimerRef(key, ns, time)) {
            self.by_time.remove(&(time, seq));
        }
    }

    /// The earliest timer's time.
    pub(crate) fn peek(&self) -> Option<i64> {
        self.by_time.first_key_value().map(|(&(t, _), _)| t)
    }

    /// Removes and returns the earliest timer if it is due at `time`.
    pub(crate) fn pop_due(&mut self, time: i64) -> Option<(i64, K, N)> {
        let (&(t, _), _) = self.by_time.first_key_value()?;
        if t > time {
            return None;
        }
        let ((t, _), (k, n, key_hash)) = self.by_time.pop_first()?;
        self.index.remove(&TimerRef(&k, &n, t));
        let slot = &mut self.recent[slot_of(key_hash, t)];
        if slot
            .as_ref()
            .is_some_and(|(rk, rn, rt)| *rt == t && *rk == k && *rn == n)
        {
            *slot = None;
        }
        Some((t, k, n))
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_time.len()
    }
}

impl<K: Data + Hash + Eq, N: Data + Hash + Eq> TimerQueue<K, N> {
    /// Every timer, into the snapshot of its key's group (`groups` in key-group order
    /// from `range.start`), through `queue` (the event or processing list of a group).
    fn snapshot_into(
        &self,
        max_parallelism: usize,
        range: KeyGroupRange,
        groups: &mut [KeyGroupSnapshot],
        queue: fn(&mut KeyGroupSnapshot) -> &mut Vec<RawTimer>,
    ) -> Result<(), String> {
        for (&(time, seq), (key, ns, key_hash)) in &self.by_time {
            let kg = key_group_for_hash(*key_hash, max_parallelism);
            let Some(group) = kg.checked_sub(range.start).and_then(|i| groups.get_mut(i)) else {
                return Err(format!(
                    "a timer's key is in key group {kg}, outside this subtask's {}..={}",
                    range.start, range.end
                ));
            };
            queue(group).push(RawTimer {
                key: encode(key)?,
                ns: encode(ns)?,
                time,
                seq,
            });
        }
        Ok(())
    }

    /// Registers restored timers, in the order they were registered before.
    fn restore(&mut self, mut timers: Vec<&RawTimer>) -> Result<(), String> {
        timers.sort_by_key(|t| (t.time, t.seq));
        for t in timers {
            let key: K = decode(&t.key)?;
            let ns: N = decode(&t.ns)?;
            self.register(stable_hash(&key), &key, &ns, t.time);
        }
        Ok(())
    }
}

/// Both timer queues of a keyed operator.
pub(crate) struct Timers<K, N> {
    pub event: TimerQueue<K, N>,
    pub processing: TimerQueue<K, N>,
    wakeup: Rc<TimerWakeup>,
}

impl<K: Hash + Eq + Clone, N: Hash + Eq + Clone> Timers<K, N> {
    pub(crate) fn new(wakeup: Rc<TimerWakeup>) -> Self {
        Timers {
            event: TimerQueue::new(),
            processing: TimerQueue::new(),
            wakeup,
        }
    }

    pub(crate) fn register_processing(&mut self, key_hash: u64, key: &K, ns: &N, time: i64) {
        if self.processing.register(key_hash, key, ns, time) {
            self.wakeup.request(time);
        }
    }

    /// Asks the task to call back at the next processing-time timer.
    pub(crate) fn request_wakeup(&self) {
        if let Some(t) = self.processing.peek() {
            self.wakeup.request(t);
        }
    }
}

impl<K: Data + Hash + Eq, N: Data + Hash + Eq> Timers<K, N> {
    /// Adds both queues' timers to the snapshots of their keys' groups.
    pub(crate) fn snapshot_into(
        &self,
        max_parallelism: usize,
        range: KeyGroupRange,
        groups: &mut [KeyGroupSnapshot],
    ) -> Result<(), String> {
        self.event
            .snapshot_into(max_parallelism, range, groups, |g| &mut g.event_timers)?;
        self.processing
            .snapshot_into(max_parallelism, range, groups, |g| &mut g.processing_timers)
    }

    /// Registers the timers of restored key groups; processing-time ones ask the task
    /// for a wake-up at the earliest.
    pub(crate) fn restore(&mut self, groups: &[KeyGroupSnapshot]) -> Result<(), String> {
        self.event
            .restore(groups.iter().flat_map(|g| &g.event_timers).collect())?;
        self.processing
            .restore(groups.iter().flat_map(|g| &g.processing_timers).collect())?;
        self.request_wakeup();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_fire_in_time_then_registration_order_and_deduplicate() {
        let mut q: TimerQueue<String, ()> = TimerQueue::new();
        assert!(q.register(7, &"b".into(), &(), 20));
        assert!(q.register(7, &"a".into(), &(), 10));
        assert!(q.register(7, &"c".into(), &(), 20));
        assert!(!q.register(7, &"b".into(), &(), 20));
        assert!(!q.register(7, &"b".into(), &(), 20));
        q.delete(7, &"a".into(), &(), 10);
        assert_eq!(q.len(), 2);
        assert_eq!(q.pop_due(15), None);
        assert_eq!(q.pop_due(20), Some((20, "b".into(), ())));
        assert_eq!(q.pop_due(20), Some((20, "c".into(), ())));
        assert_eq!(q.pop_due(i64::MAX), None);
        // Re-registering a fired timer works, also right after a remembered repeat.
        assert!(q.register(7, &"b".into(), &(), 20));
        assert!(!q.register(7, &"b".into(), &(), 20));
        q.delete(7, &"b".into(), &(), 20);
        assert!(q.register(7, &"b".into(), &(), 20));
    }
}

//! Per-key timers in event time and processing time (Flink's `InternalTimerService`).
//!
//! A timer is (key, namespace, timestamp); registering the same one twice keeps one.
//! Timers fire in timestamp order, and in registration order for equal timestamps, so
//! results do not depend on hashing. Timers are keyed state: they belong to key groups.

use crate::hash::StableHashMap;
use crate::runtime::context::TimerWakeup;
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
pub(crate) struct TimerQueue<K, N> {
    by_time: BTreeMap<(i64, u64), (K, N)>,
    index: StableHashMap<(K, N, i64), u64>,
    seq: u64,
}

impl<K: Hash + Eq + Clone, N: Hash + Eq + Clone> TimerQueue<K, N> {
    pub(crate) fn new() -> Self {
        TimerQueue {
            by_time: BTreeMap::new(),
            index: StableHashMap::default(),
            seq: 0,
        }
    }

    /// Registers a timer; returns whether it is new.
    #[inline]
    pub(crate) fn register(&mut self, key: &K, ns: &N, time: i64) -> bool {
        if self.index.contains_key(&TimerRef(key, ns, time)) {
            return false;
        }
        let seq = self.seq;
        self.seq += 1;
        self.index.insert((key.clone(), ns.clone(), time), seq);
        self.by_time.insert((time, seq), (key.clone(), ns.clone()));
        true
    }

    pub(crate) fn delete(&mut self, key: &K, ns: &N, time: i64) {
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
        let ((t, _), (k, n)) = self.by_time.pop_first()?;
        self.index.remove(&TimerRef(&k, &n, t));
        Some((t, k, n))
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_time.len()
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

    pub(crate) fn register_processing(&mut self, key: &K, ns: &N, time: i64) {
        if self.processing.register(key, ns, time) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_fire_in_time_then_registration_order_and_deduplicate() {
        let mut q: TimerQueue<String, ()> = TimerQueue::new();
        assert!(q.register(&"b".into(), &(), 20));
        assert!(q.register(&"a".into(), &(), 10));
        assert!(q.register(&"c".into(), &(), 20));
        assert!(!q.register(&"b".into(), &(), 20));
        q.delete(&"a".into(), &(), 10);
        assert_eq!(q.len(), 2);
        assert_eq!(q.pop_due(15), None);
        assert_eq!(q.pop_due(20), Some((20, "b".into(), ())));
        assert_eq!(q.pop_due(20), Some((20, "c".into(), ())));
        assert_eq!(q.pop_due(i64::MAX), None);
        // Re-registering a fired timer works.
        assert!(q.register(&"b".into(), &(), 20));
    }
}

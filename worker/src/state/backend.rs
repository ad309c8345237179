//! The keyed state of one operator instance: its current key and its named tables.
//!
//! Tables are created on first use from a descriptor and found again by name, so a
//! function never has to register state up front; a second use with another type is a
//! programming error and fails the job with the state's name.
//!
//! Snapshots go out in the canonical format by key group (`state::snapshot`). A restore
//! hands each named state's entries to its table; since tables appear only when a
//! function first uses them, entries of a state no table has asked for yet wait here, and
//! are part of the next snapshot as they are, so state the job does not touch is kept.

use crate::record::{Data, Key};
use crate::runtime::context::Clock;
use crate::state::heap::{
    At, Expiry, HeapTable, KeyContext, Never, NsTable, SnapshotTable, TableKeys,
};
use crate::state::snapshot::{KeyGroupSnapshot, RawEntry};
use crate::state::ttl::StateTtlConfig;
use std::any::Any;
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::Hash;
use std::rc::Rc;

struct Registered<K> {
    name: Cow<'static, str>,
    table: Rc<dyn Any>,
    keys: Rc<dyn TableKeys<K>>,
    snapshot: Rc<dyn SnapshotTable>,
}

pub(crate) struct KeyedBackend<K> {
    pub(crate) key: Rc<KeyContext<K>>,
    clock: Rc<Clock>,
    tables: RefCell<Vec<Registered<K>>>,
    /// Restored entries of states no table has asked for yet: by name, with key group.
    pending: RefCell<HashMap<String, Vec<(u32, RawEntry)>>>,
}

impl<K: Key> KeyedBackend<K> {
    pub(crate) fn new(key: Rc<KeyContext<K>>, clock: Rc<Clock>) -> Self {
        KeyedBackend {
            key,
            clock,
            tables: RefCell::new(Vec::new()),
            pending: RefCell::new(HashMap::new()),
        }
    }

    /// The table named `name` holding `V` per key and namespace `N`; created on first use.
    pub(crate) fn table<N, V>(
        &self,
        name: &str,
        ttl: Option<StateTtlConfig>,
    ) -> Rc<dyn NsTable<N, V>>
    where
        N: Data + Hash + Eq,
        V: Data,
    {
        // Entries of state without TTL carry no expiry at all.
        match ttl {
            None => self.typed_table::<N, V, Never>(name, None),
            Some(_) => self.typed_table::<N, V, At>(name, ttl),
        }
    }

    fn typed_table<N, V, X>(&self, name: &str, ttl: Option<StateTtlConfig>) -> Rc<dyn NsTable<N, V>>
    where
        N: Data + Hash + Eq,
        V: Data,
        X: Expiry,
    {
        {
            let tables = self.tables.borrow();
            if let Some(r) = tables.iter().find(|r| r.name == name) {
                return match r.table.clone().downcast::<HeapTable<K, N, V, X>>() {
                    Ok(t) => t,
                    Err(_) => panic!(
                        "state '{name}' is used with two different types (or with and without a \
                         time-to-live) in one operator; give each its own name"
                    ),
                };
            }
        }
        let table = Rc::new(HeapTable::<K, N, V, X>::new(
            self.key.clone(),
            ttl,
            self.clock.clone(),
        ));
        if let Some(restored) = self.pending.borrow_mut().remove(name) {
            let entries: Vec<RawEntry> = restored.into_iter().map(|(_, e)| e).collect();
            if let Err(e) = table.restore(&entries) {
                panic!("restoring state '{name}': {e}");
            }
        }
        self.tables.borrow_mut().push(Registered {
            name: Cow::Owned(name.to_string()),
            table: table.clone(),
            keys: table.clone(),
            snapshot: table.clone(),
        });
        table
    }

    /// The task's processing-time clock (time-to-live of state entries).
    pub(crate) fn clock(&self) -> &Rc<Clock> {
        &self.clock
    }

    /// Keys that have an entry in the state named `name`.
    pub(crate) fn keys_of(&self, name: &str) -> Vec<K> {
        self.tables
            .borrow()
            .iter()
            .find(|r| r.name == name)
            .map(|r| r.keys.keys())
            .unwrap_or_default()
    }

    /// Makes `key` current.
    pub(crate) fn set_current_key(&self, key: K) -> Result<(), String> {
        self.key.set(key)
    }

    /// Every named state's entries, one snapshot per key group of this subtask (in order;
    /// timers are added by the operator that owns them).
    pub(crate) fn snapshot(&self) -> Result<Vec<KeyGroupSnapshot>, String> {
        let range = self.key.range();
        let mut groups: Vec<KeyGroupSnapshot> = range
            .iter()
            .map(|g| KeyGroupSnapshot {
                group: g as u32,
                ..KeyGroupSnapshot::default()
            })
            .collect();
        for table in self.tables.borrow().iter() {
            for (g, snapshot) in range.iter().zip(groups.iter_mut()) {
                let mut entries = Vec::new();
                table.snapshot.snapshot_group(g, &mut entries)?;
                if !entries.is_empty() {
                    snapshot.entries_mut(&table.name).extend(entries);
                }
            }
        }
        for (name, entries) in self.pending.borrow().iter() {
            for (g, entry) in entries {
                if let Some(snapshot) = groups.get_mut(*g as usize - range.start) {
                    snapshot.entries_mut(name).push(entry.clone());
                }
            }
        }
        Ok(groups)
    }

    /// Restores the named states of `groups`, which must be key groups of this subtask.
    pub(crate) fn restore(&self, groups: &[KeyGroupSnapshot]) -> Result<(), String> {
        let range = self.key.range();
        for group in groups {
            if !range.contains(group.group as usize) {
                return Err(format!(
                    "a snapshot of key group {} was handed to the subtask of key groups {}..={}",
                    group.group, range.start, range.end
                ));
            }
            for (name, entries) in &group.tables {
                let registered = self
                    .tables
                    .borrow()
                    .iter()
                    .find(|r| r.name == *name)
                    .map(|r| r.snapshot.clone());
                match registered {
                    Some(table) => table
                        .restore(entries)
                        .map_err(|e| format!("restoring state '{name}': {e}"))?,
                    None => self
                        .pending
                        .borrow_mut()
                        .entry(name.clone())
                        .or_default()
                        .extend(entries.iter().map(|e| (group.group, e.clone()))),
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProcessingTimeMode;
    use crate::keygroup::KeyGroupRange;
    use crate::runtime::context::TimerWakeup;
    use crate::state::snapshot::{read_keyed_file, write_keyed_file};
    use crate::state::timers::Timers;

    const MAX_PARALLELISM: usize = 128;

    /// One subtask's keyed state and timers, of `parallelism` subtasks.
    struct Subtask {
        backend: KeyedBackend<String>,
        timers: Timers<String, ()>,
        range: KeyGroupRange,
    }

    fn subtask(parallelism: usize, index: usize) -> Subtask {
        let range = KeyGroupRange::for_subtask(MAX_PARALLELISM, parallelism, index);
        let key = Rc::new(KeyContext::new(range, MAX_PARALLELISM));
        let clock = Rc::new(Clock::new(ProcessingTimeMode::Simulated));
        Subtask {
            backend: KeyedBackend::new(key, clock),
            timers: Timers::new(Rc::new(TimerWakeup::new())),
            range,
        }
    }

    fn words() -> Vec<String> {
        (0..200).map(|i| format!("word-{i}")).collect()
    }

    impl Subtask {
        fn owns(&self, key: &str) -> bool {
            self.range.contains(crate::keygroup::key_group_of(
                &key.to_string(),
                MAX_PARALLELISM,
            ))
        }

        fn count(&self, key: &str) -> Option<u64> {
            self.backend
                .set_current_key(key.to_string())
                .expect("owned");
            self.backend.table::<(), u64>("count", None).get(&())
        }

        /// The snapshot as the keyed-state file of a checkpoint holds it.
        fn snapshot_file(&self) -> Vec<u8> {
            let mut groups = self.backend.snapshot().expect("snapshots");
            self.timers
                .snapshot_into(MAX_PARALLELISM, self.range, &mut groups)
                .expect("timers");
            write_keyed_file(&groups).expect("writes")
        }

        fn restore_from(&mut self, files: &[Vec<u8>]) {
            for file in files {
                let groups = read_keyed_file(file, self.range).expect("reads");
                self.backend.restore(&groups).expect("restores");
                self.timers.restore(&groups).expect("timers");
            }
        }
    }

    #[test]
    fn keyed_state_and_timers_rescale_from_one_subtask_to_three() {
        let one = subtask(1, 0);
        let counts = one.backend.table::<(), u64>("count", None);
        for (i, w) in words().iter().enumerate() {
            one.backend.set_current_key(w.clone()).expect("owned");
            counts.put(&(), i as u64 * 3);
        }
        let mut one = one;
        for (i, w) in words().iter().enumerate().rev() {
            let key_hash = crate::hash::stable_hash(w);
            one.timers
                .event
                .register(key_hash, w, &(), 1000 + (i as i64 % 7));
        }
        let file = one.snapshot_file();

        let mut fired = Vec::new();
        for index in 0..3 {
            let mut part = subtask(3, index);
            part.restore_from(std::slice::from_ref(&file));
            for (i, w) in words().iter().enumerate() {
                if part.owns(w) {
                    assert_eq!(part.count(w), Some(i as u64 * 3), "{w}");
                }
            }
            while let Some((t, k, ())) = part.timers.event.pop_due(i64::MAX) {
                assert!(part.owns(&k), "{k} fired on a subtask that does not own it");
                fired.push((t, k));
            }
        }
        fired.sort();
        let mut expected: Vec<(i64, String)> = words()
            .iter()
            .enumerate()
            .map(|(i, w)| (1000 + (i as i64 % 7), w.clone()))
            .collect();
        expected.sort();
        assert_eq!(fired, expected);
    }

    #[test]
    fn state_a_restored_job_has_not_touched_yet_is_kept_in_its_next_snapshot() {
        let before = subtask(2, 1);
        let names = before.backend.table::<(), String>("last-word", None);
        let mut owned = Vec::new();
        for w in words() {
            if before.owns(&w) {
                before.backend.set_current_key(w.clone()).expect("owned");
                names.put(&(), format!("{w}!"));
                owned.push(w);
            }
        }
        let first = before.snapshot_file();

        // Restored, then snapshotted again before any function asked for the state.
        let mut middle = subtask(2, 1);
        middle.restore_from(std::slice::from_ref(&first));
        let second = middle.snapshot_file();

        let mut after = subtask(2, 1);
        after.restore_from(&[second]);
        let table = after.backend.table::<(), String>("last-word", None);
        for w in &owned {
            after.backend.set_current_key(w.clone()).expect("owned");
            assert_eq!(table.get(&()), Some(format!("{w}!")));
        }
    }

    #[test]
    fn a_state_read_back_as_another_type_fails_with_its_name() {
        let before = subtask(1, 0);
        before.backend.set_current_key("k".into()).expect("owned");
        before
            .backend
            .table::<(), String>("temperature", None)
            .put(&(), "warm".into());
        let file = before.snapshot_file();
        let mut after = subtask(1, 0);
        after.restore_from(&[file]);
        let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            after.backend.table::<(), f64>("temperature", None);
        }))
        .expect_err("a string is not a number");
        let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(
            message.contains("restoring state 'temperature'"),
            "{message}"
        );
        assert!(message.contains("f64"), "{message}");
    }
}

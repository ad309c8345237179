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
use crate::state::rocks::{RocksCheckpoint, RocksInstance, RocksTable};
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
    /// Heap tables only: RocksDB snapshots and restores its tables without their types.
    snapshot: Option<Rc<dyn SnapshotTable>>,
}

/// Where a backend keeps its tables: in memory, or in the subtask's RocksDB instance.
#[derive(Clone)]
pub(crate) enum StateStore {
    Heap,
    RocksDb(Rc<RocksInstance>),
}

pub(crate) struct KeyedBackend<K> {
    pub(crate) key: Rc<KeyContext<K>>,
    clock: Rc<Clock>,
    store: StateStore,
    tables: RefCell<Vec<Registered<K>>>,
    /// Restored entries of states no table has asked for yet: by name, with key group.
    pending: RefCell<HashMap<String, Vec<(u32, RawEntry)>>>,
}

impl<K: Key> KeyedBackend<K> {
    pub(crate) fn with_store(key: Rc<KeyContext<K>>, clock: Rc<Clock>, store: StateStore) -> Self {
        KeyedBackend {
            key,
            clock,
            store,
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
                let table = r.table.clone();
                let found: Option<Rc<dyn NsTable<N, V>>> = match &self.store {
                    StateStore::Heap => table
                        .downcast::<HeapTable<K, N, V, X>>()
                        .ok()
                        .map(|t| t as Rc<dyn NsTable<N, V>>),
                    StateStore::RocksDb(_) => table
                        .downcast::<RocksTable<K, N, V, X>>()
                        .ok()
                        .map(|t| t as Rc<dyn NsTable<N, V>>),
                };
                return found.unwrap_or_else(|| {
                    panic!(
                        "state '{name}' is used with two different types (or with and without a \
                         time-to-live) in one operator; give each its own name"
                    )
                });
            }
        }
        let registered = |table: Rc<dyn Any>, keys, snapshot| Registered {
            name: Cow::Owned(name.to_string()),
            table,
            keys,
            snapshot,
        };
        let (table, registered): (Rc<dyn NsTable<N, V>>, Registered<K>) = match &self.store {
            StateStore::Heap => {
                let t = Rc::new(HeapTable::<K, N, V, X>::new(
                    self.key.clone(),
                    ttl,
                    self.clock.clone(),
                ));
                if let Some(mut restored) = self.pending.borrow_mut().remove(name) {
                    // A chunk at a time from the end, each chunk's bytes freed once
                    // decoded: the raw and the decoded state are never both whole in
                    // memory.
                    while !restored.is_empty() {
                        let at = restored.len().saturating_sub(4096);
                        let chunk: Vec<RawEntry> = restored.drain(at..).map(|(_, e)| e).collect();
                        if let Err(e) = t.restore(&chunk) {
                            panic!("restoring state '{name}': {e}");
                        }
                    }
                }
                (t.clone(), registered(t.clone(), t.clone(), Some(t)))
            }
            StateStore::RocksDb(db) => {
                let t = Rc::new(RocksTable::<K, N, V, X>::new(
                    self.key.clone(),
                    db.clone(),
                    name,
                    ttl,
                    self.clock.clone(),
                ));
                (t.clone(), registered(t.clone(), t, None))
            }
        };
        self.tables.borrow_mut().push(registered);
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
        if let StateStore::RocksDb(db) = &self.store {
            return db.snapshot(range, self.clock.now());
        }
        let mut groups: Vec<KeyGroupSnapshot> = range
            .iter()
            .map(|g| KeyGroupSnapshot {
                group: g as u32,
                ..KeyGroupSnapshot::default()
            })
            .collect();
        for table in self.tables.borrow().iter() {
            let Some(snapshot_table) = &table.snapshot else {
                continue;
            };
            for (g, snapshot) in range.iter().zip(groups.iter_mut()) {
                let mut entries = Vec::new();
                snapshot_table.snapshot_group(g, &mut entries)?;
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

    /// What checkpoint `id` takes of the state at its barrier: heap state as key-group
    /// snapshots; RocksDB state as a RocksDB checkpoint the uploader reads later (the
    /// key-group snapshots then only have room for the timers).
    pub(crate) fn checkpoint(
        &self,
        id: u64,
    ) -> Result<(Vec<KeyGroupSnapshot>, Option<RocksCheckpoint>), String> {
        let StateStore::RocksDb(db) = &self.store else {
            return Ok((self.snapshot()?, None));
        };
        let range = self.key.range();
        let groups = range
            .iter()
            .map(|g| KeyGroupSnapshot {
                group: g as u32,
                ..KeyGroupSnapshot::default()
            })
            .collect();
        Ok((groups, Some(db.checkpoint(id, range, self.clock.now())?)))
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
            if let StateStore::RocksDb(db) = &self.store {
                db.restore(group.group as usize, &group.tables)?;
                continue;
            }
            for (name, entries) in &group.tables {
                let registered = self
                    .tables
                    .borrow()
                    .iter()
                    .find(|r| r.name == *name)
                    .and_then(|r| r.snapshot.clone());
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

    /// Where the subtasks of a test keep their state.
    #[derive(Clone, Copy, Debug)]
    enum Kind {
        Heap,
        RocksDb,
    }

    fn subtask(parallelism: usize, index: usize) -> Subtask {
        subtask_on(Kind::Heap, parallelism, index)
    }

    fn subtask_on(kind: Kind, parallelism: usize, index: usize) -> Subtask {
        let range = KeyGroupRange::for_subtask(MAX_PARALLELISM, parallelism, index);
        let key = Rc::new(KeyContext::new(range, MAX_PARALLELISM));
        let clock = Rc::new(Clock::new(ProcessingTimeMode::Simulated));
        let store = match kind {
            Kind::Heap => StateStore::Heap,
            Kind::RocksDb => StateStore::RocksDb(
                RocksInstance::open(
                    &crate::state::RocksDbConfig {
                        memory_budget: 16 << 20,
                        ..Default::default()
                    },
                    &format!("backend-test-{parallelism}-{index}"),
                )
                .expect("opens"),
            ),
        };
        Subtask {
            backend: KeyedBackend::with_store(key, clock, store),
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
        // Written on either backend, read back on either: the snapshot format is one.
        for (from, to) in [
            (Kind::Heap, Kind::Heap),
            (Kind::Heap, Kind::RocksDb),
            (Kind::RocksDb, Kind::Heap),
            (Kind::RocksDb, Kind::RocksDb),
        ] {
            rescale_one_to_three(from, to);
        }
    }

    fn rescale_one_to_three(from: Kind, to: Kind) {
        let one = subtask_on(from, 1, 0);
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
            let mut part = subtask_on(to, 3, index);
            part.restore_from(std::slice::from_ref(&file));
            for (i, w) in words().iter().enumerate() {
                if part.owns(w) {
                    assert_eq!(part.count(w), Some(i as u64 * 3), "{w}: {from:?} -> {to:?}");
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

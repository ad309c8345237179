//! The heap state backend: keyed state in hash tables, one table per key group.
//!
//! Organising by key group means a snapshot can be written group by group, and a restore
//! at another parallelism reads only the groups a subtask now owns. The key's hash is
//! computed once per record, when the operator sets the current key; entries stay small
//! (key, namespace, value, expiry) because their size decides how many fit in cache.

use crate::hash::{combine, stable_hash};
use crate::keygroup::{KeyGroupRange, key_group_for_hash};
use crate::record::{Data, Key};
use crate::runtime::context::Clock;
use crate::state::snapshot::{RawEntry, decode, encode};
use crate::state::ttl::{StateTtlConfig, TtlUpdateType, TtlVisibility};
use hashbrown::HashTable;
use hashbrown::hash_table::Entry as TableEntry;
use std::cell::{Cell, Ref, RefCell};
use std::hash::Hash;
use std::rc::Rc;

/// The key the operator is processing: set once per record or timer.
pub(crate) struct KeyContext<K> {
    key: RefCell<Option<K>>,
    hash: Cell<u64>,
    group: Cell<usize>,
    range: KeyGroupRange,
    max_parallelism: usize,
    /// `max_parallelism - 1` when it is a power of two: a mask instead of a division.
    mask: Option<u64>,
}

impl<K: Key> KeyContext<K> {
    pub(crate) fn new(range: KeyGroupRange, max_parallelism: usize) -> Self {
        KeyContext {
            key: RefCell::new(None),
            hash: Cell::new(0),
            group: Cell::new(0),
            range,
            max_parallelism,
            mask: max_parallelism
                .is_power_of_two()
                .then(|| max_parallelism as u64 - 1),
        }
    }

    /// Makes `key` current. Fails when the key does not belong to this subtask, which
    /// happens when a key's `Hash` is not deterministic (differs between processes or runs).
    #[inline]
    pub(crate) fn set(&self, key: K) -> Result<(), String> {
        let hash = stable_hash(&key);
        self.set_hashed(key, hash)
    }

    #[inline]
    pub(crate) fn set_hashed(&self, key: K, hash: u64) -> Result<(), String> {
        let kg = match self.mask {
            Some(m) => (hash & m) as usize,
            None => key_group_for_hash(hash, self.max_parallelism),
        };
        if !self.range.contains(kg) {
            return Err(format!(
                "a record's key falls in key group {kg}, which subtask key groups {}..={} do not own; \
                 the key type's Hash must be deterministic (derive it; don't hash pointers, \
                 random state or floating-point noise)",
                self.range.start, self.range.end
            ));
        }
        self.hash.set(hash);
        self.group.set(kg - self.range.start);
        *self.key.borrow_mut() = Some(key);
        Ok(())
    }

    pub(crate) fn key(&self) -> Ref<'_, Option<K>> {
        self.key.borrow()
    }

    /// A copy of the current key.
    pub(crate) fn current(&self) -> Option<K> {
        self.key.borrow().clone()
    }

    pub(crate) fn hash(&self) -> u64 {
        self.hash.get()
    }

    /// The current key's key group, counted from this subtask's first.
    pub(crate) fn group(&self) -> usize {
        self.group.get()
    }

    pub(crate) fn range(&self) -> KeyGroupRange {
        self.range
    }

    pub(crate) fn max_parallelism(&self) -> usize {
        self.max_parallelism
    }
}

/// Namespaced keyed state bound to the current key: the one interface every keyed state
/// kind and every stateful operator uses, whatever the backend.
pub(crate) trait NsTable<N, V> {
    /// A copy of the value.
    fn get(&self, ns: &N) -> Option<V>;
    /// Reads the value in place.
    fn with_ref(&self, ns: &N, f: &mut dyn FnMut(Option<&V>));
    fn put(&self, ns: &N, value: V);
    /// Read-modify-write: `f(Some(&mut v))` may change `v` in place (or return a
    /// replacement); `f(None)` may return a value to insert.
    fn modify(&self, ns: &N, f: &mut dyn FnMut(Option<&mut V>) -> Option<V>);
    fn remove(&self, ns: &N) -> Option<V>;
    fn contains(&self, ns: &N) -> bool;
}

/// Listing and counting the entries of a table, for every key (not just the current one).
pub(crate) trait TableKeys<K> {
    /// The distinct keys that have an entry (in any namespace), by key group.
    fn keys(&self) -> Vec<K>;
}

/// When an entry expires: never (state without TTL, no space taken), or at a time.
pub(crate) trait Expiry: Copy + 'static {
    /// Whether entries remember an expiry at all.
    const TRACKED: bool;
    /// Processing time after which the entry is expired (`i64::MAX`: never).
    fn at(self) -> i64;
    fn new(at: i64) -> Self;
}

/// The expiry of state without TTL: a zero-sized "never".
#[derive(Clone, Copy, Debug)]
pub(crate) struct Never;

impl Expiry for Never {
    const TRACKED: bool = false;
    #[inline]
    fn at(self) -> i64 {
        i64::MAX
    }
    #[inline]
    fn new(_: i64) -> Self {
        Never
    }
}

/// The expiry of state with TTL.
#[derive(Clone, Copy, Debug)]
pub(crate) struct At(i64);

impl Expiry for At {
    const TRACKED: bool = true;
    #[inline]
    fn at(self) -> i64 {
        self.0
    }
    #[inline]
    fn new(at: i64) -> Self {
        At(at)
    }
}

struct Entry<K, N, V, X> {
    key: K,
    ns: N,
    value: V,
    expiry: X,
}

/// The hash an entry is stored under. All keys of one key group share
/// `hash % max_parallelism`, i.e. the low bits that pick a hash-table bucket; rotating
/// brings independent bits there, or every key of a group would start probing at the same
/// bucket.
#[inline]
fn table_hash<N: Hash>(key_hash: u64, ns: &N) -> u64 {
    let h = if std::mem::size_of::<N>() == 0 {
        key_hash
    } else {
        combine(key_hash, stable_hash(ns))
    };
    h.rotate_left(32)
}

/// Rehashing an entry when its table grows (rare: the hash is not stored, to keep entries
/// small).
fn entry_hash<K: Hash, N: Hash, V, X>(e: &Entry<K, N, V, X>) -> u64 {
    table_hash(stable_hash(&e.key), &e.ns)
}

/// How often (in writes) one key group is swept for expired entries.
const SWEEP_EVERY: u32 = 1024;

/// The entries of one key group.
type Group<K, N, V, X> = HashTable<Entry<K, N, V, X>>;

/// A heap table of one piece of state; `X` is [`Never`] without TTL and [`At`] with.
pub(crate) struct HeapTable<K, N, V, X = Never> {
    key: Rc<KeyContext<K>>,
    groups: RefCell<Vec<Group<K, N, V, X>>>,
    ttl: Option<StateTtlConfig>,
    clock: Rc<Clock>,
    writes: Cell<u32>,
    sweep_next: Cell<usize>,
}

impl<K: Key, N: Hash + Eq + Clone, V, X: Expiry> HeapTable<K, N, V, X> {
    pub(crate) fn new(
        key: Rc<KeyContext<K>>,
        ttl: Option<StateTtlConfig>,
        clock: Rc<Clock>,
    ) -> Self {
        assert!(
            ttl.is_none() || X::TRACKED,
            "internal error: a table with a time-to-live must store expiries"
        );
        let groups = (0..key.range().len()).map(|_| HashTable::new()).collect();
        HeapTable {
            key,
            groups: RefCell::new(groups),
            ttl,
            clock,
            writes: Cell::new(0),
            sweep_next: Cell::new(0),
        }
    }

    #[inline]
    fn hash_of(&self, ns: &N) -> u64 {
        table_hash(self.key.hash(), ns)
    }

    fn expiry_on_write(&self) -> i64 {
        match &self.ttl {
            None => i64::MAX,
            Some(t) => self.clock.now().saturating_add(t.ttl_millis()),
        }
    }

    fn after_write(&self) {
        if self.ttl.is_none() {
            return;
        }
        let w = self.writes.get().wrapping_add(1);
        self.writes.set(w);
        if w.is_multiple_of(SWEEP_EVERY) {
            // Incremental cleanup: one key group at a time, so no access pays for all.
            let now = self.clock.now();
            let mut groups = self.groups.borrow_mut();
            if groups.is_empty() {
                return;
            }
            let g = self.sweep_next.get() % groups.len();
            groups[g].retain(|e| e.expiry.at() > now);
            self.sweep_next.set(g + 1);
        }
    }

    /// Runs `f` on the current key's entry, applying TTL rules first.
    fn with_entry<R>(&self, ns: &N, f: impl FnOnce(Option<&mut Entry<K, N, V, X>>) -> R) -> R {
        let key_ref = self.key.key();
        let Some(key) = key_ref.as_ref() else {
            panic!(
                "keyed state was used where no key is set (outside processing of a keyed record or timer)"
            );
        };
        let h = self.hash_of(ns);
        let mut groups = self.groups.borrow_mut();
        let group = &mut groups[self.key.group()];
        match group.find_entry(h, |e| e.key == *key && e.ns == *ns) {
            Ok(mut occ) => {
                if let Some(ttl) = &self.ttl {
                    let now = self.clock.now();
                    if occ.get().expiry.at() <= now {
                        // A read cleans an expired entry up; only the read that finds it
                        // may still see it (Flink's ReturnExpiredIfNotCleanedUp).
                        let (mut expired, _) = occ.remove();
                        return match ttl.visibility {
                            TtlVisibility::NeverReturnExpired => f(None),
                            TtlVisibility::ReturnExpiredIfNotCleanedUp => f(Some(&mut expired)),
                        };
                    } else if ttl.update_type == TtlUpdateType::OnReadAndWrite {
                        occ.get_mut().expiry = X::new(now.saturating_add(ttl.ttl_millis()));
                    }
                }
                f(Some(occ.get_mut()))
            }
            Err(_) => f(None),
        }
    }
}

impl<K: Key, N: Hash + Eq + Clone, V: Clone, X: Expiry> NsTable<N, V> for HeapTable<K, N, V, X> {
    fn get(&self, ns: &N) -> Option<V> {
        self.with_entry(ns, |e| e.map(|e| e.value.clone()))
    }

    fn with_ref(&self, ns: &N, f: &mut dyn FnMut(Option<&V>)) {
        self.with_entry(ns, |e| f(e.map(|e| &e.value)))
    }

    fn put(&self, ns: &N, value: V) {
        let mut value = Some(value);
        self.modify(ns, &mut |slot| match slot {
            Some(v) => {
                if let Some(new) = value.take() {
                    *v = new;
                }
                None
            }
            None => value.take(),
        });
    }

    fn modify(&self, ns: &N, f: &mut dyn FnMut(Option<&mut V>) -> Option<V>) {
        let key_ref = self.key.key();
        let Some(key) = key_ref.as_ref() else {
            panic!(
                "keyed state was used where no key is set (outside processing of a keyed record or timer)"
            );
        };
        let h = self.hash_of(ns);
        let expires_at = self.expiry_on_write();
        {
            let mut groups = self.groups.borrow_mut();
            let group = &mut groups[self.key.group()];
            let entry = group.entry(h, |e| e.key == *key && e.ns == *ns, entry_hash);
            match entry {
                TableEntry::Occupied(mut occ) => {
                    let e = occ.get_mut();
                    let expired = e.expiry.at() <= self.clock_now_if_ttl();
                    let hide = expired
                        && self
                            .ttl
                            .is_some_and(|t| t.visibility == TtlVisibility::NeverReturnExpired);
                    let replacement = if hide { f(None) } else { f(Some(&mut e.value)) };
                    if hide && replacement.is_none() {
                        occ.remove();
                    } else {
                        if let Some(new) = replacement {
                            e.value = new;
                        }
                        e.expiry = X::new(expires_at);
                    }
                }
                TableEntry::Vacant(vacant) => {
                    if let Some(value) = f(None) {
                        vacant.insert(Entry {
                            key: key.clone(),
                            ns: ns.clone(),
                            value,
                            expiry: X::new(expires_at),
                        });
                    }
                }
            }
        }
        self.after_write();
    }

    fn remove(&self, ns: &N) -> Option<V> {
        let key_ref = self.key.key();
        let key = key_ref.as_ref()?;
        let h = self.hash_of(ns);
        let mut groups = self.groups.borrow_mut();
        let group = &mut groups[self.key.group()];
        match group.find_entry(h, |e| e.key == *key && e.ns == *ns) {
            Ok(occ) => {
                let (e, _) = occ.remove();
                let expired = e.expiry.at() <= self.clock_now_if_ttl();
                let hide = expired
                    && self
                        .ttl
                        .is_some_and(|t| t.visibility == TtlVisibility::NeverReturnExpired);
                (!hide).then_some(e.value)
            }
            Err(_) => None,
        }
    }

    fn contains(&self, ns: &N) -> bool {
        self.with_entry(ns, |e| e.is_some())
    }
}

/// A table's side of snapshots, without its types: the entries of a key group out in
/// the canonical format (`state::snapshot`), restored entries back in.
pub(crate) trait SnapshotTable {
    /// Appends the live (unexpired) entries of key group `group` to `out`.
    fn snapshot_group(&self, group: usize, out: &mut Vec<RawEntry>) -> Result<(), String>;
    /// Inserts restored entries, which must belong to this subtask's key groups.
    fn restore(&self, entries: &[RawEntry]) -> Result<(), String>;
}

impl<K: Key, N: Data + Hash + Eq, V: Data, X: Expiry> SnapshotTable for HeapTable<K, N, V, X> {
    fn snapshot_group(&self, group: usize, out: &mut Vec<RawEntry>) -> Result<(), String> {
        let now = self.clock_now_if_ttl();
        let range = self.key.range();
        if !range.contains(group) {
            return Ok(());
        }
        let groups = self.groups.borrow();
        for e in groups[group - range.start].iter() {
            if e.expiry.at() <= now {
                continue;
            }
            out.push(RawEntry {
                key: encode(&e.key)?,
                ns: encode(&e.ns)?,
                value: encode(&e.value)?,
                expiry: X::TRACKED.then(|| e.expiry.at()),
            });
        }
        Ok(())
    }

    fn restore(&self, entries: &[RawEntry]) -> Result<(), String> {
        let range = self.key.range();
        // Entries written without a time-to-live start theirs now.
        let fresh_expiry = self.expiry_on_write();
        let mut groups = self.groups.borrow_mut();
        for raw in entries {
            let key: K = decode(&raw.key)?;
            let ns: N = decode(&raw.ns)?;
            let value: V = decode(&raw.value)?;
            let key_hash = stable_hash(&key);
            let kg = key_group_for_hash(key_hash, self.key.max_parallelism);
            if !range.contains(kg) {
                return Err(format!(
                    "restored state holds a key of key group {kg}, which this subtask (key \
                     groups {}..={}) does not own; was the snapshot written with another \
                     max parallelism?",
                    range.start, range.end
                ));
            }
            let entry = Entry {
                key,
                ns,
                value,
                expiry: X::new(raw.expiry.unwrap_or(fresh_expiry)),
            };
            let h = table_hash(key_hash, &entry.ns);
            let group = &mut groups[kg - range.start];
            match group.entry(h, |e| e.key == entry.key && e.ns == entry.ns, entry_hash) {
                TableEntry::Occupied(mut occ) => *occ.get_mut() = entry,
                TableEntry::Vacant(vacant) => {
                    vacant.insert(entry);
                }
            }
        }
        Ok(())
    }
}

impl<K: Key, N, V, X: Expiry> HeapTable<K, N, V, X> {
    fn clock_now_if_ttl(&self) -> i64 {
        if self.ttl.is_some() {
            self.clock.now()
        } else {
            i64::MIN
        }
    }
}

impl<K: Key, N, V, X: Expiry> TableKeys<K> for HeapTable<K, N, V, X> {
    fn keys(&self) -> Vec<K> {
        let now = self.clock_now_if_ttl();
        let groups = self.groups.borrow();
        let mut keys = Vec::new();
        for g in groups.iter() {
            let mut seen: Vec<&K> = Vec::new();
            for e in g.iter() {
                if e.expiry.at() > now && !seen.contains(&&e.key) {
                    seen.push(&e.key);
                }
            }
            keys.extend(seen.into_iter().cloned());
        }
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProcessingTimeMode;
    use std::time::Duration;

    type Setup = (
        Rc<KeyContext<String>>,
        Rc<Clock>,
        HeapTable<String, (), i64, At>,
    );

    fn setup(ttl: Option<StateTtlConfig>) -> Setup {
        let kc = Rc::new(KeyContext::new(KeyGroupRange::for_subtask(128, 1, 0), 128));
        let clock = Rc::new(Clock::new(ProcessingTimeMode::Simulated));
        let t = HeapTable::new(kc.clone(), ttl, clock.clone());
        (kc, clock, t)
    }

    #[test]
    fn values_are_per_key() {
        let (kc, _, t) = setup(None);
        kc.set("a".into()).unwrap();
        t.put(&(), 1);
        kc.set("b".into()).unwrap();
        assert_eq!(t.get(&()), None);
        t.modify(&(), &mut |v| match v {
            Some(v) => {
                *v += 10;
                None
            }
            None => Some(10),
        });
        t.modify(&(), &mut |v| match v {
            Some(v) => {
                *v += 10;
                None
            }
            None => Some(10),
        });
        assert_eq!(t.get(&()), Some(20));
        kc.set("a".into()).unwrap();
        assert_eq!(t.get(&()), Some(1));
        assert_eq!(t.remove(&()), Some(1));
        assert_eq!(t.get(&()), None);
        let mut keys = t.keys();
        keys.sort();
        assert_eq!(keys, vec!["b".to_string()]);
    }

    #[test]
    fn ttl_hides_expired_entries() {
        let (kc, clock, t) = setup(Some(StateTtlConfig::new(Duration::from_millis(100))));
        kc.set("a".into()).unwrap();
        clock.advance_to(1_000);
        t.put(&(), 1);
        clock.advance_to(1_099);
        assert_eq!(t.get(&()), Some(1));
        clock.advance_to(1_100);
        assert_eq!(t.get(&()), None);
    }

    #[test]
    fn key_outside_the_subtask_range_is_an_error() {
        let kc: KeyContext<u64> = KeyContext::new(KeyGroupRange::for_subtask(128, 2, 0), 128);
        let outside = (0..1000u64)
            .find(|k| crate::keygroup::key_group_of(k, 128) >= 64)
            .unwrap();
        assert!(kc.set(outside).unwrap_err().contains("deterministic"));
    }
}

//! Handles to keyed state, bound to the key the operator is processing.
//!
//! A handle is cheap to get (`ctx.value_state(&DESCRIPTOR)`) and always reads and writes
//! the entry of the *current* key, like Flink's state objects.

use crate::functions::AggregateFunction;
use crate::hash::StableHashMap;
use crate::record::{Data, Key};
use crate::runtime::context::Clock;
use crate::state::backend::KeyedBackend;
use crate::state::descriptors::{
    AggregatingStateDescriptor, ListStateDescriptor, MapStateDescriptor, ReducingStateDescriptor,
    ValueStateDescriptor,
};
use crate::state::heap::NsTable;
use crate::state::ttl::{StateTtlConfig, TtlUpdateType, TtlVisibility};
use std::hash::Hash;
use std::rc::Rc;
use std::sync::Arc;

/// One value per key.
pub struct ValueState<V> {
    table: Rc<dyn NsTable<(), V>>,
}

impl<V: Clone> ValueState<V> {
    /// The value for the current key, if any.
    pub fn value(&self) -> Option<V> {
        self.table.get(&())
    }
    /// Sets the value for the current key.
    pub fn update(&self, value: V) {
        self.table.put(&(), value);
    }
    /// Removes the value for the current key.
    pub fn clear(&self) {
        self.table.remove(&());
    }
    /// Changes the value in place (or inserts one when `f` gets `None` and returns `Some`).
    pub fn update_with(&self, mut f: impl FnMut(Option<&mut V>) -> Option<V>) {
        self.table.modify(&(), &mut f);
    }
}

/// Expiry of single list elements and map entries: Flink applies the time-to-live of list
/// and map state to each element or entry, not to the collection as a whole. (The table
/// keeps its own expiry too, the latest of its elements', so that untouched keys are still
/// swept.)
struct ElementTtl {
    config: StateTtlConfig,
    clock: Rc<Clock>,
}

impl ElementTtl {
    fn new(config: Option<StateTtlConfig>, clock: &Rc<Clock>) -> Option<Self> {
        config.map(|config| ElementTtl {
            config,
            clock: clock.clone(),
        })
    }

    fn now(&self) -> i64 {
        self.clock.now()
    }

    fn expiry(&self, now: i64) -> i64 {
        now.saturating_add(self.config.ttl_millis())
    }

    /// A read of an element that expires at `expires_at`: whether it stays stored (expired
    /// ones are cleaned up by the read) and whether the read returns it.
    fn on_read(&self, expires_at: &mut i64, now: i64) -> (bool, bool) {
        if *expires_at <= now {
            (
                false,
                self.config.visibility == TtlVisibility::ReturnExpiredIfNotCleanedUp,
            )
        } else {
            if self.config.update_type == TtlUpdateType::OnReadAndWrite {
                *expires_at = self.expiry(now);
            }
            (true, true)
        }
    }
}

/// A list of values per key.
pub struct ListState<V> {
    table: ListTable<V>,
}

enum ListTable<V> {
    Plain(Rc<dyn NsTable<(), Vec<V>>>),
    /// With a time-to-live: every element with its expiry.
    Timed(Rc<dyn NsTable<(), Vec<(V, i64)>>>, ElementTtl),
}

/// Appends to a list entry, or creates it.
fn append<T>(list: Option<&mut Vec<T>>, values: &mut Option<Vec<T>>) -> Option<Vec<T>> {
    match list {
        Some(list) => {
            list.extend(values.take().unwrap_or_default());
            None
        }
        None => values.take(),
    }
}

impl<V: Clone> ListState<V> {
    /// A copy of the list (empty when there is none).
    pub fn get(&self) -> Vec<V> {
        match &self.table {
            ListTable::Plain(t) => t.get(&()).unwrap_or_default(),
            ListTable::Timed(t, ttl) => {
                let now = ttl.now();
                let mut out = Vec::new();
                let mut now_empty = false;
                t.modify(&(), &mut |list| {
                    if let Some(list) = list {
                        list.retain_mut(|(v, expires_at)| {
                            let (keep, visible) = ttl.on_read(expires_at, now);
                            if visible {
                                out.push(v.clone());
                            }
                            keep
                        });
                        now_empty = list.is_empty();
                    }
                    None
                });
                if now_empty {
                    t.remove(&());
                }
                out
            }
        }
    }
    pub fn add(&self, value: V) {
        match &self.table {
            ListTable::Plain(t) => {
                let mut value = Some(value);
                t.modify(&(), &mut |list| match list {
                    Some(list) => {
                        list.extend(value.take());
                        None
                    }
                    None => value.take().map(|v| vec![v]),
                });
            }
            ListTable::Timed(..) => self.add_all(vec![value]),
        }
    }
    pub fn add_all(&self, values: Vec<V>) {
        if values.is_empty() {
            return;
        }
        match &self.table {
            ListTable::Plain(t) => {
                let mut values = Some(values);
                t.modify(&(), &mut |list| append(list, &mut values));
            }
            ListTable::Timed(t, ttl) => {
                let expires_at = ttl.expiry(ttl.now());
                let mut values = Some(values.into_iter().map(|v| (v, expires_at)).collect());
                t.modify(&(), &mut |list| append(list, &mut values));
            }
        }
    }
    /// Replaces the list.
    pub fn update(&self, values: Vec<V>) {
        if values.is_empty() {
            self.clear();
            return;
        }
        match &self.table {
            ListTable::Plain(t) => t.put(&(), values),
            ListTable::Timed(t, ttl) => {
                let expires_at = ttl.expiry(ttl.now());
                t.put(&(), values.into_iter().map(|v| (v, expires_at)).collect());
            }
        }
    }
    pub fn clear(&self) {
        match &self.table {
            ListTable::Plain(t) => {
                t.remove(&());
            }
            ListTable::Timed(t, _) => {
                t.remove(&());
            }
        }
    }
    pub fn is_empty(&self) -> bool {
        match &self.table {
            ListTable::Plain(t) => !t.contains(&()),
            ListTable::Timed(..) => self.get().is_empty(),
        }
    }
}

/// A map per key.
pub struct MapState<UK, UV> {
    table: MapTable<UK, UV>,
}

enum MapTable<UK, UV> {
    Plain(Rc<dyn NsTable<(), StableHashMap<UK, UV>>>),
    /// With a time-to-live: every entry with its expiry.
    Timed(
        Rc<dyn NsTable<(), StableHashMap<UK, (UV, i64)>>>,
        ElementTtl,
    ),
}

/// Inserts into a map entry, or creates it.
fn insert<UK: Hash + Eq, UV>(
    m: Option<&mut StableHashMap<UK, UV>>,
    kv: &mut Option<(UK, UV)>,
) -> Option<StableHashMap<UK, UV>> {
    match m {
        Some(m) => {
            if let Some((k, v)) = kv.take() {
                m.insert(k, v);
            }
            None
        }
        None => kv.take().map(|(k, v)| {
            let mut m = StableHashMap::default();
            m.insert(k, v);
            m
        }),
    }
}

/// Removes `key` from a map entry (and the entry once it is empty); returns the value.
fn remove_from<UK: Hash + Eq, UV: Clone>(
    table: &dyn NsTable<(), StableHashMap<UK, UV>>,
    key: &UK,
) -> Option<UV> {
    let mut removed = None;
    let mut now_empty = false;
    table.modify(&(), &mut |m| {
        if let Some(m) = m {
            removed = m.remove(key);
            now_empty = m.is_empty();
        }
        None
    });
    if now_empty {
        table.remove(&());
    }
    removed
}

impl<UK: Hash + Eq + Clone, UV: Clone> MapState<UK, UV> {
    /// Reads the entries of a map with a time-to-live for which `select` is true: cleans
    /// up the expired ones and returns the visible ones.
    fn read_timed(
        t: &dyn NsTable<(), StableHashMap<UK, (UV, i64)>>,
        ttl: &ElementTtl,
        mut select: impl FnMut(&UK) -> bool,
    ) -> Vec<(UK, UV)> {
        let now = ttl.now();
        let mut out = Vec::new();
        let mut now_empty = false;
        t.modify(&(), &mut |m| {
            if let Some(m) = m {
                m.retain(|k, (v, expires_at)| {
                    if !select(k) {
                        return true;
                    }
                    let (keep, visible) = ttl.on_read(expires_at, now);
                    if visible {
                        out.push((k.clone(), v.clone()));
                    }
                    keep
                });
                now_empty = m.is_empty();
            }
            None
        });
        if now_empty {
            t.remove(&());
        }
        out
    }

    pub fn get(&self, key: &UK) -> Option<UV> {
        match &self.table {
            MapTable::Plain(t) => {
                let mut out = None;
                t.with_ref(&(), &mut |m| out = m.and_then(|m| m.get(key).cloned()));
                out
            }
            MapTable::Timed(t, ttl) => Self::read_timed(&**t, ttl, |k| k == key)
                .pop()
                .map(|(_, v)| v),
        }
    }
    pub fn contains(&self, key: &UK) -> bool {
        match &self.table {
            MapTable::Plain(t) => {
                let mut out = false;
                t.with_ref(&(), &mut |m| out = m.is_some_and(|m| m.contains_key(key)));
                out
            }
            MapTable::Timed(..) => self.get(key).is_some(),
        }
    }
    pub fn put(&self, key: UK, value: UV) {
        match &self.table {
            MapTable::Plain(t) => {
                let mut kv = Some((key, value));
                t.modify(&(), &mut |m| insert(m, &mut kv));
            }
            MapTable::Timed(t, ttl) => {
                let mut kv = Some((key, (value, ttl.expiry(ttl.now()))));
                t.modify(&(), &mut |m| insert(m, &mut kv));
            }
        }
    }
    pub fn remove(&self, key: &UK) -> Option<UV> {
        match &self.table {
            MapTable::Plain(t) => remove_from(&**t, key),
            MapTable::Timed(t, ttl) => {
                let (value, mut expires_at) = remove_from(&**t, key)?;
                let (_, visible) = ttl.on_read(&mut expires_at, ttl.now());
                visible.then_some(value)
            }
        }
    }
    /// A copy of all entries (in no particular order).
    pub fn entries(&self) -> Vec<(UK, UV)> {
        match &self.table {
            MapTable::Plain(t) => {
                let mut out = Vec::new();
                t.with_ref(&(), &mut |m| {
                    if let Some(m) = m {
                        out = m.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                    }
                });
                out
            }
            MapTable::Timed(t, ttl) => Self::read_timed(&**t, ttl, |_| true),
        }
    }
    pub fn keys(&self) -> Vec<UK> {
        self.entries().into_iter().map(|(k, _)| k).collect()
    }
    pub fn values(&self) -> Vec<UV> {
        self.entries().into_iter().map(|(_, v)| v).collect()
    }
    pub fn is_empty(&self) -> bool {
        match &self.table {
            MapTable::Plain(t) => !t.contains(&()),
            MapTable::Timed(..) => self.entries().is_empty(),
        }
    }
    pub fn clear(&self) {
        match &self.table {
            MapTable::Plain(t) => {
                t.remove(&());
            }
            MapTable::Timed(t, _) => {
                t.remove(&());
            }
        }
    }
}

/// One value per key, combined with every added value by the descriptor's function.
pub struct ReducingState<V> {
    table: Rc<dyn NsTable<(), V>>,
    reduce: Arc<dyn Fn(V, V) -> V + Send + Sync>,
}

impl<V: Clone> ReducingState<V> {
    pub fn get(&self) -> Option<V> {
        self.table.get(&())
    }
    pub fn add(&self, value: V) {
        let mut value = Some(value);
        let reduce = &self.reduce;
        self.table.modify(&(), &mut |acc| match acc {
            Some(acc) => value.take().map(|v| reduce(acc.clone(), v)),
            None => value.take(),
        });
    }
    pub fn clear(&self) {
        self.table.remove(&());
    }
}

/// An accumulator per key fed by the descriptor's [`AggregateFunction`].
pub struct AggregatingState<IN, ACC, OUT> {
    table: Rc<dyn NsTable<(), ACC>>,
    function: Arc<dyn AggregateFunction<IN, ACC, OUT>>,
}

impl<IN: 'static, ACC: Clone + 'static, OUT: 'static> AggregatingState<IN, ACC, OUT> {
    /// The aggregate's result for the current key, if anything was added.
    pub fn get(&self) -> Option<OUT> {
        let mut out = None;
        let f = &self.function;
        self.table
            .with_ref(&(), &mut |acc| out = acc.map(|a| f.get_result(a)));
        out
    }
    pub fn add(&self, value: IN) {
        let mut value = Some(value);
        let f = &self.function;
        self.table.modify(&(), &mut |acc| match acc {
            Some(acc) => {
                if let Some(v) = value.take() {
                    f.add(acc, v);
                }
                None
            }
            None => value.take().map(|v| {
                let mut acc = f.create_accumulator();
                f.add(&mut acc, v);
                acc
            }),
        });
    }
    pub fn clear(&self) {
        self.table.remove(&());
    }
}

/// Getting handles from a keyed backend; the keyed contexts call these.
pub(crate) fn value<K: Key, V: Data>(
    b: &KeyedBackend<K>,
    d: &ValueStateDescriptor<V>,
) -> ValueState<V> {
    ValueState {
        table: b.table::<(), V>(d.cow_name(), d.ttl()),
    }
}

pub(crate) fn list<K: Key, V: Data>(
    b: &KeyedBackend<K>,
    d: &ListStateDescriptor<V>,
) -> ListState<V> {
    let table = match ElementTtl::new(d.ttl(), b.clock()) {
        None => ListTable::Plain(b.table::<(), Vec<V>>(d.cow_name(), None)),
        Some(ttl) => ListTable::Timed(b.table::<(), Vec<(V, i64)>>(d.cow_name(), d.ttl()), ttl),
    };
    ListState { table }
}

pub(crate) fn map<K: Key, UK: Data + Hash + Eq, UV: Data>(
    b: &KeyedBackend<K>,
    d: &MapStateDescriptor<UK, UV>,
) -> MapState<UK, UV> {
    let table = match ElementTtl::new(d.ttl(), b.clock()) {
        None => MapTable::Plain(b.table::<(), StableHashMap<UK, UV>>(d.cow_name(), None)),
        Some(ttl) => MapTable::Timed(
            b.table::<(), StableHashMap<UK, (UV, i64)>>(d.cow_name(), d.ttl()),
            ttl,
        ),
    };
    MapState { table }
}

pub(crate) fn reducing<K: Key, V: Data>(
    b: &KeyedBackend<K>,
    d: &ReducingStateDescriptor<V>,
) -> ReducingState<V> {
    ReducingState {
        table: b.table::<(), V>(d.cow_name(), d.ttl()),
        reduce: d.reduce.clone(),
    }
}

pub(crate) fn aggregating<K: Key, IN: 'static, ACC: Data, OUT: 'static>(
    b: &KeyedBackend<K>,
    d: &AggregatingStateDescriptor<IN, ACC, OUT>,
) -> AggregatingState<IN, ACC, OUT> {
    AggregatingState {
        table: b.table::<(), ACC>(d.cow_name(), d.ttl()),
        function: d.function.clone(),
    }
}

/// Adds the keyed-state getters to a context type that has a `backend: &KeyedBackend<K>`.
macro_rules! keyed_state_accessors {
    ($ctx:ident $(, $extra:ident)*) => {
        impl<K: $crate::record::Key $(, $extra)*> $ctx<'_, K $(, $extra)*> {
            /// The value state described by `d`, for the current key.
            pub fn value_state<V: $crate::record::Data>(
                &self,
                d: &$crate::state::ValueStateDescriptor<V>,
            ) -> $crate::state::ValueState<V> {
                $crate::state::handles::value(self.backend, d)
            }
            /// The list state described by `d`, for the current key.
            pub fn list_state<V: $crate::record::Data>(
                &self,
                d: &$crate::state::ListStateDescriptor<V>,
            ) -> $crate::state::ListState<V> {
                $crate::state::handles::list(self.backend, d)
            }
            /// The map state described by `d`, for the current key.
            pub fn map_state<UK: $crate::record::Data + ::std::hash::Hash + Eq, UV: $crate::record::Data>(
                &self,
                d: &$crate::state::MapStateDescriptor<UK, UV>,
            ) -> $crate::state::MapState<UK, UV> {
                $crate::state::handles::map(self.backend, d)
            }
            /// The reducing state described by `d`, for the current key.
            pub fn reducing_state<V: $crate::record::Data>(
                &self,
                d: &$crate::state::ReducingStateDescriptor<V>,
            ) -> $crate::state::ReducingState<V> {
                $crate::state::handles::reducing(self.backend, d)
            }
            /// The aggregating state described by `d`, for the current key.
            pub fn aggregating_state<IN: 'static, ACC: $crate::record::Data, OUT: 'static>(
                &self,
                d: &$crate::state::AggregatingStateDescriptor<IN, ACC, OUT>,
            ) -> $crate::state::AggregatingState<IN, ACC, OUT> {
                $crate::state::handles::aggregating(self.backend, d)
            }
        }
    };
}
pub(crate) use keyed_state_accessors;

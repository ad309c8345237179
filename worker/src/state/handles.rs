//! Handles to keyed state, bound to the key the operator is processing.
//!
//! A handle is cheap to get (`ctx.value_state(&DESCRIPTOR)`) and always reads and writes
//! the entry of the *current* key, like Flink's state objects.

use crate::functions::AggregateFunction;
use crate::hash::StableHashMap;
use crate::record::{Data, Key};
use crate::state::backend::KeyedBackend;
use crate::state::descriptors::{
    AggregatingStateDescriptor, ListStateDescriptor, MapStateDescriptor, ReducingStateDescriptor,
    ValueStateDescriptor,
};
use crate::state::heap::NsTable;
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

/// A list of values per key.
pub struct ListState<V> {
    table: Rc<dyn NsTable<(), Vec<V>>>,
}

impl<V: Clone> ListState<V> {
    /// A copy of the list (empty when there is none).
    pub fn get(&self) -> Vec<V> {
        self.table.get(&()).unwrap_or_default()
    }
    pub fn add(&self, value: V) {
        let mut value = Some(value);
        self.table.modify(&(), &mut |list| match list {
            Some(list) => {
                list.extend(value.take());
                None
            }
            None => value.take().map(|v| vec![v]),
        });
    }
    pub fn add_all(&self, values: Vec<V>) {
        if values.is_empty() {
            return;
        }
        let mut values = Some(values);
        self.table.modify(&(), &mut |list| match list {
            Some(list) => {
                list.extend(values.take().unwrap_or_default());
                None
            }
            None => values.take(),
        });
    }
    /// Replaces the list.
    pub fn update(&self, values: Vec<V>) {
        if values.is_empty() {
            self.clear();
        } else {
            self.table.put(&(), values);
        }
    }
    pub fn clear(&self) {
        self.table.remove(&());
    }
    pub fn is_empty(&self) -> bool {
        !self.table.contains(&())
    }
}

/// A map per key.
pub struct MapState<UK, UV> {
    table: Rc<dyn NsTable<(), StableHashMap<UK, UV>>>,
}

impl<UK: Hash + Eq + Clone, UV: Clone> MapState<UK, UV> {
    pub fn get(&self, key: &UK) -> Option<UV> {
        let mut out = None;
        self.table.with_ref(&(), &mut |m| out = m.and_then(|m| m.get(key).cloned()));
        out
    }
    pub fn contains(&self, key: &UK) -> bool {
        let mut out = false;
        self.table.with_ref(&(), &mut |m| out = m.is_some_and(|m| m.contains_key(key)));
        out
    }
    pub fn put(&self, key: UK, value: UV) {
        let mut kv = Some((key, value));
        self.table.modify(&(), &mut |m| match m {
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
        });
    }
    pub fn remove(&self, key: &UK) -> Option<UV> {
        let mut removed = None;
        let mut now_empty = false;
        self.table.modify(&(), &mut |m| {
            if let Some(m) = m {
                removed = m.remove(key);
                now_empty = m.is_empty();
            }
            None
        });
        if now_empty {
            self.table.remove(&());
        }
        removed
    }
    /// A copy of all entries (in no particular order).
    pub fn entries(&self) -> Vec<(UK, UV)> {
        let mut out = Vec::new();
        self.table.with_ref(&(), &mut |m| {
            if let Some(m) = m {
                out = m.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            }
        });
        out
    }
    pub fn keys(&self) -> Vec<UK> {
        self.entries().into_iter().map(|(k, _)| k).collect()
    }
    pub fn values(&self) -> Vec<UV> {
        self.entries().into_iter().map(|(_, v)| v).collect()
    }
    pub fn is_empty(&self) -> bool {
        !self.table.contains(&())
    }
    pub fn clear(&self) {
        self.table.remove(&());
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
        self.table.with_ref(&(), &mut |acc| out = acc.map(|a| f.get_result(a)));
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
pub(crate) fn value<K: Key, V: Data>(b: &KeyedBackend<K>, d: &ValueStateDescriptor<V>) -> ValueState<V> {
    ValueState {
        table: b.table::<(), V>(d.cow_name(), d.ttl()),
    }
}

pub(crate) fn list<K: Key, V: Data>(b: &KeyedBackend<K>, d: &ListStateDescriptor<V>) -> ListState<V> {
    ListState {
        table: b.table::<(), Vec<V>>(d.cow_name(), d.ttl()),
    }
}

pub(crate) fn map<K: Key, UK: Data + Hash + Eq, UV: Data>(
    b: &KeyedBackend<K>,
    d: &MapStateDescriptor<UK, UV>,
) -> MapState<UK, UV> {
    MapState {
        table: b.table::<(), StableHashMap<UK, UV>>(d.cow_name(), d.ttl()),
    }
}

pub(crate) fn reducing<K: Key, V: Data>(b: &KeyedBackend<K>, d: &ReducingStateDescriptor<V>) -> ReducingState<V> {
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

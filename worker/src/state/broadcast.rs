//! Broadcast state: a map that every parallel instance of an operator holds in full and
//! that only the broadcast side may change, so all instances stay identical (Flink's
//! broadcast state pattern). Iteration is in key order, so results are reproducible.

use crate::state::descriptors::MapStateDescriptor;
use std::any::Any;
use std::collections::BTreeMap;

/// Read and write access, on the broadcast side.
pub struct BroadcastState<'a, K, V> {
    map: &'a mut BTreeMap<K, V>,
}

/// Read-only access, on the data side.
pub struct ReadOnlyBroadcastState<'a, K, V> {
    map: &'a BTreeMap<K, V>,
}

impl<K: Ord, V> BroadcastState<'_, K, V> {
    pub fn get(&self, key: &K) -> Option<&V> {
        self.map.get(key)
    }
    pub fn contains(&self, key: &K) -> bool {
        self.map.contains_key(key)
    }
    pub fn put(&mut self, key: K, value: V) {
        self.map.insert(key, value);
    }
    pub fn remove(&mut self, key: &K) -> Option<V> {
        self.map.remove(key)
    }
    pub fn clear(&mut self) {
        self.map.clear();
    }
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.map.iter()
    }
    pub fn len(&self) -> usize {
        self.map.len()
    }
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

impl<K: Ord, V> ReadOnlyBroadcastState<'_, K, V> {
    pub fn get(&self, key: &K) -> Option<&V> {
        self.map.get(key)
    }
    pub fn contains(&self, key: &K) -> bool {
        self.map.contains_key(key)
    }
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.map.iter()
    }
    pub fn len(&self) -> usize {
        self.map.len()
    }
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// The broadcast states of one operator instance, by descriptor name.
#[derive(Default)]
pub(crate) struct BroadcastStates {
    maps: Vec<(String, Box<dyn Any>)>,
}

impl BroadcastStates {
    fn map_mut<K: Ord + 'static, V: 'static>(
        &mut self,
        d: &MapStateDescriptor<K, V>,
    ) -> &mut BTreeMap<K, V> {
        let idx = match self.maps.iter().position(|(n, _)| n == d.name()) {
            Some(i) => i,
            None => {
                self.maps
                    .push((d.name().to_string(), Box::new(BTreeMap::<K, V>::new())));
                self.maps.len() - 1
            }
        };
        match self.maps[idx].1.downcast_mut::<BTreeMap<K, V>>() {
            Some(m) => m,
            None => panic!(
                "broadcast state '{}' is used with two different types",
                d.name()
            ),
        }
    }

    pub(crate) fn writable<K: Ord + 'static, V: 'static>(
        &mut self,
        d: &MapStateDescriptor<K, V>,
    ) -> BroadcastState<'_, K, V> {
        BroadcastState {
            map: self.map_mut(d),
        }
    }

    pub(crate) fn read_only<K: Ord + 'static, V: 'static>(
        &mut self,
        d: &MapStateDescriptor<K, V>,
    ) -> ReadOnlyBroadcastState<'_, K, V> {
        ReadOnlyBroadcastState {
            map: self.map_mut(d),
        }
    }
}

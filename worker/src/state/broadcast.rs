//! Broadcast state: a map that every parallel instance of an operator holds in full and
//! that only the broadcast side may change, so all instances stay identical (Flink's
//! broadcast state pattern). Iteration is in key order, so results are reproducible.

use crate::record::Data;
use crate::state::descriptors::MapStateDescriptor;
use crate::state::snapshot::{decode, encode};
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

/// A broadcast state's entries in the canonical encoding: (key, value) as MessagePack.
pub(crate) type RawMap = Vec<(Vec<u8>, Vec<u8>)>;

struct Named {
    name: String,
    map: Box<dyn Any>,
    /// The map's entries, encoded (the map's types are known only where it was made).
    snapshot: fn(&dyn Any) -> Result<RawMap, String>,
}

fn snapshot_map<K: Data + Ord, V: Data>(map: &dyn Any) -> Result<RawMap, String> {
    let Some(map) = map.downcast_ref::<BTreeMap<K, V>>() else {
        return Ok(Vec::new());
    };
    map.iter()
        .map(|(k, v)| Ok((encode(k)?, encode(v)?)))
        .collect()
}

/// The broadcast states of one operator instance, by descriptor name. Restored entries
/// wait until a function first asks for their state (the types come with it), and go
/// into the next snapshot as they are if none does.
#[derive(Default)]
pub(crate) struct BroadcastStates {
    maps: Vec<Named>,
    pending: Vec<(String, RawMap)>,
}

impl BroadcastStates {
    fn map_mut<K: Data + Ord, V: Data>(
        &mut self,
        d: &MapStateDescriptor<K, V>,
    ) -> &mut BTreeMap<K, V> {
        let idx = match self.maps.iter().position(|m| m.name == d.name()) {
            Some(i) => i,
            None => {
                let mut map = BTreeMap::<K, V>::new();
                if let Some(at) = self.pending.iter().position(|(n, _)| n == d.name()) {
                    let (_, raw) = self.pending.remove(at);
                    for (k, v) in raw {
                        match (decode::<K>(&k), decode::<V>(&v)) {
                            (Ok(k), Ok(v)) => {
                                map.insert(k, v);
                            }
                            (Err(e), _) | (_, Err(e)) => {
                                panic!("restoring broadcast state '{}': {e}", d.name())
                            }
                        }
                    }
                }
                self.maps.push(Named {
                    name: d.name().to_string(),
                    map: Box::new(map),
                    snapshot: snapshot_map::<K, V>,
                });
                self.maps.len() - 1
            }
        };
        match self.maps[idx].map.downcast_mut::<BTreeMap<K, V>>() {
            Some(m) => m,
            None => panic!(
                "broadcast state '{}' is used with two different types",
                d.name()
            ),
        }
    }

    pub(crate) fn writable<K: Data + Ord, V: Data>(
        &mut self,
        d: &MapStateDescriptor<K, V>,
    ) -> BroadcastState<'_, K, V> {
        BroadcastState {
            map: self.map_mut(d),
        }
    }

    pub(crate) fn read_only<K: Data + Ord, V: Data>(
        &mut self,
        d: &MapStateDescriptor<K, V>,
    ) -> ReadOnlyBroadcastState<'_, K, V> {
        ReadOnlyBroadcastState {
            map: self.map_mut(d),
        }
    }

    /// Every broadcast state's entries, by name.
    pub(crate) fn snapshot(&self) -> Result<Vec<(String, RawMap)>, String> {
        let mut out = Vec::with_capacity(self.maps.len() + self.pending.len());
        for m in &self.maps {
            out.push((m.name.clone(), (m.snapshot)(m.map.as_ref())?));
        }
        out.extend(self.pending.iter().cloned());
        Ok(out)
    }

    /// Takes restored states (before any function has used one).
    pub(crate) fn restore(&mut self, states: Vec<(String, RawMap)>) {
        self.pending.extend(states);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: MapStateDescriptor<u32, String> = MapStateDescriptor::new("rules");

    #[test]
    fn broadcast_state_comes_back_from_a_snapshot_and_waits_until_asked_for() {
        let mut before = BroadcastStates::default();
        before.writable(&RULES).put(7, "amount > 100".into());
        before.writable(&RULES).put(3, "country = XX".into());
        let snapshot = before.snapshot().expect("snapshots");

        // Restored, not used, snapshotted again: the entries are kept as they are.
        let mut middle = BroadcastStates::default();
        middle.restore(snapshot);
        let again = middle.snapshot().expect("snapshots");

        let mut after = BroadcastStates::default();
        after.restore(again);
        let rules: Vec<(u32, String)> = after
            .read_only(&RULES)
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        assert_eq!(
            rules,
            [(3, "country = XX".into()), (7, "amount > 100".into())]
        );
    }
}

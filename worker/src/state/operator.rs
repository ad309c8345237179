//! Operator state: state of an operator instance that is not tied to a key (Flink's
//! operator list state and union list state), e.g. the offsets a source reader has read.
//!
//! On restore at another parallelism, list state is split evenly over the new instances
//! and union list state is given whole to every instance ([`redistribute`]).

use crate::record::Data;
use crate::state::snapshot::{decode, encode};
use serde::{Deserialize, Serialize};
use std::any::Any;
use std::borrow::Cow;
use std::cell::RefCell;
use std::marker::PhantomData;
use std::rc::Rc;

/// How a list is spread over instances when the parallelism changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Redistribution {
    /// Each instance gets an even share (round-robin) of all elements.
    EvenSplit,
    /// Each instance gets all elements of all instances.
    Union,
}

/// Describes a list of operator state.
pub struct OperatorStateDescriptor<V> {
    name: Cow<'static, str>,
    mode: Redistribution,
    _type: PhantomData<fn() -> V>,
}

impl<V> OperatorStateDescriptor<V> {
    /// List state: split evenly on rescale.
    pub const fn list(name: &'static str) -> Self {
        OperatorStateDescriptor {
            name: Cow::Borrowed(name),
            mode: Redistribution::EvenSplit,
            _type: PhantomData,
        }
    }
    /// Union list state: every instance gets everything on rescale.
    pub const fn union_list(name: &'static str) -> Self {
        OperatorStateDescriptor {
            name: Cow::Borrowed(name),
            mode: Redistribution::Union,
            _type: PhantomData,
        }
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn redistribution(&self) -> Redistribution {
        self.mode
    }
}

/// A list of operator state of one instance.
pub struct OperatorListState<V> {
    list: Rc<RefCell<Vec<V>>>,
}

impl<V: Clone> OperatorListState<V> {
    pub fn get(&self) -> Vec<V> {
        self.list.borrow().clone()
    }
    pub fn add(&self, value: V) {
        self.list.borrow_mut().push(value);
    }
    pub fn update(&self, values: Vec<V>) {
        *self.list.borrow_mut() = values;
    }
    pub fn clear(&self) {
        self.list.borrow_mut().clear();
    }
}

/// A list's elements, each encoded on its own.
type Elements = Vec<Vec<u8>>;

struct Registered {
    name: Cow<'static, str>,
    mode: Redistribution,
    list: Rc<dyn Any>,
    /// The list's elements, encoded (its type is known only where it was made).
    snapshot: fn(&dyn Any) -> Result<Elements, String>,
}

fn snapshot_list<V: Data>(list: &dyn Any) -> Result<Elements, String> {
    match list.downcast_ref::<RefCell<Vec<V>>>() {
        Some(list) => list.borrow().iter().map(encode).collect(),
        None => Ok(Vec::new()),
    }
}

/// One operator state list in a snapshot: its elements in the canonical encoding
/// (MessagePack).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ListSnapshot {
    pub name: String,
    pub mode: Redistribution,
    pub elements: Elements,
}

/// The operator state of one operator instance. Restored lists wait until a function
/// first asks for them (the element type comes with it), and go into the next snapshot
/// as they are if none does.
#[derive(Default)]
pub struct OperatorStateStore {
    lists: RefCell<Vec<Registered>>,
    pending: RefCell<Vec<ListSnapshot>>,
}

impl OperatorStateStore {
    /// The list described by `d`, created empty on first use.
    pub fn list_state<V: Data>(&self, d: &OperatorStateDescriptor<V>) -> OperatorListState<V> {
        if let Some(r) = self.lists.borrow().iter().find(|r| r.name == d.name) {
            assert!(
                r.mode == d.mode,
                "operator state '{}' is used both as list and as union list state",
                d.name
            );
            match r.list.clone().downcast::<RefCell<Vec<V>>>() {
                Ok(list) => return OperatorListState { list },
                Err(_) => panic!(
                    "operator state '{}' is used with two different types",
                    d.name
                ),
            }
        }
        let mut elements = Vec::new();
        let restored = {
            let mut pending = self.pending.borrow_mut();
            let at = pending.iter().position(|l| l.name == d.name);
            at.map(|at| pending.remove(at))
        };
        if let Some(restored) = restored {
            for bytes in &restored.elements {
                match decode::<V>(bytes) {
                    Ok(v) => elements.push(v),
                    Err(e) => panic!("restoring operator state '{}': {e}", d.name),
                }
            }
        }
        let list: Rc<RefCell<Vec<V>>> = Rc::new(RefCell::new(elements));
        self.lists.borrow_mut().push(Registered {
            name: d.name.clone(),
            mode: d.mode,
            list: list.clone(),
            snapshot: snapshot_list::<V>,
        });
        OperatorListState { list }
    }

    /// Every list's elements, by name (empty lists left out).
    pub(crate) fn snapshot(&self) -> Result<Vec<ListSnapshot>, String> {
        let mut out = Vec::new();
        for r in self.lists.borrow().iter() {
            let elements = (r.snapshot)(r.list.as_ref())?;
            if !elements.is_empty() {
                out.push(ListSnapshot {
                    name: r.name.to_string(),
                    mode: r.mode,
                    elements,
                });
            }
        }
        out.extend(self.pending.borrow().iter().cloned());
        Ok(out)
    }

    /// Takes the lists this instance restores (before any function has used one).
    pub(crate) fn restore(&self, lists: Vec<ListSnapshot>) {
        self.pending.borrow_mut().extend(lists);
    }

    /// Names of the registered lists and their redistribution modes.
    pub fn names(&self) -> Vec<(String, Redistribution)> {
        self.lists
            .borrow()
            .iter()
            .map(|r| (r.name.to_string(), r.mode))
            .collect()
    }
}

/// What instance `subtask` of `parallelism` restores from the lists the old instances
/// snapshotted (`old`, in old instance order), list by list.
pub(crate) fn restore_share(
    old: Vec<Vec<ListSnapshot>>,
    subtask: usize,
    parallelism: usize,
) -> Vec<ListSnapshot> {
    // Per list name: its mode and each old instance's elements.
    let mut by_name: Vec<(String, Redistribution, Vec<Elements>)> = Vec::new();
    let instances = old.len();
    for (i, lists) in old.into_iter().enumerate() {
        for list in lists {
            let at = match by_name.iter().position(|(n, _, _)| *n == list.name) {
                Some(at) => at,
                None => {
                    by_name.push((list.name.clone(), list.mode, vec![Vec::new(); instances]));
                    by_name.len() - 1
                }
            };
            by_name[at].2[i] = list.elements;
        }
    }
    by_name
        .into_iter()
        .filter_map(|(name, mode, lists)| {
            let mut shares = redistribute(mode, lists, parallelism.max(1));
            let elements = std::mem::take(shares.get_mut(subtask)?);
            (!elements.is_empty()).then_some(ListSnapshot {
                name,
                mode,
                elements,
            })
        })
        .collect()
}

/// Spreads the lists of `old.len()` instances over `parallelism` new instances.
///
/// Even split keeps every element exactly once, spread round-robin in instance order;
/// union gives every new instance the concatenation of all lists.
pub fn redistribute<V: Clone>(
    mode: Redistribution,
    old: Vec<Vec<V>>,
    parallelism: usize,
) -> Vec<Vec<V>> {
    let all: Vec<V> = old.into_iter().flatten().collect();
    match mode {
        Redistribution::Union => vec![all; parallelism],
        Redistribution::EvenSplit => {
            let mut out = vec![Vec::new(); parallelism];
            for (i, v) in all.into_iter().enumerate() {
                out[i % parallelism].push(v);
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_split_keeps_each_element_once() {
        let out = redistribute(
            Redistribution::EvenSplit,
            vec![vec![1, 2, 3], vec![4, 5]],
            3,
        );
        assert_eq!(out, vec![vec![1, 4], vec![2, 5], vec![3]]);
    }

    #[test]
    fn union_gives_everything_to_everyone() {
        let out = redistribute(Redistribution::Union, vec![vec![1], vec![2]], 3);
        assert_eq!(out, vec![vec![1, 2]; 3]);
    }

    #[test]
    fn lists_come_back_from_snapshots_spread_over_a_new_parallelism() {
        const OFFSETS: OperatorStateDescriptor<u64> = OperatorStateDescriptor::list("offsets");
        const SEEN: OperatorStateDescriptor<String> = OperatorStateDescriptor::union_list("seen");
        let old: Vec<Vec<ListSnapshot>> = (0..2u64)
            .map(|i| {
                let store = OperatorStateStore::default();
                store.list_state(&OFFSETS).update(vec![i * 10, i * 10 + 1]);
                store.list_state(&SEEN).add(format!("s{i}"));
                store.snapshot().expect("snapshots")
            })
            .collect();
        let restored: Vec<(Vec<u64>, Vec<String>)> = (0..3)
            .map(|subtask| {
                let store = OperatorStateStore::default();
                store.restore(restore_share(old.clone(), subtask, 3));
                (
                    store.list_state(&OFFSETS).get(),
                    store.list_state(&SEEN).get(),
                )
            })
            .collect();
        let everyone = vec!["s0".to_string(), "s1".to_string()];
        assert_eq!(
            restored,
            vec![
                (vec![0, 11], everyone.clone()),
                (vec![1], everyone.clone()),
                (vec![10], everyone),
            ]
        );
    }

    #[test]
    fn a_restored_list_nobody_asked_for_is_snapshotted_again() {
        let store = OperatorStateStore::default();
        let list = ListSnapshot {
            name: "offsets".into(),
            mode: Redistribution::EvenSplit,
            elements: vec![encode(&5u64).expect("encodes")],
        };
        store.restore(vec![list.clone()]);
        assert_eq!(store.snapshot().expect("snapshots"), vec![list]);
    }

    #[test]
    fn store_returns_the_same_list_by_name() {
        const OFFSETS: OperatorStateDescriptor<u64> = OperatorStateDescriptor::list("offsets");
        let store = OperatorStateStore::default();
        store.list_state(&OFFSETS).add(7);
        store.list_state(&OFFSETS).add(8);
        assert_eq!(store.list_state(&OFFSETS).get(), vec![7, 8]);
        assert_eq!(
            store.names(),
            vec![("offsets".to_string(), Redistribution::EvenSplit)]
        );
    }
}

//! Operator state: state of an operator instance that is not tied to a key (Flink's
//! operator list state and union list state), e.g. the offsets a source reader has read.
//!
//! On restore at another parallelism, list state is split evenly over the new instances
//! and union list state is given whole to every instance ([`redistribute`]).

use crate::record::Data;
use std::any::Any;
use std::borrow::Cow;
use std::cell::RefCell;
use std::marker::PhantomData;
use std::rc::Rc;

/// How a list is spread over instances when the parallelism changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

struct Registered {
    name: Cow<'static, str>,
    mode: Redistribution,
    list: Rc<dyn Any>,
}

/// The operator state of one operator instance.
#[derive(Default)]
pub struct OperatorStateStore {
    lists: RefCell<Vec<Registered>>,
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
        let list: Rc<RefCell<Vec<V>>> = Rc::new(RefCell::new(Vec::new()));
        self.lists.borrow_mut().push(Registered {
            name: d.name.clone(),
            mode: d.mode,
            list: list.clone(),
        });
        OperatorListState { list }
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

//! The keyed state of one operator instance: its current key and its named tables.
//!
//! Tables are created on first use from a descriptor and found again by name, so a
//! function never has to register state up front; a second use with another type is a
//! programming error and fails the job with the state's name.

use crate::record::Key;
use crate::runtime::context::Clock;
use crate::state::heap::{At, Expiry, HeapTable, KeyContext, Never, NsTable, TableKeys};
use crate::state::ttl::StateTtlConfig;
use std::any::Any;
use std::borrow::Cow;
use std::cell::RefCell;
use std::hash::Hash;
use std::rc::Rc;

struct Registered<K> {
    name: Cow<'static, str>,
    table: Rc<dyn Any>,
    keys: Rc<dyn TableKeys<K>>,
}

pub(crate) struct KeyedBackend<K> {
    pub(crate) key: Rc<KeyContext<K>>,
    clock: Rc<Clock>,
    tables: RefCell<Vec<Registered<K>>>,
}

impl<K: Key> KeyedBackend<K> {
    pub(crate) fn new(key: Rc<KeyContext<K>>, clock: Rc<Clock>) -> Self {
        KeyedBackend {
            key,
            clock,
            tables: RefCell::new(Vec::new()),
        }
    }

    /// The table named `name` holding `V` per key and namespace `N`; created on first use.
    pub(crate) fn table<N, V>(
        &self,
        name: &str,
        ttl: Option<StateTtlConfig>,
    ) -> Rc<dyn NsTable<N, V>>
    where
        N: Hash + Eq + Clone + 'static,
        V: Clone + 'static,
    {
        // Entries of state without TTL carry no expiry at all.
        match ttl {
            None => self.typed_table::<N, V, Never>(name, None),
            Some(_) => self.typed_table::<N, V, At>(name, ttl),
        }
    }

    fn typed_table<N, V, X>(&self, name: &str, ttl: Option<StateTtlConfig>) -> Rc<dyn NsTable<N, V>>
    where
        N: Hash + Eq + Clone + 'static,
        V: Clone + 'static,
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
        self.tables.borrow_mut().push(Registered {
            name: Cow::Owned(name.to_string()),
            table: table.clone(),
            keys: table.clone(),
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
}

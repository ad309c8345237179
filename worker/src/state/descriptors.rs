//! State descriptors: the name, type and settings of a piece of state.
//!
//! A function declares its state with descriptors (as constants or fields) and gets a
//! handle bound to the current key from its context whenever it needs it:
//!
//! ```
//! use strom::prelude::*;
//! const LAST_TEMP: ValueStateDescriptor<f64> = ValueStateDescriptor::new("last-temp");
//! ```

use crate::functions::AggregateFunction;
use crate::state::ttl::StateTtlConfig;
use std::borrow::Cow;
use std::marker::PhantomData;
use std::sync::Arc;

macro_rules! descriptor_common {
    ($ty:ident < $($p:ident),+ >) => {
        impl<$($p),+> $ty<$($p),+> {
            /// The state's name, unique within the operator.
            pub fn name(&self) -> &str {
                &self.name
            }
            /// Expires entries `ttl` after their last write (or read, if so configured).
            pub fn with_ttl(mut self, ttl: StateTtlConfig) -> Self {
                self.ttl = Some(ttl);
                self
            }
            pub(crate) fn ttl(&self) -> Option<StateTtlConfig> {
                self.ttl
            }
            pub(crate) fn cow_name(&self) -> &Cow<'static, str> {
                &self.name
            }
        }
    };
}

/// One value per key (Flink's `ValueStateDescriptor`).
pub struct ValueStateDescriptor<V> {
    name: Cow<'static, str>,
    ttl: Option<StateTtlConfig>,
    _type: PhantomData<fn() -> V>,
}

impl<V> ValueStateDescriptor<V> {
    pub const fn new(name: &'static str) -> Self {
        ValueStateDescriptor {
            name: Cow::Borrowed(name),
            ttl: None,
            _type: PhantomData,
        }
    }
    /// A descriptor with a name made at run time.
    pub fn named(name: impl Into<String>) -> Self {
        ValueStateDescriptor {
            name: Cow::Owned(name.into()),
            ttl: None,
            _type: PhantomData,
        }
    }
}
descriptor_common!(ValueStateDescriptor<V>);

/// A list of values per key.
pub struct ListStateDescriptor<V> {
    name: Cow<'static, str>,
    ttl: Option<StateTtlConfig>,
    _type: PhantomData<fn() -> V>,
}

impl<V> ListStateDescriptor<V> {
    pub const fn new(name: &'static str) -> Self {
        ListStateDescriptor {
            name: Cow::Borrowed(name),
            ttl: None,
            _type: PhantomData,
        }
    }
    pub fn named(name: impl Into<String>) -> Self {
        ListStateDescriptor {
            name: Cow::Owned(name.into()),
            ttl: None,
            _type: PhantomData,
        }
    }
}
descriptor_common!(ListStateDescriptor<V>);

/// A map per key; also describes broadcast state.
pub struct MapStateDescriptor<K, V> {
    name: Cow<'static, str>,
    ttl: Option<StateTtlConfig>,
    _type: PhantomData<fn() -> (K, V)>,
}

impl<K, V> MapStateDescriptor<K, V> {
    pub const fn new(name: &'static str) -> Self {
        MapStateDescriptor {
            name: Cow::Borrowed(name),
            ttl: None,
            _type: PhantomData,
        }
    }
    pub fn named(name: impl Into<String>) -> Self {
        MapStateDescriptor {
            name: Cow::Owned(name.into()),
            ttl: None,
            _type: PhantomData,
        }
    }
}
descriptor_common!(MapStateDescriptor<K, V>);

/// One value per key, combined with each added value by a reduce function.
pub struct ReducingStateDescriptor<V> {
    name: Cow<'static, str>,
    ttl: Option<StateTtlConfig>,
    pub(crate) reduce: Arc<dyn Fn(V, V) -> V + Send + Sync>,
}

impl<V> ReducingStateDescriptor<V> {
    pub fn new(
        name: impl Into<Cow<'static, str>>,
        reduce: impl Fn(V, V) -> V + Send + Sync + 'static,
    ) -> Self {
        ReducingStateDescriptor {
            name: name.into(),
            ttl: None,
            reduce: Arc::new(reduce),
        }
    }
}
descriptor_common!(ReducingStateDescriptor<V>);

/// An accumulator per key, fed by an [`AggregateFunction`].
pub struct AggregatingStateDescriptor<IN, ACC, OUT> {
    name: Cow<'static, str>,
    ttl: Option<StateTtlConfig>,
    pub(crate) function: Arc<dyn AggregateFunction<IN, ACC, OUT>>,
}

impl<IN, ACC, OUT> AggregatingStateDescriptor<IN, ACC, OUT> {
    pub fn new(
        name: impl Into<Cow<'static, str>>,
        function: impl AggregateFunction<IN, ACC, OUT>,
    ) -> Self {
        AggregatingStateDescriptor {
            name: name.into(),
            ttl: None,
            function: Arc::new(function),
        }
    }
}
descriptor_common!(AggregatingStateDescriptor<IN, ACC, OUT>);

macro_rules! clone_descriptor {
    ($ty:ident < $($p:ident),+ >, $($field:ident),*) => {
        impl<$($p),+> Clone for $ty<$($p),+> {
            fn clone(&self) -> Self {
                $ty { name: self.name.clone(), ttl: self.ttl, $($field: self.$field.clone()),* }
            }
        }
    };
}
clone_descriptor!(ValueStateDescriptor<V>, _type);
clone_descriptor!(ListStateDescriptor<V>, _type);
clone_descriptor!(MapStateDescriptor<K, V>, _type);
clone_descriptor!(ReducingStateDescriptor<V>, reduce);
clone_descriptor!(AggregatingStateDescriptor<IN, ACC, OUT>, function);

//! `KeyedStream<K, T>`: a stream partitioned by key, with keyed state and timers.

use crate::api::connected::{
    BroadcastStream, ConnectedKeyedStreams, KeyedBroadcastConnectedStream,
};
use crate::api::datastream::{DataStream, op_base};
use crate::config::RuntimeMode;
use crate::functions::KeyedProcessFunction;
use crate::graph::Built;
use crate::operators::aggregate::{RollingOp, field};
use crate::operators::keyed_process::{KeySelector, KeyedProcessOp, keyed_parts};
use crate::record::{Data, Key};
use std::marker::PhantomData;
use std::ops::{Add, Deref};

/// A stream whose records are partitioned by a key (Flink's `KeyedStream`). Every
/// `DataStream` method works on it too; the next operator reads it partitioned by key.
pub struct KeyedStream<K, T> {
    pub(crate) stream: DataStream<T>,
    pub(crate) key: KeySelector<T, K>,
}

impl<K, T> Clone for KeyedStream<K, T> {
    fn clone(&self) -> Self {
        KeyedStream {
            stream: self.stream.clone(),
            key: self.key.clone(),
        }
    }
}

impl<K, T> Deref for KeyedStream<K, T> {
    type Target = DataStream<T>;
    fn deref(&self) -> &DataStream<T> {
        &self.stream
    }
}

impl<K: Key, T: Data> KeyedStream<K, T> {
    /// The function that extracts the key.
    pub fn key_selector(&self) -> &KeySelector<T, K> {
        &self.key
    }

    /// Applies a [`KeyedProcessFunction`]: per-key state and timers.
    pub fn process<O: Data, F: KeyedProcessFunction<K, T, O>>(&self, f: F) -> DataStream<O> {
        let key = self.key.clone();
        self.stream
            .one_input::<O>("KeyedProcess", true, move |ctx, outputs| {
                let base = op_base::<O>(ctx, outputs)?;
                let (backend, timers) = keyed_parts::<K, ()>(ctx)?;
                let mut f = f.clone();
                base.open_with(|rc| f.open(rc))?;
                Ok(Built::one_input::<T>(
                    Box::new(KeyedProcessOp {
                        base,
                        f,
                        key_selector: key.clone(),
                        backend,
                        timers,
                        _in: PhantomData,
                    }),
                    ctx.info.name.clone(),
                ))
            })
    }

    /// Rolling reduce: emits `f(previous result, record)` for every record of a key (in
    /// batch mode only the final result of each key).
    pub fn reduce<F>(&self, f: F) -> DataStream<T>
    where
        F: FnMut(T, T) -> T + Clone + Send + Sync + 'static,
    {
        self.rolling("Keyed Reduce", f)
    }

    fn rolling<F>(&self, name: &str, f: F) -> DataStream<T>
    where
        F: FnMut(T, T) -> T + Clone + Send + Sync + 'static,
    {
        let key = self.key.clone();
        let final_only = self.stream.env.runtime_mode() == RuntimeMode::Batch;
        self.stream.one_input::<T>(name, true, move |ctx, outputs| {
            let base = op_base::<T>(ctx, outputs)?;
            let (backend, _) = keyed_parts::<K, ()>(ctx)?;
            Ok(Built::one_input::<T>(
                Box::new(RollingOp::new(
                    base,
                    f.clone(),
                    key.clone(),
                    backend,
                    final_only,
                )),
                ctx.info.name.clone(),
            ))
        })
    }

    /// Rolling sum of a field: the key's first record with the field replaced by the sum.
    ///
    /// `field` points into the record: `.sum(|r: &mut (String, u64)| &mut r.1)`.
    pub fn sum<N, F>(&self, field: F) -> DataStream<T>
    where
        N: Copy + Add<Output = N> + 'static,
        F: Fn(&mut T) -> &mut N + Clone + Send + Sync + 'static,
    {
        self.rolling("Keyed Aggregation (sum)", field::sum(field))
    }

    /// Rolling minimum of a field (other fields from the key's first record).
    pub fn min<N, F>(&self, field: F) -> DataStream<T>
    where
        N: Copy + PartialOrd + 'static,
        F: Fn(&mut T) -> &mut N + Clone + Send + Sync + 'static,
    {
        self.rolling("Keyed Aggregation (min)", field::min(field))
    }

    /// Rolling maximum of a field (other fields from the key's first record).
    pub fn max<N, F>(&self, field: F) -> DataStream<T>
    where
        N: Copy + PartialOrd + 'static,
        F: Fn(&mut T) -> &mut N + Clone + Send + Sync + 'static,
    {
        self.rolling("Keyed Aggregation (max)", field::max(field))
    }

    /// The record with the smallest field so far (the earlier one on ties).
    pub fn min_by<N, F>(&self, field: F) -> DataStream<T>
    where
        N: Copy + PartialOrd + 'static,
        F: Fn(&mut T) -> &mut N + Clone + Send + Sync + 'static,
    {
        self.rolling("Keyed Aggregation (min_by)", field::min_by(field))
    }

    /// The record with the largest field so far (the earlier one on ties).
    pub fn max_by<N, F>(&self, field: F) -> DataStream<T>
    where
        N: Copy + PartialOrd + 'static,
        F: Fn(&mut T) -> &mut N + Clone + Send + Sync + 'static,
    {
        self.rolling("Keyed Aggregation (max_by)", field::max_by(field))
    }

    /// Connects with another stream keyed by the same key type (keyed co-process).
    pub fn connect_keyed<B: Data>(
        &self,
        other: &KeyedStream<K, B>,
    ) -> ConnectedKeyedStreams<K, T, B> {
        ConnectedKeyedStreams {
            first: self.clone(),
            second: other.clone(),
        }
    }

    /// Connects with a broadcast stream (keyed broadcast process function).
    pub fn connect_broadcast<B: Data>(
        &self,
        other: &BroadcastStream<B>,
    ) -> KeyedBroadcastConnectedStream<K, T, B> {
        KeyedBroadcastConnectedStream {
            data: self.clone(),
            broadcast: other.clone(),
        }
    }
}

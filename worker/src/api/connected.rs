//! Two-input streams: `ConnectedStreams` (co-map, co-flat-map, co-process), keyed
//! connected streams (keyed co-process), and the broadcast state pattern.

use crate::api::datastream::{DataStream, op_base};
use crate::api::env::FnFactory;
use crate::api::keyed::KeyedStream;
use crate::error::TaskResult;
use crate::functions::{
    BroadcastProcessFunction, CoProcessFunction, KeyedBroadcastProcessFunction,
    KeyedCoProcessFunction,
};
use crate::graph::{BuildContext, Built, ErasedOutputs, NodeKind};
use crate::operators::broadcast::{BroadcastProcessOp, KeyedBroadcastProcessOp};
use crate::operators::co_process::{CoFlatMapFns, CoProcessOp, KeyedCoProcessOp};
use crate::operators::keyed_process::{broadcast_states, keyed_parts, operator_state};
use crate::record::{Data, Key};
use crate::runtime::task::TwoInputHead;
use std::marker::PhantomData;
use std::sync::Arc;

/// Adds a two-input operator reading `first` (input 1) and `second` (input 2).
pub(crate) fn two_input<A: Data, B: Data, O: Data>(
    first: &DataStream<A>,
    second: &DataStream<B>,
    name: &str,
    keyed: bool,
    build: impl Fn(&BuildContext<'_>, ErasedOutputs) -> TaskResult<Built> + Send + Sync + 'static,
) -> DataStream<O> {
    let env = first.env.clone();
    let id = env.add_node(
        name.to_string(),
        NodeKind::TwoInput(Arc::new(FnFactory(build))),
        keyed,
    );
    first.connect_to(id, 0);
    second.connect_to(id, 1);
    DataStream::from_node(env, id)
}

/// Two streams of possibly different types, processed together (Flink's
/// `ConnectedStreams`).
pub struct ConnectedStreams<A, B> {
    pub(crate) first: DataStream<A>,
    pub(crate) second: DataStream<B>,
}

impl<A: Data, B: Data> ConnectedStreams<A, B> {
    /// `f1` for records of the first stream, `f2` for the second.
    pub fn map<O: Data, F1, F2>(&self, f1: F1, f2: F2) -> DataStream<O>
    where
        F1: FnMut(A) -> O + Clone + Send + Sync + 'static,
        F2: FnMut(B) -> O + Clone + Send + Sync + 'static,
    {
        let (mut f1, mut f2) = (f1, f2);
        self.co_process(
            "Co-Map",
            CoFlatMapFns {
                f1: move |a| Some(f1(a)),
                f2: move |b| Some(f2(b)),
            },
        )
    }

    /// Like `map`, each function returning any number of results.
    pub fn flat_map<O: Data, F1, F2, It1, It2>(&self, f1: F1, f2: F2) -> DataStream<O>
    where
        F1: FnMut(A) -> It1 + Clone + Send + Sync + 'static,
        F2: FnMut(B) -> It2 + Clone + Send + Sync + 'static,
        It1: IntoIterator<Item = O>,
        It2: IntoIterator<Item = O>,
    {
        self.co_process("Co-Flat Map", CoFlatMapFns { f1, f2 })
    }

    /// Applies a [`CoProcessFunction`].
    pub fn process<O: Data, F: CoProcessFunction<A, B, O>>(&self, f: F) -> DataStream<O> {
        self.co_process("Co-Process", f)
    }

    fn co_process<O: Data, F: CoProcessFunction<A, B, O>>(
        &self,
        name: &str,
        f: F,
    ) -> DataStream<O> {
        two_input::<A, B, O>(
            &self.first,
            &self.second,
            name,
            false,
            move |ctx, outputs| {
                let base = op_base::<O>(ctx, outputs)?;
                let mut f = f.clone();
                base.open_with(|rc| f.open(rc))?;
                let op = CoProcessOp {
                    base,
                    f,
                    operator_state: operator_state(ctx)?,
                    _in: PhantomData,
                };
                Ok(Built::TwoInput(Box::new(TwoInputHead::new(
                    Box::new(op),
                    ctx.info.name.clone(),
                ))))
            },
        )
    }

    /// Keys both streams (by the same key type) for a keyed co-process function.
    pub fn key_by<K: Key, FA, FB>(&self, key_a: FA, key_b: FB) -> ConnectedKeyedStreams<K, A, B>
    where
        FA: Fn(&A) -> K + Clone + Send + Sync + 'static,
        FB: Fn(&B) -> K + Clone + Send + Sync + 'static,
    {
        ConnectedKeyedStreams {
            first: self.first.key_by(key_a),
            second: self.second.key_by(key_b),
        }
    }
}

/// Two streams keyed by the same key type: keyed state and timers are shared per key.
pub struct ConnectedKeyedStreams<K, A, B> {
    pub(crate) first: KeyedStream<K, A>,
    pub(crate) second: KeyedStream<K, B>,
}

impl<K: Key, A: Data, B: Data> ConnectedKeyedStreams<K, A, B> {
    /// Applies a [`KeyedCoProcessFunction`].
    pub fn process<O: Data, F: KeyedCoProcessFunction<K, A, B, O>>(&self, f: F) -> DataStream<O> {
        let (k1, k2) = (self.first.key.clone(), self.second.key.clone());
        two_input::<A, B, O>(
            &self.first.stream,
            &self.second.stream,
            "KeyedCo-Process",
            true,
            move |ctx, outputs| {
                let base = op_base::<O>(ctx, outputs)?;
                let (backend, timers) = keyed_parts::<K, ()>(ctx)?;
                let mut f = f.clone();
                base.open_with(|rc| f.open(rc))?;
                let op = KeyedCoProcessOp {
                    base,
                    f,
                    key1: k1.clone(),
                    key2: k2.clone(),
                    backend,
                    timers,
                };
                Ok(Built::TwoInput(Box::new(TwoInputHead::new(
                    Box::new(op),
                    ctx.info.name.clone(),
                ))))
            },
        )
    }

    /// Co-map of two keyed streams (records of one key meet in one subtask).
    pub fn map<O: Data, F1, F2>(&self, f1: F1, f2: F2) -> DataStream<O>
    where
        F1: FnMut(A) -> O + Clone + Send + Sync + 'static,
        F2: FnMut(B) -> O + Clone + Send + Sync + 'static,
    {
        ConnectedStreams {
            first: self.first.stream.clone(),
            second: self.second.stream.clone(),
        }
        .map(f1, f2)
    }

    /// Co-flat-map of two keyed streams.
    pub fn flat_map<O: Data, F1, F2, It1, It2>(&self, f1: F1, f2: F2) -> DataStream<O>
    where
        F1: FnMut(A) -> It1 + Clone + Send + Sync + 'static,
        F2: FnMut(B) -> It2 + Clone + Send + Sync + 'static,
        It1: IntoIterator<Item = O>,
        It2: IntoIterator<Item = O>,
    {
        ConnectedStreams {
            first: self.first.stream.clone(),
            second: self.second.stream.clone(),
        }
        .flat_map(f1, f2)
    }
}

/// A stream broadcast to every instance of the operator it is connected to.
pub struct BroadcastStream<B> {
    pub(crate) stream: DataStream<B>,
}

impl<B> Clone for BroadcastStream<B> {
    fn clone(&self) -> Self {
        BroadcastStream {
            stream: self.stream.clone(),
        }
    }
}

/// A stream connected with a broadcast stream.
pub struct BroadcastConnectedStream<A, B> {
    pub(crate) data: DataStream<A>,
    pub(crate) broadcast: BroadcastStream<B>,
}

impl<A: Data, B: Data> BroadcastConnectedStream<A, B> {
    /// Applies a [`BroadcastProcessFunction`].
    pub fn process<O: Data, F: BroadcastProcessFunction<A, B, O>>(&self, f: F) -> DataStream<O> {
        two_input::<A, B, O>(
            &self.data,
            &self.broadcast.stream,
            "Broadcast-Process",
            false,
            move |ctx, outputs| {
                let base = op_base::<O>(ctx, outputs)?;
                let mut f = f.clone();
                base.open_with(|rc| f.open(rc))?;
                let op = BroadcastProcessOp {
                    base,
                    f,
                    states: broadcast_states(ctx)?,
                    operator_state: operator_state(ctx)?,
                    _in: PhantomData,
                };
                Ok(Built::TwoInput(Box::new(TwoInputHead::new(
                    Box::new(op),
                    ctx.info.name.clone(),
                ))))
            },
        )
    }
}

/// A keyed stream connected with a broadcast stream.
pub struct KeyedBroadcastConnectedStream<K, A, B> {
    pub(crate) data: KeyedStream<K, A>,
    pub(crate) broadcast: BroadcastStream<B>,
}

impl<K: Key, A: Data, B: Data> KeyedBroadcastConnectedStream<K, A, B> {
    /// Applies a [`KeyedBroadcastProcessFunction`].
    pub fn process<O: Data, F: KeyedBroadcastProcessFunction<K, A, B, O>>(
        &self,
        f: F,
    ) -> DataStream<O> {
        let key = self.data.key.clone();
        two_input::<A, B, O>(
            &self.data.stream,
            &self.broadcast.stream,
            "KeyedBroadcast-Process",
            true,
            move |ctx, outputs| {
                let base = op_base::<O>(ctx, outputs)?;
                let (backend, timers) = keyed_parts::<K, ()>(ctx)?;
                let mut f = f.clone();
                base.open_with(|rc| f.open(rc))?;
                let op = KeyedBroadcastProcessOp {
                    base,
                    f,
                    key_selector: key.clone(),
                    backend,
                    timers,
                    states: broadcast_states(ctx)?,
                    _in: PhantomData,
                };
                Ok(Built::TwoInput(Box::new(TwoInputHead::new(
                    Box::new(op),
                    ctx.info.name.clone(),
                ))))
            },
        )
    }
}

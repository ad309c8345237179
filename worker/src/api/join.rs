//! Joins of two streams: window joins and co-groups (records of equal key in the same
//! window), and interval joins (records of equal key whose timestamps are close).

use crate::api::connected::two_input;
use crate::api::datastream::{DataStream, op_base};
use crate::api::keyed::KeyedStream;
use crate::functions::Collector;
use crate::graph::Built;
use crate::operators::interval_join::{IntervalJoinOp, JoinFn, ProcessJoinFunction};
use crate::operators::keyed_process::keyed_parts;
use crate::record::{Data, Key};
use crate::runtime::task::TwoInputHead;
use crate::windows::assigners::WindowAssigner;
use crate::windows::triggers::Trigger;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// A record of either join input.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Tagged<A, B> {
    Left(A),
    Right(B),
}

type KeyFn<T, K> = Arc<dyn Fn(&T) -> K + Send + Sync>;

/// Two streams to be joined in windows (Flink's `JoinedStreams`, and `CoGroupedStreams`).
pub struct TwoStreams<A, B> {
    left: DataStream<A>,
    right: DataStream<B>,
}

impl<T: Data> DataStream<T> {
    /// Joins with `other`: pairs of records with equal keys in the same window.
    pub fn join<B: Data>(&self, other: &DataStream<B>) -> TwoStreams<T, B> {
        TwoStreams {
            left: self.clone(),
            right: other.clone(),
        }
    }

    /// Co-groups with `other`: per key and window, all records of both sides at once.
    pub fn co_group<B: Data>(&self, other: &DataStream<B>) -> TwoStreams<T, B> {
        self.join(other)
    }
}

impl<A: Data, B: Data> TwoStreams<A, B> {
    /// The key of the left (this) stream.
    pub fn where_key<K: Key>(
        self,
        key: impl Fn(&A) -> K + Send + Sync + 'static,
    ) -> TwoStreamsWhere<K, A, B> {
        TwoStreamsWhere {
            streams: self,
            left_key: Arc::new(key),
        }
    }
}

pub struct TwoStreamsWhere<K, A, B> {
    streams: TwoStreams<A, B>,
    left_key: KeyFn<A, K>,
}

impl<K: Key, A: Data, B: Data> TwoStreamsWhere<K, A, B> {
    /// The key of the right (other) stream; must equal the left key to join.
    pub fn equal_to(
        self,
        key: impl Fn(&B) -> K + Send + Sync + 'static,
    ) -> TwoStreamsKeyed<K, A, B> {
        TwoStreamsKeyed {
            streams: self.streams,
            left_key: self.left_key,
            right_key: Arc::new(key),
        }
    }
}

pub struct TwoStreamsKeyed<K, A, B> {
    streams: TwoStreams<A, B>,
    left_key: KeyFn<A, K>,
    right_key: KeyFn<B, K>,
}

impl<K: Key, A: Data, B: Data> TwoStreamsKeyed<K, A, B> {
    /// The windows in which records meet.
    pub fn window<W: WindowAssigner<Tagged<A, B>>>(
        self,
        assigner: W,
    ) -> WindowedTwoStreams<K, A, B, W, W::DefaultTrigger> {
        WindowedTwoStreams {
            trigger: assigner.default_trigger(),
            keyed: self,
            assigner,
            allowed_lateness: Duration::ZERO,
        }
    }
}

/// Two keyed streams in windows: finish with `apply` (join) or `co_group_apply`.
pub struct WindowedTwoStreams<K, A, B, W, Tr> {
    keyed: TwoStreamsKeyed<K, A, B>,
    assigner: W,
    trigger: Tr,
    allowed_lateness: Duration,
}

impl<K, A, B, W, Tr> WindowedTwoStreams<K, A, B, W, Tr>
where
    K: Key,
    A: Data,
    B: Data,
    W: WindowAssigner<Tagged<A, B>>,
    Tr: Trigger<Tagged<A, B>, W::W>,
{
    pub fn trigger<Tr2: Trigger<Tagged<A, B>, W::W>>(
        self,
        trigger: Tr2,
    ) -> WindowedTwoStreams<K, A, B, W, Tr2> {
        WindowedTwoStreams {
            keyed: self.keyed,
            assigner: self.assigner,
            trigger,
            allowed_lateness: self.allowed_lateness,
        }
    }

    pub fn allowed_lateness(mut self, lateness: Duration) -> Self {
        self.allowed_lateness = lateness;
        self
    }

    /// Per key and window: `f(left records, right records, out)` (Flink's `CoGroupFunction`).
    pub fn co_group_apply<O: Data, F>(self, f: F) -> DataStream<O>
    where
        F: FnMut(&[A], &[B], &mut Collector<'_, O>) + Clone + Send + Sync + 'static,
    {
        let (lk, rk) = (self.keyed.left_key.clone(), self.keyed.right_key.clone());
        let left = self
            .keyed
            .streams
            .left
            .map(Tagged::<A, B>::Left)
            .name("Map (join left)");
        let right = self
            .keyed
            .streams
            .right
            .map(Tagged::<A, B>::Right)
            .name("Map (join right)");
        let mut f = f;
        left.union(&right)
            .key_by(move |t: &Tagged<A, B>| match t {
                Tagged::Left(a) => lk(a),
                Tagged::Right(b) => rk(b),
            })
            .window(self.assigner)
            .trigger(self.trigger)
            .allowed_lateness(self.allowed_lateness)
            .apply(
                move |_: &K, _: &W::W, records: &[Tagged<A, B>], out: &mut Collector<'_, O>| {
                    let mut lefts = Vec::new();
                    let mut rights = Vec::new();
                    for r in records {
                        match r {
                            Tagged::Left(a) => lefts.push(a.clone()),
                            Tagged::Right(b) => rights.push(b.clone()),
                        }
                    }
                    f(&lefts, &rights, out);
                },
            )
    }

    /// Emits `f(left, right)` for every pair of records with equal keys in a window.
    pub fn apply<O: Data, F>(self, f: F) -> DataStream<O>
    where
        F: FnMut(&A, &B) -> O + Clone + Send + Sync + 'static,
    {
        let mut f = f;
        self.co_group_apply(
            move |lefts: &[A], rights: &[B], out: &mut Collector<'_, O>| {
                for a in lefts {
                    for b in rights {
                        out.collect(f(a, b));
                    }
                }
            },
        )
    }

    /// Like `apply`, emitting any number of results per pair (Flink's `FlatJoinFunction`).
    pub fn flat_apply<O: Data, F>(self, f: F) -> DataStream<O>
    where
        F: FnMut(&A, &B, &mut Collector<'_, O>) + Clone + Send + Sync + 'static,
    {
        let mut f = f;
        self.co_group_apply(
            move |lefts: &[A], rights: &[B], out: &mut Collector<'_, O>| {
                for a in lefts {
                    for b in rights {
                        f(a, b, out);
                    }
                }
            },
        )
    }
}

/// An interval join being configured.
pub struct IntervalJoin<K, A, B> {
    left: KeyedStream<K, A>,
    right: KeyedStream<K, B>,
}

impl<K: Key, A: Data> KeyedStream<K, A> {
    /// Joins with `other` where `left.ts + lower <= right.ts <= left.ts + upper`.
    pub fn interval_join<B: Data>(&self, other: &KeyedStream<K, B>) -> IntervalJoin<K, A, B> {
        IntervalJoin {
            left: self.clone(),
            right: other.clone(),
        }
    }
}

impl<K: Key, A: Data, B: Data> IntervalJoin<K, A, B> {
    /// The bounds in milliseconds, inclusive, relative to the left record (may be negative).
    pub fn between(self, lower_ms: i64, upper_ms: i64) -> IntervalJoined<K, A, B> {
        IntervalJoined {
            join: self,
            lower: lower_ms,
            upper: upper_ms,
        }
    }
}

pub struct IntervalJoined<K, A, B> {
    join: IntervalJoin<K, A, B>,
    lower: i64,
    upper: i64,
}

impl<K: Key, A: Data, B: Data> IntervalJoined<K, A, B> {
    /// Excludes the lower bound itself.
    pub fn lower_bound_exclusive(mut self) -> Self {
        self.lower += 1;
        self
    }
    /// Excludes the upper bound itself.
    pub fn upper_bound_exclusive(mut self) -> Self {
        self.upper -= 1;
        self
    }

    /// Emits `f(left, right)` for every matching pair.
    pub fn join<O: Data, F>(self, f: F) -> DataStream<O>
    where
        F: FnMut(&A, &B) -> O + Clone + Send + Sync + 'static,
    {
        self.process(JoinFn(f))
    }

    /// Applies a [`ProcessJoinFunction`] to every matching pair.
    pub fn process<O: Data, F: ProcessJoinFunction<A, B, O>>(self, f: F) -> DataStream<O> {
        let (lower, upper) = (self.lower, self.upper);
        let env = self.join.left.env.clone();
        if lower > upper {
            env.defer_error(format!(
                "interval join bounds are empty: lower bound {lower} ms is above upper bound {upper} ms; \
                 use between(lower, upper) with lower <= upper"
            ));
        }
        let (ka, kb) = (self.join.left.key.clone(), self.join.right.key.clone());
        two_input::<A, B, O>(
            &self.join.left.stream,
            &self.join.right.stream,
            "IntervalJoin",
            true,
            move |ctx, outputs| {
                let base = op_base::<O>(ctx, outputs)?;
                let (backend, timers) = keyed_parts::<K, u8>(ctx)?;
                let op = IntervalJoinOp::new(
                    base,
                    f.clone(),
                    ka.clone(),
                    kb.clone(),
                    backend,
                    timers,
                    lower,
                    upper,
                );
                Ok(Built::TwoInput(Box::new(TwoInputHead::new(
                    Box::new(op),
                    ctx.info.name.clone(),
                ))))
            },
        )
    }
}

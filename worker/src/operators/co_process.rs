//! Two-input operators of connected streams: co-map, co-flat-map, co-process, and the
//! keyed co-process operator (keyed state and timers shared by both inputs).

use crate::error::{Position, TaskResult};
use crate::functions::{CoProcessFunction, Collector, Context, KeyedCoProcessFunction};
use crate::operators::keyed_process::{KeySelector, KeyedParts, fire_timers, process_keyed};
use crate::operators::{OpBase, forward_control};
use crate::record::{Batch, Data, Key, TimeDomain};
use crate::runtime::context::guard;
use crate::runtime::task::TwoInputOperator;
use crate::state::backend::KeyedBackend;
use crate::state::broadcast::BroadcastStates;
use crate::state::operator::OperatorStateStore;
use crate::state::timers::Timers;
use std::marker::PhantomData;

/// Two closures returning iterators as a [`CoProcessFunction`] (co-map and co-flat-map).
#[derive(Clone)]
pub(crate) struct CoFlatMapFns<F1, F2> {
    pub f1: F1,
    pub f2: F2,
}

impl<I1, I2, O, F1, F2, It1, It2> CoProcessFunction<I1, I2, O> for CoFlatMapFns<F1, F2>
where
    F1: FnMut(I1) -> It1 + Clone + Send + Sync + 'static,
    F2: FnMut(I2) -> It2 + Clone + Send + Sync + 'static,
    It1: IntoIterator<Item = O>,
    It2: IntoIterator<Item = O>,
{
    fn process_element1(&mut self, value: I1, _: &mut Context<'_>, out: &mut Collector<'_, O>) {
        for o in (self.f1)(value) {
            out.collect(o);
        }
    }
    fn process_element2(&mut self, value: I2, _: &mut Context<'_>, out: &mut Collector<'_, O>) {
        for o in (self.f2)(value) {
            out.collect(o);
        }
    }
}

/// Feeds every record of `batch` (input `input` of two) to `call` with a non-keyed context.
pub(crate) fn process_plain<I, O>(
    base: &mut OpBase<O>,
    input: u8,
    inputs: u8,
    batch: &mut Batch<I>,
    operator_state: &OperatorStateStore,
    mut broadcast: Option<&mut BroadcastStates>,
    mut call: impl FnMut(I, &mut Context<'_>, &mut Collector<'_, O>),
) -> TaskResult {
    let idx = usize::from(input);
    base.info.metrics.add_in(idx, batch.len());
    let b = &mut *base;
    guard!(b.info, Position::of_input(inputs, input, b.seen[idx]), {
        let clock = b.services.clock.clone();
        for r in batch.drain(..) {
            b.seen[idx] += 1;
            let mut ctx = Context {
                timestamp: r.timestamp,
                watermark: b.watermark,
                clock: &clock,
                sides: &mut b.out.sides,
                operator_state,
                broadcast: broadcast.as_deref_mut(),
            };
            let mut out = Collector::new(&mut b.out.buf, r.timestamp);
            call(r.value, &mut ctx, &mut out);
        }
        Ok(())
    })?;
    base.out.flush()
}

pub(crate) struct CoProcessOp<I1, I2, O, F> {
    pub base: OpBase<O>,
    pub f: F,
    pub operator_state: OperatorStateStore,
    pub _in: PhantomData<fn(I1, I2)>,
}

impl<I1: Data, I2: Data, O: Data, F: CoProcessFunction<I1, I2, O>> TwoInputOperator<I1, I2>
    for CoProcessOp<I1, I2, O, F>
{
    fn process_batch1(&mut self, batch: &mut Batch<I1>) -> TaskResult {
        let f = &mut self.f;
        process_plain(
            &mut self.base,
            0,
            2,
            batch,
            &self.operator_state,
            None,
            |v, c, o| f.process_element1(v, c, o),
        )
    }
    fn process_batch2(&mut self, batch: &mut Batch<I2>) -> TaskResult {
        let f = &mut self.f;
        process_plain(
            &mut self.base,
            1,
            2,
            batch,
            &self.operator_state,
            None,
            |v, c, o| f.process_element2(v, c, o),
        )
    }
    forward_control!(end: finish, timers: no, close: f, barrier: operator_state);
}

pub(crate) struct KeyedCoProcessOp<K, I1, I2, O, F> {
    pub base: OpBase<O>,
    pub f: F,
    pub key1: KeySelector<I1, K>,
    pub key2: KeySelector<I2, K>,
    pub backend: KeyedBackend<K>,
    pub timers: Timers<K, ()>,
}

impl<K: Key, I1: Data, I2: Data, O: Data, F: KeyedCoProcessFunction<K, I1, I2, O>>
    KeyedCoProcessOp<K, I1, I2, O, F>
{
    fn parts(&mut self) -> (&mut OpBase<O>, &mut F, KeyedParts<'_, K>) {
        (
            &mut self.base,
            &mut self.f,
            KeyedParts {
                backend: &self.backend,
                timers: &mut self.timers,
                broadcast: None,
            },
        )
    }

    fn fire(&mut self, domain: TimeDomain, time: i64) -> TaskResult {
        let (base, f, parts) = self.parts();
        fire_timers(base, domain, time, parts, |t, c, o| f.on_timer(t, c, o))
    }
}

impl<K: Key, I1: Data, I2: Data, O: Data, F: KeyedCoProcessFunction<K, I1, I2, O>>
    TwoInputOperator<I1, I2> for KeyedCoProcessOp<K, I1, I2, O, F>
{
    fn process_batch1(&mut self, batch: &mut Batch<I1>) -> TaskResult {
        let sel = self.key1.clone();
        let (base, f, parts) = self.parts();
        process_keyed(base, 0, 2, batch, &sel, parts, |v, c, o| {
            f.process_element1(v, c, o)
        })
    }
    fn process_batch2(&mut self, batch: &mut Batch<I2>) -> TaskResult {
        let sel = self.key2.clone();
        let (base, f, parts) = self.parts();
        process_keyed(base, 1, 2, batch, &sel, parts, |v, c, o| {
            f.process_element2(v, c, o)
        })
    }
    forward_control!(end: finish, timers: yes, close: f);
}

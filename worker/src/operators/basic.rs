//! Stateless one-input operators: map, filter, flat-map and process.

use crate::error::{Position, TaskResult};
use crate::functions::{
    Collector, ProcessFunction, RichFilterFunction, RichFlatMapFunction, RichMapFunction,
};
use crate::operators::co_process::process_plain;
use crate::operators::{OpBase, forward_control};
use crate::record::{Batch, Data, StreamRecord};
use crate::runtime::consumer::Consumer;
use crate::runtime::context::guard;
use crate::state::operator::OperatorStateStore;
use std::marker::PhantomData;

/// A closure as a [`RichMapFunction`].
#[derive(Clone)]
pub(crate) struct MapFn<F>(pub F);

impl<I, O, F: FnMut(I) -> O + Clone + Send + Sync + 'static> RichMapFunction<I, O> for MapFn<F> {
    #[inline]
    fn map(&mut self, value: I) -> O {
        (self.0)(value)
    }
}

/// A closure as a [`RichFilterFunction`].
#[derive(Clone)]
pub(crate) struct FilterFn<F>(pub F);

impl<T, F: FnMut(&T) -> bool + Clone + Send + Sync + 'static> RichFilterFunction<T>
    for FilterFn<F>
{
    #[inline]
    fn filter(&mut self, value: &T) -> bool {
        (self.0)(value)
    }
}

/// A closure returning an iterator as a [`RichFlatMapFunction`].
#[derive(Clone)]
pub(crate) struct FlatMapFn<F>(pub F);

impl<I, O, It, F> RichFlatMapFunction<I, O> for FlatMapFn<F>
where
    F: FnMut(I) -> It + Clone + Send + Sync + 'static,
    It: IntoIterator<Item = O>,
{
    #[inline]
    fn flat_map(&mut self, value: I, out: &mut Collector<'_, O>) {
        for o in (self.0)(value) {
            out.collect(o);
        }
    }
}

pub(crate) struct MapOp<I, O, F> {
    pub base: OpBase<O>,
    pub f: F,
    pub _in: PhantomData<fn(I)>,
}

impl<I: Data, O: Data, F: RichMapFunction<I, O>> Consumer<I> for MapOp<I, O, F> {
    fn process_batch(&mut self, batch: &mut Batch<I>) -> TaskResult {
        self.base.info.metrics.add_in(0, batch.len());
        let b = &mut self.base;
        let f = &mut self.f;
        guard!(b.info, Position::Record(b.seen[0]), {
            let seen = &mut b.seen[0];
            b.out.buf.extend(batch.drain(..).map(|r| {
                *seen += 1;
                StreamRecord::new(f.map(r.value), r.timestamp)
            }));
            Ok(())
        })?;
        self.base.out.flush()
    }
    forward_control!(end: end_input, timers: no, close: f);
}

pub(crate) struct FilterOp<T, F> {
    pub base: OpBase<T>,
    pub f: F,
}

impl<T: Data, F: RichFilterFunction<T>> Consumer<T> for FilterOp<T, F> {
    fn process_batch(&mut self, batch: &mut Batch<T>) -> TaskResult {
        self.base.info.metrics.add_in(0, batch.len());
        let b = &mut self.base;
        let f = &mut self.f;
        guard!(b.info, Position::Record(b.seen[0]), {
            let seen = &mut b.seen[0];
            batch.retain(|r| {
                *seen += 1;
                f.filter(&r.value)
            });
            Ok(())
        })?;
        self.base.out.forward(batch)
    }
    forward_control!(end: end_input, timers: no, close: f);
}

pub(crate) struct FlatMapOp<I, O, F> {
    pub base: OpBase<O>,
    pub f: F,
    pub _in: PhantomData<fn(I)>,
}

impl<I: Data, O: Data, F: RichFlatMapFunction<I, O>> Consumer<I> for FlatMapOp<I, O, F> {
    fn process_batch(&mut self, batch: &mut Batch<I>) -> TaskResult {
        self.base.info.metrics.add_in(0, batch.len());
        let b = &mut self.base;
        let f = &mut self.f;
        guard!(b.info, Position::Record(b.seen[0]), {
            for r in batch.drain(..) {
                b.seen[0] += 1;
                let mut out = Collector::new(&mut b.out.buf, r.timestamp);
                f.flat_map(r.value, &mut out);
            }
            Ok(())
        })?;
        self.base.out.flush()
    }
    forward_control!(end: end_input, timers: no, close: f);
}

pub(crate) struct ProcessOp<I, O, F> {
    pub base: OpBase<O>,
    pub f: F,
    pub operator_state: OperatorStateStore,
    pub _in: PhantomData<fn(I)>,
}

impl<I: Data, O: Data, F: ProcessFunction<I, O>> Consumer<I> for ProcessOp<I, O, F> {
    fn process_batch(&mut self, batch: &mut Batch<I>) -> TaskResult {
        let f = &mut self.f;
        process_plain(
            &mut self.base,
            0,
            1,
            batch,
            &self.operator_state,
            None,
            |v, c, o| f.process_element(v, c, o),
        )
    }
    forward_control!(end: end_input, timers: no, close: f, barrier: operator_state);
}

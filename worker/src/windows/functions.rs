//! Window functions (Flink's `ProcessWindowFunction`, with reduce and aggregate for
//! incremental aggregation) and the per-window logic the window operator runs.

use crate::functions::{AggregateFunction, Collector};
use crate::record::{Data, Key, StreamRecord};
use crate::runtime::context::{Clock, RuntimeContext};
use crate::runtime::output::{OutputTag, SideOutputs};
use crate::state::backend::KeyedBackend;
use crate::state::descriptors::ValueStateDescriptor;
use crate::state::handles::keyed_state_accessors;
use crate::state::heap::NsTable;
use crate::windows::Window;
use crate::windows::evictors::{Evictor, EvictorContext};
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Arc;

/// What a window function knows when a window fires.
pub struct WindowContext<'a, K, W> {
    pub(crate) window: &'a W,
    pub(crate) watermark: i64,
    pub(crate) clock: &'a Clock,
    pub(crate) sides: &'a mut SideOutputs,
    pub(crate) backend: &'a KeyedBackend<K>,
}

impl<K: Key, W: Window> WindowContext<'_, K, W> {
    /// The window that fired.
    pub fn window(&self) -> &W {
        self.window
    }
    pub fn current_watermark(&self) -> i64 {
        self.watermark
    }
    pub fn current_processing_time(&self) -> i64 {
        self.clock.now()
    }
    /// Emits `value` to the side output `tag` (timestamped with the window's end).
    pub fn output<X: Data>(&mut self, tag: &OutputTag<X>, value: X) {
        self.sides.emit(tag, value, self.window.max_timestamp());
    }
    /// State of this key *and this window* (Flink's `windowState()`); clear it in
    /// [`ProcessWindowFunction::clear`]. The `value_state` etc. methods give state of the
    /// key across windows (Flink's `globalState()`).
    pub fn window_state<V: Data>(&self, d: &ValueStateDescriptor<V>) -> WindowValueState<'_, W, V> {
        WindowValueState {
            table: self.backend.table::<W, V>(d.cow_name(), d.ttl()),
            window: self.window,
        }
    }
}
keyed_state_accessors!(WindowContext, W);

/// A value per key and window.
pub struct WindowValueState<'a, W, V> {
    table: Rc<dyn NsTable<W, V>>,
    window: &'a W,
}

impl<W, V: Clone> WindowValueState<'_, W, V> {
    pub fn value(&self) -> Option<V> {
        self.table.get(self.window)
    }
    pub fn update(&self, value: V) {
        self.table.put(self.window, value);
    }
    pub fn clear(&self) {
        self.table.remove(self.window);
    }
}

/// A function of a window's contents (Flink's `ProcessWindowFunction`). With incremental
/// aggregation (`reduce_with`, `aggregate_with`) it receives the one aggregated value.
pub trait ProcessWindowFunction<K, IN, OUT, W>: Clone + Send + Sync + 'static {
    fn open(&mut self, _ctx: &RuntimeContext<'_>) {}
    fn process(
        &mut self,
        key: &K,
        ctx: &mut WindowContext<'_, K, W>,
        elements: &[IN],
        out: &mut Collector<'_, OUT>,
    );
    /// The window is being discarded: clear per-window state here.
    fn clear(&mut self, _ctx: &mut WindowContext<'_, K, W>) {}
    fn close(&mut self) {}
}

/// A function of a non-keyed window's contents (Flink's `ProcessAllWindowFunction`).
pub trait ProcessAllWindowFunction<IN, OUT, W>: Clone + Send + Sync + 'static {
    fn open(&mut self, _ctx: &RuntimeContext<'_>) {}
    fn process(
        &mut self,
        ctx: &mut WindowContext<'_, (), W>,
        elements: &[IN],
        out: &mut Collector<'_, OUT>,
    );
    fn clear(&mut self, _ctx: &mut WindowContext<'_, (), W>) {}
    fn close(&mut self) {}
}

/// A [`ProcessAllWindowFunction`] as a keyed one (non-keyed windows are keyed by `()`).
#[derive(Clone)]
pub(crate) struct AllWindow<F>(pub F);

impl<IN, OUT, W, F: ProcessAllWindowFunction<IN, OUT, W>> ProcessWindowFunction<(), IN, OUT, W>
    for AllWindow<F>
{
    fn open(&mut self, ctx: &RuntimeContext<'_>) {
        self.0.open(ctx)
    }
    fn process(
        &mut self,
        _: &(),
        ctx: &mut WindowContext<'_, (), W>,
        elements: &[IN],
        out: &mut Collector<'_, OUT>,
    ) {
        self.0.process(ctx, elements, out)
    }
    fn clear(&mut self, ctx: &mut WindowContext<'_, (), W>) {
        self.0.clear(ctx)
    }
    fn close(&mut self) {
        self.0.close()
    }
}

/// A closure `(key, window, elements, out)` as a window function (Flink's `apply`).
#[derive(Clone)]
pub(crate) struct ApplyFn<F>(pub F);

impl<K: Key, IN, OUT, W: Window, F> ProcessWindowFunction<K, IN, OUT, W> for ApplyFn<F>
where
    F: FnMut(&K, &W, &[IN], &mut Collector<'_, OUT>) + Clone + Send + Sync + 'static,
{
    fn process(
        &mut self,
        key: &K,
        ctx: &mut WindowContext<'_, K, W>,
        elements: &[IN],
        out: &mut Collector<'_, OUT>,
    ) {
        (self.0)(key, ctx.window, elements, out)
    }
}

/// Emits the (single, aggregated) element as it is.
#[derive(Clone, Copy)]
pub(crate) struct PassThrough;

impl<K, T: Clone, W> ProcessWindowFunction<K, T, T, W> for PassThrough {
    fn process(
        &mut self,
        _: &K,
        _: &mut WindowContext<'_, K, W>,
        elements: &[T],
        out: &mut Collector<'_, T>,
    ) {
        for e in elements {
            out.collect(e.clone());
        }
    }
}

/// What a window keeps and how it becomes output.
pub(crate) trait WindowLogic<K, T, W, O>: 'static {
    type Acc: crate::record::Data;
    /// Adds a record; returns the new contents when there were none.
    fn add(&self, acc: Option<&mut Self::Acc>, record: StreamRecord<T>) -> Option<Self::Acc>;
    /// Merges `other` into `into` (session windows).
    fn merge(&self, into: &mut Self::Acc, other: Self::Acc);
    /// Emits the window's result. Returns whether `acc` changed (evictors).
    fn emit(
        &mut self,
        key: &K,
        acc: &mut Self::Acc,
        ctx: &mut WindowContext<'_, K, W>,
        out: &mut Collector<'_, O>,
    ) -> bool;
    fn is_empty(&self, _acc: &Self::Acc) -> bool {
        false
    }
    fn clear(&mut self, ctx: &mut WindowContext<'_, K, W>);
    fn open(&mut self, ctx: &RuntimeContext<'_>);
    fn close(&mut self);
}

/// Incremental reduce, then an optional window function of the one result.
pub(crate) struct ReduceLogic<F, P> {
    pub reduce: F,
    pub function: P,
}

impl<K, T, W, O, F, P> WindowLogic<K, T, W, O> for ReduceLogic<F, P>
where
    K: 'static,
    T: Data,
    W: 'static,
    F: Fn(T, T) -> T + 'static,
    P: ProcessWindowFunction<K, T, O, W>,
{
    type Acc = T;
    #[inline]
    fn add(&self, acc: Option<&mut T>, record: StreamRecord<T>) -> Option<T> {
        match acc {
            Some(acc) => {
                *acc = (self.reduce)(acc.clone(), record.value);
                None
            }
            None => Some(record.value),
        }
    }
    fn merge(&self, into: &mut T, other: T) {
        *into = (self.reduce)(into.clone(), other);
    }
    fn emit(
        &mut self,
        key: &K,
        acc: &mut T,
        ctx: &mut WindowContext<'_, K, W>,
        out: &mut Collector<'_, O>,
    ) -> bool {
        self.function
            .process(key, ctx, std::slice::from_ref(acc), out);
        false
    }
    fn clear(&mut self, ctx: &mut WindowContext<'_, K, W>) {
        self.function.clear(ctx)
    }
    fn open(&mut self, ctx: &RuntimeContext<'_>) {
        self.function.open(ctx)
    }
    fn close(&mut self) {
        self.function.close()
    }
}

/// Incremental aggregation, then an optional window function of the one result.
pub(crate) struct AggregateLogic<A, ACC, R, P> {
    pub aggregate: Arc<A>,
    pub function: P,
    pub _types: PhantomData<fn(ACC) -> R>,
}

impl<K, T, W, O, A, ACC, R, P> WindowLogic<K, T, W, O> for AggregateLogic<A, ACC, R, P>
where
    K: 'static,
    T: 'static,
    W: 'static,
    ACC: crate::record::Data,
    R: 'static,
    A: AggregateFunction<T, ACC, R>,
    P: ProcessWindowFunction<K, R, O, W>,
{
    type Acc = ACC;
    #[inline]
    fn add(&self, acc: Option<&mut ACC>, record: StreamRecord<T>) -> Option<ACC> {
        match acc {
            Some(acc) => {
                self.aggregate.add(acc, record.value);
                None
            }
            None => {
                let mut acc = self.aggregate.create_accumulator();
                self.aggregate.add(&mut acc, record.value);
                Some(acc)
            }
        }
    }
    fn merge(&self, into: &mut ACC, other: ACC) {
        self.aggregate.merge(into, other)
    }
    fn emit(
        &mut self,
        key: &K,
        acc: &mut ACC,
        ctx: &mut WindowContext<'_, K, W>,
        out: &mut Collector<'_, O>,
    ) -> bool {
        let result = self.aggregate.get_result(acc);
        self.function
            .process(key, ctx, std::slice::from_ref(&result), out);
        false
    }
    fn clear(&mut self, ctx: &mut WindowContext<'_, K, W>) {
        self.function.clear(ctx)
    }
    fn open(&mut self, ctx: &RuntimeContext<'_>) {
        self.function.open(ctx)
    }
    fn close(&mut self) {
        self.function.close()
    }
}

/// Keeps every record; the window function sees them all.
pub(crate) struct ListLogic<P> {
    pub function: P,
}

impl<K, T, W, O, P> WindowLogic<K, T, W, O> for ListLogic<P>
where
    K: 'static,
    T: Data,
    W: 'static,
    P: ProcessWindowFunction<K, T, O, W>,
{
    type Acc = Vec<T>;
    fn add(&self, acc: Option<&mut Vec<T>>, record: StreamRecord<T>) -> Option<Vec<T>> {
        match acc {
            Some(acc) => {
                acc.push(record.value);
                None
            }
            None => Some(vec![record.value]),
        }
    }
    fn merge(&self, into: &mut Vec<T>, mut other: Vec<T>) {
        into.append(&mut other);
    }
    fn emit(
        &mut self,
        key: &K,
        acc: &mut Vec<T>,
        ctx: &mut WindowContext<'_, K, W>,
        out: &mut Collector<'_, O>,
    ) -> bool {
        self.function.process(key, ctx, acc, out);
        false
    }
    fn clear(&mut self, ctx: &mut WindowContext<'_, K, W>) {
        self.function.clear(ctx)
    }
    fn open(&mut self, ctx: &RuntimeContext<'_>) {
        self.function.open(ctx)
    }
    fn close(&mut self) {
        self.function.close()
    }
}

/// Keeps every record with its timestamp; an evictor trims them around the function.
pub(crate) struct EvictingLogic<T, W, P> {
    pub function: P,
    pub evictor: Arc<dyn Evictor<T, W>>,
}

impl<K, T, W, O, P> WindowLogic<K, T, W, O> for EvictingLogic<T, W, P>
where
    K: Key,
    T: Data,
    W: Window,
    P: ProcessWindowFunction<K, T, O, W>,
{
    type Acc = Vec<StreamRecord<T>>;
    fn add(&self, acc: Option<&mut Self::Acc>, record: StreamRecord<T>) -> Option<Self::Acc> {
        match acc {
            Some(acc) => {
                acc.push(record);
                None
            }
            None => Some(vec![record]),
        }
    }
    fn merge(&self, into: &mut Self::Acc, mut other: Self::Acc) {
        into.append(&mut other);
    }
    fn emit(
        &mut self,
        key: &K,
        acc: &mut Self::Acc,
        ctx: &mut WindowContext<'_, K, W>,
        out: &mut Collector<'_, O>,
    ) -> bool {
        let ectx = EvictorContext {
            watermark: ctx.watermark,
            processing_time: ctx.clock.now(),
        };
        let before = acc.len();
        self.evictor.evict_before(acc, ctx.window, &ectx);
        let values: Vec<T> = acc.iter().map(|r| r.value.clone()).collect();
        self.function.process(key, ctx, &values, out);
        self.evictor.evict_after(acc, ctx.window, &ectx);
        acc.len() != before
    }
    fn is_empty(&self, acc: &Self::Acc) -> bool {
        acc.is_empty()
    }
    fn clear(&mut self, ctx: &mut WindowContext<'_, K, W>) {
        self.function.clear(ctx)
    }
    fn open(&mut self, ctx: &RuntimeContext<'_>) {
        self.function.open(ctx)
    }
    fn close(&mut self) {
        self.function.close()
    }
}

/// With an evictor, reduce runs over the remaining records when the window fires.
#[derive(Clone)]
pub(crate) struct ReduceElements<F, P> {
    pub reduce: F,
    pub function: P,
}

impl<K, T, O, W, F, P> ProcessWindowFunction<K, T, O, W> for ReduceElements<F, P>
where
    T: Clone,
    F: Fn(T, T) -> T + Clone + Send + Sync + 'static,
    P: ProcessWindowFunction<K, T, O, W>,
{
    fn open(&mut self, ctx: &RuntimeContext<'_>) {
        self.function.open(ctx)
    }
    fn process(
        &mut self,
        key: &K,
        ctx: &mut WindowContext<'_, K, W>,
        elements: &[T],
        out: &mut Collector<'_, O>,
    ) {
        let mut it = elements.iter().cloned();
        if let Some(first) = it.next() {
            let result = it.fold(first, |a, b| (self.reduce)(a, b));
            self.function
                .process(key, ctx, std::slice::from_ref(&result), out);
        }
    }
    fn clear(&mut self, ctx: &mut WindowContext<'_, K, W>) {
        self.function.clear(ctx)
    }
    fn close(&mut self) {
        self.function.close()
    }
}

/// With an evictor, the aggregate runs over the remaining records when the window fires.
pub(crate) struct AggregateElements<A, ACC, R, P> {
    pub aggregate: Arc<A>,
    pub function: P,
    pub _types: PhantomData<fn(ACC) -> R>,
}

impl<A, ACC, R, P: Clone> Clone for AggregateElements<A, ACC, R, P> {
    fn clone(&self) -> Self {
        AggregateElements {
            aggregate: self.aggregate.clone(),
            function: self.function.clone(),
            _types: PhantomData,
        }
    }
}

impl<K, T, R, O, W, A, ACC, P> ProcessWindowFunction<K, T, O, W> for AggregateElements<A, ACC, R, P>
where
    T: Clone + 'static,
    ACC: 'static,
    R: 'static,
    A: AggregateFunction<T, ACC, R>,
    P: ProcessWindowFunction<K, R, O, W>,
{
    fn open(&mut self, ctx: &RuntimeContext<'_>) {
        self.function.open(ctx)
    }
    fn process(
        &mut self,
        key: &K,
        ctx: &mut WindowContext<'_, K, W>,
        elements: &[T],
        out: &mut Collector<'_, O>,
    ) {
        if elements.is_empty() {
            return;
        }
        let mut acc = self.aggregate.create_accumulator();
        for e in elements {
            self.aggregate.add(&mut acc, e.clone());
        }
        let result = self.aggregate.get_result(&acc);
        self.function
            .process(key, ctx, std::slice::from_ref(&result), out);
    }
    fn clear(&mut self, ctx: &mut WindowContext<'_, K, W>) {
        self.function.clear(ctx)
    }
    fn close(&mut self) {
        self.function.close()
    }
}

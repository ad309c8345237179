//! `WindowedStream` (keyed windows) and `AllWindowedStream` (windows over a whole stream,
//! at parallelism 1), with triggers, evictors, allowed lateness and late-data output.

use crate::api::datastream::{DataStream, op_base};
use crate::api::keyed::KeyedStream;
use crate::functions::{AggregateFunction, Collector};
use crate::graph::Built;
use crate::operators::aggregate::field;
use crate::operators::keyed_process::keyed_parts;
use crate::record::{Data, Key};
use crate::runtime::output::OutputTag;
use crate::windows::assigners::{GlobalWindows, WindowAssigner};
use crate::windows::evictors::{CountEvictor, Evictor};
use crate::windows::functions::{
    AggregateElements, AggregateLogic, AllWindow, ApplyFn, EvictingLogic, ListLogic, PassThrough,
    ProcessAllWindowFunction, ProcessWindowFunction, ReduceElements, ReduceLogic, WindowLogic,
};
use crate::windows::operator::{WindowOperator, WindowSettings};
use crate::windows::triggers::{CountTrigger, PurgingTrigger, Trigger};
use std::marker::PhantomData;
use std::ops::Add;
use std::sync::Arc;
use std::time::Duration;

/// A keyed stream cut into windows (Flink's `WindowedStream`). Choose a function to
/// turn each window into results: `reduce`, `aggregate`, `process`, or both.
pub struct WindowedStream<K, T, A: WindowAssigner<T>, Tr> {
    input: KeyedStream<K, T>,
    assigner: Arc<A>,
    trigger: Tr,
    evictor: Option<Arc<dyn Evictor<T, A::W>>>,
    allowed_lateness: i64,
    late_tag: Option<OutputTag<T>>,
    all: bool,
}

impl<K: Key, T: Data> KeyedStream<K, T> {
    /// Windows of each key, as `assigner` cuts them.
    pub fn window<A: WindowAssigner<T>>(
        &self,
        assigner: A,
    ) -> WindowedStream<K, T, A, A::DefaultTrigger> {
        WindowedStream {
            input: self.clone(),
            trigger: assigner.default_trigger(),
            assigner: Arc::new(assigner),
            evictor: None,
            allowed_lateness: 0,
            late_tag: None,
            all: false,
        }
    }

    /// Windows of `size` records per key (tumbling count windows).
    pub fn count_window(
        &self,
        size: u64,
    ) -> WindowedStream<K, T, GlobalWindows, PurgingTrigger<CountTrigger>> {
        self.window(GlobalWindows)
            .trigger(PurgingTrigger::of(CountTrigger::of(size)))
    }

    /// The last `size` records of each key, every `slide` records (sliding count windows).
    pub fn count_window_slide(
        &self,
        size: u64,
        slide: u64,
    ) -> WindowedStream<K, T, GlobalWindows, CountTrigger> {
        self.window(GlobalWindows)
            .evictor(CountEvictor::of(size as usize))
            .trigger(CountTrigger::of(slide))
    }
}

impl<K: Key, T: Data, A: WindowAssigner<T>, Tr: Trigger<T, A::W>> WindowedStream<K, T, A, Tr> {
    /// Replaces the assigner's default trigger.
    pub fn trigger<Tr2: Trigger<T, A::W>>(self, trigger: Tr2) -> WindowedStream<K, T, A, Tr2> {
        WindowedStream {
            input: self.input,
            assigner: self.assigner,
            trigger,
            evictor: self.evictor,
            allowed_lateness: self.allowed_lateness,
            late_tag: self.late_tag,
            all: self.all,
        }
    }

    /// Removes records from windows before/after the function (keeps all records of a
    /// window instead of aggregating incrementally).
    pub fn evictor(mut self, evictor: impl Evictor<T, A::W>) -> Self {
        self.evictor = Some(Arc::new(evictor));
        self
    }

    /// Keeps event-time windows `lateness` past their end: late records update them and
    /// the trigger fires again. Later records are late data.
    pub fn allowed_lateness(mut self, lateness: Duration) -> Self {
        self.allowed_lateness = lateness.as_millis().min(i64::MAX as u128 / 2) as i64;
        self
    }

    /// Sends records later than the allowed lateness to the side output `tag` (read it
    /// with `side_output(&tag)` on the result) instead of dropping them.
    pub fn side_output_late_data(mut self, tag: &OutputTag<T>) -> Self {
        self.late_tag = Some(tag.clone());
        self
    }

    fn build<O: Data, L, M>(self, function: &str, make_logic: M) -> DataStream<O>
    where
        L: WindowLogic<K, T, A::W, O>,
        M: Fn() -> L + Send + Sync + 'static,
    {
        if self.assigner.is_merging() && !self.trigger.can_merge() {
            self.input.env.defer_error(format!(
                "trigger {} cannot merge windows, but {} merges them; use a trigger that supports merging",
                self.trigger.describe(),
                self.assigner.describe()
            ));
        }
        let name = format!(
            "{}({}, {}, {function})",
            if self.all { "TriggerWindow" } else { "Window" },
            self.assigner.describe(),
            self.trigger.describe()
        );
        let key = self.input.key.clone();
        let (assigner, trigger) = (self.assigner.clone(), self.trigger.clone());
        let lateness = self.allowed_lateness;
        let late_tag = self.late_tag.clone();
        if let Some(tag) = &late_tag {
            self.input.env.register_side_type::<T>(&tag.name_arc());
        }
        let stream = self
            .input
            .stream
            .one_input::<O>(&name, true, move |ctx, outputs| {
                let base = op_base::<O>(ctx, outputs)?;
                let (backend, timers) = keyed_parts::<K, A::W>(ctx)?;
                let mut op = WindowOperator::new(
                    base,
                    assigner.clone(),
                    trigger.clone(),
                    make_logic(),
                    key.clone(),
                    backend,
                    timers,
                    WindowSettings {
                        allowed_lateness: lateness,
                        late_tag: late_tag.clone(),
                    },
                );
                op.open()?;
                Ok(Built::one_input::<T>(Box::new(op), ctx.info.name.clone()))
            });
        if self.all {
            let node = stream.origins[0].node;
            stream
                .env
                .with_node(node, |n| n.fixed_parallelism = Some(1));
        }
        stream
    }

    /// Combines each window's records with `f` (incrementally), emitting one result.
    pub fn reduce<F>(self, f: F) -> DataStream<T>
    where
        F: Fn(T, T) -> T + Clone + Send + Sync + 'static,
    {
        self.reduce_with(f, PassThrough)
    }

    /// Reduces incrementally, then hands the one result to a window function (which sees
    /// the key and window).
    pub fn reduce_with<O: Data, F, P>(self, f: F, function: P) -> DataStream<O>
    where
        F: Fn(T, T) -> T + Clone + Send + Sync + 'static,
        P: ProcessWindowFunction<K, T, O, A::W>,
    {
        match self.evictor.clone() {
            Some(evictor) => self.build("ReduceFunction", move || EvictingLogic {
                function: ReduceElements {
                    reduce: f.clone(),
                    function: function.clone(),
                },
                evictor: evictor.clone(),
            }),
            None => self.build("ReduceFunction", move || ReduceLogic {
                reduce: f.clone(),
                function: function.clone(),
            }),
        }
    }

    /// Aggregates each window incrementally with an [`AggregateFunction`].
    pub fn aggregate<ACC, R, G>(self, aggregate: G) -> DataStream<R>
    where
        ACC: Data,
        R: Data,
        G: AggregateFunction<T, ACC, R>,
    {
        self.aggregate_with(aggregate, PassThrough)
    }

    /// Aggregates incrementally, then hands the result to a window function.
    pub fn aggregate_with<ACC, R, O, G, P>(self, aggregate: G, function: P) -> DataStream<O>
    where
        ACC: Data,
        R: Data,
        O: Data,
        G: AggregateFunction<T, ACC, R>,
        P: ProcessWindowFunction<K, R, O, A::W>,
    {
        let aggregate = Arc::new(aggregate);
        match self.evictor.clone() {
            Some(evictor) => self.build("AggregateFunction", move || EvictingLogic {
                function: AggregateElements {
                    aggregate: aggregate.clone(),
                    function: function.clone(),
                    _types: PhantomData::<fn(ACC) -> R>,
                },
                evictor: evictor.clone(),
            }),
            None => self.build("AggregateFunction", move || AggregateLogic {
                aggregate: aggregate.clone(),
                function: function.clone(),
                _types: PhantomData::<fn(ACC) -> R>,
            }),
        }
    }

    /// Hands all records of each window to a [`ProcessWindowFunction`].
    pub fn process<O: Data, P: ProcessWindowFunction<K, T, O, A::W>>(
        self,
        function: P,
    ) -> DataStream<O> {
        match self.evictor.clone() {
            Some(evictor) => self.build("ProcessWindowFunction", move || EvictingLogic {
                function: function.clone(),
                evictor: evictor.clone(),
            }),
            None => self.build("ProcessWindowFunction", move || ListLogic {
                function: function.clone(),
            }),
        }
    }

    /// Hands all records of each window to `f(key, window, records, out)`.
    pub fn apply<O: Data, F>(self, f: F) -> DataStream<O>
    where
        F: FnMut(&K, &A::W, &[T], &mut Collector<'_, O>) + Clone + Send + Sync + 'static,
    {
        self.process(ApplyFn(f))
    }

    /// Sum of a field per window (other fields from the window's first record).
    pub fn sum<N, F>(self, field: F) -> DataStream<T>
    where
        N: Copy + Add<Output = N> + 'static,
        F: Fn(&mut T) -> &mut N + Clone + Send + Sync + 'static,
    {
        self.reduce(field::sum(field))
    }
    /// Minimum of a field per window (other fields from the window's first record).
    pub fn min<N: Copy + PartialOrd + 'static, F>(self, field: F) -> DataStream<T>
    where
        F: Fn(&mut T) -> &mut N + Clone + Send + Sync + 'static,
    {
        self.reduce(field::min(field))
    }
    /// Maximum of a field per window (other fields from the window's first record).
    pub fn max<N: Copy + PartialOrd + 'static, F>(self, field: F) -> DataStream<T>
    where
        F: Fn(&mut T) -> &mut N + Clone + Send + Sync + 'static,
    {
        self.reduce(field::max(field))
    }
    /// The record with the smallest field per window.
    pub fn min_by<N: Copy + PartialOrd + 'static, F>(self, field: F) -> DataStream<T>
    where
        F: Fn(&mut T) -> &mut N + Clone + Send + Sync + 'static,
    {
        self.reduce(field::min_by(field))
    }
    /// The record with the largest field per window.
    pub fn max_by<N: Copy + PartialOrd + 'static, F>(self, field: F) -> DataStream<T>
    where
        F: Fn(&mut T) -> &mut N + Clone + Send + Sync + 'static,
    {
        self.reduce(field::max_by(field))
    }
}

/// A whole (non-keyed) stream cut into windows, evaluated at parallelism 1 (Flink's
/// `AllWindowedStream`).
pub struct AllWindowedStream<T, A: WindowAssigner<T>, Tr> {
    inner: WindowedStream<(), T, A, Tr>,
}

impl<T: Data> DataStream<T> {
    /// Windows over the whole stream (one task sees every record).
    pub fn window_all<A: WindowAssigner<T>>(
        &self,
        assigner: A,
    ) -> AllWindowedStream<T, A, A::DefaultTrigger> {
        let mut inner = self.key_by(|_: &T| ()).window(assigner);
        inner.all = true;
        AllWindowedStream { inner }
    }

    /// Windows of `size` records over the whole stream.
    pub fn count_window_all(
        &self,
        size: u64,
    ) -> AllWindowedStream<T, GlobalWindows, PurgingTrigger<CountTrigger>> {
        self.window_all(GlobalWindows)
            .trigger(PurgingTrigger::of(CountTrigger::of(size)))
    }

    /// The last `size` records of the stream, every `slide` records.
    pub fn count_window_all_slide(
        &self,
        size: u64,
        slide: u64,
    ) -> AllWindowedStream<T, GlobalWindows, CountTrigger> {
        self.window_all(GlobalWindows)
            .evictor(CountEvictor::of(size as usize))
            .trigger(CountTrigger::of(slide))
    }
}

impl<T: Data, A: WindowAssigner<T>, Tr: Trigger<T, A::W>> AllWindowedStream<T, A, Tr> {
    pub fn trigger<Tr2: Trigger<T, A::W>>(self, trigger: Tr2) -> AllWindowedStream<T, A, Tr2> {
        AllWindowedStream {
            inner: self.inner.trigger(trigger),
        }
    }
    pub fn evictor(self, evictor: impl Evictor<T, A::W>) -> Self {
        AllWindowedStream {
            inner: self.inner.evictor(evictor),
        }
    }
    pub fn allowed_lateness(self, lateness: Duration) -> Self {
        AllWindowedStream {
            inner: self.inner.allowed_lateness(lateness),
        }
    }
    pub fn side_output_late_data(self, tag: &OutputTag<T>) -> Self {
        AllWindowedStream {
            inner: self.inner.side_output_late_data(tag),
        }
    }
    pub fn reduce<F>(self, f: F) -> DataStream<T>
    where
        F: Fn(T, T) -> T + Clone + Send + Sync + 'static,
    {
        self.inner.reduce(f)
    }
    pub fn aggregate<ACC: Data, R: Data, G: AggregateFunction<T, ACC, R>>(
        self,
        aggregate: G,
    ) -> DataStream<R> {
        self.inner.aggregate(aggregate)
    }
    /// Aggregates incrementally, then hands the result to a window function.
    pub fn aggregate_with<ACC: Data, R: Data, O: Data, G, P>(
        self,
        aggregate: G,
        function: P,
    ) -> DataStream<O>
    where
        G: AggregateFunction<T, ACC, R>,
        P: ProcessAllWindowFunction<R, O, A::W>,
    {
        self.inner.aggregate_with(aggregate, AllWindow(function))
    }
    /// Reduces incrementally, then hands the result to a window function.
    pub fn reduce_with<O: Data, F, P>(self, f: F, function: P) -> DataStream<O>
    where
        F: Fn(T, T) -> T + Clone + Send + Sync + 'static,
        P: ProcessAllWindowFunction<T, O, A::W>,
    {
        self.inner.reduce_with(f, AllWindow(function))
    }
    pub fn process<O: Data, P: ProcessAllWindowFunction<T, O, A::W>>(
        self,
        function: P,
    ) -> DataStream<O> {
        self.inner.process(AllWindow(function))
    }
    /// Hands all records of each window to `f(window, records, out)`.
    pub fn apply<O: Data, F>(self, mut f: F) -> DataStream<O>
    where
        F: FnMut(&A::W, &[T], &mut Collector<'_, O>) + Clone + Send + Sync + 'static,
    {
        self.inner
            .apply(move |_: &(), w: &A::W, e: &[T], o: &mut Collector<'_, O>| f(w, e, o))
    }
    pub fn sum<N: Copy + Add<Output = N> + 'static, F>(self, field: F) -> DataStream<T>
    where
        F: Fn(&mut T) -> &mut N + Clone + Send + Sync + 'static,
    {
        self.inner.sum(field)
    }
    pub fn min<N: Copy + PartialOrd + 'static, F>(self, field: F) -> DataStream<T>
    where
        F: Fn(&mut T) -> &mut N + Clone + Send + Sync + 'static,
    {
        self.inner.min(field)
    }
    pub fn max<N: Copy + PartialOrd + 'static, F>(self, field: F) -> DataStream<T>
    where
        F: Fn(&mut T) -> &mut N + Clone + Send + Sync + 'static,
    {
        self.inner.max(field)
    }
    pub fn min_by<N: Copy + PartialOrd + 'static, F>(self, field: F) -> DataStream<T>
    where
        F: Fn(&mut T) -> &mut N + Clone + Send + Sync + 'static,
    {
        self.inner.min_by(field)
    }
    pub fn max_by<N: Copy + PartialOrd + 'static, F>(self, field: F) -> DataStream<T>
    where
        F: Fn(&mut T) -> &mut N + Clone + Send + Sync + 'static,
    {
        self.inner.max_by(field)
    }
}

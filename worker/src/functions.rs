//! The user-function traits, after Flink's: rich map/filter/flat-map functions with
//! `open`/`close`, process functions (plain, keyed, co-, keyed co-, broadcast, keyed
//! broadcast) with their contexts, and `AggregateFunction`.
//!
//! One instance of a function runs per parallel subtask: the function value given to the
//! API is cloned for each. Keyed state is declared with descriptors and fetched from the
//! context (`ctx.value_state(&DESCRIPTOR)`), so function structs stay plain data.

use crate::record::{Batch, Data, Key, NO_TIMESTAMP, StreamRecord, TimeDomain};
use crate::runtime::context::{Clock, RuntimeContext};
use crate::runtime::output::{OutputTag, SideOutputs};
use crate::state::backend::KeyedBackend;
use crate::state::broadcast::{BroadcastState, BroadcastStates, ReadOnlyBroadcastState};
use crate::state::descriptors::MapStateDescriptor;
use crate::state::handles::keyed_state_accessors;
use crate::state::heap::KeyContext;
use crate::state::operator::OperatorStateStore;
use crate::state::timers::Timers;

/// Where a function emits its results. Records get the timestamp of the input record
/// (or of the firing timer), as in Flink.
pub struct Collector<'a, O> {
    pub(crate) buf: &'a mut Batch<O>,
    pub(crate) timestamp: i64,
}

impl<'a, O> Collector<'a, O> {
    pub(crate) fn new(buf: &'a mut Batch<O>, timestamp: i64) -> Self {
        Collector { buf, timestamp }
    }

    /// Emits a record.
    #[inline]
    pub fn collect(&mut self, value: O) {
        self.buf.push(StreamRecord::new(value, self.timestamp));
    }

    /// Emits a record with its own event timestamp.
    #[inline]
    pub fn collect_with_timestamp(&mut self, value: O, timestamp: i64) {
        self.buf.push(StreamRecord::new(value, timestamp));
    }

    /// Emits a record without a timestamp.
    #[inline]
    pub fn collect_untimed(&mut self, value: O) {
        self.buf.push(StreamRecord::new(value, NO_TIMESTAMP));
    }
}

/// A map with setup and teardown (Flink's `RichMapFunction`).
pub trait RichMapFunction<I, O>: Clone + Send + Sync + 'static {
    fn open(&mut self, _ctx: &RuntimeContext<'_>) {}
    fn map(&mut self, value: I) -> O;
    fn close(&mut self) {}
}

/// A filter with setup and teardown.
pub trait RichFilterFunction<T>: Clone + Send + Sync + 'static {
    fn open(&mut self, _ctx: &RuntimeContext<'_>) {}
    fn filter(&mut self, value: &T) -> bool;
    fn close(&mut self) {}
}

/// A flat-map with setup and teardown.
pub trait RichFlatMapFunction<I, O>: Clone + Send + Sync + 'static {
    fn open(&mut self, _ctx: &RuntimeContext<'_>) {}
    fn flat_map(&mut self, value: I, out: &mut Collector<'_, O>);
    fn close(&mut self) {}
}

/// Incremental aggregation: an accumulator per key or window (Flink's `AggregateFunction`).
pub trait AggregateFunction<IN, ACC, OUT>: Send + Sync + 'static {
    fn create_accumulator(&self) -> ACC;
    fn add(&self, accumulator: &mut ACC, value: IN);
    fn get_result(&self, accumulator: &ACC) -> OUT;
    /// Combines two accumulators (merging session windows).
    fn merge(&self, accumulator: &mut ACC, other: ACC);
}

/// An [`AggregateFunction`] from four closures.
#[derive(Clone)]
pub struct AggregateFn<C, A, R, M> {
    pub create: C,
    pub add: A,
    pub result: R,
    pub merge: M,
}

impl<IN, ACC, OUT, C, A, R, M> AggregateFunction<IN, ACC, OUT> for AggregateFn<C, A, R, M>
where
    C: Fn() -> ACC + Send + Sync + 'static,
    A: Fn(&mut ACC, IN) + Send + Sync + 'static,
    R: Fn(&ACC) -> OUT + Send + Sync + 'static,
    M: Fn(&mut ACC, ACC) + Send + Sync + 'static,
{
    fn create_accumulator(&self) -> ACC {
        (self.create)()
    }
    fn add(&self, accumulator: &mut ACC, value: IN) {
        (self.add)(accumulator, value)
    }
    fn get_result(&self, accumulator: &ACC) -> OUT {
        (self.result)(accumulator)
    }
    fn merge(&self, accumulator: &mut ACC, other: ACC) {
        (self.merge)(accumulator, other)
    }
}

/// Context of a non-keyed function: the record's timestamp, time, side outputs.
pub struct Context<'a> {
    pub(crate) timestamp: i64,
    pub(crate) watermark: i64,
    pub(crate) clock: &'a Clock,
    pub(crate) sides: &'a mut SideOutputs,
    pub(crate) operator_state: &'a OperatorStateStore,
    pub(crate) broadcast: Option<&'a mut BroadcastStates>,
}

impl Context<'_> {
    /// The event timestamp of the current record, if it has one.
    pub fn timestamp(&self) -> Option<i64> {
        (self.timestamp != NO_TIMESTAMP).then_some(self.timestamp)
    }
    pub fn current_watermark(&self) -> i64 {
        self.watermark
    }
    pub fn current_processing_time(&self) -> i64 {
        self.clock.now()
    }
    /// Emits `value` to the side output `tag`.
    pub fn output<X: Data>(&mut self, tag: &OutputTag<X>, value: X) {
        self.sides.emit(tag, value, self.timestamp);
    }
    /// Operator (non-keyed) state of this instance.
    pub fn operator_state(&self) -> &OperatorStateStore {
        self.operator_state
    }
    /// Broadcast state, read-only (data side of a broadcast process function).
    pub fn broadcast_state<K: crate::record::Data + Ord, V: crate::record::Data>(
        &mut self,
        d: &MapStateDescriptor<K, V>,
    ) -> ReadOnlyBroadcastState<'_, K, V> {
        match self.broadcast.as_deref_mut() {
            Some(b) => b.read_only(d),
            None => panic!(
                "broadcast state '{}' is only available in a broadcast process function",
                d.name()
            ),
        }
    }
}

/// Registers and deletes timers for the current key.
pub struct TimerService<'a, K> {
    pub(crate) key: &'a KeyContext<K>,
    pub(crate) timers: &'a mut Timers<K, ()>,
    pub(crate) watermark: i64,
    pub(crate) clock: &'a Clock,
}

impl<K: Key> TimerService<'_, K> {
    pub fn current_processing_time(&self) -> i64 {
        self.clock.now()
    }
    pub fn current_watermark(&self) -> i64 {
        self.watermark
    }
    /// Calls `on_timer` when the watermark reaches `time`.
    pub fn register_event_time_timer(&mut self, time: i64) {
        if let Some(k) = self.key.key().as_ref() {
            self.timers.event.register(self.key.hash(), k, &(), time);
        }
    }
    /// Calls `on_timer` when processing time reaches `time`.
    pub fn register_processing_time_timer(&mut self, time: i64) {
        if let Some(k) = self.key.key().as_ref() {
            self.timers
                .register_processing(self.key.hash(), k, &(), time);
        }
    }
    pub fn delete_event_time_timer(&mut self, time: i64) {
        if let Some(k) = self.key.key().as_ref() {
            self.timers.event.delete(self.key.hash(), k, &(), time);
        }
    }
    pub fn delete_processing_time_timer(&mut self, time: i64) {
        if let Some(k) = self.key.key().as_ref() {
            self.timers.processing.delete(self.key.hash(), k, &(), time);
        }
    }
}

/// Context of a keyed function: the current key, its state and timers.
pub struct KeyedContext<'a, K> {
    pub(crate) timestamp: i64,
    pub(crate) watermark: i64,
    pub(crate) clock: &'a Clock,
    pub(crate) sides: &'a mut SideOutputs,
    pub(crate) backend: &'a KeyedBackend<K>,
    pub(crate) timers: &'a mut Timers<K, ()>,
    pub(crate) time_domain: Option<TimeDomain>,
    pub(crate) broadcast: Option<&'a mut BroadcastStates>,
}

impl<K: Key> KeyedContext<'_, K> {
    /// The event timestamp of the current record (or of the firing event-time timer).
    pub fn timestamp(&self) -> Option<i64> {
        (self.timestamp != NO_TIMESTAMP).then_some(self.timestamp)
    }
    /// The key being processed.
    pub fn current_key(&self) -> K {
        match self.backend.key.current() {
            Some(k) => k,
            None => panic!("no current key"),
        }
    }
    /// In `on_timer`: which kind of timer fired.
    pub fn time_domain(&self) -> Option<TimeDomain> {
        self.time_domain
    }
    pub fn current_watermark(&self) -> i64 {
        self.watermark
    }
    pub fn current_processing_time(&self) -> i64 {
        self.clock.now()
    }
    /// Timers of the current key.
    pub fn timer_service(&mut self) -> TimerService<'_, K> {
        TimerService {
            key: &self.backend.key,
            timers: self.timers,
            watermark: self.watermark,
            clock: self.clock,
        }
    }
    /// Emits `value` to the side output `tag`.
    pub fn output<X: Data>(&mut self, tag: &OutputTag<X>, value: X) {
        self.sides.emit(tag, value, self.timestamp);
    }
    /// Broadcast state, read-only (data side of a keyed broadcast process function).
    pub fn broadcast_state<BK: crate::record::Data + Ord, BV: crate::record::Data>(
        &mut self,
        d: &MapStateDescriptor<BK, BV>,
    ) -> ReadOnlyBroadcastState<'_, BK, BV> {
        match self.broadcast.as_deref_mut() {
            Some(b) => b.read_only(d),
            None => panic!(
                "broadcast state '{}' is only available in a broadcast process function",
                d.name()
            ),
        }
    }
}
keyed_state_accessors!(KeyedContext);

/// Context of the broadcast side of a (non-keyed) broadcast process function.
pub struct BroadcastContext<'a> {
    pub(crate) timestamp: i64,
    pub(crate) watermark: i64,
    pub(crate) clock: &'a Clock,
    pub(crate) sides: &'a mut SideOutputs,
    pub(crate) broadcast: &'a mut BroadcastStates,
}

impl BroadcastContext<'_> {
    pub fn timestamp(&self) -> Option<i64> {
        (self.timestamp != NO_TIMESTAMP).then_some(self.timestamp)
    }
    pub fn current_watermark(&self) -> i64 {
        self.watermark
    }
    pub fn current_processing_time(&self) -> i64 {
        self.clock.now()
    }
    pub fn output<X: Data>(&mut self, tag: &OutputTag<X>, value: X) {
        self.sides.emit(tag, value, self.timestamp);
    }
    /// Broadcast state, writable.
    pub fn broadcast_state<K: crate::record::Data + Ord, V: crate::record::Data>(
        &mut self,
        d: &MapStateDescriptor<K, V>,
    ) -> BroadcastState<'_, K, V> {
        self.broadcast.writable(d)
    }
}

/// Context of the broadcast side of a keyed broadcast process function: writable broadcast
/// state, and keyed state of every key through [`apply_to_keyed_state`](Self::apply_to_keyed_state).
pub struct KeyedBroadcastContext<'a, K> {
    pub(crate) timestamp: i64,
    pub(crate) watermark: i64,
    pub(crate) clock: &'a Clock,
    pub(crate) sides: &'a mut SideOutputs,
    pub(crate) broadcast: &'a mut BroadcastStates,
    pub(crate) backend: &'a KeyedBackend<K>,
}

impl<K: Key> KeyedBroadcastContext<'_, K> {
    pub fn timestamp(&self) -> Option<i64> {
        (self.timestamp != NO_TIMESTAMP).then_some(self.timestamp)
    }
    pub fn current_watermark(&self) -> i64 {
        self.watermark
    }
    pub fn current_processing_time(&self) -> i64 {
        self.clock.now()
    }
    pub fn output<X: Data>(&mut self, tag: &OutputTag<X>, value: X) {
        self.sides.emit(tag, value, self.timestamp);
    }
    /// Broadcast state, writable.
    pub fn broadcast_state<BK: crate::record::Data + Ord, BV: crate::record::Data>(
        &mut self,
        d: &MapStateDescriptor<BK, BV>,
    ) -> BroadcastState<'_, BK, BV> {
        self.broadcast.writable(d)
    }
    /// Calls `f(key, state)` for every key that has the state named by `descriptor_name`
    /// on this instance; the handles in `state` are bound to that key.
    pub fn apply_to_keyed_state(
        &mut self,
        descriptor_name: &str,
        mut f: impl FnMut(&K, &KeyedStateView<'_, K>),
    ) {
        let keys = self.backend.keys_of(descriptor_name);
        for key in keys {
            if self.backend.set_current_key(key.clone()).is_ok() {
                f(
                    &key,
                    &KeyedStateView {
                        backend: self.backend,
                    },
                );
            }
        }
    }
}

/// Keyed state of one key, inside [`KeyedBroadcastContext::apply_to_keyed_state`].
pub struct KeyedStateView<'a, K> {
    pub(crate) backend: &'a KeyedBackend<K>,
}
keyed_state_accessors!(KeyedStateView);

/// A function of one record that may emit any number of results, to side outputs too
/// (Flink's `ProcessFunction`).
pub trait ProcessFunction<I, O>: Clone + Send + Sync + 'static {
    fn open(&mut self, _ctx: &RuntimeContext<'_>) {}
    fn process_element(&mut self, value: I, ctx: &mut Context<'_>, out: &mut Collector<'_, O>);
    fn close(&mut self) {}
}

/// A process function on a keyed stream, with keyed state and timers.
pub trait KeyedProcessFunction<K, I, O>: Clone + Send + Sync + 'static {
    fn open(&mut self, _ctx: &RuntimeContext<'_>) {}
    fn process_element(
        &mut self,
        value: I,
        ctx: &mut KeyedContext<'_, K>,
        out: &mut Collector<'_, O>,
    );
    /// A timer of the current key fired; `ctx.time_domain()` says which kind.
    fn on_timer(
        &mut self,
        _timestamp: i64,
        _ctx: &mut KeyedContext<'_, K>,
        _out: &mut Collector<'_, O>,
    ) {
    }
    fn close(&mut self) {}
}

/// A function of two connected streams.
pub trait CoProcessFunction<I1, I2, O>: Clone + Send + Sync + 'static {
    fn open(&mut self, _ctx: &RuntimeContext<'_>) {}
    fn process_element1(&mut self, value: I1, ctx: &mut Context<'_>, out: &mut Collector<'_, O>);
    fn process_element2(&mut self, value: I2, ctx: &mut Context<'_>, out: &mut Collector<'_, O>);
    fn close(&mut self) {}
}

/// A function of two connected streams keyed the same way, with keyed state and timers.
pub trait KeyedCoProcessFunction<K, I1, I2, O>: Clone + Send + Sync + 'static {
    fn open(&mut self, _ctx: &RuntimeContext<'_>) {}
    fn process_element1(
        &mut self,
        value: I1,
        ctx: &mut KeyedContext<'_, K>,
        out: &mut Collector<'_, O>,
    );
    fn process_element2(
        &mut self,
        value: I2,
        ctx: &mut KeyedContext<'_, K>,
        out: &mut Collector<'_, O>,
    );
    fn on_timer(
        &mut self,
        _timestamp: i64,
        _ctx: &mut KeyedContext<'_, K>,
        _out: &mut Collector<'_, O>,
    ) {
    }
    fn close(&mut self) {}
}

/// A function of a stream and a broadcast stream (Flink's `BroadcastProcessFunction`).
pub trait BroadcastProcessFunction<I, B, O>: Clone + Send + Sync + 'static {
    fn open(&mut self, _ctx: &RuntimeContext<'_>) {}
    /// A data record; broadcast state is read-only here.
    fn process_element(&mut self, value: I, ctx: &mut Context<'_>, out: &mut Collector<'_, O>);
    /// A broadcast record; broadcast state is writable here.
    fn process_broadcast_element(
        &mut self,
        value: B,
        ctx: &mut BroadcastContext<'_>,
        out: &mut Collector<'_, O>,
    );
    fn close(&mut self) {}
}

/// A function of a keyed stream and a broadcast stream (Flink's
/// `KeyedBroadcastProcessFunction`).
pub trait KeyedBroadcastProcessFunction<K, I, B, O>: Clone + Send + Sync + 'static {
    fn open(&mut self, _ctx: &RuntimeContext<'_>) {}
    /// A data record of the current key; broadcast state is read-only here.
    fn process_element(
        &mut self,
        value: I,
        ctx: &mut KeyedContext<'_, K>,
        out: &mut Collector<'_, O>,
    );
    /// A broadcast record; broadcast state is writable, keyed state reachable for all keys.
    fn process_broadcast_element(
        &mut self,
        value: B,
        ctx: &mut KeyedBroadcastContext<'_, K>,
        out: &mut Collector<'_, O>,
    );
    fn on_timer(
        &mut self,
        _timestamp: i64,
        _ctx: &mut KeyedContext<'_, K>,
        _out: &mut Collector<'_, O>,
    ) {
    }
    fn close(&mut self) {}
}

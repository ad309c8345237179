//! The interval join (Flink's `IntervalJoinOperator`): joins records of two keyed streams
//! whose timestamps satisfy `left.ts + lower <= right.ts <= left.ts + upper`.
//!
//! Each side buffers its records per key by timestamp; a new record is joined with the
//! other side's buffered records in range, then buffered until the watermark guarantees no
//! future partner can arrive, when an event-time timer removes it. Records behind the
//! watermark are late and dropped (counted), as in Flink.

use crate::error::{Position, TaskResult};
use crate::functions::Collector;
use crate::operators::keyed_process::{KeySelector, set_key};
use crate::operators::{OpBase, forward_control};
use crate::record::{Batch, Data, Key, NO_TIMESTAMP, StreamRecord, TimeDomain};
use crate::runtime::context::guard;
use crate::runtime::output::{OutputTag, SideOutputs};
use crate::runtime::task::TwoInputOperator;
use crate::state::backend::KeyedBackend;
use crate::state::heap::NsTable;
use crate::state::timers::Timers;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::Ordering;

/// What a join function knows about the pair it joins.
pub struct JoinContext<'a> {
    pub(crate) left_timestamp: i64,
    pub(crate) right_timestamp: i64,
    pub(crate) sides: &'a mut SideOutputs,
}

impl JoinContext<'_> {
    pub fn left_timestamp(&self) -> i64 {
        self.left_timestamp
    }
    pub fn right_timestamp(&self) -> i64 {
        self.right_timestamp
    }
    /// The result's timestamp: the larger of the two.
    pub fn timestamp(&self) -> i64 {
        self.left_timestamp.max(self.right_timestamp)
    }
    pub fn output<X: Data>(&mut self, tag: &OutputTag<X>, value: X) {
        let ts = self.timestamp();
        self.sides.emit(tag, value, ts);
    }
}

/// Joins one pair of records (Flink's `ProcessJoinFunction`).
pub trait ProcessJoinFunction<A, B, O>: Clone + Send + Sync + 'static {
    fn process_element(
        &mut self,
        left: &A,
        right: &B,
        ctx: &mut JoinContext<'_>,
        out: &mut Collector<'_, O>,
    );
}

/// A closure `(left, right) -> result` as a join function.
#[derive(Clone)]
pub(crate) struct JoinFn<F>(pub F);

impl<A, B, O, F: FnMut(&A, &B) -> O + Clone + Send + Sync + 'static> ProcessJoinFunction<A, B, O>
    for JoinFn<F>
{
    fn process_element(
        &mut self,
        left: &A,
        right: &B,
        _: &mut JoinContext<'_>,
        out: &mut Collector<'_, O>,
    ) {
        out.collect((self.0)(left, right));
    }
}

type Buffer<T> = BTreeMap<i64, Vec<T>>;

const LEFT: u8 = 0;
const RIGHT: u8 = 1;

pub(crate) struct IntervalJoinOp<K, A, B, O, F> {
    pub base: OpBase<O>,
    pub f: F,
    pub key_a: KeySelector<A, K>,
    pub key_b: KeySelector<B, K>,
    pub backend: KeyedBackend<K>,
    pub timers: Timers<K, u8>,
    pub lower: i64,
    pub upper: i64,
    left: Rc<dyn NsTable<(), Buffer<A>>>,
    right: Rc<dyn NsTable<(), Buffer<B>>>,
}

impl<K: Key, A: Data, B: Data, O: Data, F: ProcessJoinFunction<A, B, O>>
    IntervalJoinOp<K, A, B, O, F>
{
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        base: OpBase<O>,
        f: F,
        key_a: KeySelector<A, K>,
        key_b: KeySelector<B, K>,
        backend: KeyedBackend<K>,
        timers: Timers<K, u8>,
        lower: i64,
        upper: i64,
    ) -> Self {
        let left = backend.table::<(), Buffer<A>>(&Cow::Borrowed("left-buffer"), None);
        let right = backend.table::<(), Buffer<B>>(&Cow::Borrowed("right-buffer"), None);
        IntervalJoinOp {
            base,
            f,
            key_a,
            key_b,
            backend,
            timers,
            lower,
            upper,
            left,
            right,
        }
    }

    fn late(&self, ts: i64) -> bool {
        ts < self.base.watermark
    }

    fn missing_timestamp(&self) -> crate::error::TaskError {
        self.base.info.error(
            "an interval join got a record without a timestamp; give both streams timestamps with a \
             WatermarkStrategy (env.from_source(..) or assign_timestamps_and_watermarks(..))",
        )
    }

    fn register_cleanup(&mut self, side: u8, ts: i64, relative_upper: i64) {
        let cleanup = if relative_upper > 0 {
            ts.saturating_add(relative_upper)
        } else {
            ts
        };
        if let Some(k) = self.backend.key.key().as_ref() {
            self.timers
                .event
                .register(self.backend.key.hash(), k, &side, cleanup);
        }
    }

    /// Checks a record's timestamp; `Ok(None)` when it is late (dropped, counted).
    fn timestamp_of<X>(&self, r: &StreamRecord<X>) -> TaskResult<Option<i64>> {
        if r.timestamp == NO_TIMESTAMP {
            return Err(self.missing_timestamp());
        }
        if self.late(r.timestamp) {
            self.base
                .info
                .metrics
                .late_records
                .fetch_add(1, Ordering::Relaxed);
            return Ok(None);
        }
        Ok(Some(r.timestamp))
    }

    fn on_left(&mut self, r: StreamRecord<A>) -> TaskResult {
        set_key(&self.backend, &self.base.info, (self.key_a)(&r.value))?;
        let Some(ts) = self.timestamp_of(&r)? else {
            return Ok(());
        };
        let range = ts.saturating_add(self.lower)..=ts.saturating_add(self.upper);
        let f = &mut self.f;
        join_with(
            &mut self.base,
            ts,
            &*self.right,
            range,
            |right, rts, ctx, out| {
                ctx.left_timestamp = ts;
                ctx.right_timestamp = rts;
                f.process_element(&r.value, right, ctx, out)
            },
        );
        let mut value = Some(r.value);
        self.left
            .modify(&(), &mut |buf| insert(buf, ts, &mut value));
        self.register_cleanup(LEFT, ts, self.upper);
        Ok(())
    }

    fn on_right(&mut self, r: StreamRecord<B>) -> TaskResult {
        set_key(&self.backend, &self.base.info, (self.key_b)(&r.value))?;
        let Some(ts) = self.timestamp_of(&r)? else {
            return Ok(());
        };
        // left.ts in [ts - upper, ts - lower]
        let range = ts.saturating_sub(self.upper)..=ts.saturating_sub(self.lower);
        let f = &mut self.f;
        join_with(
            &mut self.base,
            ts,
            &*self.left,
            range,
            |left, lts, ctx, out| {
                ctx.left_timestamp = lts;
                ctx.right_timestamp = ts;
                f.process_element(left, &r.value, ctx, out)
            },
        );
        let mut value = Some(r.value);
        self.right
            .modify(&(), &mut |buf| insert(buf, ts, &mut value));
        self.register_cleanup(RIGHT, ts, -self.lower);
        Ok(())
    }

    /// Buffer cleanup is in event time only.
    fn fire(&mut self, domain: TimeDomain, time: i64) -> TaskResult {
        if domain == TimeDomain::EventTime {
            while let Some((t, key, side)) = self.timers.event.pop_due(time) {
                self.on_timer(t, key, side)?;
            }
        }
        Ok(())
    }

    fn on_timer(&mut self, time: i64, key: K, side: u8) -> TaskResult {
        set_key(&self.backend, &self.base.info, key)?;
        if side == LEFT {
            let bucket = if self.upper <= 0 {
                time
            } else {
                time - self.upper
            };
            remove_bucket(&*self.left, bucket);
        } else {
            let bucket = if self.lower <= 0 {
                time + self.lower
            } else {
                time
            };
            remove_bucket(&*self.right, bucket);
        }
        Ok(())
    }
}

/// Calls `join(other, other_ts, ctx, out)` for every buffered record of the other side
/// with a timestamp in `range`; results carry the later of the two timestamps.
fn join_with<O, Y>(
    base: &mut OpBase<O>,
    own_ts: i64,
    other: &dyn NsTable<(), Buffer<Y>>,
    range: std::ops::RangeInclusive<i64>,
    mut join: impl FnMut(&Y, i64, &mut JoinContext<'_>, &mut Collector<'_, O>),
) {
    other.with_ref(&(), &mut |buf| {
        let Some(buf) = buf else { return };
        for (&other_ts, items) in buf.range(range.clone()) {
            for item in items {
                let mut ctx = JoinContext {
                    left_timestamp: 0,
                    right_timestamp: 0,
                    sides: &mut base.out.sides,
                };
                let mut out = Collector::new(&mut base.out.buf, own_ts.max(other_ts));
                join(item, other_ts, &mut ctx, &mut out);
            }
        }
    });
}

fn insert<T>(buf: Option<&mut Buffer<T>>, ts: i64, value: &mut Option<T>) -> Option<Buffer<T>> {
    match buf {
        Some(buf) => {
            buf.entry(ts).or_default().extend(value.take());
            None
        }
        None => value.take().map(|v| BTreeMap::from([(ts, vec![v])])),
    }
}

fn remove_bucket<T: Clone>(table: &dyn NsTable<(), Buffer<T>>, bucket: i64) {
    let mut now_empty = false;
    table.modify(&(), &mut |buf| {
        if let Some(buf) = buf {
            buf.remove(&bucket);
            now_empty = buf.is_empty();
        }
        None
    });
    if now_empty {
        table.remove(&());
    }
}

impl<K: Key, A: Data, B: Data, O: Data, F: ProcessJoinFunction<A, B, O>> TwoInputOperator<A, B>
    for IntervalJoinOp<K, A, B, O, F>
{
    fn process_batch1(&mut self, batch: &mut Batch<A>) -> TaskResult {
        self.base.info.metrics.add_in(0, batch.len());
        let info = self.base.info.clone();
        guard!(
            info,
            Position::InputRecord {
                input: 1,
                record: self.base.seen[0]
            },
            {
                for r in batch.drain(..) {
                    self.base.seen[0] += 1;
                    self.on_left(r)?;
                }
                Ok(())
            }
        )?;
        self.base.out.flush()
    }
    fn process_batch2(&mut self, batch: &mut Batch<B>) -> TaskResult {
        self.base.info.metrics.add_in(1, batch.len());
        let info = self.base.info.clone();
        guard!(
            info,
            Position::InputRecord {
                input: 2,
                record: self.base.seen[1]
            },
            {
                for r in batch.drain(..) {
                    self.base.seen[1] += 1;
                    self.on_right(r)?;
                }
                Ok(())
            }
        )?;
        self.base.out.flush()
    }
    forward_control!(end: finish, timers: yes, close: none);
}

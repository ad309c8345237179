//! Rolling aggregation on a keyed stream: reduce, sum, min, max, min_by, max_by.
//!
//! In streaming mode every input emits the key's updated aggregate; in batch mode only
//! the final aggregate of each key is emitted, at the end of input (Flink's semantics).

use crate::error::{Position, TaskResult};
use crate::operators::OpBase;
use crate::operators::keyed_process::{KeySelector, set_key};
use crate::record::{Batch, Data, Key, NO_TIMESTAMP, StreamRecord};
use crate::runtime::consumer::Consumer;
use crate::runtime::context::guard;
use crate::state::backend::KeyedBackend;
use crate::state::heap::NsTable;
use std::borrow::Cow;
use std::rc::Rc;

const STATE_NAME: Cow<'static, str> = Cow::Borrowed("rolling-aggregate");

pub(crate) struct RollingOp<K, T, F> {
    pub base: OpBase<T>,
    pub reduce: F,
    pub key_selector: KeySelector<T, K>,
    pub backend: KeyedBackend<K>,
    pub table: Rc<dyn NsTable<(), T>>,
    pub final_only: bool,
}

impl<K: Key, T: Data, F> RollingOp<K, T, F> {
    pub(crate) fn new(
        base: OpBase<T>,
        reduce: F,
        key_selector: KeySelector<T, K>,
        backend: KeyedBackend<K>,
        final_only: bool,
    ) -> Self {
        let table = backend.table::<(), T>(&STATE_NAME, None);
        RollingOp {
            base,
            reduce,
            key_selector,
            backend,
            table,
            final_only,
        }
    }
}

impl<K: Key, T: Data, F: FnMut(T, T) -> T> Consumer<T> for RollingOp<K, T, F> {
    fn process_batch(&mut self, batch: &mut Batch<T>) -> TaskResult {
        self.base.info.metrics.add_in(0, batch.len());
        let b = &mut self.base;
        let reduce = &mut self.reduce;
        let backend = &self.backend;
        let table = &self.table;
        let selector = &self.key_selector;
        let final_only = self.final_only;
        guard!(b.info, Position::Record(b.seen[0]), {
            for r in batch.drain(..) {
                b.seen[0] += 1;
                set_key(backend, &b.info, selector(&r.value))?;
                let mut value = Some(r.value);
                let mut emitted = None;
                table.modify(&(), &mut |acc| match acc {
                    Some(acc) => {
                        if let Some(v) = value.take() {
                            let next = reduce(acc.clone(), v);
                            if !final_only {
                                emitted = Some(next.clone());
                            }
                            *acc = next;
                        }
                        None
                    }
                    None => {
                        if !final_only {
                            emitted = value.clone();
                        }
                        value.take()
                    }
                });
                if let Some(e) = emitted {
                    b.out.buf.push(StreamRecord::new(e, r.timestamp));
                }
            }
            Ok(())
        })?;
        self.base.out.flush()
    }

    fn process_watermark(&mut self, watermark: i64) -> TaskResult {
        self.base.watermark = watermark;
        self.base.out.emit_watermark(watermark)
    }
    fn process_status(&mut self, status: crate::record::WatermarkStatus) -> TaskResult {
        self.base.out.emit_status(status)
    }
    fn on_processing_time(&mut self, now: i64) -> TaskResult {
        self.base.out.on_processing_time(now)
    }
    fn process_barrier(
        &mut self,
        barrier: crate::runtime::barrier::Barrier,
        snapshots: &mut Vec<crate::runtime::barrier::OperatorSnapshot>,
    ) -> TaskResult {
        let snapshot = crate::runtime::barrier::snapshot_keyed::<K, ()>(
            &self.base.info,
            barrier.id,
            &self.backend,
            None,
        )
        .map_err(|e| self.base.info.error(e))?;
        snapshots.push(snapshot);
        self.base.out.emit_barrier(barrier, snapshots)
    }
    fn end_input(&mut self) -> TaskResult {
        if self.final_only {
            for key in self.backend.keys_of(&STATE_NAME) {
                set_key(&self.backend, &self.base.info, key)?;
                if let Some(v) = self.table.get(&()) {
                    self.base.out.buf.push(StreamRecord::new(v, NO_TIMESTAMP));
                }
            }
        }
        self.base.out.end_input()
    }
    fn flush(&mut self) -> TaskResult {
        self.base.out.flush_downstream()
    }
    fn notify_checkpoint_complete(&mut self, checkpoint: u64) -> TaskResult {
        self.base.out.notify_checkpoint_complete(checkpoint)
    }
    fn close(&mut self) {
        self.base.out.close();
    }
}

/// Reduce functions behind sum/min/max/min_by/max_by on a field.
pub(crate) mod field {
    use std::ops::Add;

    pub(crate) fn sum<T, N, F>(field: F) -> impl Fn(T, T) -> T + Clone + Send + Sync + 'static
    where
        N: Copy + Add<Output = N>,
        F: Fn(&mut T) -> &mut N + Clone + Send + Sync + 'static,
    {
        move |mut acc, mut v| {
            let add = *field(&mut v);
            let slot = field(&mut acc);
            *slot = *slot + add;
            acc
        }
    }

    pub(crate) fn min<T, N, F>(field: F) -> impl Fn(T, T) -> T + Clone + Send + Sync + 'static
    where
        N: Copy + PartialOrd,
        F: Fn(&mut T) -> &mut N + Clone + Send + Sync + 'static,
    {
        move |mut acc, mut v| {
            let candidate = *field(&mut v);
            let slot = field(&mut acc);
            if candidate < *slot {
                *slot = candidate;
            }
            acc
        }
    }

    pub(crate) fn max<T, N, F>(field: F) -> impl Fn(T, T) -> T + Clone + Send + Sync + 'static
    where
        N: Copy + PartialOrd,
        F: Fn(&mut T) -> &mut N + Clone + Send + Sync + 'static,
    {
        move |mut acc, mut v| {
            let candidate = *field(&mut v);
            let slot = field(&mut acc);
            if candidate > *slot {
                *slot = candidate;
            }
            acc
        }
    }

    /// The whole record with the smallest field; on ties the earlier one.
    pub(crate) fn min_by<T, N, F>(field: F) -> impl Fn(T, T) -> T + Clone + Send + Sync + 'static
    where
        N: Copy + PartialOrd,
        F: Fn(&mut T) -> &mut N + Clone + Send + Sync + 'static,
    {
        move |mut acc, mut v| {
            if *field(&mut v) < *field(&mut acc) {
                v
            } else {
                acc
            }
        }
    }

    /// The whole record with the largest field; on ties the earlier one.
    pub(crate) fn max_by<T, N, F>(field: F) -> impl Fn(T, T) -> T + Clone + Send + Sync + 'static
    where
        N: Copy + PartialOrd,
        F: Fn(&mut T) -> &mut N + Clone + Send + Sync + 'static,
    {
        move |mut acc, mut v| {
            if *field(&mut v) > *field(&mut acc) {
                v
            } else {
                acc
            }
        }
    }
}

//! An operator's outputs: the main stream and any side outputs selected by typed tags.
//!
//! Operators append records to `Output::buf` and call `flush` once per input batch, so a
//! chained successor receives whole batches. Side outputs buffer the same way; a record
//! sent to a tag nobody reads is counted and dropped, as in Flink.

use crate::error::TaskResult;
use crate::record::{Batch, Data, StreamRecord, WatermarkStatus};
use crate::runtime::barrier::{Barrier, OperatorSnapshot};
use crate::runtime::consumer::Consumer;
use crate::runtime::metrics::OperatorMetrics;
use std::any::Any;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Names a side output and the type of its records (Flink's `OutputTag`).
///
/// Tags are compared by name: two tags with the same name must have the same type.
pub struct OutputTag<T> {
    name: Arc<str>,
    _type: PhantomData<fn() -> T>,
}

impl<T> OutputTag<T> {
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        OutputTag {
            name: name.into(),
            _type: PhantomData,
        }
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    pub(crate) fn name_arc(&self) -> Arc<str> {
        self.name.clone()
    }
}

impl<T> Clone for OutputTag<T> {
    fn clone(&self) -> Self {
        OutputTag {
            name: self.name.clone(),
            _type: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for OutputTag<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OutputTag({})", self.name)
    }
}

/// One side output of one operator, with its consumers.
pub(crate) trait ErasedSideOutput {
    fn name(&self) -> &str;
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn flush(&mut self) -> TaskResult;
    fn process_watermark(&mut self, watermark: i64) -> TaskResult;
    fn process_status(&mut self, status: WatermarkStatus) -> TaskResult;
    fn on_processing_time(&mut self, now: i64) -> TaskResult;
    fn end_input(&mut self) -> TaskResult;
    fn flush_downstream(&mut self) -> TaskResult;
    fn process_barrier(
        &mut self,
        barrier: Barrier,
        snapshots: &mut Vec<OperatorSnapshot>,
    ) -> TaskResult;
    fn notify_checkpoint_complete(&mut self, checkpoint: u64) -> TaskResult;
    fn close(&mut self);
}

pub(crate) struct SideOutput<X> {
    name: Arc<str>,
    pub(crate) buf: Batch<X>,
    consumer: Box<dyn Consumer<X>>,
}

impl<X: Data> SideOutput<X> {
    pub(crate) fn new(name: Arc<str>, consumer: Box<dyn Consumer<X>>) -> Self {
        SideOutput {
            name,
            buf: Vec::new(),
            consumer,
        }
    }
}

impl<X: Data> ErasedSideOutput for SideOutput<X> {
    fn name(&self) -> &str {
        &self.name
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn flush(&mut self) -> TaskResult {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.consumer.process_batch(&mut self.buf)
    }
    fn process_watermark(&mut self, watermark: i64) -> TaskResult {
        self.flush()?;
        self.consumer.process_watermark(watermark)
    }
    fn process_status(&mut self, status: WatermarkStatus) -> TaskResult {
        self.consumer.process_status(status)
    }
    fn on_processing_time(&mut self, now: i64) -> TaskResult {
        self.flush()?;
        self.consumer.on_processing_time(now)
    }
    fn end_input(&mut self) -> TaskResult {
        self.flush()?;
        self.consumer.end_input()
    }
    fn flush_downstream(&mut self) -> TaskResult {
        self.flush()?;
        self.consumer.flush()
    }
    fn process_barrier(
        &mut self,
        barrier: Barrier,
        snapshots: &mut Vec<OperatorSnapshot>,
    ) -> TaskResult {
        self.flush()?;
        self.consumer.process_barrier(barrier, snapshots)
    }
    fn notify_checkpoint_complete(&mut self, checkpoint: u64) -> TaskResult {
        self.consumer.notify_checkpoint_complete(checkpoint)
    }
    fn close(&mut self) {
        self.consumer.close();
    }
}

/// The side outputs of one operator.
#[derive(Default)]
pub(crate) struct SideOutputs {
    outputs: Vec<Box<dyn ErasedSideOutput>>,
    metrics: Option<Arc<OperatorMetrics>>,
}

impl SideOutputs {
    pub(crate) fn new(
        outputs: Vec<Box<dyn ErasedSideOutput>>,
        metrics: Arc<OperatorMetrics>,
    ) -> Self {
        SideOutputs {
            outputs,
            metrics: Some(metrics),
        }
    }

    /// Emits `value` to the side output `tag`.
    pub(crate) fn emit<X: Data>(&mut self, tag: &OutputTag<X>, value: X, timestamp: i64) {
        if let Some(m) = &self.metrics {
            m.side_records_out.fetch_add(1, Ordering::Relaxed);
        }
        for out in &mut self.outputs {
            if out.name() == tag.name() {
                if let Some(side) = out.as_any_mut().downcast_mut::<SideOutput<X>>() {
                    side.buf.push(StreamRecord::new(value, timestamp));
                }
                // A type mismatch is rejected when the graph is built; nothing to do here.
                return;
            }
        }
        // Nobody reads this tag: dropped, as in Flink.
    }

    fn each(&mut self, mut f: impl FnMut(&mut dyn ErasedSideOutput) -> TaskResult) -> TaskResult {
        for out in &mut self.outputs {
            f(out.as_mut())?;
        }
        Ok(())
    }

    pub(crate) fn flush(&mut self) -> TaskResult {
        self.each(|o| o.flush())
    }
    pub(crate) fn process_watermark(&mut self, watermark: i64) -> TaskResult {
        self.each(|o| o.process_watermark(watermark))
    }
    pub(crate) fn process_status(&mut self, status: WatermarkStatus) -> TaskResult {
        self.each(|o| o.process_status(status))
    }
    pub(crate) fn on_processing_time(&mut self, now: i64) -> TaskResult {
        self.each(|o| o.on_processing_time(now))
    }
    pub(crate) fn end_input(&mut self) -> TaskResult {
        self.each(|o| o.end_input())
    }
    pub(crate) fn flush_downstream(&mut self) -> TaskResult {
        self.each(|o| o.flush_downstream())
    }
    pub(crate) fn process_barrier(
        &mut self,
        barrier: Barrier,
        snapshots: &mut Vec<OperatorSnapshot>,
    ) -> TaskResult {
        self.each(|o| o.process_barrier(barrier.clone(), snapshots))
    }
    pub(crate) fn notify_checkpoint_complete(&mut self, checkpoint: u64) -> TaskResult {
        self.each(|o| o.notify_checkpoint_complete(checkpoint))
    }
    pub(crate) fn close(&mut self) {
        for out in &mut self.outputs {
            out.close();
        }
    }
}

/// The outputs of an operator: a buffer for the main output, its consumer, side outputs.
pub(crate) struct Output<O> {
    pub(crate) buf: Batch<O>,
    pub(crate) sides: SideOutputs,
    main: Box<dyn Consumer<O>>,
    metrics: Arc<OperatorMetrics>,
}

impl<O> Output<O> {
    pub(crate) fn new(
        main: Box<dyn Consumer<O>>,
        sides: SideOutputs,
        metrics: Arc<OperatorMetrics>,
    ) -> Self {
        Output {
            buf: Vec::new(),
            sides,
            main,
            metrics,
        }
    }

    #[inline]
    pub(crate) fn push(&mut self, value: O, timestamp: i64) {
        self.buf.push(StreamRecord::new(value, timestamp));
    }

    /// Sends what was emitted since the last flush downstream.
    pub(crate) fn flush(&mut self) -> TaskResult {
        if !self.buf.is_empty() {
            self.metrics.add_out(self.buf.len());
            self.main.process_batch(&mut self.buf)?;
        }
        self.sides.flush()
    }

    /// Forwards an already-built batch (operators that transform in place).
    pub(crate) fn forward(&mut self, batch: &mut Batch<O>) -> TaskResult {
        self.flush()?;
        if !batch.is_empty() {
            self.metrics.add_out(batch.len());
            self.main.process_batch(batch)?;
        }
        Ok(())
    }

    pub(crate) fn emit_watermark(&mut self, watermark: i64) -> TaskResult {
        self.flush()?;
        self.main.process_watermark(watermark)?;
        self.sides.process_watermark(watermark)
    }

    /// Passes a checkpoint barrier on, after every buffered record.
    pub(crate) fn emit_barrier(
        &mut self,
        barrier: Barrier,
        snapshots: &mut Vec<OperatorSnapshot>,
    ) -> TaskResult {
        self.flush()?;
        self.main.process_barrier(barrier.clone(), snapshots)?;
        self.sides.process_barrier(barrier, snapshots)
    }

    /// Tells every operator downstream in the chain that `checkpoint` is complete.
    pub(crate) fn notify_checkpoint_complete(&mut self, checkpoint: u64) -> TaskResult {
        self.main.notify_checkpoint_complete(checkpoint)?;
        self.sides.notify_checkpoint_complete(checkpoint)
    }

    pub(crate) fn emit_status(&mut self, status: WatermarkStatus) -> TaskResult {
        self.flush()?;
        self.main.process_status(status)?;
        self.sides.process_status(status)
    }

    pub(crate) fn on_processing_time(&mut self, now: i64) -> TaskResult {
        self.flush()?;
        self.main.on_processing_time(now)?;
        self.sides.on_processing_time(now)
    }

    pub(crate) fn end_input(&mut self) -> TaskResult {
        self.flush()?;
        self.main.end_input()?;
        self.sides.end_input()
    }

    pub(crate) fn flush_downstream(&mut self) -> TaskResult {
        self.flush()?;
        self.main.flush()?;
        self.sides.flush_downstream()
    }

    pub(crate) fn close(&mut self) {
        self.main.close();
        self.sides.close();
    }
}

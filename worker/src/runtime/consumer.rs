//! The receiving end of a stream inside a task.
//!
//! Everything that takes records inside a task is a [`Consumer`]: a chained operator, a
//! fan-out to several of them, or the writer that sends batches to other tasks. Chained
//! operators are therefore plain (virtual, per batch) function calls.

use crate::error::TaskResult;
use crate::record::{Batch, WatermarkStatus};
use crate::runtime::barrier::{Barrier, OperatorSnapshot};

/// Receives the elements of one stream, in order.
pub(crate) trait Consumer<T> {
    /// Takes every record out of `batch`, leaving it empty (its capacity is reused).
    fn process_batch(&mut self, batch: &mut Batch<T>) -> TaskResult;
    /// Event time has advanced to `watermark`; forwarded after timers up to it fired.
    fn process_watermark(&mut self, watermark: i64) -> TaskResult;
    fn process_status(&mut self, status: WatermarkStatus) -> TaskResult;
    /// Processing time is `now`: fire due processing-time timers, then forward.
    fn on_processing_time(&mut self, now: i64) -> TaskResult;
    /// The input has ended: emit what is pending, then forward.
    fn end_input(&mut self) -> TaskResult;
    /// Push buffered records to other tasks (the task's input ran dry).
    fn flush(&mut self) -> TaskResult;
    /// A checkpoint barrier: add this operator's snapshot (if it has state) to
    /// `snapshots`, then pass the barrier on after every record before it.
    fn process_barrier(
        &mut self,
        barrier: Barrier,
        snapshots: &mut Vec<OperatorSnapshot>,
    ) -> TaskResult;
    /// Checkpoint `checkpoint` is complete: what was pre-committed at its barrier (and
    /// before) may be committed. Every operator of the chain hears of it.
    fn notify_checkpoint_complete(&mut self, checkpoint: u64) -> TaskResult;
    /// Release resources. Called once, after `end_input` or on failure/cancellation.
    fn close(&mut self);
}

/// Hands every element to several consumers (one stream read by several operators).
pub(crate) struct FanOut<T> {
    targets: Vec<Box<dyn Consumer<T>>>,
    scratch: Batch<T>,
}

impl<T: Clone> FanOut<T> {
    pub(crate) fn new(targets: Vec<Box<dyn Consumer<T>>>) -> Self {
        FanOut {
            targets,
            scratch: Vec::new(),
        }
    }
}

impl<T: Clone> Consumer<T> for FanOut<T> {
    fn process_batch(&mut self, batch: &mut Batch<T>) -> TaskResult {
        let last = self.targets.len().saturating_sub(1);
        for (i, target) in self.targets.iter_mut().enumerate() {
            if i == last {
                target.process_batch(batch)?;
            } else {
                self.scratch.extend_from_slice(batch);
                target.process_batch(&mut self.scratch)?;
                self.scratch.clear();
            }
        }
        batch.clear();
        Ok(())
    }
    fn process_watermark(&mut self, watermark: i64) -> TaskResult {
        self.targets
            .iter_mut()
            .try_for_each(|t| t.process_watermark(watermark))
    }
    fn process_status(&mut self, status: WatermarkStatus) -> TaskResult {
        self.targets
            .iter_mut()
            .try_for_each(|t| t.process_status(status))
    }
    fn on_processing_time(&mut self, now: i64) -> TaskResult {
        self.targets
            .iter_mut()
            .try_for_each(|t| t.on_processing_time(now))
    }
    fn end_input(&mut self) -> TaskResult {
        self.targets.iter_mut().try_for_each(|t| t.end_input())
    }
    fn flush(&mut self) -> TaskResult {
        self.targets.iter_mut().try_for_each(|t| t.flush())
    }
    fn process_barrier(
        &mut self,
        barrier: Barrier,
        snapshots: &mut Vec<OperatorSnapshot>,
    ) -> TaskResult {
        self.targets
            .iter_mut()
            .try_for_each(|t| t.process_barrier(barrier.clone(), snapshots))
    }
    fn notify_checkpoint_complete(&mut self, checkpoint: u64) -> TaskResult {
        self.targets
            .iter_mut()
            .try_for_each(|t| t.notify_checkpoint_complete(checkpoint))
    }
    fn close(&mut self) {
        self.targets.iter_mut().for_each(|t| t.close());
    }
}

/// Drops everything: the output of an operator nobody reads.
pub(crate) struct Discard;

impl<T> Consumer<T> for Discard {
    fn process_batch(&mut self, batch: &mut Batch<T>) -> TaskResult {
        batch.clear();
        Ok(())
    }
    fn process_watermark(&mut self, _: i64) -> TaskResult {
        Ok(())
    }
    fn process_status(&mut self, _: WatermarkStatus) -> TaskResult {
        Ok(())
    }
    fn on_processing_time(&mut self, _: i64) -> TaskResult {
        Ok(())
    }
    fn end_input(&mut self) -> TaskResult {
        Ok(())
    }
    fn flush(&mut self) -> TaskResult {
        Ok(())
    }
    fn process_barrier(&mut self, _: Barrier, _: &mut Vec<OperatorSnapshot>) -> TaskResult {
        Ok(())
    }
    fn notify_checkpoint_complete(&mut self, _: u64) -> TaskResult {
        Ok(())
    }
    fn close(&mut self) {}
}

/// One consumer, a fan-out, or a discard, from a list of consumers.
pub(crate) fn combine<T: Clone + 'static>(
    mut targets: Vec<Box<dyn Consumer<T>>>,
) -> Box<dyn Consumer<T>> {
    match targets.len() {
        0 => Box::new(Discard),
        1 => targets.pop().unwrap_or_else(|| Box::new(Discard)),
        _ => Box::new(FanOut::new(targets)),
    }
}

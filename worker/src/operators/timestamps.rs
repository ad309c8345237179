//! `assign_timestamps_and_watermarks` in the middle of a pipeline: replaces the stream's
//! timestamps and watermarks by those of a strategy (upstream watermarks are dropped,
//! except the final one that ends event time, as in Flink).

use crate::error::{Position, TaskResult};
use crate::operators::OpBase;
use crate::record::{Batch, Data, MAX_WATERMARK, WatermarkStatus};
use crate::runtime::consumer::Consumer;
use crate::runtime::context::guard;
use crate::time::emitter::{WatermarkAction, WatermarkEmitter};

pub(crate) struct TimestampsOp<T: Data> {
    pub base: OpBase<T>,
    pub emitter: WatermarkEmitter<T>,
    pub interval_ms: i64,
}

impl<T: Data> TimestampsOp<T> {
    fn apply(&mut self, action: WatermarkAction) -> TaskResult {
        match action {
            WatermarkAction::Watermark(w) => {
                self.base.watermark = w;
                self.base.out.emit_watermark(w)
            }
            WatermarkAction::Status(s) => self.base.out.emit_status(s),
        }
    }

    fn periodic(&mut self, now: i64) -> TaskResult {
        for a in self.emitter.on_periodic(now) {
            self.apply(a)?;
        }
        // Keep asking while quiet, so idleness is detected without input.
        self.base
            .services
            .wakeup
            .request(now.saturating_add(self.interval_ms));
        Ok(())
    }
}

impl<T: Data> Consumer<T> for TimestampsOp<T> {
    fn process_batch(&mut self, batch: &mut Batch<T>) -> TaskResult {
        self.base.info.metrics.add_in(0, batch.len());
        let mut pending = Vec::new();
        let info = self.base.info.clone();
        let start = self.base.seen[0];
        let mut i = 0u64;
        let clock = self.base.services.clock.clone();
        for r in batch.drain(..) {
            i += 1;
            if let Some(a) = self.emitter.take_reactivation() {
                self.base.out.flush()?;
                self.apply(a)?;
            }
            let emitter = &mut self.emitter;
            let (ts, punct) = guard!(info, Position::Record(start + i), {
                let ts = emitter.timestamp_of(&r.value, r.timestamp, || clock.now());
                let punct = emitter.on_event(&r.value, ts);
                Ok((ts, punct))
            })?;
            self.base.out.push(r.value, ts);
            if let Some(a) = punct {
                pending.push(a);
                self.base.out.flush()?;
                for a in pending.drain(..) {
                    self.apply(a)?;
                }
            }
        }
        self.base.seen[0] = start + i;
        self.base.out.flush()?;
        let now = clock.now();
        self.periodic(now)
    }

    fn process_watermark(&mut self, watermark: i64) -> TaskResult {
        if watermark == MAX_WATERMARK && self.base.watermark != MAX_WATERMARK {
            self.base.watermark = MAX_WATERMARK;
            return self.base.out.emit_watermark(MAX_WATERMARK);
        }
        Ok(())
    }
    fn process_status(&mut self, _status: WatermarkStatus) -> TaskResult {
        Ok(())
    }
    fn on_processing_time(&mut self, now: i64) -> TaskResult {
        self.periodic(now)?;
        self.base.out.on_processing_time(now)
    }
    fn end_input(&mut self) -> TaskResult {
        self.base.out.end_input()
    }
    fn flush(&mut self) -> TaskResult {
        self.base.out.flush_downstream()
    }
    fn process_barrier(
        &mut self,
        barrier: crate::runtime::barrier::Barrier,
        snapshots: &mut Vec<crate::runtime::barrier::OperatorSnapshot>,
    ) -> TaskResult {
        self.base.out.emit_barrier(barrier, snapshots)
    }
    fn notify_checkpoint_complete(&mut self, checkpoint: u64) -> TaskResult {
        self.base.out.notify_checkpoint_complete(checkpoint)
    }
    fn close(&mut self) {
        self.base.out.close();
    }
}

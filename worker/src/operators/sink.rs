//! The sink operator: hands records to a user [`SinkWriter`](crate::sink::SinkWriter).

use crate::error::{Position, TaskResult};
use crate::operators::OpBase;
use crate::record::{Batch, Data, WatermarkStatus};
use crate::runtime::barrier::{Barrier, OperatorSnapshot};
use crate::runtime::consumer::Consumer;
use crate::runtime::context::guard;
use crate::sink::SinkWriter;

pub(crate) struct SinkOp<T> {
    /// Sinks have no output; the base keeps identity, counters and services.
    pub base: OpBase<T>,
    pub writer: Box<dyn SinkWriter<T>>,
}

impl<T: Data> Consumer<T> for SinkOp<T> {
    fn process_batch(&mut self, batch: &mut Batch<T>) -> TaskResult {
        self.base.info.metrics.add_in(0, batch.len());
        let b = &mut self.base;
        let w = &mut self.writer;
        let seen = &mut b.seen[0];
        let info = &b.info;
        guard!(info, Position::Record(*seen), {
            w.write_batch(batch, seen)
                .map_err(|e| info.error(format!("sink failed writing input record #{seen}: {e}")))
        })
    }
    fn process_watermark(&mut self, watermark: i64) -> TaskResult {
        self.base.watermark = watermark;
        Ok(())
    }
    fn process_status(&mut self, _: WatermarkStatus) -> TaskResult {
        Ok(())
    }
    fn on_processing_time(&mut self, _: i64) -> TaskResult {
        Ok(())
    }
    fn end_input(&mut self) -> TaskResult {
        let b = &mut self.base;
        let w = &mut self.writer;
        guard!(b.info, Position::Lifecycle("finishing the sink"), {
            w.finish()
                .map_err(|e| b.info.error(format!("sink failed to finish: {e}")))
        })
    }
    fn flush(&mut self) -> TaskResult {
        let b = &mut self.base;
        let w = &mut self.writer;
        guard!(b.info, Position::Lifecycle("flushing the sink"), {
            w.flush()
                .map_err(|e| b.info.error(format!("sink failed to flush: {e}")))
        })
    }
    /// What the sink wrote before the barrier is flushed (at-least-once); sinks have no
    /// one to pass the barrier to.
    fn process_barrier(&mut self, _: Barrier, _: &mut Vec<OperatorSnapshot>) -> TaskResult {
        self.flush()
    }
    fn close(&mut self) {
        let w = &mut self.writer;
        self.base.close_with(|| w.close());
    }
}

//! The sink operator: hands records to a user [`SinkWriter`](crate::sink::SinkWriter).
//! A writer's checkpoint state is operator list state of the sink ([`WRITER_STATE`]), one
//! element per writer, so a rescale hands each old writer's state to one new writer.

use crate::error::{Position, TaskResult};
use crate::operators::OpBase;
use crate::record::{Batch, Data, WatermarkStatus};
use crate::runtime::barrier::{Barrier, OperatorSnapshot};
use crate::runtime::consumer::Consumer;
use crate::runtime::context::guard;
use crate::sink::SinkWriter;
use crate::state::operator::{ListSnapshot, Redistribution};

/// The operator state list that holds each writer's state.
pub(crate) const WRITER_STATE: &str = "sink-writer-state";

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
    /// The writer snapshots (by default it flushes: at-least-once); sinks have no one to
    /// pass the barrier to.
    fn process_barrier(
        &mut self,
        barrier: Barrier,
        snapshots: &mut Vec<OperatorSnapshot>,
    ) -> TaskResult {
        let b = &mut self.base;
        let w = &mut self.writer;
        let state = guard!(b.info, Position::Lifecycle("snapshotting the sink"), {
            w.snapshot_state(barrier.id).map_err(|e| {
                b.info.error(format!(
                    "sink failed to snapshot for checkpoint {}: {e}",
                    barrier.id
                ))
            })
        })?;
        if let Some(state) = state {
            snapshots.push(OperatorSnapshot {
                uid: b.info.uid.clone(),
                subtask: b.info.subtask,
                parallelism: b.info.parallelism,
                lists: vec![ListSnapshot {
                    name: WRITER_STATE.into(),
                    mode: Redistribution::EvenSplit,
                    elements: vec![state],
                }],
                ..OperatorSnapshot::default()
            });
        }
        Ok(())
    }
    fn notify_checkpoint_complete(&mut self, checkpoint: u64) -> TaskResult {
        let b = &mut self.base;
        let w = &mut self.writer;
        guard!(b.info, Position::Lifecycle("committing the sink"), {
            w.notify_checkpoint_complete(checkpoint).map_err(|e| {
                b.info.error(format!(
                    "sink failed to commit the output of checkpoint {checkpoint}: {e}"
                ))
            })
        })
    }
    fn close(&mut self) {
        let w = &mut self.writer;
        self.base.close_with(|| w.close());
    }
}

//! The sink API: how records leave a job.
//!
//! A [`Sink`] creates one [`SinkWriter`] per parallel instance. Writers are told to
//! `flush` whenever their task's input runs dry, and to `finish` at the end of input.
//! At a checkpoint barrier a writer snapshots its state (by default it flushes: output is
//! at least once); once the checkpoint completes it hears of it, which is when a
//! [`two_phase`] sink commits what it wrote before the barrier (exactly once).

pub mod two_phase;

pub use two_phase::{TransactionalWriter, TwoPhaseCommit, TwoPhaseCommitSink};

use crate::record::Data;
use crate::source::BoxError;

/// Where one parallel writer runs.
#[derive(Clone, Debug, Default)]
pub struct SinkContext {
    pub operator_name: String,
    pub subtask_index: usize,
    pub parallelism: usize,
    /// The id of the checkpoint or savepoint the job starts from, if any…
    pub restored_checkpoint: Option<u64>,
    /// …and where it is.
    pub restored_from: Option<String>,
    /// The states (from [`SinkWriter::snapshot_state`]) of the writers of that checkpoint
    /// this writer takes over: its own at the same parallelism; after a rescale, those of
    /// old writers `i` with `i % parallelism == subtask_index`.
    pub restored_states: Vec<Vec<u8>>,
}

/// Describes a sink; creates one writer per parallel instance.
pub trait Sink<T: Data>: Send + Sync + 'static {
    /// `Some(n)` when the sink supports exactly `n` writers.
    fn fixed_parallelism(&self) -> Option<usize> {
        None
    }
    fn create_writer(&self, ctx: &SinkContext) -> Result<Box<dyn SinkWriter<T>>, BoxError>;
}

/// Writes the records of one parallel instance.
pub trait SinkWriter<T> {
    fn write(&mut self, value: T, timestamp: Option<i64>) -> Result<(), BoxError>;
    /// Writes a batch (records taken out of it), counting each record in `written` before
    /// writing it (so a failure can name the record). Override to avoid a call per record.
    fn write_batch(
        &mut self,
        batch: &mut crate::record::Batch<T>,
        written: &mut u64,
    ) -> Result<(), BoxError> {
        for r in batch.drain(..) {
            *written += 1;
            let ts = r.timestamp();
            self.write(r.value, ts)?;
        }
        Ok(())
    }
    /// Push buffered output out (the input went quiet).
    fn flush(&mut self) -> Result<(), BoxError> {
        Ok(())
    }
    /// The input ended: write what is pending.
    fn finish(&mut self) -> Result<(), BoxError> {
        self.flush()
    }
    /// A checkpoint barrier: what was written before it must be in the checkpoint's
    /// keeping. The writer's state for the checkpoint (e.g. the transactions it
    /// pre-committed), or `None` if it keeps none; by default it flushes.
    fn snapshot_state(&mut self, checkpoint: u64) -> Result<Option<Vec<u8>>, BoxError> {
        let _ = checkpoint;
        self.flush()?;
        Ok(None)
    }
    /// Checkpoint `checkpoint` has completed (also every one before it).
    fn notify_checkpoint_complete(&mut self, checkpoint: u64) -> Result<(), BoxError> {
        let _ = checkpoint;
        Ok(())
    }
    /// Release resources; called once, also on failure.
    fn close(&mut self) {}
}

/// A closure as a sink (Flink's `SinkFunction`): called once per record.
#[derive(Clone)]
pub struct FnSink<F>(pub F);

impl<T: Data, F: FnMut(T) + Clone + Send + Sync + 'static> Sink<T> for FnSink<F> {
    fn create_writer(&self, _: &SinkContext) -> Result<Box<dyn SinkWriter<T>>, BoxError> {
        Ok(Box::new(FnWriter(self.0.clone())))
    }
}

struct FnWriter<F>(F);

impl<T, F: FnMut(T)> SinkWriter<T> for FnWriter<F> {
    fn write(&mut self, value: T, _: Option<i64>) -> Result<(), BoxError> {
        (self.0)(value);
        Ok(())
    }
    fn write_batch(
        &mut self,
        batch: &mut crate::record::Batch<T>,
        written: &mut u64,
    ) -> Result<(), BoxError> {
        for r in batch.drain(..) {
            *written += 1;
            (self.0)(r.value);
        }
        Ok(())
    }
}

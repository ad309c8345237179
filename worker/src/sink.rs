//! The sink API: how records leave a job.
//!
//! A [`Sink`] creates one [`SinkWriter`] per parallel instance. Writers are told to
//! `flush` whenever their task's input runs dry, and to `finish` at the end of input.

use crate::record::Data;
use crate::source::BoxError;

/// Where one parallel writer runs.
#[derive(Clone, Debug)]
pub struct SinkContext {
    pub operator_name: String,
    pub subtask_index: usize,
    pub parallelism: usize,
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

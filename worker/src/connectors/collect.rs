//! Collects a stream's records in memory, for tests and for embedding Strom in a program
//! (Flink's `executeAndCollect`). Readable while the job runs.

use crate::record::Data;
use crate::sink::{Sink, SinkContext, SinkWriter};
use crate::source::BoxError;
use std::sync::{Arc, Mutex, MutexGuard};

/// Records with their event timestamps.
type Records<T> = Vec<(T, Option<i64>)>;

/// The records a collect sink received, with their event timestamps.
pub struct CollectHandle<T> {
    records: Arc<Mutex<Records<T>>>,
}

impl<T> Clone for CollectHandle<T> {
    fn clone(&self) -> Self {
        CollectHandle {
            records: self.records.clone(),
        }
    }
}

impl<T: Clone> CollectHandle<T> {
    pub(crate) fn new() -> Self {
        CollectHandle {
            records: Arc::new(Mutex::new(Vec::new())),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<(T, Option<i64>)>> {
        // A writer that panicked mid-push leaves a usable vector.
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of the values received so far, in arrival order.
    pub fn values(&self) -> Vec<T> {
        self.lock().iter().map(|(v, _)| v.clone()).collect()
    }

    /// A copy of the values and their timestamps.
    pub fn records(&self) -> Vec<(T, Option<i64>)> {
        self.lock().clone()
    }

    /// Values sorted (for comparing results that parallel subtasks emit in any order).
    pub fn sorted(&self) -> Vec<T>
    where
        T: Ord,
    {
        let mut v = self.values();
        v.sort();
        v
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

pub(crate) struct CollectSink<T> {
    pub(crate) handle: CollectHandle<T>,
}

impl<T: Data> Sink<T> for CollectSink<T> {
    fn create_writer(&self, _: &SinkContext) -> Result<Box<dyn SinkWriter<T>>, BoxError> {
        Ok(Box::new(CollectWriter {
            handle: self.handle.clone(),
            buf: Vec::new(),
        }))
    }
}

struct CollectWriter<T> {
    handle: CollectHandle<T>,
    buf: Vec<(T, Option<i64>)>,
}

impl<T: Clone> SinkWriter<T> for CollectWriter<T> {
    fn write(&mut self, value: T, timestamp: Option<i64>) -> Result<(), BoxError> {
        self.buf.push((value, timestamp));
        if self.buf.len() >= 1024 {
            self.flush()?;
        }
        Ok(())
    }
    fn flush(&mut self) -> Result<(), BoxError> {
        if !self.buf.is_empty() {
            self.handle.lock().append(&mut self.buf);
        }
        Ok(())
    }
}

//! A source of a fixed collection of records (Flink's `fromCollection`), non-parallel.

use crate::record::{Data, NO_TIMESTAMP};
use crate::source::{BoxError, Source, SourceContext, SourceOutput, SourcePoll, SourceReader};
use std::sync::Arc;

/// Emits the given records in order, optionally with timestamps; then ends.
pub struct CollectionSource<T> {
    items: Arc<Vec<(i64, T)>>,
}

impl<T: Data + Sync> CollectionSource<T> {
    pub fn new(items: Vec<T>) -> Self {
        CollectionSource {
            items: Arc::new(items.into_iter().map(|v| (NO_TIMESTAMP, v)).collect()),
        }
    }

    /// Records with event timestamps (milliseconds). With simulated processing time the
    /// source's clock follows them too.
    pub fn timed(items: Vec<(i64, T)>) -> Self {
        CollectionSource {
            items: Arc::new(items),
        }
    }
}

impl<T: Data + Sync> Source<T> for CollectionSource<T> {
    fn fixed_parallelism(&self) -> Option<usize> {
        Some(1)
    }
    fn is_bounded(&self) -> bool {
        true
    }
    fn create_reader(&self, _: &SourceContext) -> Result<Box<dyn SourceReader<T>>, BoxError> {
        Ok(Box::new(CollectionReader {
            items: self.items.clone(),
            next: 0,
        }))
    }
}

struct CollectionReader<T> {
    items: Arc<Vec<(i64, T)>>,
    next: usize,
}

impl<T: Data> SourceReader<T> for CollectionReader<T> {
    fn poll(&mut self, out: &mut SourceOutput<'_, T>) -> Result<SourcePoll, BoxError> {
        while self.next < self.items.len() && !out.is_full() {
            let (ts, v) = &self.items[self.next];
            self.next += 1;
            out.collect_with_timestamp(v.clone(), *ts);
        }
        Ok(if self.next < self.items.len() {
            SourcePoll::More
        } else {
            SourcePoll::Finished
        })
    }
}

//! A source fed by the program that runs the job, through a channel: for embedding Strom
//! in an application, and for tests that control the order of inputs precisely.

use crate::record::Data;
use crate::source::{BoxError, Source, SourceContext, SourceOutput, SourcePoll, SourceReader};
use crossbeam_channel::{Receiver, Sender, TryRecvError, unbounded};
use std::sync::Mutex;
use std::time::Duration;

/// What the feeding side sends.
#[derive(Clone, Debug)]
pub enum Feed<T> {
    /// A record (its timestamp comes from the watermark strategy, if any).
    Record(T),
    /// A record with an event timestamp.
    Timed(T, i64),
    /// A watermark decided by the feeder.
    Watermark(i64),
    /// Simulated processing time moves to this instant.
    ProcessingTime(i64),
}

/// A non-parallel source that emits what is sent into its [`Sender`], and ends when every
/// sender is dropped.
pub struct ChannelSource<T> {
    rx: Mutex<Option<Receiver<Feed<T>>>>,
}

impl<T: Data> ChannelSource<T> {
    /// The source and the sender that feeds it.
    pub fn new() -> (Sender<Feed<T>>, ChannelSource<T>) {
        let (tx, rx) = unbounded();
        (
            tx,
            ChannelSource {
                rx: Mutex::new(Some(rx)),
            },
        )
    }
}

impl<T: Data> Source<T> for ChannelSource<T> {
    fn fixed_parallelism(&self) -> Option<usize> {
        Some(1)
    }
    fn is_bounded(&self) -> bool {
        false
    }
    fn create_reader(&self, _: &SourceContext) -> Result<Box<dyn SourceReader<T>>, BoxError> {
        let rx = self
            .rx
            .lock()
            .map_err(|_| "the channel source's lock is poisoned")?
            .take()
            .ok_or("a channel source can be read by one job only")?;
        Ok(Box::new(ChannelReader { rx }))
    }
}

struct ChannelReader<T> {
    rx: Receiver<Feed<T>>,
}

impl<T: Data> SourceReader<T> for ChannelReader<T> {
    fn poll(&mut self, out: &mut SourceOutput<'_, T>) -> Result<SourcePoll, BoxError> {
        while !out.is_full() {
            match self.rx.try_recv() {
                Ok(Feed::Record(v)) => out.collect(v),
                Ok(Feed::Timed(v, ts)) => out.collect_with_timestamp(v, ts),
                Ok(Feed::Watermark(w)) => out.emit_watermark(w),
                Ok(Feed::ProcessingTime(t)) => out.advance_processing_time(t),
                Err(TryRecvError::Empty) => return Ok(SourcePoll::Wait(Duration::from_millis(5))),
                Err(TryRecvError::Disconnected) => return Ok(SourcePoll::Finished),
            }
        }
        Ok(SourcePoll::More)
    }
}

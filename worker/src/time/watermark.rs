//! Timestamp assigners and watermark strategies (Flink's `WatermarkStrategy`).
//!
//! A strategy says where a record's event time comes from and how far event time has
//! progressed. Periodic generators (monotonous, bounded out-of-orderness) are asked for a
//! watermark after every batch and every `auto_watermark_interval` while input is quiet;
//! punctuated generators emit one on the record that carries it.

use crate::record::{Data, MIN_WATERMARK};
use std::sync::Arc;
use std::time::Duration;

/// Receives what a generator decides.
#[derive(Debug, Default)]
pub struct WatermarkOutput {
    pub(crate) watermark: Option<i64>,
    pub(crate) idle: bool,
}

impl WatermarkOutput {
    /// Proposes a watermark; only ever-increasing ones are emitted.
    pub fn emit_watermark(&mut self, watermark: i64) {
        self.watermark = Some(self.watermark.map_or(watermark, |w| w.max(watermark)));
        self.idle = false;
    }
    /// Declares the input idle until the next watermark or record.
    pub fn mark_idle(&mut self) {
        self.idle = true;
    }
}

/// Decides watermarks from the records it sees (Flink's `WatermarkGenerator`).
pub trait WatermarkGenerator<T>: Send {
    /// Called for every record with its (assigned) timestamp.
    fn on_event(&mut self, event: &T, timestamp: i64, output: &mut WatermarkOutput);
    /// Called periodically; periodic generators emit here.
    fn on_periodic_emit(&mut self, output: &mut WatermarkOutput);
}

/// Watermark = highest timestamp seen − bound − 1 (Flink's `BoundedOutOfOrdernessWatermarks`).
#[derive(Debug, Clone)]
pub struct BoundedOutOfOrderness {
    pub(crate) max_timestamp: i64,
    bound: i64,
}

impl BoundedOutOfOrderness {
    pub fn new(bound: Duration) -> Self {
        let bound = bound.as_millis() as i64;
        BoundedOutOfOrderness {
            max_timestamp: MIN_WATERMARK + bound + 1,
            bound,
        }
    }
}

impl<T> WatermarkGenerator<T> for BoundedOutOfOrderness {
    fn on_event(&mut self, _: &T, timestamp: i64, _: &mut WatermarkOutput) {
        self.max_timestamp = self.max_timestamp.max(timestamp);
    }
    fn on_periodic_emit(&mut self, output: &mut WatermarkOutput) {
        output.emit_watermark(self.max_timestamp - self.bound - 1);
    }
}

/// Emits watermarks only where a function of the record says so.
pub struct Punctuated<F> {
    f: F,
}

impl<T, F: FnMut(&T, i64) -> Option<i64> + Send> WatermarkGenerator<T> for Punctuated<F> {
    fn on_event(&mut self, event: &T, timestamp: i64, output: &mut WatermarkOutput) {
        if let Some(w) = (self.f)(event, timestamp) {
            output.emit_watermark(w);
        }
    }
    fn on_periodic_emit(&mut self, _: &mut WatermarkOutput) {}
}

/// Emits no watermarks at all.
#[derive(Debug, Clone, Copy)]
pub struct NoWatermarks;

impl<T> WatermarkGenerator<T> for NoWatermarks {
    fn on_event(&mut self, _: &T, _: i64, _: &mut WatermarkOutput) {}
    fn on_periodic_emit(&mut self, _: &mut WatermarkOutput) {}
}

/// Wraps a generator: after `timeout` of processing time without records, the input is
/// idle (Flink's `WatermarksWithIdleness`).
/// A generator instance: the built-in bounded one is called without dynamic dispatch,
/// since it runs for every record.
pub(crate) enum Generator<T> {
    Bounded(BoundedOutOfOrderness),
    Custom(Box<dyn WatermarkGenerator<T>>),
}

impl<T> Generator<T> {
    #[inline]
    fn on_event(&mut self, event: &T, timestamp: i64, output: &mut WatermarkOutput) {
        match self {
            Generator::Bounded(b) => b.max_timestamp = b.max_timestamp.max(timestamp),
            Generator::Custom(g) => g.on_event(event, timestamp, output),
        }
    }

    fn on_periodic_emit(&mut self, output: &mut WatermarkOutput) {
        match self {
            Generator::Bounded(b) => WatermarkGenerator::<T>::on_periodic_emit(b, output),
            Generator::Custom(g) => g.on_periodic_emit(output),
        }
    }
}

pub(crate) struct WithIdleness<T> {
    pub(crate) inner: Generator<T>,
    timeout_ms: i64,
    last_activity: Option<i64>,
    active_since_check: bool,
}

impl<T> WithIdleness<T> {
    pub(crate) fn new(inner: Generator<T>, timeout: Duration) -> Self {
        WithIdleness {
            inner,
            timeout_ms: timeout.as_millis() as i64,
            last_activity: None,
            active_since_check: false,
        }
    }

    /// The record path of the built-in bounded generator (see `WatermarkEmitter::stamp`).
    #[inline]
    pub(crate) fn note_bounded(&mut self, timestamp: i64) {
        self.active_since_check = true;
        if let Generator::Bounded(b) = &mut self.inner {
            b.max_timestamp = b.max_timestamp.max(timestamp);
        }
    }

    #[inline]
    pub(crate) fn on_event(&mut self, event: &T, timestamp: i64, output: &mut WatermarkOutput) {
        self.active_since_check = true;
        self.inner.on_event(event, timestamp, output);
    }

    /// `now` is processing time.
    pub(crate) fn on_periodic_emit(&mut self, now: i64, output: &mut WatermarkOutput) {
        if self.active_since_check || self.last_activity.is_none() {
            self.active_since_check = false;
            self.last_activity = Some(now);
            self.inner.on_periodic_emit(output);
        } else if self
            .last_activity
            .is_some_and(|t| now - t >= self.timeout_ms)
        {
            output.mark_idle();
        } else {
            self.inner.on_periodic_emit(output);
        }
    }
}

/// Where a record's event timestamp comes from.
pub(crate) enum TimestampSource<T> {
    /// Keep what the source set.
    Record,
    /// A function of the record.
    Assigner(Arc<dyn Fn(&T) -> i64 + Send + Sync>),
    /// The processing time when the record enters the job.
    Ingestion,
}

impl<T> Clone for TimestampSource<T> {
    fn clone(&self) -> Self {
        match self {
            TimestampSource::Record => TimestampSource::Record,
            TimestampSource::Assigner(f) => TimestampSource::Assigner(f.clone()),
            TimestampSource::Ingestion => TimestampSource::Ingestion,
        }
    }
}

/// How each parallel instance gets its generator.
pub(crate) enum GeneratorFactory<T> {
    Bounded(Duration),
    Custom(Arc<dyn Fn() -> Box<dyn WatermarkGenerator<T>> + Send + Sync>),
}

impl<T> Clone for GeneratorFactory<T> {
    fn clone(&self) -> Self {
        match self {
            GeneratorFactory::Bounded(d) => GeneratorFactory::Bounded(*d),
            GeneratorFactory::Custom(f) => GeneratorFactory::Custom(f.clone()),
        }
    }
}

/// How a stream gets event timestamps and watermarks (Flink's `WatermarkStrategy`).
///
/// ```
/// use std::time::Duration;
/// use strom::prelude::*;
/// #[derive(Clone, serde::Serialize, serde::Deserialize)]
/// struct Reading { ts: i64 }
/// let strategy = WatermarkStrategy::<Reading>::for_bounded_out_of_orderness(Duration::from_secs(5))
///     .with_timestamp_assigner(|r| r.ts)
///     .with_idleness(Duration::from_secs(60));
/// ```
pub struct WatermarkStrategy<T> {
    pub(crate) generator: GeneratorFactory<T>,
    pub(crate) timestamps: TimestampSource<T>,
    pub(crate) idleness: Option<Duration>,
}

impl<T> Clone for WatermarkStrategy<T> {
    fn clone(&self) -> Self {
        WatermarkStrategy {
            generator: self.generator.clone(),
            timestamps: self.timestamps.clone(),
            idleness: self.idleness,
        }
    }
}

impl<T: Data> WatermarkStrategy<T> {
    /// Timestamps never decrease: watermark = highest timestamp − 1.
    pub fn for_monotonous_timestamps() -> Self {
        Self::for_bounded_out_of_orderness(Duration::ZERO)
    }

    /// Records may arrive up to `bound` late: watermark = highest timestamp − bound − 1.
    pub fn for_bounded_out_of_orderness(bound: Duration) -> Self {
        WatermarkStrategy {
            generator: GeneratorFactory::Bounded(bound),
            timestamps: TimestampSource::Record,
            idleness: None,
        }
    }

    /// No watermarks (event-time windows and timers will only fire at end of input).
    pub fn no_watermarks() -> Self {
        WatermarkStrategy {
            generator: GeneratorFactory::Custom(Arc::new(|| Box::new(NoWatermarks))),
            timestamps: TimestampSource::Record,
            idleness: None,
        }
    }

    /// Punctuated: `f(record, timestamp)` returns a watermark for records that carry one.
    pub fn for_punctuated<F>(f: F) -> Self
    where
        F: FnMut(&T, i64) -> Option<i64> + Clone + Send + Sync + 'static,
    {
        WatermarkStrategy {
            generator: GeneratorFactory::Custom(Arc::new(move || {
                Box::new(Punctuated { f: f.clone() })
            })),
            timestamps: TimestampSource::Record,
            idleness: None,
        }
    }

    /// Any generator, built once per parallel instance.
    pub fn for_generator<G, F>(make: F) -> Self
    where
        G: WatermarkGenerator<T> + 'static,
        F: Fn() -> G + Send + Sync + 'static,
    {
        WatermarkStrategy {
            generator: GeneratorFactory::Custom(Arc::new(move || Box::new(make()))),
            timestamps: TimestampSource::Record,
            idleness: None,
        }
    }

    /// Ingestion time: each record's timestamp is the processing time at which it enters,
    /// and watermarks follow it.
    pub fn for_ingestion_time() -> Self {
        WatermarkStrategy {
            timestamps: TimestampSource::Ingestion,
            ..Self::for_monotonous_timestamps()
        }
    }

    /// Takes the event timestamp (milliseconds) from the record.
    pub fn with_timestamp_assigner<F>(mut self, f: F) -> Self
    where
        F: Fn(&T) -> i64 + Send + Sync + 'static,
    {
        self.timestamps = TimestampSource::Assigner(Arc::new(f));
        self
    }

    /// Marks the input idle after `timeout` without records.
    pub fn with_idleness(mut self, timeout: Duration) -> Self {
        self.idleness = Some(timeout);
        self
    }

    pub(crate) fn instantiate(&self) -> WithIdleness<T> {
        let timeout = self
            .idleness
            .unwrap_or(Duration::from_millis(i64::MAX as u64 / 2));
        let generator = match &self.generator {
            GeneratorFactory::Bounded(bound) => {
                Generator::Bounded(BoundedOutOfOrderness::new(*bound))
            }
            GeneratorFactory::Custom(make) => Generator::Custom(make()),
        };
        WithIdleness::new(generator, timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_out_of_orderness_lags_by_the_bound_plus_one() {
        let mut g = BoundedOutOfOrderness::new(Duration::from_millis(100));
        let mut out = WatermarkOutput::default();
        WatermarkGenerator::<()>::on_event(&mut g, &(), 1_000, &mut out);
        WatermarkGenerator::<()>::on_event(&mut g, &(), 900, &mut out);
        WatermarkGenerator::<()>::on_periodic_emit(&mut g, &mut out);
        assert_eq!(out.watermark, Some(899));
    }

    #[test]
    fn idleness_after_timeout_without_records() {
        let mut g = WithIdleness::<()>::new(
            Generator::Bounded(BoundedOutOfOrderness::new(Duration::ZERO)),
            Duration::from_millis(50),
        );
        let mut out = WatermarkOutput::default();
        g.on_event(&(), 10, &mut out);
        g.on_periodic_emit(0, &mut out);
        assert_eq!((out.watermark, out.idle), (Some(9), false));
        let mut out = WatermarkOutput::default();
        g.on_periodic_emit(20, &mut out);
        assert!(!out.idle);
        g.on_periodic_emit(60, &mut out);
        assert!(out.idle);
    }
}

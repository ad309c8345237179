//! Applies a watermark strategy to a stream of records: assigns timestamps, feeds the
//! generator, and decides what watermarks and idleness changes to emit. Used inside
//! sources (`StreamEnv::from_source` with a strategy) and by the
//! `assign_timestamps_and_watermarks` operator.

use crate::config::RuntimeMode;
use crate::record::{MIN_WATERMARK, NO_TIMESTAMP, WatermarkStatus};
use crate::time::watermark::{TimestampSource, WatermarkOutput, WatermarkStrategy, WithIdleness};

/// What the emitter wants sent downstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WatermarkAction {
    Watermark(i64),
    Status(WatermarkStatus),
}

pub(crate) struct WatermarkEmitter<T> {
    generator: WithIdleness<T>,
    timestamps: TimestampSource<T>,
    current: i64,
    idle: bool,
    batch_mode: bool,
    scratch: WatermarkOutput,
}

impl<T> WatermarkEmitter<T>
where
    T: crate::record::Data,
{
    pub(crate) fn new(strategy: &WatermarkStrategy<T>, mode: RuntimeMode) -> Self {
        WatermarkEmitter {
            generator: strategy.instantiate(),
            timestamps: strategy.timestamps.clone(),
            current: MIN_WATERMARK,
            idle: false,
            batch_mode: mode == RuntimeMode::Batch,
            scratch: WatermarkOutput::default(),
        }
    }

    /// The timestamp the record gets.
    #[inline]
    pub(crate) fn timestamp_of(
        &self,
        value: &T,
        record_timestamp: i64,
        now: impl Fn() -> i64,
    ) -> i64 {
        match &self.timestamps {
            TimestampSource::Record => record_timestamp,
            TimestampSource::Assigner(f) => f(value),
            TimestampSource::Ingestion => now(),
        }
    }

    /// Whether records can take [`stamp`](Self::stamp): the built-in periodic generator,
    /// timestamps from the record or an assigner, and not idle (no status to emit first).
    #[inline]
    pub(crate) fn can_stamp(&self) -> bool {
        !self.idle
            && matches!(
                self.generator.inner,
                crate::time::watermark::Generator::Bounded(_)
            )
            && !matches!(self.timestamps, TimestampSource::Ingestion)
    }

    /// The record path when [`can_stamp`](Self::can_stamp): assigns the timestamp and
    /// notes it; a periodic generator has nothing to emit per record.
    #[inline]
    pub(crate) fn stamp(&mut self, value: &T, record_timestamp: i64) -> i64 {
        let ts = match &self.timestamps {
            TimestampSource::Assigner(f) => f(value),
            _ => record_timestamp,
        };
        if ts != NO_TIMESTAMP {
            self.generator.note_bounded(ts);
        }
        ts
    }

    /// Whether records are stamped with the processing time at which they enter.
    pub(crate) fn is_ingestion_time(&self) -> bool {
        matches!(self.timestamps, TimestampSource::Ingestion)
    }

    /// Whether a record arriving now must be preceded by an `Active` status.
    #[inline]
    pub(crate) fn take_reactivation(&mut self) -> Option<WatermarkAction> {
        if self.idle {
            self.idle = false;
            Some(WatermarkAction::Status(WatermarkStatus::Active))
        } else {
            None
        }
    }

    /// Feeds one record; returns a watermark a punctuated generator emitted on it.
    #[inline]
    pub(crate) fn on_event(&mut self, value: &T, timestamp: i64) -> Option<WatermarkAction> {
        if timestamp == NO_TIMESTAMP {
            return None;
        }
        self.generator.on_event(value, timestamp, &mut self.scratch);
        if self.scratch.watermark.is_none() && !self.scratch.idle {
            // Periodic generators only remember the timestamp here.
            return None;
        }
        self.drain_scratch().into_iter().next()
    }

    /// Asks a periodic generator; `now` is processing time.
    pub(crate) fn on_periodic(&mut self, now: i64) -> Vec<WatermarkAction> {
        self.generator.on_periodic_emit(now, &mut self.scratch);
        self.drain_scratch()
    }

    fn drain_scratch(&mut self) -> Vec<WatermarkAction> {
        let mut actions = Vec::new();
        let out = std::mem::take(&mut self.scratch);
        if let Some(w) = out.watermark
            && w > self.current
        {
            self.current = w;
            if !self.batch_mode {
                if self.idle {
                    self.idle = false;
                    actions.push(WatermarkAction::Status(WatermarkStatus::Active));
                }
                actions.push(WatermarkAction::Watermark(w));
            }
        }
        if out.idle && !self.idle && !self.batch_mode {
            self.idle = true;
            actions.push(WatermarkAction::Status(WatermarkStatus::Idle));
        }
        actions
    }
}

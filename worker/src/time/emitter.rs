//! Applies a watermark strategy to a stream of records: assigns timestamps, feeds the
//! generator, and decides what watermarks and idleness changes to emit. Used inside
//! sources (`StreamEnv::from_source` with a strategy) and by the
//! `assign_timestamps_and_watermarks` operator.
//!
//! A source reader that reads several splits (Kafka partitions) can give each its own
//! generator ([`WatermarkEmitter::add_split`], [`WatermarkEmitter::on_split_event`]): the
//! reader's watermark is then the least of its active splits' watermarks, and it is idle
//! when all of them are (Flink's per-split watermarks). Without that, a reader that reads
//! one partition ahead of another would make the lagging partition's records late.

use crate::config::RuntimeMode;
use crate::record::{MIN_WATERMARK, NO_TIMESTAMP, WatermarkStatus};
use crate::time::watermark::{TimestampSource, WatermarkOutput, WatermarkStrategy, WithIdleness};
use std::collections::BTreeMap;

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
    /// Makes the generators of splits.
    strategy: WatermarkStrategy<T>,
    /// Each split's generator, once the reader declared splits.
    splits: BTreeMap<usize, SplitWatermark<T>>,
}

/// One split's generator and where it stands.
struct SplitWatermark<T> {
    generator: WithIdleness<T>,
    watermark: i64,
    idle: bool,
}

impl<T: crate::record::Data> SplitWatermark<T> {
    /// A split without records yet: it holds the watermark back until it has some or is
    /// idle.
    fn new(strategy: &WatermarkStrategy<T>) -> Self {
        SplitWatermark {
            generator: strategy.instantiate(),
            watermark: MIN_WATERMARK,
            idle: false,
        }
    }

    /// Takes in what the generator said.
    fn note(&mut self, out: WatermarkOutput) {
        if let Some(w) = out.watermark {
            self.watermark = self.watermark.max(w);
            self.idle = false;
        }
        if out.idle {
            self.idle = true;
        }
    }
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
            strategy: strategy.clone(),
            splits: BTreeMap::new(),
        }
    }

    /// Declares split `split`: from now on it has a generator of its own and holds the
    /// reader's watermark back until its records move it on or it is idle.
    pub(crate) fn add_split(&mut self, split: usize) {
        let strategy = &self.strategy;
        self.splits
            .entry(split)
            .or_insert_with(|| SplitWatermark::new(strategy));
    }

    /// Feeds one record of split `split` (declared now if it was not); returns what to
    /// emit after it (a punctuated generator's watermark).
    pub(crate) fn on_split_event(
        &mut self,
        split: usize,
        value: &T,
        timestamp: i64,
    ) -> Vec<WatermarkAction> {
        let strategy = &self.strategy;
        let entry = self
            .splits
            .entry(split)
            .or_insert_with(|| SplitWatermark::new(strategy));
        if timestamp == NO_TIMESTAMP {
            return Vec::new();
        }
        entry.idle = false;
        entry
            .generator
            .on_event(value, timestamp, &mut self.scratch);
        let out = std::mem::take(&mut self.scratch);
        if out.watermark.is_none() && !out.idle {
            // Periodic generators only remember the timestamp here.
            return Vec::new();
        }
        entry.note(out);
        self.combine_splits()
    }

    /// The reader's watermark from its splits': the least of the active ones; when all
    /// are idle, the greatest, and idle — as the input valve does with channels, since
    /// nothing more is coming from any of them for now.
    fn combine_splits(&mut self) -> Vec<WatermarkAction> {
        let active = self.splits.values().filter(|s| !s.idle);
        self.scratch = match active.map(|s| s.watermark).min() {
            Some(w) => WatermarkOutput {
                watermark: Some(w),
                idle: false,
            },
            None => WatermarkOutput {
                watermark: self.splits.values().map(|s| s.watermark).max(),
                idle: true,
            },
        };
        self.drain_scratch()
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
        if self.splits.is_empty() {
            self.generator.on_periodic_emit(now, &mut self.scratch);
            return self.drain_scratch();
        }
        for split in self.splits.values_mut() {
            split.generator.on_periodic_emit(now, &mut self.scratch);
            split.note(std::mem::take(&mut self.scratch));
        }
        self.combine_splits()
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn emitter(idleness_ms: u64) -> WatermarkEmitter<u32> {
        let strategy = WatermarkStrategy::<u32>::for_monotonous_timestamps()
            .with_idleness(Duration::from_millis(idleness_ms));
        WatermarkEmitter::new(&strategy, RuntimeMode::Streaming)
    }

    #[test]
    fn with_splits_the_watermark_is_the_least_of_their_watermarks() {
        let mut em = emitter(60_000);
        em.on_split_event(0, &1, 30_000);
        em.on_split_event(1, &1, 3_000);
        // Split 1 lags: its records stay on time although split 0 is far ahead.
        assert_eq!(em.on_periodic(0), [WatermarkAction::Watermark(2_999)]);
        em.on_split_event(1, &1, 40_000);
        assert_eq!(em.on_periodic(10), [WatermarkAction::Watermark(29_999)]);
    }

    #[test]
    fn a_declared_split_without_records_holds_the_watermark_back_until_it_is_idle() {
        let mut em = emitter(100);
        em.add_split(0);
        em.add_split(1);
        em.on_split_event(0, &1, 5_000);
        assert_eq!(em.on_periodic(0), []);
        em.on_split_event(0, &1, 6_000);
        assert_eq!(em.on_periodic(60), []);
        em.on_split_event(0, &1, 7_000);
        // Split 1 has had nothing for 100 ms: idle, and no longer counted.
        assert_eq!(em.on_periodic(120), [WatermarkAction::Watermark(6_999)]);
        // Then split 0 is idle too: the reader is.
        assert_eq!(
            em.on_periodic(300),
            [WatermarkAction::Status(WatermarkStatus::Idle)]
        );
        // A record of split 1 wakes the reader; split 1 counts again from its own time.
        assert_eq!(
            em.take_reactivation(),
            Some(WatermarkAction::Status(WatermarkStatus::Active))
        );
        em.on_split_event(1, &1, 8_000);
        assert_eq!(em.on_periodic(310), [WatermarkAction::Watermark(7_999)]);
    }
}

//! Window assigners: which windows a record belongs to (Flink's `WindowAssigner`s).

use crate::windows::triggers::{EventTimeTrigger, NeverTrigger, ProcessingTimeTrigger, Trigger};
use crate::windows::{FastModulus, GlobalWindow, TimeWindow, Window, merge_time_windows};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

/// Assigns records to windows.
pub trait WindowAssigner<T>: Send + Sync + 'static {
    type W: Window;
    /// Appends the windows of a record with event timestamp `timestamp` (processing time
    /// is `now`) to `out`.
    fn assign_windows(&self, element: &T, timestamp: i64, now: i64, out: &mut Vec<Self::W>);
    /// The trigger used when none is set.
    type DefaultTrigger: Trigger<T, Self::W>;
    fn default_trigger(&self) -> Self::DefaultTrigger;
    /// Whether windows are in event time (late data, cleanup by watermark).
    fn is_event_time(&self) -> bool;
    /// Whether windows merge (sessions).
    fn is_merging(&self) -> bool {
        false
    }
    /// Merge groups among `windows`: covering window and the windows it replaces.
    fn merge_windows(&self, _windows: &[Self::W]) -> Vec<(Self::W, Vec<Self::W>)> {
        Vec::new()
    }
    /// A short description for operator names.
    fn describe(&self) -> String;
}

fn millis(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

/// Which clock a time window assigner reads.
pub trait WindowTime: Copy + std::fmt::Debug + Send + Sync + 'static {
    /// Whether windows are in event time (late data, cleanup by watermark).
    const EVENT_TIME: bool;
    /// "EventTime" or "ProcessingTime", for operator names.
    const NAME: &'static str;
    /// The trigger that fires at the end of a window on this clock.
    type EndTrigger: Default;
    /// The time a record is assigned by: its event timestamp, or processing time.
    fn time_of(timestamp: i64, now: i64) -> i64;
}

/// Windows by event time (the record's timestamp).
#[derive(Clone, Copy, Debug)]
pub struct EventTime;

impl WindowTime for EventTime {
    const EVENT_TIME: bool = true;
    const NAME: &'static str = "EventTime";
    type EndTrigger = EventTimeTrigger;
    #[inline]
    fn time_of(timestamp: i64, _: i64) -> i64 {
        timestamp
    }
}

/// Windows by processing time (when the record is processed).
#[derive(Clone, Copy, Debug)]
pub struct ProcessingTime;

impl WindowTime for ProcessingTime {
    const EVENT_TIME: bool = false;
    const NAME: &'static str = "ProcessingTime";
    type EndTrigger = ProcessingTimeTrigger;
    #[inline]
    fn time_of(_: i64, now: i64) -> i64 {
        now
    }
}

/// Fixed-size, non-overlapping windows.
#[derive(Clone, Copy, Debug)]
pub struct TumblingWindows<D> {
    size: i64,
    offset: i64,
    modulus: FastModulus,
    _time: PhantomData<D>,
}

/// Tumbling windows in event time (Flink's `TumblingEventTimeWindows`).
pub type TumblingEventTimeWindows = TumblingWindows<EventTime>;
/// Tumbling windows in processing time (Flink's `TumblingProcessingTimeWindows`).
pub type TumblingProcessingTimeWindows = TumblingWindows<ProcessingTime>;

impl<D: WindowTime> TumblingWindows<D> {
    pub fn of(size: Duration) -> Self {
        let size = millis(size).max(1);
        TumblingWindows {
            size,
            offset: 0,
            modulus: FastModulus::new(size),
            _time: PhantomData,
        }
    }
    /// Shifts window starts (e.g. to align daily windows with a time zone).
    pub fn with_offset(mut self, offset: Duration) -> Self {
        self.offset = millis(offset) % self.size;
        self
    }
}

impl<T: 'static, D: WindowTime> WindowAssigner<T> for TumblingWindows<D>
where
    D::EndTrigger: Trigger<T, TimeWindow>,
{
    type W = TimeWindow;
    type DefaultTrigger = D::EndTrigger;
    #[inline]
    fn assign_windows(&self, _: &T, timestamp: i64, now: i64, out: &mut Vec<TimeWindow>) {
        let t = D::time_of(timestamp, now);
        let start = t - self.modulus.rem_euclid(t.wrapping_sub(self.offset));
        out.push(TimeWindow::new(start, start + self.size));
    }
    fn default_trigger(&self) -> D::EndTrigger {
        D::EndTrigger::default()
    }
    fn is_event_time(&self) -> bool {
        D::EVENT_TIME
    }
    fn describe(&self) -> String {
        format!("Tumbling{}Windows({}ms)", D::NAME, self.size)
    }
}

/// Windows of `size` starting every `slide`.
#[derive(Clone, Copy, Debug)]
pub struct SlidingWindows<D> {
    size: i64,
    slide: i64,
    offset: i64,
    modulus: FastModulus,
    _time: PhantomData<D>,
}

/// Sliding windows in event time (Flink's `SlidingEventTimeWindows`).
pub type SlidingEventTimeWindows = SlidingWindows<EventTime>;
/// Sliding windows in processing time (Flink's `SlidingProcessingTimeWindows`).
pub type SlidingProcessingTimeWindows = SlidingWindows<ProcessingTime>;

impl<D: WindowTime> SlidingWindows<D> {
    pub fn of(size: Duration, slide: Duration) -> Self {
        let slide = millis(slide).max(1);
        SlidingWindows {
            size: millis(size).max(1),
            slide,
            offset: 0,
            modulus: FastModulus::new(slide),
            _time: PhantomData,
        }
    }
    pub fn with_offset(mut self, offset: Duration) -> Self {
        self.offset = millis(offset) % self.slide;
        self
    }
}

impl<T: 'static, D: WindowTime> WindowAssigner<T> for SlidingWindows<D>
where
    D::EndTrigger: Trigger<T, TimeWindow>,
{
    type W = TimeWindow;
    type DefaultTrigger = D::EndTrigger;
    fn assign_windows(&self, _: &T, timestamp: i64, now: i64, out: &mut Vec<TimeWindow>) {
        let t = D::time_of(timestamp, now);
        let last_start = t - self.modulus.rem_euclid(t.wrapping_sub(self.offset));
        let mut start = last_start;
        // Flink emits the newest window first.
        while start > t - self.size {
            out.push(TimeWindow::new(start, start + self.size));
            start -= self.slide;
        }
    }
    fn default_trigger(&self) -> D::EndTrigger {
        D::EndTrigger::default()
    }
    fn is_event_time(&self) -> bool {
        D::EVENT_TIME
    }
    fn describe(&self) -> String {
        format!(
            "Sliding{}Windows({}ms, {}ms)",
            D::NAME,
            self.size,
            self.slide
        )
    }
}

type GapFn<T> = Arc<dyn Fn(&T) -> i64 + Send + Sync>;

/// Session windows: a session ends after a gap without records. The gap may depend on the
/// record.
pub struct SessionWindows<T, D> {
    gap: GapFn<T>,
    _time: PhantomData<D>,
}

/// Session windows in event time (Flink's `EventTimeSessionWindows`).
pub type EventTimeSessionWindows<T> = SessionWindows<T, EventTime>;
/// Session windows in processing time (Flink's `ProcessingTimeSessionWindows`).
pub type ProcessingTimeSessionWindows<T> = SessionWindows<T, ProcessingTime>;

impl<T, D: WindowTime> SessionWindows<T, D> {
    pub fn with_gap(gap: Duration) -> Self {
        let g = millis(gap).max(1);
        SessionWindows {
            gap: Arc::new(move |_| g),
            _time: PhantomData,
        }
    }
    /// The gap (ms) after each record, computed from the record.
    pub fn with_dynamic_gap(gap: impl Fn(&T) -> i64 + Send + Sync + 'static) -> Self {
        SessionWindows {
            gap: Arc::new(gap),
            _time: PhantomData,
        }
    }
}

impl<T: 'static, D: WindowTime> WindowAssigner<T> for SessionWindows<T, D>
where
    D::EndTrigger: Trigger<T, TimeWindow>,
{
    type W = TimeWindow;
    type DefaultTrigger = D::EndTrigger;
    fn assign_windows(&self, element: &T, timestamp: i64, now: i64, out: &mut Vec<TimeWindow>) {
        let t = D::time_of(timestamp, now);
        out.push(TimeWindow::new(
            t,
            t.saturating_add((self.gap)(element).max(1)),
        ));
    }
    fn default_trigger(&self) -> D::EndTrigger {
        D::EndTrigger::default()
    }
    fn is_event_time(&self) -> bool {
        D::EVENT_TIME
    }
    fn is_merging(&self) -> bool {
        true
    }
    fn merge_windows(&self, windows: &[TimeWindow]) -> Vec<(TimeWindow, Vec<TimeWindow>)> {
        merge_time_windows(windows)
    }
    fn describe(&self) -> String {
        format!("{}SessionWindows", D::NAME)
    }
}

/// One window per key holding everything; it fires only by a custom trigger (count
/// windows are global windows with a count trigger).
#[derive(Clone, Copy, Debug, Default)]
pub struct GlobalWindows;

impl GlobalWindows {
    pub fn create() -> Self {
        GlobalWindows
    }
}

impl<T: 'static> WindowAssigner<T> for GlobalWindows {
    type W = GlobalWindow;
    fn assign_windows(&self, _: &T, _: i64, _: i64, out: &mut Vec<GlobalWindow>) {
        out.push(GlobalWindow);
    }
    type DefaultTrigger = NeverTrigger;
    fn default_trigger(&self) -> NeverTrigger {
        NeverTrigger
    }
    fn is_event_time(&self) -> bool {
        false
    }
    fn describe(&self) -> String {
        "GlobalWindows".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_windows_of_a_timestamp_newest_first() {
        let a = SlidingEventTimeWindows::of(Duration::from_secs(10), Duration::from_secs(5));
        let mut out = Vec::new();
        WindowAssigner::<()>::assign_windows(&a, &(), 12_000, 0, &mut out);
        assert_eq!(
            out,
            vec![
                TimeWindow::new(10_000, 20_000),
                TimeWindow::new(5_000, 15_000)
            ]
        );
    }

    #[test]
    fn tumbling_window_contains_its_timestamps() {
        let a = TumblingEventTimeWindows::of(Duration::from_secs(5));
        let mut out = Vec::new();
        WindowAssigner::<()>::assign_windows(&a, &(), 4_999, 0, &mut out);
        WindowAssigner::<()>::assign_windows(&a, &(), 5_000, 0, &mut out);
        assert_eq!(
            out,
            vec![TimeWindow::new(0, 5_000), TimeWindow::new(5_000, 10_000)]
        );
    }
}

//! Window assigners: which windows a record belongs to (Flink's `WindowAssigner`s).

use crate::windows::triggers::{EventTimeTrigger, NeverTrigger, ProcessingTimeTrigger, Trigger};
use crate::windows::{FastModulus, GlobalWindow, TimeWindow, Window, merge_time_windows};
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

/// Fixed-size, non-overlapping windows in event time.
#[derive(Clone, Copy, Debug)]
pub struct TumblingEventTimeWindows {
    size: i64,
    offset: i64,
    modulus: FastModulus,
}

impl TumblingEventTimeWindows {
    pub fn of(size: Duration) -> Self {
        let size = millis(size).max(1);
        TumblingEventTimeWindows {
            size,
            offset: 0,
            modulus: FastModulus::new(size),
        }
    }
    /// Shifts window starts (e.g. to align daily windows with a time zone).
    pub fn with_offset(mut self, offset: Duration) -> Self {
        self.offset = millis(offset) % self.size;
        self
    }
}

impl<T: 'static> WindowAssigner<T> for TumblingEventTimeWindows {
    type W = TimeWindow;
    #[inline]
    fn assign_windows(&self, _: &T, timestamp: i64, _: i64, out: &mut Vec<TimeWindow>) {
        let start = timestamp - self.modulus.rem_euclid(timestamp.wrapping_sub(self.offset));
        out.push(TimeWindow::new(start, start + self.size));
    }
    type DefaultTrigger = EventTimeTrigger;
    fn default_trigger(&self) -> EventTimeTrigger {
        EventTimeTrigger
    }
    fn is_event_time(&self) -> bool {
        true
    }
    fn describe(&self) -> String {
        format!("TumblingEventTimeWindows({}ms)", self.size)
    }
}

/// Fixed-size, non-overlapping windows in processing time.
#[derive(Clone, Copy, Debug)]
pub struct TumblingProcessingTimeWindows {
    size: i64,
    offset: i64,
    modulus: FastModulus,
}

impl TumblingProcessingTimeWindows {
    pub fn of(size: Duration) -> Self {
        let size = millis(size).max(1);
        TumblingProcessingTimeWindows {
            size,
            offset: 0,
            modulus: FastModulus::new(size),
        }
    }
    pub fn with_offset(mut self, offset: Duration) -> Self {
        self.offset = millis(offset) % self.size;
        self
    }
}

impl<T: 'static> WindowAssigner<T> for TumblingProcessingTimeWindows {
    type W = TimeWindow;
    fn assign_windows(&self, _: &T, _: i64, now: i64, out: &mut Vec<TimeWindow>) {
        let start = now - self.modulus.rem_euclid(now.wrapping_sub(self.offset));
        out.push(TimeWindow::new(start, start + self.size));
    }
    type DefaultTrigger = ProcessingTimeTrigger;
    fn default_trigger(&self) -> ProcessingTimeTrigger {
        ProcessingTimeTrigger
    }
    fn is_event_time(&self) -> bool {
        false
    }
    fn describe(&self) -> String {
        format!("TumblingProcessingTimeWindows({}ms)", self.size)
    }
}

fn sliding(timestamp: i64, size: i64, slide: &FastModulus, offset: i64, out: &mut Vec<TimeWindow>) {
    let last_start = timestamp - slide.rem_euclid(timestamp.wrapping_sub(offset));
    let slide = slide.divisor();
    let mut start = last_start;
    // Flink emits the newest window first.
    while start > timestamp - size {
        out.push(TimeWindow::new(start, start + size));
        start -= slide;
    }
}

/// Windows of `size` starting every `slide`, in event time.
#[derive(Clone, Copy, Debug)]
pub struct SlidingEventTimeWindows {
    size: i64,
    slide: i64,
    offset: i64,
    modulus: FastModulus,
}

impl SlidingEventTimeWindows {
    pub fn of(size: Duration, slide: Duration) -> Self {
        let slide = millis(slide).max(1);
        SlidingEventTimeWindows {
            size: millis(size).max(1),
            slide,
            offset: 0,
            modulus: FastModulus::new(slide),
        }
    }
    pub fn with_offset(mut self, offset: Duration) -> Self {
        self.offset = millis(offset) % self.slide;
        self
    }
}

impl<T: 'static> WindowAssigner<T> for SlidingEventTimeWindows {
    type W = TimeWindow;
    fn assign_windows(&self, _: &T, timestamp: i64, _: i64, out: &mut Vec<TimeWindow>) {
        sliding(timestamp, self.size, &self.modulus, self.offset, out);
    }
    type DefaultTrigger = EventTimeTrigger;
    fn default_trigger(&self) -> EventTimeTrigger {
        EventTimeTrigger
    }
    fn is_event_time(&self) -> bool {
        true
    }
    fn describe(&self) -> String {
        format!("SlidingEventTimeWindows({}ms, {}ms)", self.size, self.slide)
    }
}

/// Windows of `size` starting every `slide`, in processing time.
#[derive(Clone, Copy, Debug)]
pub struct SlidingProcessingTimeWindows {
    size: i64,
    slide: i64,
    offset: i64,
    modulus: FastModulus,
}

impl SlidingProcessingTimeWindows {
    pub fn of(size: Duration, slide: Duration) -> Self {
        let slide = millis(slide).max(1);
        SlidingProcessingTimeWindows {
            size: millis(size).max(1),
            slide,
            offset: 0,
            modulus: FastModulus::new(slide),
        }
    }
}

impl<T: 'static> WindowAssigner<T> for SlidingProcessingTimeWindows {
    type W = TimeWindow;
    fn assign_windows(&self, _: &T, _: i64, now: i64, out: &mut Vec<TimeWindow>) {
        sliding(now, self.size, &self.modulus, self.offset, out);
    }
    type DefaultTrigger = ProcessingTimeTrigger;
    fn default_trigger(&self) -> ProcessingTimeTrigger {
        ProcessingTimeTrigger
    }
    fn is_event_time(&self) -> bool {
        false
    }
    fn describe(&self) -> String {
        format!(
            "SlidingProcessingTimeWindows({}ms, {}ms)",
            self.size, self.slide
        )
    }
}

type GapFn<T> = Arc<dyn Fn(&T) -> i64 + Send + Sync>;

/// Session windows in event time: a session ends after a gap without records. The gap
/// may depend on the record.
pub struct EventTimeSessionWindows<T> {
    gap: GapFn<T>,
}

impl<T> EventTimeSessionWindows<T> {
    pub fn with_gap(gap: Duration) -> Self {
        let g = millis(gap).max(1);
        EventTimeSessionWindows {
            gap: Arc::new(move |_| g),
        }
    }
    /// The gap (ms) after each record, computed from the record.
    pub fn with_dynamic_gap(gap: impl Fn(&T) -> i64 + Send + Sync + 'static) -> Self {
        EventTimeSessionWindows { gap: Arc::new(gap) }
    }
}

impl<T: 'static> WindowAssigner<T> for EventTimeSessionWindows<T> {
    type W = TimeWindow;
    fn assign_windows(&self, element: &T, timestamp: i64, _: i64, out: &mut Vec<TimeWindow>) {
        out.push(TimeWindow::new(
            timestamp,
            timestamp.saturating_add((self.gap)(element).max(1)),
        ));
    }
    type DefaultTrigger = EventTimeTrigger;
    fn default_trigger(&self) -> EventTimeTrigger {
        EventTimeTrigger
    }
    fn is_event_time(&self) -> bool {
        true
    }
    fn is_merging(&self) -> bool {
        true
    }
    fn merge_windows(&self, windows: &[TimeWindow]) -> Vec<(TimeWindow, Vec<TimeWindow>)> {
        merge_time_windows(windows)
    }
    fn describe(&self) -> String {
        "EventTimeSessionWindows".into()
    }
}

/// Session windows in processing time.
pub struct ProcessingTimeSessionWindows<T> {
    gap: GapFn<T>,
}

impl<T> ProcessingTimeSessionWindows<T> {
    pub fn with_gap(gap: Duration) -> Self {
        let g = millis(gap).max(1);
        ProcessingTimeSessionWindows {
            gap: Arc::new(move |_| g),
        }
    }
    pub fn with_dynamic_gap(gap: impl Fn(&T) -> i64 + Send + Sync + 'static) -> Self {
        ProcessingTimeSessionWindows { gap: Arc::new(gap) }
    }
}

impl<T: 'static> WindowAssigner<T> for ProcessingTimeSessionWindows<T> {
    type W = TimeWindow;
    fn assign_windows(&self, element: &T, _: i64, now: i64, out: &mut Vec<TimeWindow>) {
        out.push(TimeWindow::new(
            now,
            now.saturating_add((self.gap)(element).max(1)),
        ));
    }
    type DefaultTrigger = ProcessingTimeTrigger;
    fn default_trigger(&self) -> ProcessingTimeTrigger {
        ProcessingTimeTrigger
    }
    fn is_event_time(&self) -> bool {
        false
    }
    fn is_merging(&self) -> bool {
        true
    }
    fn merge_windows(&self, windows: &[TimeWindow]) -> Vec<(TimeWindow, Vec<TimeWindow>)> {
        merge_time_windows(windows)
    }
    fn describe(&self) -> String {
        "ProcessingTimeSessionWindows".into()
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

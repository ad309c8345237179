//! Triggers: when a window's result is emitted (Flink's `Trigger`s).
//!
//! A trigger is a stateless policy; what it must remember per key and window lives in its
//! `State` type, kept by the window operator (so it is keyed state like any other). The
//! trigger type is part of the window operator's type, so the default triggers cost no
//! virtual call per record.

use crate::state::heap::NsTable;
use crate::windows::Window;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// What to do with a window after an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TriggerResult {
    /// Nothing.
    Continue,
    /// Emit the window's result and keep its contents.
    Fire,
    /// Drop the window's contents.
    Purge,
    /// Emit the result, then drop the contents.
    FireAndPurge,
}

impl TriggerResult {
    pub fn is_fire(self) -> bool {
        matches!(self, TriggerResult::Fire | TriggerResult::FireAndPurge)
    }
    pub fn is_purge(self) -> bool {
        matches!(self, TriggerResult::Purge | TriggerResult::FireAndPurge)
    }
}

/// Timers of the current key, by window.
pub(crate) trait WindowTimers<W> {
    fn register_event_time(&mut self, window: &W, time: i64);
    fn register_processing_time(&mut self, window: &W, time: i64);
    fn delete_event_time(&mut self, window: &W, time: i64);
    fn delete_processing_time(&mut self, window: &W, time: i64);
}

/// What a trigger can do for the current key and window.
pub struct TriggerContext<'a, W, S> {
    pub(crate) window: &'a W,
    pub(crate) timers: &'a mut dyn WindowTimers<W>,
    pub(crate) state: &'a dyn NsTable<W, S>,
    pub(crate) watermark: i64,
    pub(crate) clock: &'a crate::runtime::context::Clock,
}

impl<W: Window, S: Clone + Default> TriggerContext<'_, W, S> {
    pub fn current_watermark(&self) -> i64 {
        self.watermark
    }
    pub fn current_processing_time(&self) -> i64 {
        self.clock.now()
    }
    /// Calls `on_event_time` for this window when the watermark reaches `time`.
    pub fn register_event_time_timer(&mut self, time: i64) {
        self.timers.register_event_time(self.window, time);
    }
    /// Calls `on_processing_time` for this window at processing time `time`.
    pub fn register_processing_time_timer(&mut self, time: i64) {
        self.timers.register_processing_time(self.window, time);
    }
    pub fn delete_event_time_timer(&mut self, time: i64) {
        self.timers.delete_event_time(self.window, time);
    }
    pub fn delete_processing_time_timer(&mut self, time: i64) {
        self.timers.delete_processing_time(self.window, time);
    }
    /// The trigger's state for this key and window (its default when unset).
    pub fn state(&self) -> S {
        self.state.get(self.window).unwrap_or_default()
    }
    pub fn set_state(&mut self, value: S) {
        self.state.put(self.window, value);
    }
    pub fn clear_state(&mut self) {
        self.state.remove(self.window);
    }
    /// In `on_merge`: the state of one of the windows being merged (and removes it).
    pub fn take_state_of(&mut self, window: &W) -> Option<S> {
        self.state.remove(window)
    }
}

/// Decides when windows fire (Flink's `Trigger`).
pub trait Trigger<T, W: Window>: Clone + Send + Sync + 'static {
    /// What the trigger remembers per key and window; `()` for none.
    type State: Clone + Default + Send + Serialize + DeserializeOwned + 'static;

    fn on_element(
        &self,
        element: &T,
        timestamp: i64,
        window: &W,
        ctx: &mut TriggerContext<'_, W, Self::State>,
    ) -> TriggerResult;
    fn on_event_time(
        &self,
        time: i64,
        window: &W,
        ctx: &mut TriggerContext<'_, W, Self::State>,
    ) -> TriggerResult;
    fn on_processing_time(
        &self,
        time: i64,
        window: &W,
        ctx: &mut TriggerContext<'_, W, Self::State>,
    ) -> TriggerResult;
    /// Whether the trigger supports merging windows (sessions).
    fn can_merge(&self) -> bool {
        false
    }
    /// `merged` windows became `window`: combine their state and re-register timers.
    fn on_merge(&self, _window: &W, _merged: &[W], _ctx: &mut TriggerContext<'_, W, Self::State>) {}
    /// The window is gone: delete its timers and state.
    fn clear(&self, window: &W, ctx: &mut TriggerContext<'_, W, Self::State>);
    fn describe(&self) -> String;
}

/// Fires when the watermark passes the end of the window (the default in event time);
/// again for every allowed-late record.
#[derive(Clone, Copy, Debug, Default)]
pub struct EventTimeTrigger;

impl<T, W: Window> Trigger<T, W> for EventTimeTrigger {
    type State = ();
    #[inline]
    fn on_element(
        &self,
        _: &T,
        _: i64,
        window: &W,
        ctx: &mut TriggerContext<'_, W, ()>,
    ) -> TriggerResult {
        if window.max_timestamp() <= ctx.watermark {
            // Late but within allowed lateness: fire at once with the updated contents.
            TriggerResult::Fire
        } else {
            ctx.register_event_time_timer(window.max_timestamp());
            TriggerResult::Continue
        }
    }
    fn on_event_time(
        &self,
        time: i64,
        window: &W,
        _: &mut TriggerContext<'_, W, ()>,
    ) -> TriggerResult {
        if time == window.max_timestamp() {
            TriggerResult::Fire
        } else {
            TriggerResult::Continue
        }
    }
    fn on_processing_time(
        &self,
        _: i64,
        _: &W,
        _: &mut TriggerContext<'_, W, ()>,
    ) -> TriggerResult {
        TriggerResult::Continue
    }
    fn can_merge(&self) -> bool {
        true
    }
    fn on_merge(&self, window: &W, _: &[W], ctx: &mut TriggerContext<'_, W, ()>) {
        if window.max_timestamp() > ctx.watermark {
            ctx.register_event_time_timer(window.max_timestamp());
        }
    }
    fn clear(&self, window: &W, ctx: &mut TriggerContext<'_, W, ()>) {
        ctx.delete_event_time_timer(window.max_timestamp());
    }
    fn describe(&self) -> String {
        "EventTimeTrigger".into()
    }
}

/// Fires when processing time passes the end of the window.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessingTimeTrigger;

impl<T, W: Window> Trigger<T, W> for ProcessingTimeTrigger {
    type State = ();
    fn on_element(
        &self,
        _: &T,
        _: i64,
        window: &W,
        ctx: &mut TriggerContext<'_, W, ()>,
    ) -> TriggerResult {
        ctx.register_processing_time_timer(window.max_timestamp());
        TriggerResult::Continue
    }
    fn on_event_time(&self, _: i64, _: &W, _: &mut TriggerContext<'_, W, ()>) -> TriggerResult {
        TriggerResult::Continue
    }
    fn on_processing_time(
        &self,
        _: i64,
        _: &W,
        _: &mut TriggerContext<'_, W, ()>,
    ) -> TriggerResult {
        TriggerResult::Fire
    }
    fn can_merge(&self) -> bool {
        true
    }
    fn on_merge(&self, window: &W, _: &[W], ctx: &mut TriggerContext<'_, W, ()>) {
        if window.max_timestamp() > ctx.current_processing_time() {
            ctx.register_processing_time_timer(window.max_timestamp());
        }
    }
    fn clear(&self, window: &W, ctx: &mut TriggerContext<'_, W, ()>) {
        ctx.delete_processing_time_timer(window.max_timestamp());
    }
    fn describe(&self) -> String {
        "ProcessingTimeTrigger".into()
    }
}

/// Never fires (the default of global windows).
#[derive(Clone, Copy, Debug, Default)]
pub struct NeverTrigger;

impl<T, W: Window> Trigger<T, W> for NeverTrigger {
    type State = ();
    fn on_element(&self, _: &T, _: i64, _: &W, _: &mut TriggerContext<'_, W, ()>) -> TriggerResult {
        TriggerResult::Continue
    }
    fn on_event_time(&self, _: i64, _: &W, _: &mut TriggerContext<'_, W, ()>) -> TriggerResult {
        TriggerResult::Continue
    }
    fn on_processing_time(
        &self,
        _: i64,
        _: &W,
        _: &mut TriggerContext<'_, W, ()>,
    ) -> TriggerResult {
        TriggerResult::Continue
    }
    fn can_merge(&self) -> bool {
        true
    }
    fn clear(&self, _: &W, _: &mut TriggerContext<'_, W, ()>) {}
    fn describe(&self) -> String {
        "NeverTrigger".into()
    }
}

/// Fires every `count` records of a window.
#[derive(Clone, Copy, Debug)]
pub struct CountTrigger {
    count: u64,
}

impl CountTrigger {
    pub fn of(count: u64) -> Self {
        CountTrigger {
            count: count.max(1),
        }
    }
}

impl<T, W: Window> Trigger<T, W> for CountTrigger {
    type State = u64;
    fn on_element(
        &self,
        _: &T,
        _: i64,
        _: &W,
        ctx: &mut TriggerContext<'_, W, u64>,
    ) -> TriggerResult {
        let seen = ctx.state() + 1;
        if seen >= self.count {
            ctx.clear_state();
            TriggerResult::Fire
        } else {
            ctx.set_state(seen);
            TriggerResult::Continue
        }
    }
    fn on_event_time(&self, _: i64, _: &W, _: &mut TriggerContext<'_, W, u64>) -> TriggerResult {
        TriggerResult::Continue
    }
    fn on_processing_time(
        &self,
        _: i64,
        _: &W,
        _: &mut TriggerContext<'_, W, u64>,
    ) -> TriggerResult {
        TriggerResult::Continue
    }
    fn can_merge(&self) -> bool {
        true
    }
    fn on_merge(&self, _: &W, merged: &[W], ctx: &mut TriggerContext<'_, W, u64>) {
        let mut total = ctx.state();
        for w in merged {
            total += ctx.take_state_of(w).unwrap_or(0);
        }
        if total > 0 {
            ctx.set_state(total);
        }
    }
    fn clear(&self, _: &W, ctx: &mut TriggerContext<'_, W, u64>) {
        ctx.clear_state();
    }
    fn describe(&self) -> String {
        format!("CountTrigger({})", self.count)
    }
}

/// Makes another trigger purge the window whenever it fires.
#[derive(Clone, Copy, Debug)]
pub struct PurgingTrigger<Tr> {
    inner: Tr,
}

impl<Tr> PurgingTrigger<Tr> {
    pub fn of(inner: Tr) -> Self {
        PurgingTrigger { inner }
    }
}

fn purging(r: TriggerResult) -> TriggerResult {
    if r.is_fire() {
        TriggerResult::FireAndPurge
    } else {
        r
    }
}

impl<T, W: Window, Tr: Trigger<T, W>> Trigger<T, W> for PurgingTrigger<Tr> {
    type State = Tr::State;
    fn on_element(
        &self,
        e: &T,
        ts: i64,
        w: &W,
        ctx: &mut TriggerContext<'_, W, Tr::State>,
    ) -> TriggerResult {
        purging(self.inner.on_element(e, ts, w, ctx))
    }
    fn on_event_time(
        &self,
        time: i64,
        w: &W,
        ctx: &mut TriggerContext<'_, W, Tr::State>,
    ) -> TriggerResult {
        purging(self.inner.on_event_time(time, w, ctx))
    }
    fn on_processing_time(
        &self,
        time: i64,
        w: &W,
        ctx: &mut TriggerContext<'_, W, Tr::State>,
    ) -> TriggerResult {
        purging(self.inner.on_processing_time(time, w, ctx))
    }
    fn can_merge(&self) -> bool {
        self.inner.can_merge()
    }
    fn on_merge(&self, w: &W, merged: &[W], ctx: &mut TriggerContext<'_, W, Tr::State>) {
        self.inner.on_merge(w, merged, ctx)
    }
    fn clear(&self, w: &W, ctx: &mut TriggerContext<'_, W, Tr::State>) {
        self.inner.clear(w, ctx)
    }
    fn describe(&self) -> String {
        format!("PurgingTrigger({})", self.inner.describe())
    }
}

/// Fires every `interval` of event time while the window is open (early results), and at
/// its end.
#[derive(Clone, Copy, Debug)]
pub struct ContinuousEventTimeTrigger {
    interval: i64,
}

impl ContinuousEventTimeTrigger {
    pub fn of(interval: std::time::Duration) -> Self {
        ContinuousEventTimeTrigger {
            interval: (interval.as_millis() as i64).max(1),
        }
    }
}

impl<T, W: Window> Trigger<T, W> for ContinuousEventTimeTrigger {
    /// The next early firing time.
    type State = Option<i64>;
    fn on_element(
        &self,
        _: &T,
        timestamp: i64,
        window: &W,
        ctx: &mut TriggerContext<'_, W, Option<i64>>,
    ) -> TriggerResult {
        if window.max_timestamp() <= ctx.watermark {
            return TriggerResult::Fire;
        }
        ctx.register_event_time_timer(window.max_timestamp());
        if ctx.state().is_none() {
            let start = timestamp - timestamp.rem_euclid(self.interval);
            let next = start + self.interval;
            ctx.register_event_time_timer(next);
            ctx.set_state(Some(next));
        }
        TriggerResult::Continue
    }
    fn on_event_time(
        &self,
        time: i64,
        window: &W,
        ctx: &mut TriggerContext<'_, W, Option<i64>>,
    ) -> TriggerResult {
        if time == window.max_timestamp() {
            return TriggerResult::Fire;
        }
        if ctx.state() == Some(time) {
            let next = time + self.interval;
            ctx.set_state(Some(next));
            ctx.register_event_time_timer(next);
            return TriggerResult::Fire;
        }
        TriggerResult::Continue
    }
    fn on_processing_time(
        &self,
        _: i64,
        _: &W,
        _: &mut TriggerContext<'_, W, Option<i64>>,
    ) -> TriggerResult {
        TriggerResult::Continue
    }
    fn can_merge(&self) -> bool {
        true
    }
    fn on_merge(&self, window: &W, merged: &[W], ctx: &mut TriggerContext<'_, W, Option<i64>>) {
        let mut next = ctx.state();
        for w in merged {
            if let Some(Some(t)) = ctx.take_state_of(w) {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        }
        if let Some(t) = next {
            ctx.set_state(Some(t));
            ctx.register_event_time_timer(t);
        }
        if window.max_timestamp() > ctx.watermark {
            ctx.register_event_time_timer(window.max_timestamp());
        }
    }
    fn clear(&self, window: &W, ctx: &mut TriggerContext<'_, W, Option<i64>>) {
        if let Some(t) = ctx.state() {
            ctx.delete_event_time_timer(t);
        }
        ctx.delete_event_time_timer(window.max_timestamp());
        ctx.clear_state();
    }
    fn describe(&self) -> String {
        format!("ContinuousEventTimeTrigger({}ms)", self.interval)
    }
}

/// Fires every `interval` of processing time while the window is open.
#[derive(Clone, Copy, Debug)]
pub struct ContinuousProcessingTimeTrigger {
    interval: i64,
}

impl ContinuousProcessingTimeTrigger {
    pub fn of(interval: std::time::Duration) -> Self {
        ContinuousProcessingTimeTrigger {
            interval: (interval.as_millis() as i64).max(1),
        }
    }
}

impl<T, W: Window> Trigger<T, W> for ContinuousProcessingTimeTrigger {
    type State = Option<i64>;
    fn on_element(
        &self,
        _: &T,
        _: i64,
        window: &W,
        ctx: &mut TriggerContext<'_, W, Option<i64>>,
    ) -> TriggerResult {
        if ctx.state().is_none() {
            let now = ctx.current_processing_time();
            let start = now - now.rem_euclid(self.interval);
            let next = (start + self.interval).min(window.max_timestamp());
            ctx.register_processing_time_timer(next);
            ctx.set_state(Some(next));
        }
        TriggerResult::Continue
    }
    fn on_event_time(
        &self,
        _: i64,
        _: &W,
        _: &mut TriggerContext<'_, W, Option<i64>>,
    ) -> TriggerResult {
        TriggerResult::Continue
    }
    fn on_processing_time(
        &self,
        time: i64,
        window: &W,
        ctx: &mut TriggerContext<'_, W, Option<i64>>,
    ) -> TriggerResult {
        if ctx.state() == Some(time) {
            if time < window.max_timestamp() {
                let next = (time + self.interval).min(window.max_timestamp());
                ctx.set_state(Some(next));
                ctx.register_processing_time_timer(next);
            } else {
                ctx.clear_state();
            }
            return TriggerResult::Fire;
        }
        TriggerResult::Continue
    }
    fn clear(&self, _: &W, ctx: &mut TriggerContext<'_, W, Option<i64>>) {
        if let Some(t) = ctx.state() {
            ctx.delete_processing_time_timer(t);
        }
        ctx.clear_state();
    }
    fn describe(&self) -> String {
        format!("ContinuousProcessingTimeTrigger({}ms)", self.interval)
    }
}

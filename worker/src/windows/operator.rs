//! The window operator (Flink's `WindowOperator`): assigns each record to windows, keeps
//! their contents as keyed state (namespace = window), asks the trigger when to emit,
//! cleans windows up once the watermark passes their end plus the allowed lateness, and
//! sends records that come later than that to the late-data side output.

use crate::error::{Position, TaskResult};
use crate::functions::Collector;
use crate::operators::keyed_process::{KeySelector, set_key};
use crate::operators::{OpBase, forward_control};
use crate::record::{Batch, Data, Key, NO_TIMESTAMP, StreamRecord, TimeDomain};
use crate::runtime::consumer::Consumer;
use crate::runtime::context::guard;
use crate::runtime::output::OutputTag;
use crate::state::backend::KeyedBackend;
use crate::state::heap::{KeyContext, NsTable};
use crate::state::timers::Timers;
use crate::windows::Window;
use crate::windows::assigners::WindowAssigner;
use crate::windows::functions::{WindowContext, WindowLogic};
use crate::windows::merging::{Merge, MergingWindowSet};
use crate::windows::triggers::{Trigger, TriggerContext, WindowTimers};
use std::borrow::Cow;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// The current key's timers, by window.
struct KeyTimers<'a, K, W> {
    key: &'a KeyContext<K>,
    timers: &'a mut Timers<K, W>,
}

impl<K: Key, W: Window> WindowTimers<W> for KeyTimers<'_, K, W> {
    fn register_event_time(&mut self, window: &W, time: i64) {
        if let Some(k) = self.key.key().as_ref() {
            self.timers.event.register(self.key.hash(), k, window, time);
        }
    }
    fn register_processing_time(&mut self, window: &W, time: i64) {
        if let Some(k) = self.key.key().as_ref() {
            self.timers
                .register_processing(self.key.hash(), k, window, time);
        }
    }
    fn delete_event_time(&mut self, window: &W, time: i64) {
        if let Some(k) = self.key.key().as_ref() {
            self.timers.event.delete(self.key.hash(), k, window, time);
        }
    }
    fn delete_processing_time(&mut self, window: &W, time: i64) {
        if let Some(k) = self.key.key().as_ref() {
            self.timers
                .processing
                .delete(self.key.hash(), k, window, time);
        }
    }
}

/// Per key: every live merging window and its state window.
type MergingTable<W> = dyn NsTable<(), Vec<(W, W)>>;

pub(crate) struct WindowSettings<T> {
    pub allowed_lateness: i64,
    pub late_tag: Option<OutputTag<T>>,
}

pub(crate) struct WindowOperator<K, T, O, A, Tr, L>
where
    A: WindowAssigner<T>,
    Tr: Trigger<T, A::W>,
    L: WindowLogic<K, T, A::W, O>,
{
    base: OpBase<O>,
    assigner: Arc<A>,
    trigger: Tr,
    logic: L,
    key_selector: KeySelector<T, K>,
    backend: KeyedBackend<K>,
    timers: Timers<K, A::W>,
    contents: Rc<dyn NsTable<A::W, L::Acc>>,
    trigger_state: Rc<dyn NsTable<A::W, Tr::State>>,
    merging: Option<Rc<MergingTable<A::W>>>,
    settings: WindowSettings<T>,
    is_event_time: bool,
    windows: Vec<A::W>,
}

impl<K, T, O, A, Tr, L> WindowOperator<K, T, O, A, Tr, L>
where
    K: Key,
    T: Data,
    O: Data,
    A: WindowAssigner<T>,
    Tr: Trigger<T, A::W>,
    L: WindowLogic<K, T, A::W, O>,
{
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        base: OpBase<O>,
        assigner: Arc<A>,
        trigger: Tr,
        logic: L,
        key_selector: KeySelector<T, K>,
        backend: KeyedBackend<K>,
        timers: Timers<K, A::W>,
        settings: WindowSettings<T>,
    ) -> Self {
        let contents = backend.table::<A::W, L::Acc>(&Cow::Borrowed("window-contents"), None);
        let trigger_state = backend.table::<A::W, Tr::State>(&Cow::Borrowed("trigger-state"), None);
        let merging = assigner.is_merging().then(|| {
            backend.table::<(), Vec<(A::W, A::W)>>(&Cow::Borrowed("merging-window-set"), None)
        });
        let is_event_time = assigner.is_event_time();
        WindowOperator {
            base,
            assigner,
            trigger,
            logic,
            key_selector,
            backend,
            timers,
            contents,
            trigger_state,
            merging,
            settings,
            is_event_time,
            windows: Vec::new(),
        }
    }

    pub(crate) fn open(&mut self) -> TaskResult {
        let logic = &mut self.logic;
        self.base.open_with(|rc| logic.open(rc))
    }

    fn cleanup_time(&self, window: &A::W) -> i64 {
        if self.is_event_time {
            window
                .max_timestamp()
                .saturating_add(self.settings.allowed_lateness)
        } else {
            window.max_timestamp()
        }
    }

    fn is_window_late(&self, window: &A::W) -> bool {
        self.is_event_time && self.cleanup_time(window) <= self.base.watermark
    }

    /// Runs `f` with a trigger context for `window`.
    fn with_trigger<R>(
        &mut self,
        window: &A::W,
        f: impl FnOnce(&Tr, &mut TriggerContext<'_, A::W, Tr::State>) -> R,
    ) -> R {
        let mut timers = KeyTimers {
            key: &self.backend.key,
            timers: &mut self.timers,
        };
        let mut ctx = TriggerContext {
            window,
            timers: &mut timers,
            state: &*self.trigger_state,
            watermark: self.base.watermark,
            clock: &self.base.services.clock,
        };
        f(&self.trigger, &mut ctx)
    }

    fn register_cleanup_timer(&mut self, window: &A::W) {
        let t = self.cleanup_time(window);
        if t == i64::MAX {
            return;
        }
        let key = self.backend.key.key();
        if let Some(k) = key.as_ref() {
            if self.is_event_time {
                self.timers
                    .event
                    .register(self.backend.key.hash(), k, window, t);
            } else {
                self.timers
                    .register_processing(self.backend.key.hash(), k, window, t);
            }
        }
    }

    fn delete_cleanup_timer(&mut self, window: &A::W) {
        let t = self.cleanup_time(window);
        if t == i64::MAX {
            return;
        }
        let key = self.backend.key.key();
        if let Some(k) = key.as_ref() {
            if self.is_event_time {
                self.timers
                    .event
                    .delete(self.backend.key.hash(), k, window, t);
            } else {
                self.timers
                    .processing
                    .delete(self.backend.key.hash(), k, window, t);
            }
        }
    }

    /// Emits the result of `window`, whose contents are under `state_window`.
    fn emit(&mut self, window: &A::W, state_window: &A::W) {
        let Some(key) = self.backend.key.current() else {
            return;
        };
        let contents = self.contents.clone();
        let base = &mut self.base;
        let logic = &mut self.logic;
        let backend = &self.backend;
        let clock = base.services.clock.clone();
        let mut now_empty = false;
        contents.modify(state_window, &mut |acc| {
            if let Some(acc) = acc {
                let mut ctx = WindowContext {
                    window,
                    watermark: base.watermark,
                    clock: &clock,
                    sides: &mut base.out.sides,
                    backend,
                };
                let mut out = Collector::new(&mut base.out.buf, window.max_timestamp());
                if logic.emit(&key, acc, &mut ctx, &mut out) && logic.is_empty(acc) {
                    now_empty = true;
                }
            }
            None
        });
        if now_empty {
            contents.remove(state_window);
        }
    }

    /// Adds a record to a window's contents; returns whether the contents are new.
    fn add(&mut self, state_window: &A::W, record: StreamRecord<T>) -> bool {
        let mut record = Some(record);
        let logic = &self.logic;
        let mut created = false;
        self.contents.modify(state_window, &mut |acc| {
            let fresh = acc.is_none();
            let new = record.take().and_then(|r| logic.add(acc, r));
            created = fresh && new.is_some();
            new
        });
        created
    }

    fn on_record(&mut self, record: StreamRecord<T>) -> TaskResult {
        set_key(
            &self.backend,
            &self.base.info,
            (self.key_selector)(&record.value),
        )?;
        if self.is_event_time && record.timestamp == NO_TIMESTAMP {
            return Err(self.base.info.error(
                "an event-time window got a record without a timestamp; give the stream timestamps \
                 with a WatermarkStrategy (env.from_source(..) or assign_timestamps_and_watermarks(..)), \
                 or use processing-time windows",
            ));
        }
        let now = if self.is_event_time {
            0
        } else {
            self.base.services.clock.now()
        };
        let mut windows = std::mem::take(&mut self.windows);
        windows.clear();
        self.assigner
            .assign_windows(&record.value, record.timestamp, now, &mut windows);
        let unused = if self.merging.is_some() {
            let skipped = self.on_record_merging(&windows, &record)?;
            skipped.then_some(record)
        } else {
            self.on_record_plain(&windows, record)
        };
        self.windows = windows;
        if let Some(record) = unused
            && self.is_event_time
            && record
                .timestamp
                .saturating_add(self.settings.allowed_lateness)
                <= self.base.watermark
        {
            self.base
                .info
                .metrics
                .late_records
                .fetch_add(1, Ordering::Relaxed);
            if let Some(tag) = &self.settings.late_tag {
                self.base
                    .out
                    .sides
                    .emit(tag, record.value, record.timestamp);
            }
        }
        Ok(())
    }

    /// Returns whether every window was late.
    /// Adds the record to its windows; gives it back if every window was late.
    fn on_record_plain(
        &mut self,
        windows: &[A::W],
        record: StreamRecord<T>,
    ) -> Option<StreamRecord<T>> {
        // The last window that takes the record gets it moved, the others a copy.
        let Some(last) = windows.iter().rposition(|w| !self.is_window_late(w)) else {
            return Some(record);
        };
        let mut record = Some(record);
        for (i, w) in windows.iter().enumerate().take(last + 1) {
            if self.is_window_late(w) {
                continue;
            }
            let Some(r) = record.as_ref() else { break };
            let result = self.with_trigger(w, |t, ctx| t.on_element(&r.value, r.timestamp, w, ctx));
            let r = if i == last {
                record.take()
            } else {
                record.clone()
            };
            let Some(r) = r else { break };
            let created = self.add(w, r);
            if result.is_fire() {
                self.emit(w, w);
            }
            if result.is_purge() {
                self.contents.remove(w);
            }
            // The cleanup timer lives until the window is cleaned up, so registering it
            // once, with the window's first contents, is enough (Flink re-registers it on
            // every record; timers are deduplicated, so the effect is the same).
            if created {
                self.register_cleanup_timer(w);
            }
        }
        None
    }

    fn load_merging_set(&self) -> MergingWindowSet<A::W> {
        let mapping = self
            .merging
            .as_ref()
            .and_then(|t| t.get(&()))
            .unwrap_or_default();
        MergingWindowSet::new(mapping)
    }

    fn store_merging_set(&self, set: MergingWindowSet<A::W>) {
        if let Some(t) = &self.merging {
            if set.mapping.is_empty() {
                t.remove(&());
            } else {
                t.put(&(), set.mapping);
            }
        }
    }

    fn on_record_merging(
        &mut self,
        windows: &[A::W],
        record: &StreamRecord<T>,
    ) -> TaskResult<bool> {
        let mut set = self.load_merging_set();
        let mut skipped = true;
        for w in windows {
            let assigner = self.assigner.clone();
            let (actual, merges) = set.add_window(w.clone(), |ws| assigner.merge_windows(ws));
            for m in merges {
                self.apply_merge(m)?;
            }
            if self.is_window_late(&actual) {
                set.retire(&actual);
                continue;
            }
            skipped = false;
            let Some(state_window) = set.state_window(&actual) else {
                return Err(self
                    .base
                    .info
                    .error("internal error: merged window without state window"));
            };
            let result = self.with_trigger(&actual, |t, ctx| {
                t.on_element(&record.value, record.timestamp, &actual, ctx)
            });
            self.add(&state_window, record.clone());
            if result.is_fire() {
                self.emit(&actual, &state_window);
            }
            if result.is_purge() {
                self.contents.remove(&state_window);
            }
            self.register_cleanup_timer(&actual);
        }
        self.store_merging_set(set);
        Ok(skipped)
    }

    fn apply_merge(&mut self, m: Merge<A::W>) -> TaskResult {
        if self.is_window_late(&m.result) {
            return Err(self.base.info.error(format!(
                "internal error: windows merged into {:?}, which ends before the watermark {}",
                m.result, self.base.watermark
            )));
        }
        let merged = m.merged.clone();
        self.with_trigger(&m.result, |t, ctx| t.on_merge(&m.result, &merged, ctx));
        for w in &m.merged {
            self.with_trigger(w, |t, ctx| t.clear(w, ctx));
            self.delete_cleanup_timer(w);
        }
        for sw in &m.merged_state {
            if let Some(acc) = self.contents.remove(sw) {
                let mut acc = Some(acc);
                let logic = &self.logic;
                self.contents
                    .modify(&m.result_state, &mut |target| match target {
                        Some(target) => {
                            if let Some(a) = acc.take() {
                                logic.merge(target, a);
                            }
                            None
                        }
                        None => acc.take(),
                    });
            }
        }
        Ok(())
    }

    fn on_timer(&mut self, domain: TimeDomain, time: i64, key: K, window: A::W) -> TaskResult {
        set_key(&self.backend, &self.base.info, key)?;
        let mut set = self.merging.is_some().then(|| self.load_merging_set());
        let state_window = match &set {
            Some(s) => match s.state_window(&window) {
                Some(sw) => sw,
                // The window was merged into another; its timer is stale.
                None => return Ok(()),
            },
            None => window.clone(),
        };
        let result = self.with_trigger(&window, |t, ctx| match domain {
            TimeDomain::EventTime => t.on_event_time(time, &window, ctx),
            TimeDomain::ProcessingTime => t.on_processing_time(time, &window, ctx),
        });
        if result.is_fire() {
            self.emit(&window, &state_window);
        }
        if result.is_purge() {
            self.contents.remove(&state_window);
        }
        let cleanup_domain = if self.is_event_time {
            TimeDomain::EventTime
        } else {
            TimeDomain::ProcessingTime
        };
        if domain == cleanup_domain && self.cleanup_time(&window) == time {
            self.clear_all_state(&window, &state_window, set.as_mut());
        }
        if let Some(s) = set {
            self.store_merging_set(s);
        }
        Ok(())
    }

    fn clear_all_state(
        &mut self,
        window: &A::W,
        state_window: &A::W,
        set: Option<&mut MergingWindowSet<A::W>>,
    ) {
        self.contents.remove(state_window);
        self.with_trigger(window, |t, ctx| t.clear(window, ctx));
        let clock = self.base.services.clock.clone();
        let mut ctx = WindowContext {
            window,
            watermark: self.base.watermark,
            clock: &clock,
            sides: &mut self.base.out.sides,
            backend: &self.backend,
        };
        self.logic.clear(&mut ctx);
        if let Some(s) = set {
            s.retire(window);
        }
    }

    fn fire(&mut self, domain: TimeDomain, time: i64) -> TaskResult {
        loop {
            let due = match domain {
                TimeDomain::EventTime => self.timers.event.pop_due(time),
                TimeDomain::ProcessingTime => self.timers.processing.pop_due(time),
            };
            let Some((t, key, window)) = due else { break };
            let info = self.base.info.clone();
            guard!(
                info,
                Position::Timer {
                    domain,
                    timestamp: t
                },
                { self.on_timer(domain, t, key, window) }
            )?;
        }
        if domain == TimeDomain::ProcessingTime {
            self.timers.request_wakeup();
        }
        self.base.out.flush()
    }
}

impl<K, T, O, A, Tr, L> Consumer<T> for WindowOperator<K, T, O, A, Tr, L>
where
    K: Key,
    T: Data,
    O: Data,
    A: WindowAssigner<T>,
    Tr: Trigger<T, A::W>,
    L: WindowLogic<K, T, A::W, O>,
{
    fn process_batch(&mut self, batch: &mut Batch<T>) -> TaskResult {
        self.base.info.metrics.add_in(0, batch.len());
        let info = self.base.info.clone();
        guard!(info, Position::Record(self.base.seen[0]), {
            for r in batch.drain(..) {
                self.base.seen[0] += 1;
                self.on_record(r)?;
            }
            Ok(())
        })?;
        self.base.out.flush()
    }

    forward_control!(end: end_input, timers: yes, close: logic);
}

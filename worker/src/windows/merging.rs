//! The merging-window bookkeeping of one key (Flink's `MergingWindowSet`).
//!
//! Session windows grow and merge as records arrive. Rather than moving window contents
//! on every merge, each window keeps the contents of one of the windows it absorbed: its
//! *state window*. The set maps every live window to its state window.

use crate::windows::Window;

/// A merge the window operator must carry out: `merged` windows became `result`; their
/// contents (in `merged_state`) go into `result_state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Merge<W> {
    pub result: W,
    pub merged: Vec<W>,
    pub result_state: W,
    pub merged_state: Vec<W>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MergingWindowSet<W> {
    /// (window, state window)
    pub mapping: Vec<(W, W)>,
}

// Not derived: that would require `W: Default`, which windows need not be.
impl<W> Default for MergingWindowSet<W> {
    fn default() -> Self {
        MergingWindowSet {
            mapping: Vec::new(),
        }
    }
}

impl<W: Window> MergingWindowSet<W> {
    pub(crate) fn new(mapping: Vec<(W, W)>) -> Self {
        MergingWindowSet { mapping }
    }

    fn get(&self, window: &W) -> Option<&W> {
        self.mapping
            .iter()
            .find(|(w, _)| w == window)
            .map(|(_, s)| s)
    }

    fn remove(&mut self, window: &W) -> Option<W> {
        let i = self.mapping.iter().position(|(w, _)| w == window)?;
        Some(self.mapping.swap_remove(i).1)
    }

    fn put(&mut self, window: W, state: W) {
        match self.mapping.iter_mut().find(|(w, _)| *w == window) {
            Some(entry) => entry.1 = state,
            None => self.mapping.push((window, state)),
        }
    }

    /// The state window of a live window.
    pub(crate) fn state_window(&self, window: &W) -> Option<W> {
        self.get(window).cloned()
    }

    /// Forgets a window (it was purged for good).
    pub(crate) fn retire(&mut self, window: &W) {
        self.remove(window);
    }

    /// Adds `new` and merges; returns the window `new` ended up in, and the merges to do.
    pub(crate) fn add_window(
        &mut self,
        new: W,
        merge_windows: impl Fn(&[W]) -> Vec<(W, Vec<W>)>,
    ) -> (W, Vec<Merge<W>>) {
        let mut windows: Vec<W> = self.mapping.iter().map(|(w, _)| w.clone()).collect();
        windows.push(new.clone());
        let groups = merge_windows(&windows);

        let mut result_window = new.clone();
        let mut merged_new = false;
        let mut merges = Vec::new();
        let no_groups = groups.is_empty();
        for (result, mut merged) in groups {
            if let Some(i) = merged.iter().position(|w| *w == new) {
                merged.remove(i);
                merged_new = true;
                result_window = result.clone();
            }
            let Some(result_state) = merged.first().and_then(|w| self.get(w)).cloned() else {
                continue;
            };
            let mut merged_state: Vec<W> = merged.iter().filter_map(|w| self.remove(w)).collect();
            self.put(result.clone(), result_state.clone());
            merged_state.retain(|s| *s != result_state);
            // Merging one existing window into itself (the new one fell inside it) needs
            // no state moved.
            if !(merged.len() == 1 && merged[0] == result) {
                merges.push(Merge {
                    result,
                    merged,
                    result_state,
                    merged_state,
                });
            }
        }
        if no_groups || (result_window == new && !merged_new) {
            self.put(result_window.clone(), result_window.clone());
        }
        (result_window, merges)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::windows::{TimeWindow, merge_time_windows};

    fn w(s: i64, e: i64) -> TimeWindow {
        TimeWindow::new(s, e)
    }

    #[test]
    fn separate_sessions_stay_apart_and_bridging_record_merges_them() {
        let mut set = MergingWindowSet::default();
        assert_eq!(
            set.add_window(w(0, 10), merge_time_windows),
            (w(0, 10), vec![])
        );
        assert_eq!(
            set.add_window(w(20, 30), merge_time_windows),
            (w(20, 30), vec![])
        );
        let (result, merges) = set.add_window(w(8, 22), merge_time_windows);
        assert_eq!(result, w(0, 30));
        assert_eq!(merges.len(), 1);
        let m = &merges[0];
        assert_eq!(m.result, w(0, 30));
        let mut merged = m.merged.clone();
        merged.sort();
        assert_eq!(merged, vec![w(0, 10), w(20, 30)]);
        // Contents of one old window stay where they are; the other's move there.
        assert_eq!(m.merged_state.len(), 1);
        assert_eq!(set.state_window(&w(0, 30)), Some(m.result_state));
        assert_eq!(set.mapping.len(), 1);
    }

    #[test]
    fn record_inside_a_session_keeps_the_session() {
        let mut set = MergingWindowSet::default();
        set.add_window(w(0, 10), merge_time_windows);
        let (result, merges) = set.add_window(w(2, 8), merge_time_windows);
        assert_eq!(result, w(0, 10));
        assert!(merges.is_empty());
        assert_eq!(set.state_window(&w(0, 10)), Some(w(0, 10)));
    }

    #[test]
    fn extending_a_session_moves_no_state() {
        let mut set = MergingWindowSet::default();
        set.add_window(w(0, 10), merge_time_windows);
        let (result, merges) = set.add_window(w(5, 15), merge_time_windows);
        assert_eq!(result, w(0, 15));
        assert_eq!(merges.len(), 1);
        assert_eq!(merges[0].merged, vec![w(0, 10)]);
        assert!(merges[0].merged_state.is_empty());
        assert_eq!(set.state_window(&w(0, 15)), Some(w(0, 10)));
    }
}

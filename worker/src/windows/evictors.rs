//! Evictors: remove records from a window's contents before and/or after its function
//! runs (Flink's `Evictor`s). A window with an evictor keeps every record (no incremental
//! aggregation), as in Flink.

use crate::record::StreamRecord;
use crate::windows::Window;
use std::sync::Arc;

/// Time when an evictor runs.
#[derive(Clone, Copy, Debug)]
pub struct EvictorContext {
    pub watermark: i64,
    pub processing_time: i64,
}

/// Removes records from a window's contents.
pub trait Evictor<T, W: Window>: Send + Sync + 'static {
    /// Before the window function sees the contents.
    fn evict_before(&self, elements: &mut Vec<StreamRecord<T>>, window: &W, ctx: &EvictorContext);
    /// After the window function saw the contents.
    fn evict_after(&self, elements: &mut Vec<StreamRecord<T>>, window: &W, ctx: &EvictorContext);
}

fn keep_last<T>(elements: &mut Vec<StreamRecord<T>>, max: usize) {
    if elements.len() > max {
        let excess = elements.len() - max;
        elements.drain(..excess);
    }
}

/// Keeps the last `count` records of a window.
#[derive(Clone, Copy, Debug)]
pub struct CountEvictor {
    count: usize,
    after: bool,
}

impl CountEvictor {
    /// Evicts before the window function.
    pub fn of(count: usize) -> Self {
        CountEvictor {
            count,
            after: false,
        }
    }
    /// Evicts after the window function.
    pub fn of_after(count: usize) -> Self {
        CountEvictor { count, after: true }
    }
}

impl<T, W: Window> Evictor<T, W> for CountEvictor {
    fn evict_before(&self, elements: &mut Vec<StreamRecord<T>>, _: &W, _: &EvictorContext) {
        if !self.after {
            keep_last(elements, self.count);
        }
    }
    fn evict_after(&self, elements: &mut Vec<StreamRecord<T>>, _: &W, _: &EvictorContext) {
        if self.after {
            keep_last(elements, self.count);
        }
    }
}

/// Keeps records whose timestamp is within `window` of the newest record's.
#[derive(Clone, Copy, Debug)]
pub struct TimeEvictor {
    window: i64,
    after: bool,
}

impl TimeEvictor {
    pub fn of(window: std::time::Duration) -> Self {
        TimeEvictor {
            window: window.as_millis() as i64,
            after: false,
        }
    }
    pub fn of_after(window: std::time::Duration) -> Self {
        TimeEvictor {
            window: window.as_millis() as i64,
            after: true,
        }
    }
    fn evict<T>(&self, elements: &mut Vec<StreamRecord<T>>) {
        let Some(newest) = elements.iter().filter_map(StreamRecord::timestamp).max() else {
            return;
        };
        let cutoff = newest - self.window;
        elements.retain(|r| r.timestamp().is_none_or(|t| t > cutoff));
    }
}

impl<T, W: Window> Evictor<T, W> for TimeEvictor {
    fn evict_before(&self, elements: &mut Vec<StreamRecord<T>>, _: &W, _: &EvictorContext) {
        if !self.after {
            self.evict(elements);
        }
    }
    fn evict_after(&self, elements: &mut Vec<StreamRecord<T>>, _: &W, _: &EvictorContext) {
        if self.after {
            self.evict(elements);
        }
    }
}

/// Evicts records whose distance (by a delta function) to the newest record is at least
/// `threshold`.
/// The distance between two records.
type DeltaFn<T> = Arc<dyn Fn(&T, &T) -> f64 + Send + Sync>;

pub struct DeltaEvictor<T> {
    threshold: f64,
    delta: DeltaFn<T>,
    after: bool,
}

impl<T> DeltaEvictor<T> {
    pub fn of(threshold: f64, delta: impl Fn(&T, &T) -> f64 + Send + Sync + 'static) -> Self {
        DeltaEvictor {
            threshold,
            delta: Arc::new(delta),
            after: false,
        }
    }
    pub fn of_after(threshold: f64, delta: impl Fn(&T, &T) -> f64 + Send + Sync + 'static) -> Self {
        DeltaEvictor {
            threshold,
            delta: Arc::new(delta),
            after: true,
        }
    }
    fn evict(&self, elements: &mut Vec<StreamRecord<T>>)
    where
        T: Clone,
    {
        let Some(last) = elements.last().map(|r| r.value.clone()) else {
            return;
        };
        elements.retain(|r| (self.delta)(&r.value, &last) < self.threshold);
    }
}

impl<T: Clone + Send + Sync + 'static, W: Window> Evictor<T, W> for DeltaEvictor<T> {
    fn evict_before(&self, elements: &mut Vec<StreamRecord<T>>, _: &W, _: &EvictorContext) {
        if !self.after {
            self.evict(elements);
        }
    }
    fn evict_after(&self, elements: &mut Vec<StreamRecord<T>>, _: &W, _: &EvictorContext) {
        if self.after {
            self.evict(elements);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::windows::GlobalWindow;

    fn recs(ts: &[i64]) -> Vec<StreamRecord<i64>> {
        ts.iter().map(|&t| StreamRecord::new(t, t)).collect()
    }
    const CTX: EvictorContext = EvictorContext {
        watermark: 0,
        processing_time: 0,
    };

    #[test]
    fn count_evictor_keeps_the_newest() {
        let mut v = recs(&[1, 2, 3, 4]);
        Evictor::<i64, GlobalWindow>::evict_before(
            &CountEvictor::of(2),
            &mut v,
            &GlobalWindow,
            &CTX,
        );
        assert_eq!(v, recs(&[3, 4]));
    }

    #[test]
    fn time_evictor_keeps_records_near_the_newest() {
        let mut v = recs(&[1_000, 5_000, 9_000, 10_000]);
        let e = TimeEvictor::of(std::time::Duration::from_millis(5_000));
        Evictor::<i64, GlobalWindow>::evict_before(&e, &mut v, &GlobalWindow, &CTX);
        assert_eq!(v, recs(&[9_000, 10_000]));
    }

    #[test]
    fn delta_evictor_drops_far_values() {
        let mut v = recs(&[1, 8, 9, 10]);
        let e = DeltaEvictor::of(3.0, |a: &i64, b: &i64| (a - b).abs() as f64);
        Evictor::<i64, GlobalWindow>::evict_before(&e, &mut v, &GlobalWindow, &CTX);
        assert_eq!(v, recs(&[8, 9, 10]));
    }
}

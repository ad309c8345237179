//! A deterministic data generator (Flink's `DataGeneratorSource`): record `i` is `f(i)`,
//! for a bounded count or forever, optionally at a fixed rate.
//!
//! Parallel readers split the sequence: with a count, subtask `s` of `p` generates the
//! contiguous range `[s·n/p, (s+1)·n/p)`; without, the indices `s, s+p, s+2p, …`. The
//! records are the same whatever the parallelism; only their order across subtasks varies.
//! So a key derived from the index (`i % keys`) keeps its order only at parallelism 1; a
//! generator that must keep per-key order should give each reader its own keys.

use crate::record::Data;
use crate::source::{BoxError, Source, SourceContext, SourceOutput, SourcePoll, SourceReader};
use std::sync::Arc;
use std::time::{Duration, Instant};

type TsFn = Arc<dyn Fn(u64) -> i64 + Send + Sync>;

/// Generates `f(0), f(1), …`. Generic over the function so that it is inlined into the
/// reader's loop.
pub struct GeneratorSource<T, F> {
    f: Arc<F>,
    timestamp: Option<TsFn>,
    count: Option<u64>,
    rate: Option<f64>,
    _t: std::marker::PhantomData<fn() -> T>,
}

impl<T: Data, F: Fn(u64) -> T + Send + Sync + 'static> GeneratorSource<T, F> {
    /// An unbounded generator of `f(i)`.
    pub fn new(f: F) -> Self {
        GeneratorSource {
            f: Arc::new(f),
            _t: std::marker::PhantomData,
            timestamp: None,
            count: None,
            rate: None,
        }
    }
    /// Stops after `count` records in total.
    pub fn count(mut self, count: u64) -> Self {
        self.count = Some(count);
        self
    }
    /// Bounded when `Some`, unbounded when `None`.
    pub fn maybe_count(mut self, count: Option<u64>) -> Self {
        self.count = count;
        self
    }
    /// Limits the total rate to `per_second` records (shared by the readers).
    pub fn rate(mut self, per_second: f64) -> Self {
        self.rate = Some(per_second);
        self
    }
    pub fn maybe_rate(mut self, per_second: Option<f64>) -> Self {
        self.rate = per_second;
        self
    }
    /// Gives record `i` the event timestamp `ts(i)` at the source.
    pub fn with_timestamps(mut self, ts: impl Fn(u64) -> i64 + Send + Sync + 'static) -> Self {
        self.timestamp = Some(Arc::new(ts));
        self
    }
}

impl<T: Data, F: Fn(u64) -> T + Send + Sync + 'static> Source<T> for GeneratorSource<T, F> {
    fn is_bounded(&self) -> bool {
        self.count.is_some()
    }

    fn create_reader(&self, ctx: &SourceContext) -> Result<Box<dyn SourceReader<T>>, BoxError> {
        let (p, s) = (ctx.parallelism as u64, ctx.subtask_index as u64);
        let (next, end, step) = match self.count {
            Some(n) => (s * n / p, (s + 1) * n / p, 1),
            None => (s, u64::MAX, p),
        };
        Ok(Box::new(GeneratorReader {
            f: self.f.clone(),
            timestamp: self.timestamp.clone(),
            next,
            end,
            step,
            rate: self.rate.map(|r| r / p as f64),
            started: None,
            emitted: 0,
        }))
    }
}

struct GeneratorReader<F> {
    f: Arc<F>,
    timestamp: Option<TsFn>,
    next: u64,
    end: u64,
    step: u64,
    /// Records per second for this reader.
    rate: Option<f64>,
    started: Option<Instant>,
    emitted: u64,
}

impl<T: Data, F: Fn(u64) -> T> SourceReader<T> for GeneratorReader<F> {
    fn poll(&mut self, out: &mut SourceOutput<'_, T>) -> Result<SourcePoll, BoxError> {
        let mut budget = out.batch_size() as u64;
        if let Some(rate) = self.rate {
            let started = *self.started.get_or_insert_with(Instant::now);
            let due = (started.elapsed().as_secs_f64() * rate) as u64 + 1;
            let allowed = due.saturating_sub(self.emitted);
            if allowed == 0 {
                let wait = Duration::from_secs_f64(
                    ((self.emitted + 1) as f64 / rate - started.elapsed().as_secs_f64()).max(0.0),
                );
                return Ok(SourcePoll::Wait(wait.max(Duration::from_micros(100))));
            }
            budget = budget.min(allowed);
        }
        // Indices of this poll: `next, next+step, …` below `end`, at most `budget` of them.
        let n = budget.min((self.end - self.next).div_ceil(self.step));
        let (first, step, f) = (self.next, self.step, &self.f);
        let indices = (0..n).map(move |k| first + k * step);
        match &self.timestamp {
            Some(ts) => out.collect_all_timed(indices.map(|i| (f(i), ts(i)))),
            None => out.collect_all(indices.map(f.as_ref())),
        }
        self.next = self.next.saturating_add(n.saturating_mul(self.step));
        self.emitted += n;
        if self.next >= self.end {
            return Ok(SourcePoll::Finished);
        }
        Ok(if self.rate.is_some() {
            SourcePoll::Wait(Duration::ZERO)
        } else {
            SourcePoll::More
        })
    }

    /// The index of the next record.
    fn snapshot_position(&mut self) -> Result<Option<Vec<u8>>, BoxError> {
        Ok(Some(rmp_serde::to_vec(&self.next)?))
    }

    fn restore_position(&mut self, position: &[u8]) -> Result<(), BoxError> {
        let next: u64 = rmp_serde::from_slice(position)?;
        if next < self.next || next > self.end {
            return Err(format!(
                "position {next} is outside this reader's indices {}..{}",
                self.next, self.end
            )
            .into());
        }
        self.next = next;
        Ok(())
    }
}

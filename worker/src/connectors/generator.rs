//! A deterministic data generator (Flink's `DataGeneratorSource`): record `i` is `f(i)`,
//! for a bounded count or forever, optionally at a fixed rate.
//!
//! Parallel readers split the sequence: with a count, subtask `s` of `p` generates the
//! contiguous range `[s·n/p, (s+1)·n/p)`; without, the indices `s, s+p, s+2p, …`. The
//! records are the same whatever the parallelism; only their order across subtasks varies.
//! So a key derived from the index (`i % keys`) keeps its order only at parallelism 1; a
//! generator that must keep per-key order should give each reader its own keys.
//!
//! A reader's position is the list of its splits not yet generated (`next`, `end`,
//! `step`); on a restore at another parallelism the splits are halved (every other index
//! each) until there are enough to go round, then dealt out, so every index is generated
//! exactly once.

use crate::record::Data;
use crate::source::{BoxError, Source, SourceContext, SourceOutput, SourcePoll, SourceReader};
use std::collections::VecDeque;
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
        let split = match self.count {
            Some(n) => Split {
                next: s * n / p,
                end: (s + 1) * n / p,
                step: 1,
            },
            None => Split {
                next: s,
                end: u64::MAX,
                step: p,
            },
        };
        Ok(Box::new(GeneratorReader {
            f: self.f.clone(),
            timestamp: self.timestamp.clone(),
            splits: VecDeque::from([split]),
            rate: self.rate.map(|r| r / p as f64),
            started: None,
            emitted: 0,
        }))
    }

    fn rescale_positions(
        &self,
        old: Vec<Option<Vec<u8>>>,
        parallelism: usize,
    ) -> Result<Vec<Option<Vec<u8>>>, BoxError> {
        let mut splits: Vec<Split> = Vec::new();
        for position in old.iter().flatten() {
            let theirs: Vec<Split> = rmp_serde::from_slice(position)?;
            splits.extend(theirs.into_iter().filter(|s| s.remaining() > 0));
        }
        spread(splits, parallelism)
            .iter()
            .map(|mine| Ok(Some(rmp_serde::to_vec(mine)?)))
            .collect()
    }
}

/// Indices `next, next+step, …` below `end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Split {
    next: u64,
    end: u64,
    step: u64,
}

impl Split {
    fn remaining(&self) -> u64 {
        if self.next >= self.end {
            0
        } else {
            (self.end - self.next).div_ceil(self.step)
        }
    }

    /// Two splits with every other index of this one each.
    fn halve(self) -> (Split, Split) {
        let step = self.step.saturating_mul(2);
        (
            Split { step, ..self },
            Split {
                next: self.next.saturating_add(self.step),
                step,
                ..self
            },
        )
    }
}

/// Deals `splits` out to `parallelism` readers, halving the largest first until each
/// reader can have one (as far as they go).
fn spread(mut splits: Vec<Split>, parallelism: usize) -> Vec<Vec<Split>> {
    while splits.len() < parallelism {
        let Some((at, largest)) = splits
            .iter()
            .enumerate()
            .max_by_key(|(i, s)| (s.remaining(), std::cmp::Reverse(*i)))
            .map(|(i, s)| (i, *s))
        else {
            break;
        };
        if largest.remaining() < 2 {
            break;
        }
        let (a, b) = largest.halve();
        splits[at] = a;
        splits.insert(at + 1, b);
    }
    let mut readers = vec![Vec::new(); parallelism.max(1)];
    for (i, split) in splits.into_iter().enumerate() {
        readers[i % parallelism.max(1)].push(split);
    }
    readers
}

struct GeneratorReader<F> {
    f: Arc<F>,
    timestamp: Option<TsFn>,
    /// What is left to generate; the first is generated now.
    splits: VecDeque<Split>,
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
        while self.splits.front().is_some_and(|s| s.remaining() == 0) {
            self.splits.pop_front();
        }
        let Some(split) = self.splits.front_mut() else {
            return Ok(SourcePoll::Finished);
        };
        let n = budget.min(split.remaining());
        let (first, step, f) = (split.next, split.step, &self.f);
        let indices = (0..n).map(move |k| first + k * step);
        match &self.timestamp {
            Some(ts) => out.collect_all_timed(indices.map(|i| (f(i), ts(i)))),
            None => out.collect_all(indices.map(f.as_ref())),
        }
        split.next = split.next.saturating_add(n.saturating_mul(split.step));
        self.emitted += n;
        if self.splits.iter().all(|s| s.remaining() == 0) {
            return Ok(SourcePoll::Finished);
        }
        Ok(if self.rate.is_some() {
            SourcePoll::Wait(Duration::ZERO)
        } else {
            SourcePoll::More
        })
    }

    /// The splits left.
    fn snapshot_position(&mut self) -> Result<Option<Vec<u8>>, BoxError> {
        let left: Vec<&Split> = self.splits.iter().filter(|s| s.remaining() > 0).collect();
        Ok(Some(rmp_serde::to_vec(&left)?))
    }

    fn restore_position(&mut self, position: &[u8]) -> Result<(), BoxError> {
        let splits: Vec<Split> = rmp_serde::from_slice(position)
            .map_err(|e| format!("not a generator's position ({e})"))?;
        if let Some(bad) = splits.iter().find(|s| s.step == 0) {
            return Err(format!("a split with step 0: {bad:?}").into());
        }
        self.splits = splits.into();
        Ok(())
    }
}

//! Per-operator, per-subtask counters, and the summary printed when a job ends.
//!
//! Counters are updated once per batch with relaxed atomics, so they cost nothing
//! measurable, and can be read while the job runs (tests wait on them; the REST API of
//! the distributed runtime will serve them).

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Counters of one subtask of one operator.
#[derive(Debug, Default)]
pub struct OperatorMetrics {
    /// Records received, by input (index 0: the only or first input; 1: the second).
    pub records_in: [AtomicU64; 2],
    /// Records emitted on the main output.
    pub records_out: AtomicU64,
    /// Records emitted to side outputs.
    pub side_records_out: AtomicU64,
    /// Records that arrived after the allowed lateness of all their windows: sent to the
    /// late-data side output when one is set, dropped otherwise.
    pub late_records: AtomicU64,
    /// Malformed input records sent to the dead-letter side output.
    pub dead_letters: AtomicU64,
}

impl OperatorMetrics {
    #[inline]
    pub(crate) fn add_in(&self, input: usize, n: usize) {
        self.records_in[input].fetch_add(n as u64, Ordering::Relaxed);
    }
    #[inline]
    pub(crate) fn add_out(&self, n: usize) {
        self.records_out.fetch_add(n as u64, Ordering::Relaxed);
    }
    pub fn records_in(&self) -> u64 {
        self.records_in[0].load(Ordering::Relaxed) + self.records_in[1].load(Ordering::Relaxed)
    }
    pub fn records_in_of(&self, input: usize) -> u64 {
        self.records_in[input].load(Ordering::Relaxed)
    }
    pub fn records_out(&self) -> u64 {
        self.records_out.load(Ordering::Relaxed)
    }
    pub fn side_records_out(&self) -> u64 {
        self.side_records_out.load(Ordering::Relaxed)
    }
    pub fn late_records(&self) -> u64 {
        self.late_records.load(Ordering::Relaxed)
    }
    pub fn dead_letters(&self) -> u64 {
        self.dead_letters.load(Ordering::Relaxed)
    }
}

/// The counters of every subtask of one operator.
#[derive(Debug, Clone)]
pub struct OperatorEntry {
    pub name: String,
    pub uid: String,
    pub parallelism: usize,
    pub subtasks: Vec<Arc<OperatorMetrics>>,
}

/// Totals of one operator over its subtasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorTotals {
    pub name: String,
    pub parallelism: usize,
    pub records_in: u64,
    pub records_in_second: u64,
    pub records_out: u64,
    pub side_records_out: u64,
    pub late_records: u64,
    pub dead_letters: u64,
}

impl OperatorEntry {
    pub fn totals(&self) -> OperatorTotals {
        let sum = |f: &dyn Fn(&OperatorMetrics) -> u64| self.subtasks.iter().map(|m| f(m)).sum();
        OperatorTotals {
            name: self.name.clone(),
            parallelism: self.parallelism,
            records_in: sum(&|m| m.records_in()),
            records_in_second: sum(&|m| m.records_in_of(1)),
            records_out: sum(&|m| m.records_out()),
            side_records_out: sum(&|m| m.side_records_out()),
            late_records: sum(&|m| m.late_records()),
            dead_letters: sum(&|m| m.dead_letters()),
        }
    }
}

/// Where one task's time goes, and its input watermark. Busy time is the rest: time since
/// `started` minus idle and backpressured time.
#[derive(Debug)]
pub struct TaskTimes {
    pub started: std::time::Instant,
    /// Nanoseconds waiting for input (or, in a source, pausing).
    pub idle_ns: AtomicU64,
    /// Nanoseconds blocked because a downstream channel was full.
    pub backpressured_ns: AtomicU64,
    /// The task's input watermark; `i64::MIN` before the first.
    pub watermark: std::sync::atomic::AtomicI64,
}

impl Default for TaskTimes {
    fn default() -> Self {
        TaskTimes {
            started: std::time::Instant::now(),
            idle_ns: AtomicU64::new(0),
            backpressured_ns: AtomicU64::new(0),
            watermark: std::sync::atomic::AtomicI64::new(i64::MIN),
        }
    }
}

impl TaskTimes {
    pub(crate) fn add_idle(&self, d: Duration) {
        self.idle_ns
            .fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }
    pub(crate) fn add_backpressured(&self, d: Duration) {
        self.backpressured_ns
            .fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }
    pub fn idle(&self) -> Duration {
        Duration::from_nanos(self.idle_ns.load(Ordering::Relaxed))
    }
    pub fn backpressured(&self) -> Duration {
        Duration::from_nanos(self.backpressured_ns.load(Ordering::Relaxed))
    }
    /// Time spent working: since the start, less idle and backpressured time.
    pub fn busy(&self) -> Duration {
        self.started
            .elapsed()
            .saturating_sub(self.idle())
            .saturating_sub(self.backpressured())
    }
    /// The input watermark, once there is one.
    pub fn watermark(&self) -> Option<i64> {
        let w = self.watermark.load(Ordering::Relaxed);
        (w != i64::MIN).then_some(w)
    }
}

/// The counters of a whole job, in graph order.
#[derive(Debug, Clone, Default)]
pub struct JobMetrics {
    pub operators: Vec<OperatorEntry>,
    /// Per task: `tasks[vertex][subtask]` (a vertex is a chain of operators).
    pub tasks: Vec<Vec<Arc<TaskTimes>>>,
}

impl JobMetrics {
    /// The operator with this name or uid.
    pub fn operator(&self, name_or_uid: &str) -> Option<&OperatorEntry> {
        self.operators
            .iter()
            .find(|o| o.uid == name_or_uid)
            .or_else(|| self.operators.iter().find(|o| o.name == name_or_uid))
    }

    pub fn totals(&self) -> Vec<OperatorTotals> {
        self.operators.iter().map(OperatorEntry::totals).collect()
    }
}

/// The summary a job prints when it ends: records in and out per operator, and duration.
pub fn format_summary(
    job_name: &str,
    outcome: &str,
    duration: Duration,
    metrics: &JobMetrics,
) -> String {
    let totals = metrics.totals();
    let width = totals
        .iter()
        .map(|t| t.name.chars().count())
        .max()
        .unwrap_or(8)
        .max(8);
    let mut s = String::new();
    let secs = duration.as_secs_f64();
    let _ = writeln!(s, "job '{job_name}' {outcome} after {secs:.3} s");
    let _ = writeln!(
        s,
        "  {:<width$}  {:>3}  {:>14}  {:>14}  {:>12}",
        "operator", "p", "records in", "records out", "side/late/dlq"
    );
    for t in &totals {
        let extra = if t.side_records_out + t.late_records + t.dead_letters > 0 {
            format!(
                "{}/{}/{}",
                t.side_records_out, t.late_records, t.dead_letters
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            s,
            "  {:<width$}  {:>3}  {:>14}  {:>14}  {:>12}",
            t.name, t.parallelism, t.records_in, t.records_out, extra
        );
    }
    s
}

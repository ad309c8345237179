//! What an operator instance knows about where it runs: its name and subtask, the task's
//! clock and timer wake-up, and the job's settings. Also the panic guard that turns a
//! panic in user code into a task failure naming the operator and the input position.

use crate::config::{ExecutionConfig, ProcessingTimeMode};
use crate::error::{Position, TaskError, panic_message};
use crate::runtime::metrics::OperatorMetrics;
use std::any::Any;
use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Processing time for one task.
#[derive(Debug)]
pub struct Clock {
    mode: ProcessingTimeMode,
    simulated: Cell<i64>,
}

impl Clock {
    pub(crate) fn new(mode: ProcessingTimeMode) -> Self {
        Clock {
            mode,
            simulated: Cell::new(0),
        }
    }

    /// Milliseconds since the Unix epoch (or the simulated clock).
    pub fn now(&self) -> i64 {
        match self.mode {
            ProcessingTimeMode::Wall => wall_clock_millis(),
            ProcessingTimeMode::Simulated => self.simulated.get(),
        }
    }

    pub(crate) fn is_simulated(&self) -> bool {
        self.mode == ProcessingTimeMode::Simulated
    }

    /// Moves the simulated clock forward; returns whether it moved.
    pub(crate) fn advance_to(&self, t: i64) -> bool {
        if t > self.simulated.get() {
            self.simulated.set(t);
            true
        } else {
            false
        }
    }
}

pub(crate) fn wall_clock_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The earliest processing time at which some operator of the task wants to be called.
#[derive(Debug)]
pub(crate) struct TimerWakeup(Cell<i64>);

impl TimerWakeup {
    pub(crate) fn new() -> Self {
        TimerWakeup(Cell::new(i64::MAX))
    }
    /// Asks to be called at `t` (or earlier).
    #[inline]
    pub(crate) fn request(&self, t: i64) {
        if t < self.0.get() {
            self.0.set(t);
        }
    }
    pub(crate) fn next(&self) -> i64 {
        self.0.get()
    }
    /// Forgets all requests; operators re-request when they are called.
    pub(crate) fn reset(&self) {
        self.0.set(i64::MAX);
    }
}

/// Shared by the operators of one task.
#[derive(Clone)]
pub(crate) struct TaskServices {
    pub clock: Rc<Clock>,
    pub wakeup: Rc<TimerWakeup>,
    pub config: Arc<ExecutionConfig>,
    /// The task's idle and backpressured time and input watermark.
    pub times: Arc<crate::runtime::metrics::TaskTimes>,
    /// The link to the checkpoint coordinator, when the job checkpoints.
    pub checkpoints: Option<crate::runtime::barrier::TaskCheckpointing>,
}

/// Identity of one operator instance.
#[derive(Clone, Debug)]
pub(crate) struct OperatorInfo {
    pub name: Arc<str>,
    pub uid: Arc<str>,
    pub subtask: usize,
    pub parallelism: usize,
    pub max_parallelism: usize,
    pub metrics: Arc<OperatorMetrics>,
}

impl OperatorInfo {
    pub(crate) fn panic_error(
        &self,
        position: Position,
        payload: Box<dyn Any + Send>,
    ) -> TaskError {
        TaskError::UserCodePanic {
            operator: self.name.to_string(),
            subtask: self.subtask + 1,
            parallelism: self.parallelism,
            position,
            message: panic_message(payload.as_ref()),
        }
    }

    pub(crate) fn error(&self, message: impl Into<String>) -> TaskError {
        TaskError::Operator {
            operator: self.name.to_string(),
            subtask: self.subtask + 1,
            parallelism: self.parallelism,
            message: message.into(),
        }
    }
}

/// Runs `$body` (which returns a `TaskResult`) and turns a panic in it into
/// `TaskError::UserCodePanic` at `$pos`. `$pos` is evaluated after the panic, so it can
/// read counters the body advanced.
macro_rules! guard {
    ($info:expr, $pos:expr, $body:expr) => {
        match ::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(|| $body)) {
            Ok(result) => result,
            Err(payload) => Err($info.panic_error($pos, payload)),
        }
    };
}
pub(crate) use guard;

/// What a user function learns about its operator in `open` (Flink's `RuntimeContext`).
pub struct RuntimeContext<'a> {
    pub(crate) info: &'a OperatorInfo,
    pub(crate) services: &'a TaskServices,
}

impl RuntimeContext<'_> {
    /// The operator's name.
    pub fn operator_name(&self) -> &str {
        &self.info.name
    }
    /// The operator's uid (stable across job versions).
    pub fn operator_uid(&self) -> &str {
        &self.info.uid
    }
    /// Index of this parallel instance, from 0.
    pub fn subtask_index(&self) -> usize {
        self.info.subtask
    }
    /// Number of parallel instances of the operator.
    pub fn parallelism(&self) -> usize {
        self.info.parallelism
    }
    /// Number of key groups of the job.
    pub fn max_parallelism(&self) -> usize {
        self.info.max_parallelism
    }
    pub fn current_processing_time(&self) -> i64 {
        self.services.clock.now()
    }
    /// The operator's counters.
    pub fn metrics(&self) -> &OperatorMetrics {
        &self.info.metrics
    }
    /// Settings of the job.
    pub fn config(&self) -> &ExecutionConfig {
        &self.services.config
    }
}

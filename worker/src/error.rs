//! Errors of job construction and execution.
//!
//! A failing task reports *which* operator failed, on which subtask, and where in its
//! input it was, so that a user can find the record that broke their code.

use std::any::Any;
use std::fmt;

/// Where an operator was when it failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Position {
    /// Processing the n-th record of its input (counting from 1).
    Record(u64),
    /// Processing the n-th record of input 1 or 2 of a two-input operator.
    InputRecord { input: u8, record: u64 },
    /// Firing a timer.
    Timer {
        domain: crate::record::TimeDomain,
        timestamp: i64,
    },
    /// Handling a watermark.
    Watermark(i64),
    /// Reading from a source after it had emitted this many records.
    Source { emitted: u64 },
    /// Opening, finishing or closing the operator.
    Lifecycle(&'static str),
}

impl Position {
    /// The `record`-th record of input `input` (0 or 1) of an operator with `inputs`
    /// inputs: `Record` for one input, `InputRecord` (numbered from 1) for two.
    pub(crate) fn of_input(inputs: u8, input: u8, record: u64) -> Position {
        if inputs == 1 {
            Position::Record(record)
        } else {
            Position::InputRecord {
                input: input + 1,
                record,
            }
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Record(n) => write!(f, "processing input record #{n}"),
            Position::InputRecord { input, record } => {
                write!(f, "processing record #{record} of input {input}")
            }
            Position::Timer { domain, timestamp } => {
                write!(f, "firing the {domain:?} timer for {timestamp}")
            }
            Position::Watermark(w) => write!(f, "handling watermark {w}"),
            Position::Source { emitted } => {
                write!(f, "reading the next record after {emitted} emitted")
            }
            Position::Lifecycle(what) => write!(f, "{what}"),
        }
    }
}

/// Why a task stopped without finishing.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum TaskError {
    #[error(
        "operator '{operator}' (subtask {subtask}/{parallelism}) panicked while {position}: {message}"
    )]
    UserCodePanic {
        operator: String,
        subtask: usize,
        parallelism: usize,
        position: Position,
        message: String,
    },
    #[error("operator '{operator}' (subtask {subtask}/{parallelism}) failed: {message}")]
    Operator {
        operator: String,
        subtask: usize,
        parallelism: usize,
        message: String,
    },
    /// The other end of a channel went away: a consequence of another task's failure or of
    /// cancellation, never the root cause.
    #[error("a connected task stopped")]
    ChannelClosed,
    /// A channel to a subtask in another process failed (network, or that process).
    #[error("sending to another worker failed: {0}")]
    Remote(String),
    /// A channel from a subtask in another process failed on this side (unreadable data).
    #[error("receiving from another worker failed: {0}")]
    RemoteInput(String),
    #[error("the job was cancelled")]
    Cancelled,
}

impl TaskError {
    /// Whether this error is a consequence of another failure rather than its cause.
    pub fn is_secondary(&self) -> bool {
        matches!(self, TaskError::ChannelClosed | TaskError::Cancelled)
    }
}

/// The result type of the engine's internal operator calls.
pub type TaskResult<T = ()> = Result<T, TaskError>;

/// Text of a panic payload.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}

/// Why a job could not be built or run.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("invalid job graph: {0}")]
    InvalidGraph(String),
    #[error("job failed: {0}")]
    TaskFailed(TaskError),
    #[error("the job was cancelled")]
    Cancelled,
    #[error("could not start task thread: {0}")]
    Spawn(String),
}

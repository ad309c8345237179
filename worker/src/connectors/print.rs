//! Prints records to standard output (Flink's `print()`): one line each, prefixed by the
//! subtask number when the sink runs in parallel, like Flink's `2> record`.

use crate::record::Data;
use crate::sink::{Sink, SinkContext, SinkWriter};
use crate::source::BoxError;
use std::fmt::{Debug, Display};
use std::io::Write;
use std::marker::PhantomData;

/// How a record becomes a line.
pub trait LineFormat<T>: Send + Sync + 'static {
    fn format(&self, value: &T, out: &mut String);
}

/// With `Display`.
pub struct DisplayFormat;
impl<T: Display> LineFormat<T> for DisplayFormat {
    fn format(&self, value: &T, out: &mut String) {
        use std::fmt::Write as _;
        let _ = write!(out, "{value}");
    }
}

/// With `Debug`.
pub struct DebugFormat;
impl<T: Debug> LineFormat<T> for DebugFormat {
    fn format(&self, value: &T, out: &mut String) {
        use std::fmt::Write as _;
        let _ = write!(out, "{value:?}");
    }
}

/// Where printed lines go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrintTarget {
    Stdout,
    Stderr,
}

pub struct PrintSink<T, F> {
    prefix: Option<String>,
    target: PrintTarget,
    format: std::sync::Arc<F>,
    _t: PhantomData<fn(T)>,
}

impl<T, F> PrintSink<T, F> {
    pub fn new(format: F, prefix: Option<String>, target: PrintTarget) -> Self {
        PrintSink {
            prefix,
            target,
            format: std::sync::Arc::new(format),
            _t: PhantomData,
        }
    }
}

impl<T: Data, F: LineFormat<T>> Sink<T> for PrintSink<T, F> {
    fn create_writer(&self, ctx: &SinkContext) -> Result<Box<dyn SinkWriter<T>>, BoxError> {
        let prefix = match (&self.prefix, ctx.parallelism > 1) {
            (Some(p), true) => format!("{p}:{}> ", ctx.subtask_index + 1),
            (Some(p), false) => format!("{p}> "),
            (None, true) => format!("{}> ", ctx.subtask_index + 1),
            (None, false) => String::new(),
        };
        Ok(Box::new(PrintWriter {
            prefix,
            target: self.target,
            format: self.format.clone(),
            buf: String::new(),
            _t: PhantomData,
        }))
    }
}

struct PrintWriter<T, F> {
    prefix: String,
    target: PrintTarget,
    format: std::sync::Arc<F>,
    buf: String,
    _t: PhantomData<fn(T)>,
}

impl<T, F: LineFormat<T>> SinkWriter<T> for PrintWriter<T, F> {
    fn write(&mut self, value: T, _: Option<i64>) -> Result<(), BoxError> {
        self.buf.push_str(&self.prefix);
        self.format.format(&value, &mut self.buf);
        self.buf.push('\n');
        if self.buf.len() >= 64 * 1024 {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), BoxError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        // One write per batch keeps lines of parallel writers from interleaving.
        let res = match self.target {
            PrintTarget::Stdout => std::io::stdout().lock().write_all(self.buf.as_bytes()),
            PrintTarget::Stderr => std::io::stderr().lock().write_all(self.buf.as_bytes()),
        };
        self.buf.clear();
        match res {
            // A closed pipe (`strom run … | head`) is the reader's choice, not a failure.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            other => other.map_err(Into::into),
        }
    }
}

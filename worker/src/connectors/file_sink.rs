//! Writes records as lines to files in a directory: one file per parallel writer
//! (`part-<subtask>-<n>`), rolled over when it grows past a size. Lines are `Display` text
//! or JSON. Output is at least once; [`FileSink::exactly_once`] makes it exactly once.

use crate::connectors::FileTransactions;
use crate::record::Data;
use crate::sink::{Sink, SinkContext, SinkWriter, TwoPhaseCommit};
use crate::source::BoxError;
use serde::Serialize;
use std::fmt::Display;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::Arc;

pub(crate) type FormatFn<T> = Arc<dyn Fn(&T, &mut Vec<u8>) -> Result<(), BoxError> + Send + Sync>;

/// A sink writing lines to `part-*` files under a directory.
pub struct FileSink<T> {
    dir: PathBuf,
    format: FormatFn<T>,
    max_part_bytes: u64,
    _t: PhantomData<fn(T)>,
}

impl<T: Data> FileSink<T> {
    /// `Display` text, one record per line.
    pub fn text(dir: impl Into<PathBuf>) -> Self
    where
        T: Display,
    {
        Self::with_format(dir, |v: &T, buf: &mut Vec<u8>| {
            write!(buf, "{v}")?;
            Ok(())
        })
    }

    /// JSON, one record per line.
    pub fn json_lines(dir: impl Into<PathBuf>) -> Self
    where
        T: Serialize,
    {
        Self::with_format(dir, |v: &T, buf: &mut Vec<u8>| {
            serde_json::to_writer(&mut *buf, v)?;
            Ok(())
        })
    }

    /// A custom line format (write the line without its newline).
    pub fn with_format(
        dir: impl Into<PathBuf>,
        format: impl Fn(&T, &mut Vec<u8>) -> Result<(), BoxError> + Send + Sync + 'static,
    ) -> Self {
        FileSink {
            dir: dir.into(),
            format: Arc::new(format),
            max_part_bytes: 128 * 1024 * 1024,
            _t: PhantomData,
        }
    }

    /// Starts a new part file after this many bytes.
    pub fn max_part_size(mut self, bytes: u64) -> Self {
        self.max_part_bytes = bytes.max(1);
        self
    }

    /// The same files, written exactly once: each checkpoint's files become visible when
    /// it completes (see [`FileTransactions`]).
    pub fn exactly_once(self) -> TwoPhaseCommit<FileTransactions<T>> {
        TwoPhaseCommit(FileTransactions {
            dir: self.dir,
            format: self.format,
            max_part_bytes: self.max_part_bytes,
            rollover: None,
            _t: PhantomData,
        })
    }
}

impl<T: Data> Sink<T> for FileSink<T> {
    fn create_writer(&self, ctx: &SinkContext) -> Result<Box<dyn SinkWriter<T>>, BoxError> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| format!("cannot create output directory {}: {e}", self.dir.display()))?;
        Ok(Box::new(FileWriter {
            dir: self.dir.clone(),
            format: self.format.clone(),
            max_part_bytes: self.max_part_bytes,
            subtask: ctx.subtask_index,
            part: 0,
            written: 0,
            file: None,
            line: Vec::new(),
        }))
    }
}

struct FileWriter<T> {
    dir: PathBuf,
    format: FormatFn<T>,
    max_part_bytes: u64,
    subtask: usize,
    part: u64,
    written: u64,
    file: Option<(PathBuf, BufWriter<File>)>,
    line: Vec<u8>,
}

impl<T> FileWriter<T> {
    fn open_part(&mut self) -> Result<(), BoxError> {
        let path = self
            .dir
            .join(format!("part-{}-{}", self.subtask, self.part));
        let file =
            File::create(&path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        self.file = Some((path, BufWriter::with_capacity(256 * 1024, file)));
        self.written = 0;
        Ok(())
    }
}

impl<T> SinkWriter<T> for FileWriter<T> {
    fn write(&mut self, value: T, _: Option<i64>) -> Result<(), BoxError> {
        self.line.clear();
        (self.format)(&value, &mut self.line)?;
        self.line.push(b'\n');
        if self.file.is_some() && self.written + self.line.len() as u64 > self.max_part_bytes {
            self.flush()?;
            self.file = None;
            self.part += 1;
        }
        if self.file.is_none() {
            self.open_part()?;
        }
        if let Some((path, w)) = self.file.as_mut() {
            w.write_all(&self.line)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
        self.written += self.line.len() as u64;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), BoxError> {
        if let Some((path, w)) = self.file.as_mut() {
            w.flush()
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), BoxError> {
        if let Some((path, w)) = self.file.as_mut() {
            w.flush()
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            w.get_ref()
                .sync_all()
                .map_err(|e| format!("cannot sync {}: {e}", path.display()))?;
        }
        Ok(())
    }
}

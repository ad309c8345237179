//! Reads files line by line: plain text lines, JSON lines, or lines parsed by a function.
//! Bounded (the files that exist when the job starts), or following a directory for new
//! files. A line that does not parse goes to the dead-letter side output with its file
//! and line number, is counted, and the job goes on.
//!
//! Files are spread over the parallel readers; files whose names start with `.` or `_`
//! are skipped (in-progress files, as in Flink). When following a directory, write new
//! files elsewhere and move them in, so a reader never sees half a file.

use crate::hash::stable_hash;
use crate::record::Data;
use crate::source::{BoxError, Source, SourceContext, SourceOutput, SourcePoll, SourceReader};
use serde::de::DeserializeOwned;
use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

type ParseFn<T> = Arc<dyn Fn(&str) -> Result<T, String> + Send + Sync>;

/// A source of files under a path (a file or a directory).
pub struct FileSource<T> {
    path: PathBuf,
    parse: ParseFn<T>,
    monitor: Option<Duration>,
}

impl FileSource<String> {
    /// Every line as a `String` (without the line ending).
    pub fn lines(path: impl Into<PathBuf>) -> Self {
        FileSource::parsed(path, |line| Ok(line.to_string()))
    }
}

impl<T: Data> FileSource<T> {
    /// Every line parsed as JSON into `T`.
    pub fn json_lines(path: impl Into<PathBuf>) -> Self
    where
        T: DeserializeOwned,
    {
        FileSource::parsed(path, |line| {
            serde_json::from_str::<T>(line).map_err(|e| {
                format!(
                    "not a JSON {}: {e}; fix the line or route it elsewhere",
                    short_type_name::<T>()
                )
            })
        })
    }

    /// Every line parsed by `parse`; an `Err(reason)` sends the line to the dead letters.
    pub fn parsed(
        path: impl Into<PathBuf>,
        parse: impl Fn(&str) -> Result<T, String> + Send + Sync + 'static,
    ) -> Self {
        FileSource {
            path: path.into(),
            parse: Arc::new(parse),
            monitor: None,
        }
    }

    /// Keeps watching the directory for new files every `interval` (unbounded).
    pub fn monitor_continuously(mut self, interval: Duration) -> Self {
        self.monitor = Some(interval);
        self
    }
}

fn short_type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    full.rsplit("::").next().unwrap_or(full)
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.') || n.starts_with('_'))
}

/// The files under `path`, sorted.
fn list_files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    let mut dirs = vec![path.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let p = entry?.path();
            if is_hidden(&p) {
                continue;
            }
            if p.is_dir() {
                dirs.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files.sort();
    Ok(files)
}

impl<T: Data> Source<T> for FileSource<T> {
    fn is_bounded(&self) -> bool {
        self.monitor.is_none()
    }

    fn create_reader(&self, ctx: &SourceContext) -> Result<Box<dyn SourceReader<T>>, BoxError> {
        if !self.path.exists() {
            return Err(format!(
                "input path {} does not exist; give an existing file or directory",
                self.path.display()
            )
            .into());
        }
        if self.monitor.is_some() && !self.path.is_dir() {
            return Err(format!(
                "cannot follow {}: it is not a directory; follow a directory, or read the file once",
                self.path.display()
            )
            .into());
        }
        let mut reader = FileReader {
            root: self.path.clone(),
            parse: self.parse.clone(),
            monitor: self.monitor,
            subtask: ctx.subtask_index,
            parallelism: ctx.parallelism,
            seen: HashSet::new(),
            pending: VecDeque::new(),
            resume: HashMap::new(),
            current: None,
            done: Vec::new(),
            next_scan: Instant::now(),
        };
        reader
            .scan()
            .map_err(|e| format!("cannot list {}: {e}", self.path.display()))?;
        Ok(Box::new(reader))
    }

    /// Every new reader gets every file the old ones had read or were in: each resumes
    /// the files it owns at the new parallelism.
    fn rescale_positions(
        &self,
        old: Vec<Option<Vec<u8>>>,
        parallelism: usize,
    ) -> Result<Vec<Option<Vec<u8>>>, BoxError> {
        let mut merged = FilePosition {
            done: Vec::new(),
            current: None,
            partial: Vec::new(),
        };
        for position in old.iter().flatten() {
            let theirs: FilePosition = rmp_serde::from_slice(position)?;
            merged.done.extend(theirs.done);
            merged
                .partial
                .extend(theirs.current.into_iter().chain(theirs.partial));
        }
        merged.done.sort();
        merged.done.dedup();
        let bytes = rmp_serde::to_vec_named(&merged)?;
        Ok(vec![Some(bytes); parallelism])
    }
}

struct OpenFile {
    path: PathBuf,
    reader: BufReader<File>,
    line_no: u64,
    /// Bytes read so far: where a restored reader seeks to.
    offset: u64,
    buf: Vec<u8>,
}

impl OpenFile {
    /// Opens `path` at byte `offset`, which is after line `line_no`.
    fn at(path: PathBuf, offset: u64, line_no: u64) -> Result<Self, BoxError> {
        let file = File::open(&path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let mut reader = BufReader::with_capacity(256 * 1024, file);
        if offset > 0 {
            std::io::Seek::seek(&mut reader, std::io::SeekFrom::Start(offset)).map_err(|e| {
                format!(
                    "cannot seek to byte {offset} of {} where the checkpoint left it: {e}",
                    path.display()
                )
            })?;
        }
        Ok(OpenFile {
            path,
            reader,
            line_no,
            offset,
            buf: Vec::new(),
        })
    }
}

/// Where a file reader is, for checkpoints: the files it has read to the end, and the
/// file it is in with the byte offset and line number reached. Restored at another
/// parallelism, every reader gets the files all old readers had read, and every file
/// they were in the middle of (`partial`); each resumes those of the files it owns now.
#[derive(serde::Serialize, serde::Deserialize)]
struct FilePosition {
    done: Vec<PathBuf>,
    current: Option<(PathBuf, u64, u64)>,
    #[serde(default)]
    partial: Vec<(PathBuf, u64, u64)>,
}

struct FileReader<T> {
    root: PathBuf,
    parse: ParseFn<T>,
    monitor: Option<Duration>,
    subtask: usize,
    parallelism: usize,
    seen: HashSet<PathBuf>,
    pending: VecDeque<PathBuf>,
    /// Pending files a checkpoint had read partly: the byte offset and line to resume at.
    resume: HashMap<PathBuf, (u64, u64)>,
    current: Option<OpenFile>,
    /// This reader's files read to the end.
    done: Vec<PathBuf>,
    next_scan: Instant,
}

impl<T: Data> FileReader<T> {
    /// Finds files this reader has not taken yet and that belong to it.
    fn scan(&mut self) -> std::io::Result<()> {
        let files = list_files(&self.root)?;
        for (i, f) in files.into_iter().enumerate() {
            if self.seen.contains(&f) {
                continue;
            }
            // Bounded: by position. Following: by name, so that new files do not shift
            // the assignment of old ones.
            let owner = if self.monitor.is_some() {
                (stable_hash(&f.to_string_lossy().to_string()) % self.parallelism as u64) as usize
            } else {
                i % self.parallelism
            };
            if owner == self.subtask {
                self.pending.push_back(f.clone());
            }
            self.seen.insert(f);
        }
        if let Some(interval) = self.monitor {
            self.next_scan = Instant::now() + interval;
        }
        Ok(())
    }
}

impl<T: Data> SourceReader<T> for FileReader<T> {
    fn poll(&mut self, out: &mut SourceOutput<'_, T>) -> Result<SourcePoll, BoxError> {
        loop {
            if self.current.is_none() {
                match self.pending.pop_front() {
                    Some(path) => {
                        let (offset, line_no) = self.resume.remove(&path).unwrap_or((0, 0));
                        self.current = Some(OpenFile::at(path, offset, line_no)?);
                    }
                    None => match self.monitor {
                        None => return Ok(SourcePoll::Finished),
                        Some(_) => {
                            let now = Instant::now();
                            if now < self.next_scan {
                                return Ok(SourcePoll::Wait(self.next_scan - now));
                            }
                            self.scan()
                                .map_err(|e| format!("cannot list {}: {e}", self.root.display()))?;
                            if self.pending.is_empty() {
                                return Ok(SourcePoll::Wait(
                                    self.next_scan.saturating_duration_since(Instant::now()),
                                ));
                            }
                            continue;
                        }
                    },
                }
            }
            let Some(f) = self.current.as_mut() else {
                continue;
            };
            while !out.is_full() {
                f.buf.clear();
                let n = f
                    .reader
                    .read_until(b'\n', &mut f.buf)
                    .map_err(|e| format!("cannot read {}: {e}", f.path.display()))?;
                if n == 0 {
                    if let Some(f) = self.current.take() {
                        self.done.push(f.path);
                    }
                    break;
                }
                f.line_no += 1;
                f.offset += n as u64;
                while matches!(f.buf.last(), Some(b'\n' | b'\r')) {
                    f.buf.pop();
                }
                let position = || format!("{}:{}", f.path.display(), f.line_no);
                match std::str::from_utf8(&f.buf) {
                    Ok("") => {}
                    Ok(line) => match (self.parse)(line) {
                        Ok(v) => out.collect(v),
                        Err(reason) => out.dead_letter(position(), reason, line),
                    },
                    Err(e) => out.dead_letter(
                        position(),
                        format!("not UTF-8 text ({e}); write the file as UTF-8"),
                        String::from_utf8_lossy(&f.buf),
                    ),
                }
            }
            if out.is_full() {
                return Ok(SourcePoll::More);
            }
        }
    }

    fn snapshot_position(&mut self) -> Result<Option<Vec<u8>>, BoxError> {
        let position = FilePosition {
            done: self.done.clone(),
            current: self
                .current
                .as_ref()
                .map(|f| (f.path.clone(), f.offset, f.line_no)),
            partial: self
                .resume
                .iter()
                .map(|(path, (offset, line_no))| (path.clone(), *offset, *line_no))
                .collect(),
        };
        Ok(Some(rmp_serde::to_vec_named(&position)?))
    }

    fn restore_position(&mut self, position: &[u8]) -> Result<(), BoxError> {
        let position: FilePosition = rmp_serde::from_slice(position)?;
        self.pending.retain(|p| !position.done.contains(p));
        self.done = position.done;
        // Of the files read partly, those this reader owns (they are pending here).
        for (path, offset, line_no) in position.current.into_iter().chain(position.partial) {
            if self.pending.contains(&path) {
                self.resume.insert(path, (offset, line_no));
            }
        }
        Ok(())
    }
}

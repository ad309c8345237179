//! The exactly-once file sink (like Flink's `FileSink` with an on-checkpoint rolling
//! policy): lines go to hidden in-progress files, which become pending at each checkpoint
//! barrier and are committed — renamed to their visible names — once the checkpoint
//! completes. Readers of the directory see only committed files, and after any failure
//! the committed files hold every record exactly once.
//!
//! Files of one writer: `.part-<run>-<subtask>-<n>.inprogress` while written,
//! `.part-<run>-<subtask>-<n>.pending` once pre-committed, `part-<run>-<subtask>-<n>`
//! once committed. `<run>` names what the job started from: `c0` fresh, `c<id><hash>`
//! from checkpoint or savepoint `id` (the hash of its location tells a savepoint from a
//! checkpoint of the same id), so the writers of each restore write under new names;
//! `<n>` counts on past any committed file already there. A file is also rolled over
//! within a checkpoint when it grows past a size or stays open past an interval.
//!
//! One job per output directory: a writer that has recovered what its checkpoint holds
//! deletes the uncommitted files left under its own run and subtask (by an earlier
//! attempt from the same checkpoint).

use crate::connectors::file_sink::FormatFn;
use crate::hash::stable_hash;
use crate::record::Data;
use crate::sink::{SinkContext, TransactionalWriter, TwoPhaseCommit, TwoPhaseCommitSink};
use crate::source::BoxError;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const IN_PROGRESS: &str = "inprogress";
const PENDING: &str = "pending";

/// Writes lines to files under a directory, exactly once. Made by
/// [`FileSink::exactly_once`](crate::connectors::FileSink::exactly_once); use it as
/// `stream.sink_to(FileSink::text(dir).exactly_once())`.
pub struct FileTransactions<T> {
    pub(crate) dir: PathBuf,
    pub(crate) format: FormatFn<T>,
    pub(crate) max_part_bytes: u64,
    pub(crate) rollover: Option<Duration>,
    pub(crate) _t: PhantomData<fn(T)>,
}

impl<T> TwoPhaseCommit<FileTransactions<T>> {
    /// Starts a new part file once one has been open this long (it is committed with the
    /// checkpoint after that, as every part is).
    pub fn rollover_interval(mut self, interval: Duration) -> Self {
        self.0.rollover = Some(interval);
        self
    }
}

/// The files of one writer's transaction: part numbers `parts` of run `run`, subtask
/// `subtask`; `first` is the part number the transaction began at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileTxn {
    pub run: String,
    pub subtask: usize,
    pub first: u64,
    pub parts: Vec<u64>,
}

/// A file name of this sink, taken apart.
#[derive(Debug, PartialEq, Eq)]
struct PartName<'a> {
    run: &'a str,
    subtask: usize,
    part: u64,
    /// `None` when committed; else `inprogress` or `pending`.
    state: Option<&'a str>,
}

fn parse(name: &str) -> Option<PartName<'_>> {
    let (rest, state) = match name.strip_prefix('.') {
        Some(hidden) => {
            let (rest, state) = hidden.rsplit_once('.')?;
            (rest, Some(state))
        }
        None => (name, None),
    };
    let mut fields = rest.strip_prefix("part-")?.split('-');
    let (run, subtask, part) = (fields.next()?, fields.next()?, fields.next()?);
    if fields.next().is_some() || !run.starts_with('c') {
        return None;
    }
    Some(PartName {
        run,
        subtask: subtask.parse().ok()?,
        part: part.parse().ok()?,
        state,
    })
}

fn file_name(run: &str, subtask: usize, part: u64, state: Option<&str>) -> String {
    match state {
        Some(state) => format!(".part-{run}-{subtask}-{part}.{state}"),
        None => format!("part-{run}-{subtask}-{part}"),
    }
}

/// The names in `dir`.
fn names_in(dir: &Path) -> Result<Vec<String>, BoxError> {
    let mut names = Vec::new();
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        if let Some(name) = entry.file_name().to_str() {
            names.push(name.to_string());
        }
    }
    Ok(names)
}

fn remove(path: &Path) -> Result<(), BoxError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(format!("cannot delete {}: {e}", path.display()).into())
        }
        _ => Ok(()),
    }
}

impl<T: Data> TwoPhaseCommitSink<T> for FileTransactions<T> {
    type Txn = FileTxn;
    type Writer = FileTxnWriter<T>;

    fn open(&self, ctx: &SinkContext) -> Result<FileTxnWriter<T>, BoxError> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| format!("cannot create output directory {}: {e}", self.dir.display()))?;
        let run = match (ctx.restored_checkpoint, &ctx.restored_from) {
            (Some(id), Some(from)) => format!("c{id}{:06x}", stable_hash(from) & 0xff_ffff),
            (Some(id), None) => format!("c{id}"),
            (None, _) => "c0".to_string(),
        };
        Ok(FileTxnWriter {
            dir: self.dir.clone(),
            format: self.format.clone(),
            max_part_bytes: self.max_part_bytes,
            rollover: self.rollover,
            run,
            subtask: ctx.subtask_index,
            next_part: None,
            file: None,
            line: Vec::new(),
        })
    }
}

/// The part file being written.
struct OpenPart {
    path: PathBuf,
    out: BufWriter<File>,
    written: u64,
    opened: Instant,
}

pub struct FileTxnWriter<T> {
    dir: PathBuf,
    format: FormatFn<T>,
    max_part_bytes: u64,
    rollover: Option<Duration>,
    run: String,
    subtask: usize,
    /// Known from the first `begin`, which comes after the recovery.
    next_part: Option<u64>,
    file: Option<OpenPart>,
    line: Vec<u8>,
}

impl<T> FileTxnWriter<T> {
    fn path(&self, txn: &FileTxn, part: u64, state: Option<&str>) -> PathBuf {
        self.dir.join(file_name(&txn.run, txn.subtask, part, state))
    }

    /// Flushes and syncs the open part file, and closes it.
    fn close_part(&mut self) -> Result<(), BoxError> {
        if let Some(mut part) = self.file.take() {
            let path = part.path.display().to_string();
            part.out
                .flush()
                .map_err(|e| format!("cannot write {path}: {e}"))?;
            part.out
                .get_ref()
                .sync_all()
                .map_err(|e| format!("cannot sync {path}: {e}"))?;
        }
        Ok(())
    }

    fn roll_if_due(&mut self, adding: u64) -> Result<(), BoxError> {
        let due = self.file.as_ref().is_some_and(|f| {
            f.written + adding > self.max_part_bytes
                || self.rollover.is_some_and(|r| f.opened.elapsed() >= r)
        });
        if due {
            self.close_part()?;
        }
        Ok(())
    }

    /// Once what the checkpoint holds is recovered: deletes the uncommitted files under
    /// this writer's run and subtask (an earlier attempt from the same checkpoint wrote
    /// them after it; the restored sources produce their records again). The part number
    /// to go on from, past the committed ones.
    fn clean_up_own_run(&self) -> Result<u64, BoxError> {
        let mut next_part = 0;
        for name in names_in(&self.dir)? {
            let Some(p) = parse(&name).filter(|p| p.run == self.run && p.subtask == self.subtask)
            else {
                continue;
            };
            if p.state.is_some() {
                remove(&self.dir.join(&name))?;
            } else {
                next_part = next_part.max(p.part + 1);
            }
        }
        Ok(next_part)
    }

    /// Deletes the uncommitted files of `txn`'s writer from part `from` on.
    fn delete_uncommitted_from(&self, txn: &FileTxn, from: u64) -> Result<(), BoxError> {
        for name in names_in(&self.dir)? {
            if let Some(p) = parse(&name)
                && p.state.is_some()
                && p.run == txn.run
                && p.subtask == txn.subtask
                && p.part >= from
            {
                remove(&self.dir.join(&name))?;
            }
        }
        Ok(())
    }
}

impl<T> TransactionalWriter<T> for FileTxnWriter<T> {
    type Txn = FileTxn;

    fn begin(&mut self) -> Result<FileTxn, BoxError> {
        let first = match self.next_part {
            Some(next) => next,
            None => self.clean_up_own_run()?,
        };
        self.next_part = Some(first);
        Ok(FileTxn {
            run: self.run.clone(),
            subtask: self.subtask,
            first,
            parts: Vec::new(),
        })
    }

    fn write(&mut self, txn: &mut FileTxn, value: T, _: Option<i64>) -> Result<(), BoxError> {
        self.line.clear();
        (self.format)(&value, &mut self.line)?;
        self.line.push(b'\n');
        self.roll_if_due(self.line.len() as u64)?;
        if self.file.is_none() {
            let part = self.next_part.unwrap_or(txn.first);
            let path = self.path(txn, part, Some(IN_PROGRESS));
            let file = File::create(&path)
                .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
            self.next_part = Some(part + 1);
            txn.parts.push(part);
            self.file = Some(OpenPart {
                path,
                out: BufWriter::with_capacity(256 * 1024, file),
                written: 0,
                opened: Instant::now(),
            });
        }
        if let Some(part) = self.file.as_mut() {
            part.out
                .write_all(&self.line)
                .map_err(|e| format!("cannot write {}: {e}", part.path.display()))?;
            part.written += self.line.len() as u64;
        }
        Ok(())
    }

    fn flush(&mut self, _: &mut FileTxn) -> Result<(), BoxError> {
        self.roll_if_due(0)?;
        if let Some(part) = self.file.as_mut() {
            part.out
                .flush()
                .map_err(|e| format!("cannot write {}: {e}", part.path.display()))?;
        }
        Ok(())
    }

    fn pre_commit(&mut self, txn: &mut FileTxn) -> Result<(), BoxError> {
        self.close_part()?;
        for &part in &txn.parts {
            let from = self.path(txn, part, Some(IN_PROGRESS));
            let to = self.path(txn, part, Some(PENDING));
            std::fs::rename(&from, &to).map_err(|e| {
                format!(
                    "cannot pre-commit {} as {}: {e}",
                    from.display(),
                    to.display()
                )
            })?;
        }
        Ok(())
    }

    fn commit(&mut self, txn: FileTxn) -> Result<(), BoxError> {
        for &part in &txn.parts {
            let pending = self.path(&txn, part, Some(PENDING));
            let committed = self.path(&txn, part, None);
            match std::fs::rename(&pending, &committed) {
                Ok(()) => {}
                // Committed before a failure: a restore commits it again.
                Err(_) if committed.exists() => {}
                Err(e) => {
                    return Err(format!(
                        "cannot commit {} (neither it nor {} is there: was the output \
                         directory changed outside Strom?): {e}",
                        pending.display(),
                        committed.display()
                    )
                    .into());
                }
            }
        }
        Ok(())
    }

    fn abort(&mut self, txn: FileTxn) -> Result<(), BoxError> {
        if self.file.as_ref().is_some_and(|f| {
            txn.parts
                .last()
                .is_some_and(|&p| f.path == self.path(&txn, p, Some(IN_PROGRESS)))
        }) {
            self.file = None;
        }
        for &part in &txn.parts {
            remove(&self.path(&txn, part, Some(IN_PROGRESS)))?;
            remove(&self.path(&txn, part, Some(PENDING)))?;
        }
        Ok(())
    }

    /// The open transaction of a failed run, and every one it began after it.
    fn recover_and_abort(&mut self, txn: FileTxn) -> Result<(), BoxError> {
        self.delete_uncommitted_from(&txn, txn.first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::FileSink;
    use crate::sink::Sink;

    fn listing(dir: &Path) -> Vec<String> {
        let mut names = names_in(dir).expect("lists");
        names.sort();
        names
    }

    fn committed_lines(dir: &Path) -> Vec<String> {
        let mut lines = Vec::new();
        for name in listing(dir) {
            if !name.starts_with('.') {
                let text = std::fs::read_to_string(dir.join(&name)).expect("reads");
                lines.extend(text.lines().map(String::from));
            }
        }
        lines.sort();
        lines
    }

    #[test]
    fn file_names_parse_back() {
        assert_eq!(
            parse(".part-c12-3-7.pending"),
            Some(PartName {
                run: "c12",
                subtask: 3,
                part: 7,
                state: Some("pending")
            })
        );
        assert_eq!(parse("part-c0-0-0").map(|p| p.state), Some(None));
        assert_eq!(parse("part-0-1"), None, "the at-least-once sink's names");
        assert_eq!(parse("notes.txt"), None);
    }

    #[test]
    fn files_are_visible_only_once_their_checkpoint_completed() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let sink = FileSink::<u32>::text(dir.path()).exactly_once();
        let mut w = sink.create_writer(&SinkContext::default()).expect("opens");
        for i in 0..3 {
            w.write(i, None).expect("writes");
        }
        w.flush().expect("flushes");
        assert_eq!(listing(dir.path()), [".part-c0-0-0.inprogress"]);
        w.snapshot_state(1).expect("pre-commits");
        w.write(3, None).expect("writes");
        assert_eq!(
            listing(dir.path()),
            [".part-c0-0-0.pending", ".part-c0-0-1.inprogress"]
        );
        w.notify_checkpoint_complete(1).expect("commits");
        assert_eq!(committed_lines(dir.path()), ["0", "1", "2"]);
        w.finish().expect("finishes");
        w.close();
        assert_eq!(listing(dir.path()), ["part-c0-0-0", "part-c0-0-1"]);
        assert_eq!(committed_lines(dir.path()), ["0", "1", "2", "3"]);
    }

    #[test]
    fn a_restore_commits_what_the_checkpoint_holds_and_drops_what_came_after() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let sink = FileSink::<u32>::text(dir.path())
            .max_part_size(4)
            .exactly_once();
        let mut w = sink.create_writer(&SinkContext::default()).expect("opens");
        for i in 0..4 {
            w.write(i, None).expect("writes"); // two lines per 4-byte part
        }
        let state = w.snapshot_state(5).expect("pre-commits").expect("a state");
        for i in 4..6 {
            w.write(i, None).expect("writes");
        }
        w.snapshot_state(6).expect("pre-commits");
        w.write(6, None).expect("writes");
        w.flush().expect("flushes");
        // Killed before checkpoint 6 completed: parts 0-1 (checkpoint 5) pending, part 2
        // (checkpoint 6) pending, part 3 in progress.
        std::mem::forget(w);
        assert_eq!(listing(dir.path()).len(), 4);

        let restored = SinkContext {
            restored_checkpoint: Some(5),
            restored_states: vec![state],
            ..SinkContext::default()
        };
        let mut w = sink.create_writer(&restored).expect("recovers");
        assert_eq!(committed_lines(dir.path()), ["0", "1", "2", "3"]);
        assert_eq!(listing(dir.path()), ["part-c0-0-0", "part-c0-0-1"]);
        for i in 4..7 {
            w.write(i, None).expect("writes");
        }
        w.flush().expect("flushes");
        // This run fails too before its first checkpoint: the next one from checkpoint 5
        // drops its files, which are under the same run name.
        std::mem::forget(w);
        assert_eq!(listing(dir.path()).len(), 4);
        let mut w = sink.create_writer(&restored).expect("recovers again");
        assert_eq!(listing(dir.path()), ["part-c0-0-0", "part-c0-0-1"]);
        for i in 4..7 {
            w.write(i, None).expect("writes");
        }
        w.finish().expect("finishes");
        assert_eq!(
            committed_lines(dir.path()),
            ["0", "1", "2", "3", "4", "5", "6"]
        );
        assert!(listing(dir.path()).iter().all(|n| !n.starts_with('.')));
    }
}

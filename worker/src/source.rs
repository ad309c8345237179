//! The source API: how records enter a job.
//!
//! A [`Source`] describes where data comes from and how many readers it supports; each
//! parallel instance gets its own [`SourceReader`], which the task polls. Polling (rather
//! than a reader that runs its own loop) lets the task interleave timers, watermarks,
//! cancellation and, later, checkpoint barriers between batches.

use crate::error::TaskError;
use crate::record::{Data, NO_TIMESTAMP};
use crate::runtime::context::{Clock, OperatorInfo};
use crate::runtime::output::{Output, OutputTag};
use crate::time::emitter::{WatermarkAction, WatermarkEmitter};
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Errors of user-written sources and sinks.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a poll achieved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourcePoll {
    /// There may be more right away: poll again.
    More,
    /// Nothing now; poll again after at most this long.
    Wait(Duration),
    /// This reader will produce nothing more.
    Finished,
}

/// Where one parallel reader runs.
#[derive(Clone, Debug)]
pub struct SourceContext {
    pub subtask_index: usize,
    pub parallelism: usize,
    /// Records per batch the task prefers; emit about this many per poll.
    pub batch_size: usize,
    /// Whether processing time is simulated (sources then drive it; see
    /// [`SourceOutput::advance_processing_time`]).
    pub simulated_time: bool,
}

/// Describes a source; creates one reader per parallel instance.
pub trait Source<T: Data>: Send + Sync + 'static {
    /// `Some(n)` when the source supports exactly `n` readers (a socket: 1).
    fn fixed_parallelism(&self) -> Option<usize> {
        None
    }
    /// Whether the source ends by itself.
    fn is_bounded(&self) -> bool;
    /// The reader for one parallel instance.
    fn create_reader(&self, ctx: &SourceContext) -> Result<Box<dyn SourceReader<T>>, BoxError>;
    /// For a restore at another parallelism: the positions the old readers recorded
    /// (`old[s]` for old subtask `s`, `None` where one recorded none), spread over
    /// `parallelism` new readers so that each record is read once. By default a source
    /// cannot change its parallelism on restore.
    fn rescale_positions(
        &self,
        old: Vec<Option<Vec<u8>>>,
        parallelism: usize,
    ) -> Result<Vec<Option<Vec<u8>>>, BoxError> {
        let _ = parallelism;
        Err(format!(
            "this source cannot spread its positions over another parallelism; give it its \
             old parallelism ({})",
            old.len()
        )
        .into())
    }
}

/// Reads one parallel share of a source.
pub trait SourceReader<T: Data> {
    /// Emits what is available (about `batch_size` records, stopping when
    /// [`SourceOutput::is_full`]) and says whether to come back. Must return promptly: the
    /// task cancels, fires timers and (later) injects checkpoint barriers between polls, so a
    /// poll that blocks or loops for ever makes the job impossible to stop.
    fn poll(&mut self, out: &mut SourceOutput<'_, T>) -> Result<SourcePoll, BoxError>;
    /// Where the reader is, for a checkpoint (any bytes it can read back): taken between
    /// polls, so it covers exactly the records emitted so far. `None`: the reader keeps
    /// no position, and a restored job reads its input from the start.
    fn snapshot_position(&mut self) -> Result<Option<Vec<u8>>, BoxError> {
        Ok(None)
    }
    /// Resumes at a position `snapshot_position` returned, before the first poll.
    fn restore_position(&mut self, position: &[u8]) -> Result<(), BoxError> {
        let _ = position;
        Err("this source cannot resume from a checkpoint's position".into())
    }
    /// Checkpoint `checkpoint` has completed (e.g. to tell an external system how far
    /// the job has read).
    fn notify_checkpoint_complete(&mut self, checkpoint: u64) -> Result<(), BoxError> {
        let _ = checkpoint;
        Ok(())
    }
    /// Releases resources; called once at the end or on failure.
    fn close(&mut self) {}
}

/// A record a source or parser could not read, with where it came from and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The operator or source that rejected it.
    pub origin: String,
    /// Where the input was: `file.jsonl:17`, `socket localhost:9000 line 3`, ...
    pub position: String,
    /// What was wrong and how to fix it.
    pub error: String,
    /// The raw input, as text.
    pub payload: String,
}

impl std::fmt::Display for DeadLetter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} at {}: {} (input: {})",
            self.origin, self.position, self.error, self.payload
        )
    }
}

/// The side output that carries [`DeadLetter`]s of sources and parsers.
pub fn dead_letter_tag() -> OutputTag<DeadLetter> {
    OutputTag::new(DEAD_LETTER_TAG)
}

pub(crate) const DEAD_LETTER_TAG: &str = "dead-letter";

/// Everything a reader's output goes through: buffering, timestamps and watermarks, the
/// simulated clock, dead letters.
pub(crate) struct SourceState<T> {
    pub(crate) out: Output<T>,
    pub(crate) emitter: Option<WatermarkEmitter<T>>,
    pub(crate) clock: std::rc::Rc<Clock>,
    pub(crate) batch_size: usize,
    /// Records emitted in polls before the current one.
    pub(crate) emitted_before: u64,
    pub(crate) emitted_this_poll: usize,
    pub(crate) error: Option<TaskError>,
    /// No strategy, wall clock, no error: records go straight into the buffer.
    plain: bool,
    /// The clock is replayed (ProcessingTimeMode::Simulated).
    simulated: bool,
    pub(crate) info: OperatorInfo,
    pub(crate) dead_letters_logged: u64,
    dead_letter_tag: OutputTag<DeadLetter>,
}

impl<T: Data> SourceState<T> {
    pub(crate) fn new(
        out: Output<T>,
        emitter: Option<WatermarkEmitter<T>>,
        clock: std::rc::Rc<Clock>,
        batch_size: usize,
        info: OperatorInfo,
    ) -> Self {
        let simulated = clock.is_simulated();
        let plain = emitter.is_none() && !simulated;
        SourceState {
            out,
            emitter,
            clock,
            batch_size: batch_size.max(1),
            emitted_before: 0,
            emitted_this_poll: 0,
            error: None,
            plain,
            simulated,
            info,
            dead_letters_logged: 0,
            dead_letter_tag: dead_letter_tag(),
        }
    }

    fn record_error(&mut self, result: crate::error::TaskResult) {
        if let Err(e) = result
            && self.error.is_none()
        {
            self.error = Some(e);
            self.plain = false;
        }
    }

    /// Records emitted so far.
    pub(crate) fn emitted(&self) -> u64 {
        self.emitted_before + self.emitted_this_poll as u64
    }

    /// Starts counting a new poll.
    pub(crate) fn begin_poll(&mut self) {
        self.emitted_before += self.emitted_this_poll as u64;
        self.emitted_this_poll = 0;
    }

    pub(crate) fn apply(&mut self, action: WatermarkAction) {
        let r = match action {
            WatermarkAction::Watermark(w) => self.out.emit_watermark(w),
            WatermarkAction::Status(s) => self.out.emit_status(s),
        };
        self.record_error(r);
    }

    pub(crate) fn flush(&mut self) {
        let r = self.out.flush();
        self.record_error(r);
    }

    #[inline(always)]
    fn emit(&mut self, value: T, timestamp: i64) {
        if self.plain {
            // The common case (no watermark strategy, wall clock) stays a push.
            self.push(value, timestamp);
            return;
        }
        if !self.simulated
            && self.error.is_none()
            && let Some(em) = &mut self.emitter
            && em.can_stamp()
        {
            // A periodic strategy on the wall clock: stamp, note, push.
            let ts = em.stamp(&value, timestamp);
            self.push(value, ts);
            return;
        }
        self.emit_slow(value, timestamp);
    }

    #[inline(always)]
    fn push(&mut self, value: T, timestamp: i64) {
        self.out
            .buf
            .push(crate::record::StreamRecord::new(value, timestamp));
        self.emitted_this_poll += 1;
        if self.out.buf.len() >= self.batch_size {
            self.flush();
        }
    }

    #[inline(never)]
    fn emit_slow(&mut self, value: T, timestamp: i64) {
        if self.error.is_some() {
            return;
        }
        if let Some(a) = self.emitter.as_mut().and_then(|e| e.take_reactivation()) {
            self.apply(a);
        }
        if timestamp != NO_TIMESTAMP && self.emitter.as_ref().is_some_and(|e| e.is_ingestion_time())
        {
            // Ingestion time reads the replayed clock: first move it to the time at which
            // the source replays this record.
            self.replay_to(timestamp);
        }
        let mut ts = timestamp;
        let mut punctuation = None;
        if let Some(em) = &mut self.emitter {
            let clock = &self.clock;
            ts = em.timestamp_of(&value, timestamp, || clock.now());
            punctuation = em.on_event(&value, ts);
        }
        self.replay_to(ts);
        self.out.push(value, ts);
        self.emitted_this_poll += 1;
        if let Some(a) = punctuation {
            self.apply(a);
        } else if self.out.buf.len() >= self.batch_size {
            self.flush();
        }
    }
}

impl<T: Data> SourceState<T> {
    /// A record of split `split`: through the split's own watermark generator.
    fn emit_in_split(&mut self, split: usize, value: T, timestamp: i64) {
        if self.emitter.is_none() {
            self.emit(value, timestamp);
            return;
        }
        if self.error.is_some() {
            return;
        }
        if let Some(a) = self.emitter.as_mut().and_then(|e| e.take_reactivation()) {
            self.apply(a);
        }
        let ingestion_time = self.emitter.as_ref().is_some_and(|e| e.is_ingestion_time());
        if timestamp != NO_TIMESTAMP && ingestion_time {
            // As in `emit_slow`: the replayed clock first moves to the record's time.
            self.replay_to(timestamp);
        }
        let Some(em) = self.emitter.as_mut() else {
            return;
        };
        let clock = &self.clock;
        let ts = em.timestamp_of(&value, timestamp, || clock.now());
        let actions = em.on_split_event(split, &value, ts);
        self.replay_to(ts);
        self.out.push(value, ts);
        self.emitted_this_poll += 1;
        if actions.is_empty() {
            if self.out.buf.len() >= self.batch_size {
                self.flush();
            }
        } else {
            for a in actions {
                self.apply(a);
            }
        }
    }

    /// Replay: processing time at a source follows the records' timestamps (simulated
    /// clock only).
    #[inline(always)]
    fn replay_to(&mut self, ts: i64) {
        if self.simulated && ts != NO_TIMESTAMP && ts > self.clock.now() {
            self.replay_slow(ts);
        }
    }

    #[inline(never)]
    fn replay_slow(&mut self, ts: i64) {
        let r = self.out.flush();
        self.record_error(r);
        self.clock.advance_to(ts);
        let r = self.out.on_processing_time(ts);
        self.record_error(r);
    }
}

/// What a reader emits into.
pub struct SourceOutput<'a, T: Data> {
    pub(crate) state: &'a mut SourceState<T>,
}

impl<T: Data> SourceOutput<'_, T> {
    /// Emits a record (its timestamp comes from the watermark strategy, if any).
    #[inline]
    pub fn collect(&mut self, value: T) {
        self.state.emit(value, NO_TIMESTAMP);
    }

    /// Emits a record with an event timestamp in milliseconds.
    #[inline]
    pub fn collect_with_timestamp(&mut self, value: T, timestamp: i64) {
        self.state.emit(value, timestamp);
    }

    /// Emits a record read from split `split` (a partition, a file, a shard: any number
    /// the reader picks), with its event timestamp if it has one. With a watermark
    /// strategy each split has a generator of its own, and the reader's watermark is the
    /// least of its active splits' (Flink's per-split watermarks): a split read ahead of
    /// another does not make the other's records late, and a split without records for
    /// the strategy's idleness timeout stops holding the others back.
    #[inline]
    pub fn collect_in_split(&mut self, split: usize, value: T, timestamp: Option<i64>) {
        self.state
            .emit_in_split(split, value, timestamp.unwrap_or(NO_TIMESTAMP));
    }

    /// Declares that this reader reads split `split`: with a watermark strategy it holds
    /// the reader's watermark back from now on, until its records move it on or it is
    /// idle — also before its first record.
    pub fn add_split(&mut self, split: usize) {
        if let Some(em) = &mut self.state.emitter {
            em.add_split(split);
        }
    }

    /// Emits every record of `values` (a batch's worth, ideally).
    #[inline]
    pub fn collect_all(&mut self, values: impl IntoIterator<Item = T>) {
        let s = &mut *self.state;
        if s.plain {
            // One reservation and no per-record checks: the fast path of generators.
            let before = s.out.buf.len();
            s.out.buf.extend(
                values
                    .into_iter()
                    .map(|v| crate::record::StreamRecord::new(v, NO_TIMESTAMP)),
            );
            s.emitted_this_poll += s.out.buf.len() - before;
            if s.out.buf.len() >= s.batch_size {
                s.flush();
            }
        } else {
            for v in values {
                s.emit(v, NO_TIMESTAMP);
            }
        }
    }

    /// Emits every `(record, timestamp)` of `values`.
    #[inline]
    pub fn collect_all_timed(&mut self, values: impl IntoIterator<Item = (T, i64)>) {
        for (v, ts) in values {
            self.state.emit(v, ts);
        }
    }

    /// Emits a watermark decided by the source itself.
    pub fn emit_watermark(&mut self, watermark: i64) {
        self.state.apply(WatermarkAction::Watermark(watermark));
    }

    /// Declares this reader idle until it emits again.
    pub fn mark_idle(&mut self) {
        self.state.apply(WatermarkAction::Status(
            crate::record::WatermarkStatus::Idle,
        ));
    }

    /// Sends an unreadable input to the dead-letter side output and counts it; the job
    /// goes on.
    pub fn dead_letter(
        &mut self,
        position: impl Into<String>,
        error: impl Into<String>,
        payload: impl Into<String>,
    ) {
        let s = &mut *self.state;
        let letter = DeadLetter {
            origin: s.info.name.to_string(),
            position: position.into(),
            error: error.into(),
            payload: payload.into(),
        };
        s.info.metrics.dead_letters.fetch_add(1, Ordering::Relaxed);
        if s.dead_letters_logged < 10 {
            s.dead_letters_logged += 1;
            tracing::warn!(
                source = %letter.origin,
                position = %letter.position,
                error = %letter.error,
                "unreadable record sent to the dead-letter output"
            );
        }
        s.out.sides.emit(&s.dead_letter_tag, letter, NO_TIMESTAMP);
    }

    /// Simulated processing time only: moves this source's clock to `time`, firing due
    /// processing-time timers downstream. Ignored with the wall clock.
    pub fn advance_processing_time(&mut self, time: i64) {
        let s = &mut *self.state;
        if s.clock.is_simulated() && s.clock.now() < time {
            s.flush();
            s.clock.advance_to(time);
            let r = s.out.on_processing_time(time);
            s.record_error(r);
        }
    }

    /// Current processing time.
    pub fn processing_time(&self) -> i64 {
        self.state.clock.now()
    }

    /// Records the task would like per poll.
    pub fn batch_size(&self) -> usize {
        self.state.batch_size
    }

    /// Whether to stop emitting and return from `poll`: a batch's worth was emitted (return
    /// `SourcePoll::More`), or the job is failing downstream. Readers that loop until this
    /// holds must check it, or a failed job would spin in their loop.
    pub fn is_full(&self) -> bool {
        self.state.emitted_this_poll >= self.state.batch_size || self.state.error.is_some()
    }

    /// Whether the job is failing downstream; stop emitting and return.
    pub fn is_failed(&self) -> bool {
        self.state.error.is_some()
    }
}

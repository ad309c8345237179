//! The loop of one subtask: read input channels (or poll a source), hand elements to the
//! chain of operators, fire processing-time timers, flush when input runs dry, and end
//! cleanly when every input has ended or the job is cancelled.

use crate::checkpoint::CheckpointingMode;
use crate::error::{Position, TaskError, TaskResult};
use crate::record::{Data, MAX_WATERMARK, WatermarkStatus};
use crate::runtime::alignment::Alignment;
use crate::runtime::barrier::{Barrier, OperatorSnapshot};
use crate::runtime::consumer::Consumer;
use crate::runtime::context::{OperatorInfo, TaskServices, guard};
use crate::runtime::envelope::{Envelope, ErasedBatch, downcast_batch};
use crate::runtime::input::{InputGate, Polled};
use crate::runtime::valve::{ClockValve, ValveOutput, WatermarkValve};
use crate::source::{SourceOutput, SourcePoll, SourceReader, SourceState};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How long a quiet task sleeps before it looks at the cancel flag again.
const CANCEL_CHECK: Duration = Duration::from_millis(50);

/// The first operator of a task that reads channels, seen without its input types.
pub(crate) trait TaskHead {
    fn process(&mut self, input: u8, batch: Box<dyn ErasedBatch>) -> TaskResult;
    fn process_watermark(&mut self, watermark: i64) -> TaskResult;
    fn process_status(&mut self, status: WatermarkStatus) -> TaskResult;
    fn on_processing_time(&mut self, now: i64) -> TaskResult;
    /// Every channel of `input` has ended.
    fn end_input(&mut self, input: u8) -> TaskResult;
    /// Every input has ended.
    fn finish(&mut self) -> TaskResult;
    fn flush(&mut self) -> TaskResult;
    /// Every input delivered the barrier: snapshot the chain and pass the barrier on.
    fn process_barrier(
        &mut self,
        barrier: Barrier,
        snapshots: &mut Vec<OperatorSnapshot>,
    ) -> TaskResult;
    fn notify_checkpoint_complete(&mut self, checkpoint: u64) -> TaskResult;
    fn close(&mut self);
}

/// A one-input chain as a task head.
pub(crate) struct OneInputHead<I> {
    consumer: Box<dyn Consumer<I>>,
    operator: Arc<str>,
}

impl<I: Data> OneInputHead<I> {
    pub(crate) fn new(consumer: Box<dyn Consumer<I>>, operator: Arc<str>) -> Self {
        OneInputHead { consumer, operator }
    }
}

fn internal(operator: &str, message: String) -> TaskError {
    TaskError::Operator {
        operator: operator.to_string(),
        subtask: 0,
        parallelism: 0,
        message,
    }
}

impl<I: Data> TaskHead for OneInputHead<I> {
    fn process(&mut self, _input: u8, batch: Box<dyn ErasedBatch>) -> TaskResult {
        let mut batch = downcast_batch::<I>(batch).map_err(|m| internal(&self.operator, m))?;
        self.consumer.process_batch(&mut batch)
    }
    fn process_watermark(&mut self, watermark: i64) -> TaskResult {
        self.consumer.process_watermark(watermark)
    }
    fn process_status(&mut self, status: WatermarkStatus) -> TaskResult {
        self.consumer.process_status(status)
    }
    fn on_processing_time(&mut self, now: i64) -> TaskResult {
        self.consumer.on_processing_time(now)
    }
    fn end_input(&mut self, _input: u8) -> TaskResult {
        Ok(())
    }
    fn finish(&mut self) -> TaskResult {
        self.consumer.end_input()
    }
    fn flush(&mut self) -> TaskResult {
        self.consumer.flush()
    }
    fn process_barrier(
        &mut self,
        barrier: Barrier,
        snapshots: &mut Vec<OperatorSnapshot>,
    ) -> TaskResult {
        self.consumer.process_barrier(barrier, snapshots)
    }
    fn notify_checkpoint_complete(&mut self, checkpoint: u64) -> TaskResult {
        self.consumer.notify_checkpoint_complete(checkpoint)
    }
    fn close(&mut self) {
        self.consumer.close();
    }
}

/// An operator with two typed inputs (connect, joins, broadcast). Always a task head.
pub(crate) trait TwoInputOperator<I1, I2> {
    fn process_batch1(&mut self, batch: &mut crate::record::Batch<I1>) -> TaskResult;
    fn process_batch2(&mut self, batch: &mut crate::record::Batch<I2>) -> TaskResult;
    fn process_watermark(&mut self, watermark: i64) -> TaskResult;
    fn process_status(&mut self, status: WatermarkStatus) -> TaskResult;
    fn on_processing_time(&mut self, now: i64) -> TaskResult;
    fn end_input(&mut self, _input: u8) -> TaskResult {
        Ok(())
    }
    /// Both inputs ended: emit what is pending and forward the end.
    fn finish(&mut self) -> TaskResult;
    fn flush(&mut self) -> TaskResult;
    /// Both inputs delivered the barrier: snapshot and pass it on.
    fn process_barrier(
        &mut self,
        barrier: Barrier,
        snapshots: &mut Vec<OperatorSnapshot>,
    ) -> TaskResult;
    fn notify_checkpoint_complete(&mut self, checkpoint: u64) -> TaskResult;
    fn close(&mut self);
}

pub(crate) struct TwoInputHead<I1, I2> {
    op: Box<dyn TwoInputOperator<I1, I2>>,
    operator: Arc<str>,
}

impl<I1: Data, I2: Data> TwoInputHead<I1, I2> {
    pub(crate) fn new(op: Box<dyn TwoInputOperator<I1, I2>>, operator: Arc<str>) -> Self {
        TwoInputHead { op, operator }
    }
}

impl<I1: Data, I2: Data> TaskHead for TwoInputHead<I1, I2> {
    fn process(&mut self, input: u8, batch: Box<dyn ErasedBatch>) -> TaskResult {
        if input == 0 {
            let mut b = downcast_batch::<I1>(batch).map_err(|m| internal(&self.operator, m))?;
            self.op.process_batch1(&mut b)
        } else {
            let mut b = downcast_batch::<I2>(batch).map_err(|m| internal(&self.operator, m))?;
            self.op.process_batch2(&mut b)
        }
    }
    fn process_watermark(&mut self, watermark: i64) -> TaskResult {
        self.op.process_watermark(watermark)
    }
    fn process_status(&mut self, status: WatermarkStatus) -> TaskResult {
        self.op.process_status(status)
    }
    fn on_processing_time(&mut self, now: i64) -> TaskResult {
        self.op.on_processing_time(now)
    }
    fn end_input(&mut self, input: u8) -> TaskResult {
        self.op.end_input(input)
    }
    fn finish(&mut self) -> TaskResult {
        self.op.finish()
    }
    fn flush(&mut self) -> TaskResult {
        self.op.flush()
    }
    fn process_barrier(
        &mut self,
        barrier: Barrier,
        snapshots: &mut Vec<OperatorSnapshot>,
    ) -> TaskResult {
        self.op.process_barrier(barrier, snapshots)
    }
    fn notify_checkpoint_complete(&mut self, checkpoint: u64) -> TaskResult {
        self.op.notify_checkpoint_complete(checkpoint)
    }
    fn close(&mut self) {
        self.op.close();
    }
}

/// A source and its chain, seen without the record type.
pub(crate) trait SourceDriver {
    fn poll(&mut self) -> TaskResult<SourcePoll>;
    /// Asks the watermark generator (periodic emission).
    fn periodic(&mut self, now: i64) -> TaskResult;
    fn on_processing_time(&mut self, now: i64) -> TaskResult;
    /// The source ended: the final watermark and end of input.
    fn finish(&mut self) -> TaskResult;
    fn flush(&mut self) -> TaskResult;
    /// Snapshots the reader's position and sends the barrier after every record before it.
    fn checkpoint(&mut self, barrier: Barrier, snapshots: &mut Vec<OperatorSnapshot>)
    -> TaskResult;
    /// The reader's position (also once it has ended).
    fn final_state(&mut self) -> TaskResult<OperatorSnapshot>;
    /// The reader and the chain hear that `checkpoint` completed.
    fn notify_checkpoint_complete(&mut self, checkpoint: u64) -> TaskResult;
    fn close(&mut self);
}

pub(crate) struct SourceHead<T: Data> {
    reader: Box<dyn SourceReader<T>>,
    state: SourceState<T>,
}

impl<T: Data> SourceHead<T> {
    pub(crate) fn new(reader: Box<dyn SourceReader<T>>, state: SourceState<T>) -> Self {
        SourceHead { reader, state }
    }

    fn take_error(&mut self) -> TaskResult {
        match self.state.error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn info(&self) -> &OperatorInfo {
        &self.state.info
    }
}

impl<T: Data> SourceDriver for SourceHead<T> {
    fn poll(&mut self) -> TaskResult<SourcePoll> {
        self.state.begin_poll();
        let info = self.state.info.clone();
        let result = guard!(
            info,
            Position::Source {
                emitted: self.state.emitted()
            },
            {
                let mut out = SourceOutput {
                    state: &mut self.state,
                };
                self.reader
                    .poll(&mut out)
                    .map_err(|e| info.error(format!("source failed: {e}")))
            }
        );
        self.take_error()?;
        let poll = result?;
        if self.state.emitted_this_poll > 0 {
            self.state.flush();
            let now = self.state.clock.now();
            self.periodic(now)?;
        }
        self.take_error()?;
        Ok(poll)
    }

    fn periodic(&mut self, now: i64) -> TaskResult {
        if let Some(em) = &mut self.state.emitter {
            for action in em.on_periodic(now) {
                self.state.apply(action);
            }
        }
        self.take_error()
    }

    fn on_processing_time(&mut self, now: i64) -> TaskResult {
        self.state.out.on_processing_time(now)
    }

    fn finish(&mut self) -> TaskResult {
        self.state.out.emit_watermark(MAX_WATERMARK)?;
        self.state.out.end_input()
    }

    fn flush(&mut self) -> TaskResult {
        self.state.out.flush_downstream()
    }

    fn checkpoint(
        &mut self,
        barrier: Barrier,
        snapshots: &mut Vec<OperatorSnapshot>,
    ) -> TaskResult {
        let snapshot = self.final_state()?;
        snapshots.push(snapshot);
        self.state.out.emit_barrier(barrier, snapshots)
    }

    fn final_state(&mut self) -> TaskResult<OperatorSnapshot> {
        let info = self.state.info.clone();
        let position = self
            .reader
            .snapshot_position()
            .map_err(|e| info.error(format!("source could not snapshot its position: {e}")))?;
        Ok(OperatorSnapshot {
            uid: info.uid.clone(),
            subtask: info.subtask,
            parallelism: info.parallelism,
            source_position: position,
            ..OperatorSnapshot::default()
        })
    }

    fn notify_checkpoint_complete(&mut self, checkpoint: u64) -> TaskResult {
        let info = self.state.info.clone();
        self.reader
            .notify_checkpoint_complete(checkpoint)
            .map_err(|e| {
                info.error(format!(
                    "source failed on the completion of checkpoint {checkpoint}: {e}"
                ))
            })?;
        self.state.out.notify_checkpoint_complete(checkpoint)
    }

    fn close(&mut self) {
        let name = self.info().name.clone();
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.reader.close())).is_err() {
            tracing::warn!(source = %name, "the source reader panicked while closing");
        }
        self.state.out.close();
    }
}

/// Runs a task that reads channels until they all end, or it fails or is cancelled.
pub(crate) fn run_input_task(
    head: &mut dyn TaskHead,
    mut gate: InputGate,
    services: &TaskServices,
    cancel: &AtomicBool,
) -> TaskResult {
    let at_least_once = services
        .config
        .checkpointing
        .as_ref()
        .is_some_and(|c| c.mode == CheckpointingMode::AtLeastOnce);
    let mut alignment = Alignment::new(!at_least_once);
    let mut notified = 0;
    let result = input_loop(
        head,
        &mut gate,
        &mut alignment,
        services,
        cancel,
        &mut notified,
    );
    // A stop-with-savepoint raises the completed checkpoint, then cancels. The loop may
    // see the cancel flag (or a channel its cancelled upstream closed) between its
    // look at the completed checkpoint and the next: look once more, so sinks commit
    // what the savepoint holds. The completed id is stored before the flag is, so it
    // is visible here.
    let result = match result {
        Err(e) if e.is_secondary() => notify_last_completed(services, &mut notified, |id| {
            head.notify_checkpoint_complete(id)
        })
        .and(Err(e)),
        other => other,
    };
    head.close();
    result
}

/// Hands a checkpoint completed since `notified` to `notify`, if there is one.
fn notify_last_completed(
    services: &TaskServices,
    notified: &mut u64,
    notify: impl FnOnce(u64) -> TaskResult,
) -> TaskResult {
    match &services.checkpoints {
        Some(link) => link.newly_completed(notified).map_or(Ok(()), notify),
        None => Ok(()),
    }
}

fn input_loop(
    head: &mut dyn TaskHead,
    gate: &mut InputGate,
    alignment: &mut Alignment,
    services: &TaskServices,
    cancel: &AtomicBool,
    notified: &mut u64,
) -> TaskResult {
    let simulated = services.clock.is_simulated();
    let mut valve = WatermarkValve::new(gate.len());
    let mut clocks = ClockValve::new(gate.len());
    let mut valve_out = Vec::new();
    loop {
        if let Some(link) = &services.checkpoints
            && let Some(done) = link.newly_completed(notified)
        {
            head.notify_checkpoint_complete(done)?;
        }
        if cancel.load(Ordering::Acquire) {
            return Err(TaskError::Cancelled);
        }
        if !simulated {
            fire_wall_clock_timers(services, |now| head.on_processing_time(now))?;
        }
        match gate.poll() {
            Polled::Element(ch, envelope) => match envelope {
                Envelope::Records(batch) => head.process(gate.input_of(ch), batch)?,
                Envelope::Watermark(w) => {
                    valve.input_watermark(ch, w, &mut valve_out);
                    apply_valve(head, &mut valve_out, &services.times)?;
                }
                Envelope::Status(s) => {
                    valve.input_status(ch, s, &mut valve_out);
                    apply_valve(head, &mut valve_out, &services.times)?;
                }
                Envelope::ProcessingTime(t) => {
                    let now = clocks.input(ch, t);
                    if services.clock.advance_to(now) {
                        head.on_processing_time(now)?;
                    }
                }
                Envelope::Barrier(barrier) => {
                    for ready in alignment.on_barrier(gate, ch, barrier) {
                        complete_checkpoint(head, ready, services)?;
                    }
                }
                Envelope::EndOfInput => {
                    let input = gate.input_of(ch);
                    let input_done = gate.finish(ch);
                    // A channel that ended has nothing more before any barrier.
                    for ready in alignment.on_channel_ended(gate) {
                        complete_checkpoint(head, ready, services)?;
                    }
                    valve.input_ended(ch, &mut valve_out);
                    apply_valve(head, &mut valve_out, &services.times)?;
                    let now = clocks.ended(ch);
                    if simulated && services.clock.advance_to(now) {
                        head.on_processing_time(now)?;
                    }
                    if input_done {
                        head.end_input(input)?;
                    }
                }
            },
            Polled::Empty => {
                // Input ran dry: send partial batches on, so records never wait for a
                // batch to fill while the task idles.
                head.flush()?;
                let waiting = std::time::Instant::now();
                gate.wait(wait_time(services, simulated));
                services.times.add_idle(waiting.elapsed());
            }
            Polled::Finished => break,
            Polled::Disconnected(None) => return Err(TaskError::ChannelClosed),
            Polled::Disconnected(Some(why)) => return Err(TaskError::RemoteInput(why)),
        }
    }
    head.finish()?;
    head.flush()
}

/// Every input delivered `barrier`: the chain snapshots and passes it on, and the
/// coordinator gets the snapshots.
fn complete_checkpoint(
    head: &mut dyn TaskHead,
    barrier: Barrier,
    services: &TaskServices,
) -> TaskResult {
    let mut snapshots = Vec::new();
    head.process_barrier(barrier.clone(), &mut snapshots)?;
    if let Some(link) = &services.checkpoints {
        link.ack(&barrier, snapshots);
    }
    Ok(())
}

fn apply_valve(
    head: &mut dyn TaskHead,
    out: &mut Vec<ValveOutput>,
    times: &crate::runtime::metrics::TaskTimes,
) -> TaskResult {
    for o in out.drain(..) {
        match o {
            ValveOutput::Watermark(w) => {
                times.watermark.store(w, Ordering::Relaxed);
                head.process_watermark(w)?
            }
            ValveOutput::Status(s) => head.process_status(s)?,
        }
    }
    Ok(())
}

/// Calls `fire` if some operator asked for a wall-clock time that has come.
fn fire_wall_clock_timers(
    services: &TaskServices,
    fire: impl FnOnce(i64) -> TaskResult,
) -> TaskResult {
    let next = services.wakeup.next();
    if next != i64::MAX {
        let now = services.clock.now();
        if next <= now {
            services.wakeup.reset();
            return fire(now);
        }
    }
    Ok(())
}

fn wait_time(services: &TaskServices, simulated: bool) -> Duration {
    let next = services.wakeup.next();
    if simulated || next == i64::MAX {
        return CANCEL_CHECK;
    }
    let until = (next - services.clock.now()).max(0) as u64;
    Duration::from_millis(until).min(CANCEL_CHECK)
}

/// Runs a source task until the source ends, or it fails or is cancelled.
pub(crate) fn run_source_task(
    driver: &mut dyn SourceDriver,
    services: &TaskServices,
    cancel: &AtomicBool,
) -> TaskResult {
    let mut notified = 0;
    let result = source_loop(driver, services, cancel, &mut notified);
    // As for input tasks: a stop-with-savepoint's commit comes before its cancel.
    let result = match result {
        Err(e) if e.is_secondary() => notify_last_completed(services, &mut notified, |id| {
            driver.notify_checkpoint_complete(id)
        })
        .and(Err(e)),
        other => other,
    };
    driver.close();
    result
}

fn source_loop(
    driver: &mut dyn SourceDriver,
    services: &TaskServices,
    cancel: &AtomicBool,
    notified: &mut u64,
) -> TaskResult {
    let simulated = services.clock.is_simulated();
    let interval = services
        .config
        .auto_watermark_interval
        .max(Duration::from_millis(1));
    loop {
        if let Some(link) = &services.checkpoints
            && let Some(done) = link.newly_completed(notified)
        {
            driver.notify_checkpoint_complete(done)?;
        }
        if cancel.load(Ordering::Acquire) {
            return Err(TaskError::Cancelled);
        }
        if !simulated {
            fire_wall_clock_timers(services, |now| driver.on_processing_time(now))?;
        }
        if let Some(link) = &services.checkpoints
            && let Some(triggers) = &link.triggers
        {
            while let Ok(barrier) = triggers.try_recv() {
                let mut snapshots = Vec::new();
                driver.checkpoint(barrier.clone(), &mut snapshots)?;
                link.ack(&barrier, snapshots);
            }
        }
        match driver.poll()? {
            SourcePoll::More => {}
            SourcePoll::Wait(hint) => {
                driver.flush()?;
                let now = services.clock.now();
                driver.periodic(now)?;
                let mut pause = hint.min(interval).min(CANCEL_CHECK);
                let next = services.wakeup.next();
                if !simulated && next != i64::MAX {
                    let until = Duration::from_millis((next - now).max(0) as u64);
                    pause = pause.min(until);
                }
                if !pause.is_zero() {
                    std::thread::sleep(pause);
                    services.times.add_idle(pause);
                }
            }
            SourcePoll::Finished => break,
        }
    }
    // Later checkpoints hold where this source ended, so a restore does not read it again.
    if let Some(link) = &services.checkpoints {
        link.finished(vec![driver.final_state()?]);
    }
    driver.finish()?;
    driver.flush()
}

//! Sends an operator's records to the subtasks of the next task, partitioned.
//!
//! One buffer per outgoing channel; a buffer is sent as one batch when it is full, when a
//! watermark or the end of input must follow it, or when the task's input runs dry
//! (`flush`). Sending blocks when the channel is full: that is backpressure.

use crate::error::{TaskError, TaskResult};
use crate::keygroup::operator_index_for_key_group;
use crate::net::exchange::RemoteSender;
use crate::record::{Batch, Data, StreamRecord, WatermarkStatus};
use crate::runtime::barrier::{Barrier, OperatorSnapshot};
use crate::runtime::consumer::Consumer;
use crate::runtime::envelope::Envelope;
use crate::runtime::metrics::TaskTimes;
use crossbeam_channel::{Sender, TrySendError};
use std::sync::Arc;
use std::time::Instant;

/// One outgoing channel: to a subtask in this process, or in another one.
pub(crate) enum OutChannel {
    Local(Sender<Envelope>),
    Remote(RemoteSender),
}

impl OutChannel {
    /// Sends one element, blocking while the consumer has no room (backpressure); the
    /// time blocked counts as the task's backpressured time.
    pub(crate) fn send(&self, envelope: Envelope, times: &TaskTimes) -> TaskResult {
        match self {
            OutChannel::Local(tx) => match tx.try_send(envelope) {
                Ok(()) => Ok(()),
                Err(TrySendError::Full(envelope)) => {
                    let blocked = Instant::now();
                    let sent = tx.send(envelope).map_err(|_| TaskError::ChannelClosed);
                    times.add_backpressured(blocked.elapsed());
                    sent
                }
                Err(TrySendError::Disconnected(_)) => Err(TaskError::ChannelClosed),
            },
            OutChannel::Remote(remote) => remote
                .send(envelope, times)
                .map_err(|e| TaskError::Remote(e.to_string())),
        }
    }
}

/// How records are spread over the channels of one edge (Flink's partitioners).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Partitioning {
    /// To the subtask with the same index (parallelism must match).
    Forward,
    /// Round-robin over all downstream subtasks.
    Rebalance,
    /// Round-robin over a local subset of downstream subtasks.
    Rescale,
    /// Uniformly at random.
    Shuffle,
    /// Every record to every downstream subtask.
    Broadcast,
    /// Everything to subtask 0.
    Global,
    /// By key: key group, then the subtask that owns it.
    Hash,
    /// By a user function of the key.
    Custom,
}

impl Partitioning {
    /// Whether each upstream subtask talks to only some downstream subtasks.
    pub(crate) fn is_pointwise(self) -> bool {
        matches!(self, Partitioning::Forward | Partitioning::Rescale)
    }

    pub fn name(self) -> &'static str {
        match self {
            Partitioning::Forward => "FORWARD",
            Partitioning::Rebalance => "REBALANCE",
            Partitioning::Rescale => "RESCALE",
            Partitioning::Shuffle => "SHUFFLE",
            Partitioning::Broadcast => "BROADCAST",
            Partitioning::Global => "GLOBAL",
            Partitioning::Hash => "HASH",
            Partitioning::Custom => "CUSTOM",
        }
    }
}

/// Hash of a record's key.
pub(crate) type KeyHashFn<T> = Arc<dyn Fn(&T) -> u64 + Send + Sync>;
/// A user partitioner applied to a record's key: `(record, channels) -> channel`.
pub(crate) type CustomPartitionFn<T> = Arc<dyn Fn(&T, usize) -> usize + Send + Sync>;

/// The typed decision of which channel(s) a record goes to.
pub(crate) enum Router<T> {
    Single,
    RoundRobin {
        next: usize,
    },
    Random {
        state: u64,
    },
    Broadcast,
    Global,
    /// By key: `channel_of[key_group]` is precomputed (Flink's key-group-to-operator map).
    Hash {
        key_hash: KeyHashFn<T>,
        channel_of: Vec<u32>,
    },
    Custom {
        partition: CustomPartitionFn<T>,
    },
}

struct ChannelWriter<T> {
    buf: Batch<T>,
    tx: OutChannel,
}

/// The last consumer in a task's chain for one outgoing edge.
pub(crate) struct NetworkWriter<T> {
    router: Router<T>,
    channels: Vec<ChannelWriter<T>>,
    batch_size: usize,
    forward_clock: bool,
    operator: Arc<str>,
    /// The task's times, where blocked sends count as backpressure.
    times: Arc<TaskTimes>,
}

impl<T> Router<T> {
    /// Hash partitioning over `channels` subtasks with `max_parallelism` key groups.
    pub(crate) fn hash(key_hash: KeyHashFn<T>, max_parallelism: usize, channels: usize) -> Self {
        let channel_of = (0..max_parallelism)
            .map(|kg| operator_index_for_key_group(max_parallelism, channels, kg) as u32)
            .collect();
        Router::Hash {
            key_hash,
            channel_of,
        }
    }
}

impl<T: Data> NetworkWriter<T> {
    pub(crate) fn new(
        router: Router<T>,
        senders: Vec<OutChannel>,
        batch_size: usize,
        forward_clock: bool,
        operator: Arc<str>,
        times: Arc<TaskTimes>,
    ) -> Self {
        let batch_size = batch_size.max(1);
        NetworkWriter {
            router,
            channels: senders
                .into_iter()
                .map(|tx| ChannelWriter {
                    buf: Vec::with_capacity(batch_size),
                    tx,
                })
                .collect(),
            batch_size,
            forward_clock,
            operator,
            times,
        }
    }

    fn send(tx: &OutChannel, times: &TaskTimes, env: Envelope) -> TaskResult {
        tx.send(env, times)
    }

    fn send_buffer(&mut self, channel: usize) -> TaskResult {
        let batch_size = self.batch_size;
        let ch = &mut self.channels[channel];
        if ch.buf.is_empty() {
            return Ok(());
        }
        let full = std::mem::replace(&mut ch.buf, Vec::with_capacity(batch_size));
        Self::send(&ch.tx, &self.times, Envelope::Records(Box::new(full)))
    }

    #[inline]
    fn push(&mut self, channel: usize, record: StreamRecord<T>) -> TaskResult {
        let ch = &mut self.channels[channel];
        ch.buf.push(record);
        if ch.buf.len() >= self.batch_size {
            self.send_buffer(channel)?;
        }
        Ok(())
    }

    fn broadcast_control(&mut self, make: impl Fn() -> Envelope) -> TaskResult {
        for i in 0..self.channels.len() {
            self.send_buffer(i)?;
            Self::send(&self.channels[i].tx, &self.times, make())?;
        }
        Ok(())
    }

    fn route_each(&mut self, batch: &mut Batch<T>) -> TaskResult {
        let n = self.channels.len();
        match &mut self.router {
            Router::RoundRobin { next } => {
                let mut i = *next;
                for rec in batch.drain(..) {
                    i += 1;
                    if i >= n {
                        i = 0;
                    }
                    let ch = &mut self.channels[i];
                    ch.buf.push(rec);
                    if ch.buf.len() >= self.batch_size {
                        let full =
                            std::mem::replace(&mut ch.buf, Vec::with_capacity(self.batch_size));
                        Self::send(&ch.tx, &self.times, Envelope::Records(Box::new(full)))?;
                    }
                }
                *next = i;
                Ok(())
            }
            Router::Random { state } => {
                for rec in batch.drain(..) {
                    // xorshift64*: deterministic per subtask, uniform enough to shuffle.
                    *state ^= *state >> 12;
                    *state ^= *state << 25;
                    *state ^= *state >> 27;
                    let r = state.wrapping_mul(0x2545_f491_4f6c_dd1d);
                    let i = (((r >> 32) * n as u64) >> 32) as usize;
                    let ch = &mut self.channels[i];
                    ch.buf.push(rec);
                    if ch.buf.len() >= self.batch_size {
                        let full =
                            std::mem::replace(&mut ch.buf, Vec::with_capacity(self.batch_size));
                        Self::send(&ch.tx, &self.times, Envelope::Records(Box::new(full)))?;
                    }
                }
                Ok(())
            }
            Router::Hash {
                key_hash,
                channel_of,
            } => {
                let key_hash = key_hash.clone();
                let max_p = channel_of.len() as u64;
                let mask = max_p.is_power_of_two().then(|| max_p - 1);
                for rec in batch.drain(..) {
                    let h = key_hash(&rec.value);
                    let kg = match mask {
                        Some(m) => h & m,
                        None => h % max_p,
                    };
                    let i = channel_of[kg as usize] as usize;
                    let ch = &mut self.channels[i];
                    ch.buf.push(rec);
                    if ch.buf.len() >= self.batch_size {
                        let full =
                            std::mem::replace(&mut ch.buf, Vec::with_capacity(self.batch_size));
                        Self::send(&ch.tx, &self.times, Envelope::Records(Box::new(full)))?;
                    }
                }
                Ok(())
            }
            Router::Custom { partition } => {
                let partition = partition.clone();
                for rec in batch.drain(..) {
                    let i = partition(&rec.value, n);
                    if i >= n {
                        return Err(TaskError::Operator {
                            operator: self.operator.to_string(),
                            subtask: 0,
                            parallelism: n,
                            message: format!(
                                "the custom partitioner returned channel {i}, but there are only {n} (0..{n}); \
                                 return a value below the number of partitions it is given"
                            ),
                        });
                    }
                    self.push(i, rec)?;
                }
                Ok(())
            }
            Router::Single | Router::Global | Router::Broadcast => Ok(()),
        }
    }
}

impl<T: Data> Consumer<T> for NetworkWriter<T> {
    fn process_batch(&mut self, batch: &mut Batch<T>) -> TaskResult {
        if batch.is_empty() {
            return Ok(());
        }
        match self.router {
            Router::Single | Router::Global => {
                let ch = &mut self.channels[0];
                if ch.buf.is_empty() && batch.len() * 2 >= self.batch_size {
                    // Send the batch itself; the caller keeps a fresh buffer of equal size.
                    let cap = batch.capacity();
                    let full = std::mem::replace(batch, Vec::with_capacity(cap));
                    return Self::send(&ch.tx, &self.times, Envelope::Records(Box::new(full)));
                }
                for rec in batch.drain(..) {
                    self.push(0, rec)?;
                }
                Ok(())
            }
            Router::Broadcast => {
                let n = self.channels.len();
                for rec in batch.drain(..) {
                    for i in 0..n - 1 {
                        self.push(i, rec.clone())?;
                    }
                    self.push(n - 1, rec)?;
                }
                Ok(())
            }
            _ => self.route_each(batch),
        }
    }

    fn process_watermark(&mut self, watermark: i64) -> TaskResult {
        self.broadcast_control(|| Envelope::Watermark(watermark))
    }

    fn process_status(&mut self, status: WatermarkStatus) -> TaskResult {
        self.broadcast_control(|| Envelope::Status(status))
    }

    fn on_processing_time(&mut self, now: i64) -> TaskResult {
        if self.forward_clock {
            self.broadcast_control(|| Envelope::ProcessingTime(now))?;
        }
        Ok(())
    }

    fn end_input(&mut self) -> TaskResult {
        self.broadcast_control(|| Envelope::EndOfInput)
    }

    fn process_barrier(&mut self, barrier: Barrier, _: &mut Vec<OperatorSnapshot>) -> TaskResult {
        self.broadcast_control(|| Envelope::Barrier(barrier.clone()))
    }

    /// The tasks downstream hear of it from their own process, not through channels.
    fn notify_checkpoint_complete(&mut self, _: u64) -> TaskResult {
        Ok(())
    }

    fn flush(&mut self) -> TaskResult {
        for i in 0..self.channels.len() {
            self.send_buffer(i)?;
        }
        Ok(())
    }

    fn close(&mut self) {
        // Dropping the senders tells receivers that nothing more will come.
        self.channels.clear();
    }
}

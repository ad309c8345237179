//! Checkpoint barriers as they travel through a job (Chandy–Lamport, as Flink aligns
//! them): a source that is told to checkpoint snapshots its position and sends a barrier
//! down every channel; a task that has a barrier from every input snapshots its operators
//! and passes the barrier on. What each operator snapshotted goes to the checkpoint
//! coordinator, which writes it out while the task goes on.

use crate::keygroup::KeyGroupRange;
use crate::record::{Data, Key};
use crate::runtime::context::OperatorInfo;
use crate::state::backend::KeyedBackend;
use crate::state::broadcast::{BroadcastStates, RawMap};
use crate::state::operator::{ListSnapshot, OperatorStateStore};
use crate::state::rocks::RocksCheckpoint;
use crate::state::snapshot::KeyGroupSnapshot;
use crate::state::timers::Timers;
use crossbeam_channel::{Receiver, Sender};
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Everything before the barrier belongs to checkpoint `id`, everything after to later.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Barrier {
    pub id: u64,
    /// When the coordinator triggered it (ms since the Unix epoch).
    pub timestamp: i64,
    /// For a savepoint: its directory (a URL), where every subtask writes its state.
    pub savepoint: Option<Arc<str>>,
}

/// What one operator instance snapshotted at a barrier.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct OperatorSnapshot {
    /// The operator's uid: state is matched to operators by it on restore.
    pub uid: Arc<str>,
    pub subtask: usize,
    pub parallelism: usize,
    /// The key groups of a keyed operator's subtask.
    pub key_groups: Option<KeyGroupRange>,
    /// Keyed state and timers, one entry per key group of the subtask.
    pub keyed: Vec<KeyGroupSnapshot>,
    /// A source's position (MessagePack), to resume from.
    pub source_position: Option<Vec<u8>>,
    /// Broadcast states, by name.
    pub broadcast: Vec<(String, RawMap)>,
    /// Operator state lists (also a sink's transactions), by name.
    pub lists: Vec<ListSnapshot>,
    /// Keyed state still in a RocksDB checkpoint, to be read out by the uploader (the
    /// timers are in `keyed`).
    pub rocks: Option<Arc<RocksCheckpoint>>,
}

/// The snapshot of a keyed operator's state and timers for checkpoint `checkpoint`.
pub(crate) fn snapshot_keyed<K: Key, N: Data + Hash + Eq>(
    info: &OperatorInfo,
    checkpoint: u64,
    backend: &KeyedBackend<K>,
    timers: Option<&Timers<K, N>>,
) -> Result<OperatorSnapshot, String> {
    let (mut keyed, rocks) = backend.checkpoint(checkpoint)?;
    if let Some(timers) = timers {
        let range = backend.key.range();
        timers.snapshot_into(backend.key.max_parallelism(), range, &mut keyed)?;
    }
    Ok(OperatorSnapshot {
        uid: info.uid.clone(),
        subtask: info.subtask,
        parallelism: info.parallelism,
        key_groups: Some(backend.key.range()),
        keyed,
        source_position: None,
        broadcast: Vec::new(),
        lists: Vec::new(),
        rocks: rocks.map(Arc::new),
    })
}

/// Adds an operator's list state to its snapshot (making one if it has no other state),
/// if it has any.
pub(crate) fn push_operator_state(
    info: &OperatorInfo,
    snapshot: Option<OperatorSnapshot>,
    store: &OperatorStateStore,
    snapshots: &mut Vec<OperatorSnapshot>,
) -> Result<(), String> {
    let lists = store.snapshot()?;
    match snapshot {
        Some(mut s) => {
            s.lists = lists;
            snapshots.push(s);
        }
        None if !lists.is_empty() => snapshots.push(OperatorSnapshot {
            uid: info.uid.clone(),
            subtask: info.subtask,
            parallelism: info.parallelism,
            lists,
            ..OperatorSnapshot::default()
        }),
        None => {}
    }
    Ok(())
}

/// The snapshot of an operator's broadcast states (and its keyed state, if it has any).
pub(crate) fn with_broadcast(
    info: &OperatorInfo,
    keyed: Option<OperatorSnapshot>,
    states: &BroadcastStates,
) -> Result<OperatorSnapshot, String> {
    let mut snapshot = keyed.unwrap_or_else(|| OperatorSnapshot {
        uid: info.uid.clone(),
        subtask: info.subtask,
        parallelism: info.parallelism,
        ..OperatorSnapshot::default()
    });
    snapshot.broadcast = states.snapshot()?;
    Ok(snapshot)
}

/// What a subtask hands the coordinator once it has passed a barrier on, or, with
/// `finished`, its final state once it has ended (a source's position at its end), which
/// stands for it in every later checkpoint.
#[derive(Debug)]
pub(crate) struct SubtaskAck {
    /// The checkpoint; 0 with `finished`.
    pub checkpoint: u64,
    pub vertex: usize,
    pub subtask: usize,
    pub operators: Vec<OperatorSnapshot>,
    pub finished: bool,
    /// The savepoint directory, when the barrier was a savepoint's.
    pub savepoint: Option<Arc<str>>,
}

/// A subtask's link to the checkpoint coordinator, when the job checkpoints.
#[derive(Clone)]
pub(crate) struct TaskCheckpointing {
    pub vertex: usize,
    pub subtask: usize,
    /// Barriers to inject: for source subtasks only.
    pub triggers: Option<Receiver<Barrier>>,
    pub acks: Sender<SubtaskAck>,
    /// The newest checkpoint of the job known to have completed (0: none), shared by
    /// the job's subtasks in this process and raised by the coordinator (or by the
    /// master's word).
    pub completed: Arc<AtomicU64>,
}

impl TaskCheckpointing {
    /// A checkpoint that completed since `notified`, which it then becomes.
    pub(crate) fn newly_completed(&self, notified: &mut u64) -> Option<u64> {
        let completed = self.completed.load(Ordering::Acquire);
        (completed > *notified).then(|| {
            *notified = completed;
            completed
        })
    }

    /// Sends the snapshot of checkpoint `id` to the coordinator. A coordinator that is
    /// gone (the job is ending) is not an error of the task.
    pub(crate) fn ack(&self, barrier: &Barrier, operators: Vec<OperatorSnapshot>) {
        let _ = self.acks.send(SubtaskAck {
            checkpoint: barrier.id,
            vertex: self.vertex,
            subtask: self.subtask,
            operators,
            finished: false,
            savepoint: barrier.savepoint.clone(),
        });
    }

    /// The subtask has ended with this state: later checkpoints take it as it is.
    pub(crate) fn finished(&self, operators: Vec<OperatorSnapshot>) {
        let _ = self.acks.send(SubtaskAck {
            checkpoint: 0,
            vertex: self.vertex,
            subtask: self.subtask,
            operators,
            finished: true,
            savepoint: None,
        });
    }
}

//! Which checkpoints a task with several input channels can snapshot, and when (Flink's
//! `CheckpointBarrierHandler`). A checkpoint is ready once every channel has delivered
//! its barrier or ended.
//!
//! Exactly-once (aligned): a channel that delivered the barrier is held back until the
//! others have, so the snapshot holds exactly the records before the barrier. Channels
//! are FIFO, so with holding only one checkpoint aligns at a time; a newer barrier on a
//! channel that is not held means the older checkpoint was given up upstream, and
//! alignment starts over with the newer one.
//!
//! At-least-once: no channel is held, so with several checkpoints in flight a fast
//! channel may deliver the barriers of checkpoints `n` and `n + 1` before a slow one
//! delivered `n`'s: each checkpoint counts its own channels, and they become ready in
//! order.

use crate::runtime::barrier::Barrier;
use crate::runtime::input::InputGate;
use std::collections::BTreeMap;

pub(crate) struct Alignment {
    /// Checkpoints whose barriers have come on some channels: which ones, by id.
    pending: BTreeMap<u64, (Barrier, Vec<bool>)>,
    /// Everything up to this id was snapshotted or given up: its barriers are late.
    done: u64,
    /// Exactly-once: hold back channels that delivered the barrier.
    hold: bool,
}

impl Alignment {
    pub(crate) fn new(hold: bool) -> Self {
        Alignment {
            pending: BTreeMap::new(),
            done: 0,
            hold,
        }
    }

    /// Channel `channel` delivered `barrier`: the checkpoints ready to snapshot now,
    /// oldest first.
    pub(crate) fn on_barrier(
        &mut self,
        gate: &mut InputGate,
        channel: usize,
        barrier: Barrier,
    ) -> Vec<Barrier> {
        if barrier.id <= self.done {
            return Vec::new();
        }
        if self.hold
            && let Some(&older) = self.pending.keys().next()
            && older < barrier.id
        {
            tracing::debug!(
                checkpoint = older,
                newer = barrier.id,
                "a newer barrier came before this checkpoint aligned; it is given up here"
            );
            self.pending.clear();
            self.done = older;
            gate.release_all();
        }
        let channels = gate.len();
        let (_, arrived) = self
            .pending
            .entry(barrier.id)
            .or_insert_with(|| (barrier, vec![false; channels]));
        arrived[channel] = true;
        if self.hold {
            gate.hold_back(channel);
        }
        self.take_ready(gate)
    }

    /// A channel ended: it has nothing more before any barrier, so checkpoints waiting
    /// for it may be ready.
    pub(crate) fn on_channel_ended(&mut self, gate: &mut InputGate) -> Vec<Barrier> {
        self.take_ready(gate)
    }

    /// The checkpoints every channel has delivered (or ended before), oldest first;
    /// older ones still waiting cannot complete in order and are given up.
    fn take_ready(&mut self, gate: &mut InputGate) -> Vec<Barrier> {
        let newest_ready = self
            .pending
            .iter()
            .rev()
            .find(|(_, (_, arrived))| all_delivered(gate, arrived))
            .map(|(&id, _)| id);
        let Some(newest_ready) = newest_ready else {
            return Vec::new();
        };
        let later = self.pending.split_off(&(newest_ready + 1));
        let ready = std::mem::replace(&mut self.pending, later);
        self.done = newest_ready;
        if self.hold {
            gate.release_all();
        }
        ready
            .into_values()
            .filter(|(_, arrived)| all_delivered(gate, arrived))
            .map(|(barrier, _)| barrier)
            .collect()
    }
}

/// Whether every channel of `gate` delivered the barrier (`arrived`) or has ended.
fn all_delivered(gate: &InputGate, arrived: &[bool]) -> bool {
    gate.channels
        .iter()
        .zip(arrived)
        .all(|(c, &a)| a || c.finished)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::input::InputChannel;

    fn gate(
        channels: usize,
    ) -> (
        InputGate,
        Vec<crossbeam_channel::Sender<crate::runtime::envelope::Envelope>>,
    ) {
        let (senders, channels): (Vec<_>, Vec<_>) = (0..channels)
            .map(|_| {
                let (tx, rx) = crossbeam_channel::unbounded();
                (
                    tx,
                    InputChannel {
                        rx,
                        input: 0,
                        finished: false,
                        credit: None,
                    },
                )
            })
            .unzip();
        (InputGate::new(channels), senders)
    }

    fn barrier(id: u64) -> Barrier {
        Barrier {
            id,
            timestamp: 0,
            savepoint: None,
        }
    }

    fn ids(ready: Vec<Barrier>) -> Vec<u64> {
        ready.into_iter().map(|b| b.id).collect()
    }

    #[test]
    fn at_least_once_counts_each_checkpoint_in_flight_on_its_own() {
        let (mut gate, _senders) = gate(2);
        let mut alignment = Alignment::new(false);
        // The fast channel 0 delivers 1 and 2 before the slow channel 1 delivers 1.
        assert!(ids(alignment.on_barrier(&mut gate, 0, barrier(1))).is_empty());
        assert!(ids(alignment.on_barrier(&mut gate, 0, barrier(2))).is_empty());
        assert_eq!(ids(alignment.on_barrier(&mut gate, 1, barrier(1))), [1]);
        assert_eq!(ids(alignment.on_barrier(&mut gate, 1, barrier(2))), [2]);
        // A late barrier of a checkpoint already snapshotted is not taken again.
        assert!(ids(alignment.on_barrier(&mut gate, 0, barrier(2))).is_empty());
    }

    #[test]
    fn exactly_once_holds_channels_and_starts_over_on_a_newer_barrier() {
        let (mut gate, senders) = gate(2);
        let mut alignment = Alignment::new(true);
        assert!(ids(alignment.on_barrier(&mut gate, 0, barrier(1))).is_empty());
        // Channel 0 is held back: what it has after the barrier is not read.
        senders[0]
            .send(crate::runtime::envelope::Envelope::EndOfInput)
            .unwrap();
        assert!(matches!(gate.poll(), crate::runtime::input::Polled::Empty));
        // Checkpoint 1 was given up upstream: channel 1 brings 2's barrier.
        assert!(ids(alignment.on_barrier(&mut gate, 1, barrier(2))).is_empty());
        assert!(matches!(
            gate.poll(),
            crate::runtime::input::Polled::Element(0, _)
        ));
        gate.finish(0);
        // Channel 0 ended: checkpoint 2 needs only channel 1, which delivered it.
        assert_eq!(ids(alignment.on_channel_ended(&mut gate)), [2]);
        assert!(ids(alignment.on_barrier(&mut gate, 1, barrier(1))).is_empty());
    }
}

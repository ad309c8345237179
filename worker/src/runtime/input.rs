//! The input channels of one subtask, read round-robin.
//!
//! Each channel is its own bounded queue from one upstream subtask, so a reader can stop
//! reading one channel while it reads others (needed for aligned checkpoint barriers), and
//! a full queue blocks exactly the producer that filled it.

use crate::net::exchange::CreditReturn;
use crate::runtime::envelope::Envelope;
use crossbeam_channel::{Receiver, Select, TryRecvError};
use std::sync::Arc;
use std::time::Duration;

pub(crate) struct InputChannel {
    pub rx: Receiver<Envelope>,
    /// 0 for a one-input task; 0 or 1 for the two inputs of a two-input task.
    pub input: u8,
    pub finished: bool,
    /// For a channel from another process: told of every element taken, so the producer
    /// may send another (credit-based flow control, `net::exchange`).
    pub credit: Option<Arc<CreditReturn>>,
}

/// What reading the gate gave.
pub(crate) enum Polled {
    Element(usize, Envelope),
    /// Nothing available right now.
    Empty,
    /// Every channel has ended.
    Finished,
    /// A producer vanished without ending its channel: it failed, or (with a reason) the
    /// channel from another process failed on this side.
    Disconnected(Option<String>),
}

pub(crate) struct InputGate {
    pub channels: Vec<InputChannel>,
    next: usize,
    open: usize,
    /// Channels held back until a checkpoint's barriers are aligned: what follows their
    /// barrier belongs to the next checkpoint (`runtime::alignment`).
    blocked: Vec<bool>,
}

impl InputGate {
    pub(crate) fn new(channels: Vec<InputChannel>) -> Self {
        let open = channels.len();
        InputGate {
            blocked: vec![false; channels.len()],
            channels,
            next: 0,
            open,
        }
    }

    /// Holds channel `channel` back: `poll` and `wait` skip it until `release_all`.
    pub(crate) fn hold_back(&mut self, channel: usize) {
        self.blocked[channel] = true;
    }

    /// Every channel is read again.
    pub(crate) fn release_all(&mut self) {
        self.blocked.fill(false);
    }

    pub(crate) fn len(&self) -> usize {
        self.channels.len()
    }

    pub(crate) fn input_of(&self, channel: usize) -> u8 {
        self.channels[channel].input
    }

    /// Marks a channel ended; returns whether every channel of its input has ended.
    pub(crate) fn finish(&mut self, channel: usize) -> bool {
        if !self.channels[channel].finished {
            self.channels[channel].finished = true;
            self.open -= 1;
        }
        let input = self.channels[channel].input;
        self.channels
            .iter()
            .filter(|c| c.input == input)
            .all(|c| c.finished)
    }

    /// The next available element, round-robin over channels, without blocking.
    pub(crate) fn poll(&mut self) -> Polled {
        if self.open == 0 {
            return Polled::Finished;
        }
        let n = self.channels.len();
        for step in 0..n {
            let i = (self.next + step) % n;
            let ch = &self.channels[i];
            if ch.finished || self.blocked[i] {
                continue;
            }
            match ch.rx.try_recv() {
                Ok(env) => {
                    if let Some(credit) = &ch.credit {
                        credit.returned();
                    }
                    self.next = i + 1;
                    return Polled::Element(i, env);
                }
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Disconnected) => {
                    return Polled::Disconnected(
                        ch.credit.as_ref().and_then(|c| c.closed_because()),
                    );
                }
            }
        }
        Polled::Empty
    }

    /// Blocks until some open channel has an element (or was disconnected), or `timeout`.
    /// Nothing is consumed: the next `poll` reads what became ready.
    pub(crate) fn wait(&self, timeout: Duration) {
        let mut sel = Select::new();
        let mut any = false;
        for (ch, _) in self
            .channels
            .iter()
            .zip(&self.blocked)
            .filter(|(c, b)| !c.finished && !**b)
        {
            sel.recv(&ch.rx);
            any = true;
        }
        if any {
            let _ = sel.ready_timeout(timeout);
        }
    }
}

//! Exactly-once sinks by two-phase commit (Flink's `TwoPhaseCommitSinkFunction`).
//!
//! A writer writes into a transaction. At a checkpoint barrier it *pre-commits* it (makes
//! it durable but not yet visible), remembers it as pending for that checkpoint, and
//! begins the next one; the pending transactions and the open one go into the checkpoint.
//! When the checkpoint completes, the writer *commits* every transaction pending for it
//! or an earlier one. After a failure the job restarts from the latest completed
//! checkpoint: the transactions pending in it are committed (`recover_and_commit`; they
//! may have been committed already, so commits must be idempotent) and the one that was
//! open is aborted (`recover_and_abort`) with everything the failed run wrote after it,
//! which the restored sources will produce again.
//!
//! At the end of a bounded input the writer commits what it has: the job is done.

use crate::record::Data;
use crate::sink::{Sink, SinkContext, SinkWriter};
use crate::source::BoxError;
use crate::state::snapshot::{decode, encode};
use serde::{Deserialize, Serialize};
use std::fmt::Debug;

/// Describes a transactional sink; opens one [`TransactionalWriter`] per parallel
/// instance. Wrap it in [`TwoPhaseCommit`] to use it as a [`Sink`].
pub trait TwoPhaseCommitSink<T: Data>: Send + Sync + 'static {
    /// A transaction as it is kept in checkpoints: enough to commit or abort it from
    /// another process after a failure.
    type Txn: Data + Debug;
    type Writer: TransactionalWriter<T, Txn = Self::Txn> + 'static;
    /// `Some(n)` when the sink supports exactly `n` writers.
    fn fixed_parallelism(&self) -> Option<usize> {
        None
    }
    /// Opens the writer of one parallel instance (`ctx` says which, and from which
    /// checkpoint the job starts).
    fn open(&self, ctx: &SinkContext) -> Result<Self::Writer, BoxError>;
}

/// Writes one parallel instance's records in transactions.
pub trait TransactionalWriter<T> {
    type Txn;
    /// Starts the transaction that takes the records until the next barrier.
    fn begin(&mut self) -> Result<Self::Txn, BoxError>;
    fn write(
        &mut self,
        txn: &mut Self::Txn,
        value: T,
        timestamp: Option<i64>,
    ) -> Result<(), BoxError>;
    /// The input ran dry: push buffered output on (it stays invisible until committed).
    fn flush(&mut self, txn: &mut Self::Txn) -> Result<(), BoxError> {
        let _ = txn;
        Ok(())
    }
    /// At the barrier: make everything in `txn` durable, so that its commit cannot fail
    /// for want of it.
    fn pre_commit(&mut self, txn: &mut Self::Txn) -> Result<(), BoxError>;
    /// Makes `txn` visible. Called again for a transaction already committed when a job
    /// restores from the checkpoint that held it: must then do nothing.
    fn commit(&mut self, txn: Self::Txn) -> Result<(), BoxError>;
    /// Drops what `txn` wrote.
    fn abort(&mut self, txn: Self::Txn) -> Result<(), BoxError>;
    /// After a restore: a transaction the checkpoint holds as pre-committed.
    fn recover_and_commit(&mut self, txn: Self::Txn) -> Result<(), BoxError> {
        self.commit(txn)
    }
    /// After a restore: the transaction that was open at the checkpoint. The failed run
    /// may have gone on to later ones; a writer that can find them drops them too.
    fn recover_and_abort(&mut self, txn: Self::Txn) -> Result<(), BoxError> {
        self.abort(txn)
    }
}

/// A [`TwoPhaseCommitSink`] as a [`Sink`]: `stream.sink_to(TwoPhaseCommit(sink))`.
pub struct TwoPhaseCommit<S>(pub S);

/// What a writer keeps in a checkpoint.
#[derive(Serialize, Deserialize)]
#[serde(bound(
    serialize = "X: Serialize",
    deserialize = "X: serde::de::DeserializeOwned"
))]
struct TxnState<X> {
    /// Pre-committed transactions, with the checkpoint each was pre-committed for.
    pending: Vec<(u64, X)>,
    /// The transaction begun at the barrier.
    open: Option<X>,
}

impl<T: Data, S: TwoPhaseCommitSink<T>> Sink<T> for TwoPhaseCommit<S> {
    fn fixed_parallelism(&self) -> Option<usize> {
        self.0.fixed_parallelism()
    }

    fn create_writer(&self, ctx: &SinkContext) -> Result<Box<dyn SinkWriter<T>>, BoxError> {
        let mut writer = self.0.open(ctx)?;
        for bytes in &ctx.restored_states {
            let state: TxnState<S::Txn> = decode(bytes)?;
            for (checkpoint, txn) in state.pending {
                writer.recover_and_commit(txn).map_err(|e| {
                    format!("could not commit the output of checkpoint {checkpoint}: {e}")
                })?;
            }
            if let Some(txn) = state.open {
                writer
                    .recover_and_abort(txn)
                    .map_err(|e| format!("could not drop the output of a failed run: {e}"))?;
            }
        }
        let open = writer.begin()?;
        Ok(Box::new(TwoPhaseWriter {
            writer,
            open: Some(open),
            pending: Vec::new(),
        }))
    }
}

struct TwoPhaseWriter<W, X> {
    writer: W,
    /// `None` only once the input has ended (or the writer was closed).
    open: Option<X>,
    pending: Vec<(u64, X)>,
}

impl<W, X> TwoPhaseWriter<W, X> {
    /// Commits the transactions pending for checkpoint `checkpoint` and earlier ones.
    fn commit_up_to<T>(&mut self, checkpoint: u64) -> Result<(), BoxError>
    where
        W: TransactionalWriter<T, Txn = X>,
    {
        let first_later = self
            .pending
            .iter()
            .position(|(c, _)| *c > checkpoint)
            .unwrap_or(self.pending.len());
        let later = self.pending.split_off(first_later);
        for (_, txn) in std::mem::replace(&mut self.pending, later) {
            self.writer.commit(txn)?;
        }
        Ok(())
    }
}

impl<T, W, X> SinkWriter<T> for TwoPhaseWriter<W, X>
where
    W: TransactionalWriter<T, Txn = X>,
    X: Data,
{
    fn write(&mut self, value: T, timestamp: Option<i64>) -> Result<(), BoxError> {
        let mut txn = self.open.take().ok_or("the sink's input has ended")?;
        let result = self.writer.write(&mut txn, value, timestamp);
        self.open = Some(txn);
        result
    }

    fn flush(&mut self) -> Result<(), BoxError> {
        let mut txn = self.open.take();
        let result = match &mut txn {
            Some(t) => self.writer.flush(t),
            None => Ok(()),
        };
        self.open = txn;
        result
    }

    fn snapshot_state(&mut self, checkpoint: u64) -> Result<Option<Vec<u8>>, BoxError> {
        let mut txn = self.open.take().ok_or("the sink's input has ended")?;
        self.writer.pre_commit(&mut txn)?;
        self.pending.push((checkpoint, txn));
        let next = self.writer.begin()?;
        let state = TxnState {
            pending: self.pending.clone(),
            open: Some(next),
        };
        let bytes = encode(&state)?;
        self.open = state.open;
        Ok(Some(bytes))
    }

    fn notify_checkpoint_complete(&mut self, checkpoint: u64) -> Result<(), BoxError> {
        self.commit_up_to::<T>(checkpoint)
    }

    /// The job is done with this writer's input: what it wrote is final.
    fn finish(&mut self) -> Result<(), BoxError> {
        let mut txn = self.open.take().ok_or("the sink's input ended twice")?;
        self.writer.pre_commit(&mut txn)?;
        self.pending.push((u64::MAX, txn));
        self.commit_up_to::<T>(u64::MAX)
    }

    /// On failure or cancellation the open transaction is dropped (a restore replays its
    /// records); pre-committed ones stay for the checkpoint that holds them.
    fn close(&mut self) {
        if let Some(txn) = self.open.take()
            && let Err(e) = self.writer.abort(txn)
        {
            tracing::warn!(error = %e, "could not drop the sink's open transaction");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A sink that logs what happens to its transactions, and whose committed output is a
    /// shared list (committing a transaction twice would repeat its records).
    #[derive(Clone, Default)]
    struct Ledger {
        committed: Arc<Mutex<Vec<u32>>>,
        log: Arc<Mutex<Vec<String>>>,
    }

    #[derive(Clone, Debug, Serialize, Deserialize)]
    struct Txn {
        id: u32,
        records: Vec<u32>,
    }

    struct LedgerWriter {
        ledger: Ledger,
        next: u32,
    }

    impl TwoPhaseCommitSink<u32> for Ledger {
        type Txn = Txn;
        type Writer = LedgerWriter;
        fn open(&self, ctx: &SinkContext) -> Result<LedgerWriter, BoxError> {
            Ok(LedgerWriter {
                ledger: self.clone(),
                next: 100 * ctx.restored_checkpoint.unwrap_or(0) as u32,
            })
        }
    }

    impl LedgerWriter {
        fn log(&self, line: String) {
            self.ledger.log.lock().expect("not poisoned").push(line);
        }
    }

    impl TransactionalWriter<u32> for LedgerWriter {
        type Txn = Txn;
        fn begin(&mut self) -> Result<Txn, BoxError> {
            self.next += 1;
            Ok(Txn {
                id: self.next,
                records: Vec::new(),
            })
        }
        fn write(&mut self, txn: &mut Txn, value: u32, _: Option<i64>) -> Result<(), BoxError> {
            txn.records.push(value);
            Ok(())
        }
        fn pre_commit(&mut self, txn: &mut Txn) -> Result<(), BoxError> {
            self.log(format!("pre-commit {}", txn.id));
            Ok(())
        }
        fn commit(&mut self, txn: Txn) -> Result<(), BoxError> {
            self.log(format!("commit {}", txn.id));
            let mut committed = self.ledger.committed.lock().expect("not poisoned");
            committed.extend(txn.records);
            Ok(())
        }
        fn abort(&mut self, txn: Txn) -> Result<(), BoxError> {
            self.log(format!("abort {}", txn.id));
            Ok(())
        }
        fn recover_and_commit(&mut self, txn: Txn) -> Result<(), BoxError> {
            self.log(format!("recover-commit {}", txn.id));
            Ok(())
        }
    }

    fn write_all(w: &mut dyn SinkWriter<u32>, values: &[u32]) {
        for v in values {
            w.write(*v, None).expect("writes");
        }
    }

    #[test]
    fn output_becomes_visible_when_its_checkpoint_completes() {
        let ledger = Ledger::default();
        let sink = TwoPhaseCommit(ledger.clone());
        let mut w = sink.create_writer(&SinkContext::default()).expect("opens");
        write_all(w.as_mut(), &[1, 2]);
        w.snapshot_state(1).expect("pre-commits");
        write_all(w.as_mut(), &[3]);
        w.snapshot_state(2).expect("pre-commits");
        write_all(w.as_mut(), &[4]);
        assert!(ledger.committed.lock().expect("ok").is_empty());
        // Checkpoint 1's completion was not heard of; 2's covers it.
        w.notify_checkpoint_complete(2).expect("commits");
        assert_eq!(*ledger.committed.lock().expect("ok"), vec![1, 2, 3]);
        w.finish().expect("finishes");
        w.close();
        assert_eq!(*ledger.committed.lock().expect("ok"), vec![1, 2, 3, 4]);
        assert_eq!(
            *ledger.log.lock().expect("ok"),
            [
                "pre-commit 1",
                "pre-commit 2",
                "commit 1",
                "commit 2",
                "pre-commit 3",
                "commit 3"
            ]
        );
    }

    #[test]
    fn a_restore_commits_the_checkpoints_transactions_and_aborts_the_open_one() {
        let ledger = Ledger::default();
        let sink = TwoPhaseCommit(ledger.clone());
        let mut w = sink.create_writer(&SinkContext::default()).expect("opens");
        write_all(w.as_mut(), &[1]);
        w.snapshot_state(1).expect("pre-commits");
        write_all(w.as_mut(), &[2]);
        let state = w.snapshot_state(2).expect("pre-commits").expect("a state");
        write_all(w.as_mut(), &[3]);
        // The process dies here: nothing was committed, nothing closed.
        std::mem::forget(w);

        let restored = SinkContext {
            restored_checkpoint: Some(2),
            restored_states: vec![state],
            ..SinkContext::default()
        };
        let mut w = sink.create_writer(&restored).expect("recovers");
        w.close();
        assert_eq!(
            *ledger.log.lock().expect("ok"),
            [
                "pre-commit 1",
                "pre-commit 2",
                "recover-commit 1",
                "recover-commit 2",
                "abort 3",
                "abort 201"
            ]
        );
    }
}

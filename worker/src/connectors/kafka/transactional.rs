//! Exactly-once Kafka output: the [`TwoPhaseCommitSink`] behind
//! [`super::KafkaSink::exactly_once`].
//!
//! Each writer has a transactional id `<prefix>-<subtask>`. The records of one checkpoint
//! interval are one transaction of the sink, numbered by a sequence per id:
//! - **write**: records are serialized and kept with the open transaction;
//! - **pre-commit** (the barrier): they are sent in a Kafka transaction, together with a
//!   *marker* — an offset commit of the sequence number for the consumer group named
//!   after the transactional id — and flushed, so the brokers hold them (invisible to
//!   `read_committed` readers); the records also stay in the checkpoint;
//! - **commit** (the checkpoint completed): the Kafka transaction commits, making records
//!   and marker visible at once.
//!
//! Why the records stay in the checkpoint and the marker: librdkafka cannot commit a
//! transaction begun by another process (Flink's Java client does it by reflection on the
//! producer's id and epoch), and a new producer with the same transactional id *aborts*
//! whatever the failed one left open. So after a crash between a checkpoint completing
//! and its commit, the restored writer first opens its producer (fencing the failed run's
//! and aborting its open transaction), reads the marker, and for each transaction the
//! checkpoint holds as pre-committed: if the marker has reached its number, it was
//! committed before the crash and is skipped; otherwise its records are sent again with
//! the marker in a new transaction and committed. Either way every record of a completed
//! checkpoint becomes visible exactly once.
//!
//! A writer's producer holds one Kafka transaction at a time: when a barrier comes while
//! the previous checkpoint has not completed yet, its transaction waits (in memory and in
//! the checkpoint) and is sent when it commits. After a rescale, transactions of writers
//! that no longer exist are recovered with their own transactional ids, which also fences
//! those writers.
//!
//! Costs: a checkpoint interval's output is kept in memory and written into the
//! checkpoint; `read_committed` readers of the output topic wait at an open transaction,
//! from the barrier until the checkpoint completes (at most `transaction.timeout.ms`,
//! librdkafka's default 60 s, after which the broker aborts it and the job restarts from
//! its checkpoint); and each writer's marker appears as a consumer group
//! `<prefix>-<subtask>` with an offset on partition 0 of the output topic.

use super::config::KafkaConfig;
use super::format::KafkaSerializer;
use super::produce::{self, Deliveries, OutgoingRecord};
use crate::record::Data;
use crate::sink::{SinkContext, TransactionalWriter, TwoPhaseCommitSink};
use crate::source::BoxError;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// How long transaction calls (init, offsets, commit, abort) wait for the brokers.
const TXN_TIMEOUT: Duration = Duration::from_secs(60);

/// The exactly-once Kafka sink's transactions, one writer per subtask.
pub(crate) struct KafkaTransactions<T> {
    pub config: KafkaConfig,
    pub topic: String,
    pub serializer: Arc<dyn KafkaSerializer<T>>,
    pub prefix: String,
}

/// One checkpoint interval's output, as kept in checkpoints until it is committed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct KafkaTxn {
    /// The writer that began it: its transactional id, also its marker's group.
    transactional_id: String,
    /// Its number among that writer's transactions: the marker committed with it.
    seq: u64,
    records: Vec<OutgoingRecord>,
}

impl<T: Data> TwoPhaseCommitSink<T> for KafkaTransactions<T> {
    type Txn = KafkaTxn;
    type Writer = KafkaTxnWriter<T>;

    fn open(&self, ctx: &SinkContext) -> Result<Self::Writer, BoxError> {
        let transactional_id = format!("{}-{}", self.prefix, ctx.subtask_index);
        let producer = TxnProducer::open(&self.config, &transactional_id, &self.topic)?;
        let next_seq = producer.committed_seq()? + 1;
        Ok(KafkaTxnWriter {
            config: self.config.clone(),
            topic: self.topic.clone(),
            serializer: self.serializer.clone(),
            producer,
            in_kafka: None,
            next_seq,
            recovering: None,
        })
    }
}

pub(crate) struct KafkaTxnWriter<T> {
    config: KafkaConfig,
    topic: String,
    serializer: Arc<dyn KafkaSerializer<T>>,
    producer: TxnProducer,
    /// The transaction whose records are in the producer's open Kafka transaction.
    in_kafka: Option<u64>,
    next_seq: u64,
    /// While restoring: the producer of a writer that is gone after a rescale.
    recovering: Option<TxnProducer>,
}

impl<T> KafkaTxnWriter<T> {
    fn own(&self, txn: &KafkaTxn) -> bool {
        txn.transactional_id == self.producer.transactional_id
    }

    /// The producer of `txn`'s writer: this one, or the failed run's other writer (opened
    /// once, which fences it and aborts what it left open).
    fn producer_of(&mut self, txn: &KafkaTxn) -> Result<&TxnProducer, BoxError> {
        if self.own(txn) {
            self.next_seq = self.next_seq.max(txn.seq + 1);
            return Ok(&self.producer);
        }
        let reuse = self
            .recovering
            .as_ref()
            .is_some_and(|p| p.transactional_id == txn.transactional_id);
        if !reuse {
            self.recovering = Some(TxnProducer::open(
                &self.config,
                &txn.transactional_id,
                &self.topic,
            )?);
        }
        Ok(self.recovering.as_ref().expect("opened above"))
    }
}

impl<T: Data> TransactionalWriter<T> for KafkaTxnWriter<T> {
    type Txn = KafkaTxn;

    fn begin(&mut self) -> Result<KafkaTxn, BoxError> {
        // Restoring is over once a transaction begins.
        self.recovering = None;
        let seq = self.next_seq;
        self.next_seq += 1;
        Ok(KafkaTxn {
            transactional_id: self.producer.transactional_id.clone(),
            seq,
            records: Vec::new(),
        })
    }

    fn write(
        &mut self,
        txn: &mut KafkaTxn,
        value: T,
        timestamp: Option<i64>,
    ) -> Result<(), BoxError> {
        txn.records.push(OutgoingRecord::of(
            self.serializer.as_ref(),
            &value,
            timestamp,
        ));
        Ok(())
    }

    fn pre_commit(&mut self, txn: &mut KafkaTxn) -> Result<(), BoxError> {
        if txn.records.is_empty() || self.in_kafka.is_some() {
            // Nothing to send, or the producer's transaction is taken: it goes at commit.
            return Ok(());
        }
        self.producer.send_with_marker(txn)?;
        self.in_kafka = Some(txn.seq);
        Ok(())
    }

    fn commit(&mut self, txn: KafkaTxn) -> Result<(), BoxError> {
        if txn.records.is_empty() {
            return Ok(());
        }
        match self.in_kafka {
            Some(seq) if seq == txn.seq => {}
            Some(seq) => {
                return Err(format!(
                    "Kafka sink {}: transaction {} commits before {seq}, which was sent first",
                    self.producer.transactional_id, txn.seq
                )
                .into());
            }
            None => self.producer.send_with_marker(&txn)?,
        }
        self.in_kafka = None;
        tracing::debug!(transactional_id = %self.producer.transactional_id, transaction = txn.seq, records = txn.records.len(), "Kafka sink: commit");
        self.producer.commit()
    }

    fn abort(&mut self, txn: KafkaTxn) -> Result<(), BoxError> {
        if self.in_kafka == Some(txn.seq) {
            self.in_kafka = None;
            self.producer.abort()?;
        }
        Ok(())
    }

    fn recover_and_commit(&mut self, txn: KafkaTxn) -> Result<(), BoxError> {
        let producer = self.producer_of(&txn)?;
        if txn.records.is_empty() {
            return Ok(());
        }
        let committed = producer.committed_seq()?;
        if committed >= txn.seq {
            tracing::info!(
                transactional_id = %txn.transactional_id,
                transaction = txn.seq,
                committed,
                "Kafka sink: a restored transaction was committed before the failure"
            );
            return Ok(());
        }
        tracing::info!(
            transactional_id = %txn.transactional_id,
            transaction = txn.seq,
            committed,
            records = txn.records.len(),
            "Kafka sink: committing a restored transaction the failed run did not"
        );
        producer.send_with_marker(&txn)?;
        producer.commit()
    }

    fn recover_and_abort(&mut self, txn: KafkaTxn) -> Result<(), BoxError> {
        // Opening the producer of its writer aborted what was sent of it.
        self.producer_of(&txn).map(|_| ())
    }
}

/// A transactional producer and its marker's consumer group.
struct TxnProducer {
    transactional_id: String,
    topic: String,
    producer: BaseProducer<Deliveries>,
    deliveries: Deliveries,
    /// The group named after the transactional id; its committed offset on partition 0
    /// of the topic is the number of the writer's last committed transaction.
    marker_group: BaseConsumer,
}

impl TxnProducer {
    /// Creates the producer and initialises its transactions, which fences every earlier
    /// producer with this id and aborts the transaction it left open.
    fn open(config: &KafkaConfig, transactional_id: &str, topic: &str) -> Result<Self, BoxError> {
        let failed = |e: &dyn std::fmt::Display| {
            format!(
                "Kafka sink (brokers {}, transactional id {transactional_id}): {e}",
                config.brokers
            )
        };
        let deliveries = Deliveries::default();
        let mut producer_config =
            config.client_config(&[("linger.ms", "5"), super::config::PRODUCER_BUFFER]);
        // Set over the user's properties: these make the protocol.
        producer_config.set("transactional.id", transactional_id);
        let producer: BaseProducer<Deliveries> = producer_config
            .create_with_context(deliveries.clone())
            .map_err(|e| failed(&e))?;
        producer
            .init_transactions(TXN_TIMEOUT)
            .map_err(|e| failed(&e))?;
        let mut group_config = config.client_config(&[("enable.auto.commit", "false")]);
        group_config
            .set("group.id", transactional_id)
            // Waits for offsets of transactions still being completed.
            .set("isolation.level", "read_committed");
        let marker_group = group_config.create().map_err(|e| failed(&e))?;
        Ok(TxnProducer {
            transactional_id: transactional_id.to_string(),
            topic: topic.to_string(),
            producer,
            deliveries,
            marker_group,
        })
    }

    fn error(&self, e: impl std::fmt::Display) -> BoxError {
        format!(
            "Kafka sink: topic {}, transactional id {}: {e}",
            self.topic, self.transactional_id
        )
        .into()
    }

    fn marker(&self, offset: Offset) -> Result<TopicPartitionList, BoxError> {
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(&self.topic, 0, offset)
            .map_err(|e| self.error(e))?;
        Ok(list)
    }

    /// The number of the last transaction committed with this id (0: none).
    fn committed_seq(&self) -> Result<u64, BoxError> {
        let committed = self
            .marker_group
            .committed_offsets(self.marker(Offset::Invalid)?, TXN_TIMEOUT)
            .map_err(|e| self.error(format!("reading the commit marker: {e}")))?;
        Ok(match committed.elements().first().map(|e| e.offset()) {
            Some(Offset::Offset(n)) if n > 0 => n as u64,
            _ => 0,
        })
    }

    /// Begins a Kafka transaction with `txn`'s records and marker, and waits until the
    /// brokers hold them all.
    fn send_with_marker(&self, txn: &KafkaTxn) -> Result<(), BoxError> {
        self.producer
            .begin_transaction()
            .map_err(|e| self.error(e))?;
        for record in &txn.records {
            produce::send(&self.producer, &self.topic, record)?;
            self.producer.poll(Duration::ZERO);
        }
        let seq = i64::try_from(txn.seq).map_err(|e| self.error(e))?;
        let group = self
            .marker_group
            .group_metadata()
            .ok_or_else(|| self.error("no metadata for the marker's group"))?;
        self.producer
            .send_offsets_to_transaction(&self.marker(Offset::Offset(seq))?, &group, TXN_TIMEOUT)
            .map_err(|e| self.error(format!("adding the commit marker: {e}")))?;
        produce::flush(&self.producer, &self.deliveries, &self.topic)
    }

    fn commit(&self) -> Result<(), BoxError> {
        self.producer
            .commit_transaction(TXN_TIMEOUT)
            .map_err(|e| self.error(format!("commit: {e}")))
    }

    fn abort(&self) -> Result<(), BoxError> {
        self.producer
            .abort_transaction(TXN_TIMEOUT)
            .map_err(|e| self.error(format!("abort: {e}")))
    }
}

//! The Kafka sink. At least once by default: records are sent as they come; at a
//! checkpoint barrier the writer waits until the brokers have acknowledged every one of
//! them, and a record the brokers refused fails the job (which restarts from the
//! checkpoint and writes it again) instead of vanishing. With
//! [`KafkaSink::exactly_once`] records are written in Kafka transactions that commit
//! with the checkpoints ([`super::transactional`]).

use super::config::KafkaConfig;
use super::format::KafkaSerializer;
use super::produce::{self, Deliveries, OutgoingRecord};
use super::transactional::KafkaTransactions;
use crate::record::Data;
use crate::sink::{Sink, SinkContext, SinkWriter, TwoPhaseCommit};
use crate::source::BoxError;
use rdkafka::producer::{BaseProducer, Producer};
use std::sync::Arc;
use std::time::Duration;

/// Writes records to a Kafka topic; see the module docs.
pub struct KafkaSink<T> {
    config: KafkaConfig,
    topic: String,
    serializer: Arc<dyn KafkaSerializer<T>>,
    /// `Some(prefix)`: exactly once, with transactional ids `<prefix>-<subtask>`.
    transactional_id_prefix: Option<String>,
}

impl<T: Data> KafkaSink<T> {
    pub fn new(
        config: KafkaConfig,
        topic: impl Into<String>,
        serializer: impl KafkaSerializer<T>,
    ) -> Self {
        KafkaSink {
            config,
            topic: topic.into(),
            serializer: Arc::new(serializer),
            transactional_id_prefix: None,
        }
    }

    /// Exactly once (Flink's `DeliveryGuarantee.EXACTLY_ONCE`): what the job wrote
    /// between two checkpoint barriers becomes visible to `read_committed` consumers, as
    /// one Kafka transaction per writer, when the second checkpoint completes — so the
    /// job needs checkpointing, and output shows up a checkpoint interval late.
    ///
    /// `prefix` names the writers' transactional ids (`<prefix>-<subtask>`) and must be
    /// the same across restarts of a job and different from every other job's on the
    /// same cluster: it is how a restarted job fences its failed writers and finds out
    /// which transactions they committed. See [`super::transactional`] for the protocol.
    pub fn exactly_once(mut self, transactional_id_prefix: impl Into<String>) -> Self {
        self.transactional_id_prefix = Some(transactional_id_prefix.into());
        self
    }
}

impl<T: Data> Sink<T> for KafkaSink<T> {
    fn create_writer(&self, ctx: &SinkContext) -> Result<Box<dyn SinkWriter<T>>, BoxError> {
        if let Some(prefix) = &self.transactional_id_prefix {
            return TwoPhaseCommit(KafkaTransactions {
                config: self.config.clone(),
                topic: self.topic.clone(),
                serializer: self.serializer.clone(),
                prefix: prefix.clone(),
            })
            .create_writer(ctx);
        }
        let deliveries = Deliveries::default();
        let producer: BaseProducer<Deliveries> = self
            .config
            // Idempotence: a retried send is written once per producer session.
            .client_config(&[
                ("enable.idempotence", "true"),
                ("linger.ms", "5"),
                super::config::PRODUCER_BUFFER,
            ])
            .create_with_context(deliveries.clone())
            .map_err(|e| format!("Kafka sink (brokers {}): {e}", self.config.brokers))?;
        Ok(Box::new(AtLeastOnceWriter {
            producer,
            topic: self.topic.clone(),
            serializer: self.serializer.clone(),
            deliveries,
        }))
    }
}

struct AtLeastOnceWriter<T> {
    producer: BaseProducer<Deliveries>,
    topic: String,
    serializer: Arc<dyn KafkaSerializer<T>>,
    deliveries: Deliveries,
}

impl<T: Data> AtLeastOnceWriter<T> {
    /// Waits for every record sent so far to be acknowledged.
    fn flush_all(&mut self) -> Result<(), BoxError> {
        produce::flush(&self.producer, &self.deliveries, &self.topic)
    }
}

impl<T: Data> SinkWriter<T> for AtLeastOnceWriter<T> {
    fn write(&mut self, value: T, timestamp: Option<i64>) -> Result<(), BoxError> {
        let record = OutgoingRecord::of(self.serializer.as_ref(), &value, timestamp);
        produce::send(&self.producer, &self.topic, &record)?;
        // Serves delivery callbacks without waiting.
        self.producer.poll(Duration::ZERO);
        self.deliveries.check(&self.topic)
    }

    fn flush(&mut self) -> Result<(), BoxError> {
        self.producer.poll(Duration::ZERO);
        self.deliveries.check(&self.topic)
    }

    fn finish(&mut self) -> Result<(), BoxError> {
        self.flush_all()
    }

    fn snapshot_state(&mut self, _checkpoint: u64) -> Result<Option<Vec<u8>>, BoxError> {
        self.flush_all()?;
        Ok(None)
    }

    fn close(&mut self) {
        let _ = self.producer.flush(Duration::from_secs(5));
    }
}

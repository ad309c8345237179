//! The Kafka sink, at least once: records are sent as they come; at a checkpoint barrier
//! the writer waits until the brokers have acknowledged every one of them, and a record
//! the brokers refused fails the job (which restarts from the checkpoint and writes it
//! again) instead of vanishing.

use super::config::KafkaConfig;
use super::format::KafkaSerializer;
use crate::record::Data;
use crate::sink::{Sink, SinkContext, SinkWriter};
use crate::source::BoxError;
use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a checkpoint or the end of input waits for the brokers' acknowledgements.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

/// Writes records to a Kafka topic; see the module docs.
pub struct KafkaSink<T> {
    config: KafkaConfig,
    topic: String,
    serializer: Arc<dyn KafkaSerializer<T>>,
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
        }
    }
}

impl<T: Data> Sink<T> for KafkaSink<T> {
    fn create_writer(&self, _ctx: &SinkContext) -> Result<Box<dyn SinkWriter<T>>, BoxError> {
        let failures = Deliveries::default();
        let producer: BaseProducer<Deliveries> = self
            .config
            // Idempotence: a retried send is written once per producer session.
            .client_config(&[("enable.idempotence", "true"), ("linger.ms", "5")])
            .create_with_context(failures.clone())
            .map_err(|e| format!("Kafka sink (brokers {}): {e}", self.config.brokers))?;
        Ok(Box::new(KafkaWriter {
            producer,
            topic: self.topic.clone(),
            serializer: self.serializer.clone(),
            failures,
        }))
    }
}

/// The first delivery failure the brokers reported, kept until a flush reports it.
#[derive(Clone, Default)]
struct Deliveries {
    first_failure: Arc<Mutex<Option<String>>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result
            && let Ok(mut first) = self.first_failure.lock()
            && first.is_none()
        {
            *first = Some(e.to_string());
        }
    }
}

struct KafkaWriter<T> {
    producer: BaseProducer<Deliveries>,
    topic: String,
    serializer: Arc<dyn KafkaSerializer<T>>,
    failures: Deliveries,
}

impl<T: Data> KafkaWriter<T> {
    fn check_deliveries(&self) -> Result<(), BoxError> {
        let failed = self
            .failures
            .first_failure
            .lock()
            .map_err(|_| "Kafka sink: delivery state poisoned")?
            .take();
        match failed {
            Some(e) => Err(format!(
                "Kafka sink: topic {}: a record was not delivered: {e}",
                self.topic
            )
            .into()),
            None => Ok(()),
        }
    }

    /// Waits for every record sent so far to be acknowledged.
    fn flush_all(&mut self) -> Result<(), BoxError> {
        self.producer
            .flush(FLUSH_TIMEOUT)
            .map_err(|e| format!("Kafka sink: topic {}: {e}", self.topic))?;
        self.check_deliveries()
    }
}

impl<T: Data> SinkWriter<T> for KafkaWriter<T> {
    fn write(&mut self, value: T, timestamp: Option<i64>) -> Result<(), BoxError> {
        let key = self.serializer.key(&value);
        let payload = self.serializer.value(&value);
        loop {
            let mut record: BaseRecord<'_, Vec<u8>, Vec<u8>> =
                BaseRecord::to(&self.topic).payload(&payload);
            if let Some(key) = &key {
                record = record.key(key);
            }
            if let Some(ts) = timestamp {
                record = record.timestamp(ts);
            }
            match self.producer.send(record) {
                Ok(()) => break,
                // The local queue is full: let deliveries drain it, then send again.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    self.producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => {
                    return Err(format!("Kafka sink: topic {}: {e}", self.topic).into());
                }
            }
        }
        // Serves delivery callbacks without waiting.
        self.producer.poll(Duration::ZERO);
        self.check_deliveries()
    }

    fn flush(&mut self) -> Result<(), BoxError> {
        self.producer.poll(Duration::ZERO);
        self.check_deliveries()
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

//! What both Kafka sink modes share: a value turned into a record ready to send, sending
//! it through a full local queue, and waiting for the brokers' acknowledgements with the
//! first delivery failure reported as an error.

use super::format::KafkaSerializer;
use crate::source::BoxError;
use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a flush (at a barrier, a commit, the end of input) waits for the brokers.
pub(crate) const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

/// A record as the serializer made it. The exactly-once sink keeps these in its
/// checkpoints until they are committed, so they serialize.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OutgoingRecord {
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    /// ms since the epoch; `None` lets the producer stamp it.
    pub timestamp: Option<i64>,
    /// `None`: the producer's partitioner picks (by key, see `partitioner`).
    pub partition: Option<i32>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl OutgoingRecord {
    pub fn of<T: 'static>(
        serializer: &dyn KafkaSerializer<T>,
        value: &T,
        timestamp: Option<i64>,
    ) -> Self {
        OutgoingRecord {
            key: serializer.key(value),
            value: serializer.value(value),
            timestamp,
            partition: serializer.partition(value),
            headers: serializer.headers(value),
        }
    }
}

/// The first delivery failure the brokers reported, kept until a flush reports it.
#[derive(Clone, Default)]
pub(crate) struct Deliveries {
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

impl Deliveries {
    /// An error if a record sent so far was refused (and forgets it).
    pub fn check(&self, topic: &str) -> Result<(), BoxError> {
        let failed = self
            .first_failure
            .lock()
            .map_err(|_| "Kafka sink: delivery state poisoned")?
            .take();
        match failed {
            Some(e) => {
                Err(format!("Kafka sink: topic {topic}: a record was not delivered: {e}").into())
            }
            None => Ok(()),
        }
    }
}

/// Hands `record` to the producer; while its local queue is full, serves deliveries to
/// make room.
pub(crate) fn send(
    producer: &BaseProducer<Deliveries>,
    topic: &str,
    record: &OutgoingRecord,
) -> Result<(), BoxError> {
    loop {
        let mut out: BaseRecord<'_, Vec<u8>, Vec<u8>> =
            BaseRecord::to(topic).payload(&record.value);
        if let Some(key) = &record.key {
            out = out.key(key);
        }
        if let Some(ts) = record.timestamp {
            out = out.timestamp(ts);
        }
        if let Some(p) = record.partition {
            out = out.partition(p);
        }
        if !record.headers.is_empty() {
            // Built per attempt: the producer takes the headers, also when it refuses.
            let headers = record
                .headers
                .iter()
                .fold(OwnedHeaders::new(), |h, (key, value)| {
                    h.insert(Header {
                        key,
                        value: Some(value),
                    })
                });
            out = out.headers(headers);
        }
        match producer.send(out) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                producer.poll(Duration::from_millis(10));
            }
            Err((e, _)) => return Err(format!("Kafka sink: topic {topic}: {e}").into()),
        }
    }
}

/// Waits until every record sent so far is acknowledged; an error if one was refused.
pub(crate) fn flush(
    producer: &BaseProducer<Deliveries>,
    deliveries: &Deliveries,
    topic: &str,
) -> Result<(), BoxError> {
    producer
        .flush(FLUSH_TIMEOUT)
        .map_err(|e| format!("Kafka sink: topic {topic}: {e}"))?;
    deliveries.check(topic)
}

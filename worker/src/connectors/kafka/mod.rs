//! Kafka source and sink, through librdkafka (the `rdkafka` crate).
//!
//! - [`KafkaSource`]: one split per partition, assigned to readers by a fixed hash of
//!   topic and partition; the next offset of every partition is the reader's checkpointed
//!   position (not consumer-group state), committed back to the group when a checkpoint
//!   completes so lag monitors see it; starts from the earliest, latest or committed
//!   offsets, a timestamp or given offsets; topic lists or a pattern, with periodic
//!   discovery of new partitions and topics; a watermark generator per partition, idle
//!   partitions left out; `bounded()` reads up to the offsets that were latest when it
//!   started and ends; unreadable records go to the dead-letter output.
//! - [`KafkaSink`]: at least once — every record the job wrote before a checkpoint
//!   barrier is acknowledged by the brokers before the barrier passes; delivery failures
//!   fail the job (it restarts from the checkpoint) instead of being lost. Or exactly
//!   once ([`KafkaSink::exactly_once`]): Kafka transactions that commit with the
//!   checkpoints, recovered after a crash (see `transactional.rs` for how).
//!
//! Records are turned into values by a [`KafkaDeserializer`] and back by a
//! [`KafkaSerializer`]; text, bytes and JSON come built in.

mod config;
mod format;
mod produce;
mod sink;
mod source;
mod transactional;

pub use config::{KafkaConfig, StartingOffsets};
pub use format::{
    BytesValue, JsonValue, KafkaDeserializer, KafkaRecord, KafkaSerializer, KeyValueText, TextValue,
};
pub use sink::KafkaSink;
pub use source::KafkaSource;

//! Connection settings shared by the Kafka source and sink, and where a source starts.

use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Brokers and librdkafka properties (`security.protocol`, `sasl.*`, timeouts…).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaConfig {
    /// `host:port[,host:port…]` (`bootstrap.servers`).
    pub brokers: String,
    /// Any librdkafka property, set after Strom's own, so they win.
    pub properties: BTreeMap<String, String>,
}

impl KafkaConfig {
    pub fn new(brokers: impl Into<String>) -> Self {
        KafkaConfig {
            brokers: brokers.into(),
            properties: BTreeMap::new(),
        }
    }

    /// Sets a librdkafka property.
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(key.into(), value.into());
        self
    }

    /// A librdkafka configuration with `defaults` under the user's properties.
    pub(crate) fn client_config(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        for (key, value) in defaults {
            config.set(*key, *value);
        }
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
    }
}

/// What librdkafka may buffer, under the user's properties: a reader prefetches up to
/// 10,000 records per partition (librdkafka's default, 100,000, is hundreds of MB of
/// small records) and 16 MB (not 64); a writer holds up to 32 MB of unsent records, as
/// Kafka's Java producer does (librdkafka's default is 1 GB).
pub(crate) const CONSUMER_BUFFERS: [(&str, &str); 2] = [
    ("queued.min.messages", "10000"),
    ("queued.max.messages.kbytes", "16384"),
];
pub(crate) const PRODUCER_BUFFER: (&str, &str) = ("queue.buffering.max.kbytes", "32768");

/// Where a [`super::KafkaSource`] starts reading partitions its checkpoint has no offset
/// for (all of them on a fresh start).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum StartingOffsets {
    /// The oldest record still kept.
    #[default]
    Earliest,
    /// Only what arrives from now on.
    Latest,
    /// The consumer group's committed offsets; the earliest where it has none.
    Committed,
    /// The first record at or after this time (ms since the epoch); the end where none is.
    Timestamp(i64),
    /// These offsets: topic → partition → the next offset to read. Partitions not listed
    /// start at the earliest; an offset the partition no longer (or does not yet) hold
    /// starts at its earliest (or latest) one.
    Specific(BTreeMap<String, BTreeMap<i32, i64>>),
}

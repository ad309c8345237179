//! Turning Kafka records into values and values into records.

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Display;
use std::marker::PhantomData;

/// A record as a source reads it.
#[derive(Clone, Copy, Debug)]
pub struct KafkaRecord<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    /// The record's timestamp (ms since the epoch), if it has one.
    pub timestamp: Option<i64>,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
}

/// Reads a value out of a record. An `Err` sends the record to the dead-letter output
/// with that text; the job goes on.
pub trait KafkaDeserializer<T>: Send + Sync + 'static {
    fn deserialize(&self, record: &KafkaRecord<'_>) -> Result<T, String>;
}

/// Writes a value as a record: key, value, and optionally its partition and headers.
/// (The record's timestamp is the value's event time when it has one.)
pub trait KafkaSerializer<T>: Send + Sync + 'static {
    /// The key (partitioning follows it); `None`: no key, partitions in turn.
    fn key(&self, value: &T) -> Option<Vec<u8>> {
        let _ = value;
        None
    }
    fn value(&self, value: &T) -> Vec<u8>;
    /// A partition chosen by the value; `None` (the default) leaves it to the producer's
    /// partitioner: a hash of the key (librdkafka's `partitioner` property picks which
    /// hash; `murmur2_random` places keys as Java clients do).
    fn partition(&self, value: &T) -> Option<i32> {
        let _ = value;
        None
    }
    /// Headers to attach, as (name, bytes).
    fn headers(&self, value: &T) -> Vec<(String, Vec<u8>)> {
        let _ = value;
        Vec::new()
    }
}

/// The value as UTF-8 text (a `String` in, `Display` out).
#[derive(Clone, Copy, Debug, Default)]
pub struct TextValue;

impl KafkaDeserializer<String> for TextValue {
    fn deserialize(&self, record: &KafkaRecord<'_>) -> Result<String, String> {
        let value = record
            .value
            .ok_or("the record has no value (a tombstone)")?;
        String::from_utf8(value.to_vec()).map_err(|e| format!("the value is not UTF-8: {e}"))
    }
}

impl<T: Display> KafkaSerializer<T> for TextValue {
    fn value(&self, value: &T) -> Vec<u8> {
        value.to_string().into_bytes()
    }
}

/// The value's bytes as they are.
#[derive(Clone, Copy, Debug, Default)]
pub struct BytesValue;

impl KafkaDeserializer<Vec<u8>> for BytesValue {
    fn deserialize(&self, record: &KafkaRecord<'_>) -> Result<Vec<u8>, String> {
        Ok(record.value.unwrap_or_default().to_vec())
    }
}

impl KafkaSerializer<Vec<u8>> for BytesValue {
    fn value(&self, value: &Vec<u8>) -> Vec<u8> {
        value.clone()
    }
}

/// The value as JSON of `T`.
pub struct JsonValue<T>(PhantomData<fn() -> T>);

impl<T> JsonValue<T> {
    pub fn new() -> Self {
        JsonValue(PhantomData)
    }
}

impl<T> Default for JsonValue<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: DeserializeOwned + 'static> KafkaDeserializer<T> for JsonValue<T> {
    fn deserialize(&self, record: &KafkaRecord<'_>) -> Result<T, String> {
        let value = record
            .value
            .ok_or("the record has no value (a tombstone)")?;
        serde_json::from_slice(value).map_err(|e| format!("not the JSON expected: {e}"))
    }
}

impl<T: Serialize + 'static> KafkaSerializer<T> for JsonValue<T> {
    fn value(&self, value: &T) -> Vec<u8> {
        // Serializing plain data to JSON cannot fail; a map with non-string keys can,
        // and then says so in the record rather than losing it.
        serde_json::to_vec(value).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}").into_bytes())
    }
}

/// A `(key, value)` pair as two texts: the key (partitioning by it) and the value.
#[derive(Clone, Copy, Debug, Default)]
pub struct KeyValueText;

impl<K: Display, V: Display> KafkaSerializer<(K, V)> for KeyValueText {
    fn key(&self, value: &(K, V)) -> Option<Vec<u8>> {
        Some(value.0.to_string().into_bytes())
    }
    fn value(&self, value: &(K, V)) -> Vec<u8> {
        value.1.to_string().into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(value: Option<&[u8]>) -> KafkaRecord<'_> {
        KafkaRecord {
            topic: "t",
            partition: 0,
            offset: 7,
            timestamp: None,
            key: None,
            value,
        }
    }

    #[test]
    fn text_and_json_read_values_and_say_why_they_cannot() {
        assert_eq!(
            TextValue.deserialize(&record(Some(b"hello"))).unwrap(),
            "hello"
        );
        assert!(
            TextValue
                .deserialize(&record(Some(&[0xff, 0xfe])))
                .unwrap_err()
                .contains("not UTF-8")
        );
        assert!(
            TextValue
                .deserialize(&record(None))
                .unwrap_err()
                .contains("tombstone")
        );
        let json = JsonValue::<Vec<u32>>::new();
        assert_eq!(
            json.deserialize(&record(Some(b"[1,2]"))).unwrap(),
            vec![1, 2]
        );
        assert!(
            json.deserialize(&record(Some(b"{")))
                .unwrap_err()
                .contains("not the JSON expected")
        );
    }

    #[test]
    fn key_value_text_keys_by_the_first_and_writes_the_second() {
        let pair = ("to".to_string(), 3u64);
        assert_eq!(KeyValueText.key(&pair), Some(b"to".to_vec()));
        assert_eq!(KeyValueText.value(&pair), b"3".to_vec());
    }
}

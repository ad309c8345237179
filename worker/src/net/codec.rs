//! The wire form of a batch of records: a count, then each record's value and timestamp,
//! in MessagePack.
//!
//! MessagePack because it describes itself: record types may use serde features that need
//! the data to say what it is (`#[serde(untagged)]` enums, `serde_json::Value` fields, as
//! the model-serving job does), which compact formats without type information (bincode,
//! postcard) cannot read back. For the same reason structs are written as maps with their
//! field names: an untagged enum tells its struct variants apart by their fields.

use crate::record::{Batch, Data, StreamRecord};
use std::marker::PhantomData;

/// Why a batch could not be written or read. Every variant names the record type, so a
/// user sees which stream of their job carried the bad data.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("could not serialise a record of type {type_name}: {message}")]
    Encode {
        type_name: &'static str,
        message: String,
    },
    #[error(
        "could not read a record of type {type_name} sent by another process: {message} \
         (do all processes of the job run the same binary?)"
    )]
    Decode {
        type_name: &'static str,
        message: String,
    },
    #[error("{0}")]
    WrongType(String),
    #[error("{0}")]
    Frame(String),
}

/// Encodes and decodes batches of `T`.
pub(crate) struct RecordCodec<T>(PhantomData<T>);

impl<T: Data> RecordCodec<T> {
    pub(crate) fn encode(batch: &Batch<T>, out: &mut Vec<u8>) -> Result<(), CodecError> {
        let err = |e: rmp_serde::encode::Error| CodecError::Encode {
            type_name: std::any::type_name::<T>(),
            message: e.to_string(),
        };
        rmp_serde::encode::write(out, &(batch.len() as u64)).map_err(err)?;
        for r in batch {
            rmp_serde::encode::write_named(out, &(&r.value, r.timestamp)).map_err(err)?;
        }
        Ok(())
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Batch<T>, CodecError> {
        use serde::Deserialize;
        let err = |message: String| CodecError::Decode {
            type_name: std::any::type_name::<T>(),
            message,
        };
        // One deserializer for the whole batch: setting one up per record cost as much
        // as reading a small record. Reading from the slice borrows strings (such as
        // field names) where a `Read` would copy each.
        let mut de = rmp_serde::Deserializer::from_read_ref(bytes);
        let count = u64::deserialize(&mut de).map_err(|e| err(e.to_string()))?;
        // Every record takes at least one byte: a count beyond the bytes left is corrupt
        // data, and must not reserve memory for it.
        if count > bytes.len() as u64 {
            return Err(err(format!(
                "the batch claims {count} records in {} bytes",
                bytes.len()
            )));
        }
        let mut batch = Vec::with_capacity(count as usize);
        for i in 0..count {
            let (value, timestamp) = <(T, i64)>::deserialize(&mut de)
                .map_err(|e| err(format!("record {} of {count}: {e}", i + 1)))?;
            batch.push(StreamRecord { value, timestamp });
        }
        // The batch must end here: anything more means writer and reader disagree.
        match serde::de::IgnoredAny::deserialize(&mut de) {
            Err(rmp_serde::decode::Error::InvalidMarkerRead(e))
                if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
            _ => {
                return Err(err(format!("bytes left over after {count} records")));
            }
        }
        Ok(batch)
    }
}

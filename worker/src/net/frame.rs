//! Channel elements ([`Envelope`]) to and from data-plane frames
//! (`strom.data.v1.DataFrame`). Records are written by the edge's codec, which knows
//! their type; everything else maps one to one.

use crate::graph::EdgeOps;
use crate::net::codec::CodecError;
use crate::record::WatermarkStatus;
use crate::runtime::barrier::Barrier;
use crate::runtime::envelope::Envelope;
use strom_proto::data::{self as wire, DataFrame, data_frame::Kind};

/// The frame that carries `envelope` over `edge`.
pub(crate) fn to_frame(envelope: Envelope, edge: &dyn EdgeOps) -> Result<DataFrame, CodecError> {
    let kind = match envelope {
        Envelope::Records(batch) => {
            let mut bytes = Vec::new();
            edge.encode_batch(batch, &mut bytes)?;
            Kind::Records(bytes.into())
        }
        Envelope::Watermark(w) => Kind::Watermark(w),
        Envelope::Status(status) => Kind::Status(
            match status {
                WatermarkStatus::Active => wire::WatermarkStatus::Active,
                WatermarkStatus::Idle => wire::WatermarkStatus::Idle,
            }
            .into(),
        ),
        Envelope::ProcessingTime(t) => Kind::ProcessingTime(t),
        Envelope::Barrier(b) => Kind::Barrier(wire::Barrier {
            checkpoint_id: b.id,
            timestamp_ms: b.timestamp,
            savepoint: b.savepoint.as_deref().unwrap_or_default().to_string(),
        }),
        Envelope::EndOfInput => Kind::EndOfInput(wire::EndOfInput {}),
    };
    Ok(DataFrame { kind: Some(kind) })
}

/// The channel element a frame carries. `open` frames belong to the channel layer: one
/// here is an error.
pub(crate) fn from_frame(frame: DataFrame, edge: &dyn EdgeOps) -> Result<Envelope, CodecError> {
    let bad = |what: String| Err(CodecError::Frame(what));
    match frame.kind {
        Some(Kind::Records(bytes)) => Ok(Envelope::Records(edge.decode_batch(&bytes)?)),
        Some(Kind::Watermark(w)) => Ok(Envelope::Watermark(w)),
        Some(Kind::Status(s)) => match wire::WatermarkStatus::try_from(s) {
            Ok(wire::WatermarkStatus::Active) => Ok(Envelope::Status(WatermarkStatus::Active)),
            Ok(wire::WatermarkStatus::Idle) => Ok(Envelope::Status(WatermarkStatus::Idle)),
            _ => bad(format!("unknown watermark status {s} in a data frame")),
        },
        Some(Kind::ProcessingTime(t)) => Ok(Envelope::ProcessingTime(t)),
        Some(Kind::EndOfInput(_)) => Ok(Envelope::EndOfInput),
        Some(Kind::Open(id)) => bad(format!("a second 'open' frame ({id:?}) on an open channel")),
        Some(Kind::Barrier(b)) => Ok(Envelope::Barrier(Barrier {
            id: b.checkpoint_id,
            timestamp: b.timestamp_ms,
            savepoint: (!b.savepoint.is_empty()).then(|| b.savepoint.as_str().into()),
        })),
        None => bad("an empty data frame (from a newer version of Strom?)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::TypedEdge;
    use crate::record::{Batch, NO_TIMESTAMP, StreamRecord};
    use crate::runtime::envelope::downcast_batch;
    use prost::Message;
    use serde::{Deserialize, Serialize};

    /// Like the model-serving job's records: an untagged enum and a JSON value, which need
    /// a self-describing format.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    #[serde(untagged)]
    enum Payload {
        Scores { name: String, weights: Vec<f64> },
        Raw(serde_json::Value),
    }

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    struct Reading {
        sensor: String,
        value: f64,
        payload: Option<Payload>,
    }

    fn readings() -> Batch<Reading> {
        vec![
            StreamRecord::new(
                Reading {
                    sensor: "s-1".into(),
                    value: 21.5,
                    payload: Some(Payload::Scores {
                        name: "linear".into(),
                        weights: vec![0.5, -1.25],
                    }),
                },
                1_000,
            ),
            StreamRecord::untimed(Reading {
                sensor: "s-2".into(),
                value: -0.0,
                payload: Some(Payload::Raw(serde_json::json!({"k": [1, "two", null]}))),
            }),
            StreamRecord::new(
                Reading {
                    sensor: String::new(),
                    value: f64::MAX,
                    payload: None,
                },
                i64::MIN + 1,
            ),
        ]
    }

    /// Through the frame, the protobuf bytes, and back, as between two processes.
    fn over_the_wire(envelope: Envelope, edge: &dyn EdgeOps) -> Envelope {
        let bytes = to_frame(envelope, edge).expect("encodes").encode_to_vec();
        let frame = DataFrame::decode(bytes.as_slice()).expect("a valid protobuf frame");
        from_frame(frame, edge).expect("decodes")
    }

    #[test]
    fn records_arrive_with_their_values_and_timestamps() {
        let edge = TypedEdge::<Reading>::plain();
        let sent = readings();
        let Envelope::Records(batch) =
            over_the_wire(Envelope::Records(Box::new(sent.clone())), edge.as_ref())
        else {
            panic!("records arrive as records");
        };
        let got = downcast_batch::<Reading>(batch).expect("a batch of readings");
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], sent[0]);
        assert_eq!(got[1].timestamp, NO_TIMESTAMP);
        assert_eq!(got[1].value.payload, sent[1].value.payload);
        assert_eq!(got[1].value.value.to_bits(), sent[1].value.value.to_bits());
        assert_eq!(got[2], sent[2]);
    }

    #[test]
    fn control_elements_arrive_unchanged() {
        let edge = TypedEdge::<u64>::plain();
        let check = |e: Envelope| over_the_wire(e, edge.as_ref());
        assert!(matches!(
            check(Envelope::Watermark(-5)),
            Envelope::Watermark(-5)
        ));
        assert!(matches!(
            check(Envelope::Watermark(i64::MAX)),
            Envelope::Watermark(i64::MAX)
        ));
        assert!(matches!(
            check(Envelope::Status(WatermarkStatus::Idle)),
            Envelope::Status(WatermarkStatus::Idle)
        ));
        assert!(matches!(
            check(Envelope::Status(WatermarkStatus::Active)),
            Envelope::Status(WatermarkStatus::Active)
        ));
        assert!(matches!(
            check(Envelope::ProcessingTime(42)),
            Envelope::ProcessingTime(42)
        ));
        assert!(matches!(check(Envelope::EndOfInput), Envelope::EndOfInput));
        for savepoint in [None, Some("s3://savepoints/sp-1".into())] {
            let barrier = Barrier {
                id: 7,
                timestamp: 1_700_000_000_000,
                savepoint,
            };
            assert!(
                matches!(check(Envelope::Barrier(barrier.clone())), Envelope::Barrier(b) if b == barrier)
            );
        }
        let Envelope::Records(empty) = check(Envelope::Records(Box::new(Batch::<u64>::new())))
        else {
            panic!("an empty batch stays a batch");
        };
        assert!(downcast_batch::<u64>(empty).expect("u64 batch").is_empty());
    }

    #[test]
    fn records_of_another_type_are_an_error_naming_the_type() {
        let sender = TypedEdge::<String>::plain();
        let frame = to_frame(
            Envelope::Records(Box::new(vec![StreamRecord::untimed("text".to_string())])),
            sender.as_ref(),
        )
        .expect("encodes");
        let receiver = TypedEdge::<Reading>::plain();
        let Err(e) = from_frame(frame, receiver.as_ref()) else {
            panic!("a string is not a reading");
        };
        let message = e.to_string();
        assert!(message.contains("Reading"), "{message}");
        assert!(message.contains("same binary"), "{message}");
    }

    #[test]
    fn truncated_or_padded_batches_are_rejected() {
        let edge = TypedEdge::<Reading>::plain();
        let mut bytes = Vec::new();
        edge.encode_batch(Box::new(readings()), &mut bytes)
            .expect("encodes");
        for (broken, says) in [
            (&bytes[..bytes.len() - 3], "record 3 of 3"),
            (&[bytes.as_slice(), &[0xc0]].concat()[..], "left over"),
        ] {
            let frame = DataFrame {
                kind: Some(Kind::Records(broken.to_vec().into())),
            };
            let Err(e) = from_frame(frame, edge.as_ref()) else {
                panic!("a broken batch is rejected");
            };
            assert!(e.to_string().contains(says), "{e}");
        }
        // A count far beyond the bytes: an error, not a huge allocation.
        let mut huge = Vec::new();
        rmp_serde::encode::write(&mut huge, &u64::MAX).expect("encodes");
        let frame = DataFrame {
            kind: Some(Kind::Records(huge.into())),
        };
        let Err(e) = from_frame(frame, edge.as_ref()) else {
            panic!("a lying count is rejected");
        };
        assert!(e.to_string().contains("claims"), "{e}");
    }

    #[test]
    fn frames_that_do_not_belong_in_a_channel_are_errors() {
        let edge = TypedEdge::<u64>::plain();
        for kind in [
            None,
            Some(Kind::Open(wire::ChannelId::default())),
            Some(Kind::Status(99)),
        ] {
            assert!(from_frame(DataFrame { kind }, edge.as_ref()).is_err());
        }
    }
}

//! What a `read_committed` consumer should see, worked out by the tests themselves.
//!
//! tansu 0.6 writes Kafka's transaction markers (the control records that commit or
//! abort a producer's transaction) but hands aborted records to `read_committed`
//! consumers all the same. So the exactly-once tests read the partitions' raw record
//! batches (a Fetch request, version 4, read uncommitted) and apply the markers as Kafka
//! brokers and clients do: a transactional record counts once a commit marker of its
//! producer (id and epoch) follows it, never when an abort marker does or when the
//! producer id was taken over by a later epoch before either (fenced), and not yet when
//! none of these has happened.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;

/// One record of a partition's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord {
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub timestamp: i64,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl LogRecord {
    pub fn key_text(&self) -> String {
        String::from_utf8_lossy(self.key.as_deref().unwrap_or_default()).into_owned()
    }
    pub fn value_text(&self) -> String {
        String::from_utf8_lossy(self.value.as_deref().unwrap_or_default()).into_owned()
    }
}

/// A partition's records by what became of their transactions.
#[derive(Debug, Default)]
pub struct PartitionLog {
    /// Outside transactions, or in committed ones: what `read_committed` shows.
    pub committed: Vec<LogRecord>,
    pub aborted: Vec<LogRecord>,
    /// In transactions neither committed nor aborted yet.
    pub open: Vec<LogRecord>,
}

/// Reads partition `partition` of `topic` from the broker at `address` up to its high
/// watermark.
pub fn read_partition(address: &str, topic: &str, partition: i32) -> PartitionLog {
    let mut stream = TcpStream::connect(address).expect("the broker accepts connections");
    let mut log = PartitionLog::default();
    // Records of transactions not resolved yet, by producer id and epoch.
    let mut in_txn: HashMap<(i64, i16), Vec<LogRecord>> = HashMap::new();
    let mut offset = 0i64;
    for correlation in 1.. {
        assert!(
            correlation < 100_000,
            "the log of {topic}/{partition} never ends"
        );
        let (high_watermark, records) = fetch(&mut stream, correlation, topic, partition, offset);
        if records.is_empty() {
            assert!(
                offset >= high_watermark,
                "{topic}/{partition}: nothing returned at offset {offset} below the high watermark {high_watermark}"
            );
            break;
        }
        for batch in parse_batches(&records) {
            offset = offset.max(batch.last_offset + 1);
            let producer = (batch.producer_id, batch.producer_epoch);
            if batch.control {
                // A marker ends its producer's transaction of that epoch. One of an
                // earlier epoch that has none was fenced: aborted (tansu does not always
                // write the abort marker when a new producer takes the id over).
                let fenced: Vec<(i64, i16)> = in_txn
                    .keys()
                    .filter(|(id, epoch)| *id == producer.0 && *epoch < producer.1)
                    .copied()
                    .collect();
                for key in fenced {
                    log.aborted.extend(in_txn.remove(&key).unwrap_or_default());
                }
                let pending = in_txn.remove(&producer).unwrap_or_default();
                match batch.control_type {
                    Some(1) => log.committed.extend(pending),
                    Some(0) => log.aborted.extend(pending),
                    other => panic!("unknown control record {other:?}"),
                }
            } else if batch.transactional {
                in_txn.entry(producer).or_default().extend(batch.records);
            } else {
                log.committed.extend(batch.records);
            }
        }
        if offset >= high_watermark {
            break;
        }
    }
    // Unresolved at the end: open, unless a later epoch of the producer has written since.
    let latest: HashMap<i64, i16> = in_txn.keys().fold(HashMap::new(), |mut m, (id, epoch)| {
        let e = m.entry(*id).or_insert(*epoch);
        *e = (*e).max(*epoch);
        m
    });
    for ((id, epoch), records) in in_txn {
        if epoch < latest[&id] {
            log.aborted.extend(records);
        } else {
            log.open.extend(records);
        }
    }
    log.aborted.sort_by_key(|r| r.offset);
    log.open.sort_by_key(|r| r.offset);
    log
}

/// The committed records of partitions `0..partitions` of `topic`.
pub fn committed(address: &str, topic: &str, partitions: i32) -> Vec<LogRecord> {
    (0..partitions)
        .flat_map(|p| read_partition(address, topic, p).committed)
        .collect()
}

/// Sends a Fetch (v4, read uncommitted) and returns the high watermark and the records'
/// bytes.
fn fetch(
    stream: &mut TcpStream,
    correlation: i32,
    topic: &str,
    partition: i32,
    offset: i64,
) -> (i64, Vec<u8>) {
    let mut body = Vec::new();
    body.extend(1i16.to_be_bytes()); // api key: Fetch
    body.extend(4i16.to_be_bytes()); // version
    body.extend(correlation.to_be_bytes());
    put_string(&mut body, "strom-test-log");
    body.extend((-1i32).to_be_bytes()); // replica id: a consumer
    body.extend(500i32.to_be_bytes()); // max wait ms
    body.extend(0i32.to_be_bytes()); // min bytes
    body.extend((16i32 << 20).to_be_bytes()); // max bytes
    body.push(0); // isolation: read uncommitted
    body.extend(1i32.to_be_bytes());
    put_string(&mut body, topic);
    body.extend(1i32.to_be_bytes());
    body.extend(partition.to_be_bytes());
    body.extend(offset.to_be_bytes());
    body.extend((16i32 << 20).to_be_bytes());
    stream
        .write_all(&(body.len() as i32).to_be_bytes())
        .unwrap();
    stream.write_all(&body).unwrap();
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).unwrap();
    let mut response = vec![0u8; i32::from_be_bytes(size) as usize];
    stream.read_exact(&mut response).unwrap();
    let mut r = Reader(&response);
    assert_eq!(r.i32(), correlation);
    r.i32(); // throttle time
    assert_eq!(r.i32(), 1, "one topic");
    r.string();
    assert_eq!(r.i32(), 1, "one partition");
    assert_eq!(r.i32(), partition);
    let error = r.i16();
    assert_eq!(
        error, 0,
        "Fetch of {topic}/{partition} at {offset}: error {error}"
    );
    let high_watermark = r.i64();
    r.i64(); // last stable offset
    let aborted = r.i32();
    for _ in 0..aborted.max(0) {
        r.i64();
        r.i64();
    }
    let len = r.i32();
    let records = if len < 0 {
        Vec::new()
    } else {
        r.take(len as usize).to_vec()
    };
    (high_watermark, records)
}

struct Batch {
    last_offset: i64,
    producer_id: i64,
    producer_epoch: i16,
    transactional: bool,
    control: bool,
    /// For a control batch: 0 abort, 1 commit.
    control_type: Option<i16>,
    records: Vec<LogRecord>,
}

/// The complete record batches (v2) in `bytes`; a batch cut off at the end is left out.
fn parse_batches(bytes: &[u8]) -> Vec<Batch> {
    let mut batches = Vec::new();
    let mut r = Reader(bytes);
    while r.0.len() >= 12 {
        let base_offset = r.i64();
        let length = r.i32() as usize;
        if r.0.len() < length {
            break;
        }
        let mut b = Reader(r.take(length));
        b.i32(); // partition leader epoch
        assert_eq!(b.i8(), 2, "record batch format v2");
        b.i32(); // crc
        let attributes = b.i16();
        assert_eq!(attributes & 7, 0, "the tests produce uncompressed records");
        let last_offset_delta = b.i32();
        let base_timestamp = b.i64();
        b.i64(); // max timestamp
        let producer_id = b.i64();
        let producer_epoch = b.i16();
        b.i32(); // base sequence
        let count = b.i32();
        let control = attributes & 0x20 != 0;
        let mut records = Vec::new();
        let mut control_type = None;
        for _ in 0..count {
            b.varint(); // length
            b.i8(); // attributes
            let timestamp = base_timestamp + b.varint();
            let offset = base_offset + b.varint();
            let key = b.bytes();
            let value = b.bytes();
            let headers = (0..b.varint())
                .map(|_| {
                    let name = String::from_utf8(b.bytes().unwrap_or_default()).unwrap();
                    (name, b.bytes().unwrap_or_default())
                })
                .collect();
            if control {
                let key = key.expect("a control record has a key");
                control_type = Some(i16::from_be_bytes([key[2], key[3]]));
            } else {
                records.push(LogRecord {
                    offset,
                    key,
                    value,
                    timestamp,
                    headers,
                });
            }
        }
        batches.push(Batch {
            last_offset: base_offset + i64::from(last_offset_delta),
            producer_id,
            producer_epoch,
            transactional: attributes & 0x10 != 0,
            control,
            control_type,
            records,
        });
    }
    batches
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as i16).to_be_bytes());
    out.extend(s.as_bytes());
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        head
    }
    fn i8(&mut self) -> i8 {
        self.take(1)[0] as i8
    }
    fn i16(&mut self) -> i16 {
        i16::from_be_bytes(self.take(2).try_into().unwrap())
    }
    fn i32(&mut self) -> i32 {
        i32::from_be_bytes(self.take(4).try_into().unwrap())
    }
    fn i64(&mut self) -> i64 {
        i64::from_be_bytes(self.take(8).try_into().unwrap())
    }
    fn string(&mut self) -> String {
        let len = self.i16();
        String::from_utf8(self.take(len.max(0) as usize).to_vec()).unwrap()
    }
    /// A zig-zag varint (Kafka's `varint` and `varlong`).
    fn varint(&mut self) -> i64 {
        let mut value = 0u64;
        let mut shift = 0;
        loop {
            let byte = self.take(1)[0];
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        (value >> 1) as i64 ^ -((value & 1) as i64)
    }
    /// Varint-length bytes; length -1 is null.
    fn bytes(&mut self) -> Option<Vec<u8>> {
        let len = self.varint();
        (len >= 0).then(|| self.take(len as usize).to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_decode_zig_zag() {
        for (bytes, value) in [
            (&[0u8][..], 0i64),
            (&[1], -1),
            (&[2], 1),
            (&[0xac, 0x02], 150),
        ] {
            assert_eq!(Reader(bytes).varint(), value);
        }
    }
}

//! The canonical snapshot format of keyed state, which every state backend writes and
//! reads (so a job can move between backends through a savepoint).
//!
//! An operator's keyed state is snapshotted by key group. One key group's snapshot holds
//! every entry of every named state of that operator — key, namespace and value each as
//! MessagePack, with the entry's expiry — and the operator's timers of keys in that group.
//! Values are bytes at this level, so a snapshot can be split, merged and inspected
//! without the job's types; the types come back when a table of the job reads them.
//!
//! A subtask's keyed state goes into one file of sections, one sealed section per key
//! group, followed by a sealed index (key group → offset and length) and the index's
//! length in the last 8 bytes. A subtask restoring at another parallelism reads the index
//! and then only the sections of the key groups it now owns.

use crate::checkpoint::sealed::{seal, unseal};
use crate::keygroup::KeyGroupRange;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// One entry of a named state: key, namespace and value as MessagePack, and when it
/// expires (processing time, ms) if the state has a time-to-live.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RawEntry {
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub ns: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    pub expiry: Option<i64>,
}

/// One timer: key and namespace as MessagePack, its time, and its registration order
/// among timers of the same time (so timers fire in the same order after a restore).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RawTimer {
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub ns: Vec<u8>,
    pub time: i64,
    pub seq: u64,
}

/// Everything one operator keeps for the keys of one key group.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct KeyGroupSnapshot {
    pub group: u32,
    /// Named states and their entries, by name.
    pub tables: Vec<(String, Vec<RawEntry>)>,
    pub event_timers: Vec<RawTimer>,
    pub processing_timers: Vec<RawTimer>,
}

impl KeyGroupSnapshot {
    pub(crate) fn is_empty(&self) -> bool {
        self.tables.iter().all(|(_, e)| e.is_empty())
            && self.event_timers.is_empty()
            && self.processing_timers.is_empty()
    }

    /// The entries of state `name`, added to what is there.
    pub(crate) fn entries_mut(&mut self, name: &str) -> &mut Vec<RawEntry> {
        let at = match self.tables.iter().position(|(n, _)| n == name) {
            Some(at) => at,
            None => {
                self.tables.push((name.to_string(), Vec::new()));
                self.tables.len() - 1
            }
        };
        &mut self.tables[at].1
    }
}

/// A value in the canonical encoding (MessagePack with field names, which types with
/// `#[serde(untagged)]` enums need to be read back).
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, String> {
    rmp_serde::to_vec_named(value).map_err(|e| {
        format!(
            "could not serialise a {} for a snapshot: {e}",
            std::any::type_name::<T>()
        )
    })
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    rmp_serde::from_slice(bytes).map_err(|e| {
        format!(
            "could not read a {} from a snapshot: {e} (did the state's type change? a \
             savepoint can only be read into the types that wrote it)",
            std::any::type_name::<T>()
        )
    })
}

/// Where each key group's section is in a keyed-state file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct KeyedFileIndex {
    /// (key group, offset, length), by key group.
    pub sections: Vec<(u32, u64, u64)>,
}

/// Bytes at the end of a keyed-state file that give the index's length.
pub(crate) const INDEX_LENGTH_BYTES: u64 = 8;

/// A subtask's keyed-state file; empty key groups take no section.
pub(crate) fn write_keyed_file(groups: &[KeyGroupSnapshot]) -> Result<Vec<u8>, String> {
    let mut writer = KeyedFileWriter::new(Vec::new());
    for group in groups {
        writer.add(group)?;
    }
    writer.finish()
}

/// Writes a keyed-state file one key group at a time, in key group order, so a file
/// larger than memory can be written.
pub(crate) struct KeyedFileWriter<W> {
    out: W,
    written: u64,
    index: KeyedFileIndex,
}

impl<W: std::io::Write> KeyedFileWriter<W> {
    pub(crate) fn new(out: W) -> Self {
        KeyedFileWriter {
            out,
            written: 0,
            index: KeyedFileIndex::default(),
        }
    }

    /// Adds a key group's section (none for an empty key group).
    pub(crate) fn add(&mut self, group: &KeyGroupSnapshot) -> Result<(), String> {
        if group.is_empty() {
            return Ok(());
        }
        let section = seal(&encode(group)?);
        self.index
            .sections
            .push((group.group, self.written, section.len() as u64));
        self.put(&section)
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.out
            .write_all(bytes)
            .map_err(|e| format!("cannot write a keyed-state file: {e}"))?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Bytes written so far.
    pub(crate) fn written(&self) -> u64 {
        self.written
    }

    /// Writes the index and its length; the sink.
    pub(crate) fn finish(mut self) -> Result<W, String> {
        let index = seal(&encode(&self.index)?);
        self.put(&index)?;
        self.put(&(index.len() as u64).to_le_bytes())?;
        self.out
            .flush()
            .map_err(|e| format!("cannot write a keyed-state file: {e}"))?;
        Ok(self.out)
    }
}

/// The index at the end of a keyed-state file: `tail` is the file's last
/// `INDEX_LENGTH_BYTES`, `index` the `index_length(tail)` bytes before them.
pub(crate) fn index_length(tail: &[u8]) -> Result<u64, String> {
    let bytes: [u8; 8] = tail
        .try_into()
        .map_err(|_| "the file is too short to be keyed state".to_string())?;
    Ok(u64::from_le_bytes(bytes))
}

pub(crate) fn read_index(index: &[u8]) -> Result<KeyedFileIndex, String> {
    decode(unseal(index).map_err(|e| format!("index: {e}"))?)
}

/// The sections (offset, length) of the key groups in `wanted`.
pub(crate) fn sections_in(index: &KeyedFileIndex, wanted: KeyGroupRange) -> Vec<(u64, u64)> {
    index
        .sections
        .iter()
        .filter(|(g, _, _)| wanted.contains(*g as usize))
        .map(|&(_, offset, len)| (offset, len))
        .collect()
}

pub(crate) fn read_section(section: &[u8]) -> Result<KeyGroupSnapshot, String> {
    decode(unseal(section).map_err(|e| format!("key group section: {e}"))?)
}

/// The key groups of `wanted` from a whole keyed-state file in memory (jobs read files
/// by ranges, `checkpoint::restore`).
#[cfg(test)]
pub(crate) fn read_keyed_file(
    file: &[u8],
    wanted: KeyGroupRange,
) -> Result<Vec<KeyGroupSnapshot>, String> {
    let len = file.len() as u64;
    if len < INDEX_LENGTH_BYTES {
        return Err("the file is too short to be keyed state".into());
    }
    let index_len = index_length(&file[(len - INDEX_LENGTH_BYTES) as usize..])?;
    let index_start = (len - INDEX_LENGTH_BYTES)
        .checked_sub(index_len)
        .ok_or("the index length points before the file's start")?;
    let index = read_index(&file[index_start as usize..(len - INDEX_LENGTH_BYTES) as usize])?;
    sections_in(&index, wanted)
        .into_iter()
        .map(|(offset, section_len)| {
            let end = offset
                .checked_add(section_len)
                .filter(|&e| e <= index_start)
                .ok_or("a section lies outside the file")?;
            read_section(&file[offset as usize..end as usize])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(g: u32, n: u8) -> KeyGroupSnapshot {
        let mut s = KeyGroupSnapshot {
            group: g,
            ..Default::default()
        };
        s.entries_mut("count").push(RawEntry {
            key: encode(&format!("key-{g}")).expect("encodes"),
            ns: encode(&()).expect("encodes"),
            value: encode(&u64::from(n)).expect("encodes"),
            expiry: None,
        });
        s.event_timers.push(RawTimer {
            key: encode(&format!("key-{g}")).expect("encodes"),
            ns: encode(&()).expect("encodes"),
            time: 1000 * i64::from(g),
            seq: 0,
        });
        s
    }

    #[test]
    fn a_reader_gets_exactly_the_key_groups_it_asks_for() {
        let groups: Vec<KeyGroupSnapshot> = (0..8).map(|g| group(g, g as u8 * 2)).collect();
        let file = write_keyed_file(&groups).expect("writes");
        let read = read_keyed_file(&file, KeyGroupRange { start: 2, end: 4 }).expect("reads");
        assert_eq!(read, groups[2..=4]);
        let all = read_keyed_file(&file, KeyGroupRange { start: 0, end: 127 }).expect("reads");
        assert_eq!(all, groups);
        let value: u64 = decode(&all[3].tables[0].1[0].value).expect("decodes");
        assert_eq!(value, 6);
    }

    #[test]
    fn empty_key_groups_take_no_room_and_damage_is_found() {
        let mut groups = vec![group(0, 1), KeyGroupSnapshot::default(), group(5, 1)];
        groups[1].group = 3;
        let file = write_keyed_file(&groups).expect("writes");
        let read = read_keyed_file(&file, KeyGroupRange { start: 0, end: 9 }).expect("reads");
        assert_eq!(read.iter().map(|g| g.group).collect::<Vec<_>>(), [0, 5]);

        let mut damaged = file.clone();
        damaged[12] ^= 0xff;
        let e = read_keyed_file(&damaged, KeyGroupRange { start: 0, end: 0 }).expect_err("bad");
        assert!(e.contains("checksum"), "{e}");
        // The damaged section is not read by a subtask that does not own it.
        assert!(read_keyed_file(&damaged, KeyGroupRange { start: 5, end: 5 }).is_ok());
        let e = read_keyed_file(&file[..file.len() - 3], KeyGroupRange { start: 0, end: 9 })
            .expect_err("truncated");
        assert!(!e.is_empty());
    }

    #[test]
    fn decoding_into_another_type_says_the_type_changed() {
        let bytes = encode(&"text").expect("encodes");
        let e = decode::<u64>(&bytes).expect_err("not a number");
        assert!(e.contains("u64") && e.contains("type change"), "{e}");
    }
}

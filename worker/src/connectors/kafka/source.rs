//! The Kafka source: each reader owns the partitions a fixed hash gives it, reads them
//! with a manually assigned consumer (no group rebalancing: the job, not the group,
//! decides who reads what), and keeps their next offsets as its checkpointed position.
//! Each partition is a split of its own for watermarks: with a watermark strategy, event
//! time is the least of the partitions' (those idle for the strategy's idleness timeout
//! left out), as in Flink's Kafka source.
//!
//! Topics are a list or a pattern (a regular expression over topic names). Unbounded
//! sources look for new partitions — and, with a pattern, new topics — every
//! `partition_discovery` interval (5 minutes by default, as Flink's) and read them from
//! their earliest offset; so do partitions a restored checkpoint has no offset for, of
//! topics it has.

use super::config::{KafkaConfig, StartingOffsets};
use super::format::{KafkaDeserializer, KafkaRecord};
use crate::record::Data;
use crate::source::{BoxError, Source, SourceContext, SourceOutput, SourcePoll, SourceReader};
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a metadata or offsets request to the brokers may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A topic's partition.
type Partition = (String, i32);

/// How often unbounded sources look for new partitions unless told otherwise (Flink's
/// `partition.discovery.interval.ms` default).
const DEFAULT_DISCOVERY: Duration = Duration::from_secs(300);

/// Which topics a source reads.
#[derive(Clone, Debug)]
enum Topics {
    Names(Vec<String>),
    Pattern(regex::Regex),
}

/// Reads topics from Kafka; see the module docs of `connectors::kafka`.
pub struct KafkaSource<T> {
    config: KafkaConfig,
    topics: Topics,
    group_id: String,
    discovery: Option<Duration>,
    starting: StartingOffsets,
    bounded: bool,
    deserializer: Arc<dyn KafkaDeserializer<T>>,
}

impl<T: Data> KafkaSource<T> {
    /// Reads `topics` with `deserializer`, from the earliest offsets, for ever.
    pub fn new(
        config: KafkaConfig,
        topics: impl IntoIterator<Item = impl Into<String>>,
        deserializer: impl KafkaDeserializer<T>,
    ) -> Self {
        let topics: Vec<String> = topics.into_iter().map(Into::into).collect();
        KafkaSource {
            group_id: format!("strom-{}", topics.join("-")),
            config,
            topics: Topics::Names(topics),
            discovery: Some(DEFAULT_DISCOVERY),
            starting: StartingOffsets::default(),
            bounded: false,
            deserializer: Arc::new(deserializer),
        }
    }

    /// Reads every topic whose whole name `pattern` matches (internal topics, `__…`,
    /// left out), including topics created while the job runs (found by partition
    /// discovery). No matching topic is not an error: the source waits for one.
    pub fn with_topic_pattern(
        config: KafkaConfig,
        pattern: &str,
        deserializer: impl KafkaDeserializer<T>,
    ) -> Result<Self, BoxError> {
        let anchored = regex::Regex::new(&format!("^(?:{pattern})$"))
            .map_err(|e| format!("Kafka source: topic pattern {pattern:?}: {e}"))?;
        let mut source = Self::new(config, Vec::<String>::new(), deserializer);
        source.group_id = format!("strom-{}", sanitize_group(pattern));
        source.topics = Topics::Pattern(anchored);
        Ok(source)
    }

    /// How often an unbounded source looks for new partitions and (with a pattern) new
    /// topics; `None` turns discovery off. Bounded sources read what they found at the
    /// start.
    pub fn partition_discovery(mut self, every: Option<Duration>) -> Self {
        self.discovery = every;
        self
    }

    /// The consumer group offsets are committed to (for monitoring, and for
    /// [`StartingOffsets::Committed`]).
    pub fn group_id(mut self, group: impl Into<String>) -> Self {
        self.group_id = group.into();
        self
    }

    /// Where partitions without a checkpointed offset start.
    pub fn starting_offsets(mut self, starting: StartingOffsets) -> Self {
        self.starting = starting;
        self
    }

    /// Reads up to the offsets that are the latest when each reader starts, then ends
    /// (Flink's `setBounded(OffsetsInitializer.latest())`).
    pub fn bounded(mut self) -> Self {
        self.bounded = true;
        self
    }
}

impl<T: Data> Source<T> for KafkaSource<T> {
    fn is_bounded(&self) -> bool {
        self.bounded
    }

    fn create_reader(&self, ctx: &SourceContext) -> Result<Box<dyn SourceReader<T>>, BoxError> {
        let consumer: BaseConsumer = self
            .config
            .client_config(&[
                ("group.id", &self.group_id),
                // Offsets are the checkpoint's; the group only hears of completed ones.
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
                ("auto.offset.reset", "earliest"),
                super::config::CONSUMER_BUFFERS[0],
                super::config::CONSUMER_BUFFERS[1],
            ])
            .create()
            .map_err(|e| format!("Kafka source (brokers {}): {e}", self.config.brokers))?;
        Ok(Box::new(KafkaReader {
            consumer,
            topics: self.topics.clone(),
            discovery: if self.bounded { None } else { self.discovery },
            discovered_at: Instant::now(),
            starting: self.starting.clone(),
            bounded: self.bounded,
            deserializer: self.deserializer.clone(),
            subtask: ctx.subtask_index,
            parallelism: ctx.parallelism.max(1),
            assigned: false,
            next: BTreeMap::new(),
            splits: BTreeMap::new(),
            restored: None,
            stop_at: BTreeMap::new(),
            last_snapshot: None,
            transient_errors: 0,
        }))
    }

    /// Every old reader's offsets go to every new reader: each takes the partitions it
    /// owns at the new parallelism from them.
    fn rescale_positions(
        &self,
        old: Vec<Option<Vec<u8>>>,
        parallelism: usize,
    ) -> Result<Vec<Option<Vec<u8>>>, BoxError> {
        let mut all = BTreeMap::new();
        for position in old.into_iter().flatten() {
            all.extend(decode_offsets(&position)?);
        }
        let merged = encode_offsets(&all)?;
        Ok(vec![Some(merged); parallelism])
    }
}

/// A consumer group name from a topic pattern: its letters, digits, `.`, `_` and `-`.
fn sanitize_group(pattern: &str) -> String {
    pattern
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .collect()
}

/// Which reader owns a partition: a hash of the topic spreads topics' partition 0s over
/// readers, then partitions follow in turn (as Flink's Kafka enumerator does).
fn owner(topic: &str, partition: i32, parallelism: usize) -> usize {
    let start = crate::hash::stable_hash(topic) % parallelism as u64;
    ((start + partition.max(0) as u64) % parallelism as u64) as usize
}

fn encode_offsets(offsets: &BTreeMap<Partition, i64>) -> Result<Vec<u8>, BoxError> {
    let list: Vec<(&str, i32, i64)> = offsets
        .iter()
        .map(|((t, p), o)| (t.as_str(), *p, *o))
        .collect();
    Ok(serde_json::to_vec(&list)?)
}

fn decode_offsets(bytes: &[u8]) -> Result<BTreeMap<Partition, i64>, BoxError> {
    let list: Vec<(String, i32, i64)> = serde_json::from_slice(bytes)
        .map_err(|e| format!("a Kafka source position that is not one: {e}"))?;
    Ok(list.into_iter().map(|(t, p, o)| ((t, p), o)).collect())
}

struct KafkaReader<T> {
    consumer: BaseConsumer,
    topics: Topics,
    /// Unbounded: how often to look for new partitions, and when it last did.
    discovery: Option<Duration>,
    discovered_at: Instant,
    starting: StartingOffsets,
    bounded: bool,
    deserializer: Arc<dyn KafkaDeserializer<T>>,
    subtask: usize,
    parallelism: usize,
    assigned: bool,
    /// The next offset to read of every partition this reader owns (once assigned).
    next: BTreeMap<Partition, i64>,
    /// Each owned partition's split number, for its watermarks.
    splits: BTreeMap<Partition, usize>,
    /// Offsets from the checkpoint, until the partitions are assigned.
    restored: Option<BTreeMap<Partition, i64>>,
    /// Bounded: the end offset of each partition (exclusive).
    stop_at: BTreeMap<Partition, i64>,
    /// The offsets of the latest checkpoint, committed to the group when it completes.
    last_snapshot: Option<BTreeMap<Partition, i64>>,
    /// Consumer errors librdkafka recovers from, seen so far (logged now and then).
    transient_errors: u64,
}

impl<T: Data> KafkaReader<T> {
    /// This reader's partitions of every topic, from the brokers' metadata.
    fn my_partitions(&self) -> Result<Vec<Partition>, BoxError> {
        let mut mine = Vec::new();
        let owned = |topic: &str, partitions: &[rdkafka::metadata::MetadataPartition]| {
            partitions
                .iter()
                .filter(|p| owner(topic, p.id(), self.parallelism) == self.subtask)
                .map(|p| (topic.to_string(), p.id()))
                .collect::<Vec<_>>()
        };
        match &self.topics {
            Topics::Names(names) => {
                for topic in names {
                    let metadata = self
                        .consumer
                        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
                        .map_err(|e| {
                            format!("Kafka source: reading the metadata of topic {topic}: {e}")
                        })?;
                    let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
                        return Err(format!("Kafka source: no metadata for topic {topic}").into());
                    };
                    if let Some(error) = t.error() {
                        return Err(format!(
                            "Kafka source: topic {topic}: {}; create the topic or fix the source's topics",
                            rdkafka::types::RDKafkaErrorCode::from(error)
                        )
                        .into());
                    }
                    mine.extend(owned(topic, t.partitions()));
                }
            }
            Topics::Pattern(pattern) => {
                let metadata = self
                    .consumer
                    .fetch_metadata(None, REQUEST_TIMEOUT)
                    .map_err(|e| format!("Kafka source: listing the topics: {e}"))?;
                for t in metadata.topics() {
                    if !t.name().starts_with("__")
                        && pattern.is_match(t.name())
                        && t.error().is_none()
                    {
                        mine.extend(owned(t.name(), t.partitions()));
                    }
                }
                mine.sort();
            }
        }
        Ok(mine)
    }

    /// Assigns this reader's partitions at their starting offsets, resolved to numbers
    /// here (not left to librdkafka as "beginning" or "end"): a checkpoint taken before
    /// the first record then records where reading starts, and a restore does not jump
    /// to a later "end".
    fn assign(&mut self, out: &mut SourceOutput<'_, T>) -> Result<(), BoxError> {
        let partitions = self.my_partitions()?;
        let restored = self.restored.take().unwrap_or_default();
        let fresh: Vec<&Partition> = partitions
            .iter()
            .filter(|p| !restored.contains_key(*p))
            .collect();
        let lookup = |offsets: TopicPartitionList| -> BTreeMap<Partition, i64> {
            offsets
                .elements()
                .iter()
                .filter_map(|e| match e.offset() {
                    Offset::Offset(o) => Some(((e.topic().to_string(), e.partition()), o)),
                    _ => None,
                })
                .collect()
        };
        let mut asked = TopicPartitionList::new();
        let found = match &self.starting {
            StartingOffsets::Timestamp(ms) if !fresh.is_empty() => {
                for (topic, partition) in &fresh {
                    asked.add_partition_offset(topic, *partition, Offset::Offset(*ms))?;
                }
                lookup(self.consumer.offsets_for_times(asked, REQUEST_TIMEOUT)?)
            }
            StartingOffsets::Committed if !fresh.is_empty() => {
                for (topic, partition) in &fresh {
                    asked.add_partition(topic, *partition);
                }
                lookup(self.consumer.committed_offsets(asked, REQUEST_TIMEOUT)?)
            }
            _ => BTreeMap::new(),
        };
        let mut list = TopicPartitionList::new();
        for key in &partitions {
            let (topic, partition) = key;
            let (low, high) = self
                .consumer
                .fetch_watermarks(topic, *partition, REQUEST_TIMEOUT)?;
            let known_topic = restored.keys().any(|(t, _)| t == topic);
            let start = match (restored.get(key), &self.starting) {
                (Some(next), _) => *next,
                // A partition added since the checkpoint: all of it is new.
                (None, _) if known_topic => low,
                (None, StartingOffsets::Earliest) => low,
                (None, StartingOffsets::Specific(offsets)) => offsets
                    .get(topic)
                    .and_then(|p| p.get(partition))
                    .map_or(low, |o| (*o).clamp(low, high)),
                (None, StartingOffsets::Latest) => high,
                // No record at or after the time: from the end.
                (None, StartingOffsets::Timestamp(_)) => found.get(key).copied().unwrap_or(high),
                // No committed offset: from the earliest.
                (None, StartingOffsets::Committed) => found.get(key).copied().unwrap_or(low),
            };
            list.add_partition_offset(topic, *partition, Offset::Offset(start))?;
            self.next.insert(key.clone(), start);
            let split = self.splits.len();
            self.splits.insert(key.clone(), split);
            out.add_split(split);
            if self.bounded {
                self.stop_at.insert(key.clone(), high);
            }
        }
        self.consumer.assign(&list)?;
        self.assigned = true;
        tracing::info!(
            subtask = self.subtask,
            offsets = ?self.next,
            "Kafka source assigned"
        );
        Ok(())
    }

    /// Adds the partitions (and, with a pattern, topics) created since the last look,
    /// from their earliest offsets.
    fn discover(&mut self, out: &mut SourceOutput<'_, T>) -> Result<(), BoxError> {
        self.discovered_at = Instant::now();
        let new: Vec<Partition> = self
            .my_partitions()?
            .into_iter()
            .filter(|p| !self.next.contains_key(p))
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        let mut list = TopicPartitionList::new();
        for key in &new {
            let (topic, partition) = key;
            let (low, _) = self
                .consumer
                .fetch_watermarks(topic, *partition, REQUEST_TIMEOUT)?;
            list.add_partition_offset(topic, *partition, Offset::Offset(low))?;
            self.next.insert(key.clone(), low);
            let split = self.splits.len();
            self.splits.insert(key.clone(), split);
            out.add_split(split);
        }
        self.consumer.incremental_assign(&list)?;
        tracing::info!(subtask = self.subtask, partitions = ?new, "Kafka source: new partitions");
        Ok(())
    }

    /// Bounded: every partition has reached its end offset.
    fn all_read(&self) -> bool {
        self.stop_at
            .iter()
            .all(|(key, stop)| self.next.get(key).is_some_and(|next| next >= stop))
    }
}

impl<T: Data> SourceReader<T> for KafkaReader<T> {
    fn poll(&mut self, out: &mut SourceOutput<'_, T>) -> Result<SourcePoll, BoxError> {
        if !self.assigned {
            self.assign(out)?;
        }
        if self.bounded && self.all_read() {
            return Ok(SourcePoll::Finished);
        }
        if let Some(every) = self.discovery
            && self.discovered_at.elapsed() >= every
        {
            self.discover(out)?;
        }
        let mut read = 0;
        while read < out.batch_size() && !out.is_full() {
            let Some(message) = self.consumer.poll(Duration::ZERO) else {
                break;
            };
            let message = match message {
                Ok(message) => message,
                Err(e @ KafkaError::MessageConsumptionFatal(_)) => {
                    return Err(format!("Kafka source: {e}").into());
                }
                // librdkafka reports passing trouble (a broker restarting, a connection
                // lost) as errors and recovers by itself: the job waits, as Flink's does.
                Err(e) => {
                    self.transient_errors += 1;
                    if self.transient_errors % 100 == 1 {
                        tracing::warn!(
                            subtask = self.subtask,
                            error = %e,
                            errors = self.transient_errors,
                            "Kafka source: consumer error; retrying"
                        );
                    }
                    return Ok(SourcePoll::Wait(Duration::from_millis(100)));
                }
            };
            let key = (message.topic().to_string(), message.partition());
            let offset = message.offset();
            if let Some(stop) = self.stop_at.get(&key)
                && offset >= *stop
            {
                // Past the end of a bounded read: left for whoever reads on.
                continue;
            }
            read += 1;
            let split = self.splits.get(&key).copied().unwrap_or(usize::MAX);
            self.next.insert(key, offset + 1);
            let record = KafkaRecord {
                topic: message.topic(),
                partition: message.partition(),
                offset,
                timestamp: message.timestamp().to_millis(),
                key: message.key(),
                value: message.payload(),
            };
            match self.deserializer.deserialize(&record) {
                Ok(value) => out.collect_in_split(split, value, record.timestamp),
                Err(why) => out.dead_letter(
                    format!("{}/{}@{}", record.topic, record.partition, offset),
                    why,
                    String::from_utf8_lossy(record.value.unwrap_or_default()),
                ),
            }
        }
        if self.bounded && self.all_read() {
            return Ok(SourcePoll::Finished);
        }
        Ok(if read == 0 {
            SourcePoll::Wait(Duration::from_millis(20))
        } else {
            SourcePoll::More
        })
    }

    fn snapshot_position(&mut self) -> Result<Option<Vec<u8>>, BoxError> {
        // Before the first poll nothing is assigned yet: what was restored still holds.
        let offsets = match (&self.restored, self.assigned) {
            (Some(restored), false) => restored.clone(),
            _ => self.next.clone(),
        };
        let bytes = encode_offsets(&offsets)?;
        self.last_snapshot = Some(offsets);
        Ok(Some(bytes))
    }

    fn restore_position(&mut self, position: &[u8]) -> Result<(), BoxError> {
        self.restored = Some(decode_offsets(position)?);
        Ok(())
    }

    fn notify_checkpoint_complete(&mut self, _checkpoint: u64) -> Result<(), BoxError> {
        // With one checkpoint in flight at a time (the default) the latest snapshot is
        // the completed checkpoint's. The group's offsets are for monitoring only, so a
        // failed commit is logged, never fatal.
        let Some(offsets) = self.last_snapshot.take() else {
            return Ok(());
        };
        if offsets.is_empty() {
            return Ok(());
        }
        let mut list = TopicPartitionList::new();
        for ((topic, partition), offset) in &offsets {
            list.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
        }
        if let Err(e) = self.consumer.commit(&list, CommitMode::Async) {
            tracing::warn!(error = %e, "Kafka source: committing offsets to the group failed");
        }
        Ok(())
    }

    fn close(&mut self) {
        let _ = self.consumer.unassign();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_partition_has_exactly_one_owner_and_topics_spread_over_readers() {
        for parallelism in 1..5 {
            for partition in 0..12 {
                let o = owner("orders", partition, parallelism);
                assert!(o < parallelism);
            }
            // Consecutive partitions go to consecutive readers.
            let first = owner("orders", 0, parallelism);
            assert_eq!(owner("orders", 1, parallelism), (first + 1) % parallelism);
        }
    }

    #[test]
    fn positions_round_trip_and_rescaling_gives_every_reader_all_offsets() {
        let a: BTreeMap<Partition, i64> = [(("t".to_string(), 0), 5)].into();
        let b: BTreeMap<Partition, i64> = [(("t".to_string(), 1), 9)].into();
        let source = KafkaSource::<String>::new(
            KafkaConfig::new("localhost:9092"),
            ["t"],
            super::super::TextValue,
        );
        let spread = source
            .rescale_positions(
                vec![
                    Some(encode_offsets(&a).unwrap()),
                    None,
                    Some(encode_offsets(&b).unwrap()),
                ],
                2,
            )
            .unwrap();
        assert_eq!(spread.len(), 2);
        for position in spread {
            let offsets = decode_offsets(&position.unwrap()).unwrap();
            assert_eq!(offsets.len(), 2);
            assert_eq!(offsets[&("t".to_string(), 1)], 9);
        }
        assert!(decode_offsets(b"nonsense").is_err());
    }
}

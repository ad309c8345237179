//! Connectors. Local: generator, collection, channel, file and socket sources; print, file
//! (at-least-once and exactly-once) and collect sinks. External: Kafka ([`kafka`]).

pub mod channel;
pub mod collect;
pub mod collection;
pub mod exactly_once_file_sink;
pub mod file;
pub mod file_sink;
pub mod generator;
pub mod kafka;
pub mod print;
pub mod socket;

pub use channel::{ChannelSource, Feed};
pub use collect::CollectHandle;
pub use collection::CollectionSource;
pub use exactly_once_file_sink::FileTransactions;
pub use file::FileSource;
pub use file_sink::FileSink;
pub use generator::GeneratorSource;
pub use kafka::{KafkaConfig, KafkaSink, KafkaSource, StartingOffsets};
pub use print::{DebugFormat, DisplayFormat, LineFormat, PrintSink, PrintTarget};
pub use socket::SocketTextSource;

//! Local connectors: generator, collection, file and socket sources; print, file and
//! collect sinks.

pub mod collect;
pub mod collection;
pub mod generator;
pub mod print;

pub use collect::CollectHandle;
pub use collection::CollectionSource;
pub use generator::GeneratorSource;
pub use print::{DebugFormat, DisplayFormat, LineFormat, PrintSink, PrintTarget};

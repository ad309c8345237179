//! Benchmarks of the Strom engine, and its side-by-side comparison with Apache Flink:
//! the pipelines (`cases`), Nexmark (`nexmark`), and what the `strom-bench` harness needs
//! to measure and to run Flink's counterpart jobs (`measure`, `latency`, `flink`).

pub mod cases;
pub mod event;
pub mod flink;
pub mod jobs;
pub mod latency;
pub mod measure;
pub mod nexmark;

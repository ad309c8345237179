//! Helpers shared by the conformance tests: environments at a given parallelism, a map
//! that tags records with the subtask that saw them, a recorder for side effects of user
//! functions, temporary directories, and a watermark probe that tells a test thread when
//! event time has reached a point inside a running job; for the process tests, a guard
//! that kills their processes and a free loopback port.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod cluster;
pub mod kafka;
pub mod s3;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use strom::prelude::*;

/// Every conformance test that can runs at these parallelisms and must give the same result.
pub const PARALLELISMS: [usize; 3] = [1, 2, 4];

/// An environment with default parallelism `p`.
pub fn env(p: usize) -> StreamEnv {
    let env = StreamEnv::new();
    env.set_parallelism(p);
    env
}

/// An environment with default parallelism `p` and the replayed (simulated) processing-time
/// clock.
pub fn sim_env(p: usize) -> StreamEnv {
    let env = env(p);
    env.set_processing_time(ProcessingTimeMode::Simulated);
    env
}

/// An environment whose sources emit one record per poll, so a periodic watermark
/// generator emits a watermark after every record: event time then advances at exactly
/// known points, which makes lateness deterministic.
pub fn per_record_env(p: usize) -> StreamEnv {
    let env = env(p);
    env.configure(|c| c.batch_size = 1);
    env
}

/// A map that tags every record with the index of the subtask that processed it (read
/// from the runtime context in `open`, as a Flink `RichMapFunction` would).
#[derive(Clone, Default)]
pub struct SubtaskTagger {
    subtask: Option<usize>,
}

impl<T> RichMapFunction<T, (usize, T)> for SubtaskTagger {
    fn open(&mut self, ctx: &RuntimeContext<'_>) {
        self.subtask = Some(ctx.subtask_index());
    }
    fn map(&mut self, value: T) -> (usize, T) {
        (
            self.subtask.expect("open() was not called before map()"),
            value,
        )
    }
}

/// A shared, thread-safe log that user functions write to (open/close calls and the like).
#[derive(Clone, Default)]
pub struct Log<T>(Arc<Mutex<Vec<T>>>);

impl<T: Clone> Log<T> {
    pub fn push(&self, v: T) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(v);
    }
    pub fn snapshot(&self) -> Vec<T> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
    pub fn sorted(&self) -> Vec<T>
    where
        T: Ord,
    {
        let mut v = self.snapshot();
        v.sort();
        v
    }
}

/// Sorts a vector (results of parallel subtasks arrive in any order).
pub fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

/// Groups `(key, value)` results by key, keeping the arrival order within a key (which is
/// guaranteed when each key's records travel through one channel).
pub fn per_key<K: Ord, V>(records: impl IntoIterator<Item = (K, V)>) -> BTreeMap<K, Vec<V>> {
    let mut m: BTreeMap<K, Vec<V>> = BTreeMap::new();
    for (k, v) in records {
        m.entry(k).or_default().push(v);
    }
    m
}

/// Every line of the `part-*` files under `dir`, sorted; lines from a subdirectory's files
/// (jobs with several outputs) carry its name: `alerts/<line>`.
pub fn read_parts(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            lines.extend(read_parts(&path).into_iter().map(|l| format!("{name}/{l}")));
        } else if name.starts_with("part-") {
            lines.extend(
                std::fs::read_to_string(&path)
                    .unwrap()
                    .lines()
                    .map(String::from),
            );
        }
    }
    lines.sort();
    lines
}

/// A directory under the system temp dir, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "strom-conformance-{}-{name}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Polls `cond` every 2 ms until it holds or `timeout` passes; returns whether it held.
pub fn eventually(timeout: Duration, cond: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Forwards records unchanged and raises a flag once the operator's event time (watermark)
/// has reached `at`. Placed behind an operator (keyed by a constant), it tells a test
/// thread that the operator has processed every watermark up to `at`: watermarks leave an
/// operator only after it handled them. The probe must see at least one record (to register
/// its timer).
#[derive(Clone)]
pub struct WatermarkProbe {
    pub at: i64,
    pub reached: Arc<AtomicBool>,
}

impl WatermarkProbe {
    pub fn new(at: i64) -> Self {
        WatermarkProbe {
            at,
            reached: Arc::new(AtomicBool::new(false)),
        }
    }
    pub fn is_reached(&self) -> bool {
        self.reached.load(Ordering::SeqCst)
    }
}

impl<T: Clone + Send + Sync + 'static> KeyedProcessFunction<u8, T, T> for WatermarkProbe {
    fn process_element(
        &mut self,
        value: T,
        ctx: &mut KeyedContext<'_, u8>,
        out: &mut Collector<'_, T>,
    ) {
        ctx.timer_service().register_event_time_timer(self.at);
        out.collect(value);
    }
    fn on_timer(&mut self, _: i64, _: &mut KeyedContext<'_, u8>, _: &mut Collector<'_, T>) {
        self.reached.store(true, Ordering::SeqCst);
    }
}

/// The totals of the operator named (or with uid) `name`.
pub fn totals(
    metrics: &strom::runtime::metrics::JobMetrics,
    name: &str,
) -> strom::runtime::metrics::OperatorTotals {
    metrics
        .operator(name)
        .unwrap_or_else(|| {
            panic!(
                "no operator '{name}' in {:?}",
                metrics
                    .operators
                    .iter()
                    .map(|o| o.name.clone())
                    .collect::<Vec<_>>()
            )
        })
        .totals()
}

/// Kills its processes when dropped, so a failing test leaves none behind. The master,
/// when there is one, is the first.
pub struct Processes(pub Vec<std::process::Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for p in &mut self.0 {
            let _ = p.kill();
            let _ = p.wait();
        }
    }
}

/// A loopback port free right now (another process may take it before it is bound).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An environment at `parallelism` that checkpoints every 50 ms into memory
/// (`memory://<name>/`), exactly once.
pub fn checkpointed_env(parallelism: usize, name: &str) -> StreamEnv {
    use strom::checkpoint::storage::{CheckpointStorage, StorageOptions};
    use strom::checkpoint::{CheckpointConfig, CheckpointingMode};
    let options = StorageOptions::default();
    let storage = CheckpointStorage::open(&format!("memory://{name}/"), &options).unwrap();
    StreamEnv::with_config(ExecutionConfig {
        parallelism,
        checkpointing: Some(CheckpointConfig {
            interval: Duration::from_millis(50),
            timeout: Duration::from_secs(10),
            min_pause: Duration::ZERO,
            max_concurrent: 1,
            retained: 2,
            storage,
            options,
            job_dir: name.into(),
            mode: CheckpointingMode::ExactlyOnce,
            retention: Default::default(),
        }),
        ..ExecutionConfig::default()
    })
}

//! Checkpoints of a running job: what a completed checkpoint holds is the state exactly
//! at its barrier. The keyed counts of a word count equal the words of the lines its
//! sources had emitted when they took the barrier, at every parallelism.

use crate::api::StreamEnv;
use crate::checkpoint::restore::{RestoredCheckpoint, read_metadata};
use crate::checkpoint::storage::{CheckpointStorage, StorageOptions, checkpoint_dir};
use crate::checkpoint::{CheckpointConfig, CheckpointingMode};
use crate::config::ExecutionConfig;
use crate::connectors::generator::GeneratorSource;
use crate::jobs::wordcount::{HAMLET, generated_line, tokenize, word_counts};
use crate::keygroup::KeyGroupRange;
use crate::state::StateBackend;
use crate::state::snapshot::decode;
use std::collections::BTreeMap;
use std::time::Duration;

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(f)
}

fn rocksdb() -> StateBackend {
    StateBackend::RocksDb(crate::state::RocksDbConfig {
        memory_budget: 32 << 20,
        ..Default::default()
    })
}

/// Every key group of operator `uid` in the checkpoint at `location`, as a restore reads
/// them (a key group's timers and entries may come apart).
fn keyed_state(location: &str, uid: &str) -> Vec<crate::state::snapshot::KeyGroupSnapshot> {
    let restored = RestoredCheckpoint::open(location, &StorageOptions::default()).expect("opens");
    let mut groups = Vec::new();
    restored
        .for_each_keyed_group(uid, KeyGroupRange { start: 0, end: 127 }, false, |g| {
            groups.push(g);
            Ok(())
        })
        .expect("keyed state");
    groups
}

/// A backend's name, for storage URLs (its `Debug` has slashes).
fn backend_name(backend: &StateBackend) -> &'static str {
    match backend {
        StateBackend::Heap => "heap",
        StateBackend::RocksDb(_) => "rocksdb",
    }
}

fn run_with_checkpoints(
    parallelism: usize,
    backend: StateBackend,
    mode: CheckpointingMode,
    storage: &CheckpointStorage,
) {
    run_with_checkpoints_every(parallelism, backend, mode, storage, 100, 1);
}

/// As `run_with_checkpoints`, with a checkpoint every `interval_ms` and up to
/// `max_concurrent` in flight.
fn run_with_checkpoints_every(
    parallelism: usize,
    backend: StateBackend,
    mode: CheckpointingMode,
    storage: &CheckpointStorage,
    interval_ms: u64,
    max_concurrent: usize,
) {
    let config = ExecutionConfig {
        parallelism,
        state_backend: backend,
        checkpointing: Some(CheckpointConfig {
            interval: Duration::from_millis(interval_ms),
            timeout: Duration::from_secs(10),
            min_pause: Duration::ZERO,
            max_concurrent,
            retained: 3,
            storage: storage.clone(),
            options: StorageOptions::default(),
            job_dir: "word-count".into(),
            mode,
            retention: Default::default(),
        }),
        ..ExecutionConfig::default()
    };
    let env = StreamEnv::with_config(config);
    // About 1.5 s of input: several checkpoints while it flows.
    let lines = env.add_source(
        GeneratorSource::new(generated_line)
            .count(HAMLET.len() as u64 * 40)
            .rate(1000.0),
        None,
        "Hamlet Lines",
    );
    word_counts(&lines).add_sink(|_| {});
    env.execute("word-count").expect("the job runs");
}

#[test]
fn a_checkpoint_holds_the_counts_of_exactly_the_lines_before_its_barrier() {
    use CheckpointingMode::{AtLeastOnce, ExactlyOnce};
    // (parallelism, backend, mode, checkpoint interval in ms, checkpoints in flight at
    // once): every 5 ms with 3 in flight, barriers of several checkpoints are in the
    // channels together.
    for (parallelism, backend, mode, interval_ms, max_concurrent) in [
        (1, StateBackend::Heap, ExactlyOnce, 100, 1),
        (2, StateBackend::Heap, ExactlyOnce, 100, 1),
        (2, rocksdb(), ExactlyOnce, 100, 1),
        (2, StateBackend::Heap, AtLeastOnce, 100, 1),
        (2, StateBackend::Heap, ExactlyOnce, 5, 3),
        (2, StateBackend::Heap, AtLeastOnce, 5, 3),
    ] {
        let url = format!(
            "memory://checkpoint-consistency-{parallelism}-{}-{mode:?}-{max_concurrent}",
            backend_name(&backend)
        );
        let storage = CheckpointStorage::open(&url, &StorageOptions::default()).expect("opens");
        run_with_checkpoints_every(
            parallelism,
            backend.clone(),
            mode,
            &storage,
            interval_ms,
            max_concurrent,
        );
        let done = block_on(storage.completed_checkpoints("word-count")).expect("lists");
        assert!(
            !done.is_empty(),
            "no checkpoint completed at p={parallelism}"
        );
        assert!(done.len() <= 3, "more than the retained 3: {done:?}");
        assert_eq!(
            block_on(storage.latest("word-count")).expect("reads"),
            done.last().copied()
        );
        for id in done {
            let dir = checkpoint_dir("word-count", id);
            let metadata = block_on(read_metadata(&storage, &dir)).expect("metadata");
            assert_eq!(metadata.id, id);
            // Line i goes to source subtask s when s*n/p <= i < (s+1)*n/p: the positions
            // say how many lines each had emitted, i.e. which lines.
            let source = metadata
                .operators
                .iter()
                .find(|o| o.subtasks.iter().any(|s| s.source_position.is_some()))
                .expect("the source's positions");
            let total = HAMLET.len() as u64 * 40;
            let mut expected: BTreeMap<String, u64> = BTreeMap::new();
            let mut emitted = 0;
            for s in &source.subtasks {
                // The generator's splits left: one, (next, end, step 1), until it ends.
                let splits: Vec<(u64, u64, u64)> =
                    decode(s.source_position.as_deref().expect("a position")).expect("splits");
                let first = s.subtask as u64 * total / parallelism as u64;
                let next = splits.first().map_or(
                    (s.subtask as u64 + 1) * total / parallelism as u64,
                    |split| split.0,
                );
                emitted += next - first;
                for i in first..next {
                    for w in tokenize(&generated_line(i)) {
                        *expected.entry(w).or_default() += 1;
                    }
                }
            }
            let counts_op = metadata
                .operators
                .iter()
                .find(|o| o.uid == "word-counts")
                .expect("the keyed counts");
            assert_eq!(counts_op.parallelism, parallelism);
            let groups = keyed_state(&format!("{url}/{dir}"), "word-counts");
            let mut got: BTreeMap<String, u64> = BTreeMap::new();
            for g in &groups {
                for (name, entries) in &g.tables {
                    assert_eq!(name, "rolling-aggregate");
                    for e in entries {
                        let word: String = decode(&e.key).expect("a word");
                        let wc: crate::jobs::wordcount::WordCount =
                            decode(&e.value).expect("a count");
                        got.insert(word, wc.count);
                    }
                }
            }
            if mode == ExactlyOnce {
                assert_eq!(
                    got, expected,
                    "checkpoint {id} at p={parallelism} {backend:?}"
                );
            } else {
                // Unaligned: records after the barrier on one input may be counted too,
                // but none before it is missing.
                for (word, count) in &expected {
                    let counted = got.get(word).copied().unwrap_or(0);
                    assert!(
                        counted >= *count,
                        "checkpoint {id}: '{word}' {counted} < {count}"
                    );
                }
            }
            // Taken while lines still flowed, not before or after.
            assert!(
                0 < emitted && emitted < total,
                "checkpoint {id}: {emitted} lines"
            );
        }
    }
}

/// Checkpoint settings for job `word-count` in `storage`.
fn checkpointing(storage: &CheckpointStorage) -> CheckpointConfig {
    CheckpointConfig {
        interval: Duration::from_millis(100),
        timeout: Duration::from_secs(10),
        min_pause: Duration::ZERO,
        max_concurrent: 1,
        retained: 2,
        storage: storage.clone(),
        options: StorageOptions::default(),
        job_dir: "word-count".into(),
        mode: CheckpointingMode::ExactlyOnce,
        retention: Default::default(),
    }
}

/// Runs job `word-count` of `env` until its first checkpoint has completed, then cancels
/// it; the checkpoint's id and its location (as `--from-checkpoint` takes it).
fn cancel_once_checkpointed(
    env: &StreamEnv,
    storage: &CheckpointStorage,
    url: &str,
) -> (u64, String) {
    let before = block_on(storage.latest("word-count")).expect("reads");
    let job = env.execute_async("word-count").expect("starts");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while block_on(storage.latest("word-count")).expect("reads") <= before {
        assert!(std::time::Instant::now() < deadline, "no checkpoint");
        std::thread::sleep(Duration::from_millis(10));
    }
    job.cancel();
    let _ = job.join();
    let id = block_on(storage.latest("word-count"))
        .expect("reads")
        .expect("a checkpoint");
    (id, format!("{url}/{}", checkpoint_dir("word-count", id)))
}

#[test]
fn a_job_restored_from_a_checkpoint_continues_its_counts_exactly() {
    use crate::checkpoint::restore::RestoredCheckpoint;
    use crate::jobs::wordcount::WordCount;
    use std::sync::{Arc, Mutex};
    let total = HAMLET.len() as u64 * 30;
    // Checkpointed on one backend, restored on the other: the format is the same. An
    // incremental RocksDB checkpoint comes back as files into RocksDB at the same
    // parallelism, and is read entry by entry into the heap or another parallelism.
    for (parallelism, restored_parallelism, first, second) in [
        (1, 1, StateBackend::Heap, StateBackend::Heap),
        (2, 2, StateBackend::Heap, rocksdb()),
        (2, 2, rocksdb(), StateBackend::Heap),
        (2, 2, rocksdb(), rocksdb()),
        (2, 3, rocksdb(), rocksdb()),
    ] {
        let url = format!(
            "memory://restore-{parallelism}-{restored_parallelism}-{}-{}",
            backend_name(&first),
            backend_name(&second)
        );
        let storage = CheckpointStorage::open(&url, &StorageOptions::default()).expect("opens");
        // The first run is cancelled once it has a checkpoint, mid-stream.
        let env = StreamEnv::with_config(ExecutionConfig {
            parallelism,
            checkpointing: Some(checkpointing(&storage)),
            state_backend: first.clone(),
            ..ExecutionConfig::default()
        });
        let lines = env.add_source(
            GeneratorSource::new(generated_line)
                .count(total)
                .rate(1000.0),
            None,
            "Hamlet Lines",
        );
        word_counts(&lines).add_sink(|_| {});
        let (_, location) = cancel_once_checkpointed(&env, &storage, &url);
        let restored = RestoredCheckpoint::open(&location, &StorageOptions::default())
            .expect("the checkpoint opens");
        let at_checkpoint: BTreeMap<String, u64> = keyed_state(&location, "word-counts")
            .iter()
            .flat_map(|g| g.tables.iter().flat_map(|(_, e)| e.iter()))
            .map(|e| {
                let wc: WordCount = decode(&e.value).expect("a count");
                (wc.word, wc.count)
            })
            .collect();

        // The second run starts from it and reads the rest of the lines, at full speed.
        let env = StreamEnv::with_config(ExecutionConfig {
            parallelism: restored_parallelism,
            restore: Some(Arc::new(restored)),
            state_backend: second.clone(),
            ..ExecutionConfig::default()
        });
        let lines = env.add_source(
            GeneratorSource::new(generated_line).count(total),
            None,
            "Hamlet Lines",
        );
        let emitted = Arc::new(Mutex::new(Vec::new()));
        let sink = emitted.clone();
        word_counts(&lines).add_sink(move |wc: WordCount| {
            sink.lock().expect("not poisoned").push(wc);
        });
        env.execute("word-count").expect("the restored job runs");

        // Every word's count goes on from the checkpoint, by one per occurrence, to the
        // count of the whole input: nothing lost, nothing counted twice.
        let mut per_word: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for wc in emitted.lock().expect("not poisoned").iter() {
            per_word.entry(wc.word.clone()).or_default().push(wc.count);
        }
        let mut all: BTreeMap<String, u64> = BTreeMap::new();
        for i in 0..total {
            for w in tokenize(&generated_line(i)) {
                *all.entry(w).or_default() += 1;
            }
        }
        assert!(
            at_checkpoint.values().sum::<u64>() < all.values().sum::<u64>(),
            "the checkpoint was taken mid-stream"
        );
        for (word, total_count) in &all {
            let from = at_checkpoint.get(word).copied().unwrap_or(0);
            let expected: Vec<u64> = (from + 1..=*total_count).collect();
            let mut got = per_word.remove(word).unwrap_or_default();
            got.sort_unstable();
            assert_eq!(
                got, expected,
                "'{word}' at p={parallelism} -> {restored_parallelism}, {first:?} -> {second:?}"
            );
        }
        assert!(per_word.is_empty(), "words nobody wrote: {per_word:?}");
    }
}

#[test]
fn a_damaged_or_incomplete_checkpoint_is_skipped_for_the_one_before_it() {
    use crate::checkpoint::restore::newest_valid_checkpoint;
    let url = "memory://checkpoint-fallback";
    let storage = CheckpointStorage::open(url, &StorageOptions::default()).expect("opens");
    run_with_checkpoints(
        1,
        StateBackend::Heap,
        CheckpointingMode::ExactlyOnce,
        &storage,
    );
    let done = block_on(storage.completed_checkpoints("word-count")).expect("lists");
    assert!(done.len() >= 3, "{done:?}");
    let newest = done[done.len() - 1];
    let keyed_file = |id: u64| {
        let dir = checkpoint_dir("word-count", id);
        let metadata = block_on(read_metadata(&storage, &dir)).expect("metadata");
        let file = metadata
            .operators
            .iter()
            .flat_map(|o| &o.subtasks)
            .find_map(|s| s.keyed_file.clone())
            .expect("keyed state");
        format!("{dir}/{file}")
    };
    assert_eq!(
        block_on(newest_valid_checkpoint(&storage, "word-count")).expect("reads"),
        Some(newest)
    );
    // One byte of the newest checkpoint's state flipped: the one before it is used.
    let path = keyed_file(newest);
    let size = block_on(storage.size(&path)).expect("size");
    let mut bytes = block_on(storage.get_ranges(&path, std::slice::from_ref(&(0..size))))
        .expect("reads")[0]
        .to_vec();
    bytes[20] ^= 0x40;
    block_on(storage.put_raw(&path, bytes)).expect("writes");
    let previous = done[done.len() - 2];
    assert_eq!(
        block_on(newest_valid_checkpoint(&storage, "word-count")).expect("reads"),
        Some(previous)
    );
    // Its state file gone as well: the one before that.
    block_on(storage.delete(&keyed_file(previous))).expect("deletes");
    assert_eq!(
        block_on(newest_valid_checkpoint(&storage, "word-count")).expect("reads"),
        Some(done[done.len() - 3])
    );
}

#[test]
fn incremental_rocksdb_checkpoints_share_files_and_keep_only_what_retained_ones_use() {
    use crate::checkpoint::restore::{newest_valid_checkpoint, verify_checkpoint};
    let url = "memory://checkpoint-incremental";
    let storage = CheckpointStorage::open(url, &StorageOptions::default()).expect("opens");
    run_with_checkpoints(2, rocksdb(), CheckpointingMode::ExactlyOnce, &storage);
    let done = block_on(storage.completed_checkpoints("word-count")).expect("lists");
    assert!(done.len() >= 2, "{done:?}");
    let mut referenced = std::collections::BTreeSet::new();
    let mut reused = 0;
    for id in &done {
        let dir = checkpoint_dir("word-count", *id);
        block_on(verify_checkpoint(&storage, &dir)).expect("every file is there and whole");
        let metadata = block_on(read_metadata(&storage, &dir)).expect("metadata");
        for s in metadata.operators.iter().flat_map(|o| &o.subtasks) {
            let Some(rocks) = &s.rocksdb else { continue };
            let total: u64 = rocks.files.iter().map(|f| f.size).sum();
            assert!(s.keyed_bytes >= total, "{s:?}");
            reused += u64::from(rocks.uploaded_bytes < total);
            for f in &rocks.files {
                assert!(
                    f.path.starts_with("shared/") == f.name.ends_with(".sst"),
                    "{f:?}"
                );
                referenced.insert(format!("word-count/{}", f.path));
            }
        }
    }
    assert!(
        reused > 0,
        "no checkpoint reused a file an earlier one uploaded"
    );
    // Over ten checkpoints were taken and three retained: the files only dropped ones
    // used are gone, and nothing the retained ones use is.
    let shared: std::collections::BTreeSet<String> = block_on(storage.list("word-count/shared"))
        .expect("lists")
        .into_iter()
        .collect();
    let referenced_shared: std::collections::BTreeSet<String> = referenced
        .iter()
        .filter(|p| p.starts_with("word-count/shared/"))
        .cloned()
        .collect();
    assert_eq!(shared, referenced_shared);

    // One of the newest checkpoint's own files damaged: the one before it is used.
    let newest = *done.last().expect("one");
    let metadata = block_on(read_metadata(
        &storage,
        &checkpoint_dir("word-count", newest),
    ))
    .expect("reads");
    let manifest = metadata
        .operators
        .iter()
        .flat_map(|o| &o.subtasks)
        .filter_map(|s| s.rocksdb.as_ref())
        .flat_map(|r| &r.files)
        .find(|f| f.name.starts_with("MANIFEST"))
        .expect("a manifest");
    let path = format!("word-count/{}", manifest.path);
    let mut bytes = block_on(storage.get_ranges(&path, std::slice::from_ref(&(0..manifest.size))))
        .expect("reads")[0]
        .to_vec();
    bytes[0] ^= 0x01;
    block_on(storage.put_raw(&path, bytes)).expect("writes");
    assert_eq!(
        block_on(newest_valid_checkpoint(&storage, "word-count")).expect("reads"),
        Some(done[done.len() - 2])
    );
}

/// Multiplies each number by the sum of the factors in broadcast state, and counts per
/// key in keyed state.
#[derive(Clone)]
struct Scale;

const FACTORS: crate::state::MapStateDescriptor<u64, u64> =
    crate::state::MapStateDescriptor::new("factors");

impl crate::functions::KeyedBroadcastProcessFunction<u64, u64, u64, (u64, u64)> for Scale {
    fn process_element(
        &mut self,
        value: u64,
        ctx: &mut crate::functions::KeyedContext<'_, u64>,
        out: &mut crate::functions::Collector<'_, (u64, u64)>,
    ) {
        let sum: u64 = ctx.broadcast_state(&FACTORS).iter().map(|(_, f)| *f).sum();
        out.collect((value, value * sum));
    }

    fn process_broadcast_element(
        &mut self,
        value: u64,
        ctx: &mut crate::functions::KeyedBroadcastContext<'_, u64>,
        _out: &mut crate::functions::Collector<'_, (u64, u64)>,
    ) {
        ctx.broadcast_state(&FACTORS).put(value, value);
    }
}

#[test]
fn checkpoints_that_never_complete_leave_no_files_behind() {
    // Every checkpoint expires (1 ms to be acknowledged by every subtask): the RocksDB
    // files and state files they uploaded are deleted once the job ended, as are those
    // of a checkpoint still in flight then (seen as a flaky shared-files test).
    let url = "memory://checkpoint-incomplete";
    let storage = CheckpointStorage::open(url, &StorageOptions::default()).expect("opens");
    let config = ExecutionConfig {
        parallelism: 2,
        state_backend: rocksdb(),
        checkpointing: Some(CheckpointConfig {
            interval: Duration::from_millis(20),
            timeout: Duration::from_millis(1),
            ..checkpointing(&storage)
        }),
        ..ExecutionConfig::default()
    };
    let env = StreamEnv::with_config(config);
    let lines = env.add_source(
        GeneratorSource::new(generated_line)
            .count(HAMLET.len() as u64 * 10)
            .rate(1000.0),
        None,
        "Hamlet Lines",
    );
    word_counts(&lines).add_sink(|_| {});
    env.execute("word-count").expect("the job runs");
    assert_eq!(
        block_on(storage.completed_checkpoints("word-count")).expect("lists"),
        Vec::<u64>::new()
    );
    let left = block_on(storage.list("word-count")).expect("lists");
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn broadcast_state_and_ended_sources_are_in_checkpoints_and_come_back() {
    use crate::checkpoint::restore::RestoredCheckpoint;
    use std::sync::{Arc, Mutex};
    let url = "memory://broadcast-restore";
    let storage = CheckpointStorage::open(url, &StorageOptions::default()).expect("opens");
    let numbers = 3000u64;
    let job = |config: ExecutionConfig, rate: Option<f64>| {
        let env = StreamEnv::with_config(config);
        // Factors 1, 2 and 3: a bounded source that ends long before the numbers do.
        let factors = env
            .add_source(GeneratorSource::new(|i| i + 1).count(3), None, "Factors")
            .uid("factors")
            .broadcast_stream();
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = out.clone();
        env.add_source(
            GeneratorSource::new(|i| i).count(numbers).maybe_rate(rate),
            None,
            "Numbers",
        )
        .uid("numbers")
        .key_by(|n: &u64| n % 10)
        .connect_broadcast(&factors)
        .process(Scale)
        .uid("scale")
        .add_sink(move |pair: (u64, u64)| sink.lock().expect("not poisoned").push(pair));
        (env, out)
    };
    let checkpointed = ExecutionConfig {
        parallelism: 2,
        checkpointing: Some(checkpointing(&storage)),
        ..ExecutionConfig::default()
    };
    let (env, first_out) = job(checkpointed, Some(1000.0));
    let first = env.execute_async("word-count").expect("starts");
    // Wait for a checkpoint taken once the factors source has ended and every factor
    // has reached the function (a number scaled by 1 + 2 + 3).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let id = loop {
        let factors_in = first_out
            .lock()
            .expect("not poisoned")
            .iter()
            .any(|(v, s)| *v > 0 && *s == v * 6);
        let latest = block_on(storage.latest("word-count")).expect("reads");
        if let (true, Some(id)) = (factors_in, latest) {
            // One more checkpoint, surely after the factors arrived.
            let next = loop {
                let l = block_on(storage.latest("word-count")).expect("reads");
                if l > Some(id) {
                    break l.expect("a checkpoint");
                }
                assert!(std::time::Instant::now() < deadline, "no later checkpoint");
                std::thread::sleep(Duration::from_millis(20));
            };
            break next;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint with the factors"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    first.cancel();
    let _ = first.join();

    let location = format!("{url}/{}", checkpoint_dir("word-count", id));
    let restored = RestoredCheckpoint::open(&location, &StorageOptions::default()).expect("opens");
    let (env, second_out) = job(
        ExecutionConfig {
            parallelism: 2,
            restore: Some(Arc::new(restored)),
            ..ExecutionConfig::default()
        },
        None,
    );
    env.execute("word-count").expect("the restored job runs");
    let second = second_out.lock().expect("not poisoned").clone();
    // The factors source ended before the checkpoint: it sends nothing again, and the
    // restored broadcast state still scales every number by 6.
    assert!(!second.is_empty());
    assert!(
        second.iter().all(|(v, s)| *s == v * 6),
        "{:?}",
        &second[..5.min(second.len())]
    );
    // The numbers go on exactly where each source subtask's checkpointed position says:
    // none twice, none missing.
    let restored = RestoredCheckpoint::open(&location, &StorageOptions::default()).expect("opens");
    let mut expected = Vec::new();
    let positions = restored.source_positions("numbers").expect("positions");
    assert_eq!(positions.len(), 2);
    for position in positions {
        // The generator's splits left: (next, end, step).
        let splits: Vec<(u64, u64, u64)> =
            decode(&position.expect("recorded")).expect("a generator's splits");
        for (next, end, step) in splits {
            expected.extend((next..end).step_by(step as usize));
        }
    }
    let mut got: Vec<u64> = second.iter().map(|(v, _)| *v).collect();
    got.sort_unstable();
    assert_eq!(got, expected);
    assert!(
        got.len() < numbers as usize,
        "the checkpoint was taken mid-stream"
    );
}

#[test]
fn a_file_source_resumes_at_the_line_its_checkpoint_recorded() {
    use crate::checkpoint::restore::RestoredCheckpoint;
    use crate::connectors::file::FileSource;
    use std::sync::{Arc, Mutex};
    let dir = std::env::temp_dir().join(format!("strom-file-resume-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a directory");
    let lines = 1500usize;
    // Two files, read one after the other by the one reader.
    let text = |range: std::ops::Range<usize>| -> String {
        range.map(|i| format!("line-{i:05}\n")).collect()
    };
    std::fs::write(dir.join("a.txt"), text(0..700)).expect("written");
    std::fs::write(dir.join("b.txt"), text(700..lines)).expect("written");
    let url = "memory://file-resume";
    let storage = CheckpointStorage::open(url, &StorageOptions::default()).expect("opens");
    let job = |config: ExecutionConfig| {
        let env = StreamEnv::with_config(ExecutionConfig {
            batch_size: 16,
            ..config
        });
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = out.clone();
        env.from_source(
            FileSource::lines(&dir),
            crate::time::WatermarkStrategy::no_watermarks(),
            "Lines",
        )
        .uid("lines")
        // Slow enough to checkpoint mid-file.
        .map(|l: String| {
            std::thread::sleep(Duration::from_micros(500));
            l
        })
        .add_sink(move |l: String| sink.lock().expect("not poisoned").push(l));
        (env, out)
    };
    let (env, _) = job(ExecutionConfig {
        checkpointing: Some(checkpointing(&storage)),
        ..ExecutionConfig::default()
    });
    let (_, location) = cancel_once_checkpointed(&env, &storage, url);
    let restored = RestoredCheckpoint::open(&location, &StorageOptions::default()).expect("opens");
    let (env, second) = job(ExecutionConfig {
        restore: Some(Arc::new(restored)),
        ..ExecutionConfig::default()
    });
    env.execute("word-count").expect("the restored job runs");
    let second = second.lock().expect("not poisoned").clone();
    assert!(
        !second.is_empty() && second.len() < lines,
        "{}",
        second.len()
    );
    // Exactly the lines after the checkpoint's position, in order, across both files.
    #[derive(serde::Deserialize)]
    struct Position {
        done: Vec<std::path::PathBuf>,
        current: Option<(std::path::PathBuf, u64, u64)>,
    }
    let restored = RestoredCheckpoint::open(&location, &StorageOptions::default()).expect("opens");
    let position: Position = decode(
        restored.source_positions("lines").expect("positions")[0]
            .as_ref()
            .expect("recorded"),
    )
    .expect("a file position");
    let done_lines: usize = position
        .done
        .iter()
        .map(|p| {
            if p.ends_with("a.txt") {
                700
            } else {
                lines - 700
            }
        })
        .sum();
    let start = done_lines + position.current.map_or(0, |(_, _, line)| line as usize);
    let expected: Vec<String> = (start..lines).map(|i| format!("line-{i:05}")).collect();
    assert_eq!(second, expected);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Numbers each record by how many this instance has seen, counting in operator list
/// state.
#[derive(Clone)]
struct CountSeen;

const SEEN: crate::state::OperatorStateDescriptor<u64> =
    crate::state::OperatorStateDescriptor::list("seen");

impl crate::functions::ProcessFunction<u64, String> for CountSeen {
    fn process_element(
        &mut self,
        value: u64,
        ctx: &mut crate::functions::Context<'_>,
        out: &mut crate::functions::Collector<'_, String>,
    ) {
        let seen = ctx.operator_state().list_state(&SEEN);
        let count = seen.get().first().copied().unwrap_or(0) + 1;
        seen.update(vec![count]);
        out.collect(format!("{value} {count}"));
    }
}

#[test]
fn operator_state_and_exactly_once_files_carry_over_a_cancel_and_restore() {
    use crate::checkpoint::restore::RestoredCheckpoint;
    use crate::connectors::FileSink;
    use std::sync::Arc;
    let url = "memory://exactly-once-restore";
    let storage = CheckpointStorage::open(url, &StorageOptions::default()).expect("opens");
    let output = tempfile::tempdir().expect("a temp dir");
    let numbers = 4000u64;
    let job = |config: ExecutionConfig, rate: Option<f64>| {
        let env = StreamEnv::with_config(config);
        env.add_source(
            GeneratorSource::new(|i| i).count(numbers).maybe_rate(rate),
            None,
            "Numbers",
        )
        .uid("numbers")
        .process(CountSeen)
        .uid("count-seen")
        .sink_to(FileSink::text(output.path()).exactly_once())
        .uid("files");
        env
    };
    let env = job(
        ExecutionConfig {
            parallelism: 2,
            checkpointing: Some(checkpointing(&storage)),
            ..ExecutionConfig::default()
        },
        Some(2000.0),
    );
    let (id, location) = cancel_once_checkpointed(&env, &storage, url);
    let committed = committed_lines(output.path());
    assert!(
        !committed.is_empty() && committed.len() < numbers as usize,
        "checkpoint {id} committed {} lines",
        committed.len()
    );
    let restored = RestoredCheckpoint::open(&location, &StorageOptions::default()).expect("opens");
    let env = job(
        ExecutionConfig {
            parallelism: 2,
            checkpointing: Some(checkpointing(&storage)),
            restore: Some(Arc::new(restored)),
            ..ExecutionConfig::default()
        },
        None,
    );
    env.execute("word-count").expect("the restored job runs");

    // Every number exactly once; and each instance's count went on from the checkpoint
    // (instance s sees the numbers of source s, half of them): every count 1..=2000
    // twice, none more.
    let mut values = Vec::new();
    let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
    for line in committed_lines(output.path()) {
        let (value, count) = line.split_once(' ').expect("two fields");
        values.push(value.parse::<u64>().expect("a number"));
        *counts.entry(count.parse().expect("a count")).or_default() += 1;
    }
    values.sort_unstable();
    assert_eq!(values, (0..numbers).collect::<Vec<_>>());
    let expected: BTreeMap<u64, usize> = (1..=numbers / 2).map(|c| (c, 2)).collect();
    assert_eq!(counts, expected);
    assert!(
        std::fs::read_dir(output.path()).expect("lists").all(|e| !e
            .expect("an entry")
            .file_name()
            .to_string_lossy()
            .starts_with('.')),
        "uncommitted files left"
    );
}

/// The lines of the committed (visible) files in `dir`.
fn committed_lines(dir: &std::path::Path) -> Vec<String> {
    committed_lines_by_file(dir)
        .into_iter()
        .map(|(_, line)| line)
        .collect()
}

/// Counts per key (keyed state), adds the factors it has in broadcast state to each
/// record, and at the end of input reports each key's count from a timer registered at
/// the key's first record only.
#[derive(Clone)]
struct CountWithFactors;

const KEY_COUNT: crate::state::ValueStateDescriptor<u64> =
    crate::state::ValueStateDescriptor::new("count");

/// Event time of the end-of-input timers: after every record.
const REPORT_AT: i64 = 1_000_000_000;

impl crate::functions::KeyedBroadcastProcessFunction<u64, u64, u64, String> for CountWithFactors {
    fn process_element(
        &mut self,
        value: u64,
        ctx: &mut crate::functions::KeyedContext<'_, u64>,
        out: &mut crate::functions::Collector<'_, String>,
    ) {
        let count = ctx.value_state(&KEY_COUNT);
        let n = count.value().unwrap_or(0) + 1;
        count.update(n);
        if n == 1 {
            ctx.timer_service().register_event_time_timer(REPORT_AT);
        }
        let factors: u64 = ctx.broadcast_state(&FACTORS).iter().map(|(_, f)| *f).sum();
        out.collect(format!("record {value} {} {n} {factors}", value % 10));
    }

    fn process_broadcast_element(
        &mut self,
        value: u64,
        ctx: &mut crate::functions::KeyedBroadcastContext<'_, u64>,
        _out: &mut crate::functions::Collector<'_, String>,
    ) {
        ctx.broadcast_state(&FACTORS).put(value, value);
    }

    fn on_timer(
        &mut self,
        _timestamp: i64,
        ctx: &mut crate::functions::KeyedContext<'_, u64>,
        out: &mut crate::functions::Collector<'_, String>,
    ) {
        let key = ctx.current_key();
        let n = ctx.value_state(&KEY_COUNT).value().unwrap_or(0);
        out.collect(format!("timer {key} {n}"));
    }
}

#[test]
fn a_job_rescaled_2_to_4_to_1_through_checkpoints_goes_on_exactly() {
    use crate::checkpoint::restore::RestoredCheckpoint;
    use crate::connectors::FileSink;
    use std::sync::Arc;
    let url = "memory://rescale-2-4-1";
    let storage = CheckpointStorage::open(url, &StorageOptions::default()).expect("opens");
    let output = tempfile::tempdir().expect("a temp dir");
    let numbers = 6000u64;
    let job = |parallelism: usize, restore: Option<&str>, rate: Option<f64>| {
        let env = StreamEnv::with_config(ExecutionConfig {
            parallelism,
            checkpointing: Some(checkpointing(&storage)),
            restore: restore.map(|location| {
                Arc::new(
                    RestoredCheckpoint::open(location, &StorageOptions::default()).expect("opens"),
                )
            }),
            ..ExecutionConfig::default()
        });
        let factors = env
            .add_source(GeneratorSource::new(|i| i + 1).count(3), None, "Factors")
            .uid("factors")
            .broadcast_stream();
        env.add_source(
            GeneratorSource::new(|i| i)
                .count(numbers)
                .maybe_rate(rate)
                .with_timestamps(|i| i as i64),
            None,
            "Numbers",
        )
        .uid("numbers")
        .key_by(|n: &u64| n % 10)
        .connect_broadcast(&factors)
        .process(CountWithFactors)
        .uid("count")
        .sink_to(FileSink::text(output.path()).exactly_once())
        .uid("files");
        env
    };
    // Runs at 2, then 4, each cancelled after a checkpoint; then at 1 to the end.
    let (_, first) = cancel_once_checkpointed(&job(2, None, Some(2000.0)), &storage, url);
    let (second_id, second) =
        cancel_once_checkpointed(&job(4, Some(&first), Some(2000.0)), &storage, url);
    job(1, Some(&second), None)
        .execute("word-count")
        .expect("the last run ends");

    let mut values = Vec::new();
    let mut counts: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    let mut timers = Vec::new();
    for (file, line) in committed_lines_by_file(output.path()) {
        let fields: Vec<&str> = line.split(' ').collect();
        let number = |i: usize| fields[i].parse::<u64>().expect("a number");
        match fields[0] {
            "record" => {
                values.push(number(1));
                counts.entry(number(2)).or_default().push(number(3));
                // The factors source ended in the first run; the runs after it have
                // its state restored on every subtask.
                if !file.starts_with("part-c0-") {
                    assert_eq!(number(4), 6, "{file}: {line}");
                }
            }
            "timer" => {
                // Written by the last run: its files' run is `c<id><6 hex digits>` of the
                // checkpoint it started from.
                let run = file.split('-').nth(1).expect("a run");
                let from = format!("c{second_id}");
                assert!(
                    run.starts_with(&from) && run.len() == from.len() + 6,
                    "{file}: {line}"
                );
                timers.push((number(1), number(2)));
            }
            _ => panic!("{line}"),
        }
    }
    // Every number once; every key counted 1..=600 once across the three runs.
    values.sort_unstable();
    assert_eq!(values, (0..numbers).collect::<Vec<_>>());
    for (key, mut got) in counts {
        got.sort_unstable();
        assert_eq!(got, (1..=numbers / 10).collect::<Vec<_>>(), "key {key}");
    }
    // Timers registered in the first run fire at the end of the last.
    timers.sort_unstable();
    assert_eq!(
        timers,
        (0..10).map(|k| (k, numbers / 10)).collect::<Vec<_>>()
    );
}

/// The lines of the committed (visible) files in `dir`, with their file's name.
fn committed_lines_by_file(dir: &std::path::Path) -> Vec<(String, String)> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir).expect("lists") {
        let entry = entry.expect("an entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("part-") {
            let text = std::fs::read_to_string(entry.path()).expect("reads");
            lines.extend(text.lines().map(|l| (name.clone(), l.to_string())));
        }
    }
    lines
}

#[test]
fn file_sources_rescaled_2_to_3_to_1_read_every_line_once() {
    use crate::checkpoint::restore::RestoredCheckpoint;
    use crate::connectors::FileSink;
    use crate::connectors::file::FileSource;
    use std::sync::Arc;
    let input = tempfile::tempdir().expect("a temp dir");
    let output = tempfile::tempdir().expect("a temp dir");
    let (files, per_file) = (5usize, 400usize);
    for f in 0..files {
        let text: String = (0..per_file).map(|i| format!("{f}-{i:04}\n")).collect();
        std::fs::write(input.path().join(format!("{f}.txt")), text).expect("written");
    }
    let url = "memory://file-rescale";
    let storage = CheckpointStorage::open(url, &StorageOptions::default()).expect("opens");
    let job = |parallelism: usize, restore: Option<&str>, slow: bool| {
        let env = StreamEnv::with_config(ExecutionConfig {
            parallelism,
            batch_size: 16,
            checkpointing: Some(checkpointing(&storage)),
            restore: restore.map(|location| {
                Arc::new(
                    RestoredCheckpoint::open(location, &StorageOptions::default()).expect("opens"),
                )
            }),
            ..ExecutionConfig::default()
        });
        env.from_source(
            FileSource::lines(input.path()),
            crate::time::WatermarkStrategy::no_watermarks(),
            "Lines",
        )
        .uid("lines")
        // Slow enough to checkpoint mid-file.
        .map(move |l: String| {
            if slow {
                std::thread::sleep(Duration::from_micros(300));
            }
            l
        })
        .sink_to(FileSink::text(output.path()).exactly_once())
        .uid("files");
        env
    };
    let (_, first) = cancel_once_checkpointed(&job(2, None, true), &storage, url);
    let (_, second) = cancel_once_checkpointed(&job(3, Some(&first), true), &storage, url);
    job(1, Some(&second), false)
        .execute("word-count")
        .expect("the last run ends");
    let mut got = committed_lines(output.path());
    got.sort();
    let mut expected: Vec<String> = (0..files)
        .flat_map(|f| (0..per_file).map(move |i| format!("{f}-{i:04}")))
        .collect();
    expected.sort();
    assert_eq!(got.len(), expected.len());
    assert_eq!(got, expected);
}

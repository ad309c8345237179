//! RocksDB holds keyed state far beyond its memory budget: a job writes about 1 GiB of
//! incompressible state under a 64 MiB budget, reads every entry back intact, and the
//! process's peak memory stays a fraction of the state (this test has its own process,
//! so the peak is this job's).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::TempDir;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use strom::prelude::*;
use strom::state::{RocksDbConfig, StateBackend};

const KEYS: u64 = 1 << 20;
const VALUE_BYTES: usize = 1024;
const BLOB: ValueStateDescriptor<serde_bytes::ByteBuf> = ValueStateDescriptor::new("blob");

/// Bytes no compressor can shrink, the same for a key every time.
fn blob(key: u64) -> Vec<u8> {
    let mut x = key.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..VALUE_BYTES)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Record `i < KEYS` writes key `i`'s blob; record `KEYS + i` reads it back and reports
/// whether it is intact.
#[derive(Clone)]
struct WriteThenCheck;

impl KeyedProcessFunction<u64, u64, bool> for WriteThenCheck {
    fn process_element(
        &mut self,
        i: u64,
        ctx: &mut KeyedContext<'_, u64>,
        out: &mut Collector<'_, bool>,
    ) {
        let key = ctx.current_key();
        let state = ctx.value_state(&BLOB);
        if i < KEYS {
            state.update(serde_bytes::ByteBuf::from(blob(key)));
        } else {
            out.collect(state.value().is_some_and(|b| b.into_vec() == blob(key)));
        }
    }
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// The process's peak resident memory, in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[test]
fn state_well_beyond_the_memory_budget_is_kept_and_read_back() {
    let tmp = TempDir::new("rocksdb-large");
    let state_dir = tmp.path().join("state");
    let budget = 64 << 20;
    let env = StreamEnv::new();
    env.configure(|c| {
        c.state_backend = StateBackend::RocksDb(RocksDbConfig {
            dir: state_dir.clone(),
            memory_budget: budget,
            ..RocksDbConfig::default()
        })
    });
    let checks = env
        .add_source(
            GeneratorSource::new(|i| i).count(2 * KEYS),
            None,
            "Keys twice",
        )
        .key_by(|i: &u64| i % KEYS)
        .process(WriteThenCheck)
        .collect();
    let job = env.execute_async("large state").unwrap();
    // Watch the state grow on disk while the job runs.
    let largest = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (largest, done, state_dir) = (largest.clone(), done.clone(), state_dir.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                largest.fetch_max(dir_size(&state_dir), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let result = job.join();
    done.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    result.unwrap();

    let checks = checks.values();
    assert_eq!(checks.len() as u64, KEYS);
    assert!(checks.iter().all(|ok| *ok), "a blob came back damaged");
    let state = KEYS * VALUE_BYTES as u64;
    let on_disk = largest.load(Ordering::Relaxed);
    let peak = peak_rss();
    eprintln!(
        "state {} MiB, largest on disk {} MiB, budget {} MiB, peak RSS {} MiB",
        state >> 20,
        on_disk >> 20,
        budget >> 20,
        peak >> 20
    );
    assert!(
        on_disk > state * 3 / 4,
        "the state never reached disk: {on_disk} bytes"
    );
    assert!(
        peak < state / 2,
        "peak memory {} MiB for {} MiB of state",
        peak >> 20,
        state >> 20
    );
    // The instance's directory goes with the job.
    assert_eq!(dir_size(&state_dir), 0);
}

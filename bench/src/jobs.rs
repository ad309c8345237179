//! Jobs the benchmarks run in processes of their own (a master and workers, or pods):
//! registered in `strom-bench`'s registry and in `strom-bench-jobs`, the `strom` command
//! line with these jobs added.
//!
//! `large-state` holds `keys × value-bytes` of keyed state (1 GB by default) and rewrites
//! `rate` keys a second; its sink prints `first-output <ms since the epoch>` on standard
//! output when a sink subtask emits its first record, which is how the harnesses tell
//! that a restored job runs again.

use strom::{ArgSpec, JobArgs, JobRegistry, JobSpec};

const ARGS: &[ArgSpec] = &[
    ArgSpec::new("keys", "1000000", "distinct keys"),
    ArgSpec::new("value-bytes", "1000", "bytes of state per key"),
    ArgSpec::new("rate", "100000", "records per second, over all subtasks"),
];

const BLOB: strom::prelude::ValueStateDescriptor<serde_bytes::ByteBuf> =
    strom::prelude::ValueStateDescriptor::new("blob");

/// Bytes a compressor cannot shrink, different for every record.
fn blob(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Each record replaces its key's value with new bytes, and is passed on.
#[derive(Clone)]
struct Replace {
    value_bytes: usize,
}

impl strom::prelude::KeyedProcessFunction<u64, u64, u64> for Replace {
    fn process_element(
        &mut self,
        i: u64,
        ctx: &mut strom::prelude::KeyedContext<'_, u64>,
        out: &mut strom::prelude::Collector<'_, u64>,
    ) {
        ctx.value_state(&BLOB)
            .update(serde_bytes::ByteBuf::from(blob(i, self.value_bytes)));
        out.collect(i);
    }
}

/// An endless stream over `keys` keys, each record rewriting its key's state.
fn large_state(env: &strom::prelude::StreamEnv, args: &JobArgs) -> anyhow::Result<()> {
    use strom::prelude::*;
    let keys = args.u64("keys")?.max(1);
    let value_bytes = args.u64("value-bytes")? as usize;
    let rate = args.u64("rate")?.max(1) as f64;
    let mut printed = false;
    env.add_source(GeneratorSource::new(|i| i).rate(rate), None, "Records")
        .uid("records")
        .key_by(move |i: &u64| i % keys)
        .process(Replace { value_bytes })
        .uid("state")
        .add_sink(move |_: u64| {
            if !printed {
                printed = true;
                println!("first-output {}", now_ms());
            }
        });
    Ok(())
}

/// Adds the benchmarks' jobs to a registry.
pub fn register(registry: &mut JobRegistry) {
    registry.register(JobSpec {
        name: "large-state",
        summary: "an endless keyed stream that rewrites keys × value-bytes of state",
        args: ARGS,
        build: large_state,
    });
}

/// Milliseconds since the Unix epoch (comparable across processes).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

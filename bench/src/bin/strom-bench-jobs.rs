//! `strom-bench-jobs`: the `strom` command line (`run`, `master`, `worker`, …) with the
//! benchmarks' jobs (`strom_bench::jobs`) added to the built-in ones. The pods of
//! `strom-bench k8s-upgrade` run it, as a team's own image would run its own binary.

use std::process::ExitCode;

// The allocator of Strom's own binaries (see `strom::MiMalloc`).
#[global_allocator]
static ALLOCATOR: strom::MiMalloc = strom::MiMalloc;

fn main() -> ExitCode {
    let mut registry = strom::JobRegistry::builtin();
    strom_bench::jobs::register(&mut registry);
    strom::main(registry)
}

//! The `strom` binary: the command line with the built-in jobs.

#[global_allocator]
static ALLOCATOR: strom::MiMalloc = strom::MiMalloc;

fn main() -> std::process::ExitCode {
    strom::cli::main_with_builtin_jobs()
}

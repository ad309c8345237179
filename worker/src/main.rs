//! The `strom` binary: the command line with the built-in jobs.

fn main() -> std::process::ExitCode {
    strom::cli::main_with_builtin_jobs()
}

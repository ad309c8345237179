//! The `strom` binary.

fn main() {
    std::process::exit(strom::cli::main_with_builtin_jobs());
}

//! Command line (filled in below).
pub fn main_with_builtin_jobs() -> i32 { 0 }

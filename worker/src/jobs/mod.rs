//! Built-in jobs.

//! Jobs by name: the registry every Strom process builds its job from, the typed
//! `--arg key=value` options of each job, and the jobs built into the `strom` binary.
//!
//! A job is a function that adds sources, transformations and sinks to a `StreamEnv`
//! from its arguments. Builders must be deterministic: every process of a distributed
//! job builds the same graph from `(job name, args)` (DESIGN.md §3).

pub mod args;
pub mod fraud;
pub mod kafka_args;
pub mod model_serving;
pub mod produce;
pub mod sensors;
pub mod user_behavior;
pub mod wordcount;

pub use args::{ArgError, ArgSpec, JobArgs};

use crate::api::StreamEnv;

/// Builds a job into an environment.
pub type BuildFn = fn(&StreamEnv, &JobArgs) -> anyhow::Result<()>;

/// A job the binary can run.
#[derive(Clone)]
pub struct JobSpec {
    /// The name on the command line (`strom run <name>`).
    pub name: &'static str,
    /// One line for `strom jobs`.
    pub summary: &'static str,
    /// The `--arg` options it accepts, with defaults.
    pub args: &'static [ArgSpec],
    pub build: BuildFn,
}

/// The jobs a binary knows.
#[derive(Clone, Default)]
pub struct JobRegistry {
    jobs: Vec<JobSpec>,
}

impl JobRegistry {
    /// An empty registry (for binaries with only their own jobs).
    pub fn new() -> Self {
        JobRegistry { jobs: Vec::new() }
    }

    /// The jobs built into `strom`.
    pub fn builtin() -> Self {
        let mut r = JobRegistry::new();
        for spec in builtin_jobs() {
            r.register(spec);
        }
        r
    }

    /// Adds a job; a later job with the same name replaces an earlier one.
    pub fn register(&mut self, spec: JobSpec) -> &mut Self {
        self.jobs.retain(|j| j.name != spec.name);
        self.jobs.push(spec);
        self
    }

    pub fn find(&self, name: &str) -> Option<&JobSpec> {
        self.jobs.iter().find(|j| j.name == name)
    }

    pub fn jobs(&self) -> &[JobSpec] {
        &self.jobs
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.jobs.iter().map(|j| j.name).collect()
    }
}

fn builtin_jobs() -> Vec<JobSpec> {
    let mut jobs = Vec::new();
    jobs.extend(fraud::jobs());
    jobs.extend(wordcount::jobs());
    jobs.extend(sensors::jobs());
    jobs.extend(model_serving::jobs());
    jobs.extend(user_behavior::jobs());
    jobs
}

/// Unreadable input lines and records: to `<output>/<dir>`, or standard error.
pub(crate) fn write_dead_letters<T: crate::record::Data>(
    stream: &crate::api::DataStream<T>,
    output: Option<&std::path::Path>,
    dir: &str,
) {
    let letters = stream
        .side_output(&crate::source::dead_letter_tag())
        .map(|d: crate::source::DeadLetter| {
            format!(
                "dead letter at {}: {} (line: {:?})",
                d.position, d.error, d.payload
            )
        })
        .name("Dead Letters");
    match output {
        Some(path) => letters
            .write_as_text(std::path::PathBuf::from(path).join(dir))
            .name("Dead Letters to Files"),
        None => letters.print_to_err().name("Print Dead Letters"),
    };
}

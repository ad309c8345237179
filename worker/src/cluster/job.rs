//! A job as the master sends it to workers: its name, arguments and settings, from which
//! every process builds and plans the same graph.

use crate::api::StreamEnv;
use crate::config::{ExecutionConfig, RuntimeMode};
use crate::graph::StreamGraph;
use crate::graph::plan::Plan;
use crate::jobs::{JobArgs, JobRegistry};
use serde::{Deserialize, Serialize};

/// What to run: a job of the binary's registry, its `--arg key=value` arguments, and the
/// settings `strom run` also takes. As JSON (the body of `POST /v1/jobs`) only `name` is
/// required; the rest default as `strom run`'s flags do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSubmission {
    pub name: String,
    /// `key=value` each.
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default = "default_parallelism")]
    pub parallelism: usize,
    #[serde(default = "default_max_parallelism")]
    pub max_parallelism: usize,
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Batch runtime mode (final results of bounded input) instead of streaming.
    #[serde(default)]
    pub batch_mode: bool,
}

fn default_parallelism() -> usize {
    1
}

fn default_max_parallelism() -> usize {
    crate::keygroup::DEFAULT_MAX_PARALLELISM
}

fn default_batch_size() -> usize {
    ExecutionConfig::default().batch_size
}

impl JobSubmission {
    pub(crate) fn config(&self) -> ExecutionConfig {
        ExecutionConfig {
            parallelism: self.parallelism,
            max_parallelism: self.max_parallelism,
            batch_size: self.batch_size.max(1),
            runtime_mode: if self.batch_mode {
                RuntimeMode::Batch
            } else {
                RuntimeMode::Streaming
            },
            ..ExecutionConfig::default()
        }
    }

    /// Builds and plans the job, as every process of it does.
    pub(crate) fn plan(
        &self,
        registry: &JobRegistry,
    ) -> Result<(StreamGraph, Plan, ExecutionConfig), String> {
        if self.parallelism == 0 {
            return Err("parallelism is 0: a job needs at least 1".into());
        }
        let spec = registry.find(&self.name).ok_or_else(|| {
            format!(
                "unknown job '{}'; this binary's jobs are: {}",
                self.name,
                registry.names().join(", ")
            )
        })?;
        let args = JobArgs::parse(spec.name, spec.args, &self.args).map_err(|e| e.to_string())?;
        let env = StreamEnv::with_config(self.config());
        (spec.build)(&env, &args).map_err(|e| format!("{e:#}"))?;
        env.plan_job().map_err(|e| e.to_string())
    }
}

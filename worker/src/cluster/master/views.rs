//! What the REST API shows of the master's jobs and workers (`/v1/jobs`, `/v1/workers`).

use super::JobStatus;
use super::job_run::JobRun;
use super::state::State;
use std::time::Instant;

/// A job as the REST API shows it (`GET /v1/jobs/{id}`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct JobView {
    pub id: String,
    pub name: String,
    pub state: JobStatus,
    /// Milliseconds since the Unix epoch.
    pub start_time_ms: u64,
    pub duration_ms: u64,
    pub restarts: u32,
    /// Why the last attempt failed, if one did.
    pub failure: Option<String>,
    pub vertices: Vec<VertexView>,
}

/// One task vertex (a chain of operators) of a job.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VertexView {
    pub index: u32,
    pub name: String,
    pub parallelism: usize,
    /// Each subtask's worker and state, while deployed.
    pub subtasks: Vec<SubtaskView>,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SubtaskView {
    pub subtask: u32,
    pub worker: String,
    pub state: String,
}

/// A worker as the REST API shows it (`GET /v1/workers`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WorkerView {
    pub id: String,
    pub data_address: String,
    pub slots: u32,
    /// Slots no job holds.
    pub slots_free: u32,
    /// Subtasks of the jobs' current attempts on this worker.
    pub subtasks: usize,
    pub last_heartbeat_ms_ago: u64,
}

impl JobRun {
    pub(crate) fn view(&self) -> JobView {
        let end = self.ended_at.unwrap_or_else(Instant::now);
        JobView {
            id: self.id.clone(),
            name: self.plan.submission.name.clone(),
            state: self.status,
            start_time_ms: self
                .started
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            duration_ms: end.saturating_duration_since(self.started_at).as_millis() as u64,
            restarts: self.restart.restarts(),
            failure: self.failure.clone(),
            vertices: self
                .plan
                .vertex_names
                .iter()
                .zip(&self.plan.parallelisms)
                .enumerate()
                .map(|(v, (name, &parallelism))| VertexView {
                    index: v as u32,
                    name: name.clone(),
                    parallelism,
                    subtasks: (0..parallelism as u32)
                        .filter_map(|s| {
                            self.tasks.get(&(v as u32, s)).map(|(w, st)| SubtaskView {
                                subtask: s,
                                worker: w.clone(),
                                state: st
                                    .as_str_name()
                                    .trim_start_matches("TASK_STATE_")
                                    .to_string(),
                            })
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

impl State {
    pub(crate) fn worker_views(&self) -> Vec<WorkerView> {
        self.workers
            .iter()
            .map(|w| WorkerView {
                id: w.id.clone(),
                data_address: w.data_address.clone(),
                slots: w.slots,
                slots_free: w
                    .slots
                    .saturating_sub(self.jobs.iter().map(|j| j.slots_on(&w.id)).sum()),
                subtasks: self
                    .jobs
                    .iter()
                    .filter(|j| !j.ended())
                    .map(|j| j.tasks.values().filter(|(id, _)| *id == w.id).count())
                    .sum(),
                last_heartbeat_ms_ago: w.last_heard.elapsed().as_millis() as u64,
            })
            .collect()
    }
}

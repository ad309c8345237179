//! What the REST API shows of the master's job and workers (`/v1/jobs`, `/v1/workers`).

use super::{JobStatus, State};
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
    /// Subtasks of the current attempt on this worker.
    pub subtasks: usize,
    pub last_heartbeat_ms_ago: u64,
}

impl State {
    pub(crate) fn job_view(&self) -> JobView {
        let end = self.ended_at.unwrap_or_else(Instant::now);
        JobView {
            id: self.job_id.clone(),
            name: self.job.name.clone(),
            state: self.status,
            start_time_ms: self
                .started
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            duration_ms: end.saturating_duration_since(self.started_at).as_millis() as u64,
            restarts: self.restart.restarts(),
            failure: self.failure.clone(),
            vertices: self
                .vertex_names
                .iter()
                .zip(&self.parallelisms)
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

    pub(crate) fn worker_views(&self) -> Vec<WorkerView> {
        self.workers
            .iter()
            .map(|w| WorkerView {
                id: w.id.clone(),
                data_address: w.data_address.clone(),
                slots: w.slots,
                subtasks: self.tasks.values().filter(|(id, _)| *id == w.id).count(),
                last_heartbeat_ms_ago: w.last_heard.elapsed().as_millis() as u64,
            })
            .collect()
    }
}

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
    /// The run (`strom master --run-id`) this job is, if it was given one.
    #[serde(default)]
    pub run_id: Option<String>,
    /// Where the savepoint went of the stop-with-savepoint that ended the job (its state
    /// is then `Finished`); none for a job that ended otherwise or runs.
    #[serde(default)]
    pub savepoint: Option<String>,
    /// The newest completed checkpoint of the job (as `--from-checkpoint` takes it), or
    /// the checkpoint of its directory it started from while none completed since.
    #[serde(default)]
    pub last_checkpoint: Option<String>,
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
        // A job that ended in an earlier process of its run shows its recorded times.
        let (duration_ms, restarts) = match &self.recorded {
            Some(r) => (r.end_time_ms.saturating_sub(r.start_time_ms), r.restarts),
            None => (
                end.saturating_duration_since(self.started_at).as_millis() as u64,
                self.restart.restarts(),
            ),
        };
        JobView {
            id: self.id.clone(),
            name: self.plan.submission.name.clone(),
            state: self.status,
            start_time_ms: self
                .started
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            duration_ms,
            restarts,
            failure: self.failure.clone(),
            run_id: self.run_id.clone(),
            savepoint: self.stop_savepoint().map(String::from),
            last_checkpoint: self.last_checkpoint(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_view_from_a_master_without_runs_still_reads() {
        // What a master before run ids answered: the new fields are simply absent.
        let old = serde_json::json!({
            "id": "word-count-1", "name": "word-count", "state": "Running",
            "start_time_ms": 1, "duration_ms": 2, "restarts": 0, "failure": null,
            "vertices": []
        });
        let view: JobView = serde_json::from_value(old).expect("reads");
        assert_eq!(
            (view.run_id, view.savepoint, view.last_checkpoint),
            (None, None, None)
        );
    }
}

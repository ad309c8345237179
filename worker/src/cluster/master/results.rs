//! The job result store (Flink's `JobResultStore`): when the job of an application-mode
//! master with a run id (`strom master <job> --run-id <id>`) ends — finished, failed,
//! cancelled, or stopped with a savepoint — the master writes how it ended to
//! `<job dir>/results/<run-id>.json` in the job's checkpoint storage before it exits or
//! goes on serving its REST API. A master started again with the same run id finds it
//! and shows that result instead of running the job again: Kubernetes restarts a pod
//! whose process exits, and a job stopped for an upgrade must not run twice.
//!
//! The file is JSON sealed like every checkpoint file (`checkpoint::sealed`: an 8-byte
//! `STROM` header before it, a CRC-32 after it). Checkpoint retention and
//! delete-on-cancellation never touch `results/`.

use super::{JobOutcome, JobStatus};
use crate::checkpoint::storage::{CheckpointStorage, StorageError, join};
use std::time::Duration;

/// The version of the result layout; a reader refuses others with a clear message.
pub const RESULT_FORMAT: u32 = 1;

/// How one run of a job ended, as `results/<run-id>.json` holds it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JobResult {
    pub format: u32,
    pub run_id: String,
    /// The job's id in the master that ran it (`GET /v1/jobs/{id}`); a master that finds
    /// the result shows the job under the same id.
    pub job_id: String,
    /// The job's name (its directory in the checkpoint storage).
    pub job: String,
    /// `Finished` (also after a stop-with-savepoint), `Failed` or `Cancelled`.
    pub state: JobStatus,
    /// Where the savepoint of the stop-with-savepoint that ended the job went.
    #[serde(default)]
    pub savepoint: Option<String>,
    /// The request id of that stop (`GET /v1/jobs/{id}/savepoints/{request}`).
    #[serde(default)]
    pub savepoint_request: Option<u64>,
    /// Why the job failed, or why its last attempt did.
    #[serde(default)]
    pub failure: Option<String>,
    /// The newest completed checkpoint of the run (or the one it was restored from).
    #[serde(default)]
    pub last_checkpoint: Option<String>,
    #[serde(default)]
    pub restarts: u32,
    /// Milliseconds since the Unix epoch.
    pub start_time_ms: u64,
    pub end_time_ms: u64,
}

impl JobResult {
    /// The outcome the master reports for the job (its exit code in `--after-job-end
    /// exit`).
    pub fn outcome(&self) -> JobOutcome {
        match self.state {
            JobStatus::Failed => JobOutcome::Failed(
                self.failure
                    .clone()
                    .unwrap_or_else(|| "the job failed".to_string()),
            ),
            JobStatus::Cancelled => JobOutcome::Cancelled,
            _ => JobOutcome::Finished {
                ran_for: Duration::from_millis(self.end_time_ms.saturating_sub(self.start_time_ms)),
            },
        }
    }
}

/// Where the result of run `run_id` of the job in `job_dir` is, relative to the
/// storage root.
pub(crate) fn result_path(job_dir: &str, run_id: &str) -> String {
    join(
        job_dir.trim_end_matches('/'),
        &format!("results/{run_id}.json"),
    )
}

/// Checks a run id: it names a file, so letters, digits, `.`, `_` and `-` only.
pub fn check_run_id(run_id: &str) -> Result<(), String> {
    let fine = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if run_id.is_empty() || run_id.len() > 128 || !run_id.chars().all(fine) {
        return Err(format!(
            "--run-id '{run_id}': give 1 to 128 letters, digits, '.', '_' or '-' (it names \
             the run's result file, results/<run-id>.json)"
        ));
    }
    if run_id.chars().all(|c| c == '.') {
        return Err(format!(
            "--run-id '{run_id}': a run id of dots only cannot name a file; use letters or digits"
        ));
    }
    Ok(())
}

/// The result of run `run_id` of the job in `job_dir`, if it ended already.
pub(crate) async fn read_result(
    storage: &CheckpointStorage,
    job_dir: &str,
    run_id: &str,
) -> Result<Option<JobResult>, String> {
    let path = result_path(job_dir, run_id);
    let fix = format!(
        "delete {}/{path} to run the job again under this run id, or start the master with \
         another --run-id",
        storage.url().trim_end_matches('/')
    );
    let bytes = match storage.get(&path).await {
        Ok(bytes) => bytes,
        Err(StorageError::NotFound { .. }) => return Ok(None),
        Err(e @ StorageError::Corrupt { .. }) => return Err(format!("{e}; {fix}")),
        Err(e) => {
            return Err(format!(
                "cannot tell whether run '{run_id}' ended already: {e}"
            ));
        }
    };
    let result: JobResult = serde_json::from_slice(&bytes).map_err(|e| {
        format!("the result of run '{run_id}' ({path}) is not readable: {e}; {fix}")
    })?;
    if result.format != RESULT_FORMAT {
        return Err(format!(
            "the result of run '{run_id}' ({path}) has format {}, not the one this binary \
             reads ({RESULT_FORMAT}); {fix}",
            result.format
        ));
    }
    if !matches!(
        result.state,
        JobStatus::Finished | JobStatus::Failed | JobStatus::Cancelled
    ) {
        return Err(format!(
            "the result of run '{run_id}' ({path}) says {:?}, which is not how a job ends; {fix}",
            result.state
        ));
    }
    Ok(Some(result))
}

/// Writes `result` for its run, replacing what was there.
pub(crate) async fn write_result(
    storage: &CheckpointStorage,
    job_dir: &str,
    result: &JobResult,
) -> Result<(), StorageError> {
    let json = serde_json::to_vec_pretty(result).unwrap_or_default();
    storage
        .put(&result_path(job_dir, &result.run_id), &json)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::storage::StorageOptions;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(f)
    }

    fn result(state: JobStatus) -> JobResult {
        JobResult {
            format: RESULT_FORMAT,
            run_id: "r1".into(),
            job_id: "word-count-1".into(),
            job: "word-count".into(),
            state,
            savepoint: Some("file:///sp/savepoint-word-count-7".into()),
            savepoint_request: Some(2),
            failure: None,
            last_checkpoint: Some("file:///c/word-count/chk-6".into()),
            restarts: 0,
            start_time_ms: 1_000,
            end_time_ms: 4_500,
        }
    }

    #[test]
    fn a_result_comes_back_and_a_missing_one_is_none() {
        let storage =
            CheckpointStorage::open("memory://results-roundtrip", &StorageOptions::default())
                .expect("opens");
        block_on(async {
            assert_eq!(
                read_result(&storage, "word-count", "r1").await,
                Ok(None),
                "no result yet"
            );
            let written = result(JobStatus::Finished);
            write_result(&storage, "word-count", &written)
                .await
                .expect("writes");
            assert_eq!(
                storage.list("word-count/results").await.expect("lists"),
                ["word-count/results/r1.json"]
            );
            let read = read_result(&storage, "word-count", "r1")
                .await
                .expect("reads")
                .expect("is there");
            assert_eq!(read, written);
            assert_eq!(
                read.outcome(),
                JobOutcome::Finished {
                    ran_for: Duration::from_millis(3_500)
                }
            );
            assert_eq!(read_result(&storage, "word-count", "r2").await, Ok(None));
        });
    }

    #[test]
    fn a_damaged_or_strange_result_says_how_to_get_past_it() {
        let storage =
            CheckpointStorage::open("memory://results-damaged", &StorageOptions::default())
                .expect("opens");
        block_on(async {
            storage
                .put_raw("job/results/r1.json", b"{\"state\": \"Finished\"}".to_vec())
                .await
                .expect("writes");
            let e = read_result(&storage, "job", "r1")
                .await
                .expect_err("unsealed");
            assert!(
                e.contains("results/r1.json") && e.contains("another --run-id"),
                "{e}"
            );
            let mut running = result(JobStatus::Running);
            running.job = "job".into();
            write_result(&storage, "job", &running)
                .await
                .expect("writes");
            let e = read_result(&storage, "job", "r1")
                .await
                .expect_err("not an end");
            assert!(e.contains("Running") && e.contains("--run-id"), "{e}");
        });
    }

    #[test]
    fn the_outcome_follows_the_state() {
        let mut failed = result(JobStatus::Failed);
        failed.failure = Some("worker w2 was lost".into());
        assert_eq!(
            failed.outcome(),
            JobOutcome::Failed("worker w2 was lost".into())
        );
        assert_eq!(
            result(JobStatus::Cancelled).outcome(),
            JobOutcome::Cancelled
        );
    }

    #[test]
    fn deleting_a_job_s_checkpoints_leaves_its_results() {
        use crate::checkpoint::CheckpointConfig;
        use crate::checkpoint::coordinator::delete_checkpoints;
        let options = StorageOptions::default();
        let storage = CheckpointStorage::open("memory://results-kept", &options).expect("opens");
        let config = CheckpointConfig {
            interval: Duration::from_millis(10),
            timeout: Duration::from_secs(60),
            min_pause: Duration::ZERO,
            max_concurrent: 1,
            retained: 1,
            storage: storage.clone(),
            options,
            job_dir: "word-count".into(),
            mode: Default::default(),
            retention: Default::default(),
        };
        block_on(async {
            storage
                .put("word-count/chk-3/_metadata", b"{}")
                .await
                .expect("writes");
            storage.set_latest("word-count", 3).await.expect("writes");
            write_result(&storage, "word-count", &result(JobStatus::Cancelled))
                .await
                .expect("writes");
            delete_checkpoints(&config).await.expect("deletes");
            assert_eq!(
                storage.list("word-count").await.expect("lists"),
                ["word-count/results/r1.json"]
            );
        });
    }

    #[test]
    fn run_ids_must_name_a_file() {
        for good in ["r1", "v2.3.0-7", "upgrade_2024-05-01"] {
            assert_eq!(check_run_id(good), Ok(()), "{good}");
        }
        for bad in ["", "a/b", "..", "r 1", &"x".repeat(129)] {
            let e = check_run_id(bad).expect_err(bad);
            assert!(e.contains("--run-id"), "{e}");
        }
    }
}

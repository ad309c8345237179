//! The operator's client of a master's REST API (DESIGN.md §5): what the job does, stop
//! with a savepoint, savepoints, their status, and disposing of old ones. Every call has
//! a short timeout: a master that does not answer is "unreachable", which the lifecycle
//! knows how to wait for.

use crate::lifecycle::{JobState, MasterState, ObservedJob, RequestState};
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use std::time::Duration;

/// How long one call to a master may take.
const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct MasterClient {
    http: Client<HttpConnector, Full<Bytes>>,
}

impl Default for MasterClient {
    fn default() -> Self {
        Self::new()
    }
}

impl MasterClient {
    pub fn new() -> Self {
        MasterClient {
            http: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// The master at `base` (e.g. `http://10.0.0.7:8081`) and its job.
    pub async fn observe(&self, base: &str) -> MasterState {
        match self.call(base, Method::GET, "/v1/jobs", None).await {
            Ok((StatusCode::OK, body)) => match body.get("jobs").and_then(Value::as_array) {
                // An application-mode master has its one job; the newest if ever more.
                Some(jobs) => jobs
                    .last()
                    .map_or(MasterState::NoJob, |j| MasterState::Job(parse_job(j))),
                None => MasterState::Unreachable(format!("GET {base}/v1/jobs answered {body}")),
            },
            Ok((status, body)) => MasterState::Unreachable(format!(
                "GET {base}/v1/jobs answered {status}: {}",
                message(&body)
            )),
            Err(e) => MasterState::Unreachable(e),
        }
    }

    /// How savepoint request `request` of job `job` is doing.
    pub async fn request_state(&self, base: &str, job: &str, request: &str) -> RequestState {
        let path = format!("/v1/jobs/{job}/savepoints/{request}");
        match self.call(base, Method::GET, &path, None).await {
            Ok((StatusCode::OK, body)) => match body.get("status").and_then(Value::as_str) {
                Some("IN_PROGRESS") => RequestState::InProgress,
                Some("COMPLETED") => match body.get("location").and_then(Value::as_str) {
                    Some(location) => RequestState::Completed {
                        location: location.to_string(),
                    },
                    None => RequestState::Unknown,
                },
                Some("FAILED") => RequestState::Failed {
                    failure: body
                        .get("failure")
                        .and_then(Value::as_str)
                        .unwrap_or("no reason given")
                        .to_string(),
                },
                _ => RequestState::Unknown,
            },
            _ => RequestState::Unknown,
        }
    }

    /// `POST /v1/jobs/{job}/stop`: the request id, or why the master refused.
    pub async fn stop_with_savepoint(
        &self,
        base: &str,
        job: &str,
        directory: &str,
    ) -> Result<String, String> {
        self.savepoint(base, &format!("/v1/jobs/{job}/stop"), directory)
            .await
    }

    /// `POST /v1/jobs/{job}/savepoints`: the request id, or why the master refused.
    pub async fn trigger_savepoint(
        &self,
        base: &str,
        job: &str,
        directory: &str,
    ) -> Result<String, String> {
        self.savepoint(base, &format!("/v1/jobs/{job}/savepoints"), directory)
            .await
    }

    /// `POST /v1/savepoint-disposal`: deletes a savepoint the operator no longer keeps.
    pub async fn dispose_savepoint(&self, base: &str, location: &str) -> Result<(), String> {
        let body = json!({ "location": location });
        match self
            .call(base, Method::POST, "/v1/savepoint-disposal", Some(body))
            .await?
        {
            (status, _) if status.is_success() => Ok(()),
            // Gone already (a disposal whose answer was lost): what was asked for holds.
            (StatusCode::NOT_FOUND, _) => Ok(()),
            (status, body) => Err(format!("{status}: {}", message(&body))),
        }
    }

    async fn savepoint(&self, base: &str, path: &str, directory: &str) -> Result<String, String> {
        let body = json!({ "target_directory": directory });
        match self.call(base, Method::POST, path, Some(body)).await? {
            (status, body) if status.is_success() => body
                .get("request_id")
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| format!("POST {path} answered without a request_id: {body}")),
            (status, body) => Err(format!("POST {path}: {status}: {}", message(&body))),
        }
    }

    async fn call(
        &self,
        base: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, Value), String> {
        let url = format!("{}{path}", base.trim_end_matches('/'));
        let mut request = Request::builder().method(method.clone()).uri(&url);
        let bytes = match body {
            Some(json) => {
                request = request.header(http::header::CONTENT_TYPE, "application/json");
                Bytes::from(json.to_string())
            }
            None => Bytes::new(),
        };
        let request = request
            .body(Full::new(bytes))
            .map_err(|e| format!("{method} {url}: {e}"))?;
        let exchange = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|e| format!("{method} {url}: {e}"))?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("{method} {url}: {e}"))?
                .to_bytes();
            let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
            Ok((status, json))
        };
        tokio::time::timeout(TIMEOUT, exchange)
            .await
            .map_err(|_| format!("{method} {url}: no answer within {TIMEOUT:?}"))?
    }
}

/// A job view (`GET /v1/jobs/{id}`) as the lifecycle sees it.
pub fn parse_job(j: &Value) -> ObservedJob {
    let text = |key: &str| j.get(key).and_then(Value::as_str).map(str::to_string);
    let vertices = j
        .get("vertices")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let all_running = !vertices.is_empty()
        && vertices.iter().all(|v| {
            let parallelism = v.get("parallelism").and_then(Value::as_u64).unwrap_or(0);
            let subtasks = v
                .get("subtasks")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            subtasks.len() as u64 == parallelism
                && subtasks.iter().all(|s| {
                    s.get("state")
                        .and_then(Value::as_str)
                        .is_some_and(|st| st.eq_ignore_ascii_case("running"))
                })
        });
    let start_time = j
        .get("start_time_ms")
        .and_then(Value::as_i64)
        .filter(|ms| *ms > 0)
        .and_then(|ms| k8s_openapi::jiff::Timestamp::from_millisecond(ms).ok())
        .map(crate::lifecycle::rfc3339);
    ObservedJob {
        id: text("id").unwrap_or_default(),
        state: JobState::parse(&text("state").unwrap_or_default()),
        all_running,
        run_id: text("run_id"),
        savepoint: text("savepoint"),
        last_checkpoint: text("last_checkpoint"),
        failure: text("failure"),
        start_time,
    }
}

fn message(body: &Value) -> String {
    body.get("message")
        .and_then(Value::as_str)
        .map_or_else(|| body.to_string(), str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_runs_when_every_subtask_of_every_vertex_runs() {
        let mut view = json!({
            "id": "a1", "name": "word-count", "state": "Running", "start_time_ms": 1_800_000_000_000i64,
            "run_id": "0d5e2c1a-2", "vertices": [
                {"index": 0, "name": "source", "parallelism": 2, "subtasks": [
                    {"subtask": 0, "worker": "w1", "state": "RUNNING"},
                    {"subtask": 1, "worker": "w2", "state": "RUNNING"}]},
            ]
        });
        let job = parse_job(&view);
        assert_eq!(job.state, JobState::Running);
        assert!(job.all_running);
        assert_eq!(job.run_id.as_deref(), Some("0d5e2c1a-2"));
        assert_eq!(job.start_time.as_deref(), Some("2027-01-15T08:00:00Z"));
        view["vertices"][0]["subtasks"][1]["state"] = json!("DEPLOYING");
        assert!(!parse_job(&view).all_running);
        view["vertices"][0]["subtasks"] =
            json!([{"subtask": 0, "worker": "w1", "state": "RUNNING"}]);
        assert!(!parse_job(&view).all_running);
    }
}

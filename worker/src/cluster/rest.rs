//! The master's REST API (DESIGN.md §5), JSON under `/v1`, Flink-shaped: what the CLI,
//! the operator and people with `curl` use. Errors are `{"error": code, "message": text}`
//! with a message that says what to do.
//!
//! `/healthz` answers 200 whenever the process serves. `/readyz` answers 200 `ready` only
//! when the master leads (or has no `--leader-lease`) and, in application mode, its job
//! was submitted; otherwise 503 `{"error": "not_ready", "message": why}`: the master
//! Service of a job sends workers and the operator to the leader only. A follower reads
//! like an empty master and refuses every change (`POST`, `PATCH`: 503 `not_leader`).

use crate::cluster::job::JobSubmission;
use crate::cluster::master::{JobStatus, MasterService};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

/// The routes, served on the master's `--rest-bind` address.
pub(crate) fn router(master: MasterService) -> axum::Router {
    axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/v1/overview", get(overview))
        .route("/v1/jobs", get(jobs).post(submit))
        .route("/v1/jobs/{id}", get(job).patch(cancel))
        .route("/v1/jobs/{id}/checkpoints", get(checkpoints))
        .route("/v1/jobs/{id}/savepoints", axum::routing::post(savepoint))
        .route("/v1/jobs/{id}/savepoints/{request}", get(savepoint_status))
        .route("/v1/jobs/{id}/stop", axum::routing::post(stop))
        .route("/v1/workers", get(workers))
        .route("/v1/savepoint-disposal", post(dispose_savepoint))
        .route("/metrics", get(metrics))
        .route_layer(axum::middleware::from_fn_with_state(
            master.clone(),
            leader_only,
        ))
        .fallback(not_found)
        .with_state(master)
}

/// `GET /readyz`: 200 `ready`, or 503 with why not.
async fn readyz(State(master): State<MasterService>) -> Response {
    match master.ready.not_ready() {
        None => "ready".into_response(),
        Some(why) => error(StatusCode::SERVICE_UNAVAILABLE, "not_ready", why),
    }
}

/// Changes (anything but `GET`) are the leader's: a follower that took a job or deleted
/// a savepoint would act beside the leader.
async fn leader_only(
    State(master): State<MasterService>,
    request: axum::extract::Request,
    next: Next,
) -> Response {
    if request.method() != Method::GET
        && request.method() != Method::HEAD
        && !master.ready.leading()
    {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_leader",
            format!(
                "this master follows; send {} {} to the leader (the master Service routes to                  it: only the leader answers /readyz with 200)",
                request.method(),
                request.uri()
            ),
        );
    }
    next.run(request).await
}

fn error(status: StatusCode, code: &str, message: String) -> Response {
    (status, Json(json!({ "error": code, "message": message }))).into_response()
}

fn unknown_job(master: &MasterService, id: &str) -> Response {
    let ids: Vec<String> = master.jobs().into_iter().map(|j| j.id).collect();
    error(
        StatusCode::NOT_FOUND,
        "job_not_found",
        format!(
            "no job '{id}'; the jobs are: {} (GET /v1/jobs)",
            ids.join(", ")
        ),
    )
}

async fn not_found(method: Method, uri: Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        format!(
            "no endpoint {method} {uri}; the API is GET /v1/overview, GET|POST /v1/jobs, \
             GET|PATCH /v1/jobs/{{id}}, GET /v1/jobs/{{id}}/checkpoints, POST \
             /v1/jobs/{{id}}/savepoints, GET \
             /v1/jobs/{{id}}/savepoints/{{request}}, POST /v1/jobs/{{id}}/stop, GET /v1/workers, \
             POST /v1/savepoint-disposal, GET /metrics, /healthz, /readyz"
        ),
    )
}

async fn overview(State(master): State<MasterService>) -> Response {
    let workers = master.workers();
    let jobs = master.jobs();
    let count = |s: JobStatus| jobs.iter().filter(|j| j.state == s).count();
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "workers": workers.len(),
        "slots_total": workers.iter().map(|w| w.slots as u64).sum::<u64>(),
        "slots_free": workers.iter().map(|w| w.slots_free as u64).sum::<u64>(),
        "subtasks": workers.iter().map(|w| w.subtasks).sum::<usize>(),
        "jobs_running": count(JobStatus::Running) + count(JobStatus::Restarting)
            + count(JobStatus::Created) + count(JobStatus::Cancelling),
        "jobs_finished": count(JobStatus::Finished),
        "jobs_failed": count(JobStatus::Failed),
        "jobs_cancelled": count(JobStatus::Cancelled),
    }))
    .into_response()
}

async fn jobs(State(master): State<MasterService>) -> Response {
    Json(json!({ "jobs": master.jobs() })).into_response()
}

/// `POST /v1/jobs` with a `JobSubmission` as JSON: the job is planned at once (a job the
/// binary does not have, or bad arguments, are a 400 naming the field) and runs when the
/// workers offer enough free slots.
async fn submit(State(master): State<MasterService>, body: axum::body::Bytes) -> Response {
    let submission: JobSubmission = match serde_json::from_slice(&body) {
        Ok(s) => s,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!(
                    "the body is not a job submission: {e}; send JSON like {{\"name\": \"word-count\", \
                     \"args\": [\"key=value\"], \"parallelism\": 2}} (also max_parallelism, \
                     batch_size, batch_mode, checkpoints, from_checkpoint, \
                     allow_non_restored_state, state)"
                ),
            );
        }
    };
    match master.submit(submission, false).await {
        Ok(job) => (StatusCode::ACCEPTED, Json(job)).into_response(),
        Err(why) => error(StatusCode::BAD_REQUEST, "invalid_job", why),
    }
}

async fn job(State(master): State<MasterService>, Path(id): Path<String>) -> Response {
    match master.job(&id) {
        Some(job) => Json(job).into_response(),
        None => unknown_job(&master, &id),
    }
}

async fn cancel(State(master): State<MasterService>, Path(id): Path<String>) -> Response {
    match master.cancel(&id) {
        Some(Ok(state)) => (
            StatusCode::ACCEPTED,
            Json(json!({ "id": id, "state": state })),
        )
            .into_response(),
        Some(Err(state)) => error(
            StatusCode::CONFLICT,
            "job_not_running",
            format!("job '{id}' is {state:?} already; only a running job can be cancelled"),
        ),
        None => unknown_job(&master, &id),
    }
}

/// The body of `POST /v1/jobs/{id}/savepoints` and `/stop` (optional).
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SavepointRequestBody {
    /// Where the savepoint goes (a URL or directory); default: `savepoints` in the job's
    /// checkpoint directory.
    #[serde(default)]
    target_directory: Option<String>,
}

fn savepoint_request(master: &MasterService, id: &str, body: &[u8], stop: bool) -> Response {
    let request: SavepointRequestBody = if body.is_empty() {
        SavepointRequestBody::default()
    } else {
        match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    format!(
                        "the body is not a savepoint request: {e}; send {{\"target_directory\": \"s3://bucket/savepoints\"}} or nothing"
                    ),
                );
            }
        }
    };
    match master.request_savepoint(id, request.target_directory, stop) {
        Some(Ok(request)) => (
            StatusCode::ACCEPTED,
            Json(json!({ "request_id": request.to_string() })),
        )
            .into_response(),
        Some(Err(why)) => error(StatusCode::CONFLICT, "savepoint_unavailable", why),
        None => unknown_job(master, id),
    }
}

/// `POST /v1/jobs/{id}/savepoints`: takes a savepoint; its request id.
async fn savepoint(
    State(master): State<MasterService>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    savepoint_request(&master, &id, &body, false)
}

/// `POST /v1/jobs/{id}/stop`: takes a savepoint, then ends the job (Finished).
async fn stop(
    State(master): State<MasterService>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    savepoint_request(&master, &id, &body, true)
}

/// `GET /v1/jobs/{id}/checkpoints`: counts, the one in flight, the latest completed, and
/// every savepoint asked for.
async fn checkpoints(State(master): State<MasterService>, Path(id): Path<String>) -> Response {
    match master.checkpoints(&id) {
        Some(view) => Json(view).into_response(),
        None => unknown_job(&master, &id),
    }
}

/// `GET /v1/jobs/{id}/savepoints/{request}`.
async fn savepoint_status(
    State(master): State<MasterService>,
    Path((id, request)): Path<(String, String)>,
) -> Response {
    if master.job(&id).is_none() {
        return unknown_job(&master, &id);
    }
    match request
        .parse()
        .ok()
        .and_then(|r| master.savepoint_status(&id, r))
    {
        Some(status) => Json(status).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "savepoint_not_found",
            format!(
                "job '{id}' has no savepoint request '{request}' (POST /v1/jobs/{id}/savepoints starts one)"
            ),
        ),
    }
}

/// The body of `POST /v1/savepoint-disposal`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DisposalRequest {
    /// The savepoint's (or checkpoint's) directory, in any form --checkpoint-dir takes.
    location: String,
}

/// `POST /v1/savepoint-disposal` with `{"location": dir}`: deletes that savepoint's
/// files (see `master::disposal`); 200 `{"location", "deleted_files"}`.
async fn dispose_savepoint(
    State(master): State<MasterService>,
    body: axum::body::Bytes,
) -> Response {
    use crate::cluster::master::disposal::DisposalError;
    let request: DisposalRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!(
                    "the body is not a disposal request: {e}; send {{\"location\": \
                     \"s3://bucket/savepoints/savepoint-word-count-7\"}} (location: the \
                     savepoint's directory)"
                ),
            );
        }
    };
    match master.dispose_savepoint(&request.location).await {
        Ok(deleted) => {
            tracing::info!(location = %request.location, deleted_files = deleted, "disposed of a savepoint");
            Json(json!({ "location": request.location, "deleted_files": deleted })).into_response()
        }
        Err(DisposalError::Invalid(why)) => error(StatusCode::BAD_REQUEST, "invalid_location", why),
        Err(DisposalError::NotFound(why)) => {
            error(StatusCode::NOT_FOUND, "savepoint_not_found", why)
        }
        Err(DisposalError::Storage(why)) => {
            error(StatusCode::INTERNAL_SERVER_ERROR, "storage_error", why)
        }
    }
}

async fn workers(State(master): State<MasterService>) -> Response {
    Json(json!({ "workers": master.workers() })).into_response()
}

/// Prometheus text format. Operator counters come with the workers' heartbeats, so they
/// trail the job by up to a heartbeat interval.
async fn metrics(State(master): State<MasterService>) -> Response {
    let workers = master.workers();
    let mut out = String::new();
    out.push_str(
        "# HELP strom_workers Workers attached to the master.\n# TYPE strom_workers gauge\n",
    );
    out.push_str(&format!("strom_workers {}\n", workers.len()));
    out.push_str("# HELP strom_slots Slots the workers offer.\n# TYPE strom_slots gauge\n");
    out.push_str(&format!(
        "strom_slots {}\n",
        workers.iter().map(|w| w.slots as u64).sum::<u64>()
    ));
    out.push_str("# HELP strom_job_restarts_total Restarts of the job.\n# TYPE strom_job_restarts_total counter\n");
    for j in master.jobs() {
        out.push_str(&format!(
            "strom_job_restarts_total{{job=\"{}\"}} {}\n",
            j.id, j.restarts
        ));
    }
    out.push_str("# HELP strom_job_uptime_seconds Time since the job was submitted.\n# TYPE strom_job_uptime_seconds gauge\n");
    for j in master.jobs() {
        out.push_str(&format!(
            "strom_job_uptime_seconds{{job=\"{}\"}} {:.3}\n",
            j.id,
            j.duration_ms as f64 / 1000.0
        ));
    }
    out.push_str(
        "# HELP strom_job_state 1 for the job's current state.\n# TYPE strom_job_state gauge\n",
    );
    for j in master.jobs() {
        out.push_str(&format!(
            "strom_job_state{{job=\"{}\",state=\"{:?}\"}} 1\n",
            j.id, j.state
        ));
    }
    out.push_str(&master.operator_metrics_text());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

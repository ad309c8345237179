//! The command line's side of the master's REST API: `strom list`, `strom status`,
//! `strom cancel`, `strom submit`, `strom savepoint`, `strom stop`. Readable text by default, the API's JSON with `--output json`.

use crate::cluster::master::JobView;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// A blocking client of one master's REST API.
pub struct RestClient {
    base: String,
    runtime: tokio::runtime::Runtime,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl RestClient {
    /// `base` like `http://127.0.0.1:8081`.
    pub fn new(base: &str) -> Result<Self, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let client = Client::builder(TokioExecutor::new()).build_http();
        Ok(RestClient {
            base: base.trim_end_matches('/').to_string(),
            runtime,
            client,
        })
    }

    /// Sends a request without a body; the answer's status and body.
    pub fn raw(&self, method: Method, path: &str) -> Result<(StatusCode, Bytes), String> {
        self.send(method, path, None)
    }

    /// Sends a request, with `body` as JSON if given; the answer's status and body.
    pub fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(StatusCode, Bytes), String> {
        let url = format!("{}{path}", self.base);
        let mut request = Request::builder().method(method.clone()).uri(&url);
        let body = match body {
            Some(json) => {
                request = request.header(http::header::CONTENT_TYPE, "application/json");
                Bytes::from(json.to_string())
            }
            None => Bytes::new(),
        };
        let request = request
            .body(Full::new(body))
            .map_err(|e| format!("{url}: {e}"))?;
        self.runtime.block_on(async {
            let response = self.client.request(request).await.map_err(|e| {
                format!(
                    "cannot reach the master's REST API at {}: {e} (is --rest-url right?)",
                    self.base
                )
            })?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("{method} {url}: {e}"))?
                .to_bytes();
            Ok((status, body))
        })
    }

    /// Sends a request without a body; a JSON body on success, the API's error message
    /// otherwise.
    pub fn call(&self, method: Method, path: &str) -> Result<serde_json::Value, String> {
        self.call_with(method, path, None)
    }

    /// Sends a request, with `body` as JSON if given; a JSON body on success, the API's
    /// error message otherwise.
    pub fn call_with(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value, String> {
        let (status, body) = self.send(method.clone(), path, body)?;
        let value: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| format!("{method} {path}: the answer is not JSON ({e})"))?;
        if status.is_success() {
            Ok(value)
        } else {
            Err(value["message"]
                .as_str()
                .map_or_else(|| format!("{method} {path}: {status}"), String::from))
        }
    }
}

/// `strom list` as text: one line per job.
pub fn jobs_text(jobs: &[JobView]) -> String {
    let mut out = format!(
        "{:<40}  {:<24}  {:<11}  {:>10}  {:>8}\n",
        "ID", "NAME", "STATE", "DURATION", "RESTARTS"
    );
    for j in jobs {
        out.push_str(&format!(
            "{:<40}  {:<24}  {:<11}  {:>9.1}s  {:>8}\n",
            j.id,
            j.name,
            format!("{:?}", j.state),
            j.duration_ms as f64 / 1000.0,
            j.restarts
        ));
    }
    out
}

/// `strom status` as text: the job, then each vertex and where its subtasks run.
pub fn job_text(j: &JobView) -> String {
    let mut out = format!(
        "job       {}\nname      {}\nstate     {:?}\nduration  {:.1}s\nrestarts  {}\n",
        j.id,
        j.name,
        j.state,
        j.duration_ms as f64 / 1000.0,
        j.restarts
    );
    if let Some(f) = &j.failure {
        out.push_str(&format!("failure   {f}\n"));
    }
    if let Some(run) = &j.run_id {
        out.push_str(&format!("run       {run}\n"));
    }
    if let Some(savepoint) = &j.savepoint {
        out.push_str(&format!("savepoint {savepoint}\n"));
    }
    if let Some(checkpoint) = &j.last_checkpoint {
        out.push_str(&format!("checkpoint {checkpoint}\n"));
    }
    for v in &j.vertices {
        out.push_str(&format!("\n{} (parallelism {})\n", v.name, v.parallelism));
        for s in &v.subtasks {
            out.push_str(&format!(
                "  {}/{}  {:<10}  {}\n",
                s.subtask + 1,
                v.parallelism,
                s.state,
                s.worker
            ));
        }
    }
    out
}

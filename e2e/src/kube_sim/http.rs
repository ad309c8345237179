//! The HTTP face: routing Kubernetes API paths to the store, query parameters, content
//! types, responses (objects, lists, `Status` errors) and watch streams.

use super::discovery;
use super::error::{ApiError, ApiResult};
use super::meta::meta_str;
use super::patch::{PatchKind, parse_body};
use super::resources::ResourceType;
use super::selector::{FieldSelector, LabelSelector};
use super::store::{DeleteOpts, Deleted, EventKind, LogEntry, PatchRequest, Store, Sub, WriteCtx};
use super::{RequestKey, Shared};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

fn json_response(code: u16, body: &Value) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn error_response(e: &ApiError) -> Response {
    json_response(e.code, &e.to_status())
}

type Query = HashMap<String, String>;

fn parse_query(uri: &Uri) -> Query {
    uri.query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

fn flag(q: &Query, key: &str) -> bool {
    q.get(key).is_some_and(|v| v == "true" || v == "1")
}

/// A request for objects, as the path names them.
struct Target {
    group: String,
    version: String,
    namespace: Option<String>,
    plural: String,
    name: Option<String>,
    sub: Option<String>,
}

enum Route {
    Text(&'static str),
    Version,
    Api,
    GroupList,
    Group(String),
    Resources(String, String),
    Objects(Target),
    NotFound,
}

fn route(path: &str) -> Route {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (group, version, rest) = match segs.as_slice() {
        ["healthz" | "livez" | "readyz", ..] => return Route::Text("ok"),
        ["version"] => return Route::Version,
        ["api"] => return Route::Api,
        ["apis"] => return Route::GroupList,
        ["apis", g] => return Route::Group(g.to_string()),
        ["api", v] => return Route::Resources(String::new(), v.to_string()),
        ["apis", g, v] => return Route::Resources(g.to_string(), v.to_string()),
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Route::NotFound,
    };
    let owned = |s: Option<&&str>| s.map(|s| s.to_string());
    let target = match rest {
        // `/namespaces/<ns>/<plural>…`, but `/namespaces/<name>/status` is a namespace's
        // subresource.
        ["namespaces", ns, plural, more @ ..]
            if !(more.is_empty() && matches!(*plural, "status" | "finalize")) =>
        {
            Target {
                group: group.into(),
                version: version.into(),
                namespace: Some(ns.to_string()),
                plural: plural.to_string(),
                name: owned(more.first()),
                sub: owned(more.get(1)),
            }
        }
        [plural, more @ ..] => Target {
            group: group.into(),
            version: version.into(),
            namespace: None,
            plural: plural.to_string(),
            name: owned(more.first()),
            sub: owned(more.get(1)),
        },
        [] => return Route::NotFound,
    };
    Route::Objects(target)
}

fn not_found() -> ApiError {
    ApiError::new(
        404,
        "NotFound",
        "the server could not find the requested resource",
    )
}

pub(crate) async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    tracing::debug!(%method, %uri, "kube-sim request");
    match route(uri.path()) {
        Route::Text(t) => t.into_response(),
        Route::Version => json_response(200, &discovery::version()),
        Route::Api => json_response(200, &discovery::api_versions(&shared.address)),
        Route::GroupList => {
            let body = shared.read(|s| discovery::group_list(s.types()));
            json_response(200, &body)
        }
        Route::Group(g) => match shared.read(|s| discovery::group(&g, s.types())) {
            Some(body) => json_response(200, &body),
            None => error_response(&not_found()),
        },
        Route::Resources(g, v) => {
            match shared.read(|s| discovery::resource_list(&g, &v, s.types())) {
                Some(body) => json_response(200, &body),
                None => error_response(&not_found()),
            }
        }
        Route::NotFound => error_response(&not_found()),
        Route::Objects(target) => {
            let query = parse_query(&uri);
            match objects(&shared, &method, &headers, &query, target, &body) {
                Ok(Reply::Json(code, v)) => json_response(code, &v),
                Ok(Reply::Watch(w)) => watch(shared, *w),
                Err(e) => {
                    tracing::debug!(%method, %uri, error = %e, "kube-sim refused");
                    error_response(&e)
                }
            }
        }
    }
}

enum Reply {
    Json(u16, Value),
    Watch(Box<WatchParams>),
}

/// How responses show objects: at the requested version, or only their metadata.
#[derive(Clone)]
struct Present {
    api_version: String,
    metadata_only: bool,
}

impl Present {
    fn object(&self, obj: &Value) -> Value {
        if self.metadata_only {
            return json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
            });
        }
        let mut out = obj.clone();
        if let Some(map) = out.as_object_mut() {
            map.insert("apiVersion".into(), json!(self.api_version));
        }
        out
    }
}

fn verb_of(method: &Method, t: &Target, query: &Query) -> &'static str {
    match (method.as_str(), t.name.is_some()) {
        ("GET", true) => "get",
        ("GET", false) if flag(query, "watch") => "watch",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "unknown",
    }
}

fn manager(query: &Query, headers: &HeaderMap) -> String {
    if let Some(m) = query.get("fieldManager").filter(|m| !m.is_empty()) {
        return m.clone();
    }
    // The real server's default: the user agent up to the first '/'.
    headers
        .get(header::USER_AGENT)
        .and_then(|ua| ua.to_str().ok())
        .and_then(|ua| ua.split('/').next())
        .filter(|s| !s.is_empty())
        .unwrap_or("unknown")
        .to_string()
}

fn objects(
    shared: &Arc<Shared>,
    method: &Method,
    headers: &HeaderMap,
    query: &Query,
    t: Target,
    body: &Bytes,
) -> ApiResult<Reply> {
    let verb = verb_of(method, &t, query);
    let resource = match &t.sub {
        Some(sub) => format!("{}/{sub}", t.plural),
        None => t.plural.clone(),
    };
    shared.count(RequestKey {
        verb: verb.to_string(),
        group: t.group.clone(),
        resource: resource.clone(),
    });
    let rt = shared
        .read(|s| s.resource(&t.group, &t.version, &t.plural))
        .ok_or_else(not_found)?;
    if rt.namespaced && t.namespace.is_none() && t.name.is_some() {
        return Err(not_found());
    }
    if !rt.namespaced && t.namespace.is_some() {
        return Err(not_found());
    }
    let sub = match t.sub.as_deref() {
        None => Sub::Main,
        Some("status") if rt.status => Sub::Status,
        Some("scale") if rt.scale.is_some() => Sub::Scale,
        Some(_) => return Err(not_found()),
    };
    let writes = matches!(
        verb,
        "create" | "update" | "patch" | "delete" | "deletecollection"
    );
    if writes && shared.take_injected_conflict(&t.plural) {
        return Err(ApiError::conflict(
            &rt.group,
            &rt.plural,
            t.name.as_deref().unwrap_or_default(),
        ));
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .unwrap_or_default();
    let present = Present {
        api_version: rt.api_version(&t.version),
        metadata_only: accept.contains("as=PartialObjectMetadata"),
    };
    let namespace = t.namespace.clone().unwrap_or_default();
    let ctx = WriteCtx {
        version: t.version.clone(),
        namespace: namespace.clone(),
        manager: manager(query, headers),
        dry_run: query.get("dryRun").is_some_and(|d| d == "All"),
    };
    let labels = LabelSelector::parse(query.get("labelSelector").map_or("", String::as_str))?;
    let fields = FieldSelector::parse(query.get("fieldSelector").map_or("", String::as_str))?;
    let parse_json = || -> ApiResult<Value> {
        serde_json::from_slice(body)
            .or_else(|_| serde_yaml::from_slice(body))
            .map_err(|e| ApiError::bad_request(format!("error decoding request body: {e}")))
    };

    match (verb, t.name.as_deref()) {
        ("get", Some(name)) => {
            let obj = shared.read(|s| match sub {
                Sub::Scale => s.scale(&rt, &namespace, name),
                _ => s.get(&rt, &namespace, name),
            })?;
            let shown = if sub == Sub::Scale {
                obj
            } else {
                present.object(&obj)
            };
            Ok(Reply::Json(200, shown))
        }
        ("list", None) => {
            let (items, rv) =
                shared.read(|s| s.list(&rt, t.namespace.as_deref(), &labels, &fields));
            let items: Vec<Value> = items.iter().map(|o| present.object(o)).collect();
            let (kind, api_version) = if present.metadata_only {
                (
                    "PartialObjectMetadataList".to_string(),
                    "meta.k8s.io/v1".to_string(),
                )
            } else {
                (format!("{}List", rt.kind), present.api_version.clone())
            };
            Ok(Reply::Json(
                200,
                json!({
                    "kind": kind,
                    "apiVersion": api_version,
                    "metadata": {"resourceVersion": rv.to_string()},
                    "items": items,
                }),
            ))
        }
        ("watch", None) => Ok(Reply::Watch(Box::new(WatchParams {
            rt,
            namespace: t.namespace.clone(),
            labels,
            fields,
            present,
            resource_version: query
                .get("resourceVersion")
                .cloned()
                .filter(|rv| !rv.is_empty()),
            send_initial: flag(query, "sendInitialEvents"),
            bookmarks: flag(query, "allowWatchBookmarks"),
            timeout: query
                .get("timeoutSeconds")
                .and_then(|s| s.parse().ok())
                .map(Duration::from_secs)
                .unwrap_or(Duration::from_secs(1800)),
        }))),
        ("create", None) => {
            if rt.namespaced && t.namespace.is_none() {
                return Err(ApiError::method_not_allowed("create needs a namespace"));
            }
            let obj = shared.write(|s| s.create(&rt, &ctx, parse_json()?))?;
            Ok(Reply::Json(201, present.object(&obj)))
        }
        ("update", Some(name)) => {
            let obj = shared.write(|s| s.replace(&rt, &ctx, name, sub, parse_json()?))?;
            Ok(Reply::Json(
                200,
                if sub == Sub::Scale {
                    obj
                } else {
                    present.object(&obj)
                },
            ))
        }
        ("patch", Some(name)) => {
            let ct = headers
                .get(header::CONTENT_TYPE)
                .and_then(|c| c.to_str().ok())
                .unwrap_or_default();
            let kind = PatchKind::from_content_type(ct)
                .ok_or_else(|| ApiError::unsupported_media_type(ct))?;
            if kind == PatchKind::Apply && !query.contains_key("fieldManager") {
                return Err(ApiError::bad_request(
                    "PATCH, application/apply-patch+yaml requires fieldManager to be set",
                ));
            }
            let patch = parse_body(kind, body)?;
            let force = flag(query, "force");
            let (obj, created) = shared
                .write(|s| s.patch(&rt, &ctx, name, sub, PatchRequest { kind, patch, force }))?;
            let shown = if sub == Sub::Scale {
                obj
            } else {
                present.object(&obj)
            };
            Ok(Reply::Json(if created { 201 } else { 200 }, shown))
        }
        ("delete", Some(name)) => {
            let opts = delete_opts(query, body)?;
            let deleted = shared.write(|s| s.delete(&rt, &namespace, name, &opts))?;
            Ok(Reply::Json(200, deleted_reply(&rt, &present, deleted)))
        }
        ("deletecollection", None) => {
            let opts = delete_opts(query, body)?;
            let (items, _) = shared.read(|s| s.list(&rt, t.namespace.as_deref(), &labels, &fields));
            for item in items {
                let name = meta_str(&item, "name").unwrap_or_default().to_string();
                let ns = meta_str(&item, "namespace").unwrap_or_default().to_string();
                // Gone meanwhile is fine.
                let _ = shared.write(|s| s.delete(&rt, &ns, &name, &opts));
            }
            Ok(Reply::Json(
                200,
                json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}),
            ))
        }
        _ => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({method} {})",
            resource
        ))),
    }
}

fn delete_opts(query: &Query, body: &Bytes) -> ApiResult<DeleteOpts> {
    let mut opts = DeleteOpts {
        propagation: query.get("propagationPolicy").cloned(),
        dry_run: query.get("dryRun").is_some_and(|d| d == "All"),
        ..DeleteOpts::default()
    };
    if flag(query, "orphanDependents") {
        opts.propagation = Some("Orphan".into());
    }
    if body.iter().any(|b| !b.is_ascii_whitespace()) {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding DeleteOptions: {e}")))?;
        if let Some(p) = v.get("propagationPolicy").and_then(Value::as_str) {
            opts.propagation = Some(p.to_string());
        }
        if v.get("orphanDependents").and_then(Value::as_bool) == Some(true) {
            opts.propagation = Some("Orphan".into());
        }
        let pre = v.get("preconditions");
        opts.uid = pre
            .and_then(|p| p.get("uid"))
            .and_then(Value::as_str)
            .map(str::to_string);
        opts.resource_version = pre
            .and_then(|p| p.get("resourceVersion"))
            .and_then(Value::as_str)
            .map(str::to_string);
        if v.get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|d| d.iter().any(|x| x == "All"))
        {
            opts.dry_run = true;
        }
    }
    Ok(opts)
}

/// The real server answers a finished delete with the object for custom resources and
/// pods, and with a success `Status` for other built-ins.
fn deleted_reply(rt: &ResourceType, present: &Present, deleted: Deleted) -> Value {
    match deleted {
        Deleted::Pending(obj) => present.object(&obj),
        Deleted::Gone(obj) if rt.custom || rt.plural == "pods" => present.object(&obj),
        Deleted::Gone(obj) => json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": {
                "name": meta_str(&obj, "name"),
                "group": rt.group,
                "kind": rt.plural,
                "uid": meta_str(&obj, "uid"),
            },
        }),
    }
}

// ---- watch ----

struct WatchParams {
    rt: Arc<ResourceType>,
    namespace: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
    present: Present,
    resource_version: Option<String>,
    send_initial: bool,
    bookmarks: bool,
    timeout: Duration,
}

impl WatchParams {
    fn selects(&self, obj: &Value) -> bool {
        self.labels.matches(obj) && self.fields.matches(obj)
    }

    /// The event a change is for this watch, if any: a change into or out of the
    /// selection is an ADDED or a DELETED.
    fn event_for(&self, e: &LogEntry) -> Option<Value> {
        if self.namespace.as_ref().is_some_and(|ns| *ns != e.namespace) {
            return None;
        }
        let now = self.selects(&e.object);
        let kind = match e.kind {
            EventKind::Added | EventKind::Deleted => now.then_some(e.kind)?,
            EventKind::Modified => {
                let before = e.previous.as_ref().is_none_or(|p| self.selects(p));
                match (before, now) {
                    (true, true) => EventKind::Modified,
                    (true, false) => EventKind::Deleted,
                    (false, true) => EventKind::Added,
                    (false, false) => return None,
                }
            }
        };
        Some(json!({"type": kind.as_str(), "object": self.present.object(&e.object)}))
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Value {
        let (kind, api_version) = if self.present.metadata_only {
            (
                "PartialObjectMetadata".to_string(),
                "meta.k8s.io/v1".to_string(),
            )
        } else {
            (self.rt.kind.clone(), self.present.api_version.clone())
        };
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        json!({"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": api_version, "metadata": metadata}})
    }
}

fn line(v: &Value) -> Bytes {
    let mut s = v.to_string();
    s.push('\n');
    Bytes::from(s)
}

fn watch(shared: Arc<Shared>, params: WatchParams) -> Response {
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    tokio::spawn(watch_task(shared, params, tx));
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn expired(rv: u64, compacted: u64) -> Value {
    let status =
        ApiError::gone(format!("too old resource version: {rv} ({compacted})")).to_status();
    json!({"type": "ERROR", "object": status})
}

async fn watch_task(shared: Arc<Shared>, p: WatchParams, tx: mpsc::Sender<Bytes>) {
    let mut changes = shared.changes.subscribe();
    let mut shutdown = shared.shutdown.subscribe();
    changes.borrow_and_update();
    let key = p.rt.key();
    // No resourceVersion (or "0"): the current objects first, as ADDED events.
    let initial = p.send_initial || p.resource_version.as_deref().is_none_or(|rv| rv == "0");
    let mut last = if initial {
        let (items, rv) =
            shared.read(|s: &Store| s.list(&p.rt, p.namespace.as_deref(), &p.labels, &p.fields));
        for item in items {
            let ev = json!({"type": "ADDED", "object": p.present.object(&item)});
            if tx.send(line(&ev)).await.is_err() {
                return;
            }
        }
        if p.send_initial && tx.send(line(&p.bookmark(rv, true))).await.is_err() {
            return;
        }
        rv
    } else {
        match p.resource_version.as_deref().map(str::parse::<u64>) {
            Some(Ok(rv)) => rv,
            _ => {
                let e = ApiError::bad_request("invalid resourceVersion");
                let _ = tx
                    .send(line(&json!({"type": "ERROR", "object": e.to_status()})))
                    .await;
                return;
            }
        }
    };
    let deadline = tokio::time::Instant::now() + p.timeout;
    loop {
        changes.borrow_and_update();
        let batch = shared.read(|s| s.events_since(last, &key).map(|events| (events, s.rv)));
        match batch {
            Err(compacted) => {
                let _ = tx.send(line(&expired(last, compacted))).await;
                return;
            }
            Ok((events, rv)) => {
                for e in events {
                    if let Some(ev) = p.event_for(&e)
                        && tx.send(line(&ev)).await.is_err()
                    {
                        return;
                    }
                }
                last = last.max(rv);
            }
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(shared.bookmark_interval), if p.bookmarks => {
                if tx.send(line(&p.bookmark(last, false))).await.is_err() {
                    return;
                }
            }
            _ = tokio::time::sleep_until(deadline) => return,
            _ = tx.closed() => return,
            _ = async { let _ = shutdown.wait_for(|stop| *stop).await; } => return,
        }
    }
}

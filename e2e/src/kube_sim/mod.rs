//! A stateful in-memory Kubernetes API server over plain HTTP on loopback.
//!
//! The real operator (a kube-rs controller: watches, server-side apply, status patches,
//! events) and real `strom` masters (Lease leader election through a kubeconfig) run
//! against it where no cluster can run. It behaves like the real API server wherever a
//! client could notice:
//! - one global, increasing resourceVersion; a write that changes nothing keeps it and
//!   emits no watch event; `metadata.generation` bumps when something outside metadata
//!   (and status, with a status subresource) changes;
//! - get, list (label and field selectors, all namespaces), watch (replay from an event
//!   history, bookmarks, `sendInitialEvents`, 410 Gone past the history), create
//!   (`generateName`), replace (409 on a stale resourceVersion), delete (finalizers,
//!   propagation policies, background garbage collection through ownerReferences), and
//!   merge, strategic-merge (as merge), JSON and server-side-apply patches;
//! - status and scale subresources, for built-ins and for registered CRDs, whose
//!   OpenAPI schemas prune, default and validate and whose CEL rules are enforced (422);
//! - built-in objects are decoded into their types, defaulted and validated like the
//!   real server does for what an operator could get wrong;
//! - errors are `Status` objects, so `kube::Error::Api` carries code, reason and message.
//!
//! Test hooks inject conflicts, count requests, read objects and drop the watch history.
//!
//! Not simulated: authentication and authorization (every request is allowed),
//! admission webhooks, CRD conversion between versions (an object is served at any
//! version unchanged), the real structured-merge-diff (lists are atomic in apply except
//! `metadata.finalizers`; strategic merge patch is merge patch), `fieldValidation=Strict`
//! (unknown fields are always dropped silently), CEL validation ratcheting, pagination
//! (`limit` is ignored, everything comes in one page), Table output, protobuf,
//! aggregated discovery and OpenAPI documents, graceful pod termination, controllers
//! other than the garbage collector and the namespace controller (no ReplicaSets, no
//! Pods from Deployments, no Endpoints), the shared storage of `v1` and
//! `events.k8s.io/v1` Events, defaulting on read, request timeouts and rate limits.

mod builtin;
mod discovery;
mod error;
mod http;
mod meta;
mod patch;
mod resources;
mod schema;
mod selector;
mod ssa;
mod store;

pub use resources::SpecValidator;

use anyhow::Context as _;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use store::{Store, Sub, WriteCtx};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

/// A request as the counters see it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestKey {
    /// get, list, watch, create, update, patch, delete, deletecollection.
    pub verb: String,
    /// The API group ("" for core).
    pub group: String,
    /// The plural, with the subresource: `deployments`, `streamjobs/status`.
    pub resource: String,
}

/// Conflicts to answer instead of the next writes.
#[derive(Default)]
struct Injected {
    /// For writes to any resource but events and leases.
    any: u64,
    /// For writes to one resource (plural).
    by_resource: BTreeMap<String, u64>,
}

/// State shared by the handlers, the watches and the garbage collector.
pub(crate) struct Shared {
    store: Mutex<Store>,
    /// The resourceVersion after each change: watches wait on it.
    changes: watch::Sender<u64>,
    gc: Notify,
    shutdown: watch::Sender<bool>,
    injected: Mutex<Injected>,
    requests: Mutex<BTreeMap<RequestKey, u64>>,
    bookmark_interval: Duration,
    address: String,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn read<R>(&self, f: impl FnOnce(&Store) -> R) -> R {
        f(&lock(&self.store))
    }

    /// Runs a change; wakes watches and the garbage collector when it changed anything.
    fn write<R>(&self, f: impl FnOnce(&mut Store) -> R) -> R {
        let (out, before, after) = {
            let mut store = lock(&self.store);
            let before = store.rv;
            let out = f(&mut store);
            (out, before, store.rv)
        };
        if after != before {
            self.changes.send_replace(after);
            self.gc.notify_one();
        }
        out
    }

    fn count(&self, key: RequestKey) {
        *lock(&self.requests).entry(key).or_default() += 1;
    }

    fn take_injected_conflict(&self, plural: &str) -> bool {
        let mut injected = lock(&self.injected);
        if let Some(n) = injected.by_resource.get_mut(plural)
            && *n > 0
        {
            *n -= 1;
            return true;
        }
        // Events are fire-and-forget and Lease renewals would turn a conflict into a
        // leadership change: both need a targeted injection.
        if plural != "events" && plural != "leases" && injected.any > 0 {
            injected.any -= 1;
            return true;
        }
        false
    }
}

/// The simulated API server. Dropping it stops it.
pub struct ApiServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    client: kube::Client,
    tasks: Vec<JoinHandle<()>>,
}

impl ApiServer {
    /// Starts a server on `127.0.0.1` at a free port, on the current Tokio runtime.
    pub async fn start() -> anyhow::Result<ApiServer> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the simulated API server")?;
        let addr = listener.local_addr()?;
        let (changes, _) = watch::channel(0);
        let (shutdown, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::new()),
            changes,
            gc: Notify::new(),
            shutdown,
            injected: Mutex::new(Injected::default()),
            requests: Mutex::new(BTreeMap::new()),
            bookmark_interval: Duration::from_secs(1),
            address: addr.to_string(),
        });
        let app = axum::Router::new()
            .fallback(http::handle)
            .layer(axum::extract::DefaultBodyLimit::disable())
            .with_state(shared.clone());
        let mut stop = shared.shutdown.subscribe();
        let server = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            });
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "the simulated API server stopped");
            }
        });
        let gc = tokio::spawn(garbage_collector(shared.clone()));
        let config = kube::Config::new(format!("http://{addr}").parse()?);
        let client =
            kube::Client::try_from(config).context("a client for the simulated API server")?;
        Ok(ApiServer {
            shared,
            addr,
            client,
            tasks: vec![server, gc],
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A client for this server (default namespace `default`).
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// A kubeconfig for another process (via `KUBECONFIG`): this server, no auth,
    /// namespace `default`.
    pub fn kubeconfig_yaml(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: kube-sim\n  cluster:\n    server: {}\nusers:\n- name: kube-sim\n  user: {{}}\ncontexts:\n- name: kube-sim\n  context:\n    cluster: kube-sim\n    user: kube-sim\n    namespace: default\ncurrent-context: kube-sim\n",
            self.url()
        )
    }

    /// Writes [`Self::kubeconfig_yaml`] to `path`.
    pub fn write_kubeconfig(&self, path: &Path) -> anyhow::Result<()> {
        std::fs::write(path, self.kubeconfig_yaml())
            .with_context(|| format!("writing {}", path.display()))
    }

    /// Creates (or updates) a CRD, which serves its resource, with `validate` run on
    /// every create/update/patch of the spec (on top of the schema's own CEL rules); a
    /// refusal is a 422 Invalid whose message has the validator's.
    pub fn register_crd(
        &self,
        crd: CustomResourceDefinition,
        validate: Option<SpecValidator>,
    ) -> anyhow::Result<()> {
        let body = serde_json::to_value(&crd)?;
        let new_rt = resources::from_crd(&body, None).map_err(anyhow::Error::msg)?;
        let name = crd.metadata.name.clone().unwrap_or_default();
        self.shared
            .write(|s| {
                s.set_validator(new_rt.key(), validate);
                let rt = s
                    .resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")
                    .ok_or_else(|| anyhow::anyhow!("no CRD resource"))?;
                let ctx = WriteCtx {
                    version: "v1".into(),
                    namespace: String::new(),
                    manager: "kube-sim".into(),
                    dry_run: false,
                };
                match s.get(&rt, "", &name) {
                    Ok(old) => {
                        let mut body = body.clone();
                        meta::set_meta(
                            &mut body,
                            "resourceVersion",
                            old["metadata"]["resourceVersion"].clone(),
                        );
                        s.replace(&rt, &ctx, &name, Sub::Main, body)
                    }
                    Err(_) => s.create(&rt, &ctx, body.clone()),
                }
                .map_err(|e| anyhow::anyhow!("registering CRD {name}: {e}"))
            })
            .map(|_| ())
    }

    /// Stops serving: the listener closes and open watches end. Dropping the server does
    /// this too.
    pub fn shutdown(&self) {
        self.shared.shutdown.send_replace(true);
    }

    /// The next `n` writes (create, update, patch, delete) to any resource but events
    /// and leases answer 409 Conflict (use [`Self::inject_conflicts_on`] for those).
    pub fn inject_conflicts(&self, n: u64) {
        lock(&self.shared.injected).any += n;
    }

    /// The next `n` writes to `resource` (a plural, e.g. `deployments`) answer 409
    /// Conflict.
    pub fn inject_conflicts_on(&self, resource: &str, n: u64) {
        *lock(&self.shared.injected)
            .by_resource
            .entry(resource.to_string())
            .or_default() += n;
    }

    /// All objects of a resource, in all namespaces (at their stored version).
    pub fn objects(&self, group: &str, version: &str, plural: &str) -> Vec<Value> {
        self.shared.read(|s| {
            s.resource(group, version, plural)
                .map(|rt| s.all_objects(&rt))
                .unwrap_or_default()
        })
    }

    /// One object (`namespace` `None` for cluster-scoped ones).
    pub fn object(
        &self,
        group: &str,
        version: &str,
        plural: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        self.shared.read(|s| {
            let rt = s.resource(group, version, plural)?;
            s.get(&rt, namespace.unwrap_or_default(), name).ok()
        })
    }

    /// Requests so far, by verb, group and resource.
    pub fn requests(&self) -> BTreeMap<RequestKey, u64> {
        lock(&self.shared.requests).clone()
    }

    /// Requests so far with this verb on this resource (`deployments`,
    /// `streamjobs/status`), in any group.
    pub fn request_count(&self, verb: &str, resource: &str) -> u64 {
        lock(&self.shared.requests)
            .iter()
            .filter(|(k, _)| k.verb == verb && k.resource == resource)
            .map(|(_, n)| n)
            .sum()
    }

    /// Writes (create, update, patch, delete, deletecollection) so far to `resource`
    /// (with its subresource, e.g. `streamjobs/status`), in any group.
    pub fn write_count(&self, resource: &str) -> u64 {
        ["create", "update", "patch", "delete", "deletecollection"]
            .iter()
            .map(|v| self.request_count(v, resource))
            .sum()
    }

    pub fn reset_requests(&self) {
        lock(&self.shared.requests).clear();
    }

    /// The current (global) resourceVersion: unchanged means nothing changed.
    pub fn resource_version(&self) -> u64 {
        self.shared.read(|s| s.rv)
    }

    /// Forgets the watch history: a watch resuming from an older resourceVersion gets
    /// 410 Gone and must list again.
    pub fn compact_history(&self) {
        self.shared.write(|s| s.compact());
    }

    /// How many events the watch history keeps (default 100 000).
    pub fn set_history_limit(&self, events: usize) {
        self.shared.write(|s| s.log_limit = events.max(1));
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.shutdown();
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Deletes what lost its owners, as the real garbage collector does (in the
/// background, after the write that orphaned it).
async fn garbage_collector(shared: Arc<Shared>) {
    let mut stop = shared.shutdown.subscribe();
    loop {
        tokio::select! {
            _ = shared.gc.notified() => {}
            _ = async { let _ = stop.wait_for(|s| *s).await; } => return,
        }
        // Passes until one changes nothing (its deletions may orphan more).
        while shared.write(|s| {
            let before = s.rv;
            s.collect_garbage();
            s.rv != before
        }) {}
    }
}

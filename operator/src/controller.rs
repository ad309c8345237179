//! The controller: watches StreamJobs and the children it owns (a change to a
//! Deployment, Service or ConfigMap of a StreamJob reconciles that StreamJob), and runs
//! `reconciler::reconcile` for each, only while this replica leads. Losing the lease stops
//! reconciling at once; the new leader picks every StreamJob up from its status.

use crate::build::MANAGER;
use crate::crd::StreamJob;
use crate::master_api::MasterClient;
use crate::metrics::Metrics;
use crate::reconciler::{Context, error_policy, reconcile};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::Api;
use kube::runtime::events::Reporter;
use kube::runtime::{Controller, watcher};
use std::sync::Arc;
use tokio::sync::watch;

/// Where the controller looks and who it is.
#[derive(Clone, Debug)]
pub struct Settings {
    /// One namespace, or every namespace.
    pub namespace: Option<String>,
    /// This replica (its pod name), for Events.
    pub identity: String,
}

fn api<K>(client: &kube::Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<DynamicType = ()>,
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Reconciles while `leader` says so, until `shutdown` resolves.
pub async fn run(
    client: kube::Client,
    settings: Settings,
    mut leader: watch::Receiver<bool>,
    metrics: Metrics,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        // Stand by until elected.
        tokio::select! {
            _ = &mut shutdown => return,
            elected = leader.wait_for(|l| *l) => if elected.is_err() { return },
        }
        metrics.set_leader(true);
        tracing::info!(identity = %settings.identity, "leading: reconciling StreamJobs");
        let mut lost = leader.clone();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let controller = run_controller(client.clone(), &settings, metrics.clone(), async {
            let _ = stop_rx.await;
        });
        tokio::pin!(controller);
        let ended = tokio::select! {
            _ = &mut shutdown => true,
            _ = lost.wait_for(|l| !*l) => false,
            _ = &mut controller => false,
        };
        let _ = stop_tx.send(());
        controller.await;
        metrics.set_leader(false);
        if ended {
            return;
        }
        tracing::warn!(identity = %settings.identity, "not leading any more: standing by");
    }
}

async fn run_controller(
    client: kube::Client,
    settings: &Settings,
    metrics: Metrics,
    stop: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let ns = settings.namespace.as_deref();
    let reporter = Reporter {
        controller: MANAGER.into(),
        instance: Some(settings.identity.clone()),
    };
    let ctx = Arc::new(Context {
        client: client.clone(),
        master: MasterClient::new(),
        reporter,
        metrics,
    });
    let children =
        || watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={MANAGER}"));
    Controller::new(api::<StreamJob>(&client, ns), watcher::Config::default())
        .owns(api::<Deployment>(&client, ns), children())
        .owns(api::<Service>(&client, ns), children())
        .owns(api::<ConfigMap>(&client, ns), children())
        .graceful_shutdown_on(stop)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((job, _)) => tracing::debug!(streamjob = %job.name, "reconciled"),
                Err(e) => tracing::debug!(error = %e, "reconcile error"),
            }
        })
        .await;
}

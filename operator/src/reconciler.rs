//! One reconcile of a StreamJob, after kube-rs controller-rs: fetch (the StreamJob fresh
//! from the API, its master's job through REST) → `lifecycle::decide` (pure) → write the
//! decided status (optimistic concurrency on the fetched resourceVersion: a decision made
//! on stale data is never acted on) → Events → actions: server-side apply of every child
//! built by `build` with one field manager, stop-with-savepoint and savepoint requests,
//! finalizer and HA clean-up → the request ids the master answered go to status too.
//! The fetch also reads the deployed run's pods, for the troubles `Degraded` reports.

use crate::build::{self, MANAGER, REST_PORT, names};
use crate::crd::StreamJob;
use crate::lifecycle::{self, Action, MasterState, Observed, PodTrouble, RequestState};
use crate::master_api::MasterClient;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action as Requeue;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

/// What every reconcile shares.
pub struct Context {
    pub client: kube::Client,
    pub master: MasterClient,
    /// Who the StreamJobs' Events say reported them.
    pub reporter: Reporter,
    pub metrics: crate::metrics::Metrics,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("building the children: {0}")]
    Build(#[from] build::BuildError),
    #[error("the StreamJob has no namespace")]
    NoNamespace,
}

impl Error {
    /// A short name for the metrics' `error` label.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(s)) if s.code == 409 => "conflict",
            Error::Kube(_) => "kube",
            Error::Build(_) => "build",
            Error::NoNamespace => "namespace",
        }
    }
}

/// Reconciles `job` (from the controller's cache; it is fetched again before deciding).
pub async fn reconcile(job: Arc<StreamJob>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    let namespace = job.namespace().ok_or(Error::NoNamespace)?;
    let name = job.name_any();
    let jobs: Api<StreamJob> = Api::namespaced(ctx.client.clone(), &namespace);
    let Some(job) = jobs.get_opt(&name).await? else {
        return Ok(Requeue::await_change());
    };
    let _timer = ctx.metrics.reconcile_started();
    let base = master_base(&ctx.client, &namespace, &name).await;
    let observed = observe(&ctx, &job, base.as_deref()).await;
    let decision = lifecycle::decide(&job, &observed);

    // The write-ahead log: the step is in status before it is taken.
    let mut current = job.clone();
    if job.status.as_ref() != Some(&decision.status) {
        current = write_status(&jobs, &job, decision.status.clone()).await?;
    }
    for event in &decision.events {
        publish(&ctx, &job, event).await;
    }
    let mut status = decision.status.clone();
    let mut answered = false;
    for action in &decision.actions {
        match action {
            Action::AddFinalizer => add_finalizer(&jobs, &current).await?,
            Action::ApplyChildren => apply_children(&ctx.client, &current).await?,
            Action::StopWithSavepoint { job_id, directory } => {
                let outcome = match &base {
                    Some(base) => {
                        ctx.master
                            .stop_with_savepoint(base, job_id, directory)
                            .await
                    }
                    None => Err("the master Service has no address yet".into()),
                };
                log_request("stop-with-savepoint", &name, &outcome);
                lifecycle::record(&mut status, action, outcome, Timestamp::now());
                answered = true;
            }
            Action::TriggerSavepoint {
                job_id, directory, ..
            } => {
                let outcome = match &base {
                    Some(base) => ctx.master.trigger_savepoint(base, job_id, directory).await,
                    None => Err("the master Service has no address yet".into()),
                };
                log_request("savepoint", &name, &outcome);
                lifecycle::record(&mut status, action, outcome, Timestamp::now());
                answered = true;
            }
            Action::DisposeSavepoint { location } => {
                if let Some(base) = &base
                    && let Err(e) = ctx.master.dispose_savepoint(base, location).await
                {
                    // A savepoint left behind costs storage, not correctness.
                    tracing::warn!(streamjob = %name, %location, error = %e, "could not dispose of an old savepoint");
                }
            }
            Action::DeleteMasters => {
                let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &namespace);
                match deployments
                    .delete(&names::master(&name), &DeleteParams::background())
                    .await
                {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Action::DeleteHaData => {
                let maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &namespace);
                match maps
                    .delete(&names::ha_config(&name), &DeleteParams::default())
                    .await
                {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Action::RemoveFinalizer => remove_finalizer(&jobs, &current).await?,
        }
    }
    if answered && current.status.as_ref() != Some(&status) {
        write_status(&jobs, &current, status).await?;
    }
    Ok(Requeue::requeue(decision.requeue_after))
}

/// What the controller does with a failed reconcile: count it and try again soon.
pub fn error_policy(job: Arc<StreamJob>, error: &Error, ctx: Arc<Context>) -> Requeue {
    ctx.metrics.reconcile_failed(error.metric_label());
    let conflict = matches!(error, Error::Kube(kube::Error::Api(s)) if s.code == 409);
    if conflict {
        // Someone changed the StreamJob meanwhile: decide again on what it is now.
        tracing::debug!(streamjob = %job.name_any(), "status write conflicted; deciding again");
        return Requeue::requeue(Duration::from_millis(200));
    }
    tracing::warn!(streamjob = %job.name_any(), error = %error, "reconcile failed");
    Requeue::requeue(Duration::from_secs(5))
}

/// `http://<cluster IP of the master Service>:8081`, once the Service has one. The
/// cluster IP rather than the DNS name: it needs no cluster DNS where the operator runs.
async fn master_base(client: &kube::Client, namespace: &str, name: &str) -> Option<String> {
    let services: Api<Service> = Api::namespaced(client.clone(), namespace);
    let service = services.get_opt(&names::master(name)).await.ok()??;
    let ip = service.spec?.cluster_ip?;
    (!ip.is_empty() && ip != "None").then(|| format!("http://{ip}:{REST_PORT}"))
}

async fn observe(ctx: &Context, job: &StreamJob, base: Option<&str>) -> Observed {
    let status = job.status.clone().unwrap_or_default();
    let deployed = status.deployed.as_ref();
    let master = match (base, deployed) {
        (_, Some(d)) if d.suspended => MasterState::Unreachable("suspended".into()),
        (Some(base), Some(_)) => ctx.master.observe(base).await,
        (None, Some(_)) => MasterState::Unreachable("the master Service has no address yet".into()),
        (_, None) => MasterState::Unreachable("nothing deployed".into()),
    };
    let upgrade_request = status.upgrade.as_ref().and_then(|u| u.request_id.clone());
    let request = match (
        upgrade_request,
        status.savepoints.as_ref().and_then(|s| s.trigger.clone()),
    ) {
        (Some(request), _) => Some(match (&master, base) {
            (MasterState::Job(j), Some(base)) => {
                ctx.master.request_state(base, &j.id, &request).await
            }
            _ => RequestState::Unknown,
        }),
        (None, Some(trigger)) => Some(match base {
            Some(base) => {
                ctx.master
                    .request_state(base, &trigger.job_id, &trigger.request_id)
                    .await
            }
            None => RequestState::Unknown,
        }),
        (None, None) => None,
    };
    let (pods, master_pods) = match job.namespace() {
        Some(namespace) => observe_pods(&ctx.client, &namespace, &job.name_any(), deployed).await,
        None => (Vec::new(), 0),
    };
    Observed {
        master,
        request,
        pods,
        master_pods,
        now: Timestamp::now(),
    }
}

/// The StreamJob's pods: the troubles of the deployed run's (unless suspended), and how
/// many master pods of any run still exist. A failed list counts as no troubles and no
/// masters: pods are only reported, and a deletion that cannot see them goes on as it
/// would without the wait rather than hang.
async fn observe_pods(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    deployed: Option<&crate::crd::DeployedRun>,
) -> (Vec<PodTrouble>, usize) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let selector = format!("{}={name}", build::INSTANCE_LABEL);
    let list = match pods.list(&ListParams::default().labels(&selector)).await {
        Ok(list) => list.items,
        Err(e) => {
            tracing::warn!(streamjob = name, error = %e, "could not list pods");
            return (Vec::new(), 0);
        }
    };
    let label = |pod: &Pod, key: &str| {
        pod.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(key).cloned())
    };
    let troubles = match deployed {
        Some(d) if !d.suspended => list
            .iter()
            .filter(|p| label(p, build::RUN_ID_LABEL).as_deref() == Some(d.run_id.as_str()))
            .filter_map(PodTrouble::of)
            .collect(),
        _ => Vec::new(),
    };
    let masters = list
        .iter()
        .filter(|p| label(p, build::COMPONENT_LABEL).as_deref() == Some("master"))
        .count();
    (troubles, masters)
}

/// Replaces the status, if the StreamJob is still as it was read.
async fn write_status(
    jobs: &Api<StreamJob>,
    job: &StreamJob,
    status: crate::crd::StreamJobStatus,
) -> Result<StreamJob, Error> {
    let mut updated = job.clone();
    updated.status = Some(status);
    Ok(jobs
        .replace_status(&job.name_any(), &PostParams::default(), &updated)
        .await?)
}

async fn publish(ctx: &Context, job: &StreamJob, event: &lifecycle::Event) {
    let kube_event = KubeEvent {
        type_: if event.warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: event.reason.to_string(),
        note: Some(event.note.chars().take(1000).collect()),
        action: "Reconcile".into(),
        secondary: None,
    };
    if event.warning {
        tracing::warn!(streamjob = %job.name_any(), reason = event.reason, note = %event.note, "event");
    } else {
        tracing::info!(streamjob = %job.name_any(), reason = event.reason, note = %event.note, "event");
    }
    // A Recorder per Event: one kept across Events folds every Event of the same reason
    // into the first one's series for 6 minutes, keeping the first note — the second
    // savepoint's path, the final one's on deletion, would never be seen.
    let recorder = Recorder::new(ctx.client.clone(), ctx.reporter.clone());
    if let Err(e) = recorder.publish(&kube_event, &job.object_ref(&())).await {
        tracing::warn!(error = %e, "could not record an Event");
    }
}

fn log_request(what: &str, name: &str, outcome: &Result<String, String>) {
    match outcome {
        Ok(request) => tracing::info!(streamjob = %name, %request, "{what} asked of the master"),
        Err(e) => tracing::warn!(streamjob = %name, error = %e, "{what} refused"),
    }
}

async fn add_finalizer(jobs: &Api<StreamJob>, job: &StreamJob) -> Result<(), Error> {
    let mut finalizers = job.finalizers().to_vec();
    finalizers.push(lifecycle::FINALIZER.to_string());
    // The resourceVersion makes it a compare-and-swap of the list.
    let patch = serde_json::json!({
        "metadata": {"finalizers": finalizers, "resourceVersion": job.resource_version()}
    });
    jobs.patch(
        &job.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

async fn remove_finalizer(jobs: &Api<StreamJob>, job: &StreamJob) -> Result<(), Error> {
    let finalizers: Vec<String> = job
        .finalizers()
        .iter()
        .filter(|f| *f != lifecycle::FINALIZER)
        .cloned()
        .collect();
    let patch = serde_json::json!({
        "metadata": {"finalizers": finalizers, "resourceVersion": job.resource_version()}
    });
    match jobs
        .patch(
            &job.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Server-side apply of every child of the deployed run (nothing before the first run).
async fn apply_children(client: &kube::Client, job: &StreamJob) -> Result<(), Error> {
    let Some(run) = job.status.as_ref().and_then(|s| s.deployed.clone()) else {
        return Ok(());
    };
    let desired = build::build(job, &run)?;
    let namespace = job.namespace().ok_or(Error::NoNamespace)?;
    apply(client, &namespace, &desired.config_map).await?;
    apply(client, &namespace, &desired.service_account).await?;
    apply(client, &namespace, &desired.role).await?;
    apply(client, &namespace, &desired.role_binding).await?;
    apply(client, &namespace, &desired.master_service).await?;
    apply(client, &namespace, &desired.master).await?;
    apply(client, &namespace, &desired.workers).await?;
    Ok(())
}

async fn apply<K>(client: &kube::Client, namespace: &str, object: &K) -> Result<(), Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Serialize
        + DeserializeOwned
        + Clone
        + Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let params = PatchParams::apply(MANAGER).force();
    api.patch(&object.name_any(), &params, &Patch::Apply(object))
        .await?;
    Ok(())
}

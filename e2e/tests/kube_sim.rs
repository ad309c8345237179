//! The simulated API server, through `kube::Api` and kube-runtime as a real client uses
//! them.

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ObjectReference, Service};
use k8s_openapi::api::events::v1::Event as K8sEvent;
use kube::api::{
    Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use kube::core::{PartialObjectMeta, PartialObjectMetaExt, Status};
use kube::runtime::{events, watcher};
use kube::{CustomResource, CustomResourceExt, KubeSchema, Resource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use strom_e2e::kube_sim::ApiServer;

/// A small custom resource with status and scale subresources and a schema CEL rule.
#[derive(CustomResource, KubeSchema, Clone, Debug, Deserialize, Serialize, PartialEq)]
#[kube(
    group = "test.strom.dev",
    version = "v1",
    kind = "Widget",
    namespaced,
    status = "WidgetStatus",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    )
)]
#[x_kube(
    cel,
    validation = Rule::new("self.replicas <= 100").message("at most 100 replicas")
)]
#[serde(rename_all = "camelCase")]
pub struct WidgetSpec {
    #[schemars(range(min = 0))]
    pub replicas: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_replicas: Option<i32>,
    #[serde(default = "blue")]
    pub color: String,
}

fn blue() -> String {
    "blue".into()
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
pub struct WidgetStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
}

/// What the operator's tests do with `StreamJobSpec::validate_cel`: a check the schema
/// cannot express, with a transition rule.
fn widget_validator() -> strom_e2e::kube_sim::SpecValidator {
    Arc::new(|new: &Value, old: Option<&Value>| {
        if let (Some(max), Some(r)) = (new["maxReplicas"].as_i64(), new["replicas"].as_i64())
            && r > max
        {
            return Err("replicas must not exceed maxReplicas".into());
        }
        if let Some(old) = old
            && old["color"] != new["color"]
        {
            return Err("color cannot change".into());
        }
        Ok(())
    })
}

async fn server() -> ApiServer {
    ApiServer::start()
        .await
        .expect("the simulated API server starts")
}

async fn widget_server() -> ApiServer {
    let s = server().await;
    s.register_crd(Widget::crd(), Some(widget_validator()))
        .expect("the CRD registers");
    s
}

fn config_map(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..ConfigMap::default()
    }
}

fn deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": "strom:dev"}]},
            },
        },
    }))
    .expect("a deployment")
}

fn api_error(e: kube::Error) -> Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn rv<K: Resource>(k: &K) -> u64 {
    k.meta()
        .resource_version
        .as_deref()
        .expect("a resourceVersion")
        .parse()
        .expect("a number")
}

/// Waits (up to 5 s) for `f` to hold.
async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..100 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn typed_crud_on_config_maps_and_deployments() {
    let s = server().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(s.client());
    let created = cms
        .create(&PostParams::default(), &config_map("a", &[("k", "v")]))
        .await
        .unwrap();
    assert!(created.metadata.uid.is_some());
    assert!(created.metadata.creation_timestamp.is_some());
    assert_eq!(created.metadata.namespace.as_deref(), Some("default"));
    let got = cms.get("a").await.unwrap();
    assert_eq!(got.data, created.data);

    let dup = cms
        .create(&PostParams::default(), &config_map("a", &[]))
        .await
        .unwrap_err();
    let dup = api_error(dup);
    assert_eq!((dup.code, dup.reason.as_str()), (409, "AlreadyExists"));

    let mut changed = got.clone();
    changed.data = Some(BTreeMap::from([("k".into(), "w".into())]));
    let replaced = cms
        .replace("a", &PostParams::default(), &changed)
        .await
        .unwrap();
    assert!(rv(&replaced) > rv(&got));
    assert_eq!(replaced.data.unwrap()["k"], "w");

    // generateName, lists with selectors, all namespaces.
    let mut generated = config_map("", &[]);
    generated.metadata.name = None;
    generated.metadata.generate_name = Some("gen-".into());
    generated.metadata.labels = Some(BTreeMap::from([("tier".into(), "x".into())]));
    let generated = cms
        .create(&PostParams::default(), &generated)
        .await
        .unwrap();
    assert!(generated.name_any().starts_with("gen-") && generated.name_any().len() == 9);
    let other_ns: Api<ConfigMap> = Api::namespaced(s.client(), "other");
    other_ns
        .create(&PostParams::default(), &config_map("b", &[]))
        .await
        .unwrap();
    let labelled = cms
        .list(&ListParams::default().labels("tier in (x,y)"))
        .await
        .unwrap();
    assert_eq!(labelled.items.len(), 1);
    assert!(labelled.metadata.resource_version.is_some());
    let by_name = cms
        .list(&ListParams::default().fields("metadata.name=a"))
        .await
        .unwrap();
    assert_eq!(by_name.items.len(), 1);
    let all: Api<ConfigMap> = Api::all(s.client());
    assert_eq!(
        all.list(&ListParams::default()).await.unwrap().items.len(),
        3
    );

    cms.delete("a", &DeleteParams::default()).await.unwrap();
    let gone = api_error(cms.get("a").await.unwrap_err());
    assert_eq!((gone.code, gone.reason.as_str()), (404, "NotFound"));

    // Deployments: defaults like the real server's.
    let deps: Api<Deployment> = Api::default_namespaced(s.client());
    let d = deps
        .create(&PostParams::default(), &deployment("d", 2))
        .await
        .unwrap();
    assert_eq!(d.metadata.generation, Some(1));
    let spec = &d.spec;
    assert_eq!(spec.revision_history_limit, Some(10));
    let container = &spec.template.spec.as_ref().unwrap().containers[0];
    assert_eq!(container.image_pull_policy.as_deref(), Some("IfNotPresent"));
    let mut bad = deployment("bad", 1);
    bad.spec.template.metadata.as_mut().unwrap().labels =
        Some(BTreeMap::from([("app".into(), "other".into())]));
    let invalid = api_error(deps.create(&PostParams::default(), &bad).await.unwrap_err());
    assert_eq!((invalid.code, invalid.reason.as_str()), (422, "Invalid"));
    assert!(
        invalid.message.contains("does not match template"),
        "{}",
        invalid.message
    );
    deps.delete("d", &DeleteParams::default()).await.unwrap();
    assert!(deps.get_opt("d").await.unwrap().is_none());
}

#[tokio::test]
async fn a_stale_resource_version_is_a_conflict() {
    let s = server().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(s.client());
    let first = cms
        .create(&PostParams::default(), &config_map("a", &[("k", "1")]))
        .await
        .unwrap();
    let mut second = first.clone();
    second.data = Some(BTreeMap::from([("k".into(), "2".into())]));
    cms.replace("a", &PostParams::default(), &second)
        .await
        .unwrap();
    let mut stale = first.clone();
    stale.data = Some(BTreeMap::from([("k".into(), "3".into())]));
    let e = api_error(
        cms.replace("a", &PostParams::default(), &stale)
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
    assert!(e.message.contains("the object has been modified"));

    // Injected conflicts: the next writes fail, then they succeed again.
    s.inject_conflicts(1);
    let now = cms.get("a").await.unwrap();
    let e = api_error(
        cms.replace("a", &PostParams::default(), &now)
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 409);
    cms.replace("a", &PostParams::default(), &now)
        .await
        .unwrap();
}

#[tokio::test]
async fn applying_the_same_object_twice_changes_nothing() {
    let s = server().await;
    let deps: Api<Deployment> = Api::default_namespaced(s.client());
    let pp = PatchParams::apply("strom-operator").force();
    let first = deps
        .patch("d", &pp, &Patch::Apply(deployment("d", 2)))
        .await
        .unwrap();
    let mut events = deps
        .watch(&WatchParams::default(), &rv(&first).to_string())
        .await
        .unwrap()
        .boxed();
    s.reset_requests();
    let global = s.resource_version();
    let second = deps
        .patch("d", &pp, &Patch::Apply(deployment("d", 2)))
        .await
        .unwrap();
    assert_eq!(
        second.metadata.resource_version,
        first.metadata.resource_version
    );
    assert_eq!(
        second.metadata.managed_fields,
        first.metadata.managed_fields
    );
    assert_eq!(s.resource_version(), global);
    assert_eq!(s.request_count("patch", "deployments"), 1);
    // The next event is the marker's, not a MODIFIED for the second apply.
    deps.patch("marker", &pp, &Patch::Apply(deployment("marker", 1)))
        .await
        .unwrap();
    let next = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    match next {
        WatchEvent::Added(d) => assert_eq!(d.name_any(), "marker"),
        other => panic!("expected the marker's ADDED, got {other:?}"),
    }
    let entries = second.metadata.managed_fields.unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e.manager.as_deref() == Some("strom-operator")
                && e.operation.as_deref() == Some("Apply"))
    );
}

#[tokio::test]
async fn apply_removes_what_a_manager_dropped_and_keeps_what_others_set() {
    let s = server().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(s.client());
    let apply = |data: Value| {
        Patch::Apply(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": data}),
        )
    };
    cms.patch(
        "c",
        &PatchParams::apply("a"),
        &apply(json!({"x": "1", "y": "2"})),
    )
    .await
    .unwrap();
    cms.patch("c", &PatchParams::apply("b"), &apply(json!({"z": "3"})))
        .await
        .unwrap();
    // A merge patch by a third manager owns what it sets.
    cms.patch(
        "c",
        &PatchParams {
            field_manager: Some("kubectl-edit".into()),
            ..PatchParams::default()
        },
        &Patch::Merge(json!({"data": {"w": "4"}})),
    )
    .await
    .unwrap();
    let c = cms
        .patch("c", &PatchParams::apply("a"), &apply(json!({"x": "1"})))
        .await
        .unwrap();
    let data = c.data.unwrap();
    assert_eq!(
        data,
        BTreeMap::from([
            ("x".into(), "1".into()),
            ("z".into(), "3".into()),
            ("w".into(), "4".into())
        ])
    );
    // Changing b's field without force is a conflict; with force it is taken over.
    let e = api_error(
        cms.patch(
            "c",
            &PatchParams::apply("a"),
            &apply(json!({"x": "1", "z": "9"})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(e.code, 409);
    assert!(e.message.contains("conflict with \"b\""), "{}", e.message);
    let c = cms
        .patch(
            "c",
            &PatchParams::apply("a").force(),
            &apply(json!({"x": "1", "z": "9"})),
        )
        .await
        .unwrap();
    assert_eq!(c.data.unwrap()["z"], "9");
    // b no longer owns z: dropping it from b's config keeps a's value.
    let c = cms
        .patch("c", &PatchParams::apply("b"), &apply(json!({})))
        .await
        .unwrap();
    assert_eq!(c.data.unwrap()["z"], "9");
}

#[tokio::test]
async fn generations_and_the_status_subresource() {
    let s = server().await;
    let deps: Api<Deployment> = Api::default_namespaced(s.client());
    let d = deps
        .create(&PostParams::default(), &deployment("d", 1))
        .await
        .unwrap();
    assert_eq!(d.metadata.generation, Some(1));
    // Status through /status: generation stays.
    let d = deps
        .patch_status(
            "d",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"status": {"replicas": 1, "readyReplicas": 1}, "spec": {"replicas": 7}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(d.metadata.generation, Some(1));
    assert_eq!(d.status.as_ref().unwrap().ready_replicas, Some(1));
    assert_eq!(d.spec.replicas, Some(1), "/status ignores spec");
    // Status through the main resource is ignored.
    let before = rv(&d);
    let d = deps
        .patch(
            "d",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"readyReplicas": 0}})),
        )
        .await
        .unwrap();
    assert_eq!(
        rv(&d),
        before,
        "a write that changes nothing keeps the resourceVersion"
    );
    assert_eq!(d.status.as_ref().unwrap().ready_replicas, Some(1));
    // Metadata changes: no new generation.
    let d = deps
        .patch(
            "d",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"extra": "yes"}}})),
        )
        .await
        .unwrap();
    assert_eq!(d.metadata.generation, Some(1));
    assert!(rv(&d) > before);
    // Spec changes: a new generation.
    let d = deps
        .patch(
            "d",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    assert_eq!(d.metadata.generation, Some(2));
    // The scale subresource.
    let scale = deps.get_scale("d").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(3));
    assert_eq!(scale.status.unwrap().selector.as_deref(), Some("app=d"));
    deps.patch_scale(
        "d",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 5}})),
    )
    .await
    .unwrap();
    let d = deps.get("d").await.unwrap();
    assert_eq!(d.spec.replicas, Some(5));
    assert_eq!(d.metadata.generation, Some(3));
}

#[tokio::test]
async fn custom_resources_are_validated_and_scale() {
    let s = widget_server().await;
    let widgets: Api<Widget> = Api::default_namespaced(s.client());
    let spec = |replicas: i32| WidgetSpec {
        replicas,
        max_replicas: Some(10),
        color: "blue".into(),
    };

    // The validator's rule.
    let e = api_error(
        widgets
            .create(&PostParams::default(), &Widget::new("w", spec(11)))
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
    assert!(
        e.message.contains("replicas must not exceed maxReplicas"),
        "{}",
        e.message
    );
    assert!(
        e.message
            .starts_with("Widget.test.strom.dev \"w\" is invalid"),
        "{}",
        e.message
    );
    // The schema's own CEL rule and bounds.
    let mut huge = spec(101);
    huge.max_replicas = None;
    let e = api_error(
        widgets
            .create(&PostParams::default(), &Widget::new("w", huge))
            .await
            .unwrap_err(),
    );
    assert!(e.message.contains("at most 100 replicas"), "{}", e.message);
    let e = api_error(
        widgets
            .create(&PostParams::default(), &Widget::new("w", spec(-1)))
            .await
            .unwrap_err(),
    );
    assert!(e.message.contains("spec.replicas"), "{}", e.message);

    // Defaults from the schema, unknown fields pruned, status ignored on create.
    let raw: Api<kube::api::DynamicObject> =
        Api::default_namespaced_with(s.client(), &kube::api::ApiResource::erase::<Widget>(&()));
    let created = raw
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "test.strom.dev/v1", "kind": "Widget",
                "metadata": {"name": "w"},
                "spec": {"replicas": 2, "unknown": true},
                "status": {"phase": "Set"},
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        created.data["spec"],
        json!({"replicas": 2, "color": "blue"})
    );
    assert!(created.data.get("status").is_none());
    assert_eq!(created.metadata.generation, Some(1));

    // A transition rule: the color cannot change.
    let mut w = widgets.get("w").await.unwrap();
    w.spec.color = "red".into();
    let e = api_error(
        widgets
            .replace("w", &PostParams::default(), &w)
            .await
            .unwrap_err(),
    );
    assert!(e.message.contains("color cannot change"), "{}", e.message);

    // Status through /status, scale through /scale.
    widgets
        .patch_status(
            "w",
            &PatchParams::apply("op"),
            &Patch::Apply(json!({
                "apiVersion": "test.strom.dev/v1", "kind": "Widget",
                "status": {"replicas": 2, "selector": "app=w", "phase": "Running"},
            })),
        )
        .await
        .unwrap();
    let scale = widgets.get_scale("w").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(2));
    let status = scale.status.unwrap();
    assert_eq!(
        (status.replicas, status.selector.as_deref()),
        (2, Some("app=w"))
    );
    let scaled = widgets
        .patch_scale(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 4}})),
        )
        .await
        .unwrap();
    assert_eq!(scaled.spec.unwrap().replicas, Some(4));
    let w = widgets.get("w").await.unwrap();
    assert_eq!(w.spec.replicas, 4);
    assert_eq!(w.metadata.generation, Some(2));
    assert_eq!(w.status.unwrap().phase.as_deref(), Some("Running"));
    // Scaling past the validator's limit is refused too.
    let e = api_error(
        widgets
            .patch_scale(
                "w",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": 200}})),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 422);
    // Unconditional updates of custom resources are refused, like the real server does.
    let mut w = widgets.get("w").await.unwrap();
    w.metadata.resource_version = None;
    assert_eq!(
        api_error(
            widgets
                .replace("w", &PostParams::default(), &w)
                .await
                .unwrap_err()
        )
        .code,
        422
    );

    // Discovery knows the resource.
    let discovery = kube::Discovery::new(s.client()).run().await.unwrap();
    let (res, caps) = discovery
        .resolve_gvk(&kube::api::GroupVersionKind::gvk(
            "test.strom.dev",
            "v1",
            "Widget",
        ))
        .unwrap();
    assert_eq!(res.plural, "widgets");
    assert!(
        caps.subresources
            .iter()
            .any(|(r, _)| r.plural == "widgets/scale" || r.plural == "scale")
    );
}

#[tokio::test]
async fn crds_created_through_the_api_are_served_and_go_with_their_objects() {
    let s = server().await;
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(s.client());
    let crd = crds
        .create(&PostParams::default(), &Widget::crd())
        .await
        .unwrap();
    let established = crd
        .status
        .unwrap()
        .conditions
        .unwrap()
        .iter()
        .any(|c| c.type_ == "Established" && c.status == "True");
    assert!(established);
    let widgets: Api<Widget> = Api::default_namespaced(s.client());
    let w = WidgetSpec {
        replicas: 1,
        max_replicas: None,
        color: "blue".into(),
    };
    widgets
        .create(&PostParams::default(), &Widget::new("w", w))
        .await
        .unwrap();
    crds.delete(&crd.metadata.name.unwrap(), &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(
        api_error(widgets.list(&ListParams::default()).await.unwrap_err()).code,
        404
    );
}

#[tokio::test]
async fn watchers_see_changes_in_order() {
    for streaming in [false, true] {
        let s = server().await;
        let cms: Api<ConfigMap> = Api::default_namespaced(s.client());
        cms.create(&PostParams::default(), &config_map("before", &[]))
            .await
            .unwrap();
        let config = if streaming {
            watcher::Config::default().streaming_lists()
        } else {
            watcher::Config::default()
        };
        let mut stream = watcher(cms.clone(), config).boxed();
        let mut next = async || {
            tokio::time::timeout(Duration::from_secs(5), stream.try_next())
                .await
                .expect("an event in time")
                .expect("no watch error")
                .expect("the stream goes on")
        };
        assert!(matches!(next().await, watcher::Event::Init));
        assert!(matches!(next().await, watcher::Event::InitApply(c) if c.name_any() == "before"));
        assert!(matches!(next().await, watcher::Event::InitDone));
        cms.create(&PostParams::default(), &config_map("a", &[("k", "1")]))
            .await
            .unwrap();
        cms.patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"k": "2"}})),
        )
        .await
        .unwrap();
        cms.delete("a", &DeleteParams::default()).await.unwrap();
        match next().await {
            watcher::Event::Apply(c) => assert_eq!(c.data.unwrap()["k"], "1"),
            other => panic!("expected ADDED, got {other:?}"),
        }
        match next().await {
            watcher::Event::Apply(c) => assert_eq!(c.data.unwrap()["k"], "2"),
            other => panic!("expected MODIFIED, got {other:?}"),
        }
        match next().await {
            watcher::Event::Delete(c) => assert_eq!(c.name_any(), "a"),
            other => panic!("expected DELETED, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn watches_past_the_history_are_gone_and_watchers_relist() {
    let s = server().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(s.client());
    let a = cms
        .create(&PostParams::default(), &config_map("a", &[]))
        .await
        .unwrap();
    cms.create(&PostParams::default(), &config_map("b", &[]))
        .await
        .unwrap();
    s.compact_history();
    let mut raw = cms
        .watch(&WatchParams::default(), &rv(&a).to_string())
        .await
        .unwrap()
        .boxed();
    match raw.next().await.unwrap().unwrap() {
        WatchEvent::Error(e) => assert_eq!(e.code, 410),
        other => panic!("expected 410 Gone, got {other:?}"),
    }

    // A watcher whose watch breaks off relists and goes on.
    let mut stream = watcher(cms.clone(), watcher::Config::default().timeout(1)).boxed();
    let mut seen = Vec::new();
    let mut compacted = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        let Ok(Some(ev)) = tokio::time::timeout(Duration::from_secs(5), stream.next()).await else {
            break;
        };
        match ev {
            Ok(watcher::Event::InitDone) if !compacted => {
                compacted = true;
                cms.create(&PostParams::default(), &config_map("c", &[]))
                    .await
                    .unwrap();
                s.compact_history();
            }
            Ok(watcher::Event::InitApply(c) | watcher::Event::Apply(c)) => seen.push(c.name_any()),
            _ => {}
        }
        if seen.iter().filter(|n| *n == "c").count() >= 1 && compacted {
            break;
        }
    }
    assert!(seen.contains(&"c".to_string()), "{seen:?}");
}

#[tokio::test]
async fn metadata_watches_and_kubeconfigs_work() {
    let s = server().await;
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&s.kubeconfig_yaml()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(config.default_namespace, "default");
    let client = kube::Client::try_from(config).unwrap();
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    cms.create(&PostParams::default(), &config_map("m", &[]))
        .await
        .unwrap();
    let metas = cms.list_metadata(&ListParams::default()).await.unwrap();
    assert_eq!(metas.items[0].metadata.name.as_deref(), Some("m"));
    let metas: Api<PartialObjectMeta<ConfigMap>> = Api::default_namespaced(s.client());
    let mut stream = watcher(metas, watcher::Config::default()).boxed();
    let mut names = Vec::new();
    while let Ok(Some(Ok(ev))) = tokio::time::timeout(Duration::from_secs(5), stream.next()).await {
        if let watcher::Event::InitApply(m) = ev {
            names.push(m.name_any());
        }
        if names.len() == 1 {
            break;
        }
    }
    assert_eq!(names, ["m"]);
    // And PartialObjectMetadata patches.
    let meta = ObjectMeta {
        labels: Some(BTreeMap::from([("x".into(), "y".into())])),
        ..ObjectMeta::default()
    }
    .into_request_partial::<ConfigMap>();
    cms.patch_metadata("m", &PatchParams::apply("meta"), &Patch::Apply(&meta))
        .await
        .unwrap();
    assert_eq!(cms.get("m").await.unwrap().labels()["x"], "y");
}

#[tokio::test]
async fn deleting_an_owner_collects_its_dependents() {
    let s = server().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(s.client());
    let owner = cms
        .create(&PostParams::default(), &config_map("owner", &[]))
        .await
        .unwrap();
    let owner_ref = owner.controller_owner_ref(&()).unwrap();
    for name in ["dep-1", "dep-2"] {
        let mut dep = config_map(name, &[]);
        dep.metadata.owner_references = Some(vec![owner_ref.clone()]);
        cms.create(&PostParams::default(), &dep).await.unwrap();
    }
    let deps: Api<Deployment> = Api::default_namespaced(s.client());
    let mut d = deployment("child", 1);
    d.metadata.owner_references = Some(vec![owner_ref.clone()]);
    deps.create(&PostParams::default(), &d).await.unwrap();
    cms.create(&PostParams::default(), &config_map("unowned", &[]))
        .await
        .unwrap();

    cms.delete("owner", &DeleteParams::default()).await.unwrap();
    eventually("the dependents to go", async || {
        cms.get_opt("dep-1").await.unwrap().is_none()
            && cms.get_opt("dep-2").await.unwrap().is_none()
            && deps.get_opt("child").await.unwrap().is_none()
    })
    .await;
    assert!(cms.get_opt("unowned").await.unwrap().is_some());

    // Foreground: the owner waits for its dependents; orphan: they stay.
    let owner = cms
        .create(&PostParams::default(), &config_map("fg", &[]))
        .await
        .unwrap();
    let mut dep = config_map("fg-dep", &[]);
    dep.metadata.owner_references = Some(vec![owner.controller_owner_ref(&()).unwrap()]);
    cms.create(&PostParams::default(), &dep).await.unwrap();
    let pending = cms.delete("fg", &DeleteParams::foreground()).await.unwrap();
    let pending = pending.left().expect("the owner is still there");
    assert!(pending.metadata.deletion_timestamp.is_some());
    assert!(
        pending
            .finalizers()
            .contains(&"foregroundDeletion".to_string())
    );
    eventually("foreground deletion", async || {
        cms.get_opt("fg").await.unwrap().is_none() && cms.get_opt("fg-dep").await.unwrap().is_none()
    })
    .await;

    let owner = cms
        .create(&PostParams::default(), &config_map("orphaner", &[]))
        .await
        .unwrap();
    let mut dep = config_map("orphan", &[]);
    dep.metadata.owner_references = Some(vec![owner.controller_owner_ref(&()).unwrap()]);
    cms.create(&PostParams::default(), &dep).await.unwrap();
    cms.delete("orphaner", &DeleteParams::orphan())
        .await
        .unwrap();
    eventually("the orphaning", async || {
        cms.get_opt("orphaner").await.unwrap().is_none()
    })
    .await;
    let orphan = cms.get("orphan").await.unwrap();
    assert!(orphan.metadata.owner_references.is_none());
}

#[tokio::test]
async fn finalizers_keep_objects_until_removed() {
    let s = widget_server().await;
    let widgets: Api<Widget> = Api::default_namespaced(s.client());
    let w = Widget::new(
        "w",
        WidgetSpec {
            replicas: 1,
            max_replicas: None,
            color: "blue".into(),
        },
    );
    widgets.create(&PostParams::default(), &w).await.unwrap();
    // kube-runtime's finalizer helper: test-for-null then add.
    widgets
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Json::<()>(
                serde_json::from_value(json!([
                    {"op": "test", "path": "/metadata/finalizers", "value": null},
                    {"op": "add", "path": "/metadata/finalizers", "value": ["test.strom.dev/cleanup"]},
                ]))
                .unwrap(),
            ),
        )
        .await
        .unwrap();
    let deleted = widgets.delete("w", &DeleteParams::default()).await.unwrap();
    assert!(deleted.is_left());
    let w = widgets.get("w").await.unwrap();
    assert!(w.metadata.deletion_timestamp.is_some());
    // No new finalizers while being deleted.
    let e = api_error(
        widgets
            .patch(
                "w",
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"metadata": {"finalizers": ["test.strom.dev/cleanup", "other"]}}),
                ),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 422);
    widgets
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Json::<()>(
                serde_json::from_value(json!([
                    {"op": "test", "path": "/metadata/finalizers/0", "value": "test.strom.dev/cleanup"},
                    {"op": "remove", "path": "/metadata/finalizers/0"},
                ]))
                .unwrap(),
            ),
        )
        .await
        .unwrap();
    assert!(widgets.get_opt("w").await.unwrap().is_none());
}

#[tokio::test]
async fn events_are_recorded() {
    let s = server().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(s.client());
    let cm = cms
        .create(&PostParams::default(), &config_map("subject", &[]))
        .await
        .unwrap();
    let recorder = events::Recorder::new(
        s.client(),
        events::Reporter {
            controller: "strom-operator".into(),
            instance: Some("test".into()),
        },
    );
    let reference: ObjectReference = cm.object_ref(&());
    for _ in 0..2 {
        recorder
            .publish(
                &events::Event {
                    type_: events::EventType::Normal,
                    reason: "Deploying".into(),
                    note: Some("deploying the job".into()),
                    action: "Deploy".into(),
                    secondary: None,
                },
                &reference,
            )
            .await
            .unwrap();
    }
    let evs: Api<K8sEvent> = Api::default_namespaced(s.client());
    let list = evs.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    let ev = &list.items[0];
    assert_eq!(ev.reason.as_deref(), Some("Deploying"));
    assert_eq!(ev.series.as_ref().map(|s| s.count), Some(2));
    assert_eq!(
        ev.regarding.as_ref().and_then(|r| r.name.as_deref()),
        Some("subject")
    );
}

#[tokio::test]
async fn leases_use_optimistic_concurrency() {
    let s = server().await;
    let leases: Api<Lease> = Api::default_namespaced(s.client());
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": "leader"},
        "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15},
    }))
    .unwrap();
    let created = leases.create(&PostParams::default(), &lease).await.unwrap();
    let mut b = created.clone();
    b.spec.as_mut().unwrap().holder_identity = Some("b".into());
    let mut c = created.clone();
    c.spec.as_mut().unwrap().holder_identity = Some("c".into());
    let pp = PostParams::default();
    let (rb, rc) = tokio::join!(
        leases.replace("leader", &pp, &b),
        leases.replace("leader", &pp, &c)
    );
    assert!(rb.is_ok() != rc.is_ok(), "exactly one write wins");
    let loser = rb.err().or(rc.err()).unwrap();
    assert_eq!(api_error(loser).code, 409);
}

#[tokio::test]
async fn services_namespaces_and_requests() {
    let s = server().await;
    let svcs: Api<Service> = Api::namespaced(s.client(), "jobs");
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "master"},
        "spec": {"selector": {"app": "x"}, "ports": [{"name": "rpc", "port": 6123}]},
    }))
    .unwrap();
    let pp = PatchParams::apply("op");
    let created = svcs
        .patch("master", &pp, &Patch::Apply(&svc))
        .await
        .unwrap();
    let spec = created.spec.clone().unwrap();
    // A cluster IP on loopback (the simulated Service range), so kube-proxy can serve it.
    let ip: std::net::IpAddr = spec
        .cluster_ip
        .as_deref()
        .and_then(|ip| ip.parse().ok())
        .expect("a cluster IP");
    assert!(ip.is_loopback(), "{ip}");
    assert_eq!(
        spec.ports.unwrap()[0].target_port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(6123))
    );
    let again = svcs
        .patch("master", &pp, &Patch::Apply(&svc))
        .await
        .unwrap();
    assert_eq!(
        again.metadata.resource_version,
        created.metadata.resource_version
    );
    assert_eq!(s.request_count("patch", "services"), 2);
    assert_eq!(s.write_count("services"), 2);
    assert_eq!(s.objects("", "v1", "services").len(), 1);

    // A namespace's deletion takes its contents.
    let nss: Api<Namespace> = Api::all(s.client());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "jobs"}})).unwrap(),
    )
    .await
    .unwrap();
    nss.delete("jobs", &DeleteParams::default()).await.unwrap();
    eventually("the namespace to go", async || {
        nss.get_opt("jobs").await.unwrap().is_none()
            && svcs.get_opt("master").await.unwrap().is_none()
    })
    .await;
}

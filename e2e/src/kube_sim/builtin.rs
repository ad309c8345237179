//! What the real server does to built-in objects on every write: decode them strictly
//! into their types (so unknown fields are dropped and malformed ones are a 400), drop
//! empty lists and maps the way Go's `omitempty` does, apply the defaults an operator
//! could trip over (Deployments, Pods, Services, Namespaces), and validate what an
//! operator could get wrong (names, labels, owner references, a Deployment's selector).

use super::selector::{LabelSelector, label_selector_string};
use k8s_openapi::api::{apps, coordination, core, events, rbac};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Map, Value, json};

fn roundtrip<T: DeserializeOwned + Serialize>(v: &Value) -> Result<Value, String> {
    let typed: T = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
    serde_json::to_value(&typed).map_err(|e| e.to_string())
}

/// Decodes `obj` as its built-in type and encodes it again; `Err` is a decoding error
/// (a 400 on the real server).
pub(crate) fn decode(group: &str, plural: &str, obj: &mut Value) -> Result<(), String> {
    let out = match (group, plural) {
        ("", "configmaps") => roundtrip::<core::v1::ConfigMap>(obj)?,
        ("", "services") => roundtrip::<core::v1::Service>(obj)?,
        ("", "serviceaccounts") => roundtrip::<core::v1::ServiceAccount>(obj)?,
        ("", "secrets") => {
            // stringData is write-only: it lands base64-encoded in data.
            let mut secret: core::v1::Secret =
                serde_json::from_value(obj.clone()).map_err(|e| e.to_string())?;
            if let Some(strings) = secret.string_data.take() {
                let data = secret.data.get_or_insert_with(Default::default);
                for (k, v) in strings {
                    data.insert(k, k8s_openapi::ByteString(v.into_bytes()));
                }
            }
            serde_json::to_value(&secret).map_err(|e| e.to_string())?
        }
        ("", "pods") => roundtrip::<core::v1::Pod>(obj)?,
        ("", "events") => roundtrip::<core::v1::Event>(obj)?,
        ("", "endpoints") => roundtrip::<core::v1::Endpoints>(obj)?,
        ("", "namespaces") => roundtrip::<core::v1::Namespace>(obj)?,
        ("apps", "deployments") => roundtrip::<apps::v1::Deployment>(obj)?,
        ("rbac.authorization.k8s.io", "roles") => roundtrip::<rbac::v1::Role>(obj)?,
        ("rbac.authorization.k8s.io", "rolebindings") => roundtrip::<rbac::v1::RoleBinding>(obj)?,
        ("coordination.k8s.io", "leases") => roundtrip::<coordination::v1::Lease>(obj)?,
        ("events.k8s.io", "events") => roundtrip::<events::v1::Event>(obj)?,
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            roundtrip::<CustomResourceDefinition>(obj)?
        }
        _ => return Ok(()),
    };
    *obj = out;
    strip_empty(obj);
    Ok(())
}

/// Decodes `metadata` as ObjectMeta (custom resources: the rest is the schema's).
pub(crate) fn decode_metadata(obj: &mut Value) -> Result<(), String> {
    let Some(meta) = obj.get("metadata") else {
        return Ok(());
    };
    let mut meta = roundtrip::<ObjectMeta>(meta)?;
    strip_empty(&mut meta);
    if let Some(map) = obj.as_object_mut() {
        map.insert("metadata".into(), meta);
    }
    Ok(())
}

/// Map-typed fields Go omits when empty (struct-typed ones, like `securityContext: {}`,
/// stay).
const MAP_FIELDS: &[&str] = &[
    "labels",
    "annotations",
    "data",
    "binaryData",
    "matchLabels",
    "nodeSelector",
    "limits",
    "requests",
];

fn strip_empty(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for child in map.values_mut() {
                strip_empty(child);
            }
            map.retain(|k, child| match child {
                Value::Array(a) => !a.is_empty(),
                Value::Object(m) => !m.is_empty() || !MAP_FIELDS.contains(&k.as_str()),
                _ => true,
            });
        }
        Value::Array(items) => {
            for item in items {
                strip_empty(item);
            }
        }
        _ => {}
    }
}

fn or_insert(map: &mut Map<String, Value>, key: &str, value: Value) {
    map.entry(key.to_string()).or_insert(value);
}

fn object_at<'a>(v: &'a mut Value, path: &[&str]) -> Option<&'a mut Map<String, Value>> {
    path.iter()
        .try_fold(v, |cur, k| cur.get_mut(*k))?
        .as_object_mut()
}

fn pod_spec_defaults(spec: &mut Map<String, Value>) {
    or_insert(spec, "restartPolicy", json!("Always"));
    or_insert(spec, "terminationGracePeriodSeconds", json!(30));
    or_insert(spec, "dnsPolicy", json!("ClusterFirst"));
    or_insert(spec, "schedulerName", json!("default-scheduler"));
    or_insert(spec, "securityContext", json!({}));
    for list in ["containers", "initContainers"] {
        let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for c in containers.iter_mut().filter_map(Value::as_object_mut) {
            or_insert(c, "terminationMessagePath", json!("/dev/termination-log"));
            or_insert(c, "terminationMessagePolicy", json!("File"));
            let image = c.get("image").and_then(Value::as_str).unwrap_or_default();
            let tagged = image
                .rsplit('/')
                .next()
                .is_some_and(|last| last.contains(':') && !last.ends_with(":latest"))
                || image.contains('@');
            let policy = if tagged { "IfNotPresent" } else { "Always" };
            or_insert(c, "imagePullPolicy", json!(policy));
            if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
                for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                    or_insert(p, "protocol", json!("TCP"));
                }
            }
        }
    }
}

/// Hands out cluster IPs.
pub(crate) struct Allocator {
    next_ip: u32,
    /// The second octet of this API server's Service range.
    network: u8,
}

impl Default for Allocator {
    /// Each API server of the process gets its own Service range, 127.N.0.0/16 with N
    /// from 128 up, so simulated clusters running side by side (tests in parallel) never
    /// hand out the same cluster IP.
    fn default() -> Self {
        static SERVERS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let k = SERVERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Allocator {
            next_ip: 0,
            network: 128 + (k % 120) as u8,
        }
    }
}

impl Allocator {
    fn cluster_ip(&mut self) -> String {
        self.next_ip += 1;
        // On loopback, so the pod runner's kube-proxy can listen on every cluster IP; the
        // first address is the `kubernetes` Service's.
        let n = self.next_ip + 1;
        format!("127.{}.{}.{}", self.network, (n >> 8) & 0xff, n & 0xff)
    }
}

/// The defaults the real server fills in.
pub(crate) fn defaults(
    group: &str,
    plural: &str,
    obj: &mut Value,
    old: Option<&Value>,
    alloc: &mut Allocator,
) {
    match (group, plural) {
        ("apps", "deployments") => {
            if let Some(spec) = object_at(obj, &["spec"]) {
                or_insert(spec, "replicas", json!(1));
                or_insert(spec, "revisionHistoryLimit", json!(10));
                or_insert(spec, "progressDeadlineSeconds", json!(600));
                let strategy = spec.entry("strategy").or_insert_with(|| json!({}));
                if let Some(s) = strategy.as_object_mut() {
                    or_insert(s, "type", json!("RollingUpdate"));
                    if s.get("type") == Some(&json!("RollingUpdate")) {
                        let ru = s.entry("rollingUpdate").or_insert_with(|| json!({}));
                        if let Some(ru) = ru.as_object_mut() {
                            or_insert(ru, "maxUnavailable", json!("25%"));
                            or_insert(ru, "maxSurge", json!("25%"));
                        }
                    }
                }
            }
            if let Some(pod) = object_at(obj, &["spec", "template", "spec"]) {
                pod_spec_defaults(pod);
            }
        }
        ("", "pods") => {
            if let Some(pod) = object_at(obj, &["spec"]) {
                pod_spec_defaults(pod);
            }
        }
        ("", "services") => {
            let old_ip = old
                .and_then(|o| o.get("spec")?.get("clusterIP")?.as_str())
                .map(str::to_string);
            let Some(spec) = object_at(obj, &["spec"]) else {
                return;
            };
            or_insert(spec, "type", json!("ClusterIP"));
            or_insert(spec, "sessionAffinity", json!("None"));
            if spec.get("type") != Some(&json!("ExternalName")) {
                if !spec.contains_key("clusterIP") {
                    let ip = old_ip.unwrap_or_else(|| alloc.cluster_ip());
                    spec.insert("clusterIP".into(), json!(ip));
                }
                let ip = spec.get("clusterIP").cloned().unwrap_or(Value::Null);
                or_insert(spec, "clusterIPs", json!([ip]));
                if ip != json!("None") {
                    or_insert(spec, "ipFamilies", json!(["IPv4"]));
                    or_insert(spec, "ipFamilyPolicy", json!("SingleStack"));
                }
                or_insert(spec, "internalTrafficPolicy", json!("Cluster"));
            }
            if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
                for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                    or_insert(p, "protocol", json!("TCP"));
                    if let Some(port) = p.get("port").cloned() {
                        or_insert(p, "targetPort", port);
                    }
                }
            }
        }
        ("", "namespaces") => {
            let name = obj
                .get("metadata")
                .and_then(|m| m.get("name"))
                .cloned()
                .unwrap_or(Value::Null);
            let meta = super::meta::meta_mut(obj);
            let labels = meta.entry("labels").or_insert_with(|| json!({}));
            if let Some(labels) = labels.as_object_mut() {
                labels.insert("kubernetes.io/metadata.name".into(), name);
            }
            if let Some(map) = obj.as_object_mut() {
                let spec = map.entry("spec").or_insert_with(|| json!({}));
                if let Some(spec) = spec.as_object_mut() {
                    or_insert(spec, "finalizers", json!(["kubernetes"]));
                }
                let status = map.entry("status").or_insert_with(|| json!({}));
                if let Some(status) = status.as_object_mut() {
                    or_insert(status, "phase", json!("Active"));
                }
            }
        }
        _ => {}
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

fn is_dns1035_label(s: &str) -> bool {
    is_dns_label(s) && s.starts_with(|c: char| c.is_ascii_lowercase())
}

/// A label value, or the name part of a label/annotation key.
fn is_qualified_part(s: &str, allow_empty: bool) -> bool {
    if s.is_empty() {
        return allow_empty;
    }
    s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn is_qualified_key(k: &str) -> bool {
    match k.split_once('/') {
        Some((prefix, name)) => is_dns_subdomain(prefix) && is_qualified_part(name, false),
        None => is_qualified_part(k, false),
    }
}

/// Metadata checks every kind gets: the name, labels, annotation keys, owner references.
pub(crate) fn validate_metadata(plural: &str, custom: bool, obj: &Value, causes: &mut Vec<String>) {
    let meta = obj.get("metadata");
    let name = meta
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let name_ok = match (custom, plural) {
        (false, "services") => is_dns1035_label(name),
        (false, "namespaces") => is_dns_label(name),
        _ => is_dns_subdomain(name),
    };
    if !name_ok {
        causes.push(format!(
            "metadata.name: Invalid value: {name:?}: a lowercase RFC 1123 {} must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
            if plural == "namespaces" || plural == "services" { "label" } else { "subdomain" }
        ));
    }
    if let Some(labels) = meta
        .and_then(|m| m.get("labels"))
        .and_then(Value::as_object)
    {
        for (k, v) in labels {
            if !is_qualified_key(k) {
                causes.push(format!("metadata.labels: Invalid value: {k:?}: name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"));
            }
            match v.as_str() {
                Some(v) if is_qualified_part(v, true) => {}
                _ => causes.push(format!("metadata.labels: Invalid value: {v}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (at most 63 characters)")),
            }
        }
    }
    if let Some(annotations) = meta
        .and_then(|m| m.get("annotations"))
        .and_then(Value::as_object)
    {
        for k in annotations.keys().filter(|k| !is_qualified_key(k)) {
            causes.push(format!("metadata.annotations: Invalid value: {k:?}: name part must consist of alphanumeric characters, '-', '_' or '.'"));
        }
        let size: usize = annotations
            .iter()
            .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
            .sum();
        if size > 256 * 1024 {
            causes.push("metadata.annotations: Too long: must have at most 262144 bytes".into());
        }
    }
    if let Some(refs) = meta
        .and_then(|m| m.get("ownerReferences"))
        .and_then(Value::as_array)
    {
        let mut controllers = 0;
        for (i, r) in refs.iter().enumerate() {
            for field in ["apiVersion", "kind", "name", "uid"] {
                if r.get(field)
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    causes.push(format!("metadata.ownerReferences[{i}].{field}: Invalid value: \"\": {field} must not be empty"));
                }
            }
            if r.get("controller").and_then(Value::as_bool) == Some(true) {
                controllers += 1;
            }
        }
        if controllers > 1 {
            causes.push("metadata.ownerReferences: Invalid value: []: Only one reference can have Controller set to true".into());
        }
    }
}

fn validate_containers(spec: Option<&Value>, path: &str, causes: &mut Vec<String>) {
    let containers = spec
        .and_then(|s| s.get("containers"))
        .and_then(Value::as_array);
    let Some(containers) = containers.filter(|c| !c.is_empty()) else {
        causes.push(format!("{path}.containers: Required value"));
        return;
    };
    let mut seen = std::collections::BTreeSet::new();
    for (i, c) in containers.iter().enumerate() {
        let name = c.get("name").and_then(Value::as_str).unwrap_or_default();
        if !is_dns_label(name) {
            causes.push(format!("{path}.containers[{i}].name: Invalid value: {name:?}: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-'"));
        } else if !seen.insert(name) {
            causes.push(format!(
                "{path}.containers[{i}].name: Duplicate value: {name:?}"
            ));
        }
        if c.get("image")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            causes.push(format!("{path}.containers[{i}].image: Required value"));
        }
    }
}

/// Per-kind checks (after defaults); `old` on updates.
pub(crate) fn validate(
    group: &str,
    plural: &str,
    obj: &Value,
    old: Option<&Value>,
    causes: &mut Vec<String>,
) {
    match (group, plural) {
        ("apps", "deployments") => {
            let spec = obj.get("spec");
            let selector = spec.and_then(|s| s.get("selector"));
            let template_labels = spec
                .and_then(|s| s.get("template"))
                .and_then(|t| t.get("metadata"))
                .and_then(|m| m.get("labels"))
                .cloned()
                .unwrap_or_else(|| json!({}));
            match selector
                .map(label_selector_string)
                .filter(|s| !s.is_empty())
            {
                None => causes.push("spec.selector: Required value".into()),
                Some(sel) => {
                    let matches = LabelSelector::parse(&sel).is_ok_and(|s| {
                        s.matches(&json!({"metadata": {"labels": template_labels}}))
                    });
                    if !matches {
                        causes.push(format!("spec.template.metadata.labels: Invalid value: {template_labels}: `selector` does not match template `labels`"));
                    }
                }
            }
            if let Some(old_sel) = old.and_then(|o| o.get("spec")?.get("selector"))
                && Some(old_sel) != selector
            {
                causes.push(format!(
                    "spec.selector: Invalid value: {}: field is immutable",
                    selector.cloned().unwrap_or(Value::Null)
                ));
            }
            if spec
                .and_then(|s| s.get("replicas"))
                .and_then(Value::as_i64)
                .is_some_and(|r| r < 0)
            {
                causes.push(
                    "spec.replicas: Invalid value: must be greater than or equal to 0".into(),
                );
            }
            validate_containers(
                spec.and_then(|s| s.get("template"))
                    .and_then(|t| t.get("spec")),
                "spec.template.spec",
                causes,
            );
        }
        ("", "pods") => validate_containers(obj.get("spec"), "spec", causes),
        ("", "services") => {
            let ip = |o: &Value| {
                o.get("spec")?
                    .get("clusterIP")?
                    .as_str()
                    .map(str::to_string)
            };
            if let (Some(old_ip), Some(new_ip)) = (old.and_then(ip), ip(obj))
                && old_ip != new_ip
            {
                causes.push(format!(
                    "spec.clusterIPs[0]: Invalid value: {new_ip:?}: may not change once set"
                ));
            }
            let ports = obj
                .get("spec")
                .and_then(|s| s.get("ports"))
                .and_then(Value::as_array);
            for (i, p) in ports.into_iter().flatten().enumerate() {
                if !p
                    .get("port")
                    .and_then(Value::as_i64)
                    .is_some_and(|n| (1..=65535).contains(&n))
                {
                    causes.push(format!("spec.ports[{i}].port: Invalid value: {}: must be between 1 and 65535, inclusive", p.get("port").cloned().unwrap_or(Value::Null)));
                }
            }
        }
        ("coordination.k8s.io", "leases")
            if obj
                .get("spec")
                .and_then(|s| s.get("leaseDurationSeconds"))
                .and_then(Value::as_i64)
                .is_some_and(|d| d <= 0) =>
        {
            causes.push("spec.leaseDurationSeconds: Invalid value: must be greater than 0".into());
        }
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            let spec = obj.get("spec");
            let field = |k: &str| {
                spec.and_then(|s| s.get("names"))
                    .and_then(|n| n.get(k))
                    .and_then(Value::as_str)
            };
            let group = spec
                .and_then(|s| s.get("group"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            let expected = format!("{}.{group}", field("plural").unwrap_or_default());
            let name = obj
                .get("metadata")
                .and_then(|m| m.get("name"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            if name != expected {
                causes.push(format!("metadata.name: Invalid value: {name:?}: must be spec.names.plural+\".\"+spec.group"));
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_labels() {
        assert!(is_dns_subdomain("my-job.v1"));
        assert!(!is_dns_subdomain("My_Job"));
        assert!(is_dns1035_label("job-1"));
        assert!(!is_dns1035_label("1job"));
        assert!(is_qualified_key("strom.dev/job"));
        assert!(!is_qualified_key("strom.dev/"));
        assert!(is_qualified_part("", true));
        assert!(!is_qualified_part("strom:dev", true));
    }

    #[test]
    fn deployments_get_defaults_and_their_selector_checked() {
        let mut d = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "labels": {}},
            "spec": {"selector": {"matchLabels": {"app": "x"}},
                     "template": {"metadata": {"labels": {"app": "x"}},
                                  "spec": {"containers": [{"name": "c", "image": "strom:1", "env": []}]}}}
        });
        decode("apps", "deployments", &mut d).unwrap();
        assert!(d["metadata"].get("labels").is_none());
        assert!(
            d["spec"]["template"]["spec"]["containers"][0]
                .get("env")
                .is_none()
        );
        defaults(
            "apps",
            "deployments",
            &mut d,
            None,
            &mut Allocator::default(),
        );
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
            "IfNotPresent"
        );
        let mut causes = Vec::new();
        validate("apps", "deployments", &d, None, &mut causes);
        assert!(causes.is_empty(), "{causes:?}");
        let mut other = d.clone();
        other["spec"]["template"]["metadata"]["labels"]["app"] = json!("y");
        validate("apps", "deployments", &other, None, &mut causes);
        assert_eq!(causes.len(), 1, "{causes:?}");
    }
}

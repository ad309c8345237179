//! The resource types the server serves: the built-in ones and those of registered
//! CustomResourceDefinitions.

use super::meta::dotted;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Checks a custom resource's spec (new, and old on updates) the way the API server runs
/// the CRD's CEL rules; `Err` carries the rules' messages. The operator's tests pass
/// `StreamJobSpec::validate_cel` wrapped in one.
pub type SpecValidator =
    Arc<dyn Fn(&Value, Option<&Value>) -> Result<(), String> + Send + Sync + 'static>;

/// Where the scale subresource reads and writes the replicas (as in a CRD's
/// `subresources.scale`).
#[derive(Clone, Debug)]
pub(crate) struct ScalePaths {
    pub spec_replicas: Vec<String>,
    pub status_replicas: Vec<String>,
    pub label_selector: Option<Vec<String>>,
}

/// One resource (group + plural) and how it is served.
#[derive(Clone)]
pub(crate) struct ResourceType {
    pub group: String,
    /// Served versions, the preferred one first.
    pub versions: Vec<String>,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub namespaced: bool,
    /// A `status` subresource: writes to the resource ignore `.status`, writes to
    /// `/status` change only `.status`.
    pub status: bool,
    pub scale: Option<ScalePaths>,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    /// Custom resources: the OpenAPI schema per version (`openAPIV3Schema`).
    pub schemas: BTreeMap<String, Value>,
    pub validator: Option<SpecValidator>,
    pub custom: bool,
}

impl ResourceType {
    /// `apps/v1`, or `v1` for the core group.
    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{}", self.group, version)
        }
    }

    /// How errors name the resource: `deployments.apps`, `configmaps`.
    pub fn resource_group(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    pub fn key(&self) -> (String, String) {
        (self.group.clone(), self.plural.clone())
    }

    /// The storage version (objects are kept once, served at any served version).
    pub fn storage_version(&self) -> &str {
        self.versions.first().map(String::as_str).unwrap_or("v1")
    }
}

struct Builtin {
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    status: bool,
    short_names: &'static [&'static str],
}

const BUILTINS: &[Builtin] = &[
    Builtin {
        group: "",
        version: "v1",
        plural: "configmaps",
        kind: "ConfigMap",
        namespaced: true,
        status: false,
        short_names: &["cm"],
    },
    Builtin {
        group: "",
        version: "v1",
        plural: "services",
        kind: "Service",
        namespaced: true,
        status: true,
        short_names: &["svc"],
    },
    Builtin {
        group: "",
        version: "v1",
        plural: "serviceaccounts",
        kind: "ServiceAccount",
        namespaced: true,
        status: false,
        short_names: &["sa"],
    },
    Builtin {
        group: "",
        version: "v1",
        plural: "secrets",
        kind: "Secret",
        namespaced: true,
        status: false,
        short_names: &[],
    },
    Builtin {
        group: "",
        version: "v1",
        plural: "pods",
        kind: "Pod",
        namespaced: true,
        status: true,
        short_names: &["po"],
    },
    Builtin {
        group: "",
        version: "v1",
        plural: "events",
        kind: "Event",
        namespaced: true,
        status: false,
        short_names: &["ev"],
    },
    Builtin {
        group: "",
        version: "v1",
        plural: "endpoints",
        kind: "Endpoints",
        namespaced: true,
        status: false,
        short_names: &["ep"],
    },
    Builtin {
        group: "",
        version: "v1",
        plural: "namespaces",
        kind: "Namespace",
        namespaced: false,
        status: true,
        short_names: &["ns"],
    },
    Builtin {
        group: "apps",
        version: "v1",
        plural: "deployments",
        kind: "Deployment",
        namespaced: true,
        status: true,
        short_names: &["deploy"],
    },
    Builtin {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        plural: "roles",
        kind: "Role",
        namespaced: true,
        status: false,
        short_names: &[],
    },
    Builtin {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        plural: "rolebindings",
        kind: "RoleBinding",
        namespaced: true,
        status: false,
        short_names: &[],
    },
    Builtin {
        group: "coordination.k8s.io",
        version: "v1",
        plural: "leases",
        kind: "Lease",
        namespaced: true,
        status: false,
        short_names: &[],
    },
    Builtin {
        group: "events.k8s.io",
        version: "v1",
        plural: "events",
        kind: "Event",
        namespaced: true,
        status: false,
        short_names: &["ev"],
    },
    Builtin {
        group: "apiextensions.k8s.io",
        version: "v1",
        plural: "customresourcedefinitions",
        kind: "CustomResourceDefinition",
        namespaced: false,
        status: true,
        short_names: &["crd", "crds"],
    },
];

/// The built-in resource types.
pub(crate) fn builtins() -> Vec<ResourceType> {
    BUILTINS
        .iter()
        .map(|b| ResourceType {
            group: b.group.to_string(),
            versions: vec![b.version.to_string()],
            plural: b.plural.to_string(),
            singular: b.kind.to_lowercase(),
            kind: b.kind.to_string(),
            namespaced: b.namespaced,
            status: b.status,
            // Deployments scale like `kubectl scale deploy` expects; the selector is the
            // LabelSelector object, rendered as a string by the scale subresource.
            scale: (b.plural == "deployments").then(|| ScalePaths {
                spec_replicas: dotted(".spec.replicas"),
                status_replicas: dotted(".status.replicas"),
                label_selector: Some(dotted(".spec.selector")),
            }),
            short_names: b.short_names.iter().map(|s| s.to_string()).collect(),
            categories: if b.group.is_empty() || b.group == "apps" {
                vec!["all".to_string()]
            } else {
                Vec::new()
            },
            schemas: BTreeMap::new(),
            validator: None,
            custom: false,
        })
        .collect()
}

/// The resource type a CustomResourceDefinition (as JSON) defines, or why it cannot.
pub(crate) fn from_crd(
    crd: &Value,
    validator: Option<SpecValidator>,
) -> Result<ResourceType, String> {
    let spec = crd.get("spec").ok_or("spec: Required value")?;
    let group = spec
        .get("group")
        .and_then(Value::as_str)
        .ok_or("spec.group: Required value")?;
    let names = spec.get("names").ok_or("spec.names: Required value")?;
    let name_of = |field: &str| names.get(field).and_then(Value::as_str).map(str::to_string);
    let plural = name_of("plural").ok_or("spec.names.plural: Required value")?;
    let kind = name_of("kind").ok_or("spec.names.kind: Required value")?;
    let singular = name_of("singular").unwrap_or_else(|| kind.to_lowercase());
    let strings = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let namespaced = spec.get("scope").and_then(Value::as_str) != Some("Cluster");
    let versions = spec
        .get("versions")
        .and_then(Value::as_array)
        .filter(|v| !v.is_empty())
        .ok_or("spec.versions: Required value")?;
    let mut served = Vec::new();
    let mut schemas = BTreeMap::new();
    let mut status = false;
    let mut scale = None;
    for v in versions {
        let name = v
            .get("name")
            .and_then(Value::as_str)
            .ok_or("spec.versions[].name: Required value")?;
        if v.get("served").and_then(Value::as_bool) == Some(false) {
            continue;
        }
        let storage = v.get("storage").and_then(Value::as_bool) == Some(true);
        // The storage version first: it is the one objects are kept in.
        if storage {
            served.insert(0, name.to_string());
        } else {
            served.push(name.to_string());
        }
        if let Some(schema) = v.get("schema").and_then(|s| s.get("openAPIV3Schema")) {
            schemas.insert(name.to_string(), schema.clone());
        }
        // Subresources are per version; the storage version's win (they agree in
        // practice).
        if let Some(sub) = v.get("subresources")
            && (storage || scale.is_none() && !status)
        {
            status = sub.get("status").is_some();
            scale = sub.get("scale").and_then(|s| {
                Some(ScalePaths {
                    spec_replicas: dotted(s.get("specReplicasPath")?.as_str()?),
                    status_replicas: dotted(s.get("statusReplicasPath")?.as_str()?),
                    label_selector: s
                        .get("labelSelectorPath")
                        .and_then(Value::as_str)
                        .map(dotted),
                })
            });
        }
    }
    if served.is_empty() {
        return Err("spec.versions: no version is served".into());
    }
    Ok(ResourceType {
        group: group.to_string(),
        versions: served,
        singular,
        kind,
        namespaced,
        status,
        scale,
        short_names: strings(names.get("shortNames")),
        categories: strings(names.get("categories")),
        schemas,
        validator,
        custom: true,
        plural,
    })
}

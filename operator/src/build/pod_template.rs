//! Merging a StreamJob's `podTemplate` into the pods the operator builds, the way
//! Kubernetes merges a strategic-merge patch: objects merge key by key, lists of named
//! things (containers, volumes, env, ports, volumeMounts) merge by `name`, any other
//! value of the user's replaces the operator's. So a user adds a sidecar, a volume, an
//! env var, tolerations or labels without repeating the operator's container; the
//! operator's container is named `strom` in both pods, and a `strom` entry in the
//! template patches it.

use serde_json::Value;

/// `base` with `patch` merged in.
pub fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(base), Value::Object(patch)) => {
            for (key, value) in patch {
                match base.get_mut(key) {
                    Some(existing) if !value.is_null() => merge(existing, value),
                    _ => {
                        base.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (Value::Array(base), Value::Array(patch))
            if is_named_list(base) && is_named_list(patch) =>
        {
            for item in patch {
                let name = item.get("name");
                match base.iter_mut().find(|b| b.get("name") == name) {
                    Some(existing) => merge(existing, item),
                    None => base.push(item.clone()),
                }
            }
        }
        (base, patch) => *base = patch.clone(),
    }
}

/// A list whose every element is an object with a `name`.
fn is_named_list(items: &[Value]) -> bool {
    items
        .iter()
        .all(|i| i.get("name").and_then(Value::as_str).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn named_lists_merge_by_name_and_other_values_are_replaced() {
        let mut pod = json!({
            "metadata": {"labels": {"app": "strom"}},
            "spec": {
                "containers": [{"name": "strom", "image": "strom:1",
                                "env": [{"name": "A", "value": "1"}]}],
                "volumes": [{"name": "config", "configMap": {"name": "x"}}],
                "nodeSelector": {"disk": "hdd"},
            }
        });
        merge(
            &mut pod,
            &json!({
                "metadata": {"labels": {"team": "payments"}},
                "spec": {
                    "containers": [
                        {"name": "strom", "env": [{"name": "B", "value": "2"}, {"name": "A", "value": "3"}]},
                        {"name": "sidecar", "image": "envoy"}
                    ],
                    "nodeSelector": {"disk": "ssd"},
                    "tolerations": [{"key": "dedicated", "operator": "Exists"}],
                }
            }),
        );
        assert_eq!(
            pod,
            json!({
                "metadata": {"labels": {"app": "strom", "team": "payments"}},
                "spec": {
                    "containers": [
                        {"name": "strom", "image": "strom:1",
                         "env": [{"name": "A", "value": "3"}, {"name": "B", "value": "2"}]},
                        {"name": "sidecar", "image": "envoy"}
                    ],
                    "volumes": [{"name": "config", "configMap": {"name": "x"}}],
                    "nodeSelector": {"disk": "ssd"},
                    "tolerations": [{"key": "dedicated", "operator": "Exists"}],
                }
            })
        );
    }
}

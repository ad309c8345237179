//! Patch bodies: JSON merge patch, strategic merge patch (as merge patch: lists are
//! replaced, `$` directives dropped) and JSON patch (RFC 6902, with the real server's
//! leniency of a `test` for `null` passing on a missing path, which kube-runtime's
//! finalizer helper relies on).

use super::error::{ApiError, ApiResult};
use json_patch::PatchOperation;
use serde_json::Value;

/// The patch types of `Content-Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PatchKind {
    Merge,
    Strategic,
    Json,
    Apply,
}

impl PatchKind {
    pub fn from_content_type(ct: &str) -> Option<Self> {
        let base = ct.split(';').next().unwrap_or_default().trim();
        match base {
            "application/merge-patch+json" => Some(PatchKind::Merge),
            "application/strategic-merge-patch+json" => Some(PatchKind::Strategic),
            "application/json-patch+json" => Some(PatchKind::Json),
            "application/apply-patch+yaml" | "application/apply-patch+json" => {
                Some(PatchKind::Apply)
            }
            _ => None,
        }
    }
}

/// Parses a body as JSON, or YAML for apply patches.
pub(crate) fn parse_body(kind: PatchKind, body: &[u8]) -> ApiResult<Value> {
    let parsed = if kind == PatchKind::Apply {
        serde_yaml::from_slice::<Value>(body).map_err(|e| e.to_string())
    } else {
        serde_json::from_slice::<Value>(body).map_err(|e| e.to_string())
    };
    parsed.map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))
}

fn drop_directives(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.retain(|k, _| !k.starts_with('$'));
            map.values_mut().for_each(drop_directives);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_directives),
        _ => {}
    }
}

/// `target` with a merge, strategic or JSON patch applied.
pub(crate) fn apply_patch(kind: PatchKind, target: &Value, patch: &Value) -> ApiResult<Value> {
    let mut doc = target.clone();
    match kind {
        PatchKind::Merge | PatchKind::Strategic => {
            if !patch.is_object() {
                return Err(ApiError::bad_request(
                    "error decoding patch: a merge patch must be a JSON object",
                ));
            }
            let mut patch = patch.clone();
            if kind == PatchKind::Strategic {
                drop_directives(&mut patch);
            }
            json_patch::merge(&mut doc, &patch);
        }
        PatchKind::Json => {
            let ops: Vec<PatchOperation> = serde_json::from_value(patch.clone())
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            for op in ops {
                if let PatchOperation::Test(test) = &op
                    && test.value.is_null()
                    && doc.pointer(test.path.as_str()).is_none()
                {
                    continue;
                }
                json_patch::patch(&mut doc, std::slice::from_ref(&op)).map_err(|e| {
                    ApiError::new(
                        422,
                        "Invalid",
                        format!(
                            "the server rejected our request due to an error in our request: {e}"
                        ),
                    )
                })?;
            }
        }
        PatchKind::Apply => {
            return Err(ApiError::bad_request("apply is not a plain patch"));
        }
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_patch_tests_for_null_pass_on_missing_paths() {
        let doc = json!({"metadata": {"name": "x"}});
        let patch = json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": ["f"]},
        ]);
        let out = apply_patch(PatchKind::Json, &doc, &patch).unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["f"]));
        let bad = json!([{"op": "test", "path": "/metadata/name", "value": "y"}]);
        assert_eq!(
            apply_patch(PatchKind::Json, &doc, &bad).unwrap_err().code,
            422
        );
    }

    #[test]
    fn merge_patches_remove_nulls() {
        let doc = json!({"a": {"b": 1, "c": 2}});
        let out = apply_patch(
            PatchKind::Strategic,
            &doc,
            &json!({"a": {"b": null, "$patch": "x"}}),
        )
        .unwrap();
        assert_eq!(out, json!({"a": {"c": 2}}));
    }
}

//! What the API server does with a custom resource's OpenAPI schema: prune unknown
//! fields, apply `default`s, check types, `required`, bounds, lengths, enums and
//! patterns, and run the CEL rules (`x-kubernetes-validations`), transition rules with
//! `oldSelf` included.

use kube::core::cel::Validator;
use serde_json::{Map, Value};

thread_local! {
    // Registering the Kubernetes CEL functions is not free: once per thread.
    static VALIDATOR: Validator = Validator::new();
}

fn preserves_unknown(schema: &Value) -> bool {
    schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true)
}

fn nullable(schema: &Value) -> bool {
    schema.get("nullable").and_then(Value::as_bool) == Some(true)
}

/// Drops fields the schema does not know (and nulls where it does not allow them), as
/// the real server's pruning does. `root` keeps `apiVersion`, `kind` and `metadata`.
pub(crate) fn prune(schema: &Value, value: &mut Value, root: bool) {
    match value {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            let embedded = schema
                .get("x-kubernetes-embedded-resource")
                .and_then(Value::as_bool)
                == Some(true);
            let keep_unknown = preserves_unknown(schema);
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                let always = (root || embedded)
                    && matches!(key.as_str(), "apiVersion" | "kind" | "metadata");
                let child_schema = props.and_then(|p| p.get(&key)).or(additional);
                match child_schema {
                    Some(cs) if !(always && key == "metadata") => {
                        if map.get(&key).is_some_and(Value::is_null) && !nullable(cs) {
                            map.remove(&key);
                        } else if let Some(child) = map.get_mut(&key) {
                            prune(cs, child, false);
                        }
                    }
                    Some(_) => {}
                    None if always || keep_unknown => {}
                    None => {
                        map.remove(&key);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    prune(item_schema, item, false);
                }
            }
        }
        _ => {}
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Object(_) => "\"object\"".into(),
        Value::Array(_) => "\"array\"".into(),
        other => other.to_string(),
    }
}

/// Checks `value` against `schema`; causes are written like the real server's
/// (`spec.parallelism: Invalid value: 0: spec.parallelism in body should be greater than
/// or equal to 1`).
pub(crate) fn check(schema: &Value, value: &Value, path: &str, causes: &mut Vec<String>) {
    let at = if path.is_empty() { "<root>" } else { path };
    let int_or_string = schema
        .get("x-kubernetes-int-or-string")
        .and_then(Value::as_bool)
        == Some(true);
    if value.is_null() {
        if !nullable(schema) && schema.get("type").is_some() {
            causes.push(format!(
                "{at}: Invalid value: \"null\": {at} in body must be of type {}: \"null\"",
                schema["type"].as_str().unwrap_or("object")
            ));
        }
        return;
    }
    if int_or_string {
        if !(value.is_string() || type_name(value) == "integer") {
            causes.push(format!(
                "{at}: Invalid value: {}: {at} in body must be of type integer or string",
                show(value)
            ));
        }
    } else if let Some(expected) = schema.get("type").and_then(Value::as_str) {
        let actual = type_name(value);
        let fits = actual == expected || (expected == "number" && actual == "integer");
        if !fits {
            causes.push(format!(
                "{at}: Invalid value: {}: {at} in body must be of type {expected}: {:?}",
                show(value),
                actual
            ));
            return;
        }
    }
    if let Some(n) = value.as_f64() {
        let bound = |k: &str| schema.get(k).and_then(Value::as_f64);
        let exclusive = |k: &str| schema.get(k).and_then(Value::as_bool) == Some(true);
        if let Some(min) = bound("minimum")
            && (n < min || (exclusive("exclusiveMinimum") && n == min))
        {
            {
                let op = if exclusive("exclusiveMinimum") {
                    "greater than"
                } else {
                    "greater than or equal to"
                };
                causes.push(format!(
                    "{at}: Invalid value: {value}: {at} in body should be {op} {min}"
                ));
            }
        }
        if let Some(max) = bound("maximum")
            && (n > max || (exclusive("exclusiveMaximum") && n == max))
        {
            {
                let op = if exclusive("exclusiveMaximum") {
                    "less than"
                } else {
                    "less than or equal to"
                };
                causes.push(format!(
                    "{at}: Invalid value: {value}: {at} in body should be {op} {max}"
                ));
            }
        }
    }
    if let Some(s) = value.as_str() {
        let len = s.chars().count() as u64;
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
            && len < min
        {
            causes.push(format!(
                "{at}: Invalid value: {s:?}: {at} in body should be at least {min} chars long"
            ));
        }
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
            && len > max
        {
            causes.push(format!("{at}: Too long: may not be more than {max} bytes"));
        }
        if let Some(pattern) = schema.get("pattern").and_then(Value::as_str)
            && let Ok(re) = regex::Regex::new(pattern)
            && !re.is_match(s)
        {
            causes.push(format!(
                "{at}: Invalid value: {s:?}: {at} in body should match '{pattern}'"
            ));
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let list: Vec<String> = allowed.iter().map(show).collect();
        causes.push(format!(
            "{at}: Unsupported value: {}: supported values: {}",
            show(value),
            list.join(", ")
        ));
    }
    match value {
        Value::Object(map) => check_object(schema, map, path, causes),
        Value::Array(items) => {
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
                && (items.len() as u64) < min
            {
                causes.push(format!(
                    "{at}: Invalid value: {}: {at} in body should have at least {min} items",
                    items.len()
                ));
            }
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
                && (items.len() as u64) > max
            {
                causes.push(format!(
                    "{at}: Too many: {}: must have at most {max} items",
                    items.len()
                ));
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check(item_schema, item, &format!("{path}[{i}]"), causes);
                }
            }
        }
        _ => {}
    }
}

fn check_object(schema: &Value, map: &Map<String, Value>, path: &str, causes: &mut Vec<String>) {
    let join = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        for r in required.iter().filter_map(Value::as_str) {
            if !map.contains_key(r) {
                causes.push(format!("{}: Required value", join(r)));
            }
        }
    }
    let props = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties").filter(|a| a.is_object());
    for (k, v) in map {
        // Metadata is the server's to check, not the schema's.
        if path.is_empty() && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        if let Some(child) = props.and_then(|p| p.get(k)).or(additional) {
            check(child, v, &join(k), causes);
        }
    }
}

/// Prunes, defaults and checks a custom resource; `Err` has the causes. Runs the CEL
/// rules with `old` for transition rules.
pub(crate) fn admit(
    schema: &Value,
    obj: &mut Value,
    old: Option<&Value>,
) -> Result<(), Vec<String>> {
    prune(schema, obj, true);
    *obj = kube::core::cel::apply_defaults(schema, obj);
    let mut causes = Vec::new();
    check(schema, obj, "", &mut causes);
    if causes.is_empty()
        && let Err(errors) = VALIDATOR.with(|v| v.validate(schema, obj, old))
    {
        for e in errors.into_vec() {
            let path = if e.field_path.is_empty() {
                "<root>".to_string()
            } else {
                e.field_path.clone()
            };
            causes.push(format!("{path}: Invalid value: \"object\": {}", e.message));
        }
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(causes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["image"],
                    "properties": {
                        "image": {"type": "string", "minLength": 1},
                        "replicas": {"type": "integer", "minimum": 1, "default": 1},
                        "mode": {"type": "string", "enum": ["A", "B"]},
                        "interval": {"type": "string", "pattern": "^[0-9]+s$"},
                        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                    },
                    "x-kubernetes-validations": [{"rule": "self.replicas < 10", "message": "too many"}],
                },
                "status": {"type": "object", "properties": {"phase": {"type": "string"}}},
            }
        })
    }

    #[test]
    fn prunes_defaults_and_checks() {
        let mut obj = json!({
            "apiVersion": "x/v1", "kind": "X", "metadata": {"name": "a", "whatever": 1},
            "spec": {"image": "i", "unknown": 1, "free": {"any": {"thing": 1}}},
            "status": {"phase": "P", "extra": true},
            "top": 1,
        });
        admit(&schema(), &mut obj, None).unwrap();
        assert_eq!(
            obj["spec"],
            json!({"image": "i", "replicas": 1, "free": {"any": {"thing": 1}}})
        );
        assert_eq!(obj["status"], json!({"phase": "P"}));
        assert!(obj.get("top").is_none());
        assert_eq!(obj["metadata"]["whatever"], 1);

        let mut bad = json!({"spec": {"replicas": 0, "mode": "C", "interval": "5m", "image": 3}});
        let causes = admit(&schema(), &mut bad, None).unwrap_err();
        let all = causes.join("\n");
        assert!(all.contains("spec.replicas: Invalid value: 0"), "{all}");
        assert!(all.contains("spec.mode: Unsupported value"), "{all}");
        assert!(all.contains("should match"), "{all}");
        assert!(
            all.contains("spec.image: Invalid value: 3: spec.image in body must be of type string"),
            "{all}"
        );

        let mut cel = json!({"spec": {"image": "i", "replicas": 12}});
        let causes = admit(&schema(), &mut cel, None).unwrap_err();
        assert!(causes.join("").contains("too many"), "{causes:?}");
    }
}

//! Field ownership and an approximation of server-side apply.
//!
//! A field set is the set of leaf paths an object sets: maps are walked, everything else
//! (scalars, lists, empty maps) is a leaf, so lists are atomic, except
//! `metadata.finalizers`, which is a set (each finalizer its own member), as in the real
//! server. Each manager's set lives in `metadata.managedFields` (`fieldsV1`), like the
//! real server's, and drives apply:
//! - applied fields overwrite; a field another manager owns with a different value is a
//!   conflict unless `force` (which takes it over);
//! - fields the manager applied before and no longer applies are removed unless someone
//!   else owns them;
//! - fields set by others are kept;
//! - applying the same object again changes nothing (the entry's time is kept too), so the
//!   write is a no-op.
//!
//! Updates (create, PUT, merge/JSON patches) take over the fields they change.

use super::meta::now_time;
use serde_json::{Map, Value};
use std::collections::BTreeSet;

/// A leaf path; members of a set-list are `v:<json>` segments.
pub(crate) type FieldPath = Vec<String>;
pub(crate) type FieldSet = BTreeSet<FieldPath>;

/// Metadata the server owns; never part of a field set.
const SERVER_META: &[&str] = &[
    "name",
    "namespace",
    "generateName",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

fn is_set_list(path: &[String]) -> bool {
    path.len() == 2 && path[0] == "metadata" && path[1] == "finalizers"
}

/// The leaf paths `obj` sets.
pub(crate) fn leaf_paths(obj: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    if let Some(map) = obj.as_object() {
        for (k, v) in map {
            if k == "apiVersion" || k == "kind" {
                continue;
            }
            let mut path = vec![k.clone()];
            if k == "metadata" {
                if let Some(meta) = v.as_object() {
                    for (mk, mv) in meta {
                        if SERVER_META.contains(&mk.as_str()) {
                            continue;
                        }
                        path.push(mk.clone());
                        walk(mv, &mut path, &mut out);
                        path.pop();
                    }
                }
                continue;
            }
            walk(v, &mut path, &mut out);
        }
    }
    out
}

fn walk(v: &Value, path: &mut FieldPath, out: &mut FieldSet) {
    match v {
        Value::Null => {}
        Value::Object(map) if !map.is_empty() => {
            for (k, child) in map {
                path.push(k.clone());
                walk(child, path, out);
                path.pop();
            }
        }
        Value::Array(items) if is_set_list(path) => {
            for item in items {
                let mut member = path.clone();
                member.push(format!("v:{item}"));
                out.insert(member);
            }
        }
        _ => {
            out.insert(path.clone());
        }
    }
}

pub(crate) fn overlaps(a: &[String], b: &[String]) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// The member a `v:` segment names, parsed back to JSON.
fn member(segment: &str) -> Option<Value> {
    serde_json::from_str(segment.strip_prefix("v:")?).ok()
}

/// The value at `path` (for a set member: the member, when present).
pub(crate) fn get_field<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = obj;
    for seg in path {
        if let Some(m) = member(seg).filter(|_| cur.is_array()) {
            cur = cur.as_array()?.iter().find(|v| **v == m)?;
        } else {
            cur = cur.get(seg)?;
        }
    }
    Some(cur)
}

/// Copies the value at `path` in `from` into `to`.
fn set_field(to: &mut Value, from: &Value, path: &[String]) {
    let Some(value) = get_field(from, path) else {
        return;
    };
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = to;
    for key in parents {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        let Some(map) = cur.as_object_mut() else {
            return;
        };
        cur = map
            .entry(key.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if last.starts_with("v:") {
        if !cur.is_array() {
            *cur = Value::Array(Vec::new());
        }
        if let Some(items) = cur.as_array_mut()
            && !items.contains(value)
        {
            items.push(value.clone());
        }
        return;
    }
    if !cur.is_object() {
        *cur = Value::Object(Map::new());
    }
    if let Some(map) = cur.as_object_mut() {
        // An empty map says "this map exists", not "this map is empty".
        if is_empty_map(value) && map.get(last.as_str()).is_some_and(Value::is_object) {
            return;
        }
        map.insert(last.clone(), value.clone());
    }
}

fn is_empty_map(v: &Value) -> bool {
    v.as_object().is_some_and(Map::is_empty)
}

/// Removes the value at `path`, then the parents it leaves empty that nobody owns.
fn remove_field(obj: &mut Value, path: &[String], owned: &dyn Fn(&[String]) -> bool) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let Some(parent) = parents
        .iter()
        .try_fold(&mut *obj, |v, k| v.get_mut(k.as_str()))
    else {
        return;
    };
    // A map the manager only said should exist goes only when it is empty.
    if parent
        .get(last.as_str())
        .is_some_and(|v| v.as_object().is_some_and(|m| !m.is_empty()))
        && !last.starts_with("v:")
    {
        return;
    }
    if let Some(m) = member(last).filter(|_| parent.is_array()) {
        if let Some(items) = parent.as_array_mut() {
            items.retain(|v| *v != m);
        }
    } else if let Some(map) = parent.as_object_mut() {
        map.remove(last.as_str());
    }
    // Empty parents go too, but never the top-level fields (metadata, spec…).
    for depth in (2..=parents.len()).rev() {
        let prefix = &parents[..depth];
        let empty = get_field(obj, prefix).is_some_and(|v| match v {
            Value::Object(m) => m.is_empty(),
            Value::Array(a) => a.is_empty(),
            _ => false,
        });
        if !empty || owned(prefix) {
            break;
        }
        let (leaf, up) = prefix.split_at(prefix.len() - 1);
        if let Some(map) = up
            .iter()
            .try_fold(&mut *obj, |v, k| v.get_mut(k.as_str()))
            .and_then(Value::as_object_mut)
        {
            map.remove(leaf[0].as_str());
        }
    }
}

/// One `metadata.managedFields` entry.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ManagedEntry {
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    pub api_version: String,
    pub time: String,
    pub subresource: Option<String>,
    pub fields: FieldSet,
}

impl ManagedEntry {
    fn is(&self, manager: &str, operation: &str, subresource: Option<&str>) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource.as_deref() == subresource
    }
}

fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut cur = &mut root;
        for (i, seg) in path.iter().enumerate() {
            let key = if seg.starts_with("v:") {
                seg.clone()
            } else {
                format!("f:{seg}")
            };
            let node = cur.entry(key).or_insert_with(|| Value::Object(Map::new()));
            let Some(next) = node.as_object_mut() else {
                break;
            };
            // A path that is also a prefix of another is marked owned itself by ".".
            if i + 1 < path.len() && set.contains(&path[..=i]) {
                next.insert(".".into(), Value::Object(Map::new()));
            }
            cur = next;
        }
    }
    Value::Object(root)
}

fn from_fields_v1(v: &Value) -> FieldSet {
    fn go(node: &Map<String, Value>, path: &mut FieldPath, out: &mut FieldSet) {
        let children: Vec<_> = node.iter().filter(|(k, _)| *k != ".").collect();
        if (children.is_empty() || node.contains_key(".")) && !path.is_empty() {
            out.insert(path.clone());
        }
        for (k, child) in children {
            let seg = if let Some(f) = k.strip_prefix("f:") {
                f.to_string()
            } else {
                k.clone()
            };
            path.push(seg);
            if let Some(m) = child.as_object() {
                go(m, path, out);
            }
            path.pop();
        }
    }
    let mut out = FieldSet::new();
    if let Some(m) = v.as_object() {
        go(m, &mut Vec::new(), &mut out);
    }
    out
}

/// The entries of `metadata.managedFields`.
pub(crate) fn read_entries(obj: &Value) -> Vec<ManagedEntry> {
    let Some(entries) = obj
        .get("metadata")
        .and_then(|m| m.get("managedFields"))
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|e| {
            let s = |k: &str| e.get(k).and_then(Value::as_str).map(str::to_string);
            Some(ManagedEntry {
                manager: s("manager")?,
                operation: s("operation").unwrap_or_else(|| "Update".into()),
                api_version: s("apiVersion").unwrap_or_default(),
                time: s("time").unwrap_or_default(),
                subresource: s("subresource"),
                fields: e.get("fieldsV1").map(from_fields_v1).unwrap_or_default(),
            })
        })
        .collect()
}

/// Writes `entries` as `metadata.managedFields` (removed when there are none).
pub(crate) fn write_entries(obj: &mut Value, entries: &[ManagedEntry]) {
    let meta = super::meta::meta_mut(obj);
    if entries.is_empty() {
        meta.remove("managedFields");
        return;
    }
    let list = entries
        .iter()
        .map(|e| {
            let mut m = Map::new();
            m.insert("manager".into(), e.manager.clone().into());
            m.insert("operation".into(), e.operation.clone().into());
            m.insert("apiVersion".into(), e.api_version.clone().into());
            m.insert("time".into(), e.time.clone().into());
            m.insert("fieldsType".into(), "FieldsV1".into());
            m.insert("fieldsV1".into(), to_fields_v1(&e.fields));
            if let Some(sub) = &e.subresource {
                m.insert("subresource".into(), sub.clone().into());
            }
            Value::Object(m)
        })
        .collect();
    meta.insert("managedFields".into(), Value::Array(list));
}

/// Keeps an entry's old time when its fields did not change (so an identical write is
/// identical), drops empty entries.
fn settle(mut entries: Vec<ManagedEntry>, before: &[ManagedEntry]) -> Vec<ManagedEntry> {
    entries.retain(|e| !e.fields.is_empty());
    for e in &mut entries {
        match before
            .iter()
            .find(|b| b.is(&e.manager, &e.operation, e.subresource.as_deref()))
        {
            Some(b) if b.fields == e.fields && b.api_version == e.api_version => {
                e.time = b.time.clone()
            }
            _ => e.time = now_time(),
        }
    }
    entries
}

/// Records an update (create, PUT, patch) from `old` to `new` by `manager`: it owns what
/// it changed, nobody owns what it removed.
pub(crate) fn record_update(
    entries: &[ManagedEntry],
    manager: &str,
    subresource: Option<&str>,
    api_version: &str,
    old: &Value,
    new: &Value,
) -> Vec<ManagedEntry> {
    let old_set = leaf_paths(old);
    let new_set = leaf_paths(new);
    let changed: FieldSet = new_set
        .iter()
        .filter(|p| get_field(old, p) != get_field(new, p))
        .cloned()
        .collect();
    let removed: FieldSet = old_set.difference(&new_set).cloned().collect();
    let mut out: Vec<ManagedEntry> = entries.to_vec();
    for e in &mut out {
        e.fields.retain(|p| {
            !changed.iter().any(|c| overlaps(c, p)) && !removed.iter().any(|r| p.starts_with(r))
        });
    }
    if !changed.is_empty() {
        match out
            .iter_mut()
            .find(|e| e.is(manager, "Update", subresource))
        {
            Some(e) => {
                e.fields.extend(changed);
                e.api_version = api_version.to_string();
            }
            None => out.push(ManagedEntry {
                manager: manager.to_string(),
                operation: "Update".into(),
                api_version: api_version.to_string(),
                time: String::new(),
                subresource: subresource.map(str::to_string),
                fields: changed,
            }),
        }
    }
    settle(out, entries)
}

/// Fields another manager owns with a different value than applied.
#[derive(Debug)]
pub(crate) struct Conflicts(pub Vec<(String, FieldPath)>);

impl Conflicts {
    pub fn message(&self) -> String {
        let list: Vec<String> = self
            .0
            .iter()
            .map(|(m, p)| format!("conflict with \"{m}\": .{}", p.join(".")))
            .collect();
        format!(
            "Apply failed with {} conflict{}: {}",
            self.0.len(),
            if self.0.len() == 1 { "" } else { "s" },
            list.join("\n")
        )
    }
}

/// Server-side apply of `config` (already reduced to what this subresource may set) onto
/// `current` by `manager`; returns the new object (managed fields written).
pub(crate) fn apply(
    current: &Value,
    config: &Value,
    manager: &str,
    subresource: Option<&str>,
    api_version: &str,
    force: bool,
) -> Result<Value, Conflicts> {
    let before = read_entries(current);
    let mut entries = before.clone();
    let applied = leaf_paths(config);
    let mine = |e: &ManagedEntry| e.is(manager, "Apply", subresource);

    let mut conflicts = Vec::new();
    for path in &applied {
        let Some(cur) = get_field(current, path) else {
            continue;
        };
        let applied = get_field(config, path);
        if Some(cur) == applied || (applied.is_some_and(is_empty_map) && cur.is_object()) {
            continue;
        }
        for e in entries.iter_mut().filter(|e| e.manager != manager) {
            if e.fields.iter().any(|p| overlaps(p, path)) {
                if force {
                    e.fields.retain(|p| !overlaps(p, path));
                } else {
                    conflicts.push((e.manager.clone(), path.clone()));
                }
            }
        }
    }
    if !conflicts.is_empty() {
        return Err(Conflicts(conflicts));
    }

    let previous = entries
        .iter()
        .find(|e| mine(e))
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    let others: Vec<&ManagedEntry> = entries.iter().filter(|e| !mine(e)).collect();
    let owned = |p: &[String]| {
        others
            .iter()
            .any(|e| e.fields.iter().any(|q| overlaps(q, p)))
            || applied.iter().any(|q| q.starts_with(p))
    };
    let mut object = current.clone();
    for path in previous.difference(&applied) {
        if !others
            .iter()
            .any(|e| e.fields.iter().any(|q| overlaps(q, path)))
        {
            remove_field(&mut object, path, &owned);
        }
    }
    for path in &applied {
        set_field(&mut object, config, path);
    }

    match entries.iter_mut().find(|e| mine(e)) {
        Some(e) => {
            e.fields = applied;
            e.api_version = api_version.to_string();
        }
        None => entries.push(ManagedEntry {
            manager: manager.to_string(),
            operation: "Apply".into(),
            api_version: api_version.to_string(),
            time: String::new(),
            subresource: subresource.map(str::to_string),
            fields: applied,
        }),
    }
    let entries = settle(entries, &before);
    write_entries(&mut object, &entries);
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn field_sets_round_trip_through_fields_v1() {
        let obj = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "x", "labels": {"a": "1"}, "finalizers": ["f1", "f2"]},
            "data": {"k": "v", "e": ""},
            "spec": {"list": [1, 2], "empty": {}},
        });
        let set = leaf_paths(&obj);
        assert_eq!(from_fields_v1(&to_fields_v1(&set)), set);
        assert!(set.contains(&vec![
            "metadata".to_string(),
            "finalizers".into(),
            "v:\"f1\"".into()
        ]));
        assert!(!set.iter().any(|p| p[1] == "name"));
    }

    #[test]
    fn apply_removes_what_the_manager_dropped_and_keeps_what_others_set() {
        let empty = json!({"metadata": {"name": "x"}});
        let a1 = json!({"metadata": {"name": "x"}, "data": {"a": "1", "b": "2"}});
        let obj = apply(&empty, &a1, "a", None, "v1", false).unwrap();
        let obj = apply(
            &obj,
            &json!({"metadata": {"name": "x"}, "data": {"c": "3"}}),
            "b",
            None,
            "v1",
            false,
        )
        .unwrap();
        let a2 = json!({"metadata": {"name": "x"}, "data": {"a": "1"}});
        let obj2 = apply(&obj, &a2, "a", None, "v1", false).unwrap();
        assert_eq!(obj2["data"], json!({"a": "1", "c": "3"}));
        // Same again: same object.
        assert_eq!(apply(&obj2, &a2, "a", None, "v1", false).unwrap(), obj2);
        // b changing a's field conflicts unless forced.
        let b2 = json!({"metadata": {"name": "x"}, "data": {"a": "9", "c": "3"}});
        assert!(apply(&obj2, &b2, "b", None, "v1", false).is_err());
        let forced = apply(&obj2, &b2, "b", None, "v1", true).unwrap();
        assert_eq!(forced["data"]["a"], "9");
    }
}

//! The server's state and the semantics of every write: one global resourceVersion
//! counter, no-op writes that keep it, generations, the status and scale subresources,
//! server-side apply, finalizers, deletion with propagation policies, garbage collection
//! of dependents, and the event history watches replay.

use super::builtin::{self, Allocator};
use super::error::{ApiError, ApiResult};
use super::meta::{
    Ids, finalizers, get_path, meta_mut, meta_str, now_time, owner_uids, remove_meta,
    set_finalizers, set_meta, set_path,
};
use super::patch::{PatchKind, apply_patch};
use super::resources::{self, ResourceType, SpecValidator};
use super::selector::{FieldSelector, LabelSelector, label_selector_string};
use super::ssa;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

/// (group, plural).
pub(crate) type ResKey = (String, String);
/// (namespace, name); the namespace is empty for cluster-scoped objects.
type ObjKey = (String, String);

/// Where a write goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sub {
    Main,
    Status,
    Scale,
}

impl Sub {
    fn name(self) -> Option<&'static str> {
        match self {
            Sub::Main => None,
            Sub::Status => Some("status"),
            Sub::Scale => Some("scale"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EventKind {
    Added,
    Modified,
    Deleted,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Added => "ADDED",
            EventKind::Modified => "MODIFIED",
            EventKind::Deleted => "DELETED",
        }
    }
}

/// One change, kept for watches to replay.
#[derive(Clone)]
pub(crate) struct LogEntry {
    pub rv: u64,
    pub resource: ResKey,
    pub namespace: String,
    pub kind: EventKind,
    pub object: Arc<Value>,
    /// The object before a modification (a watch with a selector turns a change that
    /// leaves or enters the selection into DELETED or ADDED).
    pub previous: Option<Arc<Value>>,
}

/// How the object got its new content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Create,
    Update,
    /// Managed fields already written by server-side apply.
    Apply,
}

/// Who writes and how.
#[derive(Clone, Debug)]
pub(crate) struct WriteCtx {
    pub version: String,
    pub namespace: String,
    pub manager: String,
    pub dry_run: bool,
}

/// `DeleteOptions`.
#[derive(Clone, Debug, Default)]
pub(crate) struct DeleteOpts {
    pub propagation: Option<String>,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    pub dry_run: bool,
}

/// A PATCH: its type, body and (for apply) `force`.
#[derive(Clone, Debug)]
pub(crate) struct PatchRequest {
    pub kind: PatchKind,
    pub patch: Value,
    pub force: bool,
}

/// What a delete did.
pub(crate) enum Deleted {
    /// Removed; the object as it was last.
    Gone(Value),
    /// Marked for deletion (finalizers remain); the object now.
    Pending(Value),
}

pub(crate) struct Store {
    types: BTreeMap<ResKey, Arc<ResourceType>>,
    validators: HashMap<ResKey, SpecValidator>,
    objects: HashMap<ResKey, BTreeMap<ObjKey, Value>>,
    /// The last resourceVersion handed out.
    pub rv: u64,
    log: VecDeque<LogEntry>,
    /// How many events the history keeps.
    pub log_limit: usize,
    /// Events with a resourceVersion up to this one are no longer in the history.
    pub compacted: u64,
    ids: Ids,
    alloc: Allocator,
}

impl Store {
    pub fn new() -> Self {
        let types = resources::builtins()
            .into_iter()
            .map(|rt| (rt.key(), Arc::new(rt)))
            .collect();
        Store {
            types,
            validators: HashMap::new(),
            objects: HashMap::new(),
            rv: 0,
            log: VecDeque::new(),
            log_limit: 100_000,
            compacted: 0,
            ids: Ids::new(),
            alloc: Allocator::default(),
        }
    }

    pub fn types(&self) -> impl Iterator<Item = &Arc<ResourceType>> {
        self.types.values()
    }

    /// The type served at group/version/plural.
    pub fn resource(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.types
            .get(&(group.to_string(), plural.to_string()))
            .filter(|rt| rt.versions.iter().any(|v| v == version))
            .cloned()
    }

    fn objects_of(&self, rt: &ResourceType) -> Option<&BTreeMap<ObjKey, Value>> {
        self.objects.get(&rt.key())
    }

    fn lookup(&self, rt: &ResourceType, ns: &str, name: &str) -> Option<&Value> {
        self.objects_of(rt)?
            .get(&(ns.to_string(), name.to_string()))
    }

    pub fn get(&self, rt: &ResourceType, ns: &str, name: &str) -> ApiResult<Value> {
        self.lookup(rt, ns, name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))
    }

    /// Objects in `ns` (all namespaces when `None`) matching the selectors, and the
    /// current resourceVersion.
    pub fn list(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
    ) -> (Vec<Value>, u64) {
        let items = self
            .objects_of(rt)
            .into_iter()
            .flat_map(|objs| objs.iter())
            .filter(|((o_ns, _), _)| ns.is_none_or(|n| n == o_ns))
            .map(|(_, v)| v)
            .filter(|v| labels.matches(v) && fields.matches(v))
            .cloned()
            .collect();
        (items, self.rv)
    }

    /// Events after `rv`, or `Err` when the history no longer reaches back that far.
    pub fn events_since(&self, rv: u64, resource: &ResKey) -> Result<Vec<LogEntry>, u64> {
        if rv < self.compacted {
            return Err(self.compacted);
        }
        // The log is ordered by rv: skip what the watcher has seen.
        let start = self.log.partition_point(|e| e.rv <= rv);
        Ok(self
            .log
            .range(start..)
            .filter(|e| &e.resource == resource)
            .cloned()
            .collect())
    }

    /// Forgets the whole event history: every watch from an older resourceVersion gets
    /// 410 Gone.
    pub fn compact(&mut self) {
        self.log.clear();
        self.compacted = self.rv;
    }

    fn push_event(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        kind: EventKind,
        object: &Value,
        previous: Option<Value>,
    ) {
        self.log.push_back(LogEntry {
            rv: self.rv,
            resource: rt.key(),
            namespace: ns.to_string(),
            kind,
            object: Arc::new(object.clone()),
            previous: previous.map(Arc::new),
        });
        while self.log.len() > self.log_limit {
            if let Some(e) = self.log.pop_front() {
                self.compacted = e.rv;
            }
        }
    }

    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    // ---- writes ----

    /// POST.
    pub fn create(
        &mut self,
        rt: &Arc<ResourceType>,
        ctx: &WriteCtx,
        mut body: Value,
    ) -> ApiResult<Value> {
        if !body.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request must be an object",
            ));
        }
        self.check_type_meta(rt, &ctx.version, &body)?;
        if rt.namespaced {
            match meta_str(&body, "namespace") {
                Some(ns) if !ns.is_empty() && ns != ctx.namespace => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => {}
            }
            if self.namespace_terminating(&ctx.namespace) {
                return Err(ApiError::new(
                    403,
                    "Forbidden",
                    format!(
                        "{} \"{}\" is forbidden: unable to create new content in namespace {} because it is being terminated",
                        rt.resource_group(),
                        meta_str(&body, "name").unwrap_or_default(),
                        ctx.namespace
                    ),
                ));
            }
        }
        let name = match meta_str(&body, "name").filter(|n| !n.is_empty()) {
            Some(n) => n.to_string(),
            None => match meta_str(&body, "generateName").filter(|n| !n.is_empty()) {
                Some(prefix) => {
                    let prefix = prefix.to_string();
                    loop {
                        let name = format!("{prefix}{}", self.ids.suffix());
                        if self.lookup(rt, &ctx.namespace, &name).is_none() {
                            break name;
                        }
                    }
                }
                None => {
                    return Err(ApiError::invalid(
                        &rt.group,
                        &rt.kind,
                        "",
                        &[
                            "metadata.name: Required value: name or generateName is required"
                                .into(),
                        ],
                    ));
                }
            },
        };
        set_meta(&mut body, "name", json!(name));
        if self.lookup(rt, &ctx.namespace, &name).is_some() {
            return Err(ApiError::already_exists(&rt.group, &rt.plural, &name));
        }
        let (obj, _) = self.commit(rt, ctx, &name, None, body, Sub::Main, Op::Create)?;
        Ok(obj)
    }

    /// PUT on the resource or its status.
    pub fn replace(
        &mut self,
        rt: &Arc<ResourceType>,
        ctx: &WriteCtx,
        name: &str,
        sub: Sub,
        body: Value,
    ) -> ApiResult<Value> {
        if !body.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request must be an object",
            ));
        }
        if sub == Sub::Scale {
            return self.write_scale(rt, ctx, name, ScaleWrite::Replace(body));
        }
        self.check_type_meta(rt, &ctx.version, &body)?;
        self.check_name(&body, name)?;
        let old = self.get(rt, &ctx.namespace, name)?;
        match meta_str(&body, "resourceVersion").filter(|rv| !rv.is_empty()) {
            Some(rv) if rv != meta_str(&old, "resourceVersion").unwrap_or_default() => {
                return Err(ApiError::conflict(&rt.group, &rt.plural, name));
            }
            Some(_) => {}
            // Custom resources, like the real server's, take no unconditional update.
            None if rt.custom => {
                return Err(ApiError::invalid(
                    &rt.group,
                    &rt.kind,
                    name,
                    &["metadata.resourceVersion: Invalid value: 0: must be specified for an update".into()],
                ));
            }
            None => {}
        }
        let (obj, _) = self.commit(rt, ctx, name, Some(&old), body, sub, Op::Update)?;
        Ok(obj)
    }

    /// PATCH (merge, strategic, JSON or apply) on the resource or a subresource; also
    /// whether the object was created (apply creates).
    pub fn patch(
        &mut self,
        rt: &Arc<ResourceType>,
        ctx: &WriteCtx,
        name: &str,
        sub: Sub,
        request: PatchRequest,
    ) -> ApiResult<(Value, bool)> {
        let PatchRequest { kind, patch, force } = request;
        if sub == Sub::Scale {
            let out = self.write_scale(rt, ctx, name, ScaleWrite::Patch(kind, patch))?;
            return Ok((out, false));
        }
        let old = self.lookup(rt, &ctx.namespace, name).cloned();
        if kind != PatchKind::Apply {
            let old = old.ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))?;
            let new = apply_patch(kind, &old, &patch)?;
            self.check_precondition(rt, name, &old, &new)?;
            self.check_name(&new, name)?;
            let (obj, _) = self.commit(rt, ctx, name, Some(&old), new, sub, Op::Update)?;
            return Ok((obj, false));
        }
        if !patch.is_object() {
            return Err(ApiError::bad_request("an apply patch must be an object"));
        }
        self.check_type_meta(rt, &ctx.version, &patch)?;
        self.check_name(&patch, name)?;
        if rt.namespaced
            && meta_str(&patch, "namespace").is_some_and(|ns| !ns.is_empty() && ns != ctx.namespace)
        {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        if let Some(old) = &old {
            self.check_precondition(rt, name, old, &patch)?;
        } else if sub != Sub::Main {
            return Err(ApiError::not_found(&rt.group, &rt.plural, name));
        }
        // What this subresource may set: the main resource ignores status, the status
        // subresource takes only status.
        let mut config = patch;
        if rt.status
            && sub == Sub::Main
            && let Some(map) = config.as_object_mut()
        {
            map.remove("status");
        }
        if sub == Sub::Status {
            config = json!({"status": config.get("status").cloned().unwrap_or(Value::Null)});
        }
        let base = old.clone().unwrap_or_else(|| {
            json!({
                "apiVersion": rt.api_version(rt.storage_version()),
                "kind": rt.kind,
                "metadata": {"name": name},
            })
        });
        let api_version = rt.api_version(&ctx.version);
        let applied = ssa::apply(
            &base,
            &config,
            &ctx.manager,
            sub.name(),
            &api_version,
            force,
        )
        .map_err(|c| {
            ApiError::new(409, "Conflict", c.message()).with_details(json!({
                "name": name,
                "group": rt.group,
                "kind": rt.plural,
                "causes": c.0.iter().map(|(m, p)| json!({
                    "reason": "FieldManagerConflict",
                    "message": format!("conflict with \"{m}\""),
                    "field": format!(".{}", p.join(".")),
                })).collect::<Vec<_>>(),
            }))
        })?;
        let created = old.is_none();
        let (obj, _) = self.commit(rt, ctx, name, old.as_ref(), applied, sub, Op::Apply)?;
        Ok((obj, created))
    }

    fn check_type_meta(&self, rt: &ResourceType, version: &str, body: &Value) -> ApiResult<()> {
        if let Some(av) = body.get("apiVersion").and_then(Value::as_str)
            && av != rt.api_version(version)
        {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({})",
                rt.api_version(version)
            )));
        }
        if let Some(kind) = body.get("kind").and_then(Value::as_str)
            && kind != rt.kind
        {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({kind}) does not match the expected kind ({})",
                rt.kind
            )));
        }
        Ok(())
    }

    fn check_name(&self, body: &Value, name: &str) -> ApiResult<()> {
        match meta_str(body, "name") {
            Some(n) if n != name => Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            ))),
            _ => Ok(()),
        }
    }

    /// A resourceVersion in a patch is a precondition.
    fn check_precondition(
        &self,
        rt: &ResourceType,
        name: &str,
        old: &Value,
        new: &Value,
    ) -> ApiResult<()> {
        match meta_str(new, "resourceVersion") {
            Some(rv)
                if !rv.is_empty() && rv != meta_str(old, "resourceVersion").unwrap_or_default() =>
            {
                Err(ApiError::conflict(&rt.group, &rt.plural, name))
            }
            _ => Ok(()),
        }
    }

    fn namespace_terminating(&self, ns: &str) -> bool {
        self.objects
            .get(&(String::new(), "namespaces".to_string()))
            .and_then(|m| m.get(&(String::new(), ns.to_string())))
            .is_some_and(|n| meta_str(n, "deletionTimestamp").is_some())
    }

    /// Everything a write goes through after the verb made the candidate object. Returns
    /// the stored object and whether anything changed.
    #[allow(clippy::too_many_arguments)]
    fn commit(
        &mut self,
        rt: &Arc<ResourceType>,
        ctx: &WriteCtx,
        name: &str,
        old: Option<&Value>,
        candidate: Value,
        sub: Sub,
        op: Op,
    ) -> ApiResult<(Value, bool)> {
        let ns = if rt.namespaced {
            ctx.namespace.clone()
        } else {
            String::new()
        };
        let mut new = match (sub, old) {
            (Sub::Status, Some(old)) => {
                // Only status changes (and apply's managed fields).
                let mut o = old.clone();
                let map = o
                    .as_object_mut()
                    .ok_or_else(|| ApiError::bad_request("not an object"))?;
                match candidate.get("status") {
                    Some(s) if !s.is_null() => map.insert("status".into(), s.clone()),
                    _ => map.remove("status"),
                };
                if op == Op::Apply
                    && let Some(mf) = candidate
                        .get("metadata")
                        .and_then(|m| m.get("managedFields"))
                {
                    set_meta(&mut o, "managedFields", mf.clone());
                }
                o
            }
            _ => candidate,
        };
        if let Some(map) = new.as_object_mut() {
            map.insert(
                "apiVersion".into(),
                json!(rt.api_version(rt.storage_version())),
            );
            map.insert("kind".into(), json!(rt.kind));
            if rt.status && sub != Sub::Status {
                match old.and_then(|o| o.get("status")) {
                    Some(s) => map.insert("status".into(), s.clone()),
                    None => map.remove("status"),
                };
            }
        }

        // The server's metadata.
        let apply_entries = (op == Op::Apply)
            .then(|| {
                new.get("metadata")
                    .and_then(|m| m.get("managedFields"))
                    .cloned()
            })
            .flatten();
        {
            let meta = meta_mut(&mut new);
            meta.insert("name".into(), json!(name));
            if rt.namespaced {
                meta.insert("namespace".into(), json!(ns));
            } else {
                meta.remove("namespace");
            }
            for k in ["resourceVersion", "selfLink", "managedFields"] {
                meta.remove(k);
            }
            match old {
                Some(old) => {
                    for k in [
                        "uid",
                        "creationTimestamp",
                        "deletionTimestamp",
                        "deletionGracePeriodSeconds",
                        "generation",
                        "generateName",
                    ] {
                        match old.get("metadata").and_then(|m| m.get(k)) {
                            Some(v) => meta.insert(k.into(), v.clone()),
                            None => meta.remove(k),
                        };
                    }
                }
                None => {
                    meta.insert("uid".into(), json!(self.ids.uid()));
                    meta.insert("creationTimestamp".into(), json!(now_time()));
                    meta.insert("generation".into(), json!(1));
                    meta.remove("deletionTimestamp");
                    meta.remove("deletionGracePeriodSeconds");
                }
            }
        }
        if let Some(old) = old
            && meta_str(old, "deletionTimestamp").is_some()
        {
            let before: BTreeSet<String> = finalizers(old).into_iter().collect();
            let added: Vec<String> = finalizers(&new)
                .into_iter()
                .filter(|f| !before.contains(f))
                .collect();
            if !added.is_empty() {
                return Err(ApiError::invalid(
                    &rt.group,
                    &rt.kind,
                    name,
                    &[format!(
                        "metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"
                    )],
                ));
            }
        }

        // Decoding, defaults, validation.
        let mut causes = Vec::new();
        if rt.custom {
            builtin::decode_metadata(&mut new)
                .map_err(|e| ApiError::bad_request(format!("error decoding metadata: {e}")))?;
            if let Some(schema) = rt
                .schemas
                .get(&ctx.version)
                .or_else(|| rt.schemas.get(rt.storage_version()))
            {
                let old_for_rules = old.filter(|_| sub != Sub::Status);
                if let Err(c) = super::schema::admit(schema, &mut new, old_for_rules) {
                    causes.extend(c);
                }
            }
            if causes.is_empty()
                && sub != Sub::Status
                && let Some(validate) = &rt.validator
            {
                let spec = new.get("spec").cloned().unwrap_or_else(|| json!({}));
                let old_spec = old.and_then(|o| o.get("spec"));
                if let Err(message) = validate(&spec, old_spec) {
                    causes.push(format!("spec: Invalid value: \"object\": {message}"));
                }
            }
        } else {
            builtin::decode(&rt.group, &rt.plural, &mut new)
                .map_err(|e| ApiError::bad_request(format!("error decoding {}: {e}", rt.kind)))?;
            builtin::defaults(&rt.group, &rt.plural, &mut new, old, &mut self.alloc);
            builtin::validate(&rt.group, &rt.plural, &new, old, &mut causes);
        }
        builtin::validate_metadata(&rt.plural, rt.custom, &new, &mut causes);
        if !causes.is_empty() {
            return Err(ApiError::invalid(&rt.group, &rt.kind, name, &causes));
        }
        if rt.group == "apiextensions.k8s.io" {
            let crd_rt = resources::from_crd(&new, None)
                .map_err(|e| ApiError::invalid(&rt.group, &rt.kind, name, &[e]))?;
            if !crd_rt.group.contains('.') {
                return Err(ApiError::invalid(
                    &rt.group,
                    &rt.kind,
                    name,
                    &[
                        "spec.group: Invalid value: should be a domain with at least one dot"
                            .into(),
                    ],
                ));
            }
            crd_status(&mut new, old);
        }

        // Managed fields.
        let api_version = rt.api_version(&ctx.version);
        match apply_entries {
            Some(mf) => set_meta(&mut new, "managedFields", mf),
            None => {
                let before = old.map(ssa::read_entries).unwrap_or_default();
                let empty = json!({});
                let entries = ssa::record_update(
                    &before,
                    &ctx.manager,
                    sub.name(),
                    &api_version,
                    old.unwrap_or(&empty),
                    &new,
                );
                ssa::write_entries(&mut new, &entries);
            }
        }

        let Some(old) = old else {
            if ctx.dry_run {
                return Ok((new, true));
            }
            let rv = self.next_rv();
            set_meta(&mut new, "resourceVersion", json!(rv.to_string()));
            self.store(rt, &ns, name, new.clone());
            self.push_event(rt, &ns, EventKind::Added, &new, None);
            self.after_write(rt, &new);
            return Ok((new, true));
        };

        let mut unchanged = old.clone();
        remove_meta(&mut unchanged, "resourceVersion");
        if unchanged == new {
            return Ok((old.clone(), false));
        }
        let generation = old
            .get("metadata")
            .and_then(|m| m.get("generation"))
            .and_then(Value::as_i64)
            .unwrap_or(1);
        if outside_meta(old, rt.status) != outside_meta(&new, rt.status) {
            set_meta(&mut new, "generation", json!(generation + 1));
        }
        if ctx.dry_run {
            set_meta(
                &mut new,
                "resourceVersion",
                old["metadata"]["resourceVersion"].clone(),
            );
            return Ok((new, true));
        }
        let rv = self.next_rv();
        set_meta(&mut new, "resourceVersion", json!(rv.to_string()));
        self.store(rt, &ns, name, new.clone());
        self.push_event(rt, &ns, EventKind::Modified, &new, Some(old.clone()));
        // The last finalizer of an object being deleted is gone: now it goes.
        if meta_str(&new, "deletionTimestamp").is_some() && finalizers(&new).is_empty() {
            return Ok((self.remove(rt, &ns, name).unwrap_or(new), true));
        }
        self.after_write(rt, &new);
        Ok((new, true))
    }

    fn store(&mut self, rt: &ResourceType, ns: &str, name: &str, obj: Value) {
        self.objects
            .entry(rt.key())
            .or_default()
            .insert((ns.to_string(), name.to_string()), obj);
    }

    /// Side effects of a stored object: a CRD (re)registers its resource.
    fn after_write(&mut self, rt: &ResourceType, obj: &Value) {
        if rt.group == "apiextensions.k8s.io"
            && let Ok(mut crd_rt) = resources::from_crd(obj, None)
        {
            crd_rt.validator = self.validators.get(&crd_rt.key()).cloned();
            self.types.insert(crd_rt.key(), Arc::new(crd_rt));
        }
    }

    /// Removes an object for good: a DELETED event at a new resourceVersion.
    fn remove(&mut self, rt: &ResourceType, ns: &str, name: &str) -> Option<Value> {
        let mut obj = self
            .objects
            .get_mut(&rt.key())?
            .remove(&(ns.to_string(), name.to_string()))?;
        let rv = self.next_rv();
        set_meta(&mut obj, "resourceVersion", json!(rv.to_string()));
        self.push_event(rt, ns, EventKind::Deleted, &obj, None);
        if rt.group == "apiextensions.k8s.io" {
            self.drop_crd(&obj);
        }
        Some(obj)
    }

    /// A deleted CRD takes its resource and all its objects with it.
    fn drop_crd(&mut self, crd: &Value) {
        let Ok(crd_rt) = resources::from_crd(crd, None) else {
            return;
        };
        let Some(rt) = self.types.get(&crd_rt.key()).cloned() else {
            return;
        };
        if !rt.custom {
            return;
        }
        let keys: Vec<ObjKey> = self
            .objects_of(&rt)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        for (ns, name) in keys {
            self.remove(&rt, &ns, &name);
        }
        self.types.remove(&rt.key());
    }

    /// DELETE.
    pub fn delete(
        &mut self,
        rt: &Arc<ResourceType>,
        ns: &str,
        name: &str,
        opts: &DeleteOpts,
    ) -> ApiResult<Deleted> {
        let obj = self.get(rt, ns, name)?;
        if let Some(uid) = &opts.uid
            && Some(uid.as_str()) != meta_str(&obj, "uid")
        {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    rt.resource_group(),
                    meta_str(&obj, "uid").unwrap_or_default()
                ),
            ));
        }
        if let Some(rv) = &opts.resource_version
            && Some(rv.as_str()) != meta_str(&obj, "resourceVersion")
        {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    rt.resource_group(),
                    meta_str(&obj, "resourceVersion").unwrap_or_default()
                ),
            ));
        }
        if opts.dry_run {
            return Ok(Deleted::Pending(obj));
        }
        self.delete_object(rt, ns, name, obj, opts.propagation.as_deref())
    }

    fn delete_object(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        obj: Value,
        policy: Option<&str>,
    ) -> ApiResult<Deleted> {
        let mut fins = finalizers(&obj);
        match policy {
            Some("Foreground") if !fins.iter().any(|f| f == "foregroundDeletion") => {
                fins.push("foregroundDeletion".into())
            }
            Some("Orphan") if !fins.iter().any(|f| f == "orphan") => fins.push("orphan".into()),
            Some("Foreground" | "Orphan" | "Background") | None => {}
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "unsupported propagationPolicy {other:?}"
                )));
            }
        }
        // A namespace empties itself first (its `kubernetes` finalizer is in spec).
        let namespace = !rt.custom && rt.plural == "namespaces";
        if fins.is_empty() && !namespace {
            return Ok(Deleted::Gone(self.remove(rt, ns, name).unwrap_or(obj)));
        }
        if meta_str(&obj, "deletionTimestamp").is_some() && fins == finalizers(&obj) {
            return Ok(Deleted::Pending(obj));
        }
        let mut new = obj.clone();
        set_finalizers(&mut new, fins);
        if meta_str(&new, "deletionTimestamp").is_none() {
            set_meta(&mut new, "deletionTimestamp", json!(now_time()));
            set_meta(&mut new, "deletionGracePeriodSeconds", json!(0));
            let generation = new["metadata"]["generation"].as_i64().unwrap_or(1);
            set_meta(&mut new, "generation", json!(generation + 1));
        }
        if namespace {
            set_path(
                &mut new,
                &["status".into(), "phase".into()],
                json!("Terminating"),
            );
        }
        let rv = self.next_rv();
        set_meta(&mut new, "resourceVersion", json!(rv.to_string()));
        self.store(rt, ns, name, new.clone());
        self.push_event(rt, ns, EventKind::Modified, &new, Some(obj));
        Ok(Deleted::Pending(new))
    }

    /// One pass of the garbage collector and the namespace controller; whether it
    /// changed anything (the caller runs passes until it does not).
    pub fn collect_garbage(&mut self) -> bool {
        let mut uids = BTreeSet::new();
        let mut keys = Vec::new();
        let mut dependents: HashMap<String, Vec<(ResKey, ObjKey)>> = HashMap::new();
        for (key, objs) in &self.objects {
            for (okey, obj) in objs {
                if let Some(uid) = meta_str(obj, "uid") {
                    uids.insert(uid.to_string());
                }
                for owner in owner_uids(obj) {
                    dependents
                        .entry(owner)
                        .or_default()
                        .push((key.clone(), okey.clone()));
                }
                keys.push((key.clone(), okey.clone()));
            }
        }
        let mut changed = false;
        // Objects change during the pass: each step looks at them afresh.
        for (key, (ns, name)) in keys {
            let Some(rt) = self.types.get(&key).cloned() else {
                continue;
            };
            let Some(obj) = self.lookup(&rt, &ns, &name).cloned() else {
                continue;
            };
            let uid = meta_str(&obj, "uid").unwrap_or_default().to_string();
            let deps: Vec<(Arc<ResourceType>, ObjKey, Value)> = dependents
                .get(&uid)
                .into_iter()
                .flatten()
                .filter_map(|(dkey, (dns, dname))| {
                    let drt = self.types.get(dkey)?.clone();
                    let dep = self.lookup(&drt, dns, dname)?.clone();
                    owner_uids(&dep)
                        .contains(&uid)
                        .then(|| (drt, (dns.clone(), dname.clone()), dep))
                })
                .collect();
            let deleting = meta_str(&obj, "deletionTimestamp").is_some();
            let fins = finalizers(&obj);
            if deleting && fins.iter().any(|f| f == "orphan") {
                for (drt, (dns, dname), mut d) in deps {
                    if let Some(refs) = d["metadata"]["ownerReferences"].as_array_mut() {
                        refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(uid.as_str()));
                    }
                    if d["metadata"]["ownerReferences"]
                        .as_array()
                        .is_some_and(Vec::is_empty)
                    {
                        remove_meta(&mut d, "ownerReferences");
                    }
                    self.system_update(&drt, &dns, &dname, d);
                }
                self.drop_finalizer(&rt, &ns, &name, "orphan");
                changed = true;
            } else if deleting && fins.iter().any(|f| f == "foregroundDeletion") {
                if deps.is_empty() {
                    self.drop_finalizer(&rt, &ns, &name, "foregroundDeletion");
                    changed = true;
                }
                for (drt, (dns, dname), dep) in deps {
                    if meta_str(&dep, "deletionTimestamp").is_none() {
                        let _ = self.delete_object(&drt, &dns, &dname, dep, Some("Foreground"));
                        changed = true;
                    }
                }
            } else if deleting && !rt.custom && rt.plural == "namespaces" {
                let contents: Vec<(ResKey, ObjKey, Value)> = self
                    .objects
                    .iter()
                    .flat_map(|(k, objs)| {
                        objs.iter()
                            .map(move |(ok, v)| (k.clone(), ok.clone(), v.clone()))
                    })
                    .filter(|(_, (ons, _), _)| *ons == name)
                    .collect();
                if contents.is_empty() {
                    self.remove(&rt, &ns, &name);
                    changed = true;
                }
                for (k, (ons, oname), v) in contents {
                    if meta_str(&v, "deletionTimestamp").is_none()
                        && let Some(ort) = self.types.get(&k).cloned()
                    {
                        let _ = self.delete_object(&ort, &ons, &oname, v, None);
                        changed = true;
                    }
                }
            } else {
                let owners = owner_uids(&obj);
                if !deleting && !owners.is_empty() && owners.iter().all(|o| !uids.contains(o)) {
                    let _ = self.delete_object(&rt, &ns, &name, obj, None);
                    changed = true;
                }
            }
        }
        changed
    }

    /// A write by the server itself (the garbage collector), without admission.
    fn system_update(&mut self, rt: &ResourceType, ns: &str, name: &str, mut new: Value) {
        let Some(old) = self.lookup(rt, ns, name).cloned() else {
            return;
        };
        remove_meta(&mut new, "resourceVersion");
        let mut unchanged = old.clone();
        remove_meta(&mut unchanged, "resourceVersion");
        if unchanged == new {
            return;
        }
        let rv = self.next_rv();
        set_meta(&mut new, "resourceVersion", json!(rv.to_string()));
        self.store(rt, ns, name, new.clone());
        self.push_event(rt, ns, EventKind::Modified, &new, Some(old));
        if meta_str(&new, "deletionTimestamp").is_some() && finalizers(&new).is_empty() {
            self.remove(rt, ns, name);
        }
    }

    fn drop_finalizer(&mut self, rt: &ResourceType, ns: &str, name: &str, finalizer: &str) {
        let Some(mut obj) = self.lookup(rt, ns, name).cloned() else {
            return;
        };
        let fins = finalizers(&obj)
            .into_iter()
            .filter(|f| f != finalizer)
            .collect();
        set_finalizers(&mut obj, fins);
        self.system_update(rt, ns, name, obj);
    }

    // ---- CRDs ----

    /// Remembers the validator of a CRD's resource (used when it is registered).
    pub fn set_validator(&mut self, key: ResKey, validator: Option<SpecValidator>) {
        match validator {
            Some(v) => self.validators.insert(key, v),
            None => self.validators.remove(&key),
        };
    }

    // ---- scale ----

    /// The `autoscaling/v1` Scale of an object.
    pub fn scale(&self, rt: &ResourceType, ns: &str, name: &str) -> ApiResult<Value> {
        let obj = self.get(rt, ns, name)?;
        scale_of(rt, &obj)
    }

    fn write_scale(
        &mut self,
        rt: &Arc<ResourceType>,
        ctx: &WriteCtx,
        name: &str,
        write: ScaleWrite,
    ) -> ApiResult<Value> {
        let paths = rt
            .scale
            .clone()
            .ok_or_else(|| ApiError::not_found(&rt.group, &format!("{}/scale", rt.plural), name))?;
        let old = self.get(rt, &ctx.namespace, name)?;
        let current = scale_of(rt, &old)?;
        let scale = match write {
            ScaleWrite::Replace(body) => body,
            ScaleWrite::Patch(PatchKind::Apply, patch) => {
                let mut s = current.clone();
                json_patch::merge(&mut s, &patch);
                s
            }
            ScaleWrite::Patch(kind, patch) => apply_patch(kind, &current, &patch)?,
        };
        self.check_precondition(rt, name, &old, &scale)?;
        let replicas = scale
            .get("spec")
            .and_then(|s| s.get("replicas"))
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if replicas < 0 {
            return Err(ApiError::invalid(
                "autoscaling",
                "Scale",
                name,
                &[format!(
                    "spec.replicas: Invalid value: {replicas}: must be greater than or equal to 0"
                )],
            ));
        }
        let mut new = old.clone();
        set_path(&mut new, &paths.spec_replicas, json!(replicas));
        let (obj, _) = self.commit(rt, ctx, name, Some(&old), new, Sub::Scale, Op::Update)?;
        scale_of(rt, &obj)
    }

    // ---- in-process access ----

    pub fn all_objects(&self, rt: &ResourceType) -> Vec<Value> {
        self.objects_of(rt)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }
}

enum ScaleWrite {
    Replace(Value),
    Patch(PatchKind, Value),
}

/// Everything but metadata (and status, with a status subresource): what generation
/// tracks.
fn outside_meta(obj: &Value, status: bool) -> Value {
    let mut v = obj.clone();
    if let Some(map) = v.as_object_mut() {
        map.remove("metadata");
        if status {
            map.remove("status");
        }
    }
    v
}

fn scale_of(rt: &ResourceType, obj: &Value) -> ApiResult<Value> {
    let name = meta_str(obj, "name").unwrap_or_default();
    let paths = rt
        .scale
        .as_ref()
        .ok_or_else(|| ApiError::not_found(&rt.group, &format!("{}/scale", rt.plural), name))?;
    let spec = get_path(obj, &paths.spec_replicas)
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let status = get_path(obj, &paths.status_replicas)
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let mut status_obj = json!({"replicas": status});
    if let Some(sel) = paths
        .label_selector
        .as_ref()
        .and_then(|p| get_path(obj, p))
        .map(label_selector_string)
    {
        status_obj["selector"] = json!(sel);
    }
    let mut metadata = serde_json::Map::new();
    for k in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = obj.get("metadata").and_then(|m| m.get(k)) {
            metadata.insert(k.into(), v.clone());
        }
    }
    Ok(json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": metadata,
        "spec": {"replicas": spec},
        "status": status_obj,
    }))
}

/// A CRD's status: its names accepted and established at once.
fn crd_status(crd: &mut Value, old: Option<&Value>) {
    let spec = crd.get("spec").cloned().unwrap_or(Value::Null);
    let storage: Vec<Value> = spec
        .get("versions")
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
                .filter_map(|v| v.get("name").cloned())
                .collect()
        })
        .unwrap_or_default();
    let mut stored: Vec<Value> = old
        .and_then(|o| o.get("status")?.get("storedVersions")?.as_array().cloned())
        .unwrap_or_default();
    for v in storage {
        if !stored.contains(&v) {
            stored.push(v);
        }
    }
    let conditions = old
        .and_then(|o| o.get("status")?.get("conditions").cloned())
        .unwrap_or_else(|| {
            let now = now_time();
            json!([
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now},
            ])
        });
    if let Some(map) = crd.as_object_mut() {
        map.insert(
            "status".into(),
            json!({
                "acceptedNames": spec.get("names").cloned().unwrap_or(Value::Null),
                "conditions": conditions,
                "storedVersions": stored,
            }),
        );
    }
}

//! API errors as the real server sends them: a `kind: Status` object with a code, a
//! reason and a message, so `kube::Error::Api` carries them to the client unchanged.

use serde_json::{Value, json};

/// A failed request, answered with a `Status` body.
#[derive(Clone, Debug)]
pub(crate) struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// `deployments.apps`, `configmaps`: how messages name a resource.
    fn qualified(group: &str, name: &str) -> String {
        if group.is_empty() {
            name.to_string()
        } else {
            format!("{name}.{group}")
        }
    }

    fn details(group: &str, kind: &str, name: &str) -> Value {
        json!({"name": name, "group": group, "kind": kind})
    }

    pub fn not_found(group: &str, plural: &str, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", Self::qualified(group, plural)),
        )
        .with_details(Self::details(group, plural, name))
    }

    pub fn already_exists(group: &str, plural: &str, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!(
                "{} \"{name}\" already exists",
                Self::qualified(group, plural)
            ),
        )
        .with_details(Self::details(group, plural, name))
    }

    /// The optimistic-concurrency failure, worded as the real server words it.
    pub fn conflict(group: &str, plural: &str, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been \
                 modified; please apply your changes to the latest version and try again",
                Self::qualified(group, plural)
            ),
        )
        .with_details(Self::details(group, plural, name))
    }

    /// 422: `<Kind>.<group> "<name>" is invalid: <causes>`; each cause is
    /// `<field>: <what>`.
    pub fn invalid(group: &str, kind: &str, name: &str, causes: &[String]) -> Self {
        let structured: Vec<Value> = causes
            .iter()
            .map(|c| {
                let (field, what) = c.split_once(": ").unwrap_or(("", c.as_str()));
                let reason = if what.starts_with("Required value") {
                    "FieldValueRequired"
                } else if what.starts_with("Unsupported value") {
                    "FieldValueNotSupported"
                } else if what.starts_with("Forbidden") {
                    "FieldValueForbidden"
                } else if what.starts_with("Too long") {
                    "FieldValueTooLong"
                } else if what.starts_with("Duplicate value") {
                    "FieldValueDuplicate"
                } else {
                    "FieldValueInvalid"
                };
                json!({"reason": reason, "message": c, "field": field})
            })
            .collect();
        let mut details = Self::details(group, kind, name);
        details["causes"] = Value::Array(structured);
        Self::new(
            422,
            "Invalid",
            format!(
                "{} \"{name}\" is invalid: {}",
                Self::qualified(group, kind),
                causes.join(", ")
            ),
        )
        .with_details(details)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }

    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json; got {content_type}"
            ),
        )
    }

    /// The `Status` object.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let (Some(details), Some(map)) = (&self.details, status.as_object_mut()) {
            map.insert("details".into(), details.clone());
        }
        status
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.code, self.reason, self.message)
    }
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;

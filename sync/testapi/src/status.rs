//! The `Status` objects the API server answers errors with (k8s.io/apimachinery's StatusError
//! shapes: `kind`, `apiVersion`, `status: Failure`, `message`, `reason`, `details`, `code`),
//! built for one request. It builds values; it never decides which one a request gets.

use serde_json::{json, Value};

/// What a request was about, for the messages (`felixconfigurations.crd.projectcalico.org "default"`).
pub struct Target<'a> {
    pub group: &'a str,
    pub resource: &'a str,
    pub name: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub verb: &'a str,
}

fn qualified(t: &Target) -> String {
    if t.group.is_empty() {
        t.resource.to_string()
    } else {
        format!("{}.{}", t.resource, t.group)
    }
}

fn status(code: u16, reason: &str, message: String, details: Option<Value>) -> Value {
    let mut s = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code
    });
    if let Some(d) = details {
        s["details"] = d;
    }
    s
}

pub fn unauthorized() -> Value {
    status(401, "Unauthorized", "Unauthorized".into(), None)
}

pub fn forbidden(t: &Target, user: &str) -> Value {
    let scope = match t.namespace {
        Some(ns) => format!("in the namespace \"{ns}\""),
        None => "at the cluster scope".to_string(),
    };
    let what = match t.name {
        Some(n) => format!("{} \"{n}\" is forbidden", qualified(t)),
        None => format!("{} is forbidden", qualified(t)),
    };
    status(
        403,
        "Forbidden",
        format!(
            "{what}: User \"{user}\" cannot {} resource \"{}\" in API group \"{}\" {scope}",
            t.verb, t.resource, t.group
        ),
        Some(json!({"name": t.name.unwrap_or(""), "group": t.group, "kind": t.resource})),
    )
}

/// The object does not exist (its type is served).
pub fn not_found(t: &Target) -> Value {
    let name = t.name.unwrap_or("");
    status(
        404,
        "NotFound",
        format!("{} \"{name}\" not found", qualified(t)),
        Some(json!({"name": name, "group": t.group, "kind": t.resource})),
    )
}

/// The resource type is not served (a CRD that is not installed).
pub fn no_such_type() -> Value {
    status(
        404,
        "NotFound",
        "the server could not find the requested resource".into(),
        Some(json!({})),
    )
}

pub fn internal(code: u16) -> Value {
    if code == 503 {
        return status(
            503,
            "ServiceUnavailable",
            "the server is currently unable to handle the request".into(),
            Some(json!({})),
        );
    }
    status(
        code,
        "InternalError",
        "Internal error occurred: injected by the test API server".into(),
        Some(json!({"causes": [{"message": "injected by the test API server"}]})),
    )
}

/// The watch event a watch from a compacted resourceVersion gets.
pub fn gone(from: &str, now: u64) -> Value {
    status(
        410,
        "Expired",
        format!("too old resource version: {from} ({now})"),
        None,
    )
}

//! What a request path to the test API server names (group, version, namespace, resource,
//! object), and the names kube-apiserver derives from it (kind, apiVersion, whether a type is
//! built in). Pure string work: it never looks at the world or at a connection.

/// What a request path names.
#[derive(Debug)]
pub struct ApiPath {
    pub group: String,
    pub version: String,
    pub namespace: Option<String>,
    pub resource: String,
    pub name: Option<String>,
}

pub fn parse_path(p: &str) -> Option<ApiPath> {
    let parts: Vec<&str> = p.trim_matches('/').split('/').collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api", v, rest @ ..] => (String::new(), v.to_string(), rest),
        ["apis", g, v, rest @ ..] => (g.to_string(), v.to_string(), rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
        _ => (None, rest),
    };
    let (resource, name) = match rest {
        [r] => (r.to_string(), None),
        [r, n] => (r.to_string(), Some(n.to_string())),
        _ => return None,
    };
    Some(ApiPath {
        group,
        version,
        namespace,
        resource,
        name,
    })
}

pub fn kind_of(resource: &str) -> String {
    match resource {
        "daemonsets" => "DaemonSet".into(),
        "configmaps" => "ConfigMap".into(),
        "felixconfigurations" => "FelixConfiguration".into(),
        "installations" => "Installation".into(),
        "pods" => "Pod".into(),
        other => other.trim_end_matches('s').to_string(),
    }
}

pub fn api_version(p: &ApiPath) -> String {
    if p.group.is_empty() {
        p.version.clone()
    } else {
        format!("{}/{}", p.group, p.version)
    }
}

/// Built-in types' lists carry no kind/apiVersion on their items; custom resources' do.
pub fn builtin(group: &str) -> bool {
    group.is_empty() || group == "apps"
}

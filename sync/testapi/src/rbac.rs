//! RBAC as kube-apiserver applies it to one request, for the Roles and ClusterRoles in a YAML
//! file (other kinds in it are ignored, so a whole `kustomize build` output will do): a rule
//! matches on API group, resource, verb and, when it names resources, the object's name, which
//! a list or watch has only through a `metadata.name=` field selector. Bindings are taken as
//! given (every rule is the ServiceAccount's). It answers allow or deny; it never serves.

use anyhow::{Context, Result};
use serde::Deserialize;
use serde_json::Value;

#[derive(Clone, Debug)]
pub struct Rule {
    groups: Vec<String>,
    resources: Vec<String>,
    verbs: Vec<String>,
    names: Vec<String>,
    /// A Role's namespace; None for a ClusterRole.
    namespace: Option<String>,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Every rule of every Role and ClusterRole in `yaml` (one or more documents).
pub fn parse(yaml: &str) -> Result<Vec<Rule>> {
    let mut rules = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let v: Value = Value::deserialize(doc).context("RBAC YAML")?;
        let namespace = match v["kind"].as_str() {
            Some("ClusterRole") => None,
            Some("Role") => Some(
                v["metadata"]["namespace"]
                    .as_str()
                    .context("Role without a namespace")?
                    .to_string(),
            ),
            _ => continue,
        };
        for r in v["rules"].as_array().into_iter().flatten() {
            rules.push(Rule {
                groups: strings(&r["apiGroups"]),
                resources: strings(&r["resources"]),
                verbs: strings(&r["verbs"]),
                names: strings(&r["resourceNames"]),
                namespace: namespace.clone(),
            });
        }
    }
    Ok(rules)
}

fn has(list: &[String], item: &str) -> bool {
    list.iter().any(|s| s == "*" || s == item)
}

/// Whether any rule grants `verb` on `group`/`resource` in `namespace` for `name`.
pub fn allows(
    rules: &[Rule],
    group: &str,
    resource: &str,
    verb: &str,
    namespace: Option<&str>,
    name: Option<&str>,
) -> bool {
    rules.iter().any(|r| {
        let scope = match &r.namespace {
            None => true,
            Some(ns) => namespace == Some(ns.as_str()),
        };
        let named = r.names.is_empty() || name.is_some_and(|n| r.names.iter().any(|x| x == n));
        scope
            && named
            && has(&r.groups, group)
            && has(&r.resources, resource)
            && has(&r.verbs, verb)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
apiVersion: v1
kind: ServiceAccount
metadata: {name: sync, namespace: x}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: sync}
rules:
- apiGroups: [apps]
  resources: [daemonsets]
  resourceNames: [calico-node]
  verbs: [get, list, watch]
- apiGroups: [crd.projectcalico.org]
  resources: [felixconfigurations]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: cm, namespace: kube-system}
rules:
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get]
"#;

    #[test]
    fn rules_as_the_api_server_applies_them() {
        let r = parse(YAML).unwrap();
        assert!(allows(
            &r,
            "apps",
            "daemonsets",
            "list",
            Some("kube-system"),
            Some("calico-node")
        ));
        assert!(!allows(
            &r,
            "apps",
            "daemonsets",
            "list",
            Some("kube-system"),
            None
        ));
        assert!(!allows(
            &r,
            "apps",
            "daemonsets",
            "get",
            Some("kube-system"),
            Some("other")
        ));
        assert!(allows(
            &r,
            "crd.projectcalico.org",
            "felixconfigurations",
            "watch",
            None,
            Some("node.a")
        ));
        assert!(!allows(
            &r,
            "projectcalico.org",
            "felixconfigurations",
            "get",
            None,
            Some("default")
        ));
        assert!(allows(
            &r,
            "",
            "configmaps",
            "get",
            Some("kube-system"),
            Some("x")
        ));
        assert!(!allows(
            &r,
            "",
            "configmaps",
            "get",
            Some("calico-system"),
            Some("x")
        ));
        assert!(!allows(
            &r,
            "",
            "configmaps",
            "list",
            Some("kube-system"),
            None
        ));
    }
}

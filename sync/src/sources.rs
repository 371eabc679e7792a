//! What each of Calico's sources says about the dataplane, as plain data, and how that is read
//! out of an object the API returned (a DaemonSet's pod template, a FelixConfiguration, an
//! Installation). Pure: it never talks to the API server and never resolves a reference (the
//! `cluster` module does, with what this module says to look up).

use k8s_openapi::api::apps::v1::DaemonSet;
use modefile::Dataplane;
use serde_json::Value as Json;

use crate::felix;
use crate::reason::Reason;

/// One value a source can state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// `FELIX_BPFENABLED` or `spec.bpfEnabled`, with the text as found (for the log and the
    /// mode file's `source`).
    BpfEnabled { on: bool, text: String },
    /// `Installation.spec.calicoNetwork.linuxDataplane`.
    LinuxDataplane { dataplane: Dataplane, text: String },
}

impl Value {
    pub fn ebpf_on(&self) -> bool {
        match self {
            Value::BpfEnabled { on, .. } => *on,
            Value::LinuxDataplane { dataplane, .. } => dataplane.ebpf_on(),
        }
    }

    pub fn text(&self) -> &str {
        match self {
            Value::BpfEnabled { text, .. } | Value::LinuxDataplane { text, .. } => text,
        }
    }
}

/// What one source said in one evaluation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reading {
    /// The source is not there: its resource type is not served (CRD not installed), or there
    /// is no calico-node DaemonSet in that namespace, or no Installation object.
    Absent,
    /// The source is there and leaves the value to the next one (the object does not exist
    /// on a served type, the field or variable is not set, or is set empty).
    NoValue,
    Says(Value),
    /// The source exists but its value could not be known.
    Unreadable(Reason, String),
}

/// Which kind of source an observation comes from; the order is Felix's precedence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    DaemonSetEnv,
    FelixNode,
    FelixDefault,
    Installation,
}

/// One source's reading, named for people: `name` as the mode file's `source` shows it
/// (`FelixConfiguration default`), `place` as the log adds it (API group or namespace).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    pub kind: Kind,
    pub name: String,
    pub place: String,
    pub reading: Reading,
}

/// Where a calico-node container's `FELIX_BPFENABLED` comes from, before any ConfigMap is read.
/// Compared between two versions of the DaemonSet to tell a change that matters (the env) from
/// one that does not (its status, which changes with every pod on every node).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnvOrigin {
    /// No `env` entry and no `envFrom` source can set it.
    Unset,
    /// `env[].value`, with the variable's name as written.
    Literal { var: String, value: String },
    /// `env[].valueFrom.configMapKeyRef`.
    ConfigMapKey {
        var: String,
        name: String,
        key: String,
        optional: bool,
    },
    /// `envFrom[]`: the later entries win for the same variable; an `env` entry beats them all.
    From(Vec<EnvFrom>),
    /// A reference the sync does not follow (secretKeyRef, fieldRef, resourceFieldRef).
    Unfollowable { var: String, what: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnvFrom {
    ConfigMap {
        name: String,
        prefix: String,
        optional: bool,
    },
    Secret {
        name: String,
    },
}

/// The container Felix runs in, in both the operator's and the manifests' DaemonSet.
pub const CALICO_NODE: &str = "calico-node";

/// Where `FELIX_BPFENABLED` comes from in the DaemonSet's `calico-node` container; `Err` when
/// the pod template has no such container (not a DaemonSet Felix runs from).
pub fn env_origin(ds: &DaemonSet) -> Result<EnvOrigin, String> {
    let container = ds
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.iter().find(|c| c.name == CALICO_NODE))
        .ok_or_else(|| format!("the pod template has no container {CALICO_NODE:?}"))?;
    // Kubernetes: an `env` entry overrides `envFrom`, and the last of equal names wins.
    let explicit = container
        .env
        .iter()
        .flatten()
        .rev()
        .find(|e| felix::is_bpf_enabled_var(&e.name));
    if let Some(e) = explicit {
        let var = e.name.clone();
        let Some(from) = &e.value_from else {
            return Ok(EnvOrigin::Literal {
                var,
                value: e.value.clone().unwrap_or_default(),
            });
        };
        if let Some(r) = &from.config_map_key_ref {
            return Ok(EnvOrigin::ConfigMapKey {
                var,
                name: r.name.clone(),
                key: r.key.clone(),
                optional: r.optional.unwrap_or(false),
            });
        }
        let what = if from.secret_key_ref.is_some() {
            "secretKeyRef (the sync reads no Secrets)"
        } else if from.field_ref.is_some() {
            "fieldRef"
        } else {
            "resourceFieldRef"
        };
        return Ok(EnvOrigin::Unfollowable {
            var,
            what: what.to_string(),
        });
    }
    let from: Vec<EnvFrom> = container
        .env_from
        .iter()
        .flatten()
        .filter_map(|f| {
            let prefix = f.prefix.clone().unwrap_or_default();
            if let Some(c) = &f.config_map_ref {
                Some(EnvFrom::ConfigMap {
                    name: c.name.clone(),
                    prefix,
                    optional: c.optional.unwrap_or(false),
                })
            } else {
                f.secret_ref.as_ref().map(|s| EnvFrom::Secret {
                    name: s.name.clone(),
                })
            }
        })
        .collect();
    Ok(if from.is_empty() {
        EnvOrigin::Unset
    } else {
        EnvOrigin::From(from)
    })
}

/// A literal environment value as Felix takes it: empty is ignored, anything else must be one
/// of Felix's booleans.
pub fn env_value(var: &str, value: &str) -> Reading {
    if value.is_empty() {
        return Reading::NoValue;
    }
    match felix::parse_bool(value) {
        Some(on) => Reading::Says(Value::BpfEnabled {
            on,
            text: format!("{var}={value}"),
        }),
        None => Reading::Unreadable(
            Reason::Unparseable,
            format!("{var}={value:?} is not a boolean Felix accepts"),
        ),
    }
}

/// `spec.bpfEnabled` of a FelixConfiguration (the object as JSON, either API group).
pub fn bpf_enabled(obj: &Json) -> Reading {
    match obj.get("spec").and_then(|s| s.get("bpfEnabled")) {
        None | Some(Json::Null) => Reading::NoValue,
        Some(Json::Bool(on)) => Reading::Says(Value::BpfEnabled {
            on: *on,
            text: format!("bpfEnabled={on}"),
        }),
        Some(other) => Reading::Unreadable(
            Reason::Unparseable,
            format!("spec.bpfEnabled is {other}, not a boolean"),
        ),
    }
}

/// `spec.calicoNetwork.linuxDataplane` of an Installation (the operator's default, Iptables,
/// when unset).
pub fn linux_dataplane(obj: &Json) -> Reading {
    let raw = obj
        .get("spec")
        .and_then(|s| s.get("calicoNetwork"))
        .and_then(|n| n.get("linuxDataplane"));
    match raw {
        None | Some(Json::Null) => Reading::NoValue,
        Some(Json::String(s)) => match felix::linux_dataplane(s) {
            Some(dataplane) => Reading::Says(Value::LinuxDataplane {
                dataplane,
                text: format!("linuxDataplane={s}"),
            }),
            None => Reading::Unreadable(
                Reason::Unparseable,
                format!("linuxDataplane={s:?} is not one the operator knows"),
            ),
        },
        Some(other) => Reading::Unreadable(
            Reason::Unparseable,
            format!("linuxDataplane is {other}, not a string"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ds(container: Json) -> DaemonSet {
        serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "calico-node", "namespace": "kube-system"},
            "spec": {"selector": {}, "template": {"spec": {"containers": [
                {"name": "install-cni-sidecar", "env": [{"name": "FELIX_BPFENABLED", "value": "true"}]},
                container
            ]}}}
        }))
        .unwrap()
    }

    #[test]
    fn env_wins_over_env_from_and_the_last_entry_wins() {
        let d = ds(json!({"name": "calico-node",
            "envFrom": [{"configMapRef": {"name": "cm"}}],
            "env": [{"name": "FELIX_BPFENABLED", "value": "true"}, {"name": "felix_bpfenabled", "value": "false"}]}));
        assert_eq!(
            env_origin(&d).unwrap(),
            EnvOrigin::Literal {
                var: "felix_bpfenabled".into(),
                value: "false".into()
            }
        );
    }

    #[test]
    fn only_the_calico_node_container_counts() {
        let d = ds(
            json!({"name": "calico-node", "env": [{"name": "FELIX_LOGSEVERITYSCREEN", "value": "info"}]}),
        );
        assert_eq!(env_origin(&d).unwrap(), EnvOrigin::Unset);
        let none = ds(json!({"name": "other"}));
        assert!(env_origin(&none).is_err());
    }

    #[test]
    fn references_are_described_not_guessed() {
        let d = ds(
            json!({"name": "calico-node", "env": [{"name": "FELIX_BPFENABLED",
            "valueFrom": {"configMapKeyRef": {"name": "felix", "key": "bpf", "optional": true}}}]}),
        );
        assert_eq!(
            env_origin(&d).unwrap(),
            EnvOrigin::ConfigMapKey {
                var: "FELIX_BPFENABLED".into(),
                name: "felix".into(),
                key: "bpf".into(),
                optional: true
            }
        );
        let s = ds(
            json!({"name": "calico-node", "env": [{"name": "FELIX_BPFENABLED",
            "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}),
        );
        assert!(matches!(
            env_origin(&s).unwrap(),
            EnvOrigin::Unfollowable { .. }
        ));
        let f = ds(json!({"name": "calico-node", "envFrom": [
            {"configMapRef": {"name": "a"}, "prefix": "FELIX_"}, {"secretRef": {"name": "b"}}]}));
        assert_eq!(
            env_origin(&f).unwrap(),
            EnvOrigin::From(vec![
                EnvFrom::ConfigMap {
                    name: "a".into(),
                    prefix: "FELIX_".into(),
                    optional: false
                },
                EnvFrom::Secret { name: "b".into() },
            ])
        );
    }

    #[test]
    fn env_values_follow_felix() {
        assert_eq!(env_value("FELIX_BPFENABLED", ""), Reading::NoValue);
        assert!(matches!(
            env_value("X", "yes"),
            Reading::Says(Value::BpfEnabled { on: true, .. })
        ));
        assert!(matches!(
            env_value("X", "F"),
            Reading::Says(Value::BpfEnabled { on: false, .. })
        ));
        assert!(matches!(
            env_value("X", "on"),
            Reading::Unreadable(Reason::Unparseable, _)
        ));
    }

    #[test]
    fn felixconfiguration_and_installation_fields() {
        assert_eq!(bpf_enabled(&json!({"spec": {}})), Reading::NoValue);
        assert_eq!(bpf_enabled(&json!({})), Reading::NoValue);
        assert!(
            matches!(bpf_enabled(&json!({"spec": {"bpfEnabled": true}})), Reading::Says(v) if v.ebpf_on())
        );
        assert!(matches!(
            bpf_enabled(&json!({"spec": {"bpfEnabled": "true"}})),
            Reading::Unreadable(..)
        ));
        assert_eq!(linux_dataplane(&json!({"spec": {}})), Reading::NoValue);
        assert!(
            matches!(linux_dataplane(&json!({"spec": {"calicoNetwork": {"linuxDataplane": "BPF"}}})), Reading::Says(v) if v.ebpf_on())
        );
        assert!(matches!(
            linux_dataplane(&json!({"spec": {"calicoNetwork": {"linuxDataplane": "Windows"}}})),
            Reading::Unreadable(..)
        ));
    }
}

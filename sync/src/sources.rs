//! What each of Calico's sources says about the dataplane, as plain data, and how that is read
//! out of an object the API returned (a DaemonSet's pod template, a FelixConfiguration, an
//! Installation). Pure: it never talks to the API server and never resolves a reference (the
//! `cluster` module does, with what this module says to look up).

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Pod, PodSpec};
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
    /// This node's running calico-node pod's env: Felix's env as it runs now.
    PodEnv,
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
///
/// Kubernetes overrides only an *exact* name (an `env` entry beats every `envFrom` key of the
/// same name; a later entry beats an earlier one), while Felix matches names
/// case-insensitively: `FELIX_BPFENABLED` and `felix_bpfenabled` are two variables, which
/// kubelet passes in a random order per container start, so Felix may go by either. Every
/// such name is kept here, and `combine` says on when any of them does.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct EnvOrigin {
    /// The `env[]` entries whose name Felix takes as `BPFEnabled`, in order.
    pub env: Vec<EnvEntry>,
    /// Every `envFrom[]` source: any of them may carry such a name.
    pub from: Vec<EnvFrom>,
}

/// One `env[]` entry whose name matches, with its name as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvEntry {
    pub var: String,
    pub source: EnvSource,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnvSource {
    /// `env[].value`.
    Literal(String),
    /// `env[].valueFrom.configMapKeyRef`.
    ConfigMapKey {
        name: String,
        key: String,
        optional: bool,
    },
    /// A reference the sync does not follow (secretKeyRef, fieldRef, resourceFieldRef).
    Unfollowable(String),
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
    container_env(ds.spec.as_ref().and_then(|s| s.template.spec.as_ref()))
        .map_err(|e| format!("the pod template has {e}"))
}

/// The same for a running calico-node pod: what its Felix was started with, which during a
/// rolling update (or under `updateStrategy: OnDelete`) is not yet the template's.
pub fn pod_env_origin(pod: &Pod) -> Result<EnvOrigin, String> {
    container_env(pod.spec.as_ref()).map_err(|e| format!("the pod has {e}"))
}

fn container_env(spec: Option<&PodSpec>) -> Result<EnvOrigin, String> {
    let container = spec
        .and_then(|p| p.containers.iter().find(|c| c.name == CALICO_NODE))
        .ok_or_else(|| format!("no container {CALICO_NODE:?}"))?;
    let env = container
        .env
        .iter()
        .flatten()
        .filter(|e| felix::is_bpf_enabled_var(&e.name))
        .map(|e| {
            let source = match &e.value_from {
                None => EnvSource::Literal(e.value.clone().unwrap_or_default()),
                Some(from) => match &from.config_map_key_ref {
                    Some(r) => EnvSource::ConfigMapKey {
                        name: r.name.clone(),
                        key: r.key.clone(),
                        optional: r.optional.unwrap_or(false),
                    },
                    None if from.secret_key_ref.is_some() => EnvSource::Unfollowable(
                        "secretKeyRef (the sync reads no Secrets)".to_string(),
                    ),
                    None if from.field_ref.is_some() => {
                        EnvSource::Unfollowable("fieldRef".to_string())
                    }
                    None => EnvSource::Unfollowable("resourceFieldRef".to_string()),
                },
            };
            EnvEntry {
                var: e.name.clone(),
                source,
            }
        })
        .collect();
    let from = container
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
    Ok(EnvOrigin { env, from })
}

/// What the container's environment says, from the reading of each distinct variable Felix
/// takes as `BPFEnabled` (and of each place that may hold one but could not be read): on when
/// any says on, since Felix may go by any of them; else unreadable when any is; else off when
/// any says off; else no value.
pub fn combine(readings: impl IntoIterator<Item = Reading>) -> Reading {
    let all: Vec<Reading> = readings.into_iter().collect();
    let pick = |want: fn(&Reading) -> bool| all.iter().find(|r| want(r)).cloned();
    pick(|r| matches!(r, Reading::Says(v) if v.ebpf_on()))
        .or_else(|| pick(|r| matches!(r, Reading::Unreadable(..))))
        .or_else(|| pick(|r| matches!(r, Reading::Says(_))))
        .unwrap_or(Reading::NoValue)
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

/// The Installation's `linuxDataplane`, from `spec.calicoNetwork` and from
/// `status.computed.calicoNetwork` (the operator's merge of the `overlay` Installation over
/// `default`, which a managed add-on may use to switch the dataplane): BPF when either says so,
/// else unreadable when either is, else the computed value (what the operator renders), else
/// the spec's; no value (the operator's default, Iptables) when neither sets it.
pub fn linux_dataplane(obj: &Json) -> Reading {
    let at = |path: &[&str], label: &str| {
        let raw = path
            .iter()
            .chain(&["calicoNetwork", "linuxDataplane"])
            .try_fold(obj, |o, k| o.get(k));
        linux_dataplane_value(raw, label)
    };
    let computed = at(&["status", "computed"], "status.computed ");
    let spec = at(&["spec"], "");
    let all = [computed, spec];
    let pick = |want: fn(&Reading) -> bool| all.iter().find(|r| want(r)).cloned();
    pick(|r| matches!(r, Reading::Says(v) if v.ebpf_on()))
        .or_else(|| pick(|r| matches!(r, Reading::Unreadable(..))))
        .or_else(|| pick(|r| matches!(r, Reading::Says(_))))
        .unwrap_or(Reading::NoValue)
}

fn linux_dataplane_value(raw: Option<&Json>, label: &str) -> Reading {
    match raw {
        None | Some(Json::Null) => Reading::NoValue,
        Some(Json::String(s)) => match felix::linux_dataplane(s) {
            Some(dataplane) => Reading::Says(Value::LinuxDataplane {
                dataplane,
                text: format!("{label}linuxDataplane={s}"),
            }),
            None => Reading::Unreadable(
                Reason::Unparseable,
                format!("{label}linuxDataplane={s:?} is not one the operator knows"),
            ),
        },
        Some(other) => Reading::Unreadable(
            Reason::Unparseable,
            format!("{label}linuxDataplane is {other}, not a string"),
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

    fn literal(var: &str, value: &str) -> EnvEntry {
        EnvEntry {
            var: var.into(),
            source: EnvSource::Literal(value.into()),
        }
    }

    #[test]
    fn every_case_variant_is_kept() {
        let d = ds(json!({"name": "calico-node",
            "envFrom": [{"configMapRef": {"name": "cm"}}],
            "env": [{"name": "FELIX_BPFENABLED", "value": "true"}, {"name": "felix_bpfenabled", "value": "false"}]}));
        assert_eq!(
            env_origin(&d).unwrap(),
            EnvOrigin {
                env: vec![
                    literal("FELIX_BPFENABLED", "true"),
                    literal("felix_bpfenabled", "false")
                ],
                from: vec![EnvFrom::ConfigMap {
                    name: "cm".into(),
                    prefix: String::new(),
                    optional: false
                }],
            }
        );
    }

    #[test]
    fn two_names_felix_may_go_by_either_so_on_wins() {
        let on = env_value("FELIX_BPFENABLED", "true");
        let off = env_value("felix_bpfenabled", "false");
        let bad = env_value("Felix_BPFEnabled", "on");
        assert_eq!(combine([off.clone(), on.clone()]), on);
        assert_eq!(combine([on.clone(), bad.clone()]), on);
        assert_eq!(combine([off.clone(), bad.clone()]), bad);
        assert_eq!(combine([Reading::NoValue, off.clone()]), off);
        assert_eq!(combine([Reading::NoValue]), Reading::NoValue);
        assert_eq!(combine([]), Reading::NoValue);
    }

    #[test]
    fn only_the_calico_node_container_counts() {
        let d = ds(
            json!({"name": "calico-node", "env": [{"name": "FELIX_LOGSEVERITYSCREEN", "value": "info"}]}),
        );
        assert_eq!(env_origin(&d).unwrap(), EnvOrigin::default());
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
            env_origin(&d).unwrap().env,
            vec![EnvEntry {
                var: "FELIX_BPFENABLED".into(),
                source: EnvSource::ConfigMapKey {
                    name: "felix".into(),
                    key: "bpf".into(),
                    optional: true
                }
            }]
        );
        let s = ds(
            json!({"name": "calico-node", "env": [{"name": "FELIX_BPFENABLED",
            "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}),
        );
        assert!(matches!(
            env_origin(&s).unwrap().env[0].source,
            EnvSource::Unfollowable(_)
        ));
        let f = ds(json!({"name": "calico-node", "envFrom": [
            {"configMapRef": {"name": "a"}, "prefix": "FELIX_"}, {"secretRef": {"name": "b"}}]}));
        assert_eq!(
            env_origin(&f).unwrap().from,
            vec![
                EnvFrom::ConfigMap {
                    name: "a".into(),
                    prefix: "FELIX_".into(),
                    optional: false
                },
                EnvFrom::Secret { name: "b".into() },
            ]
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

    #[test]
    fn installation_status_computed_counts_too() {
        let both = |spec: &str, computed: &str| {
            linux_dataplane(&json!({
                "spec": {"calicoNetwork": {"linuxDataplane": spec}},
                "status": {"computed": {"calicoNetwork": {"linuxDataplane": computed}}}}))
        };
        // An overlay switched to BPF: the computed spec says so, the default's spec does not.
        assert!(matches!(both("Iptables", "BPF"), Reading::Says(v)
            if v.ebpf_on() && v.text() == "status.computed linuxDataplane=BPF"));
        assert!(matches!(both("BPF", "Iptables"), Reading::Says(v) if v.ebpf_on()));
        assert!(matches!(
            both("Iptables", "Nftables"),
            Reading::Says(Value::LinuxDataplane {
                dataplane: Dataplane::Nftables,
                ..
            })
        ));
        assert!(matches!(
            both("Iptables", "Windows"),
            Reading::Unreadable(..)
        ));
        assert!(matches!(
            linux_dataplane(&json!({"spec": {}, "status": {"computed": {"calicoNetwork": {"linuxDataplane": "BPF"}}}})),
            Reading::Says(v) if v.ebpf_on()
        ));
    }
}

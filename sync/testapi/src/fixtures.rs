//! Calico's objects in the shapes the API serves them (the JSON files in `fixtures/`, recorded
//! from the operator's and the manifests' renders and Calico's docs), and small edits of them
//! for the tests: a FelixConfiguration with a given `bpfEnabled`, an Installation with a given
//! `linuxDataplane`, a calico-node DaemonSet with a given env. It builds values; it stores none.

use serde_json::{json, Value};

pub const FELIX_CRD: &str = include_str!("../fixtures/felixconfiguration-default.crd.json");
pub const FELIX_V3: &str = include_str!("../fixtures/felixconfiguration-default.v3.json");
pub const INSTALLATION: &str = include_str!("../fixtures/installation-default.json");
pub const DS_OPERATOR: &str = include_str!("../fixtures/daemonset-calico-node.operator.json");
pub const DS_MANIFEST: &str = include_str!("../fixtures/daemonset-calico-node.manifest.json");
pub const CM_SERVICES: &str =
    include_str!("../fixtures/configmap-kubernetes-services-endpoint.json");

fn parse(text: &str) -> Value {
    serde_json::from_str(text).expect("the fixtures are JSON (checked by a test)")
}

/// A FelixConfiguration in `api_version` (`crd.projectcalico.org/v1` or `projectcalico.org/v3`)
/// called `name`, with `spec.bpfEnabled` set to `bpf` or left out.
pub fn felix(api_version: &str, name: &str, bpf: Option<bool>) -> Value {
    let mut o = parse(if api_version.starts_with("crd.") {
        FELIX_CRD
    } else {
        FELIX_V3
    });
    o["metadata"]["name"] = json!(name);
    let spec = o["spec"].as_object_mut().expect("spec");
    match bpf {
        Some(b) => spec.insert("bpfEnabled".into(), json!(b)),
        None => spec.remove("bpfEnabled"),
    };
    if name != "default" {
        // The operator annotates only `default`.
        if let Some(a) = o["metadata"]["annotations"].as_object_mut() {
            a.remove("operator.tigera.io/bpfEnabled");
        }
    }
    o
}

/// The Installation `default` with `linuxDataplane` set, or left out (the operator's default).
pub fn installation(dataplane: Option<&str>) -> Value {
    let mut o = parse(INSTALLATION);
    let net = o["spec"]["calicoNetwork"]
        .as_object_mut()
        .expect("calicoNetwork");
    match dataplane {
        Some(d) => net.insert("linuxDataplane".into(), json!(d)),
        None => net.remove("linuxDataplane"),
    };
    o
}

/// The calico-node DaemonSet as the operator renders it (calico-system) or as the manifests
/// install it (kube-system), with the calico-node container's `FELIX_BPFENABLED` entry
/// replaced by `entry` (a whole `env` item), or removed when `None`.
pub fn daemonset(namespace: &str, entry: Option<Value>) -> Value {
    let mut o = parse(if namespace == "calico-system" {
        DS_OPERATOR
    } else {
        DS_MANIFEST
    });
    o["metadata"]["namespace"] = json!(namespace);
    let env = o["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array_mut()
        .expect("env");
    env.retain(|e| e["name"] != "FELIX_BPFENABLED");
    if let Some(e) = entry {
        env.push(e);
    }
    o
}

/// This node's calico-node pod, as the DaemonSet in `namespace` made it (its template, with
/// `entry` as in `daemonset`), running on `node`.
pub fn calico_node_pod(namespace: &str, node: &str, entry: Option<Value>) -> Value {
    let ds = daemonset(namespace, entry);
    let template = &ds["spec"]["template"];
    let mut labels = template["metadata"]["labels"].clone();
    if !labels.is_object() {
        labels = json!({});
    }
    labels["k8s-app"] = json!("calico-node");
    let mut spec = template["spec"].clone();
    spec["nodeName"] = json!(node);
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("calico-node-{node}"), "namespace": namespace,
                     "labels": labels},
        "spec": spec,
        "status": {"phase": "Running"}
    })
}

/// `{"name": "FELIX_BPFENABLED", "value": value}`.
pub fn env_value(value: &str) -> Value {
    json!({"name": "FELIX_BPFENABLED", "value": value})
}

/// `FELIX_BPFENABLED` from a ConfigMap key.
pub fn env_config_map(name: &str, key: &str, optional: bool) -> Value {
    json!({"name": "FELIX_BPFENABLED", "valueFrom": {"configMapKeyRef": {"name": name, "key": key, "optional": optional}}})
}

/// A ConfigMap with `data`.
pub fn config_map(namespace: &str, name: &str, data: &[(&str, &str)]) -> Value {
    let mut o = parse(CM_SERVICES);
    o["metadata"]["namespace"] = json!(namespace);
    o["metadata"]["name"] = json!(name);
    let map: serde_json::Map<String, Value> = data
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    o["data"] = Value::Object(map);
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixtures_parse_and_edit() {
        for t in [
            FELIX_CRD,
            FELIX_V3,
            INSTALLATION,
            DS_OPERATOR,
            DS_MANIFEST,
            CM_SERVICES,
        ] {
            let v: Value = serde_json::from_str(t).unwrap();
            assert!(v["apiVersion"].is_string() && v["metadata"]["name"].is_string());
        }
        assert_eq!(
            felix("projectcalico.org/v3", "node.n1", Some(true))["spec"]["bpfEnabled"],
            json!(true)
        );
        assert!(felix("crd.projectcalico.org/v1", "default", None)["spec"]
            .get("bpfEnabled")
            .is_none());
        assert_eq!(
            installation(Some("BPF"))["spec"]["calicoNetwork"]["linuxDataplane"],
            json!("BPF")
        );
        let ds = daemonset("kube-system", Some(env_value("1")));
        let env = ds["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap();
        assert_eq!(
            env.iter()
                .filter(|e| e["name"] == "FELIX_BPFENABLED")
                .count(),
            1
        );
    }
}

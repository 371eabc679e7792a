//! Every source through the API as Calico's objects really look: the precedence rows, both API
//! groups, the operator's and the manifests' DaemonSets, ConfigMap references and Felix's
//! booleans, each run as `--once` against the test API server.

mod common;
use common::*;

/// Reset the world to serve every type with no object, plant `none` as the cached mode, let
/// `setup` build the cluster, run once, and compare with `want`: a dataplane and a piece of
/// its `source`, or `keep <reason>` (the planted `none` must stay).
fn row(h: &Harness, name: &str, setup: impl Fn(&World), want: &str, source: &str) {
    let _ = std::fs::remove_dir_all(h.world.dir.join("objects"));
    h.world
        .set_served(&calico_bpf_guard_testapi::world::CALICO_TYPES)
        .unwrap();
    h.set_mode("none");
    setup(&h.world);
    let (code, err) = h.once();
    let mode = h.mode().unwrap();
    let text = h.mode_text().unwrap();
    if let Some(reason) = want.strip_prefix("keep ") {
        assert_eq!(
            (code, mode.as_str()),
            (1, "none"),
            "{name}: must keep the cache\n{err}"
        );
        assert!(
            err.contains(&format!(": {reason}: ")),
            "{name}: reason {reason} not in\n{err}"
        );
    } else {
        assert_eq!((code, mode.as_str()), (0, want), "{name}\n{err}");
        assert!(
            text.contains(&format!("source = \"sync: {source}")),
            "{name}: source {source:?} not in\n{text}"
        );
        assert!(text.contains("updated = "), "{name}: no updated in\n{text}");
    }
}

fn felix(w: &World, group: &str, name: &str, bpf: Option<bool>) {
    w.put("felixconfigurations", &fixtures::felix(group, name, bpf))
        .unwrap();
}

const V1: &str = "crd.projectcalico.org/v1";
const V3: &str = "projectcalico.org/v3";

#[test]
fn felix_precedence_rows() {
    if !have_root("felix_precedence_rows") {
        return;
    }
    let h = Harness::new("precedence");
    let node = format!("node.{NODE}");
    row(
        &h,
        "operator env on (operator before 1.34)",
        |w| {
            w.put(
                "daemonsets",
                &fixtures::daemonset("calico-system", Some(fixtures::env_value("true"))),
            )
            .unwrap();
            felix(w, V1, "default", Some(false));
        },
        "bpf",
        "DaemonSet calico-system/calico-node FELIX_BPFENABLED=true",
    );
    row(
        &h,
        "env off, nothing else: Felix goes by the env",
        |w| {
            w.put(
                "daemonsets",
                &fixtures::daemonset("calico-system", Some(fixtures::env_value("false"))),
            )
            .unwrap();
            felix(w, V1, "default", None);
        },
        "iptables",
        "DaemonSet calico-system/calico-node FELIX_BPFENABLED=false",
    );
    row(
        &h,
        "node.<name> on beats default off",
        |w| {
            w.put("daemonsets", &fixtures::daemonset("kube-system", None))
                .unwrap();
            felix(w, V1, &format!("node.{NODE}"), Some(true));
            felix(w, V1, "default", Some(false));
        },
        "bpf",
        &format!("FelixConfiguration {node} bpfEnabled=true"),
    );
    row(
        &h,
        "node.<name> off and default on: on wins (safety)",
        |w| {
            w.put("daemonsets", &fixtures::daemonset("kube-system", None))
                .unwrap();
            felix(w, V1, &format!("node.{NODE}"), Some(false));
            felix(w, V1, "default", Some(true));
        },
        "bpf",
        "FelixConfiguration default bpfEnabled=true",
    );
    row(
        &h,
        "node.<name> off decides when default is off too",
        |w| {
            w.put("daemonsets", &fixtures::daemonset("kube-system", None))
                .unwrap();
            felix(w, V1, &format!("node.{NODE}"), Some(false));
            felix(w, V1, "default", Some(false));
        },
        "iptables",
        &format!("FelixConfiguration {node} bpfEnabled=false"),
    );
    row(
        &h,
        "another node's FelixConfiguration is not ours",
        |w| {
            w.put("daemonsets", &fixtures::daemonset("kube-system", None))
                .unwrap();
            felix(w, V1, "node.worker-2", Some(true));
            felix(w, V1, "default", Some(false));
        },
        "iptables",
        "FelixConfiguration default bpfEnabled=false",
    );
    row(
        &h,
        "default unset: Felix's own default",
        |w| {
            w.put("daemonsets", &fixtures::daemonset("kube-system", None))
                .unwrap();
            felix(w, V1, "default", None);
        },
        "iptables",
        "no source sets BPFEnabled",
    );
}

#[test]
fn installation_and_api_groups() {
    if !have_root("installation_and_api_groups") {
        return;
    }
    let h = Harness::new("installation");
    let base = |w: &World, dp: Option<&str>| {
        w.put("daemonsets", &fixtures::daemonset("calico-system", None))
            .unwrap();
        felix(w, V1, "default", Some(false));
        felix(w, V3, "default", Some(false));
        w.put("installations", &fixtures::installation(dp)).unwrap();
    };
    row(
        &h,
        "Installation BPF before the operator flipped FelixConfiguration",
        |w| base(w, Some("BPF")),
        "bpf",
        "Installation default linuxDataplane=BPF",
    );
    row(
        &h,
        "Installation overlay BPF: the default's spec Iptables, status.computed BPF",
        |w| {
            base(w, Some("Iptables"));
            let mut i = fixtures::installation(Some("Iptables"));
            i["status"]["computed"]["calicoNetwork"]["linuxDataplane"] = json!("BPF");
            w.put("installations", &i).unwrap();
        },
        "bpf",
        "Installation default status.computed linuxDataplane=BPF",
    );
    row(
        &h,
        "Installation Nftables",
        |w| base(w, Some("Nftables")),
        "nftables",
        "FelixConfiguration default bpfEnabled=false; Installation default linuxDataplane=Nftables",
    );
    row(
        &h,
        "Installation VPP",
        |w| base(w, Some("VPP")),
        "vpp",
        "FelixConfiguration default bpfEnabled=false; Installation",
    );
    row(
        &h,
        "Installation Iptables",
        |w| base(w, Some("Iptables")),
        "iptables",
        "FelixConfiguration default bpfEnabled=false",
    );
    row(
        &h,
        "Installation without linuxDataplane (operator default)",
        |w| base(w, None),
        "iptables",
        "FelixConfiguration default",
    );
    row(
        &h,
        "Installation with a value the operator does not know",
        |w| base(w, Some("Windows")),
        "keep unparseable",
        "",
    );
    row(
        &h,
        "only projectcalico.org/v3 (3.30 v3 CRDs), on",
        |w| {
            w.unserve("crd.projectcalico.org/v1 felixconfigurations")
                .unwrap();
            w.put("daemonsets", &fixtures::daemonset("calico-system", None))
                .unwrap();
            felix(w, V3, "default", Some(true));
        },
        "bpf",
        "FelixConfiguration default bpfEnabled=true",
    );
    row(
        &h,
        "v1 says off, v3 says on: on wins",
        |w| {
            w.put("daemonsets", &fixtures::daemonset("calico-system", None))
                .unwrap();
            felix(w, V1, "default", Some(false));
            felix(w, V3, "default", Some(true));
        },
        "bpf",
        "FelixConfiguration default bpfEnabled=true",
    );
    row(
        &h,
        "no Installation CRD, no v3: absent is fine",
        |w| {
            w.unserve("operator.tigera.io/v1 installations").unwrap();
            w.unserve("projectcalico.org/v3 felixconfigurations")
                .unwrap();
            w.put("daemonsets", &fixtures::daemonset("kube-system", None))
                .unwrap();
            felix(w, V1, "default", Some(false));
        },
        "iptables",
        "FelixConfiguration default bpfEnabled=false",
    );
    row(
        &h,
        "Calico CRDs but no calico-node DaemonSet: keep",
        |w| {
            felix(w, V1, "default", Some(false));
        },
        "keep no_calico",
        "",
    );
    row(
        &h,
        "no Calico at all: keep",
        |w| {
            w.set_served(&["apps/v1 daemonsets", "v1 configmaps", "v1 pods"])
                .unwrap();
        },
        "keep no_calico",
        "",
    );
}

#[test]
fn daemonset_env_as_kubernetes_builds_it() {
    if !have_root("daemonset_env_as_kubernetes_builds_it") {
        return;
    }
    let h = Harness::new("env");
    let ds = |w: &World, entry: serde_json::Value| {
        w.put(
            "daemonsets",
            &fixtures::daemonset("kube-system", Some(entry)),
        )
        .unwrap();
        felix(w, V1, "default", Some(false));
    };
    for (value, want) in [
        ("1", "bpf"),
        ("Y", "bpf"),
        ("t", "bpf"),
        ("0", "iptables"),
        ("no", "iptables"),
    ] {
        row(
            &h,
            &format!("Felix boolean {value}"),
            |w| ds(w, fixtures::env_value(value)),
            want,
            "DaemonSet kube-system/calico-node FELIX_BPFENABLED=",
        );
    }
    row(
        &h,
        "a value Felix rejects",
        |w| ds(w, fixtures::env_value("on")),
        "keep unparseable",
        "",
    );
    row(
        &h,
        "an empty value is ignored, as Felix does",
        |w| ds(w, fixtures::env_value("")),
        "iptables",
        "FelixConfiguration default bpfEnabled=false",
    );
    row(
        &h,
        "Felix's names are case-insensitive",
        |w| ds(w, json!({"name": "felix_bpfEnabled", "value": "true"})),
        "bpf",
        "DaemonSet kube-system/calico-node felix_bpfEnabled=true",
    );
    // Kubernetes overrides only an exact name; kubelet passes distinct names in a random order
    // and Felix matches them case-insensitively, so it may go by either: on wins.
    let services = |w: &World, data: &[(&str, &str)]| {
        w.put(
            "configmaps",
            &fixtures::config_map("kube-system", "kubernetes-services-endpoint", data),
        )
        .unwrap();
    };
    row(
        &h,
        "env FELIX_BPFENABLED=true and env felix_bpfenabled=false: two variables",
        |w| {
            let mut d = fixtures::daemonset("kube-system", Some(fixtures::env_value("true")));
            d["spec"]["template"]["spec"]["containers"][0]["env"]
                .as_array_mut()
                .unwrap()
                .push(json!({"name": "felix_bpfenabled", "value": "false"}));
            w.put("daemonsets", &d).unwrap();
            felix(w, V1, "default", Some(false));
        },
        "bpf",
        "DaemonSet kube-system/calico-node FELIX_BPFENABLED=true",
    );
    row(
        &h,
        "env FELIX_BPFENABLED=false and envFrom key felix_bpfenabled=true: two variables",
        |w| {
            ds(w, fixtures::env_value("false"));
            services(w, &[("felix_bpfenabled", "true")]);
        },
        "bpf",
        "DaemonSet kube-system/calico-node felix_bpfenabled=true",
    );
    row(
        &h,
        "env FELIX_BPFENABLED=true and envFrom key felix_bpfenabled=false: two variables",
        |w| {
            ds(w, fixtures::env_value("true"));
            services(w, &[("felix_bpfenabled", "false")]);
        },
        "bpf",
        "DaemonSet kube-system/calico-node FELIX_BPFENABLED=true",
    );
    row(
        &h,
        "the same exact name in env and envFrom: env wins",
        |w| {
            ds(w, fixtures::env_value("false"));
            services(w, &[("FELIX_BPFENABLED", "true")]);
        },
        "iptables",
        "DaemonSet kube-system/calico-node FELIX_BPFENABLED=false",
    );
    row(
        &h,
        "configMapKeyRef followed",
        |w| {
            ds(w, fixtures::env_config_map("felix-env", "bpf", false));
            w.put(
                "configmaps",
                &fixtures::config_map("kube-system", "felix-env", &[("bpf", "true")]),
            )
            .unwrap();
        },
        "bpf",
        "DaemonSet kube-system/calico-node FELIX_BPFENABLED=true",
    );
    row(
        &h,
        "configMapKeyRef to a missing ConfigMap: must exist",
        |w| {
            ds(w, fixtures::env_config_map("felix-env", "bpf", false));
        },
        "keep not_found",
        "",
    );
    row(
        &h,
        "configMapKeyRef to a missing key: must exist",
        |w| {
            ds(w, fixtures::env_config_map("felix-env", "bpf", false));
            w.put(
                "configmaps",
                &fixtures::config_map("kube-system", "felix-env", &[("other", "true")]),
            )
            .unwrap();
        },
        "keep not_found",
        "",
    );
    row(
        &h,
        "optional configMapKeyRef, missing: not set",
        |w| {
            ds(w, fixtures::env_config_map("felix-env", "bpf", true));
        },
        "iptables",
        "FelixConfiguration default bpfEnabled=false",
    );
    row(
        &h,
        "secretKeyRef cannot be read",
        |w| {
            ds(
                w,
                json!({"name": "FELIX_BPFENABLED", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}),
            );
        },
        "keep unparseable",
        "",
    );
    row(
        &h,
        "envFrom kubernetes-services-endpoint carrying FELIX_BPFENABLED",
        |w| {
            w.put("daemonsets", &fixtures::daemonset("kube-system", None))
                .unwrap();
            felix(w, V1, "default", Some(false));
            w.put(
                "configmaps",
                &fixtures::config_map(
                    "kube-system",
                    "kubernetes-services-endpoint",
                    &[
                        ("KUBERNETES_SERVICE_HOST", "10.0.0.1"),
                        ("FELIX_BPFENABLED", "true"),
                    ],
                ),
            )
            .unwrap();
        },
        "bpf",
        "DaemonSet kube-system/calico-node FELIX_BPFENABLED=true",
    );
    row(
        &h,
        "envFrom optional ConfigMap missing",
        |w| {
            w.put("daemonsets", &fixtures::daemonset("kube-system", None))
                .unwrap();
            felix(w, V1, "default", Some(false));
        },
        "iptables",
        "FelixConfiguration default bpfEnabled=false",
    );
}

#[test]
fn the_nodes_own_calico_node_pod_counts() {
    if !have_root("the_nodes_own_calico_node_pod_counts") {
        return;
    }
    let h = Harness::new("pod");
    let cluster = |w: &World, template: &str, pod: Option<(&str, &str)>| {
        w.put(
            "daemonsets",
            &fixtures::daemonset("kube-system", Some(fixtures::env_value(template))),
        )
        .unwrap();
        felix(w, V1, "default", Some(false));
        if let Some((node, value)) = pod {
            w.put(
                "pods",
                &fixtures::calico_node_pod("kube-system", node, Some(fixtures::env_value(value))),
            )
            .unwrap();
        }
    };
    row(
        &h,
        "the template says off, this node's pod still runs with on (OnDelete, mid-rollout)",
        |w| cluster(w, "false", Some((NODE, "true"))),
        "bpf",
        &format!("Pod kube-system/calico-node on {NODE} FELIX_BPFENABLED=true"),
    );
    row(
        &h,
        "another node's pod is not ours",
        |w| cluster(w, "false", Some(("worker-2", "true"))),
        "iptables",
        "DaemonSet kube-system/calico-node FELIX_BPFENABLED=false",
    );
    row(
        &h,
        "pod and template agree on off",
        |w| cluster(w, "false", Some((NODE, "false"))),
        "iptables",
        "DaemonSet kube-system/calico-node FELIX_BPFENABLED=false",
    );
    row(
        &h,
        "pods cannot be listed: keep",
        |w| {
            cluster(w, "false", Some((NODE, "false")));
            w.set_faults(&["403 /pods?"]).unwrap();
        },
        "keep forbidden",
        "",
    );
    h.world.set_faults(&[]).unwrap();
}

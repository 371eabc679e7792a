//! The sync's requests against RBAC as kube-apiserver applies it: the ClusterRole shipped in
//! deploy/kubernetes grants every request the sync makes (lists, watches, the ConfigMap Calico's
//! manifests use), and a permission taken away keeps the cache instead of guessing.

mod common;
use common::*;

fn shipped_role() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/kubernetes/clusterrole.yaml"
    );
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn the_shipped_clusterrole_grants_every_request() {
    if !have_root("the_shipped_clusterrole_grants_every_request") {
        return;
    }
    let h = Harness::new("rbac-shipped");
    h.world.set_rbac(Some(&shipped_role())).unwrap();
    // A manifest install (kube-system, envFrom kubernetes-services-endpoint) and an operator
    // install side by side, so every kind of request is made.
    h.calico_off();
    h.world
        .put("daemonsets", &fixtures::daemonset("kube-system", None))
        .unwrap();
    h.world
        .put(
            "configmaps",
            &fixtures::config_map(
                "kube-system",
                "kubernetes-services-endpoint",
                &[("KUBERNETES_SERVICE_HOST", "10.0.0.1")],
            ),
        )
        .unwrap();
    h.world
        .put(
            "felixconfigurations",
            &fixtures::felix("crd.projectcalico.org/v1", &format!("node.{NODE}"), None),
        )
        .unwrap();
    let d = h.daemon();
    d.wait_for("iptables", || h.mode().as_deref() == Some("iptables"));
    h.wait_watching(&d);
    h.world
        .put("installations", &fixtures::installation(Some("BPF")))
        .unwrap();
    d.wait_for("bpf through the watch", || {
        h.mode().as_deref() == Some("bpf")
    });
    let requests = h.world.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.contains("/configmaps/kubernetes-services-endpoint")),
        "{requests:#?}"
    );
    let denied: Vec<&String> = requests.iter().filter(|r| r.ends_with("-> 403")).collect();
    assert!(
        denied.is_empty(),
        "the shipped ClusterRole denies: {denied:#?}"
    );
    assert_eq!(d.failures("forbidden"), 0.0);
    assert_eq!(d.stop(), 0);
}

#[test]
fn a_permission_taken_away_keeps_the_cache() {
    if !have_root("a_permission_taken_away_keeps_the_cache") {
        return;
    }
    let h = Harness::new("rbac-missing");
    // The shipped role without its Installation rule: the rule's lines, from its `- apiGroups`
    // line to the next rule or the end.
    let role = shipped_role();
    let mut kept = Vec::new();
    let mut skipping = false;
    for line in role.lines() {
        if line.trim_start().starts_with("- ") && line.contains("apiGroups") {
            skipping = line.contains("operator.tigera.io");
        } else if !line.starts_with(' ') && !line.is_empty() {
            skipping = false;
        }
        if !skipping {
            kept.push(line);
        }
    }
    let without = kept.join("\n");
    assert!(
        !without.contains("installations") && without.contains("felixconfigurations"),
        "{without}"
    );
    h.world.set_rbac(Some(&without)).unwrap();
    h.calico_off();
    h.set_mode("bpf");
    let (code, err) = h.once();
    assert_eq!((code, h.mode().as_deref()), (1, Some("bpf")), "{err}");
    assert!(
        err.contains("keeping bpf: forbidden: Installation default"),
        "{err}"
    );
    assert!(h
        .world
        .requests()
        .iter()
        .any(|r| r.contains("/installations?") && r.ends_with("-> 403")));
}

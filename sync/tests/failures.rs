//! Failure means keep: every way the API can fail leaves the cached mode exactly as it was
//! (same bytes), exits 1 and names the reason; and the one exception, a source that reads
//! eBPF on while another fails, still writes `bpf`.

mod common;
use common::*;

/// The cluster says iptables everywhere; the cache says bpf; a fault on `needle` must keep bpf.
fn keeps(h: &Harness, fault: &str, needle: &str, reason: &str) {
    h.calico_off();
    h.set_mode("bpf");
    let before = h.mode_text();
    h.world.set_faults(&[&format!("{fault} {needle}")]).unwrap();
    // The server holds an injected timeout for 30 s; 3 s is plenty to see it is one.
    let short: &[&str] = if fault == "timeout" {
        &["--request-timeout", "3s"]
    } else {
        &[]
    };
    let (code, err) = h.once_with(short);
    h.world.set_faults(&[]).unwrap();
    assert_eq!(code, 1, "{fault} on {needle}: must fail\n{err}");
    assert_eq!(
        h.mode_text(),
        before,
        "{fault} on {needle}: the cache changed\n{err}"
    );
    assert!(
        err.contains(&format!("keeping bpf: {reason}: ")),
        "{fault} on {needle}: want {reason}\n{err}"
    );
    // And without the fault the same cluster is written: the fault alone kept it.
    let (code, err) = h.once();
    assert_eq!((code, h.mode().as_deref()), (0, Some("iptables")), "{err}");
}

#[test]
fn every_failure_keeps_the_cache() {
    if !have_root("every_failure_keeps_the_cache") {
        return;
    }
    let h = Harness::new("faults");
    for (fault, needle, reason) in [
        ("401", "felixconfigurations", "unauthorized"),
        (
            "403",
            "crd.projectcalico.org/v1/felixconfigurations",
            "forbidden",
        ),
        ("403", "installations", "forbidden"),
        (
            "500",
            "projectcalico.org/v3/felixconfigurations",
            "server_error",
        ),
        ("503", "daemonsets", "server_error"),
        ("timeout", "installations", "timeout"),
        ("garbage", "calico-system/daemonsets", "unparseable"),
        (
            "garbage",
            "felixconfigurations?&fieldSelector=metadata.name%3Dnode",
            "unparseable",
        ),
        ("drop", "kube-system/daemonsets", "unreachable"),
        // apps/v1 daemonsets is served by every API server: a 404 is a failure, not "absent".
        ("404", "daemonsets", "not_found"),
    ] {
        keeps(&h, fault, needle, reason);
    }
}

#[test]
fn a_revoked_token_keeps_the_cache() {
    if !have_root("a_revoked_token_keeps_the_cache") {
        return;
    }
    let h = Harness::new("revoked");
    h.calico_off();
    h.set_mode("bpf");
    let kubeconfig = std::fs::read_to_string(h.world.dir.join("kubeconfig")).unwrap();
    let other = h.dir.join("token-old");
    std::fs::write(&other, "not-the-token").unwrap();
    std::fs::write(
        h.world.dir.join("kubeconfig"),
        kubeconfig.replace(
            &h.world.dir.join("token").display().to_string(),
            &other.display().to_string(),
        ),
    )
    .unwrap();
    let (code, err) = h.once();
    assert_eq!((code, h.mode().as_deref()), (1, Some("bpf")), "{err}");
    assert!(err.contains("keeping bpf: unauthorized: "), "{err}");
    assert!(
        h.world.requests().iter().all(|r| r.ends_with("-> 401")),
        "{:?}",
        h.world.requests()
    );
}

#[test]
fn on_wins_over_a_failing_source() {
    if !have_root("on_wins_over_a_failing_source") {
        return;
    }
    let h = Harness::new("onwins");
    h.calico_off();
    h.world
        .put("installations", &fixtures::installation(Some("BPF")))
        .unwrap();
    h.world
        .set_faults(&["403 felixconfigurations", "500 daemonsets"])
        .unwrap();
    h.set_mode("iptables");
    let (code, err) = h.once();
    assert_eq!((code, h.mode().as_deref()), (0, Some("bpf")), "{err}");
    // ... but off is never written while a source fails.
    h.world
        .put("installations", &fixtures::installation(Some("Iptables")))
        .unwrap();
    let (code, err) = h.once();
    assert_eq!((code, h.mode().as_deref()), (1, Some("bpf")), "{err}");
}

#[test]
fn api_down_at_start_keeps_the_cache() {
    if !have_root("api_down_at_start_keeps_the_cache") {
        return;
    }
    let mut h = Harness::new("down");
    h.calico_off();
    h.set_mode("bpf");
    h.stop_api();
    let before = h.mode_text();
    let (code, err) = h.once();
    assert_eq!(code, 1, "{err}");
    assert_eq!(h.mode_text(), before);
    assert!(err.contains("keeping bpf: unreachable: "), "{err}");
    // No mode file at all, API down: still nothing written (no guess).
    std::fs::remove_file(&h.mode_file).unwrap();
    let (code, err) = h.once();
    assert_eq!((code, exists(&h.mode_file)), (1, false), "{err}");
    assert!(err.contains("keeping no mode file: unreachable: "), "{err}");

    // As a daemon: down at start, counted and retried, then the API comes back and it writes.
    h.set_mode("bpf");
    let d = h.daemon();
    d.wait_for("failures counted", || d.failures("unreachable") >= 2.0);
    assert_eq!(h.mode().as_deref(), Some("bpf"));
    // The API down is the cluster's fault, not this pod's: every pod NotReady at once would
    // page for nothing the pod can change.
    assert_eq!(d.get("/readyz").map(|r| r.0), Some(200));
    assert_eq!(d.get("/healthz").map(|r| r.0), Some(200));
    // An admin's `mode set` meanwhile shows in the metric at the next evaluation.
    h.set_mode("vpp");
    d.wait_for("the metric says vpp", || {
        d.metric(
            "calico_bpf_guard_sync_mode_info{dataplane=\"vpp\",written_by=\"planted by the test\"}",
        ) == 1.0
    });
    h.set_mode("bpf");
    h.start_api();
    d.wait_for("the write after the API came back", || {
        h.mode().as_deref() == Some("iptables")
    });
    d.wait_for("ready", || d.get("/readyz").map(|r| r.0) == Some(200));
    assert_eq!(d.stop(), 0);
}

#[test]
fn override_needs_no_api() {
    if !have_root("override_needs_no_api") {
        return;
    }
    let mut h = Harness::new("overridedown");
    h.stop_api();
    h.set_mode("bpf");
    h.set_override(Some("none\n"));
    let (code, err) = h.once();
    assert_eq!((code, h.mode().as_deref()), (0, Some("none")), "{err}");
    assert!(h
        .mode_text()
        .unwrap()
        .contains("source = \"sync: override dataplane=none\""));
    h.set_override(Some("sometimes"));
    let (code, err) = h.once();
    assert_eq!((code, h.mode().as_deref()), (1, Some("none")), "{err}");
    assert!(err.contains("keeping none: override_invalid: "), "{err}");
}

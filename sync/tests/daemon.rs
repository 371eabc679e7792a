//! The sync as the DaemonSet runs it: a change in the cluster reaches the mode file through a
//! watch (the re-evaluation interval is 10 minutes here, so nothing else can carry it), a watch
//! that breaks or expires resumes, a rotated token is read again, the override flips the file
//! without a restart, the file is written only on change, and SIGTERM stops it cleanly.

mod common;
use common::*;

fn list_requests(h: &Harness) -> usize {
    h.requests_where(|r| !r.contains("watch=true"))
}

/// `count` once it has not moved for a second: whatever the start set off is over.
fn settled(count: impl Fn() -> usize) -> usize {
    let mut last = count();
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
        let now = count();
        if now == last {
            return now;
        }
        last = now;
    }
}

/// Evaluations the daemon finished, by their log lines.
fn evaluations(d: &Daemon) -> usize {
    d.log()
        .lines()
        .filter(|l| {
            l.contains("info: unchanged ")
                || l.contains("info: wrote ")
                || l.contains("warning: keeping ")
        })
        .count()
}

/// Watch events of `kind` the server sent on watches whose request contains `on`.
fn events(h: &Harness, on: &str, kind: &str) -> usize {
    h.world
        .events()
        .iter()
        .filter(|e| e.contains(on) && e.ends_with(&format!(" {kind}")))
        .count()
}

#[test]
fn a_cluster_switch_arrives_by_watch() {
    if !have_root("a_cluster_switch_arrives_by_watch") {
        return;
    }
    let h = Harness::new("switch");
    let d = h.daemon_watching_off();
    h.set_felix_default(Some(true));
    d.wait_for("bpf", || h.mode().as_deref() == Some("bpf"));
    assert!(h
        .mode_text()
        .unwrap()
        .contains("source = \"sync: FelixConfiguration default bpfEnabled=true\""));
    h.world
        .put("installations", &fixtures::installation(Some("Nftables")))
        .unwrap();
    h.set_felix_default(Some(false));
    d.wait_for("nftables", || h.mode().as_deref() == Some("nftables"));
    // The metrics say what was written, by what, and when.
    let (code, body) = d.get("/metrics").unwrap();
    assert_eq!(code, 200);
    assert!(body.contains("calico_bpf_guard_sync_mode_info{dataplane=\"nftables\",written_by=\"sync: FelixConfiguration default bpfEnabled=false; Installation default linuxDataplane=Nftables\"} 1"), "{body}");
    assert_eq!(d.metric("calico_bpf_guard_sync_writes_total"), 3.0);
    assert!(d.metric("calico_bpf_guard_sync_last_success_timestamp_seconds") > 1.7e9);
    assert_eq!(d.get("/readyz").map(|r| r.0), Some(200));
    assert_eq!(d.stop(), 0);
}

#[test]
fn a_lagging_watch_cache_does_not_hold_a_stale_off() {
    if !have_root("a_lagging_watch_cache_does_not_hold_a_stale_off") {
        return;
    }
    let h = Harness::new("stale");
    let d = h.daemon_watching_off();
    // Another API server's watch cache is behind: a resourceVersion=0 list still says off
    // after the watch said on. The evaluation reads consistently, so the switch lands now,
    // not at the next resync (10 minutes here).
    h.world.set_faults(&["stale felixconfigurations"]).unwrap();
    h.set_felix_default(Some(true));
    d.wait_for("bpf despite the lagging cache", || {
        h.mode().as_deref() == Some("bpf")
    });
    assert_eq!(d.stop(), 0);
}

#[test]
fn status_churn_costs_no_request_and_writes_nothing() {
    if !have_root("status_churn_costs_no_request_and_writes_nothing") {
        return;
    }
    let h = Harness::new("churn");
    let d = h.daemon_watching_off();
    let evals = settled(|| evaluations(&d));
    let lists = list_requests(&h);
    let before = std::fs::metadata(&h.mode_file).unwrap();
    // The DaemonSet's status changes with every pod in the cluster; its env does not. Each
    // change is waited for on the watch, so the sync has had it before the next step.
    let ds_watch = "/namespaces/calico-system/daemonsets?";
    for ready in 0..5 {
        let sent = events(&h, ds_watch, "MODIFIED");
        let mut ds = fixtures::daemonset("calico-system", None);
        ds["status"]["numberReady"] = json!(ready);
        h.world.put("daemonsets", &ds).unwrap();
        d.wait_for("the status change on the watch", || {
            events(&h, ds_watch, "MODIFIED") > sent
        });
    }
    // A FelixConfiguration edit that leaves bpfEnabled alone is no reason either.
    let fc_watch = "crd.projectcalico.org/v1/felixconfigurations?";
    let sent = events(&h, fc_watch, "MODIFIED");
    let mut fc = fixtures::felix("crd.projectcalico.org/v1", "default", Some(false));
    fc["spec"]["logSeverityScreen"] = json!("Debug");
    h.world.put("felixconfigurations", &fc).unwrap();
    d.wait_for("the edit on the watch", || {
        events(&h, fc_watch, "MODIFIED") > sent
    });
    // A relevant change makes exactly one evaluation, and one with the same answer writes
    // nothing; an evaluation the churn had set off would be one more, logged before it.
    h.world
        .put(
            "daemonsets",
            &fixtures::daemonset("calico-system", Some(fixtures::env_value("false"))),
        )
        .unwrap();
    let relevant = "unchanged iptables: DaemonSet calico-system/calico-node FELIX_BPFENABLED=false";
    d.wait_for("its log line", || d.log().contains(relevant));
    assert_eq!(
        settled(|| evaluations(&d)),
        evals + 1,
        "an irrelevant change made the sync evaluate:\n{}",
        d.log()
    );
    assert!(
        list_requests(&h) > lists,
        "the relevant change was evaluated without a request"
    );
    let after = std::fs::metadata(&h.mode_file).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        (before.ino(), before.mtime_nsec()),
        (after.ino(), after.mtime_nsec()),
        "rewritten without a change"
    );
    assert_eq!(d.metric("calico_bpf_guard_sync_writes_total"), 1.0);
    assert_eq!(d.stop(), 0);
}

#[test]
fn writes_only_on_change_once() {
    if !have_root("writes_only_on_change_once") {
        return;
    }
    let h = Harness::new("onchange");
    h.calico_off();
    let (code, err) = h.once();
    assert_eq!(code, 0, "{err}");
    let first = h.mode_text();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let (code, err) = h.once();
    assert_eq!(code, 3, "{err}");
    assert_eq!(
        h.mode_text(),
        first,
        "the second run rewrote an unchanged value"
    );
    assert!(err.contains("unchanged iptables"), "{err}");
}

#[test]
fn a_broken_watch_resumes() {
    if !have_root("a_broken_watch_resumes") {
        return;
    }
    let h = Harness::new("broken");
    let d = h.daemon_watching_off();
    // Every watch connection breaks, and keeps breaking for a while.
    h.world.set_faults(&["drop watch=true"]).unwrap();
    d.wait_for("broken watches counted", || {
        d.failures("watch_broken") >= WATCHES as f64
    });
    h.world.set_faults(&[]).unwrap();
    let open = |r: &str| r.contains("watch=true") && r.ends_with("-> 200");
    let watches = h.requests_where(open);
    d.wait_for("watches again", || {
        h.requests_where(open) >= watches + WATCHES
    });
    h.set_felix_default(Some(true));
    d.wait_for("bpf through the resumed watch", || {
        h.mode().as_deref() == Some("bpf")
    });

    // 410 Gone inside the open watches (an etcd compaction): the watcher lists again, and the
    // next change still arrives.
    let opened: Vec<String> = h
        .world
        .requests()
        .iter()
        .filter_map(|r| r.strip_suffix(" -> 200"))
        .filter(|r| r.contains("watch=true"))
        .map(str::to_string)
        .collect();
    let lists = list_requests(&h);
    h.world.set_faults(&["gone watch=true"]).unwrap();
    d.wait_for("a 410 inside a watch that was open", || {
        h.world
            .requests()
            .iter()
            .filter_map(|r| r.strip_suffix(" -> 410"))
            .any(|r| opened.iter().any(|o| o == r))
    });
    d.wait_for("a list after the 410", || list_requests(&h) > lists);
    h.world.set_faults(&[]).unwrap();
    h.set_felix_default(Some(false));
    d.wait_for("iptables after 410", || {
        h.mode().as_deref() == Some("iptables")
    });
    assert_eq!(d.stop(), 0);
}

#[test]
fn a_rotated_token_is_read_again() {
    if !have_root("a_rotated_token_is_read_again") {
        return;
    }
    let h = Harness::new("rotate");
    let d = h.daemon_watching_off();
    // kubelet rotates the projected token; the old one is refused from now on.
    h.world.rotate_token("token-1").unwrap();
    h.set_felix_default(Some(true));
    // kube-rs alone would keep the old token for about a minute; the sync drops its client
    // after a 401 and reads the file again.
    d.wait_for("bpf with the new token", || {
        h.mode().as_deref() == Some("bpf")
    });
    assert!(d.failures("unauthorized") >= 1.0, "{}", d.log());
    assert_eq!(d.stop(), 0);
}

#[test]
fn the_override_flips_without_a_restart() {
    if !have_root("the_override_flips_without_a_restart") {
        return;
    }
    let h = Harness::new("override");
    h.calico_off();
    h.set_felix_default(Some(true));
    h.set_override(Some("auto\n"));
    let d = h.daemon();
    d.wait_for("bpf", || h.mode().as_deref() == Some("bpf"));
    h.set_override(Some("none\n"));
    d.wait_for("none", || h.mode().as_deref() == Some("none"));
    assert!(h
        .mode_text()
        .unwrap()
        .contains("source = \"sync: override dataplane=none\""));
    h.set_override(Some("iptables"));
    d.wait_for("iptables", || h.mode().as_deref() == Some("iptables"));
    h.set_override(Some("bogus"));
    d.wait_for("override_invalid counted", || {
        d.failures("override_invalid") >= 1.0
    });
    assert_eq!(h.mode().as_deref(), Some("iptables"));
    // A fault of this pod's own configuration: not ready.
    d.wait_for("not ready", || d.get("/readyz").map(|r| r.0) == Some(503));
    // The key removed from the ConfigMap: back to auto, the cluster's bpf.
    h.set_override(None);
    d.wait_for("bpf again", || h.mode().as_deref() == Some("bpf"));
    d.wait_for("ready again", || d.get("/readyz").map(|r| r.0) == Some(200));
    assert_eq!(d.stop(), 0);
}

#[test]
fn an_override_left_on_is_flagged_and_the_cluster_still_watched() {
    if !have_root("an_override_left_on_is_flagged_and_the_cluster_still_watched") {
        return;
    }
    let h = Harness::new("conflict");
    h.calico_off();
    h.set_override(Some("iptables"));
    let d = h.daemon();
    let conflict = "calico_bpf_guard_sync_override_conflict";
    d.wait_for("iptables", || h.mode().as_deref() == Some("iptables"));
    h.wait_watching(&d);
    assert_eq!(d.metric(conflict), 0.0, "{}", d.log());
    // The cluster moves to eBPF; the override left on keeps writing iptables, and says so.
    // (Waited for on both watches too: the test server polls its world, and a change undone
    // before a watch looked would never be sent, where kube-apiserver sends every change.)
    let defaults = || {
        h.world
            .events()
            .iter()
            .filter(|e| e.contains("metadata.name%3Ddefault") && e.ends_with(" MODIFIED"))
            .filter(|e| e.contains("/felixconfigurations?"))
            .count()
    };
    let sent = defaults();
    h.set_felix_default(Some(true));
    d.wait_for("both watches carried it", || defaults() >= sent + 2);
    d.wait_for("the conflict", || d.metric(conflict) == 1.0);
    assert_eq!(h.mode().as_deref(), Some("iptables"));
    assert!(
        d.log()
            .contains("warning: the override dataplane=iptables overrules the cluster, which says bpf (FelixConfiguration default bpfEnabled=true)"),
        "{}",
        d.log()
    );
    // Back off in the cluster: no conflict; the other way round is one too.
    h.set_felix_default(Some(false));
    d.wait_for("no conflict", || d.metric(conflict) == 0.0);
    h.set_override(Some("bpf"));
    d.wait_for("bpf", || h.mode().as_deref() == Some("bpf"));
    d.wait_for("the conflict again", || d.metric(conflict) == 1.0);
    // Back to auto: the cluster decides and nothing contradicts it.
    h.set_override(Some("auto"));
    d.wait_for("iptables", || h.mode().as_deref() == Some("iptables"));
    assert_eq!(d.metric(conflict), 0.0);
    assert_eq!(d.stop(), 0);
}

#[test]
fn sigterm_stops_it_while_the_api_hangs() {
    if !have_root("sigterm_stops_it_while_the_api_hangs") {
        return;
    }
    let h = Harness::new("term");
    h.calico_off();
    // The Installation list hangs; the request timeout is 10 s, and the DaemonSet's grace
    // period is 10 s too.
    h.world.set_faults(&["timeout installations"]).unwrap();
    let d = h.daemon();
    d.wait_for("the evaluation under way", || {
        h.world
            .requests()
            .iter()
            .any(|r| r.contains("felixconfigurations") && r.ends_with("-> 200"))
    });
    let asked = std::time::Instant::now();
    assert_eq!(d.stop(), 0);
    assert!(
        asked.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
}

#[test]
fn a_removed_crd_is_kept_for_the_hold_then_absent() {
    if !have_root("a_removed_crd_is_kept_for_the_hold_then_absent") {
        return;
    }
    let h = Harness::new("crd");
    h.calico_off();
    h.world
        .put("installations", &fixtures::installation(Some("BPF")))
        .unwrap();
    let hold = std::time::Duration::from_secs(2);
    let d = h.daemon_with(&["--absent-hold", "2s"]);
    d.wait_for("bpf", || h.mode().as_deref() == Some("bpf"));
    // The operator is uninstalled: its CRD goes, the rest says off. The type was served a
    // moment ago, so its 404 is first a failure (an API service re-registering looks the
    // same), and only after the hold is the source absent.
    let gone = std::time::Instant::now();
    h.world
        .unserve("operator.tigera.io/v1 installations")
        .unwrap();
    d.wait_for("iptables", || h.mode().as_deref() == Some("iptables"));
    assert!(
        gone.elapsed() >= hold,
        "iptables after {:?}, before the hold:\n{}",
        gone.elapsed(),
        d.log()
    );
    assert!(d.failures("not_found") >= 1.0, "{}", d.log());
    let said = d.log();
    let kept = said
        .find("keeping bpf: not_found: Installation default (operator.tigera.io/v1): operator.tigera.io/v1 installations was served earlier")
        .unwrap_or_else(|| panic!("no keep during the hold:\n{said}"));
    let wrote = said.find("wrote iptables").unwrap();
    assert!(kept < wrote, "{said}");
    let present = "calico_bpf_guard_sync_source_present{source=\"Installation default\",place=\"operator.tigera.io/v1\"}";
    d.wait_for("the metric says it is absent", || {
        d.metric(present) == 0.0 && d.get("/metrics").is_some_and(|m| m.1.contains(present))
    });
    let said = d.log();
    let last = said
        .lines()
        .rfind(|l| l.contains("sources present:"))
        .unwrap();
    assert!(
        last.split("absent:")
            .nth(1)
            .unwrap()
            .contains("Installation default (operator.tigera.io/v1)"),
        "{said}"
    );
    assert_eq!(d.stop(), 0);
}

#[test]
fn a_deleted_object_and_bookmarks_are_understood() {
    if !have_root("a_deleted_object_and_bookmarks_are_understood") {
        return;
    }
    let h = Harness::new("deleted");
    h.calico_off();
    h.world
        .put("installations", &fixtures::installation(Some("BPF")))
        .unwrap();
    let d = h.daemon();
    d.wait_for("bpf", || h.mode().as_deref() == Some("bpf"));
    h.wait_watching(&d);
    // The test server sends a BOOKMARK every second on every watch; a shape kube-rs could not
    // read would break the watch and count.
    d.wait_for("two bookmarks on every watch", || {
        events(&h, "watch=true", "BOOKMARK") >= 14
    });
    assert_eq!(d.failures("watch_broken"), 0.0, "{}", d.log());
    // DELETED: the Installation goes (the operator's CRD stays), and with it the only "on".
    h.world
        .delete(&calico_bpf_guard_testapi::ObjectRef::new(
            "operator.tigera.io/v1",
            None,
            "installations",
            "default",
        ))
        .unwrap();
    d.wait_for("iptables after DELETED", || {
        h.mode().as_deref() == Some("iptables")
    });
    assert_eq!(d.stop(), 0);
}

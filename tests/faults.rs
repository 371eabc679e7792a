//! Faults in the middle of a sweep, injected into the real binary (feature `failpoints`):
//! failed steps are reported one by one while the rest of the plan still runs; objects that
//! vanish between scan and apply count as already gone; an exclusive cgroup slot taken over
//! meanwhile by another program is left to it.
#![cfg(feature = "failpoints")]

mod common;

use std::fs;
use std::os::fd::AsFd;
use std::process::Output;

use calico_bpf_guard::kernel::bpf::{self, IdSpace, Target};
use calico_bpf_testkit::progs::SOCK_ADDR;
use calico_bpf_testkit::sandbox::run;
use common::*;
use plant::{CALICO_HOST, CALICO_NETWORK, CONNECT4, CONNECT6};
use serde_json::Value;

/// Stale Calico state on the host and in the sandbox's network namespace, beside other tools'.
fn stale_node(test: &str) -> Option<Sandbox> {
    let sb = sandbox(test)?;
    plant::calico_host(&sb.bpffs.path, &sb.cgroup.path).expect("planting the host half");
    sb.netns()
        .enter(plant::calico_network)
        .expect("planting the network half");
    sb.set_mode(Some("iptables"))
        .expect("writing the mode file");
    Some(sb)
}

fn all_calico() -> Vec<&'static str> {
    CALICO_HOST.iter().chain(&CALICO_NETWORK).copied().collect()
}

fn rows(report: &Value) -> &Vec<Value> {
    report["objects"].as_array().expect("objects in the report")
}

fn field<'a>(row: &'a Value, key: &str) -> &'a str {
    row[key].as_str().unwrap_or_default()
}

/// `(kind, where)` of every row with this result.
fn with_result(report: &Value, result: &str) -> Vec<(String, String)> {
    let mut v: Vec<_> = rows(report)
        .iter()
        .filter(|r| field(r, "result") == result)
        .map(|r| (field(r, "kind").to_string(), field(r, "where").to_string()))
        .collect();
    v.sort();
    v
}

fn show(out: &Output) -> String {
    format!("stdout:\n{}\nstderr:\n{}", stdout(out), stderr(out))
}

/// One kind of step fails every time: exit 1, the report lists exactly those steps as failed,
/// and every other Calico object is removed all the same.
fn one_kind_fails(test: &str, kind: &str, planted_kind: usize, left: &[&str]) {
    let Some(sb) = stale_node(test) else {
        return;
    };
    let before = sb.snapshot();
    let out = sb.guard_env(
        &["sweep", "--json"],
        &[("FAILPOINTS", &format!("apply-step=return({kind})"))],
    );
    assert_eq!(code(&out), 1, "{}", show(&out));
    let report = json(&out);
    let failed: Vec<&Value> = rows(&report)
        .iter()
        .filter(|r| field(r, "result") == "failed")
        .collect();
    assert_eq!(failed.len(), planted_kind, "{}", show(&out));
    for r in &failed {
        assert_eq!(field(r, "kind"), kind, "{r}");
        assert_eq!(
            field(r, "detail"),
            format!("injected failure ({kind})"),
            "{r}"
        );
    }
    assert_eq!(report["summary"]["failed"], planted_kind, "{}", show(&out));
    let err = stderr(&out);
    assert!(
        err.matches("FAILED to remove").count() == planted_kind,
        "each failure is logged once: {err}"
    );
    // Exactly the objects of the failing kind stay; every other Calico object went.
    let removed: Vec<&str> = all_calico()
        .into_iter()
        .filter(|l| !left.contains(l))
        .collect();
    assert_removed_exactly(&before, &sb.snapshot(), &removed);
}

#[test]
fn failing_tc_filter_deletes_leave_the_rest_removed() {
    one_kind_fails(
        "fault-tc",
        "tc filter",
        3,
        &[
            "tc cali1a2b3c4d ingress pref 1 proto all cali_tc_preambl",
            "tc cali1a2b3c4d egress pref 1 proto all cali_tc_preambl",
            "tc cali1a2b3c4d ingress pref 2 proto ip calico_from_wor",
        ],
    );
}

#[test]
fn failing_cgroup_detaches_leave_the_rest_removed() {
    one_kind_fails(
        "fault-cg",
        "cgroup attachment",
        3,
        &[
            "cgroup . connect4 calico_connect_ exclusive",
            "cgroup . sendmsg4 calico_sendmsg_ exclusive",
            "cgroup . recvmsg4 calico_recvmsg_ exclusive",
        ],
    );
}

#[test]
fn failing_device_delete_leaves_the_rest_removed() {
    one_kind_fails(
        "fault-dev",
        "device",
        1,
        &["dev bpfin.cali veth", "dev bpfout.cali veth"],
    );
}

/// Every step fails: exit 1, every planned object is reported failed, nothing changed.
#[test]
fn every_step_failing_changes_nothing_and_reports_all() {
    let Some(sb) = stale_node("fault-all") else {
        return;
    };
    let before = sb.snapshot();
    let planned = json(&guard_ok(&sb, &["sweep", "--dry-run", "--json"], 0));
    let n = rows(&planned).len();
    assert!(n >= all_calico().len() - 1, "{planned}");
    let out = sb.guard_env(&["sweep", "--json"], &[("FAILPOINTS", "apply-step=return")]);
    assert_eq!(code(&out), 1, "{}", show(&out));
    let report = json(&out);
    assert_eq!(report["summary"]["failed"], n, "{}", show(&out));
    assert_eq!(report["summary"]["removed"], 0, "{}", show(&out));
    assert_eq!(rows(&report).len(), n, "{}", show(&out));
    assert_eq!(sb.snapshot(), before);
}

fn prog_on(sb: &Sandbox, hook: u32) -> u32 {
    let dir = fs::File::open(&sb.cgroup.path).expect("opening the cgroup");
    let q = bpf::query(Target::Fd(dir.as_fd()), hook).expect("querying the cgroup");
    assert_eq!(q.progs.len(), 1, "{q:?}");
    q.progs[0].prog_id
}

/// Objects removed by someone else between scan and apply count as already gone: exit 0, no
/// failure, and everything else is removed.
#[test]
fn objects_that_vanish_after_the_scan_are_already_gone() {
    let Some(sb) = stale_node("fault-vanish") else {
        return;
    };
    // A Calico program on a pod's cgroup that is removed meanwhile. (connect6: the parent's
    // exclusive connect4 program forbids attachments below it.)
    let pod = sb.cgroup.child("pod1").expect("a child cgroup");
    plant::attach(&pod, SOCK_ADDR, "calico_connect_v6", CONNECT6, 0, false).expect("attaching");
    let before = sb.snapshot();
    let connect4 = prog_on(&sb, CONNECT4);
    let paused = paused_sweep(&sb);

    // A pin unlinked, an exclusive program detached (and so freed), a cgroup removed, a filter
    // deleted, XDP detached, the device pair deleted.
    fs::remove_file(sb.bpffs.path.join("tc/globals/cali_v4_ct3")).expect("unlinking a pin");
    {
        let dir = fs::File::open(&sb.cgroup.path).expect("opening the cgroup");
        let prog = bpf::fd_by_id(IdSpace::Prog, connect4).expect("the Calico program");
        bpf::prog_detach(Target::Fd(dir.as_fd()), prog.as_fd(), CONNECT4).expect("detaching");
    }
    fs::remove_dir(&pod).expect("removing the pod cgroup");
    let ns = sb.netns();
    ns.ip(&["link", "set", "dev", "ens-data", "xdpgeneric", "off"])
        .expect("detaching XDP");
    ns.enter(|| {
        run(
            "tc",
            &[
                "filter",
                "del",
                "dev",
                "cali1a2b3c4d",
                "ingress",
                "pref",
                "2",
            ],
        )
    })
    .expect("deleting a filter");
    ns.ip(&["link", "del", "bpfin.cali"])
        .expect("deleting the device");

    let out = paused.resume();
    assert_eq!(code(&out), 0, "{}", show(&out));
    let report = json(&out);
    let gone: Vec<(String, String)> = with_result(&report, "already-gone");
    let pin = sb.bpffs.path.join("tc/globals/cali_v4_ct3");
    let want = [
        (
            "cgroup attachment".to_string(),
            format!("cgroup {} connect4 (exclusive)", sb.cgroup.path.display()),
        ),
        (
            "cgroup attachment".to_string(),
            format!("cgroup {} connect6 (exclusive)", pod.display()),
        ),
        ("device".to_string(), "this network namespace".to_string()),
        ("map pin".to_string(), pin.display().to_string()),
        (
            "tc filter".to_string(),
            "cali1a2b3c4d ingress pref 2 handle 0x1 protocol 0x0800".to_string(),
        ),
        (
            "xdp attachment".to_string(),
            "ens-data xdp (generic)".to_string(),
        ),
    ];
    assert_eq!(gone, want, "{}", show(&out));
    assert_eq!(report["summary"]["failed"], 0, "{}", show(&out));
    assert_eq!(report["summary"]["kept"], 0, "{}", show(&out));
    let mut removed = all_calico();
    removed.push("cgroup pod1 connect6 calico_connect_ exclusive");
    assert_removed_exactly(&before, &sb.snapshot(), &removed);
}

/// On an exclusive slot a detach removes whatever holds it, so the guard re-checks the
/// occupant: a foreign program that took the slot between scan and apply is kept.
#[test]
fn exclusive_slot_taken_over_meanwhile_is_kept() {
    let Some(sb) = stale_node("fault-slot") else {
        return;
    };
    let before = sb.snapshot();
    let connect4 = prog_on(&sb, CONNECT4);
    let paused = paused_sweep(&sb);

    // Keep the Calico program loaded (the guard can still open it by id), take it off the slot
    // and put another tool's exclusive program there.
    let calico = bpf::fd_by_id(IdSpace::Prog, connect4).expect("the Calico program");
    {
        let dir = fs::File::open(&sb.cgroup.path).expect("opening the cgroup");
        bpf::prog_detach(Target::Fd(dir.as_fd()), calico.as_fd(), CONNECT4).expect("detaching");
    }
    plant::attach(
        &sb.cgroup.path,
        SOCK_ADDR,
        "cil_sock4_connect",
        CONNECT4,
        0,
        false,
    )
    .expect("attaching the foreign program");

    let out = paused.resume();
    drop(calico);
    assert_eq!(code(&out), 0, "{}", show(&out));
    let report = json(&out);
    let kept: Vec<&Value> = rows(&report)
        .iter()
        .filter(|r| field(r, "result") == "kept")
        .collect();
    assert_eq!(kept.len(), 1, "{}", show(&out));
    assert_eq!(
        field(kept[0], "where"),
        format!("cgroup {} connect4 (exclusive)", sb.cgroup.path.display())
    );
    assert!(
        field(kept[0], "detail").starts_with("the slot now holds program "),
        "{}",
        kept[0]
    );
    let mut after_want = before.clone();
    for l in all_calico() {
        after_want.remove(l);
    }
    after_want.insert("cgroup . connect4 cil_sock4_conne exclusive".to_string());
    assert_eq!(sb.snapshot(), after_want);
}

/// A re-scan that fails after the sweep cannot prove what was left: every outcome is still
/// reported (they were logged as they happened), a "could not verify" row says what is
/// missing, and the sweep exits 1.
#[test]
fn a_failed_rescan_is_a_row_that_could_not_verify() {
    let Some(sb) = stale_node("fault-rescan") else {
        return;
    };
    let before = sb.snapshot();
    let out = sb.guard_env(
        &["sweep", "--json"],
        &[("FAILPOINTS", "rescan=return(injected re-scan failure)")],
    );
    assert_eq!(code(&out), 1, "{}", show(&out));
    let report = json(&out);
    let removed = with_result(&report, "removed");
    let failed: Vec<&Value> = rows(&report)
        .iter()
        .filter(|r| field(r, "result") == "failed")
        .collect();
    assert_eq!(failed.len(), 1, "{}", show(&out));
    assert_eq!(field(failed[0], "kind"), "re-scan");
    assert!(
        field(failed[0], "detail").contains("could not verify: injected re-scan failure"),
        "{}",
        show(&out)
    );
    assert_eq!(
        report["summary"]["removed"].as_u64(),
        Some(removed.len() as u64)
    );
    assert_removed_exactly(&before, &sb.snapshot(), &all_calico());
}

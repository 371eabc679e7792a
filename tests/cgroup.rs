//! Connect-time load balancer programs on cgroups, in every form Calico attached them, beside
//! other tools' programs on the same hooks.

mod common;
use calico_bpf_testkit::progs;
use common::*;
use plant::{CONNECT4, CONNECT6, CTLB, CTLB_LEGACY, MULTI, RECVMSG4, SENDMSG4};
use progs::{CGROUP_DEVICE, CGROUP_SKB, SOCK_ADDR};

#[test]
fn exclusive_attachments_are_detached() {
    let Some(sb) = sandbox("cg-exclusive") else {
        return;
    };
    for (name, hook) in CTLB {
        plant::attach(&sb.cgroup.path, SOCK_ADDR, name, hook, 0, true).unwrap();
    }
    assert_sweep_removes(
        &sb,
        "iptables",
        &[
            "cgroup . connect4 calico_connect_ exclusive",
            "cgroup . sendmsg4 calico_sendmsg_ exclusive",
            "cgroup . recvmsg4 calico_recvmsg_ exclusive",
            "cgroup . connect6 calico_connect_ exclusive",
            "cgroup . sendmsg6 calico_sendmsg_ exclusive",
            "cgroup . recvmsg6 calico_recvmsg_ exclusive",
        ],
    );
}

#[test]
fn multi_attachments_leave_foreign_neighbours() {
    let Some(sb) = sandbox("cg-multi") else {
        return;
    };
    let cg = &sb.cgroup.path;
    plant::attach(cg, SOCK_ADDR, "calico_connect_v4", CONNECT4, MULTI, false).unwrap();
    plant::attach(cg, SOCK_ADDR, "cil_sock4_connect", CONNECT4, MULTI, false).unwrap();
    plant::attach(cg, SOCK_ADDR, "calico_sendmsg_v4", SENDMSG4, MULTI, false).unwrap();
    plant::attach(cg, SOCK_ADDR, "cil_sock4_sendmsg", SENDMSG4, MULTI, false).unwrap();
    plant::foreign_cgroup(cg).unwrap();
    plant::attach(
        cg,
        CGROUP_DEVICE,
        "sd_devices",
        progs::ATTACH_DEVICE,
        MULTI,
        false,
    )
    .unwrap();
    // foreign_cgroup's CGROUP_SKB program named like Calico's stays: ownership is by type and name.
    assert_sweep_removes(
        &sb,
        "nftables",
        &[
            "cgroup . connect4 calico_connect_ multi",
            "cgroup . sendmsg4 calico_sendmsg_ multi",
        ],
    );
}

#[test]
fn pinned_links_are_detached_then_unpinned() {
    let Some(sb) = sandbox("cg-links") else {
        return;
    };
    let ctlb = sb.bpffs.path.join("ctlb");
    for (name, hook) in CTLB {
        plant::link(
            &sb.cgroup.path,
            SOCK_ADDR,
            name,
            hook,
            Some(&ctlb.join(name)),
            true,
        )
        .unwrap();
    }
    // A foreign link on the same hook, pinned elsewhere.
    plant::link(
        &sb.cgroup.path,
        SOCK_ADDR,
        "cil_sock6_connect",
        CONNECT6,
        Some(&sb.bpffs.path.join("cilium/sock6")),
        false,
    )
    .unwrap();
    sb.set_mode(Some("iptables")).unwrap();
    let before = sb.snapshot();
    let out = guard_ok(&sb, &["sweep", "--json"], 0);
    let report = json(&out);
    assert_eq!(report["summary"]["failed"], 0);
    assert_removed_exactly(
        &before,
        &sb.snapshot(),
        &[
            "cgroup . connect4 calico_connect_ multi",
            "cgroup . sendmsg4 calico_sendmsg_ multi",
            "cgroup . recvmsg4 calico_recvmsg_ multi",
            "cgroup . connect6 calico_connect_ multi",
            "cgroup . sendmsg6 calico_sendmsg_ multi",
            "cgroup . recvmsg6 calico_recvmsg_ multi",
            "pin ctlb/calico_connect_v4",
            "pin ctlb/calico_sendmsg_v4",
            "pin ctlb/calico_recvmsg_v4",
            "pin ctlb/calico_connect_v6",
            "pin ctlb/calico_sendmsg_v6",
            "pin ctlb/calico_recvmsg_v6",
            "dir ctlb/",
        ],
    );
}

#[test]
fn nested_cgroups_are_walked() {
    let Some(sb) = sandbox("cg-nested") else {
        return;
    };
    let pod = sb.cgroup.child("kubepods/burstable/pod1").unwrap();
    let other = sb.cgroup.child("system.slice/kubelet.service").unwrap();
    plant::attach(&pod, SOCK_ADDR, "calico_connect_v4", CONNECT4, MULTI, true).unwrap();
    plant::attach(&pod, SOCK_ADDR, "cil_sock4_connect", CONNECT4, MULTI, false).unwrap();
    plant::attach(&other, SOCK_ADDR, "calico_recvmsg_v4", RECVMSG4, 0, false).unwrap();
    plant::attach(
        &other,
        CGROUP_SKB,
        "sd_fw_egress",
        progs::ATTACH_EGRESS,
        MULTI,
        false,
    )
    .unwrap();
    assert_sweep_removes(
        &sb,
        "iptables",
        &[
            "cgroup kubepods/burstable/pod1 connect4 calico_connect_ multi",
            "cgroup system.slice/kubelet.service recvmsg4 calico_recvmsg_ exclusive",
        ],
    );
}

#[test]
fn legacy_programs_and_their_pins() {
    let Some(sb) = sandbox("cg-legacy") else {
        return;
    };
    let dir = sb.bpffs.path.join("calico_connect4");
    for (name, hook) in CTLB_LEGACY {
        plant::attach(&sb.cgroup.path, SOCK_ADDR, name, hook, 0, false).unwrap();
        plant::pin_prog(&dir.join(name), SOCK_ADDR, name, hook).unwrap();
    }
    // 3.30.1 pinned its IPv6 links at the bpffs root.
    plant::link(
        &sb.cgroup.path,
        SOCK_ADDR,
        "calico_connect_v6",
        CONNECT6,
        Some(&sb.bpffs.path.join("calico_connect_v6")),
        false,
    )
    .unwrap();
    assert_sweep_removes(
        &sb,
        "iptables",
        &[
            "cgroup . connect4 cali_ctlb_v4 exclusive",
            "cgroup . sendmsg4 cali_ctlb_sendm exclusive",
            "cgroup . recvmsg4 cali_ctlb_recvm exclusive",
            "cgroup . connect6 calico_connect_ multi",
            "pin calico_connect4/cali_ctlb_v4",
            "pin calico_connect4/cali_ctlb_sendmsg",
            "pin calico_connect4/cali_ctlb_recvmsg",
            "dir calico_connect4/",
            "pin calico_connect_v6",
        ],
    );
}

#[test]
fn reports_full_names_from_btf_and_cut_names_without() {
    let Some(sb) = sandbox("cg-btf") else { return };
    plant::attach(
        &sb.cgroup.path,
        SOCK_ADDR,
        "calico_connect_v46",
        CONNECT6,
        0,
        true,
    )
    .unwrap();
    plant::attach(
        &sb.cgroup.path,
        SOCK_ADDR,
        "calico_sendmsg_v4",
        SENDMSG4,
        0,
        false,
    )
    .unwrap();
    sb.set_mode(Some("iptables")).unwrap();
    let report = json(&guard_ok(&sb, &["sweep", "--dry-run", "--json"], 0));
    let mut names: Vec<String> = report["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["calico_connect_v46", "calico_sendmsg_"]);
}

#[test]
fn second_sweep_changes_nothing() {
    let Some(sb) = sandbox("cg-idempotent") else {
        return;
    };
    plant::calico_host(&sb.bpffs.path, &sb.cgroup.path).unwrap();
    sb.set_mode(Some("iptables")).unwrap();
    guard_ok(&sb, &["sweep"], 0);
    let after_first = sb.snapshot();
    let report = json(&guard_ok(&sb, &["sweep", "--json"], 0));
    assert_eq!(report["objects"].as_array().unwrap().len(), 0, "{report}");
    assert_eq!(sb.snapshot(), after_first);
}

/// A node has a cgroup or two per container, thousands of siblings under one parent. The walk
/// holds open only the directories from the root down to where it is, never one per sibling:
/// 5,000 sibling cgroups, a Calico program on the last, swept with 256 fds at most.
#[test]
fn thousands_of_sibling_cgroups_need_few_fds() {
    let Some(sb) = sandbox("cg-siblings") else {
        return;
    };
    let pods = sb.cgroup.child("pods").unwrap();
    for i in 0..5000 {
        std::fs::create_dir(pods.join(format!("c{i}"))).unwrap();
    }
    plant::attach(
        &pods.join("c4999"),
        SOCK_ADDR,
        "calico_connect_v4",
        CONNECT4,
        MULTI,
        false,
    )
    .unwrap();
    sb.set_mode(Some("iptables")).unwrap();
    let before = sb.snapshot();
    let out = guard_with_fd_limit(&sb, &["sweep"], 256);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert_removed_exactly(
        &before,
        &sb.snapshot(),
        &["cgroup pods/c4999 connect4 calico_connect_ multi"],
    );
}

//! bpffs pins: every family Calico leaves, and the never-touch list.

mod common;
use calico_bpf_testkit::progs;
use common::*;
use plant::{CONNECT4, MULTI};
use progs::{SCHED_CLS, SOCK_ADDR};

#[test]
fn every_pin_family_goes_and_nothing_else() {
    let Some(sb) = sandbox("fs-families") else {
        return;
    };
    let b = &sb.bpffs.path;
    // Calico's families.
    for m in [
        "cali_v4_ct3",
        "cali_v6_ct3",
        "cali_ctlb_progs",
        "xdp_cali_progs3",
    ] {
        plant::pin_map(&b.join("tc/globals").join(m), m).unwrap();
    }
    plant::pin_map(
        &b.join("tc/globals/old_jumps/a1b2/cali_jump2"),
        "cali_jump2",
    )
    .unwrap();
    plant::pin_map(&b.join("tc/globals/old_jumps/c3d4/nested/x"), "anything").unwrap();
    plant::pin_map(&b.join("tc/eth0_igr/cali_jump"), "cali_jump").unwrap();
    plant::pin_map(&b.join("tc/eth0_egr/cali_counters"), "cali_counters").unwrap();
    let hex = "0123456789abcdef0123456789abcdef01234567";
    plant::pin_map(&b.join("tc").join(hex).join("cali_jump"), "cali_jump").unwrap();
    plant::pin_prog(
        &b.join("tc").join(hex).join("calico_from_hos"),
        SCHED_CLS,
        "calico_from_hos",
        0,
    )
    .unwrap();
    // Never touched: iptables-mode XDP and sidecar acceleration, other tools, stray names.
    plant::foreign_pins(b).unwrap();
    plant::pin_map(&b.join("calico/sockmap/calico_sock_map"), "calico_sock_map").unwrap();
    plant::pin_map(&b.join("tc/globals/cilium_calls_hostns"), "cilium_calls_ho").unwrap();
    plant::pin_map(&b.join("elsewhere/cali_v4_ct3"), "cali_v4_ct3").unwrap();
    plant::pin_prog(
        &b.join("ctlb/calico_connect_v4"),
        SOCK_ADDR,
        "calico_connect_v4",
        CONNECT4,
    )
    .unwrap();
    // A Calico-named map under ctlb/ is not a CTLB program or link.
    plant::pin_map(&b.join("ctlb/cali_ctlb_progs"), "cali_ctlb_progs").unwrap();
    sb.set_mode(Some("iptables")).unwrap();
    let before = sb.snapshot();
    guard_ok(&sb, &["sweep"], 0);
    let hexdir = format!("dir tc/{hex}/");
    let hexjump = format!("pin tc/{hex}/cali_jump");
    let hexprog = format!("pin tc/{hex}/calico_from_hos");
    assert_removed_exactly(
        &before,
        &sb.snapshot(),
        &[
            "pin tc/globals/cali_v4_ct3",
            "pin tc/globals/cali_v6_ct3",
            "pin tc/globals/cali_ctlb_progs",
            "pin tc/globals/xdp_cali_progs3",
            "pin tc/globals/old_jumps/a1b2/cali_jump2",
            "pin tc/globals/old_jumps/c3d4/nested/x",
            "dir tc/globals/old_jumps/a1b2/",
            "dir tc/globals/old_jumps/c3d4/nested/",
            "dir tc/globals/old_jumps/c3d4/",
            "dir tc/globals/old_jumps/",
            "pin tc/eth0_igr/cali_jump",
            "dir tc/eth0_igr/",
            "pin tc/eth0_egr/cali_counters",
            "dir tc/eth0_egr/",
            &hexjump,
            &hexprog,
            &hexdir,
            "pin ctlb/calico_connect_v4",
        ],
    );
}

#[test]
fn ctlb_dir_with_foreign_entries_stays() {
    let Some(sb) = sandbox("fs-ctlb-foreign") else {
        return;
    };
    let ctlb = sb.bpffs.path.join("ctlb");
    plant::link(
        &sb.cgroup.path,
        SOCK_ADDR,
        "calico_connect_v4",
        CONNECT4,
        Some(&ctlb.join("calico_connect_v4")),
        false,
    )
    .unwrap();
    plant::link(
        &sb.cgroup.path,
        SOCK_ADDR,
        "cil_sock4_connect",
        CONNECT4,
        Some(&ctlb.join("foreign")),
        false,
    )
    .unwrap();
    plant::attach(
        &sb.cgroup.path,
        SOCK_ADDR,
        "caliper_connect",
        CONNECT4,
        MULTI,
        false,
    )
    .unwrap();
    assert_sweep_removes(
        &sb,
        "iptables",
        &[
            "cgroup . connect4 calico_connect_ multi",
            "pin ctlb/calico_connect_v4",
        ],
    );
}

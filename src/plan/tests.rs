//! The plan's tables: inventories in, ordered steps out, for every family and ordering rule.

use super::*;
use crate::inventory::{CgroupAttachment, HookAttachment, Located, Pin, PinDir, PinnedObject};
use crate::kernel::bpf::{
    LinkInfo, LinkTarget, MapInfo, ProgInfo, ATTACH_INET4_CONNECT as C4, ATTACH_TCX_INGRESS,
    F_ALLOW_MULTI as MULTI, PROG_TYPE_CGROUP_SOCK_ADDR as SA, PROG_TYPE_SCHED_CLS as CLS,
    PROG_TYPE_XDP as XDP,
};
use crate::kernel::netlink::{Filter, NetIf, XdpMode, PARENT_EGRESS, PARENT_INGRESS};
use crate::kernel::tree::FileId;
use crate::ownership::Place;

fn inv(progs: &[(u32, u32, &str)]) -> Inventory {
    let mut i = Inventory::default();
    for &(id, prog_type, name) in progs {
        i.programs.insert(
            id,
            ProgInfo {
                id,
                prog_type,
                name: name.into(),
            },
        );
    }
    i
}

fn cg(prog_id: u32, slot_flags: u32) -> CgroupAttachment {
    CgroupAttachment {
        root: "/cg".into(),
        cgroup: "/cg".into(),
        cgroup_id: 77,
        attach_type: C4,
        prog_id,
        slot_flags,
    }
}

fn loc(rel: &str) -> Located {
    Located {
        root: "/b".into(),
        rel: rel.into(),
        id: FileId::default(),
    }
}

fn pin(path: &str, place: Place, object: PinnedObject) -> Pin {
    Pin {
        at: loc(path),
        place,
        object,
    }
}

fn map(id: u32, name: &str) -> PinnedObject {
    PinnedObject::Map(MapInfo {
        id,
        name: name.into(),
    })
}

/// The plan as (action tag, location) pairs, in order.
fn tags(steps: &[Step]) -> Vec<(String, String)> {
    steps
        .iter()
        .map(|s| {
            let tag = match &s.action {
                Action::DetachCgroup {
                    exclusive: true, ..
                } => "detach-exclusive".to_string(),
                Action::DetachCgroup {
                    exclusive: false, ..
                } => "detach-multi".to_string(),
                Action::DetachLink { link_id } => format!("detach-link {link_id}"),
                Action::DetachHookLink { link_id } => format!("detach-hook-link {link_id}"),
                Action::DetachHook { .. } => "detach-hook".to_string(),
                Action::DetachXdp { mode, .. } => format!("detach-xdp {mode:?}"),
                Action::DeleteFilter { .. } => "delete-filter".to_string(),
                Action::Unpin { .. } => "unpin".to_string(),
                Action::RemoveDir { .. } => "rmdir".to_string(),
                Action::DeleteDevice { .. } => "delete-device".to_string(),
            };
            (tag, s.location.clone())
        })
        .collect()
}

fn t(tag: &str, at: &str) -> (String, String) {
    (tag.to_string(), at.to_string())
}

#[test]
fn cgroup_attachments_by_form() {
    let progs = [
        (1, SA, "calico_connect_"),
        (2, SA, "cil_sock4_conne"),
        (3, SA, "caliper_connect"),
        (4, SA, "cali_ctlb_v4"),
    ];
    let mut i = inv(&progs);
    i.cgroups = vec![cg(1, 0), cg(2, MULTI), cg(3, MULTI), cg(4, MULTI)];
    assert_eq!(
        tags(&build(&i, &BTreeMap::new())),
        [
            t("detach-exclusive", "cgroup /cg connect4 (exclusive)"),
            t("detach-multi", "cgroup /cg connect4 (multi)")
        ]
    );
    // The same program through a link on that cgroup and hook: detach the link.
    i.cgroups = vec![cg(1, MULTI)];
    i.links = vec![
        LinkInfo {
            id: 9,
            prog_id: 1,
            target: LinkTarget::Cgroup {
                cgroup_id: 78,
                attach_type: C4,
            },
        },
        LinkInfo {
            id: 10,
            prog_id: 1,
            target: LinkTarget::Cgroup {
                cgroup_id: 77,
                attach_type: C4,
            },
        },
    ];
    assert_eq!(
        tags(&build(&i, &BTreeMap::new())),
        [t("detach-link 10", "cgroup /cg connect4 (link 10)")]
    );
}

#[test]
fn pinned_link_is_detached_once_before_its_pin() {
    let mut i = inv(&[(1, SA, "calico_connect_")]);
    let link = LinkInfo {
        id: 5,
        prog_id: 1,
        target: LinkTarget::Cgroup {
            cgroup_id: 77,
            attach_type: C4,
        },
    };
    i.links = vec![link];
    i.cgroups = vec![cg(1, MULTI)];
    i.pins = vec![pin(
        "ctlb/calico_connect_v4",
        Place::Ctlb,
        PinnedObject::Link(link),
    )];
    i.dirs = vec![PinDir {
        at: loc("ctlb"),
        entries: 1,
    }];
    let names = BTreeMap::from([(1, "calico_connect_v4".to_string())]);
    let steps = build(&i, &names);
    assert_eq!(
        tags(&steps),
        [
            t("detach-link 5", "cgroup /cg connect4 (link 5)"),
            t("unpin", "/b/ctlb/calico_connect_v4"),
            t("rmdir", "/b/ctlb"),
        ]
    );
    assert_eq!(steps[0].name, "calico_connect_v4", "BTF name shown");
    assert_eq!(steps[1].objects, [ObjId::Link(5), ObjId::Prog(1)]);
}

#[test]
fn directories_go_only_when_emptied_deepest_first() {
    let mut i = inv(&[]);
    i.pins = vec![
        pin(
            "tc/globals/old_jumps/a/x",
            Place::OldJumps,
            map(1, "cali_jump2"),
        ),
        pin(
            "tc/eth0_igr/cali_jump",
            Place::IfaceDir,
            map(2, "cali_jump"),
        ),
        pin("tc/eth0_igr/other", Place::IfaceDir, map(3, "other")),
        pin(
            "tc/eth1_igr/cali_v4_x",
            Place::IfaceDir,
            map(4, "cali_v4_x"),
        ),
    ];
    i.dirs = vec![
        PinDir {
            at: loc("tc/globals/old_jumps"),
            entries: 1,
        },
        PinDir {
            at: loc("tc/globals/old_jumps/a"),
            entries: 1,
        },
        PinDir {
            at: loc("tc/eth0_igr"),
            entries: 2,
        },
        PinDir {
            at: loc("tc/eth1_igr"),
            entries: 1,
        },
        PinDir {
            at: loc("ctlb"),
            entries: 0,
        },
    ];
    // eth0_igr holds a foreign map, so it stays; eth1_igr has no jump/counters marker, so
    // nothing in it is Calico's; an already empty ctlb/ goes.
    assert_eq!(
        tags(&build(&i, &BTreeMap::new())),
        [
            t("unpin", "/b/tc/globals/old_jumps/a/x"),
            t("unpin", "/b/tc/eth0_igr/cali_jump"),
            t("rmdir", "/b/tc/globals/old_jumps/a"),
            t("rmdir", "/b/tc/globals/old_jumps"),
            t("rmdir", "/b/ctlb"),
        ]
    );
}

#[test]
fn network_objects() {
    let mut i = inv(&[
        (1, CLS, "cali_tc_preambl"),
        (2, CLS, "cil_from_contai"),
        (3, XDP, "cali_xdp_preamb"),
        (4, XDP, "prefilter"),
        (5, CLS, "calico_from_hos"),
    ]);
    let filter = |prog_id| Filter {
        ifindex: 2,
        parent: PARENT_EGRESS,
        handle: 1,
        info: (1 << 16) | 0x0300,
        chain: 0,
        kind: "bpf".into(),
        prog_id,
    };
    i.filters = vec![filter(Some(1)), filter(Some(2)), filter(None)];
    i.netifs = vec![
        NetIf {
            ifindex: 2,
            name: "cali1".into(),
            kind: Some("veth".into()),
            xdp: vec![(XdpMode::Generic, 3), (XdpMode::Driver, 4)],
            accept_local: false,
        },
        NetIf {
            ifindex: 3,
            name: "eth0".into(),
            kind: None,
            xdp: vec![(XdpMode::Driver, 3)],
            accept_local: false,
        },
        NetIf {
            ifindex: 4,
            name: "bpfin.cali".into(),
            kind: Some("veth".into()),
            xdp: vec![],
            accept_local: false,
        },
        NetIf {
            ifindex: 5,
            name: "vxlan.calico".into(),
            kind: Some("vxlan".into()),
            xdp: vec![],
            accept_local: false,
        },
    ];
    i.links = vec![LinkInfo {
        id: 8,
        prog_id: 3,
        target: LinkTarget::Xdp { ifindex: 3 },
    }];
    i.hooks = vec![
        HookAttachment {
            ifindex: 2,
            ifname: "cali1".into(),
            attach_type: ATTACH_TCX_INGRESS,
            prog_id: 5,
            link_id: None,
        },
        HookAttachment {
            ifindex: 3,
            ifname: "eth0".into(),
            attach_type: ATTACH_TCX_INGRESS,
            prog_id: 1,
            link_id: Some(6),
        },
        HookAttachment {
            ifindex: 3,
            ifname: "eth0".into(),
            attach_type: ATTACH_TCX_INGRESS,
            prog_id: 2,
            link_id: Some(7),
        },
    ];
    let steps = build(&i, &BTreeMap::new());
    assert_eq!(
        tags(&steps),
        [
            t(
                "delete-filter",
                "cali1 egress pref 1 handle 0x1 protocol 0x0003"
            ),
            t("detach-hook", "cali1 tcx ingress"),
            t("detach-hook-link 6", "eth0 tcx ingress (link 6)"),
            t("detach-xdp Generic", "cali1 xdp (generic)"),
            t("detach-link 8", "eth0 xdp (driver) (link 8)"),
            t("delete-device", "this network namespace"),
        ]
    );
    // Only the tcx detaches wait for grace periods.
    let waits: Vec<bool> = steps.iter().map(Step::waits_for_grace_period).collect();
    assert_eq!(waits, [false, true, true, false, false, false]);
}

#[test]
fn pinned_tcx_and_netkit_links_wait_for_grace_periods() {
    let mut i = inv(&[(1, CLS, "cali_tc_preambl"), (2, SA, "calico_connect_")]);
    let link = |id, target| {
        PinnedObject::Link(LinkInfo {
            id,
            prog_id: if id == 3 { 2 } else { 1 },
            target,
        })
    };
    i.pins = vec![
        pin(
            "tcx/gone_ingress",
            Place::Tcx,
            link(
                1,
                LinkTarget::Tcx {
                    ifindex: 9,
                    attach_type: ATTACH_TCX_INGRESS,
                },
            ),
        ),
        pin(
            "netkit/gone_primary",
            Place::Netkit,
            link(
                2,
                LinkTarget::Netkit {
                    ifindex: 9,
                    attach_type: crate::kernel::bpf::ATTACH_NETKIT_PRIMARY,
                },
            ),
        ),
        pin(
            "ctlb/calico_connect_v6",
            Place::Ctlb,
            link(
                3,
                LinkTarget::Cgroup {
                    cgroup_id: 1,
                    attach_type: C4,
                },
            ),
        ),
    ];
    let waiting: Vec<String> = build(&i, &BTreeMap::new())
        .iter()
        .filter(|s| s.waits_for_grace_period())
        .map(|s| s.location.clone())
        .collect();
    assert_eq!(
        waiting,
        [
            "pinned at /b/tcx/gone_ingress",
            "pinned at /b/netkit/gone_primary"
        ]
    );
}

/// Interface names are bytes: locations show them escaped, one line each, and the device
/// rule matches the exact bytes.
#[test]
fn interface_names_are_shown_escaped() {
    use std::os::unix::ffi::OsStringExt;
    let name = |b: &[u8]| std::ffi::OsString::from_vec(b.to_vec());
    let mut i = inv(&[(1, CLS, "cali_tc_preambl"), (3, XDP, "cali_xdp_preamb")]);
    i.filters = vec![Filter {
        ifindex: 2,
        parent: PARENT_INGRESS,
        handle: 1,
        info: (1 << 16) | 0x0300,
        chain: 0,
        kind: "bpf".into(),
        prog_id: Some(1),
    }];
    i.netifs = vec![
        NetIf {
            ifindex: 2,
            name: name(b"cali\xff1"),
            kind: Some("veth".into()),
            xdp: vec![(XdpMode::Generic, 3)],
            accept_local: false,
        },
        NetIf {
            ifindex: 4,
            name: name(b"bpfin.cali\xff"),
            kind: Some("veth".into()),
            xdp: vec![],
            accept_local: false,
        },
    ];
    i.hooks = vec![HookAttachment {
        ifindex: 5,
        ifname: name(b"w\x1b[2K\n"),
        attach_type: ATTACH_TCX_INGRESS,
        prog_id: 1,
        link_id: None,
    }];
    assert_eq!(
        tags(&build(&i, &BTreeMap::new())),
        [
            t(
                "delete-filter",
                "cali\\xff1 ingress pref 1 handle 0x1 protocol 0x0003"
            ),
            t("detach-hook", "w\\x1b[2K\\n tcx ingress"),
            t("detach-xdp Generic", "cali\\xff1 xdp (generic)"),
        ]
    );
}

/// The words a kind is shown in are the words the failpoint and JSON take.
#[test]
fn step_kinds_round_trip() {
    for k in StepKind::ALL {
        assert_eq!(k.to_string().parse::<StepKind>(), Ok(k));
        assert_eq!(
            serde_json::to_value(k).unwrap(),
            serde_json::Value::String(k.to_string())
        );
    }
    assert!("tc-filter".parse::<StepKind>().is_err());
}

/// A re-scan finds the same object by key, whatever its location text says.
#[test]
fn keys_name_the_object_in_its_place() {
    let mut i = inv(&[(1, SA, "calico_connect_"), (2, SA, "calico_sendmsg_")]);
    i.cgroups = vec![cg(1, MULTI), cg(2, MULTI)];
    let steps = build(&i, &BTreeMap::new());
    assert_eq!(steps[0].location, steps[1].location);
    assert_ne!(steps[0].key(), steps[1].key());
    let names = BTreeMap::from([(1, "calico_connect_v4".to_string())]);
    assert_eq!(build(&i, &names)[0].key(), steps[0].key());
}

#[test]
fn empty_inventory_empty_plan() {
    assert!(build(&Inventory::default(), &BTreeMap::new()).is_empty());
}

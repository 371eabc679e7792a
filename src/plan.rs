//! From an inventory to an ordered list of steps: pure, so every ordering and ownership decision
//! is unit-tested without a kernel. Order: detach (links before their pins), then unlink pins,
//! then remove emptied Calico directories (deepest first), then delete devices.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::inventory::{hook_name, Inventory, Located, PinnedObject, NETKIT_HOOKS};
use crate::kernel::bpf::{LinkTarget, F_ALLOW_MULTI};
use crate::kernel::netlink::{Filter, NetIf, XdpMode, PARENT_INGRESS};
use crate::names;
use crate::ownership::{self, PinnedFacts, Place, ProgFacts};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// An old-style cgroup attachment. `exclusive`: the slot has flags 0 (or override), where a
    /// detach removes whatever occupies it, so apply re-checks the occupant first.
    DetachCgroup {
        /// The cgroup2 root `cgroup` lies beneath: apply reaches it from there, one directory
        /// fd at a time, so a cgroup deeper than PATH_MAX is reached like any other.
        root: PathBuf,
        cgroup: PathBuf,
        cgroup_id: u64,
        attach_type: u32,
        prog_id: u32,
        exclusive: bool,
    },
    DetachLink {
        link_id: u32,
    },
    /// A tcx or netkit link: detached like any link, but the kernel waits for an RCU grace
    /// period before the detach returns (see `Step::waits_for_grace_period`).
    DetachHookLink {
        link_id: u32,
    },
    /// A tcx or netkit attachment made without a link.
    DetachHook {
        ifindex: u32,
        attach_type: u32,
        prog_id: u32,
    },
    DetachXdp {
        ifindex: u32,
        mode: XdpMode,
        prog_id: u32,
    },
    DeleteFilter {
        filter: Filter,
    },
    /// `expect` is the object the pin held at scan time; `at` says where and which inode.
    Unpin {
        at: Located,
        expect: ObjId,
    },
    RemoveDir {
        at: Located,
    },
    /// By its exact name (bytes).
    DeleteDevice {
        name: OsString,
    },
}

/// A kernel object a step touches; the live-dataplane interlock looks for processes holding one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "id")]
pub enum ObjId {
    Prog(u32),
    Map(u32),
    Link(u32),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub action: Action,
    /// What the object is, for people: "cgroup attachment", "tc filter", "pin", …
    pub kind: &'static str,
    /// Program, map or link id, when there is one.
    pub id: Option<u32>,
    pub name: String,
    pub location: String,
    pub reason: &'static str,
    pub objects: Vec<ObjId>,
}

impl Step {
    fn phase(&self) -> u8 {
        match self.action {
            Action::DetachCgroup { .. }
            | Action::DetachLink { .. }
            | Action::DetachHookLink { .. }
            | Action::DetachHook { .. }
            | Action::DetachXdp { .. }
            | Action::DeleteFilter { .. } => 0,
            Action::Unpin { .. } => 1,
            Action::RemoveDir { .. } => 2,
            Action::DeleteDevice { .. } => 3,
        }
    }
}

impl Step {
    /// A tcx or netkit detach: the kernel swaps the device's program array and waits for an RCU
    /// grace period (synchronize_rcu, under rtnl) before it returns, about 8 ms each, one after
    /// another. `expedite` shortens that wait for a sweep with many of them.
    pub fn waits_for_grace_period(&self) -> bool {
        matches!(
            self.action,
            Action::DetachHook { .. } | Action::DetachHookLink { .. }
        )
    }
}

struct Builder<'a> {
    inv: &'a Inventory,
    names: &'a BTreeMap<u32, String>,
    steps: Vec<Step>,
    detached_links: BTreeSet<u32>,
}

impl Builder<'_> {
    /// The name a report shows: the BTF full name when known, else the kernel's 15 characters.
    fn prog_name(&self, id: u32) -> String {
        self.names
            .get(&id)
            .cloned()
            .or_else(|| self.inv.programs.get(&id).map(|p| p.name.clone()))
            .unwrap_or_default()
    }

    /// `target` says which action detaches it: tcx and netkit links wait for a grace period.
    fn detach_link(
        &mut self,
        link_id: u32,
        prog_id: u32,
        target: &LinkTarget,
        location: String,
        reason: &'static str,
    ) {
        if !self.detached_links.insert(link_id) {
            return;
        }
        let action = match target {
            LinkTarget::Tcx { .. } | LinkTarget::Netkit { .. } => {
                Action::DetachHookLink { link_id }
            }
            _ => Action::DetachLink { link_id },
        };
        self.steps.push(Step {
            action,
            kind: "link",
            id: Some(link_id),
            name: self.prog_name(prog_id),
            location,
            reason,
            objects: vec![ObjId::Link(link_id), ObjId::Prog(prog_id)],
        });
    }

    fn link_for(&self, prog_id: u32, want: impl Fn(&LinkTarget) -> bool) -> Option<u32> {
        self.inv
            .links
            .iter()
            .find(|l| l.prog_id == prog_id && want(&l.target))
            .map(|l| l.id)
    }

    fn cgroups(&mut self) {
        for a in &self.inv.cgroups {
            let Some(reason) = self.inv.facts(a.prog_id).and_then(ownership::ctlb_program) else {
                continue;
            };
            let hook = hook_name(a.attach_type);
            let link = self.link_for(a.prog_id, |t| {
                *t == LinkTarget::Cgroup {
                    cgroup_id: a.cgroup_id,
                    attach_type: a.attach_type,
                }
            });
            if let Some(link_id) = link {
                let at = format!("cgroup {} {hook} (link {link_id})", names::path(&a.cgroup));
                let target = LinkTarget::Cgroup {
                    cgroup_id: a.cgroup_id,
                    attach_type: a.attach_type,
                };
                self.detach_link(link_id, a.prog_id, &target, at, reason);
                continue;
            }
            let exclusive = a.slot_flags & F_ALLOW_MULTI == 0;
            let how = if exclusive { "exclusive" } else { "multi" };
            self.steps.push(Step {
                action: Action::DetachCgroup {
                    root: a.root.clone(),
                    cgroup: a.cgroup.clone(),
                    cgroup_id: a.cgroup_id,
                    attach_type: a.attach_type,
                    prog_id: a.prog_id,
                    exclusive,
                },
                kind: "cgroup attachment",
                id: Some(a.prog_id),
                name: self.prog_name(a.prog_id),
                location: format!("cgroup {} {hook} ({how})", names::path(&a.cgroup)),
                reason,
                objects: vec![ObjId::Prog(a.prog_id)],
            });
        }
    }

    fn network(&mut self) {
        for f in &self.inv.filters {
            let Some(prog_id) = f.prog_id else { continue };
            let Some(reason) = self.inv.facts(prog_id).and_then(ownership::tc_program) else {
                continue;
            };
            let dir = if f.parent == PARENT_INGRESS {
                "ingress"
            } else {
                "egress"
            };
            self.steps.push(Step {
                action: Action::DeleteFilter { filter: f.clone() },
                kind: "tc filter",
                id: Some(prog_id),
                name: self.prog_name(prog_id),
                location: format!(
                    "{} {dir} pref {} handle {:#x} protocol {:#06x}",
                    self.inv.ifname(f.ifindex),
                    f.priority(),
                    f.handle,
                    f.protocol()
                ),
                reason,
                objects: vec![ObjId::Prog(prog_id)],
            });
        }
        for h in &self.inv.hooks {
            let Some(reason) = self.inv.facts(h.prog_id).and_then(ownership::tc_program) else {
                continue;
            };
            let at = format!("{} {}", names::os(&h.ifname), hook_name(h.attach_type));
            match h.link_id {
                Some(link_id) => {
                    let (ifindex, attach_type) = (h.ifindex, h.attach_type);
                    let target = if NETKIT_HOOKS.iter().any(|(t, _)| *t == attach_type) {
                        LinkTarget::Netkit {
                            ifindex,
                            attach_type,
                        }
                    } else {
                        LinkTarget::Tcx {
                            ifindex,
                            attach_type,
                        }
                    };
                    let at = format!("{at} (link {link_id})");
                    self.detach_link(link_id, h.prog_id, &target, at, reason)
                }
                None => self.steps.push(Step {
                    action: Action::DetachHook {
                        ifindex: h.ifindex,
                        attach_type: h.attach_type,
                        prog_id: h.prog_id,
                    },
                    kind: "tcx attachment",
                    id: Some(h.prog_id),
                    name: self.prog_name(h.prog_id),
                    location: at,
                    reason,
                    objects: vec![ObjId::Prog(h.prog_id)],
                }),
            }
        }
        for nif in &self.inv.netifs {
            for &(mode, prog_id) in &nif.xdp {
                let Some(reason) = self.inv.facts(prog_id).and_then(ownership::xdp_program) else {
                    continue;
                };
                let mode_name = match mode {
                    XdpMode::Driver => "driver",
                    XdpMode::Generic => "generic",
                    XdpMode::Offload => "offload",
                };
                let at = format!("{} xdp ({mode_name})", names::os(&nif.name));
                let ifindex = nif.ifindex;
                match self.link_for(prog_id, |t| *t == LinkTarget::Xdp { ifindex }) {
                    Some(link_id) => {
                        let at = format!("{at} (link {link_id})");
                        self.detach_link(link_id, prog_id, &LinkTarget::Xdp { ifindex }, at, reason)
                    }
                    None => self.steps.push(Step {
                        action: Action::DetachXdp {
                            ifindex,
                            mode,
                            prog_id,
                        },
                        kind: "xdp attachment",
                        id: Some(prog_id),
                        name: self.prog_name(prog_id),
                        location: at,
                        reason,
                        objects: vec![ObjId::Prog(prog_id)],
                    }),
                }
            }
        }
    }

    fn pins(&mut self) -> BTreeSet<PathBuf> {
        // A per-interface directory is Calico's when it holds one of Calico's jump or counter maps.
        let marked: BTreeSet<PathBuf> = self
            .inv
            .pins
            .iter()
            .filter(|p| p.place == Place::IfaceDir)
            .filter(|p| matches!(&p.object, PinnedObject::Map(m) if ownership::iface_dir_marker(&m.name)))
            .filter_map(|p| p.at.path().parent().map(Path::to_path_buf))
            .collect();
        let mut unpinned = BTreeSet::new();
        for pin in &self.inv.pins {
            let facts = match &pin.object {
                PinnedObject::Prog(p) => PinnedFacts::Prog(ProgFacts {
                    prog_type: p.prog_type,
                    name: &p.name,
                }),
                PinnedObject::Map(m) => PinnedFacts::Map { name: &m.name },
                PinnedObject::Link(l) => PinnedFacts::Link(self.inv.facts(l.prog_id)),
                PinnedObject::Unknown(_) => PinnedFacts::Unknown,
            };
            let path = pin.at.path();
            let in_marked = path.parent().is_some_and(|d| marked.contains(d));
            let Some(reason) = ownership::pin(pin.place, facts, in_marked) else {
                continue;
            };
            let (kind, id, name, expect, objects) = match &pin.object {
                PinnedObject::Prog(p) => (
                    "program pin",
                    Some(p.id),
                    self.prog_name(p.id),
                    ObjId::Prog(p.id),
                    vec![ObjId::Prog(p.id)],
                ),
                PinnedObject::Map(m) => (
                    "map pin",
                    Some(m.id),
                    m.name.clone(),
                    ObjId::Map(m.id),
                    vec![ObjId::Map(m.id)],
                ),
                PinnedObject::Link(l) => {
                    // Unlinking the last pin does not always detach at once: detach first.
                    self.detach_link(
                        l.id,
                        l.prog_id,
                        &l.target,
                        format!("pinned at {}", names::path(&path)),
                        reason,
                    );
                    (
                        "link pin",
                        Some(l.id),
                        self.prog_name(l.prog_id),
                        ObjId::Link(l.id),
                        vec![ObjId::Link(l.id), ObjId::Prog(l.prog_id)],
                    )
                }
                // Ownership names no pin it could not open as a BPF object.
                PinnedObject::Unknown(_) => continue,
            };
            unpinned.insert(path.clone());
            self.steps.push(Step {
                action: Action::Unpin {
                    at: pin.at.clone(),
                    expect,
                },
                kind,
                id,
                name,
                location: names::path(&path),
                reason,
                objects,
            });
        }
        unpinned
    }

    /// Calico's own directories, once every entry in them goes: deepest first.
    fn dirs(&mut self, unpinned: &BTreeSet<PathBuf>) {
        let mut dirs: Vec<_> = self.inv.dirs.iter().map(|d| (d, d.at.path())).collect();
        dirs.sort_by_key(|(_, path)| std::cmp::Reverse(path.components().count()));
        let mut removed: BTreeSet<PathBuf> = BTreeSet::new();
        for (d, path) in dirs {
            let going = unpinned
                .iter()
                .chain(&removed)
                .filter(|p| p.parent() == Some(path.as_path()))
                .count();
            if going == d.entries {
                self.steps.push(Step {
                    action: Action::RemoveDir { at: d.at.clone() },
                    kind: "directory",
                    id: None,
                    name: names::path(&d.at.rel),
                    location: names::path(&path),
                    reason: "Calico's own bpffs directory, empty once its pins are gone",
                    objects: Vec::new(),
                });
                removed.insert(path);
            }
        }
    }

    fn devices(&mut self) {
        for nif in &self.inv.netifs {
            if let Some(reason) = calico_device(nif) {
                self.steps.push(Step {
                    action: Action::DeleteDevice {
                        name: nif.name.clone(),
                    },
                    kind: "device",
                    id: Some(nif.ifindex),
                    name: names::os(&nif.name),
                    location: "this network namespace".into(),
                    reason,
                    objects: Vec::new(),
                });
            }
        }
    }
}

/// The device rule on a name that is bytes: a name that is not UTF-8 is not `bpfin.cali`.
pub fn calico_device(nif: &NetIf) -> Option<&'static str> {
    ownership::device(nif.name.to_str()?, nif.kind.as_deref())
}

/// The steps that remove every Calico object in the inventory, in apply order.
pub fn build(inv: &Inventory, names: &BTreeMap<u32, String>) -> Vec<Step> {
    let mut b = Builder {
        inv,
        names,
        steps: Vec::new(),
        detached_links: BTreeSet::new(),
    };
    b.cgroups();
    b.network();
    let unpinned = b.pins();
    b.dirs(&unpinned);
    b.devices();
    let mut steps = b.steps;
    steps.sort_by_key(Step::phase);
    steps
}

/// Programs whose names a report shows.
pub fn program_ids(steps: &[Step]) -> BTreeSet<u32> {
    steps
        .iter()
        .flat_map(|s| &s.objects)
        .filter_map(|o| match o {
            ObjId::Prog(id) => Some(*id),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::{CgroupAttachment, HookAttachment, Pin, PinDir};
    use crate::kernel::bpf::{
        LinkInfo, MapInfo, ProgInfo, ATTACH_INET4_CONNECT as C4, ATTACH_TCX_INGRESS,
        F_ALLOW_MULTI as MULTI, PROG_TYPE_CGROUP_SOCK_ADDR as SA, PROG_TYPE_SCHED_CLS as CLS,
        PROG_TYPE_XDP as XDP,
    };
    use crate::kernel::netlink::{NetIf, PARENT_EGRESS};
    use crate::kernel::tree::FileId;

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
            },
            NetIf {
                ifindex: 3,
                name: "eth0".into(),
                kind: None,
                xdp: vec![(XdpMode::Driver, 3)],
            },
            NetIf {
                ifindex: 4,
                name: "bpfin.cali".into(),
                kind: Some("veth".into()),
                xdp: vec![],
            },
            NetIf {
                ifindex: 5,
                name: "vxlan.calico".into(),
                kind: Some("vxlan".into()),
                xdp: vec![],
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
            },
            NetIf {
                ifindex: 4,
                name: name(b"bpfin.cali\xff"),
                kind: Some("veth".into()),
                xdp: vec![],
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

    #[test]
    fn empty_inventory_empty_plan() {
        assert!(build(&Inventory::default(), &BTreeMap::new()).is_empty());
    }
}

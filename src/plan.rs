//! From an inventory to an ordered list of steps: pure, so every ordering and ownership decision
//! is unit-tested without a kernel. Order: detach (links before their pins), then unlink pins,
//! then remove emptied Calico directories (deepest first), then delete devices.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::inventory::{hook_name, Inventory, Located, PinnedObject, NETKIT_HOOKS};
use crate::kernel::bpf::{IdSpace, LinkTarget, F_ALLOW_MULTI};
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

impl ObjId {
    pub fn id(self) -> u32 {
        match self {
            ObjId::Prog(id) | ObjId::Map(id) | ObjId::Link(id) => id,
        }
    }

    /// The id space to open it from.
    pub fn space(self) -> IdSpace {
        match self {
            ObjId::Prog(_) => IdSpace::Prog,
            ObjId::Map(_) => IdSpace::Map,
            ObjId::Link(_) => IdSpace::Link,
        }
    }
}

/// As people read it: "program 7", "map 3", "link 9".
impl std::fmt::Display for ObjId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self {
            ObjId::Prog(_) => "program",
            ObjId::Map(_) => "map",
            ObjId::Link(_) => "link",
        };
        write!(f, "{what} {}", self.id())
    }
}

/// A plan's whole input: the inventory and the BTF names of the programs the plan names.
/// Serialized, it is what `debug-inventory` prints and the golden tests replay (tests/golden/).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Input {
    pub inventory: Inventory,
    pub btf_names: BTreeMap<u32, String>,
}

/// What a step's object is: the KIND column of the report, the `kind` of its JSON rows, and
/// what the `apply-step` failpoint names, all in the words of `as_str`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    CgroupAttachment,
    Link,
    TcFilter,
    TcxAttachment,
    XdpAttachment,
    ProgramPin,
    MapPin,
    LinkPin,
    Directory,
    Device,
    /// Not a step: the row reporting a re-scan after the sweep that could not be done.
    ReScan,
}

impl StepKind {
    pub const ALL: [StepKind; 11] = [
        StepKind::CgroupAttachment,
        StepKind::Link,
        StepKind::TcFilter,
        StepKind::TcxAttachment,
        StepKind::XdpAttachment,
        StepKind::ProgramPin,
        StepKind::MapPin,
        StepKind::LinkPin,
        StepKind::Directory,
        StepKind::Device,
        StepKind::ReScan,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::CgroupAttachment => "cgroup attachment",
            StepKind::Link => "link",
            StepKind::TcFilter => "tc filter",
            StepKind::TcxAttachment => "tcx attachment",
            StepKind::XdpAttachment => "xdp attachment",
            StepKind::ProgramPin => "program pin",
            StepKind::MapPin => "map pin",
            StepKind::LinkPin => "link pin",
            StepKind::Directory => "directory",
            StepKind::Device => "device",
            StepKind::ReScan => "re-scan",
        }
    }
}

impl std::fmt::Display for StepKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for StepKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        StepKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("`{s}` is not a step kind"))
    }
}

impl Serialize for StepKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Which object in which place a step acts on. A re-scan that plans a step with the key of one
/// the sweep kept or failed finds that same object, already reported; any other is new.
/// Cgroup and tcx hooks hold several programs, so their keys name the program too.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum StepKey {
    Cgroup {
        cgroup_id: u64,
        attach_type: u32,
        prog_id: u32,
    },
    Link(u32),
    Hook {
        ifindex: u32,
        attach_type: u32,
        prog_id: u32,
    },
    Xdp {
        ifindex: u32,
        mode: XdpMode,
    },
    /// A filter's place: interface, parent, chain, priority and protocol (`info`), handle.
    Filter {
        ifindex: u32,
        parent: u32,
        chain: u32,
        info: u32,
        handle: u32,
    },
    /// A pin or a directory.
    Path(PathBuf),
    Device(OsString),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub action: Action,
    pub kind: StepKind,
    /// Program, map or link id, when there is one.
    pub id: Option<u32>,
    pub name: String,
    pub location: String,
    pub reason: &'static str,
    pub objects: Vec<ObjId>,
}

impl Step {
    pub fn key(&self) -> StepKey {
        match &self.action {
            Action::DetachCgroup {
                cgroup_id,
                attach_type,
                prog_id,
                ..
            } => StepKey::Cgroup {
                cgroup_id: *cgroup_id,
                attach_type: *attach_type,
                prog_id: *prog_id,
            },
            Action::DetachLink { link_id } | Action::DetachHookLink { link_id } => {
                StepKey::Link(*link_id)
            }
            Action::DetachHook {
                ifindex,
                attach_type,
                prog_id,
            } => StepKey::Hook {
                ifindex: *ifindex,
                attach_type: *attach_type,
                prog_id: *prog_id,
            },
            Action::DetachXdp { ifindex, mode, .. } => StepKey::Xdp {
                ifindex: *ifindex,
                mode: *mode,
            },
            Action::DeleteFilter { filter: f } => StepKey::Filter {
                ifindex: f.ifindex,
                parent: f.parent,
                chain: f.chain,
                info: f.info,
                handle: f.handle,
            },
            Action::Unpin { at, .. } | Action::RemoveDir { at } => StepKey::Path(at.path()),
            Action::DeleteDevice { name } => StepKey::Device(name.clone()),
        }
    }

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

/// A Calico pin's step, but for where it is.
struct Pinned {
    kind: StepKind,
    name: String,
    objects: Vec<ObjId>,
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
            kind: StepKind::Link,
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
                kind: StepKind::CgroupAttachment,
                id: Some(a.prog_id),
                name: self.prog_name(a.prog_id),
                location: format!("cgroup {} {hook} ({how})", names::path(&a.cgroup)),
                reason,
                objects: vec![ObjId::Prog(a.prog_id)],
            });
        }
    }

    /// tc (clsact) filters running a Calico program.
    fn filters(&mut self) {
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
                kind: StepKind::TcFilter,
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
    }

    /// tcx and netkit hooks: through the link when there is one, else by program.
    fn hooks(&mut self) {
        for h in &self.inv.hooks {
            let Some(reason) = self.inv.facts(h.prog_id).and_then(ownership::tc_program) else {
                continue;
            };
            let at = format!("{} {}", names::os(&h.ifname), hook_name(h.attach_type));
            let Some(link_id) = h.link_id else {
                self.steps.push(Step {
                    action: Action::DetachHook {
                        ifindex: h.ifindex,
                        attach_type: h.attach_type,
                        prog_id: h.prog_id,
                    },
                    kind: StepKind::TcxAttachment,
                    id: Some(h.prog_id),
                    name: self.prog_name(h.prog_id),
                    location: at,
                    reason,
                    objects: vec![ObjId::Prog(h.prog_id)],
                });
                continue;
            };
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
    }

    /// XDP in whichever mode it is attached in, through its link when there is one.
    fn xdp(&mut self) {
        for nif in &self.inv.netifs {
            for &(mode, prog_id) in &nif.xdp {
                let Some(reason) = self.inv.facts(prog_id).and_then(ownership::xdp_program) else {
                    continue;
                };
                let at = format!("{} xdp ({mode})", names::os(&nif.name));
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
                        kind: StepKind::XdpAttachment,
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

    /// What unlinking a Calico pin takes, by what it holds; None for a pin that is no BPF
    /// object (ownership names none). A pinned link is detached first: unlinking its last pin
    /// does not always detach it at once.
    fn pinned(
        &mut self,
        object: &PinnedObject,
        path: &Path,
        reason: &'static str,
    ) -> Option<Pinned> {
        Some(match object {
            PinnedObject::Prog(p) => Pinned {
                kind: StepKind::ProgramPin,
                name: self.prog_name(p.id),
                objects: vec![ObjId::Prog(p.id)],
            },
            PinnedObject::Map(m) => Pinned {
                kind: StepKind::MapPin,
                name: m.name.clone(),
                objects: vec![ObjId::Map(m.id)],
            },
            PinnedObject::Link(l) => {
                self.detach_link(
                    l.id,
                    l.prog_id,
                    &l.target,
                    format!("pinned at {}", names::path(path)),
                    reason,
                );
                Pinned {
                    kind: StepKind::LinkPin,
                    name: self.prog_name(l.prog_id),
                    objects: vec![ObjId::Link(l.id), ObjId::Prog(l.prog_id)],
                }
            }
            PinnedObject::Unknown(_) => return None,
        })
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
            let Some(expect) = pinned_id(&pin.object) else {
                continue;
            };
            let Some(p) = self.pinned(&pin.object, &path, reason) else {
                continue;
            };
            unpinned.insert(path.clone());
            self.steps.push(Step {
                action: Action::Unpin {
                    at: pin.at.clone(),
                    expect,
                },
                kind: p.kind,
                id: Some(expect.id()),
                name: p.name,
                location: names::path(&path),
                reason,
                objects: p.objects,
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
                    kind: StepKind::Directory,
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
                    kind: StepKind::Device,
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

/// The object a pin holds; None for a pin that is no BPF object.
pub fn pinned_id(object: &PinnedObject) -> Option<ObjId> {
    match object {
        PinnedObject::Prog(p) => Some(ObjId::Prog(p.id)),
        PinnedObject::Map(m) => Some(ObjId::Map(m.id)),
        PinnedObject::Link(l) => Some(ObjId::Link(l.id)),
        PinnedObject::Unknown(_) => None,
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
    b.filters();
    b.hooks();
    b.xdp();
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
}

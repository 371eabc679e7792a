//! From an inventory to an ordered list of steps: pure, so every ordering and ownership decision
//! is unit-tested without a kernel. Order: detach (links before their pins), then unlink pins,
//! then remove emptied Calico directories (deepest first), then delete devices.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::inventory::{hook_name, Inventory, PinnedObject};
use crate::kernel::bpf::{LinkTarget, F_ALLOW_MULTI};
use crate::kernel::netlink::{Filter, XdpMode, PARENT_INGRESS};
use crate::ownership::{self, PinnedFacts, Place, ProgFacts};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// An old-style cgroup attachment. `exclusive`: the slot has flags 0 (or override), where a
    /// detach removes whatever occupies it, so apply re-checks the occupant first.
    DetachCgroup {
        cgroup: PathBuf,
        cgroup_id: u64,
        attach_type: u32,
        prog_id: u32,
        exclusive: bool,
    },
    DetachLink {
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
    /// `expect` is the object the pin held at scan time (None: it could not be opened).
    Unpin {
        path: PathBuf,
        expect: Option<ObjId>,
    },
    RemoveDir {
        path: PathBuf,
    },
    DeleteDevice {
        name: String,
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
            | Action::DetachHook { .. }
            | Action::DetachXdp { .. }
            | Action::DeleteFilter { .. } => 0,
            Action::Unpin { .. } => 1,
            Action::RemoveDir { .. } => 2,
            Action::DeleteDevice { .. } => 3,
        }
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

    fn detach_link(&mut self, link_id: u32, prog_id: u32, location: String, reason: &'static str) {
        if !self.detached_links.insert(link_id) {
            return;
        }
        self.steps.push(Step {
            action: Action::DetachLink { link_id },
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
                let at = format!("cgroup {} {hook} (link {link_id})", a.cgroup.display());
                self.detach_link(link_id, a.prog_id, at, reason);
                continue;
            }
            let exclusive = a.slot_flags & F_ALLOW_MULTI == 0;
            let how = if exclusive { "exclusive" } else { "multi" };
            self.steps.push(Step {
                action: Action::DetachCgroup {
                    cgroup: a.cgroup.clone(),
                    cgroup_id: a.cgroup_id,
                    attach_type: a.attach_type,
                    prog_id: a.prog_id,
                    exclusive,
                },
                kind: "cgroup attachment",
                id: Some(a.prog_id),
                name: self.prog_name(a.prog_id),
                location: format!("cgroup {} {hook} ({how})", a.cgroup.display()),
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
            let at = format!("{} {}", h.ifname, hook_name(h.attach_type));
            match h.link_id {
                Some(link_id) => {
                    self.detach_link(link_id, h.prog_id, format!("{at} (link {link_id})"), reason)
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
                let at = format!("{} xdp ({mode_name})", nif.name);
                let ifindex = nif.ifindex;
                match self.link_for(prog_id, |t| *t == LinkTarget::Xdp { ifindex }) {
                    Some(link_id) => {
                        self.detach_link(link_id, prog_id, format!("{at} (link {link_id})"), reason)
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
        let marked: BTreeSet<&Path> = self
            .inv
            .pins
            .iter()
            .filter(|p| p.place == Place::IfaceDir)
            .filter(|p| matches!(&p.object, PinnedObject::Map(m) if ownership::iface_dir_marker(&m.name)))
            .filter_map(|p| p.path.parent())
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
            let in_marked = pin.path.parent().is_some_and(|d| marked.contains(d));
            let Some(reason) = ownership::pin(pin.place, facts, in_marked) else {
                continue;
            };
            let (kind, id, name, expect, objects) = match &pin.object {
                PinnedObject::Prog(p) => (
                    "program pin",
                    Some(p.id),
                    self.prog_name(p.id),
                    Some(ObjId::Prog(p.id)),
                    vec![ObjId::Prog(p.id)],
                ),
                PinnedObject::Map(m) => (
                    "map pin",
                    Some(m.id),
                    m.name.clone(),
                    Some(ObjId::Map(m.id)),
                    vec![ObjId::Map(m.id)],
                ),
                PinnedObject::Link(l) => {
                    // Unlinking the last pin does not always detach at once: detach first.
                    self.detach_link(
                        l.id,
                        l.prog_id,
                        format!("pinned at {}", pin.path.display()),
                        reason,
                    );
                    (
                        "link pin",
                        Some(l.id),
                        self.prog_name(l.prog_id),
                        Some(ObjId::Link(l.id)),
                        vec![ObjId::Link(l.id), ObjId::Prog(l.prog_id)],
                    )
                }
                // Only old_jumps owns objects it could not open; unlink by path alone.
                PinnedObject::Unknown(_) => ("pin", None, String::new(), None, Vec::new()),
            };
            unpinned.insert(pin.path.clone());
            self.steps.push(Step {
                action: Action::Unpin {
                    path: pin.path.clone(),
                    expect,
                },
                kind,
                id,
                name,
                location: pin.path.display().to_string(),
                reason,
                objects,
            });
        }
        unpinned
    }

    /// Calico's own directories, once every entry in them goes: deepest first.
    fn dirs(&mut self, unpinned: &BTreeSet<PathBuf>) {
        let mut dirs: Vec<_> = self.inv.dirs.iter().collect();
        dirs.sort_by_key(|d| std::cmp::Reverse(d.path.components().count()));
        let mut removed: BTreeSet<&Path> = BTreeSet::new();
        for d in dirs {
            let going = unpinned
                .iter()
                .filter(|p| p.parent() == Some(&d.path))
                .count()
                + removed
                    .iter()
                    .filter(|p| p.parent() == Some(&d.path))
                    .count();
            if going == d.entries {
                removed.insert(&d.path);
                self.steps.push(Step {
                    action: Action::RemoveDir {
                        path: d.path.clone(),
                    },
                    kind: "directory",
                    id: None,
                    name: d.rel.display().to_string(),
                    location: d.path.display().to_string(),
                    reason: "Calico's own bpffs directory, empty once its pins are gone",
                    objects: Vec::new(),
                });
            }
        }
    }

    fn devices(&mut self) {
        for nif in &self.inv.netifs {
            if let Some(reason) = ownership::device(&nif.name, nif.kind.as_deref()) {
                self.steps.push(Step {
                    action: Action::DeleteDevice {
                        name: nif.name.clone(),
                    },
                    kind: "device",
                    id: Some(nif.ifindex),
                    name: nif.name.clone(),
                    location: "this network namespace".into(),
                    reason,
                    objects: Vec::new(),
                });
            }
        }
    }
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

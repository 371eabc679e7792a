//! What a plan is made of: the `Step`s, each an `Action` on one object with the words a report
//! shows for it (`StepKind`, location, reason), the kernel objects it touches (`ObjId`, for the
//! interlock) and the key a re-scan finds it by (`StepKey`). Plain data: nothing here decides
//! what is Calico's or in which order steps run, and nothing touches the kernel.

use std::ffi::OsString;
use std::path::PathBuf;

use serde::Serialize;

use crate::inventory::{Located, PinnedObject};
use crate::kernel::bpf::IdSpace;
use crate::kernel::netlink::{Filter, XdpMode};

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

/// The object a pin holds; None for a pin that is no BPF object.
pub fn pinned_id(object: &PinnedObject) -> Option<ObjId> {
    match object {
        PinnedObject::Prog(p) => Some(ObjId::Prog(p.id)),
        PinnedObject::Map(m) => Some(ObjId::Map(m.id)),
        PinnedObject::Link(l) => Some(ObjId::Link(l.id)),
        PinnedObject::Unknown(_) => None,
    }
}

//! What the scan finds, as plain data: cgroup attachments, pins and their directories, interface
//! hooks, and the `Inventory` that holds them with the programs and links and what could not be
//! inspected. Serializable, so `debug-inventory` prints it and the golden tests replay it; it
//! never reads or changes the kernel.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::kernel::bpf::{self, Features, LinkInfo, MapInfo, ProgInfo};
use crate::kernel::netlink::{Filter, NetIf};
use crate::kernel::tree::FileId;
use crate::names;
use crate::ownership::{Place, ProgFacts, Scope};

/// The six cgroup hooks Calico's connect-time load balancer uses.
pub const CGROUP_HOOKS: [(u32, &str); 6] = [
    (bpf::ATTACH_INET4_CONNECT, "connect4"),
    (bpf::ATTACH_INET6_CONNECT, "connect6"),
    (bpf::ATTACH_UDP4_SENDMSG, "sendmsg4"),
    (bpf::ATTACH_UDP6_SENDMSG, "sendmsg6"),
    (bpf::ATTACH_UDP4_RECVMSG, "recvmsg4"),
    (bpf::ATTACH_UDP6_RECVMSG, "recvmsg6"),
];

pub const TCX_HOOKS: [(u32, &str); 2] = [
    (bpf::ATTACH_TCX_INGRESS, "tcx ingress"),
    (bpf::ATTACH_TCX_EGRESS, "tcx egress"),
];

pub const NETKIT_HOOKS: [(u32, &str); 2] = [
    (bpf::ATTACH_NETKIT_PRIMARY, "netkit primary"),
    (bpf::ATTACH_NETKIT_PEER, "netkit peer"),
];

pub fn hook_name(attach_type: u32) -> &'static str {
    CGROUP_HOOKS
        .iter()
        .chain(&TCX_HOOKS)
        .chain(&NETKIT_HOOKS)
        .find(|(t, _)| *t == attach_type)
        .map(|(_, n)| *n)
        .unwrap_or("unknown hook")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupAttachment {
    /// The cgroup2 root it was found under; `cgroup` lies beneath it.
    #[serde(with = "names::shown")]
    pub root: PathBuf,
    #[serde(with = "names::shown")]
    pub cgroup: PathBuf,
    pub cgroup_id: u64,
    pub attach_type: u32,
    pub prog_id: u32,
    /// The hook's flags: 0 exclusive, ALLOW_OVERRIDE, ALLOW_MULTI (links are always multi).
    pub slot_flags: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PinnedObject {
    Prog(ProgInfo),
    Map(MapInfo),
    Link(LinkInfo),
    Unknown(String),
}

/// Where an entry of a bpffs root is: the root as configured, the path beneath it (reached
/// only through directory fds, see `kernel::tree`), and what was there when it was seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Located {
    #[serde(with = "names::shown")]
    pub root: PathBuf,
    /// Relative to `root`.
    #[serde(with = "names::shown")]
    pub rel: PathBuf,
    pub id: FileId,
}

impl Located {
    /// The full path, for people and for grouping pins by directory; never opened.
    pub fn path(&self) -> PathBuf {
        self.root.join(&self.rel)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    pub at: Located,
    pub place: Place,
    pub object: PinnedObject,
}

/// A directory inside Calico's bpffs places, with how many entries it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinDir {
    pub at: Located,
    pub entries: usize,
}

/// A program on an interface hook that the kernel lists by query (tcx, netkit).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookAttachment {
    pub ifindex: u32,
    #[serde(with = "names::shown")]
    pub ifname: std::ffi::OsString,
    pub attach_type: u32,
    pub prog_id: u32,
    pub link_id: Option<u32>,
}

/// Serialized (within `plan::Input`), it is what `debug-inventory` prints.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Inventory {
    /// What this kernel can have: a family it cannot have is not looked for.
    pub features: Features,
    pub programs: BTreeMap<u32, ProgInfo>,
    /// The programs that carry BTF function info: only these have a full name to look up. Not
    /// recorded (`debug-inventory` shows the names themselves).
    #[serde(skip)]
    pub with_btf: BTreeSet<u32>,
    pub scope: Scope,
    pub links: Vec<LinkInfo>,
    pub cgroups: Vec<CgroupAttachment>,
    pub pins: Vec<Pin>,
    pub dirs: Vec<PinDir>,
    pub netifs: Vec<NetIf>,
    /// The interfaces with accept_local = 1, when every interface was dumped (None when only
    /// `bpfin.cali` was asked for). A note's fact, not an object: not recorded.
    #[serde(skip)]
    pub accept_local: Option<Vec<String>>,
    pub filters: Vec<Filter>,
    pub hooks: Vec<HookAttachment>,
    /// Roots that were configured but skipped, and why.
    pub warnings: Vec<String>,
    /// What could not be inspected (an unreadable subtree, a symlink or a mount where Calico's
    /// objects would be, a missing root): never a clean answer. A sweep still does the rest and
    /// exits 1; `check` cannot tell.
    pub incomplete: Vec<String>,
}

impl Inventory {
    pub fn facts(&self, prog_id: u32) -> Option<ProgFacts<'_>> {
        self.programs.get(&prog_id).map(|p| ProgFacts {
            prog_type: p.prog_type,
            name: &p.name,
        })
    }

    /// Every interface's name by index, for a caller that names many: a node has thousands of
    /// filters, and a search of every interface for each was a plan's largest cost.
    pub fn ifnames(&self) -> IfNames<'_> {
        IfNames::of(&self.netifs)
    }
}

/// Interfaces by index (the first of an index, as a search would find it).
pub struct IfNames<'a>(HashMap<u32, &'a NetIf>);

impl IfNames<'_> {
    pub fn of(netifs: &[NetIf]) -> IfNames<'_> {
        let mut by_index = HashMap::with_capacity(netifs.len());
        for n in netifs {
            by_index.entry(n.ifindex).or_insert(n);
        }
        IfNames(by_index)
    }

    /// An interface's name as shown in locations and messages.
    pub fn name(&self, ifindex: u32) -> String {
        self.0
            .get(&ifindex)
            .map(|n| names::os(&n.name))
            .unwrap_or_else(|| format!("if#{ifindex}"))
    }
}

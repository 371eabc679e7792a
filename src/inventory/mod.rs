//! The read-only scan: programs, links, cgroup attachments, bpffs pins and network hooks, as
//! plain data (`objects`) for `ownership` and `plan`, one part per place (`cgroups`, `bpffs`,
//! `network`). Kernel features and Calico's names decide which places are looked at at all.
//! Nothing here changes the kernel.

mod bpffs;
mod cgroups;
mod network;
mod objects;

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::AsFd;
use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::kernel::bpf::{self, IdSpace, LinkInfo, ProgInfo};
use crate::kernel::fs as kfs;
use crate::kernel::is_gone;
use crate::ownership::{ProgFacts, Scope};

pub use bpffs::{object_of, pinned_object};
pub use objects::{
    hook_name, CgroupAttachment, HookAttachment, IfNames, Inventory, Located, Pin, PinDir,
    PinnedObject, CGROUP_HOOKS, NETKIT_HOOKS, TCX_HOOKS,
};

/// Where the guard looks; every path comes from the configuration.
#[derive(Debug, Clone)]
pub struct Roots {
    pub bpffs: Vec<PathBuf>,
    /// Empty: every cgroup2 mount of this mount namespace.
    pub cgroup2: Vec<PathBuf>,
}

/// Scan everything the ownership rules can name.
pub fn scan(roots: &Roots) -> Result<Inventory> {
    // Programs first: without CAP_SYS_ADMIN that listing says so, plainly.
    let (programs, with_btf) = programs()?;
    let mut inv = Inventory {
        programs,
        with_btf,
        features: bpf::features()
            .context("probing the kernel's BPF features (needs CAP_NET_ADMIN)")?,
        ..Default::default()
    };
    inv.scope = Scope::of(inv.programs.values().map(|p| ProgFacts {
        prog_type: p.prog_type,
        name: &p.name,
    }));
    if inv.scope != Scope::default() && inv.features.link_ids {
        inv.links = links()?;
    }
    if inv.scope.cgroups {
        let cgroup_roots = if roots.cgroup2.is_empty() {
            let mounts = kfs::cgroup2_mounts().context("reading /proc/self/mountinfo")?;
            if mounts.is_empty() {
                // `ip netns exec` remounts /sys and takes every cgroup2 mount with it.
                inv.incomplete.push(
                    "no cgroup2 mount in this mount namespace: the cgroup hooks were not inspected"
                        .into(),
                );
            }
            mounts
        } else {
            roots.cgroup2.clone()
        };
        cgroups::scan_cgroups(&cgroup_roots, &mut inv)?;
    }
    for root in &roots.bpffs {
        bpffs::scan_bpffs(root, &mut inv);
    }
    network::scan_network(&mut inv).context("scanning network interfaces (rtnetlink)")?;
    Ok(inv)
}

/// Every loaded program, by raw id iteration so that missing CAP_SYS_ADMIN is an error.
fn programs() -> Result<(BTreeMap<u32, ProgInfo>, BTreeSet<u32>)> {
    let ids = bpf::ids(IdSpace::Prog).map_err(|e| {
        // Only EPERM is a missing capability; anything else (ENOSYS from a kernel without
        // bpf(2), or from qemu-user) is shown as the kernel said it.
        let why = match e.raw_os_error() {
            Some(libc::EPERM) => "listing BPF programs (needs CAP_SYS_ADMIN; without it the kernel hides every program)",
            _ => "listing BPF programs",
        };
        anyhow::Error::new(e).context(why)
    })?;
    let mut out = BTreeMap::new();
    let mut with_btf = BTreeSet::new();
    for id in ids {
        match bpf::fd_by_id(IdSpace::Prog, id).and_then(|fd| bpf::prog_info_btf(fd.as_fd())) {
            Ok((info, btf)) => {
                out.insert(id, info);
                if btf {
                    with_btf.insert(id);
                }
            }
            Err(e) if is_gone(&e) => {}
            Err(e) => return Err(anyhow::Error::new(e).context(format!("reading program {id}"))),
        }
    }
    Ok((out, with_btf))
}

fn links() -> Result<Vec<LinkInfo>> {
    let ids = bpf::ids(IdSpace::Link).context("listing BPF links")?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        match bpf::fd_by_id(IdSpace::Link, id).and_then(|fd| bpf::link_info(fd.as_fd())) {
            Ok(info) => out.push(info),
            // EAGAIN: another process is creating or tearing down this link right now.
            Err(e) if is_gone(&e) || e.raw_os_error() == Some(libc::EAGAIN) => {}
            Err(e) => return Err(anyhow::Error::new(e).context(format!("reading link {id}"))),
        }
    }
    Ok(out)
}

/// Full function names from BTF, for the programs a report names.
pub fn btf_names(ids: impl IntoIterator<Item = u32>) -> BTreeMap<u32, String> {
    ids.into_iter()
        .filter_map(|id| {
            let fd = bpf::fd_by_id(IdSpace::Prog, id).ok()?;
            Some((id, bpf::prog_btf_name(fd.as_fd()).ok()??))
        })
        .collect()
}

//! The read-only scan: programs, links, cgroup attachments, bpffs pins and network hooks, as
//! plain data for `ownership` and `plan`. Nothing here changes the kernel.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::kernel::bpf::{self, Features, IdSpace, LinkInfo, MapInfo, ObjKind, ProgInfo, Target};
use crate::kernel::fs::{self as kfs, FsKind};
use crate::kernel::is_gone;
use crate::kernel::netlink::{Filter, NetIf, Rtnl, PARENT_EGRESS, PARENT_INGRESS};
use crate::ownership::{self, Place, ProgFacts, Scope};

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

/// Where the guard looks; every path comes from the configuration.
#[derive(Debug, Clone)]
pub struct Roots {
    pub bpffs: Vec<PathBuf>,
    /// Empty: every cgroup2 mount of this mount namespace.
    pub cgroup2: Vec<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupAttachment {
    pub cgroup: PathBuf,
    pub cgroup_id: u64,
    pub attach_type: u32,
    pub prog_id: u32,
    /// The hook's flags: 0 exclusive, ALLOW_OVERRIDE, ALLOW_MULTI (links are always multi).
    pub slot_flags: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinnedObject {
    Prog(ProgInfo),
    Map(MapInfo),
    Link(LinkInfo),
    Unknown(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    pub path: PathBuf,
    /// Relative to its bpffs root.
    pub rel: PathBuf,
    pub place: Place,
    pub object: PinnedObject,
}

/// A directory inside Calico's bpffs places, with how many entries it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinDir {
    pub path: PathBuf,
    pub rel: PathBuf,
    pub entries: usize,
}

/// A program on an interface hook that the kernel lists by query (tcx, netkit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookAttachment {
    pub ifindex: u32,
    pub ifname: String,
    pub attach_type: u32,
    pub prog_id: u32,
    pub link_id: Option<u32>,
}

#[derive(Debug, Clone, Default)]
pub struct Inventory {
    /// What this kernel can have: a family it cannot have is not looked for.
    pub features: Features,
    pub programs: BTreeMap<u32, ProgInfo>,
    pub scope: Scope,
    pub links: Vec<LinkInfo>,
    pub cgroups: Vec<CgroupAttachment>,
    pub pins: Vec<Pin>,
    pub dirs: Vec<PinDir>,
    pub netifs: Vec<NetIf>,
    pub filters: Vec<Filter>,
    pub hooks: Vec<HookAttachment>,
    /// Roots that were configured but skipped, and why.
    pub warnings: Vec<String>,
}

impl Inventory {
    pub fn facts(&self, prog_id: u32) -> Option<ProgFacts<'_>> {
        self.programs.get(&prog_id).map(|p| ProgFacts {
            prog_type: p.prog_type,
            name: &p.name,
        })
    }

    pub fn ifname(&self, ifindex: u32) -> String {
        self.netifs
            .iter()
            .find(|n| n.ifindex == ifindex)
            .map(|n| n.name.clone())
            .unwrap_or_else(|| format!("if#{ifindex}"))
    }
}

/// Scan everything the ownership rules can name.
pub fn scan(roots: &Roots) -> Result<Inventory> {
    // Programs first: without CAP_SYS_ADMIN that listing says so, plainly.
    let mut inv = Inventory {
        programs: programs()?,
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
            kfs::cgroup2_mounts().context("reading /proc/self/mountinfo")?
        } else {
            roots.cgroup2.clone()
        };
        scan_cgroups(&cgroup_roots, &mut inv)?;
    }
    for root in &roots.bpffs {
        scan_bpffs(root, &mut inv)?;
    }
    scan_network(&mut inv).context("scanning network interfaces (rtnetlink)")?;
    Ok(inv)
}

/// Every loaded program, by raw id iteration so that missing CAP_SYS_ADMIN is an error.
fn programs() -> Result<BTreeMap<u32, ProgInfo>> {
    let ids = bpf::ids(IdSpace::Prog).map_err(|e| {
        anyhow::Error::new(e).context(
            "listing BPF programs (needs CAP_SYS_ADMIN; without it the kernel hides every program)",
        )
    })?;
    let mut out = BTreeMap::new();
    for id in ids {
        match bpf::fd_by_id(IdSpace::Prog, id).and_then(|fd| bpf::prog_info(fd.as_fd())) {
            Ok(info) => {
                out.insert(id, info);
            }
            Err(e) if is_gone(&e) => {}
            Err(e) => return Err(anyhow::Error::new(e).context(format!("reading program {id}"))),
        }
    }
    Ok(out)
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

/// Walk every cgroup under the roots (each cgroup once, even when two mounts show the same
/// hierarchy) and query the six sock_addr hooks.
fn scan_cgroups(roots: &[PathBuf], inv: &mut Inventory) -> Result<()> {
    let mut seen = HashSet::new();
    for root in roots {
        match kfs::fs_kind(root) {
            Ok(FsKind::Cgroup2) => {}
            Ok(_) => {
                inv.warnings
                    .push(format!("{}: not a cgroup2 mount, skipped", root.display()));
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(anyhow::Error::new(e).context(format!("{}", root.display()))),
        }
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            // One path lookup per cgroup: its identity and link count come from the open
            // directory. A node has a cgroup or two per container, and looking each path up
            // three times was a third of a sweep's time on a node with 1,000 pods.
            let f = match kfs::open_dir(&dir) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(anyhow::Error::new(e).context(format!("opening {}", dir.display())))
                }
            };
            let meta = match f.metadata() {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(anyhow::Error::new(e).context(format!("{}", dir.display()))),
            };
            // The inode number is the kernel's cgroup id.
            if !seen.insert(meta.ino()) {
                continue;
            }
            if !query_cgroup(&dir, &f, meta.ino(), inv)? {
                continue;
            }
            // A cgroup2 directory links 2 plus one per child cgroup: a leaf (one per container)
            // needs no directory read.
            if meta.nlink() == 2 {
                continue;
            }
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
        }
    }
    Ok(())
}

/// The six hooks of one cgroup (those this kernel has); false when it went away meanwhile.
fn query_cgroup(dir: &Path, f: &fs::File, cgroup_id: u64, inv: &mut Inventory) -> Result<bool> {
    let recvmsg = [bpf::ATTACH_UDP4_RECVMSG, bpf::ATTACH_UDP6_RECVMSG];
    for (attach_type, hook) in CGROUP_HOOKS {
        if !inv.features.udp_recvmsg && recvmsg.contains(&attach_type) {
            continue;
        }
        let q = match bpf::query(Target::Fd(f.as_fd()), attach_type) {
            Ok(q) => q,
            Err(e) if is_gone(&e) => return Ok(false),
            Err(e) => {
                return Err(
                    anyhow::Error::new(e).context(format!("querying {hook} on {}", dir.display()))
                )
            }
        };
        for p in q.progs {
            inv.cgroups.push(CgroupAttachment {
                cgroup: dir.to_path_buf(),
                cgroup_id,
                attach_type,
                prog_id: p.prog_id,
                slot_flags: q.slot_flags,
            });
        }
    }
    Ok(true)
}

fn scan_bpffs(root: &Path, inv: &mut Inventory) -> Result<()> {
    match kfs::fs_kind(root) {
        Ok(FsKind::Bpffs) => {}
        Ok(_) => {
            inv.warnings.push(format!(
                "{}: not a bpffs mount, skipped (nothing in it is touched)",
                root.display()
            ));
            return Ok(());
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(anyhow::Error::new(e).context(format!("{}", root.display()))),
    }
    for (rel, place) in ownership::PIN_DIRS {
        list_dir(root, Path::new(rel), place, false, inv)?;
    }
    list_dir(
        root,
        Path::new(ownership::OLD_JUMPS),
        Place::OldJumps,
        true,
        inv,
    )?;
    if let Ok(entries) = fs::read_dir(root.join(ownership::TC_DIR)) {
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name != "globals"
                && ownership::iface_dir(&name)
                && e.file_type().is_ok_and(|t| t.is_dir())
            {
                let rel = Path::new(ownership::TC_DIR).join(&*name);
                list_dir(root, &rel, Place::IfaceDir, false, inv)?;
            }
        }
    }
    for (rel, place) in ownership::PIN_FILES {
        let path = root.join(rel);
        if fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
            inv.pins.push(pin(root, &path, place));
        }
    }
    Ok(())
}

/// List the pins in one directory (recursively for old_jumps) and record the directory.
fn list_dir(
    root: &Path,
    rel: &Path,
    place: Place,
    recursive: bool,
    inv: &mut Inventory,
) -> Result<()> {
    let dir = root.join(rel);
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e)
            if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR) =>
        {
            return Ok(())
        }
        Err(e) => return Err(anyhow::Error::new(e).context(format!("listing {}", dir.display()))),
    };
    let mut count = 0;
    let mut subdirs = Vec::new();
    for e in entries {
        let e = e.with_context(|| format!("listing {}", dir.display()))?;
        count += 1;
        let ft = e
            .file_type()
            .with_context(|| format!("{}", e.path().display()))?;
        if ft.is_dir() {
            subdirs.push(rel.join(e.file_name()));
        } else if ft.is_file() {
            inv.pins.push(pin(root, &e.path(), place));
        }
    }
    if ownership::removable_dir(rel) {
        inv.dirs.push(PinDir {
            path: dir,
            rel: rel.to_path_buf(),
            entries: count,
        });
    }
    if recursive {
        for sub in subdirs {
            list_dir(root, &sub, place, true, inv)?;
        }
    }
    Ok(())
}

fn pin(root: &Path, path: &Path, place: Place) -> Pin {
    let object = match pinned_object(path) {
        Ok(o) => o,
        Err(e) => PinnedObject::Unknown(e.to_string()),
    };
    Pin {
        path: path.to_path_buf(),
        rel: path.strip_prefix(root).unwrap_or(path).to_path_buf(),
        place,
        object,
    }
}

pub fn pinned_object(path: &Path) -> io::Result<PinnedObject> {
    let fd = bpf::obj_get(path)?;
    Ok(match bpf::fd_kind(fd.as_fd())? {
        ObjKind::Prog => PinnedObject::Prog(bpf::prog_info(fd.as_fd())?),
        ObjKind::Map => PinnedObject::Map(bpf::map_info(fd.as_fd())?),
        ObjKind::Link => PinnedObject::Link(bpf::link_info(fd.as_fd())?),
        ObjKind::Other => PinnedObject::Unknown("not a program, map or link".into()),
    })
}

/// Interfaces, tc filters, tcx and netkit attachments. With no Calico tc or XDP program loaded
/// anywhere, only the device names are looked up.
fn scan_network(inv: &mut Inventory) -> Result<()> {
    let mut rtnl = Rtnl::open()?;
    if !inv.scope.tc && !inv.scope.xdp {
        if let Some(dev) = rtnl.link_by_name("bpfin.cali")? {
            inv.netifs.push(dev);
        }
        return Ok(());
    }
    inv.netifs = rtnl.links()?;
    if !inv.scope.tc {
        return Ok(());
    }
    let clsact: HashSet<u32> = rtnl
        .qdiscs()?
        .into_iter()
        .filter(|q| q.kind == "clsact")
        .map(|q| q.ifindex)
        .collect();
    let mut with_clsact: Vec<u32> = clsact.into_iter().collect();
    with_clsact.sort_unstable();
    for ifindex in with_clsact {
        for parent in [PARENT_INGRESS, PARENT_EGRESS] {
            inv.filters.extend(rtnl.filters(ifindex, parent)?);
        }
    }
    let f = inv.features;
    for nif in &inv.netifs {
        let mut hooks: Vec<(u32, &str)> = Vec::new();
        if f.tcx {
            hooks.extend(TCX_HOOKS);
        }
        if f.netkit && nif.kind.as_deref() == Some("netkit") {
            hooks.extend(NETKIT_HOOKS);
        }
        for (attach_type, _) in hooks {
            match bpf::query(Target::Ifindex(nif.ifindex), attach_type) {
                Ok(q) => inv
                    .hooks
                    .extend(q.progs.into_iter().map(|p| HookAttachment {
                        ifindex: nif.ifindex,
                        ifname: nif.name.clone(),
                        attach_type,
                        prog_id: p.prog_id,
                        link_id: (p.link_id != 0).then_some(p.link_id),
                    })),
                Err(e) if is_gone(&e) => {}
                Err(e) => {
                    return Err(anyhow::Error::new(e).context(format!(
                        "querying {} on {}",
                        hook_name(attach_type),
                        nif.name
                    )))
                }
            }
        }
    }
    Ok(())
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

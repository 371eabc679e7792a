//! The read-only scan: programs, links, cgroup attachments, bpffs pins and network hooks, as
//! plain data for `ownership` and `plan`. Nothing here changes the kernel.

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsStr;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::kernel::bpf::{self, Features, IdSpace, LinkInfo, MapInfo, ObjKind, ProgInfo, Target};
use crate::kernel::fs::{self as kfs, FsKind};
use crate::kernel::is_gone;
use crate::kernel::netlink::{Filter, NetIf, Rtnl, PARENT_EGRESS, PARENT_INGRESS};
use crate::kernel::tree::{Dir, Entry, FileId, Kind};
use crate::names;
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

    /// An interface's name as shown in locations and messages.
    pub fn ifname(&self, ifindex: u32) -> String {
        self.netifs
            .iter()
            .find(|n| n.ifindex == ifindex)
            .map(|n| names::os(&n.name))
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
        scan_cgroups(&cgroup_roots, &mut inv)?;
    }
    for root in &roots.bpffs {
        scan_bpffs(root, &mut inv);
    }
    scan_network(&mut inv).context("scanning network interfaces (rtnetlink)")?;
    Ok(inv)
}

/// Felix mounts its own bpffs here only when /sys/fs/bpf is not one: its absence is normal.
const OPTIONAL_BPFFS_ROOT: &str = "/var/run/calico/bpffs";

/// Every loaded program, by raw id iteration so that missing CAP_SYS_ADMIN is an error.
fn programs() -> Result<BTreeMap<u32, ProgInfo>> {
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
/// hierarchy) and query the six sock_addr hooks. A subtree that cannot be opened (a delegated
/// cgroup its owner closed to others, say) costs a warning, not the walk.
fn scan_cgroups(roots: &[PathBuf], inv: &mut Inventory) -> Result<()> {
    let mut seen = HashSet::new();
    for root in roots {
        let top = match Dir::open_root(root) {
            Ok(d) => d,
            Err(e) => {
                inv.incomplete.push(format!(
                    "{}: cgroup root not inspected: {e}",
                    names::path(root)
                ));
                continue;
            }
        };
        match top.fs_kind() {
            Ok(FsKind::Cgroup2) => {}
            Ok(_) => {
                inv.warnings.push(format!(
                    "{}: not a cgroup2 mount, skipped",
                    names::path(root)
                ));
                continue;
            }
            Err(e) => {
                inv.incomplete.push(format!(
                    "{}: cgroup root not inspected: {e}",
                    names::path(root)
                ));
                continue;
            }
        }
        let mut stack = vec![top];
        while let Some(dir) = stack.pop() {
            // The inode number is the kernel's cgroup id.
            if !seen.insert(dir.id.ino) {
                continue;
            }
            if !query_cgroup(root, &dir, inv)? {
                continue;
            }
            // A cgroup2 directory links 2 plus one per child cgroup: a leaf (one per container)
            // needs no directory read. A node has a cgroup or two per container, and reading
            // each was a third of a sweep's time on a node with 1,000 pods.
            if dir.nlink == 2 {
                continue;
            }
            let entries = match dir.entries() {
                Ok(e) => e,
                Err(e) if is_gone(&e) => continue,
                Err(e) => {
                    inv.incomplete
                        .push(format!("{}: not listed: {e}", names::path(&dir.path)));
                    continue;
                }
            };
            for e in entries.into_iter().filter(|e| e.kind == Kind::Dir) {
                match dir.open_child(&e.name) {
                    Ok(child) => stack.push(child),
                    Err(err) if is_gone(&err) => {}
                    // Another cgroup2 mount of the same hierarchy is walked as a root of its
                    // own (every cgroup2 mount is one unless configured otherwise).
                    Err(err)
                        if err.raw_os_error() == Some(libc::EXDEV)
                            && roots.iter().any(|r| *r == dir.path.join(&e.name)) => {}
                    Err(err) => inv.incomplete.push(format!(
                        "{}: not inspected: {}",
                        names::path(&dir.path.join(&e.name)),
                        refusal(&err)
                    )),
                }
            }
        }
    }
    Ok(())
}

/// Why an entry was not followed, in words.
fn refusal(err: &io::Error) -> String {
    match err.raw_os_error() {
        Some(libc::ELOOP) => "a symlink, not followed".into(),
        Some(libc::EXDEV) => "another file system is mounted there, not entered".into(),
        _ => err.to_string(),
    }
}

/// The six hooks of one cgroup (those this kernel has); false when it went away meanwhile.
fn query_cgroup(root: &Path, dir: &Dir, inv: &mut Inventory) -> Result<bool> {
    let recvmsg = [bpf::ATTACH_UDP4_RECVMSG, bpf::ATTACH_UDP6_RECVMSG];
    for (attach_type, hook) in CGROUP_HOOKS {
        if !inv.features.udp_recvmsg && recvmsg.contains(&attach_type) {
            continue;
        }
        let q = match bpf::query(Target::Fd(dir.as_fd()), attach_type) {
            Ok(q) => q,
            Err(e) if is_gone(&e) => return Ok(false),
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context(format!("querying {hook} on {}", names::path(&dir.path))))
            }
        };
        for p in q.progs {
            inv.cgroups.push(CgroupAttachment {
                root: root.to_path_buf(),
                cgroup: dir.path.clone(),
                cgroup_id: dir.id.ino,
                attach_type,
                prog_id: p.prog_id,
                slot_flags: q.slot_flags,
            });
        }
    }
    Ok(true)
}

/// One bpffs root. Whatever goes wrong in it is a warning naming the place, and the rest of
/// the root (and every other root) is still scanned.
fn scan_bpffs(root: &Path, inv: &mut Inventory) {
    let top = match Dir::open_root(root) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound && root == Path::new(OPTIONAL_BPFFS_ROOT) => {
            return
        }
        Err(e) => {
            inv.incomplete.push(format!(
                "{}: bpffs root not inspected: {e}",
                names::path(root)
            ));
            return;
        }
    };
    match top.fs_kind() {
        Ok(FsKind::Bpffs) => {}
        Ok(_) => {
            inv.warnings.push(format!(
                "{}: not a bpffs mount, skipped (nothing in it is touched)",
                names::path(root)
            ));
            return;
        }
        Err(e) => {
            inv.incomplete.push(format!(
                "{}: bpffs root not inspected: {e}",
                names::path(root)
            ));
            return;
        }
    }
    let mut scan = BpffsScan {
        root,
        top: &top,
        inv,
    };
    for (rel, place) in ownership::PIN_DIRS {
        scan.dir(Path::new(rel), place, false);
    }
    scan.dir(Path::new(ownership::OLD_JUMPS), Place::OldJumps, true);
    if let Some(tc) = scan.open(Path::new(ownership::TC_DIR)) {
        match tc.entries() {
            Ok(entries) => {
                for e in entries {
                    let name = e.name.as_bytes();
                    if name == b"globals" || !ownership::iface_dir(name) {
                        continue;
                    }
                    let rel = Path::new(ownership::TC_DIR).join(&e.name);
                    if e.kind == Kind::Dir && !e.mount {
                        scan.dir(&rel, Place::IfaceDir, false);
                    } else if e.mount || e.kind == Kind::Symlink {
                        scan.odd(&rel, &e);
                    }
                }
            }
            Err(e) => scan.blind(Path::new(ownership::TC_DIR), &e),
        }
    }
    for (rel, place) in ownership::PIN_FILES {
        match top.stat(OsStr::new(rel)) {
            Ok(e) if e.kind == Kind::File && !e.mount => scan.pin(&top, Path::new(rel), &e, place),
            Ok(e) if e.kind == Kind::Dir => {}
            Ok(e) => scan.odd(Path::new(rel), &e),
            Err(err) if is_gone(&err) => {}
            Err(err) => scan.blind(Path::new(rel), &err),
        }
    }
}

struct BpffsScan<'a> {
    root: &'a Path,
    top: &'a Dir,
    inv: &'a mut Inventory,
}

impl BpffsScan<'_> {
    fn located(&self, rel: &Path, id: FileId) -> Located {
        Located {
            root: self.root.to_path_buf(),
            rel: rel.to_path_buf(),
            id,
        }
    }

    /// A directory of Calico's places, or None when it is absent (or could not be entered,
    /// which is recorded).
    fn open(&mut self, rel: &Path) -> Option<Dir> {
        match self.top.open_beneath(rel) {
            Ok(d) => Some(d),
            Err(e) if is_gone(&e) || e.raw_os_error() == Some(libc::ENOTDIR) => None,
            Err(e) => {
                self.blind(rel, &e);
                None
            }
        }
    }

    /// Something the guard could not look into where Calico's objects would be.
    fn blind(&mut self, rel: &Path, err: &io::Error) {
        let what = format!(
            "{}: not inspected: {}",
            names::path(&self.root.join(rel)),
            refusal(err)
        );
        // old_jumps is met twice: as an entry of tc/globals and as a place of its own.
        if !self.inv.incomplete.contains(&what) {
            self.inv.incomplete.push(what);
        }
    }

    /// A symlink, a mount point or a special file in Calico's places: never followed, never
    /// removed, always reported.
    fn odd(&mut self, rel: &Path, e: &Entry) {
        if e.mount {
            self.blind(rel, &io::Error::from_raw_os_error(libc::EXDEV));
        } else if e.kind == Kind::Symlink {
            self.blind(rel, &io::Error::from_raw_os_error(libc::ELOOP));
        } else {
            self.inv.incomplete.push(format!(
                "{}: not a pin (a device, FIFO or socket), left alone",
                names::path(&self.root.join(rel))
            ));
        }
    }

    /// List the pins in one directory (recursively for old_jumps) and record the directory.
    fn dir(&mut self, rel: &Path, place: Place, recursive: bool) {
        let Some(dir) = self.open(rel) else { return };
        let entries = match dir.entries() {
            Ok(e) => e,
            Err(e) => return self.blind(rel, &e),
        };
        let mut subdirs = Vec::new();
        for e in &entries {
            let sub = rel.join(&e.name);
            match e.kind {
                _ if e.mount => self.odd(&sub, e),
                Kind::File => self.pin(&dir, &sub, e, place),
                Kind::Dir if recursive => subdirs.push(sub),
                // A directory inside ctlb/, tc/globals/ (old_jumps and other tools' own), tcx/
                // or netkit/ is not a pin and not looked into.
                Kind::Dir => {}
                _ => self.odd(&sub, e),
            }
        }
        if ownership::removable_dir(rel) {
            let at = self.located(rel, dir.id);
            self.inv.dirs.push(PinDir {
                at,
                entries: entries.len(),
            });
        }
        for sub in subdirs {
            self.dir(&sub, place, true);
        }
    }

    fn pin(&mut self, dir: &Dir, rel: &Path, e: &Entry, place: Place) {
        let object = match pinned_object(dir, &e.name) {
            Ok(o) => o,
            Err(err) if is_gone(&err) => return,
            Err(err) => {
                self.blind(rel, &err);
                PinnedObject::Unknown(err.to_string())
            }
        };
        let at = self.located(rel, e.id);
        self.inv.pins.push(Pin { at, place, object });
    }
}

/// What a pin holds, opened through its directory's fd.
pub fn pinned_object(dir: &Dir, name: &OsStr) -> io::Result<PinnedObject> {
    let fd = dir.obj_get(name)?;
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
        for (parent, dir) in [(PARENT_INGRESS, "ingress"), (PARENT_EGRESS, "egress")] {
            let dumped = match crate::failpoint::filter_dump(&inv.ifname(ifindex)) {
                Some(injected) => Err(injected),
                None => rtnl.filters(ifindex, parent),
            };
            // One interface that cannot be read costs that interface, never the scan, and is
            // never read as "no filters".
            match dumped {
                Ok(filters) => inv.filters.extend(filters),
                Err(e) => {
                    let what = format!("tc filters of {} {dir}: {e}", inv.ifname(ifindex));
                    inv.incomplete.push(what);
                }
            }
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
                // A netkit pair's programs, its peer's included, hang off the primary device;
                // the kernel answers EACCES when the peer is asked (measured on 6.12).
                Err(e)
                    if e.raw_os_error() == Some(libc::EACCES)
                        && NETKIT_HOOKS.iter().any(|h| h.0 == attach_type) => {}
                Err(e) => inv.incomplete.push(format!(
                    "{} {}: {e}",
                    names::os(&nif.name),
                    hook_name(attach_type)
                )),
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

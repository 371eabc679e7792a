//! The cgroup part of the scan: every cgroup under the cgroup2 roots, walked through directory
//! fds (no symlink, no other mount), each queried on the six sock_addr hooks Calico's
//! connect-time load balancer uses, holding one directory fd per level of nesting, never one
//! per sibling. Read-only: it never attaches or detaches anything.

use std::collections::HashSet;
use std::ffi::OsString;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::kernel::bpf::{self, Target};
use crate::kernel::fs::FsKind;
use crate::kernel::is_gone;
use crate::kernel::tree::{refusal, Dir};
use crate::names;

use super::objects::{CgroupAttachment, Inventory, CGROUP_HOOKS};

/// Walk every cgroup under the roots (each cgroup once, even when two mounts show the same
/// hierarchy) and query the six sock_addr hooks. A subtree that cannot be opened (a delegated
/// cgroup its owner closed to others, say) costs a warning, not the walk.
pub fn scan_cgroups(roots: &[PathBuf], inv: &mut Inventory) -> Result<()> {
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
        // Depth first, holding open only the directories from the root down to where the walk
        // is, with the names of the subdirectories each still has to give: open fds grow with
        // depth, never with siblings (a node has thousands of sibling cgroups, one or two per
        // container; the unit's LimitNOFILE is sized from this).
        let mut stack: Vec<(Dir, Vec<OsString>)> = Vec::new();
        let mut next = Some(top);
        loop {
            if let Some(dir) = next.take() {
                if let Some(children) = visit(root, &dir, &mut seen, inv)? {
                    stack.push((dir, children));
                }
            }
            let Some((dir, children)) = stack.last_mut() else {
                break;
            };
            let Some(name) = children.pop() else {
                stack.pop();
                continue;
            };
            match dir.open_child(&name) {
                Ok(child) => next = Some(child),
                Err(err) if is_gone(&err) => {}
                // Another cgroup2 mount of the same hierarchy is walked as a root of its own
                // (every cgroup2 mount is one unless configured otherwise).
                Err(err)
                    if err.raw_os_error() == Some(libc::EXDEV)
                        && roots.iter().any(|r| *r == dir.path.join(&name)) => {}
                Err(err) => inv.incomplete.push(format!(
                    "{}: not inspected: {}",
                    names::path(&dir.path.join(&name)),
                    refusal(&err)
                )),
            }
        }
    }
    Ok(())
}

/// Query one cgroup's hooks and name its child cgroups; None when there is nothing below it to
/// walk (seen before, gone, a leaf, or not listed, which is recorded).
fn visit(
    root: &Path,
    dir: &Dir,
    seen: &mut HashSet<u64>,
    inv: &mut Inventory,
) -> Result<Option<Vec<OsString>>> {
    // The inode number is the kernel's cgroup id.
    if !seen.insert(dir.id.ino) || !query_cgroup(root, dir, inv)? {
        return Ok(None);
    }
    // A cgroup2 directory links 2 plus one per child cgroup: a leaf (one per container) needs
    // no directory read. A node has a cgroup or two per container, and reading each was a
    // third of a sweep's time on a node with 1,000 pods.
    if dir.nlink == 2 {
        return Ok(None);
    }
    match dir.subdirs() {
        Ok(names) => Ok(Some(names)),
        Err(e) if is_gone(&e) => Ok(None),
        Err(e) => {
            inv.incomplete
                .push(format!("{}: not listed: {e}", names::path(&dir.path)));
            Ok(None)
        }
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

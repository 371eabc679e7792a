//! The cgroup part of the scan: every cgroup under the cgroup2 roots, walked through directory
//! fds (no symlink, no other mount), each queried on the six sock_addr hooks Calico's
//! connect-time load balancer uses. Read-only: it never attaches or detaches anything.

use std::collections::HashSet;
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
            let subdirs = match dir.subdirs() {
                Ok(e) => e,
                Err(e) if is_gone(&e) => continue,
                Err(e) => {
                    inv.incomplete
                        .push(format!("{}: not listed: {e}", names::path(&dir.path)));
                    continue;
                }
            };
            for name in subdirs {
                match dir.open_child(&name) {
                    Ok(child) => stack.push(child),
                    Err(err) if is_gone(&err) => {}
                    // Another cgroup2 mount of the same hierarchy is walked as a root of its
                    // own (every cgroup2 mount is one unless configured otherwise).
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
    }
    Ok(())
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

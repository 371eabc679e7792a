//! Execute a plan step by step. Best effort: a failure is recorded and the next step runs;
//! an object that vanished meanwhile (ENOENT, ENODEV) counts as gone. It never removes what it
//! did not find again as planned: each object's identity is checked at the moment of removal,
//! and one that changed since the scan is kept.

use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::failpoint;
use crate::inventory::{object_of, Located};
use crate::kernel::bpf::{self, IdSpace, LinkTarget, Target};
use crate::kernel::fs::FsKind;
use crate::kernel::is_gone;
use crate::kernel::netlink::{copy_err, Filter, Rtnl, FILTER_BATCH};
use crate::kernel::tree::{self, Chain, Dir, Entry, Kind};
use crate::plan::{pinned_id, Action, Step, StepKind};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", content = "detail", rename_all = "kebab-case")]
pub enum Outcome {
    Removed,
    AlreadyGone,
    /// Left in place on purpose: it is no longer the Calico object the plan named.
    Kept(String),
    Failed(String),
}

/// Run every step in order, handing each outcome to `done` as soon as it is known, so that the
/// report and log follow the sweep instead of waiting for its end. Consecutive filter deletes
/// go to the kernel in batches: on a node with a thousand interfaces a round trip per filter
/// costs as much as the deletes themselves.
pub fn apply(steps: &[Step], done: &mut dyn FnMut(&Step, Outcome)) {
    let mut ctx = Ctx {
        rtnl: None,
        pins: None,
    };
    let mut rest = steps;
    while let Some(step) = rest.first() {
        let filters = rest
            .iter()
            .take(FILTER_BATCH)
            .take_while(|s| matches!(s.action, Action::DeleteFilter { .. }))
            .count();
        if filters > 1 {
            let batch = &rest[..filters];
            for (st, o) in batch.iter().zip(ctx.delete_filters(batch)) {
                done(st, o);
            }
            rest = &rest[filters..];
        } else {
            done(step, ctx.run(step));
            rest = &rest[1..];
        }
    }
}

/// A failure the `apply-step` failpoint injects into this step (tests only).
fn injected(step: &Step) -> Option<String> {
    failpoint::apply_step(step.kind.as_str(), |k| k.parse::<StepKind>().is_ok())
}

fn outcome(result: io::Result<Outcome>) -> Outcome {
    match result {
        Ok(o) => o,
        Err(e) if is_gone(&e) => Outcome::AlreadyGone,
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

struct Ctx {
    rtnl: Option<Rtnl>,
    /// The bpffs root last reached and the directories open from it down to the last pin's:
    /// a plan unpins a directory's entries one after another, and each is reached on the fds
    /// already open rather than by a walk from the root (None: that root is no bpffs now).
    pins: Option<(PathBuf, Option<Chain>)>,
}

impl Ctx {
    fn rtnl(&mut self) -> io::Result<&mut Rtnl> {
        if self.rtnl.is_none() {
            self.rtnl = Some(Rtnl::open()?);
        }
        self.rtnl
            .as_mut()
            .ok_or_else(|| io::Error::other("rtnetlink socket unavailable"))
    }

    fn run(&mut self, step: &Step) -> Outcome {
        if let Some(err) = injected(step) {
            return Outcome::Failed(err);
        }
        outcome(self.action(&step.action))
    }

    /// A run of `DeleteFilter` steps, with the same outcomes one by one would give.
    fn delete_filters(&mut self, steps: &[Step]) -> Vec<Outcome> {
        let injected: Vec<Option<String>> = steps.iter().map(injected).collect();
        let filters: Vec<&Filter> = steps
            .iter()
            .zip(&injected)
            .filter(|(_, inj)| inj.is_none())
            .filter_map(|(s, _)| match &s.action {
                Action::DeleteFilter { filter } => Some(filter),
                _ => None,
            })
            .collect();
        let mut results = self.delete_if_unchanged(&filters).into_iter();
        injected
            .into_iter()
            .map(|inj| match inj {
                Some(err) => Outcome::Failed(err),
                None => outcome(
                    results
                        .next()
                        .unwrap_or_else(|| Err(io::Error::other("no result for this filter"))),
                ),
            })
            .collect()
    }

    /// A tc filter is deleted by its place (interface, parent, chain, priority, protocol,
    /// handle), whatever runs there: so each is read back first, all in one datagram, and only
    /// those still running the planned program are deleted, in the next. A filter now running
    /// another program is kept; one that cannot be read back is not deleted.
    fn delete_if_unchanged(&mut self, planned: &[&Filter]) -> Vec<io::Result<Outcome>> {
        let rtnl = match self.rtnl() {
            Ok(r) => r,
            Err(e) => return planned.iter().map(|_| Err(copy_err(&e))).collect(),
        };
        let mut results = Vec::with_capacity(planned.len());
        let mut unchanged = Vec::new();
        for (i, (want, now)) in planned.iter().zip(rtnl.get_filters(planned)).enumerate() {
            results.push(match now.map(|now| replaced(want, &now)) {
                Ok(None) => {
                    unchanged.push(i);
                    Ok(Outcome::Removed)
                }
                Ok(Some(why)) => Ok(Outcome::Kept(why)),
                Err(e) => Err(e),
            });
        }
        let verified: Vec<&Filter> = unchanged.iter().map(|&i| planned[i]).collect();
        for (i, deleted) in unchanged.into_iter().zip(rtnl.del_filters(&verified)) {
            if let Err(e) = deleted {
                results[i] = Err(e);
            }
        }
        results
    }

    fn action(&mut self, action: &Action) -> io::Result<Outcome> {
        match action {
            Action::DetachCgroup {
                root,
                cgroup,
                cgroup_id,
                attach_type,
                prog_id,
                exclusive,
            } => {
                let rel = cgroup.strip_prefix(root).unwrap_or(Path::new(""));
                let dir = Dir::open_root(root)?.open_beneath(rel)?;
                // A cgroup removed and made again at the same path is another cgroup (its id
                // is its inode): the planned one is gone.
                if dir.id.ino != *cgroup_id {
                    return Ok(Outcome::AlreadyGone);
                }
                let prog = bpf::fd_by_id(IdSpace::Prog, *prog_id)?;
                if *exclusive {
                    // A detach on an exclusive slot removes whatever is there now, so make sure
                    // it is still the Calico program.
                    let q = bpf::query(Target::Fd(dir.as_fd()), *attach_type)?;
                    if !q.progs.iter().any(|p| p.prog_id == *prog_id) {
                        return Ok(match q.progs.first() {
                            Some(p) => Outcome::Kept(format!(
                                "the slot now holds program {}, not {prog_id}",
                                p.prog_id
                            )),
                            None => Outcome::AlreadyGone,
                        });
                    }
                }
                match bpf::prog_detach(Target::Fd(dir.as_fd()), prog.as_fd(), *attach_type) {
                    Ok(()) => Ok(Outcome::Removed),
                    // The program may have been attached through a link after the scan: the
                    // kernel refuses a prog detach then, so detach the link.
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                        let want = LinkTarget::Cgroup {
                            cgroup_id: *cgroup_id,
                            attach_type: *attach_type,
                        };
                        match find_link(*prog_id, want)? {
                            Some(link_id) => self.detach_link(link_id),
                            None => Ok(Outcome::AlreadyGone),
                        }
                    }
                    Err(e) => Err(e),
                }
            }
            Action::DetachLink { link_id } | Action::DetachHookLink { link_id } => {
                self.detach_link(*link_id)
            }
            Action::DetachHook {
                ifindex,
                attach_type,
                prog_id,
            } => {
                let prog = bpf::fd_by_id(IdSpace::Prog, *prog_id)?;
                bpf::prog_detach(Target::Ifindex(*ifindex), prog.as_fd(), *attach_type)?;
                Ok(Outcome::Removed)
            }
            Action::DetachXdp {
                ifindex,
                mode,
                prog_id,
            } => {
                let prog = bpf::fd_by_id(IdSpace::Prog, *prog_id)?;
                match bpf::xdp_detach(*ifindex, mode.flags(), prog.as_fd()) {
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(Outcome::Kept(
                        "another XDP program replaced it meanwhile".into(),
                    )),
                    r => r.map(|()| Outcome::Removed),
                }
            }
            Action::DeleteFilter { filter } => self
                .delete_if_unchanged(&[filter])
                .pop()
                .unwrap_or_else(|| Err(io::Error::other("no result for this filter"))),
            Action::Unpin { at, expect } => {
                let Some((dir, seen)) = self.reach(at, Kind::File)? else {
                    return Ok(moved());
                };
                let Some(fd) = dir.obj_get_seen(&seen)? else {
                    return Ok(Outcome::Kept(
                        "another file was pinned there since the scan".into(),
                    ));
                };
                if pinned_id(&object_of(fd.as_fd())?) != Some(*expect) {
                    return Ok(Outcome::Kept("the pin now holds another object".into()));
                }
                Ok(removed(dir.remove_if_same(&seen)?))
            }
            Action::RemoveDir { at } => {
                let Some((dir, seen)) = self.reach(at, Kind::Dir)? else {
                    return Ok(moved());
                };
                let result = match dir.remove_if_same(&seen) {
                    Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => Ok(Outcome::Kept(
                        "not empty: it holds entries that are not Calico's".into(),
                    )),
                    r => r.map(removed),
                };
                // Whatever stands at that name now is not the directory the chain holds.
                if let Some((_, Some(chain))) = &mut self.pins {
                    chain.forget(&at.rel);
                }
                result
            }
            Action::DeleteDevice { name } => {
                let rtnl = self.rtnl()?;
                match rtnl.link_by_name(name.as_bytes())? {
                    Some(dev) if crate::plan::calico_device(&dev).is_some() => {
                        rtnl.del_link(dev.ifindex)?;
                        Ok(Outcome::Removed)
                    }
                    Some(_) => Ok(Outcome::Kept("the device is no longer a veth".into())),
                    None => Ok(Outcome::AlreadyGone),
                }
            }
        }
    }

    /// The directory holding a planned bpffs entry, reached from its root one directory fd at a
    /// time (no symlink, no other mount) on the chain of directories already open, and the
    /// entry as the scan saw it. None when a symlink or a mount now stands on the way, or the
    /// root is no bpffs.
    fn reach(&mut self, at: &Located, kind: Kind) -> io::Result<Option<(&Dir, Entry)>> {
        let Some(name) = at.rel.file_name() else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "no file name"));
        };
        if self.pins.as_ref().is_none_or(|(root, _)| *root != at.root) {
            let root = Dir::open_root(&at.root)?;
            let chain = (root.fs_kind()? == FsKind::Bpffs).then(|| Chain::new(root));
            self.pins = Some((at.root.clone(), chain));
        }
        let Some((_, Some(chain))) = &mut self.pins else {
            return Ok(None);
        };
        let parent = match chain.reach(at.rel.parent().unwrap_or(Path::new(""))) {
            Ok(d) => d,
            Err(e) if tree::is_refused(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        let seen = Entry {
            name: name.to_os_string(),
            kind,
            id: at.id,
            mount: false,
        };
        Ok(Some((parent, seen)))
    }

    fn detach_link(&mut self, link_id: u32) -> io::Result<Outcome> {
        let link = bpf::fd_by_id(IdSpace::Link, link_id)?;
        match bpf::link_detach(link.as_fd()) {
            // A link whose target already went away (a deleted cgroup or device) is defunct.
            Err(e) if e.raw_os_error() == Some(libc::ENOLINK) => Ok(Outcome::AlreadyGone),
            r => r.map(|()| Outcome::Removed),
        }
    }
}

fn moved() -> Outcome {
    Outcome::Kept("a symlink or another mount now stands on its path".into())
}

fn removed(same: bool) -> Outcome {
    if same {
        Outcome::Removed
    } else {
        Outcome::Kept("something else stands there since the scan".into())
    }
}

/// Why the filter now in a planned filter's place is not the planned one; None when it is.
fn replaced(want: &Filter, now: &Filter) -> Option<String> {
    if now.kind != want.kind {
        return Some(format!("its place now holds a {} filter", now.kind));
    }
    match (now.prog_id, want.prog_id) {
        (Some(now), Some(want)) if now == want => None,
        (Some(now), want) => Some(format!(
            "the filter in its place now runs program {now}, not {}",
            want.unwrap_or_default()
        )),
        (None, _) => Some("the filter in its place now runs no program".into()),
    }
}

fn find_link(prog_id: u32, want: LinkTarget) -> io::Result<Option<u32>> {
    for id in bpf::ids(IdSpace::Link)? {
        match bpf::fd_by_id(IdSpace::Link, id).and_then(|fd| bpf::link_info(fd.as_fd())) {
            Ok(l) if l.prog_id == prog_id && l.target == want => return Ok(Some(id)),
            Ok(_) => {}
            // EAGAIN: a link another process is creating or tearing down right now.
            Err(e) if is_gone(&e) || e.raw_os_error() == Some(libc::EAGAIN) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

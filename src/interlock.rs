//! The live-dataplane interlock: if a running process holds one of the objects a sweep would
//! remove, an eBPF dataplane is alive on this node, whatever the mode file says.

use std::collections::BTreeSet;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::kernel::fs::{has_effective_cap, held_bpf_fds, HeldBpfFd, CAP_SYS_PTRACE};
use crate::plan::{ObjId, Step};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Holder {
    pub pid: u32,
    pub comm: String,
    pub holds: Vec<ObjId>,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what: Vec<String> = self
            .holds
            .iter()
            .map(|o| match o {
                ObjId::Prog(id) => format!("program {id}"),
                ObjId::Map(id) => format!("map {id}"),
                ObjId::Link(id) => format!("link {id}"),
            })
            .collect();
        write!(
            f,
            "pid {} ({}) holds {}",
            self.pid,
            self.comm,
            what.join(", ")
        )
    }
}

/// What the interlock saw: the processes holding objects of the plan, and the processes it
/// could not inspect (each a sentence).
#[derive(Debug, Default)]
pub struct Interlock {
    pub holders: Vec<Holder>,
    pub unreadable: Vec<String>,
    /// Without CAP_SYS_PTRACE the guard cannot read the fds of a process more privileged than
    /// itself, which a live Felix is: it is blind by its own configuration.
    pub can_ptrace: bool,
}

impl Interlock {
    /// Why a sweep must not go ahead without --force, if it must not.
    pub fn refusal(&self) -> Option<String> {
        if !self.holders.is_empty() {
            return Some(
                "a running process holds Calico eBPF objects (a live eBPF dataplane)".into(),
            );
        }
        if !self.unreadable.is_empty() && !self.can_ptrace {
            return Some(format!(
                "cannot tell whether an eBPF dataplane is live: {} process(es) could not be inspected ({}); the interlock needs CAP_SYS_PTRACE",
                self.unreadable.len(),
                self.unreadable.iter().take(3).cloned().collect::<Vec<_>>().join("; ")
            ));
        }
        None
    }
}

/// Processes holding any object of the plan. Only called with a non-empty plan: with nothing to
/// remove there is nothing to protect, and /proc is not walked.
pub fn scan(steps: &[Step]) -> Result<Interlock> {
    let procs = held_bpf_fds().context("reading /proc/<pid>/fd")?;
    Ok(Interlock {
        can_ptrace: has_effective_cap(CAP_SYS_PTRACE).context("reading /proc/self/status")?,
        holders: match_holders(&procs.held, steps),
        unreadable: procs
            .unreadable
            .into_iter()
            .map(|(pid, comm, err)| format!("pid {pid} ({comm}): {err}"))
            .collect(),
    })
}

pub fn match_holders(held: &[HeldBpfFd], steps: &[Step]) -> Vec<Holder> {
    let wanted: BTreeSet<ObjId> = steps
        .iter()
        .flat_map(|s| s.objects.iter().copied())
        .collect();
    let mut out: Vec<Holder> = Vec::new();
    for fd in held {
        // A link fd's fdinfo also names its program: count the link only.
        let id = match (fd.link_id, fd.prog_id, fd.map_id) {
            (Some(l), _, _) => ObjId::Link(l),
            (None, Some(p), _) => ObjId::Prog(p),
            (None, None, Some(m)) => ObjId::Map(m),
            _ => continue,
        };
        if !wanted.contains(&id) {
            continue;
        }
        match out.iter_mut().find(|h| h.pid == fd.pid) {
            Some(h) if !h.holds.contains(&id) => h.holds.push(id),
            Some(_) => {}
            None => out.push(Holder {
                pid: fd.pid,
                comm: fd.comm.clone(),
                holds: vec![id],
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Action;

    fn held(pid: u32, prog: Option<u32>, map: Option<u32>, link: Option<u32>) -> HeldBpfFd {
        HeldBpfFd {
            pid,
            comm: format!("p{pid}"),
            prog_id: prog,
            map_id: map,
            link_id: link,
        }
    }

    #[test]
    fn only_plan_objects_count() {
        let steps = vec![Step {
            action: Action::DetachLink { link_id: 7 },
            kind: "link",
            id: Some(7),
            name: "calico_connect_v4".into(),
            location: String::new(),
            reason: "",
            objects: vec![ObjId::Link(7), ObjId::Prog(70), ObjId::Map(5)],
        }];
        let fds = [
            held(1, Some(70), None, None),
            held(1, Some(70), None, None),
            held(1, None, Some(5), None),
            held(2, Some(99), None, None),
            held(3, Some(70), None, Some(7)),
            held(4, Some(70), None, Some(8)),
            held(5, None, Some(6), None),
        ];
        assert_eq!(
            match_holders(&fds, &steps),
            vec![
                Holder {
                    pid: 1,
                    comm: "p1".into(),
                    holds: vec![ObjId::Prog(70), ObjId::Map(5)]
                },
                Holder {
                    pid: 3,
                    comm: "p3".into(),
                    holds: vec![ObjId::Link(7)]
                },
            ]
        );
        assert!(match_holders(&fds, &[]).is_empty());
    }
}

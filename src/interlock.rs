//! The live-dataplane interlock: if a running process holds one of the objects a sweep would
//! remove, an eBPF dataplane is alive on this node, whatever the mode file says. It looks
//! before the sweep and again at its checkpoints (see `checkpoints`), so a Felix that starts
//! mid-sweep stops what is left of it. It only looks (task_file iterator, else /proc), never
//! changes anything, and never reads "nobody seen" as proof when it could not see every
//! process.

use std::collections::{BTreeSet, HashMap};
use std::os::fd::AsRawFd;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::kernel::bpf;
use crate::kernel::fs::{has_effective_cap, held_bpf_fds, HeldBpfFd, CAP_SYS_PTRACE};
use crate::kernel::is_gone;
use crate::kernel::task_files::{own_files, task_files, TaskFile};
use crate::logging::{self, Level};
use crate::plan::{Action, ObjId, Step, StepKind};

/// Fds the interlock holds on the plan's objects at once. It opens one per object and reads
/// its own files (or, before 6.1, every task's) while they are open, so a large plan (a node with 1,000 Calico
/// interfaces has thousands of objects) is looked at in batches: the guard's open fds stay
/// bounded, whatever the plan, within the unit's LimitNOFILE.
pub const BATCH: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Holder {
    pub pid: u32,
    pub comm: String,
    pub holds: Vec<ObjId>,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what: Vec<String> = self.holds.iter().map(ObjId::to_string).collect();
        write!(
            f,
            "pid {} ({}) holds {}",
            self.pid,
            self.comm,
            what.join(", ")
        )
    }
}

/// What the interlock saw: the processes holding objects of the plan, the processes it could
/// not inspect (each a sentence), and, when it could not see every process, why.
#[derive(Debug, Default)]
pub struct Interlock {
    pub holders: Vec<Holder>,
    pub unreadable: Vec<String>,
    /// Set when the guard fell back to /proc without CAP_SYS_PTRACE. /proc then shows nothing
    /// of a process more privileged than the guard (a live Felix is one): its fds are closed to
    /// the guard, and under `ProtectProc=invisible` (the shipped unit) the process is not even
    /// listed, so an empty answer would prove nothing.
    pub blind: Option<String>,
}

impl Interlock {
    /// Why a sweep must not go ahead without --force, if it must not.
    pub fn refusal(&self) -> Option<String> {
        if !self.holders.is_empty() {
            return Some(
                "a running process holds Calico eBPF objects (a live eBPF dataplane)".into(),
            );
        }
        self.blind
            .as_ref()
            .map(|why| format!("cannot tell whether an eBPF dataplane is live: {why}"))
    }
}

/// Processes holding any object of the plan. Only called with a non-empty plan: with nothing to
/// remove there is nothing to protect.
///
/// The kernel's task_file iterator lists every open file of every task, with no ptrace checks;
/// the guard opens its own fds on the plan's objects, so its own records say which file
/// (`f_op`, `private_data`) each object is, and any other task with the same file holds it.
/// Holder pids are the kernel's (initial pid namespace). On a kernel without BTF or task_file
/// iterators (before 5.8), /proc is read instead, which sees privileged processes only with
/// CAP_SYS_PTRACE: without it the interlock is blind and says so.
pub fn scan(steps: &[Step]) -> Result<Interlock> {
    let wanted: Vec<ObjId> = steps
        .iter()
        .flat_map(|s| s.objects.iter().copied())
        .collect::<BTreeSet<ObjId>>()
        .into_iter()
        .collect();
    let unavailable = crate::failpoint::task_files_unavailable().map(std::io::Error::other);
    let found = match unavailable {
        Some(e) => Err(e),
        None => match identify(&wanted)? {
            Some(files) => task_files().map(|all| holders_of(&all, &files)),
            None => scan_per_batch(&wanted)?,
        },
    };
    match found {
        Ok(holders) => Ok(Interlock {
            holders,
            ..Interlock::default()
        }),
        Err(e) => from_proc(steps, &e),
    }
}

/// Which file (`f_op`, `private_data`) each object is, read a batch of objects at a time from
/// this process's own files: every task's files are then read once, however many batches, and
/// on a node with a thousand pods and their files that walk, not the batch, is the cost. The
/// fds are closed before that walk, which is sound: a file someone holds keeps its object, and
/// so its address, alive; the address of an object freed meanwhile may now be another's, whose
/// holder would be reported, never missed. None where this process's files cannot be read
/// alone (a kernel before 6.1).
fn identify(wanted: &[ObjId]) -> Result<Option<HashMap<(u64, u64), ObjId>>> {
    let mut by_file = HashMap::new();
    for batch in wanted.chunks(BATCH) {
        let own = open_own(batch)?;
        let Ok(files) = own_files() else {
            return Ok(None);
        };
        let own_fds: Vec<(u32, ObjId)> = own
            .iter()
            .map(|(fd, o)| (fd.as_raw_fd() as u32, *o))
            .collect();
        by_file.extend(files_of(&files, &own_fds));
    }
    Ok(Some(by_file))
}

/// The holders where this process's files can only be read with every other task's: a walk of
/// them all per batch of objects. The inner error is the iterator's (for /proc instead).
fn scan_per_batch(wanted: &[ObjId]) -> Result<std::io::Result<Vec<Holder>>> {
    let mut holders = Vec::new();
    for batch in wanted.chunks(BATCH) {
        let own = open_own(batch)?;
        let own_fds: Vec<(u32, ObjId)> = own
            .iter()
            .map(|(fd, o)| (fd.as_raw_fd() as u32, *o))
            .collect();
        let files = match task_files() {
            Ok(files) => files,
            Err(e) => return Ok(Err(e)),
        };
        for h in match_files(&files, &own_fds) {
            for obj in h.holds {
                hold(&mut holders, h.pid, &h.comm, obj);
            }
        }
    }
    Ok(Ok(holders))
}

/// This process's own fds on `objects`, those that still exist.
fn open_own(objects: &[ObjId]) -> Result<Vec<(std::os::fd::OwnedFd, ObjId)>> {
    let mut own = Vec::with_capacity(objects.len());
    for obj in objects {
        match bpf::fd_by_id(obj.space(), obj.id()) {
            Ok(fd) => own.push((fd, *obj)),
            Err(e) if is_gone(&e) || e.raw_os_error() == Some(libc::EAGAIN) => {}
            Err(e) => return Err(anyhow::Error::new(e).context(format!("opening {obj:?}"))),
        }
    }
    Ok(own)
}

/// The interlock from /proc, where the task_file iterator is unavailable (`why`).
fn from_proc(steps: &[Step], why: &std::io::Error) -> Result<Interlock> {
    logging::log(
        Level::Info,
        &format!("task_file iterator unavailable ({why}); reading /proc"),
    );
    let can_ptrace = has_effective_cap(CAP_SYS_PTRACE).context("reading /proc/self/status")?;
    let procs = held_bpf_fds().context("reading /proc/<pid>/fd")?;
    Ok(Interlock {
        holders: match_holders(&procs.held, steps),
        unreadable: procs
            .unreadable
            .into_iter()
            .map(|(pid, comm, err)| format!("pid {pid} ({comm}): {err}"))
            .collect(),
        blind: (!can_ptrace).then(|| {
            format!(
                "the task_file iterator is unavailable ({why}), and without CAP_SYS_PTRACE \
                 /proc hides the processes more privileged than the guard"
            )
        }),
    })
}

/// Where a sweep looks for holders again, as indices into the plan: before the first pin is
/// unlinked (the detaches are done by then, and a process that opened a pin since would lose
/// it) and before the first map pin goes (a map goes with its last pin, unless someone holds
/// it). The look before the sweep covers index 0. Devices and Calico's empty directories come
/// last and hold no BPF object.
pub fn checkpoints(steps: &[Step]) -> Vec<usize> {
    let first_pin = steps
        .iter()
        .position(|s| matches!(s.action, Action::Unpin { .. }));
    let first_map = steps.iter().position(|s| s.kind == StepKind::MapPin);
    let mut at: Vec<usize> = [first_pin, first_map]
        .into_iter()
        .flatten()
        .filter(|&i| i > 0)
        .collect();
    at.sort_unstable();
    at.dedup();
    at
}

/// A holder must still hold after a short wait: a tool that lists every program (bpftool, a
/// second guard's scan) holds each fd for an instant, a live dataplane holds them for good.
pub fn scan_settled(steps: &[Step]) -> Result<Interlock> {
    let mut lock = scan(steps)?;
    for _ in 0..2 {
        if lock.holders.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        let again = scan(steps)?;
        lock.holders
            .retain(|h| again.holders.iter().any(|a| a.pid == h.pid));
        lock.unreadable = again.unreadable;
    }
    Ok(lock)
}

/// Holders from the iterator's records: `own` are this process's fds on the objects.
pub fn match_files(files: &[TaskFile], own: &[(u32, ObjId)]) -> Vec<Holder> {
    holders_of(files, &files_of(files, own))
}

/// The file each of this process's fds in `own` is, from its own records (`tgid` 0).
fn files_of(files: &[TaskFile], own: &[(u32, ObjId)]) -> HashMap<(u64, u64), ObjId> {
    let mut by_file: HashMap<(u64, u64), ObjId> = HashMap::new();
    for f in files.iter().filter(|f| f.tgid == 0) {
        if let Some((_, obj)) = own.iter().find(|(fd, _)| *fd == f.fd) {
            by_file.insert((f.f_op, f.private_data), *obj);
        }
    }
    by_file
}

/// The other tasks holding one of the files in `by_file`.
fn holders_of(files: &[TaskFile], by_file: &HashMap<(u64, u64), ObjId>) -> Vec<Holder> {
    let mut out: Vec<Holder> = Vec::new();
    for f in files.iter().filter(|f| f.tgid != 0) {
        if let Some(obj) = by_file.get(&(f.f_op, f.private_data)) {
            hold(&mut out, f.tgid, &f.comm, *obj);
        }
    }
    out
}

/// Record that `pid` holds `obj`: one holder per process, each object once, in the order seen.
fn hold(holders: &mut Vec<Holder>, pid: u32, comm: &str, obj: ObjId) {
    match holders.iter_mut().find(|h| h.pid == pid) {
        Some(h) if !h.holds.contains(&obj) => h.holds.push(obj),
        Some(_) => {}
        None => holders.push(Holder {
            pid,
            comm: comm.to_string(),
            holds: vec![obj],
        }),
    }
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
        if wanted.contains(&id) {
            hold(&mut out, fd.pid, &fd.comm, id);
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

    fn file(tgid: u32, fd: u32, private_data: u64) -> TaskFile {
        TaskFile {
            tgid,
            fd,
            f_op: 0xf0,
            private_data,
            comm: format!("c{tgid}"),
        }
    }

    #[test]
    fn iterator_records_match_by_file_identity() {
        let own = [(5, ObjId::Link(7)), (6, ObjId::Map(3))];
        let files = [
            file(0, 5, 0xa),  // our fd on link 7
            file(0, 6, 0xb),  // our fd on map 3
            file(0, 9, 0xc),  // another fd of ours: not an object of the plan
            file(42, 3, 0xa), // pid 42 holds link 7
            file(42, 4, 0xb), // and map 3
            file(43, 3, 0xc), // pid 43 holds something else
            TaskFile {
                f_op: 0xf1,
                ..file(44, 3, 0xa)
            }, // same private_data, another kind of file
        ];
        assert_eq!(
            match_files(&files, &own),
            vec![Holder {
                pid: 42,
                comm: "c42".into(),
                holds: vec![ObjId::Link(7), ObjId::Map(3)]
            }]
        );
    }

    #[test]
    fn refusal() {
        let holder = Holder {
            pid: 1,
            comm: "felix".into(),
            holds: vec![ObjId::Prog(1)],
        };
        let denied = || vec!["pid 9 (x): denied".to_string()];
        let blind = || Some("no iterator, no CAP_SYS_PTRACE".to_string());
        let cases = [
            (vec![], vec![], None, false),
            (vec![holder.clone()], vec![], None, true),
            (vec![], vec![], blind(), true),
            (vec![], denied(), blind(), true),
            // With CAP_SYS_PTRACE an unreadable process is one that exited meanwhile.
            (vec![], denied(), None, false),
        ];
        for (holders, unreadable, blind, refuse) in cases {
            let i = Interlock {
                holders,
                unreadable,
                blind,
            };
            assert_eq!(i.refusal().is_some(), refuse, "{i:?}");
        }
    }

    #[test]
    fn only_plan_objects_count() {
        let steps = vec![Step {
            action: Action::DetachLink { link_id: 7 },
            kind: crate::plan::StepKind::Link,
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

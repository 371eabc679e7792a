//! The kernel floor: what the kernel itself spends on a sweep's writes and on reading the node,
//! timed in-process without any of the guard's own overhead. It never runs the guard.

use std::fs;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use calico_bpf_guard::kernel::bpf::{self, IdSpace, Target};
use calico_bpf_guard::kernel::netlink::{Filter, Rtnl};
use calico_bpf_testkit::{plant, progs};

use crate::node::{Node, Variant};

/// The kernel's own cost of the changes a sweep makes, timed one operation at a time in this
/// process: every handle (fds, filter keys, paths) is prepared first, untimed, so each timed
/// interval is exactly one detach, one RTM_DELTFILTER/RTM_DELLINK round trip, one unlink or one
/// rmdir. Discovery (dumps, queries) is not part of the floor.
#[derive(Debug, Default, Clone)]
pub struct Floor {
    pub cgroup: Duration,
    pub hooks: Duration,
    pub pins: Duration,
    pub device: Duration,
}

impl Floor {
    pub fn total(&self) -> Duration {
        self.cgroup + self.hooks + self.pins + self.device
    }
}

fn timed<T>(sum: &mut Duration, f: impl FnOnce() -> std::io::Result<T>) -> Result<T> {
    let t0 = Instant::now();
    let r = f();
    *sum += t0.elapsed();
    Ok(r?)
}

pub fn kernel_floor(node: &Node) -> Result<Floor> {
    let bpffs = node.bpffs().to_path_buf();
    let cgdir = fs::File::open(node.cgroup())?;
    let ifaces = node.ifaces.clone();
    let variant = node.variant;
    node.sb.netns().enter(move || {
        let mut fl = Floor::default();
        // CTLB: the IPv4 programs by their own fds (old-style), the IPv6 ones by their links.
        let mut exclusive = Vec::new();
        for (_, hook) in &plant::CTLB[..3] {
            for p in bpf::query(Target::Fd(cgdir.as_fd()), *hook)?.progs {
                exclusive.push((*hook, bpf::fd_by_id(IdSpace::Prog, p.prog_id)?));
            }
        }
        let ctlb_pins: Vec<PathBuf> = plant::CTLB[3..]
            .iter()
            .map(|(n, _)| bpffs.join("ctlb").join(n))
            .collect();
        let ctlb_links = ctlb_pins
            .iter()
            .map(|p| bpf::obj_get(p))
            .collect::<std::io::Result<Vec<_>>>()?;
        for (hook, prog) in &exclusive {
            timed(&mut fl.cgroup, || {
                bpf::prog_detach(Target::Fd(cgdir.as_fd()), prog.as_fd(), *hook)
            })?;
        }
        for l in &ctlb_links {
            timed(&mut fl.cgroup, || bpf::link_detach(l.as_fd()))?;
        }

        let mut unpin: Vec<PathBuf> = ctlb_pins;
        match variant {
            Variant::Tc => {
                let mut rtnl = Rtnl::open()?;
                for (_, idx) in &ifaces {
                    for parent in [plant::INGRESS, plant::EGRESS] {
                        let f = Filter {
                            ifindex: *idx,
                            parent,
                            handle: 1,
                            info: (1 << 16) | u32::from(plant::ETH_P_ALL.to_be()),
                            chain: 0,
                            kind: "bpf".into(),
                            prog_id: None,
                        };
                        timed(&mut fl.hooks, || rtnl.del_filter(&f))?;
                    }
                }
            }
            Variant::Tcx => {
                let pins: Vec<PathBuf> = ifaces
                    .iter()
                    .flat_map(|(n, _)| {
                        ["ingress", "egress"].map(|d| bpffs.join("tcx").join(format!("{n}_{d}")))
                    })
                    .collect();
                let links = pins
                    .iter()
                    .map(|p| bpf::obj_get(p))
                    .collect::<std::io::Result<Vec<_>>>()?;
                for l in &links {
                    timed(&mut fl.hooks, || bpf::link_detach(l.as_fd()))?;
                }
                unpin.extend(pins);
            }
        }

        let globals = bpffs.join("tc/globals");
        for e in fs::read_dir(&globals)? {
            let e = e?;
            if e.file_name().to_string_lossy().starts_with("cali_") {
                unpin.push(e.path());
            }
        }
        let mut rmdirs = Vec::new();
        for e in fs::read_dir(globals.join("old_jumps"))? {
            let dir = e?.path();
            for p in fs::read_dir(&dir)? {
                unpin.push(p?.path());
            }
            rmdirs.push(dir);
        }
        rmdirs.push(globals.join("old_jumps"));
        rmdirs.push(bpffs.join("ctlb"));
        for p in &unpin {
            timed(&mut fl.pins, || fs::remove_file(p))?;
        }
        for d in &rmdirs {
            timed(&mut fl.pins, || fs::remove_dir(d))?;
        }

        let mut rtnl = Rtnl::open()?;
        let dev = rtnl.link_by_name("bpfin.cali")?.context("no bpfin.cali")?;
        timed(&mut fl.device, || rtnl.del_link(dev.ifindex))?;
        Ok(fl)
    })
}

/// What one read-only scan of this node costs the kernel, timed in-process: every program's
/// info (ownership is by program name and type, and program ids are machine-wide) and every
/// link's; then only what those programs call for, as any careful scanner would: the six hooks
/// of every cgroup when a Calico connect-time program is loaded, and the link and qdisc dumps
/// with two filter dumps (tc) or two tcx queries per interface when a Calico tc program is;
/// and each pin in Calico's bpffs places, opened and identified. A sweep reads, writes, and
/// reads again to verify, when little is left.
#[derive(Debug, Default, Clone, Copy)]
pub struct Reads {
    pub programs: Duration,
    pub cgroups: Duration,
    pub pins: Duration,
    pub network: Duration,
}

impl Reads {
    pub fn total(&self) -> Duration {
        self.programs + self.cgroups + self.pins + self.network
    }
}

pub fn read_floor(node: &Node) -> Result<Reads> {
    let bpffs = node.bpffs().to_path_buf();
    let cgroot = node.cgroup().to_path_buf();
    let variant = node.variant;
    node.sb.netns().enter(move || {
        let mut r = Reads::default();
        let gone = |e: &std::io::Error| e.raw_os_error() == Some(libc::ENOENT);
        let calico = |n: &str| n.starts_with("cali_") || n.starts_with("calico_");
        let (mut ctlb, mut tc) = (false, false);
        let t = Instant::now();
        for id in bpf::ids(IdSpace::Prog)? {
            match bpf::fd_by_id(IdSpace::Prog, id).and_then(|fd| bpf::prog_info(fd.as_fd())) {
                Ok(p) => {
                    ctlb |= p.prog_type == progs::SOCK_ADDR && calico(&p.name);
                    tc |= p.prog_type == progs::SCHED_CLS && calico(&p.name);
                }
                Err(e) if !gone(&e) => return Err(e.into()),
                Err(_) => {}
            }
        }
        for id in bpf::ids(IdSpace::Link)? {
            match bpf::fd_by_id(IdSpace::Link, id).and_then(|fd| bpf::link_info(fd.as_fd())) {
                Err(e) if !gone(&e) => return Err(e.into()),
                _ => {}
            }
        }
        r.programs = t.elapsed();

        let t = Instant::now();
        let mut cgroups = if ctlb { vec![cgroot] } else { Vec::new() };
        while let Some(dir) = cgroups.pop() {
            let f = fs::File::open(&dir)?;
            for (_, hook) in plant::CTLB {
                bpf::query(Target::Fd(f.as_fd()), hook)?;
            }
            // cgroup2 directories link 2 plus one per child: leaves need no directory read.
            if f.metadata()?.nlink() == 2 {
                continue;
            }
            for e in fs::read_dir(&dir)? {
                let e = e?;
                if e.file_type()?.is_dir() {
                    cgroups.push(e.path());
                }
            }
        }
        r.cgroups = t.elapsed();

        let t = Instant::now();
        let mut stack = vec![
            bpffs.join("ctlb"),
            bpffs.join("tc/globals"),
            bpffs.join("tcx"),
        ];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for e in entries {
                let e = e?;
                if e.file_type()?.is_dir() {
                    stack.push(e.path());
                } else {
                    let fd = bpf::obj_get(&e.path())?;
                    match bpf::fd_kind(fd.as_fd())? {
                        bpf::ObjKind::Map => drop(bpf::map_info(fd.as_fd())?),
                        bpf::ObjKind::Link => drop(bpf::link_info(fd.as_fd())?),
                        _ => drop(bpf::prog_info(fd.as_fd())?),
                    }
                }
            }
        }
        r.pins = t.elapsed();

        let t = Instant::now();
        let mut rtnl = Rtnl::open()?;
        if tc {
            let links = rtnl.links()?;
            match variant {
                Variant::Tc => {
                    for q in rtnl.qdiscs()?.into_iter().filter(|q| q.kind == "clsact") {
                        for parent in [plant::INGRESS, plant::EGRESS] {
                            rtnl.filters(q.ifindex, parent)?;
                        }
                    }
                }
                Variant::Tcx => {
                    for l in &links {
                        for hook in [plant::TCX_INGRESS, plant::TCX_EGRESS] {
                            bpf::query(Target::Ifindex(l.ifindex), hook)?;
                        }
                    }
                }
            }
        } else {
            rtnl.link_by_name("bpfin.cali")?;
        }
        r.network = t.elapsed();
        Ok(r)
    })
}

/// One kernel-floor run: the reads of the planted node, the writes, the reads of the result.
#[derive(Debug, Clone)]
pub struct FloorRun {
    pub before: Reads,
    pub writes: Floor,
    pub after: Reads,
}

impl FloorRun {
    pub fn total(&self) -> Duration {
        self.before.total() + self.writes.total() + self.after.total()
    }
}

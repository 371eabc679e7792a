//! The sandbox node: Calico workload interfaces, the foreign objects that must survive every
//! run, Calico's objects planted afresh before each run, and a census of what is there. It
//! never times anything.

use std::fmt::Write as _;
use std::os::fd::AsFd;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{ensure, Context, Result};
use calico_bpf_guard::kernel::bpf::{self, IdSpace, Target};
use calico_bpf_guard::kernel::netlink::Rtnl;
use calico_bpf_testkit::sandbox::{self, unique, Netns};
use calico_bpf_testkit::{plant, progs, snapshot, Sandbox};
use clap::ValueEnum;
use serde_json::Value;

use crate::stop::check_stop;

/// Global maps pinned under tc/globals, and maps in old_jumps repin directories.
const GLOBAL_PINS: usize = 280;
const OLD_JUMP_DIRS: usize = 4;
const OLD_JUMP_PINS: usize = 5;

/// How Calico attaches its tc programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Variant {
    /// clsact with ingress and egress direct-action filters (Calico 3.27–3.30).
    Tc,
    /// tcx links pinned under <bpffs>/tcx (Calico 3.31+).
    Tcx,
}

impl Variant {
    pub fn name(self) -> &'static str {
        match self {
            Variant::Tc => "tc",
            Variant::Tcx => "tcx",
        }
    }
}

/// A sandbox node with `n` Calico workload interfaces. The pods' ends of the veth pairs live in
/// a second namespace, as on a real node, so the host namespace holds `n` interfaces, not 2n.
pub struct Node {
    pub sb: Sandbox,
    _pods: Netns,
    pub variant: Variant,
    pub ifaces: Vec<(String, u32)>,
}

/// Calico's interface names: `cali` and 11 hex digits of a hash of the workload.
fn iface_name(i: usize) -> String {
    let h = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20;
    format!("cali{:011x}", h & 0xfff_ffff_ffff)
}

impl Node {
    pub fn new(variant: Variant, n: usize, guard: &Path) -> Result<Node> {
        let sb = Sandbox::new("bench", guard)?;
        let pods = Netns::new(&unique("bpods"))?;
        let names: Vec<String> = (0..n).map(iface_name).collect();
        let mut batch = String::new();
        for (i, name) in names.iter().enumerate() {
            writeln!(
                batch,
                "link add {name} type veth peer name eth{i} netns {}",
                pods.name
            )?;
            writeln!(batch, "link set {name} up")?;
        }
        sb.netns().ip_batch(&batch)?;
        if variant == Variant::Tc {
            let mut qdiscs = String::new();
            for d in &names {
                writeln!(qdiscs, "qdisc add dev {d} clsact")?;
            }
            sandbox::run_stdin("tc", &["-n", &sb.netns().name, "-batch", "-"], &qdiscs)?;
        }
        let links = sb.netns().enter(|| Ok(Rtnl::open()?.links()?))?;
        let ifaces = names
            .into_iter()
            .map(|name| {
                let idx = links
                    .iter()
                    .find(|l| l.name == name.as_str())
                    .map(|l| l.ifindex)
                    .with_context(|| format!("no interface {name}"))?;
                Ok((name, idx))
            })
            .collect::<Result<_>>()?;
        // Each pod's cgroup and its container's, as kubelet makes them: the guard walks every
        // cgroup under its roots, and a real node has them by the hundred.
        for i in 0..n {
            sb.cgroup.child(&format!("kubepods/pod{i:04}/c{i:04}"))?;
        }
        let node = Node {
            sb,
            _pods: pods,
            variant,
            ifaces,
        };
        node.plant_foreign()?;
        node.sb.set_mode(Some("iptables"))?;
        Ok(node)
    }

    pub fn bpffs(&self) -> &Path {
        &self.sb.bpffs.path
    }

    pub fn cgroup(&self) -> &Path {
        &self.sb.cgroup.path
    }

    /// Other tools' objects on the same hooks and in the same directories: they must survive
    /// every run, so they are planted once.
    fn plant_foreign(&self) -> Result<()> {
        let cg = self.cgroup();
        plant::attach(
            cg,
            progs::SOCK_ADDR,
            "cil_sock6_connect",
            plant::CONNECT6,
            plant::MULTI,
            false,
        )?;
        plant::attach(
            cg,
            progs::CGROUP_SKB,
            "sd_fw_ingress",
            progs::ATTACH_INGRESS,
            plant::MULTI,
            false,
        )?;
        plant::pin_map(
            &self.bpffs().join("tc/globals/cilium_calls"),
            "cilium_calls",
        )?;
        let first = self.ifaces[0].0.clone();
        let variant = self.variant;
        // Outside Calico's places, so the guard must leave it.
        let foreign_pin = self.bpffs().join("cilium/tcx").join(&first);
        self.sb.netns().enter(move || match variant {
            Variant::Tc => plant::tc_filter(
                &first,
                plant::INGRESS,
                3,
                1,
                plant::ETH_P_ALL,
                "cil_from_contai",
            ),
            Variant::Tcx => plant::tcx_link(
                &first,
                plant::TCX_INGRESS,
                "cil_from_contai",
                Some(&foreign_pin),
            )
            .map(drop),
        })
    }

    /// Calico's objects: the six CTLB attachments (IPv4 exclusive as 3.22–3.28.4 left them,
    /// IPv6 as pinned links as 3.28.5+ does), the global and old_jumps map pins, two programs
    /// per interface, and the bpfin.cali pair.
    fn plant_calico(&self) -> Result<()> {
        let (bpffs, cg) = (self.bpffs(), self.cgroup());
        for (name, hook) in &plant::CTLB[..3] {
            plant::attach(cg, progs::SOCK_ADDR, name, *hook, 0, true)?;
        }
        for (name, hook) in &plant::CTLB[3..] {
            let pin = bpffs.join("ctlb").join(name);
            plant::link(cg, progs::SOCK_ADDR, name, *hook, Some(&pin), true)?;
        }
        for i in 0..GLOBAL_PINS {
            let name = format!("cali_v4_b{i:03}");
            plant::pin_map(&bpffs.join("tc/globals").join(&name), &name)?;
        }
        for d in 0..OLD_JUMP_DIRS {
            for j in 0..OLD_JUMP_PINS {
                let rel = format!("tc/globals/old_jumps/{:06x}/cali_jump{j}", d * 7919);
                plant::pin_map(&bpffs.join(rel), &format!("cali_jump{j}"))?;
            }
        }
        let ifaces = self.ifaces.clone();
        let variant = self.variant;
        let bpffs = bpffs.to_path_buf();
        self.sb.netns().enter(move || {
            sandbox::run(
                "ip",
                &[
                    "link",
                    "add",
                    "bpfin.cali",
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "bpfout.cali",
                ],
            )?;
            for (name, _) in &ifaces {
                check_stop()?;
                match variant {
                    Variant::Tc => {
                        for parent in [plant::INGRESS, plant::EGRESS] {
                            plant::tc_filter(
                                name,
                                parent,
                                1,
                                1,
                                plant::ETH_P_ALL,
                                "cali_tc_preambl",
                            )?;
                        }
                    }
                    Variant::Tcx => plant::calico_tcx_links(&bpffs, name)?,
                }
            }
            Ok(())
        })
    }

    /// How many Calico objects a sweep removes on this node.
    pub fn calico_objects(&self) -> usize {
        // 6 CTLB attachments + 3 CTLB pins + ctlb/, global pins, old_jumps pins and directories,
        // two per interface (plus a pin each for tcx), bpfin.cali.
        let per_iface = match self.variant {
            Variant::Tc => 2,
            Variant::Tcx => 4,
        };
        10 + GLOBAL_PINS
            + OLD_JUMP_DIRS * (OLD_JUMP_PINS + 1)
            + 1
            + per_iface * self.ifaces.len()
            + 1
    }

    /// What is there now, read without the guard's own scanning code: Calico programs on the
    /// cgroup, on tc and on tcx, Calico pins, the bpfin.cali device, and the foreign objects.
    fn census(&self) -> Result<Census> {
        let cg = snapshot::cgroups(self.cgroup())?;
        let pins = snapshot::pins(self.bpffs())?;
        let mut c = Census {
            ctlb: cg.iter().filter(|l| l.contains(" calico_")).count(),
            foreign_cgroup: cg.len() - cg.iter().filter(|l| l.contains(" calico_")).count(),
            calico_pins: pins
                .iter()
                .filter(|l| {
                    l.starts_with("pin ctlb/")
                        || l.starts_with("pin tcx/")
                        || l.starts_with("pin tc/globals/cali_")
                        || l.starts_with("pin tc/globals/old_jumps/")
                })
                .count(),
            foreign_pins: pins
                .iter()
                .filter(|l| *l == "pin tc/globals/cilium_calls" || l.starts_with("pin cilium/"))
                .count(),
            ..Default::default()
        };
        let ifaces = self.ifaces.clone();
        let net = self.sb.netns().enter(move || {
            let mut c = Census::default();
            let out = Command::new("bpftool")
                .args(["-j", "net", "show"])
                .output()?;
            ensure!(out.status.success(), "bpftool net show failed");
            let v: Value = serde_json::from_slice(&out.stdout)?;
            for tc in v
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e.get("tc").and_then(Value::as_array))
                .flatten()
            {
                match tc.get("name").and_then(Value::as_str) {
                    Some("cali_tc_preambl") => c.calico_hooks += 1,
                    Some(_) => c.foreign_hooks += 1,
                    None => {}
                }
            }
            // This bpftool predates tcx, so tcx hooks are queried directly.
            for (_, idx) in &ifaces {
                for hook in [plant::TCX_INGRESS, plant::TCX_EGRESS] {
                    match bpf::query(Target::Ifindex(*idx), hook) {
                        Ok(q) => {
                            for p in q.progs {
                                let name = bpf::fd_by_id(IdSpace::Prog, p.prog_id)
                                    .and_then(|fd| bpf::prog_info(fd.as_fd()))
                                    .map(|i| i.name)
                                    .unwrap_or_default();
                                if name.starts_with("cali_") {
                                    c.calico_hooks += 1;
                                } else {
                                    c.foreign_hooks += 1;
                                }
                            }
                        }
                        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            c.bpfin = Command::new("ip")
                .args(["link", "show", "dev", "bpfin.cali"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()?
                .success();
            Ok(c)
        })?;
        c.calico_hooks = net.calico_hooks;
        c.foreign_hooks = net.foreign_hooks;
        c.bpfin = net.bpfin;
        Ok(c)
    }

    /// After a run: every Calico object gone, every foreign one still there.
    pub fn expect_clean(&self, what: &str) -> Result<()> {
        let c = self.census()?;
        ensure!(
            c.ctlb == 0 && c.calico_pins == 0 && c.calico_hooks == 0 && !c.bpfin,
            "{what} left Calico objects behind: {c:?}"
        );
        ensure!(
            c.foreign_cgroup == 2 && c.foreign_pins == self.foreign_pins() && c.foreign_hooks == 1,
            "{what} removed foreign objects: {c:?}"
        );
        Ok(())
    }

    fn expect_planted(&self) -> Result<()> {
        let c = self.census()?;
        let per_iface = 2 * self.ifaces.len();
        let pins = 3
            + GLOBAL_PINS
            + OLD_JUMP_DIRS * OLD_JUMP_PINS
            + if self.variant == Variant::Tcx {
                per_iface
            } else {
                0
            };
        ensure!(
            c.ctlb == 6 && c.calico_hooks == per_iface && c.calico_pins == pins && c.bpfin,
            "planting is incomplete: {c:?}"
        );
        Ok(())
    }

    fn foreign_pins(&self) -> usize {
        match self.variant {
            Variant::Tc => 1,
            Variant::Tcx => 2,
        }
    }

    pub fn replant(&self) -> Result<()> {
        check_stop()?;
        self.plant_calico()?;
        self.expect_planted()
    }
}

#[derive(Debug, Default)]
struct Census {
    ctlb: usize,
    foreign_cgroup: usize,
    calico_pins: usize,
    foreign_pins: usize,
    calico_hooks: usize,
    foreign_hooks: usize,
    bpfin: bool,
}

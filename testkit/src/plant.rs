//! Plant kernel state: Calico's leftovers in every form its releases left them, and foreign
//! objects on the same hooks. Network functions act on the calling thread's namespace (wrap
//! them in `Netns::enter`); nothing here removes or checks state.

use std::ffi::OsStr;
use std::fs;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use calico_bpf_guard::kernel::bpf::Target;
use calico_bpf_guard::kernel::netlink::Rtnl;
use calico_bpf_guard::names;
use libbpf_rs::{Xdp, XdpFlags};
use netlink_packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage};
use netlink_packet_route::tc::{
    TcAttribute, TcBpfFlags, TcFilterBpfOption, TcHandle, TcMessage, TcOption,
};
use netlink_packet_route::RouteNetlinkMessage;

use crate::bpf;
use crate::progs::{self, SCHED_CLS, SOCK_ADDR, XDP};

pub use calico_bpf_guard::kernel::bpf::{
    ATTACH_INET4_CONNECT as CONNECT4, ATTACH_INET6_CONNECT as CONNECT6,
    ATTACH_TCX_EGRESS as TCX_EGRESS, ATTACH_TCX_INGRESS as TCX_INGRESS,
    ATTACH_UDP4_RECVMSG as RECVMSG4, ATTACH_UDP4_SENDMSG as SENDMSG4,
    ATTACH_UDP6_RECVMSG as RECVMSG6, ATTACH_UDP6_SENDMSG as SENDMSG6, F_ALLOW_MULTI as MULTI,
    XDP_FLAGS_DRV_MODE as XDP_DRV, XDP_FLAGS_SKB_MODE as XDP_SKB,
};
pub use calico_bpf_guard::kernel::netlink::{PARENT_EGRESS as EGRESS, PARENT_INGRESS as INGRESS};

/// Calico 3.22+ connect-time load balancer: full names and hooks.
pub const CTLB: [(&str, u32); 6] = [
    ("calico_connect_v4", CONNECT4),
    ("calico_sendmsg_v4", SENDMSG4),
    ("calico_recvmsg_v4", RECVMSG4),
    ("calico_connect_v6", CONNECT6),
    ("calico_sendmsg_v6", SENDMSG6),
    ("calico_recvmsg_v6", RECVMSG6),
];

/// Calico ≤3.21.
pub const CTLB_LEGACY: [(&str, u32); 3] = [
    ("cali_ctlb_v4", CONNECT4),
    ("cali_ctlb_sendmsg", SENDMSG4),
    ("cali_ctlb_recvmsg", RECVMSG4),
];

pub const ETH_P_ALL: u16 = 0x0003;
pub const ETH_P_IP: u16 = 0x0800;

/// Attach old-style (flags 0 exclusive, or MULTI); the fd is closed so only the kernel holds it.
pub fn attach(
    cgroup: &Path,
    prog_type: u32,
    name: &str,
    hook: u32,
    flags: u32,
    btf: bool,
) -> Result<()> {
    let prog = progs::load_for_hook(prog_type, name, hook, btf)
        .with_context(|| format!("loading {name}"))?;
    let dir = fs::File::open(cgroup)?;
    bpf::prog_attach(Target::Fd(dir.as_fd()), prog.as_fd(), hook, flags)
        .with_context(|| format!("attaching {name} to {}", cgroup.display()))
}

/// Attach through a bpf_link. Pinned: the pin keeps it and the fd is closed. Not pinned: the
/// returned fd is the only thing that keeps it attached.
pub fn link(
    cgroup: &Path,
    prog_type: u32,
    name: &str,
    hook: u32,
    pin: Option<&Path>,
    btf: bool,
) -> Result<Option<OwnedFd>> {
    let prog = progs::load_for_hook(prog_type, name, hook, btf)
        .with_context(|| format!("loading {name}"))?;
    let dir = fs::File::open(cgroup)?;
    let l = bpf::link_create(Target::Fd(dir.as_fd()), prog.as_fd(), hook)
        .with_context(|| format!("linking {name} to {}", cgroup.display()))?;
    keep(l, pin)
}

fn keep(fd: OwnedFd, pin: Option<&Path>) -> Result<Option<OwnedFd>> {
    match pin {
        Some(p) => {
            pin_at(fd.as_fd(), p)?;
            Ok(None)
        }
        None => Ok(Some(fd)),
    }
}

/// Pin an object, making the directories above it.
fn pin_at(fd: BorrowedFd<'_>, p: &Path) -> Result<()> {
    if let Some(dir) = p.parent() {
        fs::create_dir_all(dir)?;
    }
    bpf::obj_pin(fd, p).with_context(|| format!("pinning {}", p.display()))
}

pub fn pin_map(path: &Path, name: &str) -> Result<()> {
    let m = progs::map(name).with_context(|| format!("creating map {name}"))?;
    pin_at(m.as_fd(), path)
}

pub fn pin_prog(path: &Path, prog_type: u32, name: &str, hook: u32) -> Result<()> {
    let p = progs::load_for_hook(prog_type, name, hook, false)?;
    keep(p, Some(path)).map(drop)
}

/// An interface's index by its name: bytes, UTF-8 or not.
pub fn ifindex(name: impl AsRef<[u8]>) -> Result<u32> {
    let name = name.as_ref();
    Rtnl::open()?
        .link_by_name(name)?
        .map(|l| l.ifindex)
        .with_context(|| format!("no interface {}", names::escape(name)))
}

/// Run an iproute2 tool whose arguments may be any bytes (interface names).
fn tool(cmd: &str, args: &[&[u8]]) -> Result<()> {
    let out = Command::new(cmd)
        .args(args.iter().map(|a| OsStr::from_bytes(a)))
        .output()
        .with_context(|| format!("running {cmd}"))?;
    if !out.status.success() {
        let shown: Vec<String> = args.iter().map(|a| names::escape(a)).collect();
        bail!(
            "{cmd} {}: {}",
            shown.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// A veth pair; its names may be any bytes the kernel takes.
pub fn veth(name: impl AsRef<[u8]>, peer: impl AsRef<[u8]>) -> Result<()> {
    let (name, peer) = (name.as_ref(), peer.as_ref());
    tool(
        "ip",
        &[
            b"link", b"add", name, b"type", b"veth", b"peer", b"name", peer,
        ],
    )
}

/// A SCHED_CLS program as a direct-action tc filter, with its own priority, handle and protocol.
pub fn tc_filter(
    ifname: impl AsRef<[u8]>,
    parent: u32,
    prio: u16,
    handle: u32,
    protocol: u16,
    prog_name: &str,
) -> Result<()> {
    let ifname = ifname.as_ref();
    let prog = progs::load(SCHED_CLS, prog_name, 0, false)?;
    let mut msg = TcMessage::default();
    msg.header.index = ifindex(ifname)? as i32;
    msg.header.parent = TcHandle::from(parent);
    msg.header.handle = TcHandle::from(handle);
    msg.header.info = (u32::from(prio) << 16) | u32::from(protocol.to_be());
    msg.attributes.push(TcAttribute::Kind("bpf".into()));
    msg.attributes.push(TcAttribute::Options(vec![
        TcOption::Bpf(TcFilterBpfOption::ProgFd(
            std::os::fd::AsRawFd::as_raw_fd(&prog) as u32,
        )),
        TcOption::Bpf(TcFilterBpfOption::ProgName(prog_name.into())),
        TcOption::Bpf(TcFilterBpfOption::Flags(TcBpfFlags::DirectAction)),
    ]));
    Rtnl::open()?
        .request(
            RouteNetlinkMessage::NewTrafficFilter(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )
        .with_context(|| format!("adding tc filter {prog_name} on {}", names::escape(ifname)))?;
    Ok(())
}

/// A netkit device (6.7+, CONFIG_NETKIT), made over rtnetlink: iproute2 knows `type netkit`
/// only from 6.7, older than the kernels that have it on some machines. The kernel names its
/// peer `nk%d`, so `name` must not be of that form. Err when the kernel cannot make one.
pub fn netkit(name: &str) -> Result<()> {
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(name.into()));
    msg.attributes
        .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
            InfoKind::Netkit,
        )]));
    Rtnl::open()?
        .request(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )
        .with_context(|| format!("adding netkit device {name}"))?;
    Ok(())
}

/// Child processes inherit the calling thread's namespace, so this works inside `Netns::enter`.
pub fn clsact(dev: impl AsRef<[u8]>) -> Result<()> {
    tool("tc", &[b"qdisc", b"add", b"dev", dev.as_ref(), b"clsact"])
}

pub fn xdp(ifname: &str, prog_name: &str, mode: u32) -> Result<()> {
    let prog = progs::load_for_hook(XDP, prog_name, 0, false)?;
    Xdp::new(prog.as_fd())
        .attach(ifindex(ifname)? as i32, XdpFlags::from_bits_retain(mode))
        .with_context(|| format!("XDP {prog_name} on {ifname}"))
}

pub fn xdp_link(ifname: &str, prog_name: &str, pin: Option<&Path>) -> Result<Option<OwnedFd>> {
    let prog = progs::load_for_hook(XDP, prog_name, 0, false)?;
    let l = bpf::link_create(
        Target::Ifindex(ifindex(ifname)?),
        prog.as_fd(),
        progs::ATTACH_XDP,
    )
    .with_context(|| format!("XDP link {prog_name} on {ifname}"))?;
    keep(l, pin)
}

pub fn tcx_link(
    ifname: &str,
    hook: u32,
    prog_name: &str,
    pin: Option<&Path>,
) -> Result<Option<OwnedFd>> {
    let prog = progs::load(SCHED_CLS, prog_name, 0, false)?;
    let l = bpf::link_create(Target::Ifindex(ifindex(ifname)?), prog.as_fd(), hook)
        .with_context(|| format!("tcx link {prog_name} on {ifname}"))?;
    keep(l, pin)
}

/// Calico's tc program on `dev` as Felix leaves it on tcx: links on ingress and egress, pinned
/// at `<bpffs>/tcx/<dev>_<dir>`.
pub fn calico_tcx_links(bpffs: &Path, dev: &str) -> Result<()> {
    let dir = bpffs.join("tcx");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for (hook, side) in [(TCX_INGRESS, "ingress"), (TCX_EGRESS, "egress")] {
        let pin = dir.join(format!("{dev}_{side}"));
        tcx_link(dev, hook, "cali_tc_preambl", Some(&pin))?;
    }
    Ok(())
}

/// Does this kernel have tcx (6.6+)? A tcx query on loopback answers EINVAL before.
pub fn has_tcx() -> Result<bool> {
    match calico_bpf_guard::kernel::bpf::query(Target::Ifindex(1), TCX_INGRESS) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(false),
        Err(e) => Err(anyhow::Error::new(e).context("tcx query on loopback")),
    }
}

pub fn tcx_attach(ifname: &str, hook: u32, prog_name: &str) -> Result<()> {
    let prog = progs::load(SCHED_CLS, prog_name, 0, false)?;
    bpf::prog_attach(Target::Ifindex(ifindex(ifname)?), prog.as_fd(), hook, 0)
        .with_context(|| format!("tcx attach {prog_name} on {ifname}"))
}

/// A raw tracepoint link, a link type the guard never removes: the returned fd keeps it.
pub fn raw_tracepoint_link(tracepoint: &str, prog_name: &str) -> Result<OwnedFd> {
    let prog = progs::load(progs::RAW_TRACEPOINT, prog_name, 0, false)?;
    bpf::raw_tracepoint_open(tracepoint, prog.as_fd())
        .with_context(|| format!("raw tracepoint {prog_name} on {tracepoint}"))
}

/// Programs on and beside Calico's cgroup hooks that are never Calico's: a near-miss name on
/// connect4, systemd's firewall, and Calico's name on a program type it never attached
/// (ownership is by type and name).
pub fn foreign_cgroup(cgroup: &Path) -> Result<()> {
    for (prog_type, name, hook) in [
        (SOCK_ADDR, "caliper_connect", CONNECT4),
        (progs::CGROUP_SKB, "sd_fw_ingress", progs::ATTACH_INGRESS),
        (progs::CGROUP_SKB, "calico_connect_v4", progs::ATTACH_EGRESS),
    ] {
        attach(cgroup, prog_type, name, hook, MULTI, false)?;
    }
    Ok(())
}

/// Pins in or beside Calico's bpffs places that are never its eBPF dataplane's: iptables-mode
/// Calico's XDP prefilter, failsafe ports and sidecar sockops under calico/, another map in a
/// per-interface tc directory, Cilium's program under ctlb/.
pub fn foreign_pins(bpffs: &Path) -> Result<()> {
    for (at, name) in [
        ("calico/xdp/prefilter_v1_eth0", "prefilter_v1_et"),
        ("calico/calico_failsafe_ports_v1", "calico_failsaf"),
        // bpffs refuses dots in names (EPERM): Calico strips them from interface names.
        ("tc/eth1_igr/not_calico", "not_calico"),
    ] {
        pin_map(&bpffs.join(at), name)?;
    }
    pin_prog(
        &bpffs.join("calico/sockmap/calico_sockops"),
        progs::SOCK_OPS,
        "calico_sockops",
        progs::ATTACH_SOCK_OPS,
    )?;
    pin_prog(
        &bpffs.join("ctlb/cil_sock4_conne"),
        SOCK_ADDR,
        "cil_sock4_connect",
        CONNECT4,
    )
}

/// Stale Calico state as a 3.28/3.29 node leaves it, beside other tools' objects: the
/// cgroup and bpffs half.
pub fn calico_host(bpffs: &Path, cgroup: &Path) -> Result<()> {
    // 3.22–3.28.4: the IPv4 programs attached exclusively.
    for (name, hook) in &CTLB[..3] {
        attach(cgroup, SOCK_ADDR, name, *hook, 0, true)?;
    }
    // 3.28.5+: the IPv6 programs as links pinned under ctlb/, beside Cilium on the same hook.
    for (name, hook) in &CTLB[3..] {
        link(
            cgroup,
            SOCK_ADDR,
            name,
            *hook,
            Some(&bpffs.join("ctlb").join(name)),
            true,
        )?;
    }
    attach(
        cgroup,
        SOCK_ADDR,
        "cil_sock6_connect",
        CONNECT6,
        MULTI,
        false,
    )?;
    attach(
        cgroup,
        progs::CGROUP_SKB,
        "sd_fw_ingress",
        progs::ATTACH_INGRESS,
        MULTI,
        false,
    )?;
    attach(
        cgroup,
        progs::CGROUP_SKB,
        "sd_fw_egress",
        progs::ATTACH_EGRESS,
        MULTI,
        false,
    )?;
    // Global maps, a jump-map repin directory and a ≤3.26 per-interface directory.
    for m in ["cali_v4_ct3", "cali_v4_nat_fe3", "xdp_cali_progs3"] {
        pin_map(&bpffs.join("tc/globals").join(m), m)?;
    }
    pin_map(
        &bpffs.join("tc/globals/old_jumps/8f2c1a/cali_jump2"),
        "cali_jump2",
    )?;
    pin_map(&bpffs.join("tc/eth0_igr/cali_jump"), "cali_jump")?;
    // Never Calico's eBPF dataplane: iptables-mode XDP, Cilium's maps.
    pin_map(
        &bpffs.join("calico/xdp/prefilter_v1_eth0"),
        "prefilter_v1_et",
    )?;
    pin_map(&bpffs.join("tc/globals/cilium_calls"), "cilium_calls")?;
    pin_map(&bpffs.join("cilium/cilium_ct4_global"), "cilium_ct4_glob")?;
    Ok(())
}

/// The network half, in the calling thread's namespace: a workload interface with Calico and
/// foreign filters, a data interface with Calico XDP, one with iptables-mode `prefilter` XDP,
/// the bpfin.cali pair and a vxlan.calico device.
pub fn calico_network() -> Result<()> {
    crate::sandbox::run_stdin(
        "ip",
        &["-batch", "-"],
        "link add cali1a2b3c4d type veth peer name wl0\n\
         link add ens-data type veth peer name ens-data-p\n\
         link add ens-pre type veth peer name ens-pre-p\n\
         link add bpfin.cali type veth peer name bpfout.cali\n\
         link add vxlan.calico type vxlan id 4096 dstport 4789\n\
         link set cali1a2b3c4d up\nlink set wl0 up\nlink set ens-data up\nlink set ens-data-p up\n\
         link set ens-pre up\nlink set ens-pre-p up\n",
    )?;
    for dev in ["cali1a2b3c4d", "ens-pre"] {
        clsact(dev)?;
    }
    tc_filter("cali1a2b3c4d", INGRESS, 1, 1, ETH_P_ALL, "cali_tc_preambl")?;
    tc_filter("cali1a2b3c4d", EGRESS, 1, 1, ETH_P_ALL, "cali_tc_preambl")?;
    tc_filter("cali1a2b3c4d", INGRESS, 2, 1, ETH_P_IP, "calico_from_wor")?;
    tc_filter("cali1a2b3c4d", INGRESS, 3, 1, ETH_P_ALL, "cil_from_contai")?;
    tc_filter("cali1a2b3c4d", EGRESS, 3, 1, ETH_P_ALL, "cil_to_containe")?;
    xdp("ens-data", "cali_xdp_preamb", XDP_SKB)?;
    xdp("ens-pre", "prefilter", XDP_SKB)?;
    tc_filter("ens-pre", INGRESS, 1, 1, ETH_P_ALL, "foreign_shaper")?;
    Ok(())
}

/// What `calico_host` plants, as snapshot lines (cgroup lines are for the cgroup it was given).
pub const CALICO_HOST: [&str; 18] = [
    "cgroup . connect4 calico_connect_ exclusive",
    "cgroup . sendmsg4 calico_sendmsg_ exclusive",
    "cgroup . recvmsg4 calico_recvmsg_ exclusive",
    "cgroup . connect6 calico_connect_ multi",
    "cgroup . sendmsg6 calico_sendmsg_ multi",
    "cgroup . recvmsg6 calico_recvmsg_ multi",
    "pin ctlb/calico_connect_v6",
    "pin ctlb/calico_sendmsg_v6",
    "pin ctlb/calico_recvmsg_v6",
    "dir ctlb/",
    "pin tc/globals/cali_v4_ct3",
    "pin tc/globals/cali_v4_nat_fe3",
    "pin tc/globals/xdp_cali_progs3",
    "pin tc/globals/old_jumps/8f2c1a/cali_jump2",
    "dir tc/globals/old_jumps/8f2c1a/",
    "dir tc/globals/old_jumps/",
    "pin tc/eth0_igr/cali_jump",
    "dir tc/eth0_igr/",
];

pub const FOREIGN_HOST: [&str; 11] = [
    "cgroup . connect6 cil_sock6_conne multi",
    "cgroup . ingress sd_fw_ingress multi",
    "cgroup . egress sd_fw_egress multi",
    "pin calico/xdp/prefilter_v1_eth0",
    "dir calico/",
    "dir calico/xdp/",
    "pin tc/globals/cilium_calls",
    "dir tc/",
    "dir tc/globals/",
    "pin cilium/cilium_ct4_global",
    "dir cilium/",
];

/// What `calico_network` plants.
pub const CALICO_NETWORK: [&str; 6] = [
    "tc cali1a2b3c4d ingress pref 1 proto all cali_tc_preambl",
    "tc cali1a2b3c4d egress pref 1 proto all cali_tc_preambl",
    "tc cali1a2b3c4d ingress pref 2 proto ip calico_from_wor",
    "xdp ens-data generic cali_xdp_preamb",
    "dev bpfin.cali veth",
    "dev bpfout.cali veth",
];

pub const FOREIGN_NETWORK: [&str; 11] = [
    "tc cali1a2b3c4d ingress pref 3 proto all cil_from_contai",
    "tc cali1a2b3c4d egress pref 3 proto all cil_to_containe",
    "xdp ens-pre generic prefilter",
    "tc ens-pre ingress pref 1 proto all foreign_shaper",
    "dev vxlan.calico vxlan",
    "dev cali1a2b3c4d veth",
    "dev wl0 veth",
    "dev ens-data veth",
    "dev ens-data-p veth",
    "dev ens-pre veth",
    "dev ens-pre-p veth",
];

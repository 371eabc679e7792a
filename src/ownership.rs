//! Which kernel objects are Calico's eBPF dataplane leftovers: pure rules over plain data, from
//! ../shared/calico-objects.md. Kernel names are cut to 15 characters, so every rule works on
//! the cut name and the program type; BTF full names are only for reports. It never touches
//! the kernel, and what no rule names is never Calico's.

use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use serde::{Deserialize, Serialize};

use crate::kernel::bpf::{PROG_TYPE_CGROUP_SOCK_ADDR, PROG_TYPE_SCHED_CLS, PROG_TYPE_XDP};

/// The kind and kernel name of a program, as ownership needs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgFacts<'a> {
    pub prog_type: u32,
    pub name: &'a str,
}

/// Connect-time load balancer: CGROUP_SOCK_ADDR named `calico_…` (3.22+) or `cali_…` (≤3.21).
pub fn ctlb_program(p: ProgFacts<'_>) -> Option<&'static str> {
    (p.prog_type == PROG_TYPE_CGROUP_SOCK_ADDR
        && (p.name.starts_with("calico_") || p.name.starts_with("cali_")))
    .then_some("CGROUP_SOCK_ADDR program named calico_/cali_: Calico's connect-time load balancer")
}

/// tc, tcx and netkit programs: SCHED_CLS named `cali_…` (3.27+) or `calico_…` (≤3.26).
pub fn tc_program(p: ProgFacts<'_>) -> Option<&'static str> {
    (p.prog_type == PROG_TYPE_SCHED_CLS
        && (p.name.starts_with("cali_") || p.name.starts_with("calico_")))
    .then_some("SCHED_CLS program named cali_/calico_: Calico's eBPF dataplane")
}

/// XDP: exactly Calico's two entry points. The iptables-mode `prefilter` is never matched.
pub fn xdp_program(p: ProgFacts<'_>) -> Option<&'static str> {
    (p.prog_type == PROG_TYPE_XDP && matches!(p.name, "cali_xdp_preamb" | "xdp_calico_entr"))
        .then_some("XDP program cali_xdp_preamb/xdp_calico_entr: Calico's eBPF XDP")
}

/// Any program the rules above own.
pub fn calico_program(p: ProgFacts<'_>) -> bool {
    ctlb_program(p).is_some() || tc_program(p).is_some() || xdp_program(p).is_some()
}

/// eBPF-mode maps: `cali_…` and `xdp_cali_…`. (iptables-mode maps are `calico_…` or
/// `prefilter_…` and do not match.)
pub fn calico_map(name: &str) -> bool {
    name.starts_with("cali_") || name.starts_with("xdp_cali_")
}

/// Calico's eBPF-mode device pair; deleting `bpfin.cali` takes its peer `bpfout.cali` with it.
pub fn device(name: &str, kind: Option<&str>) -> Option<&'static str> {
    (name == "bpfin.cali" && kind == Some("veth"))
        .then_some("veth bpfin.cali: Calico's eBPF-mode host device pair")
}

/// Which families of programs are loaded at all. When none is, the guard needs no cgroup walk
/// and no network scan: an attachment always holds its program, so it would be listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Scope {
    pub cgroups: bool,
    pub tc: bool,
    pub xdp: bool,
}

impl Scope {
    pub fn of<'a>(progs: impl IntoIterator<Item = ProgFacts<'a>>) -> Scope {
        let mut s = Scope::default();
        for p in progs {
            s.cgroups |= ctlb_program(p).is_some();
            s.tc |= tc_program(p).is_some();
            s.xdp |= xdp_program(p).is_some();
        }
        s
    }
}

/// The bpffs places where Calico's families live, relative to a bpffs root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Place {
    /// `ctlb/`, `calico_connect4/`, and the 3.30.1 `calico_*_v6` pins at the root.
    Ctlb,
    /// `tc/globals/` (files only).
    GlobalMaps,
    /// `tc/globals/old_jumps/**`.
    OldJumps,
    /// `tc/<iface>_igr|_egr|_xdp/` and `tc/<40 hex digits>/` (≤3.26).
    IfaceDir,
    /// `tcx/<iface>_<dir>` link pins (3.31+).
    Tcx,
    /// `netkit/<iface>_<hook>` link pins.
    Netkit,
}

/// Directories whose files the inventory lists, with the place they belong to. `tc/`'s
/// per-interface directories are found by `iface_dir`; `old_jumps` is walked recursively.
pub const PIN_DIRS: [(&str, Place); 5] = [
    ("ctlb", Place::Ctlb),
    ("calico_connect4", Place::Ctlb),
    ("tc/globals", Place::GlobalMaps),
    ("tcx", Place::Tcx),
    ("netkit", Place::Netkit),
];
pub const OLD_JUMPS: &str = "tc/globals/old_jumps";
pub const TC_DIR: &str = "tc";
pub const PIN_FILES: [(&str, Place); 3] = [
    ("calico_connect_v6", Place::Ctlb),
    ("calico_sendmsg_v6", Place::Ctlb),
    ("calico_recvmsg_v6", Place::Ctlb),
];

/// A per-interface directory name under `tc/` (Calico ≤3.26): an interface name without dots
/// plus `_igr`, `_egr` or `_xdp`, or a 40-hex-digit object namespace. Interface names are
/// bytes, not always UTF-8, and so is this.
pub fn iface_dir(name: &[u8]) -> bool {
    let hex = name.len() == 40 && name.iter().all(|b| b.is_ascii_hexdigit());
    let iface = [b"_igr", b"_egr", b"_xdp"].iter().any(|suffix| {
        name.strip_suffix(&suffix[..])
            .is_some_and(|base| !base.is_empty() && !base.contains(&b'.'))
    });
    hex || iface
}

/// A directory that is Calico's alone, removed once the sweep emptied it. `tc/`, `tc/globals/`,
/// `tcx/` and `netkit/` are shared with other tools and stay.
pub fn removable_dir(rel: &Path) -> bool {
    let parts: Vec<&[u8]> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.as_bytes()),
            _ => None,
        })
        .collect();
    match parts.as_slice() {
        [b"ctlb"] | [b"calico_connect4"] => true,
        [b"tc", b"globals", b"old_jumps", ..] => true,
        [b"tc", name] => *name != b"globals" && iface_dir(name),
        _ => false,
    }
}

/// What a pin refers to, as ownership needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinnedFacts<'a> {
    Prog(ProgFacts<'a>),
    Map {
        name: &'a str,
    },
    /// A link and, when still loaded, its program.
    Link(Option<ProgFacts<'a>>),
    /// Could not be opened or is not a bpf object.
    Unknown,
}

/// Is this pin Calico's? `dir_is_calico` is for `IfaceDir`: whether its directory holds a
/// `cali_jump…`/`cali_counters…` map (see `iface_dir_marker`).
pub fn pin(place: Place, obj: PinnedFacts<'_>, dir_is_calico: bool) -> Option<&'static str> {
    use PinnedFacts::*;
    match (place, obj) {
        (Place::Ctlb, Prog(p) | Link(Some(p))) => ctlb_program(p)
            .map(|_| "pinned in Calico's CTLB directory, and its program is Calico's connect-time load balancer"),
        (Place::GlobalMaps, Map { name }) => calico_map(name)
            .then_some("map in tc/globals named cali_/xdp_cali_: Calico's eBPF-mode global map"),
        // Only a BPF object: a file that is not one is nobody's to remove, wherever it is.
        (Place::OldJumps, Prog(_) | Map { .. } | Link(_)) => {
            Some("under tc/globals/old_jumps/: Calico's jump-map repin directory")
        }
        (Place::IfaceDir, Map { name }) if dir_is_calico && calico_map(name) => {
            Some("in a per-interface tc directory holding Calico's jump maps (Calico ≤3.26)")
        }
        (Place::IfaceDir, Prog(p)) if dir_is_calico && calico_program(p) => {
            Some("in a per-interface tc directory holding Calico's jump maps (Calico ≤3.26)")
        }
        (Place::Tcx | Place::Netkit, Link(Some(p)) | Prog(p)) => tc_program(p)
            .map(|_| "tcx/netkit link pin whose program is Calico's"),
        _ => None,
    }
}

/// The map names that mark a per-interface directory as Calico's.
pub fn iface_dir_marker(map_name: &str) -> bool {
    map_name.starts_with("cali_jump") || map_name.starts_with("cali_counters")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::bpf::PROG_TYPE_SCHED_CLS as CLS;
    const SA: u32 = PROG_TYPE_CGROUP_SOCK_ADDR;
    const XDP: u32 = PROG_TYPE_XDP;
    const SOCK_OPS: u32 = libbpf_rs::libbpf_sys::BPF_PROG_TYPE_SOCK_OPS;
    const CGROUP_SKB: u32 = libbpf_rs::libbpf_sys::BPF_PROG_TYPE_CGROUP_SKB;
    const CGROUP_DEVICE: u32 = libbpf_rs::libbpf_sys::BPF_PROG_TYPE_CGROUP_DEVICE;

    fn f(prog_type: u32, name: &str) -> ProgFacts<'_> {
        ProgFacts { prog_type, name }
    }

    #[test]
    fn programs() {
        // (type, 15-char kernel name, ctlb, tc, xdp)
        let cases: &[(u32, &str, bool, bool, bool)] = &[
            (SA, "calico_connect_", true, false, false),
            (SA, "calico_sendmsg_", true, false, false),
            (SA, "calico_recvmsg_", true, false, false),
            (SA, "cali_ctlb_v4", true, false, false),
            (SA, "cali_ctlb_sendm", true, false, false),
            (SA, "cali_ctlb_recvm", true, false, false),
            (SA, "cali_noop_v4", true, false, false),
            (SA, "caliper_connect", false, false, false),
            (SA, "calico", false, false, false),
            (SA, "cil_sock4_conne", false, false, false),
            (SA, "Calico_connect_", false, false, false),
            (SA, "", false, false, false),
            (CGROUP_SKB, "sd_fw_ingress", false, false, false),
            (CGROUP_SKB, "sd_fw_egress", false, false, false),
            (CGROUP_DEVICE, "sd_devices", false, false, false),
            (CGROUP_SKB, "calico_connect_", false, false, false),
            (SOCK_OPS, "calico_sockops", false, false, false),
            (CLS, "cali_tc_preambl", false, true, false),
            (CLS, "calico_from_hos", false, true, false),
            (CLS, "calico_to_workl", false, true, false),
            (CLS, "cil_from_contai", false, false, false),
            (CLS, "calico", false, false, false),
            (CLS, "calicoctl", false, false, false),
            (XDP, "cali_xdp_preamb", false, false, true),
            (XDP, "xdp_calico_entr", false, false, true),
            (XDP, "prefilter", false, false, false),
            (XDP, "cali_xdp_other", false, false, false),
            (XDP, "xdp_calico_entry", false, false, false),
            (CLS, "cali_xdp_preamb", false, true, false),
        ];
        for &(t, name, ctlb, tc, xdp) in cases {
            let p = f(t, name);
            assert_eq!(ctlb_program(p).is_some(), ctlb, "ctlb {t} {name}");
            assert_eq!(tc_program(p).is_some(), tc, "tc {t} {name}");
            assert_eq!(xdp_program(p).is_some(), xdp, "xdp {t} {name}");
            assert_eq!(calico_program(p), ctlb || tc || xdp, "any {t} {name}");
        }
    }

    #[test]
    fn maps_and_devices() {
        for (name, calico) in [
            ("cali_v4_ct3", true),
            ("cali_ctlb_progs", true),
            ("xdp_cali_progs3", true),
            ("cali_jump2", true),
            ("calico_failsaf", false),
            ("prefilter_v1_et", false),
            ("cilium_ct4_glob", false),
            ("caliper", false),
        ] {
            assert_eq!(calico_map(name), calico, "{name}");
        }
        let devs: &[(&str, Option<&str>, bool)] = &[
            ("bpfin.cali", Some("veth"), true),
            ("bpfin.cali", Some("dummy"), false),
            ("bpfout.cali", Some("veth"), false),
            ("vxlan.calico", Some("vxlan"), false),
            ("vxlan-v6.calico", Some("vxlan"), false),
            ("tunl0", Some("ipip"), false),
            ("wireguard.cali", Some("wireguard"), false),
            ("cali1234", Some("veth"), false),
        ];
        for &(name, kind, calico) in devs {
            assert_eq!(device(name, kind).is_some(), calico, "{name}");
        }
    }

    #[test]
    fn dirs() {
        for (name, want) in [
            ("eth0_igr", true),
            ("eth0_egr", true),
            ("cali12345_xdp", true),
            ("vxlan.calico_igr", false),
            ("_igr", false),
            ("globals", false),
            ("0123456789abcdef0123456789abcdef01234567", true),
            ("0123456789abcdef0123456789abcdef0123456", false),
            ("0123456789abcdef0123456789abcdef0123456g", false),
            ("cilium", false),
        ] {
            assert_eq!(iface_dir(name.as_bytes()), want, "{name}");
        }
        // Interface names are bytes: a name that is not UTF-8 is still an interface's.
        assert!(iface_dir(b"eth\xff0_igr"));
        assert!(removable_dir(Path::new(std::ffi::OsStr::from_bytes(
            b"tc/eth\xff0_igr"
        ))));
        for (rel, want) in [
            ("ctlb", true),
            ("calico_connect4", true),
            ("tc/globals/old_jumps", true),
            ("tc/globals/old_jumps/abc", true),
            ("tc/eth0_igr", true),
            ("tc/globals", false),
            ("tc", false),
            ("tcx", false),
            ("calico", false),
            ("calico/xdp", false),
            ("tc/eth0_igr/x", false),
        ] {
            assert_eq!(removable_dir(Path::new(rel)), want, "{rel}");
        }
    }

    #[test]
    fn pins() {
        use PinnedFacts::*;
        let ctlb = f(SA, "calico_connect_");
        let foreign = f(SA, "cil_sock4_conne");
        let tc = f(CLS, "cali_tc_preambl");
        // (place, object, dir_is_calico, owned)
        let cases: &[(Place, PinnedFacts, bool, bool)] = &[
            (Place::Ctlb, Link(Some(ctlb)), false, true),
            (Place::Ctlb, Prog(ctlb), false, true),
            (Place::Ctlb, Link(Some(foreign)), false, false),
            (Place::Ctlb, Link(None), false, false),
            (
                Place::Ctlb,
                Map {
                    name: "cali_ctlb_progs",
                },
                false,
                false,
            ),
            (Place::Ctlb, Unknown, false, false),
            (
                Place::GlobalMaps,
                Map {
                    name: "cali_v4_ct3",
                },
                false,
                true,
            ),
            (
                Place::GlobalMaps,
                Map {
                    name: "xdp_cali_progs3",
                },
                false,
                true,
            ),
            (
                Place::GlobalMaps,
                Map {
                    name: "cilium_calls",
                },
                false,
                false,
            ),
            (Place::GlobalMaps, Prog(tc), false, false),
            (Place::OldJumps, Map { name: "anything" }, false, true),
            (Place::OldJumps, Unknown, false, false),
            (Place::IfaceDir, Map { name: "cali_jump" }, true, true),
            (Place::IfaceDir, Map { name: "cali_jump" }, false, false),
            (Place::IfaceDir, Map { name: "other" }, true, false),
            (Place::IfaceDir, Prog(tc), true, true),
            (Place::Tcx, Link(Some(tc)), false, true),
            (
                Place::Tcx,
                Link(Some(f(CLS, "cil_from_netdev"))),
                false,
                false,
            ),
            (Place::Netkit, Link(Some(tc)), false, true),
            (
                Place::Tcx,
                Map {
                    name: "cali_v4_ct3",
                },
                false,
                false,
            ),
        ];
        for (i, &(place, obj, dir, want)) in cases.iter().enumerate() {
            assert_eq!(
                pin(place, obj, dir).is_some(),
                want,
                "case {i}: {place:?} {obj:?}"
            );
        }
    }

    #[test]
    fn scope_only_where_programs_exist() {
        let none = Scope::of([f(CGROUP_SKB, "sd_fw_ingress"), f(XDP, "prefilter")]);
        assert_eq!(none, Scope::default());
        let all = Scope::of([
            f(SA, "calico_connect_"),
            f(CLS, "cali_tc_preambl"),
            f(XDP, "cali_xdp_preamb"),
        ]);
        assert_eq!(
            all,
            Scope {
                cgroups: true,
                tc: true,
                xdp: true
            }
        );
    }
}

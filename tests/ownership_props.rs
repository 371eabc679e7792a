//! Property tests of the ownership rules against an oracle that does not restate them: the
//! names Calico's own sources give their objects (../shared/calico-objects.md, "Names seen in
//! Calico's own objects", and the ≤3.21 connect-time names of its table), and names that must
//! never be Calico's (systemd, Cilium, iptables-mode Calico). A rule that misses a Calico name,
//! or reaches past Calico's names into another tool's or into a near miss, fails here; and the
//! plan built from a random node of both removes exactly the Calico objects. The two file
//! parsers never panic, whatever text they get.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use calico_bpf_guard::config;
use calico_bpf_guard::inventory::{CgroupAttachment, Inventory, Located, Pin, PinnedObject};
use calico_bpf_guard::kernel::bpf::{self, MapInfo, ProgInfo};
use calico_bpf_guard::kernel::netlink::{Filter, NetIf, XdpMode, PARENT_INGRESS};
use calico_bpf_guard::kernel::tree::FileId;
use calico_bpf_guard::ownership::{self, Place, ProgFacts};
use calico_bpf_guard::plan::{self, Action};
use modefile as mode;
use proptest::prelude::*;

/// Kernel UAPI numbers (include/uapi/linux/bpf.h), written out so the oracle does not borrow
/// the crate's constants.
const SCHED_CLS: u32 = 3;
const XDP: u32 = 6;
const CGROUP_SKB: u32 = 8;
const SOCK_OPS: u32 = 13;
const CGROUP_DEVICE: u32 = 15;
const CGROUP_SOCK_ADDR: u32 = 18;

/// Which rule should own a program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Ctlb,
    Tc,
    Xdp,
}

/// What Calico's sources name their objects, full (BTF) names or, where only those are known,
/// the kernel's 15 characters.
mod calico {
    use super::*;

    /// Programs attached where the guard looks: the connect-time load balancer (3.22+, and
    /// ≤3.21), tc/tcx programs (3.27+ and 3.26), and the two XDP entry points. XDP programs held
    /// only by program arrays (`calico_xdp_main`, …) are never attached, so not listed.
    pub const PROGRAMS: &[(u32, &str, Family)] = &[
        (CGROUP_SOCK_ADDR, "calico_connect_v4", Family::Ctlb),
        (CGROUP_SOCK_ADDR, "calico_connect_v6", Family::Ctlb),
        (CGROUP_SOCK_ADDR, "calico_connect_v46", Family::Ctlb),
        (CGROUP_SOCK_ADDR, "calico_sendmsg_v4", Family::Ctlb),
        (CGROUP_SOCK_ADDR, "calico_sendmsg_v6", Family::Ctlb),
        (CGROUP_SOCK_ADDR, "calico_sendmsg_v46", Family::Ctlb),
        (CGROUP_SOCK_ADDR, "calico_recvmsg_v4", Family::Ctlb),
        (CGROUP_SOCK_ADDR, "calico_recvmsg_v6", Family::Ctlb),
        (CGROUP_SOCK_ADDR, "calico_recvmsg_v46", Family::Ctlb),
        (CGROUP_SOCK_ADDR, "cali_ctlb_v4", Family::Ctlb),
        (CGROUP_SOCK_ADDR, "cali_ctlb_sendmsg", Family::Ctlb),
        (CGROUP_SOCK_ADDR, "cali_ctlb_recvmsg", Family::Ctlb),
        (CGROUP_SOCK_ADDR, "cali_noop_v4", Family::Ctlb),
        (SCHED_CLS, "cali_tc_preamble", Family::Tc),
        (SCHED_CLS, "calico_tc_main", Family::Tc),
        (SCHED_CLS, "calico_tc_allow", Family::Tc),
        (SCHED_CLS, "calico_tc_norm_pol_tail", Family::Tc),
        (SCHED_CLS, "calico_tc_skb_accepted_entrypoint", Family::Tc),
        (SCHED_CLS, "calico_tc_skb_drop", Family::Tc),
        (SCHED_CLS, "calico_tc_skb_icmp_inner_nat", Family::Tc),
        (SCHED_CLS, "calico_tc_skb_new_flow_entrypoint", Family::Tc),
        (SCHED_CLS, "calico_tc_skb_send_icmp_replies", Family::Tc),
        (SCHED_CLS, "calico_tc_skb_send_tcp_rst", Family::Tc),
        (SCHED_CLS, "calico_from_workload_ep", Family::Tc),
        (SCHED_CLS, "calico_to_workload_ep", Family::Tc),
        (SCHED_CLS, "calico_from_hos", Family::Tc),
        (SCHED_CLS, "calico_to_host_", Family::Tc),
        (XDP, "cali_xdp_preamble", Family::Xdp),
        (XDP, "xdp_calico_entry", Family::Xdp),
    ];

    /// Maps pinned in `tc/globals/` (and, ≤3.26, the per-interface `cali_jump3`).
    pub fn maps() -> Vec<String> {
        let v4 = [
            "ct3", "ct4", "nat_fe3", "nat_be", "nat_aff", "routes", "arp2", "fsafes2", "ip_sets",
            "srmsg", "ct_nats", "frags3", "frgfwd4", "frgtmp3", "mglv2", "sprefix",
        ];
        let other = [
            "cali_state2",
            "cali_state6",
            "cali_iface2",
            "cali_iface4",
            "cali_counters2",
            "cali_counters6",
            "cali_rule_ctrs2",
            "cali_profiling2",
            "cali_qos2",
            "cali_qos_conn",
            "cali_rb_drops",
            "cali_rb_evnt",
            "cali_ctlb_conn",
            "cali_ctlb_send",
            "cali_ctlb_recv",
            "cali_jump_ing2",
            "cali_jump_egr2",
            "cali_progs_ing2",
            "cali_progs_egr2",
            "xdp_cali_jump3",
            "xdp_cali_progs3",
            "cali_jump3",
        ];
        v4.iter()
            .flat_map(|m| [format!("cali_v4_{m}"), format!("cali_v6_{m}")])
            .chain(other.iter().map(|m| m.to_string()))
            .collect()
    }

    pub const DEVICE: (&str, &str) = ("bpfin.cali", "veth");
}

/// What must never be Calico's eBPF dataplane, each with the type it really has.
mod foreign {
    use super::*;

    pub const PROGRAMS: &[(u32, &str)] = &[
        // systemd
        (CGROUP_SKB, "sd_fw_ingress"),
        (CGROUP_SKB, "sd_fw_egress"),
        (CGROUP_DEVICE, "sd_devices"),
        // Cilium, on the same hooks as Calico
        (CGROUP_SOCK_ADDR, "cil_sock4_connect"),
        (CGROUP_SOCK_ADDR, "cil_sock6_connect"),
        (CGROUP_SOCK_ADDR, "cil_sock4_sendmsg"),
        (CGROUP_SOCK_ADDR, "cil_sock6_recvmsg"),
        (SCHED_CLS, "cil_from_container"),
        (SCHED_CLS, "cil_to_container"),
        (SCHED_CLS, "cil_from_netdev"),
        (SCHED_CLS, "cil_to_host"),
        (XDP, "cil_xdp_entry"),
        // Calico's iptables mode: valid with eBPF off
        (XDP, "prefilter"),
        (SOCK_OPS, "calico_sockops"),
        // A Calico name on a type Calico's connect-time balancer never has, and a near miss
        (CGROUP_SKB, "calico_connect_v4"),
        (CGROUP_SOCK_ADDR, "caliper_connect"),
    ];

    pub const MAPS: &[&str] = &[
        "prefilter_v1_eth0",
        "calico_failsafe_ports_v1",
        "calico_sock_map",
        "cilium_calls",
        "cilium_ct4_global",
        "cilium_lxc",
    ];

    /// iptables-mode Calico's pins (`<bpffs>/calico/`) and the kernel's preload iterators.
    pub const PATHS: &[&str] = &[
        "calico/xdp/prefilter_v1_eth0",
        "calico/calico_failsafe_ports_v1",
        "calico/sockmap/calico_sock_map",
        "calico/sockmap/calico_sockops",
        "maps.debug",
        "progs.debug",
    ];

    pub const DEVICES: &[(&str, &str)] = &[
        ("bpfout.cali", "veth"),
        ("vxlan.calico", "vxlan"),
        ("vxlan-v6.calico", "vxlan"),
        ("tunl0", "ipip"),
        ("wireguard.cali", "wireguard"),
        ("cali1234", "veth"),
        ("bpfin.cali", "dummy"),
    ];
}

/// What the kernel keeps of a name: 15 bytes (BPF_OBJ_NAME_LEN 16 with the NUL).
fn kernel_name(full: &str) -> String {
    full.chars().take(15).collect()
}

/// Which rule owns a program, if any.
fn owner(prog_type: u32, name: &str) -> Vec<Family> {
    let p = ProgFacts { prog_type, name };
    let mut v = Vec::new();
    if ownership::ctlb_program(p).is_some() {
        v.push(Family::Ctlb);
    }
    if ownership::tc_program(p).is_some() {
        v.push(Family::Tc);
    }
    if ownership::xdp_program(p).is_some() {
        v.push(Family::Xdp);
    }
    v
}

#[test]
fn every_calico_program_is_owned_by_its_family_alone() {
    for &(t, full, family) in calico::PROGRAMS {
        let cut = kernel_name(full);
        assert_eq!(owner(t, &cut), [family], "{full} (kernel name {cut})");
        let p = ProgFacts {
            prog_type: t,
            name: &cut,
        };
        assert!(ownership::calico_program(p), "{full}");
    }
}

#[test]
fn no_foreign_program_is_owned() {
    for &(t, full) in foreign::PROGRAMS {
        let cut = kernel_name(full);
        assert_eq!(owner(t, &cut), [], "{full} of type {t}");
        assert!(!ownership::calico_program(ProgFacts {
            prog_type: t,
            name: &cut
        }));
    }
}

#[test]
fn maps_calico_names_and_no_other() {
    for m in calico::maps() {
        assert!(ownership::calico_map(&kernel_name(&m)), "{m}");
    }
    for m in foreign::MAPS {
        assert!(!ownership::calico_map(&kernel_name(m)), "{m}");
    }
}

#[test]
fn devices() {
    let (name, kind) = calico::DEVICE;
    assert!(ownership::device(name, Some(kind)).is_some());
    for &(name, kind) in foreign::DEVICES {
        assert!(
            ownership::device(name, Some(kind)).is_none(),
            "{name} {kind}"
        );
    }
}

/// Calico's places cover where its sources pin; nothing of iptables-mode Calico's
/// `<bpffs>/calico/`, or the preload iterators, lies in one.
#[test]
fn places() {
    let listed = |rel: &str| {
        let parent = Path::new(rel).parent().unwrap_or(Path::new(""));
        ownership::PIN_DIRS
            .iter()
            .any(|(d, _)| Path::new(d) == parent)
            || ownership::PIN_FILES.iter().any(|(f, _)| *f == rel)
            || Path::new(rel).starts_with(ownership::OLD_JUMPS)
            || (parent.parent() == Some(Path::new(ownership::TC_DIR))
                && parent
                    .file_name()
                    .is_some_and(|d| ownership::iface_dir(d.as_encoded_bytes())))
    };
    let calico = [
        "ctlb/calico_connect_v4",
        "calico_connect4/cali_ctlb_v4",
        "calico_sendmsg_v6",
        "tc/globals/cali_v4_ct3",
        "tc/globals/old_jumps/17/cali_jump3",
        "tc/eth0_igr/cali_jump3",
        "tc/0123456789abcdef0123456789abcdef01234567/cali_jump3",
        "tcx/eth0_ingress",
        "netkit/nk0_primary",
    ];
    for rel in calico {
        assert!(listed(rel), "{rel}");
    }
    for rel in foreign::PATHS {
        assert!(!listed(rel), "{rel}");
        let mut dir = Path::new(rel).parent();
        while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty()) {
            assert!(!ownership::removable_dir(d), "{}", d.display());
            dir = d.parent();
        }
    }
}

/// A Calico name mangled at its head: upper-cased, prefixed, or with its first underscore
/// changed or dropped. Calico's sources never make one, so no rule may own it.
fn near_miss() -> impl Strategy<Value = (u32, String)> {
    let names: Vec<(u32, String)> = calico::PROGRAMS
        .iter()
        .map(|&(t, n, _)| (t, n.to_string()))
        .chain(calico::maps().into_iter().map(|m| (0, m)))
        .collect();
    (
        prop::sample::select(names),
        0u8..4,
        "[a-z0-9_]",
        prop::sample::select(vec!["-", ".", ""]),
    )
        .prop_map(|((t, name), how, pre, sep)| {
            let mangled = match how {
                0 => name[..1].to_uppercase() + &name[1..],
                1 => format!("{pre}{name}"),
                _ => name.replacen('_', sep, 1),
            };
            (t, mangled)
        })
}

/// Any program type but the three Calico's attached programs have.
fn other_type() -> impl Strategy<Value = u32> {
    any::<u32>().prop_filter("not Calico's", |t| {
        ![SCHED_CLS, XDP, CGROUP_SOCK_ADDR].contains(t)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn near_misses_of_calico_names_are_never_owned((t, name) in near_miss()) {
        let cut = kernel_name(&name);
        if t == 0 {
            prop_assert!(!ownership::calico_map(&cut), "map {}", cut);
        } else {
            prop_assert_eq!(owner(t, &cut), Vec::<Family>::new(), "{} of type {}", cut, t);
        }
    }

    /// A Calico name on a type no Calico program attached where the guard looks has.
    #[test]
    fn calico_names_on_other_types_are_never_owned(
        t in other_type(),
        i in 0..calico::PROGRAMS.len(),
    ) {
        let cut = kernel_name(calico::PROGRAMS[i].1);
        prop_assert_eq!(owner(t, &cut), Vec::<Family>::new(), "{} of type {}", cut, t);
    }

    /// Interface names are bytes: only the exact bytes of `bpfin.cali` are Calico's device.
    #[test]
    fn devices_are_exact_bytes(
        name in prop_oneof![
            prop::collection::vec(any::<u8>(), 1..16),
            (0usize..10, any::<u8>()).prop_map(|(at, b)| {
                let mut n = calico::DEVICE.0.as_bytes().to_vec();
                n.insert(at, b);
                n
            }),
        ],
    ) {
        let nif = NetIf {
            ifindex: 2,
            name: std::os::unix::ffi::OsStringExt::from_vec(name.clone()),
            kind: Some("veth".into()),
            xdp: Vec::new(),
            accept_local: false,
        };
        prop_assert_eq!(plan::calico_device(&nif).is_some(), name == calico::DEVICE.0.as_bytes());
    }
}

proptest! {
    // Each case is a whole node of up to 24 programs.
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// What matters in the end is the plan: on a random node holding Calico's and other tools'
    /// programs where their types attach (cgroup hooks, tc filters, XDP), devices and global
    /// map pins, the plan removes exactly Calico's, by the names its sources use.
    #[test]
    fn plan_removes_exactly_calicos_objects(node in node()) {
        let (inv, want) = node;
        let steps = plan::build(&inv, &BTreeMap::new());
        let mut got = BTreeSet::new();
        for s in &steps {
            let key = match &s.action {
                Action::DetachCgroup { prog_id, .. } => format!("prog {prog_id}"),
                Action::DeleteFilter { filter } => format!("prog {}", filter.prog_id.unwrap_or(0)),
                Action::DetachXdp { prog_id, .. } => format!("prog {prog_id}"),
                Action::DeleteDevice { name } => format!("dev {}", name.to_string_lossy()),
                Action::Unpin { at, .. } => format!("pin {}", at.path().display()),
                other => return Err(TestCaseError::fail(format!("unexpected step {other:?}"))),
            };
            prop_assert!(got.insert(key.clone()), "planned twice: {}", key);
        }
        prop_assert_eq!(got, want);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn config_parse_never_panics(text in toml_like()) {
        let file = Path::new("/etc/calico-bpf-guard/config.toml");
        if let Err(e) = config::parse(file, &text) {
            prop_assert!(e.to_string().starts_with("/etc/calico-bpf-guard/config.toml: "));
        }
    }

    #[test]
    fn mode_parse_never_panics_and_round_trips(text in toml_like()) {
        let file = Path::new("/var/lib/calico-bpf-guard/mode.toml");
        match mode::parse(file, &text) {
            Ok(m) => prop_assert_eq!(mode::parse(file, &mode::render(&m)).ok(), Some(m)),
            Err(e) => prop_assert!(e.to_string().starts_with("/var/lib/calico-bpf-guard/mode.toml: ")),
        }
    }

    #[test]
    fn mode_render_round_trips_any_source(
        which in 0usize..mode::Dataplane::ALL.len(),
        source in prop::option::of(any::<String>()),
    ) {
        let dataplane = mode::Dataplane::ALL[which];
        let m = mode::Mode { dataplane, source, updated: Some("2026-11-25T10:00:00Z".into()) };
        prop_assert_eq!(mode::parse(Path::new("/m.toml"), &mode::render(&m)).ok(), Some(m));
    }
}

/// Arbitrary text, and text built from the files' own keys and values so the parsers get past
/// the first line: keys, values of every TOML type, stray brackets, quotes and escapes.
fn toml_like() -> impl Strategy<Value = String> {
    let key = prop::sample::select(vec![
        "mode_file",
        "on_missing_mode",
        "bpffs_roots",
        "cgroup2_roots",
        "lock_file",
        "log",
        "dataplane",
        "source",
        "updated",
        "\"dataplane\"",
        "bogus",
        "[section]",
        "",
    ]);
    let value = prop_oneof![
        prop::sample::select(vec![
            "\"bpf\"",
            "\"IPTABLES\"",
            "\"skip\"",
            "\"sweep\"",
            "\"syslog\"",
            "[\"/sys/fs/bpf\"]",
            "[]",
            "\"/abs\"",
            "\"rel\"",
            "2026-11-25T10:00:00Z",
            "2026-11-25",
            "10:00:00",
            "1979-05-27T00:32:00.999999-07:00",
            "1",
            "true",
            "{ a = 1 }",
            "\"\"\"x\ny\"\"\"",
            "'lit'",
            "\"\\u00e9\\U0001F600\"",
            "\"\\uD800\"",
            "\"",
            "[",
        ])
        .prop_map(String::from),
        "[ -~]{0,12}",
        any::<String>(),
    ];
    let line = (key, " ?= ?", value).prop_map(|(k, eq, v)| format!("{k}{eq}{v}"));
    prop_oneof![
        1 => any::<String>(),
        3 => prop::collection::vec(line, 0..6).prop_map(|lines| lines.join("\n")),
    ]
}

/// A random node and, from the tables alone, the objects a sweep must remove from it.
fn node() -> impl Strategy<Value = (Inventory, BTreeSet<String>)> {
    let prog = prop_oneof![
        (0..calico::PROGRAMS.len()).prop_map(|i| {
            let (t, n, _) = calico::PROGRAMS[i];
            (t, n, true)
        }),
        (0..foreign::PROGRAMS.len()).prop_map(|i| {
            let (t, n) = foreign::PROGRAMS[i];
            (t, n, false)
        }),
    ];
    let progs = prop::collection::vec(prog, 0..24);
    let devs = prop::sample::subsequence(
        std::iter::once(calico::DEVICE)
            .chain(foreign::DEVICES.iter().copied())
            .collect::<Vec<_>>(),
        0..4,
    );
    let maps = prop::collection::vec(
        prop_oneof![
            prop::sample::select(calico::maps()).prop_map(|m| (m, true)),
            prop::sample::select(foreign::MAPS.to_vec()).prop_map(|m| (m.to_string(), false)),
        ],
        0..8,
    );
    (progs, devs, maps).prop_map(|(progs, devs, maps)| {
        let mut inv = Inventory::default();
        let mut want = BTreeSet::new();
        let mut xdp = Vec::new();
        for (i, (prog_type, full, calico)) in progs.into_iter().enumerate() {
            let id = 100 + i as u32;
            let name = kernel_name(full);
            inv.programs.insert(
                id,
                ProgInfo {
                    id,
                    prog_type,
                    name,
                },
            );
            if calico {
                want.insert(format!("prog {id}"));
            }
            match prog_type {
                SCHED_CLS => inv.filters.push(Filter {
                    ifindex: 2,
                    parent: PARENT_INGRESS,
                    handle: 1,
                    info: (id << 16) | 0x0300,
                    chain: 0,
                    kind: "bpf".into(),
                    prog_id: Some(id),
                }),
                XDP => xdp.push((XdpMode::Generic, id)),
                // Every other type on a cgroup hook, as if the kernel listed it there.
                _ => inv.cgroups.push(CgroupAttachment {
                    root: PathBuf::from("/sys/fs/cgroup"),
                    cgroup: PathBuf::from("/sys/fs/cgroup"),
                    cgroup_id: 1,
                    attach_type: bpf::ATTACH_INET4_CONNECT,
                    prog_id: id,
                    slot_flags: bpf::F_ALLOW_MULTI,
                }),
            }
        }
        inv.netifs.push(NetIf {
            ifindex: 2,
            name: "eth0".into(),
            kind: None,
            xdp,
            accept_local: false,
        });
        for (i, (name, kind)) in devs.into_iter().enumerate() {
            if (name, kind) == calico::DEVICE {
                want.insert(format!("dev {name}"));
            }
            inv.netifs.push(NetIf {
                ifindex: 10 + i as u32,
                name: name.into(),
                kind: Some(kind.into()),
                xdp: Vec::new(),
                accept_local: false,
            });
        }
        for (i, (name, calico)) in maps.into_iter().enumerate() {
            let rel = PathBuf::from(format!("tc/globals/m{i}"));
            if calico {
                want.insert(format!("pin /sys/fs/bpf/{}", rel.display()));
            }
            inv.pins.push(Pin {
                at: Located {
                    root: "/sys/fs/bpf".into(),
                    rel,
                    id: FileId::default(),
                },
                place: Place::GlobalMaps,
                object: PinnedObject::Map(MapInfo {
                    id: 1000 + i as u32,
                    name: kernel_name(&name),
                }),
            });
        }
        (inv, want)
    })
}

/// The oracle's type numbers are the kernel's, as the crate knows them.
#[test]
fn oracle_uses_the_kernel_numbers() {
    assert_eq!(SCHED_CLS, bpf::PROG_TYPE_SCHED_CLS);
    assert_eq!(XDP, bpf::PROG_TYPE_XDP);
    assert_eq!(CGROUP_SOCK_ADDR, bpf::PROG_TYPE_CGROUP_SOCK_ADDR);
    assert_eq!(CGROUP_SKB, libbpf_rs::libbpf_sys::BPF_PROG_TYPE_CGROUP_SKB);
    assert_eq!(SOCK_OPS, libbpf_rs::libbpf_sys::BPF_PROG_TYPE_SOCK_OPS);
    assert_eq!(
        CGROUP_DEVICE,
        libbpf_rs::libbpf_sys::BPF_PROG_TYPE_CGROUP_DEVICE
    );
}

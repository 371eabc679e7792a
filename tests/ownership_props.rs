//! Property tests: random program, map and device names are Calico's only when the ownership
//! rules in calico-objects.md say so, both in the rule functions and in the plan built from a
//! random inventory; and the two file parsers never panic, whatever text they get.
//!
//! The oracle below restates the rules from calico-objects.md without calling the crate, so a
//! change to the crate's rules that the document does not make fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use calico_bpf_guard::inventory::{CgroupAttachment, Inventory, Located, Pin, PinnedObject};
use calico_bpf_guard::kernel::bpf::{self, MapInfo, ProgInfo};
use calico_bpf_guard::kernel::netlink::{Filter, NetIf, XdpMode, PARENT_INGRESS};
use calico_bpf_guard::kernel::tree::FileId;
use calico_bpf_guard::ownership::{self, Place, ProgFacts, Scope};
use calico_bpf_guard::plan::{self, Action};
use calico_bpf_guard::{config, mode};
use proptest::prelude::*;

/// Kernel UAPI numbers (include/uapi/linux/bpf.h), written out so the oracle does not borrow
/// the crate's constants.
const SCHED_CLS: u32 = 3;
const XDP: u32 = 6;
const CGROUP_SOCK_ADDR: u32 = 18;

mod oracle {
    use super::*;

    pub fn ctlb(prog_type: u32, name: &str) -> bool {
        prog_type == CGROUP_SOCK_ADDR && (name.starts_with("calico_") || name.starts_with("cali_"))
    }

    pub fn tc(prog_type: u32, name: &str) -> bool {
        prog_type == SCHED_CLS && (name.starts_with("cali_") || name.starts_with("calico_"))
    }

    pub fn xdp(prog_type: u32, name: &str) -> bool {
        prog_type == XDP && (name == "cali_xdp_preamb" || name == "xdp_calico_entr")
    }

    pub fn map(name: &str) -> bool {
        name.starts_with("cali_") || name.starts_with("xdp_cali_")
    }

    pub fn device(name: &[u8], kind: Option<&str>) -> bool {
        name == b"bpfin.cali" && kind == Some("veth")
    }
}

/// What the kernel keeps of a name: 15 bytes (BPF_OBJ_NAME_LEN 16 with the NUL).
fn kernel_name(full: &str) -> String {
    full.chars().take(15).collect()
}

/// Program types: the three that matter, their neighbours, every other known type, and noise.
fn prog_type() -> impl Strategy<Value = u32> {
    prop_oneof![
        4 => prop::sample::select(vec![SCHED_CLS, XDP, CGROUP_SOCK_ADDR]),
        4 => 0u32..=40,
        1 => any::<u32>(),
    ]
}

/// Names that sit on the rules' edges: every prefix the rules use, near misses (case, a
/// missing underscore, a shared stem), other tools' prefixes, followed by characters the
/// kernel allows in names. Full length, as a loader would pass it; truncation is separate.
fn full_name() -> impl Strategy<Value = String> {
    let stems = prop::sample::select(vec![
        "calico_",
        "cali_",
        "xdp_cali_",
        "cali_xdp_preamb",
        "xdp_calico_entr",
        "calico_connect_",
        "cali_tc_preambl",
        "cali",
        "calico",
        "Calico_",
        "CALI_",
        "cali-",
        "calico-",
        "caliper_",
        "xcali_",
        "_cali_",
        "xdp_calico_",
        "cali_xdp_",
        "cil_",
        "sd_fw_",
        "prefilter",
        "calico_sockops",
        "",
    ]);
    (stems, "[A-Za-z0-9_.]{0,20}").prop_map(|(stem, tail)| format!("{stem}{tail}"))
}

/// Any name the rule functions could see: kernel-shaped names and arbitrary Unicode.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => full_name().prop_map(|n| kernel_name(&n)),
        1 => full_name(),
        1 => any::<String>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn programs_are_calico_only_when_the_rules_say_so(t in prog_type(), name in name()) {
        let p = ProgFacts { prog_type: t, name: &name };
        let (ctlb, tc, xdp) = (oracle::ctlb(t, &name), oracle::tc(t, &name), oracle::xdp(t, &name));
        prop_assert_eq!(ownership::ctlb_program(p).is_some(), ctlb);
        prop_assert_eq!(ownership::tc_program(p).is_some(), tc);
        prop_assert_eq!(ownership::xdp_program(p).is_some(), xdp);
        prop_assert_eq!(ownership::calico_program(p), ctlb || tc || xdp);
        let scope = Scope::of([p]);
        prop_assert_eq!(scope, Scope { cgroups: ctlb, tc, xdp });
    }

    /// The kernel cuts names to 15 characters and Calico ships objects without BTF, so the
    /// rules must decide on the cut name: a full name in a Calico family stays in it once cut,
    /// and the cut name is judged exactly like any other.
    #[test]
    fn truncated_names_keep_their_family(t in prog_type(), full in full_name()) {
        let cut = kernel_name(&full);
        let p = ProgFacts { prog_type: t, name: &cut };
        prop_assert_eq!(ownership::calico_program(p),
            oracle::ctlb(t, &cut) || oracle::tc(t, &cut) || oracle::xdp(t, &cut));
        if oracle::ctlb(t, &full) {
            prop_assert!(ownership::ctlb_program(p).is_some(), "{} cut to {}", full, cut);
        }
        if oracle::tc(t, &full) {
            prop_assert!(ownership::tc_program(p).is_some(), "{} cut to {}", full, cut);
        }
        // Calico's XDP entry points are longer than 15 characters in its sources.
        if t == XDP && (full.starts_with("cali_xdp_preamb") || full.starts_with("xdp_calico_entr")) {
            prop_assert!(ownership::xdp_program(p).is_some(), "{} cut to {}", full, cut);
        }
    }

    #[test]
    fn maps_are_calico_only_when_the_rules_say_so(name in name()) {
        prop_assert_eq!(ownership::calico_map(&name), oracle::map(&name));
    }

    /// Interface names are bytes: the rule sees them exactly, UTF-8 or not.
    #[test]
    fn devices_are_calico_only_when_the_rules_say_so(
        name in prop_oneof![
            prop::sample::select(vec![
                &b"bpfin.cali"[..], b"bpfout.cali", b"bpfin.calico", b"bpfin.cal", b"BPFIN.CALI",
                b"vxlan.calico", b"vxlan-v6.calico", b"tunl0", b"wireguard.cali", b"cali1234",
                b"bpfin.cali\xff", b"\xffbpfin.cali", b"bpfin\xff.cali", b"bpfin.cal\xe9",
            ]).prop_map(<[u8]>::to_vec),
            "(bpf|cali|eth|ens)[a-z0-9.]{0,11}".prop_map(String::into_bytes),
            prop::collection::vec(any::<u8>(), 1..16),
        ],
        kind in prop::option::of(prop::sample::select(vec![
            "veth", "dummy", "vxlan", "ipip", "wireguard", "bridge", "Veth", "",
        ])),
    ) {
        let nif = NetIf {
            ifindex: 2,
            name: std::os::unix::ffi::OsStringExt::from_vec(name.clone()),
            kind: kind.map(String::from),
            xdp: Vec::new(),
        };
        prop_assert_eq!(plan::calico_device(&nif).is_some(), oracle::device(&name, kind));
    }

}

proptest! {
    // Each case is a whole inventory of up to 24 programs.
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// What matters in the end is the plan: from a random inventory of programs on cgroup
    /// hooks, tc filters, XDP, devices and global-map pins, the plan removes exactly the
    /// objects the oracle names, and nothing of anyone else's.
    #[test]
    fn plan_removes_exactly_what_the_rules_name(inv in inventory()) {
        let steps = plan::build(&inv, &BTreeMap::new());
        let mut got = BTreeSet::new();
        for s in &steps {
            let key = match &s.action {
                Action::DetachCgroup { prog_id, .. } => format!("cgroup {prog_id}"),
                Action::DeleteFilter { filter } => format!("tc {}", filter.prog_id.unwrap_or(0)),
                Action::DetachXdp { prog_id, .. } => format!("xdp {prog_id}"),
                Action::DeleteDevice { name } => format!("dev {}", name.display()),
                Action::Unpin { at, .. } => format!("pin {}", at.path().display()),
                other => return Err(TestCaseError::fail(format!("unexpected step {other:?}"))),
            };
            prop_assert!(got.insert(key.clone()), "planned twice: {}", key);
        }
        let facts = |id: u32| {
            let p = &inv.programs[&id];
            (p.prog_type, p.name.as_str())
        };
        let mut want = BTreeSet::new();
        for a in &inv.cgroups {
            let (t, n) = facts(a.prog_id);
            if oracle::ctlb(t, n) {
                want.insert(format!("cgroup {}", a.prog_id));
            }
        }
        for f in &inv.filters {
            let id = f.prog_id.unwrap_or(0);
            let (t, n) = facts(id);
            if oracle::tc(t, n) {
                want.insert(format!("tc {id}"));
            }
        }
        for nif in &inv.netifs {
            for &(_, id) in &nif.xdp {
                let (t, n) = facts(id);
                if oracle::xdp(t, n) {
                    want.insert(format!("xdp {id}"));
                }
            }
            if oracle::device(nif.name.as_encoded_bytes(), nif.kind.as_deref()) {
                want.insert(format!("dev {}", nif.name.display()));
            }
        }
        for pin in &inv.pins {
            if let PinnedObject::Map(m) = &pin.object {
                if oracle::map(&m.name) {
                    want.insert(format!("pin {}", pin.at.path().display()));
                }
            }
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
        which in 0usize..4,
        source in prop::option::of(any::<String>()),
    ) {
        let dataplane = [mode::Dataplane::Bpf, mode::Dataplane::Iptables,
            mode::Dataplane::Nftables, mode::Dataplane::Vpp][which];
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

/// A random inventory: programs of random types and names, each placed somewhere (a cgroup
/// hook, a tc filter, XDP on an interface), random devices, and map pins in tc/globals/.
fn inventory() -> impl Strategy<Value = Inventory> {
    let progs = prop::collection::vec((prog_type(), name(), 0u8..3), 0..24);
    let devs = prop::collection::vec(
        (
            prop::sample::select(vec!["bpfin.cali", "bpfout.cali", "eth0", "cali12", "bpfin"]),
            prop::option::of(prop::sample::select(vec!["veth", "dummy", "vxlan"])),
        ),
        0..4,
    );
    let maps = prop::collection::vec(name(), 0..8);
    (progs, devs, maps).prop_map(|(progs, devs, maps)| {
        let mut inv = Inventory::default();
        let mut xdp = Vec::new();
        for (i, (prog_type, name, place)) in progs.into_iter().enumerate() {
            let id = 100 + i as u32;
            inv.programs.insert(
                id,
                ProgInfo {
                    id,
                    prog_type,
                    name,
                },
            );
            match place {
                0 => inv.cgroups.push(CgroupAttachment {
                    root: PathBuf::from("/sys/fs/cgroup"),
                    cgroup: PathBuf::from("/sys/fs/cgroup"),
                    cgroup_id: 1,
                    attach_type: bpf::ATTACH_INET4_CONNECT,
                    prog_id: id,
                    slot_flags: bpf::F_ALLOW_MULTI,
                }),
                1 => inv.filters.push(Filter {
                    ifindex: 2,
                    parent: PARENT_INGRESS,
                    handle: 1,
                    info: (id << 16) | 0x0300,
                    chain: 0,
                    kind: "bpf".into(),
                    prog_id: Some(id),
                }),
                _ => xdp.push((XdpMode::Generic, id)),
            }
        }
        inv.netifs.push(NetIf {
            ifindex: 2,
            name: "eth0".into(),
            kind: None,
            xdp,
        });
        // Device names are unique in a namespace.
        let devs: BTreeMap<&str, Option<&str>> = devs.into_iter().collect();
        for (i, (name, kind)) in devs.into_iter().enumerate() {
            inv.netifs.push(NetIf {
                ifindex: 10 + i as u32,
                name: name.into(),
                kind: kind.map(String::from),
                xdp: Vec::new(),
            });
        }
        for (i, name) in maps.into_iter().enumerate() {
            let rel = PathBuf::from(format!("tc/globals/m{i}"));
            inv.pins.push(Pin {
                at: Located {
                    root: "/sys/fs/bpf".into(),
                    rel,
                    id: FileId::default(),
                },
                place: Place::GlobalMaps,
                object: PinnedObject::Map(MapInfo {
                    id: 1000 + i as u32,
                    name,
                }),
            });
        }
        inv
    })
}

/// The oracle's type numbers are the kernel's, as the crate knows them.
#[test]
fn oracle_uses_the_kernel_numbers() {
    assert_eq!(SCHED_CLS, bpf::PROG_TYPE_SCHED_CLS);
    assert_eq!(XDP, bpf::PROG_TYPE_XDP);
    assert_eq!(CGROUP_SOCK_ADDR, bpf::PROG_TYPE_CGROUP_SOCK_ADDR);
}

use super::*;
use crate::sources::Value;

/// Felix's precedence order, as `cluster` reads them: one code per slot.
const SLOTS: [(Kind, &str, &str); 7] = [
    (
        Kind::DaemonSetEnv,
        "DaemonSet calico-system/calico-node",
        "calico-system",
    ),
    (
        Kind::DaemonSetEnv,
        "DaemonSet kube-system/calico-node",
        "kube-system",
    ),
    (
        Kind::FelixNode,
        "FelixConfiguration node.n1",
        "crd.projectcalico.org/v1",
    ),
    (
        Kind::FelixNode,
        "FelixConfiguration node.n1",
        "projectcalico.org/v3",
    ),
    (
        Kind::FelixDefault,
        "FelixConfiguration default",
        "crd.projectcalico.org/v1",
    ),
    (
        Kind::FelixDefault,
        "FelixConfiguration default",
        "projectcalico.org/v3",
    ),
    (
        Kind::Installation,
        "Installation default",
        "operator.tigera.io/v1",
    ),
];

/// `-` absent, `.` no value, `1`/`0` bpfEnabled, `x` forbidden, `?` unparseable;
/// Installation: `B` BPF, `I` Iptables, `N` Nftables, `V` VPP.
fn world(codes: &str) -> Vec<Observation> {
    assert_eq!(codes.len(), SLOTS.len(), "{codes}");
    codes
        .chars()
        .zip(SLOTS)
        .map(|(c, (kind, name, place))| {
            let dp = |d: Dataplane, t: &str| {
                Reading::Says(Value::LinuxDataplane {
                    dataplane: d,
                    text: format!("linuxDataplane={t}"),
                })
            };
            let reading = match c {
                '-' => Reading::Absent,
                '.' => Reading::NoValue,
                '1' | '0' => {
                    let on = c == '1';
                    let text = if kind == Kind::DaemonSetEnv {
                        format!("FELIX_BPFENABLED={on}")
                    } else {
                        format!("bpfEnabled={on}")
                    };
                    Reading::Says(Value::BpfEnabled { on, text })
                }
                'x' => Reading::Unreadable(Reason::Forbidden, "403".into()),
                '?' => Reading::Unreadable(Reason::Unparseable, "garbage".into()),
                'B' => dp(Dataplane::Bpf, "BPF"),
                'I' => dp(Dataplane::Iptables, "Iptables"),
                'N' => dp(Dataplane::Nftables, "Nftables"),
                'V' => dp(Dataplane::Vpp, "VPP"),
                other => panic!("code {other}"),
            };
            Observation {
                kind,
                name: name.into(),
                place: place.into(),
                reading,
            }
        })
        .collect()
}

fn show(d: &Decision) -> String {
    match d {
        Decision::Write { dataplane, because } => format!("{dataplane}: {because}"),
        Decision::Keep { reason, .. } => format!("keep {reason}"),
    }
}

#[test]
fn every_precedence_row() {
    let rows: &[(&str, &str)] = &[
        // env > node > default, each alone
        ("1.-----", "bpf: DaemonSet calico-system/calico-node FELIX_BPFENABLED=true"),
        ("-1-----", "bpf: DaemonSet kube-system/calico-node FELIX_BPFENABLED=true"),
        (".-1----", "bpf: FelixConfiguration node.n1 bpfEnabled=true"),
        (".--1---", "bpf: FelixConfiguration node.n1 bpfEnabled=true"),
        (".---1--", "bpf: FelixConfiguration default bpfEnabled=true"),
        (".----1-", "bpf: FelixConfiguration default bpfEnabled=true"),
        (".-----B", "bpf: Installation default linuxDataplane=BPF"),
        // off: what Felix goes by is the first source that sets it
        ("0-0-0--", "iptables: DaemonSet calico-system/calico-node FELIX_BPFENABLED=false"),
        (".-0-0--", "iptables: FelixConfiguration node.n1 bpfEnabled=false"),
        (".-..0--", "iptables: FelixConfiguration default bpfEnabled=false"),
        (".-....-", "iptables: no source sets BPFEnabled (Felix's default false)"),
        ("..--.-.", "iptables: no source sets BPFEnabled (Felix's default false)"),
        (".-----I", "iptables: no source sets BPFEnabled (Felix's default false)"),
        // safety: any readable source that says eBPF wins over a higher one that says off
        ("0-1-0--", "bpf: FelixConfiguration node.n1 bpfEnabled=true"),
        ("0-0-1--", "bpf: FelixConfiguration default bpfEnabled=true"),
        ("0-0-0-B", "bpf: Installation default linuxDataplane=BPF"),
        ("--0----", "keep no_calico"),
        // the operator's Installation before it flipped the FelixConfiguration
        (".---0-B", "bpf: Installation default linuxDataplane=BPF"),
        // ... and with the DaemonSet not rendered yet
        ("-------", "keep no_calico"),
        ("------B", "bpf: Installation default linuxDataplane=BPF"),
        // flavours come from the Installation
        (".---0-N", "nftables: FelixConfiguration default bpfEnabled=false; Installation default linuxDataplane=Nftables"),
        (".---0-V", "vpp: FelixConfiguration default bpfEnabled=false; Installation default linuxDataplane=VPP"),
        (".---0-I", "iptables: FelixConfiguration default bpfEnabled=false"),
        // one group missing, the other read
        ("..-.-0I", "iptables: FelixConfiguration default bpfEnabled=false"),
        // unreadable: on still wins, off never does
        ("1-x-x-?", "bpf: DaemonSet calico-system/calico-node FELIX_BPFENABLED=true"),
        ("..x-0--", "keep forbidden"),
        ("0-0-0x-", "keep forbidden"),
        ("0-0-0-?", "keep unparseable"),
        ("x-0-0--", "keep forbidden"),
        ("x-1-0--", "bpf: FelixConfiguration node.n1 bpfEnabled=true"),
        ("?------", "keep unparseable"),
    ];
    let mut failed = Vec::new();
    for (codes, want) in rows {
        let got = show(&decide(&Override::Auto, &world(codes)));
        if got != *want {
            failed.push(format!("{codes}: want {want:?}, got {got:?}"));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

#[test]
fn overrides() {
    let unreadable = world("x-x-x-?");
    for d in Dataplane::ALL {
        assert_eq!(
            decide(&Override::Fixed(d), &unreadable),
            Decision::Write {
                dataplane: d,
                because: format!("override dataplane={d}")
            }
        );
    }
    assert_eq!(
        show(&decide(
            &Override::Invalid("bogus".into()),
            &world("1------")
        )),
        "keep override_invalid"
    );
    assert_eq!(
        show(&decide(&Override::Auto, &world("1------"))),
        "bpf: DaemonSet calico-system/calico-node FELIX_BPFENABLED=true"
    );
}

/// Every combination of codes, against the rule written a second way (counting, not order):
/// loosening the rule in `decide` breaks this whatever row the table above lacks.
#[test]
fn safety_rule_over_every_combination() {
    let felix = ['-', '.', '1', '0', 'x'];
    let inst = ['-', '.', 'B', 'I', 'N', 'V', '?'];
    let mut n = 0;
    for a in felix {
        for b in ['-', '.', '1', '0'] {
            for c in felix {
                for d in ['-', '1', '0'] {
                    for e in felix {
                        for f in ['-', '.', '1', '0'] {
                            for g in inst {
                                let codes: String = [a, b, c, d, e, f, g].iter().collect();
                                check(&codes);
                                n += 1;
                            }
                        }
                    }
                }
            }
        }
    }
    assert!(n > 10_000);
}

fn check(codes: &str) {
    let on = codes.contains('1') || codes.ends_with('B');
    let unreadable = codes.contains('x') || codes.contains('?');
    let ds = &codes[..2] != "--";
    let got = decide(&Override::Auto, &world(codes));
    match got {
        Decision::Write {
            dataplane: Dataplane::Bpf,
            ..
        } => assert!(on, "{codes}: bpf without a source that says so"),
        Decision::Write { dataplane, .. } => {
            assert!(!on && !unreadable && ds, "{codes}: wrote {dataplane} although a source says eBPF, or one was unreadable, or no DaemonSet");
            let want = match codes.as_bytes()[6] {
                b'N' => Dataplane::Nftables,
                b'V' => Dataplane::Vpp,
                _ => Dataplane::Iptables,
            };
            assert_eq!(dataplane, want, "{codes}");
        }
        Decision::Keep { .. } => assert!(
            !on && (unreadable || !ds),
            "{codes}: kept although decidable"
        ),
    }
}

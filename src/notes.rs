//! What Calico's eBPF mode changed that the guard reports but never changes: sysctls and state
//! files. Only gathered when stale Calico objects were found, so a clean node stays quiet.

use std::fs;
use std::path::Path;

/// The facts, read from the running system (read-only).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Facts {
    pub unprivileged_bpf_disabled: Option<String>,
    pub rp_filter_all: Option<String>,
    /// Interfaces with accept_local = 1.
    pub accept_local: Vec<String>,
    pub prog_json: usize,
    pub policy_json: usize,
    pub ct_map_size: bool,
}

fn read(path: &str) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

fn count_json(dir: &str) -> usize {
    fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                .count()
        })
        .unwrap_or(0)
}

pub fn gather() -> Facts {
    let mut accept_local: Vec<String> = fs::read_dir("/proc/sys/net/ipv4/conf")
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    let name = e.file_name();
                    name != "all" && name != "default"
                })
                .filter(|e| {
                    read(&e.path().join("accept_local").to_string_lossy()).as_deref() == Some("1")
                })
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    accept_local.sort();
    Facts {
        unprivileged_bpf_disabled: read("/proc/sys/kernel/unprivileged_bpf_disabled"),
        rp_filter_all: read("/proc/sys/net/ipv4/conf/all/rp_filter"),
        accept_local,
        prog_json: count_json("/var/run/calico/bpf/prog"),
        policy_json: count_json("/var/run/calico/bpf/policy"),
        ct_map_size: Path::new("/var/lib/calico/bpf_ct_map_size").exists(),
    }
}

/// One sentence per fact that points at eBPF mode.
pub fn notes(f: &Facts) -> Vec<String> {
    let mut out = Vec::new();
    if f.unprivileged_bpf_disabled.as_deref() == Some("1") {
        out.push("kernel.unprivileged_bpf_disabled = 1: Calico's eBPF mode sets it, and only a reboot undoes it".into());
    }
    if f.rp_filter_all.as_deref() == Some("0") {
        out.push("net.ipv4.conf.all.rp_filter = 0: Calico's eBPF mode sets it; restore your distribution's value if it differs".into());
    }
    if !f.accept_local.is_empty() {
        out.push(format!(
            "accept_local = 1 on {}: Calico's eBPF mode sets it per interface",
            f.accept_local.join(", ")
        ));
    }
    if f.prog_json + f.policy_json > 0 {
        out.push(format!(
            "/var/run/calico/bpf/: {} program and {} policy state files from eBPF mode (gone at reboot)",
            f.prog_json, f.policy_json
        ));
    }
    if f.ct_map_size {
        out.push(
            "/var/lib/calico/bpf_ct_map_size: eBPF mode's conntrack size, survives reboots".into(),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let s = |v: &str| Some(v.to_string());
        let cases: Vec<(Facts, Vec<&str>)> = vec![
            (Facts::default(), vec![]),
            // Debian's default (2) and systemd's rp_filter (2) are not eBPF mode's.
            (
                Facts {
                    unprivileged_bpf_disabled: s("2"),
                    rp_filter_all: s("2"),
                    ..Default::default()
                },
                vec![],
            ),
            (
                Facts {
                    unprivileged_bpf_disabled: s("1"),
                    rp_filter_all: s("0"),
                    ..Default::default()
                },
                vec![
                    "kernel.unprivileged_bpf_disabled = 1",
                    "net.ipv4.conf.all.rp_filter = 0",
                ],
            ),
            (
                Facts {
                    accept_local: vec!["cali1".into(), "cali2".into()],
                    prog_json: 2,
                    ct_map_size: true,
                    ..Default::default()
                },
                vec![
                    "accept_local = 1 on cali1, cali2",
                    "2 program and 0 policy",
                    "bpf_ct_map_size",
                ],
            ),
        ];
        for (facts, want) in cases {
            let got = notes(&facts);
            assert_eq!(got.len(), want.len(), "{facts:?}: {got:?}");
            for (g, w) in got.iter().zip(want) {
                assert!(g.contains(w), "{g} lacks {w}");
            }
        }
    }
}

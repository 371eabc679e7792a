//! What Calico's eBPF mode changed that the guard reports but never changes: sysctls and state
//! files, gathered only when stale Calico objects were found, so a clean node stays quiet. The
//! network sysctls belong to the network namespace the guard runs in, and a namespace where
//! nothing Calico ever ran has rp_filter 0 too (the kernel's default for a new one): they count
//! only when Calico's network objects (tc, tcx, netkit, XDP, bpfin.cali) were found here, not
//! merely its pins or cgroup programs, which are the host's.

use std::fs;
use std::io::Read;
use std::path::Path;

use crate::plan::{Family, Step};

/// The facts, read from the running system (read-only).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Facts {
    /// None: /proc/sys could not be read. The unit's `ProcSubset=pid` hides it, and nothing
    /// else tells these values (sysctl(2) is gone since Linux 5.5).
    pub sysctls: Option<Sysctls>,
    pub prog_json: usize,
    pub policy_json: usize,
    pub ct_map_size: bool,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Sysctls {
    pub unprivileged_bpf_disabled: Option<String>,
    pub rp_filter_all: Option<String>,
    /// Interfaces with accept_local = 1.
    pub accept_local: Vec<String>,
}

/// A sysctl's value (a small integer): one open, one read, one close. There is one per
/// interface, and reading to the end took two more calls each (a size probe, an empty read).
fn read(path: &Path) -> Option<String> {
    let mut buf = [0u8; 64];
    let n = fs::File::open(path).ok()?.read(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).trim().to_string())
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

/// The sysctls, None when /proc/sys cannot be read. `accept_local`: the interfaces with it set,
/// when the scan's interface dump told (it carries every interface's IPv4 settings); else,
/// and only when the note can be shown (`network_here`), each interface's file is read.
fn sysctls(accept_local: Option<Vec<String>>, network_here: bool) -> Option<Sysctls> {
    let conf = Path::new("/proc/sys/net/ipv4/conf");
    // No /proc/sys, no sysctls: the dump's answer stands for /proc's only where it can be read.
    fs::metadata(conf).ok()?;
    let accept_local = match accept_local {
        Some(names) => names,
        None if network_here => {
            let mut names: Vec<String> = fs::read_dir(conf)
                .ok()?
                .flatten()
                .filter(|e| {
                    let name = e.file_name();
                    name != "all" && name != "default"
                })
                .filter(|e| read(&e.path().join("accept_local")).as_deref() == Some("1"))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        }
        None => Vec::new(),
    };
    Some(Sysctls {
        unprivileged_bpf_disabled: read(Path::new("/proc/sys/kernel/unprivileged_bpf_disabled")),
        rp_filter_all: read(&conf.join("all/rp_filter")),
        accept_local,
    })
}

fn gather(accept_local: Option<Vec<String>>, network_here: bool) -> Facts {
    Facts {
        sysctls: sysctls(accept_local, network_here),
        prog_json: count_json("/var/run/calico/bpf/prog"),
        policy_json: count_json("/var/run/calico/bpf/policy"),
        ct_map_size: Path::new("/var/lib/calico/bpf_ct_map_size").exists(),
    }
}

/// The notes for a plan of stale objects (none for an empty plan). `accept_local`: the
/// interfaces with accept_local = 1 when the scan's interface dump told.
pub fn for_plan(steps: &[Step], accept_local: Option<Vec<String>>) -> Vec<String> {
    if steps.is_empty() {
        return Vec::new();
    }
    let network_here = steps
        .iter()
        .any(|s| Family::of(s.kind, &s.location).is_some_and(Family::in_netns));
    notes(&gather(accept_local, network_here), network_here)
}

/// One sentence per fact that points at eBPF mode. `network_here`: Calico's network objects
/// were found in this network namespace.
pub fn notes(f: &Facts, network_here: bool) -> Vec<String> {
    let mut out = Vec::new();
    match &f.sysctls {
        None => out.push(
            "sysctls not read: /proc/sys is hidden here (the unit's ProcSubset=pid); run `calico-bpf-guard check` from a root shell to see whether eBPF mode left kernel.unprivileged_bpf_disabled, rp_filter or accept_local changed".into(),
        ),
        Some(s) => {
            if s.unprivileged_bpf_disabled.as_deref() == Some("1") {
                out.push("kernel.unprivileged_bpf_disabled = 1: Calico's eBPF mode sets it, and only a reboot undoes it".into());
            }
            if network_here && s.rp_filter_all.as_deref() == Some("0") {
                out.push("net.ipv4.conf.all.rp_filter = 0: Calico's eBPF mode sets it; restore your distribution's value if it differs".into());
            }
            if network_here && !s.accept_local.is_empty() {
                out.push(format!(
                    "accept_local = 1 on {}: Calico's eBPF mode sets it per interface",
                    s.accept_local.join(", ")
                ));
            }
        }
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
        let sysctls = |ubd: &str, rp: &str, al: &[&str]| {
            Some(Sysctls {
                unprivileged_bpf_disabled: s(ubd),
                rp_filter_all: s(rp),
                accept_local: al.iter().map(|i| i.to_string()).collect(),
            })
        };
        let ebpf_mode = sysctls("1", "0", &["cali1", "cali2"]);
        let cases: Vec<(Facts, bool, Vec<&str>)> = vec![
            (
                Facts {
                    sysctls: Some(Sysctls::default()),
                    ..Default::default()
                },
                true,
                vec![],
            ),
            // Debian's default (2) and systemd's rp_filter (2) are not eBPF mode's.
            (
                Facts {
                    sysctls: sysctls("2", "2", &[]),
                    ..Default::default()
                },
                true,
                vec![],
            ),
            (
                Facts {
                    sysctls: ebpf_mode.clone(),
                    ..Default::default()
                },
                true,
                vec![
                    "kernel.unprivileged_bpf_disabled = 1",
                    "net.ipv4.conf.all.rp_filter = 0",
                    "accept_local = 1 on cali1, cali2",
                ],
            ),
            // Only pins or cgroup programs: this namespace's rp_filter 0 may be the kernel's
            // default for a namespace nothing Calico ran in.
            (
                Facts {
                    sysctls: ebpf_mode,
                    ..Default::default()
                },
                false,
                vec!["kernel.unprivileged_bpf_disabled = 1"],
            ),
            // /proc/sys hidden: said, not silently nothing.
            (
                Facts {
                    prog_json: 2,
                    ct_map_size: true,
                    ..Default::default()
                },
                true,
                vec![
                    "sysctls not read: /proc/sys is hidden here",
                    "2 program and 0 policy",
                    "bpf_ct_map_size",
                ],
            ),
        ];
        for (facts, network_here, want) in cases {
            let got = notes(&facts, network_here);
            assert_eq!(got.len(), want.len(), "{facts:?}: {got:?}");
            for (g, w) in got.iter().zip(want) {
                assert!(g.contains(w), "{g} lacks {w}");
            }
        }
    }

    #[test]
    fn no_plan_no_notes() {
        assert!(for_plan(&[], None).is_empty());
    }
}

//! Golden tests, after zram-generator's `tests/NN-name/` trees: each `tests/golden/NN-name/`
//! holds an inventory recorded from a privileged fixture world (`inventory.json`, as the hidden
//! `debug-inventory` command prints it) and, beside it, what the guard makes of it: the plan
//! (`plan.txt`), and `check`'s table (`report.txt`) and JSON report (`report.json`).
//!
//! `golden_cases` replays every recording through the real planner and report writer: no
//! kernel, no root, any machine. `GOLDEN_UPDATE=1` rewrites the expected files instead of
//! comparing (review the diff). As root, `worlds_still_scan_as_recorded` plants each world
//! again, scans it with the real guard and demands the same plan; with `GOLDEN_UPDATE=1` it
//! records `inventory.json` anew (run it alone, `--test golden`, so no other test's programs are
//! loaded meanwhile).

mod common;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use calico_bpf_guard::decide::{check_verdict, Ebpf};
use calico_bpf_guard::inventory::{Inventory, PinnedObject};
use calico_bpf_guard::kernel::bpf::LinkTarget;
use calico_bpf_guard::ownership::{ProgFacts, Scope};
use calico_bpf_guard::plan::{self, Input, Step};
use calico_bpf_guard::report::{Format, Report, Row};
use modefile::{Dataplane, Mode};

/// Where a recording's sandbox roots are shown, so that recordings do not differ by temp path.
const BPFFS: &str = "/golden/bpffs";
const CGROUP: &str = "/golden/cgroup";

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn updating() -> bool {
    std::env::var("GOLDEN_UPDATE").is_ok_and(|v| v == "1")
}

fn cases() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(golden_dir())
        .expect("tests/golden")
        .map(|e| e.expect("tests/golden entry").path())
        .filter(|p| p.join("inventory.json").is_file())
        .collect();
    dirs.sort();
    dirs
}

fn read_input(case: &Path) -> Input {
    let text = fs::read_to_string(case.join("inventory.json")).expect("inventory.json");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}/inventory.json: {e}", case.display()))
}

/// The plan, one step per line in apply order, with the action that carries it out.
fn plan_text(steps: &[Step]) -> String {
    let mut out = String::new();
    for (i, st) in steps.iter().enumerate() {
        out += &format!(
            "{:2}. {} at {}\n    {:?}\n",
            i + 1,
            st.kind,
            st.location,
            st.action
        );
    }
    out
}

/// `check`'s report on a node whose mode file says iptables, as the command writes it: the
/// interlock and the sysctl notes, which need a live node, are left out.
fn report(inv: &Inventory, steps: &[Step], format: Format) -> String {
    let report = Report {
        command: "check",
        mode_file: PathBuf::from("/golden/mode.toml"),
        mode: Some(Mode {
            dataplane: Dataplane::Iptables,
            source: Some("golden".into()),
            updated: None,
        }),
        ebpf: Ebpf::Off,
        dry_run: false,
        kernel: Some(inv.features),
        holders: Vec::new(),
        warnings: inv
            .warnings
            .iter()
            .chain(&inv.incomplete)
            .cloned()
            .collect(),
        notes: Vec::new(),
    };
    let (_, decision) = check_verdict(!steps.is_empty(), inv.incomplete.len(), Ebpf::Off, false);
    let mut buf = Vec::new();
    let mut w = report.start_to(Box::new(&mut buf), format, false, steps);
    for st in steps {
        w.row(&Row::new(st, None));
    }
    w.finish(&decision);
    String::from_utf8(buf).expect("the report is text")
}

/// The expected files of one recording.
fn expected(input: &Input) -> [(&'static str, String); 3] {
    let steps = plan::build(&input.inventory, &input.btf_names);
    [
        ("plan.txt", plan_text(&steps)),
        (
            "report.txt",
            report(&input.inventory, &steps, Format::Table),
        ),
        (
            "report.json",
            report(&input.inventory, &steps, Format::Json),
        ),
    ]
}

/// The first line where two texts differ, for a failure message short enough to read.
fn first_difference(want: &str, got: &str) -> String {
    let (w, g): (Vec<&str>, Vec<&str>) = (want.lines().collect(), got.lines().collect());
    let n = w.iter().zip(&g).take_while(|(a, b)| a == b).count();
    format!(
        "line {}:\n  expected: {:?}\n  got:      {:?}",
        n + 1,
        w.get(n).unwrap_or(&"<end>"),
        g.get(n).unwrap_or(&"<end>")
    )
}

#[test]
fn golden_cases() {
    let cases = cases();
    assert!(cases.len() >= 4, "golden cases missing: {cases:?}");
    let mut stale = Vec::new();
    for case in &cases {
        for (file, got) in expected(&read_input(case)) {
            let path = case.join(file);
            if updating() {
                fs::write(&path, &got).expect("writing a golden file");
                continue;
            }
            let want = fs::read_to_string(&path).unwrap_or_default();
            if want != got {
                stale.push(format!(
                    "{}: {}",
                    path.display(),
                    first_difference(&want, &got)
                ));
            }
        }
    }
    assert!(
        stale.is_empty(),
        "golden files differ (GOLDEN_UPDATE=1 cargo test --test golden rewrites them; review \
         the diff):\n{}",
        stale.join("\n")
    );
}

/// Recordings read back exactly: nothing in an inventory is lost on the way through JSON,
/// also names that are not UTF-8.
#[test]
fn recordings_round_trip() {
    for case in cases() {
        let input = read_input(&case);
        let again: Input = serde_json::from_str(&serde_json::to_string(&input).unwrap()).unwrap();
        assert_eq!(
            plan::build(&again.inventory, &again.btf_names),
            plan::build(&input.inventory, &input.btf_names),
            "{}",
            case.display()
        );
    }
}

/// The privileged half: plant a world in a sandbox, scan it with the guard, keep only what
/// belongs to the world, in stable numbers.
mod record {
    use std::collections::BTreeSet;

    use super::common::*;
    use super::*;
    use calico_bpf_testkit::progs::SOCK_ADDR;
    use plant::{CONNECT6, EGRESS, ETH_P_ALL, INGRESS, MULTI, XDP_SKB};

    /// Plants one world in a fresh sandbox.
    type Plant = fn(&Sandbox);

    /// The worlds, by case directory: the same fixtures the privileged tests sweep.
    pub const WORLDS: [(&str, Plant); 4] = [
        ("01-stale-node", stale_node),
        ("02-clean-node", |_| {}),
        ("03-foreign-only", foreign_only),
        ("04-hostile", hostile),
    ];

    /// A 3.28/3.29 node's leftovers beside other tools' objects (testkit's `calico_host` and
    /// `calico_network`).
    fn stale_node(sb: &Sandbox) {
        plant::calico_host(&sb.bpffs.path, &sb.cgroup.path).unwrap();
        sb.netns().enter(plant::calico_network).unwrap();
    }

    /// Only objects that must never be Calico's, many in Calico's places or on its hooks:
    /// systemd's and Cilium's programs, iptables-mode Calico (`prefilter` XDP and maps under
    /// `calico/`, the `calico_sockops` program), near-miss names, a plain tc directory.
    fn foreign_only(sb: &Sandbox) {
        let (b, cg) = (&sb.bpffs.path, &sb.cgroup.path);
        plant::attach(cg, SOCK_ADDR, "cil_sock6_connect", CONNECT6, MULTI, false).unwrap();
        plant::foreign_cgroup(cg).unwrap();
        // Before `foreign_pins`, as recorded: a recording numbers maps in the order they were made.
        plant::pin_map(&b.join("tc/globals/cilium_calls"), "cilium_calls").unwrap();
        plant::foreign_pins(b).unwrap();
        sb.netns()
            .enter(|| {
                plant::veth("ens-pre", "ens-pre-p")?;
                calico_bpf_testkit::sandbox::run(
                    "ip",
                    &[
                        "link",
                        "add",
                        "vxlan.calico",
                        "type",
                        "vxlan",
                        "id",
                        "4096",
                        "dstport",
                        "4789",
                    ],
                )?;
                plant::clsact("ens-pre")?;
                plant::tc_filter("ens-pre", INGRESS, 1, 1, ETH_P_ALL, "cil_from_netdev")?;
                plant::xdp("ens-pre", "prefilter", XDP_SKB)
            })
            .unwrap();
    }

    /// The stale node's bpffs and cgroup half, and what a hostile node adds: symlinks in
    /// Calico's places, names that are not UTF-8 or hold control characters, an interface
    /// whose name is not UTF-8 carrying Calico filters.
    fn hostile(sb: &Sandbox) {
        let b = &sb.bpffs.path;
        plant::calico_host(b, &sb.cgroup.path).unwrap();
        plant::pin_map(&b.join("cilium/old/cali_jump2"), "cali_jump2").unwrap();
        let outside = sb.dir.path.join("outside");
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("calico_connect_v4"), "not a pin").unwrap();
        for (at, to) in [
            ("calico_connect4", Path::new("cilium")),
            ("tcx", Path::new("cilium/old")),
            ("netkit", outside.as_path()),
        ] {
            std::os::unix::fs::symlink(to, b.join(at)).unwrap();
        }
        let odd: [(&[u8], &str); 2] = [
            (b"tc/eth\xff0_igr/cali_jump3", "cali_jump3"),
            (
                b"tc/globals/cali_v4_ct3\nwarning: forged\x1b[2K",
                "cali_v4_ct3",
            ),
        ];
        for (rel, map) in odd {
            plant::pin_map(&b.join(OsStr::from_bytes(rel)), map).unwrap();
        }
        sb.netns()
            .enter(|| {
                plant::veth(b"cali\xff1", b"wl\x1b1")?;
                plant::clsact(b"cali\xff1")?;
                plant::tc_filter(b"cali\xff1", INGRESS, 1, 1, ETH_P_ALL, "cali_tc_preambl")?;
                plant::tc_filter(b"cali\xff1", EGRESS, 2, 1, ETH_P_ALL, "cil_to_containe")
            })
            .unwrap();
    }

    /// Scan a planted sandbox with the guard, as `debug-inventory` prints it.
    pub fn scan(sb: &Sandbox) -> Input {
        let out = guard_ok(sb, &["debug-inventory"], 0);
        let text = stdout(&out)
            .replace(&sb.bpffs.path.display().to_string(), BPFFS)
            .replace(&sb.cgroup.path.display().to_string(), CGROUP);
        let input: Input = serde_json::from_str(&text).expect("debug-inventory prints JSON");
        normalize(input)
    }

    /// Numbers in the order they were met, from `base`: ids the kernel hands out differ from
    /// run to run, their order does not.
    struct Renumber(BTreeMap<u64, u64>);

    impl Renumber {
        fn new(base: u64, seen: impl IntoIterator<Item = u64>) -> Renumber {
            let set: BTreeSet<u64> = seen.into_iter().collect();
            Renumber(set.into_iter().zip(base..).collect())
        }
        fn get(&self, old: u64) -> u64 {
            self.0.get(&old).copied().unwrap_or(old)
        }
        fn id(&self, old: u32) -> u32 {
            self.get(u64::from(old)) as u32
        }
    }

    /// The programs the sandbox's objects run or pin.
    fn world_programs(inv: &Inventory) -> BTreeSet<u32> {
        let mut used: BTreeSet<u32> = BTreeSet::new();
        used.extend(inv.cgroups.iter().map(|c| c.prog_id));
        used.extend(inv.filters.iter().filter_map(|f| f.prog_id));
        used.extend(inv.hooks.iter().map(|h| h.prog_id));
        used.extend(inv.netifs.iter().flat_map(|n| n.xdp.iter().map(|x| x.1)));
        for p in &inv.pins {
            match &p.object {
                PinnedObject::Prog(p) => used.insert(p.id),
                PinnedObject::Link(l) => used.insert(l.prog_id),
                _ => false,
            };
        }
        used
    }

    /// Keep what belongs to the sandbox's world (the program and link lists are the whole
    /// host's), and give kernel ids, cgroup ids and inodes stable numbers.
    fn normalize(input: Input) -> Input {
        let Input {
            inventory: mut inv,
            btf_names,
        } = input;
        // The scan skips the families no loaded program could be in (`inventory::scan`); a
        // busy host (other tests, other engineers) has Calico programs loaded elsewhere, so
        // skip them here as a quiet host would have.
        let scope = Scope::of(world_programs(&inv).iter().filter_map(|id| {
            inv.programs.get(id).map(|p| ProgFacts {
                prog_type: p.prog_type,
                name: &p.name,
            })
        }));
        if !scope.cgroups {
            inv.cgroups.clear();
        }
        if !scope.tc {
            inv.filters.clear();
            inv.hooks.clear();
        }
        if !scope.tc && !scope.xdp {
            inv.netifs.retain(|n| n.name == "bpfin.cali");
        }
        let used = world_programs(&inv);
        inv.programs.retain(|id, _| used.contains(id));
        inv.links.retain(|l| used.contains(&l.prog_id));
        inv.scope = scope;

        let progs = Renumber::new(101, used.iter().map(|&i| u64::from(i)));
        let maps = Renumber::new(
            201,
            inv.pins.iter().filter_map(|p| match &p.object {
                PinnedObject::Map(m) => Some(u64::from(m.id)),
                _ => None,
            }),
        );
        let links = Renumber::new(
            301,
            inv.links
                .iter()
                .map(|l| u64::from(l.id))
                .chain(inv.hooks.iter().filter_map(|h| h.link_id.map(u64::from))),
        );
        let mut cgroup_paths: Vec<(PathBuf, u64)> = inv
            .cgroups
            .iter()
            .map(|c| (c.cgroup.clone(), c.cgroup_id))
            .collect();
        cgroup_paths.sort();
        cgroup_paths.dedup();
        let cgroups = Renumber(
            cgroup_paths
                .into_iter()
                .map(|(_, id)| id)
                .zip(1001..)
                .collect(),
        );
        // Inodes by path: bpffs hands out inode numbers from per-CPU batches.
        let mut located: Vec<(PathBuf, u64)> = inv
            .pins
            .iter()
            .map(|p| &p.at)
            .chain(inv.dirs.iter().map(|d| &d.at))
            .map(|at| (at.rel.clone(), at.id.ino))
            .collect();
        located.sort();
        let inodes = Renumber(located.into_iter().map(|(_, ino)| ino).zip(1..).collect());
        let devs = Renumber::new(
            1,
            inv.pins
                .iter()
                .map(|p| p.at.id.dev)
                .chain(inv.dirs.iter().map(|d| d.at.id.dev)),
        );

        let link_target = |t: &mut LinkTarget| {
            if let LinkTarget::Cgroup { cgroup_id, .. } = t {
                *cgroup_id = cgroups.get(*cgroup_id);
            }
        };
        inv.programs = std::mem::take(&mut inv.programs)
            .into_values()
            .map(|mut p| {
                p.id = progs.id(p.id);
                (p.id, p)
            })
            .collect();
        for l in &mut inv.links {
            l.id = links.id(l.id);
            l.prog_id = progs.id(l.prog_id);
            link_target(&mut l.target);
        }
        for c in &mut inv.cgroups {
            c.cgroup_id = cgroups.get(c.cgroup_id);
            c.prog_id = progs.id(c.prog_id);
        }
        for f in &mut inv.filters {
            f.prog_id = f.prog_id.map(|id| progs.id(id));
        }
        for h in &mut inv.hooks {
            h.prog_id = progs.id(h.prog_id);
            h.link_id = h.link_id.map(|id| links.id(id));
        }
        for n in &mut inv.netifs {
            for x in &mut n.xdp {
                x.1 = progs.id(x.1);
            }
        }
        let ats = inv
            .pins
            .iter_mut()
            .map(|p| &mut p.at)
            .chain(inv.dirs.iter_mut().map(|d| &mut d.at));
        for at in ats {
            at.id.ino = inodes.get(at.id.ino);
            at.id.dev = devs.get(at.id.dev);
        }
        for p in &mut inv.pins {
            match &mut p.object {
                PinnedObject::Prog(p) => p.id = progs.id(p.id),
                PinnedObject::Map(m) => m.id = maps.id(m.id),
                PinnedObject::Link(l) => {
                    l.id = links.id(l.id);
                    l.prog_id = progs.id(l.prog_id);
                    link_target(&mut l.target);
                }
                PinnedObject::Unknown(_) => {}
            }
        }
        let btf_names = btf_names
            .into_iter()
            .map(|(id, name)| (progs.id(id), name))
            .collect();
        Input {
            inventory: inv,
            btf_names,
        }
    }
}

/// As root: each world, planted again and scanned by the guard, still plans what its golden
/// plan says (so the recordings describe what the real scan sees); `GOLDEN_UPDATE=1` records
/// them anew.
#[test]
fn worlds_still_scan_as_recorded() {
    if !calico_bpf_testkit::have_root("worlds_still_scan_as_recorded") {
        return;
    }
    for (name, plant) in record::WORLDS {
        let sb = common::sandbox(&format!("golden{}", &name[..2])).expect("root");
        plant(&sb);
        let input = record::scan(&sb);
        let case = golden_dir().join(name);
        if updating() {
            fs::create_dir_all(&case).expect("creating the case directory");
            let text = serde_json::to_string_pretty(&input).expect("serializing") + "\n";
            fs::write(case.join("inventory.json"), text).expect("writing inventory.json");
            continue;
        }
        let steps = plan::build(&input.inventory, &input.btf_names);
        let want = fs::read_to_string(case.join("plan.txt")).unwrap_or_default();
        let got = plan_text(&steps);
        assert!(
            want == got,
            "{name}: the world no longer scans as recorded (GOLDEN_UPDATE=1 re-records): {}",
            first_difference(&want, &got)
        );
    }
}

//! Trees on a node are hostile: symlinks and mounts planted in Calico's bpffs places, names that
//! are not UTF-8 or hold a newline, paths longer than PATH_MAX, subtrees the guard may not read.
//! Each test asserts the exact set of objects left, the exit code, and that the bad place is
//! named.

mod common;
use std::ffi::OsStr;
use std::fs;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{chown, symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;

use calico_bpf_guard::kernel::bpf::Target;
use calico_bpf_testkit::progs::SOCK_ADDR;
use common::*;
use nix::fcntl::{openat, OFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{mkdirat, Mode};

/// A sandbox holding a 3.28/3.29 node's leftovers beside other tools' objects, eBPF off.
fn stale_host(test: &str) -> Option<Sandbox> {
    let sb = sandbox(test)?;
    plant::calico_host(&sb.bpffs.path, &sb.cgroup.path).unwrap();
    sb.set_mode(Some("iptables")).unwrap();
    Some(sb)
}

fn warnings(out: &Output) -> Vec<String> {
    json(out)["warnings"]
        .as_array()
        .expect("warnings in the report")
        .iter()
        .map(|w| w.as_str().unwrap_or_default().to_string())
        .collect()
}

/// The sweep's report names `place` (escaped as the guard shows names) with `what`.
fn assert_named(out: &Output, place: &Path, what: &str) {
    let want = format!("{}: {what}", calico_bpf_guard::names::path(place));
    let w = warnings(out);
    assert!(
        w.iter().any(|l| l.starts_with(&want)),
        "{want}\nnot in {w:#?}"
    );
}

/// A file system mounted for one test, detached even when the test fails.
struct Mounted(PathBuf);

impl Mounted {
    fn new(fstype: &str, at: &Path) -> Mounted {
        fs::create_dir_all(at).unwrap();
        mount(
            Some(fstype),
            at,
            Some(fstype),
            MsFlags::empty(),
            None::<&str>,
        )
        .unwrap();
        Mounted(at.to_path_buf())
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = umount2(&self.0, MntFlags::MNT_DETACH);
    }
}

/// A symlink where Calico's objects would be is named and never followed, inside bpffs
/// (`old_jumps -> ../../cilium` would have unlinked Cilium's pins) or out of it (a plain
/// directory of files). Everything else is swept; the sweep exits 1.
#[test]
fn symlinks_in_calicos_places_are_named_and_never_followed() {
    let Some(sb) = sandbox("hostile-symlinks") else {
        return;
    };
    let b = &sb.bpffs.path;
    plant::pin_map(&b.join("tc/globals/cali_v4_ct3"), "cali_v4_ct3").unwrap();
    plant::pin_map(&b.join("cilium/cilium_calls"), "cilium_calls").unwrap();
    plant::pin_map(&b.join("cilium/old/cali_jump2"), "cali_jump2").unwrap();
    let outside = sb.dir.path.join("outside");
    fs::create_dir_all(outside.join("sub")).unwrap();
    fs::write(outside.join("calico_connect_v4"), "not a pin").unwrap();
    fs::write(outside.join("sub/cali_jump2"), "not a pin").unwrap();
    let links: [(&str, &Path); 7] = [
        ("tc/globals/old_jumps", Path::new("../../cilium")),
        ("ctlb", &outside),
        ("netkit", &outside),
        ("calico_connect4", Path::new("cilium")),
        ("tcx", Path::new("cilium/old")),
        ("tc/eth1_igr", Path::new("../cilium/old")),
        ("calico_connect_v6", Path::new("tc/globals/cali_v4_ct3")),
    ];
    for (at, to) in links {
        symlink(to, b.join(at)).unwrap();
    }
    sb.set_mode(Some("iptables")).unwrap();
    let before = sb.snapshot();
    let outside_before = fs::read_dir(&outside).unwrap().count();

    let out = guard_ok(&sb, &["sweep", "--json"], 1);
    for (at, _) in links {
        assert_named(&out, &b.join(at), "not inspected: a symlink, not followed");
    }
    assert_removed_exactly(&before, &sb.snapshot(), &["pin tc/globals/cali_v4_ct3"]);
    assert_eq!(fs::read_dir(&outside).unwrap().count(), outside_before);
    assert!(outside.join("sub/cali_jump2").exists());

    // Nothing stale is left where the guard could look, but it could not look everywhere.
    let check = guard_ok(&sb, &["check"], 2);
    assert!(stdout(&check).contains("cannot tell"), "{}", stdout(&check));
}

/// `tc/globals` (and so `old_jumps` below it) as a symlink to another tool's directory of
/// Calico-named maps: named, not followed, the maps stay.
#[test]
fn a_symlinked_tc_globals_is_not_followed() {
    let Some(sb) = sandbox("hostile-globals") else {
        return;
    };
    let b = &sb.bpffs.path;
    plant::pin_map(&b.join("other/cali_v4_ct3"), "cali_v4_ct3").unwrap();
    plant::pin_map(&b.join("other/old_jumps/1/cali_jump2"), "cali_jump2").unwrap();
    plant::pin_map(&b.join("ctlb/calico_connect_v4"), "cali_ctlb_conn").unwrap();
    fs::create_dir_all(b.join("tc")).unwrap();
    symlink("../other", b.join("tc/globals")).unwrap();
    sb.set_mode(Some("iptables")).unwrap();
    let before = sb.snapshot();
    let out = guard_ok(&sb, &["sweep", "--json"], 1);
    assert_named(
        &out,
        &b.join("tc/globals"),
        "not inspected: a symlink, not followed",
    );
    assert_removed_exactly(&before, &sb.snapshot(), &[]);
}

/// A mount where Calico's objects would be (a tmpfs, or another bpffs instance holding
/// Calico-named pins) is named and not entered.
#[test]
fn mounts_in_calicos_places_are_named_and_not_entered() {
    let Some(sb) = stale_host("hostile-mounts") else {
        return;
    };
    let b = &sb.bpffs.path;
    let tmpfs = Mounted::new("tmpfs", &b.join("calico_connect4"));
    fs::write(tmpfs.0.join("calico_connect_v4"), "not a pin").unwrap();
    let other = Mounted::new("bpf", &b.join("tcx"));
    let netkit = Mounted::new("tmpfs", &b.join("netkit"));
    fs::write(netkit.0.join("cali0_primary"), "not a pin").unwrap();
    plant::pin_map(&other.0.join("cali_v4_ct3"), "cali_v4_ct3").unwrap();
    let jumps = b.join("tc/globals/old_jumps/8f2c1a");
    let inner = Mounted::new("bpf", &jumps.join("nested"));
    plant::pin_map(&inner.0.join("cali_jump2"), "cali_jump2").unwrap();
    let before = sb.snapshot();
    let planted_inside = [
        "pin calico_connect4/calico_connect_v4",
        "pin tcx/cali_v4_ct3",
        "pin netkit/cali0_primary",
        "pin tc/globals/old_jumps/8f2c1a/nested/cali_jump2",
    ];
    for p in planted_inside {
        assert!(before.contains(p), "fixture missing {p}");
    }

    let out = guard_ok(&sb, &["sweep", "--json"], 1);
    for at in [&tmpfs.0, &other.0, &netkit.0, &inner.0] {
        assert_named(
            &out,
            at,
            "not inspected: another file system is mounted there",
        );
    }
    // old_jumps/8f2c1a keeps the mount point, so it and old_jumps stay.
    let removed: Vec<&str> = plant::CALICO_HOST
        .iter()
        .copied()
        .filter(|l| {
            !matches!(
                *l,
                "dir tc/globals/old_jumps/8f2c1a/" | "dir tc/globals/old_jumps/"
            )
        })
        .collect();
    assert_removed_exactly(&before, &sb.snapshot(), &removed);
}

/// Names are bytes: a per-interface directory whose name is not UTF-8 is Calico's like any
/// other (it was skipped, and `check` said clean), and a newline in a pin name is shown
/// escaped, never as a line of its own.
#[test]
fn names_that_are_not_text_are_swept_and_shown_escaped() {
    let Some(sb) = sandbox("hostile-names") else {
        return;
    };
    let b = &sb.bpffs.path;
    let iface_dir = b.join(OsStr::from_bytes(b"tc/eth\xff0_igr"));
    plant::pin_map(&iface_dir.join("cali_jump3"), "cali_jump3").unwrap();
    let forged = b.join(OsStr::from_bytes(
        b"tc/globals/cali_v4_ct3\nwarning: forged\x1b[2K",
    ));
    plant::pin_map(&forged, "cali_v4_ct3").unwrap();
    plant::pin_map(&b.join("tc/globals/cilium_calls"), "cilium_calls").unwrap();
    sb.set_mode(Some("iptables")).unwrap();

    let check = guard_ok(&sb, &["check"], 1);
    assert!(
        stdout(&check).contains("eth\\xff0_igr"),
        "{}",
        stdout(&check)
    );

    let before = sb.snapshot();
    let out = guard_ok(&sb, &["sweep"], 0);
    let text = stdout(&out);
    assert!(
        !text.lines().any(|l| l.starts_with("warning: forged")) && !text.contains('\x1b'),
        "{text}"
    );
    assert!(
        text.contains("cali_v4_ct3\\nwarning: forged\\x1b[2K"),
        "{text}"
    );
    assert_removed_exactly(
        &before,
        &sb.snapshot(),
        &[
            "pin tc/eth\\xff0_igr/cali_jump3",
            "dir tc/eth\\xff0_igr/",
            "pin tc/globals/cali_v4_ct3\\nwarning: forged\\x1b[2K",
        ],
    );
}

/// Make `depth` nested directories of 200-byte names under `top`, through directory fds (a path
/// this long cannot be made by name), and return the deepest one's fd and its path below `top`.
fn deep_dirs(top: &Path, depth: usize) -> (OwnedFd, PathBuf) {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let mut fd = nix::fcntl::open(top, flags, Mode::empty()).unwrap();
    let mut rel = PathBuf::new();
    for i in 0..depth {
        let name = format!("{i:02}{}", "d".repeat(198));
        mkdirat(&fd, name.as_str(), Mode::from_bits_truncate(0o755)).unwrap();
        fd = openat(&fd, name.as_str(), flags, Mode::empty()).unwrap();
        rel.push(name);
    }
    (fd, rel)
}

/// A repin directory and a cgroup deeper than PATH_MAX (4,096 bytes) are walked and swept like
/// any other: either stopped the whole sweep.
#[test]
fn paths_longer_than_path_max_are_swept() {
    let Some(sb) = stale_host("hostile-pathmax") else {
        return;
    };
    let jumps = sb.bpffs.path.join("tc/globals/old_jumps");
    let (deepest, rel) = deep_dirs(&jumps, 24);
    assert!(jumps.join(&rel).as_os_str().len() > 4096);
    let map = calico_bpf_testkit::progs::map("cali_jump2").unwrap();
    // bpf(2) takes a path: through this process's fd of the deepest directory it is short.
    let via_fd = format!("/proc/self/fd/{}/cali_jump2", deepest.as_raw_fd());
    calico_bpf_testkit::bpf::obj_pin(std::os::fd::AsFd::as_fd(&map), Path::new(&via_fd)).unwrap();
    // Holding the map would be a live dataplane to the interlock.
    drop((deepest, map));
    let (cgroup, cgroup_rel) = deep_dirs(&sb.cgroup.path, 24);
    let prog = calico_bpf_testkit::progs::load_for_hook(
        SOCK_ADDR,
        "calico_connect_v6",
        plant::CONNECT6,
        false,
    )
    .unwrap();
    calico_bpf_testkit::bpf::prog_attach(
        Target::Fd(cgroup.as_fd()),
        prog.as_fd(),
        plant::CONNECT6,
        plant::MULTI,
    )
    .unwrap();
    drop((cgroup, prog));

    let before = sb.snapshot();
    let mut removed: Vec<String> = plant::CALICO_HOST.iter().map(|s| s.to_string()).collect();
    let mut at = PathBuf::from("tc/globals/old_jumps");
    for part in rel.components() {
        at.push(part);
        removed.push(format!("dir {}/", at.display()));
    }
    removed.push(format!("pin {}/cali_jump2", at.display()));
    removed.push(format!(
        "cgroup {} connect6 calico_connect_ multi",
        cgroup_rel.display()
    ));
    let removed: Vec<&str> = removed.iter().map(String::as_str).collect();
    guard_ok(&sb, &["sweep"], 0);
    assert_removed_exactly(&before, &sb.snapshot(), &removed);
}

fn close_to_others(dir: &Path) {
    chown(dir, Some(65534), Some(65534)).unwrap();
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).unwrap();
}

/// A delegated cgroup whose unprivileged owner closed it costs a warning naming it; every
/// other cgroup is still swept (one unreadable cgroup aborted the whole sweep).
#[test]
fn an_unreadable_delegated_cgroup_costs_a_warning_not_the_sweep() {
    let Some(sb) = stale_host("hostile-cgroup") else {
        return;
    };
    let delegated = sb.cgroup.child("delegated").unwrap();
    let inside = sb.cgroup.child("delegated/pod").unwrap();
    plant::attach(
        &inside,
        SOCK_ADDR,
        "calico_connect_v6",
        plant::CONNECT6,
        plant::MULTI,
        false,
    )
    .unwrap();
    let sibling = sb.cgroup.child("sibling").unwrap();
    plant::attach(
        &sibling,
        SOCK_ADDR,
        "calico_connect_v6",
        plant::CONNECT6,
        plant::MULTI,
        false,
    )
    .unwrap();
    close_to_others(&delegated);
    let before = sb.snapshot();

    let out = guard_with_unit_caps(&sb, &[], &["sweep", "--json"], &[]);
    assert_eq!(code(&out), 1, "{}{}", stdout(&out), stderr(&out));
    assert_named(&out, &delegated, "not inspected: Permission denied");
    let mut removed: Vec<&str> = plant::CALICO_HOST.to_vec();
    removed.push("cgroup sibling connect6 calico_connect_ multi");
    assert_removed_exactly(&before, &sb.snapshot(), &removed);

    let check = guard_with_unit_caps(&sb, &[], &["check"], &[]);
    assert_eq!(code(&check), 2, "{}", stdout(&check));
}

/// A `tc/` the unit cannot read hides `tc/globals`, its repins and the per-interface
/// directories: each is named, the sweep still removes everything else and exits 1 (it read
/// an unreadable `tc/` as empty and exited 0).
#[test]
fn an_unreadable_tc_directory_is_named_and_the_rest_swept() {
    let Some(sb) = stale_host("hostile-tc") else {
        return;
    };
    let tc = sb.bpffs.path.join("tc");
    close_to_others(&tc);
    let before = sb.snapshot();

    let out = guard_with_unit_caps(&sb, &[], &["sweep", "--json"], &[]);
    assert_eq!(code(&out), 1, "{}{}", stdout(&out), stderr(&out));
    assert_named(&out, &tc, "not inspected: Permission denied");
    let removed: Vec<&str> = plant::CALICO_HOST
        .iter()
        .copied()
        .filter(|l| !l.contains(" tc/"))
        .collect();
    assert_removed_exactly(&before, &sb.snapshot(), &removed);
}

/// A pin is removed only if it still holds the object planned: a Calico map's pin replaced by
/// another tool's map between scan and apply is kept, and reported as kept.
#[test]
fn a_pin_swapped_between_scan_and_apply_is_kept() {
    let Some(sb) = sandbox("hostile-pin-swap") else {
        return;
    };
    let g = sb.bpffs.path.join("tc/globals");
    plant::pin_map(&g.join("cali_v4_ct3"), "cali_v4_ct3").unwrap();
    plant::pin_map(&g.join("cali_v4_nat_fe3"), "cali_v4_nat_fe3").unwrap();
    sb.set_mode(Some("iptables")).unwrap();
    let before = sb.snapshot();

    let paused = paused_sweep(&sb);
    fs::remove_file(g.join("cali_v4_ct3")).unwrap();
    plant::pin_map(&g.join("cali_v4_ct3"), "cilium_calls").unwrap();
    let out = paused.resume();
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let report = json(&out);
    let kept: Vec<&serde_json::Value> = report["objects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["result"] == "kept")
        .collect();
    assert_eq!(kept.len(), 1, "{report}");
    assert!(kept[0]["where"]
        .as_str()
        .unwrap()
        .ends_with("tc/globals/cali_v4_ct3"));
    assert_eq!(
        kept[0]["detail"],
        "another file was pinned there since the scan"
    );
    assert_removed_exactly(&before, &sb.snapshot(), &["pin tc/globals/cali_v4_nat_fe3"]);
}

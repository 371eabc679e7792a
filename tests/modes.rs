//! The decision (mode file, on_missing_mode, --force), dry run, check, bad input, and the
//! command-line contract, each against a full stale node.

mod common;
use common::*;

/// A node with every kind of stale Calico object beside foreign ones.
fn stale_node(test: &str) -> Option<Sandbox> {
    let sb = sandbox(test)?;
    plant::calico_host(&sb.bpffs.path, &sb.cgroup.path).unwrap();
    sb.netns().enter(plant::calico_network).unwrap();
    Some(sb)
}

fn all_calico() -> Vec<&'static str> {
    plant::CALICO_HOST
        .iter()
        .chain(&plant::CALICO_NETWORK)
        .copied()
        .collect()
}

#[test]
fn ebpf_on_touches_nothing() {
    let Some(sb) = stale_node("mode-bpf") else {
        return;
    };
    sb.set_mode(Some("BPF")).unwrap();
    let before = sb.snapshot();
    let out = guard_ok(&sb, &["sweep"], 0);
    assert!(
        stdout(&out).contains("eBPF dataplane is on"),
        "{}",
        stdout(&out)
    );
    // --force does not override a mode file that says eBPF is on.
    guard_ok(&sb, &["sweep", "--force"], 0);
    guard_ok(&sb, &["check"], 0);
    assert_eq!(sb.snapshot(), before);
}

#[test]
fn missing_mode_file_skips_unless_told() {
    let Some(sb) = stale_node("mode-missing") else {
        return;
    };
    sb.set_mode(None).unwrap();
    let before = sb.snapshot();
    let out = guard_ok(&sb, &["sweep"], 0);
    assert!(stdout(&out).contains("no mode file"), "{}", stdout(&out));
    assert_eq!(sb.snapshot(), before);
    // Stale objects but no mode: check cannot tell.
    guard_ok(&sb, &["check"], 2);

    guard_ok(&sb, &["sweep", "--force"], 0);
    assert_removed_exactly(&before, &sb.snapshot(), &all_calico());
}

#[test]
fn on_missing_mode_sweep() {
    let Some(sb) = stale_node("mode-missing-sweep") else {
        return;
    };
    sb.set_mode(None).unwrap();
    sb.write_config("on_missing_mode = \"sweep\"\n").unwrap();
    let before = sb.snapshot();
    guard_ok(&sb, &["check"], 1);
    guard_ok(&sb, &["sweep"], 0);
    assert_removed_exactly(&before, &sb.snapshot(), &all_calico());
    guard_ok(&sb, &["check"], 0);
}

#[test]
fn dry_run_lists_everything_and_changes_nothing() {
    let Some(sb) = stale_node("mode-dry") else {
        return;
    };
    sb.set_mode(Some("iptables")).unwrap();
    let before = sb.snapshot();
    let report = json(&guard_ok(&sb, &["sweep", "--dry-run", "--json"], 0));
    assert_eq!(sb.snapshot(), before);
    let objects = report["objects"].as_array().unwrap();
    // 6 cgroup attachments, 9 pins, 3 directories, 3 filters, 1 XDP, 1 device.
    assert_eq!(objects.len(), 23, "{report:#}");
    assert_eq!(report["summary"]["planned"], 23);
    for o in objects {
        assert!(o.get("result").is_none(), "a dry run acts on nothing: {o}");
        assert!(!o["why"].as_str().unwrap().is_empty());
        assert!(!o["where"].as_str().unwrap().is_empty());
    }
    let text = stdout(&guard_ok(&sb, &["sweep", "--dry-run"], 0));
    for needle in [
        "calico_connect_v4",
        "cali_tc_preambl",
        "cali_xdp_preamb",
        "bpfin.cali",
        "why:",
        "planned",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    assert_eq!(sb.snapshot(), before);
}

#[test]
fn check_before_and_after() {
    let Some(sb) = stale_node("mode-check") else {
        return;
    };
    sb.set_mode(Some("iptables")).unwrap();
    let report = json(&guard_ok(&sb, &["check", "--json"], 1));
    assert_eq!(report["ebpf"], "off");
    assert_eq!(report["summary"]["planned"], 23);
    let before = sb.snapshot();
    let swept = json(&guard_ok(&sb, &["sweep", "--json"], 0));
    assert_eq!(swept["summary"]["removed"], 23, "{swept:#}");
    assert_eq!(swept["summary"]["failed"], 0);
    assert_removed_exactly(&before, &sb.snapshot(), &all_calico());
    guard_ok(&sb, &["check"], 0);
}

#[test]
fn invalid_mode_file_is_78_and_touches_nothing() {
    let Some(sb) = stale_node("mode-invalid") else {
        return;
    };
    let before = sb.snapshot();
    for (text, want) in [
        (
            "dataplane = \"ebpf\"\n",
            "line 1, key `dataplane`: `ebpf` is not one of",
        ),
        (
            "dataplane = \"iptables\"\nsource = 3\n",
            "line 2, key `source`",
        ),
        ("mode = \"iptables\"\n", "unknown field `mode`"),
    ] {
        calico_bpf_testkit::sandbox::write_file(&sb.mode_file, text).unwrap();
        for cmd in [
            &["sweep"][..],
            &["sweep", "--force"],
            &["check"],
            &["mode", "show"],
        ] {
            let out = guard_ok(&sb, cmd, 78);
            let err = stderr(&out);
            assert!(
                err.contains(&sb.mode_file.display().to_string()) && err.contains(want),
                "{cmd:?}: {err}"
            );
        }
    }
    assert_eq!(sb.snapshot(), before);
}

/// Whoever can change a directory above the mode file decides whether root deletes things
/// (they can replace the file, or remove it and choose `on_missing_mode`): such a mode file is
/// refused, 78, naming the directory, and nothing is touched.
#[test]
fn a_mode_file_in_a_directory_others_can_change_is_78() {
    use std::os::unix::fs::{chown, PermissionsExt};
    let Some(sb) = stale_node("mode-dir") else {
        return;
    };
    let dir = sb.mode_file.parent().unwrap().to_path_buf();
    let set = |mode: u32, uid: u32| {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
        chown(&dir, Some(uid), None).unwrap();
    };
    let before = sb.snapshot();
    for (mode, uid, want) in [
        (0o777, 0, "is writable by group or others (mode 0777)"),
        (0o775, 0, "is writable by group or others (mode 0775)"),
        (0o755, 65534, "is owned by uid 65534, not root"),
    ] {
        set(mode, uid);
        for present in [true, false] {
            if !present {
                sb.set_mode(None).unwrap();
            }
            for cmd in [&["sweep"][..], &["sweep", "--force"], &["check"]] {
                let out = guard_ok(&sb, cmd, 78);
                let err = stderr(&out);
                assert!(
                    err.contains(&format!("directory {} that {want}", dir.display())),
                    "{mode:o} {uid} present={present} {cmd:?}: {err}"
                );
            }
            sb.set_mode(Some("iptables")).unwrap();
        }
    }
    assert_eq!(sb.snapshot(), before);
    // Back to root's 0755: the same node is swept.
    set(0o755, 0);
    guard_ok(&sb, &["sweep"], 0);
}

/// The trust check walks the path as it is named: a symlink on the way counts only if root owns
/// it and its own directory passes, so a link to a root-owned file, placed in a directory that
/// others can write (or owned by someone else), does not make the file trusted. Root-owned links
/// in root-owned directories (`/var/run -> /run`) still work. The same for `--config`.
#[test]
fn a_mode_file_reached_through_a_link_others_control_is_78() {
    use std::os::unix::fs::{lchown, symlink, PermissionsExt};
    let Some(sb) = stale_node("mode-link") else {
        return;
    };
    let top = sb.dir.path.join("links");
    let safe = top.join("safe");
    let open = top.join("open");
    std::fs::create_dir_all(&safe).unwrap();
    std::fs::create_dir_all(&open).unwrap();
    std::fs::set_permissions(&top, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&safe, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let real = safe.join("mode.toml");
    calico_bpf_testkit::sandbox::write_file(&real, "dataplane = \"iptables\"\n").unwrap();
    let config_text = std::fs::read_to_string(&sb.config).unwrap();
    let with_mode_file = |mode_file: &std::path::Path| {
        let text = config_text
            .lines()
            .filter(|l| !l.starts_with("mode_file"))
            .chain([format!("mode_file = \"{}\"", mode_file.display()).as_str()])
            .collect::<Vec<_>>()
            .join("\n");
        calico_bpf_testkit::sandbox::write_file(&sb.config, &(text + "\n")).unwrap();
    };
    let in_open = open.join("mode.toml");
    symlink(&real, &in_open).unwrap();
    let foreign = safe.join("foreign.toml");
    symlink(&real, &foreign).unwrap();
    lchown(&foreign, Some(65534), None).unwrap();
    let linked_dir = top.join("safe-link");
    symlink("safe", &linked_dir).unwrap();
    let before = sb.snapshot();
    for (mode_file, want) in [
        (
            in_open.clone(),
            format!(
                "directory {} that is writable by group or others (mode 0777)",
                open.display()
            ),
        ),
        (
            foreign.clone(),
            format!("symlink {} owned by uid 65534, not root", foreign.display()),
        ),
    ] {
        with_mode_file(&mode_file);
        for cmd in [&["sweep"][..], &["check"]] {
            let out = guard_ok(&sb, cmd, 78);
            assert!(stderr(&out).contains(&want), "{cmd:?}: {}", stderr(&out));
        }
    }
    assert_eq!(sb.snapshot(), before);
    // The config file itself, named through the open directory.
    let config_in_open = open.join("config.toml");
    symlink(&sb.config, &config_in_open).unwrap();
    let out = std::process::Command::new(GUARD)
        .args(["--config", config_in_open.to_str().unwrap(), "mode", "show"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 78, "{}", stderr(&out));
    assert!(stderr(&out).contains("mode 0777"), "{}", stderr(&out));
    // Root's links in root's directories are followed: the node is swept.
    with_mode_file(&linked_dir.join("mode.toml"));
    guard_ok(&sb, &["sweep"], 0);
    assert_removed_exactly(&before, &sb.snapshot(), &all_calico());
}

/// `none` (Calico is not this node's dataplane any more) sweeps like iptables, from `mode set`.
#[test]
fn mode_none_sweeps_like_iptables() {
    let Some(sb) = stale_node("mode-none") else {
        return;
    };
    sb.set_mode(None).unwrap();
    guard_ok(
        &sb,
        &["mode", "set", "none", "--source", "calico removed"],
        0,
    );
    let shown = stdout(&guard_ok(&sb, &["mode", "show"], 0));
    assert!(shown.contains("dataplane = \"none\""), "{shown}");
    let before = sb.snapshot();
    guard_ok(&sb, &["check"], 1);
    let out = guard_ok(&sb, &["sweep"], 0);
    assert!(
        stdout(&out).contains("the mode file says none"),
        "{}",
        stdout(&out)
    );
    assert_removed_exactly(&before, &sb.snapshot(), &all_calico());
    guard_ok(&sb, &["check"], 0);
}

#[test]
fn invalid_config_is_78_and_touches_nothing() {
    let Some(sb) = stale_node("mode-badconfig") else {
        return;
    };
    sb.set_mode(Some("iptables")).unwrap();
    let before = sb.snapshot();
    sb.write_config("on_missing_mode = \"sometimes\"\n")
        .unwrap();
    let out = guard_ok(&sb, &["sweep"], 78);
    let err = stderr(&out);
    assert!(err.contains(&sb.config.display().to_string()), "{err}");
    assert!(
        err.contains("line 5, key `on_missing_mode`: unknown variant `sometimes`"),
        "{err}"
    );
    sb.write_config("bpffs_root = [\"/sys/fs/bpf\"]\n").unwrap();
    assert!(
        stderr(&guard_ok(&sb, &["check"], 78)).contains("line 5, key `bpffs_root`: unknown field")
    );
    assert_eq!(sb.snapshot(), before);

    // A config file named on the command line must exist.
    let missing = sb.dir.path.join("nope.toml");
    let out = std::process::Command::new(GUARD)
        .arg("--config")
        .arg(&missing)
        .arg("check")
        .output()
        .unwrap();
    assert_eq!(code(&out), 78);
    assert!(
        stderr(&out).contains("nope.toml: does not exist"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn mode_set_and_show() {
    let Some(sb) = sandbox("mode-set") else {
        return;
    };
    let nested = sb.dir.path.join("new/dir/mode.toml");
    let config = format!(
        "mode_file = \"{}\"\nlock_file = \"{}/l\"\n",
        nested.display(),
        sb.dir.path.display()
    );
    calico_bpf_testkit::sandbox::write_file(&sb.config, &config).unwrap();
    guard_ok(
        &sb,
        &[
            "mode",
            "set",
            "NFTables",
            "--source",
            "cloud-init \"node-7\"",
        ],
        0,
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&nested).unwrap().permissions().mode() & 0o7777,
        0o644
    );
    let shown = stdout(&guard_ok(&sb, &["mode", "show"], 0));
    assert!(shown.contains("dataplane = \"nftables\""), "{shown}");
    assert!(
        shown.contains("source = \"cloud-init \\\"node-7\\\"\""),
        "{shown}"
    );
    assert!(shown.contains("updated = 20"), "{shown}");
    guard_ok(&sb, &["mode", "set", "bpf"], 0);
    assert!(stdout(&guard_ok(&sb, &["mode", "show"], 0)).contains("dataplane = \"bpf\""));
    // No temporary files left beside it.
    let names: Vec<_> = std::fs::read_dir(nested.parent().unwrap())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names, ["mode.toml"]);
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["frobnicate"][..],
        &["mode", "set", "ebpf"],
        &["sweep", "--now"],
        &[],
    ] {
        let out = std::process::Command::new(GUARD)
            .args(args)
            .output()
            .unwrap();
        assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
    }
    let help = std::process::Command::new(GUARD)
        .arg("--help")
        .output()
        .unwrap();
    assert_eq!(code(&help), 0);
    let text = stdout(&help);
    for cmd in ["sweep", "check", "mode", "--config"] {
        assert!(text.contains(cmd), "{text}");
    }
}

/// Under systemd, stdout and stderr are the journal: log lines carry `<N>` severities and each
/// removed object is logged once (no table beside the log lines).
#[test]
fn journal_gets_one_line_per_object_with_severity() {
    use std::os::unix::fs::MetadataExt;
    let Some(sb) = stale_node("mode-journal") else {
        return;
    };
    sb.set_mode(Some("iptables")).unwrap();
    // As under the unit: stdout and stderr are one stream, the one JOURNAL_STREAM names.
    let journal_path = sb.dir.path.join("journal");
    let journal = std::fs::File::create(&journal_path).unwrap();
    let meta = journal.metadata().unwrap();
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net={}", sb.netns().path().display()))
        .arg("--")
        .arg(GUARD)
        .arg("--config")
        .arg(&sb.config)
        .arg("sweep")
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .stdout(journal.try_clone().unwrap())
        .stderr(journal)
        .status()
        .unwrap();
    let journal = std::fs::read_to_string(&journal_path).unwrap();
    assert_eq!(out.code(), Some(0), "{journal}");
    // No table: every line is a log line with a severity.
    assert!(
        journal.lines().all(|l| l.starts_with('<')),
        "every line has a severity: {journal}"
    );
    let removed: Vec<&str> = journal
        .lines()
        .filter(|l| l.starts_with("<5>removed: "))
        .collect();
    assert_eq!(removed.len(), 23, "{journal}");
    assert!(
        journal.lines().any(|l| l.starts_with("<5>swept (")),
        "{journal}"
    );
}

//! The live-dataplane interlock: a process holding a Calico object means eBPF is alive.

mod common;
use calico_bpf_testkit::progs;
use common::*;
use plant::CONNECT6;
use progs::SOCK_ADDR;

/// A stale node where this test process holds an unpinned Calico link in a pod cgroup, as a
/// running Felix would; with the snapshot taken before any sweep.
fn stale_node_with_live_holder(test: &str) -> Option<(Sandbox, std::os::fd::OwnedFd, Snapshot)> {
    let sb = sandbox(test)?;
    plant::calico_host(&sb.bpffs.path, &sb.cgroup.path).unwrap();
    let pod = sb.cgroup.child("pod").unwrap();
    let held = plant::link(&pod, SOCK_ADDR, "calico_connect_v6", CONNECT6, None, false)
        .unwrap()
        .expect("an unpinned link comes back as an fd");
    sb.set_mode(Some("iptables")).unwrap();
    let before = sb.snapshot();
    Some((sb, held, before))
}

#[test]
fn a_live_holder_refuses_the_sweep_until_forced() {
    let Some((sb, held, before)) = stale_node_with_live_holder("interlock") else {
        return;
    };

    let out = guard_ok(&sb, &["sweep"], 1);
    let me = std::process::id().to_string();
    assert!(
        stderr(&out).contains(&format!("pid {me}")),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).contains("refused"), "{}", stdout(&out));
    assert_eq!(sb.snapshot(), before, "a refused sweep touches nothing");

    let report = json(&guard_ok(&sb, &["check", "--json"], 1));
    assert_eq!(
        report["holders"][0]["pid"].as_u64(),
        Some(u64::from(std::process::id()))
    );

    // The dry run shows the holder and still changes nothing.
    let dry = stdout(&guard_ok(&sb, &["sweep", "--dry-run"], 0));
    assert!(
        dry.contains("live: pid") && dry.contains("would be refused"),
        "{dry}"
    );

    guard_ok(&sb, &["sweep", "--force"], 0);
    let mut removed: Vec<&str> = plant::CALICO_HOST.to_vec();
    removed.push("cgroup pod connect6 calico_connect_ multi");
    assert_removed_exactly(&before, &sb.snapshot(), &removed);
    drop(held);
}

/// Without CAP_SYS_PTRACE, /proc hides the fds of a more privileged process (a live Felix is
/// one); the kernel's task_file iterator does not, so the guard still sees the holder.
#[test]
fn a_more_privileged_holder_is_seen_without_ptrace() {
    // This test process has every capability; the guard below lacks CAP_SYS_PTRACE.
    let Some((sb, held, before)) = stale_node_with_live_holder("interlock-ptrace") else {
        return;
    };
    let without_ptrace = |args: &[&str]| {
        std::process::Command::new("nsenter")
            .arg(format!("--net={}", sb.netns().path().display()))
            .args([
                "--",
                "setpriv",
                "--inh-caps=-all",
                "--bounding-set=-all,+sys_admin,+net_admin",
                "--",
            ])
            .arg(GUARD)
            .arg("--config")
            .arg(&sb.config)
            .args(args)
            .output()
            .unwrap()
    };
    let out = without_ptrace(&["sweep"]);
    assert_eq!(code(&out), 1, "{}{}", stdout(&out), stderr(&out));
    let me = std::process::id().to_string();
    assert!(
        stderr(&out).contains(&format!("pid {me}")),
        "{}",
        stderr(&out)
    );
    assert_eq!(sb.snapshot(), before);

    // Closing the only fd on an unpinned link detaches it; the rest is swept.
    drop(held);
    let out = without_ptrace(&["sweep", "--force"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let mut removed: Vec<&str> = plant::CALICO_HOST.to_vec();
    removed.push("cgroup pod connect6 calico_connect_ multi");
    assert_removed_exactly(&before, &sb.snapshot(), &removed);
}

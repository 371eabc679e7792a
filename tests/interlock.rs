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

/// The guard as the shipped unit runs it, with a /proc that lists only the processes it may
/// ptrace. (`ProtectProc=invisible` alone still lists every process to group root, the proc
/// mount's default `gid=`; with another `gid=` the privileged ones vanish: the strictest view
/// the guard may be given.)
fn guard_without_ptrace(sb: &Sandbox, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let private_proc = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        r#"mount -t proc -o hidepid=invisible,gid=65534 proc /proc && exec "$@""#,
        "sh",
    ];
    guard_with_unit_caps(sb, &private_proc, args, env)
}

/// Without CAP_SYS_PTRACE, /proc hides the fds of a more privileged process (a live Felix is
/// one); the kernel's task_file iterator does not, so the guard still sees the holder.
#[test]
fn a_more_privileged_holder_is_seen_without_ptrace() {
    // This test process has every capability; the guard below lacks CAP_SYS_PTRACE.
    let Some((sb, held, before)) = stale_node_with_live_holder("interlock-ptrace") else {
        return;
    };
    let out = guard_without_ptrace(&sb, &["sweep"], &[]);
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
    let out = guard_without_ptrace(&sb, &["sweep", "--force"], &[]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let mut removed: Vec<&str> = plant::CALICO_HOST.to_vec();
    removed.push("cgroup pod connect6 calico_connect_ multi");
    assert_removed_exactly(&before, &sb.snapshot(), &removed);
}

/// Where the task_file iterator is missing (no BTF, or a kernel before 5.8) the interlock reads
/// /proc. Without CAP_SYS_PTRACE that shows nothing of a privileged Felix (under the unit's
/// `ProtectProc=invisible` not even its pid), so the guard refuses rather than see nobody; with
/// CAP_SYS_PTRACE it finds the holder there.
#[test]
fn the_proc_fallback_refuses_when_it_cannot_see_every_process() {
    let Some((sb, held, before)) = stale_node_with_live_holder("interlock-proc") else {
        return;
    };
    let no_iterator = [("FAILPOINTS", "task-files=return(no task_file iterator)")];
    let me = std::process::id().to_string();

    // With CAP_SYS_PTRACE, /proc shows the holder.
    let out = sb.guard_env(&["sweep"], &no_iterator);
    assert_eq!(code(&out), 1, "{}{}", stdout(&out), stderr(&out));
    assert!(
        stderr(&out).contains(&format!("pid {me}")),
        "{}",
        stderr(&out)
    );
    assert_eq!(sb.snapshot(), before);

    // Without it the holder is not even listed: the guard refuses, for it cannot see every
    // process, not for what it saw.
    let out = guard_without_ptrace(&sb, &["sweep"], &no_iterator);
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(code(&out), 1, "{all}");
    assert!(stdout(&out).contains("refused"), "{all}");
    assert!(
        all.contains("no task_file iterator") && all.contains("CAP_SYS_PTRACE"),
        "{all}"
    );
    assert!(!all.contains(&format!("pid {me}")), "{all}");
    assert_eq!(sb.snapshot(), before, "a refused sweep touches nothing");

    // check has nothing to refuse, but must not read "no holder seen" as "none".
    let out = guard_without_ptrace(&sb, &["check", "--json"], &no_iterator);
    let report = json(&out);
    assert_eq!(code(&out), 1, "{report}");
    assert!(
        report["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap_or("").contains("CAP_SYS_PTRACE")),
        "{report}"
    );

    // An operator who knows the node can still force it.
    drop(held);
    let out = guard_without_ptrace(&sb, &["sweep", "--force"], &no_iterator);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let mut removed: Vec<&str> = plant::CALICO_HOST.to_vec();
    removed.push("cgroup pod connect6 calico_connect_ multi");
    assert_removed_exactly(&before, &sb.snapshot(), &removed);
}

/// A process that starts holding a Calico map mid-sweep, after the interlock first looked (as a
/// Felix that starts while the guard detaches would), stops the sweep at the next checkpoint,
/// before any pin is unlinked: what was detached stays detached, every pin and map stays, the
/// holder is named, exit 1. Once it lets go the next sweep removes the rest.
#[test]
fn a_holder_that_comes_mid_sweep_stops_the_rest() {
    let Some(sb) = sandbox("interlock-late") else {
        return;
    };
    plant::calico_host(&sb.bpffs.path, &sb.cgroup.path).unwrap();
    sb.set_mode(Some("iptables")).unwrap();
    let before = sb.snapshot();

    let paused = paused_at(&sb, "checkpoint");
    let map = sb.bpffs.path.join("tc/globals/cali_v4_ct3");
    let held = calico_bpf_guard::kernel::bpf::obj_get(&map).unwrap();
    let out = paused.resume();
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(code(&out), 1, "{all}");
    let me = std::process::id();
    assert!(
        stderr(&out).contains(&format!("live eBPF dataplane, mid-sweep: pid {me}")),
        "{all}"
    );
    let report = json(&out);
    assert!(
        report["decision"]
            .as_str()
            .is_some_and(|d| d.starts_with("stopped mid-sweep")),
        "{report}"
    );
    // The detaches ran; nothing after the checkpoint did.
    let detached: Vec<&str> = plant::CALICO_HOST
        .iter()
        .copied()
        .filter(|o| o.starts_with("cgroup "))
        .collect();
    assert_eq!(detached.len(), 6);
    assert_removed_exactly(&before, &sb.snapshot(), &detached);

    drop(held);
    let out = guard_ok(&sb, &["sweep"], 0);
    assert!(
        stderr(&out).contains("interlock: the last look for holders began"),
        "{}",
        stderr(&out)
    );
    let removed: Vec<&str> = plant::CALICO_HOST.to_vec();
    assert_removed_exactly(&before, &sb.snapshot(), &removed);
}

/// The interlock holds an fd on each object of the plan while it reads its own files, in
/// batches (`interlock::BATCH`): a plan of 1,000 maps is looked at, and swept, with 400 fds. A
/// holder of a map in the last batch is still seen by the one walk of every task's files.
#[test]
fn a_plan_larger_than_the_fd_limit_is_looked_at_in_batches() {
    let Some(sb) = sandbox("interlock-batches") else {
        return;
    };
    let globals = sb.bpffs.path.join("tc/globals");
    let mut removed = Vec::new();
    for i in 0..1000 {
        let name = format!("cali_m{i}");
        plant::pin_map(&globals.join(&name), &name).unwrap();
        removed.push(format!("pin tc/globals/{name}"));
    }
    assert!(removed.len() > 2 * calico_bpf_guard::interlock::BATCH);
    sb.set_mode(Some("iptables")).unwrap();
    let before = sb.snapshot();
    // Map ids grow as they are made, and the plan's objects are batched in id order: holders
    // in the first batch and in the last.
    let held: Vec<_> = ["cali_m0", "cali_m999"]
        .iter()
        .map(|m| calico_bpf_guard::kernel::bpf::obj_get(&globals.join(m)).unwrap())
        .collect();
    let out = guard_with_fd_limit(&sb, &["sweep"], 400);
    assert_eq!(code(&out), 1, "{}{}", stdout(&out), stderr(&out));
    let me = format!("pid {}", std::process::id());
    let err = stderr(&out);
    let line = err.lines().find(|l| l.contains(&me)).unwrap_or_default();
    assert_eq!(line.matches("map ").count(), 2, "{err}");
    assert_eq!(sb.snapshot(), before, "a refused sweep touches nothing");
    drop(held);
    let out = guard_with_fd_limit(&sb, &["sweep"], 400);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let removed: Vec<&str> = removed.iter().map(String::as_str).collect();
    assert_removed_exactly(&before, &sb.snapshot(), &removed);
}

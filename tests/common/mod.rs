//! Shared by the privileged integration tests.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub use calico_bpf_testkit::{plant, Sandbox, Snapshot};

pub const GUARD: &str = env!("CARGO_BIN_EXE_calico-bpf-guard");

/// A fresh sandbox, or None (after printing why) when not root outside CI.
pub fn sandbox(test: &str) -> Option<Sandbox> {
    if !calico_bpf_testkit::have_root(test) {
        return None;
    }
    Some(Sandbox::new(test, Path::new(GUARD)).expect("creating the sandbox"))
}

pub fn lines(items: &[&str]) -> Snapshot {
    items.iter().map(|s| s.to_string()).collect()
}

/// `after` must be exactly `before` without `removed`, and everything in `removed` must have
/// been there: the fixture planted it and the guard removed it, and nothing else changed.
pub fn assert_removed_exactly(before: &Snapshot, after: &Snapshot, removed: &[&str]) {
    let removed = lines(removed);
    let missing: BTreeSet<_> = removed.difference(before).collect();
    assert!(
        missing.is_empty(),
        "the fixture did not plant: {missing:#?}"
    );
    let want: Snapshot = before.difference(&removed).cloned().collect();
    let extra: Vec<_> = after.difference(&want).collect();
    let lost: Vec<_> = want.difference(after).collect();
    assert!(
        extra.is_empty() && lost.is_empty(),
        "still there but should be gone: {extra:#?}\ngone but should be there: {lost:#?}"
    );
}

/// Sweep with the mode file saying `dataplane`, and demand that exactly `removed` went.
pub fn assert_sweep_removes(sb: &Sandbox, dataplane: &str, removed: &[&str]) {
    sb.set_mode(Some(dataplane)).unwrap();
    let before = sb.snapshot();
    guard_ok(sb, &["sweep"], 0);
    assert_removed_exactly(&before, &sb.snapshot(), removed);
}

pub fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The guard as the shipped unit runs it, in the sandbox's network namespace: CAP_SYS_ADMIN and
/// CAP_NET_ADMIN only (no CAP_DAC_OVERRIDE, no CAP_SYS_PTRACE). `wrap` goes in front (a
/// command that prepares the world and execs the rest).
pub fn guard_with_unit_caps(
    sb: &Sandbox,
    wrap: &[&str],
    args: &[&str],
    env: &[(&str, &str)],
) -> Output {
    let mut argv = wrap.to_vec();
    argv.push("nsenter");
    let mut cmd = Command::new(argv[0]);
    cmd.args(&argv[1..])
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
        .envs(env.iter().copied())
        .output()
        .expect("running the guard")
}

/// The guard in the sandbox's network namespace with at most `limit` open fds (soft and hard
/// RLIMIT_NOFILE, as `ulimit -n` gives a shell; systemd's default soft limit is 1,024).
pub fn guard_with_fd_limit(sb: &Sandbox, args: &[&str], limit: u64) -> Output {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net={}", sb.netns().path().display()))
        .arg("--")
        .arg(GUARD)
        .arg("--config")
        .arg(&sb.config)
        .args(args)
        .env_remove("JOURNAL_STREAM")
        .env_remove("NOTIFY_SOCKET");
    // SAFETY: the closure runs in the child between fork and exec and calls only setrlimit,
    // which is async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            let r = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &r) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.output().expect("running the guard")
}

/// Run the guard and demand an exit code, showing its output when it differs.
pub fn guard_ok(sb: &Sandbox, args: &[&str], want: i32) -> Output {
    let out = sb.guard(args);
    assert_eq!(
        code(&out),
        want,
        "guard {args:?}\nstdout:\n{}\nstderr:\n{}",
        stdout(&out),
        stderr(&out)
    );
    out
}

pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(out)))
}

/// A sweep paused between scan and apply (the `after-plan` failpoint's gate), for a test to
/// change the kernel's state in between.
pub struct Paused {
    child: Child,
    gate: PathBuf,
}

impl Paused {
    /// Open the gate and wait for the sweep to finish.
    pub fn resume(self) -> Output {
        fs::write(&self.gate, "").expect("opening the gate");
        self.child.wait_with_output().expect("guard output")
    }
}

/// Start a sweep that pauses between scan and apply, and return once it is paused.
pub fn paused_sweep(sb: &Sandbox) -> Paused {
    paused_at(sb, "after-plan")
}

/// Start a sweep that pauses at the failpoint `point` (one that takes a gate: `after-plan`,
/// `checkpoint`), and return once it is paused there.
pub fn paused_at(sb: &Sandbox, point: &str) -> Paused {
    let gate = sb.dir.path.join(format!("{point}.gate"));
    let mut child = Command::new("nsenter")
        .arg(format!("--net={}", sb.netns().path().display()))
        .arg("--")
        .arg(&sb.guard_bin)
        .arg("--config")
        .arg(&sb.config)
        .args(["sweep", "--json"])
        .env("FAILPOINTS", format!("{point}=return({})", gate.display()))
        .env_remove("JOURNAL_STREAM")
        .env_remove("NOTIFY_SOCKET")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the guard");
    let paused = gate.with_extension("gate.paused");
    // Generous: a guard under an emulated CPU takes seconds to scan.
    let deadline = Instant::now() + Duration::from_secs(120);
    while !paused.exists() {
        if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
            let _ = child.kill();
            let out = child.wait_with_output().expect("guard output");
            panic!(
                "the guard never paused at {point}\nstdout:\n{}\nstderr:\n{}",
                stdout(&out),
                stderr(&out)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Paused { child, gate }
}

//! Hostile or surprising input the guard must refuse or survive without touching anything: the
//! mode and config file checks, `mode set`'s atomic write, bpffs and cgroup roots that are not
//! what the config claims, a second guard, and missing CAP_SYS_ADMIN.

mod common;

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use calico_bpf_testkit::sandbox::write_file;
use common::*;
use modefile as mode;
use plant::CALICO_HOST;

/// Every refusal must be quick: a FIFO or device must not block the boot.
/// A file that would block the guard (a FIFO) or feed it for ever (`/dev/zero`) holds it until
/// it is killed: this limit tells that from a slow machine (an emulated CPU takes seconds).
const HANG: Duration = Duration::from_secs(60);

/// A sandbox (no network namespace: these tests are about files and roots) with Calico's
/// host leftovers planted and a mode file that says eBPF is off.
fn stale_host(test: &str) -> Option<Sandbox> {
    if !calico_bpf_testkit::have_root(test) {
        return None;
    }
    let sb = Sandbox::without_netns(test, Path::new(GUARD)).expect("creating the sandbox");
    plant::calico_host(&sb.bpffs.path, &sb.cgroup.path).expect("planting");
    sb.set_mode(Some("iptables"))
        .expect("writing the mode file");
    Some(sb)
}

/// Run a command, killing it (and failing) if it outlives `limit`.
fn run_within(mut cmd: Command, limit: Duration) -> Output {
    let start = Instant::now();
    let mut child = cmd
        .env_remove("JOURNAL_STREAM")
        .env_remove("NOTIFY_SOCKET")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the guard");
    while child.try_wait().expect("waiting for the guard").is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("guard output");
            panic!(
                "{cmd:?} still running after {limit:?}\nstderr:\n{}",
                stderr(&out)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("guard output")
}

fn guard_cmd(sb: &Sandbox, args: &[&str]) -> Command {
    let mut cmd = Command::new(&sb.guard_bin);
    cmd.arg("--config").arg(&sb.config).args(args);
    cmd
}

/// Replace `path` (a file, directory, FIFO or link) with nothing.
fn clear(path: &Path) {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).expect("removing a directory"),
        Ok(_) => fs::remove_file(path).expect("removing a file"),
        Err(_) => {}
    }
}

/// The ways a small root-owned file can be wrong, as `(case, reason the guard must give)`.
/// `good` is a valid text for the file: where a case has content, it is that text, so a guard
/// that skipped the check would act on it and the snapshot would show it.
fn spoil(path: &Path, case: &str, good: &str) -> &'static str {
    clear(path);
    let write = |bytes: &[u8], mode: u32| {
        fs::write(path, bytes).expect("writing");
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
    };
    match case {
        "symlink to /dev/zero" => {
            symlink("/dev/zero", path).expect("symlink");
            "is a character device, not a regular file"
        }
        "directory" => {
            fs::create_dir(path).expect("mkdir");
            "is a directory, not a regular file"
        }
        "FIFO" => {
            nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o644))
                .expect("mkfifo");
            "is a FIFO, not a regular file"
        }
        "group-writable" => {
            write(good.as_bytes(), 0o664);
            "is writable by group or others (mode 0664)"
        }
        "other-writable" => {
            write(good.as_bytes(), 0o646);
            "is writable by group or others (mode 0646)"
        }
        "owned by nobody" => {
            write(good.as_bytes(), 0o644);
            std::os::unix::fs::chown(path, Some(65534), Some(65534)).expect("chown");
            "is owned by uid 65534, not root"
        }
        "over 64 KiB" => {
            let mut text = good.to_string();
            text.push('#');
            text.push_str(&"x".repeat(64 * 1024 - text.len()));
            text.push('\n');
            write(text.as_bytes(), 0o644);
            "is 65537 bytes, larger than 65536 bytes"
        }
        "not UTF-8" => {
            let mut bytes = good.as_bytes().to_vec();
            bytes.extend_from_slice(b"# \xff\xfe\n");
            write(&bytes, 0o644);
            "is not UTF-8 text"
        }
        _ => unreachable!("{case}"),
    }
}

const CASES: [&str; 8] = [
    "symlink to /dev/zero",
    "directory",
    "FIFO",
    "group-writable",
    "other-writable",
    "owned by nobody",
    "over 64 KiB",
    "not UTF-8",
];

/// A valid file padded with a comment to exactly `len` bytes.
fn padded(good: &str, len: usize) -> String {
    let mut text = good.to_string();
    text.push('#');
    text.push_str(&"x".repeat(len - text.len() - 1));
    text.push('\n');
    assert_eq!(text.len(), len);
    text
}

fn assert_refused(sb: &Sandbox, args: &[&str], file: &Path, case: &str, reason: &str) {
    let out = run_within(guard_cmd(sb, args), HANG);
    let err = stderr(&out);
    assert_eq!(code(&out), 78, "{case}: {args:?}\n{err}");
    assert!(
        err.contains(&format!("{}: {reason}", file.display())),
        "{case}: {args:?} must name the file and the reason ({reason}):\n{err}"
    );
    assert!(err.contains("nothing was touched"), "{case}: {err}");
}

#[test]
fn bad_mode_files_are_refused_fast_and_touch_nothing() {
    let Some(sb) = stale_host("safe-mode") else {
        return;
    };
    let good = "dataplane = \"iptables\"\n";
    let before = sb.snapshot();
    for case in CASES {
        let reason = spoil(&sb.mode_file, case, good);
        for args in [&["sweep"][..], &["sweep", "--force"], &["check"]] {
            assert_refused(&sb, args, &sb.mode_file, case, reason);
        }
        assert_eq!(sb.snapshot(), before, "{case}: something was touched");
    }
    // The limit is 64 KiB inclusive: a valid file of exactly that size is read.
    clear(&sb.mode_file);
    write_file(&sb.mode_file, &padded(good, 64 * 1024)).unwrap();
    guard_ok(&sb, &["check"], 1);
}

#[test]
fn bad_config_files_are_refused_fast_and_touch_nothing() {
    let Some(sb) = stale_host("safe-config") else {
        return;
    };
    let good = fs::read_to_string(&sb.config).unwrap();
    let before = sb.snapshot();
    for case in CASES {
        let reason = spoil(&sb.config, case, &good);
        for args in [&["sweep"][..], &["check"], &["mode", "show"]] {
            assert_refused(&sb, args, &sb.config, case, reason);
        }
        assert_eq!(sb.snapshot(), before, "{case}: something was touched");
    }
    clear(&sb.config);
    write_file(&sb.config, &padded(&good, 64 * 1024)).unwrap();
    guard_ok(&sb, &["check"], 1);
}

/// `mode set` replaces the file by rename: mode 0644 whatever the umask, root-owned, the
/// directory created, and a reader at any moment sees the old file or the new one, whole.
#[test]
fn mode_set_is_atomic_0644_and_creates_the_directory() {
    if !calico_bpf_testkit::have_root("safe-mode-set") {
        return;
    }
    let sb = Sandbox::without_netns("safe-mode-set", Path::new(GUARD)).unwrap();
    let target = sb.dir.path.join("var/lib/calico-bpf-guard/mode.toml");
    write_file(
        &sb.config,
        &format!(
            "mode_file = \"{}\"\nlock_file = \"{}\"\n",
            target.display(),
            sb.dir.path.join("guard.lock").display()
        ),
    )
    .unwrap();
    let set = |dataplane: &str| {
        // A restrictive umask must not leak into the file's mode.
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "umask 077 && exec \"$0\" \"$@\""])
            .arg(&sb.guard_bin)
            .arg("--config")
            .arg(&sb.config)
            .args(["mode", "set", dataplane, "--source", "safety test"]);
        let out = run_within(cmd, HANG);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    };
    set("iptables");
    let meta = fs::metadata(&target).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o644);
    assert_eq!(meta.uid(), 0);
    let parsed = mode::parse(&target, &fs::read_to_string(&target).unwrap()).unwrap();
    assert_eq!(parsed.dataplane, mode::Dataplane::Iptables);
    assert_eq!(parsed.source.as_deref(), Some("safety test"));

    // Each write is a new inode renamed over the old one; a reader never sees a partial file.
    let done = AtomicBool::new(false);
    let reads = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut reads = 0u32;
            while !done.load(Ordering::Relaxed) {
                let text = fs::read_to_string(&target).expect("the mode file is always there");
                if let Err(e) = mode::parse(&target, &text) {
                    panic!("a reader saw a partial file ({e}): {text:?}");
                }
                reads += 1;
            }
            reads
        });
        let mut inode = meta.ino();
        for i in 0..40 {
            set(if i % 2 == 0 { "bpf" } else { "nftables" });
            let now = fs::metadata(&target).unwrap().ino();
            assert_ne!(now, inode, "write {i} rewrote the file in place");
            inode = now;
        }
        done.store(true, Ordering::Relaxed);
        reader.join().expect("reader")
    });
    assert!(reads > 40, "the reader only read {reads} times");
    let names: Vec<_> = fs::read_dir(target.parent().unwrap())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names, ["mode.toml"], "temporary files left behind");
}

/// Calico-looking files in a plain directory.
fn fake_root(sb: &Sandbox, name: &str, files: &[&str]) -> PathBuf {
    let root = sb.dir.path.join(name);
    for f in files {
        let p = root.join(f);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, "not a pin\n").unwrap();
    }
    fs::create_dir_all(&root).unwrap();
    root
}

fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            out.push(e.path());
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
        }
    }
    out.sort();
    out
}

fn config_with_roots(sb: &Sandbox, bpffs: &[&Path], cgroup2: &[&Path]) {
    let list = |ps: &[&Path]| {
        ps.iter()
            .map(|p| format!("\"{}\"", p.display()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    write_file(
        &sb.config,
        &format!(
            "mode_file = \"{}\"\nbpffs_roots = [{}]\ncgroup2_roots = [{}]\nlock_file = \"{}\"\n",
            sb.mode_file.display(),
            list(bpffs),
            list(cgroup2),
            sb.dir.path.join("guard.lock").display()
        ),
    )
    .unwrap();
}

fn warnings(report: &serde_json::Value) -> Vec<String> {
    report["warnings"]
        .as_array()
        .expect("warnings in the report")
        .iter()
        .map(|w| w.as_str().unwrap_or_default().to_string())
        .collect()
}

/// A bpffs root that is a plain directory is skipped with a warning: files named like Calico's
/// pins in it stay. The real bpffs root beside it is still swept.
#[test]
fn plain_directory_as_bpffs_root_is_skipped() {
    let Some(sb) = stale_host("safe-plain-bpffs") else {
        return;
    };
    let fake = fake_root(
        &sb,
        "fake-bpffs",
        &[
            "ctlb/calico_connect_v4",
            "tc/globals/cali_v4_ct3",
            "tc/globals/old_jumps/1/cali_jump2",
            "calico_connect_v6",
        ],
    );
    let files = files_under(&fake);
    config_with_roots(&sb, &[&fake, &sb.bpffs.path], &[&sb.cgroup.path]);
    let before = sb.snapshot();
    let out = guard_ok(&sb, &["sweep", "--json"], 0);
    let want = format!("{}: not a bpffs mount, skipped", fake.display());
    let w = warnings(&json(&out));
    assert!(w.iter().any(|l| l.starts_with(&want)), "{w:?}");
    assert!(stderr(&out).contains(&want), "{}", stderr(&out));
    assert_eq!(
        files_under(&fake),
        files,
        "files in the plain directory changed"
    );
    assert_removed_exactly(&before, &sb.snapshot(), &CALICO_HOST);
}

/// A cgroup root that is not cgroup2 is skipped with a warning; the real one is still swept.
#[test]
fn non_cgroup2_root_is_skipped() {
    let Some(sb) = stale_host("safe-plain-cgroup") else {
        return;
    };
    let fake = fake_root(&sb, "fake-cgroup", &["kubepods/cgroup.procs"]);
    config_with_roots(&sb, &[&sb.bpffs.path], &[&fake, &sb.cgroup.path]);
    let before = sb.snapshot();
    let out = guard_ok(&sb, &["sweep", "--json"], 0);
    let want = format!("{}: not a cgroup2 mount, skipped", fake.display());
    let w = warnings(&json(&out));
    assert!(w.contains(&want), "{w:?}");
    assert!(stderr(&out).contains(&want), "{}", stderr(&out));
    assert_removed_exactly(&before, &sb.snapshot(), &CALICO_HOST);
}

/// A configured root that does not exist (a cgroup root under `ip netns exec`, which remounts
/// /sys, say) is a place the guard was told to look and could not: it is named, everything
/// else is still swept, and the sweep exits 1 (`check`: 2 where nothing else is stale), never
/// "clean". (Only Felix's own `/var/run/calico/bpffs`, absent on most nodes, stays quiet.)
#[test]
fn missing_roots_are_named_and_never_clean() {
    let Some(sb) = stale_host("safe-missing-roots") else {
        return;
    };
    let gone_bpffs = sb.dir.path.join("no/bpffs");
    let gone_cgroup = sb.dir.path.join("no/cgroup");
    config_with_roots(
        &sb,
        &[&gone_bpffs, &sb.bpffs.path],
        &[&gone_cgroup, &sb.cgroup.path],
    );
    let before = sb.snapshot();
    let out = guard_ok(&sb, &["sweep", "--json"], 1);
    let named = |w: &[String], p: &Path| w.iter().any(|l| l.starts_with(&p.display().to_string()));
    let w = warnings(&json(&out));
    assert!(named(&w, &gone_bpffs) && named(&w, &gone_cgroup), "{w:?}");
    assert!(stderr(&out).contains(&gone_cgroup.display().to_string()));
    assert_removed_exactly(&before, &sb.snapshot(), &CALICO_HOST);

    let out = guard_ok(&sb, &["check"], 2);
    assert!(stdout(&out).contains("cannot tell"), "{}", stdout(&out));
}

/// While another holder has the lock (here flock(1), as a person at a shell might), a second
/// guard waits for it and then sweeps.
#[test]
fn a_second_guard_waits_for_the_lock_then_runs() {
    let Some(sb) = stale_host("safe-lock") else {
        return;
    };
    let lock = sb.dir.path.join("guard.lock");
    let before = sb.snapshot();
    let mut holder = Command::new("flock")
        .arg(&lock)
        .args(["sh", "-c", "echo locked && sleep 1.2"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting flock");
    // flock prints nothing until it holds the lock.
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.take().expect("flock stdout")),
        &mut line,
    )
    .expect("reading flock");
    assert_eq!(line, "locked\n");
    let held = Instant::now();
    let out = run_within(guard_cmd(&sb, &["sweep"]), Duration::from_secs(20));
    let waited = held.elapsed();
    assert!(holder.wait().expect("flock").success());
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        waited >= Duration::from_millis(1100),
        "the guard did not wait for the lock: done after {waited:?}"
    );
    assert_removed_exactly(&before, &sb.snapshot(), &CALICO_HOST);
}

/// Without CAP_SYS_ADMIN the kernel hides every program: the guard must say so and fail, never
/// report a clean node, and change nothing.
#[test]
fn without_cap_sys_admin_the_guard_fails_loudly() {
    let Some(sb) = stale_host("safe-nocaps") else {
        return;
    };
    let before = sb.snapshot();
    let unprivileged = |args: &[&str]| {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--inh-caps=-all", "--bounding-set=-all", "--"])
            .arg(&sb.guard_bin)
            .arg("--config")
            .arg(&sb.config)
            .args(args);
        run_within(cmd, HANG)
    };
    for (args, want) in [
        (&["sweep"][..], 1),
        (&["sweep", "--json"], 1),
        (&["check"], 2),
        (&["check", "--json"], 2),
    ] {
        let out = unprivileged(args);
        let all = format!("{}{}", stdout(&out), stderr(&out));
        assert_eq!(code(&out), want, "{args:?}: {all}");
        assert!(all.contains("CAP_SYS_ADMIN"), "{args:?}: {all}");
        assert!(!all.contains("clean"), "{args:?}: {all}");
    }
    assert_eq!(sb.snapshot(), before);
}

/// A temporary file beside the mode file, under the name a writer with the same pid once used
/// (`.mode.toml.<pid>.tmp`): a leftover of a crash, or another writer's file in flight, since
/// containers and early boot reuse pids (every sync pod is pid 1). `mode set` must neither fail
/// on it nor touch it: removing another writer's file mid-write could let a half-written file be
/// renamed into place. Here the guard is pid 1 of a new pid namespace.
#[test]
fn mode_set_leaves_a_temporary_file_of_the_same_pid_alone() {
    if !calico_bpf_testkit::have_root("safe-mode-set-stale") {
        return;
    }
    let sb = Sandbox::without_netns("safe-mode-set-stale", Path::new(GUARD)).unwrap();
    let stale = sb.mode_file.with_file_name(".mode.toml.1.tmp");
    fs::write(&stale, "dataplane = \"bp").unwrap();
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--fork", "--"])
        .arg(&sb.guard_bin)
        .arg("--config")
        .arg(&sb.config)
        .args(["mode", "set", "iptables"]);
    let out = run_within(cmd, HANG);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = fs::read_to_string(&sb.mode_file).unwrap();
    assert_eq!(
        mode::parse(&sb.mode_file, &text).unwrap().dataplane,
        mode::Dataplane::Iptables
    );
    assert_eq!(
        fs::read_to_string(&stale).unwrap(),
        "dataplane = \"bp",
        "another writer's temporary file was touched"
    );
}

/// Whatever sits at the lock path, the guard answers at once: a FIFO there (no reader) would
/// block a plain open(2) for ever and stall the boot before kubelet.
#[test]
fn a_fifo_at_the_lock_path_does_not_hang_the_guard() {
    let Some(sb) = stale_host("safe-lock-fifo") else {
        return;
    };
    let lock = sb.dir.path.join("guard.lock");
    nix::unistd::mkfifo(&lock, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let before = sb.snapshot();
    let out = run_within(guard_cmd(&sb, &["sweep"]), HANG);
    let err = stderr(&out);
    assert_eq!(code(&out), 1, "{err}");
    assert!(
        err.contains(&format!("taking the lock {}", lock.display())),
        "{err}"
    );
    assert_eq!(sb.snapshot(), before);
}

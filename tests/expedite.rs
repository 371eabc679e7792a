//! Expedited RCU grace periods for the span of a sweep's tcx detaches: set only when it reads 0
//! and the plan has enough tcx/netkit detaches, never in a dry run or `check`, and always put
//! back: after success, after failed detaches, on SIGTERM and SIGINT, and, after a SIGKILL
//! mid-sweep, by the next sweep. Most tests point the guard at a switch file of their own; one
//! proves it all on the kernel's /sys/kernel/rcu_expedited and restores its value.
//!
//! tcx exists from kernel 6.6. Before that no plan has a tcx detach, and the tests assert that
//! the guard leaves the switch alone.
#![cfg(feature = "failpoints")]

mod common;

use std::cell::Cell;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use calico_bpf_guard::expedite::{Record, MIN_DETACHES};
use common::*;

const REAL_SWITCH: &str = "/sys/kernel/rcu_expedited";

/// Pauses the sweep inside the expedited span: the first two detaches run, the third sleeps
/// until the test signals the guard.
const PAUSE_IN_SPAN: &str = "apply-step=2*off->1*sleep(600000)";

/// A sandbox, the switch the guard is to use, and where it keeps its record.
struct World {
    sb: Sandbox,
    switch: PathBuf,
    record: PathBuf,
    /// Interfaces planted so far: each plant names new ones.
    ifaces: Cell<usize>,
}

impl World {
    /// `switch`: None gives the guard a switch file of the test's own, holding "0".
    fn new(test: &str, switch: Option<&Path>) -> Option<World> {
        let sb = sandbox(test)?;
        let switch = match switch {
            Some(p) => p.to_path_buf(),
            None => {
                let p = sb.dir.path.join("rcu_expedited");
                fs::write(&p, "0\n").unwrap();
                p
            }
        };
        let record = sb.dir.path.join("run/calico-bpf-guard.rcu_expedited");
        let w = World {
            sb,
            switch,
            record,
            ifaces: Cell::new(0),
        };
        w.config(true);
        w.sb.set_mode(Some("iptables")).unwrap();
        Some(w)
    }

    fn config(&self, expedite: bool) {
        self.sb
            .write_config(&format!(
                "expedite_grace_periods = {expedite}\nrcu_expedited_file = \"{}\"\nexpedite_record_file = \"{}\"\n",
                self.switch.display(),
                self.record.display()
            ))
            .unwrap();
    }

    fn switch(&self) -> String {
        fs::read_to_string(&self.switch).unwrap().trim().to_string()
    }

    /// The switch file's modification time: a write changes it, a read does not.
    fn stamp(&self) -> (i64, i64) {
        let m = fs::metadata(&self.switch).unwrap();
        (m.mtime(), m.mtime_nsec())
    }

    fn record(&self) -> Option<String> {
        fs::read_to_string(&self.record).ok()
    }

    /// The record, which must be one the guard writes, of a switch set from 0.
    fn parsed_record(&self) -> Record {
        let text = self.record().expect("a record");
        let rec = Record::parse(&text).unwrap_or_else(|| panic!("not a record: {text:?}"));
        assert_eq!(rec.original, 0, "{text}");
        rec
    }

    /// Write a record as a sweep of pid `written` that died would have left it.
    fn plant_record(&self, written: i32) {
        fs::create_dir_all(self.record.parent().unwrap()).unwrap();
        plant_file(
            &self.record,
            &format!(
                "original = 0\nwritten = {written}\npid = {written}\nat = 2026-12-02T06:00:00Z\n"
            ),
        );
    }

    /// `n` Calico interfaces, each with pinned tcx links on ingress and egress.
    fn plant_tcx(&self, n: usize) -> Vec<String> {
        let bpffs = &self.sb.bpffs.path;
        let first = self.ifaces.get();
        self.ifaces.set(first + n);
        let mut removed = Vec::new();
        for i in first..first + n {
            let dev = format!("cali{i}tcx");
            for dir in ["ingress", "egress"] {
                removed.push(format!("tcx {dev} {dir} cali_tc_preambl link"));
                removed.push(format!("pin tcx/{dev}_{dir}"));
            }
        }
        self.sb
            .netns()
            .enter(|| {
                for i in first..first + n {
                    let dev = format!("cali{i}tcx");
                    calico_bpf_testkit::sandbox::run(
                        "ip",
                        &[
                            "link",
                            "add",
                            &dev,
                            "type",
                            "veth",
                            "peer",
                            "name",
                            &format!("p{i}tcx"),
                        ],
                    )?;
                    plant::calico_tcx_links(bpffs, &dev)?;
                }
                Ok(())
            })
            .unwrap();
        removed
    }

    /// Does this kernel have tcx (6.6+)? A tcx query on loopback answers EINVAL before.
    fn has_tcx(&self) -> bool {
        let has = self.sb.netns().enter(plant::has_tcx).unwrap();
        if !has {
            eprintln!(
                "this kernel has no tcx (before 6.6): asserting the guard leaves the switch alone"
            );
        }
        has
    }

    /// Run the guard in the sandbox's network namespace without waiting for it.
    fn spawn(&self, args: &[&str], env: &[(&str, &str)]) -> Running {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.sb.netns().path().display()))
            .arg("--")
            .arg(GUARD)
            .arg("--config")
            .arg(&self.sb.config)
            .args(args)
            .env_remove("JOURNAL_STREAM")
            .env_remove("NOTIFY_SOCKET")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        Running(Some(cmd.spawn().expect("starting the guard")))
    }

    /// Wait until the guard, paused inside its expedited span, has set the switch.
    fn wait_expedited(&self, guard: &mut Running) {
        // Not a timing assertion: a bound so that a broken guard fails the test instead of
        // hanging it (the guard itself sleeps ten minutes at the failpoint).
        let deadline = Instant::now() + Duration::from_secs(300);
        while !(self.switch() != "0"
            && self
                .record()
                .and_then(|t| Record::parse(&t))
                .is_some_and(|r| r.written.to_string() == self.switch()))
        {
            if let Some(status) = guard.try_wait() {
                panic!(
                    "the guard ended ({status}) before it expedited: {}",
                    guard.output()
                );
            }
            assert!(Instant::now() < deadline, "the guard never expedited");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A running guard, killed if the test ends first.
struct Running(Option<Child>);

impl Running {
    fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("the guard is running")
    }

    fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child().try_wait().unwrap()
    }

    fn signal(&mut self, sig: libc::c_int) {
        // nsenter execs the guard, so the child's pid is the guard's.
        let pid = self.child().id() as libc::pid_t;
        // SAFETY: kill(2) on our own child, which has not been reaped yet.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill {pid}");
    }

    fn wait(&mut self) -> ExitStatus {
        self.child().wait().unwrap()
    }

    /// What the guard wrote, once it has ended.
    fn output(&mut self) -> String {
        let out = self
            .0
            .take()
            .expect("the guard ran")
            .wait_with_output()
            .unwrap();
        format!("stdout:\n{}\nstderr:\n{}", stdout(&out), stderr(&out))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A sweep with a handful of tcx detaches expedites them and puts the switch back: the log
/// says both, the switch reads 0 again, no record is left, and exactly Calico's links went.
fn sweep_puts_it_back(w: &World) {
    let removed = w.plant_tcx(MIN_DETACHES / 2 + 1);
    let before = w.sb.snapshot();
    let out = guard_ok(&w.sb, &["sweep"], 0);
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "expediting RCU grace periods for {} tcx/netkit detaches",
            removed.len() / 2
        )),
        "{err}"
    );
    assert!(err.contains("put back to 0"), "{err}");
    assert_eq!(w.switch(), "0");
    assert_eq!(w.record(), None);
    let removed: Vec<&str> = removed.iter().map(String::as_str).collect();
    assert_removed_exactly(&before, &w.sb.snapshot(), &removed);
}

/// Every detach fails: exit 1, and the switch is back all the same.
fn failed_detaches_put_it_back(w: &World) {
    w.plant_tcx(MIN_DETACHES / 2);
    let out =
        w.sb.guard_env(&["sweep"], &[("FAILPOINTS", "apply-step=return(link)")]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("expediting RCU grace periods"),
        "{}",
        stderr(&out)
    );
    assert_eq!(w.switch(), "0");
    assert_eq!(w.record(), None);
}

/// SIGTERM or SIGINT inside the span: the guard puts the switch back, removes its record and
/// ends by that signal, as it would have without expediting.
fn signal_puts_it_back(w: &World, sig: libc::c_int) {
    w.plant_tcx(MIN_DETACHES / 2);
    let mut guard = w.spawn(&["sweep"], &[("FAILPOINTS", PAUSE_IN_SPAN)]);
    w.wait_expedited(&mut guard);
    assert_eq!(w.parsed_record().pid, guard.child().id());
    guard.signal(sig);
    let status = guard.wait();
    assert_eq!(status.signal(), Some(sig), "{status}: {}", guard.output());
    assert_eq!(w.switch(), "0");
    assert_eq!(w.record(), None);
}

/// SIGKILL inside the span leaves the switch set and the record behind. `check` and a dry run
/// report it and change nothing; the next sweep puts it back and finishes the job.
fn sigkill_is_put_back_by_the_next_sweep(w: &World) {
    let removed = w.plant_tcx(MIN_DETACHES / 2);
    let before = w.sb.snapshot();
    let mut guard = w.spawn(&["sweep"], &[("FAILPOINTS", PAUSE_IN_SPAN)]);
    w.wait_expedited(&mut guard);
    let pid = guard.child().id();
    guard.signal(libc::SIGKILL);
    assert_eq!(guard.wait().signal(), Some(libc::SIGKILL));
    let rec = w.parsed_record();
    assert_eq!((rec.pid, rec.written), (pid, pid as i32));
    assert_eq!(
        w.switch(),
        pid.to_string(),
        "nothing in the process survives SIGKILL"
    );

    let out = guard_ok(&w.sb, &["check"], 1);
    assert!(
        stdout(&out).contains(&format!("left at {pid} by the sweep of pid {pid}")),
        "{}",
        stdout(&out)
    );
    guard_ok(&w.sb, &["sweep", "--dry-run"], 0);
    assert_eq!(
        w.switch(),
        pid.to_string(),
        "check and dry runs never write it"
    );
    assert!(w.record().is_some());

    let out = guard_ok(&w.sb, &["sweep"], 0);
    assert!(
        stderr(&out).contains(&format!(
            "put back to 0: a sweep that did not finish had left it at {pid} by the sweep of pid {pid}"
        )),
        "{}",
        stderr(&out)
    );
    assert_eq!(w.switch(), "0");
    assert_eq!(w.record(), None);
    let removed: Vec<&str> = removed.iter().map(String::as_str).collect();
    assert_removed_exactly(&before, &w.sb.snapshot(), &removed);
}

/// Before tcx there is nothing to expedite: a sweep of Calico's other objects leaves the switch
/// unwritten.
fn no_tcx_leaves_it_alone(w: &World) {
    plant::calico_host(&w.sb.bpffs.path, &w.sb.cgroup.path).unwrap();
    w.sb.netns().enter(plant::calico_network).unwrap();
    let stamp = w.stamp();
    let out = guard_ok(&w.sb, &["sweep"], 0);
    assert!(!stderr(&out).contains("expediting"), "{}", stderr(&out));
    assert_eq!((w.stamp(), w.switch()), (stamp, "0".into()));
    assert_eq!(w.record(), None);
}

#[test]
fn a_tcx_sweep_expedites_and_puts_it_back() {
    let Some(w) = World::new("rcu-ok", None) else {
        return;
    };
    if !w.has_tcx() {
        return no_tcx_leaves_it_alone(&w);
    }
    sweep_puts_it_back(&w);
}

#[test]
fn failed_detaches_still_put_it_back() {
    let Some(w) = World::new("rcu-fail", None) else {
        return;
    };
    if !w.has_tcx() {
        return no_tcx_leaves_it_alone(&w);
    }
    failed_detaches_put_it_back(&w);
}

#[test]
fn sigterm_mid_sweep_puts_it_back() {
    let Some(w) = World::new("rcu-term", None) else {
        return;
    };
    if !w.has_tcx() {
        return no_tcx_leaves_it_alone(&w);
    }
    signal_puts_it_back(&w, libc::SIGTERM);
}

#[test]
fn sigint_mid_sweep_puts_it_back() {
    let Some(w) = World::new("rcu-int", None) else {
        return;
    };
    if !w.has_tcx() {
        return no_tcx_leaves_it_alone(&w);
    }
    signal_puts_it_back(&w, libc::SIGINT);
}

#[test]
fn sigkill_mid_sweep_is_put_back_by_the_next_sweep() {
    let Some(w) = World::new("rcu-kill", None) else {
        return;
    };
    if !w.has_tcx() {
        return no_tcx_leaves_it_alone(&w);
    }
    sigkill_is_put_back_by_the_next_sweep(&w);
}

/// When the switch is never written: dry runs, `check`, fewer than a handful of detaches,
/// `expedite_grace_periods = false`, and a switch someone already set.
#[test]
fn left_alone_when_it_should_be() {
    let Some(w) = World::new("rcu-alone", None) else {
        return;
    };
    if !w.has_tcx() {
        return no_tcx_leaves_it_alone(&w);
    }
    let unwritten = |w: &World, args: &[&str], want: i32, value: &str| {
        let stamp = w.stamp();
        let out = guard_ok(&w.sb, args, want);
        assert!(
            !stderr(&out).contains("expediting"),
            "{args:?}: {}",
            stderr(&out)
        );
        assert_eq!(
            (w.stamp(), w.switch()),
            (stamp, value.to_string()),
            "{args:?}"
        );
        assert_eq!(w.record(), None, "{args:?}");
    };
    w.plant_tcx(MIN_DETACHES / 2);
    unwritten(&w, &["sweep", "--dry-run"], 0, "0");
    unwritten(&w, &["check"], 1, "0");
    w.config(false);
    unwritten(&w, &["sweep"], 0, "0");

    w.config(true);
    w.plant_tcx(MIN_DETACHES / 2 - 1);
    unwritten(&w, &["sweep"], 0, "0");

    fs::write(&w.switch, "1\n").unwrap();
    w.plant_tcx(MIN_DETACHES / 2);
    unwritten(&w, &["sweep"], 0, "1");
}

/// Root-owned 0644, as the guard trusts it.
fn plant_file(path: &Path, text: &str) {
    calico_bpf_testkit::sandbox::write_file(path, text).unwrap();
}

/// A sweep that died (SIGKILL, a crash) left the switch at its value on a node with nothing
/// else wrong: `check` exits 1 naming it and the metrics say so, but not while a sweep holds
/// the lock (it is running, and puts the switch back itself); the next sweep puts it back.
#[test]
fn a_switch_left_set_is_a_problem_until_a_sweep_puts_it_back() {
    let Some(w) = World::new("rcu-left", None) else {
        return;
    };
    let metrics = w.sb.dir.path.join("check.prom");
    let metrics_arg = metrics.to_str().unwrap();
    let left_set = |w: &World, want: i32| {
        let out = guard_ok(&w.sb, &["check", "--metrics", metrics_arg], want);
        let text = fs::read_to_string(&metrics).unwrap();
        let gauge = format!(
            "calico_bpf_guard_rcu_expedited_left_set{{command=\"check\"}} {}\n",
            u8::from(want == 1)
        );
        assert!(text.contains(&gauge), "no {gauge:?} in\n{text}");
        stdout(&out)
    };
    left_set(&w, 0);

    w.plant_record(5151);
    fs::write(&w.switch, "5151\n").unwrap();
    let out = left_set(&w, 1);
    assert!(
        out.contains("left at 5151 by the sweep of pid 5151 at 2026-12-02T06:00:00Z")
            && out.contains("a sweep that did not finish"),
        "{out}"
    );

    // A sweep that holds the lock is running, not dead.
    let lock = fs::File::create(w.sb.dir.path.join("guard.lock")).unwrap();
    let held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).unwrap();
    let out = left_set(&w, 0);
    assert!(out.contains("a sweep is running"), "{out}");
    assert!(!out.contains("did not finish"), "{out}");
    drop(held);

    let out = guard_ok(&w.sb, &["sweep"], 0);
    assert!(stderr(&out).contains("put back to 0"), "{}", stderr(&out));
    assert_eq!((w.switch(), w.record()), ("0".into(), None));
    left_set(&w, 0);
}

/// After the guard's sweep died, someone set the switch to 1 on purpose: that 1 is not the
/// value the record says the guard wrote, so it stays; only the record goes.
#[test]
fn recovery_puts_back_only_its_own_value() {
    let Some(w) = World::new("rcu-theirs", None) else {
        return;
    };
    w.plant_record(5152);
    fs::write(&w.switch, "1\n").unwrap();
    let out = guard_ok(&w.sb, &["check"], 0);
    assert!(
        stdout(&out).contains("reads 1 now, someone else's value"),
        "{}",
        stdout(&out)
    );
    let out = guard_ok(&w.sb, &["sweep"], 0);
    assert!(
        stderr(&out).contains("not the 5152 a sweep that did not finish wrote"),
        "{}",
        stderr(&out)
    );
    assert_eq!((w.switch(), w.record()), ("1".into(), None));
}

/// Restores the kernel's switch to what it was before the test, also when the test fails.
struct RealSwitch {
    was: String,
}

impl Drop for RealSwitch {
    fn drop(&mut self) {
        if let Err(e) = fs::write(REAL_SWITCH, format!("{}\n", self.was)) {
            eprintln!("could not restore {REAL_SWITCH} to {}: {e}", self.was);
        }
    }
}

/// Everything above on the kernel's own switch, one case after another (it is machine-wide, so
/// one test owns it). It starts from 0 and the switch goes back to its value afterwards.
#[test]
fn the_kernels_switch() {
    if !calico_bpf_testkit::have_root("rcu-real") {
        return;
    }
    let was = fs::read_to_string(REAL_SWITCH)
        .expect("reading /sys/kernel/rcu_expedited")
        .trim()
        .to_string();
    let _restore = RealSwitch { was };
    fs::write(REAL_SWITCH, "0\n").expect("writing /sys/kernel/rcu_expedited");
    let world = |tag| World::new(tag, Some(Path::new(REAL_SWITCH))).unwrap();

    let w = world("rcu-real-ok");
    if !w.has_tcx() {
        return no_tcx_leaves_it_alone(&w);
    }
    sweep_puts_it_back(&w);
    failed_detaches_put_it_back(&world("rcu-real-fail"));
    signal_puts_it_back(&world("rcu-real-term"), libc::SIGTERM);
    sigkill_is_put_back_by_the_next_sweep(&world("rcu-real-kill"));
}

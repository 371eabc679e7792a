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

use calico_bpf_guard::expedite::MIN_DETACHES;
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
        while !(self.switch() == "1" && self.record().is_some()) {
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
    assert_eq!(w.record().as_deref(), Some("0\n"));
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
    guard.signal(libc::SIGKILL);
    assert_eq!(guard.wait().signal(), Some(libc::SIGKILL));
    assert_eq!(w.switch(), "1", "nothing in the process survives SIGKILL");
    assert_eq!(w.record().as_deref(), Some("0\n"));

    let out = guard_ok(&w.sb, &["check"], 1);
    assert!(
        stdout(&out).contains("records that a sweep which did not finish left"),
        "{}",
        stdout(&out)
    );
    guard_ok(&w.sb, &["sweep", "--dry-run"], 0);
    assert_eq!(w.switch(), "1", "check and dry runs never write it");
    assert!(w.record().is_some());

    let out = guard_ok(&w.sb, &["sweep"], 0);
    assert!(
        stderr(&out).contains("put back to 0: a sweep that did not finish had left it at 1"),
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

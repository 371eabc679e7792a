//! Runs of the guard under test: a timed `sweep` with its peak RSS, its system calls under
//! strace, and a no-op `sweep` against /bin/true under hyperfine. It never plants or checks a
//! node (`node`) and never computes a ratio (`report`).

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use calico_bpf_guard::kernel::bpf::{self, IdSpace};
use calico_bpf_testkit::Sandbox;
use serde_json::Value;

use crate::node::Node;
use crate::stats::median;
use crate::stop::check_stop;

/// The kernel's switch the guard sets while it detaches tcx programs.
pub const RCU_EXPEDITED: &str = "/sys/kernel/rcu_expedited";

pub fn rcu_expedited() -> Result<String> {
    Ok(fs::read_to_string(RCU_EXPEDITED)
        .with_context(|| format!("reading {RCU_EXPEDITED}"))?
        .trim()
        .to_string())
}

/// One timed `sweep` with this config: wall time seen from here (including the `time`
/// wrapper's fork, well under a millisecond) and the guard's peak RSS. /usr/bin/time forks a
/// fresh process for the guard; a child spawned straight from this (large) process would
/// inherit its RSS high-water mark through vfork and exec. The guard must leave
/// rcu_expedited as it found it.
pub fn guard_sweep(node: &Node, guard: &Path, config: &Path) -> Result<(Duration, u64)> {
    let rss_file = node.sb.dir.path.join("time.out");
    let was = rcu_expedited()?;
    let r = guard_sweep_once(node, guard, config, &rss_file)?;
    let now = rcu_expedited()?;
    ensure!(
        now == was,
        "{RCU_EXPEDITED} was {was} before the sweep and is {now} after it"
    );
    Ok(r)
}

fn guard_sweep_once(
    node: &Node,
    guard: &Path,
    config: &Path,
    rss_file: &Path,
) -> Result<(Duration, u64)> {
    node.sb.netns().enter(|| loop {
        let t0 = Instant::now();
        let out = Command::new("/usr/bin/time")
            .args(["-f", "%M", "-o"])
            .arg(rss_file)
            .arg(guard)
            .arg("--config")
            .arg(config)
            .arg("sweep")
            .env_remove("JOURNAL_STREAM")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .output()?;
        let wall = t0.elapsed();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if refused_by_a_scanner(&out) {
            eprintln!("   (refused while another process held our programs; again: {stderr})");
            continue;
        }
        ensure!(
            out.status.success(),
            "sweep exited {:?}: {stderr}",
            out.status.code(),
        );
        let text = fs::read_to_string(rss_file)?;
        let kib = text
            .lines()
            .last()
            .and_then(|l| l.trim().parse().ok())
            .with_context(|| format!("/usr/bin/time wrote {text:?}"))?;
        return Ok((wall, kib));
    })
}

/// Program ids are machine-wide, so anything that walks every program (bpftool prog show,
/// another guard's scan in a test) holds each one open for a moment, and the guard's
/// live-dataplane interlock refuses the sweep, changing nothing. On a shared machine that
/// happens; the run is repeated on the same, untouched state.
fn refused_by_a_scanner(out: &std::process::Output) -> bool {
    let stderr = String::from_utf8_lossy(&out.stderr);
    out.status.code() == Some(1)
        && stderr.contains("refused: a running process holds")
        && stderr
            .lines()
            .filter(|l| l.contains("live eBPF dataplane: pid"))
            .all(|l| l.contains("(calico-bpf-guar)") || l.contains("(bpftool)"))
}

/// System calls one `sweep` makes, from `strace -c -f`'s total line.
pub fn guard_syscalls(node: &Node, guard: &Path) -> Result<u64> {
    let trace = node.sb.dir.path.join("strace.out");
    let config = node.sb.config.clone();
    node.sb.netns().enter(|| {
        let out = loop {
            let out = Command::new("strace")
                .args(["-f", "-c", "-o"])
                .arg(&trace)
                .arg(guard)
                .arg("--config")
                .arg(&config)
                .arg("sweep")
                .stdin(Stdio::null())
                .output()?;
            if !refused_by_a_scanner(&out) {
                break out;
            }
        };
        ensure!(
            out.status.success(),
            "sweep under strace failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = fs::read_to_string(&trace)?;
        // "100.00    0.012345           5      2345        12 total": calls is the 4th column.
        text.lines()
            .find(|l| l.trim_end().ends_with(" total"))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|c| c.parse().ok())
            .with_context(|| format!("no total line in strace -c output:\n{text}"))
    })
}

/// Medians of a no-op `sweep` (clean node, eBPF off) of each guard and of /bin/true, from
/// hyperfine. hyperfine runs one command's runs and then the next's, so a change in the
/// machine's load (it is shared) lands on one of them: three rounds, each in another order, and
/// the median of each command's medians. `guards[0]` is the one under test; the sandbox's
/// config is made for it and read the same by the others.
pub fn noop(guards: &[&Path], runs: usize) -> Result<Noop> {
    let sb = Sandbox::new("bench", guards[0])?;
    let programs = bpf::ids(IdSpace::Prog)?.len();
    sb.set_mode(Some("iptables"))?;
    let json = sb.dir.path.join("hyperfine.json");
    let mut cmds: Vec<String> = guards
        .iter()
        .map(|g| format!("{} --config {} sweep", g.display(), sb.config.display()))
        .collect();
    cmds.push("/bin/true".into());
    let runs = runs.to_string();
    let mut medians: Vec<Vec<f64>> = vec![Vec::new(); cmds.len()];
    for round in 0..3 {
        check_stop()?;
        // Each round starts with another command: with two guards and /bin/true, every one
        // goes first once.
        let order: Vec<usize> = (0..cmds.len()).map(|k| (k + round) % cmds.len()).collect();
        sb.netns().enter(|| {
            let out = Command::new("hyperfine")
                .args(["-N", "--warmup", "20", "--runs", &runs, "--export-json"])
                .arg(&json)
                .args(order.iter().map(|&k| cmds[k].as_str()))
                .stdin(Stdio::null())
                .output()?;
            ensure!(
                out.status.success(),
                "hyperfine failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            Ok(())
        })?;
        let v: Value = serde_json::from_slice(&fs::read(&json)?)?;
        for (i, &k) in order.iter().enumerate() {
            let m = v["results"][i]["median"]
                .as_f64()
                .context("no median in hyperfine's JSON")?
                * 1e3;
            medians[k].push(m);
        }
    }
    let mut medians: Vec<f64> = medians.into_iter().map(median).collect();
    let true_ms = medians.pop().unwrap_or(f64::NAN);
    Ok(Noop {
        sweep_ms: medians,
        true_ms,
        programs,
    })
}

/// The no-op comparison, and how many programs the machine had loaded: a guard lists every
/// program on the machine, and a Calico-named one anywhere (another test's) makes it walk
/// cgroups and interfaces too.
pub struct Noop {
    /// One per guard, the one under test first.
    pub sweep_ms: Vec<f64>,
    pub true_ms: f64,
    pub programs: usize,
}

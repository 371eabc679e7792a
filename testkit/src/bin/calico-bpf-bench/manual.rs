//! The manual procedure an operator would follow with bpftool and tc, for comparison. It never
//! uses the guard's code: only the tools an operator has.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};

use crate::node::Node;

/// The script lives beside this binary's sources, in bench/.
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../bench/manual-sweep.sh");

/// The manual procedure (bench/manual-sweep.sh): list with bpftool and tc, then one process per
/// object. Returns the wall time and how many processes the script started.
pub fn manual_sweep(node: &Node) -> Result<(Duration, u64)> {
    let (bpffs, cg) = (node.bpffs().to_path_buf(), node.cgroup().to_path_buf());
    node.sb.netns().enter(|| {
        let t0 = Instant::now();
        let out = Command::new("bash")
            .arg(SCRIPT)
            .arg(&bpffs)
            .arg(&cg)
            .stdin(Stdio::null())
            .output()?;
        let wall = t0.elapsed();
        let stdout = String::from_utf8_lossy(&out.stdout);
        ensure!(
            out.status.success(),
            "manual procedure failed: {}{}",
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
        let procs = stdout
            .lines()
            .find_map(|l| l.strip_prefix("processes: "))
            .and_then(|n| n.trim().parse().ok())
            .context("the manual procedure did not say how many processes it ran")?;
        Ok((wall, procs))
    })
}

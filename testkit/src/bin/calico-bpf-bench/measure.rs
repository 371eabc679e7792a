//! One node size's measurements: the guard's sweeps, the kernel floor, strace and the manual
//! procedure, each from a freshly planted node and checked clean after it. It never formats a
//! table (`report`).

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use calico_bpf_testkit::sandbox;

use crate::floor::{kernel_floor, read_floor, FloorRun};
use crate::guard::{guard_sweep, guard_syscalls};
use crate::manual::manual_sweep;
use crate::node::{Node, Variant};
use crate::opts::Opts;
use crate::stats::{load_average, ms};

/// One guard's runs on one node size.
#[derive(Default)]
pub struct GuardRuns {
    pub sweep_ms: Vec<f64>,
    pub rss_kib: u64,
    pub syscalls: u64,
}

/// Everything measured on one node size.
pub struct Row {
    pub variant: Variant,
    pub n: usize,
    pub objects: usize,
    /// The guard under test, and the baseline's runs interleaved with them (bench-compare).
    pub guard: GuardRuns,
    pub baseline: Option<GuardRuns>,
    /// tcx only, the guard under test: the same sweep with `expedite_grace_periods = false`.
    pub unexpedited_ms: Vec<f64>,
    pub manual: Option<(Duration, u64)>,
    pub floors: Vec<FloorRun>,
    /// The 1-minute load average before and after this node's runs.
    pub load: (f64, f64),
}

impl Row {
    /// The floor run with the median total.
    pub fn floor(&self) -> &FloorRun {
        let mut by_total: Vec<&FloorRun> = self.floors.iter().collect();
        by_total.sort_by_key(|f| f.total());
        by_total[by_total.len() / 2]
    }
}

/// One timed sweep of `guard` on a freshly planted node, checked clean after it.
fn timed(node: &Node, guard: &Path, config: &Path, runs: &mut GuardRuns) -> Result<f64> {
    node.replant()?;
    let (wall, kib) = guard_sweep(node, guard, config)?;
    node.expect_clean("the guard's sweep")?;
    runs.sweep_ms.push(ms(wall));
    runs.rss_kib = runs.rss_kib.max(kib);
    Ok(ms(wall))
}

pub fn measure(opts: &Opts, node: &Node) -> Result<Row> {
    let t0 = Instant::now();
    let (variant, n) = (node.variant, node.ifaces.len());
    let mut row = Row {
        variant,
        n,
        objects: node.calico_objects(),
        guard: GuardRuns::default(),
        baseline: opts.baseline.as_ref().map(|_| GuardRuns::default()),
        unexpedited_ms: Vec::new(),
        manual: None,
        floors: Vec::new(),
        load: (load_average(), f64::NAN),
    };
    // tcx detaches wait for RCU grace periods, which the guard expedites by default: the same
    // sweep without that, from a config of its own.
    let unexpedited = match variant {
        Variant::Tcx => {
            let path = node.sb.dir.path.join("config-no-expedite.toml");
            let text = fs::read_to_string(&node.sb.config)?;
            sandbox::write_file(&path, &format!("{text}expedite_grace_periods = false\n"))?;
            Some(path)
        }
        Variant::Tc => None,
    };
    // Guard, baseline and floor runs alternate, so all see the same machine: grace periods
    // (every tcx detach waits for one) and a shared machine's load vary from run to run. The
    // two guards take turns going first.
    for i in 0..opts.runs {
        let config = &node.sb.config;
        let baseline_first = i % 2 == 1;
        let mut base_ms = None;
        if let (Some(b), Some(runs), true) = (&opts.baseline, &mut row.baseline, baseline_first) {
            base_ms = Some(timed(node, b, config, runs)?);
        }
        let wall = timed(node, &opts.guard, config, &mut row.guard)?;
        if let (Some(b), Some(runs), false) = (&opts.baseline, &mut row.baseline, baseline_first) {
            base_ms = Some(timed(node, b, config, runs)?);
        }
        if let Some(config) = &unexpedited {
            node.replant()?;
            let (wall, _) = guard_sweep(node, &opts.guard, config)?;
            node.expect_clean("the guard's sweep without expediting")?;
            eprintln!(
                "   run {}: sweep without expediting {:.1} ms",
                i + 1,
                ms(wall)
            );
            row.unexpedited_ms.push(ms(wall));
        }

        node.replant()?;
        let f = FloorRun {
            before: read_floor(node)?,
            writes: kernel_floor(node)?,
            after: read_floor(node)?,
        };
        node.expect_clean("the kernel-floor run")?;
        eprintln!(
            "   run {}: sweep {wall:.1} ms{}; kernel: writes {:.1} ms, reads {:.1} ms before \
             ({:.1} programs and links, {:.1} cgroups, {:.1} pins, {:.1} network), {:.1} ms after; \
             load {:.2}",
            i + 1,
            base_ms.map_or_else(String::new, |b| format!(
                " ({}: {b:.1} ms)",
                opts.baseline_label
            )),
            ms(f.writes.total()),
            ms(f.before.total()),
            ms(f.before.programs),
            ms(f.before.cgroups),
            ms(f.before.pins),
            ms(f.before.network),
            ms(f.after.total()),
            load_average(),
        );
        row.floors.push(f);
    }
    node.replant()?;
    row.guard.syscalls = guard_syscalls(node, &opts.guard)?;
    node.expect_clean("the guard's sweep under strace")?;
    eprintln!("   syscalls: {}", row.guard.syscalls);
    if let (Some(b), Some(runs)) = (&opts.baseline, &mut row.baseline) {
        node.replant()?;
        runs.syscalls = guard_syscalls(node, b)?;
        node.expect_clean("the baseline's sweep under strace")?;
        eprintln!("   syscalls, {}: {}", opts.baseline_label, runs.syscalls);
    }

    if opts.manual_max.is_none_or(|max| n <= max) {
        node.replant()?;
        eprintln!("   manual procedure (one process per object; minutes at 1,000)...");
        let m = manual_sweep(node)?;
        node.expect_clean("the manual procedure")?;
        eprintln!("   manual: {:.1} s, {} processes", m.0.as_secs_f64(), m.1);
        row.manual = Some(m);
    }
    row.load.1 = load_average();
    eprintln!("   ({:.0} s for this node)", t0.elapsed().as_secs_f64());
    Ok(row)
}

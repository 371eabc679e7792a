//! One node size's measurements: the guard's sweeps, the kernel floor, strace and the manual
//! procedure, each from a freshly planted node and checked clean after it. It never formats a
//! table (`report`).

use std::fs;
use std::time::{Duration, Instant};

use anyhow::Result;
use calico_bpf_testkit::sandbox;

use crate::floor::{kernel_floor, read_floor, FloorRun};
use crate::guard::{guard_sweep, guard_syscalls};
use crate::manual::manual_sweep;
use crate::node::{Node, Variant};
use crate::opts::Opts;
use crate::stats::ms;

/// Everything measured on one node size.
pub struct Row {
    pub variant: Variant,
    pub n: usize,
    pub objects: usize,
    pub sweep_ms: Vec<f64>,
    /// tcx only: the same sweep with `expedite_grace_periods = false`.
    pub unexpedited_ms: Vec<f64>,
    pub rss_kib: u64,
    pub syscalls: u64,
    pub manual: Option<(Duration, u64)>,
    pub floors: Vec<FloorRun>,
}

impl Row {
    /// The floor run with the median total.
    pub fn floor(&self) -> &FloorRun {
        let mut by_total: Vec<&FloorRun> = self.floors.iter().collect();
        by_total.sort_by_key(|f| f.total());
        by_total[by_total.len() / 2]
    }
}

pub fn measure(opts: &Opts, node: &Node) -> Result<Row> {
    let t0 = Instant::now();
    let (variant, n) = (node.variant, node.ifaces.len());
    let mut row = Row {
        variant,
        n,
        objects: node.calico_objects(),
        sweep_ms: Vec::new(),
        unexpedited_ms: Vec::new(),
        rss_kib: 0,
        syscalls: 0,
        manual: None,
        floors: Vec::new(),
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
    // Guard and floor runs alternate, so both see the same machine: grace periods (every tcx
    // detach waits for one) vary with load from run to run.
    for i in 0..opts.runs {
        node.replant()?;
        let (wall, kib) = guard_sweep(node, &opts.guard, &node.sb.config)?;
        node.expect_clean("the guard's sweep")?;
        row.sweep_ms.push(ms(wall));
        row.rss_kib = row.rss_kib.max(kib);
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
            "   run {}: sweep {:.1} ms, {kib} KiB; kernel: writes {:.1} ms, reads {:.1} ms before \
             ({:.1} programs and links, {:.1} cgroups, {:.1} pins, {:.1} network), {:.1} ms after",
            i + 1,
            ms(wall),
            ms(f.writes.total()),
            ms(f.before.total()),
            ms(f.before.programs),
            ms(f.before.cgroups),
            ms(f.before.pins),
            ms(f.before.network),
            ms(f.after.total()),
        );
        row.floors.push(f);
    }
    node.replant()?;
    row.syscalls = guard_syscalls(node, &opts.guard)?;
    node.expect_clean("the guard's sweep under strace")?;
    eprintln!("   syscalls: {}", row.syscalls);

    if opts.manual_max.is_none_or(|max| n <= max) {
        node.replant()?;
        eprintln!("   manual procedure (one process per object; minutes at 1,000)...");
        let m = manual_sweep(node)?;
        node.expect_clean("the manual procedure")?;
        eprintln!("   manual: {:.1} s, {} processes", m.0.as_secs_f64(), m.1);
        row.manual = Some(m);
    }
    eprintln!("   ({:.0} s for this node)", t0.elapsed().as_secs_f64());
    Ok(row)
}

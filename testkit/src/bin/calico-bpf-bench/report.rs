//! The Markdown report `make bench` prints and writes to bench/results.md. It only formats what
//! was measured; it never measures.

use std::fmt::Write as _;
use std::process::Command;

use crate::guard::{rcu_expedited, Noop, RCU_EXPEDITED};
use crate::measure::Row;
use crate::node::Variant;
use crate::opts::Opts;
use crate::stats::{median, ms};

fn cmd_line(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "?".into())
}

/// The commit of the tree the bench was built from, and whether it had uncommitted changes
/// (results.md aside, which the bench itself writes). Asked when the bench starts, with the
/// binaries it measures just built: an edit made while it runs is not what it measured.
pub fn commit() -> String {
    let repo = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let dirty = !cmd_line(
        "git",
        &[
            "-C",
            repo,
            "status",
            "--porcelain",
            "--untracked-files=no",
            "--",
            ".",
            ":!bench/results.md",
        ],
    )
    .is_empty();
    format!(
        "{}{}",
        cmd_line("git", &["-C", repo, "rev-parse", "--short", "HEAD"]),
        if dirty {
            " with uncommitted changes"
        } else {
            " (clean)"
        }
    )
}

/// A machine busier than this at the start measures its own load, not the product.
const QUIET_LOAD: f64 = 1.0;

/// `load`: the 1-minute load average at the start and at the end of the whole bench.
/// `this`: `commit()` at the start.
pub fn render(opts: &Opts, rows: &[Row], noop: &Noop, load: (f64, f64), this: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Measured by `make bench` on kernel {}, {} cores, guard commit {this}{}{}. Load average \
         (1 minute) {:.2} at the start, {:.2} at the end.\n",
        cmd_line("uname", &["-r"]),
        cmd_line("nproc", &[]),
        match &opts.baseline {
            Some(_) => format!(
                "; baseline {} measured in the same runs, interleaved",
                opts.baseline_label
            ),
            None => String::new(),
        },
        match &opts.built {
            Some(how) => format!("; built {how}"),
            None => String::new(),
        },
        load.0,
        load.1,
    );
    // An unreadable load (NaN) is no proof of a quiet machine.
    if load.0 > QUIET_LOAD || load.0.is_nan() {
        let _ = writeln!(
            s,
            "**A loaded machine** (load average over {QUIET_LOAD} at the start): the times below \
             are this machine's under that load, not the product's. Syscall counts and peak \
             RSS do not depend on load; the guards' side-by-side figures were measured in the \
             same runs, taking turns.\n"
        );
    }
    s += "| node | Calico objects | guard `sweep` (median) | per interface | peak RSS | syscalls | manual bpftool + tc | guard vs manual | kernel floor (writes) | guard / floor | load |\n";
    s += "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    for r in rows {
        let sweep = median(r.guard.sweep_ms.clone());
        let floor = ms(r.floor().writes.total());
        let manual = match r.manual {
            Some((d, procs)) => (
                format!("{:.1} s ({procs} processes)", d.as_secs_f64()),
                format!("{:.0}× faster", ms(d) / sweep),
            ),
            None => ("not run".into(), "–".into()),
        };
        let _ = writeln!(
            s,
            "| {} × {} | {} | {:.1} ms | {:.1} µs | {:.1} MiB | {} | {} | {} | {:.1} ms | {:.2}× | {:.1}–{:.1} |",
            r.n,
            r.variant.name(),
            r.objects,
            sweep,
            sweep * 1e3 / r.n as f64,
            r.guard.rss_kib as f64 / 1024.0,
            r.guard.syscalls,
            manual.0,
            manual.1,
            floor,
            sweep / floor,
            r.load.0,
            r.load.1,
        );
    }
    let tcx: Vec<&Row> = rows
        .iter()
        .filter(|r| !r.unexpedited_ms.is_empty())
        .collect();
    if !tcx.is_empty() {
        let _ = writeln!(
            s,
            "\ntcx with and without expedited RCU grace periods (`expedite_grace_periods`, \
             default true; {RCU_EXPEDITED} read {} before the runs and was back to it after \
             every sweep), medians:\n",
            rcu_expedited().unwrap_or_else(|_| "?".into())
        );
        s += "| node | guard `sweep`, expedited (default) | guard `sweep`, `expedite_grace_periods = false` | expedited is |\n";
        s += "|---|---:|---:|---:|\n";
        for r in tcx {
            let (on, off) = (
                median(r.guard.sweep_ms.clone()),
                median(r.unexpedited_ms.clone()),
            );
            let _ = writeln!(
                s,
                "| {} × {} | {on:.1} ms | {off:.1} ms | {:.0}× faster |",
                r.n,
                r.variant.name(),
                off / on
            );
        }
    }
    s += "\nKernel floor by family (writes: each operation timed alone, in-process, and summed), \
          and what reading the node costs the kernel (timed in-process): a sweep reads, writes, \
          and reads again to verify, so reads before + writes + reads after is what a sweep \
          without any overhead of its own would take. Of the floor runs (one after each timed \
          sweep), the one with the median total. The floor detaches at the machine's own \
          rcu_expedited (not expedited), so for tcx the guard's default sweep is below it:\n\n";
    s += "| node | cgroup detaches (6) | tc/tcx detaches | unlink + rmdir | bpfin.cali delete | writes | reads before | reads after | reads + writes | guard / that |\n";
    s += "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    for r in rows {
        let f = r.floor();
        let ideal = ms(f.total());
        let _ = writeln!(
            s,
            "| {} × {} | {:.2} ms | {:.1} ms | {:.2} ms | {:.2} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.2}× |",
            r.n,
            r.variant.name(),
            ms(f.writes.cgroup),
            ms(f.writes.hooks),
            ms(f.writes.pins),
            ms(f.writes.device),
            ms(f.writes.total()),
            ms(f.before.total()),
            ms(f.after.total()),
            ideal,
            median(r.guard.sweep_ms.clone()) / ideal
        );
    }
    let sweep = |r: &Row| median(r.guard.sweep_ms.clone());
    let mut growth = Vec::new();
    for v in [Variant::Tc, Variant::Tcx] {
        let of: Vec<&Row> = rows.iter().filter(|r| r.variant == v).collect();
        if let (Some(small), Some(big)) =
            (of.iter().min_by_key(|r| r.n), of.iter().max_by_key(|r| r.n))
        {
            if big.n > small.n {
                // Sweep time over interfaces also spreads the fixed costs (process start, the
                // device delete); the marginal cost per added interface does not.
                let per = |r: &Row| sweep(r) * 1e3 / r.n as f64;
                let marginal = (sweep(big) - sweep(small)) * 1e3 / (big.n - small.n) as f64;
                growth.push(format!(
                    "{}: sweep time per interface {:.0} µs at {} and {:.0} µs at {} ({:.2}×); \
                     each interface added between them cost {:.0} µs",
                    v.name(),
                    per(small),
                    small.n,
                    per(big),
                    big.n,
                    per(big) / per(small),
                    marginal
                ));
            }
        }
    }
    if !growth.is_empty() {
        let _ = writeln!(s, "\nGrowth: {}.", growth.join("; "));
    }
    let baseline_noop = match (noop.sweep_ms.get(1), &opts.baseline) {
        (Some(b), Some(_)) => format!("; {}: {b:.2} ms", opts.baseline_label),
        _ => String::new(),
    };
    let guard_noop = noop.sweep_ms.first().copied().unwrap_or(f64::NAN);
    let _ = writeln!(
        s,
        "\nNo-op `sweep` on a clean node (eBPF off, nothing to remove; {} BPF programs loaded on \
         the machine), hyperfine, median of three rounds' medians of 100 runs: {guard_noop:.2} ms\
         {baseline_noop}; `/bin/true`: {:.2} ms; difference {:.2} ms.",
        noop.programs,
        noop.true_ms,
        guard_noop - noop.true_ms
    );
    if opts.baseline.is_some() {
        s += &side_by_side(opts, rows, this);
    }
    s
}

/// The baseline and the guard under test, node by node, from the same runs.
fn side_by_side(opts: &Opts, rows: &[Row], this: &str) -> String {
    let mut s = format!(
        "\nSide by side, from the same runs (the two guards took turns on the same node, each \
         run from a fresh plant): {} against this tree ({this}).\n\n| node | | {} | this tree | \
         change |\n|---|---|---:|---:|---:|\n",
        opts.baseline_label, opts.baseline_label
    );
    for r in rows {
        let Some(b) = &r.baseline else { continue };
        let node = format!("{} × {}", r.n, r.variant.name());
        let (old, new) = (median(b.sweep_ms.clone()), median(r.guard.sweep_ms.clone()));
        let ideal = ms(r.floor().total());
        let change = |o: f64, n: f64| format!("{:+.0} %", (n / o - 1.0) * 100.0);
        let mut line = |what: &str, o: String, n: String, c: String| {
            let _ = writeln!(s, "| {node} | {what} | {o} | {n} | {c} |");
        };
        line(
            "`sweep`, median",
            format!("{old:.1} ms"),
            format!("{new:.1} ms"),
            change(old, new),
        );
        line(
            "syscalls",
            b.syscalls.to_string(),
            r.guard.syscalls.to_string(),
            change(b.syscalls as f64, r.guard.syscalls as f64),
        );
        line(
            "peak RSS",
            format!("{:.1} MiB", b.rss_kib as f64 / 1024.0),
            format!("{:.1} MiB", r.guard.rss_kib as f64 / 1024.0),
            change(b.rss_kib as f64, r.guard.rss_kib as f64),
        );
        line(
            "guard / (reads + writes)",
            format!("{:.2}×", old / ideal),
            format!("{:.2}×", new / ideal),
            String::new(),
        );
        if let Some((d, _)) = r.manual {
            line(
                "vs manual bpftool + tc",
                format!("{:.0}× faster", ms(d) / old),
                format!("{:.0}× faster", ms(d) / new),
                String::new(),
            );
        }
    }
    s
}

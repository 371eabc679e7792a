//! The Markdown report `make bench` prints and writes to bench/results.md. It only formats what
//! was measured; it never measures.

use std::fmt::Write as _;
use std::process::Command;

use crate::guard::{rcu_expedited, Noop, RCU_EXPEDITED};
use crate::measure::Row;
use crate::node::Variant;
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

pub fn render(rows: &[Row], noop: &Noop) -> String {
    let mut s = String::new();
    let repo = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let dirty = !cmd_line("git", &["-C", repo, "status", "--porcelain", "--", "src"]).is_empty();
    let _ = writeln!(
        s,
        "Measured by `make bench` on kernel {}, {} cores, guard commit {}{}.\n",
        cmd_line("uname", &["-r"]),
        cmd_line("nproc", &[]),
        cmd_line("git", &["-C", repo, "rev-parse", "--short", "HEAD"]),
        if dirty {
            " with uncommitted changes"
        } else {
            ""
        }
    );
    s += "| node | Calico objects | guard `sweep` (median) | per interface | peak RSS | syscalls | manual bpftool + tc | guard vs manual | kernel floor (writes) | guard / floor |\n";
    s += "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    for r in rows {
        let sweep = median(r.sweep_ms.clone());
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
            "| {} × {} | {} | {:.1} ms | {:.1} µs | {:.1} MiB | {} | {} | {} | {:.1} ms | {:.2}× |",
            r.n,
            r.variant.name(),
            r.objects,
            sweep,
            sweep * 1e3 / r.n as f64,
            r.rss_kib as f64 / 1024.0,
            r.syscalls,
            manual.0,
            manual.1,
            floor,
            sweep / floor
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
            let (on, off) = (median(r.sweep_ms.clone()), median(r.unexpedited_ms.clone()));
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
            median(r.sweep_ms.clone()) / ideal
        );
    }
    let sweep = |r: &Row| median(r.sweep_ms.clone());
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
    let _ = writeln!(
        s,
        "\nNo-op `sweep` on a clean node (eBPF off, nothing to remove; {} BPF programs loaded on \
         the machine), hyperfine, median of three rounds' medians of 100 runs: {:.2} ms; \
         `/bin/true`: {:.2} ms; difference {:.2} ms.",
        noop.programs,
        noop.sweep_ms,
        noop.true_ms,
        noop.sweep_ms - noop.true_ms
    );
    s
}

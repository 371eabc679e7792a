//! `calico-bpf-bench`: the guard against the manual bpftool/tc procedure and against the kernel's
//! own cost, on sandbox nodes with hundreds to thousands of Calico interfaces (issue 5). Every
//! measurement starts from the same planted state: the node (interfaces, qdiscs, foreign
//! objects) is built once per size, and Calico's objects are planted afresh before each run and
//! checked gone (and the foreign ones still there) after it; it never measures a node it has
//! not checked.

mod floor;
mod guard;
mod manual;
mod measure;
mod node;
mod opts;
mod report;
mod stats;
mod stop;

use std::fs;
use std::process::ExitCode;

use anyhow::{ensure, Context, Result};
use calico_bpf_testkit::plant;
use clap::Parser;

use crate::guard::noop;
use crate::measure::measure;
use crate::node::{Node, Variant};
use crate::opts::Opts;
use crate::report::{commit, render};
use crate::stats::load_average;
use crate::stop::check_stop;

fn main() -> ExitCode {
    stop::install();
    match run(&Opts::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(opts: &Opts) -> Result<()> {
    ensure!(
        nix::unistd::Uid::effective().is_root(),
        "needs root: it mounts a bpffs and creates cgroups and network namespaces"
    );
    if opts.hold {
        return hold(opts);
    }
    // The no-op comparison goes first, on a quiet machine. Nodes are kept until the end: the
    // kernel tears a namespace with a thousand interfaces down in the background, for seconds,
    // and that would land in the next node's timings.
    eprintln!("== no-op sweep on a clean node against /bin/true (hyperfine)");
    let load_start = load_average();
    let commit = commit();
    let mut guards = vec![opts.guard.as_path()];
    guards.extend(opts.baseline.as_deref());
    let noop = noop(&guards, 100)?;
    let mut rows = Vec::new();
    let mut nodes = Vec::new();
    for &variant in &opts.variants {
        if variant == Variant::Tcx && !plant::has_tcx()? {
            eprintln!("== tcx: this kernel has no tcx, skipped");
            continue;
        }
        for &n in &opts.sizes {
            check_stop()?;
            eprintln!("== {} node, {n} interfaces: building", variant.name());
            let node = Node::new(variant, n, &opts.guard)?;
            rows.push(measure(opts, &node)?);
            nodes.push(node);
        }
    }
    let table = render(opts, &rows, &noop, (load_start, load_average()), &commit);
    print!("{table}");
    if let Some(out) = &opts.out {
        fs::write(out, &table).with_context(|| format!("writing {}", out.display()))?;
        eprintln!("written to {}", out.display());
    }
    Ok(())
}

fn hold(opts: &Opts) -> Result<()> {
    let (variant, n) = (opts.variants[0], opts.sizes[0]);
    let node = Node::new(variant, n, &opts.guard)?;
    let mut line = String::new();
    loop {
        node.replant()?;
        println!(
            "planted {n} × {}: nsenter --net={} -- {} --config {} sweep",
            variant.name(),
            node.sb.netns().path().display(),
            opts.guard.display(),
            node.sb.config.display()
        );
        line.clear();
        if std::io::stdin().read_line(&mut line)? == 0 {
            return Ok(());
        }
        node.expect_clean("the sweep")?;
    }
}

//! `calico-bpf-bench`: the guard against the manual bpftool/tc procedure and against the kernel's
//! own cost, on sandbox nodes with hundreds to thousands of Calico interfaces (issue 5).
//!
//! Every measurement starts from the same planted state: the node (interfaces, qdiscs, foreign
//! objects) is built once per size, and Calico's objects are planted afresh before each run and
//! checked gone (and the foreign ones still there) after it.

mod floor;
mod guard;
mod manual;
mod measure;
mod node;
mod report;

use std::fs;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, ensure, Context, Result};
use calico_bpf_testkit::plant;
use clap::Parser;

use crate::guard::noop;
use crate::measure::measure;
use crate::node::{Node, Variant};
use crate::report::render;

/// The guard against the manual bpftool/tc procedure and the kernel's own cost, on sandbox
/// nodes with Calico interfaces. Needs root. Prints a Markdown table.
#[derive(Parser)]
#[command(name = "calico-bpf-bench", max_term_width = 100)]
pub struct Opts {
    /// The guard binary to measure.
    #[arg(long, value_name = "PATH")]
    pub guard: PathBuf,
    /// Interfaces per node, one node each (with --hold, the first).
    #[arg(
        long,
        value_name = "N,...",
        value_delimiter = ',',
        default_value = "100,1000",
        value_parser = interfaces
    )]
    pub sizes: Vec<usize>,
    /// How Calico attaches its tc programs (with --hold, the first).
    #[arg(
        long,
        value_enum,
        value_name = "VARIANT,...",
        value_delimiter = ',',
        default_value = "tc,tcx"
    )]
    pub variants: Vec<Variant>,
    /// Timed sweeps per node (the median is reported).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 3,
        value_parser = runs
    )]
    pub runs: usize,
    /// Largest node the manual procedure runs on [default: every size].
    #[arg(long, value_name = "N")]
    pub manual_max: Option<usize>,
    /// Also write the Markdown table here.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Build one node, plant it, print its config and namespace, and plant it again for every
    /// line read on stdin (for profiling by hand); EOF removes it.
    #[arg(long)]
    pub hold: bool,
}

/// A node size. Spaces around the commas are allowed; zero is not, because the foreign tc
/// program goes on the first interface.
fn interfaces(s: &str) -> Result<usize, String> {
    match s.trim().parse() {
        Ok(0) => Err("a node needs at least one interface".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("bad number {s}: {e}")),
    }
}

/// A median needs at least one run.
fn runs(s: &str) -> Result<usize, String> {
    match s.parse() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("bad number {s}: {e}")),
    }
}

/// Set by SIGINT/SIGTERM: the bench stops at the next step and its sandboxes are removed by
/// their Drop (a killed child process makes the current step fail first).
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

pub fn check_stop() -> Result<()> {
    if STOP.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

fn main() -> ExitCode {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
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
    let noop = noop(&opts.guard, 100)?;
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
    let table = render(&rows, &noop);
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

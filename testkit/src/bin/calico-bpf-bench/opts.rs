//! The bench's command line: which guard, which node sizes and variants, how many runs, and
//! where the table goes. Parsing only; it never measures anything.

use std::path::PathBuf;

use clap::Parser;

use crate::node::Variant;

/// The guard against the manual bpftool/tc procedure and the kernel's own cost, on sandbox
/// nodes with Calico interfaces. Needs root. Prints a Markdown table.
#[derive(Parser)]
#[command(name = "calico-bpf-bench", max_term_width = 100)]
pub struct Opts {
    /// The guard binary to measure.
    #[arg(long, value_name = "PATH")]
    pub guard: PathBuf,
    /// A second guard binary (another commit's build) measured in the same runs, interleaved
    /// with the first, so that both see the same machine (`make bench-compare`).
    #[arg(long, value_name = "PATH")]
    pub baseline: Option<PathBuf>,
    /// What the table calls the baseline (its commit, say).
    #[arg(long, value_name = "TEXT", default_value = "baseline")]
    pub baseline_label: String,
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
    /// How the guards were built, said in the table's header (scripts/bench.sh builds both as
    /// shipped).
    #[arg(long, value_name = "TEXT")]
    pub built: Option<String>,
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

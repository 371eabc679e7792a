//! The `calico-bpf-guard` command line: parses the arguments, sets up logging, runs one command
//! of `run` and turns its result into the process's exit code. It never scans or changes the
//! kernel itself.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Parser, Subcommand};
use modefile::Dataplane;

use calico_bpf_guard::config;
use calico_bpf_guard::kernel::bpf::route_libbpf_prints;
use calico_bpf_guard::logging::{self, Level};
use calico_bpf_guard::run::{self, SweepOpts, EXIT_CONFIG};

/// Remove stale Calico eBPF dataplane objects from a node that runs the iptables or nftables
/// dataplane, and nothing else.
///
/// Reads the cached node mode file; when it says eBPF is off, removes Calico's connect-time
/// load balancer programs from cgroups, its tc/tcx/XDP programs, its bpffs pins and its
/// bpfin.cali device. Other software's programs stay, even on the same hooks.
#[derive(Parser)]
#[command(name = "calico-bpf-guard", version, max_term_width = 100)]
struct Cli {
    /// Configuration file [default: /etc/calico-bpf-guard/config.toml; if that is missing,
    /// built-in defaults]
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Remove stale Calico eBPF objects if the mode file says eBPF is off (the unit's command)
    ///
    /// Exit 0: done or nothing to do; 1: something Calico-owned could not be removed, a place
    /// could not be inspected, or the sweep was refused because a running process holds objects
    /// it would remove (or, without the task_file iterator and CAP_SYS_PTRACE, the guard cannot
    /// tell); 78: invalid config or mode file (nothing touched). With `metrics_file` in the
    /// config, a sweep (not a dry run) writes its Prometheus metrics there.
    Sweep {
        /// Print the plan (every object, where it is, why it is Calico's) and change nothing
        #[arg(long)]
        dry_run: bool,
        /// Also sweep without a mode file, and when the live-dataplane interlock refuses; never
        /// against a mode file that says bpf
        #[arg(long)]
        force: bool,
        /// Print one JSON report on stdout instead of the table
        #[arg(long)]
        json: bool,
    },
    /// For monitoring: exit 0 clean (or eBPF on), 1 stale Calico objects while eBPF is off, 2
    /// cannot tell, 78 invalid config or mode file
    Check {
        /// Print one JSON report on stdout instead of the table
        #[arg(long)]
        json: bool,
        /// Also write Prometheus metrics to PATH (atomically), for node_exporter's textfile
        /// collector (in its --collector.textfile.directory; it reads only names ending in .prom)
        #[arg(long, value_name = "PATH")]
        metrics: Option<PathBuf>,
    },
    /// Read or write the cached node mode file
    Mode {
        #[command(subcommand)]
        action: ModeCommand,
    },
    /// Print the read-only scan as JSON, to replay in a golden test (tests/golden/); hidden, the
    /// format is the test suite's and may change
    #[command(hide = true)]
    DebugInventory,
}

#[derive(Subcommand)]
enum ModeCommand {
    /// Print the mode file
    Show,
    /// Write the mode file atomically (0644)
    Set {
        /// Calico's linuxDataplane value, or `none`: Calico is not this node's dataplane any more
        /// (uninstalled, or migrated to another CNI); the guard sweeps as for iptables
        #[arg(ignore_case = true, value_parser = dataplane_parser())]
        dataplane: Dataplane,
        /// Free text: who wrote it (e.g. "image build", "cloud-init")
        #[arg(long, value_name = "TEXT")]
        source: Option<String>,
    },
}

/// The mode file's own names, so that `mode set` takes exactly what the file does.
fn dataplane_parser() -> impl TypedValueParser<Value = Dataplane> {
    PossibleValuesParser::new(Dataplane::ALL.map(Dataplane::as_str)).try_map(|s| {
        Dataplane::parse(&s).ok_or_else(|| format!("`{s}` is not one of {}", Dataplane::names()))
    })
}

fn main() -> ExitCode {
    #[cfg(feature = "failpoints")]
    let _failpoints = calico_bpf_guard::failpoint::setup();
    let cli = Cli::parse();
    route_libbpf_prints(logging::libbpf);
    let result = run(cli);
    let code = run::exit_code(&result);
    match result {
        Err(e) if code == EXIT_CONFIG => {
            logging::log(Level::Err, &format!("{e:#} (nothing was touched)"));
        }
        Err(e) => {
            logging::log(Level::Err, &format!("{e:#}"));
            logging::notify_status(&format!("failed: {e:#}"));
        }
        Ok(_) => {}
    }
    ExitCode::from(code)
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    let (path, explicit) = match cli.config {
        Some(p) => (p, true),
        None => (PathBuf::from(config::DEFAULT_CONFIG), false),
    };
    let settings = config::load(&path, explicit)?;
    logging::init(settings.log);
    match cli.command {
        Command::Sweep {
            dry_run,
            force,
            json,
        } => run::sweep(
            &settings,
            SweepOpts {
                dry_run,
                force,
                json,
            },
        ),
        Command::Check { json, metrics } => run::check(&settings, json, metrics.as_deref()),
        Command::Mode {
            action: ModeCommand::Show,
        } => run::mode_show(&settings),
        Command::Mode {
            action: ModeCommand::Set { dataplane, source },
        } => run::mode_set(&settings, dataplane, source),
        Command::DebugInventory => run::debug_inventory(&settings),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// clap's own consistency checks of every argument and subcommand.
    #[test]
    fn cli_is_consistent() {
        super::Cli::command().debug_assert();
    }
}

//! The command line: what the DaemonSet's container passes (most of it through the
//! environment), the tests' short delays, and `--once`. It parses; it never acts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Keeps this node's calico-bpf-guard mode file in step with the cluster's Calico dataplane.
#[derive(Parser, Debug)]
#[command(name = "calico-bpf-guard-sync", version)]
pub struct Args {
    /// This node's name (the pod's spec.nodeName), for FelixConfiguration node.<name>;
    /// default: the environment variable NODE_NAME. Required one way or the other.
    #[arg(long)]
    pub node_name: Option<String>,

    /// The node's mode file (hostPath /var/lib/calico-bpf-guard).
    #[arg(long, default_value = "/var/lib/calico-bpf-guard/mode.toml")]
    pub mode_file: PathBuf,

    /// The override (a ConfigMap key mounted as a volume, never with subPath); missing means auto.
    #[arg(long, default_value = "/etc/calico-bpf-guard-sync/dataplane")]
    pub override_file: PathBuf,

    /// Where /metrics, /healthz and /readyz listen.
    #[arg(long, default_value = "0.0.0.0:9743")]
    pub listen: SocketAddr,

    /// A kubeconfig instead of the in-cluster service account (KUBECONFIG and ~/.kube/config
    /// are also tried before in-cluster, as kube-rs infers).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,

    /// Namespaces where the calico-node DaemonSet may live (operator, manifests).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "calico-system,kube-system"
    )]
    pub namespaces: Vec<String>,

    /// One evaluation, no watches, no HTTP: exit 0 written, 3 unchanged, 1 kept (failure).
    #[arg(long)]
    pub once: bool,

    /// Longest wait for one API request.
    #[arg(long, default_value = "10s", value_parser = duration)]
    pub request_timeout: Duration,

    /// Re-evaluation interval without any watch event (also how often an absent CRD is
    /// looked for again).
    #[arg(long, default_value = "10m", value_parser = duration)]
    pub resync: Duration,

    /// How long a resource type that was served earlier and now answers 404 must keep
    /// answering 404 before its source counts as absent (until then the cache is kept and the
    /// type is looked at again at the retry delay).
    #[arg(long, default_value = "2m", value_parser = duration)]
    pub absent_hold: Duration,

    /// First retry delay after a failure; it doubles up to --retry-max.
    #[arg(long, default_value = "1s", value_parser = duration)]
    pub retry_min: Duration,

    #[arg(long, default_value = "5m", value_parser = duration)]
    pub retry_max: Duration,

    /// How long to let a burst of watch events settle before evaluating.
    #[arg(long, default_value = "1s", value_parser = duration)]
    pub settle: Duration,

    /// How often the override file is read again.
    #[arg(long, default_value = "5s", value_parser = duration)]
    pub override_poll: Duration,
}

impl Args {
    /// The arguments, with `--node-name` taken from `NODE_NAME` when not given (read here, not
    /// by clap's `env` feature, which would also change the guard's clap in a workspace build).
    /// Exits 2 with clap's usage message when neither is there.
    pub fn parse_all() -> Args {
        let mut args = Args::parse();
        if args.node_name.is_none() {
            args.node_name = std::env::var("NODE_NAME").ok().filter(|n| !n.is_empty());
        }
        if args.node_name.is_none() {
            use clap::CommandFactory;
            Args::command()
                .error(
                    clap::error::ErrorKind::MissingRequiredArgument,
                    "--node-name (or NODE_NAME) is required",
                )
                .exit();
        }
        args
    }

    pub fn node(&self) -> &str {
        self.node_name.as_deref().unwrap_or_default()
    }
}

/// `250ms`, `10s`, `5m`, `1h`.
pub fn duration(s: &str) -> Result<Duration, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a number and ms, s, m or h"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!("{s:?}: expected a number and ms, s, m or h")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(duration("5m"), Ok(Duration::from_secs(300)));
        assert!(duration("5").is_err());
        assert!(duration("s").is_err());
        assert!(duration("1d").is_err());
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Args::command().debug_assert();
    }
}

//! calico-bpf-guard-sync: keeps this node's calico-bpf-guard mode file in step with the
//! cluster's Calico dataplane, read through the Kubernetes API (kube-rs, rustls with ring). It
//! runs as a DaemonSet with read-only RBAC; the node's boot-time guard reads what it writes.
//! `main` wires the command line, the runtime, the HTTP endpoint and SIGTERM; it decides nothing.

mod absence;
mod cli;
mod cluster;
mod decide;
mod felix;
mod http;
mod logline;
mod metrics;
mod modecache;
mod override_file;
mod reason;
mod run;
mod sources;
mod watch;

use std::process::ExitCode;
use std::sync::Arc;

use tokio::signal::unix::{signal, SignalKind};

fn main() -> ExitCode {
    let args = cli::Args::parse_all();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            logline::warn(&format!("cannot start the runtime: {e}"));
            return ExitCode::from(1);
        }
    };
    runtime.block_on(start(args))
}

async fn start(args: cli::Args) -> ExitCode {
    let metrics = Arc::new(metrics::Metrics::new());
    if args.once {
        let outcome = run::Sync::new(args, metrics).evaluate(None).await;
        return ExitCode::from(outcome.map_or(1, run::Outcome::exit_code));
    }
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            logline::warn(&format!("cannot listen on {}: {e}", args.listen));
            return ExitCode::from(1);
        }
    };
    let (terms, ints) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        (Err(e), _) | (_, Err(e)) => {
            logline::warn(&format!("cannot catch SIGTERM: {e}"));
            return ExitCode::from(1);
        }
    };
    logline::info(&format!(
        "node {}, mode file {}, override {}, listening on {}",
        args.node(),
        args.mode_file.display(),
        args.override_file.display(),
        args.listen
    ));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(http::serve(listener, metrics.clone(), stop_rx.clone()));
    let sync = run::Sync::new(args, metrics);
    tokio::spawn(async move {
        let (mut terms, mut ints) = (terms, ints);
        tokio::select! {
            _ = terms.recv() => {}
            _ = ints.recv() => {}
        }
        logline::info("stopping");
        let _ = stop_tx.send(true);
    });
    sync.run(stop_rx).await;
    let _ = server.await;
    ExitCode::SUCCESS
}

//! The test API server as a program, for the podman end-to-end test and for people: `serve` a
//! world directory, and small commands that change the world while it runs (the same files a
//! test writes). It is a command line over the library; the behaviour is the library's.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use calico_bpf_guard_testapi::{fixtures, ObjectRef, Server, World};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "calico-bpf-guard-testapi", version)]
/// A stand-in Kubernetes API server serving Calico's objects, for tests only.
struct Cli {
    /// The world directory (created if missing).
    #[arg(long)]
    dir: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve on 127.0.0.1 until killed; writes ca.crt, kubeconfig, port, token into the world.
    Serve {
        /// 0 picks a free port (see the `port` file).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Answer 403 to anything the Roles/ClusterRoles in this YAML do not grant.
        #[arg(long)]
        rbac: Option<PathBuf>,
    },
    /// FelixConfiguration NAME in GROUP (crd.projectcalico.org/v1 or projectcalico.org/v3);
    /// BPF is true, false, unset or delete.
    Felix {
        group: String,
        name: String,
        bpf: String,
    },
    /// Installation default's linuxDataplane (BPF, Iptables, Nftables, VPP), unset or delete.
    Installation { dataplane: String },
    /// The calico-node DaemonSet in NAMESPACE (calico-system: the operator's render, else the
    /// manifests'); VALUE is FELIX_BPFENABLED's value, unset (no entry) or delete.
    Daemonset { namespace: String, value: String },
    /// A ConfigMap NAMESPACE/NAME with KEY=VALUE pairs.
    Configmap {
        namespace: String,
        name: String,
        pairs: Vec<String>,
    },
    /// Serve only these types (`group/version resource`, `v1 configmaps`); none: serve nothing.
    Served { types: Vec<String> },
    /// Faults, one `ACTION SUBSTRING` per argument (401 403 404 500 503 timeout garbage drop
    /// gone stale); none clears them.
    Faults { lines: Vec<String> },
    /// Accept only this token from now on.
    Token { token: String },
}

fn run(cli: Cli) -> Result<()> {
    let w = World::create_or_open(&cli.dir)?;
    match cli.cmd {
        Cmd::Serve { port, rbac } => {
            if let Some(r) = rbac {
                w.set_rbac(Some(&std::fs::read_to_string(r)?))?;
            }
            let s = Server::start(w, port)?;
            eprintln!(
                "calico-bpf-guard-testapi: serving https://127.0.0.1:{}",
                s.port
            );
            loop {
                std::thread::park();
            }
        }
        Cmd::Felix { group, name, bpf } => {
            let bpf = match bpf.as_str() {
                "true" => Some(true),
                "false" => Some(false),
                "unset" => None,
                "delete" => {
                    return w.delete(&ObjectRef::new(&group, None, "felixconfigurations", &name));
                }
                other => bail!("bpf: {other:?} is not true, false, unset or delete"),
            };
            w.put("felixconfigurations", &fixtures::felix(&group, &name, bpf))
        }
        Cmd::Installation { dataplane } => match dataplane.as_str() {
            "delete" => w.delete(&ObjectRef::new(
                "operator.tigera.io/v1",
                None,
                "installations",
                "default",
            )),
            "unset" => w.put("installations", &fixtures::installation(None)),
            d => w.put("installations", &fixtures::installation(Some(d))),
        },
        Cmd::Daemonset { namespace, value } => match value.as_str() {
            "delete" => w.delete(&ObjectRef::new(
                "apps/v1",
                Some(&namespace),
                "daemonsets",
                "calico-node",
            )),
            "unset" => w.put("daemonsets", &fixtures::daemonset(&namespace, None)),
            v => w.put(
                "daemonsets",
                &fixtures::daemonset(&namespace, Some(fixtures::env_value(v))),
            ),
        },
        Cmd::Configmap {
            namespace,
            name,
            pairs,
        } => {
            let kv: Vec<(&str, &str)> = pairs.iter().filter_map(|p| p.split_once('=')).collect();
            w.put("configmaps", &fixtures::config_map(&namespace, &name, &kv))
        }
        Cmd::Served { types } => {
            let t: Vec<&str> = types.iter().map(String::as_str).collect();
            w.set_served(&t)
        }
        Cmd::Faults { lines } => {
            let l: Vec<&str> = lines.iter().map(String::as_str).collect();
            w.set_faults(&l)
        }
        Cmd::Token { token } => w.rotate_token(&token),
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("calico-bpf-guard-testapi: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

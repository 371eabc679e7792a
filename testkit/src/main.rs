//! `calico-bpf-testkit`: plant and verify stale Calico state outside the test harness (the
//! boot test plants on a booted systemd; the demo runs a whole sandbox). It never sweeps:
//! removing Calico's objects is the guard's job, under test.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use calico_bpf_testkit::{plant, sandbox, snapshot, Sandbox};

const USAGE: &str = "usage:
  calico-bpf-testkit plant --bpffs DIR --cgroup DIR
  calico-bpf-testkit plant-tcx --bpffs DIR --count N
  calico-bpf-testkit has-tcx
  calico-bpf-testkit verify --bpffs DIR --cgroup DIR --expect swept|planted
  calico-bpf-testkit demo --guard PATH";

/// The boot test's interface in the current network namespace.
const BOOT_CALICO: [&str; 1] = ["tc cali-boot0 ingress pref 1 proto all cali_tc_preambl"];
const BOOT_FOREIGN: [&str; 2] = [
    "tc cali-boot0 egress pref 2 proto all cil_to_netdev",
    "dev cali-boot0 veth",
];

fn flag(args: &[String], name: &str) -> Result<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .with_context(|| format!("missing {name}\n{USAGE}"))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &[String]) -> Result<u8> {
    match args.first().map(String::as_str) {
        Some("plant") => {
            let (bpffs, cgroup) = (
                PathBuf::from(flag(args, "--bpffs")?),
                PathBuf::from(flag(args, "--cgroup")?),
            );
            plant::calico_host(&bpffs, &cgroup)?;
            // veth, not dummy: kernels without the dummy driver (like CI's) have veth for pods.
            sandbox::run(
                "ip",
                &[
                    "link",
                    "add",
                    "cali-boot0",
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "cali-boot0p",
                ],
            )?;
            plant::clsact("cali-boot0")?;
            plant::tc_filter(
                "cali-boot0",
                plant::INGRESS,
                1,
                1,
                plant::ETH_P_ALL,
                "cali_tc_preambl",
            )?;
            plant::tc_filter(
                "cali-boot0",
                plant::EGRESS,
                2,
                1,
                plant::ETH_P_ALL,
                "cil_to_netdev",
            )?;
            println!(
                "planted stale Calico state in {} and {}",
                bpffs.display(),
                cgroup.display()
            );
            Ok(0)
        }
        Some("plant-tcx") => {
            let bpffs = PathBuf::from(flag(args, "--bpffs")?);
            let count: usize = flag(args, "--count")?
                .parse()
                .context("--count: want a number")?;
            plant_tcx(&bpffs, count)?;
            println!(
                "planted {count} Calico interfaces with pinned tcx links in {}",
                bpffs.display()
            );
            Ok(0)
        }
        // Exit 0: this kernel has tcx (6.6+); 1: it has not.
        Some("has-tcx") => Ok(u8::from(!plant::has_tcx()?)),
        Some("verify") => {
            let (bpffs, cgroup) = (
                PathBuf::from(flag(args, "--bpffs")?),
                PathBuf::from(flag(args, "--cgroup")?),
            );
            let expect = flag(args, "--expect")?;
            let mut now = snapshot::cgroups(&cgroup)?;
            now.extend(snapshot::pins(&bpffs)?);
            now.extend(snapshot::network()?);
            let calico: Vec<&str> = plant::CALICO_HOST
                .iter()
                .chain(&BOOT_CALICO)
                .copied()
                .collect();
            let kernel = kernel_pins()?;
            let foreign: Vec<&str> = plant::FOREIGN_HOST
                .iter()
                .chain(&BOOT_FOREIGN)
                .copied()
                .chain(kernel.iter().map(String::as_str))
                .collect();
            let mut wrong = Vec::new();
            match expect.as_str() {
                "swept" => {
                    wrong.extend(
                        calico
                            .iter()
                            .filter(|l| now.contains(**l))
                            .map(|l| format!("still there: {l}")),
                    );
                    wrong.extend(
                        foreign
                            .iter()
                            .filter(|l| !now.contains(**l))
                            .map(|l| format!("foreign object gone: {l}")),
                    );
                }
                "planted" => {
                    wrong.extend(
                        calico
                            .iter()
                            .chain(&foreign)
                            .filter(|l| !now.contains(**l))
                            .map(|l| format!("missing: {l}")),
                    );
                }
                other => bail!("--expect {other}: want swept or planted\n{USAGE}"),
            }
            for w in &wrong {
                println!("{w}");
            }
            println!(
                "verify --expect {expect}: {}",
                if wrong.is_empty() { "ok" } else { "FAILED" }
            );
            Ok(u8::from(!wrong.is_empty()))
        }
        Some("demo") => demo(&PathBuf::from(flag(args, "--guard")?)),
        _ => {
            eprintln!("{USAGE}");
            Ok(2)
        }
    }
}

/// The kernel's own files in every bpffs instance, as snapshot lines: `maps.debug` and
/// `progs.debug`, the preload iterators of a kernel built with CONFIG_BPF_PRELOAD, which the
/// guard must leave. Debian's own kernels are built without them, so they are expected where a
/// fresh instance, mounted here for a moment, shows them.
fn kernel_pins() -> Result<snapshot::Snapshot> {
    let dir = sandbox::TempDir::new("kernel-pins")?;
    let fresh = sandbox::Bpffs::new(dir.path.join("bpffs"))?;
    snapshot::pins(&fresh.path)
}

/// `count` veths `cali-tcx<i>`, each with Calico's pinned tcx links: enough tcx detaches for
/// the guard to expedite grace periods.
fn plant_tcx(bpffs: &std::path::Path, count: usize) -> Result<()> {
    if !plant::has_tcx()? {
        bail!("this kernel has no tcx (6.6)");
    }
    for i in 0..count {
        let dev = format!("cali-tcx{i}");
        plant::veth(&dev, format!("{dev}p"))?;
        plant::calico_tcx_links(bpffs, &dev)?;
    }
    Ok(())
}

fn show(title: &str, lines: &BTreeSet<String>) {
    println!("\n=== {title} ({} objects)", lines.len());
    for l in lines {
        println!("  {l}");
    }
}

/// A throwaway node: plant, dry-run, sweep, show what is left, remove the sandbox.
fn demo(guard: &std::path::Path) -> Result<u8> {
    let sb = Sandbox::new("demo", guard)?;
    plant::calico_host(&sb.bpffs.path, &sb.cgroup.path)?;
    sb.netns().enter(plant::calico_network)?;
    sb.set_mode(Some("iptables"))?;
    println!(
        "sandbox: bpffs {}, cgroup {}, netns {}",
        sb.bpffs.path.display(),
        sb.cgroup.path.display(),
        sb.netns().name
    );
    let before = sb.snapshot();
    show(
        "before: stale Calico state beside other tools' objects",
        &before,
    );
    for args in [&["sweep", "--dry-run"][..], &["sweep"][..], &["check"][..]] {
        println!("\n=== calico-bpf-guard {}", args.join(" "));
        let out = sb.guard(args);
        print!("{}", String::from_utf8_lossy(&out.stdout));
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        println!("(exit {})", out.status.code().unwrap_or(-1));
    }
    let after = sb.snapshot();
    show("after: what is left", &after);
    let removed: BTreeSet<_> = before.difference(&after).cloned().collect();
    show("removed", &removed);
    Ok(0)
}

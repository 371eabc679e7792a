//! The exact set of objects in a sandbox, one line each, so a test can assert what is left.
//! Network state is read with iproute2's JSON output, not with the guard's own netlink code,
//! so a bug there cannot hide itself.

use std::collections::BTreeSet;
use std::fs;
use std::os::fd::AsFd;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use calico_bpf_guard::kernel::bpf::{self, IdSpace, Target};
use serde_json::Value;

use crate::progs;
use crate::sandbox::Sandbox;

pub type Snapshot = BTreeSet<String>;

/// The guard's six sock_addr hooks, and the hooks other tools use on the same cgroups.
fn cgroup_hooks() -> impl Iterator<Item = (u32, &'static str)> {
    calico_bpf_guard::inventory::CGROUP_HOOKS
        .into_iter()
        .chain([
            (progs::ATTACH_INGRESS, "ingress"),
            (progs::ATTACH_EGRESS, "egress"),
            (progs::ATTACH_DEVICE, "device"),
            (libbpf_sys::BPF_CGROUP_SOCK_OPS, "sock_ops"),
        ])
}

fn prog_name(id: u32) -> String {
    bpf::fd_by_id(IdSpace::Prog, id)
        .and_then(|fd| bpf::prog_info(fd.as_fd()))
        .map(|p| p.name)
        .unwrap_or_else(|_| format!("prog#{id}"))
}

/// `cgroup <rel> <hook> <program> <exclusive|override|multi>` for every cgroup under `root`.
pub fn cgroups(root: &Path) -> Result<Snapshot> {
    let mut out = Snapshot::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let f = fs::File::open(&dir)?;
        let rel = dir.strip_prefix(root).unwrap_or(&dir).display().to_string();
        let rel = if rel.is_empty() { ".".to_string() } else { rel };
        for (hook, hook_name) in cgroup_hooks() {
            let q = bpf::query(Target::Fd(f.as_fd()), hook)
                .with_context(|| format!("query {hook_name} {}", dir.display()))?;
            let how = match q.slot_flags {
                0 => "exclusive",
                1 => "override",
                _ => "multi",
            };
            for p in q.progs {
                out.insert(format!(
                    "cgroup {rel} {hook_name} {} {how}",
                    prog_name(p.prog_id)
                ));
            }
        }
        for e in fs::read_dir(&dir)?.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            }
        }
    }
    Ok(out)
}

/// `pin <rel>` and `dir <rel>/` for everything on a bpffs.
pub fn pins(root: &Path) -> Result<Snapshot> {
    let mut out = Snapshot::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir)?.flatten() {
            let rel = e
                .path()
                .strip_prefix(root)
                .unwrap_or(&e.path())
                .display()
                .to_string();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.insert(format!("dir {rel}/"));
                stack.push(e.path());
            } else {
                out.insert(format!("pin {rel}"));
            }
        }
    }
    Ok(out)
}

fn json(cmd: &str, args: &[&str]) -> Result<Value> {
    let out = Command::new(cmd).args(args).output()?;
    if !out.status.success() {
        bail!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    if out.stdout.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Array(Vec::new()));
    }
    serde_json::from_slice(&out.stdout).with_context(|| format!("{cmd} {} output", args.join(" ")))
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

/// Devices, XDP, tc filters and tcx programs of the calling thread's network namespace:
/// `dev <name> <kind>`, `xdp <dev> <mode> <prog>`, `tc <dev> <dir> pref <n> proto <p> <prog>`,
/// `tcx <dev> <dir> <prog> <link|direct>`. Loopback is left out.
pub fn network() -> Result<Snapshot> {
    let mut out = Snapshot::new();
    let links = json("ip", &["-j", "-d", "link", "show"])?;
    for l in links.as_array().into_iter().flatten() {
        let Some(name) = str_at(l, &["ifname"]) else {
            continue;
        };
        if name == "lo" {
            continue;
        }
        let kind = str_at(l, &["linkinfo", "info_kind"]).unwrap_or("-");
        out.insert(format!("dev {name} {kind}"));
        if let Some(x) = l.get("xdp") {
            let mode_name = |m: &Value| match m.as_u64() {
                Some(1) => "driver",
                Some(2) => "generic",
                Some(3) => "offload",
                _ => "?",
            };
            let entries: Vec<&Value> = match x.get("attached").and_then(Value::as_array) {
                Some(a) => a.iter().collect(),
                None => vec![x],
            };
            for e in entries {
                if let Some(p) = str_at(e, &["prog", "name"]) {
                    out.insert(format!("xdp {name} {} {p}", mode_name(&e["mode"])));
                }
            }
        }
        for dir in ["ingress", "egress"] {
            let filters = json("tc", &["-j", "filter", "show", "dev", name, dir])?;
            for f in filters.as_array().into_iter().flatten() {
                let prog = str_at(f, &["options", "prog", "name"])
                    .or_else(|| str_at(f, &["options", "bpf_name"]));
                let Some(prog) = prog else { continue };
                let pref = f.get("pref").and_then(Value::as_u64).unwrap_or(0);
                let proto = str_at(f, &["protocol"]).unwrap_or("?");
                out.insert(format!("tc {name} {dir} pref {pref} proto {proto} {prog}"));
            }
            let idx = l.get("ifindex").and_then(Value::as_u64).unwrap_or(0) as u32;
            let hook = if dir == "ingress" {
                bpf::ATTACH_TCX_INGRESS
            } else {
                bpf::ATTACH_TCX_EGRESS
            };
            if let Ok(q) = bpf::query(Target::Ifindex(idx), hook) {
                for p in q.progs {
                    let how = if p.link_id != 0 { "link" } else { "direct" };
                    out.insert(format!("tcx {name} {dir} {} {how}", prog_name(p.prog_id)));
                }
            }
        }
    }
    Ok(out)
}

impl Sandbox {
    /// Everything in this sandbox: its cgroup subtree, its bpffs and its network namespace.
    pub fn snapshot(&self) -> Snapshot {
        let mut s = cgroups(&self.cgroup.path).expect("cgroup snapshot");
        s.extend(pins(&self.bpffs.path).expect("bpffs snapshot"));
        if let Some(ns) = &self.netns {
            s.extend(ns.enter(network).expect("network snapshot"));
        }
        s
    }
}

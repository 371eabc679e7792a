//! The exact set of objects in a sandbox, one line each, so a test can assert what is left.
//! Network state is read with iproute2's JSON output, not with the guard's own netlink code,
//! so a bug there cannot hide itself.

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use calico_bpf_guard::kernel::bpf::{self, IdSpace, Target};
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fstatat, Mode, SFlag};
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
            (crate::progs::ATTACH_SOCK_OPS, "sock_ops"),
        ])
}

fn prog_name(id: u32) -> String {
    bpf::fd_by_id(IdSpace::Prog, id)
        .and_then(|fd| bpf::prog_info(fd.as_fd()))
        .map(|p| p.name)
        .unwrap_or_else(|_| format!("prog#{id}"))
}

/// Walk a tree one directory fd at a time, not following symlinks (but entering mounts: the
/// snapshot must show what a planted mount holds), so that paths longer than PATH_MAX and names
/// that are not UTF-8 are listed like any other. `visit` gets each directory's fd and its path
/// below the root (empty for the root); entries other than directories go to `leaf`.
fn walk(
    root: &Path,
    visit: &mut dyn FnMut(&OwnedFd, &Path) -> Result<()>,
    leaf: &mut dyn FnMut(&Path),
) -> Result<()> {
    let top = open(root).with_context(|| format!("opening {}", root.display()))?;
    // Depth first, holding open only the directories from the root down to where the walk is,
    // with the names of the subdirectories each still has to give: a test makes thousands of
    // sibling cgroups, more than a test process may have fds (1,024 by default).
    let mut stack: Vec<(OwnedFd, PathBuf, Vec<OsString>)> = Vec::new();
    let mut next = Some((top, PathBuf::new()));
    loop {
        if let Some((fd, rel)) = next.take() {
            visit(&fd, &rel)?;
            let mut subdirs = Vec::new();
            let mut list = nix::dir::Dir::openat(
                &fd,
                ".",
                OFlag::O_RDONLY | OFlag::O_DIRECTORY,
                Mode::empty(),
            )
            .with_context(|| format!("listing {}", root.join(&rel).display()))?;
            for e in list.iter() {
                let e = e?;
                let name = OsStr::from_bytes(e.file_name().to_bytes());
                if name == "." || name == ".." {
                    continue;
                }
                let st = fstatat(&fd, name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
                if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR {
                    subdirs.push(name.to_os_string());
                } else {
                    leaf(&rel.join(name));
                }
            }
            stack.push((fd, rel, subdirs));
        }
        let Some((fd, rel, subdirs)) = stack.last_mut() else {
            break;
        };
        let Some(name) = subdirs.pop() else {
            stack.pop();
            continue;
        };
        let child = openat(
            &*fd,
            name.as_os_str(),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        next = Some((child, rel.join(&name)));
    }
    Ok(())
}

fn open(path: &Path) -> nix::Result<OwnedFd> {
    nix::fcntl::open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

fn shown(rel: &Path) -> String {
    calico_bpf_guard::names::path(rel)
}

/// `cgroup <rel> <hook> <program> <exclusive|override|multi>` for every cgroup under `root`.
pub fn cgroups(root: &Path) -> Result<Snapshot> {
    let mut out = Snapshot::new();
    walk(
        root,
        &mut |fd, rel| {
            let rel = if rel.as_os_str().is_empty() {
                ".".to_string()
            } else {
                shown(rel)
            };
            for (hook, hook_name) in cgroup_hooks() {
                let q = bpf::query(Target::Fd(fd.as_fd()), hook)
                    .with_context(|| format!("query {hook_name} {rel}"))?;
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
            Ok(())
        },
        &mut |_| {},
    )?;
    Ok(out)
}

/// `pin <rel>` and `dir <rel>/` for everything on a bpffs (a symlink or other file is listed
/// as a pin).
pub fn pins(root: &Path) -> Result<Snapshot> {
    let mut dirs = Snapshot::new();
    let mut files = Snapshot::new();
    walk(
        root,
        &mut |_, rel| {
            if !rel.as_os_str().is_empty() {
                dirs.insert(format!("dir {}/", shown(rel)));
            }
            Ok(())
        },
        &mut |rel| {
            files.insert(format!("pin {}", shown(rel)));
        },
    )?;
    dirs.append(&mut files);
    Ok(dirs)
}

fn json(cmd: &str, args: &[&OsStr]) -> Result<Value> {
    let out = Command::new(cmd).args(args).output()?;
    let shown: Vec<String> = args
        .iter()
        .map(|a| calico_bpf_guard::names::os(a))
        .collect();
    if !out.status.success() {
        bail!(
            "{cmd} {}: {}",
            shown.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    if out.stdout.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Array(Vec::new()));
    }
    serde_json::from_str(&json_text(&out.stdout))
        .with_context(|| format!("{cmd} {} output", shown.join(" ")))
}

/// iproute2 writes interface names into its JSON as raw bytes, so a name that is not UTF-8 or
/// holds a control character makes the output invalid JSON. Escape them as JSON allows while
/// keeping every byte recoverable (`name_bytes`): a control character inside a string as
/// `\u00NN`, a byte that is not UTF-8 as the private-use character U+F700 + byte.
fn json_text(raw: &[u8]) -> String {
    let mut out = String::with_capacity(raw.len());
    let (mut in_string, mut escaped) = (false, false);
    for chunk in raw.utf8_chunks() {
        for c in chunk.valid().chars() {
            if in_string && escaped {
                escaped = false;
            } else if in_string && c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = !in_string;
            } else if in_string && u32::from(c) < 0x20 {
                out += &format!("\\u{:04x}", u32::from(c));
                continue;
            }
            out.push(c);
        }
        for &b in chunk.invalid() {
            out.push(char::from_u32(0xF700 + u32::from(b)).unwrap_or(char::REPLACEMENT_CHARACTER));
        }
    }
    out
}

/// A name read through `json_text`, as the bytes the kernel holds.
fn name_bytes(name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len());
    for c in name.chars() {
        match u32::from(c) {
            n @ 0xF780..=0xF7FF => out.push((n - 0xF700) as u8),
            _ => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
    out
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

/// Devices, XDP, tc filters and tcx programs of the calling thread's network namespace:
/// `dev <name> <kind>`, `xdp <dev> <mode> <prog>`, `tc <dev> <dir> pref <n> proto <p> <prog>`,
/// `tcx <dev> <dir> <prog> <link|direct>`, each `<dev>` in the guard's shown form (`\xNN` for
/// bytes that are not UTF-8 or are control characters). Loopback is left out.
pub fn network() -> Result<Snapshot> {
    let mut out = Snapshot::new();
    let args = ["-j", "-d", "link", "show"].map(OsStr::new);
    let links = json("ip", &args)?;
    for l in links.as_array().into_iter().flatten() {
        let Some(raw) = str_at(l, &["ifname"]) else {
            continue;
        };
        if raw == "lo" {
            continue;
        }
        let bytes = name_bytes(raw);
        let dev = OsStr::from_bytes(&bytes);
        let name = calico_bpf_guard::names::escape(&bytes);
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
            let args = ["-j", "filter", "show", "dev"].map(OsStr::new);
            let filters = json("tc", &[&args[..], &[dev, OsStr::new(dir)]].concat())?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_names_in_iproute2_json_survive_byte_for_byte() {
        let raw = b"[{\"ifname\":\"cali\xff1\",\"link\":\"w\x1b[2K\\\"q\"},{\"ifname\":\"caf\xc3\xa9\"}]\n";
        let v: Value = serde_json::from_str(&json_text(raw)).expect("valid JSON");
        let names: Vec<Vec<u8>> = [&v[0]["ifname"], &v[0]["link"], &v[1]["ifname"]]
            .iter()
            .map(|n| name_bytes(n.as_str().expect("a string")))
            .collect();
        assert_eq!(
            names,
            [&b"cali\xff1"[..], b"w\x1b[2K\"q", "caf\u{e9}".as_bytes()]
        );
    }
}

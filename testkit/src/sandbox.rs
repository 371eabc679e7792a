//! A throwaway world per test: a fresh bpffs instance on a temp dir, a child cgroup under a
//! cgroup2 mount (never the machine's root cgroup), a network namespace, and a config and mode
//! file pointing the guard at them. Everything is removed on drop, also when a test fails.

use std::fs;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{bail, Context, Result};
use nix::fcntl::OFlag;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, CloneFlags};
use nix::sys::stat::Mode;

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A name unique to this process and call, short enough for an interface-free netns name.
pub fn unique(tag: &str) -> String {
    format!(
        "cbg-{tag}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// Root is needed for every privileged test. Without it a test prints why and is skipped;
/// under CI=true it fails instead, so CI can never pass by skipping.
pub fn have_root(test: &str) -> bool {
    if nix::unistd::Uid::effective().is_root() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "{test}: needs root (bpffs, cgroups, netns); CI=true, so this is a failure, not a skip"
        );
    }
    // Straight to the stderr handle: libtest captures `eprintln!` of a passing test, and a skip
    // nobody sees looks like a pass.
    let _ = writeln!(
        io::stderr(),
        "SKIPPED {test}: needs root to create bpffs mounts, cgroups and network namespaces"
    );
    false
}

pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> io::Result<Self> {
        let path = std::env::temp_dir().join(unique(tag));
        fs::create_dir_all(&path)?;
        Ok(TempDir { path })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// A fresh bpffs instance: pins in it are this test's alone.
pub struct Bpffs {
    pub path: PathBuf,
}

impl Bpffs {
    pub fn new(at: PathBuf) -> Result<Self> {
        fs::create_dir_all(&at)?;
        mount(
            Some("bpf"),
            &at,
            Some("bpf"),
            MsFlags::empty(),
            None::<&str>,
        )
        .with_context(|| format!("mounting bpffs on {}", at.display()))?;
        Ok(Bpffs { path: at })
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        let _ = umount2(&self.path, MntFlags::MNT_DETACH);
        let _ = fs::remove_dir(&self.path);
    }
}

/// The first cgroup2 mount of this mount namespace.
pub fn cgroup2_base() -> Result<PathBuf> {
    let text = fs::read_to_string("/proc/self/mountinfo")?;
    calico_bpf_guard::kernel::fs::parse_mountinfo(&text, "cgroup2")
        .into_iter()
        .next()
        .context("no cgroup2 mount in /proc/self/mountinfo")
}

/// A child cgroup (and any children the test makes under it), removed deepest first.
pub struct Cgroup {
    pub path: PathBuf,
}

impl Cgroup {
    pub fn new(name: &str) -> Result<Self> {
        let path = cgroup2_base()?.join(name);
        fs::create_dir(&path).with_context(|| format!("creating cgroup {}", path.display()))?;
        Ok(Cgroup { path })
    }

    pub fn child(&self, rel: &str) -> Result<PathBuf> {
        let p = self.path.join(rel);
        fs::create_dir_all(&p)?;
        Ok(p)
    }
}

/// Remove a cgroup and every cgroup below it, deepest first, through directory fds: a test may
/// make cgroups deeper than PATH_MAX, which no path reaches.
fn remove_cgroup_tree(p: &Path) {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    if let Ok(fd) = nix::fcntl::open(p, flags, Mode::empty()) {
        remove_children(&fd);
    }
    let _ = fs::remove_dir(p);
}

fn remove_children(dir: &OwnedFd) {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let Ok(mut list) = nix::dir::Dir::openat(dir, ".", flags, Mode::empty()) else {
        return;
    };
    let children: Vec<std::ffi::CString> = list
        .iter()
        .flatten()
        .filter(|e| e.file_type() == Some(nix::dir::Type::Directory))
        .map(|e| e.file_name().to_owned())
        .filter(|n| n.as_bytes() != b"." && n.as_bytes() != b"..")
        .collect();
    for name in children {
        if let Ok(child) = nix::fcntl::openat(dir, name.as_c_str(), flags, Mode::empty()) {
            remove_children(&child);
        }
        let _ = nix::unistd::unlinkat(dir, name.as_c_str(), nix::unistd::UnlinkatFlags::RemoveDir);
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        remove_cgroup_tree(&self.path);
    }
}

/// A named network namespace (`ip netns add`), so the guard can be run in it with nsenter.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(name: &str) -> Result<Self> {
        run("ip", &["netns", "add", name])?;
        let ns = Netns {
            name: name.to_string(),
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    /// `ip -n NS …`.
    pub fn ip(&self, args: &[&str]) -> Result<()> {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// `ip -n NS -batch -`: many link changes in one process.
    pub fn ip_batch(&self, lines: &str) -> Result<()> {
        run_stdin("ip", &["-n", &self.name, "-batch", "-"], lines)
    }

    /// Run `f` on a thread that has entered this namespace (setns affects only that thread;
    /// `ip netns exec` would remount /sys and hide bpffs).
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
        let file = fs::File::open(self.path())?;
        std::thread::scope(|s| {
            s.spawn(move || {
                setns(&file, CloneFlags::CLONE_NEWNET).context("setns")?;
                f()
            })
            .join()
            .map_err(|_| anyhow::anyhow!("netns thread panicked"))?
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

pub fn run(cmd: &str, args: &[&str]) -> Result<()> {
    run_stdin(cmd, args, "")
}

pub fn run_stdin(cmd: &str, args: &[&str], input: &str) -> Result<()> {
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {cmd}"))?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(input.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// One test's world. Field order is drop order: the namespace and cgroup go before the bpffs
/// whose pins may hold their programs, and the temp dir last.
pub struct Sandbox {
    pub netns: Option<Netns>,
    pub cgroup: Cgroup,
    pub bpffs: Bpffs,
    pub dir: TempDir,
    pub config: PathBuf,
    pub mode_file: PathBuf,
    pub guard_bin: PathBuf,
}

impl Sandbox {
    /// A sandbox with a network namespace; `guard_bin` is the calico-bpf-guard binary to run.
    pub fn new(tag: &str, guard_bin: &Path) -> Result<Self> {
        Self::build(tag, guard_bin, true)
    }

    pub fn without_netns(tag: &str, guard_bin: &Path) -> Result<Self> {
        Self::build(tag, guard_bin, false)
    }

    fn build(tag: &str, guard_bin: &Path, with_netns: bool) -> Result<Self> {
        let dir = TempDir::new(tag)?;
        let bpffs = Bpffs::new(dir.path.join("bpffs"))?;
        let cgroup = Cgroup::new(&unique(tag))?;
        let netns = if with_netns {
            Some(Netns::new(&unique(tag))?)
        } else {
            None
        };
        // The mode file has a directory of its own, as on a node (/var/lib/calico-bpf-guard),
        // so tests can spoil that directory alone.
        let state = dir.path.join("state");
        fs::create_dir(&state)?;
        let sb = Sandbox {
            config: dir.path.join("config.toml"),
            mode_file: state.join("mode.toml"),
            netns,
            cgroup,
            bpffs,
            dir,
            guard_bin: guard_bin.to_path_buf(),
        };
        sb.write_config("")?;
        Ok(sb)
    }

    pub fn netns(&self) -> &Netns {
        self.netns
            .as_ref()
            .expect("this sandbox was made with a network namespace")
    }

    /// The guard's config: this sandbox's roots, mode file and lock, plus `extra` lines.
    pub fn write_config(&self, extra: &str) -> Result<()> {
        let text = format!(
            "mode_file = \"{}\"\nbpffs_roots = [\"{}\"]\ncgroup2_roots = [\"{}\"]\nlock_file = \"{}\"\n{extra}",
            self.mode_file.display(),
            self.bpffs.path.display(),
            self.cgroup.path.display(),
            self.dir.path.join("guard.lock").display(),
        );
        write_file(&self.config, &text)
    }

    /// Write the mode file (None: remove it).
    pub fn set_mode(&self, dataplane: Option<&str>) -> Result<()> {
        match dataplane {
            Some(d) => write_file(
                &self.mode_file,
                &format!("dataplane = \"{d}\"\nsource = \"test\"\n"),
            ),
            None => match fs::remove_file(&self.mode_file) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.into()),
                _ => Ok(()),
            },
        }
    }

    /// Run the guard with this sandbox's config, in its network namespace when it has one.
    pub fn guard(&self, args: &[&str]) -> Output {
        self.guard_env(args, &[])
    }

    pub fn guard_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net={}", ns.path().display()))
                    .arg("--")
                    .arg(&self.guard_bin);
                c
            }
            None => Command::new(&self.guard_bin),
        };
        cmd.arg("--config").arg(&self.config).args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.env_remove("JOURNAL_STREAM").env_remove("NOTIFY_SOCKET");
        cmd.output().expect("running calico-bpf-guard")
    }
}

/// Write a root-owned 0644 file, as the guard requires for its config and mode files.
pub fn write_file(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::write(path, text)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o644))?;
    Ok(())
}

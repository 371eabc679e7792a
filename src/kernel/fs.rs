//! Filesystem facts the guard depends on: filesystem magic, mount table, locks, /proc fdinfo,
//! and process capabilities. (The trusted reads and atomic writes of the files that decide live
//! in the shared `modefile` crate.)

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

/// The filesystem type at a path, as far as the guard cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsKind {
    Bpffs,
    Cgroup2,
    Other,
}

/// Mount points of every cgroup2 mount in /proc/self/mountinfo, in table order.
pub fn cgroup2_mounts() -> io::Result<Vec<PathBuf>> {
    Ok(parse_mountinfo(
        &fs::read_to_string("/proc/self/mountinfo")?,
        "cgroup2",
    ))
}

/// Mount points of the given filesystem type. mountinfo escapes space, tab, newline and
/// backslash in paths as octal.
pub fn parse_mountinfo(text: &str, fstype: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mount_point = left.split(' ').nth(4)?;
            (right.split(' ').next()? == fstype).then(|| PathBuf::from(unescape_octal(mount_point)))
        })
        .collect()
}

fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An exclusive flock held until drop.
pub struct Lock {
    _lock: Flock<File>,
}

/// Take an exclusive lock on `path`, creating it (and its directory) if needed, waiting at most
/// `wait`. Returns `Ok(None)` if another holder kept it for the whole wait.
pub fn lock_exclusive(path: &Path, wait: Duration) -> io::Result<Option<Lock>> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let deadline = Instant::now() + wait;
    // O_NONBLOCK: a FIFO at the lock path fails at once (ENXIO) instead of blocking the open
    // until a reader comes, which at boot is never. flock itself is unaffected.
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(Some(Lock { _lock: lock })),
            Err((f, nix::errno::Errno::EWOULDBLOCK)) => {
                if Instant::now() >= deadline {
                    return Ok(None);
                }
                file = f;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err((_, e)) => return Err(e.into()),
        }
    }
}

/// Whether another process holds the lock at `path` now, without taking it for longer than the
/// try: what tells a running sweep from one that died (the kernel drops a dead process's
/// flock). The file is never created, and a missing one is no holder.
pub fn lock_is_held(path: &Path) -> io::Result<bool> {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    match Flock::lock(file, FlockArg::LockSharedNonblock) {
        Ok(_released_on_drop) => Ok(false),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(true),
        Err((_, e)) => Err(e.into()),
    }
}

/// One bpf fd some process holds, from /proc/<pid>/fdinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldBpfFd {
    pub pid: u32,
    pub comm: String,
    pub prog_id: Option<u32>,
    pub map_id: Option<u32>,
    pub link_id: Option<u32>,
}

/// The bpf fds of every other process, and the processes whose fds could not be read.
#[derive(Debug, Default)]
pub struct ProcScan {
    pub held: Vec<HeldBpfFd>,
    /// (pid, comm, error): without CAP_SYS_PTRACE the kernel hides the fds of processes with
    /// capabilities the reader lacks, which is exactly what a live Felix has.
    pub unreadable: Vec<(u32, String, String)>,
}

/// Whether `fd` (stdout, stderr) is the journal's stream: systemd sets JOURNAL_STREAM to its
/// "device:inode". The variable alone proves nothing: it is inherited by whatever a unit
/// starts, also with its output redirected elsewhere (a pipe, a file, a terminal).
pub fn is_journal_stream(fd: impl std::os::fd::AsFd) -> bool {
    let Some(want) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(st) = nix::sys::stat::fstat(fd) else {
        return false;
    };
    want.to_string_lossy() == format!("{}:{}", st.st_dev, st.st_ino)
}

pub const CAP_SYS_PTRACE: u32 = 19;

/// Whether this process has a capability in its effective set (from /proc/self/status).
pub fn has_effective_cap(cap: u32) -> io::Result<bool> {
    let status = fs::read_to_string("/proc/self/status")?;
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, "no CapEff in /proc/self/status")
        })?;
    let bits = u64::from_str_radix(hex.trim(), 16)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok(bits & (1 << cap) != 0)
}

fn comm_of(base: &Path) -> String {
    fs::read_to_string(base.join("comm"))
        .map(|c| c.trim_end().to_string())
        .unwrap_or_default()
}

/// Every bpf fd held by a process other than this one. The fd symlink says whether an fd is a
/// bpf object (cheap), so fdinfo is only read for those. Processes that exit meanwhile are
/// skipped; processes that cannot be inspected are listed, never silently passed over.
pub fn held_bpf_fds() -> io::Result<ProcScan> {
    let me = std::process::id();
    let mut scan = ProcScan::default();
    for entry in fs::read_dir("/proc")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let base = entry.path();
        let fds = match fs::read_dir(base.join("fd")) {
            Ok(fds) => fds,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                scan.unreadable.push((pid, comm_of(&base), e.to_string()));
                continue;
            }
        };
        let mut comm: Option<String> = None;
        for fd in fds.flatten() {
            // Listing the fd directory is allowed even where reading each link is not.
            let target = match fs::read_link(fd.path()) {
                Ok(t) => t,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    scan.unreadable.push((pid, comm_of(&base), e.to_string()));
                    break;
                }
            };
            if !target.to_string_lossy().starts_with("anon_inode:bpf") {
                continue;
            }
            let info = match fs::read_to_string(base.join("fdinfo").join(fd.file_name())) {
                Ok(info) => info,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    scan.unreadable.push((pid, comm_of(&base), e.to_string()));
                    break;
                }
            };
            let field = |key: &str| {
                info.lines()
                    .find_map(|l| l.strip_prefix(key))
                    .and_then(|v| v.trim().parse::<u32>().ok())
            };
            let comm = comm.get_or_insert_with(|| comm_of(&base)).clone();
            scan.held.push(HeldBpfFd {
                pid,
                comm,
                prog_id: field("prog_id:"),
                map_id: field("map_id:"),
                link_id: field("link_id:"),
            });
        }
    }
    Ok(scan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_finds_cgroup2_mounts_and_unescapes() {
        let text = "\
25 30 0:22 / /sys/fs/cgroup/unified rw,relatime shared:6 - cgroup2 cgroup2 rw
26 30 0:23 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu
90 30 0:22 / /run/calico/cgroup rw - cgroup2 none rw
91 30 0:22 / /tmp/with\\040space rw - cgroup2 none rw
92 30 0:40 / /sys/fs/bpf rw - bpf bpf rw";
        assert_eq!(
            parse_mountinfo(text, "cgroup2"),
            vec![
                PathBuf::from("/sys/fs/cgroup/unified"),
                PathBuf::from("/run/calico/cgroup"),
                PathBuf::from("/tmp/with space"),
            ]
        );
        assert_eq!(
            parse_mountinfo(text, "bpf"),
            vec![PathBuf::from("/sys/fs/bpf")]
        );
    }
}

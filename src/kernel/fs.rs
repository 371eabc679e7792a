//! Filesystem facts the guard depends on: filesystem magic, mount table, locks, /proc fdinfo,
//! and the careful reading and atomic writing of its two small files.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
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

/// Why a small root-owned file was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileProblem {
    NotFound,
    Io(String),
    NotRegular(&'static str),
    NotRootOwned(u32),
    Writable(u32),
    TooLarge(u64),
    NotUtf8,
    /// A directory on the way to the file that someone other than root could change: whoever
    /// can, decides what the file says.
    UnsafeDir(PathBuf, String),
}

impl std::fmt::Display for FileProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileProblem::NotFound => write!(f, "does not exist"),
            FileProblem::Io(e) => write!(f, "cannot be read: {e}"),
            FileProblem::NotRegular(what) => write!(f, "is a {what}, not a regular file"),
            FileProblem::NotRootOwned(uid) => write!(f, "is owned by uid {uid}, not root"),
            FileProblem::Writable(mode) => {
                write!(f, "is writable by group or others (mode {mode:04o})")
            }
            FileProblem::TooLarge(n) => write!(f, "is {n} bytes, larger than {MAX_FILE} bytes"),
            FileProblem::NotUtf8 => write!(f, "is not UTF-8 text"),
            FileProblem::UnsafeDir(dir, why) => {
                write!(f, "is in directory {} that {why}", dir.display())
            }
        }
    }
}

pub const MAX_FILE: u64 = 64 * 1024;

fn kind_name(ft: fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_dir() {
        "directory"
    } else if ft.is_char_device() {
        "character device"
    } else if ft.is_block_device() {
        "block device"
    } else if ft.is_fifo() {
        "FIFO"
    } else if ft.is_socket() {
        "socket"
    } else {
        "special file"
    }
}

/// Read a small configuration file the guard trusts as root: a regular file (symlinks are
/// followed, but only to a regular file), owned by root, not writable by group or others, at
/// most 64 KiB, UTF-8, in directories that only root can change (see `check_dirs`). The open
/// never blocks (O_NONBLOCK) and the checks are made on the open file, so a FIFO or a device
/// answers at once and a swap between check and read cannot win.
pub fn read_trusted(path: &Path) -> Result<String, FileProblem> {
    let io_err = |e: io::Error| {
        if e.kind() == io::ErrorKind::NotFound {
            FileProblem::NotFound
        } else {
            FileProblem::Io(e.to_string())
        }
    };
    // The file is read at its resolved path, so no symlink on the way can be re-pointed after
    // the directories are checked. A missing file's directories count too: whoever could
    // delete it would choose `on_missing_mode`.
    let real = match fs::canonicalize(path) {
        Ok(real) => real,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(dir) = existing_ancestor(path) {
                check_dirs(&dir)?;
            }
            return Err(FileProblem::NotFound);
        }
        Err(e) => return Err(io_err(e)),
    };
    if let Some(dir) = real.parent() {
        check_dirs(dir)?;
    }
    let path = real.as_path();
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(path)
        .map_err(io_err)?;
    let meta = file.metadata().map_err(io_err)?;
    if !meta.file_type().is_file() {
        return Err(FileProblem::NotRegular(kind_name(meta.file_type())));
    }
    if meta.uid() != 0 {
        return Err(FileProblem::NotRootOwned(meta.uid()));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(FileProblem::Writable(mode));
    }
    if meta.len() > MAX_FILE {
        return Err(FileProblem::TooLarge(meta.len()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // A file that grows after the fstat is still cut at the limit.
    file.take(MAX_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err)?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(FileProblem::TooLarge(bytes.len() as u64));
    }
    String::from_utf8(bytes).map_err(|_| FileProblem::NotUtf8)
}

/// The nearest ancestor of `path` that exists, resolved.
fn existing_ancestor(path: &Path) -> Option<PathBuf> {
    path.ancestors()
        .skip(1)
        .filter(|a| !a.as_os_str().is_empty())
        .find_map(|a| fs::canonicalize(a).ok())
}

/// `dir` and every directory above it must be owned by root and not writable by group or
/// others, as sshd's StrictModes demands of a user's key files. A root-owned directory with the
/// sticky bit (`/tmp`) passes: there nobody but root may rename or remove a root-owned entry.
/// `dir` must be resolved (no symlinks).
fn check_dirs(dir: &Path) -> Result<(), FileProblem> {
    for d in dir.ancestors() {
        let meta = fs::symlink_metadata(d)
            .map_err(|e| FileProblem::UnsafeDir(d.to_path_buf(), format!("cannot be read: {e}")))?;
        let mode = meta.permissions().mode() & 0o7777;
        let why = if meta.uid() != 0 {
            format!("is owned by uid {}, not root", meta.uid())
        } else if mode & 0o022 != 0 && mode & 0o1000 == 0 {
            format!("is writable by group or others (mode {mode:04o})")
        } else {
            continue;
        };
        return Err(FileProblem::UnsafeDir(d.to_path_buf(), why));
    }
    Ok(())
}

/// Replace `path` atomically: write a temporary file in the same directory, fsync it, rename it
/// over the target, fsync the directory. A reader sees the old file or the new one, never half.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    replace(path, contents, mode, true)
}

/// `write_atomic` without the two fsyncs, for a file rewritten on every run that is worth
/// nothing after a crash (metrics): readers still see the old file or the new one, and the
/// run does not wait for the disk (milliseconds, on a sweep that otherwise takes one).
pub fn write_atomic_unsynced(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    replace(path, contents, mode, false)
}

fn replace(path: &Path, contents: &[u8], mode: u32, durable: bool) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    // A crash before the rename leaves this name behind, and pids repeat across boots and in
    // containers: a leftover is ours to replace, not a reason to fail.
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(&tmp)?;
        // The creation mode is masked by the umask (the unit's is 0077); readers need `mode`.
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(contents)?;
        if durable {
            f.sync_all()?;
        }
        fs::rename(&tmp, path)?;
        match durable {
            true => File::open(dir)?.sync_all(),
            false => Ok(()),
        }
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
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

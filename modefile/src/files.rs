//! Reading and writing the small root-owned files that decide what the guard does (its config,
//! the mode file, the record of what it changed in `rcu_expedited`). A file is trusted only if
//! nobody but root could have chosen what it says: the path is walked as named, one component at
//! a time, and every directory on the way, every symlink on the way and the file itself must be
//! root's and closed to group and others. Writes replace a file atomically. This module never
//! interprets what a file says and never follows a link that someone else could re-point.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

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
    /// A symlink on the way that someone other than root owns: whoever owns it may re-point it.
    UnsafeLink(PathBuf, u32),
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
            FileProblem::UnsafeLink(link, uid) => write!(
                f,
                "is reached through symlink {} owned by uid {uid}, not root",
                link.display()
            ),
        }
    }
}

pub const MAX_FILE: u64 = 64 * 1024;

/// As the kernel's own limit on a path walk (ELOOP).
const MAX_LINKS: usize = 40;

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

/// Where a trusted walk ended.
#[derive(Debug, PartialEq, Eq)]
enum Walked {
    /// The last component, with no symlink left anywhere in the path; every directory above it
    /// passed the check. It may be of any type (the caller opens and checks it).
    Found(PathBuf),
    /// A component is missing; every directory before it passed the check.
    Missing,
}

/// A directory only root can change: owned by root and not writable by group or others, as
/// sshd's StrictModes demands of a user's key files. A root-owned directory with the sticky bit
/// (`/tmp`) passes: there nobody but root may rename or remove a root-owned entry. ACLs need no
/// code of their own: a named entry with write access shows as group write in the mode bits.
fn check_dir(dir: &Path, meta: &Metadata) -> Result<(), FileProblem> {
    let mode = meta.permissions().mode() & 0o7777;
    let why = if !meta.is_dir() {
        "is not a directory".to_string()
    } else if meta.uid() != 0 {
        format!("is owned by uid {}, not root", meta.uid())
    } else if mode & 0o022 != 0 && mode & 0o1000 == 0 {
        format!("is writable by group or others (mode {mode:04o})")
    } else {
        return Ok(());
    };
    Err(FileProblem::UnsafeDir(dir.to_path_buf(), why))
}

fn lstat_dir(dir: &Path) -> Result<Metadata, FileProblem> {
    fs::symlink_metadata(dir)
        .map_err(|e| FileProblem::UnsafeDir(dir.to_path_buf(), format!("cannot be read: {e}")))
}

/// Walk `path` as it is named, from `/` (a relative path from the working directory), one
/// component at a time. Each directory passed through must pass `check_dir`; a symlink is
/// followed only if root owns it (its directory has passed already, so nobody else can replace
/// it), and its target is walked the same way. Checking the path as named, not its resolved
/// form, is the point: a root-owned target reached through a link in a directory that others can
/// write is not trusted, since they could point the link elsewhere.
fn walk(path: &Path) -> Result<Walked, FileProblem> {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| FileProblem::Io(e.to_string()))?
            .join(path)
    };
    let mut todo: VecDeque<OsString> = VecDeque::new();
    push_front(&mut todo, &absolute);
    let mut here = PathBuf::from("/");
    check_dir(&here, &lstat_dir(&here)?)?;
    let mut links = 0;
    while let Some(name) = todo.pop_front() {
        if name == ".." {
            // `here` holds no symlinks, so its parent is the real parent, checked already.
            here.pop();
            continue;
        }
        let next = here.join(&name);
        let meta = match fs::symlink_metadata(&next) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Walked::Missing),
            Err(e) if todo.is_empty() => return Err(FileProblem::Io(e.to_string())),
            Err(e) => {
                return Err(FileProblem::UnsafeDir(next, format!("cannot be read: {e}")));
            }
        };
        if meta.file_type().is_symlink() {
            links += 1;
            if links > MAX_LINKS {
                return Err(FileProblem::Io(format!(
                    "more than {MAX_LINKS} symlinks on the way"
                )));
            }
            if meta.uid() != 0 {
                return Err(FileProblem::UnsafeLink(next, meta.uid()));
            }
            let target = fs::read_link(&next).map_err(|e| FileProblem::Io(e.to_string()))?;
            if target.is_absolute() {
                here = PathBuf::from("/");
            }
            push_front(&mut todo, &target);
            continue;
        }
        if todo.is_empty() {
            return Ok(Walked::Found(next));
        }
        check_dir(&next, &meta)?;
        here = next;
    }
    // The path named a directory (it ended in `/`, `.` or `..`).
    Ok(Walked::Found(here))
}

/// Put `path`'s components before what is left to walk, in order.
fn push_front(todo: &mut VecDeque<OsString>, path: &Path) {
    for c in path.components().rev() {
        match c {
            Component::Normal(n) => todo.push_front(n.to_os_string()),
            Component::ParentDir => todo.push_front("..".into()),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
}

/// Read a small file the guard trusts as root: reached through directories and symlinks only
/// root controls (see `walk`), a regular file owned by root, not writable by group or others, at
/// most 64 KiB, UTF-8. A missing file's directories count too (`NotFound` only after they pass):
/// whoever could delete it would choose what a missing file means. The open never blocks
/// (O_NONBLOCK) and the checks are made on the open file, so a FIFO or a device answers at once.
pub fn read_trusted(path: &Path) -> Result<String, FileProblem> {
    let io_err = |e: io::Error| {
        if e.kind() == io::ErrorKind::NotFound {
            FileProblem::NotFound
        } else {
            FileProblem::Io(e.to_string())
        }
    };
    let real = match walk(path)? {
        Walked::Found(real) => real,
        Walked::Missing => return Err(FileProblem::NotFound),
    };
    // O_NOFOLLOW: the walk saw no link here, and only root could have put one since.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NOFOLLOW)
        .open(&real)
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

/// The directory `path` will live in, created (0755) if missing, reached by a trusted walk: the
/// resolved directory, with no symlink left in it.
fn trusted_parent(path: &Path) -> io::Result<(PathBuf, OsString)> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let refused = |p: FileProblem| {
        io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{}: {p}", path.display()),
        )
    };
    let walked = match walk(dir).map_err(refused)? {
        Walked::Missing => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)?;
            walk(dir).map_err(refused)?
        }
        found => found,
    };
    match walked {
        Walked::Found(real) => {
            check_dir(&real, &lstat_dir(&real).map_err(refused)?).map_err(refused)?;
            Ok((real, name.to_os_string()))
        }
        Walked::Missing => Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} vanished while it was created", dir.display()),
        )),
    }
}

/// Replace a trusted file atomically, as `read_trusted` will accept it: its directory must be
/// reachable by a trusted walk (else PermissionDenied, naming why). A temporary file is written
/// in the same directory, fsynced, renamed over the target, and the directory fsynced: a reader
/// sees the old file or the new one, never half, also after a crash.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let (dir, name) = trusted_parent(path)?;
    replace(&dir, &name, contents, mode)
}

/// A new temporary file beside the target, under a name no other writer uses: pids repeat in
/// containers (every sync pod is pid 1) and across boots, so two writers that took the same
/// name would delete or overwrite each other's half-written file. The name adds a per-process
/// random number, and `create_new` makes a clash an error to retry, never a shared file. A crash
/// before the rename leaves a dot-file that nothing reads.
fn create_temp(dir: &Path, name: &std::ffi::OsStr, mode: u32) -> io::Result<(PathBuf, File)> {
    use std::hash::{BuildHasher, Hasher};
    let mut tries = 0;
    loop {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        let tmp = dir.join(format!(
            ".{}.{}.{:016x}.tmp",
            name.to_string_lossy(),
            std::process::id(),
            h.finish()
        ));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(&tmp)
        {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && tries < 8 => tries += 1,
            Err(e) => return Err(e),
        }
    }
}

fn replace(dir: &Path, name: &std::ffi::OsStr, contents: &[u8], mode: u32) -> io::Result<()> {
    let path = dir.join(name);
    let (tmp, mut f) = create_temp(dir, name, mode)?;
    let result = (|| {
        // The creation mode is masked by the umask (the unit's is 0077); readers need `mode`.
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(contents)?;
        f.sync_all()?;
        fs::rename(&tmp, &path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two writers of one file never share a temporary name, even with the same pid.
    #[test]
    fn temporary_names_differ_per_write() {
        let dir = std::env::temp_dir().join(format!("modefile-tmp-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let (a, _fa) = create_temp(&dir, "m.toml".as_ref(), 0o600).unwrap();
        let (b, _fb) = create_temp(&dir, "m.toml".as_ref(), 0o600).unwrap();
        assert_ne!(a, b);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn components_are_pushed_in_order() {
        let mut todo = VecDeque::from([OsString::from("rest")]);
        push_front(&mut todo, Path::new("/a/./b/../c"));
        assert_eq!(todo, ["a", "b", "..", "c", "rest"]);
    }
}

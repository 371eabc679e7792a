//! Trees nobody trusts (bpffs, cgroup2), walked one directory fd at a time, as systemd's
//! `chase()` does: each step is `openat2` beneath the parent with `RESOLVE_NO_SYMLINKS |
//! RESOLVE_NO_XDEV | RESOLVE_BENEATH`, so a symlink or a mount planted inside a root ends the
//! step instead of leading the guard elsewhere. Names are bytes. Each entry carries its identity
//! (device, inode), and a removal is an `unlinkat` on the parent's fd made only after that
//! identity is checked again: no other code builds a path to delete.

use std::ffi::{OsStr, OsString};
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::fcntl::{openat, openat2, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstat, fstatat, FileStat, Mode, SFlag};
use nix::sys::statfs::{fstatfs, BPF_FS_MAGIC, CGROUP2_SUPER_MAGIC};
use nix::unistd::{unlinkat, UnlinkatFlags};

use super::bpf;
use super::fs::FsKind;

/// What a name referred to when it was seen: the same device and inode must still be there
/// when it is removed.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

impl FileId {
    fn of(st: &FileStat) -> FileId {
        FileId {
            dev: st.st_dev,
            ino: st.st_ino,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    /// A regular file: on bpffs, a pin.
    File,
    Symlink,
    Other,
}

impl Kind {
    fn of(st: &FileStat) -> Kind {
        match SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT {
            SFlag::S_IFDIR => Kind::Dir,
            SFlag::S_IFREG => Kind::File,
            SFlag::S_IFLNK => Kind::Symlink,
            _ => Kind::Other,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: OsString,
    pub kind: Kind,
    pub id: FileId,
    /// Another file system is mounted here (its device differs from the directory's).
    pub mount: bool,
}

/// An open directory. `path` is for messages only; every access goes through `fd`.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    pub path: PathBuf,
    pub id: FileId,
    /// The directory's link count: 2 plus one per subdirectory (cgroup2 and bpffs keep it so).
    pub nlink: libc::nlink_t,
}

/// ELOOP (a symlink) and EXDEV (a mount) from a resolution that refused to follow either.
pub fn is_refused(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::ELOOP) | Some(libc::EXDEV))
}

/// Why an entry was not followed, in words.
pub fn refusal(err: &io::Error) -> String {
    match err.raw_os_error() {
        Some(libc::ELOOP) => "a symlink, not followed".into(),
        Some(libc::EXDEV) => "another file system is mounted there, not entered".into(),
        _ => err.to_string(),
    }
}

impl Dir {
    /// A configured root, opened as configured: the configuration is trusted (root-owned, see
    /// `fs::read_trusted`), what lies beneath the root is not.
    pub fn open_root(path: &Path) -> io::Result<Dir> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        Dir::from_fd(fd, path.to_path_buf())
    }

    fn from_fd(fd: OwnedFd, path: PathBuf) -> io::Result<Dir> {
        let st = fstat(&fd)?;
        Ok(Dir {
            fd,
            path,
            id: FileId::of(&st),
            nlink: st.st_nlink,
        })
    }

    pub fn fs_kind(&self) -> io::Result<FsKind> {
        let t = fstatfs(&self.fd)?.filesystem_type();
        Ok(if t == BPF_FS_MAGIC {
            FsKind::Bpffs
        } else if t == CGROUP2_SUPER_MAGIC {
            FsKind::Cgroup2
        } else {
            FsKind::Other
        })
    }

    /// A directory the guard writes into (the metrics directory), named by a path (relative:
    /// to the working directory), reached one component at a time: never through a symlink,
    /// at any component, since whoever owns a directory on the way could put one in place of
    /// the next and send root's write elsewhere; and never into another mount below a
    /// directory someone other than root could change (a mount below a root-owned one, `/var`
    /// on a partition of its own, is the administrator's).
    pub fn open_path(path: &Path) -> io::Result<Dir> {
        let start = if path.is_absolute() { "/" } else { "." };
        let mut dir = Dir::open_root(Path::new(start))?;
        for part in path.components() {
            match part {
                Component::Normal(name) => {
                    let cross = dir.root_controlled()?;
                    dir = dir.open_child_with(name, cross)?;
                }
                Component::RootDir | Component::CurDir => {}
                Component::ParentDir | Component::Prefix(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "a path with .. is not walked",
                    ))
                }
            }
        }
        Ok(dir)
    }

    /// Owned by root and writable by nobody else (or sticky, like /tmp, where nobody else can
    /// replace root's entries).
    fn root_controlled(&self) -> io::Result<bool> {
        let st = fstat(&self.fd)?;
        Ok(st.st_uid == 0 && (st.st_mode & 0o022 == 0 || st.st_mode & 0o1000 != 0))
    }

    /// A subdirectory, never through a symlink and never into another mount: those answer
    /// ELOOP and EXDEV (see `is_refused`).
    pub fn open_child(&self, name: &OsStr) -> io::Result<Dir> {
        self.open_child_with(name, false)
    }

    /// `open_child`, into another mount too when `cross_mounts`.
    fn open_child_with(&self, name: &OsStr, cross_mounts: bool) -> io::Result<Dir> {
        // No O_NOFOLLOW here: with O_DIRECTORY it turns a symlink into ENOTDIR, which reads as
        // "not a directory"; RESOLVE_NO_SYMLINKS answers ELOOP for it.
        let mut resolve = ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_BENEATH;
        if !cross_mounts {
            resolve |= ResolveFlag::RESOLVE_NO_XDEV;
        }
        let how = OpenHow::new()
            .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
            .resolve(resolve);
        let fd = match openat2(&self.fd, name, how) {
            Ok(fd) => fd,
            // openat2 arrived in 5.6, and a seccomp filter may refuse it: O_NOFOLLOW and a
            // device check give the same answer for everything but a bind mount of the same
            // file system, which the removal's identity check still catches.
            Err(nix::errno::Errno::ENOSYS) | Err(nix::errno::Errno::EPERM) => {
                let fd = openat(
                    &self.fd,
                    name,
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| match e {
                    nix::errno::Errno::ENOTDIR if self.is_symlink(name) => {
                        io::Error::from_raw_os_error(libc::ELOOP)
                    }
                    e => e.into(),
                })?;
                if !cross_mounts && fstat(&fd)?.st_dev != self.id.dev {
                    return Err(io::Error::from_raw_os_error(libc::EXDEV));
                }
                fd
            }
            Err(e) => return Err(e.into()),
        };
        Dir::from_fd(fd, self.path.join(name))
    }

    fn is_symlink(&self, name: &OsStr) -> bool {
        self.stat(name).is_ok_and(|e| e.kind == Kind::Symlink)
    }

    /// The directory `rel` beneath this one, one component at a time.
    pub fn open_beneath(&self, rel: &Path) -> io::Result<Dir> {
        let mut parts = rel.components().filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        });
        let Some(first) = parts.next() else {
            return Dir::from_fd(self.fd.try_clone()?, self.path.clone());
        };
        let mut dir = self.open_child(first)?;
        for part in parts {
            dir = dir.open_child(part)?;
        }
        Ok(dir)
    }

    /// One entry, not following a symlink.
    pub fn stat(&self, name: &OsStr) -> io::Result<Entry> {
        let st = fstatat(&self.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
        Ok(Entry {
            name: name.to_os_string(),
            kind: Kind::of(&st),
            id: FileId::of(&st),
            mount: st.st_dev != self.id.dev,
        })
    }

    /// Every entry but `.` and `..`, each looked at (not following a symlink). An entry that
    /// vanishes while listed is left out.
    pub fn entries(&self) -> io::Result<Vec<Entry>> {
        let mut out = Vec::new();
        for (name, _) in self.list()? {
            match self.stat(&name) {
                Ok(entry) => out.push(entry),
                Err(err) if err.raw_os_error() == Some(libc::ENOENT) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(out)
    }

    /// The names of the subdirectories, by the types the listing itself gives: no look at each
    /// entry, where a cgroup directory holds a dozen control files or more beside each child
    /// cgroup. A name listed without a type is looked at. A subdirectory that is a mount point
    /// is listed like any other: `open_child` refuses to enter it.
    pub fn subdirs(&self) -> io::Result<Vec<OsString>> {
        let mut out = Vec::new();
        for (name, d_type) in self.list()? {
            let dir = match d_type {
                libc::DT_DIR => true,
                libc::DT_UNKNOWN => match self.stat(&name) {
                    Ok(e) => e.kind == Kind::Dir,
                    Err(err) if err.raw_os_error() == Some(libc::ENOENT) => false,
                    Err(err) => return Err(err),
                },
                _ => false,
            };
            if dir {
                out.push(name);
            }
        }
        Ok(out)
    }

    /// The names and listed types (`d_type`) of every entry but `.` and `..`, read with
    /// getdents64 on this directory's own fd from its start: no second open of the directory.
    /// The fd's offset is this `Dir`'s alone to move (a clone made by `open_beneath` lists from
    /// the start too, and nothing lists two at once).
    fn list(&self) -> io::Result<Vec<(OsString, u8)>> {
        let fd = self.fd.as_raw_fd();
        // SAFETY: lseek on an fd this Dir owns, open for the call.
        if unsafe { libc::lseek(fd, 0, libc::SEEK_SET) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = vec![0u8; 32 * 1024];
        let mut out = Vec::new();
        loop {
            // SAFETY: the buffer is valid for writes of its whole length, which is passed with
            // it; the kernel writes at most that many bytes of linux_dirent64 records.
            let n = unsafe { libc::syscall(libc::SYS_getdents64, fd, buf.as_mut_ptr(), buf.len()) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            if n == 0 {
                return Ok(out);
            }
            let mut off = 0;
            let n = n as usize;
            // struct linux_dirent64: d_ino (8 bytes), d_off (8), d_reclen (2), d_type (1), then
            // the name, NUL-terminated, padded to d_reclen.
            while off + 19 <= n {
                let reclen = usize::from(u16::from_ne_bytes([buf[off + 16], buf[off + 17]]));
                if reclen < 20 || off + reclen > n {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "a directory entry longer than the kernel's answer",
                    ));
                }
                let d_type = buf[off + 18];
                let name = &buf[off + 19..off + reclen];
                let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
                if name != b"." && name != b".." {
                    out.push((OsStr::from_bytes(name).to_os_string(), d_type));
                }
                off += reclen;
            }
        }
    }

    /// The BPF object pinned at `name`, which must be a regular file of this directory's own
    /// file system. bpf(2) takes a path only (a directory fd from 6.5), so the path goes through
    /// this process's fd of the directory: nothing above it is resolved again.
    pub fn obj_get(&self, name: &OsStr) -> io::Result<OwnedFd> {
        let e = self.stat(name)?;
        self.obj_get_entry(&e)
    }

    /// The BPF object pinned at the entry seen, if that entry is still there (same device and
    /// inode); None when another file stands there now. One look serves both checks.
    pub fn obj_get_seen(&self, seen: &Entry) -> io::Result<Option<OwnedFd>> {
        let now = self.stat(&seen.name)?;
        if now.id != seen.id {
            return Ok(None);
        }
        self.obj_get_entry(&now).map(Some)
    }

    fn obj_get_entry(&self, e: &Entry) -> io::Result<OwnedFd> {
        if e.kind != Kind::File || e.mount {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a pin of this bpffs",
            ));
        }
        let mut path = OsString::from(format!("/proc/self/fd/{}/", self.fd.as_raw_fd()));
        path.push(&e.name);
        bpf::obj_get(Path::new(&path))
    }

    /// Remove `name` if it is still the entry seen (same kind, device and inode). Returns false
    /// when something else is there now, which is left alone.
    pub fn remove_if_same(&self, seen: &Entry) -> io::Result<bool> {
        let now = self.stat(&seen.name)?;
        if now.kind != seen.kind || now.id != seen.id {
            return Ok(false);
        }
        let flag = if seen.kind == Kind::Dir {
            UnlinkatFlags::RemoveDir
        } else {
            UnlinkatFlags::NoRemoveDir
        };
        unlinkat(&self.fd, seen.name.as_os_str(), flag)?;
        Ok(true)
    }
}

/// A chain of open directories from a root down to the one last reached, kept between lookups
/// so that the entries of one directory, or of its neighbours, are reached without walking from
/// the root again: reaching another directory closes the part of the chain it does not share and
/// opens the rest one `open_child` at a time (no symlink, no other mount, as ever). It holds one
/// fd per level of the deepest directory reached, no more.
#[derive(Debug)]
pub struct Chain {
    root: Dir,
    /// The directories below the root, outermost first, with the names they were opened by.
    below: Vec<(OsString, Dir)>,
}

impl Chain {
    pub fn new(root: Dir) -> Chain {
        Chain {
            root,
            below: Vec::new(),
        }
    }

    /// The directory `rel` beneath the root: what the chain already holds of it is reused, the
    /// rest opened. An error leaves the chain at the deepest directory it could open.
    pub fn reach(&mut self, rel: &Path) -> io::Result<&Dir> {
        let parts: Vec<&OsStr> = rel
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n),
                _ => None,
            })
            .collect();
        let shared = self
            .below
            .iter()
            .zip(&parts)
            .take_while(|((have, _), want)| have.as_os_str() == **want)
            .count();
        self.below.truncate(shared);
        for part in &parts[shared..] {
            let child = self.deepest().open_child(part)?;
            self.below.push((part.to_os_string(), child));
        }
        Ok(self.deepest())
    }

    fn deepest(&self) -> &Dir {
        self.below.last().map_or(&self.root, |(_, d)| d)
    }

    /// Close the chain's directories from `rel` down: after `rel` itself is removed, a directory
    /// made again by that name is another one, reached afresh.
    pub fn forget(&mut self, rel: &Path) {
        let depth = rel
            .components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .count();
        if depth > 0 {
            self.below.truncate(depth - 1);
        }
    }
}

impl Dir {
    /// Replace the file `name` in this directory at once: a temporary file made here under a
    /// name no other writer uses (never through a symlink), then renamed over it, which
    /// replaces whatever entry stands there (a symlink, a FIFO) without following or opening
    /// it. Readers see the old file or the new one. Not fsynced: for files worth nothing after
    /// a crash (metrics).
    pub fn replace_file(&self, name: &OsStr, contents: &[u8], mode: u32) -> io::Result<()> {
        let (tmp, fd) = self.create_temp(name, mode)?;
        let result = (|| {
            // The creation mode is masked by the umask (the unit's is 0077); readers need `mode`.
            nix::sys::stat::fchmod(&fd, Mode::from_bits_truncate(mode))?;
            std::fs::File::from(fd).write_all(contents)?;
            nix::fcntl::renameat(&self.fd, tmp.as_os_str(), &self.fd, name)?;
            Ok(())
        })();
        if result.is_err() {
            let _ = unlinkat(&self.fd, tmp.as_os_str(), UnlinkatFlags::NoRemoveDir);
        }
        result
    }

    /// A new file beside `name`, under a name no other writer uses: pids repeat in containers
    /// and across boots, so the name adds a per-process random number, and O_EXCL makes a clash
    /// (or anything planted there) a retry, never a shared or followed file. A crash before the
    /// rename leaves a dot-file that nothing reads.
    fn create_temp(&self, name: &OsStr, mode: u32) -> io::Result<(OsString, OwnedFd)> {
        use std::hash::{BuildHasher, Hasher};
        let mut tries = 0;
        loop {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u32(std::process::id());
            let mut tmp = OsString::from(".");
            tmp.push(name);
            tmp.push(format!(".{}.{:016x}.tmp", std::process::id(), h.finish()));
            match openat(
                &self.fd,
                tmp.as_os_str(),
                OFlag::O_WRONLY
                    | OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(mode),
            ) {
                Ok(fd) => return Ok((tmp, fd)),
                Err(nix::errno::Errno::EEXIST) if tries < 8 => tries += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl AsFd for Dir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

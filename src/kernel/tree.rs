//! Trees nobody trusts (bpffs, cgroup2), walked one directory fd at a time, as systemd's
//! `chase()` does: each step is `openat2` beneath the parent with `RESOLVE_NO_SYMLINKS |
//! RESOLVE_NO_XDEV | RESOLVE_BENEATH`, so a symlink or a mount planted inside a root ends the
//! step instead of leading the guard elsewhere. Names are bytes. Each entry carries its identity
//! (device, inode), and a removal is an `unlinkat` on the parent's fd made only after that
//! identity is checked again: no other code builds a path to delete.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::dir::Dir as DirStream;
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

    /// A subdirectory, never through a symlink and never into another mount: those answer
    /// ELOOP and EXDEV (see `is_refused`).
    pub fn open_child(&self, name: &OsStr) -> io::Result<Dir> {
        // No O_NOFOLLOW here: with O_DIRECTORY it turns a symlink into ENOTDIR, which reads as
        // "not a directory"; RESOLVE_NO_SYMLINKS answers ELOOP for it.
        let how = OpenHow::new()
            .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
            .resolve(
                ResolveFlag::RESOLVE_NO_SYMLINKS
                    | ResolveFlag::RESOLVE_NO_XDEV
                    | ResolveFlag::RESOLVE_BENEATH,
            );
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
                if fstat(&fd)?.st_dev != self.id.dev {
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

    /// Every entry but `.` and `..`. An entry that vanishes while listed is left out.
    pub fn entries(&self) -> io::Result<Vec<Entry>> {
        // A fresh open file description: a dup would share (and move) this fd's offset.
        let fd = openat(
            &self.fd,
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        let mut stream = DirStream::from_fd(fd)?;
        let mut out = Vec::new();
        for e in stream.iter() {
            let e = e?;
            let name = OsStr::from_bytes(e.file_name().to_bytes());
            if name == "." || name == ".." {
                continue;
            }
            match self.stat(name) {
                Ok(entry) => out.push(entry),
                Err(err) if err.raw_os_error() == Some(libc::ENOENT) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(out)
    }

    /// The BPF object pinned at `name`, which must be a regular file of this directory's own
    /// file system. bpf(2) takes a path only (a directory fd from 6.5), so the path goes through
    /// this process's fd of the directory: nothing above it is resolved again.
    pub fn obj_get(&self, name: &OsStr) -> io::Result<OwnedFd> {
        let e = self.stat(name)?;
        if e.kind != Kind::File || e.mount {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a pin of this bpffs",
            ));
        }
        let mut path = OsString::from(format!("/proc/self/fd/{}/", self.fd.as_raw_fd()));
        path.push(name);
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

impl AsFd for Dir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

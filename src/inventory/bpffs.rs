//! The bpffs part of the scan: Calico's places under each bpffs root (ctlb/, tc/globals/,
//! old_jumps, the per-interface tc/ directories, tcx/, netkit/ and the loose pin files),
//! listed through directory fds, each pin opened to learn the object it holds. Whatever cannot
//! be looked into is recorded, never followed: no symlink, no other mount, and nothing removed.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::kernel::bpf::{self, ObjKind};
use crate::kernel::fs::FsKind;
use crate::kernel::is_gone;
use crate::kernel::tree::{refusal, Dir, Entry, FileId, Kind};
use crate::names;
use crate::ownership::{self, Place};

use super::objects::{Inventory, Located, Pin, PinDir, PinnedObject};

/// Felix mounts its own bpffs here only when /sys/fs/bpf is not one: its absence is normal.
const OPTIONAL_BPFFS_ROOT: &str = "/var/run/calico/bpffs";

/// One bpffs root. Whatever goes wrong in it is a warning naming the place, and the rest of
/// the root (and every other root) is still scanned.
pub fn scan_bpffs(root: &Path, inv: &mut Inventory) {
    let top = match Dir::open_root(root) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound && root == Path::new(OPTIONAL_BPFFS_ROOT) => {
            return
        }
        Err(e) => {
            inv.incomplete.push(format!(
                "{}: bpffs root not inspected: {e}",
                names::path(root)
            ));
            return;
        }
    };
    match top.fs_kind() {
        Ok(FsKind::Bpffs) => {}
        Ok(_) => {
            inv.warnings.push(format!(
                "{}: not a bpffs mount, skipped (nothing in it is touched)",
                names::path(root)
            ));
            return;
        }
        Err(e) => {
            inv.incomplete.push(format!(
                "{}: bpffs root not inspected: {e}",
                names::path(root)
            ));
            return;
        }
    }
    let mut scan = BpffsScan {
        root,
        top: &top,
        inv,
    };
    for (rel, place) in ownership::PIN_DIRS {
        scan.dir(Path::new(rel), place, false);
    }
    scan.dir(Path::new(ownership::OLD_JUMPS), Place::OldJumps, true);
    if let Some(tc) = scan.open(Path::new(ownership::TC_DIR)) {
        match tc.entries() {
            Ok(entries) => {
                for e in entries {
                    let name = e.name.as_bytes();
                    if name == b"globals" || !ownership::iface_dir(name) {
                        continue;
                    }
                    let rel = Path::new(ownership::TC_DIR).join(&e.name);
                    if e.kind == Kind::Dir && !e.mount {
                        scan.dir(&rel, Place::IfaceDir, false);
                    } else if e.mount || e.kind == Kind::Symlink {
                        scan.odd(&rel, &e);
                    }
                }
            }
            Err(e) => scan.blind(Path::new(ownership::TC_DIR), &e),
        }
    }
    for (rel, place) in ownership::PIN_FILES {
        match top.stat(OsStr::new(rel)) {
            Ok(e) if e.kind == Kind::File && !e.mount => scan.pin(&top, Path::new(rel), &e, place),
            Ok(e) if e.kind == Kind::Dir => {}
            Ok(e) => scan.odd(Path::new(rel), &e),
            Err(err) if is_gone(&err) => {}
            Err(err) => scan.blind(Path::new(rel), &err),
        }
    }
}

struct BpffsScan<'a> {
    root: &'a Path,
    top: &'a Dir,
    inv: &'a mut Inventory,
}

impl BpffsScan<'_> {
    fn located(&self, rel: &Path, id: FileId) -> Located {
        Located {
            root: self.root.to_path_buf(),
            rel: rel.to_path_buf(),
            id,
        }
    }

    /// A directory of Calico's places, or None when it is absent (or could not be entered,
    /// which is recorded).
    fn open(&mut self, rel: &Path) -> Option<Dir> {
        match self.top.open_beneath(rel) {
            Ok(d) => Some(d),
            Err(e) if is_gone(&e) || e.raw_os_error() == Some(libc::ENOTDIR) => None,
            Err(e) => {
                self.blind(rel, &e);
                None
            }
        }
    }

    /// Something the guard could not look into where Calico's objects would be.
    fn blind(&mut self, rel: &Path, err: &io::Error) {
        let what = format!(
            "{}: not inspected: {}",
            names::path(&self.root.join(rel)),
            refusal(err)
        );
        // old_jumps is met twice: as an entry of tc/globals and as a place of its own.
        if !self.inv.incomplete.contains(&what) {
            self.inv.incomplete.push(what);
        }
    }

    /// A symlink, a mount point or a special file in Calico's places: never followed, never
    /// removed, always reported.
    fn odd(&mut self, rel: &Path, e: &Entry) {
        if e.mount {
            self.blind(rel, &io::Error::from_raw_os_error(libc::EXDEV));
        } else if e.kind == Kind::Symlink {
            self.blind(rel, &io::Error::from_raw_os_error(libc::ELOOP));
        } else {
            self.inv.incomplete.push(format!(
                "{}: not a pin (a device, FIFO or socket), left alone",
                names::path(&self.root.join(rel))
            ));
        }
    }

    /// List the pins in one directory (recursively for old_jumps) and record the directory.
    fn dir(&mut self, rel: &Path, place: Place, recursive: bool) {
        let Some(dir) = self.open(rel) else { return };
        let entries = match dir.entries() {
            Ok(e) => e,
            Err(e) => return self.blind(rel, &e),
        };
        let mut subdirs = Vec::new();
        for e in &entries {
            let sub = rel.join(&e.name);
            match e.kind {
                _ if e.mount => self.odd(&sub, e),
                Kind::File => self.pin(&dir, &sub, e, place),
                Kind::Dir if recursive => subdirs.push(sub),
                // A directory inside ctlb/, tc/globals/ (old_jumps and other tools' own), tcx/
                // or netkit/ is not a pin and not looked into.
                Kind::Dir => {}
                _ => self.odd(&sub, e),
            }
        }
        if ownership::removable_dir(rel) {
            let at = self.located(rel, dir.id);
            self.inv.dirs.push(PinDir {
                at,
                entries: entries.len(),
            });
        }
        for sub in subdirs {
            self.dir(&sub, place, true);
        }
    }

    fn pin(&mut self, dir: &Dir, rel: &Path, e: &Entry, place: Place) {
        let object = match pinned_object(dir, &e.name) {
            Ok(o) => o,
            Err(err) if is_gone(&err) => return,
            Err(err) => {
                self.blind(rel, &err);
                PinnedObject::Unknown(err.to_string())
            }
        };
        let at = self.located(rel, e.id);
        self.inv.pins.push(Pin { at, place, object });
    }
}

/// What a pin holds, opened through its directory's fd.
pub fn pinned_object(dir: &Dir, name: &OsStr) -> io::Result<PinnedObject> {
    object_of(dir.obj_get(name)?.as_fd())
}

/// What an fd opened from a pin holds.
pub fn object_of(fd: BorrowedFd<'_>) -> io::Result<PinnedObject> {
    Ok(match bpf::fd_kind(fd)? {
        ObjKind::Prog => PinnedObject::Prog(bpf::prog_info(fd)?),
        ObjKind::Map => PinnedObject::Map(bpf::map_info(fd)?),
        ObjKind::Link => PinnedObject::Link(bpf::link_info(fd)?),
        ObjKind::Other => PinnedObject::Unknown("not a program, map or link".into()),
    })
}

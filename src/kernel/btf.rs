//! The five facts the task_file iterator needs from the running kernel's BTF: where `f_op` and
//! `private_data` sit in `struct file`, where `tgid` and `comm` sit in `struct task_struct`,
//! and the type id of the function `bpf_iter_task_file`. A small reader of
//! /sys/kernel/btf/vmlinux answers them by walking the type section once (libbpf's full parse
//! and validation of every type and string was a third of a sweep's own time), and hands over
//! to libbpf's parser whenever it meets anything it does not understand: a header, a kind or a
//! section it cannot read, or a fact it cannot find. It only reads: it never loads anything
//! into the kernel and never guesses an offset.

use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;

use libbpf_rs::btf::types::{Composite, Func, MemberAttr, Struct};
use libbpf_rs::btf::{BtfKind, BtfType, TypeId};
use libbpf_rs::Btf;

use super::from_rs;

/// Byte offsets of the members the iterator program reads, and the BTF id of the iterator's
/// target function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub file_f_op: u32,
    pub file_private_data: u32,
    pub task_tgid: u32,
    pub task_comm: u32,
    pub iter_task_file: u32,
}

const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

/// The running kernel's layout: the own reader's answer, else libbpf's.
pub fn layout() -> io::Result<Layout> {
    match Vmlinux::open().ok().and_then(|raw| parse(raw.bytes())) {
        Some(l) => Ok(l),
        None => layout_by_libbpf(),
    }
}

/// The kernel's BTF as it is: mapped where the kernel allows it (6.16 and later map it without
/// a copy, and its pages are the kernel's, not the guard's), else read into memory.
enum Vmlinux {
    Mapped(Mapping),
    Read(Vec<u8>),
}

struct Mapping {
    ptr: *mut libc::c_void,
    len: usize,
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr and len are what mmap returned; nothing borrows the mapping any more
        // (`bytes` ties every slice to the Vmlinux that owns this).
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

impl Vmlinux {
    fn open() -> io::Result<Vmlinux> {
        let mut file = std::fs::File::open(VMLINUX)?;
        let len = usize::try_from(file.metadata()?.len()).map_err(io::Error::other)?;
        if len > 0 {
            // SAFETY: a fresh private read-only mapping of an open file; checked for failure.
            let ptr = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ,
                    libc::MAP_PRIVATE,
                    file.as_raw_fd(),
                    0,
                )
            };
            if ptr != libc::MAP_FAILED {
                return Ok(Vmlinux::Mapped(Mapping { ptr, len }));
            }
        }
        let mut bytes = Vec::with_capacity(len);
        file.read_to_end(&mut bytes)?;
        Ok(Vmlinux::Read(bytes))
    }

    fn bytes(&self) -> &[u8] {
        match self {
            // SAFETY: the mapping is len readable bytes and lives as long as self.
            Vmlinux::Mapped(m) => unsafe { std::slice::from_raw_parts(m.ptr.cast(), m.len) },
            Vmlinux::Read(v) => v,
        }
    }
}

const MAGIC: u16 = 0xeb9f;
const HEADER: usize = 24;
const TYPE: usize = 12;

const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FWD: u32 = 7;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_FLOAT: u32 = 16;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

/// Every this many types the walk notes where a type starts, so that a type is found by id
/// with a short walk from the mark before it (a full index of a kernel's 150,000 types would
/// cost the guard 600 KB).
const MARK_EVERY: u32 = 64;

/// One type's fixed part.
#[derive(Clone, Copy)]
struct Type {
    name_off: u32,
    kind: u32,
    vlen: usize,
    kflag: bool,
    /// The `size` or `type` word.
    size_type: u32,
    /// Where its trailing records start in the type section.
    body: usize,
}

/// A type found by kind and name: its id and fixed part.
type Found = (u32, Type);

struct Reader<'a> {
    types: &'a [u8],
    strings: &'a [u8],
    /// Byte offset of type 1, 1 + MARK_EVERY, 1 + 2 * MARK_EVERY, ...
    marks: Vec<usize>,
    count: u32,
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let w = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]))
}

/// Bytes that follow a type's fixed part, by kind; None for a kind this reader does not know.
fn trailing(kind: u32, vlen: usize) -> Option<usize> {
    Some(match kind {
        KIND_PTR | KIND_FWD | KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT
        | KIND_FUNC | KIND_FLOAT | KIND_TYPE_TAG => 0,
        KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
        KIND_ARRAY => 12,
        KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => vlen.checked_mul(12)?,
        KIND_ENUM | KIND_FUNC_PROTO => vlen.checked_mul(8)?,
        _ => return None,
    })
}

impl<'a> Reader<'a> {
    /// The header and section bounds, checked; the type section walked once to its end,
    /// finding on the way the first type of each kind and name in `wanted`, as libbpf's
    /// `btf__find_by_name_kind` finds it.
    fn new<const N: usize>(
        raw: &'a [u8],
        wanted: [(u32, &[u8]); N],
    ) -> Option<(Reader<'a>, [Option<Found>; N])> {
        if raw.len() < HEADER || u16::from_ne_bytes([raw[0], raw[1]]) != MAGIC || raw[2] != 1 {
            return None;
        }
        let hdr_len = u32_at(raw, 4)? as usize;
        let section = |off: usize, len: usize| -> Option<&'a [u8]> {
            let start = hdr_len.checked_add(u32_at(raw, off)? as usize)?;
            raw.get(start..start.checked_add(u32_at(raw, len)? as usize)?)
        };
        if hdr_len < HEADER {
            return None;
        }
        let mut r = Reader {
            types: section(8, 12)?,
            strings: section(16, 20)?,
            marks: Vec::new(),
            count: 0,
        };
        let mut found = [None; N];
        let mut at = 0;
        while at < r.types.len() {
            if r.count % MARK_EVERY == 0 {
                r.marks.push(at);
            }
            r.count = r.count.checked_add(1)?;
            let t = r.at(at)?;
            for (slot, (kind, name)) in found.iter_mut().zip(wanted) {
                if slot.is_none() && t.kind == kind && r.name_is(t.name_off, name) {
                    *slot = Some((r.count, t));
                }
            }
            at = r.next(at)?;
        }
        Some((r, found))
    }

    fn at(&self, at: usize) -> Option<Type> {
        let info = u32_at(self.types, at.checked_add(4)?)?;
        Some(Type {
            name_off: u32_at(self.types, at)?,
            kind: (info >> 24) & 0x1f,
            vlen: (info & 0xffff) as usize,
            kflag: info >> 31 == 1,
            size_type: u32_at(self.types, at + 8)?,
            body: at + TYPE,
        })
    }

    /// Where the type after the one at `at` starts; None past the section's end.
    fn next(&self, at: usize) -> Option<usize> {
        let t = self.at(at)?;
        let end = t.body.checked_add(trailing(t.kind, t.vlen)?)?;
        (end <= self.types.len()).then_some(end)
    }

    fn by_id(&self, id: u32) -> Option<Type> {
        let index = id.checked_sub(1).filter(|i| *i < self.count)?;
        let mut at = *self.marks.get((index / MARK_EVERY) as usize)?;
        for _ in 0..index % MARK_EVERY {
            at = self.next(at)?;
        }
        self.at(at)
    }

    /// Whether the string at `off` is `name`.
    fn name_is(&self, off: u32, name: &[u8]) -> bool {
        let off = off as usize;
        self.strings.get(off..off + name.len()) == Some(name)
            && self.strings.get(off + name.len()) == Some(&0)
    }

    /// A type with typedefs and modifiers followed, as libbpf-rs's `is_mod` and typedef do.
    fn resolve(&self, mut id: u32) -> Option<Type> {
        for _ in 0..16 {
            let t = self.by_id(id)?;
            match t.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = t.size_type
                }
                _ => return Some(t),
            }
        }
        None
    }

    /// Byte offset of a member of a struct or union, looking into anonymous structs and
    /// unions, the first match in member order; `depth` bounds a (corrupt) loop of them.
    fn member_offset(&self, t: Type, member: &[u8], depth: u32) -> Option<u32> {
        if !matches!(t.kind, KIND_STRUCT | KIND_UNION) || depth > 32 {
            return None;
        }
        (0..t.vlen).find_map(|i| {
            let m = t.body + i * 12;
            let (name_off, ty, raw) = (
                u32_at(self.types, m)?,
                u32_at(self.types, m + 4)?,
                u32_at(self.types, m + 8)?,
            );
            // With the kind flag, the top byte is a bitfield's size, the rest its bit offset.
            let bits = if t.kflag { raw & 0x00ff_ffff } else { raw };
            if name_off == 0 {
                let inner = self.resolve(ty)?;
                self.member_offset(inner, member, depth + 1)
                    .map(|off| bits / 8 + off)
            } else if self.name_is(name_off, member) {
                Some(bits / 8)
            } else {
                None
            }
        })
    }
}

/// The layout from raw BTF bytes; None when anything is not understood or not there (then
/// libbpf, which reads every kind there is, decides).
fn parse(raw: &[u8]) -> Option<Layout> {
    let (r, [file, task, func]) = Reader::new(
        raw,
        [
            (KIND_STRUCT, b"file".as_slice()),
            (KIND_STRUCT, b"task_struct"),
            (KIND_FUNC, b"bpf_iter_task_file"),
        ],
    )?;
    let ((_, file), (_, task), (iter_task_file, _)) = (file?, task?, func?);
    Some(Layout {
        file_f_op: r.member_offset(file, b"f_op", 0)?,
        file_private_data: r.member_offset(file, b"private_data", 0)?,
        task_tgid: r.member_offset(task, b"tgid", 0)?,
        task_comm: r.member_offset(task, b"comm", 0)?,
        iter_task_file,
    })
}

/// The layout from libbpf's full parse of the kernel's BTF. Errors (Unsupported) when the
/// kernel has no BTF or lacks one of the facts.
fn layout_by_libbpf() -> io::Result<Layout> {
    let btf = Btf::from_vmlinux().map_err(|e| {
        let e = from_rs(e);
        io::Error::new(e.kind(), format!("loading the kernel's BTF: {e}"))
    })?;
    let file = type_id::<Struct<'_>>(&btf, "file")?;
    let task = type_id::<Struct<'_>>(&btf, "task_struct")?;
    let offset = |ty: u32, what: &str, member: &str| {
        member_offset(&btf, ty, member).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::Unsupported,
                format!("kernel BTF: no {what}.{member}"),
            )
        })
    };
    Ok(Layout {
        file_f_op: offset(file, "file", "f_op")?,
        file_private_data: offset(file, "file", "private_data")?,
        task_tgid: offset(task, "task_struct", "tgid")?,
        task_comm: offset(task, "task_struct", "comm")?,
        iter_task_file: type_id::<Func<'_>>(&btf, "bpf_iter_task_file")?,
    })
}

/// The id of a named type of one kind in the kernel's BTF.
fn type_id<'b, K>(btf: &'b Btf<'_>, name: &str) -> io::Result<u32>
where
    K: TryFrom<BtfType<'b>> + std::ops::Deref<Target = BtfType<'b>>,
{
    btf.type_by_name::<K>(name)
        .map(|t| u32::from(t.type_id()))
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::Unsupported,
                format!("kernel BTF has no {name}"),
            )
        })
}

/// A type with typedefs and modifiers (const, volatile, restrict, type tags) followed.
fn resolve(mut ty: BtfType<'_>) -> Option<BtfType<'_>> {
    for _ in 0..16 {
        if !ty.is_mod() && ty.kind() != BtfKind::Typedef {
            return Some(ty);
        }
        ty = ty.next_type()?;
    }
    None
}

/// Byte offset of a member of a struct or union, looking into anonymous structs and unions.
fn member_offset(btf: &Btf<'_>, ty: u32, member: &str) -> Option<u32> {
    let outer = Composite::try_from(resolve(btf.type_by_id(TypeId::from(ty))?)?).ok()?;
    (0..outer.len()).find_map(|i| {
        let m = outer.get(i)?;
        let bits = match m.attr {
            MemberAttr::Normal { offset } | MemberAttr::BitField { offset, .. } => offset,
        };
        match m.name {
            None => member_offset(btf, u32::from(m.ty), member).map(|off| bits / 8 + off),
            Some(n) if n.as_bytes() == member.as_bytes() => Some(bits / 8),
            Some(_) => None,
        }
    })
}

#[cfg(test)]
mod tests;

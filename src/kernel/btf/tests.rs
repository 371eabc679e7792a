//! The BTF reader on hand-built blobs (every kind, anonymous members, bitfields, broken
//! headers and sections), and against libbpf on the running kernel.

use super::*;

/// A BTF blob under construction: types from id 1, strings from offset 1 (0 is "").
struct Blob {
    types: Vec<u8>,
    strings: Vec<u8>,
    next: u32,
}

fn info(kind: u32, vlen: usize, kflag: bool) -> u32 {
    (u32::from(kflag) << 31) | (kind << 24) | vlen as u32
}

impl Blob {
    fn new() -> Blob {
        Blob {
            types: Vec::new(),
            strings: vec![0],
            next: 1,
        }
    }

    fn s(&mut self, name: &str) -> u32 {
        if name.is_empty() {
            return 0;
        }
        let off = self.strings.len() as u32;
        self.strings.extend_from_slice(name.as_bytes());
        self.strings.push(0);
        off
    }

    fn words(&mut self, words: &[u32]) {
        for w in words {
            self.types.extend_from_slice(&w.to_ne_bytes());
        }
    }

    /// A type: its name, info word, size/type word and trailing words; returns its id.
    fn ty(&mut self, name: &str, info: u32, size_type: u32, trailing: &[u32]) -> u32 {
        let name = self.s(name);
        self.words(&[name, info, size_type]);
        self.words(trailing);
        self.next += 1;
        self.next - 1
    }

    /// A struct (or union) with members (name, type, bit offset word).
    fn composite(
        &mut self,
        kind: u32,
        name: &str,
        kflag: bool,
        members: &[(&str, u32, u32)],
    ) -> u32 {
        let mut trailing = Vec::new();
        for (n, t, off) in members {
            trailing.extend([self.s(n), *t, *off]);
        }
        self.ty(name, info(kind, members.len(), kflag), 8, &trailing)
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC.to_ne_bytes());
        out.extend_from_slice(&[1, 0]);
        let (tl, sl) = (self.types.len() as u32, self.strings.len() as u32);
        for w in [HEADER as u32, 0, tl, tl, sl] {
            out.extend_from_slice(&w.to_ne_bytes());
        }
        out.extend_from_slice(&self.types);
        out.extend_from_slice(&self.strings);
        out
    }
}

/// One of every kind, with trailing records where the kind has them.
fn every_kind(b: &mut Blob) {
    let int = b.ty("int", info(KIND_INT, 0, false), 4, &[32]);
    b.ty("", info(KIND_PTR, 0, false), int, &[]);
    b.ty("", info(KIND_ARRAY, 0, false), 0, &[int, int, 16]);
    b.composite(
        KIND_STRUCT,
        "other",
        false,
        &[("a", int, 0), ("b", int, 32)],
    );
    b.composite(KIND_UNION, "u", false, &[("a", int, 0)]);
    let (one, two) = (b.s("ONE"), b.s("TWO"));
    b.ty("e", info(KIND_ENUM, 2, false), 4, &[one, 1, two, 2]);
    b.ty("file", info(KIND_FWD, 0, false), 0, &[]);
    b.ty("t", info(KIND_TYPEDEF, 0, false), int, &[]);
    b.ty("", info(KIND_VOLATILE, 0, false), int, &[]);
    b.ty("", info(KIND_CONST, 0, false), int, &[]);
    b.ty("", info(KIND_RESTRICT, 0, false), int, &[]);
    let x = b.s("x");
    let proto = b.ty("", info(KIND_FUNC_PROTO, 2, false), int, &[x, int, 0, int]);
    b.ty("f", info(KIND_FUNC, 0, false), proto, &[]);
    let var = b.ty("v", info(KIND_VAR, 0, false), int, &[1]);
    b.ty(".data", info(KIND_DATASEC, 1, false), 4, &[var, 0, 4]);
    b.ty("float", info(KIND_FLOAT, 0, false), 8, &[]);
    b.ty("tag", info(KIND_DECL_TAG, 0, false), int, &[u32::MAX]);
    b.ty("tt", info(KIND_TYPE_TAG, 0, false), int, &[]);
    let big = b.s("BIG");
    b.ty("e64", info(KIND_ENUM64, 1, true), 8, &[big, 1, 2]);
    // A union named file and a function of the iterator's name's prefix: neither is it.
    b.composite(KIND_UNION, "file", false, &[("f_op", int, 0)]);
    b.ty("bpf_iter_task", info(KIND_FUNC, 0, false), proto, &[]);
}

/// The kernel's three types, plain: file.f_op at 40, private_data at 200, task_struct.tgid at
/// 1400, comm at 2000. Returns the iterator function's id.
fn plain(b: &mut Blob) -> u32 {
    let int = b.ty("int", info(KIND_INT, 0, false), 4, &[32]);
    let ptr = b.ty("", info(KIND_PTR, 0, false), 0, &[]);
    b.composite(
        KIND_STRUCT,
        "file",
        false,
        &[
            ("f_mode", int, 0),
            ("f_op", ptr, 320),
            ("private_data", ptr, 1600),
        ],
    );
    b.composite(
        KIND_STRUCT,
        "task_struct",
        false,
        &[
            ("pid", int, 11168),
            ("tgid", int, 11200),
            ("comm", int, 16000),
        ],
    );
    let proto = b.ty("", info(KIND_FUNC_PROTO, 0, false), int, &[]);
    b.ty("bpf_iter_task_file", info(KIND_FUNC, 0, false), proto, &[])
}

fn want(iter_task_file: u32) -> Option<Layout> {
    Some(Layout {
        file_f_op: 40,
        file_private_data: 200,
        task_tgid: 1400,
        task_comm: 2000,
        iter_task_file,
    })
}

/// The members behind anonymous unions and structs, reached through const and typedef, far
/// enough apart in id that the lookups walk from different marks.
fn anonymous(b: &mut Blob) -> u32 {
    let int = b.ty("int", info(KIND_INT, 0, false), 4, &[32]);
    let ptr = b.ty("", info(KIND_PTR, 0, false), 0, &[]);
    let inner = b.composite(
        KIND_STRUCT,
        "",
        false,
        &[("pad", int, 0), ("private_data", ptr, 64)],
    );
    let union = b.composite(KIND_UNION, "", false, &[("other", int, 0), ("", inner, 0)]);
    for i in 0..300 {
        b.ty(&format!("filler{i}"), info(KIND_INT, 0, false), 4, &[32]);
    }
    let anon = b.composite(
        KIND_STRUCT,
        "",
        false,
        &[("x", int, 0), ("tgid", int, 3200)],
    );
    let typedef = b.ty("anon_t", info(KIND_TYPEDEF, 0, false), anon, &[]);
    let konst = b.ty("", info(KIND_CONST, 0, false), typedef, &[]);
    let tag = b.ty("rcu", info(KIND_TYPE_TAG, 0, false), konst, &[]);
    // f_op at 40; private_data: the union at 192, its struct at 0, the member at 8: 200.
    b.composite(
        KIND_STRUCT,
        "file",
        false,
        &[("f_op", ptr, 320), ("", union, 1536)],
    );
    b.composite(
        KIND_STRUCT,
        "task_struct",
        false,
        &[("", tag, 8000), ("comm", int, 16000)],
    );
    let proto = b.ty("", info(KIND_FUNC_PROTO, 0, false), int, &[]);
    b.ty("bpf_iter_task_file", info(KIND_FUNC, 0, false), proto, &[])
}

/// Bitfield offsets under the kind flag: the top byte is the field's size, not its offset.
fn bitfields(b: &mut Blob) -> u32 {
    let int = b.ty("int", info(KIND_INT, 0, false), 4, &[32]);
    let ptr = b.ty("", info(KIND_PTR, 0, false), 0, &[]);
    b.composite(
        KIND_STRUCT,
        "file",
        true,
        &[
            ("flags", int, (3 << 24) | 5),
            ("f_op", ptr, 320),
            ("private_data", ptr, 1600),
        ],
    );
    b.composite(
        KIND_STRUCT,
        "task_struct",
        true,
        &[
            ("bits", int, (1 << 24) | 11199),
            ("tgid", int, 11200),
            ("comm", int, 16000),
        ],
    );
    let proto = b.ty("", info(KIND_FUNC_PROTO, 0, false), int, &[]);
    b.ty("bpf_iter_task_file", info(KIND_FUNC, 0, false), proto, &[])
}

/// The answer from a blob's bytes after `edit`.
fn parsed(build: fn(&mut Blob) -> u32, edit: fn(&mut Vec<u8>)) -> (Option<Layout>, u32) {
    let mut b = Blob::new();
    let id = build(&mut b);
    let mut bytes = b.bytes();
    edit(&mut bytes);
    (parse(&bytes), id)
}

fn set_u32(bytes: &mut [u8], at: usize, v: u32) {
    bytes[at..at + 4].copy_from_slice(&v.to_ne_bytes());
}

/// A case: its name, how its blob is built (returning the iterator function's id), how its
/// bytes are then broken, and whether the reader must answer.
type Case = (&'static str, fn(&mut Blob) -> u32, fn(&mut Vec<u8>), bool);

#[test]
fn table() {
    let keep: fn(&mut Vec<u8>) = |_| {};
    let cases: Vec<Case> = vec![
        ("plain", plain, keep, true),
        (
            "every kind first",
            |b| {
                every_kind(b);
                plain(b)
            },
            keep,
            true,
        ),
        ("anonymous, through modifiers", anonymous, keep, true),
        ("bitfield offsets", bitfields, keep, true),
        // Two structs named file: the first is the one libbpf finds.
        (
            "first of two",
            |b| {
                let id = plain(b);
                b.composite(
                    KIND_STRUCT,
                    "file",
                    false,
                    &[("f_op", 1, 0), ("private_data", 1, 0)],
                );
                id
            },
            keep,
            true,
        ),
        // What it does not understand, it leaves to libbpf.
        (
            "unknown kind",
            |b| {
                b.ty("new", info(20, 0, false), 0, &[]);
                plain(b)
            },
            keep,
            false,
        ),
        (
            "kind 31",
            |b| {
                let id = plain(b);
                b.ty("x", info(31, 0, false), 0, &[]);
                id
            },
            keep,
            false,
        ),
        ("bad magic", plain, |v| v[0] ^= 0xff, false),
        ("version 2", plain, |v| v[2] = 2, false),
        ("short header", plain, |v| set_u32(v, 4, 16), false),
        ("truncated file", plain, |v| v.truncate(v.len() - 3), false),
        (
            "type section past the end",
            plain,
            |v| {
                let l = u32_at(v, 12).unwrap();
                set_u32(v, 12, l + (1 << 20))
            },
            false,
        ),
        (
            "strings past the end",
            plain,
            |v| {
                let l = u32_at(v, 20).unwrap();
                set_u32(v, 20, l + 1)
            },
            false,
        ),
        (
            "type section ends inside a type",
            plain,
            |v| {
                let l = u32_at(v, 12).unwrap();
                set_u32(v, 12, l - 4)
            },
            false,
        ),
        ("empty", |_| 0, keep, false),
        (
            "no iterator function",
            |b| {
                let id = plain(b);
                b.types.truncate(b.types.len() - TYPE);
                id
            },
            keep,
            false,
        ),
        (
            "no such member",
            |b| {
                let int = b.ty("int", info(KIND_INT, 0, false), 4, &[32]);
                b.composite(KIND_STRUCT, "file", false, &[("f_op", int, 0)]);
                b.composite(
                    KIND_STRUCT,
                    "task_struct",
                    false,
                    &[("tgid", int, 0), ("comm", int, 0)],
                );
                b.ty("bpf_iter_task_file", info(KIND_FUNC, 0, false), 0, &[])
            },
            keep,
            false,
        ),
        // An anonymous member that is its own struct: bounded, not a stack overflow.
        (
            "a loop of anonymous members",
            |b| {
                let id = b.next;
                b.composite(KIND_STRUCT, "file", false, &[("", id, 0)]);
                b.composite(KIND_STRUCT, "task_struct", false, &[]);
                b.ty("bpf_iter_task_file", info(KIND_FUNC, 0, false), 0, &[])
            },
            keep,
            false,
        ),
        (
            "a member's type out of range",
            |b| {
                b.composite(KIND_STRUCT, "file", false, &[("", 999, 0)]);
                b.composite(KIND_STRUCT, "task_struct", false, &[]);
                b.ty("bpf_iter_task_file", info(KIND_FUNC, 0, false), 0, &[])
            },
            keep,
            false,
        ),
    ];
    for (name, build, edit, ok) in cases {
        let (got, id) = parsed(build, edit);
        let want = if ok { want(id) } else { None };
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn names_must_end_where_the_string_ends() {
    let mut b = Blob::new();
    let int = b.ty("int", info(KIND_INT, 0, false), 4, &[32]);
    b.composite(
        KIND_STRUCT,
        "files",
        false,
        &[("f_op", int, 0), ("private_data", int, 0)],
    );
    b.composite(
        KIND_STRUCT,
        "task_struct",
        false,
        &[("tgid", int, 0), ("comm", int, 0)],
    );
    b.ty("bpf_iter_task_file", info(KIND_FUNC, 0, false), 0, &[]);
    assert_eq!(parse(&b.bytes()), None);
    // A name offset past the strings names nothing: here, struct file's (after int and ptr).
    let mut b = Blob::new();
    let id = plain(&mut b);
    let mut bytes = b.bytes();
    assert_eq!(parse(&bytes), want(id));
    set_u32(&mut bytes, HEADER + TYPE + 4 + TYPE, u32::MAX);
    assert_eq!(parse(&bytes), None);
}

/// The own reader and libbpf agree on the running kernel, from the mapped file and from one
/// read into memory (the path of kernels before 6.16). Needs the kernel's BTF, not root.
#[test]
fn agrees_with_libbpf_on_this_kernel() {
    if !std::path::Path::new(VMLINUX).exists() {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "{VMLINUX} missing; CI=true, so this is a failure, not a skip"
        );
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            b"SKIPPED agrees_with_libbpf_on_this_kernel: the kernel has no BTF\n",
        );
        return;
    }
    let libbpf = layout_by_libbpf().unwrap();
    let mapped = Vmlinux::open().unwrap();
    assert_eq!(parse(mapped.bytes()), Some(libbpf));
    let read = std::fs::read(VMLINUX).unwrap();
    assert_eq!(parse(&read), Some(libbpf));
    assert_eq!(layout().unwrap(), libbpf);
}

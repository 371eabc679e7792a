//! Every open file of every task, from a BPF `task_file` iterator: the kernel's own view, with
//! no ptrace checks, so the live-dataplane interlock sees a Felix more privileged than the
//! guard, or in another user namespace, without CAP_SYS_PTRACE. It only reads: the program is
//! built from raw instructions with struct offsets from the running kernel's BTF (no CO-RE, no
//! clang, no kernel symbol address), and it never decides who holds what: each record says
//! which task holds which fd and the file's `f_op` and `private_data` pointers, and the caller
//! compares those with the records of its own fds.

use std::io::{self, Read};
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::OnceLock;

use libbpf_rs::libbpf_sys as sys;

use super::btf::{self, Layout};
use super::owned;

/// One open file. `tgid` is 0 for the files of the process reading the iterator, else the
/// task's thread-group id in the initial pid namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFile {
    pub tgid: u32,
    pub fd: u32,
    pub f_op: u64,
    pub private_data: u64,
    pub comm: String,
}

const RECORD: usize = 40;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    u64::from(code)
        | (u64::from(dst | (src << 4)) << 8)
        | (u64::from(off as u16) << 16)
        | (u64::from(imm as u32) << 32)
}

/// The iterator program. Context: `struct bpf_iter__task_file { meta; task; u32 fd; file; }`
/// at offsets 0, 8, 16, 24; `bpf_iter_meta.seq` at 0. Record on the stack at r10-40: tgid (0
/// for the reader itself), fd, f_op, private_data, comm[16].
fn program(tgid_off: u32, comm_off: u32, f_op_off: u32, private_off: u32) -> Vec<u64> {
    const LDX_DW: u8 = 0x79;
    const LDX_W: u8 = 0x61;
    const STX_DW: u8 = 0x7b;
    const STX_W: u8 = 0x63;
    const MOV_X: u8 = 0xbf;
    const MOV_K: u8 = 0xb7;
    const ADD_K: u8 = 0x07;
    const RSH_K: u8 = 0x77;
    const JEQ_K: u8 = 0x15;
    const JNE_X: u8 = 0x5d;
    const CALL: u8 = 0x85;
    const EXIT: u8 = 0x95;
    let (tgid, f_op, private) = (tgid_off as i16, f_op_off as i16, private_off as i16);
    // Jumps count instructions after the jump; `out` is instruction 29.
    vec![
        insn(MOV_X, 6, 1, 0, 0),                                        // 0: r6 = ctx
        insn(LDX_DW, 7, 6, 24, 0),                                      // 1: r7 = ctx->file
        insn(JEQ_K, 7, 0, 26, 0),                                       // 2: if !file goto out
        insn(LDX_DW, 8, 6, 8, 0),                                       // 3: r8 = ctx->task
        insn(JEQ_K, 8, 0, 24, 0),                                       // 4: if !task goto out
        insn(LDX_W, 2, 6, 16, 0),                                       // 5: r2 = ctx->fd
        insn(STX_W, 10, 2, -36, 0),                                     // 6: rec.fd
        insn(LDX_W, 9, 8, tgid, 0),                                     // 7: r9 = task->tgid
        insn(CALL, 0, 0, 0, sys::BPF_FUNC_get_current_pid_tgid as i32), // 8
        insn(RSH_K, 0, 0, 0, 32),                                       // 9: r0 = the reader's tgid
        insn(JNE_X, 9, 0, 1, 0),        // 10: another task: keep its tgid
        insn(MOV_K, 9, 0, 0, 0),        // 11: our own file: tgid 0
        insn(STX_W, 10, 9, -40, 0),     // 12: rec.tgid
        insn(LDX_DW, 2, 7, f_op, 0),    // 13: r2 = file->f_op
        insn(STX_DW, 10, 2, -32, 0),    // 14: rec.f_op
        insn(LDX_DW, 2, 7, private, 0), // 15: r2 = file->private_data
        insn(STX_DW, 10, 2, -24, 0),    // 16: rec.private_data
        insn(MOV_X, 1, 10, 0, 0),       // 17: r1 = &rec.comm
        insn(ADD_K, 1, 0, 0, -16),      // 18
        insn(MOV_K, 2, 0, 0, 16),       // 19: r2 = 16
        insn(MOV_X, 3, 8, 0, 0),        // 20: r3 = &task->comm
        insn(ADD_K, 3, 0, 0, comm_off as i32), // 21
        insn(CALL, 0, 0, 0, sys::BPF_FUNC_probe_read_kernel as i32), // 22
        insn(LDX_DW, 1, 6, 0, 0),       // 23: r1 = ctx->meta
        insn(LDX_DW, 1, 1, 0, 0),       // 24: r1 = meta->seq
        insn(MOV_X, 2, 10, 0, 0),       // 25: r2 = &rec
        insn(ADD_K, 2, 0, 0, -40),      // 26
        insn(MOV_K, 3, 0, 0, RECORD as i32), // 27
        insn(CALL, 0, 0, 0, sys::BPF_FUNC_seq_write as i32), // 28
        insn(MOV_K, 0, 0, 0, 0),        // 29: out: return 0
        insn(EXIT, 0, 0, 0, 0),         // 30
    ]
}

/// The iterator's links, made once per process: parsing the kernel's BTF and loading the
/// program take milliseconds, and a sweep reads the iterator several times (before it applies,
/// and at each checkpoint), where every millisecond is part of the window in which a new
/// holder goes unseen. A failure is kept too, as its kind and text. `ALL` walks every task,
/// `OWN` this process only.
static ALL: OnceLock<Result<OwnedFd, (io::ErrorKind, String)>> = OnceLock::new();
static OWN: OnceLock<Result<OwnedFd, (io::ErrorKind, String)>> = OnceLock::new();

fn link(
    cell: &'static OnceLock<Result<OwnedFd, (io::ErrorKind, String)>>,
    own: bool,
) -> io::Result<BorrowedFd<'static>> {
    match cell.get_or_init(|| make_link(own).map_err(|e| (e.kind(), e.to_string()))) {
        Ok(fd) => Ok(fd.as_fd()),
        Err((kind, text)) => Err(io::Error::new(*kind, text.clone())),
    }
}

/// Every open file of every task. Errors when the kernel lacks BTF or task_file iterators;
/// the caller then falls back to /proc.
pub fn task_files() -> io::Result<Vec<TaskFile>> {
    read(link(&ALL, false)?)
}

/// This process's own open files (every record's `tgid` is 0): a walk as long as this process's
/// fd table, not the whole machine's. Errors on a kernel that cannot iterate one process's
/// files (before 6.1, whose iterator takes no pid), as well as where `task_files` would.
pub fn own_files() -> io::Result<Vec<TaskFile>> {
    read(link(&OWN, true)?)
}

fn read(link: BorrowedFd<'_>) -> io::Result<Vec<TaskFile>> {
    // SAFETY: plain syscall wrapper.
    let iter = owned(unsafe { sys::bpf_iter_create(link.as_raw_fd()) })?;
    let mut bytes = Vec::new();
    std::fs::File::from(iter).read_to_end(&mut bytes)?;
    Ok(bytes
        .chunks_exact(RECORD)
        .map(|r| {
            let u32_at = |i: usize| u32::from_ne_bytes([r[i], r[i + 1], r[i + 2], r[i + 3]]);
            let u64_at = |i: usize| u64::from(u32_at(i)) | (u64::from(u32_at(i + 4)) << 32);
            let comm = &r[24..40];
            let end = comm.iter().position(|b| *b == 0).unwrap_or(comm.len());
            TaskFile {
                tgid: u32_at(0),
                fd: u32_at(4),
                f_op: u64_at(8),
                private_data: u64_at(16),
                comm: String::from_utf8_lossy(&comm[..end]).into_owned(),
            }
        })
        .collect())
}

/// The kernel's layout, read once for both links: the program is the same, and only the
/// link says whose files it walks.
static LAYOUT: OnceLock<Result<Layout, (io::ErrorKind, String)>> = OnceLock::new();

/// The iterator program, built from the kernel's BTF, loaded and linked, for every task or
/// (`own`) for this process alone. The link keeps the program.
fn make_link(own: bool) -> io::Result<OwnedFd> {
    let l = match LAYOUT.get_or_init(|| btf::layout().map_err(|e| (e.kind(), e.to_string()))) {
        Ok(l) => *l,
        Err((kind, text)) => return Err(io::Error::new(*kind, text.clone())),
    };
    if [l.file_f_op, l.file_private_data, l.task_tgid]
        .iter()
        .any(|o| *o > i16::MAX as u32)
    {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "kernel BTF: member offsets that do not fit an instruction",
        ));
    }
    let insns = program(l.task_tgid, l.task_comm, l.file_f_op, l.file_private_data);

    // Raw from here: libbpf-rs loads programs only from ELF objects (this one is built from
    // instructions at run time), and makes links and iterators only for the programs it loaded.
    let mut opts = sys::bpf_prog_load_opts {
        sz: size_of::<sys::bpf_prog_load_opts>() as _,
        expected_attach_type: sys::BPF_TRACE_ITER,
        attach_btf_id: l.iter_task_file,
        ..Default::default()
    };
    // SAFETY: the instructions, strings and opts outlive the call.
    let prog = owned(unsafe {
        sys::bpf_prog_load(
            sys::BPF_PROG_TYPE_TRACING,
            c"cbg_task_files".as_ptr(),
            c"GPL".as_ptr(),
            insns.as_ptr().cast(),
            insns.len() as _,
            &mut opts,
        )
    })?;
    // A pid in the link's info walks that process only (6.1); an older kernel, whose info is
    // shorter, refuses the non-zero bytes past its end (E2BIG) rather than walk every task.
    let mut info = sys::bpf_iter_link_info::default();
    info.task.pid = std::process::id();
    let mut link_opts = sys::bpf_link_create_opts {
        sz: size_of::<sys::bpf_link_create_opts>() as _,
        ..Default::default()
    };
    if own {
        link_opts.iter_info = &mut info;
        link_opts.iter_info_len = size_of::<sys::bpf_iter_link_info>() as _;
    }
    // SAFETY: link_opts and info outlive the call.
    owned(unsafe { sys::bpf_link_create(prog.as_raw_fd(), 0, sys::BPF_TRACE_ITER, &link_opts) })
}

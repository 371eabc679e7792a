//! Every open file of every task, from a BPF `task_file` iterator: the kernel's own view, with
//! no ptrace checks, so the live-dataplane interlock sees a Felix more privileged than the
//! guard, or in another user namespace, without CAP_SYS_PTRACE.
//!
//! The program is built from raw instructions: struct offsets come from the running kernel's
//! BTF (no CO-RE, no clang), and no kernel symbol address is needed. Each record says which
//! task holds which fd, and the file's `f_op` and `private_data` pointers; the caller compares
//! those with the records of its own fds on the objects it cares about.

use std::ffi::{CStr, CString};
use std::io::{self, Read};
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use libbpf_sys as sys;

use super::check;

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

/// vmlinux BTF, freed on drop.
struct Btf(*mut sys::btf);

impl Drop for Btf {
    fn drop(&mut self) {
        // SAFETY: the pointer came from btf__load_vmlinux_btf and is freed once.
        unsafe { sys::btf__free(self.0) }
    }
}

impl Btf {
    fn vmlinux() -> io::Result<Btf> {
        // SAFETY: returns an owned object or NULL (errno set).
        let p = unsafe { sys::btf__load_vmlinux_btf() };
        if p.is_null() {
            return Err(io::Error::last_os_error());
        }
        Ok(Btf(p))
    }

    fn find(&self, name: &str, kind: u32) -> io::Result<u32> {
        let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: self.0 is a live btf; c is NUL-terminated.
        let id = unsafe { sys::btf__find_by_name_kind(self.0, c.as_ptr(), kind) };
        check(id)
            .map(|id| id as u32)
            .map_err(|e| io::Error::new(e.kind(), format!("kernel BTF has no {name}: {e}")))
    }

    /// (kind, vlen, kflag, type) of a type, following typedefs and modifiers.
    fn resolve(&self, mut id: u32) -> Option<(u32, *const sys::btf_type)> {
        for _ in 0..16 {
            // SAFETY: btf__type_by_id returns NULL or a pointer into the live btf.
            let t = unsafe { sys::btf__type_by_id(self.0, id) };
            if t.is_null() {
                return None;
            }
            // SAFETY: t is valid.
            let (info, next) = unsafe { ((*t).info, (*t).__bindgen_anon_1.type_) };
            let kind = (info >> 24) & 0x1f;
            match kind {
                // typedef, volatile, const, restrict, type_tag
                8 | 9 | 10 | 11 | 18 => id = next,
                _ => return Some((kind, t)),
            }
        }
        None
    }

    /// Byte offset of a member of a struct, looking into anonymous structs and unions.
    fn member_offset(&self, struct_id: u32, member: &str) -> Option<u32> {
        let (kind, t) = self.resolve(struct_id)?;
        if kind != sys::BTF_KIND_STRUCT && kind != sys::BTF_KIND_UNION {
            return None;
        }
        // SAFETY: t is a struct or union; `vlen` btf_member records follow it in memory.
        unsafe {
            let info = (*t).info;
            let vlen = (info & 0xffff) as usize;
            let kflag = info >> 31 == 1;
            let members =
                (t as *const u8).add(size_of::<sys::btf_type>()) as *const sys::btf_member;
            for i in 0..vlen {
                let m = &*members.add(i);
                let bits = if kflag {
                    m.offset & 0xff_ffff
                } else {
                    m.offset
                };
                if m.name_off == 0 {
                    if let Some(off) = self.member_offset(m.type_, member) {
                        return Some(bits / 8 + off);
                    }
                    continue;
                }
                let name = sys::btf__name_by_offset(self.0, m.name_off);
                if !name.is_null() && CStr::from_ptr(name).to_bytes() == member.as_bytes() {
                    return Some(bits / 8);
                }
            }
        }
        None
    }
}

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

fn owned(ret: i32) -> io::Result<OwnedFd> {
    let fd = check(ret)?;
    // SAFETY: a fresh fd nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Every open file of every task. Errors when the kernel lacks BTF or task_file iterators;
/// the caller then falls back to /proc.
pub fn task_files() -> io::Result<Vec<TaskFile>> {
    let btf = Btf::vmlinux()?;
    let file = btf.find("file", sys::BTF_KIND_STRUCT)?;
    let task = btf.find("task_struct", sys::BTF_KIND_STRUCT)?;
    let target = btf.find("bpf_iter_task_file", sys::BTF_KIND_FUNC)?;
    let missing =
        |what: &str| io::Error::new(io::ErrorKind::Unsupported, format!("kernel BTF: no {what}"));
    let f_op = btf
        .member_offset(file, "f_op")
        .ok_or_else(|| missing("file.f_op"))?;
    let private = btf
        .member_offset(file, "private_data")
        .ok_or_else(|| missing("file.private_data"))?;
    let tgid = btf
        .member_offset(task, "tgid")
        .ok_or_else(|| missing("task_struct.tgid"))?;
    let comm = btf
        .member_offset(task, "comm")
        .ok_or_else(|| missing("task_struct.comm"))?;
    if [f_op, private, tgid].iter().any(|o| *o > i16::MAX as u32) {
        return Err(missing("member offsets that fit an instruction"));
    }
    let insns = program(tgid, comm, f_op, private);

    // SAFETY: all-zero is the documented initial state of the opts structs.
    let mut opts: sys::bpf_prog_load_opts = unsafe { zeroed() };
    opts.sz = size_of::<sys::bpf_prog_load_opts>() as _;
    opts.expected_attach_type = sys::BPF_TRACE_ITER;
    opts.attach_btf_id = target;
    // SAFETY: the instructions and strings outlive the call.
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
    // SAFETY: as above.
    let mut link_opts: sys::bpf_link_create_opts = unsafe { zeroed() };
    link_opts.sz = size_of::<sys::bpf_link_create_opts>() as _;
    // SAFETY: link_opts outlives the call.
    let link = owned(unsafe {
        sys::bpf_link_create(prog.as_raw_fd(), 0, sys::BPF_TRACE_ITER, &link_opts)
    })?;
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

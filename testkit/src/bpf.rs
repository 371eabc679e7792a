//! The bpf(2) calls only fixtures make: the guard never loads, attaches, links or pins. Raw
//! libbpf-sys (through libbpf-rs's re-export) where libbpf-rs has no call: it loads programs
//! and BTF only from ELF objects, and attaches and pins only the programs it loaded itself.

use std::ffi::{c_int, CString};
use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use calico_bpf_guard::kernel::bpf::Target;
use libbpf_rs::libbpf_sys as sys;

fn check(ret: c_int) -> io::Result<c_int> {
    if ret < 0 {
        Err(io::Error::from_raw_os_error(-ret))
    } else {
        Ok(ret)
    }
}

fn owned(ret: c_int) -> io::Result<OwnedFd> {
    let fd = check(ret)?;
    // SAFETY: libbpf returned a fresh fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn raw(target: Target<'_>) -> c_int {
    match target {
        Target::Fd(fd) => fd.as_raw_fd(),
        Target::Ifindex(i) => i as c_int,
    }
}

/// Load a program from raw instructions (no clang, no ELF). `btf` is an optional (BTF blob
/// fd, func type id) pair to give the program its full name.
pub fn prog_load(
    prog_type: u32,
    name: &str,
    expected_attach_type: u32,
    insns: &[u64],
    btf: Option<(BorrowedFd<'_>, u32)>,
) -> io::Result<OwnedFd> {
    let cname = CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name contains a NUL byte"))?;
    let mut opts = sys::bpf_prog_load_opts {
        sz: size_of::<sys::bpf_prog_load_opts>() as _,
        expected_attach_type,
        ..Default::default()
    };
    let func = btf.map(|(_, type_id)| sys::bpf_func_info {
        insn_off: 0,
        type_id,
    });
    if let (Some((fd, _)), Some(func)) = (btf, func.as_ref()) {
        opts.prog_btf_fd = fd.as_raw_fd() as u32;
        opts.func_info = (func as *const sys::bpf_func_info).cast();
        opts.func_info_cnt = 1;
        opts.func_info_rec_size = size_of::<sys::bpf_func_info>() as u32;
    }
    // SAFETY: insns is a slice of 8-byte bpf_insn encodings; every pointer outlives the call.
    owned(unsafe {
        sys::bpf_prog_load(
            prog_type,
            cname.as_ptr(),
            c"GPL".as_ptr(),
            insns.as_ptr().cast(),
            insns.len() as _,
            &mut opts,
        )
    })
}

/// Load a raw BTF blob.
pub fn btf_load(blob: &[u8]) -> io::Result<OwnedFd> {
    // SAFETY: blob outlives the call; null opts is allowed.
    owned(unsafe { sys::bpf_btf_load(blob.as_ptr().cast(), blob.len() as _, std::ptr::null_mut()) })
}

/// Pin any bpf object (program, map or link).
pub fn obj_pin(fd: BorrowedFd<'_>, path: &Path) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    // SAFETY: c is a valid NUL-terminated path.
    check(unsafe { sys::bpf_obj_pin(fd.as_raw_fd(), c.as_ptr()) })?;
    Ok(())
}

/// Attach a program the old way (no link): flags 0 (exclusive), ALLOW_OVERRIDE or ALLOW_MULTI.
pub fn prog_attach(
    target: Target<'_>,
    prog: BorrowedFd<'_>,
    attach_type: u32,
    flags: u32,
) -> io::Result<()> {
    let opts = sys::bpf_prog_attach_opts {
        sz: size_of::<sys::bpf_prog_attach_opts>() as _,
        flags,
        ..Default::default()
    };
    // SAFETY: opts lives across the call.
    check(unsafe { sys::bpf_prog_attach_opts(prog.as_raw_fd(), raw(target), attach_type, &opts) })?;
    Ok(())
}

/// Create a bpf_link.
pub fn link_create(
    target: Target<'_>,
    prog: BorrowedFd<'_>,
    attach_type: u32,
) -> io::Result<OwnedFd> {
    let opts = sys::bpf_link_create_opts {
        sz: size_of::<sys::bpf_link_create_opts>() as _,
        ..Default::default()
    };
    // SAFETY: opts lives across the call.
    owned(unsafe { sys::bpf_link_create(prog.as_raw_fd(), raw(target), attach_type, &opts) })
}

/// Attach a program to a raw tracepoint: a link of a type the guard leaves to others.
pub fn raw_tracepoint_open(tracepoint: &str, prog: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let c = CString::new(tracepoint)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name contains a NUL byte"))?;
    // SAFETY: c is a valid NUL-terminated name.
    owned(unsafe { sys::bpf_raw_tracepoint_open(c.as_ptr(), prog.as_raw_fd()) })
}

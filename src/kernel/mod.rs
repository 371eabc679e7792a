//! The thin, typed layer over the kernel: bpf(2) through libbpf-rs, rtnetlink through the
//! rust-netlink crates, and the few filesystem calls (statfs, flock, fdinfo) the guard needs.
//! Nothing outside this module tree calls `unsafe` code or libc.

pub mod bpf;
pub mod btf;
pub mod fs;
pub mod netlink;
pub mod rcu;
pub mod task_files;
pub mod tree;

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

/// True for the errors that mean "the object is already gone": the kernel answers ENOENT for
/// programs, links, pins, filters and cgroups that vanished, and ENODEV for devices.
pub fn is_gone(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENODEV))
}

/// Turn a libbpf return value (negative errno on failure) into an `io::Result`.
fn check(ret: i32) -> io::Result<i32> {
    if ret < 0 {
        Err(io::Error::from_raw_os_error(-ret))
    } else {
        Ok(ret)
    }
}

/// Own the fd a libbpf call returned (or its negative errno).
fn owned(ret: i32) -> io::Result<OwnedFd> {
    let fd = check(ret)?;
    // SAFETY: libbpf returned a fresh fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// libbpf-rs keeps the errno inside its error and shows only a kind. The kinds that come from
/// one errno alone get it back, as callers test them (ENOENT: gone; EAGAIN: busy); the others
/// keep the error's text, which names the errno.
fn from_rs(err: libbpf_rs::Error) -> io::Error {
    use libbpf_rs::ErrorKind as K;
    match err.kind() {
        K::NotFound => io::Error::from_raw_os_error(libc::ENOENT),
        K::WouldBlock => io::Error::from_raw_os_error(libc::EAGAIN),
        K::TooBig => io::Error::from_raw_os_error(libc::E2BIG),
        K::PermissionDenied => io::Error::new(io::ErrorKind::PermissionDenied, format!("{err:#}")),
        K::Unsupported => io::Error::new(io::ErrorKind::Unsupported, format!("{err:#}")),
        K::InvalidInput => io::Error::new(io::ErrorKind::InvalidInput, format!("{err:#}")),
        _ => io::Error::other(format!("{err:#}")),
    }
}

//! The thin, typed layer over the kernel: bpf(2) through libbpf-sys, rtnetlink through the
//! rust-netlink crates, and the few filesystem calls (statfs, flock, fdinfo) the guard needs.
//! Nothing outside this module tree calls `unsafe` code or libc.

pub mod bpf;
pub mod fs;
pub mod netlink;
pub mod rcu;
pub mod task_files;
pub mod tree;

use std::io;

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

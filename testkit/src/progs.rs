//! Programs and maps built from raw instructions, with the exact kernel names Calico and other
//! tools use: no clang, no ELF. Optionally with BTF, so the program carries its full name.
//! They only return; they never touch a packet or a socket.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsFd, OwnedFd};

use libbpf_rs::libbpf_sys as sys;
use libbpf_rs::{MapHandle, MapType};

use crate::bpf;

pub use calico_bpf_guard::kernel::bpf::{
    PROG_TYPE_CGROUP_SOCK_ADDR as SOCK_ADDR, PROG_TYPE_SCHED_CLS as SCHED_CLS, PROG_TYPE_XDP as XDP,
};
pub const CGROUP_SKB: u32 = sys::BPF_PROG_TYPE_CGROUP_SKB;
pub const CGROUP_DEVICE: u32 = sys::BPF_PROG_TYPE_CGROUP_DEVICE;
pub const SOCK_OPS: u32 = sys::BPF_PROG_TYPE_SOCK_OPS;
pub const RAW_TRACEPOINT: u32 = sys::BPF_PROG_TYPE_RAW_TRACEPOINT;

pub const ATTACH_INGRESS: u32 = sys::BPF_CGROUP_INET_INGRESS;
pub const ATTACH_EGRESS: u32 = sys::BPF_CGROUP_INET_EGRESS;
pub const ATTACH_DEVICE: u32 = sys::BPF_CGROUP_DEVICE;
pub const ATTACH_SOCK_OPS: u32 = sys::BPF_CGROUP_SOCK_OPS;
pub const ATTACH_XDP: u32 = sys::BPF_XDP;

/// `mov r0, imm; exit`.
fn return_imm(imm: i32) -> [u64; 2] {
    let mov64_k_r0 = 0xb7u64;
    let exit = 0x95u64;
    [mov64_k_r0 | (u64::from(imm as u32) << 32), exit]
}

/// The return value each program type accepts as "carry on".
fn verdict(prog_type: u32) -> i32 {
    match prog_type {
        XDP => 2,        // XDP_PASS
        SCHED_CLS => -1, // TC_ACT_UNSPEC: let the next filter run
        _ => 1,          // cgroup programs: allow
    }
}

/// A BTF blob with `int` and one global function `name` returning it; type id 3 is the FUNC.
pub fn btf_blob(name: &str) -> Vec<u8> {
    let mut strings = b"\0int\0".to_vec();
    let name_off = strings.len() as u32;
    strings.extend_from_slice(name.as_bytes());
    strings.push(0);

    let mut types: Vec<u32> = Vec::new();
    // [1] INT "int": size 4, signed, 32 bits.
    types.extend([1, 1 << 24, 4, (1 << 24) | 32]);
    // [2] FUNC_PROTO int (void).
    types.extend([0, 13 << 24, 1]);
    // [3] FUNC name, global linkage, type [2].
    types.extend([name_off, (12 << 24) | 1, 2]);
    let type_bytes: Vec<u8> = types.iter().flat_map(|t| t.to_le_bytes()).collect();

    let mut out = Vec::new();
    out.extend(0xeb9fu16.to_le_bytes());
    out.push(1); // version
    out.push(0); // flags
    out.extend(24u32.to_le_bytes()); // hdr_len
    out.extend(0u32.to_le_bytes()); // type_off
    out.extend((type_bytes.len() as u32).to_le_bytes());
    out.extend((type_bytes.len() as u32).to_le_bytes()); // str_off
    out.extend((strings.len() as u32).to_le_bytes());
    out.extend(type_bytes);
    out.extend(strings);
    out
}

/// Load a program named `name` (the kernel keeps 15 characters). With `btf`, the full name is
/// kept in BTF func_info as Calico's objects built with BTF do.
pub fn load(prog_type: u32, name: &str, expected_attach: u32, btf: bool) -> io::Result<OwnedFd> {
    let kernel_name: String = name.chars().take(15).collect();
    let insns = return_imm(verdict(prog_type));
    if btf {
        let blob = bpf::btf_load(&btf_blob(name))?;
        bpf::prog_load(
            prog_type,
            &kernel_name,
            expected_attach,
            &insns,
            Some((blob.as_fd(), 3)),
        )
    } else {
        bpf::prog_load(prog_type, &kernel_name, expected_attach, &insns, None)
    }
}

/// The expected attach type a cgroup program must be loaded with for `attach_type`.
pub fn load_for_hook(
    prog_type: u32,
    name: &str,
    attach_type: u32,
    btf: bool,
) -> io::Result<OwnedFd> {
    let expected = match prog_type {
        SOCK_ADDR => attach_type,
        XDP => ATTACH_XDP,
        _ => 0,
    };
    load(prog_type, name, expected, btf)
}

/// A small array map (Calico's and other tools' pinned maps).
pub fn map(name: &str) -> io::Result<MapHandle> {
    let opts = sys::bpf_map_create_opts {
        sz: size_of::<sys::bpf_map_create_opts>() as _,
        ..Default::default()
    };
    MapHandle::create(MapType::Array, Some(name), 4, 4, 1, &opts).map_err(io::Error::other)
}

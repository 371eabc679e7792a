//! bpf(2) for the guard: what it reads (ids, object info, queries) and what it removes
//! (detaches). libbpf-rs where it has a safe call; where it has none, libbpf-sys through
//! libbpf-rs's re-export, each such place saying what libbpf-rs lacks. The guard never loads,
//! attaches or pins: the fixtures that do live in testkit.

use std::ffi::{c_int, CString};
use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::OnceLock;

use libbpf_rs::btf::{BtfType, TypeId};
use libbpf_rs::libbpf_sys as sys;
use libbpf_rs::query::{LinkInfo as RsLinkInfo, LinkTypeInfo};
use libbpf_rs::{Btf, ErrorKind, MapHandle, PrintLevel, Program};
use serde::{Deserialize, Serialize};

use super::{check, from_rs, owned};

pub const PROG_TYPE_SCHED_CLS: u32 = sys::BPF_PROG_TYPE_SCHED_CLS;
pub const PROG_TYPE_XDP: u32 = sys::BPF_PROG_TYPE_XDP;
pub const PROG_TYPE_CGROUP_SOCK_ADDR: u32 = sys::BPF_PROG_TYPE_CGROUP_SOCK_ADDR;

pub const ATTACH_INET4_CONNECT: u32 = sys::BPF_CGROUP_INET4_CONNECT;
pub const ATTACH_INET6_CONNECT: u32 = sys::BPF_CGROUP_INET6_CONNECT;
pub const ATTACH_UDP4_SENDMSG: u32 = sys::BPF_CGROUP_UDP4_SENDMSG;
pub const ATTACH_UDP6_SENDMSG: u32 = sys::BPF_CGROUP_UDP6_SENDMSG;
pub const ATTACH_UDP4_RECVMSG: u32 = sys::BPF_CGROUP_UDP4_RECVMSG;
pub const ATTACH_UDP6_RECVMSG: u32 = sys::BPF_CGROUP_UDP6_RECVMSG;
pub const ATTACH_TCX_INGRESS: u32 = sys::BPF_TCX_INGRESS;
pub const ATTACH_TCX_EGRESS: u32 = sys::BPF_TCX_EGRESS;
pub const ATTACH_NETKIT_PRIMARY: u32 = sys::BPF_NETKIT_PRIMARY;
pub const ATTACH_NETKIT_PEER: u32 = sys::BPF_NETKIT_PEER;

pub const F_ALLOW_OVERRIDE: u32 = sys::BPF_F_ALLOW_OVERRIDE;
pub const F_ALLOW_MULTI: u32 = sys::BPF_F_ALLOW_MULTI;

pub const XDP_FLAGS_SKB_MODE: u32 = sys::XDP_FLAGS_SKB_MODE;
pub const XDP_FLAGS_DRV_MODE: u32 = sys::XDP_FLAGS_DRV_MODE;
pub const XDP_FLAGS_HW_MODE: u32 = sys::XDP_FLAGS_HW_MODE;

/// Which id space to iterate.
#[derive(Debug, Clone, Copy)]
pub enum IdSpace {
    Prog,
    Map,
    Link,
}

/// What a bpf fd refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjKind {
    Prog,
    Map,
    Link,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgInfo {
    pub id: u32,
    pub prog_type: u32,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapInfo {
    pub id: u32,
    pub name: String,
}

/// Where a link is attached, for the link types the guard cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LinkTarget {
    Cgroup { cgroup_id: u64, attach_type: u32 },
    Tcx { ifindex: u32, attach_type: u32 },
    Netkit { ifindex: u32, attach_type: u32 },
    Xdp { ifindex: u32 },
    Other { link_type: u32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkInfo {
    pub id: u32,
    pub prog_id: u32,
    pub target: LinkTarget,
}

/// One program in a query answer; `link_id` is 0 where the kernel does not report it (cgroups,
/// and every hook before 6.6), `attach_flags` 0 before 6.0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attached {
    pub prog_id: u32,
    pub link_id: u32,
    pub attach_flags: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Query {
    /// The slot's flags for cgroup hooks: 0 exclusive, ALLOW_OVERRIDE or ALLOW_MULTI.
    pub slot_flags: u32,
    pub progs: Vec<Attached>,
}

/// What a query, attach or detach targets: a cgroup (or other) fd, or an interface.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    Fd(BorrowedFd<'a>),
    Ifindex(u32),
}

impl Target<'_> {
    fn raw(&self) -> c_int {
        match self {
            Target::Fd(fd) => fd.as_raw_fd(),
            Target::Ifindex(i) => *i as c_int,
        }
    }
}

/// Every id in one id space. EPERM (no CAP_SYS_ADMIN) is an error, never an empty answer.
pub fn ids(space: IdSpace) -> io::Result<Vec<u32>> {
    // Raw: libbpf-rs's ProgInfoIter, MapInfoIter and LinkInfoIter end silently on any error,
    // so without CAP_SYS_ADMIN they would report a clean node.
    let next = match space {
        IdSpace::Prog => sys::bpf_prog_get_next_id,
        IdSpace::Map => sys::bpf_map_get_next_id,
        IdSpace::Link => sys::bpf_link_get_next_id,
    };
    let mut out = Vec::new();
    let mut id = 0u32;
    loop {
        let mut next_id = 0u32;
        // SAFETY: plain syscall wrapper writing one u32.
        let ret = unsafe { next(id, &mut next_id) };
        match check(ret) {
            Ok(_) => {
                out.push(next_id);
                id = next_id;
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(out),
            Err(e) => return Err(e),
        }
    }
}

/// An fd for an object id; ENOENT when it vanished meanwhile.
pub fn fd_by_id(space: IdSpace, id: u32) -> io::Result<OwnedFd> {
    match space {
        IdSpace::Prog => Program::fd_from_id(id).map_err(from_rs),
        // A second fd on the same open file: the interlock matches files, not fd numbers.
        IdSpace::Map => MapHandle::from_map_id(id)
            .map_err(from_rs)?
            .as_fd()
            .try_clone_to_owned(),
        // Raw: libbpf-rs opens a link only from a pin or by attaching, never by id.
        // SAFETY: plain syscall wrapper.
        IdSpace::Link => owned(unsafe { sys::bpf_link_get_fd_by_id(id) }),
    }
}

/// A program's id, type and kernel name.
pub fn prog_info(fd: BorrowedFd<'_>) -> io::Result<ProgInfo> {
    prog_info_btf(fd).map(|(info, _)| info)
}

/// As `prog_info`, and from the same call whether the program carries BTF function info, the
/// only kind of program `prog_btf_name` can name: a scan asks once, not again per program.
pub fn prog_info_btf(fd: BorrowedFd<'_>) -> io::Result<(ProgInfo, bool)> {
    let info = raw_prog_info(fd)?;
    let prog = ProgInfo {
        id: info.id,
        prog_type: info.type_,
        name: name16(&info.name),
    };
    Ok((prog, info.btf_id != 0 && info.nr_func_info != 0))
}

/// Raw: libbpf-rs builds a ProgramInfo only while iterating ids and a ProgramHandle only from
/// an id or a path; a pin is opened once, through its directory's fd, and read from that fd.
fn raw_prog_info(fd: BorrowedFd<'_>) -> io::Result<sys::bpf_prog_info> {
    let mut info = blank_prog_info();
    prog_info_into(fd, &mut info)?;
    Ok(info)
}

/// All zero, padding included (`Default` does not promise padding): a kernel older than the
/// struct refuses any non-zero byte past the fields it knows.
fn blank_prog_info() -> sys::bpf_prog_info {
    // SAFETY: bpf_prog_info is plain old data, for which all-zero is valid.
    unsafe { zeroed() }
}

fn prog_info_into(fd: BorrowedFd<'_>, info: &mut sys::bpf_prog_info) -> io::Result<()> {
    let mut len = size_of::<sys::bpf_prog_info>() as u32;
    // SAFETY: `info` is a bpf_prog_info of `len` bytes; any buffer it points to outlives the call.
    check(unsafe {
        sys::bpf_obj_get_info_by_fd(
            fd.as_raw_fd(),
            (info as *mut sys::bpf_prog_info).cast(),
            &mut len,
        )
    })?;
    Ok(())
}

fn name16(raw: &[std::ffi::c_char; 16]) -> String {
    let bytes: Vec<u8> = raw
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| c.to_ne_bytes()[0])
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

pub fn map_info(fd: BorrowedFd<'_>) -> io::Result<MapInfo> {
    let info = libbpf_rs::MapInfo::new(fd).map_err(from_rs)?;
    Ok(MapInfo {
        id: info.info.id,
        name: name16(&info.info.name),
    })
}

/// A link's id, program and target. A link of a type the guard does not care about, or whose
/// details libbpf-rs cannot read (it reads some types' names with a second call that can
/// fail, and knows no type newer than itself), is `Other`: a foreign link never ends a scan.
pub fn link_info(fd: BorrowedFd<'_>) -> io::Result<LinkInfo> {
    let info = match RsLinkInfo::from_fd(fd) {
        Ok(info) => info,
        // InvalidData is libbpf-rs's "failed to parse link info"; no errno maps to it.
        Err(e) if e.kind() == ErrorKind::InvalidData => return other_link(fd),
        Err(e) => return Err(from_rs(e)),
    };
    let target = match info.info {
        LinkTypeInfo::Cgroup(c) => LinkTarget::Cgroup {
            cgroup_id: c.cgroup_id,
            attach_type: c.attach_type as u32,
        },
        LinkTypeInfo::Tcx(t) => LinkTarget::Tcx {
            ifindex: t.ifindex,
            attach_type: t.attach_type as u32,
        },
        LinkTypeInfo::Netkit(n) => LinkTarget::Netkit {
            ifindex: n.ifindex,
            attach_type: n.attach_type as u32,
        },
        LinkTypeInfo::Xdp(x) => LinkTarget::Xdp { ifindex: x.ifindex },
        _ => return other_link(fd),
    };
    Ok(LinkInfo {
        id: info.id,
        prog_id: info.prog_id,
        target,
    })
}

/// The head of `struct bpf_link_info`, which every kernel with links fills in whatever the type.
#[repr(C)]
#[derive(Default)]
struct LinkHead {
    link_type: u32,
    id: u32,
    prog_id: u32,
}

/// Raw: libbpf-rs gives neither the type number of a link it does not know nor the id and
/// program of one whose details it could not read; the kernel copies back only the head asked.
fn other_link(fd: BorrowedFd<'_>) -> io::Result<LinkInfo> {
    let mut head = LinkHead::default();
    let mut len = size_of::<LinkHead>() as u32;
    // SAFETY: `head` is `len` bytes of plain data, a prefix of bpf_link_info.
    check(unsafe {
        sys::bpf_obj_get_info_by_fd(
            fd.as_raw_fd(),
            (&mut head as *mut LinkHead).cast(),
            &mut len,
        )
    })?;
    Ok(LinkInfo {
        id: head.id,
        prog_id: head.prog_id,
        target: LinkTarget::Other {
            link_type: head.link_type,
        },
    })
}

/// The program's full function name from its BTF, when it was loaded with BTF. Kernel names are
/// cut to 15 characters, so this is what tells `calico_connect_v4` from `calico_connect_v6`.
pub fn prog_btf_name(fd: BorrowedFd<'_>) -> io::Result<Option<String>> {
    let info = raw_prog_info(fd)?;
    if info.btf_id == 0 || info.nr_func_info == 0 {
        return Ok(None);
    }
    // Raw as prog_info is; the first func_info record names the program's main function.
    let mut func = sys::bpf_func_info::default();
    let mut want = blank_prog_info();
    want.nr_func_info = 1;
    want.func_info_rec_size = size_of::<sys::bpf_func_info>() as u32;
    want.func_info = (&mut func as *mut sys::bpf_func_info) as u64;
    prog_info_into(fd, &mut want)?;
    let Ok(btf) = Btf::from_prog_id(info.id) else {
        return Ok(None);
    };
    let name = btf
        .type_by_id::<BtfType<'_>>(TypeId::from(func.type_id))
        .and_then(|t| t.name().map(|n| n.to_string_lossy().into_owned()));
    Ok(name)
}

fn cpath(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// Open a pinned object, whatever its kind.
pub fn obj_get(path: &Path) -> io::Result<OwnedFd> {
    let c = cpath(path)?;
    // Raw: libbpf-rs opens a pin only as the kind it expects (a program, a map, a link object);
    // the guard learns the kind from the fd it opened, so it opens each pin once.
    // SAFETY: c is a valid NUL-terminated path.
    owned(unsafe { sys::bpf_obj_get(c.as_ptr()) })
}

/// What kind of bpf object an fd holds: the kernel names its anon inodes `bpf-prog`, `bpf-map`
/// and, depending on how the fd was made, `bpf-link` or `bpf_link` (bpftool tests the same).
pub fn fd_kind(fd: BorrowedFd<'_>) -> io::Result<ObjKind> {
    let target = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
    Ok(match target.as_os_str().as_bytes() {
        b"anon_inode:bpf-prog" => ObjKind::Prog,
        b"anon_inode:bpf-map" => ObjKind::Map,
        b"anon_inode:bpf-link" | b"anon_inode:bpf_link" => ObjKind::Link,
        _ => ObjKind::Other,
    })
}

/// What this kernel's bpf(2) knows, learned once per process. A kernel answers EINVAL to a
/// query field or an attach type newer than itself (`BPF_PROG_QUERY`'s per-program flags came
/// in 6.0, its link ids and tcx in 6.6, netkit in 6.7), so asking for everything would fail
/// every query on 5.10 and 6.1. Each answer is probed, not read off the version: distribution
/// kernels (RHEL's) carry backports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Features {
    /// `BPF_PROG_QUERY` fills in each program's attach flags.
    pub query_prog_flags: bool,
    /// `BPF_PROG_QUERY` fills in link ids (tcx and netkit attachments made through a link).
    pub query_link_ids: bool,
    /// `BPF_LINK_GET_NEXT_ID` (5.8): links can be listed.
    pub link_ids: bool,
    /// The cgroup recvmsg4/recvmsg6 hooks (5.2; older RHEL kernels may lack them).
    pub udp_recvmsg: bool,
    /// tcx hooks (6.6).
    pub tcx: bool,
    /// netkit hooks (6.7, and only with CONFIG_NETKIT).
    pub netkit: bool,
}

static FEATURES: OnceLock<Features> = OnceLock::new();

/// This kernel's features; the first call probes (a handful of syscalls, microseconds).
pub fn features() -> io::Result<Features> {
    if let Some(f) = FEATURES.get() {
        return Ok(*f);
    }
    let probed = probe()?;
    Ok(*FEATURES.get_or_init(|| probed))
}

/// Which optional `BPF_PROG_QUERY` fields to ask for.
#[derive(Debug, Clone, Copy)]
struct Fields {
    prog_flags: bool,
    link_ids: bool,
}

const NO_FIELDS: Fields = Fields {
    prog_flags: false,
    link_ids: false,
};

fn probe() -> io::Result<Features> {
    // The kernel checks the fields it was given before it looks the target up: on fd -1 a
    // query it accepts fails with EBADF, one with a field it does not know with EINVAL.
    let no_fd = -1;
    let flags = Fields {
        prog_flags: true,
        link_ids: false,
    };
    let query_prog_flags = knows(
        "per-program query flags",
        query_raw(no_fd, ATTACH_INET4_CONNECT, flags, 1),
        &[libc::EBADF],
    )?;
    let query_link_ids = query_prog_flags
        && knows(
            "query link ids",
            query_raw(
                no_fd,
                ATTACH_INET4_CONNECT,
                Fields {
                    prog_flags: true,
                    link_ids: true,
                },
                1,
            ),
            &[libc::EBADF],
        )?;
    let udp_recvmsg = knows(
        "the recvmsg cgroup hooks",
        query_raw(no_fd, ATTACH_UDP4_RECVMSG, NO_FIELDS, 1),
        &[libc::EBADF],
    )?;
    // An attach type the kernel does not know is EINVAL; one it knows, asked about interface 0
    // (which never exists), is ENODEV.
    let tcx = knows(
        "tcx",
        query_raw(0, ATTACH_TCX_INGRESS, NO_FIELDS, 1),
        &[libc::ENODEV],
    )?;
    let netkit = knows(
        "netkit",
        query_raw(0, ATTACH_NETKIT_PRIMARY, NO_FIELDS, 1),
        &[libc::ENODEV, libc::ENXIO],
    )?;
    let mut next = 0u32;
    // SAFETY: plain syscall wrapper writing one u32.
    let ret = unsafe { sys::bpf_link_get_next_id(0, &mut next) };
    let link_ids = knows("link ids", check(ret), &[libc::ENOENT])?;
    Ok(Features {
        query_prog_flags,
        query_link_ids,
        link_ids,
        udp_recvmsg,
        tcx,
        netkit,
    })
}

/// A probe's answer: success or one of `yes` means the kernel knows the feature, EINVAL that it
/// does not; anything else (EPERM without CAP_NET_ADMIN, say) is an error, never a "no".
fn knows<T>(what: &str, ret: io::Result<T>, yes: &[i32]) -> io::Result<bool> {
    match ret {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error().is_some_and(|n| yes.contains(&n)) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(false),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("probing the kernel for {what}: {e}"),
        )),
    }
}

/// Programs attached at one hook, asking for the optional fields this kernel knows. Cgroup
/// hooks hold at most 64 programs; tcx and netkit more, so the buffer grows when the kernel
/// says it was too small (ENOSPC).
///
/// Raw: libbpf-rs has no BPF_PROG_QUERY, and it must ask only for the fields `features()` found.
pub fn query(target: Target<'_>, attach_type: u32) -> io::Result<Query> {
    let f = features()?;
    let fields = Fields {
        prog_flags: f.query_prog_flags,
        link_ids: f.query_link_ids,
    };
    let mut cap = 64usize;
    loop {
        match query_raw(target.raw(), attach_type, fields, cap) {
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => cap *= 4,
            other => return other,
        }
    }
}

fn query_raw(target: c_int, attach_type: u32, fields: Fields, cap: usize) -> io::Result<Query> {
    // Cgroup hooks hold at most 64 programs, and a scan asks a thousand cgroups six times: the
    // usual buffers live on the stack, and only a larger question allocates.
    const ON_STACK: usize = 64;
    let (mut a, mut b, mut c) = ([0u32; ON_STACK], [0u32; ON_STACK], [0u32; ON_STACK]);
    let mut heap = Vec::new();
    let (prog_ids, prog_flags, link_ids): (&mut [u32], &mut [u32], &mut [u32]) = if cap <= ON_STACK
    {
        (&mut a[..cap], &mut b[..cap], &mut c[..cap])
    } else {
        heap.resize(cap * 3, 0u32);
        let (ids, rest) = heap.split_at_mut(cap);
        let (flags, links) = rest.split_at_mut(cap);
        (ids, flags, links)
    };
    // A null buffer pointer leaves that field zero in the syscall, which every kernel accepts.
    let mut opts = sys::bpf_prog_query_opts {
        sz: size_of::<sys::bpf_prog_query_opts>() as _,
        prog_ids: prog_ids.as_mut_ptr(),
        ..Default::default()
    };
    if fields.prog_flags {
        opts.prog_attach_flags = prog_flags.as_mut_ptr();
    }
    if fields.link_ids {
        opts.link_ids = link_ids.as_mut_ptr();
    }
    opts.__bindgen_anon_1.count = cap as u32;
    // SAFETY: each buffer given holds `cap` entries and outlives the call.
    check(unsafe { sys::bpf_prog_query_opts(target, attach_type, &mut opts) })?;
    // SAFETY: the kernel wrote the count member.
    let n = (unsafe { opts.__bindgen_anon_1.count } as usize).min(cap);
    // A field not asked for stays zero, as the kernel would have left it.
    let progs = (0..n)
        .map(|i| Attached {
            prog_id: prog_ids[i],
            link_id: if fields.link_ids { link_ids[i] } else { 0 },
            attach_flags: if fields.prog_flags { prog_flags[i] } else { 0 },
        })
        .collect();
    Ok(Query {
        slot_flags: opts.attach_flags,
        progs,
    })
}

/// Detach one program from a hook, identified by its own fd.
pub fn prog_detach(target: Target<'_>, prog: BorrowedFd<'_>, attach_type: u32) -> io::Result<()> {
    // Raw: libbpf-rs detaches only the links it made itself, never a program by its fd.
    let opts = sys::bpf_prog_detach_opts {
        sz: size_of::<sys::bpf_prog_detach_opts>() as _,
        ..Default::default()
    };
    // SAFETY: opts lives across the call.
    check(unsafe {
        sys::bpf_prog_detach_opts(prog.as_raw_fd(), target.raw(), attach_type, &opts)
    })?;
    Ok(())
}

pub fn link_detach(link: BorrowedFd<'_>) -> io::Result<()> {
    // Raw: libbpf-rs's Link::detach needs a Link object, which it makes only from a pin or an
    // attach, never from an fd or an id.
    // SAFETY: plain syscall wrapper.
    check(unsafe { sys::bpf_link_detach(link.as_raw_fd()) })?;
    Ok(())
}

/// Detach XDP from one interface in one mode, only if `expected` is still the program there
/// (XDP_FLAGS_REPLACE): a modeless detach silently does nothing on veth.
pub fn xdp_detach(ifindex: u32, mode_flags: u32, expected: BorrowedFd<'_>) -> io::Result<()> {
    // Raw: libbpf-rs's Xdp::detach sends no expected program, so it would detach whatever
    // replaced Calico's since the scan.
    let opts = sys::bpf_xdp_attach_opts {
        sz: size_of::<sys::bpf_xdp_attach_opts>() as _,
        old_prog_fd: expected.as_raw_fd(),
        ..Default::default()
    };
    // SAFETY: opts lives across the call.
    check(unsafe { sys::bpf_xdp_detach(ifindex as c_int, mode_flags, &opts) })?;
    Ok(())
}

/// libbpf's own diagnostics go to one sink, so they land in the guard's log rather than on a
/// bare stderr. Levels: 0 warn, 1 info, 2 debug (libbpf_print_level).
static PRINT_SINK: OnceLock<fn(u32, &str)> = OnceLock::new();

fn forward_print(level: PrintLevel, text: String) {
    if let Some(sink) = PRINT_SINK.get() {
        sink(level as u32, text.trim_end());
    }
}

pub fn route_libbpf_prints(sink: fn(u32, &str)) {
    if PRINT_SINK.set(sink).is_ok() {
        libbpf_rs::set_print(Some((PrintLevel::Debug, forward_print)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_answers_yes_no_or_error() {
        let err = |n| Err::<(), _>(io::Error::from_raw_os_error(n));
        let cases: [(io::Result<()>, Option<bool>); 5] = [
            (Ok(()), Some(true)),
            (err(libc::EBADF), Some(true)),
            (err(libc::EINVAL), Some(false)),
            // Not allowed to ask is not "no": the caller must hear it.
            (err(libc::EPERM), None),
            (err(libc::ENODEV), None),
        ];
        for (ret, want) in cases {
            let got = knows("x", ret, &[libc::EBADF]);
            assert_eq!(got.as_ref().ok().copied(), want, "{got:?}");
        }
    }
}

//! rtnetlink through netlink-packet-route on a plain blocking socket: link, qdisc and tc filter
//! dumps, and the deletes the sweep needs. libbpf cannot list tc filters, hence this.
//! Interface names are bytes (any byte but NUL, `/`, `:` and white space, UTF-8 or not), and so
//! they stay here.

use std::ffi::OsString;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStringExt;
use std::time::Duration;

use netlink_packet_core::{
    parse_string, parse_u32, parse_u8, DefaultNla, NetlinkBuffer, NetlinkDeserializable,
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NlasIterator, NLA_HEADER_SIZE, NLMSG_DONE,
    NLMSG_ERROR, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::link::{LinkAttribute, LinkExtentMask, LinkMessage};
use netlink_packet_route::tc::{TcAttribute, TcHandle, TcMessage};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use serde::{Deserialize, Serialize};

/// The clsact qdisc's two filter parents.
pub const PARENT_INGRESS: u32 = 0xFFFF_FFF2;
pub const PARENT_EGRESS: u32 = 0xFFFF_FFF3;

/// XDP attach modes as the kernel reports them per program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    Driver,
    Generic,
    Offload,
}

impl XdpMode {
    /// The mode flag a detach must carry: a modeless detach silently does nothing on veth.
    pub fn flags(self) -> u32 {
        match self {
            XdpMode::Driver => super::bpf::XDP_FLAGS_DRV_MODE,
            XdpMode::Generic => super::bpf::XDP_FLAGS_SKB_MODE,
            XdpMode::Offload => super::bpf::XDP_FLAGS_HW_MODE,
        }
    }
}

impl std::fmt::Display for XdpMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            XdpMode::Driver => "driver",
            XdpMode::Generic => "generic",
            XdpMode::Offload => "offload",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetIf {
    pub ifindex: u32,
    #[serde(with = "crate::names::shown")]
    pub name: OsString,
    pub kind: Option<String>,
    pub xdp: Vec<(XdpMode, u32)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qdisc {
    pub ifindex: u32,
    pub kind: String,
}

/// One tc filter. `info` is the kernel's tcm_info (priority in the high 16 bits, protocol in
/// network order in the low 16): a delete must send it back unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    pub ifindex: u32,
    pub parent: u32,
    pub handle: u32,
    pub info: u32,
    pub chain: u32,
    pub kind: String,
    pub prog_id: Option<u32>,
}

impl Filter {
    pub fn priority(&self) -> u16 {
        (self.info >> 16) as u16
    }
    pub fn protocol(&self) -> u16 {
        u16::from_be((self.info & 0xffff) as u16)
    }
}

pub struct Rtnl {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

/// How long the guard waits for any one answer from the kernel. rtnetlink answers from memory
/// in microseconds; a wait this long means something holds the kernel's locks, and a guard
/// that waited forever would hold kubelet's start with it.
pub const RECEIVE_TIMEOUT: Duration = Duration::from_secs(5);

impl Rtnl {
    pub fn open() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        set_receive_timeout(&socket, RECEIVE_TIMEOUT)?;
        Ok(Rtnl {
            socket,
            seq: 0,
            buf: vec![0; 64 * 1024],
        })
    }

    /// Serialize `msg` as the next request (a new sequence number) onto `out`.
    fn push(&mut self, out: &mut Vec<u8>, msg: RouteNetlinkMessage, flags: u16) {
        self.seq = self.seq.wrapping_add(1);
        let mut packet = NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::from(msg));
        packet.header.flags = NLM_F_REQUEST | flags;
        packet.header.sequence_number = self.seq;
        packet.finalize();
        // Messages in one datagram start at 4-byte boundaries.
        let at = out.len();
        out.resize(at + ((packet.buffer_len() + 3) & !3), 0);
        packet.serialize(&mut out[at..]);
    }

    /// One datagram from the kernel; a timeout is an error that says what went unanswered.
    fn recv(&mut self, asked: &str) -> io::Result<usize> {
        match self.socket.recv(&mut &mut self.buf[..], 0) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the kernel did not answer {asked} within {} s",
                    RECEIVE_TIMEOUT.as_secs()
                ),
            )),
            r => r,
        }
    }

    /// Send one request and collect the answer: every message of a dump, or the ack.
    pub fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        let asked = format!("rtnetlink request type {}", msg.message_type());
        let mut replies = Vec::new();
        self.exchange(msg, flags, &asked, |message_type, payload| {
            let mut header = NetlinkHeader::default();
            header.message_type = message_type;
            replies.push(RouteNetlinkMessage::deserialize(&header, payload).map_err(invalid)?);
            Ok(())
        })?;
        Ok(replies)
    }

    /// Send one request and hand each reply's type and payload to `each` as it arrives: every
    /// message of a dump, or the one answer (or ack) of a plain request. The dumps parse only
    /// the attributes the guard reads, straight from the receive buffer: a node with a thousand
    /// interfaces answers with megabytes of attributes (statistics, address families, driver
    /// data), and building the crate's full message tree for them cost more time and memory
    /// than the kernel's own work. `asked` names the request in errors.
    fn exchange(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        asked: &str,
        mut each: impl FnMut(u16, &[u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut out = Vec::new();
        self.push(&mut out, msg, flags);
        self.socket.send(&out, 0)?;
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        loop {
            let n = self.recv(asked)?;
            let mut off = 0;
            while off < n {
                let reply = NetlinkBuffer::new_checked(&self.buf[off..n]).map_err(invalid)?;
                let len = reply.length() as usize;
                // Answers to an earlier request that timed out may still arrive: skip them.
                if reply.sequence_number() == self.seq {
                    match reply.message_type() {
                        NLMSG_DONE => return Ok(()),
                        NLMSG_ERROR => {
                            // struct nlmsgerr: the (negative) errno first; 0 is an ack.
                            return match u32_at(reply.payload(), 0)? as i32 {
                                0 => Ok(()),
                                code => Err(io::Error::from_raw_os_error(-code)),
                            };
                        }
                        t if t >= NLMSG_MIN_TYPE => {
                            each(t, reply.payload())?;
                            if !dump {
                                return Ok(());
                            }
                        }
                        _ => {}
                    }
                }
                if len == 0 {
                    break;
                }
                off += (len + 3) & !3;
            }
        }
    }

    /// Every interface with its kind and XDP programs, in one dump.
    pub fn links(&mut self) -> io::Result<Vec<NetIf>> {
        let mut msg = LinkMessage::default();
        // Statistics are most of each answer and nothing the guard reads.
        msg.attributes
            .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
        let mut out = Vec::new();
        self.exchange(
            RouteNetlinkMessage::GetLink(msg),
            NLM_F_DUMP,
            "a dump of the interfaces",
            |t, payload| {
                if t == RTM_NEWLINK {
                    out.push(net_if(payload)?);
                }
                Ok(())
            },
        )?;
        Ok(out)
    }

    /// One interface by its exact name (bytes, UTF-8 or not); None when there is none.
    pub fn link_by_name(&mut self, name: impl AsRef<[u8]>) -> io::Result<Option<NetIf>> {
        let name = name.as_ref();
        let mut msg = LinkMessage::default();
        // The crate spells IFLA_IFNAME as a String; the kernel takes any bytes, NUL-ended.
        let mut value = name.to_vec();
        value.push(0);
        msg.attributes
            .push(LinkAttribute::Other(DefaultNla::new(IFLA_IFNAME, value)));
        let asked = format!("a request for interface {}", crate::names::escape(name));
        let mut found = None;
        match self.exchange(
            RouteNetlinkMessage::GetLink(msg),
            0,
            &asked,
            |t, payload| {
                if t == RTM_NEWLINK {
                    found = Some(net_if(payload)?);
                }
                Ok(())
            },
        ) {
            Ok(()) => Ok(found),
            Err(e) if super::is_gone(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every qdisc of every interface, in one dump.
    pub fn qdiscs(&mut self) -> io::Result<Vec<Qdisc>> {
        let mut out = Vec::new();
        self.exchange(
            RouteNetlinkMessage::GetQueueDiscipline(TcMessage::default()),
            NLM_F_DUMP,
            "a dump of the qdiscs",
            |t, payload| {
                if t == RTM_NEWQDISC {
                    let tc = tc_message(payload)?;
                    out.push(Qdisc {
                        ifindex: tc.ifindex,
                        kind: tc.kind.unwrap_or_default(),
                    });
                }
                Ok(())
            },
        )?;
        Ok(out)
    }

    /// The filters under one parent of one interface; the kernel dumps filters per interface.
    /// An interface that went away has none; any other error is the caller's to report, never
    /// an empty answer.
    pub fn filters(&mut self, ifindex: u32, parent: u32) -> io::Result<Vec<Filter>> {
        let mut msg = TcMessage::default();
        msg.header.index = ifindex as i32;
        msg.header.parent = TcHandle::from(parent);
        let mut out = Vec::new();
        let asked = format!("a dump of the tc filters of interface {ifindex}");
        let dumped = self.exchange(
            RouteNetlinkMessage::GetTrafficFilter(msg),
            NLM_F_DUMP,
            &asked,
            |t, payload| {
                if t == RTM_NEWTFILTER {
                    let f = filter(payload)?;
                    // The dump also lists each filter chain's head (no kind, handle 0): not a filter.
                    if !f.kind.is_empty() {
                        out.push(f);
                    }
                }
                Ok(())
            },
        );
        match dumped {
            Ok(()) => Ok(out),
            Err(e) if super::is_gone(&e) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// Read several filters back, each by its exact place (interface, parent, chain, priority,
    /// protocol, handle), with one datagram: one answer per filter, in order, what is there now.
    /// At most `FILTER_BATCH`.
    pub fn get_filters(&mut self, filters: &[&Filter]) -> Vec<io::Result<Filter>> {
        let msgs = filters.iter().map(|f| get_filter_msg(f)).collect();
        let asked = format!("a read-back of {} tc filter(s)", filters.len());
        self.filter_batch(msgs, &asked)
            .into_iter()
            .map(|r| r?.ok_or_else(|| invalid("no filter in the kernel's answer")))
            .collect()
    }

    /// Delete several filters with one datagram: one result per filter, in order. At most
    /// `FILTER_BATCH`.
    pub fn del_filters(&mut self, filters: &[&Filter]) -> Vec<io::Result<()>> {
        let msgs = filters.iter().map(|f| del_filter_msg(f)).collect();
        let asked = format!("the deletion of {} tc filter(s)", filters.len());
        self.filter_batch(msgs, &asked)
            .into_iter()
            .map(|r| r.map(drop))
            .collect()
    }

    /// Delete exactly one filter, by its handle, priority, protocol and chain.
    pub fn del_filter(&mut self, f: &Filter) -> io::Result<()> {
        self.del_filters(&[f])
            .pop()
            .unwrap_or_else(|| Err(invalid("no answer for the filter")))
    }

    /// Send several tc filter requests in one datagram and collect one answer per request, in
    /// order: the filter the kernel answered with (a get), nothing (a delete), or the error.
    /// Only the last request asks for an ack: the kernel handles the requests of a datagram in
    /// order before the send returns and answers each get and each failed request before that
    /// ack, so whatever arrives before it is the complete answer.
    fn filter_batch(
        &mut self,
        msgs: Vec<RouteNetlinkMessage>,
        asked: &str,
    ) -> Vec<io::Result<Option<Filter>>> {
        assert!(msgs.len() <= FILTER_BATCH, "at most FILTER_BATCH filters");
        let count = msgs.len();
        let Some(last) = count.checked_sub(1) else {
            return Vec::new();
        };
        let all_failed = |e: &io::Error| (0..count).map(|_| Err(copy_err(e))).collect();
        let first_seq = self.seq.wrapping_add(1);
        let mut out = Vec::new();
        for (i, msg) in msgs.into_iter().enumerate() {
            self.push(&mut out, msg, if i == last { NLM_F_ACK } else { 0 });
        }
        if let Err(e) = self.socket.send(&out, 0) {
            return all_failed(&e);
        }
        let mut results: Vec<io::Result<Option<Filter>>> = (0..count).map(|_| Ok(None)).collect();
        let last_seq = self.seq;
        loop {
            let n = match self.recv(asked) {
                Ok(n) => n,
                // An answer may be lost: none of the results can be trusted then.
                Err(e) => return all_failed(&e),
            };
            let mut off = 0;
            let mut done = false;
            while off < n {
                let reply = match NetlinkBuffer::new_checked(&self.buf[off..n]) {
                    Ok(r) => r,
                    Err(e) => return all_failed(&invalid(e)),
                };
                let len = reply.length() as usize;
                let i = reply.sequence_number().wrapping_sub(first_seq) as usize;
                if i <= last {
                    match reply.message_type() {
                        NLMSG_ERROR => {
                            match u32_at(reply.payload(), 0) {
                                Ok(0) => {}
                                Ok(code) => {
                                    results[i] = Err(io::Error::from_raw_os_error(-(code as i32)))
                                }
                                Err(e) => results[i] = Err(e),
                            }
                            done |= reply.sequence_number() == last_seq;
                        }
                        RTM_NEWTFILTER => results[i] = filter(reply.payload()).map(Some),
                        _ => {}
                    }
                }
                if len == 0 {
                    break;
                }
                off += (len + 3) & !3;
            }
            if done {
                return results;
            }
        }
    }

    /// Delete one interface (for a veth, its peer goes with it).
    pub fn del_link(&mut self, ifindex: u32) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = ifindex;
        let asked = format!("the deletion of interface {ifindex}");
        self.exchange(
            RouteNetlinkMessage::DelLink(msg),
            NLM_F_ACK,
            &asked,
            |_, _| Ok(()),
        )
    }
}

/// SO_RCVTIMEO: a receive that waits longer fails with EAGAIN.
fn set_receive_timeout(socket: &Socket, timeout: Duration) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: libc::suseconds_t::from(timeout.subsec_micros() as i32),
    };
    // SAFETY: the fd is the socket's own, open for the call; `tv` is a valid timeval whose
    // size is passed with it, and the kernel copies it before returning.
    let ret = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// How many filter requests share one datagram. The kernel answers each read-back and each
/// failed delete, each answer a small skb charged about 1 KiB against the socket's receive
/// buffer (208 KiB by default): at 64, even a batch answered whole cannot overflow it and lose
/// an answer.
pub const FILTER_BATCH: usize = 64;

/// The kernel finds a filter by interface, parent, chain, priority and protocol (tcm_info) and
/// then handle. No kind: a filter of another kind in that place is answered too, and is not
/// the one planned.
fn get_filter_msg(f: &Filter) -> RouteNetlinkMessage {
    let mut msg = TcMessage::default();
    msg.header.index = f.ifindex as i32;
    msg.header.parent = TcHandle::from(f.parent);
    msg.header.handle = TcHandle::from(f.handle);
    msg.header.info = f.info;
    if f.chain != 0 {
        msg.attributes.push(TcAttribute::Chain(f.chain));
    }
    RouteNetlinkMessage::GetTrafficFilter(msg)
}

fn del_filter_msg(f: &Filter) -> RouteNetlinkMessage {
    let mut msg = TcMessage::default();
    msg.header.index = f.ifindex as i32;
    msg.header.parent = TcHandle::from(f.parent);
    msg.header.handle = TcHandle::from(f.handle);
    msg.header.info = f.info;
    msg.attributes.push(TcAttribute::Kind(f.kind.clone()));
    if f.chain != 0 {
        msg.attributes.push(TcAttribute::Chain(f.chain));
    }
    RouteNetlinkMessage::DelTrafficFilter(msg)
}

/// io::Error is not Clone; an errno is all the guard reports of it.
pub fn copy_err(e: &io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(e.kind(), e.to_string()),
    }
}

/// Message types below this are netlink's own (noop, error, done, overrun).
const NLMSG_MIN_TYPE: u16 = 16;
const RTM_NEWLINK: u16 = 16;
const RTM_NEWQDISC: u16 = 36;
const RTM_NEWTFILTER: u16 = 44;

const IFLA_IFNAME: u16 = 3;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_XDP: u16 = 43;
const IFLA_XDP_ATTACHED: u16 = 2;
const IFLA_XDP_PROG_ID: u16 = 4;
const IFLA_XDP_DRV_PROG_ID: u16 = 5;
const IFLA_XDP_SKB_PROG_ID: u16 = 6;
const IFLA_XDP_HW_PROG_ID: u16 = 7;
const XDP_ATTACHED_DRV: u8 = 1;
const XDP_ATTACHED_SKB: u8 = 2;
const XDP_ATTACHED_HW: u8 = 3;

const TCA_KIND: u16 = 1;
const TCA_OPTIONS: u16 = 2;
const TCA_CHAIN: u16 = 11;
const TCA_BPF_ID: u16 = 11;

/// struct ifinfomsg and struct tcmsg: the attributes follow them.
const IFINFOMSG_LEN: usize = 16;
const TCMSG_LEN: usize = 20;

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// The (type, value) attributes in `buf`, type without the nested and byte-order flags.
fn attrs(buf: &[u8]) -> impl Iterator<Item = io::Result<(u16, &[u8])>> {
    NlasIterator::new(buf).map(|nla| {
        let nla = nla.map_err(invalid)?;
        let (kind, len) = (nla.kind(), nla.length() as usize);
        // new_checked vouched for the length; the value follows the 4-byte header.
        Ok((kind, &nla.into_inner()[NLA_HEADER_SIZE..len]))
    })
}

fn u32_at(payload: &[u8], at: usize) -> io::Result<u32> {
    payload
        .get(at..at + 4)
        .and_then(|b| parse_u32(b).ok())
        .ok_or_else(|| invalid("short netlink message"))
}

/// The parts of an RTM_NEWQDISC/RTM_NEWTFILTER message the guard reads.
struct TcParts {
    ifindex: u32,
    parent: u32,
    handle: u32,
    info: u32,
    kind: Option<String>,
    chain: u32,
    bpf_prog_id: Option<u32>,
}

fn tc_message(payload: &[u8]) -> io::Result<TcParts> {
    let mut tc = TcParts {
        ifindex: u32_at(payload, 4)?,
        handle: u32_at(payload, 8)?,
        parent: u32_at(payload, 12)?,
        info: u32_at(payload, 16)?,
        kind: None,
        chain: 0,
        bpf_prog_id: None,
    };
    let mut options = None;
    for a in attrs(&payload[TCMSG_LEN..]) {
        match a? {
            (TCA_KIND, v) => tc.kind = Some(parse_string(v).map_err(invalid)?),
            (TCA_CHAIN, v) => tc.chain = parse_u32(v).map_err(invalid)?,
            (TCA_OPTIONS, v) => options = Some(v),
            _ => {}
        }
    }
    // Option numbers mean something else for every classifier: read them only for bpf.
    if let (Some("bpf"), Some(opts)) = (tc.kind.as_deref(), options) {
        for a in attrs(opts) {
            if let (TCA_BPF_ID, v) = a? {
                tc.bpf_prog_id = Some(parse_u32(v).map_err(invalid)?);
            }
        }
    }
    Ok(tc)
}

fn filter(payload: &[u8]) -> io::Result<Filter> {
    let tc = tc_message(payload)?;
    Ok(Filter {
        ifindex: tc.ifindex,
        parent: tc.parent,
        handle: tc.handle,
        info: tc.info,
        chain: tc.chain,
        kind: tc.kind.unwrap_or_default(),
        prog_id: tc.bpf_prog_id,
    })
}

fn net_if(payload: &[u8]) -> io::Result<NetIf> {
    let mut nif = NetIf {
        ifindex: u32_at(payload, 4)?,
        name: OsString::new(),
        kind: None,
        xdp: Vec::new(),
    };
    let rest = payload
        .get(IFINFOMSG_LEN..)
        .ok_or_else(|| invalid("short link message"))?;
    for a in attrs(rest) {
        match a? {
            (IFLA_IFNAME, v) => nif.name = if_name(v),
            (IFLA_LINKINFO, v) => {
                for info in attrs(v) {
                    if let (IFLA_INFO_KIND, k) = info? {
                        nif.kind = Some(parse_string(k).map_err(invalid)?);
                    }
                }
            }
            (IFLA_XDP, v) => nif.xdp = xdp_progs(v)?,
            _ => {}
        }
    }
    Ok(nif)
}

/// IFLA_IFNAME's bytes up to its NUL, exactly: not every name is UTF-8.
fn if_name(v: &[u8]) -> OsString {
    let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
    OsString::from_vec(v[..end].to_vec())
}

/// The (mode, program) pairs on an interface. With one program the kernel reports ATTACHED and
/// PROG_ID; with several modes at once it reports MULTI and one id per mode.
fn xdp_progs(nested: &[u8]) -> io::Result<Vec<(XdpMode, u32)>> {
    let mut attached = None;
    let mut prog = 0;
    let mut out = Vec::new();
    for a in attrs(nested) {
        let (t, v) = a?;
        let id = || parse_u32(v).map_err(invalid);
        match t {
            IFLA_XDP_ATTACHED => attached = Some(parse_u8(v).map_err(invalid)?),
            IFLA_XDP_PROG_ID => prog = id()?,
            IFLA_XDP_DRV_PROG_ID if id()? != 0 => out.push((XdpMode::Driver, id()?)),
            IFLA_XDP_SKB_PROG_ID if id()? != 0 => out.push((XdpMode::Generic, id()?)),
            IFLA_XDP_HW_PROG_ID if id()? != 0 => out.push((XdpMode::Offload, id()?)),
            _ => {}
        }
    }
    let single = match attached {
        Some(XDP_ATTACHED_DRV) => Some(XdpMode::Driver),
        Some(XDP_ATTACHED_SKB) => Some(XdpMode::Generic),
        Some(XDP_ATTACHED_HW) => Some(XdpMode::Offload),
        _ => None,
    };
    if let (Some(mode), true) = (single, prog != 0) {
        if !out.iter().any(|(m, _)| *m == mode) {
            out.push((mode, prog));
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::os::unix::ffi::OsStrExt;

    use super::*;

    #[test]
    fn interface_names_are_bytes_up_to_the_nul() {
        assert_eq!(if_name(b"eth\xff0\0").as_bytes(), b"eth\xff0");
        assert_eq!(if_name(b"w\x1b[2K").as_bytes(), b"w\x1b[2K");
    }

    /// A kernel that never answers costs an error naming the question, not a hang.
    #[test]
    fn an_unanswered_request_times_out_naming_it() {
        let mut rtnl = Rtnl::open().expect("a netlink socket needs no privilege");
        set_receive_timeout(&rtnl.socket, Duration::from_millis(20)).expect("SO_RCVTIMEO");
        let err = rtnl
            .recv("a dump of the qdiscs")
            .expect_err("nothing was asked, so nothing arrives");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(
            err.to_string()
                .contains("did not answer a dump of the qdiscs"),
            "{err}"
        );
    }
}

//! rtnetlink through netlink-packet-route on a plain blocking socket: link, qdisc and tc filter
//! dumps, and the deletes the sweep needs. libbpf cannot list tc filters, hence this.

use std::io;

use netlink_packet_core::{
    parse_string, parse_u32, parse_u8, NetlinkBuffer, NetlinkDeserializable, NetlinkHeader,
    NetlinkMessage, NetlinkPayload, NlasIterator, NLA_HEADER_SIZE, NLMSG_DONE, NLMSG_ERROR,
    NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::link::{LinkAttribute, LinkExtentMask, LinkMessage};
use netlink_packet_route::tc::{TcAttribute, TcHandle, TcMessage};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// The clsact qdisc's two filter parents.
pub const PARENT_INGRESS: u32 = 0xFFFF_FFF2;
pub const PARENT_EGRESS: u32 = 0xFFFF_FFF3;

/// XDP attach modes as the kernel reports them per program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum XdpMode {
    Driver,
    Generic,
    Offload,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetIf {
    pub ifindex: u32,
    pub name: String,
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
#[derive(Debug, Clone, PartialEq, Eq)]
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

impl Rtnl {
    pub fn open() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(Rtnl {
            socket,
            seq: 0,
            buf: vec![0; 64 * 1024],
        })
    }

    fn send(&mut self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let mut packet = NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::from(msg));
        packet.header.flags = NLM_F_REQUEST | flags;
        packet.header.sequence_number = self.seq;
        packet.finalize();
        let mut out = vec![0; packet.buffer_len()];
        packet.serialize(&mut out);
        self.socket.send(&out, 0)?;
        Ok(())
    }

    /// Send one request and collect the answer: every message of a dump, or the ack.
    pub fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        let mut replies = Vec::new();
        self.exchange(msg, flags, |message_type, payload| {
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
    /// than the kernel's own work.
    fn exchange(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        mut each: impl FnMut(u16, &[u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        self.send(msg, flags)?;
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        loop {
            let n = self.socket.recv(&mut &mut self.buf[..], 0)?;
            let mut off = 0;
            while off < n {
                let reply = NetlinkBuffer::new_checked(&self.buf[off..n]).map_err(invalid)?;
                let len = reply.length() as usize;
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
                // Messages in one datagram start at 4-byte boundaries.
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
            |t, payload| {
                if t == RTM_NEWLINK {
                    out.push(net_if(payload)?);
                }
                Ok(())
            },
        )?;
        Ok(out)
    }

    /// One interface by name; None when there is none.
    pub fn link_by_name(&mut self, name: &str) -> io::Result<Option<NetIf>> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        let mut found = None;
        match self.exchange(RouteNetlinkMessage::GetLink(msg), 0, |t, payload| {
            if t == RTM_NEWLINK {
                found = Some(net_if(payload)?);
            }
            Ok(())
        }) {
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
    pub fn filters(&mut self, ifindex: u32, parent: u32) -> io::Result<Vec<Filter>> {
        let mut msg = TcMessage::default();
        msg.header.index = ifindex as i32;
        msg.header.parent = TcHandle::from(parent);
        let mut out = Vec::new();
        let dumped = self.exchange(
            RouteNetlinkMessage::GetTrafficFilter(msg),
            NLM_F_DUMP,
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
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) || super::is_gone(&e) => {
                Ok(Vec::new())
            }
            Err(e) => Err(e),
        }
    }

    /// Delete exactly one filter, by its handle, priority, protocol and chain.
    pub fn del_filter(&mut self, f: &Filter) -> io::Result<()> {
        self.request(del_filter_msg(f), NLM_F_ACK).map(drop)
    }

    /// Delete several filters with one datagram: one result per filter, in order. Only the
    /// last request asks for an ack; the kernel handles the requests of a datagram in order
    /// before the send returns and answers every failed one with its error, so whatever
    /// arrives before the last ack is the complete list of failures. At most `FILTER_BATCH`.
    pub fn del_filters(&mut self, filters: &[&Filter]) -> Vec<io::Result<()>> {
        assert!(
            filters.len() <= FILTER_BATCH,
            "at most FILTER_BATCH filters"
        );
        let Some(last) = filters.len().checked_sub(1) else {
            return Vec::new();
        };
        let first_seq = self.seq.wrapping_add(1);
        let mut out = Vec::new();
        for (i, f) in filters.iter().enumerate() {
            self.seq = self.seq.wrapping_add(1);
            let mut packet = NetlinkMessage::new(
                NetlinkHeader::default(),
                NetlinkPayload::from(del_filter_msg(f)),
            );
            packet.header.flags = NLM_F_REQUEST | if i == last { NLM_F_ACK } else { 0 };
            packet.header.sequence_number = self.seq;
            packet.finalize();
            let at = out.len();
            out.resize(at + ((packet.buffer_len() + 3) & !3), 0);
            packet.serialize(&mut out[at..]);
        }
        if let Err(e) = self.socket.send(&out, 0) {
            return filters.iter().map(|_| Err(copy_err(&e))).collect();
        }
        let mut results: Vec<io::Result<()>> = filters.iter().map(|_| Ok(())).collect();
        let last_seq = self.seq;
        loop {
            let n = match self.socket.recv(&mut &mut self.buf[..], 0) {
                Ok(n) => n,
                // An answer may be lost: none of the results can be trusted then.
                Err(e) => return filters.iter().map(|_| Err(copy_err(&e))).collect(),
            };
            let mut off = 0;
            let mut done = false;
            while off < n {
                let reply = match NetlinkBuffer::new_checked(&self.buf[off..n]) {
                    Ok(r) => r,
                    Err(e) => return filters.iter().map(|_| Err(invalid(&e))).collect(),
                };
                let len = reply.length() as usize;
                let i = reply.sequence_number().wrapping_sub(first_seq) as usize;
                if reply.message_type() == NLMSG_ERROR && i <= last {
                    match u32_at(reply.payload(), 0) {
                        Ok(0) => {}
                        Ok(code) => results[i] = Err(io::Error::from_raw_os_error(-(code as i32))),
                        Err(e) => results[i] = Err(e),
                    }
                    done |= reply.sequence_number() == last_seq;
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
        self.request(RouteNetlinkMessage::DelLink(msg), NLM_F_ACK)
            .map(drop)
    }
}

/// How many filter deletes share one datagram. The kernel answers the failed ones, each answer
/// a small skb charged about 1 KiB against the socket's receive buffer (208 KiB by default): at
/// 64, even a batch that fails whole cannot overflow it and lose an answer.
pub const FILTER_BATCH: usize = 64;

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
        name: String::new(),
        kind: None,
        xdp: Vec::new(),
    };
    let rest = payload
        .get(IFINFOMSG_LEN..)
        .ok_or_else(|| invalid("short link message"))?;
    for a in attrs(rest) {
        match a? {
            (IFLA_IFNAME, v) => nif.name = parse_string(v).map_err(invalid)?,
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

//! rtnetlink through netlink-packet-route on a plain blocking socket: link, qdisc and tc filter
//! dumps, and the deletes the sweep needs. libbpf cannot list tc filters, hence this.

use std::io;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::link::{
    InfoKind, LinkAttribute, LinkInfo, LinkMessage, LinkXdp, XdpAttached,
};
use netlink_packet_route::tc::{TcAttribute, TcFilterBpfOption, TcHandle, TcMessage, TcOption};
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

    /// Send one request and collect the answer: every message of a dump, or the ack.
    pub fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let mut packet = NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::from(msg));
        packet.header.flags = NLM_F_REQUEST | flags;
        packet.header.sequence_number = self.seq;
        packet.finalize();
        let mut out = vec![0; packet.buffer_len()];
        packet.serialize(&mut out);
        self.socket.send(&out, 0)?;

        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut replies = Vec::new();
        loop {
            let n = self.socket.recv(&mut &mut self.buf[..], 0)?;
            let mut off = 0;
            while off < n {
                let reply: NetlinkMessage<RouteNetlinkMessage> =
                    NetlinkMessage::deserialize(&self.buf[off..n])
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                let len = reply.header.length as usize;
                if reply.header.sequence_number == self.seq {
                    match reply.payload {
                        NetlinkPayload::Done(_) => return Ok(replies),
                        NetlinkPayload::Error(e) => {
                            return match e.code {
                                Some(code) => Err(io::Error::from_raw_os_error(-code.get())),
                                None => Ok(replies),
                            };
                        }
                        NetlinkPayload::InnerMessage(m) => {
                            replies.push(m);
                            if !dump {
                                return Ok(replies);
                            }
                        }
                        _ => {}
                    }
                }
                if len == 0 {
                    break;
                }
                off += len;
            }
        }
    }

    /// Every interface with its kind and XDP programs, in one dump.
    pub fn links(&mut self) -> io::Result<Vec<NetIf>> {
        let replies = self.request(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(net_if(l)),
                _ => None,
            })
            .collect())
    }

    /// One interface by name; None when there is none.
    pub fn link_by_name(&mut self, name: &str) -> io::Result<Option<NetIf>> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.request(RouteNetlinkMessage::GetLink(msg), 0) {
            Ok(replies) => Ok(replies.into_iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(net_if(l)),
                _ => None,
            })),
            Err(e) if super::is_gone(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every qdisc of every interface, in one dump.
    pub fn qdiscs(&mut self) -> io::Result<Vec<Qdisc>> {
        let replies = self.request(
            RouteNetlinkMessage::GetQueueDiscipline(TcMessage::default()),
            NLM_F_DUMP,
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewQueueDiscipline(t) => Some(Qdisc {
                    ifindex: t.header.index as u32,
                    kind: kind_of(&t.attributes).unwrap_or_default(),
                }),
                _ => None,
            })
            .collect())
    }

    /// The filters under one parent of one interface; the kernel dumps filters per interface.
    pub fn filters(&mut self, ifindex: u32, parent: u32) -> io::Result<Vec<Filter>> {
        let mut msg = TcMessage::default();
        msg.header.index = ifindex as i32;
        msg.header.parent = TcHandle::from(parent);
        let replies = match self.request(RouteNetlinkMessage::GetTrafficFilter(msg), NLM_F_DUMP) {
            Ok(r) => r,
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) || super::is_gone(&e) => Vec::new(),
            Err(e) => return Err(e),
        };
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewTrafficFilter(t) => Some(filter(t)),
                _ => None,
            })
            // The dump also lists each filter chain's head (no kind, handle 0): not a filter.
            .filter(|f| !f.kind.is_empty())
            .collect())
    }

    /// Delete exactly one filter, by its handle, priority, protocol and chain.
    pub fn del_filter(&mut self, f: &Filter) -> io::Result<()> {
        let mut msg = TcMessage::default();
        msg.header.index = f.ifindex as i32;
        msg.header.parent = TcHandle::from(f.parent);
        msg.header.handle = TcHandle::from(f.handle);
        msg.header.info = f.info;
        msg.attributes.push(TcAttribute::Kind(f.kind.clone()));
        if f.chain != 0 {
            msg.attributes.push(TcAttribute::Chain(f.chain));
        }
        self.request(RouteNetlinkMessage::DelTrafficFilter(msg), NLM_F_ACK)
            .map(drop)
    }

    /// Delete one interface (for a veth, its peer goes with it).
    pub fn del_link(&mut self, ifindex: u32) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = ifindex;
        self.request(RouteNetlinkMessage::DelLink(msg), NLM_F_ACK)
            .map(drop)
    }
}

fn kind_of(attrs: &[TcAttribute]) -> Option<String> {
    attrs.iter().find_map(|a| match a {
        TcAttribute::Kind(k) => Some(k.clone()),
        _ => None,
    })
}

fn filter(t: TcMessage) -> Filter {
    let prog_id = t.attributes.iter().find_map(|a| match a {
        TcAttribute::Options(opts) => opts.iter().find_map(|o| match o {
            TcOption::Bpf(TcFilterBpfOption::ProgId(id)) => Some(*id),
            _ => None,
        }),
        _ => None,
    });
    let chain = t
        .attributes
        .iter()
        .find_map(|a| match a {
            TcAttribute::Chain(c) => Some(*c),
            _ => None,
        })
        .unwrap_or(0);
    Filter {
        ifindex: t.header.index as u32,
        parent: t.header.parent.into(),
        handle: t.header.handle.into(),
        info: t.header.info,
        chain,
        kind: kind_of(&t.attributes).unwrap_or_default(),
        prog_id,
    }
}

fn net_if(l: LinkMessage) -> NetIf {
    let mut name = String::new();
    let mut kind = None;
    let mut xdp = Vec::new();
    for attr in l.attributes {
        match attr {
            LinkAttribute::IfName(n) => name = n,
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    if let LinkInfo::Kind(k) = info {
                        kind = Some(match k {
                            InfoKind::Other(s) => s,
                            k => k.to_string(),
                        });
                    }
                }
            }
            LinkAttribute::Xdp(attrs) => xdp = xdp_progs(&attrs),
            _ => {}
        }
    }
    NetIf {
        ifindex: l.header.index,
        name,
        kind,
        xdp,
    }
}

/// The (mode, program) pairs on an interface. With one program the kernel reports ATTACHED and
/// PROG_ID; with several modes at once it reports MULTI and one id per mode.
fn xdp_progs(attrs: &[LinkXdp]) -> Vec<(XdpMode, u32)> {
    let mut attached = None;
    let mut prog = 0;
    let mut out = Vec::new();
    for a in attrs {
        match a {
            LinkXdp::Attached(m) => attached = Some(*m),
            LinkXdp::ProgId(id) => prog = *id,
            LinkXdp::DrvProgId(id) if *id != 0 => out.push((XdpMode::Driver, *id)),
            LinkXdp::SkbProgId(id) if *id != 0 => out.push((XdpMode::Generic, *id)),
            LinkXdp::HwProgId(id) if *id != 0 => out.push((XdpMode::Offload, *id)),
            _ => {}
        }
    }
    let single = match attached {
        Some(XdpAttached::Driver) => Some(XdpMode::Driver),
        Some(XdpAttached::SocketBuffer) => Some(XdpMode::Generic),
        Some(XdpAttached::Hardware) => Some(XdpMode::Offload),
        _ => None,
    };
    if let (Some(mode), true) = (single, prog != 0) {
        if !out.iter().any(|(m, _)| *m == mode) {
            out.push((mode, prog));
        }
    }
    out.sort();
    out
}

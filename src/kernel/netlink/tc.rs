//! tc over rtnetlink: the clsact qdiscs, the filters under one parent of one interface, and
//! filters read back and deleted by their exact place, many to a datagram. A filter is deleted
//! only by the place and kind it was read with; this file never decides which filters go.

use std::io;

use netlink_packet_core::{
    parse_string, parse_u32, NetlinkBuffer, NLMSG_ERROR, NLM_F_ACK, NLM_F_DUMP,
};
use netlink_packet_route::tc::{TcAttribute, TcHandle, TcMessage};
use netlink_packet_route::RouteNetlinkMessage;
use serde::{Deserialize, Serialize};

use super::socket::{attrs, copy_err, invalid, u32_at, Rtnl};

/// The clsact qdisc's two filter parents.
pub const PARENT_INGRESS: u32 = 0xFFFF_FFF2;
pub const PARENT_EGRESS: u32 = 0xFFFF_FFF3;

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

impl Rtnl {
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
        let dumped = self.exchange_in(
            RouteNetlinkMessage::GetTrafficFilter(msg),
            NLM_F_DUMP,
            &asked,
            DUMP_SLOTS,
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
            Err(e) if crate::kernel::is_gone(&e) => Ok(Vec::new()),
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
            let got = match self.recv_many(asked, ANSWER_SLOTS) {
                Ok(got) => got,
                // An answer may be lost: none of the results can be trusted then.
                Err(e) => return all_failed(&e),
            };
            let mut done = false;
            for got in got {
                let mut off = got.start;
                while off < got.end {
                    let reply = match NetlinkBuffer::new_checked(&self.buf[off..got.end]) {
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
                                        results[i] =
                                            Err(io::Error::from_raw_os_error(-(code as i32)))
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
            }
            if done {
                return results;
            }
        }
    }
}

/// How many filter requests share one datagram. The kernel answers each read-back and each
/// failed delete, each answer a small skb charged about 1 KiB against the socket's receive
/// buffer (208 KiB by default): at 64, even a batch answered whole cannot overflow it and lose
/// an answer.
pub const FILTER_BATCH: usize = 64;

/// How many answers to a batch come per receive call, each in 4 KiB of the 64 KiB buffer. A
/// tc filter's answer (or an error naming its request) is a few hundred bytes; a filter of
/// another kind with more than 4 KiB of options in a planned place fails its read-back, and is
/// not deleted.
const ANSWER_SLOTS: usize = 16;

/// A tc dump's datagrams fit 32 KiB (the kernel sizes them by what the receiver takes, at most
/// 32 KiB): two slots take a small dump and its end in one call.
const DUMP_SLOTS: usize = 2;

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

const RTM_NEWQDISC: u16 = 36;
const RTM_NEWTFILTER: u16 = 44;

const TCA_KIND: u16 = 1;
const TCA_OPTIONS: u16 = 2;
const TCA_CHAIN: u16 = 11;
const TCA_BPF_ID: u16 = 11;

/// struct tcmsg: the attributes follow it.
const TCMSG_LEN: usize = 20;

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

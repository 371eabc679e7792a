//! The rtnetlink socket: one plain blocking socket through netlink-packet-route, requests
//! numbered and sent, answers read straight from the receive buffer with a timeout, and the
//! attribute walking every answer needs. It knows no interface, qdisc or filter (`links`, `tc`)
//! and never waits forever for the kernel.

use std::io;
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::time::Duration;

use netlink_packet_core::{
    parse_u32, NetlinkBuffer, NetlinkDeserializable, NetlinkHeader, NetlinkMessage, NetlinkPayload,
    NlasIterator, NLA_HEADER_SIZE, NLMSG_DONE, NLMSG_ERROR, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

pub struct Rtnl {
    pub(super) socket: Socket,
    pub(super) seq: u32,
    pub(super) buf: Vec<u8>,
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
    pub(super) fn push(&mut self, out: &mut Vec<u8>, msg: RouteNetlinkMessage, flags: u16) {
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

    /// What the kernel has queued, up to `slots` datagrams, each into its own equal part of the
    /// buffer, in one call (recvmmsg) that waits only for the first: the answers to a batch of
    /// requests, queued before the send returned, come in one call rather than one each. A
    /// datagram longer than its part is an error, never half an answer; a timeout is an error
    /// that says what went unanswered. Returns where each datagram lies in the buffer.
    pub(super) fn recv_many(&mut self, asked: &str, slots: usize) -> io::Result<Vec<Range<usize>>> {
        let slot = self.buf.len() / slots.max(1);
        let base = self.buf.as_mut_ptr();
        let mut iov: Vec<libc::iovec> = (0..slots.max(1))
            .map(|i| libc::iovec {
                // SAFETY: i * slot + slot <= buf.len(): each part lies within the buffer.
                iov_base: unsafe { base.add(i * slot) }.cast(),
                iov_len: slot,
            })
            .collect();
        let mut msgs: Vec<libc::mmsghdr> = iov
            .iter_mut()
            .map(|v| {
                // SAFETY: mmsghdr is plain data; all zero is an empty header, filled in below.
                let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                m.msg_hdr.msg_iov = v;
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        // SAFETY: the fd is the socket's own; every header points at one iovec of `iov`, each
        // over its own part of `buf`, all alive and unaliased for the call; no timeout pointer
        // (SO_RCVTIMEO bounds the wait for the first datagram).
        let n = unsafe {
            libc::recvmmsg(
                self.socket.as_raw_fd(),
                msgs.as_mut_ptr(),
                msgs.len() as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return Err(if e.kind() == io::ErrorKind::WouldBlock {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "the kernel did not answer {asked} within {} s",
                        RECEIVE_TIMEOUT.as_secs()
                    ),
                )
            } else {
                e
            });
        }
        msgs[..n as usize]
            .iter()
            .enumerate()
            .map(|(i, m)| {
                if m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                    return Err(invalid(format!(
                        "an answer to {asked} longer than the {slot} bytes received"
                    )));
                }
                Ok(i * slot..i * slot + m.msg_len as usize)
            })
            .collect()
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
    pub(super) fn exchange(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        asked: &str,
        each: impl FnMut(u16, &[u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        self.exchange_in(msg, flags, asked, 1, each)
    }

    /// As `exchange`, receiving up to `slots` datagrams per call (see `recv_many`): a dump
    /// whose answer fits one datagram ends with a second, its NLMSG_DONE, which the kernel
    /// makes while the first is received, so two slots take a small dump in one call. Only for
    /// answers whose datagrams fit a slot each: a tc dump's, never an interface dump's.
    pub(super) fn exchange_in(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        asked: &str,
        slots: usize,
        mut each: impl FnMut(u16, &[u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut out = Vec::new();
        self.push(&mut out, msg, flags);
        self.socket.send(&out, 0)?;
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        loop {
            for got in self.recv_many(asked, slots)? {
                let mut off = got.start;
                while off < got.end {
                    let reply =
                        NetlinkBuffer::new_checked(&self.buf[off..got.end]).map_err(invalid)?;
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

/// io::Error is not Clone; an errno is all the guard reports of it.
pub fn copy_err(e: &io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(e.kind(), e.to_string()),
    }
}

/// Message types below this are netlink's own (noop, error, done, overrun).
pub(super) const NLMSG_MIN_TYPE: u16 = 16;

pub(super) fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// The (type, value) attributes in `buf`, type without the nested and byte-order flags.
pub(super) fn attrs(buf: &[u8]) -> impl Iterator<Item = io::Result<(u16, &[u8])>> {
    NlasIterator::new(buf).map(|nla| {
        let nla = nla.map_err(invalid)?;
        let (kind, len) = (nla.kind(), nla.length() as usize);
        // new_checked vouched for the length; the value follows the 4-byte header.
        Ok((kind, &nla.into_inner()[NLA_HEADER_SIZE..len]))
    })
}

pub(super) fn u32_at(payload: &[u8], at: usize) -> io::Result<u32> {
    payload
        .get(at..at + 4)
        .and_then(|b| parse_u32(b).ok())
        .ok_or_else(|| invalid("short netlink message"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kernel that never answers costs an error naming the question, not a hang.
    #[test]
    fn an_unanswered_request_times_out_naming_it() {
        let mut rtnl = Rtnl::open().expect("a netlink socket needs no privilege");
        set_receive_timeout(&rtnl.socket, Duration::from_millis(20)).expect("SO_RCVTIMEO");
        let err = rtnl
            .recv_many("a dump of the qdiscs", 1)
            .expect_err("nothing was asked, so nothing arrives");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(
            err.to_string()
                .contains("did not answer a dump of the qdiscs"),
            "{err}"
        );
    }
}

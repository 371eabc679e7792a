//! Interfaces over rtnetlink: one dump of every interface with its kind, XDP programs and
//! accept_local setting, one interface by its exact name, and the delete of one. Interface
//! names are bytes (any byte but NUL, `/`, `:` and white space, UTF-8 or not), and so they
//! stay here. It never touches a qdisc or a filter (`tc`).

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStringExt;

use netlink_packet_core::{parse_string, parse_u32, parse_u8, DefaultNla, NLM_F_ACK, NLM_F_DUMP};
use netlink_packet_route::link::{LinkAttribute, LinkExtentMask, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;
use serde::{Deserialize, Serialize};

use super::socket::{attrs, invalid, u32_at, Rtnl};

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
            XdpMode::Driver => crate::kernel::bpf::XDP_FLAGS_DRV_MODE,
            XdpMode::Generic => crate::kernel::bpf::XDP_FLAGS_SKB_MODE,
            XdpMode::Offload => crate::kernel::bpf::XDP_FLAGS_HW_MODE,
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
    /// net.ipv4.conf.<name>.accept_local = 1, from the dump's IPv4 settings (a note's fact, not
    /// an object: not recorded).
    #[serde(skip)]
    pub accept_local: bool,
}

impl Rtnl {
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
            Err(e) if crate::kernel::is_gone(&e) => Ok(None),
            Err(e) => Err(e),
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

const RTM_NEWLINK: u16 = 16;

const IFLA_IFNAME: u16 = 3;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_AF_SPEC: u16 = 26;
const IFLA_XDP: u16 = 43;
const IFLA_XDP_ATTACHED: u16 = 2;
const IFLA_XDP_PROG_ID: u16 = 4;
const IFLA_XDP_DRV_PROG_ID: u16 = 5;
const IFLA_XDP_SKB_PROG_ID: u16 = 6;
const IFLA_XDP_HW_PROG_ID: u16 = 7;
const XDP_ATTACHED_DRV: u8 = 1;
const XDP_ATTACHED_SKB: u8 = 2;
const XDP_ATTACHED_HW: u8 = 3;

const AF_INET: u16 = 2;
const IFLA_INET_CONF: u16 = 1;
/// IPV4_DEVCONF_ACCEPT_LOCAL: IFLA_INET_CONF holds every IPv4 setting as a u32, from 1.
const IPV4_DEVCONF_ACCEPT_LOCAL: usize = 23;

/// struct ifinfomsg: the attributes follow it.
const IFINFOMSG_LEN: usize = 16;

fn net_if(payload: &[u8]) -> io::Result<NetIf> {
    let mut nif = NetIf {
        ifindex: u32_at(payload, 4)?,
        name: OsString::new(),
        kind: None,
        xdp: Vec::new(),
        accept_local: false,
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
            (IFLA_AF_SPEC, v) => nif.accept_local = accept_local(v)?,
            _ => {}
        }
    }
    Ok(nif)
}

/// Whether IFLA_AF_SPEC's IPv4 settings say accept_local = 1: the same value as
/// /proc/sys/net/ipv4/conf/<name>/accept_local, read with the dump the scan makes anyway
/// rather than with an open, a read and a close per interface. An interface without IPv4
/// settings has none in /proc either.
fn accept_local(af_spec: &[u8]) -> io::Result<bool> {
    for af in attrs(af_spec) {
        let (family, v) = af?;
        if family != AF_INET {
            continue;
        }
        for a in attrs(v) {
            if let (IFLA_INET_CONF, conf) = a? {
                let at = (IPV4_DEVCONF_ACCEPT_LOCAL - 1) * 4;
                return Ok(conf
                    .get(at..at + 4)
                    .is_some_and(|b| parse_u32(b).ok() == Some(1)));
            }
        }
    }
    Ok(false)
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

    /// IFLA_AF_SPEC as the kernel nests it: AF_INET6's settings first, then AF_INET's, whose
    /// 23rd u32 is accept_local.
    #[test]
    fn accept_local_is_the_23rd_ipv4_setting() {
        fn nla(kind: u16, value: &[u8]) -> Vec<u8> {
            let mut out = ((value.len() + 4) as u16).to_ne_bytes().to_vec();
            out.extend_from_slice(&kind.to_ne_bytes());
            out.extend_from_slice(value);
            out.resize(out.len().next_multiple_of(4), 0);
            out
        }
        let spec = |family: u16, accept_local: u32, settings: usize| {
            let mut conf: Vec<u8> = Vec::new();
            for i in 1..=settings {
                let v = if i == IPV4_DEVCONF_ACCEPT_LOCAL {
                    accept_local
                } else {
                    0
                };
                conf.extend_from_slice(&v.to_ne_bytes());
            }
            let mut inet6 = nla(10, &nla(1, &[1; 16]));
            inet6.extend(nla(family, &nla(IFLA_INET_CONF, &conf)));
            inet6
        };
        let cases = [
            (spec(AF_INET, 1, 33), true),
            (spec(AF_INET, 0, 33), false),
            (spec(AF_INET, 2, 33), false),
            // Another family's 23rd value is not it; nor is a list too short to hold it.
            (spec(7, 1, 33), false),
            (spec(AF_INET, 1, 22), false),
        ];
        for (af_spec, want) in cases {
            assert_eq!(accept_local(&af_spec).unwrap(), want);
        }
    }

    #[test]
    fn interface_names_are_bytes_up_to_the_nul() {
        assert_eq!(if_name(b"eth\xff0\0").as_bytes(), b"eth\xff0");
        assert_eq!(if_name(b"w\x1b[2K").as_bytes(), b"w\x1b[2K");
    }
}

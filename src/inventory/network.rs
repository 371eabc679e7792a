//! The network part of the scan, in the namespace the guard runs in: interfaces (with their XDP
//! programs), tc filters under clsact qdiscs, and tcx and netkit attachments. An interface that
//! cannot be read is recorded, never read as empty; nothing is changed.

use std::collections::HashSet;

use anyhow::Result;

use crate::failpoint;
use crate::kernel::bpf::{self, Target};
use crate::kernel::is_gone;
use crate::kernel::netlink::{Rtnl, PARENT_EGRESS, PARENT_INGRESS};
use crate::names;

use super::objects::{hook_name, HookAttachment, IfNames, Inventory, NETKIT_HOOKS, TCX_HOOKS};

/// Interfaces, tc filters, tcx and netkit attachments. With no Calico tc or XDP program loaded
/// anywhere, only the device names are looked up.
pub fn scan_network(inv: &mut Inventory) -> Result<()> {
    let mut rtnl = Rtnl::open()?;
    if !inv.scope.tc && !inv.scope.xdp {
        if let Some(dev) = rtnl.link_by_name("bpfin.cali")? {
            inv.netifs.push(dev);
        }
        return Ok(());
    }
    inv.netifs = rtnl.links()?;
    let mut accept_local: Vec<String> = inv
        .netifs
        .iter()
        .filter(|n| n.accept_local)
        .map(|n| names::os(&n.name))
        .collect();
    accept_local.sort();
    inv.accept_local = Some(accept_local);
    if !inv.scope.tc {
        return Ok(());
    }
    let clsact: HashSet<u32> = rtnl
        .qdiscs()?
        .into_iter()
        .filter(|q| q.kind == "clsact")
        .map(|q| q.ifindex)
        .collect();
    let mut with_clsact: Vec<u32> = clsact.into_iter().collect();
    with_clsact.sort_unstable();
    let ifnames = IfNames::of(&inv.netifs);
    for ifindex in with_clsact {
        for (parent, dir) in [(PARENT_INGRESS, "ingress"), (PARENT_EGRESS, "egress")] {
            let dumped = match failpoint::filter_dump(&ifnames.name(ifindex)) {
                Some(injected) => Err(injected),
                None => rtnl.filters(ifindex, parent),
            };
            // One interface that cannot be read costs that interface, never the scan, and is
            // never read as "no filters".
            match dumped {
                Ok(filters) => inv.filters.extend(filters),
                Err(e) => {
                    let what = format!("tc filters of {} {dir}: {e}", ifnames.name(ifindex));
                    inv.incomplete.push(what);
                }
            }
        }
    }
    let f = inv.features;
    for nif in &inv.netifs {
        let mut hooks: Vec<(u32, &str)> = Vec::new();
        if f.tcx {
            hooks.extend(TCX_HOOKS);
        }
        if f.netkit && nif.kind.as_deref() == Some("netkit") {
            hooks.extend(NETKIT_HOOKS);
        }
        for (attach_type, _) in hooks {
            match bpf::query(Target::Ifindex(nif.ifindex), attach_type) {
                Ok(q) => inv
                    .hooks
                    .extend(q.progs.into_iter().map(|p| HookAttachment {
                        ifindex: nif.ifindex,
                        ifname: nif.name.clone(),
                        attach_type,
                        prog_id: p.prog_id,
                        link_id: (p.link_id != 0).then_some(p.link_id),
                    })),
                Err(e) if is_gone(&e) => {}
                // A netkit pair's programs, its peer's included, hang off the primary device;
                // the kernel answers EACCES when the peer is asked (measured on 6.12).
                Err(e)
                    if e.raw_os_error() == Some(libc::EACCES)
                        && NETKIT_HOOKS.iter().any(|h| h.0 == attach_type) => {}
                Err(e) => inv.incomplete.push(format!(
                    "{} {}: {e}",
                    names::os(&nif.name),
                    hook_name(attach_type)
                )),
            }
        }
    }
    Ok(())
}

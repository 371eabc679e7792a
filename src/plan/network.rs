//! The plan for the network objects of this namespace: tc filters, tcx and netkit hooks, XDP
//! (each through its link when there is one) and the `bpfin.cali` device. Never a program or
//! device `ownership` does not name, and never a whole hook: one program at a time.

use crate::inventory::{hook_name, NETKIT_HOOKS};
use crate::kernel::bpf::LinkTarget;
use crate::kernel::netlink::{NetIf, PARENT_INGRESS};
use crate::names;
use crate::ownership;

use super::builder::Builder;
use super::step::{Action, ObjId, Step, StepKind};

impl Builder<'_> {
    /// tc (clsact) filters running a Calico program.
    pub fn filters(&mut self) {
        let ifnames = self.inv.ifnames();
        for f in &self.inv.filters {
            let Some(prog_id) = f.prog_id else { continue };
            let Some(reason) = self.inv.facts(prog_id).and_then(ownership::tc_program) else {
                continue;
            };
            let dir = if f.parent == PARENT_INGRESS {
                "ingress"
            } else {
                "egress"
            };
            self.steps.push(Step {
                action: Action::DeleteFilter { filter: f.clone() },
                kind: StepKind::TcFilter,
                id: Some(prog_id),
                name: self.prog_name(prog_id),
                location: format!(
                    "{} {dir} pref {} handle {:#x} protocol {:#06x}",
                    ifnames.name(f.ifindex),
                    f.priority(),
                    f.handle,
                    f.protocol()
                ),
                reason,
                objects: vec![ObjId::Prog(prog_id)],
            });
        }
    }

    /// tcx and netkit hooks: through the link when there is one, else by program.
    pub fn hooks(&mut self) {
        for h in &self.inv.hooks {
            let Some(reason) = self.inv.facts(h.prog_id).and_then(ownership::tc_program) else {
                continue;
            };
            let at = format!("{} {}", names::os(&h.ifname), hook_name(h.attach_type));
            let Some(link_id) = h.link_id else {
                self.steps.push(Step {
                    action: Action::DetachHook {
                        ifindex: h.ifindex,
                        attach_type: h.attach_type,
                        prog_id: h.prog_id,
                    },
                    kind: StepKind::TcxAttachment,
                    id: Some(h.prog_id),
                    name: self.prog_name(h.prog_id),
                    location: at,
                    reason,
                    objects: vec![ObjId::Prog(h.prog_id)],
                });
                continue;
            };
            let (ifindex, attach_type) = (h.ifindex, h.attach_type);
            let target = if NETKIT_HOOKS.iter().any(|(t, _)| *t == attach_type) {
                LinkTarget::Netkit {
                    ifindex,
                    attach_type,
                }
            } else {
                LinkTarget::Tcx {
                    ifindex,
                    attach_type,
                }
            };
            let at = format!("{at} (link {link_id})");
            self.detach_link(link_id, h.prog_id, &target, at, reason)
        }
    }

    /// XDP in whichever mode it is attached in, through its link when there is one.
    pub fn xdp(&mut self) {
        for nif in &self.inv.netifs {
            for &(mode, prog_id) in &nif.xdp {
                let Some(reason) = self.inv.facts(prog_id).and_then(ownership::xdp_program) else {
                    continue;
                };
                let at = format!("{} xdp ({mode})", names::os(&nif.name));
                let ifindex = nif.ifindex;
                match self.link_for(prog_id, |t| *t == LinkTarget::Xdp { ifindex }) {
                    Some(link_id) => {
                        let at = format!("{at} (link {link_id})");
                        self.detach_link(link_id, prog_id, &LinkTarget::Xdp { ifindex }, at, reason)
                    }
                    None => self.steps.push(Step {
                        action: Action::DetachXdp {
                            ifindex,
                            mode,
                            prog_id,
                        },
                        kind: StepKind::XdpAttachment,
                        id: Some(prog_id),
                        name: self.prog_name(prog_id),
                        location: at,
                        reason,
                        objects: vec![ObjId::Prog(prog_id)],
                    }),
                }
            }
        }
    }

    pub fn devices(&mut self) {
        for nif in &self.inv.netifs {
            if let Some(reason) = calico_device(nif) {
                self.steps.push(Step {
                    action: Action::DeleteDevice {
                        name: nif.name.clone(),
                    },
                    kind: StepKind::Device,
                    id: Some(nif.ifindex),
                    name: names::os(&nif.name),
                    location: "this network namespace".into(),
                    reason,
                    objects: Vec::new(),
                });
            }
        }
    }
}

/// The device rule on a name that is bytes: a name that is not UTF-8 is not `bpfin.cali`.
pub fn calico_device(nif: &NetIf) -> Option<&'static str> {
    ownership::device(nif.name.to_str()?, nif.kind.as_deref())
}

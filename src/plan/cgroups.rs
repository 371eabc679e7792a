//! The plan for the cgroup hooks: Calico's connect-time load balancer programs, detached
//! through their link when they have one, else by program (an exclusive slot marked so, for
//! apply to re-check its occupant). Never a program `ownership` does not name.

use crate::inventory::hook_name;
use crate::kernel::bpf::{LinkTarget, F_ALLOW_MULTI};
use crate::names;
use crate::ownership;

use super::builder::Builder;
use super::step::{Action, ObjId, Step, StepKind};

impl Builder<'_> {
    pub fn cgroups(&mut self) {
        for a in &self.inv.cgroups {
            let Some(reason) = self.inv.facts(a.prog_id).and_then(ownership::ctlb_program) else {
                continue;
            };
            let hook = hook_name(a.attach_type);
            let link = self.link_for(a.prog_id, |t| {
                *t == LinkTarget::Cgroup {
                    cgroup_id: a.cgroup_id,
                    attach_type: a.attach_type,
                }
            });
            if let Some(link_id) = link {
                let at = format!("cgroup {} {hook} (link {link_id})", names::path(&a.cgroup));
                let target = LinkTarget::Cgroup {
                    cgroup_id: a.cgroup_id,
                    attach_type: a.attach_type,
                };
                self.detach_link(link_id, a.prog_id, &target, at, reason);
                continue;
            }
            let exclusive = a.slot_flags & F_ALLOW_MULTI == 0;
            let how = if exclusive { "exclusive" } else { "multi" };
            self.steps.push(Step {
                action: Action::DetachCgroup {
                    root: a.root.clone(),
                    cgroup: a.cgroup.clone(),
                    cgroup_id: a.cgroup_id,
                    attach_type: a.attach_type,
                    prog_id: a.prog_id,
                    exclusive,
                },
                kind: StepKind::CgroupAttachment,
                id: Some(a.prog_id),
                name: self.prog_name(a.prog_id),
                location: format!("cgroup {} {hook} ({how})", names::path(&a.cgroup)),
                reason,
                objects: vec![ObjId::Prog(a.prog_id)],
            });
        }
    }
}

//! The state the per-family planners share while they turn an inventory into steps: the
//! inventory, the BTF names, the steps so far and the links already planned for detaching (a
//! link met twice, by its hook and by its pin, is detached once). The families' own rules live
//! beside it (`cgroups`, `network`, `bpffs`); this file never decides what is Calico's.

use std::collections::{BTreeMap, BTreeSet};

use crate::inventory::Inventory;
use crate::kernel::bpf::LinkTarget;

use super::step::{Action, ObjId, Step, StepKind};

pub struct Builder<'a> {
    pub inv: &'a Inventory,
    pub names: &'a BTreeMap<u32, String>,
    pub steps: Vec<Step>,
    pub detached_links: BTreeSet<u32>,
}

impl<'a> Builder<'a> {
    pub fn new(inv: &'a Inventory, names: &'a BTreeMap<u32, String>) -> Builder<'a> {
        Builder {
            inv,
            names,
            steps: Vec::new(),
            detached_links: BTreeSet::new(),
        }
    }
}

impl Builder<'_> {
    /// The name a report shows: the BTF full name when known, else the kernel's 15 characters.
    pub fn prog_name(&self, id: u32) -> String {
        self.names
            .get(&id)
            .cloned()
            .or_else(|| self.inv.programs.get(&id).map(|p| p.name.clone()))
            .unwrap_or_default()
    }

    /// `target` says which action detaches it: tcx and netkit links wait for a grace period.
    pub fn detach_link(
        &mut self,
        link_id: u32,
        prog_id: u32,
        target: &LinkTarget,
        location: String,
        reason: &'static str,
    ) {
        if !self.detached_links.insert(link_id) {
            return;
        }
        let action = match target {
            LinkTarget::Tcx { .. } | LinkTarget::Netkit { .. } => {
                Action::DetachHookLink { link_id }
            }
            _ => Action::DetachLink { link_id },
        };
        self.steps.push(Step {
            action,
            kind: StepKind::Link,
            id: Some(link_id),
            name: self.prog_name(prog_id),
            location,
            reason,
            objects: vec![ObjId::Link(link_id), ObjId::Prog(prog_id)],
        });
    }

    pub fn link_for(&self, prog_id: u32, want: impl Fn(&LinkTarget) -> bool) -> Option<u32> {
        self.inv
            .links
            .iter()
            .find(|l| l.prog_id == prog_id && want(&l.target))
            .map(|l| l.id)
    }
}

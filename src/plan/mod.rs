//! From an inventory to an ordered list of steps: pure, so every ordering and ownership decision
//! is unit-tested without a kernel. One planner per family (`cgroups`, `network`, `bpffs`)
//! appends its steps through the shared `builder`; `order` then puts them in apply order:
//! detach (links before their pins), unlink pins, remove emptied Calico directories (deepest
//! first), delete devices. It never reads the kernel and never acts: `apply` does.

mod bpffs;
mod builder;
mod cgroups;
mod family;
mod network;
mod order;
mod step;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::inventory::Inventory;

pub use family::Family;
pub use network::calico_device;
pub use step::{pinned_id, Action, ObjId, Step, StepKey, StepKind};

/// A plan's whole input: the inventory and the BTF names of the programs the plan names.
/// Serialized, it is what `debug-inventory` prints and the golden tests replay (tests/golden/).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Input {
    pub inventory: Inventory,
    pub btf_names: BTreeMap<u32, String>,
}

/// The steps that remove every Calico object in the inventory, in apply order.
pub fn build(inv: &Inventory, names: &BTreeMap<u32, String>) -> Vec<Step> {
    let mut b = builder::Builder::new(inv, names);
    b.cgroups();
    b.filters();
    b.hooks();
    b.xdp();
    let unpinned = b.pins();
    b.dirs(&unpinned);
    b.devices();
    let mut steps = b.steps;
    order::in_apply_order(&mut steps);
    steps
}

/// Programs whose names a report shows.
pub fn program_ids(steps: &[Step]) -> BTreeSet<u32> {
    steps
        .iter()
        .flat_map(|s| &s.objects)
        .filter_map(|o| match o {
            ObjId::Prog(id) => Some(*id),
            _ => None,
        })
        .collect()
}

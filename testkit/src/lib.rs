//! Test fixtures for calico-bpf-guard: per-test sandboxes (bpffs, child cgroup, network
//! namespace), programs built from raw instructions with Calico's and other tools' exact names,
//! planting of realistic stale state, and exact snapshots of what is left. Never shipped, and
//! never pointed at the machine's own roots.

pub mod bpf;
pub mod plant;
pub mod progs;
pub mod sandbox;
pub mod snapshot;

pub use sandbox::{have_root, Sandbox};
pub use snapshot::Snapshot;

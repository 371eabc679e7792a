//! calico-bpf-guard: removes stale Calico eBPF dataplane objects from a node whose cached mode
//! says the eBPF dataplane is off, and nothing else. Data flows one way: `config` + `mode` →
//! `decide` → `inventory` (read-only scan, which consults `ownership`'s pure rules on where
//! Calico puts things) → `plan` (ordered steps) → `apply` → `report` and `metrics`, with `run`
//! on top; no module imports one above it (scripts/house.py checks). Kernel access lives in
//! `kernel` alone; nothing else calls `unsafe` code or libc.

pub mod apply;
pub mod config;
pub mod decide;
pub mod expedite;
pub mod failpoint;
pub mod interlock;
pub mod inventory;
pub mod kernel;
pub mod logging;
pub mod metrics;
pub mod names;
pub mod notes;
pub mod ownership;
pub mod plan;
pub mod report;
pub mod run;

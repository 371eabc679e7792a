//! A stand-in Kubernetes API server for calico-bpf-guard-sync's tests, since no real one can run
//! on the build machines: Calico's objects in the shapes the API serves them, over TLS with
//! bearer tokens, lists and watches, RBAC from a ClusterRole file, and faults injected at run
//! time through files in its world directory. Used in-process by `sync/tests` and as the
//! `calico-bpf-guard-testapi` binary by the podman end-to-end test; never shipped.

mod apipath;
pub mod fixtures;
pub mod rbac;
pub mod server;
pub mod status;
pub mod tls;
mod versions;
pub mod wire;
pub mod world;

pub use server::Server;
pub use world::{ObjectRef, World};

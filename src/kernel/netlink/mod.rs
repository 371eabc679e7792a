//! rtnetlink through netlink-packet-route on a plain blocking socket (`socket`): interface
//! dumps and deletes (`links`), and qdisc and tc filter dumps, read-backs and deletes (`tc`).
//! libbpf cannot list tc filters, hence this. Thin and typed: it answers what the kernel says
//! and never decides what is Calico's.

mod links;
mod socket;
mod tc;

pub use links::{NetIf, XdpMode};
pub use socket::{copy_err, Rtnl, RECEIVE_TIMEOUT};
pub use tc::{Filter, Qdisc, FILTER_BATCH, PARENT_EGRESS, PARENT_INGRESS};

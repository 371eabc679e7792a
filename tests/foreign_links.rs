//! Links of types the guard has no rule for (raw tracepoints, tracing, iterators, and any type
//! newer than libbpf-rs) are someone else's: they read as `LinkTarget::Other`, never as an
//! error, because every scan reads every link on the host.

mod common;
use std::os::fd::AsFd;

use calico_bpf_guard::kernel::bpf::{self, IdSpace, LinkTarget};
use calico_bpf_testkit::progs::SOCK_ADDR;
use common::*;
use libbpf_rs::libbpf_sys::BPF_LINK_TYPE_RAW_TRACEPOINT;
use plant::CONNECT4;

#[test]
fn a_foreign_link_type_reads_as_other_and_the_sweep_runs() {
    let Some(sb) = sandbox("foreign-link-type") else {
        return;
    };
    let link = plant::raw_tracepoint_link("sched_switch", "foreign_rtp").unwrap();
    let info = bpf::link_info(link.as_fd()).expect("reading a raw tracepoint link");
    assert_eq!(
        info.target,
        LinkTarget::Other {
            link_type: BPF_LINK_TYPE_RAW_TRACEPOINT
        }
    );
    let by_id = bpf::fd_by_id(IdSpace::Link, info.id).expect("the link by its id");
    assert_eq!(bpf::link_info(by_id.as_fd()).unwrap(), info);

    plant::attach(
        &sb.cgroup.path,
        SOCK_ADDR,
        "calico_connect_v4",
        CONNECT4,
        0,
        true,
    )
    .unwrap();
    assert_sweep_removes(
        &sb,
        "iptables",
        &["cgroup . connect4 calico_connect_ exclusive"],
    );
    drop((link, by_id));
}

//! tc filters, tcx, XDP and the bpfin.cali device, in a network namespace of the test's own.

mod common;
use common::*;
use plant::{EGRESS, ETH_P_ALL, INGRESS, TCX_EGRESS, TCX_INGRESS, XDP_DRV, XDP_SKB};

#[test]
fn filters_xdp_and_devices() {
    let Some(sb) = sandbox("net-all") else { return };
    sb.netns().enter(plant::calico_network).unwrap();
    sb.set_mode(Some("iptables")).unwrap();
    let before = sb.snapshot();
    for l in plant::FOREIGN_NETWORK {
        assert!(before.contains(l), "fixture missing {l}");
    }
    guard_ok(&sb, &["sweep"], 0);
    assert_removed_exactly(&before, &sb.snapshot(), &plant::CALICO_NETWORK);
}

#[test]
fn tcx_links_and_direct_attachments() {
    let Some(sb) = sandbox("net-tcx") else { return };
    let tcx = sb.bpffs.path.join("tcx");
    let foreign = sb.bpffs.path.join("cilium/tcx_link");
    sb.netns()
        .enter(|| {
            calico_bpf_testkit::sandbox::run(
                "ip",
                &[
                    "link", "add", "cali0tcx", "type", "veth", "peer", "name", "peer0tcx",
                ],
            )?;
            plant::tcx_link(
                "cali0tcx",
                TCX_INGRESS,
                "cali_tc_preambl",
                Some(&tcx.join("cali0tcx_ingress")),
            )?;
            plant::tcx_link(
                "cali0tcx",
                TCX_EGRESS,
                "cali_tc_preambl",
                Some(&tcx.join("cali0tcx_egress")),
            )?;
            plant::tcx_link("cali0tcx", TCX_INGRESS, "cil_from_netdev", Some(&foreign))?;
            plant::tcx_attach("peer0tcx", TCX_INGRESS, "calico_from_hos")?;
            plant::tcx_attach("peer0tcx", TCX_EGRESS, "foreign_tcx")?;
            Ok(())
        })
        .unwrap();
    assert_sweep_removes(
        &sb,
        "iptables",
        &[
            "tcx cali0tcx ingress cali_tc_preambl link",
            "tcx cali0tcx egress cali_tc_preambl link",
            "tcx peer0tcx ingress calico_from_hos direct",
            "pin tcx/cali0tcx_ingress",
            "pin tcx/cali0tcx_egress",
        ],
    );
}

#[test]
fn xdp_in_every_mode_and_through_links() {
    let Some(sb) = sandbox("net-xdp") else { return };
    let link_pin = sb.bpffs.path.join("testkit/xdp_link");
    sb.netns()
        .enter(|| {
            sb_batch("link add ens-drv type veth peer name ens-drv-p\nlink add ens-gen type veth peer name ens-gen-p\n\
                      link add ens-lnk type veth peer name ens-lnk-p\nlink add ens-old type veth peer name ens-old-p\n\
                      link set ens-drv up\nlink set ens-drv-p up\n")?;
            plant::xdp("ens-drv", "cali_xdp_preamb", XDP_DRV)?;
            plant::xdp("ens-gen", "cali_xdp_preamb", XDP_SKB)?;
            plant::xdp("ens-old", "xdp_calico_entrypoint", XDP_SKB)?;
            plant::xdp_link("ens-lnk", "cali_xdp_preamb", Some(&link_pin))?;
            plant::xdp("ens-drv-p", "prefilter", XDP_DRV)?;
            plant::xdp("ens-gen-p", "prefilter", XDP_SKB)?;
            Ok(())
        })
        .unwrap();
    // The XDP link is detached; its pin outside Calico's places stays (defunct).
    assert_sweep_removes(
        &sb,
        "iptables",
        &[
            "xdp ens-drv driver cali_xdp_preamb",
            "xdp ens-gen generic cali_xdp_preamb",
            "xdp ens-old generic xdp_calico_entr",
            "xdp ens-lnk driver cali_xdp_preamb",
        ],
    );
}

fn sb_batch(lines: &str) -> anyhow::Result<()> {
    calico_bpf_testkit::sandbox::run_stdin("ip", &["-batch", "-"], lines)
}

#[test]
fn foreign_filters_and_qdisc_stay_on_a_calico_interface() {
    let Some(sb) = sandbox("net-foreign") else {
        return;
    };
    sb.netns()
        .enter(|| {
            sb_batch("link add cali9 type veth peer name wl9\n")?;
            plant::clsact("cali9")?;
            plant::tc_filter("cali9", INGRESS, 49152, 1, ETH_P_ALL, "cali_tc_preambl")?;
            plant::tc_filter("cali9", INGRESS, 49152, 2, ETH_P_ALL, "cil_from_contai")?;
            plant::tc_filter("cali9", EGRESS, 7, 3, plant::ETH_P_IP, "calico_to_workl")?;
            plant::tc_filter("cali9", EGRESS, 8, 3, plant::ETH_P_IP, "caliper_filter")?;
            Ok(())
        })
        .unwrap();
    assert_sweep_removes(
        &sb,
        "iptables",
        &[
            "tc cali9 ingress pref 49152 proto all cali_tc_preambl",
            "tc cali9 egress pref 7 proto ip calico_to_workl",
        ],
    );
    // The clsact qdisc stays.
    let qdiscs = sb
        .netns()
        .enter(|| {
            let out = std::process::Command::new("tc")
                .args(["qdisc", "show", "dev", "cali9"])
                .output()?;
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        })
        .unwrap();
    assert!(qdiscs.contains("clsact"), "{qdiscs}");
}

/// This kernel may lack netkit (CONFIG_NETKIT); the netkit pin family is still Calico's place,
/// so a Calico link pinned there is detached and unpinned, a foreign one stays.
#[test]
fn netkit_pin_family() {
    let Some(sb) = sandbox("net-netkit-pins") else {
        return;
    };
    let nk = sb.bpffs.path.join("netkit");
    sb.netns()
        .enter(|| {
            sb_batch("link add calink0 type veth peer name calink0p\n")?;
            plant::tcx_link(
                "calink0",
                TCX_INGRESS,
                "cali_tc_preambl",
                Some(&nk.join("calink0_primary")),
            )?;
            plant::tcx_link(
                "calink0",
                TCX_EGRESS,
                "cil_to_netdev",
                Some(&nk.join("calink0_peer")),
            )?;
            Ok(())
        })
        .unwrap();
    assert_sweep_removes(
        &sb,
        "iptables",
        &[
            "tcx calink0 ingress cali_tc_preambl link",
            "pin netkit/calink0_primary",
        ],
    );
}

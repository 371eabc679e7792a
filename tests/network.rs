//! tc filters, tcx, XDP and the bpfin.cali device, in a network namespace of the test's own.

mod common;
use calico_bpf_testkit::progs::SCHED_CLS;
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

/// accept_local, which Calico's eBPF mode sets per interface, is noted from the scan's
/// interface dump: exactly the interfaces /proc/sys says have it, no more, no fewer.
#[test]
fn accept_local_is_noted_where_it_is_set() {
    let Some(sb) = sandbox("net-accept-local") else {
        return;
    };
    let conf = std::path::Path::new("/proc/sys/net/ipv4/conf");
    let in_proc = sb
        .netns()
        .enter(|| {
            plant::calico_network()?;
            for dev in ["bpfout.cali", "cali1a2b3c4d"] {
                std::fs::write(conf.join(dev).join("accept_local"), "1")?;
            }
            let mut set = Vec::new();
            for e in std::fs::read_dir(conf)? {
                let e = e?;
                let name = e.file_name().to_string_lossy().into_owned();
                let value = std::fs::read_to_string(e.path().join("accept_local"))?;
                if !["all", "default"].contains(&name.as_str()) && value.trim() == "1" {
                    set.push(name);
                }
            }
            set.sort();
            Ok(set)
        })
        .unwrap();
    assert_eq!(in_proc, ["bpfout.cali", "cali1a2b3c4d"]);
    sb.set_mode(Some("iptables")).unwrap();
    let report = json(&guard_ok(&sb, &["check", "--json"], 1));
    let notes: Vec<&str> = report["notes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n.as_str())
        .filter(|n| n.starts_with("accept_local"))
        .collect();
    assert_eq!(
        notes,
        ["accept_local = 1 on bpfout.cali, cali1a2b3c4d: Calico's eBPF mode sets it per interface"]
    );
}

/// True when an attach failed because the kernel does not know the attach type (EINVAL): how
/// a kernel before 6.6 answers a tcx link.
fn kernel_lacks_it(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .and_then(|e| e.raw_os_error())
            == Some(libc::EINVAL)
    })
}

/// What the guard reports about a family, from `check --json` with eBPF off (exit 1: stale
/// objects remain).
fn kernel_has(sb: &Sandbox, family: &str) -> bool {
    sb.set_mode(Some("iptables")).unwrap();
    let report = json(&guard_ok(sb, &["check", "--json"], 1));
    report["kernel"][family]
        .as_bool()
        .unwrap_or_else(|| panic!("no kernel.{family} in {report}"))
}

#[test]
fn tcx_links_and_direct_attachments() {
    let Some(sb) = sandbox("net-tcx") else { return };
    let tcx = sb.bpffs.path.join("tcx");
    let foreign = sb.bpffs.path.join("cilium/tcx_link");
    let planted = sb
        .netns()
        .enter(|| {
            calico_bpf_testkit::sandbox::run(
                "ip",
                &[
                    "link", "add", "cali0tcx", "type", "veth", "peer", "name", "peer0tcx",
                ],
            )?;
            match plant::tcx_link(
                "cali0tcx",
                TCX_INGRESS,
                "cali_tc_preambl",
                Some(&tcx.join("cali0tcx_ingress")),
            ) {
                Err(e) if kernel_lacks_it(&e) => return Ok(false),
                other => other?,
            };
            plant::tcx_link(
                "cali0tcx",
                TCX_EGRESS,
                "cali_tc_preambl",
                Some(&tcx.join("cali0tcx_egress")),
            )?;
            plant::tcx_link("cali0tcx", TCX_INGRESS, "cil_from_netdev", Some(&foreign))?;
            plant::tcx_attach("peer0tcx", TCX_INGRESS, "calico_from_hos")?;
            plant::tcx_attach("peer0tcx", TCX_EGRESS, "foreign_tcx")?;
            Ok(true)
        })
        .unwrap();
    if !planted {
        // Before 6.6 there is no tcx: the guard says so and looks for no tcx attachment, and
        // a Calico program pinned in the tcx place is still swept (a foreign one stays).
        plant::pin_prog(
            &tcx.join("cali0tcx_ingress"),
            SCHED_CLS,
            "cali_tc_preambl",
            0,
        )
        .unwrap();
        plant::pin_prog(&foreign, SCHED_CLS, "cil_from_netdev", 0).unwrap();
        assert!(!kernel_has(&sb, "tcx"));
        assert_sweep_removes(&sb, "iptables", &["pin tcx/cali0tcx_ingress"]);
        return;
    }
    assert!(kernel_has(&sb, "tcx"));
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

/// netkit needs 6.7 and CONFIG_NETKIT (this host's kernel has neither device nor hooks); the
/// guard's answer must match whether a netkit device can be made. The netkit pin family is
/// Calico's place either way: a Calico link (or, before tcx, program) pinned there goes, a
/// foreign one stays.
#[test]
fn netkit_pin_family() {
    let Some(sb) = sandbox("net-netkit-pins") else {
        return;
    };
    let nk = sb.bpffs.path.join("netkit");
    let (can_make_netkit, links) = sb
        .netns()
        .enter(|| {
            let netkit = match plant::netkit("cnk0") {
                Ok(()) => true,
                Err(e) => {
                    eprintln!("no netkit device here: {e:#}");
                    false
                }
            };
            sb_batch("link add calink0 type veth peer name calink0p\n")?;
            let primary = nk.join("calink0_primary");
            match plant::tcx_link("calink0", TCX_INGRESS, "cali_tc_preambl", Some(&primary)) {
                Err(e) if kernel_lacks_it(&e) => {
                    plant::pin_prog(&primary, SCHED_CLS, "cali_tc_preambl", 0)?;
                    plant::pin_prog(&nk.join("calink0_peer"), SCHED_CLS, "cil_to_netdev", 0)?;
                    return Ok((netkit, false));
                }
                other => other?,
            };
            plant::tcx_link(
                "calink0",
                TCX_EGRESS,
                "cil_to_netdev",
                Some(&nk.join("calink0_peer")),
            )?;
            Ok((netkit, true))
        })
        .unwrap();
    assert_eq!(kernel_has(&sb, "netkit"), can_make_netkit);
    let mut removed = vec!["pin netkit/calink0_primary"];
    if links {
        removed.push("tcx calink0 ingress cali_tc_preambl link");
    }
    assert_sweep_removes(&sb, "iptables", &removed);
}
